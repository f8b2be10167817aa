"""fanotify(7) as the feeds use it: mount-namespace groups (Linux 6.15: FAN_REPORT_MNT,
FAN_MARK_MNTNS, FAN_MNT_ATTACH/FAN_MNT_DETACH) and file-system error groups (5.16:
FAN_FS_ERROR on a FAN_MARK_FILESYSTEM mark, with FAN_REPORT_FID); include/uapi/linux/fanotify.h.

An event is a 24-byte struct fanotify_event_metadata followed by info records (a 4-byte header
each): a mount event carries FAN_EVENT_INFO_TYPE_MNT (the 64-bit unique mount id), an error
event FAN_EVENT_INFO_TYPE_ERROR (error, error_count) beside the FID record.
"""
from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Iterator, Optional

from . import libc

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_FID = 0x200
FAN_REPORT_MNT = 0x4000

FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100
FAN_MARK_MNTNS = 0x110

FAN_Q_OVERFLOW = 0x4000
FAN_FS_ERROR = 0x8000
FAN_MNT_ATTACH = 0x01000000
FAN_MNT_DETACH = 0x02000000

FAN_EVENT_INFO_TYPE_ERROR = 5
FAN_EVENT_INFO_TYPE_MNT = 7

_METADATA = struct.Struct("<IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_INFO_HEADER = struct.Struct("<BBH")   # info_type, pad, len
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100


@dataclass(frozen=True)
class Event:
    mask: int
    pid: int
    mnt_id: Optional[int] = None  # FAN_EVENT_INFO_TYPE_MNT
    error: Optional[int] = None   # FAN_EVENT_INFO_TYPE_ERROR
    error_count: int = 0


def fanotify_init(flags: int, event_f_flags: int = os.O_RDONLY) -> int:
    return libc.syscall("fanotify_init", ctypes.c_uint(flags), ctypes.c_uint(event_f_flags))


def fanotify_mark(group: int, flags: int, mask: int, dirfd: int, path: Optional[bytes]) -> None:
    libc.syscall("fanotify_mark", ctypes.c_int(group), ctypes.c_uint(flags), ctypes.c_uint64(mask),
                 ctypes.c_int(dirfd), ctypes.c_char_p(path))


def mount_group(nsfd: int) -> int:
    """A non-blocking group told of every mount attached to or detached from nsfd's namespace
    (CAP_SYS_ADMIN over the namespace's user namespace)."""
    group = fanotify_init(FAN_REPORT_MNT | FAN_CLOEXEC | FAN_NONBLOCK)
    try:
        fanotify_mark(group, FAN_MARK_ADD | FAN_MARK_MNTNS, FAN_MNT_ATTACH | FAN_MNT_DETACH, nsfd, None)
    except BaseException:
        os.close(group)
        raise
    return group


def error_group(fd: int) -> int:
    """A non-blocking group told of errors on the file system that fd (any file of it, O_PATH
    will do) is on; FAN_FS_ERROR is reported by the file systems that call fsnotify_sb_error."""
    group = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_CLOEXEC | FAN_NONBLOCK)
    try:
        # the magic link names fd's file itself, whatever its type (a NULL path would need a non-O_PATH fd)
        fanotify_mark(group, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_FS_ERROR, AT_FDCWD,
                      f"/proc/self/fd/{fd}".encode())
    except BaseException:
        os.close(group)
        raise
    return group


def parse(data: bytes) -> Iterator[Event]:
    """The events of one read(); a truncated tail is dropped (the kernel returns whole events)."""
    offset = 0
    while len(data) - offset >= _METADATA.size:
        event_len, vers, _, metadata_len, mask, fd, pid = _METADATA.unpack_from(data, offset)
        if event_len < _METADATA.size or offset + event_len > len(data) or vers != FANOTIFY_METADATA_VERSION:
            return
        if fd >= 0:  # a permission or fd-reporting group's event: not asked for, but never leak it
            os.close(fd)
        mnt_id = error = None
        error_count = 0
        info = offset + metadata_len
        end = offset + event_len
        while end - info >= _INFO_HEADER.size:
            info_type, _, length = _INFO_HEADER.unpack_from(data, info)
            if length < _INFO_HEADER.size or info + length > end:
                break
            if info_type == FAN_EVENT_INFO_TYPE_MNT and length >= 16:
                mnt_id = struct.unpack_from("<Q", data, info + 8)[0]
            elif info_type == FAN_EVENT_INFO_TYPE_ERROR and length >= 12:
                error, error_count = struct.unpack_from("<iI", data, info + 4)
            info += length
        yield Event(mask, pid, mnt_id, error, error_count)
        offset = end


def read_events(group: int, size: int = 65536) -> list[Event]:
    """Every event queued on a non-blocking group now (until EAGAIN)."""
    events: list[Event] = []
    while True:
        try:
            data = os.read(group, size)
        except BlockingIOError:
            return events
        if not data:
            return events
        events.extend(parse(data))


def mount_events_available() -> bool:
    """Can this kernel report mount-namespace events (6.15+)? EINVAL (older kernels), ENOSYS
    (no fanotify) and EPERM mean no."""
    try:
        nsfd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.close(mount_group(nsfd))
        return True
    except OSError:
        return False
    finally:
        os.close(nsfd)
