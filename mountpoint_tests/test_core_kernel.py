"""Unit tests of the emulated kernel (wqfs/kernel): which keyctl operation posts which record
(reference §3.2), KEYCTL_WATCH_KEY and its error order (§3.1, §8.6), removal records (§2.6),
garbage collection, permissions (§4.1, §4.2), special keyrings (§4.3), quotas (§3.3).

Records are compared byte for byte with struct-built expectations. Time is a fake clock.
"""
from __future__ import annotations

import errno
import struct

import pytest

from corelib import LOSS, drain, errno_of, key_rec, removal_rec

from wqfs import abi
from wqfs.kernel import Cred, Kernel, WatchQueue, describe_key
from wqfs.kernel.key import KeyState
from wqfs.kernel.watch import Watch, attach

INST, UPD, LINKED, UNLINKED, CLEARED, REVOKED, INVAL, SETATTR = range(8)

ALICE = Cred(1000, 1000, thread="ta", process="pa", session="sa")
BOB = Cred(1001, 1001, thread="tb", process="pb", session="sb")
ROOT = Cred(0, 0, thread="tr", process="pr", session="sr")
NOWHERE = 0x7FFFFFF0  # a serial that is never allocated with the seeds used here


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kernel(clock: Clock) -> Kernel:
    k = Kernel(gc_delay=300.0, clock=clock, seed=12345)
    assert NOWHERE not in k.keys
    return k


def new_queue(size: int = 256) -> WatchQueue:
    q = WatchQueue()
    q.set_size(size)
    return q


@pytest.fixture
def q() -> WatchQueue:
    return new_queue()


def members(kernel: Kernel, cred: Cred, ring: int) -> list[int]:
    data = kernel.read(cred, ring)
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


def ses(kernel: Kernel, cred: Cred = ALICE) -> int:
    return kernel.get_keyring_id(cred, abi.KEY_SPEC_SESSION_KEYRING, True)


def force_watch(kernel: Kernel, q: WatchQueue, serial: int, tag: int, uid: int = 1000) -> None:
    """Watch a key that KEYCTL_WATCH_KEY cannot reach yet (under construction)."""
    attach(Watch(q, kernel.keys[serial], tag, uid))


# ======================================================================= §3.2 rows

def test_add_key_posts_linked_on_the_keyring_only(kernel, q):
    ring = ses(kernel)
    kernel.watch_key(ALICE, abi.KEY_SPEC_SESSION_KEYRING, q, 1)
    key = kernel.add_key(ALICE, "user", "foo", b"bar", abi.KEY_SPEC_SESSION_KEYRING)
    data = drain(q)
    assert data == key_rec(LINKED, ring, key, 1)
    assert struct.unpack_from("<I", data, 4)[0] == 0x110


def test_add_key_matching_existing_posts_updated_on_the_key_only(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "foo", b"bar", ring)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.watch_key(ALICE, key, q, 1)
    again = kernel.add_key(ALICE, "user", "foo", b"baz", ring)
    assert again == key
    assert drain(q) == key_rec(UPD, key, 0, 1)
    assert kernel.read(ALICE, key) == b"baz"


def test_add_keyring_with_existing_name_replaces_and_posts_only_linked(kernel, q):
    ring = ses(kernel)
    old = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.watch_key(ALICE, old, q, 2)
    new = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    assert new != old
    assert drain(q) == key_rec(LINKED, ring, new, 1)
    assert members(kernel, ALICE, ring) == [new]


def test_update_posts_updated_on_the_key_not_on_its_keyring(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.update(ALICE, key, b"2")
    assert drain(q) == key_rec(UPD, key, 0, 1)


def test_link_posts_linked_even_when_already_linked(kernel, q):
    """LTP wqueue04."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.link(ALICE, key, ring)
    assert drain(q) == key_rec(LINKED, ring, key, 2)
    assert members(kernel, ALICE, ring) == [key]


def test_link_into_another_keyring(kernel, q):
    ring = ses(kernel)
    other = kernel.add_key(ALICE, "keyring", "other", b"", ring)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, other, q, 9)
    kernel.link(ALICE, key, other)
    assert drain(q) == key_rec(LINKED, other, key, 9)


def test_link_displacing_same_description_posts_no_unlinked(kernel, q):
    ring = ses(kernel)
    a = kernel.add_key(ALICE, "keyring", "a", b"", ring)
    b = kernel.add_key(ALICE, "keyring", "b", b"", ring)
    k1 = kernel.add_key(ALICE, "user", "same", b"1", a)
    k2 = kernel.add_key(ALICE, "user", "same", b"2", b)
    kernel.watch_key(ALICE, a, q, 1)
    kernel.link(ALICE, k2, a)
    assert drain(q) == key_rec(LINKED, a, k2, 1)
    assert members(kernel, ALICE, a) == [k2]
    assert k1 != k2


def test_unlink_posts_unlinked_on_the_keyring(kernel, q):
    """LTP wqueue02."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.unlink(ALICE, key, ring)
    assert drain(q) == key_rec(UNLINKED, ring, key, 2)
    assert members(kernel, ALICE, ring) == []


def test_move_posts_unlinked_then_linked(kernel, q):
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


def test_move_to_the_same_keyring_posts_nothing(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.move(ALICE, key, ring, ring)
    assert drain(q) == b""
    assert members(kernel, ALICE, ring) == [key]


def test_clear_posts_cleared_without_unlinked(kernel, q):
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


def test_clear_of_an_empty_keyring_still_posts(kernel, q):
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    kernel.watch_key(ALICE, sub, q, 1)
    kernel.clear(ALICE, sub)
    kernel.clear(ALICE, sub)
    assert drain(q) == key_rec(CLEARED, sub, 0, 1) * 2


def test_revoke_posts_once(kernel, q):
    """LTP wqueue03; revoking again posts nothing (and the lookup now fails)."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.revoke(ALICE, key)
    assert errno_of(kernel.revoke, ALICE, key) == errno.EKEYREVOKED
    assert drain(q) == key_rec(REVOKED, key, 0, 1)


def test_revoke_keyring_empties_it_silently(kernel, q):
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    member = kernel.add_key(ALICE, "user", "m", b"v", sub)
    kernel.watch_key(ALICE, sub, q, 1)
    kernel.watch_key(ALICE, member, q, 2)
    kernel.revoke(ALICE, sub)
    assert drain(q) == key_rec(REVOKED, sub, 0, 1)
    assert kernel.keys[sub].members == {}


def test_invalidate_posts_once(kernel, q):
    """LTP wqueue05."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.invalidate(ALICE, key)
    assert errno_of(kernel.invalidate, ALICE, key) == errno.ENOKEY
    assert drain(q) == key_rec(INVAL, key, 0, 1)


def test_setperm_posts_setattr_even_if_unchanged(kernel, q):
    """LTP wqueue07."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL | abi.KEY_USR_ALL)
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL | abi.KEY_USR_ALL)
    assert drain(q) == key_rec(SETATTR, key, 0, 1) * 2


def test_chown_minus_one_minus_one_is_a_silent_noop(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.chown(ALICE, key, -1, -1)
    kernel.chown(ALICE, NOWHERE, -1, -1)  # returns 0 before any lookup
    assert drain(q) == b""


def test_chown_to_current_owner_and_group_posts(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.chown(ALICE, key, 1000, -1)
    kernel.chown(ALICE, key, -1, 1000)
    assert drain(q) == key_rec(SETATTR, key, 0, 1) * 2


def test_chown_by_root_changes_owner_and_posts(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"1", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F01003F)  # let others (root here) SETATTR
    kernel.watch_key(ALICE, key, q, 1)
    kernel.chown(ROOT, key, 1001, 1001)
    assert drain(q) == key_rec(SETATTR, key, 0, 1)
    assert describe_key(kernel.keys[key]) == "user;1001;1001;3f01003f;k"


def test_set_timeout_posts_setattr_including_zero(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"1", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.set_timeout(ALICE, key, 100)
    kernel.set_timeout(ALICE, key, 0)
    assert drain(q) == key_rec(SETATTR, key, 0, 1) * 2


def test_restrict_keyring_posts_setattr_on_the_keyring(kernel, q):
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.watch_key(ALICE, sub, q, 2)
    kernel.restrict_keyring(ALICE, sub, None, None)
    assert drain(q) == key_rec(SETATTR, sub, 0, 2)


def test_construct_key_posts_linked_with_the_uninstantiated_serial(kernel, q):
    ring = ses(kernel)
    kernel.watch_key(ALICE, ring, q, 1)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    assert kernel.keys[key].state is KeyState.UNINSTANTIATED
    assert drain(q) == key_rec(LINKED, ring, key, 1)


def test_instantiate_posts_instantiated_then_linked(kernel, q):
    ring = ses(kernel)
    dest = kernel.add_key(ALICE, "keyring", "dest", b"", ring)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    force_watch(kernel, q, key, 3)
    kernel.watch_key(ALICE, dest, q, 4)
    kernel.instantiate(ALICE, key, b"payload", dest)
    assert drain(q) == key_rec(INST, key, 0, 3) + key_rec(LINKED, dest, key, 4)
    assert kernel.read(ALICE, key) == b"payload"


def test_negate_posts_instantiated_with_minus_enokey(kernel, q):
    ring = ses(kernel)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    force_watch(kernel, q, key, 1)
    kernel.negate(ALICE, key, 60)
    data = drain(q)
    assert data == key_rec(INST, key, -errno.ENOKEY, 1)
    assert struct.unpack_from("<I", data, 12)[0] == 0xFFFFFF82 == 4294967170
    assert kernel.keys[key].state is KeyState.NEGATIVE


def test_reject_posts_instantiated_with_minus_error_and_links(kernel, q):
    ring = ses(kernel)
    dest = kernel.add_key(ALICE, "keyring", "dest", b"", ring)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    force_watch(kernel, q, key, 1)
    kernel.watch_key(ALICE, dest, q, 2)
    kernel.reject(ALICE, key, 60, errno.EKEYREJECTED, dest)
    assert drain(q) == key_rec(INST, key, -errno.EKEYREJECTED, 1) + key_rec(LINKED, dest, key, 2)
    # the stored error is what a later lookup returns
    assert errno_of(kernel.watch_key, ALICE, key, q, 5) == errno.EKEYREJECTED


def test_negated_key_lookup_returns_enokey(kernel, q):
    ring = ses(kernel)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    kernel.negate(ALICE, key, 60)
    assert errno_of(kernel.watch_key, ALICE, key, q, 1) == errno.ENOKEY
    assert errno_of(kernel.update, ALICE, key, b"x") == errno.ENOKEY


def test_negative_key_lookup_gives_stored_error_even_after_expiry(kernel, q, clock):
    """§3.1: once construction is over, a negative key gives its stored error first
    (wait_for_key_construction reads the state before key_validate)."""
    ring = ses(kernel)
    neg = kernel.construct_key(ALICE, "user", "neg", ring)
    rej = kernel.construct_key(ALICE, "user", "rej", ring)
    kernel.negate(ALICE, neg, 5)
    kernel.reject(ALICE, rej, 5, errno.EKEYREJECTED)
    clock.t += 6
    assert errno_of(kernel.watch_key, ALICE, neg, q, 1) == errno.ENOKEY
    assert errno_of(kernel.watch_key, ALICE, rej, q, 1) == errno.EKEYREJECTED
    # a partial lookup (setperm) does not read the state: key_validate reports the expiry
    assert errno_of(kernel.setperm, ALICE, neg, 0x3F010000) == errno.EKEYEXPIRED
    assert drain(q) == b""


def test_add_key_over_a_negative_key_posts_updated_not_instantiated(kernel, q):
    ring = ses(kernel)
    key = kernel.construct_key(ALICE, "user", "k", ring)
    kernel.negate(ALICE, key, 60)
    force_watch(kernel, q, key, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    assert kernel.add_key(ALICE, "user", "k", b"now", ring) == key
    assert drain(q) == key_rec(UPD, key, 0, 1)
    assert kernel.keys[key].state is KeyState.POSITIVE


def test_search_with_destination_links_and_without_posts_nothing(kernel, q):
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


def test_request_key_with_destination_links(kernel, q):
    ring = ses(kernel)
    dst = kernel.add_key(ALICE, "keyring", "dst", b"", ring)
    key = kernel.add_key(ALICE, "user", "needle", b"v", ring)
    kernel.watch_key(ALICE, dst, q, 7)
    assert kernel.request_key(ALICE, "user", "needle", dst) == key
    assert drain(q) == key_rec(LINKED, dst, key, 7)


def test_a_match_that_cannot_be_returned_gives_its_error_not_enokey(kernel, clock):
    """keyring_search_iterator (checked against Linux 6.1 by conformance/lookup.c)."""
    ring = ses(kernel)
    holder = kernel.add_key(ALICE, "keyring", "holder", b"", ring)
    revoked = kernel.add_key(ALICE, "user", "revoked", b"v", ring)
    expired = kernel.add_key(ALICE, "user", "expired", b"v", ring)
    hidden = kernel.add_key(ALICE, "user", "hidden", b"v", ring)
    kernel.revoke(ALICE, revoked)
    kernel.set_timeout(ALICE, expired, 1)
    clock.t += 2
    kernel.setperm(ALICE, hidden, (abi.KEY_POS_ALL & ~abi.KEY_POS_SEARCH) | abi.KEY_USR_VIEW)
    assert errno_of(kernel.search, ALICE, ring, "user", "revoked") == errno.EKEYREVOKED
    assert errno_of(kernel.search, ALICE, ring, "user", "expired") == errno.EKEYEXPIRED
    assert errno_of(kernel.search, ALICE, ring, "user", "hidden") == errno.EACCES
    assert errno_of(kernel.search, ALICE, ring, "user", "absent") == errno.ENOKEY
    assert errno_of(kernel.request_key, ALICE, "user", "revoked") == errno.EKEYREVOKED
    assert errno_of(kernel.request_key, ALICE, "user", "expired") == errno.ENOKEY  # skips expired
    assert errno_of(kernel.request_key, ALICE, "user", "hidden") == errno.EACCES
    # a revoked keyring is not entered: what is inside is simply not found
    inside = kernel.add_key(ALICE, "user", "inside", b"v", holder)
    kernel.revoke(ALICE, holder)
    assert errno_of(kernel.search, ALICE, ring, "user", "inside") == errno.ENOKEY
    # unlink does not look at the key's state (KEY_NEED_UNLINK)
    kernel.unlink(ALICE, revoked, ring)
    kernel.unlink(ALICE, expired, ring)
    assert inside in kernel.keys


def test_request_key_combines_the_callers_keyrings_as_the_kernel_does(kernel):
    """search_cred_keyrings_rcu: a key found anywhere wins; else "nothing here" in one keyring
    outranks a revoked match in another (conformance/lookup.c, against Linux 6.1)."""
    session = ses(kernel)
    thread = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_THREAD_KEYRING, True)
    kernel.revoke(ALICE, kernel.add_key(ALICE, "user", "dup", b"t", thread))
    live = kernel.add_key(ALICE, "user", "dup", b"s", session)
    assert kernel.request_key(ALICE, "user", "dup") == live
    kernel.revoke(ALICE, kernel.add_key(ALICE, "user", "onlyrev", b"s", session))
    assert errno_of(kernel.request_key, ALICE, "user", "onlyrev") == errno.ENOKEY
    assert errno_of(kernel.search, ALICE, session, "user", "onlyrev") == errno.EKEYREVOKED
    assert errno_of(kernel.search, ALICE, thread, "user", "dup") == errno.EKEYREVOKED


def test_without_view_describe_is_eacces_but_get_security_enokey(kernel):
    """keyctl_get_security answers key_get_instantiation_authkey's ENOKEY where describe keeps
    EACCES (conformance/perms.c); the authority of a key under construction lets both view it."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "hidden", b"v", ring)
    kernel.setperm(ALICE, key, abi.KEY_USR_READ)
    assert errno_of(kernel.describe, ALICE, key) == errno.EACCES
    assert errno_of(kernel.get_security, ALICE, key) == errno.ENOKEY
    pending = kernel.construct_key(ALICE, "user", "pending", ring)
    kernel.setperm(ALICE, pending, 0)
    assert kernel.describe(ALICE, pending).endswith(";pending")
    assert kernel.get_security(ALICE, pending) == ""
    assert errno_of(kernel.describe, BOB, pending) == errno.EACCES  # not his to construct


def test_a_key_that_does_not_fit_the_quota_leaves_nothing_behind(kernel):
    """The keyring's link bytes are charged before the key (__key_link_begin): a payload one
    byte too big fails with EDQUOT, no key is left over, and the largest fitting payload is the
    kernel's (conformance/quota.c: 20000 - "_ses" 5 - link 4 - "big" 4 = 19987)."""
    carol = Cred(2002, 2002, thread="tc", process="pc", session="sc")
    ring = kernel.join_session_keyring(carol, None)
    before = set(kernel.keys)
    assert errno_of(kernel.add_key, carol, "user", "big", b"p" * 19988, ring) == errno.EDQUOT
    assert set(kernel.keys) == before
    assert kernel.add_key(carol, "user", "big", b"p" * 19987, ring) > 0
    assert errno_of(kernel.add_key, carol, "user", "b2", b"p", ring) == errno.EDQUOT


def test_keyrings_nest_at_most_six_deep_for_searches_possession_and_links(kernel):
    """KEYRING_SEARCH_MAX_DEPTH (conformance/links.c, against Linux 6.1)."""
    chain = [ses(kernel)]
    d8 = kernel.add_key(ALICE, "keyring", "d8", b"", chain[0])  # filled while shallow
    at8 = kernel.add_key(ALICE, "user", "at8", b"x", d8)
    for i in range(7):  # D1 in S ... D7 in D6
        chain.append(kernel.add_key(ALICE, "keyring", f"d{i + 1}", b"", chain[-1]))
    keys = [kernel.add_key(ALICE, "user", f"at{i}", b"x", chain[i]) for i in range(1, 8)] + [at8]
    kernel.link(ALICE, d8, chain[7])  # D7, 7 down, is possessed: a member of D6, 6 down
    kernel.unlink(ALICE, d8, chain[0])
    chain.append(d8)
    assert kernel.search(ALICE, chain[0], "user", "at6") == keys[5]  # in D6, the deepest entered
    assert errno_of(kernel.search, ALICE, chain[0], "user", "at7") == errno.ENOKEY
    assert errno_of(kernel.search, ALICE, chain[0], "user", "at8") == errno.ENOKEY
    assert errno_of(kernel.request_key, ALICE, "user", "at8") == errno.ENOKEY
    # D8 is no longer possessed, and its (possessor-only) WRITE is gone with it
    assert errno_of(kernel.add_key, ALICE, "keyring", "d9", b"", chain[8]) == errno.EACCES
    top = kernel.add_key(ALICE, "keyring", "top", b"", chain[0])
    assert errno_of(kernel.link, ALICE, chain[1], top) == errno.ELOOP  # D2..D8: 7 levels under D1
    kernel.link(ALICE, chain[2], top)  # D3..D8: 6 levels under D2
    assert errno_of(kernel.link, ALICE, chain[1], chain[5]) == errno.EDEADLK


def test_possession_goes_through_an_expired_keyring_but_not_a_revoked_one(kernel, clock):
    """The possession search has no state check: an expired keyring is entered; a revoked one
    is emptied and not entered (conformance/expiry.c)."""
    ring = ses(kernel)
    expiring = kernel.add_key(ALICE, "keyring", "e", b"", ring)
    revoked = kernel.add_key(ALICE, "keyring", "r", b"", ring)
    inner = kernel.add_key(ALICE, "user", "inner", b"v", expiring)
    inner2 = kernel.add_key(ALICE, "user", "inner2", b"v", revoked)
    for key in (inner, inner2):
        kernel.setperm(ALICE, key, abi.KEY_POS_ALL | abi.KEY_USR_VIEW)
    kernel.set_timeout(ALICE, expiring, 1)
    kernel.revoke(ALICE, revoked)
    clock.t += 2
    assert kernel.read(ALICE, inner) == b"v"
    assert errno_of(kernel.read, ALICE, inner2) == errno.EACCES


def test_only_the_operations_that_create_special_keyrings_do(kernel):
    """lookup_user_key's KEY_LOOKUP_CREATE, operation by operation (security/keys/keyctl.c;
    conformance/session.c): describe, get_security and update of @t do not make it."""
    for op in (kernel.describe, kernel.get_security):
        assert errno_of(op, ALICE, abi.KEY_SPEC_THREAD_KEYRING) == errno.ENOKEY
    assert errno_of(kernel.update, ALICE, abi.KEY_SPEC_THREAD_KEYRING, b"x") == errno.ENOKEY
    assert errno_of(kernel.get_keyring_id, ALICE, abi.KEY_SPEC_THREAD_KEYRING, False) == errno.ENOKEY
    kernel.setperm(ALICE, abi.KEY_SPEC_THREAD_KEYRING, abi.KEY_POS_ALL)  # setperm does make it
    assert kernel.describe(ALICE, abi.KEY_SPEC_THREAD_KEYRING).endswith(";_tid")


def test_joining_a_session_keyring_by_name(kernel):
    assert errno_of(kernel.join_session_keyring, ALICE, ".dot") == errno.EPERM
    assert errno_of(kernel.join_session_keyring, ALICE, "") == errno.EINVAL
    named = kernel.join_session_keyring(ALICE, "named")
    # find_keyring_by_name wants SEARCH without possession, which a joined keyring does not
    # give its owner: joining the name again makes another
    again = kernel.join_session_keyring(ALICE, "named")
    assert again not in (0, named)
    kernel.setperm(ALICE, again, abi.KEY_POS_ALL | abi.KEY_USR_ALL)
    assert kernel.join_session_keyring(ALICE, "named") == 0  # the session keyring already


def test_a_keyring_is_read_in_whole_serials(kernel):
    """keyring_read: EINVAL for a buffer that is no multiple of 4 (conformance/payload.c)."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    assert errno_of(kernel.read, ALICE, ring, 2) == errno.EINVAL
    assert kernel.read(ALICE, ring, 4) == key.to_bytes(4, "little")
    assert kernel.read(ALICE, key, 3) == b"v"  # other types do not care


def test_search_is_depth_first_each_keyring_before_its_subkeyrings(kernel):
    ring = ses(kernel)
    first = kernel.add_key(ALICE, "keyring", "first", b"", ring)
    deep = kernel.add_key(ALICE, "keyring", "deep", b"", first)
    second = kernel.add_key(ALICE, "keyring", "second", b"", ring)
    in_deep = kernel.add_key(ALICE, "user", "k", b"deep", deep)
    kernel.add_key(ALICE, "user", "k", b"shallow", second)
    assert kernel.search(ALICE, ring, "user", "k") == in_deep
    top = kernel.add_key(ALICE, "user", "k", b"top", ring)
    assert kernel.search(ALICE, ring, "user", "k") == top


@pytest.mark.parametrize("ktype", ["user", "keyring"])
def test_add_key_needs_a_description_of_every_type(kernel, ktype):
    assert errno_of(kernel.add_key, ALICE, ktype, "", b"", ses(kernel)) == errno.EINVAL


def test_no_records_for_read_describe_search_get_security(kernel, q):
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


def test_keyring_watch_does_not_see_member_events(kernel, q):
    ring = ses(kernel)
    sub = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    key = kernel.add_key(ALICE, "user", "k", b"v", sub)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.update(ALICE, key, b"w")
    kernel.setperm(ALICE, key, 0x3F3F0000)
    kernel.add_key(ALICE, "user", "k2", b"v", sub)  # nested keyring: no recursion
    kernel.revoke(ALICE, key)
    assert drain(q) == b""


def test_two_queues_on_one_key_each_get_their_own_copy(kernel):
    q1, q2 = new_queue(), new_queue(1)
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q1, 0x11)
    kernel.watch_key(ALICE, key, q2, 0xFF)
    kernel.update(ALICE, key, b"w")
    assert drain(q1) == key_rec(UPD, key, 0, 0x11)
    assert drain(q2) == key_rec(UPD, key, 0, 0xFF)


# ======================================================================= KEYCTL_WATCH_KEY

def test_watch_session_keyring_creates_anonymous_session(kernel, q):
    """watch_test / §3.1: watching @s without a session keyring installs a new '_ses'."""
    assert kernel.session_keyring(ALICE) is None
    kernel.watch_key(ALICE, abi.KEY_SPEC_SESSION_KEYRING, q, 0x01)
    kernel.watch_key(ALICE, abi.KEY_SPEC_USER_KEYRING, q, 0x02)
    ring = kernel.session_keyring(ALICE)
    assert ring is not None
    assert describe_key(ring) == "keyring;1000;1000;3f030000;_ses"
    key = kernel.add_key(ALICE, "user", "foo", b"bar", abi.KEY_SPEC_SESSION_KEYRING)
    assert drain(q) == key_rec(LINKED, ring.serial, key, 1)


@pytest.mark.parametrize("tag", [-2, -100, 256, 0x1000])
def test_tag_out_of_range_is_einval_before_anything(kernel, q, tag):
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, None, tag) == errno.EINVAL
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, q, tag) == errno.EINVAL


@pytest.mark.parametrize("tag", [0, 1, 0x80, 255])
def test_tag_in_range_is_used(kernel, q, tag):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, tag)
    kernel.update(ALICE, key, b"w")
    assert drain(q) == key_rec(UPD, key, 0, tag)


def test_unknown_key_is_enokey_before_queue_check(kernel, q):
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, None, 1) == errno.ENOKEY
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, q, -1) == errno.ENOKEY


def test_no_view_is_eacces_before_queue_check(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.watch_key, BOB, key, None, 1) == errno.EACCES
    assert errno_of(kernel.watch_key, BOB, key, q, 1) == errno.EACCES
    assert errno_of(kernel.watch_key, BOB, key, q, -1) == errno.EACCES


def test_missing_queue_is_einval(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.watch_key, ALICE, key, None, 1) == errno.EINVAL
    assert errno_of(kernel.watch_key, ALICE, key, None, -1) == errno.EINVAL


def test_view_permission_is_what_watch_needs(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    keep = abi.KEY_POS_SEARCH | abi.KEY_POS_SETATTR  # so Alice keeps possession and SETATTR
    kernel.setperm(ALICE, key, keep | 0x01)          # other: VIEW only
    kernel.watch_key(BOB, key, q, 1)                 # other VIEW is enough
    assert errno_of(kernel.watch_key, ALICE, key, new_queue(), 1) == errno.EACCES  # no VIEW for her
    kernel.setperm(ALICE, key, keep | 0x3E)          # other: everything but VIEW
    assert errno_of(kernel.watch_key, BOB, key, new_queue(), 1) == errno.EACCES
    kernel.setperm(ALICE, key, keep | abi.KEY_POS_VIEW)  # possessor VIEW
    kernel.watch_key(ALICE, key, new_queue(), 1)
    assert errno_of(kernel.watch_key, BOB, key, new_queue(), 1) == errno.EACCES
    assert drain(q) == key_rec(SETATTR, key, 0, 1) * 2


def test_duplicate_watch_is_ebusy_whatever_the_tag(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, 1)
    assert errno_of(kernel.watch_key, ALICE, key, q, 1) == errno.EBUSY
    assert errno_of(kernel.watch_key, ALICE, key, q, 2) == errno.EBUSY
    kernel.watch_key(ALICE, key, new_queue(), 1)  # another queue is fine
    kernel.update(ALICE, key, b"w")
    assert drain(q) == key_rec(UPD, key, 0, 1)    # still the first tag, one copy


def test_retag_by_removing_and_adding(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, key, q, -1)
    kernel.watch_key(ALICE, key, q, 2)
    kernel.update(ALICE, key, b"w")
    assert drain(q) == removal_rec(key, 1) + key_rec(UPD, key, 0, 2)


def test_watch_limit_is_eagain_per_user(kernel, q):
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


def test_removing_a_watch_that_does_not_exist_is_ebadslt(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.watch_key, ALICE, key, q, -1) == errno.EBADSLT
    other = new_queue()
    kernel.watch_key(ALICE, key, other, 1)
    assert errno_of(kernel.watch_key, ALICE, key, q, -1) == errno.EBADSLT
    kernel.watch_key(ALICE, key, other, -1)
    assert errno_of(kernel.watch_key, ALICE, key, other, -1) == errno.EBADSLT
    assert drain(q) == b""
    assert drain(other) == removal_rec(key, 1)


@pytest.mark.parametrize("key_id, err", [(0, errno.EINVAL), (-9, errno.EINVAL), (-1000, errno.EINVAL),
                                         (abi.KEY_SPEC_GROUP_KEYRING, errno.EINVAL),
                                         (abi.KEY_SPEC_REQKEY_AUTH_KEY, errno.ENOKEY),
                                         (abi.KEY_SPEC_REQUESTOR_KEYRING, errno.ENOKEY)])
def test_watch_bad_special_ids(kernel, q, key_id, err):
    assert errno_of(kernel.watch_key, ALICE, key_id, q, 1) == err


def test_watch_revoked_invalidated_expired(kernel, q, clock):
    ring = ses(kernel)
    rev = kernel.add_key(ALICE, "user", "rev", b"v", ring)
    inv = kernel.add_key(ALICE, "user", "inv", b"v", ring)
    exp = kernel.add_key(ALICE, "user", "exp", b"v", ring)
    kernel.watch_key(ALICE, rev, q, 1)
    kernel.revoke(ALICE, rev)
    kernel.invalidate(ALICE, inv)
    kernel.set_timeout(ALICE, exp, 5)
    clock.t += 6
    assert errno_of(kernel.watch_key, ALICE, rev, new_queue(), 1) == errno.EKEYREVOKED
    assert errno_of(kernel.watch_key, ALICE, inv, new_queue(), 1) == errno.ENOKEY
    assert errno_of(kernel.watch_key, ALICE, exp, new_queue(), 1) == errno.EKEYEXPIRED
    # the same errors apply to removing a watch: no removal record then
    assert errno_of(kernel.watch_key, ALICE, rev, q, -1) == errno.EKEYREVOKED
    assert errno_of(kernel.watch_key, ALICE, rev, None, 1) == errno.EKEYREVOKED
    assert drain(q) == key_rec(REVOKED, rev, 0, 1)


# ======================================================================= removal records

def test_unwatch_posts_one_removal_synchronously(kernel, q):
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


def test_destruction_removal_only_after_collect(kernel, clock):
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


def test_key_linked_elsewhere_is_not_destroyed(kernel, q):
    ring = ses(kernel)
    other = kernel.add_key(ALICE, "keyring", "o", b"", ring)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.link(ALICE, key, other)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.unlink(ALICE, key, ring)
    kernel.collect()
    assert drain(q) == b""
    assert key in kernel.keys


def test_keyring_destruction_posts_only_removals(kernel, q):
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


def test_revoked_key_removed_only_after_gc_delay(kernel, q, clock):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.revoke(ALICE, key)
    assert drain(q) == key_rec(REVOKED, key, 0, 1)
    kernel.collect()
    clock.t += 299
    kernel.collect()
    assert drain(q) == b""
    assert key in kernel.keys
    clock.t += 2
    kernel.collect()
    # GC unlinks it silently (no UNLINKED on the keyring) and frees it
    assert drain(q) == removal_rec(key, 1)
    assert members(kernel, ALICE, ring) == []


def test_gc_delay_is_configurable(clock, q):
    kernel = Kernel(gc_delay=10.0, clock=clock, seed=99)
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


def test_invalidated_key_collected_promptly_without_unlinked(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.invalidate(ALICE, key)
    assert drain(q) == key_rec(INVAL, key, 0, 1)
    kernel.collect()
    assert drain(q) == removal_rec(key, 1)
    assert members(kernel, ALICE, ring) == []


def test_expiry_posts_nothing_until_gc(kernel, q, clock):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.set_timeout(ALICE, key, 5)
    assert drain(q) == key_rec(SETATTR, key, 0, 1)
    clock.t += 6
    kernel.collect()
    assert drain(q) == b""
    clock.t += 300
    kernel.collect()
    assert drain(q) == removal_rec(key, 1)


def test_session_end_destroys_its_keyring_with_removal(kernel, q):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.watch_key(ALICE, key, q, 2)
    kernel.owner_gone("session", ALICE.session)
    assert drain(q) == b""
    kernel.collect()
    data = drain(q)
    assert sorted([data[:16], data[16:]]) == sorted([removal_rec(ring, 1), removal_rec(key, 2)])


def test_release_queue_detaches_watches_silently(kernel):
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


def test_removal_is_lost_when_the_queue_is_full(kernel):
    q = new_queue(1)
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, 1)
    for _ in range(32):
        kernel.update(ALICE, key, b"w")
    kernel.watch_key(ALICE, key, q, -1)
    assert drain(q) == key_rec(UPD, key, 0, 1) * 32 + LOSS


def test_records_posted_synchronously_in_fifo_order(kernel, q):
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


# ======================================================================= permissions (§4)

def test_second_uid_gets_eacces_and_nothing_is_posted(kernel, q):
    ring = ses(kernel)
    akey = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.watch_key(ALICE, akey, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    ops = [
        lambda: kernel.watch_key(BOB, akey, new_queue(), 1),
        lambda: kernel.describe(BOB, akey),
        lambda: kernel.describe(BOB, ring),
        lambda: kernel.read(BOB, akey),
        lambda: kernel.update(BOB, akey, b"x"),
        lambda: kernel.revoke(BOB, akey),
        lambda: kernel.invalidate(BOB, akey),
        lambda: kernel.setperm(BOB, akey, 0x3F3F3F3F),
        lambda: kernel.chown(BOB, akey, 1001, -1),
        lambda: kernel.set_timeout(BOB, akey, 5),
        lambda: kernel.link(BOB, akey, abi.KEY_SPEC_SESSION_KEYRING),
        lambda: kernel.unlink(BOB, akey, ring),
        lambda: kernel.clear(BOB, ring),
        lambda: kernel.add_key(BOB, "user", "x", b"v", ring),
        lambda: kernel.search(BOB, ring, "user", "k"),
    ]
    for op in ops:
        assert errno_of(op) == errno.EACCES
    assert drain(q) == b""
    assert kernel.read(ALICE, akey) == b"v"


def test_possession_through_a_shared_session(kernel, q):
    """A second uid in the same session possesses the session keyring's keys (POS bits)."""
    ring = ses(kernel)
    akey = kernel.add_key(ALICE, "user", "k", b"v", ring)
    bob_here = Cred(1001, 1001, thread="tb2", process="pb2", session="sa")
    assert kernel.possessed(bob_here, kernel.keys[akey])
    assert not kernel.possessed(BOB, kernel.keys[akey])
    kernel.watch_key(bob_here, akey, q, 1)
    kernel.update(bob_here, akey, b"w")
    assert drain(q) == key_rec(UPD, akey, 0, 1)
    # not the owner: setperm stays refused even though SETATTR is possessed
    assert errno_of(kernel.setperm, bob_here, akey, 0x3F010000) == errno.EACCES


def test_possession_through_user_session_keyring_when_no_session(kernel):
    no_ses = Cred(1000, 1000, thread="tx", process="px", session="x", implicit_session=False)
    key = kernel.add_key(no_ses, "user", "k", b"v", abi.KEY_SPEC_USER_SESSION_KEYRING)
    kernel.setperm(no_ses, key, abi.KEY_POS_ALL)  # possessor only
    assert kernel.describe(no_ses, key) == "user;1000;1000;3f000000;k"
    # the same uid with its own session keyring does not possess @us's keys
    ses(kernel, ALICE)
    assert errno_of(kernel.describe, ALICE, key) == errno.EACCES
    assert errno_of(kernel.watch_key, ALICE, key, new_queue(), 1) == errno.EACCES
    kernel.watch_key(no_ses, key, new_queue(), 1)


def test_possession_through_thread_keyring_is_per_thread(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_THREAD_KEYRING)
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL)
    other_thread = Cred(1000, 1000, thread="ta2", process="pa", session="sa")
    assert kernel.describe(ALICE, key) == "user;1000;1000;3f000000;k"
    assert errno_of(kernel.describe, other_thread, key) == errno.EACCES


def test_possession_via_process_keyring_shared_by_threads(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_PROCESS_KEYRING)
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL)
    same_process = Cred(1000, 1000, thread="ta2", process="pa", session="zz")
    other_process = Cred(1000, 1000, thread="ta3", process="pa3", session="sa")
    assert kernel.describe(same_process, key).endswith(";3f000000;k")
    assert errno_of(kernel.describe, other_process, key) == errno.EACCES


def test_class_is_chosen_exclusively(kernel):
    carol = Cred(1002, 1000, session="sc")                         # primary group 1000
    dave = Cred(1003, 1003, groups=frozenset({1000}), session="sd")  # supplementary 1000
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x28000100)   # pos search+setattr, group view
    assert errno_of(kernel.describe, ALICE, key) == errno.EACCES   # owner: user byte only
    assert kernel.describe(carol, key) == "user;1000;1000;28000100;k"
    assert kernel.describe(dave, key) == "user;1000;1000;28000100;k"
    assert errno_of(kernel.describe, BOB, key) == errno.EACCES
    # group byte present: a group member does not fall back to "other"
    kernel.setperm(ALICE, key, 0x28000201)
    assert errno_of(kernel.describe, carol, key) == errno.EACCES
    assert kernel.describe(BOB, key).endswith(";28000201;k")
    # no group bits at all: a group member is judged as "other"
    kernel.setperm(ALICE, key, 0x28000001)
    assert kernel.describe(carol, key).endswith(";28000001;k")


def test_root_has_no_permission_override_for_view(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.describe, ROOT, key) == errno.EACCES
    assert errno_of(kernel.watch_key, ROOT, key, new_queue(), 1) == errno.EACCES


@pytest.mark.parametrize("perm", [0x40000000, 0x80000000, 0x00400000, 0x00004000, 0x00000040,
                                  0x000000C0, 0xFFFFFFFF])
def test_setperm_bits_outside_0x3f3f3f3f_are_einval_first(kernel, perm):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.setperm, ALICE, key, perm) == errno.EINVAL
    assert errno_of(kernel.setperm, ALICE, NOWHERE, perm) == errno.EINVAL
    assert errno_of(kernel.setperm, BOB, key, perm) == errno.EINVAL


def test_setperm_full_valid_mask_accepted(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F3F3F3F)
    assert kernel.describe(BOB, key) == "user;1000;1000;3f3f3f3f;k"


def test_setperm_is_owner_only_except_root(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F01003F)  # others have SETATTR
    kernel.watch_key(ALICE, key, q, 1)
    assert errno_of(kernel.setperm, BOB, key, 0x3F3F3F3F) == errno.EACCES
    assert drain(q) == b""
    kernel.setperm(ROOT, key, 0x3F01003F)
    assert drain(q) == key_rec(SETATTR, key, 0, 1)


def test_setperm_needs_setattr(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x1F3F0000)  # possessor loses SETATTR, user keeps it
    kernel.setperm(ALICE, key, 0x1F1F0000)  # allowed through the user byte; now nobody has it
    assert errno_of(kernel.setperm, ALICE, key, 0x3F3F0000) == errno.EACCES


def test_revoke_falls_back_to_setattr(kernel, q):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F010021)  # other: VIEW | SETATTR, no WRITE
    kernel.watch_key(BOB, key, q, 1)
    kernel.revoke(BOB, key)
    assert drain(q) == key_rec(REVOKED, key, 0, 1)


def test_link_needs_link_on_key_and_write_on_keyring(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F010001)     # other: VIEW only
    assert errno_of(kernel.link, BOB, key, abi.KEY_SPEC_SESSION_KEYRING) == errno.EACCES
    kernel.setperm(ALICE, key, 0x3F010010)     # other: LINK
    kernel.link(BOB, key, abi.KEY_SPEC_SESSION_KEYRING)
    assert key in members(kernel, BOB, abi.KEY_SPEC_SESSION_KEYRING)


def test_unlink_needs_only_write_on_keyring(kernel):
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.setperm(ALICE, key, 0)
    kernel.unlink(ALICE, key, ring)
    assert members(kernel, ALICE, ring) == []


# ======================================================================= special keyrings (§4.3)

def test_special_keyrings_descriptions_and_perms(kernel):
    tid = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_THREAD_KEYRING, True)
    pid = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_PROCESS_KEYRING, True)
    sid = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_SESSION_KEYRING, True)
    uid = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_USER_KEYRING, True)
    usid = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_USER_SESSION_KEYRING, True)
    assert len({tid, pid, sid, uid, usid}) == 5
    assert kernel.describe(ALICE, tid) == "keyring;1000;1000;3f010000;_tid"
    assert kernel.describe(ALICE, pid) == "keyring;1000;1000;3f010000;_pid"
    assert kernel.describe(ALICE, sid) == "keyring;1000;1000;3f030000;_ses"
    assert kernel.describe(ALICE, uid) == "keyring;1000;65534;1f3f0000;_uid.1000"
    assert kernel.describe(ALICE, usid) == "keyring;1000;65534;1f3f0000;_uid_ses.1000"
    # negative IDs resolve to the same objects
    assert kernel.describe(ALICE, abi.KEY_SPEC_THREAD_KEYRING) == kernel.describe(ALICE, tid)
    assert kernel.describe(ALICE, abi.KEY_SPEC_USER_KEYRING) == kernel.describe(ALICE, uid)
    # the user-session keyring holds a link to the user keyring
    assert members(kernel, ALICE, usid) == [uid]


def test_special_keyrings_created_once_per_owner(kernel):
    t1 = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_THREAD_KEYRING, True)
    assert kernel.get_keyring_id(ALICE, abi.KEY_SPEC_THREAD_KEYRING, True) == t1
    same_process = Cred(1000, 1000, thread="other-thread", process="pa", session="sa")
    t2 = kernel.get_keyring_id(same_process, abi.KEY_SPEC_THREAD_KEYRING, True)
    assert t2 != t1
    p1 = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_PROCESS_KEYRING, True)
    assert kernel.get_keyring_id(same_process, abi.KEY_SPEC_PROCESS_KEYRING, True) == p1
    assert kernel.get_keyring_id(same_process, abi.KEY_SPEC_SESSION_KEYRING, True) == ses(kernel)
    u1 = kernel.get_keyring_id(ALICE, abi.KEY_SPEC_USER_KEYRING, True)
    assert kernel.get_keyring_id(Cred(1000, 5, session="elsewhere"), abi.KEY_SPEC_USER_KEYRING, True) == u1
    assert kernel.get_keyring_id(BOB, abi.KEY_SPEC_USER_KEYRING, True) != u1
    assert kernel.describe(BOB, abi.KEY_SPEC_USER_KEYRING) == "keyring;1001;65534;1f3f0000;_uid.1001"


def test_missing_thread_and_process_keyrings_without_create(kernel):
    assert errno_of(kernel.get_keyring_id, ALICE, abi.KEY_SPEC_THREAD_KEYRING, False) == errno.ENOKEY
    assert errno_of(kernel.get_keyring_id, ALICE, abi.KEY_SPEC_PROCESS_KEYRING, False) == errno.ENOKEY
    assert errno_of(kernel.unlink, ALICE, NOWHERE, abi.KEY_SPEC_THREAD_KEYRING) == errno.ENOKEY
    assert errno_of(kernel.invalidate, ALICE, abi.KEY_SPEC_PROCESS_KEYRING) == errno.ENOKEY


@pytest.mark.parametrize("key_id, err", [(0, errno.EINVAL), (-9, errno.EINVAL), (-2 ** 31, errno.EINVAL),
                                         (abi.KEY_SPEC_GROUP_KEYRING, errno.EINVAL),
                                         (abi.KEY_SPEC_REQKEY_AUTH_KEY, errno.ENOKEY),
                                         (abi.KEY_SPEC_REQUESTOR_KEYRING, errno.ENOKEY),
                                         (NOWHERE, errno.ENOKEY)])
def test_bad_ids_everywhere(kernel, key_id, err):
    assert errno_of(kernel.describe, ALICE, key_id) == err
    assert errno_of(kernel.get_keyring_id, ALICE, key_id, True) == err
    assert errno_of(kernel.update, ALICE, key_id, b"x") == err
    assert errno_of(kernel.add_key, ALICE, "user", "k", b"v", key_id) == err


def test_special_ids_are_always_possessed(kernel):
    ring = ses(kernel)
    kernel.setperm(ALICE, ring, 0x37000000)  # possessor: all but SEARCH; user: nothing
    # through its special ID the session keyring is possessed without any search
    assert kernel.describe(ALICE, abi.KEY_SPEC_SESSION_KEYRING) == "keyring;1000;1000;37000000;_ses"
    # by serial, possession needs a search from the caller's keyrings, which SEARCH now denies
    assert not kernel.possessed(ALICE, kernel.keys[ring])
    assert errno_of(kernel.describe, ALICE, ring) == errno.EACCES
    assert errno_of(kernel.watch_key, ALICE, ring, new_queue(), 1) == errno.EACCES
    kernel.watch_key(ALICE, abi.KEY_SPEC_SESSION_KEYRING, new_queue(), 1)


# ======================================================================= describe, default perms

def test_default_perms_per_type(kernel):
    ring = ses(kernel)
    user = kernel.add_key(ALICE, "user", "u", b"v", ring)
    logon = kernel.add_key(ALICE, "logon", "svc:name", b"v", ring)
    sub = kernel.add_key(ALICE, "keyring", "r", b"", ring)
    assert kernel.describe(ALICE, user) == "user;1000;1000;3f010000;u"
    assert kernel.describe(ALICE, logon) == "logon;1000;1000;3d010000;svc:name"
    assert kernel.describe(ALICE, sub) == "keyring;1000;1000;3f010000;r"


def test_new_keys_take_caller_uid_and_gid(kernel):
    cred = Cred(1234, 4321, session="s1234")
    key = kernel.add_key(cred, "user", "desc;with;semicolons", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert kernel.describe(cred, key) == "user;1234;4321;3f010000;desc;with;semicolons"


def test_describe_format_pads_perm_to_8_hex_digits(kernel):
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x0000003F)
    assert kernel.describe(BOB, key) == "user;1000;1000;0000003f;k"


def test_serials_are_positive_31_bit_and_at_least_3(kernel):
    serials = [kernel.add_key(ROOT, "user", f"k{i}", b"v", abi.KEY_SPEC_SESSION_KEYRING) for i in range(50)]
    assert len(set(serials)) == 50
    assert all(3 <= s < 2 ** 31 for s in serials)


# ======================================================================= link cycles, quota

def test_link_cycle_is_edeadlk(kernel, q):
    ring = ses(kernel)
    a = kernel.add_key(ALICE, "keyring", "a", b"", ring)
    b = kernel.add_key(ALICE, "keyring", "b", b"", ring)
    c = kernel.add_key(ALICE, "keyring", "c", b"", b)
    kernel.link(ALICE, b, a)                              # a -> b -> c
    kernel.watch_key(ALICE, a, q, 1)
    kernel.watch_key(ALICE, b, q, 2)
    kernel.watch_key(ALICE, c, q, 3)
    assert errno_of(kernel.link, ALICE, a, a) == errno.EDEADLK
    assert errno_of(kernel.link, ALICE, a, b) == errno.EDEADLK
    assert errno_of(kernel.link, ALICE, a, c) == errno.EDEADLK
    assert errno_of(kernel.move, ALICE, a, ring, c) == errno.EDEADLK
    assert drain(q) == b""
    assert members(kernel, ALICE, ring) == [a, b]


def test_quota_200_keys_for_non_root(kernel):
    bob_keys = [kernel.add_key(BOB, "user", f"k{i}", b"v", abi.KEY_SPEC_USER_KEYRING) for i in range(200)]
    assert errno_of(kernel.add_key, BOB, "user", "k200", b"v", abi.KEY_SPEC_USER_KEYRING) == errno.EDQUOT
    assert errno_of(kernel.add_key, BOB, "keyring", "r", b"", abi.KEY_SPEC_USER_KEYRING) == errno.EDQUOT
    # updating an existing key needs no new key
    kernel.add_key(BOB, "user", "k0", b"w", abi.KEY_SPEC_USER_KEYRING)
    # another user is unaffected
    kernel.add_key(ALICE, "user", "k200", b"v", abi.KEY_SPEC_USER_KEYRING)
    # freeing a key returns its quota
    kernel.unlink(BOB, bob_keys[5], abi.KEY_SPEC_USER_KEYRING)
    kernel.collect()
    kernel.add_key(BOB, "user", "k200", b"v", abi.KEY_SPEC_USER_KEYRING)
    assert errno_of(kernel.add_key, BOB, "user", "k201", b"v", abi.KEY_SPEC_USER_KEYRING) == errno.EDQUOT


def test_root_quota_is_larger(kernel):
    for i in range(250):
        kernel.add_key(ROOT, "user", f"k{i}", b"v", abi.KEY_SPEC_USER_KEYRING)


def test_quota_bytes_for_non_root(kernel):
    assert errno_of(kernel.add_key, BOB, "user", "big", b"x" * 20000, abi.KEY_SPEC_USER_KEYRING) == errno.EDQUOT
    kernel.add_key(BOB, "user", "ok", b"x" * 19000, abi.KEY_SPEC_USER_KEYRING)
    assert errno_of(kernel.add_key, BOB, "user", "more", b"x" * 2000, abi.KEY_SPEC_USER_KEYRING) == errno.EDQUOT
    kernel.add_key(ROOT, "user", "big", b"x" * 30000, abi.KEY_SPEC_USER_KEYRING)
