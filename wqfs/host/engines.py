"""The feed of one mount namespace: what the host reports of it, told to the emulated kernel's
fs/namespace.c hooks (kernel.attach_mounts, umount_mounts, move_mount, mount_resync).

Two engines, one per namespace that has watches:

* fanotify (Linux 6.15+): a FAN_REPORT_MNT group marked on the namespace (fanotify.py) says
  which mount was attached or detached, by its 64-bit unique id; statmount (statmount.py) gives
  the attached mount's fields. A detached mount cannot be statmount'ed any more, so the engine
  keeps its own map of unique ids to mountinfo's 32-bit ids. ATTACH|DETACH in one event is a
  move. The events of one read are passed on in runs of one kind, so that a lazily detached
  tree reaches umount_mounts at once. Remounts are in no fanotify event: a POLLPRI on
  mountinfo that no mount event explains is a remount, and only then is the table re-read.
* mountinfo (any kernel; the fallback, or forced): every POLLPRI re-reads the table and
  mount_resync tells the differences.

The namespace is read through a sentinel (sentinel.py): /proc/SENTINEL/mountinfo is its table
in the frame of the namespace's root, and polls POLLPRI on change (fs/proc_namespace.c). Its
poll has a side effect (mounts_poll rearms the event as it reports it), so it is polled by
poll(2) in a thread of its own and never nested in trio's epoll, which would poll it twice and
lose the event between the two.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import threading
from typing import Callable, Hashable, Iterable, Optional

import trio

from ..kernel import Kernel, MountInfo
from . import fanotify, mountinfo, statmount
from .sentinel import Sentinel

log = logging.getLogger("wqfs.host")

# Every attach and detach also polls POLLPRI: a POLLPRI is a mount event's if an event changed
# the table since the last POLLPRI was handled, or if one comes within EXPLAIN_GRACE (the kernel
# wakes mountinfo's pollers while it attaches, touch_mnt_namespace, and queues the fanotify event
# a moment later, when it unlocks the namespace, namespace_unlock; the POLLPRI reaches trio
# through a thread, the event directly, so either may be seen first). Any other is a remount.
EXPLAIN_GRACE = 0.005
# A POLLPRI taken for a mount event's may also have carried a remount (one wake-up for several
# changes): once the namespace has had no mount event for QUIET_RECHECK seconds, the table is
# read once more, so such a remount is posted late rather than never (if its mount still exists).
# A storm of mount events reads no table; its end reads one.
QUIET_RECHECK = 0.05
ANCHORS = 4  # processes remembered as members of the namespace
MAX_MOUNTS = 65536  # a namespace with more mounts than this is not followed (what a user can mount is the kernel's mount-max, 100,000)


def namespace_key(ns: "int | str") -> tuple[int, int]:
    """A mount namespace's key: (st_dev, st_ino) of its nsfs file, given as an fd on it or a
    process's /proc/PID/ns/mnt path (OSError if it cannot be read)."""
    st = os.stat(ns)
    return st.st_dev, st.st_ino


def _in_namespace(pid: "int | str", key: Hashable) -> bool:
    """Is process pid in the namespace of key? False if its namespace cannot be read (it is
    gone, or even root may not read it: one of an ancestor user namespace)."""
    try:
        return namespace_key(f"/proc/{pid}/ns/mnt") == key
    except OSError:
        return False


class FanotifyUnavailable(OSError):
    """The namespace cannot have a fanotify group (no CAP_SYS_ADMIN over its user namespace,
    too many groups): the mountinfo engine can still follow it."""


class NamespaceFeed:
    """One namespace's engine: its sentinel, its mountinfo fd, its fanotify group if it has one,
    and what it has told the kernel (its own copy of the table, and the unique-id map)."""

    def __init__(self, kernel: Kernel, key: Hashable, nsfd: int, starter_uid: int, use_fanotify: bool,
                 own_namespace: bool, threads: trio.CapacityLimiter, retire: Callable[["NamespaceFeed"], None],
                 sentinel_needed: bool = True) -> None:
        """nsfd: the namespace (the feed owns it); own_namespace: the daemon's own, which lives as
        long as the daemon; threads: where the POLLPRI thread comes from; retire(feed): how the
        feed ends (its owner forgets it and the kernel the namespace, then feed.stop());
        sentinel_needed: False for an unprivileged daemon's own namespace, read at /proc/self."""
        self.kernel = kernel
        self.key = key
        self.nsfd = nsfd
        self.starter_uid = starter_uid
        self.use_fanotify = use_fanotify
        self.own_namespace = own_namespace
        self.sentinel_needed = sentinel_needed
        self.engine = "fanotify" if use_fanotify else "mountinfo"
        self.sentinel: Optional[Sentinel] = None
        self.ready = trio.Event()
        self.stopped = False
        self.error: Optional[BaseException] = None
        self.users = 0  # watch calls in progress (the reaper leaves the engine alone meanwhile)
        self.sb_ids: set[int] = set()  # superblocks watched through this namespace
        self.anchors: dict[int, int] = {}  # pid -> pidfd of processes known to be in the namespace
        self.table: dict[int, MountInfo] = {}
        self.children: dict[int, set[int]] = {}
        self.old_of: dict[int, int] = {}     # unique id -> mountinfo id
        self.unique_of: dict[int, int] = {}  # mountinfo id -> unique id
        self._threads = threads
        self.retire = retire
        self._scope = trio.CancelScope()
        self._nursery: Optional[trio.Nursery] = None
        self._mountinfo_fd = -1
        self._group = -1
        self._wake_r = self._wake_w = -1  # ends the POLLPRI thread's poll
        self._poll_lock = threading.Lock()  # who closes the fds the thread polls: it, or _close
        self._polling = self._closing = False
        self._statmount: Optional[statmount.Statmounter] = None
        self._parser = mountinfo.Parser()
        self._changes = 0  # mount events that changed the table (not those a table read had already shown)
        self._changes_explained = 0  # ... of which the POLLPRIs handled so far were the echo
        self._events_applied = trio.Event()
        self._recheck = trio.Event()  # set when a POLLPRI was taken for a mount event's
        self.counts = {"events": 0, "resyncs": 0, "statmounts": 0, "unexplained_pri": 0, "overflows": 0, "rechecks": 0}

    # ---- life ----

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start (sentinel, fds, the first table), report started, then feed until stopped or
        the namespace goes; retired at the end, however it ends. Errors after the start are
        logged, never raised (the feeds' nursery is the daemon's)."""
        started = False
        try:
            with self._scope:
                await self._start()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self.sentinel is not None:
                        nursery.start_soon(self._watch_sentinel)
                    for pid, pidfd in list(self.anchors.items()):
                        nursery.start_soon(self._watch_anchor, pid, pidfd)
                    if self.use_fanotify:
                        nursery.start_soon(self._feed_events)
                    nursery.start_soon(self._feed_pri)
                    if self.use_fanotify:
                        nursery.start_soon(self._recheck_when_quiet)
                    started = True
                    self.ready.set()
                    task_status.started()
        except Exception as e:
            if not started:
                self.error = e
                raise
            log.exception("mount namespace %s: the feed failed", self.key)
        finally:
            self._nursery = None
            self.retire(self)
            with trio.CancelScope(shield=True):
                await self._close()
                self.ready.set()

    def stop(self) -> None:
        """End the feed: nothing it does after this reaches the kernel (a retired namespace
        may be another feed's already)."""
        self.stopped = True
        self._scope.cancel()

    async def _start(self) -> None:
        if self.sentinel_needed:
            self.sentinel = await Sentinel.start(self.nsfd)
            where = f"/proc/{self.sentinel.pid}"
            if not _in_namespace(self.sentinel.pid, self.key):
                raise OSError(errno.ESRCH, "the sentinel is not in the namespace")
        else:
            where = "/proc/self"
        self._mountinfo_fd = os.open(f"{where}/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.use_fanotify:
            try:
                self._group = fanotify.mount_group(self.nsfd)
                self._statmount = statmount.Statmounter(statmount.mntns_id(self.nsfd))
            except OSError as e:
                raise FanotifyUnavailable(e.errno, f"no fanotify mount events for the namespace: {e.strerror}") from e
        # the marks first, the table after: whatever changed in between is in an event, and an
        # event about a mount the table already shows as it is changes nothing
        self._load(self._read_table(), first=True)
        if self.stopped:
            raise OSError(errno.ENOSPC, f"more than {MAX_MOUNTS} mounts in the namespace")
        if self.use_fanotify:
            self._apply(fanotify.read_events(self._group))

    async def _close(self) -> None:
        if self._group >= 0:
            trio.lowlevel.notify_closing(self._group)
        for pidfd in self.anchors.values():
            trio.lowlevel.notify_closing(pidfd)
            os.close(pidfd)
        self.anchors.clear()
        if self._group >= 0:
            os.close(self._group)
        self._group = -1
        if self.sentinel is not None:
            await self.sentinel.stop()
        if self.nsfd >= 0:
            os.close(self.nsfd)
            self.nsfd = -1
        with self._poll_lock:  # a thread still in poll(2) on them closes them when it is out
            self._closing = True
            if self._polling:
                os.write(self._wake_w, b"x")
            else:
                self._close_poll_fds()

    def _close_poll_fds(self) -> None:
        for fd in (self._mountinfo_fd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._mountinfo_fd = self._wake_r = self._wake_w = -1

    async def _watch_sentinel(self) -> None:
        assert self.sentinel is not None
        await self.sentinel.wait()
        log.info("mount namespace %s: its sentinel exited", self.key)
        self.retire(self)

    # ---- the namespace's members ----

    def add_anchor(self, pid: int) -> None:
        """A process in the namespace (a watcher): while one lives in it, the namespace does."""
        if self.own_namespace or pid in self.anchors or len(self.anchors) >= ANCHORS:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        if not _in_namespace(pid, self.key):
            os.close(pidfd)
            return
        self.anchors[pid] = pidfd
        if self._nursery is not None:
            self._nursery.start_soon(self._watch_anchor, pid, pidfd)

    async def _watch_anchor(self, pid: int, pidfd: int) -> None:
        try:
            await trio.lowlevel.wait_readable(pidfd)
        except trio.ClosedResourceError:
            return
        if self.anchors.get(pid) == pidfd:
            del self.anchors[pid]
            trio.lowlevel.notify_closing(pidfd)
            os.close(pidfd)
        self.check_anchors()

    def _find_member(self, exclude: set[int]) -> Optional[int]:
        """Any process of the namespace but ours (a scan of /proc, done only when the last known
        member is gone). A process whose namespace even root may not read (one of an ancestor
        user namespace, such as a container's init) is taken as outside it."""
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in exclude and _in_namespace(name, self.key):
                return int(name)
        return None

    def check_anchors(self) -> None:
        """Forget anchors that left; with none left, look for another member, and if there is
        none, the namespace is gone (the sentinel and the fds that keep it alive are ours):
        the engine stops, and the kernel forgets the namespace."""
        if self.own_namespace:
            return
        for pid, pidfd in list(self.anchors.items()):
            if not _in_namespace(pid, self.key):
                trio.lowlevel.notify_closing(pidfd)
                os.close(pidfd)
                del self.anchors[pid]
        if self.anchors:
            return
        member = self._find_member({self.sentinel.pid} if self.sentinel is not None else set())
        if member is None:
            log.info("mount namespace %s: no process is left in it", self.key)
            self.retire(self)
        else:
            self.add_anchor(member)

    # ---- the table ----

    def _read_table(self) -> list[MountInfo]:
        return self._parser.parse(mountinfo.read_fd(self._mountinfo_fd))

    def _load(self, infos: list[MountInfo], first: bool = False) -> None:
        """A whole table: to the kernel (mount_resync), and to the engine's own copy; the
        unique-id map is rebuilt if mounts came that no event introduced."""
        if self.stopped:
            return
        self.counts["resyncs"] += 0 if first else 1
        new = {i.id for i in infos} - self.table.keys()
        if len(infos) > MAX_MOUNTS:
            self._too_big(len(infos))
            return
        self.kernel.mount_resync(self.key, infos)
        self.table = {i.id: i for i in infos}
        self.children = {}
        for info in infos:
            self.children.setdefault(info.parent, set()).add(info.id)
        if self._statmount is not None:
            for old in [o for o in self.unique_of if o not in self.table]:
                self.old_of.pop(self.unique_of.pop(old), None)
            if new:
                self._map_ids(full=first)

    def _too_big(self, mounts: int) -> None:
        """Bounded memory: a namespace grown past MAX_MOUNTS is no longer followed, and its
        watches get their removal records (as if it had gone)."""
        log.warning("mount namespace %s: %d mounts, more than the %d followed: its watches are removed",
                    self.key, mounts, MAX_MOUNTS)
        self.retire(self)

    def _map_ids(self, full: bool = True) -> None:
        """The unique ids of the namespace's mounts (listmount), and the mountinfo id of each
        (statmount): all of them, or only those the map does not have yet."""
        assert self._statmount is not None
        if full:
            self.old_of.clear()
            self.unique_of.clear()
        for unique in statmount.listmount(self._statmount.ns_id):
            if unique in self.old_of:
                continue
            try:
                old, _ = self._statmount.ids(unique)
            except OSError:
                continue
            self.counts["statmounts"] += 1
            stale = self.unique_of.get(old)
            if stale is not None:
                self.old_of.pop(stale, None)
            self.old_of[unique] = old
            self.unique_of[old] = unique

    def resync(self) -> None:
        """Re-read the table now (a lookup found a mount the kernel does not have yet)."""
        self._load(self._read_table())

    def _put(self, info: MountInfo) -> None:
        old = self.table.get(info.id)
        if old is not None:
            self.children.get(old.parent, set()).discard(info.id)
        self.table[info.id] = info
        self.children.setdefault(info.parent, set()).add(info.id)

    def _drop(self, old_id: int) -> None:
        info = self.table.pop(old_id, None)
        if info is not None:
            siblings = self.children.get(info.parent)
            if siblings is not None:
                siblings.discard(old_id)
                if not siblings:
                    del self.children[info.parent]
        unique = self.unique_of.pop(old_id, None)
        if unique is not None:
            self.old_of.pop(unique, None)

    # ---- the feed ----

    async def _feed_events(self) -> None:
        """The fanotify group's events, as they come."""
        while True:
            await trio.lowlevel.wait_readable(self._group)
            events = fanotify.read_events(self._group)
            if events:
                self._apply(events)
                self._events_applied.set()
                self._events_applied = trio.Event()

    def _poll_pri(self) -> bool:
        """In a thread: block in poll(2) until mountinfo polls POLLPRI (True) or the engine
        closes (False); a thread the engine abandoned closes the fds itself."""
        with self._poll_lock:
            if self._closing:
                return False  # _close closed the fds
            self._polling = True
        poller = select.poll()
        poller.register(self._mountinfo_fd, select.POLLPRI)
        poller.register(self._wake_r, select.POLLIN)
        pri = None
        while pri is None:
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    pri = False
                elif fd == self._mountinfo_fd and pri is None:
                    pri = True
        with self._poll_lock:
            self._polling = False
            if self._closing:
                self._close_poll_fds()
                return False
        return pri

    async def _feed_pri(self) -> None:
        """POLLPRIs: the fallback's every change; for the fanotify engine, the remounts (a
        POLLPRI that no mount event came with)."""
        while True:
            pri = await trio.to_thread.run_sync(self._poll_pri, abandon_on_cancel=True, limiter=self._threads)
            if not pri:
                return
            if self.use_fanotify:
                if self._changes == self._changes_explained:
                    with trio.move_on_after(EXPLAIN_GRACE):
                        while self._changes == self._changes_explained:
                            await self._events_applied.wait()
                explained = self._changes != self._changes_explained
                self._changes_explained = self._changes
                if explained:
                    self._recheck.set()
                    continue
                self.counts["unexplained_pri"] += 1
            self._load(self._read_table())

    async def _recheck_when_quiet(self) -> None:
        """The table read once after a run of explained POLLPRIs, when no mount event has come
        for QUIET_RECHECK seconds (see QUIET_RECHECK)."""
        while True:
            await self._recheck.wait()
            self._recheck = trio.Event()
            while True:
                seen = self._changes
                await trio.sleep(QUIET_RECHECK)
                if self._changes == seen:
                    break
            self.counts["rechecks"] += 1
            self._load(self._read_table())

    def _apply(self, events: Iterable[fanotify.Event]) -> None:
        """One read's mount events, in runs of one kind (a move is a run of its own)."""
        kind, run = 0, []  # type: int, list[int]
        for event in events:
            self.counts["events"] += 1
            if event.mask & fanotify.FAN_Q_OVERFLOW:
                self.counts["overflows"] += 1
                self._flush(kind, run)
                kind, run = 0, []
                self._load(self._read_table())
                if self._statmount is not None:
                    self._map_ids()
                continue
            if event.mnt_id is None:
                continue
            this = event.mask & (fanotify.FAN_MNT_ATTACH | fanotify.FAN_MNT_DETACH)
            if this != kind or this == fanotify.FAN_MNT_ATTACH | fanotify.FAN_MNT_DETACH:
                self._flush(kind, run)
                kind, run = this, []
            run.append(event.mnt_id)
        self._flush(kind, run)

    def _stat(self, unique: int) -> Optional[MountInfo]:
        """statmount of an attached mount, recorded in the id map; None once it is gone."""
        assert self._statmount is not None
        try:
            answer = self._statmount.stat(unique)
        except OSError:
            return None
        self.counts["statmounts"] += 1
        self.old_of[unique] = answer.info.id
        self.unique_of[answer.info.id] = unique
        return answer.info

    def _gone(self, old_id: int) -> bool:
        """Is a mount of the table detached (statmount ENOENT)? One without a known unique id
        cannot be asked, and is taken as present."""
        unique = self.unique_of.get(old_id)
        if unique is None or self._statmount is None:
            return False
        try:
            self._statmount.ids(unique)
        except OSError as e:
            return e.errno in (errno.ENOENT, errno.EINVAL)
        return False

    def _flush(self, kind: int, run: list[int]) -> None:
        if not run or self.stopped:
            return
        if kind == fanotify.FAN_MNT_ATTACH:
            infos = []
            for unique in run:
                info = self._stat(unique)
                if info is None:
                    continue  # detached already: its DETACH is on the way, and nothing was told
                known = self.table.get(info.id)
                if known is not None and (known.parent, known.mountpoint) == (info.parent, info.mountpoint):
                    continue  # a table read after the attach has it already
                infos.append(info)
            if infos:
                if len(self.table) + len(infos) > MAX_MOUNTS:
                    self._too_big(len(self.table) + len(infos))
                    return
                self.kernel.attach_mounts(self.key, infos)
                self._changes += 1
                for info in infos:
                    self._put(info)
        elif kind == fanotify.FAN_MNT_DETACH:
            self._detach(run)
        else:
            for unique in run:
                info = self._stat(unique)
                if info is None:
                    continue
                self.kernel.move_mount(self.key, info)
                self._changes += 1
                self._put(info)
                self._rehang(info.id)

    def _detach(self, run: list[int]) -> None:
        """umount_mounts of the mounts detached together: those the events name, and those
        detached with them whose events are not read yet (a lazily detached tree's events come
        one per mount, and a read may split them), found by statmount of their neighbours."""
        gone: list[int] = []
        seen: set[int] = set()
        for unique in run:
            old = self.old_of.get(unique)
            if old is None or self.unique_of.get(old) != unique or old not in self.table or old in seen:
                continue
            top = old
            while True:  # up: a parent that went with it
                parent = self.table[top].parent
                if parent == top or parent not in self.table or parent in seen or not self._gone(parent):
                    break
                top = parent
            todo = [top]
            while todo:  # down: every mount below the top that is gone too
                current = todo.pop()
                if current in seen:
                    continue
                seen.add(current)
                gone.append(current)
                todo.extend(c for c in self.children.get(current, ()) if c not in seen and
                            (c == old or self._gone(c)))
        if gone:  # each tree top first, then what is below it
            self.kernel.umount_mounts(self.key, gone)
            self._changes += 1
            for old in gone:
                self._drop(old)

    def _rehang(self, moved: int) -> None:
        """A moved mount's submounts moved with it: their mount points are new (statmount),
        which the kernel is told as a change (they were not moved from their parents)."""
        todo = list(self.children.get(moved, ()))
        while todo:
            current = todo.pop()
            unique = self.unique_of.get(current)
            info = self._stat(unique) if unique is not None else None
            if info is None:
                continue
            if info != self.table.get(current):
                self.kernel.change_mount(self.key, info)
                self._put(info)
            todo.extend(self.children.get(current, ()))

    # ---- watches ----

    def watched(self) -> bool:
        """Has the namespace any mount watch, or any of the superblocks watched through it an sb watch?"""
        if self.kernel.namespace_watch_count(self.key):
            return True
        self.sb_ids = {sb for sb in self.sb_ids if self.kernel.superblock_watch_count(sb)}
        return bool(self.sb_ids)

    def statistics(self) -> dict[str, int]:
        return {**self.counts, "mounts": len(self.table)}
