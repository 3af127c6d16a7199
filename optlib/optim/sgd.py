r"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum and L2 weight decay."""
from __future__ import annotations

import numpy as np
import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim import _compiled, _foreach
from optlib.optim._closure import closure_loss

#: The ``formulation`` of :class:`SGD`: velocity in gradient units (as torch) or in parameter units.
FORMULATIONS = ("torch", "classical")
__all__ = ["FORMULATIONS", "SGD", "classical_momentum_update", "scheduled_path", "sgd_update",
           "velocity_response"]


def sgd_update(param: torch.Tensor, grad: torch.Tensor, velocity: torch.Tensor | None, *, lr: float,
               momentum: float, dampening: float, nesterov: bool, weight_decay: float) -> torch.Tensor | None:
    """One SGD step on ``param`` in place, velocity in gradient units; returns the velocity (None without momentum)."""
    if weight_decay:
        grad = grad.add(param, alpha=weight_decay)
    if momentum:
        if velocity is None:
            velocity = grad.detach().clone()
        else:
            velocity.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(velocity, alpha=momentum) if nesterov else velocity
    param.add_(grad, alpha=-lr)
    return velocity


def classical_momentum_update(param: torch.Tensor, grad: torch.Tensor, velocity: torch.Tensor | None, *, lr: float,
                              momentum: float, nesterov: bool, weight_decay: float) -> torch.Tensor:
    """One momentum step with the velocity in parameter units (the step itself); returns the velocity.

    v ← ρ v − α g;  x ← x + v, or for Nesterov x ← x − ρ v_old + (1 + ρ) v (Sutskever et al., 2013).
    """
    if weight_decay:
        grad = grad.add(param, alpha=weight_decay)
    if velocity is None:
        velocity = torch.zeros_like(param)
    previous = velocity.clone() if nesterov else None
    velocity.mul_(momentum).add_(grad, alpha=-lr)
    if nesterov:
        param.add_(previous, alpha=-momentum).add_(velocity, alpha=1 + momentum)
    else:
        param.add_(velocity)
    return velocity


class SGD(Optimizer):
    r"""Gradient descent on minibatch gradients g_t = ∇L_B(x_t).

    .. math::
        g_t &\leftarrow g_t + \lambda x_t                         &\text{(weight decay } \lambda\text{)}\\
        v_{t+1} &= \rho v_t + (1-\tau) g_t,\quad v_1 = g_0       &\text{(momentum } \rho\text{, dampening } \tau\text{)}\\
        x_{t+1} &= x_t - \alpha\,(g_t + \rho v_{t+1}) \text{ if Nesterov, else } x_t - \alpha v_{t+1}

    With ``momentum=0`` this is plain (minibatch) gradient descent x ← x − α g. The iterates
    are those of ``torch.optim.SGD`` with the same arguments.

    ``formulation='classical'`` keeps the velocity in parameter units instead, as many textbooks do:

    .. math::
        v_{t+1} = \rho v_t - \alpha g_t,\qquad x_{t+1} = x_t + v_{t+1}
        \quad(\text{Nesterov: } x_{t+1} = x_t - \rho v_t + (1+\rho) v_{t+1}).

    With a constant learning rate both give the same iterates (v_classical = −α v_torch); they
    differ once α changes during a run, because the classical velocity remembers old step sizes.

    ``implementation``: ``"single"`` loops over the tensors with :func:`sgd_update`, ``"foreach"``
    runs the same operations on all of a group's tensors at once (``optlib.optim._foreach``, the
    same iterates bit for bit, fewer kernel launches), ``"compiled"`` runs the update compiled by
    TorchInductor (``optlib.optim._compiled``: one fused pass over memory, the same iterates to
    rounding, seconds to compile at the first step), ``"auto"`` picks foreach on CUDA only.
    """

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, formulation: str = "torch",
                 implementation: str = "auto"):
        _validate.at_least("lr", lr, 0.0)
        _validate.in_range("momentum", momentum, 0.0, 1.0)
        _validate.in_range("dampening", dampening, 0.0, 1.0, high_inclusive=True)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        _validate.one_of("formulation", formulation, FORMULATIONS)
        _validate.one_of("implementation", implementation, _foreach.IMPLEMENTATIONS)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening = 0, "
                             f"got momentum={momentum}, dampening={dampening}")
        if formulation == "classical" and dampening != 0:
            raise ValueError(f"the classical formulation has no dampening, got dampening={dampening}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, formulation=formulation, implementation=implementation)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the loss,
        calling ``backward``, and its loss is returned.
        """
        loss = closure_loss(closure)
        for group in self.param_groups:
            hyper = {k: group[k] for k in ("lr", "momentum", "nesterov", "weight_decay")}
            classical = group["formulation"] == "classical"
            params = [p for p in group["params"] if p.grad is not None]
            implementation = _foreach.resolve(group.get("implementation", "single"), params)
            if implementation == "compiled" and self._step_compiled(params, group, hyper, classical):
                continue
            if implementation in ("foreach", "compiled"):
                self._step_foreach(params, group, hyper, classical)
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if classical:
                    state["velocity"] = classical_momentum_update(p, p.grad, state.get("velocity"), **hyper)
                    continue
                velocity = sgd_update(p, p.grad, state.get("momentum_buffer"), dampening=group["dampening"], **hyper)
                if velocity is not None:
                    state["momentum_buffer"] = velocity
        return loss

    def _step_compiled(self, params, group, hyper, classical) -> bool:
        """The compiled step (``optlib.optim._compiled``); False when a velocity is still missing (first step)."""
        if not params:
            return True
        key = "velocity" if classical else "momentum_buffer"
        needs_velocity = classical or group["momentum"]
        velocities = [self.state[p].get(key) for p in params] if needs_velocity else []
        if any(v is None for v in velocities):
            return False  # the foreach step creates them
        flat = [p.detach() for p in params]
        lr = _compiled.scalar(group["lr"], flat[0])
        if classical:
            _compiled.run(_compiled.classical_momentum, flat, [p.grad for p in params], velocities, lr,
                          momentum=group["momentum"], nesterov=group["nesterov"], weight_decay=group["weight_decay"])
        else:
            _compiled.run(_compiled.sgd, flat, [p.grad for p in params], velocities, lr, momentum=group["momentum"],
                          dampening=group["dampening"], nesterov=group["nesterov"], weight_decay=group["weight_decay"])
        return True

    def _step_foreach(self, params, group, hyper, classical) -> None:
        """The same step on all of the group's tensors at once (``optlib.optim._foreach``)."""
        if not params:
            return
        grads = [p.grad for p in params]
        states = [self.state[p] for p in params]
        if classical:
            velocities = _foreach.classical_momentum_foreach(params, grads, [s.get("velocity") for s in states],
                                                             **hyper)
            for state, v in zip(states, velocities):
                state["velocity"] = v
            return
        velocities = _foreach.sgd_foreach(params, grads, [s.get("momentum_buffer") for s in states],
                                          dampening=group["dampening"], **hyper)
        if velocities is not None:
            for state, v in zip(states, velocities):
                state["momentum_buffer"] = v


def velocity_response(gradients, momentum: float) -> np.ndarray:
    r"""The velocity of :class:`SGD` after each step when it is fed the scalar ``gradients`` by hand.

    A one-entry float64 parameter gets ``gradients[t]`` as its gradient at step t; entry t of the
    result is the momentum buffer v_{t+1} = ρ v_t + g_t after that step. Fed 1, 0, 0, … it returns
    the weights ρ^k with which old gradients enter the velocity (the impulse response); fed a
    constant 1 it returns the partial sums of those weights, which tend to 1/(1 − ρ).
    """
    momentum = _validate.in_range("momentum", momentum, 0.0, 1.0)
    if momentum == 0:
        raise ValueError("momentum must be > 0 for SGD to keep a velocity, got 0")
    values = np.asarray(gradients, dtype=float).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("gradients must be a non-empty sequence of finite numbers")
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = SGD([p], lr=1.0, momentum=momentum)
    velocities = np.empty(values.size)
    for t, value in enumerate(values):
        p.grad = torch.tensor([value], dtype=torch.float64)
        optimizer.step()
        velocities[t] = optimizer.state[p]["momentum_buffer"].item()
    return velocities


def scheduled_path(fn, x0, steps: int, schedule, **hyperparams) -> np.ndarray:
    r"""The iterates x₀, …, x_steps of :class:`SGD` on ``fn`` from ``x0``, with α_t = α · schedule(t).

    ``schedule`` is a function step -> factor (see :mod:`optlib.schedules`), applied through a
    ``LambdaLR`` stepped after every step, as a training loop would; ``hyperparams`` go to
    :class:`SGD` (``lr`` is the base rate α). Runs in float64; returns an array (steps + 1, d).
    """
    from optlib import run, schedules

    if not callable(schedule):
        raise TypeError(f"schedule must be a callable step -> factor, got {schedule!r}")
    trace = run.minimize(fn, x0, SGD, steps=steps, scheduler=lambda opt: schedules.scheduler(opt, schedule),
                         **hyperparams)
    return trace.path()
