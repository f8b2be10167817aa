"""Scenario 3: fan-out. One key watched by 1, 10, 100, 1000 queues.

One process opens N queues (each watching the key), updates the key through the mount
(timing each open/write/close: the records are posted to every queue before close()
returns), then drains every queue with one read each. Reported: time per update, its
growth per extra watching queue, and time per delivered record (updates and drains
together, divided by the records delivered).
"""
from __future__ import annotations

import contextlib
import statistics

from .common import Mount, log, profiling, result_of, summary, worker
from .s1_record import make_key

FANOUTS = (1, 10, 100, 1000)
_nothing = contextlib.nullcontext


def run(repeats: int, updates: int, rounds: int) -> dict:
    wq = Mount("wqfs")
    per: dict = {n: {"update_us": [], "record_us": []} for n in FANOUTS}
    try:
        serial = make_key(wq.path, "bench-s3")
        result_of(worker("fanout", "--target", f"{wq.path}:{serial}", "--queues", "10",
                         "--updates", str(updates), "--rounds", "1"))  # warm-up
        for r in range(repeats):
            for n in FANOUTS:
                with profiling(wq.pid, f"s3-{n}") if r == 0 and n == FANOUTS[-1] else _nothing():
                    res = result_of(worker("fanout", "--target", f"{wq.path}:{serial}", "--queues", str(n),
                                           "--updates", str(updates), "--rounds", str(rounds)))
                update_us = [v / 1000 for v in res["update_ns"]]
                per[n]["update_us"].append(statistics.median(update_us))
                total_us = (sum(res["update_ns"]) + sum(res["drain_ns"])) / 1000
                per[n]["record_us"].append(total_us / res["delivered"])
            log(f"  s3 repeat {r + 1}/{repeats}: " + ", ".join(
                f"{n}: {per[n]['update_us'][-1]:.0f} us/update" for n in FANOUTS))
    finally:
        wq.stop()
    out: dict = {"updates": updates, "rounds": rounds, "repeats": repeats, "fanouts": {}}
    for n in FANOUTS:
        out["fanouts"][str(n)] = {"update_us": summary(per[n]["update_us"]),
                                  "record_us": summary(per[n]["record_us"])}
    # the marginal cost of a watching queue: the slope from 1 to 1000 queues, per repeat
    slopes = [(per[FANOUTS[-1]]["update_us"][i] - per[1]["update_us"][i]) / (FANOUTS[-1] - 1)
              for i in range(repeats)]
    out["per_extra_queue_us"] = summary(slopes)
    return out
