"""Tests of optlib.speedup: learning-rate sweeps, the stability verdict and steps to a target."""
import math

import pytest
import torch

from optlib import data, losses, models, optim, speedup
from optlib.run import Trace


def trace(losses_, stopped=None, name="run"):
    return Trace(name=name, loss=list(losses_), stopped=stopped, steps=len(losses_))


def test_peak_ratio_and_instability_verdict():
    assert speedup.peak_loss_ratio(trace([2.0, 1.0, 0.5])) == 1.0
    assert speedup.peak_loss_ratio(trace([2.0, 30.0, 0.5])) == 15.0
    assert speedup.peak_loss_ratio(trace([2.0, math.inf])) == math.inf
    assert not speedup.is_unstable(trace([2.0, 150.0, 1.0]))
    assert speedup.is_unstable(trace([2.0, 250.0, 1.0]))
    assert speedup.is_unstable(trace([2.0, 1.0], stopped="loss became nan at step 1"))
    assert speedup.is_unstable(trace([2.0, 30.0]), factor=10.0)
    with pytest.raises(ValueError, match="no loss"):
        speedup.peak_loss_ratio(trace([]))
    with pytest.raises(ValueError, match="factor"):
        speedup.is_unstable(trace([1.0]), factor=0.0)


def test_best_steps_to_skips_unstable_runs_and_breaks_ties_by_the_smaller_lr():
    runs = {
        0.1: trace([1.0, 0.6, 0.4, 0.2]),
        0.2: trace([1.0, 0.5, 0.2]),
        0.4: trace([1.0, 0.5, 0.2, 0.1]),
        # reaches 0.2 first, but blew up on the way
        0.8: trace([1.0, 500.0, 0.1]),
    }
    assert speedup.best_steps_to(runs, 0.2) == (2, 0.2)
    assert speedup.best_steps_to(runs, 0.1) == (3, 0.4)
    assert speedup.best_steps_to(runs, 0.01) is None
    assert speedup.best_steps_to(runs, 0.1, factor=1000.0) == (2, 0.8)
    table = speedup.best_steps_table({"A": runs, "B": {0.3: trace([1.0, 0.05])}}, [0.2, 0.01])
    lines = table.splitlines()
    assert lines[0].split() == ["target", "loss", "A", "B"]
    assert lines[2].split() == ["0.2", "2", "(lr", "0.2)", "1", "(lr", "0.3)"]
    assert lines[3].split() == ["0.01", "not", "reached", "not", "reached"]


def test_train_over_lrs_trains_one_fresh_model_per_rate():
    digits = data.load_digits(dtype=torch.float64)

    def make():
        return models.MLP((64, 8, 10), generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    runs = speedup.train_over_lrs(make, losses.softmax_loss, digits, optim.SGD, [0.1, 1.0, 1e4], steps=15,
                                  name="GD", momentum=0.5)
    assert list(runs) == [0.1, 1.0, 1e4]
    assert runs[0.1].name == "GD, lr 0.1" and runs[1e4].name == "GD, lr 1e+04"
    # same initialization: the same first loss at every rate
    assert runs[0.1].loss[0] == runs[1.0].loss[0] == runs[1e4].loss[0]
    assert runs[1.0].loss[-1] < runs[0.1].loss[-1] < runs[0.1].loss[0]
    assert speedup.is_unstable(runs[1e4]) and not speedup.is_unstable(runs[1.0])
    # trained= keeps the model of every run, after its training
    kept = {}
    again = speedup.train_over_lrs(make, losses.softmax_loss, digits, optim.SGD, [0.1, 1.0], steps=15,
                                   momentum=0.5, trained=kept)
    assert list(kept) == [0.1, 1.0] and kept[0.1] is not kept[1.0]
    final = losses.softmax_loss(kept[1.0](digits.X_train), digits.y_train).item()
    assert final == pytest.approx(again[1.0].metric("train_loss")[1][-1], rel=1e-12)
    with pytest.raises(TypeError, match="trained"):
        speedup.train_over_lrs(make, losses.softmax_loss, digits, optim.SGD, [0.1], steps=2, trained=[])
    for bad in ([], [0.1, 0.1], [-1.0]):
        with pytest.raises(ValueError):
            speedup.train_over_lrs(make, losses.softmax_loss, digits, optim.SGD, bad, steps=2)
