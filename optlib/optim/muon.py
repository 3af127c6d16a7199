r"""Muon (Jordan et al., 2024): momentum whose update is orthogonalized by a Newton-Schulz iteration.

For a weight matrix with gradient momentum M = U S Vᵀ, Muon steps along U Vᵀ (the polar factor of M,
the nearest semi-orthogonal matrix) instead of M: every singular direction of the update gets the
same length, however unequal the gradient's spectrum. U Vᵀ is computed without an SVD, by a few
matrix products (:func:`newton_schulz`). Muon is for the 2-D weights of hidden layers; biases,
norms, embeddings and the output head go to AdamW (:func:`muon_param_groups`, :class:`MuonWithAdamW`).
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim._closure import closure_loss
from optlib.optim.adaptive import _validate_betas, adam_update

#: Keller Jordan's quintic coefficients (a, b, c): p(σ) = aσ + bσ³ + cσ⁵ with the largest slope a at 0
#: that still keeps the iterated singular values in a band around 1.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
#: The ``adjust_lr`` rules of :class:`Muon`: how the learning rate of a rows x cols matrix is scaled.
ADJUST_LR = ("sqrt_aspect_ratio", "match_rms_adamw", "none")
#: The ``momentum_form`` of :class:`Muon`: an exponential moving average or a plain sum.
MOMENTUM_FORMS = ("ema", "sum")
__all__ = ["ADJUST_LR", "MOMENTUM_FORMS", "NS_COEFFICIENTS", "Muon", "MuonWithAdamW", "lr_scale",
           "momentum_direction", "muon_param_groups", "muon_update", "newton_schulz", "orthogonalize_exact",
           "partition_params"]


def _check_matrix(name: str, G) -> None:
    if not isinstance(G, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(G).__name__}")
    if G.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(G.shape)}")


def _check_coefficients(coefficients) -> tuple[float, float, float]:
    if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
        raise ValueError(f"ns_coefficients must be three numbers (a, b, c), got {coefficients!r}")
    return tuple(_validate._number(f"ns_coefficients[{i}]", v) for i, v in enumerate(coefficients))


def _check_dtype(dtype) -> None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"ns_dtype must be None or a floating-point torch.dtype, got {dtype!r}")


def newton_schulz(G: torch.Tensor, steps: int = 5, coefficients=NS_COEFFICIENTS, eps: float = 1e-7,
                  dtype: torch.dtype | None = None, addmm: bool = True) -> torch.Tensor:
    r"""Approximately orthogonalize a matrix: G = U S Vᵀ is mapped to about U Vᵀ, by matrix products only.

    .. math::
        X_0 = G / (\lVert G\rVert_F + \varepsilon),\qquad
        X_{k+1} = a X_k + (b A_k + c A_k^2) X_k,\quad A_k = X_k X_k^\top .

    Each step maps every singular value σ of X through p(σ) = aσ + bσ³ + cσ⁵ and keeps U and V, so
    the result is U p⁵(S/‖G‖_F) Vᵀ exactly (in exact arithmetic). The Frobenius normalization puts
    every σ in [0, 1]. With the default (quintic) coefficients, five steps send every normalized
    σ above 0.002 into about [0.68, 1.21] (not to 1: Jordan chose a steep slope at 0 over
    convergence); directions below that stay short. With (1.5, -0.5, 0), the classic cubic
    iteration, the iterates converge to U Vᵀ. A matrix with more rows than columns is transposed
    first, so that the Gram matrix A is the small one.

    ``dtype`` runs the iteration in that precision (both references use ``torch.bfloat16``;
    default: G's dtype) and the result is returned in it. ``addmm=True`` evaluates bA + cA² and
    aX + BX with ``torch.addmm`` (one rounding per product and sum, as ``torch.optim.Muon``);
    ``addmm=False`` rounds each product and sum separately (as Keller Jordan's ``muon`` package).
    Both are the same polynomial, but in bfloat16 their outputs differ by up to a few percent of an
    entry; each matches its reference bit for bit. Only 2-D matrices are accepted.
    """
    _check_matrix("G", G)
    _validate.positive_int("steps", steps)
    a, b, c = _check_coefficients(coefficients)
    _validate.at_least("eps", eps, 0.0)
    _check_dtype(dtype)
    X = G.to(dtype if dtype is not None else G.dtype)
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)  # the norm call of both references, for equal bits
    for _ in range(steps):
        A = X @ X.mT
        if addmm:
            B = torch.addmm(A, A, A, beta=b, alpha=c)
            X = torch.addmm(X, B, X, beta=a)
        else:
            B = b * A + c * A @ A
            X = a * X + B @ X
    return X.mT if tall else X


def orthogonalize_exact(G: torch.Tensor) -> torch.Tensor:
    """The polar factor U Vᵀ of G = U S Vᵀ (thin SVD): the semi-orthogonal matrix nearest to G in Frobenius norm.

    What :func:`newton_schulz` approximates; for tests and for the book (an SVD per step is too
    slow for training). A rank-deficient G has no unique polar factor: the SVD picks one.
    """
    _check_matrix("G", G)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def lr_scale(shape, adjust_lr: str = "sqrt_aspect_ratio") -> float:
    """The factor Muon multiplies the learning rate by for a parameter of ``shape`` (rows, cols).

    ``"sqrt_aspect_ratio"``: sqrt(max(1, rows/cols)) (Jordan's ``muon`` package and
    ``torch.optim.Muon``'s ``"original"``). A semi-orthogonal rows x cols matrix has RMS entry
    1/sqrt(max(rows, cols)); the factor makes a tall matrix's update as large, per entry, as that of a
    square one with as many columns.
    ``"match_rms_adamw"``: 0.2 sqrt(max(rows, cols)) (Liu et al., 2025, "Muon is scalable for LLM
    training"; ``torch.optim.Muon``'s ``"match_rms_adamw"``): the update's RMS entry becomes 0.2,
    about that of AdamW's update, so AdamW's learning rate and weight decay can be reused.
    ``"none"``: 1.
    """
    _validate.one_of("adjust_lr", adjust_lr, ADJUST_LR)
    rows, cols = shape[0], shape[1]
    if adjust_lr == "sqrt_aspect_ratio":
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


def momentum_direction(grad: torch.Tensor, buffer: torch.Tensor, *, momentum: float, nesterov: bool,
                       form: str = "ema") -> torch.Tensor:
    r"""Update ``buffer`` in place with ``grad`` and return the direction to orthogonalize; ``grad`` is not changed.

    ``form="ema"``: B ← μB + (1−μ)g, direction (1−μ)g + μB with Nesterov, else B (``lerp``, as both
    references compute it). ``form="sum"``: B ← μB + g, direction g + μB, else B (the form of
    Jordan's post and of ``torch.optim.Muon``'s docstring). The "ema" buffer and direction are
    exactly (1−μ) times the "sum" ones, so after the scale-free orthogonalization the two give the
    same update, except through ε (relative size ε/‖B‖).
    """
    _validate.one_of("momentum_form", form, MOMENTUM_FORMS)
    if form == "ema":
        buffer.lerp_(grad, 1 - momentum)
        return grad.lerp(buffer, momentum) if nesterov else buffer
    buffer.mul_(momentum).add_(grad)
    return grad.add(buffer, alpha=momentum) if nesterov else buffer


def muon_update(param: torch.Tensor, grad: torch.Tensor, buffer: torch.Tensor, *, lr: float, momentum: float,
                nesterov: bool, weight_decay: float, ns_steps: int = 5, ns_coefficients=NS_COEFFICIENTS,
                eps: float = 1e-7, ns_dtype: torch.dtype | None = None, adjust_lr: str = "sqrt_aspect_ratio",
                momentum_form: str = "ema", ns_addmm: bool = True) -> None:
    """One Muon step on the matrix ``param`` in place: momentum, orthogonalization, decoupled decay, shaped step.

    x ← (1 − αλ) x − α s O, with O = :func:`newton_schulz` of :func:`momentum_direction` and
    s = :func:`lr_scale` of x's shape. The decay uses α, not α s (as both references).
    """
    direction = momentum_direction(grad, buffer, momentum=momentum, nesterov=nesterov, form=momentum_form)
    update = newton_schulz(direction, ns_steps, ns_coefficients, eps, ns_dtype, addmm=ns_addmm)
    if weight_decay:
        param.mul_(1 - lr * weight_decay)
    param.add_(update, alpha=-lr * lr_scale(param.shape, adjust_lr))


def _muon_hyper(group: dict) -> dict:
    """Validate a Muon group's hyperparameters; returns them as :func:`muon_update`'s keywords."""
    _validate.at_least("lr", group["lr"], 0.0)
    _validate.in_range("momentum", group["momentum"], 0.0, 1.0)
    if not isinstance(group["nesterov"], bool):
        raise TypeError(f"nesterov must be True or False, got {group['nesterov']!r}")
    _validate.at_least("weight_decay", group["weight_decay"], 0.0)
    _validate.positive_int("ns_steps", group["ns_steps"])
    group["ns_coefficients"] = _check_coefficients(group["ns_coefficients"])
    _validate.at_least("eps", group["eps"], 0.0)
    _check_dtype(group["ns_dtype"])
    _validate.one_of("adjust_lr", group["adjust_lr"], ADJUST_LR)
    _validate.one_of("momentum_form", group["momentum_form"], MOMENTUM_FORMS)
    if not isinstance(group["ns_addmm"], bool):
        raise TypeError(f"ns_addmm must be True or False, got {group['ns_addmm']!r}")
    return {k: group[k] for k in _MUON_DEFAULTS}


def _check_muon_params(params) -> None:
    for p in params:
        if p.ndim != 2:
            raise ValueError(f"Muon only updates 2-D weight matrices, got a parameter of shape {tuple(p.shape)}; "
                             "give biases, norms and other non-matrix parameters to AdamW "
                             "(optlib.optim.muon.muon_param_groups and MuonWithAdamW do the routing)")
        if p.is_complex():
            raise ValueError("Muon does not support complex parameters")


#: Muon's hyperparameters and their defaults (those of Jordan's ``muon`` package where it has them).
_MUON_DEFAULTS = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, ns_steps=5,
                      ns_coefficients=NS_COEFFICIENTS, eps=1e-7, ns_dtype=None, adjust_lr="sqrt_aspect_ratio",
                      momentum_form="ema", ns_addmm=True)


def _muon_step(optimizer: Optimizer, group: dict) -> None:
    hyper = {k: group[k] for k in _MUON_DEFAULTS}
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{type(optimizer).__name__} does not support sparse gradients")
        state = optimizer.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        muon_update(p, p.grad, state["momentum_buffer"], **hyper)


class Muon(Optimizer):
    r"""Muon (Jordan et al., 2024): MomentUm Orthogonalized by Newton-Schulz, for 2-D weight matrices.

    .. math::
        B_t &= \mu B_{t-1} + (1-\mu)\, G_t, \qquad
        D_t = (1-\mu)\, G_t + \mu B_t \ \text{(Nesterov)}\ \text{or}\ B_t,\\
        O_t &= \mathrm{NS}_k(D_t) \approx U V^\top \ \text{for}\ D_t = U S V^\top,\\
        X_t &= (1 - \alpha\lambda)\, X_{t-1} - \alpha\, s(\text{shape})\, O_t .

    O is :func:`newton_schulz` (k = ``ns_steps`` quintic steps, ε = ``eps``, in ``ns_dtype``,
    default the parameter's dtype), s is :func:`lr_scale` (``adjust_lr``), and λ is decoupled
    weight decay. Where SGD's step along M = U S Vᵀ is dominated by a few large singular
    directions, Muon's step has every singular value about 1: rare directions move as far as
    common ones, and the step has spectral norm about α s whatever the gradient's scale.

    Choices, each an argument so that either reference is reproduced exactly:

    - ``momentum_form``: ``"ema"`` (above; the code of both references) or ``"sum"``
      (B ← μB + G, D = G + μB: Jordan's post and ``torch.optim.Muon``'s docstring, whose code is
      "ema"). D differs only by the factor 1−μ, which the orthogonalization removes: the iterates
      agree except through ε.
    - ``adjust_lr``: ``"sqrt_aspect_ratio"`` (Jordan's package; torch's ``"original"``),
      ``"match_rms_adamw"`` (Moonshot's 0.2 sqrt(max(rows, cols)); torch's name) or ``"none"``.
    - ``ns_dtype=torch.bfloat16`` runs the iteration in bfloat16 as both references always do;
      ``ns_addmm`` picks torch's fused polynomial (True) or the package's (False), see
      :func:`newton_schulz`. With these, iterates equal ``torch.optim.Muon``'s bit for bit, and those
      of ``muon.SingleDeviceMuon`` for every matrix with no more rows than columns (on a tall one
      the package rounds s·O to bfloat16 before the step).

    Differences from the references: ε is added to ‖D‖_F as in Jordan's package (torch divides by
    max(‖D‖_F, ε): a relative difference ε/‖D‖, invisible in bfloat16); the gradient is not
    modified (the package's Nesterov ``grad.lerp_`` overwrites ``p.grad`` with D); parameters
    without a gradient are skipped (the package fails on them); defaults are the package's
    (α = 0.02, λ = 0; torch: 1e-3 and 0.1). Gradients are not checked for NaN or inf (as the other
    optlib optimizers); one non-finite entry makes the whole update NaN through the normalization.
    A parameter that is not 2-D is refused: route it to AdamW (:class:`MuonWithAdamW`). (The package
    0.1.0 flattens a 4-D convolution filter to (out, in·kh·kw), takes the shape scale from kh/kw, and
    then fails to add the flat update to the 4-D parameter; to train a filter with Muon, make the
    parameter a 2-D matrix and reshape it in the forward pass.)
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, ns_coefficients=NS_COEFFICIENTS, eps: float = 1e-7,
                 ns_dtype: torch.dtype | None = None, adjust_lr: str = "sqrt_aspect_ratio",
                 momentum_form: str = "ema", ns_addmm: bool = True):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
                        ns_coefficients=ns_coefficients, eps=eps, ns_dtype=ns_dtype, adjust_lr=adjust_lr,
                        momentum_form=momentum_form, ns_addmm=ns_addmm)
        _muon_hyper(dict(defaults))
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (as ``torch.optim.Optimizer``), refusing parameters that are not 2-D and invalid settings."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _check_muon_params(group["params"])
            _muon_hyper(group)
        except (ValueError, TypeError):
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the loss,
        calling ``backward``, and its loss is returned. Sparse gradients are refused.
        """
        loss = closure_loss(closure)
        for group in self.param_groups:
            _muon_step(self, group)
        return loss


def partition_params(named_params, exclude=None) -> tuple[list, list]:
    """Split ``(name, parameter)`` pairs (or a module's) into (Muon's parameters, AdamW's parameters).

    A parameter goes to Muon when it is 2-D and ``exclude(name, parameter)`` is false; everything
    else (biases, norm gains, and the 2-D matrices the caller excludes: in Jordan's recipe the input
    embedding and the output head, whose rows are not hidden features) goes to AdamW. Order is kept.
    """
    if isinstance(named_params, torch.nn.Module):
        named_params = named_params.named_parameters()
    if exclude is not None and not callable(exclude):
        raise TypeError(f"exclude must be a function (name, parameter) -> bool, got {exclude!r}")
    muon, adamw = [], []
    for name, p in named_params:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"expected (name, tensor) pairs, got ({name!r}, {type(p).__name__})")
        to_muon = p.ndim == 2 and not (exclude is not None and exclude(name, p))
        (muon if to_muon else adamw).append(p)
    return muon, adamw


def muon_param_groups(model_or_named_params, exclude=None, muon: dict | None = None,
                      adamw: dict | None = None) -> list[dict]:
    """Parameter groups for :class:`MuonWithAdamW`: :func:`partition_params`, tagged ``use_muon`` True / False.

    ``muon`` and ``adamw`` are the two groups' hyperparameters (e.g. ``muon=dict(lr=0.02)``,
    ``adamw=dict(lr=3e-4, weight_decay=0.01)``). A group with no parameters is left out.
    """
    hidden, rest = partition_params(model_or_named_params, exclude)
    groups = [dict(params=hidden, use_muon=True, **(muon or {})), dict(params=rest, use_muon=False, **(adamw or {}))]
    return [g for g in groups if g["params"]]


#: AdamW's hyperparameters in :class:`MuonWithAdamW` and their defaults (those of Jordan's package).
_ADAMW_DEFAULTS = dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0)


class MuonWithAdamW(Optimizer):
    r"""One optimizer for a whole network: Muon on the groups with ``use_muon=True``, AdamW on the others.

    .. math::
        \text{Muon groups:}\quad X &\leftarrow (1-\alpha\lambda)\, X - \alpha\, s\, \mathrm{NS}(D_t)
        \quad(\text{as}\ \mathrm{Muon}),\\
        \text{AdamW groups:}\quad x &\leftarrow (1-\alpha\lambda)\, x
        - \alpha\, \hat m_t / (\sqrt{\hat v_t} + \varepsilon).

    Every group must say ``use_muon``; a Muon group takes :class:`Muon`'s keywords (``eps`` is
    the Newton-Schulz ε there), an AdamW group takes ``lr``, ``betas``, ``eps`` and
    ``weight_decay``, with the defaults of Jordan's ``SingleDeviceMuonWithAuxAdam``
    (3e-4, (0.9, 0.95), 1e-10, 0; not optlib AdamW's). The AdamW step is
    :func:`optlib.optim.adaptive.adam_update` (decoupled, bias-corrected): the same iterates as
    :class:`optlib.optim.adaptive.AdamW`. Build the groups with :func:`muon_param_groups`. A training
    loop, a learning-rate scheduler and ``state_dict`` then see one optimizer.
    """

    def __init__(self, param_groups):
        if isinstance(param_groups, dict):
            param_groups = [param_groups]
        param_groups = list(param_groups)
        if not param_groups or not all(isinstance(g, dict) for g in param_groups):
            raise TypeError("MuonWithAdamW takes a list of parameter groups (dicts with 'params' and 'use_muon'); "
                            "optlib.optim.muon.muon_param_groups builds them")
        super().__init__(param_groups, {})

    def add_param_group(self, param_group: dict) -> None:
        """Add a group with ``use_muon`` True (Muon's keywords) or False (AdamW's), filling in the defaults."""
        if not isinstance(param_group, dict) or not isinstance(param_group.get("use_muon"), bool):
            raise ValueError("every group of MuonWithAdamW needs use_muon=True (2-D hidden weights) "
                             "or use_muon=False (everything else)")
        group = dict(param_group)
        defaults = _MUON_DEFAULTS if group["use_muon"] else _ADAMW_DEFAULTS
        unknown = set(group) - set(defaults) - {"params", "use_muon"}
        if unknown:
            kind = "Muon" if group["use_muon"] else "AdamW"
            raise ValueError(f"unknown keys {sorted(unknown)} for a {kind} group; it takes {sorted(defaults)}")
        for key, value in defaults.items():
            group.setdefault(key, value)
        super().add_param_group(group)
        group = self.param_groups[-1]
        try:
            if group["use_muon"]:
                _check_muon_params(group["params"])
                _muon_hyper(group)
            else:
                _validate.at_least("lr", group["lr"], 0.0)
                group["betas"] = _validate_betas(group["betas"])
                _validate.at_least("eps", group["eps"], 0.0)
                _validate.at_least("weight_decay", group["weight_decay"], 0.0)
        except (ValueError, TypeError):
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter that has a gradient, Muon or AdamW by its group; returns the closure's loss."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            if group["use_muon"]:
                _muon_step(self, group)
                continue
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("MuonWithAdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                                 exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
                state["step"] += 1
                adam_update(p, p.grad, state["exp_avg"], state["exp_avg_sq"], step=state["step"], lr=group["lr"],
                            beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                            decoupled=True, bias_correction=True)
        return loss
