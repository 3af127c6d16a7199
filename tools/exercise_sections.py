"""Each chapter's Exercises section and each solutions page's opening, written from solutions/.

A chapter's exercises are the questions of its solutions notebook (``solutions/NN_name.ipynb``,
the single source of truth, from which ``exercises/`` is generated). So that the chapter, the
exercise notebook and the solutions page never list different sets, this module writes:

- the markdown cell of ``chapters/NN_name.ipynb`` that opens with ``## Exercises``: a link that
  opens the exercise notebook in Colab, a link to the solutions page, and the list of questions
  (title, id, points) read from the solutions notebook's headings;
- the first cell of ``solutions/NN_name.ipynb``: ``# Solutions: <chapter title>`` (the title of
  the chapter notebook) and what the page holds.

Links are built from _config.yml's repository (tools.colab.repository), so the address lives in
one place; they are plain Markdown, which both the book and Colab render. ``python3 make.py
exercises`` runs this after generating exercises/; tests/test_exercises.py fails when a chapter
or solutions notebook is stale. Only markdown cells change: no notebook needs re-executing.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tools.colab import repository
from tools.repository_links import colab_url

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Exercises"
_QUESTION = re.compile(r"^## Question \d+ \((q\d+), (\d+) points?\): (.+)$", re.M)
_FURTHER = re.compile(r"^## Further exercise \d+ \((e\d+), not graded\): (.+)$", re.M)
_LABEL = re.compile(r"^\((ch:[\w-]+)\)=$", re.M)


@dataclass(frozen=True)
class Exercise:
    """One question of a solutions notebook: id (``q3``/``e1``), title, points (None: not graded)."""

    id: str
    title: str
    points: int | None


def exercises_of(solutions_nb) -> list[Exercise]:
    """The questions and further exercises of a solutions notebook, in order."""
    found = []
    for cell in solutions_nb.cells:
        if cell.cell_type != "markdown":
            continue
        for match in _QUESTION.finditer(cell.source):
            found.append(Exercise(match[1], match[3].strip(), int(match[2])))
        for match in _FURTHER.finditer(cell.source):
            found.append(Exercise(match[1], match[2].strip(), None))
    return found


def chapter_title_and_label(chapter_nb) -> tuple[str, str]:
    """The chapter's title (its ``# `` heading) and its MyST label (``ch:...``)."""
    first = chapter_nb.cells[0].source
    title = next((line[2:].strip() for line in first.splitlines() if line.startswith("# ")), None)
    label = _LABEL.search(first)
    if title is None or label is None:
        raise ValueError("a chapter's first cell holds its label `(ch:...)=` and its `# ` title")
    return title, label[1]


def _exercise_colab(stem: str) -> str:
    repo = repository()
    return colab_url(repo["url"], repo.get("branch", "main"), f"exercises/{stem}.ipynb")


def exercises_section(stem: str, title: str, exercises: list[Exercise]) -> str:
    """The chapter's ``## Exercises`` cell."""
    graded = [e for e in exercises if e.points is not None]
    further = [e for e in exercises if e.points is None]
    if not graded:
        raise ValueError(f"solutions/{stem}.ipynb has no `## Question k (qk, P points): title` heading")
    lines = [
        SECTION,
        "",
        f"The exercises of this chapter are in the notebook `exercises/{stem}.ipynb`:",
        f"[open it in Colab]({_exercise_colab(stem)}). Each question checks your answer as",
        'soon as you run its `check("qk")` cell. The worked solutions, with model answers to the',
        "prompts that are not graded, are on the page",
        f"[Solutions: {title}](../solutions/{stem}.ipynb).",
        "",
    ]
    lines += [f"{i}. {e.title} ({e.id}, {e.points} points)" for i, e in enumerate(graded, 1)]
    if further:
        lines += ["", "Not graded, with model answers:", ""]
        lines += [f"- {e.title} ({e.id})" for e in further]
    return "\n".join(lines)


def solutions_intro(stem: str, title: str, label: str) -> str:
    """The first cell of ``solutions/<stem>.ipynb``."""
    return "\n".join([
        f"# Solutions: {title}",
        "",
        f"Worked solutions to the exercises of {{ref}}`{label}`. The code of each answer is folded:",
        "click *Show code cell source* to read it; what it printed and the checks stay visible.",
        "Model answers to the *Explain* prompts and to the further exercises open with a click.",
        f"Try the exercise notebook first ([open it in Colab]({_exercise_colab(stem)})): its",
        "checks tell you when an answer is right.",
    ])


def _replace_cell(nb, index: int, source: str) -> bool:
    if nb.cells[index].source == source:
        return False
    nb.cells[index].source = source
    return True


def update(stem: str, root: Path = ROOT) -> list[Path]:
    """Rewrite the chapter's Exercises cell and the solutions notebook's first cell; return what changed."""
    chapter_path, solutions_path = root / "chapters" / f"{stem}.ipynb", root / "solutions" / f"{stem}.ipynb"
    chapter, solutions = (nbformat.read(p, as_version=4) for p in (chapter_path, solutions_path))
    title, label = chapter_title_and_label(chapter)
    sections = [i for i, c in enumerate(chapter.cells) if c.cell_type == "markdown"
                and c.source.splitlines()[:1] == [SECTION]]
    if len(sections) != 1:
        raise ValueError(f"{chapter_path.name}: expected one markdown cell opening with `{SECTION}`, "
                         f"found {len(sections)}")
    if solutions.cells[0].cell_type != "markdown":
        raise ValueError(f"{solutions_path.name}: the first cell must be the markdown title cell")
    changed = []
    if _replace_cell(chapter, sections[0], exercises_section(stem, title, exercises_of(solutions))):
        nbformat.write(chapter, chapter_path)
        changed.append(chapter_path)
    if _replace_cell(solutions, 0, solutions_intro(stem, title, label)):
        nbformat.write(solutions, solutions_path)
        changed.append(solutions_path)
    return changed


def stems(root: Path = ROOT) -> list[str]:
    """The chapters that have a solutions notebook."""
    return sorted(p.stem for p in (root / "solutions").glob("*.ipynb") if (root / "chapters" / p.name).exists())


if __name__ == "__main__":
    chosen = [a.removesuffix(".ipynb").split("/")[-1] for a in sys.argv[1:]]
    unknown = sorted(set(chosen) - set(stems()))
    if unknown:
        sys.exit(f"no chapter with a solutions notebook named {', '.join(unknown)} (known: {', '.join(stems())})")
    for stem in chosen or stems():
        for path in update(stem):
            print(f"{path.relative_to(ROOT)}: exercises section written")
