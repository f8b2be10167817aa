"""Pipe-buffer accounting of notification pipes: what bounds a user's queue memory.

Mirrors fs/pipe.c (account_pipe_buffers, too_many_pipe_buffers_soft/_hard,
pipe_is_unprivileged_user, alloc_pipe_info, free_pipe_info) and the accounting half of
kernel/watch_queue.c's watch_queue_set_size, as Linux 6.1 has them (with the stable fix
"watch_queue: fix pipe accounting mismatch", which makes max_usage and nr_accounted the
pages SET_SIZE charged).

The limits are the host's sysctls, read afresh at each use as the kernel reads them (READ_ONCE).
The pages counted are wqfs's own, per daemon: the real kernel also counts a user's real pipes
against the same limits, but that charge lives in the host's user_struct, which no daemon can
read, so a user's real pipes and its wqfs queues are limited separately.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from .. import abi
from .errors import KernelError

if TYPE_CHECKING:
    from .cred import Cred
    from .watch_queue import WatchQueue

SYSCTL_DIR = "/proc/sys/fs"


@dataclass(frozen=True)
class PipeLimits:
    """The fs.pipe-* sysctls: pipe-max-size (bytes), pipe-user-pages-soft and -hard (pages, 0: none)."""
    max_size: int = abi.PIPE_MAX_SIZE_DEFAULT
    user_pages_soft: int = abi.PIPE_USER_PAGES_SOFT_DEFAULT
    user_pages_hard: int = abi.PIPE_USER_PAGES_HARD_DEFAULT


def _sysctl(name: str, default: int) -> int:
    try:
        with open(f"{SYSCTL_DIR}/{name}", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return default


def read_pipe_limits() -> PipeLimits:
    """The host's limits now; the kernel's defaults for any that cannot be read."""
    return PipeLimits(_sysctl("pipe-max-size", abi.PIPE_MAX_SIZE_DEFAULT),
                      _sysctl("pipe-user-pages-soft", abi.PIPE_USER_PAGES_SOFT_DEFAULT),
                      _sysctl("pipe-user-pages-hard", abi.PIPE_USER_PAGES_HARD_DEFAULT))


def too_many_pipe_buffers(limit: int, user_bufs: int) -> bool:
    """too_many_pipe_buffers_soft/_hard: a limit of 0 is no limit."""
    return limit != 0 and user_bufs > limit


def pipe_is_unprivileged_user(cred: Optional[Cred]) -> bool:
    """pipe_is_unprivileged_user: neither CAP_SYS_RESOURCE nor CAP_SYS_ADMIN lifts the limits
    (no cred: nobody known to have them)."""
    return cred is None or (not cred.capable(abi.CAP_SYS_RESOURCE) and not cred.capable(abi.CAP_SYS_ADMIN))


class PipeAccounting:
    """Every user's user->pipe_bufs: the pages its notification pipes hold, by uid."""

    def __init__(self, limits: Callable[[], PipeLimits] = read_pipe_limits) -> None:
        self.limits = limits
        self._pipe_bufs: dict[int, int] = {}

    def pipe_bufs(self, uid: int) -> int:
        return self._pipe_bufs.get(uid, 0)

    def account_pipe_buffers(self, uid: int, old: int, new: int) -> int:
        """account_pipe_buffers: move one pipe's charge from old to new pages; the user's total."""
        total = self._pipe_bufs.get(uid, 0) + new - old
        if total:
            self._pipe_bufs[uid] = total
        else:
            self._pipe_bufs.pop(uid, None)
        return total

    def alloc_pipe_info(self, cred: Cred) -> int:
        """alloc_pipe_info: charge a new pipe to cred's user; the pages it gets (its max_usage
        and nr_accounted). 16, or 2 past the soft limit; ENFILE (create_pipe_files' errno)
        past the hard limit, with nothing charged."""
        limits = self.limits()
        uid = cred.uid
        pipe_bufs = abi.PIPE_DEF_BUFFERS
        if pipe_bufs * abi.PAGE_SIZE > limits.max_size and not cred.capable(abi.CAP_SYS_RESOURCE):
            pipe_bufs = limits.max_size >> abi.PAGE_SHIFT
        user_bufs = self.account_pipe_buffers(uid, 0, pipe_bufs)
        if too_many_pipe_buffers(limits.user_pages_soft, user_bufs) and pipe_is_unprivileged_user(cred):
            user_bufs = self.account_pipe_buffers(uid, pipe_bufs, abi.PIPE_MIN_DEF_BUFFERS)
            pipe_bufs = abi.PIPE_MIN_DEF_BUFFERS
        if too_many_pipe_buffers(limits.user_pages_hard, user_bufs) and pipe_is_unprivileged_user(cred):
            self.account_pipe_buffers(uid, pipe_bufs, 0)
            raise KernelError(errno.ENFILE, f"uid {uid} is over pipe-user-pages-hard "
                                            f"({limits.user_pages_hard} pages)")
        return pipe_bufs

    def watch_queue_set_size(self, queue: WatchQueue, cred: Optional[Cred], nr_pages: int) -> None:
        """watch_queue_set_size's accounting, after its ENODEV/EBUSY/EINVAL checks: recharge the
        pipe's user for nr_pages; EPERM (the charge put back) for an unprivileged caller growing
        the pipe past its max_usage while its user is over a limit. cred is the caller (whose
        capabilities count); the pages are charged to the pipe's user, whoever sizes it."""
        uid = queue.pipe_user
        if uid is None:  # never charged (a queue made without Kernel.new_queue)
            queue.max_usage = nr_pages
            return
        limits = self.limits()
        user_bufs = self.account_pipe_buffers(uid, queue.nr_accounted, nr_pages)
        if (nr_pages > queue.max_usage
                and (too_many_pipe_buffers(limits.user_pages_hard, user_bufs)
                     or too_many_pipe_buffers(limits.user_pages_soft, user_bufs))
                and pipe_is_unprivileged_user(cred)):
            self.account_pipe_buffers(uid, nr_pages, queue.nr_accounted)
            raise KernelError(errno.EPERM, f"uid {uid} is over its pipe-user-pages limit: "
                                           f"{nr_pages} pages refused")
        queue.max_usage = queue.nr_accounted = nr_pages

    def free_pipe_info(self, queue: WatchQueue) -> None:
        """free_pipe_info: the pipe's pages go back to its user; once, however often it is called."""
        uid = queue.pipe_user
        if uid is not None:
            self.account_pipe_buffers(uid, queue.nr_accounted, 0)
            queue.pipe_user = None
            queue.nr_accounted = 0
