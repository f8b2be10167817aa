"""/proc/PID/mountinfo (fs/proc_namespace.c, show_mountinfo): its lines as the core's MountInfo.

Each line is `id parent major:minor root mountpoint mnt_opts [optional fields...] - fstype
source sb_opts`; the kernel escapes space, tab, newline and backslash in the paths and the
source as \\ooo octal (mangle), which is undone here. Paths are bytes on the host, str in the
core: decoded with the file system encoding's surrogateescape, so no name is lost.
"""
from __future__ import annotations

import os
import re

from ..kernel import MountInfo

_OCTAL = re.compile(rb"\\([0-7]{3})")


def unescape(field: bytes) -> str:
    """A mangled field as the path or string it stands for."""
    if b"\\" in field:
        field = _OCTAL.sub(lambda m: bytes((int(m.group(1), 8) & 0xFF,)), field)
    return os.fsdecode(field)


def parse_line(line: bytes) -> MountInfo:
    """One mountinfo line; ValueError if it is not one."""
    fields = line.rstrip(b"\n").split(b" ")
    try:
        sep = fields.index(b"-", 6)
    except ValueError:
        raise ValueError(f"no separator in mountinfo line {line!r}") from None
    if len(fields) < sep + 4:
        raise ValueError(f"short mountinfo line {line!r}")
    major, _, minor = fields[2].partition(b":")
    return MountInfo(id=int(fields[0]), parent=int(fields[1]), dev=os.makedev(int(major), int(minor)),
                     root=unescape(fields[3]), mountpoint=unescape(fields[4]), mnt_opts=unescape(fields[5]),
                     fstype=unescape(fields[sep + 1]), source=unescape(fields[sep + 2]),
                     sb_opts=unescape(b" ".join(fields[sep + 3:])))


def parse(data: bytes) -> list[MountInfo]:
    """A whole mountinfo file, in its order (parents before children, as the kernel lists them)."""
    return [parse_line(line) for line in data.split(b"\n") if line]


class Parser:
    """parse() for a file read again and again: a line the last read had is not parsed again
    (a remount changes a line or two of a table that may have thousands)."""

    def __init__(self) -> None:
        self._last: dict[bytes, MountInfo] = {}

    def parse(self, data: bytes) -> list[MountInfo]:
        last, seen = self._last, {}
        out = []
        for line in data.split(b"\n"):
            if not line:
                continue
            info = last.get(line)
            if info is None:
                info = parse_line(line)
            seen[line] = info
            out.append(info)
        self._last = seen
        return out


def read_fd(fd: int) -> bytes:
    """The whole file behind an open mountinfo fd, from its start (a seq_file rereads on lseek 0)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read(pid: int | str = "self") -> list[MountInfo]:
    with open(f"/proc/{pid}/mountinfo", "rb") as f:
        return parse(f.read())
