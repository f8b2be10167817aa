"""Mount namespaces and their mounts, fs/namespace.c as the August 2020 mount-notification patch
(A2) hooks it: attach_recursive_mnt posts NEW_MOUNT or MOVE_FROM/MOVE_TO, umount_tree's
umount_mnt posts UNMOUNT, mnt_make_readonly READONLY, set_mount_attributes SETATTR, and
reconfigure_super (fs/super.c, v16) the superblock's READONLY.

The emulated kernel does not mount anything: the host does, and a feed (wqfs/host/) reports
what it saw, as a whole table (mount_resync) or as single attaches, detaches and moves. What
the hooks would have posted is decided here, once, for every feed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Hashable, Iterable, Optional

from ... import abi
from ..watch_queue.watch import Watch, remove_watch_list
from . import mount_notify, super as super_c

if TYPE_CHECKING:
    from ..kernel import Kernel


@dataclass(frozen=True)
class MountInfo:
    """What the host says of one mount: a /proc/PID/mountinfo line's fields (statmount's
    equivalents), paths in the namespace's own frame (its root is "/")."""
    id: int                  # the 32-bit mnt_id of mountinfo's first column (A2's ids)
    parent: int              # the parent's mnt_id; the namespace's root names itself or a mount outside
    dev: int                 # the superblock, as st_dev (os.makedev of mountinfo's major:minor)
    root: str                # the mount's root within its filesystem
    mountpoint: str          # where it is mounted
    mnt_opts: str = "rw"     # per-mount options (the mount's own "ro", "nosuid", ...)
    fstype: str = ""
    source: str = ""
    sb_opts: str = "rw"      # superblock options

    @property
    def ro(self) -> bool:
        return "ro" in self.mnt_opts.split(",")

    @property
    def nosuid(self) -> bool:
        return "nosuid" in self.mnt_opts.split(",")

    @property
    def sb_ro(self) -> bool:
        return "ro" in self.sb_opts.split(",")


class Mount:
    """struct mount: what the host said of it, and mnt_watchers, kept by the watched directory
    (its path below the mount's root, "" for the root itself) as the kernel keeps them by dentry."""

    __slots__ = ("info", "watchers")

    def __init__(self, info: MountInfo) -> None:
        self.info = info
        self.watchers: dict[str, list[Watch]] = {}

    @property
    def id(self) -> int:
        return self.info.id

    def watch_count(self) -> int:
        return sum(len(w) for w in self.watchers.values())


class MountNamespace:
    """struct mnt_namespace: its mounts by mnt_id."""

    __slots__ = ("key", "mounts")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.mounts: dict[int, Mount] = {}

    def watch_count(self) -> int:
        return sum(m.watch_count() for m in self.mounts.values())


@dataclass
class MountTable:
    """Every namespace a feed reports, and every superblock their mounts share."""
    namespaces: dict[Hashable, MountNamespace] = field(default_factory=dict)
    superblocks: dict[int, "super_c.Superblock"] = field(default_factory=dict)


@dataclass(frozen=True)
class MountTarget:
    """A directory a caller named, resolved as that caller sees it (a front's path lookup):
    the namespace, the mount it is on, its path below that mount's root, and the superblock."""
    ns: Hashable
    mnt_id: int
    dentry: str
    dev: int


def _namespace(k: Kernel, ns_key: Hashable) -> MountNamespace:
    ns = k.mounts.namespaces.get(ns_key)
    if ns is None:
        ns = k.mounts.namespaces[ns_key] = MountNamespace(ns_key)
    return ns


def _insert(k: Kernel, ns: MountNamespace, info: MountInfo) -> Mount:
    mount = ns.mounts[info.id] = Mount(info)
    super_c.get_super(k, info.dev, info.sb_ro, info.sb_opts)
    return mount


def _forget(k: Kernel, ns: MountNamespace, mount: Mount) -> None:
    """The mount is gone: its watches get their removal records (the kernel posts them when
    the last reference goes, mntput_no_expire; the host tells wqfs of the detach only), and its
    superblock loses a user."""
    del ns.mounts[mount.id]
    for watch_list in list(mount.watchers.values()):
        remove_watch_list(watch_list, k.watch_counts, mount.id)
    mount.watchers.clear()
    super_c.put_super(k, mount.info.dev)


def mount_namespace_known(k: Kernel, ns_key: Hashable) -> bool:
    return ns_key in k.mounts.namespaces


def namespace_watch_count(k: Kernel, ns_key: Hashable) -> int:
    """How many mount watches the namespace's mounts hold (a feed stops when none is left)."""
    ns = k.mounts.namespaces.get(ns_key)
    return 0 if ns is None else ns.watch_count()


def find_mount(k: Kernel, ns_key: Hashable, mnt_id: int) -> Optional[MountInfo]:
    ns = k.mounts.namespaces.get(ns_key)
    mount = None if ns is None else ns.mounts.get(mnt_id)
    return None if mount is None else mount.info


def attach_mounts(k: Kernel, ns_key: Hashable, infos: Iterable[MountInfo]) -> None:
    """attach_recursive_mnt for mounts the host attached at once: NEW_MOUNT, triggered on the
    parent, for each new mount whose parent is not new with it (a tree bound or propagated in
    one call is one record, of its top), IS_NOW_RO if the new mount's superblock is read-only.
    A mount the namespace already has is a move (move_mount)."""
    ns = _namespace(k, ns_key)
    infos = list(infos)
    new_ids = {i.id for i in infos if i.id not in ns.mounts}
    for info in infos:
        old = ns.mounts.get(info.id)
        if old is not None:
            move_mount(k, ns_key, info)
            continue
        _insert(k, ns, info)
        if info.parent in new_ids:
            continue
        flags = abi.NOTIFY_MOUNT_IS_NOW_RO if info.sb_ro else 0
        mount_notify.notify_mount(ns, info.parent, info.id, abi.NOTIFY_MOUNT_NEW_MOUNT, flags, k.lsm)


def umount_mounts(k: Kernel, ns_key: Hashable, mnt_ids: Iterable[int]) -> None:
    """umount_tree for mounts the host detached at once: UNMOUNT, triggered on the parent, for
    each whose parent stays (a lazily detached tree stays connected below its top, so only the
    top is unmounted from the namespace), then the removal of every watch on each."""
    ns = k.mounts.namespaces.get(ns_key)
    if ns is None:
        return
    gone = [ns.mounts[i] for i in mnt_ids if i in ns.mounts]
    gone_ids = {m.id for m in gone}
    for mount in gone:
        if mount.info.parent not in gone_ids:
            mount_notify.notify_mount(ns, mount.info.parent, mount.id, abi.NOTIFY_MOUNT_UNMOUNT, 0, k.lsm)
    for mount in gone:
        _forget(k, ns, mount)


def move_mount(k: Kernel, ns_key: Hashable, info: MountInfo) -> None:
    """attach_recursive_mnt moving a mount: MOVE_FROM triggered on the old parent, the mount
    re-hung, MOVE_TO triggered on the new one."""
    ns = k.mounts.namespaces.get(ns_key)
    mount = None if ns is None else ns.mounts.get(info.id)
    if ns is None or mount is None:
        attach_mounts(k, ns_key, [info])
        return
    mount_notify.notify_mount(ns, mount.info.parent, mount.id, abi.NOTIFY_MOUNT_MOVE_FROM, 0, k.lsm)
    mount.info = info
    mount_notify.notify_mount(ns, info.parent, mount.id, abi.NOTIFY_MOUNT_MOVE_TO, 0, k.lsm)


def change_mount(k: Kernel, ns_key: Hashable, info: MountInfo) -> None:
    """A remount the host reported by its result: a superblock reconfigured (reconfigure_super:
    the superblock's READONLY, IS_NOW_RO if it went read-only) or a mount's own flags changed
    (mnt_make_readonly / __mnt_unmake_readonly: READONLY if read-only flipped), then
    set_mount_attributes' SETATTR, whose IS_NOW_RO the patch takes from the new mount flags'
    SB_RDONLY bit, which is MNT_NOSUID's."""
    ns = k.mounts.namespaces.get(ns_key)
    mount = None if ns is None else ns.mounts.get(info.id)
    if ns is None or mount is None:
        return
    old = mount.info
    mount.info = info
    if old.dev != info.dev:
        super_c.put_super(k, old.dev)
        super_c.get_super(k, info.dev, info.sb_ro, info.sb_opts)
    sb_changed = super_c.reconfigure_super(k, info.dev, info.sb_ro, info.sb_opts)
    if not sb_changed and old.sb_opts != info.sb_opts:
        sb_changed = True  # another of its mounts reported the superblock first
    if not sb_changed and old.ro != info.ro:
        flags = abi.NOTIFY_MOUNT_IS_NOW_RO if info.ro else 0
        mount_notify.notify_mount(ns, info.id, 0, abi.NOTIFY_MOUNT_READONLY, flags, k.lsm)
    if sb_changed or old.mnt_opts != info.mnt_opts:
        flags = abi.NOTIFY_MOUNT_IS_NOW_RO if info.nosuid else 0
        mount_notify.notify_mount(ns, info.id, 0, abi.NOTIFY_MOUNT_SETATTR, flags, k.lsm)


def mount_resync(k: Kernel, ns_key: Hashable, infos: Iterable[MountInfo]) -> None:
    """The host's whole table of the namespace. The first one is taken as it is (nothing was
    watched before it); later ones are compared with what the namespace has, and each
    difference is posted as the hook that made it would have: detaches, moves, attaches, then
    attribute changes, in table order within each."""
    infos = list(infos)
    ns = k.mounts.namespaces.get(ns_key)
    if ns is None:
        ns = _namespace(k, ns_key)
        for info in infos:
            _insert(k, ns, info)
        return
    fresh = {i.id: i for i in infos}
    before = {i: m.info for i, m in ns.mounts.items()}
    moved = [info for info in infos if info.id in before and _place(info, fresh) != _place(before[info.id], before)]
    umount_mounts(k, ns_key, [i for i in ns.mounts if i not in fresh])
    for info in moved:
        move_mount(k, ns_key, info)
    added = [info for info in infos if info.id not in ns.mounts]
    attach_mounts(k, ns_key, added)
    for info in infos:
        mount = ns.mounts.get(info.id)
        if mount is not None and mount.info != info:
            change_mount(k, ns_key, info)


def _place(info: MountInfo, table: dict[int, MountInfo]) -> tuple[int, Optional[str]]:
    """Where a mount hangs: its parent and its mountpoint below the parent's root. A mount carried
    along by its parent's move keeps its place (only the moved mount's changed)."""
    parent = table.get(info.parent)
    if parent is None or parent.id == info.id:
        return (info.parent, info.mountpoint)
    return (info.parent, mount_notify.path_below(info.mountpoint, parent.mountpoint))


def drop_mount_namespace(k: Kernel, ns_key: Hashable) -> None:
    """No one reports the namespace any more (it died, or its feed ended): every mount in it
    goes, each watch with its removal record, as the namespace's death frees its mounts."""
    ns = k.mounts.namespaces.pop(ns_key, None)
    if ns is None:
        return
    for mount in list(ns.mounts.values()):
        _forget(k, ns, mount)
