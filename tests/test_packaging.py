"""What Colab installs: pyproject.toml must not force a reinstall of the packages Colab ships.

Colab's runtime already has torch, numpy, ipywidgets, matplotlib, scikit-learn, scipy and tqdm.
The set-up cell installs optlib with ``--no-deps``, but a plain ``pip install optlib`` elsewhere
resolves these ranges, so an exact pin or an upper bound here would replace Colab's builds and
force a runtime restart. Exact pins belong in requirements.txt, for local builds only.
"""
import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from notebook_utils import ROOT

# versions found on Colab runtimes in 2025-2026, and older ones the ranges should still admit
COLAB_LIKE = {
    "torch": ["2.1.0", "2.6.0", "2.8.0", "2.13.0"],
    "numpy": ["1.26.4", "2.0.2", "2.3.1"],
    "ipywidgets": ["7.7.1", "8.1.5"],
    "matplotlib": ["3.8.0", "3.10.0"],
    "scikit-learn": ["1.5.2", "1.6.1"],
    "scipy": ["1.13.1", "1.16.0"],
    "tqdm": ["4.66.5", "4.67.1"],
}


def dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {r.name: r for r in reqs}


def test_colab_packages_are_admitted_not_pinned():
    deps = dependencies()
    for name, versions in COLAB_LIKE.items():
        assert name in deps, f"{name} missing from pyproject.toml dependencies"
        spec = deps[name].specifier
        for spec_item in spec:
            assert spec_item.operator in (">=", ">"), \
                f"{name}{spec}: only lower bounds, so Colab's own build is kept (pins go in requirements.txt)"
        for version in versions:
            assert spec.contains(Version(version)), f"{name}{spec} would replace Colab's {name} {version}"


def test_requirements_txt_pins_exact_versions_including_cpu_torch():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    assert pins.get("torch") == "2.13.0"
    unpinned = [line for line in lines if "==" not in line and not line.startswith("-")]
    assert not unpinned, f"requirements.txt must pin every package exactly: {unpinned}"


def test_test_oracles_are_pinned_apart_and_leave_torch_alone():
    """requirements-oracles.txt (installed with --no-deps by make.py) pins every oracle exactly; none of
    them is a dependency of optlib; importing them keeps the CPU torch of requirements.txt."""
    lines = [line.strip() for line in (ROOT / "requirements-oracles.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", line) for line in lines), lines
    oracles = {line.split("==")[0].lower().replace("_", "-") for line in lines}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not oracles & {Requirement(d).name.lower().replace("_", "-") for d in project}
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in
              (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    assert not oracles & pinned, "an oracle is pinned twice"
    import curvlinops  # noqa: F401  (the oracle of optlib.curvature and K-FAC)
    import torch

    assert torch.__version__.startswith("2.13.0")
