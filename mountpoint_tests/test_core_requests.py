"""libfuse's request log as wqfs reads it (wqfs/fuse/requests.py), on va_lists made here.

On x86-64 a va_list is (gp_offset, fp_offset, overflow_arg_area, reg_save_area); the tests lay
out the arguments of libfuse's request line as a caller of fuse_log would, and hand them to the
C log function (wqfs/fuse/_requestlog.c) and to the ctypes one, whose direct read must agree
with vsnprintf wherever the registers run out.
"""
from __future__ import annotations

import ctypes
import struct
import threading

import pytest

from wqfs.fuse import requests

REQUEST_FORMAT = b"unique: %llu, opcode: %s (%i), nodeid: %llu, insize: %zu, pid: %u\n"
INTERRUPT_FORMAT = b"INTERRUPT: %llu\n"
REPLY_FORMAT = b"   unique: %llu, success, outsize: %i\n"

x86_64 = pytest.mark.skipif(requests._MEMORY is None, reason="the va_list is read directly on x86-64 only")
native = pytest.mark.skipif(requests._native is None, reason="wqfs/fuse/_requestlog.c is not built")
BACKENDS = [pytest.param(True, id="C", marks=native), pytest.param(False, id="ctypes")]


class VaList:
    """The integer arguments of a variadic call, as va_start would leave them at gp_offset."""

    def __init__(self, values: list[int], gp_offset: int) -> None:
        self.regs = (ctypes.c_uint64 * 6)()
        self.overflow = (ctypes.c_uint64 * 8)()
        slot = 0
        for value in values:
            if gp_offset < 48:
                self.regs[gp_offset // 8] = value
                gp_offset += 8
            else:
                self.overflow[slot] = value
                slot += 1
        self.buffer = ctypes.create_string_buffer(24)

    def at(self, gp_offset: int) -> int:
        """A fresh va_list (vsnprintf consumes one) whose arguments start at gp_offset."""
        struct.pack_into("<IIQQ", self.buffer, 0, gp_offset, 48, ctypes.addressof(self.overflow),
                         ctypes.addressof(self.regs))
        return ctypes.addressof(self.buffer)


def make_log(use_native: bool = False) -> requests.RequestLog:
    request_log = requests.RequestLog(requests._native if use_native else None)
    assert request_log.install() or pytest.skip("libfuse has no fuse_set_log_func")
    request_log.bind_thread()
    assert request_log.native is use_native
    return request_log


def log_function(request_log: requests.RequestLog):
    """What libfuse calls: the C function itself, or the ctypes log method."""
    if request_log.native:
        function = requests._LOG_FUNC(request_log._native.log_function())
        return lambda level, fmt, args: function(level, fmt, args)
    return request_log._log


@x86_64
@pytest.mark.parametrize("gp_offset", [8, 16, 24, 48])
def test_a_request_line_is_read_from_its_va_list_wherever_the_registers_end(gp_offset):
    name = ctypes.create_string_buffer(b"READ")
    args = VaList([2 ** 40 + 3, ctypes.addressof(name), 15, 1 << 32 | 7, 80, 4242], gp_offset)
    assert requests._request_args(args.at(gp_offset)) == (2 ** 40 + 3, 15, 4242)


@x86_64
@pytest.mark.parametrize("use_native", BACKENDS)
@pytest.mark.parametrize("gp_offset", [8, 16, 40])
def test_a_request_line_gives_the_handler_its_request_once(use_native, gp_offset):
    request_log = make_log(use_native)
    log_line = log_function(request_log)
    fmt = ctypes.create_string_buffer(REQUEST_FORMAT)
    name = ctypes.create_string_buffer(b"READ")
    for unique, pid in ((2 ** 40 + 5, 31337), (6, 1)):
        args = VaList([unique, ctypes.addressof(name), 15, 1 << 32 | 7, 80, pid], gp_offset)
        log_line(7, ctypes.addressof(fmt), args.at(gp_offset))
        assert request_log.peek() == requests.Request(unique, 15, pid)
        assert request_log.current() == requests.Request(unique, 15, pid)
        assert request_log.current() is None and request_log.peek() is None


@native
def test_the_c_function_hands_another_wording_to_python():
    request_log = make_log(True)
    log_line = log_function(request_log)
    fmt = ctypes.create_string_buffer(b"unique: %llu, opcode: %s (%i), nodeid: %llu, insize: %zu, pid: %u, more: %i\n")
    name = ctypes.create_string_buffer(b"READ")
    args = VaList([9, ctypes.addressof(name), 15, 1, 80, 77, 3], 16)
    log_line(7, ctypes.addressof(fmt), args.at(16))
    assert request_log.current() == requests.Request(9, 15, 77)


@pytest.mark.parametrize("gp_offset", [16, 40])
def test_the_direct_read_is_checked_against_vsnprintf_and_then_used(gp_offset):
    request_log = make_log()
    fmt = ctypes.create_string_buffer(REQUEST_FORMAT)
    name = ctypes.create_string_buffer(b"WRITE")
    for unique, pid in ((11, 100), (12, 200)):
        args = VaList([unique, ctypes.addressof(name), 16, 9, 90, pid], gp_offset)
        request_log._log(7, ctypes.addressof(fmt), args.at(gp_offset))
        assert request_log.current() == requests.Request(unique, 16, pid)
        assert request_log.current() is None  # taken by its handler
    assert request_log._direct is (requests._MEMORY is not None)


@pytest.mark.parametrize("use_native", BACKENDS)
def test_an_interrupt_line_wakes_its_waiter_and_other_lines_change_nothing(use_native):
    request_log = make_log(use_native)
    log_line = log_function(request_log)
    woken = []
    request = requests.Request(77, 15, 1)
    assert not request_log.on_interrupt(request, lambda: woken.append(77))
    for fmt, value in ((REPLY_FORMAT, 77), (INTERRUPT_FORMAT, 78), (INTERRUPT_FORMAT, 77)):
        text = ctypes.create_string_buffer(fmt)
        args = VaList([value, 16], 16)
        log_line(7, ctypes.addressof(text), args.at(16))
    assert woken == [77] and request_log.interrupts == 2
    assert request_log.on_interrupt(requests.Request(78, 15, 1), lambda: None)  # it came early
    assert request_log.current() is None


@pytest.mark.parametrize("use_native", BACKENDS)
def test_lines_from_another_thread_are_not_the_loops_requests(use_native):
    request_log = make_log(use_native)
    log_line = log_function(request_log)
    fmt = ctypes.create_string_buffer(REQUEST_FORMAT)
    name = ctypes.create_string_buffer(b"LOOKUP")
    args = VaList([5, ctypes.addressof(name), 1, 1, 40, 9], 16)
    thread = threading.Thread(target=log_line, args=(7, ctypes.addressof(fmt), args.at(16)))
    thread.start()
    thread.join()
    assert request_log.current() is None
