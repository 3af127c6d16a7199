"""Data sets that ship inside installed packages (never a download), as tensors."""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch

from optlib import _validate
from optlib.device import get_device


class Dataset(NamedTuple):
    """A train/test split of features ``X`` (n, d) and integer labels ``y`` (n,)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_features(self) -> int:
        """d, the number of features of each example."""
        return self.X_train.shape[1]

    @property
    def num_classes(self) -> int:
        """The number of classes: one more than the largest label in train or test."""
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Dataset":
        """This split with every tensor moved to ``device`` (and the features cast to ``dtype``; labels stay integers).

        ``data.to(model_device)`` before :func:`optlib.run.train` when the model lives elsewhere, e.g.
        ``digits.to(optlib.get_device())`` for a model built with ``device=optlib.get_device()``.
        """
        device = get_device(device) if device is not None else self.X_train.device
        X_train, X_test = (X.to(device=device, dtype=dtype) for X in (self.X_train, self.X_test))
        return Dataset(X_train, self.y_train.to(device), X_test, self.y_test.to(device))

    def __repr__(self) -> str:
        return (f"Dataset(train={tuple(self.X_train.shape)}, test={tuple(self.X_test.shape)}, "
                f"classes={self.num_classes}, dtype={self.X_train.dtype}, device={self.X_train.device})")


def load_digits(test_fraction: float = 0.25, seed: int = 0, *, standardize: bool = True,
                bias_column: bool = False, device="cpu", dtype: torch.dtype = torch.float32) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes) split into train and test.

    The split is stratified and fixed by ``seed``. With ``standardize`` each pixel is centred
    and scaled by statistics of the *training* set only, so no test information leaks in.
    ``bias_column`` appends a constant 1 feature (the "bias trick": s = Wx absorbs b).
    The tensors are on the CPU unless ``device`` says otherwise (``device=optlib.get_device()``
    for the GPU when there is one).
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    _validate.in_range("test_fraction", test_fraction, 0.0, 1.0)
    if test_fraction == 0:
        raise ValueError("test_fraction must be > 0")
    X, y = _sk_load_digits(return_X_y=True)
    X = X.astype(np.float64) / 16.0  # pixels are integers 0..16
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, random_state=seed,
                                              stratify=y)
    if standardize:
        mean, std = X_tr.mean(0), X_tr.std(0)
        std[std == 0] = 1.0  # corner pixels are always 0 in the training set
        X_tr, X_te = (X_tr - mean) / std, (X_te - mean) / std
    if bias_column:
        X_tr = np.hstack([X_tr, np.ones((len(X_tr), 1))])
        X_te = np.hstack([X_te, np.ones((len(X_te), 1))])
    device = get_device(device)

    def tensor(a, dt):
        return torch.as_tensor(a, dtype=dt).to(device)

    return Dataset(tensor(X_tr, dtype), tensor(y_tr, torch.long), tensor(X_te, dtype), tensor(y_te, torch.long))


def minibatches(X: torch.Tensor, y: torch.Tensor, batch_size: int, *, generator: torch.Generator | None = None,
                shuffle: bool = True, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass (epoch) over ``(X, y)`` in minibatches, shuffled by ``generator``."""
    _validate.positive_int("batch_size", batch_size)
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    n = len(X)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(X.device)
    stop = n - n % batch_size if drop_last else n
    # a plain function returning a generator, so bad arguments raise here, not at the first batch
    return ((X[order[start:start + batch_size]], y[order[start:start + batch_size]])
            for start in range(0, stop, batch_size))
