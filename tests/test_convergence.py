"""Tests of optlib.convergence: rate formulas, iteration matrices, bounds, fits and test problems."""
import math

import numpy as np
import pytest
import torch

from optlib import convergence as cv, functions, optim, run


# ------------------------------------------------------------------ rates on quadratics

@pytest.mark.parametrize("kappa", [1.0, 4.0, 10.0, 100.0, 1e4])
def test_optimal_rates_equal_the_spectral_radius_of_the_iteration(kappa):
    L, mu = 3.0 * kappa, 3.0
    curvatures = np.linspace(mu, L, 41)
    lr = cv.gd_optimal_lr(L, mu)
    assert cv.spectral_radius(lr, curvatures) == pytest.approx(cv.gd_rate(kappa), abs=1e-12)
    hb_lr, rho = cv.heavy_ball_parameters(L, mu)
    # complex roots of modulus sqrt(rho) everywhere in [mu, L]; double roots at the ends (slightly
    # inaccurate eigenvalues of a defective matrix, hence the looser tolerance)
    assert cv.spectral_radius(hb_lr, curvatures, momentum=rho) == pytest.approx(cv.heavy_ball_rate(kappa), abs=1e-6)
    assert math.sqrt(rho) == pytest.approx(cv.heavy_ball_rate(kappa))
    if kappa > 1:
        # any other step size or momentum is worse
        assert cv.spectral_radius(1.05 * hb_lr, curvatures, momentum=rho) > cv.heavy_ball_rate(kappa)
        assert cv.spectral_radius(hb_lr, curvatures, momentum=0.9 * rho) > cv.heavy_ball_rate(kappa)
        assert cv.spectral_radius(1.05 * lr, curvatures) > cv.gd_rate(kappa)


def test_heavy_ball_parameters_closed_form():
    lr, rho = cv.heavy_ball_parameters(100.0, 1.0)
    assert lr == pytest.approx(4 / 121)
    assert rho == pytest.approx((9 / 11) ** 2)
    assert cv.heavy_ball_rate(100) == pytest.approx(9 / 11)
    assert cv.gd_rate(100) == pytest.approx(99 / 101)


def test_iteration_matrix_reproduces_the_optimizers_on_a_one_dimensional_quadratic():
    lam, lr, rho = 3.0, 0.2, 0.7
    quad = functions.Quadratic(condition_number=1.0, dim=1, mu=lam)
    for nesterov in (False, True):
        trace = run.minimize(quad, [1.0], optim.SGD, steps=30, lr=lr, momentum=rho, nesterov=nesterov)
        path = trace.path()[:, 0]
        M = cv.iteration_matrix(lr, lam, rho, nesterov)
        state = torch.tensor([path[1], path[0]], dtype=torch.float64)
        for t in range(1, 30):
            state = M @ state
            assert state[0].item() == pytest.approx(path[t + 1], rel=1e-10, abs=1e-14)


def test_plain_gd_matrix_radius_is_one_minus_lr_lambda():
    assert cv.spectral_radius(0.1, [1.0, 5.0, 19.0]) == pytest.approx(0.9)
    assert cv.spectral_radius(0.1, 25.0) == pytest.approx(1.5)  # diverges beyond 2/lambda


def test_heavy_ball_and_nesterov_stability_limits():
    rho = 0.9
    # heavy ball is stable for lr*lambda < 2(1+rho), Nesterov for lr*lambda < 2(1+rho)/(1+2rho)
    assert cv.spectral_radius(0.99 * 2 * (1 + rho), 1.0, rho) < 1 < cv.spectral_radius(1.01 * 2 * (1 + rho), 1.0, rho)
    limit = 2 * (1 + rho) / (1 + 2 * rho)
    assert cv.spectral_radius(0.99 * limit, 1.0, rho, True) < 1 < cv.spectral_radius(1.01 * limit, 1.0, rho, True)
    # at lr*lambda = 1 Nesterov kills the direction in two steps, heavy ball rotates it with modulus sqrt(rho)
    assert cv.spectral_radius(1.0, 1.0, rho, True) == pytest.approx(0.0, abs=1e-7)
    assert cv.spectral_radius(1.0, 1.0, rho) == pytest.approx(math.sqrt(rho))


def test_measured_heavy_ball_rate_matches_theory():
    quad = functions.Quadratic(condition_number=100.0, angle=0.3)
    lr, rho = cv.heavy_ball_parameters(100.0, 1.0)
    trace = run.minimize(quad, [1.0, 1.0], optim.SGD, steps=300, lr=lr, momentum=rho)
    dist = np.linalg.norm(trace.path(), axis=1)
    assert cv.fit_rate(dist, start=150) == pytest.approx(cv.heavy_ball_rate(100.0), rel=0.01)
    gd = run.minimize(quad, [1.0, 1.0], optim.SGD, steps=300, lr=cv.gd_optimal_lr(100.0, 1.0))
    assert cv.fit_rate(np.linalg.norm(gd.path(), axis=1), start=50) == pytest.approx(cv.gd_rate(100.0), rel=1e-6)


def test_steps_to_tolerance():
    assert cv.steps_to_tolerance(0.5, 1 / 1024) == 10
    assert cv.steps_to_tolerance(0.5, 1 / 1000) == 10
    assert cv.steps_to_tolerance(0.0, 1e-9) == 1
    assert cv.steps_to_tolerance(0.9, 0.95) == 1
    with pytest.raises(ValueError):
        cv.steps_to_tolerance(1.0, 0.1)
    with pytest.raises(ValueError):
        cv.steps_to_tolerance(0.5, 0.0)


def test_effective_window_is_the_sum_of_the_weights():
    for rho in (0.0, 0.5, 0.9, 0.99):
        assert cv.effective_window(rho) == pytest.approx(sum(rho ** k for k in range(20000)))
    with pytest.raises(ValueError):
        cv.effective_window(1.0)


@pytest.mark.parametrize("call", [
    lambda: cv.gd_optimal_lr(1.0, 2.0), lambda: cv.gd_optimal_lr(0.0, 0.0), lambda: cv.heavy_ball_parameters(1.0, -1.0),
    lambda: cv.gd_rate(0.5), lambda: cv.heavy_ball_rate(float("inf")), lambda: cv.iteration_matrix(-0.1, 1.0),
    lambda: cv.iteration_matrix(0.1, 1.0, momentum=1.0), lambda: cv.spectral_radius(0.1, []),
])
def test_invalid_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


# ------------------------------------------------------------------ bounds

def test_bounds_closed_form_and_order():
    t = np.array([1.0, 10.0, 100.0])
    np.testing.assert_allclose(cv.gd_convex_bound(2.0, 3.0, t), 2.0 * 3.0 / (2 * t))
    np.testing.assert_allclose(cv.accelerated_convex_bound(2.0, 3.0, t), 2 * 2.0 * 3.0 / (t + 1) ** 2)
    np.testing.assert_allclose(cv.first_order_lower_bound(2.0, 3.0, t), 3 * 2.0 * 3.0 / (32 * (t + 1) ** 2))
    assert (cv.first_order_lower_bound(1, 1, t) < cv.accelerated_convex_bound(1, 1, t)).all()
    with pytest.raises(ValueError):
        cv.gd_convex_bound(1.0, 1.0, 0)
    with pytest.raises(ValueError):
        cv.accelerated_convex_bound(-1.0, 1.0, 3)


def test_gradient_descent_respects_its_convex_bound_on_the_hard_quadratic():
    hard = cv.nesterov_hard_quadratic(51, L=4.0)
    x0 = torch.zeros(51, dtype=torch.float64)
    trace = run.minimize(hard, x0, optim.SGD, steps=200, lr=1 / hard.L, record_params=False)
    gaps = np.array(trace.loss[1:]) - hard.f_star
    bound = cv.gd_convex_bound(hard.L, hard.distance_sq(x0), np.arange(1, 201))
    assert (gaps <= bound).all()
    lower = cv.first_order_lower_bound(4.0, hard.distance_sq(x0), 25)  # k = 51 = 2*25 + 1
    assert gaps[24] >= lower


# ------------------------------------------------------------------ fits

@pytest.mark.parametrize("slope", [-2.0, -1.0, -0.5, 1.5])
def test_fit_slope_recovers_a_power_law(slope):
    t = np.arange(1, 1001, dtype=float)
    y = 7.0 * t ** slope
    fit = cv.fit_slope(t, y, x_min=10, x_max=500)
    assert fit.slope == pytest.approx(slope, abs=1e-10)
    assert math.exp(fit.intercept) == pytest.approx(7.0)
    assert (fit.x_min, fit.x_max, fit.points) == (10.0, 500.0, 491)
    np.testing.assert_allclose(fit(t), y)


def test_fit_slope_ignores_nonpositive_points_and_respects_the_range():
    t = np.arange(1, 101, dtype=float)
    y = np.where(t < 50, t ** -1.0, t ** -3.0)
    y[10] = 0.0
    assert cv.fit_slope(t, y, x_max=49).slope == pytest.approx(-1.0)
    assert cv.fit_slope(t, y, x_min=50).slope == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="at least two"):
        cv.fit_slope(t, -y)
    with pytest.raises(ValueError, match="same length"):
        cv.fit_slope(t, y[:-1])


def test_fit_rate_recovers_a_geometric_rate():
    values = 3.0 * 0.93 ** np.arange(200)
    values[:5] = 100.0  # a transient excluded by start
    assert cv.fit_rate(values, start=5) == pytest.approx(0.93, rel=1e-12)
    with pytest.raises(ValueError):
        cv.fit_rate([0.0, 0.0])


# ------------------------------------------------------------------ problems

def test_convex_quadratic_value_gradient_and_shapes():
    g = torch.Generator().manual_seed(1)
    M = torch.randn(5, 5, generator=g, dtype=torch.float64)
    A = M @ M.T
    x_star = torch.randn(5, generator=g, dtype=torch.float64)
    q = cv.ConvexQuadratic(A, x_star, f_star=-2.0)
    x = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    q(x).backward()
    torch.testing.assert_close(x.grad, q.gradient(x.detach()))
    torch.testing.assert_close(q(x_star), torch.tensor(-2.0, dtype=torch.float64))
    assert q(torch.zeros(3, 4, 5, dtype=torch.float64)).shape == (3, 4)
    assert q.L == pytest.approx(torch.linalg.eigvalsh(A).max().item())
    diag = cv.ConvexQuadratic(torch.diagonal(A), x_star)
    dense = cv.ConvexQuadratic(torch.diag(torch.diagonal(A)), x_star)
    torch.testing.assert_close(diag(x.detach()), dense(x.detach()))
    with pytest.raises(ValueError, match="symmetric"):
        cv.ConvexQuadratic(torch.triu(A), x_star)
    with pytest.raises(ValueError, match="semi-definite"):
        cv.ConvexQuadratic(-A, x_star)
    with pytest.raises(ValueError, match="entries"):
        cv.ConvexQuadratic(A, x_star[:3])
    with pytest.raises(ValueError, match="points of shape"):
        q(torch.zeros(4))


def test_nesterov_hard_quadratic_matches_its_definition():
    k, L = 9, 3.0
    hard = cv.nesterov_hard_quadratic(k, L)
    x = torch.randn(k, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    direct = L / 4 * (0.5 * (x[0] ** 2 + ((x[:-1] - x[1:]) ** 2).sum() + x[-1] ** 2) - x[0])
    torch.testing.assert_close(hard(x), direct)
    A = hard.dense()
    torch.testing.assert_close(A, L / 4 * (2 * torch.eye(k, dtype=torch.float64) - torch.diag(torch.ones(k - 1, dtype=torch.float64), 1)
                                            - torch.diag(torch.ones(k - 1, dtype=torch.float64), -1)))
    torch.testing.assert_close(hard.gradient(hard.x_star), torch.zeros(k, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(A)
    assert hard.L == pytest.approx(eig.max().item()) and hard.mu == pytest.approx(eig.min().item())
    assert hard.L < L
    assert hard.f_star == pytest.approx(L / 8 * (-1 + 1 / (k + 1)))
    # from x0 = 0 after t gradient steps only the first t coordinates can be nonzero
    trace = run.minimize(hard, torch.zeros(k), optim.SGD, steps=4, lr=1 / L)
    assert (trace.path()[4][4:] == 0).all() and (trace.path()[4][:4] != 0).all()
    with pytest.raises(ValueError):
        cv.nesterov_hard_quadratic(0)


def test_optimality_gaps_follow_the_gradient_step_points():
    from optlib.optim.accelerated import AcceleratedGradient

    quad = cv.ConvexQuadratic(torch.tensor([1.0, 0.1, 0.001], dtype=torch.float64), [1.0, 2.0, 3.0], f_star=5.0)
    x0 = torch.zeros(3, dtype=torch.float64)
    gd = cv.optimality_gaps(quad, x0, optim.SGD, 40, lr=1.0)
    trace = run.minimize(quad, x0, optim.SGD, steps=40, lr=1.0)
    np.testing.assert_allclose(gd, np.array(trace.loss) - 5.0, rtol=1e-10)
    agd = cv.optimality_gaps(quad, x0, AcceleratedGradient, 40, lr=1.0)
    p = x0.clone().requires_grad_(True)
    opt = AcceleratedGradient([p], lr=1.0)
    for _ in range(40):
        opt.zero_grad()
        quad(p).backward()
        opt.step()
    assert agd[-1] == pytest.approx(quad.gap(opt.iterate(p)).item(), rel=1e-12)
    assert agd[-1] != pytest.approx(quad.gap(p.detach()).item(), rel=1e-3)  # y_k is a different point
    assert agd[0] == gd[0] == pytest.approx(quad.gap(x0).item())
    with pytest.raises(ValueError):
        cv.optimality_gaps(quad, x0, optim.SGD, -1, lr=1.0)


# ------------------------------------------------------------------ measuring runs (chapter 5)

def test_hard_quadratic_gaps_match_a_direct_run_and_sit_between_the_bounds():
    horizons = [4, 16, 64]
    gaps = cv.hard_quadratic_gaps(horizons, optim.SGD, lr=1.0)
    for t, value in zip(horizons, gaps):
        hard = cv.nesterov_hard_quadratic(2 * t + 1)
        origin = torch.zeros(hard.dim, dtype=torch.float64)
        direct = cv.optimality_gaps(hard, origin, optim.SGD, t, lr=1.0)[-1] / hard.distance_sq(origin)
        assert value == pytest.approx(direct, rel=1e-12)
    assert (gaps >= cv.first_order_lower_bound(1.0, 1.0, np.array(horizons))).all()
    assert (gaps <= cv.gd_convex_bound(1.0, 1.0, np.array(horizons))).all()
    # L scales f - f* and the normalization alike
    np.testing.assert_allclose(cv.hard_quadratic_gaps(horizons, optim.SGD, L=4.0, lr=0.25), gaps, rtol=1e-10)
    for bad in ([], [0, 3]):
        with pytest.raises(ValueError, match="horizons"):
            cv.hard_quadratic_gaps(bad, optim.SGD, lr=1.0)


def test_measure_linear_rate_recovers_the_gradient_descent_rate_and_step_count():
    quad = functions.Quadratic(condition_number=10.0, dim=4, seed=1)
    lr = cv.gd_optimal_lr(10.0, 1.0)
    measured = cv.measure_linear_rate(quad, quad.start, 200, 1e-10, lr=lr)
    assert isinstance(measured, cv.LinearRate)
    assert measured.rate == pytest.approx(cv.gd_rate(10.0), rel=1e-6)
    trace = run.minimize(quad, quad.start, optim.SGD, steps=200, lr=lr)
    assert measured.steps == trace.steps_to(1e-10 * trace.loss[0])
    # a budget too short to reach the tolerance reports None
    assert cv.measure_linear_rate(quad, quad.start, 10, 1e-10, lr=lr).steps is None
    with pytest.raises(ValueError, match="steps"):
        cv.measure_linear_rate(quad, quad.start, 3, 1e-10, lr=lr)
    with pytest.raises(ValueError, match="tolerance"):
        cv.measure_linear_rate(quad, quad.start, 50, 0.0, lr=lr)


def test_step_ratios_are_one_for_gradient_descent_and_computed_per_eigenvector():
    quad = functions.Quadratic(condition_number=50.0, angle=0.4)
    _, Q = torch.linalg.eigh(quad.A)
    # 12 steps: later the steep component (halved per step) is down to round-off
    gd = run.minimize(quad, quad.start, optim.SGD, steps=12, lr=0.01)
    np.testing.assert_allclose(cv.step_ratios(gd.path(), quad.gradient, 0.01, Q), 1.0, rtol=1e-9)
    heavy = run.minimize(quad, quad.start, optim.SGD, steps=30, lr=0.01, momentum=0.9)
    path = heavy.path()
    ratios = cv.step_ratios(path, quad.gradient, 0.01, Q)
    assert ratios.shape == (30, 2)
    t, j = 7, 1
    q = Q[:, j].numpy()
    grad = quad.gradient(torch.as_tensor(path[t])).numpy()
    assert ratios[t, j] == pytest.approx(abs(q @ (path[t + 1] - path[t])) / abs(0.01 * q @ grad), rel=1e-12)
    with pytest.raises(ValueError, match="basis"):
        cv.step_ratios(path, quad.gradient, 0.01, torch.eye(3))
    with pytest.raises(ValueError, match="path"):
        cv.step_ratios(path[:1], quad.gradient, 0.01, Q)


@pytest.mark.parametrize("friction", [0.0, 0.5, 2.0, 5.0])
def test_damped_oscillator_solves_its_ode(friction):
    curvature = 1.0
    t = np.linspace(0, 10, 20001)
    x = cv.damped_oscillator(t, friction, curvature)
    h = t[1] - t[0]
    velocity = np.gradient(x, h)
    acceleration = np.gradient(velocity, h)
    residual = acceleration + friction * velocity + curvature * x
    assert np.abs(residual[5:-5]).max() < 1e-4
    assert x[0] == pytest.approx(1.0) and velocity[0] == pytest.approx(0.0, abs=1e-3)
    # critical damping (c = 2) is the continuous limit of the nearby formula
    if friction == 2.0:
        np.testing.assert_allclose(x, cv.damped_oscillator(t, 2.0 + 1e-6), atol=1e-5)
    with pytest.raises(ValueError):
        cv.damped_oscillator(t, -1.0)


def test_settling_step_and_overshoots():
    values = [1.0, -0.5, 0.2, -0.01, 0.0005, -0.0002, 0.0001]
    assert cv.settling_step(values, 1e-3) == 4
    assert cv.overshoots(values, 1e-3) == 4  # the crossings inside the band afterwards do not count
    assert cv.settling_step([1.0, 0.5, 0.2], 1e-3) is None
    assert cv.overshoots([1.0, -0.5, 0.2], 1e-3) == 2
    assert cv.settling_step([1e-5, -1e-5], 1e-3) == 0
    with pytest.raises(ValueError):
        cv.settling_step([], 1e-3)
    with pytest.raises(ValueError):
        cv.settling_step([1.0], 0.0)


def test_lessard_function_pieces_and_the_heavy_ball_cycle():
    x = torch.tensor([-1.0, 0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    total = cv.lessard_function(x)
    (grad,) = torch.autograd.grad(total, x)
    expected = torch.where(x < 1, 25 * x, torch.where(x < 2, x + 24, 25 * x - 24)).detach()
    torch.testing.assert_close(grad, expected)
    # continuous at the joints, minimum 0 at 0
    for joint in (1.0, 2.0):
        below, above = (cv.lessard_function([joint + d]).item() for d in (-1e-9, 1e-9))
        assert below == pytest.approx(above, abs=1e-6)
    assert cv.lessard_function([0.0]).item() == 0.0
    assert cv.lessard_function([2]).dtype == torch.float64
    lr, rho = cv.heavy_ball_parameters(25.0, 1.0)
    cycle = run.minimize(cv.lessard_function, [3.3], optim.SGD, steps=300, lr=lr, momentum=rho).path()[:, 0]
    np.testing.assert_allclose(cycle[-3:], cycle[-6:-3], atol=1e-9)
    assert np.abs(cycle[-3:]).min() > 0.5
