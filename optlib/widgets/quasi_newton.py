"""The widget of the quasi-Newton chapter: L-BFGS with history m (and its line search) on Rosenbrock."""
from __future__ import annotations

import ipywidgets as w

from optlib import functions, run
from optlib.optim.quasi_newton import LBFGS
from optlib.widgets import dropdown, int_slider, interactive, paths_and_losses, stopped_or

__all__ = ["LINE_SEARCH_CHOICES", "draw_history", "history_widget"]

#: The widget's line-search menu: strong Wolfe, or the fixed step α = 1 (``line_search=None``).
LINE_SEARCH_CHOICES = {"strong Wolfe": "strong_wolfe", "none (α = 1)": None}


def draw_history(fn: functions.TestFunction, m: int, line_search: str, steps: int):
    """L-BFGS with history 1 and with history ``m`` on ``fn`` from ``fn.start``, ``steps`` iterations.

    ``line_search`` is a key of :data:`LINE_SEARCH_CHOICES`. Left: both paths on the contours;
    right: f − f* of both (f* = ``fn.min_value``). The right panel's title says where the run
    with history ``m`` ended: at the minimum (f within 1e-8 of f*, and after how many
    iterations), or the value of f it reached (or why it stopped). Returns the two axes.
    """
    if line_search not in LINE_SEARCH_CHOICES:
        raise ValueError(f"line_search must be one of {list(LINE_SEARCH_CHOICES)}, got {line_search!r}")
    common = dict(steps=steps, on_nonfinite="stop", max_iter=1, tolerance_grad=0.0,
                  tolerance_change=0.0, line_search=LINE_SEARCH_CHOICES[line_search])
    one = run.minimize(fn, fn.start, LBFGS, history_size=1, name="L-BFGS, m = 1", **common)
    mine = run.minimize(fn, fn.start, LBFGS, history_size=m, name=f"L-BFGS, m = {m}", **common)
    runs = {one.name: one} if m == 1 else {one.name: one, mine.name: mine}
    reached = mine.steps_to(fn.min_value + 1e-8)
    text = (f"f = {mine.final_loss:.3g} after {steps} iterations" if reached is None
            else f"at the minimum after {reached} iterations")
    return paths_and_losses(fn, runs, optimum=fn.min_value, title=stopped_or(mine, text))


def history_widget() -> w.VBox:
    """A slider for the history m, a menu for the line search and a slider for the iterations.

    Draws :func:`draw_history` on ``functions.Rosenbrock()`` from (−1.2, 1); defaults: m = 10,
    strong Wolfe, 60 iterations.
    """
    fn = functions.Rosenbrock()
    return interactive(
        lambda m, line_search, steps: draw_history(fn, m, line_search, steps),
        m=int_slider("history m", 10, 1, 30),
        line_search=dropdown("line search", list(LINE_SEARCH_CHOICES), "strong Wolfe"),
        steps=int_slider("iterations", 60, 10, 200, 10),
    )
