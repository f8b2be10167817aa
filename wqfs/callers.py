"""Who is calling, as the kernel's current_cred() and task_struct tell it: read from /proc.

This module is the daemon's current_cred(): a caller's fsuid, fsgid, supplementary groups and
effective capabilities (its task's credentials), and the owners of its thread, process and
session keyrings (its task, thread group and session, each keyed by (id, start time) so that a
reused number is a new owner; or a session joined under `wqfs run`). All of it comes from /proc,
never from anything the caller says, and TaskInfo.cred is the one place a Cred is made of it.
Both fronts use it:

* the FUSE tree (fuse/operations.py): FUSE names the calling thread and gives its fsuid and
  fsgid with each request; CallerTable.cred keeps the Cred for 0.5 s while a pidfd of the
  thread says it is still the same task;
* the syscall front (syscalls/trapped.py): a trapped task is read through its own /proc/TID
  directory, opened before SECCOMP_IOCTL_NOTIF_ID_VALID (CallerTable.task with dir_fd), and
  its Cred is made afresh for every call.

(A caller's signals reach the daemon as FUSE interrupts: fuse/requests.py.)
"""
from __future__ import annotations

import errno
import os
import resource
import signal
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator, Optional

from .kernel import Cred, KernelError

_TTL = 0.5  # seconds a thread's process and session are trusted before /proc is read again

# pidfd_open(tid, PIDFD_THREAD) (Linux 6.9+): a handle on one task for ever, which tells in one
# syscall whether that task is still the one a cached Cred was read from.
_PIDFD_THREAD = os.O_EXCL
_CREDS_MAX = 256  # cached FUSE callers (each holds a pidfd)


@dataclass(frozen=True)
class TaskInfo:
    tgid: int
    sid: int
    thread: tuple[int, int]   # (tid, start time): a reused tid is a new owner
    process: tuple[int, int]
    session: tuple[int, int]
    groups: frozenset[int]
    fsuid: int = -1           # as the task's status says now (the syscall front's identity)
    fsgid: int = -1
    caps: int = 0             # CapEff, 0 for a task in another user namespace
    joined: bool = False      # session is a keyring session the process has (or inherited)

    def cred(self, implicit_session: bool, fsuid: Optional[int] = None, fsgid: Optional[int] = None,
             label: Optional[str] = None) -> Cred:
        """The task's Cred: the only place one is made from what /proc says, for both fronts.

        fsuid and fsgid are the task's own (its status now) unless given: a FUSE request gives
        them fresh, and the tree takes those. implicit_session is the kernel's rule for @s in a
        process without a session keyring (KEY_LOOKUP_CREATE joins a new one, any other lookup
        installs the user-session keyring), which the syscall front keeps and the tree turns
        off (see Cred). What is installed so belongs to that process alone (and the children it
        forks later): its session token is its own until it has one (own_session). label: the
        task's security label, as the front's security configuration says (wqfs/lsmconfig.py)."""
        session: Hashable = self.session
        if implicit_session and not self.joined:
            session = own_session(self.process)
        return Cred(self.fsuid if fsuid is None else fsuid, self.fsgid if fsgid is None else fsgid,
                    self.groups, self.thread, self.process, session,
                    implicit_session=implicit_session, caps=self.caps, label=label)


def own_session(process: tuple[int, int]) -> tuple[str, int, int]:
    """The token under which a process without a session keyring gets one of its own."""
    return ("own", *process)


def boot_ticks() -> int:
    """Now, in the clock ticks since boot that /proc/PID/stat's start times count."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


class TaskGone(Exception):
    """The task is gone, or is not the one asked about: nothing may be done in its name."""


def _stat(pid: int, dir_fd: Optional[int] = None) -> Optional[list[str]]:
    """Fields of /proc/PID/stat after the command name (read through dir_fd, a /proc/PID
    directory that names one task for ever, when given)."""
    data = _proc_file(pid, "stat", dir_fd)
    if not data:
        return None
    text = data.decode("ascii", "replace")
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> Optional[int]:
    """The task's start time, or None when it is gone or a zombie."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(owner: tuple[int, int]) -> bool:
    pid, started = owner
    return start_time(pid) == started


def _proc_file(pid: int, name: str, dir_fd: Optional[int]) -> Optional[bytes]:
    """/proc/PID/NAME, or NAME in dir_fd (an open /proc/PID directory) when given."""
    return _read_proc(name if dir_fd is not None else f"/proc/{pid}/{name}", dir_fd)


def _read_proc(path: str, dir_fd: Optional[int] = None) -> Optional[bytes]:
    """A whole /proc file with plain os calls (they are on the syscall front's hot path)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
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


def parent_of(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


def ancestors(pid: int, limit: int = 64) -> Iterator[tuple[int, int]]:
    """(pid, start time) of pid's parent, its parent's, and so on below init, while they live."""
    for _ in range(limit):
        pid = parent_of(pid)
        if pid <= 1:
            return
        started = start_time(pid)
        if started is None:
            return
        yield pid, started


class CallerTable:
    """Caches what /proc says about each calling thread for a short while.

    It also keeps which process has which session keyring, as the kernel keeps it in each
    task's credentials: a process gets one under `wqfs run` (join_session_keyring, the
    implicit one of a lookup of @s, session_to_parent), and a child has its parent's as it
    was when the child was forked (a session its parent got later is not the child's). A
    process that no such ancestor handed one down to has none: its @s is the user-session
    keyring, whether it asks through the tree or not.
    """

    def __init__(self) -> None:
        # (tid, start time) -> (when, process and session owners): a reused tid has another
        # start time, so it never meets the entry of the task that had its number before
        self._cache: dict[tuple[int, int], tuple[float, tuple[int, int], Hashable]] = {}
        # process owner -> [(boot ticks when it got it, session token)], oldest first
        self._joined: dict[tuple[int, int], list[tuple[int, Hashable]]] = {}
        self._tokens = 0
        self._own_userns = _userns(None)
        self._creds: dict[int, tuple[float, int, int, int, Cred]] = {}  # FUSE callers: see cred()
        # labels(tid, fsuid, dir_fd): a caller's security label (lsmconfig.Security.label_of), or
        # None with no security module, when Creds carry no label
        self.labels: Optional[Callable[[int, int, Optional[int]], Optional[str]]] = None

    def task(self, tid: int, dir_fd: Optional[int] = None) -> TaskInfo:
        """Who the task is now. Credentials and groups are read on every call (setfsuid and
        setgroups take effect at once, as they do in the kernel); only the owners of its
        process and session keyrings are cached, by (tid, start time). With dir_fd (an open
        /proc/TID directory) every read is of that very task, or TaskGone.

        FUSE callers cannot go away while their request is answered (the kernel waits for the
        answer even through SIGKILL), so their tid is stable for the request; trapped callers
        can, which is why the syscall front passes dir_fd."""
        fields = _stat(tid, dir_fd)
        status = _proc_file(tid, "status", dir_fd)
        if fields is None or not status:
            raise TaskGone(tid)
        started = int(fields[19])
        tgid = int(_field(status, b"\nTgid:") or tid)
        groups = frozenset(int(g) for g in _field(status, b"\nGroups:").split())
        uids, gids = _field(status, b"\nUid:").split(), _field(status, b"\nGid:").split()
        fsuid = int(uids[3]) if len(uids) > 3 else -1
        fsgid = int(gids[3]) if len(gids) > 3 else -1
        caps = int(_field(status, b"\nCapEff:") or b"0", 16)
        if caps and _userns(dir_fd, tid) != self._own_userns:
            caps = 0  # capable() asks the daemon's user namespace, where it has none
        now = time.monotonic()
        key = (tid, started)
        hit = self._cache.get(key)
        if hit is None or now - hit[0] >= _TTL:
            sid = int(fields[3])
            process_start = started if tgid == tid else (start_time(tgid) or 0)
            session_start = start_time(sid) or 0 if sid > 0 else 0
            process = (tgid, process_start)
            session: Hashable = self._inherited_session(process) if self._joined else None
            joined = session is not None
            if session is None:
                session = (sid, session_start)
            if len(self._cache) > 10000:
                self._cache.clear()
            hit = self._cache[key] = (now, process, session, joined)
        _, process, session, joined = hit
        return TaskInfo(tgid, int(fields[3]), key, process, session, groups,  # type: ignore[arg-type]
                        fsuid, fsgid, caps, joined)

    def _inherited_session(self, process: tuple[int, int]) -> Optional[Hashable]:
        """The session keyring token the process has: its own latest, else the one its nearest
        ancestor with any had when the child on the way down was forked (copy_creds at fork)."""
        history = self._joined.get(process)
        if history:
            return history[-1][1]
        forked = process[1]
        for pid, started in ancestors(process[0]):
            history = self._joined.get((pid, started))
            if history:
                had = [token for since, token in history if since <= forked]
                if had:
                    self._joined[process] = [(process[1], had[-1])]  # it has had it since its fork
                    return had[-1]
                return None  # forked before that ancestor got one: it has what it had then, none
            forked = started
        return None

    def _give_session(self, process: tuple[int, int], token: Hashable) -> None:
        self._joined.setdefault(process, []).append((boot_ticks(), token))
        self._cache.clear()
        self.forget_creds()

    def join_session(self, kernel, cred: Cred, pid: int, name: Optional[str]) -> int:
        """KEYCTL_JOIN_SESSION_KEYRING: the caller (and its later children) get a new session."""
        self._tokens += 1
        token = ("joined", self._tokens)
        serial = kernel.join_session_keyring(cred, name, token)
        if serial:  # 0: that keyring is our session keyring already, and nothing changed
            self._give_session(cred.process, token)
        return serial

    def note_session(self, kernel, cred: Cred) -> None:
        """After a trapped call: a process without a session keyring that got one (the implicit
        session of a lookup of @s) has it from now on, and so do the children it forks."""
        if cred.session == own_session(cred.process) and not self._joined.get(cred.process) \
                and kernel.session_keyring(cred) is not None:
            self._give_session(cred.process, cred.session)

    def session_to_parent(self, pid: int, cred: Cred) -> None:
        """KEYCTL_SESSION_TO_PARENT: the parent process takes the caller's session keyring."""
        parent = parent_of(cred.process[0] if isinstance(cred.process, tuple) else pid)
        started = start_time(parent) if parent > 1 else None
        if started is None:
            raise KernelError(errno.EPERM, "no parent to give the session keyring to")
        self._give_session((parent, started), cred.session)

    def session_alive(self, token: Hashable) -> bool:
        """A POSIX session lives with its leader; a joined one while a process uses it."""
        for owner in [o for o in self._joined if not alive(o)]:
            del self._joined[owner]
        if isinstance(token, tuple) and token and token[0] in ("joined", "own"):
            return any(history and history[-1][1] == token for history in self._joined.values())
        if isinstance(token, tuple) and len(token) == 2 and token[1] == 0:
            return True  # the session's leader was already gone when it was first seen
        return isinstance(token, tuple) and alive(token)

    def cred(self, tid: int, uid: int, gid: int) -> Cred:
        """A FUSE caller's Cred: fsuid and fsgid as FUSE gives them (fresh, from the request),
        the rest from /proc. A thread's Cred is kept for _TTL while FUSE reports the same fsuid
        and fsgid and a pidfd of the task it was read from says that task lives (a reused tid
        is another task), so only a change of groups alone (setgroups, which takes CAP_SETGID)
        may take up to _TTL to be seen here. Where pidfds of threads are not to be had, nothing
        is kept. ESRCH for a caller /proc does not show (pid 0: a pid namespace the daemon
        cannot see)."""
        now = time.monotonic()
        hit = self._creds.get(tid)
        previous: Optional[Cred] = None
        if hit is not None:
            when, fd, known_uid, known_gid, previous = hit
            if now - when < _TTL and known_uid == uid and known_gid == gid:
                try:  # _same_task(fd), inline: this is every request's
                    signal.pidfd_send_signal(fd, 0)
                    return previous
                except ProcessLookupError:
                    pass
                except OSError:  # EPERM: it exists, and is not ours to signal
                    return previous
            self._forget_cred(tid)
        try:  # first: the task it names is then the one whose /proc is read below
            fd: Optional[int] = os.pidfd_open(tid, _PIDFD_THREAD)
        except (OSError, AttributeError):
            fd = None
        try:
            info = self.task(tid)
        except TaskGone:
            if fd is not None:
                os.close(fd)
            raise KernelError(errno.ESRCH, f"caller {tid} is not visible in /proc") from None
        label = self.labels(tid, uid, None) if self.labels is not None else None
        cred = info.cred(implicit_session=False, fsuid=uid, fsgid=gid, label=label)
        if cred == previous:
            cred = previous  # the same object, so that the kernel's caches keyed by it hit at once
        if fd is None:
            return cred
        if len(self._creds) >= _CREDS_MAX:
            self.forget_creds()
        self._creds[tid] = (now, fd, uid, gid, cred)
        return cred

    def _forget_cred(self, tid: int) -> None:
        hit = self._creds.pop(tid, None)
        if hit is not None:
            os.close(hit[1])

    def forget_creds(self) -> None:
        """Drop every cached FUSE Cred (a session was joined, or the cache is full)."""
        while self._creds:
            os.close(self._creds.popitem()[1][1])


def _same_task(pidfd: int) -> bool:
    """Whether the task of a pidfd is still there (then nobody else has its tid)."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and is not ours to signal
        pass
    return True


def _field(status: bytes, name: bytes) -> bytes:
    """The value of one "\nName:\tvalue" line of a /proc status file, b"" if absent."""
    start = status.find(name)
    if start < 0:
        return b""
    end = status.find(b"\n", start + 1)
    return status[start + len(name):end if end >= 0 else len(status)].strip()


def _userns(dir_fd: Optional[int], tid: int = 0) -> str:
    """The user namespace of a task (the daemon's own with dir_fd None and tid 0)."""
    try:
        if dir_fd is not None:
            return os.readlink("ns/user", dir_fd=dir_fd)
        return os.readlink(f"/proc/{tid}/ns/user" if tid else "/proc/self/ns/user")
    except OSError:
        return ""


def nofile_limit(pid: int, dir_fd: Optional[int] = None) -> int:
    """The caller's RLIMIT_NOFILE soft limit, which bounds its user's watches.

    With dir_fd (an open /proc/TID directory), its limits file, of that very task; else
    prlimit(2) where we may (root, or the caller's own user), else /proc/PID/limits.
    """
    if dir_fd is None:
        try:
            soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
            return 1 << 30 if soft == resource.RLIM_INFINITY else soft
        except (OSError, ValueError):
            pass
    data = _proc_file(pid, "limits", dir_fd)
    start = data.find(b"\nMax open files") if data else -1
    if data is not None and start >= 0:
        end = data.find(b"\n", start + 1)
        soft = data[start + 1:end if end >= 0 else len(data)].split()[3]
        return 1 << 30 if soft == b"unlimited" else int(soft)
    return 1024


