"""Scenario 1: operation to record.

A writer process updates a key through the mount (open/write/close of MOUNT/keys/SERIAL)
while a reader process waits in poll() on a queue watching that key.

* ping-pong: after each close() the writer waits for the reader's read() to return;
  latency = reader's read() returned - writer's close() returned (CLOCK_MONOTONIC).
* stream: the writer updates back to back while the reader drains; ops/s.

Baseline: the same two processes on benchlib.floorfs (a trivial pyfuse3 FS answering the
same requests); peer: the same on a tmpfs file, with the reader in poll on inotify (IN_MODIFY).
"""
from __future__ import annotations

import os

import contextlib

from .common import Mount, Tmpfs, log, percentile, profiling, result_of, summary, worker

TARGETS = ("floor", "wqfs", "inotify")


def make_key(mount: str, name: str) -> int:
    path = os.path.join(mount, "@s", f"user:{name}")
    with open(path, "wb") as f:
        f.write(b"value-0\n")
    return int(os.getxattr(path, "user.keyctl.serial"))


def run_pair(kind: str, path: str, target: str, mode: str, n: int) -> dict:
    """One reader and one writer process; returns the writer's and the reader's results."""
    ack_r, ack_w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    reader = worker("s1-reader", "--kind", kind, "--target", target, "--mode", mode, "--n", str(n),
                    "--ack", str(ack_w), "--ready", str(ready_w), "--ctl", str(ctl_r),
                    pass_fds=(ack_w, ready_w, ctl_r))
    for fd in (ack_w, ready_w, ctl_r):
        os.close(fd)
    try:
        if os.read(ready_r, 1) != b"r":
            raise RuntimeError(f"the {kind} reader did not start: {result_of(reader)}")
        writer = worker("s1-writer", "--path", path, "--mode", mode, "--n", str(n),
                        "--posted-by", "write" if kind == "inotify" else "close",
                        "--ack", str(ack_r), "--go", str(go_r), pass_fds=(ack_r, go_r))
        os.close(go_r)
        os.write(go_w, b"g")
        wres = result_of(writer)
        if mode == "stream":
            os.write(ctl_w, b"x")
        rres = result_of(reader)
    finally:
        for fd in (ack_r, ready_r, go_w, ctl_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    return {"writer": wres, "reader": rres}


def request_counts(n: int = 200) -> dict:
    """FUSE requests per operation, counted on wqfs (benchlib.counted) and on the floor (untimed)."""
    out = {}
    for kind in ("wqfs-counted", "floor"):
        mount = Mount(kind)
        try:
            if kind == "floor":
                path, target, rkind = os.path.join(mount.path, "keys", "file"), mount.path, "floor"
            else:
                serial = make_key(mount.path, "bench-count")
                path, target, rkind = os.path.join(mount.path, "keys", str(serial)), f"{mount.path}:{serial}", "wqfs"
            # a run of zero operations counts the processes' setup; subtract it from a run of n
            s0 = mount.snapshot()
            run_pair(rkind, path, target, "pingpong", 0)
            s1 = mount.snapshot()
            run_pair(rkind, path, target, "pingpong", n)
            s2 = mount.snapshot()
        finally:
            mount.stop()
        per_op = {}
        for k in s2:
            ops = (s2[k] - s1.get(k, 0)) - (s1.get(k, 0) - s0.get(k, 0))
            if ops > 0:
                per_op[k] = round(ops / n, 2)
        out["wqfs" if kind == "wqfs-counted" else "floor"] = per_op
    return out


def run(repeats: int, n_pingpong: int, n_stream: int) -> dict:
    tmpfs = Tmpfs()
    floor = Mount("floor")
    wq = Mount("wqfs")
    results: dict = {t: {"latency_us": [], "op_us": [], "ops_per_s": [], "p50_us": [], "p99_us": [],
                         "stream_received": [], "stream_losses": []} for t in TARGETS}
    try:
        serial = make_key(wq.path, "bench-s1")
        inotify_file = os.path.join(tmpfs.path, "file")
        with open(inotify_file, "wb") as f:
            f.write(b"value-0\n")
        setup = {
            "floor": ("floor", os.path.join(floor.path, "keys", "file"), floor.path),
            "wqfs": ("wqfs", os.path.join(wq.path, "keys", str(serial)), f"{wq.path}:{serial}"),
            "inotify": ("inotify", inotify_file, inotify_file),
        }
        for target in TARGETS:  # warm-up: page cache, interpreter, daemon's caches
            kind, path, tgt = setup[target]
            run_pair(kind, path, tgt, "pingpong", 200)
        with contextlib.ExitStack() as stack:
            stack.enter_context(profiling(wq.pid, "s1-wqfs"))
            stack.enter_context(profiling(floor.pid, "s1-floor"))
            _measure(repeats, n_pingpong, n_stream, setup, results)
    finally:
        wq.stop()
        floor.stop()
        tmpfs.stop()
    return _summarise(results, repeats, n_pingpong, n_stream)


def _measure(repeats: int, n_pingpong: int, n_stream: int, setup: dict, results: dict) -> None:
    for r in range(repeats):
        for target in TARGETS:  # interleaved, so that a change of load hits all three alike
            kind, path, tgt = setup[target]
            res = run_pair(kind, path, tgt, "pingpong", n_pingpong)
            lat = [v / 1000 for v in res["writer"]["lat_ns"]]
            ops = [v / 1000 for v in res["writer"]["op_ns"]]
            results[target]["latency_us"].extend(lat)
            results[target]["op_us"].extend(ops)
            results[target]["p50_us"].append(percentile(lat, 50))
            results[target]["p99_us"].append(percentile(lat, 99))
            res = run_pair(kind, path, tgt, "stream", n_stream)
            w = res["writer"]
            results[target]["ops_per_s"].append(w["n"] / (w["elapsed_ns"] / 1e9))
            results[target]["stream_received"].append(res["reader"]["received"])
            results[target]["stream_losses"].append(res["reader"]["losses"])
        log(f"  s1 repeat {r + 1}/{repeats}: " + ", ".join(
            f"{t} {results[t]['ops_per_s'][-1]:,.0f} ops/s p50 {results[t]['p50_us'][-1]:.0f} us"
            for t in TARGETS))


def _summarise(results: dict, repeats: int, n_pingpong: int, n_stream: int) -> dict:
    out: dict = {"n_pingpong": n_pingpong, "n_stream": n_stream, "repeats": repeats, "targets": {}}
    for target in TARGETS:
        res = results[target]
        out["targets"][target] = {
            "ops_per_s": summary(res["ops_per_s"]),
            "p50_us": summary(res["p50_us"]),
            "p99_us": summary(res["p99_us"]),
            "op_us_p50": percentile(res["op_us"], 50),
            "pooled_p50_us": percentile(res["latency_us"], 50),
            "pooled_p99_us": percentile(res["latency_us"], 99),
            "stream_received": res["stream_received"],
            "stream_losses": res["stream_losses"],
            "latency_us": [round(v, 2) for v in res["latency_us"]],  # for the plot
        }
    # interleaved repeats: each ratio compares runs made side by side
    out["ops_ratio_floor_over_wqfs"] = summary(
        [f / w for f, w in zip(results["floor"]["ops_per_s"], results["wqfs"]["ops_per_s"])])
    out["p50_ratio_wqfs_over_floor"] = summary(
        [w / f for f, w in zip(results["floor"]["p50_us"], results["wqfs"]["p50_us"]) if f > 0])
    return out
