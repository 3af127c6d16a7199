"""The models the chapters train: a linear classifier (scores s = Wx + b) and a small MLP."""
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
                    bound = layer.in_features ** -0.5
                    with torch.no_grad():
                        layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=generator))
                        layer.bias.copy_(torch.empty_like(layer.bias).uniform_(-bound, bound, generator=generator))
        self.to(get_device(device))
        self.sizes = sizes

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Scores of shape (n, classes) for inputs ``X`` of shape (n, features)."""
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"expected inputs of shape (n, {self.sizes[0]}), got {tuple(X.shape)}")
        return self.net(X)


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
