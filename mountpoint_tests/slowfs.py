"""A third-party FUSE file system whose server takes its time: one file, `f`, whose reads wait
until the server gets SIGUSR1 (or DELAY seconds, argv[2], pass). Pages of it mapped into a caller
are pages that only this server can bring in, as slowly as it likes.

Usage: python slowfs.py MOUNTPOINT DELAY CONTENT
"""
from __future__ import annotations

import errno
import os
import signal
import stat
import sys

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
