"""Open files of the tree: a key being read or written, a queue, a text event stream, a directory."""
from __future__ import annotations

import errno
import select
from dataclasses import dataclass, field
from typing import Callable, Optional

import pyfuse3
import trio

from .. import abi, records
from ..kernel import Cred, Kernel, KernelError, WatchQueue


@dataclass
class KeyFile:
    """A key opened as a file. Writes collect a payload that is committed on flush/close."""
    cred: Cred
    serial: Optional[int]            # None until a created key is committed
    ring: Optional[int] = None       # for a created key: the keyring to add it to
    type_name: str = ""
    description: str = ""
    buffer: Optional[bytearray] = None
    dirty: bool = False
    limit: int = abi.UPDATE_MAX_PAYLOAD

    def write(self, offset: int, data: bytes) -> int:
        if self.buffer is None:
            self.buffer = bytearray()
        end = offset + len(data)
        if end > self.limit:
            raise KernelError(errno.EINVAL, f"payload over {self.limit} bytes")
        if offset > len(self.buffer):
            self.buffer.extend(bytes(offset - len(self.buffer)))
        self.buffer[offset:end] = data
        self.dirty = True
        return len(data)

    def commit(self, kernel: Kernel) -> None:
        """add_key for a new file; instantiate for a key under construction; update otherwise.
        A new file nothing was written to is an add_key of an empty payload too: the core's
        EINVAL for it is what close() (touch's, at least) reports, and no key is made."""
        if not self.dirty and self.serial is not None:
            return
        payload = bytes(self.buffer or b"")
        self.dirty = False
        if self.serial is None:
            assert self.ring is not None
            self.serial = kernel.add_key(self.cred, self.type_name, self.description, payload, self.ring)
            self.limit = abi.UPDATE_MAX_PAYLOAD
            return
        kernel.write_payload(self.cred, self.serial, payload)


class Waiter:
    """One blocked read (or watch) request: woken by a post, by its caller's interrupt, or by
    the daemon stopping. Many requests may wait on one open file at once (dup, fork, threads)."""

    __slots__ = ("event", "interrupted")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True
        self.event.set()


class Stream:
    """Common waiting logic of queue files: wake on post, poll handles, blocked readers."""

    def __init__(self, queue: WatchQueue, cred: Cred, pid: int, nonblock: bool) -> None:
        self.queue = queue
        self.cred = cred
        self.pid = pid
        self.nonblock = nonblock
        self.poll_handle: Optional[pyfuse3.PollHandle] = None
        self.waiters: set[Waiter] = set()
        queue.add_listener(self.wake)

    def wake(self) -> None:
        for waiter in self.waiters:
            waiter.event.set()
        handle, self.poll_handle = self.poll_handle, None
        if handle is not None:
            try:
                handle.notify()
            except Exception:  # the poller may be gone; nothing to tell
                pass

    def poll_mask(self) -> int:
        mask = select.POLLOUT | select.POLLWRNORM
        if self.queue.readable:
            mask |= select.POLLIN | select.POLLRDNORM
        if self.queue.hangup:
            mask |= select.POLLHUP
        return mask

    def close(self, kernel: Kernel) -> None:
        self.queue.remove_listener(self.wake)
        kernel.release_queue(self.queue)


class Pipe:
    """Both ends of an emulated pipe2(O_NOTIFICATION_PIPE): one queue, released with its last end."""

    def __init__(self, queue: WatchQueue, cred: Cred, pid: int) -> None:
        self.queue = queue
        self.cred = cred
        self.pid = pid
        self.open_ends = 0
        self.ends: dict[str, "QueueFile"] = {}  # "r", "w": the open file of each end


class QueueFile(Stream):
    """MOUNT/watch_queue: binary records out, control commands in.

    As one end of a pipe made by `wqfs run`, it is a notification pipe instead:
    write() gives EXDEV and the queue is configured by (trapped) ioctls.
    """

    def __init__(self, queue: WatchQueue, cred: Cred, pid: int, nonblock: bool,
                 pipe: Optional[Pipe] = None, end: str = "") -> None:
        super().__init__(queue, cred, pid, nonblock)
        self.pipe = pipe
        self.end = end
        if pipe is not None:
            pipe.open_ends += 1
            pipe.ends[end] = self

    def close(self, kernel: Kernel) -> None:
        if self.pipe is None:
            super().close(kernel)
            return
        self.queue.remove_listener(self.wake)
        if self.end == "w":
            self.queue.close_writer()
        self.pipe.ends.pop(self.end, None)
        self.pipe.open_ends -= 1
        if self.pipe.open_ends == 0:
            kernel.release_queue(self.queue)


def sample_lines(data: bytes) -> bytes:
    """The lines the 2020 patches' watch_test.c prints for mount and superblock records
    (records.format_sample), its REMOVAL and LOSS lines for the meta records: the text of
    MOUNT/mounts/ and MOUNT/superblocks/ files."""
    lines = []
    for record in records.parse(data):
        if isinstance(record, (records.MountNotification, records.SuperblockNotification)):
            lines.append(records.format_sample(record))
        elif isinstance(record, records.Removal):
            lines.append(f"REMOVAL of watchpoint {record.tag:08x}")
        elif isinstance(record, records.Loss):
            lines.append("-- LOSS --")
        else:
            lines.append("other type")
    return ("\n".join(lines) + "\n").encode() if lines else b""


class EventFile(Stream):
    """MOUNT/events/KEYS: the same queue, read as keyctl-watch text lines; MOUNT/mounts/PATH
    and MOUNT/superblocks/PATH with watch_test's lines (lines=sample_lines)."""

    def __init__(self, queue: WatchQueue, cred: Cred, pid: int, nonblock: bool,
                 lines: Callable[[bytes], bytes] = records.keyctl_lines) -> None:
        super().__init__(queue, cred, pid, nonblock)
        self.text = bytearray()
        self.lines = lines

    def fill(self) -> None:
        """Turn every queued record into text (a pending loss record included)."""
        while True:
            try:
                data = self.queue.read_nowait(65536)
            except KernelError:
                return
            if not data:
                return
            self.text += self.lines(data)

    def poll_mask(self) -> int:
        mask = super().poll_mask() & ~(select.POLLOUT | select.POLLWRNORM)
        if self.text:
            mask |= select.POLLIN | select.POLLRDNORM
        return mask


@dataclass
class DirHandle:
    entries: list[tuple[bytes, pyfuse3.EntryAttributes]] = field(default_factory=list)
