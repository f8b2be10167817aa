"""Which file operation posts which record (the notify_key calls of security/keys/*.c), and the
events/ text files.

Every key record is ("key", subtype, key_id, aux, tag); posting is synchronous, so the
records are readable as soon as the file operation returns.
"""
from __future__ import annotations

import errno
import os
import select
import subprocess
import time

import pytest

from helpers import (CLEARED, INVAL, LINKED, REVOKED, ROOT, SETATTR, UNLINKED, UPD, WAIT, drain, key, read_line,
                     serial, sh, wait_blocked_in_read, wait_records, write_key)


# ---------------------------------------------------------------- which operation posts what

def test_create_write_close_posts_linked_with_the_new_serial(ring, queues):
    q = queues()
    q.watch(serial(ring), 1)
    result = sh(f"echo secret > '{ring}/user:new'")
    assert result.returncode == 0, result.stderr
    new = serial(os.path.join(ring, "user:new"))
    assert drain(q) == [key(LINKED, serial(ring), new)]


def test_linked_record_is_16_bytes_with_the_tag_in_info(ring, queues):
    q = queues()
    q.watch(serial(ring), 0x2A)
    write_key(os.path.join(ring, "user:raw"), b"x")
    data = os.read(q.fileno(), 433)
    new = serial(os.path.join(ring, "user:raw"))
    assert data == (0x02000001).to_bytes(4, "little") + (0x2A10).to_bytes(4, "little") \
        + serial(ring).to_bytes(4, "little") + new.to_bytes(4, "little")


def test_rewriting_a_key_posts_one_updated_per_close(ring, queues):
    path = os.path.join(ring, "user:upd")
    write_key(path, b"v1")
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(serial(path), 2)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"part one, ")
    os.write(fd, b"part two")
    assert drain(q) == []  # nothing until the close
    os.close(fd)
    assert drain(q) == [key(UPD, serial(path), 0, 2)]
    with open(path, "rb") as f:
        assert f.read() == b"part one, part two"
    assert sh(f"echo v3 > '{path}'").returncode == 0
    assert drain(q) == [key(UPD, serial(path), 0, 2)]  # no LINKED on the keyring: same key


def test_opening_for_write_without_writing_posts_nothing(ring, queues):
    path = os.path.join(ring, "user:quiet")
    write_key(path, b"v1")
    q = queues()
    q.watch(serial(path), 1)
    os.close(os.open(path, os.O_WRONLY))
    with open(path, "rb") as f:
        f.read()
    assert drain(q) == []


def test_ln_posts_linked_on_the_target_keyring(ring, make_ring, queues):
    r2 = make_ring()
    path = os.path.join(ring, "user:lnk")
    write_key(path, b"x")
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(serial(r2), 2)
    result = subprocess.run(["ln", path, r2 + "/"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert drain(q) == [key(LINKED, serial(r2), serial(path), 2)]


def test_rm_posts_unlinked(ring, queues):
    path = os.path.join(ring, "user:gone")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(serial(ring), 1)
    assert subprocess.run(["rm", "-f", path]).returncode == 0
    assert drain(q) == [key(UNLINKED, serial(ring), k)]


def test_mv_posts_unlinked_then_linked(ring, make_ring, queues):
    r2 = make_ring()
    path = os.path.join(ring, "user:mv")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(serial(r2), 2)
    result = subprocess.run(["mv", path, r2 + "/"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert drain(q) == [key(UNLINKED, serial(ring), k, 1), key(LINKED, serial(r2), k, 2)]


def test_link_displacing_a_same_named_key_posts_only_linked(ring, make_ring, queues):
    r2 = make_ring()
    write_key(os.path.join(ring, "user:same"), b"new")
    write_key(os.path.join(r2, "user:same"), b"old")
    new, old = serial(os.path.join(ring, "user:same")), serial(os.path.join(r2, "user:same"))
    q = queues()
    q.watch(serial(r2), 1)
    q.watch(old, 2)
    # ln onto an existing name is refused by the VFS; the link attribute is keyctl link.
    result = subprocess.run(["ln", os.path.join(ring, "user:same"), r2 + "/"], capture_output=True, text=True)
    assert result.returncode != 0 and "File exists" in result.stderr
    assert drain(q) == []
    os.setxattr(r2, "user.keyctl.link", str(new).encode())
    got = drain(q)
    got += wait_records(q, 2 - len(got))
    # No UNLINKED for the displaced key; linked nowhere now, it is destroyed (asynchronously).
    assert got == [key(LINKED, serial(r2), new), ("removal", old, 2)]
    assert serial(os.path.join(r2, "user:same")) == new


def test_mv_to_the_same_keyring_posts_nothing(ring, queues):
    path = os.path.join(ring, "user:stay")
    write_key(path, b"x")
    q = queues()
    q.watch(serial(ring), 1)
    os.rename(path, os.path.join(ring, str(serial(path))))  # same keyring, the key's other name
    assert drain(q) == []
    assert os.listdir(ring) == ["user:stay"]


def test_mkdir_posts_linked_and_rmdir_unlinked(ring, queues):
    q = queues()
    q.watch(serial(ring), 1)
    sub = os.path.join(ring, "keyring:sub")
    assert subprocess.run(["mkdir", sub]).returncode == 0
    s = serial(sub)
    assert drain(q) == [key(LINKED, serial(ring), s)]
    assert subprocess.run(["rmdir", sub]).returncode == 0
    assert drain(q) == [key(UNLINKED, serial(ring), s)]


def test_revoke_posts_revoked_once(ring, queues):
    path = os.path.join(ring, "user:rev")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(k, 2)
    os.setxattr(path, "user.keyctl.revoke", b"")
    assert drain(q) == [key(REVOKED, k, 0, 2)]
    with pytest.raises(OSError) as info:  # the lookup of a second revoke fails: no record
        os.setxattr(path, "user.keyctl.revoke", b"")
    assert info.value.errno == errno.EKEYREVOKED
    assert drain(q) == []
    assert os.getxattr(path, "user.keyctl.state") == b"revoked"
    for operation in (lambda: open(path, "rb").read(), lambda: os.getxattr(path, "user.keyctl.describe")):
        with pytest.raises(OSError) as info:
            operation()
        assert info.value.errno == errno.EKEYREVOKED


def test_revoking_a_keyring_empties_it_silently(ring, queues):
    sub = os.path.join(ring, "keyring:rk")
    os.mkdir(sub)
    write_key(os.path.join(sub, "user:member"), b"x")
    s = serial(sub)
    q = queues()
    q.watch(s, 1)
    q.watch(serial(ring), 2)
    os.setxattr(sub, "user.keyctl.revoke", b"")
    assert drain(q) == [key(REVOKED, s)]


def test_invalidate_posts_invalidated(ring, queues):
    path = os.path.join(ring, "user:inv")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(k, 3)
    os.setxattr(path, "user.keyctl.invalidate", b"")
    got = drain(q)
    assert got[0] == key(INVAL, k, 0, 3)
    # Only a removal record (the GC destroying it) may follow, never a second INVALIDATED.
    assert all(r[0] == "removal" for r in got[1:])


def test_clear_posts_cleared_and_no_unlinked(ring, queues):
    write_key(os.path.join(ring, "user:a"), b"x")
    os.mkdir(os.path.join(ring, "keyring:b"))
    q = queues()
    q.watch(serial(ring), 1)
    os.setxattr(ring, "user.keyctl.clear", b"")
    assert drain(q) == [key(CLEARED, serial(ring))]
    assert os.listdir(ring) == []
    os.setxattr(ring, "user.keyctl.clear", b"")  # clearing an empty keyring posts again
    assert drain(q) == [key(CLEARED, serial(ring))]


@pytest.mark.parametrize("attr,value", [
    ("user.keyctl.perm", b"0x3f3f0000"),
    ("user.keyctl.perm", b"0x3f010000"),  # unchanged permissions still post
    ("user.keyctl.timeout", b"3600"),
    ("user.keyctl.timeout", b"0"),
])
def test_setattr_operations_post_setattr(ring, queues, attr, value):
    path = os.path.join(ring, "user:attr")
    write_key(path, b"x")
    q = queues()
    q.watch(serial(path), 1)
    os.setxattr(path, attr, value)
    assert drain(q) == [key(SETATTR, serial(path))]


def test_setfattr_from_the_shell_posts_setattr(ring, queues):
    path = os.path.join(ring, "user:shellattr")
    write_key(path, b"x")
    q = queues()
    q.watch(serial(path), 1)
    result = subprocess.run(["setfattr", "-n", "user.keyctl.perm", "-v", "3f3f0000", path],  # hex, as getfattr shows it
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert drain(q) == [key(SETATTR, serial(path))]
    assert os.getxattr(path, "user.keyctl.perm") == b"3f3f0000"


def test_restrict_posts_setattr_on_the_keyring(ring, queues):
    q = queues()
    q.watch(serial(ring), 1)
    os.setxattr(ring, "user.keyctl.restrict", b"")
    assert drain(q) == [key(SETATTR, serial(ring))]
    with pytest.raises(PermissionError):
        write_key(os.path.join(ring, "user:late"), b"x")
    assert drain(q) == []


def test_chown_posts_setattr(ring, queues):
    path = os.path.join(ring, "user:own")
    write_key(path, b"x")
    q = queues()
    q.watch(serial(path), 1)
    os.chown(path, os.getuid(), os.getgid())  # to the current owner: still posts
    assert drain(q) == [key(SETATTR, serial(path))]
    os.chown(path, -1, 1234)
    assert drain(q) == [key(SETATTR, serial(path))]
    assert os.stat(path).st_gid == 1234
    os.chown(path, -1, -1)  # a no-op: no record
    assert drain(q) == []


def test_xattr_link_and_unlink(ring, make_ring, queues):
    r2 = make_ring()
    path = os.path.join(ring, "user:xl")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(serial(r2), 1)
    os.setxattr(r2, "user.keyctl.link", str(k).encode())
    assert drain(q) == [key(LINKED, serial(r2), k)]
    os.setxattr(r2, "user.keyctl.link", str(k).encode())  # linking again still posts
    assert drain(q) == [key(LINKED, serial(r2), k)]
    os.setxattr(r2, "user.keyctl.unlink", str(k).encode())
    assert drain(q) == [key(UNLINKED, serial(r2), k)]


def test_request_links_a_key_under_construction(ring, queues):
    q = queues()
    q.watch(serial(ring), 1)
    os.setxattr(ring, "user.keyctl.request", b"user:pending")
    path = os.path.join(ring, "user:pending")
    pending = serial(path)
    assert drain(q) == [key(LINKED, serial(ring), pending)]
    assert os.getxattr(path, "user.keyctl.state") == b"uninstantiated"


@pytest.mark.parametrize("attr,value,error", [
    ("user.keyctl.negate", b"60", errno.ENOKEY),
    ("user.keyctl.reject", b"60 EKEYREJECTED", errno.EKEYREJECTED),
    ("user.keyctl.reject", b"60 129", errno.EKEYREJECTED),
])
def test_negative_instantiation(ring, queues, attr, value, error):
    """INSTANTIATED (aux = -error) is posted on the key itself. A watch cannot be set on a key
    under construction (the kernel's lookup waits for it: see the next test), so no queue can
    see that record; what is visible is the key turning negative, and nothing posted to the
    keyring's watchers."""
    os.setxattr(ring, "user.keyctl.request", b"user:neg")
    path = os.path.join(ring, "user:neg")
    q = queues()
    q.watch(serial(ring), 1)
    os.setxattr(path, attr, value)
    assert drain(q) == []
    assert os.getxattr(path, "user.keyctl.state") == b"negative"
    with pytest.raises(OSError) as info:
        open(path, "rb").read()
    assert info.value.errno == error
    # Once negative, a watch lookup gives the stored error (keyctl_watch_key: lookup_user_key,
    # wait_for_key_construction).
    with pytest.raises(OSError) as info:
        q.watch(serial(path), 2)
    assert info.value.errno == error


PENDING_WATCHER = r"""
import os, sys
sys.path.insert(0, "mountpoint_tests")
from helpers import rec
from wqfs.records import parse
fd = os.open(sys.argv[1] + "/watch_queue", os.O_RDWR)
os.write(fd, b"size 32")
try:
    os.write(fd, ("watch %s 4" % sys.argv[2]).encode())   # waits while the key is under construction
except OSError as error:
    print("error", error.errno, flush=True)
    sys.exit(0)
print("watching", flush=True)
print("got", *[rec(r) for r in parse(os.read(fd, 433))], flush=True)
"""


@pytest.mark.parametrize("finish,outcome", [
    ("instantiate", "watching"),
    ("negate", f"error {errno.ENOKEY}"),
    ("reject", f"error {errno.EKEYREJECTED}"),
])
def test_watching_a_key_under_construction_waits_for_it(ring, mnt, procs, finish, outcome):
    """keyctl_watch_key's lookup_user_key waits for construction (wait_for_key_construction,
    security/keys/request_key.c), then sees the result."""
    import sys
    os.setxattr(ring, "user.keyctl.request", b"user:slow")
    path = os.path.join(ring, "user:slow")
    k = serial(path)
    proc = subprocess.Popen([sys.executable, "-c", PENDING_WATCHER, mnt, str(k)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    wait_blocked_in_read(proc.pid, syscall_nr="1")  # in write(): the watch command
    if finish == "instantiate":
        write_key(path, b"done")
    elif finish == "negate":
        os.setxattr(path, "user.keyctl.negate", b"30")
    else:
        os.setxattr(path, "user.keyctl.reject", b"30 EKEYREJECTED")
    assert read_line(proc.stdout) == outcome + "\n"
    if finish == "instantiate":
        write_key(path, b"updated")
        assert read_line(proc.stdout) == f"got ('key', {UPD}, {k}, 0, 4)\n"
    assert proc.wait(WAIT) == 0


def test_ctrl_c_interrupts_a_watch_waiting_for_construction(ring, mnt, procs):
    import signal
    import sys
    os.setxattr(ring, "user.keyctl.request", b"user:never")
    k = serial(os.path.join(ring, "user:never"))
    proc = subprocess.Popen([sys.executable, "-c", PENDING_WATCHER, mnt, str(k)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    wait_blocked_in_read(proc.pid, syscall_nr="1")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) != 0  # KeyboardInterrupt out of the interrupted write()
    assert "KeyboardInterrupt" in proc.stderr.read()
    assert os.getxattr(os.path.join(ring, "user:never"), "user.keyctl.state") == b"uninstantiated"


def test_writing_a_key_under_construction_instantiates_it(ring, queues):
    os.setxattr(ring, "user.keyctl.request", b"user:later")
    path = os.path.join(ring, "user:later")
    q = queues()
    q.watch(serial(ring), 1)
    fd = os.open(path, os.O_WRONLY)
    os.write(fd, b"made")
    os.close(fd)
    assert drain(q) == []  # INSTANTIATED goes to the key, which nobody could watch yet
    assert os.getxattr(path, "user.keyctl.state") == b"positive"
    with open(path, "rb") as f:
        assert f.read() == b"made"
    q.watch(serial(path), 2)  # positive now: watchable
    write_key(path, b"again")
    assert drain(q) == [key(UPD, serial(path), 0, 2)]


def test_events_are_posted_only_on_the_changed_object(ring, queues):
    """A keyring watch sees link/unlink/clear, not what happens to its members (notify_key posts on
    the one key it is given)."""
    sub = os.path.join(ring, "keyring:nested")
    os.mkdir(sub)
    path = os.path.join(ring, "user:member")
    write_key(path, b"x")
    q = queues()
    q.watch(serial(ring), 1)
    write_key(path, b"y")
    os.setxattr(path, "user.keyctl.perm", b"0x3f3f0000")
    write_key(os.path.join(sub, "user:deeper"), b"z")
    os.setxattr(path, "user.keyctl.revoke", b"")
    assert drain(q) == []


# --------------------------------------------------------- removal records

def test_destroying_an_unlinked_key_posts_removal_asynchronously(ring, queues):
    path = os.path.join(ring, "user:doomed")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(k, 2)
    os.unlink(path)
    got = drain(q)
    assert got[0] == key(UNLINKED, serial(ring), k, 1)
    got += wait_records(q, 2 - len(got))
    assert got == [key(UNLINKED, serial(ring), k, 1), ("removal", k, 2)]


def test_removal_waits_until_the_last_link_goes(ring, make_ring, queues):
    r2 = make_ring()
    path = os.path.join(ring, "user:twice")
    write_key(path, b"x")
    k = serial(path)
    os.link(path, os.path.join(r2, "user:twice"))
    q = queues()
    q.watch(k, 5)
    os.unlink(path)
    # Still linked from r2: the key lives and no removal comes. Prove it with a later record.
    write_key(os.path.join(r2, "user:twice"), b"y")
    assert drain(q) == [key(UPD, k, 0, 5)]
    os.unlink(os.path.join(r2, "user:twice"))
    assert wait_records(q, 1) == [("removal", k, 5)]


def test_invalidated_key_is_collected_without_unlinked(ring, queues):
    path = os.path.join(ring, "user:invgc")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(k, 2)
    os.setxattr(path, "user.keyctl.invalidate", b"")
    got = drain(q)
    got += wait_records(q, 2 - len(got))
    assert got == [key(INVAL, k, 0, 2), ("removal", k, 2)]
    assert os.listdir(ring) == []
    assert drain(q) == []


def test_revoked_key_is_collected_after_the_gc_delay(ring, queues):
    path = os.path.join(ring, "user:revgc")
    write_key(path, b"x")
    k = serial(path)
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(k, 2)
    os.setxattr(path, "user.keyctl.revoke", b"")
    assert drain(q) == [key(REVOKED, k, 0, 2)]
    assert wait_records(q, 1) == [("removal", k, 2)]  # no UNLINKED on the keyring for a GC unlink
    assert os.listdir(ring) == []


def test_destroying_a_keyring_posts_removal_and_nothing_for_its_contents(ring, queues):
    sub = os.path.join(ring, "keyring:dies")
    os.mkdir(sub)
    write_key(os.path.join(sub, "user:inside"), b"x")
    s, inside = serial(sub), serial(os.path.join(sub, "user:inside"))
    q = queues()
    q.watch(s, 1)
    q.watch(inside, 2)
    os.rmdir(sub)
    got = wait_records(q, 2)
    assert sorted(got) == sorted([("removal", s, 1), ("removal", inside, 2)])
    assert got[0] == ("removal", s, 1)  # the keyring goes first; then its orphaned member


# ------------------------------------------------------------- events/ files

def _events(mnt, name):
    return os.open(os.path.join(mnt, "events", name), os.O_RDONLY | os.O_NONBLOCK)


def _read_text(fd):
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    out = b""
    while poller.poll(0):
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode()


def test_events_file_prints_keyctl_watch_lines(ring, mnt):
    r = serial(ring)
    fd = _events(mnt, str(r))
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 4096)
        write_key(os.path.join(ring, "user:ev"), b"x")
        k = serial(os.path.join(ring, "user:ev"))
        os.unlink(os.path.join(ring, "user:ev"))
        os.setxattr(ring, "user.keyctl.clear", b"")
        os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
        assert _read_text(fd) == f"{r} link {k}\n{r} unlk {k}\n{r} clr\n{r} attr\n"
    finally:
        os.close(fd)


def test_an_events_name_the_kernel_forgot_is_forgotten_by_the_daemon(ring, mnt):
    """FUSE_FORGET drops the name's inode (a long-lived mount keeps no name ever looked up);
    a file open at the time keeps working, and the name can be looked up again."""
    r = serial(ring)
    path = os.path.join(mnt, "events", str(r))
    before = os.stat(path).st_ino
    fd = _events(mnt, str(r))
    try:
        for _ in range(3):  # dentries and inodes out of the kernel's caches: FORGETs come
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2")
        write_key(os.path.join(ring, "user:forgot"), b"x")
        assert _read_text(fd) == f"{r} link {serial(os.path.join(ring, 'user:forgot'))}\n"
    finally:
        os.close(fd)
    deadline = time.monotonic() + WAIT
    while os.stat(path).st_ino == before:  # once the open file is gone too, the inode goes
        assert time.monotonic() < deadline, "the daemon never forgot the events name"
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
        time.sleep(0.05)


def test_events_file_for_several_keys(ring, mnt):
    path = os.path.join(ring, "user:multi")
    write_key(path, b"x")
    r, k = serial(ring), serial(path)
    fd = _events(mnt, f"{r},{k}")
    try:
        write_key(path, b"y")
        os.setxattr(path, "user.keyctl.invalidate", b"")
        text = _read_text(fd)
        assert text.startswith(f"{k} upd\n{k} inv\n")
        # The GC then unlinks and destroys the invalidated key: a gc line, never an unlk line.
        deadline_fd = select.poll()
        deadline_fd.register(fd, select.POLLIN)
        if "gc" not in text:
            assert deadline_fd.poll(int(WAIT * 1000))
            text += _read_text(fd)
        assert text == f"{k} upd\n{k} inv\n{k} gc\n"
    finally:
        os.close(fd)


def test_events_at_s_watches_the_session_keyring(mnt):
    s = serial(os.path.join(mnt, "@s"))
    fd = _events(mnt, "@s")
    path = os.path.join(mnt, "@s", f"user:evs-{os.getpid()}")
    try:
        write_key(path, b"x")
        k = serial(path)
        os.unlink(path)
        assert _read_text(fd) == f"{s} link {k}\n{s} unlk {k}\n"
    finally:
        os.close(fd)
        if os.path.exists(path):
            os.unlink(path)


def test_events_file_with_cat(ring, mnt, procs):
    """A plain `cat events/SERIAL` prints the lines as they come."""
    r = serial(ring)
    proc = subprocess.Popen(["cat", os.path.join(mnt, "events", str(r))], stdout=subprocess.PIPE)
    procs.append(proc)
    wait_blocked_in_read(proc.pid)
    os.mkdir(os.path.join(ring, "keyring:seen"))
    assert read_line(proc.stdout) == f"{r} link {serial(os.path.join(ring, 'keyring:seen'))}\n"
    proc.terminate()
    proc.wait(WAIT)


def test_events_file_reports_loss_after_256_records(ring, mnt):
    path = os.path.join(ring, "user:flood")
    write_key(path, b"x")
    k = serial(path)
    fd = _events(mnt, str(k))
    try:
        for _ in range(257):
            os.setxattr(path, "user.keyctl.perm", b"0x3f3f0000")
        assert _read_text(fd) == f"{k} attr\n" * 256 + "-- LOSS --\n"
    finally:
        os.close(fd)


def test_events_file_is_read_only(ring, mnt):
    with pytest.raises(PermissionError):
        os.open(os.path.join(mnt, "events", str(serial(ring))), os.O_WRONLY)


@pytest.mark.parametrize("name,error", [
    ("2", errno.ENOKEY),              # no such key
    ("0", errno.EINVAL),              # not a key ID
    ("-6", errno.EINVAL),             # the group keyring is not supported
])
def test_events_file_for_a_bad_key_fails_to_open(mnt, name, error):
    with pytest.raises(OSError) as info:
        os.open(os.path.join(mnt, "events", name), os.O_RDONLY | os.O_NONBLOCK)
    assert info.value.errno == error


@pytest.mark.parametrize("name", ["garbage", "1,,2", "@nope", "x" * 200])
def test_events_file_with_a_malformed_name_does_not_exist(mnt, name):
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(mnt, "events", name))
