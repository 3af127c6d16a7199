"""The widget of chapter 2 (gradients): the error of a finite difference against its step."""
from __future__ import annotations

from typing import Callable

import ipywidgets as w
import numpy as np
import torch

from optlib import grad, plot
from optlib.widgets import dropdown, interactive, log_slider


def finite_difference_widget(f: Callable[[torch.Tensor], torch.Tensor], x0: float, exact: float, *,
                             h: float = 1e-5, hs=None) -> w.VBox:
    """The error of a finite-difference derivative of ``f`` at ``x0``, with a slider for the step h.

    ``exact`` is the true derivative f'(``x0``). The figure draws the error over the steps ``hs``
    (default 129 steps from 1e-16 to 1) for the chosen method and precision, the round-off
    guide ε/h, and the chosen step as a red dot; a line below prints its error. Drop-downs pick
    the method (central, forward) and the precision (float64, float32).
    """
    hs = np.logspace(-16, 0, 129) if hs is None else np.asarray(hs, dtype=float)
    curves = {}

    def draw(h, method, precision):
        dtype = getattr(torch, precision)
        if (method, precision) not in curves:
            curves[method, precision] = grad.finite_difference_errors(f, x0, exact, hs, method=method,
                                                                     dtype=dtype).numpy()
        err = grad.finite_difference_errors(f, x0, exact, [h], method=method, dtype=dtype)[0].item()
        eps = torch.finfo(dtype).eps
        # a zero error has no logarithm: draw it at the floor of the axis
        ax = plot.lines(hs, {f"{method}, {precision}": np.maximum(curves[method, precision], 1e-17),
                             r"$\varepsilon / h$": eps / hs}, styles={r"$\varepsilon / h$": "k:"},
                        logx=True, logy=True, xlabel="step $h$", ylabel="|error of the derivative|",
                        title=f"h = {h:.1e}: error {err:.2e}")
        plot.lines([h], {"chosen $h$": [max(err, 1e-17)]}, ax=ax, styles={"chosen $h$": "ro"})
        ax.set_ylim(1e-17, 10)
        # the error curve is a V from the upper left to the upper right: the bottom centre is free
        ax.legend(loc="lower center")
        print(f"{method} difference in {precision}, h = {h:.2e}: |error| = {err:.2e}")

    return interactive(draw, h=log_slider("step h", h, 1e-16, 1.0),
                       method=dropdown("method", ["central", "forward"]),
                       precision=dropdown("precision", ["float64", "float32"]))
