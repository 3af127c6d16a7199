r"""Comparing optimizers fairly: a validation split, hyperparameter grids, sweeps, choosing the best
configuration, steps and time to a target loss, evaluation counts, and result tables.

The protocol these functions support (chapter "Choosing an optimizer"):

1. carve a **validation** set out of the training set (:func:`validation_split`); the test set is
   used only once, for the final table;
2. for every optimizer, train once per configuration of a small grid, e.g. learning rates spaced
   evenly on a log scale (:func:`log_grid`, :func:`grid`, :func:`sweep`, :func:`train_and_validate`);
3. pick the configuration with the best validation metric (:func:`best`);
4. re-run the chosen configurations with several seeds and report the mean and spread
   (:func:`mean_std`), how many steps and seconds each needed to reach a target training loss
   (:func:`steps_to_target`, :func:`time_to_target`), in a plain-text table (:func:`format_table`).

:func:`count_evaluations` runs a full-batch optimizer and logs every loss-and-gradient evaluation,
which is what an iteration of a line-search method such as L-BFGS costs.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from optlib import _validate
from optlib.data import Dataset
from optlib.run import Trace, check_same_device, train

__all__ = ["EvaluationLog", "Result", "best", "count_evaluations", "format_table", "grid", "log_grid",
           "mean_std", "steps_to_target", "sweep", "time_to_target", "train_and_validate", "validation_split"]


def validation_split(dataset: Dataset, fraction: float = 0.2, *, generator: torch.Generator | None = None) -> Dataset:
    """Split ``dataset``'s *training* part into a smaller training set and a validation set.

    Returns a :class:`~optlib.data.Dataset` whose ``X_train``/``y_train`` are the remaining
    training examples and whose ``X_test``/``y_test`` hold the validation examples, so every
    function that reports "test" metrics (e.g. :func:`optlib.run.train`) reports validation
    metrics on it. ``round(fraction * n)`` examples, drawn by ``generator``, go to validation.
    The original test set is not in the result: keep it for the final evaluation.
    """
    _validate.in_range("fraction", fraction, 0.0, 1.0)
    n = len(dataset.X_train)
    n_val = round(fraction * n)
    if n_val < 1 or n_val > n - 1:
        raise ValueError(f"fraction={fraction} leaves {n_val} of {n} examples for validation; "
                         "both parts need at least one example")
    order = torch.randperm(n, generator=generator).to(dataset.X_train.device)
    val, fit = order[:n_val], order[n_val:]
    return Dataset(dataset.X_train[fit], dataset.y_train[fit], dataset.X_train[val], dataset.y_train[val])


def log_grid(low: float, high: float, num: int) -> list[float]:
    r"""``num`` values from ``low`` to ``high`` evenly spaced on a log scale, rounded to 3 significant digits.

    ``log_grid(1e-3, 1e-1, 5)`` is ``[0.001, 0.00316, 0.01, 0.0316, 0.1]``: each value is the
    previous one times :math:`(\text{high}/\text{low})^{1/(\text{num}-1)}`.
    """
    _validate.positive("low", low)
    _validate.positive("high", high)
    num = _validate.positive_int("num", num)
    if high < low:
        raise ValueError(f"high must be >= low, got low={low}, high={high}")
    if num == 1:
        if high != low:
            raise ValueError("num=1 needs low == high")
        return [float(low)]
    values = np.exp(np.linspace(math.log(low), math.log(high), num))
    return [float(f"{v:.3g}") for v in values]


def grid(**axes: Sequence) -> list[dict]:
    """All combinations of the named values: ``grid(lr=[0.1, 1], weight_decay=[0, 0.01])`` -> 4 dicts.

    The first name varies slowest (``itertools.product`` order).
    """
    if not axes:
        raise ValueError("grid needs at least one named list of values")
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"{name} must be a sequence of values, got {values!r}")
    lists = {name: list(values) for name, values in axes.items()}
    for name, values in lists.items():
        if not values:
            raise ValueError(f"{name} has no values")
    names = list(lists)
    return [dict(zip(names, combo)) for combo in itertools.product(*lists.values())]


@dataclass
class Result:
    """One training run: its label, hyperparameters, seed, final metrics and (optionally) its trace."""

    name: str
    config: dict
    metrics: dict = field(default_factory=dict)
    seed: int | None = None
    trace: Trace | None = None

    def __getitem__(self, metric: str) -> float:
        return self.metrics[metric]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.metrics.items())
        return f"Result({self.name!r}, {self.config}, {shown})"


def _loss_and_accuracy(model, loss_fn, X, y) -> tuple[float, float]:
    from optlib.models import accuracy

    was_training = model.training
    model.eval()
    with torch.no_grad():
        scores = model(X)
        loss, acc = float(loss_fn(scores, y)), accuracy(scores, y)
    model.train(was_training)
    return loss, acc


def train_and_validate(make_model: Callable[[torch.Generator], torch.nn.Module], loss_fn: Callable, data: Dataset,
                       method, *, epochs: int, batch_size: int | None, seed: int = 0, eval_every: int | None = None,
                       test: tuple[torch.Tensor, torch.Tensor] | None = None, name: str | None = None,
                       **hyperparams) -> Result:
    """Train a fresh model on ``data`` (validation examples in its test slots) and measure it.

    ``make_model(generator)`` builds the model; one ``torch.Generator`` seeded with ``seed`` draws the
    initial weights and then the minibatch order, so a run is fully determined by ``seed``.
    Training is :func:`optlib.run.train` (``eval_every`` steps between full-training-set
    evaluations, for curves and :func:`steps_to_target`) with ``method(params, **hyperparams)``.

    ``metrics`` of the result: ``initial_train_loss``, ``train_loss``, ``train_acc`` (full training
    set, at the end), ``val_loss``, ``val_acc``, ``test_loss``/``test_acc`` when ``test=(X, y)`` is
    given, and ``diverged``: the final training loss is not finite or not below the initial one
    (such a run also gets ``val_loss = inf``, so it is never chosen).
    """
    _validate.positive_int("epochs", epochs)
    generator = torch.Generator().manual_seed(seed)
    model = make_model(generator)
    check_same_device(model, data)
    initial, _ = _loss_and_accuracy(model, loss_fn, data.X_train, data.y_train)
    trace = train(model, loss_fn, data, method, epochs=epochs, batch_size=batch_size, eval_every=eval_every,
                  generator=generator, on_nonfinite="stop", name=name, **hyperparams)
    train_loss, train_acc = _loss_and_accuracy(model, loss_fn, data.X_train, data.y_train)
    val_loss, val_acc = _loss_and_accuracy(model, loss_fn, data.X_test, data.y_test)
    diverged = trace.stopped is not None or not math.isfinite(train_loss) or not train_loss < initial
    metrics = {"initial_train_loss": initial, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": math.inf if diverged or not math.isfinite(val_loss) else val_loss, "val_acc": val_acc}
    if test is not None:
        metrics["test_loss"], metrics["test_acc"] = _loss_and_accuracy(model, loss_fn, *test)
    metrics["diverged"] = diverged
    return Result(name or trace.name, dict(hyperparams), metrics, seed, trace)


def sweep(evaluate: Callable[..., Result], configs: Iterable[Mapping]) -> list[Result]:
    """Call ``evaluate(**config)`` for every config (e.g. from :func:`grid`); returns the results in order."""
    configs = list(configs)
    if not configs:
        raise ValueError("sweep needs at least one configuration")
    results = []
    for config in configs:
        if not isinstance(config, Mapping):
            raise TypeError(f"each configuration must be a mapping of keyword arguments, got {config!r}")
        result = evaluate(**config)
        if not isinstance(result, Result):
            raise TypeError(f"evaluate must return a Result, got {type(result).__name__}")
        results.append(result)
    return results


def best(results: Sequence[Result], metric: str = "val_loss", mode: str = "min") -> Result:
    """The result with the lowest (``mode='min'``) or highest (``'max'``) ``metrics[metric]``.

    Diverged runs and non-finite values (NaN, ±inf) are never chosen; ties go to the earliest result.
    Raises ``ValueError`` when no result has a usable value.
    """
    _validate.one_of("mode", mode, ("min", "max"))
    results = list(results)
    if not results:
        raise ValueError("best needs at least one result")
    candidates = []
    for r in results:
        if metric not in r.metrics:
            raise KeyError(f"result {r.name!r} {r.config} has no metric {metric!r}; it has {sorted(r.metrics)}")
        value = float(r.metrics[metric])
        if r.metrics.get("diverged") or not math.isfinite(value):
            continue
        candidates.append((value if mode == "min" else -value, r))
    if not candidates:
        raise ValueError(f"no result has a finite {metric!r} (all diverged?)")
    return min(candidates, key=lambda item: item[0])[1]  # min keeps the first of equal values


def steps_to_target(steps, values, target: float) -> int | None:
    """The first recorded step whose value is <= ``target`` (e.g. ``*trace.metric("train_loss")``), or None.

    The answer is only as fine as the recording: with ``eval_every=k`` it is a multiple of k.
    """
    _validate._number("target", target)
    steps, values = np.asarray(steps), np.asarray(values, dtype=float)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError(f"steps and values must be 1-D of equal length, got {steps.shape} and {values.shape}")
    if len(steps) > 1 and np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    hits = np.flatnonzero(values <= target)
    return int(steps[hits[0]]) if len(hits) else None


def time_to_target(trace: Trace, target: float, metric: str = "train_loss") -> float | None:
    """Seconds of training until ``trace.metrics[metric]`` first reached ``target``, or None.

    A metric recorded at step s was measured after s optimizer steps, i.e. at ``trace.time[s - 1]``
    (0 s for s = 0). The clock of :func:`optlib.run.train` also runs during its evaluations.
    """
    step = steps_to_target(*trace.metric(metric), target)
    if step is None:
        return None
    return 0.0 if step == 0 else float(trace.time[step - 1])


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of a list of numbers."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def format_table(rows: Sequence[Sequence], headers: Sequence[str], *, align: str | None = None) -> str:
    """A plain-text table: a header line, a rule, one line per row; cells are ``str()``-ed.

    ``align`` has one letter per column, ``l`` (left) or ``r`` (right); the default is the first
    column left, the others right. Trailing spaces are removed, so a left-aligned last column
    (e.g. times that a sanitizer rewrites) never changes the padding of anything else.
    """
    headers = [str(h) for h in headers]
    k = len(headers)
    if k == 0:
        raise ValueError("format_table needs at least one column")
    align = align if align is not None else "l" + "r" * (k - 1)
    if len(align) != k or set(align) - {"l", "r"}:
        raise ValueError(f"align must have one 'l' or 'r' per column ({k}), got {align!r}")
    cells = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or len(row) != k:
            raise ValueError(f"row {i} must have {k} cells, got {row!r}")
        cells.append([str(c) for c in row])
    widths = [max([len(headers[j])] + [len(r[j]) for r in cells]) for j in range(k)]

    def line(items):
        parts = [s.ljust(w) if a == "l" else s.rjust(w) for s, w, a in zip(items, widths, align)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


@dataclass
class EvaluationLog:
    """Every loss-and-gradient evaluation of a full-batch run, in order.

    ``iteration[i]`` is the number of iterations that produced the point of evaluation i (0 for
    the start), ``loss[i]`` its loss, ``time[i]`` seconds since the start. ``completed`` is the
    number of iterations the run performed (set by :func:`count_evaluations`).
    """

    name: str = ""
    iteration: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    final_loss: float = math.nan  # loss at the point after the last step (a measurement, not counted)
    completed: int | None = None

    @property
    def evaluations(self) -> int:
        """How many loss-and-gradient evaluations were made."""
        return len(self.loss)

    @property
    def iterations(self) -> int:
        """Iterations performed (``completed``), or the largest iteration label when that is unknown."""
        return self.completed if self.completed is not None else max(self.iteration, default=0)

    def to_target(self, target: float) -> tuple[int, int] | None:
        """``(iterations, evaluations)`` when an evaluated loss first was <= ``target``, or None."""
        for i, value in enumerate(self.loss):
            if value <= target:
                return self.iteration[i], i + 1
        return None

    def best_per_iteration(self) -> np.ndarray:
        """Lowest loss evaluated at a point of iteration <= k, for k = 0 .. the largest iteration label."""
        out = np.full(max(self.iteration, default=0) + 1, np.inf)
        for it, value in zip(self.iteration, self.loss):
            out[it] = min(out[it], value)
        return np.minimum.accumulate(out)


def count_evaluations(model: torch.nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor, method, *,
                      steps: int, name: str | None = None, **hyperparams) -> EvaluationLog:
    """Call ``optimizer.step(closure)`` ``steps`` times on the full batch ``(X, y)``; log every closure call.

    One closure call is one forward and backward pass over all of ``(X, y)``: the unit of cost.
    Plain methods evaluate once per step. ``torch.optim.LBFGS`` runs up to ``max_iter`` iterations
    inside one ``step`` and evaluates at every trial point of its line search; its iteration
    counter (``state['n_iter']``) labels each evaluation. Use ``steps=1, max_iter=N`` for one
    uninterrupted L-BFGS run of N iterations (every new ``step`` call re-evaluates its start point).
    """
    steps = _validate.positive_int("steps", steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = method(params, **hyperparams)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"method(...) must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
    log = EvaluationLog(name=name or getattr(getattr(method, "func", method), "__name__", "run"))
    calls = {"step": 0}

    def iteration() -> int:
        state = optimizer.state.get(params[0], {})
        return int(state["n_iter"]) if "n_iter" in state else calls["step"]

    start = time.perf_counter()

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        log.iteration.append(iteration())
        log.loss.append(loss.item())
        log.time.append(time.perf_counter() - start)
        return loss

    model.train()
    for k in range(steps):
        calls["step"] = k
        optimizer.step(closure)
    calls["step"] = steps
    log.completed = iteration()
    # the point after the last step has not been evaluated by the optimizer; measure it (not counted as cost)
    with torch.no_grad():
        log.final_loss = float(loss_fn(model(X), y))
    return log
