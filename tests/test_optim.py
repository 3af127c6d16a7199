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
    lr = 0.5 if name in ("AdaGrad", "RMSProp", "Adam", "AdamW", "AMSGrad") else 0.1
    trace = run.minimize(fn, fn.start, OPTIMIZERS[name], steps=30, lr=lr)
    assert isinstance(OPTIMIZERS[name]([torch.zeros(2, requires_grad=True)], lr=0.1), torch.optim.Optimizer)
    assert trace.final_loss < 0.1 * trace.loss[0]


# ------------------------------------------- SGD on a random multi-tensor problem, 60 steps

MATCH = dict(rtol=1e-10, atol=1e-13)  # float64; optlib performs torch's operations, so this is rounding-level
SHAPES = [(6, 5), (6,), (3, 6), (3,), ()]  # an MLP 5 -> 6 -> 3 and a scalar temperature


def make_mlp_problem(seed=0, steps=60, batch=8):
    """A random float64 problem with several parameter tensors of different shapes and a fresh
    minibatch for every step: ``loss_fn(params, k)`` is the loss of step k. The scalar parameter
    takes no part in steps 0-2, so it has no gradient there (optimizers must skip it, as torch does)."""
    g = torch.Generator().manual_seed(seed)
    params = [(0.5 * torch.randn(s, generator=g, dtype=torch.float64)).requires_grad_(True) for s in SHAPES]
    batches = [(torch.randn(batch, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (batch,), generator=g))
               for _ in range(steps)]

    def loss_fn(params, k):
        W1, b1, W2, b2, s = params
        if k < 3:
            s = s.detach()
        X, y = batches[k]
        logits = (torch.tanh(X @ W1.T + b1) @ W2.T + b2) * torch.exp(s)
        return torch.nn.functional.cross_entropy(logits, y) + 0.01 * (W1**4).sum()

    return params, loss_fn


def build_groups(cls, params, spec):
    """``cls`` on ``params``: ``spec`` is a dict (one group) or a list of ``(indices, hyperparameters)``."""
    if isinstance(spec, dict):
        return cls(params, **spec)
    return cls([dict(params=[params[i] for i in idx], **hyper) for idx, hyper in spec])


def step_k(optimizer, params, loss_fn, k):
    optimizer.zero_grad()
    loss = loss_fn(params, k)
    loss.backward()
    optimizer.step()
    return loss.item()


def assert_matches_torch(ours_cls, theirs_cls, spec, steps=60, seed=0):
    """Run optlib's and torch's optimizer side by side; the iterates must agree at every step."""
    ours_p, loss_fn = make_mlp_problem(seed, steps)
    theirs_p = clone_params(ours_p)
    start = clone_params(ours_p)
    ours, theirs = build_groups(ours_cls, ours_p, spec), build_groups(theirs_cls, theirs_p, spec)
    for k in range(steps):
        step_k(ours, ours_p, loss_fn, k)
        step_k(theirs, theirs_p, loss_fn, k)
        for i, (a, b) in enumerate(zip(ours_p, theirs_p)):
            torch.testing.assert_close(a, b, **MATCH, msg=lambda m: f"step {k}, parameter {i}: {m}")
    # the comparison means something only if every parameter moved well beyond the tolerance
    assert all((a - s).abs().max() > 1e-3 for a, s in zip(ours_p, start))


def assert_resumes_bit_identically(cls, spec, steps_before=7, steps_after=8):
    """Save a state_dict mid-run, load it into a fresh optimizer on fresh copies of the parameters:
    the continued run equals the uninterrupted one exactly."""
    params, loss_fn = make_mlp_problem(steps=steps_before + steps_after)
    optimizer = build_groups(cls, params, spec)
    for k in range(steps_before):
        step_k(optimizer, params, loss_fn, k)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    resumed_p = clone_params(params)
    resumed = build_groups(cls, resumed_p, spec)
    for group in resumed.param_groups:
        group["lr"] *= 3.0  # overwritten by load_state_dict
    resumed.load_state_dict(torch.load(buffer))
    assert [g["lr"] for g in resumed.param_groups] == [g["lr"] for g in optimizer.param_groups]
    for k in range(steps_before, steps_before + steps_after):
        step_k(optimizer, params, loss_fn, k)
        step_k(resumed, resumed_p, loss_fn, k)
    for i, (a, b) in enumerate(zip(params, resumed_p)):
        assert torch.equal(a, b), f"parameter {i} differs after resuming"
        for key, value in optimizer.state[a].items():
            other = resumed.state[b][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key


SGD_CONFIGS = {
    "plain + weight decay": dict(lr=0.1, weight_decay=0.05),
    "momentum + weight decay": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "nesterov + weight decay": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02),
    "groups": [([0, 1], dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
               ([2, 3], dict(lr=0.02, momentum=0.5, nesterov=True)),
               ([4], dict(lr=0.2, weight_decay=0.1))],
}


@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_sgd_matches_torch_on_a_multi_tensor_problem_over_60_steps(config):
    assert_matches_torch(SGD, torch.optim.SGD, SGD_CONFIGS[config])


CLASSICAL = {
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "nesterov + weight decay": dict(lr=0.03, momentum=0.8, nesterov=True, weight_decay=0.05),
    "groups": [([0, 1, 4], dict(lr=0.05, momentum=0.9)), ([2, 3], dict(lr=0.1, momentum=0.5, nesterov=True))],
}


def run_sgd(spec, formulation, steps=60, lr_change=None):
    params, loss_fn = make_mlp_problem(steps=steps)
    if isinstance(spec, dict):
        spec = dict(spec, formulation=formulation)
    else:
        spec = [(idx, dict(hyper, formulation=formulation)) for idx, hyper in spec]
    optimizer = build_groups(SGD, params, spec)
    for k in range(steps):
        if k == lr_change:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
        step_k(optimizer, params, loss_fn, k)
    return params, optimizer


@pytest.mark.parametrize("config", list(CLASSICAL))
def test_classical_momentum_gives_the_same_iterates_with_a_constant_lr(config):
    torch_form, opt_t = run_sgd(CLASSICAL[config], "torch")
    classical, opt_c = run_sgd(CLASSICAL[config], "classical")
    for a, b in zip(torch_form, classical):
        torch.testing.assert_close(a, b, **MATCH)
    # the velocities differ by the factor -lr: v_classical = -lr * v_torch
    for group_t, group_c in zip(opt_t.param_groups, opt_c.param_groups):
        for p, q in zip(group_t["params"], group_c["params"]):
            torch.testing.assert_close(opt_c.state[q]["velocity"], -group_t["lr"] * opt_t.state[p]["momentum_buffer"],
                                       **MATCH)


@pytest.mark.parametrize("config", ["momentum", "nesterov"])
def test_classical_momentum_differs_after_an_lr_change(config):
    torch_form, _ = run_sgd(CLASSICAL[config], "torch", steps=30, lr_change=20)
    classical, _ = run_sgd(CLASSICAL[config], "classical", steps=30, lr_change=20)
    before_t, _ = run_sgd(CLASSICAL[config], "torch", steps=20)
    before_c, _ = run_sgd(CLASSICAL[config], "classical", steps=20)
    for a, b in zip(before_t, before_c):
        torch.testing.assert_close(a, b, **MATCH)
    # after lr drops 10x, the classical velocity still carries steps of the old size
    difference = max((a - b).abs().max().item() for a, b in zip(torch_form, classical))
    assert difference > 1e-4


def test_classical_momentum_by_hand():
    # constant gradient g = 2 with lr 0.1, rho 0.5: v1 = -0.2, v2 = 0.5 v1 - 0.2 = -0.3 (x: -0.2, -0.5);
    # halving lr before step 3: v3 = 0.5 v2 - 0.1 = -0.25, whereas torch's form steps -0.05 * (0.5 * 3 + 2) = -0.175
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    classical, torch_form = SGD([x], lr=0.1, momentum=0.5, formulation="classical"), SGD([y], lr=0.1, momentum=0.5)
    for k in range(3):
        for opt, p in ((classical, x), (torch_form, y)):
            if k == 2:
                opt.param_groups[0]["lr"] = 0.05
            opt.zero_grad()
            (2.0 * p).sum().backward()
            opt.step()
        if k == 1:
            assert x.item() == pytest.approx(-0.5) and y.item() == pytest.approx(-0.5)
    assert x.item() == pytest.approx(-0.75)
    assert y.item() == pytest.approx(-0.675)
    assert classical.state[x]["velocity"].item() == pytest.approx(-0.25)


SGD_STATE_CONFIGS = {
    "plain": dict(lr=0.1, weight_decay=0.01),
    "momentum": dict(lr=0.05, momentum=0.9, dampening=0.1),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "classical": dict(lr=0.05, momentum=0.9, formulation="classical"),
    "classical nesterov": dict(lr=0.05, momentum=0.9, nesterov=True, formulation="classical"),
    "groups, both formulations": [([0, 1], dict(lr=0.05, momentum=0.9)),
                                  ([2, 3, 4], dict(lr=0.1, momentum=0.5, nesterov=True, formulation="classical"))],
}


@pytest.mark.parametrize("config", list(SGD_STATE_CONFIGS))
def test_sgd_state_dict_mid_run_resumes_bit_identically(config):
    assert_resumes_bit_identically(SGD, SGD_STATE_CONFIGS[config])


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(momentum=0.9, dampening=0.1, formulation="classical"), ValueError, r"classical formulation has no dampening"),
    (dict(formulation="heavy-ball"), ValueError, r"formulation must be one of \['classical', 'torch'\]"),
    (dict(momentum=float("nan")), ValueError, r"momentum must not be NaN"),
    (dict(dampening=-0.5), ValueError, r"dampening must be in \[0(\.0)?, 1(\.0)?\], got -0.5"),
    (dict(lr=True), TypeError, r"lr must be a real number, got True"),
    (dict(momentum=True), TypeError, r"momentum must be a real number, got True"),
    (dict(weight_decay=False), TypeError, r"weight_decay must be a real number, got False"),
    (dict(momentum=0.9, dampening=True), TypeError, r"dampening must be a real number, got True"),
    (dict(lr=[0.1]), TypeError, r"lr must be a real number, got \[0.1\]"),
    (dict(momentum=0.9, nesterov=1), TypeError, r"nesterov must be True or False, got 1"),
])
def test_sgd_more_invalid_hyperparameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        SGD([torch.zeros(2, requires_grad=True)], **kwargs)
