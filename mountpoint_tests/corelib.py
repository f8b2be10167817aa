"""Helpers shared by the core unit tests: expected records built with struct, not with the codec under test."""
from __future__ import annotations

import errno
import struct

import pytest

from wqfs.kernel import KernelError, WatchQueue

LOSS = struct.pack("<II", 1 << 24, 8)


def key_rec(subtype: int, key_id: int, aux: int = 0, tag: int = 0) -> bytes:
    return struct.pack("<IIII", 1 | (subtype << 24), (tag << 8) | 16, key_id, aux & 0xFFFFFFFF)


def removal_rec(object_id: int, tag: int = 0) -> bytes:
    return struct.pack("<IIQ", 0, (tag << 8) | 16, object_id)


def errno_of(fn, *args, **kwargs) -> int:
    with pytest.raises(KernelError) as info:
        fn(*args, **kwargs)
    return info.value.errno


def drain(q: WatchQueue, bufsize: int = 4096) -> bytes:
    """Everything readable now, in reads of bufsize."""
    out = b""
    while True:
        try:
            chunk = q.read_nowait(bufsize)
        except KernelError as e:
            assert e.errno == errno.EAGAIN
            return out
        if not chunk:
            return out
        out += chunk
