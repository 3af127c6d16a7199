"""Checks for solutions/18_schedule_free.ipynb: the averaging coefficients and weights, one Schedule-Free SGD
step against optlib.optim.ScheduleFreeSGD, recovering x from y and z, the uniform-average closed form with the
beta = 0 / beta = 1 limits, and the loss at y against the loss at x on a noisy problem.

Every reference is computed here from closed forms or a short loop; the learner's functions are called on
fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import torch

from optlib.grading import CheckFailed, Question, as_number, expect, expect_close, require, require_number, require_tensor

F64 = torch.float64


def _numbers(values, what: str) -> list[float]:
    expect(isinstance(values, (list, tuple)) or (isinstance(values, torch.Tensor) and values.ndim == 1),
           f"{what} should be a list (or 1-d tensor) of numbers")
    return [as_number(v, what) for v in values]


# ---------------------------------------------------------------- q1
def q1(ns):
    coefficients = require(ns, "averaging_coefficients", "callable")
    gen = torch.Generator().manual_seed(1801)
    cases = [[1.0] * 6, (torch.rand(7, generator=gen, dtype=F64) + 0.1).tolist(), [0.0, 0.0, 2.0, 1.0, 3.0]]
    for weights in cases:
        got = _numbers(coefficients(list(weights)), "averaging_coefficients(weights)")
        expect(len(got) == len(weights), f"averaging_coefficients should return one c per weight "
                                          f"({len(weights)}), got {len(got)}")
        total = 0.0
        for t, (w, c) in enumerate(zip(weights, got), start=1):
            total += w
            ref = w / total if total else 0.0
            if t == 1 and abs(c - ref) > 1e-9 and abs(c - 0.5) < 1e-9:
                raise CheckFailed("c_1 should be 1 (w_1 / w_1): the first average is the first z itself")
            expect_close(c, ref, rtol=1e-9, atol=1e-12, what=f"c_{t} for weights {[round(v, 3) for v in weights]}")
    expect_close(require_number(ns, "c_uniform_10"), 0.1, rtol=1e-9,
                 what="`c_uniform_10` (c_10 with equal weights)")


# ---------------------------------------------------------------- q2
def _weights(lrs, r, p):
    out, lr_max = [], 0.0
    for t, lr in enumerate(lrs, start=1):
        lr_max = max(lr_max, lr)
        out.append(t**r * lr_max**p)
    return out


def q2(ns):
    weights = require(ns, "averaging_weights", "callable")
    warm = [0.1 * min(1.0, t / 4) for t in range(1, 9)]
    cases = [(warm, 0.0, 2.0), (warm, 1.0, 0.0), ([0.2, 0.05, 0.3, 0.1], 0.5, 2.0), ([0.1] * 5, 2.0, 1.0)]
    for lrs, r, p in cases:
        got = _numbers(weights(list(lrs), r, p), "averaging_weights(lrs, r, p)")
        ref = _weights(lrs, r, p)
        expect(len(got) == len(ref), f"averaging_weights should return one weight per step ({len(ref)})")
        if (lrs, r, p) == cases[2] and all(abs(a - t**r * lr**p) < 1e-12 for t, (a, lr) in
                                             enumerate(zip(got, lrs), start=1)):
            raise CheckFailed("averaging_weights uses gamma_t; the weight uses gamma_max,t, the largest "
                              "learning rate so far")
        for t, (a, b) in enumerate(zip(got, ref), start=1):
            expect_close(a, b, rtol=1e-9, atol=1e-15, what=f"w_{t} for r = {r}, p = {p}")
    share = require_number(ns, "warmup_share")
    ref = sum(_weights(warm, 0.0, 2.0)[:3]) / sum(_weights(warm, 0.0, 2.0))
    expect_close(share, ref, rtol=1e-6, what="`warmup_share` (the total weight of the first 3 of 8 steps, "
                                              "warmup 4 steps, p = 2, r = 0)")


# ---------------------------------------------------------------- q3
def _quadratic(gen, n):
    A = torch.randn(n, n, generator=gen, dtype=F64)
    H = A @ A.T / n + 0.5 * torch.eye(n, dtype=F64)
    b = torch.randn(n, generator=gen, dtype=F64)
    return H, b


def q3(ns):
    step = require(ns, "schedule_free_step", "callable")
    from optlib.optim import ScheduleFreeSGD

    gen = torch.Generator().manual_seed(1803)
    for n, lr, beta in ((3, 0.1, 0.9), (5, 0.05, 0.5), (4, 0.2, 0.25)):
        H, b = _quadratic(gen, n)
        w0 = torch.randn(n, generator=gen, dtype=F64)
        p = w0.clone().requires_grad_(True)
        opt = ScheduleFreeSGD([p], lr=lr, momentum=beta, r=0.0, weight_lr_power=0.0)
        y, z, x = w0.clone(), w0.clone(), w0.clone()
        for t in range(1, 7):
            p.grad = H @ p.detach() - b
            opt.step()
            g = H @ y - b
            out = step(y.clone(), z.clone(), x.clone(), g, lr, beta, 1.0 / t)
            expect(isinstance(out, (tuple, list)) and len(out) == 3,
                   "schedule_free_step should return the tuple (y_next, z_next, x_next)")
            y, z, x = (require_tensor(v, f"`schedule_free_step`'s {k}", (n,)) for v, k in zip(out, "yzx"))
            if not torch.allclose(z, opt.state[p]["z"], rtol=1e-9, atol=1e-12):
                raise CheckFailed(f"z after step {t} (lr {lr}, beta {beta}) differs from ScheduleFreeSGD's z: "
                                  "z_next = z - lr * g, with g taken at y")
            if not torch.allclose(x, opt.averaged_parameters()[0], rtol=1e-9, atol=1e-12):
                raise CheckFailed(f"x after step {t} differs from ScheduleFreeSGD's average: "
                                  "x_next = (1 - c) x + c z_next, with the new z")
            if not torch.allclose(y, p.detach(), rtol=1e-9, atol=1e-12):
                raise CheckFailed(f"y after step {t} differs from ScheduleFreeSGD's parameters: "
                                  "y_next = (1 - beta) z_next + beta x_next")


# ---------------------------------------------------------------- q4
def q4(ns):
    recover = require(ns, "recover_x", "callable")
    gen = torch.Generator().manual_seed(1804)
    for n, beta in ((4, 0.9), (6, 0.3), (2, 0.98)):
        x = torch.randn(n, generator=gen, dtype=F64)
        z = torch.randn(n, generator=gen, dtype=F64)
        y = (1 - beta) * z + beta * x
        saved = (y.clone(), z.clone())
        got = require_tensor(recover(y, z, beta), "`recover_x`", (n,))
        expect(torch.equal(y, saved[0]) and torch.equal(z, saved[1]),
               "recover_x modified its arguments in place: return a new tensor instead")
        if not torch.allclose(got, x, rtol=1e-9, atol=1e-12):
            raise CheckFailed(f"recover_x(y, z, {beta}) does not give x: solve y = (1 - beta) z + beta x for x")
    expect_close(require_number(ns, "beta_without_x"), 0.0, rtol=0, atol=1e-12,
                 what="`beta_without_x` (the beta for which y and z say nothing about x)")


# ---------------------------------------------------------------- q5
def _reference_run(H, b, w0, lr, beta, steps):
    z, x, zs = w0.clone(), w0.clone(), []
    for t in range(1, steps + 1):
        y = (1 - beta) * z + beta * x
        z = z - lr * (H @ y - b)
        x = x + (z - x) / t
        zs.append(z)
    return x, zs


def q5(ns):
    run = require(ns, "schedule_free_run", "callable")
    gen = torch.Generator().manual_seed(1805)
    H, b = _quadratic(gen, 4)
    w0 = torch.randn(4, generator=gen, dtype=F64)

    def grad_fn(w):
        return H @ w - b

    for beta in (0.0, 0.7, 1.0):
        out = run(grad_fn, w0.clone(), 0.1, beta, 12)
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               "schedule_free_run should return (x, zs): the final average and the list of z_2..z_{steps+1}")
        x, zs = out
        x = require_tensor(x, "the x returned by schedule_free_run", (4,))
        expect(isinstance(zs, (list, tuple)) and len(zs) == 12,
               f"zs should list the 12 iterates z produced by the 12 steps, got {len(zs) if hasattr(zs, '__len__') else zs}")
        zs = [require_tensor(v, "an entry of zs", (4,)) for v in zs]
        ref_x, ref_zs = _reference_run(H, b, w0, 0.1, beta, 12)
        for t, (a, c) in enumerate(zip(zs, ref_zs), start=1):
            if not torch.allclose(a, c, rtol=1e-9, atol=1e-12):
                raise CheckFailed(f"beta = {beta}: the z after step {t} is wrong (the gradient is taken at "
                                  "y = (1 - beta) z + beta x)")
        if not torch.allclose(x, torch.stack(zs).mean(0), rtol=1e-9, atol=1e-12):
            raise CheckFailed(f"beta = {beta}: x is not the plain average of the z's (c_t = 1/t, the start "
                              "gets no weight)")
        expect(torch.allclose(x, ref_x, rtol=1e-9, atol=1e-12), f"beta = {beta}: the final x is wrong")
    # beta = 0 is SGD: z_{t+1} = z_t - lr g(z_t)
    z = w0.clone()
    for _ in range(3):
        z = z - 0.1 * grad_fn(z)
    expect(torch.allclose(run(grad_fn, w0.clone(), 0.1, 0.0, 3)[1][-1], z, rtol=1e-9, atol=1e-12),
           "with beta = 0 the z's should be plain SGD's iterates")
    expect(require(ns, "gradient_point_beta0", str).strip().lower() == "z",
           "`gradient_point_beta0`: at beta = 0, y equals which sequence? ('x', 'y' or 'z')")
    expect(require(ns, "gradient_point_beta1", str).strip().lower() == "x",
           "`gradient_point_beta1`: at beta = 1, y equals which sequence? ('x', 'y' or 'z')")


# ---------------------------------------------------------------- q6
def _noisy(gen, n=200, d=5):
    X = torch.randn(n, d, generator=gen, dtype=F64)
    y = X @ torch.randn(d, generator=gen, dtype=F64) + torch.randn(n, generator=gen, dtype=F64)
    w_star = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    return X, y, w_star


def _excess(X, w, w_star):
    D = w - w_star
    return float(0.5 * D @ (X.T @ X / len(X)) @ D)


def _noisy_run(X, y, lr, beta, steps, generator):
    z = torch.zeros(X.shape[1], dtype=F64)
    x = z.clone()
    for t in range(1, steps + 1):
        yt = (1 - beta) * z + beta * x
        i = torch.randint(0, len(X), (1,), generator=generator)
        g = X[i].T @ (X[i] @ yt - y[i])
        z = z - lr * g
        x = x + (z - x) / t
    return (1 - beta) * z + beta * x, x


def q6(ns):
    run = require(ns, "noisy_run", "callable")
    gen = torch.Generator().manual_seed(1806)
    X, y, w_star = _noisy(gen)
    for lr, beta, steps, seed in ((0.05, 0.5, 300, 7), (0.02, 0.9, 200, 8)):
        out = run(X, y, lr, beta, steps, torch.Generator().manual_seed(seed))
        expect(isinstance(out, (tuple, list)) and len(out) == 2, "noisy_run should return (y_final, x_final)")
        got_y, got_x = (require_tensor(v, f"noisy_run's {k}", (X.shape[1],)) for v, k in zip(out, "yx"))
        ref_y, ref_x = _noisy_run(X, y, lr, beta, steps, torch.Generator().manual_seed(seed))
        if torch.allclose(got_y, ref_x, rtol=1e-9, atol=1e-12) and not torch.allclose(ref_y, ref_x):
            raise CheckFailed("noisy_run returned x where y belongs: y_final = (1 - beta) z + beta x")
        expect(torch.allclose(got_x, ref_x, rtol=1e-8, atol=1e-10),
               f"x after {steps} steps (lr {lr}, beta {beta}) differs from the reference run: draw one example "
               "per step with torch.randint(0, n, (1,), generator=generator)")
        expect(torch.allclose(got_y, ref_y, rtol=1e-8, atol=1e-10), f"y after {steps} steps differs")
    ratio = require_number(ns, "median_ratio")
    expect(ratio > 1.5, f"`median_ratio` = {ratio:.3g}: the median of (F(y) - F*) / (F(x) - F*) over the 32 "
                        "seeds should be well above 1 (y is noisier than x)")


QUESTIONS = [
    Question("q1", 2, q1, "The averaging coefficients c_t"),
    Question("q2", 2, q2, "Averaging weights with a warmup"),
    Question("q3", 3, q3, "One Schedule-Free SGD step"),
    Question("q4", 2, q4, "Recover x from y and z"),
    Question("q5", 3, q5, "The uniform average and the limits beta = 0 and 1"),
    Question("q6", 3, q6, "Forgetting eval(): the loss at y and at x"),
]

