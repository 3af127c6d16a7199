"""Shared helpers for tests that read the committed notebooks and the table of contents."""
from __future__ import annotations

from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def toc_entries() -> list[str]:
    """Every page of _toc.yml (without suffix), in order: chapters and the learners'/instructors' pages."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [entry["file"] for part in toc["parts"] for entry in part["chapters"]]


def toc_chapters() -> list[str]:
    """Chapter notebooks (chapters/NN_name, without suffix) in the order of _toc.yml."""
    return [entry for entry in toc_entries() if entry.startswith("chapters/")]


def notebook_paths(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).glob("*.ipynb"))


def read(path: Path):
    return nbformat.read(path, as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def shows_widget(cell) -> bool:
    return any(WIDGET_VIEW in out.get("data", {}) for out in cell.get("outputs", []))


def output_models(nb) -> list[dict]:
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return [m for m in state.values() if m.get("model_name") == "OutputModel"]
