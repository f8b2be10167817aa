"""key_task_permission: the caller's class is chosen exclusively, then possession adds its byte."""
from __future__ import annotations

import errno

from .. import abi
from .cred import Cred
from .errors import KernelError
from .key import Key


def permitted(key: Key, cred: Cred, need: int, possessed: bool) -> bool:
    perm = key.perm
    if key.uid == cred.uid:
        allowed = (perm >> 16) & 0xFF
    elif key.gid != -1 and perm & abi.KEY_GRP_ALL and cred.in_group(key.gid):
        allowed = (perm >> 8) & 0xFF
    else:
        allowed = perm & 0xFF
    if possessed:
        allowed |= (perm >> 24) & 0xFF
    return bool(allowed & need)


def check(key: Key, cred: Cred, need: int, possessed: bool) -> None:
    if not permitted(key, cred, need, possessed):
        raise KernelError(errno.EACCES, f"key {key.serial}: permission denied")
