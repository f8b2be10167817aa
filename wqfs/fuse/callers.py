"""Who is calling: identity, thread/process/session and pending signals, read from /proc.

FUSE tells us the calling thread id and its fsuid/fsgid; everything else that the
kernel would know about the caller (its process, its POSIX session, its groups,
its pending signals) comes from /proc, never from anything the caller says.
"""
from __future__ import annotations

import errno
import fcntl
import os
import resource
import struct
import time
from dataclasses import dataclass
from typing import Hashable, Optional

from ..kernel import Cred, KernelError

_TTL = 0.5  # seconds a thread's process and session are trusted before /proc is read again

# pidfd_open(tid, PIDFD_THREAD) and ioctl(PIDFD_GET_INFO) (Linux 6.13+): the task's credentials
# as /proc/PID/status shows them (the same struct cred, the same user namespace), without
# having the kernel format the whole status file. Older kernels fall back to /proc.
_PIDFD_THREAD = os.O_EXCL
_PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(0xFF, 11, struct pidfd_info): 64 bytes, PIDFD_INFO_SIZE_VER0
_PIDFD_INFO = struct.Struct("<QQ12I")  # mask, cgroupid, pid, tgid, ppid, ruid, rgid, euid, egid,
_PIDFD_INFO_CREDS = 1 << 1             # suid, sgid, fsuid, fsgid, spare
_pidfd_info = hasattr(os, "pidfd_open")
_pidfds: dict[int, int] = {}  # thread id -> a pidfd of that task
_PIDFDS_MAX = 256


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


def _read_proc(path: str) -> Optional[bytes]:
    """A whole /proc file with plain os calls (they are on the syscall front's hot path)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 8192)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    data = _read_proc(f"/proc/{pid}/status")
    if data:
        for line in data.decode("ascii", "replace").splitlines():
            name, _, value = line.partition(":")
            out[name] = value.strip()
    return out


def _pidfd_ids(pid: int) -> Optional[tuple[int, int]]:
    """(fsuid, fsgid) by PIDFD_GET_INFO; None when the task is gone; OSError when unsupported.

    pidfds are kept by thread id: a pidfd names one task for ever, so a kept one never
    answers for a later task that got the same number; it answers ESRCH, and is replaced.
    """
    fd = _pidfds.get(pid)
    fresh = fd is None
    if fd is None:
        try:
            fd = os.pidfd_open(pid, _PIDFD_THREAD)
        except ProcessLookupError:
            return None
        if len(_pidfds) >= _PIDFDS_MAX:
            while _pidfds:
                os.close(_pidfds.popitem()[1])
        _pidfds[pid] = fd
    buf = bytearray(_PIDFD_INFO.size)
    struct.pack_into("<Q", buf, 0, _PIDFD_INFO_CREDS)
    try:
        fcntl.ioctl(fd, _PIDFD_GET_INFO, buf)
    except ProcessLookupError:  # that task is gone; another may have its number now
        os.close(_pidfds.pop(pid))
        return None if fresh else _pidfd_ids(pid)
    except OSError:
        os.close(_pidfds.pop(pid))
        raise
    info = _PIDFD_INFO.unpack(buf)
    if not info[0] & _PIDFD_INFO_CREDS:
        raise OSError(errno.ENOTTY, "PIDFD_GET_INFO gave no credentials")
    return info[11], info[12]


def fs_ids(pid: int) -> Optional[tuple[int, int]]:
    """The task's fsuid and fsgid (the fourth numbers of Uid: and Gid: in /proc/PID/status).

    The syscall front needs them on every trapped call, so it asks the pidfd (PIDFD_GET_INFO)
    where the kernel can tell, else finds the two lines of /proc/PID/status without
    building the whole dict. None when the task is gone.
    """
    global _pidfd_info
    if _pidfd_info:
        try:
            return _pidfd_ids(pid)
        except OSError:  # no PIDFD_THREAD (before 6.9) or no PIDFD_GET_INFO (before 6.13)
            _pidfd_info = False
            while _pidfds:
                os.close(_pidfds.popitem()[1])
    data = _read_proc(f"/proc/{pid}/status")
    if not data:
        return None
    ids = []
    for name in (b"\nUid:", b"\nGid:"):
        start = data.find(name)
        if start < 0:
            return None
        end = data.find(b"\n", start + 1)
        ids.append(int(data[start + 5:end if end >= 0 else len(data)].split()[3]))
    return ids[0], ids[1]


def parent_of(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


class CallerTable:
    """Caches what /proc says about each calling thread for a short while.

    It also keeps the session keyrings that processes joined under `wqfs run`
    (join_session_keyring, session_to_parent): a process uses the session of the
    nearest ancestor that joined one, else its POSIX session.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[float, TaskInfo]] = {}
        self._joined: dict[tuple[int, int], Hashable] = {}  # process owner -> session token
        self._tokens = 0

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

    def _read(self, tid: int) -> TaskInfo:
        fields = _stat(tid)
        status = _status(tid)
        started = int(fields[19]) if fields else 0
        sid = int(fields[3]) if fields else tid
        tgid = int(status.get("Tgid", tid) or tid)
        groups = frozenset(int(g) for g in status.get("Groups", "").split())
        process_start = started if tgid == tid else (start_time(tgid) or 0)
        session_start = start_time(sid) or 0 if sid > 0 else 0
        process = (tgid, process_start)
        session: Hashable = (sid, session_start)
        if self._joined:
            session = self._inherited_session(process, session)
        return TaskInfo(tgid, sid, (tid, started), process, session, groups)

    def _inherited_session(self, process: tuple[int, int], default: Hashable) -> Hashable:
        """The joined session of the process or its nearest ancestor, kept as fork would keep it."""
        token = self._joined.get(process)
        if token is not None:
            return token
        pid = process[0]
        for _ in range(64):
            pid = parent_of(pid)
            if pid <= 1:
                return default
            started = start_time(pid)
            if started is None:
                return default
            token = self._joined.get((pid, started))
            if token is not None:
                self._joined[process] = token
                return token
        return default

    def join_session(self, kernel, cred: Cred, pid: int, name: Optional[str]) -> int:
        """KEYCTL_JOIN_SESSION_KEYRING: the caller (and its later children) get a new session."""
        self._tokens += 1
        token = ("joined", self._tokens)
        serial = kernel.join_session_keyring(cred, name, token)
        if serial:  # 0: that keyring is our session keyring already, and nothing changed
            self._joined[cred.process] = token
            self._cache.clear()
        return serial

    def session_to_parent(self, pid: int, cred: Cred) -> None:
        """KEYCTL_SESSION_TO_PARENT: the parent process takes the caller's session keyring."""
        parent = parent_of(cred.process[0] if isinstance(cred.process, tuple) else pid)
        started = start_time(parent) if parent > 1 else None
        if started is None:
            raise KernelError(errno.EPERM, "no parent to give the session keyring to")
        self._joined[(parent, started)] = cred.session
        self._cache.clear()

    def session_alive(self, token: Hashable) -> bool:
        """A POSIX session lives with its leader; a joined one while a process uses it."""
        for owner in [o for o in self._joined if not alive(o)]:
            del self._joined[owner]
        if isinstance(token, tuple) and token and token[0] == "joined":
            return token in self._joined.values()
        if isinstance(token, tuple) and len(token) == 2 and token[1] == 0:
            return True  # the session's leader was already gone when it was first seen
        return isinstance(token, tuple) and alive(token)

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
    """The caller's RLIMIT_NOFILE soft limit, which bounds its user's watches.

    prlimit(2) where we may (root, or the caller's own user), else /proc/PID/limits.
    """
    try:
        soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
        return 1 << 30 if soft == resource.RLIM_INFINITY else soft
    except (OSError, ValueError):
        pass
    data = _read_proc(f"/proc/{pid}/limits")
    start = data.find(b"\nMax open files") if data else -1
    if start >= 0:
        end = data.find(b"\n", start + 1)
        soft = data[start + 1:end if end >= 0 else len(data)].split()[3]
        return 1 << 30 if soft == b"unlimited" else int(soft)
    return 1024


def process_of(tid: int) -> int:
    return int(_status(tid).get("Tgid", tid) or tid)


def my_identity() -> tuple[int, int]:
    return os.getuid(), os.getgid()
