"""Generate the learners' exercise notebooks from the solution notebooks.

``solutions/NN_name.ipynb`` is the single source of truth. In its code cells, the answer to a
question sits between a line ``# BEGIN SOLUTION`` and a line ``# END SOLUTION``; the exercise
version replaces each such block (markers included) with one line
``raise NotImplementedError("qk: your code here")`` at the indentation of the ``BEGIN`` line,
where ``qk`` is the question the block belongs to (the ``(qk, ...)`` of the last
``## Question k (qk, P points)`` heading above it, else the next ``check("qk")`` cell; an ungraded
exercise is headed ``## Further exercise k (ek, not graded)``).
Outputs, execution counts, saved widget state and the ``hide-input`` tag of solution cells (which
folds the solution behind a toggle in the book) are dropped, and so are the model answers: the
markdown cells that open with ``:::{dropdown} Model answer``, which the solutions page shows
behind a toggle. The solutions notebook's title cell, ``# Solutions: <chapter title>``, becomes
the exercise notebook's (:func:`exercise_intro`). Everything else (cell ids, metadata, markdown)
is kept, and the notebook metadata gains ``optlib.chapter`` so the batch grader recognises a
renamed submission. The output is deterministic: the same solutions give the same bytes.

``python3 make.py exercises`` writes ``exercises/`` from ``solutions/``.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

__all__ = ["MarkerError", "BEGIN", "END", "HIDE_INPUT", "MODEL_ANSWER", "SOLUTIONS_TITLE", "stub_source",
           "is_model_answer", "exercise_intro", "exercise_notebook", "exercise_text", "expected_exercises",
           "write_exercises"]

#: The line that opens a solution in a code cell of a solutions notebook.
BEGIN = "# BEGIN SOLUTION"
#: The line that closes it.
END = "# END SOLUTION"
_MARKER = re.compile(r"^(\s*)#\s*(BEGIN|END) SOLUTION\s*$")
_HEADING_QUESTION = re.compile(r"^#+\s.*?\(([qe]\d+)\b", re.M)
#: How a model answer cell opens (a MyST dropdown: closed on the solutions page, absent from the exercises).
MODEL_ANSWER = ":::{dropdown} Model answer"
#: How a solutions notebook's first cell opens: ``# Solutions: <chapter title>``.
SOLUTIONS_TITLE = "# Solutions: "
_CHECK_CALL = re.compile(r"""^\s*check\(\s*["'](q\d+)["']\s*\)\s*$""")
_WIDGET_STATE = "widgets"


class MarkerError(ValueError):
    """``# BEGIN SOLUTION`` / ``# END SOLUTION`` markers are unbalanced or nested."""


def stub_source(source: str, question: str, where: str = "cell") -> str:
    """``source`` with every solution block replaced by a ``NotImplementedError`` stub for ``question``."""
    out: list[str] = []
    begin_line = None
    for number, line in enumerate(source.split("\n"), start=1):
        match = _MARKER.match(line)
        if not match:
            if begin_line is None:
                out.append(line)
            continue
        indent, kind = match.groups()
        if kind == "BEGIN":
            if begin_line is not None:
                raise MarkerError(f"{where}, line {number}: `{BEGIN}` inside the solution block opened on line "
                                  f"{begin_line} (blocks cannot nest)")
            begin_line = number
            out.append(f'{indent}raise NotImplementedError("{question}: your code here")')
        else:
            if begin_line is None:
                raise MarkerError(f"{where}, line {number}: `{END}` without a `{BEGIN}` above it")
            begin_line = None
    if begin_line is not None:
        raise MarkerError(f"{where}, line {begin_line}: `{BEGIN}` is never closed by `{END}` in the same cell")
    return "\n".join(out)


def _has_markers(source: str) -> bool:
    return any(_MARKER.match(line) for line in source.split("\n"))


def _question_of(cells, index: int) -> str:
    """The question a code cell belongs to: the last question heading above it, else the next check cell."""
    for cell in reversed(cells[:index]):
        if cell.cell_type == "markdown":
            found = _HEADING_QUESTION.findall(cell.source)
            if found:
                return found[-1]
    for cell in cells[index + 1:]:
        if cell.cell_type == "code":
            match = _CHECK_CALL.match(cell.source)
            if match:
                return match.group(1)
    return "exercise"


#: The cell tag that folds a solution's code behind a toggle in the book (its output stays visible).
HIDE_INPUT = "hide-input"


def _drop_tag(cell, tag: str) -> None:
    tags = [t for t in cell.metadata.get("tags", []) if t != tag]
    if tags:
        cell.metadata["tags"] = tags
    else:
        cell.metadata.pop("tags", None)


def is_model_answer(cell) -> bool:
    """True for a markdown cell holding a model answer (it opens with :data:`MODEL_ANSWER`)."""
    return cell.cell_type == "markdown" and cell.source.lstrip().startswith(MODEL_ANSWER)


def exercise_intro(title: str, chapter: str | None) -> str:
    """The first cell of an exercise notebook: its title and how to work through it."""
    number = f"chapter {int(chapter[:2])}, " if chapter and chapter[:2].isdigit() else ""
    return (
        f"# Exercises: {title}\n\n"
        f"The exercises of {number}*{title}*. Run the set-up cells first. For each question, replace\n"
        "the `raise NotImplementedError(...)` lines with your code, run the cell, then run the\n"
        '`check("qk")` cell below it: it tests your answer on fresh inputs, with tolerances, and says\n'
        "what to look at when something is off. The *Explain* prompts and the further exercises are\n"
        "not graded: write your answer in a markdown cell, then compare it with the model answer on\n"
        "the solutions page of the online book."
    )


def exercise_notebook(nb, chapter: str | None = None, name: str = "notebook"):
    """The exercise version of the solution notebook ``nb`` (a new object; ``nb`` is untouched)."""
    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if not is_model_answer(cell)]
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and first.source.startswith(SOLUTIONS_TITLE):
        title = first.source.splitlines()[0].removeprefix(SOLUTIONS_TITLE).strip()
        first.source = exercise_intro(title, chapter)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        if cell.cell_type in ("code", "raw") and _has_markers(cell.source):
            if cell.cell_type == "raw":
                raise MarkerError(f"{name} cell {index}: solution markers in a raw cell")
            cell.source = stub_source(cell.source, _question_of(nb.cells, index), where=f"{name} cell {index}")
            _drop_tag(cell, HIDE_INPUT)
        elif cell.cell_type == "markdown" and _has_markers(cell.source):
            raise MarkerError(f"{name} cell {index}: solution markers in a markdown cell")
    nb.metadata.pop(_WIDGET_STATE, None)
    if chapter is not None:
        nb.metadata["optlib"] = {**nb.metadata.get("optlib", {}), "chapter": chapter}
    return nb


def exercise_text(solution_path: Path) -> str:
    """The exact text of the exercise notebook generated from ``solution_path``."""
    solution_path = Path(solution_path)
    nb = nbformat.read(solution_path, as_version=4)
    exercise = exercise_notebook(nb, chapter=solution_path.stem, name=solution_path.name)
    nbformat.validate(exercise)
    return nbformat.writes(exercise) + "\n"


def expected_exercises(solutions: Path) -> dict[str, str]:
    """``{file name: text}`` of every exercise notebook that ``solutions/`` generates."""
    return {p.name: exercise_text(p) for p in sorted(Path(solutions).glob("*.ipynb"))}


def write_exercises(solutions: Path, exercises: Path, names: list[str] | None = None) -> list[Path]:
    """Write ``exercises/NN_name.ipynb`` for every ``solutions/NN_name.ipynb``; remove orphans; return what changed.

    With ``names`` (chapter names such as ``05_momentum``) only those notebooks are written, and
    nothing is removed.
    """
    solutions, exercises = Path(solutions), Path(exercises)
    exercises.mkdir(parents=True, exist_ok=True)
    if names is None:
        expected = expected_exercises(solutions)
    else:
        sources = [solutions / f"{name}.ipynb" for name in names]
        missing = [str(p) for p in sources if not p.exists()]
        if missing:
            raise FileNotFoundError(f"no solutions notebook {', '.join(missing)}")
        expected = {p.name: exercise_text(p) for p in sources}
    changed = []
    for name, text in expected.items():
        target = exercises / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    if names is None:
        for orphan in sorted(exercises.glob("*.ipynb")):
            if orphan.name not in expected:
                orphan.unlink()
                changed.append(orphan)
    return changed


def main(argv: list[str] | None = None) -> None:
    """Write exercises/ from solutions/; with chapter names (``05_momentum``) as arguments, only theirs."""
    import sys

    root = Path(__file__).resolve().parents[2]
    names = [a.removesuffix(".ipynb").split("/")[-1] for a in (sys.argv[1:] if argv is None else argv)]
    try:
        changed = write_exercises(root / "solutions", root / "exercises", names or None)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    for path in changed:
        print(f"{path.relative_to(root)}: {'written' if path.exists() else 'removed (no solutions notebook)'}")
    if not names:
        print(f"exercises/ is up to date ({len(list((root / 'solutions').glob('*.ipynb')))} notebooks)")


if __name__ == "__main__":
    main()
