"""optlib.kronecker: the Kronecker-structured matrix problem, its races and the tools that read them."""
import math
from functools import partial

import pytest
import torch

from optlib import data, kronecker
from optlib.optim import SGD, Adam, Shampoo


def test_matrix_problem_has_the_condition_numbers_and_a_zero_minimum():
    problem = kronecker.matrix_problem(30.0, 10.0, m=5, n=4)
    sa, sb = torch.linalg.svdvals(problem.A), torch.linalg.svdvals(problem.B)
    assert (sa[0] / sa[-1]).item() == pytest.approx(30.0) and (sb[0] / sb[-1]).item() == pytest.approx(10.0)
    assert problem.shape == (5, 4)
    # C = A W* B: the least-squares solution reaches loss 0
    W = torch.linalg.solve(problem.A, problem.C) @ torch.linalg.inv(problem.B)
    assert problem.loss(W).item() < 1e-20
    with pytest.raises(ValueError, match="cond"):
        kronecker.ill_conditioned(3, 0.5, torch.Generator())


def test_matrix_losses_uses_the_right_gradient_and_flags_divergence():
    problem = kronecker.matrix_problem(3.0, 3.0)
    losses = kronecker.matrix_losses(problem, partial(SGD, lr=0.5), 3)
    W = torch.zeros(problem.shape, dtype=torch.float64, requires_grad=True)
    opt = SGD([W], lr=0.5)
    expected = []
    for _ in range(4):
        opt.zero_grad()
        loss = problem.loss(W)
        expected.append(loss.item())
        loss.backward()
        opt.step()
    assert losses == pytest.approx(expected, rel=1e-12)
    blown = kronecker.matrix_losses(problem, partial(SGD, lr=5.0), 50)
    assert len(blown) == 51 and math.isinf(blown[-1])
    assert kronecker.outcome(blown, 1e-4) == "diverged"
    short = kronecker.matrix_losses(problem, partial(Shampoo, lr=3.0, epsilon=1e-12), 300, stop_below=1e-4)
    assert kronecker.steps_to(short, 1e-4) == len(short) - 1
    assert kronecker.outcome(short, 1e-4, below=250) == "< 250"


def test_best_run_shampoo_beats_adam_at_kappa_30():
    problem = kronecker.matrix_problem(30.0, 30.0)
    lr, losses = kronecker.best_run(problem, "Shampoo", 1e-4, 300)
    assert (lr, kronecker.steps_to(losses, 1e-4), len(losses)) == (30.0, 64, 301)
    lr, losses = kronecker.best_run(problem, "Adam", 1e-4, 300)
    assert kronecker.outcome(losses, 1e-4) == "never"
    with pytest.raises(ValueError, match="lrs"):
        kronecker.best_run(problem, partial(Adam), 1e-4, 10)


def test_mlp_losses_and_state_floats():
    digits = data.load_digits(dtype=torch.float64)
    losses = kronecker.mlp_losses(partial(Adam, lr=0.1), digits, 1, 200, target=0.01)
    assert kronecker.first_below(losses, 0.01) == 24 == len(losses) - 1
    model = torch.nn.Linear(4, 3, dtype=torch.float64)
    opt = Shampoo(model.parameters(), lr=0.1, grafting="adam")
    model(torch.ones(2, 4, dtype=torch.float64)).sum().backward()
    opt.step()
    # weight 3 x 4: factors and roots 2 (9 + 16), grafting 12; bias: sum, root, grafting
    assert kronecker.state_floats(opt) == [2 * (9 + 16) + 12, 9]


def test_verdict_needs_the_margin_at_every_seed():
    assert kronecker.verdict("a", [15, 16, 17], "b", [24, 20, 23]) == "a needs fewer steps than b at every seed"
    assert kronecker.verdict("a", [16, 17, 19], "b", [24, 20, 23]) == "a vs b: not confirmed at this scale"
    assert kronecker.verdict("a", [10, 12], "b", [None, 30]) == "a needs fewer steps than b at every seed"
    assert kronecker.verdict("a", [10, None], "b", [20, 30]) == "a vs b: not confirmed at this scale"
