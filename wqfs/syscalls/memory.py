"""The caller's memory, read and written with process_vm_readv/writev; EFAULT as the kernel gives it."""
from __future__ import annotations

import ctypes
import errno
from typing import Callable

from .. import abi
from ..kernel import KernelError, check_type_name
from .seccomp import libc

PAGE = abi.PAGE_SIZE


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


libc.process_vm_readv.restype = ctypes.c_ssize_t
libc.process_vm_writev.restype = ctypes.c_ssize_t
_readv, _writev = libc.process_vm_readv, libc.process_vm_writev
_byref, _addressof = ctypes.byref, ctypes.addressof


def _transfer(pid: int, address: int, buffer: ctypes.Array, length: int, write: bool) -> int:
    local = _IoVec(_addressof(buffer), length)
    remote = _IoVec(address, length)
    return (_writev if write else _readv)(pid, _byref(local), 1, _byref(remote), 1, 0)


def read(pid: int, address: int, length: int) -> bytes:
    if length == 0:
        return b""
    if address == 0:
        raise KernelError(errno.EFAULT, "NULL pointer")
    buffer = ctypes.create_string_buffer(length)
    done = _transfer(pid, address, buffer, length, False)
    if done != length:
        raise KernelError(errno.EFAULT, f"bad address {address:#x}")
    return buffer.raw


def write(pid: int, address: int, data: bytes) -> None:
    if not data:
        return
    if address == 0:
        raise KernelError(errno.EFAULT, "NULL pointer")
    buffer = ctypes.create_string_buffer(data, len(data))
    if _transfer(pid, address, buffer, len(data), True) != len(data):
        raise KernelError(errno.EFAULT, f"bad address {address:#x}")


def write_checked(pid: int, valid: "Callable[[], bool]", address: int, data: bytes) -> None:
    """write, but only while the call is still valid, checked right before the copy: a pid
    whose task was killed may name another task by now."""
    if not valid():
        raise KernelError(errno.ESRCH, "the call is gone")
    write(pid, address, data)


def read_bytes(pid: int, address: int, limit: int) -> bytes:
    """A NUL-terminated string of at most limit bytes before its NUL, read a page at a time
    (EFAULT only where the string itself runs into a bad page), EINVAL when longer."""
    if address == 0:
        raise KernelError(errno.EFAULT, "NULL string pointer")
    out = bytearray()
    while len(out) <= limit:
        chunk = min(PAGE - (address + len(out)) % PAGE, limit + 1 - len(out))
        data = read(pid, address + len(out), chunk)
        nul = data.find(b"\0")
        if nul >= 0:
            out += data[:nul]
            return bytes(out)
        out += data
    raise KernelError(errno.EINVAL, f"string longer than {limit} bytes")


def read_string(pid: int, address: int, limit: int) -> str:
    """strndup_user: EFAULT on a bad pointer, EINVAL when no NUL comes within limit bytes."""
    return read_bytes(pid, address, limit).decode("utf-8", "surrogateescape")


def getname(pid: int, address: int) -> bytes:
    """getname (fs/namei.c): a path name, at most PATH_MAX - 1 bytes (ENAMETOOLONG beyond),
    EFAULT for a bad pointer. An empty name is returned: whether it is ENOENT depends on the
    lookup's flags (LOOKUP_EMPTY), so the lookup says it."""
    try:
        return read_bytes(pid, address, abi.PATH_MAX - 1)
    except KernelError as error:
        if error.errno == errno.EINVAL:
            raise KernelError(errno.ENAMETOOLONG, "path name of PATH_MAX bytes or more") from None
        raise


def strndup_user(pid: int, address: int, size: int) -> str:
    """The kernel's strndup_user(s, size): at most size - 1 characters before the NUL."""
    return read_string(pid, address, size - 1)


def probe_writable(pid: int, address: int, length: int) -> None:
    """EFAULT now, before anything is done, if the caller could not take length bytes at address."""
    write(pid, address, read(pid, address, length))


def read_type(pid: int, address: int) -> str:
    """key_get_type_from_user: 1..31 characters, EPERM for a type starting with '.'."""
    name = read_string_limited(pid, address, 32)
    check_type_name(name)
    return name


def read_string_limited(pid: int, address: int, size: int) -> str:
    """strncpy_from_user into a buffer of size: EINVAL when it does not fit with its NUL."""
    try:
        return read_string(pid, address, size - 1)
    except KernelError as error:
        if error.errno == errno.EINVAL:
            raise KernelError(errno.EINVAL, "string too long") from None
        raise
