"""Time one optimizer step of optlib against torch.optim: SGD with momentum, Adam, AdamW.

Only ``step()`` is timed: the gradients are filled once, before timing, and left in place, so
the figure is the cost of the update rule itself (no forward, backward or zero_grad). The
parameters form an MLP (weight matrices and bias vectors, ``--sizes`` parameters in all).

torch.optim is used with its defaults, i.e. without ``foreach``/``fused``. What that default
means was checked in torch 2.13's source: ``torch.optim.sgd.sgd`` and ``torch.optim.adam.adam``
call ``torch.optim.optimizer._default_to_fused_or_foreach(params, ..., use_fused=False)``, which
turns ``foreach`` on only when every parameter lives on a device listed by
``torch.utils._foreach_utils._get_foreach_kernels_supported_devices()`` -- ``["cuda", "xpu",
"mtia", <privateuse1>]``, not ``"cpu"``. So on CPU torch runs its single-tensor for-loop
(``_single_tensor_sgd``/``_single_tensor_adam``), the same structure as optlib's update
functions; on CUDA it runs the multi-tensor ``_foreach_*`` kernels, which optlib does not use
(there the comparison shows what one kernel launch per operation and parameter costs).

optlib and torch are measured in alternating blocks (optlib first in even blocks, torch first
in odd ones), so background load hits both alike. The table gives the median time per step of
each, their ratio, and the spread of the per-block ratios (10th-90th percentile) as a measure
of noise. Both optimizers see the same gradients for the same number of steps; at the end the
script reports the largest difference between their parameters (0 on CPU: same operations in
the same order).

    .venv/bin/python benchmarks/optimizer_step.py --sizes 1M 10M --device cpu --repeats 20
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from optlib.optim import SGD, Adam, AdamW

OPTIMIZERS = {
    # name: (optlib class, torch class, hyperparameters shared by both)
    "SGD-momentum": (SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9)),
    "Adam": (Adam, torch.optim.Adam, dict(lr=1e-3)),
    "AdamW": (AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=1e-2)),
}


def parse_size(text: str) -> int:
    """'1M' -> 1_000_000, '250k' -> 250_000, '12345' -> 12345."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1].lower(), 1)
    number = float(text[:-1] if scale != 1 else text)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"a size must be > 0, got {text!r}")
    return int(number * scale)


def mlp_shapes(n_params: int, layers: int = 4) -> list[tuple[int, ...]]:
    """Shapes of an MLP with ``layers`` square layers of width h (weights (h, h) and biases (h,)), ~n_params in all."""
    width = max(1, round((-1 + math.sqrt(1 + 4 * n_params / layers)) / 2))  # layers * (h^2 + h) = n
    return [shape for _ in range(layers) for shape in ((width, width), (width,))]


def make_params(shapes, device, dtype, seed: int):
    """Parameters with random values and random gradients already in ``.grad``."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=g, dtype=dtype).to(device).requires_grad_(True)
        p.grad = torch.randn(shape, generator=g, dtype=dtype).to(device)
        params.append(p)
    return params


def clone(params):
    copies = []
    for p in params:
        q = p.detach().clone().requires_grad_(True)
        q.grad = p.grad.clone()
        copies.append(q)
    return copies


def time_block(optimizer, steps: int, device) -> float:
    """Seconds per step over ``steps`` consecutive steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def quantile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def compare(name: str, n_params: int, device, dtype, repeats: int, steps_per_block: int, warmup: int) -> dict:
    ours_cls, theirs_cls, hyper = OPTIMIZERS[name]
    shapes = mlp_shapes(n_params)
    ours_p = make_params(shapes, device, dtype, seed=0)
    theirs_p = clone(ours_p)
    ours, theirs = ours_cls(ours_p, **hyper), theirs_cls(theirs_p, **hyper)
    for _ in range(warmup):  # creates the state (buffers) and warms caches and allocators
        ours.step()
        theirs.step()
    times = {"optlib": [], "torch": []}
    for block in range(repeats):
        order = (("optlib", ours), ("torch", theirs)) if block % 2 == 0 else (("torch", theirs), ("optlib", ours))
        for label, optimizer in order:
            times[label].append(time_block(optimizer, steps_per_block, device))
    ratios = [a / b for a, b in zip(times["optlib"], times["torch"])]
    diff = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(ours_p, theirs_p))
    return dict(optimizer=name, params=sum(math.prod(s) for s in shapes),
                optlib=statistics.median(times["optlib"]), torch=statistics.median(times["torch"]),
                ratio=statistics.median(times["optlib"]) / statistics.median(times["torch"]),
                ratio_lo=quantile(ratios, 0.1), ratio_hi=quantile(ratios, 0.9), max_rel_diff=diff)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size("1M"), parse_size("10M")],
                        help="numbers of parameters, e.g. 1M 10M (default)")
    parser.add_argument("--device", nargs="+", default=None,
                        help="devices to time on (default: cpu, and cuda when available)")
    parser.add_argument("--repeats", type=int, default=20, help="alternating blocks per implementation (default 20)")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per block (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (default 3)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS))
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--repeats and --steps must be >= 1, --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.dtype}, "
          f"{args.repeats} alternating blocks of {args.steps} steps (after {args.warmup} warm-up steps)")
    header = (f"{'device':<7}{'optimizer':<14}{'params':>11}{'optlib ms':>11}{'torch ms':>10}"
              f"{'ratio':>7}{'  ratio p10-p90':<17}{'max rel diff':>13}")
    print(header)
    print("-" * len(header))
    for device_name in devices:
        device = torch.device(device_name)
        for n in args.sizes:
            for name in args.optimizers:
                r = compare(name, n, device, dtype, args.repeats, args.steps, args.warmup)
                print(f"{device.type:<7}{name:<14}{r['params']:>11,}{1e3 * r['optlib']:>11.3f}{1e3 * r['torch']:>10.3f}"
                      f"{r['ratio']:>7.3f}  {r['ratio_lo']:.2f}-{r['ratio_hi']:.2f}{'':<6}{r['max_rel_diff']:>13.1e}",
                      flush=True)


if __name__ == "__main__":
    main()
