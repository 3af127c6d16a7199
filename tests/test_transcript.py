"""optlib.grading.transcript: a test recorded against the learner's namespace, replayed in the grader.

The question modules' own tests (tests/question_scoring.py) check that record + replay gives the
verdict and message of ``check`` for every right and wrong answer they try; here, the mechanism:
what crosses, what does not, and that no transcript can make a wrong answer pass.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from optlib.grading import CheckFailed, Question, expect, expect_close, judge, require
from optlib.grading import transcript as T


def _verdict(test, namespace):
    """(in-process result, replayed result) of one question's test."""
    q = Question("q1", 2, test)
    direct = judge(q, lambda: test(namespace))
    data = T.loads(T.dumps(T.record(test, namespace)))
    replayed = judge(q, lambda: T.replay(test, data))
    return direct, replayed, data


def _same(test, namespace):
    direct, replayed, data = _verdict(test, namespace)
    assert (direct.earned, direct.message) == (replayed.earned, replayed.message), (direct, replayed)
    return replayed, data


def square_test(ns):
    f = require(ns, "square", "callable")
    x = torch.tensor([1.0, -3.0], dtype=torch.float64)
    out = f(x)
    expect(isinstance(out, torch.Tensor), f"square should return a tensor, got {type(out).__name__}")
    expect(torch.equal(x, torch.tensor([1.0, -3.0], dtype=torch.float64)), "square must not change x")
    expect_close(out, x * x, what="square(x)")


def test_right_wrong_missing_and_crashing_answers_replay_to_the_same_verdict():
    assert _same(square_test, {"square": lambda x: x * x})[0].passed
    for wrong in ({"square": lambda x: 2 * x}, {}, {"square": 3}, {"square": lambda x: 1 / 0},
                  {"square": lambda x: x.mul_(x)}, {"square": lambda x: [1.0, 9.0]}, {"square": lambda x: object()}):
        result, _ = _same(square_test, wrong)
        assert result.earned == 0 and result.message


def test_plain_values_cross_exactly():
    values = [None, True, 3, -2**70, 0.1, float("nan"), -float("inf"), 1 + 2j, "naïve", b"\x00\xff",
              (1, [2.5, {"a": (3,)}]), {0.5: 1, (1, "x"): None}, {1, 2}, frozenset({"a"}),
              np.float32(1.5), np.int64(7), np.bool_(True), np.arange(6.0).reshape(2, 3),
              torch.arange(4, dtype=torch.int32), torch.tensor([1.5], dtype=torch.bfloat16),
              torch.zeros(0, 3), torch.Size([2, 3]), torch.float16, torch.nn.Parameter(torch.ones(2))]
    got = {}

    def test(ns):
        got["value"] = ns["value"]

    for value in values:
        data = T.loads(T.dumps(T.record(test, {"value": value})))
        T.replay(test, data)
        copy = got["value"]
        assert type(copy) is type(value) or (isinstance(value, torch.Tensor) and isinstance(copy, torch.Tensor))
        if isinstance(value, torch.Tensor):
            assert copy.dtype == value.dtype and torch.equal(copy, value)
            assert isinstance(copy, torch.nn.Parameter) == isinstance(value, torch.nn.Parameter)
        elif isinstance(value, np.ndarray):
            assert copy.dtype == value.dtype and np.array_equal(copy, value)
        elif isinstance(value, float) and value != value:
            assert copy != copy
        else:
            assert copy == value


def test_other_objects_cross_as_named_handles_whose_methods_never_run_in_the_grader():
    ran = []

    class Evil:
        def __eq__(self, other):
            ran.append("__eq__")
            return True

        def __reduce__(self):
            ran.append("__reduce__")
            return (print, ("pickled",))

        def __float__(self):
            ran.append("__float__")
            return 4.0

        def __hash__(self):
            return 0

    def test(ns):
        value = ns["answer"]
        expect(isinstance(value, float), f"`answer` should be a float, got {type(value).__name__}")

    data = T.record(test, {"answer": Evil()})
    ran.clear()
    text = T.dumps(data)
    with pytest.raises(CheckFailed, match="got Evil"):
        T.replay(test, T.loads(text))
    assert ran == [], "the replay ran a method of the learner's object"
    assert "pickled" not in text and "print" not in text


def test_in_place_changes_identity_and_callbacks_are_replayed():
    def test(ns):
        f = require(ns, "descend", "callable")
        calls = []

        def grad(w):
            calls.append(float(w.sum()))
            return 2 * w

        w = torch.ones(3, dtype=torch.float64)
        out = f(grad, w)
        expect(len(calls) == 2, f"grad was called {len(calls)} times, expected 2")
        expect(out is w, "descend should return its argument, updated in place")
        expect_close(w, torch.full((3,), 0.36, dtype=torch.float64), what="w after two steps")

    def right(grad, w):
        for _ in range(2):
            w.sub_(0.2 * grad(w))
        return w

    def copies(grad, w):
        w = w.clone()
        return right(grad, w)

    assert _same(test, {"descend": right})[0].passed
    result, _ = _same(test, {"descend": copies})
    assert "return its argument" in result.message


def test_learner_classes_and_methods_are_driven_through_handles():
    def test(ns):
        make = require(ns, "Counter", "callable")
        counter = make(5)
        counter.add(2)
        counter.add(3)
        expect_close(counter.total(), 10.0, what="the total")
        expect(len(counter) == 2, "two additions")

    class Counter:
        def __init__(self, start):
            self.value, self.count = start, 0

        def add(self, x):
            self.value += x
            self.count += 1

        def total(self):
            return float(self.value)

        def __len__(self):
            return self.count

    class Broken(Counter):
        def total(self):
            return float(self.value) + 1

    assert _same(test, {"Counter": Counter})[0].passed
    assert not _same(test, {"Counter": Broken})[0].passed


def test_learner_exceptions_keep_their_class_and_message():
    def test(ns):
        f = require(ns, "f", "callable")
        try:
            f(-1.0)
        except ValueError:
            pass
        else:
            raise CheckFailed("f(-1) should raise ValueError")
        f(2.0)

    def raises(x):
        if x < 0:
            raise ValueError("negative")
        raise KeyError("k")

    result, _ = _same(test, {"f": raises})
    assert result.message == "your code raised KeyError: 'k'"
    assert _same(test, {"f": lambda x: x})[0].message == "f(-1) should raise ValueError"


def test_a_forged_transcript_cannot_pass_a_wrong_answer_or_crash_the_judge():
    def test(ns):
        expect_close(require(ns, "f", "callable")(2.0), 4.0, what="f(2)")

    _, data = _same(test, {"f": lambda x: x * x})
    good = T.dumps(data)
    q = Question("q1", 2, test)
    assert judge(q, lambda: T.replay(test, T.loads(good))).passed
    forged = [
        good.replace('["f","4.0"]', '["f","5.0"]'),                                     # a different answer
        good.replace('"has"', '"get"'),                                               # out of order
        json.dumps({**data, "events": data["events"][:2]}),                           # cut short
        json.dumps({**data, "events": data["events"] + [["return", ["v", 1]]] * 3}),  # extra events: ignored
        json.dumps({**data, "format": 99}), "[]", "{", json.dumps({"format": 1, "events": [[]] * 5}),
        good.replace('["f","4.0"]', '["T","float64",[],"AAAAAAAAEEA=",false,false]'),  # a tensor of 4.0
        good.replace('["f","4.0"]', '["T","float64",[10],"AAAAAAAAEEA=",false,false]'),  # bytes do not fit
        good.replace('["f","4.0"]', '["T","object",[1],"AAAAAAAAEEA=",false,false]'),
        good.replace('["f","4.0"]', '["A","float64",[1],"!!"]'),
        good.replace('["f","4.0"]', '["l",[' * 400 + '["v",1]' + ']]' * 400),
        good.replace('["f","4.0"]', '["ref",12345]'),
        good.replace('["f","4.0"]', '["h",1,"os.system",true]'),
    ]
    outcomes = []
    for text in forged:
        try:
            result = judge(q, lambda text=text: T.replay(test, T.loads(text)))
        except T.TranscriptError as err:  # loads refuses text that is not JSON
            outcomes.append(("refused", str(err)))
            continue
        outcomes.append((result.earned, result.message))
    passed = [text for text, outcome in zip(forged, outcomes) if outcome[0] == 2]
    # only the extra trailing events (ignored) and the tensor holding the right value pass
    assert len(passed) == 2, outcomes
    assert all(o[1] for o in outcomes if o[0] != 2)


def test_replay_never_unpickles():
    source = (T.__file__)
    text = open(source).read()
    assert "pickle" not in text.replace("unpickled", "").replace("never unpickle", "")
    assert "eval(" not in text and "exec(" not in text


def test_callbacks_called_inside_torch_func_transforms_replay_to_the_same_verdict():
    """A learner's torch.func.grad of a function the test hands over calls it with tensors that have no storage."""
    def test(ns):
        gradient = require(ns, "gradient", "callable")
        A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)

        def f(x):
            return 0.5 * x @ A @ x

        x = torch.tensor([1.0, -1.0], dtype=torch.float64)
        expect_close(gradient(f, x), A @ x, what="gradient(f, x)")

    assert _same(test, {"gradient": lambda f, x: torch.func.grad(f)(x)})[0].passed
    result, _ = _same(test, {"gradient": lambda f, x: torch.func.grad(f)(2 * x)})
    assert result.earned == 0
