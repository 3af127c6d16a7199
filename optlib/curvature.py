r"""Curvature without the matrix: Hessian- and Gauss-Newton-vector products and what they buy.

A network with P parameters has a P × P Hessian H that cannot even be stored for P = 10⁶, but the
product Hv costs a few gradient evaluations, whatever P is (Pearlmutter, 1994). Everything in this
module needs only such products, a *matvec* v ↦ Av:

- Hessian-vector products of a function of a vector (:func:`hvp`, :func:`hvp_forward_over_reverse`)
  and of a model's loss in its parameters (:func:`model_hvp`, :func:`hessian_matvec`);
- Gauss-Newton-vector products Gv = Jᵀ H_L J v (:func:`ggn_vp`, :func:`ggn_matvec`);
- linear systems Ax = b by conjugate gradients (:func:`conjugate_gradient`), which also reports
  negative curvature, as Hessian-free and trust-region methods need;
- extreme eigenvalues (:func:`power_iteration`, :func:`lanczos`, :func:`top_eigenvalues`);
- traces (:func:`hutchinson_trace`, :func:`hutch_plus_plus`) and the whole spectral density by
  stochastic Lanczos quadrature (:func:`spectral_density`).

A ``matvec`` argument is either a callable mapping a 1-D tensor of length ``dim`` to one of the
same shape, or a square matrix (a tensor), which is then multiplied. The operator is assumed
symmetric (a Hessian, a Gauss-Newton matrix). Functions that draw random vectors take an explicit
``torch.Generator`` (never the global random state); the vectors are drawn on the generator's
device and moved to ``device``. They work in ``dtype``: by default the matrix's dtype and device,
or for a callable ``torch.get_default_dtype()`` on the CPU (pass ``dtype=torch.float64`` for a
float64 model). Model parameters are flattened in the order of ``model.parameters()``, as
:func:`optlib.landscape.flatten_params` does, and left untouched; results are detached tensors.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from optlib import _validate
from optlib.preconditioning import flat_loss

__all__ = ["HVP_METHODS", "hvp", "hvp_forward_over_reverse", "hessian_matvec", "model_hvp", "ggn_matvec", "ggn_vp",
           "CGResult", "conjugate_gradient", "jacobi_preconditioner", "EigenResult", "power_iteration", "lanczos",
           "top_eigenvalues", "TraceEstimate", "hutchinson_trace", "hutch_plus_plus", "SpectralDensity",
           "spectral_density"]

#: The ``method`` of :func:`model_hvp` and :func:`hessian_matvec`: double backpropagation, or a
#: forward-mode derivative (``torch.func.jvp``) of the reverse-mode gradient.
HVP_METHODS = ("reverse", "forward_over_reverse")

_WHICH = ("largest", "smallest", "magnitude")
_DISTRIBUTIONS = ("rademacher", "gaussian")

#: A symmetric linear operator as a function: v ↦ Av for 1-D tensors v.
Matvec = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------ argument checks

def _point(name: str, x) -> torch.Tensor:
    """A detached, non-empty, floating-point 1-D tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.ndim != 1 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x.detach()


def _direction(name: str, v, like: torch.Tensor) -> torch.Tensor:
    """``v`` checked to have the shape, dtype and device of ``like``; detached."""
    v = _point(name, v)
    if v.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(v.shape)}")
    if v.dtype != like.dtype or v.device != like.device:
        raise ValueError(f"{name} must have dtype {like.dtype} on {like.device}, got {v.dtype} on {v.device}")
    return v


def _finite(name: str, v: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return v


def _scalar_value(value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        raise ValueError(f"the function must return a scalar tensor, got {getattr(value, 'shape', type(value))}")
    return value


def _data(data) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"data must be a pair (X, y), got {type(data).__name__}"
                         + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
    return data[0], data[1]


def _generator(generator) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator (the global random state is never used), "
                        f"got {type(generator).__name__}")
    return generator


def _operator(matvec, dim: int) -> Matvec:
    """``matvec`` as a checked callable: output of shape (dim,), finite, detached."""
    if isinstance(matvec, torch.Tensor):
        if matvec.ndim != 2 or matvec.shape[0] != matvec.shape[1]:
            raise ValueError(f"the matrix must be square, got shape {tuple(matvec.shape)}")
        if matvec.shape[0] != dim:
            raise ValueError(f"the matrix is {matvec.shape[0]} × {matvec.shape[1]} but the vectors have length {dim}")
        matrix = matvec.detach()
        apply = matrix.__matmul__
    elif callable(matvec):
        apply = matvec
    else:
        raise TypeError(f"matvec must be a callable or a square matrix, got {type(matvec).__name__}")

    def checked(v: torch.Tensor) -> torch.Tensor:
        out = apply(v)
        if not isinstance(out, torch.Tensor) or out.shape != v.shape:
            raise ValueError(f"matvec must map a vector of shape ({dim},) to one of the same shape, "
                             f"got {getattr(out, 'shape', type(out))}")
        return _finite("the output of matvec", out.detach())

    return checked


def _space(matvec, dim, dtype, device) -> tuple[int, torch.dtype, torch.device]:
    """(dim, dtype, device) of the vectors: the matrix's by default, else the default dtype on the CPU."""
    dim = _validate.positive_int("dim", dim)
    if isinstance(matvec, torch.Tensor):
        other_device = device is not None and torch.device(device) != matvec.device
        if (dtype is not None and dtype != matvec.dtype) or other_device:
            raise ValueError(f"the matrix has dtype {matvec.dtype} on {matvec.device}: leave dtype and device out, "
                             f"or pass those, got {dtype} on {device}")
        dtype, device = matvec.dtype, matvec.device
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    return dim, dtype, torch.device("cpu" if device is None else device)


def _rademacher(shape, generator, dtype, device) -> torch.Tensor:
    """Independent ±1 entries, each with probability 1/2."""
    signs = torch.randint(0, 2, shape, generator=generator, device=generator.device)
    return (2 * signs - 1).to(dtype=dtype, device=device)


def _gaussian(shape, generator, dtype, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype, device=generator.device).to(device)


# ------------------------------------------------------------------ Hessian-vector products

def hvp(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""The Hessian-vector product ∇²f(x) v of a scalar function of a vector, by double backpropagation.

    .. math::
        \nabla^2 f(x)\, v = \nabla_x \big( \nabla f(x)^\top v \big)

    since v does not depend on x: one backward pass builds the gradient g(x) with its own graph
    (``create_graph=True``), a second one differentiates the scalar g(x)ᵀv (reverse over reverse).
    It costs a small constant number of gradient evaluations and never forms the d × d matrix.
    ``x`` and ``v`` are 1-D tensors of the same shape and dtype; neither is modified.
    """
    x = _point("x", x)
    v = _direction("v", v, x)
    with torch.enable_grad():
        leaf = x.clone().requires_grad_(True)
        value = _scalar_value(f(leaf))
        (g,) = torch.autograd.grad(value, leaf, create_graph=True, materialize_grads=True)
        if not g.requires_grad:  # f is affine in x: its Hessian is zero
            return torch.zeros_like(x)
        (hv,) = torch.autograd.grad(g, leaf, grad_outputs=v, materialize_grads=True)
    return hv.detach()


def _jvp(func, primals: tuple, tangents: tuple):
    """``torch.func.jvp``, quiet about the one-time DeprecationWarning of torch 2.13's first use.

    Forward-mode AD loads its decompositions on first use through ``torch.jit.script``, which warns
    that it is deprecated: a warning about torch's internals that a reader can do nothing about.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
        return torch.func.jvp(func, primals, tangents)


#: The message of PyTorch's forward-mode bug in ``F.mse_loss`` (pytorch/pytorch#123996).
_ZERO_TENSOR_BUG = "ZeroTensors are immutable"


def hvp_forward_over_reverse(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                             v: torch.Tensor) -> torch.Tensor:
    r"""∇²f(x) v as the directional derivative of the gradient: forward mode over reverse mode.

    .. math::
        \nabla^2 f(x)\, v = \frac{d}{dt}\, \nabla f(x + t v) \Big|_{t=0}

    ``torch.func.jvp`` pushes the tangent v through ``torch.func.grad(f)``: one forward-mode pass
    over the backward pass, which needs no second backward pass and no stored graph of the gradient.
    PyTorch 2.13 fails here when ``f`` calls ``F.mse_loss`` with ``reduction="mean"`` on a target
    that is not differentiated (pytorch/pytorch#123996, open); the error then says so.
    :func:`hessian_matvec` works around it for a model's loss.
    """
    x = _point("x", x)
    v = _direction("v", v, x)
    try:
        _, hv = _jvp(torch.func.grad(lambda t: _scalar_value(f(t))), (x,), (v,))
    except RuntimeError as error:
        if _ZERO_TENSOR_BUG not in str(error):
            raise
        raise RuntimeError("forward-over-reverse hit PyTorch's bug in F.mse_loss(reduction='mean') "
                           "(pytorch/pytorch#123996): use hvp (double backpropagation), or write the mean "
                           "squared error out as ((z - y) ** 2).mean()") from error
    return hv.detach()


def _model_functions(model: nn.Module, data):
    """(outputs_of, θ, y): the model's outputs z = f(X; θ) as a function of the flat parameters θ."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    X, y = _data(data)
    # flat_loss with the identity as its "loss" gives the outputs as a function of θ
    outputs_of, theta = flat_loss(model, lambda outputs, _labels: outputs, X, y)
    return outputs_of, theta, y


def _jvp_of_gradient(loss_of: Callable, primal: torch.Tensor, tangent: torch.Tensor, labels) -> torch.Tensor:
    """d/dt ∇ₚ loss_of(p + t·tangent, labels) at p = ``primal``: forward over reverse in the first argument.

    Floating-point labels (regression targets) enter as a second primal with an explicit zero
    tangent: with none, PyTorch's forward-mode formula of ``F.mse_loss(reduction="mean")`` gets an
    immutable zero tensor and fails (pytorch/pytorch#123996). The result is the same.
    """
    gradient = torch.func.grad(lambda p, y: _scalar_value(loss_of(p, y)))
    if isinstance(labels, torch.Tensor) and labels.is_floating_point():
        _, out = _jvp(gradient, (primal, labels), (tangent, torch.zeros_like(labels)))
    else:
        _, out = _jvp(lambda p: gradient(p, labels), (primal,), (tangent,))
    return out.detach()


def hessian_matvec(model: nn.Module, loss_fn: Callable, data, method: str = "reverse") -> Matvec:
    r"""The map v ↦ ∇²L(θ) v for L(θ) = ``loss_fn(model(X), y)`` at the model's current parameters θ.

    ``data`` is the pair (X, y); v and the result are flat vectors over all parameters in the order
    of ``model.parameters()``, in the model's dtype. With ``method="reverse"`` the gradient and its
    graph are built once, here, and each product is one more backward pass through it (what an
    iterative method that needs many products wants); ``"forward_over_reverse"`` computes each
    product afresh, ``torch.func.jvp`` of ``torch.func.grad``. The model is evaluated with
    ``torch.func.functional_call``: its parameters and their ``.grad`` are left as they were. Put
    a model with dropout or batch normalization in ``eval()`` mode first.
    """
    _validate.one_of("method", method, HVP_METHODS)
    outputs_of, theta, y = _model_functions(model, data)
    loss_of = lambda t, labels: loss_fn(outputs_of(t), labels)
    if method == "forward_over_reverse":
        return lambda vec: _jvp_of_gradient(loss_of, theta, _direction("vec", vec, theta), y)
    with torch.enable_grad():
        leaf = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_scalar_value(loss_of(leaf, y)), leaf, create_graph=True, materialize_grads=True)

    def matvec(vec: torch.Tensor) -> torch.Tensor:
        vec = _direction("vec", vec, theta)
        if not g.requires_grad:  # the loss is affine in θ
            return torch.zeros_like(theta)
        (hv,) = torch.autograd.grad(g, leaf, grad_outputs=vec, retain_graph=True, materialize_grads=True)
        return hv.detach()

    return matvec


def model_hvp(model: nn.Module, loss_fn: Callable, data, vec: torch.Tensor, method: str = "reverse") -> torch.Tensor:
    r"""One Hessian-vector product ∇²L(θ) v of a model's loss L(θ) = ``loss_fn(model(X), y)``, ``data`` = (X, y).

    ``vec`` is a flat vector over the parameters (order of ``model.parameters()``, dtype of the
    model); ``method`` is ``"reverse"`` (double backpropagation) or ``"forward_over_reverse"``.
    For many products at the same θ, build the map once with :func:`hessian_matvec`.
    """
    return hessian_matvec(model, loss_fn, data, method)(vec)


def ggn_matvec(model: nn.Module, loss_fn: Callable, data) -> Matvec:
    r"""The map v ↦ G v, G = Jᵀ H_L J the generalized Gauss-Newton matrix of ``loss_fn(model(X), y)``.

    J = ∂z/∂θ is the Jacobian of the model's outputs z = f(X; θ) in the parameters and
    H_L = ∂²ℓ(z, y)/∂z² the Hessian of the loss in the outputs. The Hessian of the loss is

    .. math::
        \nabla^2 L(\theta) = J^\top H_L J + \sum_k \frac{\partial \ell}{\partial z_k} \nabla^2 z_k(\theta),

    and G keeps the first term: it drops the model's own curvature, so it is positive
    semi-definite whenever the loss is convex in the outputs (cross-entropy, mean squared
    error), and equals the Hessian for a model linear in θ. Each product is three passes, none of
    which forms a matrix: u = Jv (``torch.func.jvp`` of the outputs), w = H_L u (forward over
    reverse on the loss in the outputs) and Jᵀw (``torch.func.vjp``, linearized once, here).
    Same conventions as :func:`hessian_matvec`; the loss's reduction (mean or sum) carries over.
    """
    outputs_of, theta, y = _model_functions(model, data)
    outputs, pullback = torch.func.vjp(outputs_of, theta)
    outputs = outputs.detach()

    def matvec(vec: torch.Tensor) -> torch.Tensor:
        vec = _direction("vec", vec, theta)
        _, Jv = _jvp(outputs_of, (theta,), (vec,))
        HJv = _jvp_of_gradient(loss_fn, outputs, Jv, y)
        (JtHJv,) = pullback(HJv)
        return JtHJv.detach()

    return matvec


def ggn_vp(model: nn.Module, loss_fn: Callable, data, vec: torch.Tensor) -> torch.Tensor:
    r"""One Gauss-Newton-vector product Jᵀ H_L J v of ``loss_fn(model(X), y)``, ``data`` = (X, y).

    See :func:`ggn_matvec`, which builds the map once for many products.
    """
    return ggn_matvec(model, loss_fn, data)(vec)


# ------------------------------------------------------------------ conjugate gradients

@dataclass
class CGResult:
    """The outcome of :func:`conjugate_gradient`.

    ``x`` is the last iterate; ``residual_norms`` holds ‖r_k‖ = ‖b − A x_k‖ (by the recurrence) for
    k = 0, …, ``iterations``, and ``b_norm`` is ‖b‖; ``reason`` is ``"converged"``, ``"negative_curvature"``,
    ``"stopped"`` (the ``stop`` callback said so) or ``"max_iter"``. ``direction`` is the last
    search direction p (the one along which pᵀAp ≤ 0 when ``negative_curvature``), ``curvature``
    its pᵀAp, and ``step_size`` the α of the last step taken (x = x_prev + α p), so a trust-region
    method can go back to the previous iterate or on to the boundary along p.
    """

    x: torch.Tensor
    iterations: int
    residual_norms: list[float]
    converged: bool
    negative_curvature: bool
    reason: str
    b_norm: float
    direction: torch.Tensor | None = None
    curvature: float | None = None
    step_size: float | None = None

    @property
    def relative_residual(self) -> float:
        """‖r‖/‖b‖ at the last iterate (0 for b = 0)."""
        return self.residual_norms[-1] / self.b_norm if self.b_norm > 0 else 0.0


def jacobi_preconditioner(diagonal: torch.Tensor) -> Matvec:
    r"""The Jacobi preconditioner r ↦ M⁻¹r = r / diag(A), for :func:`conjugate_gradient`.

    ``diagonal`` holds diag(A), every entry finite and > 0. Rescaling by the diagonal removes the
    part of the ill-conditioning that comes from badly scaled coordinates: for A = D^½ C D^½ with
    D = diag(A) the preconditioned matrix has the spectrum of C.
    """
    diagonal = _finite("diagonal", _point("diagonal", diagonal))
    if not (diagonal > 0).all():
        raise ValueError(f"the diagonal must be > 0 everywhere, got a minimum of {diagonal.min().item()}")
    return lambda r: r / diagonal


def _cg_inputs(matvec, b, x0, tol, max_iter, preconditioner, stop):
    b = _finite("b", _point("b", b))
    apply = _operator(matvec, len(b))
    if isinstance(matvec, torch.Tensor) and (matvec.dtype != b.dtype or matvec.device != b.device):
        raise ValueError(f"the matrix has dtype {matvec.dtype} on {matvec.device}, b {b.dtype} on {b.device}")
    tol = _validate.positive("tol", tol)
    max_iter = 10 * len(b) if max_iter is None else _validate.positive_int("max_iter", max_iter)
    if x0 is not None:
        x0 = _finite("x0", _direction("x0", x0, b))
    for name, fn in (("preconditioner", preconditioner), ("stop", stop)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
    return apply, b, x0, tol, max_iter


def _preconditioned(preconditioner: Matvec | None, r: torch.Tensor) -> torch.Tensor:
    """z = M⁻¹r, checked (M = I without a preconditioner)."""
    if preconditioner is None:
        return r
    z = preconditioner(r)
    if not isinstance(z, torch.Tensor) or z.shape != r.shape:
        raise ValueError(f"the preconditioner must return a vector of shape {tuple(r.shape)}, "
                         f"got {getattr(z, 'shape', type(z))}")
    return _finite("the preconditioner's output", z.detach())


def conjugate_gradient(matvec, b: torch.Tensor, *, x0: torch.Tensor | None = None, tol: float = 1e-10,
                       max_iter: int | None = None, preconditioner: Matvec | None = None,
                       stop: Callable[[torch.Tensor, torch.Tensor, int], bool] | None = None) -> CGResult:
    r"""Solve A x = b for a symmetric positive definite A by (preconditioned) conjugate gradients.

    With r_0 = b − A x_0, z_0 = M⁻¹ r_0, p_0 = z_0 and, for k = 0, 1, …

    .. math::
        \alpha_k = \frac{r_k^\top z_k}{p_k^\top A p_k}, \quad x_{k+1} = x_k + \alpha_k p_k, \quad
        r_{k+1} = r_k - \alpha_k A p_k, \\
        z_{k+1} = M^{-1} r_{k+1}, \quad \beta_k = \frac{r_{k+1}^\top z_{k+1}}{r_k^\top z_k}, \quad
        p_{k+1} = z_{k+1} + \beta_k p_k.

    Each iteration costs one product A p (``matvec``: a callable or a square matrix) and one
    application of M⁻¹ (``preconditioner``, a callable r ↦ M⁻¹r, e.g. :func:`jacobi_preconditioner`;
    none means M = I). x_k minimizes the quadratic ½xᵀAx − bᵀx over x_0 plus the Krylov space of
    the first k residuals, so in exact arithmetic CG ends in at most d iterations, and its error
    in the A-norm shrinks at least like 2((√κ − 1)/(√κ + 1))^k: about ½√κ ln(2/ε) iterations
    where gradient descent needs about κ ln(1/ε).

    Stops when ‖r_k‖ ≤ ``tol``·‖b‖ (``converged``, ``tol`` a relative residual); when
    p_kᵀAp_k ≤ 0 (``negative_curvature``: A is not positive definite; the last iterate and the
    direction p_k are returned, as truncated-Newton and trust-region methods want); when
    ``stop(x, r, k)`` returns True after an update (e.g. the Hessian-free test on the decrease of
    the quadratic, which is −½ xᵀ(r + b) at x); or after ``max_iter`` iterations (default 10 d).
    x_0 = ``x0``, default 0 (b = 0 returns x = 0). Raises ValueError for non-square or mismatched shapes, ``tol`` ≤ 0,
    non-finite entries, or a preconditioner that is not positive definite.
    """
    apply, b, x0, tol, max_iter = _cg_inputs(matvec, b, x0, tol, max_iter, preconditioner, stop)
    b_norm = torch.linalg.vector_norm(b).item()
    if b_norm == 0:
        return CGResult(torch.zeros_like(b), 0, [0.0], True, False, "converged", 0.0)

    precondition = lambda r: _preconditioned(preconditioner, r)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b.clone() if x0 is None else b - apply(x)
    history = [torch.linalg.vector_norm(r).item()]
    threshold = tol * b_norm

    def result(k, reason, p=None, curvature=None, alpha=None):
        return CGResult(x, k, history, reason == "converged", reason == "negative_curvature", reason, b_norm,
                        p, curvature, alpha)

    if history[0] <= threshold:
        return result(0, "converged")
    z = precondition(r)
    rz = torch.dot(r, z).item()
    p = z.clone()
    for k in range(max_iter):
        if not rz > 0:
            raise ValueError(f"the preconditioner is not positive definite: rᵀM⁻¹r = {rz:.3g} at iteration {k}")
        Ap = apply(p)
        curvature = torch.dot(p, Ap).item()
        if curvature <= 0:
            return result(k, "negative_curvature", p, curvature)
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        history.append(torch.linalg.vector_norm(r).item())
        if history[-1] <= threshold:
            return result(k + 1, "converged", p, curvature, alpha)
        if stop is not None and stop(x, r, k + 1):
            return result(k + 1, "stopped", p, curvature, alpha)
        z = precondition(r)
        rz_next = torch.dot(r, z).item()
        p = z + (rz_next / rz) * p
        rz = rz_next
    return result(max_iter, "max_iter", p, curvature, alpha)


# ------------------------------------------------------------------ eigenvalues

@dataclass
class EigenResult:
    """Eigenvalue estimates of :func:`power_iteration` and :func:`lanczos`.

    ``values`` (k,) and ``vectors`` (dim, k), unit columns, ordered as the function says;
    ``residual_norms`` (k,) holds ‖A u − λ u‖ for each pair (for Lanczos the Ritz estimate
    β_m|s_{m,i}|, exact in exact arithmetic); ``matvecs`` counts the products with A; ``converged``
    says whether every pair met the tolerance.
    """

    values: torch.Tensor
    vectors: torch.Tensor
    residual_norms: torch.Tensor
    matvecs: int
    converged: bool


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v)


def _orthogonalize(v: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """v minus its projection on the orthonormal columns of ``basis``, done twice ("twice is enough")."""
    if basis is None or basis.shape[1] == 0:
        return v
    for _ in range(2):
        v = v - basis @ (basis.T @ v)
    return v


def power_iteration(matvec, dim: int, k: int = 1, *, iters: int = 1000, tol: float = 1e-8,
                    generator: torch.Generator, dtype: torch.dtype | None = None, device=None) -> EigenResult:
    r"""The k eigenvalues of largest magnitude of a symmetric A, by power iteration with deflation.

    .. math::
        v \leftarrow \frac{A v}{\lVert A v \rVert}, \qquad \lambda = v^\top A v

    The iterate turns towards the eigenvector of the eigenvalue λ₁ of largest magnitude by the factor
    ``|λ₂/λ₁|`` per product, the Rayleigh quotient λ converges twice as fast. Once (λ₁, u₁) is found,
    the iteration runs on the deflated matrix A − λ₁u₁u₁ᵀ (Hotelling), whose largest-magnitude
    eigenvalue is λ₂, and so on; the iterate is also kept orthogonal to the vectors found.
    Each pair stops when ‖Av − λv‖ ≤ ``tol``·``|λ|`` or after ``iters`` products; the start vectors are
    Gaussian, drawn with ``generator``. Values are returned by decreasing magnitude. A
    pair ±λ of equal magnitude stalls it (reported as not converged): use :func:`lanczos`.
    """
    dim, dtype, device = _space(matvec, dim, dtype, device)
    apply = _operator(matvec, dim)
    k = _validate.positive_int("k", k)
    if k > dim:
        raise ValueError(f"k must be at most dim = {dim}, got {k}")
    iters = _validate.positive_int("iters", iters)
    tol = _validate.positive("tol", tol)
    generator = _generator(generator)
    values, vectors, residuals, matvecs, converged = [], [], [], 0, True
    for _ in range(k):
        basis = torch.stack(vectors, 1) if vectors else None
        start = _gaussian((dim,), generator, dtype, device)
        value, vector, residual, used, done = _power_pair(apply, start, basis, values, iters, tol)
        values.append(value)
        vectors.append(vector)
        residuals.append(residual)
        matvecs += used
        converged = converged and done
    return EigenResult(torch.tensor(values, dtype=dtype, device=device), torch.stack(vectors, 1),
                       torch.tensor(residuals, dtype=dtype, device=device), matvecs, converged)


def _power_pair(apply: Matvec, start: torch.Tensor, basis: torch.Tensor | None, found: list[float], iters: int,
                tol: float) -> tuple[float, torch.Tensor, float, int, bool]:
    """One eigenpair by power iteration on A − U diag(``found``) Uᵀ, U = ``basis`` (Hotelling's deflation).

    Returns (λ, v, ‖Av − λv‖, products used, converged); the iterate is kept orthogonal to U.
    """
    eigenvalues = torch.tensor(found, dtype=start.dtype, device=start.device)
    v = _unit(_orthogonalize(start, basis))
    for used in range(1, iters + 1):
        w = apply(v)
        if basis is not None:  # deflation, then orthogonality against round-off
            w = _orthogonalize(w - basis @ (eigenvalues * (basis.T @ v)), basis)
        value = torch.dot(v, w).item()
        residual = torch.linalg.vector_norm(w - value * v).item()
        w_norm = torch.linalg.vector_norm(w).item()
        if w_norm == 0:  # v is in the null space: an exact eigenpair (0, v)
            return 0.0, v, 0.0, used, True
        if residual <= tol * abs(value):
            return value, v, residual, used, True
        v = w / w_norm
    return value, v, residual, iters, False


def _lanczos_recurrence(apply: Matvec, start: torch.Tensor, steps: int, *, reorthogonalize: bool,
                        restart: Callable[[], torch.Tensor] | None = None,
                        done: Callable[[list, list, float], bool] | None = None):
    r"""``steps`` steps of the Lanczos recurrence from ``start``.

    β_{j+1} q_{j+1} = A q_j − α_j q_j − β_j q_{j−1} with α_j = q_jᵀAq_j. Returns (alphas (m,),
    betas (m − 1,), the final β_m, the basis Q (dim, m)): QᵀAQ = T, the tridiagonal matrix with
    diagonal alphas and off-diagonal betas, and A Q = Q T + β_m q_{m+1} e_mᵀ. When β is at the
    round-off level the Krylov space is invariant: the recurrence stops, or, given ``restart``
    (which draws a new vector), continues in the orthogonal complement of the basis with β = 0.
    ``done(alphas, betas, β)`` may end it early.
    """
    dim = start.numel()
    eps = torch.finfo(start.dtype).eps
    q = _unit(start)
    basis, alphas, betas = [q], [], []
    q_prev, beta, scale = None, 0.0, 0.0
    for j in range(steps):
        w = apply(q)
        alpha = torch.dot(q, w).item()
        w = w - alpha * q - (beta * q_prev if q_prev is not None else 0)
        if reorthogonalize:
            w = _orthogonalize(w, torch.stack(basis, 1))
        alphas.append(alpha)
        beta = torch.linalg.vector_norm(w).item()
        scale = max(scale, abs(alpha), beta)
        invariant = beta <= dim * eps * scale
        if invariant:
            beta = 0.0
        if j + 1 == steps or len(basis) == dim:
            break
        if done is not None and done(alphas, betas, beta):
            break
        if invariant:
            if restart is None:
                break
            w = _orthogonalize(restart(), torch.stack(basis, 1))
            q_prev, q = None, _unit(w)
        else:
            q_prev, q = q, w / beta
        betas.append(beta)
        basis.append(q)
    return (torch.tensor(alphas, dtype=start.dtype), torch.tensor(betas, dtype=start.dtype), beta,
            torch.stack(basis, 1))


def _tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    return torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)


def _wanted(ritz_values: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """Indices of the k wanted Ritz values, in the order they are reported."""
    if which == "largest":
        return torch.argsort(ritz_values, descending=True)[:k]
    if which == "smallest":
        return torch.argsort(ritz_values)[:k]
    return torch.argsort(ritz_values.abs(), descending=True)[:k]


def lanczos(matvec, dim: int, k: int = 1, *, steps: int | None = None, tol: float = 1e-10, which: str = "largest",
            generator: torch.Generator, reorthogonalize: bool = True, dtype: torch.dtype | None = None,
            device=None) -> EigenResult:
    r"""k extreme eigenvalues of a symmetric A (and their vectors) by the Lanczos method: Ritz pairs.

    From a random unit q₁, Lanczos builds an orthonormal basis Q_m = [q₁, …, q_m] of the Krylov
    space span{q₁, Aq₁, …, A^{m−1}q₁} with the three-term recurrence

    .. math::
        \beta_{j+1} q_{j+1} = A q_j - \alpha_j q_j - \beta_j q_{j-1}, \qquad \alpha_j = q_j^\top A q_j,

    so that T_m = Q_mᵀ A Q_m is tridiagonal. The eigenvalues θ_i of T_m (Ritz values) approximate
    those of A, the extreme ones first: the error of the largest falls like e^{−4m√γ} for the
    relative gap γ = (λ₁ − λ₂)/(λ₁ − λ_d) (Kaniel-Paige-Saad), where power iteration's falls like
    (λ₂/λ₁)^{2m}, about e^{−2mγ} when 0 ≤ λ_d ≪ λ₁: √γ in place of γ. The Ritz vectors are
    Q_m s_i, with ‖A Q_m s_i − θ_i Q_m s_i‖ = β_{m+1}|s_{m,i}|. ``reorthogonalize`` (default)
    orthogonalizes each new q against all earlier ones (O(d m) memory and work per step); without
    it round-off makes converged Ritz values reappear as spurious copies.

    ``which`` picks the k values reported: ``"largest"`` (algebraic, in decreasing order),
    ``"smallest"`` (increasing) or ``"magnitude"`` (decreasing ``|θ|``). It runs at most ``steps``
    products (default min(dim, max(100, 10k))) and stops once the k wanted pairs have
    ``β|s_{m,i}| ≤ tol·max|θ|``. Should the Krylov space become invariant before k values are
    found (a repeated eigenvalue), it restarts from a new random vector orthogonal to it.
    """
    dim, dtype, device = _space(matvec, dim, dtype, device)
    apply = _operator(matvec, dim)
    k = _validate.positive_int("k", k)
    if k > dim:
        raise ValueError(f"k must be at most dim = {dim}, got {k}")
    steps = min(dim, max(100, 10 * k)) if steps is None else _validate.positive_int("steps", steps)
    if not k <= steps <= dim:
        raise ValueError(f"steps must be in [k, dim] = [{k}, {dim}], got {steps}")
    tol = _validate.positive("tol", tol)
    _validate.one_of("which", which, _WHICH)
    generator = _generator(generator)

    def ritz(alphas, betas, beta):
        """(θ, S, residual estimates) of the wanted Ritz pairs, and the largest |θ| of all."""
        theta, S = torch.linalg.eigh(_tridiagonal(alphas, betas))
        idx = _wanted(theta, k, which)
        return theta[idx], S[:, idx], beta * S[-1, idx].abs(), theta.abs().max().item()

    def done(alphas, betas, beta):
        if len(alphas) < k:
            return False
        _, _, residuals, largest = ritz(torch.tensor(alphas, dtype=dtype), torch.tensor(betas, dtype=dtype), beta)
        return bool((residuals <= tol * largest).all())

    start = _gaussian((dim,), generator, dtype, device)
    restart = lambda: _gaussian((dim,), generator, dtype, device)
    alphas, betas, beta, basis = _lanczos_recurrence(apply, start, steps, reorthogonalize=reorthogonalize,
                                                     restart=restart, done=done)
    values, S, residuals, largest = ritz(alphas, betas, beta)
    return EigenResult(values.to(device), basis @ S.to(device), residuals.to(device), len(alphas),
                       bool((residuals <= tol * largest).all()))


def top_eigenvalues(matvec, dim: int, k: int = 1, *, generator: torch.Generator, method: str = "lanczos",
                    **options) -> torch.Tensor:
    r"""The k eigenvalues of largest magnitude of a symmetric A, in decreasing magnitude.

    For a Gauss-Newton matrix (positive semi-definite) or a Hessian near a minimum these are its
    largest eigenvalues: the sharpness λ_max that bounds stable learning rates (lr < 2/λ_max).
    ``method`` is ``"lanczos"`` (:func:`lanczos` with ``which="magnitude"``, the faster) or
    ``"power"`` (:func:`power_iteration`); ``options`` go to that function.
    """
    _validate.one_of("method", method, ("lanczos", "power"))
    if method == "power":
        return power_iteration(matvec, dim, k, generator=generator, **options).values
    return lanczos(matvec, dim, k, which="magnitude", generator=generator, **options).values


# ------------------------------------------------------------------ traces

@dataclass
class TraceEstimate:
    """A randomized trace estimate: ``estimate`` ± ``std_error`` (one standard error) from ``matvecs`` products."""

    estimate: float
    std_error: float
    matvecs: int


def _mean_and_error(samples: torch.Tensor) -> tuple[float, float]:
    n = len(samples)
    std_error = samples.std().item() / math.sqrt(n) if n > 1 else math.nan
    return samples.mean().item(), std_error


def hutchinson_trace(matvec, dim: int, samples: int, *, generator: torch.Generator,
                     distribution: str = "rademacher", dtype: torch.dtype | None = None,
                     device=None) -> TraceEstimate:
    r"""Hutchinson's estimate of tr(A): the mean of zᵀAz over ``samples`` random probes z.

    .. math::
        \operatorname{tr} A = \mathbb E[z^\top A z] \quad \text{when } \mathbb E[z z^\top] = I,
        \qquad \hat t = \frac1N \sum_{i=1}^N z_i^\top A z_i

    with Rademacher (±1) or standard Gaussian entries (``distribution``). One sample has variance
    2 Σ_{i≠j} A_ij² (Rademacher) or 2‖A‖_F² (Gaussian), so the error falls like 1/√N; the standard
    error reported is the samples' standard deviation over √N (``samples`` ≥ 2).
    """
    dim, dtype, device = _space(matvec, dim, dtype, device)
    apply = _operator(matvec, dim)
    samples = _validate.positive_int("samples", samples)
    if samples < 2:
        raise ValueError(f"samples must be >= 2 to estimate a standard error, got {samples}")
    _validate.one_of("distribution", distribution, _DISTRIBUTIONS)
    generator = _generator(generator)
    draw = _rademacher if distribution == "rademacher" else _gaussian
    probes = draw((samples, dim), generator, dtype, device)
    quadratic_forms = torch.stack([torch.dot(z, apply(z)) for z in probes])
    return TraceEstimate(*_mean_and_error(quadratic_forms), samples)


def hutch_plus_plus(matvec, dim: int, samples: int, *, generator: torch.Generator,
                    dtype: torch.dtype | None = None, device=None) -> TraceEstimate:
    r"""Hutch++ (Meyer, Musco, Musco and Woodruff, 2021): a low-rank part traced exactly, Hutchinson on the rest.

    With ``samples`` = m products: s = ⌊m/3⌋ Rademacher vectors S give Q, an orthonormal basis of
    AS (s products), which captures the largest eigenvalues; then

    .. math::
        \hat t = \operatorname{tr}(Q^\top A Q)
            + \frac1g \sum_{i=1}^{g} g_i^\top (I - QQ^\top) A (I - QQ^\top) g_i

    with s more products for AQ and g = m − 2s Rademacher probes g_i for the remainder. For a
    matrix whose spectrum decays the remainder is small, and the error falls like 1/m instead of
    Hutchinson's 1/√m. The standard error is that of the Hutchinson part (given Q); NaN when g = 1.
    """
    dim, dtype, device = _space(matvec, dim, dtype, device)
    apply = _operator(matvec, dim)
    samples = _validate.positive_int("samples", samples)
    if samples < 3:
        raise ValueError(f"hutch_plus_plus needs samples >= 3 (sketch, its image, one probe), got {samples}")
    generator = _generator(generator)
    s = samples // 3
    sketch = _rademacher((s, dim), generator, dtype, device)
    probes = _rademacher((samples - 2 * s, dim), generator, dtype, device)
    Q, _ = torch.linalg.qr(torch.stack([apply(z) for z in sketch], 1))
    low_rank = sum(torch.dot(q, apply(q)) for q in Q.T.contiguous())
    rest = probes - (probes @ Q) @ Q.T
    mean, std_error = _mean_and_error(torch.stack([torch.dot(z, apply(z)) for z in rest]))
    return TraceEstimate(float(low_rank) + mean, std_error, samples)


# ------------------------------------------------------------------ spectral density

@dataclass
class SpectralDensity:
    """The spectral density of :func:`spectral_density`.

    ``density`` (Gaussian-smoothed, integrating to about 1) on ``grid``; the quadrature ``nodes``
    (Ritz values of every probe) and their ``weights``, which sum to 1; ``sigma`` the width used.
    """

    grid: torch.Tensor
    density: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor
    sigma: float


def _smoothed(grid: torch.Tensor, nodes: torch.Tensor, weights: torch.Tensor, sigma: float) -> torch.Tensor:
    """Σ_i w_i g_σ(t − θ_i) at every t of ``grid``, g_σ the Gaussian density of standard deviation σ."""
    gaps = (grid[:, None] - nodes[None, :]) / sigma
    return torch.exp(-0.5 * gaps**2) @ weights / (sigma * math.sqrt(2 * math.pi))


def spectral_density(matvec, dim: int, steps: int, probes: int, *, generator: torch.Generator,
                     grid: torch.Tensor | None = None, sigma: float | None = None, reorthogonalize: bool = True,
                     dtype: torch.dtype | None = None, device=None) -> SpectralDensity:
    r"""The eigenvalue density of a symmetric A by stochastic Lanczos quadrature (Golub-Meurant; Ghorbani et al., 2019).

    The density φ(t) = (1/d) Σ_i δ(t − λ_i) satisfies, for a unit random vector v,

    .. math::
        \mathbb E\big[ v^\top g(A)\, v \big] = \frac1d \operatorname{tr} g(A) = \int g(t)\, \phi(t)\, dt,

    and ``steps`` Lanczos steps from v give the Gauss quadrature rule vᵀg(A)v ≈ Σ_i τ_i g(θ_i),
    with nodes θ_i the Ritz values and weights τ_i = s_{1,i}² the squared first components of the
    eigenvectors of T. Averaging the rules of ``probes`` Rademacher vectors (scaled to unit norm)
    and smoothing each node by a Gaussian of width ``sigma`` (default 1% of the nodes' range) gives

    .. math::
        \hat\phi(t) = \frac{1}{n_v} \sum_{v} \sum_i \tau_i^{(v)}\, g_\sigma\big(t - \theta_i^{(v)}\big),

    evaluated on ``grid`` (default 1000 points spanning the nodes with 5σ to spare). A probe whose
    Krylov space becomes invariant (A with few distinct eigenvalues) stops early: its rule is then
    exact. Cost: ``steps`` × ``probes`` products.
    """
    dim, dtype, device = _space(matvec, dim, dtype, device)
    apply = _operator(matvec, dim)
    steps = _validate.positive_int("steps", steps)
    if steps > dim:
        raise ValueError(f"steps must be at most dim = {dim}, got {steps}")
    probes = _validate.positive_int("probes", probes)
    if sigma is not None:
        sigma = _validate.positive("sigma", sigma)
    if grid is not None:
        grid = _finite("grid", _point("grid", grid)).to(dtype=dtype, device=device)
    generator = _generator(generator)
    all_nodes, all_weights = [], []
    for v in _rademacher((probes, dim), generator, dtype, device):
        alphas, betas, _, _ = _lanczos_recurrence(apply, v, steps, reorthogonalize=reorthogonalize)
        theta, S = torch.linalg.eigh(_tridiagonal(alphas, betas))
        all_nodes.append(theta)
        all_weights.append(S[0] ** 2 / probes)
    nodes, weights = torch.cat(all_nodes).to(device), torch.cat(all_weights).to(device)
    low, high = nodes.min().item(), nodes.max().item()
    if sigma is None:
        sigma = 0.01 * (high - low) if high > low else 0.01 * max(abs(high), 1.0)
    if grid is None:
        grid = torch.linspace(low - 5 * sigma, high + 5 * sigma, 1000, dtype=dtype, device=device)
    return SpectralDensity(grid, _smoothed(grid, nodes, weights, sigma), nodes, weights, sigma)
