"""An operating-system sandbox for one submission's kernel, from Debian's ``bubblewrap`` (``bwrap``).

Inside, the learner's kernel sees:

- the system (``/usr``, ``/etc``), Python and its virtual environment, and the ``optlib`` package,
  all read-only; nothing else of the grader's file system: no home folder, no submissions, no
  solutions, no reports;
- a private working folder and ``/tmp``, each a RAM disk of ``scratch_mb``, gone with the sandbox;
- one read-write folder holding the kernel's connection file and its Unix sockets (jupyter's
  ``ipc`` transport): the only channel to the grader;
- no network (its own, empty network namespace), its own pid namespace (it sees only its own
  processes), its own IPC and UTS namespaces;
- limits (``setrlimit``) on address space, processes, file size and CPU time, and no core files.

The sandbox's first process is bwrap's init: when the kernel ends or is killed, or the grader
dies, every process inside is killed (``--die-with-parent``, pid namespace).

Run by root (a container, Gradescope), bwrap works without user namespaces and the kernel drops to
an unprivileged user id of its own, so that the process limit counts only that sandbox's processes.
Run by another user, bwrap needs unprivileged user namespaces; the limit then counts the processes
of that sandbox's user namespace.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "SandboxUnavailable", "bubblewrap", "Sandbox", "check"]

WORKDIR = "/sandbox/work"
_INIT = Path(__file__).resolve().with_name("_sandbox_init.py")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this machine; the message says what to do."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel."""

    memory_mb: int = 4096      # address space of each process (RLIMIT_AS)
    processes: int = 128       # processes and threads (RLIMIT_NPROC)
    file_mb: int = 256         # largest file it may write (RLIMIT_FSIZE)
    scratch_mb: int = 256      # size of the working folder and of /tmp (each a RAM disk)
    cpu_seconds: int = 900     # CPU time of each process (RLIMIT_CPU)

    def __post_init__(self):
        for name in ("memory_mb", "processes", "file_mb", "scratch_mb", "cpu_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")
        if self.memory_mb < 1024:
            raise ValueError(f"Limits.memory_mb must be at least 1024 (Python, torch and a kernel need about "
                             f"1 GB of address space), got {self.memory_mb}")
        if self.processes < 16:
            raise ValueError(f"Limits.processes must be at least 16 (a kernel runs several threads), "
                             f"got {self.processes}")


def bubblewrap(install: bool = True) -> str:
    """The path of ``bwrap``; installs Debian's ``bubblewrap`` with apt-get when it is missing and this
    process may (root, apt-get present). Raises :class:`SandboxUnavailable` otherwise."""
    found = shutil.which("bwrap")
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "-q", "bubblewrap"], ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "bubblewrap"]):
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            found = shutil.which("bwrap")
            if found:
                return found
    raise SandboxUnavailable(
        "bubblewrap (bwrap) is not installed, and the grader runs learners' code only inside it. "
        "Install it (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap), "
        "or, for trusted notebooks only, pass --no-sandbox.")


def _read_only_paths() -> list[Path]:
    """What the kernel must read: the system, Python, the virtual environment, optlib."""
    paths = [Path(p) for p in ("/usr", "/etc", "/opt/conda") if Path(p).exists()]
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        paths.append(Path(prefix).resolve())
    package = Path(__file__).resolve().parents[1]         # optlib/
    paths.append(package)
    executable = Path(sys.executable)
    paths.append(executable.parent.resolve())
    for entry in sys.path:                                # installed packages outside the prefixes
        path = Path(entry or ".").resolve()
        if path.is_dir() and ("site-packages" in path.parts or "dist-packages" in path.parts):
            paths.append(path)
    unique: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(path == kept or kept in path.parents for kept in unique):
            unique.append(path)
    return unique


def _dirs(path: Path, made: set[str]) -> list[str]:
    """``--dir`` for each parent of ``path`` not made yet, world-traversable (bwrap's default is 0700)."""
    args = []
    for parent in reversed(path.parents):
        if str(parent) != "/" and str(parent) not in made:
            made.add(str(parent))
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


class Sandbox:
    """The ``bwrap`` command line for one kernel: ``sandbox.wrap(kernel_argv)``.

    ``channel`` is the folder (made by the grader, private to this submission) that holds the
    connection file and the kernel's sockets; ``notebook`` (optional) a copy of the submission,
    mounted read-only in the working folder.
    """

    def __init__(self, channel: Path, limits: Limits = Limits(), notebook: Path | None = None, bwrap: str | None = None):
        self.channel = Path(channel).resolve()
        self.limits = limits
        self.notebook = notebook
        self.bwrap = bwrap or bubblewrap()
        self.as_root = os.geteuid() == 0
        self.uid = 1_000_000 + os.getpid() if self.as_root else None  # one per grading process

    def prepare(self) -> None:
        """Let the sandbox's user use the channel folder (and read the connection file in it)."""
        if self.uid is not None:
            os.chown(self.channel, self.uid, self.uid)
            for item in self.channel.iterdir():
                os.chown(item, self.uid, self.uid)
        os.chmod(self.channel, 0o700)

    def argv(self) -> list[str]:
        """The ``bwrap`` command line up to (and including) the limits program; the kernel's command follows."""
        made: set[str] = {"/tmp", "/dev", "/proc"}
        args = [self.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session"]
        if not self.as_root:
            args += ["--unshare-user"]
        for name in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        scratch = str(self.limits.scratch_mb << 20)
        # the RAM disks first: Python or the channel may live under /tmp, and are bound on top
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", scratch, "--perms", "1777", "--tmpfs", "/tmp",
                 "--size", "67108864", "--perms", "1777", "--tmpfs", "/dev/shm"]
        for path in _read_only_paths():
            args += _dirs(path, made) + ["--ro-bind", str(path), str(path)]
        args += _dirs(Path(WORKDIR), made) + ["--size", scratch, "--perms", "0777", "--tmpfs", WORKDIR]
        args += _dirs(self.channel, made) + ["--bind", str(self.channel), str(self.channel)]
        if self.notebook is not None:
            args += ["--ro-bind", str(self.notebook), f"{WORKDIR}/submission.ipynb"]
        env = {"HOME": WORKDIR, "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
               "LANG": "C.UTF-8", "TMPDIR": "/tmp", "MPLCONFIGDIR": f"{WORKDIR}/.matplotlib",
               "IPYTHONDIR": f"{WORKDIR}/.ipython", "JUPYTER_CONFIG_DIR": f"{WORKDIR}/.jupyter",
               "JUPYTER_DATA_DIR": f"{WORKDIR}/.jupyter/data", "JUPYTER_RUNTIME_DIR": f"{WORKDIR}/.jupyter/runtime",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        if os.environ.get("VIRTUAL_ENV"):
            env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
        args += ["--clearenv", "--chdir", WORKDIR, "--hostname", "sandbox"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        if self.as_root:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        limits = self.limits
        args += [sys.executable, "-I", str(_INIT), str(self.uid or 0), str(limits.memory_mb << 20),
                 str(limits.processes), str(limits.file_mb << 20), str(limits.cpu_seconds), "--"]
        return args

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` (the kernel's), run inside the sandbox."""
        return self.argv() + list(command)


def check(limits: Limits = Limits(), install: bool = True) -> None:
    """Start one sandbox and run Python in it; :class:`SandboxUnavailable` with bwrap's own words when
    that fails (e.g. user namespaces are disabled), so a batch never runs unsandboxed by accident."""
    import tempfile

    bwrap = bubblewrap(install=install)
    with tempfile.TemporaryDirectory(prefix="optlib-sandbox-check-") as folder:
        sandbox = Sandbox(Path(folder), limits, bwrap=bwrap)
        sandbox.prepare()
        probe = "import os, socket; s = socket.socket(); print('isolated', os.getpid())"
        try:
            done = subprocess.run(sandbox.wrap([sys.executable, "-c", probe]), capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SandboxUnavailable(f"bubblewrap could not start a sandbox: {err}") from err
        if done.returncode != 0 or "isolated" not in done.stdout:
            raise SandboxUnavailable(
                "bubblewrap could not start a sandbox on this machine: "
                f"{(done.stderr or done.stdout).strip()[-600:]}. Where unprivileged user namespaces are "
                "disabled (sysctl kernel.unprivileged_userns_clone=0, or Ubuntu's "
                "kernel.apparmor_restrict_unprivileged_userns=1), run the grader as root in a container or "
                "enable them; for trusted notebooks only, pass --no-sandbox.")
