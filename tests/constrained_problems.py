"""Small constrained problems with their solutions, for tests/test_constrained.py.

Each case: an optlib Problem, a feasible or infeasible start, and the SLSQP reference computed in
the test (SciPy's sign convention: equality multipliers are the negatives of ours, inequality
multipliers the same, see optlib.constrained), plus what makes the case interesting.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from optlib.constrained import Problem
from optlib.projections import project_simplex

F64 = torch.float64


def _t(values):
    return torch.tensor(values, dtype=F64)


@dataclass(frozen=True)
class Case:
    problem: Problem
    x0: torch.Tensor
    note: str
    projection: object = None  # an exact projection onto the feasible set, where there is one


def _random_qp(seed: int, d: int = 5, m: int = 2, p: int = 3):
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=gen, dtype=F64)
    Q = M @ M.T / d + 0.5 * torch.eye(d, dtype=F64)
    c = torch.randn(d, generator=gen, dtype=F64)
    A, b = torch.randn(m, d, generator=gen, dtype=F64), torch.randn(m, generator=gen, dtype=F64)
    G = torch.randn(p, d, generator=gen, dtype=F64)
    # offsets from a point satisfying A x = b: at the solution the second inequality binds, the others do not
    x_free = torch.linalg.lstsq(A, b.unsqueeze(1)).solution.reshape(-1)
    h = G @ x_free + torch.tensor([-0.5, -0.3, 2.0], dtype=F64)
    return Q, c, A, b, G, h


def cases() -> dict[str, Case]:
    Q, c, A, b, G, h = _random_qp(7)
    target = _t([0.9, -0.4, 0.2, 0.7])
    return {
        # the seeds' KKT task: x* = 1, multiplier 2
        "x2_x_ge_1": Case(Problem(lambda x: (x ** 2).sum(), inequalities=lambda x: 1 - x, name="min x^2, x >= 1"),
                          _t([3.0]), "one active inequality",
                          projection=lambda x: x.clamp(min=1.0)),
        "inactive": Case(Problem(lambda x: ((x - _t([1.0, 2.0])) ** 2).sum(),
                                 inequalities=lambda x: (x.sum() - 10).reshape(1), name="inactive"),
                         _t([0.0, 0.0]), "the inequality is inactive: multiplier 0",
                         projection=lambda x: x - (x.sum() - 10).clamp(min=0) / 2),
        "degenerate": Case(Problem(lambda x: (x ** 2).sum() + x[1], inequalities=lambda x: -x[:1],
                                   name="degenerate"),
                           _t([1.0, 1.0]), "x1 >= 0 is active with multiplier 0 (no strict complementarity)",
                           projection=lambda x: torch.cat([x[:1].clamp(min=0), x[1:]])),
        "disk": Case(Problem(lambda x: x.sum(), inequalities=lambda x: ((x ** 2).sum() - 2).reshape(1), name="disk"),
                     _t([0.5, 0.0]), "linear objective on a disk: x* = (-1, -1), multiplier 1/2",
                     projection=lambda x: x * min(1.0, 2 ** 0.5 / float(x.norm()))),
        "parabola_line": Case(Problem(lambda x: (x[0] - 2) ** 2 + (x[1] - 1) ** 2,
                                      equalities=lambda x: (x[0] + x[1] - 2).reshape(1),
                                      inequalities=lambda x: (x[0] ** 2 - x[1]).reshape(1), name="parabola and line"),
                              _t([0.0, 0.0]), "nonlinear, one equality and one inequality: (1, 1), 2/3 and 2/3"),
        "simplex_qp": Case(Problem(lambda x: ((x - target) ** 2).sum(), equalities=lambda x: (x.sum() - 1).reshape(1),
                                   inequalities=lambda x: -x, name="projection onto the simplex"),
                           _t([0.25, 0.25, 0.25, 0.25]), "an equality and four bounds, two of them active",
                           projection=project_simplex),
        "random_qp": Case(Problem(lambda x: 0.5 * x @ Q @ x + c @ x, equalities=lambda x: A @ x - b,
                                  inequalities=lambda x: G @ x - h, name="random convex QP"),
                          torch.zeros(5, dtype=F64), "5 variables, 2 equalities, 3 inequalities of which one binds"),
    }
