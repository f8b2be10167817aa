"""What every scenario needs: daemons on temporary mountpoints (wqfs.harness), the machine's facts, statistics."""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Optional, Sequence

from wqfs.harness import TemporaryMount
from wqfs.mounts import is_mounted

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
PYTHON = sys.executable


def env() -> dict[str, str]:
    """The environment of every helper process: benchlib importable, wqfs from this tree."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([SCRIPTS, ROOT] + ([out["PYTHONPATH"]] if out.get("PYTHONPATH") else []))
    return out


# ---------------------------------------------------------------- the machine

def loadavg() -> tuple[float, float, float]:
    with open("/proc/loadavg") as f:
        one, five, fifteen = f.read().split()[:3]
    return float(one), float(five), float(fifteen)


def machine() -> dict[str, object]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for module in ("pyfuse3", "trio"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:
            versions[module] = "?"
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        mem_kib = 0
    fuse = ""
    try:
        fuse = subprocess.run(["fusermount3", "--version"], capture_output=True, text=True).stdout.strip() \
            or subprocess.run(["fusermount3", "--version"], capture_output=True, text=True).stderr.strip()
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyfuse3": versions["pyfuse3"],
        "trio": versions["trio"],
        "fusermount": fuse,
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- statistics

def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median of the repeats and their spread (min, max, and the relative half-range)."""
    vals = [v for v in values if v == v]
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    med = statistics.median(vals)
    return {"median": med, "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(value: float, digits: int = 0) -> str:
    if value != value:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_spread(s: dict[str, float], digits: int = 0, unit: str = "") -> str:
    """'median (min–max)'."""
    if not s.get("n"):
        return "n/a"
    return f"{fmt(s['median'], digits)}{unit} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


# ---------------------------------------------------------------- mounts

def fuse_connection(path: str) -> Optional[str]:
    """/sys/fs/fuse/connections/N of the FUSE mount at path (N is its device minor), if mounted."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == real:
                conn = os.path.join("/sys/fs/fuse/connections", fields[2].split(":")[1])
                return conn if os.path.isdir(conn) else None
    return None


class Mount(TemporaryMount):
    """A file system daemon on a fresh temporary mountpoint; stop() always unmounts.

    kind: "wqfs" (exactly `python -m wqfs mount -f`), "floor" (benchlib.floorfs),
    "wqfs-counted" (benchlib.counted: wqfs with its FUSE requests counted; never timed),
    "wqfs-variant" (benchlib.breakdown's daemons; never in the results tables).
    """

    READY = {"wqfs": "watch_queue", "wqfs-counted": "watch_queue", "wqfs-variant": "watch_queue", "floor": "queue"}

    def __init__(self, kind: str, *extra: str) -> None:
        if kind not in self.READY:
            raise ValueError(kind)
        self.kind = self.name = kind
        self.ready_file = self.READY[kind]
        super().__init__(extra, prefix=f"wqfs-bench-{kind}-", env=env(), cwd=ROOT, timeout=30, stop_timeout=20)

    @property
    def counts_path(self) -> str:
        return os.path.join(self.dir, "counts.json")

    def command(self) -> list[str]:
        if self.kind == "wqfs-counted":
            return [PYTHON, "-m", "benchlib.counted", self.path, "--counts", self.counts_path, *self.options]
        if self.kind == "floor":
            return [PYTHON, "-m", "benchlib.floorfs", self.path, "--counts", self.counts_path, *self.options]
        if self.kind == "wqfs-variant":
            return [PYTHON, "-m", "benchlib.breakdown", "daemon", self.path, *self.options, self.counts_path]
        return super().command()

    def snapshot(self) -> dict:
        """The request counts so far (a counting daemon writes them on SIGUSR1)."""
        try:
            os.unlink(self.counts_path)
        except FileNotFoundError:
            pass
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.counts_path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} wrote no counts")
            time.sleep(0.01)
        with open(self.counts_path) as f:
            return json.load(f)

    def stop(self) -> Optional[dict]:  # type: ignore[override]
        """Unmount; returns the request counts a counting daemon wrote, if any."""
        self.end()
        counts = None
        try:
            with open(self.counts_path) as f:
                counts = json.load(f)
        except (OSError, ValueError):
            pass
        self.remove()
        return counts

    def stuck(self) -> None:
        """Abort this mount's own FUSE connection (a daemon stuck in exit, or dead)."""
        conn = fuse_connection(self.path)
        if conn is not None:
            try:
                with open(os.path.join(conn, "abort"), "w") as f:
                    f.write("1")
            except OSError:
                pass

    def __enter__(self) -> "Mount":
        return self


class Tmpfs:
    """A private tmpfs for the inotify peer (so nothing else on the machine touches it)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="wqfs-bench-tmpfs-")
        self.mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", self.dir],
                                      capture_output=True).returncode == 0
        if not self.mounted:  # no mount permission: /dev/shm is a tmpfs too
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = tempfile.mkdtemp(prefix="wqfs-bench-", dir="/dev/shm")
        self.path = self.dir

    def stop(self) -> None:
        if self.mounted:
            subprocess.run(["umount", self.dir], capture_output=True)
            if is_mounted(self.dir):
                subprocess.run(["umount", "-l", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- helpers

def worker(*args: str, pass_fds: Sequence[int] = (), **kwargs) -> subprocess.Popen:
    """A benchlib.workers process (a real process: its own interpreter, its own FUSE requests)."""
    return subprocess.Popen([PYTHON, "-m", "benchlib.workers", *args], env=env(), cwd=ROOT,
                            pass_fds=tuple(pass_fds), stdout=subprocess.PIPE, start_new_session=True, **kwargs)


def communicate(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bytes]:
    """communicate(), but on a timeout the whole process group goes (a grandchild keeping the
    pipes open must not hang the bench), and the timeout is raised."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.communicate(timeout=30)
        raise


def result_of(proc: subprocess.Popen, timeout: float = 300) -> dict:
    """The JSON line a worker prints last."""
    out, _ = communicate(proc, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {proc.args} failed with {proc.returncode}: {out[-2000:]!r}")
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


PROFILE_DIR: Optional[str] = None  # set by --profile: daemons are sampled with py-spy while measured


def profiling(pid: int, name: str):
    """py-spy on pid while the block runs, when --profile asked for it (else nothing)."""
    import contextlib
    if PROFILE_DIR is None:
        return contextlib.nullcontext()
    from .profiles import Profiler
    os.makedirs(PROFILE_DIR, exist_ok=True)
    return Profiler(pid, os.path.join(PROFILE_DIR, name))


def log(message: str) -> None:
    one, five, _ = loadavg()
    print(f"[{time.strftime('%H:%M:%S')} load {one:.2f}] {message}", flush=True)
