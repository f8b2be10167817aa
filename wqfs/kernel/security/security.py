"""security/security.c: the LSM hooks that rule on keys and notifications, as
include/linux/lsm_hook_defs.h declares them (key_alloc, key_getsecurity, watch_key,
post_notification; watch_mount and watch_sb of the mount and superblock patches), and the
dispatch the core calls at each hook point.

The Kernel holds one module or none (Kernel(lsm=...), chosen when it is made, as an LSM is at
boot). With none, every hook point is a single `if k.lsm is not None`, and nothing else runs.

Where the core calls the hooks, in the kernel's order:

* key_alloc(key, cred): key.c's key_alloc, after the quota is charged and before the key gets
  its serial; an errno fails the allocation (the quota is given back).
* key_getsecurity(key): KEYCTL_GET_SECURITY, after its VIEW (or authority) lookup.
* watch_key(cred, key): KEYCTL_WATCH_KEY with a tag 0..255, after the tag's range, the VIEW
  lookup and the queue's checks, before add_watch_to_object (so before EBUSY and EAGAIN); its
  errno is watch_key's. Removing a watch (tag -1) asks nothing.
* watch_mount(cred, target), watch_sb(cred, sb): watch_mount(2) and watch_sb(2) at the same
  place (after the path lookup and the queue's checks, before the watch is added).
* post_notification(w_cred, cred, rtype, subtype, info, record): __post_watch_notification, for
  each watch on the object, after the queue's filter and before the record is queued. w_cred
  is the watch setter's Cred (Watch.cred), cred the event generator's: the system call that
  caused the post (current_cred(); the keyctl, tree operation or trapped call), or None for
  an event with no task (the key collector, a host mount event), as the kernel's cred "may be
  NULL". A refusal drops that one copy silently (no loss flag, nothing counted). META records
  (removal, loss) never reach the hook: remove_watch_from_object and the queue post them
  directly, as the kernel does.

The Python hook interface: a policy is a subclass of LSM overriding the hooks it cares about;
every hook it does not override allows. Each returns 0 (or None) to allow, or an errno number
(errno.EACCES, ...) to refuse, as the kernel's hooks return 0 or -errno; key_getsecurity
returns the key's label, or None for "no label" (KEYCTL_GET_SECURITY then gives ""). A policy
reads what a front may read of a Key (serial, type.name, description, uid, gid, perm,
is_keyring; and key.security, the label its key_alloc set) and of a Cred (uid, gid, groups,
caps, capable(), label). Hooks run on the daemon's one loop, synchronously: they must not
block. `wqfs mount --lsm python:MODULE:CLASS` loads one (MODULE a dotted name or a .py file;
CLASS is called with no arguments), e.g. mountpoint_tests/lsm_refuse_krb.py:

    class RefuseKrb(LSM):
        name = "refuse_krb"

        def watch_key(self, cred, key):
            if key.is_keyring and key.description.startswith("_krb"):
                return errno.EACCES
            return 0
"""
from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..cred import Cred, _current
from ..errors import KernelError

if TYPE_CHECKING:
    from ..fs.namespace import MountTarget
    from ..fs.super import Superblock
    from ..kernel import Kernel
    from ..keys.key import Key


class LSM:
    """A security module whose every hook allows: subclass it and override what it rules on."""

    name = "lsm"

    def key_alloc(self, key: Key, cred: Cred) -> Optional[int]:
        """security_key_alloc: label the new key (key.security); an errno refuses the key."""
        return 0

    def key_getsecurity(self, key: Key) -> Optional[str]:
        """security_key_getsecurity: the key's label, None for none."""
        return None

    def watch_key(self, cred: Cred, key: Key) -> Optional[int]:
        """security_watch_key: may cred watch key?"""
        return 0

    def watch_mount(self, cred: Cred, target: MountTarget) -> Optional[int]:
        """security_watch_mount: may cred watch the mount tree at target?"""
        return 0

    def watch_sb(self, cred: Cred, sb: Superblock) -> Optional[int]:
        """security_watch_sb: may cred watch the superblock?"""
        return 0

    def post_notification(self, w_cred: Optional[Cred], cred: Optional[Cred], rtype: int, subtype: int,
                          info: int, record: bytes) -> Optional[int]:
        """security_post_notification: may this copy of the record, posted by cred, reach the
        queue of the watch w_cred set? (record is the copy's bytes, its info word included.)"""
        return 0


def refusal(rc: Any) -> int:
    """A hook's answer as an errno, 0 for allow (None and False allow too)."""
    return int(rc) if rc else 0


def bind_current_cred(k: Kernel) -> None:
    """Make every system call of k (a Kernel method whose first argument is the caller's Cred)
    set current_cred() while it runs, so that what it posts carries its caller's Cred to
    post_notification. Done on the instance, and only when a module is loaded: without one the
    methods are the plain functions, and cost nothing more."""
    for name, attr in vars(type(k)).items():
        if not inspect.isfunction(attr) or name.startswith("_"):
            continue
        params = list(inspect.signature(attr).parameters)
        if len(params) >= 2 and params[1] == "cred":
            setattr(k, name, _as_current(attr, k))


def _as_current(fn: Callable[..., Any], k: Kernel) -> Callable[..., Any]:
    @functools.wraps(fn)
    def syscall(cred: Cred, *args: Any, **kwargs: Any) -> Any:
        token = _current.set(cred)
        try:
            return fn(k, cred, *args, **kwargs)
        finally:
            _current.reset(token)
    return syscall


# The dispatch (security.c's security_* functions): each site calls one of these only when a
# module is loaded.

def security_key_alloc(lsm: LSM, key: Key, cred: Cred) -> None:
    rc = refusal(lsm.key_alloc(key, cred))
    if rc:
        raise KernelError(rc, f"{lsm.name} refused to label key {key.serial}")


def security_key_getsecurity(lsm: LSM, key: Key) -> str:
    """The label KEYCTL_GET_SECURITY gives: "" for none (keyctl_get_security's empty string)."""
    return lsm.key_getsecurity(key) or ""


def security_watch_key(lsm: LSM, cred: Cred, key: Key) -> None:
    rc = refusal(lsm.watch_key(cred, key))
    if rc:
        raise KernelError(rc, f"{lsm.name} refused a watch on key {key.serial}")


def security_watch_mount(lsm: LSM, cred: Cred, target: MountTarget) -> None:
    rc = refusal(lsm.watch_mount(cred, target))
    if rc:
        raise KernelError(rc, f"{lsm.name} refused a watch on mount {target.mnt_id}")


def security_watch_sb(lsm: LSM, cred: Cred, sb: Superblock) -> None:
    rc = refusal(lsm.watch_sb(cred, sb))
    if rc:
        raise KernelError(rc, f"{lsm.name} refused a watch on superblock {sb.id:#x}")
