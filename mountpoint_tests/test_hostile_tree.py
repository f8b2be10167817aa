"""Hostile callers of the tree: what nobody (65534) learns from listings, lookups and times of
root's keys must be no more than the kernel tells it (keyctl_read_key gives a keyring's
serials, keyctl_describe the rest to VIEW, keyctl_search answers to SEARCH, no access time)."""
from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from helpers import NOBODY, NOBODY_UID, PYTHON, ROOT, read_line, serial, sh, write_key

EXPIRE = 0.05  # longer than a jiffy: a dentry (entry timeout 0) is looked up again after it

PROBE = r"""
import json, os, sys

def probe(path):
    try:
        st = os.lstat(path)
    except OSError as error:
        return error.errno
    return [st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_atime_ns, st.st_ino]

out = {}
for arg in sys.argv[1:]:
    if arg.startswith("ls:"):
        try:
            out[arg] = {name: probe(os.path.join(arg[3:], name)) for name in sorted(os.listdir(arg[3:]))}
        except OSError as error:
            out[arg] = error.errno
    else:
        out[arg] = probe(arg)
print(json.dumps(out))
"""

CREATOR = r"""
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, b"nobody's")
print("open", flush=True)
sys.stdin.readline()
st = os.stat(path)
print("stat", st.st_uid, st.st_size, flush=True)
print("listed", os.path.basename(path) in os.listdir(os.path.dirname(path)), flush=True)
os.close(fd)
print("closed", flush=True)
"""


def probe(*args: str) -> dict:
    """lstat (or "ls:DIR": listdir, then lstat of each entry) as nobody: attributes or an errno."""
    result = subprocess.run(NOBODY + [PYTHON, "-c", PROBE, *args], capture_output=True, text=True,
                            timeout=30, cwd="/")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def serves_root(mnt: str) -> None:
    """After each hostile case: the daemon still answers root."""
    assert "watch_queue" in os.listdir(mnt)


def nobody_ls(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(NOBODY + ["ls", *argv], capture_output=True, text=True, timeout=30, cwd="/")


def hidden_or_denied(attrs, mnt: str) -> bool:
    """What a member listed by serial may show: EACCES, or a mode-0 file of nobody's, size 0,
    with the mount's own time (nothing of the key)."""
    if attrs == errno.EACCES:
        return True
    return attrs[:5] == [stat.S_IFREG, NOBODY_UID, NOBODY_UID, 0, os.stat(mnt).st_mtime_ns]


@pytest.fixture
def readable_ring(ring):
    """root's keyring that others may VIEW and READ, with a secret they may not VIEW, a public
    key they may, and a key root may VIEW by possession only."""
    secret = os.path.join(ring, "user:db-password-prod")
    public = os.path.join(ring, "user:public")
    possessed = os.path.join(ring, "user:possessed-only")
    for path in (secret, public, possessed):
        write_key(path, b"hunter2")
    os.setxattr(public, "user.keyctl.perm", b"0x3f010001")
    os.setxattr(possessed, "user.keyctl.perm", b"0x09000000")  # possessor VIEW|SEARCH, nothing else
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0003")  # other: VIEW, READ
    return ring, serial(secret), serial(public), serial(possessed)


# ------------------------------------------------- 5: a listing shows what VIEW allows


def test_listing_shows_members_without_view_by_serial_only(mnt, readable_ring):
    ring, secret, public, possessed = readable_ring
    result = nobody_ls("-1", f"{mnt}/keys/{serial(ring)}")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted([str(secret), "user:public", str(possessed)])
    assert "db-password-prod" not in result.stdout and "possessed-only" not in result.stdout
    # root sees every name: its own keys by user VIEW, the last by possession
    assert sorted(os.listdir(ring)) == ["user:db-password-prod", "user:possessed-only", "user:public"]
    serves_root(mnt)


def test_attributes_of_a_hidden_member_reveal_nothing(mnt, readable_ring):
    ring, secret, public, _ = readable_ring
    directory = f"{mnt}/keys/{serial(ring)}"
    listed = probe("ls:" + directory)["ls:" + directory]
    assert hidden_or_denied(listed[str(secret)], mnt), listed
    mode, uid, gid, size = listed["user:public"][:4]  # a member nobody may VIEW shows itself
    assert (mode, uid, gid, size) == (stat.S_IFREG, 0, 0, 7)
    result = nobody_ls("-ln", directory)
    assert "db-password-prod" not in result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.endswith(f" {secret}"))
    fields = line.split()
    assert fields[0].startswith("-?") or (fields[0], fields[2], fields[3], fields[4]) == \
        ("----------", str(NOBODY_UID), str(NOBODY_UID), "0"), line
    time.sleep(EXPIRE)
    # looked up (not from the listing's cache) by its serial: EACCES, as keyctl_describe
    assert probe(f"{directory}/{secret}")[f"{directory}/{secret}"] == errno.EACCES
    serves_root(mnt)


def test_a_hidden_keyring_stays_a_directory_for_root(mnt, readable_ring):
    """nobody's listing shows the subkeyring as a plain file; root's inode of it must not turn
    bad (a node id whose file type changes is EIO for everyone)."""
    ring = readable_ring[0]
    inner = os.path.join(ring, "keyring:inner")
    os.mkdir(inner)
    write_key(os.path.join(inner, "user:deep"), b"x")
    s = serial(inner)
    held = os.open(inner, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.listdir(inner) == ["user:deep"]
        directory = f"{mnt}/keys/{serial(ring)}"
        for _ in range(2):
            listed = probe("ls:" + directory)["ls:" + directory]
            assert "keyring:inner" not in listed and hidden_or_denied(listed[str(s)], mnt), listed
            # root, by every path, still has a directory
            assert stat.S_ISDIR(os.stat(inner).st_mode) and stat.S_ISDIR(os.fstat(held).st_mode)
            assert stat.S_ISDIR(os.stat(f"{mnt}/keys/{s}").st_mode)
            assert os.listdir(held) == ["user:deep"] and os.listdir(f"{mnt}/keys/{s}") == ["user:deep"]
            result = sh(f"cd '{inner}' && ls && cd '{mnt}/keys/{s}' && ls")
            assert result.returncode == 0 and result.stdout.split() == ["user:deep", "user:deep"], result.stderr
            time.sleep(EXPIRE)
            again = probe(f"{directory}/{s}", f"{mnt}/keys/{s}", "ls:" + directory)
            assert again[f"{directory}/{s}"] == errno.EACCES and again[f"{mnt}/keys/{s}"] == errno.EACCES
            assert hidden_or_denied(again["ls:" + directory][str(s)], mnt)
    finally:
        os.close(held)
    serves_root(mnt)


# ------------------------------------------- 6: a lookup is no existence oracle

ABSENT_SERIAL = "2147483646"  # no key: serials are random, this one is never made in a test


@pytest.fixture
def names_ring(ring, make_ring):
    """root's keyring with a member nobody may not VIEW and one it may; and a key elsewhere."""
    hidden = os.path.join(ring, "user:hidden-name")
    visible = os.path.join(ring, "user:visible")
    write_key(hidden, b"x")
    write_key(visible, b"y")
    os.setxattr(visible, "user.keyctl.perm", b"0x3f010001")
    elsewhere = make_ring()
    return ring, serial(hidden), serial(visible), serial(elsewhere)


OK = "ok"
# ring's permission for others -> what nobody's lookup of each name gives
CASES = {
    "view only": (b"0x3f3f0001", {
        "user:hidden-name": errno.EACCES, "user:nothere": errno.EACCES, "user:visible": errno.EACCES,
        "nocolon": errno.EACCES, "hidden": errno.EACCES, "visible": errno.EACCES,
        "elsewhere": errno.EACCES, "absent": errno.EACCES}),
    "search": (b"0x3f3f0009", {  # keyctl_search's answers; serials still need READ
        "user:hidden-name": errno.EACCES, "user:nothere": errno.ENOENT, "user:visible": OK,
        "nocolon": errno.ENOENT, "hidden": errno.EACCES, "visible": errno.EACCES,
        "elsewhere": errno.EACCES, "absent": errno.EACCES}),
    "read": (b"0x3f3f0003", {  # a read's serials; names only of what it lists
        "user:hidden-name": errno.EACCES, "user:nothere": errno.EACCES, "user:visible": OK,
        "nocolon": errno.EACCES, "hidden": errno.EACCES, "visible": OK,
        "elsewhere": errno.ENOENT, "absent": errno.ENOENT}),
    "write": (b"0x3f3f0005", {  # add_key's: a writer learns whether a name is free, nothing more
        "user:hidden-name": errno.EACCES, "user:nothere": errno.ENOENT, "user:visible": errno.EACCES,
        "nocolon": errno.ENOENT, "hidden": errno.EACCES, "visible": errno.EACCES,
        "elsewhere": errno.EACCES, "absent": errno.EACCES}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lookup_answers_alike_what_nobody_may_not_know(mnt, names_ring, case):
    ring, hidden, visible, elsewhere = names_ring
    perm, expected = CASES[case]
    os.setxattr(ring, "user.keyctl.perm", perm)
    directory = f"{mnt}/keys/{serial(ring)}"
    paths = {"user:hidden-name": "user:hidden-name", "user:nothere": "user:nothere",
             "user:visible": "user:visible", "nocolon": "nocolon", "hidden": str(hidden),
             "visible": str(visible), "elsewhere": str(elsewhere), "absent": ABSENT_SERIAL}
    got = probe(*(f"{directory}/{name}" for name in paths.values()))
    answers = {label: (OK if isinstance(got[f"{directory}/{name}"], list) else got[f"{directory}/{name}"])
               for label, name in paths.items()}
    assert answers == expected
    # keys/<serial> keeps keyctl_describe's own answers: ENOKEY (ENOENT here) before EACCES
    keys = probe(f"{mnt}/keys/{ABSENT_SERIAL}", f"{mnt}/keys/{hidden}")
    assert keys == {f"{mnt}/keys/{ABSENT_SERIAL}": errno.ENOENT, f"{mnt}/keys/{hidden}": errno.EACCES}
    # root, possessing the keyring, finds and misses as before
    assert os.stat(os.path.join(ring, "user:hidden-name")).st_uid == 0
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(ring, "user:nothere"))
    serves_root(mnt)


def test_write_alone_creates_keys_through_the_tree(mnt, ring):
    """add_key needs only WRITE on the keyring: so does `echo v > RING/user:NAME`."""
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0005")  # others: view, write
    result = sh(f"echo v > '{mnt}/keys/{serial(ring)}/user:by-nobody'", nobody=True)
    assert result.returncode == 0, result.stderr
    made = os.path.join(ring, "user:by-nobody")
    assert os.stat(made).st_uid == NOBODY_UID and open(made).read() == "v\n"
    serves_root(mnt)


def test_a_file_being_created_is_its_creators_alone(mnt, ring, procs):
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f000f")  # other: view, read, write, search
    name = "user:nobodys-new"
    path = f"{mnt}/keys/{serial(ring)}/{name}"
    proc = subprocess.Popen(NOBODY + [PYTHON, "-c", CREATOR, path], cwd="/", text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    assert read_line(proc.stdout) == "open\n"
    time.sleep(EXPIRE)
    # not a key yet: root (who may search and read the keyring) sees no such name ...
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(ring, name))
    assert name not in os.listdir(ring)
    # ... while its creator stats and lists it
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert read_line(proc.stdout) == f"stat {NOBODY_UID} 8\n"
    assert read_line(proc.stdout) == "listed True\n"
    assert read_line(proc.stdout) == "closed\n"
    assert proc.wait(15) == 0, proc.stderr.read()
    assert os.stat(os.path.join(ring, name)).st_uid == NOBODY_UID  # committed at close: now it is
    serves_root(mnt)


# --------------------------------------------------- 7: no access time to watch


def test_reads_and_searches_do_not_move_a_keys_times(mnt, ring):
    path = os.path.join(ring, "user:watched")
    write_key(path, b"payload")
    os.setxattr(path, "user.keyctl.perm", b"0x3f010003")  # others may view and read it
    before = os.stat(path)
    assert before.st_atime_ns == before.st_mtime_ns
    time.sleep(0.05)
    k = serial(path)
    result = sh(f"cat {mnt}/keys/{k}", nobody=True)
    assert result.returncode == 0 and result.stdout == "payload", result.stderr
    with open(path, "rb") as f:
        assert f.read() == b"payload"
    found = subprocess.run([sys.executable, "-m", "wqfs", "run", "--mount", mnt, "--", "keyctl", "search",
                            str(serial(ring)), "user", "watched"], capture_output=True, text=True,
                           timeout=60, cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL)
    assert found.stdout.split() == [str(k)], found.stderr
    for st in (os.stat(path), os.stat(f"{mnt}/keys/{k}")):
        assert (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns) == \
            (before.st_mtime_ns, before.st_mtime_ns, before.st_ctime_ns)
    nobody_sees = probe(f"{mnt}/keys/{k}")[f"{mnt}/keys/{k}"]
    assert nobody_sees[4] == nobody_sees[5] == before.st_mtime_ns
    serves_root(mnt)
