"""optlib.stability (gradient norms, clipping, NaN/inf checks) against torch.nn.utils, and the
clipping / NaN policy of run.minimize and run.train against hand-written loops."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from optlib import functions, stability
from optlib.data import Dataset, minibatches
from optlib.optim import SGD, Adam
from optlib.run import minimize, train
from optlib.stability import NonFiniteLossError, check_finite, clip_grad_norm_, global_grad_norm

F64 = torch.float64
EXACT = dict(rtol=1e-13, atol=1e-15)
SHAPES = [(4, 3), (3,), (2, 5, 2), ()]


def params_with_grads(seed=0, scale=1.0, without_grad=()):
    """Float64 parameters of several shapes with random gradients; indices in ``without_grad`` get none."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for i, shape in enumerate(SHAPES):
        p = torch.randn(shape, generator=g, dtype=F64).requires_grad_(True)
        if i not in without_grad:
            p.grad = scale * torch.randn(shape, generator=g, dtype=F64)
        params.append(p)
    return params


def copies(params):
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_(True)
        q.grad = None if p.grad is None else p.grad.clone()
        out.append(q)
    return out


def flat_grad(params):
    return torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])


# ----------------------------------------------------------------- global_grad_norm

@pytest.mark.parametrize("norm_type", [2, 2.0, 1, math.inf, 3, 0.5])
def test_global_grad_norm_is_the_norm_of_all_gradients_as_one_vector(norm_type):
    params = params_with_grads(without_grad=(1,))
    expected = torch.linalg.vector_norm(flat_grad(params), norm_type)
    torch.testing.assert_close(global_grad_norm(params, norm_type), expected, **EXACT)
    torch.testing.assert_close(global_grad_norm(iter(params), norm_type), expected, **EXACT)  # any iterable


def test_global_grad_norm_of_one_tensor_and_of_no_gradients():
    p = torch.tensor([3.0, -4.0], dtype=F64, requires_grad=True)
    assert global_grad_norm(p).item() == 0.0  # no gradient yet
    p.grad = torch.tensor([3.0, -4.0], dtype=F64)
    assert global_grad_norm(p).item() == 5.0
    assert global_grad_norm([p], 1).item() == 7.0 and global_grad_norm([p], math.inf).item() == 4.0
    assert global_grad_norm([]).item() == 0.0


@pytest.mark.parametrize("norm_type,error", [(0, ValueError), (-2, ValueError), (float("nan"), ValueError),
                                             (-math.inf, ValueError), (True, TypeError), ("fro", TypeError)])
def test_global_grad_norm_rejects_bad_norm_types(norm_type, error):
    with pytest.raises(error, match="norm_type must (be|not be NaN)"):
        global_grad_norm(params_with_grads(), norm_type)


# ----------------------------------------------------------------- clip_grad_norm_

@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm_factor", [0.3, 3.0], ids=["clipped", "unclipped"])
@pytest.mark.parametrize("without_grad", [(), (1, 3)], ids=["all grads", "some without grad"])
def test_clip_grad_norm_equals_torch(norm_type, max_norm_factor, without_grad):
    ours = params_with_grads(seed=1, scale=2.0, without_grad=without_grad)
    theirs = copies(ours)
    before = flat_grad(ours).clone()
    norm = torch.linalg.vector_norm(before, norm_type).item()
    max_norm = max_norm_factor * norm
    total = clip_grad_norm_(ours, max_norm, norm_type)
    expected_total = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    torch.testing.assert_close(total, expected_total, **EXACT)
    assert total.item() == pytest.approx(norm, rel=1e-14)  # the norm before clipping
    for p, q in zip(ours, theirs):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, **EXACT)
    after = torch.linalg.vector_norm(flat_grad(ours), norm_type).item()
    if max_norm_factor < 1:  # clipped: same direction, length max_norm (up to the 1e-6 guard)
        assert after == pytest.approx(max_norm, rel=1e-6)
        torch.testing.assert_close(flat_grad(ours) / after, before / norm, **EXACT)
    else:
        torch.testing.assert_close(flat_grad(ours), before, rtol=0, atol=0)


def test_clip_grad_norm_of_a_single_tensor_and_of_no_gradients():
    p = torch.tensor([3.0, 4.0], dtype=F64, requires_grad=True)
    assert clip_grad_norm_(p, 1.0).item() == 0.0 and p.grad is None
    p.grad = torch.tensor([3.0, 4.0], dtype=F64)
    assert clip_grad_norm_(p, 1.0).item() == 5.0
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8], dtype=F64), rtol=1e-6, atol=0)
    empty = clip_grad_norm_([], 1.0)
    torch.testing.assert_close(empty, torch.nn.utils.clip_grad_norm_([], 1.0))


@pytest.mark.parametrize("bad", [float("nan"), math.inf, -math.inf])
def test_clip_grad_norm_error_if_nonfinite(bad):
    params = params_with_grads()
    params[2].grad[1, 2, 0] = bad
    saved = [p.grad.clone() for p in params]
    with pytest.raises(NonFiniteLossError, match=r"total norm of order 2.0 of the gradients is (nan|inf)"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for p, g in zip(params, saved):  # nothing was scaled
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0, equal_nan=True)
    with pytest.raises(RuntimeError):  # torch refuses too (with a RuntimeError)
        torch.nn.utils.clip_grad_norm_(copies(params), 1.0, error_if_nonfinite=True)
    # without the flag both silently return the non-finite norm and scale by it
    theirs = copies(params)
    total = clip_grad_norm_(params, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert not math.isfinite(total.item())
    torch.testing.assert_close(total, expected, equal_nan=True)
    for p, q in zip(params, theirs):
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True)


@pytest.mark.parametrize("max_norm,error", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                            (True, TypeError)])
def test_clip_grad_norm_rejects_bad_max_norm(max_norm, error):
    with pytest.raises(error, match="max_norm must (be|not be NaN)"):
        clip_grad_norm_(params_with_grads(), max_norm)


# ----------------------------------------------------------------- check_finite

def test_check_finite():
    assert check_finite(torch.tensor(1.5, dtype=F64)) == 1.5
    assert check_finite(2) == 2.0 and isinstance(check_finite(2), float)
    assert check_finite(np.float32(0.25)) == 0.25
    loss = torch.tensor(3.0, requires_grad=True) * 2
    assert check_finite(loss) == 6.0
    with pytest.raises(NonFiniteLossError, match=r"^loss became nan at step 7; lower the learning rate"):
        check_finite(torch.tensor(float("nan")), step=7)
    with pytest.raises(NonFiniteLossError, match=r"^loss became -inf; "):
        check_finite(-math.inf)
    with pytest.raises(FloatingPointError):  # NonFiniteLossError is one
        check_finite(math.inf, step=0)


# ----------------------------------------------------------------- run.minimize with clipping

def manual_minimize(fn, x0, make_optimizer, steps, max_norm):
    """The loop minimize should be: gradient, record its norm, clip it with torch, step."""
    x = torch.as_tensor(x0, dtype=F64).clone().requires_grad_(True)
    opt = make_optimizer([x])
    path, norms = [], []
    for _ in range(steps):
        path.append(x.detach().clone())
        opt.zero_grad()
        fn(x).backward()
        norms.append(x.grad.norm().item())
        torch.nn.utils.clip_grad_norm_([x], max_norm)
        opt.step()
    path.append(x.detach().clone())
    return torch.stack(path), norms


@pytest.mark.parametrize("method,hyper", [(SGD, dict(lr=2e-3, momentum=0.9)), (Adam, dict(lr=0.05))],
                         ids=["SGD momentum", "Adam"])
def test_minimize_with_clipping_equals_a_manual_loop_with_torch_clipping(method, hyper):
    fn, steps, max_norm = functions.Rosenbrock(), 60, 20.0
    trace = minimize(fn, fn.start, method, steps=steps, clip_grad_norm=max_norm, **hyper)
    path, norms = manual_minimize(fn, fn.start, lambda p: method(p, **hyper), steps, max_norm)
    torch.testing.assert_close(torch.as_tensor(trace.path()), path, **EXACT)
    np.testing.assert_allclose(trace.grad_norm[:steps], norms, rtol=1e-13)  # before clipping
    assert max(norms) > 5 * max_norm and min(norms) < max_norm  # some steps clipped, some not
    unclipped = minimize(fn, fn.start, method, steps=steps, **hyper)
    assert np.abs(unclipped.path() - trace.path()).max() > 1e-3  # clipping changed the run


# ----------------------------------------------------------------- run.train with clipping

def tiny_data(seed=0, n=40):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + 10, 5, generator=g, dtype=F64)
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).long() + (X[:, 2] > 1).long()
    return Dataset(X[:n], y[:n], X[n:], y[n:])


def tiny_model(seed=0):
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(F64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(2.0 * torch.randn(p.shape, generator=g, dtype=F64))
    return model


@pytest.mark.parametrize("method,hyper", [(SGD, dict(lr=0.5, momentum=0.9)), (Adam, dict(lr=0.05))],
                         ids=["SGD momentum", "Adam"])
def test_train_with_clipping_equals_a_manual_loop_with_torch_clipping(method, hyper):
    data, steps, batch_size, max_norm = tiny_data(), 12, 16, 0.5
    loss_fn = nn.functional.cross_entropy
    model = tiny_model()
    trace = train(model, loss_fn, data, method, steps=steps, batch_size=batch_size,
                  generator=torch.Generator().manual_seed(1), clip_grad_norm=max_norm, **hyper)

    reference = tiny_model()
    opt = method(reference.parameters(), **hyper)
    g, norms, losses = torch.Generator().manual_seed(1), [], []
    while len(norms) < steps:
        for X, y in minibatches(data.X_train, data.y_train, batch_size, generator=g):
            opt.zero_grad()
            loss = loss_fn(reference(X), y)
            loss.backward()
            losses.append(loss.item())
            norms.append(torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm).item())
            opt.step()
            if len(norms) == steps:
                break
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, **EXACT)
    np.testing.assert_allclose(trace.grad_norm, norms, rtol=1e-13)  # the norms before clipping
    np.testing.assert_allclose(trace.loss, losses, rtol=1e-14)
    assert max(norms) > max_norm  # clipping was active


# ----------------------------------------------------------------- NaN / inf losses in runs

def log_loss(x):
    """Minimizing log(x) from 1 with lr 0.3 steps to 0.7, 0.271, then below 0: log gives NaN at step 3."""
    return torch.log(x).sum()


def test_minimize_raises_on_a_nan_loss_with_a_clear_message():
    with pytest.raises(NonFiniteLossError,
                       match=r"^loss became nan at step 3 \(last finite loss -1\.3\d*\); lower the learning rate"):
        minimize(log_loss, [1.0], SGD, steps=10, lr=0.3)


def test_minimize_raises_on_an_inf_loss_also_when_clipping():
    def overflow(x):  # finite gradients of bounded size, but the loss overflows float64 once |x| > ~1e100
        return (x**2).sum() * 1e108

    with pytest.raises(NonFiniteLossError, match=r"loss became inf at step \d+"):
        minimize(overflow, [1.0], SGD, steps=500, lr=1.0, clip_grad_norm=1e120)


def test_minimize_stop_ends_the_run_and_sets_stopped():
    trace = minimize(log_loss, [1.0], SGD, steps=10, lr=0.3, on_nonfinite="stop", clip_grad_norm=10.0)
    assert trace.steps == 4 and len(trace.loss) == 4
    assert math.isnan(trace.loss[-1]) and all(math.isfinite(v) for v in trace.loss[:-1])
    assert trace.stopped.startswith("loss became nan at step 3 (last finite loss")
    assert "stopped=" in repr(trace)


def test_train_stops_or_raises_on_a_nonfinite_loss():
    data = tiny_data()

    def blows_up(scores, y):  # finite for the first steps, then inf once the scores grow
        return nn.functional.cross_entropy(scores, y) * torch.exp(scores.abs().max()) ** 60

    with pytest.raises(NonFiniteLossError, match=r"loss became (inf|nan) at step \d+"):
        train(tiny_model(), blows_up, data, SGD, steps=200, lr=1.0, clip_grad_norm=1.0)
    trace = train(tiny_model(), blows_up, data, SGD, steps=200, lr=1.0, clip_grad_norm=1.0, on_nonfinite="stop")
    assert trace.stopped is not None and trace.stopped.startswith("loss became")
    assert 0 < trace.steps < 200 and not math.isfinite(trace.loss[-1])
    assert "test_acc" not in trace.metrics  # no evaluation of a broken model


def test_clip_grad_norm_with_infinite_max_norm_does_not_clip_like_torch():
    ours, theirs = params_with_grads(), params_with_grads()
    total = clip_grad_norm_(ours, math.inf)
    expected = torch.nn.utils.clip_grad_norm_(theirs, math.inf)
    torch.testing.assert_close(total, expected)
    for p, q in zip(ours, theirs):
        assert torch.equal(p.grad, q.grad)


# ----------------------------------------------------------------- step lengths

def test_step_lengths_of_plain_sgd_are_lr_times_the_gradient_norm_and_change_nothing():
    data, lr = tiny_data(), 0.1
    kwargs = dict(steps=8, batch_size=16, lr=lr)
    with stability.step_lengths() as lengths:
        trace = train(tiny_model(), nn.functional.cross_entropy, data, SGD, generator=torch.Generator().manual_seed(1),
                      **kwargs)
    assert len(lengths) == trace.steps == 8
    np.testing.assert_allclose(lengths, lr * np.array(trace.grad_norm), rtol=1e-12)
    plain = train(tiny_model(), nn.functional.cross_entropy, data, SGD, generator=torch.Generator().manual_seed(1),
                  **kwargs)
    assert plain.loss == trace.loss and plain.grad_norm == trace.grad_norm
    SGD(tiny_model().parameters(), lr=lr).step()  # outside the block: the hooks are gone
    assert len(lengths) == 8


def test_step_lengths_with_clipping_and_momentum_exceed_lr_times_c_but_not_the_bound():
    lr, c, rho = 0.5, 0.1, 0.9
    with stability.step_lengths() as lengths:
        trace = train(tiny_model(), nn.functional.cross_entropy, tiny_data(), SGD, steps=30, batch_size=16, lr=lr,
                      momentum=rho, clip_grad_norm=c, generator=torch.Generator().manual_seed(1))
    assert min(trace.grad_norm) > c  # every gradient clipped to length c
    assert lengths[0] == pytest.approx(lr * c, rel=1e-6)  # the first step is lr times the clipped gradient
    assert max(lengths) > 2 * lr * c  # the velocity adds clipped gradients up
    assert max(lengths) <= lr * c / (1 - rho) * (1 + 1e-9)  # ...to at most lr c / (1 - rho)
