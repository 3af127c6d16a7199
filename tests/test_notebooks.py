"""Properties every committed notebook must have; nbval checks that its outputs reproduce.

Rules for chapters only (Colab cell, title and closing sections, widget) are not asked of
solutions/ (exercise notebooks); "every code cell executed", "no stored errors" and the
trailing-semicolon rule apply to both.

nbval passes a notebook whose cells were never executed, so these tests make sure every
code cell of chapters/ and solutions/ was executed, in order, in one run.
"""
from __future__ import annotations

import ast
import json

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from notebook_utils import ROOT, code_cells, notebook_paths, output_models, read, shows_widget, toc_chapters
from tools.colab import colab_cell_source, first_code_cell

NOTEBOOKS = notebook_paths("chapters", "solutions")
CHAPTERS = notebook_paths("chapters")
ids = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]
chapter_ids = [str(p.relative_to(ROOT)) for p in CHAPTERS]


def test_the_book_has_chapters():
    assert len(CHAPTERS) >= 4, "chapters/ must hold the executed chapter notebooks"


def test_toc_lists_exactly_the_chapters():
    listed = toc_chapters()
    on_disk = [str(p.relative_to(ROOT).with_suffix("")) for p in CHAPTERS]
    assert listed == sorted(listed), "chapters appear in the table of contents in numeric order"
    assert sorted(listed) == on_disk


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_valid_and_uses_python3_kernel(path):
    json.loads(path.read_text())  # valid JSON
    nb = read(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_code_cell_was_executed_in_order_in_one_run(path):
    cells = code_cells(read(path))
    assert cells, f"{path.name} has no code"
    counts = [c.execution_count for c in cells]
    missing = [i for i, n in enumerate(counts) if n is None]
    assert not missing, f"{path.name}: code cells {missing} were never executed (nbval would not check them)"
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: not executed top to bottom in one run: {counts}"
    assert any(c.outputs for c in cells), f"{path.name} stores no outputs at all"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_errors_or_warnings_are_stored(path):
    for i, cell in enumerate(code_cells(read(path))):
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name} cell {i} stores an error: {out.get('ename')}"
            assert not (out.output_type == "stream" and out.name == "stderr"), \
                f"{path.name} cell {i} writes to stderr: {out.text[:200]!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_ids)
def test_chapter_starts_with_the_colab_cell(path):
    cell = first_code_cell(read(path))
    assert cell.source == colab_cell_source(), "run `python3 make.py colab-cell` and re-execute the chapter"


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_ids)
def test_chapter_has_title_label_and_closing_sections(path):
    nb = read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("(ch:"), "first cell: a MyST label `(ch:...)=`"
    assert "\n# " in first.source, "first cell holds the chapter title"
    headings = [line.strip() for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()]
    for section in ("## Summary", "## Exercises", "## Interview questions"):
        assert section in headings, f"{path.name} lacks a '{section}' section"


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_ids)
def test_chapter_widget_is_tagged_and_stores_its_default_figure(path):
    nb = read(path)
    widget_cells = [c for c in code_cells(nb) if shows_widget(c)]
    assert widget_cells, f"{path.name} has no widget"
    for cell in widget_cells:
        assert "nbval-ignore-output" in cell.metadata.get("tags", []), "widget cells need the nbval-ignore-output tag"
    figures = [o for m in output_models(nb) for o in m["state"].get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= len(widget_cells), "each widget's default figure must be stored in the widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_only_widget_cells_skip_output_comparison(path):
    for i, cell in enumerate(code_cells(read(path))):
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            assert shows_widget(cell), f"{path.name} cell {i}: nbval-ignore-output is reserved for widget cells"


def _ends_with_silenced_expression(source: str) -> bool:
    """True if the cell's last top-level statement is an expression silenced with a final `;`."""
    code = TransformerManager().transform_cell(source)  # magics (%pip) become Python
    body = ast.parse(code).body
    if not body or not isinstance(body[-1], ast.Expr):
        return False
    last_line = code.splitlines()[body[-1].end_lineno - 1][body[-1].end_col_offset:]
    return last_line.split("#")[0].strip().startswith(";")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_cell_relies_on_a_trailing_semicolon(path):
    # nbval executes cells with store_history=False, so IPython cannot see a final `;` and shows
    # the value (e.g. `<Axes: ...>`) that the committed execution suppressed: nbval would fail.
    for i, cell in enumerate(code_cells(read(path))):
        assert not _ends_with_silenced_expression(cell.source), \
            f"{path.name} cell {i} ends with `expression;`: assign the value instead (`ax = plot...(...)`)"


def test_toc_ends_with_the_unnumbered_part_for_learners_and_instructors():
    import yaml

    parts = yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]
    last = parts[-1]
    assert last["caption"] == "For learners and instructors" and last.get("numbered") is False
    assert [e["file"] for e in last["chapters"]] == ["exercises", "instructors", "api"]
    assert all(e["file"].startswith("chapters/") for part in parts[:-1] for e in part["chapters"])
    for page in ("exercises", "instructors", "api"):
        assert (ROOT / f"{page}.md").exists()
    # the worked solutions are pages under "Exercises", one per solutions notebook, in order
    solutions = [s["file"] for s in last["chapters"][0]["sections"]]
    assert solutions == [str(p.relative_to(ROOT).with_suffix("")) for p in notebook_paths("solutions")]


@pytest.mark.parametrize("path", notebook_paths("solutions"), ids=lambda p: p.name)
def test_solution_code_is_folded_in_the_book_and_only_solution_code(path):
    for index, cell in enumerate(read(path).cells):
        has_solution = cell.cell_type == "code" and "# BEGIN SOLUTION" in cell.source
        folded = "hide-input" in cell.metadata.get("tags", [])
        assert has_solution == folded, (
            f"cell {index}: a cell with a solution carries the tag hide-input (the book folds its code), "
            "and no other cell does")


def test_exercises_page_links_every_exercise_notebook_through_the_configured_repository():
    page = (ROOT / "exercises.md").read_text()
    assert "github.com/" not in page, "exercises.md must take the repository URL from _config.yml, not write it"
    for path in notebook_paths("solutions"):
        assert f"{{{{ colab_exercises_{path.stem} }}}}" in page, f"exercises.md does not link exercises/{path.name}"
