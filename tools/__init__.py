"""The project's tools: notebook execution, the Colab cell, the robustness passes, the book's extensions."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the folders whose notebooks are executed and committed with their outputs
NOTEBOOK_DIRS = ("chapters", "solutions")


def executed_notebooks() -> list[Path]:
    """Every notebook of chapters/ and solutions/, chapters first, each folder in name order."""
    return [p for d in NOTEBOOK_DIRS for p in sorted((ROOT / d).glob("*.ipynb"))]
