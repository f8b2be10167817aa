"""One trapped system call, bound to the task that made it.

A notification names its task by pid, and a pid is only a number: the task may be killed
while the daemon works on its call, and the number given to someone else (root, say). So,
as seccomp_unotify(2) prescribes, the daemon first opens the task's /proc/TID directory and
only then asks SECCOMP_IOCTL_NOTIF_ID_VALID: if the call is still valid, that directory is
the trapped task's and every later read through it (credentials, groups, capabilities, fd
table, limits) is of that task or fails. The call is checked again after each copy from the
caller's memory (the copies run on threads, see transfer.py, and take time), right before a
copy into it, and so before every change the call makes to the key store.
"""
from __future__ import annotations

import errno
import os
from typing import Any, Callable, Optional

from ..callers import CallerTable, TaskGone, TaskInfo, nofile_limit
from ..kernel import Cred, KernelError
from . import memory, seccomp
from .seccomp import Notification
from .transfer import Abandoned, TransferPool


class Dropped(Exception):
    """The call is no longer valid: its task was killed or interrupted. Nobody is answered."""


class Trapped:
    """A notification and the /proc directory of its task."""

    __slots__ = ("listener", "notif", "pid", "_dir", "_info", "_pool", "_callers", "label")

    def __init__(self, listener: int, notif: Notification, pool: TransferPool, callers: CallerTable,
                 label: Optional[str] = None) -> None:
        """label: the security label its listener's programs run with (`wqfs run --smack-label`),
        None for the one the daemon's configuration gives the task."""
        self.listener = listener
        self.label = label
        self.notif = notif
        self.pid = notif.pid
        self._pool = pool
        self._callers = callers
        self._info: Optional[TaskInfo] = None
        try:
            self._dir: Optional[int] = os.open(f"/proc/{notif.pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            self._dir = None
            if error.errno in (errno.ENOENT, errno.ESRCH):
                raise Dropped() from None  # gone already
            # out of fds or memory: the call must still be answered, or its caller waits for ever
            raise KernelError(errno.EAGAIN, f"cannot look at task {notif.pid}: {error.strerror}") from None
        if not self.valid():
            self.close()
            raise Dropped()

    def valid(self) -> bool:
        return seccomp.id_valid(self.listener, self.notif.id)

    def require_valid(self) -> None:
        if not self.valid():
            raise Dropped()

    def close(self) -> None:
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    # ---- who the task is ----

    def info(self) -> TaskInfo:
        if self._info is None:
            try:
                self._info = self._callers.task(self.pid, self._dir)
            except TaskGone:
                raise Dropped() from None
        return self._info

    def cred(self) -> Cred:
        """The task's credentials now: fsuid, fsgid, groups, capabilities, keyring owners, and
        its security label (its listener's, else the configuration's, else none)."""
        info = self.info()
        label = self.label
        if label is None and self._callers.labels is not None:
            label = self._callers.labels(self.pid, info.fsuid, self._dir)
        return info.cred(implicit_session=True, label=label)

    def fd_target(self, fd: int) -> Optional[str]:
        """What the task's fd is (readlink of /proc/TID/fd/N), None for no such fd."""
        if fd < 0:
            return None
        try:
            return os.readlink(f"fd/{fd}", dir_fd=self._dir)
        except OSError:
            return None

    def nofile_limit(self) -> int:
        return nofile_limit(self.pid, self._dir)

    # ---- its memory ----

    async def copy(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(pid, *args) on a copy thread (it reads or writes the caller's memory), within the
        copy allowance of the task's fsuid; then the call must still be valid: what was read
        may be of another task otherwise."""
        try:
            result = await self._pool.run(self.info().fsuid, self.valid, fn, self.pid, *args)
        except Abandoned:
            raise Dropped() from None
        self.require_valid()
        return result

    async def read(self, address: int, length: int) -> bytes:
        return await self.copy(memory.read, address, length)

    async def write(self, address: int, data: bytes) -> None:
        """copy_to_user: checked valid on the copy thread right before the write itself."""
        await self.copy(memory.write_checked, self.valid, address, data)


__all__ = ["Dropped", "Trapped"]
