"""A crowd of blocked readers: COUNT threads, each blocked in read() on a queue of its own.

Run as a program (by whichever user should own the crowd; it needs only the standard library):

    python3 crowd.py MOUNTPOINT COUNT

It prints "ready" once every thread has been started and stays until its stdin closes. Used by
scripts/bench-hostile and by mountpoint_tests/test_hostile_readers.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Sequence

PATH = os.path.abspath(__file__)


def blocked_in_fuse(pid: int) -> int:
    """How many of pid's threads wait for a FUSE answer (request_wait_answer)."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                count += f.read().strip() == "request_wait_answer"
        except OSError:
            pass
    return count


def start(mountpoint: str, count: int, as_user: Sequence[str] = (), timeout: float = 120) -> "subprocess.Popen[str]":
    """The crowd, run as as_user (a setpriv prefix) by /usr/bin/python3, once every one of its
    readers waits in the daemon (or timeout passes: the caller checks blocked_in_fuse)."""
    proc = subprocess.Popen(list(as_user) + ["sh", "-c", f"ulimit -n {count + 64} && exec /usr/bin/python3 "
                                             f"{PATH} {mountpoint} {count}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.wait()
        raise RuntimeError("the crowd did not start")
    deadline = time.monotonic() + timeout
    while blocked_in_fuse(proc.pid) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc


def main(mountpoint: str, count: int) -> None:
    fds = []
    for _ in range(count):
        fd = os.open(os.path.join(mountpoint, "watch_queue"), os.O_RDWR)
        os.write(fd, b"size 1")
        fds.append(fd)
    for fd in fds:
        threading.Thread(target=os.read, args=(fd, 4096), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
