"""optlib.grading core: require, expect_close, check_namespace and the in-notebook check()."""
import sys
import types

import numpy as np
import pytest
import torch

from optlib import grading as G


@pytest.fixture
def demo_chapter(monkeypatch):
    """A throwaway chapter 99_demo with two questions, registered as an importable module."""
    def q1(ns):
        f = G.require(ns, "square", "callable")
        G.expect_close(f(torch.tensor([1.0, -3.0])), torch.tensor([1.0, 9.0]), what="square([1, -3])")

    def q2(ns):
        G.expect_close(G.require(ns, "answer", (int, float)), 0.25, rtol=1e-3, what="answer")

    module = types.ModuleType("optlib.grading.questions.ch99_demo")
    module.QUESTIONS = [G.Question("q1", 2, q1, "square"), G.Question("q2", 1, q2, "a number")]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return "99_demo"


def test_full_marks_and_zero(demo_chapter):
    good = G.check_namespace(demo_chapter, {"square": lambda x: x * x, "answer": 0.25})
    assert [(r.question, r.earned, r.points) for r in good] == [("q1", 2, 2), ("q2", 1, 1)]
    bad = G.check_namespace(demo_chapter, {"square": lambda x: 2 * x, "answer": "0.25"})
    assert [r.earned for r in bad] == [0, 0]
    assert "differ" in bad[0].message and "should be a int or float" in bad[1].message


def test_crashes_and_stubs_score_zero_with_a_reason(demo_chapter):
    def stub(x):
        raise NotImplementedError

    def crash(x):
        return x @ x  # a dot product: a scalar, the wrong shape
    results = G.check_namespace(demo_chapter, {"square": stub}, only="q1")
    assert results[0].earned == 0 and "not answered yet" in results[0].message
    results = G.check_namespace(demo_chapter, {"square": crash}, only="q1")
    assert results[0].earned == 0 and "shape" in results[0].message
    results = G.check_namespace(demo_chapter, {"square": lambda x: 1 / 0}, only="q1")
    assert "ZeroDivisionError" in results[0].message
    assert "not defined" in G.check_namespace(demo_chapter, {}, only="q2")[0].message


def test_checker_reads_the_callers_globals_and_prints(demo_chapter, capsys):
    check = G.checker(demo_chapter)
    namespace = {"check": check, "square": lambda x: x * x}
    exec("check('q1')\ncheck('q2')", namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "q1 passed (2/2 points)"
    assert out[1].startswith("q2 failed: `answer` is not defined")


def test_expect_close_tolerances_and_messages():
    G.expect_close(1.0 + 1e-9, 1.0)
    G.expect_close(np.array([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7]), rtol=1e-6)
    with pytest.raises(G.CheckFailed, match=r"x is 1.1, expected 1"):
        G.expect_close(1.1, 1.0, what="x")
    with pytest.raises(G.CheckFailed, match=r"shape \(3,\), expected \(2,\)"):
        G.expect_close([1, 2, 3], [1, 2])
    with pytest.raises(G.CheckFailed, match="NaN or inf"):
        G.expect_close(float("nan"), 1.0)
    with pytest.raises(G.CheckFailed, match="should be a number"):
        G.expect_close("abc", 1.0)
    with pytest.raises(G.CheckFailed, match=r"1 of 2 entries differ; at index \(1,\)"):
        G.expect_close([1.0, 5.0], [1.0, 2.0])


def test_bad_chapter_and_question_names(demo_chapter):
    with pytest.raises(ValueError, match="must look like"):
        G.module_name("momentum")
    with pytest.raises(ValueError, match="no questions for chapter"):
        G.load_questions("98_nothing_here")
    with pytest.raises(ValueError, match="has no question 'q7'"):
        G.check_namespace(demo_chapter, {}, only="q7")
    with pytest.raises(ValueError, match="question ids"):
        G.Question("1", 1, lambda ns: None)
    with pytest.raises(ValueError, match="points"):
        G.Question("q1", 0, lambda ns: None)


def test_as_number_and_require_number():
    assert G.as_number(np.float32(0.5), "x") == 0.5
    assert G.as_number(torch.tensor([2.0]), "x") == 2.0
    assert G.require_number({"lr": 3}, "lr") == 3.0
    with pytest.raises(G.CheckFailed, match="got a bool"):
        G.as_number(True, "x")
    with pytest.raises(G.CheckFailed, match="should be a number, got str"):
        G.as_number("abc", "x")
    with pytest.raises(G.CheckFailed, match="should be a number, got Tensor"):
        G.as_number(torch.ones(3), "x")
    with pytest.raises(G.CheckFailed, match="it should be finite"):
        G.as_number(float("inf"), "x")
    with pytest.raises(G.CheckFailed, match="`lr` is not defined"):
        G.require_number({}, "lr")
