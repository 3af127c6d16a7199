"""optlib.widgets.natural_gradient: the 2-parameter logistic regression of chapter 13, the paths in other
coordinates, the direction fields, and the coordinates widget, which builds and draws without a kernel."""

import re

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from optlib import plot
from optlib.optim.natural import fisher_matrix
from optlib.widgets import natural_gradient as ngw

pytestmark = pytest.mark.usefixtures("figures_closed")
F64 = torch.float64


@pytest.fixture(scope="module")
def problem():
    return ngw.LogisticRegression2D()


def _gaps(title):
    ng, gd = re.fullmatch(r"paths apart by: NG (\S+), GD (\S+)", title).groups()
    return float(ng), float(gd)


def test_the_problem_is_mean_cross_entropy_with_its_gradient_and_fisher_equal_to_the_hessian(problem):
    assert problem.X.shape == (200, 2) and problem.y.shape == (200,) and problem.X.dtype == F64
    theta = torch.tensor([0.4, -1.3], dtype=F64, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(problem.X @ theta, problem.y)
    assert problem(theta).item() == pytest.approx(loss.item(), rel=1e-12)
    (g,) = torch.autograd.grad(loss, theta)
    torch.testing.assert_close(problem.gradient(theta.detach()), g)
    hessian = torch.autograd.functional.hessian(problem.value, theta.detach())
    torch.testing.assert_close(problem.fisher(theta.detach()), hessian)
    torch.testing.assert_close(problem.hessian(theta.detach()), hessian)
    out = problem.X @ theta
    torch.testing.assert_close(fisher_matrix(out, problem.y, [theta], "true", loss="binary_cross_entropy"), hessian)
    # the minimum: gradient zero; the grid evaluation used by contour plots keeps the batch shape
    assert problem.gradient(problem.minima[0]).norm().item() < 1e-12
    assert problem(torch.zeros(4, 3, 2, dtype=F64)).shape == (4, 3)
    assert problem.min_value == pytest.approx(problem(problem.minima[0]).item())


def test_natural_gradient_paths_do_not_depend_on_the_coordinates_but_gradient_descent_paths_do(problem):
    A = ngw.reparameterization(scale=0.3, skew=1.5)
    torch.testing.assert_close(A, torch.tensor([[1.0, 1.5], [0.0, 0.3]], dtype=F64))
    theta = ngw.reparameterized_path(problem, None, "natural", 8, 1.0)
    phi = ngw.reparameterized_path(problem, A, "natural", 8, 1.0)
    assert theta.shape == (9, 2)
    torch.testing.assert_close(theta[0], problem.start)
    assert (theta - phi).norm(dim=1).max().item() < 1e-9
    assert problem(theta[-1]).item() - problem.min_value < 1e-12  # Newton's method: converged
    gd_theta = ngw.reparameterized_path(problem, None, "gd", 30, 1 / ngw.smoothness(problem))
    gd_phi = ngw.reparameterized_path(problem, A, "gd", 30, 1 / ngw.smoothness(problem, A))
    assert (gd_theta - gd_phi).norm(dim=1).max().item() > 0.1
    # damping breaks the invariance
    damped = [ngw.reparameterized_path(problem, B, "natural", 8, 1.0, damping=0.3) for B in (None, A)]
    assert (damped[0] - damped[1]).norm(dim=1).max().item() > 0.1
    with pytest.raises(ValueError, match="method"):
        ngw.reparameterized_path(problem, A, "adam", 3, 0.1)
    with pytest.raises(ValueError, match="scale"):
        ngw.reparameterization(0.0, 1.0)


def test_smoothness_bounds_the_largest_curvature_in_the_given_coordinates(problem):
    A = ngw.reparameterization(2.0, -1.0)
    bound = ngw.smoothness(problem, A)
    for theta in (problem.start, problem.minima[0], torch.zeros(2, dtype=F64)):
        curvature = torch.linalg.eigvalsh(A.T @ problem.fisher(theta) @ A).max().item()
        assert curvature <= bound * (1 + 1e-12)  # equal at theta = 0, where p(1 - p) = 1/4
    assert ngw.smoothness(problem) == pytest.approx(
        torch.linalg.eigvalsh(problem.X.T @ problem.X).max().item() / 800)


def test_fisher_directions_and_angles(problem):
    d = ngw.fisher_directions(problem, problem.start)
    torch.testing.assert_close(d["gradient"], problem.gradient(problem.start))
    torch.testing.assert_close(problem.fisher(problem.start) @ d["natural"], d["gradient"])
    p = torch.sigmoid(problem.X @ problem.start)
    emp = problem.X.T @ (problem.X * ((p - problem.y) ** 2)[:, None]) / 200
    torch.testing.assert_close(emp @ d["empirical"], d["gradient"])
    angles = ngw.direction_angles(problem, torch.stack([problem.start, problem.minima[0] + 1.0]))
    assert angles.shape == (2,) and ((angles >= 0) & (angles <= 180)).all()
    assert angles[0] > 90  # the chapter's start: the empirical Fisher points away from the natural gradient


def test_draw_fields_draws_arrows_and_the_paths_on_their_panels(problem):
    fig, axes = plot.subplots(2)
    path = ngw.reparameterized_path(problem, None, "natural", 4, 1.0)
    ngw.draw_fields(problem, axes, grid=4, paths={"natural gradient": path, "empirical Fisher": path})
    for ax in axes:
        assert len(ax.collections) >= 2  # contours and arrows
        assert ax.get_xlabel() == r"$\theta_1$"
    assert [t.get_text() for t in axes[0].get_legend().get_texts()][-1] == "natural gradient"
    assert [t.get_text() for t in axes[1].get_legend().get_texts()][-1] == "empirical Fisher"


def test_reparameterization_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = ngw.reparameterization_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["scale", "skew", "damping λ", "steps"]
    scale, skew, damping, steps = controls
    assert (scale.value, skew.value, damping.value, steps.value) == pytest.approx((6.4, -3.5, 0.0, 40))
    left, right = plt.gcf().axes[:2]
    assert len(left.lines) >= 4 and len(right.lines) == 4
    ng_gap, gd_gap = _gaps(right.get_title())
    assert ng_gap < 1e-9 and gd_gap > 1.0
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels == ["GD in θ", "GD in φ", "NG in θ", "NG in φ"]
    damping.value = 0.5
    ng_gap, _ = _gaps(plt.gcf().axes[1].get_title())
    assert ng_gap > 0.1
