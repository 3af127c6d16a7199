r"""The natural-gradient chapter's 2-parameter problem and its widget: natural gradient against gradient
descent under a change of coordinates θ = Aφ.

The problem is binary logistic regression s = xᵀθ with two weights and no bias, on 200 fixed examples
whose two features have standard deviations 2 and 0.25 (rotated by half a radian), so that the loss
is badly conditioned for gradient descent. With n examples, p_i = σ(x_iᵀθ) and labels y_i ∈ {0, 1}:

.. math::
    L(\theta) = \frac1n \sum_i \ell_i(\theta), \quad \nabla L = \frac1n X^\top (p - y), \quad
    F = \frac1n X^\top \operatorname{diag}\big(p \odot (1 - p)\big) X = \nabla^2 L .

Training in other coordinates φ, with θ = Aφ for an invertible A, means training on the features
Aᵀx (s = xᵀAφ). Then ∇_φ L = Aᵀ∇_θ L and F_φ = AᵀF_θA, so the natural-gradient step mapped back,
A F_φ⁻¹ ∇_φ L = F_θ⁻¹ ∇_θ L, is the same in all coordinates, while the gradient step mapped back is
A Aᵀ ∇_θ L. Damping λ breaks the invariance: (F_φ + λI) is not Aᵀ(F_θ + λI)A.
"""
from __future__ import annotations

import math

import ipywidgets as w
import numpy as np
import torch
import torch.nn.functional as F

from optlib import functions
from optlib.optim.natural import NaturalGradient, fisher_matrix
from optlib.optim.sgd import SGD
from optlib.widgets import float_slider, int_slider, interactive

__all__ = ["LogisticRegression2D", "reparameterization", "reparameterized_path", "smoothness",
           "fisher_directions", "direction_angles", "draw_fields", "draw_reparameterization",
           "reparameterization_widget"]

F64 = torch.float64
#: The methods :func:`reparameterized_path` runs: gradient descent and natural gradient (true Fisher).
METHODS = ("gd", "natural")


class LogisticRegression2D(functions.TestFunction):
    r"""Mean binary cross-entropy of s = xᵀθ on ``n`` fixed examples, as a function of θ ∈ ℝ².

    The features are x = R diag(``scales``) z with z ~ N(0, I) and R a rotation by ``angle``; the labels
    are drawn from the logistic model with weights ``w_true`` (a well-specified model), all from
    ``seed``. ``X`` (n, 2) and ``y`` (n,) hold the data, float64. The minimum is found by Newton's
    method (30 steps from 0, to round-off); the start is (−3, 8), in the plot window
    [−4, 6] × [−4, 10]. Calling the object on points of shape (..., 2) gives the loss at each.
    """

    name = "logistic regression"
    log_levels = True

    def __init__(self, n: int = 200, seed: int = 0, scales=(2.0, 0.25), angle: float = 0.5,
                 w_true=(1.0, 3.0)):
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 2, generator=gen, dtype=F64)
        c, s = math.cos(angle), math.sin(angle)
        rotation = torch.tensor([[c, -s], [s, c]], dtype=F64)
        self.X = z @ torch.diag(torch.tensor(scales, dtype=F64)) @ rotation.T
        self.y = torch.bernoulli(torch.sigmoid(self.X @ torch.tensor(w_true, dtype=F64)), generator=gen)
        self.dim = 2
        theta = torch.zeros(2, dtype=F64)
        for _ in range(30):
            theta = theta - torch.linalg.solve(self.fisher(theta), self.gradient(theta))
        super().__init__(2, [(-4.0, 6.0), (-4.0, 10.0)], minima=[theta.tolist()],
                         min_value=self.value(theta).item(), start=[-3.0, 8.0])

    def value(self, theta: torch.Tensor) -> torch.Tensor:
        """L(θ) for θ of shape (..., 2)."""
        scores = theta.to(F64) @ self.X.T
        return F.softplus(-(2 * self.y - 1) * scores).mean(-1)

    def gradient(self, theta) -> torch.Tensor:
        """∇L(θ) = Xᵀ(p − y)/n at one point θ of shape (2,)."""
        theta = self._point(theta).to(F64)
        return self.X.T @ (torch.sigmoid(self.X @ theta) - self.y) / len(self.y)

    def fisher(self, theta) -> torch.Tensor:
        """F(θ) = Xᵀ diag(p(1 − p)) X / n, which is also the Hessian of L, at one point θ of shape (2,)."""
        theta = self._point(theta).to(F64)
        p = torch.sigmoid(self.X @ theta)
        return self.X.T @ (self.X * (p * (1 - p))[:, None]) / len(self.y)

    def hessian(self, theta) -> torch.Tensor:
        """∇²L(θ): the Fisher, for a linear model with the logistic likelihood."""
        return self.fisher(theta)


def reparameterization(scale: float, skew: float) -> torch.Tensor:
    """A = [[1, skew], [0, scale]]: θ₁ = φ₁ + skew·φ₂ and θ₂ = scale·φ₂ (invertible for scale ≠ 0)."""
    if scale == 0:
        raise ValueError("scale must be nonzero (A must be invertible)")
    return torch.tensor([[1.0, float(skew)], [0.0, float(scale)]], dtype=F64)


def smoothness(problem: LogisticRegression2D, A=None) -> float:
    r"""L_φ = λ_max(AᵀXᵀXA)/(4n), a bound on the Hessian's largest eigenvalue in the coordinates φ (θ = Aφ).

    Since p(1 − p) ≤ 1/4, gradient descent with step 1/L_φ decreases the loss from anywhere.
    ``A=None`` means θ itself.
    """
    X = problem.X if A is None else problem.X @ torch.as_tensor(A, dtype=F64)
    return torch.linalg.eigvalsh(X.T @ X).max().item() / (4 * len(X))


def reparameterized_path(problem: LogisticRegression2D, A, method: str, steps: int, lr: float,
                         damping: float = 0.0, start=None) -> torch.Tensor:
    """Train in φ with θ = Aφ and return the iterates mapped back to θ, shape (steps + 1, 2).

    ``method`` is ``"gd"`` (``optlib.optim.SGD`` at ``lr``) or ``"natural"``
    (``optlib.optim.NaturalGradient`` at ``lr`` with ``damping``, the true Fisher of the Bernoulli
    likelihood). The run starts at θ₀ = ``start`` (default ``problem.start``), that is φ₀ = A⁻¹θ₀,
    and works in float64. ``A=None`` trains in θ.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    A = torch.eye(2, dtype=F64) if A is None else torch.as_tensor(A, dtype=F64)
    features, y = problem.X @ A, problem.y
    theta0 = problem.start if start is None else torch.as_tensor(start, dtype=F64)
    phi = torch.linalg.solve(A, theta0.to(F64)).requires_grad_(True)
    if method == "natural":
        opt = NaturalGradient([phi], lr=lr, damping=damping, loss="binary_cross_entropy")

        def closure():
            return features @ phi, y
    else:
        opt = SGD([phi], lr=lr)

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(features @ phi, y)
            loss.backward()
            return loss

    path = [A @ phi.detach()]
    for _ in range(steps):
        opt.step(closure)
        path.append(A @ phi.detach())
    return torch.stack(path)


def fisher_directions(problem: LogisticRegression2D, theta) -> dict[str, torch.Tensor]:
    """The gradient g, the natural gradient F⁻¹g and the empirical-Fisher direction F_emp⁻¹g at θ.

    Both matrices come from :func:`optlib.optim.natural.fisher_matrix` (``"true"`` and
    ``"empirical"``) for the Bernoulli likelihood; returns ``{"gradient", "natural", "empirical"}``.
    """
    theta = torch.as_tensor(theta, dtype=F64).detach().clone().requires_grad_(True)
    scores = problem.X @ theta
    g = torch.autograd.grad(F.binary_cross_entropy_with_logits(scores, problem.y), theta, retain_graph=True)[0]
    out = {"gradient": g}
    for kind in ("true", "empirical"):
        fisher = fisher_matrix(scores, problem.y, [theta], kind, loss="binary_cross_entropy")
        out["natural" if kind == "true" else "empirical"] = torch.linalg.solve(fisher, g)
    return out


def _angle(u: torch.Tensor, v: torch.Tensor) -> float:
    cos = float(u @ v / (u.norm() * v.norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def direction_angles(problem: LogisticRegression2D, points) -> np.ndarray:
    """The angle in degrees between the natural gradient and the empirical-Fisher direction at each
    point of ``points`` (k, 2)."""
    angles = []
    for theta in torch.as_tensor(points, dtype=F64):
        d = fisher_directions(problem, theta)
        angles.append(_angle(d["natural"], d["empirical"]))
    return np.array(angles)


def draw_fields(problem: LogisticRegression2D, axes, *, grid: int = 9, paths=None):
    """The unit natural-gradient directions −F⁻¹g (``axes[0]``) and empirical-Fisher directions −F_emp⁻¹g
    (``axes[1]``) on a ``grid`` × ``grid`` lattice over the loss's contours; ``paths`` (``{label: (k, 2)}``)
    are drawn on the panel whose title starts like the label (``"natural"`` or ``"empirical"``).
    The empirical panel colours each arrow by its angle to the natural gradient. Returns ``axes``.
    """
    from optlib import plot

    (x0, x1), (y0, y1) = problem.bounds
    xs, ys = np.linspace(x0 + 0.5, x1 - 0.5, grid), np.linspace(y0 + 0.5, y1 - 0.5, grid)
    P = np.array([(a, b) for b in ys for a in xs])
    dirs = [fisher_directions(problem, p) for p in torch.tensor(P, dtype=F64)]
    angles = np.array([_angle(d["natural"], d["empirical"]) for d in dirs])
    arrows = {}
    for key in ("natural", "empirical"):
        v = -torch.stack([d[key] / d[key].norm() for d in dirs]).numpy()
        arrows[key] = v
    titles = {"natural": "natural gradient $-F^{-1}g$", "empirical": r"empirical Fisher $-F_{\rm emp}^{-1}g$"}
    for ax, key in zip(axes, ("natural", "empirical")):
        plot.contour(problem, ax=ax, levels=20, resolution=100, filled=False, title=titles[key])
        v = arrows[key]
        color = angles if key == "empirical" else None
        kw = dict(angles="xy", scale_units="xy", scale=1.0 / 0.8, width=0.006, zorder=3)
        if color is None:
            ax.quiver(P[:, 0], P[:, 1], v[:, 0], v[:, 1], color="k", **kw)
        else:
            q = ax.quiver(P[:, 0], P[:, 1], v[:, 0], v[:, 1], color, cmap="plasma", clim=(0, 180), **kw)
            ax.figure.colorbar(q, ax=ax, shrink=0.85, label="angle to $F^{-1}g$ (degrees)")
        for label, path in (paths or {}).items():
            if label.startswith(key):
                xy = np.asarray(path)
                ax.plot(xy[:, 0], xy[:, 1], "-o", color="C3", ms=3, lw=1.5, label=label, zorder=4)
        ax.set(xlabel=r"$\theta_1$", ylabel=r"$\theta_2$")
        ax.legend(loc="lower left", fontsize=8, frameon=True)
    return axes


def draw_reparameterization(problem: LogisticRegression2D, scale: float, skew: float, damping: float,
                            steps: int):
    """Gradient descent and natural gradient in θ and in φ (θ = Aφ, A from :func:`reparameterization`).

    Each gradient-descent run takes the step 1/L of its own coordinates (:func:`smoothness`); natural
    gradient takes step 1 with ``damping`` λ. Left: the four paths in θ on the loss's contours; right:
    L − L* of each. The right panel's title gives the largest distance between the two natural-gradient
    paths and between the two gradient-descent paths (in θ, over the ``steps`` steps). Returns the two axes.
    """
    from optlib import plot

    A = reparameterization(scale, skew)
    runs = {
        "GD in θ": reparameterized_path(problem, None, "gd", steps, 1 / smoothness(problem)),
        "GD in φ": reparameterized_path(problem, A, "gd", steps, 1 / smoothness(problem, A)),
        "NG in θ": reparameterized_path(problem, None, "natural", steps, 1.0, damping),
        "NG in φ": reparameterized_path(problem, A, "natural", steps, 1.0, damping),
    }
    fig, (left, right) = plot.subplots(2, height=3.8)
    plot.contour(problem, ax=left, levels=20, resolution=100, filled=False, title="paths in θ")
    left.set(xlabel=r"$\theta_1$", ylabel=r"$\theta_2$")
    styles = {"GD in θ": ("C0", "-", "o"), "GD in φ": ("C1", "--", "s"), "NG in θ": ("C2", "-", "o"),
              "NG in φ": ("C3", ":", "x")}
    for label, path in runs.items():
        color, ls, marker = styles[label]
        xy = path.numpy()
        left.plot(xy[:, 0], xy[:, 1], ls=ls, marker=marker, color=color, ms=3, lw=1.3, label=label, zorder=4)
        gaps = np.maximum(problem(path).numpy() - problem.min_value, 1e-17)
        right.plot(np.arange(len(gaps)), gaps, ls=ls, marker=marker, color=color, ms=3, label=label)
    left.legend(loc="upper right", fontsize=8, frameon=True)
    right.set_yscale("log")
    right.set(xlabel="step", ylabel="$L - L^*$")
    right.legend(loc="center right", fontsize=8)
    ng_gap = (runs["NG in θ"] - runs["NG in φ"]).norm(dim=1).max().item()
    gd_gap = (runs["GD in θ"] - runs["GD in φ"]).norm(dim=1).max().item()
    right.set_title(f"paths apart by: NG {ng_gap:.0e}, GD {gd_gap:.2g}", fontsize=10)
    return left, right


def reparameterization_widget() -> w.VBox:
    """Sliders for A's scale and skew (θ = Aφ, :func:`reparameterization`), the damping λ and the steps.

    Draws :func:`draw_reparameterization` on :class:`LogisticRegression2D`; defaults: scale 6.4 and
    skew −3.5 (close to whitening the features: gradient descent in φ is much faster than in θ), λ = 0
    and 40 steps: the two natural-gradient paths coincide, the gradient-descent paths do not.
    """
    problem = LogisticRegression2D()
    return interactive(
        lambda scale, skew, damping, steps: draw_reparameterization(problem, scale, skew, damping, steps),
        scale=float_slider("scale", 6.4, 0.1, 8.0, 0.1),
        skew=float_slider("skew", -3.5, -4.0, 4.0, 0.1),
        damping=float_slider("damping λ", 0.0, 0.0, 1.0, 0.01),
        steps=int_slider("steps", 40, 5, 200, 5),
    )
