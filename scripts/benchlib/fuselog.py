"""FUSE requests counted by opcode from libfuse's own debug log (fuse_set_log_func).

libfuse logs "unique: U, opcode: NAME (N), nodeid: I, insize: S, pid: P" for every request it
receives (with the `debug` mount option), before any handler runs: so this counts what the
kernel sent, requests that pyfuse3 answers itself (FORGET, INTERRUPT) included. Only for
counting runs: every log line costs a call into Python.

    counter = OpcodeCounter(); counter.install(forward)   # forward: an earlier log function, or None
    counter.counts                                        # {"lookup": 3, "open": 1, ...}
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
from typing import Callable, Optional

_LOG_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_REQUEST_PREFIX = b"unique: %llu, opcode:"


class OpcodeCounter:
    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self._kinds: dict[int, bool] = {}
        self._buffer = ctypes.create_string_buffer(256)
        self._forward: Optional[Callable[[int, Optional[int], Optional[int]], None]] = None
        self._callback = _LOG_FUNC(self._log)

    def install(self, forward: Optional[Callable[[int, Optional[int], Optional[int]], None]] = None) -> None:
        libfuse = ctypes.CDLL(ctypes.util.find_library("fuse3") or "libfuse3.so.3")
        libc = ctypes.CDLL(None)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        self._forward = forward
        libfuse.fuse_set_log_func.argtypes = [_LOG_FUNC]
        libfuse.fuse_set_log_func(self._callback)

    def _log(self, level: int, fmt: Optional[int], args: Optional[int]) -> None:
        if fmt is not None:
            is_request = self._kinds.get(fmt)
            if is_request is None:
                is_request = self._kinds[fmt] = ctypes.string_at(fmt).startswith(_REQUEST_PREFIX)
            if is_request:
                # vsnprintf consumes a va_list: format a copy, so that the forwarded call sees it whole
                copy = (ctypes.c_char * 24).from_address(args)
                saved = bytes(copy)
                self._vsnprintf(self._buffer, 256, fmt, args)
                ctypes.memmove(args, saved, 24)
                fields = self._buffer.value.split(b", ")
                name = fields[1].split(b" ")[1].decode().lower()
                self.counts[name] += 1
        if self._forward is not None:
            self._forward(level, fmt, args)
