"""Replace text in the one cell of a notebook that contains it: ``python tools/edit_cell.py NB OLD NEW``.

Keeps the notebook's JSON layout (1-space indent, as Jupyter writes it); refuses ambiguous edits.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def edit(path: Path, old: str, new: str) -> None:
    nb = json.loads(path.read_text())
    hits = [c for c in nb["cells"] if old in "".join(c["source"])]
    if len(hits) != 1:
        raise SystemExit(f"{path}: {len(hits)} cells contain {old!r}; need exactly one")
    source = "".join(hits[0]["source"]).replace(old, new)
    hits[0]["source"] = source.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    edit(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
