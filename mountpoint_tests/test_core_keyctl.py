"""Unit tests of security/keys/keyctl.c: each operation's own checks and their order around
the key lookup: KEYCTL_DESCRIBE and KEYCTL_GET_SECURITY, KEYCTL_SETPERM, KEYCTL_CHOWN, what
KEYCTL_REVOKE and KEYCTL_LINK need, and KEYCTL_WATCH_KEY's arguments (keyctl_watch_key: the tag
range, then lookup_user_key with KEY_NEED_VIEW, then the queue). Adding and removing watches
is in test_core_watch.py.
"""
from __future__ import annotations

import errno

import pytest

from corelib import (ALICE, BOB, NOWHERE, REVOKED, ROOT, SETATTR, UPD, Clock, drain, errno_of, key_rec,
                     members, new_queue, ses)

from wqfs import abi
from wqfs.kernel import Kernel, WatchQueue, describe_key


# ---------------------------------------------------------------- describe, get_security

def test_describe_format_pads_perm_to_8_hex_digits(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x0000003F)
    assert kernel.describe(BOB, key) == "user;1000;1000;0000003f;k"


def test_without_view_describe_is_eacces_but_get_security_enokey(kernel: Kernel) -> None:
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


# ---------------------------------------------------------------- setperm, chown

@pytest.mark.parametrize("perm", [0x40000000, 0x80000000, 0x00400000, 0x00004000, 0x00000040,
                                  0x000000C0, 0xFFFFFFFF])
def test_setperm_bits_outside_0x3f3f3f3f_are_einval_first(kernel: Kernel, perm: int) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.setperm, ALICE, key, perm) == errno.EINVAL
    assert errno_of(kernel.setperm, ALICE, NOWHERE, perm) == errno.EINVAL
    assert errno_of(kernel.setperm, BOB, key, perm) == errno.EINVAL


def test_setperm_full_valid_mask_accepted(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F3F3F3F)
    assert kernel.describe(BOB, key) == "user;1000;1000;3f3f3f3f;k"


def test_setperm_is_owner_only_except_root(kernel: Kernel, q: WatchQueue) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F01003F)  # others have SETATTR
    kernel.watch_key(ALICE, key, q, 1)
    assert errno_of(kernel.setperm, BOB, key, 0x3F3F3F3F) == errno.EACCES
    assert drain(q) == b""
    kernel.setperm(ROOT, key, 0x3F01003F)
    assert drain(q) == key_rec(SETATTR, key, 0, 1)


def test_setperm_needs_setattr(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x1F3F0000)  # possessor loses SETATTR, user keeps it
    kernel.setperm(ALICE, key, 0x1F1F0000)  # allowed through the user byte; now nobody has it
    assert errno_of(kernel.setperm, ALICE, key, 0x3F3F0000) == errno.EACCES


def test_chown_by_root_changes_owner_and_posts(kernel: Kernel, q: WatchQueue) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"1", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F01003F)  # let others (root here) SETATTR
    kernel.watch_key(ALICE, key, q, 1)
    kernel.chown(ROOT, key, 1001, 1001)
    assert drain(q) == key_rec(SETATTR, key, 0, 1)
    assert describe_key(kernel.keys[key]) == "user;1001;1001;3f01003f;k"


# ---------------------------------------------------------------- revoke, link

def test_revoke_falls_back_to_setattr(kernel: Kernel, q: WatchQueue) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F010021)  # other: VIEW | SETATTR, no WRITE
    kernel.watch_key(BOB, key, q, 1)
    kernel.revoke(BOB, key)
    assert drain(q) == key_rec(REVOKED, key, 0, 1)


def test_link_needs_link_on_key_and_write_on_keyring(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.setperm(ALICE, key, 0x3F010001)     # other: VIEW only
    assert errno_of(kernel.link, BOB, key, abi.KEY_SPEC_SESSION_KEYRING) == errno.EACCES
    kernel.setperm(ALICE, key, 0x3F010010)     # other: LINK
    kernel.link(BOB, key, abi.KEY_SPEC_SESSION_KEYRING)
    assert key in members(kernel, BOB, abi.KEY_SPEC_SESSION_KEYRING)


# ---------------------------------------------------------------- KEYCTL_WATCH_KEY arguments

@pytest.mark.parametrize("tag", [-2, -100, 256, 0x1000])
def test_tag_out_of_range_is_einval_before_anything(kernel: Kernel, q: WatchQueue, tag: int) -> None:
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, None, tag) == errno.EINVAL
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, q, tag) == errno.EINVAL


@pytest.mark.parametrize("tag", [0, 1, 0x80, 255])
def test_tag_in_range_is_used(kernel: Kernel, q: WatchQueue, tag: int) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    kernel.watch_key(ALICE, key, q, tag)
    kernel.update(ALICE, key, b"w")
    assert drain(q) == key_rec(UPD, key, 0, tag)


def test_unknown_key_is_enokey_before_queue_check(kernel: Kernel, q: WatchQueue) -> None:
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, None, 1) == errno.ENOKEY
    assert errno_of(kernel.watch_key, ALICE, NOWHERE, q, -1) == errno.ENOKEY


def test_no_view_is_eacces_before_queue_check(kernel: Kernel, q: WatchQueue) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.watch_key, BOB, key, None, 1) == errno.EACCES
    assert errno_of(kernel.watch_key, BOB, key, q, 1) == errno.EACCES
    assert errno_of(kernel.watch_key, BOB, key, q, -1) == errno.EACCES


def test_missing_queue_is_einval(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.watch_key, ALICE, key, None, 1) == errno.EINVAL
    assert errno_of(kernel.watch_key, ALICE, key, None, -1) == errno.EINVAL


def test_view_permission_is_what_watch_needs(kernel: Kernel, q: WatchQueue) -> None:
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


@pytest.mark.parametrize("key_id, err", [(0, errno.EINVAL), (-9, errno.EINVAL), (-1000, errno.EINVAL),
                                         (abi.KEY_SPEC_GROUP_KEYRING, errno.EINVAL),
                                         (abi.KEY_SPEC_REQKEY_AUTH_KEY, errno.ENOKEY),
                                         (abi.KEY_SPEC_REQUESTOR_KEYRING, errno.ENOKEY)])
def test_watch_bad_special_ids(kernel: Kernel, q: WatchQueue, key_id: int, err: int) -> None:
    assert errno_of(kernel.watch_key, ALICE, key_id, q, 1) == err


def test_watch_revoked_invalidated_expired(kernel: Kernel, q: WatchQueue, clock: Clock) -> None:
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
