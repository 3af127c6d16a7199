"""The perturbed nbval pass (tools/robustness.py): its environments reach the notebook kernel, and
a stored output that only one numerical environment produces fails it; `make.py test` runs it."""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from tools import robustness

ROOT = Path(__file__).resolve().parent.parent


def test_the_issue_environments_are_all_there():
    env = robustness.ENVIRONMENTS
    assert env["aten-default"] == {"ATEN_CPU_CAPABILITY": "default"}
    assert env["aten-avx2"] == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert env["mkl-compatible"] == {"MKL_CBWR": "COMPATIBLE"}
    assert env["threads-2"]["OPTLIB_NUM_THREADS"] == "2" and env["threads-2"]["OMP_NUM_THREADS"] == "2"
    assert set(robustness.CI_PASSES) <= set(env) and len(robustness.CI_PASSES) >= 2


def test_the_default_pass_covers_every_chapter_and_solutions_notebook():
    paths = robustness.notebooks()
    assert paths == sorted(paths, key=lambda p: (p.split("/")[0] != "chapters", p))
    assert {p.split("/")[0] for p in paths} == {"chapters", "solutions"}
    assert len([p for p in paths if p.startswith("chapters/")]) == len(list((ROOT / "chapters").glob("*.ipynb")))


def test_a_path_that_is_not_a_notebook_is_refused(capsys):
    with pytest.raises(SystemExit):
        robustness.main(["README.md"])
    assert "not a notebook" in capsys.readouterr().err


def test_make_test_runs_the_perturbed_pass():
    source = (ROOT / "make.py").read_text()
    body = source[source.index("def test(args)"):source.index("def check_robust(args)")]
    assert '"tools.robustness"' in body


def _capability_in(env: dict) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="this CPU runs ATen's default kernels anyway")
def test_a_notebook_storing_one_environments_output_fails_the_pass_and_passes_under_that_environment(tmp_path, monkeypatch):
    # the kernel of the perturbed pass must see the environment: a notebook whose stored output is the
    # capability ATen picked under ATEN_CPU_CAPABILITY=default passes there and fails in the plain environment
    perturbed = _capability_in({**os.environ, **robustness.ENVIRONMENTS["aten-default"]})
    assert perturbed == "DEFAULT"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("import torch\nprint(torch.backends.cpu.get_cpu_capability())")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="DEFAULT\n")]
    cell.execution_count = 1
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path = tmp_path / "capability.ipynb"
    nbformat.write(nb, path)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    code, _ = robustness.run_nbval("aten-default", [str(path)], workers=0)
    assert code == 0
    monkeypatch.setitem(robustness.ENVIRONMENTS, "plain", {})
    code, _ = robustness.run_nbval("plain", [str(path)], workers=0)
    assert code == 1
