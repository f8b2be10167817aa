"""security/keys/persistent.c: keyctl_get_persistent, a per-uid keyring that outlives sessions."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ... import abi
from ..cred import Cred
from ..errors import KernelError
from .keyring import check_link, key_link, keyring_alloc
from .process_keys import lookup_keyring

if TYPE_CHECKING:
    from ..kernel import Kernel

# key_create_persistent: the owner may not change its attributes, and others only view and read
PERSISTENT_KEYRING_PERM = (abi.KEY_POS_ALL & ~abi.KEY_POS_SETATTR) | abi.KEY_USR_VIEW | abi.KEY_USR_READ


def get_persistent(k: Kernel, cred: Cred, uid: int, dest_id: int) -> int:
    """KEYCTL_GET_PERSISTENT: uid -1 is the caller's own; another's needs root (EPERM); WRITE on
    dest, into which the keyring is linked. Made on first use."""
    if uid == -1:
        uid = cred.uid
    elif uid != cred.uid and not cred.is_admin:
        raise KernelError(errno.EPERM, "only root may get another user's persistent keyring")
    dest = lookup_keyring(k, cred, dest_id, abi.KEY_WRITE)
    ring = k.persistent.get(uid)
    if ring is None or ring.dead:
        ring = keyring_alloc(k, Cred(uid, -1), f"_persistent.{uid}", PERSISTENT_KEYRING_PERM, uid, -1, in_quota=False)
        ring.pins += 1
        k.persistent[uid] = ring
    check_link(dest, ring)
    key_link(k, dest, ring)
    return ring.serial
