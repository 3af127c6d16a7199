"""Device choice and seeding: CUDA when the machine has it, CPU otherwise; one call seeds all."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else CPU.

    An explicit request for CUDA on a machine without it is an error rather than a silent
    fall-back, so a learner knows their Colab runtime has no GPU.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "CUDA was requested but torch.cuda.is_available() is False; "
            "use device='cpu' or switch the runtime to a GPU"
        )
    return device


def describe_device(device: str | torch.device | None = None) -> str:
    """One line saying which device is used, e.g. ``'Using device: cpu (no GPU found)'``."""
    device = get_device(device)
    if device.type == "cuda":
        return f"Using device: cuda ({torch.cuda.get_device_name(device)})"
    return "Using device: cpu (no GPU found)" if not torch.cuda.is_available() else "Using device: cpu"


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded with ``seed``.

    Pass the returned generator to functions that draw random numbers when a result must not
    depend on what ran before it.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)
