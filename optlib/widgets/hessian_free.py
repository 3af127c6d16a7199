"""The widget of the Hessian-free chapter: conjugate gradients against the condition number.

The experiment behind it lives in :mod:`optlib.spectra`: a spectrum of a chosen shape and condition
number, and CG on the diagonal matrix that has it.
"""
from __future__ import annotations

import math

import ipywidgets as w
import torch

from optlib.spectra import SPECTRA, cg_bound, cg_iterations_bound, cg_on_spectrum, spectrum
from optlib.widgets import dropdown, int_slider, interactive, log_slider

__all__ = ["draw_cg", "cg_widget"]

def draw_cg(shape: str, kappa: float, dim: int, *, tol: float = 1e-10, seed: int = 0):
    """CG on diag(λ) with λ = ``spectrum(shape, dim, kappa)`` and b drawn with ``seed``.

    Left: the relative energy-norm error and residual against the iteration k, the bound
    :func:`optlib.spectra.cg_bound` (dashed) and a dotted line at k = d, where CG would have ended in exact
    arithmetic (drawn when it is within 1.5 times the iterations); the title gives the iterations to
    the tolerance ``tol`` and the bound's count.
    Right: the eigenvalues. Returns the two axes.
    """
    from optlib import plot

    eigenvalues = spectrum(shape, dim, kappa)
    run = cg_on_spectrum(eigenvalues, generator=torch.Generator().manual_seed(seed), tol=tol)
    fig, (left, right) = plot.subplots(2, height=3.8)
    ks = range(run.iterations + 1)
    curves = {r"error $\|x_k - x^*\|_A / \|x^*\|_A$": run.errors, r"residual $\|r_k\| / \|b\|$": run.residuals,
              r"bound $2\rho^k$": cg_bound(kappa, run.iterations)}
    plot.lines(ks, curves, ax=left, logy=True, xlabel="iteration $k$", styles={r"bound $2\rho^k$": "k--"})
    if dim <= 1.5 * run.iterations:  # where CG would have ended in exact arithmetic, when it is in view
        left.axvline(dim, color="0.5", ls=":", lw=1)
    left.set_ylim(max(min(run.residuals + run.errors), 1e-13) / 3, 30)
    left.get_legend().remove()
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=9)
    bound = math.ceil(cg_iterations_bound(kappa, tol))
    status = (f"{run.iterations} iterations to {tol:.0e} (bound {bound})" if run.converged
              else f"not converged in {run.iterations} iterations")
    left.set_title(status, fontsize=10)
    plot.lines(range(1, dim + 1), eigenvalues, ax=right, logy=True, marker=".",
               xlabel="index $j$", ylabel=r"$\lambda_j$")
    right.lines[0].set_linestyle("none")
    right.set_title(rf"{shape}, $\kappa$ = {kappa:.3g}, $d$ = {dim}", fontsize=10)
    return left, right


def cg_widget() -> w.VBox:
    """A slider for κ (log scale), one for the dimension d and a menu for the shape of the spectrum.

    Draws :func:`draw_cg`; defaults: κ = 1000, d = 500, ``"chebyshev"`` (CG needs about the
    bound's ½√κ ln(2/ε) iterations there; ``"uniform"`` and ``"clustered"`` need fewer, and
    ``"geometric"`` with κ ≥ 10⁴ and d = 100 needs more than d, in floating point).
    """
    return interactive(
        lambda kappa, dim, shape: draw_cg(shape, kappa, dim),
        kappa=log_slider("condition κ", 1e3, 1.0, 1e6),
        dim=int_slider("dimension d", 500, 10, 2000, 10),
        shape=dropdown("spectrum", SPECTRA, "chebyshev"),
    )
