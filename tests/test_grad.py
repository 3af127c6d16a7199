"""optlib.grad: numerical gradients, relative error, the gradient check, Hessians."""
import math

import pytest
import torch

from optlib import grad
from optlib.grad import GradCheck, gradient_check, hessian, numerical_gradient, relative_error
from optlib.losses import softmax_loss_and_grad, svm_loss_and_grad


def smooth(x):
    return (torch.sin(x) * x**2).sum() + (x.prod() if x.numel() <= 8 else 0.0)


def smooth_grad(x):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(smooth(x), x)
    return g


@pytest.fixture
def x():
    return torch.tensor([0.3, -1.2, 2.0, 0.7], dtype=torch.float64)


def test_central_and_forward_approximate_the_gradient(x):
    exact = smooth_grad(x)
    central = numerical_gradient(smooth, x, h=1e-5, method="central")
    forward = numerical_gradient(smooth, x, h=1e-5, method="forward")
    torch.testing.assert_close(central, exact, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(forward, exact, rtol=1e-3, atol=1e-4)


def test_central_error_is_much_smaller_than_forward(x):
    exact = smooth_grad(x)
    h = 1e-4
    err_c = (numerical_gradient(smooth, x, h=h, method="central") - exact).abs().max().item()
    err_f = (numerical_gradient(smooth, x, h=h, method="forward") - exact).abs().max().item()
    assert err_c < err_f / 1000


def test_error_orders_in_h():
    # f(x) = exp(x) at x = 0: forward error ~ h/2, central error ~ h²/6
    x = torch.zeros(1, dtype=torch.float64)
    f = lambda z: torch.exp(z).sum()  # noqa: E731
    for h in (1e-2, 1e-3):
        fwd = numerical_gradient(f, x, h=h, method="forward").item() - 1.0
        cen = numerical_gradient(f, x, h=h, method="central").item() - 1.0
        assert fwd == pytest.approx(h / 2, rel=0.01)
        assert cen == pytest.approx(h**2 / 6, rel=0.01)


def test_numerical_gradient_does_not_modify_x_and_keeps_shape():
    W = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = W.clone()
    g = numerical_gradient(lambda w: (w**2).sum(), W)
    assert torch.equal(W, before)
    assert g.shape == W.shape
    torch.testing.assert_close(g, 2 * W, rtol=1e-8, atol=1e-9)


def test_numerical_gradient_accepts_non_contiguous_tensors():
    W = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Wt = W.T  # a transposed view is not contiguous
    g = numerical_gradient(lambda w: (w**3).sum(), Wt)
    assert g.shape == Wt.shape
    torch.testing.assert_close(g, 3 * Wt**2, rtol=1e-8, atol=1e-9)


def test_indices_restrict_the_work(x):
    calls = []

    def f(z):
        calls.append(1)
        return smooth(z)

    g = numerical_gradient(f, x, indices=[1, 3])
    assert len(calls) == 4  # two central differences
    assert torch.isnan(g[[0, 2]]).all()
    torch.testing.assert_close(g[[1, 3]], smooth_grad(x)[[1, 3]], rtol=1e-8, atol=1e-9)
    calls.clear()
    numerical_gradient(f, x, method="forward", indices=torch.tensor([2]))
    assert len(calls) == 2  # f(x) once, then one shifted point


def test_numerical_gradient_bad_arguments(x):
    with pytest.raises(ValueError, match="h must be a finite number > 0"):
        numerical_gradient(smooth, x, h=0)
    with pytest.raises(ValueError, match="method must be one of"):
        numerical_gradient(smooth, x, method="backward")


def test_relative_error():
    a = torch.tensor([1.0, 10.0, 0.0, -2.0, 1e-3])
    b = torch.tensor([1.1, 10.0, 0.0, 2.0, 0.0])
    torch.testing.assert_close(relative_error(a, b), torch.tensor([0.1 / 1.1, 0.0, 0.0, 2.0, 1.0]))
    # scale-free: the same relative mistake at any size gives the same error
    torch.testing.assert_close(relative_error(a * 1e6, b * 1e6), relative_error(a, b))
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(torch.zeros(2), torch.zeros(3))


@pytest.fixture(scope="module")
def softmax_problem():
    g = torch.Generator().manual_seed(0)
    W = 0.1 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    X = torch.randn(15, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (15,), generator=g)
    return W, X, y


def test_gradient_check_passes_for_a_correct_gradient(softmax_problem):
    W, X, y = softmax_problem
    reg = 0.1
    _, grad = softmax_loss_and_grad(W, X, y, reg=reg)
    check = gradient_check(lambda w: softmax_loss_and_grad(w, X, y, reg=reg)[0], W, grad)
    assert isinstance(check, GradCheck)
    assert check.passed and check.max_rel_error < 1e-7
    assert check.verdict.startswith("excellent")
    assert len(check.indices) == W.numel()
    assert "passed=True" in repr(check)


@pytest.mark.parametrize("mistake", ["missing reg", "factor 2", "sign", "one entry"])
def test_gradient_check_catches_planted_mistakes(softmax_problem, mistake):
    W, X, y = softmax_problem
    reg = 0.5
    _, right = softmax_loss_and_grad(W, X, y, reg=reg)
    wrong = {
        "missing reg": softmax_loss_and_grad(W, X, y, reg=0.0)[1],
        "factor 2": 2 * right,
        "sign": -right,
        "one entry": right.clone().index_put_((torch.tensor([1]), torch.tensor([2])), torch.tensor(0.0, dtype=right.dtype)),
    }[mistake]
    check = gradient_check(lambda w: softmax_loss_and_grad(w, X, y, reg=reg)[0], W, wrong)
    assert not check.passed
    assert check.max_rel_error > 1e-2
    assert check.verdict.startswith("wrong")


def test_gradient_check_svm_with_kinks(softmax_problem):
    W, X, y = softmax_problem
    _, grad = svm_loss_and_grad(W, X, y, reg=0.1)
    check = gradient_check(lambda w: svm_loss_and_grad(w, X, y, reg=0.1)[0], W, grad, h=1e-6)
    # away from the kinks the hinge loss is piecewise linear, so the check is tight
    assert check.max_rel_error < 1e-6


def test_gradient_check_sampling_is_reproducible(softmax_problem):
    W, X, y = softmax_problem
    _, grad = softmax_loss_and_grad(W, X, y)
    f = lambda w: softmax_loss_and_grad(w, X, y)[0]  # noqa: E731
    a = gradient_check(f, W, grad, num_checks=5, generator=torch.Generator().manual_seed(1))
    b = gradient_check(f, W, grad, num_checks=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.indices, b.indices)
    assert len(a.indices) == 5 and len(set(a.indices.tolist())) == 5
    assert torch.equal(a.indices, a.indices.sort().values)
    torch.testing.assert_close(a.analytic, grad.reshape(-1)[a.indices])
    assert a.passed


def test_gradient_check_verdict_thresholds():
    def verdict(err):
        return GradCheck(torch.arange(1), torch.zeros(1), torch.zeros(1), torch.tensor([err]), 1e-6).verdict

    assert verdict(1e-9).startswith("excellent")
    assert verdict(1e-5).startswith("acceptable")
    assert verdict(1e-3).startswith("suspicious")
    assert verdict(0.5).startswith("wrong")


def test_gradient_check_bad_arguments(x):
    with pytest.raises(ValueError, match="analytic_grad has shape"):
        gradient_check(smooth, x, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="tolerance"):
        gradient_check(smooth, x, smooth_grad(x), tolerance=0)
    with pytest.raises(ValueError, match="num_checks"):
        gradient_check(smooth, x, smooth_grad(x), num_checks=0)


def test_hessian_matches_autograd_and_a_hand_formula(x):
    H = hessian(smooth, x)
    torch.testing.assert_close(H, torch.autograd.functional.hessian(smooth, x))
    q = lambda z: 0.5 * z @ A @ z  # noqa: E731
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(hessian(q, torch.tensor([0.5, -1.0], dtype=torch.float64)), A)
    diag = hessian(lambda z: (z**4).sum(), x)
    torch.testing.assert_close(diag, torch.diag(12 * x**2))
    with pytest.raises(ValueError, match="hessian expects a vector"):
        hessian(smooth, x.reshape(2, 2))


def test_float32_round_off_is_visible():
    # the docstring's warning: in float32 the check is only good to about 1e-3
    xs = torch.tensor([0.3, -1.2, 2.0, 0.7])
    g32 = numerical_gradient(smooth, xs, h=1e-3)
    err = relative_error(g32.double(), smooth_grad(xs.double())).max().item()
    assert 1e-8 < err < 1e-1
    assert not math.isnan(err)


def test_counting_function_counts_the_cost_of_numerical_gradients(x):
    from optlib.grad import CountingFunction

    counted = CountingFunction(smooth)
    numerical_gradient(counted, x)
    assert counted.calls == 2 * x.numel()
    counted.reset()
    numerical_gradient(counted, x, method="forward")
    assert counted.calls == x.numel() + 1
    assert counted(x).item() == smooth(x).item()
    with pytest.raises(TypeError, match="f must be callable"):
        CountingFunction(3.0)


def test_finite_difference_errors_follow_h_and_h_squared_then_round_off():
    from optlib.grad import finite_difference_errors

    f = lambda z: torch.exp(z).sum()  # noqa: E731  f'(0) = 1
    hs = [1e-1, 1e-2, 1e-3]
    fwd = finite_difference_errors(f, 0.0, 1.0, hs, method="forward")
    cen = finite_difference_errors(f, 0.0, 1.0, hs, method="central")
    assert fwd.dtype == torch.float64 and fwd.shape == (3,)
    torch.testing.assert_close(fwd, torch.tensor(hs, dtype=torch.float64) / 2, rtol=0.06, atol=0)
    torch.testing.assert_close(cen, torch.tensor(hs, dtype=torch.float64) ** 2 / 6, rtol=0.01, atol=0)
    # at a tiny step round-off dominates, and float32 has far more of it than float64
    tiny = [1e-6]
    e32 = finite_difference_errors(f, 0.0, 1.0, tiny, dtype=torch.float32).item()
    e64 = finite_difference_errors(f, 0.0, 1.0, tiny, dtype=torch.float64).item()
    assert e32 > 1e3 * e64 and e32 > 1e-3
    with pytest.raises(ValueError, match="h must be a finite number > 0"):
        finite_difference_errors(f, 0.0, 1.0, [1e-3, 0.0])
    with pytest.raises(ValueError, match="dtype must be a floating-point"):
        finite_difference_errors(f, 0.0, 1.0, hs, dtype=torch.int64)


@pytest.mark.parametrize("value, text", [(6e-10, "1e-09"), (5e-10, "1e-09"), (3e-10, "1e-10"), (2.0, "1e+00"),
                                         (0.0, "0"), (float("inf"), "inf"), (-4e-7, "1e-06")])
def test_order_of_magnitude_rounds_to_the_nearest_power_of_ten(value, text):
    assert grad.order_of_magnitude(value) == text


@pytest.mark.parametrize("value, text", [(3e-4, "[1e-04, 1e-03)"), (3.2e-4, "[1e-04, 1e-03)"), (1e-3, "[1e-03, 1e-02)"),
                                         (0.999, "[1e-01, 1e+00)"), (5.5e-10, "[1e-10, 1e-09)"), (1.7, "[1e+00, 1e+01)")])
def test_decade_brackets_the_value_between_powers_of_ten(value, text):
    assert grad.decade(value) == text


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), float("inf")])
def test_decade_refuses_values_without_a_decade(bad):
    with pytest.raises(ValueError, match="positive finite"):
        grad.decade(bad)


# directional slopes and the cost of a gradient ------------------------------------------------
from optlib.grad import directional_slopes, gradient_cost  # noqa: E402


def test_directional_slopes_are_gradient_dot_direction():
    def f(v):
        return (v**3).sum() + v[0] * v[1]

    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    g = torch.tensor([3 * 0.25 - 1.0, 3 * 1.0 + 0.5, 12.0], dtype=torch.float64)
    U = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    U = U / U.norm(dim=1, keepdim=True)
    slopes = directional_slopes(f, x, U)
    assert slopes.shape == (7,) and slopes.dtype == torch.float64
    torch.testing.assert_close(slopes, U @ g, rtol=1e-8, atol=1e-8)
    assert directional_slopes(f, x, (g / g.norm())[None]).item() == pytest.approx(g.norm().item(), rel=1e-8)
    with pytest.raises(ValueError, match="directions of shape"):
        directional_slopes(f, x, U[:, :2])
    with pytest.raises(ValueError, match="h must be"):
        directional_slopes(f, x, U, h=0.0)


@pytest.mark.parametrize("d", [3, 12])
def test_gradient_cost_counts_evaluations_and_flops(d):
    A = torch.randn(5, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def f(w):
        return ((A @ w) ** 2).sum()

    # w is a (d, 2) matrix: FlopCounterMode counts matrix products (mm), not matrix-vector ones
    cost = gradient_cost(f, torch.ones(d, 2, dtype=torch.float64))
    assert cost.dim == 2 * d
    assert cost.evaluations == {"forward": 2 * d + 1, "central": 4 * d, "autograd": 1}
    one = 2 * 5 * d * 2  # the matrix product A @ w
    assert cost.flops["forward"] == (2 * d + 1) * one and cost.flops["central"] == 4 * d * one
    assert one <= cost.flops["autograd"] <= 3 * one  # one forward and one backward pass


# per-example gradients and the noise of a minibatch gradient -------------------------------------
from optlib.grad import flat_gradient, minibatch_noise, per_example_gradients  # noqa: E402


def _tiny_model_and_data(seed=0, n=40):
    from optlib.models import MLP

    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return MLP((5, 4, 3), generator=g, dtype=torch.float64), X, y


def test_flat_gradient_matches_backward_and_leaves_grad_alone():
    from optlib.losses import softmax_loss

    model, X, y = _tiny_model_and_data()
    g = flat_gradient(model, softmax_loss, X, y)
    assert g.shape == (sum(p.numel() for p in model.parameters()),)
    assert all(p.grad is None for p in model.parameters())
    softmax_loss(model(X), y).backward()
    torch.testing.assert_close(g, torch.cat([p.grad.reshape(-1) for p in model.parameters()]))


def test_per_example_gradients_average_to_the_batch_gradient():
    from optlib.losses import softmax_loss

    model, X, y = _tiny_model_and_data(1)
    G = per_example_gradients(model, softmax_loss, X, y)
    assert G.shape == (40, sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(G.mean(0), flat_gradient(model, softmax_loss, X, y), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(G[7], flat_gradient(model, softmax_loss, X[7:8], y[7:8]))
    with pytest.raises(ValueError, match="same length"):
        per_example_gradients(model, softmax_loss, X, y[:-1])


@pytest.mark.parametrize("B", [1, 4, 10, 40])
def test_minibatch_noise_matches_the_finite_population_formula(B):
    G = torch.randn(40, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigma2 = (G - G.mean(0)).pow(2).sum(1).mean().item()
    expected = sigma2 / B * (40 - B) / 39
    measured = minibatch_noise(G, B, 20000, generator=torch.Generator().manual_seed(3))
    assert measured == pytest.approx(expected, rel=0.05, abs=1e-12)  # 0 exactly at B = n


def test_minibatch_noise_bad_arguments():
    G = torch.zeros(10, 3)
    with pytest.raises(ValueError, match="at most the number of examples"):
        minibatch_noise(G, 11, 5)
    with pytest.raises(ValueError, match="shape"):
        minibatch_noise(G[0], 2, 5)
    with pytest.raises(ValueError, match="num_batches"):
        minibatch_noise(G, 2, 0)
