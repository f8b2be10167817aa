"""Unit tests of security/keys/request_key.c and the end of construction: construct_alloc_key
links the key before it is instantiated, KEYCTL_INSTANTIATE, KEYCTL_NEGATE and KEYCTL_REJECT end
it (key.c __key_instantiate_and_link, key_reject_and_link), later lookups get the stored error
(wait_for_key_construction), and request_key links what it finds into its destination. Then the
upcall (call_sbin_request_key, request_key_auth.c, keyctl_assume_authority): what the helper is
given, the authority it assumes and what it may do with it, and how construction ends.
"""
from __future__ import annotations

import errno
from typing import Callable

import pytest

from corelib import (ALICE, BOB, INST, INVAL, LINKED, REVOKED, ROOT, Clock, drain, errno_of, force_watch, key_rec,
                     members, new_queue, ses)

from wqfs import abi
from wqfs.kernel import Cred, Kernel, KeyState, KeyUnderConstruction, Upcall, WatchQueue


def test_construct_key_posts_linked_with_the_uninstantiated_serial(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    kernel.watch_key(ALICE, ring, q, 1)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    assert kernel.keys[key].state is KeyState.UNINSTANTIATED
    assert drain(q) == key_rec(LINKED, ring, key, 1)


# ---------------------------------------------------------------- the end of construction

KEY_TAG, DEST_TAG = 1, 2  # the watches' tags on the key under construction and its destination

Ending = Callable[[Kernel, int, int], None]   # (kernel, key, dest)
Expected = Callable[[int, int], bytes]        # (key, dest) -> what the queue holds afterwards


def instantiate(kernel: Kernel, key: int, dest: int) -> None:
    """KEYCTL_INSTANTIATE with a destination: key_instantiate_and_link."""
    kernel.instantiate(ALICE, key, b"payload", dest)
    assert kernel.read(ALICE, key) == b"payload"


def negate(kernel: Kernel, key: int, dest: int) -> None:
    """KEYCTL_NEGATE is key_reject_and_link with ENOKEY: a negative key, no destination."""
    kernel.negate(ALICE, key, 60)
    assert kernel.keys[key].state is KeyState.NEGATIVE


def reject(kernel: Kernel, key: int, dest: int) -> None:
    """KEYCTL_REJECT: key_reject_and_link stores the error, which a later lookup returns."""
    kernel.reject(ALICE, key, 60, errno.EKEYREJECTED, dest)
    assert errno_of(kernel.watch_key, ALICE, key, new_queue(), 5) == errno.EKEYREJECTED


def row(end: Ending, expected: Expected) -> object:
    """A table row named after its operation."""
    return pytest.param(end, expected, id=end.__name__)


@pytest.mark.parametrize("end, expected", [
    row(instantiate, lambda key, dest: key_rec(INST, key, 0, KEY_TAG) + key_rec(LINKED, dest, key, DEST_TAG)),
    # aux is -ENOKEY as a u32: 0xffffff82, which watch_test.c prints with %u as 4294967170
    row(negate, lambda key, dest: key_rec(INST, key, 0xFFFFFF82, KEY_TAG)),
    row(reject, lambda key, dest: (key_rec(INST, key, -errno.EKEYREJECTED, KEY_TAG)
                                   + key_rec(LINKED, dest, key, DEST_TAG))),
])
def test_ending_construction_posts_instantiated_then_linked(kernel: Kernel, q: WatchQueue, end: Ending,
                                                            expected: Expected) -> None:
    """INSTANTIATED on the key (aux 0, or -error for a negative key: __key_instantiate_and_link,
    key_reject_and_link), then LINKED on the destination keyring if one was given (__key_link)."""
    ring = ses(kernel)
    dest = kernel.add_key(ALICE, "keyring", "dest", b"", ring)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    force_watch(kernel, q, key, KEY_TAG)
    kernel.watch_key(ALICE, dest, q, DEST_TAG)
    end(kernel, key, dest)
    assert drain(q) == expected(key, dest)


def test_negated_key_lookup_returns_enokey(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    key = kernel.construct_key(ALICE, "user", "pending", ring)
    kernel.negate(ALICE, key, 60)
    assert errno_of(kernel.watch_key, ALICE, key, q, 1) == errno.ENOKEY
    assert errno_of(kernel.update, ALICE, key, b"x") == errno.ENOKEY


def test_negative_key_lookup_gives_stored_error_even_after_expiry(kernel: Kernel, q: WatchQueue,
                                                                  clock: Clock) -> None:
    """Once construction is over, a negative key gives its stored error first: lookup_user_key
    (security/keys/process_keys.c) calls wait_for_key_construction, which reads the state
    before key_validate."""
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


def test_request_key_with_destination_links(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    dst = kernel.add_key(ALICE, "keyring", "dst", b"", ring)
    key = kernel.add_key(ALICE, "user", "needle", b"v", ring)
    kernel.watch_key(ALICE, dst, q, 7)
    assert kernel.request_key(ALICE, "user", "needle", dst) == key
    assert drain(q) == key_rec(LINKED, dst, key, 7)


# ---------------------------------------------------------------- the upcall (call_sbin_request_key)
# Facts checked on Debian's 6.1 under qemu (mountpoint_tests/test_request_key.py says which).

HELPER = Cred(0, 0, thread="th", process="ph", session="sh")   # the helper, as the front makes it
CHILD = Cred(0, 0, thread="tc", process="pc", session="sh")    # a process the helper forked
AUTH = abi.KEY_SPEC_REQKEY_AUTH_KEY


def upcall(kernel: Kernel, desc: str = "wanted", callout: bytes = b"info", cred: Cred = ALICE) -> Upcall:
    """ALICE's request_key(user, desc, callout, @s) up to the helper's start (umh_keys_init)."""
    up = kernel.request_key(cred, "user", desc, ses(kernel, cred), callout)
    assert isinstance(up, Upcall)
    kernel.umh_keys_init(up, HELPER)
    return up


def token_of(kernel: Kernel, up: Upcall) -> int:
    [token] = members(kernel, HELPER, kernel.get_keyring_id(HELPER, abi.KEY_SPEC_SESSION_KEYRING, False))
    return token


def test_a_request_with_callout_info_makes_the_upcall_call_sbin_request_key_makes(kernel: Kernel, q: WatchQueue) -> None:
    ring = ses(kernel)
    kernel.watch_key(ALICE, ring, q, 1)
    up = upcall(kernel)
    assert up.path == "/sbin/request-key"
    assert up.argv == ("/sbin/request-key", "create", str(up.serial), "1000", "1000", "0", "0", str(ring))
    assert up.envp == ("HOME=/", "PATH=/sbin:/bin:/usr/sbin:/usr/bin") and up.uid == 1000
    assert kernel.describe(ALICE, up.serial) == "user;1000;1000;3f010000;wanted"
    assert kernel.keys[up.serial].state is KeyState.UNINSTANTIATED
    assert drain(q) == key_rec(LINKED, ring, up.serial, 1)  # construct_alloc_key links it at once
    session = kernel.get_keyring_id(HELPER, abi.KEY_SPEC_SESSION_KEYRING, False)
    assert kernel.describe(HELPER, session) == f"keyring;1000;1000;3f030000;_req.{up.serial}"
    token = token_of(kernel, up)
    assert kernel.describe(HELPER, token) == f".request_key_auth;1000;1000;1b010000;{up.serial:x}"
    assert kernel.read(HELPER, token) == b"info"  # request_key_auth_read: the callout information
    assert errno_of(kernel.request_key, ALICE, ".request_key_auth", f"{up.serial:x}") == errno.EPERM


def test_without_callout_info_or_for_a_keyring_there_is_no_upcall(kernel: Kernel) -> None:
    assert errno_of(kernel.request_key, ALICE, "user", "nothing") == errno.ENOKEY
    assert errno_of(kernel.request_key, ALICE, "keyring", "nothing", 0, b"x") == errno.EPERM
    assert errno_of(kernel.request_key, ALICE, "nosuch", "nothing", 0, b"x") == errno.ENOKEY
    assert kernel.constructions.upcalls == {}


def test_the_helper_assumes_the_authority_and_instantiates_only_its_key(kernel: Kernel, q: WatchQueue) -> None:
    """keyctl_assume_authority, then keyctl_instantiate_key_common into the requester's session
    keyring, which a root helper may WRITE only as its possessor (through the authority):
    INSTANTIATED on the key, LINKED on the keyring, INVALIDATED on the token; the authority is
    given up; completion revokes the token."""
    ring = ses(kernel)
    other = upcall(kernel, "other").serial
    up = upcall(kernel)
    token = token_of(kernel, up)
    force_watch(kernel, q, up.serial, 1)
    force_watch(kernel, q, token, 3)
    kernel.watch_key(ALICE, ring, q, 2)
    assert errno_of(kernel.instantiate, HELPER, up.serial, b"v") == errno.EPERM  # nothing assumed yet
    assert errno_of(kernel.read, HELPER, AUTH) == errno.ENOKEY
    assert errno_of(kernel.assume_authority, HELPER, -1) == errno.EINVAL
    assert errno_of(kernel.assume_authority, HELPER, ring) == errno.ENOKEY  # no token for it
    assert kernel.assume_authority(HELPER, up.serial) == token
    assert kernel.describe(HELPER, AUTH) == f".request_key_auth;1000;1000;1b010000;{up.serial:x}"
    assert kernel.read(HELPER, AUTH) == b"info"
    assert kernel.describe(HELPER, abi.KEY_SPEC_REQUESTOR_KEYRING) == "keyring;1000;1000;3f030000;_ses"
    assert errno_of(kernel.instantiate, HELPER, other, b"v") == errno.EPERM
    assert errno_of(kernel.instantiate, HELPER, up.serial, b"v", AUTH) == errno.EINVAL
    assert errno_of(kernel.instantiate, HELPER, up.serial, b"v", -9) == errno.ENOKEY
    assert errno_of(kernel.instantiate, HELPER, up.serial, b"") == errno.EINVAL  # user_preparse
    kernel.instantiate(HELPER, up.serial, b"payload", ring)
    assert drain(q) == (key_rec(INST, up.serial, 0, 1) + key_rec(LINKED, ring, up.serial, 2)
                        + key_rec(INVAL, token, 0, 3))
    assert errno_of(kernel.instantiate, HELPER, up.serial, b"again") == errno.EPERM  # given up
    assert kernel.complete_upcall(up) == 0
    assert drain(q) == key_rec(REVOKED, token, 0, 3)
    assert kernel.wait_for_key_construction(ALICE, up.serial) == up.serial
    assert kernel.read(ALICE, up.serial) == b"payload"
    assert kernel.keys[other].state is KeyState.UNINSTANTIATED


def test_any_special_keyring_names_the_requests_destination(kernel: Kernel) -> None:
    """get_instantiation_keyring: KEY_SPEC_*_KEYRING is the destination the token recorded
    (the requester's @s here, not the helper's own)."""
    dest = kernel.add_key(ALICE, "keyring", "dest", b"", ses(kernel))
    up = kernel.request_key(ALICE, "user", "k", dest, b"x")
    kernel.umh_keys_init(up, HELPER)
    kernel.assume_authority(HELPER, up.serial)
    kernel.negate(HELPER, up.serial, 10, abi.KEY_SPEC_SESSION_KEYRING)
    assert members(kernel, ALICE, dest) == [up.serial]
    assert kernel.complete_upcall(up) == 0
    assert errno_of(kernel.wait_for_key_construction, ALICE, up.serial) == errno.ENOKEY


@pytest.mark.parametrize("end, error", [
    (lambda kernel, up: None, errno.ENOKEY),  # the helper exits, the key still under construction
    (lambda kernel, up: kernel.reject(HELPER, up.serial, 30, errno.EKEYREJECTED), errno.EKEYREJECTED),
    (lambda kernel, up: kernel.negate(HELPER, up.serial, 30), errno.ENOKEY),
], ids=["nothing", "reject", "negate"])
def test_what_the_requester_gets_when_the_helper_fails(kernel: Kernel, q: WatchQueue, clock: Clock, end, error) -> None:
    up = upcall(kernel)
    token = token_of(kernel, up)
    force_watch(kernel, q, up.serial, 1)
    force_watch(kernel, q, token, 2)
    kernel.assume_authority(HELPER, up.serial)
    end(kernel, up)
    result = kernel.complete_upcall(up)
    if result:  # construction failed: negated for key_negative_timeout, the token invalidated
        assert result == errno.ENOKEY
        assert drain(q) == key_rec(INST, up.serial, -errno.ENOKEY, 1) + key_rec(INVAL, token, 0, 2)
        assert kernel.keys[up.serial].expiry == clock.t + 60
    else:
        assert drain(q) == (key_rec(INST, up.serial, -error, 1) + key_rec(INVAL, token, 0, 2)
                            + key_rec(REVOKED, token, 0, 2))
        assert errno_of(kernel.wait_for_key_construction, ALICE, up.serial) == error
    assert kernel.complete_upcall(up) == result  # once
    assert errno_of(kernel.request_key, ALICE, "user", "wanted", 0, b"info") == error  # no new upcall
    assert kernel.constructions.upcalls == {}


def test_a_second_requester_waits_for_the_construction_on_the_way(kernel: Kernel) -> None:
    up = upcall(kernel)
    sibling = Cred(1000, 1000, thread="t2", process="p2", session="sa")
    assert kernel.request_key(sibling, "user", "wanted", 0, b"info") == up.serial  # not a second upcall
    with pytest.raises(KeyUnderConstruction):
        kernel.wait_for_key_construction(sibling, up.serial)
    assert errno_of(kernel.request_key, BOB, "user", "wanted") == errno.ENOKEY  # not in his keyrings
    kernel.assume_authority(HELPER, up.serial)
    kernel.instantiate(HELPER, up.serial, b"v")
    assert kernel.wait_for_key_construction(sibling, up.serial) == up.serial


def test_the_authority_lets_the_helper_search_the_requesters_keyrings(kernel: Kernel) -> None:
    """search_process_keyrings_rcu's second round: with the authority, the requester's keyrings are
    searched too, with the requester's credentials; a request of the helper's own is made in the
    requester's context (its uid's upcall) and linked to the original destination."""
    ring = ses(kernel)
    inner = kernel.add_key(ALICE, "user", "inner", b"i", ring)
    up = upcall(kernel)
    assert errno_of(kernel.request_key, HELPER, "user", "inner") == errno.ENOKEY
    kernel.assume_authority(HELPER, up.serial)
    assert kernel.request_key(HELPER, "user", "inner") == inner
    nested = kernel.request_key(HELPER, "user", "nested", 0, b"more")
    assert isinstance(nested, Upcall) and nested.uid == 1000
    assert nested.serial in members(kernel, ALICE, ring)
    assert kernel.describe(ALICE, nested.serial) == "user;0;0;3f010000;nested"  # owned by its maker


def test_a_forked_process_holds_what_its_parent_held(kernel: Kernel) -> None:
    up = upcall(kernel)
    kernel.assume_authority(HELPER, up.serial)
    kernel.inherit_authority(CHILD.thread, HELPER.thread)
    assert kernel.assume_authority(HELPER, 0) == 0  # the parent gives it up: the child keeps its copy
    assert errno_of(kernel.read, HELPER, AUTH) == errno.ENOKEY
    kernel.instantiate(CHILD, up.serial, b"from the child")
    assert kernel.complete_upcall(up) == 0


def test_once_revoked_the_authority_is_gone_and_the_token_collected(kernel: Kernel) -> None:
    up = upcall(kernel)
    token = token_of(kernel, up)
    session = kernel.get_keyring_id(HELPER, abi.KEY_SPEC_SESSION_KEYRING, False)
    kernel.assume_authority(HELPER, up.serial)
    kernel.inherit_authority(CHILD.thread, HELPER.thread)
    kernel.instantiate(HELPER, up.serial, b"v")
    assert errno_of(kernel.negate, CHILD, up.serial, 1) == errno.EBUSY  # still held, key done
    kernel.complete_upcall(up)
    assert errno_of(kernel.negate, CHILD, up.serial, 1) == errno.EPERM
    assert kernel.authorities.assumed == {} and kernel.authorities.records == {}
    kernel.owner_gone("session", HELPER.session)  # the helper's session ends
    kernel.collect()
    kernel.collect()
    assert token not in kernel.keys and session not in kernel.keys
    assert kernel.read(ALICE, up.serial) == b"v"


def test_an_upcall_nobody_ran_is_negated(kernel: Kernel) -> None:
    """call_usermodehelper failing (the helper cannot be started) negates the key too; the
    requester gets why."""
    up = kernel.request_key(ALICE, "user", "unrun", 0, b"x")
    assert kernel.complete_upcall(up, errno.EAGAIN) == errno.EAGAIN
    assert kernel.keys[up.serial].state is KeyState.NEGATIVE
    assert errno_of(kernel.umh_keys_init, up, HELPER) == errno.EINVAL


def test_the_default_destination_is_the_session_keyring_then_the_user_session(kernel: Kernel) -> None:
    up = kernel.request_key(ROOT, "user", "nosession", 0, b"x")  # ROOT has no session keyring
    assert up.serial in members(kernel, ROOT, kernel.get_keyring_id(ROOT, abi.KEY_SPEC_USER_SESSION_KEYRING, False))
    ring = ses(kernel)
    up = kernel.request_key(ALICE, "user", "session", 0, b"x")
    assert up.serial in members(kernel, ALICE, ring)
    assert up.argv[-1] == str(ring)


def test_the_authority_lends_the_requesters_possession_to_every_lookup(kernel: Kernel) -> None:
    """search_process_keyrings_rcu's second round: a helper holding the authority possesses what
    the requester possesses, in a lookup by serial too (a key whose only rights are the
    possessor's), but never the requester's other authorization keys."""
    ring = ses(kernel)
    secret = kernel.add_key(ALICE, "user", "pos-only", b"s", ring)
    kernel.setperm(ALICE, secret, 0x3f000000)  # the possessor's rights alone
    up = upcall(kernel)
    assert errno_of(kernel.read, HELPER, secret) == errno.EACCES  # root, but no possessor yet
    kernel.assume_authority(HELPER, up.serial)
    assert kernel.read(HELPER, secret) == b"s"
    assert kernel.describe(HELPER, secret) == "user;1000;1000;3f000000;pos-only"
    kernel.assume_authority(HELPER, 0)  # relinquished: its own possession again
    assert errno_of(kernel.describe, HELPER, secret) == errno.EACCES
