"""security/keys/keyring.c: keyring_alloc, the link machinery (__key_link_begin,
__key_link_check_restriction, __key_link, __key_link_end), key_unlink, key_move,
keyring_clear, keyring_revoke's release of members, keyring_detect_cycle, the search
(keyring_search_rcu, search_nested_keyrings), find_keyring_by_name and keyring_read.

Checks of the caller's permission are keyctl.py's; these functions keep the keyring's own
rules (restrictions, cycles, depth, the link quota) and post the keyring's records.
"""
from __future__ import annotations

import contextlib
import errno
import time
from typing import TYPE_CHECKING, Iterator, Optional, Union

from ... import abi
from ..cred import Cred
from ..errors import KernelError
from . import permission
from .key import Key, KeyState, desc_quota, instantiate, key_alloc, key_payload_reserve, notify_key
from .key_type import KEYRING

if TYPE_CHECKING:
    from ..kernel import Kernel


def keyring_alloc(k: Kernel, cred: Cred, description: str, perm: int, uid: Optional[int] = None,
                  gid: Optional[int] = None, in_quota: bool = True) -> Key:
    """A new, instantiated, empty keyring."""
    ring = key_alloc(k, cred, KEYRING, description, perm, uid, gid, in_quota)
    instantiate(k, ring, b"")
    return ring


@contextlib.contextmanager
def key_link_begin(k: Kernel, ring: Optional[Key], index_key: tuple[str, str]) -> Iterator[bool]:
    """__key_link_begin .. __key_link_end: the keyring's link bytes are charged before
    anything is made or changed (a new key, an instantiation, a move), and given back if
    that fails; a full quota (EDQUOT) thus changes nothing. Yields whether it charged
    (never, with no keyring to link into)."""
    charged = (ring is not None and ring.quota_bytes >= 0 and ring.members is not None
               and index_key not in ring.members)
    if charged:
        assert ring is not None
        key_payload_reserve(k, ring, ring.quota_bytes + abi.KEYQUOTA_LINK_BYTES)
    try:
        yield charged
    except BaseException:
        if charged:
            assert ring is not None
            key_payload_reserve(k, ring, ring.quota_bytes - abi.KEYQUOTA_LINK_BYTES)
        raise


def check_keyring_name(name: str) -> None:
    """EPERM for a keyring name starting with '.': those are the kernel's own (sys_add_key,
    keyctl_join_session_keyring)."""
    if name.startswith("."):
        raise KernelError(errno.EPERM, "keyring names starting with '.' are reserved")


def check_keyring(ring: Key) -> None:
    """ENOTDIR unless ring is a keyring."""
    if not ring.is_keyring:
        raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")


def check_link_restriction(ring: Key) -> None:
    """__key_link_check_restriction: a keyring, and not restricted (EPERM)."""
    check_keyring(ring)
    if ring.restricted is not None:
        raise KernelError(errno.EPERM, f"keyring {ring.serial} is restricted")


def check_link(ring: Key, key: Key) -> None:
    """Whether key may be linked into ring: its restriction, then (for a keyring) a cycle."""
    check_link_restriction(ring)
    if key.is_keyring:
        keyring_detect_cycle(ring, key)


def key_link(k: Kernel, ring: Key, key: Key, charged: bool = False) -> None:
    """__key_link: the member replaces any key of the same type and description;
    NOTIFY_KEY_LINKED."""
    assert ring.members is not None
    displaced = ring.members.get(key.index_key)
    if displaced is not key:
        if displaced is None:
            if ring.quota_bytes >= 0 and not charged:
                key_payload_reserve(k, ring, ring.quota_bytes + abi.KEYQUOTA_LINK_BYTES)
        else:
            drop_link(k, ring, displaced)
        ring.members[key.index_key] = key
        key.parents[ring.serial] = ring
        if key.is_keyring:
            ring.subrings[key.serial] = key
            k.process.changed()
    ring.touch()
    notify_key(k, ring, abi.NOTIFY_KEY_LINKED, key.serial)


def _remove_link(k: Kernel, ring: Key, key: Key) -> None:
    """The one way a link goes: out of the keyring's index and the key's parents; the link's
    reference is dropped after an RCU grace period (keyring_free_object)."""
    assert ring.members is not None
    if ring.members.get(key.index_key) is key:
        del ring.members[key.index_key]
    key.parents.pop(ring.serial, None)
    ring.subrings.pop(key.serial, None)
    if key.is_keyring:
        k.process.changed()
    k.gc.put_after_grace(key)


def drop_link(k: Kernel, ring: Key, key: Key) -> None:
    """Remove a link with no record (displacement, clear, revoke, GC)."""
    _remove_link(k, ring, key)


def key_unlink(k: Kernel, ring: Key, key: Key) -> None:
    """key_unlink: ENOENT unless key is in ring; the link's bytes given back;
    NOTIFY_KEY_UNLINKED."""
    check_keyring(ring)
    assert ring.members is not None
    if ring.members.get(key.index_key) is not key:
        raise KernelError(errno.ENOENT, f"key {key.serial} is not in keyring {ring.serial}")
    _remove_link(k, ring, key)
    if ring.quota_bytes >= 0:
        key_payload_reserve(k, ring, max(desc_quota(ring.description),
                                         ring.quota_bytes - abi.KEYQUOTA_LINK_BYTES))
    ring.touch()
    notify_key(k, ring, abi.NOTIFY_KEY_UNLINKED, key.serial)


def key_move(k: Kernel, key: Key, source: Key, target: Key, flags: int) -> None:
    """key_move: ENOTDIR, ENOENT, EEXIST (KEYCTL_MOVE_EXCL), the target's restriction and cycle
    check, then unlinked from source and linked into target; on EDQUOT the key stays put."""
    if source is target:
        return
    if not source.is_keyring or not target.is_keyring:
        raise KernelError(errno.ENOTDIR, "move needs two keyrings")
    assert source.members is not None and target.members is not None
    if source.members.get(key.index_key) is not key:
        raise KernelError(errno.ENOENT, f"key {key.serial} is not in keyring {source.serial}")
    if flags & abi.KEYCTL_MOVE_EXCL and key.index_key in target.members:
        raise KernelError(errno.EEXIST, f"keyring {target.serial} already holds {key.type.name}:{key.description}")
    check_link(target, key)
    with key_link_begin(k, target, key.index_key) as charged:
        key.pins += 1  # keep it alive between the unlink and the link
        _remove_link(k, source, key)
        source.touch()
        notify_key(k, source, abi.NOTIFY_KEY_UNLINKED, key.serial)
    key_link(k, target, key, charged)
    key.pins -= 1


def keyring_release_members(k: Kernel, ring: Key) -> None:
    """Empty a keyring silently (revoke, clear, destruction)."""
    if ring.members:
        for member in list(ring.members.values()):
            drop_link(k, ring, member)
        if ring.quota_bytes >= 0:
            key_payload_reserve(k, ring, desc_quota(ring.description))


def keyring_clear(k: Kernel, ring: Key) -> None:
    """ENOTDIR for a key that is no keyring (a restriction only keeps keys out: clearing is
    allowed); NOTIFY_KEY_CLEARED."""
    check_keyring(ring)
    keyring_release_members(k, ring)
    ring.touch()
    notify_key(k, ring, abi.NOTIFY_KEY_CLEARED, 0)


def keyring_restrict(k: Kernel, ring: Key) -> None:
    """A keyring that takes no more links (EEXIST if it has a restriction already);
    NOTIFY_KEY_SETATTR."""
    if ring.restricted is not None:
        raise KernelError(errno.EEXIST, f"keyring {ring.serial} is already restricted")
    ring.restricted = ""
    ring.ctime_ns = time.time_ns()
    notify_key(k, ring, abi.NOTIFY_KEY_SETATTR, 0)


def keyring_detect_cycle(ring: Key, key: Key) -> None:
    """keyring_detect_cycle: a search of key's tree for ring, depth first, that fails with
    EDEADLK when it finds ring and with ELOOP when it would go deeper than
    KEYRING_SEARCH_MAX_DEPTH. A subtree already walked without finding ring is not walked
    again unless, entered deeper now, it could reach past the limit."""
    if key is ring:
        raise KernelError(errno.EDEADLK, "a keyring cannot hold itself")
    reach: dict[int, int] = {}  # keyring -> how far below it a descent is tried (-1: none)

    def walk(node: Key, depth: int) -> int:
        known = reach.get(node.serial)
        if known is not None and depth + known < abi.KEYRING_SEARCH_MAX_DEPTH:
            return known
        if ring.serial in node.subrings:
            raise KernelError(errno.EDEADLK, "the link would make a cycle")
        below = -1
        for sub in node.subrings.values():
            if depth >= abi.KEYRING_SEARCH_MAX_DEPTH:
                raise KernelError(errno.ELOOP, "keyrings would nest too deep")
            below = max(below, 0)
            if not (sub.dead or sub.revoked or sub.invalidated):
                below = max(below, 1 + walk(sub, depth + 1))
        reach[node.serial] = below
        return below

    walk(key, 0)


def keyring_read(ring: Key, buflen: int) -> bytes:
    """keyring_read: the members' serials; only whole serials fit a buffer of up to a page, the
    one keyctl_read_key hands it directly (EINVAL otherwise)."""
    assert ring.members is not None
    if 0 < buflen <= abi.PAGE_SIZE and buflen % 4:
        raise KernelError(errno.EINVAL, "a keyring is read in whole serials")
    return b"".join(m.serial.to_bytes(4, "little") for m in ring.members.values())


def keyring_members(ring: Key) -> list[Key]:
    """The keyring's members in link order (what keyring_read lists), for a front that shows them."""
    check_keyring(ring)
    assert ring.members is not None
    return list(ring.members.values())


def find_member(k: Kernel, ring: Key, name: Union[int, tuple[str, str]]) -> Optional[Key]:
    """The member of ring with this serial, or with this (type, description) (the one
    __key_link_lookup would find). No permission is checked."""
    check_keyring(ring)
    assert ring.members is not None
    if isinstance(name, int):
        key = k.keys.get(name)
        return key if key is not None and ring.serial in key.parents else None
    return ring.members.get(name)


def find_keyring_by_name(k: Kernel, cred: Cred, name: str) -> Optional[Key]:
    """find_keyring_by_name: not revoked (expired will do), searchable without possession."""
    for key in k.keys.values():
        if (key.is_keyring and key.description == name and not key.dead and not key.revoked
                and permission.permitted(key, cred, abi.KEY_SEARCH, False)):
            return key
    return None


SearchResult = Union[Key, KernelError, None]


def search_tree(k: Kernel, rings: list[Key], cred: Cred, type_name: str, description: str,
                possessed: bool, skip_expired: bool = False) -> Key:
    """keyring_search_rcu of each ring in turn, combined as search_cred_keyrings_rcu does:
    the first key found wins; else "nothing here" or a negated key (ENOKEY) from any ring
    outranks every other error (revoked, expired, unsearchable, rejected), of which the
    last stands."""
    now = k.now()
    not_found: Optional[KernelError] = None
    other: Optional[KernelError] = None
    for ring in rings:
        result = search_nested_keyrings(ring, cred, (type_name, description), possessed, now, skip_expired)
        if isinstance(result, Key):
            return result
        if result is None:
            not_found = not_found or KernelError(errno.ENOKEY, f"no {type_name}:{description} found")
        elif result.errno == errno.ENOKEY:
            not_found = result
        else:
            other = result
    raise not_found or other or KernelError(errno.ENOKEY, f"no {type_name}:{description} found")


def search_nested_keyrings(top: Key, cred: Cred, index: tuple[str, str], possessed: bool,
                           now: float, skip_expired: bool) -> SearchResult:
    """search_nested_keyrings: depth first, each keyring's own match before its subkeyrings;
    a match that cannot be returned leaves its error, and the last such error stands."""
    result: Optional[KernelError] = None

    def consider(key: Key) -> SearchResult:  # keyring_search_iterator
        if key.dead:
            return None
        if key.revoked or key.invalidated:
            return KernelError(errno.EKEYREVOKED, f"key {key.serial} is revoked")
        if key.expired(now):
            return None if skip_expired else KernelError(errno.EKEYEXPIRED, f"key {key.serial} has expired")
        if not permission.permitted(key, cred, abi.KEY_SEARCH, possessed):
            return KernelError(errno.EACCES, f"key {key.serial} is not searchable")
        if key.state is KeyState.NEGATIVE:
            return KernelError(key.reject_error, f"key {key.serial} is negative")
        return key if key.state is KeyState.POSITIVE else None

    if (top.type.name, top.description) == index:  # the top keyring may be what is sought
        found = consider(top)
        if found is not None:
            return found  # a match, or (skipped_ret 2) the search ends with its error
    entered = {top.serial: 0}  # keyring -> the least depth it was entered at
    stack = [(top, 0)]
    while stack:
        ring, depth = stack.pop()
        assert ring.members is not None
        candidate = ring.members.get(index)
        if candidate is not None:
            found = consider(candidate)
            if isinstance(found, Key):
                return found
            result = found or result
        if depth >= abi.KEYRING_SEARCH_MAX_DEPTH:
            continue  # its members were looked at; its keyrings are too deep to enter
        for sub in reversed(list(ring.subrings.values())):  # in link order, depth first
            if entered.get(sub.serial, depth + 2) <= depth + 1 or sub.dead or sub.revoked or sub.invalidated:
                continue
            if not permission.permitted(sub, cred, abi.KEY_SEARCH, possessed):
                continue
            entered[sub.serial] = depth + 1
            stack.append((sub, depth + 1))
    return result
