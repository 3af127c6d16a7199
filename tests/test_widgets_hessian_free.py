"""optlib.spectra (spectra, CG and gradient descent on them, CG's bound) and the CG widget of chapter 11 built on it."""

import math

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from optlib import curvature, spectra
from optlib.widgets import hessian_free as hf

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", spectra.SPECTRA)
@pytest.mark.parametrize("dim", [2, 7, 100, 1000])
def test_spectrum_runs_from_one_to_kappa_in_increasing_order(shape, dim):
    for kappa in (1.0, 10.0, 1e4):
        values = spectra.spectrum(shape, dim, kappa)
        assert values.shape == (dim,) and values.dtype == F64
        assert values[0].item() == pytest.approx(1.0, rel=1e-12)
        assert values[-1].item() == pytest.approx(kappa, rel=1e-12)
        assert (values[1:] >= values[:-1]).all()


def test_spectrum_shapes():
    uniform = spectra.spectrum("uniform", 11, 101.0)
    torch.testing.assert_close(uniform, torch.linspace(1, 101, 11, dtype=F64))
    geometric = spectra.spectrum("geometric", 5, 1e4)
    torch.testing.assert_close(geometric, torch.logspace(0, 4, 5, dtype=F64))
    chebyshev = spectra.spectrum("chebyshev", 1001, 1e3)
    # dense at both ends: a tenth of the points lie in the lowest and highest 1% of the range
    low, high = (chebyshev < 1 + 0.01 * 999).sum().item(), (chebyshev > 1e3 - 0.01 * 999).sum().item()
    assert low == high and 50 <= low <= 70
    clustered = spectra.spectrum("clustered", 500, 1e6)
    # five groups, each within a factor 1e6 ** CLUSTER_WIDTH (plus rounding) of its smallest member
    groups = torch.arange(500) * spectra.CLUSTERS // 500
    for k in range(spectra.CLUSTERS):
        members = clustered[groups == k]
        assert len(members) == 100
        assert members.max() / members.min() <= 1e6 ** (spectra.CLUSTER_WIDTH * 1.01) + 1e-12
    # too few eigenvalues for five clusters: still from 1 to kappa
    assert spectra.spectrum("clustered", 3, 100.0).tolist() == pytest.approx([1.0, 10.0, 100.0])


def test_spectrum_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        spectra.spectrum("random", 10, 10.0)
    with pytest.raises(ValueError, match="dim"):
        spectra.spectrum("uniform", 1, 10.0)
    with pytest.raises(ValueError, match="kappa"):
        spectra.spectrum("uniform", 10, 0.5)


def test_matrix_with_spectrum_has_that_spectrum_and_is_reproducible():
    values = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=F64)
    A = spectra.matrix_with_spectrum(values, gen(3))
    torch.testing.assert_close(A, A.T)
    torch.testing.assert_close(torch.linalg.eigvalsh(A), values.sort().values)
    torch.testing.assert_close(A, spectra.matrix_with_spectrum(values, gen(3)))
    assert not torch.allclose(A, spectra.matrix_with_spectrum(values, gen(4)))
    with pytest.raises(TypeError, match="Generator"):
        spectra.matrix_with_spectrum(values, None)
    with pytest.raises(ValueError, match="1-D"):
        spectra.matrix_with_spectrum(torch.eye(2, dtype=F64), gen())


@pytest.mark.parametrize("rotate", [False, True])
def test_cg_on_spectrum_records_errors_below_the_bound_and_residuals(rotate):
    kappa = 1e3
    run = spectra.cg_on_spectrum(spectra.spectrum("chebyshev", 300, kappa), generator=gen(1), tol=1e-8, rotate=rotate)
    assert run.converged and run.iterations == run.result.iterations
    assert len(run.errors) == len(run.residuals) == run.iterations + 1
    assert run.errors[0] == 1.0 and run.residuals[0] == pytest.approx(1.0)
    assert run.residuals[-1] <= 1e-8
    # CG minimizes the energy-norm error over growing Krylov spaces: it never rises, and stays under the bound
    assert all(b <= a * (1 + 1e-9) for a, b in zip(run.errors, run.errors[1:]))
    bound = spectra.cg_bound(kappa, run.iterations)
    assert all(e <= 1.01 * c for e, c in zip(run.errors, bound))


def test_cg_on_spectrum_agrees_with_an_explicit_solve_and_the_rotated_matrix():
    values = spectra.spectrum("uniform", 40, 50.0)
    diagonal = spectra.cg_on_spectrum(values, generator=gen(5), tol=1e-12)
    rotated = spectra.cg_on_spectrum(values, generator=gen(5), tol=1e-12, rotate=True)
    # the rotated run draws Q first, so its b differs; both converge, in a similar number of iterations
    assert diagonal.converged and rotated.converged
    assert abs(diagonal.iterations - rotated.iterations) <= 3
    b = torch.randn(40, generator=gen(5), dtype=F64)
    torch.testing.assert_close(diagonal.result.x, b / values, rtol=1e-9, atol=0)
    g = gen(5)
    A = spectra.matrix_with_spectrum(values, g)
    b_rot = torch.randn(40, generator=g, dtype=F64)
    torch.testing.assert_close(rotated.result.x, torch.linalg.solve(A, b_rot), rtol=1e-9, atol=1e-12)


def test_floating_point_cg_needs_more_than_d_on_a_geometric_spectrum_but_not_on_a_uniform_one():
    for rotate in (False, True):
        geometric = spectra.cg_on_spectrum(spectra.spectrum("geometric", 100, 1e4), generator=gen(2), rotate=rotate)
        uniform = spectra.cg_on_spectrum(spectra.spectrum("uniform", 100, 1e4), generator=gen(2), rotate=rotate)
        assert geometric.converged and 300 < geometric.iterations <= 1000
        assert uniform.converged and uniform.iterations <= 100


def test_cg_iterations_grow_like_the_square_root_of_kappa_and_gradient_descent_like_kappa():
    kappas = [10.0, 100.0, 1e3, 1e4]
    cg_counts = [spectra.cg_on_spectrum(spectra.spectrum("chebyshev", 1000, k), generator=gen(1), tol=1e-6).iterations
                 for k in kappas]
    gd_counts = [spectra.gd_iterations(spectra.spectrum("chebyshev", 1000, k), generator=gen(1)) for k in kappas]
    assert 0.45 <= np.polyfit(np.log(kappas), np.log(cg_counts), 1)[0] <= 0.55
    assert 0.95 <= np.polyfit(np.log(kappas), np.log(gd_counts), 1)[0] <= 1.05
    for kappa, count in zip(kappas, cg_counts):
        assert count <= math.ceil(spectra.cg_iterations_bound(kappa, 1e-6))
    # GD against its own bound (kappa - 1)/(kappa + 1) per step on every component
    for kappa, count in zip(kappas, gd_counts):
        assert count <= math.log(1e-6) / math.log((kappa - 1) / (kappa + 1)) + 1


def test_gd_iterations_matches_a_plain_loop_and_reports_a_cap():
    values = spectra.spectrum("uniform", 20, 30.0)
    b = torch.randn(20, generator=gen(8), dtype=F64)
    x, step, k = torch.zeros(20, dtype=F64), 2 / 31, 0
    while (b - values * x).norm() > 1e-6 * b.norm():
        x, k = x + step * (b - values * x), k + 1
    assert spectra.gd_iterations(values, generator=gen(8)) == k
    assert spectra.gd_iterations(values, generator=gen(8), max_iter=3) is None
    with pytest.raises(ValueError, match="positive"):
        spectra.gd_iterations(torch.tensor([1.0, -1.0], dtype=F64), generator=gen())


def test_cg_bound_and_its_iteration_count():
    assert spectra.cg_bound(1.0, 3) == [1.0, 0.0, 0.0, 0.0]
    rho = (10 - 1) / (10 + 1)
    # 2 rho^k, capped at 1 (CG's error never exceeds its start)
    assert spectra.cg_bound(100.0, 4) == pytest.approx([min(1.0, 2 * rho**k) for k in range(5)])
    assert spectra.cg_bound(100.0, 4)[1] == 1.0 and spectra.cg_bound(100.0, 4)[4] < 1.0
    k = spectra.cg_iterations_bound(100.0, 1e-6)
    assert 2 * rho**k == pytest.approx(1e-6)
    assert spectra.cg_iterations_bound(1e4, 1e-6) == pytest.approx(0.5 * 100 * math.log(2e6), rel=1e-3)
    assert spectra.cg_iterations_bound(1.0, 1e-6) == 0.0
    with pytest.raises(ValueError, match="tol"):
        spectra.cg_iterations_bound(10.0, 0.0)


def test_cg_on_spectrum_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        spectra.cg_on_spectrum(torch.tensor([1.0, 0.0], dtype=F64), generator=gen())
    with pytest.raises(TypeError, match="Generator"):
        spectra.cg_on_spectrum(torch.tensor([1.0, 2.0], dtype=F64), generator=0)


@pytest.mark.usefixtures("figures_closed")
def test_cg_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = hf.cg_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["condition κ", "dimension d", "spectrum"]
    kappa, dim, shape = controls
    assert (kappa.value, dim.value, shape.value) == pytest.approx((1e3, 500, "chebyshev"))
    assert list(shape.options) == list(spectra.SPECTRA)
    left, right = plt.gcf().axes[:2]
    # about the bound's count (365 here; the last iterations depend on the CPU's rounding)
    title = left.get_title()
    assert title.endswith("iterations to 1e-10 (bound 375)") and 355 <= int(title.split()[0]) <= 375
    # error, residual, bound, and the dotted line at k = d = 500 (within 1.5 times the 365 iterations)
    assert len(left.lines) == 4 and len(right.lines) == 1
    assert len(plt.gcf().legends) == 1
    shape.value = "clustered"
    title = plt.gcf().axes[0].get_title()
    assert title.endswith("iterations to 1e-10 (bound 375)") and int(title.split()[0]) < 100


@pytest.mark.usefixtures("figures_closed")
def test_draw_cg_marks_d_and_reports_a_run_that_did_not_converge():
    left, _ = hf.draw_cg("geometric", 1e4, 100)
    assert int(left.get_title().split()[0]) > 300
    assert any(line.get_xdata()[0] == 100 for line in left.lines[3:])  # the dotted line at k = d
    left, _ = hf.draw_cg("geometric", 1e6, 100)
    assert left.get_title() == "not converged in 1000 iterations"
    with pytest.raises(ValueError, match="shape"):
        hf.draw_cg("random", 10.0, 10)


def test_cg_on_spectrum_is_what_optlib_cg_does():
    values = spectra.spectrum("geometric", 30, 100.0)
    run = spectra.cg_on_spectrum(values, generator=gen(9), tol=1e-9)
    b = torch.randn(30, generator=gen(9), dtype=F64)
    plain = curvature.conjugate_gradient(lambda v: values * v, b, tol=1e-9)
    assert plain.iterations == run.iterations
    torch.testing.assert_close(plain.x, run.result.x)
