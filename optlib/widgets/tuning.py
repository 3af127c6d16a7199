"""The widget of the chapter "Choosing an optimizer": one optimizer, one learning rate, its curves."""
from __future__ import annotations

from typing import Callable, Mapping

import ipywidgets as w
import torch

from optlib import _validate, plot, tuning
from optlib.data import Dataset
from optlib.widgets import dropdown, int_slider, interactive, log_slider

__all__ = ["draw_training", "training_widget"]


def draw_training(make_model: Callable[[torch.Generator], torch.nn.Module], loss_fn: Callable, data: Dataset,
                  method, *, name: str, lr: float, seed: int, epochs: int, batch_size: int | None,
                  target: float | None = None):
    """Train with :func:`optlib.tuning.train_and_validate` and draw the curves one reads to diagnose a run.

    Left: the training loss on the full training set (log axis; ``target`` as a dotted line);
    right: training and validation accuracy, whose gap is the overfitting. The right panel's title
    gives the final validation loss or says the run diverged. Returns the two axes.
    """
    r = tuning.train_and_validate(make_model, loss_fn, data, method, epochs=epochs, batch_size=batch_size,
                                  seed=seed, eval_every=5, name=name, lr=lr)
    steps, train_loss = r.trace.metric("train_loss")
    fig, (left, right) = plot.subplots(2, height=3.6)
    plot.lines(steps, {"training loss": train_loss}, ax=left, logy=True, xlabel="step", ylabel="loss",
               title=f"{name}, lr = {lr:.3g}")
    if target is not None:
        left.axhline(target, color="k", ls=":", lw=1)
    accuracy = {"training": r.trace.metric("train_acc")[1], "validation": r.trace.metric("test_acc")[1]}
    title = "diverged" if r["diverged"] else f"final validation loss {r['val_loss']:.3f}"
    plot.lines(steps, accuracy, ax=right, xlabel="step", ylabel="accuracy", title=title)
    right.legend(loc="lower right")
    return left, right


def training_widget(make_model: Callable[[torch.Generator], torch.nn.Module], loss_fn: Callable, data: Dataset,
                    methods: Mapping[str, object], *, optimizer: str = "Adam", lr: float = 0.01, epochs: int = 5,
                    batch_size: int | None = 64, target: float | None = None) -> w.VBox:
    """A menu of ``methods`` (``{name: optimizer class or factory}``), a log slider for the learning
    rate (1e-4 to 10) and a seed slider (0-9), above :func:`draw_training` for ``epochs`` epochs."""
    if optimizer not in methods:
        raise ValueError(f"optimizer must be one of {list(methods)}, got {optimizer!r}")
    _validate.positive("lr", lr)
    _validate.positive_int("epochs", epochs)

    def draw(optimizer, lr, seed):
        return draw_training(make_model, loss_fn, data, methods[optimizer], name=optimizer, lr=lr, seed=seed,
                             epochs=epochs, batch_size=batch_size, target=target)

    return interactive(
        draw,
        optimizer=dropdown("optimizer", list(methods), optimizer),
        lr=log_slider("learning rate", lr, 1e-4, 10.0),
        seed=int_slider("seed", 0, 0, 9),
    )
