"""security/keys/persistent.c: keyctl_get_persistent, a per-uid keyring that outlives sessions.

The persistent keyrings hang off a register keyring (key_create_persistent_register's
".persistent_register", root's, in no quota), which keeps them alive; each get links the
caller's into a keyring of its choice and resets its expiry to
/proc/sys/kernel/keys/persistent_keyring_expiry (3 days), so one nobody gets for that long is
collected like any expired key.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

from ... import abi
from ..cred import Cred
from ..errors import KernelError
from .key import Key, key_set_timeout
from .keyring import check_link, key_link, keyring_alloc
from .process_keys import lookup_keyring

if TYPE_CHECKING:
    from ..kernel import Kernel

# key_create_persistent(_register): the owner may not change its attributes; others view and read
PERSISTENT_KEYRING_PERM = (abi.KEY_POS_ALL & ~abi.KEY_POS_SETATTR) | abi.KEY_USR_VIEW | abi.KEY_USR_READ
EXPIRY_SYSCTL = "/proc/sys/kernel/keys/persistent_keyring_expiry"
ROOT = Cred(0, 0)


def persistent_keyring_expiry() -> int:
    """The host's persistent_keyring_expiry, read live (the kernel's default if unreadable)."""
    try:
        with open(EXPIRY_SYSCTL) as f:
            return int(f.read())
    except (OSError, ValueError):
        return abi.PERSISTENT_KEYRING_EXPIRY


def _register(k: Kernel) -> Key:
    """key_create_persistent_register: made on first use, held by the (one) user namespace."""
    if k.persistent_register is None:
        k.persistent_register = keyring_alloc(k, ROOT, ".persistent_register", PERSISTENT_KEYRING_PERM,
                                              0, 0, in_quota=False)
        k.persistent_register.pins += 1
    return k.persistent_register


def _key_create_persistent(k: Kernel, uid: int) -> Key:
    """find_key_to_update in the register (not revoked nor invalidated; expired will do), else a
    new one linked into it."""
    register = _register(k)
    assert register.members is not None
    name = f"_persistent.{uid & 0xFFFFFFFF}"  # "%u"
    ring = register.members.get(("keyring", name))
    if ring is not None and not (ring.revoked or ring.invalidated or ring.dead):
        return ring
    ring = keyring_alloc(k, Cred(uid, -1), name, PERSISTENT_KEYRING_PERM, uid, -1, in_quota=False)
    key_link(k, register, ring)
    return ring


def get_persistent(k: Kernel, cred: Cred, uid: int, dest_id: int) -> int:
    """KEYCTL_GET_PERSISTENT: uid -1 is the caller's own; another's needs root (EPERM); WRITE on
    dest, into which the keyring is linked; then its expiry starts again."""
    if uid == -1:
        uid = cred.uid
    elif uid != cred.uid and not cred.is_admin:
        raise KernelError(errno.EPERM, "only root may get another user's persistent keyring")
    dest = lookup_keyring(k, cred, dest_id, abi.KEY_WRITE)
    ring = _key_create_persistent(k, uid)
    check_link(dest, ring)
    key_link(k, dest, ring)
    key_set_timeout(k, ring, persistent_keyring_expiry())
    return ring.serial


def own_persistent_keyring(k: Kernel, cred: Cred, create: bool = True) -> Optional[Key]:
    """The caller's own persistent keyring, linked nowhere new: for a front that names it (the
    tree's @persistent), where get_persistent would need a keyring to link it into. With create,
    made if missing and its expiry started again, as a get would; without, None if there is
    none. What the caller may do with it is its permission's business."""
    if not create:
        register = k.persistent_register
        ring = register.members.get(("keyring", f"_persistent.{cred.uid & 0xFFFFFFFF}")) if register and register.members else None
        return None if ring is None or ring.revoked or ring.invalidated or ring.dead else ring
    ring = _key_create_persistent(k, cred.uid)
    key_set_timeout(k, ring, persistent_keyring_expiry())
    return ring
