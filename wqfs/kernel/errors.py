"""The one exception the core raises: a kernel errno (include/uapi/asm-generic/errno-base.h,
errno.h), which every front passes on."""
from __future__ import annotations

import errno
import errno as _errno
import os


class KernelError(Exception):
    def __init__(self, errno: int, detail: str = "") -> None:
        super().__init__(errno, detail or os.strerror(errno))
        self.errno = errno
        self.detail = detail

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{name}: {self.detail or os.strerror(self.errno)}"


class KeyUnderConstruction(KernelError):
    """EAGAIN from a lookup that the kernel would wait in (wait_for_key_construction, until
    the key is instantiated or the caller gets a signal). A front that can wait looks again
    every CHECK_INTERVAL seconds."""

    CHECK_INTERVAL = 0.05

    def __init__(self, serial: int) -> None:
        super().__init__(errno.EAGAIN, f"key {serial} is under construction")
