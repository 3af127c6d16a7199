"""exercises/ is generated from solutions/: the stub rules, their errors, determinism, and staleness."""
from __future__ import annotations

import nbformat
import pytest

import grading_demo
from notebook_utils import ROOT, notebook_paths
from optlib.grading.exercises import (MarkerError, exercise_notebook, exercise_text, stub_source,
                                      write_exercises)


def test_block_becomes_a_stub_at_the_begin_lines_indentation():
    source = ("def f(x):\n    y = 2\n    # BEGIN SOLUTION\n    z = x * y\n    return z\n    # END SOLUTION\n\n"
              "print(f)")
    assert stub_source(source, "q3") == ('def f(x):\n    y = 2\n    raise NotImplementedError("q3: your code here")\n\n'
                                         "print(f)")


def test_several_blocks_and_top_level_blocks():
    source = "# BEGIN SOLUTION\na = 1\n# END SOLUTION\nb = 2\nif b:\n        # BEGIN SOLUTION\n        c = 3\n        # END SOLUTION"
    assert stub_source(source, "q1") == ('raise NotImplementedError("q1: your code here")\nb = 2\nif b:\n'
                                         '        raise NotImplementedError("q1: your code here")')


def test_source_without_markers_is_unchanged():
    source = "x = 1  # BEGIN SOLUTION is only a marker on a line of its own\nprint(x)\n"
    assert stub_source(source, "q1") == source


@pytest.mark.parametrize("source, words", [
    ("# BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n# END SOLUTION\n", "without a `# BEGIN SOLUTION`"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n# END SOLUTION\n", "cannot nest"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n# END SOLUTION\n", "line 4"),
])
def test_unbalanced_or_nested_markers_are_clear_errors(source, words):
    with pytest.raises(MarkerError, match=words):
        stub_source(source, "q1", where="nb cell 3")


def test_markers_in_markdown_are_an_error():
    nb = grading_demo.notebook()
    nb.cells[0].source += "\n# BEGIN SOLUTION\n"
    with pytest.raises(MarkerError, match="markdown"):
        exercise_notebook(nb)


def test_exercise_notebook_names_questions_strips_outputs_and_keeps_the_rest():
    nb = grading_demo.notebook()
    nb.cells[6].outputs = [nbformat.v4.new_output("stream", name="stdout", text="55\n")]
    nb.cells[6].execution_count = 4
    nb.cells[6].metadata["tags"] = ["keep-me", "hide-input"]
    nb.cells[3].metadata["tags"] = ["hide-input"]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    ex = exercise_notebook(nb, chapter="99_demo")
    assert nb.cells[6].outputs, "the input notebook is left untouched"
    assert ex.cells[3].source == 'def square(x):\n    raise NotImplementedError("q1: your code here")'
    assert ex.cells[6].source == 'raise NotImplementedError("q2: your code here")\nprint(total)'
    assert all(c.outputs == [] and c.execution_count is None for c in ex.cells if c.cell_type == "code")
    # the book's fold of the solution code is dropped with the solution; other tags are kept
    assert ex.cells[6].metadata["tags"] == ["keep-me"] and "tags" not in ex.cells[3].metadata
    assert [c.id for c in ex.cells] == [c.id for c in nb.cells]
    assert [c.source for c in ex.cells if c.cell_type == "markdown"] == \
        [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "widgets" not in ex.metadata and ex.metadata["kernelspec"] == nb.metadata["kernelspec"]
    assert ex.metadata["optlib"] == {"chapter": "99_demo"}


def test_question_falls_back_to_the_next_check_cell():
    nb = grading_demo.notebook()
    nb.cells[5].source = "## The second task"  # no (q2, ...) in the heading
    nb.cells[2].source = "## The first task"
    ex = exercise_notebook(nb)
    assert '"q1: your code here"' in ex.cells[3].source and '"q2: your code here"' in ex.cells[6].source


def test_generation_is_deterministic_and_idempotent(tmp_path):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    grading_demo.write(solutions)
    assert write_exercises(solutions, exercises) == [exercises / "99_demo.ipynb"]
    first = (exercises / "99_demo.ipynb").read_bytes()
    assert write_exercises(solutions, exercises) == [], "a second run changes nothing"
    assert (exercises / "99_demo.ipynb").read_bytes() == first == exercise_text(solutions / "99_demo.ipynb").encode()
    nbformat.validate(nbformat.reads(first.decode(), as_version=4))
    (exercises / "00_orphan.ipynb").write_text("{}")
    write_exercises(solutions, exercises)
    assert sorted(p.name for p in exercises.glob("*.ipynb")) == ["99_demo.ipynb"], "orphans are removed"


SOLUTIONS = notebook_paths("solutions")


def test_exercises_folder_matches_the_solutions():
    committed = {p.name for p in notebook_paths("exercises")}
    sources = {p.name for p in SOLUTIONS}
    assert committed == sources, (f"run `python3 make.py exercises`: missing {sorted(sources - committed)}, "
                                  f"without a solutions notebook {sorted(committed - sources)}")


@pytest.mark.parametrize("name", [p.name for p in SOLUTIONS])
def test_exercises_notebook_is_not_stale(name):
    expected = exercise_text(ROOT / "solutions" / name)
    target = ROOT / "exercises" / name
    assert target.exists() and target.read_text(encoding="utf-8") == expected, \
        f"exercises/{name} is stale: run `python3 make.py exercises`"


@pytest.mark.parametrize("name", [p.name for p in SOLUTIONS])
def test_solutions_notebook_follows_the_exercise_conventions(name):
    nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
    stem = name.removesuffix(".ipynb")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any(f'check = checker("{stem}")' in src for src in code[:2]), f'a cell near the top holds check = checker("{stem}")'
    assert any("# BEGIN SOLUTION" in src for src in code), "no solution block"
    checks = [src.strip() for src in code if src.strip().startswith("check(")]
    assert checks and all(src.startswith('check("q') and src.endswith('")') for src in checks)


def test_model_answers_stay_on_the_solutions_page_and_the_title_becomes_the_exercises():
    nb = grading_demo.notebook()
    nb.cells[0].source = "# Solutions: Demo chapter\n\nWorked solutions."
    answer = nbformat.v4.new_markdown_cell(":::{dropdown} Model answer (q1)\nSquaring is x * x.\n:::")
    nb.cells.insert(5, answer)
    nb.cells.append(nbformat.v4.new_markdown_cell("## Further exercise 1 (e1, not graded): cubes"))
    nb.cells.append(nbformat.v4.new_code_cell("# BEGIN SOLUTION\ncube = 27\n# END SOLUTION"))
    ex = exercise_notebook(nb, chapter="99_demo")
    assert not any(c.source.startswith(":::{dropdown} Model answer") for c in ex.cells)
    assert len(ex.cells) == len(nb.cells) - 1
    assert ex.cells[0].source.startswith("# Exercises: Demo chapter\n\nThe exercises of chapter 99, *Demo chapter*.")
    assert ex.cells[-1].source == 'raise NotImplementedError("e1: your code here")'
    assert nb.cells[5] is answer and nb.cells[0].source.startswith("# Solutions:"), "the input is untouched"


@pytest.mark.parametrize("stem", [p.stem for p in SOLUTIONS])
def test_chapter_exercises_section_and_solutions_title_are_not_stale(stem, tmp_path):
    from tools import exercise_sections

    for folder in ("chapters", "solutions"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{stem}.ipynb").write_bytes((ROOT / folder / f"{stem}.ipynb").read_bytes())
    changed = exercise_sections.update(stem, root=tmp_path)
    assert not changed, f"run `python3 make.py exercises`: {[p.name for p in changed]} would change"


@pytest.mark.parametrize("stem", [p.stem for p in SOLUTIONS])
def test_chapter_lists_the_graded_questions_and_links_the_exercises_and_solutions(stem):
    from tools import exercise_sections
    from tools.colab import repository
    from tools.repository_links import colab_url

    chapter = nbformat.read(ROOT / "chapters" / f"{stem}.ipynb", as_version=4)
    solutions = nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", as_version=4)
    section = next(c.source for c in chapter.cells if c.source.startswith("## Exercises"))
    repo = repository()
    assert f"]({colab_url(repo['url'], repo['branch'], f'exercises/{stem}.ipynb')})" in section
    assert f"](../solutions/{stem}.ipynb)" in section
    questions = exercise_sections.exercises_of(solutions)
    graded = [q for q in questions if q.points is not None]
    assert len(graded) >= 6, "a chapter has at least six graded questions"
    for q in questions:
        assert f"({q.id}" in section and q.title in section
    title, _ = exercise_sections.chapter_title_and_label(chapter)
    assert solutions.cells[0].source.startswith(f"# Solutions: {title}\n")


def _question_sections(nb):
    """``[(heading, [cells])]``: the cells from each question heading to the next heading of that level."""
    sections = []
    for cell in nb.cells:
        first = cell.source.splitlines()[0] if cell.source else ""
        if cell.cell_type == "markdown" and first.startswith("## "):
            sections.append((first, [cell]))
        elif sections:
            sections[-1][1].append(cell)
    return sections


@pytest.mark.parametrize("name", [p.name for p in SOLUTIONS])
def test_every_prompt_that_is_not_graded_has_a_model_answer(name):
    from optlib.grading.exercises import is_model_answer

    nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
    for heading, cells in _question_sections(nb):
        prompts = [c for c in cells if c.cell_type == "markdown" and "Explain" in c.source and not is_model_answer(c)]
        if prompts or "not graded" in heading:
            assert any(is_model_answer(c) for c in cells), f"{name}: `{heading}` has no model answer cell"


def test_generation_of_named_chapters_only(tmp_path):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    grading_demo.write(solutions)
    exercises.mkdir()
    (exercises / "00_orphan.ipynb").write_text("{}")
    assert write_exercises(solutions, exercises, ["99_demo"]) == [exercises / "99_demo.ipynb"]
    assert (exercises / "00_orphan.ipynb").exists(), "a partial run removes nothing"
    assert (exercises / "99_demo.ipynb").read_text() == exercise_text(solutions / "99_demo.ipynb")
    with pytest.raises(FileNotFoundError, match="no solutions notebook"):
        write_exercises(solutions, exercises, ["42_missing"])
