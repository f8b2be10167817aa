"""fs/namespace.c's hooks and fs/mount_notify.c (the A2 patch) in the core alone: which record
each change posts, to which watches (the rootward walk, IN_SUBTREE after the first directory),
watch_mount's checks and removal. The host's side (feeds, lookups) is test_host_feeds.py's."""
from __future__ import annotations

import errno
import struct

import pytest

from corelib import ALICE, BOB, Clock, drain, errno_of, new_kernel, new_queue
from wqfs import abi
from wqfs.kernel import MountInfo, MountTarget, path_below
from wqfs.records import MountNotification, Removal, parse

NS = ("ns", 1)
OTHER_NS = ("ns", 2)
NEW, UMOUNT, RO, SETATTR, MFROM, MTO = (abi.NOTIFY_MOUNT_NEW_MOUNT, abi.NOTIFY_MOUNT_UNMOUNT,
                                        abi.NOTIFY_MOUNT_READONLY, abi.NOTIFY_MOUNT_SETATTR,
                                        abi.NOTIFY_MOUNT_MOVE_FROM, abi.NOTIFY_MOUNT_MOVE_TO)
SUB, NOW_RO = abi.NOTIFY_MOUNT_IN_SUBTREE, abi.NOTIFY_MOUNT_IS_NOW_RO


def mnt(mid: int, parent: int, point: str, dev: int = 0, opts: str = "rw,relatime", sb: str = "rw") -> MountInfo:
    return MountInfo(mid, parent, dev or 100 + mid, "/", point, opts, "tmpfs", "none", sb)


ROOT_TABLE = [mnt(20, 1, "/", 8), mnt(21, 20, "/proc", 9), mnt(22, 20, "/srv/data", 10)]


def rec(subtype: int, trigger: int, aux: int = 0, tag: int = 1, flags: int = 0) -> bytes:
    """struct mount_notification: type 2, the subtype in byte 3, length 24, flags and tag in info."""
    return struct.pack("<IIQQ", 2 | subtype << 24, 24 | flags | tag << 8, trigger, aux)


@pytest.fixture
def kernel():
    k = new_kernel(Clock())
    k.mount_resync(NS, ROOT_TABLE)
    return k


def watch(k, path: str, mnt_id: int, tag: int = 1, cred=ALICE, q=None, ns=NS):
    q = q or new_queue()
    k.watch_mount(cred, MountTarget(ns, mnt_id, path, 100 + mnt_id), q, tag)
    return q


def test_first_table_posts_nothing_and_later_ones_post_the_differences(kernel):
    q = watch(kernel, "", 20)
    assert drain(q) == b""
    kernel.mount_resync(NS, ROOT_TABLE + [mnt(23, 20, "/mnt")])
    assert drain(q) == rec(NEW, 20, 23)  # triggered on the root mount, whose root is the watched directory


def test_new_mount_is_triggered_on_its_parent_and_seen_without_in_subtree_there(kernel):
    at_root = watch(kernel, "", 20, tag=1)
    at_srv = watch(kernel, "srv", 20, tag=2)
    on_data = watch(kernel, "", 22, tag=3)
    kernel.attach_mounts(NS, [mnt(30, 22, "/srv/data/x", sb="ro")])
    # the walk starts at the trigger (22)'s root: its watchers first, without IN_SUBTREE
    assert drain(on_data) == rec(NEW, 22, 30, tag=3, flags=NOW_RO)
    assert drain(at_srv) == rec(NEW, 22, 30, tag=2, flags=NOW_RO | SUB)
    assert drain(at_root) == rec(NEW, 22, 30, tag=1, flags=NOW_RO | SUB)


def test_a_watch_beside_or_below_the_change_sees_nothing(kernel):
    beside = watch(kernel, "proc", 20, tag=1)   # a directory of the root mount not on the way
    below = watch(kernel, "", 21, tag=2)        # another mount
    deeper = watch(kernel, "srv/data/x", 20, tag=3)  # covered by mount 22: not on the walk
    kernel.attach_mounts(NS, [mnt(30, 22, "/srv/data/y")])
    assert drain(beside) == drain(below) == drain(deeper) == b""


def test_a_tree_attached_at_once_is_one_record_of_its_top(kernel):
    q = watch(kernel, "", 20)
    kernel.attach_mounts(NS, [mnt(30, 20, "/a"), mnt(31, 30, "/a/b"), mnt(32, 31, "/a/b/c")])
    assert drain(q) == rec(NEW, 20, 30)


def test_unmount_then_the_removal_of_watches_on_the_unmounted_mount(kernel):
    kernel.attach_mounts(NS, [mnt(30, 22, "/srv/data/x")])
    up = watch(kernel, "", 22, tag=1)
    on_it = watch(kernel, "", 30, tag=2)
    inside = watch(kernel, "d", 30, tag=3, q=on_it)
    kernel.umount_mounts(NS, [30])
    assert drain(up) == rec(UMOUNT, 22, 30, tag=1)
    # both watches on mount 30 go, each record carrying the mount's id
    assert list(parse(drain(on_it))) in ([Removal(30, 3, 16 | 3 << 8), Removal(30, 2, 16 | 2 << 8)],
                                         [Removal(30, 2, 16 | 2 << 8), Removal(30, 3, 16 | 3 << 8)])
    assert kernel.namespace_watch_count(NS) == 1


def test_a_lazily_detached_tree_is_unmounted_at_its_top_only(kernel):
    kernel.attach_mounts(NS, [mnt(30, 20, "/a"), mnt(31, 30, "/a/b")])
    q = watch(kernel, "", 20)
    kernel.umount_mounts(NS, [31, 30])  # the host reports one detach per mount, in any order
    assert drain(q) == rec(UMOUNT, 20, 30)


def test_move_is_move_from_the_old_parent_then_move_to_the_new(kernel):
    kernel.attach_mounts(NS, [mnt(30, 22, "/srv/data/x")])
    q = watch(kernel, "", 20)
    kernel.move_mount(NS, mnt(30, 21, "/proc/y"))
    assert drain(q) == rec(MFROM, 22, 30, flags=SUB) + rec(MTO, 21, 30, flags=SUB)


def test_resync_reports_a_move_as_a_move(kernel):
    kernel.attach_mounts(NS, [mnt(30, 22, "/srv/data/x")])
    q = watch(kernel, "", 20)
    kernel.mount_resync(NS, ROOT_TABLE + [mnt(30, 20, "/z")])
    assert drain(q) == rec(MFROM, 22, 30, flags=SUB) + rec(MTO, 20, 30)


def test_resync_reports_a_moved_tree_as_one_move_of_its_top(kernel):
    kernel.attach_mounts(NS, [mnt(30, 22, "/srv/data/x"), mnt(31, 30, "/srv/data/x/sub")])
    q = watch(kernel, "", 20)
    inner = watch(kernel, "", 31, tag=2)
    kernel.mount_resync(NS, ROOT_TABLE + [mnt(30, 20, "/z"), mnt(31, 30, "/z/sub")])
    assert drain(q) == rec(MFROM, 22, 30, flags=SUB) + rec(MTO, 20, 30)
    assert drain(inner) == b""  # carried along: no record of its own, and its watch stays
    assert kernel.namespace_watch_count(NS) == 2


def test_bind_remount_read_only_is_readonly_then_setattr(kernel):
    q = watch(kernel, "", 22)
    kernel.change_mount(NS, mnt(22, 20, "/srv/data", opts="ro,relatime"))
    assert drain(q) == rec(RO, 22, flags=NOW_RO) + rec(SETATTR, 22)
    kernel.change_mount(NS, mnt(22, 20, "/srv/data", opts="rw,relatime"))
    assert drain(q) == rec(RO, 22) + rec(SETATTR, 22)


def test_setattr_takes_is_now_ro_from_the_nosuid_bit_as_the_patch_does(kernel):
    """set_mount_attributes tests SB_RDONLY (1) against the new mnt_flags, where 1 is MNT_NOSUID."""
    q = watch(kernel, "", 22)
    kernel.change_mount(NS, mnt(22, 20, "/srv/data", opts="rw,nosuid,relatime"))
    assert drain(q) == rec(SETATTR, 22, flags=NOW_RO)


def test_superblock_remount_is_setattr_without_the_mounts_readonly(kernel):
    q = watch(kernel, "", 22)
    kernel.change_mount(NS, mnt(22, 20, "/srv/data", opts="ro,relatime", sb="ro"))
    assert drain(q) == rec(SETATTR, 22)


def test_an_unchanged_table_posts_nothing(kernel):
    q = watch(kernel, "", 20)
    kernel.mount_resync(NS, ROOT_TABLE)
    assert drain(q) == b""


def test_namespaces_are_apart(kernel):
    kernel.mount_resync(OTHER_NS, [mnt(40, 2, "/", 8)])
    mine = watch(kernel, "", 20)
    theirs = watch(kernel, "", 40, ns=OTHER_NS)
    kernel.attach_mounts(OTHER_NS, [mnt(41, 40, "/mnt")])
    assert drain(mine) == b""
    assert drain(theirs) == rec(NEW, 40, 41)


def test_watch_checks_in_the_patchs_order(kernel):
    for watch_id, at_flags in ((256, 0), (-2, 0), (1, abi.AT_SYMLINK_NOFOLLOW), (1, 1)):
        assert errno_of(kernel.check_watch_args, watch_id, at_flags) == errno.EINVAL
    kernel.check_watch_args(0, abi.AT_NO_AUTOMOUNT | abi.AT_EMPTY_PATH)
    target = MountTarget(NS, 20, "", 108)
    assert errno_of(kernel.watch_mount, ALICE, target, None, 1) == errno.EINVAL  # get_watch_queue
    q = new_queue()
    kernel.watch_mount(ALICE, target, q, 1)
    assert errno_of(kernel.watch_mount, ALICE, target, q, 2) == errno.EBUSY
    assert errno_of(kernel.watch_mount, ALICE, MountTarget(NS, 20, "srv", 108), q, -1) == errno.EBADSLT
    assert errno_of(kernel.watch_mount, ALICE, MountTarget(NS, 99, "", 108), q, 1) == errno.ENOENT


def test_unwatch_posts_a_removal_and_charges_are_refunded(kernel):
    q = watch(kernel, "srv", 20, tag=7)
    assert kernel.statistics()["watches"] == 1
    kernel.watch_mount(ALICE, MountTarget(NS, 20, "srv", 108), q, -1)
    assert list(parse(drain(q))) == [Removal(20, 7, 16 | 7 << 8)]
    assert kernel.statistics()["watches"] == 0
    assert kernel.namespace_watch_count(NS) == 0


def test_watches_past_the_limit_are_eagain(kernel):
    q = new_queue()
    kernel.watch_mount(BOB, MountTarget(NS, 20, "", 108), q, 1, 1)
    assert errno_of(kernel.watch_mount, BOB, MountTarget(NS, 20, "srv", 108), q, 1, 1) == errno.EAGAIN


def test_filters_on_the_mount_type_and_loss(kernel):
    from wqfs.kernel import Filter, TypeFilter, pack_filter
    q = watch(kernel, "", 20)
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(2, subtype_filter=(0xFFFFFFFF & ~(1 << MFROM),))])))
    kernel.attach_mounts(NS, [mnt(30, 20, "/a")])
    kernel.move_mount(NS, mnt(30, 20, "/b"))
    assert [r.subtype for r in parse(drain(q))] == [NEW, MTO]
    small = watch(kernel, "", 22, q=new_queue(1))
    for i in range(100):
        kernel.attach_mounts(NS, [mnt(100 + i, 22, f"/srv/data/{i}")])
    kinds = [type(r).__name__ for r in parse(drain(small))]
    assert kinds[-1] == "Loss" and set(kinds[:-1]) == {"MountNotification"} and len(kinds) < 100


def test_the_namespace_dropped_removes_every_watch(kernel):
    q = watch(kernel, "", 20, tag=1)
    watch(kernel, "", 22, tag=2, q=q)
    kernel.drop_mount_namespace(NS)
    assert sorted(r.id for r in parse(drain(q))) == [20, 22]
    assert not kernel.mount_namespace_known(NS)
    assert kernel.statistics()["watches"] == 0


def test_the_walk_ends_on_a_table_with_a_loop(kernel):
    """A host table caught mid-change may name a parent cycle: the walk stops, nothing hangs."""
    kernel.mount_resync(OTHER_NS, [mnt(50, 51, "/x"), mnt(51, 50, "/x")])
    q = watch(kernel, "", 50, ns=OTHER_NS)
    kernel.change_mount(OTHER_NS, mnt(51, 50, "/x", opts="ro"))
    assert [r.subtype for r in parse(drain(q))] == [RO, SETATTR]


def test_record_codec(kernel):
    q = watch(kernel, "", 20, tag=9)
    kernel.attach_mounts(NS, [mnt(30, 20, "/a")])
    [r] = parse(drain(q))
    assert r == MountNotification(NEW, 20, 30, 9, 24 | 9 << 8)
    assert r.name == "new_mount" and not r.in_subtree and not r.is_now_ro


def test_path_below_gives_the_path_inside_a_mount():
    assert path_below("/", "/") == "" and path_below("/a/b", "/") == "a/b"
    assert path_below("/a", "/a") == "" and path_below("/a/b/c", "/a") == "b/c"
    assert path_below("/ab", "/a") is None and path_below("/", "/a") is None
