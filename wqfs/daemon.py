"""Mount lifecycle: init the FUSE session, run the tree, the GC and the reaper, unmount cleanly."""
from __future__ import annotations

import logging
import os
import signal
from typing import Callable, Optional

import pyfuse3
import trio

from .kernel import Kernel
from .fuse.operations import WqfsOperations
from .syscalls import server
from .syscalls.front import SyscallFront

log = logging.getLogger("wqfs")

MAX_TASKS = 1000  # each blocked reader holds one pyfuse3 worker; keep plenty for everyone else


def default_mountpoint() -> str:
    if os.getuid() == 0:
        return "/run/wqfs"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "wqfs") if runtime else os.path.expanduser("~/.wqfs")


def mount_options(allow_other: bool) -> set[str]:
    options = {"fsname=wqfs", "subtype=wqfs"}
    if allow_other:
        options.add("allow_other")
    return options


def init(mountpoint: str, allow_other: bool = False, verbose: bool = False,
         gc_delay: Optional[float] = None) -> WqfsOperations:
    """Mount (before trio starts, so that a backgrounding fork can report success or failure)."""
    kernel = Kernel() if gc_delay is None else Kernel(gc_delay=gc_delay)
    ops = WqfsOperations(kernel, verbose=verbose)
    ops.allow_other = allow_other
    pyfuse3.init(ops, mountpoint, mount_options(allow_other))
    return ops


async def _serve(ops: WqfsOperations, mountpoint: str, on_ready: Optional[Callable[[], None]]) -> None:
    front = SyscallFront(ops.kernel, ops, mountpoint, ops.callers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ops.run_gc)
        nursery.start_soon(ops.run_reaper)
        nursery.start_soon(_signals, ops)
        await nursery.start(server.serve, front, mountpoint, ops.allow_other)
        if on_ready is not None:
            on_ready()
        await pyfuse3.main(max_tasks=MAX_TASKS)
        nursery.cancel_scope.cancel()


async def _signals(ops: WqfsOperations) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("signal %d: unmounting", signum)
            ops.shutdown()
            pyfuse3.terminate()
            return


def serve(ops: WqfsOperations, mountpoint: str, on_ready: Optional[Callable[[], None]] = None) -> None:
    """Run until unmounted or signalled; always leave the mountpoint unmounted."""
    try:
        trio.run(_serve, ops, mountpoint, on_ready)
    finally:
        try:
            pyfuse3.close(unmount=True)
        except Exception:  # already gone: nothing to undo
            pass
