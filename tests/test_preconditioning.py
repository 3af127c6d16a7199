"""Tests of optlib.preconditioning: Hessian and Fisher diagonals, Hutchinson, optimizer state."""
import math
from functools import partial

import pytest
import torch

from optlib import functions, losses, models, optim, preconditioning as pc, run


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def small_mlp_problem(seed=0):
    g = gen(seed)
    model = models.MLP((5, 4, 3), activation="tanh", generator=g, device="cpu", dtype=torch.float64)
    X = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    return model, X, y


# ------------------------------------------------------------------ exact Hessian diagonal

def test_hessian_diagonal_matches_autograd_hessian_on_an_mlp():
    model, X, y = small_mlp_problem()
    fn, theta = pc.flat_loss(model, losses.softmax_loss, X, y)
    full = torch.autograd.functional.hessian(fn, theta)
    for chunk in (1, 7, 1000):  # chunking must not change the result
        torch.testing.assert_close(pc.hessian_diagonal(fn, theta, chunk_size=chunk), torch.diagonal(full))


def test_flat_loss_evaluates_the_model_and_leaves_it_untouched():
    model, X, y = small_mlp_problem(1)
    fn, theta = pc.flat_loss(model, losses.softmax_loss, X, y)
    torch.testing.assert_close(fn(theta), losses.softmax_loss(model(X), y))
    shifted = fn(theta + 0.1)
    assert not torch.allclose(shifted, fn(theta))
    torch.testing.assert_close(torch.cat([p.detach().reshape(-1) for p in model.parameters()]), theta)


def test_hessian_diagonal_of_a_quadratic_is_its_matrix_diagonal():
    q = functions.Quadratic(condition_number=50, dim=6, seed=3)
    x = torch.randn(6, generator=gen(), dtype=torch.float64)
    torch.testing.assert_close(pc.hessian_diagonal(q, x), torch.diagonal(q.A))


# ------------------------------------------------------------------ Hutchinson

def test_hutchinson_is_exact_for_a_diagonal_hessian_with_one_probe():
    h = torch.tensor([1.0, -2.0, 30.0, 0.5], dtype=torch.float64)
    est = pc.hutchinson_diagonal(lambda x: 0.5 * (h * x * x).sum(), torch.ones(4, dtype=torch.float64), 1,
                                 generator=gen())
    torch.testing.assert_close(est, h)


def test_hutchinson_error_is_within_its_standard_error_and_shrinks_like_one_over_sqrt_n():
    q = functions.Quadratic(condition_number=20, dim=12, seed=1)
    A = q.A
    x = torch.zeros(12, dtype=torch.float64)
    off = (A**2).sum(1) - torch.diagonal(A) ** 2            # variance of one sample: sum_{j != i} A_ij^2
    errors = {}
    for n in (100, 10_000):
        est = pc.hutchinson_diagonal(q, x, n, generator=gen(n))
        err = (est - torch.diagonal(A)).abs()
        stderr = (off / n).sqrt()
        assert bool((err <= 5 * stderr).all()), f"n={n}: error beyond 5 standard errors"
        errors[n] = err.norm().item()
    # 100 times more probes: error about 10 times smaller (loose bounds, one seed per size)
    assert 3 < errors[100] / errors[10_000] < 30


def test_hutchinson_return_samples_and_reproducibility():
    q = functions.Quadratic(condition_number=5, dim=4, seed=0)
    x = torch.zeros(4, dtype=torch.float64)
    samples = pc.hutchinson_diagonal(q, x, 10, generator=gen(3), return_samples=True, chunk_size=3)
    assert samples.shape == (10, 4)
    torch.testing.assert_close(samples.mean(0), pc.hutchinson_diagonal(q, x, 10, generator=gen(3)))


# ------------------------------------------------------------------ empirical Fisher and minibatch moment

def test_empirical_fisher_matches_a_loop_over_examples():
    model, X, y = small_mlp_problem(2)
    F, g_bar = pc.empirical_fisher_diagonal(model, losses.softmax_loss, X, y, batch_size=7, return_mean_gradient=True)
    loop_sq, loop_sum = 0, 0
    for i in range(len(X)):
        model.zero_grad()
        losses.softmax_loss(model(X[i:i + 1]), y[i:i + 1]).backward()
        gi = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        loop_sq, loop_sum = loop_sq + gi**2, loop_sum + gi
    torch.testing.assert_close(F, loop_sq / len(X))
    torch.testing.assert_close(g_bar, loop_sum / len(X))
    fn, theta = pc.flat_loss(model, losses.softmax_loss, X, y)
    torch.testing.assert_close(g_bar, torch.func.grad(fn)(theta))


def test_minibatch_second_moment_limits_and_monte_carlo():
    g = gen(5)
    per_example = torch.randn(20, 3, generator=g, dtype=torch.float64) + torch.tensor([0.5, 0.0, -2.0], dtype=torch.float64)
    F, g_bar = (per_example**2).mean(0), per_example.mean(0)
    torch.testing.assert_close(pc.minibatch_second_moment(F, g_bar, 1, 20), F)
    torch.testing.assert_close(pc.minibatch_second_moment(F, g_bar, 20, 20), g_bar**2)
    # exact enumeration is too big; Monte Carlo with many draws without replacement
    draws = torch.stack([per_example[torch.randperm(20, generator=g)[:5]].mean(0) ** 2 for _ in range(20000)])
    torch.testing.assert_close(draws.mean(0), pc.minibatch_second_moment(F, g_bar, 5, 20), rtol=0.03, atol=0.0)


# ------------------------------------------------------------------ optimizer state

def test_second_moment_and_effective_lr_read_each_optimizer():
    grads = torch.tensor([[3.0, -4.0]] * 5, dtype=torch.float64)
    _, lr_ada = pc.replay_gradients(optim.AdaGrad, grads, lr=0.1)
    torch.testing.assert_close(lr_ada[-1], 0.1 / (torch.tensor([3.0, 4.0], dtype=torch.float64) * math.sqrt(5) + 1e-10))
    _, v_adam = pc.replay_gradients(optim.Adam, grads, lr=0.1, record=pc.second_moment)
    torch.testing.assert_close(v_adam[-1], torch.tensor([9.0, 16.0], dtype=torch.float64))   # bias-corrected
    _, v_raw = pc.replay_gradients(optim.Adam, grads, lr=0.1, bias_correction=False, record=pc.second_moment)
    torch.testing.assert_close(v_raw[0], 0.001 * torch.tensor([9.0, 16.0], dtype=torch.float64))
    _, s_rms = pc.replay_gradients(optim.RMSProp, grads, lr=0.1, alpha=0.9, record=pc.second_moment)
    torch.testing.assert_close(s_rms[-1], (1 - 0.9**5) * torch.tensor([9.0, 16.0], dtype=torch.float64))
    # torch's own optimizers are read the same way
    _, v_torch = pc.replay_gradients(torch.optim.Adam, grads, lr=0.1, record=pc.second_moment)
    torch.testing.assert_close(v_torch, v_adam)


def test_second_moment_of_amsgrad_is_the_running_maximum():
    grads = torch.tensor([[10.0, 1.0]] * 3 + [[0.1, 2.0]] * 40, dtype=torch.float64)
    _, v_ams = pc.replay_gradients(optim.AMSGrad, grads, lr=0.1, betas=(0.9, 0.9), record=pc.second_moment)
    _, v_adam = pc.replay_gradients(optim.Adam, grads, lr=0.1, betas=(0.9, 0.9), record=pc.second_moment)
    # the maximum of the uncorrected v, divided by the bias correction of the current step
    raw = v_adam * (1 - 0.9 ** torch.arange(1, 44, dtype=torch.float64))[:, None]
    running_max = torch.cummax(raw, dim=0).values
    expected = running_max / (1 - 0.9 ** torch.arange(1, 44, dtype=torch.float64))[:, None]
    torch.testing.assert_close(v_ams, expected)
    assert v_ams[-1, 0] > 30 * v_adam[-1, 0]  # the burst of 10s is remembered by AMSGrad only
    _, v_torch = pc.replay_gradients(partial(torch.optim.Adam, amsgrad=True), grads, lr=0.1, betas=(0.9, 0.9),
                                     record=pc.second_moment)
    torch.testing.assert_close(v_torch, v_ams)


def test_replay_with_bounds_is_the_projected_online_method():
    # f_t(x) = g_t x on [-1, 1]: SGD with projection, written out by hand
    grads = torch.tensor([[3.0], [-1.0], [-1.0], [-1.0], [2.0]] * 4, dtype=torch.float64)
    path, _ = pc.replay_gradients(optim.SGD, grads, lr=0.4, bounds=(-1, 1), record=None)
    x, expected = 0.0, [0.0]
    for g in grads[:, 0].tolist():
        x = min(1.0, max(-1.0, x - 0.4 * g))
        expected.append(x)
    torch.testing.assert_close(path[:, 0], torch.tensor(expected, dtype=torch.float64))
    assert path.min() == -1.0  # the bound was active
    free, _ = pc.replay_gradients(optim.SGD, grads, lr=0.4, record=None)
    assert free.min() < -1.0
    for bad in ((1, -1), (0, 0), (1,), "ab"):
        with pytest.raises(ValueError, match="bounds"):
            pc.replay_gradients(optim.SGD, grads, lr=0.4, bounds=bad)


def test_adagrad_effective_lr_includes_lr_decay_of_the_last_step():
    grads = torch.ones(3, 1, dtype=torch.float64)
    path, eff = pc.replay_gradients(optim.AdaGrad, grads, lr=1.0, lr_decay=0.5, eps=0.0)
    steps = (path[:-1] - path[1:])[:, 0]
    torch.testing.assert_close(eff[:, 0], steps)  # gradient 1: the step equals the effective rate


def test_state_recorder_with_run_minimize_and_errors():
    rec = pc.StateRecorder(optim.RMSProp)
    trace = run.minimize(functions.Rosenbrock(), [-1.2, 1.0], rec, steps=7, lr=1e-3, device="cpu")
    assert trace.name == "RMSProp" and rec.stacked().shape == (7, 2)
    assert isinstance(rec.optimizer, optim.RMSProp)
    with pytest.raises(ValueError, match="nothing recorded"):
        pc.StateRecorder(optim.Adam).stacked()
    with pytest.raises(TypeError):
        pc.StateRecorder("adam")
    with pytest.raises(TypeError):
        pc.StateRecorder(lambda params, **kw: object())([torch.zeros(1, requires_grad=True)])


# ------------------------------------------------------------------ bad input

def test_bad_input_is_rejected_with_clear_errors():
    q = functions.Quadratic(dim=3)
    x = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="1-D"):
        pc.hessian_diagonal(q, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        pc.hessian_diagonal(q, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="scalar"):
        pc.hessian_diagonal(lambda v: v * 2, x)
    with pytest.raises(ValueError, match="samples"):
        pc.hutchinson_diagonal(q, x, 0)
    with pytest.raises(ValueError, match="chunk_size"):
        pc.hessian_diagonal(q, x, chunk_size=0)
    model, X, y = small_mlp_problem()
    with pytest.raises(ValueError, match="labels"):
        pc.empirical_fisher_diagonal(model, losses.softmax_loss, X, y[:-1])
    with pytest.raises(TypeError, match="Module"):
        pc.flat_loss(lambda X: X, losses.softmax_loss, X, y)
    with pytest.raises(ValueError, match="batch_size"):
        pc.minibatch_second_moment(x + 1, x, 5, 3)
    with pytest.raises(ValueError, match="shapes"):
        pc.minibatch_second_moment(x, torch.zeros(2, dtype=torch.float64), 1, 3)
    with pytest.raises(TypeError, match="AdaGrad, RMSProp, Adam"):
        pc.second_moment(optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    with pytest.raises(ValueError, match="take a step"):
        pc.effective_lr(optim.Adam([torch.zeros(1, requires_grad=True)]))
    with pytest.raises(ValueError, match="shape"):
        pc.replay_gradients(optim.Adam, torch.zeros(3))
    with pytest.raises(ValueError, match="x0"):
        pc.replay_gradients(optim.Adam, torch.zeros(3, 2), x0=torch.zeros(3))
    with pytest.raises(ValueError, match="at least 3"):
        pc.log_correlation(torch.zeros(4), torch.ones(4))


# ------------------------------------------------------------------ Adam + L2 mean field

def test_adam_l2_mean_field_is_adam_without_noise_and_follows_the_noisy_mean():
    sigmas = [0.0, 1.0, 10.0]
    predicted = pc.adam_l2_mean_field(sigmas, steps=500, lr=1e-3, weight_decay=1.0)
    assert predicted.shape == (501, 3)
    # sigma = 0: exactly Adam on the penalty alone (zero data gradient)
    path, _ = pc.replay_gradients(optim.Adam, torch.zeros(500, 1, dtype=torch.float64), x0=torch.ones(1),
                                  lr=1e-3, weight_decay=1.0, record=None)
    torch.testing.assert_close(predicted[:, 0], path[:, 0], rtol=1e-12, atol=1e-14)
    # sigma > 0: the mean over 400 noisy weights per sigma, within a few percent of the prediction
    g = gen(5)
    sigma = torch.tensor(sigmas, dtype=torch.float64).repeat_interleave(400)
    noise = torch.randn(500, len(sigma), generator=g, dtype=torch.float64) * sigma
    noisy, _ = pc.replay_gradients(optim.Adam, noise, x0=torch.ones(len(sigma)), lr=1e-3, weight_decay=1.0,
                                   record=None)
    means = noisy[-1].reshape(3, 400).mean(1)
    torch.testing.assert_close(means, predicted[-1], rtol=0.03, atol=0.0)
    # more noise, less decay
    assert predicted[-1, 0] < predicted[-1, 1] < predicted[-1, 2] < 1.0
    with pytest.raises(ValueError, match="noise_std"):
        pc.adam_l2_mean_field([-1.0], steps=10, lr=1e-3, weight_decay=1.0)
    with pytest.raises(ValueError, match="steps"):
        pc.adam_l2_mean_field([1.0], steps=0, lr=1e-3, weight_decay=1.0)
