"""Scoring one exercise question in the tests of its checks: a right answer full marks, a wrong one 0."""
from __future__ import annotations

from optlib.grading import Result, check_namespace, load_questions, replay_questions, transcript


def score(chapter: str, namespace, question: str) -> Result:
    """The result of ``check``, asserted equal to what the batch grader decides: the test recorded
    against ``namespace`` (as in the sandbox), its transcript through JSON, and replayed."""
    (result,) = check_namespace(chapter, namespace, only=question)
    (q,) = [q for q in load_questions(chapter) if q.id == question]
    recorded = transcript.loads(transcript.dumps(transcript.record(q.test, namespace)))
    (replayed,) = replay_questions([q], {question: recorded})
    assert (replayed.earned, replayed.message) == (result.earned, result.message), (
        f"{question}: in the notebook {result}, replayed by the grader {replayed}")
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
