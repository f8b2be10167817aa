"""A key or keyring: its identity, payload, state and the watches on it."""
from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING, Optional

from .keytypes import KeyType

if TYPE_CHECKING:
    from .watch import Watch


class KeyState(enum.Enum):
    UNINSTANTIATED = "uninstantiated"
    POSITIVE = "positive"
    NEGATIVE = "negative"


class Key:
    """One key object. Keyrings keep their members in insertion order, indexed by (type, description)."""

    __slots__ = ("serial", "type", "description", "payload", "uid", "gid", "perm", "state",
                 "reject_error", "revoked_at", "invalidated", "expiry", "dead", "ctime_ns",
                 "mtime_ns", "watchers", "parents", "members", "pins",
                 "restricted", "quota_bytes", "generation", "constructor_uid", "subrings")

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

    @property
    def is_keyring(self) -> bool:
        return self.members is not None

    @property
    def index_key(self) -> tuple[str, str]:
        return (self.type.name, self.description)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float) -> bool:
        return self.expiry is not None and now >= self.expiry

    @property
    def referenced(self) -> bool:
        return bool(self.parents) or self.pins > 0

    def touch(self) -> None:
        self.mtime_ns = self.ctime_ns = time.time_ns()

    def __repr__(self) -> str:
        return f"<Key {self.serial} {self.type.name}:{self.description}>"
