"""Bad input of every kind: each is answered with the kernel's errno, and the daemon keeps serving.

The `mnt` fixture fails any test after which the daemon is gone or logged an internal error.
"""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from helpers import drain, serial, sh, write_key


def _errno(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


@pytest.fixture
def q(queues):
    return queues(size=None)


# ------------------------------------------------------ control commands

@pytest.mark.parametrize("data", [
    b"bogus", b"size", b"size x", b"size 1 2", b"size 1.5", b"watch", b"watch @s", b"watch @s x",
    b"watch @s 1 2", b"unwatch", b"unwatch @s 1", b"filter", b"filter raw", b"filter raw zz",
    b"filter raw 0", b"filter type=key,foo=1", b"filter type=key,type=key", b"filter subtypes=1",
    b"filter type=key,subtypes", b"filter type=key,subtypes=0x4,subtype_filter=1",
    b"filter type=nosuch", b"filter type=key,subtype_filter=1:2:3:4:5:6:7:8:9",
    b"filter type=key,subtypes=0x100000000", b"filter type=-1",
    b"size 1\nsize 2", b"watch @s 1\nunwatch @s", b"\n\n", b"   ",
    b"\xff\xfe\xfd", b"size \xc3\xa9", "watch \u00e9 1".encode(), b"\x00\x00\x00\x00",
    b"SIZE 32", b"watch @z 1", b"watch 99999999999 1",
])
def test_malformed_commands_are_einval(q, data):
    assert _errno(os.write, q.fileno(), data) == errno.EINVAL


def test_a_failed_command_changes_nothing(q, ring):
    os.write(q.fileno(), b"size 32")
    assert _errno(os.write, q.fileno(), f"watch {serial(ring)} 1 extra".encode()) == errno.EINVAL
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    assert drain(q) == []  # the watch was not set


@pytest.mark.parametrize("size", [4097, 65536, 1 << 20])
def test_oversized_writes_are_emsgsize(q, size):
    assert _errno(os.write, q.fileno(), b"size 32 " + b" " * (size - 8)) == errno.EMSGSIZE
    assert os.write(q.fileno(), b"size 32") == 7  # still usable


def test_command_of_exactly_4096_bytes_is_accepted(q):
    data = b"size 32" + b" " * (4096 - 7)
    assert os.write(q.fileno(), data) == 4096


@pytest.mark.parametrize("spec,error", [
    ("2", errno.ENOKEY),             # serials start at 3: no such key
    ("2147483647", errno.ENOKEY),
    ("0", errno.EINVAL),
    ("-6", errno.EINVAL),            # the group keyring is not supported
    ("-9", errno.EINVAL),
    ("-7", errno.ENOKEY),            # no assumed request-key authority
    ("-8", errno.ENOKEY),
    ("2147483648", errno.EINVAL),    # not a key_serial_t
    ("-2147483649", errno.EINVAL),
])
def test_watch_bad_serials(q, spec, error):
    assert _errno(os.write, q.fileno(), f"watch {spec} 1".encode()) == error


def test_unwatch_bad_serial_is_enokey(q):
    assert _errno(os.write, q.fileno(), b"unwatch 2") == errno.ENOKEY


def test_watch_of_a_revoked_key_is_ekeyrevoked(q, ring):
    path = os.path.join(ring, "user:revoked")
    write_key(path, b"x")
    k = serial(path)
    os.write(q.fileno(), f"watch {k} 1".encode())
    os.setxattr(path, "user.keyctl.revoke", b"")
    assert _errno(os.write, q.fileno(), f"watch {k} 2".encode()) == errno.EKEYREVOKED
    # Removing a watch looks the key up the same way.
    assert _errno(os.write, q.fileno(), f"unwatch {k}".encode()) == errno.EKEYREVOKED


def test_watch_of_an_expired_key_is_ekeyexpired(q, ring):
    path = os.path.join(ring, "user:expiring")
    write_key(path, b"x")
    k = serial(path)
    os.setxattr(path, "user.keyctl.timeout", b"1")
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.write(q.fileno(), f"watch {k} 1".encode())
        except OSError as error:
            assert error.errno in (errno.EKEYEXPIRED, errno.ENOKEY)  # ENOKEY once the GC freed it
            break
        os.write(q.fileno(), f"unwatch {k}".encode())
        time.sleep(0.1)
    else:
        pytest.fail("the key never expired")


# ------------------------------------------------------------------ names

@pytest.mark.parametrize("name,error", [
    ("notkeyring", errno.EINVAL),
    ("user:x", errno.EINVAL),        # mkdir makes keyrings only
    (":x", errno.EINVAL),
    ("keyring:bad%zz", errno.ENOENT),
    ("keyring:.dot", errno.EPERM),   # names starting with '.' are reserved
])
def test_bad_mkdir_names(ring, name, error):
    assert _errno(os.mkdir, os.path.join(ring, name)) == error
    assert os.listdir(ring) == []


@pytest.mark.parametrize("name,error", [
    ("nocolon", errno.EINVAL),
    ("bogus:x", errno.ENODEV),
    ("user:", errno.EINVAL),         # a description is required
    ("logon:nocolon", errno.EINVAL),
    (".internal:x", errno.EPERM),
    ("keyring:x", errno.EISDIR),     # keyrings are made with mkdir
    ("user:bad%zz", errno.ENOENT),
])
def test_bad_file_names(ring, name, error):
    assert _errno(write_key, os.path.join(ring, name), b"x") == error
    assert os.listdir(ring) == []


def test_bad_name_through_the_shell(ring):
    result = sh(f"echo x > '{ring}/nocolon'")
    assert result.returncode != 0 and "Invalid argument" in result.stderr
    result = sh(f"echo x > '{ring}/bogus:x'")
    assert result.returncode != 0 and "No such device" in result.stderr
    result = subprocess.run(["mkdir", os.path.join(ring, "notkeyring")], capture_output=True, text=True)
    assert result.returncode != 0 and "Invalid argument" in result.stderr


def test_create_outside_a_keyring_is_refused(mnt):
    for parent in (mnt, os.path.join(mnt, "keys"), os.path.join(mnt, "events")):
        assert _errno(write_key, os.path.join(parent, "user:x"), b"x") in (errno.EPERM, errno.EACCES)


def test_non_ascii_names(ring):
    """UTF-8 descriptions are kept; other bytes are refused (EINVAL) and never found (ENOENT)."""
    path = os.path.join(ring, "user:caf\u00e9 \u2603")
    write_key(path, b"x")
    assert os.listdir(ring) == ["user:caf\u00e9 \u2603"]
    assert os.getxattr(path, "user.keyctl.description") == "caf\u00e9 \u2603".encode()
    raw = os.fsencode(ring)
    for name in (b"user:\xff\xfe garbage", b"user:\xc3"):
        assert _errno(write_key, os.path.join(raw, name), b"x") == errno.EINVAL
        assert _errno(os.mkdir, os.path.join(raw, name.replace(b"user", b"keyring"))) == errno.EINVAL
        assert _errno(os.stat, os.path.join(raw, name)) == errno.ENOENT
    assert _errno(os.stat, os.path.join(raw, b"\xff:\xfe")) == errno.ENOENT
    assert _errno(os.stat, os.path.join(raw, b"\xff\xfe")) == errno.ENOENT
    assert os.listdir(ring) == ["user:caf\u00e9 \u2603"]


# ---------------------------------------------------------------- payloads

def test_huge_new_key_payload_is_einval(ring):
    path = os.path.join(ring, "user:huge")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert _errno(os.write, fd, b"x" * 40000) == errno.EINVAL
    finally:
        assert _errno(os.close, fd) == errno.EINVAL  # nothing was written: an empty payload's add_key
    assert "user:huge" not in os.listdir(ring)


def test_largest_user_payload_is_accepted(ring):
    path = os.path.join(ring, "user:big")
    write_key(path, b"y" * 32767)
    assert os.stat(path).st_size == 32767


def test_huge_update_payload_is_einval(ring):
    path = os.path.join(ring, "user:upd")
    write_key(path, b"small")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        assert _errno(os.write, fd, b"z" * 5000) == errno.EINVAL  # KEYCTL_UPDATE: at most PAGE_SIZE
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == b"small"


def test_huge_payload_through_the_shell(ring):
    result = sh(f"head -c 100000 /dev/zero > '{ring}/user:shellhuge'")
    assert result.returncode != 0 and "Invalid argument" in result.stderr


def test_writing_a_keyring_or_a_read_only_open_fails(ring):
    assert _errno(os.open, ring, os.O_WRONLY) == errno.EISDIR
    path = os.path.join(ring, "user:ro")
    write_key(path, b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _errno(os.write, fd, b"y") == errno.EBADF
    finally:
        os.close(fd)


# ---------------------------------------------------------------- xattrs

@pytest.mark.parametrize("name,value,error", [
    ("user.keyctl.perm", b"0x40000000", errno.EINVAL),      # a bit outside 0x3f3f3f3f
    ("user.keyctl.perm", b"rw", errno.EINVAL),
    ("user.keyctl.perm", b"\xff\xfe", errno.EINVAL),        # not ASCII
    ("user.keyctl.timeout", b"-1", errno.EINVAL),
    ("user.keyctl.timeout", b"soon", errno.EINVAL),
    ("user.keyctl.link", b"nope", errno.EINVAL),
    ("user.keyctl.link", b"2", errno.ENOKEY),
    ("user.keyctl.reject", b"60", errno.EINVAL),
    ("user.keyctl.nosuch", b"1", errno.ENOTSUP),
    ("user.keyctl.describe", b"x", errno.EPERM),           # read-only attributes
    ("user.keyctl.serial", b"5", errno.EPERM),
    ("user.other", b"1", errno.ENOTSUP),
    ("trusted.x", b"1", errno.ENOTSUP),
])
def test_bad_setxattr(ring, name, value, error):
    assert _errno(os.setxattr, ring, name, value) == error


def test_request_with_a_bad_name(ring):
    assert _errno(os.setxattr, ring, "user.keyctl.request", b"nocolon") == errno.EINVAL
    assert _errno(os.setxattr, ring, "user.keyctl.request", b"bogus:x") == errno.ENOKEY  # as request_key
    assert _errno(os.setxattr, ring, "user.keyctl.request", b"user:") == errno.EINVAL


def test_negate_a_positive_key_is_eperm(ring):
    path = os.path.join(ring, "user:positive")
    write_key(path, b"x")
    assert _errno(os.setxattr, path, "user.keyctl.negate", b"60") == errno.EPERM
    assert _errno(os.setxattr, path, "user.keyctl.reject", b"60 EKEYREJECTED") == errno.EPERM


def test_reject_with_an_impossible_error(ring):
    os.setxattr(ring, "user.keyctl.request", b"user:pend")
    path = os.path.join(ring, "user:pend")
    for value in (b"60 0", b"60 4096", b"60 ENOSUCHERR", b"60 512"):
        assert _errno(os.setxattr, path, "user.keyctl.reject", value) == errno.EINVAL
    assert os.getxattr(path, "user.keyctl.state") == b"uninstantiated"


def test_clear_or_restrict_a_plain_key_is_enotdir(ring):
    path = os.path.join(ring, "user:plain")
    write_key(path, b"x")
    assert _errno(os.setxattr, path, "user.keyctl.clear", b"") == errno.ENOTDIR
    assert _errno(os.setxattr, path, "user.keyctl.restrict", b"") == errno.ENOTDIR


def test_bad_getxattr(ring, mnt):
    assert _errno(os.getxattr, ring, "user.keyctl.nosuch") == errno.ENODATA
    assert _errno(os.getxattr, ring, "user.other") == errno.ENODATA
    assert _errno(os.getxattr, os.path.join(mnt, "watch_queue"), "user.keyctl.serial") == errno.ENODATA
    assert _errno(os.setxattr, os.path.join(mnt, "watch_queue"), "user.keyctl.perm", b"0") == errno.ENOTSUP
    assert _errno(os.removexattr, ring, "user.keyctl.perm") == errno.ENOTSUP


def test_link_cycle_is_edeadlk(ring):
    sub = os.path.join(ring, "keyring:child")
    os.mkdir(sub)
    assert _errno(os.setxattr, ring, "user.keyctl.link", str(serial(ring)).encode()) == errno.EDEADLK
    assert _errno(os.setxattr, sub, "user.keyctl.link", str(serial(ring)).encode()) == errno.EDEADLK


# ------------------------------------------------------ tree operations

def test_rename_to_another_name_is_einval(ring):
    path = os.path.join(ring, "user:fixed")
    write_key(path, b"x")
    assert _errno(os.rename, path, os.path.join(ring, "user:other")) == errno.EINVAL
    result = subprocess.run(["mv", path, os.path.join(ring, "user:renamed")], capture_output=True, text=True)
    assert result.returncode != 0  # mv words EINVAL from rename() as "a subdirectory of itself"
    assert os.listdir(ring) == ["user:fixed"]


def test_link_under_another_name_is_einval(ring, make_ring):
    r2 = make_ring()
    path = os.path.join(ring, "user:lnk")
    write_key(path, b"x")
    assert _errno(os.link, path, os.path.join(r2, "user:different")) == errno.EINVAL
    assert os.listdir(r2) == []


def test_rm_of_a_keyring_and_rmdir_of_a_key(ring):
    sub = os.path.join(ring, "keyring:d")
    os.mkdir(sub)
    path = os.path.join(ring, "user:f")
    write_key(path, b"x")
    assert _errno(os.unlink, sub) == errno.EISDIR
    assert _errno(os.rmdir, path) == errno.ENOTDIR
    assert _errno(os.unlink, os.path.join(ring, "user:absent")) == errno.ENOENT
    assert sorted(os.listdir(ring)) == ["keyring:d", "user:f"]


def test_symlink_and_mknod_are_eperm(ring):
    assert _errno(os.symlink, "/etc/passwd", os.path.join(ring, "user:sym")) == errno.EPERM
    assert _errno(os.mkfifo, os.path.join(ring, "user:fifo")) == errno.EPERM


def test_restricted_keyring_refuses_links(ring, make_ring):
    r2 = make_ring()
    path = os.path.join(r2, "user:k")
    write_key(path, b"x")
    os.setxattr(ring, "user.keyctl.restrict", b"")
    assert _errno(os.link, path, os.path.join(ring, "user:k")) == errno.EPERM
    assert _errno(os.mkdir, os.path.join(ring, "keyring:no")) == errno.EPERM
    assert _errno(os.setxattr, ring, "user.keyctl.restrict", b"") == errno.EEXIST


def test_daemon_still_serves_after_a_burst_of_bad_input(mnt, ring, queues):
    qq = queues(size=None)
    for data in (b"\xff" * 100, b"size -5", b"watch 0 0", b"filter raw " + b"0" * 3000, b"x" * 5000):
        try:
            os.write(qq.fileno(), data)
        except OSError:
            pass
    for name in ("::::", "a" * 255, "%%%%", "user:%2", "keyring:%2F%25"):
        for fn in (os.mkdir, lambda p: write_key(p, b"x"), os.stat, os.unlink):
            try:
                fn(os.path.join(ring, name))
            except OSError:
                pass
    result = subprocess.run(["ls", mnt], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "watch_queue" in result.stdout
    q = queues()
    q.watch(serial(ring), 1)
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    assert drain(q) == [("key", 7, serial(ring), 0, 1)]
