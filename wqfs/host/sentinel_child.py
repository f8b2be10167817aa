"""The sentinel's program (run as `python -I -S sentinel_child.py`, standard library only):
setns(2) into the mount namespace on the fd named by argv[1], say "ready", then block reading stdin until EOF.

While it lives, /proc/SENTINEL/mountinfo is that namespace's table in the frame of its root,
and polls POLLPRI on every change (fs/proc_namespace.c, mounts_poll). Its stdin is a pipe from
the daemon, so it ends when the daemon does, however the daemon ends.
"""
import ctypes
import os
import signal
import sys

CLONE_NEWNS = 0x00020000


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the daemon, which ends us by EOF
    ns_fd = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ns_fd, CLONE_NEWNS) != 0:
        os.write(1, f"error {ctypes.get_errno()}\n".encode())
        return 1
    os.close(ns_fd)
    os.chdir("/")
    os.write(1, b"ready\n")
    os.close(1)
    while os.read(0, 4096):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
