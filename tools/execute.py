"""Execute notebooks in place, the one way every committed output is produced.

Runs each notebook top to bottom in a fresh ``python3`` kernel from its own folder, stores
outputs and widget state, and prints the wall time per notebook. Used by ``make.py execute``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TIMEOUT_PER_CELL = 600


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    client = NotebookClient(nb, timeout=TIMEOUT_PER_CELL, kernel_name="python3", record_timing=False,
                            store_widget_state=True, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(nb, path)
    return elapsed


def main(paths: list[str]) -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    # one torch thread per kernel, as under `make.py test`, where two kernels share the cores:
    # the chapters' tensors are small, and the same thread count gives the same float rounding
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for p in paths:
        elapsed = execute(Path(p))
        print(f"{p}: executed in {elapsed:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
