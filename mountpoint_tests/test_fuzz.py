"""Random, mostly wrong, file operations on a mount of its own (treefuzz.py): every one is
answered with an errno or done, and the daemon keeps serving, for root and for nobody.

(The syscall front has its fuzzer too: test_run.py runs c/wq_fuzz.c under `wqfs run`.)
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import NOBODY, Daemon

FUZZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "treefuzz.py")


@pytest.mark.parametrize("seed,user", [(1, "root"), (2, "root"), (3, "nobody")])
def test_random_file_operations_never_break_the_daemon(seed, user):
    fuzzed = Daemon()
    try:
        argv = (NOBODY if user == "nobody" else []) + [sys.executable, FUZZER, fuzzed.path, str(seed), "4000"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].startswith("done "), result.stdout
        assert "PY " not in result.stdout, result.stdout
        assert fuzzed.alive, fuzzed.log()
        assert "internal error" not in fuzzed.log(), fuzzed.log()
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
