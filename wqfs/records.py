"""The binary record codec: the bytes a notification queue's read() returns.

It is shared by the emulator (which packs) and by readers (which parse), and it
parses a real kernel's notification pipe just as well as a wqfs queue.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Iterator, Union

from . import abi

_HEADER = struct.Struct("<II")
_KEY = struct.Struct("<IIII")
KEY_RECORD = _KEY  # word 0 (type, subtype), info (length, tag), key id, aux: what the poster packs
_REMOVAL = struct.Struct("<IIQ")
_MOUNT = struct.Struct("<IIQQ")     # struct mount_notification (A2)
_SB = struct.Struct("<IIQ")         # struct superblock_notification (v16)
_SB_ERROR = struct.Struct("<IIQII")  # struct superblock_error_notification (v16)

LOSS_BYTES = _HEADER.pack(abi.WATCH_TYPE_META | (abi.WATCH_META_LOSS_NOTIFICATION << 24), 8)


def make_info(length: int, tag: int = 0) -> int:
    return (length & abi.WATCH_INFO_LENGTH) | ((tag & 0xFF) << abi.WATCH_INFO_ID__SHIFT)


def with_tag(record: bytes, tag: int) -> bytes:
    """Overwrite the ID byte of info with a watch's tag, as __post_watch_notification does."""
    return record[:5] + bytes((tag & 0xFF,)) + record[6:]


def pack_key_notification(subtype: int, key_id: int, aux: int, tag: int = 0) -> bytes:
    word0 = abi.WATCH_TYPE_KEY_NOTIFY | (subtype << 24)
    return _KEY.pack(word0, make_info(16, tag), key_id & 0xFFFFFFFF, aux & 0xFFFFFFFF)


def pack_mount_notification(subtype: int, triggered_on: int, aux: int, info: int) -> bytes:
    """notify_mount's record: info is the whole info word (length, tag and flags)."""
    return _MOUNT.pack(abi.WATCH_TYPE_MOUNT_NOTIFY | (subtype << 24), info, triggered_on, aux)


def pack_sb_notification(subtype: int, sb_id: int, info: int) -> bytes:
    return _SB.pack(abi.WATCH_TYPE_SB_NOTIFY | (subtype << 24), info, sb_id)


def pack_sb_error(sb_id: int, error_number: int, info: int, error_cookie: int = 0) -> bytes:
    word0 = abi.WATCH_TYPE_SB_NOTIFY | (abi.NOTIFY_SUPERBLOCK_ERROR << 24)
    return _SB_ERROR.pack(word0, info, sb_id, error_number & 0xFFFFFFFF, error_cookie)


def pack_removal(object_id: int, tag: int = 0) -> bytes:
    word0 = abi.WATCH_TYPE_META | (abi.WATCH_META_REMOVAL_NOTIFICATION << 24)
    if object_id == 0:
        return _HEADER.pack(word0, make_info(8, tag))
    return _REMOVAL.pack(word0, make_info(16, tag), object_id)


@dataclass(frozen=True)
class KeyNotification:
    subtype: int
    key_id: int
    aux: int
    tag: int
    info: int

    @property
    def name(self) -> str:
        if self.subtype < len(abi.KEY_SUBTYPE_NAMES):
            return abi.KEY_SUBTYPE_NAMES[self.subtype]
        return "(null)"


def _subtype_name(names: tuple[str, ...], subtype: int) -> str:
    return names[subtype] if subtype < len(names) else "(null)"


@dataclass(frozen=True)
class MountNotification:
    """A mount topology or attribute change (WATCH_TYPE_MOUNT_NOTIFY): triggered_on is the mount
    the walk started from, aux the mount added, removed or moved (0 for the attribute changes)."""
    subtype: int
    triggered_on: int
    aux: int
    tag: int
    info: int

    @property
    def name(self) -> str:
        return _subtype_name(abi.MOUNT_SUBTYPE_NAMES, self.subtype)

    @property
    def in_subtree(self) -> bool:
        return bool(self.info & abi.NOTIFY_MOUNT_IN_SUBTREE)

    @property
    def is_now_ro(self) -> bool:
        return bool(self.info & abi.NOTIFY_MOUNT_IS_NOW_RO)

    @property
    def is_submount(self) -> bool:
        return bool(self.info & abi.NOTIFY_MOUNT_IS_SUBMOUNT)


@dataclass(frozen=True)
class SuperblockNotification:
    """A superblock event (WATCH_TYPE_SB_NOTIFY); error_number is set for NOTIFY_SUPERBLOCK_ERROR."""
    subtype: int
    sb_id: int
    tag: int
    info: int
    error_number: int | None = None
    error_cookie: int | None = None

    @property
    def name(self) -> str:
        return _subtype_name(abi.SB_SUBTYPE_NAMES, self.subtype)

    @property
    def is_now_ro(self) -> bool:
        return bool(self.info & abi.NOTIFY_SUPERBLOCK_IS_NOW_RO)


@dataclass(frozen=True)
class Removal:
    """The watched object went away, or its watch was removed."""
    id: int
    tag: int
    info: int


@dataclass(frozen=True)
class Loss:
    """Records were lost because the queue was full."""
    info: int = 8

    @property
    def tag(self) -> int:
        return (self.info & abi.WATCH_INFO_ID) >> 8


@dataclass(frozen=True)
class OtherRecord:
    """A record of a type this codec does not know; kept whole so nothing is lost."""
    type: int
    subtype: int
    info: int
    data: bytes

    @property
    def tag(self) -> int:
        return (self.info & abi.WATCH_INFO_ID) >> 8


Record = Union[KeyNotification, MountNotification, SuperblockNotification, Removal, Loss, OtherRecord]


class RecordError(ValueError):
    """The bytes are not a sequence of whole records."""


def parse_one(data: bytes, offset: int = 0) -> tuple[Record, int]:
    """Decode the record at offset; return it and its length."""
    if len(data) - offset < 8:
        raise RecordError(f"short message header: {len(data) - offset} bytes")
    word0, info = _HEADER.unpack_from(data, offset)
    rtype, subtype = word0 & 0xFFFFFF, word0 >> 24
    length = info & abi.WATCH_INFO_LENGTH
    if length < 8 or length > len(data) - offset:
        raise RecordError(f"bad message length: {length}/{len(data) - offset}")
    tag = (info & abi.WATCH_INFO_ID) >> 8
    body = bytes(data[offset:offset + length])
    record: Record
    if rtype == abi.WATCH_TYPE_KEY_NOTIFY and length == 16:
        _, _, key_id, aux = _KEY.unpack(body)
        record = KeyNotification(subtype, key_id, aux, tag, info)
    elif rtype == abi.WATCH_TYPE_MOUNT_NOTIFY and length == _MOUNT.size:
        _, _, triggered_on, aux = _MOUNT.unpack(body)
        record = MountNotification(subtype, triggered_on, aux, tag, info)
    elif rtype == abi.WATCH_TYPE_SB_NOTIFY and subtype == abi.NOTIFY_SUPERBLOCK_ERROR and length >= _SB_ERROR.size:
        _, _, sb_id, error_number, cookie = _SB_ERROR.unpack_from(body)
        record = SuperblockNotification(subtype, sb_id, tag, info, error_number, cookie)
    elif rtype == abi.WATCH_TYPE_SB_NOTIFY and subtype != abi.NOTIFY_SUPERBLOCK_ERROR and length >= _SB.size:
        record = SuperblockNotification(subtype, _SB.unpack_from(body)[2], tag, info)
    elif rtype == abi.WATCH_TYPE_META and subtype == abi.WATCH_META_REMOVAL_NOTIFICATION and length in (8, 16):
        record = Removal(_REMOVAL.unpack(body)[2] if length == 16 else 0, tag, info)
    elif rtype == abi.WATCH_TYPE_META and subtype == abi.WATCH_META_LOSS_NOTIFICATION:
        record = Loss(info)
    else:
        record = OtherRecord(rtype, subtype, info, body)
    return record, length


def parse(data: bytes) -> Iterator[Record]:
    """Decode a buffer returned by one read() of a notification queue."""
    offset = 0
    while offset < len(data):
        record, length = parse_one(data, offset)
        yield record
        offset += length


class Decoder:
    """Incremental decoder for a byte stream (stdin, a pipe) that may split records."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        out: list[Record] = []
        offset = 0
        while len(self._buffer) - offset >= 8:
            length = self._buffer[offset + 4] & abi.WATCH_INFO_LENGTH
            if length < 8:
                raise RecordError(f"bad message length: {length}")
            if len(self._buffer) - offset < length:
                break
            record, length = parse_one(self._buffer, offset)
            out.append(record)
            offset += length
        del self._buffer[:offset]
        return out

    @property
    def pending(self) -> int:
        return len(self._buffer)


# ---- text styles -------------------------------------------------------------

_KEYCTL_WORDS = ("inst", "upd", "link", "unlk", "clr", "rev", "inv", "attr")


def _keyctl_key_line(key_id: int, subtype: int, aux: int) -> str:
    word = _KEYCTL_WORDS[subtype] if subtype < len(_KEYCTL_WORDS) else f"type={subtype}"
    if subtype == abi.NOTIFY_KEY_LINKED or subtype == abi.NOTIFY_KEY_UNLINKED:
        return f"{key_id} {word} {aux}"
    return f"{key_id} {word}"


def format_keyctl(record: Record) -> str:
    """One line as keyutils' `keyctl watch` prints it."""
    if isinstance(record, KeyNotification):
        return _keyctl_key_line(record.key_id, record.subtype, record.aux)
    if isinstance(record, (MountNotification, SuperblockNotification)):
        return format_sample(record)
    if isinstance(record, Removal):
        return f"{record.id} gc"
    if isinstance(record, Loss):
        return "-- LOSS --"
    return f"other type {record.type} subtype {record.subtype}"


def format_sample(record: Union[MountNotification, SuperblockNotification]) -> str:
    """The line the 2020 patches' samples/watch_queue/watch_test.c prints for a mount or
    superblock record (MOUNT in A2's form, SUPER in v16's, an error's number after it)."""
    if isinstance(record, MountNotification):
        return f"MOUNT {record.triggered_on:08x} change={record.subtype}[{record.name}] aux={record.aux:x}"
    line = f"SUPER {record.sb_id:08x} change={record.subtype}[{record.name}]"
    return line if record.error_number is None else f"{line} error={record.error_number}"


def format_watch_test(record: Record, offset: int) -> list[str]:
    """The lines samples/watch_queue/watch_test.c prints for the record at offset."""
    if isinstance(record, KeyNotification):
        rtype, subtype, info = abi.WATCH_TYPE_KEY_NOTIFY, record.subtype, record.info
    elif isinstance(record, MountNotification):
        rtype, subtype, info = abi.WATCH_TYPE_MOUNT_NOTIFY, record.subtype, record.info
    elif isinstance(record, SuperblockNotification):
        rtype, subtype, info = abi.WATCH_TYPE_SB_NOTIFY, record.subtype, record.info
    elif isinstance(record, Removal):
        rtype, subtype, info = abi.WATCH_TYPE_META, abi.WATCH_META_REMOVAL_NOTIFICATION, record.info
    elif isinstance(record, Loss):
        rtype, subtype, info = abi.WATCH_TYPE_META, abi.WATCH_META_LOSS_NOTIFICATION, record.info
    else:
        rtype, subtype, info = record.type, record.subtype, record.info
    lines = [f"NOTIFY[{offset:03x}]: ty={rtype:06x} sy={subtype:02x} i={info:08x}"]
    if isinstance(record, KeyNotification):
        lines.append(f"KEY {record.key_id:08x} change={record.subtype}[{record.name}] aux={record.aux}")
    elif isinstance(record, (MountNotification, SuperblockNotification)):
        lines.append(format_sample(record))
    elif isinstance(record, Removal):
        lines.append(f"REMOVAL of watchpoint {record.tag:08x}")
    elif isinstance(record, Loss):
        lines.append("-- LOSS --")
    elif rtype == abi.WATCH_TYPE_META:
        lines.append("other meta record")
    else:
        lines.append("other type")
    return lines


def to_dict(record: Record) -> dict[str, object]:
    if isinstance(record, KeyNotification):
        return {"kind": "key", "subtype": record.subtype, "event": record.name,
                "key": record.key_id, "aux": record.aux, "tag": record.tag}
    if isinstance(record, MountNotification):
        return {"kind": "mount", "subtype": record.subtype, "event": record.name,
                "triggered_on": record.triggered_on, "aux": record.aux, "tag": record.tag,
                "in_subtree": record.in_subtree, "is_now_ro": record.is_now_ro,
                "is_submount": record.is_submount}
    if isinstance(record, SuperblockNotification):
        out: dict[str, object] = {"kind": "superblock", "subtype": record.subtype, "event": record.name,
                                  "sb_id": record.sb_id, "tag": record.tag, "is_now_ro": record.is_now_ro}
        if record.error_number is not None:
            out["error_number"] = record.error_number
            out["error_cookie"] = record.error_cookie
        return out
    if isinstance(record, Removal):
        return {"kind": "removal", "id": record.id, "tag": record.tag}
    if isinstance(record, Loss):
        return {"kind": "loss"}
    return {"kind": "other", "type": record.type, "subtype": record.subtype,
            "tag": record.tag, "data": record.data.hex()}


def format_json(record: Record) -> str:
    return json.dumps(to_dict(record), sort_keys=True)


def keyctl_lines(data: bytes) -> bytes:
    """format_keyctl of each record in data, a line each (the events/ files' text).

    Key notifications (nearly every record) are formatted without building record objects;
    anything else goes through parse_one and format_keyctl.
    """
    lines = []
    offset, end = 0, len(data)
    unpack = _KEY.unpack_from
    while offset < end:
        if end - offset >= _KEY.size:
            word0, info, key_id, aux = unpack(data, offset)
            if word0 & 0xFFFFFF == abi.WATCH_TYPE_KEY_NOTIFY and info & abi.WATCH_INFO_LENGTH == _KEY.size:
                lines.append(_keyctl_key_line(key_id, word0 >> 24, aux))
                offset += _KEY.size
                continue
        record, length = parse_one(data, offset)
        lines.append(format_keyctl(record))
        offset += length
    return ("\n".join(lines) + "\n").encode() if lines else b""
