"""security/keys/request_key.c (request_key_and_link, construct_alloc_key) and the authority
to instantiate that request_key_auth.c gives: what `keyctl request`, `keyctl instantiate`
and `keyctl reject` reach.

No upcall is made: a key is found in the caller's keyrings or the request fails with ENOKEY.
Construction is explicit: construct_key makes a key under construction, and its maker (or
root) holds what stands in for the request-key authority until it instantiates or rejects it.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ... import abi
from ..cred import Cred
from ..errors import KernelError
from .key import Key, KeyState, check_add_key_payload, instantiate as instantiate_key, key_alloc, key_reject
from .key_type import lookup_type
from .keyring import check_link, check_link_restriction, key_link, key_link_begin, search_tree
from .process_keys import lookup_keyring, search_roots

if TYPE_CHECKING:
    from ..kernel import Kernel


def request_key(k: Kernel, cred: Cred, type_name: str, description: str, dest_id: int = 0) -> int:
    """request_key without an upcall: found in the caller's keyrings (possessed, expired keys
    skipped), or ENOKEY; linked into dest (WRITE) if one is given."""
    lookup_type(type_name)
    dest = lookup_keyring(k, cred, dest_id, abi.KEY_WRITE) if dest_id else None
    found = search_tree(k, search_roots(k, cred), cred, type_name, description, possessed=True,
                        skip_expired=True)
    if dest is not None:
        check_link(dest, found)
        key_link(k, dest, found)
    return found.serial


def construct_key(k: Kernel, cred: Cred, type_name: str, description: str, ring_id: int) -> int:
    """construct_alloc_key: a key under construction in ring (WRITE), for instantiate or reject."""
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_WRITE)
    ktype = lookup_type(type_name)
    if not description:
        raise KernelError(errno.EINVAL, "a description is required")
    ktype.check_description(description)
    check_link_restriction(ring)
    with key_link_begin(k, ring, (type_name, description)) as charged:
        key = key_alloc(k, cred, ktype, description, ktype.default_perm())
    key.constructor_uid = cred.uid
    key_link(k, ring, key, charged)
    return key.serial


def has_authority(k: Kernel, cred: Cred, key_id: int) -> bool:
    """What stands in for an assumed request-key authority: the key is under construction
    and the caller made it (or is root)."""
    key = k.keys.get(key_id) if key_id > 0 else None
    return (key is not None and not key.dead and key.state is KeyState.UNINSTANTIATED
            and (key.constructor_uid == cred.uid or cred.is_admin))


def construction_target(k: Kernel, cred: Cred, key_id: int) -> Key:
    """The key an instantiate or reject is for: EPERM without the authority over it."""
    if not has_authority(k, cred, key_id):
        raise KernelError(errno.EPERM, f"no authority to instantiate key {key_id}")
    return k.keys[key_id]


def instantiate(k: Kernel, cred: Cred, key_id: int, payload: bytes, ring_id: int = 0) -> None:
    """keyctl_instantiate_key_common: needs the authority, and WRITE on the keyring to link into."""
    check_add_key_payload(len(payload))
    key = construction_target(k, cred, key_id)
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_WRITE) if ring_id else None
    key.type.check_payload(payload)
    if ring is not None:
        check_link(ring, key)
    with key_link_begin(k, ring, key.index_key) as charged:
        instantiate_key(k, key, payload)
    if ring is not None:
        key_link(k, ring, key, charged)


def reject(k: Kernel, cred: Cred, key_id: int, timeout: int, error: int, ring_id: int = 0) -> None:
    """keyctl_reject_key: an error the kernel may store; the authority; WRITE on the keyring."""
    if error <= 0 or error >= 4096 or error in (512, 513, 514, 516):
        raise KernelError(errno.EINVAL, f"cannot reject with error {error}")
    key = construction_target(k, cred, key_id)
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_WRITE) if ring_id else None
    if ring is not None:
        check_link(ring, key)
    with key_link_begin(k, ring, key.index_key) as charged:
        key_reject(k, key, timeout, error)
    if ring is not None:
        key_link(k, ring, key, charged)
    k.gc.wake()


def negate(k: Kernel, cred: Cred, key_id: int, timeout: int, ring_id: int = 0) -> None:
    """keyctl_negate_key: reject with ENOKEY."""
    reject(k, cred, key_id, timeout, errno.ENOKEY, ring_id)
