"""Is a path a mountpoint, and unmounting one that may be stuck: for the CLI, the suite, the benchmarks.

Everything here decides by /proc/self/mountinfo, never by stat: a dead FUSE mountpoint's stat
fails with ENOTCONN, a hung one's never returns.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Optional

WQFS_TYPE = "fuse.wqfs"  # mountinfo's type of our mounts (subtype=wqfs)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\040 and so on."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> list[tuple[str, str]]:
    """(mountpoint, type) for every mount, in mount order."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        out.append((_unescape(fields[4]), after[0] if after else ""))
    return out


def mount_path(path: str) -> str:
    """path resolved as mountinfo writes it, without a stat of path itself (that would reach the
    file system mounted there): the parent is resolved, the last component is taken as it is
    when something is mounted there, and fully resolved (it may be a symlink) otherwise."""
    absolute = os.path.abspath(path)
    parent, name = os.path.split(absolute)
    candidate = os.path.join(os.path.realpath(parent), name) if name else absolute
    if any(point == candidate for point, _ in _mounts()):
        return candidate
    return os.path.realpath(absolute)


def mount_type(path: str) -> Optional[str]:
    """The type ("fuse.wqfs", "tmpfs", ...) of the topmost mount at path, None if nothing is mounted there."""
    real = mount_path(path)
    found = None
    for point, kind in _mounts():
        if point == real:
            found = kind
    return found


def default_mountpoint() -> str:
    """/run/wqfs for root; else $XDG_RUNTIME_DIR/wqfs, or ~/.wqfs without XDG_RUNTIME_DIR."""
    if os.getuid() == 0:
        return "/run/wqfs"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "wqfs") if runtime else os.path.expanduser("~/.wqfs")


def is_mounted(path: str) -> bool:
    """Whether something is mounted at path, by /proc/self/mountinfo."""
    return mount_type(path) is not None


def unmount_command(path: str, lazy: bool = False) -> list[str]:
    """fusermount3 -u (an ordinary user may unmount their own FUSE mount), else umount."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool:
        return [tool, "-u", *(["-z"] if lazy else []), path]
    return ["umount", *(["-l"] if lazy else []), path]


def force_unmount(path: str) -> Optional[str]:
    """Gone whatever the daemon's state: a lazy fusermount, then a lazy umount.
    None once nothing is mounted at path, else the last line the tools said."""
    detail = ""
    for command in (unmount_command(path, lazy=True), ["umount", "-l", path]):
        if not is_mounted(path):
            return None
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            detail = detail or error.strerror or str(error)
            continue
        lines = result.stderr.strip().splitlines()
        if result.returncode != 0 and lines and not detail:
            detail = lines[-1]
    return None if not is_mounted(path) else (detail or "unmount failed")
