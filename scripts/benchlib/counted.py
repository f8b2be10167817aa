"""wqfs with its FUSE requests counted: only to show that the floor gets the same requests.

It is `wqfs mount -f` (wqfs.daemon.init and serve) with each request handler wrapped in a
counter; it is never used for timing. The counts are written as JSON on SIGUSR1 and at exit.
With --log-counts, the counts are libfuse's instead (every request the kernel sent, by opcode,
from the request log that wqfs reads anyway: fuselog.py, forwarding each line to wqfs).

    python -m benchlib.counted MOUNTPOINT --counts FILE [--log-counts]
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import signal

from wqfs import daemon

REQUESTS = ("lookup", "getattr", "setattr", "open", "read", "write", "flush", "release", "poll",
            "opendir", "readdir", "releasedir", "access", "create", "mkdir", "unlink", "rmdir",
            "rename", "link", "readlink", "statfs", "getxattr", "setxattr", "listxattr", "forget")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mountpoint")
    parser.add_argument("--counts", required=True)
    parser.add_argument("--log-counts", action="store_true")
    args = parser.parse_args()
    counts: collections.Counter = collections.Counter()
    mounted = daemon.init(args.mountpoint)
    ops = mounted.ops
    if args.log_counts:
        from wqfs.fuse.requests import REQUESTS as request_log
        from .fuselog import OpcodeCounter
        counter = OpcodeCounter()
        counter.install(forward=request_log._log if request_log.installed else None)
        counts = counter.counts
    for name in () if args.log_counts else REQUESTS:
        method = getattr(ops, name, None)
        if method is None:
            continue

        def wrap(method=method, name=name):
            @functools.wraps(method)
            async def counted(*a):
                counts[name] += 1
                return await method(*a)
            return counted
        setattr(ops, name, wrap())
    def dump(*_: object) -> None:
        with open(args.counts + ".tmp", "w") as f:
            json.dump(dict(counts), f)
        os.replace(args.counts + ".tmp", args.counts)

    signal.signal(signal.SIGUSR1, dump)  # a snapshot on demand
    try:
        daemon.serve(mounted, args.mountpoint)
    finally:
        dump()


if __name__ == "__main__":
    main()
