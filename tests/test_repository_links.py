"""The Markdown pages' repository links come from one URL (tools/repository_links.py)."""
from __future__ import annotations

import pytest

from notebook_utils import ROOT
from tools.repository_links import colab_url, substitutions


def test_links_are_built_from_the_given_url_and_branch(tmp_path):
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "01_intro.ipynb").write_text("{}")
    links = substitutions("https://github.com/someone/course", "dev", root=tmp_path)
    assert links["colab_exercises_01_intro"] == (
        "[01_intro](https://colab.research.google.com/github/someone/course/blob/dev/exercises/01_intro.ipynb)")
    assert links["repository_url"] == "<https://github.com/someone/course>"


def test_every_exercise_notebook_gets_a_link():
    links = substitutions("https://github.com/someone/course", "main")
    for path in sorted((ROOT / "exercises").glob("*.ipynb")):
        assert f"colab_exercises_{path.stem}" in links


@pytest.mark.parametrize("url", ["http://github.com/a/b", "https://gitlab.com/a/b", "github.com/a/b", ""])
def test_a_url_colab_cannot_open_is_refused(url):
    with pytest.raises(ValueError, match="https://github.com/"):
        substitutions(url, "main")


def test_pages_that_must_write_the_repository_url_write_the_configured_one():
    """README.md is read on GitHub, where nothing is substituted: its URL must be _config.yml's."""
    import re

    from tools.colab import repository

    url = repository()["url"]
    for page in ("README.md", "CONTRIBUTING.md", "intro.md", "exercises.md", "instructors.md", "api.md"):
        for found in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", (ROOT / page).read_text()):
            assert found == url, f"{page} writes {found}; the repository is {url} (_config.yml)"


def test_colab_url_of_a_notebook():
    assert colab_url("https://github.com/someone/course/", "main", "chapters/01_x.ipynb") == (
        "https://colab.research.google.com/github/someone/course/blob/main/chapters/01_x.ipynb")
