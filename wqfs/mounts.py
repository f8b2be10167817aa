"""Is a path a mountpoint, and unmounting one that may be stuck: for the CLI, the suite, the benchmarks."""
from __future__ import annotations

import os
import shutil
import subprocess


def is_mounted(path: str) -> bool:
    """Whether something is mounted at path, by /proc/self/mountinfo (never by stat: a hung
    FUSE mount would hang the stat)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == real for line in f)
    except OSError:
        return False


def unmount_command(path: str, lazy: bool = False) -> list[str]:
    """fusermount3 -u (an ordinary user may unmount their own FUSE mount), else umount."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool:
        return [tool, "-u", *(["-z"] if lazy else []), path]
    return ["umount", *(["-l"] if lazy else []), path]


def force_unmount(path: str) -> None:
    """Gone whatever the daemon's state: a lazy fusermount, then a lazy umount."""
    if is_mounted(path):
        subprocess.run(unmount_command(path, lazy=True), capture_output=True)
    if is_mounted(path):
        subprocess.run(["umount", "-l", path], capture_output=True)
