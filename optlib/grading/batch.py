"""Grade a folder of submitted notebooks: ``python3 make.py grade SUBMISSIONS_DIR``.

Each ``*.ipynb`` runs in its own fresh ``python3`` kernel (one torch thread, a scratch working
folder) with a time limit for the whole notebook. The learner's code cells run in order; a cell
that raises does not stop the run, and ``check("qk")`` cells are skipped (they do not count).
Then the grader sends, from this process, the source of the chapter's questions module and of
the grading core (``optlib/grading/__init__.py``), which the kernel executes in fresh module
namespaces; the tests run against the kernel's user namespace and the results come back as one
JSON line tagged with a random per-run nonce. Redefining ``check``, ``expect_close``, ``print``
or any other name in the notebook, or editing the ``optlib.grading`` module the notebook
imported, does not change the grade; printing a fake result line does not either (the nonce is
drawn after the learner's code has run).

A bad submission never stops the batch: a timeout interrupts the kernel and grades what ran
(or, when the kernel cannot be interrupted, kills it and scores 0 with reason "timeout"); a
kernel that dies is restarted, the cells before the fatal one are re-run and graded (what did
not run scores 0, reason "kernel died"); a corrupt file, a file that is not a notebook and an
unknown chapter score 0 with the reason. A test that did not run counts as failed.

Outputs in ``--out`` (default ``SUBMISSIONS_DIR/grades``): ``<stem>.json`` per submission,
``grades.csv`` (one row per submission), and with ``--gradescope`` ``gradescope/<stem>.json``
in Gradescope's ``results.json`` format (plus ``results.json`` itself when the folder holds a
single submission, as in a Gradescope autograder run).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import logging
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

__all__ = ["QuestionGrade", "SubmissionGrade", "known_chapters", "detect_chapter", "grade_notebook", "grade_folder",
           "write_reports", "gradescope_results", "main"]

DEFAULT_TIMEOUT = 300          # seconds for all of a notebook's cells
DEFAULT_GRADING_TIMEOUT = 120  # seconds for running the tests after them
MAX_FILE_BYTES = 50_000_000    # a larger "notebook" is rejected unread
MAX_KEPT_OUTPUT = 2_000_000    # characters of the grading cell's stdout kept while looking for the result line
QUESTIONS_DIR = Path(__file__).resolve().parent / "questions"
CORE_PATH = Path(__file__).resolve().parent / "__init__.py"
_QUIET = logging.getLogger("optlib.grading.kernel")
_QUIET.setLevel(logging.CRITICAL)
_QUIET.propagate = False
_TIMEOUT_REPLY = {"ename": "OptlibGraderTimeout", "evalue": "the time limit was reached", "traceback": []}
_CHECK_CELL = re.compile(r"""^\s*check\(\s*["']q\d+["']\s*\)\s*;?\s*$""")
_CHECKER_CALL = re.compile(r"""checker\(\s*["'](\d{2}_[a-z0-9_]+)["']\s*\)""")
_CHAPTER_NAME = re.compile(r"^\d{2}_[a-z0-9_]+$")

STATUS_OK = "ok"                    # every cell ran without an error
STATUS_CELL_ERRORS = "cell errors"  # some cells raised; the rest ran and everything was graded
STATUS_TIMEOUT = "timeout"
STATUS_KERNEL_DIED = "kernel died"
STATUS_INVALID = "invalid notebook"
STATUS_UNKNOWN_CHAPTER = "unknown chapter"
STATUS_GRADER_ERROR = "grader error"


@dataclass
class QuestionGrade:
    """One question of one submission: ``earned`` of ``points``, and the ``reason`` points were lost."""

    question: str
    points: int
    earned: int
    reason: str = ""


@dataclass
class SubmissionGrade:
    """The grade of one submitted notebook: its questions, a ``status`` ("ok", "cell errors", "timeout",
    "kernel died", "invalid notebook", "unknown chapter", "grader error"), the ``error`` behind it, and the
    ``seconds`` grading took.
    """

    file: str
    chapter: str | None
    status: str
    error: str = ""
    questions: list[QuestionGrade] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Points earned over all questions."""
        return sum(q.earned for q in self.questions)

    @property
    def max(self) -> int:
        """Points available over all questions."""
        return sum(q.points for q in self.questions)

    def to_json(self) -> dict:
        """The record written to ``<stem>.json``: totals, status, error, time and every question."""
        return {"file": self.file, "chapter": self.chapter, "total": self.total, "max": self.max,
                "status": self.status, "error": self.error, "seconds": round(self.seconds, 1),
                "questions": [asdict(q) for q in self.questions]}


# ---------------------------------------------------------------- chapters and questions


def known_chapters(questions_dir: Path = QUESTIONS_DIR) -> dict[str, str]:
    """``{"05_momentum": source of chNN questions module}`` for every questions module on disk."""
    found = {}
    for path in sorted(Path(questions_dir).glob("ch[0-9][0-9]_*.py")):
        found[path.stem[2:]] = path.read_text(encoding="utf-8")
    return found


def _question_list(chapter: str, source: str) -> list[tuple[str, int, str]]:
    """``(id, points, title)`` of a questions module's ``QUESTIONS``, loaded here to know the maximum."""
    import types

    module = types.ModuleType(f"_optlib_questions_{chapter}")
    exec(compile(source, f"<questions {chapter}>", "exec"), module.__dict__)
    return [(q.id, q.points, q.title) for q in module.QUESTIONS]


def detect_chapter(stem: str, nb: Mapping | None, chapters) -> str | None:
    """The chapter of a submission: a known ``NN_name`` in its file name, else its metadata, else its ``checker`` call.

    Returns a chapter name even when it has no questions module (the caller reports it unknown),
    or None when nothing names one.
    """
    lowered = stem.lower()
    for chapter in sorted(chapters, key=len, reverse=True):
        if chapter in lowered:
            return chapter
    if nb is not None:
        meta = nb.get("metadata", {}).get("optlib", {})
        if isinstance(meta, dict) and isinstance(meta.get("chapter"), str) and _CHAPTER_NAME.match(meta["chapter"]):
            return meta["chapter"]
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                match = _CHECKER_CALL.search(_source(cell))
                if match:
                    return match.group(1)
    match = re.search(r"(?<![0-9])(\d{2}_[a-z][a-z0-9_]*)", lowered)
    return match.group(1) if match else None


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


# ---------------------------------------------------------------- the code the kernel runs

_KERNEL_SCRIPT = r'''
import io, json, signal, sys, time, types

_ns = sys._getframe(1).f_globals          # the learner's namespace (the cell's globals)
_start = time.monotonic()


class _GradingTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _GradingTimeout()


def _module(name, source, filename):
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


_payload = {"results": [], "error": ""}
_stdout = sys.stdout
_saved = {name: sys.modules.get(name) for name in ("optlib.grading",)}
try:
    _core = _module("_optlib_grading_core_" + _NONCE, _CORE_SOURCE, "<optlib.grading (grader copy)>")
    sys.modules["optlib.grading"] = _core
    try:
        _questions = _module("_optlib_questions_" + _NONCE, _QUESTIONS_SOURCE, "<questions (grader copy)>")
    finally:
        for _name, _old in _saved.items():
            if _old is None:
                sys.modules.pop(_name, None)
            else:
                sys.modules[_name] = _old
    _old_handler = signal.signal(signal.SIGALRM, _alarm)
    _sink = io.StringIO()
    try:
        for _q in list(_questions.QUESTIONS):
            _left = _LIMIT - (time.monotonic() - _start)
            if _left <= 0.5:
                _payload["results"].append([_q.id, _q.points, 0, "not graded: the time for grading ran out"])
                continue
            sys.stdout = _sink                          # what the learner's code prints while tested is dropped
            try:
                signal.setitimer(signal.ITIMER_REAL, _left)
                try:
                    (_r,) = _core.run_questions([_q], _ns)
                    _row = [_r.question, _r.points, _r.earned, _r.message]
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _GradingTimeout:
                _row = [_q.id, _q.points, 0, "the test timed out (your code did not finish)"]
            except BaseException as _e:
                _row = [_q.id, _q.points, 0, ("the test crashed: " + type(_e).__name__ + ": " + str(_e))[:500]]
            finally:
                sys.stdout = _stdout
                _sink.seek(0)
                _sink.truncate()
            _payload["results"].append(_row)
    finally:
        signal.signal(signal.SIGALRM, _old_handler)
except BaseException as _e:
    _payload["error"] = ("the grader could not load the tests: " + type(_e).__name__ + ": " + str(_e))[:1000]
sys.stdout = _stdout
_stdout.write("\n" + _TAG + json.dumps(_payload) + "\n")
_stdout.flush()
'''


def _grading_cell(nonce: str, core_source: str, questions_source: str, limit: float) -> str:
    """A cell that needs no name from the learner's namespace: only the `import` statement and a module attribute."""
    variables = {"_NONCE": nonce, "_TAG": f"OPTLIB-GRADE-{nonce} ", "_CORE_SOURCE": core_source,
                 "_QUESTIONS_SOURCE": questions_source, "_LIMIT": float(limit), "__name__": "__optlib_grader__"}
    b = f"_optlib_builtins_{nonce}"
    return (f"import builtins as {b}\n"
            f"{b}.exec({b}.compile({_KERNEL_SCRIPT!r}, '<optlib grader>', 'exec'), "
            f"{{**{variables!r}, '__builtins__': {b}}})\n")


# ---------------------------------------------------------------- running one notebook


class _Run:
    """What happened while the learner's cells ran in one kernel."""

    def __init__(self):
        self.errors: list[str] = []   # "cell 3: ZeroDivisionError: division by zero"
        self.timed_out_at: int | None = None
        self.died_at: int | str | None = None
        self.died_before = 0          # how many of the run's cells completed before the kernel died
        self.results: list | None = None
        self.grading_problem = ""


def _client_class():
    from nbclient import NotebookClient

    class _GradingClient(NotebookClient):
        """Keeps no output of the learner's cells; keeps the grading cell's stdout (capped)."""

        capture = False
        captured = ""

        def output(self, outs, msg, display_id, cell_index):
            if self.capture and msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
                text = msg["content"].get("text", "")
                self.captured = (self.captured + text)[-MAX_KEPT_OUTPUT:]
            return None

        def clear_output(self, outs, msg, cell_index):
            return None

        def handle_comm_msg(self, outs, msg, cell_index):
            return None

    return _GradingClient


def _run_kernel(*args) -> _Run:
    """Run ``cells`` (all, or the first ``upto``) in one fresh kernel, then the grading cell; retry a failed start."""
    for attempt in range(3):
        try:
            return _run_kernel_once(*args)
        except _KernelStartFailed:
            if attempt == 2:
                raise
            time.sleep(1 + attempt)


class _KernelStartFailed(RuntimeError):
    pass


def _run_kernel_once(cells: list[str], upto: int | None, nonce: str, core: str, questions: str, timeout: float,
                     grading_timeout: float, cwd: str) -> _Run:
    import nbformat

    run = _Run()
    chosen = cells if upto is None else cells[:upto]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for _, src in chosen]
    grading = nbformat.v4.new_code_cell(_grading_cell(nonce, core, questions, grading_timeout))
    nb.cells.append(grading)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
           "MPLBACKEND": "Agg"}
    client = _client_class()(nb, timeout=max(1, math.ceil(timeout)), kernel_name="python3", allow_errors=False,
                             interrupt_on_timeout=True, error_on_timeout=_TIMEOUT_REPLY, record_timing=False, store_widget_state=False,
                             startup_timeout=120, shutdown_kernel="immediate", iopub_timeout=10,
                             raise_on_iopub_timeout=True,
                             log=_QUIET)
    deadline = time.monotonic() + timeout
    try:
        context = client.setup_kernel(env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        context.__enter__()
    except Exception as err:  # e.g. "Kernel died before replying to kernel_info"
        raise _KernelStartFailed(f"the kernel did not start: {type(err).__name__}: {err}") from err
    try:
        return _execute(client, nb, run, [position for position, _ in chosen], nonce, timeout, grading_timeout,
                        deadline)
    finally:
        context.__exit__(None, None, None)


def _execute(client, nb, run: _Run, positions: list[int], nonce: str, timeout: float, grading_timeout: float,
             deadline: float):
    """Run the cells; ``run.errors`` and the ``*_at`` fields name cells by their index in the submitted notebook."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    grading = nb.cells[-1]
    for index, cell in enumerate(nb.cells[:-1]):
        left = deadline - time.monotonic()
        if left <= 0:
            run.timed_out_at = positions[index]
            break
        client.timeout = max(1, int(left + 0.999))
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:  # still busy 10 s after the interrupt: nothing more will run in this kernel
            run.timed_out_at = positions[index]
            run.grading_problem = "timeout"
            return run
        except DeadKernelError:
            run.died_at = positions[index]
            run.died_before = index
            return run
        except CellExecutionError as err:
            if err.ename == _TIMEOUT_REPLY["ename"]:  # nbclient interrupted the kernel
                run.timed_out_at = positions[index]
                break
            run.errors.append(f"cell {positions[index]}: {err.ename}: {str(err.evalue)[:200]}")
    client.timeout = math.ceil(grading_timeout + 5)
    client.capture = True
    try:
        client.execute_cell(grading, len(nb.cells) - 1)
    except CellTimeoutError:
        run.grading_problem = "timeout"
        return run
    except CellExecutionError as err:
        run.grading_problem = ("timeout" if err.ename == _TIMEOUT_REPLY["ename"] else
                               f"the grading cell raised {err.ename}: {str(err.evalue)[:200]}")
        if run.grading_problem == "timeout":
            return run
    except DeadKernelError:
        run.grading_problem = "kernel died"
        if run.died_at is None and run.timed_out_at is None:
            run.died_at, run.died_before = "grading", len(positions)
        return run
    tag = f"OPTLIB-GRADE-{nonce} "
    for line in reversed(client.captured.splitlines()):
        if line.startswith(tag):
            try:
                payload = json.loads(line[len(tag):])
            except ValueError:
                continue
            run.results = payload.get("results")
            if payload.get("error"):
                run.grading_problem = payload["error"]
            break
    else:
        if not run.grading_problem:
            run.grading_problem = "the grader's result line was not found in the kernel's output"
    return run


def _read_notebook(path: Path):
    """``(notebook dict, None)`` or ``(None, reason)``."""
    import nbformat

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"file too large ({size} bytes)"
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, f"cannot read the file: {type(err).__name__}: {err}"
    try:
        raw = json.loads(text)
    except ValueError as err:
        return None, f"not valid JSON: {err}"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, "not a Jupyter notebook (no list of cells)"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises several kinds on malformed notebooks
        return None, f"not a readable Jupyter notebook: {type(err).__name__}: {str(err)[:200]}"
    return nb, None


def grade_notebook(path, *, timeout: float = DEFAULT_TIMEOUT, grading_timeout: float = DEFAULT_GRADING_TIMEOUT,
                   chapters: Mapping[str, str] | None = None) -> SubmissionGrade:
    """Grade one submitted notebook; never raises for anything the submission does."""
    path = Path(path)
    start = time.monotonic()
    chapters = known_chapters() if chapters is None else dict(chapters)
    grade = SubmissionGrade(file=path.name, chapter=None, status=STATUS_INVALID)
    try:
        nb, problem = _read_notebook(path)
        grade.chapter = detect_chapter(path.stem, nb, chapters)
        if nb is None:
            grade.error = problem
        elif grade.chapter not in chapters:
            grade.status = STATUS_UNKNOWN_CHAPTER
            grade.error = (f"no questions for chapter {grade.chapter!r}" if grade.chapter else
                           "no chapter found: name the file like NN_name.ipynb (e.g. alice_05_momentum.ipynb)")
        questions = _question_list(grade.chapter, chapters[grade.chapter]) if grade.chapter in chapters else []
        grade.questions = [QuestionGrade(qid, points, 0, "") for qid, points, _ in questions]
        if nb is None or grade.chapter not in chapters:
            for q in grade.questions:
                q.reason = grade.error
            return grade
        _grade_in_kernel(grade, nb, chapters[grade.chapter], timeout, grading_timeout)
    except Exception as err:  # a bug in the grader itself: report it on this submission, keep the batch going
        grade.status = STATUS_GRADER_ERROR
        grade.error = f"{type(err).__name__}: {err}"[:1000]
        for q in grade.questions:
            q.earned, q.reason = 0, f"not graded ({grade.status}: {grade.error})"
    finally:
        grade.seconds = time.monotonic() - start
    return grade


def _grade_in_kernel(grade: SubmissionGrade, nb, questions_source: str, timeout: float, grading_timeout: float):
    core = CORE_PATH.read_text(encoding="utf-8")
    cells = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()
             and not _CHECK_CELL.match(c.source)]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="optlib-grade-") as cwd:
        run = _run_kernel(cells, None, secrets.token_hex(16), core, questions_source, timeout, grading_timeout, cwd)
        notes = list(run.errors)
        if run.died_at is not None and run.results is None:
            # restart, re-run what came before the fatal cell, and grade that
            notes.append("re-ran the cells before it in a new kernel and graded them")
            left = max(1.0, timeout - (time.monotonic() - start))
            again = _run_kernel(cells, run.died_before, secrets.token_hex(16), core, questions_source, left,
                                grading_timeout, cwd)
            if again.results is not None and not again.grading_problem:
                run.results, run.grading_problem = again.results, ""
            run.timed_out_at = again.timed_out_at
    if run.died_at is not None:
        grade.status = STATUS_KERNEL_DIED
        where = "while grading" if run.died_at == "grading" else f"in cell {run.died_at}"
        notes.insert(0, f"kernel died {where}")
    elif run.timed_out_at is not None or run.grading_problem == "timeout":
        grade.status = STATUS_TIMEOUT
        where = f"in cell {run.timed_out_at}" if run.timed_out_at is not None else "while grading"
        notes.insert(0, f"timeout after {timeout:.0f} s {where}")
    elif run.errors:
        grade.status = STATUS_CELL_ERRORS
    else:
        grade.status = STATUS_OK
    if run.grading_problem and run.grading_problem != "timeout" and run.results is None:
        notes.append(run.grading_problem)
        if grade.status == STATUS_OK or grade.status == STATUS_CELL_ERRORS:
            grade.status = STATUS_GRADER_ERROR
    grade.error = "; ".join(notes)[:2000]
    by_id = {}
    for row in run.results or []:
        if isinstance(row, list) and len(row) == 4:
            by_id[str(row[0])] = row
    cut_short = grade.status in (STATUS_TIMEOUT, STATUS_KERNEL_DIED)
    for q in grade.questions:
        row = by_id.get(q.question)
        if row is None:
            q.earned = 0
            q.reason = grade.status if grade.status in (STATUS_TIMEOUT, STATUS_KERNEL_DIED) else \
                f"the test did not run ({grade.error or 'no result'})"
            continue
        earned = int(row[2]) if isinstance(row[2], (int, float)) else 0
        q.earned = max(0, min(q.points, earned))
        q.reason = "" if q.earned == q.points else str(row[3])[:500]
        if cut_short and q.earned < q.points:
            q.reason = f"{grade.status} (not every cell ran): {q.reason}"


# ---------------------------------------------------------------- a folder, and the reports


def _grade_one(args) -> SubmissionGrade:
    path, timeout, grading_timeout, chapters = args
    return grade_notebook(path, timeout=timeout, grading_timeout=grading_timeout, chapters=chapters)


def grade_folder(folder, out=None, *, timeout: float = DEFAULT_TIMEOUT,
                 grading_timeout: float = DEFAULT_GRADING_TIMEOUT, gradescope: bool = False, jobs: int = 1,
                 chapters: Mapping[str, str] | None = None, verbose: bool = False) -> list[SubmissionGrade]:
    """Grade every ``*.ipynb`` in ``folder`` and write the reports into ``out`` (default ``folder/grades``)."""
    folder = Path(folder)
    out = Path(out) if out is not None else folder / "grades"
    paths = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
    chapters = known_chapters() if chapters is None else dict(chapters)
    tasks = [(p, timeout, grading_timeout, chapters) for p in paths]
    grades: list[SubmissionGrade] = []
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for grade in pool.map(_grade_one, tasks):
                grades.append(grade)
                if verbose:
                    _say(grade)
    else:
        for task in tasks:
            grade = _grade_one(task)
            grades.append(grade)
            if verbose:
                _say(grade)
    write_reports(grades, out, gradescope=gradescope)
    return grades


def _say(grade: SubmissionGrade) -> None:
    print(f"{grade.file}: {grade.total}/{grade.max} ({grade.status}, {grade.seconds:.1f} s)"
          + (f" - {grade.error[:150]}" if grade.error else ""), flush=True)


def _qkey(qid: str) -> tuple:
    return (int(qid[1:]) if qid[1:].isdigit() else 10**9, qid)


def _reasons(grade: SubmissionGrade) -> str:
    parts = [f"{q.question} ({q.points - q.earned} pt lost): {q.reason}" for q in grade.questions if q.earned < q.points]
    if grade.error:
        parts.insert(0, grade.error)
    return " | ".join(parts)


def gradescope_results(grade: SubmissionGrade) -> dict:
    """One submission in Gradescope's ``results.json`` format."""
    tests = [{"name": q.question, "score": q.earned, "max_score": q.points,
              "output": "passed" if q.earned == q.points else q.reason} for q in grade.questions]
    return {"score": grade.total, "tests": tests,
            "output": f"{grade.file}: {grade.status}" + (f" - {grade.error}" if grade.error else "")}


def write_reports(grades: list[SubmissionGrade], out, *, gradescope: bool = False) -> None:
    """Write ``<stem>.json`` per submission and ``grades.csv`` into ``out``; with ``gradescope``, also
    ``gradescope/<stem>.json`` (and ``results.json`` for a single submission).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for grade in grades:
        (out / f"{Path(grade.file).stem}.json").write_text(json.dumps(grade.to_json(), indent=1) + "\n",
                                                             encoding="utf-8")
    qids = sorted({q.question for g in grades for q in g.questions}, key=_qkey)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "chapter", *qids, "total", "max", "status", "reasons"])
        for grade in grades:
            earned = {q.question: q.earned for q in grade.questions}
            writer.writerow([grade.file, grade.chapter or "", *[earned.get(q, "") for q in qids], grade.total,
                             grade.max, grade.status, _reasons(grade)])
    if gradescope:
        folder = out / "gradescope"
        folder.mkdir(exist_ok=True)
        for grade in grades:
            (folder / f"{Path(grade.file).stem}.json").write_text(json.dumps(gradescope_results(grade), indent=1)
                                                                  + "\n", encoding="utf-8")
        if len(grades) == 1:
            (out / "results.json").write_text(json.dumps(gradescope_results(grades[0]), indent=1) + "\n",
                                              encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """The command line behind ``python3 make.py grade SUBMISSIONS_DIR [--out DIR] [--timeout S]
    [--grading-timeout S] [--jobs N] [--gradescope]``; returns the exit status.
    """
    parser = argparse.ArgumentParser(prog="make.py grade", description="Grade a folder of submitted notebooks.")
    parser.add_argument("submissions", type=Path, help="folder holding the submitted *.ipynb files")
    parser.add_argument("--out", type=Path, default=None, help="where the reports go (default SUBMISSIONS/grades)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds allowed for a notebook's cells (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--grading-timeout", type=float, default=DEFAULT_GRADING_TIMEOUT,
                        help=f"seconds allowed for the tests after them (default {DEFAULT_GRADING_TIMEOUT})")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    parser.add_argument("--gradescope", action="store_true", help="also write Gradescope results.json files")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    out = args.out if args.out is not None else args.submissions / "grades"
    start = time.monotonic()
    grades = grade_folder(args.submissions, out, timeout=args.timeout, grading_timeout=args.grading_timeout,
                          gradescope=args.gradescope, jobs=args.jobs, verbose=True)
    print(f"graded {len(grades)} notebooks in {time.monotonic() - start:.0f} s; reports in {out} (grades.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
