"""Optimizers: every one a ``torch.optim.Optimizer`` subclass, so the book swaps methods in one line.

``OPTIMIZERS`` maps the names used by the book's widgets to factories ``(params, lr) -> Optimizer``.
"""
from __future__ import annotations

from functools import partial

from optlib.optim.adaptive import AdaGrad, Adadelta, Adam, AdamW, AMSGrad, RMSProp
from optlib.optim.hessian_free import HessianFree
from optlib.optim.muon import Muon, MuonWithAdamW, muon_param_groups, partition_params
from optlib.optim.natural import KFAC, NaturalGradient
from optlib.optim.newton import LevenbergMarquardt, Newton
from optlib.optim.quasi_newton import BFGS, LBFGS
from optlib.optim.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from optlib.optim.sgd import SGD
from optlib.optim.shampoo import Shampoo
from optlib.optim.soap import SOAP
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
           "LevenbergMarquardt", "Muon", "MuonWithAdamW", "NaturalGradient", "Newton", "RMSProp", "SGD", "SOAP",
           "ScheduleFreeAdamW", "ScheduleFreeSGD", "Shampoo", "TrustRegion", "muon_param_groups", "partition_params"]
