"""Superblock notifications: fs/super.c of the February 2020 patch ("vfs: Add superblock
notifications [ver #16]"), its records on the 5.8 header as WATCH_TYPE_SB_NOTIFY (3).

A superblock's id is its device number as stat(2) gives it (st_dev): the patch's s_unique_id
counter exists in no kernel, and st_dev is what a program can compare a record with.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

from ... import abi
from ...records import pack_sb_error, pack_sb_notification
from ..cred import Cred
from ..errors import KernelError
from ..security.security import security_watch_sb
from ..watch_queue.queue import WatchQueue
from ..watch_queue.watch import Watch, add_watch_to_object, find_watch, post_watch_notification, remove_watch_from_object, remove_watch_list

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..security.security import LSM
    from .namespace import MountTarget


class Superblock:
    """struct super_block: its id, what the host last said of it, s_watchers, and how many
    mounts the feeds know of it (s_active: the watches go when the last one does)."""

    __slots__ = ("id", "ro", "opts", "watchers", "active")

    def __init__(self, sb_id: int, ro: bool, opts: str) -> None:
        self.id = sb_id
        self.ro = ro
        self.opts = opts
        self.watchers: list[Watch] = []
        self.active = 0


def get_super(k: Kernel, sb_id: int, ro: bool, opts: str) -> Superblock:
    sb = k.mounts.superblocks.get(sb_id)
    if sb is None:
        sb = k.mounts.superblocks[sb_id] = Superblock(sb_id, ro, opts)
    sb.active += 1
    return sb


def put_super(k: Kernel, sb_id: int) -> None:
    """deactivate_locked_super: the last mount of it gone, remove_watch_list(s_watchers, id)."""
    sb = k.mounts.superblocks.get(sb_id)
    if sb is None:
        return
    sb.active -= 1
    if sb.active <= 0:
        del k.mounts.superblocks[sb_id]
        remove_watch_list(sb.watchers, k.watch_counts, sb_id)


def notify_sb(sb: Superblock, subtype: int, flags: int = 0, lsm: Optional[LSM] = None) -> None:
    post_watch_notification(sb.watchers, abi.WATCH_TYPE_SB_NOTIFY, subtype, abi.SUPERBLOCK_NOTIFICATION_SIZE,
                            lambda info: pack_sb_notification(subtype, sb.id, info), flags, lsm)


def reconfigure_super(k: Kernel, sb_id: int, ro: bool, opts: str) -> bool:
    """A superblock the host shows with new options was reconfigured: NOTIFY_SUPERBLOCK_READONLY,
    which v16 posts after every successful reconfigure, IS_NOW_RO when it went from read-write to
    read-only (remount_ro). False if the superblock had these options already."""
    sb = k.mounts.superblocks.get(sb_id)
    if sb is None or sb.opts == opts:
        return False
    went_ro = ro and not sb.ro
    sb.ro, sb.opts = ro, opts
    notify_sb(sb, abi.NOTIFY_SUPERBLOCK_READONLY, abi.NOTIFY_SUPERBLOCK_IS_NOW_RO if went_ro else 0, k.lsm)
    return True


def notify_sb_error(k: Kernel, sb_id: int, error: int) -> None:
    """notify_sb_error: NOTIFY_SUPERBLOCK_ERROR with the error number, error_cookie 0."""
    sb = k.mounts.superblocks.get(sb_id)
    if sb is None:
        return
    post_watch_notification(sb.watchers, abi.WATCH_TYPE_SB_NOTIFY, abi.NOTIFY_SUPERBLOCK_ERROR,
                            abi.SUPERBLOCK_ERROR_NOTIFICATION_SIZE, lambda info: pack_sb_error(sb.id, error, info),
                            lsm=k.lsm)


def superblock_watch_count(k: Kernel, sb_id: int) -> int:
    sb = k.mounts.superblocks.get(sb_id)
    return 0 if sb is None else len(sb.watchers)


def watch_sb(k: Kernel, cred: Cred, target: MountTarget, queue: Optional[WatchQueue], watch_id: int,
             watch_limit: int = 1024) -> None:
    """watch_sb(2), after mount_notify.check_watch_args and the path lookup (the patch passes
    at_flags where the lookup flags belong, so the last symlink is not followed, a file will do,
    and AT_EMPTY_PATH does not take; MAY_EXEC as the caller: the front's): the queue (EINVAL),
    then add (security_watch_sb, after the superblock's own EIO here since the module is shown
    the superblock; EBUSY, EAGAIN) or, for -1, remove (EBADSLT), the record carrying the sb's id."""
    if queue is None or queue.defunct:
        raise KernelError(errno.EINVAL, "not a notification queue")
    sb = k.mounts.superblocks.get(target.dev)
    if sb is None:
        raise KernelError(errno.EIO, f"superblock {target.dev:#x} is going away")
    if watch_id >= 0:
        if k.lsm is not None:
            security_watch_sb(k.lsm, cred, sb)
        add_watch_to_object(Watch(queue, sb.watchers, abi.WATCH_TYPE_SB_NOTIFY, sb.id, watch_id, cred.uid, cred),
                            k.watch_counts, watch_limit)
        return
    existing = find_watch(queue, abi.WATCH_TYPE_SB_NOTIFY, sb.id)
    if existing is None:
        raise KernelError(errno.EBADSLT, f"the queue does not watch superblock {sb.id:#x}")
    remove_watch_from_object(existing, k.watch_counts, sb.id)
