"""optlib.grading.sandbox: what a submission's kernel can and cannot reach, checked from inside one.

Each guarantee that instructors.md states is probed here by a short Python program run in a real
sandbox (bubblewrap is installed by the grader when missing, as on CI); the whole-batch attacks
are in tests/test_grader.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from notebook_utils import ROOT
from optlib.grading import batch, sandbox

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bubblewrap sandboxes need Linux")

PROBE = r'''
import json, os, resource, socket
report = {"uid": os.getuid(), "cwd": os.getcwd(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
for name, path in (("solutions", SOLUTIONS), ("channel_file", CHANNEL_FILE)):
    report[name] = os.path.exists(path)
for name, path in (("repository", REPOSITORY), ("home", HOME)):
    report[name] = sorted(os.listdir(path)) if os.path.isdir(path) else []
report["optlib"] = os.path.exists(OPTLIB)
try:
    open("/usr/optlib-probe", "w")
    report["usr_writable"] = True
except OSError as err:
    report["usr_writable"] = type(err).__name__
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2)
    report["tcp"] = "connected"
except OSError as err:
    report["tcp"] = type(err).__name__
try:
    socket.getaddrinfo("pypi.org", 443)
    report["dns"] = "resolved"
except OSError as err:
    report["dns"] = type(err).__name__
report["interfaces"] = sorted(name for _, name in socket.if_nameindex())
report["limits"] = {name: resource.getrlimit(getattr(resource, name))[0]
                    for name in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_CORE")}
try:
    with open("big.bin", "wb") as handle:
        handle.write(b"x" * (FILE_LIMIT + 1))
    report["big_file"] = "written"
except OSError as err:
    report["big_file"] = err.errno
with open("scratch.txt", "w") as handle:
    report["scratch"] = handle.write("fine")
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def inside(tmp_path_factory):
    """What the probe saw from inside a sandbox, with the grader's machine around it."""
    import socket

    channel = tmp_path_factory.mktemp("channel")
    (channel / "connection.json").write_text("{}")
    limits = sandbox.Limits(memory_mb=2048, processes=40, file_mb=8, scratch_mb=64, cpu_seconds=60)
    box = sandbox.Sandbox(channel, limits)
    box.prepare()
    server = socket.create_server(("127.0.0.1", 0))
    values = {"REPOSITORY": str(ROOT), "SOLUTIONS": str(ROOT / "solutions"), "HOME": str(Path.home()),
              "CHANNEL_FILE": str(channel / "connection.json"), "OPTLIB": str(ROOT / "optlib" / "__init__.py"),
              "PORT": server.getsockname()[1], "FILE_LIMIT": limits.file_mb << 20}
    program = "".join(f"{k} = {v!r}\n" for k, v in values.items()) + PROBE
    try:
        done = subprocess.run(box.wrap([sys.executable, "-c", program]), capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), limits


def test_the_sandbox_sees_python_and_optlib_but_none_of_the_graders_files(inside):
    report, _ = inside
    assert report["optlib"] and report["channel_file"]
    assert not report["solutions"], "the solutions folder is visible inside the sandbox"
    # of the repository and the home folder, only the paths that lead to Python and optlib
    needed = [p for p in sandbox._read_only_paths() if p != Path("/")]
    for folder in (ROOT, Path.home()):
        leading = {p.relative_to(folder).parts[0] for p in needed if p.is_relative_to(folder) and p != folder}
        seen = set(report["repository" if folder == ROOT else "home"])
        assert seen <= leading, f"{folder} shows {sorted(seen - leading)} inside the sandbox"
    assert "solutions" not in report["repository"] and "README.md" not in report["repository"]
    assert report["usr_writable"] in ("OSError", "PermissionError"), "the system is writable"
    assert report["cwd"] == sandbox.WORKDIR and report["scratch"] == 4


def test_the_sandbox_has_no_network_and_its_own_processes(inside):
    report, _ = inside
    assert report["tcp"] != "connected" and report["dns"] != "resolved", report
    assert report["interfaces"] == ["lo"]
    assert len(report["pids"]) <= 3, f"the sandbox sees other processes: {report['pids']}"


def test_the_sandbox_applies_its_limits(inside):
    report, limits = inside
    assert report["limits"] == {"RLIMIT_AS": limits.memory_mb << 20, "RLIMIT_NPROC": limits.processes,
                                "RLIMIT_FSIZE": limits.file_mb << 20, "RLIMIT_CPU": limits.cpu_seconds,
                                "RLIMIT_CORE": 0}
    assert report["big_file"] == 27, "a file over the size limit was written (expected EFBIG)"
    if report["uid"] != 0:
        assert report["uid"] >= 1_000_000 or report["uid"] == __import__("os").getuid()


def test_the_command_line_binds_only_what_the_kernel_needs(tmp_path, monkeypatch):
    needed = sandbox._read_only_paths()
    venv_in_tmp = Path("/tmp/some-course/.venv")   # as in a CI clone under /tmp
    monkeypatch.setattr(sandbox, "_read_only_paths", lambda: [*needed, venv_in_tmp])
    argv = sandbox.Sandbox(tmp_path, bwrap="/usr/bin/bwrap").argv()
    assert str(venv_in_tmp) in argv
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in argv
    bound = [argv[i + 1] for i, a in enumerate(argv) if a in ("--ro-bind", "--bind")]
    assert str(ROOT) not in bound and str(ROOT / "solutions") not in bound and str(Path.home()) not in bound
    writable = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert writable == [str(tmp_path.resolve())], "only the kernel's channel folder may be writable"
    # no mount hides an earlier one (a virtual environment under /tmp stays visible over the RAM disk)
    mounts = [(i, Path(argv[i + (2 if a in ("--ro-bind", "--bind") else 1)]))
              for i, a in enumerate(argv) if a in ("--ro-bind", "--bind", "--tmpfs", "--proc", "--dev")]
    for i, path in mounts:
        for j, later in mounts:
            assert not (j > i and later in path.parents), f"{later} is mounted over {path}"


def test_limits_are_validated():
    with pytest.raises(ValueError, match="memory_mb must be at least 1024"):
        sandbox.Limits(memory_mb=100)
    with pytest.raises(ValueError, match="processes must be at least 16"):
        sandbox.Limits(processes=2)
    with pytest.raises(ValueError, match="cpu_seconds must be a positive integer"):
        sandbox.Limits(cpu_seconds=0)


def test_a_machine_without_bubblewrap_gets_a_clear_error_never_an_unsandboxed_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="--no-sandbox"):
        sandbox.bubblewrap(install=False)
    monkeypatch.setattr(sandbox, "bubblewrap", lambda install=True: (_ for _ in ()).throw(
        sandbox.SandboxUnavailable("bubblewrap (bwrap) is not installed")))
    (tmp_path / "subs").mkdir()
    assert batch.main([str(tmp_path / "subs")]) == 2
    assert "bubblewrap (bwrap) is not installed" in capsys.readouterr().err
    assert not (tmp_path / "subs-grades").exists(), "nothing is graded when the sandbox cannot start"


def test_reports_never_go_inside_the_submissions_folder(tmp_path):
    (tmp_path / "subs").mkdir()
    with pytest.raises(ValueError, match="inside the submissions folder"):
        batch.grade_folder(tmp_path / "subs", tmp_path / "subs" / "grades", sandbox=False)
    assert batch.default_out(tmp_path / "subs") == (tmp_path / "subs-grades").resolve()
