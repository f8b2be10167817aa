"""Unit tests of kernel/watch_queue.c as the keys use it: which operation posts which record
on which object (the notify_key calls of security/keys/*.c), one copy per watch
(__post_watch_notification), adding and removing watches through KEYCTL_WATCH_KEY (EBUSY,
EAGAIN, EBADSLT), removal records (remove_watch_from_object) and releasing a queue
(watch_queue_clear). What KEYCTL_WATCH_KEY checks first is in test_core_keyctl.py.
"""
from __future__ import annotations

import errno
import struct
from typing import Callable

import pytest

from corelib import (ALICE, BOB, CLEARED, INVAL, LINKED, LOSS, NOWHERE, REVOKED, SETATTR, UNLINKED, UPD,
                     drain, errno_of, key_rec, members, new_queue, removal_rec, ses)

from wqfs import abi
from wqfs.kernel import Kernel, WatchQueue


# ---------------------------------------------------------------- which operation posts what, where

KEY_TAG, RING_TAG, SUB_TAG = 1, 2, 3  # the watches' tags on the key k, its keyring and a keyring sub

# A row is an operation on the kernel and two serials, and the records it must leave in the queue,
# from the same two serials: (key, ring) in the first table, (sub, key) in the second.
Op = Callable[[Kernel, int, int], None]
Expected = Callable[[int, int], bytes]


def update(kernel: Kernel, key: int, ring: int) -> None:
    """key_update (KEYCTL_UPDATE): UPDATED on the key, nothing on its keyring (LTP wqueue01)."""
    kernel.update(ALICE, key, b"2")


def add_key_of_an_existing_key(kernel: Kernel, key: int, ring: int) -> None:
    """key_create_or_update finds the key in the keyring and updates it: __key_update."""
    assert kernel.add_key(ALICE, "user", "k", b"2", ring) == key
    assert kernel.read(ALICE, key) == b"2"


def link_when_already_linked(kernel: Kernel, key: int, ring: int) -> None:
    """__key_link posts LINKED even when the link was there already (LTP wqueue04)."""
    kernel.link(ALICE, key, ring)
    assert members(kernel, ALICE, ring) == [key]


def unlink(kernel: Kernel, key: int, ring: int) -> None:
    """__key_unlink: UNLINKED on the keyring, aux the key (LTP wqueue02)."""
    kernel.unlink(ALICE, key, ring)
    assert members(kernel, ALICE, ring) == []


def move_to_the_same_keyring(kernel: Kernel, key: int, ring: int) -> None:
    """key_move returns 0 before doing anything when from == to."""
    kernel.move(ALICE, key, ring, ring)
    assert members(kernel, ALICE, ring) == [key]


def revoke_twice(kernel: Kernel, key: int, ring: int) -> None:
    """key_revoke posts only the first time; the lookup then fails (LTP wqueue03)."""
    kernel.revoke(ALICE, key)
    assert errno_of(kernel.revoke, ALICE, key) == errno.EKEYREVOKED


def invalidate_twice(kernel: Kernel, key: int, ring: int) -> None:
    """key_invalidate posts only the first time; the lookup then fails (LTP wqueue05)."""
    kernel.invalidate(ALICE, key)
    assert errno_of(kernel.invalidate, ALICE, key) == errno.ENOKEY


def setperm_unchanged_twice(kernel: Kernel, key: int, ring: int) -> None:
    """keyctl_setperm_key posts even if the permissions do not change (LTP wqueue07)."""
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL | abi.KEY_USR_ALL)
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL | abi.KEY_USR_ALL)


def chown_minus_one_minus_one(kernel: Kernel, key: int, ring: int) -> None:
    """keyctl_chown_key: uid == gid == -1 returns 0 before any lookup, and posts nothing."""
    kernel.chown(ALICE, key, -1, -1)
    kernel.chown(ALICE, NOWHERE, -1, -1)


def chown_to_the_current_owner_and_group(kernel: Kernel, key: int, ring: int) -> None:
    """keyctl_chown_key posts SETATTR even when nothing changes."""
    kernel.chown(ALICE, key, 1000, -1)
    kernel.chown(ALICE, key, -1, 1000)


def set_timeout_including_zero(kernel: Kernel, key: int, ring: int) -> None:
    """keyctl_set_timeout posts SETATTR, for a timeout of 0 (none) too."""
    kernel.set_timeout(ALICE, key, 100)
    kernel.set_timeout(ALICE, key, 0)


def row(op: Op, expected: Expected) -> object:
    """A table row named after its operation."""
    return pytest.param(op, expected, id=op.__name__)


@pytest.mark.parametrize("op, expected", [
    row(update, lambda key, ring: key_rec(UPD, key, 0, KEY_TAG)),
    row(add_key_of_an_existing_key, lambda key, ring: key_rec(UPD, key, 0, KEY_TAG)),
    row(link_when_already_linked, lambda key, ring: key_rec(LINKED, ring, key, RING_TAG)),
    row(unlink, lambda key, ring: key_rec(UNLINKED, ring, key, RING_TAG)),
    row(move_to_the_same_keyring, lambda key, ring: b""),
    row(revoke_twice, lambda key, ring: key_rec(REVOKED, key, 0, KEY_TAG)),
    row(invalidate_twice, lambda key, ring: key_rec(INVAL, key, 0, KEY_TAG)),
    row(setperm_unchanged_twice, lambda key, ring: key_rec(SETATTR, key, 0, KEY_TAG) * 2),
    row(chown_minus_one_minus_one, lambda key, ring: b""),
    row(chown_to_the_current_owner_and_group, lambda key, ring: key_rec(SETATTR, key, 0, KEY_TAG) * 2),
    row(set_timeout_including_zero, lambda key, ring: key_rec(SETATTR, key, 0, KEY_TAG) * 2),
])
def test_an_operation_on_a_key_posts_on_the_key_or_its_keyring(kernel: Kernel, q: WatchQueue, op: Op,
                                                                 expected: Expected) -> None:
    """A user key k in the session keyring, both watched: each record reaches only the watch on
    the object it is posted on (notify_key, security/keys/internal.h)."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, KEY_TAG)
    kernel.watch_key(ALICE, ring, q, RING_TAG)
    op(kernel, key, ring)
    assert drain(q) == expected(key, ring)


def clear_an_empty_keyring_twice(kernel: Kernel, sub: int, key: int) -> None:
    """keyring_clear posts CLEARED even when there was nothing to clear."""
    kernel.clear(ALICE, sub)
    kernel.clear(ALICE, sub)


def restrict(kernel: Kernel, sub: int, key: int) -> None:
    """keyring_restrict posts SETATTR on the keyring when it succeeds."""
    kernel.restrict_keyring(ALICE, sub, None, None)


def link_into_another_keyring(kernel: Kernel, sub: int, key: int) -> None:
    """__key_link posts on the keyring linked into, not on the keyring the key is also in."""
    kernel.link(ALICE, key, sub)


@pytest.mark.parametrize("op, expected", [
    row(clear_an_empty_keyring_twice, lambda sub, key: key_rec(CLEARED, sub, 0, SUB_TAG) * 2),
    row(restrict, lambda sub, key: key_rec(SETATTR, sub, 0, SUB_TAG)),
    row(link_into_another_keyring, lambda sub, key: key_rec(LINKED, sub, key, SUB_TAG)),
])
def test_an_operation_on_a_keyring_posts_on_that_keyring(kernel: Kernel, q: WatchQueue, op: Op,
                                                         expected: Expected) -> None:
    """An empty keyring sub and a user key k in the session keyring, all three watched: only
    sub's watch sees what is done to sub."""
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, KEY_TAG)
    kernel.watch_key(ALICE, ring, q, RING_TAG)
    kernel.watch_key(ALICE, sub, q, SUB_TAG)
    op(kernel, sub, key)
    assert drain(q) == expected(sub, key)


def test_add_key_posts_linked_on_the_keyring_only(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    kernel.watch_key(ALICE, abi.KEY_SPEC_SESSION_KEYRING, q, 1)
    key = kernel.add_key(ALICE, "user", "foo", b"bar", abi.KEY_SPEC_SESSION_KEYRING)
    data = drain(q)
    assert data == key_rec(LINKED, ring, key, 1)
    assert struct.unpack_from("<I", data, 4)[0] == 0x110


def test_move_posts_unlinked_then_linked(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    src = kernel.add_key(ALICE, "keyring", "src", b"", ring)
    dst = kernel.add_key(ALICE, "keyring", "dst", b"", ring)
    key = kernel.add_key(ALICE, "user", "k", b"1", src)
    kernel.watch_key(ALICE, dst, q, 2)
    kernel.watch_key(ALICE, src, q, 1)
    kernel.watch_key(ALICE, key, q, 3)
    kernel.move(ALICE, key, src, dst)
    assert drain(q) == key_rec(UNLINKED, src, key, 1) + key_rec(LINKED, dst, key, 2)
    assert members(kernel, ALICE, src) == []
    assert members(kernel, ALICE, dst) == [key]
    kernel.collect()
    assert drain(q) == b""  # the key survived the move


def test_clear_posts_cleared_without_unlinked(kernel: Kernel, q: WatchQueue) -> None:
    """LTP wqueue06."""
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    keys = [kernel.add_key(ALICE, "user", f"k{i}", b"v", sub) for i in range(3)]
    kernel.watch_key(ALICE, sub, q, 1)
    kernel.watch_key(ALICE, keys[0], q, 2)
    kernel.clear(ALICE, sub)
    assert drain(q) == key_rec(CLEARED, sub, 0, 1)
    assert members(kernel, ALICE, sub) == []
    # the member is destroyed later by GC: only then its watch gets a removal
    kernel.collect()
    assert drain(q) == removal_rec(keys[0], 2)


def test_revoke_keyring_empties_it_silently(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    member = kernel.add_key(ALICE, "user", "m", b"v", sub)
    kernel.watch_key(ALICE, sub, q, 1)
    kernel.watch_key(ALICE, member, q, 2)
    kernel.revoke(ALICE, sub)
    assert drain(q) == key_rec(REVOKED, sub, 0, 1)
    assert kernel.keys[sub].members == {}


def test_search_with_destination_links_and_without_posts_nothing(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    src = kernel.add_key(ALICE, "keyring", "src", b"", ring)
    dst = kernel.add_key(ALICE, "keyring", "dst", b"", ring)
    key = kernel.add_key(ALICE, "user", "needle", b"v", src)
    for i, serial in enumerate((ring, src, dst, key)):
        kernel.watch_key(ALICE, serial, q, i + 1)
    assert kernel.search(ALICE, src, "user", "needle") == key
    assert drain(q) == b""
    assert kernel.search(ALICE, src, "user", "needle", dst) == key
    assert drain(q) == key_rec(LINKED, dst, key, 3)


def test_no_records_for_read_describe_search_get_security(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.watch_key(ALICE, key, q, 2)
    kernel.read(ALICE, key)
    kernel.read(ALICE, ring)
    kernel.describe(ALICE, key)
    kernel.describe(ALICE, ring)
    kernel.search(ALICE, ring, "user", "k")
    kernel.get_security(ALICE, key)
    kernel.collect()
    assert drain(q) == b""


def test_keyring_watch_does_not_see_member_events(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    key = kernel.add_key(ALICE, "user", "k", b"v", sub)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.update(ALICE, key, b"w")
    kernel.setperm(ALICE, key, 0x3F3F0000)
    kernel.add_key(ALICE, "user", "k2", b"v", sub)  # nested keyring: no recursion
    kernel.revoke(ALICE, key)
    assert drain(q) == b""


def test_two_queues_on_one_key_each_get_their_own_copy(kernel: Kernel) -> None:
    q1, q2 = new_queue(), new_queue(1)
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q1, 0x11)
    kernel.watch_key(ALICE, key, q2, 0xFF)
    kernel.update(ALICE, key, b"w")
    assert drain(q1) == key_rec(UPD, key, 0, 0x11)
    assert drain(q2) == key_rec(UPD, key, 0, 0xFF)


def test_records_posted_synchronously_in_fifo_order(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.update(ALICE, key, b"1")
    assert q.nbytes == 16
    kernel.setperm(ALICE, key, 0x3F3F0000)
    kernel.link(ALICE, key, ring)
    kernel.set_timeout(ALICE, key, 0)
    kernel.invalidate(ALICE, key)
    assert drain(q) == (key_rec(UPD, key, 0, 1) + key_rec(SETATTR, key, 0, 1)
                        + key_rec(LINKED, ring, key, 2) + key_rec(SETATTR, key, 0, 1)
                        + key_rec(INVAL, key, 0, 1))


# ---------------------------------------------------------------- adding and removing watches

def test_duplicate_watch_is_ebusy_whatever_the_tag(kernel: Kernel, q: WatchQueue) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, 1)
    assert errno_of(kernel.watch_key, ALICE, key, q, 1) == errno.EBUSY
    assert errno_of(kernel.watch_key, ALICE, key, q, 2) == errno.EBUSY
    kernel.watch_key(ALICE, key, new_queue(), 1)  # another queue is fine
    kernel.update(ALICE, key, b"w")
    assert drain(q) == key_rec(UPD, key, 0, 1)    # still the first tag, one copy


def test_retag_by_removing_and_adding(kernel: Kernel, q: WatchQueue) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, key, q, -1)
    kernel.watch_key(ALICE, key, q, 2)
    kernel.update(ALICE, key, b"w")
    assert drain(q) == removal_rec(key, 1) + key_rec(UPD, key, 0, 2)


def test_watch_limit_is_eagain_per_user(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    k = [kernel.add_key(ALICE, "user", f"k{i}", b"v", ring) for i in range(4)]
    kernel.setperm(ALICE, k[3], 0x3F01003F)
    kernel.watch_key(ALICE, k[0], q, 1, watch_limit=2)
    kernel.watch_key(ALICE, k[1], new_queue(), 1, watch_limit=2)
    assert errno_of(kernel.watch_key, ALICE, k[2], q, 1, watch_limit=2) == errno.EAGAIN
    assert errno_of(kernel.watch_key, ALICE, k[2], new_queue(), 1, watch_limit=2) == errno.EAGAIN
    # EBUSY is checked before the count
    assert errno_of(kernel.watch_key, ALICE, k[0], q, 1, watch_limit=2) == errno.EBUSY
    # another user has their own count
    kernel.watch_key(BOB, k[3], q, 1, watch_limit=2)
    # a removed watch is uncounted
    kernel.watch_key(ALICE, k[0], q, -1, watch_limit=2)
    kernel.watch_key(ALICE, k[2], q, 3, watch_limit=2)
    kernel.update(ALICE, k[2], b"w")
    assert drain(q) == removal_rec(k[0], 1) + key_rec(UPD, k[2], 0, 3)


def test_removing_a_watch_that_does_not_exist_is_ebadslt(kernel: Kernel, q: WatchQueue) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.watch_key, ALICE, key, q, -1) == errno.EBADSLT
    other = new_queue()
    kernel.watch_key(ALICE, key, other, 1)
    assert errno_of(kernel.watch_key, ALICE, key, q, -1) == errno.EBADSLT
    kernel.watch_key(ALICE, key, other, -1)
    assert errno_of(kernel.watch_key, ALICE, key, other, -1) == errno.EBADSLT
    assert drain(q) == b""
    assert drain(other) == removal_rec(key, 1)


# ---------------------------------------------------------------- removal records

def test_unwatch_posts_one_removal_synchronously(kernel: Kernel, q: WatchQueue) -> None:
    """LTP wqueue08."""
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    other = new_queue()
    kernel.watch_key(ALICE, key, q, 0x2A)
    kernel.watch_key(ALICE, key, other, 3)
    kernel.watch_key(ALICE, key, q, -1)
    data = drain(q)
    assert data == removal_rec(key, 0x2A)
    assert len(data) == 16
    assert drain(other) == b""
    kernel.update(ALICE, key, b"w")
    assert drain(q) == b""
    assert drain(other) == key_rec(UPD, key, 0, 3)


def test_removal_is_lost_when_the_queue_is_full(kernel: Kernel) -> None:
    q = new_queue(1)
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, 1)
    for _ in range(32):
        kernel.update(ALICE, key, b"w")
    kernel.watch_key(ALICE, key, q, -1)
    assert drain(q) == key_rec(UPD, key, 0, 1) * 32 + LOSS


def test_release_queue_detaches_watches_silently(kernel: Kernel) -> None:
    q1, q2 = new_queue(), new_queue()
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q1, 1, watch_limit=3)
    kernel.watch_key(ALICE, ring, q1, 2, watch_limit=3)
    kernel.watch_key(ALICE, key, q2, 3, watch_limit=3)
    kernel.release_queue(q1)
    assert drain(q1) == b""
    assert [w.queue for w in kernel.keys[key].watchers] == [q2]
    assert kernel.keys[ring].watchers == []
    kernel.update(ALICE, key, b"w")
    kernel.unlink(ALICE, key, ring)
    kernel.collect()
    assert drain(q1) == b""
    assert drain(q2) == key_rec(UPD, key, 0, 3) + removal_rec(key, 3)
    # the released queue can no longer be watched with, and its watches are uncounted
    assert errno_of(kernel.watch_key, ALICE, ring, q1, 1) == errno.EINVAL
    q3 = new_queue()
    kernel.watch_key(ALICE, ring, q3, 1, watch_limit=2)
    kernel.watch_key(ALICE, abi.KEY_SPEC_USER_KEYRING, q3, 1, watch_limit=2)
