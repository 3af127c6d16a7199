r"""Diagonal curvature and the diagonal preconditioners of adaptive optimizers.

An adaptive method divides each gradient coordinate by a running size estimate, which makes it
a *diagonal preconditioner* :math:`x \leftarrow x - \alpha\, D^{-1} g` with
:math:`D = \mathrm{diag}(\sqrt{\hat v} + \varepsilon)`. This module computes what such a
:math:`D` might be compared with, for a loss :math:`L(\theta)` of a flat parameter vector:

- :func:`hessian_diagonal`, the exact :math:`H_{ii} = \partial^2 L / \partial\theta_i^2`
  (one Hessian-vector product per coordinate, vectorized with ``torch.func.vmap``);
- :func:`hutchinson_diagonal`, the unbiased estimate
  :math:`\operatorname{diag} H \approx \frac1N \sum_k z_k \odot H z_k` with random ±1 probes
  (:math:`\mathbb E[z_i (Hz)_i] = H_{ii}`; each sample's error has variance
  :math:`\sum_{j \ne i} H_{ij}^2`, so the estimate's error falls like :math:`1/\sqrt N`);
- :func:`empirical_fisher_diagonal`, :math:`F_{ii} = \frac1n \sum_k (\partial \ell_k / \partial\theta_i)^2`,
  the mean squared *per-example* gradient;
- :func:`minibatch_second_moment`, :math:`\mathbb E[g_{B,i}^2]` for a minibatch of size :math:`B`,
  which is what Adam's :math:`v` averages;

and reads the preconditioner an optimizer has built from its state (:func:`second_moment`,
:func:`effective_lr`), after every step if wanted (:class:`StateRecorder`). Results live on the device of the tensors passed in; random probes are drawn
with a CPU generator and then moved, so a seed gives the same probes on every device.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from optlib import _validate

__all__ = ["StateRecorder", "flat_loss", "hessian_diagonal", "hutchinson_diagonal", "empirical_fisher_diagonal",
           "minibatch_second_moment", "second_moment", "effective_lr", "log_correlation", "replay_gradients",
           "adam_l2_mean_field"]

FlatLoss = Callable[[torch.Tensor], torch.Tensor]


def _vector(name: str, theta) -> torch.Tensor:
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(theta).__name__}")
    if theta.ndim != 1 or theta.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor, got shape {tuple(theta.shape)}")
    if not torch.is_floating_point(theta):
        raise TypeError(f"{name} must be a floating-point tensor, got {theta.dtype}")
    return theta.detach()


def _scalar_loss(fn: FlatLoss, theta: torch.Tensor) -> torch.Tensor:
    loss = fn(theta)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError(f"the loss must return a scalar tensor, got {getattr(loss, 'shape', type(loss))}")
    return loss


def _check_data(X: torch.Tensor, y: torch.Tensor) -> None:
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    if len(X) == 0:
        raise ValueError("need at least one example")


def flat_loss(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor) -> tuple[FlatLoss, torch.Tensor]:
    r"""``(fn, theta)``: the loss ``loss_fn(model(X), y)`` as a function of one flat parameter vector.

    ``theta`` is the model's current parameters, concatenated in ``model.parameters()`` order (as
    :func:`optlib.landscape.flatten_params` does); ``fn(theta)`` evaluates the model with those
    parameters (``torch.func.functional_call``) without touching the module's own weights.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_data(X, y)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    if not names:
        raise ValueError("model has no parameters")
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def fn(flat: torch.Tensor) -> torch.Tensor:
        if flat.shape != theta.shape:
            raise ValueError(f"expected a parameter vector of shape {tuple(theta.shape)}, got {tuple(flat.shape)}")
        params = {n: t.view(s) for n, t, s in zip(names, torch.split(flat, sizes), shapes)}
        return loss_fn(torch.func.functional_call(model, params, (X,)), y)

    return fn, theta


def _basis_chunks(d: int, chunk_size: int, like: torch.Tensor):
    for start in range(0, d, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, d), device=like.device)
        basis = torch.zeros(len(idx), d, dtype=like.dtype, device=like.device)
        basis[torch.arange(len(idx), device=like.device), idx] = 1
        yield idx, basis


def _hvp_many(fn: FlatLoss, theta: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """H v for each row v of ``vectors``, by reverse-over-reverse differentiation: ∇(∇f(θ)·v)."""
    grad_fn = torch.func.grad(fn)

    def hvp(v):
        return torch.func.grad(lambda t: torch.dot(grad_fn(t), v))(theta)

    return torch.func.vmap(hvp)(vectors)


def hessian_diagonal(fn: FlatLoss, theta: torch.Tensor, *, chunk_size: int = 128) -> torch.Tensor:
    r"""Exact diagonal of the Hessian of ``fn`` at ``theta``: :math:`H_{ii} = e_i^\top H e_i`.

    Uses one Hessian-vector product per coordinate (``torch.func``: the gradient of ∇f(θ)·eᵢ),
    ``chunk_size`` of them vectorized at a time, so memory grows with
    ``chunk_size``, not with d². Cost: d Hessian-vector products, affordable for d up to a few thousand.
    """
    theta = _vector("theta", theta)
    chunk_size = _validate.positive_int("chunk_size", chunk_size)
    _scalar_loss(fn, theta)
    out = torch.empty_like(theta)
    for idx, basis in _basis_chunks(theta.numel(), chunk_size, theta):
        out[idx] = _hvp_many(fn, theta, basis)[torch.arange(len(idx), device=theta.device), idx]
    return out


def hutchinson_diagonal(fn: FlatLoss, theta: torch.Tensor, samples: int, *,
                        generator: torch.Generator | None = None, chunk_size: int = 64,
                        return_samples: bool = False) -> torch.Tensor:
    r"""Hutchinson's estimate of diag H: the mean of :math:`z \odot Hz` over ``samples`` Rademacher probes.

    Unbiased, since :math:`\mathbb E[z_i z_j] = \delta_{ij}`; coordinate i of one sample has variance
    :math:`\sum_{j\ne i} H_{ij}^2` (zero for a diagonal H, where one probe is exact). Needs only
    Hessian-vector products, so it scales to models whose Hessian could never be formed. Probes are
    drawn on the CPU with ``generator`` and moved to ``theta``'s device. ``return_samples=True``
    returns every sample, shape (samples, d), instead of their mean.
    """
    theta = _vector("theta", theta)
    samples = _validate.positive_int("samples", samples)
    chunk_size = _validate.positive_int("chunk_size", chunk_size)
    _scalar_loss(fn, theta)
    parts = []
    for start in range(0, samples, chunk_size):
        k = min(chunk_size, samples - start)
        z = torch.randint(0, 2, (k, theta.numel()), generator=generator).to(dtype=theta.dtype) * 2 - 1
        z = z.to(theta.device)
        parts.append(z * _hvp_many(fn, theta, z))
    all_samples = torch.cat(parts)
    return all_samples if return_samples else all_samples.mean(0)


def empirical_fisher_diagonal(model: nn.Module, loss_fn: Callable, X: torch.Tensor, y: torch.Tensor, *,
                              batch_size: int = 512, return_mean_gradient: bool = False):
    r"""Diagonal of the empirical Fisher, :math:`F_{ii} = \frac1n\sum_k g_{k,i}^2`, with :math:`g_k = \nabla\ell(\theta; x_k, y_k)`.

    Per-example gradients come from ``torch.func.vmap`` over ``loss_fn`` applied to one example at a
    time (``loss_fn`` must be a mean over its batch, as the book's losses are), ``batch_size``
    examples per vectorized call. "Empirical" because it uses the observed labels y, not labels
    sampled from the model. ``return_mean_gradient=True`` also returns :math:`\bar g = \frac1n\sum_k g_k`
    (the full-batch gradient), as ``(F, g_bar)``. Flat, in ``model.parameters()`` order.
    """
    fn, theta = flat_loss(model, loss_fn, X, y)
    batch_size = _validate.positive_int("batch_size", batch_size)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def one(flat, x, t):
        params = {n: v.view(s) for n, v, s in zip(names, torch.split(flat, sizes), shapes)}
        return loss_fn(torch.func.functional_call(model, params, (x[None],)), t[None])

    per_example = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))
    total_sq = torch.zeros_like(theta)
    total = torch.zeros_like(theta)
    for start in range(0, len(X), batch_size):
        grads = per_example(theta, X[start:start + batch_size], y[start:start + batch_size])
        total_sq += (grads * grads).sum(0)
        total += grads.sum(0)
    n = len(X)
    return (total_sq / n, total / n) if return_mean_gradient else total_sq / n


def minibatch_second_moment(fisher_diagonal: torch.Tensor, mean_gradient: torch.Tensor, batch_size: int,
                            n: int) -> torch.Tensor:
    r"""Expected squared minibatch gradient :math:`\mathbb E[g_{B,i}^2]` for B examples drawn without replacement.

    With per-example gradients of mean :math:`\bar g` and second moment :math:`F` (the empirical Fisher
    diagonal), their variance is :math:`\sigma^2 = F - \bar g^2`, and

    .. math:: \mathbb E[g_B^2] = \bar g^2 + \frac{\sigma^2}{B}\,\frac{n - B}{n - 1}.

    ``B = 1`` gives F itself; ``B = n`` (full batch) gives :math:`\bar g^2`, no curvature information at all.
    """
    fisher_diagonal, mean_gradient = _vector("fisher_diagonal", fisher_diagonal), _vector("mean_gradient", mean_gradient)
    if fisher_diagonal.shape != mean_gradient.shape:
        raise ValueError(f"shapes differ: {tuple(fisher_diagonal.shape)} vs {tuple(mean_gradient.shape)}")
    n = _validate.positive_int("n", n)
    batch_size = _validate.positive_int("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= n = {n}, got {batch_size}")
    variance = (fisher_diagonal - mean_gradient**2).clamp(min=0)
    correction = (n - batch_size) / (n - 1) if n > 1 else 0.0
    return mean_gradient**2 + variance / batch_size * correction


def _states(optimizer: torch.optim.Optimizer):
    from optlib.optim import AdaGrad, Adam, RMSProp

    if not isinstance(optimizer, (AdaGrad, RMSProp, Adam, torch.optim.Adagrad, torch.optim.RMSprop,
                                  torch.optim.Adam, torch.optim.AdamW)):
        raise TypeError(f"expected an AdaGrad, RMSProp, Adam or AdamW optimizer, got {type(optimizer).__name__}")
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                raise ValueError("the optimizer has no state for some parameter yet: take a step first")
            yield p, group, state


def _step_count(state) -> int:
    return int(torch.as_tensor(state["step"]).item())


def second_moment(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    r"""The per-coordinate size estimate an adaptive optimizer divides by, squared, as one flat vector.

    AdaGrad: the running sum :math:`s_t = \sum_k g_k^2`. RMSProp: the leaky average :math:`s_t` of
    :math:`g^2` (minus the squared average gradient when ``centered``). Adam/AdamW: the bias-corrected
    :math:`\hat v_t = v_t/(1-\beta_2^t)` (uncorrected :math:`v_t` when ``bias_correction=False``);
    with ``amsgrad`` (:class:`~optlib.optim.adaptive.AMSGrad`) the running maximum of :math:`v` takes its place.
    Parameters are concatenated in ``param_groups`` order (``model.parameters()`` order for one group).
    """
    parts = []
    for p, group, state in _states(optimizer):
        if "sum" in state:
            parts.append(state["sum"].reshape(-1))
        elif "square_avg" in state:
            s = state["square_avg"]
            if "grad_avg" in state:
                s = s - state["grad_avg"] ** 2
            parts.append(s.reshape(-1))
        else:
            v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
            if group.get("bias_correction", True):
                v = v / (1 - group["betas"][1] ** _step_count(state))
            parts.append(v.reshape(-1))
    return torch.cat(parts).detach()


def effective_lr(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    r"""Per-coordinate step size :math:`\alpha / (\sqrt{s_t} + \varepsilon)` built from the current state.

    After step t this is the factor that step t applied: the update was ``−effective_lr ⊙ g_t`` for
    AdaGrad and RMSProp (without momentum) and ``−effective_lr ⊙ m̂_t`` for Adam (the :math:`1/(1-\beta_1^t)`
    of :math:`\hat m` is not included). AdaGrad's ``lr_decay`` is applied as in step t. One flat vector,
    in the order of :func:`second_moment`.
    """
    parts = []
    for p, group, state in _states(optimizer):
        lr = group["lr"]
        if "sum" in state:
            lr = lr / (1 + (_step_count(state) - 1) * group["lr_decay"])
        parts.append(torch.full((p.numel(),), float(lr), dtype=p.dtype, device=p.device))
    lrs = torch.cat(parts)
    eps = torch.cat([torch.full((p.numel(),), float(group["eps"]), dtype=p.dtype, device=p.device)
                     for p, group, _ in _states(optimizer)])
    return lrs / (second_moment(optimizer).clamp(min=0).sqrt() + eps)


def log_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of log|a| and log|b| over the coordinates where both are non-zero."""
    a, b = torch.as_tensor(a).reshape(-1).double(), torch.as_tensor(b).reshape(-1).double()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    keep = (a != 0) & (b != 0) & torch.isfinite(a) & torch.isfinite(b)
    if keep.sum() < 3:
        raise ValueError("need at least 3 coordinates where both are non-zero and finite")
    la, lb = a[keep].abs().log(), b[keep].abs().log()
    return float(torch.corrcoef(torch.stack([la, lb]))[0, 1])


class StateRecorder:
    r"""Wrap an optimizer class or factory so that a run loop's optimizer can be inspected.

    ``rec = StateRecorder(optim.AdaGrad, record=effective_lr)`` is itself a factory: pass it as the
    ``method`` of :func:`optlib.run.minimize` or :func:`optlib.run.train`. The optimizer it builds is
    kept in ``rec.optimizer``; after every step ``record(optimizer)`` (a tensor) is appended to
    ``rec.history`` (nothing is recorded when ``record=None``). ``rec.stacked()`` returns the
    history as one tensor of shape (steps, ...). A new run with the same recorder starts a new history.
    """

    def __init__(self, method, record: Callable | None = effective_lr):
        if not callable(method):
            raise TypeError(f"method must be an optimizer class or factory, got {method!r}")
        if record is not None and not callable(record):
            raise TypeError(f"record must be callable or None, got {record!r}")
        self.method, self.record = method, record
        inner = getattr(method, "func", method)
        self.__name__ = getattr(inner, "__name__", type(inner).__name__)
        self.optimizer: torch.optim.Optimizer | None = None
        self.history: list[torch.Tensor] = []

    def __call__(self, params, **hyperparams) -> torch.optim.Optimizer:
        optimizer = self.method(params, **hyperparams)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"method(...) must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer, self.history = optimizer, []
        original = optimizer.step

        def step(*args, **kwargs):
            out = original(*args, **kwargs)
            if self.record is not None:
                self.history.append(torch.as_tensor(self.record(optimizer)).detach().clone())
            return out

        optimizer.step = step
        return optimizer

    def stacked(self) -> torch.Tensor:
        """The recorded history as one tensor of shape (steps, ...)."""
        if not self.history:
            raise ValueError("nothing recorded yet: run an optimizer built by this recorder first")
        return torch.stack(self.history)


def replay_gradients(method, gradients, *, x0=None, record: Callable | None = effective_lr,
                     bounds: tuple[float, float] | None = None,
                     **hyperparams) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Feed a prescribed gradient sequence to an optimizer and watch what it does.

    ``gradients`` has shape (steps, d): row t is handed to ``method([x], **hyperparams)`` as the
    gradient of step t, whatever x is (weight decay, if any, is still added by the optimizer from
    x). This isolates an optimizer's bookkeeping from any loss: constant gradients, a sudden change
    of scale, pure noise. ``x0`` (default zeros) is the start. ``bounds=(low, high)`` projects x
    onto the box [low, high] after every step (clamping each coordinate), which makes the replay
    the projected online method on the linear losses f_t(x) = g_t·x, as in Reddi, Kale and
    Kumar's counterexample to Adam. Returns ``(path, records)``: the
    iterates, shape (steps + 1, d), and ``record(optimizer)`` after every step stacked,
    shape (steps, ...), or None when ``record=None``.
    """
    gradients = torch.as_tensor(gradients)
    if gradients.ndim != 2 or gradients.shape[0] == 0 or not torch.is_floating_point(gradients):
        raise ValueError(f"gradients must be a non-empty float tensor of shape (steps, d), got {tuple(gradients.shape)}")
    x0 = torch.zeros(gradients.shape[1], dtype=gradients.dtype) if x0 is None else torch.as_tensor(x0, dtype=gradients.dtype)
    if x0.shape != gradients.shape[1:]:
        raise ValueError(f"x0 must have shape ({gradients.shape[1]},), got {tuple(x0.shape)}")
    if bounds is not None:
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}")
        low, high = (_validate._number(name, b) for name, b in zip(("low", "high"), bounds))
        if not low < high:
            raise ValueError(f"bounds must have low < high, got {bounds!r}")
    x = x0.detach().clone().to(gradients.device).requires_grad_(True)
    optimizer = method([x], **hyperparams)
    path, records = [x.detach().clone()], []
    for g in gradients:
        x.grad = g.clone()
        optimizer.step()
        if bounds is not None:
            with torch.no_grad():
                x.clamp_(low, high)
        path.append(x.detach().clone())
        if record is not None:
            records.append(torch.as_tensor(record(optimizer)).detach().clone())
    return torch.stack(path), (torch.stack(records) if record is not None else None)


def adam_l2_mean_field(noise_std, *, steps: int, lr: float, weight_decay: float, betas=(0.9, 0.999),
                       eps: float = 1e-8, x0: float = 1.0) -> torch.Tensor:
    r"""Mean-field prediction of Adam + L2 on weights whose data gradient is pure noise.

    A weight whose gradient is :math:`\lambda x + \sigma\xi_t` (``weight_decay`` λ, zero-mean
    noise ξ of variance 1) is replaced by its mean: Adam runs on the mean gradient λx while the
    noise adds its variance σ² to the second moment,

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\lambda x_{t-1},\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)(\sigma^2 + \lambda^2 x_{t-1}^2),\quad
        x_t = x_{t-1} - \alpha\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \varepsilon},

    so the decay per step is about :math:`\alpha\lambda x/\sqrt{\sigma^2 + \lambda^2\overline{x^2}}`:
    no noise, a step of about α whatever λ is; much noise, almost no decay. ``noise_std`` holds one
    σ per column; returns the predicted mean weight, shape (steps + 1, len(noise_std)), from ``x0``.
    With σ = 0 it is Adam itself on the penalty alone.
    """
    sigma = torch.as_tensor(noise_std, dtype=torch.float64).reshape(-1)
    if sigma.numel() == 0 or not torch.isfinite(sigma).all() or (sigma < 0).any():
        raise ValueError(f"noise_std must be non-empty, finite and >= 0, got {noise_std!r}")
    steps = _validate.positive_int("steps", steps)
    _validate.at_least("lr", lr, 0.0)
    _validate.at_least("weight_decay", weight_decay, 0.0)
    _validate.at_least("eps", eps, 0.0)
    from optlib.optim.adaptive import _validate_betas

    beta1, beta2 = _validate_betas(betas)
    x = torch.full_like(sigma, float(x0))
    m, v = torch.zeros_like(sigma), torch.zeros_like(sigma)
    path = [x]
    for t in range(1, steps + 1):
        mean_grad = weight_decay * x
        m = beta1 * m + (1 - beta1) * mean_grad
        v = beta2 * v + (1 - beta2) * (sigma**2 + mean_grad**2)
        x = x - lr * (m / (1 - beta1**t)) / (torch.sqrt(v / (1 - beta2**t)) + eps)
        path.append(x)
    return torch.stack(path)
