"""Unit tests of security/keys/permission.c key_task_permission: the caller's class (owner,
group or other) chosen exclusively, the possessor bits added on top, no override for root,
and KEY_NEED_UNLINK, which asks nothing of the key.
"""
from __future__ import annotations

import errno

from corelib import ALICE, BOB, ROOT, drain, errno_of, members, new_queue, ses

from wqfs import abi
from wqfs.kernel import Cred, Kernel, WatchQueue


def test_class_is_chosen_exclusively(kernel: Kernel) -> None:
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


def test_second_uid_gets_eacces_and_nothing_is_posted(kernel: Kernel, q: WatchQueue) -> None:
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


def test_root_has_no_permission_override_for_view(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_SESSION_KEYRING)
    assert errno_of(kernel.describe, ROOT, key) == errno.EACCES
    assert errno_of(kernel.watch_key, ROOT, key, new_queue(), 1) == errno.EACCES


def test_unlink_needs_only_write_on_keyring(kernel: Kernel) -> None:
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    kernel.setperm(ALICE, key, 0)
    kernel.unlink(ALICE, key, ring)
    assert members(kernel, ALICE, ring) == []
