r"""A classification problem with a sensitive attribute and a known, planted bias; demographic parity.

:func:`biased_lending` generates loan decisions in which the historical labels favour one group:
each applicant has a group s ∈ {0, 1} (the sensitive attribute, half the population each), a
*merit* score m ~ N(0, 1) independent of s, a *proxy* feature p = s + N(0, σ²) (think of a
postcode that correlates with the group), and two features of pure noise. The recorded decision
is y ~ Bernoulli(σ(2m + b·s − 0.5)): at equal merit, group 1 was approved more often, by ``bias``
logits. The features given to a model are (m, p, noise, noise): s itself is withheld, but the
proxy lets a model recover it, so an unconstrained classifier learns the bias.

**Demographic parity** asks that the rate of positive decisions be the same in both groups:
D = P(ŷ = 1 | s = 1) − P(ŷ = 1 | s = 0) = 0, relaxed to |D| ≤ ε (the *slack*). For a classifier
that predicts 1 with probability q(x) = σ(score), D = E[q | s = 1] − E[q | s = 0] is a smooth
function of the parameters, and |D| ≤ ε is the two inequalities D − ε ≤ 0 and −D − ε ≤ 0
(:func:`parity_constraints`), ready for :mod:`optlib.constrained`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from optlib import _validate

__all__ = ["FairDataset", "biased_lending", "parity_constraints", "parity_gap"]


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
    s = (torch.rand(n, generator=generator) < 0.5).long()
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
    """|gap| ≤ slack as the inequalities (gap − slack, −gap − slack) ≤ 0."""
    slack = _validate.at_least("slack", slack, 0.0)
    return torch.stack([gap - slack, -gap - slack])
