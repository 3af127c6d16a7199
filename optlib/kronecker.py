"""A problem with Kronecker-structured curvature, on which chapter 16 races Shampoo and SOAP, and the race's tools.

The problem is min ½‖A W B − C‖² over a matrix W, with A and B rotated matrices of chosen condition
numbers (:func:`matrix_problem`). Its Hessian is (B Bᵀ) ⊗ (Aᵀ A), a Kronecker product: the case Shampoo's
two factors are built for, and one where a diagonal preconditioner (Adam) cannot help, because A and B
are rotated. :func:`matrix_losses` runs one optimizer on it, :func:`best_run` tunes the learning rate of
one method from its grid in :data:`METHODS` (``optlib.widgets.shampoo`` draws the race under sliders).
:func:`mlp_losses` trains a small digits MLP full batch, and :func:`steps_to`, :func:`first_below`,
:func:`outcome`, :func:`verdict` and :func:`state_floats` read the runs.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import torch

from optlib import tuning
from optlib.optim import SGD, SOAP, Adam, Shampoo

__all__ = ["METHODS", "MatrixProblem", "best_run", "first_below", "ill_conditioned", "matrix_losses",
           "matrix_problem", "mlp_losses", "outcome", "state_floats", "steps_to", "verdict"]

F64 = torch.float64


def ill_conditioned(n: int, cond: float, generator: torch.Generator) -> torch.Tensor:
    """U diag(s) Vᵀ with random orthogonal U, V and singular values s from 1 down to 1/``cond`` (log-spaced)."""
    if cond < 1:
        raise ValueError(f"cond must be >= 1, got {cond}")
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=F64))
    return (U * torch.logspace(0, -math.log10(cond), n, dtype=F64)) @ V.T


class MatrixProblem(NamedTuple):
    """min ½‖A W B − C‖² with W of shape (A's columns, B's rows); C = A W* B, so the minimum is 0."""

    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor

    def loss(self, W: torch.Tensor) -> torch.Tensor:
        """½‖A W B − C‖²."""
        return 0.5 * ((self.A @ W @ self.B - self.C) ** 2).sum()

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of W."""
        return self.A.shape[1], self.B.shape[0]


def matrix_problem(cond_a: float, cond_b: float, m: int = 8, n: int = 6, seed: int = 0) -> MatrixProblem:
    """A (m × m) and B (n × n) of condition numbers ``cond_a`` and ``cond_b``, C = A W* B for a random W*.

    The Hessian of ½‖A W B − C‖² is (B Bᵀ) ⊗ (Aᵀ A): its condition number is (cond_a · cond_b)².
    """
    g = torch.Generator().manual_seed(seed)
    A, B = ill_conditioned(m, cond_a, g), ill_conditioned(n, cond_b, g)
    return MatrixProblem(A, B, A @ torch.randn(m, n, generator=g, dtype=F64) @ B)


def matrix_losses(problem: MatrixProblem, make_optimizer: Callable, steps: int,
                  stop_below: float | None = None) -> list[float]:
    """The loss at W = 0 and after each of ``steps`` full-batch steps of ``make_optimizer([W])``.

    A run whose loss becomes NaN, inf or larger than 1e6 × its start stops there; the rest of the list
    is inf, so the run has ``steps + 1`` entries. With ``stop_below`` the run ends early (a shorter
    list) once the loss is <= ``stop_below`` × the first loss.
    """
    W = torch.zeros(problem.shape, dtype=F64, requires_grad=True)
    opt = make_optimizer([W])
    A, B, C = problem
    losses: list[float] = []
    for _ in range(steps + 1):
        with torch.no_grad():
            # the gradient in closed form, Aᵀ (A W B − C) Bᵀ: cheaper than autograd for this tiny problem
            residual = A @ W @ B - C
            value = 0.5 * residual.pow(2).sum().item()
        if not math.isfinite(value) or (losses and value > 1e6 * losses[0]):
            return losses + [math.inf] * (steps + 1 - len(losses))
        losses.append(value)
        if len(losses) == steps + 1 or (stop_below is not None and value <= stop_below * losses[0]):
            break
        W.grad = A.T @ residual @ B.T
        opt.step()
    return losses


def outcome(losses, target: float, below: int | None = None) -> str:
    """The steps to ``target`` × the first loss as text, or ``"diverged"`` / ``"never"`` (within the run).

    With ``below``, a count under it prints as ``"< below"``: for a method whose count moves with rounding.
    """
    count = steps_to(losses, target)
    if count is not None and below is not None and count < below:
        return f"< {below}"
    if count is not None:
        return str(count)
    return "diverged" if not math.isfinite(losses[-1]) else "never"


def steps_to(losses, target: float) -> int | None:
    """The first step whose loss is <= ``target`` × the first loss, or None if none is."""
    return first_below(losses, target * losses[0])


#: Each method of the race: (factory ``(params, lr) -> Optimizer``, the learning rates it is tuned over).
METHODS: dict[str, tuple[Callable, tuple[float, ...]]] = {
    "SGD": (SGD, (0.6, 1.2, 1.8)),
    "SGD momentum": (partial(SGD, momentum=0.9), (0.3, 1.0, 3.0)),
    "Adam": (Adam, (0.03, 0.1, 0.3, 1.0)),
    "Shampoo": (partial(Shampoo, epsilon=1e-12), (1.0, 3.0, 10.0, 30.0, 100.0)),
    "SOAP": (partial(SOAP, weight_decay=0.0), (0.03, 0.1, 0.3, 1.0)),
}


def best_run(problem: MatrixProblem, method, target: float, steps: int, lrs=None) -> tuple[float, list[float]]:
    """The learning rate from ``lrs`` that reaches ``target`` × the first loss in the fewest steps (ties and
    misses: the lowest final loss), and its ``steps + 1`` losses.

    ``method`` is a name of :data:`METHODS` (``lrs`` defaults to its grid) or a factory
    ``(params, lr) -> Optimizer`` (then ``lrs`` is required). The runs of the grid stop at the target;
    the chosen one is run again for all ``steps``.
    """
    if isinstance(method, str):
        factory, grid = METHODS[method]
        lrs = lrs or grid
    else:
        factory = method
        if not lrs:
            raise ValueError("a factory needs its learning rates lrs")
    runs = {lr: matrix_losses(problem, partial(factory, lr=lr), steps, target) for lr in lrs}

    def rank(lr):
        count = steps_to(runs[lr], target)
        final = runs[lr][-1]
        return (count if count is not None else math.inf, final if math.isfinite(final) else math.inf)

    lr = min(runs, key=rank)
    if len(runs[lr]) == steps + 1:
        return lr, runs[lr]
    return lr, matrix_losses(problem, partial(factory, lr=lr), steps)


def mlp_losses(make_optimizer: Callable, dataset, seed: int, steps: int, target: float | None = None,
               hidden: int = 32) -> list[float]:
    """Full-batch training losses of a float64 tanh MLP (64 → ``hidden`` → 10) on ``dataset``'s training set.

    The initial weights come from ``seed``; the list holds the loss before each step and after the last.
    A run stops early once the loss is <= ``target`` (if given) or is no longer finite or above 100
    (then its last entry is inf).
    """
    import torch.nn.functional as F

    from optlib import models

    model = models.MLP((dataset.X_train.shape[1], hidden, 10), activation="tanh",
                       generator=torch.Generator().manual_seed(seed), dtype=F64)
    opt = make_optimizer(model.parameters())
    losses: list[float] = []
    for _ in range(steps + 1):
        opt.zero_grad()
        loss = F.cross_entropy(model(dataset.X_train), dataset.y_train)
        value = loss.item()
        if not math.isfinite(value) or value > 100:
            return losses + [math.inf]
        losses.append(value)
        if len(losses) == steps + 1 or (target is not None and value <= target):
            break
        loss.backward()
        opt.step()
    return losses


def first_below(losses, target: float) -> int | None:
    """The first step whose loss is <= ``target`` (an absolute target), or None."""
    return tuning.steps_to_target(range(len(losses)), losses, target)


def verdict(name_a: str, counts_a, name_b: str, counts_b, margin: float = 1.1) -> str:
    """Whether method a needs fewer steps than method b at every seed, with ``margin``: a's worst seed times
    ``margin`` is at most b's best (counts of None count as never). Otherwise "not confirmed at this scale"."""
    worst_a = max(math.inf if c is None else c for c in counts_a)
    best_b = min(math.inf if c is None else c for c in counts_b)
    if worst_a * margin <= best_b:
        return f"{name_a} needs fewer steps than {name_b} at every seed"
    return f"{name_a} vs {name_b}: not confirmed at this scale"


def state_floats(optimizer: torch.optim.Optimizer) -> list[int]:
    """The number of floats each parameter's optimizer state holds (tensors of one or more dimensions;
    step counters are left out), in the order of the parameters."""
    counts = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            counts.append(sum(v.numel() for v in state.values() if torch.is_tensor(v) and v.ndim > 0))
    return counts
