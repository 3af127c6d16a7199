"""Run loops that record what happened: loss, gradient norm, learning rate, parameters, time.

Two loops share one :class:`Trace`: :func:`minimize` for a test function of a parameter
vector, :func:`train` for a model on a data set. Both take the optimizer as a class or
factory ``method(params, **hyperparams)``, so comparing methods is a one-line change.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from optlib import _validate
from optlib.data import Dataset, minibatches
from optlib.device import get_device
from optlib.stability import NonFiniteLossError, clip_grad_norm_

#: What a run does when the loss turns NaN/inf (``on_nonfinite``): raise, or stop and say why in the trace.
NONFINITE_ACTIONS = ("raise", "stop")
__all__ = ["NONFINITE_ACTIONS", "NonFiniteLossError", "Trace", "check_same_device", "minimize", "train"]


@dataclass
class Trace:
    """What a run recorded; entry k of ``loss``/``grad_norm``/``lr``/``time`` describes step k.

    ``metrics`` holds evaluations made every few steps, as ``{name: [(step, value), ...]}``.
    ``stopped`` says why a run ended early (``None`` when it ran all its steps).
    """

    name: str = ""
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    params: list[np.ndarray] = field(default_factory=list)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    stopped: str | None = None
    steps: int = 0  # optimizer steps taken


    @property
    def final_loss(self) -> float:
        """The last recorded loss."""
        return self.loss[-1]

    def path(self) -> np.ndarray:
        """The recorded parameter vectors as an array of shape (records, d)."""
        if not self.params:
            raise ValueError("this trace recorded no parameters (record_params=False)")
        return np.stack(self.params)

    def steps_to(self, target: float) -> int | None:
        """First step at which the loss is <= ``target``, or None if never."""
        for k, value in enumerate(self.loss):
            if value <= target:
                return k
        return None

    def time_to(self, target: float) -> float | None:
        """Seconds until the loss first reached ``target``, or None if never."""
        k = self.steps_to(target)
        return None if k is None else self.time[k]

    def metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of a recorded metric, e.g. ``trace.metric("test_acc")``."""
        if name not in self.metrics:
            raise KeyError(f"no metric {name!r}; recorded: {sorted(self.metrics)}")
        steps, values = zip(*self.metrics[name])
        return np.array(steps), np.array(values)

    def __repr__(self) -> str:
        end = f", stopped={self.stopped!r}" if self.stopped else ""
        return f"Trace(name={self.name!r}, steps={self.steps}, final_loss={self.final_loss:.4g}{end})"


def _build_optimizer(method, params, hyperparams):
    if not callable(method):
        raise TypeError(f"method must be an optimizer class or factory, got {method!r}")
    optimizer = method(params, **hyperparams)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"method(...) must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


def _method_name(method) -> str:
    inner = getattr(method, "func", method)  # functools.partial
    return getattr(inner, "__name__", type(inner).__name__)


def _grad_norm(params) -> float:
    grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
    if not grads:
        return float("nan")
    return torch.linalg.vector_norm(torch.cat(grads)).item()


class _Recorder:
    """Appends to a Trace and enforces the NaN/inf policy."""

    def __init__(self, trace: Trace, on_nonfinite: str):
        self.trace, self.on_nonfinite = trace, _validate.one_of("on_nonfinite", on_nonfinite, NONFINITE_ACTIONS)
        self.start = time.perf_counter()

    def record(self, step: int, loss: float, grad_norm: float, lr: float, params=None) -> bool:
        """Record one entry; return False if the run must stop."""
        t = self.trace
        t.loss.append(loss)
        t.grad_norm.append(grad_norm)
        t.lr.append(lr)
        t.time.append(time.perf_counter() - self.start)
        if params is not None:
            t.params.append(params)
        if math.isfinite(loss):
            return True
        last = next((v for v in reversed(t.loss[:-1]) if math.isfinite(v)), None)
        message = (f"loss became {loss} at step {step}"
                   + (f" (last finite loss {last:.4g})" if last is not None else "")
                   + "; lower the learning rate or clip the gradients")
        if self.on_nonfinite == "raise":
            raise NonFiniteLossError(message)
        t.stopped = message
        return False


def minimize(fn: Callable[[torch.Tensor], torch.Tensor], x0, method, steps: int = 100, *,
             noise_std: float = 0.0, generator: torch.Generator | None = None, record_params: bool = True,
             clip_grad_norm: float | None = None, scheduler: Callable | None = None, on_nonfinite: str = "raise",
             progress: bool = False, name: str | None = None, device=None, dtype: torch.dtype = torch.float64,
             **hyperparams) -> Trace:
    """Minimize ``fn`` from ``x0`` with ``method(params, **hyperparams)`` for ``steps`` steps.

    ``noise_std > 0`` adds N(0, noise_std²) noise to every gradient, a stand-in for minibatch
    noise. ``clip_grad_norm=c`` clips every gradient to norm at most c (the trace records the norm
    before clipping). ``scheduler`` is a factory ``optimizer -> LRScheduler`` stepped after every
    step, as in :func:`train`. ``on_nonfinite='raise'`` raises :class:`NonFiniteLossError` when the loss turns NaN/inf;
    ``'stop'`` ends the run there and says why in ``trace.stopped``.
    The trace has ``steps + 1`` entries: the start point and the point after every step.
    The run happens on ``device`` when given; otherwise on ``x0``'s device when ``x0`` is a tensor,
    and on the CPU when it is a list or an array (``device=optlib.get_device()`` opts in to the GPU).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    _validate.at_least("noise_std", noise_std, 0.0)
    if clip_grad_norm is not None:
        _validate.positive("clip_grad_norm", clip_grad_norm)
    if device is not None:
        device = get_device(device)
    else:
        device = x0.device if isinstance(x0, torch.Tensor) else torch.device("cpu")
    x = torch.as_tensor(x0, dtype=torch.float64).detach().clone().reshape(-1)
    x = x.to(device=device, dtype=dtype).requires_grad_(True)
    optimizer = _build_optimizer(method, [x], hyperparams)
    lr_scheduler = scheduler(optimizer) if scheduler is not None else None
    calls_backward = getattr(optimizer, "closure_calls_backward", True)
    if (noise_std or clip_grad_norm) and not calls_backward:
        raise ValueError(f"noise_std and clip_grad_norm are not supported by {type(optimizer).__name__}")
    trace = Trace(name=name or _method_name(method))
    recorder = _Recorder(trace, on_nonfinite)
    seen: dict[str, float] = {}

    def closure():
        optimizer.zero_grad()
        loss = fn(x)
        if loss.ndim != 0:
            raise ValueError(f"fn must return a scalar, got shape {tuple(loss.shape)}")
        if not calls_backward:
            seen.setdefault("loss", loss.item())
            return loss
        loss.backward()
        if noise_std:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x.grad.add_(noise, alpha=noise_std)
        seen.setdefault("loss", loss.item())
        seen.setdefault("grad_norm", _grad_norm([x]))
        if clip_grad_norm is not None:
            clip_grad_norm_([x], clip_grad_norm)
        return loss

    bar = _progress(steps, progress, trace.name)
    for step in range(steps):
        seen.clear()
        start_point = x.detach().cpu().numpy().copy() if record_params else None
        lr = optimizer.param_groups[0].get("lr", math.nan)
        optimizer.step(closure)
        grad_norm = seen["grad_norm"] if "grad_norm" in seen else _grad_norm([x])
        trace.steps = step + 1
        bar.update(1)
        if not recorder.record(step, seen["loss"], grad_norm, lr, start_point):
            break
        if lr_scheduler is not None:
            lr_scheduler.step()
    bar.close()
    if trace.stopped is None:
        x_final = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            final = fn(x_final)
            final.backward()
        recorder.record(steps, final.item(), _grad_norm([x_final]), optimizer.param_groups[0].get("lr", math.nan),
                        x.detach().cpu().numpy().copy() if record_params else None)
    return trace


def train(model: nn.Module, loss_fn: Callable, data: Dataset, method, *, steps: int | None = None,
          epochs: int | None = None, batch_size: int | None = None, eval_every: int | None = None,
          generator: torch.Generator | None = None, scheduler: Callable | None = None,
          clip_grad_norm: float | None = None, drop_last: bool = False, on_nonfinite: str = "raise",
          progress: bool = False, name: str | None = None, constraints=None, **hyperparams) -> Trace:
    """Train ``model`` on ``data`` with ``method(model.parameters(), **hyperparams)``.

    Give ``steps`` or ``epochs``; ``batch_size=None`` means full-batch gradient descent.
    Every ``eval_every`` steps (and at the end) the trace records ``train_loss`` (full training
    set), ``train_acc`` and ``test_acc`` in ``trace.metrics``. ``scheduler`` is a factory
    ``optimizer -> LRScheduler`` stepped after every optimizer step (e.g.
    ``lambda opt: schedules.scheduler(opt, schedules.cosine(steps))``). ``clip_grad_norm=c`` clips
    the gradients to global norm at most c before each step; ``trace.grad_norm`` holds the norms
    before clipping, which is what monitoring needs. ``drop_last=True`` skips the short last
    minibatch of each epoch (whose gradient is noisier than the others').
    ``constraints=`` an :class:`optlib.constrained.Constraints` trains under constraints: the
    optimizer minimizes its formulation's loss (``trace.loss`` still records the plain loss) and the
    multipliers move after the steps; ``trace.metrics`` gains ``violation`` (max(abs(h), max(g, 0))) and
    ``multipliers`` (λ then μ, a list) at every step.
    Training runs where the model's parameters are; the data must be on the same device
    (``data.to(...)`` moves them), else a ``ValueError`` says so before any step.
    """
    from optlib.models import accuracy

    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps or epochs")
    n = len(data.X_train)
    batch_size = n if batch_size is None else _validate.positive_int("batch_size", batch_size)
    if drop_last and batch_size > n:
        raise ValueError(f"drop_last with batch_size {batch_size} > {n} training examples leaves no minibatch")
    batches_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    total = _validate.positive_int("steps", steps) if steps is not None else \
        _validate.positive_int("epochs", epochs) * batches_per_epoch
    if eval_every is not None:
        _validate.positive_int("eval_every", eval_every)
    if clip_grad_norm is not None:
        _validate.positive("clip_grad_norm", clip_grad_norm)
    check_same_device(model, data)
    if constraints is not None:
        from optlib.constrained import Constraints

        if not isinstance(constraints, Constraints):
            raise TypeError(f"constraints must be an optlib.constrained.Constraints, got {type(constraints).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _build_optimizer(method, params, hyperparams)
    lr_scheduler = scheduler(optimizer) if scheduler is not None else None
    trace = Trace(name=name or _method_name(method))
    recorder = _Recorder(trace, on_nonfinite)

    def evaluate(step):
        model.eval()
        with torch.no_grad():
            scores = model(data.X_train)
            trace.metrics.setdefault("train_loss", []).append((step, float(loss_fn(scores, data.y_train))))
            trace.metrics.setdefault("train_acc", []).append((step, accuracy(scores, data.y_train)))
            trace.metrics.setdefault("test_acc", []).append((step, accuracy(model, data.X_test, data.y_test)))
        model.train()

    bar = _progress(total, progress, trace.name)
    step = 0
    model.train()
    while step < total:
        for X, y in minibatches(data.X_train, data.y_train, batch_size, generator=generator,
                                shuffle=batch_size < n, drop_last=drop_last):
            if eval_every and step % eval_every == 0:
                evaluate(step)
            seen = {}

            def closure():
                optimizer.zero_grad()
                loss = loss_fn(model(X), y)
                seen.setdefault("loss", loss.item())
                if constraints is not None and torch.isfinite(loss):  # a NaN loss is the recorder's to report
                    loss = constraints.loss(loss, model)
                loss.backward()
                seen.setdefault("grad_norm", _grad_norm(params))
                if clip_grad_norm is not None:
                    clip_grad_norm_(params, clip_grad_norm)
                return loss

            lr = optimizer.param_groups[0].get("lr", math.nan)
            optimizer.step(closure)
            step += 1
            trace.steps = step
            bar.update(1)
            if not recorder.record(step - 1, seen["loss"], seen["grad_norm"], lr):
                break
            if constraints is not None:
                trace.metrics.setdefault("violation", []).append((step - 1, constraints.violation()))
                if step % constraints.update_every == 0:
                    constraints.formulation.update()
                lam, mu = constraints.formulation.multipliers()
                trace.metrics.setdefault("multipliers", []).append((step - 1, torch.cat([lam, mu]).tolist()))
            if lr_scheduler is not None:
                lr_scheduler.step()
            if step >= total:
                break
        if trace.stopped:
            break
    bar.close()
    if trace.stopped is None:
        evaluate(step)
    return trace


def check_same_device(model: nn.Module, data: Dataset) -> None:
    """Raise a ``ValueError`` naming both devices when ``data``'s tensors are not where ``model``'s parameters are."""
    param = next(model.parameters(), None)
    if param is None:
        return
    for tensor in (data.X_train, data.y_train, data.X_test, data.y_test):
        if isinstance(tensor, torch.Tensor) and tensor.device != param.device:
            raise ValueError(f"the data are on {tensor.device} but the model's parameters are on {param.device}: "
                             f"move one of them, e.g. data.to({str(param.device)!r}) or model.to({str(tensor.device)!r})")


def _progress(total: int, enabled: bool, desc: str):
    """A tqdm bar when asked for (long runs); a no-op otherwise, so notebooks print nothing."""
    if enabled:
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc)

    class _Silent:
        def update(self, n):
            pass

        def close(self):
            pass

    return _Silent()
