"""The CLI against hostile circumstances: a reader blocking the unmount, a daemon killed with
SIGKILL, another user asking to unmount, the liveness probe, a signal racing the program's exit.

Each test starts daemons of its own (helpers.Daemon) where it stops or kills them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

from helpers import NOBODY, ROOT, WAIT, Daemon, wait_blocked_in_read

from wqfs.mounts import is_mounted

BOUND = 10.0  # seconds an unmount, and the end of a woken reader, may take


def wqfs(*args: str, nobody: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run((NOBODY if nobody else []) + [sys.executable, "-m", "wqfs", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert "Traceback" not in text
    return text


@pytest.fixture(scope="module")
def verbose() -> Iterator[Daemon]:
    """A daemon logging every request (the hand-over failure was logged at INFO)."""
    d = Daemon("-v")
    try:
        yield d
    finally:
        d.stop()


READER = """
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, b"size 32")
try:
    data = os.read(fd, 4096)
except OSError as error:
    print("error", errno.errorcode.get(error.errno, error.errno), flush=True)
    sys.exit(0)
print("read", len(data), flush=True)
sys.exit(3)
"""


def test_unmount_wakes_a_blocked_reader_and_unmounts():
    d = Daemon()
    reader = None
    try:
        reader = subprocess.Popen([sys.executable, "-c", READER, os.path.join(d.path, "watch_queue")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_blocked_in_read(reader.pid)
        start = time.monotonic()
        result = wqfs("unmount", d.path, timeout=BOUND + 5)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert time.monotonic() - start < BOUND
        assert not is_mounted(d.path)
        out, err = reader.communicate(timeout=BOUND)  # its read ended: no hang
        assert reader.returncode == 0, (out, err)
        assert out.startswith("error "), out
        assert d.proc.wait(timeout=BOUND) == 0  # the daemon ended with its mount
        assert "Traceback" not in d.log(), d.log()
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()  # it ends once the daemon answers the interrupt, or goes
        d.stop()
        if reader is not None:
            reader.communicate(timeout=BOUND)


def test_a_killed_daemon_leaves_a_mount_that_mount_explains_and_unmount_clears():
    d = Daemon()
    try:
        d.proc.kill()
        d.proc.wait()
        assert is_mounted(d.path)
        with pytest.raises(OSError):  # ENOTCONN: what a stat of a dead FUSE mountpoint says
            os.stat(d.path)
        hint = f"wqfs: {d.path} is a dead wqfs mount (its daemon stopped): run `wqfs unmount {d.path}` first\n"
        for args in (["mount", "-f"], ["mount"]):
            result = wqfs(*args, d.path)
            assert result.returncode == 1, result
            assert one_line(result.stderr) == hint
        assert is_mounted(d.path)
        result = wqfs("unmount", d.path, timeout=BOUND + 5)
        assert result.returncode == 0, result.stderr
        assert not is_mounted(d.path)
        assert os.path.isdir(d.path)  # the directory is back
        result = wqfs("unmount", d.path)
        assert result.returncode == 1 and one_line(result.stderr) == f"wqfs: {d.path} is not mounted\n"
    finally:
        d.stop()


def test_unmount_of_a_missing_path_says_it_does_not_exist():
    result = wqfs("unmount", "/nonexistent/wqfs-mountpoint")
    assert result.returncode == 1
    assert one_line(result.stderr) == "wqfs: /nonexistent/wqfs-mountpoint does not exist\n"


def test_another_user_may_not_unmount_and_the_daemon_keeps_serving(verbose):
    result = wqfs("unmount", verbose.path, nobody=True)
    assert result.returncode == 1
    assert one_line(result.stderr) == (f"wqfs: cannot unmount {verbose.path}: "
                                       f"only uid 0, who mounted it, or root may unmount it\n")
    time.sleep(0.2)
    assert verbose.alive and is_mounted(verbose.path)
    assert "watch_queue" in os.listdir(verbose.path)
    with open(os.path.join(verbose.path, "watch_queue"), "r+b", buffering=0) as queue:
        queue.write(b"size 32")


def test_run_leaves_no_hand_over_failure_in_the_log(verbose):
    start = len(verbose.log())
    for _ in range(3):
        result = wqfs("run", "--mount", verbose.path, "--", "true")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    time.sleep(0.3)  # the daemon has handled the probes by now
    log = verbose.log()[start:]
    assert "hand-over failed" not in log and "Broken pipe" not in log, log
    assert verbose.alive


def _running(pid: int) -> bool:
    """Not a zombie (an orphan's is reaped by init, whenever it gets to it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _running(pid)


def test_a_signal_forwarded_as_the_program_exits_prints_no_traceback(verbose, tmp_path):
    """The program starts a loop that sends SIGTERM after SIGTERM to `wqfs run` (its parent),
    and exits: the signals land while `wqfs run` reaps it, and after, until the default action
    ends `wqfs run` (or it returned the program's status first) and the loop's kill fails."""
    flood = ('p=$PPID; sh -c \'echo $$ > "$1"; while kill -TERM "$0" 2>/dev/null; do :; done\' '
             '"$p" "$0" </dev/null >/dev/null 2>&1 & exit 0')
    for i in range(20):
        pidfile = tmp_path / f"flood{i}"
        proc = subprocess.Popen([sys.executable, "-m", "wqfs", "run", "--mount", verbose.path, "--",
                                 "sh", "-c", flood, str(pidfile)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=WAIT)
            err = err.decode(errors="replace")
            assert "Traceback" not in err, err
            assert err == ""
            assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (proc.returncode, err)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=WAIT)
            deadline = time.monotonic() + WAIT
            while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
                time.sleep(0.01)
            loop = int(pidfile.read_text() or 0) if pidfile.exists() else 0
            if loop and not _gone(loop, WAIT):  # its kill fails once `wqfs run` is reaped
                os.kill(loop, signal.SIGKILL)
                raise AssertionError("the SIGTERM loop outlived `wqfs run`")


@pytest.mark.parametrize("how", ["SIGTERM", "unmount"])
def test_a_reader_sees_one_clear_end_when_the_daemon_stops(how):
    """cat of an events file prints one line that says the mount is gone, and exits: no second
    error from its close (the daemon still answers the FLUSH), nothing hangs."""
    d = Daemon()
    try:
        cat = subprocess.Popen(["cat", os.path.join(d.path, "events", "@us")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/")
        try:
            wait_blocked_in_read(cat.pid)
            if how == "SIGTERM":
                d.proc.send_signal(signal.SIGTERM)
            else:
                assert wqfs("unmount", d.path).returncode == 0
            _, err = cat.communicate(timeout=WAIT)
            assert cat.returncode == 1
            assert err.strip().splitlines() == [f"cat: {d.path}/events/@us: Transport endpoint is not connected"]
        finally:
            if cat.poll() is None:
                cat.kill()
                cat.wait()
        assert d.proc.wait(WAIT) == 0
    finally:
        d.stop()
