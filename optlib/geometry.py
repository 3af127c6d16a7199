r"""Geometry of loss surfaces: curvature, critical points, convexity, random Hessians, basins.

Chapter 4 uses these to ask what a loss surface looks like near the points where the gradient
vanishes. The second-order Taylor model around a critical point x*,

.. math::
    f(x^* + h) \approx f(x^*) + \tfrac12 h^\top H h,

says the eigenvalues of the Hessian H decide everything: all positive, a minimum; all negative,
a maximum; mixed signs, a saddle; some zero, the test is inconclusive ("degenerate").

Random Hessians come from the Gaussian Orthogonal Ensemble (GOE): a model, not a measurement of
any network. Convexity checks on samples can *disprove* convexity (one violating pair is a proof)
but only *support* it (passing on samples is evidence, not a proof).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from optlib import _validate
from optlib.device import get_device
from optlib.functions import TestFunction

#: What :func:`classify_critical_point` can return.
CRITICAL_POINT_KINDS = ("minimum", "maximum", "saddle", "degenerate")


# --------------------------------------------------------------------------------------------
# Curvature of one Hessian
# --------------------------------------------------------------------------------------------

def _symmetric(hessian, *, batched: bool = False, atol: float = 1e-8) -> torch.Tensor:
    """Check that ``hessian`` is a finite, square, symmetric matrix (or a batch of them)."""
    H = torch.as_tensor(hessian)
    if not torch.is_floating_point(H):
        H = H.to(torch.float64)
    if batched:
        if H.ndim != 3 or H.shape[-1] != H.shape[-2]:
            raise ValueError(f"expected a batch of square matrices (n, d, d), got shape {tuple(H.shape)}")
    elif H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"hessian must be a square matrix (d, d), got shape {tuple(H.shape)}")
    if H.shape[-1] == 0:
        raise ValueError("hessian must have at least one row")
    if not torch.isfinite(H).all():
        raise ValueError("hessian must be finite (it holds NaN or inf)")
    scale = max(1.0, H.abs().max().item())
    if (H - H.transpose(-1, -2)).abs().max().item() > atol * scale:
        raise ValueError("hessian must be symmetric (a Hessian of a twice continuously differentiable function is)")
    return 0.5 * (H + H.transpose(-1, -2))


def hessian_spectrum(hessian) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.

    Eigenvector ``Q[:, i]`` is a direction of curvature ``eigenvalues[i]``: along it the quadratic
    model is ½ λᵢ t². Each eigenvector's sign is fixed so that its largest-magnitude entry is
    positive, so printed eigenvectors do not flip between machines.
    """
    values, vectors = torch.linalg.eigh(_symmetric(hessian))
    pivot = vectors.gather(0, vectors.abs().argmax(0, keepdim=True))
    return values, vectors * torch.where(pivot < 0, -1.0, 1.0).to(vectors.dtype)


def condition_number(hessian) -> float:
    r"""κ(H) = max|λᵢ| / min|λᵢ|, the ratio of the largest to the smallest singular value of H.

    For a positive definite H (a strict minimum) this is λ_max / λ_min: how much more the loss
    curves along the steepest direction than along the flattest. ``inf`` when H is singular.
    """
    eigenvalues = torch.linalg.eigvalsh(_symmetric(hessian)).abs()
    smallest, largest = eigenvalues.min().item(), eigenvalues.max().item()
    if largest == 0.0:
        return math.inf
    if smallest <= largest * 1e-15:
        return math.inf
    return largest / smallest


def classify_critical_point(hessian, tol: float = 1e-8) -> str:
    """Second-derivative test at a critical point: ``"minimum"``, ``"maximum"``, ``"saddle"`` or ``"degenerate"``.

    An eigenvalue counts as zero when ``|λ| <= tol * max(1, max|λ|)``. One strictly positive and one
    strictly negative eigenvalue make a saddle whatever the others are; all strictly positive
    (negative) make a strict minimum (maximum); otherwise a zero eigenvalue leaves the test
    inconclusive and the point is ``"degenerate"`` (e.g. the monkey saddle, or x⁴ at 0).
    """
    tol = _validate.at_least("tol", tol, 0.0)
    eigenvalues = torch.linalg.eigvalsh(_symmetric(hessian))
    threshold = tol * max(1.0, eigenvalues.abs().max().item())
    positive = bool((eigenvalues > threshold).any())
    negative = bool((eigenvalues < -threshold).any())
    zero = bool((eigenvalues.abs() <= threshold).any())
    if positive and negative:
        return "saddle"
    if zero:
        return "degenerate"
    return "minimum" if positive else "maximum"


# --------------------------------------------------------------------------------------------
# Random Hessians: the Gaussian Orthogonal Ensemble
# --------------------------------------------------------------------------------------------

def goe_matrices(dim: int, samples: int, *, generator: torch.Generator | None = None, device="cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""``samples`` random symmetric matrices of size ``dim`` from the GOE, shape (samples, dim, dim).

    H = (A + Aᵀ) / √(2·dim) with A of i.i.d. N(0, 1) entries: off-diagonal entries have variance
    1/dim, diagonal ones 2/dim, and the distribution is invariant under rotations H → QHQᵀ. With this
    scaling the eigenvalue histogram tends to the semicircle on [−2, 2] as dim grows
    (:func:`semicircle_density`). float32 is ample for the signs of eigenvalues of small matrices
    and is several times faster to sample.
    """
    _validate.positive_int("dim", dim)
    _validate.positive_int("samples", samples)
    A = torch.randn(samples, dim, dim, generator=generator, dtype=dtype)
    H = (A + A.transpose(-1, -2)) / math.sqrt(2 * dim)
    return H.to(get_device(device))


def random_symmetric_spectra(dim: int, samples: int, *, generator: torch.Generator | None = None, device="cpu",
                             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Eigenvalues (ascending) of ``samples`` GOE matrices, shape (samples, dim); see :func:`goe_matrices`."""
    return torch.linalg.eigvalsh(goe_matrices(dim, samples, generator=generator, device=device, dtype=dtype))


def semicircle_density(x) -> torch.Tensor:
    r"""Wigner's semicircle law ρ(x) = √(4 − x²) / (2π) on [−2, 2] (zero outside), the large-dim GOE spectrum."""
    x = torch.as_tensor(x, dtype=torch.float64)
    return torch.sqrt((4 - x**2).clamp(min=0)) / (2 * math.pi)


def is_positive_definite(matrices) -> torch.Tensor:
    """Whether each symmetric matrix of a batch (n, d, d) is positive definite (a Cholesky factor exists)."""
    H = _symmetric(matrices, batched=True, atol=1e-5)
    _, info = torch.linalg.cholesky_ex(H)
    return info == 0


def _chunks(total: int, chunk: int):
    done = 0
    while done < total:
        size = min(chunk, total - done)
        yield size
        done += size


def fraction_positive_definite(dims: Sequence[int], samples: int, *, generator: torch.Generator | None = None,
                               device="cpu", dtype: torch.dtype = torch.float32,
                               chunk: int = 200_000) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Monte Carlo estimate of P(a GOE matrix of size d is positive definite) for each d in ``dims``.

    Returns ``(fractions, counts)``: the fraction and the number of positive definite matrices
    among ``samples`` draws per dimension. A count of 0 says only that the probability is
    probably below about 3 / samples. For d = 1 the exact value is 1/2, for d = 2 it is
    (2 − √2)/4 ≈ 0.146, and it decays like exp(−c·d²) (Dean & Majumdar, 2006).
    """
    dims = [int(_validate.positive_int("each dim", d)) for d in dims]
    if not dims:
        raise ValueError("dims must hold at least one dimension")
    _validate.positive_int("samples", samples)
    _validate.positive_int("chunk", chunk)
    counts = []
    for d in dims:
        count = 0
        for size in _chunks(samples, chunk):
            H = goe_matrices(d, size, generator=generator, device=device, dtype=dtype)
            count += int(is_positive_definite(H).sum().item())
        counts.append(count)
    counts = torch.tensor(counts, dtype=torch.long)
    return counts.to(torch.float64) / samples, counts


def index_distribution(dim: int, samples: int, *, generator: torch.Generator | None = None, device="cpu",
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fraction of GOE matrices with k negative eigenvalues (the *index*), k = 0..dim; shape (dim + 1,).

    Index 0 is a minimum, index ``dim`` a maximum, anything between a saddle.
    """
    spectra = random_symmetric_spectra(dim, samples, generator=generator, device=device, dtype=dtype)
    index = (spectra < 0).sum(-1).cpu()
    return torch.bincount(index, minlength=dim + 1).to(torch.float64) / samples


# --------------------------------------------------------------------------------------------
# Convexity
# --------------------------------------------------------------------------------------------

def _points(fn, points, name="points") -> torch.Tensor:
    P = torch.as_tensor(points)
    if not torch.is_floating_point(P):
        P = P.to(torch.float64)
    if P.ndim != 2 or len(P) == 0:
        raise ValueError(f"{name} must have shape (n, dim) with n >= 1, got {tuple(P.shape)}")
    dim = getattr(fn, "dim", None)
    if dim is not None and P.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns for {getattr(fn, 'name', 'fn')}, got {P.shape[1]}")
    return P


def jensen_gap(fn: Callable[[torch.Tensor], torch.Tensor], x, y, t) -> torch.Tensor:
    r"""t f(x) + (1 − t) f(y) − f(t x + (1 − t) y): the chord minus the function, for batches of pairs.

    ``x``, ``y`` have shape (n, dim) and ``t`` shape (n,) with values in [0, 1]. ``fn`` is convex
    exactly when this gap is >= 0 for every pair and every t (Jensen's inequality).
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must both have shape (n, dim), got {tuple(x.shape)} and {tuple(y.shape)}")
    if t.shape != (len(x),):
        raise ValueError(f"t must have shape ({len(x)},), got {tuple(t.shape)}")
    if ((t < 0) | (t > 1)).any():
        raise ValueError("t must lie in [0, 1]")
    with torch.no_grad():
        tc = t[:, None]
        return t * fn(x) + (1 - t) * fn(y) - fn(tc * x + (1 - tc) * y)


@dataclass
class JensenCheck:
    """The outcome of :func:`jensen_check`: the most negative gap found and where.

    ``max_violation`` is the largest ``−gap`` seen (<= ``tolerance`` means no violation was
    found); ``x``, ``y``, ``t`` are the worst pair. ``bool(check)`` is True when no violation
    was found, which supports convexity on the sampled set but does not prove it.
    """

    pairs: int
    max_violation: float
    x: torch.Tensor
    y: torch.Tensor
    t: float
    tolerance: float

    @property
    def convex_on_samples(self) -> bool:
        """True when no pair violated Jensen's inequality by more than ``tolerance``."""
        return self.max_violation <= self.tolerance

    def __bool__(self) -> bool:
        return self.convex_on_samples

    def __repr__(self) -> str:
        return (f"JensenCheck(pairs={self.pairs}, max_violation={self.max_violation:.3g}, "
                f"convex_on_samples={self.convex_on_samples})")


def jensen_check(fn: Callable[[torch.Tensor], torch.Tensor], points, *, pairs: int = 2000,
                 generator: torch.Generator | None = None, tolerance: float = 1e-9) -> JensenCheck:
    """Look for a violation of Jensen's inequality among random pairs of ``points`` (n, dim).

    Draws ``pairs`` pairs of rows and a t ~ U(0, 1) for each. The gap is compared with
    ``tolerance * (1 + |chord|)`` so round-off on large values is not mistaken for a violation.
    """
    P = _points(fn, points)
    _validate.positive_int("pairs", pairs)
    _validate.at_least("tolerance", tolerance, 0.0)
    i = torch.randint(len(P), (pairs,), generator=generator).to(P.device)
    j = torch.randint(len(P), (pairs,), generator=generator).to(P.device)
    t = torch.rand(pairs, generator=generator, dtype=P.dtype).to(P.device)
    x, y = P[i], P[j]
    gap = jensen_gap(fn, x, y, t)
    with torch.no_grad():
        chord = (t * fn(x) + (1 - t) * fn(y)).abs()
    violation = -gap / (1 + chord)
    k = int(torch.argmax(violation))
    return JensenCheck(pairs, float(violation[k]), x[k].clone(), y[k].clone(), float(t[k]), tolerance)


def min_hessian_eigenvalues(fn, points) -> torch.Tensor:
    """Smallest Hessian eigenvalue of ``fn`` at each row of ``points`` (n, dim); shape (n,).

    Uses ``fn.hessian`` (every :class:`~optlib.functions.TestFunction` has one, analytic or by
    autograd). A negative value anywhere proves that ``fn`` is not convex around that point.
    """
    P = _points(fn, points)
    if not hasattr(fn, "hessian"):
        raise ValueError("fn must have a hessian(x) method (e.g. an optlib.functions.TestFunction)")
    return torch.stack([torch.linalg.eigvalsh(_symmetric(fn.hessian(p))).min() for p in P])


def is_convex_on(fn, points, *, method: str = "jensen", pairs: int = 2000, generator: torch.Generator | None = None,
                 tolerance: float = 1e-9) -> bool:
    """Sampled convexity test on ``points``: ``method="jensen"`` (random chords) or ``"hessian"`` (H ⪰ 0).

    False is a proof of non-convexity (a violating chord, or a Hessian with a negative
    eigenvalue). True means no violation was found on the samples: evidence, not a proof.
    """
    _validate.one_of("method", method, ("jensen", "hessian"))
    if method == "jensen":
        return bool(jensen_check(fn, points, pairs=pairs, generator=generator, tolerance=tolerance))
    lowest = min_hessian_eigenvalues(fn, points)
    scale = max(1.0, lowest.abs().max().item())
    return bool((lowest >= -tolerance * scale).all())


def segment_and_chord(fn, x, y, ts) -> tuple[torch.Tensor, torch.Tensor]:
    """f((1 − s) x + s y) and the chord (1 − s) f(x) + s f(y) for each s in ``ts`` (to plot Jensen)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be two points of the same shape (dim,), got {tuple(x.shape)}, {tuple(y.shape)}")
    y = y.to(x.device)
    s = torch.as_tensor(ts, dtype=torch.float64, device=x.device)
    if s.ndim != 1:
        raise ValueError(f"ts must be one-dimensional, got shape {tuple(s.shape)}")
    with torch.no_grad():
        on_segment = fn((1 - s)[:, None] * x + s[:, None] * y)
        chord = (1 - s) * fn(x) + s * fn(y)
    return on_segment, chord


# --------------------------------------------------------------------------------------------
# Sampling the plane
# --------------------------------------------------------------------------------------------

def grid_points(bounds, resolution: int, *, device="cpu", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A ``resolution`` × ``resolution`` grid over ``bounds = ((x_lo, x_hi), (y_lo, y_hi))``, shape (resolution², 2)."""
    _validate.positive_int("resolution", resolution)
    if len(bounds) != 2 or any(len(b) != 2 or not b[0] < b[1] for b in bounds):
        raise ValueError(f"bounds must be ((x_lo, x_hi), (y_lo, y_hi)) with lo < hi, got {bounds!r}")
    xs = torch.linspace(*bounds[0], resolution, dtype=dtype)
    ys = torch.linspace(*bounds[1], resolution, dtype=dtype)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack([X.reshape(-1), Y.reshape(-1)], -1).to(get_device(device))


def sample_box(bounds, n: int, *, generator: torch.Generator | None = None, device="cpu",
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` points drawn uniformly from the box ``bounds = ((lo, hi), ...)``, shape (n, len(bounds))."""
    _validate.positive_int("n", n)
    if not bounds or any(len(b) != 2 or not b[0] < b[1] for b in bounds):
        raise ValueError(f"bounds must be a sequence of (lo, hi) with lo < hi, got {bounds!r}")
    lo = torch.tensor([b[0] for b in bounds], dtype=dtype)
    hi = torch.tensor([b[1] for b in bounds], dtype=dtype)
    u = torch.rand(n, len(bounds), generator=generator, dtype=dtype)
    return (lo + u * (hi - lo)).to(get_device(device))


# --------------------------------------------------------------------------------------------
# Saddles and basins
# --------------------------------------------------------------------------------------------

class DoubleWell(TestFunction):
    r"""f(x, y) = ½x² + ¼y⁴ − ½y²: one saddle at the origin between two minima (0, ±1) of value −¼.

    The Hessian is diag(1, 3y² − 1): diag(1, −1) at the saddle (one unstable direction, y) and
    diag(1, 2) at the minima. Unlike x² − y² it is bounded below, so escaping the saddle means
    arriving somewhere.
    """

    name = "double_well"

    def __init__(self):
        super().__init__(2, [(-2.0, 2.0), (-1.6, 1.6)], minima=[[0.0, 1.0], [0.0, -1.0]], saddles=[[0.0, 0.0]],
                         min_value=-0.25, start=[1.8, 0.0])

    def value(self, p):
        x, y = p[..., 0], p[..., 1]
        return 0.5 * x**2 + 0.25 * y**4 - 0.5 * y**2

    def gradient(self, p):
        p = self._check(p)
        return torch.stack([p[..., 0], p[..., 1] ** 3 - p[..., 1]], -1)

    def hessian(self, p):
        p = self._check(p)
        if p.ndim != 1:
            raise ValueError(f"hessian takes one point of shape (2,), got {tuple(p.shape)}")
        one = torch.ones((), dtype=p.dtype, device=p.device)
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        return torch.stack([torch.stack([one, zero]), torch.stack([zero, 3 * p[1] ** 2 - 1])])


def _as_array(path) -> np.ndarray:
    from optlib.run import Trace

    if isinstance(path, Trace):
        return path.path()
    return np.asarray(torch.as_tensor(path).detach().cpu(), dtype=float)


def distances_to(path, point) -> np.ndarray:
    """Euclidean distance of every point of ``path`` (a Trace or a (k, dim) array) to ``point``."""
    xy = _as_array(path)
    point = np.asarray(torch.as_tensor(point).detach().cpu(), dtype=float).reshape(-1)
    if xy.ndim != 2 or xy.shape[1] != len(point):
        raise ValueError(f"path must have shape (k, {len(point)}), got {xy.shape}")
    return np.linalg.norm(xy - point, axis=1)


def heavy_ball_growth(lr: float, curvature: float, momentum: float = 0.0) -> float:
    r"""Factor by which gradient descent with heavy-ball momentum multiplies a direction of curvature λ per step.

    Along an eigenvector of curvature λ, x_{t+1} = x_t − α λ x_t + ρ (x_t − x_{t−1}), whose
    solutions grow like ``|z|^t`` for the largest root z of z² − (1 + ρ − αλ) z + ρ = 0. With ρ = 0
    this is ``|1 − αλ|``: below 1 the direction shrinks (λ > 0, small α), above 1 it grows — near a
    saddle (λ < 0) that growth is the speed of escape. Same iterates as :class:`~optlib.optim.sgd.SGD`.
    """
    lr = _validate.at_least("lr", lr, 0.0)
    curvature = _validate._number("curvature", curvature)
    momentum = _validate.in_range("momentum", momentum, 0.0, 1.0)
    roots = np.roots([1.0, -(1.0 + momentum - lr * curvature), momentum])
    return float(np.abs(roots).max())


def gradient_descent_many(fn, starts, *, lr: float, steps: int) -> torch.Tensor:
    """Plain gradient descent x ← x − lr ∇f(x) from every row of ``starts`` (n, dim) at once.

    A vectorized stand-in for many calls of :func:`optlib.run.minimize` with
    :class:`~optlib.optim.sgd.SGD` (same iterates), for maps of basins of attraction. Uses
    ``fn.gradient``; runs that overflow end as NaN/inf.
    """
    lr = _validate.at_least("lr", lr, 0.0)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    x = _points(fn, starts, "starts").clone()
    with torch.no_grad():
        for _ in range(steps):
            x = x - lr * fn.gradient(x)
    return x


def nearest_labels(points, targets, *, tol: float) -> torch.Tensor:
    """Index of the target within ``tol`` of each point, or −1 when none is that close (or the point is not finite)."""
    P, T = torch.as_tensor(points), torch.as_tensor(targets, dtype=torch.as_tensor(points).dtype)
    tol = _validate.positive("tol", tol)
    if P.ndim != 2 or T.ndim != 2 or P.shape[1] != T.shape[1]:
        raise ValueError(f"points (n, dim) and targets (m, dim) must share dim, got {tuple(P.shape)}, {tuple(T.shape)}")
    if len(T) == 0:
        raise ValueError("targets must hold at least one point")
    dist = torch.cdist(torch.nan_to_num(P, nan=math.inf), T.to(P.device))
    best, label = dist.min(1)
    label[~(best <= tol)] = -1
    return label


def basins_of_attraction(fn, starts, *, lr: float, steps: int, tol: float = 1e-3) -> torch.Tensor:
    """Which of ``fn.minima`` gradient descent reaches from each start: labels (n,), −1 for none.

    The basins belong to gradient descent *with this lr*: a large step can jump across a ridge.
    """
    minima = getattr(fn, "minima", None)
    if minima is None or len(minima) == 0:
        raise ValueError(f"{getattr(fn, 'name', 'fn')} has no known minima")
    final = gradient_descent_many(fn, starts, lr=lr, steps=steps)
    return nearest_labels(final, minima, tol=tol)


# --------------------------------------------------------------------------------------------
# Permutation symmetry of networks (mode connectivity)
# --------------------------------------------------------------------------------------------

def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(layers) < 2:
        raise ValueError("model must be a fully connected network with at least one hidden layer")
    return layers


def permute_hidden_units(model: nn.Module, perms: Sequence) -> nn.Module:
    """A copy of a fully connected ``model`` whose hidden units are reordered by ``perms``.

    ``perms[i]`` is a permutation of the units of hidden layer i: rows of that layer's weight and
    bias, and columns of the next layer's weight, are reordered together, so the copy computes
    exactly the same function as ``model`` with different parameters. ``model`` is unchanged.
    """
    layers = _linear_layers(model)
    if len(perms) != len(layers) - 1:
        raise ValueError(f"model has {len(layers) - 1} hidden layers, got {len(perms)} permutations")
    for i, (perm, layer) in enumerate(zip(perms, layers)):
        perm = torch.as_tensor(perm)
        if sorted(perm.tolist()) != list(range(layer.out_features)):
            raise ValueError(f"perms[{i}] must be a permutation of range({layer.out_features})")
    twin = copy.deepcopy(model)
    twin_layers = _linear_layers(twin)
    with torch.no_grad():
        for perm, layer, nxt in zip(perms, twin_layers[:-1], twin_layers[1:]):
            perm = torch.as_tensor(perm, device=layer.weight.device)
            layer.weight.copy_(layer.weight[perm])
            if layer.bias is not None:
                layer.bias.copy_(layer.bias[perm])
            nxt.weight.copy_(nxt.weight[:, perm])
    return twin


def match_hidden_units(model_a: nn.Module, model_b: nn.Module) -> torch.Tensor:
    r"""Permutation of ``model_b``'s hidden units that best aligns its weights with ``model_a``'s.

    For one hidden layer, maximizes ``Σᵢ ⟨w_a,i, w_b,π(i)⟩`` over permutations π, where ``w_·,i`` stacks
    unit i's incoming weights, bias and outgoing weights ("weight matching", Ainsworth et al.,
    2023), solved exactly as a linear assignment problem. Apply it with
    ``permute_hidden_units(model_b, [perm])``.
    """
    from scipy.optimize import linear_sum_assignment

    la, lb = _linear_layers(model_a), _linear_layers(model_b)
    if len(la) != 2 or len(lb) != 2:
        raise ValueError("match_hidden_units handles networks with exactly one hidden layer")
    if any(a.weight.shape != b.weight.shape for a, b in zip(la, lb)):
        raise ValueError("the two models must have the same layer sizes")

    def unit_features(layers):
        first, second = layers
        parts = [first.weight, second.weight.T]
        if first.bias is not None:
            parts.append(first.bias[:, None])
        return torch.cat(parts, 1).detach().cpu().double()

    similarity = unit_features(la) @ unit_features(lb).T
    rows, cols = linear_sum_assignment(similarity.numpy(), maximize=True)
    return torch.as_tensor(cols[np.argsort(rows)], dtype=torch.long)


def loss_barrier(losses, alphas) -> float:
    r"""Height of the bump on a path θ(α), α in [0, 1]: max over α of L(θ(α)) − [(1 − α) L(θ(0)) + α L(θ(1))].

    Zero or below means the path is never above the straight line between its end losses (what a
    convex loss guarantees on a straight path); a positive barrier is a Jensen violation when
    the path is straight. ``alphas`` must start at 0 and end at 1.
    """
    L = torch.as_tensor(losses, dtype=torch.float64).reshape(-1)
    a = torch.as_tensor(alphas, dtype=torch.float64, device=L.device).reshape(-1)
    if len(L) != len(a) or len(a) < 2:
        raise ValueError(f"losses and alphas must have the same length >= 2, got {len(L)} and {len(a)}")
    if a[0] != 0 or a[-1] != 1:
        raise ValueError(f"alphas must start at 0 and end at 1, got {a[0].item()} and {a[-1].item()}")
    return float((L - ((1 - a) * L[0] + a * L[-1])).max())


# --------------------------------------------------------------------------------------------
# Landscapes of network architectures (residual connections, normalization)
# --------------------------------------------------------------------------------------------

def _linear_weights(model: nn.Module) -> list[torch.Tensor]:
    layers = model.linear_layers() if hasattr(model, "linear_layers") else \
        [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("model has no nn.Linear layer")
    return [layer.weight for layer in layers]


def _check_batch(X: torch.Tensor, y: torch.Tensor) -> None:
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or len(X) == 0:
        raise ValueError(f"X must be (n, d) and y (n,) with n > 0, got {tuple(X.shape)} and {tuple(y.shape)}")


def layer_gradient_norms(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    r"""‖∂L/∂W_ℓ‖ for the weight matrix of every linear layer, from input to output, at the current parameters.

    L = ``loss_fn(model(X), y)`` on the batch (X, y). The layers are ``model.linear_layers()`` when the
    model has that method (as :class:`optlib.models.DeepMLP`), else its ``nn.Linear`` modules in
    order. A ratio of many powers of ten between the first and the last entry is a vanishing (or
    exploding) gradient. The model's ``.grad`` fields are left untouched.
    """
    _check_batch(X, y)
    weights = _linear_weights(model)
    grads = torch.autograd.grad(loss_fn(model(X), y), weights)
    return np.array([torch.linalg.vector_norm(g).item() for g in grads])


def loss_along_gradient(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor,
                        step_sizes) -> np.ndarray:
    r"""L(θ − η ∇L(θ)) for every step size η in ``step_sizes``: the loss one gradient step of size η would reach.

    The landscape along the direction gradient descent actually takes (Santurkar et al., 2018, measure
    its variation to compare smoothness): where it keeps falling for large η, large steps are safe;
    where it turns up at small η, the landscape is sharp along the gradient. Every parameter moves
    along its gradient; the model's parameters are restored afterwards.
    """
    _check_batch(X, y)
    etas = np.asarray(step_sizes, dtype=float).reshape(-1)
    if etas.size == 0 or not np.all(np.isfinite(etas)) or np.any(etas < 0):
        raise ValueError("step_sizes must be a non-empty sequence of finite numbers >= 0")
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(X), y), params)
    saved = [p.detach().clone() for p in params]
    values = []
    try:
        with torch.no_grad():
            for eta in etas:
                for p, p0, g in zip(params, saved, grads):
                    p.copy_(p0 - eta * g)
                values.append(float(loss_fn(model(X), y)))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, saved):
                p.copy_(p0)
    return np.array(values)


def top_hessian_eigenvalue(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor, *,
                           tol: float = 1e-8, generator: torch.Generator | None = None) -> float:
    r"""The largest (algebraic) eigenvalue λ_max of the Hessian of ``loss_fn(model(X), y)`` in the parameters.

    Lanczos iteration (SciPy's ``eigsh``, ``which="LA"``) on exact Hessian-vector products by double
    backpropagation, in the model's dtype, to relative accuracy ``tol``, from a start vector drawn with
    ``generator``. Unlike plain power iteration (:func:`optlib.monitoring.sharpness`), it finds the
    largest *positive* curvature even where a negative eigenvalue is larger in magnitude (as at
    the initialization of some networks). Gradient descent on the local quadratic model is stable
    only for lr < 2/λ_max.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    _check_batch(X, y)
    tol = _validate.positive("tol", tol)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    dtype, device = params[0].dtype, params[0].device
    sizes = [p.numel() for p in params]
    grads = torch.autograd.grad(loss_fn(model(X), y), params, create_graph=True)

    def hvp(v: np.ndarray) -> np.ndarray:
        vector = torch.as_tensor(np.asarray(v).reshape(-1), dtype=dtype, device=device)
        pieces = [piece.view_as(p) for piece, p in zip(vector.split(sizes), params)]
        products = torch.autograd.grad(grads, params, grad_outputs=pieces, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in products]).detach().cpu().double().numpy()

    n = sum(sizes)
    start = torch.randn(n, generator=generator, dtype=torch.float64).numpy()
    operator = LinearOperator((n, n), matvec=hvp, dtype=np.float64)
    value = eigsh(operator, k=1, which="LA", v0=start, tol=tol, return_eigenvectors=False)
    return float(value[0])


def filter_normalized_direction(model: nn.Module, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""A random direction in parameter space scaled like the model's weights (Li et al., 2018).

    For every weight matrix, a Gaussian direction whose rows (one per unit) are rescaled to the norm
    of the corresponding rows of the weights; one-dimensional parameters (biases, the gains and
    shifts of normalization layers) get direction 0, as in Li et al.'s plots. Returned flat, in the
    order of :func:`optlib.landscape.flatten_params`, so the loss on the line θ + a·d is
    ``landscape.interpolate_models(model, θ, θ + d, ...)`` at a. Without the rescaling a slice of
    a network whose loss ignores the scale of its weights (normalization layers) would show more
    about the weights' size than about the landscape.
    """
    pieces = []
    for p in model.parameters():
        if p.ndim < 2:
            pieces.append(torch.zeros(p.numel(), dtype=p.dtype, device=p.device))
            continue
        rows = p.detach().reshape(p.shape[0], -1)
        d = torch.randn(rows.shape, generator=generator, dtype=p.dtype).to(p.device)
        d = d * (torch.linalg.vector_norm(rows, dim=1, keepdim=True)
                 / torch.linalg.vector_norm(d, dim=1, keepdim=True).clamp_min(1e-300))
        pieces.append(d.reshape(-1))
    if not pieces:
        raise ValueError("model has no parameters")
    return torch.cat(pieces)
