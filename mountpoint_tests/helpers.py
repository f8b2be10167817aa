"""Helpers and constants shared by the test files: the suite's daemon, records as tuples, file
operations, subprocesses. conftest.py keeps the fixtures; this module is what tests import."""
from __future__ import annotations

import contextlib
import os
import select
import struct
import subprocess
import sys
import time
from typing import Iterator

from wqfs import abi
from wqfs.harness import TemporaryMount

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
GC_DELAY = 1.0  # seconds revoked/expired keys linger in the test daemon (kernel: abi.KEY_GC_DELAY)
WAIT = 15.0  # generous upper bound for asynchronous things (GC, a subprocess starting)
NOBODY_UID = 65534
NOBODY = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}", "--clear-groups"]
PYTHON = "/usr/bin/python3"  # a Python nobody may run; the scripts given to it use only the standard library

# The key record subtypes (include/uapi/linux/watch_queue.h enum key_notification_subtype),
# short enough for tables of expected records.
INST = abi.NOTIFY_KEY_INSTANTIATED
UPD = abi.NOTIFY_KEY_UPDATED
LINKED = abi.NOTIFY_KEY_LINKED
UNLINKED = abi.NOTIFY_KEY_UNLINKED
CLEARED = abi.NOTIFY_KEY_CLEARED
REVOKED = abi.NOTIFY_KEY_REVOKED
INVAL = abi.NOTIFY_KEY_INVALIDATED
SETATTR = abi.NOTIFY_KEY_SETATTR

# The 8-byte loss record (type 0 META, subtype 1 LOSS in byte 3, length 8), built with struct,
# not with the codec under test.
LOSS = struct.pack("<II", 1 << 24, 8)


# ---------------------------------------------------------------- the test daemon

class Daemon(TemporaryMount):
    """The suite's `wqfs mount -f` (--allow-other unless told, a short GC delay); its log is kept
    for failing tests."""

    def __init__(self, *extra: str, allow_other: bool = True) -> None:
        super().__init__([*(["--allow-other"] if allow_other else []), "--gc-delay", str(GC_DELAY), *extra],
                         prefix="wqfs-test-", cwd=ROOT)


@contextlib.contextmanager
def stopped_after(d: Daemon) -> Iterator[Daemon]:
    """d for the block; then stopped, and no internal error may be in its log."""
    try:
        yield d
    finally:
        d.stop()
        assert "internal error" not in d.log(), d.log()


# ---------------------------------------------------------------- keys and records

def serial(path: str) -> int:
    """A key's serial is its inode number's low 32 bits (and its xattr)."""
    return int(os.getxattr(path, "user.keyctl.serial"))


def key(subtype: int, key_id: int, aux: int = 0, tag: int = 1) -> tuple:
    """An expected key record, as rec() gives it."""
    return ("key", subtype, key_id, aux, tag)


def rec(record) -> tuple:
    """A record as a comparable tuple: ("key", subtype, key_id, aux, tag), ("removal", id, tag), ("loss",)."""
    from wqfs.records import KeyNotification, Loss, Removal
    if isinstance(record, KeyNotification):
        return ("key", record.subtype, record.key_id, record.aux, record.tag)
    if isinstance(record, Removal):
        return ("removal", record.id, record.tag)
    if isinstance(record, Loss):
        return ("loss",)
    return ("other", record)


def drain(queue) -> list:
    """Every record readable now from a non-blocking Queue, as tuples."""
    out = []
    while True:
        try:
            records = queue.read()
        except BlockingIOError:
            return out
        assert records, "a watch_queue read returned EOF"
        out.extend(rec(r) for r in records)


def wait_records(queue, count: int, timeout: float = WAIT) -> list:
    """Poll and read until at least count records have arrived (or the timeout passes)."""
    out: list = []
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(queue.fileno(), select.POLLIN)
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if poller.poll(int(min(left, 0.5) * 1000)):
            out.extend(drain(queue))
    return out


def write_key(path: str, payload: bytes) -> None:
    """open(O_CREAT|O_TRUNC) + write + close: add_key for a new name, update for an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, payload)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- subprocesses

def sh(command: str, *, nobody: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    """A shell command from /, as nobody if told: what a user at a terminal would type."""
    argv = (NOBODY if nobody else []) + ["sh", "-c", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")


def wait_blocked_in_read(pid: int, timeout: float = WAIT, syscall_nr: str = "0") -> None:
    """Wait until the task sits in read(2) (or syscall_nr) on a FUSE request the daemon has not answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                wchan = f.read().strip()
            with open(f"/proc/{pid}/syscall") as f:
                syscall = f.read().split()
        except OSError:
            raise AssertionError(f"process {pid} went away before blocking")
        if wchan == "request_wait_answer" and syscall and syscall[0] == syscall_nr:
            time.sleep(0.05)  # the daemon has the request; let it reach its wait
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never blocked in read (wchan {wchan!r}, syscall {syscall[:1]})")


def read_line(stream, timeout: float = WAIT) -> str:
    """One line from a subprocess pipe, or '' if none came in time."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace")


def run_argv(mnt: str, *argv: str, new_session: bool = False) -> list[str]:
    """`wqfs run` of argv against the daemon at mnt; new_session: with a session keyring of its
    own (`--new-session`), which the processes it starts share, as a login session's do."""
    return [sys.executable, "-m", "wqfs", "run", *(["--new-session"] if new_session else []), "--mount", mnt,
            "--", *argv]


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid (from /proc/PID/task/PID/children), children first."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            children = []
        found += children
        todo += children
    return found
