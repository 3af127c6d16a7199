r"""Classification losses for scores ``s = Wx`` with hand-derived gradients.

The ``*_loss`` functions are plain differentiable torch code (autograd works through them);
the ``*_loss_and_grad`` functions return the analytic gradient with respect to ``W`` written
out by hand, as derived in chapter 2, so it can be compared with autograd and with a
numerical gradient.

Conventions: ``X`` is (n, d), ``W`` is (C, d), scores are ``X @ W.T`` of shape (n, C), the loss is
the mean over the n examples plus ``reg * ||W||²``.
"""
from __future__ import annotations

from typing import Callable

import torch

from optlib import _validate


def _check(W, X, y):
    if W.ndim != 2 or X.ndim != 2 or y.ndim != 1:
        raise ValueError(f"expected W (C, d), X (n, d), y (n,), got {tuple(W.shape)}, {tuple(X.shape)}, {tuple(y.shape)}")
    if W.shape[1] != X.shape[1]:
        raise ValueError(f"W has {W.shape[1]} features per class but X has {X.shape[1]}")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= W.shape[0]):
        raise ValueError(f"labels must lie in [0, {W.shape[0] - 1}]")


def svm_loss(scores: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    r"""Multiclass hinge loss: mean over i of Σ_{j≠yᵢ} max(0, s_j − s_{yᵢ} + margin)."""
    correct = scores.gather(1, y[:, None])
    margins = (scores - correct + margin).clamp(min=0)
    margins = margins.scatter(1, y[:, None], 0.0)
    return margins.sum(1).mean()


def softmax_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Cross-entropy of the softmax: mean over i of −log(e^{s_{yᵢ}} / Σ_j e^{s_j})."""
    return torch.nn.functional.cross_entropy(scores, y)


def svm_loss_and_grad(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, reg: float = 0.0,
                      margin: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Hinge loss + reg·‖W‖² and its gradient by hand.

    With mᵢⱼ = 1[s_j − s_{yᵢ} + margin > 0] for j ≠ yᵢ:
    ∂L/∂W_j = (1/n) Σᵢ mᵢⱼ xᵢ − (1/n) Σᵢ 1[j = yᵢ] (Σ_k mᵢₖ) xᵢ + 2·reg·W_j.
    """
    _check(W, X, y)
    reg = _validate.at_least("reg", reg, 0.0)
    n = len(X)
    scores = X @ W.T
    correct = scores.gather(1, y[:, None])
    margins = (scores - correct + margin).clamp(min=0)
    margins.scatter_(1, y[:, None], 0.0)
    loss = margins.sum() / n + reg * (W * W).sum()
    active = (margins > 0).to(X.dtype)
    active.scatter_(1, y[:, None], -active.sum(1, keepdim=True))
    grad = active.T @ X / n + 2 * reg * W
    return loss, grad


def softmax_loss_and_grad(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                          reg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Softmax cross-entropy + reg·‖W‖² and its gradient by hand: ∂L/∂W = (P − Y)ᵀX / n + 2·reg·W."""
    _check(W, X, y)
    reg = _validate.at_least("reg", reg, 0.0)
    n = len(X)
    scores = X @ W.T
    scores = scores - scores.max(1, keepdim=True).values  # softmax is shift-invariant; avoids overflow
    log_probs = scores - scores.exp().sum(1, keepdim=True).log()
    loss = -log_probs.gather(1, y[:, None]).sum() / n + reg * (W * W).sum()
    probs = log_probs.exp()
    probs[torch.arange(n, device=X.device), y] -= 1
    grad = probs.T @ X / n + 2 * reg * W
    return loss, grad


def objective(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], X: torch.Tensor, y: torch.Tensor,
              reg: float = 0.0) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The training loss of a linear classifier as a function of ``W`` alone: W ↦ loss_fn(X Wᵀ, y) + reg·‖W‖².

    ``loss_fn`` takes scores and labels (:func:`svm_loss`, :func:`softmax_loss`). The result is
    what a numerical gradient or a gradient check differentiates, and what autograd can
    differentiate too; its gradient is the second output of the matching ``*_loss_and_grad``.
    """
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"expected X (n, d) and y (n,), got {tuple(X.shape)} and {tuple(y.shape)}")
    reg = _validate.at_least("reg", reg, 0.0)

    def L(W: torch.Tensor) -> torch.Tensor:
        return loss_fn(X @ W.T, y) + reg * (W * W).sum()

    return L


def closest_margin(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                   margin: float = 1.0) -> tuple[int, int, float]:
    r"""``(i, j, m)``: the hinge term of :func:`svm_loss` closest to its kink.

    Of all margins m_ij = s_ij − s_{iyᵢ} + margin with j ≠ yᵢ, the one closest to 0: example
    ``i``, wrong class ``j`` and the value. Where a margin lies within h of 0, a central difference
    with step h straddles the corner of max(0, m_ij) (chapter 2).
    """
    _check(W, X, y)
    if not len(y):
        raise ValueError("closest_margin needs at least one example")
    scores = X @ W.T
    margins = (scores - scores.gather(1, y[:, None]) + margin).scatter(1, y[:, None], float("inf"))
    i, j = divmod(int(margins.abs().argmin()), W.shape[0])
    return i, j, margins[i, j].item()
