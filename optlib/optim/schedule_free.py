r"""Schedule-Free SGD and AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled and Cutkosky, "The Road Less
Scheduled", 2024): a constant learning rate, and an average of the iterates in place of the decay.

Three sequences share one run. z takes the base optimizer's steps, x is a running weighted average
of the z's, and the gradient is evaluated at y, a point between them:

.. math::
    y_t &= (1-\beta)\, z_t + \beta\, x_t,\\
    z_{t+1} &= z_t - \gamma_t\, d_t, \qquad d_t = g_t + \lambda y_t,\quad g_t = \nabla f(y_t;\zeta_t)
    \quad\text{(SGD; AdamW divides } g_t \text{ by } \sqrt{\hat v_t}+\varepsilon\text{)},\\
    x_{t+1} &= (1-c_{t+1})\, x_t + c_{t+1}\, z_{t+1}, \qquad
    c_{t+1} = \frac{w_t}{\sum_{i=1}^{t} w_i}, \qquad w_t = t^r\, \gamma_{\max,t}^{p},

with x_1 = z_1 = the initial parameters, γ_t = γ min(1, t/T_warmup) and γ_max,t = max_{i <= t} γ_i
(p = ``weight_lr_power``). With r = p = 0, c_{t+1} = 1/t and x_{t+1} is the plain average of
z_2, ..., z_{t+1}: the initial point gets no weight, as in the paper's Algorithm 1 and the
``schedulefree`` package (the paper's first presentation, c_{t+1} = 1/(t+1), averages z_1 too;
the difference fades like 1/t).

Why no schedule: the last iterate of SGD with a constant step keeps bouncing in a noise ball of
radius proportional to γ, which is why step sizes are usually decayed towards the end of a run.
The average x shrinks that noise instead (on a quadratic, the variance of an average of t
iterates falls like 1/t), and the theory shows that, for convex Lipschitz problems, x_t reaches
the optimal worst-case rate at every t, without knowing the stopping time T in advance (the
decay of a schedule is tuned for one T). β interpolates between the two classical extremes:
β = 0 evaluates the gradient at z (Polyak-Ruppert averaging, good in theory but slow in
practice) and β = 1 at x (primal averaging, a form of momentum that moves too slowly);
β = 0.9 acts like momentum while keeping the average's guarantee.

The parameters hold y in train mode and x in eval mode; z is kept in the optimizer state, and x
is never stored: from y = (1−β) z + β x it is x = (y − (1−β) z)/β, so ``eval()`` and ``train()``
convert the parameters in place (the memory-efficient form of the ``schedulefree`` package).
"""
from __future__ import annotations

import copy
import math

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim._closure import closure_loss

#: The ``formulation`` of :class:`ScheduleFreeAdamW`: the ``schedulefree`` package's default class
#: (Adam's bias-corrected denominator) or the paper's Algorithm 1 (the correction in the step size).
FORMULATIONS = ("schedulefree", "paper")
__all__ = ["FORMULATIONS", "ScheduleFreeAdamW", "ScheduleFreeSGD", "adam_direction", "averaged_model",
           "averaging_coefficient", "averaging_weight", "extrapolate", "interpolate", "schedule_free_update",
           "sgd_direction", "warmup_factor"]


def warmup_factor(step: int, warmup_steps: int) -> float:
    """min(1, t / T_warmup) for step t = 1, 2, ... (1 throughout when ``warmup_steps`` is 0): linear warmup."""
    if warmup_steps and step < warmup_steps:
        return step / warmup_steps
    return 1.0


def averaging_weight(step: int, lr_max: float, *, r: float, weight_lr_power: float) -> float:
    """w_t = t^r · γ_max^p, the weight of z_{t+1} in the average x (p = ``weight_lr_power``).

    With p > 0 the steps taken during warmup, with a small learning rate, count less: their z's
    are still far from the optimum. r > 0 puts more weight on recent iterates.
    """
    return (step ** r) * (lr_max ** weight_lr_power)


def averaging_coefficient(weight: float, weight_sum: float) -> float:
    """c = w_t / (w_1 + ... + w_t), given ``weight_sum`` that already includes ``weight``; 0 when the sum is 0.

    x ← (1 − c) x + c z then keeps x equal to the w-weighted average of the z's seen so far. A zero
    sum (every weight 0, e.g. lr = 0 with ``weight_lr_power > 0``) leaves x where it is.
    """
    return weight / weight_sum if weight_sum else 0.0


def interpolate(x: torch.Tensor, z: torch.Tensor, beta: float) -> torch.Tensor:
    """y = (1 − β) z + β x, the point where the gradient is evaluated (what the parameters hold in train mode)."""
    return x.lerp(z, 1 - beta)


def extrapolate(y: torch.Tensor, z: torch.Tensor, beta: float) -> torch.Tensor:
    """x = (y − (1 − β) z) / β, the average recovered from y and z (what ``eval()`` puts in the parameters).

    Needs β > 0. Written as a lerp with weight 1 − 1/β, as in the ``schedulefree`` package.
    """
    return y.lerp(z, 1 - 1 / beta)


def sgd_direction(grad: torch.Tensor, y: torch.Tensor, *, weight_decay: float) -> torch.Tensor:
    """d = g + λ y: the gradient with the weight decay taken at y; a new tensor (``grad`` is left alone)."""
    if weight_decay:
        return grad.add(y, alpha=weight_decay)
    return grad.clone()


def adam_direction(grad: torch.Tensor, y: torch.Tensor, exp_avg_sq: torch.Tensor, *, step: int, beta2: float,
                   eps: float, weight_decay: float, formulation: str = "schedulefree") -> torch.Tensor:
    r"""d = g / (√v̂ + ε) + λ y, updating v ← β₂ v + (1 − β₂) g² in place; a new tensor.

    ``formulation="schedulefree"``: v̂ = v / (1 − β₂ᵗ), as in Adam and the ``schedulefree`` package's
    default class. ``formulation="paper"``: v̂ = v here, and the factor √(1 − β₂ᵗ) goes into the
    step size γ_t instead (:class:`ScheduleFreeAdamW` applies it). The weight decay λ y is added after
    the division, so it is not rescaled by the preconditioner (decoupled, as in AdamW).
    """
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if formulation == "paper":
        denom = exp_avg_sq.sqrt().add_(eps)
    else:
        denom = exp_avg_sq.div(1 - beta2 ** step).sqrt_().add_(eps)
    direction = grad.div(denom)
    if weight_decay:
        direction.add_(y, alpha=weight_decay)
    return direction


def schedule_free_update(y: torch.Tensor, z: torch.Tensor, direction: torch.Tensor, *, lr: float, beta: float,
                         c: float) -> None:
    r"""One step on (y, z) in place, x kept implicit: z ← z − γ d, then y ← (1 − β) z + β x for the new x.

    Substituting x = (y − (1−β) z)/β and x_{t+1} = (1 − c) x_t + c z_{t+1} gives

    .. math::
        y_{t+1} = (1-c)\, y_t + c\, z_t + \gamma\,\bigl(\beta (1-c) - 1\bigr)\, d_t,
        \qquad z_{t+1} = z_t - \gamma\, d_t,

    the order of operations of the ``schedulefree`` package (lerp, add, then the z step).
    """
    y.lerp_(z, c)
    y.add_(direction, alpha=lr * (beta * (1 - c) - 1))
    z.sub_(direction, alpha=lr)


def _validate_beta(name: str, value) -> float:
    value = _validate.in_range(name, value, 0.0, 1.0)
    if value == 0:
        raise ValueError(f"{name} must be > 0: eval() recovers x = (y - (1 - {name}) z) / {name}, got 0")
    return value


def _validate_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


class _ScheduleFree(Optimizer):
    """The shared loop and the train/eval switch; subclasses give β, the state and the direction d."""

    def __init__(self, params, defaults: dict):
        _validate.at_least("lr", defaults["lr"], 0.0)
        _validate.at_least("weight_decay", defaults["weight_decay"], 0.0)
        _validate_count("warmup_steps", defaults["warmup_steps"])
        _validate.at_least("r", defaults["r"], 0.0)
        _validate.at_least("weight_lr_power", defaults["weight_lr_power"], 0.0)
        # counters live in the groups, so state_dict saves them (and the mode) with the hyperparameters
        defaults.update(k=0, weight_sum=0.0, lr_max=0.0, scheduled_lr=0.0, train_mode=True)
        super().__init__(params, defaults)

    def _beta(self, group: dict) -> float:
        raise NotImplementedError

    def _lr_factor(self, group: dict, step: int) -> float:
        return 1.0

    def _init_state(self, param: torch.Tensor) -> dict:
        return {"z": param.detach().clone(memory_format=torch.preserve_format)}

    def _direction(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict,
                   step: int) -> torch.Tensor:
        raise NotImplementedError

    def add_param_group(self, param_group: dict) -> None:
        """Add a group, in the mode the optimizer is in (its parameters have no z yet, so x = y = z)."""
        super().add_param_group(param_group)
        if len(self.param_groups) > 1:
            self.param_groups[-1]["train_mode"] = self.param_groups[0]["train_mode"]

    @property
    def training(self) -> bool:
        """True in train mode (the parameters hold y), False in eval mode (they hold the average x)."""
        return all(group["train_mode"] for group in self.param_groups)

    @torch.no_grad()
    def train(self) -> None:
        """Train mode: the parameters are set to y = (1 − β) z + β x, where gradients are taken. Idempotent."""
        for group in self.param_groups:
            if not group["train_mode"]:
                beta = self._beta(group)
                for p in group["params"]:
                    z = self.state.get(p, {}).get("z")  # a lookup in the defaultdict would create state
                    if z is not None:
                        p.lerp_(z, 1 - beta)
                group["train_mode"] = True

    @torch.no_grad()
    def eval(self) -> None:
        """Eval mode: the parameters are set to the average x, to evaluate or save them. Idempotent.

        Call it before every evaluation and before saving a checkpoint; ``train()`` before the next step.
        """
        for group in self.param_groups:
            if group["train_mode"]:
                beta = self._beta(group)
                for p in group["params"]:
                    z = self.state.get(p, {}).get("z")  # a lookup in the defaultdict would create state
                    if z is not None:
                        p.lerp_(z, 1 - 1 / beta)
                group["train_mode"] = False

    @torch.no_grad()
    def averaged_parameters(self) -> list[torch.Tensor]:
        """The average x of every parameter (in the order of the groups), as new tensors, in either mode.

        The parameters are not touched, so training goes on exactly as if this had not been called.
        """
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                z = self.state.get(p, {}).get("z")  # a lookup in the defaultdict would create state
                if group["train_mode"] and z is not None:
                    out.append(extrapolate(p.detach(), z, self._beta(group)))
                else:
                    out.append(p.detach().clone())
        return out

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the loss at y,
        calling ``backward``, and its loss is returned. Refused in eval mode. ``p.grad`` is left unchanged.
        """
        if not self.training:
            raise RuntimeError(f"{type(self).__name__}.step() called in eval mode: the parameters hold the "
                               "average x, not the point y where gradients are taken; call optimizer.train() "
                               "before training (and optimizer.eval() before evaluating or saving)")
        loss = closure_loss(closure)
        for group in self.param_groups:
            step = group["k"] + 1
            lr = group["lr"] * warmup_factor(step, group["warmup_steps"]) * self._lr_factor(group, step)
            group["scheduled_lr"] = lr
            # the package's choice: the weight uses the largest lr so far (= γ_t under a warmup, which only rises)
            lr_max = group["lr_max"] = max(lr, group["lr_max"])
            weight = averaging_weight(step, lr_max, r=group["r"], weight_lr_power=group["weight_lr_power"])
            group["weight_sum"] += weight
            c = averaging_coefficient(weight, group["weight_sum"])
            beta = self._beta(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p))
                direction = self._direction(p, p.grad, state, group, step)
                schedule_free_update(p, state["z"], direction, lr=lr, beta=beta, c=c)
            group["k"] = step
        return loss


class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-Free SGD: SGD steps on z, the gradient taken at y, the model evaluated at the average x.

    .. math::
        y_t &= (1-\beta)\, z_t + \beta\, x_t, \qquad g_t = \nabla f(y_t;\zeta_t),\\
        z_{t+1} &= z_t - \gamma_t\,(g_t + \lambda y_t),\\
        x_{t+1} &= (1-c_{t+1})\, x_t + c_{t+1}\, z_{t+1}, \qquad
        c_{t+1} = \frac{t^r\,\gamma_{\max,t}^p}{\sum_{i=1}^t i^r\,\gamma_{\max,i}^p},

    with γ_t = γ min(1, t/T_warmup) (``warmup_steps``; no other schedule), p = ``weight_lr_power``,
    β = ``momentum`` in (0, 1), λ = ``weight_decay`` (an L2 term evaluated at y, the point of the
    gradient, which enters z only). Iterates match ``schedulefree.SGDScheduleFree`` and
    ``SGDScheduleFreeReference`` (same arguments, same defaults).

    The parameters hold y in train mode and x in eval mode: call ``train()`` before training and
    ``eval()`` before evaluating or saving (``model.train()`` / ``model.eval()`` do not do it).
    ``step()`` in eval mode raises. Unlike the package, whose classes start in eval mode and refuse
    the first ``step()`` until ``train()`` is called, the optimizer starts in train mode (at the
    start x = y = z, so both modes hold the same numbers), and ``p.grad`` is not overwritten by the
    decayed gradient. ``averaged_parameters()`` and :func:`averaged_model` give x without switching.
    """

    def __init__(self, params, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 warmup_steps: int = 0, r: float = 0.0, weight_lr_power: float = 2.0):
        _validate_beta("momentum", momentum)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps,
                                      r=r, weight_lr_power=weight_lr_power))

    def _beta(self, group):
        return group["momentum"]

    def _direction(self, param, grad, state, group, step):
        return sgd_direction(grad, param, weight_decay=group["weight_decay"])


class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-Free AdamW: the z sequence takes Adam-preconditioned steps (no first moment: the
    interpolation y plays the part of momentum), with weight decay decoupled and taken at y.

    .. math::
        y_t &= (1-\beta_1)\, z_t + \beta_1\, x_t, \qquad g_t = \nabla f(y_t;\zeta_t),\qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t \odot g_t,\\
        z_{t+1} &= z_t - \gamma_t \Bigl(\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \varepsilon} + \lambda y_t\Bigr),\\
        x_{t+1} &= (1-c_{t+1})\, x_t + c_{t+1}\, z_{t+1}, \qquad
        c_{t+1} = \frac{t^r\,\gamma_{\max,t}^p}{\sum_{i=1}^t i^r\,\gamma_{\max,i}^p},

    γ_t = γ min(1, t/T_warmup). This is ``formulation="schedulefree"``: the iterates match
    ``schedulefree.AdamWScheduleFree`` and ``AdamWScheduleFreeReference`` (same defaults; the
    reference's ``decay_at_z`` option is not offered).

    The package's default class deviates from the paper's Algorithm 1, which puts the bias
    correction into the step size, γ_t = γ √(1 − β₂ᵗ) min(1, t/T_warmup), and divides by √v_t + ε.
    The two z steps differ only in where ε sits, but the averaging weights γ_t^p differ: in the paper
    the first iterates (small √(1 − β₂ᵗ)) weigh much less in x. ``formulation="paper"`` gives
    Algorithm 1 (iterates match ``schedulefree.AdamWScheduleFreePaper``). In both, the weight uses
    γ_max,t, the largest γ_i so far, as the package does: equal to γ_t while γ_t only rises
    (warmup, bias correction), but a learning rate lowered by hand does not lower the weights.

    Modes as in :class:`ScheduleFreeSGD`: y in train mode, x in eval mode, starts in train mode,
    ``step()`` refused in eval mode, ``p.grad`` left unchanged (the package overwrites it with d_t).
    """

    def __init__(self, params, lr: float = 0.0025, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 warmup_steps: int = 0, r: float = 0.0, weight_lr_power: float = 2.0,
                 formulation: str = "schedulefree"):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1 = _validate_beta("beta1", betas[0])
        beta2 = _validate.in_range("beta2", betas[1], 0.0, 1.0)
        _validate.at_least("eps", eps, 0.0)
        _validate.one_of("formulation", formulation, FORMULATIONS)
        super().__init__(params, dict(lr=lr, betas=(float(beta1), float(beta2)), eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                                      formulation=formulation))

    def _beta(self, group):
        return group["betas"][0]

    def _lr_factor(self, group, step):
        if group["formulation"] == "paper":
            return math.sqrt(1 - group["betas"][1] ** step)
        return 1.0

    def _init_state(self, param):
        state = super()._init_state(param)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _direction(self, param, grad, state, group, step):
        return adam_direction(grad, param, state["exp_avg_sq"], step=step, beta2=group["betas"][1], eps=group["eps"],
                              weight_decay=group["weight_decay"], formulation=group["formulation"])


def averaged_model(model: torch.nn.Module, optimizer: Optimizer) -> torch.nn.Module:
    """A deep copy of ``model`` whose parameters hold the average x, to evaluate or save mid-run.

    ``model`` and the optimizer are left as they are (no ``eval()``/``train()`` round trip, whose
    rounding would perturb y). Parameters of ``model`` that the optimizer does not hold are copied.
    """
    if not isinstance(optimizer, _ScheduleFree):
        raise TypeError(f"optimizer must be a ScheduleFreeSGD or ScheduleFreeAdamW, got {type(optimizer).__name__}")
    held = [p for group in optimizer.param_groups for p in group["params"]]
    averages = {id(p): x for p, x in zip(held, optimizer.averaged_parameters())}
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for p, q in zip(model.parameters(), copied.parameters()):
            if id(p) in averages:
                q.copy_(averages[id(p)])
    return copied
