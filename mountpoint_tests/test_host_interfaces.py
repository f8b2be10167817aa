"""The host interfaces the feeds read, one by one: /proc/PID/mountinfo's lines, statmount's
answers (which must read exactly as mountinfo's, or every remount would look like a change of
every mount), fanotify's event records."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest
import trio

from wqfs.host import fanotify, mountinfo, statmount
from wqfs.host.feeds import fanotify_engine_available
from wqfs.kernel import MountInfo

HERE = os.path.abspath(__file__)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(HERE)), os.path.dirname(HERE)])}
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
STATMOUNT = pytest.mark.skipif(os.geteuid() != 0 or not fanotify_engine_available(),
                               reason="needs root and statmount/listmount with NS_GET_MNTNS_ID")


def test_a_mountinfo_line_with_optional_fields_and_escapes():
    line = (rb"36 35 98:0 /mnt\0401 /mnt\0402\134x rw,noatime master:1 shared:7 - ext3 /dev/root\011x "
            rb"rw,errors=continue")
    assert mountinfo.parse_line(line) == MountInfo(
        id=36, parent=35, dev=os.makedev(98, 0), root="/mnt 1", mountpoint="/mnt 2\\x", mnt_opts="rw,noatime",
        fstype="ext3", source="/dev/root\tx", sb_opts="rw,errors=continue")


def test_an_empty_source_and_names_that_are_not_utf8():
    info = mountinfo.parse_line(b"40 1 0:52 / /m\xff rw - tmpfs  rw,size=4k\n")
    assert info.source == "" and info.sb_opts == "rw,size=4k" and os.fsencode(info.mountpoint) == b"/m\xff"


def test_a_line_without_its_separator_is_refused():
    with pytest.raises(ValueError):
        mountinfo.parse_line(b"1 2 3:4 / / rw shared:1 tmpfs none rw")


def test_a_reread_table_parses_only_its_new_lines():
    parser = mountinfo.Parser()
    first = parser.parse(b"1 0 0:1 / / rw - tmpfs a rw\n2 1 0:2 / /x rw - tmpfs b rw\n")
    second = parser.parse(b"1 0 0:1 / / rw - tmpfs a rw\n2 1 0:2 / /x ro - tmpfs b rw\n3 1 0:3 / /y rw - tmpfs c rw\n")
    assert second[0] is first[0] and second[1] != first[1] and second[1].ro and second[2].mountpoint == "/y"
    assert second == mountinfo.parse(b"1 0 0:1 / / rw - tmpfs a rw\n2 1 0:2 / /x ro - tmpfs b rw\n"
                                     b"3 1 0:3 / /y rw - tmpfs c rw\n")


def test_this_processes_table_parses():
    table = mountinfo.read()
    assert table and any(i.mountpoint == "/" for i in table)
    assert len({i.id for i in table}) == len(table)


@STATMOUNT
def test_statmount_reads_as_mountinfo_for_every_mount_here():
    _same_as_mountinfo("self")


@STATMOUNT
def test_statmount_reads_as_mountinfo_for_a_fuse_mount_with_a_subtype(mnt):
    assert [i.fstype for i in mountinfo.read() if i.mountpoint == mnt] == ["fuse.wqfs"]
    _same_as_mountinfo("self")


@STATMOUNT
def test_statmount_reads_as_mountinfo_for_odd_options_and_names():
    """Options in every spelling show_mnt_opts and show_sb_opts have, names with spaces and
    backslashes, a bind of a subdirectory, per-mount and superblock read-only, in a private
    namespace of a process that checks its own table."""
    base = tempfile.mkdtemp(prefix="wqfs-opts-")
    try:
        script = f"""
            set -e
            b={base}
            mount -t tmpfs -o size=1m,mode=700 'my src' "$b"
            mkdir "$b/x\\\\y" "$b/z z" "$b/b" "$b/r"
            mount --bind "$b/x\\\\y" "$b/b"
            mount -o remount,bind,ro,nosuid,noatime "$b/b"
            mount -t tmpfs -o strictatime,nodev,noexec,lazytime,sync none "$b/z z"
            mount -t tmpfs -o nodiratime,nosymfollow,dirsync none "$b/z z"
            mount -o remount,ro "$b/z z"
            mount -t tmpfs -o ro,relatime none "$b/r"
            {sys.executable} {HERE} same-as-mountinfo "$b"
        """
        result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                capture_output=True, text=True, env=ENV)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "5 checked", result.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _same_as_mountinfo(pid: str, under: str = "") -> None:
    nsfd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        ns_id = statmount.mntns_id(nsfd)
    finally:
        os.close(nsfd)
    table = {i.id: i for i in mountinfo.read(pid)}
    stat = statmount.Statmounter(ns_id)
    unique = statmount.listmount(ns_id)
    assert len(unique) == len(table)
    checked = 0
    for mnt_id in unique:
        answer = stat.stat(mnt_id)
        assert answer.info == table[answer.info.id]
        assert stat.ids(mnt_id) == (answer.info.id, answer.info.parent)
        checked += answer.info.mountpoint.startswith(under) if under else 1
    if under:
        print(f"{checked} checked")


# ---------------------------------------------------------------- fanotify's records

def _event(mask: int, *infos: bytes, fd: int = -1, pid: int = 42) -> bytes:
    body = b"".join(infos)
    return struct.pack("<IBBHQii", 24 + len(body), 3, 0, 24, mask, fd, pid) + body


def test_mount_events_carry_the_unique_mount_id():
    mnt = struct.pack("<BBHIQ", fanotify.FAN_EVENT_INFO_TYPE_MNT, 0, 16, 0, 0x80000078)
    data = _event(fanotify.FAN_MNT_ATTACH, mnt) + _event(fanotify.FAN_MNT_ATTACH | fanotify.FAN_MNT_DETACH, mnt)
    events = list(fanotify.parse(data))
    assert [(e.mask, e.mnt_id, e.pid) for e in events] == [
        (fanotify.FAN_MNT_ATTACH, 0x80000078, 42), (fanotify.FAN_MNT_ATTACH | fanotify.FAN_MNT_DETACH, 0x80000078, 42)]


def test_error_events_carry_the_error_beside_the_fid():
    fid = struct.pack("<BBHQIi8s", 1, 0, 28, 0x1234, 8, 1, b"\0" * 8)
    error = struct.pack("<BBHiI", fanotify.FAN_EVENT_INFO_TYPE_ERROR, 0, 12, 117, 3)
    (event,) = fanotify.parse(_event(fanotify.FAN_FS_ERROR, fid, error))
    assert (event.mask, event.error, event.error_count, event.mnt_id) == (fanotify.FAN_FS_ERROR, 117, 3, None)


def test_a_truncated_or_foreign_event_is_dropped_and_an_fd_in_one_is_closed():
    r, w = os.pipe()
    os.close(w)
    mnt = struct.pack("<BBHIQ", fanotify.FAN_EVENT_INFO_TYPE_MNT, 0, 16, 0, 1)
    events = list(fanotify.parse(_event(0x1, fd=r) + _event(0x1, mnt)[:30]))
    assert len(events) == 1
    with pytest.raises(OSError):
        os.fstat(r)
    assert list(fanotify.parse(struct.pack("<IBBHQii", 24, 2, 0, 24, 1, -1, 1))) == []  # another metadata version


@ROOT_ONLY
def test_the_kernel_says_what_it_offers():
    """Whatever the answer, asking does not fail (ENOSYS, EINVAL, EPERM mean no)."""
    assert fanotify.mount_events_available() in (True, False)
    assert fanotify_engine_available() in (True, False)


@STATMOUNT
def test_a_detached_mount_cannot_be_statmounted():
    base = tempfile.mkdtemp(prefix="wqfs-gone-")
    try:
        script = f"set -e; mount -t tmpfs none {base}; {sys.executable} {HERE} detached {base}"
        result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                capture_output=True, text=True, env=ENV)
        assert result.stdout.strip() == "2", (result.stdout, result.stderr)  # ENOENT
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _detached(base: str) -> None:
    """(In a private namespace, with a tmpfs at base:) statmount of it after its umount."""
    fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    stat = statmount.Statmounter(statmount.mntns_id(fd))
    (mnt_id,) = [m for m in statmount.listmount(stat.ns_id) if stat.stat(m).info.mountpoint == base]
    subprocess.run(["umount", base], check=True)
    try:
        stat.stat(mnt_id)
    except OSError as e:
        print(e.errno)


if __name__ == "__main__":
    if sys.argv[1] == "same-as-mountinfo":
        _same_as_mountinfo("self", sys.argv[2])
    elif sys.argv[1] == "detached":
        _detached(sys.argv[2])


@ROOT_ONLY
@pytest.mark.parametrize("kind", ["nsenter", "python"])
async def test_a_sentinel_joins_the_namespace_and_ends_with_its_pipe(kind, monkeypatch):
    from wqfs.host import sentinel
    if kind == "python":
        monkeypatch.setattr(sentinel.shutil, "which", lambda name: None)
    elif not shutil.which("nsenter"):
        pytest.skip("no nsenter")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "cat"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        while os.stat(f"/proc/{proc.pid}/ns/mnt") == os.stat("/proc/self/ns/mnt"):
            await trio.sleep(0.005)
        nsfd = os.open(f"/proc/{proc.pid}/ns/mnt", os.O_RDONLY)
        try:
            s = await sentinel.Sentinel.start(nsfd)
        finally:
            os.close(nsfd)
        try:
            assert os.stat(f"/proc/{s.pid}/ns/mnt") == os.stat(f"/proc/{proc.pid}/ns/mnt")
            assert mountinfo.read(s.pid) == mountinfo.read(proc.pid)
            assert s.process.stdin is not None
            await s.process.stdin.aclose()  # the daemon's end of the pipe closes: the sentinel ends
            with trio.fail_after(10):
                await s.wait()
        finally:
            await s.stop()
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()
