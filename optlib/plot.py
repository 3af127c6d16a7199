"""Every figure of the book: contours with optimizer paths, loss curves, lines, bars, histograms, images.

Each function draws on ``ax`` (or a new figure) and returns the axes, so cells can combine them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

#: Widest figure, in inches: at ``figure.dpi`` 100 it is 760 pixels, which the book's content
#: column shows at full size at 1280 px (tools/static/course.css), so a 10-point label is about
#: 14 pixels tall on the page. A wider figure would be shrunk to fit and its text with it.
PAGE_WIDTH = 7.6
#: At most this many panels side by side; more panels go on more rows.
MAX_COLUMNS = 3

#: The book's matplotlib rcParams, applied by :func:`use_book_style`.
BOOK_STYLE = {
    "figure.figsize": (6.0, 3.8),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply the book's matplotlib defaults (done once when this module is imported)."""
    plt.rcParams.update(BOOK_STYLE)


use_book_style()


def figure_size(ncols: int = 1, nrows: int = 1, width: float | None = None, height: float | None = None):
    """``(width, height)`` in inches of a figure of ``nrows`` x ``ncols`` panels that fits the page.

    One panel is 6 inches wide; two or three share :data:`PAGE_WIDTH`. Raises ``ValueError`` for a
    width beyond the page or more than :data:`MAX_COLUMNS` panels per row: their text would be
    shrunk below legibility when the page scales the image down.
    """
    for name, value in (("ncols", ncols), ("nrows", nrows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if ncols > MAX_COLUMNS:
        raise ValueError(
            f"at most {MAX_COLUMNS} panels fit side by side on the page, got ncols={ncols}: "
            "use more rows (nrows)"
        )
    width = width if width is not None else (6.0 if ncols == 1 else PAGE_WIDTH)
    if not 0 < width <= PAGE_WIDTH:
        raise ValueError(
            f"a figure is at most PAGE_WIDTH = {PAGE_WIDTH} inches wide (the page column), "
            f"got width={width}: use fewer panels per row"
        )
    height = height if height is not None else (3.4 if ncols > 1 else 3.8) * nrows
    if not height > 0:
        raise ValueError(f"height must be positive, got {height}")
    return width, height


def subplots(ncols: int = 1, nrows: int = 1, *, width: float | None = None, height: float | None = None, **kwargs):
    """``plt.subplots`` sized for the book page (:func:`figure_size`), with constrained layout."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figure_size(ncols, nrows, width, height), layout="constrained",
                             **kwargs)
    return fig, axes


def _axes(ax, **kwargs):
    return ax if ax is not None else subplots(**kwargs)[1]


def _numpy(values, dtype=float) -> np.ndarray:
    """``values`` (numbers, arrays, tensors on any device, or lists of 0-d tensors) as a NumPy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    elif isinstance(values, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in values):
        values = [v.detach().cpu() if isinstance(v, torch.Tensor) else v for v in values]
    return np.asarray(values, dtype=dtype)


def _as_path(p) -> np.ndarray:
    from optlib.run import Trace

    if isinstance(p, Trace):
        return p.path()
    return _numpy(p)


def _labelled(items) -> list[tuple[str, object]]:
    """Accept ``{label: item}`` or a sequence of items that have a ``name``."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        return list(items.items())
    if not isinstance(items, Sequence) or isinstance(items, (str, np.ndarray, torch.Tensor)):
        items = [items]
    return [(getattr(item, "name", f"run {i}"), item) for i, item in enumerate(items)]


def grid_values(fn, bounds=None, resolution: int = 200):
    """Evaluate a 2-D function on a ``resolution``² grid; returns ``(X, Y, Z)`` arrays."""
    bounds = bounds or fn.bounds
    xs = torch.linspace(*bounds[0], resolution, dtype=torch.float64)
    ys = torch.linspace(*bounds[1], resolution, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = fn(torch.stack([X, Y], -1))
    return X.numpy(), Y.numpy(), _numpy(Z, dtype=None)


def contour(fn, *, ax=None, bounds=None, levels: int = 30, resolution: int = 200, paths=None,
            mark_critical: bool = True, title: str | None = None, filled: bool = True):
    """Contour plot of a 2-D test function, with optimizer paths (Traces or (k, 2) arrays) on top.

    Steep functions (``fn.log_levels``) get log-spaced levels above their minimum value.
    """
    if getattr(fn, "dim", 2) != 2:
        raise ValueError(f"contour needs a 2-D function, got dim={fn.dim}")
    ax = _axes(ax)
    X, Y, Z = grid_values(fn, bounds, resolution)
    if getattr(fn, "log_levels", False):
        floor = fn.min_value if fn.min_value is not None else Z.min()
        gap = Z - floor
        lv = np.logspace(np.log10(max(gap.min(), 1e-3) + 1e-3), np.log10(gap.max()), levels) + floor
    else:
        lv = np.linspace(Z.min(), Z.max(), levels)
    (ax.contourf if filled else ax.contour)(X, Y, Z, levels=lv, cmap="viridis", alpha=0.75 if filled else 1.0)
    if filled:
        ax.contour(X, Y, Z, levels=lv, colors="k", linewidths=0.3, alpha=0.5)
    if mark_critical:
        for pts, marker, label in ((getattr(fn, "minima", None), "*", "minimum"),
                                   (getattr(fn, "saddles", None), "X", "saddle")):
            if pts is not None and len(pts):
                pts = _numpy(pts, dtype=None)
                ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=140, c="white", edgecolors="k", zorder=5, label=label)
    for label, path in _labelled(paths):
        xy = _as_path(path)
        ax.plot(xy[:, 0], xy[:, 1], "-o", ms=2.5, lw=1.3, label=label, zorder=4)
        ax.scatter(xy[:1, 0], xy[:1, 1], c="k", s=25, zorder=6)
    b = bounds or fn.bounds
    ax.set(xlim=b[0], ylim=b[1], xlabel="$x_1$", ylabel="$x_2$", title=title or getattr(fn, "name", ""))
    ax.grid(False)
    if paths is not None or mark_critical:
        ax.legend(loc="upper right", fontsize=8, frameon=True)
    return ax


def surface(fn, *, ax=None, bounds=None, resolution: int = 80, path=None, elev: float = 30, azim: float = -60,
            title: str | None = None):
    """3-D surface of a 2-D function, optionally with a path drawn on it."""
    if ax is None:
        fig = plt.figure(figsize=(5.5, 4.2), layout="constrained")
        ax = fig.add_subplot(projection="3d")
    X, Y, Z = grid_values(fn, bounds, resolution)
    ax.plot_surface(X, Y, Z, cmap="viridis", alpha=0.85, linewidth=0)
    if path is not None:
        xy = _as_path(path)
        with torch.no_grad():
            z = _numpy(fn(torch.as_tensor(xy)), dtype=None)
        ax.plot(xy[:, 0], xy[:, 1], z, "r-o", ms=2, zorder=10)
    ax.view_init(elev=elev, azim=azim)
    ax.set(xlabel="$x_1$", ylabel="$x_2$", zlabel="f", title=title or getattr(fn, "name", ""))
    return ax


def loss_curves(traces, *, ax=None, key: str = "loss", x: str = "step", logy: bool = True, logx: bool = False,
                optimum: float | None = None, title: str | None = None, ylabel: str | None = None):
    """Plot ``trace.<key>`` (loss, grad_norm, lr) against step or wall time for each trace.

    ``optimum`` subtracts a known minimum so a log axis shows f − f* (the convergence rate).
    Non-finite values and values beyond ``1e100`` (a diverged run) are left out of the line:
    near float64's limit matplotlib's log axis overflows and loses the whole curve.
    """
    if x not in ("step", "time"):
        raise ValueError(f"x must be 'step' or 'time', got {x!r}")
    ax = _axes(ax)
    for label, trace in _labelled(traces):
        y = _numpy(getattr(trace, key))
        if optimum is not None:
            y = y - optimum
        xs = np.arange(len(y)) if x == "step" else _numpy(trace.time, dtype=None)
        ok = np.isfinite(y) & (np.abs(y) <= 1e100) & ((y > 0) if logy else True)
        ax.plot(xs[ok], y[ok], label=label)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    default_y = {"loss": "loss", "grad_norm": "gradient norm", "lr": "learning rate"}.get(key, key)
    if optimum is not None and key == "loss":
        default_y = "f(x) − f*"
    ax.set(xlabel="step" if x == "step" else "seconds", ylabel=ylabel or default_y, title=title)
    ax.legend()
    return ax


def lines(x, ys, *, ax=None, logx: bool = False, logy: bool = False, xlabel: str = "", ylabel: str = "",
          title: str | None = None, marker: str | None = None, legend: bool = True,
          styles: Mapping[str, str] | None = None):
    """Generic line plot of ``ys`` (``{label: values}`` or one array) against ``x``.

    ``styles`` maps some labels to a matplotlib format string (``"--"`` dashed, ``"k:"`` black
    dotted, ``"o"`` points only), e.g. for reference slopes drawn next to measurements.
    """
    ax = _axes(ax)
    items = ys.items() if isinstance(ys, Mapping) else [(None, ys)]
    for label, y in items:
        fmt = (styles[label],) if styles and label in styles else ()
        kw = {"marker": marker} if marker is not None else {}
        ax.plot(_numpy(x, dtype=None), _numpy(y), *fmt, label=label, **kw)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    # only what is given, so a second call that adds lines to ``ax`` keeps the labels and title
    ax.set(**{k: v for k, v in dict(xlabel=xlabel, ylabel=ylabel, title=title).items() if v})
    if legend and isinstance(ys, Mapping):
        ax.legend()
    return ax


def bars(values: Mapping[str, Mapping[str, float]], *, ax=None, ylabel: str = "", title: str | None = None,
         logy: bool = False, legend: bool = True):
    """Grouped bars: ``values`` is ``{group: {series: value}}``; one cluster of bars per group on the
    x-axis, one colour per series (a series missing from a group leaves its slot empty)."""
    if not isinstance(values, Mapping) or not values or not all(isinstance(v, Mapping) for v in values.values()):
        raise TypeError("values must be a non-empty {group: {series: value}} mapping")
    ax = _axes(ax)
    series = list(dict.fromkeys(name for group in values.values() for name in group))
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i, group in enumerate(values.values()) if name in group]
        heights = [float(group[name]) for group in values.values() if name in group]
        ax.bar(xs, heights, width=width, label=name)
    ax.set_xticks(range(len(values)), list(values))
    ax.grid(axis="x", visible=False)
    if logy:
        ax.set_yscale("log")
    ax.set(**{k: v for k, v in dict(ylabel=ylabel, title=title).items() if v})
    if legend and len(series) > 1:
        ax.legend()
    return ax


def schedules(schedules, steps: int, *, base_lr: float = 1.0, ax=None, logy: bool = False,
              title: str | None = "Learning-rate schedules"):
    """Draw ``base_lr · schedule(t)`` for t < ``steps``; ``schedules`` is ``{label: schedule}`` or one schedule.

    A schedule is a callable ``step -> factor`` (see :mod:`optlib.schedules`).
    """
    from optlib import schedules as _schedules

    if callable(schedules):
        schedules = {getattr(schedules, "__name__", "schedule"): schedules}
    if not isinstance(schedules, Mapping) or not schedules:
        raise TypeError("schedules must be a callable or a non-empty {label: schedule} mapping")
    ys = {label: _schedules.values(fn, steps, base_lr) for label, fn in schedules.items()}
    return lines(np.arange(steps), ys, ax=ax, logy=logy, xlabel="step", ylabel="learning rate", title=title)


def histogram(values, *, ax=None, bins: int = 40, xlabel: str = "", title: str | None = None,
              density: bool = True, logy: bool = False):
    """Overlaid histograms of ``{label: values}`` (or one array)."""
    ax = _axes(ax)
    items = values.items() if isinstance(values, Mapping) else [(None, values)]
    for label, v in items:
        ax.hist(_numpy(v).ravel(), bins=bins, density=density, alpha=0.55, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel="density" if density else "count", title=title)
    if isinstance(values, Mapping):
        ax.legend()
    return ax


def images(imgs, *, titles: Sequence[str] | None = None, ncols: int = 10, cmap: str = "gray",
           scale: float = 1.1, suptitle: str | None = None):
    """A grid of small images, e.g. digits (k, 8, 8) or a linear classifier's class templates."""
    imgs = _numpy(imgs)
    if imgs.ndim != 3:
        raise ValueError(f"images expects an array of shape (k, h, w), got {imgs.shape}")
    k = len(imgs)
    ncols = min(ncols, k)
    nrows = -(-k // ncols)
    scale = min(scale, PAGE_WIDTH / ncols)  # the grid never grows past the page column
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + (0.4 if suptitle else 0)),
                             layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            ax.imshow(imgs[i], cmap=cmap)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return axes


def arrows(origin, vectors, *, ax=None, labels: Sequence[str] | None = None, scale: float = 1.0,
           colors: Sequence[str] | None = None):
    """Arrows from ``origin`` (2,) along each row of ``vectors`` (k, 2) times ``scale``, e.g. Hessian eigenvectors."""
    ax = _axes(ax)
    origin = _numpy(origin).reshape(2)
    vectors = _numpy(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != 2:
        raise ValueError(f"vectors must have shape (k, 2), got {vectors.shape}")
    if labels is not None and len(labels) != len(vectors):
        raise ValueError(f"got {len(labels)} labels for {len(vectors)} vectors")
    colors = colors or ["tab:red", "tab:orange", "tab:pink", "tab:brown"]
    for i, v in enumerate(vectors):
        color = colors[i % len(colors)]
        ax.annotate("", xy=tuple(origin + scale * v), xytext=tuple(origin),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=2), zorder=7)
        if labels is not None:
            ax.plot([], [], color=color, lw=2, label=labels[i])  # legend entry for the arrow
    if labels is not None:
        ax.legend(loc="upper right", fontsize=8, frameon=True)
    return ax


def scatter(points, labels=None, *, ax=None, names: Mapping | None = None, s: float = 8.0,
            title: str | None = None, xlabel: str | None = None, ylabel: str | None = None):
    """Scatter plot of ``points`` (n, 2), coloured by integer ``labels`` (n,) when given.

    The axes are labelled x₁ and x₂ unless ``xlabel``/``ylabel`` say otherwise.

    ``names`` maps a label to its legend entry (e.g. ``{0: "minimum 1", -1: "none"}``); label −1
    is drawn in grey. Points of one label share a colour across calls.
    """
    ax = _axes(ax)
    pts = _numpy(points)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {pts.shape}")
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=s)
    else:
        labels = _numpy(labels, dtype=None).astype(int).reshape(-1)
        if len(labels) != len(pts):
            raise ValueError(f"got {len(labels)} labels for {len(pts)} points")
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for value in np.unique(labels):
            mask = labels == value
            color = "lightgrey" if value < 0 else cycle[value % len(cycle)]
            name = (names or {}).get(int(value), str(value))
            ax.scatter(pts[mask, 0], pts[mask, 1], s=s, color=color, label=name, linewidths=0)
        ax.legend(loc="upper right", fontsize=8, frameon=True, markerscale=2)
    ax.set(xlabel="$x_1$" if xlabel is None else xlabel, ylabel="$x_2$" if ylabel is None else ylabel, title=title)
    return ax


def contour_grid(xs, ys, Z, *, ax=None, levels: int = 30, xlabel: str = "", ylabel: str = "",
                 title: str | None = None, mark=None, colorbar: bool = True):
    """Filled contour plot of values ``Z`` given on the grid ``ys × xs`` (rows follow y).

    ``Z`` has shape ``(len(ys), len(xs))``, as :func:`optlib.landscape.slice_2d` returns for a 2-D
    slice of a loss; ``mark`` is an optional point ``(x, y)`` drawn as a white star (the slice's centre).
    """
    xs, ys, Z = (_numpy(a) for a in (xs, ys, Z))
    if xs.ndim != 1 or ys.ndim != 1 or Z.shape != (len(ys), len(xs)):
        raise ValueError(f"Z must have shape (len(ys), len(xs)) = {(len(ys), len(xs))}, got {Z.shape}")
    ax = _axes(ax)
    filled = ax.contourf(xs, ys, Z, levels=levels, cmap="viridis", alpha=0.85)
    # lines at the inner levels only: a line at the minimum level traces flat regions (e.g. a zero loss) raggedly
    ax.contour(xs, ys, Z, levels=filled.levels[1:-1], colors="k", linewidths=0.3, alpha=0.5)
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, shrink=0.9)
    if mark is not None:
        ax.scatter([mark[0]], [mark[1]], marker="*", s=140, c="white", edgecolors="k", zorder=5)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(False)
    return ax


def lr_sweep(rows: Sequence[Mapping[str, tuple]], columns: Mapping[str, Sequence[str]], *,
             ylabels: Sequence[str], logy: Sequence[bool] | None = None, chosen: Mapping[str, float] | None = None,
             diverged: Mapping[str, Sequence[float]] | None = None, hlines: Mapping[int, float] | None = None,
             row_height: float = 2.4, xlabel: str = "learning rate"):
    """A learning-rate sweep on a grid of panels: one row per metric, one column per group of methods.

    ``rows[r]`` maps each method to ``(learning rates, values)`` of metric r (NaN: not drawn);
    ``columns`` maps a group's title to its methods (e.g. the SGD family and the adaptive methods),
    so no panel holds more than a few lines. A method keeps its colour in every panel; each
    column's legend sits above its top panel, where it covers no data. ``chosen[method]`` marks
    that method's chosen learning rate with a large filled marker; ``diverged[method]`` lists
    learning rates at which it diverged, drawn as crosses on the top edge of its panels;
    ``hlines[r]`` draws a dotted reference line in row r. Rows share their y axis, columns their
    x axis. Returns ``(fig, axes)`` with axes of shape (rows, columns).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("lr_sweep needs at least one row of curves")
    if len(ylabels) != len(rows):
        raise ValueError(f"one y label per row expected ({len(rows)}), got {len(ylabels)}")
    logy = list(logy) if logy is not None else [False] * len(rows)
    if len(logy) != len(rows):
        raise ValueError(f"one logy flag per row expected ({len(rows)}), got {len(logy)}")
    names = [name for group in columns.values() for name in group]
    for r, curves in enumerate(rows):
        missing = [name for name in names if name not in curves]
        if missing:
            raise KeyError(f"row {r} has no curve for {missing}")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {name: colors[i % len(colors)] for i, name in enumerate(names)}
    fig, axes = subplots(len(columns), len(rows), height=row_height * len(rows) + 0.6, sharey="row",
                         sharex="col", squeeze=False)
    for c, (title, group) in enumerate(columns.items()):
        for r, curves in enumerate(rows):
            ax = axes[r, c]
            for k, name in enumerate(group):
                lrs, values = (_numpy(v) for v in curves[name])
                ax.plot(lrs, values, marker="o", ms=4, color=color[name], label=name)
                if chosen and name in chosen:
                    at = np.flatnonzero(np.isclose(lrs, chosen[name]))
                    ax.plot(lrs[at], values[at], marker="o", ms=9, color=color[name], ls="none")
                if diverged and diverged.get(name):
                    # one height per method, so crosses at the same learning rate do not hide each other
                    ax.plot(_numpy(diverged[name]), np.full(len(diverged[name]), 0.96 - 0.06 * k), marker="x", ms=7,
                            mew=2, color=color[name], ls="none", transform=ax.get_xaxis_transform(),
                            clip_on=False)
            if hlines and r in hlines:
                ax.axhline(hlines[r], color="k", ls=":", lw=1)
            ax.set_xscale("log")
            if logy[r]:
                ax.set_yscale("log")
            if c == 0:
                ax.set_ylabel(ylabels[r])
            if r == len(rows) - 1:
                ax.set_xlabel(xlabel)
        handles, labels = axes[0, c].get_legend_handles_labels()
        if diverged and any(diverged.get(name) for name in group):
            handles.append(plt.Line2D([], [], marker="x", mew=2, color="grey", ls="none"))
            labels.append("diverged")
        axes[0, c].legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, title=title,
                          fontsize=9, title_fontsize=10)
    return fig, axes


def ecdf(samples: Mapping[str, Sequence[float]], *, ax=None, logx: bool = False, xlabel: str = "",
         ylabel: str = "fraction of samples", title: str | None = None, legend_loc: str = "lower right"):
    """Empirical distribution functions of ``{label: values}``: for each x, the fraction of values <= x.

    A step curve per label; one curve left of another means smaller values more often (for a
    loss: better). NaN values are dropped.
    """
    if not isinstance(samples, Mapping) or not samples:
        raise TypeError("samples must be a non-empty {label: values} mapping")
    ax = _axes(ax)
    for label, values in samples.items():
        v = np.sort(_numpy(values).ravel())
        v = v[~np.isnan(v)]
        if len(v) == 0:
            raise ValueError(f"{label!r} has no value to draw")
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=label)
    if logx:
        ax.set_xscale("log")
        # labels on the minor ticks of a short log axis run into each other
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, ylim=(0, 1.02))
    ax.legend(loc=legend_loc)
    return ax
