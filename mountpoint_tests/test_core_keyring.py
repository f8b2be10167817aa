"""Unit tests of security/keys/keyring.c: links (__key_link, a link replacing the key of the
same type and description), cycle detection (keyring_detect_cycle: EDEADLK, and ELOOP past
KEYRING_SEARCH_MAX_DEPTH), searches (search_nested_keyrings, keyring_search_iterator) and
keyring_read.
"""
from __future__ import annotations

import errno

from corelib import ALICE, LINKED, Clock, drain, errno_of, key_rec, members, ses

from wqfs import abi
from wqfs.kernel import Kernel, WatchQueue


# ---------------------------------------------------------------- links and cycles

def test_link_displacing_same_description_posts_no_unlinked(kernel: Kernel, q: WatchQueue) -> None:
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


def test_link_cycle_is_edeadlk(kernel: Kernel, q: WatchQueue) -> None:
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


def test_keyrings_nest_at_most_six_deep_for_searches_possession_and_links(kernel: Kernel) -> None:
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


# ---------------------------------------------------------------- searches

def test_search_is_depth_first_each_keyring_before_its_subkeyrings(kernel: Kernel) -> None:
    ring = ses(kernel)
    first = kernel.add_key(ALICE, "keyring", "first", b"", ring)
    deep = kernel.add_key(ALICE, "keyring", "deep", b"", first)
    second = kernel.add_key(ALICE, "keyring", "second", b"", ring)
    in_deep = kernel.add_key(ALICE, "user", "k", b"deep", deep)
    kernel.add_key(ALICE, "user", "k", b"shallow", second)
    assert kernel.search(ALICE, ring, "user", "k") == in_deep
    top = kernel.add_key(ALICE, "user", "k", b"top", ring)
    assert kernel.search(ALICE, ring, "user", "k") == top


def test_a_match_that_cannot_be_returned_gives_its_error_not_enokey(kernel: Kernel, clock: Clock) -> None:
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


# ---------------------------------------------------------------- keyring_read

def test_a_keyring_is_read_in_whole_serials(kernel: Kernel) -> None:
    """keyring_read: EINVAL for a buffer that is no multiple of 4 (conformance/payload.c)."""
    ring = ses(kernel)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    assert errno_of(kernel.read, ALICE, ring, 2) == errno.EINVAL
    assert kernel.read(ALICE, ring, 4) == key.to_bytes(4, "little")
    assert kernel.read(ALICE, key, 3) == b"v"  # other types do not care
