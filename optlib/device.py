"""Device choice and seeding: CUDA when the machine has it, CPU otherwise; one call seeds all.

optlib follows PyTorch's convention: its entry points create tensors on the CPU unless told
otherwise (``device="cpu"`` by default), and the GPU is used where a caller asks for it, e.g.
``models.MLP(..., device=optlib.get_device())``. The book's experiments are small enough that a
GPU would only slow them down (kernel launches dominate); :func:`describe_runtime` says so.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else CPU.

    ``get_device()`` is "the best device available", the way to opt in to the GPU:
    ``device=optlib.get_device()``. optlib's own entry points default to the CPU instead.
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


def describe_runtime() -> str:
    """One line saying whether a GPU was found and what the book does with it (printed by every chapter's set-up cell).

    ``'No GPU found: everything runs on the CPU.'``, or, on a machine with CUDA,
    ``'GPU found: <name>. The chapters' small experiments stay on the CPU, ...'``.
    """
    if not torch.cuda.is_available():
        return "No GPU found: everything runs on the CPU."
    return (f"GPU found: {torch.cuda.get_device_name()}. The chapters' small experiments stay on the CPU, "
            "which is faster for them; pass device=optlib.get_device() to run your own on the GPU.")


#: environment variable that overrides the thread count of :func:`set_num_threads` (default 1)
THREADS_VARIABLE = "OPTLIB_NUM_THREADS"


def set_num_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count for this process and return it.

    ``n=None`` takes the environment variable ``OPTLIB_NUM_THREADS`` when it is set, else 1.
    Every chapter's set-up cell calls this, so a notebook computes with the thread count the
    book's stored outputs were made with, whatever torch's default is on the learner's machine
    (the order of a parallel reduction, and with it the rounding, depends on the thread count),
    and so a busy CPU does not stall it: the chapters' tensors are small, and many threads
    contending for a few cores are far slower than one. ``OPTLIB_NUM_THREADS=2`` is how the
    robustness check (``make.py check-robust``) runs the notebooks with another reduction order.
    """
    if n is None:
        raw = os.environ.get(THREADS_VARIABLE, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {raw!r}") from None
        else:
            n = 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    torch.set_num_threads(n)
    return n


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
