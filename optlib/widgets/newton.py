"""The widget of the Newton chapter: damped (or saddle-free) Newton on a saddle with a floor."""
from __future__ import annotations

import ipywidgets as w

from optlib import functions, run
from optlib.optim.newton import MODES, Newton
from optlib.widgets import dropdown, int_slider, interactive, log_slider, paths_and_losses, stopped_or

__all__ = ["draw_damping", "damping_widget"]


def draw_damping(fn: functions.TestFunction, damping: float, mode: str, steps: int):
    """Plain Newton and Newton with ``damping`` δ (and ``mode``) on ``fn``, from ``fn.start``.

    Left: both paths on the contours; right: f − f* of both (f* = ``fn.min_value``). The right
    panel's title says where the damped run ended: at a minimum (f within 1e-8 of f*, and after
    how many steps), or the value of f it reached. Returns the two axes.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    common = dict(steps=steps, on_nonfinite="stop")
    plain = run.minimize(fn, fn.start, Newton, name="Newton, δ = 0", **common)
    label = "saddle-free" if mode == "saddle_free" else "Newton"
    mine = run.minimize(fn, fn.start, Newton, damping=damping, mode=mode,
                        name=f"{label}, δ = {damping:.3g}", **common)
    reached = mine.steps_to(fn.min_value + 1e-8)
    text = (f"f = {mine.final_loss:.3f} after {steps} steps" if reached is None
            else f"at the minimum after {reached} steps")
    return paths_and_losses(fn, {plain.name: plain, mine.name: mine}, optimum=fn.min_value,
                            title=stopped_or(mine, text))


def damping_widget() -> w.VBox:
    """A slider for the damping δ, a menu for the mode and a slider for the steps.

    Draws :func:`draw_damping` on ``functions.SaddleWithFloor()`` from (0.1, 0.5); defaults:
    δ = 0.1 (far below the negative curvature 1.25 at the start), mode ``newton``, 30 steps.
    """
    fn = functions.SaddleWithFloor()
    return interactive(
        lambda damping, mode, steps: draw_damping(fn, damping, mode, steps),
        damping=log_slider("damping δ", 0.1, 1e-2, 100.0),
        mode=dropdown("mode", MODES, "newton"),
        steps=int_slider("steps", 30, 5, 200, 5),
    )
