"""watch_mount(2) and watch_sb(2) as the host serves them, and the feeds behind them: one
engine per mount namespace that has watches (engines.py), one FAN_FS_ERROR group per watched
superblock (sb_errors.py), the caller's path resolved as the caller (lookup.py).

MountFeeds is the one place that sequences a watch call, in the patches' order (A2's
fs/mount_notify.c, v16's fs/super.c): the tag and at_flags (EINVAL), then the caller's
namespace (its feed started, its first table loaded), then the lookup as the caller (ENOENT,
ENOTDIR, ELOOP, EACCES, EBADF...), MAY_EXEC on the target (EACCES), then the kernel's
watch_mount / watch_sb (EINVAL for a queue that is none, EBUSY, EAGAIN, EBADSLT). Both fronts
(`wqfs run`'s system calls and the FUSE tree's commands) call it.

Everything is bounded: a feed per namespace, NAMESPACES_PER_UID feeds started by one uid and
NAMESPACES in all (ENOSPC beyond, as unshare(2) says for too many namespaces), lookups few at a
time and each with a deadline, error groups few. A feed ends when its namespace has no mount
watch and none of its superblocks an sb watch (checked every TICK seconds), and when the
namespace has no process left in it (its sentinel and fds keep it alive, so that is what
"gone" means here; a namespace kept only by a bind mount of its nsfs file counts as gone).
"""
from __future__ import annotations

import errno
import logging
import os
from typing import Hashable, Optional

import trio

from ..kernel import Cred, Kernel, KernelError, MountTarget, WatchQueue, path_below
from . import fanotify, statmount
from .engines import FanotifyUnavailable, NamespaceFeed, namespace_key
from .lookup import Found, Lookups
from .sb_errors import SbErrorFeeds

log = logging.getLogger("wqfs.host")

ENGINES = ("auto", "fanotify", "mountinfo")
NAMESPACES_PER_UID = 16
NAMESPACES = 256
TICK = 1.0


def fanotify_engine_available() -> bool:
    """Mount events (fanotify, 6.15), statmount/listmount (6.8) and NS_GET_MNTNS_ID (6.11)."""
    if not fanotify.mount_events_available():
        return False
    try:
        nsfd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        ns_id = statmount.mntns_id(nsfd)
        roots = statmount.listmount(ns_id, batch=8)
        if roots:
            statmount.Statmounter(ns_id).stat(roots[0])
        return True
    except OSError:
        return False
    finally:
        os.close(nsfd)


class MountFeeds:
    """The host's mount and superblock events for one Kernel, and the watch calls on them."""

    def __init__(self, kernel: Kernel, engine: str = "auto", *, per_uid: int = NAMESPACES_PER_UID,
                 total: int = NAMESPACES, tick: float = TICK, lookups: Optional[Lookups] = None) -> None:
        """engine: "auto" (fanotify where the kernel has it, else mountinfo), "fanotify" (an
        error at run() where it has not), "mountinfo" (the fallback, forced)."""
        if engine not in ENGINES:
            raise ValueError(f"mount engine {engine!r}: one of {', '.join(ENGINES)}")
        self.kernel = kernel
        self.engine = engine
        self.per_uid = per_uid
        self.total = total
        self.tick = tick
        self.lookups = lookups or Lookups()
        self.sb_errors = SbErrorFeeds(kernel)
        self.privileged = os.geteuid() == 0
        self.use_fanotify = False
        self._feeds: dict[Hashable, NamespaceFeed] = {}
        self._nursery: Optional[trio.Nursery] = None
        self._threads = trio.CapacityLimiter(total + 1)
        self._own_key: Optional[tuple[int, int]] = None
        self._counts = {"watch_calls": 0, "feeds_started": 0, "feeds_ended": 0, "fallbacks": 0}
        self._ended: dict[str, int] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run forever: the feeds run inside, and the reaper that ends those nobody watches."""
        available = fanotify_engine_available() if self.engine != "mountinfo" else False
        if self.engine == "fanotify" and not available:
            raise RuntimeError("the fanotify mount engine needs fanotify mount events (Linux 6.15), statmount "
                               "(6.8) and NS_GET_MNTNS_ID (6.11), and CAP_SYS_ADMIN; use the mountinfo engine")
        self.use_fanotify = available
        fd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._own_key = namespace_key(fd)
        finally:
            os.close(fd)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reaper)
                task_status.started()
        finally:
            self._nursery = None

    # ---- the system calls ----

    async def watch_mount(self, pid: int, cred: Cred, dfd: Optional[int], path: bytes, at_flags: int,
                          queue: Optional[WatchQueue], watch_id: int, limit: int) -> None:
        """watch_mount(dfd, path, at_flags, queue, watch_id) by process pid with cred; limit:
        the watches a user may have (EAGAIN beyond). KernelError with the kernel's errno."""
        await self._watch(False, pid, cred, dfd, path, at_flags, queue, watch_id, limit)

    async def watch_sb(self, pid: int, cred: Cred, dfd: Optional[int], path: bytes, at_flags: int,
                       queue: Optional[WatchQueue], watch_id: int, limit: int) -> None:
        """watch_sb(dfd, path, at_flags, queue, watch_id), as watch_mount (but the patch's
        lookup: no final symlink followed, any file, an empty path ENOENT)."""
        await self._watch(True, pid, cred, dfd, path, at_flags, queue, watch_id, limit)

    async def _watch(self, for_sb: bool, pid: int, cred: Cred, dfd: Optional[int], path: bytes, at_flags: int,
                     queue: Optional[WatchQueue], watch_id: int, limit: int) -> None:
        self._counts["watch_calls"] += 1
        self.kernel.check_watch_args(watch_id, at_flags)
        nursery = self._nursery
        if nursery is None:
            raise KernelError(errno.ENOSYS, "the mount feed is not running")
        feed, nsfd = await self._feed_for(pid, cred)
        found: Optional[Found] = None
        feed.users += 1
        try:
            found = await self.lookups.lookup(pid, cred, nsfd, dfd, path, at_flags, for_sb,
                                              same_ns=feed.key == self._own_key)
            if self._feeds.get(feed.key) is not feed:
                raise KernelError(errno.ENOENT, "the mount namespace went away")
            target = self._target(feed, found)
            if target is None:  # a mount newer than the kernel's table: read it again, once
                feed.resync()
                target = self._target(feed, found)
            if target is None:
                raise KernelError(errno.ENOENT, f"mount {found.mnt_id} is not in the namespace")
            if for_sb:
                self.kernel.watch_sb(cred, target, queue, watch_id, limit)
                if watch_id >= 0 and found.fd is not None:
                    feed.sb_ids.add(target.dev)
                    fd, found = found.fd, None
                    mount = self.kernel.find_mount(feed.key, target.mnt_id)
                    await self.sb_errors.add(nursery, target.dev, fd, mount.fstype if mount is not None else "")
            else:
                self.kernel.watch_mount(cred, target, queue, watch_id, limit)
        finally:
            feed.users -= 1
            os.close(nsfd)
            if found is not None and found.fd is not None:
                os.close(found.fd)

    def _target(self, feed: NamespaceFeed, found: Found) -> Optional[MountTarget]:
        info = self.kernel.find_mount(feed.key, found.mnt_id)
        if info is None:
            return None
        dentry = path_below(found.path, info.mountpoint)
        if dentry is None:
            raise KernelError(errno.ENOENT, f"{found.path!r} is not below its mount's mount point {info.mountpoint!r}")
        return MountTarget(feed.key, found.mnt_id, dentry, info.dev)

    # ---- the feeds ----

    async def _feed_for(self, pid: int, cred: Cred) -> tuple[NamespaceFeed, int]:
        """The caller's namespace's feed, started and its first table loaded, and an fd on the
        namespace (the caller closes it)."""
        try:
            nsfd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise KernelError(errno.ESRCH, f"process {pid} is gone") from None
        try:
            key = namespace_key(nsfd)
            for _ in range(3):
                feed = self._feeds.get(key)
                if feed is None:
                    feed = await self._start_feed(key, nsfd, pid, cred)
                else:
                    await feed.ready.wait()
                if self._feeds.get(key) is feed:
                    feed.add_anchor(pid)
                    return feed, nsfd
            raise KernelError(errno.EAGAIN, "the mount namespace's feed keeps ending")
        except BaseException:
            os.close(nsfd)
            raise

    async def _start_feed(self, key: tuple[int, int], nsfd: int, pid: int, cred: Cred) -> NamespaceFeed:
        own = key == self._own_key
        if not self.privileged and not own:
            raise KernelError(errno.EPERM, "an unprivileged wqfs feeds only its own mount namespace")
        if len(self._feeds) >= self.total or \
                sum(1 for f in self._feeds.values() if f.starter_uid == cred.uid) >= self.per_uid:
            raise KernelError(errno.ENOSPC, "too many mount namespaces watched")
        assert self._nursery is not None
        use_fanotify = self.use_fanotify
        while True:
            feed = NamespaceFeed(self.kernel, key, os.dup(nsfd), cred.uid, use_fanotify, own, self._threads,
                                 retire=self._retire, sentinel_needed=self.privileged)
            feed.add_anchor(pid)
            self._feeds[key] = feed
            try:
                await self._nursery.start(feed.run)
            except Exception as e:
                self._retire(feed)
                if isinstance(e, FanotifyUnavailable) and self.engine == "auto":
                    log.warning("mount namespace %s: no fanotify feed (%s), reading mountinfo", key, e)
                    self._counts["fallbacks"] += 1
                    use_fanotify = False
                    continue
                log.warning("mount namespace %s: no feed: %s", key, e)
                err = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
                raise KernelError(err, f"cannot follow the mount namespace: {e}") from None
            self._counts["feeds_started"] += 1
            return feed

    def _retire(self, feed: NamespaceFeed) -> None:
        """The feed ends (unwatched, its namespace gone, or it failed): the kernel forgets the
        namespace now, each remaining watch with its removal record, so that a feed started
        for it after this one starts from nothing."""
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
            self._counts["feeds_ended"] += 1
            self.kernel.drop_mount_namespace(feed.key)
        feed.stop()

    async def _reaper(self) -> None:
        while True:
            await trio.sleep(self.tick)
            for feed in list(self._feeds.values()):
                if feed.users or not feed.ready.is_set():
                    continue
                if not feed.watched():
                    self._retire(feed)
                else:
                    feed.check_anchors()
            self.sb_errors.reap()

    def statistics(self) -> dict[str, int]:
        out = dict(self._counts)
        out["feeds"] = len(self._feeds)
        out["fanotify_feeds"] = sum(1 for f in self._feeds.values() if f.use_fanotify)
        out["mountinfo_feeds"] = out["feeds"] - out["fanotify_feeds"]
        for feed in self._feeds.values():
            for name, value in feed.statistics().items():
                out[name] = out.get(name, 0) + value
        out["lookups"] = self.lookups.done
        out["lookup_timeouts"] = self.lookups.timeouts
        out["sb_error_groups"] = len(self.sb_errors)
        out["sb_errors"] = self.sb_errors.errors
        return out
