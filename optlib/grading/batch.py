"""Grade a folder of submitted notebooks: ``python3 make.py grade SUBMISSIONS_DIR``.

Every submission is read before any runs; the submissions folder is never written to, and the
reports go only to ``--out``. Each ``*.ipynb`` runs in its own fresh ``python3`` kernel inside its
own bubblewrap sandbox (:mod:`optlib.grading.sandbox`: read-only system, private scratch, no
network, own pid namespace, resource limits), with a time limit for the whole notebook. The
learner's code cells run in order; a cell that raises does not stop the run, and ``check("qk")``
cells are skipped (they do not count).

Then the grader sends the source of the chapter's questions, of the grading core and of
:mod:`optlib.grading.transcript`; the kernel runs each question's test there, *recording* every
interaction with the learner's objects as plain data, and sends the transcripts back as one JSON
line tagged with a random per-run nonce. The grader *replays* each test in its own process on its
transcript: every comparison, and so every score, is computed by code the
learner's code never touched. Nothing the kernel sends is unpickled or executed, and its own view
of its answers never counts.

A bad submission never stops the batch: a timeout interrupts the kernel and grades what ran
(or, when the kernel cannot be interrupted, kills it and scores 0 with reason "timeout"); a
kernel that dies is restarted, the cells before the fatal one are re-run and graded (what did
not run scores 0, reason "kernel died"); a corrupt file, a file that is not a notebook, a link
and an unknown chapter score 0 with the reason. A test that did not run counts as failed.

Outputs in ``--out`` (default ``SUBMISSIONS_DIR-grades`` beside the folder): ``<stem>.json`` per
submission, ``grades.csv`` (one row per submission), and with ``--gradescope``
``gradescope/<stem>.json`` in Gradescope's ``results.json`` format (plus ``results.json`` itself
when the folder holds a single submission, as in a Gradescope autograder run).
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

__all__ = ["QuestionGrade", "SubmissionGrade", "known_chapters", "detect_chapter", "read_submission", "grade_notebook",
           "grade_folder", "default_out", "write_reports", "gradescope_results", "main"]

DEFAULT_TIMEOUT = 300          # seconds for all of a notebook's cells
DEFAULT_GRADING_TIMEOUT = 120  # seconds for running the tests after them
MAX_FILE_BYTES = 50_000_000    # a larger "notebook" is rejected unread
MAX_KEPT_OUTPUT = 64_000_000   # characters of the grading cell's stdout kept while looking for the result line
QUESTIONS_DIR = Path(__file__).resolve().parent / "questions"
CORE_PATH = Path(__file__).resolve().parent / "__init__.py"
TRANSCRIPT_PATH = Path(__file__).resolve().parent / "transcript.py"
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


# Only transcripts leave this kernel: the grader replays them and decides every score itself.
_payload = {"transcripts": {}, "failures": {}, "error": ""}
_stdout = sys.stdout
_saved = {name: sys.modules.get(name) for name in ("optlib.grading",)}
try:
    _core = _module("_optlib_grading_core_" + _NONCE, _CORE_SOURCE, "<optlib.grading (grader copy)>")
    _transcript = _module("_optlib_transcript_" + _NONCE, _TRANSCRIPT_SOURCE, "<transcript (grader copy)>")
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
                _payload["failures"][_q.id] = "not graded: the time for grading ran out"
                continue
            sys.stdout = _sink                          # what the learner's code prints while tested is dropped
            try:
                signal.setitimer(signal.ITIMER_REAL, _left)
                try:
                    _payload["transcripts"][_q.id] = _transcript.record(_q.test, _ns)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _GradingTimeout:
                _payload["failures"][_q.id] = "the test timed out (your code did not finish)"
            except BaseException as _e:
                _payload["failures"][_q.id] = ("the test was stopped: " + type(_e).__name__ + ": " + str(_e))[:500]
            finally:
                sys.stdout = _stdout
                _sink.seek(0)
                _sink.truncate()
    finally:
        signal.signal(signal.SIGALRM, _old_handler)
except BaseException as _e:
    _payload["error"] = ("the grader could not load the tests: " + type(_e).__name__ + ": " + str(_e))[:1000]
sys.stdout = _stdout
try:
    _line = _transcript.dumps(_payload)
except BaseException as _e:
    _line = json.dumps({"transcripts": {}, "failures": {}, "error": "the answers could not be sent to the grader: "
                        + type(_e).__name__ + ": " + str(_e)[:300]})
_stdout.write("\n" + _TAG + _line + "\n")
_stdout.flush()
'''


def _grading_cell(nonce: str, sources: Mapping[str, str], limit: float) -> str:
    """A cell that needs no name from the learner's namespace: only the `import` statement and a module attribute."""
    variables = {"_NONCE": nonce, "_TAG": f"OPTLIB-GRADE-{nonce} ", "_CORE_SOURCE": sources["core"],
                 "_TRANSCRIPT_SOURCE": sources["transcript"], "_QUESTIONS_SOURCE": sources["questions"],
                 "_LIMIT": float(limit), "__name__": "__optlib_grader__"}
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
        self.payload: dict | None = None  # what the grading cell sent back: transcripts, never scores
        self.grading_problem = ""


def _sandboxed_manager_class():
    from jupyter_client import AsyncKernelManager

    class _SandboxedKernelManager(AsyncKernelManager):
        """A kernel started inside ``self.sandbox``, reached through Unix sockets in its channel folder,
        interrupted by message (a signal from outside does not reach into its pid namespace)."""

        sandbox = None

        @property
        def kernel_spec(self):
            spec = AsyncKernelManager.kernel_spec.fget(self)
            if spec is not None:
                spec.interrupt_mode = "message"
            return spec

        def format_kernel_cmd(self, extra_arguments=None):
            command = super().format_kernel_cmd(extra_arguments)
            self.sandbox.prepare()
            return self.sandbox.wrap(command)

    return _SandboxedKernelManager


def _client_class():
    from nbclient import NotebookClient

    class _GradingClient(NotebookClient):
        """Keeps no output of the learner's cells; keeps the grading cell's stdout (capped)."""

        capture = False
        sandbox = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._chunks: list[str] = []
            self._kept = 0

        @property
        def captured(self) -> str:
            return "".join(self._chunks)

        def create_kernel_manager(self):
            if self.sandbox is None:
                return super().create_kernel_manager()
            channel = self.sandbox.channel
            self.km = _sandboxed_manager_class()(kernel_name=self.kernel_name, transport="ipc",
                                                  ip=str(channel / "kernel"),
                                                  connection_file=str(channel / "connection.json"))
            self.km.sandbox = self.sandbox
            return self.km

        def output(self, outs, msg, display_id, cell_index):
            if self.capture and msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
                text = str(msg["content"].get("text", ""))
                self._chunks.append(text)
                self._kept += len(text)
                while self._kept > MAX_KEPT_OUTPUT and len(self._chunks) > 1:
                    self._kept -= len(self._chunks.pop(0))
            return None

        def clear_output(self, outs, msg, cell_index):
            return None

        def handle_comm_msg(self, outs, msg, cell_index):
            return None

    return _GradingClient


def _run_kernel(*args, **kwargs) -> _Run:
    """Run ``cells`` (all, or the first ``upto``) in one fresh kernel, then the grading cell; retry a failed start."""
    for attempt in range(3):
        try:
            return _run_kernel_once(*args, **kwargs)
        except _KernelStartFailed:
            if attempt == 2:
                raise
            time.sleep(1 + attempt)


class _KernelStartFailed(RuntimeError):
    pass


def _run_kernel_once(cells: list[tuple[int, str]], upto: int | None, sources: Mapping[str, str], timeout: float,
                     grading_timeout: float, work: Path, limits, notebook: Path | None) -> _Run:
    import nbformat

    run = _Run()
    nonce = secrets.token_hex(16)
    chosen = cells if upto is None else cells[:upto]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for _, src in chosen]
    grading = nbformat.v4.new_code_cell(_grading_cell(nonce, sources, grading_timeout))
    nb.cells.append(grading)
    channel = Path(tempfile.mkdtemp(prefix="kernel-", dir=work))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
           "MPLBACKEND": "Agg"}
    client = _client_class()(nb, timeout=max(1, math.ceil(timeout)), kernel_name="python3", allow_errors=False,
                             interrupt_on_timeout=True, error_on_timeout=_TIMEOUT_REPLY, record_timing=False,
                             store_widget_state=False, startup_timeout=120, shutdown_kernel="immediate",
                             iopub_timeout=10, raise_on_iopub_timeout=True, log=_QUIET)
    cwd = channel
    if limits is not None:
        from optlib.grading.sandbox import Sandbox

        client.sandbox = Sandbox(channel, limits, notebook=notebook)
    else:
        cwd = Path(tempfile.mkdtemp(prefix="scratch-", dir=work))
    deadline = time.monotonic() + timeout
    try:
        context = client.setup_kernel(env=env, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        context.__enter__()
    except Exception as err:  # e.g. "Kernel died before replying to kernel_info"
        raise _KernelStartFailed(f"the kernel did not start: {type(err).__name__}: {err}") from err
    try:
        return _execute(client, nb, run, [position for position, _ in chosen], nonce, deadline, grading_timeout)
    finally:
        context.__exit__(None, None, None)


def _execute(client, nb, run: _Run, positions: list[int], nonce: str, deadline: float, grading_timeout: float):
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
            from optlib.grading.transcript import TranscriptError, loads

            try:
                payload = loads(line[len(tag):])
            except TranscriptError:
                continue
            if isinstance(payload, dict):
                run.payload = payload
                if payload.get("error"):
                    run.grading_problem = str(payload["error"])[:1000]
            break
    else:
        if not run.grading_problem:
            run.grading_problem = "the grader's result line was not found in the kernel's output"
    return run


def _read_notebook(data: bytes | None, problem: str = ""):
    """``(notebook dict, None)`` or ``(None, reason)`` from a submission's bytes (read before any ran)."""
    import nbformat

    if data is None:
        return None, problem or "cannot read the file"
    if len(data) > MAX_FILE_BYTES:
        return None, f"file too large ({len(data)} bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"cannot read the file: {type(err).__name__}: {err}"
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as err:
        return None, f"not valid JSON: {err}"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, "not a Jupyter notebook (no list of cells)"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises several kinds on malformed notebooks
        return None, f"not a readable Jupyter notebook: {type(err).__name__}: {str(err)[:200]}"
    return nb, None


def read_submission(path) -> tuple[bytes | None, str]:
    """The bytes of one submitted file, or ``(None, reason)``: a link, a non-file or an oversized file is
    not read (a link could point at the instructor's own files)."""
    path = Path(path)
    try:
        if path.is_symlink():
            return None, "a symbolic link, not a notebook file"
        if not path.is_file():
            return None, "not a regular file"
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"file too large ({size} bytes)"
        return path.read_bytes()[:MAX_FILE_BYTES + 1], ""
    except OSError as err:
        return None, f"cannot read the file: {type(err).__name__}: {err}"


def grade_notebook(path, *, timeout: float = DEFAULT_TIMEOUT, grading_timeout: float = DEFAULT_GRADING_TIMEOUT,
                   chapters: Mapping[str, str] | None = None, sandbox: bool = True, limits=None,
                   data: bytes | None = None, problem: str = "") -> SubmissionGrade:
    """Grade one submitted notebook; never raises for anything the submission does.

    ``data`` is the file's content when the caller read it already (:func:`grade_folder` reads every
    submission before running any); ``sandbox=False`` runs the kernel unconfined (trusted notebooks only).
    """
    path = Path(path)
    start = time.monotonic()
    chapters = known_chapters() if chapters is None else dict(chapters)
    if data is None and not problem:
        data, problem = read_submission(path)
    grade = SubmissionGrade(file=path.name, chapter=None, status=STATUS_INVALID)
    try:
        nb, problem = _read_notebook(data, problem)
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
        if sandbox and limits is None:
            from optlib.grading.sandbox import Limits

            limits = Limits(cpu_seconds=int(timeout + grading_timeout) + 120)
        _grade_in_kernel(grade, nb, data, chapters[grade.chapter], timeout, grading_timeout,
                         limits if sandbox else None)
    except Exception as err:  # a bug in the grader itself: report it on this submission, keep the batch going
        grade.status = STATUS_GRADER_ERROR
        grade.error = f"{type(err).__name__}: {err}"[:1000]
        for q in grade.questions:
            q.earned, q.reason = 0, f"not graded ({grade.status}: {grade.error})"
    finally:
        grade.seconds = time.monotonic() - start
    return grade


def _sources(questions_source: str) -> dict[str, str]:
    return {"core": CORE_PATH.read_text(encoding="utf-8"), "transcript": TRANSCRIPT_PATH.read_text(encoding="utf-8"),
            "questions": questions_source}


def _grade_in_kernel(grade: SubmissionGrade, nb, data: bytes, questions_source: str, timeout: float,
                     grading_timeout: float, limits):
    cells = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()
             and not _CHECK_CELL.match(c.source)]
    sources = _sources(questions_source)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="optlib-grade-") as work:
        work = Path(work)
        notebook = work / "submission.ipynb"
        notebook.write_bytes(data)
        notebook.chmod(0o644)
        run = _run_kernel(cells, None, sources, timeout, grading_timeout, work, limits, notebook)
        notes = list(run.errors)
        if run.died_at is not None and run.payload is None:
            # restart, re-run what came before the fatal cell, and grade that
            notes.append("re-ran the cells before it in a new kernel and graded them")
            left = max(1.0, timeout - (time.monotonic() - start))
            again = _run_kernel(cells, run.died_before, sources, left, grading_timeout, work, limits, notebook)
            if again.payload is not None and not again.grading_problem:
                run.payload, run.grading_problem = again.payload, ""
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
    if run.grading_problem and run.grading_problem != "timeout" and run.payload is None:
        notes.append(run.grading_problem)
        if grade.status == STATUS_OK or grade.status == STATUS_CELL_ERRORS:
            grade.status = STATUS_GRADER_ERROR
    grade.error = "; ".join(notes)[:2000]
    decided = _judge(grade.chapter, questions_source, run.payload, grading_timeout) if run.payload else {}
    cut_short = grade.status in (STATUS_TIMEOUT, STATUS_KERNEL_DIED)
    for q in grade.questions:
        result = decided.get(q.question)
        if result is None:
            q.earned = 0
            q.reason = grade.status if cut_short else f"the test did not run ({grade.error or 'no result'})"
            continue
        q.earned = max(0, min(q.points, result.earned))
        q.reason = "" if q.earned == q.points else (result.message or "wrong answer")[:500]
        if cut_short and q.earned < q.points:
            q.reason = f"{grade.status} (not every cell ran): {q.reason}"


# ---------------------------------------------------------------- the judge, in the grader's process

_JUDGE_MODULES: dict[str, object] = {}


class _JudgeTimeout(BaseException):
    pass


def _questions_module(chapter: str, source: str):
    """The chapter's questions, loaded in this process from the grader's own copy of their source."""
    import hashlib
    import types

    key = hashlib.sha256(source.encode("utf-8")).hexdigest()
    module = _JUDGE_MODULES.get(key)
    if module is None:
        module = types.ModuleType(f"_optlib_judge_{chapter}")
        exec(compile(source, f"<questions {chapter}>", "exec"), module.__dict__)
        _JUDGE_MODULES[key] = module
    return module


def _judge(chapter: str, questions_source: str, payload, grading_timeout: float) -> dict:
    """``{question id: Result}``, each decided here by replaying the question's test on the transcript
    the sandbox sent (:mod:`optlib.grading.transcript`); the kernel's own view of its answers never counts.
    """
    import functools
    import signal
    import threading

    import torch

    from optlib.grading import Result, judge
    from optlib.grading.transcript import replay

    transcripts = payload.get("transcripts") if isinstance(payload, dict) else None
    failures = payload.get("failures") if isinstance(payload, dict) else None
    transcripts = transcripts if isinstance(transcripts, dict) else {}
    failures = failures if isinstance(failures, dict) else {}
    module = _questions_module(chapter, questions_source)
    timed = threading.current_thread() is threading.main_thread()
    deadline = time.monotonic() + grading_timeout

    def alarm(signum, frame):
        raise _JudgeTimeout()

    decided = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as in the kernel: the references are computed the same way
    old = signal.signal(signal.SIGALRM, alarm) if timed else None
    try:
        for q in module.QUESTIONS:
            data = transcripts.get(q.id)
            if data is None:
                why = failures.get(q.id)
                decided[q.id] = Result(q.id, q.points, 0, str(why)[:500] if why else "the test did not run")
                continue
            left = deadline - time.monotonic()
            if left <= 0.1:
                decided[q.id] = Result(q.id, q.points, 0, "not graded: the time for grading ran out")
                continue
            try:
                if timed:
                    signal.setitimer(signal.ITIMER_REAL, left)
                decided[q.id] = judge(q, functools.partial(replay, q.test, data))
            except _JudgeTimeout:
                decided[q.id] = Result(q.id, q.points, 0, "not graded: replaying your answers took too long")
            except RecursionError:
                decided[q.id] = Result(q.id, q.points, 0, "not graded: your answers are nested too deeply")
            finally:
                if timed:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        if timed:
            signal.signal(signal.SIGALRM, old)
        torch.set_num_threads(threads)
    return decided


# ---------------------------------------------------------------- a folder, and the reports


def _grade_one(args) -> SubmissionGrade:
    path, data, problem, options = args
    return grade_notebook(path, data=data, problem=problem, **options)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def default_out(folder) -> Path:
    """Where the reports go by default: ``<folder>-grades`` beside the submissions, never inside them."""
    folder = Path(folder).resolve()
    return folder.with_name(folder.name + "-grades")


def grade_folder(folder, out=None, *, timeout: float = DEFAULT_TIMEOUT,
                 grading_timeout: float = DEFAULT_GRADING_TIMEOUT, gradescope: bool = False, jobs: int = 1,
                 chapters: Mapping[str, str] | None = None, verbose: bool = False, sandbox: bool = True,
                 limits=None) -> list[SubmissionGrade]:
    """Grade every ``*.ipynb`` in ``folder`` and write the reports into ``out`` (default :func:`default_out`).

    Every submission is read before any runs, and the folder is never written to. With ``sandbox``
    (the default) each kernel runs in its own bubblewrap sandbox (:mod:`optlib.grading.sandbox`), and a
    machine where that cannot work stops the batch with :class:`~optlib.grading.sandbox.SandboxUnavailable`
    before anything runs.
    """
    folder = Path(folder)
    out = Path(out) if out is not None else default_out(folder)
    if _inside(out, folder):
        raise ValueError(f"--out {out} is inside the submissions folder {folder}: grading never writes there")
    if _inside(folder, out):
        raise ValueError(f"the submissions folder {folder} is inside --out {out}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if sandbox:
        from optlib.grading import sandbox as sandboxing

        limits = limits or sandboxing.Limits(cpu_seconds=int(timeout + grading_timeout) + 120)
        sandboxing.check(limits)
    paths = sorted(p for p in folder.glob("*.ipynb") if p.is_file() or p.is_symlink())
    chapters = known_chapters() if chapters is None else dict(chapters)
    options = {"timeout": timeout, "grading_timeout": grading_timeout, "chapters": chapters, "sandbox": sandbox,
               "limits": limits}
    tasks = [(p, *read_submission(p), options) for p in paths]   # all read before any runs
    grades: list[SubmissionGrade] = []
    from concurrent.futures.process import BrokenProcessPool

    retry = []
    with _worker_pool(min(jobs, max(1, len(tasks)))) as pool:
        futures = [(task, pool.submit(_grade_one, task)) for task in tasks]
        for task, future in futures:
            try:
                grade = future.result()
            except BrokenProcessPool:  # a grading process died: find out whose, below
                retry.append(task)
                continue
            grades.append(grade)
            if verbose:
                _say(grade)
    for task in retry:  # alone, so that a process that dies again names its own submission
        with _worker_pool(1) as pool:
            try:
                grade = pool.submit(_grade_one, task).result()
            except BrokenProcessPool:
                grade = _broken(task)
        grades.append(grade)
        if verbose:
            _say(grade)
    grades.sort(key=lambda g: g.file)
    write_reports(grades, out, gradescope=gradescope)
    return grades


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes that grade (and judge) submissions, so that nothing a submission causes can stop this one.

    They are forked: the judge runs torch with one thread, which never enters a thread pool
    inherited from this process.
    """
    return ProcessPoolExecutor(max_workers=workers)


def _broken(task) -> SubmissionGrade:
    """The row of a submission whose grading process died, even alone."""
    return SubmissionGrade(file=Path(task[0]).name, chapter=None, status=STATUS_GRADER_ERROR,
                           error="the grading process died while grading this notebook")


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
    [--grading-timeout S] [--jobs N] [--gradescope] [--memory MB] [--no-sandbox]``; returns the exit status.
    """
    from optlib.grading.sandbox import Limits, SandboxUnavailable

    parser = argparse.ArgumentParser(prog="make.py grade", description="Grade a folder of submitted notebooks.")
    parser.add_argument("submissions", type=Path, help="folder holding the submitted *.ipynb files (never written to)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the reports go (default: SUBMISSIONS-grades beside the folder)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds allowed for a notebook's cells (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--grading-timeout", type=float, default=DEFAULT_GRADING_TIMEOUT,
                        help=f"seconds allowed for the tests after them (default {DEFAULT_GRADING_TIMEOUT})")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    parser.add_argument("--gradescope", action="store_true", help="also write Gradescope results.json files")
    parser.add_argument("--memory", type=int, default=Limits.memory_mb,
                        help=f"address space of a submission's kernel, MB (default {Limits.memory_mb})")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run kernels without the bubblewrap sandbox: ONLY for notebooks you trust")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.timeout <= 0 or args.grading_timeout <= 0:
        parser.error("--timeout and --grading-timeout must be positive")
    out = args.out if args.out is not None else default_out(args.submissions)
    try:
        limits = None if args.no_sandbox else Limits(memory_mb=args.memory,
                                                     cpu_seconds=int(args.timeout + args.grading_timeout) + 120)
    except ValueError as err:
        parser.error(str(err))
    if args.no_sandbox:
        print("warning: --no-sandbox: the notebooks' code runs with your permissions, network and files",
              file=sys.stderr)
    start = time.monotonic()
    try:
        grades = grade_folder(args.submissions, out, timeout=args.timeout, grading_timeout=args.grading_timeout,
                              gradescope=args.gradescope, jobs=args.jobs, verbose=True, sandbox=not args.no_sandbox,
                              limits=limits)
    except (SandboxUnavailable, ValueError) as err:
        print(f"make.py grade: error: {err}", file=sys.stderr)
        return 2
    print(f"graded {len(grades)} notebooks in {time.monotonic() - start:.0f} s; reports in {out} (grades.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
