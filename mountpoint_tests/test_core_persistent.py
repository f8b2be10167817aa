"""Unit tests of security/keys/persistent.c (keyctl_get_persistent), with keyring.c's
keyring_restrict and keyctl.c's KEYCTL_CAPABILITIES, which no other core file tests."""
from __future__ import annotations

import errno

from corelib import (ALICE, BOB, LINKED, ROOT, drain, errno_of, key_rec, members, persistent_keyring_expiry,
                     removal_rec, ses)

from wqfs import abi
from wqfs.kernel import Kernel, WatchQueue


def test_persistent_keyring_is_made_once_per_uid_and_linked_into_dest(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    kernel.watch_key(ALICE, ring, q, 1)
    first = kernel.get_persistent(ALICE, -1, ring)
    assert drain(q) == key_rec(LINKED, ring, first, 1)
    assert kernel.get_persistent(ALICE, ALICE.uid, ring) == first  # -1 is the caller's own uid
    assert members(kernel, ALICE, ring) == [first]
    # key_create_persistent's permissions, no group (shown as the overflow gid), its name
    assert kernel.describe(ALICE, first) == "keyring;1000;65534;1f030000;_persistent.1000"


def test_another_users_persistent_keyring_takes_root(kernel: Kernel) -> None:
    assert errno_of(kernel.get_persistent, ALICE, BOB.uid, ses(kernel)) == errno.EPERM
    bobs = kernel.get_persistent(ROOT, BOB.uid, ses(kernel, ROOT))
    assert kernel.get_persistent(BOB, -1, ses(kernel, BOB)) == bobs


def test_persistent_needs_write_on_dest(kernel: Kernel) -> None:
    bobs_ring = ses(kernel, BOB)
    assert errno_of(kernel.get_persistent, ALICE, -1, bobs_ring) == errno.EACCES


def test_a_restricted_keyring_takes_no_more_links_and_only_one_restriction(kernel: Kernel) -> None:
    ring = kernel.add_key(ALICE, "keyring", "r", b"", ses(kernel))
    key = kernel.add_key(ALICE, "user", "k", b"v", ses(kernel))
    assert errno_of(kernel.restrict_keyring, ALICE, ring, "user", None) == errno.EINVAL
    assert errno_of(kernel.restrict_keyring, ALICE, ring, "user", "x") == errno.ENOENT  # no user restrictions
    assert errno_of(kernel.restrict_keyring, ALICE, ring, "nosuch", "x") == errno.ENOKEY
    kernel.restrict_keyring(ALICE, ring, None, None)
    assert errno_of(kernel.restrict_keyring, ALICE, ring, None, None) == errno.EEXIST
    assert errno_of(kernel.link, ALICE, key, ring) == errno.EPERM
    assert errno_of(kernel.add_key, ALICE, "user", "new", b"v", ring) == errno.EPERM
    kernel.clear(ALICE, ring)  # a restriction keeps keys out, not in


def test_capabilities_say_what_this_emulation_does() -> None:
    caps = Kernel.capabilities()
    assert caps[0] & abi.KEYCTL_CAPS0_PERSISTENT_KEYRINGS and caps[0] & abi.KEYCTL_CAPS0_MOVE
    assert caps[1] & abi.KEYCTL_CAPS1_NOTIFICATIONS
    assert len(caps) == 2


def test_every_get_starts_the_expiry_again_and_an_unused_one_is_collected(kernel: Kernel, clock, q) -> None:
    """key_get_persistent's key_set_timeout(persistent_keyring_expiry): no record for it; a
    keyring nobody got for that long expires, goes after the GC delay, and the next get makes
    a new one."""
    ring = ses(kernel)
    first = kernel.get_persistent(ALICE, -1, ring)
    kernel.watch_key(ALICE, first, q, 1)
    expiry = persistent_keyring_expiry()
    clock.t += expiry - 10
    assert kernel.get_persistent(ALICE, -1, ring) == first  # used again: 3 more days
    assert drain(q) == b""
    clock.t += expiry - 10
    assert kernel.key_expiry_left(kernel.key(first)) == 10
    clock.t += 10 + abi.KEY_GC_DELAY
    kernel.collect()
    kernel.collect()
    assert drain(q) == removal_rec(first, 1)
    second = kernel.get_persistent(ALICE, -1, ring)
    assert second != first


def test_the_tree_names_its_own_persistent_keyring_without_linking_it(kernel: Kernel) -> None:
    ring = kernel.own_persistent_keyring(ALICE)
    assert ring is not None and ring.description == "_persistent.1000"
    assert kernel.get_persistent(ALICE, -1, ses(kernel)) == ring.serial
    assert kernel.own_persistent_keyring(BOB).serial != ring.serial
