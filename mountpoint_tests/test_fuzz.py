"""Random, mostly wrong, file operations on a mount of its own (treefuzz.py): every one is
answered with an errno or done, and the daemon keeps serving, for root and for nobody. Among
them: queue and events fds passed to other processes (over a unix socket, by fork, by exec),
which write commands, read until their own signal or without blocking, and close; and bursts
of hundreds of concurrent openers, some of them nobody's (WQFS_FUZZ_OPENERS=5000 for a manual
run with thousands; WQFS_FUZZ_SEEDS=4-40 for more seeds).

(The syscall front has its fuzzer too: test_run.py runs c/wq_fuzz.c under `wqfs run`.)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest

from helpers import NOBODY, Daemon

FUZZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "treefuzz.py")
OPERATIONS = 4000
OPENERS = int(os.environ.get("WQFS_FUZZ_OPENERS", "300"))  # per burst; two bursts a run
LIMIT = 180  # seconds for one run; treefuzz itself reports a stuck child or burst within 25 s


def seeds() -> list[tuple[int, str]]:
    """Seeds 1 and 2 as root and 3 as nobody; WQFS_FUZZ_SEEDS=A-B for a manual sweep (every
    third seed as nobody)."""
    spec = os.environ.get("WQFS_FUZZ_SEEDS")
    if not spec:
        return [(1, "root"), (2, "root"), (3, "nobody")]
    first, _, last = spec.partition("-")
    return [(seed, "nobody" if seed % 3 == 0 else "root") for seed in range(int(first), int(last or first) + 1)]


def run_treefuzz(mnt: str, seed: int, user: str) -> tuple[int, str, str]:
    """treefuzz.py under its own session: (status, stdout, stderr). Output goes to files, not
    pipes: a child stuck in a request the daemon never answers cannot die, and would hold a
    pipe open (it goes once the daemon stops and its mount is gone). A run past LIMIT is
    killed (its process group) and fails the test."""
    argv = (NOBODY if user == "nobody" else []) + [sys.executable, FUZZER, mnt, str(seed), str(OPERATIONS),
                                                   str(OPENERS)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        status = None
        try:
            status = proc.wait(LIMIT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if status is None:  # not reaped: the group is still ours
                os.killpg(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status is None:
        pytest.fail(f"treefuzz seed {seed} as {user} did not finish in {LIMIT} s:\n{stdout}\n{stderr}")
    return status, stdout, stderr


@pytest.mark.parametrize("seed,user", seeds())
def test_random_file_operations_never_break_the_daemon(seed, user):
    fuzzed = Daemon()
    try:
        status, out, err = run_treefuzz(fuzzed.path, seed, user)
        log = fuzzed.log()
        assert status == 0, f"seed {seed} as {user}, status {status}:\n{out}\n{err}\n{log[-4000:]}"
        lines = out.splitlines()
        assert lines[-1].startswith("done "), out
        assert "PY " not in out, f"seed {seed} as {user}:\n{out}"
        assert sum(line.startswith(f"burst of {OPENERS} ") for line in lines) == 2, out
        assert any(line.startswith("fd passes: ") and "socket=" in line for line in lines), out
        assert fuzzed.alive, log
        assert "internal error" not in log, log
        # still serving (the fuzz may have restricted or revoked any keyring: no keys here)
        fd = os.open(os.path.join(fuzzed.path, "watch_queue"), os.O_RDWR | os.O_NONBLOCK)
        try:
            assert os.write(fd, b"size 4") == 6
            with pytest.raises(BlockingIOError):
                os.read(fd, 4096)
        finally:
            os.close(fd)
        os.listdir(os.path.join(fuzzed.path, "keys"))  # raises if the tree stopped answering
    finally:
        fuzzed.stop()
