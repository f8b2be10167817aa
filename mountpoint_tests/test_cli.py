"""The wqfs command, run as a real subprocess: decode, watch, mount, unmount."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest

from helpers import (GC_DELAY, ROOT, WAIT, Daemon, read_line, serial, stopped_after, wait_blocked_in_read,
                     write_key)

from wqfs.mounts import force_unmount, is_mounted


def wqfs(*args: str, input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wqfs", *args], input=input, capture_output=True,
                          timeout=timeout, cwd=ROOT)


def one_line(stream: bytes) -> str:
    text = stream.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text


# ------------------------------------------------------------------ decode

def test_decode_watch_test_style_of_a_linked_record(ring, queues):
    q = queues()
    q.watch(serial(ring), 1)
    write_key(os.path.join(ring, "user:dec"), b"x")
    raw = os.read(q.fileno(), 433)
    r, k = serial(ring), serial(os.path.join(ring, "user:dec"))
    result = wqfs("decode", "--style", "watch_test", input=raw)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == (f"read() = 16\n"
                                      f"NOTIFY[000]: ty=000001 sy=02 i=00000110\n"
                                      f"KEY {r:08x} change=2[linked] aux={k}\n")


def test_decode_watch_test_style_of_removal_and_loss(ring, queues):
    path = os.path.join(ring, "user:meta")
    write_key(path, b"x")
    k = serial(path)
    q = queues(size=1)
    q.watch(k, 2)
    for _ in range(33):
        os.setxattr(path, "user.keyctl.perm", b"0x3f3f0000")
    records = os.read(q.fileno(), 65536)
    loss = os.read(q.fileno(), 65536)
    assert (len(records), len(loss)) == (512, 8)
    q.unwatch(k)
    removal = os.read(q.fileno(), 433)
    result = wqfs("decode", "--style", "watch_test", input=records[-16:] + loss)
    assert result.stdout.decode() == (f"read() = 24\n"
                                      f"NOTIFY[000]: ty=000001 sy=07 i=00000210\n"
                                      f"KEY {k:08x} change=7[setattr] aux=0\n"
                                      f"NOTIFY[010]: ty=000000 sy=01 i=00000008\n"
                                      f"-- LOSS --\n")
    result = wqfs("decode", "--style", "watch_test", input=removal)
    assert result.stdout.decode() == ("read() = 16\n"
                                      "NOTIFY[000]: ty=000000 sy=00 i=00000210\n"
                                      "REMOVAL of watchpoint 00000002\n")


def test_decode_keyctl_and_json_styles(ring, queues):
    q = queues()
    q.watch(serial(ring), 3)
    write_key(os.path.join(ring, "user:styles"), b"x")
    os.unlink(os.path.join(ring, "user:styles"))
    os.setxattr(ring, "user.keyctl.clear", b"")
    raw = os.read(q.fileno(), 433)
    r = serial(ring)
    result = wqfs("decode", input=raw)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"{r} link ") and lines[1].startswith(f"{r} unlk ")
    assert lines[2] == f"{r} clr"
    k = int(lines[0].split()[2])
    result = wqfs("decode", "--style", "json", input=raw)
    decoded = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert decoded[0] == {"kind": "key", "subtype": 2, "event": "linked", "key": r, "aux": k, "tag": 3}
    assert [d["event"] for d in decoded] == ["linked", "unlinked", "cleared"]


def test_decode_a_shell_pipeline_from_the_queue(mnt, ring):
    """The bytes come straight from the mount through a pipe: head -c reads one 16-byte record."""
    r = serial(ring)
    script = (f"exec 3<>'{mnt}/watch_queue' && printf 'size 32' >&3 && printf 'watch {r} 5' >&3 && "
              f"mkdir '{ring}/keyring:piped' && head -c 16 <&3 | "
              f"'{sys.executable}' -m wqfs decode --style watch_test")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    k = serial(os.path.join(ring, "keyring:piped"))
    assert result.stdout.splitlines()[1:] == ["NOTIFY[000]: ty=000001 sy=02 i=00000510",
                                              f"KEY {r:08x} change=2[linked] aux={k}"]


@pytest.mark.parametrize("data,message", [
    (struct.pack("<IIII", 1 | 2 << 24, 0x110, 5, 6)[:12], "input ended inside a record"),
    (struct.pack("<II", 0, 3), "bad record"),
])
def test_decode_bad_input_is_one_line_and_status_1(data, message):
    result = wqfs("decode", input=data)
    assert result.returncode == 1
    assert message in one_line(result.stderr)
    assert b"Traceback" not in result.stderr


# ------------------------------------------------------------------- watch

def _watch(mnt, procs, *args):
    proc = subprocess.Popen([sys.executable, "-m", "wqfs", "watch", "--mount", mnt, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    wait_blocked_in_read(proc.pid)
    return proc


def _interrupt(proc):
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_watch_prints_lines_and_exits_0_on_ctrl_c(mnt, ring, procs):
    r = serial(ring)
    proc = _watch(mnt, procs, str(r))
    path = os.path.join(ring, "user:w")
    write_key(path, b"x")
    k = serial(path)
    assert read_line(proc.stdout) == f"{r} link {k}\n"
    os.unlink(path)
    assert read_line(proc.stdout) == f"{r} unlk {k}\n"
    _interrupt(proc)


def test_watch_several_keys_with_a_filter_and_gc_lines(mnt, ring, procs):
    path = os.path.join(ring, "user:wf")
    write_key(path, b"x")
    r, k = serial(ring), serial(path)
    proc = _watch(mnt, procs, "-f", "pn", str(r), str(k))   # upd and unlk only
    write_key(path, b"y")                                   # upd on k
    os.setxattr(path, "user.keyctl.perm", b"0x3f3f0000")    # attr: filtered out
    os.unlink(path)                                         # unlk on r, then gc of k
    assert read_line(proc.stdout) == f"{k} upd\n"
    assert read_line(proc.stdout) == f"{r} unlk {k}\n"
    assert read_line(proc.stdout) == f"{k} gc\n"             # removal records pass any filter
    _interrupt(proc)


def test_watch_json(mnt, ring, procs):
    r = serial(ring)
    proc = _watch(mnt, procs, "--json", str(r))
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    assert json.loads(read_line(proc.stdout)) == {"kind": "key", "subtype": 7, "event": "setattr",
                                                  "key": r, "aux": 0, "tag": 1}
    _interrupt(proc)


def test_watch_of_a_missing_key_fails_with_one_line(mnt):
    result = wqfs("watch", "--mount", mnt, "2")
    assert result.returncode == 1
    assert one_line(result.stderr) == "wqfs: cannot watch 2: Required key not available\n"


def test_watch_without_a_mount_fails_with_one_line():
    with tempfile.TemporaryDirectory() as empty:
        result = wqfs("watch", "--mount", empty, "@s")
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("wqfs: no wqfs mount at ")


def test_watch_with_a_bad_filter_letter(mnt):
    result = wqfs("watch", "--mount", mnt, "-f", "z", "@s")
    assert result.returncode == 1
    assert "unknown filter letter" in one_line(result.stderr)


# ----------------------------------------------------------- mount, unmount

def test_mount_on_a_missing_mountpoint_prints_one_line():
    for args in (["mount", "-f"], ["mount"]):
        result = wqfs(*args, "/nonexistent/wqfs-mountpoint")
        assert result.returncode == 1
        assert one_line(result.stderr) == "wqfs: mountpoint /nonexistent/wqfs-mountpoint does not exist\n"
        assert result.stdout == b""


def test_mount_on_a_file_or_a_mounted_dir_is_refused(mnt):
    with tempfile.NamedTemporaryFile() as file:
        result = wqfs("mount", file.name)
        assert result.returncode == 1 and "is not a directory" in one_line(result.stderr)
    result = wqfs("mount", "-f", mnt)
    assert result.returncode == 1 and "already mounted" in one_line(result.stderr)
    assert os.path.exists(os.path.join(mnt, "watch_queue"))


def test_unmount_of_a_dir_that_is_not_mounted():
    with tempfile.TemporaryDirectory() as empty:
        result = wqfs("unmount", empty)
        assert result.returncode == 1
        assert one_line(result.stderr) == f"wqfs: {empty} is not mounted\n"
    result = wqfs("unmount", "/nonexistent/wqfs-mountpoint")
    assert result.returncode == 1 and one_line(result.stderr)


def _daemons_for(path: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"mount" in argv and path.encode() in argv:
                pids.append(int(entry))
    return pids


def test_mount_in_the_background_then_unmount():
    base = tempfile.mkdtemp(prefix="wqfs-cli-")
    path = os.path.join(base, "mnt")
    os.mkdir(path)
    try:
        result = wqfs("mount", "--gc-delay", str(GC_DELAY), path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == f"wqfs: mounted at {path}\n"
        assert is_mounted(path)
        assert "watch_queue" in os.listdir(path)
        write_key(os.path.join(path, "@s", "user:bg"), b"works")
        with open(os.path.join(path, "@s", "user:bg"), "rb") as f:
            assert f.read() == b"works"
        result = wqfs("unmount", path)
        assert result.returncode == 0, result.stderr
        assert not is_mounted(path)
        deadline = time.monotonic() + WAIT
        while _daemons_for(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _daemons_for(path) == []  # the daemon ended with its mount
    finally:
        force_unmount(path)
        for pid in _daemons_for(path):
            os.kill(pid, signal.SIGKILL)
        os.rmdir(path)
        os.rmdir(base)


def test_foreground_mount_unmounts_on_ctrl_c():
    base = tempfile.mkdtemp(prefix="wqfs-cli-")
    path = os.path.join(base, "mnt")
    os.mkdir(path)
    proc = subprocess.Popen([sys.executable, "-m", "wqfs", "mount", "-f", path], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while not os.path.exists(os.path.join(path, "watch_queue")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        assert read_line(proc.stdout) == f"wqfs: mounted at {path}\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate()
        assert out.decode().endswith("wqfs: unmounted\n")
        assert b"Traceback" not in err
        assert not is_mounted(path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(path)
        os.rmdir(path)
        os.rmdir(base)


def test_version_and_usage():
    result = wqfs("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("wqfs ")
    result = wqfs()
    assert result.returncode == 2 and b"usage:" in result.stderr
    result = wqfs("decode", "--style", "nosuch")
    assert result.returncode == 2


# ---- the error contract: one line and 1, or the command's usage and 2 ----

@pytest.mark.parametrize("argv,says", [
    (("run",), "run needs a program"),
    (("run", "--"), "run needs a program"),
    (("mount", "-f", "--bogus", "/nonexistent"), "unrecognized arguments: --bogus"),
    (("mount", "--gc-delay", "-5", "/nonexistent"), "argument --gc-delay"),
    (("mount", "--gc-delay", "nan", "/nonexistent"), "argument --gc-delay"),
    (("watch", "--size", "0", "@s"), "argument --size: 0: a queue holds 1..512 notes"),
    (("watch", "--size", "513", "@s"), "argument --size"),
])
def test_usage_errors_name_the_argument_in_the_commands_own_usage(argv, says):
    result = wqfs(*argv)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert lines[0].startswith(f"usage: wqfs {argv[0]}") and says in lines[-1], lines


def test_a_non_empty_mountpoint_is_refused_in_one_line(tmp_path):
    (tmp_path / "precious").write_text("x")
    result = wqfs("mount", "-f", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (f"wqfs: mountpoint {tmp_path} is not empty: "
                                               "mounting there would hide its files")
    assert not is_mounted(str(tmp_path)) and (tmp_path / "precious").read_text() == "x"


def test_perm_as_getfattr_prints_it_is_what_setfattr_takes(mnt, ring):
    key = os.path.join(ring, "user:perm-roundtrip")
    with open(key, "w") as f:
        f.write("v")
    for value in ("3f3b0000", "0x3f1b0000", "3F0B0000"):  # setfattr turns 0x... into 4 bytes
        subprocess.run(["setfattr", "-n", "user.keyctl.perm", "-v", value, key], check=True)
        shown = subprocess.run(["getfattr", "--only-values", "-n", "user.keyctl.perm", key],
                               capture_output=True, text=True, check=True).stdout
        assert shown == value.lower().removeprefix("0x")
    refused = subprocess.run(["setfattr", "-n", "user.keyctl.perm", "-v", "zz", key], capture_output=True, text=True)
    assert refused.returncode != 0 and "Invalid argument" in refused.stderr


def test_the_readmes_python_examples_are_python():
    import re
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks
    for block in blocks:
        compile(block, "README.md", "exec")  # a SyntaxError (say, a top-level `async with`) fails here


def test_verbose_lines_carry_the_time_the_caller_and_the_answer():
    import re
    with stopped_after(Daemon("-v")) as d:
        os.stat(os.path.join(d.path, "@s"))
        key = os.path.join(d.path, "@s", "user:logged")
        write_key(key, b"v")
        with open(key, "rb") as f:
            f.read()
        log = d.log()
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} wqfs: "
    assert re.search(stamp + rf"lookup\(1, b'@s', pid=\d+ uid={os.getuid()}\) -> ok$", log, re.M), log
    # read and write carry no request context in pyfuse3: their pid is libfuse's
    assert re.search(stamp + rf"read\(pid={os.getpid()}, \d+, 0, \d+\) -> ok$", log, re.M), log
