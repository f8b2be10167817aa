"""Which FUSE request is being answered, and which of them the kernel interrupted.

Mirrors what fs/fuse/dev.c tells a server: every request header carries a unique id and the
caller's pid, and a caller that gets a signal while the server holds its request makes the
kernel send FUSE_INTERRUPT for that unique id (request_wait_answer -> queue_interrupt). pyfuse3
gives read, write and release no request context and ignores FUSE_INTERRUPT, but libfuse
reports both in its debug log, in the thread that then calls the handler: the line
"unique: U, opcode: OP (N), nodeid: I, insize: S, pid: P" comes right before the handler of
that request starts (pyfuse3 starts it before its worker awaits anything), and
"INTERRUPT: U" when an interrupt arrives. wqfs installs its own log function
(fuse_set_log_func) and reads those two lines; every other line is dropped at once.

The log function is C (wqfs/fuse/_requestlog.c, built with the package): it keeps the last
request line's numbers with no call into Python, and calls Python only for an interrupt. Two
lines a request made through ctypes cost a simple request a tenth more. Where the extension
is missing, the same is done through ctypes: every other line is dropped after one dict lookup
of its format pointer, and a request line's numbers are read straight from its va_list where
the ABI is known (x86-64), once checked against vsnprintf on the first line.

So a blocked read() learns that *its* caller was signalled, whoever opened the file and
however the fd reached that caller, at no cost while nothing happens (no polling of /proc).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import struct
import threading
from collections import OrderedDict
from typing import Callable, NamedTuple, Optional

try:
    from . import _requestlog as _native
except ImportError:  # not built (no compiler when installed): the ctypes log function below
    _native = None

log = logging.getLogger("wqfs.fuse")

_REQUEST_PREFIX = b"unique: %llu, opcode:"
_INTERRUPT_PREFIX = b"INTERRUPT: %llu"
_OTHER, _REQUEST, _INTERRUPT = 0, 1, 2
_EARLY_MAX = 1024  # interrupts for requests not (yet) waiting: kept for a late waiter, bounded


class Request(NamedTuple):
    """The FUSE request a handler is answering: the kernel's unique id and the caller's thread."""
    unique: int
    opcode: int
    pid: int


# The x86-64 va_list (System V ABI): gp_offset, fp_offset, overflow_arg_area, reg_save_area.
# The request line's six arguments (unique, opcode name, opcode, nodeid, insize, pid) are all of
# the integer class: each is in reg_save_area at gp_offset (while gp_offset < 48), the rest in
# turn in overflow_arg_area. They are read through one memoryview of the address space (a
# struct.unpack_from costs a tenth of a ctypes.string_at), only at the addresses the va_list gives.
_VA_LIST = struct.Struct("<IIQQ")
_WORD = struct.Struct("<Q")
_REGS_AT_16 = struct.Struct("<QQQQ")  # fuse_log(level, fmt, ...): two register words are named
_OVERFLOW_2 = struct.Struct("<QQ")
_BASE = 1 << 12                       # nothing is mapped below the first page
_MEMORY: Optional[memoryview] = None
if platform.machine() in ("x86_64", "AMD64"):
    try:
        _MEMORY = memoryview((ctypes.c_ubyte * ((1 << 47) - _BASE)).from_address(_BASE)).cast("B")
    except (ValueError, TypeError, OverflowError, MemoryError):
        _MEMORY = None


def _request_args(args: int) -> tuple[int, int, int]:
    """(unique, opcode, pid) of a request line, read from its va_list without consuming it."""
    memory = _MEMORY
    assert memory is not None
    gp_offset, _, overflow, saved = _VA_LIST.unpack_from(memory, args - _BASE)
    if gp_offset == 16:
        unique, _, opcode, _ = _REGS_AT_16.unpack_from(memory, saved + 16 - _BASE)
        pid = _OVERFLOW_2.unpack_from(memory, overflow - _BASE)[1]
        return unique, opcode & 0xFFFFFFFF, pid & 0xFFFFFFFF
    words = []
    for _ in range(6):
        if gp_offset < 48:
            words.append(_WORD.unpack_from(memory, saved + gp_offset - _BASE)[0])
            gp_offset += 8
        else:
            words.append(_WORD.unpack_from(memory, overflow - _BASE)[0])
            overflow += 8
    return words[0], words[2] & 0xFFFFFFFF, words[5] & 0xFFFFFFFF


_LOG_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class RequestLog:
    """The daemon's view of libfuse's request log: the current request, interrupt callbacks."""

    def __init__(self, native: Optional[object] = _native) -> None:
        self._native = native  # the C log function's module, or None for the ctypes one
        self._kinds: dict[int, int] = {}
        self._buffer = ctypes.create_string_buffer(256)
        self._current: Optional[tuple[int, int, int]] = None  # (unique, opcode, pid)
        self._direct: Optional[bool] = None if _MEMORY is not None else False  # None: not checked yet
        self._waiting: dict[int, Callable[[], None]] = {}
        self._early: "OrderedDict[int, bool]" = OrderedDict()
        self._thread: Optional[int] = None
        self._callback = _LOG_FUNC(self._log)  # kept alive as long as libfuse may call it
        self.installed = False
        self.interrupts = 0

    def install(self) -> bool:
        """Route libfuse's log here. False where libfuse has no fuse_set_log_func (before 3.7):
        then no request is known and nothing is ever interrupted early."""
        try:
            libfuse = ctypes.CDLL(ctypes.util.find_library("fuse3") or "libfuse3.so.3")
            libc = ctypes.CDLL(None)
            set_log = libfuse.fuse_set_log_func
        except (OSError, AttributeError):
            return False
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        self._thread = threading.get_ident()
        if self._native is not None:
            # lines of a wording the C function does not know come to _log: no direct reads then
            self._direct = False
            if not self._native.install(self._interrupted, self._log):  # type: ignore[attr-defined]
                return False
        else:
            set_log.argtypes = [_LOG_FUNC]
            set_log(self._callback)
        self.installed = True
        return True

    @property
    def native(self) -> bool:
        """Whether the C log function reads the log (else the ctypes one)."""
        return self.installed and self._native is not None

    def bind_thread(self) -> None:
        """The thread that runs the trio loop (and so libfuse's request processing)."""
        self._thread = threading.get_ident()
        if self._native is not None:
            self._native.bind_thread()  # type: ignore[attr-defined]

    def _log(self, level: int, fmt: Optional[int], args: Optional[int]) -> None:
        try:
            if fmt is None:
                return
            kind = self._kinds.get(fmt)
            if kind is None:
                text = ctypes.string_at(fmt)
                kind = (_REQUEST if text.startswith(_REQUEST_PREFIX) else
                        _INTERRUPT if text.startswith(_INTERRUPT_PREFIX) else _OTHER)
                if len(self._kinds) < 4096:
                    self._kinds[fmt] = kind
            if kind == _OTHER or threading.get_ident() != self._thread:
                return
            if kind == _REQUEST and self._direct:
                self._current = _request_args(args)
                return
            direct = _request_args(args) if kind == _REQUEST and self._direct is None else None
            self._vsnprintf(self._buffer, 256, fmt, args)
            line = self._buffer.value
            if kind == _REQUEST:
                fields = line.split(b", ")
                unique = int(fields[0][8:])
                opcode = int(fields[1][fields[1].index(b"(") + 1:-1])
                pid = int(fields[4][5:])
                self._current = (unique, opcode, pid)
                if direct is not None:  # the first request line: may the va_list be read directly?
                    self._direct = direct == self._current
                if self._native is not None:
                    self._native.set_current(unique, opcode, pid)  # type: ignore[attr-defined]
            else:
                self._interrupted(int(line[11:]))
        except Exception:  # never let a log line end the daemon
            log.exception("cannot read libfuse's log line")

    def _interrupted(self, unique: int) -> None:
        self.interrupts += 1
        callback = self._waiting.pop(unique, None)
        if callback is not None:
            callback()
            return
        self._early[unique] = True
        while len(self._early) > _EARLY_MAX:
            self._early.popitem(last=False)

    def current(self) -> Optional[Request]:
        """The request whose handler is starting. Call it before the handler's first await."""
        if self._native is not None:
            request = self._native.take()  # type: ignore[attr-defined]
        else:
            request, self._current = self._current, None
        return Request(*request) if request is not None else None

    def peek(self) -> Optional[Request]:
        """The request whose handler is starting, left for its handler's current()."""
        request = self._native.peek() if self._native is not None else self._current  # type: ignore[attr-defined]
        return Request(*request) if request is not None else None

    def on_interrupt(self, request: Optional[Request], callback: Callable[[], None]) -> bool:
        """Call callback when the kernel interrupts request; True if it already did."""
        if request is None:
            return False
        if self._early.pop(request.unique, False):
            return True
        self._waiting[request.unique] = callback
        return False

    def forget(self, request: Optional[Request]) -> None:
        """The request is answered: its unique id may be reused by the kernel."""
        if request is not None:
            self._waiting.pop(request.unique, None)
            self._early.pop(request.unique, None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)


REQUESTS = RequestLog()

__all__ = ["REQUESTS", "Request", "RequestLog"]
