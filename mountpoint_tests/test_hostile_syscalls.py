"""Hostile programs under `wqfs run`: pointers into pages only a file system can bring in, and a
caller killed while the daemon works on its call, whose pid then goes to root. The daemon must
answer such calls as the kernel would, never freeze for anyone else, and never act as root."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

from helpers import NOBODY, NOBODY_UID, PYTHON, WAIT, Daemon, run_argv, serial, write_key
from slowfs import Slow, serving


# add_key(user, DESCRIPTION, "v", @s) with DESCRIPTION a pointer into a fresh MAP_PRIVATE mapping
# of argv[1] (not yet faulted in), in argv[2] threads at once; then describe the key.
MAPPED_DESCRIPTION = r"""
import ctypes, mmap, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
path, threads = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
def one():
    fd = os.open(path, os.O_RDONLY)
    m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(m))
    key = libc.syscall(248, b"user", ctypes.c_void_p(address), b"v", ctypes.c_size_t(1), ctypes.c_int(-3))
    if key < 0:
        os.write(1, b"error %d\n" % ctypes.get_errno())
        return
    buf = ctypes.create_string_buffer(4096)
    libc.syscall(250, 6, ctypes.c_long(key), buf, ctypes.c_size_t(4096))
    os.write(1, b"described " + buf.value + b"\n")  # one write: threads do not interleave
ts = [threading.Thread(target=one) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
"""


@pytest.fixture
def own(own_daemon: Daemon) -> Daemon:
    return own_daemon


@pytest.fixture
def slow() -> Iterator[Slow]:
    """A slow third-party FUSE mount whose reads wait (up to 60 s) until the test releases them."""
    with serving(60, "from-a-slow-server") as server:
        yield server


def _in_syscall(pid: int, number: str) -> bool:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == number
    except OSError:
        return False


def _threads_in_syscall(pid: int, number: str) -> int:
    try:
        return sum(_in_syscall(int(t), number) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _child(pid: int, comm: str = "python3") -> int:
    """The program `wqfs run` (pid) started: its child running comm (ldconfig may come first)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                for child in f.read().split():
                    with open(f"/proc/{child}/comm") as c:
                        if c.read().strip() == comm:
                            return int(child)
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{pid} started no {comm}")


def _serves(mnt: str) -> None:
    assert os.listdir(os.path.join(mnt, "keys")) is not None
    assert os.stat(os.path.join(mnt, "@s"))


@pytest.mark.parametrize("as_nobody", [False, True], ids=["root", "nobody"])
def test_add_key_with_a_description_in_a_mapped_file_of_the_mount_completes(own, as_nobody):
    """The copy faults on a page of MOUNT/keys/S, which only this daemon can bring in: it must
    serve that read while the copy waits, and add_key takes the description from the file."""
    ring = os.path.join(own.path, "@s", "keyring:src")
    os.mkdir(ring)
    source = os.path.join(ring, "user:source")
    write_key(source, b"from-the-file\0")
    os.setxattr(source, "user.keyctl.perm", b"0x3f3f3f3f")
    path = os.path.join(own.path, "keys", str(serial(source)))
    argv = (NOBODY if as_nobody else []) + run_argv(own.path, PYTHON, "-c", MAPPED_DESCRIPTION, path)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    uid = NOBODY_UID if as_nobody else 0
    assert result.stdout.strip() == f"described user;{uid};{uid};3f010000;from-the-file", result.stderr
    _serves(own.path)
    assert "internal error" not in own.log()


@contextlib.contextmanager
def stuck(own: Daemon, slow: "Slow", threads: int = 1) -> Iterator[tuple[subprocess.Popen, int]]:
    """nobody's program under `wqfs run`, its threads' add_key descriptions on slow pages:
    yields (wqfs run, the program's pid) once every thread sits in add_key."""
    proc = subprocess.Popen(NOBODY + run_argv(own.path, PYTHON, "-c", MAPPED_DESCRIPTION, slow.path, str(threads)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            start_new_session=True)
    try:
        program = _child(proc.pid)
        deadline = time.monotonic() + WAIT
        while _threads_in_syscall(program, "248") < threads and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _threads_in_syscall(program, "248") == threads
        yield proc, program
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _root_adds(own: Daemon, name: str) -> None:
    root = subprocess.run(run_argv(own.path, "keyctl", "add", "user", name, "v", "@s"),
                          capture_output=True, text=True, timeout=30, cwd="/")
    assert root.returncode == 0 and root.stdout.strip().isdigit(), root.stderr


SLOW_DESCRIBED = f"described user;{NOBODY_UID};{NOBODY_UID};3f010000;from-a-slow-server"


def test_a_slow_third_party_mount_holds_only_its_callers_call(own, slow):
    """While nobody's add_key waits for a page of a slow FUSE server, everybody else is
    served; then nobody's call completes with the description the server gave."""
    with stuck(own, slow) as (proc, _):
        _serves(own.path)  # root's tree and root's own trapped calls go on
        _root_adds(own, "rootkey")
        assert proc.poll() is None, "nobody's call did not wait for the slow server"
        slow.release()
        out, err = proc.communicate(timeout=60)
        assert out.strip() == SLOW_DESCRIBED, err
    _serves(own.path)


def test_a_user_stuck_on_slow_pages_keeps_its_own_copies_only(own, slow):
    """Twelve of nobody's threads stuck on slow pages use up nobody's copy allowance, not the
    daemon's: root's calls that copy (add_key, describe) go on being answered."""
    with stuck(own, slow, 12) as (proc, _):
        for i in range(3):
            _root_adds(own, f"root{i}")
        assert proc.poll() is None
        slow.release()
        out, _ = proc.communicate(timeout=120)
        assert out.count(SLOW_DESCRIBED) == 12, out


def test_a_caller_killed_while_its_copy_waits_is_dropped(own, slow):
    with stuck(own, slow) as (proc, program):
        os.kill(program, signal.SIGKILL)
        assert proc.wait(WAIT) == 128 + signal.SIGKILL
    _serves(own.path)
    # the killed caller's key is never made, even once its abandoned copy comes back
    slow.release()
    time.sleep(1)
    check = subprocess.run(NOBODY + run_argv(own.path, "keyctl", "search", "@s", "user", "from-a-slow-server"),
                           capture_output=True, text=True, timeout=30, cwd="/")
    assert check.returncode != 0
    assert "internal error" not in own.log()


# ---- the pid-reuse race, made deterministic ----

SETPERM = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(250, 5, ctypes.c_long(int(sys.argv[1])), ctypes.c_ulong(0x3f3f3f3f))  # KEYCTL_SETPERM
print("returned", ctypes.get_errno(), flush=True)
"""


def _spawn_with_pid(pid: int) -> "subprocess.Popen | None":
    """A root process (sleep) that gets exactly this pid, by ns_last_pid; None if another fork
    on the machine took it first."""
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    proc = subprocess.Popen(["sleep", "30"])
    if proc.pid == pid:
        return proc
    proc.kill()
    proc.wait()
    return None


@pytest.fixture
def delayed() -> Iterator[Daemon]:
    """A daemon that waits 1.5 s after each trapped call arrives before it looks at the caller."""
    os.environ["WQFS_TEST_TRAP_DELAY"] = "1.5"
    try:
        d = Daemon()
    finally:
        del os.environ["WQFS_TEST_TRAP_DELAY"]
    try:
        yield d
    finally:
        d.stop()


def test_a_reused_pid_never_lends_its_credentials_to_a_call(delayed):
    """nobody's setperm of root's key waits in the daemon; nobody is killed and its pid given to a
    root process before the daemon looks. Acting on what that pid is now would be acting as root."""
    ring = os.path.join(delayed.path, "@us", "keyring:root-only")
    os.mkdir(ring)
    target = os.path.join(ring, "user:root-secret")
    write_key(target, b"s")
    os.setxattr(target, "user.keyctl.perm", b"0x3f010001")  # others may view, nothing more
    key = serial(target)
    for _attempt in range(10):
        runner = subprocess.Popen(NOBODY + run_argv(delayed.path, PYTHON, "-c", SETPERM, str(key)),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        root_proc = None
        try:
            program = _child(runner.pid)
            deadline = time.monotonic() + WAIT
            while not _in_syscall(program, "250") and time.monotonic() < deadline:
                time.sleep(0.005)
            assert _in_syscall(program, "250")
            os.kill(program, signal.SIGKILL)
            runner.wait(WAIT)  # wqfs run has reaped it: its pid is free
            root_proc = _spawn_with_pid(program)
            if root_proc is None:
                continue
            time.sleep(2.5)  # past the daemon's delay: it has looked at the pid by now
            assert os.getxattr(target, "user.keyctl.perm") == b"3f010001", "the call ran as root"
            assert os.listdir(delayed.path)
            return
        finally:
            if root_proc is not None:
                root_proc.kill()
                root_proc.wait()
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            runner.stdout.close()
            runner.stderr.close()
    pytest.skip("another fork took the freed pid ten times in a row")


def test_chown_takes_ids_as_unsigned_as_the_kernel_does(own):
    """Found by the syscall fuzzer: uid_t 4294967294 is a uid (only (uid_t)-1 means "leave
    it"); describe prints it with %d, as keyctl_describe_key does, and the tree shows it."""
    script = ("k=$(keyctl add user victim v @s) && keyctl chown $k 4294967294 && keyctl chgrp $k 4294967294 "
              "&& keyctl rdescribe $k && stat -c '%u %g' $WQFS_MOUNT/keys/$k")
    result = subprocess.run(run_argv(own.path, "sh", "-c", script, new_session=True), capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["user;-2;-2;3f010000;victim", "4294967294 4294967294"]
    assert "internal error" not in own.log()
