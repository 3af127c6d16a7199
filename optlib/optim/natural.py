r"""Natural gradient: the explicit Fisher for small models, and K-FAC's Kronecker-factored Fisher for MLPs.

The natural gradient preconditions the gradient with the Fisher information of the model's predictive
distribution p(y | x, θ) (for a classifier with scores s = f(x, θ), the softmax of the scores):

.. math::
    \theta \leftarrow \theta - \alpha\,(F + \lambda I)^{-1} \nabla L(\theta), \qquad
    F = \frac1B \sum_{n=1}^{B} \mathbb E_{y \sim p(y \mid x_n, \theta)}\big[\nabla_\theta \ell_n(y)\,
        \nabla_\theta \ell_n(y)^\top\big] = \frac1B \sum_n J_n^\top H_n J_n,

with ℓ_n(y) = −log p(y | x_n, θ), J_n = ∂s_n/∂θ and H_n = ∂²ℓ_n/∂s_n² (for the softmax,
diag(p_n) − p_n p_nᵀ, whatever the label). The step is invariant to an invertible linear
reparameterization of θ (λ = 0), since F transforms like the gradient's outer product. Three kinds of
"Fisher" appear in practice, named by ``fisher_type`` here:

- ``"true"``: the expectation over y ~ p(y | x_n, θ) computed exactly, Σ_n J_nᵀ H_n J_n / B (for the
  cross-entropy this equals the generalized Gauss-Newton matrix; curvlinops calls it ``"type-2"``);
- ``"mc"``: the expectation estimated with one label ỹ_n sampled from the model per example (and
  ``mc_samples`` of them for K-FAC), unbiased for the true Fisher; curvlinops' ``"mc"``;
- ``"empirical"``: the observed labels y_n in place of samples, (1/B) Σ_n ∇ℓ_n(y_n) ∇ℓ_n(y_n)ᵀ, the
  uncentered covariance of the per-example gradients; curvlinops' ``"empirical"``. Its labels do not
  come from the model, so it is no expectation under it: away from a good fit it can point far from
  the natural gradient (Kunstner et al., 2019), but it needs only the gradients already computed.

**Loss reduction.** ``reduction="mean"`` means the loss is the average of the B per-example losses
(torch's default), and then F is the average above; ``reduction="sum"`` means the loss is their sum,
and F is the sum (B times the average), so F is always the curvature of the loss as reduced, and
(F + λI)⁻¹∇L is the same step either way when λ = 0. The likelihoods (``loss``): ``"cross_entropy"``
(a categorical over C ≥ 2 class scores, integer labels; ``F.cross_entropy``) and
``"binary_cross_entropy"`` (independent Bernoullis over K logits, labels in {0, 1} of the scores'
shape; ``F.binary_cross_entropy_with_logits``, whose per-example loss here sums its K terms). On a
minibatch of B examples with C classes each J_nᵀH_nJ_n has rank at most C − 1 (H_n 1 = 0), so the
true Fisher has rank at most B(C − 1), and the empirical Fisher, a sum of B outer products, at most B:
damping is what makes them invertible when the model has more parameters.

:class:`NaturalGradient` builds F explicitly (d × d, for small models). :class:`KFAC` approximates the
block of each linear layer s = W a + b by a Kronecker product (Martens & Grosse, 2015)

.. math::
    F_\ell \approx A \otimes G, \qquad A = \mathbb E[\bar a \bar a^\top],\ \bar a = (a, 1), \qquad
    G = \mathbb E[g g^\top],\ g = \partial \ell_n / \partial s,

so that (A ⊗ G)⁻¹ vec(∇_[W b]) = vec(G⁻¹ ∇_[W b] A⁻¹) costs two small inverses per layer.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from optlib import _validate
from optlib.stability import NonFiniteLossError

__all__ = ["FISHER_TYPES", "LOSSES", "REDUCTIONS", "per_example_losses", "reduced_loss", "sample_labels",
           "output_residuals", "output_hessian_sqrt", "fisher_matrix", "natural_gradient_direction", "NaturalGradient",
           "input_factor", "gradient_factor", "damped_inverses", "kfac_precondition", "kl_clip_scale", "KFAC"]

#: The kinds of Fisher matrix: exact expectation over the model's labels, sampled labels, observed labels.
FISHER_TYPES = ("true", "mc", "empirical")
#: The likelihoods: categorical over class scores (cross-entropy) or Bernoulli over logits.
LOSSES = ("cross_entropy", "binary_cross_entropy")
#: How the loss combines the examples of a batch: their average (torch's default) or their sum.
REDUCTIONS = ("mean", "sum")


# ----------------------------------------------------------------------------- likelihood pieces


def _as_matrix(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores as a (B, K) matrix and the targets checked against them."""
    if not isinstance(outputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("outputs and targets must be tensors")
    if loss == "cross_entropy":
        if outputs.ndim != 2 or outputs.shape[1] < 2:
            raise ValueError(f"cross_entropy needs scores of shape (B, C) with C >= 2, got {tuple(outputs.shape)}")
        if targets.shape != outputs.shape[:1] or torch.is_floating_point(targets):
            raise ValueError(f"cross_entropy needs integer labels of shape ({len(outputs)},), "
                             f"got {targets.dtype} of shape {tuple(targets.shape)}")
        return outputs, targets
    if targets.shape != outputs.shape or outputs.ndim not in (1, 2):
        raise ValueError(f"binary_cross_entropy needs logits of shape (B,) or (B, K) and labels of the same shape, "
                         f"got {tuple(outputs.shape)} and {tuple(targets.shape)}")
    return outputs.reshape(len(outputs), -1), targets.reshape(len(targets), -1).to(outputs.dtype)


def per_example_losses(outputs: torch.Tensor, targets: torch.Tensor, loss: str = "cross_entropy") -> torch.Tensor:
    """ℓ_n = −log p(y_n | x_n), shape (B,): ``F.cross_entropy``, or ``F.binary_cross_entropy_with_logits``
    summed over each example's K logits."""
    _validate.one_of("loss", loss, LOSSES)
    scores, y = _as_matrix(outputs, targets, loss)
    if loss == "cross_entropy":
        return F.cross_entropy(scores, y, reduction="none")
    return F.binary_cross_entropy_with_logits(scores, y, reduction="none").sum(1)


def reduced_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str = "cross_entropy",
                 reduction: str = "mean") -> torch.Tensor:
    """The batch loss: the mean (``reduction="mean"``) or the sum of :func:`per_example_losses`."""
    _validate.one_of("reduction", reduction, REDUCTIONS)
    losses = per_example_losses(outputs, targets, loss)
    return losses.mean() if reduction == "mean" else losses.sum()


def sample_labels(outputs: torch.Tensor, loss: str = "cross_entropy",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Labels drawn from the model's own predictive distribution: one class per row of softmax(scores)
    for the cross-entropy, one Bernoulli(σ(s)) per logit for the binary cross-entropy.

    Draws exactly as curvlinops' ``draw_label`` does (``multinomial``/``bernoulli`` with ``generator``),
    so the same generator state gives the same labels. The generator lives on the outputs' device.
    """
    _validate.one_of("loss", loss, LOSSES)
    outputs = outputs.detach()
    if loss == "cross_entropy":
        return outputs.softmax(dim=1).multinomial(num_samples=1, generator=generator).squeeze(-1)
    return outputs.sigmoid().bernoulli(generator=generator)


def output_residuals(outputs: torch.Tensor, targets: torch.Tensor, loss: str = "cross_entropy") -> torch.Tensor:
    """∂ℓ_n/∂s_n for every example, shape (B, K): softmax(s_n) − onehot(y_n), or σ(s_n) − y_n."""
    _validate.one_of("loss", loss, LOSSES)
    scores, y = _as_matrix(outputs.detach(), targets, loss)
    if loss == "cross_entropy":
        return scores.softmax(1) - F.one_hot(y, scores.shape[1]).to(scores.dtype)
    return scores.sigmoid() - y


def output_hessian_sqrt(outputs: torch.Tensor, loss: str = "cross_entropy") -> torch.Tensor:
    r"""S_n with S_n S_nᵀ = H_n = ∂²ℓ_n/∂s_n², shape (B, K, K); H_n does not depend on the label.

    Cross-entropy: H = diag(p) − ppᵀ and S = diag(√p) − p √pᵀ (since Σp = 1); binary
    cross-entropy: H = diag(σ(1 − σ)) and S = diag(√(σ(1 − σ))).
    """
    _validate.one_of("loss", loss, LOSSES)
    scores = outputs.detach().reshape(len(outputs), -1)
    if loss == "cross_entropy":
        p = scores.softmax(1)
        root = p.sqrt()
        return torch.diag_embed(root) - p.unsqueeze(2) * root.unsqueeze(1)
    s = scores.sigmoid()
    return torch.diag_embed((s * (1 - s)).sqrt())


# ----------------------------------------------------------------------------- the explicit Fisher


def _flat_jacobian(outputs: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """J with J[n, k] = ∂s_{n,k}/∂θ, shape (B, K, d), by one batched backward pass (vmap over rows)."""
    flat = outputs.reshape(-1)
    eye = torch.eye(len(flat), dtype=flat.dtype, device=flat.device)
    rows = torch.autograd.grad(flat, params, grad_outputs=eye, retain_graph=True, is_grads_batched=True,
                               allow_unused=True)
    jac = torch.cat([torch.zeros(len(flat), p.numel(), dtype=flat.dtype, device=flat.device) if r is None
                     else r.reshape(len(flat), -1) for r, p in zip(rows, params)], dim=1)
    return jac.reshape(len(outputs), -1, jac.shape[1])


def fisher_matrix(outputs: torch.Tensor, targets: torch.Tensor, params, fisher_type: str = "true",
                  loss: str = "cross_entropy", reduction: str = "mean",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The d × d Fisher of the batch loss with respect to ``params`` (flattened and concatenated in order).

    ``outputs`` are the model's scores on the batch, still attached to the graph of ``params``;
    ``targets`` the observed labels (used by ``"empirical"`` only). With c = 1/B for
    ``reduction="mean"`` and c = 1 for ``"sum"``:

    - ``"true"``: c Σ_n J_nᵀ H_n J_n (the exact expectation over labels drawn from the model);
    - ``"mc"``: c Σ_n J_nᵀ r̃_n r̃_nᵀ J_n, r̃_n = ∂ℓ_n(ỹ_n)/∂s_n for ỹ_n drawn by :func:`sample_labels`;
    - ``"empirical"``: c Σ_n J_nᵀ r_n r_nᵀ J_n = c Σ_n ∇ℓ_n ∇ℓ_nᵀ, with the observed labels.

    Costs one batched backward pass per score (B·K of them, vectorized): meant for small models.
    """
    _validate.one_of("fisher_type", fisher_type, FISHER_TYPES)
    _validate.one_of("loss", loss, LOSSES)
    _validate.one_of("reduction", reduction, REDUCTIONS)
    params = list(params)
    _as_matrix(outputs, targets, loss)
    jac = _flat_jacobian(outputs, params).detach()
    scale = 1.0 / len(outputs) if reduction == "mean" else 1.0
    if fisher_type == "true":
        roots = output_hessian_sqrt(outputs, loss)
        factors = torch.einsum("bkc,bkd->bcd", roots, jac).reshape(-1, jac.shape[2])
    else:
        labels = targets if fisher_type == "empirical" else sample_labels(outputs, loss, generator)
        factors = torch.einsum("bk,bkd->bd", output_residuals(outputs, labels, loss), jac)
    return scale * factors.T @ factors


def natural_gradient_direction(grad: torch.Tensor, fisher: torch.Tensor, damping: float = 0.0) -> torch.Tensor:
    """(F + λI)⁻¹ g by a linear solve; with λ = 0, the pseudo-inverse F⁺g (the minimum-norm solution
    when F is singular, F⁻¹g when it is not)."""
    _validate.at_least("damping", damping, 0.0)
    if damping == 0:
        return torch.linalg.pinv(fisher, hermitian=True) @ grad
    eye = torch.eye(len(grad), dtype=fisher.dtype, device=fisher.device)
    return torch.linalg.solve(fisher + damping * eye, grad)


def _check_finite_loss(loss: torch.Tensor, name: str, step: int) -> None:
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError(f"{name}: the loss must be a scalar tensor, got {getattr(loss, 'shape', loss)!r}")
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()} at {name} step {step}; lower the learning rate "
                                 "or raise the damping")


class NaturalGradient(Optimizer):
    r"""Natural gradient with the explicit Fisher: θ ← θ − α (F + λI)⁻¹ ∇L(θ).

    .. math::
        \theta_{t+1} = \theta_t - \alpha\,(F_t + \lambda I)^{-1} \nabla L(\theta_t)

    with α = ``lr``, λ = ``damping`` and F_t the ``fisher_type`` Fisher of the minibatch
    (:func:`fisher_matrix`; ``"true"``, ``"mc"`` or ``"empirical"``, see the module's description,
    including the ``loss`` and ``reduction`` conventions). With λ = 0 the pseudo-inverse is used.

    Builds the d × d Fisher (B·K backward passes, vectorized) and solves a d × d system each step:
    for the book's small models. ``step`` needs a closure that returns the pair ``(outputs, targets)``,
    the model's scores on the batch and its labels, **without** calling ``backward``; the optimizer
    computes the loss (:func:`reduced_loss`), its gradient and the Fisher itself
    (``closure_calls_backward = False``). ``generator`` draws the ``"mc"`` labels. A NaN or
    infinite loss raises :class:`~optlib.stability.NonFiniteLossError`. Returns the loss; after a step
    each parameter's ``.grad`` holds the gradient at the point the step started from.
    """

    closure_calls_backward = False

    def __init__(self, params, lr: float = 1.0, damping: float = 1e-4, fisher_type: str = "true",
                 loss: str = "cross_entropy", reduction: str = "mean", generator: torch.Generator | None = None):
        _validate.at_least("lr", lr, 0.0)
        _validate.at_least("damping", damping, 0.0)
        _validate.one_of("fisher_type", fisher_type, FISHER_TYPES)
        _validate.one_of("loss", loss, LOSSES)
        _validate.one_of("reduction", reduction, REDUCTIONS)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        super().__init__(params, dict(lr=lr, damping=damping, fisher_type=fisher_type, loss=loss,
                                      reduction=reduction))

    def step(self, closure=None):
        """One natural-gradient step; ``closure`` is required and returns ``(outputs, targets)`` without
        calling ``backward``. Returns the loss at the point the step started from."""
        if closure is None:
            raise ValueError("NaturalGradient.step needs a closure that returns (outputs, targets) "
                             "without calling backward")
        if len(self.param_groups) > 1:
            raise ValueError("NaturalGradient couples all parameters through F: use a single param group")
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.requires_grad]
        state = self.state[params[0]]
        state.setdefault("step", 0)
        with torch.enable_grad():
            result = closure()
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise ValueError("the closure must return the pair (outputs, targets)")
            outputs, targets = result
            loss = reduced_loss(outputs, targets, group["loss"], group["reduction"])
            _check_finite_loss(loss, "NaturalGradient", state["step"])
            if not loss.requires_grad:
                raise ValueError("the closure's outputs have no graph: compute them without torch.no_grad()")
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            fisher = fisher_matrix(outputs, targets, params, group["fisher_type"], group["loss"],
                                   group["reduction"], self.generator)
        g = torch.cat([gr.reshape(-1) for gr in grads]).detach()
        direction = natural_gradient_direction(g, fisher, group["damping"])
        with torch.no_grad():
            offset = 0
            for p, gr in zip(params, grads):
                n = p.numel()
                p.add_(direction[offset:offset + n].view_as(p), alpha=-group["lr"])
                p.grad = gr.detach().clone()
                offset += n
        state["step"] += 1
        return loss.detach()


# ----------------------------------------------------------------------------- K-FAC


def input_factor(inputs: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """A = (1/B) Σ_n ā_n ā_nᵀ for a linear layer's inputs (B, d_in), with ā_n = (a_n, 1) when the layer
    has a bias (the bias is the weight of a constant input 1). Always an average over examples."""
    if inputs.ndim != 2:
        raise ValueError(f"inputs must be (B, d_in), got {tuple(inputs.shape)}")
    a = inputs.detach()
    if bias:
        a = torch.cat([a, a.new_ones(len(a), 1)], dim=1)
    return a.T @ a / len(a)


def gradient_factor(output_grads: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """G from the per-example gradients g_n = ∂ℓ_n/∂s_n (B, d_out) of a layer's outputs s_n:
    (1/B) Σ_n g_n g_nᵀ for ``reduction="mean"``, Σ_n g_n g_nᵀ for ``"sum"`` (as curvlinops' KFAC)."""
    _validate.one_of("reduction", reduction, REDUCTIONS)
    if output_grads.ndim != 2:
        raise ValueError(f"output_grads must be (B, d_out), got {tuple(output_grads.shape)}")
    g = output_grads.detach()
    return g.T @ g / len(g) if reduction == "mean" else g.T @ g


def damped_inverses(A: torch.Tensor, G: torch.Tensor, damping: float,
                    pi_damping: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""((A + π√λ I)⁻¹, (G + √λ/π I)⁻¹): Tikhonov damping λ split between the two factors.

    (A + π√λ I) ⊗ (G + √λ/π I) = A ⊗ G + λ I + π√λ I ⊗ G + (√λ/π) A ⊗ I, close to A ⊗ G + λ I.
    With ``pi_damping`` (Martens & Grosse, 2015, §6.3), π = √((tr A / dim A) / (tr G / dim G)) balances
    the two extra terms; otherwise π = 1 (also when tr G = 0). curvlinops'
    ``KFACInverseLinearOperator(use_heuristic_damping=True)`` is the same, except that it never lets a
    damping fall below its ``min_damping`` (1e-8).
    """
    _validate.at_least("damping", damping, 0.0)
    pi = 1.0
    if pi_damping:
        mean_a, mean_g = (A.trace() / len(A)).item(), (G.trace() / len(G)).item()
        if mean_a > 0 and mean_g > 0:
            pi = math.sqrt(mean_a / mean_g)
    root = math.sqrt(damping)

    def inverse(M, shift):
        eye = torch.eye(len(M), dtype=M.dtype, device=M.device)
        return torch.cholesky_inverse(torch.linalg.cholesky(M + shift * eye))

    return inverse(A, pi * root), inverse(G, root / pi)


def kfac_precondition(grad: torch.Tensor, A_inv: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """G⁻¹ Γ A⁻¹ for the gradient Γ = [∇W, ∇b] (d_out × (d_in + 1), or ∇W alone without a bias):
    (A ⊗ G)⁻¹ applied to vec Γ, with vec stacking columns."""
    return G_inv @ grad @ A_inv


def kl_clip_scale(directions, grads, lr: float, kl_clip: float) -> float:
    r"""ν = min(1, √(κ / (α² Σ_ℓ ⟨v_ℓ, g_ℓ⟩))), the step's scale under KL-clipping (Ba et al., 2017).

    For the step −αν v, v = F̂⁻¹g, the quadratic estimate of the KL divergence between the model's
    predictions before and after is ½ α²ν² vᵀF̂v = ½ α²ν² vᵀg; ν caps it at κ/2 (κ = ``kl_clip``).
    """
    _validate.positive("kl_clip", kl_clip)
    vg = sum(float((v * g).sum()) for v, g in zip(directions, grads))
    if vg <= 0 or lr == 0:
        return 1.0
    return min(1.0, math.sqrt(kl_clip / (lr**2 * vg)))


class KFAC(Optimizer):
    r"""K-FAC (Martens & Grosse, 2015) for the ``nn.Linear`` layers of a model such as ``optlib.models.MLP``.

    For each linear layer s = W a + b, with Γ = [∇_W L, ∇_b L] the gradient of the batch loss:

    .. math::
        A &\leftarrow \beta A + (1-\beta)\, \tfrac1B \textstyle\sum_n \bar a_n \bar a_n^\top, \qquad
        G \leftarrow \beta G + (1-\beta)\, c \textstyle\sum_n g_n g_n^\top, \\
        V &= (G + \tfrac{\sqrt\lambda}{\pi} I)^{-1}\, \Gamma\, (A + \pi \sqrt\lambda\, I)^{-1}, \qquad
        [W, b] \leftarrow [W, b] - \alpha\, \nu\, V,

    with ā_n = (a_n, 1) the layer's input with the bias's constant 1 appended (the bias is treated
    jointly with the weight), g_n = ∂ℓ_n/∂s_n the per-example gradient of the layer's output,
    c = 1/B for ``reduction="mean"`` and 1 for ``"sum"`` (:func:`input_factor`,
    :func:`gradient_factor`), β = ``factor_decay`` (the first update takes the batch's factors as
    they are), α = ``lr``, λ = ``damping`` split between the factors (:func:`damped_inverses`, π from
    ``pi_damping``, else 1), and ν = 1, or :func:`kl_clip_scale` with κ = ``kl_clip``. Trainable
    parameters outside linear layers take a plain gradient step −αν∇L.

    The factors are updated every ``factor_update_interval`` steps and inverted every
    ``inverse_update_interval`` steps (the first step does both); between inversions the step uses
    the last inverses. These conventions are curvlinops' ``KFACLinearOperator`` with
    ``separate_weight_and_bias=False``, ``kfac_approx="expand"`` and the same ``fisher_type`` (``"true"``
    is its ``"type-2"``) and loss reduction: on one batch the factors agree (tested).

    How the statistics are gathered: forward hooks on each ``nn.Linear`` keep its input (and a hook
    on its output tensor keeps the output's gradient during ``backward``; a hook on the model keeps
    the model's input). ``step(closure)`` takes the usual closure that computes the loss and calls
    ``backward`` (as ``optlib.run.train`` builds it); ``step()`` after ``loss.backward()`` works too.
    ``fisher_type="empirical"`` uses the gradients of that backward pass (the observed labels), rescaled
    to per-example gradients (×B for ``reduction="mean"``); ``"mc"`` runs the model again on the same
    inputs and backpropagates ``mc_samples`` sets of labels drawn from its predictions (with
    ``generator``); ``"true"`` backpropagates the K columns of the Hessian's square root
    (:func:`output_hessian_sqrt`), the exact expectation, at K backward passes. ``"mc"`` and ``"true"``
    assume that the model's outputs are the scores of ``loss`` (the closure's loss should be that
    likelihood, with the same ``reduction``); ``"empirical"`` works with any loss of that reduction.
    Only forward passes with gradients enabled are recorded, so evaluation under ``torch.no_grad`` does
    not disturb them. Each linear layer must see (B, d_in) inputs and run once per forward pass.
    :meth:`remove_hooks` detaches the optimizer from the model.

    A NaN or infinite loss (or gradient) raises :class:`~optlib.stability.NonFiniteLossError`.
    """

    def __init__(self, model: nn.Module, lr: float = 0.1, damping: float = 1e-2, fisher_type: str = "mc",
                 loss: str = "cross_entropy", reduction: str = "mean", factor_decay: float = 0.95,
                 factor_update_interval: int = 1, inverse_update_interval: int = 1, pi_damping: bool = True,
                 kl_clip: float | None = None, mc_samples: int = 1, generator: torch.Generator | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"KFAC takes the model (an nn.Module), got {type(model).__name__}")
        _validate.at_least("lr", lr, 0.0)
        _validate.at_least("damping", damping, 0.0)
        _validate.one_of("fisher_type", fisher_type, FISHER_TYPES)
        _validate.one_of("loss", loss, LOSSES)
        _validate.one_of("reduction", reduction, REDUCTIONS)
        _validate.in_range("factor_decay", factor_decay, 0.0, 1.0)
        _validate.positive_int("factor_update_interval", factor_update_interval)
        _validate.positive_int("inverse_update_interval", inverse_update_interval)
        if not isinstance(pi_damping, bool):
            raise TypeError(f"pi_damping must be True or False, got {pi_damping!r}")
        if kl_clip is not None:
            _validate.positive("kl_clip", kl_clip)
        _validate.positive_int("mc_samples", mc_samples)
        if mc_samples != 1 and fisher_type != "mc":
            raise ValueError(f"mc_samples must be 1 unless fisher_type='mc', got {mc_samples}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.weight.requires_grad]
        if not self.layers:
            raise ValueError(f"KFAC preconditions nn.Linear layers, and {type(model).__name__} has no trainable one")
        params = [p for p in model.parameters() if p.requires_grad]
        super().__init__(params, dict(lr=lr, damping=damping, fisher_type=fisher_type, loss=loss, reduction=reduction,
                                      factor_decay=factor_decay, factor_update_interval=factor_update_interval,
                                      inverse_update_interval=inverse_update_interval, pi_damping=pi_damping,
                                      kl_clip=kl_clip, mc_samples=mc_samples))
        self.model, self.generator = model, generator
        self._inputs: dict[nn.Module, torch.Tensor] = {}
        self._output_grads: dict[nn.Module, list[torch.Tensor]] = {}
        self._model_input: torch.Tensor | None = None
        self._handles = [model.register_forward_pre_hook(self._keep_model_input)]
        self._handles += [layer.register_forward_hook(self._keep_layer_input) for layer in self.layers]

    # hooks ---------------------------------------------------------------
    def _keep_model_input(self, module, args):
        if torch.is_grad_enabled() and len(args) == 1 and isinstance(args[0], torch.Tensor):
            self._model_input = args[0].detach()

    def _keep_layer_input(self, layer, args, output):
        if not (torch.is_grad_enabled() and output.requires_grad):
            return
        if args[0].ndim != 2:
            raise ValueError(f"KFAC handles linear layers applied to (B, d_in) inputs, got {tuple(args[0].shape)}")
        self._inputs[layer] = args[0].detach()
        self._output_grads[layer] = []
        output.register_hook(partial(self._keep_output_grad, layer))

    def _keep_output_grad(self, layer, grad):
        self._output_grads[layer].append(grad.detach())

    def remove_hooks(self) -> None:
        """Remove the hooks this optimizer put on the model (it can no longer update its factors)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # statistics ----------------------------------------------------------
    def _batch_factors(self, group) -> dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
        """(A, G) of every linear layer on the last batch, for the group's ``fisher_type``."""
        fisher_type, reduction, loss = group["fisher_type"], group["reduction"], group["loss"]
        if any(not self._output_grads.get(layer) for layer in self.layers):
            raise RuntimeError("KFAC saw no backward pass through the model since its last forward pass: call "
                               "step(closure) with a closure that calls loss.backward(), or step() after it")
        if fisher_type == "empirical":
            per_example = {layer: [self._output_grads[layer][-1] * (len(self._inputs[layer])
                                                                    if reduction == "mean" else 1.0)]
                           for layer in self.layers}
            weight = 1.0
        else:
            if self._model_input is None:
                raise RuntimeError("KFAC did not see the model's input (call the model on one tensor)")
            weights = [layer.weight for layer in self.layers]
            with torch.enable_grad():
                outputs = self.model(self._model_input)
                if fisher_type == "mc":
                    columns = [output_residuals(outputs, sample_labels(outputs, loss, self.generator), loss)
                               for _ in range(group["mc_samples"])]
                    weight = 1.0 / group["mc_samples"]
                else:
                    roots = output_hessian_sqrt(outputs, loss)
                    columns = [roots[:, :, c] for c in range(roots.shape[2])]
                    weight = 1.0
                for i, column in enumerate(columns):
                    scores = outputs.reshape(len(outputs), -1)
                    torch.autograd.grad((scores * column).sum(), weights, retain_graph=i < len(columns) - 1)
            per_example = {layer: self._output_grads[layer] for layer in self.layers}
        factors = {}
        for layer in self.layers:
            A = input_factor(self._inputs[layer], bias=layer.bias is not None)
            G = sum(gradient_factor(g, reduction) for g in per_example[layer]) * weight
            factors[layer] = (A, G)
        return factors

    # the step ------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        """One K-FAC step. ``closure`` (optional) computes the loss and calls ``backward``; its loss is
        returned. Without it, call ``loss.backward()`` before ``step()``."""
        if len(self.param_groups) > 1:
            raise ValueError("KFAC takes one param group (the model's trainable parameters)")
        group = self.param_groups[0]
        loss = None
        first = self.state[self.layers[0].weight]
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            _check_finite_loss(loss, "KFAC", first.get("step", 0))
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if not torch.isfinite(p.grad).all():
                raise NonFiniteLossError(f"a gradient holds NaN or inf at KFAC step {first.get('step', 0)}; "
                                         "lower the learning rate or raise the damping")
        t = first.get("step", 0)
        if t % group["factor_update_interval"] == 0:
            beta = group["factor_decay"]
            for layer, (A, G) in self._batch_factors(group).items():
                state = self.state[layer.weight]
                if "A" not in state:
                    state["A"], state["G"] = A, G
                else:
                    state["A"].mul_(beta).add_(A, alpha=1 - beta)
                    state["G"].mul_(beta).add_(G, alpha=1 - beta)
        if t % group["inverse_update_interval"] == 0 or "A_inv" not in first:
            for layer in self.layers:
                state = self.state[layer.weight]
                state["A_inv"], state["G_inv"] = damped_inverses(state["A"], state["G"], group["damping"],
                                                                 group["pi_damping"])
        directions = {}
        for layer in self.layers:
            if layer.weight.grad is None:
                continue
            state = self.state[layer.weight]
            has_bias = layer.bias is not None and layer.bias.grad is not None
            grad = torch.cat([layer.weight.grad, layer.bias.grad.unsqueeze(1)], 1) if has_bias else layer.weight.grad
            if layer.bias is not None and not has_bias:
                grad = torch.cat([grad, grad.new_zeros(len(grad), 1)], 1)
            v = kfac_precondition(grad, state["A_inv"], state["G_inv"])
            directions[layer.weight] = v[:, :layer.in_features]
            if layer.bias is not None:
                directions[layer.bias] = v[:, layer.in_features]
        vs = [directions.get(p, p.grad) for p in params]
        nu = 1.0 if group["kl_clip"] is None else kl_clip_scale(vs, [p.grad for p in params], group["lr"],
                                                                 group["kl_clip"])
        for p, v in zip(params, vs):
            p.add_(v, alpha=-group["lr"] * nu)
        for layer in self.layers:
            self.state[layer.weight]["step"] = t + 1
        return loss
