"""Watches: kernel/watch_queue.c's struct watch, add_watch_to_object, remove_watch_from_object,
remove_watch_list and post_watch_notification.

A watch ties one queue to one watched object (a key today; mounts and superblocks beside
it). The object keeps its watchers in a plain list, newest first as hlist_add_head leaves
them; the queue keeps its watches by (watch type, object id), one per object. What a watch
costs is charged to its user's nr_watches, limited by RLIMIT_NOFILE (EAGAIN past it).
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Hashable, Optional

from ... import abi
from ..cred import Cred, current_cred
from ..errors import KernelError
from ...records import pack_removal

if TYPE_CHECKING:
    from ..security.security import LSM
    from .queue import WatchQueue


class Watch:
    """struct watch: the queue, the object's watch list, its type and id, the tag (info_id)
    every record it delivers carries, the user whose nr_watches it is charged to, and the
    setter's Cred (watch->cred, which post_notification is given as w_cred).

    The id is what the queue tells its watches apart by: a key's serial, a superblock's id,
    or, for a mount watch, the watched directory (its mount and its path in that mount)."""

    __slots__ = ("queue", "watch_list", "type", "id", "tag", "uid", "cred")

    def __init__(self, queue: WatchQueue, watch_list: list[Watch], wtype: int, object_id: Hashable,
                 tag: int, uid: int, cred: Optional[Cred] = None) -> None:
        self.queue = queue
        self.watch_list = watch_list
        self.type = wtype
        self.id = object_id
        self.tag = tag
        self.uid = uid
        self.cred = cred

    @property
    def index(self) -> tuple[int, Hashable]:
        return (self.type, self.id)


class WatchCounts:
    """user->nr_watches of every user: what add_watch_to_object charges and the removal gives back."""

    __slots__ = ("_by_uid",)

    def __init__(self) -> None:
        self._by_uid: dict[int, int] = {}

    def charge(self, uid: int, limit: int) -> None:
        """atomic_inc_return(&user->nr_watches) > RLIMIT_NOFILE: EAGAIN, nothing charged."""
        count = self._by_uid.get(uid, 0)
        if count + 1 > limit:
            raise KernelError(errno.EAGAIN, f"uid {uid} has {count} watches, the RLIMIT_NOFILE limit")
        self._by_uid[uid] = count + 1

    def refund(self, uid: int) -> None:
        left = self._by_uid.get(uid, 1) - 1
        if left > 0:
            self._by_uid[uid] = left
        else:
            self._by_uid.pop(uid, None)

    def total(self) -> int:
        return sum(self._by_uid.values())


def find_watch(queue: WatchQueue, wtype: int, object_id: Hashable) -> "Watch | None":
    """The queue's watch on the object, if it has one."""
    return queue.watches.get((wtype, object_id))


def add_watch_to_object(watch: Watch, counts: WatchCounts, limit: int) -> None:
    """EBUSY if the queue watches the object already; EAGAIN past the user's limit; else the
    watch goes first on the object's list."""
    if watch.index in watch.queue.watches:
        raise KernelError(errno.EBUSY, f"the queue already watches object {watch.id}")
    counts.charge(watch.uid, limit)
    watch.watch_list.insert(0, watch)
    watch.queue.watches[watch.index] = watch


def _unhook(watch: Watch, counts: WatchCounts) -> None:
    try:
        watch.watch_list.remove(watch)
    except ValueError:
        pass
    watch.queue.watches.pop(watch.index, None)
    counts.refund(watch.uid)


def remove_watch_from_object(watch: Watch, counts: WatchCounts, removal_id: Optional[int] = None) -> None:
    """Unhook one watch and post its removal record (WATCH_META_REMOVAL_NOTIFICATION), which no
    filter stops but a full queue can still lose. The record carries the id the caller passes
    (removal_id; the watch's own id, a key's serial, by default), as the kernel's does."""
    _unhook(watch, counts)
    object_id = watch.id if removal_id is None else removal_id
    assert isinstance(object_id, int)
    watch.queue.post(pack_removal(object_id, watch.tag), filterable=False)


def remove_watch_list(watch_list: list[Watch], counts: WatchCounts, removal_id: Optional[int] = None) -> None:
    """The object is going away: every watch on it is removed, each with its record."""
    for watch in list(watch_list):
        remove_watch_from_object(watch, counts, removal_id)


def watch_queue_clear(queue: WatchQueue, counts: WatchCounts) -> None:
    """The queue's last file closed: its watches are unhooked, and no record is posted (the
    queue is defunct)."""
    queue.defunct = True
    for watch in list(queue.watches.values()):
        _unhook(watch, counts)


def post_watch_notification(watch_list: list[Watch], rtype: int, subtype: int, length: int,
                            pack: Callable[[int], bytes], flags: int = 0, lsm: Optional[LSM] = None) -> None:
    """__post_watch_notification: every watch on the object gets its own copy, its info the
    record's length, its type-specific flags and the watch's tag (info_id), filtered by its
    queue. pack(info) gives a copy's bytes: each is packed once, and its queue filters on the
    fields it was packed from. lsm, the Kernel's security module if one is loaded, rules on
    each copy that passed the filter (security_post_notification): see _post_checked."""
    if lsm is not None:
        _post_checked(watch_list, rtype, subtype, length, pack, flags, lsm)
        return
    for watch in watch_list:
        info = length | flags | (watch.tag & 0xFF) << abi.WATCH_INFO_ID__SHIFT
        watch.queue.post_fields(pack(info), rtype, subtype, info)


def _post_checked(watch_list: list[Watch], rtype: int, subtype: int, length: int,
                  pack: Callable[[int], bytes], flags: int, lsm: LSM) -> None:
    """The loop with the module asked, in the kernel's order: the queue's filter, then
    post_notification(watch->cred, the generator's cred, the copy), then the ring. The
    generator is current_cred(): the system call being served, or None (no task)."""
    cred = current_cred()
    hook = lsm.post_notification
    for watch in watch_list:
        info = length | flags | (watch.tag & 0xFF) << abi.WATCH_INFO_ID__SHIFT
        queue = watch.queue
        if not queue.accepts(rtype, subtype, info):
            continue
        record = pack(info)
        if hook(watch.cred, cred, rtype, subtype, info, record):
            continue  # refused: this copy is dropped, silently
        queue.enqueue(record)
