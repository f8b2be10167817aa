"""Unit tests of security/keys/process_keys.c: the special keyrings @t @p @s @u @us (made by
lookup_user_key's KEY_LOOKUP_CREATE, their descriptions, owners and permissions),
join_session_keyring, the IDs lookup_user_key refuses, and possession: what
search_cred_keyrings_rcu reaches from the caller's thread, process and session keyrings.
"""
from __future__ import annotations

import errno

import pytest

from corelib import ALICE, BOB, LINKED, NOWHERE, UPD, Clock, drain, errno_of, key_rec, members, new_queue, ses

from wqfs import abi
from wqfs.kernel import Cred, Kernel, WatchQueue, describe_key


# ---------------------------------------------------------------- special keyrings

def test_special_keyrings_descriptions_and_perms(kernel: Kernel) -> None:
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


def test_special_keyrings_created_once_per_owner(kernel: Kernel) -> None:
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


def test_missing_thread_and_process_keyrings_without_create(kernel: Kernel) -> None:
    assert errno_of(kernel.get_keyring_id, ALICE, abi.KEY_SPEC_THREAD_KEYRING, False) == errno.ENOKEY
    assert errno_of(kernel.get_keyring_id, ALICE, abi.KEY_SPEC_PROCESS_KEYRING, False) == errno.ENOKEY
    assert errno_of(kernel.unlink, ALICE, NOWHERE, abi.KEY_SPEC_THREAD_KEYRING) == errno.ENOKEY
    assert errno_of(kernel.invalidate, ALICE, abi.KEY_SPEC_PROCESS_KEYRING) == errno.ENOKEY


def test_only_the_operations_that_create_special_keyrings_do(kernel: Kernel) -> None:
    """lookup_user_key's KEY_LOOKUP_CREATE, operation by operation (security/keys/keyctl.c;
    conformance/session.c): describe, get_security and update of @t do not make it."""
    for op in (kernel.describe, kernel.get_security):
        assert errno_of(op, ALICE, abi.KEY_SPEC_THREAD_KEYRING) == errno.ENOKEY
    assert errno_of(kernel.update, ALICE, abi.KEY_SPEC_THREAD_KEYRING, b"x") == errno.ENOKEY
    assert errno_of(kernel.get_keyring_id, ALICE, abi.KEY_SPEC_THREAD_KEYRING, False) == errno.ENOKEY
    kernel.setperm(ALICE, abi.KEY_SPEC_THREAD_KEYRING, abi.KEY_POS_ALL)  # setperm does make it
    assert kernel.describe(ALICE, abi.KEY_SPEC_THREAD_KEYRING).endswith(";_tid")


def test_watch_session_keyring_creates_anonymous_session(kernel: Kernel, q: WatchQueue) -> None:
    """What watch_test.c does first: watching @s without a session keyring installs a new '_ses'
    (lookup_user_key's KEY_LOOKUP_CREATE, install_session_keyring)."""
    assert kernel.session_keyring(ALICE) is None
    kernel.watch_key(ALICE, abi.KEY_SPEC_SESSION_KEYRING, q, 0x01)
    kernel.watch_key(ALICE, abi.KEY_SPEC_USER_KEYRING, q, 0x02)
    ring = kernel.session_keyring(ALICE)
    assert ring is not None
    assert describe_key(ring) == "keyring;1000;1000;3f030000;_ses"
    key = kernel.add_key(ALICE, "user", "foo", b"bar", abi.KEY_SPEC_SESSION_KEYRING)
    assert drain(q) == key_rec(LINKED, ring.serial, key, 1)


def test_joining_a_session_keyring_by_name(kernel: Kernel) -> None:
    assert errno_of(kernel.join_session_keyring, ALICE, ".dot") == errno.EPERM
    assert errno_of(kernel.join_session_keyring, ALICE, "") == errno.EINVAL
    named = kernel.join_session_keyring(ALICE, "named")
    # find_keyring_by_name wants SEARCH without possession, which a joined keyring does not
    # give its owner: joining the name again makes another
    again = kernel.join_session_keyring(ALICE, "named")
    assert again not in (0, named)
    kernel.setperm(ALICE, again, abi.KEY_POS_ALL | abi.KEY_USR_ALL)
    assert kernel.join_session_keyring(ALICE, "named") == 0  # the session keyring already


# ---------------------------------------------------------------- lookup_user_key

@pytest.mark.parametrize("key_id, err", [(0, errno.EINVAL), (-9, errno.EINVAL), (-2 ** 31, errno.EINVAL),
                                         (abi.KEY_SPEC_GROUP_KEYRING, errno.EINVAL),
                                         (abi.KEY_SPEC_REQKEY_AUTH_KEY, errno.ENOKEY),
                                         (abi.KEY_SPEC_REQUESTOR_KEYRING, errno.ENOKEY),
                                         (NOWHERE, errno.ENOKEY)])
def test_bad_ids_everywhere(kernel: Kernel, key_id: int, err: int) -> None:
    assert errno_of(kernel.describe, ALICE, key_id) == err
    assert errno_of(kernel.get_keyring_id, ALICE, key_id, True) == err
    assert errno_of(kernel.update, ALICE, key_id, b"x") == err
    assert errno_of(kernel.add_key, ALICE, "user", "k", b"v", key_id) == err


def test_special_ids_are_always_possessed(kernel: Kernel) -> None:
    ring = ses(kernel)
    kernel.setperm(ALICE, ring, 0x37000000)  # possessor: all but SEARCH; user: nothing
    # through its special ID the session keyring is possessed without any search
    assert kernel.describe(ALICE, abi.KEY_SPEC_SESSION_KEYRING) == "keyring;1000;1000;37000000;_ses"
    # by serial, possession needs a search from the caller's keyrings, which SEARCH now denies
    assert not kernel.possessed(ALICE, kernel.keys[ring])
    assert errno_of(kernel.describe, ALICE, ring) == errno.EACCES
    assert errno_of(kernel.watch_key, ALICE, ring, new_queue(), 1) == errno.EACCES
    kernel.watch_key(ALICE, abi.KEY_SPEC_SESSION_KEYRING, new_queue(), 1)


# ---------------------------------------------------------------- possession

def test_possession_through_a_shared_session(kernel: Kernel, q: WatchQueue) -> None:
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


def test_possession_through_user_session_keyring_when_no_session(kernel: Kernel) -> None:
    no_ses = Cred(1000, 1000, thread="tx", process="px", session="x", implicit_session=False)
    key = kernel.add_key(no_ses, "user", "k", b"v", abi.KEY_SPEC_USER_SESSION_KEYRING)
    kernel.setperm(no_ses, key, abi.KEY_POS_ALL)  # possessor only
    assert kernel.describe(no_ses, key) == "user;1000;1000;3f000000;k"
    # the same uid with its own session keyring does not possess @us's keys
    ses(kernel, ALICE)
    assert errno_of(kernel.describe, ALICE, key) == errno.EACCES
    assert errno_of(kernel.watch_key, ALICE, key, new_queue(), 1) == errno.EACCES
    kernel.watch_key(no_ses, key, new_queue(), 1)


def test_possession_through_thread_keyring_is_per_thread(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_THREAD_KEYRING)
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL)
    other_thread = Cred(1000, 1000, thread="ta2", process="pa", session="sa")
    assert kernel.describe(ALICE, key) == "user;1000;1000;3f000000;k"
    assert errno_of(kernel.describe, other_thread, key) == errno.EACCES


def test_possession_via_process_keyring_shared_by_threads(kernel: Kernel) -> None:
    key = kernel.add_key(ALICE, "user", "k", b"v", abi.KEY_SPEC_PROCESS_KEYRING)
    kernel.setperm(ALICE, key, abi.KEY_POS_ALL)
    same_process = Cred(1000, 1000, thread="ta2", process="pa", session="zz")
    other_process = Cred(1000, 1000, thread="ta3", process="pa3", session="sa")
    assert kernel.describe(same_process, key).endswith(";3f000000;k")
    assert errno_of(kernel.describe, other_process, key) == errno.EACCES


def test_possession_goes_through_an_expired_keyring_but_not_a_revoked_one(kernel: Kernel, clock: Clock) -> None:
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


def test_request_key_combines_the_callers_keyrings_as_the_kernel_does(kernel: Kernel) -> None:
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
