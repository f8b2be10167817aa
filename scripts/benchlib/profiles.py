"""py-spy profiles of the daemon during a scenario, summarised as text for docs/bench/.

    with Profiler(pid, "/path/name") as p: ...run the scenario...
    -> name.txt: the functions with the most samples, inclusive and self (from py-spy's raw,
       collapsed-stack output; set WQFS_BENCH_KEEP_RAW=1 to keep that as name.raw for flame graphs)
"""
from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional

FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> Optional[str]:
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.path.exists(here) else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out_base: str, rate: int = 1000) -> None:
        self.out_base = out_base
        self.rate = rate
        self.pid = pid
        self.raw = out_base + ".raw"
        tool = py_spy()
        self.proc = None
        if tool is not None:
            self.proc = subprocess.Popen([tool, "record", "--format", "raw", "-r", str(rate), "--nonblocking",
                                          "-o", self.raw, "--pid", str(pid)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

    def __enter__(self) -> "Profiler":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if os.path.exists(self.raw):
            with open(self.out_base + ".txt", "w") as f:
                f.write(f"py-spy record --nonblocking at {self.rate} Hz of the daemon (pid {self.pid}) "
                        f"while {os.path.basename(self.out_base)} ran\n")
                f.write(summarise(self.raw))
            if not os.environ.get("WQFS_BENCH_KEEP_RAW"):
                os.unlink(self.raw)


def _name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("/wqfs/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path[path.index(marker) + 1:]
            break
    return f"{m.group('fn')} ({path})"


def summarise(raw_path: str, top: int = 30) -> str:
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    idle = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [_name(fr) for fr in stack.split(";") if fr.strip()]
            frames = [fr for fr in frames if not fr.startswith("process ") and not fr.startswith("thread ")]
            total += n
            if frames and ("epoll" in frames[-1] or "get_events" in frames[-1] or "_wait" in frames[-1].split(" ")[0]):
                idle += n
            for fr in set(frames):
                inclusive[fr] += n
            if frames:
                own[frames[-1]] += n
    groups: collections.Counter = collections.Counter()
    for fr, n in own.items():
        path = fr[fr.rfind("(") + 1:]
        group = ("wqfs" if path.startswith(("wqfs/", "operations.py", "handles.py", "callers.py", "names.py",
                                            "xattrs.py", "pipes.py"))
                 else "pyfuse3" if "pyfuse3" in path else "trio" if path.startswith(("trio/", "outcome/", "attr"))
                 else "other")
        groups[group] += n
    lines = [f"samples: {total} (idle in the event loop's wait: {idle}, {100 * idle / max(total, 1):.0f}%)",
             "self time by package: " + ", ".join(f"{g} {100 * n / max(total, 1):.0f}%" for g, n in groups.most_common()),
             "(--nonblocking samples can tear a stack: trust self %; inclusive % is a lower bound)", "",
             "inclusive %  self %   function"]
    for fr, n in inclusive.most_common(top):
        lines.append(f"{100 * n / max(total, 1):10.1f}  {100 * own[fr] / max(total, 1):6.1f}   {fr}")
    lines += ["", "self %   function (by self time)"]
    for fr, n in own.most_common(top):
        lines.append(f"{100 * n / max(total, 1):6.1f}   {fr}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30))
