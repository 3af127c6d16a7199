"""Tests of optlib.geometry: curvature, critical points, random Hessians, convexity, basins, permutations."""
import math

import numpy as np
import pytest
import torch

from optlib import functions, geometry as geo, landscape, models, optim, run


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ curvature of one Hessian

def test_condition_number_of_known_matrices():
    assert geo.condition_number(torch.diag(torch.tensor([1.0, 10.0, 100.0]))) == pytest.approx(100.0)
    q = functions.Quadratic(condition_number=37.0, angle=0.4)
    assert geo.condition_number(q.hessian(torch.zeros(2, dtype=torch.float64))) == pytest.approx(37.0, rel=1e-10)
    # singular values of a symmetric indefinite matrix are the |eigenvalues|
    assert geo.condition_number(torch.diag(torch.tensor([-4.0, 2.0]))) == pytest.approx(2.0)
    assert geo.condition_number(torch.diag(torch.tensor([0.0, 1.0]))) == math.inf
    assert geo.condition_number(torch.zeros(2, 2)) == math.inf


def test_hessian_spectrum_recovers_rotated_eigenvectors():
    q = functions.Quadratic(condition_number=10.0, angle=math.pi / 6)
    values, vectors = geo.hessian_spectrum(q.A)
    torch.testing.assert_close(values, torch.tensor([1.0, 10.0], dtype=torch.float64))
    first = torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)], dtype=torch.float64)
    assert abs(float(vectors[:, 0] @ first)) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(vectors @ torch.diag(values) @ vectors.T, q.A)


@pytest.mark.parametrize("bad, message", [
    (torch.ones(2, 3), "square"),
    (torch.tensor([[1.0, 2.0], [0.0, 1.0]]), "symmetric"),
    (torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]), "finite"),
    (torch.ones(3), "square"),
])
def test_bad_hessians_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        geo.condition_number(bad)
    with pytest.raises(ValueError, match=message):
        geo.classify_critical_point(bad)


def test_classify_critical_points_of_the_test_functions():
    zero = torch.zeros(2, dtype=torch.float64)
    assert geo.classify_critical_point(functions.Saddle().hessian(zero)) == "saddle"
    assert geo.classify_critical_point(functions.MonkeySaddle().hessian(zero)) == "degenerate"
    assert geo.classify_critical_point(functions.Quartic().hessian(zero)) == "degenerate"
    assert geo.classify_critical_point(functions.Quadratic(5.0).hessian(zero)) == "minimum"
    assert geo.classify_critical_point(-functions.Quadratic(5.0).A) == "maximum"
    h = functions.Himmelblau()
    assert [geo.classify_critical_point(h.hessian(p)) for p in h.minima] == ["minimum"] * 4
    assert [geo.classify_critical_point(h.hessian(p)) for p in h.saddles] == ["saddle"] * 4
    assert geo.classify_critical_point(h.hessian(h.maxima[0])) == "maximum"
    # a zero eigenvalue does not hide a saddle: opposite signs already decide it
    assert geo.classify_critical_point(torch.diag(torch.tensor([1.0, 0.0, -1.0]))) == "saddle"
    assert geo.classify_critical_point(torch.diag(torch.tensor([1.0, 0.0]))) == "degenerate"
    with pytest.raises(ValueError, match="tol must be >= 0"):
        geo.classify_critical_point(torch.eye(2), tol=-1)


# ------------------------------------------------------------------ random Hessians (GOE)

def test_goe_matrices_are_symmetric_with_the_stated_variances():
    H = geo.goe_matrices(4, 50_000, generator=gen(), dtype=torch.float64)
    assert H.shape == (50_000, 4, 4)
    torch.testing.assert_close(H, H.transpose(-1, -2))
    off = H[:, 0, 1]
    diag = H[:, 2, 2]
    assert off.var().item() == pytest.approx(1 / 4, rel=0.03)
    assert diag.var().item() == pytest.approx(2 / 4, rel=0.03)
    assert abs(H.mean().item()) < 0.01


def test_fraction_positive_definite_matches_exact_small_dimension_values():
    samples = 400_000
    fractions, counts = geo.fraction_positive_definite([1, 2, 3], samples, generator=gen(1))
    exact = torch.tensor([0.5, (2 - math.sqrt(2)) / 4, (math.pi - 2 * math.sqrt(2)) / (4 * math.pi)],
                         dtype=torch.float64)
    stderr = torch.sqrt(exact * (1 - exact) / samples)
    assert ((fractions - exact).abs() < 5 * stderr).all(), (fractions, exact)
    assert counts.tolist() == (fractions * samples).round().long().tolist()


def test_fraction_positive_definite_decreases_with_dimension_faster_than_coin_flips():
    dims = [1, 2, 3, 4, 5]
    fractions, counts = geo.fraction_positive_definite(dims, 100_000, generator=gen(2))
    assert (fractions[1:] < fractions[:-1]).all()
    # independent signs would give 2^-d; eigenvalue repulsion makes all-positive far rarer
    assert (fractions[2:] < 0.5 * torch.tensor([2.0 ** -d for d in dims[2:]], dtype=torch.float64)).all()


def test_dense_and_chunked_sampling_agree_and_are_reproducible():
    a = geo.fraction_positive_definite([3], 30_000, generator=gen(3), chunk=7_000)
    b = geo.fraction_positive_definite([3], 30_000, generator=gen(3), chunk=7_000)
    assert a[1].tolist() == b[1].tolist()


def test_index_distribution_is_symmetric_and_peaks_in_the_middle():
    dist = geo.index_distribution(6, 40_000, generator=gen(4))
    assert dist.shape == (7,)
    assert dist.sum().item() == pytest.approx(1.0)
    # H and -H are equally likely: index k and dim - k have the same probability
    assert torch.allclose(dist, dist.flip(0), atol=0.01)
    assert int(dist.argmax()) == 3
    assert dist[0] < 0.01 and dist[6] < 0.01


def test_large_goe_spectrum_follows_the_semicircle():
    eig = geo.random_symmetric_spectra(300, 4, generator=gen(5), dtype=torch.float64).reshape(-1)
    assert eig.min() > -2.3 and eig.max() < 2.3
    # second moment of the semicircle on [-2, 2] is 1
    assert (eig**2).mean().item() == pytest.approx(1.0, abs=0.05)
    # fraction of eigenvalues in [-1, 1] vs the integral of the density
    xs = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    inside = torch.trapezoid(geo.semicircle_density(xs), xs).item()
    assert ((eig.abs() <= 1).double().mean().item()) == pytest.approx(inside, abs=0.03)
    total = torch.trapezoid(geo.semicircle_density(torch.linspace(-3, 3, 30001)), torch.linspace(-3, 3, 30001))
    assert total.item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dims=[0], samples=10), "each dim must be a positive integer"),
    (dict(dims=[], samples=10), "at least one"),
    (dict(dims=[2], samples=0), "samples must be a positive integer"),
    (dict(dims=[2], samples=10, chunk=0), "chunk must be a positive integer"),
])
def test_fraction_positive_definite_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        geo.fraction_positive_definite(**kwargs)


def test_is_positive_definite_on_known_matrices():
    batch = torch.stack([torch.eye(3), -torch.eye(3), torch.diag(torch.tensor([1.0, 2.0, -0.1]))])
    assert geo.is_positive_definite(batch).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="batch of square matrices"):
        geo.is_positive_definite(torch.eye(3))


# ------------------------------------------------------------------ convexity

def test_convex_quadratic_passes_both_checks():
    q = functions.Quadratic(condition_number=50.0, angle=0.3)
    pts = geo.sample_box(q.bounds, 300, generator=gen(6))
    check = geo.jensen_check(q, pts, pairs=5000, generator=gen(7))
    assert check and check.max_violation <= check.tolerance
    assert geo.is_convex_on(q, pts, method="jensen", generator=gen(8))
    assert geo.is_convex_on(q, pts, method="hessian")


def test_rosenbrock_is_not_convex_and_the_violation_is_real():
    r = functions.Rosenbrock()
    pts = geo.sample_box(r.bounds, 300, generator=gen(9))
    check = geo.jensen_check(r, pts, pairs=5000, generator=gen(10))
    assert not check
    gap = geo.jensen_gap(r, check.x[None], check.y[None], torch.tensor([check.t], dtype=torch.float64))
    assert gap.item() < -1.0  # the function lies well above its chord: a proof of non-convexity
    assert not geo.is_convex_on(r, pts, method="hessian")
    # at (0, 1) the Hessian is diag(2 - 400, 200)
    assert geo.min_hessian_eigenvalues(r, torch.tensor([[0.0, 1.0]], dtype=torch.float64)).item() \
        == pytest.approx(-398.0)


def test_quartic_is_convex_with_zero_curvature_at_its_minimum():
    f = functions.Quartic(dim=2)
    pts = geo.sample_box(f.bounds, 200, generator=gen(11))
    assert geo.is_convex_on(f, pts, method="jensen", generator=gen(12))
    assert geo.is_convex_on(f, pts, method="hessian")
    assert geo.min_hessian_eigenvalues(f, torch.zeros(1, 2, dtype=torch.float64)).item() == 0.0


def test_segment_and_chord_and_jensen_gap_agree():
    r = functions.Rosenbrock()
    x = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0], dtype=torch.float64)
    s = torch.linspace(0, 1, 5, dtype=torch.float64)
    on_segment, chord = geo.segment_and_chord(r, x, y, s)
    torch.testing.assert_close(chord, 4.0 * (1 - s))  # f(-1, 1) = 4 and f(1, 1) = 0
    assert on_segment[2].item() == pytest.approx(r(torch.tensor([0.0, 1.0])).item())
    gap = geo.jensen_gap(r, x[None], y[None], torch.tensor([0.5], dtype=torch.float64))
    assert gap.item() == pytest.approx(chord[2].item() - on_segment[2].item())


def test_convexity_helpers_validate():
    q = functions.Quadratic()
    with pytest.raises(ValueError, match="must have shape"):
        geo.jensen_check(q, torch.zeros(5))
    with pytest.raises(ValueError, match="2 columns"):
        geo.jensen_check(q, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="pairs must be a positive integer"):
        geo.jensen_check(q, torch.zeros(5, 2), pairs=0)
    with pytest.raises(ValueError, match="t must lie in"):
        geo.jensen_gap(q, torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([1.5]))
    with pytest.raises(ValueError, match="method must be one of"):
        geo.is_convex_on(q, torch.zeros(5, 2), method="vibes")


# ------------------------------------------------------------------ sampling, saddles, basins

def test_grid_and_box_sampling():
    g = geo.grid_points(((-1, 1), (0, 2)), 5)
    assert g.shape == (25, 2) and g[:, 0].min() == -1 and g[:, 1].max() == 2
    b = geo.sample_box(((-1, 1), (0, 2), (5, 6)), 1000, generator=gen(13))
    assert b.shape == (1000, 3)
    assert (b[:, 2] >= 5).all() and (b[:, 2] <= 6).all()
    with pytest.raises(ValueError, match="lo < hi"):
        geo.grid_points(((1, -1), (0, 2)), 5)
    with pytest.raises(ValueError, match="resolution must be a positive integer"):
        geo.grid_points(((-1, 1), (0, 2)), 0)


def test_double_well_derivatives_and_critical_points():
    f = geo.DoubleWell()
    x = torch.tensor([0.7, -0.4], dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(f.gradient(x.detach()), auto)
    torch.testing.assert_close(f.hessian(x.detach()),
                               torch.autograd.functional.hessian(f.value, x.detach()))
    for m in f.minima:
        assert f(m).item() == pytest.approx(f.min_value)
        assert f.gradient(m).abs().max().item() == 0.0
        assert geo.classify_critical_point(f.hessian(m)) == "minimum"
    assert geo.classify_critical_point(f.hessian(f.saddles[0])) == "saddle"


def test_gd_on_the_stable_manifold_converges_to_the_saddle_and_a_perturbation_escapes():
    f = geo.DoubleWell()
    stuck = run.minimize(f, [1.5, 0.0], optim.SGD, steps=200, lr=0.1)
    assert geo.distances_to(stuck, [0.0, 0.0])[-1] < 1e-6
    y0, lr = 1e-6, 0.1
    escaped = run.minimize(f, [1.5, y0], optim.SGD, steps=200, lr=lr)
    # near the saddle y grows by (1 + lr) per step: |y_t| = y0 (1 + lr)^t while y stays small
    ys = np.abs(escaped.path()[:40, 1])
    np.testing.assert_allclose(ys, y0 * (1 + lr) ** np.arange(40), rtol=1e-6)
    assert geo.distances_to(escaped, f.minima[0])[-1] < 1e-3


def test_newton_is_attracted_to_the_saddle_and_saddle_free_newton_is_not():
    from functools import partial

    f = geo.DoubleWell()
    newton = run.minimize(f, [1.5, 1e-3], optim.Newton, steps=10)
    assert geo.distances_to(newton, [0.0, 0.0])[-1] < 1e-12
    sfn = run.minimize(f, [1.5, 1e-3], partial(optim.Newton, mode="saddle_free", damping=1e-2), steps=25)
    assert geo.distances_to(sfn, f.minima[0])[-1] < 1e-8


def test_gradient_descent_many_matches_run_minimize():
    h = functions.Himmelblau()
    starts = torch.tensor([[0.5, 0.5], [-4.0, 1.0]], dtype=torch.float64)
    final = geo.gradient_descent_many(h, starts, lr=0.005, steps=50)
    for s, f in zip(starts, final):
        trace = run.minimize(h, s, optim.SGD, steps=50, lr=0.005)
        np.testing.assert_allclose(trace.path()[-1], f.numpy(), rtol=1e-12, atol=1e-12)


def test_basins_of_himmelblau_cover_all_four_minima():
    h = functions.Himmelblau()
    starts = torch.cat([h.minima + 0.3, geo.grid_points(h.bounds, 20)])
    labels = geo.basins_of_attraction(h, starts, lr=0.005, steps=1000)
    assert labels[:4].tolist() == [0, 1, 2, 3]  # a start next to a minimum ends in it
    assert set(labels.tolist()) == {0, 1, 2, 3}
    # the saddle is stable for starts exactly on its stable manifold only: none of the grid ends elsewhere
    assert (labels >= 0).all()
    diverged = geo.basins_of_attraction(h, torch.tensor([[5.0, 5.0]], dtype=torch.float64), lr=0.1, steps=50)
    assert diverged.tolist() == [-1]


def test_nearest_labels_validates_and_handles_non_finite_points():
    pts = torch.tensor([[0.0, 0.0], [float("nan"), 1.0], [10.0, 10.0]])
    labels = geo.nearest_labels(pts, torch.tensor([[0.0, 1e-4]]), tol=1e-3)
    assert labels.tolist() == [0, -1, -1]
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        geo.nearest_labels(pts, pts, tol=0)


# ------------------------------------------------------------------ permutation symmetry

def test_permuted_network_computes_the_same_function_with_different_parameters():
    g = gen(14)
    net = models.MLP((8, 6, 5, 3), generator=g, dtype=torch.float64)
    X = torch.randn(20, 8, generator=g, dtype=torch.float64)
    perms = [torch.randperm(6, generator=g), torch.randperm(5, generator=g)]
    twin = geo.permute_hidden_units(net, perms)
    torch.testing.assert_close(twin(X), net(X))
    assert not torch.equal(landscape.flatten_params(twin), landscape.flatten_params(net))
    with pytest.raises(ValueError, match="2 hidden layers"):
        geo.permute_hidden_units(net, perms[:1])
    with pytest.raises(ValueError, match="permutation of range"):
        geo.permute_hidden_units(net, [torch.zeros(6, dtype=torch.long), perms[1]])


def test_weight_matching_recovers_a_known_permutation():
    g = gen(15)
    net = models.MLP((8, 7, 3), generator=g, dtype=torch.float64)
    perm = torch.randperm(7, generator=g)
    twin = geo.permute_hidden_units(net, [perm])
    found = geo.match_hidden_units(net, twin)
    aligned = geo.permute_hidden_units(twin, [found])
    torch.testing.assert_close(landscape.flatten_params(aligned), landscape.flatten_params(net))
    with pytest.raises(ValueError, match="exactly one hidden layer"):
        geo.match_hidden_units(models.MLP((4, 3, 3, 2)), models.MLP((4, 3, 3, 2)))


def test_heavy_ball_growth_factors():
    assert geo.heavy_ball_growth(0.1, -1.0) == pytest.approx(1.1)
    assert geo.heavy_ball_growth(0.1, 2.0) == pytest.approx(0.8)
    assert geo.heavy_ball_growth(0.1, -1.0, momentum=0.9) == pytest.approx(1 + math.sqrt(0.1))
    # the measured growth of optlib's SGD with momentum along y at the double well's saddle
    f = geo.DoubleWell()
    trace = run.minimize(f, [0.0, 1e-9], optim.SGD, steps=60, lr=0.1, momentum=0.9)
    ys = trace.path()[:, 1]
    assert ys[60] / ys[59] == pytest.approx(geo.heavy_ball_growth(0.1, -1.0, momentum=0.9), rel=1e-3)
    with pytest.raises(ValueError, match="momentum must be in"):
        geo.heavy_ball_growth(0.1, 1.0, momentum=1.0)


def test_loss_barrier():
    a = torch.linspace(0, 1, 5)
    assert geo.loss_barrier(1 + a, a) == pytest.approx(0.0)
    assert geo.loss_barrier(torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0]), a) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="start at 0 and end at 1"):
        geo.loss_barrier(torch.ones(3), torch.tensor([0.0, 0.5, 0.9]))


def test_hessian_spectrum_signs_are_canonical():
    H = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    _, Q = geo.hessian_spectrum(H)
    _, Q2 = geo.hessian_spectrum(-(-H))
    assert torch.equal(Q, Q2)
    assert (Q.gather(0, Q.abs().argmax(0, keepdim=True)) > 0).all()


# ------------------------------------------------------------------ architectures (chapter 4)

def _small_net(**kwargs):
    return models.DeepMLP(6, 5, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64, **kwargs)


def _batch():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(40, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (40,), generator=gen)


def _loss(scores, y):
    return torch.nn.functional.cross_entropy(scores, y)


def test_layer_gradient_norms_match_backward_and_leave_grads_alone():
    net, (X, y) = _small_net(residual=True), _batch()
    norms = geo.layer_gradient_norms(net, _loss, X, y)
    assert all(p.grad is None for p in net.parameters())
    _loss(net(X), y).backward()
    expected = [layer.weight.grad.norm().item() for layer in net.linear_layers()]
    np.testing.assert_allclose(norms, expected, rtol=1e-12)
    # a plain MLP: its nn.Linear modules in order
    mlp = models.MLP((6, 4, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert geo.layer_gradient_norms(mlp, _loss, X, y).shape == (2,)
    with pytest.raises(ValueError, match="X must be"):
        geo.layer_gradient_norms(net, _loss, X, y[:3])


def test_loss_along_gradient_is_a_gradient_step_and_restores_the_model():
    net, (X, y) = _small_net(norm="layer"), _batch()
    before = landscape.flatten_params(net)
    etas = [0.0, 0.1, 0.5]
    values = geo.loss_along_gradient(net, _loss, X, y, etas)
    assert torch.equal(landscape.flatten_params(net), before)
    assert values[0] == pytest.approx(_loss(net(X), y).item(), rel=1e-12)
    opt = optim.SGD(net.parameters(), lr=0.5)
    _loss(net(X), y).backward()
    opt.step()
    assert values[2] == pytest.approx(_loss(net(X), y).item(), rel=1e-12)
    # a small step along the negative gradient lowers the loss
    start, small_step = geo.loss_along_gradient(net, _loss, X, y, [0.0, 1e-4])
    assert small_step < start
    for bad in ([], [-0.1], [float("nan")]):
        with pytest.raises(ValueError, match="step_sizes"):
            geo.loss_along_gradient(net, _loss, X, y, bad)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_top_hessian_eigenvalue_matches_the_dense_hessian(norm):
    net, (X, y) = _small_net(norm=norm), _batch()
    params = list(net.parameters())
    theta = landscape.flatten_params(net)

    def loss_of(flat):
        chunks, offset = [], 0
        for p in params:
            chunks.append(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return _loss(torch.func.functional_call(net, dict(zip(dict(net.named_parameters()), chunks)), (X,)), y)

    dense = torch.autograd.functional.hessian(loss_of, theta)
    expected = torch.linalg.eigvalsh(0.5 * (dense + dense.T)).max().item()
    top = geo.top_hessian_eigenvalue(net, _loss, X, y, generator=torch.Generator().manual_seed(2))
    assert top == pytest.approx(expected, rel=1e-7)
    with pytest.raises(ValueError, match="tol"):
        geo.top_hessian_eigenvalue(net, _loss, X, y, tol=0.0)


def test_top_hessian_eigenvalue_finds_the_largest_positive_one_on_a_quadratic_model():
    # f(w) = 1/2 w^T diag(3, -10, 1) w: power iteration would return -10, the largest in size
    class Quadratic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))

        def forward(self, X):
            return X

    model = Quadratic()
    curvatures = torch.tensor([3.0, -10.0, 1.0], dtype=torch.float64)
    X, y = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    value = geo.top_hessian_eigenvalue(model, lambda out, y: 0.5 * (curvatures * model.w**2).sum(), X, y)
    assert value == pytest.approx(3.0, rel=1e-9)


def test_filter_normalized_direction_matches_row_norms_and_skips_vectors():
    net = _small_net(norm="batch")
    d = geo.filter_normalized_direction(net, generator=torch.Generator().manual_seed(0))
    assert d.shape == landscape.flatten_params(net).shape
    offset = 0
    for p in net.parameters():
        piece = d[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.ndim == 1:
            assert torch.count_nonzero(piece) == 0
        else:
            torch.testing.assert_close(piece.norm(dim=1), p.detach().norm(dim=1))
    again = geo.filter_normalized_direction(net, generator=torch.Generator().manual_seed(0))
    assert torch.equal(d, again)
