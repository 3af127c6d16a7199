"""optlib.optim.natural: the explicit Fisher against curvlinops' GGN and empirical Fisher, natural
gradient's invariance to reparameterization, the rank of a minibatch Fisher, and K-FAC's Kronecker
factors and preconditioned step against curvlinops' KFACLinearOperator and its inverse (float64).

curvlinops' conventions, read from its kfac.py and matched here: A = (1/N) Σ ā āᵀ over all N examples
with ā = (a, 1) when ``separate_weight_and_bias=False``; G = (1/N) Σ g gᵀ of the per-example output
gradients g = ∂ℓ_n/∂s for a loss with ``reduction="mean"`` and Σ g gᵀ for ``"sum"``; ``fisher_type``
``"empirical"`` uses the observed labels, ``"mc"`` labels drawn with ``multinomial`` from a generator
seeded with ``seed`` (2147483647 by default), ``"type-2"`` the exact expectation (optlib's ``"true"``).
"""
from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optlib.data import Dataset
from optlib.models import MLP, num_parameters
from optlib.optim.natural import (
    KFAC, NaturalGradient, damped_inverses, fisher_matrix, gradient_factor, input_factor, kfac_precondition,
    kl_clip_scale, natural_gradient_direction, output_hessian_sqrt, sample_labels,
)
from optlib.run import train
from optlib.stability import NonFiniteLossError

# linear_operator (imported by curvlinops) and torch.func's jvp, which curvlinops' GGN uses, still call
# torch.jit.script, deprecated in torch 2.13; optlib's own code does not
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
    from curvlinops import EFLinearOperator, GGNLinearOperator, KFACInverseLinearOperator, KFACLinearOperator

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

D = torch.float64
CURVLINOPS_SEED = 2147483647  # KFACLinearOperator's default seed for its "mc" labels
CURVLINOPS_FISHER = {"empirical": "empirical", "mc": "mc", "true": "type-2"}


def _data(n=20, d=5, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D), torch.randint(0, classes, (n,), generator=g)


def _mlp(sizes=(5, 7, 6, 4), seed=1, activation="tanh"):
    return MLP(sizes, activation=activation, generator=torch.Generator().manual_seed(seed), dtype=D)


def _closure(opt, model, X, y, reduction="mean"):
    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(X), y, reduction=reduction)
        loss.backward()
        return loss
    return closure


def _curvlinops_kfac(model, batches, fisher_type, reduction):
    op = KFACLinearOperator(model, nn.CrossEntropyLoss(reduction=reduction), list(model.parameters()), batches,
                            fisher_type=CURVLINOPS_FISHER[fisher_type], check_deterministic=False,
                            separate_weight_and_bias=False)
    op.compute_kronecker_factors()
    return op


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ----------------------------------------------------------------------------- the explicit Fisher


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_true_and_empirical_fisher_equal_curvlinops_ggn_and_empirical_fisher(reduction):
    X, y = _data(6, 4, 5)
    model = _mlp((4, 8, 5))
    params = list(model.parameters())
    eye = torch.eye(num_parameters(model), dtype=D)
    loss = nn.CrossEntropyLoss(reduction=reduction)
    ggn = GGNLinearOperator(model, loss, params, [(X, y)], check_deterministic=False) @ eye
    ef = EFLinearOperator(model, loss, params, [(X, y)], check_deterministic=False) @ eye
    outputs = model(X)
    assert _rel(fisher_matrix(outputs, y, params, "true", reduction=reduction), ggn) < 1e-12
    assert _rel(fisher_matrix(outputs, y, params, "empirical", reduction=reduction), ef) < 1e-12


def test_the_minibatch_fisher_has_rank_at_most_b_times_c_minus_1_and_the_empirical_at_most_b():
    B, C = 6, 5
    X, y = _data(B, 4, C)
    model = _mlp((4, 8, C))
    params = list(model.parameters())
    assert num_parameters(model) == 85 > B * C
    outputs = model(X)
    ranks = {kind: torch.linalg.matrix_rank(fisher_matrix(outputs, y, params, kind,
                                                          generator=torch.Generator().manual_seed(0))).item()
             for kind in ("true", "mc", "empirical")}
    print(f"d = 85, B = {B}, C = {C}: ranks {ranks}")
    assert ranks["true"] <= B * (C - 1) and ranks["empirical"] <= B and ranks["mc"] <= B
    assert ranks["true"] == B * (C - 1) and ranks["empirical"] == B  # the bounds are reached here
    # H_n = diag(p) - pp' has rank C - 1 (H 1 = 0), and S S' = H
    S = output_hessian_sqrt(outputs)
    p = outputs.softmax(1).detach()
    torch.testing.assert_close(S @ S.transpose(1, 2), torch.diag_embed(p) - p[:, :, None] * p[:, None, :])


def test_the_mc_fisher_averages_to_the_true_fisher():
    X, y = _data(20, 3, 3)
    model = nn.Linear(3, 3, dtype=D)
    params = list(model.parameters())
    outputs = model(X)
    g = torch.Generator().manual_seed(0)
    mc = sum(fisher_matrix(outputs, y, params, "mc", generator=g) for _ in range(400)) / 400
    true = fisher_matrix(outputs, y, params, "true")
    assert (torch.linalg.matrix_norm(mc - true) / torch.linalg.matrix_norm(true)).item() < 0.05


def _logistic(X, y, w, lr, steps, method):
    """Binary logistic regression s = X w, trained by ``method``; returns the iterates."""
    w = w.clone().requires_grad_(True)
    if method == "natural":
        opt = NaturalGradient([w], lr=lr, damping=0.0, loss="binary_cross_entropy")
        closure = lambda: (X @ w, y)  # noqa: E731
    else:
        opt = torch.optim.SGD([w], lr=lr)

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(X @ w, y)
            loss.backward()
            return loss
    iterates = [w.detach().clone()]
    for _ in range(steps):
        opt.step(closure)
        iterates.append(w.detach().clone())
    return torch.stack(iterates)


def test_natural_gradient_is_invariant_to_a_linear_reparameterization_and_gradient_descent_is_not():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=g, dtype=D)
    y = torch.bernoulli(torch.sigmoid(X @ torch.tensor([1.0, -2.0, 0.5], dtype=D)), generator=g)
    # features x~ = M x with M badly scaled; s = w' x = w~' x~ when w = M' w~
    Q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=D))[0]
    M = Q @ torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=D))
    w0_tilde = 0.1 * torch.randn(3, generator=g, dtype=D)
    for method, lr in (("natural", 0.5), ("gd", 0.5)):
        path = _logistic(X, y, M.T @ w0_tilde, lr, 10, method)
        path_tilde = _logistic(X @ M.T, y, w0_tilde, lr, 10, method)
        mapped = path_tilde @ M  # row t: (M' w~_t)'
        gap = ((mapped - path).norm(dim=1) / path.norm(dim=1)).max().item()
        print(f"{method}: largest relative gap between the two parameterizations' iterates {gap:.1e}")
        if method == "natural":
            assert gap < 1e-9
            losses = [F.binary_cross_entropy_with_logits(X @ w, y).item() for w in path]
            assert losses[-1] < 0.9 * losses[0] and all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))
        else:
            assert gap > 0.1


def test_natural_gradient_direction_and_reductions():
    X, y = _data(8, 3, 3)
    model = nn.Linear(3, 3, dtype=D)
    steps = {}
    for reduction in ("mean", "sum"):
        m = copy.deepcopy(model)
        opt = NaturalGradient(m.parameters(), lr=1.0, damping=0.0, reduction=reduction)
        loss = opt.step(lambda: (m(X), y))
        assert loss.item() == pytest.approx(F.cross_entropy(model(X), y, reduction=reduction).item(), rel=1e-12)
        steps[reduction] = torch.cat([(p - q).reshape(-1) for p, q in zip(m.parameters(), model.parameters())])
        # .grad holds the gradient at the start point
        model.zero_grad()
        F.cross_entropy(model(X), y, reduction=reduction).backward()
        torch.testing.assert_close(m.weight.grad, model.weight.grad)
    # with λ = 0 the reduction changes F and g by the same factor B: the same step
    torch.testing.assert_close(steps["mean"], steps["sum"], rtol=1e-8, atol=1e-10)
    Fm = torch.diag(torch.tensor([2.0, 4.0], dtype=D))
    g = torch.tensor([2.0, 4.0], dtype=D)
    torch.testing.assert_close(natural_gradient_direction(g, Fm, 0.0), torch.ones(2, dtype=D))
    torch.testing.assert_close(natural_gradient_direction(g, Fm, 2.0), torch.tensor([0.5, 2 / 3], dtype=D))


def test_natural_gradient_rejects_bad_hyperparameters_nan_loss_and_bad_closures():
    w = torch.zeros(3, dtype=D, requires_grad=True)
    for kwargs, match in (({"lr": -1.0}, "lr"), ({"damping": -1e-3}, "damping"), ({"fisher_type": "type-2"}, "fisher"),
                          ({"loss": "mse"}, "loss"), ({"reduction": "none"}, "reduction"), ({"lr": math.nan}, "lr")):
        with pytest.raises(ValueError, match=match):
            NaturalGradient([w], **kwargs)
    X = torch.ones(4, 3, dtype=D)
    y = torch.ones(4, dtype=D)
    opt = NaturalGradient([w], loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match=r"\(outputs, targets\)"):
        opt.step(lambda: F.binary_cross_entropy_with_logits(X @ w, y))
    with pytest.raises(NonFiniteLossError, match="nan"):
        opt.step(lambda: (X @ w * math.nan, y))
    with pytest.raises(ValueError, match="integer labels"):
        NaturalGradient([w]).step(lambda: ((X @ w).reshape(2, 2), y[:2]))


# ----------------------------------------------------------------------------- K-FAC


@pytest.mark.parametrize("fisher_type, reduction", [("empirical", "mean"), ("empirical", "sum"), ("mc", "mean"),
                                                    ("mc", "sum"), ("true", "mean"), ("true", "sum")])
def test_kfac_factors_equal_curvlinops_kfac_linear_operator(fisher_type, reduction):
    X, y = _data()
    model = _mlp()
    op = _curvlinops_kfac(model, [(X, y)], fisher_type, reduction)
    factors = op.state_dict()
    opt = KFAC(model, lr=0.0, fisher_type=fisher_type, reduction=reduction,
               generator=torch.Generator().manual_seed(CURVLINOPS_SEED))
    opt.step(_closure(opt, model, X, y, reduction))
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert len(names) == len(opt.layers) == 3
    errors = []
    for name, layer in zip(names, opt.layers):
        state = opt.state[layer.weight]
        A, G = factors["input_covariances"][name], factors["gradient_covariances"][name]
        assert A.shape == (layer.in_features + 1,) * 2 and G.shape == (layer.out_features,) * 2
        errors += [_rel(state["A"], A), _rel(state["G"], G)]
        torch.testing.assert_close(state["A"], A, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(state["G"], G, rtol=1e-8, atol=1e-12)
    print(f"{fisher_type}/{reduction}: largest relative difference of the factors {max(errors):.1e}")


def test_kfac_running_average_over_two_batches_equals_curvlinops_over_both():
    X, y = _data(24)
    batches = [(X[:12], y[:12]), (X[12:], y[12:])]
    model = _mlp()
    op = _curvlinops_kfac(model, batches, "empirical", "mean")
    opt = KFAC(model, lr=0.0, fisher_type="empirical", factor_decay=0.5)  # lr 0: both batches see the same θ
    for Xb, yb in batches:
        opt.step(_closure(opt, model, Xb, yb))
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            torch.testing.assert_close(opt.state[m.weight]["A"], op.state_dict()["input_covariances"][name])
            torch.testing.assert_close(opt.state[m.weight]["G"], op.state_dict()["gradient_covariances"][name])


@pytest.mark.parametrize("pi_damping", [True, False])
def test_kfac_step_equals_curvlinops_inverse_kfac_times_the_gradient(pi_damping):
    X, y = _data()
    model = _mlp()
    damping = 1e-2
    op = _curvlinops_kfac(model, [(X, y)], "empirical", "mean")
    root = math.sqrt(damping)
    inverse = (KFACInverseLinearOperator(op, damping=damping, use_heuristic_damping=True) if pi_damping
               else KFACInverseLinearOperator(op, damping=(root, root)))
    before = [p.detach().clone() for p in model.parameters()]
    opt = KFAC(model, lr=1.0, damping=damping, fisher_type="empirical", pi_damping=pi_damping)
    opt.step(_closure(opt, model, X, y))
    grads = [p.grad.detach().clone() for p in model.parameters()]
    expected = inverse @ grads
    for p, p0, e in zip(model.parameters(), before, expected):
        torch.testing.assert_close(p.detach() - p0, -e, rtol=1e-8, atol=1e-12)


def test_kfac_helpers_on_their_own():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(10, 3, generator=g, dtype=D)
    A = input_factor(a)
    assert A.shape == (4, 4) and A[3, 3].item() == 1.0  # the appended 1
    torch.testing.assert_close(A[:3, :3], a.T @ a / 10)
    torch.testing.assert_close(input_factor(a, bias=False), a.T @ a / 10)
    gr = torch.randn(10, 2, generator=g, dtype=D)
    torch.testing.assert_close(gradient_factor(gr, "sum"), 10 * gradient_factor(gr, "mean"))
    # G⁻¹ Γ A⁻¹ = (A ⊗ G)⁻¹ vec Γ with column-stacking vec
    Am, Gm = A + torch.eye(4, dtype=D), gradient_factor(gr) + torch.eye(2, dtype=D)
    Gamma = torch.randn(2, 4, generator=g, dtype=D)
    direct = torch.linalg.solve(torch.kron(Am, Gm), Gamma.T.reshape(-1)).reshape(4, 2).T
    torch.testing.assert_close(kfac_precondition(Gamma, torch.linalg.inv(Am), torch.linalg.inv(Gm)), direct)
    # damping split: π = √((tr A / 4) / (tr G / 2))
    A_inv, G_inv = damped_inverses(A, gradient_factor(gr), 0.04)
    pi = math.sqrt((A.trace() / 4 / (gradient_factor(gr).trace() / 2)).item())
    torch.testing.assert_close(torch.linalg.inv(A_inv), A + 0.2 * pi * torch.eye(4, dtype=D))
    torch.testing.assert_close(torch.linalg.inv(G_inv), gradient_factor(gr) + 0.2 / pi * torch.eye(2, dtype=D))
    assert kl_clip_scale([torch.ones(3)], [torch.ones(3)], lr=1.0, kl_clip=12.0) == 1.0
    assert kl_clip_scale([torch.ones(3)], [torch.ones(3)], lr=1.0, kl_clip=0.75) == pytest.approx(0.5)
    # sample_labels draws like curvlinops: multinomial over softmax(scores) with the generator
    scores = torch.randn(5, 3, generator=g, dtype=D)
    expected = scores.softmax(1).multinomial(1, generator=torch.Generator().manual_seed(3)).squeeze(-1)
    assert torch.equal(sample_labels(scores, generator=torch.Generator().manual_seed(3)), expected)


def test_kl_clipping_scales_the_step_so_the_predicted_kl_is_kappa():
    X, y = _data()
    model = _mlp()
    clipped_model = copy.deepcopy(model)
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    lr, kappa = 0.5, 1e-4
    free = KFAC(model, lr=lr, fisher_type="empirical")
    free.step(_closure(free, model, X, y))
    clipped = KFAC(clipped_model, lr=lr, fisher_type="empirical", kl_clip=kappa)
    clipped.step(_closure(clipped, clipped_model, X, y))
    step = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - before
    step_clipped = torch.cat([p.detach().reshape(-1) for p in clipped_model.parameters()]) - before
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    vg = -(step @ grad).item() / lr  # step = -lr v
    nu = math.sqrt(kappa / (lr**2 * vg))
    assert nu < 1
    torch.testing.assert_close(step_clipped, nu * step)


def test_kfac_inverses_are_refreshed_every_inverse_update_interval_steps():
    X, y = _data()
    model = _mlp()
    opt = KFAC(model, lr=0.05, fisher_type="empirical", inverse_update_interval=3, factor_update_interval=2)
    w = opt.layers[0].weight
    seen = []
    for _ in range(4):
        opt.step(_closure(opt, model, X, y))
        seen.append({k: opt.state[w][k].clone() for k in ("G", "A_inv")})
    assert torch.equal(seen[1]["G"], seen[0]["G"])  # no factor update at t = 1 (A of the first layer never changes)
    assert not torch.equal(seen[2]["G"], seen[1]["G"])  # t = 2
    assert torch.equal(seen[1]["A_inv"], seen[0]["A_inv"]) and torch.equal(seen[2]["A_inv"], seen[0]["A_inv"])
    A_inv, _ = damped_inverses(opt.state[w]["A"], opt.state[w]["G"], opt.param_groups[0]["damping"])
    torch.testing.assert_close(seen[3]["A_inv"], A_inv)  # t = 3
    assert opt.state[w]["step"] == 4


def test_kfac_trains_an_mlp_with_optlib_run_train():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 5, generator=g, dtype=D)
    y = (X[:, 0] * X[:, 1] > 0).long() + 2 * (X[:, 2] > 0).long()
    data = Dataset(X[:150], y[:150], X[150:], y[150:])
    model = _mlp((5, 16, 4), activation="relu")
    start = F.cross_entropy(model(data.X_train), data.y_train).item()
    trace = train(model, F.cross_entropy, data, lambda params, **kw: KFAC(model, **kw), steps=30, batch_size=50,
                  eval_every=10, generator=torch.Generator().manual_seed(0), lr=0.2,
                  fisher_type="mc")
    final = trace.metrics["train_loss"][-1][1]
    print(f"K-FAC on an MLP: training loss {start:.3f} -> {final:.3f}")
    assert final < 0.6 * start


def test_kfac_ignores_forward_passes_without_gradients():
    X, y = _data()
    model = _mlp()
    opt = KFAC(model, lr=0.0, fisher_type="empirical", factor_decay=0.0)  # decay 0: the factors of the last batch
    opt.step(_closure(opt, model, X, y))
    A = opt.state[opt.layers[0].weight]["A"].clone()
    with torch.no_grad():  # an evaluation on other data
        model(2 * X + 1)
    opt.step()  # the gradients of the closure above are still in .grad
    torch.testing.assert_close(opt.state[opt.layers[0].weight]["A"], A)
    torch.testing.assert_close(A, input_factor(X))


def test_kfac_refuses_models_without_linear_layers_and_bad_hyperparameters():
    with pytest.raises(ValueError, match="no trainable"):
        KFAC(nn.Sequential(nn.Tanh()))
    with pytest.raises(TypeError, match="nn.Module"):
        KFAC([torch.zeros(2, requires_grad=True)])
    model = _mlp()
    for kwargs, match in (({"lr": -1.0}, "lr"), ({"damping": -1.0}, "damping"), ({"fisher_type": "type-2"}, "fisher"),
                          ({"reduction": "none"}, "reduction"), ({"factor_decay": 1.0}, "factor_decay"),
                          ({"factor_update_interval": 0}, "factor_update_interval"),
                          ({"inverse_update_interval": 1.5}, "inverse_update_interval"), ({"kl_clip": 0.0}, "kl_clip"),
                          ({"mc_samples": 0}, "mc_samples"), ({"mc_samples": 2, "fisher_type": "true"}, "mc_samples"),
                          ({"loss": "mse"}, "loss")):
        with pytest.raises(ValueError, match=match):
            KFAC(model, **kwargs)


def test_kfac_nan_loss_and_a_step_without_backward_raise_clear_errors():
    X, y = _data()
    model = _mlp()
    opt = KFAC(model, fisher_type="empirical")
    with pytest.raises(RuntimeError, match="no backward pass"):
        with torch.no_grad():
            model(X)
        model(X)
        opt.step()
    with pytest.raises(NonFiniteLossError, match="nan"):
        opt.step(lambda: F.cross_entropy(model(X), y) * math.nan)
    opt.remove_hooks()
    assert not opt._handles
