"""`wqfs run -- PROGRAM`: start a program whose watch_queue, key and watch_mount/watch_sb syscalls the
daemon answers."""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import socket
import sys
from typing import Callable, Optional, Sequence

from .. import abi
from ..harness import NotMounted, TemporaryMount
from . import seccomp, server


class RunError(Exception):
    """One line for the user."""


PR_SET_PDEATHSIG = 1


def _end_with_parent(parent: int) -> None:
    """In the private daemon before exec: SIGTERM (a clean unmount) should `wqfs run` die
    without stopping it, killed by SIGKILL say; else the mount would outlive everyone."""
    seccomp.libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


class PrivateDaemon(TemporaryMount):
    """A daemon for this program's lifetime, where none serves the mount. It removes its own
    directory as it ends (--remove-mountpoint; its log is an unnamed file), and ends with
    `wqfs run`; it is ready once it holds the mount's socket, which is what `wqfs run` needs."""

    name = "a private daemon"

    def __init__(self) -> None:
        try:
            super().__init__(["--remove-mountpoint"], prefix="wqfs-run-", mode=0o700, log_name=None,
                             preexec_fn=functools.partial(_end_with_parent, os.getpid()))
        except NotMounted as error:
            raise RunError(f"could not start a private daemon: {error.detail}") from None

    @property
    def mountpoint(self) -> str:
        return self.path

    def ready(self) -> bool:
        return server.daemon_running(self.path)


def _join_new_session() -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL), trapped like the program's own calls: what
    `keyctl session -` does, for this process and all it forks from now on."""
    if seccomp.libc.syscall(seccomp.SYS_keyctl, abi.KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0) < 0:
        error = ctypes.get_errno()
        sys.stderr.write(f"wqfs: cannot join a new session keyring: {os.strerror(error)}\n")
        os._exit(126)


def _child(sock: socket.socket, argv: Sequence[str], new_session: bool, legacy: Optional[str]) -> None:
    """In the forked child: install the filter, hand the listener up, wait for the go, (join a
    new session keyring,) exec."""
    try:
        listener = seccomp.install_filter(legacy)
        socket.send_fds(sock, [b"l"], [listener])
        os.close(listener)
        if sock.recv(2) != b"go":
            os._exit(126)
        sock.close()
        if new_session:
            _join_new_session()
        os.execvp(argv[0], list(argv))
    except FileNotFoundError:
        sys.stderr.write(f"wqfs: {argv[0]}: command not found\n")
        os._exit(127)
    except OSError as error:
        sys.stderr.write(f"wqfs: cannot run {argv[0]}: {error.strerror}\n")
        os._exit(126)


class Supervised:
    """A forked child under the seccomp filter, stopped before exec until go() or kill().

    Whoever serves .listener (the daemon, or the benchmark's floor) must have it before the
    program makes its first trapped call: hence the hold.
    """

    def __init__(self, argv: Sequence[str], new_session: bool = False, legacy: Optional[str] = None) -> None:
        seccomp.legacy_numbers(legacy)  # ValueError for no such version, before the fork
        parent_sock, child_sock = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            parent_sock.close()
            _child(child_sock, argv, new_session, legacy)
        child_sock.close()
        self._sock = parent_sock
        try:
            _, fds, _, _ = socket.recv_fds(parent_sock, 4, 1)
        except OSError:
            fds = []
        if not fds:
            os.waitpid(self.pid, 0)
            parent_sock.close()
            raise RunError("seccomp user notification is not available here")
        self.listener = fds[0]

    def go(self) -> None:
        """Let the child exec the program."""
        self._sock.send(b"go")
        self._sock.close()

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self._sock.close()


def run(argv: Sequence[str], mountpoint: str, private: bool = False, new_session: bool = False,
        label: Optional[str] = None, legacy_watch_nr: Optional[str] = None) -> int:
    """Run argv under the daemon at mountpoint (or a private one); return its exit status.
    new_session: the program starts with a new anonymous session keyring of its own; label:
    the security label it and its children run with (the daemon's module must be loaded);
    legacy_watch_nr: a key of abi.LEGACY_WATCH_NRS (`--legacy-watch-nr`): watch_mount and
    watch_sb at the 2020 patches' numbers too, told apart from the real calls of those numbers
    as seccomp.py and front.legacy_watch_call say; off by default."""
    try:
        seccomp.legacy_numbers(legacy_watch_nr)
    except ValueError as error:
        raise RunError(str(error)) from None
    own: Optional[PrivateDaemon] = None
    if private or not server.daemon_running(mountpoint):
        own = PrivateDaemon()
        mountpoint = own.mountpoint
    try:
        os.environ["WQFS_MOUNT"] = mountpoint  # before the fork: the program's environment is the child's
        child = Supervised(argv, new_session, legacy_watch_nr)
        why = server.hand_over(mountpoint, child.listener, label)
        os.close(child.listener)
        if why is not None:
            child.kill()
            raise RunError(f"the daemon at {mountpoint} refused the program: {why}")
        return _wait(child.pid, child.go)
    finally:
        if own is not None:
            own.stop()


FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def _wait(pid: int, go: Optional[Callable[[], None]] = None) -> int:
    """Wait like a shell: SIGINT and SIGQUIT reach the program through the terminal; SIGTERM
    and SIGHUP sent to `wqfs run` are passed on. No handler does it: they are blocked and
    taken with sigwaitinfo here, where the program is also reaped, so a signal only ever goes
    to a pid not yet reaped (at worst a zombie), never to one that may be someone else's;
    those that come as it exits are dropped, and `wqfs run` returns its status all the same.
    go lets the program exec once all that is in place: none of its signals is missed."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    waited = {*FORWARDED, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        if go is not None:
            go()
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return 0
            if done:
                break
            signum = signal.sigwaitinfo(waited).si_signo
            if signum in FORWARDED:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:  # cannot happen while we alone reap it; harmless anyway
                    pass
        while signal.sigtimedwait(FORWARDED, 0) is not None:  # meant for the program, now gone
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for s, handler in old.items():
            signal.signal(s, handler)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
