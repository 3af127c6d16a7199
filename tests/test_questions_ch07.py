"""The checks of chapter 7's exercises: a correct answer scores full marks, a plausible wrong one scores 0."""
from __future__ import annotations

from functools import partial
import math

import numpy as np
import pytest
import torch

from optlib import functions, losses, models, monitoring, optim, run, schedules

import question_scoring

CHAPTER = "07_schedules_stability"

assert_full = partial(question_scoring.assert_full, CHAPTER)
assert_zero = partial(question_scoring.assert_zero, CHAPTER)


# ------------------------------------------------------------------------------------------------ q1

def right_warmup_cosine(t, total_steps, warmup_steps, base_lr, min_lr=0.0):
    s = schedules.warmup_then(warmup_steps, schedules.cosine(total_steps - warmup_steps, min_lr / base_lr))
    return base_lr * s(t)


def warmup_from_zero(t, total_steps, warmup_steps, base_lr, min_lr=0.0):
    # ramps from 0 instead of base_lr / w (a common off-by-one)
    if t < warmup_steps:
        return base_lr * t / warmup_steps
    return right_warmup_cosine(t, total_steps, warmup_steps, base_lr, min_lr)


def cosine_not_shifted(t, total_steps, warmup_steps, base_lr, min_lr=0.0):
    # forgets to restart the cosine after the warmup
    if t < warmup_steps:
        return right_warmup_cosine(t, total_steps, warmup_steps, base_lr, min_lr)
    t = min(t, total_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * t / total_steps))


def test_q1():
    assert_full({"warmup_cosine_lr": right_warmup_cosine}, "q1")
    assert "during warmup" in assert_zero({"warmup_cosine_lr": warmup_from_zero}, "q1").message
    assert "cosine decay" in assert_zero({"warmup_cosine_lr": cosine_not_shifted}, "q1").message
    assert "not defined" in assert_zero({}, "q1").message


# ------------------------------------------------------------------------------------------------ q2

def right_floor(lr, eigenvalues, sigma):
    total = 0.0
    for lam in eigenvalues.tolist():
        total += 0.5 * lam * (lr**2 * sigma**2 / (1 - (1 - lr * lam) ** 2))
    return total


def small_step_floor(lr, eigenvalues, sigma):
    return float(lr * sigma**2 * len(eigenvalues) / 4)  # the small-lr approximation, not the exact floor


@pytest.fixture(scope="module")
def measured_floor():
    q = functions.Quadratic(condition_number=10, dim=20, seed=0)
    trace = run.minimize(q, torch.zeros(20), optim.SGD, steps=3000, lr=0.05, noise_std=0.1, record_params=False,
                         generator=torch.Generator().manual_seed(5))
    return float(np.mean(trace.loss[1000:]))


def test_q2(measured_floor):
    assert_full({"noise_floor": right_floor, "measured_floor": measured_floor}, "q2")
    assert "noise_floor" in assert_zero({"noise_floor": small_step_floor, "measured_floor": measured_floor}, "q2").message
    # the floor measured over the whole run (including the start) is wrong
    assert "measured_floor" in assert_zero({"noise_floor": right_floor, "measured_floor": 3 * measured_floor}, "q2").message


# ------------------------------------------------------------------------------------------------ q3

@pytest.fixture(scope="module")
def schedule_runs():
    q = functions.Quadratic(condition_number=10, dim=20, seed=0)
    shapes = {"constant": schedules.constant(), "step": schedules.multistep([1500, 2250]),
              "cosine": schedules.cosine(3000)}
    final = {}
    for name, s in shapes.items():
        trace = run.minimize(q, torch.ones(20), optim.SGD, steps=3000, lr=0.1, noise_std=0.1, record_params=False,
                             generator=torch.Generator().manual_seed(9),
                             scheduler=lambda opt, s=s: schedules.scheduler(opt, s))
        final[name] = float(np.mean(trace.loss[-200:]))
    return final


def test_q3(schedule_runs):
    best = min(schedule_runs, key=schedule_runs.get)
    assert_full({"final_excess": schedule_runs, "best_schedule": best}, "q3")
    assert "best_schedule" in assert_zero({"final_excess": schedule_runs, "best_schedule": "constant"}, "q3").message
    # schedulers never stepped: every run stays at the constant rate's floor
    stuck = {name: schedule_runs["constant"] * f for name, f in (("constant", 1.0), ("step", 0.97), ("cosine", 1.02))}
    assert "far below" in assert_zero({"final_excess": stuck, "best_schedule": "step"}, "q3").message
    assert "keys" in assert_zero({"final_excess": {"constant": 1.0}, "best_schedule": "constant"}, "q3").message


# ------------------------------------------------------------------------------------------------ q4

def right_clip(grads, max_norm):
    total = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads])).item()
    factor = 1.0 if total <= max_norm else max_norm / total
    return [g * factor for g in grads], total


def per_tensor_clip(grads, max_norm):
    out = []
    for g in grads:
        n = g.norm().item()
        out.append(g * (max_norm / n) if n > max_norm else g.clone())
    return out, math.sqrt(sum(g.norm().item() ** 2 for g in grads))


def in_place_clip(grads, max_norm):
    clipped, total = right_clip(grads, max_norm)
    for g, c in zip(grads, clipped):
        g.copy_(c)
    return grads, total


def nan_on_zero(grads, max_norm):
    total = math.sqrt(sum(float((g**2).sum()) for g in grads))
    scale = torch.clamp(torch.tensor(max_norm / total if total else math.nan), max=1.0).item()
    return [g * scale for g in grads], total


def test_q4():
    assert_full({"clip_by_global_norm": right_clip}, "q4")
    assert "clipped tensor" in assert_zero({"clip_by_global_norm": per_tensor_clip}, "q4").message
    assert "modified" in assert_zero({"clip_by_global_norm": in_place_clip}, "q4").message
    assert "NaN" in assert_zero({"clip_by_global_norm": nan_on_zero}, "q4").message
    assert "pair" in assert_zero({"clip_by_global_norm": lambda grads, c: right_clip(grads, c)[0]}, "q4").message


# ------------------------------------------------------------------------------------------------ q5

X_PROBE = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
Y_PROBE = torch.arange(256) % 10


def right_norm(depth, gain, seed):
    net = monitoring.init_normal_(models.MLP((64,) + (64,) * depth + (10,)), gain,
                                  generator=torch.Generator().manual_seed(seed))
    loss = losses.softmax_loss(net(X_PROBE), Y_PROBE)
    (grad,) = torch.autograd.grad(loss, [net.net[0].weight])
    return grad.norm().item()


def last_layer_norm(depth, gain, seed):
    net = monitoring.init_normal_(models.MLP((64,) + (64,) * depth + (10,)), gain,
                                  generator=torch.Generator().manual_seed(seed))
    losses.softmax_loss(net(X_PROBE), Y_PROBE).backward()
    return net.net[-1].weight.grad.norm().item()


def growth(norm_fn):
    depths = np.arange(2, 11)
    logs = np.log([[norm_fn(int(d), 3.0, s) for d in depths] for s in range(5)]).mean(axis=0)
    return math.exp(np.polyfit(depths, logs, 1)[0])


def test_q5():
    good = growth(right_norm)
    assert_full({"first_layer_grad_norm": right_norm, "growth_per_layer": good}, "q5")
    assert "first_layer_grad_norm" in assert_zero({"first_layer_grad_norm": last_layer_norm,
                                                   "growth_per_layer": good}, "q5").message
    # the theory's value typed in instead of the measurement
    assert "growth_per_layer" in assert_zero({"first_layer_grad_norm": right_norm,
                                              "growth_per_layer": 3 / math.sqrt(2)}, "q5").message


# ------------------------------------------------------------------------------------------------ q6

def right_scaled(base_lr, base_batch, batch, rule="linear"):
    k = batch / base_batch
    return base_lr * k if rule == "linear" else base_lr * k**0.5


def right_max_batch(base_lr, base_batch, sharpness, rule="linear"):
    # the largest B with scaled lr <= 2 / sharpness, found by search (independent of the closed form)
    B = 1
    while right_scaled(base_lr, base_batch, B + 1, rule) <= 2 / sharpness:
        B += 1
    return B


def sqrt_forgot_square(base_lr, base_batch, sharpness, rule="linear"):
    return int(base_batch * 2 / (sharpness * base_lr))  # treats both rules as linear


def test_q6():
    assert_full({"scaled_lr": right_scaled, "max_stable_batch": right_max_batch}, "q6")
    assert "max_stable_batch" in assert_zero({"scaled_lr": right_scaled, "max_stable_batch": sqrt_forgot_square},
                                             "q6").message
    assert "int" in assert_zero({"scaled_lr": right_scaled,
                                 "max_stable_batch": lambda *a: float(right_max_batch(*a))}, "q6").message
    assert "scaled_lr" in assert_zero({"scaled_lr": lambda lr, b0, b, rule="linear": lr * b / b0,
                                       "max_stable_batch": right_max_batch}, "q6").message


# ------------------------------------------------------------------------------------------------ q7

def right_kappa(H, lam):
    ev = np.linalg.eigvalsh((H + lam * torch.eye(len(H), dtype=H.dtype)).numpy())
    return float(ev.max() / ev.min())


def kappa_without_shift(H, lam):
    ev = torch.linalg.eigvalsh(H)
    return float(ev[-1] / ev[0].clamp_min(1e-12)) + lam  # lam added to kappa, not to the eigenvalues


def measured(step_rule):
    F = torch.randn(200, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    F[:, :5] = 0.0
    H = F.T @ F / 200
    rates = {}
    for lam in (0.01, 0.1, 1.0):
        A = H + lam * torch.eye(30, dtype=torch.float64)
        ev = torch.linalg.eigvalsh(A)
        trace = run.minimize(lambda w: 0.5 * w @ A @ w,
                             torch.randn(30, generator=torch.Generator().manual_seed(1), dtype=torch.float64),
                             optim.SGD, steps=200, lr=step_rule(ev))
        path = trace.path()
        rates[lam] = (np.linalg.norm(path[200]) / np.linalg.norm(path[100])) ** (1 / 100)
    return rates


def test_q7():
    good = measured(lambda ev: 2 / (ev[-1] + ev[0]).item())
    assert_full({"regularized_condition_number": right_kappa, "measured_rates": good}, "q7")
    assert "regularized_condition_number" in assert_zero({"regularized_condition_number": kappa_without_shift,
                                                          "measured_rates": good}, "q7").message
    too_small_step = measured(lambda ev: 1 / ev[-1].item())  # the "safe" step 1/L is slower than predicted
    assert "measured_rates" in assert_zero({"regularized_condition_number": right_kappa,
                                            "measured_rates": too_small_step}, "q7").message
