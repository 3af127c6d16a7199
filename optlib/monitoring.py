r"""Watching a run's health: gradient norms per layer, curvature (sharpness), and exact Hessians of a small model.

Chapter 7 uses these to see *why* a run blows up and what weight decay does to the curvature:

* :func:`layer_grad_norms` gives ‖∂L/∂θ_ℓ‖ for every parameter tensor, so exploding (or vanishing)
  gradients show up layer by layer, not only in the global norm.
* :func:`init_normal_` re-initializes every linear layer with W ~ N(0, gain²/fan_in) and zero biases:
  for a ReLU network gain √2 (He initialization) keeps the signal's scale through depth; a larger
  gain multiplies activations and gradients by about (gain/√2) per layer, a smaller one shrinks them.
* :func:`sharpness` estimates λ_max of the loss Hessian by power iteration on Hessian-vector products;
  gradient descent on a quadratic with that curvature is stable only for lr < 2/λ_max.
* :func:`softmax_regression_hessian` writes out the exact Hessian of L2-regularized softmax regression,

  .. math::
      H = \frac1n \sum_i \big(\operatorname{diag}(p_i) - p_i p_i^\top\big) \otimes x_i x_i^\top + \lambda I,

  the Hessian of f(w) = mean cross-entropy + (λ/2)‖w‖² with w = vec(W) (W of shape (C, d), row-major),
  and :func:`fit_softmax_regression` finds the minimizer w* by Newton's method on it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from optlib import _validate
from optlib.losses import softmax_loss


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """‖grad‖₂ of every parameter tensor that has a gradient, as ``{parameter name: norm}`` (in model order).

    Call it after ``loss.backward()``. The global norm is the root of the sum of squares of these values.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: torch.linalg.vector_norm(p.grad.detach()).item()
            for name, p in model.named_parameters() if p.grad is not None}


def init_normal_(model: nn.Module, gain: float = math.sqrt(2.0), *, generator: torch.Generator | None = None):
    r"""Set every ``nn.Linear`` weight to N(0, gain²/fan_in) and its bias to 0, in place; return ``model``.

    The variance 1/fan_in · gain² keeps E‖h‖² constant through a linear layer followed by a ReLU
    when gain = √2 (He et al., 2015). Each extra layer scales activations (forward) and gradients
    (backward) by roughly gain/√2, so a deep network with gain 3 explodes like (3/√2)^depth.
    """
    _validate.positive("gain", gain)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer to initialize")
    with torch.no_grad():
        for layer in linears:
            std = gain / math.sqrt(layer.in_features)
            noise = torch.randn(layer.weight.shape, generator=generator, dtype=layer.weight.dtype)
            layer.weight.copy_(std * noise.to(layer.weight.device))
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def sharpness(model: nn.Module, loss_fn, X: torch.Tensor, y: torch.Tensor, *, iters: int = 20,
              generator: torch.Generator | None = None) -> float:
    r"""λ_max, the Hessian eigenvalue of largest magnitude of ``loss_fn(model(X), y)`` w.r.t. the parameters.

    Power iteration v ← Hv/‖Hv‖ with Hessian-vector products by double backpropagation, ``iters``
    products in all, from a random start drawn with ``generator``. Returns the Rayleigh quotient vᵀHv
    of the last iterate (it approaches the eigenvalue of largest magnitude, which for a loss near a
    minimum is the largest positive one). Gradient descent is stable on the local quadratic model
    only for lr < 2/λ_max.
    """
    _validate.positive_int("iters", iters)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    loss = loss_fn(model(X), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    value = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((u * u).sum() for u in v))
        v = [u / norm for u in v]
        Hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        value = sum((h * u).sum() for h, u in zip(Hv, v)).item()
        v = [h.detach() for h in Hv]
    return value


def _check_softmax_data(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, weight_decay: float):
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X must be (n, d) and y (n,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if W.ndim != 2 or W.shape[1] != X.shape[1]:
        raise ValueError(f"W must have shape (C, {X.shape[1]}), got {tuple(W.shape)}")
    _validate.at_least("weight_decay", weight_decay, 0.0)


def softmax_regression_objective(X: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float = 0.0):
    r"""f(w) = mean cross-entropy of scores X Wᵀ + (λ/2)‖w‖², as a function of the flat vector w = vec(W)."""
    _validate.positive_int("num_classes", num_classes)
    _check_softmax_data(torch.zeros(num_classes, X.shape[1]), X, y, weight_decay)
    shape = (num_classes, X.shape[1])

    def f(w: torch.Tensor) -> torch.Tensor:
        if w.shape[-1] != shape[0] * shape[1]:
            raise ValueError(f"w must have {shape[0] * shape[1]} entries, got shape {tuple(w.shape)}")
        W = w.reshape(shape)
        return softmax_loss(X @ W.T, y) + 0.5 * weight_decay * (w * w).sum()

    return f


def softmax_regression_hessian(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, weight_decay: float = 0.0
                               ) -> torch.Tensor:
    r"""Exact Hessian (Cd × Cd) of mean cross-entropy + (λ/2)‖W‖² at ``W`` (shape (C, d)), in closed form.

    With p_i = softmax(W x_i): H = (1/n) Σ_i (diag(p_i) − p_i p_iᵀ) ⊗ x_i x_iᵀ + λI, indexed like
    ``W.reshape(-1)``. The data term is singular: adding one vector to every row of W leaves the
    loss unchanged, so its null space has dimension ≥ d, and weight decay lifts those eigenvalues to λ.
    """
    _check_softmax_data(W, X, y, weight_decay)
    C, d = W.shape
    P = torch.softmax(X @ W.T, dim=1)
    S = torch.diag_embed(P) - P[:, :, None] * P[:, None, :]
    H = torch.einsum("nab,ni,nj->aibj", S, X, X).reshape(C * d, C * d) / len(X)
    H = 0.5 * (H + H.T)
    return H + weight_decay * torch.eye(C * d, dtype=H.dtype, device=H.device)


def fit_softmax_regression(X: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, *,
                           tol: float = 1e-10, max_steps: int = 50) -> torch.Tensor:
    r"""The minimizer W* (shape (C, d)) of mean cross-entropy + (λ/2)‖W‖², by Newton's method with backtracking.

    Needs λ > 0 (otherwise the minimizer is not unique, or does not exist for separable data). Stops
    when the gradient norm is below ``tol``; raises ``RuntimeError`` if that takes more than ``max_steps``.
    """
    _validate.positive("weight_decay", weight_decay)
    _validate.positive("tol", tol)
    _validate.positive_int("max_steps", max_steps)
    f = softmax_regression_objective(X, y, num_classes, weight_decay)
    w = torch.zeros(num_classes * X.shape[1], dtype=X.dtype, device=X.device)
    for _ in range(max_steps):
        wr = w.clone().requires_grad_(True)
        value = f(wr)
        (g,) = torch.autograd.grad(value, wr)
        if torch.linalg.vector_norm(g) <= tol:
            return w.reshape(num_classes, -1)
        H = softmax_regression_hessian(w.reshape(num_classes, -1), X, y, weight_decay)
        step = torch.linalg.solve(H, g)
        t, decrease = 1.0, (g @ step).item()
        with torch.no_grad():
            while f(w - t * step) > value - 0.25 * t * decrease and t > 1e-10:
                t *= 0.5
        w = w - t * step
    raise RuntimeError(f"Newton's method did not reach gradient norm {tol} in {max_steps} steps")
