"""The benchmark scripts run and report every implementation (their timings are never asserted)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_optimizer_step_reports_every_implementation_and_the_floor(capsys):
    bench = _load("optimizer_step")
    bench.main(["--sizes", "3k", "--repeats", "2", "--steps", "1", "--warmup", "1", "--device", "cpu",
                "--threads", "1"])
    out = capsys.readouterr().out
    assert "axpy bandwidth" in out and "floor ms" in out
    for name in bench.OPTIMIZERS:
        assert name in out
    for label in bench.IMPLEMENTATIONS:
        assert label in out
    # optlib's foreach path gives optlib's iterates; torch's differ at most by rounding
    rows = [line for line in out.splitlines() if "largest relative difference" in line]
    assert len(rows) == len(bench.OPTIMIZERS)
    assert all(float(line.split("iterates: ")[1].split(";")[0]) < 1e-5 for line in rows)
