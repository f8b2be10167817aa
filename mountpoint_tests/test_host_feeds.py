"""The host feed (wqfs/host/): real mounts in real private mount namespaces, fed to a core
Kernel by MountFeeds, read from its queues as the ABI's records. Both engines run every case
(the mountinfo fallback forced); the fanotify engine's cases skip where the kernel lacks it.

Every mount is made inside `unshare -m --propagation private`, in a tmpfs mounted over a
temporary directory there: nothing reaches the machine's namespace, and all of it goes when
the namespace's process (a `cat` reading a pipe from the test, so it ends with the test however
the test ends) is killed and the feed lets go of the namespace.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import shutil
import signal
import subprocess
import tempfile
from typing import AsyncIterator, Optional

import pytest
import trio

from helpers import NOBODY_UID
from wqfs import abi
from wqfs.host import mountinfo
from wqfs.host.feeds import MountFeeds, fanotify_engine_available
from wqfs.host.lookup import Lookups
from wqfs.kernel import Cred, Kernel, KernelError, WatchQueue
from wqfs.records import Loss, MountNotification, Removal, SuperblockNotification, parse

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and mounts need root")

WAIT = 15.0
ROOT = Cred(0, 0)
NOBODY = Cred(NOBODY_UID, NOBODY_UID)
FANOTIFY = fanotify_engine_available() if os.geteuid() == 0 else False
NEW, UNMOUNT, READONLY, SETATTR = (abi.NOTIFY_MOUNT_NEW_MOUNT, abi.NOTIFY_MOUNT_UNMOUNT, abi.NOTIFY_MOUNT_READONLY,
                                   abi.NOTIFY_MOUNT_SETATTR)
MOVE_FROM, MOVE_TO = abi.NOTIFY_MOUNT_MOVE_FROM, abi.NOTIFY_MOUNT_MOVE_TO
SUB, RO = abi.NOTIFY_MOUNT_IN_SUBTREE, abi.NOTIFY_MOUNT_IS_NOW_RO
SB_RO_FLAG = abi.NOTIFY_SUPERBLOCK_IS_NOW_RO


# ---------------------------------------------------------------- records as tuples

def rec(record) -> tuple:
    if isinstance(record, MountNotification):
        return ("mount", record.subtype, record.triggered_on, record.aux, record.tag, record.info & 0xFF0000)
    if isinstance(record, SuperblockNotification):
        return ("sb", record.subtype, record.sb_id, record.tag, record.info & 0xFF0000, record.error_number)
    if isinstance(record, Removal):
        return ("removal", record.id, record.tag)
    if isinstance(record, Loss):
        return ("loss",)
    return ("other", record)


def mount(subtype: int, on: int, aux: int = 0, tag: int = 1, flags: int = 0) -> tuple:
    return ("mount", subtype, on, aux, tag, flags)


def drain(queue: WatchQueue) -> list:
    out = []
    while True:
        try:
            data = queue.read_nowait(4096)
        except KernelError as e:
            assert e.errno == errno.EAGAIN
            return out
        out.extend(rec(r) for r in parse(data))


async def wait_records(queue: WatchQueue, count: int, timeout: float = WAIT) -> list:
    """Records until there are count of them (or the timeout passes: then what came)."""
    out: list = []
    with trio.move_on_after(timeout):
        while len(out) < count:
            out += drain(queue)
            if len(out) < count:
                await trio.sleep(0.005)
    return out


# ---------------------------------------------------------------- the host side

class Host:
    def __init__(self, kernel: Kernel, feeds: MountFeeds) -> None:
        self.kernel = kernel
        self.feeds = feeds

    def queue(self, size: int = 256) -> WatchQueue:
        q = self.kernel.new_queue(ROOT)
        q.set_size(size)
        return q

    async def watch(self, ns: "Namespace", path: str, queue: Optional[WatchQueue], tag: int = 1, *,
                    cred: Cred = ROOT, at_flags: int = 0, dfd: Optional[int] = None, sb: bool = False,
                    pid: Optional[int] = None) -> None:
        call = self.feeds.watch_sb if sb else self.feeds.watch_mount
        await call(pid or ns.pid, cred, dfd, os.fsencode(path), at_flags, queue, tag, 1024)

    async def until_no_feed(self) -> None:
        with trio.fail_after(WAIT):
            while self.feeds.statistics()["feeds"]:
                await trio.sleep(0.02)


class Namespace:
    """A process in a private mount namespace, with a tmpfs of its own at base."""

    def __init__(self, proc: subprocess.Popen, base: str) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.base = base

    def path(self, *names: str) -> str:
        return os.path.join(self.base, *names)

    async def sh(self, command: str) -> str:
        result = await trio.run_process(["nsenter", "-t", str(self.pid), "-m", "sh", "-ec", command],
                                        capture_stdout=True, capture_stderr=True, check=False)
        assert result.returncode == 0, (command, result.stderr.decode())
        return result.stdout.decode()

    def table(self) -> list:
        return mountinfo.read(self.pid)

    def mount_id(self, path: str) -> int:
        """The mount on top at path (mountinfo's first column, as the process sees it)."""
        found = [i.id for i in self.table() if i.mountpoint == path]
        assert found, f"nothing mounted at {path}"
        return found[-1]

    def dev(self, path: str) -> int:
        return [i.dev for i in self.table() if i.mountpoint == path][-1]


@contextlib.asynccontextmanager
async def namespace(root_dir: Optional[str] = None) -> AsyncIterator[Namespace]:
    base = tempfile.mkdtemp(prefix="wqfs-ns-")
    os.chmod(base, 0o755)
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "cat"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        mine = os.stat("/proc/self/ns/mnt").st_ino
        with trio.fail_after(WAIT):
            while os.stat(f"/proc/{proc.pid}/ns/mnt").st_ino == mine:
                await trio.sleep(0.005)
        ns = Namespace(proc, base)
        await ns.sh(f"mount -t tmpfs -o mode=755 wqfs-test {base}")
        yield ns
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()
        shutil.rmtree(base, ignore_errors=True)


ENGINES = [pytest.param("fanotify", marks=pytest.mark.skipif(not FANOTIFY, reason="this kernel has no fanotify "
                                                               "mount events (6.15) or statmount (6.8)")),
           "mountinfo"]


@pytest.fixture(params=ENGINES)
async def host(request) -> AsyncIterator[Host]:
    kernel = Kernel()
    feeds = MountFeeds(kernel, request.param, tick=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(feeds.run)
        yield Host(kernel, feeds)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def ns() -> AsyncIterator[Namespace]:
    async with namespace() as n:
        yield n


# ---------------------------------------------------------------- topology

async def test_a_tmpfs_mount_is_a_new_mount_triggered_on_its_parent(host, ns):
    q = host.queue()
    await host.watch(ns, ns.base, q, 7)
    await ns.sh(f"mkdir {ns.path('a')}; mount -t tmpfs none {ns.path('a')}")
    new = ns.mount_id(ns.path("a"))
    assert await wait_records(q, 1) == [mount(NEW, ns.mount_id(ns.base), new, 7)]
    assert host.feeds.statistics()["feeds"] == 1


async def test_a_read_only_tmpfs_is_new_and_now_read_only(host, ns):
    q = host.queue()
    await host.watch(ns, ns.base, q)
    await ns.sh(f"mkdir {ns.path('a')}; mount -t tmpfs -o ro none {ns.path('a')}")
    assert await wait_records(q, 1) == [mount(NEW, ns.mount_id(ns.base), ns.mount_id(ns.path("a")), 1, RO)]


async def test_a_bind_mount_is_a_new_mount(host, ns):
    q = host.queue()
    await host.watch(ns, ns.base, q)
    await ns.sh(f"mkdir -p {ns.path('src/d')} {ns.path('dst')}; mount --bind {ns.path('src/d')} {ns.path('dst')}")
    bound = ns.mount_id(ns.path("dst"))
    assert await wait_records(q, 1) == [mount(NEW, ns.mount_id(ns.base), bound)]
    assert [i.root for i in ns.table() if i.id == bound] == ["/src/d"]


async def test_mount_move_is_move_from_then_move_to(host, ns):
    await ns.sh(f"mkdir {ns.path('p1')} {ns.path('p2')}; mount -t tmpfs none {ns.path('p1')}; "
                f"mount -t tmpfs none {ns.path('p2')}; mkdir {ns.path('p1/x')} {ns.path('p2/x')}; "
                f"mount -t tmpfs none {ns.path('p1/x')}")
    p1, p2, x = ns.mount_id(ns.path("p1")), ns.mount_id(ns.path("p2")), ns.mount_id(ns.path("p1/x"))
    q = host.queue()
    await host.watch(ns, ns.base, q)
    await ns.sh(f"mount --move {ns.path('p1/x')} {ns.path('p2/x')}")
    assert await wait_records(q, 2) == [mount(MOVE_FROM, p1, x, flags=SUB), mount(MOVE_TO, p2, x, flags=SUB)]
    assert ns.mount_id(ns.path("p2/x")) == x


async def test_a_moved_tree_is_one_move_and_its_submounts_move_with_it(host, ns):
    await ns.sh(f"mkdir {ns.path('p1')} {ns.path('p2')}; mount -t tmpfs none {ns.path('p1')}; "
                f"mkdir {ns.path('p1/x')}; mount -t tmpfs none {ns.path('p1/x')}; mkdir {ns.path('p1/x/c')}; "
                f"mount -t tmpfs none {ns.path('p1/x/c')}; mkdir {ns.path('p1/x/c/d')}")
    p1, base, x = ns.mount_id(ns.path("p1")), ns.mount_id(ns.base), ns.mount_id(ns.path("p1/x"))
    c = ns.mount_id(ns.path("p1/x/c"))
    q = host.queue()
    await host.watch(ns, ns.base, q)
    await ns.sh(f"mkdir {ns.path('x')}; mount --move {ns.path('p1/x')} {ns.path('x')}")
    assert await wait_records(q, 2) == [mount(MOVE_FROM, p1, x, flags=SUB), mount(MOVE_TO, base, x)]
    await ns.sh(f"mount -t tmpfs none {ns.path('x/c/d')}")  # the walk from c goes up through x's new place
    assert await wait_records(q, 1) == [mount(NEW, c, ns.mount_id(ns.path("x/c/d")), flags=SUB)]


async def test_umount_is_unmount_then_the_removal_of_a_watch_on_it(host, ns):
    await ns.sh(f"mkdir {ns.path('a')}; mount -t tmpfs none {ns.path('a')}")
    a = ns.mount_id(ns.path("a"))
    q = host.queue()
    await host.watch(ns, ns.base, q, 1)
    await host.watch(ns, ns.path("a"), q, 2)
    await ns.sh(f"umount {ns.path('a')}")
    assert await wait_records(q, 2) == [mount(UNMOUNT, ns.mount_id(ns.base), a, 1), ("removal", a, 2)]


async def test_a_lazy_umount_of_a_tree_is_one_unmount_of_its_top(host, ns):
    await ns.sh(f"mkdir {ns.path('a')}; mount -t tmpfs none {ns.path('a')}; mkdir {ns.path('a/y')} {ns.path('a/z')}; "
                f"mount -t tmpfs none {ns.path('a/y')}; mount -t tmpfs none {ns.path('a/z')}; "
                f"mkdir {ns.path('a/y/w')}; mount -t tmpfs none {ns.path('a/y/w')}")
    a, y = ns.mount_id(ns.path("a")), ns.mount_id(ns.path("a/y"))
    q = host.queue()
    await host.watch(ns, ns.base, q, 1)
    await host.watch(ns, ns.path("a/y"), q, 2)
    await ns.sh(f"umount -l {ns.path('a')}")
    assert await wait_records(q, 2) == [mount(UNMOUNT, ns.mount_id(ns.base), a, 1), ("removal", y, 2)]
    await ns.sh(f"mkdir -p {ns.path('b')}; mount -t tmpfs none {ns.path('b')}")  # a record after: nothing else came
    assert await wait_records(q, 1) == [mount(NEW, ns.mount_id(ns.base), ns.mount_id(ns.path("b")), 1)]


async def test_a_watch_below_the_trigger_sees_nothing_and_one_above_sees_it_in_its_subtree(host, ns):
    await ns.sh(f"mkdir {ns.path('p')}; mount -t tmpfs none {ns.path('p')}; mkdir -p {ns.path('p/sub/x')}")
    p = ns.mount_id(ns.path("p"))
    q = host.queue()
    await host.watch(ns, ns.path("p/sub"), q, 3)  # below the trigger's root: the walk starts above it
    await host.watch(ns, ns.path("p"), q, 2)      # the trigger's root
    await host.watch(ns, ns.base, q, 1)           # above, across p's mountpoint
    await host.watch(ns, "/", q, 4)               # the namespace's root
    await ns.sh(f"mount -t tmpfs none {ns.path('p/sub/x')}")
    x = ns.mount_id(ns.path("p/sub/x"))
    got = await wait_records(q, 3)
    # (mounts of the machine's that go away, such as other test daemons' FUSE mounts, can be
    # detached from every namespace's copy: a watch on "/" may see those too)
    assert [r for r in got if r[3] == x or r[4] != 4] == [mount(NEW, p, x, 2), mount(NEW, p, x, 1, SUB),
                                                          mount(NEW, p, x, 4, SUB)]
    assert [r for r in drain(q) if r[4] != 4] == []


async def test_two_namespaces_are_kept_apart(host):
    async with namespace() as one, namespace() as two:
        q1, q2 = host.queue(), host.queue()
        await host.watch(one, one.base, q1, 1)
        await host.watch(two, two.base, q2, 2)
        assert host.feeds.statistics()["feeds"] == 2
        await one.sh(f"mkdir {one.path('a')}; mount -t tmpfs none {one.path('a')}")
        assert await wait_records(q1, 1) == [mount(NEW, one.mount_id(one.base), one.mount_id(one.path("a")), 1)]
        await two.sh(f"mkdir {two.path('b')}; mount -t tmpfs none {two.path('b')}")
        assert await wait_records(q2, 1) == [mount(NEW, two.mount_id(two.base), two.mount_id(two.path("b")), 2)]
        assert drain(q1) == [] and drain(q2) == []


# ---------------------------------------------------------------- attributes

async def test_a_superblock_remount_ro_and_rw(host, ns):
    await ns.sh(f"mkdir {ns.path('a')}; mount -t tmpfs none {ns.path('a')}")
    a, dev = ns.mount_id(ns.path("a")), ns.dev(ns.path("a"))
    q = host.queue()
    await host.watch(ns, ns.path("a"), q, 5, sb=True)
    await host.watch(ns, ns.base, q, 1)
    await ns.sh(f"mount -o remount,ro {ns.path('a')}")
    assert await wait_records(q, 2) == [("sb", abi.NOTIFY_SUPERBLOCK_READONLY, dev, 5, SB_RO_FLAG, None),
                                        mount(SETATTR, a, 0, 1, SUB)]
    await ns.sh(f"mount -o remount,rw {ns.path('a')}")
    assert await wait_records(q, 2) == [("sb", abi.NOTIFY_SUPERBLOCK_READONLY, dev, 5, 0, None),
                                        mount(SETATTR, a, 0, 1, SUB)]


async def test_a_bind_remount_ro_is_readonly_then_setattr(host, ns):
    await ns.sh(f"mkdir {ns.path('a')}; mount -t tmpfs none {ns.path('a')}")
    a = ns.mount_id(ns.path("a"))
    q = host.queue()
    await host.watch(ns, ns.path("a"), q, 2)
    await host.watch(ns, ns.path("a"), q, 6, sb=True)
    await ns.sh(f"mount -o remount,bind,ro {ns.path('a')}")
    assert await wait_records(q, 2) == [mount(READONLY, a, 0, 2, RO), mount(SETATTR, a, 0, 2)]
    await ns.sh(f"mount -o remount,bind,rw,nosuid {ns.path('a')}")
    # the patch takes SETATTR's IS_NOW_RO from the mount flags' SB_RDONLY bit, which is MNT_NOSUID's
    assert await wait_records(q, 2) == [mount(READONLY, a, 0, 2), mount(SETATTR, a, 0, 2, RO)]
    assert drain(q) == []  # the superblock was not reconfigured


async def test_a_remount_right_after_a_mount_is_not_lost(host, ns):
    """One mountinfo wake-up may carry a mount and a remount of another mount: the fanotify
    engine takes it for the mount's, and reads the table again once the namespace is quiet
    (engines.QUIET_RECHECK), so the remount comes late but comes."""
    await ns.sh(f"mkdir {ns.path('a')} {ns.path('b')}; mount -t tmpfs none {ns.path('b')}")
    b = ns.mount_id(ns.path("b"))
    base = ns.mount_id(ns.base)
    q = host.queue()
    await host.watch(ns, ns.base, q, 1)
    both = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
            "assert libc.mount(b'none', sys.argv[1].encode(), b'tmpfs', 0, None) == 0; "
            "assert libc.mount(b'none', sys.argv[2].encode(), None, 0x1000 | 0x20 | 1, None) == 0")
    await ns.sh(f"{sys.executable} -c \"{both}\" {ns.path('a')} {ns.path('b')}")  # MS_BIND|MS_REMOUNT|MS_RDONLY
    a = ns.mount_id(ns.path("a"))
    assert await wait_records(q, 3) == [mount(NEW, base, a, 1), mount(READONLY, b, 0, 1, SUB | RO),
                                        mount(SETATTR, b, 0, 1, SUB)]


# ---------------------------------------------------------------- queues and watches

async def test_a_small_queue_loses_records(host, ns):
    q = host.queue(1)  # one page: 32 notes
    await host.watch(ns, ns.base, q)
    await ns.sh(f"for i in $(seq 40); do mkdir {ns.path('m')}$i; mount -t tmpfs none {ns.path('m')}$i; done")
    with trio.fail_after(WAIT):
        while host.kernel.find_mount(_key(ns), ns.mount_id(ns.path("m40"))) is None:
            await trio.sleep(0.01)
    got = drain(q)
    assert len(got) == 33 and got[-1] == ("loss",) and all(r[1] == NEW for r in got[:-1])


async def test_unwatch_removes_with_its_record_and_twice_is_ebadslt(host, ns):
    q = host.queue()
    await host.watch(ns, ns.base, q, 5)
    with pytest.raises(KernelError) as busy:
        await host.watch(ns, ns.base, q, 6)
    assert busy.value.errno == errno.EBUSY
    await host.watch(ns, ns.base, q, -1)
    assert drain(q) == [("removal", ns.mount_id(ns.base), 5)]
    for sb in (False, True):
        with pytest.raises(KernelError) as again:
            await host.watch(ns, ns.base, q, -1, sb=sb)
        assert again.value.errno == errno.EBADSLT
    await host.until_no_feed()  # nothing is watched: the feed ends


async def test_the_feed_ends_when_the_namespace_does_and_its_watches_go(host):
    async with namespace() as ns:
        q = host.queue()
        await host.watch(ns, ns.base, q, 3)
        base = ns.mount_id(ns.base)
        key = _key(ns)
        sentinels = _children_in(key) - {ns.pid}
        assert sentinels
        ns.proc.kill()
        ns.proc.wait()
        assert await wait_records(q, 1) == [("removal", base, 3)]
        await host.until_no_feed()
        with trio.fail_after(WAIT):
            while _children_in(key):
                await trio.sleep(0.02)


async def test_a_queue_that_is_none_is_einval_after_the_lookup(host, ns):
    with pytest.raises(KernelError) as e:
        await host.watch(ns, ns.base, None)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as e:
        await host.watch(ns, ns.path("nonexistent"), None)
    assert e.value.errno == errno.ENOENT


# ---------------------------------------------------------------- superblock errors

@pytest.fixture
def ext4_image() -> str:
    if not os.path.exists("/dev/loop-control") or not shutil.which("mkfs.ext4") or not shutil.which("debugfs"):
        pytest.skip("needs loop devices and e2fsprogs (mkfs.ext4, debugfs)")
    if subprocess.run(["losetup", "-f"], capture_output=True).returncode != 0:
        pytest.skip("no free loop device")
    where = tempfile.mkdtemp(prefix="wqfs-ext4-")
    image = os.path.join(where, "fs.img")
    try:
        with open(image, "wb") as f:
            f.truncate(16 << 20)
        for argv in (["mkfs.ext4", "-q", "-F", image], ["debugfs", "-w", "-R", "write /etc/hostname f", image],
                     ["debugfs", "-w", "-R", "clri f", image]):
            subprocess.run(argv, check=True, capture_output=True)
        yield image
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.mark.parametrize("host", ["fanotify" if FANOTIFY else "mountinfo"], indirect=True)
async def test_an_ext4_error_is_a_superblock_error(host, ns, ext4_image):
    e = ns.path("e")
    await ns.sh(f"mkdir {e}; mount -o loop,errors=continue {ext4_image} {e}")
    try:
        dev = ns.dev(e)
        q = host.queue()
        await host.watch(ns, e, q, 9, sb=True)
        assert host.feeds.statistics()["sb_error_groups"] == 1
        failed = await trio.run_process(["nsenter", "-t", str(ns.pid), "-m", "stat", os.path.join(e, "f")],
                                        capture_stdout=True, capture_stderr=True, check=False)
        assert failed.returncode != 0
        assert await wait_records(q, 1) == [("sb", abi.NOTIFY_SUPERBLOCK_ERROR, dev, 9, 0, errno.EUCLEAN)]
        await host.watch(ns, e, q, -1, sb=True)
        assert drain(q) == [("removal", dev, 9)]
        with trio.fail_after(WAIT):
            while host.feeds.statistics()["sb_error_groups"]:
                await trio.sleep(0.02)
    finally:
        await ns.sh(f"umount -l {e}")


# ---------------------------------------------------------------- the lookup as the caller

@pytest.mark.parametrize("host", ["mountinfo"], indirect=True)
async def test_lookup_errors_are_the_kernels(host, ns):
    await ns.sh(f"mkdir -p {ns.path('priv/sub')} {ns.path('open')}; chmod 700 {ns.path('priv')}; "
                f"touch {ns.path('file')}; ln -s loop1 {ns.path('loop2')}; ln -s loop2 {ns.path('loop1')}; "
                f"ln -s priv/sub {ns.path('link')}; chmod 755 {ns.base}")
    q = host.queue()
    cases = [
        (dict(path=ns.path("nonexistent")), errno.ENOENT),
        (dict(path=ns.path("file")), errno.ENOTDIR),
        (dict(path=ns.path("loop1")), errno.ELOOP),
        (dict(path=ns.path("priv/sub"), cred=NOBODY), errno.EACCES),  # no search permission on priv
        (dict(path=ns.path("link"), cred=NOBODY), errno.EACCES),      # nor through a symlink to it
        (dict(path=ns.path("priv"), cred=NOBODY), errno.EACCES),      # MAY_EXEC on the target itself
        (dict(path=ns.path("open"), at_flags=0x100), errno.EINVAL),   # AT_SYMLINK_NOFOLLOW is not allowed
        (dict(path=ns.path("open"), tag=256), errno.EINVAL),
        (dict(path="open", dfd=99999), errno.EBADF),                  # a dfd the caller has not open
        (dict(path=""), errno.ENOENT),
        (dict(path="/" + "a/" * 2100), errno.ENAMETOOLONG),          # longer than PATH_MAX
        (dict(path=ns.path("n" * 256)), errno.ENAMETOOLONG),         # a name longer than NAME_MAX
        (dict(path="", sb=True, at_flags=abi.AT_EMPTY_PATH), errno.ENOENT),  # watch_sb: at_flags are not lookup flags
        (dict(path=ns.path("file"), sb=True), errno.EACCES),          # a file will do for watch_sb, if executable
    ]
    for kwargs, expected in cases:
        path = kwargs.pop("path")
        tag = kwargs.pop("tag", 1)
        with pytest.raises(KernelError) as e:
            await host.watch(ns, path, q, tag, **kwargs)
        assert e.value.errno == expected, (path, kwargs, e.value)
    await host.watch(ns, ns.path("open"), q, 1, cred=NOBODY)  # nobody may watch what it may search
    await host.watch(ns, ns.path("link"), q, 2)               # root follows the symlink
    await host.watch(ns, "", q, 3, at_flags=abi.AT_EMPTY_PATH)  # the caller's cwd (/)
    await host.watch(ns, ns.path("loop1"), q, 4, sb=True)     # watch_sb does not follow the last symlink
    assert drain(q) == []


async def test_paths_resolve_in_the_callers_root_and_namespace(host, ns):
    """A chrooted caller's absolute symlink resolves in its root: /etc there is the jail's
    (a tmpfs of the caller's namespace), never the daemon's /etc."""
    jail = ns.path("jail")
    await ns.sh(f"mkdir -p {jail}/etc {jail}/bin; mount -t tmpfs none {jail}/etc; mkdir {jail}/etc/x; "
                f"ln -s /etc {jail}/lnk")
    etc = ns.mount_id(f"{jail}/etc")
    proc = subprocess.Popen(["nsenter", "-t", str(ns.pid), "-m", "--", "python3", "-c",
                             "import os, sys; os.chroot(sys.argv[1]); os.chdir('/'); print('in', flush=True); "
                             "sys.stdin.read()", jail], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"in\n"
        q = host.queue()
        await host.watch(ns, "/lnk", q, 1, pid=proc.pid)
        await host.watch(ns, "lnk/x", q, 2, pid=proc.pid)  # relative to its cwd, the jail's /
        await ns.sh(f"mount -t tmpfs none {jail}/etc/x")
        x = ns.mount_id(f"{jail}/etc/x")
        assert await wait_records(q, 1) == [mount(NEW, etc, x, 1)]
        await ns.sh(f"mkdir {jail}/etc/x/y; mount -t tmpfs none {jail}/etc/x/y")
        y = ns.mount_id(f"{jail}/etc/x/y")
        # the walk from x's root crosses its mount point, the directory lnk/x was when it was watched
        assert await wait_records(q, 2) == [mount(NEW, x, y, 2, SUB), mount(NEW, x, y, 1, SUB)]
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


async def test_a_lookup_through_a_hung_file_system_times_out():
    """A caller's path through a FUSE server that never answers costs a helper its deadline,
    not the daemon: meanwhile the same user's next lookup is EAGAIN (one at a time per user
    here), another user's works."""
    from slowfs import serving
    kernel = Kernel()
    feeds = MountFeeds(kernel, "mountinfo", lookups=Lookups(timeout=1.0, per_uid=1))
    q = kernel.new_queue(ROOT)
    q.set_size(16)
    me = os.getpid()
    with serving(0, "x") as slow:
        server = slow.proc
        async with trio.open_nursery() as nursery:
            await nursery.start(feeds.run)
            await feeds.watch_mount(me, ROOT, None, b"/", 0, q, 1, 1024)  # the feed of this namespace is up
            os.kill(server.pid, signal.SIGSTOP)
            try:
                started = trio.Event()

                async def hung() -> None:
                    with pytest.raises(KernelError) as e:
                        started.set()
                        await feeds.watch_mount(me, ROOT, None, os.fsencode(os.path.dirname(slow.path) + "/d/e"),
                                                0, q, 2, 1024)
                    assert e.value.errno == errno.ETIMEDOUT
                with trio.fail_after(WAIT):
                    async with trio.open_nursery() as calls:
                        calls.start_soon(hung)
                        await started.wait()
                        await trio.sleep(0.1)
                        with pytest.raises(KernelError) as busy:
                            await feeds.watch_mount(me, ROOT, None, b"/tmp", 0, q, 3, 1024)
                        assert busy.value.errno == errno.EAGAIN
                        await feeds.watch_mount(me, NOBODY, None, b"/tmp", 0, q, 4, 1024)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert feeds.statistics()["lookup_timeouts"] == 1
            nursery.cancel_scope.cancel()


async def test_namespaces_watched_per_user_are_bounded():
    kernel = Kernel()
    feeds = MountFeeds(kernel, "mountinfo", per_uid=2, tick=0.05)
    host = Host(kernel, feeds)
    async with trio.open_nursery() as nursery:
        await nursery.start(feeds.run)
        async with namespace() as one, namespace() as two, namespace() as three:
            q = host.queue()
            await host.watch(one, one.base, q, 1)
            await host.watch(two, two.base, q, 2)
            with pytest.raises(KernelError) as e:
                await host.watch(three, three.base, q, 3)
            assert e.value.errno == errno.ENOSPC
            await host.watch(three, three.base, q, 3, cred=NOBODY)  # another user's count
            await host.watch(one, one.base, q, -1)
            with trio.fail_after(WAIT):
                while feeds.statistics()["feeds"] > 2:
                    await trio.sleep(0.02)
            await host.watch(two, two.base, q, -1)
            await host.watch(three, three.base, q, -1)
            await host.until_no_feed()
            await host.watch(three, three.base, q, 3)
        nursery.cancel_scope.cancel()


def _key(ns: Namespace) -> tuple[int, int]:
    st = os.stat(f"/proc/{ns.pid}/ns/mnt")
    return st.st_dev, st.st_ino


def _children_in(key: tuple[int, int]) -> set[int]:
    """This test process's children in the namespace key (a feed's sentinel, once its process is gone)."""
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rpartition(b")")[2].split()[1])
                st = os.stat(f"/proc/{name}/ns/mnt")
            except OSError:
                continue
            if ppid == os.getpid() and (st.st_dev, st.st_ino) == key:
                found.add(int(name))
    return found


async def test_a_namespace_past_the_mounts_followed_is_dropped(host, ns, monkeypatch):
    from wqfs.host import engines
    q = host.queue()
    monkeypatch.setattr(engines, "MAX_MOUNTS", len(ns.table()) + 2)
    await host.watch(ns, ns.base, q, 1)
    await ns.sh(f"for i in 1 2 3 4; do mkdir {ns.path('m')}$i; mount -t tmpfs none {ns.path('m')}$i; done")
    got = await wait_records(q, 3)
    assert got[-1] == ("removal", ns.mount_id(ns.base), 1) and all(r[1] == NEW for r in got[:-1])
    await host.until_no_feed()
    with pytest.raises(KernelError) as e:
        await host.watch(ns, ns.base, q, 1)
    assert e.value.errno == errno.ENOSPC
