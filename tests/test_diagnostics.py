"""Tests of optlib.diagnostics: loss at initialization, overfitting a tiny subset, update-to-weight ratios,
loss-curve shapes."""
import math
from functools import partial

import numpy as np
import pytest
import torch

from optlib import data, diagnostics, losses, models, optim, tuning


@pytest.fixture(scope="module")
def problem():
    """60 random 8-dimensional points with 4 balanced random labels (float64)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 8, generator=g, dtype=torch.float64)
    y = torch.arange(4).repeat(15)
    return X, y


def mlp(seed=0):
    return models.MLP((8, 32, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------- loss at initialization
@pytest.mark.parametrize("classes", [2, 10, 1000])
def test_expected_initial_loss_is_the_loss_of_uniform_predictions(classes):
    scores = torch.zeros(5, classes, dtype=torch.float64)
    y = torch.arange(5) % classes
    assert diagnostics.expected_initial_loss(classes) == pytest.approx(losses.softmax_loss(scores, y).item(),
                                                                         rel=1e-14)
    assert diagnostics.expected_initial_loss(10) == pytest.approx(2.302585092994046, rel=1e-15)


@pytest.mark.parametrize("bad", [0, 1, -3, 2.5, True])
def test_expected_initial_loss_rejects_bad_class_counts(bad):
    with pytest.raises(ValueError):
        diagnostics.expected_initial_loss(bad)


def test_initial_loss_of_a_zero_network_is_ln_c_and_restores_the_mode(problem):
    X, y = problem
    net = mlp()
    with torch.no_grad():
        net.net[-1].weight.zero_()
        net.net[-1].bias.zero_()
    net.train()
    value = diagnostics.initial_loss(net, losses.softmax_loss, X, y)
    assert value == pytest.approx(math.log(4), rel=1e-14)
    assert net.training
    net.eval()
    diagnostics.initial_loss(net, losses.softmax_loss, X, y)
    assert not net.training


def test_initial_loss_grows_with_the_scale_of_the_output_layer(problem):
    X, y = problem
    values = []
    for scale in (1, 10, 100):
        net = mlp()
        with torch.no_grad():
            net.net[-1].weight.mul_(scale)
        values.append(diagnostics.initial_loss(net, losses.softmax_loss, X, y))
    assert values[0] == pytest.approx(math.log(4), abs=0.2)
    assert values[0] < values[1] < values[2]


def test_initial_loss_rejects_bad_input(problem):
    X, y = problem
    with pytest.raises(TypeError):
        diagnostics.initial_loss(lambda x: x, losses.softmax_loss, X, y)
    with pytest.raises(ValueError, match="same length"):
        diagnostics.initial_loss(mlp(), losses.softmax_loss, X, y[:10])


# ---------------------------------------------------------------- overfitting a tiny subset
def test_a_healthy_mlp_overfits_a_tiny_subset(problem):
    X, y = problem
    r = diagnostics.overfit_subset(mlp(), losses.softmax_loss, X, y, optim.Adam, size=16, steps=150, lr=0.01)
    assert r.size == 16 and len(r.losses) == 151 and len(r.indices) == 16
    assert len(set(r.indices.tolist())) == 16  # drawn without replacement
    assert r.passed() and r.accuracy == 1.0 and r.final_loss < 1e-2
    assert r.losses[0] == pytest.approx(diagnostics.initial_loss(mlp(), losses.softmax_loss, X[r.indices],
                                                                 y[r.indices]), rel=1e-12)
    hit = r.steps_to(1e-2)
    assert hit is not None and r.losses[hit] <= 1e-2 and np.all(r.losses[:hit] > 1e-2)
    assert r.steps_to(0.0) is None


def test_softmax_applied_twice_cannot_go_below_its_floor(problem):
    X, y = problem
    broken = torch.nn.Sequential(mlp(), torch.nn.Softmax(dim=1))
    r = diagnostics.overfit_subset(broken, losses.softmax_loss, X, y, optim.Adam, size=16, steps=150, lr=0.03)
    floor = math.log(1 + 3 / math.e)  # 4 classes: the best is p_y = 1, the others 0, before the 2nd softmax
    assert r.final_loss >= floor - 1e-12
    assert r.final_loss < floor + 1e-2  # it gets there, and no further
    assert not r.passed()


def test_overfit_subset_draws_the_same_examples_for_the_same_seed(problem):
    X, y = problem
    run = partial(diagnostics.overfit_subset, loss_fn=losses.softmax_loss, X=X, y=y, method=optim.SGD, size=8,
                  steps=3, lr=0.1)
    a, b, c = run(mlp()), run(mlp()), run(mlp(), seed=1)
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    np.testing.assert_array_equal(a.losses, b.losses)


def test_overfit_subset_rejects_bad_input(problem):
    X, y = problem
    with pytest.raises(ValueError, match="more than"):
        diagnostics.overfit_subset(mlp(), losses.softmax_loss, X, y, optim.SGD, size=61, steps=1, lr=0.1)
    with pytest.raises(ValueError):
        diagnostics.overfit_subset(mlp(), losses.softmax_loss, X, y, optim.SGD, size=0, steps=1, lr=0.1)
    with pytest.raises(ValueError):
        diagnostics.overfit_subset(mlp(), losses.softmax_loss, X, y, optim.SGD, size=4, steps=0, lr=0.1)
    with pytest.raises(ValueError, match="same length"):
        diagnostics.overfit_subset(mlp(), losses.softmax_loss, X, y[:5], optim.SGD, size=4, steps=1, lr=0.1)
    r = diagnostics.overfit_subset(mlp(), losses.softmax_loss, X, y, optim.SGD, size=4, steps=1, lr=0.1)
    with pytest.raises(ValueError):
        r.passed(loss_below=0.0)


# ---------------------------------------------------------------- update-to-weight ratio
def test_update_ratio_of_sgd_is_lr_times_gradient_over_weight_norm(problem):
    X, y = problem
    net = mlp()
    monitor = diagnostics.UpdateRatioMonitor(optim.SGD, net)
    optimizer = monitor(net.parameters(), lr=0.05)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer.zero_grad()
    losses.softmax_loss(net(X), y).backward()
    grads = {name: p.grad.detach().clone() for name, p in net.named_parameters()}
    optimizer.step()
    assert list(monitor.ratios) == [name for name, _ in net.named_parameters()]
    for name in before:
        want = 0.05 * grads[name].norm().item() / before[name].norm().item()
        assert monitor.ratios[name] == [pytest.approx(want, rel=1e-12)]
    assert monitor.median("net.0.weight") == pytest.approx(monitor.ratios["net.0.weight"][0])
    assert set(monitor.median()) == set(before)


def test_update_ratio_of_a_zero_tensor_is_inf():
    net = torch.nn.Linear(3, 2, dtype=torch.float64)
    with torch.no_grad():
        net.bias.zero_()
    monitor = diagnostics.UpdateRatioMonitor(optim.SGD, net)
    optimizer = monitor(net.parameters(), lr=0.1)
    net(torch.ones(4, 3, dtype=torch.float64)).sum().backward()
    optimizer.step()
    assert monitor.ratios["bias"] == [math.inf] and math.isfinite(monitor.ratios["weight"][0])


def test_recording_update_ratios_does_not_change_the_run():
    digits = data.load_digits(dtype=torch.float64)
    split = tuning.validation_split(digits, 0.2, generator=torch.Generator().manual_seed(0))

    def make(gen):
        return models.MLP((64, 16, 10), generator=gen, dtype=torch.float64)

    common = dict(epochs=1, batch_size=128, seed=3, eval_every=2, lr=0.01)
    plain = tuning.train_and_validate(make, losses.softmax_loss, split, optim.Adam, **common)
    watched = tuning.train_and_validate(make, losses.softmax_loss, split, optim.Adam, update_ratios=True, **common)
    assert plain.update_ratios is None
    assert watched.metrics == plain.metrics and watched.trace.loss == plain.trace.loss
    assert watched.name == plain.name == "Adam"
    steps = plain.trace.steps
    assert set(watched.update_ratios) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    assert all(len(v) == steps and all(x > 0 for x in v) for v in watched.update_ratios.values())
    # Adam's first step moves every coordinate by about lr: ratio ~ lr * sqrt(n) / ||W||
    W = make(torch.Generator().manual_seed(3)).net[0].weight
    first = watched.update_ratios["net.0.weight"][0]
    assert first == pytest.approx(0.01 * math.sqrt(W.numel()) / W.norm().item(), rel=0.05)


def test_update_ratio_monitor_rejects_bad_input():
    net, other = mlp(), mlp(1)
    with pytest.raises(TypeError):
        diagnostics.UpdateRatioMonitor("SGD", net)
    with pytest.raises(TypeError):
        diagnostics.UpdateRatioMonitor(optim.SGD, "net")
    monitor = diagnostics.UpdateRatioMonitor(optim.SGD, net)
    with pytest.raises(ValueError, match="belong to the model"):
        monitor(other.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="Optimizer"):
        diagnostics.UpdateRatioMonitor(lambda params, **kw: object(), net)(net.parameters())
    monitor(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no step"):
        monitor.median("net.0.weight")
    with pytest.raises(KeyError):
        monitor.median("nope")


# ---------------------------------------------------------------- loss-curve shape
def test_curve_shape_reads_fall_peak_and_noise():
    falling = 2.0 * np.exp(-0.05 * np.arange(100))
    shape = diagnostics.curve_shape(falling, tail=10)
    assert shape["start"] == 2.0 and shape["peak"] == 1.0
    assert shape["end"] == pytest.approx(np.median(falling[-10:]))
    assert shape["fall"] == pytest.approx(2.0 / shape["end"])
    assert 0 < shape["noise"] < 0.2
    rising = np.array([2.0, 5.0, 400.0, 300.0])
    assert diagnostics.curve_shape(rising)["peak"] == pytest.approx(200.0)
    flat = diagnostics.curve_shape(np.ones(20))
    assert flat["fall"] == 1.0 and flat["noise"] == 0.0


def test_curve_shape_of_a_curve_that_overflowed():
    shape = diagnostics.curve_shape([2.3, 50.0, np.inf, np.nan])
    assert shape["end"] == shape["peak"] == shape["noise"] == math.inf and shape["fall"] == 0.0
    huge = diagnostics.curve_shape([2.3, 1e200, 1e300, 1e305])  # no overflow warning
    assert huge["peak"] > 1e300


@pytest.mark.parametrize("bad", [[1.0], [0.0, 1.0], [np.nan, 1.0], [-1.0, 2.0], [1.0, 0.0, 0.0]])
def test_curve_shape_rejects_bad_curves(bad):
    with pytest.raises(ValueError):
        diagnostics.curve_shape(bad, tail=2)
