"""optlib.optim.schedule_free against the schedulefree package (memory-efficient, reference and paper classes)
in float64, the pure functions against closed forms, modes, state_dict, and what the average buys on a noisy
least-squares problem."""
import contextlib
import io
import math

import pytest
import schedulefree
import torch

from optlib.optim import SGD
from optlib.optim.schedule_free import (ScheduleFreeAdamW, ScheduleFreeSGD, adam_direction, averaged_model,
                                        averaging_coefficient, averaging_weight, extrapolate, interpolate,
                                        schedule_free_update, sgd_direction, warmup_factor)

F64 = torch.float64
MATCH = dict(rtol=1e-12, atol=1e-14)


def make_problem(seed=0):
    """A two-layer tanh network for 3-class softmax regression in float64: W1, b1, W2, b2; minibatch k is fixed."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=g, dtype=F64)
    labels = torch.randint(0, 3, (64,), generator=g)
    params = [(0.5 * torch.randn(*shape, generator=g, dtype=F64)).requires_grad_(True)
              for shape in [(6, 5), (6,), (3, 6), (3,)]]
    batches = torch.randint(0, 64, (200, 16), generator=g)

    def loss_fn(ps, k):
        W1, b1, W2, b2 = ps
        i = batches[k]
        return torch.nn.functional.cross_entropy(torch.tanh(X[i] @ W1.T + b1) @ W2.T + b2, labels[i])

    return params, loss_fn


def clone(params):
    return [p.detach().clone().requires_grad_(True) for p in params]


def build(cls, params, spec, **extra):
    """Two groups: (W1, b1) with ``spec``'s lr and weight decay, (W2, b2) with half the lr and double the decay."""
    first = dict(params=params[:2])
    second = dict(params=params[2:], lr=spec["lr"] / 2, weight_decay=2 * spec.get("weight_decay", 0.0))
    return cls([first, second], **spec, **extra)


def step(optimizer, params, loss_fn, k):
    optimizer.zero_grad()
    loss = loss_fn(params, k)
    loss.backward()
    with contextlib.redirect_stdout(io.StringIO()):  # AdamWScheduleFreeReference prints on train()/eval()
        optimizer.step()
    return loss


def switch(optimizer, mode):
    with contextlib.redirect_stdout(io.StringIO()):
        getattr(optimizer, mode)()


SGD_SPECS = {
    "warmup + weight decay": dict(lr=0.5, momentum=0.9, weight_decay=0.01, warmup_steps=8),
    "r = 1, no lr weighting": dict(lr=0.3, momentum=0.8, weight_decay=0.05, warmup_steps=4, r=1.0, weight_lr_power=0.0),
    "r = 0.5, weight_lr_power = 1": dict(lr=0.4, momentum=0.95, warmup_steps=10, r=0.5, weight_lr_power=1.0),
}
ADAM_SPECS = {
    "warmup + weight decay": dict(lr=0.02, betas=(0.9, 0.999), weight_decay=0.01, warmup_steps=8),
    "r = 1, no lr weighting": dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, warmup_steps=4, r=1.0,
                                   weight_lr_power=0.0),
    "r = 0.5, weight_lr_power = 1": dict(lr=0.03, betas=(0.95, 0.95), warmup_steps=10, r=0.5, weight_lr_power=1.0),
}
CASES = ([("SGD", ScheduleFreeSGD, {}, ref, spec) for ref in ("SGDScheduleFree", "SGDScheduleFreeReference")
          for spec in SGD_SPECS]
         + [("AdamW", ScheduleFreeAdamW, {}, ref, spec) for ref in ("AdamWScheduleFree", "AdamWScheduleFreeReference")
            for spec in ADAM_SPECS]
         + [("AdamW", ScheduleFreeAdamW, dict(formulation="paper"), "AdamWScheduleFreePaper", spec)
            for spec in ADAM_SPECS])


@pytest.mark.parametrize("family, cls, extra, reference, spec", CASES,
                         ids=[f"{c[3]}: {c[4]}" for c in CASES])
def test_matches_schedulefree_with_eval_switches_mid_run(family, cls, extra, reference, spec):
    """35 steps side by side; at steps 12 and 25 both switch to eval (x compared), then back to train."""
    spec = (SGD_SPECS if family == "SGD" else ADAM_SPECS)[spec]
    ours_p, loss_fn = make_problem()
    theirs_p, start = clone(ours_p), clone(ours_p)
    ours, theirs = build(cls, ours_p, spec, **extra), build(getattr(schedulefree, reference), theirs_p, spec)
    switch(theirs, "train")  # the package's memory-efficient classes start in eval mode and refuse step()
    switch(ours, "train")
    for k in range(35):
        assert step(ours, ours_p, loss_fn, k).item() == pytest.approx(step(theirs, theirs_p, loss_fn, k).item(),
                                                                      rel=1e-12)
        for i, (a, b) in enumerate(zip(ours_p, theirs_p)):
            torch.testing.assert_close(a, b, **MATCH, msg=lambda m: f"y, step {k}, parameter {i}: {m}")
        if k in (12, 25, 34):
            switch(ours, "eval")
            switch(theirs, "eval")
            for i, (a, b) in enumerate(zip(ours_p, theirs_p)):
                torch.testing.assert_close(a, b, **MATCH, msg=lambda m: f"x, step {k}, parameter {i}: {m}")
            switch(ours, "train")
            switch(theirs, "train")
    for a, b, s in zip(ours_p, theirs_p, start):
        assert (a - s).abs().max() > 1e-2  # every tensor moved far beyond the tolerance
    for group, theirs_group in zip(ours.param_groups, theirs.param_groups):
        assert group["k"] == theirs_group["k"] == 35
        assert group["weight_sum"] == pytest.approx(theirs_group["weight_sum"], rel=1e-14)
        assert group["scheduled_lr"] == pytest.approx(theirs_group["scheduled_lr"], rel=1e-14)


@pytest.mark.parametrize("cls, spec", [(ScheduleFreeSGD, SGD_SPECS["warmup + weight decay"]),
                                       (ScheduleFreeAdamW, ADAM_SPECS["warmup + weight decay"])])
def test_memory_efficient_form_equals_the_explicit_three_sequences(cls, spec):
    """The parameters (y) and the eval x equal x, y, z run explicitly with the pure functions."""
    params, loss_fn = make_problem(1)
    optimizer = cls(params, **spec)
    beta = spec.get("momentum", spec.get("betas", (None,))[0])
    x = [p.detach().clone() for p in params]
    z = [p.detach().clone() for p in params]
    v = [torch.zeros_like(p) for p in params]
    weight_sum = 0.0
    for k in range(30):
        t = k + 1
        y = [interpolate(xi, zi, beta) for xi, zi in zip(x, z)]
        for p, yi in zip(params, y):
            torch.testing.assert_close(p.detach(), yi, **MATCH)
        step(optimizer, params, loss_fn, k)
        grads = [p.grad for p in params]
        lr = spec["lr"] * warmup_factor(t, spec["warmup_steps"])
        weight = averaging_weight(t, lr, r=0.0, weight_lr_power=2.0)
        weight_sum += weight
        c = averaging_coefficient(weight, weight_sum)
        for i in range(len(params)):
            if cls is ScheduleFreeSGD:
                d = sgd_direction(grads[i], y[i], weight_decay=spec["weight_decay"])
            else:
                d = adam_direction(grads[i], y[i], v[i], step=t, beta2=spec["betas"][1], eps=1e-8,
                                   weight_decay=spec["weight_decay"])
            z[i] = z[i] - lr * d
            x[i] = (1 - c) * x[i] + c * z[i]
    for p, xi in zip(optimizer.averaged_parameters(), x):
        torch.testing.assert_close(p, xi, **MATCH)


def test_uniform_weights_make_x_the_plain_average_of_the_z_iterates():
    """r = 0, weight_lr_power = 0, no warmup: c_t = 1/t, and after t steps x = (z_2 + ... + z_{t+1}) / t."""
    params, loss_fn = make_problem(2)
    optimizer = ScheduleFreeSGD(params, lr=0.5, momentum=0.9, r=0.0, weight_lr_power=0.0)
    zs = []
    for k in range(30):
        step(optimizer, params, loss_fn, k)
        zs.append([optimizer.state[p]["z"].clone() for p in params])
        mean = [torch.stack([z[i] for z in zs]).mean(0) for i in range(len(params))]
        for x, m in zip(optimizer.averaged_parameters(), mean):
            torch.testing.assert_close(x, m, rtol=1e-13, atol=1e-14)
    assert [averaging_coefficient(1.0, float(t)) for t in range(1, 6)] == [1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5]


def test_general_weights_make_x_the_weighted_average():
    """x after T steps = sum_t w_t z_{t+1} / sum_t w_t, w_t = t^r (γ min(1, t/T_w))^p, the initial point left out."""
    params, loss_fn = make_problem(3)
    lr, r, power, warmup = 0.4, 1.5, 2.0, 7
    optimizer = ScheduleFreeSGD(params, lr=lr, momentum=0.9, weight_decay=0.02, warmup_steps=warmup, r=r,
                                weight_lr_power=power)
    zs, weights = [], []
    for k in range(20):
        step(optimizer, params, loss_fn, k)
        t = k + 1
        zs.append([optimizer.state[p]["z"].clone() for p in params])
        weights.append(t ** r * (lr * min(1.0, t / warmup)) ** power)
    total = sum(weights)
    for i, x in enumerate(optimizer.averaged_parameters()):
        expected = sum(w * z[i] for w, z in zip(weights, zs)) / total
        torch.testing.assert_close(x, expected, rtol=1e-12, atol=1e-14)
    assert optimizer.param_groups[0]["weight_sum"] == pytest.approx(total, rel=1e-14)


def test_warmup_factor_and_averaging_weight_closed_forms():
    assert [warmup_factor(t, 4) for t in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [warmup_factor(t, 0) for t in (1, 2, 100)] == [1.0, 1.0, 1.0]
    assert averaging_weight(3, 0.5, r=2.0, weight_lr_power=3.0) == 9 * 0.125
    assert averaging_weight(5, 0.0, r=0.0, weight_lr_power=0.0) == 1.0  # 0^0 = 1: no lr weighting
    assert averaging_coefficient(0.0, 0.0) == 0.0  # lr = 0 with lr weighting: x stays put
    assert averaging_coefficient(2.0, 8.0) == 0.25


def test_interpolate_and_extrapolate_are_inverse_closed_forms():
    g = torch.Generator().manual_seed(4)
    x, z = torch.randn(7, generator=g, dtype=F64), torch.randn(7, generator=g, dtype=F64)
    for beta in (0.1, 0.5, 0.9, 0.98):
        y = interpolate(x, z, beta)
        torch.testing.assert_close(y, (1 - beta) * z + beta * x, rtol=1e-15, atol=1e-15)
        torch.testing.assert_close(extrapolate(y, z, beta), x, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(extrapolate(y, z, beta), (y - (1 - beta) * z) / beta, rtol=1e-13, atol=1e-14)


def test_schedule_free_update_equals_the_explicit_step():
    g = torch.Generator().manual_seed(5)
    x, z, d = (torch.randn(9, generator=g, dtype=F64) for _ in range(3))
    lr, beta, c = 0.3, 0.85, 0.2
    y = interpolate(x, z, beta)
    z_new = z - lr * d
    x_new = (1 - c) * x + c * z_new
    z_in_place = z.clone()
    schedule_free_update(y, z_in_place, d, lr=lr, beta=beta, c=c)
    torch.testing.assert_close(z_in_place, z_new, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(y, interpolate(x_new, z_new, beta), rtol=1e-14, atol=1e-15)


def test_directions_closed_forms_leave_the_gradient_alone():
    g = torch.Generator().manual_seed(6)
    grad, y = torch.randn(5, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    kept = grad.clone()
    torch.testing.assert_close(sgd_direction(grad, y, weight_decay=0.3), grad + 0.3 * y, rtol=1e-15, atol=0)
    assert sgd_direction(grad, y, weight_decay=0.0).data_ptr() != grad.data_ptr()
    v_prev = torch.rand(5, generator=g, dtype=F64)
    beta2, eps, lam, t = 0.99, 1e-3, 0.1, 3
    v_expected = beta2 * v_prev + (1 - beta2) * grad ** 2
    v = v_prev.clone()
    d = adam_direction(grad, y, v, step=t, beta2=beta2, eps=eps, weight_decay=lam)
    torch.testing.assert_close(v, v_expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(d, grad / ((v_expected / (1 - beta2 ** t)).sqrt() + eps) + lam * y, rtol=1e-14, atol=0)
    v = v_prev.clone()
    d = adam_direction(grad, y, v, step=t, beta2=beta2, eps=eps, weight_decay=lam, formulation="paper")
    torch.testing.assert_close(d, grad / (v_expected.sqrt() + eps) + lam * y, rtol=1e-14, atol=0)
    assert torch.equal(grad, kept)


def test_step_leaves_p_grad_unchanged_unlike_the_package():
    for cls, ref, spec in [(ScheduleFreeSGD, schedulefree.SGDScheduleFree, SGD_SPECS["warmup + weight decay"]),
                           (ScheduleFreeAdamW, schedulefree.AdamWScheduleFree, ADAM_SPECS["warmup + weight decay"])]:
        params, loss_fn = make_problem()
        optimizer = cls(params, **spec)
        loss_fn(params, 0).backward()
        grads = [p.grad.clone() for p in params]
        optimizer.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))
        theirs_p = clone(make_problem()[0])
        theirs = ref(theirs_p, **spec)
        theirs.train()
        loss_fn(theirs_p, 0).backward()
        theirs.step()
        assert not all(torch.equal(p.grad, g) for p, g in zip(theirs_p, grads))  # the trap avoided here


def test_paper_formulation_differs_only_in_eps_and_the_averaging_weights():
    """With eps = 0 and weight_lr_power = 0 the two formulations take the same steps; otherwise the paper's
    weights are gamma_t^2 (1 - beta2^t), so early iterates count less."""
    spec = dict(lr=0.02, betas=(0.9, 0.95), eps=0.0, weight_decay=0.0, warmup_steps=3, weight_lr_power=0.0)
    runs = {}
    for formulation in ("schedulefree", "paper"):
        params, loss_fn = make_problem(7)
        optimizer = ScheduleFreeAdamW(params, formulation=formulation, **spec)
        for k in range(25):
            step(optimizer, params, loss_fn, k)
        runs[formulation] = optimizer.averaged_parameters()
    for a, b in zip(runs["schedulefree"], runs["paper"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    params, loss_fn = make_problem(7)
    optimizer = ScheduleFreeAdamW(params, lr=0.02, betas=(0.9, 0.95), formulation="paper")
    for k in range(10):
        step(optimizer, params, loss_fn, k)
    expected = sum((0.02 * math.sqrt(1 - 0.95 ** t)) ** 2 for t in range(1, 11))
    assert optimizer.param_groups[0]["weight_sum"] == pytest.approx(expected, rel=1e-14)


def test_modes_step_refused_in_eval_and_switches_are_idempotent():
    params, loss_fn = make_problem()
    optimizer = ScheduleFreeAdamW(params, lr=0.01)
    assert optimizer.training  # x = y = z at the start: optlib starts in train mode
    optimizer.eval()
    optimizer.averaged_parameters()
    optimizer.train()
    assert len(optimizer.state) == 0  # lazy: no state before the first step, switches included
    for k in range(5):
        step(optimizer, params, loss_fn, k)
    optimizer.eval()
    assert not optimizer.training
    x = [p.detach().clone() for p in params]
    optimizer.eval()
    assert all(torch.equal(p, xi) for p, xi in zip(params, x))
    loss_fn(params, 5).backward()
    with pytest.raises(RuntimeError, match="eval mode.*call optimizer.train"):
        optimizer.step()
    assert all(torch.equal(p, xi) for p, xi in zip(params, x))
    optimizer.train()
    y = [p.detach().clone() for p in params]
    optimizer.train()
    assert all(torch.equal(p, yi) for p, yi in zip(params, y))
    optimizer.step()
    optimizer.add_param_group(dict(params=[torch.zeros(2, dtype=F64, requires_grad=True)]))
    assert optimizer.param_groups[-1]["train_mode"]
    optimizer.eval()
    optimizer.add_param_group(dict(params=[torch.zeros(2, dtype=F64, requires_grad=True)]))
    assert not optimizer.training and not optimizer.param_groups[-1]["train_mode"]


def test_closure_loss_is_taken_at_y():
    params, loss_fn = make_problem()
    optimizer = ScheduleFreeSGD(params, lr=0.5)
    for k in range(3):
        step(optimizer, params, loss_fn, k)
    y = clone(params)
    expected = loss_fn(y, 3).item()

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(params, 3)
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == expected


@pytest.mark.parametrize("cls, spec", [(ScheduleFreeSGD, SGD_SPECS["r = 1, no lr weighting"]),
                                       (ScheduleFreeAdamW, ADAM_SPECS["warmup + weight decay"]),
                                       (ScheduleFreeAdamW, dict(ADAM_SPECS["r = 1, no lr weighting"],
                                                                formulation="paper"))])
@pytest.mark.parametrize("save_mode", ["train", "eval"])
def test_state_dict_resume_restores_the_mode_and_the_iterates(cls, spec, save_mode):
    """Save model and optimizer after 9 steps (in train or eval mode), load into fresh copies: the resumed
    run equals the uninterrupted one bit for bit, the counters and the mode included."""
    params, loss_fn = make_problem()
    optimizer = build(cls, params, spec)
    for k in range(9):
        step(optimizer, params, loss_fn, k)
    getattr(optimizer, save_mode)()
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in params], "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer)
    resumed_p = [p.clone().requires_grad_(True) for p in checkpoint["params"]]
    resumed = build(cls, resumed_p, dict(spec, lr=3 * spec["lr"]))
    resumed.load_state_dict(checkpoint["optimizer"])
    assert resumed.training == (save_mode == "train")
    assert [g["lr"] for g in resumed.param_groups] == [g["lr"] for g in optimizer.param_groups]
    if save_mode == "eval":
        loss_fn(resumed_p, 9).backward()
        with pytest.raises(RuntimeError, match="eval mode"):
            resumed.step()
        for opt in (optimizer, resumed):
            opt.train()
    for k in range(9, 20):
        step(optimizer, params, loss_fn, k)
        step(resumed, resumed_p, loss_fn, k)
    for a, b in zip(params, resumed_p):
        assert torch.equal(a, b)
        for key, value in optimizer.state[a].items():
            assert torch.equal(value, resumed.state[b][key]), key
    for group, other in zip(optimizer.param_groups, resumed.param_groups):
        assert {k: v for k, v in group.items() if k != "params"} == {k: v for k, v in other.items() if k != "params"}


def test_averaged_model_gives_x_without_disturbing_training():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    twin = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    twin.load_state_dict(model.state_dict())
    X = torch.randn(32, 4, dtype=F64)
    target = X.sum(1, keepdim=True).sin()
    opts = [ScheduleFreeAdamW(m.parameters(), lr=0.05, warmup_steps=3, weight_decay=0.01) for m in (model, twin)]
    for k in range(12):
        for m, opt in zip((model, twin), opts):
            opt.zero_grad()
            ((m(X) - target) ** 2).mean().backward()
            opt.step()
        if k == 6:
            averaged = averaged_model(model, opts[0])
            before = [p.detach().clone() for p in model.parameters()]
            opts[0].eval()
            for a, b in zip(averaged.parameters(), model.parameters()):
                assert torch.equal(a, b)  # the same lerp as eval()
            opts[0].train()
            for p, b in zip(model.parameters(), before):
                p.data.copy_(b)  # undo the eval()/train() round trip's rounding: only averaged_model remains
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="ScheduleFree"):
        averaged_model(model, SGD(model.parameters()))


def test_average_beats_the_last_iterate_of_constant_step_sgd_on_noisy_least_squares():
    """20 independent least-squares problems (one row each of a batched parameter; both methods act
    coordinatewise), minibatches of 4, the same constant lr = 0.1, 1000 steps, no schedule. Plain SGD's
    last iterate stays in a noise ball of radius ~ lr; Schedule-Free's x averages the noise away.

    (Not for every setting: with a small lr and few steps, x still carries the early iterates far from
    the optimum, and the last iterate can be closer.)"""
    g = torch.Generator().manual_seed(0)
    S, n, d, batch, steps, lr = 20, 128, 8, 4, 1000, 0.1
    A = torch.randn(S, n, d, generator=g, dtype=F64)
    b = A @ torch.randn(S, d, 1, generator=g, dtype=F64) + 0.5 * torch.randn(S, n, 1, generator=g, dtype=F64)
    optimum = torch.linalg.lstsq(A, b).solution.squeeze(-1)
    rows = torch.randint(0, n, (steps, S, batch, 1), generator=g)
    distances = {}
    for name, cls, extra in [("sgd", SGD, {}), ("schedule-free", ScheduleFreeSGD, dict(momentum=0.9))]:
        w = torch.zeros(S, d, dtype=F64, requires_grad=True)
        optimizer = cls([w], lr=lr, **extra)
        for t in range(steps):
            optimizer.zero_grad()
            residual = (torch.take_along_dim(A, rows[t], dim=1) @ w[..., None]
                        - torch.take_along_dim(b, rows[t], dim=1))
            (0.5 * (residual ** 2).mean(dim=(1, 2)).sum()).backward()
            optimizer.step()
        if name == "schedule-free":
            optimizer.eval()
        distances[name] = (w.detach() - optimum).norm(dim=1)
    ratio = distances["schedule-free"] / distances["sgd"]
    assert ratio.median() < 0.5
    assert (ratio < 1).float().mean() >= 0.9


@pytest.mark.parametrize("cls, kwargs, error, match", [
    (ScheduleFreeSGD, dict(lr=-0.1), ValueError, "lr must be >= 0"),
    (ScheduleFreeSGD, dict(momentum=0.0), ValueError, "momentum must be > 0"),
    (ScheduleFreeSGD, dict(momentum=1.0), ValueError, r"momentum must be in \[0.0, 1.0\)"),
    (ScheduleFreeSGD, dict(weight_decay=-1e-3), ValueError, "weight_decay must be >= 0"),
    (ScheduleFreeSGD, dict(warmup_steps=-1), ValueError, "warmup_steps must be a non-negative integer"),
    (ScheduleFreeSGD, dict(warmup_steps=2.5), ValueError, "warmup_steps must be a non-negative integer"),
    (ScheduleFreeSGD, dict(r=-1.0), ValueError, "r must be >= 0"),
    (ScheduleFreeSGD, dict(weight_lr_power=float("nan")), ValueError, "weight_lr_power must not be NaN"),
    (ScheduleFreeSGD, dict(lr="0.1"), TypeError, "lr must be a real number"),
    (ScheduleFreeAdamW, dict(betas=(0.9,)), ValueError, r"betas must be a pair"),
    (ScheduleFreeAdamW, dict(betas=(0.0, 0.999)), ValueError, "beta1 must be > 0"),
    (ScheduleFreeAdamW, dict(betas=(0.9, 1.0)), ValueError, r"beta2 must be in \[0.0, 1.0\)"),
    (ScheduleFreeAdamW, dict(eps=-1e-8), ValueError, "eps must be >= 0"),
    (ScheduleFreeAdamW, dict(warmup_steps=True), ValueError, "warmup_steps must be a non-negative integer"),
    (ScheduleFreeAdamW, dict(formulation="torch"), ValueError, "formulation must be one of"),
])
def test_invalid_hyperparameters_are_refused(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls([torch.zeros(2, requires_grad=True)], **kwargs)


def test_sparse_gradients_are_refused():
    p = torch.zeros(3, dtype=F64, requires_grad=True)
    p.grad = torch.sparse_coo_tensor([[0]], [1.0], (3,), dtype=F64, check_invariants=True)
    with pytest.raises(RuntimeError, match="sparse"):
        ScheduleFreeSGD([p]).step()
