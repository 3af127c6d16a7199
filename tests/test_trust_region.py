"""optlib.optim.trust_region: Steihaug-Toint CG on quadratics with known answers, and trust-region Newton-CG
on Rosenbrock against SciPy's trust-ncg and trust-exact (float64)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from optlib.functions import Rosenbrock
from optlib.optim.trust_region import STOP_REASONS, TrustRegion, steihaug_cg, update_radius
from optlib.stability import NonFiniteLossError

D = torch.float64


def _spd(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D))[0]
    return Q @ torch.diag(torch.logspace(0, 2, n, dtype=D)) @ Q.T


def _model(g, H, p):
    return (g @ p + 0.5 * p @ H @ p).item()


# ----------------------------------------------------------------------------- steihaug_cg


def test_steihaug_cg_is_the_newton_step_when_it_lies_inside_the_region_of_a_convex_quadratic():
    H = _spd(6)
    g = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=D)
    newton = -torch.linalg.solve(H, g)
    # in floating point CG needs a few more than n = 6 iterations to reach a residual of 1e-12
    result = steihaug_cg(g, lambda v: H @ v, radius=10 * newton.norm().item(), tol=1e-12, max_iter=30)
    assert result.reason == "tolerance"
    torch.testing.assert_close(result.step, newton, rtol=1e-9, atol=1e-12)
    assert result.predicted_reduction == pytest.approx(-_model(g, H, result.step), rel=1e-12)
    assert result.predicted_reduction == pytest.approx(0.5 * (g @ torch.linalg.solve(H, g)).item(), rel=1e-9)


def test_steihaug_cg_stops_at_the_boundary_when_the_newton_step_lies_outside():
    H = _spd(6)
    g = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=D)
    radius = 0.5 * torch.linalg.solve(H, g).norm().item()
    result = steihaug_cg(g, lambda v: H @ v, radius=radius)
    assert result.reason == "boundary"
    assert result.step.norm().item() == pytest.approx(radius, rel=1e-12)
    # at least the decrease of the Cauchy point (steepest descent inside the region)
    t = min(radius / g.norm().item(), (g @ g / (g @ H @ g)).item())
    assert -_model(g, H, result.step) >= -_model(g, H, -t * g) - 1e-12
    assert result.predicted_reduction == pytest.approx(-_model(g, H, result.step), rel=1e-12)


def test_steihaug_cg_stops_on_negative_curvature_at_the_boundary():
    H = torch.diag(torch.tensor([1.0, -2.0], dtype=D))
    g = torch.tensor([1.0, 1.0], dtype=D)  # d0 = -g has d0' H d0 = 1 - 2 < 0
    result = steihaug_cg(g, lambda v: H @ v, radius=0.5)
    assert result.reason == "negative_curvature" and result.iterations == 1
    assert result.step.norm().item() == pytest.approx(0.5, rel=1e-12)
    assert result.predicted_reduction > 0
    # after a positive-curvature iteration: the second direction meets the negative eigenvalue
    H = torch.diag(torch.tensor([4.0, 1.0, -1.0], dtype=D))
    g = torch.tensor([1.0, 0.0, 1e-3], dtype=D)
    result = steihaug_cg(g, lambda v: H @ v, radius=3.0, tol=0.0)
    assert result.reason == "negative_curvature" and result.iterations == 2
    assert result.step.norm().item() == pytest.approx(3.0, rel=1e-12)
    assert result.predicted_reduction == pytest.approx(-_model(g, H, result.step), rel=1e-12)


def test_steihaug_cg_stops_after_max_iter_and_returns_zero_for_a_zero_gradient():
    H = _spd(6)
    g = torch.ones(6, dtype=D)
    result = steihaug_cg(g, lambda v: H @ v, radius=1e6, tol=0.0, max_iter=2)
    assert result.reason == "max_iter" and result.iterations == 2
    zero = steihaug_cg(torch.zeros(3, dtype=D), lambda v: v, radius=1.0)
    assert zero.reason == "tolerance" and zero.iterations == 0 and zero.predicted_reduction == 0.0
    assert not zero.step.any()
    assert set(STOP_REASONS) == {"tolerance", "boundary", "negative_curvature", "max_iter"}


def test_steihaug_cg_rejects_bad_arguments():
    g = torch.ones(2, dtype=D)
    with pytest.raises(ValueError, match="radius"):
        steihaug_cg(g, lambda v: v, radius=0.0)
    with pytest.raises(ValueError, match="tol"):
        steihaug_cg(g, lambda v: v, radius=1.0, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        steihaug_cg(g, lambda v: v, radius=1.0, max_iter=0)
    with pytest.raises(ValueError, match="1-D"):
        steihaug_cg(torch.ones(2, 2, dtype=D), lambda v: v, radius=1.0)
    with pytest.raises(NonFiniteLossError):
        steihaug_cg(torch.tensor([1.0, math.nan], dtype=D), lambda v: v, radius=1.0)


# ----------------------------------------------------------------------------- TrustRegion


def _rosenbrock_run(max_steps: int = 100, **kwargs):
    """Steps until ‖g‖ <= 1e-6 at the current point; returns (iterations, x, optimizer, points)."""
    f = Rosenbrock()
    x = torch.tensor([-1.2, 1.0], dtype=D, requires_grad=True)
    opt = TrustRegion([x], **kwargs)
    points = []
    for k in range(max_steps + 1):
        (g,) = torch.autograd.grad(f(x), x)
        if g.norm().item() <= 1e-6:
            return k, x.detach(), opt, points
        opt.step(lambda: f(x))
        points.append(x.detach().clone())
    raise AssertionError(f"no convergence in {max_steps} steps")


def test_rosenbrock_reaches_gradient_1e_6_within_44_iterations_like_scipy_trust_ncg():
    iterations, x, opt, points = _rosenbrock_run()
    scipy_runs = {method: scipy.optimize.minimize(scipy.optimize.rosen, [-1.2, 1.0], jac=scipy.optimize.rosen_der,
                                                  hess=scipy.optimize.rosen_hess, method=method,
                                                  options={"gtol": 1e-6})  # a 2-norm for trust-*
                  for method in ("trust-ncg", "trust-exact")}
    assert all(r.success for r in scipy_runs.values())
    print(f"TrustRegion {iterations} iterations; SciPy trust-ncg {scipy_runs['trust-ncg'].nit}, "
          f"trust-exact {scipy_runs['trust-exact'].nit}")
    assert iterations <= 44
    assert iterations <= 1.5 * scipy_runs["trust-ncg"].nit
    # the same minimizer, (1, 1)
    for r in scipy_runs.values():
        np.testing.assert_allclose(x.numpy(), r.x, atol=1e-6)
    torch.testing.assert_close(x, torch.ones(2, dtype=D), atol=1e-6, rtol=0)
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert state["step"] == iterations
    assert state["evaluations"] == 2 * iterations  # one at x, one at the trial point
    assert state["hvps"] >= iterations


def test_the_iterates_follow_scipy_trust_ncg_step_for_step():
    """Same algorithm (radius rules, eta 0.15, CG tolerance min(0.5, √‖g‖)‖g‖): the same path."""
    _, _, _, points = _rosenbrock_run()
    scipy_points = []
    scipy.optimize.minimize(scipy.optimize.rosen, [-1.2, 1.0], jac=scipy.optimize.rosen_der,
                            hessp=scipy.optimize.rosen_hess_prod, method="trust-ncg", options={"gtol": 1e-6},
                            callback=lambda xk: scipy_points.append(np.array(xk)))
    assert len(points) == len(scipy_points)
    np.testing.assert_allclose(np.stack([p.numpy() for p in points]), np.stack(scipy_points), atol=1e-8)


def test_the_radius_shrinks_after_a_rejected_step_and_x_stays_exactly_put():
    # f = √(1 + x²) curves less and less: at x = 2 the Newton step goes to x = −8, where f is larger
    x = torch.tensor([2.0], dtype=D, requires_grad=True)
    opt = TrustRegion([x], radius=20.0, max_radius=100.0)
    opt.step(lambda: torch.sqrt(1 + x**2).sum())
    state = opt.state[x]
    assert state["cg_reason"] == "tolerance" and state["rho"] < 0 and not state["accepted"]
    assert x.item() == 2.0
    assert state["radius"] == 5.0
    opt.step(lambda: torch.sqrt(1 + x**2).sum())  # now the step stops at the boundary, at x = −3: still worse
    assert state["cg_reason"] == "boundary" and not state["accepted"] and state["radius"] == 1.25
    opt.step(lambda: torch.sqrt(1 + x**2).sum())  # x = 0.75: accepted
    assert state["accepted"] and x.item() == pytest.approx(0.75, rel=1e-12)


def test_the_radius_grows_after_a_good_step_to_the_boundary():
    H = _spd(4)
    x = torch.full((4,), 3.0, dtype=D, requires_grad=True)
    opt = TrustRegion([x], radius=0.1, max_radius=0.3)
    radii = []
    for _ in range(3):
        opt.step(lambda: 0.5 * x @ H @ x)
        radii.append(opt.state[x]["radius"])
        # a quadratic is its own model: rho = 1
        assert opt.state[x]["rho"] == pytest.approx(1.0, rel=1e-9) and opt.state[x]["accepted"]
        assert opt.state[x]["cg_reason"] == "boundary"
    assert radii == [0.2, 0.3, 0.3]  # doubled, then capped at max_radius


def test_a_step_inside_the_region_keeps_the_radius_and_a_nan_trial_point_is_rejected():
    assert update_radius(1.0, 0.9, False, 10.0) == 1.0
    assert update_radius(1.0, 0.5, True, 10.0) == 1.0
    assert update_radius(1.0, 0.9, True, 10.0) == 2.0
    assert update_radius(1.0, 0.1, True, 10.0) == 0.25
    # f is NaN for x < −5: the first trial point (x = −8) is rejected, and the region shrinks
    x = torch.tensor([2.0], dtype=D, requires_grad=True)
    opt = TrustRegion([x], radius=20.0)
    fn = lambda: (torch.sqrt(1 + x**2) + 0 * torch.log(x + 5)).sum()  # noqa: E731
    opt.step(fn)
    assert opt.state[x]["rho"] == -math.inf and not opt.state[x]["accepted"]
    assert x.item() == 2.0 and opt.state[x]["radius"] == 5.0


def test_grad_holds_the_gradient_at_the_start_point_and_a_stationary_point_is_left_alone():
    x = torch.tensor([1.0, 2.0], dtype=D, requires_grad=True)
    opt = TrustRegion([x], radius=10.0)
    opt.step(lambda: (x**2).sum())
    torch.testing.assert_close(x.grad, torch.tensor([2.0, 4.0], dtype=D))
    torch.testing.assert_close(x.detach(), torch.zeros(2, dtype=D), atol=1e-12, rtol=0)  # the Newton step
    opt.step(lambda: (x**2).sum())  # g = 0 now
    assert math.isnan(opt.state[x]["rho"]) and not opt.state[x]["accepted"]


def test_grad_survives_a_closure_that_zeroes_the_gradients():
    """optlib.run.minimize's closure calls zero_grad() first; .grad must still hold g(x) after the step."""
    x = torch.tensor([-1.2, 1.0], dtype=D, requires_grad=True)
    opt = TrustRegion([x])

    def closure():
        opt.zero_grad()
        return Rosenbrock()(x)

    opt.step(closure)
    torch.testing.assert_close(x.grad, Rosenbrock().gradient(torch.tensor([-1.2, 1.0], dtype=D)))


def test_trust_region_state_round_trips_through_state_dict():
    x = torch.tensor([-1.2, 1.0], dtype=D, requires_grad=True)
    opt = TrustRegion([x])
    for _ in range(3):
        opt.step(lambda: Rosenbrock()(x))
    again = TrustRegion([x])
    again.load_state_dict(opt.state_dict())
    assert again.state[x]["radius"] == opt.state[x]["radius"] and again.state[x]["step"] == 3


@pytest.mark.parametrize("kwargs, match", [
    ({"radius": 0.0}, "radius"), ({"radius": -1.0}, "radius"), ({"max_radius": 0.0}, "max_radius"),
    ({"radius": 2.0, "max_radius": 1.0}, "radius must be <= max_radius"), ({"eta": 0.25}, "eta"),
    ({"eta": -0.1}, "eta"), ({"cg_tol": -1.0}, "cg_tol"), ({"cg_max_iter": 0}, "cg_max_iter"),
    ({"radius": math.nan}, "radius"),
])
def test_bad_hyperparameters_raise_value_error(kwargs, match):
    x = torch.zeros(2, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        TrustRegion([x], **kwargs)


def test_misuse_and_nan_loss_raise_clear_errors():
    x = torch.zeros(2, dtype=D, requires_grad=True)
    y = torch.zeros(2, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match="closure"):
        TrustRegion([x]).step()
    with pytest.raises(ValueError, match="no graph"):
        TrustRegion([x]).step(lambda: (x**2).sum().detach())
    with pytest.raises(ValueError, match="single param group"):
        TrustRegion([{"params": [x]}, {"params": [y]}]).step(lambda: (x**2).sum() + (y**2).sum())
    with pytest.raises(NonFiniteLossError, match="nan"):
        TrustRegion([x]).step(lambda: (x**2).sum() * math.nan)
