"""Tests of optlib.optim.accelerated: Nesterov's accelerated gradient with the t_k and k/(k+3) schedules."""
import copy
import math

import pytest
import torch

from optlib import convergence, optim, run
from optlib.optim.accelerated import AcceleratedGradient, accelerated_update, momentum_coefficient, next_t


def reference_agd(grad, x0, lr, steps, schedule):
    """The algorithm written out: x_{k+1} = y_k - lr grad(y_k); y_{k+1} = x_{k+1} + beta_k (x_{k+1} - x_k)."""
    x, y, t = x0.clone(), x0.clone(), 1.0
    xs, ys = [x.clone()], [y.clone()]
    for k in range(steps):
        x_new = y - lr * grad(y)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        beta = (t - 1) / t_new if schedule == "t" else k / (k + 3)
        y = x_new + beta * (x_new - x)
        x, t = x_new, t_new
        xs.append(x.clone())
        ys.append(y.clone())
    return torch.stack(xs), torch.stack(ys)


def run_agd(problem, x0, steps, **hyper):
    p = x0.clone().requires_grad_(True)
    opt = AcceleratedGradient([p], **hyper)
    xs, ys = [opt.iterate(p).clone()], [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        problem(p).backward()
        opt.step()
        xs.append(opt.iterate(p).clone())
        ys.append(p.detach().clone())
    return torch.stack(xs), torch.stack(ys), opt


@pytest.fixture
def problem():
    # an ill-conditioned convex quadratic with a spectrum reaching down to 1e-4 L
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.logspace(-4, 0, 12, dtype=torch.float64)) @ q.T
    return convergence.ConvexQuadratic(0.5 * (A + A.T), torch.randn(12, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("schedule", ["t", "k"])
def test_matches_a_hand_written_reference_loop(problem, schedule):
    x0 = torch.zeros(12, dtype=torch.float64)
    xs, ys, _ = run_agd(problem, x0, 150, lr=1 / problem.L, schedule=schedule)
    ref_x, ref_y = reference_agd(problem.gradient, x0, 1 / problem.L, 150, schedule)
    torch.testing.assert_close(xs, ref_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ys, ref_y, rtol=1e-12, atol=1e-12)


def test_momentum_schedules_start_at_zero_and_approach_one():
    t, betas = 1.0, []
    for k in range(2000):
        betas.append(momentum_coefficient(k, "t", t=t))
        t = next_t(t)
    assert betas[0] == 0.0 and momentum_coefficient(0, "k") == 0.0
    assert all(b2 > b1 for b1, b2 in zip(betas, betas[1:]))
    golden = (1 + math.sqrt(5)) / 2  # t_1
    assert next_t(1.0) == pytest.approx(golden)
    assert betas[1] == pytest.approx((golden - 1) / next_t(golden))
    # both behave like 1 - 3/k for large k
    assert 1 - betas[1999] == pytest.approx(3 / 2000, rel=0.01)
    assert 1 - momentum_coefficient(1999, "k") == pytest.approx(3 / 2002, rel=1e-12)
    # t_k >= (k + 2) / 2, the inequality behind the 1/(k+1)^2 rate
    t = 1.0
    for k in range(100):
        assert t >= (k + 2) / 2 - 1e-12
        t = next_t(t)


@pytest.mark.parametrize("schedule", ["t", "k"])
def test_reaches_the_accelerated_bound_and_beats_gradient_descent(problem, schedule):
    x0 = torch.zeros(12, dtype=torch.float64)
    steps = 300
    xs, _, _ = run_agd(problem, x0, steps, lr=1 / problem.L, schedule=schedule)
    gaps = problem.gap(xs).numpy()
    t = torch.arange(steps + 1).numpy()
    bound = convergence.accelerated_convex_bound(problem.L, problem.distance_sq(x0), t)
    assert (gaps <= bound * (1 + 1e-9)).all()
    gd = run.minimize(problem, x0, optim.SGD, steps=steps, lr=1 / problem.L)
    gd_gaps = [v - problem.f_star for v in gd.loss]
    assert gaps[-1] < 0.05 * gd_gaps[-1]


def test_hard_quadratic_sits_between_the_lower_and_upper_bounds():
    for t in (5, 20, 60):
        hard = convergence.nesterov_hard_quadratic(2 * t + 1, L=2.0)
        x0 = torch.zeros(hard.dim, dtype=torch.float64)
        xs, _, _ = run_agd(hard, x0, t, lr=1 / hard.L, schedule="t")
        gap = hard.gap(xs[-1]).item()
        r2 = hard.distance_sq(x0)
        assert convergence.first_order_lower_bound(2.0, r2, t) <= gap <= convergence.accelerated_convex_bound(2.0, r2, t)


def test_constant_schedule_is_torch_nesterov_sgd(problem):
    x0 = torch.ones(12, dtype=torch.float64)
    _, ys, _ = run_agd(problem, x0, 80, lr=0.5, schedule="constant", momentum=0.8)
    sgd = run.minimize(problem, x0, optim.SGD, steps=80, lr=0.5, momentum=0.8, nesterov=True)
    torch.testing.assert_close(ys, torch.as_tensor(sgd.path()), rtol=1e-10, atol=1e-12)
    tsgd = run.minimize(problem, x0, torch.optim.SGD, steps=80, lr=0.5, momentum=0.8, nesterov=True)
    torch.testing.assert_close(ys, torch.as_tensor(tsgd.path()), rtol=1e-10, atol=1e-12)


def test_zero_constant_momentum_is_gradient_descent(problem):
    x0 = torch.ones(12, dtype=torch.float64)
    _, ys, _ = run_agd(problem, x0, 20, lr=0.7, schedule="constant", momentum=0.0)
    gd = run.minimize(problem, x0, optim.SGD, steps=20, lr=0.7)
    torch.testing.assert_close(ys, torch.as_tensor(gd.path()))


def test_update_function_by_hand():
    y = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x_prev = torch.tensor([0.0, 1.0], dtype=torch.float64)
    g = torch.tensor([1.0, -1.0], dtype=torch.float64)
    x_new = accelerated_update(y, g, x_prev, lr=0.5, beta=0.25)
    torch.testing.assert_close(x_new, torch.tensor([0.5, 2.5], dtype=torch.float64))
    torch.testing.assert_close(y, x_new + 0.25 * (x_new - x_prev))


def test_param_groups_each_follow_their_own_hyperparameters(problem):
    a = torch.ones(12, dtype=torch.float64, requires_grad=True)
    b = torch.ones(12, dtype=torch.float64, requires_grad=True)
    opt = AcceleratedGradient([{"params": [a]}, {"params": [b], "lr": 0.1, "schedule": "k"}], lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        (problem(a) + problem(b)).backward()
        opt.step()
    ref_a, _ = reference_agd(problem.gradient, torch.ones(12, dtype=torch.float64), 0.5, 30, "t")
    ref_b, _ = reference_agd(problem.gradient, torch.ones(12, dtype=torch.float64), 0.1, 30, "k")
    torch.testing.assert_close(opt.iterate(a), ref_a[-1])
    torch.testing.assert_close(opt.iterate(b), ref_b[-1])
    assert opt.state[a]["step"] == opt.state[b]["step"] == 30


def test_parameters_without_grad_are_skipped():
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    opt = AcceleratedGradient([a, b], lr=0.1)
    a.sum().backward()
    opt.step()
    torch.testing.assert_close(b.detach(), torch.ones(3))
    assert b not in opt.state
    torch.testing.assert_close(opt.iterate(b), torch.ones(3))


def test_state_dict_round_trip_continues_identically(problem):
    x0 = torch.zeros(12, dtype=torch.float64)

    def steps(opt, p, n):
        for _ in range(n):
            opt.zero_grad()
            problem(p).backward()
            opt.step()

    p = x0.clone().requires_grad_(True)
    opt = AcceleratedGradient([p], lr=1 / problem.L)
    steps(opt, p, 25)
    saved_p, saved_state = p.detach().clone(), copy.deepcopy(opt.state_dict())
    steps(opt, p, 25)

    q = saved_p.clone().requires_grad_(True)
    opt2 = AcceleratedGradient([q], lr=1 / problem.L)
    opt2.load_state_dict(saved_state)
    assert opt2.state[q]["step"] == 25
    steps(opt2, q, 25)
    torch.testing.assert_close(q.detach(), p.detach(), rtol=0, atol=0)
    torch.testing.assert_close(opt2.iterate(q), opt.iterate(p), rtol=0, atol=0)


def test_step_with_closure_returns_the_loss(problem):
    p = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    opt = AcceleratedGradient([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = problem(p)
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(problem(torch.zeros(12, dtype=torch.float64)).item())


def test_works_in_run_minimize_and_train():
    from optlib import data, losses, models

    quad = convergence.ConvexQuadratic(torch.tensor([1.0, 0.01], dtype=torch.float64), [1.0, -1.0])
    trace = run.minimize(quad, [0.0, 0.0], AcceleratedGradient, steps=200, lr=1.0)
    assert trace.final_loss < 1e-3 * trace.loss[0]
    digits = data.load_digits()
    model = models.LinearClassifier(digits.num_features, digits.num_classes, generator=torch.Generator().manual_seed(0))
    tr = run.train(model, losses.softmax_loss, digits, AcceleratedGradient, steps=30, lr=0.5)
    assert tr.loss[-1] < 0.5 * tr.loss[0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), "lr must be >= 0"),
    (dict(lr=0.1, schedule="fast"), "schedule must be one of"),
    (dict(lr=0.1, schedule="constant"), "needs a momentum"),
    (dict(lr=0.1, schedule="constant", momentum=1.0), "momentum must be in"),
    (dict(lr=0.1, schedule="constant", momentum=-0.1), "momentum must be in"),
    (dict(lr=0.1, schedule="t", momentum=0.9), "only used with schedule='constant'"),
])
def test_invalid_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AcceleratedGradient([torch.zeros(2, requires_grad=True)], **kwargs)


def test_momentum_coefficient_rejects_bad_input():
    with pytest.raises(ValueError, match="k must be an integer"):
        momentum_coefficient(-1, "k")
    with pytest.raises(ValueError, match="needs a momentum"):
        momentum_coefficient(0, "constant")
