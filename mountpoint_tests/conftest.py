"""Fixtures: a real wqfs daemon on a temporary mountpoint, always unmounted afterwards."""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from typing import Iterator

import pytest

from wqfs.harness import TemporaryMount
from wqfs.mounts import force_unmount, is_mounted  # noqa: F401 (tests import them from here)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GC_DELAY = 1.0  # seconds revoked/expired keys linger in the test daemon (kernel: 300)


class Daemon(TemporaryMount):
    """The suite's `wqfs mount -f` (--allow-other unless told, a short GC delay); its log is kept
    for failing tests."""

    def __init__(self, *extra: str, allow_other: bool = True) -> None:
        super().__init__([*(["--allow-other"] if allow_other else []), "--gc-delay", str(GC_DELAY), *extra],
                         prefix="wqfs-test-", cwd=ROOT)


@contextlib.contextmanager
def stopped_after(d: Daemon) -> Iterator[Daemon]:
    """d for the block; then stopped, and no internal error may be in its log."""
    try:
        yield d
    finally:
        d.stop()
        assert "internal error" not in d.log(), d.log()


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    with stopped_after(Daemon()) as d:
        yield d


@pytest.fixture
def own_daemon() -> Iterator[Daemon]:
    """A daemon of the test's own: a test that froze or limited it does so to nobody else."""
    with stopped_after(Daemon()) as d:
        yield d


@pytest.fixture
def mnt(daemon: Daemon) -> Iterator[str]:
    """The mountpoint; each test also checks that the daemon survived it."""
    start = len(daemon.log())
    yield daemon.path
    assert daemon.alive, f"the daemon died: {daemon.log()}"
    assert "internal error" not in daemon.log()[start:], daemon.log()[start:]


@pytest.fixture
def ring(mnt: str) -> Iterator[str]:
    """A fresh keyring in the session keyring, so that tests do not see each other's records."""
    path = os.path.join(mnt, "@s", f"keyring:t-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    yield path
    try:
        os.rmdir(path)
    except OSError:
        pass


def serial(path: str) -> int:
    """A key's serial is its inode number's low 32 bits (and its xattr)."""
    return int(os.getxattr(path, "user.keyctl.serial"))


# ---- helpers shared by the mount tests (test_tree, test_queue, test_events, ...) ----

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
WAIT = 15.0  # generous upper bound for asynchronous things (GC, a subprocess starting)


def rec(record) -> tuple:
    """A record as a comparable tuple: ("key", subtype, key_id, aux, tag), ("removal", id, tag), ("loss",)."""
    from wqfs.records import KeyNotification, Loss, Removal
    if isinstance(record, KeyNotification):
        return ("key", record.subtype, record.key_id, record.aux, record.tag)
    if isinstance(record, Removal):
        return ("removal", record.id, record.tag)
    if isinstance(record, Loss):
        return ("loss",)
    return ("other", record)


def drain(queue) -> list:
    """Every record readable now from a non-blocking Queue, as tuples."""
    out = []
    while True:
        try:
            records = queue.read()
        except BlockingIOError:
            return out
        assert records, "a watch_queue read returned EOF"
        out.extend(rec(r) for r in records)


def wait_records(queue, count: int, timeout: float = WAIT) -> list:
    """Poll and read until at least count records have arrived (or the timeout passes)."""
    import select
    out: list = []
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(queue.fileno(), select.POLLIN)
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if poller.poll(int(min(left, 0.5) * 1000)):
            out.extend(drain(queue))
    return out


def write_key(path: str, payload: bytes) -> None:
    """open(O_CREAT|O_TRUNC) + write + close: add_key for a new name, update for an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, payload)
    finally:
        os.close(fd)


def sh(command: str, *, nobody: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    argv = (NOBODY if nobody else []) + ["sh", "-c", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")


def wait_blocked_in_read(pid: int, timeout: float = WAIT, syscall_nr: str = "0") -> None:
    """Wait until the task sits in read(2) (or syscall_nr) on a FUSE request the daemon has not answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                wchan = f.read().strip()
            with open(f"/proc/{pid}/syscall") as f:
                syscall = f.read().split()
        except OSError:
            raise AssertionError(f"process {pid} went away before blocking")
        if wchan == "request_wait_answer" and syscall and syscall[0] == syscall_nr:
            time.sleep(0.05)  # the daemon has the request; let it reach its wait
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never blocked in read (wchan {wchan!r}, syscall {syscall[:1]})")


def read_line(stream, timeout: float = WAIT) -> str:
    """One line from a subprocess pipe, or '' if none came in time."""
    import select
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace")


@pytest.fixture
def queues(mnt: str) -> Iterator:
    """Open non-blocking queues on MOUNT/watch_queue (size 256 unless told); all closed afterwards."""
    from wqfs.client import Queue
    opened = []

    def make(size=256, nonblock: bool = True):
        q = Queue(mnt, size=size, nonblock=nonblock)
        opened.append(q)
        return q

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def make_ring(mnt: str) -> Iterator:
    """More fresh keyrings in @s, like `ring`; removed afterwards."""
    made = []

    def make() -> str:
        path = os.path.join(mnt, "@s", f"keyring:t-{uuid.uuid4().hex[:12]}")
        os.mkdir(path)
        made.append(path)
        return path

    yield make
    for path in made:
        try:
            os.rmdir(path)
        except OSError:
            pass


@pytest.fixture
def procs() -> Iterator[list]:
    """Subprocesses a test starts; any still running at the end are killed (by pid)."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()
