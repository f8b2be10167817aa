"""Seccomp user notification through ctypes: the filter, the listener's ioctls, fd passing.

The filter traps only what wqfs emulates (x86_64): pipe2 with O_NOTIFICATION_PIPE,
the watch-queue ioctls and FIONREAD, keyctl, add_key and request_key, and the few calls
whose answer differs on a notification pipe and so may need one: fcntl F_GETPIPE_SZ and
F_SETPIPE_SZ, write of 0 bytes (FUSE never sees it), splice; and the two ways to set
O_NONBLOCK later (fcntl F_SETFL, ioctl FIONBIO), which FUSE would not tell the daemon.
And watch_mount and watch_sb at wqfs's own numbers (abi.NR_WATCH_MOUNT, NR_WATCH_SB): no
kernel assigns them (a real one answers ENOSYS), so trapping them always breaks nothing.

With a legacy version (`wqfs run --legacy-watch-nr=2020-08|2020-02`, abi.LEGACY_WATCH_NRS) the
2020 patches' numbers are trapped too, although they are real calls today (439 faccessat2, 440
process_madvise, 441 epoll_pwait2): the front (front.py, legacy_watch_call) serves one as
watch_mount or watch_sb only when the real call would certainly fail, and lets every other one
run. For faccessat2 the filter itself already lets through the calls with a valid mode and
flags (glibc's faccessat is one), so they never leave the kernel.
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
from typing import Optional

from .. import abi

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

SYS_seccomp = 317
SYS_pipe2, SYS_ioctl, SYS_keyctl, SYS_add_key, SYS_request_key = 293, 16, 250, 248, 249
SYS_write, SYS_fcntl, SYS_splice = 1, 72, 275
SYS_watch_mount, SYS_watch_sb = abi.NR_WATCH_MOUNT, abi.NR_WATCH_SB
SYS_faccessat2, SYS_process_madvise, SYS_epoll_pwait2 = abi.NR_FACCESSAT2, abi.NR_PROCESS_MADVISE, abi.NR_EPOLL_PWAIT2
SYSCALL_NAMES = {SYS_pipe2: "pipe2", SYS_ioctl: "ioctl", SYS_keyctl: "keyctl",
                 SYS_add_key: "add_key", SYS_request_key: "request_key",
                 SYS_write: "write", SYS_fcntl: "fcntl", SYS_splice: "splice",
                 SYS_watch_mount: "watch_mount", SYS_watch_sb: "watch_sb",
                 SYS_faccessat2: "faccessat2", SYS_process_madvise: "process_madvise",
                 SYS_epoll_pwait2: "epoll_pwait2"}
# What do_faccessat accepts: a mode of R_OK|W_OK|X_OK bits, these flags (else EINVAL).
FACCESSAT2_MODES = 0o7
FACCESSAT2_FLAGS = abi.AT_EACCESS | abi.AT_SYMLINK_NOFOLLOW | abi.AT_EMPTY_PATH
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
_OFF_NR, _OFF_ARCH, _OFF_ARG1, _OFF_ARG2, _OFF_ARG2_HI, _OFF_ARG3 = 0, 4, 24, 32, 36, 40


def legacy_numbers(version: Optional[str]) -> dict[int, str]:
    """The numbers a legacy version traps, and what each one is served as (ValueError if no
    such version)."""
    if version is None:
        return {}
    if version not in abi.LEGACY_WATCH_NRS:
        raise ValueError(f"no legacy watch_mount numbers {version!r}: {', '.join(abi.LEGACY_WATCH_NRS)}")
    return dict(abi.LEGACY_WATCH_NRS[version])


def _filter_program(legacy: Optional[str] = None) -> bytes:
    """The BPF program, assembled with forward jumps resolved by hand-kept labels."""
    ALLOW, NOTIFY = "allow", "notify"
    legacy_jumps: list[tuple] = []
    faccessat2: list[tuple] = []
    for nr in sorted(legacy_numbers(legacy)):
        # faccessat2 only when do_faccessat would refuse mode or flags; the others always
        legacy_jumps.append((_JEQ, "faccessat2" if nr == SYS_faccessat2 else NOTIFY, 0, nr))
        if nr == SYS_faccessat2:
            faccessat2 = [
                ("label", "faccessat2"),  # int mode, int flags: the low words are what it sees
                (_LD_W_ABS, 0, 0, _OFF_ARG2),
                (_JSET, NOTIFY, 0, 0xFFFFFFFF & ~FACCESSAT2_MODES),
                (_LD_W_ABS, 0, 0, _OFF_ARG3),
                (_JSET, NOTIFY, ALLOW, 0xFFFFFFFF & ~FACCESSAT2_FLAGS),
            ]
    code: list[tuple] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ, 0, ALLOW, AUDIT_ARCH_X86_64),
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JEQ, NOTIFY, 0, SYS_watch_mount),
        (_JEQ, NOTIFY, 0, SYS_watch_sb),
        *legacy_jumps,
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
        *faccessat2,
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


def install_filter(legacy: Optional[str] = None) -> int:
    """In the child, before exec: no_new_privs, then the filter; returns the listener fd.
    legacy: a key of abi.LEGACY_WATCH_NRS, whose numbers are trapped too."""
    program = _filter_program(legacy)  # a bad version fails before anything is changed
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
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
