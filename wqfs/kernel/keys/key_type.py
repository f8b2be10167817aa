"""Key types (include/linux/key-type.h): security/keys/user_defined.c's user and logon,
keyring.c's keyring; and key.c's key_type_lookup with keyctl.c's key_get_type_from_user
rule for a type's name."""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Optional

from ... import abi
from ..errors import KernelError


@dataclass(frozen=True)
class KeyType:
    """struct key_type, as far as its rules show: read, update, the payload's size (preparse),
    the quota a payload is charged (quotalen: its length, or a fixed charge), and whether revoke
    gives the payload's quota back (user_revoke, big_key_revoke: key_payload_reserve(key, 0))."""
    name: str
    readable: bool
    updatable: bool
    is_keyring: bool = False
    max_payload: int = abi.USER_MAX_PAYLOAD
    fixed_quota: Optional[int] = None
    revoke_clears_quota: bool = False

    def quotalen(self, payload: bytes) -> int:
        return len(payload) if self.fixed_quota is None else self.fixed_quota

    def check_description(self, description: str) -> None:
        if self.name == "logon":
            # logon_vet_description: "service:rest", the colon not first.
            colon = description.find(":")
            if colon <= 0:
                raise KernelError(errno.EINVAL, "a logon key's description must be 'prefix:name'")

    def check_payload(self, payload: bytes) -> None:
        if self.is_keyring:
            if payload:
                raise KernelError(errno.EINVAL, "a keyring takes no payload")
            return
        # user_preparse, big_key_preparse: 1..max_payload bytes.
        if not 0 < len(payload) <= self.max_payload:
            raise KernelError(errno.EINVAL, f"a {self.name} payload is 1..{self.max_payload} bytes")

    def default_perm(self) -> int:
        perm = abi.KEY_POS_VIEW | abi.KEY_POS_SEARCH | abi.KEY_POS_LINK | abi.KEY_POS_SETATTR | abi.KEY_USR_VIEW
        if self.readable:
            perm |= abi.KEY_POS_READ
        if self.is_keyring or self.updatable:
            perm |= abi.KEY_POS_WRITE
        return perm


USER = KeyType("user", readable=True, updatable=True, revoke_clears_quota=True)
LOGON = KeyType("logon", readable=False, updatable=True, revoke_clears_quota=True)
KEYRING = KeyType("keyring", readable=True, updatable=False, is_keyring=True)

TYPES = {t.name: t for t in (USER, LOGON, KEYRING)}


def register_key_type(ktype: KeyType) -> None:
    """register_key_type: a type defined in its own file (EEXIST for a name taken)."""
    if ktype.name in TYPES:
        raise KernelError(errno.EEXIST, f"key type {ktype.name!r} is registered already")
    TYPES[ktype.name] = ktype


def check_type_name(name: str) -> None:
    """key_get_type_from_user: EINVAL for no name, EPERM for one starting with '.' (internal)."""
    if not name:
        raise KernelError(errno.EINVAL, "empty key type")
    if name.startswith("."):
        raise KernelError(errno.EPERM, f"key type {name!r} is internal")


def lookup_type(name: str, unknown: int = errno.ENOKEY) -> KeyType:
    """key_type_lookup: ENOKEY for a type that does not exist, except where a key is being
    made (add_key, and a new file in the tree), which says ENODEV."""
    check_type_name(name)
    try:
        return TYPES[name]
    except KeyError:
        raise KernelError(unknown, f"no key type {name!r}") from None
