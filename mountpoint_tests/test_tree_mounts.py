"""Mount and superblock watches through the tree: the watch_queue commands (watch_mount,
unwatch_mount, watch_sb, unwatch_sb) and the text files MOUNT/mounts/PATH and
MOUNT/superblocks/PATH, against real mounts, each made inside a private mount namespace
(mountns.py), on both of the daemon's mount engines where the host's events matter.

Expected records are built here with struct, from the ids mountinfo shows in that namespace
(column 1), not with the codec under test."""
from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import signal
import stat
import struct
import subprocess
import tempfile
from typing import Iterator

import pytest

from helpers import (LINKED, NOBODY, PYTHON, Daemon, key, serial, stopped_after, wait_blocked_in_read, wait_records,
                     write_key)
from mountns import python_in_private_ns, sh_in_private_ns

MOUNT_TYPE, SB_TYPE = 2, 3
NEW_MOUNT, UNMOUNT, SETATTR = 0, 1, 4
SB_READONLY = 0
IN_SUBTREE = 0x10000
SB_IS_NOW_RO = 0x10000


def mount_record(subtype: int, triggered_on: int, aux: int, tag: int, flags: int = 0) -> bytes:
    """struct mount_notification (A2): the header, u64 triggered_on, u64 auxiliary_mount."""
    return struct.pack("<IIQQ", MOUNT_TYPE | subtype << 24, 24 | tag << 8 | flags, triggered_on, aux)


def sb_record(subtype: int, sb_id: int, tag: int, flags: int = 0) -> bytes:
    """struct superblock_notification (v16): the header, u64 sb_id."""
    return struct.pack("<IIQ", SB_TYPE | subtype << 24, 16 | tag << 8 | flags, sb_id)


def removal(object_id: int, tag: int) -> bytes:
    """struct watch_notification_removal: WATCH_TYPE_META, subtype REMOVAL, u64 id."""
    return struct.pack("<IIQ", 0, 16 | tag << 8, object_id)


def escaped(path: str) -> str:
    return subprocess.run(["systemd-escape", "--path", path], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module", params=["fanotify", "mountinfo"])
def engine_mnt(request) -> Iterator[str]:
    """A daemon reading the host's mounts with one engine: fanotify mount events (with the
    mountinfo diff for remounts), or mountinfo alone, the fallback of kernels without them."""
    with stopped_after(Daemon("--mount-engine", request.param)) as d:
        yield d.path


@pytest.fixture
def public_dir() -> Iterator[str]:
    """A directory nobody may search (tmp_path's parents are root's alone), removed afterwards."""
    path = tempfile.mkdtemp(prefix="wqfs-mounts-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ the text files, with cat

CAT_MOUNTS = r'''
mnt=$1 dir=$2 out=$3
exec 3< "$mnt/mounts/-"          # open returns once the watch on / is set
cat <&3 > "$out" &
cat_pid=$!
trap 'kill $cat_pid 2>/dev/null || true' EXIT
exec 3<&-
mount -t tmpfs wqfs-test "$dir"
awk -v d="$dir" '$5 == d {print $1, $2}' /proc/self/mountinfo
until [ "$(wc -l < "$out")" -ge 1 ]; do sleep 0.01; done
umount "$dir"
until [ "$(wc -l < "$out")" -ge 2 ]; do sleep 0.01; done
'''


def test_cat_of_mounts_shows_new_mount_and_unmount(engine_mnt, tmp_path):
    """`cat MOUNT/mounts/-` as a second terminal mounts and unmounts a tmpfs: watch_test.c's
    lines, triggered on the parent, aux the tmpfs (their mountinfo ids)."""
    target, out = tmp_path / "t", tmp_path / "out"
    target.mkdir()
    result = sh_in_private_ns(CAT_MOUNTS, engine_mnt, str(target), str(out))
    assert result.returncode == 0, result.stderr
    mnt_id, parent = map(int, result.stdout.split())
    assert out.read_text().splitlines() == [f"MOUNT {parent:08x} change=0[new_mount] aux={mnt_id:x}",
                                            f"MOUNT {parent:08x} change=1[unmount] aux={mnt_id:x}"]


CAT_SUPERBLOCK = r'''
mnt=$1 dir=$2 out=$3
mount -t tmpfs wqfs-test "$dir"
stat -c %d "$dir"
exec 3< "$mnt/superblocks/$(systemd-escape --path "$dir")"
cat <&3 > "$out" &
cat_pid=$!
trap 'kill $cat_pid 2>/dev/null || true' EXIT
exec 3<&-
mount -o remount,ro "$dir"
until [ "$(wc -l < "$out")" -ge 1 ]; do sleep 0.01; done
umount "$dir"
until [ "$(wc -l < "$out")" -ge 2 ]; do sleep 0.01; done
'''


def test_cat_of_superblocks_shows_readonly_and_the_removal(engine_mnt, tmp_path):
    """superblocks/<systemd-escape --path DIR>: a remount ro is the superblock's READONLY (its
    id st_dev, as stat -c %d prints it); the superblock's end is the watch's removal."""
    target, out = tmp_path / "t", tmp_path / "out"
    target.mkdir()
    result = sh_in_private_ns(CAT_SUPERBLOCK, engine_mnt, str(target), str(out))
    assert result.returncode == 0, result.stderr
    dev = int(result.stdout)
    assert out.read_text().splitlines() == [f"SUPER {dev:08x} change=0[readonly]", "REMOVAL of watchpoint 00000001"]


def test_mounts_file_on_a_directory_sees_what_the_kernels_walk_reaches(engine_mnt, tmp_path):
    """mounts/<escaped DIR> watches DIR, and the kernel's walk starts at the root of the mount
    a change is triggered on (the parent, for a new mount): a mount on DIR/below, triggered on
    DIR's own mount, starts above DIR and is not posted to it, nor is one elsewhere; a mount
    inside that one (DIR/below/x, triggered on below) is, the walk passing through DIR."""
    (tmp_path / "w" / "below").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    script = r'''
mnt=$1 base=$2 out=$3
exec 3< "$mnt/mounts/$(systemd-escape --path "$base/w")"
cat <&3 > "$out" &
cat_pid=$!
trap 'kill $cat_pid 2>/dev/null || true' EXIT
exec 3<&-
mount -t tmpfs wqfs-elsewhere "$base/elsewhere"
mount -t tmpfs wqfs-below "$base/w/below"
mkdir "$base/w/below/x"
mount -t tmpfs wqfs-x "$base/w/below/x"
awk -v d="$base/w/below/x" '$5 == d {print $1, $2}' /proc/self/mountinfo
until [ "$(wc -l < "$out")" -ge 1 ]; do sleep 0.01; done
umount "$base/w/below/x"
until [ "$(wc -l < "$out")" -ge 2 ]; do sleep 0.01; done
'''
    out = tmp_path / "out"
    result = sh_in_private_ns(script, engine_mnt, str(tmp_path), str(out))
    assert result.returncode == 0, result.stderr
    mnt_id, parent = map(int, result.stdout.split())
    assert out.read_text().splitlines() == [f"MOUNT {parent:08x} change=0[new_mount] aux={mnt_id:x}",
                                            f"MOUNT {parent:08x} change=1[unmount] aux={mnt_id:x}"]


def test_the_text_files_stream_as_events_files_do(mnt, public_dir):
    """O_RDONLY only; O_NONBLOCK reads are EAGAIN while nothing came, poll says not readable;
    the directories list nothing."""
    name = os.path.join(mnt, "mounts", escaped(public_dir))
    with pytest.raises(PermissionError):
        os.open(name, os.O_WRONLY)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 4096)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(0) == []
        assert stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    assert os.listdir(os.path.join(mnt, "mounts")) == []
    assert os.listdir(os.path.join(mnt, "superblocks")) == []
    assert stat.S_ISDIR(os.stat(os.path.join(mnt, "superblocks")).st_mode)


def test_the_text_files_errors_are_the_watchs(mnt, public_dir):
    """open() fails as watch_mount or watch_sb of the path would: ENOENT, ENOTDIR (watch_mount
    takes a directory; watch_sb a file too, one it may execute: MAY_EXEC, which even root has on
    a file only with an x bit); a name that is no systemd-escape'd path is ENOENT."""
    file = os.path.join(public_dir, "file")
    open(file, "w").close()
    os.chmod(file, 0o644)
    with pytest.raises(PermissionError):
        open(os.path.join(mnt, "superblocks", escaped(file)))
    os.chmod(file, 0o755)
    with pytest.raises(FileNotFoundError):
        open(os.path.join(mnt, "mounts", escaped(public_dir + "/missing")))
    with pytest.raises(NotADirectoryError):
        open(os.path.join(mnt, "mounts", escaped(file)))
    open(os.path.join(mnt, "superblocks", escaped(file))).close()
    for bad in ("a--b", "-a", "a-", "a\\x2", "a\\q00"):
        with pytest.raises(FileNotFoundError):
            os.stat(os.path.join(mnt, "mounts", bad))


# ------------------------------------------------------------------ watch_queue commands

BYTES_SCRIPT = r'''
from wqfs.client import Queue
mnt, base = sys.argv[1:3]
outer, inner = base + "/outer", base + "/outer/inner"
os.mkdir(outer)
q = Queue(mnt, size=64)
got = b""

def wait_for(n):
    """Read until n records more have come (records are 24 or 16 bytes: read their lengths)."""
    global got
    want = len(split(got)) + n
    while len(split(got)) < want:
        got += os.read(q.fileno(), 4096)

def split(data):
    out, i = [], 0
    while i < len(data):
        length = data[i + 4] & 0x7F
        out.append(data[i:i + length])
        i += length
    return out

os.write(q.fileno(), b"watch_mount / 2\n")       # the command itself, as a shell would write it
run("mount", "-t", "tmpfs", "wqfs-outer", outer)
o = mount_of(outer)
wait_for(1)
os.mkdir(inner)
os.write(q.fileno(), ("watch_mount %s 3\n" % outer).encode())
run("mount", "-t", "tmpfs", "wqfs-inner", inner)
i = mount_of(inner)
wait_for(2)
run("umount", inner)
wait_for(2)
run("umount", outer)
wait_for(2)
print(json.dumps({"root": mount_of("/")[0], "outer": o, "inner": i, "records": [r.hex() for r in split(got)]}))
'''


def test_watch_mount_commands_give_the_records_byte_for_byte(engine_mnt, tmp_path):
    """A watch on / and one on a tmpfs's root: every change is posted from the changed mount
    rootwards, the first directory's watch without IN_SUBTREE and the later ones with it; the
    tmpfs's unmount removes the watch on it (removal record, id its mount)."""
    got = python_in_private_ns(BYTES_SCRIPT, engine_mnt, str(tmp_path))
    outer, parent, inner = got["outer"][0], got["outer"][1], got["inner"][0]
    above = 0 if parent == got["root"] else IN_SUBTREE  # is the tmpfs's parent the root mount?
    assert got["inner"][1] == outer
    assert [bytes.fromhex(r) for r in got["records"]] == [
        mount_record(NEW_MOUNT, parent, outer, 2, above),
        mount_record(NEW_MOUNT, outer, inner, 3),
        mount_record(NEW_MOUNT, outer, inner, 2, IN_SUBTREE),
        mount_record(UNMOUNT, outer, inner, 3),
        mount_record(UNMOUNT, outer, inner, 2, IN_SUBTREE),
        mount_record(UNMOUNT, parent, outer, 2, above),
        removal(outer, 3),
    ]


SB_SCRIPT = r'''
from wqfs.client import Queue
mnt, base = sys.argv[1:3]
target = base + "/sb"
os.mkdir(target)
run("mount", "-t", "tmpfs", "wqfs-sb", target)
dev = mount_of(target)[2]
assert dev == os.stat(target).st_dev
q = Queue(mnt, size=64)
os.write(q.fileno(), ("watch_sb %s 5\n" % target).encode())
records = []
for options in ("remount,ro", "remount,rw"):
    run("mount", "-o", options, target)
    records.append(os.read(q.fileno(), 4096))
os.write(q.fileno(), ("unwatch_sb %s\n" % target).encode())
records.append(os.read(q.fileno(), 4096))
try:
    os.write(q.fileno(), ("unwatch_sb %s\n" % target).encode())
    again = 0
except OSError as error:
    again = error.errno
print(json.dumps({"dev": dev, "records": [r.hex() for r in records], "again": again}))
'''


def test_watch_sb_commands_give_the_records_byte_for_byte(engine_mnt, tmp_path):
    """watch_sb on a tmpfs: remount ro is READONLY with IS_NOW_RO, rw READONLY without; the
    unwatch is a removal record of the sb_id (st_dev); a second unwatch EBADSLT."""
    got = python_in_private_ns(SB_SCRIPT, engine_mnt, str(tmp_path))
    dev = got["dev"]
    assert [bytes.fromhex(r) for r in got["records"]] == [
        sb_record(SB_READONLY, dev, 5, SB_IS_NOW_RO), sb_record(SB_READONLY, dev, 5), removal(dev, 5)]
    assert got["again"] == errno.EBADSLT


FILTER_SCRIPT = r'''
from wqfs.client import Queue
mnt, base = sys.argv[1:3]
target = base + "/f"
os.mkdir(target)
run("mount", "-t", "tmpfs", "wqfs-filter", target)
queues = {}
for name, command in (("all", None), ("unmounts", b"filter type=mount,subtypes=0x2\n"),
                      ("sb", b"filter type=3\n"), ("keys", b"filter type=key\n")):
    q = queues[name] = Queue(mnt, size=64, nonblock=(name != "all"))
    if command:
        os.write(q.fileno(), command)
    os.write(q.fileno(), b"watch_mount / 1\n")
    os.write(q.fileno(), ("watch_sb %s 2\n" % target).encode())
got = {name: b"" for name in queues}

def records(data):
    out, i = [], 0
    while i < len(data):
        out.append(data[i:i + (data[i + 4] & 0x7F)])
        i += data[i + 4] & 0x7F
    return out

def wait_all(n):
    while len(records(got["all"])) < n:
        got["all"] += os.read(queues["all"].fileno(), 4096)

run("mount", "-o", "remount,ro", target)
wait_all(2)                                   # the superblock's READONLY, the mount's SETATTR
run("umount", target)
wait_all(4)                                   # UNMOUNT, the superblock watch's removal
for name, q in queues.items():
    if name != "all":
        try:
            got[name] = os.read(q.fileno(), 4096)
        except BlockingIOError:
            pass
print(json.dumps({"dev": mount_of("/")[2], "target": os.stat(base).st_dev,
                  **{name: [r.hex() for r in records(data)] for name, data in got.items()}}))
'''


def test_filters_take_the_mount_and_superblock_types(engine_mnt, tmp_path):
    """The `filter` command on types 2 and 3: a mount filter of UNMOUNT alone, an sb filter,
    a key filter; removal records pass every filter, as in the kernel."""
    got = python_in_private_ns(FILTER_SCRIPT, engine_mnt, str(tmp_path))
    everything = [bytes.fromhex(r) for r in got["all"]]
    assert len(everything) == 4
    sb_ro, unmount, sb_removal = everything[0], everything[2], everything[3]
    assert sb_ro[:1] == bytes([SB_TYPE]) and unmount[:1] == bytes([MOUNT_TYPE]) and unmount[3] == UNMOUNT
    assert everything[1][:1] == bytes([MOUNT_TYPE]) and everything[1][3] == SETATTR
    assert sb_removal[:4] == bytes(4)
    assert [bytes.fromhex(r) for r in got["unmounts"]] == [unmount, sb_removal]
    assert [bytes.fromhex(r) for r in got["sb"]] == [sb_ro, sb_removal]
    assert [bytes.fromhex(r) for r in got["keys"]] == [sb_removal]


# ------------------------------------------------------------------ errors

def _command(mnt: str, command: str, **kwargs) -> int:
    """The errno of one command written to a fresh queue (0: it succeeded)."""
    fd = os.open(os.path.join(mnt, "watch_queue"), os.O_RDWR)
    try:
        os.write(fd, command.encode())
        return 0
    except OSError as error:
        return error.errno or 0
    finally:
        os.close(fd)


def test_command_errors_are_the_syscalls(mnt, public_dir):
    os.mkdir(os.path.join(public_dir, "dir"))
    open(os.path.join(public_dir, "file"), "w").close()
    os.symlink("dir", os.path.join(public_dir, "to-dir"))
    os.symlink("file", os.path.join(public_dir, "to-file"))
    os.symlink("loop", os.path.join(public_dir, "loop"))
    d = public_dir
    assert _command(mnt, f"watch_mount {d}/dir 1") == 0
    assert _command(mnt, f"watch_mount {d}/to-dir 1 no_automount") == 0       # the last link followed
    assert _command(mnt, f"watch_mount {d}/missing 1") == errno.ENOENT
    assert _command(mnt, f"watch_mount {d}/file/x 1") == errno.ENOTDIR
    assert _command(mnt, f"watch_mount {d}/file 1") == errno.ENOTDIR
    assert _command(mnt, f"watch_mount {d}/to-file 1") == errno.ENOTDIR
    assert _command(mnt, f"watch_mount {d}/loop 1") == errno.ELOOP
    os.chmod(os.path.join(d, "file"), 0o644)
    assert _command(mnt, f"watch_sb {d}/file 1") == errno.EACCES  # MAY_EXEC: root too needs an x bit
    os.chmod(os.path.join(d, "file"), 0o700)
    assert _command(mnt, f"watch_sb {d}/file 1") == 0              # then any file will do
    assert _command(mnt, f"watch_sb {d}/missing 1") == errno.ENOENT
    assert _command(mnt, f"unwatch_mount {d}/dir") == errno.EBADSLT
    assert _command(mnt, f"unwatch_sb {d}/dir") == errno.EBADSLT
    for tag in ("256", "-2", "x"):
        assert _command(mnt, f"watch_mount {d}/dir {tag}") == errno.EINVAL
        assert _command(mnt, f"watch_sb {d}/dir {tag}") == errno.EINVAL
    assert _command(mnt, f"watch_mount {d}/missing 256") == errno.EINVAL  # the tag is checked first
    assert _command(mnt, f"watch_mount {d}/dir 1 follow") == errno.EINVAL
    assert _command(mnt, f"watch_mount {d}/d\\9ir 1") == errno.EINVAL      # not an octal escape


def host_mount_id(path: str) -> int:
    """The mnt_id (mountinfo column 1) of the mount path is on, in this process's namespace."""
    best, found = "", 0
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, found = point, int(fields[0])
    return found


def test_a_watch_twice_is_ebusy_and_unwatch_removes_it(mnt, public_dir, queues):
    """EBUSY for a second watch of the directory on the queue; the unwatch's removal record
    carries the mount's id and the watch's tag."""
    q = queues()
    q.watch_mount(public_dir, 7)
    with pytest.raises(OSError) as caught:
        q.watch_mount(public_dir, 8)
    assert caught.value.errno == errno.EBUSY
    q.unwatch_mount(public_dir)
    assert os.read(q.fileno(), 4096) == removal(host_mount_id(public_dir), 7)
    q.watch_mount(public_dir, 9)  # it may be set again


def test_paths_are_the_writers_own_relative_to_its_cwd(mnt, public_dir):
    """A relative PATH is resolved in the cwd of the process that writes the command, and a
    path with a space or a byte beyond ASCII is written with mountinfo's octal escapes."""
    odd = os.path.join(public_dir, "a b\xe9")
    os.mkdir(odd)
    script = ("import os, sys\n"
              "fd = os.open(sys.argv[1] + '/watch_queue', os.O_RDWR)\n"
              "out = []\n"
              "for command in sys.argv[2:]:\n"
              "    try:\n"
              "        os.write(fd, command.encode() + b'\\n'); out.append(0)\n"
              "    except OSError as e:\n"
              "        out.append(e.errno)\n"
              "print(out)\n")
    commands = ["watch_mount a\\040b\\303\\251 1", "watch_mount . 2", "watch_mount missing 3"]
    result = subprocess.run([PYTHON, "-c", script, mnt, *commands], cwd=public_dir, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == f"[0, 0, {errno.ENOENT}]", result.stderr
    result = subprocess.run([PYTHON, "-c", script, mnt, commands[0]], cwd="/", capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == f"[{errno.ENOENT}]", result.stderr


def test_a_command_has_its_openers_rights_wherever_the_fd_goes(mnt, public_dir):
    """A command runs with the credentials of whoever opened watch_queue (write(2)'s f_cred,
    as every command): nobody's fd, written by root, may not watch through a directory only
    root may search, though its PATH is resolved where root stands."""
    locked = os.path.join(public_dir, "locked-for-nobody")
    os.makedirs(os.path.join(locked, "inside"))
    os.chmod(locked, 0o700)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    opener = subprocess.Popen(NOBODY + [PYTHON, "-c",
                              "import os, socket, sys\n"
                              "s = socket.socket(fileno=int(sys.argv[2]))\n"
                              "fd = os.open(sys.argv[1] + '/watch_queue', os.O_RDWR)\n"
                              "socket.send_fds(s, [b'q'], [fd])\n"
                              "s.recv(1)\n", mnt, str(child.fileno())], pass_fds=[child.fileno()])
    child.close()
    try:
        _, (fd,), _, _ = socket.recv_fds(parent, 1, 1)
    finally:
        parent.close()
        opener.wait(timeout=60)
    try:
        with pytest.raises(PermissionError):
            os.write(fd, f"watch_mount {locked}/inside 1".encode())
        os.write(fd, f"watch_mount {public_dir} 2".encode())  # nobody may search this one
    finally:
        os.close(fd)


# ------------------------------------------------------------------ hostile

def test_nobody_cannot_watch_through_a_directory_it_may_not_search(mnt, public_dir):
    """MAY_EXEC as the caller on every directory of the path: EACCES for nobody, through the
    watch_queue command and through the text files; root may."""
    locked = os.path.join(public_dir, "locked")
    os.makedirs(os.path.join(locked, "inside"))
    os.chmod(locked, 0o700)
    inside = os.path.join(locked, "inside")
    script = ("import os, sys\n"
              "fd = os.open(sys.argv[1] + '/watch_queue', os.O_RDWR)\n"
              "try:\n"
              "    os.write(fd, sys.argv[2].encode())\n"
              "    print(0)\n"
              "except OSError as e:\n"
              "    print(e.errno)\n")
    for command in (f"watch_mount {inside} 1", f"watch_sb {inside} 1", f"watch_mount {locked} 1"):
        result = subprocess.run(NOBODY + [PYTHON, "-c", script, mnt, command], capture_output=True, text=True,
                                timeout=60)
        assert result.stdout.strip() == str(errno.EACCES), (command, result.stderr)
    for kind in ("mounts", "superblocks"):
        result = subprocess.run(NOBODY + ["cat", os.path.join(mnt, kind, escaped(inside))], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 1 and "Permission denied" in result.stderr, result.stderr
    assert _command(mnt, f"watch_mount {inside} 1") == 0
    # search without read is enough, as for the kernel's MAY_EXEC
    os.chmod(locked, 0o711)
    result = subprocess.run(NOBODY + [PYTHON, "-c", script, mnt, f"watch_mount {inside} 1"], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "0", result.stderr


FLOOD = r'''
import os, sys, threading
mnt, base, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = ["/", base, base + "/missing", base + "/locked/inside", base + "/file", base + "/loop"]

def flood():
    fd = os.open(mnt + "/watch_queue", os.O_RDWR)
    for i in range(rounds):
        for path in paths:
            for verb in ("watch_mount", "watch_sb", "unwatch_mount"):
                try:
                    os.write(fd, ("%s %s %d\n" % (verb, path, i % 256) if verb != "unwatch_mount"
                                  else "%s %s\n" % (verb, path)).encode())
                except OSError:
                    pass

threads = [threading.Thread(target=flood) for _ in range(8)]
for t in threads:
    t.start()
print("flooding", flush=True)
for t in threads:
    t.join()
print("done", flush=True)
'''


def test_a_flood_of_watch_mount_by_nobody_does_not_stall_roots_keys(mnt, public_dir, ring, queues, procs):
    """Eight threads of nobody writing watch_mount, watch_sb and unwatch_mount commands as fast
    as they may (paths found, missing, forbidden, looping): root's key operations and their
    records all complete meanwhile."""
    os.makedirs(os.path.join(public_dir, "locked", "inside"))
    os.chmod(os.path.join(public_dir, "locked"), 0o700)
    open(os.path.join(public_dir, "file"), "w").close()
    os.symlink("loop", os.path.join(public_dir, "loop"))
    flood = subprocess.Popen(NOBODY + [PYTHON, "-c", FLOOD, mnt, public_dir, "200"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    procs.append(flood)
    assert flood.stdout.readline().strip() == "flooding"
    q = queues()
    q.watch(serial(ring), 1)
    made = []
    for i in range(30):
        path = os.path.join(ring, f"user:flood-{i}")
        write_key(path, b"x")
        made.append(serial(path))
    assert wait_records(q, 30) == [key(LINKED, serial(ring), s) for s in made]
    assert flood.poll() is None or flood.returncode == 0, flood.stderr.read()


def test_nobodys_watches_count_against_nobodys_limit(own_daemon, public_dir):
    """Each watch is one of its user's: past RLIMIT_NOFILE (here 16) nobody gets EAGAIN, as
    watch_mount's add_watch_to_object gives it; a removed watch makes room again."""
    dirs = [os.path.join(public_dir, str(i)) for i in range(20)]
    for path in dirs:
        os.mkdir(path)
    script = ("import os, sys\n"
              "fd = os.open(sys.argv[1] + '/watch_queue', os.O_RDWR)\n"
              "errors = []\n"
              "for command in sys.argv[2:]:\n"
              "    try:\n"
              "        os.write(fd, command.encode()); errors.append(0)\n"
              "    except OSError as e:\n"
              "        errors.append(e.errno)\n"
              "print(errors)\n")
    commands = [f"watch_mount {path} 1" for path in dirs] + [f"unwatch_mount {dirs[0]}", f"watch_mount {dirs[-1]} 1"]
    result = subprocess.run(NOBODY + ["sh", "-c", f"ulimit -n 16; exec {PYTHON} -c \"$0\" \"$@\"", script,
                                      own_daemon.path, *commands], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == str([0] * 16 + [errno.EAGAIN] * 4 + [0, 0]), result.stderr


INTERRUPTED = r'''
import os, sys
fd = os.open(sys.argv[1] + "/watch_queue", os.O_RDWR)
try:
    os.write(fd, ("watch_mount %s 1" % sys.argv[2]).encode())
    print("watched")
except BaseException as error:
    print(type(error).__name__)
'''


def test_a_signal_ends_a_watch_waiting_on_a_hung_file_system(mnt, procs):
    """A path through a file system whose server hangs (here a stopped wqfs daemon) keeps the
    lookup waiting; the writer's signal ends its write at once, EINTR (Python's KeyboardInterrupt
    from the write itself, not the lookup's own error later), and the daemon serves on."""
    with stopped_after(Daemon()) as hung:
        os.stat(os.path.join(hung.path, "keys"))
        os.kill(hung.proc.pid, signal.SIGSTOP)
        try:
            proc = subprocess.Popen([PYTHON, "-c", INTERRUPTED, mnt, os.path.join(hung.path, "keys")],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            wait_blocked_in_read(proc.pid, syscall_nr="1")  # in write(): the command
            proc.send_signal(signal.SIGINT)
            assert proc.communicate(timeout=60)[0] == "KeyboardInterrupt\n"
        finally:
            os.kill(hung.proc.pid, signal.SIGCONT)
    assert _command(mnt, "watch_mount / 1") == 0
