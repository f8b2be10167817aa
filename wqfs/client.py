"""Python client: open a queue on a wqfs mount, configure it, read typed records.

    with Queue(size=256) as q:
        q.watch("@s", tag=1)
        for record in q:            # blocks; KeyNotification, Removal, Loss
            print(record)

    async with AsyncQueue(size=256) as q:   # trio
        q.watch("@s", 1)
        async for record in q:
            ...

    with Queue(size=256) as q:
        q.watch_mount("/", tag=2)   # watch_mount(AT_FDCWD, "/", 0, fd, 2), as this process sees "/"
        q.watch_sb("/mnt", tag=3)   # watch_sb
        for record in q:            # MountNotification, SuperblockNotification, Removal, Loss
            ...

Errors are the kernel's: each call raises OSError with the errno the kernel's ioctl
or keyctl would give (EINVAL, EBUSY, ENOKEY, EACCES, EBADSLT, ...), and a message that says
what that errno means for that command (a write() to the queue file carries only the errno):
``[Errno 57] unwatch 123: this queue does not watch that key (EBADSLT)``.
"""
from __future__ import annotations

import errno
import os
import select
from typing import Iterator, Optional, Union

from . import abi, protocol
from .mounts import default_mountpoint
from .kernel import TypeFilter
from .records import KeyNotification, Loss, MountNotification, Record, Removal, SuperblockNotification, parse

KeySpec = Union[int, str]
PathSpec = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
READ_SIZE = 65536

# What each errno of a queue command means, command by command: the README's table.
_ANY = "*"
COMMAND_ERRORS: dict[tuple[str, int], str] = {
    ("size", errno.EINVAL): "a queue holds 1 to 512 notes",
    ("size", errno.EBUSY): "a queue is sized once, and this one is sized already",
    ("size", errno.EPERM): "this user is over /proc/sys/fs/pipe-user-pages-soft: without "
                           "CAP_SYS_RESOURCE a queue holds at most 64 notes",
    ("filter", errno.EINVAL): "a filter has 1 to 16 entries, a reserved word of 0, and info_filter "
                              "bits only inside info_mask, never the length bits",
    ("filter", errno.EFAULT): "the filter's bytes are shorter than its header says",
    ("watch", errno.EINVAL): "a tag is 0..255 and a key a serial or @t, @p, @s, @u, @us",
    ("watch", errno.EBUSY): "this queue watches that key already",
    ("watch", errno.EAGAIN): "this user has as many watches as its RLIMIT_NOFILE allows (ulimit -n)",
    ("unwatch", errno.EBADSLT): "this queue does not watch that key",
    ("unwatch", errno.EINVAL): "a key is a serial or @t, @p, @s, @u, @us",
    (_ANY, errno.ENOKEY): "no such key",
    (_ANY, errno.EACCES): "no VIEW permission on that key",
    (_ANY, errno.EKEYREVOKED): "the key is revoked",
    (_ANY, errno.EKEYEXPIRED): "the key has expired",
    (_ANY, errno.EKEYREJECTED): "the key was rejected (negatively instantiated)",
    (_ANY, errno.EINTR): "interrupted by a signal (waiting for a key under construction)",
    (_ANY, errno.EMSGSIZE): "a command is at most 4096 bytes",
    (_ANY, errno.ENOTCONN): "the wqfs daemon stopped (its mount is dead: wqfs unmount it)",
    **{(verb, number): text for verb in ("watch_mount", "watch_sb") for number, text in (
        (errno.EINVAL, "a tag is 0..255 (and the only flag no_automount)"),
        (errno.EAGAIN, "this user has as many watches as its RLIMIT_NOFILE allows (ulimit -n)"),
        (errno.EINTR, "interrupted by a signal"))},
    **{(verb, number): text for verb in ("watch_mount", "watch_sb", "unwatch_mount", "unwatch_sb")
       for number, text in (
        (errno.ENOENT, "no such file or directory (as this process sees the path)"),
        (errno.ENOTDIR, "a component of the path is not a directory (watch_mount watches a directory)"),
        (errno.EACCES, "no search (x) permission on the directory, or on one on the way to it"),
        (errno.ELOOP, "too many levels of symbolic links"),
        (errno.ENOSYS, "this wqfs daemon reads no mount namespaces"))},
    ("watch_mount", errno.EBUSY): "this queue watches that directory already",
    ("watch_sb", errno.EBUSY): "this queue watches that superblock already",
    ("watch_sb", errno.EIO): "the superblock is going away",
    ("unwatch_mount", errno.EBADSLT): "this queue does not watch that directory",
    ("unwatch_sb", errno.EBADSLT): "this queue does not watch that superblock",
    ("open", errno.ENFILE): "this user is over /proc/sys/fs/pipe-user-pages-hard: no more queues",
    ("open", errno.ENOENT): "no watch_queue file there: not a wqfs mount",
}


def command_error(verb: str, number: int) -> str:
    """What errno `number` means for the queue command `verb` (size, filter, watch, unwatch,
    open), with the errno's name: one line for a person, since write() returns only the errno."""
    name = errno.errorcode.get(number, str(number))
    text = COMMAND_ERRORS.get((verb, number)) or COMMAND_ERRORS.get((_ANY, number)) or os.strerror(number)
    return f"{text} ({name})"


def _raise_explained(error: OSError, verb: str, what: str) -> None:
    """The same errno (and so the same OSError subclass), with a message saying what it means."""
    raise OSError(error.errno, f"{what}: {command_error(verb, error.errno or 0)}") from None


def type_filter(watch_type: int, subtypes: Optional[list[int]] = None, tag: Optional[int] = None) -> list[TypeFilter]:
    """A filter passing records of watch_type of these subtypes (all if None), from one tag if given."""
    mask = 0xFFFFFFFF if subtypes is None else sum(1 << s for s in subtypes)
    info_mask, info_filter = (abi.WATCH_INFO_ID, tag << 8) if tag is not None else (0, 0)
    return [TypeFilter(watch_type, info_filter, info_mask, (mask,) + (0,) * 7)]


def key_filter(subtypes: Optional[list[int]] = None, tag: Optional[int] = None) -> list[TypeFilter]:
    """A filter passing key notifications of these subtypes (all if None), from one tag if given."""
    return type_filter(abi.WATCH_TYPE_KEY_NOTIFY, subtypes, tag)


def mount_filter(subtypes: Optional[list[int]] = None, tag: Optional[int] = None) -> list[TypeFilter]:
    """The same for mount notifications (abi.NOTIFY_MOUNT_*); filters add up: key_filter() + mount_filter()."""
    return type_filter(abi.WATCH_TYPE_MOUNT_NOTIFY, subtypes, tag)


def sb_filter(subtypes: Optional[list[int]] = None, tag: Optional[int] = None) -> list[TypeFilter]:
    """The same for superblock notifications (abi.NOTIFY_SUPERBLOCK_*)."""
    return type_filter(abi.WATCH_TYPE_SB_NOTIFY, subtypes, tag)


class _QueueBase:
    def __init__(self, mount: Optional[str], size: Optional[int], nonblock: bool) -> None:
        path = os.path.join(mount or default_mountpoint(), "watch_queue")
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if nonblock else 0)
        self.fd = -1
        try:
            self.fd = os.open(path, flags)
        except OSError as error:
            _raise_explained(error, "open", path)
        if size is not None:
            try:
                self.set_size(size)
            except OSError:
                self.close()
                raise

    def _command(self, data: bytes, verb: str, what: str) -> None:
        try:
            os.write(self.fd, data)
        except OSError as error:
            _raise_explained(error, verb, what)

    def set_size(self, notes: int) -> None:
        self._command(protocol.size_command(notes), "size", f"size {notes}")

    def set_filter(self, entries: Optional[list[TypeFilter]], reserved: int = 0) -> None:
        """None removes the filter."""
        self._command(protocol.filter_command(entries, reserved), "filter", "filter")

    def watch(self, key: KeySpec, tag: int) -> None:
        self._command(protocol.watch_command(key, tag), "watch", f"watch {key} {tag}")

    def unwatch(self, key: KeySpec) -> None:
        self._command(protocol.unwatch_command(key), "unwatch", f"unwatch {key}")

    def watch_mount(self, path: PathSpec, tag: int, no_automount: bool = False) -> None:
        """watch_mount(AT_FDCWD, path, AT_NO_AUTOMOUNT if no_automount, queue, tag) on the
        directory path (relative to this process's cwd; as this process sees it): the changes
        triggered on a mount (a new or removed mount's parent, a remounted mount) whose root is
        path or below it. Blocks while the daemon reads this process's mount namespace, or
        looks path up (boundedly)."""
        self._host_command(path, tag, no_automount, False)

    def unwatch_mount(self, path: PathSpec) -> None:
        self._host_command(path, -1, False, False)

    def watch_sb(self, path: PathSpec, tag: int, no_automount: bool = False) -> None:
        """watch_sb(AT_FDCWD, path, ..., queue, tag): the superblock (file system) path is on."""
        self._host_command(path, tag, no_automount, True)

    def unwatch_sb(self, path: PathSpec) -> None:
        self._host_command(path, -1, False, True)

    def _host_command(self, path: PathSpec, tag: int, no_automount: bool, sb: bool) -> None:
        raw = os.fsencode(path)
        verb = ("unwatch_" if tag == -1 else "watch_") + ("sb" if sb else "mount")
        shown = os.fsdecode(raw) + ("" if tag == -1 else f" {tag}")
        self._command(protocol.watch_mount_command(raw, tag, no_automount, sb), verb, f"{verb} {shown}")

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Queue(_QueueBase):
    """A blocking notification queue."""

    def __init__(self, mount: Optional[str] = None, size: Optional[int] = None, nonblock: bool = False) -> None:
        super().__init__(mount, size, nonblock)

    def read(self, bufsize: int = READ_SIZE) -> list[Record]:
        """One read(): whole records; [] at EOF. BlockingIOError when nonblocking and empty."""
        return list(parse(os.read(self.fd, bufsize)))

    def poll(self, timeout: Optional[float] = None) -> bool:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))

    def __iter__(self) -> Iterator[Record]:
        while True:
            records = self.read()
            if not records:
                return
            yield from records

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncQueue(_QueueBase):
    """The same queue for trio: reads never block the event loop. (trio is imported here, so
    that the blocking Queue needs neither trio nor pyfuse3.)"""

    def __init__(self, mount: Optional[str] = None, size: Optional[int] = None) -> None:
        import trio  # noqa: F401 (fails early, before a queue is made, where trio is missing)
        super().__init__(mount, size, nonblock=True)

    async def read(self, bufsize: int = READ_SIZE) -> list[Record]:
        while True:
            try:
                return list(parse(os.read(self.fd, bufsize)))
            except BlockingIOError:
                import trio
                await trio.lowlevel.wait_readable(self.fd)

    def __aiter__(self) -> "AsyncQueue":
        self._pending: list[Record] = []
        return self

    async def __anext__(self) -> Record:
        if not self._pending:
            self._pending = await self.read()
            if not self._pending:
                raise StopAsyncIteration
        return self._pending.pop(0)

    async def __aenter__(self) -> "AsyncQueue":
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.fd >= 0:
            import trio
            trio.lowlevel.notify_closing(self.fd)
        self.close()


__all__ = ["AsyncQueue", "COMMAND_ERRORS", "KeyNotification", "Loss", "MountNotification", "Queue", "Record",
           "Removal", "SuperblockNotification", "command_error", "key_filter", "mount_filter", "sb_filter",
           "type_filter"]
