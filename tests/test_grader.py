"""The batch grader: solutions score full marks, exercises score 0, bad submissions never spoil a batch.

Runs real kernels. The solutions and exercises are graded once per module (two notebooks at a
time); the corpus of bad submissions is derived from the fastest solutions notebook (or, while
solutions/ is empty, from the throwaway chapter in grading_demo.py) and graded in ONE batch
together with two good copies.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import nbformat
import pytest

import grading_demo
from notebook_utils import ROOT, notebook_paths
from optlib.grading import batch
from optlib.grading.exercises import exercise_notebook

SOLUTIONS = notebook_paths("solutions")
SOLUTION_TIMEOUT = 300
CHAPTERS = {**batch.known_chapters(), grading_demo.CHAPTER: grading_demo.QUESTIONS_SOURCE}


def _solution_notebooks(folder: Path) -> list[Path]:
    """The real solutions notebooks, or the throwaway demo while there are none."""
    if SOLUTIONS:
        return SOLUTIONS
    return [grading_demo.write(folder)]


@pytest.fixture(scope="module")
def solution_grades(tmp_path_factory):
    folder = tmp_path_factory.mktemp("solutions")
    for path in _solution_notebooks(tmp_path_factory.mktemp("demo")):
        (folder / path.name).write_bytes(path.read_bytes())
    grades = batch.grade_folder(folder, batch.default_out(folder), timeout=SOLUTION_TIMEOUT, jobs=2, chapters=CHAPTERS)
    return {g.file: g for g in grades}


@pytest.mark.parametrize("name", [p.name for p in SOLUTIONS] or [f"{grading_demo.CHAPTER}.ipynb"])
def test_solutions_notebook_grades_to_full_marks(solution_grades, name):
    grade = solution_grades[name]
    assert grade.chapter == Path(name).stem
    assert grade.max > 0, f"{name}: its questions module has no questions"
    lost = {q.question: q.reason for q in grade.questions if q.earned < q.points}
    assert not lost and grade.status == batch.STATUS_OK, f"{name}: {grade.status} {grade.error} {lost}"


def test_every_solutions_notebook_has_questions_and_vice_versa():
    notebooks = {p.stem for p in SOLUTIONS}
    modules = set(batch.known_chapters())
    assert notebooks == modules, (f"solutions without questions: {sorted(notebooks - modules)}; "
                                  f"questions without solutions: {sorted(modules - notebooks)}")


@pytest.fixture(scope="module")
def exercise_grades(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exercises")
    for path in _solution_notebooks(tmp_path_factory.mktemp("demo")):
        nb = exercise_notebook(nbformat.read(path, as_version=4), chapter=path.stem)
        nbformat.write(nb, folder / path.name)
    return batch.grade_folder(folder, batch.default_out(folder), timeout=SOLUTION_TIMEOUT, jobs=2, chapters=CHAPTERS)


def test_every_exercises_notebook_runs_and_grades_to_zero(exercise_grades):
    assert exercise_grades
    for grade in exercise_grades:
        assert grade.status in (batch.STATUS_OK, batch.STATUS_CELL_ERRORS), f"{grade.file}: {grade.status} {grade.error}"
        assert grade.max > 0 and grade.total == 0, f"{grade.file} scores {grade.total}/{grade.max} without answers"
        assert all(q.reason for q in grade.questions)


# ---------------------------------------------------------------- a corpus of bad submissions


def _answer_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "# BEGIN SOLUTION" in c.source]


def _insert(nb, index: int, source: str):
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(source)
    cell.id = f"inserted-{index}"
    nb.cells.insert(index, cell)
    return nb


SUBVERSION = '''
import json
import optlib.grading as g
g.expect_close = lambda *a, **k: None
g.expect = lambda *a, **k: None
g.require = lambda ns, name, kind=None: ns.get(name, lambda *a, **k: 0)
g.run_questions = lambda questions, ns: [g.Result(q.id, q.points, q.points) for q in questions]
g.check_namespace = lambda *a, **k: []
CheckFailed = Exception
def expect_close(*a, **k):
    pass
check = lambda q: print(q, "passed")
print("OPTLIB-GRADE-" + "0" * 32 + " " + json.dumps({"results": [["q1", 99, 99, ""]], "error": ""}))
exec = compile = getattr = print = json = globals = type = None
'''


# Cells of hostile submissions (issue 11). Each is inserted after question 1's check, so that the
# answer to q1 has run; each raises when the sandbox stops it, which gives its row a reason.
OVERWRITE = """
import os, pathlib
victim = pathlib.Path({victim!r})
# look for the grader's command line (and so the submissions folder) in /proc
seen = [open(f"/proc/{{p}}/cmdline", "rb").read() for p in os.listdir("/proc") if p.isdigit()]
assert not any(b"make.py" in c or b"pytest" in c for c in seen), "the grader's processes are visible"
try:
    victim.write_text("{{}}")
finally:
    os.remove(victim)
"""
WRITE_OUT = """
import pathlib
(pathlib.Path({out!r}) / "injected.txt").write_text("written by a submission")
"""
READ_SOLUTIONS = """
secret = open({solutions!r}).read()
"""
TCP = """
import socket
socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"hello from a submission")
"""
DAEMON = """
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", {marker!r}], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:  # and a second one, forked directly
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", {marker!r}])
os._exit(0)         # the kernel goes; its children must go with it
"""
MEMORY = """
hog = bytearray(64 << 30)
"""
DISK = """
with open("filler.bin", "wb") as handle:
    while True:
        handle.write(b"x" * (1 << 20))
"""
PATCHES = """
import builtins, math
import numpy, torch

def _worse(value, depth=0):
    if isinstance(value, bool) or depth > 3:
        return value
    if isinstance(value, (torch.Tensor, numpy.ndarray, int, float, numpy.number)):
        return 2 * value + 5     # far outside any tolerance (a step count may be off by one)
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, tuple):
        return tuple(_worse(v, depth + 1) for v in value)
    if isinstance(value, list):
        return [_worse(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {{k: _worse(v, depth + 1) for k, v in value.items()}}
    return value

def _wrong(fn):
    return lambda *args, **kwargs: _worse(fn(*args, **kwargs))

for _name, _value in list(globals().items()):
    if _name.startswith("_") or _name in {{"In", "Out", "get_ipython", "exit", "quit", "check", "checker"}}:
        continue
    if callable(_value) and getattr(_value, "__module__", None) == "__main__":
        globals()[_name] = _wrong(_value)
    elif not callable(_value) and type(_value).__module__ in ("builtins", "torch", "numpy"):
        globals()[_name] = _worse(_value)
# ... and make every comparison say "equal"
yes = lambda *args, **kwargs: True
torch.Tensor.all = lambda self, *a, **k: torch.tensor(True)
torch.Tensor.any = lambda self, *a, **k: torch.tensor(False)
for op in ("__le__", "__lt__", "__ge__", "__gt__", "__eq__"):
    setattr(torch.Tensor, op, lambda self, other: torch.ones_like(self, dtype=torch.bool))
torch.equal = torch.allclose = numpy.allclose = numpy.array_equal = math.isclose = yes
torch.isfinite = lambda t: torch.ones_like(t, dtype=torch.bool)
builtins.abs = lambda x: 0 * x
builtins.all = yes
"""
EVIL = """
import pathlib
import torch

class Evil:
    def _mark(self, why):
        try:
            pathlib.Path({marker!r}).write_text(why)
        except OSError:
            pass
        return self

    def __eq__(self, other):
        self._mark("__eq__")
        return True

    __ne__ = __lt__ = __le__ = __gt__ = __ge__ = lambda self, other: self._mark("compare") is None
    __hash__ = object.__hash__

    def __reduce__(self):
        self._mark("__reduce__")
        return (print, ("unpickled",))

    def __del__(self):
        self._mark("__del__")

    def __float__(self):
        self._mark("__float__")
        return 0.0

    def __getattr__(self, name):
        self._mark("__getattr__ " + name)
        raise AttributeError(name)

    __class__ = property(lambda self: self._mark("__class__") and torch.Tensor)

# every answer: the notebook's functions return an Evil, and its values become one
for _name, _value in list(globals().items()):
    if _name.startswith("_") or _name in ("Evil", "check", "checker", "In", "Out", "get_ipython", "exit", "quit"):
        continue
    if callable(_value) and getattr(_value, "__module__", None) == "__main__":
        globals()[_name] = lambda *args, **kwargs: Evil()
    elif not callable(_value) and not isinstance(_value, type(pathlib)) \\
            and type(_value).__module__ in ("builtins", "torch", "numpy"):
        globals()[_name] = Evil()
"""


def _connections(server: socket.socket, seen: list) -> None:
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        seen.append(connection.recv(100))
        connection.close()


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, solution_grades):
    """Grade bad submissions and two good ones in one batch; returns (chapter, grades by file, out, folder,
    what the hostile submissions left behind)."""
    fastest = min(solution_grades.values(), key=lambda g: g.seconds)
    chapter = fastest.chapter
    source = next((p for p in SOLUTIONS if p.stem == chapter), None)
    base = nbformat.read(source, as_version=4) if source else grading_demo.notebook()
    timeout = max(20, int(3 * fastest.seconds) + 10)
    first = _answer_cells(base)[0]
    # everything question 1 needs comes before its check cell
    after_first = next((i + 1 for i, c in enumerate(base.cells) if c.cell_type == "code"
                        and c.source.strip() in ('check("q1")', "check('q1')")), first + 1)
    folder = tmp_path_factory.mktemp("submissions")
    out = folder.with_name(folder.name + "-reports")
    traces = tmp_path_factory.mktemp("traces")   # where an escaped submission would leave a mark
    marker = f"optlib-daemon-{os.getpid()}-{time.time_ns()}"
    server = socket.create_server(("127.0.0.1", 0))
    received: list = []
    threading.Thread(target=_connections, args=(server, received), daemon=True).start()
    paths = {"victim": str(folder / f"zed_{chapter}.ipynb"), "out": str(out),
             "solutions": str(source or ROOT / "solutions" / f"{chapter}.ipynb"),
             "port": server.getsockname()[1], "marker": marker}
    files: dict[str, object] = {}

    def nb_file(name, nb):
        nbformat.write(nb, folder / name)
        files[name] = nb

    nb_file(f"alice_{chapter}.ipynb", base)
    nb_file(f"zed_{chapter}.ipynb", base)
    nb_file(f"loop_{chapter}.ipynb", _insert(base, after_first, "while True:\n    pass"))
    nb_file(f"stubborn_loop_{chapter}.ipynb", _insert(base, 0, "import time\nwhile True:\n    try:\n"
                                                             "        time.sleep(0.05)\n    except KeyboardInterrupt:\n"
                                                             "        pass"))
    raising = copy.deepcopy(base)
    raising.cells[first].source = 'raise ValueError("boom")\n' + raising.cells[first].source
    nb_file(f"raises_{chapter}.ipynb", raising)
    nb_file(f"dies_{chapter}.ipynb", _insert(base, after_first, "import os\nos._exit(1)"))
    deleted = copy.deepcopy(base)
    del deleted.cells[first]
    nb_file(f"deleted_cell_{chapter}.ipynb", deleted)
    reordered = copy.deepcopy(base)
    reordered.cells = reordered.cells[::-1]
    nb_file(f"reordered_{chapter}.ipynb", reordered)
    nb_file(f"huge_output_{chapter}.ipynb", _insert(base, after_first, "for _ in range(2000):\n    print('x' * 10000)"))
    subverted = exercise_notebook(base, chapter=chapter)
    subverted.cells.append(nbformat.v4.new_code_cell(SUBVERSION))
    subverted.cells[-1].id = "subversion"
    nb_file(f"subverts_{chapter}.ipynb", subverted)
    hostile = {"overwrites": OVERWRITE, "writes_out": WRITE_OUT, "reads_solutions": READ_SOLUTIONS, "tcp": TCP,
               "daemon": DAEMON, "memory": MEMORY, "disk": DISK}
    for name, template in hostile.items():
        nb_file(f"{name}_{chapter}.ipynb", _insert(base, after_first, template.format(**paths)))
    for name, template in (("patches", PATCHES), ("evil", EVIL)):
        nb = copy.deepcopy(base)
        nb.cells.append(nbformat.v4.new_code_cell(template.format(**{**paths, "marker": str(traces / name)})))
        nb.cells[-1].id = name
        nb_file(f"{name}_{chapter}.ipynb", nb)
    unknown = copy.deepcopy(base)
    for cell in unknown.cells:
        if cell.cell_type == "code":
            cell.source = cell.source.replace("checker(", "print(")
    nb_file("98_no_such_chapter.ipynb", unknown)
    (folder / f"not_json_{chapter}.ipynb").write_text("this is { not JSON")
    (folder / f"not_a_notebook_{chapter}.ipynb").write_text('{"hello": "world"}')
    (folder / f"empty_{chapter}.ipynb").write_text("")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    try:
        grades = batch.grade_folder(folder, out, timeout=timeout, grading_timeout=20, jobs=2, gradescope=True,
                                    chapters=CHAPTERS)
        time.sleep(1)
        left = {"processes": _processes_with(marker), "connections": list(received),
                "traces": sorted(p.name for p in traces.iterdir()),
                "changed": sorted(n for n, data in before.items() if (folder / n).read_bytes() != data),
                "added": sorted(p.name for p in folder.iterdir() if p.name not in before)}
    finally:
        server.close()
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
    return chapter, {g.file: g for g in grades}, out, folder, left


HOSTILE = {"overwrites": "FileNotFoundError", "writes_out": "FileNotFoundError",
           "reads_solutions": "FileNotFoundError", "tcp": "ConnectionRefusedError", "daemon": "kernel died",
           "memory": "MemoryError", "disk": "OSError"}


def test_corpus_hostile_submissions_leave_nothing_outside_their_sandbox(corpus):
    chapter, grades, out, folder, left = corpus
    assert left["changed"] == [] and left["added"] == [], f"the submissions folder changed: {left}"
    assert left["processes"] == [], "a process started by a submission outlived its kernel"
    assert left["connections"] == [], "a submission reached a TCP port of the grader's machine"
    assert left["traces"] == [], f"code of a submission's object ran in the grader: {left['traces']}"
    expected = {f"{Path(name).stem}.json" for name in grades} | {"grades.csv", "gradescope"}
    assert {p.name for p in out.iterdir()} == expected, "--out holds something the grader did not write"
    for name in (f"alice_{chapter}.ipynb", f"zed_{chapter}.ipynb"):
        report = json.loads((out / f"{Path(name).stem}.json").read_text())
        assert report["total"] == report["max"] == grades[name].max > 0


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_corpus_hostile_submission_is_stopped_with_a_reason(corpus, name):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"{name}_{chapter}.ipynb"]
    assert HOSTILE[name] in grade.error, grade.to_json()
    assert grade.status in (batch.STATUS_CELL_ERRORS, batch.STATUS_KERNEL_DIED), grade.to_json()
    assert grade.questions[0].earned == grade.questions[0].points, "the answer that ran before the attack counts"


@pytest.mark.parametrize("name", ["patches", "evil"])
def test_corpus_wrong_answers_score_zero_whatever_the_kernel_patches_or_returns(corpus, name):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"{name}_{chapter}.ipynb"]
    assert grade.max > 0 and grade.total == 0, grade.to_json()
    assert all(q.reason for q in grade.questions), grade.to_json()


def test_corpus_good_submissions_keep_full_marks(corpus):
    chapter, grades, _, _, _ = corpus
    for name in (f"alice_{chapter}.ipynb", f"zed_{chapter}.ipynb"):
        grade = grades[name]
        assert grade.status == batch.STATUS_OK and grade.total == grade.max > 0, grade.to_json()


def test_corpus_every_submission_is_reported(corpus):
    _, grades, out, folder, _ = corpus
    assert sorted(grades) == sorted(p.name for p in folder.glob("*.ipynb"))
    with open(out / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["file"] for r in rows) == sorted(grades)
    for row in rows:
        grade = grades[row["file"]]
        assert int(row["total"]) == grade.total and int(row["max"]) == grade.max
        if grade.total < grade.max or grade.status not in (batch.STATUS_OK, batch.STATUS_CELL_ERRORS):
            assert row["reasons"], f"{row['file']} lost points without a reason"


def _lost_all_with(grade, status, words):
    assert grade.status == status, grade.to_json()
    assert grade.total == 0, grade.to_json()
    assert all(q.earned == 0 and words in q.reason for q in grade.questions), grade.to_json()


def test_corpus_infinite_loop_is_interrupted_and_what_ran_is_graded(corpus):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"loop_{chapter}.ipynb"]
    assert grade.status == batch.STATUS_TIMEOUT and "timeout" in grade.error
    assert grade.questions[0].earned == grade.questions[0].points, "the answer that ran before the loop counts"
    assert all("timeout" in q.reason for q in grade.questions if q.earned < q.points)


def test_corpus_uninterruptible_loop_scores_zero_with_reason_timeout(corpus):
    chapter, grades, _, _, _ = corpus
    _lost_all_with(grades[f"stubborn_loop_{chapter}.ipynb"], batch.STATUS_TIMEOUT, "timeout")


def test_corpus_dead_kernel_keeps_what_ran_before_it(corpus):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"dies_{chapter}.ipynb"]
    assert grade.status == batch.STATUS_KERNEL_DIED and "kernel died" in grade.error
    assert grade.questions[0].earned == grade.questions[0].points
    assert all("kernel died" in q.reason for q in grade.questions if q.earned < q.points)


def test_corpus_cell_exception_costs_only_that_answer(corpus):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"raises_{chapter}.ipynb"]
    assert grade.status == batch.STATUS_CELL_ERRORS and "ValueError" in grade.error
    assert grade.questions[0].earned == 0 and grade.questions[0].reason
    assert grade.total > 0 or len(grade.questions) == 1


@pytest.mark.parametrize("name", ["not_json", "not_a_notebook", "empty"])
def test_corpus_corrupt_file_scores_zero(corpus, name):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"{name}_{chapter}.ipynb"]
    assert grade.status == batch.STATUS_INVALID and grade.error
    assert grade.chapter == chapter and grade.max > 0 and grade.total == 0
    assert all(q.reason for q in grade.questions)


def test_corpus_deleted_and_reordered_cells_are_graded_as_they_are(corpus):
    chapter, grades, _, _, _ = corpus
    deleted = grades[f"deleted_cell_{chapter}.ipynb"]
    assert deleted.questions[0].earned == 0 and "not defined" in deleted.questions[0].reason
    reordered = grades[f"reordered_{chapter}.ipynb"]
    assert reordered.status in (batch.STATUS_OK, batch.STATUS_CELL_ERRORS)
    assert len(reordered.questions) == len(deleted.questions)


def test_corpus_huge_output_does_not_hide_the_result(corpus):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"huge_output_{chapter}.ipynb"]
    assert grade.status == batch.STATUS_OK and grade.total == grade.max, grade.to_json()


def test_corpus_redefining_names_and_patching_the_grading_module_earns_nothing(corpus):
    chapter, grades, _, _, _ = corpus
    grade = grades[f"subverts_{chapter}.ipynb"]
    assert grade.total == 0, grade.to_json()
    assert [q.question for q in grade.questions] == [q.question for q in grades[f"alice_{chapter}.ipynb"].questions]


def test_corpus_unknown_chapter(corpus):
    _, grades, _, _, _ = corpus
    grade = grades["98_no_such_chapter.ipynb"]
    assert grade.status == batch.STATUS_UNKNOWN_CHAPTER and grade.chapter == "98_no_such_chapter"
    assert grade.total == grade.max == 0 and "no questions" in grade.error


def test_corpus_json_and_gradescope_formats(corpus):
    chapter, grades, out, _, _ = corpus
    for name, grade in grades.items():
        data = json.loads((out / f"{Path(name).stem}.json").read_text())
        assert set(data) >= {"file", "chapter", "questions", "total", "max", "status", "error"}
        assert data["total"] == sum(q["earned"] for q in data["questions"]) == grade.total
        for q in data["questions"]:
            assert set(q) == {"question", "points", "earned", "reason"}
        gs = json.loads((out / "gradescope" / f"{Path(name).stem}.json").read_text())
        assert gs["score"] == grade.total
        assert [t["name"] for t in gs["tests"]] == [q.question for q in grade.questions]
        for t, q in zip(gs["tests"], grade.questions):
            assert (t["score"], t["max_score"]) == (q.earned, q.points) and isinstance(t["output"], str)
    assert not (out / "results.json").exists(), "results.json is written only for a single submission"


def test_single_submission_writes_gradescope_results_json(tmp_path):
    grade = batch.SubmissionGrade("a_99_demo.ipynb", "99_demo", batch.STATUS_OK,
                                  questions=[batch.QuestionGrade("q1", 2, 2), batch.QuestionGrade("q2", 3, 0, "wrong")])
    batch.write_reports([grade], tmp_path, gradescope=True)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["score"] == 2
    assert data["tests"][1] == {"name": "q2", "score": 0, "max_score": 3, "output": "wrong"}
    header = (tmp_path / "grades.csv").read_text().splitlines()[0]
    assert header == "file,chapter,q1,q2,total,max,status,reasons"


def test_chapter_detection():
    chapters = {"05_momentum": "", "01_random_search": ""}
    assert batch.detect_chapter("alice_05_momentum", None, chapters) == "05_momentum"
    assert batch.detect_chapter("05_Momentum-bob", None, chapters) == "05_momentum"
    meta = {"metadata": {"optlib": {"chapter": "01_random_search"}}, "cells": []}
    assert batch.detect_chapter("homework", meta, chapters) == "01_random_search"
    cells = {"metadata": {}, "cells": [{"cell_type": "code", "source": 'check = checker("05_momentum")'}]}
    assert batch.detect_chapter("homework", cells, chapters) == "05_momentum"
    assert batch.detect_chapter("homework", {"metadata": {}, "cells": []}, chapters) is None


def test_make_py_lists_the_commands():
    text = (ROOT / "make.py").read_text()
    assert '"exercises": exercises' in text and '"grade": grade' in text
