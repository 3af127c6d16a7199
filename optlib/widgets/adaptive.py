"""The widget of the adaptive-methods chapter: Adam's hyperparameters on Rosenbrock's function."""
from __future__ import annotations

import ipywidgets as w

from optlib import functions, optim, run
from optlib.widgets import dropdown, float_slider, int_slider, interactive, log_slider, paths_and_losses, stopped_or

#: Gradient descent's rate in the comparison: the largest that is stable from (-1.2, 1).
GD_LR = 1e-3
__all__ = ["GD_LR", "adam_rosenbrock_widget", "draw_adam_rosenbrock"]


def draw_adam_rosenbrock(lr: float, beta1: float, beta2: float, bias_correction: bool, steps: int,
                         start=(-1.2, 1.0)):
    """Adam with these hyperparameters and gradient descent (lr :data:`GD_LR`) on Rosenbrock from ``start``.

    Left: both paths on the contours; right: f − f* of both. The right panel's title gives Adam's
    final f, or why the run stopped (a NaN/inf loss). Returns the two axes.
    """
    if not isinstance(bias_correction, bool):
        raise TypeError(f"bias_correction must be True or False, got {bias_correction!r}")
    rosen = functions.Rosenbrock()
    adam = run.minimize(rosen, list(start), optim.Adam, steps=steps, lr=lr, betas=(beta1, beta2),
                        bias_correction=bias_correction, on_nonfinite="stop", name="Adam")
    gd = run.minimize(rosen, list(start), optim.SGD, steps=steps, lr=GD_LR, on_nonfinite="stop",
                      name=f"GD (lr {GD_LR:g})")
    title = stopped_or(adam, f"Adam: f = {adam.final_loss:.2e} after {steps} steps")
    return paths_and_losses(rosen, {gd.name: gd, "Adam": adam}, optimum=0.0, title=title)


def adam_rosenbrock_widget() -> w.VBox:
    """Sliders for Adam's lr, β₁, the steps, and menus for β₂ and the bias correction.

    Draws :func:`draw_adam_rosenbrock`; defaults: lr 0.03, β₁ = 0.9, β₂ = 0.999, bias correction
    on, 500 steps.
    """
    return interactive(
        lambda lr, beta1, beta2, bias_correction, steps: draw_adam_rosenbrock(
            lr, beta1, beta2, bias_correction == "on", steps),
        lr=log_slider("Adam lr", 0.03, 1e-3, 1.0),
        beta1=float_slider("β₁", 0.9, 0.0, 0.99, 0.01),
        beta2=dropdown("β₂", [0.9, 0.99, 0.999, 0.9999], 0.999),
        bias_correction=dropdown("bias correction", ["on", "off"], "on"),
        steps=int_slider("steps", 500, 50, 2000, 50),
    )
