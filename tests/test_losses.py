"""optlib.losses: the losses against their textbook formulas, the hand-derived gradients against autograd."""
import math

import pytest
import torch

from optlib.losses import softmax_loss, softmax_loss_and_grad, svm_loss, svm_loss_and_grad


def problem(n=13, d=7, C=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(C, d, generator=g, dtype=dtype)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, C, (n,), generator=g)
    return W, X, y


def svm_by_loops(scores, y, margin=1.0):
    total = 0.0
    for i in range(len(y)):
        for j in range(scores.shape[1]):
            if j != y[i]:
                total += max(0.0, float(scores[i, j] - scores[i, y[i]]) + margin)
    return total / len(y)


def softmax_by_loops(scores, y):
    total = 0.0
    for i in range(len(y)):
        row = [float(s) for s in scores[i]]
        total += -math.log(math.exp(row[int(y[i])]) / sum(math.exp(s) for s in row))
    return total / len(y)


@pytest.mark.parametrize("margin", [1.0, 0.5, 3.0])
def test_svm_loss_matches_the_formula(margin):
    W, X, y = problem()
    scores = X @ W.T
    assert svm_loss(scores, y, margin).item() == pytest.approx(svm_by_loops(scores, y, margin), rel=1e-12)


def test_svm_loss_hand_example():
    # cs231n-style example: scores of one image for 3 classes, correct class 0
    scores = torch.tensor([[3.2, 5.1, -1.7]], dtype=torch.float64)
    assert svm_loss(scores, torch.tensor([0])).item() == pytest.approx(2.9)
    # a confidently correct example costs nothing
    assert svm_loss(torch.tensor([[10.0, 0.0, 0.0]]), torch.tensor([0])).item() == 0.0


def test_softmax_loss_matches_the_formula_and_cross_entropy():
    W, X, y = problem()
    scores = X @ W.T
    assert softmax_loss(scores, y).item() == pytest.approx(softmax_by_loops(scores, y), rel=1e-12)
    torch.testing.assert_close(softmax_loss(scores, y), torch.nn.functional.cross_entropy(scores, y))


def test_softmax_loss_of_uniform_scores_is_log_C():
    for C in (2, 10):
        assert softmax_loss(torch.zeros(5, C), torch.zeros(5, dtype=torch.long)).item() == pytest.approx(math.log(C))


@pytest.mark.parametrize("reg", [0.0, 0.1, 2.5])
def test_loss_and_grad_values_match_the_plain_losses_plus_reg(reg):
    W, X, y = problem(seed=1)
    scores = X @ W.T
    loss, _ = svm_loss_and_grad(W, X, y, reg=reg)
    assert loss.item() == pytest.approx(svm_loss(scores, y).item() + reg * float((W**2).sum()), rel=1e-12)
    loss, _ = softmax_loss_and_grad(W, X, y, reg=reg)
    assert loss.item() == pytest.approx(softmax_loss(scores, y).item() + reg * float((W**2).sum()), rel=1e-12)


def test_svm_margin_parameter_is_used_by_loss_and_grad():
    W, X, y = problem(seed=2)
    for margin in (0.1, 2.0):
        loss, _ = svm_loss_and_grad(W, X, y, margin=margin)
        assert loss.item() == pytest.approx(svm_by_loops(X @ W.T, y, margin), rel=1e-12)


@pytest.mark.parametrize("which", ["svm", "softmax"])
@pytest.mark.parametrize("reg", [0.0, 0.05, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hand_gradient_matches_autograd(which, reg, seed):
    W, X, y = problem(n=20, d=6, C=5, seed=seed)
    loss_and_grad, plain = {"svm": (svm_loss_and_grad, svm_loss), "softmax": (softmax_loss_and_grad, softmax_loss)}[which]
    loss, grad = loss_and_grad(W, X, y, reg=reg)
    Wg = W.clone().requires_grad_(True)
    auto_loss = plain(X @ Wg.T, y) + reg * (Wg * Wg).sum()
    (auto_grad,) = torch.autograd.grad(auto_loss, Wg)
    assert grad.shape == W.shape and grad.dtype == torch.float64
    torch.testing.assert_close(loss, auto_loss.detach(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-12, atol=1e-13)


def test_softmax_gradient_rows_sum_to_zero_without_reg():
    # Σ_j (P − Y)_ij = 0 for every example, so the class gradients sum to 0
    W, X, y = problem(seed=3)
    _, grad = softmax_loss_and_grad(W, X, y)
    torch.testing.assert_close(grad.sum(0), torch.zeros(W.shape[1], dtype=W.dtype), rtol=0, atol=1e-13)


def test_softmax_loss_and_grad_is_stable_for_huge_scores():
    W, X, y = problem(seed=4)
    loss, grad = softmax_loss_and_grad(1e4 * W, X, y)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, softmax_loss(X @ (1e4 * W).T, y))


def test_float32_inputs_give_float32_outputs():
    W, X, y = problem(dtype=torch.float32)
    for fn in (svm_loss_and_grad, softmax_loss_and_grad):
        loss, grad = fn(W, X, y, reg=0.1)
        assert loss.dtype == torch.float32 and grad.dtype == torch.float32


@pytest.mark.parametrize("fn", [svm_loss_and_grad, softmax_loss_and_grad])
def test_shape_and_label_errors(fn):
    W, X, y = problem(n=6, d=5, C=3)
    with pytest.raises(ValueError, match="expected W"):
        fn(W[0], X, y)
    with pytest.raises(ValueError, match="expected W"):
        fn(W, X[0], y)
    with pytest.raises(ValueError, match="expected W"):
        fn(W, X, y[:, None])
    with pytest.raises(ValueError, match="features per class"):
        fn(W[:, :4], X, y)
    with pytest.raises(ValueError, match="rows but y has"):
        fn(W, X, y[:-1])
    with pytest.raises(ValueError, match="labels must lie in"):
        fn(W, X, torch.full_like(y, 3))
    with pytest.raises(ValueError, match="labels must lie in"):
        fn(W, X, torch.full_like(y, -1))
    with pytest.raises(ValueError, match="reg must be >= 0"):
        fn(W, X, y, reg=-0.1)


# the loss as a function of W, and the hinge term closest to its kink ----------------------------
from optlib.losses import closest_margin, objective  # noqa: E402


@pytest.mark.parametrize("loss_fn", [svm_loss, softmax_loss])
def test_objective_is_the_loss_plus_the_penalty_and_matches_the_hand_gradient(loss_fn):
    W, X, y = problem(seed=3)
    L = objective(loss_fn, X, y, reg=0.3)
    assert L(W).item() == pytest.approx(loss_fn(X @ W.T, y).item() + 0.3 * (W * W).sum().item(), rel=1e-14)
    W_auto = W.clone().requires_grad_(True)
    L(W_auto).backward()
    hand = (svm_loss_and_grad if loss_fn is svm_loss else softmax_loss_and_grad)(W, X, y, 0.3)[1]
    torch.testing.assert_close(W_auto.grad, hand, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="reg must be"):
        objective(loss_fn, X, y, reg=-1.0)
    with pytest.raises(ValueError, match="expected X"):
        objective(loss_fn, X, y[:-1])


def test_closest_margin_finds_the_smallest_hinge_argument():
    W, X, y = problem(seed=4)
    i, j, m = closest_margin(W, X, y)
    scores = X @ W.T
    margins = [(abs(float(scores[a, b] - scores[a, y[a]] + 1.0)), a, b)
               for a in range(len(y)) for b in range(W.shape[0]) if b != y[a]]
    smallest, a, b = min(margins)
    assert (i, j) == (a, b) and abs(m) == pytest.approx(smallest, rel=1e-12) and j != y[i]
    # moving the bias column of class j by -m puts that margin on the kink: the loss bends there
    X1 = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    W1 = torch.cat([W, torch.zeros(W.shape[0], 1, dtype=W.dtype)], 1)
    i, j, m = closest_margin(W1, X1, y)
    W1[j, -1] -= m
    assert abs(closest_margin(W1, X1, y)[2]) < 1e-12
    with pytest.raises(ValueError, match="at least one example"):
        closest_margin(W, X[:0], y[:0])
