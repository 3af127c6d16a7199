r"""Adaptive methods: AdaGrad, RMSProp, Adadelta, Adam (with or without bias correction), AdamW
and AMSGrad.

Each scales the step of every coordinate by a running estimate of the size of its gradients,
a diagonal preconditioner built from first-order information only. The update functions below
are written in the same order of floating-point operations as ``torch.optim``'s single-tensor
implementations, so the iterates agree to rounding.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from optlib import _validate
from optlib.optim import _compiled, _foreach
from optlib.optim._closure import closure_loss


def _validate_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    _validate.in_range("beta1", betas[0], 0.0, 1.0)
    _validate.in_range("beta2", betas[1], 0.0, 1.0)
    return float(betas[0]), float(betas[1])


def _validate_implementation(implementation) -> str:
    return _validate.one_of("implementation", implementation, _foreach.IMPLEMENTATIONS)


class _Adaptive(Optimizer):
    """Shared loop: lazily create each parameter's state, then call the family's update.

    With ``implementation="foreach"`` (or ``"auto"`` on CUDA) the family's :meth:`_update_group`
    runs the same update on all of a group's tensors at once (``optlib.optim._foreach``).
    """

    def _init_state(self, param: torch.Tensor, group: dict) -> dict:
        raise NotImplementedError

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    def _update_group(self, params: list, grads: list, states: list, group: dict) -> None:
        for p, g, state in zip(params, grads, states):
            self._update(p, g, state, group)

    def _update_compiled(self, params: list, grads: list, states: list, group: dict) -> None:
        self._update_group(params, grads, states, group)

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter that has a gradient; ``closure`` (optional) re-evaluates the loss,
        calling ``backward``, and its loss is returned. Sparse gradients are refused.
        """
        loss = closure_loss(closure)
        for group in self.param_groups:
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state.update(self._init_state(p, group))
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                states.append(state)
            implementation = _foreach.resolve(group.get("implementation", "single"), params)
            if implementation == "compiled" and params and len({s["step"] for s in states}) == 1:
                self._update_compiled([p.detach() for p in params], grads, states, group)
            elif implementation in ("foreach", "compiled"):  # compiled needs one step count per group
                self._update_group(params, grads, states, group)
            else:
                for p, g, state in zip(params, grads, states):
                    self._update(p, g, state, group)
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

    ``implementation``: ``"single"`` loops over the tensors with the update function above,
    ``"foreach"`` runs the same operations on all of a group's tensors at once
    (``optlib.optim._foreach``: the same iterates bit for bit, fewer kernel launches),
    ``"compiled"`` runs the update compiled by TorchInductor (``optlib.optim._compiled``: one
    fused pass over memory, the same iterates to rounding, seconds to compile at the first step),
    ``"auto"`` picks foreach on CUDA only.
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, implementation: str = "auto"):
        _validate.at_least("lr", lr, 0.0)
        _validate.at_least("lr_decay", lr_decay, 0.0)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        _validate.at_least("initial_accumulator_value", initial_accumulator_value, 0.0)
        _validate.at_least("eps", eps, 0.0)
        _validate_implementation(implementation)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      implementation=implementation))

    def _init_state(self, param, group):
        return {"step": 0, "sum": torch.full_like(param, group["initial_accumulator_value"],
                                                  memory_format=torch.preserve_format)}

    def _update(self, param, grad, state, group):
        adagrad_update(param, grad, state["sum"], step=state["step"], lr=group["lr"], lr_decay=group["lr_decay"],
                       eps=group["eps"], weight_decay=group["weight_decay"])

    def _update_compiled(self, params, grads, states, group):
        step_size = group["lr"] / (1 + (states[0]["step"] - 1) * group["lr_decay"])
        _compiled.run(_compiled.adagrad, params, grads, [s["sum"] for s in states],
                      _compiled.scalar(step_size, params[0]), eps=group["eps"], weight_decay=group["weight_decay"])

    def _update_group(self, params, grads, states, group):
        _foreach.adagrad_foreach(params, grads, [s["sum"] for s in states], [s["step"] for s in states],
                                 lr=group["lr"], lr_decay=group["lr_decay"], eps=group["eps"],
                                 weight_decay=group["weight_decay"])


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

    ``implementation``: ``"single"`` loops over the tensors with the update function above,
    ``"foreach"`` runs the same operations on all of a group's tensors at once
    (``optlib.optim._foreach``: the same iterates bit for bit, fewer kernel launches),
    ``"compiled"`` runs the update compiled by TorchInductor (``optlib.optim._compiled``: one
    fused pass over memory, the same iterates to rounding, seconds to compile at the first step),
    ``"auto"`` picks foreach on CUDA only.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, implementation: str = "auto"):
        _validate.at_least("lr", lr, 0.0)
        _validate.in_range("alpha", alpha, 0.0, 1.0)
        _validate.at_least("eps", eps, 0.0)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        _validate.in_range("momentum", momentum, 0.0, 1.0)
        if not isinstance(centered, bool):
            raise TypeError(f"centered must be True or False, got {centered!r}")
        _validate_implementation(implementation)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, implementation=implementation))

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

    def _update_compiled(self, params, grads, states, group):
        grad_avgs = [s["grad_avg"] for s in states] if group["centered"] else []
        buffers = [s["momentum_buffer"] for s in states] if group["momentum"] > 0 else []
        _compiled.run(_compiled.rmsprop, params, grads, [s["square_avg"] for s in states], grad_avgs, buffers,
                      _compiled.scalar(group["lr"], params[0]), alpha=group["alpha"], eps=group["eps"],
                      weight_decay=group["weight_decay"], momentum=group["momentum"], centered=group["centered"])

    def _update_group(self, params, grads, states, group):
        grad_avgs = [s["grad_avg"] for s in states] if group["centered"] else None
        buffers = [s["momentum_buffer"] for s in states] if group["momentum"] > 0 else None
        _foreach.rmsprop_foreach(params, grads, [s["square_avg"] for s in states], grad_avgs, buffers,
                                 lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                                 weight_decay=group["weight_decay"], momentum=group["momentum"])


def adadelta_update(param, grad, square_avg, acc_delta, *, lr: float, rho: float, eps: float,
                    weight_decay: float) -> None:
    r"""v ← ρv + (1−ρ)g²;  Δ = √(u + ε)/√(v + ε) · g;  u ← ρu + (1−ρ)Δ²;  x ← x − lr · Δ."""
    if weight_decay:
        grad = grad.add(param, alpha=weight_decay)
    square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
    std = square_avg.add(eps).sqrt_()
    delta = acc_delta.add(eps).sqrt_().div_(std).mul_(grad)
    acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
    param.add_(delta, alpha=-lr)


class Adadelta(_Adaptive):
    r"""Adadelta (Zeiler, 2012): RMSProp whose step size is a running RMS of its own past steps.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho)\, g_t \odot g_t,\qquad
        \Delta_t = \frac{\sqrt{u_{t-1} + \varepsilon}}{\sqrt{v_t + \varepsilon}}\, g_t,\qquad
        u_t = \rho u_{t-1} + (1-\rho)\, \Delta_t \odot \Delta_t,\qquad
        x_{t+1} = x_t - \text{lr}\, \Delta_t .

    Zeiler's argument: the ratio RMS[Δx]/RMS[g] has the units of x/g, like the inverse Hessian
    of Newton's step, so the update has the units of x and the original method has no learning
    rate (``lr = 1``, PyTorch's default, is only an extra multiplier). The price is that ε in the
    numerator sets the scale of the first steps: u starts at 0, so the first step is
    √(ε/(1−ρ)) in every coordinate whatever the gradient, and on a constant gradient the squared
    step grows by (1−ρ)ε per step, so the step grows like √((1−ρ)εt). ε is Adadelta's hidden
    learning rate. ``weight_decay`` adds λx
    to the gradient (L2). Iterates match ``torch.optim.Adadelta``.
    """

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0):
        _validate.at_least("lr", lr, 0.0)
        _validate.in_range("rho", rho, 0.0, 1.0)
        _validate.positive("eps", eps)  # eps = 0 would make every step 0: u starts at 0
        _validate.at_least("weight_decay", weight_decay, 0.0)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def _init_state(self, param, group):
        return {"step": 0, "square_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "acc_delta": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def _update(self, param, grad, state, group):
        adadelta_update(param, grad, state["square_avg"], state["acc_delta"], lr=group["lr"], rho=group["rho"],
                        eps=group["eps"], weight_decay=group["weight_decay"])


def adam_update(param, grad, exp_avg, exp_avg_sq, *, step: int, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, decoupled: bool, bias_correction: bool,
                max_exp_avg_sq: torch.Tensor | None = None) -> None:
    r"""m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  x ← x − α m̂ / (√v̂ + ε), hats = bias-corrected.

    ``decoupled`` applies weight decay as x ← (1 − αλ) x (AdamW) instead of adding λx to g (Adam + L2).
    With ``max_exp_avg_sq`` (AMSGrad) the denominator uses the running maximum v_max ← max(v_max, v)
    instead of v, so the effective step of a coordinate can only shrink.
    """
    if weight_decay:
        if decoupled:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    second = exp_avg_sq
    if max_exp_avg_sq is not None:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    if bias_correction:
        step_size = lr / (1 - beta1 ** step)
        denom = second.sqrt().div_((1 - beta2 ** step) ** 0.5).add_(eps)  # in place: one temporary, not two
    else:
        step_size = lr
        denom = second.sqrt().add_(eps)
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
    rescaled by the adaptive denominator; use :class:`AdamW` for decoupled decay. ``amsgrad=True``
    divides by the running maximum of v instead (:class:`AMSGrad`). With ``bias_correction=True``
    the iterates match ``torch.optim.Adam`` (with the same ``amsgrad``).

    ``implementation``: ``"single"`` loops over the tensors with the update function above,
    ``"foreach"`` runs the same operations on all of a group's tensors at once
    (``optlib.optim._foreach``: the same iterates bit for bit, fewer kernel launches),
    ``"compiled"`` runs the update compiled by TorchInductor (``optlib.optim._compiled``: one
    fused pass over memory, the same iterates to rounding, seconds to compile at the first step),
    ``"auto"`` picks foreach on CUDA only.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 bias_correction: bool = True, amsgrad: bool = False, implementation: str = "auto"):
        _validate.at_least("lr", lr, 0.0)
        beta1, beta2 = _validate_betas(betas)
        _validate.at_least("eps", eps, 0.0)
        _validate.at_least("weight_decay", weight_decay, 0.0)
        if not isinstance(bias_correction, bool):
            raise TypeError(f"bias_correction must be True or False, got {bias_correction!r}")
        if not isinstance(amsgrad, bool):
            raise TypeError(f"amsgrad must be True or False, got {amsgrad!r}")
        _validate_implementation(implementation)
        super().__init__(params, dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction, amsgrad=amsgrad, implementation=implementation))

    def _init_state(self, param, group):
        state = {"step": 0, "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                 "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format)}
        if group.get("amsgrad", False):  # groups loaded from older state_dicts lack the key
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _update(self, param, grad, state, group):
        beta1, beta2 = group["betas"]
        adam_update(param, grad, state["exp_avg"], state["exp_avg_sq"], step=state["step"], lr=group["lr"],
                    beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    decoupled=self.decoupled_weight_decay, bias_correction=group["bias_correction"],
                    max_exp_avg_sq=state.get("max_exp_avg_sq") if group.get("amsgrad", False) else None)

    def _update_compiled(self, params, grads, states, group):
        beta1, beta2 = group["betas"]
        amsgrad = group.get("amsgrad", False)
        step = states[0]["step"]
        bias1, bias2 = (1 - beta1 ** step, 1 - beta2 ** step) if group["bias_correction"] else (1.0, 1.0)
        like = params[0]
        _compiled.run(
            _compiled.adam, params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if amsgrad else [], _compiled.scalar(group["lr"], like),
            _compiled.scalar(bias1, like), _compiled.scalar(bias2 ** 0.5, like), beta1=beta1, beta2=beta2,
            eps=group["eps"], weight_decay=group["weight_decay"], decoupled=self.decoupled_weight_decay,
            amsgrad=amsgrad)

    def _update_group(self, params, grads, states, group):
        beta1, beta2 = group["betas"]
        maxes = [s["max_exp_avg_sq"] for s in states] if group.get("amsgrad", False) else None
        _foreach.adam_foreach(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                              [s["step"] for s in states], lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                              weight_decay=group["weight_decay"], decoupled=self.decoupled_weight_decay,
                              bias_correction=group["bias_correction"], max_exp_avg_sqs=maxes)


class AdamW(Adam):
    r"""AdamW (Loshchilov and Hutter, 2019): Adam with weight decay decoupled from the adaptive scale.

    .. math::
        x_t \leftarrow (1 - \alpha\lambda)\, x_t, \quad\text{then the Adam step on } g_t \text{ alone.}

    Every weight shrinks by the same factor whatever its gradient history, which Adam + L2 cannot
    do: there, λx passes through 1/(√v̂ + ε) and weights with large gradients are barely decayed.
    Iterates match ``torch.optim.AdamW`` (default λ = 0.01), with ``amsgrad`` as there.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 bias_correction: bool = True, amsgrad: bool = False, implementation: str = "auto"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         bias_correction=bias_correction, amsgrad=amsgrad, implementation=implementation)


class AMSGrad(Adam):
    r"""AMSGrad (Reddi, Kale and Kumar, 2018): Adam dividing by the largest second moment seen so far.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t\odot g_t,\\
        v^{\max}_t &= \max(v^{\max}_{t-1}, v_t), \qquad
        x_{t+1} = x_t - \alpha\, \frac{m_t/(1-\beta_1^t)}{\sqrt{v^{\max}_t/(1-\beta_2^t)} + \varepsilon}.

    Adam's effective step α/√v̂ can *grow* when a large gradient leaves v's window; Reddi et al.
    build online problems where that makes Adam converge to the worst point. With the maximum
    the effective step α/√v_max never grows (apart from the bias correction's factor
    √(1−β₂ᵗ), which rises to 1), which restores the convergence proof. This is PyTorch's form
    (``Adam(amsgrad=True)``: the maximum of the uncorrected v, then the bias correction of step t);
    the paper has no bias correction (``bias_correction=False`` here). Iterates match
    ``torch.optim.Adam(amsgrad=True)``; ``weight_decay`` is L2 as in :class:`Adam` (for decoupled
    decay use ``AdamW(amsgrad=True)``).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 bias_correction: bool = True, implementation: str = "auto"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         bias_correction=bias_correction, amsgrad=True, implementation=implementation)
