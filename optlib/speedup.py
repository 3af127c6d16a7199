"""How much faster one optimizer is than another, measured fairly.

Each method trains the same model from the same initialization over a grid of learning rates;
runs that blew up are set aside, and for every target loss each method is judged at its best
stable learning rate by the number of steps it needs to reach the target. Comparing two methods
at one shared, untuned learning rate can show anything from a slow-down to a large gain.

A run counts as unstable when it stopped on a NaN/inf loss or when its loss rose above
``factor`` times its initial value (in float64 a diverging run may take long to overflow, so
"stopped" alone is not enough).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from torch import nn

from optlib import _validate
from optlib.data import Dataset
from optlib.run import Trace, train

#: A run whose loss rises above this many times its initial value counts as unstable.
UNSTABLE_FACTOR = 100.0
__all__ = ["UNSTABLE_FACTOR", "best_steps_table", "best_steps_to", "is_unstable", "peak_loss_ratio",
           "train_over_lrs"]


def train_over_lrs(make_model: Callable[[], nn.Module], loss_fn: Callable, data: Dataset, method,
                   lrs: Sequence[float], *, steps: int, name: str = "", trained: dict | None = None,
                   **hyperparams) -> dict[float, Trace]:
    """Full-batch training of a fresh ``make_model()`` for ``steps`` steps at each learning rate of ``lrs``.

    Returns ``{lr: trace}``. A run stops early when its loss turns NaN/inf (``trace.stopped`` says
    so). ``make_model`` must build the same initialization every time (a seeded generator), so
    the runs differ only in the learning rate; traces are named ``"<name>, lr <lr>"``. Pass a
    dict as ``trained`` to keep the trained models too: ``trained[lr]`` is the model after its run.
    """
    lrs = [_validate.positive("each learning rate", lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs must not be empty")
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"lrs must be distinct, got {lrs}")
    _validate.positive_int("steps", steps)
    if trained is not None and not isinstance(trained, dict):
        raise TypeError(f"trained must be a dict (or None), got {type(trained).__name__}")
    traces = {}
    for lr in lrs:
        model = make_model()
        traces[lr] = train(model, loss_fn, data, method, steps=steps, lr=lr, on_nonfinite="stop",
                           name=f"{name}, lr {lr:.3g}" if name else f"lr {lr:.3g}", **hyperparams)
        if trained is not None:
            trained[lr] = model
    return traces


def peak_loss_ratio(trace: Trace) -> float:
    """The largest recorded loss divided by the initial loss (``inf`` when a loss was NaN/inf)."""
    if not trace.loss:
        raise ValueError("the trace recorded no loss")
    if not all(math.isfinite(v) for v in trace.loss):
        return math.inf
    return max(trace.loss) / trace.loss[0]


def is_unstable(trace: Trace, factor: float = UNSTABLE_FACTOR) -> bool:
    """True when the run stopped early (NaN/inf) or its loss rose above ``factor`` times its start."""
    factor = _validate.positive("factor", factor)
    return trace.stopped is not None or peak_loss_ratio(trace) > factor


def best_steps_to(traces: Mapping[float, Trace], target: float, *,
                  factor: float = UNSTABLE_FACTOR) -> tuple[int, float] | None:
    """``(steps, lr)``: the fewest steps to a loss <= ``target`` among the stable runs of ``{lr: trace}``.

    Ties go to the smaller learning rate; None when no stable run reaches the target.
    """
    _validate._number("target", target)
    reached = [(trace.steps_to(target), lr) for lr, trace in traces.items()
               if not is_unstable(trace, factor) and trace.steps_to(target) is not None]
    return min(reached) if reached else None


def best_steps_table(sweeps: Mapping[str, Mapping[float, Trace]], targets: Sequence[float], *,
                     factor: float = UNSTABLE_FACTOR) -> str:
    """A text table of :func:`best_steps_to`: a row per target loss, a column per method.

    ``sweeps`` is ``{method name: {lr: trace}}``; each cell reads ``"steps (lr <best lr>)"``, or
    ``"not reached"`` when no stable run of that method reached the target.
    """
    from optlib.tuning import format_table

    if not sweeps:
        raise ValueError("sweeps must name at least one method")
    rows = []
    for target in targets:
        cells = []
        for runs in sweeps.values():
            found = best_steps_to(runs, target, factor=factor)
            cells.append("not reached" if found is None else f"{found[0]} (lr {found[1]:.3g})")
        rows.append([f"{target:g}", *cells])
    return format_table(rows, ["target loss", *sweeps])
