"""Superblock errors from the host: a fanotify FAN_FS_ERROR group (fanotify.py; Linux 5.16,
fs/notify/fanotify) per superblock that has sb watches, each event told to the emulated
kernel's notify_sb_error (fs/super.c of the v16 patch).

The marks follow the watches: one is put when a watch_sb succeeds, on the file the caller
named (the lookup's O_PATH fd, so the mark is on that file's superblock whatever is mounted
over its path since), and the group is closed once the superblock has no watch left. Only the
file systems that call fsnotify_sb_error report anything (ext4 does; tmpfs never), and fanotify
merges repeats of one error into one event's error_count: one record, not N.
"""
from __future__ import annotations

import errno
import logging
import os

import trio

from ..kernel import Kernel
from . import fanotify

log = logging.getLogger("wqfs.host")
GROUPS = 64  # fanotify groups for errors at most (fs.fanotify.max_user_groups is 128 per user)
# Putting a mark asks the file system for its fsid (statfs): a FUSE file system (this daemon's
# own mount among them) or a hung network one answers that only when its server does, so the
# mark is put on a thread, a few at a time, and given up after MARK_DEADLINE seconds.
MARK_THREADS = 4
MARK_DEADLINE = 5.0
NO_ERRORS_FSTYPES = ("fuse", "fuseblk")  # FUSE reports no superblock errors: no mark, no statfs


class SbErrorFeeds:
    def __init__(self, kernel: Kernel, limit: int = GROUPS) -> None:
        self.kernel = kernel
        self.limit = limit
        self._groups: dict[int, tuple[int, trio.CancelScope]] = {}
        self.errors = 0
        self.unavailable = 0
        self._marking: set[int] = set()
        self._limiter = trio.CapacityLimiter(MARK_THREADS)

    async def add(self, nursery: trio.Nursery, sb_id: int, fd: int, fstype: str = "") -> None:
        """A FAN_FS_ERROR mark on fd's file system, reported as superblock sb_id (fd is closed
        here). The watch_sb that asks waits for it, so that an error after its return is seen."""
        if (sb_id in self._groups or sb_id in self._marking or len(self._groups) + len(self._marking) >= self.limit
                or fstype.split(".")[0] in NO_ERRORS_FSTYPES):
            os.close(fd)
            return
        self._marking.add(sb_id)
        abandoned = False

        def mark() -> int:
            try:
                group = fanotify.error_group(fd)
            finally:
                os.close(fd)
            if abandoned:  # the deadline passed while the file system kept us waiting
                os.close(group)
                raise OSError(errno.ETIMEDOUT, "the file system did not answer statfs in time")
            return group

        done = False
        try:
            with trio.move_on_after(MARK_DEADLINE):
                group = await trio.to_thread.run_sync(mark, abandon_on_cancel=True, limiter=self._limiter)
                done = True
                if self.kernel.superblock_watch_count(sb_id):
                    scope = trio.CancelScope()
                    self._groups[sb_id] = (group, scope)
                    nursery.start_soon(self._read, sb_id, group, scope)
                else:
                    os.close(group)
                return
            self.unavailable += 1
            log.debug("no FAN_FS_ERROR for superblock %#x: statfs did not answer in %s s", sb_id, MARK_DEADLINE)
        except OSError as e:  # no fanotify, no fsid (EXDEV, ENODEV, EOPNOTSUPP), no privilege
            self.unavailable += 1
            log.debug("no FAN_FS_ERROR for superblock %#x: %s", sb_id, e)
        finally:
            abandoned = not done  # past the deadline, or the caller's call was cancelled
            self._marking.discard(sb_id)

    async def _read(self, sb_id: int, group: int, scope: trio.CancelScope) -> None:
        try:
            with scope:
                while True:
                    await trio.lowlevel.wait_readable(group)
                    for event in fanotify.read_events(group):
                        if event.mask & fanotify.FAN_FS_ERROR and event.error is not None:
                            self.errors += 1
                            self.kernel.notify_sb_error(sb_id, event.error)
        finally:
            if self._groups.get(sb_id, (None,))[0] == group:
                del self._groups[sb_id]
            trio.lowlevel.notify_closing(group)
            os.close(group)

    def reap(self) -> None:
        """Close the groups of superblocks that have no watch left."""
        for sb_id, (_, scope) in list(self._groups.items()):
            if not self.kernel.superblock_watch_count(sb_id):
                scope.cancel()

    def __len__(self) -> int:
        return len(self._groups)
