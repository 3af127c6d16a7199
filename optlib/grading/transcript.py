"""Run a question's test where the learner's code lives, and decide its score where it cannot reach.

The batch grader runs each question's test twice, with the same code:

1. **Recorded, in the sandbox** (:func:`record`). The test runs in the learner's kernel against a
   a recording namespace. Every interaction between the test and the learner's objects
   (looking a name up, calling a learner function, reading an attribute of what it returned) goes
   through a proxy that performs it on the real object and appends what came back to a
   *transcript*, as plain data only: ``None``, bools, numbers, strings, lists, tuples, dicts,
   sets, and tensors and arrays as raw little-endian bytes with a dtype from a fixed list. An
   object that is not plain data (a function, a class instance) becomes a numbered handle. What
   the learner's code does to the test's own objects is recorded too: a tensor, list or dict
   argument changed in place, a generator's new state, and each call the learner makes back into
   a function the test handed it.
2. **Replayed, in the grader's own process** (:func:`replay`). The same test runs again against a
   a replaying namespace that answers each interaction from the transcript instead of running
   learner code, re-applies the recorded changes to the test's objects, and calls the test's own
   callbacks with the recorded arguments. Every comparison, and so the score, is computed here, by
   code and libraries the learner's code never touched.

A transcript is JSON; decoding it builds tensors with ``torch.frombuffer`` from whitelisted dtypes
and nothing else: it is never unpickled or executed, and an object's ``__eq__``, ``__reduce__``
or ``__del__`` never runs in the grader (only its type name crosses, as a string). Whatever the
learner's code does in the sandbox, including replacing functions of torch, numpy or builtins,
it can only change the values its own answer reports; the replay checks those values against
references it computes itself. A transcript that does not fit the test (a different sequence of
interactions, a malformed value) fails the question.

In a notebook, ``check("q1")`` runs the test directly on the notebook's namespace, with the same
messages; :func:`record` followed by :func:`replay` gives the same verdict and message (the tests
of the question modules assert it for every right and wrong answer they try).
"""
from __future__ import annotations

import base64
import builtins
import collections
import functools
import json
import math
import re
import weakref
from typing import Any, Callable, Mapping

import numpy as np
import torch

__all__ = ["TranscriptError", "Exhausted", "record", "replay", "dumps", "loads"]

FORMAT = 1
MAX_DEPTH = 24
MAX_ITEMS = 1_000_000        # list/dict/set items in one value
MAX_TENSOR_BYTES = 64 << 20  # bytes of one tensor or array
MAX_ITER_ITEMS = 100_000     # items taken from a learner's iterator
_UNTRACKABLE = "untrackable"  # a list or dict holding something that is not plain data
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}$")

_TORCH_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)}
_NUMPY_DTYPES = {name: np.dtype(name) for name in (
    "float16", "float32", "float64", "complex64", "complex128", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool")}


class TranscriptError(ValueError):
    """The transcript does not fit the test: malformed, or a different sequence of interactions."""


class Exhausted(TranscriptError):
    """The replayed test asked for more than the sandbox recorded."""


# ---------------------------------------------------------------- plain values


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text) -> bytes:
    if not isinstance(text, str):
        raise TranscriptError("expected base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeError):
        raise TranscriptError("malformed base64") from None


def _shape(data) -> tuple[int, ...]:
    if not isinstance(data, list) or len(data) > 16 or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_TENSOR_BYTES for n in data):
        raise TranscriptError("malformed shape")
    return tuple(data)


def _type_name(obj) -> str:
    name = getattr(type(obj), "__name__", "object")
    return name if isinstance(name, str) and _NAME.match(name) else "object"


def _safe_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise TranscriptError(f"malformed name {str(name)[:40]!r}")
    return name


class _Session:
    """What both sides share: the test's objects the learner's code was handed, by number."""

    records = False

    def __init__(self):
        self.tracked: dict[int, tuple[Any, Any]] = {}   # number -> (reference, snapshot)
        self.numbers: dict[int, int] = {}               # id(object) -> number
        self.count = 0
        self.callbacks: list[Callable] = []
        self.handles: dict[int, Any] = {}

    # -- the test's objects (tensors, lists, dicts, generators) and callbacks handed to the learner
    def number_of(self, obj) -> int | None:
        number = self.numbers.get(id(obj))
        if number is not None and self._get(number) is obj:
            return number
        return None

    def _get(self, number):
        ref = self.tracked.get(number, (None,))[0]
        return ref() if isinstance(ref, weakref.ref) else ref

    def track(self, obj) -> set[int]:
        """Number every tensor, list, dict and generator in ``obj`` (an argument the test hands over);
        returns the numbers of the lists and dicts in it."""
        reached: list = []
        self._number_all(obj, set(), 0, reached)
        for number, obj in reached:  # after numbering, so that a list holding a numbered tensor says so
            self.tracked[number] = (self.tracked[number][0], self.snapshot(obj))
        return {number for number, obj in reached if isinstance(obj, (list, dict))}

    def _number_all(self, obj, seen, depth, reached) -> None:
        if depth > MAX_DEPTH or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            for tensor in list(obj.parameters()) + list(obj.buffers()):
                self._number_all(tensor, seen, depth + 1, reached)
            return
        if isinstance(obj, (torch.Tensor, list, dict, torch.Generator)):
            number = self.number_of(obj)
            if number is None:
                self.count += 1
                number = self.count
                self.numbers[id(obj)] = number
                self.tracked[number] = (weakref.ref(obj) if isinstance(obj, torch.Tensor) else obj, None)
            reached.append((number, obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                self._number_all(item, seen, depth + 1, reached)
        elif isinstance(obj, dict):
            for item in obj.values():
                self._number_all(item, seen, depth + 1, reached)

    def snapshot(self, obj):
        """What ``obj`` holds now, to notice an in-place change (only the sandbox side looks)."""
        if not self.records:
            return None
        if isinstance(obj, torch.Tensor):
            try:
                return (_tensor_bytes(obj), obj.requires_grad, tuple(obj.shape), obj.dtype)
            except TranscriptError:  # inside a torch.func transform: looked at again after it
                return _UNTRACKABLE
        if isinstance(obj, torch.Generator):
            return bytes(obj.get_state().numpy().tobytes())
        try:
            return json.dumps(_encode_contents(self, obj, handles=False))
        except (TranscriptError, TypeError, ValueError, RecursionError):
            return _UNTRACKABLE

    def callback_number(self, fn) -> int | None:
        for number, known in enumerate(self.callbacks):
            if known is fn:
                return number
        return None

    # -- encoding (sandbox side) and decoding (both sides)
    def encode(self, value, *, handles: bool = True, depth: int = 0, budget=None):
        budget = [MAX_ITEMS] if budget is None else budget
        if depth > MAX_DEPTH:
            raise TranscriptError("value nested too deeply")
        budget[0] -= 1
        if budget[0] < 0:
            raise TranscriptError("value too large")
        number = self.number_of(value) if isinstance(value, (torch.Tensor, list, dict, torch.Generator)) else None
        if number is not None:
            return ["ref", number]
        cb = self.callback_number(value) if callable(value) else None
        if cb is not None:
            return ["cb", cb]
        if isinstance(value, _Handle):
            return ["hid", value._number]
        if value is None or isinstance(value, (bool, str)):
            return ["v", value]
        if isinstance(value, np.generic):
            dtype = str(value.dtype)
            if dtype in _NUMPY_DTYPES:
                return ["np", dtype, _b64(value.tobytes())]
        elif isinstance(value, int):
            return ["v", int(value)]
        elif isinstance(value, float):
            return ["f", repr(float(value))]
        elif isinstance(value, complex):
            return ["c", repr(value.real), repr(value.imag)]
        if isinstance(value, torch.Tensor) and value.layout == torch.strided and not value.is_quantized:
            dtype = str(value.dtype).removeprefix("torch.")
            if dtype in _TORCH_DTYPES and value.device.type != "meta":
                return ["T", dtype, list(value.shape), _b64(_tensor_bytes(value)), bool(value.requires_grad),
                        isinstance(value, torch.nn.Parameter)]
        if isinstance(value, np.ndarray) and str(value.dtype) in _NUMPY_DTYPES:
            return ["A", str(value.dtype), list(value.shape), _b64(np.ascontiguousarray(value).tobytes())]
        if isinstance(value, torch.Size):
            return ["size", [int(n) for n in value]]
        if isinstance(value, torch.dtype):
            return ["dtype", str(value).removeprefix("torch.")]
        if isinstance(value, bytes):
            return ["bytes", _b64(value)]
        if isinstance(value, tuple) and hasattr(type(value), "_fields"):
            fields = [str(f) for f in type(value)._fields]
            return ["nt", _type_name(value), fields, [self.encode(v, handles=handles, depth=depth + 1, budget=budget)
                                                      for v in value]]
        if isinstance(value, (list, tuple)):
            return ["l" if isinstance(value, list) else "t",
                    [self.encode(v, handles=handles, depth=depth + 1, budget=budget) for v in value]]
        if isinstance(value, (set, frozenset)):
            return ["set" if isinstance(value, set) else "fs",
                    [self.encode(v, handles=False, depth=depth + 1, budget=budget) for v in value]]
        if isinstance(value, dict):
            return ["d", [[self.encode(k, handles=False, depth=depth + 1, budget=budget),
                           self.encode(v, handles=handles, depth=depth + 1, budget=budget)]
                          for k, v in value.items()]]
        if not handles:
            raise TranscriptError(f"{_type_name(value)} cannot be a key")
        return self.new_handle(value)

    def new_handle(self, value):
        raise TranscriptError(f"a {_type_name(value)} is not plain data")

    def decode(self, data, depth: int = 0):
        if depth > MAX_DEPTH:
            raise TranscriptError("value nested too deeply")
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise TranscriptError("malformed value")
        tag, rest = data[0], data[1:]
        try:
            if tag == "v":
                (value,) = rest
                if value is None or isinstance(value, (bool, str)) or (isinstance(value, int)):
                    return value
            elif tag == "f":
                return float(str(rest[0]))
            elif tag == "c":
                return complex(float(str(rest[0])), float(str(rest[1])))
            elif tag == "np":
                dtype = _NUMPY_DTYPES[rest[0]]
                raw = _unb64(rest[1])
                if len(raw) == dtype.itemsize:
                    return np.frombuffer(raw, dtype=dtype)[0]
            elif tag == "T":
                dtype_name, shape, raw, requires_grad, is_param = rest
                return _tensor(dtype_name, _shape(shape), _unb64(raw), bool(requires_grad), bool(is_param))
            elif tag == "A":
                dtype = _NUMPY_DTYPES[rest[0]]
                shape, raw = _shape(rest[1]), _unb64(rest[2])
                if len(raw) == dtype.itemsize * math.prod(shape):
                    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
            elif tag == "size":
                return torch.Size(_shape(rest[0]))
            elif tag == "dtype":
                return _TORCH_DTYPES[rest[0]]
            elif tag == "bytes":
                return _unb64(rest[0])
            elif tag in ("l", "t"):
                items = [self.decode(v, depth + 1) for v in _items(rest[0])]
                return items if tag == "l" else tuple(items)
            elif tag == "nt":
                name, fields, values = _safe_name(rest[0]), [_safe_name(f) for f in _items(rest[1])], _items(rest[2])
                if len(fields) == len(values) and len(set(fields)) == len(fields):
                    return collections.namedtuple(name, fields, rename=True)(*[self.decode(v, depth + 1)
                                                                               for v in values])
            elif tag in ("set", "fs"):
                items = [self.decode(v, depth + 1) for v in _items(rest[0])]
                return set(items) if tag == "set" else frozenset(items)
            elif tag == "d":
                out = {}
                for pair in _items(rest[0]):
                    key, value = _items(pair)
                    out[self.decode(key, depth + 1)] = self.decode(value, depth + 1)
                return out
            elif tag == "ref":
                obj = self._get(int(rest[0]))
                if obj is not None:
                    return obj
            elif tag == "cb":
                return self.callbacks[int(rest[0])]
            elif tag == "h":
                number, name, is_callable = rest
                return self.handle(int(number), _safe_name(name), bool(is_callable))
            elif tag == "hid":
                if int(rest[0]) in self.handles:
                    return self.handles[int(rest[0])]
        except TranscriptError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, OverflowError, RuntimeError) as err:
            raise TranscriptError(f"malformed {tag!r} value: {type(err).__name__}") from None
        raise TranscriptError(f"malformed {tag!r} value")

    def handle(self, number: int, name: str, is_callable: bool):
        raise NotImplementedError

    def apply(self, change) -> None:
        """Re-apply a recorded in-place change to the test's object with that number."""
        number = int(change[1])
        obj = self._get(number)
        if obj is None:
            return
        new = self.decode(change[2])
        if isinstance(obj, torch.Tensor) and isinstance(new, torch.Tensor):
            with torch.no_grad():
                if obj.shape == new.shape and obj.dtype == new.dtype:
                    obj.copy_(new)
                else:
                    obj.data = new.detach().clone()
            if obj.is_leaf and new.requires_grad != obj.requires_grad and (obj.is_floating_point() or
                                                                           obj.is_complex()):
                obj.requires_grad_(new.requires_grad)
        elif isinstance(obj, list) and isinstance(new, list):
            obj[:] = new
        elif isinstance(obj, dict) and isinstance(new, dict):
            obj.clear()
            obj.update(new)
        elif isinstance(obj, torch.Generator) and isinstance(new, bytes):
            obj.set_state(torch.frombuffer(bytearray(new), dtype=torch.uint8))
        else:
            raise TranscriptError("a recorded change does not fit the object it names")
        self.tracked[number] = (self.tracked[number][0], self.snapshot(obj))


def _items(data) -> list:
    if not isinstance(data, list) or len(data) > MAX_ITEMS:
        raise TranscriptError("malformed list")
    return data


def _tensor_bytes(t: torch.Tensor) -> bytes:
    try:
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        return t.numpy().tobytes()
    except RuntimeError as err:  # a tensor inside a torch.func transform has no storage to read
        raise TranscriptError(f"a tensor whose data cannot be read: {str(err)[:80]}") from None


def _tensor(dtype_name: str, shape, raw: bytes, requires_grad: bool, is_param: bool) -> torch.Tensor:
    dtype = _TORCH_DTYPES[dtype_name]
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) != itemsize * math.prod(shape) or len(raw) > MAX_TENSOR_BYTES:
        raise TranscriptError("tensor data does not match its shape")
    flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    tensor = flat.reshape(shape).clone()
    if is_param:
        return torch.nn.Parameter(tensor, requires_grad=requires_grad and tensor.is_floating_point())
    if requires_grad and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
    return tensor


# ---------------------------------------------------------------- proxies the test sees


class _Handle:
    """A learner's object that is not plain data, as the test sees it: each use is one interaction."""

    __slots__ = ("_session", "_number", "__weakref__")

    def __init__(self, session, number):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_number", number)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._session.op(self._number, "getattr", (name,), {})

    def __getitem__(self, key):
        return self._session.op(self._number, "getitem", (key,), {})

    def __len__(self):
        return self._session.op(self._number, "len", (), {})

    def __iter__(self):
        return iter(self._session.op(self._number, "iter", (), {}))

    def __bool__(self):
        return self._session.op(self._number, "bool", (), {})

    def __repr__(self):
        return f"<{type(self).__name__} object>"


class _CallableHandle(_Handle):
    __slots__ = ()

    def __call__(self, *args, **kwargs):
        return self._session.op(self._number, "call", args, kwargs)


@functools.lru_cache(maxsize=256)
def _handle_class(name: str, is_callable: bool) -> type:
    """A class named like the learner's, so that messages say "got Foo" as they would in the notebook."""
    return type(name, (_CallableHandle if is_callable else _Handle,), {"__slots__": ()})


_EXCEPTIONS = {name: obj for name, obj in vars(builtins).items()
               if isinstance(obj, type) and issubclass(obj, Exception)}


def _exception(name, message) -> Exception:
    """The learner's exception, rebuilt from its name and message: a builtin class, or a new one of that name."""
    name = name if isinstance(name, str) and _NAME.match(name) else "Exception"
    message = str(message)[:2000]
    base = _EXCEPTIONS.get(name, Exception)
    rebuilt = type(name, (base,), {"__init__": Exception.__init__, "__str__": lambda self: message})
    return rebuilt(message)


def _walk_args(args, kwargs):
    return list(args) + list(kwargs.values())


def _plain_callable(fn) -> bool:
    """A function of the test's that the learner's code may call back: recorded and replayed.

    Classes and modules are handed over as they are: the learner's code builds or runs them without
    side effects on the test's side.
    """
    return callable(fn) and not isinstance(fn, (type, torch.nn.Module, _Handle, torch.Generator))


def _register_callbacks(session, obj, depth=0):
    if depth > MAX_DEPTH:
        return
    if _plain_callable(obj):
        if session.callback_number(obj) is None:
            session.callbacks.append(obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _register_callbacks(session, item, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            _register_callbacks(session, item, depth + 1)


# ---------------------------------------------------------------- recording, in the sandbox


class _Recorder(_Session):
    records = True

    def __init__(self, namespace: Mapping[str, Any]):
        super().__init__()
        self.namespace = namespace
        self.real: dict[int, Any] = {}
        self.events: list = []
        self.wrappers: dict[int, tuple[Callable, int]] = {}
        self.watching: list[set[int]] = []   # per call in progress: the lists and dicts it was handed

    def new_handle(self, value):
        number = len(self.real) + 1
        self.real[number] = value
        return ["h", number, _type_name(value), bool(callable(value))]

    def handle(self, number, name, is_callable):
        if number not in self.handles:
            self.handles[number] = _handle_class(name, is_callable)(self, number)
        return self.handles[number]

    def callback_number(self, fn):
        wrapped = self.wrappers.get(id(fn))
        if wrapped is not None and wrapped[0] is fn:
            return wrapped[1]
        return super().callback_number(fn)

    def crossing(self, value):
        """Encode what the learner's code gave the test, record it, and give the test the decoded copy."""
        data = self.encode(value)
        return data, self.decode(data)

    def changes(self) -> None:
        """Record every in-place change to the test's objects since the last look: its tensors and
        generators, and the lists and dicts it handed to the calls still running."""
        watched = set().union(*self.watching)
        for number, (ref, snap) in list(self.tracked.items()):
            obj = ref() if isinstance(ref, weakref.ref) else ref
            if obj is None:
                del self.tracked[number]
                continue
            if isinstance(obj, (list, dict)) and number not in watched:
                continue
            now = self.snapshot(obj)
            if now != snap and now is not _UNTRACKABLE and snap is not _UNTRACKABLE:
                self.tracked[number] = (ref, now)
                if isinstance(obj, torch.Generator):
                    data = ["bytes", _b64(now)]
                elif isinstance(obj, torch.Tensor):
                    data = ["T", str(obj.dtype).removeprefix("torch."), list(obj.shape), _b64(now[0]),
                            bool(obj.requires_grad), False]
                else:
                    data = json.loads(now)
                self.events.append(["change", number, data])

    def unwrap(self, value, depth=0):
        """An argument as the learner's code gets it: handles replaced by the real objects, the test's
        functions by recording wrappers, and everything else (the test's tensors, lists, dicts,
        generators, modules) itself."""
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, _Handle):
            return self.real[value._number]
        if _plain_callable(value):
            return self.wrapper(value)
        if isinstance(value, (list, tuple, dict)) and not hasattr(type(value), "_fields"):
            items = list(value.values()) if isinstance(value, dict) else list(value)
            new = [self.unwrap(v, depth + 1) for v in items]
            if all(a is b for a, b in zip(items, new)):
                return value
            if isinstance(value, dict):
                return dict(zip(value.keys(), new))
            return type(value)(new) if type(value) in (list, tuple) else value
        return value

    def wrapper(self, fn):
        number = self.callback_number(fn)

        @functools.wraps(fn)
        def called_back(*args, **kwargs):
            self.changes()
            try:
                arguments = [self.encode(list(args), handles=False), self.encode(dict(kwargs), handles=False)]
            except TranscriptError:  # the learner's code passed something that is not plain data: not replayed
                arguments = [None, None]
            self.events.append(["callback", number, *arguments])
            return fn(*args, **kwargs)

        self.wrappers[id(called_back)] = (called_back, number)
        return called_back

    def op(self, number, name, args, kwargs):
        _register_callbacks(self, _walk_args(args, kwargs))
        containers = set()
        for arg in _walk_args(args, kwargs):
            containers |= self.track(arg)
        self.events.append(["op", number, name])
        self.watching.append(containers)
        try:
            return self._perform(number, name, args, kwargs)
        finally:
            self.watching.pop()

    def _perform(self, number, name, args, kwargs):
        target = self.real[number]
        try:
            if name == "call":
                result = target(*[self.unwrap(a) for a in args], **{k: self.unwrap(v) for k, v in kwargs.items()})
            elif name == "getattr":
                result = getattr(target, args[0])
            elif name == "getitem":
                result = target[self.unwrap(args[0])]
            elif name == "len":
                result = len(target)
            elif name == "bool":
                result = bool(target)
            elif name == "iter":
                result = []
                for item in target:
                    result.append(item)
                    if len(result) >= MAX_ITER_ITEMS:
                        break
            else:
                raise TranscriptError(f"unknown operation {name}")
        except Exception as err:
            self.changes()
            error = _exception(_type_name(err), str(err))
            self.events.append(["raise", type(error).__name__, str(error)])
            raise error from None
        self.changes()
        data, copy = self.crossing(result)
        self.events.append(["return", data])
        return copy


def _encode_contents(session, obj, handles=True):
    """A list or dict the test handed over, as it is now (the test's objects in it by number)."""
    if isinstance(obj, list):
        return ["l", [session.encode(v, handles=handles, depth=1) for v in obj]]
    return ["d", [[session.encode(k, handles=False, depth=1), session.encode(v, handles=handles, depth=1)]
                  for k, v in obj.items()]]


class _RecordingNamespace(Mapping):
    """The learner's namespace as the test sees it in the sandbox: every lookup is recorded."""

    def __init__(self, recorder: _Recorder):
        self._recorder = recorder

    def __contains__(self, name):
        found = name in self._recorder.namespace
        self._recorder.events.append(["has", str(name), bool(found)])
        return found

    def __getitem__(self, name):
        recorder = self._recorder
        if name not in recorder.namespace:
            recorder.events.append(["get", str(name), None])
            raise KeyError(name)
        data, copy = recorder.crossing(recorder.namespace[name])
        recorder.events.append(["get", str(name), data])
        return copy

    def __iter__(self):
        names = [n for n in self._recorder.namespace if isinstance(n, str)][:MAX_ITER_ITEMS]
        self._recorder.events.append(["names", names])
        return iter(names)

    def __len__(self):
        return len(list(iter(self)))


def record(test: Callable[[Mapping[str, Any]], None], namespace: Mapping[str, Any]) -> dict:
    """Run ``test`` on ``namespace`` (the learner's, in the sandbox) and return its transcript.

    The verdict the test reaches here is only advisory (``"end"``): the grader decides by replaying.
    A :class:`BaseException` that is not an :class:`Exception` (the grading alarm, ``SystemExit``)
    propagates after being noted in the transcript passed as ``test``'s partial record.
    """
    recorder = _Recorder(namespace)
    transcript = {"format": FORMAT, "events": recorder.events, "end": None}
    try:
        test(_RecordingNamespace(recorder))
    except Exception as err:  # a wrong answer, or the learner's code crashed: the replay will find out
        transcript["end"] = ["error", _type_name(err), str(err)[:2000]]
    except BaseException as err:
        transcript["end"] = ["abort", _type_name(err), str(err)[:2000]]
        raise
    else:
        transcript["end"] = ["done"]
    return transcript


# ---------------------------------------------------------------- replaying, in the grader


class _Player(_Session):
    def __init__(self, transcript):
        super().__init__()
        if not isinstance(transcript, dict) or transcript.get("format") != FORMAT:
            raise TranscriptError("not a transcript of this format")
        self.events = _items(transcript.get("events"))
        self.end = transcript.get("end")
        self.position = 0

    def handle(self, number, name, is_callable):
        if number not in self.handles:
            self.handles[number] = _handle_class(name, is_callable)(self, number)
        return self.handles[number]

    def next(self, kind: str):
        if self.position >= len(self.events):
            raise Exhausted(self._why_exhausted())
        event = self.events[self.position]
        if not isinstance(event, list) or not event or event[0] != kind:
            found = event[0] if isinstance(event, list) and event and isinstance(event[0], str) else "?"
            raise TranscriptError(f"expected a {kind!r} interaction, the sandbox recorded {found[:20]!r}")
        self.position += 1
        return event

    def _why_exhausted(self) -> str:
        end = self.end
        if isinstance(end, list) and end and end[0] == "abort":
            return f"the test was cut short in the sandbox ({str(end[1])[:80]}: {str(end[2])[:300]})"
        if isinstance(end, list) and len(end) == 3 and end[0] == "error":
            return f"the test stopped early in the sandbox ({str(end[1])[:80]}: {str(end[2])[:300]})"
        return "the sandbox recorded fewer interactions than the test needs"

    def op(self, number, name, args, kwargs):
        _register_callbacks(self, _walk_args(args, kwargs))
        for arg in _walk_args(args, kwargs):
            self.track(arg)
        event = self.next("op")
        if len(event) != 3 or event[1] != number or event[2] != name:
            raise TranscriptError(f"expected operation {name!r} on object {number}, the sandbox recorded another")
        while True:
            if self.position >= len(self.events):
                raise Exhausted(self._why_exhausted())
            event = self.events[self.position]
            kind = event[0] if isinstance(event, list) and event else None
            if kind == "change":
                self.position += 1
                self.apply(event)
            elif kind == "callback":
                self.position += 1
                self.call_back(event)
            elif kind == "raise":
                self.position += 1
                raise _exception(event[1], event[2])
            elif kind == "return":
                self.position += 1
                return self.decode(event[1])
            else:
                raise TranscriptError("malformed interaction")

    def call_back(self, event):
        """Call the test's own function with the arguments the learner's code gave it; keep its side effects."""
        if len(event) != 4 or not isinstance(event[1], int) or not 0 <= event[1] < len(self.callbacks):
            raise TranscriptError("a callback that the test never handed over")
        if event[2] is None and event[3] is None:
            return
        args = self.decode(event[2])
        kwargs = self.decode(event[3])
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise TranscriptError("malformed callback arguments")
        try:
            self.callbacks[event[1]](*args, **kwargs)
        except Exception:  # in the sandbox the error went to the learner's code, which dealt with it
            pass


class _ReplayNamespace(Mapping):
    def __init__(self, player: _Player):
        self._player = player

    def __contains__(self, name):
        event = self._player.next("has")
        if len(event) != 3 or event[1] != str(name) or not isinstance(event[2], bool):
            raise TranscriptError(f"expected a lookup of {str(name)[:40]!r}")
        return event[2]

    def __getitem__(self, name):
        event = self._player.next("get")
        if len(event) != 3 or event[1] != str(name):
            raise TranscriptError(f"expected a lookup of {str(name)[:40]!r}")
        if event[2] is None:
            raise KeyError(name)
        return self._player.decode(event[2])

    def __iter__(self):
        event = self._player.next("names")
        names = _items(event[1]) if len(event) == 2 else None
        if names is None or not all(isinstance(n, str) for n in names):
            raise TranscriptError("malformed list of names")
        return iter(names)

    def __len__(self):
        return len(list(iter(self)))


def replay(test: Callable[[Mapping[str, Any]], None], transcript) -> None:
    """Run ``test`` again, answering every interaction with the learner's objects from ``transcript``.

    Returns when the test passes; raises what the test raises (``CheckFailed`` for a wrong answer, the
    learner's rebuilt exception for a crash) and :class:`TranscriptError` when the transcript does not
    fit the test.
    """
    player = _Player(transcript)
    test(_ReplayNamespace(player))


def dumps(transcript) -> str:
    """The transcript as JSON text (what travels from the sandbox to the grader)."""
    return json.dumps(transcript, separators=(",", ":"), allow_nan=False)


def loads(text: str):
    """The transcript from JSON text; nothing but JSON parsing happens here."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise TranscriptError(f"the transcript is not valid JSON: {type(err).__name__}") from None
