"""The widget of the KKT chapter, and the drawings and small solvers its cells share.

- :func:`draw_problem` draws a 2-D :class:`~optlib.constrained.Problem`: contours of the
  objective, each equality's curve h_i(x) = 0, and each inequality's boundary g_i(x) = 0 with
  its infeasible side (g_i > 0) shaded; :func:`draw_gradients` adds the arrows −∇f, ∇h_i and
  ∇g_i at a point.
- :func:`level_problem` is the chapter's running example, f(x) = (x₁ − 2)² + 2(x₂ − 1)² on the
  disk ‖x‖² ≤ b (or the circle ‖x‖² = b); :func:`level_widget` moves b and shows the multiplier
  falling to 0 once the disk holds the unconstrained minimum (2, 1), at b = 5.
- :func:`svm_problem` and :func:`draw_margin`: the hard-margin support-vector machine as a
  constrained problem, and its separating line, margins and support vectors.
"""
from __future__ import annotations

import math

import ipywidgets as w
import numpy as np
import torch

from optlib.constrained import Problem, kkt_check, slsqp
from optlib.widgets import dropdown, float_slider, interactive

__all__ = ["LEVEL_KINDS", "UNCONSTRAINED_MINIMUM", "draw_gradients", "draw_level", "draw_margin",
           "draw_problem", "draw_reports", "grid_values", "level_objective", "level_problem", "level_widget",
           "svm_problem"]

F64 = torch.float64
#: The constraint kinds of :func:`level_problem` and the widget's menu.
LEVEL_KINDS = ("inequality", "equality")
#: Where f(x) = (x₁ − 2)² + 2(x₂ − 1)² is smallest without the constraint; ‖·‖² = 5 there.
UNCONSTRAINED_MINIMUM = (2.0, 1.0)
_ARROW_COLORS = {"f": "tab:red", "h": "tab:blue", "g": "tab:orange"}


def grid_values(fn, bounds, resolution: int = 150):
    """``(X, Y, V)``: ``fn`` at every point of a ``resolution``² grid over ``bounds`` = ((lo₁, hi₁), (lo₂, hi₂)).

    ``fn`` maps a vector x of shape (2,) to a scalar or a vector; ``V`` has shape
    (resolution, resolution, k) with one slice per component (k = 1 for a scalar). It is
    evaluated with ``torch.vmap``, so it must use torch operations only (no ``.item()``).
    """
    (lo1, hi1), (lo2, hi2) = bounds
    xs = torch.linspace(float(lo1), float(hi1), resolution, dtype=F64)
    ys = torch.linspace(float(lo2), float(hi2), resolution, dtype=F64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        values = torch.vmap(fn)(torch.stack([X, Y], -1).reshape(-1, 2))
    return X.numpy(), Y.numpy(), values.reshape(resolution, resolution, -1).numpy()


def draw_problem(problem: Problem, *, ax, bounds, levels: int = 20, resolution: int = 150,
                 title: str | None = None):
    """Contours of ``problem``'s objective over ``bounds``, its equality curves and inequality boundaries.

    Each h_i(x) = 0 is a solid black curve; each g_i(x) = 0 a black curve with the infeasible
    side g_i > 0 shaded grey. The axes get an equal aspect (angles and circles look as they
    are) and a legend entry per kind of constraint. Returns ``ax``.
    """
    X, Y, F = grid_values(problem.objective, bounds, resolution)
    ax.contour(X, Y, F[..., 0], levels=levels, cmap="viridis", linewidths=0.8)
    if problem.equalities is not None:
        H = grid_values(problem.equalities, bounds, resolution)[2]
        for i in range(H.shape[-1]):
            ax.contour(X, Y, H[..., i], levels=[0.0], colors="k", linewidths=2.0)
        ax.plot([], [], "k-", lw=2.0, label="$h(x) = 0$")
    if problem.inequalities is not None:
        G = grid_values(problem.inequalities, bounds, resolution)[2]
        for i in range(G.shape[-1]):
            ax.contourf(X, Y, G[..., i], levels=[0.0, np.inf], colors=["0.5"], alpha=0.35)
            ax.contour(X, Y, G[..., i], levels=[0.0], colors="k", linewidths=1.2)
        ax.fill_between([], [], color="0.5", alpha=0.35, label="$g(x) > 0$ (infeasible)")
    ax.set(xlim=bounds[0], ylim=bounds[1], xlabel="$x_1$", ylabel="$x_2$")
    if title is not None:
        ax.set_title(title)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(False)
    return ax


def _gradients(problem: Problem, x: torch.Tensor):
    x = x.detach().to(F64).clone().requires_grad_(True)
    with torch.enable_grad():
        f, h, g = problem.values(x)
        grads = {"f": torch.autograd.grad(f, x)[0]}
        grads["h"] = [torch.autograd.grad(v, x, retain_graph=True)[0] for v in h]
        grads["g"] = [torch.autograd.grad(v, x, retain_graph=True)[0] for v in g]
    return grads


def draw_gradients(problem: Problem, x, *, ax, length: float = 1.0, constraints: str = "all",
                   marker: str | None = "o"):
    """Arrows at ``x``: −∇f (red), each ∇h_i (blue) and ∇g_i (orange), on one common scale.

    The longest arrow is ``length`` long (in the units of the axes) and the others keep their
    ratios to it, so at a KKT point −∇f = Σλ_i∇h_i + Σμ_i∇g_i shows the multipliers as ratios of
    lengths. A vector shorter than 1e-6 (∇f at an unconstrained minimum) draws no arrow. ``constraints``
    picks the constraint gradients drawn: ``"all"``, ``"active"`` (the equalities and the
    inequalities with g_i(x) ≥ −1e-6) or ``"none"``. A black ``marker`` marks x (``None``: no
    marker). Returns ``ax``.
    """
    from optlib import plot

    if constraints not in ("all", "active", "none"):
        raise ValueError(f"constraints must be 'all', 'active' or 'none', got {constraints!r}")
    x = torch.as_tensor(x, dtype=F64).reshape(-1)
    if x.numel() != 2:
        raise ValueError(f"draw_gradients needs a point in the plane, got {x.numel()} coordinates")
    grads = _gradients(problem, x)
    g_values = problem.values(x)[2]
    arrows = [(-grads["f"], r"$-\nabla f$", _ARROW_COLORS["f"])]
    if constraints != "none":
        for i, v in enumerate(grads["h"]):
            label = r"$\nabla h$" if len(grads["h"]) == 1 else rf"$\nabla h_{i + 1}$"
            arrows.append((v, label, _ARROW_COLORS["h"]))
        for i, v in enumerate(grads["g"]):
            if constraints == "all" or g_values[i] >= -1e-6:
                label = r"$\nabla g$" if len(grads["g"]) == 1 else rf"$\nabla g_{i + 1}$"
                arrows.append((v, label, _ARROW_COLORS["g"]))
    arrows = [(v, label, color) for v, label, color in arrows if v.norm() > 1e-6]
    if arrows:
        scale = length / max(v.norm().item() for v, _, _ in arrows)
        # one legend entry per label: the same label drawn at a second point is not listed again
        seen = {t.get_text() for t in ax.get_legend().get_texts()} if ax.get_legend() else set()
        for v, label, color in arrows:
            plot.arrows(x, v.reshape(1, 2), ax=ax, scale=scale, colors=[color],
                        labels=None if label in seen else [label])
    if marker is not None:
        ax.plot(x[0].item(), x[1].item(), "k" + marker, ms=6, zorder=8)
    return ax


def level_objective(x: torch.Tensor) -> torch.Tensor:
    """f(x) = (x₁ − 2)² + 2(x₂ − 1)², smallest at (2, 1), outside the unit disk."""
    return (x[0] - 2.0) ** 2 + 2.0 * (x[1] - 1.0) ** 2


def level_problem(b: float, kind: str = "inequality") -> Problem:
    """min :func:`level_objective` s.t. ‖x‖² ≤ b (``kind="inequality"``) or ‖x‖² = b (``"equality"``)."""
    if kind not in LEVEL_KINDS:
        raise ValueError(f"kind must be one of {list(LEVEL_KINDS)}, got {kind!r}")
    if not b > 0 or not math.isfinite(b):
        raise ValueError(f"b must be a positive number, got {b!r}")

    def level(x):
        return (x @ x - b).reshape(1)

    sign = "=" if kind == "equality" else r"\leq"
    name = rf"$\|x\|^2 {sign} {b:g}$"
    if kind == "equality":
        return Problem(level_objective, equalities=level, name=name)
    return Problem(level_objective, inequalities=level, name=name)


def draw_level(b: float, kind: str = "inequality", *, ax=None):
    """:func:`level_problem` (b, ``kind``) solved by :func:`optlib.constrained.slsqp`, drawn with −∇f and the constraint's gradient.

    Prints one line (x*, the multiplier, whether the constraint binds) and puts the multiplier
    and the verdict in the title. The constraint is active when g(x*) ≥ −1e-6; an equality
    always is. Returns the axes.
    """
    from optlib import plot

    problem = level_problem(b, kind)
    x, lam, mu = slsqp(problem, torch.tensor([0.5, 0.5], dtype=F64))
    report = kkt_check(problem, x, lam, mu, tol=1e-6)
    if ax is None:
        _, ax = plot.subplots(1, height=4.2)
    bound = max(3.2, math.sqrt(b) + 1.2)
    draw_problem(problem, ax=ax, bounds=((-bound, bound), (-bound, bound)))
    ax.plot(*UNCONSTRAINED_MINIMUM, "w*", ms=14, mec="k", zorder=9, label="unconstrained minimum")
    draw_gradients(problem, x, ax=ax, length=1.0, constraints="active")
    if kind == "equality":
        value, name, verdict = lam.item(), "λ", "an equality always binds"
    else:
        value, name = mu.item(), "μ"
        verdict = "active" if problem.values(x)[2].item() >= -1e-6 else "inactive"
    value = 0.0 if abs(value) < 5e-7 else value  # no "-0.000" from a multiplier at the solver's tolerance
    ax.set_title(f"{problem.name}: {name} = {value:.3f}, {verdict}", fontsize=10)
    ax.legend(loc="lower left", fontsize=8, frameon=True)
    kkt = "KKT holds" if report.satisfied else "KKT violated: " + ", ".join(report.violated)
    print(f"b = {b:g}: x* = ({x[0]:.3f}, {x[1]:.3f}), {name} = {value:.3f}, {verdict}; {kkt}")
    return ax


def level_widget() -> w.VBox:
    """A slider for the level b and a menu for the constraint's kind (‖x‖² ≤ b or ‖x‖² = b).

    Draws :func:`draw_level`; defaults b = 1 and ``inequality``. Past b = 5 the disk holds the
    unconstrained minimum: μ drops to 0 while the circle's λ turns negative.
    """
    return interactive(
        lambda b, kind: draw_level(b, kind),
        b=float_slider("level b", 1.0, 0.2, 9.0, 0.1),
        kind=dropdown("constraint", LEVEL_KINDS, "inequality"),
    )


def draw_reports(reports, *, ax, title: str | None = None):
    """A table of KKT reports (``{label: KKTReport}``): one row per report, one column per condition.

    A cell is red and shows the residual (2 significant digits) where the condition fails, and
    is green with "ok" where the residual is within the report's tolerance. Returns ``ax``.
    """
    from matplotlib.colors import ListedColormap

    from optlib.constrained import CONDITIONS

    reports = dict(reports)
    if not reports:
        raise ValueError("reports is empty")
    failed = np.array([[report.residuals[c] > report.tol for c in CONDITIONS] for report in reports.values()])
    ax.imshow(failed, cmap=ListedColormap(["#d9f0d3", "#f4a582"]), vmin=0, vmax=1, aspect="auto")
    for i, report in enumerate(reports.values()):
        for j, c in enumerate(CONDITIONS):
            r = report.residuals[c]
            ax.text(j, i, f"{r:.2g}" if failed[i, j] else "ok", ha="center", va="center", fontsize=10)
    ax.set_xticks(range(len(CONDITIONS)), [c.replace(" ", "\n") for c in CONDITIONS])
    ax.set_yticks(range(len(reports)), list(reports))
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title)
    return ax


def svm_problem(X: torch.Tensor, y: torch.Tensor) -> Problem:
    """The hard-margin SVM on points ``X`` (n, 2) with labels ``y`` = ±1, over v = (w₁, w₂, b).

    min ½‖w‖² s.t. g_i(v) = 1 − y_i (wᵀx_i + b) ≤ 0 for every i: the widest band around the line
    wᵀx + b = 0 that leaves every point outside it (the margin is 2/‖w‖).
    """
    X, y = torch.as_tensor(X, dtype=F64), torch.as_tensor(y, dtype=F64)
    if X.ndim != 2 or X.shape[1] != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must have shape (n, 2) and y shape (n,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("the labels y must be +1 or -1")
    return Problem(lambda v: 0.5 * (v[:2] ** 2).sum(), inequalities=lambda v: 1 - y * (X @ v[:2] + v[2]),
                   name="hard-margin SVM")


def draw_margin(X, y, v, support, *, ax, title: str | None = None):
    """Points ``X`` coloured by ``y`` (±1), the line wᵀx + b = 0 for v = (w₁, w₂, b), the margins wᵀx + b = ±1,
    and circles around the points listed in ``support``. Returns ``ax``."""
    X, y, v = (torch.as_tensor(a, dtype=F64) for a in (X, y, v))
    for label, color, name in ((1.0, "tab:blue", "$y = +1$"), (-1.0, "tab:orange", "$y = -1$")):
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=22, color=color, label=name, zorder=3)
    lo, hi = X[:, 0].min().item() - 0.5, X[:, 0].max().item() + 0.5
    xs = torch.linspace(lo, hi, 2, dtype=F64)
    w1, w2, b = v.tolist()
    for level, style, name in ((0.0, "k-", "$w^\\top x + b = 0$"), (1.0, "k--", "margins $\\pm 1$"), (-1.0, "k--", None)):
        ax.plot(xs, (level - b - w1 * xs) / w2, style, lw=1.2, label=name)
    idx = list(support)
    if idx:
        ax.scatter(X[idx, 0], X[idx, 1], s=140, facecolors="none", edgecolors="k", lw=1.5,
                   label="support vectors", zorder=4)
    pad = 0.5
    ax.set(xlim=(lo, hi), ylim=(X[:, 1].min().item() - pad, X[:, 1].max().item() + pad),
           xlabel="$x_1$", ylabel="$x_2$", title=title)
    ax.set_aspect("equal", adjustable="box")
    return ax
