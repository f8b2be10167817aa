"""The usermode helper's side of the request-key upcall: `python -m wqfs.syscalls.umh FD N ENV... PATH ARGV...`.

The daemon starts this (upcall.py) for each upcall, in a session and process group of its own,
from /, with 0, 1 and 2 on /dev/null. It makes itself what call_usermodehelper_exec_async makes
of the helper's task (umask 022, no supplementary groups, every signal at its default), installs
the syscall front's seccomp filter, hands the listener to the daemon over the socket FD, waits
for the daemon's "go" (by then the daemon has installed the helper's session keyring), and
executes PATH with ARGV and exactly the N environment entries ENV. Imports: the standard library
and wqfs.syscalls.seccomp only; it runs before anything of the helper does.
"""
from __future__ import annotations

import os
import signal
import socket
import sys

from . import seccomp


def _as_the_kernel_starts_it() -> None:
    os.umask(0o022)
    os.chdir("/")
    if os.geteuid() == 0:
        os.setgroups([])  # the kernel's helper runs with init's credentials: no supplementary groups
    for signum in range(1, signal.NSIG):  # flush_signal_handlers: Python ignores SIGPIPE and SIGXFSZ
        try:
            if signal.getsignal(signum) is not signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def main(args: list[str]) -> int:
    fd, count = int(args[0]), int(args[1])
    env = dict(entry.split("=", 1) for entry in args[2:2 + count])
    path, argv = args[2 + count], args[3 + count:]
    sock = socket.socket(fileno=fd)
    _as_the_kernel_starts_it()
    listener = seccomp.install_filter()
    socket.send_fds(sock, [b"l"], [listener])
    os.close(listener)
    if sock.recv(2) != b"go":
        return 1  # the daemon gave up on this upcall
    sock.close()
    os.execve(path, argv, env)
    return 1  # not reached: execve raises on failure


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, ValueError, IndexError):
        # the helper could not be run: it "exits", and the key it was for is negated (ENOKEY),
        # as when the kernel's kernel_execve fails
        os._exit(1)
