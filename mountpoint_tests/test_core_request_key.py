"""Unit tests of security/keys/request_key.c and the end of construction: construct_alloc_key
links the key before it is instantiated, KEYCTL_INSTANTIATE, KEYCTL_NEGATE and KEYCTL_REJECT end
it (key.c __key_instantiate_and_link, key_reject_and_link), later lookups get the stored error
(wait_for_key_construction), and request_key links what it finds into its destination.
"""
from __future__ import annotations

import errno
from typing import Callable

import pytest

from corelib import ALICE, INST, LINKED, Clock, drain, errno_of, force_watch, key_rec, new_queue, ses

from wqfs.kernel import Kernel, KeyState, WatchQueue


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
