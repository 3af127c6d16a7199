"""The widget of chapter 16: Shampoo, SOAP, Adam and SGD racing on the Kronecker-structured matrix problem
of :mod:`optlib.kronecker`, under a slider for the condition number."""
from __future__ import annotations

from optlib import plot
from optlib.kronecker import METHODS, best_run, matrix_problem, steps_to
from optlib.widgets import dropdown, int_slider, interactive, log_slider

__all__ = ["draw_matrix_race", "matrix_race_widget"]


def draw_matrix_race(cond: float, optimizer: str, steps: int = 200, target: float = 1e-4):
    """SGD, Adam and ``optimizer`` (each at its best learning rate) on :func:`optlib.kronecker.matrix_problem` (cond, cond).

    Draws the relative loss of each against the step; the title gives the steps each took to ``target``.
    Returns the axes.
    """
    if optimizer not in METHODS:
        raise ValueError(f"optimizer must be one of {list(METHODS)}, got {optimizer!r}")
    problem = matrix_problem(cond, cond)
    names = list(dict.fromkeys(["SGD", "Adam", optimizer]))
    curves, counts = {}, []
    for name in names:
        lr, losses = best_run(problem, name, target, steps)
        curves[f"{name}, lr {lr:g}"] = [v / losses[0] for v in losses]
        count = steps_to(losses, target)
        counts.append(f"{name} {count if count is not None else 'never'}")
    fig, ax = plot.subplots(1)
    ax = plot.lines(range(steps + 1), curves, ax=ax, logy=True, xlabel="step",
                    ylabel="loss / first loss", title=f"steps to {target:.0e}: " + ", ".join(counts))
    ax.set_ylim(target / 100, 10)
    ax.axhline(target, color="k", ls=":", lw=1)
    ax.legend(loc="lower left", fontsize=9)
    return ax


def matrix_race_widget():
    """A slider for the condition number of A and B, a menu for the optimizer, a slider for the steps.

    Draws :func:`draw_matrix_race`; defaults: condition number 30 (the Hessian's is 30⁴ ≈ 8e5),
    Shampoo, 200 steps.
    """
    return interactive(
        lambda cond, optimizer, steps: draw_matrix_race(cond, optimizer, steps),
        cond=log_slider("cond(A) = cond(B)", 30.0, 1.0, 300.0),
        optimizer=dropdown("optimizer", list(METHODS), "Shampoo"),
        steps=int_slider("steps", 200, 50, 500, 50),
    )
