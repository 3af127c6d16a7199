r"""Adaptive methods: AdaGrad, RMSProp, Adam (with or without bias correction) and AdamW.

Each scales the step of every coordinate by a running estimate of the size of its gradients,
a diagonal preconditioner built from first-order information only. The update functions below
are written in the same order of floating-point operations as ``torch.optim``'s single-tensor
implementations, so the iterates agree to rounding.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim._closure import closure_loss


def _validate_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    _validate.in_range("beta1", betas[0], 0.0, 1.0)
    _validate.in_range("beta2", betas[1], 0.0, 1.0)
    return float(betas[0]), float(betas[1])


class _Adaptive(Optimizer):
    """Shared loop: lazily create each parameter's state, then call the family's update."""

    def _init_state(self, param: torch.Tensor, group: dict) -> dict:
        raise NotImplementedError

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the loss,
        calling ``backward``, and its loss is returned. Sparse gradients are refused.
        """
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p, group))
                state["step"] += 1
                self._update(p, p.grad, state, group)
        return loss


def adagrad_update(param, grad, sum_of_squares, *, step: int, lr: float, lr_decay: float, eps: float,
                   weight_decay: float) -> None:
    r"""s ← s + g²;  x ← x − α_t g / (√s + ε), with α_t = α / (1 + (t−1)·lr_decay)."""
    if weight_decay:
        grad = grad.add(param, alpha=weight_decay)
    step_size = lr / (1 + (step - 1) * lr_decay)
    sum_of_squares.addcmul_(grad, grad, value=1)
    std = sum_of_squares.sqrt().add_(eps)
    param.addcdiv_(grad, std, value=-step_size)


class AdaGrad(_Adaptive):
    r"""AdaGrad (Duchi, Hazan and Singer, 2011): per-coordinate steps that shrink with the gradients seen.

    .. math::
        s_t = s_{t-1} + g_t \odot g_t,\qquad
        x_{t+1} = x_t - \frac{\alpha}{1 + (t-1)\,\delta}\,\frac{g_t}{\sqrt{s_t} + \varepsilon}

    (δ = ``lr_decay``, usually 0). A coordinate with large past gradients takes small steps; since
    s only grows, every step size decays, like α/√t for gradients of constant size. Iterates match
    ``torch.optim.Adagrad``.
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        _validate.at_least("lr", lr, 0.0)
        _validate.at_least("lr_decay", lr_decay, 0.0)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        _validate.at_least("initial_accumulator_value", initial_accumulator_value, 0.0)
        _validate.at_least("eps", eps, 0.0)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _init_state(self, param, group):
        return {"step": 0, "sum": torch.full_like(param, group["initial_accumulator_value"],
                                                  memory_format=torch.preserve_format)}

    def _update(self, param, grad, state, group):
        adagrad_update(param, grad, state["sum"], step=state["step"], lr=group["lr"], lr_decay=group["lr_decay"],
                       eps=group["eps"], weight_decay=group["weight_decay"])


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, *, lr: float, alpha: float, eps: float,
                   weight_decay: float, momentum: float) -> None:
    r"""s ← α s + (1−α) g²;  x ← x − lr · g / (√(s − m²) + ε) (m² only when centered), optionally with momentum."""
    if weight_decay:
        grad = grad.add(param, alpha=weight_decay)
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    if grad_avg is not None:
        grad_avg.lerp_(grad, 1 - alpha)
        avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
    else:
        avg = square_avg.sqrt()
    avg = avg.add_(eps)
    if momentum_buffer is not None:
        momentum_buffer.mul_(momentum).addcdiv_(grad, avg)
        param.add_(momentum_buffer, alpha=-lr)
    else:
        param.addcdiv_(grad, avg, value=-lr)


class RMSProp(_Adaptive):
    r"""RMSProp (Hinton, 2012): AdaGrad with a leaky (exponential moving) average of g².

    .. math::
        s_t = \alpha s_{t-1} + (1-\alpha)\, g_t \odot g_t,\qquad
        x_{t+1} = x_t - \text{lr}\,\frac{g_t}{\sqrt{s_t} + \varepsilon}

    The average forgets old gradients, so the step no longer decays to zero. ``centered=True``
    divides by an estimate of the standard deviation √(s − m²) instead (m the average of g);
    ``momentum > 0`` adds a velocity on top. Iterates match ``torch.optim.RMSprop``.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False):
        _validate.at_least("lr", lr, 0.0)
        _validate.in_range("alpha", alpha, 0.0, 1.0)
        _validate.at_least("eps", eps, 0.0)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        _validate.in_range("momentum", momentum, 0.0, 1.0)
        if not isinstance(centered, bool):
            raise TypeError(f"centered must be True or False, got {centered!r}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered))

    def _init_state(self, param, group):
        state = {"step": 0, "square_avg": torch.zeros_like(param, memory_format=torch.preserve_format)}
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _update(self, param, grad, state, group):
        rmsprop_update(param, grad, state["square_avg"], state.get("grad_avg"), state.get("momentum_buffer"),
                       lr=group["lr"], alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                       momentum=group["momentum"])


def adam_update(param, grad, exp_avg, exp_avg_sq, *, step: int, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, decoupled: bool, bias_correction: bool) -> None:
    r"""m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  x ← x − α m̂ / (√v̂ + ε), hats = bias-corrected.

    ``decoupled`` applies weight decay as x ← (1 − αλ) x (AdamW) instead of adding λx to g (Adam + L2).
    """
    if weight_decay:
        if decoupled:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if bias_correction:
        step_size = lr / (1 - beta1 ** step)
        denom = exp_avg_sq.sqrt().div_((1 - beta2 ** step) ** 0.5).add_(eps)  # in place: one temporary, not two
    else:
        step_size = lr
        denom = exp_avg_sq.sqrt().add_(eps)
    param.addcdiv_(exp_avg, denom, value=-step_size)


class Adam(_Adaptive):
    r"""Adam (Kingma and Ba, 2015): momentum on g and an RMSProp scale, both bias-corrected.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t\odot g_t,\\
        \hat m_t &= m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t),\\
        x_{t+1} &= x_t - \alpha\, \hat m_t / (\sqrt{\hat v_t} + \varepsilon).

    m and v start at 0, so early averages are biased towards 0; the hats undo that exactly for
    a constant gradient. ``bias_correction=False`` gives "Adam almost" (no hats): for a constant
    gradient its step is (1−β₁ᵗ)/√(1−β₂ᵗ) times Adam's, which with the defaults (β₁ = 0.9,
    β₂ = 0.999) is 3.2 at t = 1, 6.5 at t = 10 and still 1.26 at t = 1000: early steps too large.
    ``weight_decay`` is L2 regularization, added to the gradient before the averages, and therefore
    rescaled by the adaptive denominator; use :class:`AdamW` for decoupled decay. With
    ``bias_correction=True`` the iterates match ``torch.optim.Adam``.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 bias_correction: bool = True):
        _validate.at_least("lr", lr, 0.0)
        beta1, beta2 = _validate_betas(betas)
        _validate.at_least("eps", eps, 0.0)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        if not isinstance(bias_correction, bool):
            raise TypeError(f"bias_correction must be True or False, got {bias_correction!r}")
        super().__init__(params, dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction))

    def _init_state(self, param, group):
        return {"step": 0, "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def _update(self, param, grad, state, group):
        beta1, beta2 = group["betas"]
        adam_update(param, grad, state["exp_avg"], state["exp_avg_sq"], step=state["step"], lr=group["lr"],
                    beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    decoupled=self.decoupled_weight_decay, bias_correction=group["bias_correction"])


class AdamW(Adam):
    r"""AdamW (Loshchilov and Hutter, 2019): Adam with weight decay decoupled from the adaptive scale.

    .. math::
        x_t \leftarrow (1 - \alpha\lambda)\, x_t, \quad\text{then the Adam step on } g_t \text{ alone.}

    Every weight shrinks by the same factor whatever its gradient history, which Adam + L2 cannot
    do: there, λx passes through 1/(√v̂ + ε) and weights with large gradients are barely decayed.
    Iterates match ``torch.optim.AdamW`` (default λ = 0.01).
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 bias_correction: bool = True):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         bias_correction=bias_correction)
