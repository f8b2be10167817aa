"""Scenario 4: scale. The cost of one operation with 10^2, 10^4 and 10^5 keys in the store and
10^4 watches on them, and the daemon's resident memory at each size.

A daemon per size: keys are added by a C program calling add_key in a loop under `wqfs run`
(benchlib/keyctl_bench.c); a holder process keeps 100 queues open, each watching the same 100
keys (10^4 watches). The daemons' VmRSS is read from /proc; then the operation of scenario 1
(an update through the mount while a reader waits in poll on a queue watching the key) is timed
on each daemon in turn, repeats interleaved.
"""
from __future__ import annotations

import os
import statistics
import time

import contextlib

from .common import Mount, log, percentile, profiling, result_of, rss_kib, summary, worker
from .s1_record import make_key, run_pair
from .s5_syscalls import _run, wqfs_run

SIZES = (100, 10_000, 100_000)
WATCH_QUEUES = 100
WATCHES = 10_000


def _seed(mount: str, binary: str, ring: int, count: int, prefix: str) -> dict:
    if count <= 0:
        return {"calls": 0, "ns": 0}
    res = _run(wqfs_run(mount, binary, "add", str(count), str(ring), prefix), timeout=600)
    if res.get("failures"):
        raise RuntimeError(f"seeding: {res['failures']} add_key calls failed: {res['first_error']}")
    return res


class Store:
    """One daemon seeded to one size, with 10^4 watches held open on its keys."""

    def __init__(self, size: int, binary: str) -> None:
        self.size = size
        self.mount = Mount("wqfs")
        self.holder = None
        self.ctl_w = -1
        path = self.mount.path
        ring_path = os.path.join(path, "@s", "keyring:bench-scale")
        os.mkdir(ring_path)
        ring = int(os.getxattr(ring_path, "user.keyctl.serial"))
        self.op_serial = make_key(path, "bench-s4-op")
        self.op_path = os.path.join(path, "keys", str(self.op_serial))
        have = os.statvfs(path).f_files
        need = max(size - have, WATCHES // WATCH_QUEUES)
        t0 = time.monotonic()
        seeded = _seed(path, binary, ring, need, "k")
        self.seed_s = time.monotonic() - t0
        self.seed_rate = seeded["calls"] / (seeded["ns"] / 1e9) if seeded.get("ns") else None
        self.keys = os.statvfs(path).f_files
        # 10^4 watches: 100 queues, each on the same 100 user keys
        serials_file = os.path.join(self.mount.dir, "serials")
        with open(serials_file, "w") as f:
            for i in range(WATCHES // WATCH_QUEUES):
                entry = os.path.join(ring_path, f"user:k{i}")
                f.write(os.getxattr(entry, "user.keyctl.serial").decode() + "\n")
        ready_r, ready_w = os.pipe()
        ctl_r, self.ctl_w = os.pipe()
        self.holder = worker("hold-watches", "--mount", path, "--serials", serials_file,
                             "--queues", str(WATCH_QUEUES), "--watches", str(WATCHES),
                             "--ready", str(ready_w), "--ctl", str(ctl_r), pass_fds=(ready_w, ctl_r))
        os.close(ready_w)
        os.close(ctl_r)
        try:
            if os.read(ready_r, 1) != b"r":
                raise RuntimeError("the watch holder did not start")
        finally:
            os.close(ready_r)
        self.rss_kib = rss_kib(self.mount.pid)
        log(f"  s4 {self.keys:,} keys: seeded {need:,} in {self.seed_s:.1f} s, "
            f"rss {self.rss_kib / 1024:.1f} MiB with 10^4 watches")

    def measure(self, n_ops: int) -> dict:
        return run_pair("wqfs", self.op_path, f"{self.mount.path}:{self.op_serial}", "pingpong", n_ops)

    def stop(self) -> None:
        if self.holder is not None:
            try:
                os.write(self.ctl_w, b"x")
                result_of(self.holder, timeout=60)
            except Exception:
                self.holder.kill()
                self.holder.wait()
        self.mount.stop()


def run(repeats: int, n_ops: int, binary: str) -> dict:
    """A daemon per size, all alive at once, so that the sizes are measured interleaved
    (in a rotating order), and a change of load on the machine hits them alike."""
    stores: list[Store] = []
    out: dict = {"sizes": {}, "watches": WATCHES, "n_ops": n_ops, "repeats": repeats}
    per = {size: {"op": [], "p50": [], "p99": []} for size in SIZES}
    try:
        for size in SIZES:
            stores.append(Store(size, binary))
        for store in stores:
            store.measure(200)  # warm-up
        for r in range(repeats):
            order = stores[r % len(stores):] + stores[:r % len(stores)]
            for store in order:
                big = store.size == SIZES[-1] and r == 0
                with profiling(store.mount.pid, f"s4-{store.size}") if big else contextlib.nullcontext():
                    res = store.measure(n_ops)
                per[store.size]["op"].append(statistics.median(res["writer"]["op_ns"]) / 1000)
                lat = [v / 1000 for v in res["writer"]["lat_ns"]]
                per[store.size]["p50"].append(percentile(lat, 50))
                per[store.size]["p99"].append(percentile(lat, 99))
            log(f"  s4 repeat {r + 1}/{repeats}: " + ", ".join(
                f"{s.keys:,} keys {per[s.size]['op'][-1]:.0f} us" for s in stores))
        for store in stores:
            out["sizes"][str(store.size)] = {
                "keys": store.keys, "rss_kib": store.rss_kib, "seed_s": store.seed_s,
                "seed_calls_per_s": store.seed_rate,
                "op_us": summary(per[store.size]["op"]), "latency_p50_us": summary(per[store.size]["p50"]),
                "latency_p99_us": summary(per[store.size]["p99"]),
            }
    finally:
        for store in stores:
            store.stop()
    small, large = out["sizes"][str(SIZES[0])], out["sizes"][str(SIZES[-1])]
    # interleaved repeats: the ratio of each repeat's pair, then its median
    out["op_ratios"] = summary([b / a for a, b in zip(per[SIZES[0]]["op"], per[SIZES[-1]]["op"])])
    out["op_ratio"] = out["op_ratios"]["median"]
    out["bytes_per_key"] = (large["rss_kib"] - small["rss_kib"]) * 1024 / (large["keys"] - small["keys"])
    return out
