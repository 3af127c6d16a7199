"""Exercise checks: immediate feedback in a notebook, and the tests behind the batch grader.

Each chapter's questions live in ``optlib.grading.questions.chNN_name`` (for the notebook
``solutions/NN_name.ipynb``) as a list ``QUESTIONS`` of :class:`Question`. A question's test is
a function of the learner's namespace (the notebook's globals) that raises :class:`CheckFailed`
with a helpful message when the answer is wrong, built from :func:`require`, :func:`expect_close`
and :func:`expect`. Reference values are computed inside the test (closed forms, optlib, torch),
never read from the notebook, and compared with tolerances, never as printed text.

In a notebook::

    from optlib.grading import checker
    check = checker("05_momentum")
    ...
    check("q1")        # prints "q1 passed (2/2 points)" or "q1 failed: <why>"

Because the tests are importable from optlib, ``check`` works in Colab, where the notebook file
itself is not at hand.
"""
from __future__ import annotations

import functools
import importlib
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

__all__ = ["CheckFailed", "as_number", "random_spd", "require_number", "require_tensor", "Question", "Result", "check_namespace", "checker", "expect", "expect_close",
           "judge", "load_questions", "module_name", "replay_questions", "require", "run_questions"]

_CHAPTER = re.compile(r"^(\d{2})_([a-z0-9_]+)$")


class CheckFailed(AssertionError):
    """The answer to a question is wrong or missing; the message says what to look at."""


@dataclass(frozen=True)
class Question:
    """One gradable task: ``test(namespace)`` returns normally when the answer is right."""

    id: str
    points: int
    test: Callable[[Mapping[str, Any]], None]
    title: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"q\d+", self.id):
            raise ValueError(f"question ids are q1, q2, ...; got {self.id!r}")
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 1:
            raise ValueError(f"points must be a positive integer, got {self.points!r}")


@dataclass
class Result:
    """The outcome of one question: points earned of ``points``, and why points were lost."""

    question: str
    points: int
    earned: int
    message: str = ""

    @property
    def passed(self) -> bool:
        """True when every point was earned."""
        return self.earned == self.points


def module_name(chapter: str) -> str:
    """``"05_momentum"`` -> ``"optlib.grading.questions.ch05_momentum"``."""
    match = _CHAPTER.match(chapter)
    if not match:
        raise ValueError(f"chapter must look like '05_momentum' (the notebook's file stem), got {chapter!r}")
    return f"optlib.grading.questions.ch{match.group(1)}_{match.group(2)}"


def load_questions(chapter: str) -> list[Question]:
    """The chapter's questions, in order; a clear error when the chapter has none."""
    try:
        module = importlib.import_module(module_name(chapter))
    except ModuleNotFoundError as err:
        raise ValueError(f"no questions for chapter {chapter!r} (module {module_name(chapter)})") from err
    questions = list(module.QUESTIONS)
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{module.__name__}: duplicate question ids {ids}")
    return questions


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:200]


def require(namespace: Mapping[str, Any], name: str, kind: type | tuple[type, ...] | str | None = None):
    """``namespace[name]``, or :class:`CheckFailed` saying it is missing or of the wrong kind.

    ``kind`` is a type (or tuple of types), or ``"callable"``.
    """
    if name not in namespace:
        raise CheckFailed(f"`{name}` is not defined: run the cell that defines it (and the cells above it)")
    value = namespace[name]
    if kind == "callable":
        if not callable(value):
            raise CheckFailed(f"`{name}` should be a function, got {_describe(value)}")
    elif kind is not None and not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CheckFailed(f"`{name}` should be a {expected}, got {_describe(value)}")
    return value


def as_number(value, what: str) -> float:
    """``value`` (a Python or NumPy number, or a one-element tensor/array) as a finite float, or :class:`CheckFailed`.

    A bool is refused: ``True`` would otherwise pass as 1.0.
    """
    if isinstance(value, bool):
        raise CheckFailed(f"{what} should be a number, got a bool")
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        raise CheckFailed(f"{what} should be a number, got {type(value).__name__}") from None
    expect(math.isfinite(number), f"{what} is {number}: it should be finite")
    return number


def require_number(namespace: Mapping[str, Any], name: str) -> float:
    """``namespace[name]`` as a finite float (see :func:`as_number`), or :class:`CheckFailed`."""
    return as_number(require(namespace, name), f"`{name}`")


def require_tensor(value, what: str, shape=None) -> torch.Tensor:
    """``value`` detached, or :class:`CheckFailed` unless it is a torch tensor (of ``shape``, when given).

    ``what`` names the value in the message, e.g. ``"`newton_step(g, H)`"``.
    """
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch tensor, got {_describe(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckFailed(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value.detach()


def random_spd(n: int, generator: torch.Generator, shift: float = 0.5) -> torch.Tensor:
    """A random symmetric positive definite n x n float64 matrix M M^T / n + shift I (a test input)."""
    m = torch.randn(n, n, generator=generator, dtype=torch.float64)
    return m @ m.T / n + shift * torch.eye(n, dtype=torch.float64)


def expect(condition, message: str) -> None:
    """:class:`CheckFailed` with ``message`` unless ``condition`` is true."""
    if not bool(condition):
        raise CheckFailed(message)


def _as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number or an array of numbers, got {_describe(value)}") from None
    return torch.from_numpy(array)


def expect_close(actual, expected, *, rtol: float = 1e-5, atol: float = 1e-8, what: str = "the result") -> None:
    """:class:`CheckFailed` unless ``actual`` matches ``expected`` within ``|a − e| <= atol + rtol·|e|``.

    Accepts numbers, arrays and tensors (compared in float64 on the CPU); shapes must agree. The
    message gives the expected and actual values (or the largest mismatch) so the learner can act.
    """
    a = _as_tensor(actual, what).to(torch.float64)
    e = _as_tensor(expected, "the expected value").to(torch.float64)
    if a.shape != e.shape:
        raise CheckFailed(f"{what} has shape {tuple(a.shape)}, expected {tuple(e.shape)}")
    if not torch.isfinite(a).all():
        raise CheckFailed(f"{what} contains NaN or inf")
    error = (a - e).abs()
    allowed = atol + rtol * e.abs()
    if (error <= allowed).all():
        return
    if a.numel() == 1:
        raise CheckFailed(f"{what} is {a.item():.6g}, expected {e.item():.6g} (tolerance {allowed.item():.1g})")
    worst = int(torch.argmax(error - allowed))
    index = tuple(int(i) for i in np.unravel_index(worst, tuple(a.shape)))
    bad = int((error > allowed).sum())
    raise CheckFailed(f"{what}: {bad} of {a.numel()} entries differ; at index {index} got "
                      f"{a.reshape(-1)[worst].item():.6g}, expected {e.reshape(-1)[worst].item():.6g}")


def judge(question: Question, run: Callable[[], None]) -> Result:
    """The :class:`Result` of ``run()`` (which runs ``question``'s test); never raises for a wrong answer.

    A test that raises anything other than :class:`CheckFailed` (a crash inside the learner's
    function, say) also scores 0, with the exception named in the message.
    """
    from optlib.grading.transcript import TranscriptError

    q = question
    try:
        run()
    except CheckFailed as failure:
        return Result(q.id, q.points, 0, str(failure) or "wrong answer")
    except NotImplementedError:
        return Result(q.id, q.points, 0, "not answered yet (the stub raises NotImplementedError)")
    except TranscriptError as error:
        return Result(q.id, q.points, 0, f"not graded: {error}"[:500])
    except Exception as error:  # the learner's code crashed inside the test
        return Result(q.id, q.points, 0, f"your code raised {type(error).__name__}: {error}"[:500])
    return Result(q.id, q.points, q.points)


def run_questions(questions, namespace: Mapping[str, Any]) -> list[Result]:
    """Run each question's test against ``namespace`` in this process; never raises for a wrong answer."""
    return [judge(q, functools.partial(q.test, namespace)) for q in questions]


def replay_questions(questions, transcripts: Mapping[str, Any]) -> list[Result]:
    """Decide each question from the transcript its test left in the sandbox (see
    :mod:`optlib.grading.transcript`); a question without one scores 0.
    """
    from optlib.grading import transcript

    results = []
    for q in questions:
        data = transcripts.get(q.id)
        if data is None:
            results.append(Result(q.id, q.points, 0, "the test did not run"))
        else:
            results.append(judge(q, functools.partial(transcript.replay, q.test, data)))
    return results


def check_namespace(chapter: str, namespace: Mapping[str, Any], only: str | None = None) -> list[Result]:
    """Run the chapter's tests (or only question ``only``) against ``namespace``; never raises for a wrong answer.

    A test that raises anything other than :class:`CheckFailed` (a crash inside the learner's
    function, say) also scores 0, with the exception named in the message.
    """
    questions = load_questions(chapter)
    if only is not None:
        questions = [q for q in questions if q.id == only]
        if not questions:
            raise ValueError(f"chapter {chapter!r} has no question {only!r}")
    return run_questions(questions, namespace)


def checker(chapter: str) -> Callable[[str], None]:
    """A ``check(question_id)`` function for one chapter's notebook; it reads the caller's globals."""
    load_questions(chapter)  # fail early on a wrong chapter name

    def check(question: str) -> None:
        namespace = sys._getframe(1).f_globals
        (result,) = check_namespace(chapter, namespace, only=question)
        if result.passed:
            print(f"{question} passed ({result.earned}/{result.points} points)")
        else:
            print(f"{question} failed: {result.message}")

    return check
