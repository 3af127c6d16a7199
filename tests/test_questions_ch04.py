"""The checks of chapter 4's exercises: a correct answer earns full marks, a plausible wrong one earns 0."""
from functools import partial
import math

import numpy as np
import pytest
import torch

from optlib import functions
from optlib.grading import load_questions

import question_scoring

CHAPTER = "04_loss_geometry"
F64 = torch.float64

score = partial(question_scoring.score, CHAPTER)


# -------------------------------------------------------------------------------- q1
def classify_right(H):
    lam = np.linalg.eigvalsh(H.numpy())
    tol = 1e-8 * max(1.0, np.abs(lam).max())
    pos, neg, zero = (lam > tol).any(), (lam < -tol).any(), (np.abs(lam) <= tol).any()
    if pos and neg:
        return "saddle"
    return "degenerate" if zero else ("minimum" if pos else "maximum")


def classify_exact_zero(H):  # compares with 0 exactly: round-off turns zero eigenvalues into signs
    lam = np.linalg.eigvalsh(H.numpy())
    if (lam > 0).all():
        return "minimum"
    if (lam < 0).all():
        return "maximum"
    if (lam > 0).any() and (lam < 0).any():
        return "saddle"
    return "degenerate"


def classify_zero_first(H):  # declares "degenerate" before looking for both signs
    lam = np.linalg.eigvalsh(H.numpy())
    tol = 1e-8 * max(1.0, np.abs(lam).max())
    if (np.abs(lam) <= tol).any():
        return "degenerate"
    return classify_right(H)


def cond_right(H):
    lam = np.abs(np.linalg.eigvalsh(H.numpy()))
    return lam.max() / lam.min()


def cond_signed(H):  # lambda_max / lambda_min
    lam = np.linalg.eigvalsh(H.numpy())
    return lam.max() / lam.min()


# -------------------------------------------------------------------------------- q2
def loss_after_right(A, x0, lr, t):
    lam, Q = np.linalg.eigh(A.numpy())
    c = Q.T @ x0.numpy()
    return float((0.5 * lam * c**2 * (1 - lr * lam) ** (2 * t)).sum())


def loss_after_wrong_power(A, x0, lr, t):  # forgets that f is quadratic in the coefficients
    lam, Q = np.linalg.eigh(A.numpy())
    c = Q.T @ x0.numpy()
    return float((0.5 * lam * c**2 * (1 - lr * lam) ** t).sum())


def steps_answer():
    quad = functions.Quadratic(condition_number=100, angle=math.pi / 6)
    lam = np.linalg.eigvalsh(quad.A.numpy())
    L, mu = lam.max(), lam.min()
    x0 = torch.tensor([-1.8, 1.0], dtype=F64)
    out = {}
    for key, lr in (("1/L", 1 / L), ("2/(L+mu)", 2 / (L + mu)), ("1.99/L", 1.99 / L)):
        t = 0
        while loss_after_right(quad.A, x0, lr, t) > 1e-8:
            t += 1
        out[key] = t
    return out


# -------------------------------------------------------------------------------- q3
Y0S = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12]


def escape_answer(lr=0.05):
    steps = []
    for y0 in Y0S:
        t = 0
        while y0 * (1 + 2 * lr) ** t < 1:
            t += 1
        steps.append(t)
    return steps, float(np.polyfit(np.log10(1 / np.array(Y0S)), steps, 1)[0])


# -------------------------------------------------------------------------------- q4
def newton_right(grad_fn, hess_fn, x):
    return x - torch.linalg.solve(hess_fn(x), grad_fn(x))


def newton_diagonal(grad_fn, hess_fn, x):  # divides by the diagonal only
    return x - grad_fn(x) / torch.diagonal(hess_fn(x))


def newton_plus(grad_fn, hess_fn, x):  # wrong sign
    return x + torch.linalg.solve(hess_fn(x), grad_fn(x))


# -------------------------------------------------------------------------------- q5
def goe_right(d, samples, generator):
    A = torch.randn(samples, d, d, generator=generator, dtype=F64)
    return (A + A.transpose(-1, -2)) / math.sqrt(2 * d)


def goe_unscaled(d, samples, generator):
    A = torch.randn(samples, d, d, generator=generator, dtype=F64)
    return A + A.transpose(-1, -2)


def goe_wishart(d, samples, generator):  # A A^T / d: symmetric, but always positive semidefinite
    A = torch.randn(samples, d, d, generator=generator, dtype=F64)
    return A @ A.transpose(-1, -2) / d


def goe_global_rng(d, samples, generator):  # ignores the generator
    A = torch.randn(samples, d, d, dtype=F64)
    return (A + A.transpose(-1, -2)) / math.sqrt(2 * d)


# -------------------------------------------------------------------------------- q6
def gap_right(f, x, y, t):
    return float(t * f(x) + (1 - t) * f(y) - f(t * x + (1 - t) * y))


def gap_reversed(f, x, y, t):  # function minus chord
    return -gap_right(f, x, y, t)


def gap_swapped_t(f, x, y, t):  # weights the chord's ends the wrong way round
    return float((1 - t) * f(x) + t * f(y) - f(t * x + (1 - t) * y))


CHORD = {"chord_x": torch.tensor([2.0, 0.5], dtype=F64), "chord_y": torch.tensor([0.5, 2.0], dtype=F64), "chord_t": 0.5}


# -------------------------------------------------------------------------------- q7
def factor_right(lr, curvature, momentum):
    return float(np.abs(np.roots([1.0, -(1 + momentum - lr * curvature), momentum])).max())


def factor_real_only(lr, curvature, momentum):  # takes the larger real part and ignores complex roots
    b = 1 + momentum - lr * curvature
    disc = max(b * b - 4 * momentum, 0.0)
    return abs((b + math.sqrt(disc)) / 2)


def factor_no_momentum(lr, curvature, momentum):
    return abs(1 - lr * curvature)


# -------------------------------------------------------------------------------- tests
CASES = {
    "q1": ({"classify": classify_right, "cond": cond_right},
           [{"classify": classify_exact_zero, "cond": cond_right},
            {"classify": classify_zero_first, "cond": cond_right},
            {"classify": classify_right, "cond": cond_signed}]),
    "q4": ({"newton_step": newton_right, "quartic_factor": 2 / 3},
           [{"newton_step": newton_diagonal, "quartic_factor": 2 / 3},
            {"newton_step": newton_plus, "quartic_factor": 2 / 3},
            {"newton_step": newton_right, "quartic_factor": 1 / 3}]),
    "q5": ({"goe": goe_right}, [{"goe": goe_unscaled}, {"goe": goe_wishart}, {"goe": goe_global_rng}]),
    "q6": ({"jensen_gap": gap_right, **CHORD},
           [{"jensen_gap": gap_reversed, **CHORD}, {"jensen_gap": gap_swapped_t, **CHORD},
            {"jensen_gap": gap_right, **CHORD, "chord_t": 0.05},  # too close to an end: the gap is small
            {"jensen_gap": gap_right, **CHORD, "chord_y": torch.tensor([0.0, 0.0], dtype=F64)}]),  # not a minimizer
    "q7": ({"heavy_ball_factor": factor_right, "measured_growth": factor_right(0.1, -1.0, 0.9)},
           [{"heavy_ball_factor": factor_real_only, "measured_growth": factor_right(0.1, -1.0, 0.9)},
            {"heavy_ball_factor": factor_no_momentum, "measured_growth": factor_right(0.1, -1.0, 0.9)},
            {"heavy_ball_factor": factor_right, "measured_growth": 1.1}]),
}


@pytest.mark.parametrize("q", sorted(CASES))
def test_right_and_wrong(q):
    right, wrongs = CASES[q]
    question_scoring.assert_right_and_wrong(CHAPTER, q, right, wrongs)


def test_q2_closed_form_and_prediction():
    steps = steps_answer()
    right = {"gd_loss_after": loss_after_right, "predicted_steps": steps, "fastest": "2/(L+mu)"}
    result = score(right, "q2")
    assert result.passed, result.message
    assert score({**right, "gd_loss_after": loss_after_wrong_power}, "q2").earned == 0
    assert score({**right, "fastest": "1/L"}, "q2").earned == 0
    assert score({**right, "predicted_steps": {**steps, "1.99/L": steps["1.99/L"] + 5}}, "q2").earned == 0
    assert score({**right, "predicted_steps": {"1/L": 888}}, "q2").earned == 0


def test_q3_escape():
    steps, slope = escape_answer()
    assert score({"escape_steps": steps, "escape_slope": slope}, "q3").passed
    assert score({"escape_steps": np.array(steps), "escape_slope": np.float64(slope)}, "q3").passed
    # with the learning rate of the chapter's run (0.1) instead of 0.05
    steps_01, slope_01 = escape_answer(0.1)
    assert score({"escape_steps": steps_01, "escape_slope": slope_01}, "q3").earned == 0
    # the theoretical slope instead of the fitted one is close but not the fit (the fit is what is asked)
    assert score({"escape_steps": steps, "escape_slope": 1 / math.log10(1.1) + 1.0}, "q3").earned == 0


def test_stub_scores_zero_with_reason():
    def stub(*args):
        raise NotImplementedError("q5: your code here")

    assert "not answered yet" in score({"goe": stub}, "q5").message
    assert "not defined" in score({}, "q1").message


def test_question_list():
    questions = load_questions(CHAPTER)
    assert [q.id for q in questions] == [f"q{i}" for i in range(1, 8)]
    assert sum(q.points for q in questions) == 18
