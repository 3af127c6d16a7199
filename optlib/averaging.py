r"""Iterate averaging (Polyak-Ruppert) and a noisy problem on which to measure it.

SGD with a constant step never settles: near the minimizer the minibatch noise keeps kicking
the iterate around, and the *last* iterate hovers at a noise floor proportional to the step.
Averaging the iterates cancels most of that noise. Two averages are common:

* the **uniform** (Polyak-Ruppert) average of all iterates since averaging began,
  :math:`\bar w_t = \frac1t \sum_{k=1}^{t} w_k`, which on strongly convex problems converges at the
  optimal rate :math:`O(1/t)` even when the last iterate does not (Polyak and Juditsky, 1992;
  for least squares even with a constant step: Bach and Moulines, 2013);
* the **exponential moving average** (EMA), :math:`\bar w_t = \beta \bar w_{t-1} + (1-\beta) w_t`,
  which forgets old iterates after about :math:`1/(1-\beta)` steps and is what deep-learning
  practice keeps (e.g. an EMA of the weights for evaluation).

:class:`ParameterAverage` keeps either average of a list of tensors; its updates equal those of
``torch.optim.swa_utils.AveragedModel`` (the default running mean, and
``get_ema_multi_avg_fn``), including the first update, which copies the parameters.
:func:`running_average` averages a recorded path after the fact.

:class:`NoisyLeastSquares` is a strongly convex problem with a known minimizer whose minibatch
gradients stay noisy at the minimum, and :func:`sgd_excess_curves` runs SGD on it for many seeds
at once (one row of a parameter matrix per seed, optlib's SGD and a PyTorch scheduler per
configuration), recording the excess risk of the last iterate and of the uniform average.

Schedule-Free SGD (:mod:`optlib.optim.schedule_free`) builds the average into the method:
:func:`schedule_free_curves` writes its update out on one tensor of shape (seeds, dim) per
sequence y, z, x, for any β in [0, 1] (β = 0 is SGD with Polyak averaging, β = 1 primal
averaging; :class:`~optlib.optim.schedule_free.ScheduleFreeSGD` accepts β in (0, 1) and gives the same iterates
there, tested). :func:`schedule_free_digits` trains a small MLP on digits with AdamW (constant or
cosine learning rate) or :class:`~optlib.optim.schedule_free.ScheduleFreeAdamW`, and reports the training loss
and test accuracy at the average x and, for Schedule-Free, also at y.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from optlib import _validate

#: The kinds of average :class:`ParameterAverage` keeps.
KINDS = ("uniform", "ema")
__all__ = ["DIGITS_METHODS", "KINDS", "NoisyLeastSquares", "ParameterAverage", "running_average",
           "schedule_free_curves", "schedule_free_digits", "sgd_excess_curves"]


class ParameterAverage:
    r"""A running average of some tensors (parameters), updated after every optimizer step.

    ``kind="uniform"``: :math:`\bar w_n = \bar w_{n-1} + (w_n - \bar w_{n-1})/n`, the mean of the ``n``
    values seen (Polyak-Ruppert averaging, the default of ``AveragedModel``). ``kind="ema"``:
    :math:`\bar w_n = \beta\,\bar w_{n-1} + (1-\beta)\,w_n` with ``decay`` β. In both, the first
    :meth:`update` copies the tensors. The averages are kept apart from the tensors (detached
    copies); :meth:`copy_to` writes them into tensors of the same shapes, e.g. a model's
    parameters before an evaluation.
    """

    def __init__(self, params: Iterable[torch.Tensor] | torch.Tensor, kind: str = "uniform", decay: float = 0.999):
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        if not params or not all(isinstance(p, torch.Tensor) for p in params):
            raise TypeError("params must be a tensor or a non-empty iterable of tensors")
        self.kind = _validate.one_of("kind", kind, KINDS)
        self.decay = _validate.in_range("decay", decay, 0.0, 1.0, high_inclusive=True)
        self.params = params
        self.averages = [p.detach().clone() for p in params]
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the tensors' current values into the average."""
        for avg, p in zip(self.averages, self.params):
            if self.count == 0:
                avg.copy_(p.detach())
            elif self.kind == "uniform":
                avg.lerp_(p.detach(), 1.0 / (self.count + 1))
            else:
                avg.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
        self.count += 1

    @torch.no_grad()
    def copy_to(self, params: Iterable[torch.Tensor] | torch.Tensor) -> None:
        """Write the averages into ``params`` (same number and shapes as the averaged tensors)."""
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        if len(params) != len(self.averages):
            raise ValueError(f"expected {len(self.averages)} tensors, got {len(params)}")
        for p, avg in zip(params, self.averages):
            if p.shape != avg.shape:
                raise ValueError(f"shape mismatch: {tuple(p.shape)} vs {tuple(avg.shape)}")
            p.copy_(avg)


def running_average(path, kind: str = "uniform", decay: float = 0.999) -> np.ndarray:
    """The average after each step of a recorded path (rows = steps), as :class:`ParameterAverage` forms it.

    Row k of the result averages rows 0..k of ``path`` (uniform) or is their EMA with ``decay``.
    """
    values = torch.as_tensor(np.asarray(path, dtype=float))
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError(f"path must have at least one row, got shape {tuple(values.shape)}")
    current = values[0].clone()
    average = ParameterAverage(current, kind=kind, decay=decay)
    out = []
    for row in values:
        current.copy_(row)
        average.update()
        out.append(average.averages[0].clone())
    return torch.stack(out).numpy()


@dataclass(frozen=True)
class NoisyLeastSquares:
    r"""Least squares :math:`F(w) = \frac{1}{2n}\|Xw - y\|^2` with labels :math:`y = Xw_\text{true} + \sigma\xi`.

    Its minimizer :math:`w^*` (``w_star``) is computed exactly; because of the label noise the
    per-example gradients :math:`x_i(x_i^\top w^* - y_i)` do not vanish at :math:`w^*`, so SGD's
    minibatch gradient keeps a variance there. :meth:`excess` is :math:`F(w) - F(w^*) =
    \frac12 (w - w^*)^\top H (w - w^*)` with :math:`H = X^\top X/n`, for one vector or a matrix of
    them (one per row). Build one with :meth:`make`.
    """

    X: torch.Tensor
    y: torch.Tensor
    w_star: torch.Tensor
    H: torch.Tensor

    @classmethod
    def make(cls, n: int = 1000, dim: int = 10, noise_std: float = 1.0, condition_number: float = 10.0, *,
             generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> "NoisyLeastSquares":
        """``n`` examples in ``dim`` dimensions whose feature scales spread the Hessian's eigenvalues
        over about ``condition_number``; labels with Gaussian noise of standard deviation ``noise_std``."""
        n = _validate.positive_int("n", n)
        dim = _validate.positive_int("dim", dim)
        _validate.at_least("noise_std", noise_std, 0.0)
        _validate.at_least("condition_number", condition_number, 1.0)
        if n < dim:
            raise ValueError(f"need n >= dim for a unique minimizer, got n={n}, dim={dim}")
        scales = torch.logspace(0, -0.5 * math.log10(condition_number), dim, dtype=dtype)
        X = torch.randn(n, dim, generator=generator, dtype=dtype) * scales
        w_true = torch.randn(dim, generator=generator, dtype=dtype)
        y = X @ w_true + noise_std * torch.randn(n, generator=generator, dtype=dtype)
        w_star = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
        return cls(X, y, w_star, X.T @ X / n)

    def excess(self, W: torch.Tensor) -> torch.Tensor:
        """F(w) − F(w*) for a vector w, or for each row of a matrix W."""
        D = torch.as_tensor(W, dtype=self.X.dtype) - self.w_star
        return 0.5 * ((D @ self.H) * D).sum(-1)

    def minibatch_loss(self, W: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Sum over rows s of ½ mean_b (x_{index[s, b]}·W[s] − y_{index[s, b]})²: each row's own minibatch."""
        residual = (self.X[index] * W.unsqueeze(1)).sum(-1) - self.y[index]
        return 0.5 * (residual**2).mean(-1).sum()


def sgd_excess_curves(problem: NoisyLeastSquares, configs: Mapping[str, tuple[float, Callable[[int], float]]], *,
                      steps: int, seeds: int = 16, batch_size: int = 1, record_at=None, start=None,
                      generator: torch.Generator | None = None) -> dict[str, dict[str, np.ndarray]]:
    r"""Run minibatch SGD on ``problem`` for every configuration and ``seeds`` seeds at once.

    ``configs`` maps a name to ``(lr, schedule)``: step t (from 0) is
    :math:`w \leftarrow w - \alpha_t g_t` with :math:`\alpha_t` = ``lr * schedule(t)`` (a schedule of
    :mod:`optlib.schedules`) and :math:`g_t` the gradient of a minibatch of ``batch_size`` examples
    drawn with replacement, a fresh one for every seed and configuration, so all runs are
    independent. That is :class:`~optlib.optim.sgd.SGD` with a ``LambdaLR`` (tested), written out on one
    tensor of shape (configurations, seeds, dim) so that thousands of steps of every run take a
    fraction of a second. All runs start at ``start`` (a vector of length dim; default 0); after
    every step a uniform :class:`ParameterAverage` of the iterates is updated.

    ``record_at`` (default: about 40 step counts spaced evenly on a log scale) lists the step
    counts at which the excess risk F − F* is recorded. Returns ``{name: {"steps": record_at,
    "last": (k, seeds), "average": (k, seeds)}}``.
    """
    steps = _validate.positive_int("steps", steps)
    seeds = _validate.positive_int("seeds", seeds)
    batch_size = _validate.positive_int("batch_size", batch_size)
    if not configs:
        raise ValueError("configs must name at least one (lr, schedule)")
    if record_at is None:
        record_at = np.unique(np.geomspace(1, steps, 40).round().astype(int))
    record_at = np.asarray(record_at, dtype=int)
    if record_at.ndim != 1 or record_at.size == 0 or record_at.min() < 1 or record_at.max() > steps:
        raise ValueError(f"record_at must list step counts between 1 and steps={steps}")
    names = list(configs)
    for name in names:
        lr, schedule = configs[name]
        _validate.at_least(f"lr of {name!r}", lr, 0.0)
        if not callable(schedule):
            raise TypeError(f"the schedule of {name!r} must be a callable step -> factor, got {schedule!r}")
    X, y = problem.X, problem.y
    n, dim = X.shape
    base_lr = torch.tensor([float(configs[name][0]) for name in names], dtype=X.dtype)
    W = torch.zeros(len(names), seeds, dim, dtype=X.dtype)
    if start is not None:
        start = torch.as_tensor(start, dtype=X.dtype)
        if start.shape != (dim,):
            raise ValueError(f"start must have shape ({dim},), got {tuple(start.shape)}")
        W += start
    average = ParameterAverage(W)
    wanted = set(record_at.tolist())
    last, avg = [], []
    for t in range(steps):
        index = torch.randint(0, n, (len(names), seeds, batch_size), generator=generator)
        Xb = X[index]
        residual = (Xb * W.unsqueeze(2)).sum(-1) - y[index]
        gradient = (Xb * residual.unsqueeze(-1)).mean(2)
        factors = torch.tensor([configs[name][1](t) for name in names], dtype=X.dtype)
        W -= (base_lr * factors)[:, None, None] * gradient
        average.update()
        if t + 1 in wanted:
            last.append(problem.excess(W).numpy())
            avg.append(problem.excess(average.averages[0]).numpy())
    last, avg = np.array(last), np.array(avg)
    return {name: {"steps": record_at, "last": last[:, k], "average": avg[:, k]} for k, name in enumerate(names)}


#: The methods :func:`schedule_free_digits` runs.
DIGITS_METHODS = ("adamw", "adamw_cosine", "schedule_free")


def schedule_free_curves(problem: NoisyLeastSquares, *, lr: float, beta: float, steps: int,
                         seeds: int = 16, batch_size: int = 1, r: float = 0.0, start=None, record_at=None,
                         generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
    r"""Schedule-Free SGD on ``problem`` for ``seeds`` independent runs; the excess risk of y, z, x.

    Step t = 1, 2, ...: y = (1 − β) z + β x, g = the gradient of a minibatch of ``batch_size``
    examples drawn with replacement at y, z ← z − γ g, x ← (1 − c) x + c z with
    c = t^r / Σ_{i ≤ t} i^r (``weight_lr_power`` 0, no warmup: with r = 0, x is the plain average
    of the z's after the steps). All runs start at ``start`` (default 0). Returns
    ``{"steps": record_at, "y": (k, seeds), "z": (k, seeds), "x": (k, seeds)}``, the excess risk
    F − F* at the recorded step counts (y after the step, as the parameters hold it; default: about 40 spaced evenly on a log scale).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if record_at is None:
        record_at = np.unique(np.geomspace(1, steps, 40).round().astype(int))
    record_at = np.asarray(record_at, dtype=int)
    if record_at.ndim != 1 or record_at.size == 0 or record_at.min() < 1 or record_at.max() > steps:
        raise ValueError(f"record_at must list step counts between 1 and steps={steps}")
    X, y_data = problem.X, problem.y
    n, dim = X.shape
    z = torch.zeros(seeds, dim, dtype=X.dtype)
    if start is not None:
        z += torch.as_tensor(start, dtype=X.dtype)
    x = z.clone()
    wanted = set(record_at.tolist())
    out = {"y": [], "z": [], "x": []}
    weight_sum = 0.0
    for t in range(1, steps + 1):
        y = x.lerp(z, 1 - beta)
        index = torch.randint(0, n, (seeds, batch_size), generator=generator)
        Xb = X[index]
        residual = (Xb * y.unsqueeze(1)).sum(-1) - y_data[index]
        z -= lr * (Xb * residual.unsqueeze(-1)).mean(1)
        weight = float(t) ** r
        weight_sum += weight
        x.lerp_(z, weight / weight_sum)
        if t in wanted:
            # y after the step: the point the parameters hold in train mode
            for name, w in (("y", x.lerp(z, 1 - beta)), ("z", z), ("x", x)):
                out[name].append(problem.excess(w).numpy())
    return {"steps": record_at, **{k: np.array(v) for k, v in out.items()}}


def schedule_free_digits(data, method: str, lr: float, *, seed: int, steps: int = 300, batch_size: int = 64,
                 hidden: int = 32, warmup_steps: int = 0, weight_lr_power: float = 2.0) -> dict[str, float]:
    """Train ``models.MLP((64, hidden, 10))`` (initialized by ``seed``) for ``steps`` minibatch steps.

    ``method``: ``"adamw"`` (constant ``lr``), ``"adamw_cosine"`` (``lr`` times
    ``schedules.cosine(steps)``) or ``"schedule_free"`` (:class:`~optlib.optim.schedule_free.ScheduleFreeAdamW` with
    ``warmup_steps`` and ``weight_lr_power``). Minibatches are drawn with replacement by a
    generator seeded with ``seed + 1000``. Returns the final full training loss and test accuracy
    of the evaluated model (the average x for Schedule-Free), and for Schedule-Free also at y
    (``train_loss_y``, ``test_acc_y``): the model one evaluates when ``eval()`` is forgotten.
    """
    import torch.nn.functional as F

    from optlib import models, schedules
    from optlib.optim.schedule_free import ScheduleFreeAdamW, averaged_model

    if method not in DIGITS_METHODS:
        raise ValueError(f"method must be one of {list(DIGITS_METHODS)}, got {method!r}")
    gen = torch.Generator().manual_seed(seed)
    model = models.MLP((data.X_train.shape[1], hidden, 10), generator=gen, dtype=data.X_train.dtype)
    if method == "schedule_free":
        opt = ScheduleFreeAdamW(model.parameters(), lr=lr, warmup_steps=warmup_steps,
                                weight_lr_power=weight_lr_power)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = schedules.scheduler(opt, schedules.cosine(steps)) if method == "adamw_cosine" else None
    batches = torch.Generator().manual_seed(seed + 1000)
    n = len(data.X_train)
    for _ in range(steps):
        index = torch.randint(0, n, (batch_size,), generator=batches)
        opt.zero_grad()
        F.cross_entropy(model(data.X_train[index]), data.y_train[index]).backward()
        opt.step()
        if sched is not None:
            sched.step()
    result = {}
    evaluated = averaged_model(model, opt) if method == "schedule_free" else model
    result.update(_evaluate(evaluated, data, ""))
    if method == "schedule_free":
        result.update(_evaluate(model, data, "_y"))
    return result


@torch.no_grad()
def _evaluate(model, data, suffix: str) -> dict[str, float]:
    import torch.nn.functional as F

    loss = F.cross_entropy(model(data.X_train), data.y_train).item()
    acc = (model(data.X_test).argmax(1) == data.y_test).double().mean().item()
    return {f"train_loss{suffix}": loss, f"test_acc{suffix}": acc}
