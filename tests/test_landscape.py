"""optlib.landscape: 1-D/2-D slices, flat parameter vectors, linear interpolation between models."""
import pytest
import torch

from optlib.landscape import (flatten_params, interpolate_models, load_flat_params, random_direction, slice_1d,
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
