"""Tests of optlib.monitoring: per-layer gradient norms, initialization, sharpness, softmax-regression Hessian."""
import math

import pytest
import torch

from optlib import data, losses, models, monitoring, stability


@pytest.fixture(scope="module")
def small_data():
    d = data.load_digits(bias_column=True, dtype=torch.float64)
    return d.X_train[:200], d.y_train[:200]


def test_layer_grad_norms_match_parameters_and_global_norm():
    net = models.MLP((5, 7, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X = torch.randn(11, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    losses.softmax_loss(net(X), torch.arange(11) % 3).backward()
    norms = monitoring.layer_grad_norms(net)
    assert list(norms) == [name for name, _ in net.named_parameters()]
    for name, p in net.named_parameters():
        assert norms[name] == pytest.approx(p.grad.norm().item(), rel=1e-12)
    total = math.sqrt(sum(v * v for v in norms.values()))
    assert total == pytest.approx(stability.global_grad_norm(net.parameters()).item(), rel=1e-10)


def test_layer_grad_norms_skip_parameters_without_gradient():
    net = models.MLP((4, 3, 2))
    assert monitoring.layer_grad_norms(net) == {}
    with pytest.raises(TypeError):
        monitoring.layer_grad_norms("not a model")


def test_init_normal_sets_the_requested_scale_and_zero_bias():
    net = models.MLP((400, 300, 10))
    monitoring.init_normal_(net, gain=2.0, generator=torch.Generator().manual_seed(0))
    first = net.net[0]
    assert first.weight.std().item() == pytest.approx(2.0 / math.sqrt(400), rel=0.02)
    assert torch.count_nonzero(first.bias) == 0
    again = monitoring.init_normal_(models.MLP((400, 300, 10)), gain=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.net[0].weight, first.weight)  # reproducible from the generator


def test_he_gain_preserves_activation_scale_and_larger_gain_explodes():
    X = torch.randn(2000, 256, generator=torch.Generator().manual_seed(0))
    scales = {}
    for gain in (math.sqrt(2), 2.0):
        net = monitoring.init_normal_(models.MLP((256,) * 7 + (256,)), gain, generator=torch.Generator().manual_seed(1))
        scales[gain] = net.net[:-1](X).pow(2).mean().sqrt().item() / X.pow(2).mean().sqrt().item()
    # six hidden Linear+ReLU blocks: He keeps the scale near 1/sqrt(2) (last ReLU halves energy);
    # gain 2 multiplies it by about (2/sqrt 2)^6 = 8 more
    assert 0.4 < scales[math.sqrt(2)] < 1.2
    assert scales[2.0] / scales[math.sqrt(2)] == pytest.approx(8.0, rel=0.3)


def test_init_normal_rejects_bad_input():
    with pytest.raises(ValueError):
        monitoring.init_normal_(models.MLP((3, 2)), gain=0.0)
    with pytest.raises(ValueError):
        monitoring.init_normal_(torch.nn.ReLU())


def test_sharpness_of_a_linear_least_squares_model_is_the_top_eigenvalue():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(50, 6, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 1, 1, 0.5], dtype=torch.float64)
    y = torch.randn(50, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(6, 1, bias=False, dtype=torch.float64)
    loss_fn = lambda out, t: 0.5 * (out.squeeze(1) - t).pow(2).mean()
    exact = torch.linalg.eigvalsh(X.T @ X / 50)[-1].item()  # Hessian of the loss is X^T X / n
    assert monitoring.sharpness(model, loss_fn, X, y, iters=100, generator=gen) == pytest.approx(exact, rel=1e-6)


def test_softmax_hessian_matches_autograd(small_data):
    X, y = small_data
    W = 0.3 * torch.randn(10, X.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for lam in (0.0, 0.05):
        f = monitoring.softmax_regression_objective(X, y, 10, lam)
        auto = torch.autograd.functional.hessian(f, W.reshape(-1))
        closed = monitoring.softmax_regression_hessian(W, X, y, lam)
        torch.testing.assert_close(closed, auto, rtol=1e-9, atol=1e-12)


def test_weight_decay_shifts_every_eigenvalue_and_data_hessian_is_singular(small_data):
    X, y = small_data
    W = torch.zeros(10, X.shape[1], dtype=torch.float64)
    ev0 = torch.linalg.eigvalsh(monitoring.softmax_regression_hessian(W, X, y, 0.0))
    ev1 = torch.linalg.eigvalsh(monitoring.softmax_regression_hessian(W, X, y, 0.3))
    torch.testing.assert_close(ev1, ev0 + 0.3, rtol=0, atol=1e-12)
    # adding one vector to every class row changes nothing: at least d zero eigenvalues
    assert int((ev0.abs() < 1e-10).sum()) >= X.shape[1]


def test_fit_softmax_regression_reaches_a_stationary_point(small_data):
    X, y = small_data
    W = monitoring.fit_softmax_regression(X, y, 10, 0.1)
    w = W.reshape(-1).clone().requires_grad_(True)
    f = monitoring.softmax_regression_objective(X, y, 10, 0.1)
    (grad,) = torch.autograd.grad(f(w), w)
    assert grad.norm().item() < 1e-9
    # strongly convex: any other point is higher
    other = w.detach() + 0.01 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype)
    assert f(other).item() > f(w.detach()).item()


def test_softmax_helpers_validate_input(small_data):
    X, y = small_data
    with pytest.raises(ValueError):
        monitoring.fit_softmax_regression(X, y, 10, 0.0)
    with pytest.raises(ValueError):
        monitoring.softmax_regression_hessian(torch.zeros(10, 3, dtype=X.dtype), X, y)
    with pytest.raises(ValueError):
        monitoring.softmax_regression_hessian(torch.zeros(10, X.shape[1], dtype=X.dtype), X, y, -1.0)
    f = monitoring.softmax_regression_objective(X, y, 10)
    with pytest.raises(ValueError):
        f(torch.zeros(7, dtype=X.dtype))
