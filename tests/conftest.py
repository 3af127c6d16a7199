import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# tests import the project's tools/ (e.g. the Colab cell template) and their own helpers
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch

# The unit tests use tiny tensors: one thread each is faster than contending for the cores
# (pytest-xdist runs two workers; notebooks run in their own kernels and are unaffected).
torch.set_num_threads(1)
