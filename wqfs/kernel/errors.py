"""The one exception the core raises: a kernel errno, which every front passes on."""
from __future__ import annotations

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

