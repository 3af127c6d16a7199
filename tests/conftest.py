import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# tests import the project's tools/ (e.g. the Colab cell template) and their own helpers
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import subprocess
import warnings

import matplotlib

# no screen: figures are drawn off-screen (a widget's plt.show() then only warns, see figures_closed)
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# The unit tests use tiny tensors: one thread each is faster than contending for the cores
# (pytest-xdist runs two workers; notebooks run in their own kernels and are unaffected).
torch.set_num_threads(1)


@pytest.fixture
def figures_closed():
    """For tests that draw widgets: no warning from plt.show() on the off-screen backend (a notebook
    kernel would show the figure there), and every figure closed afterwards."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-interactive.*")
        yield
    plt.close("all")


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The book built as `python3 make.py book` builds it (-W -n: any warning fails), into a temporary
    folder; returns its html folder. Built once per test process (xdist worker)."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return out / "_build" / "html"
