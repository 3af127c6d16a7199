"""The widget of the schedules chapter: shape a learning-rate schedule and train with it."""
from __future__ import annotations

import math

import ipywidgets as w
import torch

from optlib import losses, models, optim, plot, run, schedules
from optlib.data import Dataset
from optlib.widgets import dropdown, float_slider, int_slider, interactive, log_slider

#: The schedule shapes the widget offers.
KINDS = ("cosine", "constant", "step", "linear", "inverse sqrt", "exponential", "1/t")
__all__ = ["KINDS", "draw_schedule", "make_schedule", "schedule_widget"]


def make_schedule(kind: str, total: int, warmup: int, factor: float, steps_per_epoch: int) -> schedules.Schedule:
    """The schedule ``kind`` over ``total`` steps, after a linear warmup of ``warmup`` steps (0: none).

    ``factor`` is the final factor: cosine's minimum, linear's end value, the γ of step decay (every
    2 epochs), and the factor exponential and 1/t decay reach at the end of training (clipped
    to at least 1e-3). The inverse square root and 1/t start decaying after one epoch.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    body_steps = max(total - warmup, 1)
    final = max(factor, 1e-3)
    body = {
        "constant": lambda: schedules.constant(),
        "step": lambda: schedules.step_decay(2 * steps_per_epoch, final),
        "cosine": lambda: schedules.cosine(body_steps, min_factor=factor),
        "linear": lambda: schedules.linear(body_steps, 1.0, factor),
        "inverse sqrt": lambda: schedules.inverse_sqrt(steps_per_epoch),
        "exponential": lambda: schedules.exponential(final ** (1.0 / body_steps)),
        # (1 + T/tau)^-1 = final  <=>  tau = T / (1/final - 1)
        "1/t": lambda: schedules.inverse_time(body_steps / max(1.0 / final - 1.0, 1e-9)),
    }[kind]()
    return schedules.warmup_then(warmup, body) if warmup else body


def draw_schedule(data: Dataset, f_star: float, kind: str, warmup: int, factor: float, base_lr: float, *,
                  weight_decay: float = 1e-2, epochs: int = 10, batch_size: int = 32, seed: int = 1):
    """Minibatch SGD on L2-regularized softmax regression of ``data`` with the chosen schedule.

    The model is linear without bias (``data`` should carry a bias column), the objective is the
    mean cross-entropy plus ``weight_decay``/2 ‖W‖², whose minimum is ``f_star``. Left: the
    learning rate; right: the excess objective f − f* on the training set every 10 steps, or why
    the run stopped. Returns the two axes.
    """
    steps_per_epoch = math.ceil(len(data.X_train) / batch_size)
    total = epochs * steps_per_epoch
    schedule = make_schedule(kind, total, warmup, factor, steps_per_epoch)
    dtype = data.X_train.dtype
    model = models.LinearClassifier(data.num_features, data.num_classes, bias=False, init_scale=0.0, dtype=dtype)

    def objective(scores, y):
        return losses.softmax_loss(scores, y) + 0.5 * weight_decay * model.W.pow(2).sum()

    trace = run.train(model, objective, data, optim.SGD, epochs=epochs, batch_size=batch_size, eval_every=10,
                      lr=base_lr, generator=torch.Generator().manual_seed(seed), on_nonfinite="stop",
                      scheduler=lambda opt: schedules.scheduler(opt, schedule))
    fig, (left, right) = plot.subplots(2, height=3.6)
    plot.schedules({kind: schedule}, total, base_lr=base_lr, ax=left, logy=True, title="learning rate")
    if trace.stopped:
        right.set_title("diverged: " + trace.stopped[:40], fontsize=10)
    else:
        steps, values = trace.metric("train_loss")
        plot.lines(steps / steps_per_epoch, {kind: values - f_star}, ax=right, logy=True, xlabel="epoch",
                   ylabel="f − f*")
        right.set_title(f"final f − f* = {values[-1] - f_star:.2e}", fontsize=10)
    return left, right


def schedule_widget(data: Dataset, f_star: float, *, weight_decay: float = 1e-2, epochs: int = 10,
                    batch_size: int = 32) -> w.VBox:
    """A menu for the schedule and sliders for the warmup, the final factor and the base rate.

    Draws :func:`draw_schedule`; defaults: cosine, no warmup, final factor 0, base rate 0.8.
    """
    return interactive(
        lambda kind, warmup, factor, base_lr: draw_schedule(
            data, f_star, kind, warmup, factor, base_lr, weight_decay=weight_decay, epochs=epochs,
            batch_size=batch_size),
        kind=dropdown("schedule", KINDS, "cosine"),
        warmup=int_slider("warmup steps", 0, 0, 200, 10),
        factor=float_slider("final factor / γ", 0.0, 0.0, 1.0, 0.05),
        base_lr=log_slider("base lr", 0.8, 0.05, 5.0),
    )
