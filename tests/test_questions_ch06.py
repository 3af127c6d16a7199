"""The checks of solutions/06_adaptive_methods.ipynb: full marks for a correct answer, 0 for a plausible wrong one."""
from __future__ import annotations

from functools import partial
import math

import numpy as np
import pytest
import torch

from optlib import optim
from optlib.grading import load_questions

import question_scoring

CHAPTER = "06_adaptive_methods"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _adagrad(x, s, g, lr, eps=1e-10):
    s2 = torch.addcmul(s, g, g)
    return torch.addcdiv(x, g, torch.sqrt(s2) + eps, value=-lr), s2


def _rmsprop(x, s, g, lr, rho=0.99, eps=1e-8):
    s2 = torch.lerp(g * g, s, rho)
    return torch.addcdiv(x, g, torch.sqrt(s2) + eps, value=-lr), s2


def q1_ns():
    # closed forms: constant gradient c gives AdaGrad steps lr/sqrt(t), RMSProp lr/sqrt(1 - rho^t)
    return {"adagrad_step": _adagrad, "rmsprop_step": _rmsprop, "adagrad_step_slope": -0.5,
            "rmsprop_final_step": 0.1 / math.sqrt(1 - 0.99**10_000)}


def _recovery(rho, G, g):
    # rho^k (G^2 - g^2) <= 3 g^2
    return math.ceil(math.log(3 * g * g / (G * G - g * g)) / math.log(rho))


def q2_ns():
    return {"recovery_steps": _recovery,
            "measured_recovery": {rho: _recovery(rho, 10.0, 0.1) for rho in (0.9, 0.99, 0.999)}}


SETTINGS = [(0.9, 0.999), (0.9, 0.99), (0.9, 0.9), (0.99, 0.999), (0.0, 0.999)]


def _bias_ratio(t, b1, b2):
    return (1 - np.power(b1, t)) / np.sqrt(1 - np.power(b2, t))


def q3_ns():
    t = np.arange(1, 10_001)
    return {"bias_ratio": _bias_ratio, "measured_ratio": _bias_ratio(np.arange(1, 201), 0.99, 0.999),
            "peak_ratio": {s: float(np.max(_bias_ratio(t, *s))) for s in SETTINGS}, "never_too_large": [(0.9, 0.9)]}


def _adam(x, m, v, g, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    p = x.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay) if decoupled else \
        torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    opt.state[p] = {"step": torch.tensor(float(t - 1)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    p.grad = g.clone()
    opt.step()
    return p.detach(), opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]


def q4_ns():
    return {"adam_step": _adam, "first_step_l2": torch.tensor([1.9, 1.9], dtype=F64),
            "first_step_w": torch.tensor([1.98, 1.88], dtype=F64)}


@pytest.fixture(scope="module")
def q5_ns():
    sig = torch.tensor([0.0, 1.0, 100.0], dtype=F64).repeat_interleave(200)
    noise = torch.randn(2000, 600, generator=torch.Generator().manual_seed(99), dtype=F64) * sig
    out = {}
    for name, method in (("mean_weight_l2", torch.optim.Adam), ("mean_weight_w", torch.optim.AdamW)):
        x = torch.ones(600, dtype=F64, requires_grad=True)
        opt = method([x], lr=1e-3, weight_decay=1.0)
        for g in noise:
            x.grad = g.clone()
            opt.step()
        out[name] = dict(zip((0.0, 1.0, 100.0), x.detach().reshape(3, 200).mean(1).tolist()))
    out["adamw_prediction"] = math.exp(2000 * math.log1p(-1e-3))
    return out


def _expected_sq(per_example, B):
    n = per_example.shape[0]
    var = per_example.var(0, unbiased=True) if n > 1 else torch.zeros(per_example.shape[1], dtype=per_example.dtype)
    return per_example.mean(0) ** 2 + var * (n - B) / (n * B)  # finite-population correction


def _v_ratio():
    gen = torch.Generator().manual_seed(16)
    X = torch.randn(512, 5, generator=gen, dtype=F64) * torch.tensor([0.1, 0.3, 1.0, 3.0, 10.0], dtype=F64)
    y = X @ torch.randn(5, generator=gen, dtype=F64) + 0.5 * torch.randn(512, generator=gen, dtype=F64)
    w = torch.zeros(5, dtype=F64, requires_grad=True)
    opt = optim.Adam([w], lr=0.0)
    bgen, done = torch.Generator().manual_seed(3), 0
    while done < 3000:
        order = torch.randperm(512, generator=bgen)
        for batch in order.split(16):
            if done == 3000:
                break
            w.grad = None
            (0.5 * (X[batch] @ w - y[batch]).pow(2).mean()).backward()
            opt.step()
            done += 1
    v_hat = opt.state[w]["exp_avg_sq"] / (1 - 0.999**3000)
    return v_hat, -y[:, None] * X


def q6_ns():
    v_hat, per_example = _v_ratio()
    return {"expected_sq_minibatch_grad": _expected_sq, "v_over_prediction": v_hat / _expected_sq(per_example, 16)}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")

    def adagrad_old_sum(x, s, g, lr, eps=1e-10):  # divides by the sum before adding the new gradient
        return x - lr * g / (s.sqrt() + eps + 1e-3), s + g * g

    _zero({**q1_ns(), "adagrad_step": adagrad_old_sum}, "q1")

    def rmsprop_no_leak_weight(x, s, g, lr, rho=0.99, eps=1e-8):  # forgets the (1 - rho) factor
        s2 = rho * s + g * g
        return x - lr * g / (s2.sqrt() + eps), s2

    _zero({**q1_ns(), "rmsprop_step": rmsprop_no_leak_weight}, "q1")

    def in_place(x, s, g, lr, eps=1e-10):
        s += g * g
        return x - lr * g / (s.sqrt() + eps), s

    _zero({**q1_ns(), "adagrad_step": in_place}, "q1")
    _zero({**q1_ns(), "adagrad_step_slope": -1.0}, "q1")


def test_q2():
    _full(q2_ns(), "q2")
    # forgets the (1 - rho^k) g^2 term of s_k
    def no_floor(rho, G, g):
        return math.ceil(math.log(4 * g * g / (G * G)) / math.log(rho))

    _zero({**q2_ns(), "recovery_steps": no_floor}, "q2")
    # measured the recovery in units of the window instead of steps
    windows = {rho: k * (1 - rho) for rho, k in q2_ns()["measured_recovery"].items()}
    _zero({**q2_ns(), "measured_recovery": windows}, "q2")


def test_q3():
    _full(q3_ns(), "q3")
    _zero({**q3_ns(), "bias_ratio": lambda t, b1, b2: (1 - b1) / np.sqrt(1 - b2) + 0 * np.asarray(t)}, "q3")
    _zero({**q3_ns(), "measured_ratio": 1 / q3_ns()["measured_ratio"]}, "q3")  # corrected / uncorrected
    result = _zero({**q3_ns(), "never_too_large": [(0.9, 0.9), (0.99, 0.999)]}, "q3")  # judged by the first step only
    assert "every t" in result.message


def test_q4():
    _full(q4_ns(), "q4")

    def l2_after_averaging(x, m, v, g, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
        # adds the decay to the step after the adaptive scaling: that is AdamW, not Adam + L2
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step = (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
        return x - lr * step - lr * weight_decay * x, m, v

    _zero({**q4_ns(), "adam_step": l2_after_averaging}, "q4")

    def no_bias_correction(x, m, v, g, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
        if decoupled:
            x = x * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * x
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        return x - lr * m / (v.sqrt() + eps), m, v

    _zero({**q4_ns(), "adam_step": no_bias_correction}, "q4")
    _zero({**q4_ns(), "first_step_l2": torch.tensor([1.98, 1.9])}, "q4")


def test_q5(q5_ns):
    _full(q5_ns, "q5")
    # swapped the two optimizers
    _zero({**q5_ns, "mean_weight_l2": q5_ns["mean_weight_w"], "mean_weight_w": q5_ns["mean_weight_l2"]}, "q5")
    _zero({**q5_ns, "adamw_prediction": 1 - 2000 * 1e-3}, "q5")


def test_q6():
    ns = q6_ns()
    _full(ns, "q6")
    # without the finite-population factor (n - B)/(n - 1)
    _zero({**ns, "expected_sq_minibatch_grad": lambda pe, B: pe.mean(0) ** 2 + ((pe**2).mean(0) - pe.mean(0) ** 2) / B},
          "q6")
    # divided v by the empirical Fisher diagonal instead of the expected squared minibatch gradient
    v_hat, per_example = _v_ratio()
    _zero({**ns, "v_over_prediction": v_hat / (per_example**2).mean(0)}, "q6")
