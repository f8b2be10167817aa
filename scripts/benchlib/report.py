"""results.md (the tables), latency.png (the plot), and the README's summary between its markers."""
from __future__ import annotations

import os
import re

from .common import fmt, fmt_spread

TITLES = {
    "s1": "operation to record",
    "s2": "delivery",
    "s3": "fan-out",
    "s4": "scale",
    "s5": "syscall front",
    "s6": "request path of an update",
}
README_START = "<!-- bench:start (scripts/bench --readme writes this part) -->"
README_END = "<!-- bench:end -->"


def _has(sc: dict, name: str) -> bool:
    return name in sc and "error" not in sc[name]


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "**missed**")


def targets(results: dict) -> list[tuple[str, str, str, bool | None]]:
    """(scenario, target, measured, met) for every target of the issue that was measured."""
    sc = results["scenarios"]
    rows: list[tuple[str, str, str, bool | None]] = []
    if _has(sc, "s1"):
        s1 = sc["s1"]
        ratio = s1["ops_ratio_floor_over_wqfs"]
        rows.append(("1 operation to record", "within 1.5x of the pyfuse3 floor (ops/s)",
                     f"{fmt(ratio['median'], 2)}x (medians {fmt(s1['targets']['wqfs']['ops_per_s']['median'])} vs "
                     f"{fmt(s1['targets']['floor']['ops_per_s']['median'])} ops/s)", ratio["median"] <= 1.5))
        p99 = s1["targets"]["wqfs"]["p99_us"]["median"]
        rows.append(("1 operation to record", "p99 latency under 2 ms",
                     f"{fmt(p99 / 1000, 2)} ms (floor {fmt(s1['targets']['floor']['p99_us']['median'] / 1000, 2)} ms)",
                     p99 < 2000))
    if _has(sc, "s2"):
        t = sc["s2"]["targets"]
        for name, label in (("wqfs", "binary records, 64 KiB reads"), ("events", "through events/ text")):
            if name in t:
                rate = t[name]["records_per_s"]["median"]
                rows.append(("2 delivery", f"at least 200,000 records/s ({label})", f"{fmt(rate)} records/s",
                             rate >= 200_000))
    if _has(sc, "s3"):
        slope = sc["s3"]["per_extra_queue_us"]["median"]
        rows.append(("3 fan-out", "under 10 µs per extra watching queue per update", f"{fmt(slope, 2)} µs",
                     slope < 10))
    if _has(sc, "s4"):
        s4 = sc["s4"]
        rows.append(("4 scale", "an operation at 10^5 keys costs at most 1.3x that at 10^2",
                     f"{fmt(s4['op_ratio'], 2)}x", s4["op_ratio"] <= 1.3))
        rows.append(("4 scale", "under 2 KiB of daemon memory per key", f"{fmt(s4['bytes_per_key'])} bytes",
                     s4["bytes_per_key"] < 2048))
    if _has(sc, "s5"):
        for mode, label in (("update", "keyctl update"), ("linkunlink", "link/unlink"), ("watch", "watch_key")):
            ratio = sc["s5"]["modes"][mode]["ratio_floor_over_wqfs"]
            if ratio.get("n"):
                rows.append(("5 syscall front", f"{label} within 1.5x of the trapped-syscall floor",
                             f"{fmt(ratio['median'], 2)}x (medians {fmt(sc['s5']['modes'][mode]['wqfs']['calls_per_s']['median'])}"
                             f" vs {fmt(sc['s5']['modes'][mode]['floor']['calls_per_s']['median'])} calls/s)",
                             ratio["median"] <= 1.5))
    if _has(sc, "s6"):
        s6 = sc["s6"]
        for shape, label in (("path", "MOUNT/@s/user:x"), ("serial", "MOUNT/keys/SERIAL")):
            ratio = s6["ratios"][shape]
            rows.append(("6 request path", f"an update through {label} within 1.3x of the pyfuse3 floor (ops/s)",
                         f"{fmt(ratio['median'], 2)}x (medians {fmt(s6['targets'][f'wqfs-{shape}']['ops_per_s']['median'])}"
                         f" vs {fmt(s6['targets'][f'floor-{shape}']['ops_per_s']['median'])} ops/s)",
                         ratio["median"] <= 1.3))
    return rows


def summary_table(results: dict) -> str:
    lines = ["| scenario | target | measured (median) | |", "|---|---|---|---|"]
    for scenario, target, measured, met in targets(results):
        lines.append(f"| {scenario} | {target} | {measured} | {_ok(met)} |")
    return "\n".join(lines)


def _machine_line(results: dict) -> str:
    m = results["machine"]
    return (f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
            f"Python {m['python']}, pyfuse3 {m['pyfuse3']}, trio {m['trio']}")


def _load(pair: list) -> str:
    return f"{pair[0][0]:.2f} → {pair[1][0]:.2f}"


def markdown(results: dict, plot_ok: bool) -> str:
    sc = results["scenarios"]
    out = [
        "# wqfs benchmarks",
        "",
        f"Measured {results['date']} by `make bench` (`scripts/bench{' --quick' if results['quick'] else ''}`), "
        f"{results['seconds'] / 60:.1f} minutes.",
        "",
        f"* Machine: {_machine_line(results)}.",
        f"* Load average (1 min) {results['load_start'][0]:.2f} at the start, {results['load_end'][0]:.2f} at the end; "
        "the machine is shared, so every scenario runs its baselines next to it (interleaved repeats) "
        "and the load around each scenario is in its heading.",
        "* Numbers are medians over repeats, with the spread (min–max of the repeats) in parentheses. "
        "Latencies are CLOCK_MONOTONIC differences between two processes.",
        "* Profiles, the fixes they led to, and why the missed target is out of reach: "
        "[analysis.md](analysis.md) (`scripts/bench --profile` writes the profiles to `profiles/`).",
        "",
        "## Targets",
        "",
        summary_table(results),
        "",
    ]
    if plot_ok:
        out += ["![latency and throughput](latency.png)", ""]
    for name, data in sc.items():
        if "error" in data:
            out += [f"**Scenario {name[1]} ({TITLES[name]}) failed in this run:** `{data['error']}`", ""]
    if _has(sc, "s1"):
        s1 = sc["s1"]
        t = s1["targets"]
        req = s1.get("requests", {})
        out += [
            f"## 1. Operation to record (load {_load(s1['load'])}, {s1['seconds']:.0f} s)",
            "",
            "A writer process updates a key through the mount — `open(MOUNT/keys/SERIAL, O_WRONLY)`, `write`, "
            "`close` — while a reader process waits in `poll()` on a queue watching the key and reads with "
            "64 KiB reads. *Ops/s*: the writer back to back while the reader drains "
            f"({s1['n_stream']} updates per repeat). *Latency*: ping-pong ({s1['n_pingpong']} updates per repeat), "
            "from the return of the call that posts the record (`close()`: wqfs commits an update at flush; "
            "`write()` for inotify) to the reader's `read()` returning it. "
            f"{s1['repeats']} interleaved repeats.",
            "",
            "| | ops/s | update (open→close) p50 | latency p50 | latency p99 | FUSE requests per op |",
            "|---|---|---|---|---|---|",
        ]
        labels = {"floor": "pyfuse3 floor (scripts/benchlib/floorfs.py)", "wqfs": "**wqfs**",
                  "inotify": "inotify on tmpfs (peer)"}
        for name in ("floor", "wqfs", "inotify"):
            v = t[name]
            r = req.get(name)
            reqs = f"{sum(r.values()):g} ({', '.join(f'{k} {c:g}' for k, c in sorted(r.items()))})" if r else "—"
            out.append(f"| {labels[name]} | {fmt_spread(v['ops_per_s'])} | {fmt(v['op_us_p50'])} µs | "
                       f"{fmt_spread(v['p50_us'], 0, ' µs')} | {fmt_spread(v['p99_us'], 0, ' µs')} | {reqs} |")
        lost = sum(t["wqfs"]["stream_losses"])
        out += [
            "",
            f"wqfs / floor: {fmt_spread(s1['ops_ratio_floor_over_wqfs'], 2, 'x')} fewer ops/s, "
            f"{fmt_spread(s1['p50_ratio_wqfs_over_floor'], 2, 'x')} the p50 latency. "
            f"The stream runs lost {lost} records to a full queue. "
            "inotify posts IN_MODIFY inside `write()`, so its reader may have the event before `write()` has "
            "returned to the writer: its latencies can be slightly negative. "
            "inotify merges an unread IN_MODIFY with the next one, so its reader sees fewer events than writes "
            f"({', '.join(str(x) for x in t['inotify']['stream_received'])} of {s1['n_stream']}).",
            "",
        ]
    if _has(sc, "s2"):
        s2 = sc["s2"]
        t = s2["targets"]
        out += [
            f"## 2. Delivery (load {_load(s2['load'])}, {s2['seconds']:.0f} s)",
            "",
            "A queue is filled to its maximum through the mount, then one reader drains it with 64 KiB "
            "`read()`s; records/s = records ÷ time spent in `read()`. "
            f"{s2['fills']} fills each.",
            "",
            "| | records | records/s | time to drain | reads |",
            "|---|---|---|---|---|",
        ]
        labels = {"wqfs": "**wqfs** `watch_queue` (binary)", "events": "**wqfs** `events/SERIAL` (text)",
                  "floor": "pyfuse3 floor: one read of the same bytes"}
        for name in ("wqfs", "events", "floor"):
            if name in t:
                v = t[name]
                out.append(f"| {labels[name]} | {v['records']} | {fmt_spread(v['records_per_s'])} | "
                           f"{fmt_spread(v['read_us'], 0, ' µs')} | {fmt(v['reads_per_drain']['median'])} |")
        out.append("")
    if _has(sc, "s3"):
        s3 = sc["s3"]
        out += [
            f"## 3. Fan-out (load {_load(s3['load'])}, {s3['seconds']:.0f} s)",
            "",
            "One key watched by N queues (each its own open `watch_queue`, not polled). A process updates the "
            "key through the mount (each record is in every queue when `close()` returns), then drains every "
            f"queue with one read each; {s3['updates']} updates × {s3['rounds']} rounds, {s3['repeats']} repeats. "
            "*Per delivered record*: updates and drains together ÷ records delivered.",
            "",
            "| queues | per update | per delivered record |",
            "|---|---|---|",
        ]
        for n, v in s3["fanouts"].items():
            out.append(f"| {n} | {fmt_spread(v['update_us'], 0, ' µs')} | {fmt_spread(v['record_us'], 1, ' µs')} |")
        out += ["", f"Per extra watching queue: {fmt_spread(s3['per_extra_queue_us'], 2, ' µs')} per update "
                "(the slope from 1 to 1000 queues).", ""]
    if _has(sc, "s4"):
        s4 = sc["s4"]
        out += [
            f"## 4. Scale (load {_load(s4['load'])}, {s4['seconds']:.0f} s)",
            "",
            "A daemon per size, all mounted at once: keys are added by a C program calling `add_key` in a loop "
            "under `wqfs run`; in each, 100 queues watching the same 100 keys hold 10^4 watches. The daemons' "
            "VmRSS is read, then the operation of scenario 1 is timed on each in turn "
            f"({s4['n_ops']} updates × {s4['repeats']} interleaved repeats, in a rotating order).",
            "",
            "| keys in the store | update (open→close) p50 | latency p50 | latency p99 | daemon RSS | add_key calls/s while seeding |",
            "|---|---|---|---|---|---|",
        ]
        for v in s4["sizes"].values():
            seed = fmt(v["seed_calls_per_s"]) if v.get("seed_calls_per_s") else "—"
            out.append(f"| {v['keys']:,} | {fmt_spread(v['op_us'], 0, ' µs')} | {fmt_spread(v['latency_p50_us'], 0, ' µs')} | "
                       f"{fmt_spread(v['latency_p99_us'], 0, ' µs')} | {v['rss_kib'] / 1024:.1f} MiB | {seed} |")
        ratios = s4.get("op_ratios")
        spread = f" ({fmt(ratios['min'], 2)}–{fmt(ratios['max'], 2)} over the repeats)" if ratios else ""
        out += ["", f"Operation at the largest size ÷ at the smallest: {fmt(s4['op_ratio'], 2)}x{spread}. "
                f"Memory per key (RSS growth ÷ keys added): {fmt(s4['bytes_per_key'])} bytes.", ""]
    if _has(sc, "s5"):
        s5 = sc["s5"]
        out += [
            f"## 5. Syscall front (load {_load(s5['load'])}, {s5['seconds']:.0f} s)",
            "",
            "A C program (`scripts/benchlib/keyctl_bench.c`) calls keyctl in a tight loop with `syscall()` and "
            "times it with `clock_gettime`: under `wqfs run` (the daemon answers), under the trapped-syscall "
            "floor (`scripts/benchlib/seccomp_floor.py`: wqfs's own seccomp filter and serve loop, every call "
            "answered 0 at once), and directly on this kernel. "
            f"{s5['n_emulated']} calls (update) or {s5['n_emulated'] // 2} pairs per emulated run, "
            f"{s5['repeats']} interleaved repeats.",
            "",
            "| calls/s; p50 of one call | real kernel | trapped-syscall floor | **wqfs run** | floor ÷ wqfs |",
            "|---|---|---|---|---|",
        ]
        labels = {"update": "keyctl update", "linkunlink": "link + unlink", "watch": "watch_key (watch + unwatch)"}
        for mode, v in s5["modes"].items():
            cells = []
            for t in ("kernel", "floor", "wqfs"):
                if v[t]["calls_per_s"].get("n"):
                    cells.append(f"{fmt_spread(v[t]['calls_per_s'])}; p50 {fmt(v[t]['p50_us']['median'], 1)} µs")
                else:
                    cells.append("n/a: " + s5.get("notes", {}).get(f"{mode}/{t}", "not run"))
            ratio = v["ratio_floor_over_wqfs"]
            out.append(f"| {labels[mode]} | {' | '.join(cells)} | {fmt_spread(ratio, 2, 'x')} |")
        out.append("")
    return "\n".join(out)


def plot(results: dict, path: str) -> bool:
    """Four panels: scenario 1's latency distributions, 3's fan-out, 4's scale, 5's call rates."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sc = results["scenarios"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    colors = {"floor": "#888888", "wqfs": "#1f77b4", "inotify": "#2ca02c", "kernel": "#9467bd"}

    ax = axes[0][0]
    if _has(sc, "s1"):
        for name, label in (("floor", "pyfuse3 floor"), ("wqfs", "wqfs"), ("inotify", "inotify on tmpfs")):
            values = sorted(max(v, 1.0) for v in sc["s1"]["targets"][name].get("latency_us", []))
            if values:
                ys = [(i + 1) / len(values) for i in range(len(values))]
                ax.plot(values, ys, label=label, color=colors[name])
        ax.axvline(2000, color="#d62728", linestyle="--", linewidth=1, label="target p99 (2 ms)")
        ax.axhline(0.99, color="#cccccc", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("µs from close() (inotify: write()) to the reader's read() (≤1 µs drawn at 1)")
        ax.set_ylabel("fraction of updates")
        ax.set_title("1. Operation to record: latency CDF")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.set_visible(False)

    ax = axes[0][1]
    if _has(sc, "s3"):
        ns = [int(n) for n in sc["s3"]["fanouts"]]
        upd = [sc["s3"]["fanouts"][str(n)]["update_us"]["median"] for n in ns]
        rec = [sc["s3"]["fanouts"][str(n)]["record_us"]["median"] for n in ns]
        ax.plot(ns, upd, "o-", label="per update", color=colors["wqfs"])
        ax.plot(ns, rec, "s--", label="per delivered record", color="#ff7f0e")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("queues watching the key")
        ax.set_ylabel("µs")
        ax.set_title("3. Fan-out")
        ax.legend(fontsize=8)
    else:
        ax.set_visible(False)

    ax = axes[1][0]
    if _has(sc, "s4"):
        sizes = list(sc["s4"]["sizes"].values())
        keys = [v["keys"] for v in sizes]
        ax.plot(keys, [v["op_us"]["median"] for v in sizes], "o-", color=colors["wqfs"], label="update p50")
        ax.plot(keys, [v["latency_p50_us"]["median"] for v in sizes], "s--", color="#ff7f0e", label="latency p50")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("keys in the store (10^4 watches)")
        ax.set_ylabel("µs")
        ax2 = ax.twinx()
        ax2.plot(keys, [v["rss_kib"] / 1024 for v in sizes], "^:", color="#7f7f7f", label="daemon RSS")
        ax2.set_ylabel("MiB")
        ax2.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower right")
        ax.set_title("4. Scale")
    else:
        ax.set_visible(False)

    ax = axes[1][1]
    if _has(sc, "s5"):
        modes = list(sc["s5"]["modes"])
        width = 0.27
        for i, (t, label) in enumerate((("kernel", "real kernel"), ("floor", "trapped floor"), ("wqfs", "wqfs run"))):
            vals = [sc["s5"]["modes"][m][t]["calls_per_s"]["median"] for m in modes]
            xs = [j + (i - 1) * width for j in range(len(modes))]
            ax.bar(xs, [v if v == v else 0 for v in vals], width, label=label, color=colors[t])
        for j, m in enumerate(modes):
            if not sc["s5"]["modes"][m]["kernel"]["calls_per_s"].get("n"):
                ax.text(j - width, 1500, "n/a: no\nwatch_queue", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_ylim(bottom=1000)
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(["update", "link/unlink", "watch_key"])
        ax.set_yscale("log")
        ax.set_ylabel("calls per second")
        ax.set_title("5. Syscall front (no watch_queue in this kernel)")
        ax.legend(fontsize=8)
    else:
        ax.set_visible(False)

    fig.suptitle(f"wqfs, {results['date']}: {_machine_line(results)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def update_readme(path: str, results: dict, plot_ok: bool) -> None:
    """Replace the part of README.md between the bench markers (if they are there)."""
    with open(path) as f:
        text = f.read()
    if README_START not in text or README_END not in text:
        return
    body = [README_START, "",
            f"Measured {results['date']} on {_machine_line(results)}; load average "
            f"{results['load_start'][0]:.2f}–{results['load_end'][0]:.2f} (a shared machine).",
            "", summary_table(results), ""]
    if plot_ok:
        body += ["![latency and throughput](docs/bench/latency.png)", ""]
    body.append(README_END)
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    text = pattern.sub(lambda _: "\n".join(body), text)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
