"""security/keys/gc.c: the key garbage collector. Keys nothing references are freed; revoked
and expired keys are unlinked from their keyrings key_gc_delay seconds after (invalidated
ones at once), then freed; freeing posts the removal record to every watch on the key.

RCU, as a distribution kernel (SMP, Tree RCU) has it: a keyring drops the reference of a link
it lost only in an RCU callback (assoc_array_apply_edit -> call_rcu -> keyring_free_object ->
key_put), and so does a credential that held a thread, process or session keyring; and the
collector frees an unreferenced key only after synchronize_rcu(). Each is one grace period
(GarbageCollector.grace): until the first ends the key is alive (found by serial, relinkable);
its removal record comes after the second. A grace of 0 frees at the next pass.

The collector runs when a front calls collect(): a front registers a listener to be told
when a pass is due (key_schedule_gc_links), and collect() says when the next one is.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable, Optional

from ..watch_queue import remove_watch_list
from .key import Key
from .keyring import drop_link

if TYPE_CHECKING:
    from ..kernel import Kernel


class GarbageCollector:
    """What the collector must look at: keys gone unreferenced, and keys with a time
    (revoked, invalidated, expiring); and who to wake when a pass is due."""

    __slots__ = ("delay", "grace", "pending", "timed", "deferred", "reaping", "_listeners", "_clock")

    def __init__(self, delay: float, grace: float, clock: Callable[[], float]) -> None:
        self.delay = delay
        self.grace = grace
        self.pending: set[Key] = set()
        self.timed: set[Key] = set()  # revoked, invalidated or with an expiry: GC must look
        self.deferred: deque[tuple[float, Key]] = deque()  # call_rcu'd key_puts, by when they run
        self.reaping: dict[Key, float] = {}  # unreferenced keys: freed once synchronize_rcu returns
        self._listeners: list[Callable[[], None]] = []
        self._clock = clock

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

    def put_after_grace(self, key: Key) -> None:
        """call_rcu(..., key_put): the reference is held until a grace period has passed."""
        if self.grace <= 0:
            self.maybe_unreferenced(key)
            return
        key.pins += 1
        self.deferred.append((self._clock() + self.grace, key))
        self.wake()


def collect(k: Kernel) -> Optional[float]:
    """One pass of key_garbage_collector. Returns seconds until a pass is next due, or None."""
    gc = k.gc
    now = k.now()
    while gc.deferred and gc.deferred[0][0] <= now:  # the RCU callbacks whose grace is over
        _, key = gc.deferred.popleft()
        key.pins -= 1
        gc.maybe_unreferenced(key)
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
    while True:  # freeing a keyring lets go of its members, which may be due at once (no grace)
        while gc.pending:
            key = gc.pending.pop()
            if not key.referenced and not key.dead:
                gc.reaping.setdefault(key, now + gc.grace)
        due_now = [key for key, due in gc.reaping.items() if due <= now or key.referenced or key.dead]
        if not due_now:
            break
        for key in due_now:
            del gc.reaping[key]
            if not key.referenced and not key.dead:  # else relinked in time, or freed already
                key_gc_unused_key(k, key)
    for due in gc.reaping.values():
        if next_due is None or due - now < next_due:
            next_due = due - now
    if gc.deferred:
        due = gc.deferred[0][0] - now
        next_due = due if next_due is None else min(next_due, due)
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
