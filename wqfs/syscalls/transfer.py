"""Copies to and from a trapped caller's memory, off the loop that serves FUSE.

The kernel's copy_from_user/copy_to_user may fault, and a fault may wait for a file system:
for a page of a file on this very mount, for our own FUSE answer. The daemon serves FUSE in
its trio loop, so a copy made there could wait for itself for ever (and a slow third-party
FUSE or network mount could hold it as long as its server likes). So every copy runs on a
worker thread, and the loop only waits for it, as one caller's call waits and nobody else's:

* a uid has at most PER_UID copies on the way at once (abandoned ones included, until their
  thread comes back), so a user whose pages never arrive holds its own calls only;
* threads are made as needed up to MAX_THREADS and then wait for work;
* a copy that is taken long is checked every CHECK_INTERVAL: once its call is no longer
  valid (the caller was killed or interrupted, SECCOMP_IOCTL_NOTIF_ID_VALID), it is abandoned
  and the call dropped, as the kernel would end the caller's syscall.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional

import outcome
import trio

PER_UID = 8
MAX_THREADS = 64
CHECK_INTERVAL = 0.1


class Abandoned(Exception):
    """The copy's call became invalid while it was on the way: nobody waits for the answer."""


class _Job:
    __slots__ = ("fn", "args", "task", "token", "cancelled", "started", "valid", "uid")

    def __init__(self, fn: Callable[..., Any], args: tuple, uid: int, valid: Callable[[], bool]) -> None:
        self.fn = fn
        self.args = args
        self.task = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()
        self.cancelled = False
        self.started = time.monotonic()
        self.valid = valid
        self.uid = uid


class TransferPool:
    """A small pool of copy threads with a per-uid bound; see the module docstring."""

    def __init__(self, per_uid: int = PER_UID, max_threads: int = MAX_THREADS) -> None:
        self.per_uid = per_uid
        self.max_threads = max_threads
        self._jobs: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()
        self._threads = 0
        self._idle = 0
        self._lock = threading.Lock()
        self._busy: dict[int, int] = {}          # uid -> copies on the way (abandoned included)
        self._slots: dict[int, trio.Event] = {}  # uid -> set when one of its copies comes back
        self._inflight: set[_Job] = set()
        self.copies = 0
        self.abandoned = 0

    async def run(self, uid: int, valid: Callable[[], bool], fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on a copy thread; Abandoned when the call became invalid meanwhile."""
        while self._busy.get(uid, 0) >= self.per_uid:
            event = self._slots.get(uid)
            if event is None:
                event = self._slots[uid] = trio.Event()
            await event.wait()
            if not valid():
                raise Abandoned()
        self._busy[uid] = self._busy.get(uid, 0) + 1
        job = _Job(fn, args, uid, valid)
        self._inflight.add(job)
        self._submit(job)

        def abort(_: Any) -> trio.lowlevel.Abort:
            job.cancelled = True
            self._inflight.discard(job)
            return trio.lowlevel.Abort.SUCCEEDED

        self.copies += 1
        return await trio.lowlevel.wait_task_rescheduled(abort)  # the outcome, unwrapped

    def _submit(self, job: _Job) -> None:
        """Each job claims an idle thread or makes one, so no job waits behind a stuck one
        (until MAX_THREADS threads are stuck, which takes MAX_THREADS / PER_UID users)."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                spawn = self._threads < self.max_threads
                self._threads += spawn
        if spawn:
            threading.Thread(target=self._worker, name="wqfs-copy", daemon=True).start()
        self._jobs.put(job)

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            result = outcome.capture(job.fn, *job.args)
            with self._lock:
                self._idle += 1
            try:
                job.token.run_sync_soon(self._finish, job, result)
            except trio.RunFinishedError:
                return

    def _finish(self, job: _Job, result: outcome.Outcome) -> None:
        """In the loop: give the uid its slot back, and the result to whoever still waits."""
        self._busy[job.uid] -= 1
        if not self._busy[job.uid]:
            del self._busy[job.uid]
        event = self._slots.pop(job.uid, None)
        if event is not None:
            event.set()
        if job.cancelled:
            return
        self._inflight.discard(job)
        trio.lowlevel.reschedule(job.task, result)

    async def watch(self) -> None:
        """Abandon copies whose call is gone (a task of the daemon's nursery)."""
        while True:
            await trio.sleep(CHECK_INTERVAL)
            now = time.monotonic()
            for job in [j for j in self._inflight if now - j.started >= CHECK_INTERVAL]:
                if job in self._inflight and not job.valid():
                    job.cancelled = True
                    self._inflight.discard(job)
                    self.abandoned += 1
                    trio.lowlevel.reschedule(job.task, outcome.Error(Abandoned()))

    def statistics(self) -> dict[str, int]:
        return {"threads": self._threads, "in_flight": len(self._inflight),
                "busy_uids": len(self._busy), "copies": self.copies, "abandoned": self.abandoned}


__all__ = ["Abandoned", "TransferPool", "PER_UID", "MAX_THREADS"]
