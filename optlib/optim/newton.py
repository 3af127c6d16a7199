r"""Newton's method for small problems (it builds the d × d Hessian), with damping and ``|H|``."""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from optlib import _validate

#: The ``mode`` of :class:`Newton`: H (Newton) or ``|H|`` (saddle-free Newton).
MODES = ("newton", "saddle_free")


def newton_direction(grad: torch.Tensor, hess: torch.Tensor, damping: float = 0.0,
                     mode: str = "newton") -> torch.Tensor:
    r"""The step p solving (H + δI) p = −g, or (``|H|`` + δI) p = −g for ``mode='saddle_free'``.

    ``|H| = Q |Λ| Qᵀ`` flips the sign of negative curvature, so the step goes downhill along it
    instead of towards the saddle.
    """
    eye = torch.eye(len(grad), dtype=hess.dtype, device=hess.device)
    if mode == "saddle_free":
        eigvals, eigvecs = torch.linalg.eigh(hess)
        hess = eigvecs @ torch.diag(eigvals.abs()) @ eigvecs.T
    return torch.linalg.solve(hess + damping * eye, -grad)


class Newton(Optimizer):
    r"""x ← x − α (H + δI)⁻¹ ∇f(x)  (``mode='saddle_free'`` uses ``|H|`` in place of H).

    .. math::
        x_{t+1} = x_t - \alpha\,(H_t + \delta I)^{-1} \nabla f(x_t), \qquad H_t = \nabla^2 f(x_t)

    with step size α = ``lr`` and damping δ = ``damping``; the saddle-free variant replaces H_t by
    ``|H_t| = Q |Λ| Qᵀ`` (each eigenvalue replaced by its absolute value), so the step goes downhill
    along negative curvature.

    Builds the full Hessian by d extra backward passes and solves a d × d system, O(d²) memory
    and O(d³) time: meant for the book's small problems. ``step`` needs a closure that returns
    the loss **without** calling ``backward`` (Newton differentiates it twice itself);
    ``optlib.run.minimize`` builds the right closure from ``closure_calls_backward = False``.
    After a step each parameter's ``.grad`` holds the gradient at the point the step started from.
    """

    closure_calls_backward = False

    def __init__(self, params, lr: float = 1.0, damping: float = 0.0, mode: str = "newton"):
        _validate.at_least("lr", lr, 0.0)
        _validate.at_least("damping", damping, 0.0)
        _validate.one_of("mode", mode, MODES)
        super().__init__(params, dict(lr=lr, damping=damping, mode=mode))

    def step(self, closure=None):
        """One Newton step; ``closure`` is required and returns the loss WITHOUT calling ``backward``.

        Returns the loss at the point the step started from.
        """
        if closure is None:
            raise ValueError("Newton.step needs a closure that returns the loss (without calling backward)")
        if len(self.param_groups) > 1:
            raise ValueError("Newton couples all parameters through H: use a single param group")
        group = self.param_groups[0]
        params = list(group["params"])
        with torch.enable_grad():
            loss = closure()
            if not loss.requires_grad:
                raise ValueError("the closure's loss has no graph: return the loss without calling backward "
                                 "and without torch.no_grad()")
            grads = torch.autograd.grad(loss, params, create_graph=True)
            g = torch.cat([gr.reshape(-1) for gr in grads])
            rows = [torch.cat([r.reshape(-1) for r in torch.autograd.grad(g[i], params, retain_graph=True)])
                    for i in range(len(g))]
        hess = torch.stack(rows).detach()
        g = g.detach()
        direction = newton_direction(g, hess, group["damping"], group["mode"])
        with torch.no_grad():
            offset = 0
            for p in params:
                n = p.numel()
                p.add_(direction[offset:offset + n].view_as(p), alpha=group["lr"])
                p.grad = g[offset:offset + n].view_as(p).clone()
                offset += n
        return loss.detach()
