"""statmount(2) and listmount(2) (Linux 6.8, fs/namespace.c; include/uapi/linux/mount.h), and
the nsfs ioctl NS_GET_MNTNS_ID (6.11) that names a foreign mount namespace to them.

A mount's fields are turned into the MountInfo /proc/PID/mountinfo would show for it, string
for string (show_mountinfo's per-mount and superblock options rebuilt from mnt_attr and
sb_flags), so that a table read from one compares equal to a table read from the other.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from typing import Optional

from ..kernel import MountInfo
from . import libc
from .mountinfo import unescape

LSMT_ROOT = 0xFFFFFFFFFFFFFFFF  # listmount: the namespace's root
NS_GET_MNTNS_ID = 0x8008B705    # _IOR(0xb7, 5, __u64)

STATMOUNT_SB_BASIC = 0x1
STATMOUNT_MNT_BASIC = 0x2
STATMOUNT_MNT_ROOT = 0x8
STATMOUNT_MNT_POINT = 0x10
STATMOUNT_FS_TYPE = 0x20
STATMOUNT_MNT_OPTS = 0x80
STATMOUNT_FS_SUBTYPE = 0x100
STATMOUNT_SB_SOURCE = 0x200
# Everything a MountInfo holds.
INFO_MASK = (STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC | STATMOUNT_MNT_ROOT | STATMOUNT_MNT_POINT | STATMOUNT_FS_TYPE
             | STATMOUNT_MNT_OPTS | STATMOUNT_FS_SUBTYPE | STATMOUNT_SB_SOURCE)

_REQ = struct.Struct("<IIQQQ")  # struct mnt_id_req, MNT_ID_REQ_SIZE_VER1 (with mnt_ns_id)
# struct statmount's fixed part, up to what is read here (512 bytes in all; strings after it)
_HEAD = struct.Struct("<IIQIIQIIQQIIQQQQQIIQII")
_STRINGS = 512

# mnt_attr (MOUNT_ATTR_*) and sb_flags (SB_*), as show_mnt_opts and show_sb_opts print them
_ATTR_RDONLY, _ATTR_NOSUID, _ATTR_NODEV, _ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
_ATTR_ATIME, _ATTR_NOATIME, _ATTR_NODIRATIME = 0x70, 0x10, 0x80
_ATTR_IDMAP, _ATTR_NOSYMFOLLOW = 0x100000, 0x200000
_SB_RDONLY, _SB_SYNCHRONOUS, _SB_DIRSYNC, _SB_LAZYTIME = 0x1, 0x10, 0x80, 1 << 25


class Statmount:
    """One statmount answer: the unique (64-bit) ids, and the mount as mountinfo shows it."""

    __slots__ = ("mnt_id", "parent_id", "info")

    def __init__(self, mnt_id: int, parent_id: int, info: MountInfo) -> None:
        self.mnt_id = mnt_id
        self.parent_id = parent_id
        self.info = info


def mntns_id(nsfd: int) -> int:
    """The 64-bit id statmount and listmount take for the namespace behind nsfd."""
    buf = bytearray(8)
    fcntl.ioctl(nsfd, NS_GET_MNTNS_ID, buf)
    return struct.unpack("<Q", buf)[0]


def listmount(ns_id: int, batch: int = 4096) -> list[int]:
    """Every mount of the namespace (its unique ids), in batches from the root."""
    ids: list[int] = []
    buf = (ctypes.c_uint64 * batch)()
    last = 0
    while True:
        req = _REQ.pack(_REQ.size, 0, LSMT_ROOT, last, ns_id)
        n = libc.syscall("listmount", ctypes.c_char_p(req), buf, ctypes.c_size_t(batch), ctypes.c_uint(0))
        ids.extend(buf[:n])
        if n < batch:
            return ids
        last = buf[n - 1]


def mnt_opts(attr: int) -> str:
    out = ["ro" if attr & _ATTR_RDONLY else "rw"]
    for bit, word in ((_ATTR_NOSUID, "nosuid"), (_ATTR_NODEV, "nodev"), (_ATTR_NOEXEC, "noexec")):
        if attr & bit:
            out.append(word)
    atime = attr & _ATTR_ATIME
    if atime == _ATTR_NOATIME:
        out.append("noatime")
    if attr & _ATTR_NODIRATIME:
        out.append("nodiratime")
    if atime == 0:  # MOUNT_ATTR_RELATIME
        out.append("relatime")
    if attr & _ATTR_NOSYMFOLLOW:
        out.append("nosymfollow")
    if attr & _ATTR_IDMAP:
        out.append("idmapped")
    return ",".join(out)


def sb_opts(sb_flags: int, fs_opts: str) -> str:
    out = ["ro" if sb_flags & _SB_RDONLY else "rw"]
    for bit, word in ((_SB_SYNCHRONOUS, "sync"), (_SB_DIRSYNC, "dirsync"), (_SB_LAZYTIME, "lazytime")):
        if sb_flags & bit:
            out.append(word)
    if fs_opts:
        out.append(fs_opts)
    return ",".join(out)


class Statmounter:
    """statmount of one namespace's mounts, with a buffer that grows when a mount's strings
    do not fit (EOVERFLOW) and is reused otherwise."""

    def __init__(self, ns_id: int) -> None:
        self.ns_id = ns_id
        self._buf = ctypes.create_string_buffer(4096)

    def _call(self, mnt_id: int, mask: int) -> bytes:
        req = _REQ.pack(_REQ.size, 0, mnt_id, mask, self.ns_id)
        while True:
            try:
                libc.syscall("statmount", ctypes.c_char_p(req), self._buf, ctypes.c_size_t(len(self._buf)),
                             ctypes.c_uint(0))
            except OSError as e:
                if e.errno != errno.EOVERFLOW or len(self._buf) >= 1 << 24:
                    raise
                self._buf = ctypes.create_string_buffer(len(self._buf) * 4)
                continue
            size = struct.unpack_from("<I", self._buf, 0)[0]
            return self._buf.raw[:size]

    def ids(self, mnt_id: int) -> tuple[int, int]:
        """(mnt_id_old, mnt_parent_id_old): the mountinfo ids of a unique id."""
        data = self._call(mnt_id, STATMOUNT_MNT_BASIC)
        head = _HEAD.unpack_from(data)
        return head[10], head[11]

    def stat(self, mnt_id: int) -> Statmount:
        """The mount as mountinfo would show it; OSError ENOENT once it is detached."""
        data = self._call(mnt_id, INFO_MASK)
        (_, opts_off, got, major, minor, _, sb_flags, type_off, uid, parent_uid, old, parent_old, attr,
         _, _, _, _, root_off, point_off, _, subtype_off, source_off) = _HEAD.unpack_from(data)

        def string(offset: int, bit: int) -> Optional[bytes]:
            if not got & bit:
                return None
            start = _STRINGS + offset
            return data[start:data.index(b"\0", start)]

        fstype = os.fsdecode(string(type_off, STATMOUNT_FS_TYPE) or b"")
        subtype = string(subtype_off, STATMOUNT_FS_SUBTYPE)
        if subtype:
            fstype = f"{fstype}.{os.fsdecode(subtype)}"
        source = os.fsdecode(string(source_off, STATMOUNT_SB_SOURCE) or b"") or "none"
        info = MountInfo(id=old, parent=parent_old, dev=os.makedev(major, minor),
                         root=os.fsdecode(string(root_off, STATMOUNT_MNT_ROOT) or b"/"),
                         mountpoint=os.fsdecode(string(point_off, STATMOUNT_MNT_POINT) or b"/"),
                         mnt_opts=mnt_opts(attr), fstype=fstype, source=source,
                         sb_opts=sb_opts(sb_flags, unescape(string(opts_off, STATMOUNT_MNT_OPTS) or b"")))
        return Statmount(uid, parent_uid, info)
