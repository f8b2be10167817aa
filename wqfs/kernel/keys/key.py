"""security/keys/key.c: the key object, its serial and its owner's quota; key_alloc,
key_payload_reserve, instantiation, __key_update, key_revoke, key_invalidate, key_set_timeout,
key_lookup; and notify_key (security/keys/internal.h), how a key posts a record.

These are the kernel-internal halves of the operations: they change a key and post what the
kernel posts, and check no permission. keyctl.py checks before it calls them.
"""
from __future__ import annotations

import enum
import errno
import random
import time
from typing import TYPE_CHECKING, Optional

from ... import abi
from ...records import KEY_RECORD
from ..cred import Cred
from ..errors import KernelError
from ..security.security import security_key_alloc
from ..watch_queue import post_watch_notification
from .key_type import KeyType

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..watch_queue import Watch


class KeyState(enum.Enum):
    UNINSTANTIATED = "uninstantiated"
    POSITIVE = "positive"
    NEGATIVE = "negative"


class Key:
    """One key object (struct key). Keyrings keep their members in insertion order, indexed by
    (type, description).

    What a front may read: serial, type, description, uid, gid, perm, generation, ctime_ns,
    mtime_ns, is_keyring, index_key, under_construction, payload_size, nr_members, nr_links,
    nr_subrings. The rest is the core's (the boundary test enforces it)."""

    __slots__ = ("serial", "type", "description", "payload", "uid", "gid", "perm", "state",
                 "reject_error", "revoked_at", "invalidated", "expiry", "dead", "ctime_ns",
                 "mtime_ns", "watchers", "parents", "members", "pins",
                 "restricted", "quota_bytes", "generation", "constructor_uid", "subrings", "security")

    def __init__(self, serial: int, ktype: KeyType, description: str, uid: int, gid: int,
                 perm: int, generation: int) -> None:
        self.serial = serial
        self.type = ktype
        self.description = description
        self.payload: bytes = b""
        self.uid = uid
        self.gid = gid  # -1: no group (shown as the overflow gid)
        self.perm = perm
        self.state = KeyState.UNINSTANTIATED
        self.reject_error = 0
        self.revoked_at: Optional[float] = None
        self.invalidated = False
        self.expiry: Optional[float] = None  # monotonic deadline
        self.dead = False  # freed by the garbage collector
        # No access time: one that moved on every read or search would tell anyone who may
        # stat the key when others use it, which the kernel exposes nowhere.
        self.ctime_ns = self.mtime_ns = time.time_ns()
        self.watchers: list[Watch] = []  # newest first, as the kernel adds them
        self.parents: dict[int, Key] = {}  # keyrings that link this key
        self.members: Optional[dict[tuple[str, str], Key]] = {} if ktype.is_keyring else None
        self.pins = 0  # references that are not keyring links (registries, open files)
        self.restricted: Optional[str] = None
        self.quota_bytes = 0
        self.generation = generation
        self.constructor_uid: Optional[int] = None
        self.subrings: dict[int, Key] = {}  # member keyrings, so possession searches skip plain keys
        self.security: Optional[str] = None  # the security module's label (key->security)

    @property
    def is_keyring(self) -> bool:
        return self.members is not None

    @property
    def index_key(self) -> tuple[str, str]:
        return (self.type.name, self.description)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def under_construction(self) -> bool:
        return self.state is KeyState.UNINSTANTIATED

    @property
    def payload_size(self) -> int:
        return len(self.payload)

    @property
    def nr_members(self) -> int:
        return len(self.members) if self.members is not None else 0

    @property
    def nr_subrings(self) -> int:
        return len(self.subrings)

    @property
    def nr_links(self) -> int:
        """How many keyrings link the key."""
        return len(self.parents)

    def expired(self, now: float) -> bool:
        return self.expiry is not None and now >= self.expiry

    @property
    def referenced(self) -> bool:
        return bool(self.parents) or self.pins > 0

    def touch(self) -> None:
        self.mtime_ns = self.ctime_ns = time.time_ns()

    def __repr__(self) -> str:
        return f"<Key {self.serial} {self.type.name}:{self.description}>"


class KeySerials:
    """key_alloc_serial's state: random serials from 3 up, and a generation per allocation (the
    FUSE inode generation, so that a reused serial is a new file)."""

    __slots__ = ("_rng", "generation")

    def __init__(self, seed: Optional[int]) -> None:
        self._rng = random.Random(seed)
        self.generation = 0

    def allocate(self, taken: dict[int, Key]) -> int:
        serial = self._rng.randrange(3, 1 << 31)
        while serial in taken:
            serial += 1
            if serial >= 1 << 31:
                serial = 3
        return serial


class KeyUsers:
    """The key_user quotas: keys and bytes each uid owns (root's limits apart)."""

    __slots__ = ("_used",)

    def __init__(self) -> None:
        self._used: dict[int, list[int]] = {}  # uid -> [keys, bytes]

    def charge(self, uid: int, nkeys: int, nbytes: int) -> None:
        """EDQUOT, and nothing charged, if the uid would go over either limit."""
        used = self._used.setdefault(uid, [0, 0])
        maxkeys, maxbytes = ((abi.KEY_QUOTA_ROOT_MAXKEYS, abi.KEY_QUOTA_ROOT_MAXBYTES) if uid == 0
                             else (abi.KEY_QUOTA_MAXKEYS, abi.KEY_QUOTA_MAXBYTES))
        if nkeys > 0 and used[0] + nkeys > maxkeys:
            raise KernelError(errno.EDQUOT, f"uid {uid} is over its quota of {maxkeys} keys")
        if nbytes > 0 and used[1] + nbytes > maxbytes:
            raise KernelError(errno.EDQUOT, f"uid {uid} is over its quota of {maxbytes} bytes")
        used[0] += nkeys
        used[1] += nbytes


def desc_quota(description: str) -> int:
    """A description's quota charge: its bytes and the NUL (undecodable bytes kept as they came)."""
    return len(description.encode("utf-8", "surrogateescape")) + 1


def check_add_key_payload(plen: int) -> None:
    """sys_add_key's (and keyctl_instantiate_key_common's) limit, checked on the length before
    any copy: EINVAL past 1 MiB - 1."""
    if plen > abi.ADD_KEY_MAX_PAYLOAD:
        raise KernelError(errno.EINVAL, "payload larger than 1 MiB - 1")


def check_update_payload(plen: int) -> None:
    """keyctl_update_key's limit, before the copy: EINVAL past a page."""
    if plen > abi.UPDATE_MAX_PAYLOAD:
        raise KernelError(errno.EINVAL, "an update payload is at most 4096 bytes")


def notify_key(k: Kernel, key: Key, subtype: int, aux: int = 0) -> None:
    """notify_key: a record of the key's change to every watch on it, posted as current_cred()
    (the system call that changed it), through the security module if one is loaded."""
    if key.watchers:
        word0 = abi.WATCH_TYPE_KEY_NOTIFY | subtype << 24
        key_id, aux = key.serial & 0xFFFFFFFF, aux & 0xFFFFFFFF
        pack = KEY_RECORD.pack
        post_watch_notification(key.watchers, abi.WATCH_TYPE_KEY_NOTIFY, subtype, KEY_RECORD.size,
                                lambda info: pack(word0, info, key_id, aux), lsm=k.lsm)


def key_payload_reserve(k: Kernel, key: Key, new_bytes: int) -> None:
    """Move the key's quota charge to new_bytes (EDQUOT, and no change, past the quota)."""
    if key.quota_bytes < 0:  # not in quota
        return
    k.key_users.charge(key.uid, 0, new_bytes - key.quota_bytes)
    key.quota_bytes = new_bytes


def key_alloc(k: Kernel, cred: Cred, ktype: KeyType, description: str, perm: int,
              uid: Optional[int] = None, gid: Optional[int] = None, in_quota: bool = True) -> Key:
    """A new key under construction, charged to its owner (EDQUOT) unless not in quota, and
    labelled by the security module (security_key_alloc, whose refusal gives the quota back)."""
    quota = desc_quota(description)
    if quota > abi.KEY_MAX_DESC_SIZE + 1:
        raise KernelError(errno.EINVAL, "description longer than 4096 bytes")
    owner = cred.uid if uid is None else uid
    if in_quota:
        k.key_users.charge(owner, 1, quota)
    k.serials.generation += 1
    key = Key(k.serials.allocate(k.keys), ktype, description, owner,
              cred.gid if gid is None else gid, perm, k.serials.generation)
    if k.lsm is not None:
        try:
            security_key_alloc(k.lsm, key, cred)
        except KernelError:
            if in_quota:
                k.key_users.charge(owner, -1, -quota)
            raise
    key.quota_bytes = quota if in_quota else -1
    k.keys[key.serial] = key
    if ktype.is_keyring:
        k.process.changed()
    return key


def instantiate(k: Kernel, key: Key, payload: bytes) -> None:
    """__key_instantiate_and_link's instantiation: the payload charged, the key positive, and
    NOTIFY_KEY_INSTANTIATED."""
    if key.quota_bytes >= 0:
        key_payload_reserve(k, key, desc_quota(key.description) + key.type.quotalen(payload))
    key.payload = payload
    key.state = KeyState.POSITIVE
    key.touch()
    notify_key(k, key, abi.NOTIFY_KEY_INSTANTIATED, 0)


def key_reject(k: Kernel, key: Key, timeout: int, error: int) -> None:
    """key_reject_and_link's rejection: negative with error, expiring after timeout seconds."""
    key.state = KeyState.NEGATIVE
    key.reject_error = error
    key.expiry = k.now() + timeout
    k.gc.timed.add(key)
    key.touch()
    notify_key(k, key, abi.NOTIFY_KEY_INSTANTIATED, -error & 0xFFFFFFFF)


def key_update(k: Kernel, key: Key, payload: bytes) -> None:
    """__key_update: the new payload charged, NOTIFY_KEY_UPDATED. A type with a fixed charge
    (big_key_update) reserves the payload's whole length first, then its charge."""
    key_payload_reserve(k, key, desc_quota(key.description) + len(payload))
    if key.type.fixed_quota is not None:
        key_payload_reserve(k, key, desc_quota(key.description) + key.type.fixed_quota)
    key.payload = payload
    key.state = KeyState.POSITIVE
    key.touch()
    notify_key(k, key, abi.NOTIFY_KEY_UPDATED, 0)


def key_revoke(k: Kernel, key: Key) -> None:
    """Revoked at once (a keyring lets go of its members), collected after the GC delay."""
    if key.revoked:
        return
    key.revoked_at = k.now()
    key.touch()
    k.gc.timed.add(key)
    if key.type.revoke_clears_quota and key.quota_bytes >= 0:  # the type's revoke op
        key_payload_reserve(k, key, desc_quota(key.description))
    if key.is_keyring:
        from .keyring import keyring_release_members
        keyring_release_members(k, key)
    k.process.changed()
    notify_key(k, key, abi.NOTIFY_KEY_REVOKED, 0)
    k.gc.wake()


def key_invalidate(k: Kernel, key: Key) -> None:
    """Unusable at once, collected at the next GC pass."""
    if key.invalidated:
        return
    key.invalidated = True
    key.touch()
    k.gc.timed.add(key)
    k.process.changed()
    notify_key(k, key, abi.NOTIFY_KEY_INVALIDATED, 0)
    k.gc.wake()


def key_set_timeout(k: Kernel, key: Key, timeout: int) -> None:
    """Expire timeout seconds from now (0: never). Posts nothing (keyctl_set_timeout does)."""
    key.expiry = k.now() + timeout if timeout else None
    if key.expiry is not None:
        k.gc.timed.add(key)
    k.gc.wake()


def key_lookup(k: Kernel, serial: int) -> Key:
    """The live key with this serial, or ENOKEY."""
    key = k.keys.get(serial)
    # refcount_inc_not_zero: a key whose last reference went waits for the collector, unseen
    if key is None or key.dead or key in k.gc.reaping:
        raise KernelError(errno.ENOKEY, f"no key {serial}")
    return key


def describe_key(key: Key) -> str:
    """keyctl_describe_key's "%s;%d;%d;%08x;%s": the ids as signed ints (uid 4294967294 is -2)."""
    return f"{key.type.name};{_signed32(key.uid)};{_signed32(shown_gid(key))};{key.perm:08x};{key.description}"


def shown_gid(key: Key) -> int:
    """The gid a key shows: a key with no group shows the overflow gid (from_kgid_munged)."""
    return abi.OVERFLOW_GID if key.gid == -1 else key.gid


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value
