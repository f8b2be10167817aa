"""Unit tests of queue filters (kernel/watch_queue.c watch_queue_set_filter and
filter_watch_notification; the layout of include/uapi/linux/watch_queue.h): validation, storage
and matching, both on the Filter object and end to end through a Kernel posting key records."""
from __future__ import annotations

import errno
import struct

import pytest

from corelib import (ALICE, LINKED, LOSS, REVOKED, SETATTR, UNLINKED, UPD, drain, errno_of, key_rec, new_queue,
                     removal_rec)

from wqfs import abi
from wqfs.kernel import Filter, Kernel, TypeFilter, pack_filter

ALL = 0xFFFFFFFF


def raw_entry(ftype: int, info_filter: int = 0, info_mask: int = 0, words=(0,) * 8) -> bytes:
    words = (tuple(words) + (0,) * 8)[:8]
    return struct.pack("<III8I", ftype, info_filter, info_mask, *words)


def raw_filter(*entries: bytes, nr=None, reserved=0) -> bytes:
    return struct.pack("<II", len(entries) if nr is None else nr, reserved) + b"".join(entries)


# ------------------------------------------------------------------ layout: struct watch_notification_filter

def test_pack_filter_layout():
    entry = TypeFilter(abi.WATCH_TYPE_KEY_NOTIFY, 0x100, 0xFF00, (ALL, 5))
    assert entry.pack() == raw_entry(1, 0x100, 0xFF00, (ALL, 5, 0, 0, 0, 0, 0, 0))
    assert len(entry.pack()) == 44
    data = pack_filter([entry, TypeFilter(0)])
    assert len(data) == 8 + 2 * 44
    assert data[:8] == struct.pack("<II", 2, 0)
    assert len(pack_filter([TypeFilter(1)] * 16)) == 712


# ------------------------------------------------------------------ validation: watch_queue_set_filter

def test_nr_filters_zero_is_einval():
    assert errno_of(Filter.from_bytes, raw_filter(nr=0)) == errno.EINVAL


def test_nr_filters_over_16_is_einval():
    entries = [raw_entry(1, words=(ALL,))] * 17
    assert errno_of(Filter.from_bytes, raw_filter(*entries)) == errno.EINVAL
    # checked on the header, before the array is copied
    assert errno_of(Filter.from_bytes, raw_filter(nr=17)) == errno.EINVAL


def test_sixteen_filters_accepted():
    f = Filter.from_bytes(raw_filter(*[raw_entry(1, words=(1 << i,)) for i in range(16)]))
    assert len(f.entries) == 16


def test_reserved_nonzero_is_einval():
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1), reserved=1)) == errno.EINVAL
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1), reserved=0x80000000)) == errno.EINVAL


def test_truncated_header_and_array_are_efault():
    assert errno_of(Filter.from_bytes, b"\x01\x00\x00\x00") == errno.EFAULT
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1), nr=2)) == errno.EFAULT
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1))[:-1]) == errno.EFAULT


def test_info_filter_outside_mask_is_einval():
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1, 0x100, 0))) == errno.EINVAL
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1, 0x300, 0x100))) == errno.EINVAL
    Filter.from_bytes(raw_filter(raw_entry(1, 0x100, 0x300)))  # subset: fine


@pytest.mark.parametrize("mask", [0x1, 0x7F, 0x40, 0xFF, 0xFFFFFFFF])
def test_mask_touching_length_is_einval(mask):
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1, 0, mask))) == errno.EINVAL


def test_mask_bit_7_and_id_and_type_info_allowed():
    f = Filter.from_bytes(raw_filter(raw_entry(1, 0x80, 0x80), raw_entry(1, 0, 0xFFFFFF00)))
    assert len(f.entries) == 2


def test_unknown_types_are_validated_before_being_skipped():
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(2, 1, 1))) == errno.EINVAL
    assert errno_of(Filter.from_bytes, raw_filter(raw_entry(1, words=(ALL,)), raw_entry(600, 4, 0))) == errno.EINVAL


def test_later_bad_entry_rejects_whole_filter():
    data = raw_filter(raw_entry(1, words=(ALL,)), raw_entry(1, 0, 0x7F))
    assert errno_of(Filter.from_bytes, data) == errno.EINVAL


def test_unknown_types_silently_ignored_and_not_stored():
    f = Filter.from_bytes(raw_filter(raw_entry(4, words=(ALL,)), raw_entry(1, words=(0x4,)),
                                     raw_entry(63, words=(ALL,)), raw_entry(64, words=(ALL,)),
                                     raw_entry(511, words=(ALL,)), raw_entry(0xFFFFFFFF, words=(ALL,))))
    assert [e.type for e in f.entries] == [1]
    assert f.type_bitmap == 0b10


def test_mount_and_superblock_types_are_known_and_stored():
    """WATCH_TYPE__NR is 4 with the mount (2) and superblock (3) sources: entries for them stay."""
    f = Filter.from_bytes(raw_filter(raw_entry(2, words=(ALL,)), raw_entry(3, words=(0x1,)), raw_entry(4, words=(ALL,))))
    assert [e.type for e in f.entries] == [2, 3]
    assert f.type_bitmap == 0b1100


def test_only_subtype_word_0_is_stored_and_used():
    # words 1..7 are neither validated nor used
    f = Filter.from_bytes(raw_filter(raw_entry(1, words=(0, ALL, ALL, ALL, ALL, ALL, ALL, ALL))))
    assert [e.subtypes for e in f.entries] == [0]
    for subtype in range(8):
        assert not f.matches(1, subtype, 0x10)


# ------------------------------------------------------------------ matching: filter_watch_notification

def test_matching_needs_type_subtype_and_info():
    f = Filter.from_bytes(raw_filter(raw_entry(1, 0, 0, (1 << 2 | 1 << 3,))))
    assert f.matches(1, 2, 0x10)
    assert f.matches(1, 3, 0xFF10)
    assert not f.matches(1, 1, 0x10)
    assert not f.matches(0, 2, 0x10)     # META has no entry
    assert not f.matches(5, 2, 0x10)


def test_entries_are_ored():
    f = Filter.from_bytes(raw_filter(raw_entry(1, 0x100, 0xFF00, (1 << 1,)),
                                     raw_entry(1, 0x200, 0xFF00, (1 << 5,))))
    assert f.matches(1, 1, 0x110)
    assert f.matches(1, 5, 0x210)
    assert not f.matches(1, 1, 0x210)
    assert not f.matches(1, 5, 0x110)
    assert not f.matches(1, 2, 0x110)


def test_type_info_bits_can_be_filtered():
    f = Filter.from_bytes(raw_filter(raw_entry(1, 0x00010000, 0x00010000, (ALL,))))
    assert not f.matches(1, 0, 0x10)
    assert f.matches(1, 0, 0x00010010)


def test_filter_of_only_unknown_types_rejects_everything():
    f = Filter.from_bytes(raw_filter(raw_entry(4, words=(ALL,)), raw_entry(5, words=(ALL,))))
    assert f.entries == [] and f.type_bitmap == 0
    for rtype in (0, 1):
        for subtype in range(8):
            assert not f.matches(rtype, subtype, 0x10)


# ------------------------------------------------------------ end to end through a Kernel

@pytest.fixture
def setup():
    kernel = Kernel(seed=7)
    q = new_queue(256)
    ring = kernel.add_key(ALICE, "keyring", "r", b"", -3)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    return kernel, q, ring, key


def test_watch_test_filter_passes_key_records(setup):
    kernel, q, ring, key = setup
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, subtype_filter=(ALL,))])))
    kernel.watch_key(ALICE, key, q, 1)
    kernel.update(ALICE, key, b"w")
    assert drain(q) == key_rec(UPD, key, 0, 1)


def test_subtype_selection(setup):
    kernel, q, ring, key = setup
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, subtype_filter=(1 << SETATTR,))])))
    kernel.watch_key(ALICE, key, q, 1)
    kernel.update(ALICE, key, b"w")
    kernel.setperm(ALICE, key, 0x3F3F0000)
    kernel.update(ALICE, key, b"x")
    assert drain(q) == key_rec(SETATTR, key, 0, 1)
    assert q.statistics().filtered == 2


def test_tag_selection_via_id_mask(setup):
    """info is matched after the watch's tag is OR-ed in, so a filter can select by tag."""
    kernel, q, ring, key = setup
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, 0x0200, 0xFF00, (ALL,))])))
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.update(ALICE, key, b"w")               # tag 1: filtered out
    kernel.link(ALICE, key, ring)                 # tag 2: passes
    kernel.setperm(ALICE, key, 0x3F3F0000)        # tag 1: filtered out
    assert drain(q) == key_rec(LINKED, ring, key, 2)


def test_same_event_filtered_per_queue(setup):
    kernel, q, ring, key = setup
    q2 = new_queue(32)
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, subtype_filter=(1 << REVOKED,))])))
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, key, q2, 2)
    kernel.update(ALICE, key, b"w")
    assert drain(q) == b""
    assert drain(q2) == key_rec(UPD, key, 0, 2)


def test_no_filter_or_removed_filter_passes_everything(setup):
    kernel, q, ring, key = setup
    kernel.watch_key(ALICE, key, q, 1)
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(2, subtype_filter=(ALL,))])))
    kernel.update(ALICE, key, b"w")
    assert drain(q) == b""
    q.set_filter(None)  # SET_FILTER(NULL)
    kernel.update(ALICE, key, b"x")
    assert drain(q) == key_rec(UPD, key, 0, 1)


def test_filter_replaced_at_any_time(setup):
    kernel, q, ring, key = setup
    kernel.watch_key(ALICE, key, q, 1)
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, subtype_filter=(1 << UPD,))])))
    kernel.update(ALICE, key, b"w")
    kernel.setperm(ALICE, key, 0x3F3F0000)
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, subtype_filter=(1 << SETATTR,))])))
    kernel.update(ALICE, key, b"x")
    kernel.setperm(ALICE, key, 0x3F3F0000)
    assert drain(q) == key_rec(UPD, key, 0, 1) + key_rec(SETATTR, key, 0, 1)


def test_meta_records_bypass_a_reject_all_filter(setup):
    """Removal records and loss records are never filtered (watch_test has no META entry)."""
    kernel, q, ring, key = setup
    small = new_queue(1)
    small.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, subtype_filter=(1 << UPD,))])))
    kernel.watch_key(ALICE, key, small, 3)
    for i in range(33):
        kernel.update(ALICE, key, b"u%d" % i)
    kernel.watch_key(ALICE, key, small, -1)   # removal: lost, since the queue is full
    data = drain(small)
    assert data == key_rec(UPD, key, 0, 3) * 32 + LOSS
    kernel.watch_key(ALICE, key, small, 4)
    # a filter of unknown types only rejects every key record, yet removal passes
    small.set_filter(Filter.from_bytes(raw_filter(raw_entry(7, words=(ALL,)))))
    kernel.update(ALICE, key, b"z")
    kernel.watch_key(ALICE, key, small, -1)
    assert drain(small) == removal_rec(key, 4)


def test_meta_entry_accepted_but_changes_nothing(setup):
    kernel, q, ring, key = setup
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(0, subtype_filter=(0,)),
                                                TypeFilter(1, subtype_filter=(1 << UPD,))])))
    kernel.watch_key(ALICE, key, q, 5)
    kernel.update(ALICE, key, b"w")
    kernel.watch_key(ALICE, key, q, -1)
    assert drain(q) == key_rec(UPD, key, 0, 5) + removal_rec(key, 5)


def test_ltp_filter_meta_and_key(setup):
    kernel, q, ring, key = setup
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(0, subtype_filter=(ALL,)),
                                                TypeFilter(1, subtype_filter=(ALL,))])))
    kernel.watch_key(ALICE, key, q, 1)
    kernel.watch_key(ALICE, ring, q, 2)
    kernel.unlink(ALICE, key, ring)
    assert drain(q) == key_rec(UNLINKED, ring, key, 2)
