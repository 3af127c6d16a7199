r"""What an optimizer step costs in memory traffic, and the floor that traffic sets on its time.

An elementwise update such as Adam's does a handful of arithmetic operations per number it
reads or writes, far fewer than a processor can do in the time memory takes to deliver that
number: its time is (bytes moved) / (memory bandwidth), not (flops) / (peak flops). Two measures
follow, one counted and one timed:

- :func:`count_traffic` runs a step under a ``TorchDispatchMode`` and adds up, for every tensor
  operation torch executes, the bytes of the tensors it reads and writes. The count depends only
  on the code and the shapes, not on the machine. The readable single-tensor update makes one pass
  over memory per operation; a fused kernel (torch's ``fused=True``) reads and writes each number
  once.
- :func:`bandwidth` times an in-place axpy on a large vector, the access pattern of an update, and
  :func:`floor_seconds` divides a step's minimal traffic by it.

A compiled update (``implementation="compiled"``) runs as generated code, outside the
dispatcher, so it cannot be counted here; ``benchmarks/optimizer_step.py`` times it against the
floor instead, on the parameters of :func:`mlp_parameters` and the implementations of
:func:`make_optimizer`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["Traffic", "count_traffic", "update_traffic", "bandwidth", "floor_seconds", "seconds_per_step", "block_seconds",
           "mlp_parameters", "make_optimizer", "NUMBERS_PER_PARAMETER", "OPTIMIZERS", "IMPLEMENTATIONS"]

#: Numbers per parameter that an update must read and write at least: SGD with momentum reads
#: p, g, v and writes p, v; Adam and AdamW read p, g, m, v and write p, m, v.
NUMBERS_PER_PARAMETER = {"SGD-momentum": 5, "Adam": 7, "AdamW": 7}

#: The implementations :func:`make_optimizer` builds: optlib's three (``implementation="single"``,
#: ``"foreach"``, ``"compiled"``) and torch.optim's default, foreach and fused configurations.
IMPLEMENTATIONS = ("optlib", "optlib foreach", "optlib compiled", "torch", "torch foreach", "torch fused")


def _optimizers() -> dict:
    from optlib.optim import SGD, Adam, AdamW

    return {"SGD-momentum": (SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9)),
            "Adam": (Adam, torch.optim.Adam, dict(lr=1e-3)),
            "AdamW": (AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=1e-2))}


#: name -> (optlib class, torch.optim class, the hyperparameters both get), for the keys of
#: :data:`NUMBERS_PER_PARAMETER`.
#:
#: :meta hide-value:
OPTIMIZERS = _optimizers()


@dataclass
class Traffic:
    """Bytes read and written by the tensor operations of one call, and the operations themselves."""

    read: int = 0
    written: int = 0
    operations: list = field(default_factory=list)  # (name, bytes read, bytes written), in order

    @property
    def total(self) -> int:
        """Bytes read plus bytes written."""
        return self.read + self.written

    def per_number(self, count: int, element_size: int) -> float:
        """Numbers moved per element of ``count`` elements of ``element_size`` bytes (e.g. per parameter)."""
        return self.total / (count * element_size)


def _bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _key(t: torch.Tensor):
    # one tensor read twice by one kernel (g in addcmul(v, g, g)) streams through memory once
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))


class _Counter(TorchDispatchMode):
    def __init__(self, traffic: Traffic):
        super().__init__()
        self.traffic = traffic

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.is_view or func.overloadpacket.__name__ in ("detach", "alias", "lift_fresh"):
            return func(*args, **kwargs)
        mutable, read_only = {}, {}
        for position, argument in enumerate(func._schema.arguments):
            value = args[position] if position < len(args) and not argument.kwarg_only else kwargs.get(argument.name)
            write = argument.alias_info is not None and argument.alias_info.is_write
            for t in tree_flatten(value)[0]:
                if isinstance(t, torch.Tensor):
                    (mutable if write else read_only)[_key(t)] = (t, argument.name == "out", write and t.clone())
        out = func(*args, **kwargs)
        # a fused kernel's schema marks the gradients mutable (it unscales them under AMP): count a
        # mutable argument as written only when its values changed, or when it is an out= argument
        written_to = {key: t for key, (t, out_only, before) in mutable.items()
                      if out_only or not torch.equal(before, t)}
        read = sum(_bytes(t) for t, _, _ in read_only.values())
        read += sum(_bytes(t) for key, (t, out_only, _) in mutable.items() if not out_only and key not in read_only)
        written = sum(_bytes(t) for t in written_to.values())
        inputs = mutable.keys() | read_only.keys()
        written += sum(_bytes(t) for t in tree_flatten(out)[0]
                       if isinstance(t, torch.Tensor) and _key(t) not in inputs)
        self.traffic.read += read
        self.traffic.written += written
        if read or written:  # not the profiler's record_function markers
            self.traffic.operations.append((func.overloadpacket.__name__, read, written))
        return out


def count_traffic(fn, *args, **kwargs) -> tuple[Traffic, object]:
    """Run ``fn(*args, **kwargs)`` and count the bytes its tensor operations read and write.

    Each operation counts each distinct tensor it reads once, and each tensor it creates or changes
    once (an in-place operation reads and writes its first argument); views and detaches move
    nothing. A tensor the operation may write but leaves unchanged counts as read only.
    Returns the :class:`Traffic` and ``fn``'s result. Caches are ignored: this is the traffic a
    processor whose tensors do not fit in cache must move.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    traffic = Traffic()
    with _Counter(traffic):
        result = fn(*args, **kwargs)
    return traffic, result


def update_traffic(optimizer: torch.optim.Optimizer) -> Traffic:
    """The traffic of one ``optimizer.step()``, counted on the step after the first.

    The first step creates the state (zero tensors, copies of the gradient), which later steps do
    not, so the method steps once uncounted. The parameters must have gradients.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(p.grad is not None for p in params):
        raise ValueError("no parameter of the optimizer has a gradient: fill .grad before counting a step")
    optimizer.step()
    traffic, _ = count_traffic(optimizer.step)
    return traffic


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bandwidth(device="cpu", dtype=torch.float32, n: int = 2**25, repeats: int = 10) -> float:
    """Bytes per second of ``y.add_(x, alpha=...)`` on ``n`` elements, the best of ``repeats`` runs.

    The axpy reads x and y and writes y, 3 numbers per element, the access pattern of an update
    (every tensor it writes it has also read). A plain copy would undercount: the CPU reads each
    destination line before writing it, so a copy moves 3 numbers per element, not 2.
    """
    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be >= 1, got n={n}, repeats={repeats}")
    device = torch.device(device)
    x = torch.ones(n, dtype=dtype, device=device)
    y = torch.ones_like(x)
    best = math.inf
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        y.add_(x, alpha=1e-3)
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 3 * n * x.element_size() / best


def floor_seconds(numbers_per_parameter: float, n_params: int, element_size: int, bytes_per_second: float) -> float:
    """The least time a step can take: the bytes it must move over the memory bandwidth."""
    if min(numbers_per_parameter, n_params, element_size, bytes_per_second) <= 0:
        raise ValueError("numbers_per_parameter, n_params, element_size and bytes_per_second must be > 0")
    return numbers_per_parameter * n_params * element_size / bytes_per_second


def seconds_per_step(optimizer: torch.optim.Optimizer, steps: int = 10, blocks: int = 5) -> float:
    """Median over ``blocks`` of the seconds per ``optimizer.step()`` in a block of ``steps`` steps.

    Only the step is timed: the gradients already in ``.grad`` are reused. Step once before
    timing, so that the state exists (and a compiled step has compiled).
    """
    if steps < 1 or blocks < 1:
        raise ValueError(f"steps and blocks must be >= 1, got steps={steps}, blocks={blocks}")
    times = sorted(block_seconds(optimizer, steps) for _ in range(blocks))
    return times[len(times) // 2]


def block_seconds(optimizer: torch.optim.Optimizer, steps: int) -> float:
    """Seconds per ``optimizer.step()`` over ``steps`` consecutive steps (CUDA synchronized around them)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    device = params[0].device if params else torch.device("cpu")
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def mlp_parameters(n_params: int, *, layers: int = 4, dtype=torch.float32, device="cpu", seed: int = 0) -> list:
    """The parameters of an MLP of ``layers`` square layers (weights (h, h), biases (h,)), about
    ``n_params`` numbers in all, with random values and random gradients already in ``.grad``."""
    if n_params < 2 * layers or layers < 1:
        raise ValueError(f"need layers >= 1 and n_params >= 2 * layers, got n_params={n_params}, layers={layers}")
    width = max(1, round((-1 + math.sqrt(1 + 4 * n_params / layers)) / 2))  # layers * (h^2 + h) = n
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in [s for _ in range(layers) for s in ((width, width), (width,))]:
        p = torch.randn(shape, generator=generator, dtype=dtype).to(device).requires_grad_(True)
        p.grad = torch.randn(shape, generator=generator, dtype=dtype).to(device)
        params.append(p)
    return params


def make_optimizer(name: str, implementation: str, params: list):
    """Optimizer ``name`` (a key of :data:`OPTIMIZERS`) over ``params`` in one of :data:`IMPLEMENTATIONS`;
    None where torch has no such path for these tensors (no fused kernel for the device or dtype)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    ours, theirs, hyper = OPTIMIZERS[name]
    if implementation.startswith("optlib"):
        kind = {"optlib": "single", "optlib foreach": "foreach", "optlib compiled": "compiled"}[implementation]
        return ours(params, implementation=kind, **hyper)
    options = {"torch": {}, "torch foreach": dict(foreach=True), "torch fused": dict(fused=True)}[implementation]
    try:
        return theirs(params, **hyper, **options)
    except (RuntimeError, ValueError):
        return None
