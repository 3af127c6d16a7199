"""Optimizers: every one a ``torch.optim.Optimizer`` subclass, so the book swaps methods in one line.

``OPTIMIZERS`` maps the names used by the book's widgets to factories ``(params, lr) -> Optimizer``.
"""
from __future__ import annotations

from functools import partial

from optlib.optim.adaptive import AdaGrad, Adadelta, Adam, AdamW, AMSGrad, RMSProp
from optlib.optim.hessian_free import HessianFree
from optlib.optim.natural import KFAC, NaturalGradient
from optlib.optim.newton import LevenbergMarquardt, Newton
from optlib.optim.quasi_newton import BFGS, LBFGS
from optlib.optim.sgd import SGD
from optlib.optim.trust_region import TrustRegion

#: Factories ``(params, lr) -> Optimizer`` by the names the book's widgets show.
#:
#: :meta hide-value:
OPTIMIZERS = {
    "GD": SGD,
    "momentum (rho=0.9)": partial(SGD, momentum=0.9),
    "Nesterov (rho=0.9)": partial(SGD, momentum=0.9, nesterov=True),
    "AdaGrad": AdaGrad,
    "RMSProp": RMSProp,
    "Adam": Adam,
    "AdamW": AdamW,
    "AMSGrad": AMSGrad,
    "Newton": Newton,
    "saddle-free Newton": partial(Newton, mode="saddle_free", damping=1e-3),
}

__all__ = ["OPTIMIZERS", "AdaGrad", "Adadelta", "Adam", "AdamW", "AMSGrad", "BFGS", "HessianFree", "KFAC", "LBFGS",
           "LevenbergMarquardt", "NaturalGradient", "Newton", "RMSProp", "SGD", "TrustRegion"]
