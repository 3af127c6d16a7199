r"""Learning-rate schedules as plain functions ``step -> factor``, the factor multiplying the base lr.

A schedule here is any callable ``f(t)`` with ``f(0)`` the factor of the first step. That is the
form ``torch.optim.lr_scheduler.LambdaLR`` takes, so every schedule works with PyTorch:

>>> sched = scheduler(optimizer, warmup_then(100, cosine(900)))   # doctest: +SKIP
>>> for t in range(1000): ...; optimizer.step(); sched.step()     # doctest: +SKIP

and :func:`optlib.plot.schedules` draws several in one call. The factors equal those of
``StepLR``, ``MultiStepLR``, ``CosineAnnealingLR``, ``LinearLR``, ``ExponentialLR`` and
``SequentialLR`` with the corresponding arguments (tested step by step), with one deliberate difference: after its
``total_steps`` :func:`cosine` stays at its minimum, whereas ``CosineAnnealingLR`` (periodic)
rises again.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from optlib import _validate

#: A schedule: step t -> factor that multiplies the base learning rate.
Schedule = Callable[[int], float]


def _step(t) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"a schedule is called with a step t >= 0 (an integer), got {t!r}")
    return int(t)


def constant() -> Schedule:
    """Factor 1 at every step."""
    def schedule(t: int) -> float:
        _step(t)
        return 1.0
    schedule.__name__ = "constant"
    return schedule


def step_decay(step_size: int, gamma: float = 0.1) -> Schedule:
    r"""γ^⌊t / step_size⌋: multiply the lr by γ every ``step_size`` steps (``StepLR``)."""
    _validate.positive_int("step_size", step_size)
    _validate.positive("gamma", gamma)

    def schedule(t: int) -> float:
        return gamma ** (_step(t) // step_size)
    schedule.__name__ = f"step_decay({step_size}, {gamma:g})"
    return schedule


def multistep(milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    r"""γ^(number of milestones ≤ t): drop the lr by γ at each milestone, e.g. epochs 30, 60, 90 (``MultiStepLR``)."""
    message = f"milestones must be a non-empty list of positive integers, got {milestones!r}"
    try:
        milestones = sorted(milestones)
    except TypeError:  # not iterable, or not comparable
        raise TypeError(message) from None
    if not milestones or any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 for m in milestones):
        raise ValueError(message)
    milestones = [int(m) for m in milestones]
    _validate.positive("gamma", gamma)

    def schedule(t: int) -> float:
        t = _step(t)
        return gamma ** sum(m <= t for m in milestones)
    schedule.__name__ = f"multistep({milestones}, {gamma:g})"
    return schedule


def cosine(total_steps: int, min_factor: float = 0.0) -> Schedule:
    r"""m + (1 − m)(1 + cos(π t / T)) / 2 for t ≤ T, then m: half a cosine from 1 down to m (``CosineAnnealingLR``)."""
    _validate.positive_int("total_steps", total_steps)
    _validate.in_range("min_factor", min_factor, 0.0, 1.0, high_inclusive=True)

    def schedule(t: int) -> float:
        t = min(_step(t), total_steps)
        return min_factor + (1 - min_factor) * (1 + math.cos(math.pi * t / total_steps)) / 2
    schedule.__name__ = f"cosine({total_steps})"
    return schedule


def linear(total_steps: int, start_factor: float = 1.0, end_factor: float = 0.0) -> Schedule:
    r"""s + (e − s) · min(t, T) / T: a straight line from s to e over T steps, then e (``LinearLR``)."""
    _validate.positive_int("total_steps", total_steps)
    _validate.at_least("start_factor", start_factor, 0.0)
    _validate.at_least("end_factor", end_factor, 0.0)

    def schedule(t: int) -> float:
        return start_factor + (end_factor - start_factor) * min(_step(t), total_steps) / total_steps
    schedule.__name__ = f"linear({total_steps})"
    return schedule


def inverse_sqrt(warmup_steps: int = 1) -> Schedule:
    r"""√(w / max(t, w)): constant for the first w steps, then decaying like 1/√t (the Transformer's tail)."""
    _validate.positive_int("warmup_steps", warmup_steps)

    def schedule(t: int) -> float:
        return math.sqrt(warmup_steps / max(_step(t), warmup_steps))
    schedule.__name__ = f"inverse_sqrt({warmup_steps})"
    return schedule


def exponential(gamma: float) -> Schedule:
    r"""γ^t: multiply the lr by γ after every step (``ExponentialLR``); γ = 0.999 halves it in 693 steps."""
    _validate.in_range("gamma", gamma, 0.0, 1.0, high_inclusive=True)
    if gamma == 0:
        raise ValueError("gamma must be > 0: gamma = 0 sets every lr after the first to 0")

    def schedule(t: int) -> float:
        return gamma ** _step(t)
    schedule.__name__ = f"exponential({gamma:g})"
    return schedule


def inverse_time(tau: float, power: float = 1.0) -> Schedule:
    r"""(1 + t/τ)^(−p): the classic stochastic-approximation decay, α₀/(1 + t/τ) for p = 1 ("1/t decay").

    Constant for t ≪ τ, then ∝ 1/t (p = 1) or 1/√t (p = 1/2). Robbins and Monro's conditions
    Σ α_t = ∞, Σ α_t² < ∞ hold for 1/2 < p ≤ 1; p = 1/2 is the usual choice with iterate averaging.
    Keras calls p = 1 ``InverseTimeDecay``; in PyTorch it is a ``LambdaLR``.
    """
    _validate.positive("tau", tau)
    _validate.positive("power", power)

    def schedule(t: int) -> float:
        return (1 + _step(t) / tau) ** (-power)
    schedule.__name__ = f"inverse_time({tau:g})" if power == 1 else f"inverse_time({tau:g}, power={power:g})"
    return schedule


def linear_warmup(warmup_steps: int, start_factor: float | None = None) -> Schedule:
    r"""s + (1 − s) · min(t, w) / w: from s up to 1 in w steps, then 1 (``LinearLR(s, 1, w)``); s defaults to 1/w."""
    _validate.positive_int("warmup_steps", warmup_steps)
    if start_factor is None:
        start_factor = 1.0 / warmup_steps
    _validate.in_range("start_factor", start_factor, 0.0, 1.0, high_inclusive=True)
    ramp = linear(warmup_steps, start_factor, 1.0)
    ramp.__name__ = f"linear_warmup({warmup_steps})"
    return ramp


def warmup_then(warmup_steps: int, schedule: Schedule, start_factor: float | None = None) -> Schedule:
    r"""Linear warmup for w steps, then ``schedule`` started afresh: f(t) = schedule(t − w) for t ≥ w.

    Equal to ``SequentialLR([LinearLR(s, 1, w), S], milestones=[w])`` where S is ``schedule``'s scheduler.
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a callable step -> factor, got {schedule!r}")
    ramp = linear_warmup(warmup_steps, start_factor)

    def combined(t: int) -> float:
        t = _step(t)
        return ramp(t) if t < warmup_steps else schedule(t - warmup_steps)
    combined.__name__ = f"warmup({warmup_steps}) + {getattr(schedule, '__name__', 'schedule')}"
    return combined


def scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that sets every group's lr to its base lr times ``schedule(t)``; call ``.step()`` after each step."""
    if not callable(schedule):
        raise TypeError(f"schedule must be a callable step -> factor, got {schedule!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def values(schedule: Schedule, steps: int, base_lr: float = 1.0) -> np.ndarray:
    """``base_lr · schedule(t)`` for t = 0, …, steps − 1."""
    _validate.positive_int("steps", steps)
    return base_lr * np.array([schedule(t) for t in range(steps)], dtype=float)


#: The rules of :func:`scaled_lr` for changing the batch size.
SCALING_RULES = ("linear", "sqrt")


def scaled_lr(base_lr: float, base_batch_size: int, batch_size: int, rule: str = "linear") -> float:
    r"""The lr for ``batch_size`` given one tuned at ``base_batch_size``: α·B/B₀ (linear rule, Goyal et al., 2017)
    or α·√(B/B₀) (square-root rule, which keeps the variance of the update fixed; suggested for Adam-type methods)."""
    _validate.positive("base_lr", base_lr)
    _validate.positive_int("base_batch_size", base_batch_size)
    _validate.positive_int("batch_size", batch_size)
    _validate.one_of("rule", rule, SCALING_RULES)
    ratio = batch_size / base_batch_size
    return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))
