"""The models the chapters train: a linear classifier (scores s = Wx + b), a small MLP, and a deep MLP
with optional residual connections and normalization layers."""
from __future__ import annotations

import torch
from torch import nn

from optlib import _validate
from optlib.device import get_device


class LinearClassifier(nn.Module):
    """Class scores ``s = W x (+ b)`` for ``num_classes`` classes; ``W`` has shape (C, d)."""

    def __init__(self, num_features: int, num_classes: int, *, bias: bool = True, init_scale: float = 1e-3,
                 generator: torch.Generator | None = None, device="cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        _validate.positive_int("num_features", num_features)
        _validate.positive_int("num_classes", num_classes)
        _validate.at_least("init_scale", init_scale, 0.0)
        W = init_scale * torch.randn(num_classes, num_features, generator=generator, dtype=dtype)
        self.W = nn.Parameter(W.to(get_device(device)))
        self.b = nn.Parameter(torch.zeros(num_classes, dtype=dtype, device=self.W.device)) if bias else None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Scores ``X Wᵀ + b`` of shape (n, classes) for inputs ``X`` of shape (n, features)."""
        if X.ndim != 2 or X.shape[1] != self.W.shape[1]:
            raise ValueError(f"expected inputs of shape (n, {self.W.shape[1]}), got {tuple(X.shape)}")
        scores = X @ self.W.T
        return scores + self.b if self.b is not None else scores


class MLP(nn.Module):
    """A fully connected network: ``sizes=(64, 32, 10)`` is 64 inputs, one hidden layer of 32, 10 outputs."""

    _activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}

    def __init__(self, sizes=(64, 64, 10), activation: str = "relu", *, generator: torch.Generator | None = None,
                 device="cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {sizes}")
        for s in sizes:
            _validate.positive_int("each layer size", s)
        _validate.one_of("activation", activation, self._activations)
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(self._activations[activation]())
        self.net = nn.Sequential(*layers)
        if generator is not None:  # deterministic init independent of the global RNG
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    _uniform_init_(layer, generator)
        self.to(get_device(device))
        self.sizes = sizes

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Scores of shape (n, classes) for inputs ``X`` of shape (n, features)."""
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"expected inputs of shape (n, {self.sizes[0]}), got {tuple(X.shape)}")
        return self.net(X)


def _uniform_init_(layer: nn.Linear, generator: torch.Generator | None) -> None:
    """torch's default initialization of a linear layer (uniform in ±1/√fan_in), drawn from ``generator``."""
    bound = layer.in_features ** -0.5
    with torch.no_grad():
        layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=generator))
        layer.bias.copy_(torch.empty_like(layer.bias).uniform_(-bound, bound, generator=generator))


class DeepMLP(nn.Module):
    r"""A deep, narrow fully connected network, with optional residual connections and normalization.

    ``depth`` hidden layers of ``width`` units, then a linear layer to ``num_classes`` scores. Hidden
    layer ℓ computes

    .. math::
        z_\ell = \phi\big(N_\ell(W_\ell h_{\ell-1} + b_\ell)\big),\qquad
        h_\ell = h_{\ell-1} + z_\ell \text{ (residual) or } h_\ell = z_\ell \text{ (plain)},

    with h₀ = x, φ the ``activation`` and N_ℓ the normalization: none (``norm=None``), LayerNorm
    (``"layer"``: over the units of each example) or BatchNorm (``"batch"``: each unit over the
    examples of the batch), both with a learned gain and shift. The first hidden layer changes the
    width, so it has no skip connection.

    ``init="uniform"`` draws every linear layer like torch's default, uniform in ±1/√fan_in;
    ``init="he"`` draws weights from N(0, 2/fan_in) with zero biases (He et al., 2015), the scale
    that keeps a plain ReLU network's signal from shrinking with depth. Both use ``generator``.

    With ``norm="batch"`` the scores of one example depend on the other examples of the batch in
    training mode (``model.train()``, the default); evaluated on one fixed full batch, the loss is
    still a function of the parameters alone. In eval mode BatchNorm uses running averages instead.
    """

    _activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    #: The normalizations of :class:`DeepMLP`: none, LayerNorm, BatchNorm.
    NORMS = (None, "layer", "batch")
    #: The initializations of :class:`DeepMLP`'s linear layers.
    INITS = ("uniform", "he")

    def __init__(self, num_features: int, width: int, depth: int, num_classes: int, *, residual: bool = False,
                 norm: str | None = None, activation: str = "relu", init: str = "uniform",
                 generator: torch.Generator | None = None, device="cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        for name, value in (("num_features", num_features), ("width", width), ("depth", depth),
                            ("num_classes", num_classes)):
            _validate.positive_int(name, value)
        if not isinstance(residual, bool):
            raise TypeError(f"residual must be True or False, got {residual!r}")
        if norm not in self.NORMS:
            raise ValueError(f"norm must be None, 'layer' or 'batch', got {norm!r}")
        _validate.one_of("activation", activation, self._activations)
        _validate.one_of("init", init, self.INITS)
        self.residual, self.norm, self.num_features = residual, norm, num_features
        self.hidden = nn.ModuleList(
            nn.Linear(num_features if i == 0 else width, width, dtype=dtype) for i in range(depth))
        norms = {None: lambda: nn.Identity(), "layer": lambda: nn.LayerNorm(width, dtype=dtype),
                 "batch": lambda: nn.BatchNorm1d(width, dtype=dtype)}
        self.norms = nn.ModuleList(norms[norm]() for _ in range(depth))
        self.activation = self._activations[activation]()
        self.output = nn.Linear(width, num_classes, dtype=dtype)
        for layer in self.linear_layers():
            if init == "uniform":
                _uniform_init_(layer, generator)
            else:
                with torch.no_grad():
                    noise = torch.randn(layer.weight.shape, generator=generator, dtype=dtype)
                    layer.weight.copy_(noise * (2.0 / layer.in_features) ** 0.5)
                    layer.bias.zero_()
        self.to(get_device(device))

    def linear_layers(self) -> list[nn.Linear]:
        """The linear layers from input to output: the ``depth`` hidden layers, then the output layer."""
        return [*self.hidden, self.output]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Scores of shape (n, classes) for inputs ``X`` of shape (n, features)."""
        if X.ndim != 2 or X.shape[1] != self.num_features:
            raise ValueError(f"expected inputs of shape (n, {self.num_features}), got {tuple(X.shape)}")
        h = X
        for i, (layer, norm) in enumerate(zip(self.hidden, self.norms)):
            z = self.activation(norm(layer(h)))
            h = h + z if self.residual and i > 0 else z
        return self.output(h)


@torch.no_grad()
def accuracy(scores_or_model, X_or_y: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """Fraction of correct predictions: ``accuracy(scores, y)`` or ``accuracy(model, X, y)``."""
    if y is None:
        scores, y = scores_or_model, X_or_y
    else:
        scores = scores_or_model(X_or_y)
    if scores.ndim != 2 or len(scores) != len(y):
        raise ValueError(f"scores must be (n, C) with n = len(y) = {len(y)}, got {tuple(scores.shape)}")
    return (scores.argmax(1) == y).float().mean().item()


def num_parameters(model: nn.Module) -> int:
    """The number of scalar parameters of ``model`` (d in the book's notation)."""
    return sum(p.numel() for p in model.parameters())
