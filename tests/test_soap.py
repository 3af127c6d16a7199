"""optlib.optim.soap: rotations, factor statistics and eigenbases against explicit products and eigh; SOAP against
pytorch_optimizer.SOAP (float64, 40 steps, two param groups, tensors of order 0 to 3); SOAP is Adam on the singular
values when the gradients share their singular vectors; state_dict resume; refused hyperparameters."""
import io

import pytest
import torch

from optlib.optim import Adam
from optlib.optim.soap import SOAP, eigenbasis, factor_statistics, refresh_eigenbasis, rotate
from optlib.stability import NonFiniteLossError
from preconditioner_problems import make_params, run, two_groups

F64 = torch.float64


def orthogonal(n, g):
    return torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))[0]


# ----------------------------------------------------------------------------- pure functions


def test_rotate_is_ql_transpose_g_qr_and_inverse_undoes_it():
    g = torch.Generator().manual_seed(0)
    G, QL, QR = torch.randn(3, 4, generator=g, dtype=F64), orthogonal(3, g), orthogonal(4, g)
    rotated = rotate(G, [QL, QR])
    torch.testing.assert_close(rotated, QL.T @ G @ QR, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(rotate(rotated, [QL, QR], inverse=True), G, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(rotate(G, [None, QR]), G @ QR, rtol=1e-13, atol=1e-15)
    assert torch.equal(rotate(G, [None, None]), G)
    T, Qs = torch.randn(2, 3, 4, generator=g, dtype=F64), [orthogonal(n, g) for n in (2, 3, 4)]
    torch.testing.assert_close(rotate(T, Qs), torch.einsum("abc,ai,bj,ck->ijk", T, *Qs), rtol=1e-12, atol=1e-14)


def test_factor_statistics_is_an_ema_of_the_contractions():
    g = torch.Generator().manual_seed(1)
    G = torch.randn(3, 4, generator=g, dtype=F64)
    L, R = torch.eye(3, dtype=F64), torch.zeros(4, 4, dtype=F64)
    factor_statistics(G, [L, R], 0.9)
    torch.testing.assert_close(L, 0.9 * torch.eye(3, dtype=F64) + 0.1 * G @ G.T, rtol=1e-14, atol=0)
    torch.testing.assert_close(R, 0.1 * G.T @ G, rtol=1e-14, atol=0)
    T = torch.randn(2, 3, 4, generator=g, dtype=F64)
    F = [None, torch.zeros(3, 3, dtype=F64), None]
    factor_statistics(T, F, 0.0)
    torch.testing.assert_close(F[1], torch.einsum("iak,ibk->ab", T, T), rtol=1e-13, atol=0)


def test_eigenbasis_sorted_decreasing_and_one_power_step_keeps_an_exact_basis():
    g = torch.Generator().manual_seed(2)
    Q = orthogonal(5, g)
    lam = torch.tensor([0.1, 3.0, 1.0, 7.0, 0.5], dtype=F64)
    A = (Q * lam) @ Q.T
    basis = eigenbasis(A)
    torch.testing.assert_close(torch.diag(basis.T @ A @ basis), lam.sort(descending=True).values, rtol=1e-12, atol=0)
    shuffled = basis[:, [2, 0, 4, 1, 3]]  # the right vectors in the wrong order: the refresh sorts them back
    new, order = refresh_eigenbasis(A, shuffled)
    assert order.tolist() == [1, 3, 0, 4, 2]
    torch.testing.assert_close((new * basis).sum(0).abs(), torch.ones(5, dtype=F64), rtol=0, atol=1e-12)


def test_refresh_in_float64_is_orthogonal_to_rounding_and_the_references_float32_is_not():
    g = torch.Generator().manual_seed(3)
    M = torch.randn(6, 6, generator=g, dtype=F64)
    A, Q = M @ M.T, orthogonal(6, g)
    eye = torch.eye(6, dtype=F64)
    q64, _ = refresh_eigenbasis(A, Q)
    q32, _ = refresh_eigenbasis(A, Q, torch.float32)
    assert q64.dtype == q32.dtype == F64
    assert (q64.T @ q64 - eye).abs().max() < 1e-14
    assert 1e-10 < (q32.T @ q32 - eye).abs().max() < 1e-5


# ----------------------------------------------------------------------------- against pytorch_optimizer

# every hyperparameter set: pytorch_optimizer's defaults (weight decay 0.01, betas (0.95, 0.95), frequency 10) are traps
REFERENCE_CASES = {
    "frequency 3": dict(lr=0.01, betas=(0.9, 0.99), shampoo_beta=0.9, eps=1e-8, weight_decay=0.05,
                        precondition_frequency=3),
    "frequency 1, 1-D rotated, no bias correction": dict(lr=0.003, betas=(0.8, 0.95), shampoo_beta=0.5, eps=1e-6,
                                                          weight_decay=0.0, precondition_frequency=1,
                                                          precondition_1d=True, correct_bias=False),
    "large dimensions left alone, shampoo_beta = beta2": dict(lr=0.01, betas=(0.95, 0.95), shampoo_beta=None, eps=1e-8,
                                                              weight_decay=0.01, precondition_frequency=10,
                                                              max_precondition_dim=3),
}


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_matches_pytorch_optimizer_soap_in_float64(case):
    po = pytest.importorskip("pytorch_optimizer")
    kw = REFERENCE_CASES[case]
    ours, theirs = make_params(), make_params()
    a = two_groups(SOAP, ours, qr_dtype=torch.float32, **kw)
    b = two_groups(po.SOAP, theirs, **kw)
    for k in range(40):
        run(a, ours, 1, k)
        run(b, theirs, 1, k)
    for x, y, x0 in zip(ours, theirs, make_params()):
        assert (y - x0).abs().max() > 1e-2
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)  # the same operations: in practice bit for bit


def test_float64_bases_stay_close_to_the_references_float32_ones():
    po = pytest.importorskip("pytorch_optimizer")
    kw = REFERENCE_CASES["frequency 3"]
    ours, theirs = make_params(), make_params()
    a, b = two_groups(SOAP, ours, **kw), two_groups(po.SOAP, theirs, **kw)
    for k in range(20):
        run(a, ours, 1, k)
        run(b, theirs, 1, k)
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_the_first_step_builds_the_bases_without_moving():
    params = make_params()
    opt = SOAP(params, weight_decay=0.5)
    before = [p.detach().clone() for p in params]
    run(opt, params, 1)
    assert all(torch.equal(p, x) for p, x in zip(params, before))
    state = opt.state[params[0]]
    torch.testing.assert_close(state["basis_0"].T @ state["basis_0"], torch.eye(5, dtype=F64), rtol=0, atol=1e-14)
    assert "factor_0" not in opt.state[params[1]]  # 1-D: plain Adam unless precondition_1d
    run(opt, params, 1, 1)
    assert all(not torch.equal(p, x) for p, x in zip(params, before))


# ----------------------------------------------------------------------------- the rotation


@pytest.mark.parametrize("shape", [(4, 4), (5, 3)])
def test_gradients_with_common_singular_vectors_give_adam_on_the_singular_values(shape):
    """G_t = U diag(σ_t) Vᵀ: the factors' eigenvectors are U and V, G' = diag(±σ_t), and the step is
    U diag(Adam step on σ_t) Vᵀ; the off-diagonal coordinates, always 0, never move."""
    m, n = shape
    r = min(m, n)
    g = torch.Generator().manual_seed(4)
    U, V = orthogonal(m, g)[:, :r], orthogonal(n, g)[:, :r]
    sigmas = [torch.linspace(3.0, 1.0, r, dtype=F64) * (1 + 0.3 * torch.rand(1, generator=g, dtype=F64))
              + 0.05 * torch.rand(r, generator=g, dtype=F64) for _ in range(12)]  # kept in decreasing order
    lr, betas, eps = 0.01, (0.9, 0.99), 1e-6  # eps >> rounding: G' is diagonal only to 1e-16
    W = torch.zeros(m, n, dtype=F64, requires_grad=True)
    opt = SOAP([W], lr=lr, betas=betas, shampoo_beta=0.7, eps=eps, weight_decay=0.0, precondition_frequency=1,
                correct_bias=False)
    x = torch.zeros(r, dtype=F64, requires_grad=True)
    adam = Adam([x], lr=lr, betas=betas, eps=eps, bias_correction=False)  # SOAP corrects with eps inside
    W.grad = (U * sigmas[0]) @ V.T
    opt.step()  # step 1 builds the bases only
    for sigma in sigmas[1:]:
        W.grad = (U * sigma) @ V.T
        x.grad = sigma.clone()
        opt.step()
        adam.step()
        torch.testing.assert_close(W.detach(), (U * x.detach()) @ V.T, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- state, checks


@pytest.mark.parametrize("kwargs", [dict(precondition_frequency=2), dict(precondition_1d=True, max_precondition_dim=4,
                                                                         qr_dtype=torch.float32)])
def test_state_dict_resume_gives_the_same_iterates(kwargs):
    params = make_params()
    opt = two_groups(SOAP, params, 0.01, **kwargs)
    run(opt, params, 5)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed_p = [p.detach().clone().requires_grad_() for p in params]
    resumed = two_groups(SOAP, resumed_p, 0.5, **kwargs)
    resumed.load_state_dict(torch.load(buffer))
    run(opt, params, 6, start=5)
    run(resumed, resumed_p, 6, start=5)
    for a, b in zip(params, resumed_p):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), "lr must be >= 0"), (dict(betas=(1.0, 0.9)), "beta1 must be in"),
    (dict(betas=(0.9, -0.1)), "beta2 must be in"), (dict(betas=0.9), "betas must be a pair"),
    (dict(shampoo_beta=1.0), "shampoo_beta must be in"), (dict(eps=0.0), "eps must be a finite number > 0"),
    (dict(weight_decay=-1.0), "weight_decay must be >= 0"),
    (dict(precondition_frequency=0), "precondition_frequency must be a positive integer"),
    (dict(max_precondition_dim=1.5), "max_precondition_dim must be a positive integer"),
])
def test_invalid_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SOAP(make_params(), **kwargs)


def test_wrong_types_are_refused():
    with pytest.raises(TypeError, match="precondition_1d must be True or False"):
        SOAP(make_params(), precondition_1d=1)
    with pytest.raises(TypeError, match="qr_dtype"):
        SOAP(make_params(), qr_dtype=torch.int32)


def test_non_finite_and_sparse_gradients_are_refused():
    W = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    W.grad = torch.tensor([[1.0, float("inf")], [0.0, 1.0]], dtype=F64)
    with pytest.raises(NonFiniteLossError, match="NaN or inf"):
        SOAP([W]).step()
    W.grad = torch.eye(2, dtype=F64).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        SOAP([W]).step()
