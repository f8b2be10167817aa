"""Unit tests of security/keys/key.c: add_key's key_create_or_update (updating the key it
finds, replacing a keyring, default permissions, descriptions), key_alloc (serials, the owner)
and the quotas key_alloc and key_payload_reserve charge (EDQUOT).
"""
from __future__ import annotations

import errno

import pytest

from corelib import ALICE, BOB, LINKED, ROOT, UPD, drain, errno_of, force_watch, key_rec, members, ses

from wqfs import abi
from wqfs.kernel import Cred, Kernel, KeyState, WatchQueue


# ---------------------------------------------------------------- key_create_or_update

def test_add_keyring_with_existing_name_replaces_and_posts_only_linked(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    old = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    kernel.watch_key(ALICE, ring, q, 1)
    kernel.watch_key(ALICE, old, q, 2)
    new = kernel.add_key(ALICE, "keyring", "sub", b"", ring)
    assert new != old
    assert drain(q) == key_rec(LINKED, ring, new, 1)
    assert members(kernel, ALICE, ring) == [new]


def test_add_key_over_a_negative_key_posts_updated_not_instantiated(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    key = kernel.construct_key(ALICE, "user", "k", ring)
    kernel.negate(ALICE, key, 60)
    force_watch(kernel, q, key, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    assert kernel.add_key(ALICE, "user", "k", b"now", ring) == key
    assert drain(q) == key_rec(UPD, key, 0, 1)
    assert kernel.keys[key].state is KeyState.POSITIVE


@pytest.mark.parametrize("ktype", ["user", "keyring"])
def test_add_key_needs_a_description_of_every_type(kernel: Kernel, ktype: str) -> None:
    assert errno_of(kernel.add_key, ALICE, ktype, "", b"", ses(kernel)) == errno.EINVAL


def test_default_perms_per_type(kernel: Kernel) -> None:
    ring = ses(kernel)
    user = kernel.add_key(ALICE, "user", "u", b"v", ring)
    logon = kernel.add_key(ALICE, "logon", "svc:name", b"v", ring)
    sub = kernel.add_key(ALICE, "keyring", "r", b"", ring)
    assert kernel.describe(ALICE, user) == "user;1000;1000;3f010000;u"
    assert kernel.describe(ALICE, logon) == "logon;1000;1000;3d010000;svc:name"
    assert kernel.describe(ALICE, sub) == "keyring;1000;1000;3f010000;r"


# ---------------------------------------------------------------- key_alloc: serials and owner

def test_new_keys_take_caller_uid_and_gid(kernel: Kernel) -> None:
    cred = Cred(1234, 4321, session="s1234")
    key = kernel.add_key(cred, "user", "desc;with;semicolons", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert kernel.describe(cred, key) == "user;1234;4321;3f010000;desc;with;semicolons"


def test_serials_are_positive_31_bit_and_at_least_3(kernel: Kernel) -> None:
    serials = [kernel.add_key(ROOT, "user", f"k{i}", b"v", abi.KEY_SPEC_SESSION_KEYRING) for i in range(50)]
    assert len(set(serials)) == 50
    assert all(3 <= s < 2 ** 31 for s in serials)


# ---------------------------------------------------------------- quotas

def test_quota_200_keys_for_non_root(kernel: Kernel) -> None:
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


def test_root_quota_is_larger(kernel: Kernel) -> None:
    for i in range(250):
        kernel.add_key(ROOT, "user", f"k{i}", b"v", abi.KEY_SPEC_USER_KEYRING)


def test_quota_bytes_for_non_root(kernel: Kernel) -> None:
    assert errno_of(kernel.add_key, BOB, "user", "big", b"x" * 20000, abi.KEY_SPEC_USER_KEYRING) == errno.EDQUOT
    kernel.add_key(BOB, "user", "ok", b"x" * 19000, abi.KEY_SPEC_USER_KEYRING)
    assert errno_of(kernel.add_key, BOB, "user", "more", b"x" * 2000, abi.KEY_SPEC_USER_KEYRING) == errno.EDQUOT
    kernel.add_key(ROOT, "user", "big", b"x" * 30000, abi.KEY_SPEC_USER_KEYRING)


def test_a_key_that_does_not_fit_the_quota_leaves_nothing_behind(kernel: Kernel) -> None:
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
