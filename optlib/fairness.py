r"""A classification problem with a sensitive attribute and a known, planted bias; demographic parity.

:func:`biased_lending` generates loan decisions in which the historical labels favour one group:
each applicant has a group s ∈ {0, 1} (the sensitive attribute, half the population each), a
*merit* score m ~ N(0, 1) independent of s, a *proxy* feature p = s + N(0, σ²) (think of a
postcode that correlates with the group), and two features of pure noise. The recorded decision
is y ~ Bernoulli(σ(2m + b·s − 0.5)): at equal merit, group 1 was approved more often, by ``bias``
logits. The features given to a model are (m, p, noise, noise): s itself is withheld, but the
proxy lets a model recover it, so an unconstrained classifier learns the bias.

**Demographic parity** asks that the rate of positive decisions be the same in both groups:
D = P(ŷ = 1 | s = 1) − P(ŷ = 1 | s = 0) = 0, relaxed to abs(D) ≤ ε (the *slack*). For a classifier
that predicts 1 with probability q(x) = σ(score), D = E[q | s = 1] − E[q | s = 0] is a smooth
function of the parameters, and abs(D) ≤ ε is the two inequalities D − ε ≤ 0 and −D − ε ≤ 0
(:func:`parity_constraints`), ready for :mod:`optlib.constrained`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from optlib import _validate
from optlib.constrained import AugmentedLagrangian, Constraints

F64 = torch.float64

__all__ = ["FairDataset", "biased_lending", "fit_parity", "parity_constraint", "parity_constraints", "parity_gap",
           "parity_report"]


class FairDataset(NamedTuple):
    """Features ``X`` (n, 4), labels ``y`` (n,) in {0, 1} and the sensitive attribute ``s`` (n,) in {0, 1}."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    s_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    s_test: torch.Tensor

    def base_rates(self) -> tuple[float, float]:
        """The fraction of positive labels in group 0 and in group 1 of the training set."""
        y = self.y_train.to(torch.float64)
        return float(y[self.s_train == 0].mean()), float(y[self.s_train == 1].mean())


def _sample(n: int, generator: torch.Generator, bias: float, proxy_noise: float, dtype):
    s = (torch.rand(n, generator=generator, dtype=torch.float32) < 0.5).long()  # whatever the default dtype
    merit = torch.randn(n, generator=generator, dtype=dtype)
    proxy = s.to(dtype) + proxy_noise * torch.randn(n, generator=generator, dtype=dtype)
    noise = torch.randn(n, 2, generator=generator, dtype=dtype)
    p_yes = torch.sigmoid(2.0 * merit + bias * s.to(dtype) - 0.5)
    y = (torch.rand(n, generator=generator, dtype=dtype) < p_yes).long()
    X = torch.cat([merit[:, None], proxy[:, None], noise], dim=1)
    return X, y, s


def biased_lending(n_train: int = 2000, n_test: int = 2000, *, bias: float = 1.5, proxy_noise: float = 0.5,
                   seed: int = 0, dtype: torch.dtype = torch.float64) -> FairDataset:
    """Generated loan decisions whose labels favour group 1 by ``bias`` logits at equal merit (module docstring).

    Train and test are independent draws from the same distribution (seeded by ``seed``).
    """
    _validate.positive_int("n_train", n_train)
    _validate.positive_int("n_test", n_test)
    _validate.at_least("bias", bias, 0.0)
    _validate.positive("proxy_noise", proxy_noise)
    generator = torch.Generator().manual_seed(seed)
    train = _sample(n_train, generator, bias, proxy_noise, dtype)
    test = _sample(n_test, generator, bias, proxy_noise, dtype)
    return FairDataset(*train, *test)


def parity_gap(decisions: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Mean of ``decisions`` in group 1 minus in group 0 (probabilities give the smooth gap, 0/1 the hard one)."""
    if decisions.shape != s.shape or decisions.ndim != 1:
        raise ValueError(f"decisions {tuple(decisions.shape)} and s {tuple(s.shape)} must be vectors of one length")
    ones = s == 1
    if ones.all() or not ones.any():
        raise ValueError("both groups must be present")
    decisions = decisions.to(torch.promote_types(decisions.dtype, torch.float32))
    return decisions[ones].mean() - decisions[~ones].mean()


def parity_constraints(gap: torch.Tensor, slack: float) -> torch.Tensor:
    """abs(gap) ≤ slack as the inequalities (gap − slack, −gap − slack) ≤ 0."""
    slack = _validate.at_least("slack", slack, 0.0)
    return torch.stack([gap - slack, -gap - slack])


# ---------------------------------------------------------------------------------------------
# training under the constraint


def parity_constraint(data, slack: float):
    """The function ``model -> g`` of ``Constraints(ineq=...)`` for abs(gap) ≤ ``slack`` on ``data``'s training set.

    The gap is the smooth one, E[P(yes) | s = 1] − E[P(yes) | s = 0] with P(yes) the softmax
    probability of class 1 (see the module docstring).
    """
    _validate.at_least("slack", slack, 0.0)

    def parity(model):
        q = torch.softmax(model(data.X_train), dim=1)[:, 1]
        return parity_constraints(parity_gap(q, data.s_train), slack)

    return parity


def fit_parity(data, slack: float | None = None, formulation=None, *, steps: int = 10, max_iter: int = 20,
               seed: int = 0):
    """A linear classifier of ``data`` (:func:`biased_lending`) fitted by L-BFGS in float64.

    ``slack=None`` fits without a constraint; otherwise under abs(gap) ≤ ``slack`` with ``formulation``
    (default ``AugmentedLagrangian(penalty=20)``), one multiplier update after each of the
    ``steps`` L-BFGS steps of ``max_iter`` iterations. The weights start from ``seed``. Returns the
    model and the :class:`optlib.run.Trace`.
    """
    from optlib import models, run
    from optlib.data import Dataset
    from optlib.optim.quasi_newton import LBFGS

    model = models.LinearClassifier(data.X_train.shape[1], 2, dtype=data.X_train.dtype,
                                    generator=torch.Generator().manual_seed(seed))
    dataset = Dataset(data.X_train, data.y_train, data.X_test, data.y_test)
    constraints = None
    if slack is not None:
        formulation = formulation if formulation is not None else AugmentedLagrangian(penalty=20.0)
        constraints = Constraints(formulation, ineq=parity_constraint(data, slack))
    elif formulation is not None:
        raise ValueError("a formulation needs a slack")
    trace = run.train(model, F.cross_entropy, dataset, LBFGS, steps=steps, constraints=constraints,
                      max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=0.0)
    return model, trace


def parity_report(model, data) -> dict[str, float]:
    """Accuracy and parity gaps of ``model`` on ``data``'s training and test sets.

    Keys: ``acc_train``, ``acc_test`` (hard decisions), ``gap_train``, ``gap_test`` (smooth gap of
    P(yes)), ``hard_gap_train``, ``hard_gap_test`` (gap of the 0/1 decisions), ``rates_train``
    (P(yes) in group 0 and in group 1, smooth).
    """
    report = {}
    with torch.no_grad():
        for part in ("train", "test"):
            X, y, s = (getattr(data, f"{name}_{part}") for name in ("X", "y", "s"))
            scores = model(X)
            q, decisions = torch.softmax(scores, 1)[:, 1], scores.argmax(1)
            report[f"acc_{part}"] = float((decisions == y).to(F64).mean())
            report[f"gap_{part}"] = float(parity_gap(q, s))
            report[f"hard_gap_{part}"] = float(parity_gap(decisions.to(F64), s))
            if part == "train":
                report["rates_train"] = (float(q[s == 0].mean()), float(q[s == 1].mean()))
    return report
