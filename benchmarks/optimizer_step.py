"""Time one optimizer step of optlib against torch.optim's default, foreach and fused paths, next to the memory floor.

Only ``step()`` is timed: the gradients are filled once, before timing, and left in place, so the
figure is the cost of the update rule itself (no forward, backward or zero_grad). The parameters
form an MLP (weight matrices and bias vectors, ``--sizes`` parameters in all).

Implementations, each on its own copy of the same parameters and gradients:

- ``optlib``: the readable single-tensor loop (``implementation="single"``);
- ``optlib foreach``: the same update over all tensors at once (``implementation="foreach"``);
- ``optlib compiled``: the update compiled by TorchInductor into one fused loop per tensor
  (``implementation="compiled"``); its first step compiles, and the script prints how long that
  took (not part of the timings);
- ``torch``: torch.optim with its defaults. On CPU that is the single-tensor loop
  (``_default_to_fused_or_foreach`` turns ``foreach`` on only for CUDA-like devices); on CUDA it
  is the foreach path;
- ``torch foreach``: ``foreach=True``;
- ``torch fused``: ``fused=True``, one kernel per tensor doing the whole update (torch 2.13 has it
  for SGD, Adam and AdamW on CPU and CUDA).

All are timed in alternating blocks (the order rotates every block), so background load hits
them alike; the table gives the median milliseconds per step and the ratio to ``torch fused``.

**The floor.** An update reads and writes whole tensors: SGD with momentum reads p, g and the
velocity and writes p and the velocity (5 numbers per parameter); Adam and AdamW read p, g, m, v
and write p, m, v (7; ``optlib.step_cost`` counts what each implementation really moves).
No implementation can beat (bytes moved) / (memory bandwidth) once the tensors no longer fit in
cache, and the script measures that bandwidth on the same machine with an in-place axpy
(``optlib.step_cost.bandwidth``), best of several. ``floor ms`` is that bound, and ``x floor``
how far each implementation is above it (below 1 where the tensors fit in cache).

    .venv/bin/python benchmarks/optimizer_step.py --sizes 1M 10M --threads 2 --repeats 20
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from optlib.step_cost import (IMPLEMENTATIONS, NUMBERS_PER_PARAMETER, OPTIMIZERS, bandwidth, block_seconds, make_optimizer,
                              mlp_parameters)


def parse_size(text: str) -> int:
    """'1M' -> 1_000_000, '250k' -> 250_000, '12345' -> 12345."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1].lower(), 1)
    number = float(text[:-1] if scale != 1 else text)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"a size must be > 0, got {text!r}")
    return int(number * scale)


def quantile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def compare(name: str, n_params: int, device, dtype, repeats: int, steps_per_block: int, warmup: int) -> dict:
    optimizers, params = {}, {}
    for implementation in IMPLEMENTATIONS:
        copy = mlp_parameters(n_params, dtype=dtype, device=device, seed=0)
        opt = make_optimizer(name, implementation, copy)
        if opt is not None:
            optimizers[implementation], params[implementation] = opt, copy
    compile_seconds = 0.0
    for step in range(max(warmup, 2)):  # creates the state (buffers), compiles, warms caches and allocators
        for label, opt in optimizers.items():
            start = time.perf_counter()
            opt.step()
            if label == "optlib compiled" and step < 2:  # SGD's first step creates the velocities uncompiled
                compile_seconds += time.perf_counter() - start
    times = {label: [] for label in optimizers}
    labels = list(optimizers)
    for block in range(repeats):
        for label in labels[block % len(labels):] + labels[:block % len(labels)]:
            times[label].append(block_seconds(optimizers[label], steps_per_block))
    reference = params["optlib"]
    diff = {label: max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                       for a, b in zip(params[label], reference)) for label in params}
    return dict(optimizer=name, params=sum(p.numel() for p in params["optlib"]),
                ms={label: 1e3 * statistics.median(t) for label, t in times.items()},
                spread={label: (1e3 * quantile(t, 0.1), 1e3 * quantile(t, 0.9)) for label, t in times.items()},
                max_rel_diff=diff, compile_seconds=compile_seconds)


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
    for device_name in devices:
        device = torch.device(device_name)
        rate = bandwidth(device, dtype)
        print(f"\n{device.type}: axpy bandwidth {rate / 1e9:.1f} GB/s; median ms per step "
              f"(x fused: the ratio to torch's fused step; x floor: to the memory-traffic floor)")
        header = f"{'optimizer':<14}{'params':>11}{'floor ms':>10}" + "".join(f"{label:>16}" for label in IMPLEMENTATIONS)
        print(header)
        print("-" * len(header))
        for n in args.sizes:
            for name in args.optimizers:
                r = compare(name, n, device, dtype, args.repeats, args.steps, args.warmup)
                floor = 1e3 * NUMBERS_PER_PARAMETER[name] * r["params"] * torch.empty((), dtype=dtype).element_size() / rate
                cells = [f"{r['ms'][label]:.3f}" if label in r["ms"] else "-" for label in IMPLEMENTATIONS]
                print(f"{name:<14}{r['params']:>11,}{floor:>10.3f}" + "".join(f"{c:>16}" for c in cells))
                fused = r["ms"].get("torch fused")
                ratios = [f"{r['ms'][label] / fused:.2f} x fused" if fused and label in r["ms"] else "" for label in
                          IMPLEMENTATIONS]
                print(f"{'':<35}" + "".join(f"{c:>16}" for c in ratios))
                print(f"{'':<35}" + "".join(f"{r['ms'][label] / floor:>8.2f} x floor" if label in r["ms"] else f"{'':>16}"
                                            for label in IMPLEMENTATIONS))
                worst = max(r["max_rel_diff"].values())
                print(f"{'':<35}largest relative difference from optlib's iterates: {worst:.1e}; "
                      f"compiling took {r['compile_seconds']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
