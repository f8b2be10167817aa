"""`wqfs run` and the mount and superblock sources: watch_mount and watch_sb as system calls.

c/watch_mounts.c is the 2020 patches' watch_test sample for mounts, built against the project's
own header (wqfs/include/wqfs/watch_queue.h, -I wqfs.include.include_dir()), run under `wqfs run`.
Every mount a test makes is made inside a private mount namespace (Namespace: `unshare -m
--propagation private` holding it, `nsenter` to act in it), so nothing reaches the machine's
table, and it all goes when the namespace's last process does, which the fixture kills whether
the test passed or not. The ids expected are read from the namespace's own mountinfo (column
1), each record's bytes compared with the ABI's layout packed here, not by the codec.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator, Optional

import pytest

from helpers import NOBODY, ROOT, WAIT, Daemon, read_line, run_argv, stopped_after

from wqfs import abi
from wqfs.include import HEADER, cflags, include_dir

C_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c")


# ------------------------------------------------------------------ the program and the namespace

@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    """A directory everyone may enter (pytest's own are root's alone): the program, the
    mountpoints, the files nobody's watches are tried on."""
    path = tempfile.mkdtemp(prefix="wqfs-run-mounts-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def prog(workdir: str) -> str:
    """c/watch_mounts.c built with the project's header, as `cc $(wqfs cflags)` would."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the test programs (scripts/install-system-deps installs it)"
    out = os.path.join(workdir, "watch_mounts")
    command = [gcc, "-O1", "-Wall", "-Wextra", "-Werror", cflags(), "-o", out, os.path.join(C_DIR, "watch_mounts.c")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr}"
    return out


@dataclass
class MountLine:
    id: int
    parent: int
    dev: int
    mountpoint: str


class Namespace:
    """A private mount namespace, held by a sleeping `unshare -m --propagation private`."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "--", "sleep", "infinity"],
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.started: list[subprocess.Popen] = []
        ours = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.holder.pid}/comm") as f:
                    if f.read().strip() == "sleep" and os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != ours:
                        return
            except OSError:
                pass
            if self.holder.poll() is not None:
                break
            time.sleep(0.02)
        self.close()
        pytest.skip("unshare -m does not work here")

    def argv(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", *argv]

    def sh(self, command: str) -> None:
        """A command in the namespace, which must succeed."""
        result = subprocess.run(self.argv("sh", "-c", command), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{command}: {result.stderr}"

    def start(self, *argv: str) -> subprocess.Popen:
        """A process in the namespace, in a session of its own (its group is killed at the end)."""
        proc = subprocess.Popen(self.argv(*argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
        self.started.append(proc)
        return proc

    def mounts(self) -> list[MountLine]:
        """The namespace's mountinfo, as its own processes read it."""
        out = []
        with open(f"/proc/{self.holder.pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                major, minor = fields[2].split(":")
                mountpoint = fields[4].encode().decode("unicode_escape")
                out.append(MountLine(int(fields[0]), int(fields[1]), os.makedev(int(major), int(minor)), mountpoint))
        return out

    def mount_at(self, path: str) -> MountLine:
        """The mount on top at path."""
        found = [m for m in self.mounts() if m.mountpoint == path]
        assert found, f"nothing is mounted at {path}"
        return found[-1]

    def close(self) -> None:
        for proc in self.started + [self.holder]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(WAIT)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(scope="module")
def fallback_daemon() -> Iterator[Daemon]:
    """A daemon whose feeds read mountinfo alone (`wqfs mount --mount-engine mountinfo`), what a
    kernel without fanotify mount events or statmount gets."""
    with stopped_after(Daemon("--mount-engine", "mountinfo")) as d:
        yield d


@pytest.fixture(params=["auto", "mountinfo"])
def engine_mnt(request, mnt: str) -> Iterator[str]:
    """The records tests run against both engines: the suite's daemon (fanotify here) and the
    fallback's."""
    if request.param == "auto":
        yield mnt
        return
    d = request.getfixturevalue("fallback_daemon")
    start = len(d.log())
    yield d.path
    assert d.alive, d.log()
    assert "internal error" not in d.log()[start:], d.log()[start:]


@pytest.fixture
def ns(engine_mnt: str) -> Iterator[Namespace]:
    """A private mount namespace for the test, made after the daemons mounted (so it has a copy
    of their mounts); its mounts go with it."""
    namespace = Namespace()
    try:
        yield namespace
    finally:
        namespace.close()


@pytest.fixture
def spot(workdir: str) -> Iterator[str]:
    """A fresh directory to mount on, in the namespace (the host never mounts there)."""
    path = tempfile.mkdtemp(prefix="spot-", dir=workdir)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def legacy_run_argv(mnt: str, version: Optional[str], *argv: str) -> list[str]:
    """`wqfs run --legacy-watch-nr=VERSION` of argv (no flag for None)."""
    command = run_argv(mnt, *argv)
    if version is not None:
        command.insert(command.index("run") + 1, f"--legacy-watch-nr={version}")
    return command


def run_lines(argv: list[str], timeout: float = 60) -> list[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            start_new_session=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


# ------------------------------------------------------------------ records, packed by hand

def mount_bytes(subtype: int, tag: int, triggered_on: int, aux: int, flags: int = 0) -> bytes:
    """struct mount_notification (A2): the header (type:24, subtype:8; info), u64, u64."""
    info = abi.MOUNT_NOTIFICATION_SIZE | tag << abi.WATCH_INFO_ID__SHIFT | flags
    return struct.pack("<IIQQ", abi.WATCH_TYPE_MOUNT_NOTIFY | subtype << 24, info, triggered_on, aux)


def sb_bytes(subtype: int, tag: int, sb_id: int, flags: int = 0) -> bytes:
    """struct superblock_notification (v16): the header, u64 sb_id."""
    info = abi.SUPERBLOCK_NOTIFICATION_SIZE | tag << abi.WATCH_INFO_ID__SHIFT | flags
    return struct.pack("<IIQ", abi.WATCH_TYPE_SB_NOTIFY | subtype << 24, info, sb_id)


def sample_lines(data: bytes) -> list[str]:
    """What watch_test prints for one record (its NOTIFY line without the offset), from the bytes."""
    word, info = struct.unpack_from("<II", data)
    rtype, subtype = word & 0xFFFFFF, word >> 24
    head = f"ty={rtype:06x} sy={subtype:02x} i={info:08x}"
    if rtype == abi.WATCH_TYPE_MOUNT_NOTIFY:
        trig, aux = struct.unpack_from("<QQ", data, 8)
        return [head, f"MOUNT {trig:08x} change={subtype}[{abi.MOUNT_SUBTYPE_NAMES[subtype]}] aux={aux:x}"]
    (sb_id,) = struct.unpack_from("<Q", data, 8)
    return [head, f"SUPER {sb_id:08x} change={subtype}[{abi.SB_SUBTYPE_NAMES[subtype]}]"]


def next_record(proc: subprocess.Popen) -> tuple[list[str], bytes]:
    """The next record the program prints: its two watch_test lines (offset dropped) and its bytes."""
    lines: list[str] = []
    while True:
        line = read_line(proc.stdout)
        assert line, f"the program printed no more (so far {lines}); stderr: {proc.stderr.read1(4096) if proc.poll() is not None else ''}"
        line = line.rstrip("\n")
        if line.startswith("read() = "):
            continue
        if line.startswith("NOTIFY["):
            lines = [re.sub(r"^NOTIFY\[[0-9a-f]{3}\]: ", "", line)]
        elif line.startswith("BYTES "):
            return lines, bytes.fromhex(line[6:])
        else:
            lines.append(line)


def expect(proc: subprocess.Popen, data: bytes) -> None:
    """The program's next record is these bytes, and it printed them as the sample does."""
    lines, got = next_record(proc)
    assert got.hex() == data.hex()
    assert lines == sample_lines(data)


def ready(proc: subprocess.Popen) -> None:
    line = read_line(proc.stderr)
    assert line == "ready\n", line + (proc.stderr.read().decode() if proc.poll() is not None else "")


def root_mount(ns: Namespace) -> MountLine:
    return ns.mount_at("/")


def subtree_flag(ns: Namespace, trigger: int) -> int:
    """A watch on "/" sees a change at the root mount's own root without IN_SUBTREE."""
    return 0 if trigger == root_mount(ns).id else abi.NOTIFY_MOUNT_IN_SUBTREE


# ------------------------------------------------------------------ the header

HEADER_VALUES = r"""
#include <stddef.h>
#include <stdio.h>
#include <wqfs/watch_queue.h>
#define P(x) printf("%s=%lld\n", #x, (long long)(x))
int main(void)
{
	P(__NR_watch_mount); P(__NR_watch_sb);
	P(WATCH_TYPE_MOUNT_NOTIFY); P(WATCH_TYPE_SB_NOTIFY); P(WATCH_TYPE__NR);
	P(NOTIFY_MOUNT_NEW_MOUNT); P(NOTIFY_MOUNT_UNMOUNT); P(NOTIFY_MOUNT_EXPIRY); P(NOTIFY_MOUNT_READONLY);
	P(NOTIFY_MOUNT_SETATTR); P(NOTIFY_MOUNT_MOVE_FROM); P(NOTIFY_MOUNT_MOVE_TO);
	P(NOTIFY_MOUNT_IN_SUBTREE); P(NOTIFY_MOUNT_IS_NOW_RO); P(NOTIFY_MOUNT_IS_SUBMOUNT);
	P(NOTIFY_SUPERBLOCK_READONLY); P(NOTIFY_SUPERBLOCK_ERROR); P(NOTIFY_SUPERBLOCK_EDQUOT);
	P(NOTIFY_SUPERBLOCK_NETWORK); P(NOTIFY_SUPERBLOCK_IS_NOW_RO);
	P(AT_NO_AUTOMOUNT); P(AT_EMPTY_PATH); P(AT_FDCWD);
	P(sizeof(struct mount_notification)); P(offsetof(struct mount_notification, triggered_on));
	P(offsetof(struct mount_notification, auxiliary_mount));
	P(sizeof(struct superblock_notification)); P(offsetof(struct superblock_notification, sb_id));
	P(sizeof(struct superblock_error_notification));
	P(offsetof(struct superblock_error_notification, error_number));
	P(offsetof(struct superblock_error_notification, error_cookie));
	return 0;
}
"""


def test_the_header_says_what_abi_says(tmp_path):
    """The numbers as a compiler reads the header (every macro and enum), against wqfs/abi.py."""
    source = tmp_path / "values.c"
    source.write_text(HEADER_VALUES)
    built = subprocess.run(["gcc", "-Wall", "-Werror", cflags(), "-o", str(tmp_path / "values"), str(source)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    got = dict(line.rsplit("=", 1) for line in subprocess.run([str(tmp_path / "values")], capture_output=True,
                                                       text=True, check=True).stdout.splitlines())
    got = {name: int(value) for name, value in got.items()}
    names = {"__NR_watch_mount": "NR_WATCH_MOUNT", "__NR_watch_sb": "NR_WATCH_SB",
             "sizeof(struct mount_notification)": "MOUNT_NOTIFICATION_SIZE",
             "sizeof(struct superblock_notification)": "SUPERBLOCK_NOTIFICATION_SIZE",
             "sizeof(struct superblock_error_notification)": "SUPERBLOCK_ERROR_NOTIFICATION_SIZE"}
    offsets = {"offsetof(struct mount_notification, triggered_on)": 8,
               "offsetof(struct mount_notification, auxiliary_mount)": 16,
               "offsetof(struct superblock_notification, sb_id)": 8,
               "offsetof(struct superblock_error_notification, error_number)": 16,
               "offsetof(struct superblock_error_notification, error_cookie)": 20}
    for name, value in got.items():
        if name in offsets:
            assert value == offsets[name], name
        else:
            assert value == getattr(abi, names.get(name, name)), name
    assert len(got) == 31


def test_the_header_is_in_the_include_dir_and_its_numbers_in_the_text():
    """What `wqfs cflags` points at, and the two syscall numbers as the header's text spells them
    (a program that defines its own __NR_watch_mount keeps it)."""
    text = open(os.path.join(include_dir(), HEADER)).read()
    assert re.search(r"#ifndef __NR_watch_mount\n#define __NR_watch_mount (\d+)", text).group(1) == str(abi.NR_WATCH_MOUNT)
    assert re.search(r"#ifndef __NR_watch_sb\n#define __NR_watch_sb (\d+)", text).group(1) == str(abi.NR_WATCH_SB)
    assert cflags() == f"-I{include_dir()}"


@pytest.mark.parametrize("before,after", [("", ""), ("#include <fcntl.h>", ""), ("", "#include <fcntl.h>"),
                                          ("#include <linux/fcntl.h>", "")])
@pytest.mark.parametrize("std", ["gnu11", "c99", "c++17"])
def test_the_header_builds_beside_fcntl_h_in_either_order(tmp_path, before, after, std):
    """<linux/watch_queue.h> alone clashes with libc's <fcntl.h>; the project's header must not."""
    source = tmp_path / ("t.cc" if std.startswith("c++") else "t.c")
    source.write_text(f"{before}\n#include <{HEADER}>\n{after}\n"
                      "int main(void) { return watch_mount(AT_FDCWD, \"/\", AT_EMPTY_PATH, -1, 0) == -1 ? 0 : 1; }\n")
    compiler = "g++" if std.startswith("c++") else "gcc"
    if not shutil.which(compiler):
        pytest.skip(f"no {compiler}")
    built = subprocess.run([compiler, f"-std={std}", "-Wall", "-Wextra", "-Werror", cflags(), "-o",
                            str(tmp_path / "t"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr


def test_a_real_kernel_has_no_watch_mount_so_trapping_it_breaks_nothing():
    libc = ctypes.CDLL(None, use_errno=True)
    for nr in (abi.NR_WATCH_MOUNT, abi.NR_WATCH_SB):
        assert libc.syscall(nr, abi.AT_FDCWD, b"/", 0, 0, 1) == -1
        assert ctypes.get_errno() == errno.ENOSYS


# ------------------------------------------------------------------ records byte for byte

def test_watch_mount_on_the_root_sees_a_tmpfs_come_and_go(engine_mnt, ns, spot, prog):
    """The kernel sample's watch_mount(AT_FDCWD, "/", 0, fd, 0x02) under `wqfs run`, in a private
    namespace: a tmpfs mounted (NEW_MOUNT triggered on its parent, aux the new mount), a submount
    in it (IN_SUBTREE: not at "/"'s own mount), both unmounted again, innermost first."""
    proc = ns.start(*run_argv(engine_mnt, prog, "watch", "-x", "-c", "4"))
    ready(proc)
    ns.sh(f"mount -t tmpfs wqfs-a {spot}")
    top = ns.mount_at(spot)
    expect(proc, mount_bytes(abi.NOTIFY_MOUNT_NEW_MOUNT, 2, top.parent, top.id, subtree_flag(ns, top.parent)))
    ns.sh(f"mkdir {spot}/sub && mount -t tmpfs wqfs-b {spot}/sub")
    sub = ns.mount_at(f"{spot}/sub")
    assert sub.parent == top.id
    expect(proc, mount_bytes(abi.NOTIFY_MOUNT_NEW_MOUNT, 2, top.id, sub.id, abi.NOTIFY_MOUNT_IN_SUBTREE))
    ns.sh(f"umount {spot}/sub")
    expect(proc, mount_bytes(abi.NOTIFY_MOUNT_UNMOUNT, 2, top.id, sub.id, abi.NOTIFY_MOUNT_IN_SUBTREE))
    ns.sh(f"umount {spot}")
    expect(proc, mount_bytes(abi.NOTIFY_MOUNT_UNMOUNT, 2, top.parent, top.id, subtree_flag(ns, top.parent)))
    assert proc.wait(WAIT) == 0, proc.stderr.read().decode()
    assert all(m.mountpoint != spot for m in ns.mounts())


def test_watch_mount_on_a_mount_sees_its_own_submounts_without_in_subtree(engine_mnt, ns, spot, prog):
    """A watch on a tmpfs's root: a mount on a directory inside it is triggered on that tmpfs and
    walks up from its root, the watched directory itself (no IN_SUBTREE); the watch's tag is the
    caller's (0x21)."""
    ns.sh(f"mount -t tmpfs wqfs-a {spot} && mkdir {spot}/x")
    top = ns.mount_at(spot)
    proc = ns.start(*run_argv(engine_mnt, prog, "watch", "-x", "-c", "2", "-m", f"{spot}:0x21"))
    ready(proc)
    ns.sh(f"mount -t tmpfs wqfs-b {spot}/x")
    sub = ns.mount_at(f"{spot}/x")
    expect(proc, mount_bytes(abi.NOTIFY_MOUNT_NEW_MOUNT, 0x21, top.id, sub.id))
    ns.sh(f"umount {spot}/x")
    expect(proc, mount_bytes(abi.NOTIFY_MOUNT_UNMOUNT, 0x21, top.id, sub.id))
    assert proc.wait(WAIT) == 0


def test_watch_sb_sees_a_remount_read_only_and_back(engine_mnt, ns, spot, prog):
    """watch_sb on a tmpfs: remount ro gives NOTIFY_SUPERBLOCK_READONLY with IS_NOW_RO, rw gives it
    without; sb_id is the superblock's st_dev (mountinfo column 3)."""
    ns.sh(f"mount -t tmpfs wqfs-sb {spot}")
    dev = ns.mount_at(spot).dev
    proc = ns.start(*run_argv(engine_mnt, prog, "watch", "-x", "-c", "2", "-b", spot))
    ready(proc)
    ns.sh(f"mount -o remount,ro {spot}")
    expect(proc, sb_bytes(abi.NOTIFY_SUPERBLOCK_READONLY, 3, dev, abi.NOTIFY_SUPERBLOCK_IS_NOW_RO))
    ns.sh(f"mount -o remount,rw {spot}")
    expect(proc, sb_bytes(abi.NOTIFY_SUPERBLOCK_READONLY, 3, dev))
    assert proc.wait(WAIT) == 0


def test_unmounting_a_watched_mount_removes_the_watch(engine_mnt, ns, spot, prog):
    """The watched mount goes: UNMOUNT to the watch above, the removal record to the one on it."""
    ns.sh(f"mount -t tmpfs wqfs-a {spot}")
    top = ns.mount_at(spot)
    proc = ns.start(*run_argv(engine_mnt, prog, "watch", "-x", "-c", "2", "-m", "/:2", "-m", f"{spot}:7"))
    ready(proc)
    ns.sh(f"umount {spot}")
    got = [next_record(proc) for _ in range(2)]
    unmount = mount_bytes(abi.NOTIFY_MOUNT_UNMOUNT, 2, top.parent, top.id, subtree_flag(ns, top.parent))
    assert unmount in [data for _, data in got]
    removal = [(lines, data) for lines, data in got if data != unmount]
    assert len(removal) == 1 and removal[0][0][1] == "REMOVAL of watchpoint 00000007", got
    word, info = struct.unpack_from("<II", removal[0][1])
    assert word == abi.WATCH_TYPE_META | abi.WATCH_META_REMOVAL_NOTIFICATION << 24
    assert info & abi.WATCH_INFO_ID == 7 << abi.WATCH_INFO_ID__SHIFT
    assert proc.wait(WAIT) == 0


def test_a_watcher_sees_its_own_namespace_only(engine_mnt, ns, spot, prog):
    """A mount in another private namespace never reaches a watch on "/" in this one; the next
    mount here does, and comes first."""
    other = Namespace()
    try:
        proc = ns.start(*run_argv(engine_mnt, prog, "watch", "-x", "-c", "1"))
        ready(proc)
        other.sh(f"mount -t tmpfs wqfs-other {spot} && umount {spot} && mount -t tmpfs wqfs-other {spot}")
        ns.sh(f"mount -t tmpfs wqfs-here {spot}")
        top = ns.mount_at(spot)
        expect(proc, mount_bytes(abi.NOTIFY_MOUNT_NEW_MOUNT, 2, top.parent, top.id, subtree_flag(ns, top.parent)))
        assert proc.wait(WAIT) == 0
    finally:
        other.close()


# ------------------------------------------------------------------ the errors, in the patch's order

EXPECTED_ERRORS = """\
watch_id 256: EINVAL
watch_id -2: EINVAL
at_flags 1: EINVAL
at_flags AT_SYMLINK_NOFOLLOW: EINVAL
watch_id 256, bad pointer: EINVAL
at_flags 1, no such path: EINVAL
sb watch_id 256: EINVAL
sb at_flags 1: EINVAL
bad path pointer: EFAULT
NULL path: EFAULT
bad path pointer, not a queue: EFAULT
PATH_MAX bytes: ENAMETOOLONG
sb bad path pointer: EFAULT
no such path: ENOENT
no such path, not a queue: ENOENT
a file: ENOTDIR
dangling symlink: ENOENT
empty path: ENOENT
bad dfd: EBADF
file dfd: ENOTDIR
sb no such path: ENOENT
sb empty path, AT_EMPTY_PATH: ENOENT
not a queue: EINVAL
no such fd: EINVAL
sb not a queue: EINVAL
unwatch nothing: EBADSLT
watch: 0
watch again: EBUSY
unwatch: 0
unwatch again: EBADSLT
empty path, AT_EMPTY_PATH: 0
unwatch through dfd: 0
bad dfd, absolute path: 0
unwatch it: 0
PATH_MAX - 1 bytes: 0
unwatch /: 0
sb unwatch nothing: EBADSLT
sb a file without x bits: EACCES
sb dangling symlink: 0
sb again, through the directory: EBUSY
sb unwatch: 0
"""


def test_errors_come_in_the_patchs_order(mnt, workdir, prog):
    """The scalars (EINVAL) before the name is copied (EFAULT, ENAMETOOLONG), the lookup (ENOENT,
    ENOTDIR, EBADF) before the queue (EINVAL for any fd that is no notification queue), then the
    watch (EBUSY, EBADSLT); watch_sb's lookup takes no AT_EMPTY_PATH, follows no last symlink
    and wants no directory, but MAY_EXEC all the same (a file without x bits: EACCES, for root too)."""
    directory = tempfile.mkdtemp(prefix="errors-", dir=workdir)
    with open(os.path.join(directory, "file"), "w"):
        pass
    os.chmod(os.path.join(directory, "file"), 0o644)
    os.symlink("/nonexistent", os.path.join(directory, "dangling"))
    lines = run_lines(run_argv(mnt, prog, "errors", directory, os.path.join(directory, "file")))
    assert "\n".join(lines) + "\n" == EXPECTED_ERRORS


def test_another_user_needs_search_permission(mnt, workdir, prog):
    """MAY_EXEC as the caller: nobody is refused a root-only directory (EACCES on the directory
    itself, and in the lookup below it) and may watch what it may search."""
    private = tempfile.mkdtemp(prefix="private-", dir=workdir)
    os.mkdir(os.path.join(private, "sub"))
    os.chmod(private, 0o700)
    argv = run_argv(mnt, prog, "try", "mount", private, f"{private}/sub", workdir)
    lines = run_lines(NOBODY + argv)
    assert lines == [f"{private}: EACCES", f"{private}/sub: EACCES", f"{workdir}: 0"]
    lines = run_lines(NOBODY + run_argv(mnt, prog, "try", "sb", private, f"{private}/sub", workdir))
    assert lines == [f"{private}: EACCES", f"{private}/sub: EACCES", f"{workdir}: 0"]
    assert run_lines(run_argv(mnt, prog, "try", "mount", private, f"{private}/sub")) == \
        [f"{private}: 0", f"{private}/sub: 0"]  # root may


def test_watch_mount_on_the_daemons_own_mount_does_not_stop_it(own_daemon, prog):
    """The daemon must never touch its own mount on its loop (it would wait for itself): a
    watch_mount on MOUNT or below it is answered, and the mount still serves."""
    mnt = own_daemon.path
    lines = run_lines(run_argv(mnt, prog, "try", "mount", mnt, f"{mnt}/keys", f"{mnt}/nonexistent"))
    assert lines == [f"{mnt}: 0", f"{mnt}/keys: 0", f"{mnt}/nonexistent: ENOENT"]
    assert os.path.isdir(os.path.join(mnt, "keys"))


def test_watch_sb_on_the_daemons_own_mount_does_not_stop_it(own_daemon, prog):
    """A FAN_FS_ERROR mark statfs()es its file system: on the daemon's own FUSE mount, from the
    daemon's loop, that would wait for the daemon itself (sb_errors.py: none on FUSE, and any
    other mark on a thread with a deadline)."""
    mnt = own_daemon.path
    lines = run_lines(run_argv(mnt, prog, "try", "sb", mnt, f"{mnt}/keys"), timeout=20)
    assert lines == [f"{mnt}: 0", f"{mnt}/keys: 0"]
    assert os.path.isdir(os.path.join(mnt, "keys"))


# ------------------------------------------------------------------ the 2020 numbers

GENUINE_2020_08 = ["process_madvise: 4096", "process_madvise, not a queue: 4096",
                   "process_madvise flags 1, not a queue: EINVAL", "epoll_pwait2: 1",
                   "epoll_pwait2, zero timeout: 1"]


def test_legacy_2020_08_serves_440_and_441_and_leaves_the_real_calls_alone(mnt, prog):
    """--legacy-watch-nr=2020-08: 440 is watch_mount and 441 watch_sb when the real
    process_madvise/epoll_pwait2 would certainly fail and arg3 is a queue; a genuine
    process_madvise and epoll_pwait2 whose fourth argument is a queue fd still reach the kernel."""
    lines = run_lines(legacy_run_argv(mnt, "2020-08", prog, "legacy", "2020-08"))
    assert lines == ["legacy watch_mount: 0", "legacy watch_sb: 0", *GENUINE_2020_08,
                     "legacy unwatch: 0", "legacy unwatch again: EBADSLT", "legacy sb unwatch: 0",
                     "watch_mount at wqfs's number: 0", "unwatch at wqfs's number: 0"]


def test_without_the_flag_440_and_441_are_the_real_calls(mnt, prog):
    lines = run_lines(legacy_run_argv(mnt, None, prog, "legacy", "2020-08"))
    genuine = [line for line in lines if not line.startswith(("legacy ", "watch_mount at", "unwatch at"))]
    assert genuine == GENUINE_2020_08
    by_label = dict(line.split(": ", 1) for line in lines)
    # process_madvise(AT_FDCWD, "/", 0, fd, 2): flags 2, the kernel's EINVAL; epoll_pwait2's own errors
    assert by_label["legacy watch_mount"] == "EINVAL" and by_label["legacy unwatch"] == "EINVAL"
    assert by_label["legacy watch_sb"] != "0" and by_label["legacy sb unwatch"] != "0"
    assert by_label["watch_mount at wqfs's number"] == "0"


def test_legacy_2020_02_serves_439_and_glibcs_faccessat_still_works(mnt, prog):
    lines = run_lines(legacy_run_argv(mnt, "2020-02", prog, "legacy", "2020-02"))
    assert lines == ["legacy watch_mount: 0", "faccessat: 0", "faccessat2, flags a queue fd: 0",
                     "faccessat2, bad flags, not a queue: EINVAL", "legacy unwatch: 0",
                     "legacy unwatch again: EBADSLT", "watch_mount at wqfs's number: 0",
                     "unwatch at wqfs's number: 0"]


def test_an_unknown_legacy_version_is_refused_naming_the_known_ones(mnt):
    result = subprocess.run(legacy_run_argv(mnt, "2019", "true"), capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode != 0 and "2020-08" in result.stderr and "2020-02" in result.stderr, result.stderr


PROGRAM_WITHOUT_WATCHES = r"""
import ctypes, os, select
libc = ctypes.CDLL(None, use_errno=True)
print("access", os.access("/", os.R_OK, effective_ids=True))          # faccessat2 (439)
print("access bad", libc.syscall(439, -100, b"/", 0, 3), ctypes.get_errno())  # EINVAL from the kernel
pidfd = os.pidfd_open(os.getpid())
print("madvise", libc.syscall(440, pidfd, 0, 0, 20, 0))                 # nothing to advise: 0
ep = select.epoll()
print("epoll", libc.syscall(441, ep.fileno(), 0, 0, 0, 0, 0), ctypes.get_errno())  # maxevents 0: EINVAL
"""


@pytest.mark.parametrize("version", [None, "2020-08", "2020-02"])
def test_a_program_not_watching_mounts_is_unaffected(mnt, version):
    """Under every mode the real calls of 439-441 give what the kernel gives (fd 3 is no queue)."""
    expected = ["access True", f"access bad -1 {errno.EINVAL}", "madvise 0", f"epoll -1 {errno.EINVAL}"]
    assert run_lines(legacy_run_argv(mnt, version, sys.executable, "-c", PROGRAM_WITHOUT_WATCHES)) == expected
