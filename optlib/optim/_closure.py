"""The part of ``step(closure)`` every first-order optimizer shares."""
from __future__ import annotations

import torch


def closure_loss(closure):
    """``closure()``'s loss, evaluated with gradients enabled (``step`` runs under ``no_grad``), or None.

    The closure re-evaluates the loss and calls ``backward``, as ``torch.optim`` expects.
    """
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
