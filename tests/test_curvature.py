"""Tests of optlib.curvature: Hessian- and Gauss-Newton-vector products, CG, eigenvalues, traces, densities.

Everything runs in float64. Oracles: ``torch.autograd.functional.hessian`` (explicit matrices),
``torch.linalg.eigvalsh``, and curvlinops' HessianLinearOperator and GGNLinearOperator. Matrices
with a chosen spectrum are Q diag(λ) Qᵀ with Q orthogonal, drawn from a seeded generator.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from optlib import curvature as cv, models
from optlib.preconditioning import flat_loss

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def with_spectrum(eigenvalues, seed=0) -> torch.Tensor:
    """Q diag(λ) Qᵀ with Q a random orthogonal matrix (QR of a Gaussian matrix drawn with ``seed``)."""
    eigenvalues = torch.as_tensor(eigenvalues, dtype=F64)
    d = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(seed), dtype=F64))
    return (Q * eigenvalues) @ Q.T


def relative_residual(A, x, b) -> float:
    return (torch.linalg.vector_norm(b - A @ x) / torch.linalg.vector_norm(b)).item()


def assert_close(actual, expected, tol=1e-10):
    """max |actual − expected| ≤ tol · max(1, max |expected|)."""
    scale = max(1.0, expected.abs().max().item())
    error = (actual - expected).abs().max().item()
    assert error <= tol * scale, f"max error {error:.3g} > {tol:g} × {scale:.3g}"


# ------------------------------------------------------------------ problems

def rosenbrock(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def log_sum_exp_mix(x):
    return torch.logsumexp(torch.stack([x.sum(), (x**2).sum(), torch.sin(x).prod()]), 0) + torch.cos(x[0] * x[-1])


A5 = with_spectrum([3.0, 1.0, 0.5, -2.0, 0.1], seed=5)
B5 = torch.arange(5, dtype=F64)


def quadratic(x):
    return 0.5 * x @ A5 @ x + B5 @ x


FUNCTIONS = {"quadratic": quadratic, "rosenbrock": rosenbrock, "log_sum_exp_mix": log_sum_exp_mix,
             "quartic": lambda x: (x**4).sum() + (x[0] * x[1]) ** 2}


def mlp_problem(seed=0, loss="cross_entropy", n=40):
    """A small float64 tanh MLP (6-10-3, 103 parameters), data and a mean-reduced loss module."""
    g = gen(seed)
    model = models.MLP((6, 10, 3), activation="tanh", generator=g, dtype=F64)
    X = torch.randn(n, 6, generator=g, dtype=F64)
    if loss == "cross_entropy":
        y, loss_fn = torch.randint(0, 3, (n,), generator=g), nn.CrossEntropyLoss()
    else:
        y, loss_fn = torch.randn(n, 3, generator=g, dtype=F64), nn.MSELoss()
    return model, loss_fn, X, y


def explicit_hessian(model, loss_fn, X, y):
    fn, theta = flat_loss(model, loss_fn, X, y)
    return torch.autograd.functional.hessian(fn, theta), theta


def explicit_ggn(model, loss_fn, X, y):
    """Jᵀ H_L J from the explicit Jacobian of the outputs and the explicit Hessian of the loss in them."""
    outputs_of, theta = flat_loss(model, lambda z, _y: z, X, y)
    J = torch.autograd.functional.jacobian(outputs_of, theta).reshape(-1, len(theta))
    outputs = outputs_of(theta).detach()
    H_L = torch.autograd.functional.hessian(lambda z: loss_fn(z.view_as(outputs), y), outputs.reshape(-1))
    return J.T @ H_L @ J


# ------------------------------------------------------------------ Hessian-vector products

@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("product", [cv.hvp, cv.hvp_forward_over_reverse])
def test_hvp_equals_the_explicit_hessian_times_v(name, product):
    f = FUNCTIONS[name]
    for seed in range(3):
        g = gen(seed)
        x, v = torch.randn(5, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
        H = torch.autograd.functional.hessian(f, x)
        assert_close(product(f, x, v), H @ v)


def test_hvp_of_an_affine_function_is_zero():
    x, v = torch.randn(4, generator=gen(), dtype=F64), torch.ones(4, dtype=F64)
    for product in (cv.hvp, cv.hvp_forward_over_reverse):
        assert torch.equal(product(lambda t: 3 * t.sum() + 1, x, v), torch.zeros(4, dtype=F64))


def test_hvp_leaves_its_inputs_alone_and_returns_detached_tensors():
    x = torch.randn(5, generator=gen(), dtype=F64).requires_grad_(True)
    v = torch.randn(5, generator=gen(1), dtype=F64)
    x_before = x.detach().clone()
    for product in (cv.hvp, cv.hvp_forward_over_reverse):
        with torch.no_grad():  # works inside no_grad too
            out = product(rosenbrock, x, v)
        assert not out.requires_grad and out.grad_fn is None
    assert x.grad is None and not v.requires_grad and torch.equal(x.detach(), x_before)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("method", cv.HVP_METHODS)
def test_model_hvp_equals_the_explicit_hessian_of_an_mlp(loss, method):
    model, loss_fn, X, y = mlp_problem(1, loss)
    H, theta = explicit_hessian(model, loss_fn, X, y)
    matvec = cv.hessian_matvec(model, loss_fn, (X, y), method)
    for seed in range(3):
        v = torch.randn(len(theta), generator=gen(seed), dtype=F64)
        assert_close(cv.model_hvp(model, loss_fn, (X, y), v, method=method), H @ v)
        assert_close(matvec(v), H @ v)  # the map built once gives the same products, call after call


def test_model_products_leave_the_model_untouched():
    model, loss_fn, X, y = mlp_problem(2)
    before = [p.detach().clone() for p in model.parameters()]
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=gen(), dtype=F64)
    outputs = [cv.model_hvp(model, loss_fn, (X, y), v, method=m) for m in cv.HVP_METHODS]
    outputs.append(cv.ggn_vp(model, loss_fn, (X, y), v))
    assert all(not out.requires_grad for out in outputs)
    for p, p0 in zip(model.parameters(), before):
        assert p.grad is None and p.requires_grad and torch.equal(p.detach(), p0)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggn_vp_equals_the_explicit_gauss_newton_matrix(loss):
    model, loss_fn, X, y = mlp_problem(3, loss)
    G = explicit_ggn(model, loss_fn, X, y)
    matvec = cv.ggn_matvec(model, loss_fn, (X, y))
    for seed in range(3):
        v = torch.randn(len(G), generator=gen(seed), dtype=F64)
        assert_close(cv.ggn_vp(model, loss_fn, (X, y), v), G @ v)
        assert_close(matvec(v), G @ v)
    assert torch.linalg.eigvalsh(G).min() > -1e-12  # convex losses: positive semi-definite


def test_ggn_equals_the_hessian_for_a_linear_model_with_squared_error():
    g = gen(4)
    model = models.LinearClassifier(5, 2, init_scale=1.0, generator=g, dtype=F64)
    X, y = torch.randn(30, 5, generator=g, dtype=F64), torch.randn(30, 2, generator=g, dtype=F64)
    v = torch.randn(12, generator=g, dtype=F64)
    assert_close(cv.ggn_vp(model, nn.MSELoss(), (X, y), v), cv.model_hvp(model, nn.MSELoss(), (X, y), v))


# curvlinops' own torch.func.jvp loads torch's forward-mode decompositions, which warn on first use
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_model_products_agree_with_curvlinops(loss, reduction):
    from curvlinops import GGNLinearOperator, HessianLinearOperator

    model, loss_fn, X, y = mlp_problem(5, loss)
    loss_fn.reduction = reduction
    params = list(model.parameters())
    # curvlinops sums over batches, each rescaled by its size / N for "mean": the loss over all of (X, y)
    batches = list(zip(X.split(15), y.split(15)))
    H_op = HessianLinearOperator(model, loss_fn, params, batches)
    G_op = GGNLinearOperator(model, loss_fn, params, batches)
    for seed in range(2):
        v = torch.randn(sum(p.numel() for p in params), generator=gen(seed), dtype=F64)
        for method in cv.HVP_METHODS:
            assert_close(cv.model_hvp(model, loss_fn, (X, y), v, method=method), H_op @ v)
        assert_close(cv.ggn_vp(model, loss_fn, (X, y), v), G_op @ v)


def test_products_reject_bad_input():
    x = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match="v must have shape"):
        cv.hvp(rosenbrock, x, torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="1-D"):
        cv.hvp(rosenbrock, torch.zeros(2, 2, dtype=F64), torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="dtype"):
        cv.hvp_forward_over_reverse(rosenbrock, x, torch.zeros(3, dtype=torch.float32))
    with pytest.raises(ValueError, match="scalar"):
        cv.hvp(lambda t: t**2, x, x)
    with pytest.raises(ValueError, match="scalar"):
        cv.hvp_forward_over_reverse(lambda t: t**2, x, x)
    model, loss_fn, X, y = mlp_problem()
    v = torch.zeros(103, dtype=F64)
    with pytest.raises(ValueError, match="method"):
        cv.model_hvp(model, loss_fn, (X, y), v, method="finite_differences")
    with pytest.raises(ValueError, match="pair"):
        cv.model_hvp(model, loss_fn, (X, y, y), v)
    with pytest.raises(ValueError, match="rows"):
        cv.ggn_vp(model, loss_fn, (X, y[:-1]), v)
    with pytest.raises(ValueError, match=r"vec must have shape \(103,\)"):
        cv.model_hvp(model, loss_fn, (X, y), torch.zeros(100, dtype=F64))
    with pytest.raises(ValueError, match="dtype"):
        cv.ggn_vp(model, loss_fn, (X, y), torch.zeros(103))


# ------------------------------------------------------------------ conjugate gradients

@pytest.mark.parametrize("d", [10, 50, 100])
@pytest.mark.parametrize("kappa", [1.0, 10.0, 1e2, 1e3, 1e4])
def test_cg_solves_spd_systems_within_d_iterations(d, kappa):
    # eigenvalues evenly spaced in [1, κ]; see the next test for spectra where floating point needs more
    A = with_spectrum(torch.linspace(1, kappa, d, dtype=F64), seed=d)
    b = torch.randn(d, generator=gen(d), dtype=F64)
    for operator in (A, lambda v: A @ v):  # a matrix or a callable
        result = cv.conjugate_gradient(operator, b)
        assert result.converged and result.reason == "converged" and not result.negative_curvature
        assert result.iterations <= d
        assert result.relative_residual <= 1e-10 and relative_residual(A, result.x, b) <= 2e-10
        assert len(result.residual_norms) == result.iterations + 1
    torch.testing.assert_close(result.x, torch.linalg.solve(A, b), rtol=1e-9 * kappa, atol=0)


def test_cg_in_floating_point_can_need_more_than_d_iterations():
    # d = 100 eigenvalues in geometric progression from 1 to 1e4: exact arithmetic would finish in 100
    # iterations; round-off (loss of orthogonality) delays convergence, here about fourfold (SciPy's cg
    # takes as long), within the default max_iter of 10 d
    A = with_spectrum(torch.logspace(0, 4, 100, dtype=F64), seed=1)
    b = torch.randn(100, generator=gen(1), dtype=F64)
    result = cv.conjugate_gradient(A, b)
    assert result.converged and 200 < result.iterations <= 1000
    assert relative_residual(A, result.x, b) <= 2e-10


def test_cg_iterations_grow_like_the_square_root_of_the_condition_number():
    # Chebyshev points on [1, κ]: the spectrum for which CG's √κ bound is sharp, dense enough
    # (d = 1000) that finite termination never sets in; log(iterations) against log(κ) has slope ~1/2
    d, kappas, counts = 1000, [10.0, 1e2, 1e3, 1e4], []
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(7), dtype=F64))
    b = torch.randn(d, generator=gen(8), dtype=F64)
    nodes = (1 - torch.cos(math.pi * torch.arange(d, dtype=F64) / (d - 1))) / 2
    for kappa in kappas:
        A = (Q * (1 + (kappa - 1) * nodes)) @ Q.T
        result = cv.conjugate_gradient(A, b, tol=1e-6)
        assert result.converged
        counts.append(result.iterations)
    slope = np.polyfit(np.log(kappas), np.log(counts), 1)[0]
    assert 0.4 <= slope <= 0.6, f"iterations {counts} grow like kappa^{slope:.2f}"
    # and roughly as many as the bound ½√κ ln(2/ε) says
    for kappa, count in zip(kappas, counts):
        assert count <= 0.5 * math.sqrt(kappa) * math.log(2 / 1e-6) * 1.2


def test_jacobi_preconditioning_cuts_iterations_on_a_badly_scaled_matrix():
    # A = D^½ C D^½: C well conditioned (eigenvalues in [0.5, 1.5], unit diagonal), D = diag(A) spread
    # over four decades. Jacobi's M = D leaves CG the spectrum of C.
    d = 100
    g = gen(9)
    C = with_spectrum(torch.linspace(0.5, 1.5, d, dtype=F64), seed=9)
    scale = torch.diagonal(C).rsqrt()
    C = scale[:, None] * C * scale[None, :]  # unit diagonal, still well conditioned
    D = torch.logspace(0, 4, d, dtype=F64)[torch.randperm(d, generator=g)]
    A = D.sqrt()[:, None] * C * D.sqrt()[None, :]
    b = torch.randn(d, generator=g, dtype=F64)
    plain = cv.conjugate_gradient(A, b)
    jacobi = cv.conjugate_gradient(A, b, preconditioner=cv.jacobi_preconditioner(torch.diagonal(A)))
    assert plain.converged and jacobi.converged
    assert relative_residual(A, jacobi.x, b) <= 2e-10
    assert jacobi.iterations * 4 <= plain.iterations, (jacobi.iterations, plain.iterations)


def test_cg_detects_negative_and_zero_curvature():
    A = with_spectrum([4.0, 2.0, 1.0, -1.0, -3.0], seed=2)
    b = torch.randn(5, generator=gen(2), dtype=F64)
    result = cv.conjugate_gradient(A, b)
    assert result.negative_curvature and not result.converged and result.reason == "negative_curvature"
    p = result.direction
    assert result.curvature <= 0 and math.isclose(result.curvature, (p @ A @ p).item(), rel_tol=1e-12)
    assert torch.isfinite(result.x).all() and len(result.residual_norms) == result.iterations + 1
    # a zero matrix: zero curvature along the first direction, b itself; x stays at x0 = 0
    zero = cv.conjugate_gradient(torch.zeros(3, 3, dtype=F64), torch.ones(3, dtype=F64))
    assert zero.negative_curvature and zero.iterations == 0 and zero.curvature == 0
    assert torch.equal(zero.x, torch.zeros(3, dtype=F64)) and torch.equal(zero.direction, torch.ones(3, dtype=F64))


def test_cg_start_stop_and_trivial_right_hand_side():
    A = with_spectrum(torch.linspace(1, 100, 30, dtype=F64), seed=3)
    b = torch.randn(30, generator=gen(3), dtype=F64)
    exact = torch.linalg.solve(A, b)
    warm = cv.conjugate_gradient(A, b, x0=exact)
    assert warm.converged and warm.iterations == 0
    seen = []
    stopped = cv.conjugate_gradient(A, b, stop=lambda x, r, k: seen.append(k) or k == 3)
    assert stopped.reason == "stopped" and stopped.iterations == 3 and seen == [1, 2, 3]
    # the quadratic ½xᵀAx − bᵀx, which CG decreases at every step, is −½ xᵀ(r + b)
    q = lambda x: (0.5 * x @ A @ x - b @ x).item()
    previous = cv.conjugate_gradient(A, b, max_iter=2)
    assert previous.reason == "max_iter" and not previous.converged
    assert q(stopped.x) < q(previous.x) < 0
    x_prev = stopped.x - stopped.step_size * stopped.direction
    assert math.isclose(q(x_prev), q(previous.x), rel_tol=1e-12)
    zero = cv.conjugate_gradient(A, torch.zeros(30, dtype=F64))
    assert zero.converged and zero.iterations == 0 and torch.equal(zero.x, torch.zeros(30, dtype=F64))


def test_cg_rejects_bad_input():
    A, b = torch.eye(3, dtype=F64), torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match="square"):
        cv.conjugate_gradient(torch.ones(3, 4, dtype=F64), b)
    with pytest.raises(ValueError, match="3 × 3"):
        cv.conjugate_gradient(A, torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="1-D"):
        cv.conjugate_gradient(A, torch.ones(3, 1, dtype=F64))
    for tol in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tol"):
            cv.conjugate_gradient(A, b, tol=tol)
    with pytest.raises(ValueError, match="NaN"):
        cv.conjugate_gradient(A, torch.tensor([1.0, float("nan"), 0.0], dtype=F64))
    with pytest.raises(ValueError, match="x0 must have shape"):
        cv.conjugate_gradient(A, b, x0=torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="max_iter"):
        cv.conjugate_gradient(A, b, max_iter=0)
    with pytest.raises(ValueError, match="dtype"):
        cv.conjugate_gradient(A.float(), b)
    with pytest.raises(ValueError, match="same shape"):
        cv.conjugate_gradient(lambda v: v[:2], b)
    with pytest.raises(ValueError, match="non-finite|NaN"):
        cv.conjugate_gradient(lambda v: v * float("nan"), b)
    with pytest.raises(TypeError, match="preconditioner"):
        cv.conjugate_gradient(A, b, preconditioner=torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="preconditioner must return"):
        cv.conjugate_gradient(A, b, preconditioner=lambda r: r[:2])
    with pytest.raises(ValueError, match="not positive definite"):
        cv.conjugate_gradient(A, b, preconditioner=lambda r: -r)
    with pytest.raises(ValueError, match="> 0"):
        cv.jacobi_preconditioner(torch.tensor([1.0, 0.0], dtype=F64))


# ------------------------------------------------------------------ eigenvalues

@pytest.fixture(scope="module")
def mlp_hessian():
    """(matvec, explicit Hessian, its eigenvalues in decreasing order) of the CE loss of a small MLP."""
    model, loss_fn, X, y = mlp_problem(0)
    H, _ = explicit_hessian(model, loss_fn, X, y)
    eigenvalues = torch.linalg.eigvalsh(H).flip(0)
    # the three largest are positive and larger in magnitude than the most negative one
    assert eigenvalues[2] > -eigenvalues[-1] > 0
    return cv.hessian_matvec(model, loss_fn, (X, y)), H, eigenvalues


def test_power_iteration_and_lanczos_find_the_top_eigenvalue_of_an_mlp_hessian(mlp_hessian):
    matvec, H, eigenvalues = mlp_hessian
    power = cv.power_iteration(matvec, len(H), generator=gen(1), dtype=F64)
    lanczos = cv.lanczos(matvec, len(H), generator=gen(1), dtype=F64)
    for result in (power, lanczos):
        assert result.converged and result.values.shape == (1,) and result.vectors.shape == (len(H), 1)
        assert abs(result.values[0].item() / eigenvalues[0].item() - 1) <= 1e-6
        u = result.vectors[:, 0]
        assert math.isclose(u.norm().item(), 1.0, rel_tol=1e-12)
        assert (H @ u - result.values[0] * u).norm() <= 1e-6 * eigenvalues[0]
    assert lanczos.matvecs < power.matvecs  # Lanczos needs far fewer products


def test_the_top_three_eigenvalues_with_deflation_and_lanczos(mlp_hessian):
    matvec, H, eigenvalues = mlp_hessian
    top = eigenvalues[:3]
    power = cv.power_iteration(matvec, len(H), 3, generator=gen(2), dtype=F64)
    lanczos = cv.lanczos(matvec, len(H), 3, generator=gen(2), dtype=F64)
    for result in (power, lanczos):
        assert result.converged
        assert ((result.values - top) / top).abs().max() <= 1e-6
        # orthonormal eigenvectors
        assert_close(result.vectors.T @ result.vectors, torch.eye(3, dtype=F64), tol=1e-6)
    for method in ("lanczos", "power"):
        values = cv.top_eigenvalues(matvec, len(H), 3, generator=gen(3), method=method, dtype=F64)
        assert ((values - top) / top).abs().max() <= 1e-6


def test_lanczos_finds_the_smallest_eigenvalues_and_reports_in_order(mlp_hessian):
    matvec, H, eigenvalues = mlp_hessian
    smallest = cv.lanczos(matvec, len(H), 2, which="smallest", generator=gen(4), dtype=F64)
    assert smallest.converged and torch.all(smallest.values[:-1] <= smallest.values[1:])
    torch.testing.assert_close(smallest.values, eigenvalues.flip(0)[:2], rtol=1e-6, atol=0)
    by_magnitude = eigenvalues[eigenvalues.abs().argsort(descending=True)][:4]
    magnitude = cv.lanczos(H, len(H), 4, which="magnitude", generator=gen(4))
    torch.testing.assert_close(magnitude.values, by_magnitude, rtol=1e-6, atol=0)


def test_lanczos_restarts_when_the_krylov_space_is_invariant():
    # 2I: every start vector is an eigenvector, the space is invariant after one step
    result = cv.lanczos(2 * torch.eye(10, dtype=F64), 10, 3, generator=gen())
    assert result.converged and result.matvecs == 3
    torch.testing.assert_close(result.values, torch.full((3,), 2.0, dtype=F64))
    assert_close(result.vectors.T @ result.vectors, torch.eye(3, dtype=F64), tol=1e-12)


def test_eigensolvers_are_reproducible_and_leave_the_global_random_state_alone():
    A = with_spectrum(torch.linspace(1, 5, 20, dtype=F64), seed=6)
    state = torch.random.get_rng_state()
    first = cv.power_iteration(A, 20, 2, generator=gen(5))
    second = cv.power_iteration(A, 20, 2, generator=gen(5))
    assert torch.equal(first.values, second.values) and torch.equal(first.vectors, second.vectors)
    cv.lanczos(A, 20, generator=gen(5))
    cv.hutchinson_trace(A, 20, 4, generator=gen(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    # float32 in, float32 out
    assert cv.lanczos(A.float(), 20, generator=gen(5)).values.dtype == torch.float32


def test_eigensolvers_reject_bad_input():
    A = torch.eye(4, dtype=F64)
    with pytest.raises(TypeError, match="generator"):
        cv.power_iteration(A, 4)  # a required argument
    with pytest.raises(TypeError, match="Generator"):
        cv.lanczos(A, 4, generator=0)
    with pytest.raises(ValueError, match="k must be at most"):
        cv.power_iteration(A, 4, 5, generator=gen())
    with pytest.raises(ValueError, match="dim"):
        cv.lanczos(A, 0, generator=gen())
    with pytest.raises(ValueError, match="4 × 4"):
        cv.lanczos(A, 5, generator=gen())
    with pytest.raises(ValueError, match="steps"):
        cv.lanczos(A, 4, 3, steps=2, generator=gen())
    with pytest.raises(ValueError, match="which"):
        cv.lanczos(A, 4, which="largest_magnitude", generator=gen())
    with pytest.raises(ValueError, match="method"):
        cv.top_eigenvalues(A, 4, generator=gen(), method="arnoldi")
    with pytest.raises(ValueError, match="dtype"):
        cv.lanczos(lambda v: v, 4, generator=gen(), dtype=torch.int64)
    with pytest.raises(ValueError, match="leave dtype and device out"):
        cv.hutchinson_trace(A, 4, 5, generator=gen(), dtype=torch.float32)


# ------------------------------------------------------------------ traces

def test_hutchinson_error_is_within_two_standard_errors_in_most_seeds():
    A = with_spectrum(torch.linspace(-1, 3, 50, dtype=F64), seed=10)
    exact = torch.trace(A).item()
    inside = 0
    for seed in range(100):
        result = cv.hutchinson_trace(A, 50, 30, generator=gen(seed))
        assert result.matvecs == 30 and result.std_error > 0
        inside += abs(result.estimate - exact) <= 2 * result.std_error
    assert inside >= 90, f"only {inside} of 100 estimates within two standard errors"


def test_hutchinson_with_gaussian_probes_and_on_a_diagonal_matrix():
    A = with_spectrum(torch.linspace(0, 2, 40, dtype=F64), seed=11)
    estimates = [cv.hutchinson_trace(A, 40, 20, generator=gen(s), distribution="gaussian").estimate
                 for s in range(50)]
    # mean of 50 unbiased estimates: standard error √(2‖A‖²_F / 1000) ≈ 0.33 around tr A = 40
    assert abs(np.mean(estimates) - 40.0) < 1.5
    # Rademacher probes are exact for a diagonal matrix: zᵀDz = Σ D_ii z_i² = tr D
    diagonal = cv.hutchinson_trace(lambda v: torch.arange(6, dtype=F64) * v, 6, 3, generator=gen(), dtype=F64)
    assert diagonal.estimate == 15.0 and diagonal.std_error == 0.0


def test_hutch_plus_plus_beats_hutchinson_on_a_decaying_spectrum():
    d, matvecs = 200, 30
    A = with_spectrum(1.0 / torch.arange(1, d + 1, dtype=F64) ** 2, seed=12)
    exact = torch.trace(A).item()
    plain = np.mean([abs(cv.hutchinson_trace(A, d, matvecs, generator=gen(s)).estimate - exact) for s in range(20)])
    plus = np.mean([abs(cv.hutch_plus_plus(A, d, matvecs, generator=gen(s)).estimate - exact) for s in range(20)])
    assert plus * 5 < plain, (plus, plain)
    # a matrix of rank at most samples // 3 is captured exactly by the sketch
    low_rank = with_spectrum(torch.cat([torch.tensor([5.0, 2.0, 1.0], dtype=F64), torch.zeros(47, dtype=F64)]))
    exact_low = cv.hutch_plus_plus(low_rank, 50, 9, generator=gen())
    assert abs(exact_low.estimate - 8.0) < 1e-10 and exact_low.matvecs == 9


def test_trace_estimators_reject_bad_input():
    A = torch.eye(4, dtype=F64)
    with pytest.raises(ValueError, match="samples must be >= 2"):
        cv.hutchinson_trace(A, 4, 1, generator=gen())
    with pytest.raises(ValueError, match="distribution"):
        cv.hutchinson_trace(A, 4, 5, generator=gen(), distribution="uniform")
    with pytest.raises(ValueError, match="samples >= 3"):
        cv.hutch_plus_plus(A, 4, 2, generator=gen())
    with pytest.raises(TypeError, match="Generator"):
        cv.hutch_plus_plus(A, 4, 6, generator=None)


# ------------------------------------------------------------------ spectral density

def clustered(centers=(1.0, 4.0, 10.0), per_cluster=50, spread=0.02, seed=13):
    g = gen(seed)
    eigenvalues = torch.cat([c + spread * (torch.rand(per_cluster, generator=g, dtype=F64) - 0.5) for c in centers])
    return with_spectrum(eigenvalues, seed=seed), eigenvalues


def test_spectral_density_integrates_to_one_and_sits_on_the_eigenvalues():
    A, eigenvalues = clustered()
    result = cv.spectral_density(A, len(A), steps=30, probes=10, generator=gen(), sigma=0.05)
    assert result.sigma == 0.05 and result.grid.shape == result.density.shape
    assert abs(torch.trapezoid(result.density, result.grid).item() - 1) < 1e-3
    assert abs(result.weights.sum().item() - 1) < 1e-12 and (result.weights >= 0).all()
    near = torch.zeros_like(result.grid, dtype=torch.bool)
    for center in (1.0, 4.0, 10.0):
        near |= (result.grid - center).abs() <= 0.3
        in_cluster = (result.nodes - center).abs() <= 0.3
        # each cluster holds a third of the eigenvalues, so about a third of the quadrature weight
        assert abs(result.weights[in_cluster].sum().item() - 1 / 3) < 0.1
    assert torch.trapezoid(result.density * near, result.grid).item() > 0.99
    # Ritz values lie inside the spectrum; the rule integrates t exactly: Σ w θ ≈ tr(A)/d
    assert eigenvalues.min() - 1e-9 <= result.nodes.min() and result.nodes.max() <= eigenvalues.max() + 1e-9
    assert abs(len(A) * (result.weights @ result.nodes).item() / torch.trace(A).item() - 1) < 0.05


def test_spectral_density_with_few_distinct_eigenvalues_is_exact():
    # three distinct eigenvalues: every Krylov space is invariant after three steps, the rule exact
    A, _ = clustered(spread=0.0)
    result = cv.spectral_density(A, len(A), steps=20, probes=4, generator=gen(1))
    assert len(result.nodes) == 12
    distance = torch.stack([(result.nodes - c).abs() for c in (1.0, 4.0, 10.0)]).min(0).values
    assert distance.max() < 1e-8
    assert abs(torch.trapezoid(result.density, result.grid).item() - 1) < 1e-3
    custom = cv.spectral_density(A, len(A), 20, 4, generator=gen(1), grid=torch.linspace(0, 11, 50, dtype=F64))
    assert custom.grid.shape == (50,) and custom.sigma == result.sigma


def test_spectral_density_rejects_bad_input():
    A = torch.eye(4, dtype=F64)
    with pytest.raises(ValueError, match="steps"):
        cv.spectral_density(A, 4, 5, 2, generator=gen())
    with pytest.raises(ValueError, match="probes"):
        cv.spectral_density(A, 4, 2, 0, generator=gen())
    with pytest.raises(ValueError, match="sigma"):
        cv.spectral_density(A, 4, 2, 2, generator=gen(), sigma=0.0)
    with pytest.raises(ValueError, match="grid"):
        cv.spectral_density(A, 4, 2, 2, generator=gen(), grid=torch.zeros(2, 2, dtype=F64))


def test_forward_over_reverse_names_pytorchs_mse_bug_or_is_right():
    # pytorch/pytorch#123996: jvp of grad through F.mse_loss(reduction="mean") fails in torch 2.13;
    # model_hvp and ggn_vp avoid it (tested above with nn.MSELoss), a bare function gets a clear error
    g = gen(14)
    X, t = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64)
    w = torch.zeros(3, dtype=F64)
    f = lambda p: nn.functional.mse_loss(X @ p, t)
    expected = 2 * X.T @ X / 6 @ torch.ones(3, dtype=F64)
    try:
        assert_close(cv.hvp_forward_over_reverse(f, w, torch.ones(3, dtype=F64)), expected)
    except RuntimeError as error:
        assert "123996" in str(error)
    assert_close(cv.hvp(f, w, torch.ones(3, dtype=F64)), expected)
