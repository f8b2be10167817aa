"""Fixtures: a real wqfs daemon on a temporary mountpoint, always unmounted afterwards."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GC_DELAY = 1.0  # seconds revoked/expired keys linger in the test daemon (kernel: 300)


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def force_unmount(path: str) -> None:
    if is_mounted(path):
        tool = shutil.which("fusermount3") or "fusermount"
        subprocess.run([tool, "-u", "-z", path], capture_output=True)
    if is_mounted(path):
        subprocess.run(["umount", "-l", path], capture_output=True)


class Daemon:
    """A `wqfs mount -f` subprocess; its log is kept for failing tests."""

    def __init__(self, *extra: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="wqfs-test-")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "mnt")
        os.mkdir(self.path)
        self.log_path = os.path.join(self.dir, "daemon.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wqfs", "mount", "-f", "--allow-other", "--gc-delay", str(GC_DELAY),
             *extra, self.path],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(self.path, "watch_queue")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"wqfs did not mount: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        force_unmount(self.path)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    d = Daemon()
    try:
        yield d
    finally:
        d.stop()
        assert "Traceback" not in d.log() or "internal error" not in d.log(), d.log()


@pytest.fixture
def mnt(daemon: Daemon) -> Iterator[str]:
    """The mountpoint; each test also checks that the daemon survived it."""
    yield daemon.path
    assert daemon.alive, f"the daemon died: {daemon.log()}"
    assert "internal error" not in daemon.log(), daemon.log()


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
