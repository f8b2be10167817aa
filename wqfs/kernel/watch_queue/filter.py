"""Queue filters (kernel/watch_queue.c: watch_queue_set_filter, filter_watch_notification):
struct watch_notification_filter, validated and matched as the kernel does."""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from ... import abi
from ..errors import KernelError

_HEADER = struct.Struct("<II")
_ENTRY = struct.Struct("<III8I")


@dataclass(frozen=True)
class TypeFilter:
    """One struct watch_notification_type_filter, all of its fields."""
    type: int
    info_filter: int = 0
    info_mask: int = 0
    subtype_filter: tuple[int, ...] = field(default=(0,) * 8)

    def pack(self) -> bytes:
        words = (tuple(self.subtype_filter) + (0,) * 8)[:8]
        return _ENTRY.pack(self.type, self.info_filter, self.info_mask, *words)


def pack_filter(entries: list[TypeFilter], reserved: int = 0, nr_filters: int | None = None) -> bytes:
    """The bytes of a struct watch_notification_filter, as a program passes to SET_FILTER."""
    count = len(entries) if nr_filters is None else nr_filters
    return _HEADER.pack(count, reserved) + b"".join(e.pack() for e in entries)


def filter_entries_size(header: bytes) -> int:
    """watch_queue_set_filter's check of the header it copied first: EINVAL unless nr_filters is
    1..16 and __reserved 0. Returns how many bytes of entries follow, to copy next."""
    nr_filters, reserved = _HEADER.unpack_from(header)
    if nr_filters == 0 or nr_filters > abi.WATCH_QUEUE_MAX_FILTERS or reserved != 0:
        raise KernelError(errno.EINVAL, "nr_filters must be 1..16 and __reserved 0")
    return nr_filters * _ENTRY.size


@dataclass(frozen=True)
class _Stored:
    type: int
    info_filter: int
    info_mask: int
    subtypes: int


class Filter:
    """What a queue keeps after SET_FILTER: only word 0 of each subtype bitmap, only known types."""

    __slots__ = ("entries", "type_bitmap", "_by_type")

    def __init__(self, entries: list[_Stored]) -> None:
        self.entries = entries
        self.type_bitmap = 0
        # what matches() asks of each entry of a type, in order: (subtypes, info_mask, info_filter)
        self._by_type: dict[int, list[tuple[int, int, int]]] = {}
        for entry in entries:
            self.type_bitmap |= 1 << entry.type
            self._by_type.setdefault(entry.type, []).append((entry.subtypes, entry.info_mask, entry.info_filter))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Filter":
        """Validate in the kernel's order; EFAULT stands for a copy that would fail."""
        if len(data) < _HEADER.size:
            raise KernelError(errno.EFAULT, "filter header truncated")
        nr_filters = filter_entries_size(data[:_HEADER.size]) // _ENTRY.size
        if len(data) < _HEADER.size + nr_filters * _ENTRY.size:
            raise KernelError(errno.EFAULT, "filter array truncated")
        stored: list[_Stored] = []
        for i in range(nr_filters):
            ftype, info_filter, info_mask, *subtypes = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
            if info_filter & ~info_mask:
                raise KernelError(errno.EINVAL, f"filter {i}: info_filter has bits outside info_mask")
            if info_mask & abi.WATCH_INFO_LENGTH:
                raise KernelError(errno.EINVAL, f"filter {i}: the length bits cannot be filtered")
            if ftype >= abi.WATCH_TYPE__NR:
                continue
            stored.append(_Stored(ftype, info_filter, info_mask, subtypes[0]))
        return cls(stored)

    def matches(self, rtype: int, subtype: int, info: int) -> bool:
        """Whether a record passes: an entry of its type (the type bitmap) whose subtype bit is
        set and whose info_mask bits of info are info_filter, as filter_watch_notification."""
        for subtypes, info_mask, info_filter in self._by_type.get(rtype, ()):
            if (subtypes >> subtype) & 1 and (info & info_mask) == info_filter:
                return True
        return False
