"""optlib.optim.hessian_free: CG on Gauss-Newton products, Martens' stopping rule, Levenberg-Marquardt damping."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from optlib import curvature, data
from optlib.optim.hessian_free import HessianFree, martens_stop, update_damping

F64 = torch.float64


def _mlp(seed: int, sizes=(8, 6, 3)) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b, dtype=F64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(b, a, generator=gen, dtype=F64) / math.sqrt(a))
            linear.bias.copy_(0.1 * torch.randn(b, generator=gen, dtype=F64))
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _batch(seed: int, n=40, d=8, classes=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=F64), torch.randint(0, classes, (n,), generator=gen)


def _explicit_ggn(model, loss_fn, X, y) -> torch.Tensor:
    """G = Jᵀ H_L J built from full Jacobians, independently of optlib.curvature."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def outputs(flat):
        params = dict(zip(names, (t.view(s) for t, s in zip(torch.split(flat, [math.prod(s) for s in shapes]),
                                                          shapes))))
        return torch.func.functional_call(model, params, (X,)).reshape(-1)

    J = torch.autograd.functional.jacobian(outputs, theta)
    z = outputs(theta).detach()
    H = torch.autograd.functional.hessian(lambda out: loss_fn(out.view(len(X), -1), y), z)
    return J.T @ H @ J


def test_an_exact_solve_is_the_damped_gauss_newton_step():
    model, (X, y) = _mlp(0), _batch(1)
    loss_fn = nn.CrossEntropyLoss()
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    G = _explicit_ggn(model, loss_fn, X, y)
    loss = loss_fn(model(X), y)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    damping = 0.3
    expected = torch.linalg.solve(G + damping * torch.eye(len(g), dtype=F64), -g)
    opt = HessianFree(model, loss_fn, damping=damping, martens=False, cg_tol=1e-13, cg_max_iter=500,
                      adapt_damping=False)
    opt.step(lambda: (X, y))
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    state = opt.state["hf"]
    assert state["cg_reason"] == "converged" and state["step_length"] == 1.0
    torch.testing.assert_close(after - theta, expected, rtol=1e-8, atol=1e-11)
    # the gradient left in .grad is the one at the start of the step
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), g)


def test_on_a_least_squares_problem_it_converges_like_newton():
    """Linear regression on digits: Gauss-Newton = Hessian, the quadratic model is exact, and a few
    steps (as the damping falls) reach the least-squares optimum."""
    digits = data.load_digits(dtype=F64)
    X, labels = digits.X_train[:400], digits.y_train[:400]
    y = nn.functional.one_hot(labels, 10).to(F64)
    model = nn.Linear(X.shape[1], 10, dtype=F64)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    loss_fn = nn.MSELoss(reduction="sum")
    opt = HessianFree(model, loss_fn, damping=1e-2)
    losses = [float(opt.step(lambda: (X, y))) for _ in range(8)]
    design = torch.cat([X, torch.ones(len(X), 1, dtype=F64)], dim=1)
    solution = torch.linalg.lstsq(design, y, driver="gelsd").solution
    best = float(((design @ solution - y) ** 2).sum())
    final = loss_fn(model(X), y).item()
    assert all(b <= a for a, b in zip(losses, losses[1:])), losses
    assert final - best <= 1e-9 * best, (final, best, losses)


def test_on_an_mlp_it_beats_gradient_descent_per_iteration_and_adapts_its_damping():
    model, (X, y) = _mlp(3, sizes=(8, 16, 3)), _batch(4, n=120)
    loss_fn = nn.CrossEntropyLoss()
    opt = HessianFree(model, loss_fn, damping=10.0)
    dampings, losses = [], []
    for _ in range(15):
        losses.append(float(opt.step(lambda: (X, y))))
        dampings.append(opt.state["hf"]["damping"])
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:])), "the line search keeps the loss from rising"
    assert min(dampings) < 10.0 / 1.5, "good reductions lower the damping"
    best_gd = math.inf
    for lr in (0.3, 1.0, 3.0):
        model_gd = _mlp(3, sizes=(8, 16, 3))
        sgd = torch.optim.SGD(model_gd.parameters(), lr=lr)
        for _ in range(15):
            sgd.zero_grad()
            loss_fn(model_gd(X), y).backward()
            sgd.step()
        best_gd = min(best_gd, loss_fn(model_gd(X), y).item())
    assert loss_fn(model(X), y).item() < 0.8 * best_gd


def test_the_hessian_variant_survives_negative_curvature():
    model, (X, y) = _mlp(5, sizes=(8, 16, 3)), _batch(6, n=60)
    loss_fn = nn.CrossEntropyLoss()
    opt = HessianFree(model, loss_fn, curvature="hessian", damping=1e-3)
    first = loss_fn(model(X), y).item()
    reasons = set()
    for _ in range(10):
        opt.step(lambda: (X, y))
        reasons.add(opt.state["hf"]["cg_reason"])
    assert loss_fn(model(X), y).item() < first
    assert reasons <= {"converged", "stopped", "negative_curvature", "max_iter"}


def test_martens_rule_stops_cg_early_near_the_minimum_of_the_quadratic():
    gen = torch.Generator().manual_seed(7)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen, dtype=F64))
    A = Q @ torch.diag(torch.logspace(-4, 0, 200, dtype=F64)) @ Q.T
    b = torch.randn(200, generator=gen, dtype=F64)
    full = curvature.conjugate_gradient(A, b, tol=1e-10, max_iter=5000)
    early = curvature.conjugate_gradient(A, b, tol=1e-10, max_iter=5000, stop=martens_stop(b))
    phi = lambda x: 0.5 * x @ A @ x - b @ x  # noqa: E731
    assert early.reason == "stopped" and early.iterations < full.iterations / 2
    assert (phi(early.x) - phi(full.x)) / abs(phi(full.x)) < 0.05


def test_the_damping_rule_and_bad_inputs():
    assert update_damping(1.0, 0.1) == 1.5 and update_damping(1.0, 0.9) == pytest.approx(1 / 1.5)
    assert update_damping(1.0, 0.5) == 1.0 and update_damping(1.0, math.nan) == 1.5
    model = _mlp(0)
    loss_fn = nn.CrossEntropyLoss()
    for bad in (dict(lr=0.0), dict(damping=-1.0), dict(curvature="fisher"), dict(cg_max_iter=0),
                dict(warm_start=2.0)):
        with pytest.raises(ValueError):
            HessianFree(model, loss_fn, **bad)
    opt = HessianFree(model, loss_fn)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    X, y = _batch(1)
    with pytest.raises(ValueError, match=r"batch \(X, y\)"):
        opt.step(lambda: loss_fn(model(X), y))
    with pytest.raises(FloatingPointError):
        opt.step(lambda: (X * math.nan, y))
