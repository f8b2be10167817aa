"""The Python client's mount and superblock watches: Queue.watch_mount, unwatch_mount, watch_sb,
unwatch_sb and their typed records (MountNotification, SuperblockNotification, re-exported by
wqfs.client), mount_filter and sb_filter, the errors explained; AsyncQueue's too. Each mount is
made inside a private mount namespace (mountns.py)."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from typing import Iterator

import pytest

from wqfs import client, records
from mountns import python_in_private_ns


@pytest.fixture
def public_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="wqfs-client-mounts-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_typed_records_are_the_codecs():
    assert client.MountNotification is records.MountNotification
    assert client.SuperblockNotification is records.SuperblockNotification
    assert {"MountNotification", "SuperblockNotification", "Removal", "Loss"} <= set(client.__all__)


TYPED = r'''
from wqfs import abi
from wqfs.client import MountNotification, Queue, Removal, SuperblockNotification, mount_filter, sb_filter
mnt, base = sys.argv[1:3]
os.chdir(base)
os.mkdir("t")
q = Queue(mnt, size=64)
q.watch_mount("/", 1)
only = Queue(mnt, size=64, nonblock=True)
only.set_filter(mount_filter([abi.NOTIFY_MOUNT_UNMOUNT]) + sb_filter())
only.watch_mount("/", 1)
seen = []

def take(n):
    out = []
    while len(out) < n:
        out += q.read()
    return out

run("mount", "-t", "tmpfs", "wqfs-client", "t")
new = take(1)
t = mount_of(base + "/t")
q.watch_sb("t", 2)                       # relative: this process's cwd
q.watch_mount("t", 3)
run("mount", "-o", "remount,ro", "t")
remount = take(3)                        # the superblock's READONLY, SETATTR to / and to t
run("umount", "t")
gone = take(3)                           # UNMOUNT, the removals of t's watch and of the sb's
filtered = only.read()
def describe(r):
    if isinstance(r, MountNotification):
        return ["mount", r.name, r.triggered_on, r.aux, r.tag, r.in_subtree, r.is_now_ro]
    if isinstance(r, SuperblockNotification):
        return ["sb", r.name, r.sb_id, r.tag, r.is_now_ro]
    if isinstance(r, Removal):
        return ["removal", r.id, r.tag]
    return ["other", repr(r)]
print(json.dumps({"root": mount_of("/")[0], "t": t, "new": [describe(r) for r in new], "remount": [describe(r) for r in remount],
                  "gone": [describe(r) for r in gone], "filtered": [describe(r) for r in filtered]}))
'''


def test_watch_mount_and_watch_sb_give_typed_records(mnt, tmp_path):
    """A tmpfs mounted, remounted ro and unmounted under watches on /, on the tmpfs (relative
    to the cwd) and on its superblock: each record typed, with its fields and flags; a second
    queue's mount_filter([UNMOUNT]) + sb_filter() lets the unmount alone through."""
    got = python_in_private_ns(TYPED, mnt, str(tmp_path))
    t, parent, dev = got["t"]
    above = parent != got["root"]  # IN_SUBTREE at / unless the tmpfs hangs on the root mount itself
    assert got["new"] == [["mount", "new_mount", parent, t, 1, above, False]]
    assert got["remount"] == [["sb", "readonly", dev, 2, True],
                              ["mount", "setattr", t, 0, 3, False, False],
                              ["mount", "setattr", t, 0, 1, True, False]]
    assert got["gone"] == [["mount", "unmount", parent, t, 1, above, False],
                           ["removal", t, 3], ["removal", dev, 2]]
    assert got["filtered"] == [got["gone"][0]]


def test_errors_are_explained(mnt, public_dir, queues):
    q = queues()
    with pytest.raises(FileNotFoundError) as caught:
        q.watch_mount(os.path.join(public_dir, "missing"), 1)
    assert str(caught.value) == (f"[Errno 2] watch_mount {public_dir}/missing 1: no such file or directory "
                                 "(as this process sees the path) (ENOENT)")
    with pytest.raises(OSError) as caught:
        q.unwatch_mount(public_dir)
    assert caught.value.errno == errno.EBADSLT and "this queue does not watch that directory" in str(caught.value)
    with pytest.raises(OSError) as caught:
        q.watch_sb(public_dir, 300)
    assert caught.value.errno == errno.EINVAL and "a tag is 0..255" in str(caught.value)
    q.watch_sb(public_dir, 1)
    with pytest.raises(OSError) as caught:
        q.watch_sb(public_dir, 2)
    assert caught.value.errno == errno.EBUSY and "that superblock already" in str(caught.value)
    q.unwatch_sb(public_dir)
    assert [type(r) for r in q.read()] == [records.Removal]


def test_paths_with_spaces_and_bytes(mnt, public_dir, queues):
    """Any path a program may name: the client escapes it for the command (str or bytes)."""
    odd = os.path.join(public_dir, "a b\\c")
    os.mkdir(odd)
    os.mkdir(os.fsencode(public_dir) + b"/\xff\n")
    q = queues()
    q.watch_mount(odd, 1)
    q.watch_mount(os.fsencode(public_dir) + b"/\xff\n", 2)
    q.unwatch_mount(odd)
    q.unwatch_mount(os.fsencode(public_dir) + b"/\xff\n")
    assert sorted(r.tag for r in q.read()) == [1, 2]


async def test_async_queue_watches_mounts(mnt, public_dir):
    async with client.AsyncQueue(mnt, size=16) as q:
        q.watch_mount(public_dir, 4)
        q.unwatch_mount(public_dir)
        async for record in q:
            assert isinstance(record, records.Removal) and record.tag == 4
            break
