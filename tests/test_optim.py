"""optlib.optim: SGD against torch.optim.SGD, Newton's method on problems with known answers."""
import io
import inspect

import pytest
import torch

from optlib import functions, run
from optlib.optim import OPTIMIZERS, SGD, Newton
from optlib.optim.newton import newton_direction

TIGHT = dict(rtol=1e-12, atol=1e-14)


def make_problem(seed=0):
    """A small softmax regression in float64: parameters W (3, 4) and b (3)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    W = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_(True)

    def loss_fn(params):
        W, b = params
        return torch.nn.functional.cross_entropy(X @ W.T + b, y) + 0.1 * (W**4).sum()

    return [W, b], loss_fn


def clone_params(params):
    return [p.detach().clone().requires_grad_(True) for p in params]


def build(cls, params, spec):
    """``cls`` on ``params`` with ``spec``: a dict of hyperparameters (one group) or a list of
    per-parameter group settings (one group per parameter tensor)."""
    if isinstance(spec, dict):
        return cls(params, **spec)
    return cls([dict(params=[p], **group) for p, group in zip(params, spec)])


def step(optimizer, params, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(params)
    loss.backward()
    optimizer.step()
    return loss.item()


CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "full dampening": dict(lr=0.05, momentum=0.5, dampening=1.0),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.05),
    "everything": dict(lr=0.03, momentum=0.7, weight_decay=0.01, nesterov=True),
    "two groups": [dict(lr=0.1, momentum=0.9), dict(lr=0.01, weight_decay=0.1)],
    "two groups nesterov": [dict(lr=0.02, momentum=0.9, nesterov=True), dict(lr=0.2, momentum=0.5, dampening=0.5)],
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_sgd_matches_torch_sgd(config):
    ours_p, loss_fn = make_problem()
    theirs_p = clone_params(ours_p)
    spec = CONFIGS[config]
    ours, theirs = build(SGD, ours_p, spec), build(torch.optim.SGD, theirs_p, spec)
    start = [p.detach().clone() for p in ours_p]
    for _ in range(20):
        assert step(ours, ours_p, loss_fn) == step(theirs, theirs_p, loss_fn)
        for a, b in zip(ours_p, theirs_p):
            torch.testing.assert_close(a, b, **TIGHT)
    assert any(not torch.allclose(a, s) for a, s in zip(ours_p, start))  # it did move


def test_sgd_plain_is_x_minus_lr_grad():
    x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = SGD([x], lr=0.25)
    (x**2).sum().backward()
    opt.step()
    torch.testing.assert_close(x.detach(), torch.tensor([0.5, -1.0], dtype=torch.float64))


def test_sgd_momentum_by_hand():
    # constant gradient g: v1 = g, v2 = rho*g + g, x2 = x0 - lr*(v1 + v2)
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = SGD([x], lr=0.1, momentum=0.5)
    for _ in range(2):
        opt.zero_grad()
        (3.0 * x).sum().backward()
        opt.step()
    assert x.item() == pytest.approx(-0.1 * (3.0 + 4.5))
    assert opt.state[x]["momentum_buffer"].item() == pytest.approx(4.5)


def test_sgd_skips_parameters_without_grad_like_torch():
    params, loss_fn = make_problem()
    ours_p, theirs_p = params, clone_params(params)
    ours, theirs = SGD(ours_p, lr=0.1, momentum=0.9), torch.optim.SGD(theirs_p, lr=0.1, momentum=0.9)
    for k in range(6):
        for opt, ps in ((ours, ours_p), (theirs, theirs_p)):
            opt.zero_grad()
            W, b = ps
            # b takes no part in the first three steps, so it has no gradient
            loss = loss_fn([W, b if k >= 3 else b.detach()])
            loss.backward()
            opt.step()
        if k < 3:
            assert ours_p[1].grad is None and ours_p[1] not in ours.state
        for a, b in zip(ours_p, theirs_p):
            torch.testing.assert_close(a, b, **TIGHT)


def test_sgd_follows_lr_changed_in_param_groups_like_torch():
    ours_p, loss_fn = make_problem()
    theirs_p = clone_params(ours_p)
    ours, theirs = SGD(ours_p, lr=0.1, momentum=0.9), torch.optim.SGD(theirs_p, lr=0.1, momentum=0.9)
    s1 = torch.optim.lr_scheduler.StepLR(ours, step_size=3, gamma=0.5)
    s2 = torch.optim.lr_scheduler.StepLR(theirs, step_size=3, gamma=0.5)
    for _ in range(10):
        step(ours, ours_p, loss_fn), step(theirs, theirs_p, loss_fn)
        s1.step(), s2.step()
    assert ours.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    for a, b in zip(ours_p, theirs_p):
        torch.testing.assert_close(a, b, **TIGHT)


def test_sgd_step_with_closure_returns_the_loss():
    params, loss_fn = make_problem()
    opt = SGD(params, lr=0.1)

    def closure():
        opt.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    before = loss_fn(params).item()
    returned = opt.step(closure)
    assert returned.item() == pytest.approx(before)
    assert loss_fn(params).item() < before
    assert opt.step() is None


def test_sgd_maximize_if_supported():
    if "maximize" not in inspect.signature(SGD.__init__).parameters:
        pytest.skip("optlib.optim.SGD has no maximize option")
    ours_p, loss_fn = make_problem()
    theirs_p = clone_params(ours_p)
    ours, theirs = SGD(ours_p, lr=0.01, maximize=True), torch.optim.SGD(theirs_p, lr=0.01, maximize=True)
    for _ in range(20):
        step(ours, ours_p, loss_fn), step(theirs, theirs_p, loss_fn)
    for a, b in zip(ours_p, theirs_p):
        torch.testing.assert_close(a, b, **TIGHT)


@pytest.mark.parametrize("config", ["momentum", "nesterov", "two groups"])
def test_sgd_state_dict_round_trip_continues_identically(config):
    spec = CONFIGS[config]
    params, loss_fn = make_problem()
    reference_p = clone_params(params)
    reference, first = build(SGD, reference_p, spec), build(SGD, params, spec)
    for _ in range(10):
        step(first, params, loss_fn)
        step(reference, reference_p, loss_fn)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    resumed_p = clone_params(params)
    # a fresh optimizer with another lr takes the hyperparameters (and the buffers) from the state dict
    resumed = build(SGD, resumed_p, spec)
    for group in resumed.param_groups:
        group["lr"] = 0.5
    resumed.load_state_dict(saved)
    assert [g["lr"] for g in resumed.param_groups] == [g["lr"] for g in first.param_groups]
    for p, q in zip(params, resumed_p):
        assert ("momentum_buffer" in first.state[p]) == ("momentum_buffer" in resumed.state[q])
        if "momentum_buffer" in first.state[p]:
            torch.testing.assert_close(first.state[p]["momentum_buffer"], resumed.state[q]["momentum_buffer"], **TIGHT)
    for _ in range(10):
        step(resumed, resumed_p, loss_fn)
        step(reference, reference_p, loss_fn)
    for a, b in zip(resumed_p, reference_p):
        torch.testing.assert_close(a, b, **TIGHT)


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-1), r"lr must be >= 0(\.0)?, got -1"),
    (dict(lr=float("nan")), r"lr must not be NaN"),
    (dict(momentum=-0.1), r"momentum must be in \[0(\.0)?, 1(\.0)?\), got -0.1"),
    (dict(momentum=1.0), r"momentum must be in \[0(\.0)?, 1(\.0)?\), got 1"),
    (dict(momentum=0.5, dampening=1.5), r"dampening must be in \[0(\.0)?, 1(\.0)?\], got 1.5"),
    (dict(weight_decay=-1e-4), r"weight_decay must be >= 0(\.0)?, got -0.0001"),
    (dict(nesterov=True), r"nesterov requires momentum > 0 and dampening = 0"),
    (dict(momentum=0.9, dampening=0.1, nesterov=True), r"nesterov requires momentum > 0 and dampening = 0"),
])
def test_sgd_invalid_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD([torch.zeros(2, requires_grad=True)], **kwargs)


def test_sgd_empty_parameter_list_raises():
    with pytest.raises(ValueError):
        SGD([], lr=0.1)


# ------------------------------------------------------------------- Newton

def newton_step(fn, x0, **kwargs):
    x = torch.as_tensor(x0, dtype=torch.float64).clone().requires_grad_(True)
    opt = Newton([x], **kwargs)
    loss = opt.step(lambda: fn(x))
    return x.detach(), opt, loss, x


def test_newton_one_step_solves_a_quadratic():
    fn = functions.Quadratic(condition_number=1e4, dim=5, seed=0)
    x0 = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    x1, _, loss, _ = newton_step(fn, x0)
    torch.testing.assert_close(x1, torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-10)
    assert loss.item() == pytest.approx(fn(x0).item()) and not loss.requires_grad


def test_newton_one_step_solves_a_quadratic_with_a_linear_term():
    A = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]], dtype=torch.float64)
    c = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    x1, *_ = newton_step(lambda x: 0.5 * x @ A @ x - c @ x + 7.0, torch.ones(3))
    torch.testing.assert_close(x1, torch.linalg.solve(A, c), **TIGHT)


def test_newton_with_several_parameter_tensors_uses_the_cross_terms():
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)

    def f():  # minimum at a = (1, -1), b = 3; a and b are coupled
        return (a[0] - 1) ** 2 + (a[1] + 1) ** 2 + (a[0] + a[1] - b[0] + 3) ** 2 + (b[0] - 3) ** 2 * 0.5

    opt = Newton([a, b])
    opt.step(f)
    full = torch.cat([a.detach(), b.detach()])
    x = full.clone().requires_grad_(True)
    g = torch.autograd.grad((x[0] - 1) ** 2 + (x[1] + 1) ** 2 + (x[0] + x[1] - x[2] + 3) ** 2 + (x[2] - 3) ** 2 * 0.5, x)[0]
    torch.testing.assert_close(g, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("damping", [0.1, 1.0, 10.0])
def test_newton_damping(damping):
    fn = functions.Rosenbrock()
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    x1, *_ = newton_step(fn, x0, damping=damping)
    H, g = fn.hessian(x0), fn.gradient(x0)
    expected = x0 - torch.linalg.solve(H + damping * torch.eye(2, dtype=torch.float64), g)
    torch.testing.assert_close(x1, expected, **TIGHT)
    undamped, *_ = newton_step(fn, x0)
    assert (x1 - x0).norm() < (undamped - x0).norm()  # damping shortens the step on a convex region


def test_newton_lr_scales_the_step():
    fn = functions.Quadratic(condition_number=10.0)
    x0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    x1, *_ = newton_step(fn, x0, lr=0.25)
    torch.testing.assert_close(x1, 0.75 * x0, **TIGHT)


def test_newton_leaves_the_gradient_at_the_start_point_in_grad():
    fn = functions.Rosenbrock()
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    _, _, _, x = newton_step(fn, x0)
    torch.testing.assert_close(x.grad, fn.gradient(x0), **TIGHT)


def test_plain_newton_jumps_onto_a_saddle_and_saddle_free_escapes():
    fn = functions.Saddle()
    x0 = torch.tensor([0.5, 0.3], dtype=torch.float64)
    plain, *_ = newton_step(fn, x0)
    torch.testing.assert_close(plain, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-15)
    free, *_ = newton_step(fn, x0, mode="saddle_free")
    torch.testing.assert_close(free, torch.tensor([0.0, 0.6], dtype=torch.float64), **TIGHT)
    assert free.norm() > x0.norm()             # moves away from the saddle at the origin
    assert fn(free).item() < fn(x0).item() < 1  # and downhill
    assert fn(plain).item() > fn(free).item()


def test_saddle_free_equals_newton_on_a_convex_problem():
    fn = functions.Quadratic(condition_number=30.0, dim=3, seed=2)
    x0 = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)
    a, *_ = newton_step(fn, x0)
    b, *_ = newton_step(fn, x0, mode="saddle_free")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_newton_direction_directly():
    H = torch.diag(torch.tensor([2.0, -4.0], dtype=torch.float64))
    g = torch.tensor([2.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(newton_direction(g, H), torch.tensor([-1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(newton_direction(g, H, mode="saddle_free"), torch.tensor([-1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(newton_direction(g, H, damping=2.0, mode="saddle_free"),
                               torch.tensor([-0.5, -4.0 / 6.0], dtype=torch.float64))


def test_newton_errors():
    x = torch.ones(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="needs a closure"):
        Newton([x]).step()
    with pytest.raises(ValueError, match="has no graph"):
        Newton([x]).step(lambda: (x**2).sum().detach())
    y = torch.ones(1, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="single param group"):
        Newton([{"params": [x]}, {"params": [y]}]).step(lambda: (x**2).sum() + (y**2).sum())
    with pytest.raises(ValueError, match=r"lr must be >= 0(\.0)?, got -1"):
        Newton([x], lr=-1)
    with pytest.raises(ValueError, match="damping must be >= 0"):
        Newton([x], damping=-0.1)
    with pytest.raises(ValueError, match="mode must be one of"):
        Newton([x], mode="cubic")
    assert Newton.closure_calls_backward is False


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_registered_optimizer_decreases_a_quadratic(name):
    fn = functions.Quadratic(condition_number=5.0)
    # adaptive methods move each coordinate about lr per step, whatever the gradient's size
    lr = 0.5 if name in ("AdaGrad", "RMSProp", "Adam") else 0.1
    trace = run.minimize(fn, fn.start, OPTIMIZERS[name], steps=30, lr=lr)
    assert isinstance(OPTIMIZERS[name]([torch.zeros(2, requires_grad=True)], lr=0.1), torch.optim.Optimizer)
    assert trace.final_loss < 0.1 * trace.loss[0]
