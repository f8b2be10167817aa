"""A notification queue (kernel/watch_queue.c: watch_queue_set_size, post_one_notification,
and fs/pipe.c's pipe_read of a notification pipe): the ring of notes behind pipe2(O_NOTIFICATION_PIPE).

It keeps the kernel's rules for size, filter, loss and read(), and knows nothing of
how a front waits: a front registers a listener and is told when something changed.
"""
from __future__ import annotations

import errno
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ... import abi
from ...records import LOSS_BYTES
from ..errors import KernelError
from .filter import Filter

if TYPE_CHECKING:
    from ..cred import Cred
    from ..pipe_accounting import PipeAccounting
    from .watch import Watch


@dataclass(frozen=True)
class QueueStatistics:
    capacity: int
    queued: int
    queued_bytes: int
    loss_pending: bool
    posted: int
    lost: int
    filtered: int
    watches: int


_HEADER = struct.Struct("<II")


def capacity_for(nr_notes: int) -> int:
    """Notes a queue holds after SET_SIZE(nr_notes): whole pages of 32 (kernels since 5.17)."""
    pages = -(-nr_notes // abi.WATCH_QUEUE_NOTES_PER_PAGE)
    return pages * abi.WATCH_QUEUE_NOTES_PER_PAGE


class WatchQueue:
    """One notification pipe. It carries its own pipe-buffer accounting (the pipe_inode_info
    fields): max_usage (the pages F_GETPIPE_SZ reports), nr_accounted (the pages charged) and
    pipe_user (the uid charged, None once refunded or if never charged), so that whoever
    releases it refunds exactly what was charged, once."""

    __slots__ = ("capacity", "filter", "_records", "_note_loss", "writers", "watches",
                 "defunct", "_listeners", "_posted", "_lost", "_filtered", "owner_uid", "_bytes",
                 "max_usage", "nr_accounted", "pipe_user", "accounting", "creator")

    def __init__(self, owner_uid: int = 0, pages: int = abi.PIPE_DEF_BUFFERS,
                 accounting: Optional[PipeAccounting] = None, creator: Optional[Cred] = None) -> None:
        """pages: what alloc_pipe_info gave; accounting: where they were charged (to owner_uid),
        None for a queue nobody is charged for (core tests); creator: whose capabilities a
        SET_SIZE without a caller's cred goes by."""
        self.capacity = 0  # 0: the size was never set, and every record is dropped
        self.filter: Optional[Filter] = None
        self._records: deque[list] = deque()  # [bytes, loss_flag]
        self._bytes = 0
        self._note_loss = False
        self.writers = 1
        self.watches: dict[tuple[int, int], Watch] = {}  # by (watch type, object id): one per object
        self.defunct = False
        self._listeners: list[Callable[[], None]] = []
        self._posted = self._lost = self._filtered = 0
        self.owner_uid = owner_uid
        self.max_usage = pages
        self.accounting = accounting
        self.nr_accounted = pages if accounting is not None else 0
        self.pipe_user: Optional[int] = owner_uid if accounting is not None else None
        self.creator = creator

    # ---- configuration (the two ioctls) ----

    def set_size(self, nr_notes: int, cred: Optional[Cred] = None) -> None:
        """watch_queue_set_size: EBUSY, EINVAL, then the pages are charged to the pipe's user
        (EPERM past a pipe-user-pages limit unless cred, the caller, is privileged; without a
        cred, the creator's capabilities count)."""
        if self.capacity:
            raise KernelError(errno.EBUSY, "the queue size can be set only once")
        if nr_notes < 1 or nr_notes > abi.WATCH_QUEUE_MAX_NOTES:
            raise KernelError(errno.EINVAL, "the size is 1..512 notes")
        capacity = capacity_for(nr_notes)
        nr_pages = capacity // abi.WATCH_QUEUE_NOTES_PER_PAGE
        if self.accounting is None:
            self.max_usage = nr_pages
        else:
            self.accounting.watch_queue_set_size(self, cred if cred is not None else self.creator, nr_pages)
        self.capacity = capacity

    def set_filter(self, new_filter: Optional[Filter]) -> None:
        self.filter = new_filter

    def pipe_size(self) -> int:
        """fcntl(F_GETPIPE_SZ): max_usage pages, i.e. what alloc_pipe_info gave (16 pages, or 2
        past the soft limit) until SET_SIZE, the ring's pages after it."""
        return self.max_usage * abi.PAGE_SIZE

    def set_pipe_size(self) -> None:
        """fcntl(F_SETPIPE_SZ): pipe_set_size refuses a notification pipe, sized or not."""
        raise KernelError(errno.EBUSY, "a notification pipe is sized by IOC_WATCH_QUEUE_SET_SIZE")

    # ---- posting ----

    def post(self, record: bytes, filterable: bool = True) -> bool:
        """Enqueue one tagged record; False if it was filtered or lost."""
        if filterable and self.filter is not None:
            word0, info = _HEADER.unpack_from(record)
            return self.post_fields(record, word0 & 0xFFFFFF, word0 >> 24, info)
        if self.defunct:
            return False
        return self.enqueue(record)

    def post_fields(self, record: bytes, rtype: int, subtype: int, info: int) -> bool:
        """post() of a filterable record by a poster that has its header's fields at hand.
        accepts() then enqueue(), written out: this is every copy's path with no security
        module, and the call saved is some 8% of a post (scripts/bench-lsm, 64 queues)."""
        if self.defunct:
            return False
        if self.filter is not None and not self.filter.matches(rtype, subtype, info):
            self._filtered += 1
            return False
        return self.enqueue(record)

    def accepts(self, rtype: int, subtype: int, info: int) -> bool:
        """Whether a filterable record with this header would pass the queue's filter (one
        that does not is counted as filtered), for a poster that asks more before enqueue()."""
        if self.defunct:
            return False
        if self.filter is not None and not self.filter.matches(rtype, subtype, info):
            self._filtered += 1
            return False
        return True

    def enqueue(self, record: bytes) -> bool:
        """Queue a record that accepts() let through (or that no filter stops); False if it
        was lost."""
        if len(self._records) >= self.capacity:
            self._lost += 1
            if self._records:
                self._records[-1][1] = True
            return False
        self._records.append([record, False])
        self._bytes += len(record)
        self._posted += 1
        self._wake()
        return True

    # ---- reading (pipe_read) ----

    def read_nowait(self, size: int) -> bytes:
        """Whole records up to size bytes; b'' at EOF; EAGAIN when a reader would block."""
        if size == 0:
            return b""
        out = bytearray()
        records = self._records
        while True:
            if self._note_loss:
                if size - len(out) < 8:
                    if not out:
                        raise KernelError(errno.ENOBUFS, "buffer too small for the loss record")
                    break
                out += LOSS_BYTES
                self._note_loss = False
            if not records:
                break
            record, lost_after = records[0]
            if len(record) > size - len(out):
                if not out:
                    raise KernelError(errno.ENOBUFS, "buffer too small for the next record")
                break
            out += record
            records.popleft()
            self._bytes -= len(record)
            if lost_after:
                self._note_loss = True
            if len(out) == size or not records:
                break  # pipe_read leaves the loop here: a pending loss waits for the next read
        if out:
            return bytes(out)
        if self.writers == 0:
            return b""
        raise KernelError(errno.EAGAIN, "the queue is empty")

    @property
    def readable(self) -> bool:
        """What poll reports as POLLIN: queued records only, not a pending loss record."""
        return bool(self._records)

    @property
    def hangup(self) -> bool:
        return self.writers == 0

    @property
    def would_block(self) -> bool:
        return not self._records and not self._note_loss and self.writers > 0

    @property
    def nbytes(self) -> int:
        """FIONREAD: bytes of queued records (a pending loss record is not counted)."""
        return self._bytes

    def close_writer(self) -> None:
        self.writers -= 1
        self._wake()

    # ---- waking fronts ----

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        try:
            self._listeners.remove(callback)
        except ValueError:
            pass

    def _wake(self) -> None:
        for callback in self._listeners:
            callback()

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(self.capacity, len(self._records), self._bytes, self._note_loss,
                               self._posted, self._lost, self._filtered, len(self.watches))
