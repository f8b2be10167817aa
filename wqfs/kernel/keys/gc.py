"""security/keys/gc.c: the key garbage collector. Keys nothing references are freed; revoked
and expired keys are unlinked from their keyrings key_gc_delay seconds after (invalidated
ones at once), then freed; freeing posts the removal record to every watch on the key.

The collector runs when a front calls collect(): a front registers a listener to be told
when a pass is due (key_schedule_gc_links), and collect() says when the next one is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from ..watch_queue import remove_watch_list
from .key import Key
from .keyring import drop_link

if TYPE_CHECKING:
    from ..kernel import Kernel


class GarbageCollector:
    """What the collector must look at: keys gone unreferenced, and keys with a time
    (revoked, invalidated, expiring); and who to wake when a pass is due."""

    __slots__ = ("delay", "pending", "timed", "_listeners")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.pending: set[Key] = set()
        self.timed: set[Key] = set()  # revoked, invalidated or with an expiry: GC must look
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def wake(self) -> None:
        for callback in self._listeners:
            callback()

    def maybe_unreferenced(self, key: Key) -> None:
        """key_put's last reference: the key is queued for the collector."""
        if not key.referenced and not key.dead:
            self.pending.add(key)
            self.wake()


def collect(k: Kernel) -> Optional[float]:
    """One pass of key_garbage_collector. Returns seconds until a pass is next due, or None."""
    gc = k.gc
    now = k.now()
    next_due: Optional[float] = None
    for key in list(gc.timed):
        if key.dead:
            gc.timed.discard(key)
            continue
        if key.invalidated:
            due = now
        else:
            stamps = [t for t in (key.revoked_at, key.expiry) if t is not None]
            if not stamps:
                gc.timed.discard(key)
                continue
            due = min(stamps) + gc.delay
            if key.revoked_at is None and key.expiry is not None and now < key.expiry:
                due = key.expiry + gc.delay
        if due <= now:
            gc.timed.discard(key)
            for ring in list(key.parents.values()):
                drop_link(k, ring, key)
        elif next_due is None or due - now < next_due:
            next_due = due - now
    while gc.pending:
        key = gc.pending.pop()
        if not key.referenced and not key.dead:
            key_gc_unused_key(k, key)
    return next_due


def key_gc_unused_key(k: Kernel, key: Key) -> None:
    """Free a key: its watches removed (each with its record), its links and quota let go."""
    key.dead = True
    k.keys.pop(key.serial, None)
    k.gc.timed.discard(key)
    remove_watch_list(key.watchers, k.watch_counts)
    if key.members is not None:
        for member in list(key.members.values()):
            drop_link(k, key, member)
    if key.quota_bytes >= 0:
        k.key_users.charge(key.uid, -1, -key.quota_bytes)
    for ring in list(key.parents.values()):
        drop_link(k, ring, key)
    k.process.changed()
