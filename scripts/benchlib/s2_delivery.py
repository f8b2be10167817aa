"""Scenario 2: delivery. A queue holds its maximum; one reader drains it with 64 KiB reads.

One process fills the queue through the mount (updates of the watched key), then times the
read() calls that drain it: records per second = records / time in read(). The same through
MOUNT/events/SERIAL (a queue of 256, read as text lines), and, for reference, the same reads
on the floor file system (one FUSE read returning the same bytes, with no queue behind it).
"""
from __future__ import annotations

import os

from .common import Mount, log, profiling, result_of, summary, worker
from .s1_record import make_key

MAX_NOTES = 512      # WATCH_QUEUE_MAX_NOTES
EVENTS_NOTES = 256   # MOUNT/events/ queues


def _one(kind: str, target: str, path: str, records: int, fills: int) -> list[dict]:
    res = result_of(worker("delivery", "--kind", kind, "--target", target, "--path", path,
                           "--records", str(records), "--fills", str(fills)))
    return res["samples"]


def run(fills: int) -> dict:
    wq = Mount("wqfs")
    floor = Mount("floor")
    out: dict = {"fills": fills, "targets": {}}
    try:
        serial = make_key(wq.path, "bench-s2")
        key_path = os.path.join(wq.path, "keys", str(serial))
        runs = {
            "wqfs": ("wqfs", f"{wq.path}:{serial}", key_path, MAX_NOTES),
            "events": ("events", f"{wq.path}:{serial}", key_path, EVENTS_NOTES),
            "floor": ("floor", floor.path, os.path.join(floor.path, "keys", "file"), MAX_NOTES),
        }
        for name, (kind, target, path, records) in runs.items():
            with profiling(floor.pid if kind == "floor" else wq.pid, f"s2-{name}"):
                samples = _one(kind, target, path, records, fills)
            rates = [s["records"] / (s["ns"] / 1e9) for s in samples]
            out["targets"][name] = {
                "records": records,
                "records_per_s": summary(rates),
                "read_us": summary([s["ns"] / 1000 for s in samples]),
                "reads_per_drain": summary([s["reads"] for s in samples]),
            }
            log(f"  s2 {name}: {out['targets'][name]['records_per_s']['median']:,.0f} records/s "
                f"({records} records in {out['targets'][name]['read_us']['median']:.0f} us)")
    finally:
        wq.stop()
        floor.stop()
    return out
