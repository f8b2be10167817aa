"""security/keys/permission.c: key_task_permission (the caller's class is chosen exclusively,
then possession adds its byte) and key_validate (a key's state, before its permission)."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ... import abi
from ..cred import Cred
from ..errors import KernelError
from .key import Key

if TYPE_CHECKING:
    from ..kernel import Kernel


def permitted(key: Key, cred: Cred, need: int, possessed: bool) -> bool:
    """key_task_permission: owner, else group, else other; the possessor byte on top."""
    return bool(rights(key, cred, possessed) & need)


def rights(key: Key, cred: Cred, possessed: bool) -> int:
    """The KEY_VIEW..KEY_SETATTR bits key_task_permission grants cred."""
    perm = key.perm
    if key.uid == cred.uid:
        allowed = (perm >> 16) & 0xFF
    elif key.gid != -1 and perm & abi.KEY_GRP_ALL and cred.in_group(key.gid):
        allowed = (perm >> 8) & 0xFF
    else:
        allowed = perm & 0xFF
    if possessed:
        allowed |= (perm >> 24) & 0xFF
    return allowed


def check(key: Key, cred: Cred, need: int, possessed: bool) -> None:
    """key_permission: EACCES unless permitted."""
    if not permitted(key, cred, need, possessed):
        raise KernelError(errno.EACCES, f"key {key.serial}: permission denied")


def key_validate(k: Kernel, key: Key) -> None:
    """security/keys/permission.c key_validate: ENOKEY, EKEYREVOKED, EKEYEXPIRED."""
    if key.invalidated or key.dead:
        raise KernelError(errno.ENOKEY, f"key {key.serial} was invalidated")
    if key.revoked:
        raise KernelError(errno.EKEYREVOKED, f"key {key.serial} was revoked")
    if key.expired(k.now()):
        raise KernelError(errno.EKEYEXPIRED, f"key {key.serial} has expired")
