"""The widget of the Muon chapter: the Newton-Schulz polynomial and the spectrum it produces."""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import torch

from optlib.optim.muon import NS_COEFFICIENTS, newton_schulz
from optlib.widgets import dropdown, int_slider, interactive

__all__ = ["COEFFICIENTS", "iterate_polynomial", "spectrum_matrix", "draw_newton_schulz", "newton_schulz_widget"]

#: The two polynomials of the chapter: Jordan's quintic and the classic cubic iteration.
COEFFICIENTS = {"quintic": NS_COEFFICIENTS, "cubic": (1.5, -0.5, 0.0)}


def iterate_polynomial(s, coefficients, steps: int) -> np.ndarray:
    """p applied ``steps`` times to each entry of ``s``, p(σ) = aσ + bσ³ + cσ⁵ with ``coefficients`` (a, b, c).

    This is what ``steps`` Newton-Schulz iterations do to each singular value of the normalized matrix.
    """
    a, b, c = coefficients
    x = np.asarray(s, dtype=float).copy()
    for _ in range(int(steps)):
        x = a * x + b * x**3 + c * x**5
    return x


def spectrum_matrix(rows: int = 64, cols: int = 32, seed: int = 0) -> torch.Tensor:
    """A fixed float64 test matrix U diag(σ) Vᵀ with singular values σ spread from 1 down to 1e-3 (log-spaced)."""
    gen = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=gen, dtype=torch.float64))
    sigma = torch.logspace(0, -3, k, dtype=torch.float64)
    return U @ torch.diag(sigma) @ V.T


def draw_newton_schulz(steps: int, coefficients: str, matrix: torch.Tensor | None = None):
    """Left: p^k(s) for k = 1..``steps`` on s in [1e-3, 1] (log axis); right: the sorted singular values of
    ``matrix`` (default :func:`spectrum_matrix`), normalized by its Frobenius norm, and of
    ``newton_schulz(matrix, steps, coefficients)``.

    The right panel's title gives the range of the output's singular values. Returns the two axes.
    """
    from optlib import plot

    if coefficients not in COEFFICIENTS:
        raise ValueError(f"coefficients must be one of {list(COEFFICIENTS)}, got {coefficients!r}")
    coef = COEFFICIENTS[coefficients]
    G = spectrum_matrix() if matrix is None else matrix
    s = np.logspace(-3, 0, 400)
    curves = {f"$p^{{{k}}}$": iterate_polynomial(s, coef, k) for k in range(1, steps + 1)}
    fig, (left, right) = plot.subplots(2)
    plot.lines(s, curves, ax=left, logx=True, xlabel="$s$ (normalized singular value)", ylabel="$p^k(s)$",
               title=f"{coefficients}, {steps} steps", legend=steps <= 6)
    left.axhline(1.0, color="k", ls=":", lw=1)
    before = torch.linalg.svdvals(G / G.norm()).numpy()
    after = torch.linalg.svdvals(newton_schulz(G, steps, coef)).numpy()
    index = np.arange(1, len(before) + 1)
    plot.lines(index, {"input (normalized)": before, "after Newton-Schulz": after}, ax=right, logy=True,
               xlabel="index $i$", ylabel=r"$\sigma_i$")
    right.set_title(f"output σ in [{after.min():.2g}, {after.max():.2g}]", fontsize=10)
    right.legend(loc="lower left")
    return left, right


def newton_schulz_widget() -> w.VBox:
    """A slider for the number of Newton-Schulz steps (1-10, default 5) and a menu for the coefficients
    (quintic, cubic); draws :func:`draw_newton_schulz` on :func:`spectrum_matrix`."""
    G = spectrum_matrix()
    return interactive(
        lambda steps, coefficients: draw_newton_schulz(steps, coefficients, G),
        steps=int_slider("steps", 5, 1, 10),
        coefficients=dropdown("coefficients", list(COEFFICIENTS), "quintic"),
    )
