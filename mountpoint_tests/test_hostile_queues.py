"""Hostile queues (issue item 4): an unprivileged user's queues are charged to its pipe-buffer pages,
as the kernel charges notification pipes (alloc_pipe_info, watch_queue_set_size), so that nobody
cannot make the daemon hold 10,000 queues of 512 notes.

The tests lower the host's /proc/sys/fs/pipe-user-pages-soft (and once -hard) for a moment, always
restored, and use a daemon of their own, whose accounting starts at zero. The real kernel would also count nobody's
real pipes against that sysctl; wqfs's count is its own (per daemon) and sees only its queues, so
the numbers below are exact whatever else nobody has open.
"""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from typing import Iterator

import pytest

from helpers import NOBODY, PYTHON, WAIT, Daemon

from wqfs.callers import CallerTable

SOFT = 64  # pages: four default (16-page) pipes fit; the fifth and later get 2 pages
QUEUES = 6
LIMITED = "ok ok ok ok 1 1"  # `size 512` on each: 16 pages is no growth for the first four

PROBE = r"""
import os, sys
mnt, count = sys.argv[1], int(sys.argv[2])
fds, out = [], []
for _ in range(count):
    fd = os.open(mnt + "/watch_queue", os.O_RDWR | os.O_NONBLOCK)
    fds.append(fd)
    try:
        os.write(fd, b"size 512")
        out.append("ok")
    except OSError as error:
        out.append(str(error.errno))
print(" ".join(out))
if "1" in out:  # a refused (2-page) queue still takes a size of one page
    try:
        os.write(fds[out.index("1")], b"size 32")
        print("small ok")
    except OSError as error:
        print("small", error.errno)
    try:  # events/ is pipe2 + SET_SIZE(256): 8 pages, refused past the soft limit too
        os.close(os.open(mnt + "/events/@u", os.O_RDONLY | os.O_NONBLOCK))
        print("events ok")
    except OSError as error:
        print("events", error.errno)
"""


@pytest.fixture
def private(own_daemon: Daemon) -> Daemon:
    return own_daemon


@contextlib.contextmanager
def sysctl(name: str, value: int) -> Iterator[None]:
    """/proc/sys/fs/NAME set to value inside the block only: the host's value comes back always."""
    path = f"/proc/sys/fs/{name}"
    if os.geteuid() != 0:
        pytest.skip(f"needs root to change fs.{name}")
    with open(path) as f:
        old = f.read().strip()
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as error:
        pytest.skip(f"cannot write {path}: {error}")
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)


@pytest.fixture
def soft_limit(private: Daemon) -> Iterator[int]:
    """pipe-user-pages-soft lowered to SOFT for the test only."""
    with sysctl("pipe-user-pages-soft", SOFT):
        yield SOFT


def probe(mnt: str, *prefix: str) -> list[str]:
    result = subprocess.run(NOBODY + list(prefix) + [PYTHON, "-c", PROBE, mnt, str(QUEUES)],
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def probe_until_limited(mnt: str, *prefix: str) -> list[str]:
    """The probe, again until its first queues get 16 pages: the previous probe's queues are
    released (and refunded) by FUSE asynchronously after that process exits."""
    deadline = time.monotonic() + WAIT
    while True:
        lines = probe(mnt, *prefix)
        if lines[0] == LIMITED or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_nobody_is_held_to_the_soft_limit_and_gets_its_pages_back(private, soft_limit):
    mnt = private.path
    assert probe(mnt) == [LIMITED, "small ok", "events 1"]
    # the queues of that process are closed: all of its pages came back, the same holds again
    assert probe_until_limited(mnt) == [LIMITED, "small ok", "events 1"]

    # root (CAP_SYS_ADMIN) is counted but not limited: 8 pipes of 16 pages, each sized 512
    fds = [os.open(os.path.join(mnt, "watch_queue"), os.O_RDWR | os.O_NONBLOCK) for _ in range(8)]
    try:
        for fd in fds:
            os.write(fd, b"size 512")
        os.close(os.open(os.path.join(mnt, "events", "@u"), os.O_RDONLY | os.O_NONBLOCK))
    finally:
        for fd in fds:
            os.close(fd)

    # the daemon still serves root
    path = os.path.join(mnt, "@s", "user:after-hostile")
    with open(path, "wb") as f:
        f.write(b"still here")
    with open(path, "rb") as f:
        assert f.read() == b"still here"
    assert private.alive


def _unshare_works() -> bool:
    try:
        return subprocess.run(NOBODY + ["unshare", "-Ur", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_capabilities_of_a_user_namespace_do_not_count(private, soft_limit):
    """unshare -Ur gives nobody a full CapEff in a namespace of its own; capable() asks the
    initial namespace (the daemon's), where nobody has none."""
    if not _unshare_works():
        pytest.skip("no unprivileged user namespaces here")
    assert probe(private.path, "unshare", "-Ur") == [LIMITED, "small ok", "events 1"]


def effective_caps(pid: int) -> int:
    return CallerTable().task(pid).caps


def test_effective_caps_reads_capeff_in_our_namespace_only(procs):
    with open("/proc/self/status") as f:
        capeff = next(line for line in f if line.startswith("CapEff:")).split()[1]
    assert effective_caps(os.getpid()) == int(capeff, 16)
    nobody = subprocess.Popen(NOBODY + ["sleep", "30"], cwd="/")
    procs.append(nobody)
    deadline = time.monotonic() + WAIT
    while effective_caps(nobody.pid) and time.monotonic() < deadline:  # until setpriv has dropped them
        time.sleep(0.02)
    assert effective_caps(nobody.pid) == 0
    if not _unshare_works():
        return
    inside = subprocess.Popen(NOBODY + ["unshare", "-Ur", "sleep", "30"], cwd="/")
    procs.append(inside)
    ours = os.readlink("/proc/self/ns/user")
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{inside.pid}/ns/user") != ours:
                break
        except OSError:
            pass
        time.sleep(0.02)
    with open(f"/proc/{inside.pid}/status") as f:
        assert int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16) != 0
    assert effective_caps(inside.pid) == 0


HARD_PROBE = r"""
import os, sys
fds = []
while len(fds) < int(sys.argv[2]):
    try:
        fds.append(os.open(sys.argv[1] + "/watch_queue", os.O_RDWR | os.O_NONBLOCK))
    except OSError as error:
        print(len(fds), error.errno)
        break
else:
    print(len(fds), "no error")
"""


def test_the_hard_limit_refuses_new_queues_with_enfile(private):
    """pipe-user-pages-hard of 4096 pages (no soft limit): 256 queues of 16 pages, then ENFILE.
    (The host's real unprivileged pipes are held to it too for this moment; 16 MiB of pipe
    buffers a user is far beyond what a test machine's users hold.)"""
    with sysctl("pipe-user-pages-soft", 0), sysctl("pipe-user-pages-hard", 4096):
        result = subprocess.run(NOBODY + ["sh", "-c", 'ulimit -n 1024 2>/dev/null; exec "$@"', "sh",
                                          PYTHON, "-c", HARD_PROBE, private.path, "300"],
                                capture_output=True, text=True, timeout=60, cwd="/")
        fds = [os.open(os.path.join(private.path, "watch_queue"), os.O_RDWR) for _ in range(300)]
        for fd in fds:  # root is not refused
            os.close(fd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["256", str(errno.ENFILE)]
