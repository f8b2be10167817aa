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

from helpers import (GC_DELAY, NOBODY, ROOT, WAIT, Daemon, descendants, read_line, run_argv, serial, stopped_after,
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

def _watch(mnt, procs, *args, established: bool = True):
    """`wqfs watch --mount mnt ARGS`, returned once it says "Watches established." (inotifywait's
    line, on stderr), so that nothing the test does next can come before its watches."""
    proc = subprocess.Popen([sys.executable, "-m", "wqfs", "watch", "--mount", mnt, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    if established:
        assert read_line(proc.stderr) == "Watches established.\n"
    return proc


def _interrupt(proc):
    """Ctrl-C: killed by SIGINT, as keyctl watch is (the shell's $? is 130)."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == -signal.SIGINT
    assert b"Traceback" not in proc.stderr.read()


def _lines(proc, n):
    return [read_line(proc.stdout) for _ in range(n)]


def test_watch_prints_lines_and_dies_of_sigint_on_ctrl_c(mnt, ring, procs):
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
    assert proc.poll() is None                              # r is still there: it goes on
    _interrupt(proc)


def test_watch_json(mnt, ring, procs):
    r = serial(ring)
    proc = _watch(mnt, procs, "--json", str(r))
    before = time.time()
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    line = json.loads(read_line(proc.stdout))
    assert before - 1 < line.pop("time") < time.time() + 1
    assert line == {"kind": "key", "subtype": 7, "event": "setattr", "key": r, "aux": 0, "tag": 1}
    _interrupt(proc)


def _keyctl_watch(mnt, procs, key):
    """keyutils' own `keyctl watch KEY` under `wqfs run`, once it waits in poll() for records."""
    proc = subprocess.Popen(run_argv(mnt, "keyctl", "watch", key), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for child in descendants(proc.pid):
            try:
                with open(f"/proc/{child}/comm") as f, open(f"/proc/{child}/syscall") as g:
                    if f.read().strip() == "keyctl" and g.read().split()[:1] == ["7"]:
                        return proc
            except OSError:
                pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    raise AssertionError("keyctl watch never waited in poll")


def _wait_in_poll(pid):
    """Until the process waits in poll(): its watches are set."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/syscall") as f:
            if f.read().split()[:1] == ["7"]:
                return
        time.sleep(0.02)
    raise AssertionError(f"{pid} never waited in poll")


def test_watch_ends_as_keyctl_watch_does_when_the_key_is_destroyed(mnt, make_ring, procs):
    """Side by side with keyutils' keyctl watch: the same lines, then `gc` and exit 0."""
    ring = make_ring()
    r = serial(ring)
    ours, theirs = _watch(mnt, procs, str(r)), _keyctl_watch(mnt, procs, str(r))
    write_key(os.path.join(ring, "user:k"), b"v")
    k = serial(os.path.join(ring, "user:k"))
    os.rmdir(ring)  # its last link: the collector destroys it, and the watch's removal record comes
    assert ours.wait(timeout=WAIT) == 0 and theirs.wait(timeout=WAIT) == 0
    expected = f"{r} link {k}\n{r} gc\n".encode()
    assert ours.stdout.read() == expected == theirs.stdout.read()
    assert ours.stderr.read() == b""


def test_ctrl_c_ends_wqfs_watch_and_keyctl_watch_alike(mnt, ring, procs):
    theirs = _keyctl_watch(mnt, procs, str(serial(ring)))
    ours = _watch(mnt, procs, str(serial(ring)))
    for proc in (theirs, ours):
        for pid in [proc.pid, *descendants(proc.pid)]:  # Ctrl-C signals the whole foreground group
            os.kill(pid, signal.SIGINT)
    assert theirs.wait(timeout=5) == 130              # wqfs run: 128 + the signal that killed keyctl
    assert ours.wait(timeout=5) == -signal.SIGINT      # killed by it: the shell shows 130 too


def test_quiet_says_nothing_on_stderr(mnt, ring, procs):
    proc = _watch(mnt, procs, "-q", "-c", "1", str(serial(ring)), established=False)
    _wait_in_poll(proc.pid)
    os.mkdir(os.path.join(ring, "keyring:q"))
    assert proc.wait(timeout=WAIT) == 0
    assert proc.stderr.read() == b"" and proc.stdout.read().decode().split()[1] == "link"


def test_timeout_exits_2_after_that_long_without_an_event(mnt, ring, procs):
    started = time.monotonic()
    result = wqfs("watch", "--mount", mnt, "-t", "0.5", str(serial(ring)))
    assert result.returncode == 2 and result.stdout == b""
    assert time.monotonic() - started >= 0.5
    assert result.stderr == b"Watches established.\n"
    proc = _watch(mnt, procs, "-t", "1", str(serial(ring)))
    for i in range(3):  # each event starts the timeout again, as inotifywait -m -t does
        time.sleep(0.4)
        write_key(os.path.join(ring, f"user:t{i}"), b"v")
    assert len(_lines(proc, 3)) == 3 and proc.wait(timeout=WAIT) == 2


def test_watch_speaks_as_inotifywait_does(mnt, ring, tmp_path):
    """inotify-tools' own inotifywait beside it: the same line once the watches are set, the
    same status when -t passes without an event, nothing on stderr with -q."""
    theirs = subprocess.run(["inotifywait", "-m", "-t", "1", str(tmp_path)], capture_output=True, text=True, timeout=30)
    ours = wqfs("watch", "--mount", mnt, "-t", "1", str(serial(ring)))
    assert theirs.returncode == ours.returncode == 2
    assert theirs.stderr.splitlines()[-1] == ours.stderr.decode().strip() == "Watches established."
    theirs = subprocess.run(["inotifywait", "-q", "-t", "1", str(tmp_path)], capture_output=True, text=True, timeout=30)
    ours = wqfs("watch", "--mount", mnt, "-q", "-t", "1", str(serial(ring)))
    assert (theirs.returncode, theirs.stderr) == (ours.returncode, ours.stderr.decode()) == (2, "")


def test_with_timeout_or_count_the_key_gone_is_exit_1(mnt, make_ring, procs):
    """inotifywait's 1: the target went (after keyctl's gc line)."""
    for option in (["-t", "30"], ["-c", "5"]):
        ring = make_ring()
        r = serial(ring)
        proc = _watch(mnt, procs, *option, str(r))
        os.rmdir(ring)
        assert proc.wait(timeout=WAIT) == 1
        assert proc.stdout.read() == f"{r} gc\n".encode()


def test_count_stops_after_n_events(mnt, ring, procs):
    r = serial(ring)
    proc = _watch(mnt, procs, "-c", "2", str(r))
    for name in ("a", "b", "c"):
        write_key(os.path.join(ring, f"user:{name}"), b"v")
    assert proc.wait(timeout=WAIT) == 0
    lines = proc.stdout.read().decode().splitlines()
    assert [line.split()[:2] for line in lines] == [[str(r), "link"]] * 2


def test_names_beside_serials_and_a_key_that_may_not_be_viewed(mnt, ring, make_ring, procs):
    other = make_ring()
    hidden = os.path.join(other, "user:hidden")
    write_key(hidden, b"v")
    h = serial(hidden)
    os.setxattr(hidden, "user.keyctl.perm", b"10101010")   # LINK alone: linkable, not viewable
    r = serial(ring)
    name = os.path.basename(ring)
    proc = _watch(mnt, procs, "--names", str(r))
    os.mkdir(os.path.join(ring, "keyring:x%2Fy"))         # the description is x/y
    x = serial(os.path.join(ring, "keyring:x%2Fy"))
    os.setxattr(ring, "user.keyctl.link", str(h).encode())
    assert read_line(proc.stdout) == f"{r} ({name}) link {x} (keyring:x%2Fy)\n"
    assert read_line(proc.stdout) == f"{r} ({name}) link {h}\n"   # its serial alone
    os.rmdir(os.path.join(ring, "keyring:x%2Fy"))          # gone by the time it is read: the name it had
    assert read_line(proc.stdout) == f"{r} ({name}) unlk {x} (keyring:x%2Fy)\n"
    _interrupt(proc)


def test_format_timefmt_and_csv(mnt, ring, procs):
    r = serial(ring)
    proc = _watch(mnt, procs, "--format", "%T|%i|%e|%a|%g|%k|%d|%n|%K|%D|%N|%%", "--timefmt", "%Y", str(r))
    os.mkdir(os.path.join(ring, "keyring:f"))
    f = serial(os.path.join(ring, "keyring:f"))
    desc = os.path.basename(ring).split(":", 1)[1]
    year = time.strftime("%Y")
    assert read_line(proc.stdout) == f"{year}|{r}|link|{f}|1|keyring|{desc}|keyring:{desc}|keyring|f|keyring:f|%\n"
    os.setxattr(ring, "user.keyctl.perm", b"3f3f0000")
    assert read_line(proc.stdout) == f"{year}|{r}|attr||1|keyring|{desc}|keyring:{desc}||||%\n"
    _interrupt(proc)
    proc = _watch(mnt, procs, "--csv", "--names", str(r))
    write_key(os.path.join(ring, 'user:a,"b'), b"v")
    k = serial(os.path.join(ring, 'user:a,"b'))
    assert read_line(proc.stdout) == f'{r},link,{k},1,keyring,{desc},user,"a,""b"\n'
    _interrupt(proc)


def test_json_keeps_every_field(mnt, ring, procs):
    r = serial(ring)
    proc = _watch(mnt, procs, "--json", "--names", "--timefmt", "%Y", str(r))
    write_key(os.path.join(ring, "user:j"), b"v")
    line = json.loads(read_line(proc.stdout))
    line.pop("time")
    desc = os.path.basename(ring).split(":", 1)[1]
    assert line == {"kind": "key", "subtype": 2, "event": "linked", "key": r, "tag": 1,
                    "aux": serial(os.path.join(ring, "user:j")), "time_text": time.strftime("%Y"),
                    "type": "keyring", "description": desc, "aux_type": "user", "aux_description": "j"}
    _interrupt(proc)


def test_event_and_description_filters(mnt, ring, procs):
    r = serial(ring)
    proc = _watch(mnt, procs, "-e", "link", "--include", "user:keep*", "--exclude", "*-not", str(r))
    serials = {}
    for name in ("drop", "keep-not", "keep1"):
        write_key(os.path.join(ring, f"user:{name}"), b"v")
        serials[name] = serial(os.path.join(ring, f"user:{name}"))
    os.unlink(os.path.join(ring, "user:keep1"))            # unlk: not an event asked for
    os.mkdir(os.path.join(ring, "keyring:keep2"))          # keyring:keep2 is no user:keep*
    write_key(os.path.join(ring, "user:keep3"), b"v")
    assert _lines(proc, 2) == [f"{r} link {serials['keep1']}\n",
                               f"{r} link {serial(os.path.join(ring, 'user:keep3'))}\n"]
    _interrupt(proc)


def test_recursive_follows_the_keyring_tree(mnt, ring, make_ring, procs):
    """-r: what is below at the start, a keyring linked later, what was in that one before its
    watch (listed after the watch landed), and unwatching what is unlinked from the tree."""
    below = os.path.join(ring, "keyring:below")
    os.mkdir(below)
    deeper = os.path.join(below, "keyring:deeper")
    os.mkdir(deeper)
    elsewhere = make_ring()                                 # built outside, then linked in whole
    inner = os.path.join(elsewhere, "keyring:inner")
    os.mkdir(inner)
    r, d, e, i = serial(ring), serial(deeper), serial(elsewhere), serial(inner)
    proc = _watch(mnt, procs, "-r", str(r))
    write_key(os.path.join(deeper, "user:k1"), b"v")        # two levels down, there at the start
    assert read_line(proc.stdout) == f"{d} link {serial(os.path.join(deeper, 'user:k1'))}\n"
    os.setxattr(ring, "user.keyctl.link", str(e).encode())  # a keyring linked later
    assert read_line(proc.stdout) == f"{r} link {e}\n"
    write_key(os.path.join(inner, "user:k2"), b"v")         # in it before its watch: found by listing
    assert read_line(proc.stdout) == f"{i} link {serial(os.path.join(inner, 'user:k2'))}\n"
    os.setxattr(ring, "user.keyctl.unlink", str(e).encode())  # out of the tree: e and i unwatched
    assert read_line(proc.stdout) == f"{r} unlk {e}\n"
    write_key(os.path.join(inner, "user:k3"), b"v")         # not shown any more
    write_key(os.path.join(ring, "user:k4"), b"v")          # the next line is this one's
    assert read_line(proc.stdout) == f"{r} link {serial(os.path.join(ring, 'user:k4'))}\n"
    _interrupt(proc)
    assert proc.stdout.read() == b""                        # no gc lines for our own unwatches


def test_recursive_keeps_a_keyring_linked_twice_until_its_last_link_goes(mnt, ring, procs):
    a, b = os.path.join(ring, "keyring:a"), os.path.join(ring, "keyring:b")
    os.mkdir(a)
    os.mkdir(b)
    shared = os.path.join(a, "keyring:shared")
    os.mkdir(shared)
    s_ = serial(shared)
    os.setxattr(b, "user.keyctl.link", str(s_).encode())
    proc = _watch(mnt, procs, "-r", "-e", "link", str(serial(ring)))
    os.setxattr(a, "user.keyctl.unlink", str(s_).encode())  # still in b: still watched
    write_key(os.path.join(b, "keyring:shared", "user:x"), b"v")
    assert read_line(proc.stdout) == f"{s_} link {serial(os.path.join(b, 'keyring:shared', 'user:x'))}\n"
    _interrupt(proc)


def test_watch_errors_name_the_key(mnt, ring):
    path = os.path.join(ring, "user:revoked")
    write_key(path, b"v")
    revoked = serial(path)
    os.setxattr(path, "user.keyctl.revoke", b"")
    cases = [
        (["2"], "wqfs: cannot watch 2: no such key (ENOKEY)\n"),
        ([str(revoked)], f"wqfs: cannot watch {revoked}: the key is revoked (EKEYREVOKED)\n"),
        ([f"@s/{os.path.basename(ring)}/user:nosuch"],
         f"wqfs: cannot watch @s/{os.path.basename(ring)}/user:nosuch: no such key in the tree (ENOENT)\n"),
        (["@s/user:%zz"], "wqfs: cannot watch @s/user:%zz: a bad %XX escape in a name: only %25 (%) and %2F (/) "
                          "are escapes (ENOENT)\n"),
        ([os.path.join(mnt, "events")], f"wqfs: cannot watch {mnt}/events: not a key (it has no "
                                        "user.keyctl.serial) (ENODATA)\n"),
    ]
    for argv, message in cases:
        result = wqfs("watch", "--mount", mnt, *argv)
        assert (result.returncode, one_line(result.stderr)) == (1, message)
    result = wqfs("watch", "--mount", mnt, "@s", "2")      # the second KEY is the one at fault
    assert one_line(result.stderr) == "wqfs: cannot watch 2: no such key (ENOKEY)\n"


def test_a_key_nobody_may_not_view_is_named_in_its_error(own_daemon):
    ring = os.path.join(own_daemon.path, "@u", "keyring:roots")
    os.mkdir(ring)
    r = serial(ring)
    result = subprocess.run(NOBODY + [sys.executable, "-m", "wqfs", "watch", "--mount", own_daemon.path, str(r)],
                            capture_output=True, timeout=30, cwd="/", env={**os.environ, "PYTHONPATH": ROOT})
    assert (result.returncode, result.stderr.decode()) == \
        (1, f"wqfs: cannot watch {r}: no VIEW permission on that key (EACCES)\n")


def test_key_paths_in_the_tree_and_the_mount_they_are_in(mnt, ring, procs):
    r = serial(ring)
    relative = f"@s/{os.path.basename(ring)}"
    for argv in (["--mount", mnt, relative], ["--mount", mnt, relative + "/"], [ring]):  # no --mount: ring's
        proc = subprocess.Popen([sys.executable, "-m", "wqfs", "watch", "-c", "1", *argv], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        assert read_line(proc.stderr) == "Watches established.\n"
        os.setxattr(ring, "user.keyctl.perm", b"3f3f0000")
        assert proc.wait(timeout=WAIT) == 0 and proc.stdout.read() == f"{r} attr\n".encode()
    with tempfile.TemporaryDirectory() as other:
        result = wqfs("watch", "--mount", other, ring)
        assert one_line(result.stderr) == f"wqfs: cannot watch {ring}: it is in the wqfs mount at {mnt}, " \
                                          f"not in --mount {other}\n"
        result = wqfs("watch", os.path.join(other, "x"))
        assert one_line(result.stderr) == f"wqfs: cannot watch {other}/x: it is not in a wqfs mount\n"


def test_watch_without_a_mount_fails_with_one_line():
    with tempfile.TemporaryDirectory() as empty:
        result = wqfs("watch", "--mount", empty, "@s")
        assert result.returncode == 1
        assert one_line(result.stderr) == f"wqfs: no wqfs mount at {empty} (start one with: wqfs mount {empty})\n"
        result = wqfs("watch", "--mount", os.path.join(empty, "missing"), "@s")
        assert one_line(result.stderr).startswith(f"wqfs: no wqfs mount at {empty}/missing: it does not exist")


def test_watch_on_a_directory_with_files_does_not_suggest_mounting_there(tmp_path):
    """`wqfs mount` would refuse it (it would hide the files): say what it is instead."""
    (tmp_path / "file").write_text("x")
    for where in (str(tmp_path), "/tmp", "/proc"):
        result = wqfs("watch", "--mount", where, "@s")
        message = one_line(result.stderr)
        assert result.returncode == 1 and message.startswith(f"wqfs: no wqfs mount at {where}: "), message
        assert "start one" not in message and f"wqfs mount {where}" not in message, message


def test_watch_with_a_path_inside_a_mount_as_mount(mnt):
    result = wqfs("watch", "--mount", os.path.join(mnt, "keys"), "@s")
    assert one_line(result.stderr) == (f"wqfs: no wqfs mount at {mnt}/keys: it is inside the wqfs mount at "
                                       f"{mnt}; --mount takes the mountpoint ({mnt})\n")


@pytest.mark.parametrize("argv,says", [
    (("-f", "z", "@s"), "argument -f/--filter: unknown filter letter 'z'; use any of iplncrvs"),
    (("-e", "linked,nope", "@s"), "argument -e/--event: unknown event 'nope'"),
    (("--format", "%z", "@s"), "argument --format: unknown field %z"),
    (("--format", "%i", "--csv", "@s"), "argument --csv: not allowed with argument --format"),
    (("-c", "0", "@s"), "argument -c/--count: 0: count at least 1 event"),
    (("-t", "-1", "@s"), "argument -t/--timeout"),
    (("nosuch",), "argument KEY: 'nosuch' is no key"),
    (("0",), "argument KEY: '0' is no key"),
])
def test_watch_usage_errors_name_the_option(argv, says):
    result = wqfs("watch", *argv)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and lines[0].startswith("usage: wqfs watch") and says in lines[-1], lines


# ------------------------------------------------- queue command errors (the client's messages)

def test_client_errors_keep_the_errno_and_say_what_it_means(mnt, ring):
    import errno
    from wqfs.client import Queue
    with Queue(mnt, size=8, nonblock=True) as q:
        with pytest.raises(OSError) as unwatched:
            q.unwatch(serial(ring))
        assert unwatched.value.errno == errno.EBADSLT
        assert str(unwatched.value) == f"[Errno {errno.EBADSLT}] unwatch {serial(ring)}: this queue does not " \
                                       "watch that key (EBADSLT)"
        with pytest.raises(OSError) as again:
            q.set_size(9)
        assert again.value.errno == errno.EBUSY and "sized once" in str(again.value)
        with pytest.raises(OSError) as tag:
            q.watch(serial(ring), 256)
        assert tag.value.errno == errno.EINVAL and "a tag is 0..255" in str(tag.value)
        q.watch(serial(ring), 1)
        with pytest.raises(OSError) as busy:
            q.watch(serial(ring), 2)
        assert busy.value.errno == errno.EBUSY and "watches that key already" in str(busy.value)
        noview = os.path.join(ring, "user:noview")
        write_key(noview, b"v")
        k = serial(noview)
        os.setxattr(noview, "user.keyctl.perm", b"10101010")
        with pytest.raises(PermissionError) as hidden:  # the errno picks the subclass, as before
            q.watch(k, 3)
        assert hidden.value.errno == errno.EACCES and "no VIEW permission" in str(hidden.value)
        with pytest.raises(OSError) as nokey:
            q.watch(2, 1)
    assert nokey.value.errno == errno.ENOKEY and str(nokey.value).endswith("watch 2 1: no such key (ENOKEY)")


def test_bash_writes_to_the_queue_get_the_errnos_the_readme_lists(mnt, ring):
    """What a shell user sees: strerror only; the README's table says what each one means."""
    script = (f"exec 3<>'{mnt}/watch_queue'; echo size 8 >&3; echo size 8 >&3; echo unwatch {serial(ring)} >&3; "
              f"echo watch {serial(ring)} 300 >&3; echo bogus >&3; echo watch 2 1 >&3")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    errors = [line.rsplit(": ", 1)[1] for line in result.stderr.splitlines()]
    assert errors == ["Device or resource busy", "Invalid slot", "Invalid argument", "Invalid argument",
                      "Required key not available"], result.stderr
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for name in ("EBUSY", "EBADSLT", "EINVAL", "ENOKEY", "EACCES", "EAGAIN", "EMSGSIZE", "EPERM", "ENOTCONN"):
        assert f"| {name} |" in readme, name


# --------------------------------------------- the man page and the completion, from the parser

def test_the_man_page_and_the_completion_are_the_parsers():
    """docs/wqfs.1 and docs/wqfs.bash's tables are what scripts/gen-docs makes of build_parser()."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen-docs"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_man_page_renders_without_warnings_and_has_every_option():
    page = os.path.join(ROOT, "docs", "wqfs.1")
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", page], capture_output=True, text=True).stdout
    from wqfs.cli import build_parser
    for name, sub in build_parser().commands.items():
        assert f"wqfs {name}" in text
        for action in sub._actions:
            for option in action.option_strings:
                if action.help != "==SUPPRESS==":
                    assert option in text, option
    assert "Watches established." in text and "%T" in text


def test_the_wheel_installs_the_man_page_and_the_completion(tmp_path):
    """pyproject's data files: share/man/man1/wqfs.1 and the completion, in the wheel pip builds
    (from a copy of the tree, so that the build leaves nothing in it)."""
    import shutil
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                ".pytest_cache", "*.so"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=600,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    import zipfile
    (wheel,) = tmp_path.glob("wqfs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for inside, source in (("share/man/man1/wqfs.1", "docs/wqfs.1"),
                               ("share/bash-completion/completions/wqfs.bash", "docs/wqfs.bash")):
            data = archive.read(f"wqfs-0.1.0.data/data/{inside}")
            with open(os.path.join(ROOT, source), "rb") as f:
                assert data == f.read(), inside


def _complete(line: str, words: list[str], env: dict | None = None) -> list[str]:
    """_wqfs run by bash itself, as bash calls it for `line<TAB>`: COMP_WORDS split as bash splits
    them (at the break characters of COMP_WORDBREAKS, ':' and '@' among them), COMP_LINE whole."""
    script = ('source "$1"; shift; COMP_LINE=$1; COMP_POINT=${#COMP_LINE}; shift; COMP_WORDS=("$@"); '
              'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _wqfs; printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "--norc", "-c", script, "bash", os.path.join(ROOT, "docs", "wqfs.bash"),
                             line, *words], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [reply for reply in result.stdout.split("\n")[:-1] if reply]


def test_completion_of_commands_options_and_values():
    assert _complete("wqfs wa", ["wqfs", "wa"]) == ["watch"]
    assert sorted(_complete("wqfs watch --ti", ["wqfs", "watch", "--ti"])) == ["--timefmt", "--timeout"]
    assert _complete("wqfs decode --style w", ["wqfs", "decode", "--style", "w"]) == ["watch_test"]
    assert _complete("wqfs watch -e link,u", ["wqfs", "watch", "-e", "link,u"]) == ["link,upd", "link,unlk"]
    assert _complete("wqfs run -- keyct", ["wqfs", "run", "--", "keyct"]) == ["keyctl"]
    assert _complete("wqfs watch @", ["wqfs", "watch", "@"]) == ["t/", "p/", "s/", "u/", "us/", "persistent/"]
    assert _complete("wqfs decode --style=j", ["wqfs", "decode", "--style", "=", "j"]) == ["json"]


def test_completion_of_keys_in_the_tree_cuts_at_the_colon(mnt, ring):
    name = os.path.basename(ring)                  # keyring:t-...
    write_key(os.path.join(ring, "user:pass word"), b"v")
    write_key(os.path.join(ring, "user:other"), b"v")
    os.mkdir(os.path.join(ring, "keyring:sub"))
    ring_desc = name.split(":", 1)[1]
    # @s/keyring:t-<TAB>: bash replaces what follows the ':' only
    line = f"wqfs watch --mount {mnt} @s/{name[:12]}"
    assert ring_desc.startswith(name[8:12])
    replies = _complete(line, ["wqfs", "watch", "--mount", mnt, "@", f"s/{name[:7]}", ":", name[8:12]])
    assert f"{ring_desc}/" in replies
    line = f"wqfs watch --mount {mnt} @s/{name}/user:pa"
    assert _complete(line, ["wqfs", "watch", "--mount", mnt, "@", f"s/keyring", ":", f"{ring_desc}/user", ":",
                            "pa"]) == ["pass\\ word"]
    line = f"wqfs watch --mount {mnt} @s/{name}/k"
    assert _complete(line, ["wqfs", "watch", "--mount", mnt, "@", "s/keyring", ":", f"{ring_desc}/k"]) == \
        [f"{ring_desc}/keyring:sub/"]
    line = f"wqfs watch {ring}/user:o"                  # a path of the mount itself
    assert _complete(line, ["wqfs", "watch", "@", f"s/keyring", ":", f"{ring_desc}/user", ":", "o"]) == ["other"]


def test_completion_of_unmount_offers_the_wqfs_mounts(mnt):
    assert mnt in _complete(f"wqfs unmount {mnt[:-3]}", ["wqfs", "unmount", mnt[:-3]])


def test_completion_in_a_real_bash_at_a_real_tab(mnt, ring):
    """Typed into an interactive bash on a terminal: TAB completes a name with its ':' in place."""
    import pty
    import select
    write_key(os.path.join(ring, "user:password"), b"v")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
    try:
        os.write(fd, f"source {ROOT}/docs/wqfs.bash\n".encode())
        os.write(fd, f"wqfs watch --mount {mnt} @s/{os.path.basename(ring)}/user:pa\t".encode())
        seen, wanted = b"", f"@s/{os.path.basename(ring)}/user:password ".encode()
        deadline = time.monotonic() + WAIT
        while wanted not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                seen += os.read(fd, 4096)
        assert wanted in seen, seen
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


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
