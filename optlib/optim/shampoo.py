r"""Shampoo (Gupta, Koren and Singer, 2018): one preconditioner per dimension of a tensor parameter.

Full-matrix AdaGrad preconditions vec(G) with (Σ vec(G) vec(G)ᵀ)^(-1/2), a (mn) × (mn) matrix for an
m × n weight: out of reach for any real layer. Shampoo keeps one factor per dimension instead,

.. math::
    L_t = \epsilon I + \sum_{s \le t} G_s G_s^\top \ (m \times m), \qquad
    R_t = \epsilon I + \sum_{s \le t} G_s^\top G_s \ (n \times n), \qquad
    W_{t+1} = W_t - \alpha\, L_t^{-1/4}\, G_t\, R_t^{-1/4},

which costs two small matrix roots and equals preconditioning vec(G) with the Kronecker product
(L ⊗ R)^(-1/4) (:func:`kronecker_precondition` states the identity exactly). Gupta et al. show
that L ⊗ R dominates the full-matrix statistic, (L ⊗ R)^(1/2) ⪰ Σ vec(G) vec(G)ᵀ / r (r the rank of
the gradients), which gives AdaGrad's regret bound with the cheap preconditioner. For a tensor of order
k each dimension i has its factor (the gradient unfolded along i times its transpose) and the power is
−1/(2k); a vector (k = 1) gets full-matrix AdaGrad's (εI + Σ g gᵀ)^(-1/2).
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim._closure import closure_loss
from optlib.stability import NonFiniteLossError

__all__ = ["GRAFTINGS", "MOMENTUM_FORMS", "ROOT_SCHEDULES", "VECTOR_PRECONDITIONERS", "Shampoo", "graft",
           "kronecker_factors", "kronecker_precondition", "matrix_inverse_root", "unfold"]

#: How a parameter's step size is set: Shampoo's own, or the norm of another method's step ("grafting").
GRAFTINGS = (None, "sgd", "adagrad", "adam")
#: ``"heavy_ball"``: m ← μ m + P(g); ``"reference"``: pytorch_optimizer's mix of g with the last step.
MOMENTUM_FORMS = ("heavy_ball", "reference")
#: When the inverse roots are recomputed: steps 1, 1 + k, 1 + 2k, ... or steps k, 2k, ... (pytorch_optimizer).
ROOT_SCHEDULES = ("first", "multiples")
#: The preconditioner of a 1-D parameter: AdaGrad's diagonal, or the d × d matrix of the paper.
VECTOR_PRECONDITIONERS = ("diagonal", "full")


def matrix_inverse_root(A: torch.Tensor, p: float, eps: float = 0.0) -> torch.Tensor:
    r"""(A + εI)^(-1/p) for a symmetric positive semidefinite matrix A, by an eigendecomposition.

    A = Q diag(λ) Qᵀ gives (A + εI)^(-1/p) = Q diag((λ + ε)^(-1/p)) Qᵀ. Why ε: Shampoo's statistics
    Σ G Gᵀ have rank at most (number of steps) × min(m, n), so for the first steps, and for ever in the
    directions no gradient visits, A is singular and A^(-1/p) does not exist; ε bounds every
    eigenvalue of the root by ε^(-1/p) (the paper's L₀ = εI). Eigenvalues that rounding made slightly
    negative are clamped to 0 first: A is PSD in exact arithmetic, and (λ + ε) < 0 would give NaN.
    With ε = 0 a singular A has no finite root, and the result holds inf or NaN.
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {tuple(A.shape)}")
    _validate.positive("p", p)
    _validate.at_least("eps", eps, 0.0)
    eigenvalues, Q = torch.linalg.eigh(A)
    scale = eigenvalues.clamp(min=0.0).add_(eps).pow_(-1.0 / p)
    return (Q * scale) @ Q.mT


def unfold(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """The mode-``dim`` unfolding: ``tensor`` as a (size of dim) × (everything else) matrix."""
    return tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1)


def kronecker_factors(grad: torch.Tensor, factors: list, beta2: float = 1.0) -> list:
    r"""Add the gradient's statistics to Shampoo's factors in place and return them.

    Factor i gets G₍ᵢ₎G₍ᵢ₎ᵀ with G₍ᵢ₎ the unfolding along dimension i (for a matrix: L ← L + G Gᵀ and
    R ← R + Gᵀ G). ``beta2 = 1`` is the paper's sum; ``beta2 < 1`` an exponential moving average
    F ← β₂ F + (1 − β₂) G₍ᵢ₎G₍ᵢ₎ᵀ (Anil et al., 2020), which forgets the gradients of long ago.
    An entry None (a dimension left unpreconditioned) is skipped.
    """
    if len(factors) != grad.ndim:
        raise ValueError(f"need one factor per dimension of the gradient ({grad.ndim}), got {len(factors)}")
    for dim, factor in enumerate(factors):
        if factor is None:
            continue
        g = unfold(grad, dim)
        if beta2 == 1.0:
            factor.addmm_(g, g.t())
        else:
            factor.mul_(beta2).addmm_(g, g.t(), alpha=1.0 - beta2)
    return factors


def kronecker_precondition(grad: torch.Tensor, roots: list) -> torch.Tensor:
    r"""Multiply the gradient along every dimension i by the matrix ``roots[i]`` (None: identity).

    For a matrix, ``kronecker_precondition(G, [P, S]) = P G Sᵀ``, and with row-major vec
    (``G.reshape(-1)``) the identity is

    .. math::
        \operatorname{vec}(P\, G\, S^\top) = (P \otimes S)\, \operatorname{vec}(G),

    so with symmetric P = L^(-1/4), S = R^(-1/4) Shampoo's step is the full-matrix preconditioner
    (L ⊗ R)^(-1/4) = L^(-1/4) ⊗ R^(-1/4) applied to vec(G) (the power of a Kronecker product of
    PSD matrices is the product of the powers). With column-major vec (the usual textbook one) the
    same matrix is (S ⊗ P). For order k the product runs over all k modes.
    """
    if len(roots) != grad.ndim:
        raise ValueError(f"need one root per dimension of the gradient ({grad.ndim}), got {len(roots)}")
    out = grad
    for dim, root in enumerate(roots):
        if root is not None:
            out = torch.tensordot(root, out, dims=([1], [dim])).movedim(0, dim)
    return out


def graft(direction: torch.Tensor, graft_direction: torch.Tensor) -> torch.Tensor:
    """``direction`` rescaled to the Frobenius norm of ``graft_direction`` (0 if ``direction`` is 0).

    Grafting (Agarwal et al., 2020; Anil et al., 2020) takes the direction from Shampoo and the size
    of the step, per tensor, from a method whose learning rate is known (SGD, AdaGrad, Adam).
    """
    norm = torch.linalg.vector_norm(direction)
    if norm == 0:
        return torch.zeros_like(direction)
    return direction * (torch.linalg.vector_norm(graft_direction) / norm)


def _graft_direction(grad, state, group) -> torch.Tensor:
    kind = group["grafting"]
    if kind == "sgd":
        return grad
    if kind == "adagrad":
        state["graft_sum"].addcmul_(grad, grad)
        return grad / state["graft_sum"].sqrt().add_(group["grafting_eps"])
    beta = group["grafting_beta2"]
    state["graft_sum"].mul_(beta).addcmul_(grad, grad, value=1.0 - beta)
    second = state["graft_sum"] / (1.0 - beta ** state["step"])
    return grad / second.sqrt_().add_(group["grafting_eps"])


class Shampoo(Optimizer):
    r"""Shampoo (Gupta, Koren and Singer, 2018), with the EMA, grafting and root schedule of Anil et al. (2020).

    For a parameter of order k = 2 (a matrix) with gradient G (plus λW when ``weight_decay`` = λ):

    .. math::
        L_t &= \beta_2 L_{t-1} + (1-\beta_2)\, G_t G_t^\top, \qquad
        R_t = \beta_2 R_{t-1} + (1-\beta_2)\, G_t^\top G_t \qquad(\beta_2 = 1:\ L_t = L_{t-1} + G_t G_t^\top),\\
        D_t &= (L_t + \epsilon I)^{-1/4}\, G_t\, (R_t + \epsilon I)^{-1/4},\qquad
        m_t = \mu\, m_{t-1} + D_t,\qquad W_{t+1} = W_t - \alpha\, m_t .

    A tensor of order k has one factor per dimension and the power −1/(2k) (the paper's Algorithm 2,
    and pytorch_optimizer's choice: no reshaping to a matrix). The roots are recomputed every
    ``update_freq`` steps (an eigendecomposition per factor, the costly part) and reused in between.
    ε is added to the eigenvalues when the root is taken (:func:`matrix_inverse_root`); with the sum
    (β₂ = 1) that equals the paper's L₀ = εI.

    Arguments that choose between the paper's form, practice and pytorch_optimizer's ``Shampoo``:

    - ``vector_preconditioner``: a 1-D parameter (a bias) gets AdaGrad's diagonal
      (ε + Σ g²)^(-1/2) ⊙ g by default; ``"full"`` keeps the paper's d × d matrix (εI + Σ g gᵀ)^(-1/2),
      as the reference does. A 0-d parameter is not preconditioned (the product over no dimensions),
      as in the reference.
    - ``momentum_form``: ``"heavy_ball"`` (above) accumulates the preconditioned steps, and the
      statistics see the gradient only. ``"reference"`` is pytorch_optimizer's: the gradient is first
      mixed with the previous *step*, g̃_t = (1 − μ) g_t + μ D_(t−1) (D₀ = g₁), then λW is added,
      the statistics are built from g̃_t and W ← W − α D_t with D_t the preconditioned g̃_t.
    - ``root_schedule``: ``"first"`` computes the roots at steps 1, 1 + k, 1 + 2k, ...;
      ``"multiples"`` at steps k, 2k, ... as the reference does, whose roots are 0 until then, so the
      parameters do not move during the first k − 1 steps.
    - ``grafting``: None (Shampoo's own step size), or each tensor's step D_t rescaled to the norm of
      the step of ``"sgd"`` (g), ``"adagrad"`` (g / (√(Σ g²) + ε_g)) or ``"adam"`` (g / (√v̂ + ε_g),
      v̂ the bias-corrected EMA of g² with ``grafting_beta2``, no first moment: momentum comes after);
      the reference has none.

    With ``vector_preconditioner="full"``, ``momentum_form="reference"``, ``root_schedule="multiples"``,
    β₂ = 1 and no grafting the iterates match ``pytorch_optimizer.Shampoo`` (its ``matrix_eps`` = ε,
    ``preconditioning_compute_steps`` = ``update_freq``). It takes its roots by SVD; the eigenvalues
    here are the same numbers. A gradient holding NaN or inf raises
    :class:`~optlib.stability.NonFiniteLossError`: it would poison the statistics for good.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0,
                 epsilon: float = 1e-6, update_freq: int = 1, beta2: float = 1.0, grafting: str | None = None,
                 grafting_beta2: float = 0.999, grafting_eps: float = 1e-8, vector_preconditioner: str = "diagonal",
                 momentum_form: str = "heavy_ball", root_schedule: str = "first"):
        _validate.at_least("lr", lr, 0.0)
        _validate.in_range("momentum", momentum, 0.0, 1.0)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        _validate.positive("epsilon", epsilon)  # the statistics are singular for the first steps
        _validate.positive_int("update_freq", update_freq)
        _validate.in_range("beta2", beta2, 0.0, 1.0, high_inclusive=True)
        if grafting not in GRAFTINGS:
            raise ValueError(f"grafting must be one of {GRAFTINGS}, got {grafting!r}")
        _validate.in_range("grafting_beta2", grafting_beta2, 0.0, 1.0)
        _validate.positive("grafting_eps", grafting_eps)
        _validate.one_of("vector_preconditioner", vector_preconditioner, VECTOR_PRECONDITIONERS)
        _validate.one_of("momentum_form", momentum_form, MOMENTUM_FORMS)
        _validate.one_of("root_schedule", root_schedule, ROOT_SCHEDULES)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, epsilon=epsilon,
                                      update_freq=update_freq, beta2=beta2, grafting=grafting,
                                      grafting_beta2=grafting_beta2, grafting_eps=grafting_eps,
                                      vector_preconditioner=vector_preconditioner, momentum_form=momentum_form,
                                      root_schedule=root_schedule))

    @staticmethod
    def _init_state(param, group) -> dict:
        state = {"step": 0}
        if param.ndim == 1 and group["vector_preconditioner"] == "diagonal":
            state["diag_sum"] = torch.zeros_like(param)
            state["diag_root"] = torch.zeros_like(param)
        else:
            for dim, size in enumerate(param.shape):
                state[f"factor_{dim}"] = param.new_zeros(size, size)
                state[f"root_{dim}"] = param.new_zeros(size, size)  # 0 until first computed
        if group["grafting"] in ("adagrad", "adam"):
            state["graft_sum"] = torch.zeros_like(param)
        if group["momentum_form"] == "reference" or group["momentum"] > 0:
            state["momentum_buffer"] = None
        return state

    @staticmethod
    def _precondition(grad, state, group) -> torch.Tensor:
        """Add g to the statistics, refresh the roots when scheduled, and return the preconditioned g."""
        t, k = state["step"], group["update_freq"]
        refresh = (t - 1) % k == 0 if group["root_schedule"] == "first" else t % k == 0
        beta2, eps = group["beta2"], group["epsilon"]
        if "diag_sum" in state:
            if beta2 == 1.0:
                state["diag_sum"].addcmul_(grad, grad)
            else:
                state["diag_sum"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            if refresh:
                torch.pow(state["diag_sum"] + eps, -0.5, out=state["diag_root"])
            return grad * state["diag_root"]
        order = grad.ndim
        kronecker_factors(grad, [state[f"factor_{d}"] for d in range(order)], beta2)
        if refresh:
            for d in range(order):
                state[f"root_{d}"].copy_(matrix_inverse_root(state[f"factor_{d}"], 2 * order, eps))
        return kronecker_precondition(grad, [state[f"root_{d}"] for d in range(order)])

    @torch.no_grad()
    def step(self, closure=None):
        """One Shampoo step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the
        loss, calling ``backward``, and its loss is returned. Sparse or non-finite gradients are refused.
        """
        loss = closure_loss(closure)
        for group in self.param_groups:
            mu, wd = group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Shampoo does not support sparse gradients")
                if not torch.isfinite(p.grad).all():
                    raise NonFiniteLossError("a gradient holds NaN or inf at Shampoo step "
                                             f"{self.state[p].get('step', 0) + 1}; lower the learning rate")
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p, group))
                state["step"] += 1
                grad = p.grad
                reference = group["momentum_form"] == "reference"
                if reference:
                    previous = state.get("momentum_buffer")
                    if mu > 0:  # D_0 = g_1: the first step is unmixed
                        grad = grad.lerp(grad if previous is None else previous, mu)
                if wd:
                    grad = grad.add(p, alpha=wd)
                direction = self._precondition(grad, state, group)
                if group["grafting"] is not None:
                    direction = graft(direction, _graft_direction(grad, state, group))
                if reference:
                    state["momentum_buffer"] = direction
                elif mu > 0:
                    if state.get("momentum_buffer") is None:
                        state["momentum_buffer"] = direction.clone()
                    else:
                        state["momentum_buffer"].mul_(mu).add_(direction)
                    direction = state["momentum_buffer"]
                p.add_(direction, alpha=-group["lr"])
        return loss
