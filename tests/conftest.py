import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# tests import the project's tools/ (e.g. the Colab cell template) and their own helpers
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
