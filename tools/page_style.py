"""Sphinx extension: the book's own style sheet (tools/static/course.css).

It sets what the page conventions need from the theme (CONTRIBUTING.md, "Pages a reader can
read"): a content column where 88-column code and 7.6-inch figures fit at 1280 px, and a single
search box.
"""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
STYLE_SHEET = "course.css"


def _add_static_path(app, config) -> None:
    if str(STATIC) not in config.html_static_path:
        config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app):
    app.connect("config-inited", _add_static_path)
    app.add_css_file(STYLE_SHEET)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
