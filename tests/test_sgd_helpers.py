"""Tests of the helpers of optlib.optim.sgd and optlib.optim.accelerated that chapter 5 uses."""
import math

import numpy as np
import pytest
import torch

from optlib import functions, optim, run, schedules
from optlib.optim.accelerated import lookahead_nesterov
from optlib.optim.sgd import scheduled_path, velocity_response


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.99])
def test_velocity_response_is_the_exponential_average(rho):
    weights = velocity_response(np.r_[1.0, np.zeros(199)], rho)
    np.testing.assert_allclose(weights, rho ** np.arange(200), rtol=1e-12)
    filled = velocity_response(np.ones(200), rho)
    np.testing.assert_allclose(filled, (1 - rho ** np.arange(1, 201)) / (1 - rho), rtol=1e-12)
    grads = np.random.default_rng(0).normal(size=50)
    v, expected = 0.0, []
    for g in grads:
        # torch's first step sets v = g, the same as rho * 0 + g
        v = rho * v + g
        expected.append(v)
    np.testing.assert_allclose(velocity_response(grads, rho), expected, rtol=1e-12)


@pytest.mark.parametrize("gradients, rho", [([], 0.9), ([1.0, math.nan], 0.9), ([1.0], 0.0), ([1.0], 1.0)])
def test_velocity_response_rejects_bad_input(gradients, rho):
    with pytest.raises(ValueError):
        velocity_response(gradients, rho)


def test_scheduled_path_applies_the_schedule_like_a_hand_written_loop():
    quad = functions.Quadratic(condition_number=20.0, angle=0.3)
    decay = schedules.step_decay(10, 0.1)
    for form in ("torch", "classical"):
        path = scheduled_path(quad, quad.start, 40, decay, lr=0.05, momentum=0.9, formulation=form)
        x = quad.start.clone().requires_grad_(True)
        opt = optim.SGD([x], lr=0.05, momentum=0.9, formulation=form)
        expected = [x.detach().clone()]
        for t in range(40):
            for group in opt.param_groups:
                group["lr"] = 0.05 * decay(t)
            opt.zero_grad()
            quad(x).backward()
            opt.step()
            expected.append(x.detach().clone())
        np.testing.assert_allclose(path, torch.stack(expected).numpy(), rtol=1e-12, atol=1e-15)
    # a constant schedule is a plain run
    plain = run.minimize(quad, quad.start, optim.SGD, steps=40, lr=0.05, momentum=0.9).path()
    np.testing.assert_array_equal(scheduled_path(quad, quad.start, 40, schedules.constant(), lr=0.05,
                                                 momentum=0.9), plain)
    with pytest.raises(TypeError, match="schedule"):
        scheduled_path(quad, quad.start, 5, 0.5, lr=0.05)


def test_lookahead_nesterov_matches_torch_nesterov_at_the_lookahead_points():
    rosen = functions.Rosenbrock()
    xs, ahead = lookahead_nesterov(rosen, [-1.2, 1.0], 200, 5e-4, 0.9)
    assert xs.shape == ahead.shape == (201, 2)
    p = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=5e-4, momentum=0.9, nesterov=True)
    points = [p.detach().clone()]
    for _ in range(200):
        opt.zero_grad()
        rosen(p).backward()
        opt.step()
        points.append(p.detach().clone())
    np.testing.assert_allclose(ahead, torch.stack(points).numpy(), rtol=1e-10, atol=1e-12)
    assert np.abs(xs - ahead).max() > 1e-3
    # one step by hand: u1 = -lr grad(x0), x1 = x0 + u1
    g0 = rosen.gradient(torch.tensor([-1.2, 1.0], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(xs[1], np.array([-1.2, 1.0]) - 5e-4 * g0, rtol=1e-12)
    np.testing.assert_allclose(ahead[1], xs[1] + 0.9 * (xs[1] - xs[0]), rtol=1e-12)
    for kwargs in (dict(steps=-1), dict(lr=-1.0), dict(momentum=1.0)):
        args = dict(steps=3, lr=1e-3, momentum=0.9) | kwargs
        with pytest.raises(ValueError):
            lookahead_nesterov(rosen, [0.0, 0.0], **args)
