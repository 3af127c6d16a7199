"""Tests of optlib.tuning: validation split, grids, sweeps, choosing the best, targets, tables, evaluation counts."""
import math
from functools import partial

import numpy as np
import pytest
import torch

from optlib import data, losses, models, optim, tuning
from optlib.run import Trace


@pytest.fixture(scope="module")
def blobs():
    """A tiny deterministic 3-class problem: Gaussian blobs in 2-D, 60 train (every 10th label flipped,
    so no linear classifier reaches zero loss), 30 test."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])

    def draw(n):
        y = torch.arange(3).repeat(n // 3)
        return centres[y] + 0.5 * torch.randn(len(y), 2, generator=g), y

    X_tr, y_tr = draw(60)
    X_te, y_te = draw(30)
    y_tr[::10] = (y_tr[::10] + 1) % 3
    return data.Dataset(X_tr, y_tr, X_te, y_te)


def linear(gen):
    return models.LinearClassifier(2, 3, generator=gen)


# ---------------------------------------------------------------- validation split
def test_validation_split_partitions_the_training_set(blobs):
    split = tuning.validation_split(blobs, 0.25, generator=torch.Generator().manual_seed(1))
    assert len(split.X_test) == 15 and len(split.X_train) == 45
    together = torch.cat([split.X_train, split.X_test])
    # every training example lands in exactly one part (rows are distinct floats)
    assert torch.equal(torch.sort(together[:, 0]).values, torch.sort(blobs.X_train[:, 0]).values)
    labels = torch.cat([split.y_train, split.y_test])
    assert torch.equal(torch.bincount(labels), torch.bincount(blobs.y_train))
    again = tuning.validation_split(blobs, 0.25, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.X_test, split.X_test)
    other = tuning.validation_split(blobs, 0.25, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(other.X_test, split.X_test)
    # the original test set is not used
    assert not any(torch.equal(row, t) for row in split.X_test for t in blobs.X_test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1, 0.001])
def test_validation_split_rejects_bad_fractions(blobs, fraction):
    with pytest.raises(ValueError):
        tuning.validation_split(blobs, fraction)


# ---------------------------------------------------------------- grids
def test_log_grid_is_geometric_and_rounded():
    values = tuning.log_grid(1e-3, 1e-1, 5)
    assert values == [0.001, 0.00316, 0.01, 0.0316, 0.1]
    ratios = np.diff(np.log10(tuning.log_grid(1e-4, 1.0, 9)))
    np.testing.assert_allclose(ratios, 0.5, atol=2e-3)  # 3 significant digits
    assert tuning.log_grid(0.5, 0.5, 1) == [0.5]


@pytest.mark.parametrize("args", [(0.0, 1.0, 3), (-1.0, 1.0, 3), (1.0, 0.1, 3), (0.1, 1.0, 0), (0.1, 1.0, 1),
                                  (0.1, math.inf, 3)])
def test_log_grid_rejects_bad_input(args):
    with pytest.raises(ValueError):
        tuning.log_grid(*args)


def test_grid_is_the_cartesian_product_in_order():
    configs = tuning.grid(lr=[0.1, 1.0], weight_decay=[0.0, 0.01, 0.1])
    assert len(configs) == 6
    assert configs[0] == {"lr": 0.1, "weight_decay": 0.0}
    assert configs[2] == {"lr": 0.1, "weight_decay": 0.1}
    assert configs[3] == {"lr": 1.0, "weight_decay": 0.0}


def test_grid_rejects_bad_input():
    with pytest.raises(ValueError):
        tuning.grid()
    with pytest.raises(ValueError):
        tuning.grid(lr=[])
    with pytest.raises(TypeError):
        tuning.grid(lr=0.1)
    with pytest.raises(TypeError):
        tuning.grid(name="adam")


# ---------------------------------------------------------------- sweep and best
def test_sweep_calls_evaluate_per_config_and_best_picks_the_minimum():
    calls = []

    def evaluate(lr):
        calls.append(lr)
        # a validation loss with its minimum at lr = 0.01 on a log scale
        return tuning.Result("toy", {"lr": lr}, {"val_loss": (math.log10(lr) + 2) ** 2, "val_acc": -abs(lr - 1)})

    results = tuning.sweep(evaluate, tuning.grid(lr=tuning.log_grid(1e-4, 1.0, 9)))
    assert calls == tuning.log_grid(1e-4, 1.0, 9)
    assert tuning.best(results).config == {"lr": 0.01}
    assert tuning.best(results, "val_acc", mode="max").config == {"lr": 1.0}


def test_best_skips_diverged_and_nan_and_breaks_ties_by_order():
    rs = [tuning.Result("a", {"lr": 1}, {"val_loss": 0.5}),
          tuning.Result("b", {"lr": 2}, {"val_loss": 0.1, "diverged": True}),
          tuning.Result("c", {"lr": 3}, {"val_loss": float("nan")}),
          tuning.Result("d", {"lr": 4}, {"val_loss": 0.5}),
          tuning.Result("e", {"lr": 5}, {"val_loss": math.inf})]
    assert tuning.best(rs).name == "a"
    assert tuning.best(rs, mode="max").name == "a"  # inf is a diverged run, not the best
    with pytest.raises(ValueError):
        tuning.best(rs[1:3])
    with pytest.raises(ValueError):
        tuning.best([])
    with pytest.raises(KeyError):
        tuning.best(rs, "val_acc")
    with pytest.raises(ValueError):
        tuning.best(rs, mode="lowest")


def test_sweep_rejects_bad_input():
    with pytest.raises(ValueError):
        tuning.sweep(lambda **c: None, [])
    with pytest.raises(TypeError):
        tuning.sweep(lambda lr: lr, [{"lr": 0.1}])
    with pytest.raises(TypeError):
        tuning.sweep(lambda lr: tuning.Result("x", {}), [0.1])


def test_sweep_of_real_training_picks_a_working_learning_rate(blobs):
    split = tuning.validation_split(blobs, 0.25, generator=torch.Generator().manual_seed(0))

    def evaluate(lr):
        return tuning.train_and_validate(linear, losses.softmax_loss, split, optim.SGD, epochs=5, batch_size=15,
                                         seed=0, lr=lr)

    results = tuning.sweep(evaluate, tuning.grid(lr=[1e-6, 0.3, 1e6]))
    tiny, good, huge = results
    assert tiny["val_loss"] > 1.0 > 0.3 > good["val_loss"]  # ln 3 = 1.10 at the start
    assert good["val_acc"] > 0.9 and not good["diverged"]
    assert huge["diverged"] and huge["val_loss"] == math.inf
    assert tuning.best(results).config == {"lr": 0.3}


def test_train_and_validate_is_determined_by_the_seed(blobs):
    split = tuning.validation_split(blobs, 0.25, generator=torch.Generator().manual_seed(0))
    kw = dict(epochs=3, batch_size=10, eval_every=1, test=(blobs.X_test, blobs.y_test), lr=0.05)
    a = tuning.train_and_validate(linear, losses.softmax_loss, split, optim.SGD, seed=4, **kw)
    b = tuning.train_and_validate(linear, losses.softmax_loss, split, optim.SGD, seed=4, **kw)
    c = tuning.train_and_validate(linear, losses.softmax_loss, split, optim.SGD, seed=5, **kw)
    assert a.metrics == b.metrics and a.trace.loss == b.trace.loss
    assert a.trace.loss != c.trace.loss
    assert a.seed == 4 and a.config == {"lr": 0.05}
    assert {"train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "diverged"} <= set(a.metrics)
    steps, values = a.trace.metric("train_loss")
    assert list(steps) == list(range(a.trace.steps + 1))  # 45 examples / 10 -> 5 steps per epoch, 15 steps
    assert a.trace.steps == 15
    assert values[-1] == pytest.approx(a["train_loss"], rel=1e-6)
    assert a["initial_train_loss"] == pytest.approx(values[0], rel=1e-6)


def test_a_zero_learning_rate_counts_as_no_progress(blobs):
    split = tuning.validation_split(blobs, 0.25, generator=torch.Generator().manual_seed(0))
    r = tuning.train_and_validate(linear, losses.softmax_loss, split, optim.SGD, epochs=1, batch_size=None, lr=0.0)
    assert r["diverged"] and r["val_loss"] == math.inf


# ---------------------------------------------------------------- targets
def test_steps_to_target():
    steps, values = [0, 5, 10, 15], [2.0, 0.5, 0.1, 0.05]
    assert tuning.steps_to_target(steps, values, 0.1) == 10  # equality counts
    assert tuning.steps_to_target(steps, values, 0.09) == 15
    assert tuning.steps_to_target(steps, values, 3.0) == 0
    assert tuning.steps_to_target(steps, values, 0.01) is None
    assert tuning.steps_to_target([0, 1, 2], [1.0, float("nan"), 0.2], 0.5) == 2  # NaN never reaches a target
    with pytest.raises(ValueError):
        tuning.steps_to_target([0, 5, 5], [1.0, 0.5, 0.1], 0.2)
    with pytest.raises(ValueError):
        tuning.steps_to_target([0, 5], [1.0, 0.5, 0.1], 0.2)
    with pytest.raises(ValueError):
        tuning.steps_to_target(steps, values, float("nan"))


def test_time_to_target_reads_the_clock_after_that_many_steps():
    trace = Trace(time=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    trace.metrics["train_loss"] = [(0, 2.0), (2, 1.0), (4, 0.3), (6, 0.1)]
    assert tuning.time_to_target(trace, 0.3) == 2.0  # after 4 steps: entry 3
    assert tuning.time_to_target(trace, 0.1) == 3.0
    assert tuning.time_to_target(trace, 5.0) == 0.0
    assert tuning.time_to_target(trace, 0.01) is None
    with pytest.raises(KeyError):
        tuning.time_to_target(trace, 0.1, metric="val_loss")


def test_mean_std():
    assert tuning.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert tuning.mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        tuning.mean_std([])


# ---------------------------------------------------------------- tables
def test_format_table_aligns_columns_and_strips_trailing_spaces():
    text = tuning.format_table([["SGD", 0.3, "1.25 s"], ["Adam", 0.01, "12.5 s"]], ["optimizer", "lr", "time"],
                               align="lrl")
    lines = text.split("\n")
    assert lines[0] == "optimizer    lr  time"
    assert lines[1] == "---------  ----  ------"
    assert lines[2] == "SGD         0.3  1.25 s"
    assert lines[3] == "Adam       0.01  12.5 s"
    assert all(line == line.rstrip() for line in lines)
    # a wider time in the last, left-aligned column changes nothing before it
    other = tuning.format_table([["SGD", 0.3, "1.2 s"], ["Adam", 0.01, "3.4 s"]], ["optimizer", "lr", "time"],
                                align="lrl")
    assert [line[:15] for line in other.split("\n")[2:]] == [line[:15] for line in lines[2:]]


def test_format_table_rejects_bad_input():
    with pytest.raises(ValueError):
        tuning.format_table([["a", 1]], ["x", "y", "z"])
    with pytest.raises(ValueError):
        tuning.format_table([["a", 1]], ["x", "y"], align="lc")
    with pytest.raises(ValueError):
        tuning.format_table([["a", 1]], ["x", "y"], align="l")
    with pytest.raises(ValueError):
        tuning.format_table([], [])
    with pytest.raises(ValueError):
        tuning.format_table(["ab"], ["x", "y"])


# ---------------------------------------------------------------- evaluation counts
def test_count_evaluations_of_a_plain_method_is_one_per_step(blobs):
    model = linear(torch.Generator().manual_seed(0))
    log = tuning.count_evaluations(model, losses.softmax_loss, blobs.X_train, blobs.y_train, optim.SGD, steps=20,
                                   lr=0.5)
    assert log.evaluations == 20 and log.iteration == list(range(20)) and log.iterations == 20
    assert all(b < a for a, b in zip(log.loss, log.loss[1:]))  # GD with a small step decreases the loss
    assert log.final_loss < log.loss[-1]
    assert log.to_target(log.loss[5]) == (5, 6)
    assert log.to_target(-1.0) is None
    np.testing.assert_array_equal(log.best_per_iteration(), log.loss)


def test_count_evaluations_matches_lbfgs_own_counters(blobs):
    model = models.MLP((2, 8, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X = blobs.X_train.double()
    lbfgs = partial(torch.optim.LBFGS, lr=1, max_iter=25, history_size=5, line_search_fn="strong_wolfe")
    log = tuning.count_evaluations(model, losses.softmax_loss, X, blobs.y_train, lbfgs, steps=1)
    # the same run without the log, to read the optimizer's own counters
    model2 = models.MLP((2, 8, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    opt = lbfgs(model2.parameters())

    def closure():
        opt.zero_grad()
        loss = losses.softmax_loss(model2(X), blobs.y_train)
        loss.backward()
        return loss

    opt.step(closure)
    own = opt.state[opt.param_groups[0]["params"][0]]
    assert log.evaluations == own["func_evals"] and log.iterations == own["n_iter"]
    assert log.iteration[0] == 0 and log.iteration == sorted(log.iteration)
    best = log.best_per_iteration()
    assert len(best) == max(log.iteration) + 1 and np.all(np.diff(best) <= 0)
    assert best[-1] < 0.3 * best[0]
    assert log.evaluations >= log.iterations + 1  # the start, then at least one trial point per iteration
    with torch.no_grad():
        assert log.final_loss == pytest.approx(float(losses.softmax_loss(model2(X), blobs.y_train)), rel=1e-12)


def test_evaluation_log_without_a_run_counts_iterations_from_its_labels():
    log = tuning.EvaluationLog(iteration=[0, 1, 1, 2], loss=[3.0, 2.5, 1.0, 0.5])
    assert log.iterations == 2 and log.evaluations == 4
    np.testing.assert_array_equal(log.best_per_iteration(), [3.0, 1.0, 0.5])
    assert log.to_target(1.0) == (1, 3)


def test_count_evaluations_rejects_bad_input(blobs):
    model = linear(torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        tuning.count_evaluations(model, losses.softmax_loss, blobs.X_train, blobs.y_train, optim.SGD, steps=0, lr=0.1)
    with pytest.raises(TypeError):
        tuning.count_evaluations(model, losses.softmax_loss, blobs.X_train, blobs.y_train, lambda p, lr: object(),
                                 steps=1, lr=0.1)
