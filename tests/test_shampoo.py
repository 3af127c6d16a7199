"""optlib.optim.shampoo: the matrix root, the Kronecker factors and the Kronecker identity against closed forms;
Shampoo against pytorch_optimizer.Shampoo (float64, two param groups, tensors of order 0 to 3); the paper's and
practice's forms by hand; state_dict resume; refused hyperparameters; Shampoo against SGD and Adam on an
ill-conditioned matrix least-squares problem."""
import io
import math

import pytest
import torch

from optlib.optim import SGD, Adam
from optlib.optim.shampoo import (Shampoo, graft, kronecker_factors, kronecker_precondition, matrix_inverse_root,
                                  unfold)
from optlib.stability import NonFiniteLossError
from preconditioner_problems import loss_fn, make_params, run, two_groups

F64 = torch.float64


def spd(n, seed, cond=100.0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return (Q * torch.logspace(0, -math.log10(cond), n, dtype=F64)) @ Q.T


# ----------------------------------------------------------------------------- pure functions


def test_matrix_inverse_root_of_a_diagonal_matrix_is_the_power_of_its_entries():
    d = torch.tensor([4.0, 9.0, 0.25, 1e-3], dtype=F64)
    for p, eps in ((2, 0.0), (4, 0.0), (4, 1e-2), (3, 0.5)):
        expected = torch.diag((d + eps) ** (-1.0 / p))
        torch.testing.assert_close(matrix_inverse_root(torch.diag(d), p, eps), expected, rtol=1e-13, atol=0)


def test_matrix_inverse_root_of_a_random_spd_matrix():
    A = spd(6, 0, cond=1e3)
    root = matrix_inverse_root(A, 4)
    torch.testing.assert_close(torch.linalg.matrix_power(root, 4) @ A, torch.eye(6, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(root, root.T, rtol=0, atol=1e-14)
    assert torch.linalg.eigvalsh(root).min() > 0
    square = matrix_inverse_root(A, 2, eps=0.1)
    torch.testing.assert_close(square @ square @ (A + 0.1 * torch.eye(6, dtype=F64)), torch.eye(6, dtype=F64),
                               rtol=0, atol=1e-12)


def test_matrix_inverse_root_eps_bounds_a_singular_matrix_and_rounding_negatives_are_clamped():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(5, 2, generator=g, dtype=F64)
    A = v @ v.T  # rank 2: three zero eigenvalues, which rounding makes +-1e-16
    A = A - 1e-13 * torch.eye(5, dtype=F64)  # now some are certainly negative
    root = matrix_inverse_root(A, 4, eps=1e-8)
    assert torch.isfinite(root).all()
    assert torch.linalg.eigvalsh(root).max() == pytest.approx(1e-8 ** -0.25, rel=1e-6)  # the clamp at 0, then eps
    assert not torch.isfinite(matrix_inverse_root(torch.zeros(3, 3, dtype=F64), 2, eps=0.0)).all()
    with pytest.raises(ValueError, match="square"):
        matrix_inverse_root(torch.ones(2, 3), 2)
    with pytest.raises(ValueError, match="p must be"):
        matrix_inverse_root(torch.eye(2), 0)


def test_kronecker_factors_sum_and_ema_against_explicit_products():
    g = torch.Generator().manual_seed(2)
    G = torch.randn(3, 4, generator=g, dtype=F64)
    L, R = kronecker_factors(G, [torch.eye(3, dtype=F64), torch.zeros(4, 4, dtype=F64)])
    torch.testing.assert_close(L, torch.eye(3, dtype=F64) + G @ G.T, rtol=1e-14, atol=0)
    torch.testing.assert_close(R, G.T @ G, rtol=1e-14, atol=0)
    L2, _ = kronecker_factors(G, [L.clone(), None], beta2=0.9)
    torch.testing.assert_close(L2, 0.9 * L + 0.1 * G @ G.T, rtol=1e-14, atol=0)
    T = torch.randn(2, 3, 4, generator=g, dtype=F64)
    factors = kronecker_factors(T, [torch.zeros(n, n, dtype=F64) for n in T.shape])
    torch.testing.assert_close(factors[1], torch.einsum("iak,ibk->ab", T, T), rtol=1e-13, atol=0)
    torch.testing.assert_close(unfold(T, 2), T.permute(2, 0, 1).reshape(4, 6))


def test_kronecker_identity_on_small_sizes():
    """vec(P G Sᵀ) = (P ⊗ S) vec(G) with row-major vec; (L ⊗ R)^(-1/4) = L^(-1/4) ⊗ R^(-1/4); column-major: S ⊗ P."""
    g = torch.Generator().manual_seed(3)
    G = torch.randn(3, 4, generator=g, dtype=F64)
    L, R = spd(3, 4), spd(4, 5)
    Lr, Rr = matrix_inverse_root(L, 4), matrix_inverse_root(R, 4)
    shampoo = kronecker_precondition(G, [Lr, Rr])
    torch.testing.assert_close(shampoo, Lr @ G @ Rr, rtol=1e-13, atol=1e-15)
    full = matrix_inverse_root(torch.kron(L, R), 4)  # the 12 x 12 full-matrix preconditioner
    torch.testing.assert_close(full, torch.kron(Lr, Rr), rtol=0, atol=1e-11)
    torch.testing.assert_close(shampoo.reshape(-1), full @ G.reshape(-1), rtol=0, atol=1e-11)
    torch.testing.assert_close(shampoo.T.reshape(-1), torch.kron(Rr, Lr) @ G.T.reshape(-1), rtol=1e-12, atol=1e-14)
    T = torch.randn(2, 3, 2, generator=g, dtype=F64)
    mats = [spd(2, 6), spd(3, 7), spd(2, 8)]
    explicit = torch.kron(torch.kron(mats[0], mats[1]), mats[2])
    torch.testing.assert_close(kronecker_precondition(T, mats).reshape(-1), explicit @ T.reshape(-1),
                               rtol=1e-12, atol=1e-14)
    assert torch.equal(kronecker_precondition(G, [None, None]), G)


def test_graft_takes_the_direction_of_one_and_the_norm_of_the_other():
    d, s = torch.tensor([3.0, 4.0], dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    torch.testing.assert_close(graft(d, s), torch.tensor([6.0, 8.0], dtype=F64))
    assert torch.equal(graft(torch.zeros(2, dtype=F64), s), torch.zeros(2, dtype=F64))


# ----------------------------------------------------------------------------- against pytorch_optimizer

REFERENCE = dict(vector_preconditioner="full", momentum_form="reference", root_schedule="multiples")
REFERENCE_CASES = {
    "plain": dict(lr=0.01, momentum=0.0, weight_decay=0.0, epsilon=1e-6, update_freq=1),
    "momentum + L2 + every 3 steps": dict(lr=0.005, momentum=0.5, weight_decay=0.1, epsilon=1e-3, update_freq=3),
    "strong momentum": dict(lr=0.003, momentum=0.9, weight_decay=0.0, epsilon=1e-4, update_freq=2),
}


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_matches_pytorch_optimizer_shampoo_in_float64(case):
    po = pytest.importorskip("pytorch_optimizer")
    kw = REFERENCE_CASES[case]
    ours, theirs = make_params(), make_params()
    a = two_groups(Shampoo, ours, kw["lr"], momentum=kw["momentum"], weight_decay=kw["weight_decay"],
                   epsilon=kw["epsilon"], update_freq=kw["update_freq"], **REFERENCE)
    b = two_groups(po.Shampoo, theirs, kw["lr"], momentum=kw["momentum"], weight_decay=kw["weight_decay"],
                   matrix_eps=kw["epsilon"], preconditioning_compute_steps=kw["update_freq"])
    for k in range(30):
        run(a, ours, 1, k)
        run(b, theirs, 1, k)
    start = make_params()
    for x, y, x0 in zip(ours, theirs, start):
        assert (y - x0).abs().max() > 1e-3 or x.ndim == 0  # the run moved every tensor (the scalar barely)
        # the reference takes roots by SVD, optlib by eigh: rounding amplified by eps^(-1/2) on the 1-D factor
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_paper_defaults_differ_from_the_reference_where_documented():
    """Default schedule moves at step 1; the reference's ('multiples') stays put until step update_freq."""
    for schedule, moved in (("first", [True, True, True]), ("multiples", [False, False, True])):
        params = make_params()
        opt = Shampoo(params, lr=0.01, update_freq=3, root_schedule=schedule)
        before = [p.detach().clone() for p in params]
        for k in range(3):
            run(opt, params, 1, k)
            assert (not torch.equal(params[0], before[0])) == moved[k], (schedule, k)


# ----------------------------------------------------------------------------- the forms by hand


def test_two_steps_by_hand_with_ema_heavy_ball_and_a_diagonal_vector():
    g = torch.Generator().manual_seed(5)
    W = torch.randn(3, 2, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=F64, requires_grad=True)
    grads = [(torch.randn(3, 2, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)) for _ in range(2)]
    lr, mu, beta2, eps, wd = 0.1, 0.7, 0.8, 1e-3, 0.05
    opt = Shampoo([W, b], lr=lr, momentum=mu, beta2=beta2, epsilon=eps, weight_decay=wd)
    Wx, bx = W.detach().clone(), b.detach().clone()
    L, R, s = torch.zeros(3, 3, dtype=F64), torch.zeros(2, 2, dtype=F64), torch.zeros(3, dtype=F64)
    mW, mb = torch.zeros_like(Wx), torch.zeros_like(bx)
    for gW, gb in grads:
        W.grad, b.grad = gW.clone(), gb.clone()
        opt.step()
        gW, gb = gW + wd * Wx, gb + wd * bx
        L, R = beta2 * L + (1 - beta2) * gW @ gW.T, beta2 * R + (1 - beta2) * gW.T @ gW
        s = beta2 * s + (1 - beta2) * gb ** 2
        mW = mu * mW + matrix_inverse_root(L, 4, eps) @ gW @ matrix_inverse_root(R, 4, eps)
        mb = mu * mb + gb / (s + eps).sqrt()
        Wx, bx = Wx - lr * mW, bx - lr * mb
        torch.testing.assert_close(W.detach(), Wx, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(b.detach(), bx, rtol=1e-12, atol=1e-14)


def test_first_step_without_eps_is_the_polar_factor():
    """L = G Gᵀ, R = Gᵀ G: L^(-1/4) G R^(-1/4) = U Vᵀ for G = U S Vᵀ (the step whitens the singular values)."""
    g = torch.Generator().manual_seed(6)
    G = torch.randn(4, 4, generator=g, dtype=F64)
    W = torch.zeros(4, 4, dtype=F64, requires_grad=True)
    W.grad = G.clone()
    Shampoo([W], lr=1.0, epsilon=1e-300).step()
    U, _, Vh = torch.linalg.svd(G)
    torch.testing.assert_close(-W.detach(), U @ Vh, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["sgd", "adagrad", "adam"])
def test_grafting_gives_each_tensor_the_norm_of_the_grafted_step(kind):
    params = make_params()
    opt = Shampoo(params, lr=0.01, grafting=kind, grafting_beta2=0.9, grafting_eps=1e-8)
    sums = [torch.zeros_like(p) for p in params]
    for k in range(3):
        before = [p.detach().clone() for p in params]
        run(opt, params, 1, k)
        for p, x0, acc in zip(params, before, sums):
            g = p.grad
            if kind == "sgd":
                step = g
            elif kind == "adagrad":
                acc += g * g
                step = g / (acc.sqrt() + 1e-8)
            else:
                acc.mul_(0.9).add_(0.1 * g * g)
                step = g / ((acc / (1 - 0.9 ** (k + 1))).sqrt() + 1e-8)
            assert (p - x0).norm().item() == pytest.approx(0.01 * step.norm().item(), rel=1e-12)


# ----------------------------------------------------------------------------- state, checks


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9, update_freq=3, grafting="adam", beta2=0.95),
                                    dict(momentum=0.5, weight_decay=0.01, **REFERENCE)])
def test_state_dict_resume_gives_the_same_iterates(kwargs):
    params = make_params()
    opt = two_groups(Shampoo, params, 0.01, **kwargs)
    run(opt, params, 4)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed_p = [p.detach().clone().requires_grad_() for p in params]
    resumed = two_groups(Shampoo, resumed_p, 0.5, **kwargs)
    resumed.load_state_dict(torch.load(buffer))
    run(opt, params, 5, start=4)
    run(resumed, resumed_p, 5, start=4)
    for a, b in zip(params, resumed_p):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), "lr must be >= 0"), (dict(momentum=1.0), "momentum must be in"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"), (dict(epsilon=0.0), "epsilon must be a finite number > 0"),
    (dict(update_freq=0), "update_freq must be a positive integer"), (dict(update_freq=2.0), "update_freq must be"),
    (dict(beta2=1.5), "beta2 must be in"), (dict(grafting="lion"), "grafting must be one of"),
    (dict(grafting_beta2=1.0), "grafting_beta2 must be in"),
    (dict(vector_preconditioner="none"), "vector_preconditioner must be one of"),
    (dict(momentum_form="nesterov"), "momentum_form must be one of"), (dict(root_schedule="last"), "root_schedule"),
])
def test_invalid_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Shampoo(make_params(), **kwargs)


def test_non_finite_and_sparse_gradients_are_refused():
    W = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    W.grad = torch.tensor([[1.0, float("nan")], [0.0, 1.0]], dtype=F64)
    with pytest.raises(NonFiniteLossError, match="NaN or inf"):
        Shampoo([W]).step()
    W.grad = torch.eye(2, dtype=F64).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        Shampoo([W]).step()


def test_closure_loss_is_returned():
    params = make_params()
    opt = Shampoo(params, lr=0.01)

    def closure():
        opt.zero_grad()
        loss = loss_fn(params, 0)
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(loss_fn(make_params(), 0).item())


# ----------------------------------------------------------------------------- the point of Shampoo


def ill_conditioned(n, cond, g):
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return (U * torch.logspace(0, -math.log10(cond), n, dtype=F64)) @ V.T


def steps_to_target(make, A, B, C, target, cap):
    """Full-batch steps on 0.5 ||A W B - C||² from W = 0 until the loss is <= target × the first loss."""
    W = torch.zeros(A.shape[1], B.shape[0], dtype=F64, requires_grad=True)
    opt = make([W])
    first = None
    for t in range(cap + 1):
        opt.zero_grad()
        loss = 0.5 * ((A @ W @ B - C) ** 2).sum()
        first = loss.item() if first is None else first
        if not math.isfinite(loss.item()):
            return math.inf
        if loss.item() <= target * first:
            return t
        loss.backward()
        opt.step()
    return math.inf


def test_shampoo_beats_sgd_and_adam_on_an_ill_conditioned_matrix_least_squares_problem():
    """A and B have condition number 30, so the Hessian (B Bᵀ) ⊗ (Aᵀ A) has 30⁴ ≈ 8e5; Shampoo's factors
    capture the two sides, a diagonal preconditioner cannot (A and B are rotated)."""
    g = torch.Generator().manual_seed(0)
    A, B = ill_conditioned(8, 30.0, g), ill_conditioned(6, 30.0, g)
    C = A @ torch.randn(8, 6, generator=g, dtype=F64) @ B
    target, cap = 1e-4, 300
    best = {
        "Shampoo": min(steps_to_target(lambda p, lr=lr: Shampoo(p, lr=lr, epsilon=1e-12), A, B, C, target, cap)
                       for lr in (3.0, 10.0, 30.0, 100.0)),
        "SGD": min(steps_to_target(lambda p, lr=lr: SGD(p, lr=lr), A, B, C, target, cap) for lr in (0.3, 1.0, 1.9)),
        "SGD momentum": min(steps_to_target(lambda p, lr=lr: SGD(p, lr=lr, momentum=0.9), A, B, C, target, cap)
                            for lr in (0.1, 0.3, 1.0)),
        "Adam": min(steps_to_target(lambda p, lr=lr: Adam(p, lr=lr), A, B, C, target, cap)
                    for lr in (0.03, 0.1, 0.3, 1.0)),
    }
    assert best["Shampoo"] <= 100, best
    for name in ("SGD", "SGD momentum", "Adam"):
        assert best[name] >= 3 * best["Shampoo"], best  # at least three times as many steps (or never, within cap)
