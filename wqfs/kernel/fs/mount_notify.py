"""Mount topology and attribute change notifications: fs/mount_notify.c of the August 2020 patch
(A2, "watch_queue: Implement mount topology and attribute change notifications [ver #2]").

watch_mount(2) puts a watch on a directory (the kernel: on a dentry, in the mount's
mnt_watchers); notify_mount posts a change to every watch from the changed mount's root up to
the root of its namespace, the first directory's watchers without NOTIFY_MOUNT_IN_SUBTREE and
every later one's with it (post_mount_notification).
"""
from __future__ import annotations

import errno
import posixpath
from typing import TYPE_CHECKING, Optional

from ... import abi
from ...records import pack_mount_notification
from ..cred import Cred
from ..errors import KernelError
from ..security.security import security_watch_mount
from ..watch_queue.queue import WatchQueue
from ..watch_queue.watch import Watch, add_watch_to_object, find_watch, post_watch_notification, remove_watch_from_object

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..security.security import LSM
    from .namespace import MountNamespace, MountTarget

WATCH_AT_FLAGS = abi.AT_NO_AUTOMOUNT | abi.AT_EMPTY_PATH


def check_watch_args(watch_id: int, at_flags: int) -> None:
    """The checks watch_mount and watch_sb make before they look the path up: the tag is
    -1..255, and at_flags has nothing but AT_NO_AUTOMOUNT and AT_EMPTY_PATH (EINVAL)."""
    if watch_id < -1 or watch_id > 0xFF:
        raise KernelError(errno.EINVAL, "the watch tag is -1..255")
    if at_flags & ~WATCH_AT_FLAGS:
        raise KernelError(errno.EINVAL, f"at_flags {at_flags:#x}: only AT_NO_AUTOMOUNT and AT_EMPTY_PATH")


def path_below(path: str, mountpoint: str) -> Optional[str]:
    """path (in the namespace's frame) as a path below the root of a mount at mountpoint: ""
    for the mount's root, None if it is not below it. The dentry a watch names, and the place
    a mount has in its parent (a mount whose mountpoint is not below its parent's escaped)."""
    if mountpoint == "/":
        return path.strip("/")
    if path == mountpoint:
        return ""
    if path.startswith(mountpoint + "/"):
        return path[len(mountpoint) + 1:]
    return None


def notify_mount(ns: MountNamespace, trigger: int, aux: int, subtype: int, flags: int,
                 lsm: Optional[LSM] = None) -> None:
    """notify_mount + post_mount_notification: the record (triggered_on the trigger's id, aux
    the other mount's or 0), posted at each directory from the trigger's root rootwards, across
    each mountpoint into the parent, until the namespace's root or a mount that escaped. lsm:
    the Kernel's security module, which rules on each copy (the host's events have no
    generator: current_cred() is None outside a system call)."""
    mount = ns.mounts.get(trigger)
    hops = 0  # a table with a loop in it (the host's, mid-change) ends the walk, as an escape does
    info_flags = flags
    dentry = ""
    while mount is not None:
        if mount.watchers:
            watch_list = mount.watchers.get(dentry)
            if watch_list:
                post_watch_notification(
                    watch_list, abi.WATCH_TYPE_MOUNT_NOTIFY, subtype, abi.MOUNT_NOTIFICATION_SIZE,
                    lambda info: pack_mount_notification(subtype, trigger, aux, info), info_flags, lsm)
        else:
            dentry = ""
        info_flags |= abi.NOTIFY_MOUNT_IN_SUBTREE
        if dentry:
            dentry = posixpath.dirname(dentry)
            continue
        parent = ns.mounts.get(mount.info.parent)
        if parent is None or parent is mount:
            break
        up = path_below(mount.info.mountpoint, parent.info.mountpoint)
        hops += 1
        if up is None or hops > len(ns.mounts):
            break
        dentry, mount = up, parent


def watch_mount(k: Kernel, cred: Cred, target: MountTarget, queue: Optional[WatchQueue], watch_id: int,
                watch_limit: int = 1024) -> None:
    """watch_mount(2), after check_watch_args and the path lookup (LOOKUP_DIRECTORY |
    LOOKUP_FOLLOW, MAY_EXEC on the directory as the caller: the front's, on the real path):
    the queue (EINVAL, get_watch_queue's), then add (security_watch_mount; EBUSY, EAGAIN past
    watch_limit) or, for
    -1, remove (EBADSLT), its removal record carrying the mount's id."""
    if queue is None or queue.defunct:
        raise KernelError(errno.EINVAL, "not a notification queue")
    ns = k.mounts.namespaces.get(target.ns)
    mount = None if ns is None else ns.mounts.get(target.mnt_id)
    if mount is None:
        raise KernelError(errno.ENOENT, f"mount {target.mnt_id} is not in the namespace")
    object_id = (target.mnt_id, target.dentry)
    if watch_id >= 0:
        if k.lsm is not None:
            security_watch_mount(k.lsm, cred, target)
        watch_list = mount.watchers.setdefault(target.dentry, [])
        watch = Watch(queue, watch_list, abi.WATCH_TYPE_MOUNT_NOTIFY, object_id, watch_id, cred.uid, cred)
        try:
            add_watch_to_object(watch, k.watch_counts, watch_limit)
        finally:
            if not watch_list:
                del mount.watchers[target.dentry]
        return
    existing = find_watch(queue, abi.WATCH_TYPE_MOUNT_NOTIFY, object_id)
    if existing is None:
        raise KernelError(errno.EBADSLT, f"the queue does not watch {target.dentry or '/'} on mount {target.mnt_id}")
    remove_watch_from_object(existing, k.watch_counts, target.mnt_id)
    if not mount.watchers.get(target.dentry):
        mount.watchers.pop(target.dentry, None)
