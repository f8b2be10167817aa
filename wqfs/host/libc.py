"""syscall(2) through the C library, for the host interfaces Python's os module lacks
(fanotify_init/fanotify_mark, statmount/listmount): one binding, errno raised as OSError."""
from __future__ import annotations

import ctypes
import errno
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h
_NUMBERS = {
    "x86_64": {"fanotify_init": 300, "fanotify_mark": 301, "statmount": 457, "listmount": 458},
    "aarch64": {"fanotify_init": 262, "fanotify_mark": 263, "statmount": 457, "listmount": 458},
}
NUMBERS = _NUMBERS.get(platform.machine(), {})


def syscall(name: str, *args: object) -> int:
    """The call's return value; OSError(errno) when it is -1, ENOSYS on an unknown machine."""
    nr = NUMBERS.get(name)
    if nr is None:
        raise OSError(errno.ENOSYS, f"{name}: no system call number for {platform.machine()}")
    result = _libc.syscall(ctypes.c_long(nr), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result
