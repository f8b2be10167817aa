"""Who is calling: identity, thread/process/session and pending signals, read from /proc.

FUSE tells us the calling thread id and its fsuid/fsgid; everything else that the
kernel would know about the caller (its process, its POSIX session, its groups,
its pending signals) comes from /proc, never from anything the caller says.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from ..kernel import Cred

_TTL = 0.5  # seconds a thread's process and session are trusted before /proc is read again


@dataclass(frozen=True)
class TaskInfo:
    tgid: int
    sid: int
    thread: tuple[int, int]   # (tid, start time): a reused tid is a new owner
    process: tuple[int, int]
    session: tuple[int, int]
    groups: frozenset[int]


def _stat(pid: int) -> Optional[list[str]]:
    """Fields of /proc/PID/stat after the command name."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def start_time(pid: int) -> Optional[int]:
    """The task's start time, or None when it is gone or a zombie."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(owner: tuple[int, int]) -> bool:
    pid, started = owner
    return start_time(pid) == started


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f.read().decode("ascii", "replace").splitlines():
                name, _, value = line.partition(":")
                out[name] = value.strip()
    except OSError:
        pass
    return out


class CallerTable:
    """Caches what /proc says about each calling thread for a short while."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[float, TaskInfo]] = {}

    def task(self, tid: int) -> TaskInfo:
        now = time.monotonic()
        hit = self._cache.get(tid)
        if hit is not None and now - hit[0] < _TTL:
            return hit[1]
        info = self._read(tid)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[tid] = (now, info)
        return info

    @staticmethod
    def _read(tid: int) -> TaskInfo:
        fields = _stat(tid)
        status = _status(tid)
        started = int(fields[19]) if fields else 0
        sid = int(fields[3]) if fields else tid
        tgid = int(status.get("Tgid", tid) or tid)
        groups = frozenset(int(g) for g in status.get("Groups", "").split())
        process_start = started if tgid == tid else (start_time(tgid) or 0)
        session_start = start_time(sid) or 0 if sid > 0 else 0
        return TaskInfo(tgid, sid, (tid, started), (tgid, process_start), (sid, session_start), groups)

    def cred(self, tid: int, uid: int, gid: int) -> Cred:
        info = self.task(tid)
        return Cred(uid, gid, info.groups, info.thread, info.process, info.session, implicit_session=False)

    def forget(self, tid: int) -> None:
        self._cache.pop(tid, None)


def _mask(status: dict[str, str], name: str) -> int:
    try:
        return int(status.get(name, "0"), 16)
    except ValueError:
        return 0


def signal_pending(pid: int) -> bool:
    """True when a signal is pending that the task will act on (a handler or a fatal default).

    pyfuse3 has no FUSE interrupts, so a blocked read watches for this instead: the
    kernel cannot abandon a request the daemon has already read, so we must answer.
    A task that has gone away counts as interrupted too.
    """
    status = _status(pid)
    if not status:
        return True
    if status.get("State", "").startswith(("Z", "X")):
        return True
    pending = _mask(status, "SigPnd") | _mask(status, "ShdPnd")
    if not pending:
        return False
    return bool(pending & ~_mask(status, "SigBlk") & ~_mask(status, "SigIgn"))


def nofile_limit(pid: int) -> int:
    """The caller's RLIMIT_NOFILE soft limit, which bounds its user's watches."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft = line.split()[3]
                    return 1 << 30 if soft == "unlimited" else int(soft)
    except OSError:
        pass
    return 1024


def process_of(tid: int) -> int:
    return int(_status(tid).get("Tgid", tid) or tid)


def my_identity() -> tuple[int, int]:
    return os.getuid(), os.getgid()
