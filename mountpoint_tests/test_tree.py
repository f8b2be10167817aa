"""The tree: keys/, keyring directories, key files, the @ symlinks, hard links, names."""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest

from helpers import serial, sh, write_key


def test_root_lists_the_fixed_entries(mnt):
    assert sorted(os.listdir(mnt)) == sorted(["keys", "events", "watch_queue", "mounts", "superblocks",
                                              "@t", "@p", "@s", "@u", "@us", "@persistent"])
    assert stat.S_ISDIR(os.stat(os.path.join(mnt, "keys")).st_mode)
    assert stat.S_ISDIR(os.stat(os.path.join(mnt, "events")).st_mode)
    st = os.stat(os.path.join(mnt, "watch_queue"))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    assert os.listdir(os.path.join(mnt, "events")) == []


@pytest.mark.parametrize("name", ["@s", "@u", "@us", "@persistent"])
def test_special_names_are_symlinks_to_keys_serial(mnt, name):
    path = os.path.join(mnt, name)
    assert stat.S_ISLNK(os.lstat(path).st_mode)
    target = os.readlink(path)
    key = serial(path)
    assert target == f"keys/{key}"
    assert os.path.samefile(path, os.path.join(mnt, "keys", str(key)))
    assert stat.S_ISDIR(os.stat(path).st_mode)
    assert os.getxattr(path, "user.keyctl.type") == b"keyring"


def test_persistent_names_the_callers_persistent_keyring(mnt):
    """@persistent is KEYCTL_GET_PERSISTENT's keyring for the caller's uid, with persistent.c's
    permissions, and what `keyctl get_persistent` gives under `wqfs run` too."""
    path = os.path.join(mnt, "@persistent")
    uid = os.getuid()
    assert os.getxattr(path, "user.keyctl.description") == f"_persistent.{uid}".encode()
    assert os.getxattr(path, "user.keyctl.perm") == b"1f030000"
    expiry = int(os.getxattr(path, "user.keyctl.expiry"))
    assert 3 * 24 * 3600 - 60 < expiry <= 3 * 24 * 3600
    got = subprocess.run([sys.executable, "-m", "wqfs", "run", "--mount", mnt, "--", "keyctl", "get_persistent",
                          "@u"], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert int(got.stdout) == serial(path)


def test_session_falls_back_to_user_session_keyring(mnt):
    """Without a session keyring of its own, @s is the user-session keyring (_uid_ses.UID)."""
    assert os.readlink(os.path.join(mnt, "@s")) == os.readlink(os.path.join(mnt, "@us"))
    uid = os.getuid()
    assert os.getxattr(os.path.join(mnt, "@us"), "user.keyctl.description") == f"_uid_ses.{uid}".encode()
    assert os.getxattr(os.path.join(mnt, "@u"), "user.keyctl.description") == f"_uid.{uid}".encode()
    # The user-session keyring links the user keyring.
    linked = os.path.join(mnt, "@us", f"keyring:_uid.{uid}")
    assert serial(linked) == serial(os.path.join(mnt, "@u"))


def test_keys_lists_viewable_keys_by_decimal_serial(ring, mnt):
    write_key(os.path.join(ring, "user:listed"), b"v")
    ring_serial, key_serial = serial(ring), serial(os.path.join(ring, "user:listed"))
    names = os.listdir(os.path.join(mnt, "keys"))
    assert str(ring_serial) in names and str(key_serial) in names
    assert all(n.isdigit() and not n.startswith("0") for n in names)
    assert str(serial(os.path.join(mnt, "@s"))) in names
    assert stat.S_ISDIR(os.stat(os.path.join(mnt, "keys", str(ring_serial))).st_mode)
    assert stat.S_ISREG(os.stat(os.path.join(mnt, "keys", str(key_serial))).st_mode)


def test_inode_low_bits_are_the_serial(ring):
    path = os.path.join(ring, "user:ino")
    write_key(path, b"x")
    assert os.stat(path).st_ino & 0xFFFFFFFF == serial(path)
    assert os.stat(ring).st_ino & 0xFFFFFFFF == serial(ring)


def test_keys_serial_missing_is_enoent(mnt):
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(mnt, "keys", "2"))  # serials start at 3
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(mnt, "keys", "notanumber"))


def test_created_file_is_a_user_key_with_its_payload(ring):
    path = os.path.join(ring, "user:greeting")
    result = sh(f"echo hello > '{path}'")
    assert result.returncode == 0, result.stderr
    assert os.listdir(ring) == ["user:greeting"]
    with open(path, "rb") as f:
        assert f.read() == b"hello\n"
    st = os.stat(path)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 6 and st.st_nlink == 1
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    desc = os.getxattr(path, "user.keyctl.describe").decode()
    assert desc == f"user;{os.getuid()};{os.getgid()};3f010000;greeting"
    assert os.getxattr(path, "user.keyctl.state") == b"positive"
    assert subprocess.run(["cat", path], capture_output=True).stdout == b"hello\n"


def test_rewrite_and_append_change_the_payload(ring):
    path = os.path.join(ring, "user:k")
    write_key(path, b"one")
    key = serial(path)
    write_key(path, b"two")
    assert serial(path) == key  # an update, not a new key
    with open(path, "rb") as f:
        assert f.read() == b"two"
    assert sh(f"echo three >> '{path}'").returncode == 0
    with open(path, "rb") as f:
        assert f.read() == b"twothree\n"
    assert os.stat(path).st_size == len(b"twothree\n")


def test_touch_of_a_new_key_says_a_payload_is_needed(ring):
    """An empty user payload is add_key's EINVAL: touch (which checks close) says so and nothing
    is made; `: > file` is the same, though the shell does not look at close's answer."""
    path = os.path.join(ring, "user:empty")
    result = sh(f"touch '{path}'")
    assert result.returncode == 1 and "Invalid argument" in result.stderr, result.stderr
    assert sh(f": > '{path}'").returncode == 0
    assert not os.path.exists(path) and os.listdir(ring) == []


def test_append_reads_first_so_it_needs_read(ring):
    """`>>` is a read of the payload, then an update: without READ (nor the possessor's), open
    with O_APPEND fails as keyctl read would, and a plain rewrite still works."""
    path = os.path.join(ring, "user:wo")
    write_key(path, b"secret")
    os.setxattr(path, "user.keyctl.perm", b"00050000")  # the owner may view and write, no more
    with pytest.raises(PermissionError):
        os.open(path, os.O_WRONLY | os.O_APPEND)
    write_key(path, b"newer")
    assert os.stat(path).st_size == len(b"newer")  # VIEW shows the size; nothing may read it
    with pytest.raises(PermissionError):
        open(path, "rb")


def test_mode_bits_show_the_callers_own_rights_then_group_and_other(ring):
    """The user bits are what the caller may do, possession included (a new key's owner byte
    has VIEW only, but its possessor may read and write it: rw-); group and other bits are the
    key's own."""
    path = os.path.join(ring, "user:modes")
    write_key(path, b"x")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # 0x3f010000, possessed
    os.setxattr(path, "user.keyctl.perm", b"0x29070000")  # possessor: VIEW SEARCH SETATTR; owner: VIEW READ WRITE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.setxattr(path, "user.keyctl.perm", b"0x3f010302")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    os.setxattr(path, "user.keyctl.perm", b"0x01010302")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o044
    os.setxattr(ring, "user.keyctl.perm", b"0x0b0b0000")
    assert stat.S_IMODE(os.stat(ring).st_mode) == 0o500
    assert os.getxattr(ring, "user.keyctl.perm") == b"0b0b0000"
    nobody = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                             "import os, stat, sys; print(oct(stat.S_IMODE(os.stat(sys.argv[1]).st_mode)))",
                             os.path.join(ring, "..", "..", "keys", str(serial(path)))], capture_output=True, text=True)
    assert nobody.stdout.strip() in ("0o44", ""), nobody.stderr  # other's rights: r, as the other bits


def test_chmod_is_refused(ring):
    path = os.path.join(ring, "user:nochmod")
    write_key(path, b"x")
    with pytest.raises(PermissionError):
        os.chmod(path, 0o644)


def test_names_escape_slash_and_percent(ring):
    path = os.path.join(ring, "user:a%2Fb%25c")
    write_key(path, b"x")
    assert os.listdir(ring) == ["user:a%2Fb%25c"]
    assert os.getxattr(path, "user.keyctl.description") == b"a/b%c"
    os.mkdir(os.path.join(ring, "keyring:x%2Fy"))
    assert os.getxattr(os.path.join(ring, "keyring:x%2Fy"), "user.keyctl.description") == b"x/y"
    assert sorted(os.listdir(ring)) == ["keyring:x%2Fy", "user:a%2Fb%25c"]


def test_member_is_found_by_serial_but_listed_by_name(ring):
    path = os.path.join(ring, "user:byserial")
    write_key(path, b"payload")
    key = serial(path)
    by_serial = os.path.join(ring, str(key))
    assert os.path.samefile(by_serial, path)
    with open(by_serial, "rb") as f:
        assert f.read() == b"payload"
    assert os.listdir(ring) == ["user:byserial"]
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(ring, "2"))


def test_key_not_in_this_keyring_is_not_found_by_serial(ring, make_ring):
    other = make_ring()
    write_key(os.path.join(other, "user:elsewhere"), b"x")
    key = serial(os.path.join(other, "user:elsewhere"))
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(ring, str(key)))


def test_hard_links_count_the_keyrings_holding_a_key(ring, make_ring, mnt):
    r2 = make_ring()
    path = os.path.join(ring, "user:shared")
    write_key(path, b"x")
    key = serial(path)
    assert os.stat(path).st_nlink == 1
    result = subprocess.run(["ln", path, r2 + "/"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.listdir(r2) == ["user:shared"]
    assert os.stat(path).st_nlink == 2
    assert os.stat(os.path.join(mnt, "keys", str(key))).st_nlink == 2
    assert os.path.samefile(path, os.path.join(r2, "user:shared"))
    assert os.path.samefile(path, os.path.join(mnt, "keys", str(key)))
    assert subprocess.run(["rm", "-f", path]).returncode == 0
    assert os.listdir(ring) == []
    assert os.stat(os.path.join(r2, "user:shared")).st_nlink == 1
    with open(os.path.join(r2, "user:shared"), "rb") as f:
        assert f.read() == b"x"


def test_keyring_directories_count_subkeyrings_in_nlink(ring):
    assert os.stat(ring).st_nlink == 2
    os.mkdir(os.path.join(ring, "keyring:a"))
    os.mkdir(os.path.join(ring, "keyring:b"))
    write_key(os.path.join(ring, "user:c"), b"x")
    assert os.stat(ring).st_nlink == 4
    assert subprocess.run(["rmdir", os.path.join(ring, "keyring:a")]).returncode == 0
    assert os.stat(ring).st_nlink == 3
    assert sorted(os.listdir(ring)) == ["keyring:b", "user:c"]


def test_mkdir_nested_keyrings(ring):
    inner = os.path.join(ring, "keyring:outer", "keyring:inner")
    assert subprocess.run(["mkdir", "-p", inner]).returncode == 0
    assert os.getxattr(inner, "user.keyctl.type") == b"keyring"
    write_key(os.path.join(inner, "user:deep"), b"deep")
    with open(os.path.join(inner, "user:deep"), "rb") as f:
        assert f.read() == b"deep"
    assert subprocess.run(["ls", "-lR", ring], capture_output=True, text=True).stdout.count("user:deep") == 1


def test_mv_moves_a_key_between_keyrings(ring, make_ring):
    r2 = make_ring()
    path = os.path.join(ring, "user:moving")
    write_key(path, b"m")
    key = serial(path)
    result = subprocess.run(["mv", path, r2 + "/"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.listdir(ring) == []
    assert os.listdir(r2) == ["user:moving"]
    assert serial(os.path.join(r2, "user:moving")) == key


def test_mv_onto_an_existing_name_replaces_it(ring, make_ring):
    r2 = make_ring()
    write_key(os.path.join(ring, "user:dup"), b"new")
    write_key(os.path.join(r2, "user:dup"), b"old")
    new = serial(os.path.join(ring, "user:dup"))
    os.rename(os.path.join(ring, "user:dup"), os.path.join(r2, "user:dup"))
    assert serial(os.path.join(r2, "user:dup")) == new
    with open(os.path.join(r2, "user:dup"), "rb") as f:
        assert f.read() == b"new"


def test_ls_l_shows_the_keyring(ring):
    write_key(os.path.join(ring, "user:one"), b"1")
    os.mkdir(os.path.join(ring, "keyring:two"))
    result = subprocess.run(["ls", "-l", ring], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("d") and line.endswith("keyring:two") for line in lines)
    assert any(line.startswith("-") and line.endswith("user:one") for line in lines)


def test_keyring_is_a_directory_sized_by_its_links(ring, mnt):
    write_key(os.path.join(ring, "user:m"), b"1")
    member = serial(os.path.join(ring, "user:m"))
    with pytest.raises(IsADirectoryError):
        open(ring, "rb")
    # keyctl read of a keyring: the serials, 4 bytes each; the directory size is the same.
    assert os.stat(ring).st_size == 4
    with pytest.raises(OSError) as info:
        os.open(os.path.join(mnt, "keys", str(member), "x"), os.O_RDONLY)
    assert info.value.errno in (errno.ENOTDIR, errno.ENOENT)


def test_xattrs_of_a_key(ring):
    path = os.path.join(ring, "user:attrs")
    write_key(path, b"x")
    names = set(os.listxattr(path))
    assert {"user.keyctl.describe", "user.keyctl.serial", "user.keyctl.perm", "user.keyctl.state"} <= names
    assert int(os.getxattr(path, "user.keyctl.serial")) == serial(path)
    assert os.getxattr(path, "user.keyctl.expiry") == b"none"
    os.setxattr(path, "user.keyctl.timeout", b"1000")
    assert 0 < int(os.getxattr(path, "user.keyctl.expiry")) <= 1000
    result = subprocess.run(["getfattr", "--only-values", "-n", "user.keyctl.type", path],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "user"


def test_entries_outside_keyrings_are_read_only(mnt):
    for parent in (mnt, os.path.join(mnt, "keys"), os.path.join(mnt, "events")):
        with pytest.raises(OSError) as info:
            os.mkdir(os.path.join(parent, "keyring:nope"))
        assert info.value.errno in (errno.EPERM, errno.EACCES)
    with pytest.raises(OSError) as info:
        os.unlink(os.path.join(mnt, "watch_queue"))
    assert info.value.errno in (errno.EPERM, errno.EACCES)


def test_the_roots_names_are_kept_by_the_kernel_and_a_links_target_is_read_every_walk():
    """keys, events, watch_queue and the @ links name the same node for everyone, so the kernel
    keeps those entries (names.STATIC_ENTRY_TIMEOUT); what depends on the caller is still asked
    for every time: @s's target (readlink), the member's lookup, every stat."""
    from conftest import Daemon, stopped_after
    with stopped_after(Daemon("-v")) as d:
        path = os.path.join(d.path, "@s", "user:kept")
        write_key(path, b"0")  # add_key: the name's entry then moves from the new file to the key
        write_key(path, b"0")
        os.stat(os.path.join(d.path, "keys"))
        start = len(d.log())
        for i in range(3):
            write_key(path, b"%d" % i)
            os.stat(os.path.join(d.path, "keys"))
        log = d.log()[start:]
    assert "lookup(1, " not in log, log
    assert log.count("readlink(7, ") == 3, log
    assert log.count("b'user:kept'") == 3, log
    assert log.count(f"getattr({2}, ") == 3, log  # keys/'s attributes: asked each time
