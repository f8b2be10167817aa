"""fs/super.c of the v16 superblock patch in the core alone: watch_sb, the READONLY record of a
reconfigure, notify_sb_error, and the removal when the superblock's last mount goes."""
from __future__ import annotations

import errno
import struct

import pytest

from corelib import ALICE, Clock, drain, errno_of, new_kernel, new_queue
from wqfs import abi
from wqfs.kernel import MountInfo, MountTarget
from wqfs.records import Removal, SuperblockNotification, parse

NS = ("ns", 1)
DEV = 0x2d


def mnt(mid: int, parent: int, point: str, dev: int = DEV, opts: str = "rw", sb: str = "rw,size=1024k") -> MountInfo:
    return MountInfo(mid, parent, dev, "/", point, opts, "tmpfs", "none", sb)


def sb_rec(subtype: int, sb_id: int = DEV, tag: int = 1, flags: int = 0) -> bytes:
    return struct.pack("<IIQ", 3 | subtype << 24, 16 | flags | tag << 8, sb_id)


@pytest.fixture
def kernel():
    k = new_kernel(Clock())
    k.mount_resync(NS, [mnt(20, 1, "/", dev=8), mnt(30, 20, "/a"), mnt(31, 20, "/b")])
    return k


def watch(k, q=None, tag: int = 1, dev: int = DEV):
    q = q or new_queue()
    k.watch_sb(ALICE, MountTarget(NS, 30, "", dev), q, tag)
    return q


def test_remount_posts_readonly_with_is_now_ro_only_when_it_went_read_only(kernel):
    q = watch(kernel)
    kernel.change_mount(NS, mnt(30, 20, "/a", opts="ro", sb="ro,size=1024k"))
    assert drain(q) == sb_rec(abi.NOTIFY_SUPERBLOCK_READONLY, flags=abi.NOTIFY_SUPERBLOCK_IS_NOW_RO)
    kernel.change_mount(NS, mnt(31, 20, "/b", sb="ro,size=1024k"))  # the same superblock, told again
    assert drain(q) == b""
    kernel.change_mount(NS, mnt(30, 20, "/a", sb="rw,size=2048k"))
    assert drain(q) == sb_rec(abi.NOTIFY_SUPERBLOCK_READONLY)
    kernel.change_mount(NS, mnt(30, 20, "/a", sb="rw,size=4096k"))  # v16 posts it on every reconfigure
    assert drain(q) == sb_rec(abi.NOTIFY_SUPERBLOCK_READONLY)


def test_a_bind_remount_is_no_superblock_event(kernel):
    q = watch(kernel)
    kernel.change_mount(NS, mnt(30, 20, "/a", opts="ro"))
    assert drain(q) == b""


def test_error_record(kernel):
    q = watch(kernel, tag=4)
    kernel.notify_sb_error(DEV, errno.EUCLEAN)
    data = drain(q)
    assert data == struct.pack("<IIQII", 3 | 1 << 24, 24 | 4 << 8, DEV, errno.EUCLEAN, 0)
    [r] = parse(data)
    assert r == SuperblockNotification(1, DEV, 4, 24 | 4 << 8, errno.EUCLEAN, 0) and r.name == "error"


def test_removal_when_the_last_mount_of_the_superblock_goes(kernel):
    q = watch(kernel, tag=2)
    kernel.umount_mounts(NS, [30])
    assert drain(q) == b""  # /b still holds it
    kernel.umount_mounts(NS, [31])
    assert list(parse(drain(q))) == [Removal(DEV, 2, 16 | 2 << 8)]
    assert kernel.superblock_watch_count(DEV) == 0


def test_watch_errors(kernel):
    q = watch(kernel)
    assert errno_of(kernel.watch_sb, ALICE, MountTarget(NS, 30, "", DEV), q, 1) == errno.EBUSY
    assert errno_of(kernel.watch_sb, ALICE, MountTarget(NS, 30, "", DEV), None, 1) == errno.EINVAL
    assert errno_of(kernel.watch_sb, ALICE, MountTarget(NS, 30, "", 0x99), q, 1) == errno.EIO
    other = new_queue()
    assert errno_of(kernel.watch_sb, ALICE, MountTarget(NS, 30, "", DEV), other, -1) == errno.EBADSLT
    kernel.watch_sb(ALICE, MountTarget(NS, 30, "", DEV), q, -1)
    assert list(parse(drain(q))) == [Removal(DEV, 1, 16 | 1 << 8)]


def test_filter_on_the_superblock_type(kernel):
    from wqfs.kernel import Filter, TypeFilter, pack_filter
    q = watch(kernel)
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(3, subtype_filter=(1 << abi.NOTIFY_SUPERBLOCK_ERROR,))])))
    kernel.change_mount(NS, mnt(30, 20, "/a", sb="ro,size=1024k"))
    kernel.notify_sb_error(DEV, 5)
    assert [r.subtype for r in parse(drain(q))] == [abi.NOTIFY_SUPERBLOCK_ERROR]
