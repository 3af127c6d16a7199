"""A throwaway chapter ("99_demo") for the exercise and grader tests: a questions module and its solutions notebook."""
from __future__ import annotations

from pathlib import Path

import nbformat

CHAPTER = "99_demo"

QUESTIONS_SOURCE = '''
import torch

from optlib.grading import Question, expect_close, require


def _square(ns):
    f = require(ns, "square", "callable")
    expect_close(f(torch.tensor(3.0)), 9.0, what="square(3)")
    expect_close(f(torch.tensor([-2.0, 0.5])), torch.tensor([4.0, 0.25]), what="square([-2, 0.5])")


def _total(ns):
    expect_close(require(ns, "total", (int, float, torch.Tensor)), 55, what="total")


QUESTIONS = [Question("q1", 2, _square, "square a tensor"), Question("q2", 3, _total, "sum 0..10")]
'''

CELLS = [
    ("markdown", "# Demo exercises\n\nA throwaway chapter for the tests."),
    ("code", 'import torch\n\ncheck = lambda question: None  # a real notebook has check = checker("99_demo")'),
    ("markdown", "## Question 1 (q1, 2 points): square a tensor"),
    ("code", "def square(x):\n    # BEGIN SOLUTION\n    return x * x\n    # END SOLUTION"),
    ("code", 'check("q1")'),
    ("markdown", "## Question 2 (q2, 3 points): sum 0..10"),
    ("code", "# BEGIN SOLUTION\ntotal = sum(range(11))\n# END SOLUTION\nprint(total)"),
    ("code", 'check("q2")'),
]


def notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in CELLS]
    for i, cell in enumerate(nb.cells):
        cell.id = f"demo-{i}"
    return nb


def write(folder: Path, name: str = f"{CHAPTER}.ipynb") -> Path:
    path = Path(folder) / name
    nbformat.write(notebook(), path)
    return path
