"""Every interactive control of the book, built on ipywidgets.

Each widget draws its figure once with its default values when created, so an executed
notebook stores that figure and the static book shows it; moving a control needs a kernel
(Colab or local Jupyter). Controls update on release (``continuous_update=False``) so a slow
redraw never queues up.

This module holds the controls, :func:`interactive` and the optimizer playground; the widgets
of one chapter live in a submodule named after its topic (e.g. ``optlib.widgets.momentum``), so
a chapter's widget cell is one call and its drawing code is readable, tested library code.
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as w
import matplotlib.pyplot as plt

_LAYOUT = dict(style={"description_width": "110px"}, layout=w.Layout(width="420px"), continuous_update=False)


def float_slider(description: str, value: float, low: float, high: float, step: float | None = None) -> w.FloatSlider:
    """A slider from ``low`` to ``high`` starting at ``value``, in steps of ``step`` (default 1/100 of the range)."""
    return w.FloatSlider(value=value, min=low, max=high, step=step or (high - low) / 100,
                         description=description, **_LAYOUT)


def log_slider(description: str, value: float, low: float, high: float) -> w.FloatLogSlider:
    """A slider on a log scale between ``low`` and ``high`` (e.g. learning rates)."""
    import math

    return w.FloatLogSlider(value=value, base=10, min=math.log10(low), max=math.log10(high), step=0.05,
                            description=description, readout_format=".2e", **_LAYOUT)


def int_slider(description: str, value: int, low: int, high: int, step: int = 1) -> w.IntSlider:
    """An integer slider from ``low`` to ``high`` starting at ``value``."""
    return w.IntSlider(value=value, min=low, max=high, step=step, description=description, **_LAYOUT)


def dropdown(description: str, options, value=None) -> w.Dropdown:
    """A drop-down menu of ``options`` showing ``value`` (default the first option)."""
    options = list(options)
    return w.Dropdown(options=options, value=value if value is not None else options[0], description=description,
                      style=_LAYOUT["style"], layout=_LAYOUT["layout"])


def interactive(draw: Callable[..., object], **controls: w.ValueWidget) -> w.VBox:
    """Controls above a figure: ``draw(**values)`` is called now and whenever a control moves.

    ``draw`` makes a matplotlib figure (the widget shows it) and may print text.
    """
    for name, control in controls.items():
        if not isinstance(control, w.ValueWidget):
            raise TypeError(f"control {name!r} must be an ipywidgets value widget, got {type(control).__name__}")

    def show(**values):
        draw(**values)
        plt.show()

    out = w.interactive_output(show, controls)
    return w.VBox([w.VBox(list(controls.values())), out])


def paths_and_losses(fn, runs, *, optimum: float, title: str, resolution: int = 120):
    """The figure of a widget that compares runs on a 2-D function: the widgets of chapters 4-6 draw it.

    Left: the paths of ``runs`` (``{label: Trace}``) on the contours of ``fn``; right: their losses
    minus ``optimum`` on a log axis, with ``title`` above. Returns the two axes.
    """
    from optlib import plot

    fig, (left, right) = plot.subplots(2, height=3.8)
    plot.contour(fn, ax=left, paths=runs, resolution=resolution)
    plot.loss_curves(runs, ax=right, optimum=optimum)
    right.set_title(title, fontsize=10)
    return left, right


def stopped_or(trace, text: str) -> str:
    """Why ``trace`` stopped early (a NaN/inf loss), cut to 40 characters for a title; else ``text``."""
    return trace.stopped[:40] if trace.stopped else text


def optimizer_playground(function: str = "rosenbrock", optimizer: str = "GD", lr: float = 1e-3,
                         steps: int = 200, start=None, functions=None, optimizers=None) -> w.VBox:
    """Pick a test function and an optimizer, set lr, steps and the start point, watch the path.

    Left: contour plot with the path; right: the loss (f − f* on a log axis when f* is known).
    """
    from optlib import functions as fns
    from optlib import optim, plot, run

    functions = functions or ["rosenbrock", "quadratic", "beale", "himmelblau", "saddle", "monkey_saddle", "quartic"]
    optimizers = optimizers or optim.OPTIMIZERS
    built = {name: fns.get_function(name) for name in functions}
    f0 = built[function]
    x0 = start if start is not None else f0.start.tolist()
    c = dict(
        function=dropdown("function", functions, function),
        optimizer=dropdown("optimizer", list(optimizers), optimizer),
        lr=log_slider("learning rate", lr, 1e-5, 1.0),
        steps=int_slider("steps", steps, 1, 2000),
        x1=float_slider("start x1", x0[0], -5, 5, 0.05),
        x2=float_slider("start x2", x0[1], -5, 5, 0.05),
    )

    def on_function(change):
        new_start = built[change["new"]].start.tolist()
        with c["x1"].hold_trait_notifications(), c["x2"].hold_trait_notifications():
            c["x1"].value, c["x2"].value = new_start

    c["function"].observe(on_function, names="value")

    def draw(function, optimizer, lr, steps, x1, x2):
        fn = built[function]
        trace = run.minimize(fn, [x1, x2], optimizers[optimizer], steps=steps, lr=lr, on_nonfinite="stop",
                             name=optimizer)
        fig, (left, right) = plot.subplots(2, height=3.6)
        plot.contour(fn, ax=left, paths={optimizer: trace})
        plot.loss_curves({optimizer: trace}, ax=right, optimum=fn.min_value, logy=fn.min_value is not None)
        status = trace.stopped or f"f after {trace.steps} steps: {trace.final_loss:.3g}"
        right.set_title(status if len(status) < 60 else status[:57] + "...")

    return interactive(draw, **c)
