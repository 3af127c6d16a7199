"""The first program inside a submission's sandbox: set its limits, drop to its own user id, run the kernel.

``python -I _sandbox_init.py UID MEMORY_BYTES PROCESSES FILE_BYTES CPU_SECONDS -- COMMAND...``;
UID 0 keeps the user (bwrap already made an unprivileged user namespace).
"""
import os
import resource
import sys


def main(argv):
    uid, memory, processes, file_size, cpu = (int(a) for a in argv[1:6])
    if argv[6] != "--" or len(argv) < 8:
        raise SystemExit("usage: _sandbox_init.py UID MEMORY PROCESSES FILE_SIZE CPU -- COMMAND...")
    for limit, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, file_size),
                         (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_NPROC, processes)):
        resource.setrlimit(limit, (value, value))
    if uid:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise SystemExit("could not drop to the sandbox's user id")
    os.execv(argv[7], argv[7:])


if __name__ == "__main__":
    main(sys.argv)
