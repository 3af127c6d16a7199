"""The Colab set-up cell: one template, rendered with the repository URL from _config.yml.

``python -m tools.colab`` writes it as the first code cell of every chapter and every solutions
notebook (the exercise notebooks inherit it from solutions/ through ``make.py exercises``); the
tests check that every chapter's first code cell is exactly this text. It sets torch's thread
count (``optlib.set_num_threads``: one thread, the count the stored outputs were made with, so a
learner's kernel rounds as the book's did and a busy CPU does not stall it), and its one printed
line, ``optlib.describe_runtime()``, says whether a GPU was found and that the chapters stay on the CPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import yaml

from tools import executed_notebooks

ROOT = Path(__file__).resolve().parent.parent

TEMPLATE = '''\
# Set-up. In Colab this installs optlib from the course repository, keeping Colab's
# own torch, numpy and ipywidgets (--no-deps: no runtime restart); elsewhere it skips
# the install.
import sys

if "google.colab" in sys.modules:
    REPOSITORY = "{url}"
    %pip install --quiet --no-deps "optlib @ git+{{REPOSITORY}}@{branch}"
import optlib

# One torch thread, as the book computed its outputs (OPTLIB_NUM_THREADS=n overrides).
optlib.set_num_threads()
print(optlib.describe_runtime())'''


def repository() -> dict:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]


def colab_cell_source() -> str:
    repo = repository()
    return TEMPLATE.format(url=repo["url"], branch=repo.get("branch", "main"))


def first_code_cell(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def write_colab_cell(path: Path) -> bool:
    """Make the first code cell of ``path`` the template; return True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    source = colab_cell_source()
    cell = first_code_cell(nb)
    if cell is not None and cell.source == source:
        return False
    if cell is not None and cell.source.startswith("# Set-up."):
        cell.source = source
    else:
        index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)
    return True


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or executed_notebooks()
    for p in paths:
        if write_colab_cell(p):
            print(f"{p}: Colab cell written (re-execute it with make.py execute)")
