"""Sphinx extension: links to the course repository, derived from _config.yml's ``repository``.

The canonical URL is written once, in _config.yml; Jupyter Book turns it into the theme's
``repository_url``/``repository_branch`` (which the Colab buttons use), and the Colab set-up cell
reads it with :func:`tools.colab.repository`. This extension gives the Markdown pages the same
URL as MyST substitutions, so exercises.md writes ``{{ colab_exercises_01_random_search }}``
instead of a hard-coded address:

- ``colab_exercises_<stem>``: a link opening ``exercises/<stem>.ipynb`` in Colab;
- ``repository_url``: the repository's address.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLAB = "https://colab.research.google.com/github"


def colab_url(url: str, branch: str, path: str) -> str:
    """Colab's address for the notebook ``path`` (relative to the repository root) of ``url``@``branch``."""
    if not url.startswith("https://github.com/"):
        raise ValueError(f"the repository URL in _config.yml must be a https://github.com/ address, got {url!r}")
    slug = url.removeprefix("https://github.com/").rstrip("/")
    return f"{COLAB}/{slug}/blob/{branch}/{path}"


def substitutions(url: str, branch: str, root: Path = ROOT) -> dict[str, str]:
    """The MyST substitutions above, for the repository ``url`` at ``branch``."""
    colab_url(url, branch, "")  # validates the URL even when there is no exercise yet
    links = {"repository_url": f"<{url}>"}
    for path in sorted((root / "exercises").glob("*.ipynb")):
        links[f"colab_exercises_{path.stem}"] = f"[{path.stem}]({colab_url(url, branch, f'exercises/{path.name}')})"
    return links


def _configure(app, config) -> None:
    options = config.html_theme_options
    url, branch = options.get("repository_url"), options.get("repository_branch") or "main"
    if not url:
        raise ValueError("_config.yml has no repository url: the Colab links need one")
    config.myst_substitutions = {**substitutions(url, branch), **(config.myst_substitutions or {})}


def setup(app):
    app.connect("config-inited", _configure, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
