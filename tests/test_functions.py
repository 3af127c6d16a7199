"""optlib.functions: analytic gradients and Hessians against autograd and finite differences,
and the listed critical points against their definitions."""
import math

import pytest
import torch

from optlib import functions as F

# Every registered function with its defaults, plus n-D and rotated variants.
CASES = {name: (lambda cls=cls: cls()) for name, cls in F.FUNCTIONS.items()}
CASES.update({
    "quadratic_k1_d2": lambda: F.Quadratic(condition_number=1.0),
    "quadratic_k100_angle": lambda: F.Quadratic(condition_number=100.0, angle=0.7),
    "quadratic_k1e3_d2_mu": lambda: F.Quadratic(condition_number=1e3, mu=0.5, angle=-math.pi / 5),
    "quadratic_k1_d1": lambda: F.Quadratic(condition_number=1.0, dim=1),
    "quadratic_k50_d3": lambda: F.Quadratic(condition_number=50.0, dim=3),
    "quadratic_k20_d6_seed": lambda: F.Quadratic(condition_number=20.0, dim=6, seed=3),
    "rosenbrock_a2": lambda: F.Rosenbrock(a=2.0, b=10.0),
    "rosenbrock_d5": lambda: F.Rosenbrock(dim=5),
    "quartic_d1": lambda: F.Quartic(dim=1),
    "quartic_d4": lambda: F.Quartic(dim=4),
    "sphere_d1": lambda: F.Sphere(dim=1),
    "sphere_d7": lambda: F.Sphere(dim=7),
})
IDS = list(CASES)


def random_points(fn, k=6, seed=0):
    """k points drawn uniformly from the function's plot window, float64."""
    g = torch.Generator().manual_seed(seed)
    low = torch.tensor([b[0] for b in fn.bounds], dtype=torch.float64)
    high = torch.tensor([b[1] for b in fn.bounds], dtype=torch.float64)
    return low + (high - low) * torch.rand(k, fn.dim, generator=g, dtype=torch.float64)


def autograd_gradient(fn, x):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x), x)
    return g


def central_differences(fn, x, h=1e-6):
    g = torch.empty_like(x)
    for i in range(len(x)):
        e = torch.zeros_like(x)
        e[i] = h
        g[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return g


def escapes_both_ways(fn, point, radius=1e-3, directions=64):
    """True when f takes values both above and below f(point) on a small circle/sphere around it."""
    g = torch.Generator().manual_seed(0)
    d = torch.randn(directions, fn.dim, generator=g, dtype=torch.float64)
    if fn.dim == 2:  # a full circle, so thin valleys (monkey saddle) are not missed
        t = torch.linspace(0, 2 * math.pi, directions + 1, dtype=torch.float64)[:-1]
        d = torch.stack([t.cos(), t.sin()], -1)
    d = d / d.norm(dim=1, keepdim=True)
    with torch.no_grad():
        diff = fn(point + radius * d) - fn(point)
    return bool((diff > 0).any() and (diff < 0).any())


@pytest.mark.parametrize("case", IDS)
def test_gradient_matches_autograd(case):
    fn = CASES[case]()
    for x in random_points(fn):
        torch.testing.assert_close(fn.gradient(x), autograd_gradient(fn, x), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("case", IDS)
def test_gradient_matches_central_differences(case):
    fn = CASES[case]()
    for x in random_points(fn, k=4, seed=1):
        scale = 1.0 + abs(fn(x).item())
        torch.testing.assert_close(fn.gradient(x), central_differences(fn, x), rtol=1e-6, atol=1e-8 * scale)


@pytest.mark.parametrize("case", IDS)
def test_batched_value_and_gradient_match_pointwise(case):
    fn = CASES[case]()
    pts = random_points(fn, k=6).reshape(2, 3, fn.dim)
    values, grads = fn(pts), fn.gradient(pts)
    assert values.shape == (2, 3) and grads.shape == (2, 3, fn.dim)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(values[i, j], fn(pts[i, j]), rtol=1e-13, atol=1e-13)
            torch.testing.assert_close(grads[i, j], fn.gradient(pts[i, j]), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", IDS)
def test_hessian_matches_autograd(case):
    fn = CASES[case]()
    for x in random_points(fn, k=4, seed=2):
        H = fn.hessian(x)
        assert H.shape == (fn.dim, fn.dim)
        expected = torch.autograd.functional.hessian(lambda z: fn(z), x)
        torch.testing.assert_close(H, expected, rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(H, H.T, rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", IDS)
def test_minima_are_minima(case):
    fn = CASES[case]()
    for m in fn.minima:
        assert fn(m).item() == pytest.approx(fn.min_value, abs=1e-12)
        torch.testing.assert_close(fn.gradient(m), torch.zeros_like(m), rtol=0, atol=1e-9)
        assert torch.linalg.eigvalsh(fn.hessian(m)).min().item() >= -1e-9
        # and no point nearby is lower
        pts = m + 1e-3 * torch.randn(32, fn.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert (fn(pts) >= fn(m) - 1e-12).all()


@pytest.mark.parametrize("case", IDS)
def test_saddles_are_saddles(case):
    fn = CASES[case]()
    for s in fn.saddles:
        torch.testing.assert_close(fn.gradient(s), torch.zeros_like(s), rtol=0, atol=1e-9)
        eig = torch.linalg.eigvalsh(fn.hessian(s))
        indefinite = eig.min() < -1e-6 and eig.max() > 1e-6
        degenerate = eig.abs().min() < 1e-9
        assert indefinite or degenerate, eig
        assert escapes_both_ways(fn, s)


def test_functions_with_saddles_list_them():
    assert len(F.Saddle().saddles) == 1 and len(F.MonkeySaddle().saddles) == 1
    assert len(F.Himmelblau().saddles) == 4 and len(F.Himmelblau().minima) == 4


def test_saddle_kinds():
    assert torch.equal(torch.linalg.eigvalsh(F.Saddle().hessian(torch.zeros(2, dtype=torch.float64))),
                       torch.tensor([-2.0, 2.0], dtype=torch.float64))
    assert torch.count_nonzero(F.MonkeySaddle().hessian(torch.zeros(2, dtype=torch.float64))) == 0


def test_himmelblau_local_maximum():
    fn = F.Himmelblau()
    for m in fn.maxima:
        torch.testing.assert_close(fn.gradient(m), torch.zeros_like(m), rtol=0, atol=1e-9)
        assert torch.linalg.eigvalsh(fn.hessian(m)).max().item() < 0


def test_quartic_minimum_has_zero_hessian():
    fn = F.Quartic(dim=3)
    assert torch.count_nonzero(fn.hessian(torch.zeros(3, dtype=torch.float64))) == 0


def test_rosenbrock_minimum_moves_with_a():
    fn = F.Rosenbrock(a=2.0)
    torch.testing.assert_close(fn.minima[0], torch.tensor([2.0, 4.0], dtype=torch.float64))
    assert F.Rosenbrock(dim=5).minima[0].tolist() == [1.0] * 5


@pytest.mark.parametrize("condition_number", [1.0, 10.0, 1e3, 1e6])
@pytest.mark.parametrize("dim,kwargs", [(2, {}), (2, {"angle": 0.4}), (3, {}), (8, {"seed": 1}),
                                        (2, {"mu": 0.1, "seed": 5})])
def test_quadratic_condition_number_is_the_requested_one(condition_number, dim, kwargs):
    fn = F.Quadratic(condition_number=condition_number, dim=dim, **kwargs)
    H = fn.hessian(torch.zeros(dim, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(H)
    mu = kwargs.get("mu", 1.0)
    assert (eig.max() / eig.min()).item() == pytest.approx(condition_number, rel=1e-9)
    assert eig.min().item() == pytest.approx(mu, rel=1e-9)
    torch.testing.assert_close(eig, mu * condition_number ** torch.linspace(0, 1, dim, dtype=torch.float64),
                               rtol=1e-9, atol=0)


def test_sphere_is_half_the_squared_norm_in_any_dimension():
    x = torch.randn(5, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fn = F.Sphere(dim=300)
    torch.testing.assert_close(fn(x), 0.5 * (x * x).sum(1), rtol=1e-15, atol=0)
    assert torch.equal(fn.gradient(x), x) and fn.gradient(x) is not x
    assert torch.equal(F.Sphere(dim=3).hessian(torch.ones(3)), torch.eye(3))
    assert fn.min_value == 0.0 and torch.equal(fn.minima, torch.zeros(1, 300, dtype=torch.float64))
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        F.Sphere(dim=0)


def test_quadratic_angle_rotates_the_eigenvectors():
    angle = 0.6
    fn = F.Quadratic(condition_number=10.0, angle=angle)
    eig, vec = torch.linalg.eigh(fn.hessian(torch.zeros(2, dtype=torch.float64)))
    flat_direction = vec[:, 0]  # eigenvector of the smallest eigenvalue
    expected = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
    assert abs(float(flat_direction @ expected)) == pytest.approx(1.0, abs=1e-12)


def test_quadratic_value_is_half_xAx():
    fn = F.Quadratic(condition_number=30.0, dim=4, seed=0)
    x = torch.tensor([0.3, -1.0, 0.5, 2.0], dtype=torch.float64)
    assert fn(x).item() == pytest.approx(0.5 * float(x @ fn.A @ x), rel=1e-14)


def test_quadratic_seed_is_deterministic_and_matters():
    a, b, c = (F.Quadratic(10.0, dim=4, seed=s).A for s in (0, 0, 1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("build", [
    lambda: F.Quadratic(condition_number=0.5),
    lambda: F.Quadratic(condition_number=float("nan")),
    lambda: F.Quadratic(mu=0.0),
    lambda: F.Quadratic(mu=-1.0),
    lambda: F.Quadratic(dim=0),
    lambda: F.Quartic(dim=0),
    lambda: F.Rosenbrock(dim=1),
    lambda: F.Rosenbrock(dim=3, a=2.0),
    lambda: F.Rosenbrock(b=0.0),
    lambda: F.get_function("no_such_function"),
])
def test_bad_construction_arguments_raise(build):
    with pytest.raises(ValueError):
        build()


def test_get_function_builds_by_name_with_kwargs():
    fn = F.get_function("quadratic", condition_number=50.0, dim=3)
    assert isinstance(fn, F.Quadratic) and fn.dim == 3 and fn.condition_number == 50.0
    for name, cls in F.FUNCTIONS.items():
        assert type(F.get_function(name)) is cls
        assert cls().name == name


@pytest.mark.parametrize("case", IDS)
def test_wrong_point_shapes_raise(case):
    fn = CASES[case]()
    wrong = torch.zeros(fn.dim + 1, dtype=torch.float64)
    for method in (fn, fn.gradient, fn.hessian):
        with pytest.raises(ValueError, match=r"takes points of shape"):
            method(wrong)
        with pytest.raises(ValueError):
            method(torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("case", IDS)
def test_hessian_rejects_a_batch_of_points(case):
    fn = CASES[case]()
    with pytest.raises(ValueError, match="hessian takes one point"):
        fn.hessian(torch.ones(3, fn.dim, dtype=torch.float64))


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_are_preserved(case, dtype):
    fn = CASES[case]()
    x = fn.start.to(device="cpu", dtype=dtype)
    for out in (fn(x), fn.gradient(x), fn.hessian(x), fn(x.expand(3, fn.dim)), fn.gradient(x.expand(3, fn.dim))):
        assert out.dtype == dtype
        assert out.device.type == "cpu"


def test_integer_points_are_promoted_to_floating_point():
    out = F.Quadratic()(torch.tensor([1, 2]))
    assert out.dtype == torch.get_default_dtype()
    assert out.item() == pytest.approx(0.5 * float(torch.tensor([1.0, 2.0], dtype=torch.float64)
                                                    @ F.Quadratic().A @ torch.tensor([1.0, 2.0], dtype=torch.float64)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", IDS)
def test_cuda_points_stay_on_cuda(case):
    fn = CASES[case]()
    x = fn.start.to("cuda")
    for out in (fn(x), fn.gradient(x), fn.hessian(x)):
        assert out.device.type == "cuda"
    torch.testing.assert_close(fn.gradient(x).cpu(), fn.gradient(fn.start))


@pytest.mark.parametrize("case", IDS)
def test_start_and_bounds_fit_the_dimension(case):
    fn = CASES[case]()
    assert fn.start.shape == (fn.dim,)
    assert len(fn.bounds) == fn.dim and all(lo < hi for lo, hi in fn.bounds)
    assert torch.isfinite(fn(fn.start))
