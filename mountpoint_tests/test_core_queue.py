"""Unit tests of WatchQueue, the notification pipe of kernel/watch_queue.c and fs/pipe.c:
watch_queue_set_size (size and capacity), post_one_notification (posting and loss), pipe_read
(whole records, ENOBUFS, the loss record, EOF), byte for byte."""
from __future__ import annotations

import errno
import struct

import pytest

from corelib import ALICE, LOSS, drain, errno_of, new_queue

from wqfs.kernel import Kernel, WatchQueue, capacity_for


def rec(n: int, tag: int = 0) -> bytes:
    """A distinct 16-byte key record (subtype UPDATED) numbered n."""
    return struct.pack("<IIII", 1 | (1 << 24), (tag << 8) | 16, n, 0)


def short(n: int) -> bytes:
    """A distinct 8-byte record (a removal with id 0) whose tag is n."""
    return struct.pack("<II", 0, (n << 8) | 8)


# ------------------------------------------------------------------ size: watch_queue_set_size

@pytest.mark.parametrize("n, cap", [(1, 32), (31, 32), (32, 32), (33, 64), (64, 64), (100, 128),
                                    (256, 256), (257, 288), (511, 512), (512, 512)])
def test_capacity_is_whole_pages_of_32(n, cap):
    assert capacity_for(n) == cap
    q = new_queue(n)
    assert q.capacity == cap
    for i in range(cap + 3):
        q.post(rec(i))
    assert q.statistics().queued == cap
    assert q.statistics().lost == 3


@pytest.mark.parametrize("n", [0, -1, 513, 1024, 1 << 31])
def test_size_out_of_range_is_einval(n):
    q = WatchQueue()
    assert errno_of(q.set_size, n) == errno.EINVAL
    q.set_size(1)  # a failed attempt does not count as having set the size
    assert q.capacity == 32


def test_size_set_twice_is_ebusy_even_if_invalid():
    q = new_queue(1)
    assert errno_of(q.set_size, 64) == errno.EBUSY
    assert errno_of(q.set_size, 0) == errno.EBUSY   # EBUSY is checked before the range
    assert errno_of(q.set_size, 9999) == errno.EBUSY
    assert q.capacity == 32


def test_no_size_drops_everything_silently():
    q = WatchQueue()
    for i in range(5):
        assert q.post(rec(i)) is False
    assert errno_of(q.read_nowait, 4096) == errno.EAGAIN
    assert q.nbytes == 0 and not q.readable
    # setting the size later does not resurrect a loss record: the flag hit a dead slot
    q.set_size(1)
    assert q.post(rec(99)) is True
    assert drain(q) == rec(99)


# ------------------------------------------------------------------ read: fs/pipe.c pipe_read

def test_read_zero_returns_empty_immediately():
    q = new_queue()
    q.post(rec(1))
    assert q.read_nowait(0) == b""
    assert drain(q) == rec(1)


def test_empty_with_writer_is_eagain():
    q = new_queue()
    assert errno_of(q.read_nowait, 4096) == errno.EAGAIN
    assert q.would_block


def test_several_whole_records_per_read_without_padding():
    q = new_queue()
    q.post(rec(1))
    q.post(short(2))
    q.post(rec(3))
    q.post(short(4))
    assert q.read_nowait(4096) == rec(1) + short(2) + rec(3) + short(4)


def test_record_that_does_not_fit_first_is_enobufs_and_stays():
    q = new_queue()
    q.post(rec(1))
    assert errno_of(q.read_nowait, 15) == errno.ENOBUFS
    assert errno_of(q.read_nowait, 1) == errno.ENOBUFS
    assert q.read_nowait(16) == rec(1)


def test_read_stops_before_a_record_that_does_not_fit():
    q = new_queue()
    for i in range(3):
        q.post(rec(i))
    assert q.read_nowait(40) == rec(0) + rec(1)   # 8 bytes left are not enough for a third
    assert q.read_nowait(40) == rec(2)


def test_short_record_fits_where_long_does_not():
    q = new_queue()
    q.post(rec(1))
    q.post(short(2))
    q.post(rec(3))
    assert q.read_nowait(24) == rec(1) + short(2)
    assert q.read_nowait(24) == rec(3)


def test_fionread_counts_queued_bytes():
    q = new_queue()
    assert q.nbytes == 0
    q.post(rec(1))
    q.post(short(2))
    assert q.nbytes == 24
    q.read_nowait(16)
    assert q.nbytes == 8


# ------------------------------------------------------------------ loss: post_one_notification, pipe_read

def fill(q: WatchQueue, start: int = 0) -> None:
    for i in range(start, start + q.capacity):
        assert q.post(rec(i))


def test_loss_flag_on_last_record_comes_with_next_read():
    q = new_queue(1)
    fill(q)
    assert q.post(rec(100)) is False
    data = q.read_nowait(4096)
    assert data == b"".join(rec(i) for i in range(32))   # no loss yet: it was the last record
    assert q.statistics().loss_pending
    # a pending loss alone is not signalled to poll, and is not counted by FIONREAD
    assert not q.readable and q.nbytes == 0 and not q.would_block
    assert q.read_nowait(4096) == LOSS
    assert errno_of(q.read_nowait, 4096) == errno.EAGAIN


def test_many_losses_give_one_record():
    q = new_queue(1)
    fill(q)
    for i in range(50):
        assert q.post(rec(1000 + i)) is False
    assert drain(q) == b"".join(rec(i) for i in range(32)) + LOSS
    assert q.statistics().lost == 50


def test_loss_comes_right_after_the_flagged_record_in_the_same_read():
    q = new_queue(1)
    fill(q)
    q.post(rec(100))                   # lost: flag on rec(31)
    assert q.read_nowait(16) == rec(0)
    assert q.post(rec(32))             # room again
    data = q.read_nowait(4096)
    assert data == b"".join(rec(i) for i in range(1, 32)) + LOSS + rec(32)


def test_loss_waits_when_fewer_than_8_bytes_remain():
    q = new_queue(1)
    fill(q)
    q.post(rec(100))
    q.read_nowait(16)
    q.post(rec(32))
    # 31 records = 496 bytes; 4 bytes left cannot hold the loss record
    assert q.read_nowait(500) == b"".join(rec(i) for i in range(1, 32))
    assert q.read_nowait(500) == LOSS + rec(32)


def test_loss_fits_but_next_record_does_not():
    q = new_queue(1)
    fill(q)
    q.post(rec(100))
    q.read_nowait(16)
    q.post(rec(32))
    assert q.read_nowait(31 * 16 + 8 + 15) == b"".join(rec(i) for i in range(1, 32)) + LOSS
    assert q.read_nowait(16) == rec(32)


def test_pending_loss_with_tiny_buffer_is_enobufs():
    q = new_queue(1)
    fill(q)
    q.post(rec(100))
    drain_records = q.read_nowait(4096)
    assert len(drain_records) == 512
    assert errno_of(q.read_nowait, 7) == errno.ENOBUFS
    assert q.read_nowait(8) == LOSS


def test_pending_loss_comes_first_in_next_read():
    q = new_queue(1)
    fill(q)
    q.post(rec(100))
    q.read_nowait(4096)
    q.post(rec(200))
    q.post(rec(201))
    assert q.read_nowait(4096) == LOSS + rec(200) + rec(201)


def test_ltp_wqueue09_worked_example():
    """size 1 -> 32 notes; 64 updates -> 32 records then 32 losses; reads of 433 bytes."""
    q = new_queue(1)
    for i in range(64):
        q.post(rec(i, tag=1))
    assert q.read_nowait(433) == b"".join(rec(i, 1) for i in range(27))   # 432 bytes
    second = q.read_nowait(433)
    assert second == b"".join(rec(i, 1) for i in range(27, 32))
    assert len(second) == 80
    assert q.read_nowait(433) == LOSS
    assert errno_of(q.read_nowait, 433) == errno.EAGAIN


def test_ltp_wqueue09_through_the_kernel():
    kernel = Kernel(seed=3)
    q = new_queue(1)
    key = kernel.add_key(ALICE, "user", "ltptestkey", b"a", -3)
    kernel.watch_key(ALICE, key, q, 1)
    for i in range(64):
        kernel.update(ALICE, key, b"b")
    upd = struct.pack("<IIII", 1 | (1 << 24), 0x110, key, 0)
    reads = []
    while True:
        data = q.read_nowait(433)
        reads.append(data)
        if data == LOSS:
            break
    assert [len(r) for r in reads] == [432, 80, 8]
    assert reads[0] == upd * 27 and reads[1] == upd * 5


def test_removal_records_can_be_lost():
    q = new_queue(1)
    fill(q)
    assert q.post(struct.pack("<IIQ", 0, 0x110, 5), filterable=False) is False
    assert drain(q).endswith(rec(31) + LOSS)


# ------------------------------------------------------------------ EOF: pipe_read, watch_queue_clear

def test_eof_when_no_writers():
    q = new_queue()
    q.post(rec(1))
    q.close_writer()
    assert q.hangup
    assert q.read_nowait(4096) == rec(1)
    assert q.read_nowait(4096) == b""
    assert q.read_nowait(4096) == b""


def test_records_still_posted_after_write_end_closes():
    q = new_queue()
    q.close_writer()
    assert q.read_nowait(4096) == b""
    assert q.post(rec(7))
    assert q.read_nowait(4096) == rec(7)
    assert q.read_nowait(4096) == b""


def test_pending_loss_delivered_before_eof():
    q = new_queue(1)
    fill(q)
    q.post(rec(100))
    q.close_writer()
    assert len(q.read_nowait(4096)) == 512
    assert q.read_nowait(4096) == LOSS
    assert q.read_nowait(4096) == b""


def test_defunct_queue_drops():
    q = new_queue()
    q.defunct = True
    assert q.post(rec(1)) is False
    assert q.nbytes == 0


def test_listeners_are_woken_by_post_and_close():
    q = new_queue()
    calls = []
    cb = lambda: calls.append(1)  # noqa: E731
    q.add_listener(cb)
    q.post(rec(1))
    assert len(calls) == 1
    q.close_writer()
    assert len(calls) == 2
    q.remove_listener(cb)
    q.post(rec(2))
    assert len(calls) == 2


def test_statistics():
    q = new_queue(1)
    fill(q)
    q.post(rec(99))
    st = q.statistics()
    assert (st.capacity, st.queued, st.queued_bytes, st.posted, st.lost) == (32, 32, 512, 32, 1)
    assert st.loss_pending is False  # flagged, not yet consumed
