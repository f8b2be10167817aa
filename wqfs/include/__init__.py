"""The C header wqfs ships for programs run under `wqfs run`: wqfs/watch_queue.h, the mount and
superblock notification ABI (the 2020 patches' records, wqfs's syscall numbers) on top of the
kernel's <linux/watch_queue.h>. It is package data, installed with the package; a program
includes <wqfs/watch_queue.h> and builds with `cc $(wqfs cflags) ...`."""
from __future__ import annotations

import os

HEADER = "wqfs/watch_queue.h"  # as a program includes it


def include_dir() -> str:
    """The directory to pass with -I so that <wqfs/watch_queue.h> is found."""
    return os.path.dirname(os.path.abspath(__file__))


def cflags() -> str:
    """What `wqfs cflags` prints: the compiler flags for the header."""
    return f"-I{include_dir()}"
