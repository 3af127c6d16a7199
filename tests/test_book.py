"""The book builds with zero warnings, and every chapter page has what a reader needs.

Reads the HTML of the book built by the `built_book` fixture (conftest.py): the same command as
`python3 make.py book` (`jupyter-book build . -W -n --keep-going`), into a temporary folder.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from notebook_utils import ROOT, WIDGET_STATE, toc_chapters
from tools.colab import repository
from tools.repository_links import colab_url

@pytest.fixture(scope="module")
def html(built_book) -> Path:
    return built_book


def test_index_and_every_chapter_are_built(html):
    assert (html / "index.html").exists()
    for chapter in toc_chapters():
        assert (html / f"{chapter}.html").exists(), f"{chapter} missing from the build"
    for page in ("exercises", "instructors"):  # the unnumbered part for learners and instructors
        assert (html / f"{page}.html").exists(), f"{page} missing from the build"


@pytest.mark.parametrize("chapter", toc_chapters())
def test_chapter_page_links_to_its_notebook_in_colab(html, chapter):
    page = (html / f"{chapter}.html").read_text()
    repo = repository()
    target = colab_url(repo["url"], repo["branch"], f"{chapter}.ipynb")
    assert target in page, f"no Open-in-Colab link to {target}"


@pytest.mark.parametrize("chapter", toc_chapters())
def test_chapter_page_carries_figures_and_the_widget_default_output(html, chapter):
    page = (html / f"{chapter}.html").read_text()
    assert re.search(r'<img[^>]+src="\.\./_images/[^"]+\.png"', page), "static figures are missing"
    match = re.search(r'<script type="' + re.escape(WIDGET_STATE) + r'">(.*?)</script>', page, re.S)
    assert match, "the page carries no widget state"
    state = json.loads(match.group(1))["state"]
    outputs = [o for m in state.values() if m.get("model_name") == "OutputModel" for o in m["state"].get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the widget's default figure is not in the page"


def test_math_is_passed_to_mathjax(html):
    pages = [(html / f"{c}.html").read_text() for c in toc_chapters()]
    assert all("mathjax" in p.lower() for p in pages)
    assert any(r"\(" in p or r"\[" in p for p in pages), "no inline or display math found"


def test_exercises_page_opens_each_exercise_notebook_in_colab(html):
    page = (html / "exercises.html").read_text()
    repo = repository()
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        target = colab_url(repo["url"], repo["branch"], f"exercises/{path.name}")
        assert f'href="{target}"' in page, f"exercises.html has no Colab link to {target}"


def test_api_signatures_read_like_code(html):
    import html as html_lib

    pages = [html / "api.html", *sorted((html / "api").glob("*.html"))]
    assert len(pages) > 10, "the API reference is one page per module"
    unreadable = []
    for page in pages:
        for sig in re.findall(r'<dt class="sig sig-object py"[^>]*>(.*?)</dt>', page.read_text(), re.S):
            text = html_lib.unescape(re.sub(r"<[^>]+>", "", sig)).replace("¶", "").replace("#", "")
            if any(mark in text for mark in ("<factory>", "$", "~", "<function", " object at ")):
                unreadable.append(f"{page.name}: {' '.join(text.split())[:120]}")
    assert not unreadable, "signatures with autodoc artefacts:\n" + "\n".join(unreadable)
