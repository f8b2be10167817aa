"""Scenario 6: the FUSE request path of one update, by path shape, next to the floor.

One process updates one key n times, back to back, by open(O_WRONLY|O_TRUNC)/write/close:

* wqfs-path:    MOUNT/@s/user:x       (a symlink, its target keys/SERIAL, a keyring's directory, a member)
* wqfs-serial:  MOUNT/keys/SERIAL
* floor-path:   FLOOR/@s/user:x       (benchlib.floorfs: @s -> keys/ring, keys/ring/user:x)
* floor-serial: FLOOR/keys/file

Timed runs are plain `python -m wqfs mount -f` and plain floorfs, in interleaved repeats (the
order rotates each repeat); each ratio is floor ops/s over wqfs ops/s of the same shape in the
same repeat, run back to back. The requests per operation are counted in separate, untimed runs from libfuse's own
request log (benchlib.fuselog), on wqfs (benchlib.counted --log-counts) and on the floor
(floorfs --log-counts). Results: docs/bench/path.md.
"""
from __future__ import annotations

import os
import statistics

from .common import Mount, fmt, fmt_spread, log, profiling, result_of, summary, worker
from .s1_record import make_key

TARGETS = ("wqfs-path", "floor-path", "wqfs-serial", "floor-serial")
SHAPES = {"path": "`@s/user:x`", "serial": "`keys/SERIAL`"}
KEY_NAME = "x"
TARGET_RATIO = 1.3


def _paths(wq: Mount, floor: Mount) -> dict[str, str]:
    serial = make_key(wq.path, KEY_NAME)
    return {
        "wqfs-path": os.path.join(wq.path, "@s", f"user:{KEY_NAME}"),
        "wqfs-serial": os.path.join(wq.path, "keys", str(serial)),
        "floor-path": os.path.join(floor.path, "@s", "user:x"),
        "floor-serial": os.path.join(floor.path, "keys", "file"),
    }


def _write(path: str, n: int) -> dict:
    return result_of(worker("path-writer", "--path", path, "--n", str(n)))


def _cpu_s(pid: int) -> float:
    """The daemon's CPU time so far, all its threads (schedstat: nanoseconds)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that just ended (its time is lost to both readings)
            pass
    return total / 1e9


def request_counts(n: int) -> dict[str, dict[str, float]]:
    """FUSE requests per operation by opcode (libfuse's log), for each target."""
    wq = Mount("wqfs-counted", "--log-counts")
    floor = Mount("floor", "--log-counts")
    out: dict[str, dict[str, float]] = {}
    try:
        paths = _paths(wq, floor)
        for target in TARGETS:
            mount = wq if target.startswith("wqfs") else floor
            _write(paths[target], 20)  # the first lookups of a fresh mount are not the path's
            before = mount.snapshot()
            _write(paths[target], n)
            after = mount.snapshot()
            out[target] = {k: round((after[k] - before.get(k, 0)) / n, 2)
                           for k in sorted(after) if after[k] - before.get(k, 0) > 0}
    finally:
        wq.stop()
        floor.stop()
    return out


def run(repeats: int, n_ops: int, n_count: int) -> dict:
    wq = Mount("wqfs")
    floor = Mount("floor")
    ops: dict[str, list[float]] = {t: [] for t in TARGETS}
    cpu: dict[str, list[float]] = {t: [] for t in TARGETS}
    try:
        paths = _paths(wq, floor)
        for target in TARGETS:  # warm-up
            _write(paths[target], min(200, n_ops))
        with profiling(wq.pid, "s6-wqfs"), profiling(floor.pid, "s6-floor"):
            for r in range(repeats):
                # each shape's two runs back to back (a shared machine's load drifts), the order
                # of the shapes and of wqfs and the floor alternating from repeat to repeat
                shapes = list(SHAPES) if r % 2 == 0 else list(SHAPES)[::-1]
                for shape in shapes:
                    pair = [f"wqfs-{shape}", f"floor-{shape}"]
                    for target in pair if (r // 2) % 2 == 0 else pair[::-1]:
                        pid = wq.pid if target.startswith("wqfs") else floor.pid
                        cpu0 = _cpu_s(pid)
                        res = _write(paths[target], n_ops)
                        cpu[target].append((_cpu_s(pid) - cpu0) * 1e6 / res["n"])
                        ops[target].append(res["n"] / (res["elapsed_ns"] / 1e9))
                log(f"  s6 repeat {r + 1}/{repeats}: " + ", ".join(
                    f"{t} {ops[t][-1]:,.0f} ops/s ({cpu[t][-1]:.0f} us daemon CPU)" for t in TARGETS))
    finally:
        wq.stop()
        floor.stop()
    out: dict = {"repeats": repeats, "n_ops": n_ops, "n_count": n_count, "targets": {}, "ratios": {}}
    for target in TARGETS:
        out["targets"][target] = {"ops_per_s": summary(ops[target]),
                                  "us_per_op": statistics.median(1e6 / v for v in ops[target]),
                                  "daemon_cpu_us_per_op": summary(cpu[target])}
    for shape in SHAPES:
        out["ratios"][shape] = summary(f / w for f, w in zip(ops[f"floor-{shape}"], ops[f"wqfs-{shape}"]))
    out["requests"] = request_counts(n_count)
    return out


def _reqs(counts: dict[str, float]) -> str:
    return f"{sum(counts.values()):g}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(counts.items()))


def markdown(data: dict, results: dict) -> str:
    """docs/bench/path.md."""
    m = results["machine"]
    t, req = data["targets"], data["requests"]
    out = [
        "# The request path of one update (scenario 6)",
        "",
        f"Measured {results['date']} by `scripts/bench --only s6` on {m['cores']} cores ({m['cpu']}), "
        f"Linux {m['kernel']}, Python {m['python']}, pyfuse3 {m['pyfuse3']}, trio {m['trio']}; "
        f"load average {data['load'][0][0]:.2f} → {data['load'][1][0]:.2f} (a shared machine), {data['seconds']:.0f} s.",
        "",
        "One process updates one key back to back by `open(O_WRONLY|O_TRUNC)`, `write`, `close` "
        f"({data['n_ops']} updates a run, {data['repeats']} repeats; in each, the two runs of a path shape "
        "back to back, the order alternating), through "
        "wqfs (`python -m wqfs mount -f`) and through the same system calls on the floor, a trivial pyfuse3 "
        "file system (`scripts/benchlib/floorfs.py`) that answers every request at once and has the same two "
        "path shapes: `@s` a symlink to `keys/ring`, `keys/ring/user:x` the same file as `keys/file`. "
        "Requests per update are counted from libfuse's own request log in separate, untimed runs "
        f"({data['n_count']} updates each; `scripts/benchlib/fuselog.py`).",
        "",
        "| path | wqfs ops/s | floor ops/s | floor ÷ wqfs | target | wqfs µs/op | floor µs/op | daemon CPU µs/op, wqfs | daemon CPU µs/op, floor | requests per op, wqfs | requests per op, floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    per_request = {}
    for shape, label in SHAPES.items():
        w, f = t[f"wqfs-{shape}"], t[f"floor-{shape}"]
        ratio = data["ratios"][shape]
        met = "met" if ratio["median"] <= TARGET_RATIO else "**missed**"
        out.append(f"| {label} | {fmt_spread(w['ops_per_s'])} | {fmt_spread(f['ops_per_s'])} | "
                   f"{fmt_spread(ratio, 2, 'x')} | {TARGET_RATIO}x: {met} | {fmt(w['us_per_op'])} | {fmt(f['us_per_op'])} | "
                   f"{fmt(w['daemon_cpu_us_per_op']['median'])} | {fmt(f['daemon_cpu_us_per_op']['median'])} | "
                   f"{_reqs(req[f'wqfs-{shape}'])} | {_reqs(req[f'floor-{shape}'])} |")
        n_floor = sum(req[f"floor-{shape}"].values())
        n_wqfs = sum(req[f"wqfs-{shape}"].values())
        cpu_extra = w["daemon_cpu_us_per_op"]["median"] - f["daemon_cpu_us_per_op"]["median"]
        per_request[shape] = (f["us_per_op"] / n_floor if n_floor else float("nan"),
                              f["us_per_op"] * (ratio["median"] - 1) / n_wqfs if n_wqfs else float("nan"),
                              cpu_extra / n_wqfs if n_wqfs else float("nan"))
    out += [
        "",
        "What an update costs, per FUSE request. The floor's (its µs/op ÷ requests/op) is FUSE's own cost of "
        "a request here: the system call, the kernel's FUSE round trip, libfuse, pyfuse3's dispatch into trio. "
        "wqfs's extra is what the daemon does on top, per request: from the ratio (the floor's µs/op × "
        "(ratio − 1) ÷ requests/op), and from the daemons' CPU (the difference of the medians ÷ requests/op):",
        "",
        "| path | floor: µs per request | wqfs: extra µs per request (ratio) | wqfs: extra daemon CPU µs per request |",
        "|---|---|---|---|",
    ]
    for shape, label in SHAPES.items():
        floor_us, extra_us, cpu_us = per_request[shape]
        out.append(f"| {label} | {fmt(floor_us, 1)} | {fmt(extra_us, 1)} | {fmt(cpu_us, 1)} |")
    seen = sorted(set(req["wqfs-path"]) | set(req["wqfs-serial"]))
    out += [
        "",
        "## The requests an update needs",
        "",
        "Each request is one round trip the floor pays as well; none of these could go without "
        "showing one caller another's view or a stale permission, or without a capability that "
        "pyfuse3 3.5 and libfuse 3.14 cannot negotiate:",
        "",
        "| request | per op (`@s/user:x`, `keys/SERIAL`) | why it is sent |",
        "|---|---|---|",
    ]
    for opcode in seen:
        counts = ", ".join(f"{req[f'wqfs-{shape}'].get(opcode, 0):g}" for shape in SHAPES)
        out.append(f"| {opcode.upper()} | {counts} | {WHY.get(opcode, '')} |")
    out.append("")
    return "\n".join(out)


WHY = {
    "readlink": "`@s` is a symlink whose target is the caller's own session keyring: FUSE caches no "
                "symlink target (no FUSE_CAP_CACHE_SYMLINKS), and it must not, since callers differ",
    "lookup": "`keys/N` (VIEW on the keyring, per caller) and `user:x` in it (SEARCH on the keyring, VIEW "
              "on the key, per caller; keys come and go under others' hands): entry timeout 0. The root's "
              "own names (`@s`, `keys`) are kept by the kernel (wqfs.fuse.names.STATIC_ENTRY_TIMEOUT)",
    "open": "the WRITE check (EACCES at open, not at close) and the file handle",
    "getxattr": "`security.capability`, which the kernel asks on every O_TRUNC open before truncating "
                "(dentry_needs_remove_privs): only FUSE_HANDLE_KILLPRIV_V2 would stop it, which libfuse "
                "3.14 and pyfuse3 cannot ask for. Answered ENODATA at once",
    "write": "the payload",
    "flush": "close(): the update is committed here, so that its record is posted and its error "
             "(EACCES, EDQUOT, EKEYREVOKED) returned before close() returns",
    "release": "sent by the kernel for every open file after the last close, asynchronously; "
               "nothing left to do",
    "forget": "the kernel dropping inodes it looked up",
}
