"""The Python client: blocking and trio queues on a real mount, typed records, kernel errnos."""
from __future__ import annotations

import errno
import os

import pytest
import trio

from helpers import serial, write_key
from wqfs import abi
from wqfs.client import AsyncQueue, Queue, key_filter
from wqfs.records import KeyNotification, Loss, Removal


def test_blocking_queue_reads_typed_records(mnt, ring):
    with Queue(mnt, size=8) as q:
        q.watch(serial(ring), 7)
        write_key(os.path.join(ring, "user:a"), b"1")
        records = q.read()
    assert len(records) == 1
    record = records[0]
    assert isinstance(record, KeyNotification)
    assert (record.subtype, record.name, record.key_id, record.tag) == \
        (abi.NOTIFY_KEY_LINKED, "linked", serial(ring), 7)
    assert record.aux == serial(os.path.join(ring, "user:a"))


def test_poll_says_when_a_record_is_there(mnt, ring):
    with Queue(mnt, size=8, nonblock=True) as q:
        q.watch(serial(ring), 1)
        assert q.poll(0) is False
        write_key(os.path.join(ring, "user:p"), b"1")
        assert q.poll(5) is True
        assert [r.subtype for r in q.read()] == [abi.NOTIFY_KEY_LINKED]
        with pytest.raises(BlockingIOError):
            q.read()


def test_key_filter_selects_subtypes_and_tags(mnt, ring, make_ring):
    other = make_ring()
    with Queue(mnt, size=32, nonblock=True) as q:
        q.set_filter(key_filter(subtypes=[abi.NOTIFY_KEY_UNLINKED], tag=2))
        q.watch(serial(ring), 1)
        q.watch(serial(other), 2)
        for r in (ring, other):
            write_key(os.path.join(r, "user:f"), b"1")
            os.unlink(os.path.join(r, "user:f"))
        q.poll(5)
        records = q.read()
    assert [(r.subtype, r.key_id, r.tag) for r in records] == [(abi.NOTIFY_KEY_UNLINKED, serial(other), 2)]


def test_unwatch_gives_a_removal_record_and_errors_are_oserrors(mnt, ring):
    with Queue(mnt, size=8, nonblock=True) as q:
        q.watch(serial(ring), 3)
        with pytest.raises(OSError) as busy:
            q.watch(serial(ring), 4)
        assert busy.value.errno == errno.EBUSY
        q.unwatch(serial(ring))
        records = q.read()
        assert records == [Removal(serial(ring), 3, (3 << 8) | 16)]
        with pytest.raises(OSError) as unwatched:
            q.unwatch(serial(ring))
        assert unwatched.value.errno == errno.EBADSLT
        with pytest.raises(OSError) as twice:
            q.set_size(9)
        assert twice.value.errno == errno.EBUSY


def test_loss_record_is_typed(mnt, ring):
    key = os.path.join(ring, "user:l")
    write_key(key, b"0")
    with Queue(mnt, size=1, nonblock=True) as q:
        q.watch(serial(key), 1)
        for i in range(40):
            write_key(key, str(i).encode())
        records = []
        while True:
            try:
                records += q.read(65536)
            except BlockingIOError:
                break
    assert len(records) == 33
    assert isinstance(records[-1], Loss)
    assert all(isinstance(r, KeyNotification) for r in records[:-1])


async def test_async_queue_iterates_records_as_they_come(mnt, ring):
    async with AsyncQueue(mnt, size=16) as q:
        q.watch(serial(ring), 5)
        seen = []

        async def writer():
            for name in ("x", "y", "z"):
                await trio.to_thread.run_sync(write_key, os.path.join(ring, f"user:{name}"), b"v")

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                async for record in q:
                    seen.append(record)
                    if len(seen) == 3:
                        break
    assert [(r.subtype, r.key_id, r.tag) for r in seen] == [(abi.NOTIFY_KEY_LINKED, serial(ring), 5)] * 3


async def test_async_queue_read_waits_without_blocking_the_loop(mnt, ring):
    async with AsyncQueue(mnt, size=16) as q:
        q.watch(serial(ring), 1)
        ticks_while_waiting = 0
        records: list = []

        async def reader():
            records.extend(await q.read())

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                for _ in range(20):  # the loop keeps running while the read waits
                    await trio.sleep(0.01)
                    ticks_while_waiting += not records
                await trio.to_thread.run_sync(write_key, os.path.join(ring, "user:w"), b"v")
    assert ticks_while_waiting == 20
    assert [r.subtype for r in records] == [abi.NOTIFY_KEY_LINKED]
