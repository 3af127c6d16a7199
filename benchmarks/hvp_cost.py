"""Time a Hessian-vector product against a gradient of an MLP's loss, and the full Hessian of a tiny MLP.

The course claims that a Hessian-vector product Hv costs a small constant number of gradient
evaluations (at most about 4), whatever the number P of parameters, while the full P × P Hessian
costs P of them (and P² numbers of memory). This script measures it on the CPU, one thread by
default, for an MLP of about 1e5 parameters (``--width 280``: 64-280-280-10, tanh, cross-entropy
on a batch of random inputs and labels). Each timed call starts from the parameters and the batch,
forward pass included:

- ``gradient``: ``optlib.grad.flat_gradient`` (one forward and one backward pass), the unit;
- ``hvp reverse``: ``optlib.curvature.model_hvp(..., method="reverse")``, double backpropagation;
- ``hvp fwd-over-rev``: ``model_hvp(..., method="forward_over_reverse")``, ``torch.func.jvp`` of
  ``torch.func.grad``;
- ``ggn-vp``: ``optlib.curvature.ggn_vp``, Jᵀ H_L J v (a jvp, a loss-space product and a vjp);
- ``hvp, graph kept``: one product of a map from ``optlib.curvature.hessian_matvec`` built once,
  i.e. one backward pass through the stored graph of the gradient: what each step of CG or
  Lanczos pays.

The operations are timed in rounds, each round running every operation once in a rotated order
(so background load hits all alike); the table gives the median time of each over the rounds, the
10th-90th percentile, its ratio to the gradient's median, and the 10th-90th percentile of the
ratios within a round (a measure of noise), then the fastest time of each and its ratio to the
fastest gradient. The claim "at most 4 gradients" is called held when 90% of the per-round ratios
are at most 4, failed when 90% exceed it, and undecided otherwise.
``--clock cpu`` times the CPU time of the calling thread instead of the wall clock, far less
disturbed by other work on a shared machine (with one torch thread, that thread runs the kernels).
A second table builds the full Hessian of a tiny MLP (``--tiny-width``) with
``torch.autograd.functional.hessian`` (one backward pass per row) and ``torch.func.hessian``
(``jacfwd(jacrev)``, vectorized), in units of one gradient and one HVP of the same tiny model; the
last line extrapolates to the large model: P products of the kept graph, and P² numbers.

    .venv/bin/python benchmarks/hvp_cost.py --repeats 30 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from optlib import curvature, models
from optlib.grad import flat_gradient
from optlib.preconditioning import flat_loss


def quantile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def problem(width: int, batch: int, dtype, seed: int = 0):
    """An MLP 64-width-width-10 (tanh) with its batch (X, y) and a random unit direction v."""
    g = torch.Generator().manual_seed(seed)
    model = models.MLP((64, width, width, 10), activation="tanh", generator=g, dtype=dtype)
    X = torch.randn(batch, 64, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (batch,), generator=g)
    n = sum(p.numel() for p in model.parameters())
    v = torch.randn(n, generator=g, dtype=dtype)
    return model, X, y, v / v.norm()


def operations(model, X, y, v) -> dict:
    """name -> a call that does one of the timed operations from scratch."""
    loss_fn = nn.CrossEntropyLoss()
    kept = curvature.hessian_matvec(model, loss_fn, (X, y))
    return {
        "gradient": lambda: flat_gradient(model, loss_fn, X, y),
        "hvp reverse": lambda: curvature.model_hvp(model, loss_fn, (X, y), v, method="reverse"),
        "hvp fwd-over-rev": lambda: curvature.model_hvp(model, loss_fn, (X, y), v, method="forward_over_reverse"),
        "ggn-vp": lambda: curvature.ggn_vp(model, loss_fn, (X, y), v),
        "hvp, graph kept": lambda: kept(v),
    }


#: ``--clock``: wall-clock time, or the CPU time of the calling thread (which runs torch's kernels
#: when torch uses one thread), which other processes on a busy machine disturb far less.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def time_rounds(calls: dict, repeats: int, warmup: int, clock=time.perf_counter) -> dict:
    """Seconds of each call in each of ``repeats`` rounds (after ``warmup`` untimed rounds)."""
    names = list(calls)
    times = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            calls[name]()
            elapsed = clock() - start
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def check_products(model, X, y, v) -> float:
    """Largest relative difference between the two HVPs (they compute the same vector)."""
    loss_fn = nn.CrossEntropyLoss()
    a = curvature.model_hvp(model, loss_fn, (X, y), v, method="reverse")
    b = curvature.model_hvp(model, loss_fn, (X, y), v, method="forward_over_reverse")
    return ((a - b).abs().max() / a.abs().max()).item()


def full_hessian_table(width: int, batch: int, dtype, repeats: int, clock) -> dict:
    """Median seconds of a gradient, an HVP and two ways to the full Hessian of a tiny MLP."""
    g = torch.Generator().manual_seed(1)
    model = models.MLP((8, width, 3), activation="tanh", generator=g, dtype=dtype)
    X, y = torch.randn(batch, 8, generator=g, dtype=dtype), torch.randint(0, 3, (batch,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    fn, theta = flat_loss(model, loss_fn, X, y)
    v = torch.randn(len(theta), generator=g, dtype=dtype)
    calls = {
        "gradient": lambda: flat_gradient(model, loss_fn, X, y),
        "hvp reverse": lambda: curvature.model_hvp(model, loss_fn, (X, y), v),
        "autograd.functional.hessian": lambda: torch.autograd.functional.hessian(fn, theta),
        "torch.func.hessian": lambda: torch.func.hessian(fn)(theta),
    }
    H = torch.autograd.functional.hessian(fn, theta)
    error = ((H @ v - curvature.model_hvp(model, loss_fn, (X, y), v)).abs().max() / (H @ v).abs().max()).item()
    times = time_rounds(calls, repeats, warmup=1, clock=clock)
    return dict(params=len(theta), error=error, **{name: statistics.median(t) for name, t in times.items()})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=280,
                        help="hidden width of the large MLP (default 280: ~1e5 parameters)")
    parser.add_argument("--batch", type=int, default=256, help="examples in the batch (default 256)")
    parser.add_argument("--tiny-width", type=int, default=16,
                        help="hidden width of the tiny MLP (default 16: 195 parameters)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds before timing (default 3)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall-clock time (default) or the thread's CPU time (needs --threads 1)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or min(args.width, args.batch, args.tiny_width) < 1:
        parser.error("--repeats, --width, --batch and --tiny-width must be >= 1, --warmup >= 0")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures the calling thread only: use it with --threads 1")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    model, X, y, v = problem(args.width, args.batch, dtype)
    n = len(v)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), {args.dtype}; "
          f"MLP 64-{args.width}-{args.width}-10 (tanh), {n:,} parameters, batch {args.batch}, cross-entropy")
    clock_name = "wall-clock" if args.clock == "wall" else "thread CPU"
    print(f"{clock_name} time, {args.repeats} rounds (after {args.warmup} warm-up rounds); "
          f"the two HVPs differ by {check_products(model, X, y, v):.1e} (relative)")
    clock = CLOCKS[args.clock]
    times = time_rounds(operations(model, X, y, v), args.repeats, args.warmup, clock)
    unit = statistics.median(times["gradient"])
    best = min(times["gradient"])
    header = (f"{'operation':<18}{'median ms':>10}{'  p10-p90 ms':<15}{'/ gradient':>10}{'  per-round p10-p90':<20}"
              f"{'best ms':>8}{'/ best':>8}")
    print(header)
    print("-" * len(header))
    spreads = {}
    for name, t in times.items():
        per_round = [a / b for a, b in zip(t, times["gradient"])]
        spreads[name] = (quantile(per_round, 0.1), quantile(per_round, 0.9))
        spread = f"{quantile(t, 0.1) * 1e3:.2f}-{quantile(t, 0.9) * 1e3:.2f}"
        ratios = f"{spreads[name][0]:.2f}-{spreads[name][1]:.2f}"
        print(f"{name:<18}{1e3 * statistics.median(t):>10.2f}  {spread:<13}{statistics.median(t) / unit:>10.2f}"
              f"  {ratios:<18}{1e3 * min(t):>8.2f}{min(t) / best:>8.2f}")
    for name in ("hvp reverse", "hvp fwd-over-rev"):
        low, high = spreads[name]
        verdict = "holds" if high <= 4 else "fails" if low > 4 else "is undecided (per-round ratios straddle 4)"
        print(f"'an HVP costs at most 4 gradients' {verdict} for {name}: "
              f"{statistics.median(times[name]) / unit:.2f} (per-round ratios {low:.2f}-{high:.2f})")

    tiny = full_hessian_table(args.tiny_width, args.batch, dtype, max(3, args.repeats // 3), clock)
    print()
    print(f"full Hessian of a tiny MLP 8-{args.tiny_width}-3: {tiny['params']} parameters "
          f"(H v vs model_hvp: {tiny['error']:.1e} relative)")
    header = f"{'operation':<30}{'median ms':>11}{'/ gradient':>12}{'/ hvp':>9}"
    print(header)
    print("-" * len(header))
    for name in ("gradient", "hvp reverse", "autograd.functional.hessian", "torch.func.hessian"):
        print(f"{name:<30}{1e3 * tiny[name]:>11.2f}{tiny[name] / tiny['gradient']:>12.1f}"
              f"{tiny[name] / tiny['hvp reverse']:>9.1f}")
    hvp_kept = statistics.median(times["hvp, graph kept"])
    gigabytes = n * n * torch.finfo(dtype).bits / 8 / 1e9
    print(f"the large model's Hessian by {n:,} products of the kept graph: about {n * hvp_kept:.0f} s "
          f"and {gigabytes:.0f} GB to store it ({n:,}^2 {args.dtype} numbers)")


if __name__ == "__main__":
    main()
