r"""The widget of the Schedule-Free chapter: the three sequences y, z and x of Schedule-Free SGD on a
noisy least-squares problem (:func:`optlib.averaging.schedule_free_curves`), under sliders.
"""
from __future__ import annotations


import numpy as np
import torch

from optlib import averaging, plot
from optlib.widgets import float_slider, int_slider, interactive, log_slider

__all__ = ["draw_sequences", "sequences_widget"]

def draw_sequences(problem: averaging.NoisyLeastSquares, beta: float, lr: float, steps: int, *,
                   seeds: int = 16, start=None, seed: int = 0):
    """The median excess risk F − F* over ``seeds`` runs of y, z and x against the step (log-log axes).

    The title gives the final median of x and of y. Returns the axes.
    """
    curves = averaging.schedule_free_curves(problem, lr=lr, beta=beta, steps=steps, seeds=seeds, start=start,
                                  generator=torch.Generator().manual_seed(seed))
    medians = {f"{name} ({label})": np.median(curves[name], axis=1)
               for name, label in (("z", "SGD iterate"), ("y", "gradient point"), ("x", "average"))}
    _, ax = plot.subplots(height=3.6)
    plot.lines(curves["steps"], medians, ax=ax, logx=True, logy=True, xlabel="step $t$",
               ylabel="median $F - F^*$", styles={"z (SGD iterate)": ":"})
    ax.set_title(f"β = {beta:.2f}, γ = {lr:.3g}: x ends at {np.median(curves['x'][-1]):.2g}, "
                 f"y at {np.median(curves['y'][-1]):.2g}")
    ax.legend(loc="lower left")
    return ax


def sequences_widget() -> "object":
    """Sliders for β, the learning rate γ and the number of steps; draws :func:`draw_sequences`.

    The problem is ``averaging.NoisyLeastSquares.make(generator=seed 0)`` (1000 examples, 10
    dimensions), started at w* + 3 in every coordinate; defaults β = 0.9, γ = 0.05, 2000 steps.
    """
    problem = averaging.NoisyLeastSquares.make(generator=torch.Generator().manual_seed(0))
    start = problem.w_star + 3.0
    return interactive(
        lambda beta, lr, steps: draw_sequences(problem, beta, lr, steps, start=start),
        beta=float_slider("β", 0.9, 0.0, 1.0, 0.05),
        lr=log_slider("learning rate γ", 0.05, 1e-3, 0.2),
        steps=int_slider("steps", 2000, 100, 5000, 100),
    )


