"""Seccomp user notification through ctypes: the filter, the listener's ioctls, fd passing.

The filter traps only what wqfs emulates (x86_64): pipe2 with O_NOTIFICATION_PIPE,
the watch-queue ioctls and FIONREAD, keyctl, add_key and request_key, and the few calls
whose answer differs on a notification pipe and so may need one: fcntl F_GETPIPE_SZ and
F_SETPIPE_SZ, write of 0 bytes (FUSE never sees it), splice; and the two ways to set
O_NONBLOCK later (fcntl F_SETFL, ioctl FIONBIO), which FUSE would not tell the daemon.
Everything else never leaves the kernel.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from .. import abi

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

SYS_seccomp = 317
SYS_pipe2, SYS_ioctl, SYS_keyctl, SYS_add_key, SYS_request_key = 293, 16, 250, 248, 249
SYS_write, SYS_fcntl, SYS_splice = 1, 72, 275
SYSCALL_NAMES = {SYS_pipe2: "pipe2", SYS_ioctl: "ioctl", SYS_keyctl: "keyctl",
                 SYS_add_key: "add_key", SYS_request_key: "request_key",
                 SYS_write: "write", SYS_fcntl: "fcntl", SYS_splice: "splice"}
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SEND = 2

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102
SECCOMP_IOCTL_NOTIF_ADDFD = 0x40182103

_NOTIF = struct.Struct("<QIIiIQ6Q")   # id, pid, flags, nr, arch, ip, args[6]
_RESP = struct.Struct("<QqiI")        # id, val, error, flags
_ADDFD = struct.Struct("<QIIII")      # id, flags, srcfd, newfd, newfd_flags

# BPF
_LD_W_ABS, _JEQ, _JSET, _RET = 0x20, 0x15, 0x45, 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARG1, _OFF_ARG2, _OFF_ARG2_HI = 0, 4, 24, 32, 36


def _filter_program() -> bytes:
    """The BPF program, assembled with forward jumps resolved by hand-kept labels."""
    ALLOW, NOTIFY = "allow", "notify"
    code: list[tuple] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ, 0, ALLOW, AUDIT_ARCH_X86_64),
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JEQ, NOTIFY, 0, SYS_keyctl),
        (_JEQ, NOTIFY, 0, SYS_add_key),
        (_JEQ, NOTIFY, 0, SYS_request_key),
        (_JEQ, NOTIFY, 0, SYS_splice),
        (_JEQ, "pipe2", 0, SYS_pipe2),
        (_JEQ, "fcntl", 0, SYS_fcntl),
        (_JEQ, "write", 0, SYS_write),
        (_JEQ, "ioctl", ALLOW, SYS_ioctl),
        ("label", "write"),  # count == 0, all 64 bits of it
        (_LD_W_ABS, 0, 0, _OFF_ARG2),
        (_JEQ, 0, ALLOW, 0),
        (_LD_W_ABS, 0, 0, _OFF_ARG2_HI),
        (_JEQ, NOTIFY, ALLOW, 0),
        ("label", "fcntl"),
        (_LD_W_ABS, 0, 0, _OFF_ARG1),
        (_JEQ, NOTIFY, 0, abi.F_GETPIPE_SZ),
        (_JEQ, NOTIFY, 0, abi.F_SETFL),
        (_JEQ, NOTIFY, ALLOW, abi.F_SETPIPE_SZ),
        ("label", "pipe2"),
        (_LD_W_ABS, 0, 0, _OFF_ARG1),
        (_JSET, NOTIFY, ALLOW, abi.O_NOTIFICATION_PIPE),
        ("label", "ioctl"),
        (_LD_W_ABS, 0, 0, _OFF_ARG1),
        (_JEQ, NOTIFY, 0, abi.IOC_WATCH_QUEUE_SET_SIZE),
        (_JEQ, NOTIFY, 0, abi.IOC_WATCH_QUEUE_SET_FILTER),
        (_JEQ, NOTIFY, 0, abi.FIONBIO),
        (_JEQ, NOTIFY, ALLOW, abi.FIONREAD),
        ("label", ALLOW),
        (_RET, 0, 0, SECCOMP_RET_ALLOW),
        ("label", NOTIFY),
        (_RET, 0, 0, SECCOMP_RET_USER_NOTIF),
    ]
    labels: dict[str, int] = {}
    position = 0
    for insn in code:
        if insn[0] == "label":
            labels[insn[1]] = position
        else:
            position += 1
    out = bytearray()
    position = 0
    for insn in code:
        if insn[0] == "label":
            continue
        op, jt, jf, k = insn
        jt = labels[jt] - position - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - position - 1 if isinstance(jf, str) else jf
        out += struct.pack("<HBBI", op, jt, jf, k)
        position += 1
    return bytes(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter() -> int:
    """In the child, before exec: no_new_privs, then the filter; returns the listener fd."""
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    program = _filter_program()
    buffer = ctypes.create_string_buffer(program)
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    fd = libc.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
                      ctypes.byref(fprog))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")
    return fd


@dataclass(frozen=True)
class Notification:
    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, ...]


def receive(listener: int) -> Notification:
    buf = bytearray(_NOTIF.size)
    fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, buf)
    fields = _NOTIF.unpack(buf)
    return Notification(fields[0], fields[1], fields[3], fields[4], tuple(fields[6:12]))


def respond(listener: int, notif_id: int, value: int = 0, error: int = 0, cont: bool = False) -> None:
    """error is a positive errno; the kernel wants it negated."""
    flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE if cont else 0
    data = bytearray(_RESP.pack(notif_id, value, -error if error else 0, flags))
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, data)
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # the caller died or was interrupted: nobody to answer
            raise


def id_valid(listener: int, notif_id: int) -> bool:
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, bytearray(struct.pack("<Q", notif_id)))
        return True
    except OSError:
        return False


def add_fd(listener: int, notif_id: int, fd: int, cloexec: bool) -> int:
    """Put a copy of our fd into the caller; returns its number there."""
    data = bytearray(_ADDFD.pack(notif_id, 0, fd, 0, os.O_CLOEXEC if cloexec else 0))
    return fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, data)
