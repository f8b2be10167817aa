"""Where a trapped keyctl's time goes under `wqfs run` (scenario 5's profile, with --profile).

Three daemons answer the same C program (keyctl_bench.c):

* floor: benchlib.seccomp_floor (wqfs's filter and serve loop, every call answered 0);
* wqfs, nothing dispatched: the real wqfs daemon (FUSE mounted, trio loop, pyfuse3 workers)
  whose SyscallFront.dispatch answers 0 at once: the cost of living in the daemon's loop;
* wqfs, timed: the real daemon with perf_counter around each stage of an answer (one level
  of wrappers, so the stages' sum is a little inflated).

    python -m benchlib.breakdown KEYCTL_BENCH_BINARY [CALLS]      (prints the table)
    python -m benchlib.breakdown daemon MOUNTPOINT VARIANT FILE   (one of the daemons)
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time

STAGES = (
    ("SyscallFront._answer", "answer (task: dispatch + respond)"),
    ("SyscallFront.dispatch", "  dispatch"),
    ("SyscallFront.cred", "    caller's credentials (pidfd, /proc)"),
    ("memory.read", "    copy arguments in (process_vm_readv)"),
    ("Kernel.update", "    Kernel.update"),
    ("Kernel.link", "    Kernel.link"),
    ("Kernel.unlink", "    Kernel.unlink"),
    ("SyscallFront.queue_of", "    which queue the fd is (readlink /proc)"),
    ("Kernel.watch_key", "    Kernel.watch_key"),
    ("seccomp.respond", "  respond (ioctl NOTIF_SEND)"),
    ("seccomp.receive", "receive (ioctl NOTIF_RECV)"),
)


def _daemon(mountpoint: str, variant: str, out: str) -> None:
    from wqfs import daemon
    from wqfs.kernel import kernel as kmod
    from wqfs.syscalls import front as frontmod
    from wqfs.syscalls import memory, seccomp

    acc: dict[str, list] = {}

    def wrap(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)
        slot = acc.setdefault(label, [0, 0.0])
        if hasattr(fn, "__code__") and fn.__code__.co_flags & 0x80:  # a coroutine function
            async def timed(*a, **k):
                t = time.perf_counter()
                try:
                    return await fn(*a, **k)
                finally:
                    slot[0] += 1
                    slot[1] += time.perf_counter() - t
        else:
            def timed(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    slot[0] += 1
                    slot[1] += time.perf_counter() - t
        setattr(owner, name, timed)

    if variant == "null":
        async def dispatch(self, notif, listener):
            return 0
        frontmod.SyscallFront.dispatch = dispatch
    else:
        owners = {"SyscallFront": frontmod.SyscallFront, "Kernel": kmod.Kernel, "memory": memory,
                  "seccomp": seccomp}
        for label, _ in STAGES:
            owner, name = label.split(".")
            wrap(owners[owner], name, label)
        # front.py imported memory and seccomp as modules, so the wrappers are seen there too

    def dump(*_: object) -> None:
        with open(out + ".tmp", "w") as f:
            json.dump({k: v for k, v in acc.items()}, f)
        os.replace(out + ".tmp", out)

    signal.signal(signal.SIGUSR1, dump)
    daemon.serve(daemon.init(mountpoint), mountpoint)


def run(binary: str, calls: int = 4000, repeats: int = 3) -> str:
    from .common import PYTHON, Mount
    from .s5_syscalls import MODES, _run, wqfs_run

    rates: dict = {m: {"floor": [], "null": [], "timed": []} for m in MODES}
    stages: dict = {m: {} for m in MODES}
    mounts = {v: Mount("wqfs-variant", v) for v in ("null", "timed")}
    try:
        for r in range(repeats):
            for mode in MODES:
                n = str(calls if mode == "update" else calls // 2)
                res = _run([PYTHON, "-m", "benchlib.seccomp_floor", "--", binary, mode, n])
                rates[mode]["floor"].append(res["calls"] / (res["ns"] / 1e9))
                for variant, mount in mounts.items():
                    before = mount.snapshot()
                    res = _run(wqfs_run(mount.path, binary, mode, n))
                    after = mount.snapshot()
                    rates[mode][variant].append(res["calls"] / (res["ns"] / 1e9))
                    if variant == "timed":
                        for label, (count, total) in after.items():
                            c0, t0 = before.get(label, [0, 0.0])
                            if count > c0:
                                stages[mode].setdefault(label, []).append((total - t0) / res["calls"] * 1e6)
    finally:
        for mount in mounts.values():
            mount.stop()
    lines = [f"Where a trapped keyctl's time goes ({repeats} repeats, medians; µs per call; "
             f"{calls} calls or {calls // 2} pairs per run)", ""]
    for mode in MODES:
        f, nl, t = (statistics.median(rates[mode][k]) for k in ("floor", "null", "timed"))
        lines += [f"{mode}:",
                  f"  trapped-syscall floor                      {f:8,.0f} calls/s  {1e6 / f:6.1f} µs/call",
                  f"  wqfs daemon, dispatch answers 0 at once    {nl:8,.0f} calls/s  {1e6 / nl:6.1f} µs/call",
                  f"  wqfs daemon, stages timed                  {t:8,.0f} calls/s  {1e6 / t:6.1f} µs/call"]
        for label, title in STAGES:
            value = statistics.median(stages[mode][label]) if label in stages[mode] else 0.0
            if value >= 0.5:  # stages this mode never (or only while setting up) goes through are left out
                lines.append(f"    {title:<44s} {value:6.1f} µs")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "daemon":
        _daemon(*sys.argv[2:5])
    else:
        print(run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4000))
