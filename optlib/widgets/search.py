"""The widget of chapter 1 (optimization as search): random local search with a step-size slider."""
from __future__ import annotations

from typing import Callable

import ipywidgets as w
import torch

from optlib import plot, search
from optlib.widgets import int_slider, interactive, log_slider


def local_search_widget(loss_fn: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                        accuracy: Callable[[torch.Tensor], tuple[float, float]] | None = None, *,
                        step_size: float = 1e-2, trials: int = 1000, seed: int = 6) -> w.VBox:
    """Random local search on ``loss_fn`` from ``start``, with sliders for the step size and the trials.

    The figure shows the loss of every proposal (dots) and the best loss so far (line) on a log
    axis. ``accuracy(W)``, when given, returns the (train, test) accuracy of parameters ``W``: the
    title shows the final test accuracy and a line below prints both. Every run draws its
    proposals from ``torch.Generator().manual_seed(seed)``, so a setting always gives the same run.
    """
    def draw(step_size, trials):
        run = search.random_local_search(loss_fn, start, trials=trials, step_size=step_size,
                                         generator=torch.Generator().manual_seed(seed))
        title = f"step {step_size:.2g}"
        report = f"accepted {run.accepted} of {trials} proposals"
        if accuracy is not None:
            train_acc, test_acc = accuracy(run.best)
            title += f": test accuracy {test_acc:.3f}"
            report += f"; train accuracy {train_acc:.3f}, test accuracy {test_acc:.3f}"
        ax = plot.lines(range(1, trials + 1), {"proposal": run.losses, "best so far": run.best_so_far},
                        styles={"proposal": "."}, logy=True, xlabel="loss evaluation", ylabel="loss",
                        title=title)
        ax.legend(loc="lower left")
        print(report)

    return interactive(draw, step_size=log_slider("step size", step_size, 1e-4, 1.0),
                       trials=int_slider("trials", trials, 100, 2000, 100))
