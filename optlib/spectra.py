r"""Test matrices with a chosen spectrum, and what conjugate gradients and gradient descent do on them.

Conjugate gradients (CG) on A x = b, A symmetric positive definite, sees A only through products
and b only through its components in A's eigenbasis: its iterates, residuals and errors depend on
the eigenvalues of A and on those components, not on the eigenvectors. So a spectrum with a
chosen shape and condition number κ is an experiment, and the diagonal matrix diag(λ) runs it in
O(d) per product (:func:`cg_on_spectrum`, ``rotate=False``); ``rotate=True`` runs the same
experiment on Q diag(λ) Qᵀ with a random orthogonal Q, the same in exact arithmetic.
:func:`cg_bound` and :func:`cg_iterations_bound` give CG's worst case, :func:`gd_iterations` what
gradient descent needs on the same spectrum. Chapter 11 measures CG's √κ with them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from optlib import _validate
from optlib.curvature import CGResult, conjugate_gradient

__all__ = ["SPECTRA", "CLUSTERS", "CLUSTER_WIDTH", "spectrum", "matrix_with_spectrum", "CGRun", "cg_on_spectrum",
           "gd_iterations", "cg_bound", "cg_iterations_bound"]

#: The spectrum shapes of :func:`spectrum` (the widget's menu).
SPECTRA = ("uniform", "chebyshev", "geometric", "clustered")

#: The number of clusters of the ``"clustered"`` spectrum.
CLUSTERS = 5
#: The width of each cluster of the ``"clustered"`` spectrum on the log scale, as a fraction of log κ.
CLUSTER_WIDTH = 0.004


def _tolerance(tol: float) -> float:
    tol = _validate.positive("tol", tol)
    if not tol < 1:
        raise ValueError(f"tol must be a relative residual in (0, 1), got {tol}")
    return tol


def spectrum(shape: str, dim: int, kappa: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""``dim`` eigenvalues in increasing order from 1 to ``kappa`` (both included), so κ(A) = ``kappa``.

    - ``"uniform"``: evenly spaced;
    - ``"chebyshev"``: :math:`1 + (\kappa - 1)(1 - \cos(\pi j/(d-1)))/2`, the Chebyshev points of
      [1, κ], dense at both ends: the spectrum for which CG's √κ bound is sharp;
    - ``"geometric"``: :math:`\kappa^{j/(d-1)}`, the same number of eigenvalues in every decade;
    - ``"clustered"``: :data:`CLUSTERS` tight clusters (each :data:`CLUSTER_WIDTH` of log κ wide) at
      geometrically spaced centres from 1 to κ, the eigenvalues split as evenly as ``dim`` allows.
    """
    _validate.one_of("shape", shape, SPECTRA)
    dim = _validate.positive_int("dim", dim)
    if dim < 2:
        raise ValueError(f"dim must be at least 2 (the spectrum runs from 1 to kappa), got {dim}")
    kappa = _validate.at_least("kappa", kappa, 1.0)
    j = torch.arange(dim, dtype=dtype) / (dim - 1)
    if shape == "uniform":
        return 1 + (kappa - 1) * j
    if shape == "chebyshev":
        values = 1 + (kappa - 1) * (1 - torch.cos(math.pi * j)) / 2
        values[0], values[-1] = 1.0, kappa  # exact ends (cos(π) rounds)
        return values
    if shape == "geometric":
        return torch.tensor(kappa, dtype=dtype) ** j
    # clustered: positions u in [0, 1] on the log scale, CLUSTERS groups of width CLUSTER_WIDTH
    clusters = min(CLUSTERS, dim)
    group = torch.arange(dim) * clusters // dim
    counts = torch.bincount(group, minlength=clusters)
    within = torch.cat([torch.linspace(0, 1, int(n), dtype=dtype) if n > 1 else torch.zeros(1, dtype=dtype)
                        for n in counts])
    centre = group.to(dtype) / max(clusters - 1, 1) * (1 - CLUSTER_WIDTH)
    u = centre + CLUSTER_WIDTH * within
    return torch.tensor(kappa, dtype=dtype) ** (u / u.max())


def _orthogonal(dim: int, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    Q, R = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=dtype))
    return Q * torch.sign(torch.diagonal(R))  # Haar-distributed: fix the signs of the QR


def matrix_with_spectrum(eigenvalues: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Q diag(``eigenvalues``) Qᵀ with Q a random orthogonal matrix drawn with ``generator``."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    eigenvalues = torch.as_tensor(eigenvalues)
    if eigenvalues.ndim != 1 or not eigenvalues.is_floating_point():
        raise ValueError(f"eigenvalues must be a 1-D floating-point tensor, got {eigenvalues.dtype} of shape "
                         f"{tuple(eigenvalues.shape)}")
    Q = _orthogonal(len(eigenvalues), generator, eigenvalues.dtype)
    return (Q * eigenvalues) @ Q.T


@dataclass
class CGRun:
    """One CG solve of :func:`cg_on_spectrum`: optlib's :class:`~optlib.curvature.CGResult` and two histories.

    ``residuals[k]`` = ‖b − A x_k‖/‖b‖ and ``errors[k]`` = ‖x_k − x*‖_A / ‖x*‖_A for k = 0, …,
    ``iterations`` (x₀ = 0, so both start at 1), with ‖e‖_A = √(eᵀAe) the energy norm, which CG
    minimizes over the Krylov space and which :func:`cg_bound` bounds.
    """

    result: CGResult
    residuals: list[float]
    errors: list[float]

    @property
    def iterations(self) -> int:
        """The number of CG iterations (products with A) until it stopped."""
        return self.result.iterations

    @property
    def converged(self) -> bool:
        """Whether the relative residual reached the tolerance."""
        return self.result.converged


def cg_on_spectrum(eigenvalues: torch.Tensor, *, generator: torch.Generator, tol: float = 1e-10,
                   max_iter: int | None = None, rotate: bool = False) -> CGRun:
    """Solve A x = b by :func:`optlib.curvature.conjugate_gradient` for A with the given ``eigenvalues`` (> 0).

    b has standard Gaussian entries drawn with ``generator``; with ``rotate`` A = Q diag(λ) Qᵀ, Q
    drawn first (:func:`matrix_with_spectrum`), else A = diag(λ). CG starts from x₀ = 0 and stops at
    ‖r‖ ≤ ``tol``·‖b‖ or after ``max_iter`` iterations (default 10 d). The errors are computed from
    x* = Q diag(1/λ) Qᵀ b at every iterate, through CG's ``stop`` callback (which stops nothing).
    """
    eigenvalues = torch.as_tensor(eigenvalues)
    if eigenvalues.ndim != 1 or not eigenvalues.is_floating_point() or not (eigenvalues > 0).all():
        raise ValueError("eigenvalues must be a 1-D floating-point tensor of positive numbers")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    dim, dtype = len(eigenvalues), eigenvalues.dtype
    if rotate:
        Q = _orthogonal(dim, generator, dtype)
        A = (Q * eigenvalues) @ Q.T
        b = torch.randn(dim, generator=generator, dtype=dtype)
        x_star = Q @ ((Q.T @ b) / eigenvalues)
        matvec = A.__matmul__
    else:
        b = torch.randn(dim, generator=generator, dtype=dtype)
        x_star = b / eigenvalues
        matvec = lambda v: eigenvalues * v  # noqa: E731
    energy = lambda e: torch.sqrt(torch.dot(e, matvec(e))).item()  # noqa: E731
    scale = energy(x_star)
    errors = [1.0]

    def record(x, r, k):
        errors.append(energy(x - x_star) / scale)
        return False

    result = conjugate_gradient(matvec, b, tol=tol, max_iter=max_iter, stop=record)
    if len(errors) < result.iterations + 1:  # the last iterate: CG returned before calling stop
        errors.append(energy(result.x - x_star) / scale)
    residuals = [r / result.b_norm for r in result.residual_norms]
    return CGRun(result, residuals, errors)


def gd_iterations(eigenvalues: torch.Tensor, *, generator: torch.Generator, tol: float = 1e-6,
                  max_iter: int = 1_000_000) -> int | None:
    """Gradient descent's iterations on ½xᵀAx − bᵀx, A = diag(``eigenvalues``), to a relative residual ``tol``.

    The step is the best fixed one, 2/(λ_min + λ_max), which contracts every error component by at
    most (κ − 1)/(κ + 1) per step: about ½κ ln(1/ε) iterations. b is drawn as in
    :func:`cg_on_spectrum` (``rotate=False``) from ``generator``, x₀ = 0. None if ``max_iter`` is reached.
    """
    eigenvalues = torch.as_tensor(eigenvalues)
    if eigenvalues.ndim != 1 or not eigenvalues.is_floating_point() or not (eigenvalues > 0).all():
        raise ValueError("eigenvalues must be a 1-D floating-point tensor of positive numbers")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    tol = _tolerance(tol)
    max_iter = _validate.positive_int("max_iter", max_iter)
    b = torch.randn(len(eigenvalues), generator=generator, dtype=eigenvalues.dtype)
    step = 2 / (eigenvalues.min() + eigenvalues.max())
    # the residual r = b − Ax evolves on its own: r ← (1 − step·λ) ⊙ r
    factor, r, threshold = 1 - step * eigenvalues, b.clone(), tol * torch.linalg.vector_norm(b)
    for k in range(max_iter + 1):
        if torch.linalg.vector_norm(r) <= threshold:
            return k
        r = factor * r
    return None


def cg_bound(kappa: float, iterations: int) -> list[float]:
    r"""CG's bound :math:`2\big((\sqrt\kappa - 1)/(\sqrt\kappa + 1)\big)^k` on the relative energy-norm error.

    One value for each k = 0, …, ``iterations``, capped at 1 (the error never exceeds its start).

    It holds for every spectrum in [λ_min, λ_max] with κ = λ_max/λ_min (the Chebyshev polynomial of
    degree k is one candidate among the polynomials CG optimizes over); it is about sharp for a
    spectrum that fills the interval like Chebyshev points, and loose for clustered ones.
    """
    kappa = _validate.at_least("kappa", kappa, 1.0)
    iterations = _validate.at_least("iterations", iterations, 0)
    rho = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    return [min(1.0, 2 * rho**k) for k in range(int(iterations) + 1)]


def cg_iterations_bound(kappa: float, tol: float) -> float:
    r"""The iterations after which :func:`cg_bound` is below ``tol``: :math:`\approx\tfrac12\sqrt\kappa\ln(2/\epsilon)`.

    Exactly ln(2/ε)/ln(1/ρ) with ρ = (√κ − 1)/(√κ + 1) (0 when κ = 1); since ln(1/ρ) ≈ 2/√κ for
    large κ this is the ½√κ ln(2/ε) of the textbooks, against the κ ln(1/ε)/2 of gradient descent.
    """
    kappa = _validate.at_least("kappa", kappa, 1.0)
    tol = _tolerance(tol)
    if kappa == 1.0:
        return 0.0
    rho = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    return math.log(2 / tol) / math.log(1 / rho)
