"""Unit tests of security/keys/big_key.c: payloads up to add_key's 1 MiB - 1, a fixed quota
charge of 16 bytes, big_key_update's reservation of the whole new length, and revoke giving
the quota back (user_revoke does the same for user keys)."""
from __future__ import annotations

import errno

from corelib import BOB, errno_of

from wqfs import abi
from wqfs.kernel import Kernel

RING = abi.KEY_SPEC_USER_KEYRING
MIB = 1024 * 1024


def test_a_big_key_takes_what_add_key_takes_and_reads_back(kernel: Kernel) -> None:
    data = bytes(range(256)) * (MIB // 256)
    key = kernel.add_key(BOB, "big_key", "ticket", data[:MIB - 1], RING)
    assert kernel.read(BOB, key) == data[:MIB - 1]
    assert kernel.describe(BOB, key) == "big_key;1001;1001;3f010000;ticket"
    assert errno_of(kernel.add_key, BOB, "big_key", "huge", data, RING) == errno.EINVAL  # add_key's limit
    assert errno_of(kernel.add_key, BOB, "big_key", "empty", b"", RING) == errno.EINVAL
    assert kernel.add_key_payload_limit("big_key") == MIB - 1
    assert kernel.add_key_payload_limit("user") == abi.USER_MAX_PAYLOAD


def test_a_big_key_is_charged_16_bytes_whatever_its_size(kernel: Kernel) -> None:
    """Ten keys of nearly 1 MiB fit a 20000-byte quota: each costs its description and 16."""
    for i in range(10):
        kernel.add_key(BOB, "big_key", f"b{i}", b"x" * (MIB - 1), RING)
    assert errno_of(kernel.add_key, BOB, "user", "u", b"x" * 20000, RING) == errno.EDQUOT


def test_big_key_update_reserves_the_new_length_before_charging_16(kernel: Kernel) -> None:
    key = kernel.add_key(BOB, "big_key", "b", b"x", RING)
    filler = kernel.add_key(BOB, "user", "f", b"f" * 17000, RING)  # about 2900 bytes left
    assert errno_of(kernel.update, BOB, key, b"y" * 4096) == errno.EDQUOT
    kernel.update(BOB, key, b"y" * 2000)  # fits while reserved, then charged 16 again
    kernel.update(BOB, key, b"z" * 2000)
    assert kernel.read(BOB, key) == b"z" * 2000
    kernel.revoke(BOB, filler)  # user_revoke: key_payload_reserve(key, 0)
    kernel.update(BOB, key, b"y" * 4096)


def test_revoking_a_user_key_gives_its_payload_quota_back(kernel: Kernel) -> None:
    key = kernel.add_key(BOB, "user", "a", b"a" * 19000, RING)
    assert errno_of(kernel.add_key, BOB, "user", "b", b"b" * 5000, RING) == errno.EDQUOT
    kernel.revoke(BOB, key)
    kernel.add_key(BOB, "user", "b", b"b" * 5000, RING)
