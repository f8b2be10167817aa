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

import logging
import os

import trio

from ..kernel import Kernel
from . import fanotify

log = logging.getLogger("wqfs.host")
GROUPS = 64  # fanotify groups for errors at most (fs.fanotify.max_user_groups is 128 per user)


class SbErrorFeeds:
    def __init__(self, kernel: Kernel, limit: int = GROUPS) -> None:
        self.kernel = kernel
        self.limit = limit
        self._groups: dict[int, tuple[int, trio.CancelScope]] = {}
        self.errors = 0
        self.unavailable = 0

    def add(self, nursery: trio.Nursery, sb_id: int, fd: int) -> None:
        """A FAN_FS_ERROR mark on fd's file system, reported as superblock sb_id (fd is closed here)."""
        try:
            if sb_id in self._groups or len(self._groups) >= self.limit:
                return
            try:
                group = fanotify.error_group(fd)
            except OSError as e:  # no fanotify, no fsid (EXDEV, ENODEV, EOPNOTSUPP), no privilege
                self.unavailable += 1
                log.debug("no FAN_FS_ERROR for superblock %#x: %s", sb_id, e)
                return
            scope = trio.CancelScope()
            self._groups[sb_id] = (group, scope)
            nursery.start_soon(self._read, sb_id, group, scope)
        finally:
            os.close(fd)

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
