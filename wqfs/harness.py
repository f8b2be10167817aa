"""A daemon on a temporary mountpoint, for as long as its caller needs one, and never a mount left behind.

The one harness behind the suite's fixtures (mountpoint_tests/helpers.py `Daemon`), the
private daemon of `wqfs run` (wqfs/syscalls/run.py `PrivateDaemon`) and the benchmarks'
mounts (scripts/benchlib/common.py `Mount`, whose variant daemons override command()).
`wqfs run` imports it at run time: the standard library and wqfs.mounts only, here.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Callable, Mapping, Optional, Sequence

from .mounts import force_unmount, is_mounted


class NotMounted(RuntimeError):
    """The daemon died, or was not ready in time. detail is one line for a message; log is all it said."""

    def __init__(self, name: str, detail: str, log: str) -> None:
        super().__init__(f"{name} did not mount: {detail}")
        self.detail = detail
        self.log = log


class TemporaryMount:
    """`python -m wqfs mount -f [options] DIR/mnt` in a fresh DIR, ready once constructed;
    stop() ends it (SIGTERM, then SIGKILL), unmounts whatever it left, and removes DIR.

    Subclasses say what runs (command()) and what "ready" means (ready(); by default that
    ready_file exists in the mount). The daemon's stdout and stderr go to DIR/log_name, or,
    with log_name None, to an unnamed file: DIR then holds the mountpoint alone, so that a
    daemon may remove its own directory (`--remove-mountpoint`).
    """

    name = "wqfs"  # what the error messages call it
    ready_file = "watch_queue"

    def __init__(self, options: Sequence[str] = (), *, prefix: str = "wqfs-", mode: int = 0o755,
                 log_name: Optional[str] = "daemon.log", env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None, start_new_session: bool = True,
                 preexec_fn: Optional[Callable[[], None]] = None,
                 timeout: float = 20.0, stop_timeout: float = 10.0) -> None:
        self.options = list(options)
        self.stop_timeout = stop_timeout
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, mode)
        self.path = os.path.join(self.dir, "mnt")
        os.mkdir(self.path)
        self.log_path = os.path.join(self.dir, log_name) if log_name else None
        self._log: IO[bytes] = open(self.log_path, "w+b") if self.log_path else tempfile.TemporaryFile()
        self._final_log: Optional[str] = None
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                         start_new_session=start_new_session, preexec_fn=preexec_fn)
        except BaseException:
            self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self._wait_ready(timeout)

    def command(self) -> list[str]:
        """The daemon's argv; it must serve self.path."""
        return [sys.executable, "-m", "wqfs", "mount", "-f", *self.options, self.path]

    def ready(self) -> bool:
        """Whether the daemon serves its mount yet (polled until the deadline)."""
        return os.path.exists(os.path.join(self.path, self.ready_file))

    def stuck(self) -> None:
        """Called where the daemon would not end on SIGTERM, or died unclean: nothing by default."""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            died = self.proc.poll() is not None
            if not died and time.monotonic() <= deadline:
                time.sleep(0.05)
                continue
            why = f"it exited with status {self.proc.returncode}" if died else f"not ready after {timeout:g} s"
            self.stop()
            log = self.log()
            lines = [line.strip() for line in log.splitlines() if line.strip()]
            last = lines[-1] if lines else ""
            detail = (last or why) if died else (f"{why} ({last})" if last else why)
            raise NotMounted(self.name, detail, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """All the daemon has written so far (kept after stop(), when its file is gone)."""
        if self._final_log is not None:
            return self._final_log
        fd = self._log.fileno()
        chunks = []
        offset = 0
        while True:
            chunk = os.pread(fd, 1 << 20, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode(errors="replace")

    def end(self) -> None:
        """End the daemon and its mount, but keep DIR (for what the daemon wrote there)."""
        if self._final_log is not None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.stuck()
                self.proc.kill()
                try:
                    self.proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    pass
        elif self.proc.returncode not in (0, -signal.SIGTERM):
            self.stuck()  # it died: whatever still waits on this mount must not hang
        force_unmount(self.path)
        self._final_log = self.log()
        self._log.close()

    def remove(self) -> None:
        """Remove DIR, unless something is still mounted in it (rmtree would reach into the mount)."""
        if not is_mounted(self.path):
            shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self) -> None:
        """end() and remove(); doing it again does nothing."""
        self.end()
        self.remove()

    def __enter__(self) -> "TemporaryMount":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
