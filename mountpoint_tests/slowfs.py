"""A third-party FUSE file system whose server takes its time: one file, `f`, whose reads wait
until the server gets SIGUSR1 (or DELAY seconds, argv[2], pass). Pages of it mapped into a caller
are pages that only this server can bring in, as slowly as it likes.

Usage: python slowfs.py MOUNTPOINT DELAY CONTENT   (or, from a test: with serving(delay, content) as slow)
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import pyfuse3
import trio


class SlowFS(pyfuse3.Operations):
    def __init__(self, delay: float, content: bytes) -> None:
        super().__init__()
        self.delay = delay
        self.content = content
        self.reads = 0
        self.released = trio.Event()

    def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.st_mode = (stat.S_IFDIR | 0o755) if inode == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o444)
        attr.st_size = 0 if inode == pyfuse3.ROOT_INODE else len(self.content)
        attr.st_nlink = 1
        attr.entry_timeout = attr.attr_timeout = 0
        return attr

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(inode)

    async def lookup(self, parent: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent == pyfuse3.ROOT_INODE and name == b"f":
            return self._attr(2)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        # keep_cache: an open must not wait (invalidate_inode_pages2) for a page being read
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        self.reads += 1
        with trio.move_on_after(self.delay):
            await self.released.wait()
        return self.content[off:off + size]

    async def release_on_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            async for _ in signals:
                self.released.set()


class Slow:
    """A running slowfs: path is its file, whose reads wait for release() (or the delay)."""

    def __init__(self, path: str, proc: subprocess.Popen) -> None:
        self.path = path
        self.proc = proc

    def release(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)


@contextlib.contextmanager
def serving(delay: float, content: str, prefix: str = "wqfs-slow-") -> Iterator[Slow]:
    """slowfs on a temporary mountpoint, for a test; always stopped and unmounted after."""
    from wqfs.mounts import force_unmount
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), mnt, str(delay), content],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", "slowfs did not start"
        deadline = time.monotonic() + 15
        while not os.path.exists(os.path.join(mnt, "f")) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield Slow(os.path.join(mnt, "f"), proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        force_unmount(mnt)
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    mountpoint, delay, content = sys.argv[1], float(sys.argv[2]), sys.argv[3].encode() + b"\0"
    fs = SlowFS(delay, content)
    pyfuse3.init(fs, mountpoint, {"fsname=slowfs", "allow_other"})

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.release_on_signal)
            print("ready", flush=True)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    try:
        trio.run(serve)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
