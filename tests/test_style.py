"""The page conventions of the executed notebooks (CONTRIBUTING.md, "Pages a reader can read").

The book's code column holds 88 characters at 1280 px (tools/static/course.css) and shows figures
up to ``optlib.plot.PAGE_WIDTH`` inches at 100 dpi at full size. These tests hold the notebooks of
chapters/ and solutions/ to that, before any browser is involved: code formatted by ruff at 88
columns (the configuration in pyproject.toml), printed lines that fit the column, figures that
the page does not have to shrink, short chapter cells, and widget cells whose drawing code lives
in optlib. tests/test_browser.py checks the rendered pages themselves.
"""

from __future__ import annotations

import ast
import base64
import struct
import subprocess
import sys

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from notebook_utils import ROOT, code_cells, notebook_paths, output_models, read, shows_widget
from optlib import plot

NOTEBOOKS = notebook_paths("chapters", "solutions")
CHAPTERS = notebook_paths("chapters")
ids = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]
chapter_ids = [str(p.relative_to(ROOT)) for p in CHAPTERS]

#: characters in a line of code or of printed output
COLUMNS = 88
#: lines in a code cell of a chapter, as ruff formats it; the logic of a longer cell belongs in optlib
CELL_LINES = 25
#: pixels: a figure this wide shows unshrunk in the content column at 1280 px
FIGURE_PIXELS = round(plot.PAGE_WIDTH * 100) + 20  # + what a tight bounding box may add


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_notebook_code_is_formatted_by_ruff():
    result = _ruff("format", "--check", "chapters", "solutions")
    assert result.returncode == 0, (
        "run `.venv/bin/ruff format chapters solutions` (then re-execute what changed):\n"
        + result.stdout[-3000:]
        + result.stderr[-2000:]
    )


def test_notebook_code_passes_ruff_check_with_lines_of_at_most_88_columns():
    result = _ruff("check", "--output-format", "concise", "chapters", "solutions")
    assert result.returncode == 0, (
        "ruff check (pyproject.toml's rules: undefined or unused names, lines over 88 columns):\n"
        + result.stdout[-4000:]
        + result.stderr[-2000:]
    )


def _printed_texts(nb):
    """Every text a reader sees printed: stream and text/plain outputs, widget outputs included."""
    outputs = [(i, out) for i, cell in enumerate(code_cells(nb)) for out in cell.outputs]
    outputs += [("widget", out) for model in output_models(nb) for out in model["state"].get("outputs", [])]
    for where, out in outputs:
        if out.get("output_type") == "stream":
            yield where, "".join(out.get("text", ""))
        elif "text/plain" in out.get("data", {}) and not any(k.startswith("image/") for k in out["data"]):
            if shows_widget({"outputs": [out]}):
                continue  # a widget's text/plain is its repr, which the page never shows
            yield where, "".join(out["data"]["text/plain"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_printed_lines_fit_the_code_column(path):
    long = [
        f"cell {where}: {len(line)} characters: {line[:60]}..."
        for where, text in _printed_texts(read(path))
        for line in text.splitlines()
        if len(line) > COLUMNS
    ]
    assert not long, f"printed lines over {COLUMNS} characters scroll sideways on the page:\n" + "\n".join(long[:10])


def _png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", raw[16:24])


def _figures(nb):
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.outputs:
            if "image/png" in out.get("data", {}):
                yield f"cell {i}", out["data"]["image/png"]
    for model in output_models(nb):
        for out in model["state"].get("outputs", []):
            if "image/png" in out.get("data", {}):
                yield "widget", out["data"]["image/png"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_figures_fit_the_page_so_their_labels_keep_their_size(path):
    sizes = [(where, _png_size(png)) for where, png in _figures(read(path))]
    too_wide = [f"{where}: {w} x {h} px" for where, (w, h) in sizes if w > FIGURE_PIXELS]
    assert not too_wide, (
        f"figures wider than {FIGURE_PIXELS} px are shrunk on the page, and their text with them; "
        f"use optlib.plot.subplots (at most {plot.PAGE_WIDTH} in, {plot.MAX_COLUMNS} panels a row):\n"
        + "\n".join(too_wide)
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_ids)
def test_chapter_code_cells_are_short(path):
    cells = code_cells(read(path))[1:]  # after the set-up cell
    long = [(i + 1, len(c.source.splitlines())) for i, c in enumerate(cells) if len(c.source.splitlines()) > CELL_LINES]
    assert not long, (
        f"code cells over {CELL_LINES} lines (cell index, lines): {long}; move the logic into optlib "
        "(a function with a docstring and a test) and keep the cell to set up, run, print, plot"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_ids)
def test_widget_cells_leave_the_drawing_to_optlib(path):
    for i, cell in enumerate(code_cells(read(path))):
        if not shows_widget(cell):
            continue
        tree = ast.parse(TransformerManager().transform_cell(cell.source))
        defined = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert not defined, (
            f"cell {i} shows a widget and defines {defined}: drawing code lives in optlib.widgets, "
            "the cell only builds the widget"
        )
