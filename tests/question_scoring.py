"""Scoring one exercise question in the tests of its checks: a right answer full marks, a wrong one 0."""
from __future__ import annotations

from optlib.grading import Result, check_namespace


def score(chapter: str, namespace, question: str) -> Result:
    (result,) = check_namespace(chapter, namespace, only=question)
    return result


def assert_full(chapter: str, namespace, question: str) -> Result:
    result = score(chapter, namespace, question)
    assert result.passed, result.message
    return result


def assert_zero(chapter: str, namespace, question: str) -> Result:
    result = score(chapter, namespace, question)
    assert result.earned == 0, f"a wrong answer to {question} scored {result.earned}"
    assert result.message, f"a wrong answer to {question} lost its points without a reason"
    return result


def assert_right_and_wrong(chapter: str, question: str, right, wrongs) -> None:
    """``right`` (a namespace) earns full marks; every namespace in ``wrongs`` earns 0 with a reason."""
    assert_full(chapter, right, question)
    for wrong in wrongs:
        assert_zero(chapter, wrong, question)
