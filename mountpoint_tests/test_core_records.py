"""Unit tests of the binary record codec (wqfs/records.py) and the ABI numbers (wqfs/abi.py).

Expected bytes are built here with struct, independently of the codec, from the layouts of
include/uapi/linux/watch_queue.h (struct watch_notification, watch_notification_removal,
key_notification) and the output formats of samples/watch_queue/watch_test.c (consumer) and
keyutils' keyctl_watch.c.
"""
from __future__ import annotations

import json
import struct

import pytest

from corelib import key_rec, removal_rec

from wqfs import abi, records
from wqfs.records import (LOSS_BYTES, Decoder, KeyNotification, Loss, OtherRecord, RecordError,
                          Removal, format_json, format_keyctl, format_watch_test, make_info,
                          pack_key_notification, pack_removal, parse, parse_one, to_dict, with_tag)


# ------------------------------- ABI: include/uapi/linux/{watch_queue,keyctl}.h, include/linux/key.h

def test_pipe_flag_and_ioctl_numbers():
    assert abi.O_NOTIFICATION_PIPE == 0x80 == 0o200
    assert abi.IOC_WATCH_QUEUE_SET_SIZE == 0x5760 == 22368
    assert abi.IOC_WATCH_QUEUE_SET_FILTER == 0x5761 == 22369


def test_enum_values():
    assert (abi.WATCH_TYPE_META, abi.WATCH_TYPE_KEY_NOTIFY, abi.WATCH_TYPE_MOUNT_NOTIFY, abi.WATCH_TYPE_SB_NOTIFY, abi.WATCH_TYPE__NR) == (0, 1, 2, 3, 4)
    assert (abi.WATCH_META_REMOVAL_NOTIFICATION, abi.WATCH_META_LOSS_NOTIFICATION) == (0, 1)
    assert [abi.NOTIFY_KEY_INSTANTIATED, abi.NOTIFY_KEY_UPDATED, abi.NOTIFY_KEY_LINKED,
            abi.NOTIFY_KEY_UNLINKED, abi.NOTIFY_KEY_CLEARED, abi.NOTIFY_KEY_REVOKED,
            abi.NOTIFY_KEY_INVALIDATED, abi.NOTIFY_KEY_SETATTR] == list(range(8))
    assert abi.KEY_SUBTYPE_NAMES == ("instantiated", "updated", "linked", "unlinked",
                                     "cleared", "revoked", "invalidated", "setattr")


def test_info_masks_and_note_constants():
    assert abi.WATCH_INFO_LENGTH == 0x7F
    assert abi.WATCH_INFO_ID == 0xFF00
    assert abi.WATCH_INFO_ID__SHIFT == 8
    assert abi.WATCH_INFO_TYPE_INFO == 0xFFFF0000
    assert abi.WATCH_QUEUE_NOTE_SIZE == 128
    assert abi.WATCH_QUEUE_NOTES_PER_PAGE == 32
    assert abi.WATCH_QUEUE_MAX_NOTES == 512
    assert abi.WATCH_QUEUE_MAX_FILTERS == 16
    assert abi.FILTER_HEADER_SIZE == 8 and abi.TYPE_FILTER_SIZE == 44


def test_keyctl_numbers():
    assert abi.KEYCTL_WATCH_KEY == 32
    assert abi.KEYCTL_MOVE == 30 and abi.KEYCTL_MOVE_EXCL == 1
    assert abi.KEYCTL_CAPABILITIES == 31
    assert abi.KEYCTL_RESTRICT_KEYRING == 29
    assert abi.KEYCTL_INVALIDATE == 21
    assert abi.KEYCTL_REJECT == 19
    assert abi.KEYCTL_NEGATE == 13
    assert abi.KEYCTL_SETPERM == 5 and abi.KEYCTL_CHOWN == 4
    assert abi.KEYCTL_CAPS1_NOTIFICATIONS == 0x04
    assert [abi.KEY_SPEC_THREAD_KEYRING, abi.KEY_SPEC_PROCESS_KEYRING, abi.KEY_SPEC_SESSION_KEYRING,
            abi.KEY_SPEC_USER_KEYRING, abi.KEY_SPEC_USER_SESSION_KEYRING, abi.KEY_SPEC_GROUP_KEYRING,
            abi.KEY_SPEC_REQKEY_AUTH_KEY, abi.KEY_SPEC_REQUESTOR_KEYRING] == list(range(-1, -9, -1))


def test_permission_bits():
    assert abi.KEY_POS_ALL == 0x3F000000 and abi.KEY_USR_ALL == 0x003F0000
    assert abi.KEY_GRP_ALL == 0x3F00 and abi.KEY_OTH_ALL == 0x3F
    assert abi.KEY_PERM_VALID == 0x3F3F3F3F
    assert (abi.KEY_POS_VIEW, abi.KEY_POS_READ, abi.KEY_POS_WRITE, abi.KEY_POS_SEARCH,
            abi.KEY_POS_LINK, abi.KEY_POS_SETATTR) == (0x01000000, 0x02000000, 0x04000000,
                                                       0x08000000, 0x10000000, 0x20000000)
    assert (abi.KEY_USR_VIEW, abi.KEY_USR_READ, abi.KEY_USR_WRITE, abi.KEY_USR_SEARCH,
            abi.KEY_USR_LINK, abi.KEY_USR_SETATTR) == (0x10000, 0x20000, 0x40000, 0x80000,
                                                       0x100000, 0x200000)
    assert abi.KEY_PERM_UNDEF == 0xFFFFFFFF


def test_quota_constants():
    assert abi.KEY_QUOTA_MAXKEYS == 200 and abi.KEY_QUOTA_MAXBYTES == 20000
    assert abi.KEY_QUOTA_ROOT_MAXKEYS == 1000000 and abi.KEY_QUOTA_ROOT_MAXBYTES == 25000000
    assert abi.KEYQUOTA_LINK_BYTES == 4
    assert abi.KEY_GC_DELAY == 300


# ------------------------------------------------------------- packing: struct watch_notification and its kin

def test_loss_bytes():
    assert LOSS_BYTES == struct.pack("<II", 0 | (1 << 24), 8)
    assert LOSS_BYTES == bytes([0, 0, 0, 1, 8, 0, 0, 0])
    assert len(LOSS_BYTES) == 8


def test_make_info():
    assert make_info(16) == 0x10
    assert make_info(16, 1) == 0x110
    assert make_info(16, 0xFF) == 0xFF10
    assert make_info(8, 2) == 0x208
    # the length field is 7 bits, the tag 8 bits; bit 7 is never set
    assert make_info(0xFF, 0x1FF) == 0xFF7F


def test_pack_key_notification_layout():
    data = pack_key_notification(abi.NOTIFY_KEY_LINKED, 0x1A2B3C4D, 123456789, tag=1)
    assert data == key_rec(2, 0x1A2B3C4D, 123456789, 1)
    assert len(data) == 16
    # bytes 0..2 are the type (LE), byte 3 is the subtype
    assert data[0:3] == b"\x01\x00\x00" and data[3] == 2
    # info: length 16 in bits 0..6, tag in bits 8..15, type info 0
    assert data[4:8] == b"\x10\x01\x00\x00"
    assert struct.unpack_from("<II", data, 8) == (0x1A2B3C4D, 123456789)


def test_pack_key_notification_negative_aux_is_u32():
    data = pack_key_notification(abi.NOTIFY_KEY_INSTANTIATED, 5, -126)
    assert struct.unpack_from("<I", data, 12)[0] == 0xFFFFFF82 == 4294967170


def test_pack_removal_16_bytes():
    data = pack_removal(0x12345678, tag=2)
    assert data == removal_rec(0x12345678, 2)
    assert len(data) == 16
    assert data[3] == 0 and data[0:3] == b"\x00\x00\x00"
    assert struct.unpack_from("<I", data, 4)[0] == 0x210


def test_pack_removal_id_zero_is_8_bytes():
    data = pack_removal(0, tag=3)
    assert data == struct.pack("<II", 0, 0x308)


def test_with_tag_overwrites_only_the_id_bits():
    base = pack_key_notification(abi.NOTIFY_KEY_UPDATED, 77, 0, tag=0xAA)
    tagged = with_tag(base, 0x05)
    assert tagged == key_rec(1, 77, 0, 0x05)
    assert len(tagged) == len(base)
    assert with_tag(tagged, 0) == key_rec(1, 77, 0, 0)


# ---------------------------------------------------------------- parsing

def test_parse_concatenated_records_without_padding():
    buf = key_rec(2, 0x100, 0x200, 1) + LOSS_BYTES + removal_rec(0x300, 2) + struct.pack("<II", 0, 0x408)
    out = list(parse(buf))
    assert out == [
        KeyNotification(2, 0x100, 0x200, 1, 0x110),
        Loss(8),
        Removal(0x300, 2, 0x210),
        Removal(0, 4, 0x408),
    ]
    assert out[0].name == "linked"
    assert out[1].tag == 0


def test_parse_unknown_records_are_kept_whole():
    other_meta = struct.pack("<II", 0 | (2 << 24), 0x108)
    other_type = struct.pack("<IIII", 7 | (3 << 24), 0x10, 1, 2)
    short_key = struct.pack("<III", 1 | (1 << 24), 12, 9)
    out = list(parse(other_meta + other_type + short_key))
    assert out == [
        OtherRecord(0, 2, 0x108, other_meta),
        OtherRecord(7, 3, 0x10, other_type),
        OtherRecord(1, 1, 12, short_key),
    ]
    assert out[0].tag == 1


def test_parse_one_returns_length():
    rec, length = parse_one(b"xx" + key_rec(5, 9, 0, 3), 2)
    assert length == 16
    assert rec == KeyNotification(5, 9, 0, 3, 0x310)


@pytest.mark.parametrize("data", [
    b"\x01\x00\x00\x00\x10\x00\x00",           # fewer than 8 bytes
    struct.pack("<II", 1, 4),                    # length < 8
    struct.pack("<II", 1, 0),                    # length 0
    key_rec(1, 2, 3)[:12],                       # length 16 but only 12 bytes
])
def test_parse_rejects_malformed(data):
    with pytest.raises(RecordError):
        list(parse(data))


def test_key_subtype_name_out_of_range_is_null():
    rec = next(parse(key_rec(9, 1, 0)))
    assert isinstance(rec, KeyNotification) and rec.name == "(null)"


def test_decoder_reassembles_split_records():
    stream = key_rec(1, 10, 0, 1) + LOSS_BYTES + removal_rec(10, 1)
    dec = Decoder()
    got = []
    for i in range(0, len(stream), 5):
        got += dec.feed(stream[i:i + 5])
    assert got == [KeyNotification(1, 10, 0, 1, 0x110), Loss(8), Removal(10, 1, 0x110)]
    assert dec.pending == 0


def test_decoder_keeps_partial_record_pending():
    dec = Decoder()
    assert dec.feed(key_rec(1, 10, 0)[:9]) == []
    assert dec.pending == 9
    assert dec.feed(key_rec(1, 10, 0)[9:]) == [KeyNotification(1, 10, 0, 0, 0x10)]
    assert dec.pending == 0


def test_decoder_rejects_bad_length():
    with pytest.raises(RecordError):
        Decoder().feed(struct.pack("<II", 1, 3))


# ---------------------------------------------------------------- text: watch_test.c consumer, keyctl_watch.c

def test_watch_test_key_line_hex_key_decimal_aux():
    rec = next(parse(key_rec(2, 0x1A2B3C4D, 123456789, 1)))
    assert format_watch_test(rec, 0) == [
        "NOTIFY[000]: ty=000001 sy=02 i=00000110",
        "KEY 1a2b3c4d change=2[linked] aux=123456789",
    ]


def test_watch_test_negative_aux_printed_as_unsigned():
    rec = next(parse(key_rec(0, 0x10, -126 & 0xFFFFFFFF, 1)))
    assert format_watch_test(rec, 0x1B0)[1] == "KEY 00000010 change=0[instantiated] aux=4294967170"
    assert format_watch_test(rec, 0x1B0)[0].startswith("NOTIFY[1b0]: ")


def test_watch_test_removal_prints_only_the_tag():
    rec = next(parse(removal_rec(0xDEADBEEF, 2)))
    assert format_watch_test(rec, 0) == [
        "NOTIFY[000]: ty=000000 sy=00 i=00000210",
        "REMOVAL of watchpoint 00000002",
    ]


def test_watch_test_loss_and_offset_hex():
    rec = next(parse(LOSS_BYTES))
    assert format_watch_test(rec, 0x10) == ["NOTIFY[010]: ty=000000 sy=01 i=00000008", "-- LOSS --"]


def test_watch_test_other_records():
    meta = next(parse(struct.pack("<II", 0 | (5 << 24), 8)))
    other = next(parse(struct.pack("<II", 3 | (1 << 24), 8)))
    assert format_watch_test(meta, 0) == ["NOTIFY[000]: ty=000000 sy=05 i=00000008", "other meta record"]
    assert format_watch_test(other, 8) == ["NOTIFY[008]: ty=000003 sy=01 i=00000008", "other type"]


def test_watch_test_all_subtype_names():
    for subtype, name in enumerate(abi.KEY_SUBTYPE_NAMES):
        rec = next(parse(key_rec(subtype, 1, 2)))
        assert format_watch_test(rec, 0)[1] == f"KEY 00000001 change={subtype}[{name}] aux=2"


def test_keyctl_watch_format():
    words = {0: "inst", 1: "upd", 4: "clr", 5: "rev", 6: "inv", 7: "attr"}
    for subtype, word in words.items():
        assert format_keyctl(next(parse(key_rec(subtype, 305419896, 0)))) == f"305419896 {word}"
    assert format_keyctl(next(parse(key_rec(2, 10, 4294967295)))) == "10 link 4294967295"
    assert format_keyctl(next(parse(key_rec(3, 10, 11)))) == "10 unlk 11"
    assert format_keyctl(next(parse(removal_rec(2147483647, 1)))) == "2147483647 gc"
    assert format_keyctl(Loss()) == "-- LOSS --"


def test_to_dict_and_json():
    assert to_dict(next(parse(key_rec(3, 10, 11, 4)))) == {
        "kind": "key", "subtype": 3, "event": "unlinked", "key": 10, "aux": 11, "tag": 4}
    assert to_dict(next(parse(removal_rec(10, 4)))) == {"kind": "removal", "id": 10, "tag": 4}
    assert to_dict(Loss()) == {"kind": "loss"}
    assert json.loads(format_json(next(parse(key_rec(1, 5, 0))))) == {
        "kind": "key", "subtype": 1, "event": "updated", "key": 5, "aux": 0, "tag": 0}


def test_roundtrip_every_subtype_and_tag():
    for subtype in range(8):
        for tag in (0, 1, 0x7F, 0x80, 0xFF):
            data = records.pack_key_notification(subtype, 0x7FFFFFFF, 0xFFFFFFFF, tag)
            assert data == key_rec(subtype, 0x7FFFFFFF, 0xFFFFFFFF, tag)
            rec = next(parse(data))
            assert (rec.subtype, rec.key_id, rec.aux, rec.tag) == (subtype, 0x7FFFFFFF, 0xFFFFFFFF, tag)
