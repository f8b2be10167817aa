"""The daemon's own work, beside both fronts: the key garbage collector and the reaper.

The kernel collects unreferenced, expired and revoked keys in key_garbage_collector (a work
item queued by the operation that doomed a key), and drops a task's thread, process and session
keyrings as the task exits. Here both are trio tasks of the daemon's loop: the collector wakes
when the Kernel says a key may be garbage (and when the next key expires), and the reaper asks
/proc every REAPER_INTERVAL which owners are gone, since nothing tells a user-space daemon that
an arbitrary task ended.
"""
from __future__ import annotations

import math

import trio

from .callers import CallerTable, alive
from .kernel import Kernel

REAPER_INTERVAL = 1.0  # seconds: how often thread, process and session owners are checked


async def run_gc(kernel: Kernel) -> None:
    """The key garbage collector, run after the operation that doomed a key, or when one is due."""
    wake = trio.Event()

    def doomed() -> None:
        wake.set()

    # Registered here, before the first pass: whatever was doomed before is collected by it.
    kernel.add_gc_listener(doomed)
    while True:
        wake = trio.Event()  # a key doomed during the pass sets the new event: another pass
        due = kernel.collect()
        with trio.move_on_after(math.inf if due is None else due + 0.01):
            await wake.wait()


async def run_reaper(kernel: Kernel, callers: CallerTable) -> None:
    """Thread, process and session keyrings go when their owner ends."""
    while True:
        await trio.sleep(REAPER_INTERVAL)
        for kind in ("thread", "process"):
            for owner in kernel.owners(kind):
                if isinstance(owner, tuple) and not alive(owner):
                    kernel.owner_gone(kind, owner)
        for token in kernel.owners("session"):
            if not callers.session_alive(token):
                kernel.owner_gone("session", token)


__all__ = ["REAPER_INTERVAL", "run_gc", "run_reaper"]
