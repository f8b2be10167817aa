"""scripts/bench: run every scenario on this machine and write docs/bench/results.{md,json}, latency.png.

Each scenario runs next to its baselines in the same run (interleaved where they share
nothing), on real mounts with real processes. Benchmarks are not tests: nothing here is
part of `make test`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

from . import common, report, s1_record, s2_delivery, s3_fanout, s4_scale, s5_syscalls, s6_path
from .common import ROOT, loadavg, log

SCENARIOS = ("s1", "s2", "s3", "s4", "s5", "s6")

# (full, quick) sizes: the full run takes about 3 minutes on 2 cores, the quick one under 1
PLAN = {
    "s1": {"repeats": (5, 2), "n_pingpong": (3000, 300), "n_stream": (3000, 300)},
    "s2": {"fills": (20, 3)},
    "s3": {"repeats": (3, 1), "updates": (32, 16), "rounds": (5, 2)},
    "s4": {"repeats": (5, 1), "n_ops": (1000, 200)},
    "s5": {"repeats": (5, 1), "n_emulated": (4000, 600), "n_kernel": (200000, 20000)},
    "s6": {"repeats": (15, 3), "n_ops": (1000, 300), "n_count": (300, 100)},
}


def _params(name: str, quick: bool) -> dict:
    return {k: v[1 if quick else 0] for k, v in PLAN[name].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"),
                        help="where results.md, results.json and latency.png go (default: docs/bench)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios to run, e.g. s1,s5")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and operations (a smoke run)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the daemons with py-spy while measured; summaries in OUT/profiles/")
    parser.add_argument("--readme", action="store_true",
                        help="also put the summary table into README.md between its bench markers")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {sorted(unknown)[0]}; choose from {', '.join(SCENARIOS)}")
    if os.geteuid() != 0:
        print("scripts/bench: run as root (it mounts FUSE and tmpfs file systems)", file=sys.stderr)
        return 1
    if not os.path.exists("/dev/fuse"):
        print("scripts/bench: /dev/fuse is missing", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    if args.profile:
        common.PROFILE_DIR = os.path.join(args.out, "profiles")

    started = time.time()
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "machine": common.machine(),
        "quick": args.quick,
        "load_start": loadavg(),
        "scenarios": {},
    }
    m = results["machine"]
    log(f"wqfs bench on {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}"
        f"{' (quick)' if args.quick else ''}")
    with tempfile.TemporaryDirectory(prefix="wqfs-bench-") as work:
        binary = s5_syscalls.build(work) if {"s4", "s5"} & set(only) else ""
        runners = {
            "s1": lambda p: dict(s1_record.run(**p), requests=s1_record.request_counts(100 if args.quick else 300)),
            "s2": lambda p: s2_delivery.run(**p),
            "s3": lambda p: s3_fanout.run(**p),
            "s4": lambda p: s4_scale.run(binary=binary, **p),
            "s5": lambda p: s5_syscalls.run(binary=binary, **p),
            "s6": lambda p: s6_path.run(**p),
        }
        for name in SCENARIOS:
            if name not in only:
                continue
            params = _params(name, args.quick)
            log(f"{name}: {report.TITLES[name]} {params}")
            load_before = loadavg()
            t0 = time.monotonic()
            try:
                data = runners[name](params)
            except Exception as error:  # one broken scenario must not lose the others
                traceback.print_exc()
                data = {"error": f"{type(error).__name__}: {str(error)[:500]}"}
            data["seconds"] = time.monotonic() - t0
            data["load"] = [load_before, loadavg()]
            results["scenarios"][name] = data
            log(f"{name}: done in {data['seconds']:.0f} s")
        if args.profile and "s5" in only:
            from . import breakdown
            os.makedirs(common.PROFILE_DIR, exist_ok=True)
            log("s5 breakdown: where a trapped keyctl's time goes")
            with open(os.path.join(common.PROFILE_DIR, "s5-breakdown.txt"), "w") as f:
                f.write(breakdown.run(binary, 1000 if args.quick else 4000) + "\n")
    results["seconds"] = time.time() - started
    results["load_end"] = loadavg()

    s6 = results["scenarios"].get("s6")
    if s6 is not None and "error" not in s6:
        with open(os.path.join(args.out, "path.md"), "w") as f:
            f.write(s6_path.markdown(s6, results))
        with open(os.path.join(args.out, "path.json"), "w") as f:  # path.md again: s6_path.markdown
            json.dump({"results": {k: results[k] for k in ("date", "machine")}, "s6": s6}, f, indent=1,
                      sort_keys=True, default=float)
            f.write("\n")
        log(f"wrote {os.path.relpath(args.out, ROOT)}/path.md")
    plot_ok = False
    if set(only) - {"s6"}:  # a run of s6 alone writes path.md only, and leaves the other results be
        plot_ok = report.plot(results, os.path.join(args.out, "latency.png"))
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(report.markdown(results, plot_ok))
        slim = json.loads(json.dumps(results, default=float))
        for target in slim.get("scenarios", {}).get("s1", {}).get("targets", {}).values():
            target.pop("latency_us", None)  # the raw samples are in the plot, not the JSON
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(slim, f, indent=1, sort_keys=True)
            f.write("\n")
    if args.readme:
        if os.path.realpath(args.out) == os.path.realpath(os.path.join(ROOT, "docs", "bench")):
            report.update_readme(os.path.join(ROOT, "README.md"), results, plot_ok)
        else:
            log("--readme: README.md links docs/bench/, so only a run into docs/bench updates it")
    if set(only) - {"s6"}:
        log(f"wrote {os.path.relpath(args.out, ROOT)}/results.md, results.json"
            f"{', latency.png' if plot_ok else ''} in {results['seconds'] / 60:.1f} min")
    print()
    print(report.summary_table(results))
    return 0
