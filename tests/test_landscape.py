"""optlib.landscape: 1-D/2-D slices, flat parameter vectors, linear interpolation between models."""
import pytest
import torch

from optlib.landscape import (count_kinks, cosine, flatten_params, interpolate_models, load_flat_params,
                              random_direction, random_directions, second_differences, slice_1d, slice_minimum,
                              slice_2d)
from optlib.models import MLP
from optlib.losses import softmax_loss


def quad(theta):
    return (theta**2).sum() + theta[0] * theta[1]


@pytest.fixture
def center():
    return torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)


def test_random_direction(center):
    g = torch.Generator().manual_seed(0)
    u = random_direction(center, generator=g)
    assert u.shape == center.shape and u.dtype == center.dtype
    assert torch.linalg.vector_norm(u).item() == pytest.approx(1.0, abs=1e-12)
    v = random_direction(torch.zeros(1000), generator=g, normalize=False)
    assert 0.9 < v.std().item() < 1.1
    a = random_direction(center, generator=torch.Generator().manual_seed(3))
    b = random_direction(center, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_slice_1d_values(center):
    u = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    alphas = torch.linspace(-1, 1, 5, dtype=torch.float64)
    s = slice_1d(quad, center, u, alphas)
    assert s.shape == (5,)
    assert s[2].item() == quad(center).item()  # alpha = 0 is the center itself
    for a, value in zip(alphas, s):
        assert value.item() == pytest.approx(quad(center + a * u).item(), rel=1e-14)


def test_slice_1d_is_a_parabola_along_a_line_of_a_quadratic(center):
    u = torch.tensor([0.3, 0.4, -1.2], dtype=torch.float64)
    alphas = torch.linspace(-2, 2, 9, dtype=torch.float64)
    s = slice_1d(quad, center, u, alphas)
    coeffs = torch.linalg.lstsq(torch.stack([alphas**0, alphas, alphas**2], 1), s[:, None]).solution[:, 0]
    H = torch.autograd.functional.hessian(quad, center)
    assert coeffs[2].item() == pytest.approx(0.5 * float(u @ H @ u), rel=1e-10)


def test_slice_2d_shape_orientation_and_values(center):
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    v = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    alphas = [-1.0, 0.0, 1.0, 2.0]
    betas = [-0.5, 0.0, 0.5]
    grid = slice_2d(quad, center, u, v, alphas, betas)
    assert grid.shape == (3, 4)  # rows follow beta, columns follow alpha
    assert grid[1, 1].item() == quad(center).item()
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            assert grid[i, j].item() == pytest.approx(quad(center + a * u + b * v).item(), rel=1e-14)


def test_slice_shape_errors(center):
    with pytest.raises(ValueError, match="direction has shape"):
        slice_1d(quad, center, torch.zeros(2, dtype=torch.float64), [0.0])
    with pytest.raises(ValueError, match="u and v must have the shape"):
        slice_2d(quad, center, torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), [0], [0])


def _mlp(seed):
    return MLP((5, 4, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_flatten_and_load_round_trip():
    a, b = _mlp(0), _mlp(1)
    flat = flatten_params(a)
    assert flat.shape == (5 * 4 + 4 + 4 * 3 + 3,)
    assert not flat.requires_grad
    load_flat_params(b, flat)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert torch.equal(flatten_params(b), flat)
    # the flat vector is a copy: changing it leaves the model alone
    flat.zero_()
    assert flatten_params(a).abs().sum() > 0


def test_load_flat_params_wrong_size_raises():
    with pytest.raises(ValueError, match="model has 39 parameters, vector has 38"):
        load_flat_params(_mlp(0), torch.zeros(38, dtype=torch.float64))


def test_interpolate_models_endpoints_and_restoration():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=g)
    a, b, scratch = _mlp(0), _mlp(1), _mlp(2)
    ta, tb = flatten_params(a), flatten_params(b)
    before = flatten_params(scratch)
    alphas = torch.linspace(0, 1, 5, dtype=torch.float64)
    losses = interpolate_models(scratch, ta, tb, softmax_loss, X, y, alphas)
    assert losses.shape == (5,) and losses.dtype == torch.float64
    with torch.no_grad():
        assert losses[0].item() == pytest.approx(softmax_loss(a(X), y).item(), rel=1e-12)
        assert losses[-1].item() == pytest.approx(softmax_loss(b(X), y).item(), rel=1e-12)
        load_flat_params(a, 0.5 * ta + 0.5 * tb)
        assert losses[2].item() == pytest.approx(softmax_loss(a(X), y).item(), rel=1e-12)
    assert torch.equal(flatten_params(scratch), before)  # scratch model restored


def test_interpolate_models_restores_parameters_after_an_error():
    scratch = _mlp(2)
    before = flatten_params(scratch)

    def broken_loss(scores, y):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        interpolate_models(scratch, flatten_params(_mlp(0)), flatten_params(_mlp(1)), broken_loss,
                           torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, dtype=torch.long), [0.5])
    assert torch.equal(flatten_params(scratch), before)


def test_random_directions_are_unit_rows_and_reproducible():
    E = random_directions(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert E.shape == (500, 6) and E.dtype == torch.float64
    torch.testing.assert_close(E.norm(dim=1), torch.ones(500, dtype=torch.float64))
    assert E.mean(0).abs().max() < 0.1  # no preferred direction
    same = torch.randn(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(E, same / same.norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="count must be a positive integer"):
        random_directions(0, 3)


def test_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert cosine(a, 3 * a) == pytest.approx(1.0) and cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, torch.tensor([[0.0, 2.0], [0.0, 0.0]])) == 0.0
    assert cosine(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])) == pytest.approx(2**-0.5)
    with pytest.raises(ValueError, match="same shape"):
        cosine(a, torch.ones(3))
    with pytest.raises(ValueError, match="zero vector"):
        cosine(torch.zeros(2), torch.ones(2))


def test_second_differences_and_kinks_of_a_piecewise_linear_slice():
    a = torch.linspace(-2, 2, 41, dtype=torch.float64)
    hinge = (a - 0.55).clamp(min=0) + 0.5 * (a + 1.0).clamp(min=0)  # kinks at 0.55 and -1.0 (on the grid)
    second = second_differences(hinge)
    assert second.shape == (39,) and (second >= -1e-15).all()  # convex
    assert count_kinks(hinge) == 3  # 0.55 lies between two grid points: both see the bend; -1.0 one
    torch.testing.assert_close(second_differences(a**2), torch.full((39,), 2 * 0.1**2, dtype=torch.float64))
    assert count_kinks(3 * a + 1) == 0
    with pytest.raises(ValueError, match="at least 3"):
        second_differences([1.0, 2.0])


def test_slice_minimum_finds_the_grid_point_of_a_2d_slice(center):
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    v = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    alphas = torch.linspace(-2, 2, 41, dtype=torch.float64)
    betas = torch.linspace(-1, 3, 21, dtype=torch.float64)
    Z = slice_2d(lambda t: ((t - torch.tensor([0.3, 0.6, 2.0], dtype=torch.float64)) ** 2).sum(), center, u, v,
                 alphas, betas)
    a, b, value = slice_minimum(Z, alphas, betas)
    assert (a, b) == pytest.approx((-0.2, 1.6)) and value == pytest.approx(Z.min().item())
    with pytest.raises(ValueError, match="Z must have shape"):
        slice_minimum(Z.T, alphas, betas)
