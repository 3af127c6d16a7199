#!/usr/bin/env python3
"""The course's commands. Each sets up ./.venv itself (from requirements.txt) on first use.

    python3 make.py book      build the book into _build/html (prints the path)
    python3 make.py test      run every test: optlib unit tests, nbval, notebook checks, book build,
                              then nbval again under two perturbed floating-point environments
    python3 make.py check-robust [--env NAME|all] [NOTEBOOK ...]
                                             nbval under perturbed floating-point environments (tools/robustness.py)
    python3 make.py execute [NOTEBOOK ...]   re-execute notebooks in place (default: all chapters)
    python3 make.py colab-cell               write the Colab set-up cell into every chapter and solutions notebook
    python3 make.py lock                     refresh requirements.txt from the current .venv (less the
                                             test oracles of requirements-oracles.txt)
    python3 make.py exercises [NN_name ...]  generate exercises/ from solutions/ (stubs, no outputs), and
                                             each chapter's Exercises section and solutions title from them
    python3 make.py grade SUBMISSIONS_DIR [--out DIR] [--timeout SECONDS] [--gradescope] [--jobs N]
                                             grade a folder of submitted notebooks (JSON + CSV reports)
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

from tools import executed_notebooks

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".installed-from"


def _say(msg: str) -> None:
    print(f"[make.py] {msg}", flush=True)


def _run(*cmd, **kwargs) -> None:
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, **kwargs)
    if result.returncode:
        sys.exit(result.returncode)


def ensure_env() -> None:
    """Create .venv and install the pinned requirements and optlib, unless already done for these files."""
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + (ROOT / "requirements-oracles.txt").read_bytes()
                            + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and PY.exists():
        return
    start = time.perf_counter()
    if not PY.exists():
        _say(f"creating virtual environment {VENV}")
        venv.create(VENV, with_pip=True)
    _say("installing requirements.txt and optlib (first run only, about 2 minutes)")
    _run(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt")
    # test oracles whose declared dependencies would replace torch (see the file's header)
    _run(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "-r", "requirements-oracles.txt")
    _run(PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-e", ".")
    STAMP.write_text(digest)
    _say(f"environment ready in {time.perf_counter() - start:.0f} s")


def book(args) -> None:
    ensure_env()
    _run(BIN / "jupyter-book", "build", ".", "-W", "-n", "--keep-going", *args)
    _say(f"book built: {ROOT / '_build' / 'html' / 'index.html'}")


def test(args) -> None:
    """Every test, then nbval again under two perturbed floating-point environments (tools/robustness.py).

    The second pass is what makes a stored output count: it must be reproduced by kernels that
    round differently, as another CPU or a GPU would. With arguments (a selection of tests) only
    the selection runs, without the second pass."""
    ensure_env()
    start = time.perf_counter()
    # two xdist workers each run a notebook kernel; one torch thread per kernel avoids contention
    # and matches the thread count `make.py execute` used to produce the stored outputs
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([str(PY), "-m", "pytest", "-n", "2", "--dist", "loadfile", *args], cwd=ROOT, env=env)
    _say(f"tests finished in {time.perf_counter() - start:.0f} s")
    code = result.returncode
    if not args:
        robust = subprocess.run([str(PY), "-m", "tools.robustness"], cwd=ROOT).returncode
        code = code or robust
    _say(f"{'all passed' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s")
    sys.exit(code)


def execute(args) -> None:
    ensure_env()
    paths = args or [str(p.relative_to(ROOT)) for p in executed_notebooks()]
    _run(PY, "-m", "tools.execute", *paths)


def check_robust(args) -> None:
    ensure_env()
    _run(PY, "-m", "tools.robustness", *args)


def colab_cell(args) -> None:
    ensure_env()
    _run(PY, "-m", "tools.colab", *args)


def lock(args) -> None:
    ensure_env()
    frozen = subprocess.run([str(PY), "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    def name(line: str) -> str:
        return line.split("==")[0].split(" @ ")[0].strip().lower().replace("_", "-")

    oracles = {name(line) for line in (ROOT / "requirements-oracles.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    frozen = [line.replace("+cpu", "") for line in frozen if not line.startswith("optlib") and name(line) not in oracles]
    header = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("#")]
    (ROOT / "requirements.txt").write_text("\n".join(header + frozen) + "\n")
    _say(f"requirements.txt: {len(frozen)} pins")


def exercises(args) -> None:
    ensure_env()
    # the solutions' title cells and the chapters' Exercises sections first: exercises/ is made from solutions/
    _run(PY, "-m", "tools.exercise_sections", *args)
    _run(PY, "-m", "optlib.grading.exercises", *args)


def grade(args) -> None:
    ensure_env()
    # the judge replays each test as the sandboxed kernel recorded it: same hash seed, same path
    _run(PY, "-m", "optlib.grading.batch", *args, env={**os.environ, "PYTHONHASHSEED": "0"})


COMMANDS = {"book": book, "test": test, "check-robust": check_robust, "execute": execute, "colab-cell": colab_cell, "lock": lock, "exercises": exercises, "grade": grade}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        sys.exit(2)
    COMMANDS[sys.argv[1]](sys.argv[2:])
