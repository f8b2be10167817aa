"""The CLI for mount and superblock notifications: `wqfs decode` of their records, `wqfs watch
--mounts PATH` and `--sb PATH` (each mount made inside a private mount namespace), `wqfs mount
--mount-engine`, `wqfs cflags`."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from typing import Iterator

import pytest

from helpers import ROOT, serial
from mountns import sh_in_private_ns

WQFS = [sys.executable, "-m", "wqfs"]
IN_SUBTREE = 0x10000


def wqfs(*args: str, data: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(WQFS + list(args), input=data, capture_output=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def public_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="wqfs-cli-mounts-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ decode

# A2's mount records and v16's superblock records, packed here by hand.
NEW_MOUNT = struct.pack("<IIQQ", 2, 24 | 1 << 8, 0x2F, 0x30)
UNMOUNT_BELOW = struct.pack("<IIQQ", 2 | 1 << 24, 24 | 2 << 8 | IN_SUBTREE, 0x31, 0x32)
SB_READONLY = struct.pack("<IIQ", 3, 16 | 3 << 8 | 0x10000, 0x35)
SB_ERROR = struct.pack("<IIQII", 3 | 1 << 24, 24 | 3 << 8, 0x800001, 117, 0)
REMOVAL = struct.pack("<IIQ", 0, 16 | 1 << 8, 0x30)
RECORDS = NEW_MOUNT + UNMOUNT_BELOW + SB_READONLY + SB_ERROR + REMOVAL


def test_decode_prints_mount_and_superblock_records_as_watch_test_does():
    result = wqfs("decode", data=RECORDS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        "MOUNT 0000002f change=0[new_mount] aux=30",
        "MOUNT 00000031 change=1[unmount] aux=32",
        "SUPER 00000035 change=0[readonly]",
        "SUPER 00800001 change=1[error] error=117",
        "48 gc",
    ]


def test_decode_watch_test_style_has_the_header_lines():
    result = wqfs("decode", "--style", "watch_test", data=NEW_MOUNT + SB_READONLY)
    assert result.stdout.decode().splitlines() == [
        "read() = 40",
        "NOTIFY[000]: ty=000002 sy=00 i=00000118",
        "MOUNT 0000002f change=0[new_mount] aux=30",
        "NOTIFY[018]: ty=000003 sy=00 i=00010310",
        "SUPER 00000035 change=0[readonly]",
    ]


def test_decode_json_has_every_field():
    result = wqfs("decode", "--style", "json", data=RECORDS)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert lines[0] == {"kind": "mount", "subtype": 0, "event": "new_mount", "triggered_on": 0x2F, "aux": 0x30,
                        "tag": 1, "in_subtree": False, "is_now_ro": False, "is_submount": False}
    assert lines[1]["in_subtree"] is True and lines[1]["event"] == "unmount" and lines[1]["tag"] == 2
    assert lines[2] == {"kind": "superblock", "subtype": 0, "event": "readonly", "sb_id": 0x35, "tag": 3,
                        "is_now_ro": True}
    assert lines[3]["error_number"] == 117 and lines[3]["error_cookie"] == 0 and lines[3]["event"] == "error"
    assert lines[4] == {"kind": "removal", "id": 0x30, "tag": 1}


# ------------------------------------------------------------------ watch

WATCH_MOUNTS = r'''
mnt=$1 py=$2 dir=$3 out=$4 err=$5; shift 5
: > "$err"
"$py" -m wqfs watch --mount "$mnt" "$@" > "$out" 2> "$err" &
w=$!
trap 'kill $w 2>/dev/null || true' EXIT
until grep -q "Watches established" "$err" || ! kill -0 $w 2>/dev/null; do sleep 0.01; done
mount -t tmpfs wqfs-test "$dir"
awk -v d="$dir" '$5 == d {print $1, $2}' /proc/self/mountinfo
until [ "$(wc -l < "$out")" -ge 1 ] || ! kill -0 $w 2>/dev/null; do sleep 0.01; done
umount "$dir"
status=0
wait $w || status=$?
echo "$status"
'''


def _watch_in_ns(mnt: str, tmp_path, *options: str) -> tuple[list[str], int, int, int, str]:
    target, out, err = tmp_path / "t", tmp_path / "out", tmp_path / "err"
    target.mkdir()
    result = sh_in_private_ns(WATCH_MOUNTS, mnt, sys.executable, str(target), str(out), str(err), *options)
    assert result.returncode == 0, result.stderr
    ids, status = result.stdout.split("\n")[:2]
    mnt_id, parent = map(int, ids.split())
    return out.read_text().splitlines(), mnt_id, parent, int(status), err.read_text()


def test_watch_mounts_prints_watch_tests_lines(mnt, tmp_path):
    """`wqfs watch --mounts /`: a line per record, as watch_test.c prints it; -c 2 ends it."""
    lines, mnt_id, parent, status, err = _watch_in_ns(mnt, tmp_path, "--mounts", "/", "-c", "2")
    assert status == 0, err
    assert lines == [f"MOUNT {parent:08x} change=0[new_mount] aux={mnt_id:x}",
                     f"MOUNT {parent:08x} change=1[unmount] aux={mnt_id:x}"]


def test_watch_mounts_format_and_json(mnt, tmp_path):
    lines, mnt_id, parent, status, err = _watch_in_ns(mnt, tmp_path, "--mounts", "/", "-c", "2",
                                                      "--format", "%e %i %a %g")
    assert status == 0 and err == "Watches established.\n"
    assert lines == [f"new_mount {parent} {mnt_id} 1", f"unmount {parent} {mnt_id} 1"]
    (tmp_path / "t").rmdir()
    lines, mnt_id, parent, status, err = _watch_in_ns(mnt, tmp_path, "--mounts", "/", "-c", "1", "--json")
    fields = json.loads(lines[0])
    assert (fields["kind"], fields["event"], fields["triggered_on"], fields["aux"]) == \
        ("mount", "new_mount", parent, mnt_id)


WATCH_SB = r'''
mnt=$1 py=$2 dir=$3 out=$4 err=$5
mount -t tmpfs wqfs-test "$dir"
stat -c %d "$dir"
: > "$err"
"$py" -m wqfs watch --mount "$mnt" --sb "$dir" > "$out" 2> "$err" &
w=$!
trap 'kill $w 2>/dev/null || true' EXIT
until grep -q "Watches established" "$err" || ! kill -0 $w 2>/dev/null; do sleep 0.01; done
mount -o remount,ro "$dir"
until [ "$(wc -l < "$out")" -ge 1 ] || ! kill -0 $w 2>/dev/null; do sleep 0.01; done
umount "$dir"
status=0
wait $w || status=$?
echo "$status"
'''


def test_watch_sb_ends_when_its_superblock_goes(mnt, tmp_path):
    """`wqfs watch --sb DIR`: READONLY on a remount ro; the superblock's end is its removal,
    and with no watch left, watch exits 0 (as keyctl watch does when its key goes)."""
    target, out, err = tmp_path / "t", tmp_path / "out", tmp_path / "err"
    target.mkdir()
    result = sh_in_private_ns(WATCH_SB, mnt, sys.executable, str(target), str(out), str(err))
    assert result.returncode == 0, result.stderr
    dev, status = map(int, result.stdout.split())
    assert status == 0, err.read_text()
    assert out.read_text().splitlines() == [f"SUPER {dev:08x} change=0[readonly]", "REMOVAL of watchpoint 00000001"]


def test_watch_mounts_and_keys_share_one_queue(mnt, ring, tmp_path):
    """KEYs and --mounts together: the KEYs' tags first, then the PATHs'; both kinds of line."""
    lines, mnt_id, parent, status, err = _watch_in_ns(mnt, tmp_path, str(serial(ring)), "--mounts", "/",
                                                      "-c", "2", "--format", "%e %g")
    assert status == 0, err
    assert lines == ["new_mount 2", "unmount 2"]


def test_watch_errors_name_the_path(mnt, public_dir):
    result = wqfs("watch", "--mount", mnt, "--mounts", os.path.join(public_dir, "missing"))
    assert result.returncode == 1
    assert result.stderr.decode() == (f"wqfs: cannot watch --mounts {public_dir}/missing: no such file or "
                                      "directory (as this process sees the path) (ENOENT)\n")
    open(os.path.join(public_dir, "file"), "w").close()
    result = wqfs("watch", "--mount", mnt, "--mounts", os.path.join(public_dir, "file"))
    assert result.returncode == 1 and b"(ENOTDIR)" in result.stderr
    result = wqfs("watch", "--mount", mnt)
    assert result.returncode == 2 and b"watch needs a KEY, --mounts PATH or --sb PATH" in result.stderr


def test_watch_mounts_relative_to_the_cwd(mnt, public_dir):
    """A relative PATH is the watch process's own (its cwd), as for watch_mount(AT_FDCWD, ...)."""
    os.mkdir(os.path.join(public_dir, "sub"))
    proc = subprocess.run(WQFS + ["watch", "--mount", mnt, "--mounts", "sub", "-t", "0.01"], cwd=public_dir,
                          capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 2, proc.stderr  # watched, then timed out: no event
    assert proc.stderr == b"Watches established.\n"


# ------------------------------------------------------------------ mount, cflags

def test_mount_engine_is_one_of_three():
    result = wqfs("mount", "--mount-engine", "bogus", "/nonexistent")
    assert result.returncode == 2 and b"invalid choice: 'bogus'" in result.stderr


def test_cflags_finds_the_header(tmp_path):
    result = wqfs("cflags")
    assert result.returncode == 0
    flags = result.stdout.decode().split()
    assert len(flags) == 1 and flags[0].startswith("-I")
    assert os.path.isfile(os.path.join(flags[0][2:], "wqfs", "watch_queue.h"))
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    source = tmp_path / "t.c"
    source.write_text("#include <wqfs/watch_queue.h>\n"
                      "int main(void) { struct mount_notification n; return (int)sizeof(n) - 24; }\n")
    built = subprocess.run(["cc", *flags, "-o", str(tmp_path / "t"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert subprocess.run([str(tmp_path / "t")]).returncode == 0


def test_run_takes_the_legacy_numbers_by_version(mnt):
    """`wqfs run --legacy-watch-nr 2020-08|2020-02`: run()'s legacy_watch_nr; another is usage."""
    for version in ("2020-08", "2020-02"):
        result = wqfs("run", "--mount", mnt, "--legacy-watch-nr", version, "--", "true")
        assert result.returncode == 0, result.stderr
    result = wqfs("run", "--mount", mnt, "--legacy-watch-nr", "2019", "--", "true")
    assert result.returncode == 2 and b"invalid choice: '2019'" in result.stderr
