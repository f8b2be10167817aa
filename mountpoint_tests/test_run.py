"""`wqfs run`: unmodified programs whose watch_queue and key syscalls the daemon answers.

The C programs under c/ make the raw syscalls the way kernel clients do (pipe2 with
O_NOTIFICATION_PIPE, the two ioctls, keyctl, add_key, request_key) and print what they
get, records in watch_test.c's format (samples/watch_queue/watch_test.c consumer). The session builds them with
gcc, once dynamically and, where libc.a is installed, once statically. The real
keyutils `keyctl` is run too.

Every program runs in a POSIX session of its own (start_new_session): under `wqfs run`
@s is keyed by the POSIX session, and a program sharing pytest's session would give
that session a keyring of its own, which MOUNT/@s then shows to every other test.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator, Optional

import pytest

from helpers import NOBODY, NOBODY_UID, ROOT, WAIT, Daemon, read_line, run_argv, serial, write_key
from slowfs import serving

from wqfs.mounts import force_unmount, is_mounted

C_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c")
PROGRAMS = ("wq_watch", "wq_errors", "wq_keys", "wq_proc", "wq_fuzz")
STATIC = ("wq_errors", "wq_keys", "wq_proc")
BUILDS = ("dynamic", "static")


# ------------------------------------------------------------------ building and running

class Programs:
    def __init__(self, directory: str, static: bool) -> None:
        self.dir = directory
        self.static = static

    def __call__(self, name: str, build: str = "dynamic") -> str:
        if build == "static":
            if not self.static:
                pytest.skip("no libc.a for a static build (Debian: apt-get install libc6-dev)")
            name += "-static"
        return os.path.join(self.dir, name)


@pytest.fixture(scope="session")
def prog(tmp_path_factory) -> Programs:
    """The test programs, compiled once per session into a temporary directory."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the test programs (scripts/install-system-deps installs it)"
    out = str(tmp_path_factory.mktemp("wq-programs"))

    def build(name: str, *flags: str, suffix: str = "") -> None:
        command = [gcc, "-O1", "-Wall", "-pthread", *flags, "-o", os.path.join(out, name + suffix),
                   os.path.join(C_DIR, name + ".c")]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr}"

    for name in PROGRAMS:
        build(name)
    libc_a = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True, text=True).stdout.strip()
    static = os.path.isabs(libc_a) and os.path.exists(libc_a)
    if static:
        for name in STATIC:
            build(name, "-static", suffix="-static")
    return Programs(out, static)


def wqfs_run(mnt: str, *argv: str, timeout: float = 60, new_session: bool = False) -> subprocess.CompletedProcess:
    """Run a program to its end, in a POSIX session of its own."""
    return subprocess.run(run_argv(mnt, *argv, new_session=new_session), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL)


@pytest.fixture
def start() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a process in a session (and process group) of its own; the group is killed at the end."""
    started: list[subprocess.Popen] = []

    def make(argv: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.poll() is None:  # its pid is still ours: so is the group it leads
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(WAIT)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def child_of(pid: int, comm: Optional[str] = None, timeout: float = WAIT) -> int:
    """The (first) child of pid, once it exists (and runs comm, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
            if children:
                child = int(children[0])
                with open(f"/proc/{child}/comm") as f:
                    if comm is None or f.read().strip() == comm:
                        return child
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"process {pid} has no child{' ' + comm if comm else ''}")


def wait_in_syscall(pid: int, numbers: tuple[str, ...], timeout: float = WAIT) -> None:
    """Wait until the task sits in one of the given syscalls (x86_64 numbers)."""
    deadline = time.monotonic() + timeout
    current = "?"
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/syscall") as f:
            current = f.read().split()[0]
        if current in numbers:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never entered syscall {numbers} (at {current})")


def records(lines: list[str]) -> list[str]:
    """watch_test output without the read() lines and with offsets blanked: the records alone,
    for where the split of records between reads depends on timing."""
    return [re.sub(r"^NOTIFY\[[0-9a-f]{3}\]", "NOTIFY[]", line) for line in lines
            if not line.startswith("read() = ")]


def key_record(key: int, subtype: int, tag: int, aux: int = 0, offset: int = 0) -> list[str]:
    names = ["instantiated", "updated", "linked", "unlinked", "cleared", "revoked", "invalidated", "setattr"]
    return [f"NOTIFY[{offset:03x}]: ty=000001 sy={subtype:02x} i={(tag << 8) | 16:08x}",
            f"KEY {key:08x} change={subtype}[{names[subtype]}] aux={aux}"]


def removal_record(tag: int, offset: int = 0) -> list[str]:
    return [f"NOTIFY[{offset:03x}]: ty=000000 sy=00 i={(tag << 8) | 16:08x}",
            f"REMOVAL of watchpoint {tag:08x}"]


def one_read(*recs: list[str]) -> list[str]:
    """A read() of whole 16-byte records, with their offsets, as watch_test prints it."""
    lines = [f"read() = {16 * len(recs)}"]
    for i, rec in enumerate(recs):
        lines += [re.sub(r"^NOTIFY\[000\]", f"NOTIFY[{16 * i:03x}]", rec[0]), rec[1]]
    return lines


def out_lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stdout.splitlines()


# ------------------------------------------------------------------ set-up and error paths

EXPECTED_ERRORS = """\
pipe2 notification: 0
ends differ: yes
accmode read end: 0
accmode write end: 1
cloexec: 0 0
nonblock: 0 0
pipe2 all flags: 0
cloexec: 1 1
nonblock: 1 1
pipe2 O_APPEND: EINVAL
pipe2 O_SYNC: EINVAL
pipe2 bit 30: EINVAL
pipe2 bad pointer: EFAULT
pipe2 read-only memory: EFAULT
fds leaked: 0
plain pipe2 still works: 0
size plain pipe: ENODEV
size /dev/null: ENOTTY
size bad fd: EBADF
size 0: EINVAL
size 513: EINVAL
size -1: EINVAL
size 256: 0
size again: EBUSY
size via write end: EBUSY
size bad value after set: EBUSY
filter plain pipe: ENODEV
filter /dev/null: ENOTTY
filter NULL: 0
filter bad pointer: EFAULT
filter nr 0: EINVAL
filter nr 17: EINVAL
filter reserved: EINVAL
filter info outside mask: EINVAL
filter mask on length: EINVAL
filter by tag: 0
filter unknown type still checked: EINVAL
filter unknown type: 0
filter 16 entries: 0
filter array unreadable: EFAULT
filter via write end: 0
fionread empty: 0
fionread value: 0
fionread bad pointer: EFAULT
fionread plain pipe: 0
fionread plain value: 3
write to write end: EXDEV
write to read end: EBADF
read size 0: 0
read empty nonblock: EAGAIN
read after writer closed: 0
read after writer closed again: 0
watch on unsized queue: 0
update with unsized queue: 0
read unsized queue: EAGAIN
watch tag 256: EINVAL
watch tag -2: EINVAL
watch tag 256 key 0: EINVAL
watch key 0: EINVAL
watch key -6: EINVAL
watch key -9: EINVAL
watch unknown key: ENOKEY
watch unknown key bad fd: ENOKEY
watch bad fd: EINVAL
watch plain pipe: EINVAL
watch /dev/null: EINVAL
watch: 0
watch again other tag: EBUSY
watch again via write end: EBUSY
unwatch: 0
unwatch again: EBADSLT
watch tag 0: 0
watch tag 255 session: 0
watch user keyring: 0
watch revoked: EKEYREVOKED
unwatch revoked: EKEYREVOKED
setperm no view: 0
watch without view: EACCES
add_key type NULL: EFAULT
add_key type bad pointer: EFAULT
add_key type runs off the map: EFAULT
add_key type empty: EINVAL
add_key type 32 chars: EINVAL
add_key type 31 chars: ENODEV
add_key type .user: EPERM
add_key plen over 1 MiB: EINVAL
add_key description bad pointer: EFAULT
add_key description runs off the map: EFAULT
add_key description 4096: EINVAL
add_key description 4095: serial
add_key payload bad pointer: EFAULT
add_key user empty payload: EINVAL
add_key keyring .name: EPERM
add_key ring 0: EINVAL
add_key unknown ring: ENOKEY
update over a page: EINVAL
update bad pointer: EFAULT
describe length: 26
describe short buffer: 26
describe short buffer untouched: yes
describe exact buffer: 26
describe text: user;0;0;3f010000;strings
describe bad pointer: EFAULT
read NULL: 5
read short buffer: 5
read short buffer untouched: yes
read: 5
read text: value
read bad pointer: EFAULT
capabilities: 2
capabilities notifications: yes
capabilities tail cleared: yes
capabilities one byte: 2
capabilities second byte untouched: yes
capabilities NULL 0: 2
capabilities bad pointer: EFAULT
keyctl dh_compute: EOPNOTSUPP
keyctl 99: EOPNOTSUPP
keyctl -1: EOPNOTSUPP
search bad type: EFAULT
search unknown type: ENOKEY
search missing: ENOKEY
search finds the key: yes
request_key missing: ENOKEY
request_key unknown type: ENOKEY
request_key type bad pointer: EFAULT
request_key finds the key: yes
"""


@pytest.mark.parametrize("build", BUILDS)
def test_queue_setup_and_every_error_path(mnt, prog, build):
    """pipe2 flags, SET_SIZE/SET_FILTER/FIONREAD argument handling and errno, write and read
    on the ends, KEYCTL_WATCH_KEY's error order, and the kernel's string and buffer rules."""
    result = wqfs_run(mnt, prog("wq_errors", build))
    assert (result.returncode, result.stderr) == (0, "")
    expected, got = EXPECTED_ERRORS.splitlines(), out_lines(result)
    assert got == expected, "\n".join(f"{'  ' if a == b else '!!'} got {a!r} want {b!r}"
                                      for a, b in zip(got, expected))


# ------------------------------------------------------------------ notifications from keyctl

@pytest.mark.parametrize("build", BUILDS)
def test_every_subtype_keyctl_produces_in_watch_test_format(mnt, prog, build):
    result = wqfs_run(mnt, prog("wq_keys", build))
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    lines = out_lines(result)
    ids = dict(part.split("=") for part in lines[0].split())
    ring, key, other, k2, k3, k5 = (int(ids[n]) for n in ("ring", "key", "other", "k2", "k3", "k5"))

    phase1 = one_read(
        key_record(key, 1, 2),             # update
        key_record(ring, 2, 1, other),     # link other into ring (aux: the member)
        key_record(ring, 3, 1, other),     # unlink it
        key_record(key, 7, 2),             # setperm
        key_record(key, 7, 2),             # set_timeout
        key_record(key, 7, 2),             # chown (gid); chown(-1, -1) posts nothing
        key_record(key, 1, 2),             # add_key of an existing user key updates it
        key_record(ring, 2, 1, key),       # a link that is already there is posted again
        key_record(ring, 4, 1),            # clear: one record, no unlinks
        key_record(ring, 2, 1, other),     # move from @s: linked here (unlinked on @s, unwatched)
        removal_record(2))                 # explicit unwatch, tag 2
    expected = ["FIONREAD = 176", "read 8: ENOBUFS", *phase1,
                "revoke again: EKEYREVOKED", "unwatch revoked: EKEYREVOKED",
                *one_read(key_record(k2, 5, 3)), *one_read(removal_record(3)),     # revoked, then GC
                *one_read(key_record(k3, 6, 4)), *one_read(removal_record(4)),     # invalidated, then GC
                "FIONREAD = 512"]
    loss = ["read() = 432", *[line for i in range(27) for line in key_record(k5, 1, 5, offset=16 * i)],
            "read() = 80", *[line for i in range(5) for line in key_record(k5, 1, 5, offset=16 * i)],
            "read() = 8", "NOTIFY[000]: ty=000000 sy=01 i=00000008", "-- LOSS --"]
    filtered = one_read(key_record(k5, 1, 6),   # only UPDATED passes the first filter
                        key_record(key, 7, 7),  # SETATTR with tag 7 passes the second
                        key_record(k5, 7, 6),   # no filter
                        removal_record(6))      # META passes a filter that rejects everything
    assert lines[1:] == expected + loss + filtered + ["-- END --"]


# ------------------------------------------------------------------ records from the mount

def test_a_c_watcher_prints_records_posted_by_file_operations(mnt, ring, prog, start):
    """The program watches a keyring and a key of pytest's session by serial (it needs only
    View); files written, changed and removed on the mount post to its queue."""
    key_path = os.path.join(ring, "user:fileop")
    write_key(key_path, b"v1")
    r, k = serial(ring), serial(key_path)
    watcher = start(run_argv(mnt, prog("wq_watch"), f"{r}:1", f"{k}:2"))
    assert read_line(watcher.stderr) == "ready\n", watcher.stderr.read1().decode()

    def step(action: Callable[[], object], expect: Callable[[], list[str]]) -> None:
        action()
        wanted = expect()
        got = [read_line(watcher.stdout).rstrip("\n") for _ in wanted]
        assert got == wanted

    step(lambda: write_key(key_path, b"v2"), lambda: one_read(key_record(k, 1, 2)))
    step(lambda: subprocess.run(["sh", "-c", f"echo v3 > {mnt}/keys/{r}/user:fileop"], check=True),
         lambda: one_read(key_record(k, 1, 2)))
    step(lambda: os.setxattr(key_path, "user.keyctl.perm", b"0x3f3f0000"),
         lambda: one_read(key_record(k, 7, 2)))
    second = os.path.join(ring, "user:second")
    step(lambda: write_key(second, b"x"), lambda: one_read(key_record(r, 2, 1, serial(second))))
    s2 = serial(second)
    step(lambda: os.unlink(second), lambda: one_read(key_record(r, 3, 1, s2)))
    sub = os.path.join(ring, "keyring:sub")
    step(lambda: os.mkdir(sub), lambda: one_read(key_record(r, 2, 1, serial(sub))))
    s3 = serial(sub)
    step(lambda: os.rmdir(sub), lambda: one_read(key_record(r, 3, 1, s3)))

    # clear: CLEARED on the ring; the key, linked nowhere else, is destroyed: its watch's removal
    # follows from the garbage collector, in the same read or the next.
    os.setxattr(ring, "user.keyctl.clear", b"")
    got: list[str] = []
    while len(records(got)) < 4:
        line = read_line(watcher.stdout)
        assert line, f"the watcher stopped after {got}"
        got.append(line.rstrip("\n"))
    assert records(got) == records(key_record(r, 4, 1) + removal_record(2))

    # SIGTERM to `wqfs run` reaches the program, blocked in read(); the status says how it died.
    watcher.send_signal(signal.SIGTERM)
    assert watcher.wait(WAIT) == 128 + signal.SIGTERM
    assert watcher.stdout.read() == b""


# ------------------------------------------------------------------ processes

def test_exit_status_is_the_programs(mnt, prog):
    assert wqfs_run(mnt, prog("wq_proc"), "exit", "42").returncode == 42
    assert wqfs_run(mnt, prog("wq_proc"), "exit", "0").returncode == 0
    assert wqfs_run(mnt, prog("wq_proc"), "signal").returncode == 128 + signal.SIGKILL
    assert wqfs_run(mnt, "sh", "-c", "exit 3").returncode == 3
    missing = wqfs_run(mnt, "/nonexistent/program")
    assert missing.returncode == 127
    assert missing.stderr.count("\n") == 1 and "not found" in missing.stderr


def test_the_program_knows_its_mount(mnt):
    result = wqfs_run(mnt, "sh", "-c", 'echo "$WQFS_MOUNT"')
    assert result.stdout == os.path.realpath(mnt) + "\n"


@pytest.mark.parametrize("build", BUILDS)
def test_fork_and_exec_inherit_the_session_keyring_and_the_queue(mnt, prog, build):
    result = wqfs_run(mnt, prog("wq_proc", build), "fork")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    lines = out_lines(result)
    assert lines[:7] == ["child: same session keyring: yes",
                         "child: own process keyring: none yet",   # a process keyring is not inherited
                         "child: new process keyring differs: yes",
                         "child status: 7",
                         "exec: same session keyring: yes",
                         "exec: fionread on the inherited queue: 16",
                         "exec child status: 0"]
    ids = dict(part.split("=") for part in lines[7].split())
    session, child, execd = int(ids["session"]), int(ids["from-child"]), int(ids["from-exec"])
    assert min(child, execd) > 0
    assert lines[8:] == one_read(key_record(session, 2, 1, child), key_record(session, 2, 1, execd))


@pytest.mark.parametrize("build", BUILDS)
def test_threads_make_concurrent_syscalls(mnt, prog, build):
    result = wqfs_run(mnt, prog("wq_proc", build), "threads")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    lines = out_lines(result)
    assert lines[:5] == ["reader thread got 16 bytes",
                         "thread keyrings distinct: yes",
                         "process and session keyrings shared: yes",
                         "process keyring is the main thread's: yes",
                         "records: 4"]
    assert [line.split("=")[0] for line in lines[5:]] == ["key t0", "key t1", "key t2", "key t3"]
    assert all(int(line.split("=")[1]) > 0 for line in lines[5:])


def test_a_watch_on_a_key_under_construction_waits_for_it(mnt, prog):
    """Keys made under construction through the mount: a watch waits (in keyctl) until the
    key is instantiated, or fails with the negated key's error."""
    result = wqfs_run(mnt, prog("wq_proc"), "construct", mnt)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    lines = out_lines(result)
    ids = dict(part.split("=") for part in lines[0].split())
    ring, pending, negated = int(ids["ring"]), int(ids["pending"]), int(ids["negated"])
    assert lines[1:] == [*one_read(key_record(ring, 2, 2, pending), key_record(ring, 2, 2, negated)),
                         "instantiated: child waits in keyctl: yes",
                         "instantiate: 0",
                         "instantiated: child watch: 0",
                         "update: 0",
                         *one_read(key_record(pending, 1, 1)),
                         "negated: child waits in keyctl: yes",
                         "negate: 0",
                         "negated: child watch: ENOKEY"]


def watch_room(mnt: str, prog: Programs, expected: Optional[int] = None) -> int:
    """How many watches a program with RLIMIT_NOFILE 40 may still add for uid 0 (the kernel
    counts every watch of the user against it). Watches of programs that just ended go when
    FUSE delivers their release, so this asks again until the answer settles."""
    deadline = time.monotonic() + WAIT
    last = None
    while True:
        result = wqfs_run(mnt, prog("wq_proc"), "limit", "40")
        match = re.fullmatch(r"watches=(\d+) then EAGAIN\n", result.stdout)
        assert match, result.stdout + result.stderr
        value = int(match.group(1))
        if (value == expected) if expected is not None else (value == last):
            return value
        if time.monotonic() > deadline:
            return value
        last = value
        time.sleep(0.1)


def test_a_killed_program_leaves_no_watch_behind(mnt, prog, start):
    before = watch_room(mnt, prog)
    assert before > 3
    watcher = start(run_argv(mnt, prog("wq_watch"), "-n", "@s:1", "@u:2", "@us:3"))
    assert read_line(watcher.stderr) == "ready\n"
    assert watch_room(mnt, prog, before - 3) == before - 3
    program = child_of(watcher.pid, "wq_watch")
    wait_in_syscall(program, ("0",))  # blocked in read() on its queue
    os.kill(program, signal.SIGKILL)
    assert watcher.wait(WAIT) == 128 + signal.SIGKILL
    assert watch_room(mnt, prog, before) == before


def test_with_the_write_end_closed_an_empty_queue_reads_eof(mnt, prog, start):
    """watch_test's loop, with `-w` closing pipefd[1] after the set-up: read() returns 0."""
    watcher = start(run_argv(mnt, prog("wq_watch"), "-w", "@s:1"))
    assert read_line(watcher.stderr) == "ready\n"
    assert read_line(watcher.stdout) == "-- END --\n"
    assert watcher.wait(WAIT) == 0


def test_a_private_daemon_serves_when_none_is_at_the_mount(tmp_path, prog):
    lonely = tmp_path / "nothing-mounted-here"
    lonely.mkdir()
    result = wqfs_run(str(lonely), prog("wq_proc"), "exit", "5")
    assert result.returncode == 5, result.stderr
    result = wqfs_run(str(lonely), "keyctl", "supports")
    assert "have_notify=1" in result.stdout.splitlines(), result.stdout + result.stderr


def test_private_gives_a_fresh_key_store_even_where_a_daemon_serves(mnt, ring):
    write_key(os.path.join(ring, "user:only-in-the-suite-daemon"), b"x")
    listing = wqfs_run(mnt, "sh", "-c", 'ls "$WQFS_MOUNT"/keys | wc -l')
    private = subprocess.run(
        [sys.executable, "-m", "wqfs", "run", "--private", "--mount", mnt, "--", "sh", "-c",
         'echo "$WQFS_MOUNT"; ls "$WQFS_MOUNT"/keys | wc -l'],
        capture_output=True, text=True, timeout=60, cwd=ROOT, start_new_session=True)
    where, count = private.stdout.split()
    assert where != os.path.realpath(mnt) and not os.path.exists(where)  # gone with the program
    assert int(count) < int(listing.stdout)  # a fresh store: none of the suite's keys


def test_a_private_daemon_ends_when_wqfs_run_is_killed(prog, start):
    runner = start([sys.executable, "-m", "wqfs", "run", "--private", "--", "sleep", "60"])
    deadline = time.monotonic() + WAIT
    while True:  # two children: the private daemon, then the program
        with open(f"/proc/{runner.pid}/task/{runner.pid}/children") as f:
            children = [int(p) for p in f.read().split()]
        comms = {}
        for pid in children:
            with open(f"/proc/{pid}/comm") as f:
                comms[pid] = f.read().strip()
        if len(children) == 2 and "sleep" in comms.values():
            break
        assert time.monotonic() < deadline, f"wqfs run's children: {comms}"
        time.sleep(0.02)
    program = next(pid for pid, comm in comms.items() if comm == "sleep")
    daemon = next(pid for pid in children if pid != program)
    with open(f"/proc/{program}/environ", "rb") as f:
        mount = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)[b"WQFS_MOUNT"].decode()
    try:
        assert is_mounted(mount)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while os.path.exists(f"/proc/{daemon}") and open(f"/proc/{daemon}/stat").read().split()[2] != "Z":
            assert time.monotonic() < deadline, "the private daemon outlived wqfs run"
            time.sleep(0.05)
        assert not is_mounted(mount)
        assert not os.path.exists(os.path.dirname(mount))  # and took its directory with it
    finally:  # whatever failed, no daemon, mount or directory stays behind
        for pid in (daemon, program):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        force_unmount(mount)
        shutil.rmtree(os.path.dirname(mount), ignore_errors=True)


FUZZ_CALLS = 5000
FUZZ_LIMIT = 150  # seconds for one wq_fuzz run; the program itself ends a call that takes 20 s
SLOW_DELAY = "0.2"  # seconds each read of the slow mount takes (wq_fuzz drops its cache each 500 calls)


def fuzz_seeds() -> list[int]:
    """1, 2, 3; WQFS_FUZZ_SEEDS=A-B for a manual sweep."""
    first, _, last = os.environ.get("WQFS_FUZZ_SEEDS", "1-3").partition("-")
    return list(range(int(first), int(last or first) + 1))


@pytest.fixture
def slow_file() -> Iterator[str]:
    """A file of a slow third-party FUSE mount (slowfs.py): each read of it takes SLOW_DELAY."""
    with serving(float(SLOW_DELAY), "fuzz-slow-description", prefix="wqfs-fuzz-slow-") as server:
        yield server.path


def run_fuzz(mnt: str, program: str, seed: int, calls: int, slow: str) -> tuple[int, str, str]:
    """wq_fuzz SEED CALLS under `wqfs run`, in a session of its own: (status, stdout, stderr).
    A run that outlives FUZZ_LIMIT, or still runs 5 s after its program reported a call that did
    not return, is killed (its process group) and fails the test with what it printed, rather
    than hanging the suite. (A program whose daemon froze cannot exit: closing its queue fds
    waits for FUSE flushes the daemon never answers; so output goes to files, not pipes.)"""
    import tempfile
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(run_argv(mnt, program, str(seed), str(calls)), stdout=out, stderr=err,
                                text=True, cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL,
                                env={**os.environ, "WQ_FUZZ_SLOW": slow})
        deadline = time.monotonic() + FUZZ_LIMIT
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
                out.seek(0)
                if "did not return within" in out.read():
                    deadline = min(deadline, time.monotonic() + 5)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(WAIT)
                except subprocess.TimeoutExpired:
                    pass
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if time.monotonic() >= deadline:
        pytest.fail(f"wq_fuzz {seed} {calls} did not finish (limit {FUZZ_LIMIT} s):\n{stdout}{stderr}")
    return proc.returncode, stdout, stderr


@pytest.mark.parametrize("seed", fuzz_seeds())
def test_random_wrong_syscalls_get_errno_and_the_daemon_keeps_serving(prog, slow_file, seed):
    """wq_fuzz makes every trapped call with mostly wrong arguments (bad and half-mapped
    pointers, unknown options, random serials, sizes, flags, filters), and pointers into pages
    only a FUSE server brings in: a fresh MAP_PRIVATE mapping of MOUNT/keys/SERIAL (so this very
    daemon, while it copies) and of a slow third-party mount, and pointers that run off their
    ends. Its own daemon, so that random serials and setperms cannot touch the keys of other
    tests. A call that never returns ends the program (status 3), which names it."""
    fuzzed = Daemon()
    try:
        status, out, err = run_fuzz(fuzzed.path, prog("wq_fuzz"), seed, FUZZ_CALLS, slow_file)
        log = fuzzed.log()
        assert status == 0, f"seed {seed}:\n{out}{err}\n{log[-4000:]}"
        assert out.startswith(f"calls: {FUZZ_CALLS},"), out
        mapped = re.search(r"^mapped: (\d+) remaps, (\d+) failed, (\d+) slow$", out, re.M)
        assert mapped, out
        remaps, failed, slow = map(int, mapped.groups())
        assert remaps == FUZZ_CALLS // 50 and failed < remaps // 2, out  # the key file was mapped
        assert slow == FUZZ_CALLS // 500, out
        assert fuzzed.alive, log
        assert "internal error" not in log, log
        after = wqfs_run(fuzzed.path, "keyctl", "add", "user", "after", "v", "@s")
        assert after.returncode == 0 and int(after.stdout) > 0, after.stderr
    finally:
        fuzzed.stop()


def test_o_nonblock_set_after_pipe2_is_honoured(mnt):
    """FUSE tells O_NONBLOCK at open only; wqfs run traps fcntl(F_SETFL) and FIONBIO."""
    program = """
import fcntl, os, struct, subprocess, threading
r, w = os.pipe2(os.O_EXCL)  # O_NOTIFICATION_PIPE
fcntl.ioctl(r, 0x5760, 16)
for how in ("F_SETFL", "FIONBIO"):
    if how == "F_SETFL":
        fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_NONBLOCK)
    else:
        fcntl.ioctl(r, 0x5421, struct.pack("i", 1))
    try:
        os.read(r, 4096)
        print(how, "read returned")
    except BlockingIOError:
        print(how, "EAGAIN")
    if how == "F_SETFL":
        fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    else:
        fcntl.ioctl(r, 0x5421, struct.pack("i", 0))
ring = int(subprocess.run(["keyctl", "newring", "nb", "@s"], capture_output=True, text=True).stdout)
keyctl_watch = __import__("ctypes").CDLL(None).syscall
keyctl_watch(250, 32, ring, r, 7)
threading.Timer(0.2, lambda: subprocess.run(["keyctl", "add", "user", "k", "v", str(ring)], capture_output=True)).start()
print("blocking read:", len(os.read(r, 4096)))  # waits for the record, no EAGAIN
"""
    result = wqfs_run(mnt, sys.executable, "-c", program)
    assert result.stdout.splitlines() == ["F_SETFL EAGAIN", "FIONBIO EAGAIN", "blocking read: 16"], \
        result.stdout + result.stderr


def test_another_user_runs_programs_against_an_allow_other_daemon(mnt):
    result = subprocess.run(NOBODY + run_argv(mnt, "sh", "-c", "keyctl add user theirs v @s && keyctl rdescribe @s"),
                            capture_output=True, text=True, timeout=60, cwd=ROOT, start_new_session=True)
    assert result.returncode == 0, result.stderr
    serial_line, described = result.stdout.splitlines()
    assert int(serial_line) > 0
    assert described.startswith(f"keyring;{NOBODY_UID};{NOBODY_UID};")  # the caller's identity, from the kernel


def test_a_daemon_without_allow_other_refuses_other_users_in_one_line():
    private = Daemon(allow_other=False)
    try:
        refused = subprocess.run(NOBODY + run_argv(private.path, "true"), capture_output=True, text=True,
                                 timeout=60, cwd=ROOT, start_new_session=True)
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and "serves uid 0 only" in refused.stderr, refused.stderr
        assert wqfs_run(private.path, "keyctl", "add", "user", "mine", "v", "@s").returncode == 0
        assert private.alive and "internal error" not in private.log()
    finally:
        private.stop()


# What wqfs run traps only to tell a notification pipe apart: on anything else the kernel answers.
PASSTHROUGH = """
import fcntl, os, tempfile
r, w = os.pipe()
print("F_GETPIPE_SZ", fcntl.fcntl(r, 1032))
print("F_SETPIPE_SZ", fcntl.fcntl(w, 1031, 8192), fcntl.fcntl(r, 1032))
print("write 0", os.write(w, b""))
os.write(w, b"spliced")
with tempfile.TemporaryFile() as f:
    print("splice", os.splice(r, f.fileno(), 7), "write 0 to a file", os.write(f.fileno(), b""))
    f.seek(0)
    print(f.read().decode())
try:
    fcntl.fcntl(w + 100, 1032)
except OSError as e:
    print("bad fd", e.errno)
"""


def test_calls_trapped_for_notification_pipes_reach_the_kernel_on_other_fds(mnt):
    result = wqfs_run(mnt, sys.executable, "-c", PASSTHROUGH)
    assert result.stdout.splitlines() == [
        "F_GETPIPE_SZ 65536", "F_SETPIPE_SZ 8192 8192", "write 0 0",
        "splice 7 write 0 to a file 0", "spliced", f"bad fd {errno.EBADF}"], result.stderr


# ------------------------------------------------------------------ the real keyutils

class Shell:
    """A login shell as `pam_keyinit` gives one: sh under `wqfs run --new-session`, with a session
    keyring that the commands it runs share; fed commands on stdin, every line it prints kept."""

    def __init__(self, start: Callable[..., subprocess.Popen], mnt: str) -> None:
        self.proc = start(run_argv(mnt, "sh", new_session=True), stdin=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.used: set[int] = set()
        self.index = -1  # of the line the last wait_for matched

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, pattern: str) -> re.Match:
        """The first line so far, or to come, that matches pattern and no earlier wait_for took
        (background output interleaves with the commands')."""
        seen = 0
        while True:
            for index in range(seen, len(self.lines)):
                match = re.fullmatch(pattern, self.lines[index])
                if match and index not in self.used:
                    self.used.add(index)
                    self.index = index
                    return match
            seen = len(self.lines)
            line = read_line(self.proc.stdout)
            assert line, f"no line matched {pattern!r}; the shell printed {self.lines}"
            self.lines.append(line.rstrip("\n"))

    def before(self, count: int) -> list[str]:
        """The count lines before the one the last wait_for matched."""
        return self.lines[self.index - count:self.index]


def test_keyctl_add_prints_a_serial_that_the_mount_shows(mnt, start):
    shell = Shell(start, mnt)
    shell.send(f'k=$(keyctl add user k v @s); echo "added=$k"')
    k = int(shell.wait_for(r"added=(\d+)").group(1))
    shell.send(f"ls {mnt}/keys | grep -x $k; readlink {mnt}/@s; ls {mnt}/@s/; echo done")
    shell.wait_for("done")
    listing = shell.before(3)
    assert listing[0] == str(k)
    ses = int(re.fullmatch(r"keys/(\d+)", listing[1]).group(1))  # the tree's @s is the session's
    assert listing[2] == "user:k"
    shell.send(f"keyctl rdescribe @s; keyctl print {k}; keyctl show @s; echo done")
    shell.wait_for("done")
    assert shell.before(5) == ["keyring;0;0;3f030000;_ses", "v", "Keyring",
                                  f"{ses:>10} --alswrv      0     0  keyring: _ses",
                                  f"{k:>10} --alswrv      0     0   \\_ user: k"]
    shell.send("exit")
    assert shell.proc.wait(WAIT) == 0


def test_keyctl_watch_prints_link_and_unlk_lines_for_other_processes(mnt, start):
    shell = Shell(start, mnt)
    shell.send(f"keyctl watch @s & echo watcher=$!")
    watcher = int(shell.wait_for(r"watcher=(\d+)").group(1))  # keyctl itself: the shell is trapped
    wait_in_syscall(watcher, ("7", "271"))  # poll(): its watch is set
    shell.send(f"readlink {mnt}/@s")
    ses = int(shell.wait_for(r"keys/(\d+)").group(1))

    shell.send(f'k=$(keyctl add user k1 v @s); echo "added=$k"')
    k = int(shell.wait_for(r"added=(\d+)").group(1))
    shell.wait_for(f"{ses} link {k}")
    shell.send(f"keyctl unlink $k @s; echo unlinked=$?")
    shell.wait_for("unlinked=0")
    shell.wait_for(f"{ses} unlk {k}")
    # The same session keyring through the mount, from this session's shell.
    shell.send(f"echo t > {mnt}/@s/user:tree; echo wrote=$?")
    shell.wait_for("wrote=0")
    tree = int(shell.wait_for(f"{ses} link (\\d+)").group(1))
    assert tree != k and tree == serial(f"{mnt}/keys/{tree}")
    shell.send(f"keyctl clear @s; keyctl setperm {ses} 0x3f3f0000")
    shell.wait_for(f"{ses} clr")
    shell.wait_for(f"{ses} attr")

    os.kill(watcher, signal.SIGTERM)  # keyctl watch ends its loop
    shell.wait_for("Monitoring terminated")
    shell.send(f"wait {watcher}; echo status=$?")
    assert shell.wait_for(r"status=(\d+)").group(1) == "0"
    shell.send("exit")
    assert shell.proc.wait(WAIT) == 0


KEYUTILS_SCRIPT = r"""
set -e
M=$1
ring=$(keyctl newring wqring @s)
k=$(keyctl add user k v $ring)
sub=$(keyctl newring sub $ring)
k2=$(keyctl add user k2 hello $sub)
ses=$(readlink $M/@s); ses=${ses#keys/}
echo "ses=$ses ring=$ring k=$k sub=$sub k2=$k2"
echo "--- show"; keyctl show $ring
echo "--- describe"; keyctl describe $k; keyctl rdescribe $k; keyctl rdescribe @s
echo "--- print"; keyctl print $k; keyctl pipe $k2; echo
echo "--- list"; keyctl list $sub; keyctl rlist $sub
echo "--- link"; keyctl link $k $sub; keyctl list $sub
echo "--- unlink"; keyctl unlink $k $sub; keyctl list $sub
keyctl unlink $k $sub || echo "unlink again failed: $?"
keyctl unlink $k $ring
echo "--- setperm"; keyctl setperm $k2 0x3f3f0000; keyctl describe $k2
keyctl setperm $k2 0x40000000 || echo "bad perm failed: $?"
echo "--- timeout"; keyctl timeout $k2 1000; getfattr --absolute-names --only-values -n user.keyctl.expiry $M/keys/$k2; echo
echo "--- revoke"; keyctl revoke $k2; keyctl describe $k2 || echo "describe failed: $?"
keyctl print $k2 || echo "print failed: $?"
echo "--- search"; keyctl search @s keyring sub; keyctl search $ring user k || echo "search failed: $?"
echo "--- clear"; keyctl clear $ring; keyctl list $ring
echo "--- supports"; keyctl supports | grep notify
"""


def test_keyctl_commands_behave_as_on_a_real_kernel(mnt):
    """show, describe, print, list, link, unlink, revoke, setperm and timeout from keyutils,
    all children of one shell under `wqfs run --new-session` (they inherit its filter and its
    session keyring, as a login session's processes do)."""
    result = wqfs_run(mnt, "sh", "-c", KEYUTILS_SCRIPT, "sh", mnt, new_session=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = out_lines(result)
    ids = {name: int(value) for name, value in (part.split("=") for part in lines[0].split())}
    ses, ring, k, sub, k2 = (ids[n] for n in ("ses", "ring", "k", "sub", "k2"))
    usr = "--alswrv     0     0"
    assert lines[1:] == [
        "--- show",
        "Keyring",
        f"{ring:>10} --alswrv      0     0  keyring: wqring",
        f"{k:>10} --alswrv      0     0   \\_ user: k",
        f"{sub:>10} --alswrv      0     0   \\_ keyring: sub",
        f"{k2:>10} --alswrv      0     0       \\_ user: k2",
        "--- describe",
        f"{k:>9}: alswrv-----v------------     0     0 user: k",
        "user;0;0;3f010000;k",
        "keyring;0;0;3f030000;_ses",
        "--- print",
        "v",
        "hello",
        "--- list",
        "1 key in keyring:",
        f"{k2:>9}: {usr} user: k2",
        str(k2),
        "--- link",
        "2 keys in keyring:",
        *lines[lines.index("--- link") + 2:lines.index("--- link") + 4],  # in the keyring's order
        "--- unlink",
        "1 key in keyring:",
        f"{k2:>9}: {usr} user: k2",
        "unlink again failed: 1",
        "--- setperm",
        f"{k2:>9}: alswrvalswrv------------     0     0 user: k2",
        "bad perm failed: 1",
        "--- timeout",
        lines[lines.index("--- timeout") + 1],
        "--- revoke",
        "describe failed: 1",
        "print failed: 1",
        "--- search",
        str(sub),
        "search failed: 1",
        "--- clear",
        "keyring is empty",
        "--- supports",
        "have_notify=1",
    ]
    link = lines.index("--- link")
    assert sorted(lines[link + 2:link + 4]) == sorted([f"{k2:>9}: {usr} user: k2", f"{k:>9}: {usr} user: k"])
    assert 990 <= int(lines[lines.index("--- timeout") + 1]) <= 1000
    assert ses > 0
    assert result.stderr.splitlines() == [
        "keyctl_unlink: No such file or directory",
        "keyctl_setperm: Invalid argument",
        "keyctl_describe_alloc: Key has been revoked",
        "keyctl_read_alloc: Key has been revoked",
        "keyctl_search: Required key not available",
    ]


# ------------------------------------------------------------------ session keyrings per process

FORK_ORDER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
KEYCTL, GET_ID, JOIN = 250, 0, 1

def session(create=0):
    return libc.syscall(KEYCTL, GET_ID, -3, create)

def child_says(r, w):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.read(go_r, 1)  # ask only once the parent has joined
        os.write(w, b"%d\n" % session())
        os._exit(0)
    return pid

go_r, go_w = os.pipe()
before_r, before_w = os.pipe()
child_says(before_r, before_w)   # forked with no session keyring
time.sleep(0.05)                 # more than a clock tick before the join
joined = libc.syscall(KEYCTL, JOIN, 0)
after_r, after_w = os.pipe()
child_says(after_r, after_w)     # forked after it
os.write(go_w, b"xx")
print("joined", joined, "parent", session())
print("before", os.read(before_r, 64).decode().strip(), "after", os.read(after_r, 64).decode().strip())
print("user-session", libc.syscall(KEYCTL, GET_ID, -5, 0))
"""


def test_a_session_keyring_is_the_processs_and_its_later_childrens(mnt):
    """join_session_keyring changes the caller's credentials: a child forked after it shares the
    new keyring, one forked before keeps what it had (none: its @s is the user-session keyring)."""
    result = wqfs_run(mnt, sys.executable, "-c", FORK_ORDER)
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    joined, parent, before, after, user_session = (int(words[i]) for i in (1, 3, 5, 7, 9))
    assert joined > 0 and parent == joined and after == joined
    assert before == user_session != joined


def test_an_implicit_session_keyring_stays_with_its_process(mnt):
    """`keyctl add ... @s` in a process without a session keyring joins a new one for that process
    alone (KEY_LOOKUP_CREATE): the key goes with it, and nobody else's @s changes."""
    ours = os.readlink(os.path.join(mnt, "@s"))
    assert ours == os.readlink(os.path.join(mnt, "@us"))
    added = wqfs_run(mnt, "sh", "-c", "keyctl add user lonely v @s && keyctl rdescribe @s")
    assert added.returncode == 0, added.stderr
    key, described = added.stdout.split("\n")[:2]
    assert described == "keyring;0;65534;1f3f0000;_uid_ses.0"  # the next keyctl has none: @us
    assert os.readlink(os.path.join(mnt, "@s")) == ours  # not the POSIX session's now
    deadline = time.monotonic() + 10  # its session keyring went with keyctl: the key follows
    while os.path.exists(os.path.join(mnt, "keys", key)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(os.path.join(mnt, "keys", key))


def test_new_session_gives_the_program_and_its_children_one_session_keyring(mnt):
    script = "a=$(keyctl show @s | sed -n 2p); b=$(sh -c 'keyctl rdescribe @s'); echo \"$a|$b\"; readlink $WQFS_MOUNT/@s"
    result = wqfs_run(mnt, "sh", "-c", script, new_session=True)
    assert result.returncode == 0, result.stderr
    shown, link = result.stdout.split("\n")[:2]
    assert shown.endswith("keyring: _ses|keyring;0;0;3f030000;_ses")
    serial_shown = int(shown.split()[0])
    assert link == f"keys/{serial_shown}" != os.readlink(os.path.join(mnt, "@us"))
