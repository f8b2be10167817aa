"""MOUNT/watch_queue: size, loss, read(), filters, tags, watches, removal, blocking and signals.

The queue of kernel/watch_queue.c and fs/pipe.c behind a file, and security/keys/keyctl.c
keyctl_watch_key. Records are posted with user.keyctl.perm (SETATTR on the key), one setxattr
per record, or with file writes (add_key, update) where a test needs other subtypes.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import struct
import subprocess
import sys
import threading

import pytest

from helpers import (CLEARED, LINKED, LOSS, ROOT, SETATTR, UNLINKED, UPD, WAIT, drain, key, read_line, rec,
                     serial, sh, wait_blocked_in_read, wait_records, write_key)


def post(path: str, n: int = 1) -> None:
    """n SETATTR records on the key at path."""
    for _ in range(n):
        os.setxattr(path, "user.keyctl.perm", b"0x3f3f0000")


@pytest.fixture
def target(ring):
    """A user key in the test keyring: (path, serial)."""
    path = os.path.join(ring, "user:target")
    write_key(path, b"payload")
    return path, serial(path)


def command(q, text) -> int:
    return os.write(q.fileno(), text.encode() if isinstance(text, str) else text)


def command_errno(q, text) -> int:
    with pytest.raises(OSError) as info:
        command(q, text)
    return info.value.errno


# ------------------------------------------------------------------ size

@pytest.mark.parametrize("notes,capacity", [(1, 32), (32, 32), (33, 64), (100, 128), (256, 256), (512, 512)])
def test_size_gives_whole_pages_of_32_notes(queues, target, notes, capacity):
    path, k = target
    q = queues(size=notes)
    q.watch(k, 1)
    post(path, capacity + 1)
    got = drain(q)
    assert got == [key(SETATTR, k)] * capacity + [("loss",)]


@pytest.mark.parametrize("value", ["0", "513", "-1", "4294967297", "0x201"])
def test_size_out_of_range_is_einval(queues, value):
    q = queues(size=None)
    assert command_errno(q, f"size {value}") == errno.EINVAL
    assert command(q, "size 0x20") == len("size 0x20")  # a failed size does not count as set


def test_size_can_be_set_only_once(queues, target):
    path, k = target
    q = queues(size=None)
    assert command(q, "size 40\n") == len("size 40\n")
    assert command_errno(q, "size 40") == errno.EBUSY
    assert command_errno(q, "size 512") == errno.EBUSY
    q.watch(k, 1)
    post(path, 65)
    assert len(drain(q)) == 64 + 1  # still the first size: 64 notes and a loss record


def test_no_size_means_nothing_is_ever_readable(queues, target):
    path, k = target
    q = queues(size=None)
    q.watch(k, 1)
    post(path, 3)
    write_key(path, b"changed")
    poller = select.poll()
    poller.register(q.fileno(), select.POLLIN)
    assert poller.poll(0) == []
    with pytest.raises(BlockingIOError):
        os.read(q.fileno(), 433)
    q.set_size(32)  # the records were dropped, not held back; and no loss record either
    assert drain(q) == []
    post(path)
    assert drain(q) == [key(SETATTR, k)]


def test_size_filter_and_watch_in_any_order(queues, target):
    path, k = target
    q = queues(size=None)
    q.watch(k, 4)
    command(q, "filter type=key,subtypes=0x80")
    q.set_size(1)
    write_key(path, b"not passed by the filter")
    post(path)
    assert drain(q) == [key(SETATTR, k, 0, 4)]


# ----------------------------------------------------------------- read()

def test_loss_record_placement_as_in_ltp_wqueue09(queues, target):
    """Size 1 gives 32 notes; 64 updates; 433-byte reads return 432, 80, then 8 (the loss)."""
    path, k = target
    q = queues(size=1)
    q.watch(k, 1)
    for i in range(64):
        write_key(path, b"update %d" % i)
    fd = q.fileno()
    first = os.read(fd, 433)
    second = os.read(fd, 433)
    third = os.read(fd, 433)
    assert (len(first), len(second), len(third)) == (432, 80, 8)
    one = struct.pack("<IIII", 1 | (UPD << 24), 0x110, k, 0)
    assert first == one * 27 and second == one * 5
    assert third == LOSS
    with pytest.raises(BlockingIOError):
        os.read(fd, 433)


def test_pending_loss_record_is_not_signalled_by_poll(queues, target):
    path, k = target
    q = queues(size=1)
    q.watch(k, 1)
    post(path, 33)
    assert len(os.read(q.fileno(), 65536)) == 32 * 16
    poller = select.poll()
    poller.register(q.fileno(), select.POLLIN)
    assert poller.poll(0) == []  # nothing queued: no POLLIN ...
    with pytest.raises(OSError) as info:  # ... though a read returns the loss record
        os.read(q.fileno(), 7)
    assert info.value.errno == errno.ENOBUFS
    assert os.read(q.fileno(), 8) == LOSS


def test_loss_record_follows_the_flagged_record_in_the_same_read(queues, target, ring):
    path, k = target
    q = queues(size=1)
    q.watch(k, 1)
    q.watch(serial(ring), 2)
    post(path, 33)                              # 32 queued, the 33rd lost: the 32nd is flagged
    assert len(os.read(q.fileno(), 32)) == 32    # two records read: two notes free
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    got = drain(q)
    assert got == [key(SETATTR, k)] * 30 + [("loss",)] + [key(SETATTR, serial(ring), 0, 2)] * 2


def test_enobufs_when_the_first_record_does_not_fit(queues, target):
    path, k = target
    q = queues()
    q.watch(k, 1)
    post(path)
    for size in (1, 8, 15):
        with pytest.raises(OSError) as info:
            os.read(q.fileno(), size)
        assert info.value.errno == errno.ENOBUFS
    assert os.read(q.fileno(), 16) == struct.pack("<IIII", 1 | (SETATTR << 24), 0x110, k, 0)


def test_reads_return_whole_records_only(queues, target):
    path, k = target
    q = queues()
    q.watch(k, 1)
    post(path, 3)
    assert len(os.read(q.fileno(), 20)) == 16
    assert len(os.read(q.fileno(), 47)) == 32
    with pytest.raises(BlockingIOError):
        os.read(q.fileno(), 47)


def test_several_records_per_read_in_order(queues, target, ring):
    path, k = target
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(k, 2)
    write_key(path, b"u")
    write_key(os.path.join(ring, "user:second"), b"x")
    post(path)
    data = os.read(q.fileno(), 433)
    assert len(data) == 48
    from wqfs.records import parse
    assert [rec(r) for r in parse(data)] == [
        key(UPD, k, 0, 2), key(LINKED, serial(ring), serial(os.path.join(ring, "user:second")), 1),
        key(SETATTR, k, 0, 2)]


def test_zero_length_read_returns_nothing(queues, target):
    path, k = target
    q = queues()
    q.watch(k, 1)
    post(path)
    assert os.read(q.fileno(), 0) == b""
    assert drain(q) == [key(SETATTR, k)]


def test_nonblocking_read_of_an_empty_queue_is_eagain(queues):
    q = queues()
    with pytest.raises(OSError) as info:
        os.read(q.fileno(), 433)
    assert info.value.errno == errno.EAGAIN


def test_poll_readiness(queues, target):
    path, k = target
    q = queues()
    q.watch(k, 1)
    poller = select.poll()
    poller.register(q.fileno(), select.POLLIN)
    assert poller.poll(0) == []
    post(path)
    assert poller.poll(0) == [(q.fileno(), select.POLLIN)]
    assert select.select([q.fileno()], [], [], 0)[0] == [q.fileno()]
    drain(q)
    assert poller.poll(0) == []
    assert select.select([q.fileno()], [], [], 0)[0] == []


def test_poll_wakes_up_when_a_record_is_posted(queues, target):
    path, k = target
    q = queues()
    q.watch(k, 1)
    result: list = []
    started = threading.Event()

    def waiter():
        poller = select.poll()
        poller.register(q.fileno(), select.POLLIN)
        started.set()
        result.extend(poller.poll(int(WAIT * 1000)))

    thread = threading.Thread(target=waiter)
    thread.start()
    started.wait()
    post(path)
    thread.join(WAIT + 5)
    assert result == [(q.fileno(), select.POLLIN)]
    assert drain(q) == [key(SETATTR, k)]


def test_blocking_read_returns_when_a_record_is_posted(mnt, target, procs):
    path, k = target
    proc = subprocess.Popen([sys.executable, "-c", READER, mnt, str(k)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    assert read_line(proc.stdout) == "ready\n"
    wait_blocked_in_read(proc.pid)
    post(path)
    assert read_line(proc.stdout) == f"early ('key', {SETATTR}, {k}, 0, 7)\n"
    proc.kill()


# --------------------------------------------------------------- filters

def _raw(entries, nr=None, reserved=0) -> str:
    data = struct.pack("<II", len(entries) if nr is None else nr, reserved)
    for ftype, info_filter, info_mask, subtypes in entries:
        data += struct.pack("<III8I", ftype, info_filter, info_mask, subtypes, *([0] * 7))
    return f"filter raw {data.hex()}"


def _ring_events(ring):
    """Post LINKED, UNLINKED, CLEARED and SETATTR on the keyring; return the new key's serial."""
    write_key(os.path.join(ring, "user:f"), b"x")
    k = serial(os.path.join(ring, "user:f"))
    os.unlink(os.path.join(ring, "user:f"))
    os.setxattr(ring, "user.keyctl.clear", b"")
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    return k


@pytest.mark.parametrize("text", [
    "filter type=key,subtypes=0x4",
    "filter type=key,subtypes=0x4,info_filter=0,info_mask=0",
    "filter type=1,subtype_filter=4",
    "filter type=key,subtypes=0x4 type=7,subtypes=0xff",          # unknown types are ignored
    "filter type=meta type=key,subtypes=0x4",                      # a META entry changes nothing
    _raw([(1, 0, 0, 1 << LINKED)]),
])
def test_filter_selects_subtypes(queues, ring, text):
    q = queues()
    assert command(q, text) == len(text)
    q.watch(serial(ring), 1)
    k = _ring_events(ring)
    assert drain(q) == [key(LINKED, serial(ring), k)]


def test_filter_entries_are_ored(queues, ring):
    q = queues()
    command(q, "filter type=key,subtypes=0x4 type=key,subtypes=0x10")
    q.watch(serial(ring), 1)
    k = _ring_events(ring)
    assert drain(q) == [key(LINKED, serial(ring), k), key(CLEARED, serial(ring))]


def test_filter_uses_only_subtype_word_zero(queues, ring):
    q = queues()
    command(q, "filter type=key,subtype_filter=0:0xffffffff:0xffffffff")
    q.watch(serial(ring), 1)
    _ring_events(ring)
    assert drain(q) == []


def test_filter_selects_by_tag(queues, target, ring):
    path, k = target
    q = queues()
    q.watch(serial(ring), 1)
    q.watch(k, 2)
    command(q, "filter type=key,info_filter=0x200,info_mask=0xff00")
    post(path)
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    post(path)
    assert drain(q) == [key(SETATTR, k, 0, 2)] * 2


def test_filter_none_removes_the_filter(queues, ring):
    q = queues()
    command(q, "filter type=key,subtypes=0x4")
    command(q, "filter none")
    q.watch(serial(ring), 1)
    k = _ring_events(ring)
    assert drain(q) == [key(LINKED, serial(ring), k), key(UNLINKED, serial(ring), k), key(CLEARED, serial(ring)),
                        key(SETATTR, serial(ring))]


@pytest.mark.parametrize("text", ["filter type=2", "filter type=meta"])
def test_filter_without_key_entries_rejects_key_records_but_not_removal(queues, target, text):
    path, k = target
    q = queues()
    command(q, text)
    q.watch(k, 9)
    post(path, 3)
    assert drain(q) == []
    q.unwatch(k)
    assert drain(q) == [("removal", k, 9)]


def test_meta_records_bypass_the_filter(queues, ring):
    """Removal (from the GC) and loss records pass a filter that passes no META type."""
    sub = os.path.join(ring, "keyring:meta")
    os.mkdir(sub)
    s = serial(sub)
    q = queues(size=1)
    command(q, "filter type=key,subtypes=0x80")  # SETATTR only
    q.watch(s, 3)
    post(sub, 33)
    assert drain(q) == [key(SETATTR, s, 0, 3)] * 32 + [("loss",)]
    os.rmdir(sub)
    assert wait_records(q, 1) == [("removal", s, 3)]


@pytest.mark.parametrize("text", [
    _raw([], nr=0),                                           # nr_filters == 0
    _raw([(1, 0, 0, 0xFFFFFFFF)] * 17),                       # more than 16
    _raw([(1, 0, 0, 0xFFFFFFFF)], reserved=1),                # __reserved != 0
    "filter reserved=1 type=key",
    "filter type=key,info_filter=0x100,info_mask=0",          # info_filter outside info_mask
    "filter type=key,info_filter=0x100,info_mask=0x200",
    "filter type=key,info_mask=0x1",                          # the length cannot be filtered
    "filter type=key,info_mask=0x7f,info_filter=0x10",
    "filter type=9,info_mask=0x40",                           # checked before unknown types are skipped
    "filter type=key type=key " * 8 + "type=key",             # 17 entries
])
def test_invalid_filters_are_einval_and_keep_the_old_filter(queues, ring, text):
    q = queues()
    command(q, "filter type=key,subtypes=0x4")
    assert command_errno(q, text) == errno.EINVAL
    q.watch(serial(ring), 1)
    k = _ring_events(ring)
    assert drain(q) == [key(LINKED, serial(ring), k)]


def test_sixteen_filter_entries_are_accepted(queues):
    q = queues()
    text = _raw([(1, 0, 0, 0xFFFFFFFF)] * 16)
    assert command(q, text) == len(text)


# ------------------------------------------------------------ watches, tags

@pytest.mark.parametrize("tag", [0, 1, 0x7F, 0x80, 255])
def test_tag_is_in_the_info_id_bits(queues, target, tag):
    path, k = target
    q = queues()
    q.watch(k, tag)
    post(path)
    data = os.read(q.fileno(), 433)
    assert struct.unpack("<IIII", data) == (1 | (SETATTR << 24), (tag << 8) | 16, k, 0)


@pytest.mark.parametrize("tag", ["256", "-2", "1000", "0x100"])
def test_tag_out_of_range_is_einval(queues, target, tag):
    q = queues()
    assert command_errno(q, f"watch {target[1]} {tag}") == errno.EINVAL


def test_tag_range_is_checked_before_the_key(queues):
    q = queues()
    assert command_errno(q, "watch 2 256") == errno.EINVAL
    assert command_errno(q, "watch 2 1") == errno.ENOKEY


def test_one_watch_per_queue_and_key(queues, target):
    path, k = target
    q = queues()
    q.watch(k, 1)
    assert command_errno(q, f"watch {k} 1") == errno.EBUSY
    assert command_errno(q, f"watch {k} 2") == errno.EBUSY
    q.unwatch(k)                       # retagging: remove, then add again
    q.watch(k, 2)
    post(path)
    assert drain(q) == [("removal", k, 1), key(SETATTR, k, 0, 2)]


def test_two_queues_on_one_key_each_get_a_copy_with_their_tag(queues, target):
    path, k = target
    q1, q2 = queues(), queues()
    q1.watch(k, 0x11)
    q2.watch(k, 0x22)
    post(path)
    assert drain(q1) == [key(SETATTR, k, 0, 0x11)]
    assert drain(q2) == [key(SETATTR, k, 0, 0x22)]


def test_unwatch_posts_one_removal_record_synchronously(queues, target):
    path, k = target
    q = queues()
    q.watch(k, 2)
    q.unwatch(k)
    data = os.read(q.fileno(), 433)
    assert data == struct.pack("<IIQ", 0, (2 << 8) | 16, k)
    post(path)                                  # no longer watched
    assert drain(q) == []
    assert command_errno(q, f"unwatch {k}") == errno.EBADSLT


def test_unwatch_affects_only_this_queue(queues, target):
    path, k = target
    q1, q2 = queues(), queues()
    q1.watch(k, 1)
    q2.watch(k, 2)
    q1.unwatch(k)
    post(path)
    assert drain(q1) == [("removal", k, 1)]
    assert drain(q2) == [key(SETATTR, k, 0, 2)]


def test_unwatch_of_a_key_never_watched_is_ebadslt(queues, target):
    q = queues()
    assert command_errno(q, f"unwatch {target[1]}") == errno.EBADSLT


def test_closing_a_queue_posts_nothing_and_drops_its_watches(queues, target, mnt):
    from wqfs.client import Queue
    path, k = target
    other = queues()
    other.watch(k, 2)
    q = Queue(mnt, size=32, nonblock=True)
    q.watch(k, 1)
    q.close()
    assert drain(other) == []
    post(path)
    assert drain(other) == [key(SETATTR, k, 0, 2)]


def test_a_dup_shares_the_queue_until_the_last_close(mnt, target):
    from wqfs.client import Queue
    path, k = target
    q = Queue(mnt, size=32, nonblock=True)
    q.watch(k, 1)
    copy = os.dup(q.fileno())
    try:
        q.close()                       # not the last file reference: queue and watch live on
        post(path)
        assert os.read(copy, 433) == struct.pack("<IIII", 1 | (SETATTR << 24), 0x110, k, 0)
        os.write(copy, f"unwatch {k}".encode())
        assert os.read(copy, 433) == struct.pack("<IIQ", 0, 0x110, k)
    finally:
        os.close(copy)


def test_watch_by_special_name(queues, mnt):
    s = serial(os.path.join(mnt, "@s"))
    q = queues()
    q.watch("@s", 6)
    assert command_errno(q, f"watch {s} 7") == errno.EBUSY  # the same keyring
    assert command_errno(q, "watch -3 7") == errno.EBUSY
    name = os.path.join(mnt, "@s", f"user:q-{os.getpid()}")
    try:
        write_key(name, b"x")
        new = serial(name)
        os.unlink(name)
    finally:
        if os.path.exists(name):
            os.unlink(name)
    assert drain(q) == [key(LINKED, s, new, 6), key(UNLINKED, s, new, 6)]


def test_queue_full_loses_removal_records_too(queues, target):
    path, k = target
    q = queues(size=1)
    q.watch(k, 1)
    post(path, 32)
    q.unwatch(k)                       # the queue is full: the removal record is lost
    got = drain(q)
    assert got == [key(SETATTR, k)] * 32 + [("loss",)]


# ----------------------------------------------- blocking readers and signals

READER = r"""
import os, sys
from wqfs.records import parse
sys.path.insert(0, "mountpoint_tests")
from helpers import rec
fd = os.open(sys.argv[1] + "/watch_queue", os.O_RDWR)
os.write(fd, b"size 32")
os.write(fd, ("watch %s 7" % sys.argv[2]).encode())
print("ready", flush=True)
try:
    data = os.read(fd, 4096)
    print("early", *[rec(r) for r in parse(data)], flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
data = os.read(fd, 4096)
print("got", *[rec(r) for r in parse(data)], flush=True)
"""


def test_ctrl_c_interrupts_a_blocked_python_reader_and_loses_nothing(mnt, target, procs):
    path, k = target
    proc = subprocess.Popen([sys.executable, "-c", READER, mnt, str(k)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    assert read_line(proc.stdout) == "ready\n"
    wait_blocked_in_read(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert read_line(proc.stdout, timeout=5) == "interrupted\n"
    wait_blocked_in_read(proc.pid)     # reading again, on the same queue
    post(path)
    assert read_line(proc.stdout) == f"got ('key', {SETATTR}, {k}, 0, 7)\n"
    assert proc.wait(WAIT) == 0


def test_ctrl_c_ends_a_blocked_cat_and_the_mount_keeps_working(mnt, ring, queues, procs):
    r = serial(ring)
    proc = subprocess.Popen(["cat", os.path.join(mnt, "events", str(r))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    wait_blocked_in_read(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == -signal.SIGINT
    q = queues()
    q.watch(r, 1)
    write_key(os.path.join(ring, "user:after"), b"x")
    assert drain(q) == [key(LINKED, r, serial(os.path.join(ring, "user:after")))]


def test_sigkill_of_a_blocked_reader(mnt, ring, queues, procs):
    r = serial(ring)
    proc = subprocess.Popen(["cat", os.path.join(mnt, "watch_queue")], stdout=subprocess.PIPE)
    procs.append(proc)
    wait_blocked_in_read(proc.pid)
    proc.kill()
    assert proc.wait(timeout=5) == -signal.SIGKILL
    q = queues()
    q.watch(r, 1)
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f0000")
    assert drain(q) == [key(SETATTR, r)]


def test_blocked_readers_do_not_stop_other_requests(mnt, ring, procs):
    r = serial(ring)
    cats = []
    for _ in range(2):
        proc = subprocess.Popen(["cat", os.path.join(mnt, "events", str(r))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        cats.append(proc)
    for proc in cats:
        wait_blocked_in_read(proc.pid)
    listing = subprocess.run(["ls", os.path.join(mnt, "keys")], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0 and str(r) in listing.stdout.split()
    result = sh(f"echo v > '{ring}/user:while-blocked'")
    assert result.returncode == 0, result.stderr
    k = serial(os.path.join(ring, "user:while-blocked"))
    with open(os.path.join(ring, "user:while-blocked"), "rb") as f:
        assert f.read() == b"v\n"
    for proc in cats:
        assert read_line(proc.stdout) == f"{r} link {k}\n"
    for proc in cats:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == -signal.SIGINT
