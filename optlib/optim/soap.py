r"""SOAP (Vyas et al., 2024): Adam run in the eigenbasis of Shampoo's factors.

Vyas et al. show that Shampoo with the exponent 1/2 amounts to Adafactor run in the eigenbasis of
Shampoo's factors; SOAP runs full Adam there instead. For a matrix parameter with gradient G, t
counting the Adam steps (the class docstring gives the exact schedule):

.. math::
    L &\leftarrow \beta_s L + (1-\beta_s)\, G G^\top, \qquad R \leftarrow \beta_s R + (1-\beta_s)\, G^\top G,
        \qquad L = Q_L \Lambda_L Q_L^\top,\ R = Q_R \Lambda_R Q_R^\top,\\
    G' &= Q_L^\top G\, Q_R, \qquad M \leftarrow \beta_1 M + (1-\beta_1) G, \qquad
        V \leftarrow \beta_2 V + (1-\beta_2)\, G' \odot G',\\
    W &\leftarrow W - \alpha\, \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\;
        Q_L \Big(\frac{Q_L^\top M Q_R}{\sqrt V + \epsilon}\Big) Q_R^\top .

The basis changes only every ``precondition_frequency`` steps, so the eigendecomposition is amortized,
and between changes the method is exactly Adam in fixed rotated coordinates (where a diagonal second
moment fits far better than in the parameter's own).
"""
from __future__ import annotations

import math
from itertools import chain

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim._closure import closure_loss
from optlib.stability import NonFiniteLossError

__all__ = ["SOAP", "eigenbasis", "factor_statistics", "refresh_eigenbasis", "rotate"]


def factor_statistics(grad: torch.Tensor, factors: list, beta: float) -> list:
    r"""F_i ← β F_i + (1 − β) G₍ᵢ₎ G₍ᵢ₎ᵀ in place for every factor (None: that dimension is not rotated).

    G₍ᵢ₎G₍ᵢ₎ᵀ contracts the gradient with itself over every dimension but i (for a matrix: G Gᵀ and Gᵀ G).
    """
    if len(factors) != grad.ndim:
        raise ValueError(f"need one factor per dimension of the gradient ({grad.ndim}), got {len(factors)}")
    for dim, factor in enumerate(factors):
        if factor is None:
            continue
        others = [*chain(range(dim), range(dim + 1, grad.ndim))]
        factor.lerp_(torch.tensordot(grad, grad, dims=[others, others]), 1.0 - beta)
    return factors


def eigenbasis(factor: torch.Tensor) -> torch.Tensor:
    """The eigenvectors of the symmetric ``factor`` as columns, by decreasing eigenvalue.

    1e-30·I is added as in the SOAP authors' code (an all-zero factor then still decomposes).
    """
    eye = torch.eye(factor.shape[0], dtype=factor.dtype, device=factor.device)
    _, Q = torch.linalg.eigh(factor + 1e-30 * eye)
    return torch.flip(Q, dims=[1])


def refresh_eigenbasis(factor: torch.Tensor, Q: torch.Tensor, qr_dtype: torch.dtype | None = None):
    r"""One step of power iteration from the current basis: returns (the new basis, the column order).

    The columns of F Q are sorted by the estimated eigenvalues diag(Qᵀ F Q), largest first, and
    orthonormalized by a QR decomposition. When F changes slowly Q is already nearly its eigenbasis,
    and one multiplication plus a QR tracks it at a fraction of an eigendecomposition's cost (the SOAP
    paper's choice after the first, exact, decomposition). The order is returned so that the second
    moment, whose coordinates follow the columns, can be permuted with them. ``qr_dtype``: the
    precision of the QR (None: the factor's own, at least float32, since half precisions have none).
    """
    product = factor @ Q
    estimated = (Q * product).sum(dim=0)
    order = torch.argsort(estimated, descending=True)
    power = product.index_select(1, order)
    dtype = qr_dtype or torch.promote_types(power.dtype, torch.float32)
    q, _ = torch.linalg.qr(power.to(dtype))
    return q.to(power.dtype), order


def rotate(tensor: torch.Tensor, bases: list, inverse: bool = False) -> torch.Tensor:
    r"""Change every dimension i of ``tensor`` to the basis ``bases[i]`` (None: left as it is).

    For a matrix, ``rotate(G, [Q_L, Q_R]) = Q_Lᵀ G Q_R`` and ``rotate(G', [Q_L, Q_R], inverse=True)
    = Q_L G' Q_Rᵀ``.
    """
    if len(bases) != tensor.ndim:
        raise ValueError(f"need one basis per dimension of the tensor ({tensor.ndim}), got {len(bases)}")
    for Q in bases:  # each contraction consumes dimension 0 and appends the new one last
        if Q is None:
            tensor = tensor.permute([*range(1, tensor.ndim), 0])
        else:
            tensor = torch.tensordot(tensor, Q, dims=[[0], [1 if inverse else 0]])
    return tensor


class SOAP(Optimizer):
    r"""SOAP (Vyas et al., 2024): Adam in the eigenbasis of Shampoo's preconditioner (module docstring).

    Per parameter of order k, one factor per dimension (up to ``max_precondition_dim``; a larger
    dimension, and a 1-D parameter unless ``precondition_1d``, keeps its coordinates, so a bias gets
    plain Adam). Step by step, following the SOAP authors' code as ``pytorch_optimizer.SOAP`` does:

    - the first step only builds the factors from G₁ and their eigenbases (``torch.linalg.eigh``);
      the parameter does not move;
    - at step t > 1, with s = t − 1 Adam steps: the moments and the step above, with bias corrections
      of s, and ε added to √V *before* the bias correction of V (Kingma and Ba's "efficient" ordering:
      ε is rescaled by √(1 − β₂ˢ) against ``torch.optim.Adam``'s);
    - then decoupled weight decay W ← (1 − αλ) W, applied *after* the step (AdamW applies it before);
    - then the factors take G_t (EMA with ``shampoo_beta``, which defaults to β₂), and when s is a
      multiple of ``precondition_frequency`` the bases are refreshed by one power-iteration step and a
      QR (:func:`refresh_eigenbasis`); V's coordinates are permuted to follow the sorted columns.

    M is kept in the parameter's own coordinates and rotated with the current basis at every step
    (the reference's choice). Keeping M' rotated instead would require rotating it back and forth at each
    basis change; the rotation is linear, so both give the same M'. V cannot be carried over that way
    (a rotated square is not the square of the rotated vector): at a basis change it is only permuted.

    Defaults are the SOAP authors' (and pytorch_optimizer's): lr 3e-3, betas (0.95, 0.95), weight decay
    0.01 (on by default, unlike :class:`~optlib.optim.adaptive.Adam`), a new basis every 10 steps.
    ``qr_dtype``: pytorch_optimizer runs the QR in float32 whatever the parameter's precision, so
    float64 parameters get float32-accurate bases; optlib uses the parameter's precision (None), and
    ``qr_dtype=torch.float32`` reproduces the reference. With it the iterates match
    ``pytorch_optimizer.SOAP`` (merge_dims and normalize_gradient off). A gradient holding NaN or inf
    raises :class:`~optlib.stability.NonFiniteLossError`: it would poison the factors for good.
    """

    def __init__(self, params, lr: float = 3e-3, betas=(0.95, 0.95), shampoo_beta: float | None = None,
                 eps: float = 1e-8, weight_decay: float = 0.01, precondition_frequency: int = 10,
                 max_precondition_dim: int = 10000, precondition_1d: bool = False, correct_bias: bool = True,
                 qr_dtype: torch.dtype | None = None):
        _validate.at_least("lr", lr, 0.0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _validate.in_range("beta1", betas[0], 0.0, 1.0)
        _validate.in_range("beta2", betas[1], 0.0, 1.0)
        if shampoo_beta is not None:
            _validate.in_range("shampoo_beta", shampoo_beta, 0.0, 1.0)
        _validate.positive("eps", eps)  # coordinates the gradients never reach have V = 0
        _validate.at_least("weight_decay", weight_decay, 0.0)
        _validate.positive_int("precondition_frequency", precondition_frequency)
        _validate.positive_int("max_precondition_dim", max_precondition_dim)
        for name, flag in (("precondition_1d", precondition_1d), ("correct_bias", correct_bias)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if qr_dtype is not None and (not isinstance(qr_dtype, torch.dtype) or not qr_dtype.is_floating_point):
            raise TypeError(f"qr_dtype must be None or a floating torch.dtype, got {qr_dtype!r}")
        super().__init__(params, dict(lr=lr, betas=(float(betas[0]), float(betas[1])), shampoo_beta=shampoo_beta,
                                      eps=eps, weight_decay=weight_decay,
                                      precondition_frequency=precondition_frequency,
                                      max_precondition_dim=max_precondition_dim, precondition_1d=precondition_1d,
                                      correct_bias=correct_bias, qr_dtype=qr_dtype))

    @staticmethod
    def _rotated_dims(param, group) -> list[bool]:
        if param.ndim == 1 and not group["precondition_1d"]:
            return [False]
        return [size <= group["max_precondition_dim"] for size in param.shape]

    @staticmethod
    def _factors(state, ndim) -> list:
        return [state.get(f"factor_{d}") for d in range(ndim)]

    @staticmethod
    def _bases(state, ndim) -> list:
        return [state.get(f"basis_{d}") for d in range(ndim)]

    def _add_statistics(self, grad, state, group) -> None:
        beta = group["shampoo_beta"] if group["shampoo_beta"] is not None else group["betas"][1]
        factor_statistics(grad, self._factors(state, grad.ndim), beta)

    @torch.no_grad()
    def step(self, closure=None):
        """One SOAP step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the
        loss, calling ``backward``, and its loss is returned. Sparse or non-finite gradients are refused.
        """
        loss = closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("SOAP does not support sparse gradients")
                state = self.state[p]
                if not torch.isfinite(grad).all():
                    raise NonFiniteLossError(f"a gradient holds NaN or inf at SOAP step {state.get('step', 0) + 1}; "
                                             "lower the learning rate")
                if not state:  # step 1: statistics and exact eigenbases only
                    state.update(step=1, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                    for d, rotated in enumerate(self._rotated_dims(p, group)):
                        if rotated:
                            state[f"factor_{d}"] = p.new_zeros(p.shape[d], p.shape[d])
                    self._add_statistics(grad, state, group)
                    for d, factor in enumerate(self._factors(state, p.ndim)):
                        if factor is not None:
                            state[f"basis_{d}"] = eigenbasis(factor)
                    continue
                state["step"] += 1
                s = state["step"] - 1
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size *= math.sqrt(1.0 - beta2 ** s) / (1.0 - beta1 ** s)
                bases = self._bases(state, p.ndim)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1.0 - beta1)
                exp_avg_sq.lerp_(rotate(grad, bases).square(), 1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                p.add_(rotate(rotate(exp_avg, bases) / denom, bases, inverse=True), alpha=-step_size)
                if group["weight_decay"]:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                self._add_statistics(grad, state, group)
                if s % group["precondition_frequency"] == 0:
                    for d, (factor, Q) in enumerate(zip(self._factors(state, p.ndim), bases)):
                        if factor is not None:
                            state[f"basis_{d}"], order = refresh_eigenbasis(factor, Q, group["qr_dtype"])
                            state["exp_avg_sq"] = state["exp_avg_sq"].index_select(d, order)
        return loss
