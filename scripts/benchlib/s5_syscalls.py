"""Scenario 5: the syscall front. keyctl calls per second from a C program (benchlib/keyctl_bench.c).

* wqfs: under `wqfs run` against a daemon (the program's trapped calls answered by the emulator);
* floor: under benchlib.seccomp_floor (wqfs's filter and serve loop; every call answered 0);
* kernel: the same program run directly (this kernel has CONFIG_KEYS, not CONFIG_WATCH_QUEUE).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess

from .common import PYTHON, ROOT, Mount, communicate, env, log, profiling, summary

MODES = ("update", "linkunlink", "watch")
_nothing = contextlib.nullcontext
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keyctl_bench.c")


def build(directory: str) -> str:
    binary = os.path.join(directory, "keyctl_bench")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", binary, SOURCE], check=True)
    return binary


def _run(argv: list[str], timeout: float = 180) -> dict:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env(), cwd=ROOT, start_new_session=True)
    out, err = (b.decode(errors="replace") for b in communicate(proc, timeout))
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {out[-500:]} {err[-1000:]}")
    return json.loads(lines[-1])


def wqfs_run(mount: str, *args: str) -> list[str]:
    return [PYTHON, "-m", "wqfs", "run", "--mount", mount, "--", *args]


def run(repeats: int, n_emulated: int, n_kernel: int, binary: str) -> dict:
    wq = Mount("wqfs")
    per: dict = {m: {t: [] for t in ("floor", "wqfs", "kernel")} for m in MODES}
    p50: dict = {m: {t: [] for t in ("floor", "wqfs", "kernel")} for m in MODES}
    notes: dict = {}
    try:
        for mode in MODES:  # warm-up
            _run(wqfs_run(wq.path, binary, mode, "200"))
        for r in range(repeats):
            for mode in MODES:
                n = n_emulated if mode == "update" else n_emulated // 2
                argvs = {
                    "floor": [PYTHON, "-m", "benchlib.seccomp_floor", "--", binary, mode, str(n)],
                    "wqfs": wqfs_run(wq.path, binary, mode, str(n)),
                    "kernel": [binary, mode, str(n_kernel if mode == "update" else n_kernel // 2)],
                }
                for target, argv in argvs.items():
                    with profiling(wq.pid, f"s5-{mode}") if target == "wqfs" and r == 0 else _nothing():
                        res = _run(argv)
                    if "error" in res:
                        notes[f"{mode}/{target}"] = res["error"]
                        continue
                    if res["failures"]:
                        notes[f"{mode}/{target}"] = f"{res['failures']} calls failed: {res['first_error']}"
                    per[mode][target].append(res["calls"] / (res["ns"] / 1e9))
                    p50[mode][target].append(res["p50_ns"] / 1000)
            log(f"  s5 repeat {r + 1}/{repeats}: " + ", ".join(
                f"{m} wqfs {per[m]['wqfs'][-1]:,.0f}/s floor {per[m]['floor'][-1]:,.0f}/s" for m in MODES))
    finally:
        wq.stop()
    out: dict = {"repeats": repeats, "n_emulated": n_emulated, "n_kernel": n_kernel, "modes": {}, "notes": notes}
    for mode in MODES:
        out["modes"][mode] = {t: {"calls_per_s": summary(per[mode][t]), "p50_us": summary(p50[mode][t])}
                              for t in ("floor", "wqfs", "kernel")}
        # run side by side in each repeat: the floor's rate over wqfs's
        out["modes"][mode]["ratio_floor_over_wqfs"] = summary(
            [f / w for f, w in zip(per[mode]["floor"], per[mode]["wqfs"])])
    return out
