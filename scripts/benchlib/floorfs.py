"""The floor: a trivial pyfuse3 file system that answers the same FUSE requests as wqfs does
for scenarios 1, 2 and 6, with no logic behind them.

    MOUNT/keys/file    the writer's file: open/write/flush/release, each answered at once;
                       a flush "posts" one 16-byte record to every open MOUNT/queue
    MOUNT/queue        the reader's file: poll (with notify, as wqfs does) and read of whole records
    MOUNT/@s           a symlink to keys/ring, as wqfs's @s is one to keys/SERIAL (readlink each time)
    MOUNT/keys/ring/user:x   the same file as keys/file, as a key in a keyring is wqfs's keys/SERIAL

It is configured as wqfs is (entry and attribute timeouts 0, but the root's names kept as
wqfs keeps them (wqfs.fuse.names.STATIC_ENTRY_TIMEOUT), direct_io, nonseekable queue
files, getxattr answered ENODATA as wqfs answers security.capability before a write) so that the
kernel sends it the same requests for the same system calls. It counts the requests it gets and
writes the counts as JSON to the path given with --counts on SIGUSR1 and at exit; with
--log-counts, the counts are libfuse's (every request the kernel sent, by opcode: fuselog.py).

    python -m benchlib.floorfs MOUNTPOINT [--counts FILE] [--log-counts]
"""
from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import select
import signal
import stat
import time
from typing import Optional

import pyfuse3
import trio

from wqfs.fuse.names import STATIC_ENTRY_TIMEOUT

ROOT, KEYS, FILE, QUEUE, LINK, RING = pyfuse3.ROOT_INODE, 2, 3, 4, 5, 6
LINK_TARGET = b"keys/ring"
DIRS = (ROOT, KEYS, RING)
IN_ROOT = (KEYS, QUEUE, LINK)  # the root's names: the same for everyone, kept by the kernel as wqfs's are
RECORD = bytes(16)
COUNTS: collections.Counter = collections.Counter()
_NOW = time.time_ns()


def _attr(inode: int) -> pyfuse3.EntryAttributes:
    attr = pyfuse3.EntryAttributes()
    attr.st_ino = inode
    if inode == LINK:
        attr.st_mode = stat.S_IFLNK | 0o777
    else:
        attr.st_mode = (stat.S_IFDIR | 0o755) if inode in DIRS else (stat.S_IFREG | 0o666)
    attr.st_nlink = 2 if inode in DIRS else 1
    attr.st_size = len(LINK_TARGET) if inode == LINK else 0
    attr.st_blksize = 4096
    attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = _NOW
    attr.entry_timeout = STATIC_ENTRY_TIMEOUT if inode in IN_ROOT else 0
    attr.attr_timeout = 0
    return attr


class Reader:
    __slots__ = ("pending", "poll_handle")

    def __init__(self) -> None:
        self.pending = 0
        self.poll_handle: Optional[pyfuse3.PollHandle] = None


class FloorOperations(pyfuse3.Operations):
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self) -> None:
        super().__init__()
        self.readers: dict[int, Reader] = {}
        self.next_fh = 1

    async def lookup(self, parent_inode, name, ctx):
        COUNTS["lookup"] += 1
        if parent_inode == ROOT and name == b"keys":
            return _attr(KEYS)
        if parent_inode == ROOT and name == b"queue":
            return _attr(QUEUE)
        if parent_inode == ROOT and name == b"@s":
            return _attr(LINK)
        if parent_inode == KEYS and name == b"file":
            return _attr(FILE)
        if parent_inode == KEYS and name == b"ring":
            return _attr(RING)
        if parent_inode == RING and name == b"user:x":
            return _attr(FILE)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def readlink(self, inode, ctx):
        COUNTS["readlink"] += 1
        return LINK_TARGET

    async def getxattr(self, inode, name, ctx):
        COUNTS["getxattr"] += 1
        raise pyfuse3.FUSEError(errno.ENODATA)

    async def getattr(self, inode, ctx):
        COUNTS["getattr"] += 1
        return _attr(inode)

    async def setattr(self, inode, attr, fields, fh, ctx):
        COUNTS["setattr"] += 1
        return _attr(inode)

    async def open(self, inode, flags, ctx):
        COUNTS["open"] += 1
        fh = self.next_fh
        self.next_fh += 1
        if inode == QUEUE:
            self.readers[fh] = Reader()
            return pyfuse3.FileInfo(fh=fh, direct_io=True, nonseekable=True, keep_cache=False)
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    async def write(self, fh, off, buf):
        COUNTS["write"] += 1
        return len(buf)

    async def flush(self, fh):
        COUNTS["flush"] += 1
        if fh not in self.readers:
            for reader in self.readers.values():  # "post" one record to every queue
                reader.pending += 1
                handle, reader.poll_handle = reader.poll_handle, None
                if handle is not None:
                    handle.notify()

    async def release(self, fh):
        COUNTS["release"] += 1
        self.readers.pop(fh, None)

    async def read(self, fh, off, size):
        COUNTS["read"] += 1
        reader = self.readers.get(fh)
        if reader is None:
            return b""
        n = min(reader.pending, size // len(RECORD))
        reader.pending -= n
        return RECORD * n

    async def poll(self, inode, fh, poll_handle, ctx):
        COUNTS["poll"] += 1
        reader = self.readers.get(fh)
        mask = select.POLLOUT | select.POLLWRNORM
        if reader is not None:
            if reader.pending:
                mask |= select.POLLIN | select.POLLRDNORM
            elif poll_handle is not None:
                reader.poll_handle = poll_handle
        return mask

    async def opendir(self, inode, ctx):
        COUNTS["opendir"] += 1
        return inode

    async def readdir(self, fh, start_id, token):
        COUNTS["readdir"] += 1
        entries = {ROOT: [(b"keys", KEYS), (b"queue", QUEUE), (b"@s", LINK)],
                   KEYS: [(b"file", FILE), (b"ring", RING)]}.get(fh, [(b"user:x", FILE)])
        for index in range(start_id, len(entries)):
            if not pyfuse3.readdir_reply(token, entries[index][0], _attr(entries[index][1]), index + 1):
                break

    async def releasedir(self, fh):
        COUNTS["releasedir"] += 1

    async def access(self, inode, mode, ctx):
        COUNTS["access"] += 1
        return True

    async def statfs(self, ctx):
        COUNTS["statfs"] += 1
        return pyfuse3.StatvfsData()


async def _serve() -> None:
    async with trio.open_nursery() as nursery:
        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for _ in received:
                    pyfuse3.terminate()
                    return
        nursery.start_soon(signals)
        await pyfuse3.main(max_tasks=1000)  # as wqfs.daemon
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mountpoint")
    parser.add_argument("--counts")
    parser.add_argument("--log-counts", action="store_true",
                        help="count every request by opcode from libfuse's debug log (slower: counting runs only)")
    args = parser.parse_args()
    counts = COUNTS
    options = {"fsname=wqfs-floor", "subtype=floor"}
    if args.log_counts:
        from .fuselog import OpcodeCounter
        counter = OpcodeCounter()
        counter.install()
        counts = counter.counts
        options.add("debug")

    def dump(*_: object) -> None:
        if args.counts:
            with open(args.counts + ".tmp", "w") as f:
                json.dump(dict(counts), f)
            os.replace(args.counts + ".tmp", args.counts)

    signal.signal(signal.SIGUSR1, dump)  # a snapshot on demand
    pyfuse3.init(FloorOperations(), args.mountpoint, options)
    try:
        trio.run(_serve)
    finally:
        try:
            pyfuse3.close(unmount=True)
        finally:
            dump()


if __name__ == "__main__":
    main()
