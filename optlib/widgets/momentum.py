"""The widget of the momentum chapter: heavy ball or Nesterov on an ill-conditioned valley."""
from __future__ import annotations

import math

import ipywidgets as w

from optlib import functions, optim, run
from optlib.widgets import dropdown, float_slider, int_slider, interactive, log_slider, paths_and_losses, stopped_or

#: The methods the widget offers: momentum with the gradient at the iterate, or at the look-ahead.
METHODS = ("heavy ball", "Nesterov")
__all__ = ["METHODS", "draw_valley", "valley_widget"]


def draw_valley(quad: functions.Quadratic, lr: float, rho: float, method: str, steps: int):
    """Gradient descent and a momentum run with the same ``lr`` on ``quad``, from ``quad.start``.

    Left: both paths on the contours; right: f − f* of both. The right panel's title says when the
    momentum run reaches f ≤ 1e-8, or where it ended (or why it stopped: a NaN/inf loss).
    Returns the two axes.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    common = dict(steps=steps, lr=lr, on_nonfinite="stop")
    nesterov = method == "Nesterov" and rho > 0
    base = run.minimize(quad, quad.start, optim.SGD, name="GD, same lr", **common)
    mine = run.minimize(quad, quad.start, optim.SGD, momentum=rho, nesterov=nesterov,
                        name=f"{method}, ρ = {rho:.2f}", **common)
    reached = mine.steps_to(1e-8)
    title = stopped_or(mine, f"f = {mine.final_loss:.2e} after {steps} steps" if reached is None
                       else f"f ≤ 1e-8 after {reached} steps")
    return paths_and_losses(quad, {base.name: base, mine.name: mine}, optimum=0.0, title=title)


def valley_widget(condition_number: float = 100.0, angle: float = math.pi / 6) -> w.VBox:
    """Sliders for the learning rate, the momentum ρ and the steps, and a menu for the method.

    Draws :func:`draw_valley` on ``functions.Quadratic(condition_number, angle=angle)``; defaults:
    lr 0.01, ρ = 0.9, heavy ball, 200 steps.
    """
    quad = functions.Quadratic(condition_number=condition_number, angle=angle)
    return interactive(
        lambda lr, rho, method, steps: draw_valley(quad, lr, rho, method, steps),
        lr=log_slider("learning rate", 0.01, 1e-3, 0.05),
        rho=float_slider("momentum ρ", 0.9, 0.0, 0.99, 0.01),
        method=dropdown("method", METHODS, "heavy ball"),
        steps=int_slider("steps", 200, 20, 1000, 10),
    )
