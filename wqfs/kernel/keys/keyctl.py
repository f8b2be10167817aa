"""security/keys/keyctl.c: the add_key and keyctl system calls, as the thin layer the kernel
makes them: the scalar checks, the lookups with the permission each needs
(lookup_user_key), then one call into key.py, keyring.py, process_keys.py or request_key.py.

Each function takes the caller's Cred first and raises KernelError with the kernel's errno,
in the kernel's order. The Kernel object binds them as its methods, so a front writes
kernel.add_key(cred, ...).
"""
from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Optional

from ... import abi
from ..cred import Cred
from ..errors import KernelError
from ..security.security import security_key_getsecurity, security_watch_key
from ..watch_queue import Watch, WatchQueue, add_watch_to_object, find_watch, remove_watch_from_object
from . import permission
from .key import (Key, KeyState, check_add_key_payload, check_update_payload, describe_key, instantiate, key_alloc, key_invalidate, key_revoke,
                  key_set_timeout, key_update, notify_key)
from .key_type import KeyType, check_type_name, lookup_type
from .keyring import (check_keyring, check_keyring_name, check_link, check_link_restriction, key_link,
                      key_link_begin, key_move, key_unlink, keyring_clear, keyring_read, keyring_restrict,
                      search_tree)
from .process_keys import lookup_keyring, lookup_user_key, possessed
from .gc import key_gc_unused_key
from .request_key import has_authority, instantiate as instantiate_constructed
from .request_key_auth import change_reqkey_auth, key_get_instantiation_authkey

if TYPE_CHECKING:
    from ..kernel import Kernel


def _add_key_target(k: Kernel, cred: Cred, type_name: str, description: str,
                    payload: Optional[bytes], ring_id: int) -> tuple[Key, KeyType]:
    """sys_add_key's checks, in its order, up to key_create_or_update's restriction check (the
    payload's own, when there is one yet)."""
    check_type_name(type_name)
    if type_name == "keyring":
        check_keyring_name(description)
    if payload is not None:
        check_add_key_payload(len(payload))
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_WRITE)
    ktype = lookup_type(type_name, unknown=errno.ENODEV)
    if not description:  # add_key makes "" NULL, and only a preparse could name the key
        raise KernelError(errno.EINVAL, "a description is required")
    ktype.check_description(description)
    if payload is not None:
        ktype.check_payload(payload)
    check_link_restriction(ring)
    return ring, ktype


def check_add_key(k: Kernel, cred: Cred, type_name: str, description: str, ring_id: int) -> None:
    """KernelError unless an add_key of this type and description into ring_id would pass every
    check before its payload's: for a front that makes a key in steps (a file created now,
    its payload written later), so that the creation fails as the add_key would."""
    _add_key_target(k, cred, type_name, description, None, ring_id)


def add_key(k: Kernel, cred: Cred, type_name: str, description: str, payload: bytes, ring_id: int) -> int:
    """add_key(2): needs WRITE on the keyring; an existing key of the same type and description
    there is updated (key_create_or_update), which needs WRITE on it."""
    ring, ktype = _add_key_target(k, cred, type_name, description, payload, ring_id)
    if ktype.updatable:
        assert ring.members is not None
        existing = ring.members.get((type_name, description))
        if existing is not None and not existing.revoked and not existing.invalidated and not existing.dead:
            permission.check(existing, cred, abi.KEY_WRITE, possessed(k, cred, existing))
            key_update(k, existing, payload)
            return existing.serial
    with key_link_begin(k, ring, (type_name, description)) as charged:
        key = key_alloc(k, cred, ktype, description, ktype.default_perm())
        try:
            instantiate(k, key, payload)
        except KernelError:
            key_gc_unused_key(k, key)
            raise
    key_link(k, ring, key, charged)
    return key.serial


def add_key_payload_limit(type_name: str) -> int:
    """The largest payload an add_key of this type takes (its preparse's limit, and add_key's)."""
    return min(lookup_type(type_name, unknown=errno.ENODEV).max_payload, abi.ADD_KEY_MAX_PAYLOAD)


def update(k: Kernel, cred: Cred, key_id: int, payload: bytes) -> None:
    """KEYCTL_UPDATE: needs WRITE; up to a page of payload; EOPNOTSUPP for a type without update."""
    check_update_payload(len(payload))
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_WRITE)
    if not key.type.updatable:
        raise KernelError(errno.EOPNOTSUPP, f"{key.type.name} keys cannot be updated")
    key.type.check_payload(payload)
    key_update(k, key, payload)


def write_limit(k: Kernel, cred: Cred, key_id: int) -> int:
    """What a writer of the key may write at most, checked as its write will be: a key under
    construction is instantiated (a user payload's 32767 bytes; lookup_user_key with
    KEY_LOOKUP_PARTIAL and WRITE), any other updated (a page, WRITE)."""
    key, _ = lookup_user_key(k, cred, key_id, partial=True, defer=True)
    if key.state is KeyState.UNINSTANTIATED:
        lookup_user_key(k, cred, key_id, abi.KEY_WRITE, partial=True)
        return add_key_payload_limit(key.type.name)
    lookup_user_key(k, cred, key_id, abi.KEY_WRITE)
    return abi.UPDATE_MAX_PAYLOAD


def write_payload(k: Kernel, cred: Cred, key_id: int, payload: bytes) -> None:
    """A key's new payload from a writer: KEYCTL_INSTANTIATE of a key under construction (its
    authority needed), KEYCTL_UPDATE of any other."""
    key = k.keys.get(key_id)
    if key is not None and key.state is KeyState.UNINSTANTIATED:
        instantiate_constructed(k, cred, key_id, payload, 0)
    else:
        update(k, cred, key_id, payload)


def read(k: Kernel, cred: Cred, key_id: int, buflen: int = 0) -> bytes:
    """KEYCTL_READ's data: needs READ, or possession (keyctl_read_key). buflen, the caller's
    buffer (0: none), matters to a keyring (keyring_read)."""
    try:
        key, is_possessed = lookup_user_key(k, cred, key_id, defer=True)
    except KernelError as error:
        raise KernelError(errno.ENOKEY, error.detail) from None
    if key.state is KeyState.NEGATIVE:
        raise KernelError(key.reject_error, f"key {key.serial} is negative")
    if not permission.permitted(key, cred, abi.KEY_READ, is_possessed) and not is_possessed:
        raise KernelError(errno.EACCES, f"key {key.serial}: permission denied")
    if not key.type.readable:
        raise KernelError(errno.EOPNOTSUPP, f"{key.type.name} keys cannot be read")
    permission.key_validate(k, key)
    if key.state is KeyState.UNINSTANTIATED:
        raise KernelError(errno.ENOKEY, f"key {key.serial} is under construction")
    if key.is_keyring:
        return keyring_read(key, buflen)
    return key.payload


def check_read(k: Kernel, cred: Cred, key_id: int) -> None:
    """KernelError unless KEYCTL_READ of key_id would succeed for cred (READ, or possession),
    for a front that shows what a read reveals without the data, such as a keyring's member
    serials. It is read itself, so that the rule is written once; a read has no side effect,
    and a keyring's is one pass over its links."""
    read(k, cred, key_id)


def describe(k: Kernel, cred: Cred, key_id: int) -> str:
    """KEYCTL_DESCRIBE: needs VIEW (or the authority over a key under construction)."""
    try:
        key, _ = lookup_user_key(k, cred, key_id, abi.KEY_VIEW, partial=True)  # no CREATE
    except KernelError as error:
        if error.errno != errno.EACCES or not has_authority(k, cred, key_id):
            raise
        key = k.keys[key_id]  # viewing a key under construction with its authority
    return describe_key(key)


def link(k: Kernel, cred: Cred, key_id: int, ring_id: int) -> None:
    """KEYCTL_LINK: WRITE on the keyring, LINK on the key."""
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_WRITE)
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_LINK, create=True)
    check_link(ring, key)
    key_link(k, ring, key)


def unlink(k: Kernel, cred: Cred, key_id: int, ring_id: int) -> None:
    """KEYCTL_UNLINK: WRITE on the keyring; the key needs nothing (KEY_NEED_UNLINK)."""
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_WRITE, create=False)
    key, _ = lookup_user_key(k, cred, key_id, defer=True)
    key_unlink(k, ring, key)


def move(k: Kernel, cred: Cred, key_id: int, from_id: int, to_id: int, flags: int = 0) -> None:
    """KEYCTL_MOVE: LINK on the key, WRITE on both keyrings."""
    if flags & ~abi.KEYCTL_MOVE_EXCL:
        raise KernelError(errno.EINVAL, "unknown move flags")
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_LINK, create=True)
    source = lookup_keyring(k, cred, from_id, abi.KEY_WRITE, create=False)
    target = lookup_keyring(k, cred, to_id, abi.KEY_WRITE)
    key_move(k, key, source, target, flags)


def clear(k: Kernel, cred: Cred, ring_id: int) -> None:
    """KEYCTL_CLEAR: WRITE on the keyring."""
    keyring_clear(k, lookup_keyring(k, cred, ring_id, abi.KEY_WRITE))


def revoke(k: Kernel, cred: Cred, key_id: int) -> None:
    """KEYCTL_REVOKE: WRITE, or else SETATTR."""
    try:
        key, _ = lookup_user_key(k, cred, key_id, abi.KEY_WRITE)
    except KernelError as error:
        if error.errno != errno.EACCES:
            raise
        key, _ = lookup_user_key(k, cred, key_id, abi.KEY_SETATTR)
    key_revoke(k, key)


def invalidate(k: Kernel, cred: Cred, key_id: int) -> None:
    """KEYCTL_INVALIDATE: SEARCH."""
    key_invalidate(k, lookup_user_key(k, cred, key_id, abi.KEY_SEARCH)[0])


def setperm(k: Kernel, cred: Cred, key_id: int, perm: int) -> None:
    """KEYCTL_SETPERM: SETATTR, and the key's owner (or root)."""
    if perm & ~abi.KEY_PERM_VALID:
        raise KernelError(errno.EINVAL, f"permission {perm:#010x} has undefined bits")
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_SETATTR, create=True, partial=True)
    if not cred.is_admin and key.uid != cred.uid:
        raise KernelError(errno.EACCES, "only the owner may change a key's permissions")
    key.perm = perm
    key.ctime_ns = time.time_ns()
    k.process.changed()
    notify_key(k, key, abi.NOTIFY_KEY_SETATTR, 0)


def chown(k: Kernel, cred: Cred, key_id: int, uid: int, gid: int) -> None:
    """KEYCTL_CHOWN: SETATTR; only root gives a key away; a group must be one of the caller's.
    -1 leaves an id as it is (see id_arg)."""
    if uid == -1 and gid == -1:
        return
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_SETATTR, create=True, partial=True)
    if not cred.is_admin:
        if uid != -1 and uid != key.uid:
            raise KernelError(errno.EACCES, "only root may give a key away")
        if gid != -1 and gid != key.gid and not cred.in_group(gid):
            raise KernelError(errno.EACCES, f"you are not in group {gid}")
    if uid != -1 and uid != key.uid and key.quota_bytes >= 0:
        k.key_users.charge(uid, 1, key.quota_bytes)
        k.key_users.charge(key.uid, -1, -key.quota_bytes)
        key.uid = uid
    if gid != -1:
        key.gid = gid
    key.ctime_ns = time.time_ns()
    k.process.changed()
    notify_key(k, key, abi.NOTIFY_KEY_SETATTR, 0)


def set_timeout(k: Kernel, cred: Cred, key_id: int, timeout: int) -> None:
    """KEYCTL_SET_TIMEOUT: SETATTR; 0 clears the expiry."""
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_SETATTR, create=True, partial=True)
    key_set_timeout(k, key, timeout)
    key.ctime_ns = time.time_ns()
    k.process.changed()
    notify_key(k, key, abi.NOTIFY_KEY_SETATTR, 0)


def restrict_keyring(k: Kernel, cred: Cred, ring_id: int, type_name: Optional[str],
                     restriction: Optional[str]) -> None:
    """keyctl_restrict_keyring, then keyring_restrict: SETATTR. Both a type and a restriction,
    or neither (then the keyring takes no more links). Of the types here none defines a
    restriction (only asymmetric keys do): ENOENT for them, ENOKEY for an unknown one."""
    ring, _ = lookup_user_key(k, cred, ring_id, abi.KEY_SETATTR)
    if (type_name is None) != (restriction is None):
        raise KernelError(errno.EINVAL, "a key type and a restriction go together")
    check_keyring(ring)
    if type_name is not None:
        lookup_type(type_name)
        raise KernelError(errno.ENOENT, f"{type_name} keys define no link restrictions")
    keyring_restrict(k, ring)


def search(k: Kernel, cred: Cred, ring_id: int, type_name: str, description: str, dest_id: int = 0) -> int:
    """KEYCTL_SEARCH: SEARCH on the keyring (and on each keyring and key on the way); WRITE on
    dest and LINK on the key found, if it is to be linked."""
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_SEARCH, create=False)
    dest = lookup_keyring(k, cred, dest_id, abi.KEY_WRITE) if dest_id else None
    lookup_type(type_name)
    check_keyring(ring)
    found = search_tree(k, [ring], cred, type_name, description, possessed=possessed(k, cred, ring))
    if dest is not None:
        permission.check(found, cred, abi.KEY_LINK, possessed(k, cred, found))
        check_link(dest, found)
        key_link(k, dest, found)
    return found.serial


def get_keyring_id(k: Kernel, cred: Cred, key_id: int, create: bool) -> int:
    """KEYCTL_GET_KEYRING_ID: SEARCH."""
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_SEARCH, create=create)
    return key.serial


def get_security(k: Kernel, cred: Cred, key_id: int) -> str:
    """KEYCTL_GET_SECURITY: VIEW (or the authority); the label the security module gave the
    key (security_key_getsecurity), "" with no module or no label."""
    try:
        key, _ = lookup_user_key(k, cred, key_id, abi.KEY_VIEW, partial=True)  # no CREATE
    except KernelError as error:
        # as describe, but without the authority it is key_get_instantiation_authkey's ENOKEY
        if error.errno != errno.EACCES:
            raise
        if not has_authority(k, cred, key_id):
            raise KernelError(errno.ENOKEY, "no VIEW, and no request-key authority for the key") from None
        key = k.keys[key_id]
    if k.lsm is None:
        return ""
    return security_key_getsecurity(k.lsm, key)


def assume_authority(k: Kernel, cred: Cred, key_id: int) -> int:
    """KEYCTL_ASSUME_AUTHORITY (keyctl_assume_authority): the caller's thread assumes the
    authority to instantiate key_id, whose ".request_key_auth" token must be in its own keyrings
    (possession, SEARCH on the way, is all the permission needed), and gets the token's serial;
    0 gives any authority up and returns 0; a special ID is EINVAL."""
    if key_id < 0:
        raise KernelError(errno.EINVAL, "special key IDs cannot be assumed")
    if key_id == 0:
        change_reqkey_auth(k, cred, None)
        return 0
    authkey = key_get_instantiation_authkey(k, cred, key_id)
    change_reqkey_auth(k, cred, authkey)
    return authkey.serial


def capabilities() -> bytes:
    """KEYCTL_CAPABILITIES: what this emulation supports."""
    return bytes((abi.KEYCTL_CAPS0_CAPABILITIES | abi.KEYCTL_CAPS0_PERSISTENT_KEYRINGS
                  | abi.KEYCTL_CAPS0_INVALIDATE | abi.KEYCTL_CAPS0_RESTRICT_KEYRING | abi.KEYCTL_CAPS0_MOVE,
                  abi.KEYCTL_CAPS1_NS_KEYRING_NAME | abi.KEYCTL_CAPS1_NS_KEY_TAG
                  | abi.KEYCTL_CAPS1_NOTIFICATIONS))


def watch_key(k: Kernel, cred: Cred, key_id: int, queue: Optional[WatchQueue], tag: int,
              watch_limit: int = 1024) -> None:
    """KEYCTL_WATCH_KEY: VIEW on the key. The tag's range, the key, the queue, then add (the
    security module's say, security_watch_key; EBUSY, EAGAIN past watch_limit, the caller's
    RLIMIT_NOFILE) or, for tag -1, remove (EBADSLT)."""
    if tag < -1 or tag > 0xFF:
        raise KernelError(errno.EINVAL, "the watch tag is -1..255")
    key, _ = lookup_user_key(k, cred, key_id, abi.KEY_VIEW, create=True)
    if queue is None or queue.defunct:
        raise KernelError(errno.EINVAL, "not a notification queue")
    if tag >= 0:
        if k.lsm is not None:
            security_watch_key(k.lsm, cred, key)
        watch = Watch(queue, key.watchers, abi.WATCH_TYPE_KEY_NOTIFY, key.serial, tag, cred.uid, cred)
        add_watch_to_object(watch, k.watch_counts, watch_limit)
        return
    existing = find_watch(queue, abi.WATCH_TYPE_KEY_NOTIFY, key.serial)
    if existing is None:
        raise KernelError(errno.EBADSLT, f"the queue does not watch key {key.serial}")
    remove_watch_from_object(existing, k.watch_counts)
