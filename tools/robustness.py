"""Re-run nbval on the notebooks under perturbed floating-point environments.

A stored output counts only if another machine reproduces it. Another machine differs from this
one in which SIMD kernels ATen picks, which code path MKL takes, and how many threads split a
reduction; each of those changes the rounding of a float32 sum in its last bits, and a chaotic
experiment (a training run near divergence, a metric printed to more digits than it has) turns
those bits into different printed numbers. Each environment below makes one of those changes on
*this* machine, so ``nbval`` under it fails cells whose outputs depend on one CPU's rounding (a
pass samples rounding: it catches a fragile cell with high probability, it cannot prove one robust):

    python -m tools.robustness                         the CI passes (CI_PASSES) on chapters/ and solutions/
    python -m tools.robustness --env all                 each environment in turn
    python -m tools.robustness --env aten-avx2 chapters/07_schedules_stability.ipynb

``make.py test`` runs the CI passes after the plain one; ``make.py check-robust`` is this command.
The CI passes are two single perturbations, not one combined: a chaotic cell's output is a
coin toss under each perturbation, and a combination of two is just one more toss (one cell of
chapter 5 failed under each single perturbation and passed under both at once).
On a CPU without AVX-512, ``aten-avx2`` is what ATen picks anyway, so it perturbs nothing there.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tools import ROOT, executed_notebooks

ENVIRONMENTS: dict[str, dict[str, str]] = {
    # ATen's portable kernels instead of the AVX2/AVX-512 ones: other vector widths, other sums
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    # MKL's conditional numerical reproducibility set to its most portable code path
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
    # two threads per kernel: reductions split in two; the set-up cell reads OPTLIB_NUM_THREADS
    "threads-2": {"OMP_NUM_THREADS": "2", "OPTLIB_NUM_THREADS": "2"},
}
# the passes the test command runs, one after the other (threads-2 needs one worker: twice the time)
CI_PASSES = ("aten-default", "mkl-compatible")


def notebooks() -> list[str]:
    return [str(p.relative_to(ROOT)) for p in executed_notebooks()]


def run_nbval(name: str, paths: list[str], workers: int | None = None) -> tuple[int, float]:
    """Run nbval on ``paths`` under environment ``name``; return (pytest's exit code, seconds).

    ``workers``: pytest-xdist processes (0: none); by default two, or one where each kernel runs
    two threads, so that the kernels never ask for more threads than the two cores of CI."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **ENVIRONMENTS[name]}
    if workers is None:
        workers = 1 if env.get("OPTLIB_NUM_THREADS", "1") != "1" else 2
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-n", str(workers), "--dist", "loadfile",
               "-q", "--tb=short", "-rf", *paths]
    start = time.perf_counter()
    print(f"[robustness] {name}: {' '.join(f'{k}={v}' for k, v in ENVIRONMENTS[name].items())}: "
          f"nbval on {len(paths)} notebook(s)", flush=True)
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    return code, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make.py check-robust", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", choices=[*ENVIRONMENTS, "all"],
                        help=f"environment to run under (repeatable; 'all' = every one; default: {', '.join(CI_PASSES)})")
    parser.add_argument("paths", nargs="*", help="notebooks (default: every chapter and solutions notebook)")
    args = parser.parse_args(argv)
    names = args.env or list(CI_PASSES)
    if "all" in names:
        names = list(ENVIRONMENTS)
    paths = args.paths or notebooks()
    missing = [p for p in paths if not (ROOT / p).is_file() or not p.endswith(".ipynb")]
    if missing:
        parser.error(f"not a notebook: {', '.join(missing)}")
    results = {name: run_nbval(name, paths) for name in names}
    for name, (code, seconds) in results.items():
        print(f"[robustness] {name}: {'passed' if code == 0 else f'FAILED (pytest exit {code})'} in {seconds:.0f} s",
              flush=True)
    return max(code for code, _ in results.values())


if __name__ == "__main__":
    sys.exit(main())
