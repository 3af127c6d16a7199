r"""Test functions with known critical points, written once for plots, optimizers and tests.

Every function maps a tensor of shape ``(..., dim)`` to a tensor of shape ``(...)``, so the
same object evaluates one point (for an optimizer) or a whole grid (for a contour plot).
Each carries its analytic gradient and Hessian, its known minima and saddles, and a plot
window, so tests can check the formulas against autograd and finite differences.
"""
from __future__ import annotations

import math

import torch

from optlib import _validate


class TestFunction:
    """Base class: subclasses define ``value`` and ``gradient`` (and may define ``hessian``)."""

    __test__ = False  # not a pytest test class, despite the name
    name: str = "function"
    log_levels: bool = False  # contour levels on a log scale (steep valleys, e.g. Rosenbrock)

    def __init__(self, dim: int, bounds, minima=(), saddles=(), min_value: float | None = None,
                 start=None):
        self.dim = _validate.positive_int("dim", dim)
        self.bounds = tuple(tuple(float(v) for v in b) for b in bounds)
        self.minima = torch.tensor(minima, dtype=torch.float64).reshape(-1, dim)
        self.saddles = torch.tensor(saddles, dtype=torch.float64).reshape(-1, dim)
        self.min_value = min_value
        self.start = torch.tensor(start if start is not None else [b[0] * 0.8 for b in self.bounds],
                                  dtype=torch.float64)

    def _check(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"{self.name} takes points of shape (..., {self.dim}), got {tuple(x.shape)}")
        return x

    def _point(self, x) -> torch.Tensor:
        """``_check`` for methods that take exactly one point (``hessian``)."""
        x = self._check(x)
        if x.ndim != 1:
            raise ValueError(f"hessian takes one point of shape ({self.dim},), got {tuple(x.shape)}")
        return x

    def __call__(self, x) -> torch.Tensor:
        return self.value(self._check(x))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) for points ``x`` of shape ``(..., dim)``, shape ``(...)``; ``f(x)`` checks the shape, then calls this."""
        raise NotImplementedError

    def gradient(self, x) -> torch.Tensor:
        """Analytic gradient, shape ``(..., dim)``."""
        raise NotImplementedError

    def hessian(self, x) -> torch.Tensor:
        """Hessian at one point, shape ``(dim, dim)``; by autograd unless a subclass writes it out."""
        x = self._point(x)
        return torch.autograd.functional.hessian(self.value, x.detach())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class Quadratic(TestFunction):
    r"""f(x) = ½ xᵀ A x with eigenvalues of A log-spaced from ``mu`` to ``mu * condition_number``.

    The Hessian is A everywhere, so its condition number is exactly ``condition_number``. In 2-D
    the eigenvectors are rotated by ``angle`` radians; in n-D by a random orthogonal matrix
    drawn from ``seed`` (``angle=0``/``seed=None`` keeps the axes).
    """

    name = "quadratic"

    def __init__(self, condition_number: float = 10.0, dim: int = 2, mu: float = 1.0,
                 angle: float = 0.0, seed: int | None = None):
        self.condition_number = _validate.at_least("condition_number", condition_number, 1.0)
        mu = _validate.positive("mu", mu)
        super().__init__(dim, [(-2.0, 2.0)] * dim, minima=[[0.0] * dim], min_value=0.0,
                         start=[-1.8] + [1.0] * (dim - 1) if dim > 1 else [-1.8])
        exponents = torch.linspace(0, 1, dim, dtype=torch.float64) if dim > 1 else torch.zeros(1, dtype=torch.float64)
        self.eigenvalues = mu * self.condition_number ** exponents
        if seed is not None:
            g = torch.Generator().manual_seed(seed)
            q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
            rotation = q * torch.sign(torch.diagonal(r))
        elif dim == 2:
            c, s = math.cos(angle), math.sin(angle)
            rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        else:
            rotation = torch.eye(dim, dtype=torch.float64)
        self.A = rotation @ torch.diag(self.eigenvalues) @ rotation.T
        self.A = 0.5 * (self.A + self.A.T)

    def _a(self, x):
        return self.A.to(dtype=x.dtype, device=x.device)

    def value(self, x):
        return 0.5 * torch.einsum("...i,ij,...j->...", x, self._a(x), x)

    def gradient(self, x):
        x = self._check(x)
        return x @ self._a(x)  # A is symmetric

    def hessian(self, x):
        x = self._point(x)
        return self._a(x).clone()

    def __repr__(self):
        return f"Quadratic(condition_number={self.condition_number:g}, dim={self.dim})"


class Sphere(TestFunction):
    r"""f(x) = ½‖x‖² in ``dim`` dimensions: minimum 0 at the origin, Hessian I.

    The roundest bowl there is (condition number 1), cheap in any dimension (no matrix), so it
    measures how a method's cost grows with the dimension alone (chapter 1).
    """

    name = "sphere"

    def __init__(self, dim: int = 2):
        super().__init__(dim, [(-2.0, 2.0)] * dim, minima=[[0.0] * dim], min_value=0.0,
                         start=[-1.8] + [1.0] * (dim - 1))

    def value(self, x):
        return 0.5 * (x * x).sum(-1)

    def gradient(self, x):
        return self._check(x).clone()

    def hessian(self, x):
        x = self._point(x)
        return torch.eye(self.dim, dtype=x.dtype, device=x.device)

    def __repr__(self):
        return f"Sphere(dim={self.dim})"


class Rosenbrock(TestFunction):
    r"""f(x) = Σᵢ b (x_{i+1} − xᵢ²)² + (a − xᵢ)², minimum 0 at (a, a², …) (all ones by default)."""

    name = "rosenbrock"
    log_levels = True

    def __init__(self, dim: int = 2, a: float = 1.0, b: float = 100.0):
        if dim < 2:
            raise ValueError(f"dim must be >= 2 for Rosenbrock, got {dim}")
        self.a, self.b = float(a), _validate.positive("b", b)
        if dim > 2 and self.a != 1.0:
            raise ValueError("the n-D Rosenbrock is provided for a=1 only (its minimum is then all ones)")
        minimum = [self.a, self.a**2] if dim == 2 else [1.0] * dim
        super().__init__(dim, [(-2.0, 2.0), (-1.0, 3.0)] + [(-2.0, 2.0)] * (dim - 2),
                         minima=[minimum], min_value=0.0, start=[-1.2] + [1.0] * (dim - 1))

    def value(self, x):
        head, tail = x[..., :-1], x[..., 1:]
        return (self.b * (tail - head**2) ** 2 + (self.a - head) ** 2).sum(-1)

    def gradient(self, x):
        x = self._check(x)
        head, tail = x[..., :-1], x[..., 1:]
        g = torch.zeros_like(x)
        g[..., :-1] += -4 * self.b * head * (tail - head**2) - 2 * (self.a - head)
        g[..., 1:] += 2 * self.b * (tail - head**2)
        return g

    def hessian(self, x):
        x = self._point(x)
        n, b = self.dim, self.b
        h = torch.zeros(n, n, dtype=x.dtype, device=x.device)
        idx = torch.arange(n - 1, device=x.device)
        h[idx, idx] += 12 * b * x[:-1] ** 2 - 4 * b * x[1:] + 2
        h[idx + 1, idx + 1] += 2 * b
        h[idx, idx + 1] = -4 * b * x[:-1]
        h[idx + 1, idx] = -4 * b * x[:-1]
        return h


class Beale(TestFunction):
    r"""f(x, y) = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)², minimum 0 at (3, 0.5)."""

    name = "beale"
    log_levels = True
    _c = (1.5, 2.25, 2.625)

    def __init__(self):
        super().__init__(2, [(-4.5, 4.5), (-4.5, 4.5)], minima=[[3.0, 0.5]], min_value=0.0,
                         start=[1.0, 1.5])

    def value(self, p):
        x, y = p[..., 0], p[..., 1]
        return sum((c - x + x * y ** (k + 1)) ** 2 for k, c in enumerate(self._c))

    def gradient(self, p):
        p = self._check(p)
        x, y = p[..., 0], p[..., 1]
        gx = torch.zeros_like(x)
        gy = torch.zeros_like(y)
        for k, c in enumerate(self._c):
            t = c - x + x * y ** (k + 1)
            gx = gx + 2 * t * (y ** (k + 1) - 1)
            gy = gy + 2 * t * (k + 1) * x * y**k
        return torch.stack([gx, gy], -1)


class Himmelblau(TestFunction):
    r"""f(x, y) = (x² + y − 11)² + (x + y² − 7)²: four minima of value 0, one local maximum, four saddles."""

    name = "himmelblau"
    log_levels = True

    def __init__(self):
        super().__init__(
            2, [(-5.0, 5.0), (-5.0, 5.0)],
            minima=[[3.0, 2.0], [-2.805118086952745, 3.131312518250573],
                    [-3.779310253377747, -3.283185991286170], [3.584428340330492, -1.848126526964404]],
            saddles=[[0.08667750455539634, 2.884254701174776], [-3.0730257507643897, -0.08135304428796751],
                     [3.385154183607021, 0.07385187983774928], [-0.12796134673068005, -1.9537149802445766]],
            min_value=0.0, start=[-0.3, -0.9])
        self.maxima = torch.tensor([[-0.2708445906673476, -0.9230385564799815]], dtype=torch.float64)

    def value(self, p):
        x, y = p[..., 0], p[..., 1]
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    def gradient(self, p):
        p = self._check(p)
        x, y = p[..., 0], p[..., 1]
        u, v = x**2 + y - 11, x + y**2 - 7
        return torch.stack([4 * x * u + 2 * v, 2 * u + 4 * y * v], -1)


class Saddle(TestFunction):
    r"""f(x, y) = x² − y²: a saddle at the origin, unbounded below along y."""

    name = "saddle"

    def __init__(self):
        super().__init__(2, [(-2.0, 2.0), (-2.0, 2.0)], saddles=[[0.0, 0.0]], start=[-1.8, 1e-3])

    def value(self, p):
        return p[..., 0] ** 2 - p[..., 1] ** 2

    def gradient(self, p):
        p = self._check(p)
        return torch.stack([2 * p[..., 0], -2 * p[..., 1]], -1)

    def hessian(self, p):
        p = self._point(p)
        return torch.diag(torch.tensor([2.0, -2.0], dtype=p.dtype, device=p.device))


class SaddleWithFloor(TestFunction):
    r"""f(x, y) = x² − y² + y⁴/4: a saddle at the origin and two minima f = −1 at (0, ±√2).

    H = diag(2, 3y² − 2) is indefinite where y² < 2/3: there the plain Newton step points at the
    saddle (chapter 9 shows it going uphill, and the fixes escaping).
    """

    name = "saddle_with_floor"

    def __init__(self):
        root = 2.0**0.5
        super().__init__(2, [(-1.0, 1.0), (-2.0, 2.0)], minima=[[0.0, root], [0.0, -root]],
                         saddles=[[0.0, 0.0]], min_value=-1.0, start=[0.1, 0.5])

    def value(self, p):
        return p[..., 0] ** 2 - p[..., 1] ** 2 + p[..., 1] ** 4 / 4

    def gradient(self, p):
        p = self._check(p)
        return torch.stack([2 * p[..., 0], -2 * p[..., 1] + p[..., 1] ** 3], -1)

    def hessian(self, p):
        p = self._point(p)
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        return torch.stack([torch.stack([2 + zero, zero]), torch.stack([zero, 3 * p[1] ** 2 - 2])])


class MonkeySaddle(TestFunction):
    r"""f(x, y) = x³ − 3xy²: a degenerate saddle (zero Hessian) at the origin with three valleys."""

    name = "monkey_saddle"

    def __init__(self):
        super().__init__(2, [(-1.5, 1.5), (-1.5, 1.5)], saddles=[[0.0, 0.0]], start=[1.2, 0.05])

    def value(self, p):
        x, y = p[..., 0], p[..., 1]
        return x**3 - 3 * x * y**2

    def gradient(self, p):
        p = self._check(p)
        x, y = p[..., 0], p[..., 1]
        return torch.stack([3 * x**2 - 3 * y**2, -6 * x * y], -1)

    def hessian(self, p):
        p = self._point(p)
        x, y = p[0], p[1]
        return torch.stack([torch.stack([6 * x, -6 * y]), torch.stack([-6 * y, -6 * x])])


class Quartic(TestFunction):
    r"""f(x) = Σᵢ xᵢ⁴: minimum 0 at the origin, where the Hessian is zero (Newton is only linear)."""

    name = "quartic"

    def __init__(self, dim: int = 2):
        super().__init__(dim, [(-1.5, 1.5)] * dim, minima=[[0.0] * dim], min_value=0.0,
                         start=[1.2] + [-0.8] * (dim - 1))

    def value(self, x):
        return (x**4).sum(-1)

    def gradient(self, x):
        x = self._check(x)
        return 4 * x**3

    def hessian(self, x):
        x = self._point(x)
        return torch.diag(12 * x**2)


#: The test functions by the names :func:`get_function` and the widgets use.
#:
#: :meta hide-value:
FUNCTIONS = {
    "quadratic": Quadratic,
    "sphere": Sphere,
    "rosenbrock": Rosenbrock,
    "beale": Beale,
    "himmelblau": Himmelblau,
    "saddle": Saddle,
    "monkey_saddle": MonkeySaddle,
    "quartic": Quartic,
}


def get_function(name: str, **kwargs) -> TestFunction:
    """Build a test function by name, e.g. ``get_function("quadratic", condition_number=50)``."""
    _validate.one_of("name", name, FUNCTIONS)
    return FUNCTIONS[name](**kwargs)
