"""Watches tie a queue to a key; posting fans a record out to every watch on the key."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..records import pack_key_notification, pack_removal, with_tag

if TYPE_CHECKING:
    from .key import Key
    from .queue import WatchQueue


class Watch:
    __slots__ = ("queue", "key", "tag", "uid")

    def __init__(self, queue: WatchQueue, key: Key, tag: int, uid: int) -> None:
        self.queue = queue
        self.key = key
        self.tag = tag
        self.uid = uid  # the user whose watch count it is charged to


def post_key_notification(key: Key, subtype: int, aux: int = 0) -> None:
    """Every watch on the key gets its own copy, tagged, filtered by its queue."""
    if not key.watchers:
        return
    base = pack_key_notification(subtype, key.serial, aux)
    for watch in key.watchers:
        watch.queue.post(with_tag(base, watch.tag))


def post_removal(watch: Watch) -> None:
    """Removal records bypass filters but can still be lost to a full queue."""
    watch.queue.post(pack_removal(watch.key.serial, watch.tag), filterable=False)


def attach(watch: Watch) -> None:
    watch.key.watchers.insert(0, watch)
    watch.queue.watches[watch.key.serial] = watch


def detach(watch: Watch) -> None:
    try:
        watch.key.watchers.remove(watch)
    except ValueError:
        pass
    watch.queue.watches.pop(watch.key.serial, None)
