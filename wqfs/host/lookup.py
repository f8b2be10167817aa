"""Path lookup as the caller (fs/namei.c's user_path_at for watch_mount and watch_sb, and
MAY_EXEC on the target): done by a short-lived helper process (lookup_child.py) in the caller's
root, cwd or dfd, with the caller's credentials, so that none of the caller's names is ever
resolved in the daemon's root or with the daemon's rights.

What the daemon opens itself is /proc/PID/root, /proc/PID/cwd and /proc/PID/fd/DFD, O_PATH:
magic links, which never reach the file system they name, so a caller's path cannot make the
daemon block. The helper can (a hung FUSE server on the way): it has a deadline, and helpers
are few at once, fewer still per user.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

import trio

from .. import abi
from ..kernel import Cred, KernelError

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lookup_child.py")
TIMEOUT = 5.0         # seconds a lookup may take (a path through a hung file system takes forever)
CONCURRENT = 8        # helpers at once
CONCURRENT_PER_UID = 2
REPLY_MAX = 1 << 16


@dataclass(frozen=True)
class Found:
    """What a lookup found: its mount (the 32-bit id), its path in the namespace root's frame,
    st_dev, and for watch_sb an O_PATH fd on it (the caller closes it)."""
    mnt_id: int
    path: str
    st_dev: int
    fd: Optional[int] = None


class Lookups:
    """The helpers: at most CONCURRENT at once, CONCURRENT_PER_UID of one uid (beyond: EAGAIN)."""

    def __init__(self, timeout: float = TIMEOUT, concurrent: int = CONCURRENT,
                 per_uid: int = CONCURRENT_PER_UID) -> None:
        self.timeout = timeout
        self.per_uid = per_uid
        self._limiter = trio.CapacityLimiter(concurrent)
        self._busy: dict[int, int] = {}
        self.privileged = os.geteuid() == 0
        self.done = 0
        self.timeouts = 0

    async def lookup(self, pid: int, cred: Cred, nsfd: int, dfd: Optional[int], path: bytes, at_flags: int,
                     for_sb: bool, same_ns: bool) -> Found:
        """Resolve path as pid (its root; its cwd or its fd dfd, None for AT_FDCWD) with cred's
        rights; KernelError with the kernel's errno. same_ns: the caller is in the daemon's
        own mount namespace (the only one an unprivileged daemon can resolve in)."""
        path = path.split(b"\0", 1)[0]  # the string getname copies ends at its NUL
        if len(path) >= abi.PATH_MAX:
            raise KernelError(errno.ENAMETOOLONG, "the path is longer than PATH_MAX")
        if self._busy.get(cred.uid, 0) >= self.per_uid:
            raise KernelError(errno.EAGAIN, "too many path lookups of this user at once")
        self._busy[cred.uid] = self._busy.get(cred.uid, 0) + 1
        try:
            async with self._limiter:
                return await self._lookup(pid, cred, nsfd, dfd, path, at_flags, for_sb, same_ns)
        finally:
            self._busy[cred.uid] -= 1
            if not self._busy[cred.uid]:
                del self._busy[cred.uid]

    def _open_caller(self, pid: int, dfd: Optional[int]) -> tuple[int, int]:
        """O_PATH fds on the caller's root and on its cwd or dfd (-1: dfd is not open)."""
        try:
            root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_CLOEXEC)
        except OSError:
            raise KernelError(errno.ESRCH, f"process {pid} is gone") from None
        where = f"/proc/{pid}/cwd" if dfd is None else f"/proc/{pid}/fd/{dfd}"
        try:
            start = os.open(where, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            start = -1
        return root, start

    async def _lookup(self, pid: int, cred: Cred, nsfd: int, dfd: Optional[int], path: bytes, at_flags: int,
                      for_sb: bool, same_ns: bool) -> Found:
        switch = self.privileged
        if not self.privileged:
            # without CAP_SYS_ADMIN and CAP_SYS_CHROOT the helper cannot join another namespace
            # or root, nor become another user: only a caller like the daemon can be served
            if not same_ns or cred.uid != os.geteuid() or os.stat(f"/proc/{pid}/root") != os.stat("/"):
                raise KernelError(errno.EPERM, "an unprivileged wqfs resolves paths only for its own user, root and namespace")
        root, start = self._open_caller(pid, dfd)
        proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        ours: Optional[socket.socket]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            req = {"ns": nsfd, "root": root, "start": start, "proc": proc, "reply": theirs.fileno(),
                   "setns": self.privileged, "chroot": self.privileged, "switch": switch,
                   "uid": cred.uid, "gid": cred.gid, "groups": sorted(cred.groups), "caps": cred.caps,
                   "path": path.hex(), "at_flags": at_flags, "for_sb": for_sb}
            fds = tuple(fd for fd in (nsfd, root, start, proc, theirs.fileno()) if fd >= 0)
            try:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-I", "-S", CHILD, json.dumps(req)], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=fds, start_new_session=True)
            except OSError as e:  # no process to be had (EAGAIN, ENOMEM, EMFILE...)
                raise KernelError(e.errno if e.errno in (errno.EAGAIN, errno.ENOMEM) else errno.EIO,
                                  f"no path lookup helper: {e}") from None
            theirs.close()
            reply_sock = trio.socket.from_stdlib_socket(ours)
            ours = None
            data, ancdata = b"", []
            deadline = trio.move_on_after(self.timeout)
            try:
                with deadline:
                    data, ancdata, _, _ = await reply_sock.recvmsg(REPLY_MAX, socket.CMSG_SPACE(4))
            finally:
                # the helper runs as the caller, who may stop it: it is killed, not waited for
                with trio.CancelScope(shield=True):
                    process.kill()
                    await process.wait()
                reply_sock.close()
            if deadline.cancelled_caught:
                self.timeouts += 1
                raise KernelError(errno.ETIMEDOUT, "the path lookup took too long")
        finally:
            for fd in (root, start, proc):
                if fd >= 0:
                    os.close(fd)
            theirs.close()
            if ours is not None:
                ours.close()
        self.done += 1
        fd = _received_fd(ancdata)
        try:
            reply = json.loads(data) if data else {"errno": errno.EIO, "message": "the lookup helper failed"}
            if "errno" in reply:
                raise KernelError(int(reply["errno"]), reply.get("message") or os.strerror(int(reply["errno"])))
            found = Found(int(reply["mnt_id"]), os.fsdecode(bytes.fromhex(reply["path"])), int(reply["dev"]), fd)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        if for_sb and fd is None:
            raise KernelError(errno.EIO, "the lookup helper sent no file")
        return found


def _received_fd(ancdata: list) -> Optional[int]:
    """The one fd an SCM_RIGHTS message carried (any more are closed)."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(int.from_bytes(data[i:i + 4], sys.byteorder, signed=True) for i in range(0, usable, 4))
    for extra in fds[1:]:
        os.close(extra)
    if fds:
        os.set_inheritable(fds[0], False)
    return fds[0] if fds else None
