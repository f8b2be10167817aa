"""security/keys/process_keys.c: the per-user keyrings (look_up_user_keyrings), the thread,
process and session keyrings (install_*_keyring, join_session_keyring), the search of a
caller's own keyrings (search_cred_keyrings_rcu), possession, and lookup_user_key.

The kernel hangs these keyrings off the task's cred; here the Cred's thread, process and
session tokens (chosen by the front) name their owners. Possession (key_task_permission's
possessor byte) is what a search from the caller's keyrings can reach; it is cached per
Cred and dropped by every change a search depends on (ProcessKeyrings.changed).
"""
from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING, Hashable, Optional

from ... import abi
from ..cred import Cred
from ..errors import KernelError, KeyUnderConstruction
from . import permission
from .key import Key, KeyState, key_lookup
from .keyring import check_keyring_name, find_keyring_by_name, key_link, keyring_alloc

if TYPE_CHECKING:
    from ..kernel import Kernel

SPECIAL_KEYRING_PERM = abi.KEY_POS_ALL | abi.KEY_USR_VIEW  # _tid, _pid
SESSION_KEYRING_PERM = abi.KEY_POS_ALL | abi.KEY_USR_VIEW | abi.KEY_USR_READ  # anonymous _ses
JOINED_SESSION_PERM = SESSION_KEYRING_PERM | abi.KEY_USR_LINK  # named by join
USER_KEYRING_PERM = (abi.KEY_POS_ALL & ~abi.KEY_POS_SETATTR) | abi.KEY_USR_ALL

OWNER_KINDS = ("thread", "process", "session")


class ProcessKeyrings:
    """Who holds which keyring: the per-uid pair, and thread, process and session keyrings by
    their owner's token; and the possession cache with the version that invalidates it."""

    __slots__ = ("user", "tables", "version", "reach_cache")

    def __init__(self) -> None:
        self.user: dict[int, tuple[Key, Key]] = {}
        self.tables: dict[str, dict[Hashable, Key]] = {kind: {} for kind in OWNER_KINDS}
        self.version = 0  # bumped by every change to keyring topology or permissions
        self.reach_cache: dict[Cred, tuple[int, frozenset[int]]] = {}

    def changed(self) -> None:
        """Something a possession search depends on changed: keyrings, their links, perms, owners.

        Links of keys that are not keyrings never change a search's reach (it only walks
        keyrings), so the hot operations on plain keys leave the reach cache valid.
        """
        self.version += 1
        if len(self.reach_cache) > 4096:
            self.reach_cache.clear()


def look_up_user_keyrings(k: Kernel, uid: int) -> tuple[Key, Key]:
    """The per-UID keyring and user-session keyring, made on first use as the kernel does."""
    pair = k.process.user.get(uid)
    if pair is None:
        owner = Cred(uid, -1)
        user = keyring_alloc(k, owner, f"_uid.{uid}", USER_KEYRING_PERM, uid, -1, in_quota=False)
        session = keyring_alloc(k, owner, f"_uid_ses.{uid}", USER_KEYRING_PERM, uid, -1, in_quota=False)
        user.pins += 1
        session.pins += 1
        key_link(k, session, user)
        pair = (user, session)
        k.process.user[uid] = pair
    return pair


def install_keyring(k: Kernel, kind: str, owner: Hashable, ring: Key) -> None:
    """install_{thread,process,session}_keyring_to_cred: ring replaces the owner's old one."""
    table = k.process.tables[kind]
    old = table.get(owner)
    ring.pins += 1
    table[owner] = ring
    if old is not None:
        old.pins -= 1  # the old cred's reference, put after a grace period (put_cred_rcu)
        k.gc.put_after_grace(old)
    k.process.changed()


def owner_gone(k: Kernel, kind: str, owner: Hashable) -> None:
    """A thread, process or session ended: the keyring it held is let go."""
    ring = k.process.tables[kind].pop(owner, None)
    if ring is not None:
        ring.pins -= 1  # exit_creds: put_cred, whose key_put runs after a grace period
        k.process.changed()
        k.gc.put_after_grace(ring)


def owners(k: Kernel, kind: str) -> list[Hashable]:
    """The tokens of every thread, process or session that holds a keyring, for the front
    that knows when they end."""
    return list(k.process.tables[kind])


def session_keyring(k: Kernel, cred: Cred) -> Optional[Key]:
    """The caller's own session keyring, None when it has none (and @s is the user session)."""
    return k.process.tables["session"].get(cred.session)


def _special(k: Kernel, cred: Cred, key_id: int, create: bool) -> Key:
    """lookup_user_key's switch on a special id (KEY_LOOKUP_CREATE: make what is missing)."""
    if key_id in (abi.KEY_SPEC_THREAD_KEYRING, abi.KEY_SPEC_PROCESS_KEYRING):
        kind, owner, description = (("thread", cred.thread, "_tid") if key_id == abi.KEY_SPEC_THREAD_KEYRING
                                    else ("process", cred.process, "_pid"))
        ring = k.process.tables[kind].get(owner)
        if ring is None:
            if not create:
                raise KernelError(errno.ENOKEY, f"no {kind} keyring")
            ring = keyring_alloc(k, cred, description, SPECIAL_KEYRING_PERM)
            install_keyring(k, kind, owner, ring)
        return ring
    if key_id == abi.KEY_SPEC_SESSION_KEYRING:
        ring = session_keyring(k, cred)
        user_session = look_up_user_keyrings(k, cred.uid)[1]
        if not cred.implicit_session:
            return user_session if ring is None else ring
        # "always install a session keyring upon access if one doesn't exist yet": a new
        # anonymous one for KEY_LOOKUP_CREATE (join_session_keyring(NULL)), else the
        # user-session keyring (install_session_keyring); and KEY_LOOKUP_CREATE when the
        # session keyring is the user-session keyring joins a new one too
        if ring is None or (create and ring is user_session):
            ring = keyring_alloc(k, cred, "_ses", SESSION_KEYRING_PERM) if create else user_session
            install_keyring(k, "session", cred.session, ring)
        return ring
    if key_id == abi.KEY_SPEC_USER_KEYRING:
        return look_up_user_keyrings(k, cred.uid)[0]
    if key_id == abi.KEY_SPEC_USER_SESSION_KEYRING:
        return look_up_user_keyrings(k, cred.uid)[1]
    if key_id in (abi.KEY_SPEC_REQKEY_AUTH_KEY, abi.KEY_SPEC_REQUESTOR_KEYRING):
        from .request_key_auth import lookup_authority_special  # which builds on this file
        found = lookup_authority_special(k, cred, key_id)
        assert found is not None
        return found
    raise KernelError(errno.EINVAL, f"invalid key ID {key_id}")


def search_roots(k: Kernel, cred: Cred) -> list[Key]:
    """The keyrings search_cred_keyrings_rcu starts from, in its order: thread, process, then
    session (the user session keyring when there is none)."""
    roots = []
    for kind, owner in (("thread", cred.thread), ("process", cred.process)):
        ring = k.process.tables[kind].get(owner)
        if ring is not None:
            roots.append(ring)
    session = session_keyring(k, cred)
    roots.append(session if session is not None else look_up_user_keyrings(k, cred.uid)[1])
    return roots


def _reach(k: Kernel, cred: Cred) -> frozenset[int]:
    """Serials of the keyrings a possession search from cred's keyrings can enter."""
    cached = k.process.reach_cache.get(cred)
    if cached is not None and cached[0] == k.process.version:
        return cached[1]
    reach: set[int] = set()
    # breadth first, so that each keyring is met at its least depth: a keyring nested
    # deeper than KEYRING_SEARCH_MAX_DEPTH is not entered (its own link is still found,
    # as a member of the keyring above it)
    queue = deque((ring, 0) for ring in search_roots(k, cred))
    while queue:
        ring, depth = queue.popleft()
        # KEYRING_SEARCH_NO_STATE_CHECK: an expired keyring is entered, a revoked one not
        if ring.serial in reach or ring.dead or ring.revoked or ring.invalidated:
            continue
        if not permission.permitted(ring, cred, abi.KEY_SEARCH, True):
            continue
        reach.add(ring.serial)
        if depth < abi.KEYRING_SEARCH_MAX_DEPTH:
            queue.extend((sub, depth + 1) for sub in ring.subrings.values())
    result = frozenset(reach)
    k.process.reach_cache[cred] = (k.process.version, result)
    return result


def possessed(k: Kernel, cred: Cred, key: Key) -> bool:
    """Whether cred possesses key, as search_process_keyrings_rcu decides it: a search from its
    own keyrings would find it, or, for a caller holding a request-key authority, one from the
    requester's (never an authorization key that way)."""
    if _possessed_own(k, cred, key):
        return True
    if not k.authorities.assumed:  # nobody holds an authority: the common case, at once
        return False
    from .request_key_auth import REQUEST_KEY_AUTH, authority_credentials  # which builds on this file
    requester = authority_credentials(k, cred)
    return requester is not None and key.type is not REQUEST_KEY_AUTH and _possessed_own(k, requester, key)


def _possessed_own(k: Kernel, cred: Cred, key: Key) -> bool:
    reach = _reach(k, cred)
    if key.serial in reach:
        return True
    if not reach.isdisjoint(key.parents):  # linked in a keyring the search enters
        return permission.permitted(key, cred, abi.KEY_SEARCH, True)
    return False


def key_task_permission(k: Kernel, cred: Cred, key: Key, need: int) -> bool:
    """key_task_permission with the caller's possession as the kernel finds it; possession is
    looked for only when the other bits do not grant need (it only adds the possessor's)."""
    return (permission.permitted(key, cred, need, False)
            or permission.permitted(key, cred, need, possessed(k, cred, key)))


def key_task_rights(k: Kernel, cred: Cred, key: Key) -> int:
    """Every permission bit cred has on key, possession counted: what the tree shows as the
    caller's own rwx."""
    return permission.rights(key, cred, possessed(k, cred, key))


def lookup_user_key(k: Kernel, cred: Cred, key_id: int, need: int = 0, create: bool = False,
                    partial: bool = False, defer: bool = False) -> tuple[Key, bool]:
    """lookup_user_key: resolve, check state, then permission. Returns (key, possessed).

    create: KEY_LOOKUP_CREATE; partial: KEY_LOOKUP_PARTIAL (a key under construction or
    negative will do); defer: KEY_DEFER_PERM_CHECK (neither state nor permission checked).
    A key under construction raises KeyUnderConstruction, where the kernel would wait."""
    if key_id > 0:
        key = key_lookup(k, key_id)
        is_possessed = possessed(k, cred, key)
    elif key_id == 0 or key_id < abi.KEY_SPEC_REQUESTOR_KEYRING or key_id == abi.KEY_SPEC_GROUP_KEYRING:
        raise KernelError(errno.EINVAL, f"invalid key ID {key_id}")
    else:
        key = _special(k, cred, key_id, create)
        is_possessed = True
    if not defer:
        if not partial:
            if key.state is KeyState.UNINSTANTIATED:
                raise KeyUnderConstruction(key.serial)
            if key.state is KeyState.NEGATIVE:
                # wait_for_key_construction: the stored error comes before key_validate
                raise KernelError(key.reject_error, f"key {key.serial} is negative")
        permission.key_validate(k, key)
        if need:
            permission.check(key, cred, need, is_possessed)
    return key, is_possessed


def lookup_keyring(k: Kernel, cred: Cred, ring_id: int, need: int, create: bool = True) -> Key:
    """lookup_user_key of a keyring argument (KEY_LOOKUP_CREATE unless told otherwise)."""
    return lookup_user_key(k, cred, ring_id, need, create=create)[0]


def join_session_keyring(k: Kernel, cred: Cred, name: Optional[str],
                         new_session: Optional[Hashable] = None) -> int:
    """KEYCTL_JOIN_SESSION_KEYRING: the keyring becomes the session keyring of new_session
    (a front's token for "this process from now on"; default: cred's own session). 0, and
    nothing changes, when the named keyring is the caller's session keyring already.
    Needs SEARCH on a named keyring that exists (find_keyring_by_name)."""
    if new_session is None:
        new_session = cred.session
    if name is not None:
        check_keyring_name(name)
    if name == "":
        raise KernelError(errno.EINVAL, "a keyring needs a name")  # key_alloc, after no match
    if name is None:
        ring = keyring_alloc(k, cred, "_ses", SESSION_KEYRING_PERM)
    else:
        ring = find_keyring_by_name(k, cred, name)
        if ring is None:
            ring = keyring_alloc(k, cred, name, JOINED_SESSION_PERM)
        elif ring is session_keyring(k, cred):
            return 0
    install_keyring(k, "session", new_session, ring)
    return ring.serial
