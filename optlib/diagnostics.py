r"""Training diagnostics (CS231n's checklist): is the model sane before you tune it, and is a run healthy?

* **Loss at initialization.** A classifier with small random weights predicts nearly uniform
  probabilities, so its softmax cross-entropy starts at about :math:`\ln C` for C classes
  (:func:`expected_initial_loss`; 2.303 for 10 classes). :func:`initial_loss` measures it; a
  start far above :math:`\ln C` means the initial scores are too large (an initialization or
  scaling bug), far below means the labels leak into the inputs.
* **Overfit a tiny subset.** A network with thousands of parameters must drive the training loss
  of a few dozen examples to about zero and their accuracy to 100%; one that cannot is broken
  (a bug in the model, the loss or the data pipeline). :func:`overfit_subset` runs that check.
* **The update-to-weight ratio.** :math:`\lVert\Delta\theta_\ell\rVert / \lVert\theta_\ell\rVert`,
  the size of one optimizer step relative to the weights of layer ℓ. CS231n's rule of thumb is
  about :math:`10^{-3}`: much smaller, the learning rate is probably too low; much larger, too
  high. :class:`UpdateRatioMonitor` records it at every step of any ``torch.optim`` optimizer.
* **Reading loss curves.** :func:`curve_shape` summarizes a training-loss curve by what one reads
  off it: how far it fell, whether it ever rose far above its start, how noisy its end is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from optlib import _validate

__all__ = ["OverfitResult", "UpdateRatioMonitor", "curve_shape", "expected_initial_loss", "initial_loss",
           "overfit_subset"]


def expected_initial_loss(num_classes: int) -> float:
    r""":math:`\ln C`: the softmax cross-entropy of uniform predictions over ``num_classes`` classes.

    Uniform probabilities 1/C give every example the loss :math:`-\ln(1/C) = \ln C`, whatever its label.
    """
    num_classes = _validate.positive_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    return math.log(num_classes)


@torch.no_grad()
def initial_loss(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor) -> float:
    """``loss_fn(model(X), y)`` as a float, in evaluation mode and without building a graph."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    was_training = model.training
    model.eval()
    value = float(loss_fn(model(X), y))
    model.train(was_training)
    return value


@dataclass
class OverfitResult:
    """What :func:`overfit_subset` measured: the loss at every step on the subset, and the end state.

    ``losses[k]`` is the loss before step k (``losses[0]`` at the start; ``losses[-1]`` after the
    last step); ``accuracy`` is the final accuracy on the subset; ``indices`` the examples used.
    """

    size: int
    losses: np.ndarray
    accuracy: float
    indices: torch.Tensor = field(repr=False)

    @property
    def final_loss(self) -> float:
        """The loss on the subset after the last step."""
        return float(self.losses[-1])

    def passed(self, loss_below: float = 1e-2) -> bool:
        """Whether the subset was fit: final loss below ``loss_below`` and every example classified right."""
        _validate.positive("loss_below", loss_below)
        return bool(self.final_loss < loss_below and self.accuracy == 1.0)

    def steps_to(self, loss: float) -> int | None:
        """The first step after which the subset's loss was <= ``loss``, or None."""
        hits = np.flatnonzero(self.losses <= loss)
        return int(hits[0]) if len(hits) else None


def overfit_subset(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor, method, *,
                   size: int, steps: int, seed: int = 0, **hyperparams) -> OverfitResult:
    """Train ``model`` full batch on ``size`` examples of ``(X, y)`` for ``steps`` steps.

    The examples are drawn without replacement by a generator seeded with ``seed``, so two models
    checked with the same seed see the same examples. The optimizer is
    ``method(model.parameters(), **hyperparams)``. A healthy model and pipeline reach a loss near
    zero and 100% accuracy on so few examples (:meth:`OverfitResult.passed`); a broken one stalls.
    """
    size = _validate.positive_int("size", size)
    steps = _validate.positive_int("steps", steps)
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if size > len(X):
        raise ValueError(f"size={size} is more than the {len(X)} examples given")
    indices = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:size].to(X.device)
    X_sub, y_sub = X[indices], y[indices]
    optimizer = method(model.parameters(), **hyperparams)
    model.train()
    values = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(X_sub), y_sub)
        loss.backward()
        values.append(loss.item())
        optimizer.step()
    with torch.no_grad():
        scores = model(X_sub)
        values.append(float(loss_fn(scores, y_sub)))
        accuracy = (scores.argmax(1) == y_sub).double().mean().item()
    return OverfitResult(size, np.array(values), accuracy, indices)


class UpdateRatioMonitor:
    r"""Records :math:`\lVert\theta_{t+1} - \theta_t\rVert / \lVert\theta_t\rVert` of every parameter tensor at every step.

    Use it as the optimizer factory: ``monitor = UpdateRatioMonitor(method, model)``, then
    ``monitor(model.parameters(), lr=...)`` builds ``method(params, lr=...)`` with step hooks that
    copy the parameters before each step and measure the change after it. Pass ``monitor``
    wherever an optimizer class is expected (e.g. :func:`optlib.run.train`). ``ratios`` maps
    each parameter name of ``model`` (``"net.0.weight"``, ...) to the list of its ratios, one per
    step. A parameter tensor whose norm is 0 before a step records ``inf`` for that step.
    """

    def __init__(self, method, model: nn.Module):
        if not callable(method):
            raise TypeError(f"method must be an optimizer class or factory, got {method!r}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.method = method
        self._names = {id(p): name for name, p in model.named_parameters()}
        self.ratios: dict[str, list[float]] = {}
        self._before: list[torch.Tensor] = []
        self._params: list[torch.Tensor] = []

    def __call__(self, params, **hyperparams) -> torch.optim.Optimizer:
        """Build the optimizer ``method(params, **hyperparams)`` and attach the recording hooks."""
        params = list(params)
        unknown = [p for p in params if id(p) not in self._names]
        if unknown:
            raise ValueError("every parameter must belong to the model given to UpdateRatioMonitor")
        optimizer = self.method(params, **hyperparams)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"method(...) must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self._params = [p for group in optimizer.param_groups for p in group["params"]]
        for p in self._params:
            self.ratios.setdefault(self._names[id(p)], [])
        optimizer.register_step_pre_hook(self._snapshot)
        optimizer.register_step_post_hook(self._measure)
        return optimizer

    def _snapshot(self, optimizer, args, kwargs) -> None:
        self._before = [p.detach().clone() for p in self._params]

    def _measure(self, optimizer, args, kwargs) -> None:
        with torch.no_grad():
            for p, before in zip(self._params, self._before):
                norm = torch.linalg.vector_norm(before).item()
                change = torch.linalg.vector_norm(p.detach() - before).item()
                self.ratios[self._names[id(p)]].append(change / norm if norm > 0 else math.inf)
        self._before = []

    def median(self, name: str | None = None) -> dict[str, float] | float:
        """Median ratio over the recorded steps, for one parameter (``name``) or for all of them."""
        if name is not None:
            if name not in self.ratios:
                raise KeyError(f"no parameter {name!r}; recorded: {sorted(self.ratios)}")
            values = self.ratios[name]
            if not values:
                raise ValueError(f"no step has been recorded for {name!r}")
            return float(np.median(values))
        return {key: self.median(key) for key in self.ratios}


def curve_shape(losses, *, tail: int = 10) -> dict[str, float]:
    """What one reads off a training-loss curve, as numbers (losses in step order).

    ``start``; ``end``, the median of the last ``tail`` values (robust to one noisy step);
    ``fall`` = ``start / end``, how many times the loss shrank; ``peak``, the largest value over
    ``start`` (above 1: the loss rose above where it began, the mark of too high a learning rate);
    ``noise``, the standard deviation of the last ``tail`` values over their median. A curve that
    contains NaN or inf gets ``end = peak = noise = inf`` and ``fall = 0``.
    """
    values = np.asarray(losses, dtype=float).reshape(-1)
    tail = _validate.positive_int("tail", tail)
    if len(values) < 2:
        raise ValueError(f"a curve needs at least 2 values, got {len(values)}")
    start = float(values[0])
    if not math.isfinite(start) or start <= 0:
        raise ValueError(f"the first loss must be finite and positive, got {start}")
    if not np.all(np.isfinite(values)):
        return {"start": start, "end": math.inf, "fall": 0.0, "peak": math.inf, "noise": math.inf}
    last = values[-min(tail, len(values)):]
    end = float(np.median(last))
    if end <= 0:
        raise ValueError(f"losses must be positive, got a median of {end} at the end")
    return {"start": start, "end": end, "fall": start / end, "peak": float(values.max()) / start,
            "noise": float(np.std(last / end))}
