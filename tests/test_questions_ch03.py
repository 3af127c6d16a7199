"""The checks of chapter 3's exercises: a correct answer earns full marks, a plausible wrong one earns 0."""
from functools import partial
import math

import numpy as np
import pytest
import torch

from optlib import functions

import question_scoring

CHAPTER = "03_gradient_descent"

score = partial(question_scoring.score, CHAPTER)


# -------------------------------------------------------------------------------- answers
def gd_right(grad_fn, x0, lr, steps):
    x, out = x0.clone(), [x0.clone()]
    for _ in range(steps):
        x = x - lr * grad_fn(x)
        out.append(x)
    return torch.stack(out)


def gd_in_place(grad_fn, x0, lr, steps):  # mutates x0 and stores views of the same tensor
    out = [x0.clone()]
    for _ in range(steps):
        x0 -= lr * grad_fn(x0)
        out.append(x0.clone())
    return torch.stack(out)


def gd_no_start(grad_fn, x0, lr, steps):  # forgets row 0
    x, out = x0.clone(), []
    for _ in range(steps):
        x = x - lr * grad_fn(x)
        out.append(x)
    return torch.stack(out) if out else x0[None].clone()


def constants_right(A):
    lam = np.linalg.eigvalsh(A.numpy())
    return 2 / lam.max(), 2 / (lam.max() + lam.min()), (lam.max() - lam.min()) / (lam.max() + lam.min())


def constants_wrong(A):  # 1/L as the limit, and the rate 1 - 1/kappa
    lam = np.linalg.eigvalsh(A.numpy())
    return 1 / lam.max(), 2 / (lam.max() + lam.min()), 1 - lam.min() / lam.max()


def sweep(lr_list):
    quad = functions.Quadratic(condition_number=10, angle=math.pi / 6)
    steps = []
    for lr in lr_list:
        x, k = quad.start.clone(), 0
        while quad(x).item() > 1e-6:
            x, k = x - lr * quad.gradient(x), k + 1
        steps.append(k)
    return steps


def sgd_right(grad_fn, w0, N, lr, batch_size, epochs, generator):
    w = w0.clone()
    for _ in range(epochs):
        perm = torch.randperm(N, generator=generator)
        for i in range(math.ceil(N / batch_size)):
            w = w - lr * grad_fn(w, perm[i * batch_size:(i + 1) * batch_size])
    return w


def sgd_with_replacement(grad_fn, w0, N, lr, batch_size, epochs, generator):  # the lecture-notes sampler
    w = w0.clone()
    for _ in range(epochs * math.ceil(N / batch_size)):
        w = w - lr * grad_fn(w, torch.randint(N, (batch_size,), generator=generator))
    return w


def sgd_drop_last(grad_fn, w0, N, lr, batch_size, epochs, generator):
    w = w0.clone()
    for _ in range(epochs):
        perm = torch.randperm(N, generator=generator)
        for i in range(N // batch_size):
            w = w - lr * grad_fn(w, perm[i * batch_size:(i + 1) * batch_size])
    return w


def noise_right(G, B, replacement):
    N = len(G)
    s2 = ((G - G.mean(0)) ** 2).sum(1).mean().item()
    return s2 / B if replacement else s2 / B * (N - B) / (N - 1)


def noise_unbiased_variance(G, B, replacement):  # divides by N - 1 in sigma^2
    N = len(G)
    s2 = ((G - G.mean(0)) ** 2).sum(1).sum().item() / (N - 1)
    return s2 / B if replacement else s2 / B * (N - B) / N


def noise_same_formula(G, B, replacement):  # ignores the replacement flag
    N = len(G)
    s2 = ((G - G.mean(0)) ** 2).sum(1).mean().item()
    return s2 / B * (N - B) / (N - 1)


def per_example_gradients():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(500, 10, generator=gen, dtype=torch.float64)
    w = torch.randn(10, generator=gen, dtype=torch.float64)
    y = X @ w + 0.5 * torch.randn(500, generator=gen, dtype=torch.float64)
    return -y[:, None] * X


def measure_noise(replacement):
    G = per_example_gradients()
    g = torch.Generator().manual_seed(7)
    out = {}
    for B in (1, 10, 100, 250):
        if replacement:
            idx = torch.randint(500, (4000, B), generator=g)
        else:
            idx = torch.stack([torch.randperm(500, generator=g)[:B] for _ in range(4000)])
        out[B] = ((G[idx].mean(1) - G.mean(0)) ** 2).sum(1).mean().item()
    return out


def rosen_answer(L):
    f = functions.Rosenbrock()
    final = {}
    for factor in (0.95, 1.05):
        x = torch.tensor([1.001, 1.001], dtype=torch.float64)
        for _ in range(500):
            x = x - factor * 2 / L * f.gradient(x)
        final[factor] = f(x).item()
    return final


# -------------------------------------------------------------------------------- tests
LRS = np.linspace(0.01, 0.19, 50)

CASES = {
    "q1": ({"gradient_descent": gd_right}, [{"gradient_descent": gd_in_place}, {"gradient_descent": gd_no_start}]),
    "q2": ({"gd_constants": constants_right}, [{"gd_constants": constants_wrong}]),
    "q4": ({"minibatch_sgd": sgd_right}, [{"minibatch_sgd": sgd_with_replacement}, {"minibatch_sgd": sgd_drop_last}]),
    "q5": ({"expected_noise": noise_right}, [{"expected_noise": noise_unbiased_variance},
                                             {"expected_noise": noise_same_formula}]),
}


@pytest.mark.parametrize("q", sorted(CASES))
def test_functions_right_and_wrong(q):
    right, wrongs = CASES[q]
    question_scoring.assert_right_and_wrong(CHAPTER, q, right, wrongs)


def test_q1_stub_and_missing():
    def stub(*args):
        raise NotImplementedError("q1: your code here")

    assert "not answered yet" in score({"gradient_descent": stub}, "q1").message
    assert "not defined" in score({}, "q1").message


def test_q3_sweep():
    steps = sweep(LRS)
    best = float(LRS[int(np.argmin(steps))])
    assert score({"steps_needed": steps, "best_lr": best}, "q3").passed
    assert score({"steps_needed": np.array(steps), "best_lr": np.float64(best)}, "q3").passed
    # 2/(L + mu) is the theory's answer but not on the grid, and not the measured best here
    assert score({"steps_needed": steps, "best_lr": 2 / 11}, "q3").earned == 0
    assert score({"steps_needed": steps, "best_lr": float(LRS[-1])}, "q3").earned == 0
    off = [s + 1 + (i % 3) for i, s in enumerate(steps)]  # counts the steps from 1 and drifts
    assert score({"steps_needed": off, "best_lr": best}, "q3").earned == 0
    assert score({"steps_needed": steps[:-1], "best_lr": best}, "q3").earned == 0


def test_q6_noise_measurement():
    assert score({"noise_with_replacement": measure_noise(True)}, "q6").passed
    result = score({"noise_with_replacement": measure_noise(False)}, "q6")
    assert result.earned == 0 and "WITHOUT replacement" in result.message
    wrong_keys = {str(k): v for k, v in measure_noise(True).items()}
    assert score({"noise_with_replacement": wrong_keys}, "q6").earned == 0


def test_q7_rosenbrock():
    L = 501 + math.sqrt(301**2 + 400**2)
    assert score({"rosen_L": L, "rosen_final_loss": rosen_answer(L)}, "q7").passed
    # the largest diagonal entry instead of the largest eigenvalue
    assert score({"rosen_L": 802.0, "rosen_final_loss": rosen_answer(802.0)}, "q7").earned == 0
    # the right L but losses after 501 steps
    final = rosen_answer(L)
    final[1.05] *= 1.01
    assert score({"rosen_L": L, "rosen_final_loss": final}, "q7").earned == 0


def test_every_question_is_tested_and_points_add_up():
    from optlib.grading import load_questions

    questions = load_questions(CHAPTER)
    assert [q.id for q in questions] == [f"q{i}" for i in range(1, 8)]
    assert sum(q.points for q in questions) == 16
