"""Fixtures: a real wqfs daemon on a temporary mountpoint, always unmounted afterwards; and for
the core unit tests, an emulated kernel on a fake clock. Helpers live in helpers.py (the mount
tests) and corelib.py (the core tests); test files import from there, never from here."""
from __future__ import annotations

import os
import subprocess
import uuid
from typing import TYPE_CHECKING, Iterator

import pytest

from helpers import Daemon, stopped_after

if TYPE_CHECKING:
    from corelib import Clock
    from wqfs.kernel import Kernel, WatchQueue


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


# ---------------------------------------------------------------- the core unit tests (no FUSE)
# corelib is imported in the fixtures, not here: it imports core internals whose paths move
# during a reorganisation, and that should break the core tests only, not the mount tests.

@pytest.fixture
def clock() -> Clock:
    """The kernel's time, advanced by hand: expiry and the GC delay without sleeping."""
    from corelib import Clock
    return Clock()


@pytest.fixture
def kernel(clock: Clock) -> Kernel:
    """A Kernel on the fake clock with the kernel's GC delay and a fixed serial seed."""
    from corelib import new_kernel
    return new_kernel(clock)


@pytest.fixture
def q() -> WatchQueue:
    """A WatchQueue sized 256 (the size watch_test.c and LTP use). test_errors.py has its own q."""
    from corelib import new_queue
    return new_queue()
