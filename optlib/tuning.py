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

Reading a sweep: :func:`matching` (the runs at fixed hyperparameters), :func:`sweep_table` and
:func:`describe_val_loss` (what to print), :func:`cost_of_mistuning`, :func:`sweep_curves` (what to
plot), :func:`seeds_table` (the chosen configurations over fresh seeds), :func:`good_range` (how
wide the range of good learning rates is, in decades) and :func:`nudged` (a model factory whose
weights differ in their last digits, to test whether a run's result is reproducible).

Random versus grid search (Bergstra and Bengio, 2012): measure the objective once on a fine grid
of two hyperparameters, then :func:`grid_search_best` and :func:`random_search_best` say how good
the best configuration found by each strategy is, for the same number of trials, and
:func:`probability_better` how often one strategy beats the other.
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

__all__ = ["EvaluationLog", "GoodRange", "Result", "best", "config_text", "cost_of_mistuning", "count_evaluations",
           "describe_val_loss", "evaluations_table", "format_table", "good_range", "grid", "grid_search_best", "log_grid", "matching",
           "mean_std", "nudged", "probability_better", "random_search_best", "seeds_table", "steps_to_target", "steps_to_target_of",
           "sweep", "sweep_curves", "sweep_table", "time_to_target", "train_and_validate", "validation_split"]


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
    #: ``{parameter name: [ratio per step]}`` when the run recorded update-to-weight ratios
    update_ratios: dict | None = None

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
                       update_ratios: bool = False, **hyperparams) -> Result:
    """Train a fresh model on ``data`` (validation examples in its test slots) and measure it.

    ``make_model(generator)`` builds the model; one ``torch.Generator`` seeded with ``seed`` draws the
    initial weights and then the minibatch order, so a run is fully determined by ``seed``.
    Training is :func:`optlib.run.train` (``eval_every`` steps between full-training-set
    evaluations, for curves and :func:`steps_to_target`) with ``method(params, **hyperparams)``.

    ``metrics`` of the result: ``initial_train_loss``, ``train_loss``, ``train_acc`` (full training
    set, at the end), ``val_loss``, ``val_acc``, ``test_loss``/``test_acc`` when ``test=(X, y)`` is
    given, and ``diverged``: the final training loss is not finite or not below the initial one
    (such a run also gets ``val_loss = inf``, so it is never chosen).

    ``update_ratios=True`` also records the update-to-weight ratio of every parameter tensor at
    every step (:class:`optlib.diagnostics.UpdateRatioMonitor`) in ``result.update_ratios``; it
    changes nothing in the run.
    """
    from optlib.diagnostics import UpdateRatioMonitor

    _validate.positive_int("epochs", epochs)
    generator = torch.Generator().manual_seed(seed)
    model = make_model(generator)
    check_same_device(model, data)
    initial, _ = _loss_and_accuracy(model, loss_fn, data.X_train, data.y_train)
    monitor = UpdateRatioMonitor(method, model) if update_ratios else None
    if name is None:  # the trace's name is the method's, not the monitor's
        name = getattr(getattr(method, "func", method), "__name__", type(method).__name__)
    trace = train(model, loss_fn, data, monitor or method, epochs=epochs, batch_size=batch_size, eval_every=eval_every,
                  generator=generator, on_nonfinite="stop", name=name, **hyperparams)
    train_loss, train_acc = _loss_and_accuracy(model, loss_fn, data.X_train, data.y_train)
    val_loss, val_acc = _loss_and_accuracy(model, loss_fn, data.X_test, data.y_test)
    diverged = trace.stopped is not None or not math.isfinite(train_loss) or not train_loss < initial
    metrics = {"initial_train_loss": initial, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": math.inf if diverged or not math.isfinite(val_loss) else val_loss, "val_acc": val_acc}
    if test is not None:
        metrics["test_loss"], metrics["test_acc"] = _loss_and_accuracy(model, loss_fn, *test)
    metrics["diverged"] = diverged
    ratios = {k: list(v) for k, v in monitor.ratios.items()} if monitor else None
    return Result(name or trace.name, dict(hyperparams), metrics, seed, trace, ratios)


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


# ------------------------------------------------------------------------- reading a sweep


def matching(results: Iterable[Result], **config) -> list[Result]:
    """The results whose ``config`` has every given value (a key missing from a config counts as None).

    ``matching(adamw_runs, weight_decay=0.1)`` keeps the runs at that weight decay, in their order.
    """
    return [r for r in results if all(r.config.get(key) == value for key, value in config.items())]


def describe_val_loss(result: Result, unstable: float = 0.4) -> str:
    """A run's final validation loss as a sweep prints it: ``"diverged"``, ``"unstable"`` or 3 decimals.

    ``unstable``: a final validation loss above it marks a run that ended at the edge of divergence,
    whose digits change with the last bits of every number in the run, so only the verdict is shown.
    """
    _validate.positive("unstable", unstable)
    if result.metrics.get("diverged"):
        return "diverged"
    value = result["val_loss"]
    return "unstable" if not value <= unstable else f"{value:.3f}"


def config_text(config: Mapping) -> str:
    """A configuration in few characters: ``{'lr': 0.0316, 'weight_decay': 0.1}`` -> ``"lr=0.0316, wd=0.1"``."""
    short = {"weight_decay": "wd"}
    return ", ".join(f"{short.get(k, k)}={v:g}" for k, v in config.items())


def sweep_table(rows: Mapping[str, Sequence[Result]], chosen: Mapping[str, Result], *, unstable: float = 0.4,
                key: str = "lr") -> str:
    """The validation loss of every run of a sweep, one line per method, the chosen run starred.

    ``rows`` maps a method's name to its runs in grid order (one hyperparameter ``key`` varying,
    the same number of runs for each method); ``chosen[name]`` is the selected run. Columns: the
    grid's first value, the validation loss at each grid value (:func:`describe_val_loss`), headed
    by the value's ratio to the first one when every grid has the same ratios (``x 3.16``), the
    chosen run's validation accuracy, and ``edge!`` where the chosen value is the first or last of
    the grid (the grid has not bracketed the best value).
    """
    lengths = {len(runs) for runs in rows.values()}
    if len(lengths) != 1:
        raise ValueError(f"every method needs the same number of runs, got {sorted(lengths)}")
    k = lengths.pop()
    ratios = {tuple(f"{r.config[key] / runs[0].config[key]:.3g}" for r in runs) for runs in rows.values()}
    steps = [f"x {x}" for x in ratios.pop()] if len(ratios) == 1 else [f"{key} {i + 1}" for i in range(k)]
    table = []
    for name, runs in rows.items():
        if name not in chosen:
            raise KeyError(f"no chosen run for {name!r}")
        index = next((i for i, r in enumerate(runs) if r is chosen[name]), None)
        if index is None:
            raise ValueError(f"the chosen run of {name!r} is not among its runs")
        cells = [("*" if i == index else "") + describe_val_loss(r, unstable) for i, r in enumerate(runs)]
        edge = "edge!" if index in (0, k - 1) else ""
        table.append([name, f"{runs[0].config[key]:g}", *cells, f"{chosen[name]['val_acc']:.3f}", edge])
    headers = ["optimizer", f"first {key}", *steps, "val acc", ""]
    return format_table(table, headers, align="lr" + "r" * (k + 1) + "l")


def cost_of_mistuning(runs: Sequence[Result], chosen: Result, distance: int, *, unstable: float = 0.4) -> str:
    """The worse of the two runs ``distance`` grid steps from ``chosen``, relative to it.

    ``"x 1.62"`` is its validation loss over the chosen one's; ``"diverged"``/``"unstable"`` as in
    :func:`describe_val_loss`; ``" (below only)"``/``" (above only)"`` when one side is off the grid.
    """
    distance = _validate.positive_int("distance", distance)
    runs = list(runs)
    k = next((i for i, r in enumerate(runs) if r is chosen), None)
    if k is None:
        raise ValueError("the chosen run is not among the runs")
    sides = [runs[j] for j in (k - distance, k + distance) if 0 <= j < len(runs)]
    if not sides:
        raise ValueError(f"no run is {distance} grid steps from the chosen one ({len(runs)} runs)")
    worse = max(sides, key=lambda r: math.inf if r.metrics.get("diverged") else r["val_loss"])
    text = describe_val_loss(worse, unstable)
    if text not in ("diverged", "unstable"):
        text = f"x {worse['val_loss'] / chosen['val_loss']:.2f}"
    if len(sides) == 1:
        text += " (below only)" if k >= distance else " (above only)"
    return text


def sweep_curves(rows: Mapping[str, Sequence[Result]], metric, *, key: str = "lr") -> dict[str, tuple[list, list]]:
    """``{name: (grid values, metric values)}`` for plotting a sweep; diverged runs give NaN.

    ``metric`` is a metric name (``"val_loss"``), a function of a :class:`Result` (e.g. the median
    of its update-to-weight ratios), or a number: the steps each run needed to reach that training
    loss (NaN when it did not, :func:`steps_to_target` on its trace).
    """
    if not (isinstance(metric, str) or callable(metric)):
        _validate._number("metric", metric)
    curves = {}
    for name, runs in rows.items():
        values = []
        for r in runs:
            if isinstance(metric, str):
                v = r[metric]
            elif callable(metric):
                v = metric(r)
            else:
                if r.trace is None:
                    raise ValueError(f"run {r.name!r} {r.config} has no trace to read steps from")
                v = steps_to_target(*r.trace.metric("train_loss"), metric)
            values.append(math.nan if r.metrics.get("diverged") or v is None else float(v))
        curves[name] = ([r.config[key] for r in runs], values)
    return curves


def steps_to_target_of(results: Sequence[Result], target: float) -> np.ndarray:
    """Steps to the training loss ``target`` of each run (from its trace), NaN where it was not reached."""
    out = []
    for r in results:
        if r.trace is None:
            raise ValueError(f"run {r.name!r} {r.config} has no trace")
        s = steps_to_target(*r.trace.metric("train_loss"), target)
        out.append(math.nan if s is None else s)
    return np.array(out, dtype=float)


def seeds_table(runs: Mapping[str, Sequence[Result]], chosen: Mapping[str, Result], target: float,
                steps_per_epoch: int) -> str:
    """The chosen configurations re-run with fresh seeds, one line per method (means over the seeds).

    Columns: the configuration, the steps and epochs to the training loss
    ``target`` ("not reached" unless every seed reached it), the final training loss, the test
    accuracy as mean ± standard deviation, and the seconds to the target (wall clock, printed with
    its unit so that notebook tests can mask it).
    """
    steps_per_epoch = _validate.positive_int("steps_per_epoch", steps_per_epoch)
    rows = []
    for name, results in runs.items():
        steps = steps_to_target_of(results, target)
        reached = not np.isnan(steps).any()
        mean_acc, std_acc = mean_std([r["test_acc"] for r in results])
        seconds = [time_to_target(r.trace, target) for r in results]
        rows.append([name, config_text(chosen[name].config),
                     f"{steps.mean():.1f}" if reached else "not reached",
                     f"{steps.mean() / steps_per_epoch:.2f}" if reached else "-",
                     f"{np.mean([r['train_loss'] for r in results]):.4f}", f"{mean_acc:.3f} ± {std_acc:.3f}",
                     f"{np.mean(seconds):.3f} s" if reached else "-"])
    headers = ["optimizer", "chosen", "steps", "epochs", "train loss", "test accuracy", "time"]
    return format_table(rows, headers, align="llrrrrl")


@dataclass
class GoodRange:
    """The learning rates whose loss stays within ``factor`` times the best, read off a log grid.

    ``low``/``high``: the smallest and largest grid values within the margin; ``decades``:
    log10(high/low), what the grid shows; ``decades_max``: the width up to the nearest grid values
    outside the margin (or to the grid's ends, ``open`` then says which side is unbounded), an upper
    bound on the true width at the grid's resolution.
    """

    low: float
    high: float
    decades: float
    decades_max: float
    open: str = ""


def good_range(values: Sequence[float], losses: Sequence[float], factor: float = 2.0) -> GoodRange:
    """The range of ``values`` (a log grid, increasing) whose ``losses`` are <= ``factor`` times the best.

    Non-finite losses (diverged runs) count as outside. Raises ``ValueError`` when the good values
    are not contiguous on the grid (the width would then mean nothing) or none is finite.
    """
    _validate.positive("factor", factor)
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    x = np.asarray(values, dtype=float)
    y = np.asarray(losses, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"values and losses must be 1-D of equal length >= 2, got {x.shape} and {y.shape}")
    if np.any(x <= 0) or np.any(np.diff(x) <= 0):
        raise ValueError("values must be positive and increasing")
    finite = np.isfinite(y)
    if not finite.any():
        raise ValueError("no finite loss")
    good = np.flatnonzero(finite & (y <= factor * y[finite].min()))
    if np.any(np.diff(good) != 1):
        raise ValueError(f"the values within {factor}x of the best are not contiguous: {x[good].tolist()}")
    i, j = good[0], good[-1]
    lo_out, hi_out = (x[i - 1] if i > 0 else x[0]), (x[j + 1] if j + 1 < len(x) else x[-1])
    open_sides = ("below" if i == 0 else "") + (" and " if i == 0 and j == len(x) - 1 else "") + \
        ("above" if j == len(x) - 1 else "")
    return GoodRange(float(x[i]), float(x[j]), math.log10(x[j] / x[i]), math.log10(hi_out / lo_out), open_sides)


def nudged(make_model: Callable[[torch.Generator], torch.nn.Module], size: float = 1e-9, seed: int = 1):
    """A model factory like ``make_model`` whose weights are each multiplied by ``1 + size * N(0, 1)``.

    The noise comes from its own generator (``seed``), so the initial weights differ from the
    original ones by about ``size`` (relative) and the minibatch order drawn afterwards from the
    run's generator is unchanged: a test of how much a run depends on the last digits.
    """
    _validate.positive("size", size)

    def build(generator: torch.Generator) -> torch.nn.Module:
        model = make_model(generator)
        noise = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + size * torch.randn(p.shape, generator=noise, dtype=p.dtype).to(p.device))
        return model

    return build


def evaluations_table(runs: Mapping[str, tuple[torch.nn.Module, EvaluationLog]], targets: Sequence[float],
                      test: tuple[torch.Tensor, torch.Tensor] | None = None) -> str:
    """Full-batch runs side by side: iterations and evaluations to each target loss, and the end.

    ``runs`` maps a label to ``(trained model, its EvaluationLog)`` from :func:`count_evaluations`.
    Columns: for each target, the iterations and evaluations when the loss first reached it ("-":
    never); the final loss ("< 1e-10" below that, where its digits are round-off); the test
    accuracy of the trained model on ``test = (X, y)`` (no column without ``test``: after a run
    has gone on at round-off level, its final weights, and so its accuracy, are not reproducible);
    the seconds per evaluation (wall clock, printed with its unit).
    """
    from optlib.models import accuracy

    rows = []
    for name, (model, log) in runs.items():
        if log.evaluations == 0:
            raise ValueError(f"run {name!r} made no evaluation")
        cells = [name]
        for target in targets:
            hit = log.to_target(target)
            cells += [str(hit[0]), str(hit[1])] if hit else ["-", "-"]
        final = f"{log.final_loss:.1e}" if log.final_loss >= 1e-10 else "< 1e-10"
        per_eval = log.time[-1] / log.evaluations
        cells += [final] + ([f"{accuracy(model, *test):.3f}"] if test is not None else [])
        rows.append(cells + [f"{1e3 * per_eval:.2f} ms"])
    headers = ["method"]
    for target in targets:
        headers += [f"its {target:g}", "evals"]
    headers += ["final loss"] + (["test acc"] if test is not None else []) + ["per eval"]
    return format_table(rows, headers, align="l" + "r" * (len(headers) - 2) + "l")


# ------------------------------------------------------------------------- random versus grid search


def grid_search_best(surface, per_axis: int) -> np.ndarray:
    """Best (lowest) value found by every evenly spaced ``per_axis`` x ``per_axis`` grid on ``surface``.

    ``surface[i, j]`` is the measured objective at the i-th value of one hyperparameter and the
    j-th of the other (both on fine grids). A grid search tries ``per_axis`` values of each, spaced
    ``n // per_axis`` apart along an axis of ``n`` values; every position (offset) of such a grid
    that fits is one possible grid search, so the result has one entry per position.
    """
    Z = np.asarray(surface, dtype=float)
    k = _validate.positive_int("per_axis", per_axis)
    if Z.ndim != 2:
        raise ValueError(f"surface must be 2-D, got shape {Z.shape}")
    if min(Z.shape) < k:
        raise ValueError(f"a {k} x {k} grid does not fit a surface of shape {Z.shape}")
    strides = [max(n // k, 1) for n in Z.shape]
    offsets = [range(n - (k - 1) * s) for n, s in zip(Z.shape, strides)]
    best = []
    for a in offsets[0]:
        for b in offsets[1]:
            rows = a + strides[0] * np.arange(k)
            cols = b + strides[1] * np.arange(k)
            best.append(np.nanmin(Z[np.ix_(rows, cols)]))
    return np.array(best)


def random_search_best(surface, trials: int, repetitions: int, *, generator: torch.Generator | None = None,
                       return_cells: bool = False):
    """Best (lowest) value found by ``trials`` cells of ``surface`` drawn uniformly without replacement.

    One entry per repetition. Drawing from the measured fine grid stands for drawing each
    hyperparameter independently and uniformly on its (log) range, at the fine grid's resolution.
    ``return_cells=True`` also returns the drawn cells, an integer array of shape
    (repetitions, trials) of indices into ``surface`` (``np.unravel_index`` gives row and column).
    """
    Z = np.asarray(surface, dtype=float)
    trials = _validate.positive_int("trials", trials)
    repetitions = _validate.positive_int("repetitions", repetitions)
    if Z.ndim != 2:
        raise ValueError(f"surface must be 2-D, got shape {Z.shape}")
    if trials > Z.size:
        raise ValueError(f"trials={trials} is more than the {Z.size} cells of the surface")
    flat = Z.reshape(-1)
    cells = np.stack([torch.randperm(flat.size, generator=generator)[:trials].numpy() for _ in range(repetitions)])
    best = np.nanmin(flat[cells], axis=1)
    return (best, cells) if return_cells else best


def probability_better(a, b) -> float:
    """P(A < B) + P(A = B)/2 for A drawn from the values ``a`` and B from ``b``, independently.

    With losses, the probability that a search of kind A finds a better configuration than one of
    kind B (ties count half): 0.5 means neither is better.
    """
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both samples need at least one value")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("the samples must not contain NaN")
    less = (a[:, None] < b[None, :]).mean()
    equal = (a[:, None] == b[None, :]).mean()
    return float(less + 0.5 * equal)
