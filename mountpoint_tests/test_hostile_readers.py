"""Blocked readers: whoever reads a queue file, however it got the fd, a signal ends its read at
once and consumes nothing; and any number of blocked readers leave the daemon to everyone else."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import NOBODY, PYTHON, ROOT, WAIT, wait_blocked_in_read, write_key


# Reads the fd it is given (argv[1]) in the way argv[2] says, printing what it got.
READER = r"""
import os, socket, sys, threading
fd, how = int(sys.argv[1]), sys.argv[2]
if how == "dup":
    fd = os.dup(fd)
elif how == "unix":  # the fd crosses a unix socket and is read by the receiver only
    a, b = socket.socketpair()
    socket.send_fds(a, [b"x"], [fd])
    os.close(fd)
    _, fds, _, _ = socket.recv_fds(b, 1, 1)
    fd = fds[0]
elif how == "thread":  # a thread that did not open the file reads it
    t = threading.Thread(target=lambda: print("got", len(os.read(fd, 4096)), flush=True))
    t.start()
    t.join()
    sys.exit(0)
print("got", len(os.read(fd, 4096)), flush=True)
"""


def _queue(mnt: str, ring: str) -> int:
    fd = os.open(os.path.join(mnt, "watch_queue"), os.O_RDWR)
    os.write(fd, b"size 32")
    os.write(fd, f"watch {os.getxattr(ring, 'user.keyctl.serial').decode()} 7".encode())
    return fd


def _end(proc: subprocess.Popen, ring: str) -> None:
    """Kill a reader that is still there; one stuck in the daemon (old code) a record sets free."""
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            write_key(os.path.join(ring, "user:release"), b"v")
            proc.wait(WAIT)
    proc.stdout.close()
    proc.stderr.close()


def _reader_tid(proc: subprocess.Popen, how: str) -> int:
    """The thread that will sit in read(): the process, or its second thread."""
    if how != "thread":
        return proc.pid
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        tasks = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        if tasks:
            return tasks[0]
        time.sleep(0.02)
    raise AssertionError("the reader thread never started")


@pytest.mark.parametrize("as_nobody", [False, True], ids=["root", "nobody"])
@pytest.mark.parametrize("how", ["inherited", "dup", "unix", "thread"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["INT", "TERM", "KILL"])
def test_signal_ends_any_readers_read_and_consumes_nothing(mnt, ring, how, signum, as_nobody):
    fd = _queue(mnt, ring)
    try:
        argv = (NOBODY if as_nobody else []) + [PYTHON, "-c", READER, str(fd), how]
        proc = subprocess.Popen(argv, pass_fds=(fd,), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd="/")
        try:
            tid = _reader_tid(proc, how)
            wait_blocked_in_read(tid)
            start = time.monotonic()
            os.kill(proc.pid, signum)
            proc.wait(WAIT)
            assert time.monotonic() - start < 5, "the read outlived its signal"
            assert b"got" not in proc.stdout.read()
        finally:
            _end(proc, ring)
        # The record posted after the reader died is still there for the queue's owner.
        write_key(os.path.join(ring, "user:after"), b"v")
        data = os.read(fd, 4096)
        assert len(data) == 16 and data[8:12] == int(os.getxattr(ring, "user.keyctl.serial")).to_bytes(4, "little")
    finally:
        os.close(fd)
    assert os.listdir(mnt)  # the daemon still serves


def test_sigint_with_a_handler_gives_eintr_to_a_forked_reader(mnt, ring):
    """A reader that catches the signal sees EINTR (pipe_read's ERESTARTSYS without SA_RESTART)."""
    fd = _queue(mnt, ring)
    # Python retries a read that got EINTR unless the handler raises: this one does.
    script = ("import os, signal, sys\n"
              "def handler(*args):\n    raise RuntimeError('signal')\n"
              "signal.signal(signal.SIGINT, handler)\n"
              "try:\n    os.read(int(sys.argv[1]), 4096)\n    print('data')\n"
              "except RuntimeError:\n    print('EINTR')\n"
              "sys.stdout.flush()\n"
              "print('then', len(os.read(int(sys.argv[1]), 4096)))\n")
    proc = subprocess.Popen([PYTHON, "-c", script, str(fd)], pass_fds=(fd,), stdout=subprocess.PIPE, text=True)
    try:
        wait_blocked_in_read(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "EINTR"
        wait_blocked_in_read(proc.pid)  # reading again: the record goes to this read
        write_key(os.path.join(ring, "user:k"), b"v")
        out, _ = proc.communicate(timeout=WAIT)
        assert out.strip() == "then 16"
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(fd)


# nobody's 1100 threads, each blocked in read() on a queue of its own (more than the 1000 pyfuse3
# workers the daemon used to have): root's stat must still be answered.
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from benchlib import crowd  # noqa: E402


def test_a_thousand_blocked_readers_do_not_starve_other_users(mnt):
    count = 1100
    proc = crowd.start(mnt, count, NOBODY, timeout=60)
    try:
        assert crowd.blocked_in_fuse(proc.pid) >= count
        # root is served while every one of them waits (a hung daemon would hang this thread)
        result: list = []
        worker = threading.Thread(target=lambda: result.append(os.stat(os.path.join(mnt, "@s"))), daemon=True)
        worker.start()
        worker.join(WAIT)
        assert result, "root's stat was not answered while nobody's readers waited"
        os.listdir(os.path.join(mnt, "keys"))
    finally:
        proc.kill()
        proc.wait(WAIT)
        proc.stdin.close()
        proc.stdout.close()
    assert os.listdir(mnt)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["INT", "KILL"])
def test_a_signal_ends_a_passed_events_files_read(mnt, ring, signum):
    """The text event files are queues too: a reader that got the fd over a unix socket."""
    fd = os.open(os.path.join(mnt, "events", os.getxattr(ring, "user.keyctl.serial").decode()), os.O_RDONLY)
    try:
        proc = subprocess.Popen(NOBODY + [PYTHON, "-c", READER, str(fd), "unix"], pass_fds=(fd,),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        try:
            wait_blocked_in_read(proc.pid)
            os.kill(proc.pid, signum)
            proc.wait(WAIT)
            assert b"got" not in proc.stdout.read()
        finally:
            _end(proc, ring)
        write_key(os.path.join(ring, "user:after"), b"v")
        line = os.read(fd, 4096).decode()
        assert line.split()[1:] == ["link", str(serial_of(ring, "user:after"))], line
    finally:
        os.close(fd)
    assert os.listdir(mnt)


def serial_of(ring: str, name: str) -> int:
    return int(os.getxattr(os.path.join(ring, name), "user.keyctl.serial"))
