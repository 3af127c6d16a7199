"""The widget of the loss-geometry chapter: escaping the saddle of the double well."""
from __future__ import annotations

import ipywidgets as w
import torch

from optlib import geometry, optim, run
from optlib.widgets import float_slider, int_slider, interactive, log_slider, paths_and_losses, stopped_or

__all__ = ["draw_escape", "escape_widget"]


def draw_escape(well: geometry.DoubleWell, lr: float, momentum: float, noise: float, y0: float, steps: int):
    """Your run (momentum, gradient noise) and plain gradient descent from ``(1.5, y0)`` on ``well``.

    The noise is N(0, σ²) with σ = ``noise``, added to every gradient component, drawn from a generator seeded
    with 0. Left: both paths on the contours; right: f − f* of both, titled with the step at which
    your run escaped (f ≤ −0.1, well below the saddle's value 0), or why it stopped. Returns the
    two axes.
    """
    start = [1.5, y0]
    common = dict(steps=steps, lr=lr, on_nonfinite="stop")
    trace = run.minimize(well, start, optim.SGD, momentum=momentum, noise_std=noise,
                         generator=torch.Generator().manual_seed(0), name="your run", **common)
    baseline = run.minimize(well, start, optim.SGD, name="plain GD", **common)
    escaped = trace.steps_to(-0.1)
    title = stopped_or(trace, f"not escaped in {steps} steps" if escaped is None
                       else f"escaped (f ≤ −0.1) at step {escaped}")
    return paths_and_losses(well, {"plain GD": baseline, "your run": trace}, optimum=well.min_value, title=title)


def escape_widget() -> w.VBox:
    """Sliders for the learning rate, momentum, gradient noise, start offset y0 and steps.

    Draws :func:`draw_escape` on :class:`optlib.geometry.DoubleWell`; defaults: lr 0.1, no
    momentum, noise 0.01, y0 = 1e-8, 250 steps.
    """
    well = geometry.DoubleWell()
    return interactive(
        lambda lr, momentum, noise, y0, steps: draw_escape(well, lr, momentum, noise, y0, steps),
        lr=log_slider("learning rate", 0.1, 0.01, 0.5),
        momentum=float_slider("momentum", 0.0, 0.0, 0.99, 0.01),
        noise=log_slider("noise std", 0.01, 1e-6, 0.3),
        y0=log_slider("start offset y0", 1e-8, 1e-10, 0.1),
        steps=int_slider("steps", 250, 20, 600, 10),
    )
