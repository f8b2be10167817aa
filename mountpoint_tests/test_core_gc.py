"""Unit tests of security/keys/gc.c: a key is freed, and its watches get their removal records
(key_gc_unused_keys, remove_watch_list), only when nothing links it any more; revoked and
expired keys linger for key_gc_delay, invalidated ones go at once; a keyring goes with its
contents.
"""
from __future__ import annotations

import errno

import pytest

from corelib import (ALICE, INVAL, REVOKED, SETATTR, UNLINKED, Clock, drain, errno_of, key_rec, members,
                     new_kernel, new_queue, removal_rec, ses)

from wqfs import abi
from wqfs.kernel import Kernel, WatchQueue


# ---------------------------------------------------------------- freeing

def test_destruction_removal_only_after_collect(kernel: Kernel, clock: Clock) -> None:
    q1, q2 = new_queue(), new_queue()
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q1, 3)
    kernel.watch_key(ALICE, key, q2, 4)
    kernel.watch_key(ALICE, ring, q1, 5)
    kernel.unlink(ALICE, key, ring)
    assert drain(q1) == key_rec(UNLINKED, ring, key, 5)
    assert drain(q2) == b""
    assert key in kernel.keys
    kernel.collect()
    assert drain(q1) == removal_rec(key, 3)
    assert drain(q2) == removal_rec(key, 4)
    assert key not in kernel.keys
    assert errno_of(kernel.describe, ALICE, key) == errno.ENOKEY
    kernel.collect()
    assert drain(q1) == b"" and drain(q2) == b""


def test_key_linked_elsewhere_is_not_destroyed(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    other = kernel.add_key(ALICE, "keyring", "o", b"", ring)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.link(ALICE, key, other)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.unlink(ALICE, key, ring)
    kernel.collect()
    assert drain(q) == b""
    assert key in kernel.keys


def test_keyring_destruction_posts_only_removals(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    member = kernel.add_key(ALICE, "user", "m", b"v", sub)
    kernel.watch_key(ALICE, sub, q, 1)
    kernel.watch_key(ALICE, member, q, 2)
    kernel.unlink(ALICE, sub, ring)
    assert drain(q) == b""
    kernel.collect()
    data = drain(q)
    # no CLEARED/UNLINKED for the contents; the ring and its only-linked member both go
    assert sorted([data[:16], data[16:]]) == sorted([removal_rec(sub, 1), removal_rec(member, 2)])
    assert len(data) == 32


def test_session_end_destroys_its_keyring_with_removal(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.watch_key(ALICE, key, q, 2)
    kernel.owner_gone("session", ALICE.session)
    assert drain(q) == b""
    kernel.collect()
    data = drain(q)
    assert sorted([data[:16], data[16:]]) == sorted([removal_rec(ring, 1), removal_rec(key, 2)])


# ---------------------------------------------------------------- the delay

def test_revoked_key_removed_only_after_gc_delay(kernel: Kernel, q: WatchQueue, clock: Clock) -> None:
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.revoke(ALICE, key)
    assert drain(q) == key_rec(REVOKED, key, 0, 1)
    kernel.collect()
    clock.t += abi.KEY_GC_DELAY - 1
    kernel.collect()
    assert drain(q) == b""
    assert key in kernel.keys
    clock.t += 2
    kernel.collect()
    # GC unlinks it silently (no UNLINKED on the keyring) and frees it
    assert drain(q) == removal_rec(key, 1)
    assert members(kernel, ALICE, ring) == []


def test_gc_delay_is_configurable(clock: Clock, q: WatchQueue) -> None:
    kernel = new_kernel(clock, gc_delay=10.0, seed=99)
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.revoke(ALICE, key)
    drain(q)
    clock.t += 9
    kernel.collect()
    assert drain(q) == b""
    clock.t += 2
    kernel.collect()
    assert drain(q) == removal_rec(key, 1)


def test_invalidated_key_collected_promptly_without_unlinked(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.invalidate(ALICE, key)
    assert drain(q) == key_rec(INVAL, key, 0, 1)
    kernel.collect()
    assert drain(q) == removal_rec(key, 1)
    assert members(kernel, ALICE, ring) == []


def test_expiry_posts_nothing_until_gc(kernel: Kernel, q: WatchQueue, clock: Clock) -> None:
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.set_timeout(ALICE, key, 5)
    assert drain(q) == key_rec(SETATTR, key, 0, 1)
    clock.t += 6
    kernel.collect()
    assert drain(q) == b""
    clock.t += abi.KEY_GC_DELAY
    kernel.collect()
    assert drain(q) == removal_rec(key, 1)


# ---------------------------------------------------------------- RCU grace periods

GRACE = abi.RCU_GRACE_PERIOD


def rcu_kernel(clock: Clock) -> Kernel:
    """A kernel with a distribution kernel's grace periods (the daemon's default)."""
    return new_kernel(clock, rcu_grace=GRACE)


def test_after_the_last_unlink_the_key_lives_one_grace_period(clock: Clock) -> None:
    """keyring_free_object's key_put runs in an RCU callback: until then the key is found by
    serial and may be linked again, and a read right after the unlink has UNLINKED alone."""
    kernel, q = rcu_kernel(clock), new_queue()
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.setperm(ALICE, key, 0x3f110000)  # its owner may link it without possessing it
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.unlink(ALICE, key, ring)
    assert kernel.collect() == pytest.approx(GRACE)  # the next pass: when the grace period ends
    assert drain(q) == key_rec(UNLINKED, ring, key, 2)
    assert kernel.describe(ALICE, key).startswith("user;")
    kernel.link(ALICE, key, ring)  # relinked in time: it is never freed
    clock.t += 3 * GRACE
    assert kernel.collect() is None
    assert drain(q) == key_rec(abi.NOTIFY_KEY_LINKED, ring, key, 2)
    assert members(kernel, ALICE, ring) == [key]


def test_an_unreferenced_key_is_unseen_then_freed_after_synchronize_rcu(clock: Clock) -> None:
    """Grace one: the link's reference goes and lookups fail (refcount_inc_not_zero); grace two:
    key_garbage_collector's synchronize_rcu returns and the removal record is posted."""
    kernel, q = rcu_kernel(clock), new_queue()
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.unlink(ALICE, key, ring)
    clock.t += GRACE
    assert kernel.collect() == pytest.approx(GRACE)
    assert errno_of(kernel.describe, ALICE, key) == errno.ENOKEY
    assert errno_of(kernel.link, ALICE, key, ring) == errno.ENOKEY
    assert drain(q) == b""
    clock.t += GRACE
    assert kernel.collect() is None
    assert drain(q) == removal_rec(key, 1)
    assert key not in kernel.keys


def test_invalidate_unlinks_at_the_next_pass_then_frees_after_two_grace_periods(clock: Clock) -> None:
    kernel, q = rcu_kernel(clock), new_queue()
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.invalidate(ALICE, key)
    assert drain(q) == key_rec(INVAL, key, 0, 1)
    kernel.collect()  # keyring_gc: the link goes now, its reference after a grace period
    assert members(kernel, ALICE, ring) == []
    clock.t += GRACE
    kernel.collect()
    assert drain(q) == b""
    clock.t += GRACE
    kernel.collect()
    assert drain(q) == removal_rec(key, 1)


def test_a_session_keyring_outlives_its_session_by_the_credentials_grace(clock: Clock) -> None:
    """put_cred frees a credential in an RCU callback, and with it its session keyring's ref."""
    kernel, q = rcu_kernel(clock), new_queue()
    ring = ses(kernel)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.owner_gone("session", ALICE.session)
    kernel.collect()
    assert kernel.describe(ALICE, ring).startswith("keyring;")
    for _ in range(2):
        assert drain(q) == b""
        clock.t += GRACE
        kernel.collect()
    assert drain(q) == removal_rec(ring, 1)
