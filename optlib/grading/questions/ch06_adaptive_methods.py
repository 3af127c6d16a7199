"""Checks for solutions/06_adaptive_methods.ipynb: AdaGrad and RMSProp steps, RMSProp's recovery time,
Adam's bias correction, Adam + L2 versus AdamW, and what Adam's second moment estimates.

Every reference is computed here from closed forms, optlib's optimizers or a short loop; the
learner's functions are called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from optlib import optim
from optlib.grading import CheckFailed, Question, as_number, expect, expect_close, require, require_number

F64 = torch.float64


def _dict_of_numbers(ns, name: str, keys) -> dict:
    value = require(ns, name, dict)
    out = {}
    for k in keys:
        expect(k in value, f"`{name}` should have the key {k!r} (keys found: {list(value)[:6]})")
        out[k] = as_number(value[k], f"`{name}[{k!r}]`")
    return out


def _agrees(actual: float, expected: float, what: str, hint: str, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Like expect_close for a measured value, without revealing the reference value."""
    expect(abs(actual - expected) <= atol + rtol * abs(expected),
           f"{what} is {actual:.6g}, which does not match an independent computation: {hint}")


def _tensors(out, n: int, name: str):
    expect(isinstance(out, (tuple, list)) and len(out) == n,
           f"`{name}` should return a tuple of {n} tensors, got {type(out).__name__}")
    for item in out:
        expect(isinstance(item, torch.Tensor), f"`{name}` should return tensors, got {type(item).__name__}")
    return out


def _replay(method, x0, grads, **hyper):
    """Iterates and final state of an optlib optimizer fed the gradient sequence ``grads``."""
    x = x0.clone().requires_grad_(True)
    opt = method([x], **hyper)
    path = []
    for g in grads:
        x.grad = g.clone()
        opt.step()
        path.append(x.detach().clone())
    return path, opt.state[x]


# ---------------------------------------------------------------- q1
def q1(ns):
    ada = require(ns, "adagrad_step", "callable")
    rms = require(ns, "rmsprop_step", "callable")
    gen = torch.Generator().manual_seed(601)
    x0 = torch.randn(4, generator=gen, dtype=F64)
    grads = [torch.randn(4, generator=gen, dtype=F64) * torch.tensor([0.01, 1.0, 10.0, 100.0], dtype=F64)
             for _ in range(5)]
    for name, fn, method, hyper, mine_hyper in (
            ("adagrad_step", ada, optim.AdaGrad, dict(lr=0.3, eps=1e-6), dict(eps=1e-6)),
            ("rmsprop_step", rms, optim.RMSProp, dict(lr=0.02, alpha=0.9, eps=1e-6), dict(rho=0.9, eps=1e-6))):
        path, state = _replay(method, x0, grads, **hyper)
        x, s = x0.clone(), torch.zeros(4, dtype=F64)
        for k, g in enumerate(grads):
            inputs = (x, s, g)
            saved = tuple(t.clone() for t in inputs)
            x, s = _tensors(fn(x, s, g, hyper["lr"], **mine_hyper), 2, name)
            expect(all(torch.equal(a, b) for a, b in zip(inputs, saved)),
                   f"`{name}` modified its arguments in place: return new tensors instead")
            expect_close(x, path[k], rtol=1e-9, atol=1e-12,
                         what=f"x after step {k + 1} of `{name}` (5 random gradients)")
        key = "sum" if method is optim.AdaGrad else "square_avg"
        expect_close(s, state[key], rtol=1e-9, atol=1e-14, what=f"s after 5 steps of `{name}`")
    _agrees(require_number(ns, "adagrad_step_slope"), -0.5, "`adagrad_step_slope`",
            "fit np.polyfit(log t, log step, 1) over t = 10..10000 of AdaGrad's step sizes on the constant gradient 3",
            atol=0.005)
    _agrees(require_number(ns, "rmsprop_final_step"), 0.1 / math.sqrt(1 - 0.99**10_000), "`rmsprop_final_step`",
            "the size |x_(t+1) - x_t| of the 10000th RMSProp step (lr 0.1, rho 0.99, gradient 3)", rtol=1e-4)


# ---------------------------------------------------------------- q2
def _recovery(rho: float, G: float, g: float) -> int:
    k = 1
    while rho**k * G**2 + (1 - rho**k) * g**2 > 4 * g**2:
        k += 1
    return k


def q2(ns):
    fn = require(ns, "recovery_steps", "callable")
    for rho, G, g in ((0.95, 5.0, 0.5), (0.9, 100.0, 1.0), (0.995, 2.0, 0.1), (0.5, 3.0, 1.0)):
        mine = as_number(fn(rho, G, g), f"recovery_steps({rho}, {G}, {g})")
        expect(abs(mine - _recovery(rho, G, g)) <= 1,
               f"recovery_steps({rho}, {G}, {g}) is {mine:g}, expected {_recovery(rho, G, g)}")
    measured = _dict_of_numbers(ns, "measured_recovery", (0.9, 0.99, 0.999))
    for rho in (0.9, 0.99, 0.999):
        ref = _recovery(rho, 10.0, 0.1)
        _agrees(measured[rho], ref, f"`measured_recovery[{rho}]`",
                "warm up for round(10 / (1 - rho)) steps with gradient 10, then count the steps with gradient 0.1 "
                "up to and including the first that moves x by at least lr / 2", atol=max(2.0, 0.005 * ref))


# ---------------------------------------------------------------- q3
def _ratio(t, b1, b2):
    t = np.asarray(t, dtype=np.float64)
    return (1 - b1**t) / np.sqrt(1 - b2**t)


SETTINGS = [(0.9, 0.999), (0.9, 0.99), (0.9, 0.9), (0.99, 0.999), (0.0, 0.999)]


def q3(ns):
    fn = require(ns, "bias_ratio", "callable")
    for t, b1, b2 in ((1, 0.8, 0.95), (7, 0.8, 0.95), (50, 0.5, 0.9999)):
        expect_close(as_number(fn(t, b1, b2), f"bias_ratio({t}, {b1}, {b2})"), _ratio(t, b1, b2), rtol=1e-9,
                     what=f"bias_ratio({t}, {b1}, {b2})")
    ts = np.array([1, 3, 30, 300, 3000])
    out = fn(ts, 0.7, 0.99)
    expect(np.shape(out) == ts.shape, f"bias_ratio(t, ...) with an array t of shape {ts.shape} should return an "
                                      f"array of that shape, got shape {np.shape(out)}")
    expect_close(np.asarray(out, dtype=np.float64), _ratio(ts, 0.7, 0.99), rtol=1e-9,
                 what="bias_ratio(array, 0.7, 0.99)")
    measured = require(ns, "measured_ratio")
    measured = np.asarray(measured.detach().cpu() if isinstance(measured, torch.Tensor) else measured, dtype=np.float64)
    expect(measured.shape == (200,), f"`measured_ratio` should have shape (200,), got {measured.shape}")
    # a reference measurement with optlib's Adam
    sizes = {}
    for corrected in (True, False):
        path, _ = _replay(optim.Adam, torch.zeros(1, dtype=F64), [torch.ones(1, dtype=F64)] * 200, lr=1e-3,
                          betas=(0.99, 0.999), bias_correction=corrected)
        sizes[corrected] = np.abs(np.diff(np.concatenate([[0.0], torch.cat(path).numpy()])))
    reference = sizes[False] / sizes[True]
    bad = np.flatnonzero(np.abs(measured - reference) > 1e-6 + 1e-4 * np.abs(reference))
    expect(bad.size == 0, f"`measured_ratio` differs from a reference run at {bad.size} of 200 steps (first at index "
                          f"{bad[0] if bad.size else 0}): divide the uncorrected step size by the corrected one, "
                          "both with betas (0.99, 0.999), lr 1e-3 and the constant gradient 1")
    peaks = _dict_of_numbers(ns, "peak_ratio", SETTINGS)
    t_all = np.arange(1, 10_001)
    for s in SETTINGS:
        expect_close(peaks[s], _ratio(t_all, *s).max(), rtol=1e-6, what=f"peak_ratio[{s}]")
    chosen = require(ns, "never_too_large", (list, tuple))
    expected = [s for s in SETTINGS if (_ratio(t_all, *s) <= 1).all()]
    expect([tuple(c) for c in chosen] == expected,
           f"`never_too_large` is {list(chosen)}: it should list the settings with r_t <= 1 for every t = 1..10000 "
           "(check every t, not only the first step)")


# ---------------------------------------------------------------- q4
def q4(ns):
    fn = require(ns, "adam_step", "callable")
    gen = torch.Generator().manual_seed(604)
    x0 = torch.randn(5, generator=gen, dtype=F64)
    grads = [torch.randn(5, generator=gen, dtype=F64) * torch.tensor([0.0, 0.01, 1.0, 10.0, 100.0], dtype=F64)
             for _ in range(6)]
    cases = (("Adam", optim.Adam, 0.0, False), ("Adam + L2", optim.Adam, 0.3, False),
             ("AdamW", optim.AdamW, 0.3, True))
    for label, method, wd, decoupled in cases:
        path, state = _replay(method, x0, grads, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)
        x, m, v = x0.clone(), torch.zeros(5, dtype=F64), torch.zeros(5, dtype=F64)
        for k, g in enumerate(grads):
            x, m, v = _tensors(fn(x, m, v, g, k + 1, 0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=wd,
                                  decoupled=decoupled), 3, "adam_step")
            expect_close(x, path[k], rtol=1e-9, atol=1e-12,
                         what=f"x after step {k + 1} of adam_step ({label}, weight_decay {wd}, 6 random gradients)")
        expect_close(m, state["exp_avg"], rtol=1e-9, atol=1e-14, what=f"m after 6 steps ({label})")
        expect_close(v, state["exp_avg_sq"], rtol=1e-9, atol=1e-14, what=f"v after 6 steps ({label})")
    # the first step from (2, 2) with data gradient (0, 50), lr 0.1, weight decay 0.1
    g_l2 = torch.tensor([0.2, 50.2], dtype=F64)
    expected_l2 = torch.tensor([2.0, 2.0], dtype=F64) - 0.1 * g_l2 / (g_l2.abs() + 1e-8)
    expected_w = torch.tensor([1.98, 1.98], dtype=F64) - 0.1 * torch.tensor([0.0, 1.0], dtype=F64) * 50 / (50 + 1e-8)
    for name, ref in (("first_step_l2", expected_l2), ("first_step_w", expected_w)):
        value = require(ns, name)
        try:
            mine = torch.as_tensor(value, dtype=F64).detach().cpu().reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise CheckFailed(f"`{name}` should be a tensor of 2 numbers") from None
        expect(mine.shape == (2,), f"`{name}` should hold 2 numbers, got shape {tuple(mine.shape)}")
        expect(torch.allclose(mine, ref, rtol=1e-6, atol=1e-9),
               f"`{name}` is {mine.tolist()}: take one adam_step from x = (2, 2) with zero m, v, the data gradient "
               "(0, 50), t = 1, lr = 0.1, weight_decay = 0.1")


# ---------------------------------------------------------------- q5
def _decay_experiment(decoupled: bool, seed: int = 2024, per: int = 100, steps: int = 2000) -> torch.Tensor:
    """Adam (+ L2) or AdamW on noise gradients, written out; returns the mean final weight per sigma."""
    sig = torch.tensor([0.0, 1.0, 100.0], dtype=F64).repeat_interleave(per)
    gen = torch.Generator().manual_seed(seed)
    x = torch.ones(3 * per, dtype=F64)
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    lr, lam, b1, b2 = 1e-3, 1.0, 0.9, 0.999
    for t in range(1, steps + 1):
        g = torch.randn(3 * per, generator=gen, dtype=F64) * sig
        if decoupled:
            x = x * (1 - lr * lam)
        else:
            g = g + lam * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + 1e-8)
    return x.reshape(3, per).mean(1)


def q5(ns):
    sigmas = (0.0, 1.0, 100.0)
    l2 = _dict_of_numbers(ns, "mean_weight_l2", sigmas)
    w = _dict_of_numbers(ns, "mean_weight_w", sigmas)
    expect_close(require_number(ns, "adamw_prediction"), (1 - 1e-3) ** 2000, rtol=1e-9, what="adamw_prediction")
    ref_l2 = _decay_experiment(False)
    hint_l2 = ("run optim.Adam([x], lr=1e-3, weight_decay=1.0) for 2000 steps from x = 1 on the given noise and "
               "average the final weights of each group of 200")
    for i, s in enumerate(sigmas):
        _agrees(l2[s], ref_l2[i].item(), f"`mean_weight_l2[{s:g}]`", hint_l2, atol=0.02)
        _agrees(w[s], (1 - 1e-3) ** 2000, f"`mean_weight_w[{s:g}]`",
                hint_l2.replace("optim.Adam(", "optim.AdamW("), atol=0.02)


# ---------------------------------------------------------------- q6
def _exact_expectation(per_example: torch.Tensor, B: int) -> torch.Tensor:
    """E[g_B^2] by enumerating every minibatch of size B (without replacement)."""
    n = per_example.shape[0]
    total, count = torch.zeros(per_example.shape[1], dtype=F64), 0
    for batch in itertools.combinations(range(n), B):
        total += per_example[list(batch)].mean(0) ** 2
        count += 1
    return total / count


def _fixed_point_v():
    gen = torch.Generator().manual_seed(16)
    X = torch.randn(512, 5, generator=gen, dtype=F64) * torch.tensor([0.1, 0.3, 1.0, 3.0, 10.0], dtype=F64)
    y = X @ torch.randn(5, generator=gen, dtype=F64) + 0.5 * torch.randn(512, generator=gen, dtype=F64)
    residual = -y  # w_fixed = 0
    per_example = residual[:, None] * X
    batch_gen = torch.Generator().manual_seed(3)
    batches = []
    while len(batches) < 3000:
        order = torch.randperm(512, generator=batch_gen)
        batches.extend(order[i:i + 16] for i in range(0, 512, 16))
    grads = torch.stack([per_example[b].mean(0) for b in batches[:3000]])
    v = torch.zeros(5, dtype=F64)
    for g in grads:
        v = 0.999 * v + 0.001 * g * g
    return v / (1 - 0.999**3000), per_example


def q6(ns):
    fn = require(ns, "expected_sq_minibatch_grad", "callable")
    gen = torch.Generator().manual_seed(606)
    for n, d, B in ((7, 3, 3), (6, 2, 1), (5, 4, 5), (8, 2, 2)):
        per_example = torch.randn(n, d, generator=gen, dtype=F64) + torch.randn(d, generator=gen, dtype=F64)
        out = fn(per_example.clone(), B)
        expect(isinstance(out, torch.Tensor) and tuple(out.shape) == (d,),
               f"expected_sq_minibatch_grad on a ({n}, {d}) tensor should return a tensor of shape ({d},)")
        expect_close(out, _exact_expectation(per_example, B), rtol=1e-9, atol=1e-12,
                     what=f"expected_sq_minibatch_grad with n = {n}, B = {B} (checked against all minibatches)")
    ratio = require(ns, "v_over_prediction")
    try:
        ratio = torch.as_tensor(ratio, dtype=F64).detach().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise CheckFailed("`v_over_prediction` should be a tensor of 5 numbers") from None
    expect(ratio.shape == (5,), f"`v_over_prediction` should have shape (5,), got {tuple(ratio.shape)}")
    v_hat, per_example = _fixed_point_v()
    n, mean = 512, per_example.mean(0)
    prediction = mean**2 + ((per_example**2).mean(0) - mean**2) / 16 * (n - 16) / (n - 1)
    reference = v_hat / prediction
    expect(torch.allclose(ratio, reference, rtol=1e-4, atol=1e-8),
           f"`v_over_prediction` is {np.round(ratio.numpy(), 3).tolist()}, which does not match a reference run: use "
           "the given data, Adam with lr 0 at w_fixed, 3000 steps of batches of 16 in the order of "
           "torch.randperm(512, generator=batch_gen) per epoch, v_hat = exp_avg_sq / (1 - 0.999^3000)")


QUESTIONS = [
    Question("q1", 3, q1, "AdaGrad and RMSProp by hand"),
    Question("q2", 2, q2, "How fast does RMSProp recover?"),
    Question("q3", 3, q3, "What happens at Adam's first step?"),
    Question("q4", 3, q4, "Adam, Adam + L2 and AdamW in one function"),
    Question("q5", 3, q5, "Where does the weight decay go?"),
    Question("q6", 3, q6, "What does Adam's v estimate?"),
]
