"""The widgets of the constrained-training chapter, and the runs and figures they share with it.

* :func:`dual_step_widget`: primal-dual gradient descent-ascent on a small problem, with sliders for
  the dual step size η, the primal learning rate and the steps; it draws the multiplier and the
  distance to the solution at every step (:func:`draw_dual_step`, from :func:`optlib.constrained.primal_dual_path`).
* :func:`parity_widget`: a classifier of :func:`optlib.fairness.biased_lending` trained under a
  demographic-parity constraint, with sliders for the slack and the penalty weight and a menu
  for the formulation (augmented Lagrangian or quadratic penalty) (:func:`draw_parity`, from
  :func:`optlib.fairness.fit_parity` and :func:`optlib.fairness.parity_report`).

:func:`draw_constrained` draws a 2-D problem: the objective's contours, the infeasible region
shaded, and paths on top.
"""
from __future__ import annotations


import ipywidgets as w
import torch

from optlib.constrained import AugmentedLagrangian, Problem, QuadraticPenalty, primal_dual_path
from optlib.fairness import fit_parity, parity_report
from optlib.widgets import dropdown, float_slider, int_slider, interactive, log_slider

__all__ = ["FORMULATIONS", "draw_constrained", "draw_dual_step", "draw_parity", "dual_step_widget", "parity_widget"]

F64 = torch.float64
#: The formulations the parity widget offers, by the name the menu shows: weight -> formulation.
#:
#: :meta hide-value:
FORMULATIONS = {"augmented Lagrangian": lambda weight: AugmentedLagrangian(penalty=weight),
                "quadratic penalty": lambda weight: QuadraticPenalty(weight=weight, growth=1.0)}


def _grid(fn, bounds, resolution: int):
    xs = torch.linspace(*bounds[0], resolution, dtype=F64)
    ys = torch.linspace(*bounds[1], resolution, dtype=F64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([X, Y], -1).reshape(-1, 2)
    with torch.no_grad():
        values = torch.func.vmap(fn)(points)
    return xs, ys, values.reshape(resolution, resolution, -1)


def draw_constrained(problem: Problem, *, ax, bounds, paths=None, marks=None, resolution: int = 150,
                     title: str | None = None):
    """A 2-D ``problem``: filled contours of its objective, its infeasible region shaded grey and its
    constraints' zero levels drawn white; ``paths`` (``{label: (k, 2) points}``) and ``marks``
    (``{label: point}``) on top. The functions of ``problem`` must take one point of shape (2,)
    (they are evaluated on the grid with ``torch.func.vmap``). Returns ``ax``.
    """
    from optlib import plot

    if len(bounds) != 2:
        raise ValueError(f"draw_constrained draws 2-D problems: give bounds ((x_lo, x_hi), (y_lo, y_hi)), got {bounds}")
    xs, ys, Z = _grid(lambda p: problem.objective(p).reshape(1), bounds, resolution)
    plot.contour_grid(xs, ys, Z[..., 0], ax=ax, levels=25, xlabel="$x_1$", ylabel="$x_2$", title=title,
                      colorbar=False)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    for fn, infeasible in ((problem.inequalities, lambda v: v > 0), (problem.equalities, lambda v: v != 0)):
        if fn is None:
            continue
        _, _, values = _grid(lambda p, fn=fn: fn(p).reshape(-1), bounds, resolution)
        for i in range(values.shape[-1]):
            V = values[..., i]
            if problem.inequalities is fn:
                ax.contourf(X.numpy(), Y.numpy(), infeasible(V).to(F64).numpy(), levels=[0.5, 1.5], colors="0.85",
                            alpha=0.6)
            ax.contour(X.numpy(), Y.numpy(), V.numpy(), levels=[0.0], colors="w", linewidths=1.8)
    for label, points in (paths or {}).items():
        xy = torch.as_tensor(points, dtype=F64).reshape(-1, 2)
        ax.plot(xy[:, 0].numpy(), xy[:, 1].numpy(), "-o", ms=2.5, lw=1.3, label=label, zorder=4)
    for (label, point), marker in zip((marks or {}).items(), "*Xsd^v"):
        p = torch.as_tensor(point, dtype=F64).reshape(2)
        ax.scatter([p[0].item()], [p[1].item()], marker=marker, s=140, c="white", edgecolors="k", zorder=5,
                   label=label)
    ax.set(xlim=bounds[0], ylim=bounds[1])
    ax.set_aspect("equal", adjustable="box")
    if paths or marks:
        ax.legend(loc="upper left", fontsize=8, frameon=True)
    return ax


def _settled(values: torch.Tensor, window: int) -> tuple[float, float]:
    tail = values[-window:]
    return float(tail.min()), float(tail.max())


def draw_dual_step(problem: Problem, x0, x_star, mu_star: float, dual_lr: float, lr: float, steps: int):
    """:func:`optlib.constrained.primal_dual_path` on ``problem`` (one inequality) from ``x0``, against the solution (x*, μ*).

    Left: the multiplier μ_k and μ* (dashed); right: ‖x_k − x*‖ on a log axis. The left title says
    whether μ settled (it moved by less than 1e-3 over the last quarter of the steps) or the range it
    still swings over. Returns the two axes.
    """
    from optlib import plot

    run = primal_dual_path(problem, x0, lr=lr, dual_lr=dual_lr, steps=steps)
    fig, (left, right) = plot.subplots(2, height=3.4)
    mu = run.multipliers[:, -1]
    steps_done = torch.arange(1, len(mu) + 1)
    plot.lines(steps_done, mu, ax=left, xlabel="step $k$", ylabel=r"$\mu_k$ (dashed: $\mu^*$)")
    left.axhline(mu_star, color="k", ls="--", lw=1)
    distance = (run.path - torch.as_tensor(x_star, dtype=F64)).norm(dim=1).clamp(min=1e-17)
    plot.lines(torch.arange(len(distance)), distance, ax=right, logy=True, xlabel="step $k$",
               ylabel=r"$\|x_k - x^*\|$")
    if run.stopped:
        title = run.stopped
    elif len(mu) == 0:
        title = "no steps"
    else:
        low, high = _settled(mu, max(1, len(mu) // 4))
        title = (f"μ settled at {mu[-1].item():.3f}" if high - low < 1e-3
                 else f"μ still swings over [{low:.2f}, {high:.2f}]")
    left.set_title(title, fontsize=10)
    right.set_title(f"α = {lr:.3g}, η = {dual_lr:.3g}", fontsize=10)
    return left, right


def dual_step_widget(problem: Problem, x0, x_star, mu_star: float) -> w.VBox:
    """Sliders for the dual step η, the primal learning rate α and the steps of :func:`draw_dual_step`.

    ``problem`` has one inequality, with solution ``x_star`` and multiplier ``mu_star`` (e.g. from
    SLSQP). Defaults: η = 3 (oscillating on the chapter's problem), α = 0.1, 600 steps.
    """
    return interactive(
        lambda dual_lr, lr, steps: draw_dual_step(problem, x0, x_star, mu_star, dual_lr, lr, steps),
        dual_lr=log_slider("dual step η", 3.0, 1e-3, 30.0),
        lr=log_slider("primal step α", 0.1, 1e-3, 1.0),
        steps=int_slider("steps", 600, 50, 2000, 50),
    )


def draw_parity(data, slack: float, formulation: str, weight: float, free_rates=None):
    """Fit under abs(gap) ≤ ``slack`` with ``formulation`` (a key of :data:`FORMULATIONS`) of ``weight``.

    Left: the approval rate P(yes) of each group in the training labels, for the unconstrained
    classifier (``free_rates``, when given) and for this one. Right: the multiplier of the binding
    side of the constraint after each L-BFGS step. The title gives the smooth and hard gaps and the
    test accuracy. Returns the two axes.
    """
    from optlib import plot

    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {list(FORMULATIONS)}, got {formulation!r}")
    model, trace = fit_parity(data, slack, FORMULATIONS[formulation](weight))
    report = parity_report(model, data)
    y, s = data.y_train.to(F64), data.s_train
    bars = {"labels": (float(y[s == 0].mean()), float(y[s == 1].mean()))}
    if free_rates is not None:
        bars["unconstrained"] = tuple(free_rates)
    bars["constrained"] = report["rates_train"]
    fig, (left, right) = plot.subplots(2, height=3.4)
    width = 0.8 / len(bars)
    for i, (label, (r0, r1)) in enumerate(bars.items()):
        left.bar([i * width, 1 + i * width], [r0, r1], width=width, label=label)
    left.set_xticks([width * (len(bars) - 1) / 2, 1 + width * (len(bars) - 1) / 2], ["group 0", "group 1"])
    left.set(ylabel="P(yes)", ylim=(0, 0.8))
    left.legend(loc="upper left", fontsize=8)
    left.set_title(f"gap {report['gap_train']:.3f} (slack {slack:.2f}), hard {report['hard_gap_train']:.3f}",
                   fontsize=10)
    steps, multipliers = zip(*trace.metrics["multipliers"])
    mu = torch.tensor(multipliers, dtype=F64).max(dim=1).values
    plot.lines(torch.tensor(steps) + 1, mu, ax=right, marker="o", xlabel="L-BFGS step",
               ylabel=r"multiplier $\mu$")
    right.set_title(f"{formulation}: test accuracy {report['acc_test']:.3f}", fontsize=10)
    return left, right


def parity_widget(seed: int = 0) -> w.VBox:
    """Sliders for the parity slack and the weight (ρ of the augmented Lagrangian, w of the penalty), a menu
    for the formulation; draws :func:`draw_parity` on ``biased_lending(seed=seed)``.

    Defaults: slack 0.05, augmented Lagrangian, weight 20.
    """
    from optlib.fairness import biased_lending

    data = biased_lending(seed=seed)
    free_rates = parity_report(fit_parity(data)[0], data)["rates_train"]
    return interactive(
        lambda slack, formulation, weight: draw_parity(data, slack, formulation, weight, free_rates),
        slack=float_slider("slack ε", 0.05, 0.0, 0.12, 0.01),
        formulation=dropdown("formulation", FORMULATIONS, "augmented Lagrangian"),
        weight=log_slider("weight ρ or w", 20.0, 1.0, 1000.0),
    )
