"""The widget of the trust-region chapter: the initial radius and the acceptance threshold on Rosenbrock."""
from __future__ import annotations

import math

import ipywidgets as w
import torch

from optlib import functions, run
from optlib.optim.trust_region import TrustRegion
from optlib.widgets import float_slider, int_slider, interactive, log_slider, paths_and_losses, stopped_or

__all__ = ["draw_model", "draw_trust_region", "trust_region_widget"]


def draw_model(g: torch.Tensor, H: torch.Tensor, *, ax, half_width: float, center=(0.0, 0.0), radii=(),
               title: str | None = None, resolution: int = 121):
    """Filled contours of the 2-D model m(p) = gᵀp + ½ pᵀHp on the square of ``half_width`` around ``center``.

    Each radius in ``radii`` is drawn as a white circle (a trust-region boundary) around p = 0, and the axes
    keep the square's limits and an equal aspect, so circles look round. Returns ``ax``.
    """
    from optlib import plot

    if tuple(g.shape) != (2,) or tuple(H.shape) != (2, 2):
        raise ValueError(f"draw_model needs a 2-D model, got g {tuple(g.shape)} and H {tuple(H.shape)}")
    xs = torch.linspace(center[0] - half_width, center[0] + half_width, resolution, dtype=torch.float64)
    ys = torch.linspace(center[1] - half_width, center[1] + half_width, resolution, dtype=torch.float64)
    P = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)
    g, H = g.to(torch.float64), H.to(torch.float64)
    Z = P @ g + 0.5 * torch.einsum("...i,ij,...j->...", P, H, P)
    plot.contour_grid(xs, ys, Z, ax=ax, levels=30, xlabel="$p_1$", ylabel="$p_2$", title=title, colorbar=False)
    t = torch.linspace(0, 2 * math.pi, 200, dtype=torch.float64)
    for radius in radii:
        ax.plot(radius * t.cos(), radius * t.sin(), "w:", lw=1.2)
    ax.set(xlim=(xs[0].item(), xs[-1].item()), ylim=(ys[0].item(), ys[-1].item()))
    ax.set_aspect("equal", adjustable="box")
    return ax


def draw_trust_region(fn: functions.TestFunction, radius: float, eta: float, steps: int):
    """TrustRegion with the defaults (Δ₀ = 1, η = 0.15) and with ``radius`` Δ₀ and ``eta`` η on ``fn``.

    Both start from ``fn.start``. Left: both paths on the contours; right: f − f* of both
    (f* = ``fn.min_value``). The right panel's title says where the chosen run ended: at the
    minimum (f within 1e-10 of f*, and after how many iterations, rejected trials included), or
    the value of f it reached. Returns the two axes.
    """
    common = dict(steps=steps, on_nonfinite="stop")
    default = run.minimize(fn, fn.start, TrustRegion, name="Δ₀ = 1, η = 0.15", **common)
    mine = run.minimize(fn, fn.start, TrustRegion, radius=radius, eta=eta,
                        name=f"Δ₀ = {radius:.3g}, η = {eta:.2g}", **common)
    reached = mine.steps_to(fn.min_value + 1e-10)
    text = (f"f = {mine.final_loss:.3g} after {steps} iterations" if reached is None
            else f"at the minimum after {reached} iterations")
    return paths_and_losses(fn, {default.name: default, mine.name: mine}, optimum=fn.min_value,
                            title=stopped_or(mine, text))


def trust_region_widget() -> w.VBox:
    """Sliders for the initial radius Δ₀, the acceptance threshold η and the iterations.

    Draws :func:`draw_trust_region` on 2-D ``functions.Rosenbrock()`` from (−1.2, 1); defaults:
    Δ₀ = 0.1, η = 0.15, 60 iterations.
    """
    fn = functions.Rosenbrock()
    return interactive(
        lambda radius, eta, steps: draw_trust_region(fn, radius, eta, steps),
        radius=log_slider("radius Δ₀", 0.1, 1e-3, 100.0),
        eta=float_slider("η", 0.15, 0.0, 0.24, 0.01),
        steps=int_slider("steps", 60, 10, 200, 10),
    )
