"""The emulated kernel: the key store, keyctl operations, watches and garbage collection.

Each public method is one keyctl operation. It takes the caller's Cred, checks in the
order security/keys/keyctl.c checks, posts the records the kernel posts, and raises
KernelError with the kernel's errno. Fronts (the FUSE tree, the syscall front, the
CLI) only translate into these calls, so every rule lives here once.
"""
from __future__ import annotations

import contextlib
import errno
import random
import time
from collections import deque
from typing import Callable, Hashable, Iterator, Optional

from .. import abi
from . import permission
from .cred import Cred
from .errors import KernelError, KeyUnderConstruction
from .key import Key, KeyState
from .keytypes import KEYRING, KeyType, lookup_type
from .pipe_accounting import PipeAccounting, PipeLimits, read_pipe_limits
from .queue import WatchQueue
from .watch import Watch, attach, detach, post_key_notification, post_removal

SPECIAL_KEYRING_PERM = abi.KEY_POS_ALL | abi.KEY_USR_VIEW  # _tid, _pid
SESSION_KEYRING_PERM = abi.KEY_POS_ALL | abi.KEY_USR_VIEW | abi.KEY_USR_READ  # anonymous _ses
JOINED_SESSION_PERM = SESSION_KEYRING_PERM | abi.KEY_USR_LINK  # named by join
USER_KEYRING_PERM = (abi.KEY_POS_ALL & ~abi.KEY_POS_SETATTR) | abi.KEY_USR_ALL


class Kernel:
    """All keys and queues of one emulated machine."""

    def __init__(self, gc_delay: float = abi.KEY_GC_DELAY,
                 clock: Callable[[], float] = time.monotonic, seed: Optional[int] = None,
                 pipe_limits: Callable[[], PipeLimits] = read_pipe_limits) -> None:
        """pipe_limits: where the fs.pipe-* sysctls come from (the host's, read live, by default)."""
        self.keys: dict[int, Key] = {}
        self.gc_delay = gc_delay
        self._clock = clock
        self._rng = random.Random(seed)
        self._generation = 0
        self._user_keyrings: dict[int, tuple[Key, Key]] = {}
        self._persistent: dict[int, Key] = {}
        self._thread_keyrings: dict[Hashable, Key] = {}
        self._process_keyrings: dict[Hashable, Key] = {}
        self._session_keyrings: dict[Hashable, Key] = {}
        self._quota: dict[int, list[int]] = {}  # uid -> [keys, bytes]
        self._nr_watches: dict[int, int] = {}
        self._gc_pending: set[Key] = set()
        self._timed: set[Key] = set()  # revoked, invalidated or with an expiry: GC must look
        self._gc_listeners: list[Callable[[], None]] = []
        self._version = 0  # bumped by every change to keyring topology or permissions
        self._reach_cache: dict[Cred, tuple[int, frozenset[int]]] = {}
        self.pipes = PipeAccounting(pipe_limits)  # every user's pipe-buffer pages

    # ------------------------------------------------------------------ helpers

    def now(self) -> float:
        return self._clock()

    def _changed(self) -> None:
        """Something a possession search depends on changed: keyrings, their links, perms, owners.

        Links of keys that are not keyrings never change a search's reach (it only walks
        keyrings), so the hot operations on plain keys leave the reach cache valid.
        """
        self._version += 1
        if len(self._reach_cache) > 4096:
            self._reach_cache.clear()

    def _new_serial(self) -> int:
        serial = self._rng.randrange(3, 1 << 31)
        while serial in self.keys:
            serial += 1
            if serial >= 1 << 31:
                serial = 3
        return serial

    def _quota_for(self, uid: int) -> list[int]:
        return self._quota.setdefault(uid, [0, 0])

    def _charge(self, uid: int, nkeys: int, nbytes: int) -> None:
        used = self._quota_for(uid)
        maxkeys, maxbytes = ((abi.KEY_QUOTA_ROOT_MAXKEYS, abi.KEY_QUOTA_ROOT_MAXBYTES) if uid == 0
                             else (abi.KEY_QUOTA_MAXKEYS, abi.KEY_QUOTA_MAXBYTES))
        if nkeys > 0 and used[0] + nkeys > maxkeys:
            raise KernelError(errno.EDQUOT, f"uid {uid} is over its quota of {maxkeys} keys")
        if nbytes > 0 and used[1] + nbytes > maxbytes:
            raise KernelError(errno.EDQUOT, f"uid {uid} is over its quota of {maxbytes} bytes")
        used[0] += nkeys
        used[1] += nbytes

    def _reserve(self, key: Key, new_bytes: int) -> None:
        """key_payload_reserve: move the key's quota charge to new_bytes."""
        if key.quota_bytes < 0:  # not in quota
            return
        self._charge(key.uid, 0, new_bytes - key.quota_bytes)
        key.quota_bytes = new_bytes

    def _alloc(self, cred: Cred, ktype: KeyType, description: str, perm: int,
               uid: Optional[int] = None, gid: Optional[int] = None, in_quota: bool = True) -> Key:
        if _desc_quota(description) > abi.KEY_MAX_DESC_SIZE + 1:
            raise KernelError(errno.EINVAL, "description longer than 4096 bytes")
        owner = cred.uid if uid is None else uid
        quota = _desc_quota(description)
        if in_quota:
            self._charge(owner, 1, quota)
        self._generation += 1
        key = Key(self._new_serial(), ktype, description, owner,
                  cred.gid if gid is None else gid, perm, self._generation)
        key.quota_bytes = quota if in_quota else -1
        self.keys[key.serial] = key
        if ktype.is_keyring:
            self._changed()
        return key

    def _instantiate(self, key: Key, payload: bytes) -> None:
        if key.quota_bytes >= 0:
            self._reserve(key, _desc_quota(key.description) + len(payload))
        key.payload = payload
        key.state = KeyState.POSITIVE
        key.touch()
        post_key_notification(key, abi.NOTIFY_KEY_INSTANTIATED, 0)

    def _new_keyring(self, cred: Cred, description: str, perm: int, uid: Optional[int] = None,
                     gid: Optional[int] = None, in_quota: bool = True) -> Key:
        ring = self._alloc(cred, KEYRING, description, perm, uid, gid, in_quota)
        self._instantiate(ring, b"")
        return ring

    # ------------------------------------------------------------ keyring links

    @contextlib.contextmanager
    def _linking(self, ring: Optional[Key], index_key: tuple[str, str]) -> Iterator[bool]:
        """__key_link_begin .. __key_link_end: the keyring's link bytes are charged before
        anything is made or changed (a new key, an instantiation, a move), and given back if
        that fails; a full quota (EDQUOT) thus changes nothing. Yields whether it charged
        (never, with no keyring to link into)."""
        charged = (ring is not None and ring.quota_bytes >= 0 and ring.members is not None
                   and index_key not in ring.members)
        if charged:
            assert ring is not None
            self._reserve(ring, ring.quota_bytes + abi.KEYQUOTA_LINK_BYTES)
        try:
            yield charged
        except BaseException:
            if charged:
                assert ring is not None
                self._reserve(ring, ring.quota_bytes - abi.KEYQUOTA_LINK_BYTES)
            raise

    def _link(self, ring: Key, key: Key, charged: bool = False) -> None:
        """__key_link: the member replaces any key of the same type and description."""
        assert ring.members is not None
        displaced = ring.members.get(key.index_key)
        if displaced is not key:
            if displaced is None:
                if ring.quota_bytes >= 0 and not charged:
                    self._reserve(ring, ring.quota_bytes + abi.KEYQUOTA_LINK_BYTES)
            else:
                self._drop_link(ring, displaced)
            ring.members[key.index_key] = key
            key.parents[ring.serial] = ring
            if key.is_keyring:
                ring.subrings[key.serial] = key
                self._changed()
        ring.touch()
        post_key_notification(ring, abi.NOTIFY_KEY_LINKED, key.serial)

    def _drop_link(self, ring: Key, key: Key) -> None:
        """Remove a link with no record (displacement, clear, revoke, GC)."""
        assert ring.members is not None
        if ring.members.get(key.index_key) is key:
            del ring.members[key.index_key]
        key.parents.pop(ring.serial, None)
        ring.subrings.pop(key.serial, None)
        if key.is_keyring:
            self._changed()
        self._maybe_unreferenced(key)

    def _check_link(self, ring: Key, key: Key) -> None:
        if not ring.is_keyring:
            raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")
        if ring.restricted is not None:
            raise KernelError(errno.EPERM, f"keyring {ring.serial} is restricted")
        if key.is_keyring:
            self._detect_cycle(ring, key)

    def _detect_cycle(self, ring: Key, key: Key) -> None:
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

    def _release_members(self, ring: Key) -> None:
        """Empty a keyring silently (revoke, clear, destruction)."""
        if ring.members:
            for member in list(ring.members.values()):
                self._drop_link(ring, member)
            if ring.quota_bytes >= 0:
                self._reserve(ring, _desc_quota(ring.description))

    # ------------------------------------------------------- special keyrings

    def user_keyrings(self, uid: int) -> tuple[Key, Key]:
        """The per-UID keyring and user-session keyring, made on first use as the kernel does."""
        pair = self._user_keyrings.get(uid)
        if pair is None:
            owner = Cred(uid, -1)
            user = self._new_keyring(owner, f"_uid.{uid}", USER_KEYRING_PERM, uid, -1, in_quota=False)
            session = self._new_keyring(owner, f"_uid_ses.{uid}", USER_KEYRING_PERM, uid, -1, in_quota=False)
            user.pins += 1
            session.pins += 1
            self._link(session, user)
            pair = (user, session)
            self._user_keyrings[uid] = pair
        return pair

    def _install(self, table: dict[Hashable, Key], owner: Hashable, ring: Key) -> None:
        old = table.get(owner)
        ring.pins += 1
        table[owner] = ring
        if old is not None:
            old.pins -= 1
            self._maybe_unreferenced(old)
        self._changed()

    def _special(self, cred: Cred, key_id: int, create: bool) -> Key:
        if key_id == abi.KEY_SPEC_THREAD_KEYRING:
            ring = self._thread_keyrings.get(cred.thread)
            if ring is None:
                if not create:
                    raise KernelError(errno.ENOKEY, "no thread keyring")
                ring = self._new_keyring(cred, "_tid", SPECIAL_KEYRING_PERM)
                self._install(self._thread_keyrings, cred.thread, ring)
            return ring
        if key_id == abi.KEY_SPEC_PROCESS_KEYRING:
            ring = self._process_keyrings.get(cred.process)
            if ring is None:
                if not create:
                    raise KernelError(errno.ENOKEY, "no process keyring")
                ring = self._new_keyring(cred, "_pid", SPECIAL_KEYRING_PERM)
                self._install(self._process_keyrings, cred.process, ring)
            return ring
        if key_id == abi.KEY_SPEC_SESSION_KEYRING:
            ring = self._session_keyrings.get(cred.session)
            if ring is None:
                if create and cred.implicit_session:
                    ring = self._new_keyring(cred, "_ses", SESSION_KEYRING_PERM)
                    self._install(self._session_keyrings, cred.session, ring)
                    return ring
                return self.user_keyrings(cred.uid)[1]
            return ring
        if key_id == abi.KEY_SPEC_USER_KEYRING:
            return self.user_keyrings(cred.uid)[0]
        if key_id == abi.KEY_SPEC_USER_SESSION_KEYRING:
            return self.user_keyrings(cred.uid)[1]
        if key_id in (abi.KEY_SPEC_REQKEY_AUTH_KEY, abi.KEY_SPEC_REQUESTOR_KEYRING):
            raise KernelError(errno.ENOKEY, "no request-key authority is assumed")
        raise KernelError(errno.EINVAL, f"invalid key ID {key_id}")

    def session_keyring(self, cred: Cred) -> Optional[Key]:
        return self._session_keyrings.get(cred.session)

    def _roots(self, cred: Cred) -> list[Key]:
        roots = []
        for table, owner in ((self._thread_keyrings, cred.thread), (self._process_keyrings, cred.process)):
            ring = table.get(owner)
            if ring is not None:
                roots.append(ring)
        session = self._session_keyrings.get(cred.session)
        roots.append(session if session is not None else self.user_keyrings(cred.uid)[1])
        return roots

    def _reach(self, cred: Cred) -> frozenset[int]:
        """Serials of the keyrings a possession search from cred's keyrings can enter."""
        cached = self._reach_cache.get(cred)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        reach: set[int] = set()
        # breadth first, so that each keyring is met at its least depth: a keyring nested
        # deeper than KEYRING_SEARCH_MAX_DEPTH is not entered (its own link is still found,
        # as a member of the keyring above it)
        queue = deque((ring, 0) for ring in self._roots(cred))
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
        self._reach_cache[cred] = (self._version, result)
        return result

    def _live(self, key: Key, now: float) -> bool:
        return not (key.dead or key.revoked or key.invalidated or key.expired(now))

    def possessed(self, cred: Cred, key: Key) -> bool:
        reach = self._reach(cred)
        if key.serial in reach:
            return True
        if any(parent in reach for parent in key.parents):
            return permission.permitted(key, cred, abi.KEY_SEARCH, True)
        return False

    # -------------------------------------------------------------- lookup

    def lookup(self, cred: Cred, key_id: int, need: int = 0, create: bool = False,
               partial: bool = False, defer: bool = False) -> tuple[Key, bool]:
        """lookup_user_key: resolve, check state, then permission. Returns (key, possessed)."""
        if key_id > 0:
            key = self.keys.get(key_id)
            if key is None or key.dead:
                raise KernelError(errno.ENOKEY, f"no key {key_id}")
            possessed = self.possessed(cred, key)
        elif key_id == 0 or key_id < abi.KEY_SPEC_REQUESTOR_KEYRING or key_id == abi.KEY_SPEC_GROUP_KEYRING:
            raise KernelError(errno.EINVAL, f"invalid key ID {key_id}")
        else:
            key = self._special(cred, key_id, create)
            possessed = True
        if not partial:
            if key.state is KeyState.UNINSTANTIATED:
                if not defer:
                    raise KeyUnderConstruction(key.serial)
            elif key.state is KeyState.NEGATIVE and not defer:
                # wait_for_key_construction: the stored error comes before key_validate
                raise KernelError(key.reject_error, f"key {key.serial} is negative")
            if not defer:
                self._validate(key)
        elif not defer:
            self._validate(key)
        if need and not defer:
            permission.check(key, cred, need, possessed)
        return key, possessed

    def _validate(self, key: Key) -> None:
        """key_validate."""
        if key.invalidated or key.dead:
            raise KernelError(errno.ENOKEY, f"key {key.serial} was invalidated")
        if key.revoked:
            raise KernelError(errno.EKEYREVOKED, f"key {key.serial} was revoked")
        if key.expired(self.now()):
            raise KernelError(errno.EKEYEXPIRED, f"key {key.serial} has expired")

    def _keyring(self, cred: Cred, ring_id: int, need: int, create: bool = True) -> Key:
        return self.lookup(cred, ring_id, need, create=create)[0]

    # ----------------------------------------------------------- operations

    def add_key(self, cred: Cred, type_name: str, description: str, payload: bytes, ring_id: int) -> int:
        if type_name.startswith("."):
            raise KernelError(errno.EPERM, f"key type {type_name!r} is internal")
        if description.startswith(".") and type_name == "keyring":
            raise KernelError(errno.EPERM, "keyring names starting with '.' are reserved")
        if len(payload) > abi.ADD_KEY_MAX_PAYLOAD:
            raise KernelError(errno.EINVAL, "payload larger than 1 MiB - 1")
        ring = self._keyring(cred, ring_id, abi.KEY_WRITE)
        ktype = lookup_type(type_name, unknown=errno.ENODEV)
        if not description:  # add_key makes "" NULL, and only a preparse could name the key
            raise KernelError(errno.EINVAL, "a description is required")
        ktype.check_description(description)
        ktype.check_payload(payload)
        if not ring.is_keyring:
            raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")
        if ring.restricted is not None:
            raise KernelError(errno.EPERM, f"keyring {ring.serial} is restricted")
        if ktype.updatable:
            existing = ring.members.get((type_name, description)) if ring.members is not None else None
            if existing is not None and not existing.revoked and not existing.invalidated and not existing.dead:
                permission.check(existing, cred, abi.KEY_WRITE, self.possessed(cred, existing))
                self._update(existing, payload)
                return existing.serial
        with self._linking(ring, (type_name, description)) as charged:
            key = self._alloc(cred, ktype, description, ktype.default_perm())
            try:
                self._instantiate(key, payload)
            except KernelError:
                self._free(key)
                raise
        self._link(ring, key, charged)
        return key.serial

    def _update(self, key: Key, payload: bytes) -> None:
        self._reserve(key, _desc_quota(key.description) + len(payload))
        key.payload = payload
        key.state = KeyState.POSITIVE
        key.touch()
        post_key_notification(key, abi.NOTIFY_KEY_UPDATED, 0)

    def update(self, cred: Cred, key_id: int, payload: bytes) -> None:
        if len(payload) > abi.UPDATE_MAX_PAYLOAD:
            raise KernelError(errno.EINVAL, "an update payload is at most 4096 bytes")
        key, _ = self.lookup(cred, key_id, abi.KEY_WRITE)  # lookup_user_key(id, 0, WRITE)
        if not key.type.updatable:
            raise KernelError(errno.EOPNOTSUPP, f"{key.type.name} keys cannot be updated")
        key.type.check_payload(payload)
        self._update(key, payload)

    def read(self, cred: Cred, key_id: int, buflen: int = 0) -> bytes:
        """KEYCTL_READ's data. buflen, the caller's buffer (0: none), matters to a keyring:
        keyring_read takes only whole serials, EINVAL otherwise (for a buffer of up to a page,
        the one keyctl_read_key hands it directly)."""
        try:
            key, possessed = self.lookup(cred, key_id, defer=True)
        except KernelError as error:
            raise KernelError(errno.ENOKEY, error.detail) from None
        if key.state is KeyState.NEGATIVE:
            raise KernelError(key.reject_error, f"key {key.serial} is negative")
        if not permission.permitted(key, cred, abi.KEY_READ, possessed) and not possessed:
            raise KernelError(errno.EACCES, f"key {key.serial}: permission denied")
        if not key.type.readable:
            raise KernelError(errno.EOPNOTSUPP, f"{key.type.name} keys cannot be read")
        self._validate(key)
        if key.state is KeyState.UNINSTANTIATED:
            raise KernelError(errno.ENOKEY, f"key {key.serial} is under construction")
        if key.members is not None:
            if 0 < buflen <= abi.PAGE_SIZE and buflen % 4:
                raise KernelError(errno.EINVAL, "a keyring is read in whole serials")
            return b"".join(m.serial.to_bytes(4, "little") for m in key.members.values())
        return key.payload

    def check_read(self, cred: Cred, key_id: int) -> None:
        """KernelError unless KEYCTL_READ of key_id would succeed for cred (keyctl_read_key: READ,
        or possession), for a front that shows what a read reveals without the data, such as a
        keyring's member serials. It is read itself, so that the rule is written once; a read has
        no side effect, and a keyring's is one pass over its links."""
        self.read(cred, key_id)

    def describe(self, cred: Cred, key_id: int) -> str:
        try:
            key, _ = self.lookup(cred, key_id, abi.KEY_VIEW, partial=True)  # no CREATE
        except KernelError as error:
            if error.errno != errno.EACCES or not self._has_authority(cred, key_id):
                raise
            key = self.keys[key_id]  # viewing a key under construction with its authority
        return describe_key(key)

    def link(self, cred: Cred, key_id: int, ring_id: int) -> None:
        ring = self._keyring(cred, ring_id, abi.KEY_WRITE)
        key, _ = self.lookup(cred, key_id, abi.KEY_LINK, create=True)
        self._check_link(ring, key)
        self._link(ring, key)

    def unlink(self, cred: Cred, key_id: int, ring_id: int) -> None:
        ring = self._keyring(cred, ring_id, abi.KEY_WRITE, create=False)
        key, _ = self.lookup(cred, key_id, defer=True)  # KEY_NEED_UNLINK: no state, no permission
        if not ring.is_keyring:
            raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")
        assert ring.members is not None
        if ring.members.get(key.index_key) is not key:
            raise KernelError(errno.ENOENT, f"key {key.serial} is not in keyring {ring.serial}")
        del ring.members[key.index_key]
        key.parents.pop(ring.serial, None)
        ring.subrings.pop(key.serial, None)
        if ring.quota_bytes >= 0:
            self._reserve(ring, max(_desc_quota(ring.description),
                                    ring.quota_bytes - abi.KEYQUOTA_LINK_BYTES))
        ring.touch()
        if key.is_keyring:
            self._changed()
        post_key_notification(ring, abi.NOTIFY_KEY_UNLINKED, key.serial)
        self._maybe_unreferenced(key)

    def move(self, cred: Cred, key_id: int, from_id: int, to_id: int, flags: int = 0) -> None:
        if flags & ~abi.KEYCTL_MOVE_EXCL:
            raise KernelError(errno.EINVAL, "unknown move flags")
        key, _ = self.lookup(cred, key_id, abi.KEY_LINK, create=True)
        source = self._keyring(cred, from_id, abi.KEY_WRITE, create=False)
        target = self._keyring(cred, to_id, abi.KEY_WRITE)
        if source is target:
            return
        if not source.is_keyring or not target.is_keyring:
            raise KernelError(errno.ENOTDIR, "move needs two keyrings")
        assert source.members is not None and target.members is not None
        if source.members.get(key.index_key) is not key:
            raise KernelError(errno.ENOENT, f"key {key.serial} is not in keyring {source.serial}")
        if flags & abi.KEYCTL_MOVE_EXCL and key.index_key in target.members:
            raise KernelError(errno.EEXIST, f"keyring {target.serial} already holds {key.type.name}:{key.description}")
        self._check_link(target, key)
        with self._linking(target, key.index_key) as charged:  # on EDQUOT the key stays put
            key.pins += 1  # keep it alive between the unlink and the link
            del source.members[key.index_key]
            key.parents.pop(source.serial, None)
            source.subrings.pop(key.serial, None)
            source.touch()
            if key.is_keyring:
                self._changed()
            post_key_notification(source, abi.NOTIFY_KEY_UNLINKED, key.serial)
        self._link(target, key, charged)
        key.pins -= 1

    def clear(self, cred: Cred, ring_id: int) -> None:
        ring = self._keyring(cred, ring_id, abi.KEY_WRITE)
        if not ring.is_keyring:  # a restriction only keeps keys out: clearing is allowed
            raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")
        self._release_members(ring)
        ring.touch()
        post_key_notification(ring, abi.NOTIFY_KEY_CLEARED, 0)

    def revoke(self, cred: Cred, key_id: int) -> None:
        try:
            key, _ = self.lookup(cred, key_id, abi.KEY_WRITE)
        except KernelError as error:
            if error.errno != errno.EACCES:
                raise
            key, _ = self.lookup(cred, key_id, abi.KEY_SETATTR)
        if key.revoked:
            return
        key.revoked_at = self.now()
        key.touch()
        self._timed.add(key)
        if key.is_keyring:
            self._release_members(key)
        self._changed()
        post_key_notification(key, abi.NOTIFY_KEY_REVOKED, 0)
        self._wake_gc()

    def invalidate(self, cred: Cred, key_id: int) -> None:
        key, _ = self.lookup(cred, key_id, abi.KEY_SEARCH)
        if key.invalidated:
            return
        key.invalidated = True
        key.touch()
        self._timed.add(key)
        self._changed()
        post_key_notification(key, abi.NOTIFY_KEY_INVALIDATED, 0)
        self._wake_gc()

    def setperm(self, cred: Cred, key_id: int, perm: int) -> None:
        if perm & ~abi.KEY_PERM_VALID:
            raise KernelError(errno.EINVAL, f"permission {perm:#010x} has undefined bits")
        key, _ = self.lookup(cred, key_id, abi.KEY_SETATTR, create=True, partial=True)
        if not cred.is_admin and key.uid != cred.uid:
            raise KernelError(errno.EACCES, "only the owner may change a key's permissions")
        key.perm = perm
        key.ctime_ns = time.time_ns()
        self._changed()
        post_key_notification(key, abi.NOTIFY_KEY_SETATTR, 0)

    def chown(self, cred: Cred, key_id: int, uid: int, gid: int) -> None:
        if uid == -1 and gid == -1:
            return
        key, _ = self.lookup(cred, key_id, abi.KEY_SETATTR, create=True, partial=True)
        if not cred.is_admin:
            if uid != -1 and uid != key.uid:
                raise KernelError(errno.EACCES, "only root may give a key away")
            if gid != -1 and gid != key.gid and not cred.in_group(gid):
                raise KernelError(errno.EACCES, f"you are not in group {gid}")
        if uid != -1 and uid != key.uid and key.quota_bytes >= 0:
            self._charge(uid, 1, key.quota_bytes)
            self._charge(key.uid, -1, -key.quota_bytes)
            key.uid = uid
        if gid != -1:
            key.gid = gid
        key.ctime_ns = time.time_ns()
        self._changed()
        post_key_notification(key, abi.NOTIFY_KEY_SETATTR, 0)

    def set_timeout(self, cred: Cred, key_id: int, timeout: int) -> None:
        key, _ = self.lookup(cred, key_id, abi.KEY_SETATTR, create=True, partial=True)
        key.expiry = self.now() + timeout if timeout else None
        if key.expiry is not None:
            self._timed.add(key)
        key.ctime_ns = time.time_ns()
        self._changed()
        post_key_notification(key, abi.NOTIFY_KEY_SETATTR, 0)
        self._wake_gc()

    def restrict_keyring(self, cred: Cred, ring_id: int, type_name: Optional[str],
                         restriction: Optional[str]) -> None:
        """keyctl_restrict_keyring, then keyring_restrict. Both a type and a restriction, or
        neither (then the keyring takes no more links). Of the types here none defines a
        restriction (only asymmetric keys do): ENOENT for them, ENOKEY for an unknown one."""
        ring, _ = self.lookup(cred, ring_id, abi.KEY_SETATTR)
        if (type_name is None) != (restriction is None):
            raise KernelError(errno.EINVAL, "a key type and a restriction go together")
        if not ring.is_keyring:
            raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")
        if type_name is not None:
            lookup_type(type_name)
            raise KernelError(errno.ENOENT, f"{type_name} keys define no link restrictions")
        if ring.restricted is not None:
            raise KernelError(errno.EEXIST, f"keyring {ring.serial} is already restricted")
        ring.restricted = ""
        ring.ctime_ns = time.time_ns()
        post_key_notification(ring, abi.NOTIFY_KEY_SETATTR, 0)

    def search(self, cred: Cred, ring_id: int, type_name: str, description: str, dest_id: int = 0) -> int:
        ring = self._keyring(cred, ring_id, abi.KEY_SEARCH, create=False)
        dest = self._keyring(cred, dest_id, abi.KEY_WRITE) if dest_id else None
        lookup_type(type_name)
        if not ring.is_keyring:
            raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")
        found = self._search_tree([ring], cred, type_name, description, possessed=self.possessed(cred, ring))
        if dest is not None:
            permission.check(found, cred, abi.KEY_LINK, self.possessed(cred, found))
            self._check_link(dest, found)
            self._link(dest, found)
        return found.serial

    def _search_tree(self, rings: list[Key], cred: Cred, type_name: str, description: str,
                     possessed: bool, skip_expired: bool = False) -> Key:
        """keyring_search_rcu of each ring in turn, combined as search_cred_keyrings_rcu does:
        the first key found wins; else "nothing here" or a negated key (ENOKEY) from any ring
        outranks every other error (revoked, expired, unsearchable, rejected), of which the
        last stands."""
        now = self.now()
        not_found: Optional[KernelError] = None
        other: Optional[KernelError] = None
        for ring in rings:
            result = self._search_ring(ring, cred, (type_name, description), possessed, now, skip_expired)
            if isinstance(result, Key):
                return result
            if result is None:
                not_found = not_found or KernelError(errno.ENOKEY, f"no {type_name}:{description} found")
            elif result.errno == errno.ENOKEY:
                not_found = result
            else:
                other = result
        raise not_found or other or KernelError(errno.ENOKEY, f"no {type_name}:{description} found")

    def _search_ring(self, top: Key, cred: Cred, index: tuple[str, str], possessed: bool,
                     now: float, skip_expired: bool) -> "Key | KernelError | None":
        """search_nested_keyrings: depth first, each keyring's own match before its subkeyrings;
        a match that cannot be returned leaves its error, and the last such error stands."""
        result: Optional[KernelError] = None

        def consider(key: Key) -> "Key | KernelError | None":  # keyring_search_iterator
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

    def request_key(self, cred: Cred, type_name: str, description: str, dest_id: int = 0) -> int:
        """request_key without an upcall: found in the caller's keyrings, or ENOKEY."""
        lookup_type(type_name)
        dest = self._keyring(cred, dest_id, abi.KEY_WRITE) if dest_id else None
        found = self._search_tree(self._roots(cred), cred, type_name, description, possessed=True,
                                  skip_expired=True)
        if dest is not None:
            self._check_link(dest, found)
            self._link(dest, found)
        return found.serial

    def construct_key(self, cred: Cred, type_name: str, description: str, ring_id: int) -> int:
        """Make a key under construction in a keyring (construct_alloc_key), for instantiate or reject."""
        ring = self._keyring(cred, ring_id, abi.KEY_WRITE)
        ktype = lookup_type(type_name)
        if not description:
            raise KernelError(errno.EINVAL, "a description is required")
        ktype.check_description(description)
        if not ring.is_keyring:
            raise KernelError(errno.ENOTDIR, f"key {ring.serial} is not a keyring")
        if ring.restricted is not None:
            raise KernelError(errno.EPERM, f"keyring {ring.serial} is restricted")
        with self._linking(ring, (type_name, description)) as charged:
            key = self._alloc(cred, ktype, description, ktype.default_perm())
        key.constructor_uid = cred.uid
        self._link(ring, key, charged)
        return key.serial

    def _has_authority(self, cred: Cred, key_id: int) -> bool:
        """What stands in for an assumed request-key authority: the key is under construction
        and the caller made it (or is root)."""
        key = self.keys.get(key_id) if key_id > 0 else None
        return (key is not None and not key.dead and key.state is KeyState.UNINSTANTIATED
                and (key.constructor_uid == cred.uid or cred.is_admin))

    def _construction_target(self, cred: Cred, key_id: int) -> Key:
        key = self.keys.get(key_id)
        if (key is None or key.dead or key.state is not KeyState.UNINSTANTIATED
                or (key.constructor_uid != cred.uid and not cred.is_admin)):
            raise KernelError(errno.EPERM, f"no authority to instantiate key {key_id}")
        return key

    def instantiate(self, cred: Cred, key_id: int, payload: bytes, ring_id: int = 0) -> None:
        if len(payload) > abi.ADD_KEY_MAX_PAYLOAD:
            raise KernelError(errno.EINVAL, "payload larger than 1 MiB - 1")
        key = self._construction_target(cred, key_id)
        ring = self._keyring(cred, ring_id, abi.KEY_WRITE) if ring_id else None
        key.type.check_payload(payload)
        if ring is not None:
            self._check_link(ring, key)
        with self._linking(ring, key.index_key) as charged:
            self._instantiate(key, payload)
        if ring is not None:
            self._link(ring, key, charged)

    def reject(self, cred: Cred, key_id: int, timeout: int, error: int, ring_id: int = 0) -> None:
        if error <= 0 or error >= 4096 or error in (512, 513, 514, 516):
            raise KernelError(errno.EINVAL, f"cannot reject with error {error}")
        key = self._construction_target(cred, key_id)
        ring = self._keyring(cred, ring_id, abi.KEY_WRITE) if ring_id else None
        if ring is not None:
            self._check_link(ring, key)
        with self._linking(ring, key.index_key) as charged:
            key.state = KeyState.NEGATIVE
            key.reject_error = error
            key.expiry = self.now() + timeout
            self._timed.add(key)
            key.touch()
            post_key_notification(key, abi.NOTIFY_KEY_INSTANTIATED, -error & 0xFFFFFFFF)
        if ring is not None:
            self._link(ring, key, charged)
        self._wake_gc()

    def negate(self, cred: Cred, key_id: int, timeout: int, ring_id: int = 0) -> None:
        self.reject(cred, key_id, timeout, errno.ENOKEY, ring_id)

    def get_keyring_id(self, cred: Cred, key_id: int, create: bool) -> int:
        key, _ = self.lookup(cred, key_id, abi.KEY_SEARCH, create=create)
        return key.serial

    def join_session_keyring(self, cred: Cred, name: Optional[str],
                             new_session: Optional[Hashable] = None) -> int:
        """KEYCTL_JOIN_SESSION_KEYRING: the keyring becomes the session keyring of new_session
        (a front's token for "this process from now on"; default: cred's own session). 0, and
        nothing changes, when the named keyring is the caller's session keyring already."""
        if new_session is None:
            new_session = cred.session
        if name is not None and name.startswith("."):
            raise KernelError(errno.EPERM, "keyring names starting with '.' are reserved")
        if name == "":
            raise KernelError(errno.EINVAL, "a keyring needs a name")  # key_alloc, after no match
        if name is None:
            ring = self._new_keyring(cred, "_ses", SESSION_KEYRING_PERM)
        else:
            ring = self._find_named_keyring(cred, name)
            if ring is None:
                ring = self._new_keyring(cred, name, JOINED_SESSION_PERM)
            elif ring is self._session_keyrings.get(cred.session):
                return 0
        self._install(self._session_keyrings, new_session, ring)
        return ring.serial

    def _find_named_keyring(self, cred: Cred, name: str) -> Optional[Key]:
        """find_keyring_by_name: not revoked (expired will do), searchable without possession."""
        for key in self.keys.values():
            if (key.is_keyring and key.description == name and not key.dead and not key.revoked
                    and permission.permitted(key, cred, abi.KEY_SEARCH, False)):
                return key
        return None

    def get_security(self, cred: Cred, key_id: int) -> str:
        try:
            self.lookup(cred, key_id, abi.KEY_VIEW, partial=True)  # no CREATE
        except KernelError as error:
            # as describe, but without the authority it is key_get_instantiation_authkey's ENOKEY
            if error.errno != errno.EACCES:
                raise
            if not self._has_authority(cred, key_id):
                raise KernelError(errno.ENOKEY, "no VIEW, and no request-key authority for the key") from None
        return ""

    def get_persistent(self, cred: Cred, uid: int, dest_id: int) -> int:
        if uid == -1:
            uid = cred.uid
        elif uid != cred.uid and not cred.is_admin:
            raise KernelError(errno.EPERM, "only root may get another user's persistent keyring")
        dest = self._keyring(cred, dest_id, abi.KEY_WRITE)
        ring = self._persistent.get(uid)
        if ring is None or ring.dead:
            ring = self._new_keyring(Cred(uid, -1), f"_persistent.{uid}", USER_KEYRING_PERM, uid, -1, in_quota=False)
            ring.pins += 1
            self._persistent[uid] = ring
        self._check_link(dest, ring)
        self._link(dest, ring)
        return ring.serial

    @staticmethod
    def capabilities() -> bytes:
        return bytes((abi.KEYCTL_CAPS0_CAPABILITIES | abi.KEYCTL_CAPS0_PERSISTENT_KEYRINGS
                      | abi.KEYCTL_CAPS0_INVALIDATE | abi.KEYCTL_CAPS0_RESTRICT_KEYRING | abi.KEYCTL_CAPS0_MOVE,
                      abi.KEYCTL_CAPS1_NS_KEYRING_NAME | abi.KEYCTL_CAPS1_NS_KEY_TAG
                      | abi.KEYCTL_CAPS1_NOTIFICATIONS))

    # --------------------------------------------------------------- watches

    def watch_key(self, cred: Cred, key_id: int, queue: Optional[WatchQueue], tag: int,
                  watch_limit: int = 1024) -> None:
        """KEYCTL_WATCH_KEY: tag range, key lookup, queue, then add (EBUSY, EAGAIN) or remove (EBADSLT)."""
        if tag < -1 or tag > 0xFF:
            raise KernelError(errno.EINVAL, "the watch tag is -1..255")
        key, _ = self.lookup(cred, key_id, abi.KEY_VIEW, create=True)
        if queue is None or queue.defunct:
            raise KernelError(errno.EINVAL, "not a notification queue")
        existing = queue.watches.get(key.serial)
        if tag >= 0:
            if existing is not None:
                raise KernelError(errno.EBUSY, f"the queue already watches key {key.serial}")
            count = self._nr_watches.get(cred.uid, 0)
            if count + 1 > watch_limit:
                raise KernelError(errno.EAGAIN, f"uid {cred.uid} has {count} watches, the RLIMIT_NOFILE limit")
            self._nr_watches[cred.uid] = count + 1
            attach(Watch(queue, key, tag, cred.uid))
            return
        if existing is None:
            raise KernelError(errno.EBADSLT, f"the queue does not watch key {key.serial}")
        self._drop_watch(existing)
        post_removal(existing)

    def _drop_watch(self, watch: Watch) -> None:
        detach(watch)
        self._nr_watches[watch.uid] = self._nr_watches.get(watch.uid, 1) - 1

    def release_queue(self, queue: WatchQueue) -> None:
        """The last file on the queue closed: detach every watch without posting anything, and
        (free_pipe_info) give its pages back to the user charged; a second call refunds nothing."""
        queue.defunct = True
        for watch in list(queue.watches.values()):
            self._drop_watch(watch)
        if queue.accounting is not None:
            queue.accounting.free_pipe_info(queue)

    def new_queue(self, cred: Cred) -> WatchQueue:
        """pipe2(O_NOTIFICATION_PIPE): alloc_pipe_info charges the pipe to cred's user (2 pages
        instead of 16 past pipe-user-pages-soft; ENFILE past -hard, for the unprivileged)."""
        pages = self.pipes.alloc_pipe_info(cred)
        return WatchQueue(cred.uid, pages, self.pipes, cred)

    # ---------------------------------------------------------- references

    def owner_gone(self, kind: str, owner: Hashable) -> None:
        """A thread, process or session ended: release the keyring it held."""
        table = {"thread": self._thread_keyrings, "process": self._process_keyrings,
                 "session": self._session_keyrings}[kind]
        ring = table.pop(owner, None)
        if ring is not None:
            ring.pins -= 1
            self._changed()
            self._maybe_unreferenced(ring)

    def owners(self, kind: str) -> list[Hashable]:
        table = {"thread": self._thread_keyrings, "process": self._process_keyrings,
                 "session": self._session_keyrings}[kind]
        return list(table)

    # ------------------------------------------------------- garbage collection

    def add_gc_listener(self, callback: Callable[[], None]) -> None:
        self._gc_listeners.append(callback)

    def _wake_gc(self) -> None:
        for callback in self._gc_listeners:
            callback()

    def _maybe_unreferenced(self, key: Key) -> None:
        if not key.referenced and not key.dead:
            self._gc_pending.add(key)
            self._wake_gc()

    def collect(self) -> Optional[float]:
        """One pass of key_garbage_collector. Returns seconds until a pass is next due, or None."""
        now = self.now()
        next_due: Optional[float] = None
        for key in list(self._timed):
            if key.dead:
                self._timed.discard(key)
                continue
            if key.invalidated:
                due = now
            else:
                stamps = [t for t in (key.revoked_at, key.expiry) if t is not None]
                if not stamps:
                    self._timed.discard(key)
                    continue
                due = min(stamps) + self.gc_delay
                if key.revoked_at is None and key.expiry is not None and now < key.expiry:
                    due = key.expiry + self.gc_delay
            if due <= now:
                self._timed.discard(key)
                for ring in list(key.parents.values()):
                    self._drop_link(ring, key)
            elif next_due is None or due - now < next_due:
                next_due = due - now
        while self._gc_pending:
            key = self._gc_pending.pop()
            if not key.referenced and not key.dead:
                self._free(key)
        return next_due

    def _free(self, key: Key) -> None:
        key.dead = True
        self.keys.pop(key.serial, None)
        self._timed.discard(key)
        for watch in list(key.watchers):
            self._drop_watch(watch)
            post_removal(watch)
        if key.members is not None:
            for member in list(key.members.values()):
                self._drop_link(key, member)
        if key.quota_bytes >= 0:
            self._charge(key.uid, -1, -key.quota_bytes)
        for ring in list(key.parents.values()):
            self._drop_link(ring, key)
        self._changed()

    # --------------------------------------------------------------- queries

    def visible_keys(self, cred: Cred) -> Iterator[Key]:
        """Keys the caller may view (/proc/keys' rule)."""
        for key in list(self.keys.values()):
            if not key.dead and permission.permitted(key, cred, abi.KEY_VIEW, self.possessed(cred, key)):
                yield key

    def statistics(self) -> dict[str, int]:
        return {"keys": len(self.keys), "gc_pending": len(self._gc_pending), "timed": len(self._timed),
                "watches": sum(self._nr_watches.values())}


def _desc_quota(description: str) -> int:
    """A description's quota charge: its bytes and the NUL (undecodable bytes kept as they came)."""
    return len(description.encode("utf-8", "surrogateescape")) + 1


def describe_key(key: Key) -> str:
    """keyctl_describe_key's "%s;%d;%d;%08x;%s": the ids as signed ints (uid 4294967294 is -2)."""
    gid = abi.OVERFLOW_GID if key.gid == -1 else key.gid
    return f"{key.type.name};{_signed32(key.uid)};{_signed32(gid)};{key.perm:08x};{key.description}"


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value
