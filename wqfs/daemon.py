"""Mount lifecycle: init the FUSE session, run the tree, the GC and the reaper, unmount cleanly.

This is where the parts meet, and the only module that knows them all: one Kernel, one
CallerTable (who calls, for both fronts), the host's mount feeds (both fronts' watch_mount and
watch_sb), the FUSE tree, and the syscall front, which is handed the kernel, the callers, the
feeds and the tree's pipe registry, never the tree itself.
"""
from __future__ import annotations

import logging
import os
import resource
import signal
from dataclasses import dataclass
from typing import Callable, Optional

import pyfuse3
import trio

from . import background
from .callers import CallerTable
from .kernel import Kernel
from .lsmconfig import Security
from .mounts import default_mountpoint  # noqa: F401 (the daemon's default, defined with the mount checks)
from .fuse.operations import WqfsOperations
from .fuse.requests import REQUESTS
from .host.feeds import MountFeeds
from .syscalls import server
from .syscalls.front import SyscallFront

log = logging.getLogger("wqfs")

# Each request in flight holds one pyfuse3 worker (a trio task, a few KiB) and a blocked reader
# is a request in flight; so that blocked readers never starve other users of workers, workers
# are not the limit: callers are (a reader is a thread of theirs, blocked in read(2)).
MAX_TASKS = 1 << 20


def mount_options(allow_other: bool) -> set[str]:
    options = {"fsname=wqfs", "subtype=wqfs"}
    if allow_other:
        options.add("allow_other")
    if REQUESTS.install():
        options.add("debug")  # libfuse's request log is how wqfs sees callers and interrupts
    return options


@dataclass
class Mounted:
    """One mount's daemon, between init and serve."""
    kernel: Kernel
    callers: CallerTable
    ops: WqfsOperations  # the FUSE tree, and pyfuse3's handlers
    allow_other: bool    # other users may use the mount (and wqfs run)
    mount_engine: str = "auto"  # how the host's mount events are read (wqfs.host.feeds.MountFeeds)
    lsm_config: Optional[Security] = None  # the security module and the callers' labels (lsmconfig.py)


def init(mountpoint: str, allow_other: bool = False, verbose: bool = False,
         gc_delay: Optional[float] = None, rcu_grace: Optional[float] = None,
         mount_engine: str = "auto", security: Optional[Security] = None) -> Mounted:
    """Mount (before trio starts, so that a backgrounding fork can report success or failure).
    gc_delay and rcu_grace: the Kernel's, its defaults (a distribution kernel's) when None;
    mount_engine: "auto", "fanotify" or "mountinfo" (the fallback, forced); security: the
    module the Kernel runs with and how callers are labelled (lsmconfig.configure), or None."""
    _raise_nofile()
    kernel = Kernel(**{name: value for name, value in (("gc_delay", gc_delay), ("rcu_grace", rcu_grace))
                       if value is not None}, lsm=security.lsm if security is not None else None)
    callers = CallerTable()
    if security is not None:
        callers.labels = security.label_of
    ops = WqfsOperations(kernel, callers, verbose=verbose)
    pyfuse3.init(ops, mountpoint, mount_options(allow_other))
    return Mounted(kernel, callers, ops, allow_other, mount_engine, security)


def _raise_nofile() -> None:
    """The daemon holds an fd per `wqfs run` listener and, for a moment, per trapped call: its
    soft RLIMIT_NOFILE (often 1024) would let a busy or hostile user run it out of fds for
    everyone, so it takes its hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass


async def _serve(mounted: Mounted, mountpoint: str, on_ready: Optional[Callable[[], None]]) -> None:
    REQUESTS.bind_thread()
    ops = mounted.ops
    feeds = MountFeeds(mounted.kernel, engine=mounted.mount_engine)
    ops.feeds = feeds
    front = SyscallFront(mounted.kernel, ops.pipes, mountpoint, mounted.callers, feeds)
    front.lsm_config = mounted.lsm_config
    async with trio.open_nursery() as nursery:
        await nursery.start(feeds.run)  # before anyone can ask for a watch
        nursery.start_soon(background.run_gc, mounted.kernel)
        nursery.start_soon(background.run_reaper, mounted.kernel, mounted.callers)
        nursery.start_soon(front.transfers.watch)
        nursery.start_soon(_signals, ops)
        await nursery.start(server.serve, front, mountpoint, mounted.allow_other,
                            lambda: _unmount_requested(ops, nursery),
                            mounted.lsm_config.reload if mounted.lsm_config is not None else None)
        if on_ready is not None:
            on_ready()
        await pyfuse3.main(max_tasks=MAX_TASKS)
        nursery.cancel_scope.cancel()


# After waking blocked readers, how long the daemon goes on answering: their programs see one
# error (ENOTCONN) and close their files, and the close's FLUSH and RELEASE are answered too
# (a close that found the daemon gone would print a second error).
STOP_GRACE = 0.5


async def _stop(ops: WqfsOperations) -> None:
    """What SIGTERM and `wqfs unmount` do: wake every reader, let them go, end the session
    (serve's finally then unmounts, lazily)."""
    ops.shutdown()
    await trio.sleep(STOP_GRACE)
    pyfuse3.terminate()


async def _signals(ops: WqfsOperations) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("signal %d: unmounting", signum)
            await _stop(ops)
            return


def _unmount_requested(ops: WqfsOperations, nursery: trio.Nursery) -> None:
    """`wqfs unmount` asked over the socket: as SIGTERM."""
    nursery.start_soon(_stop, ops)


def serve(mounted: Mounted, mountpoint: str, on_ready: Optional[Callable[[], None]] = None) -> None:
    """Run until unmounted or signalled; always leave the mountpoint unmounted."""
    try:
        trio.run(_serve, mounted, mountpoint, on_ready)
    finally:
        try:
            pyfuse3.close(unmount=True)
        except Exception:  # already gone: nothing to undo
            pass
