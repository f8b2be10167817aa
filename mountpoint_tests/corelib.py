"""Helpers shared by the core unit tests (wqfs/kernel, no FUSE): the callers, a fake clock, kernels
and queues, expected records built with struct (not with the codec under test), and the one
place that imports from below the public wqfs.kernel package.

The fixtures clock, kernel and q (conftest.py) are built from new_kernel, Clock and new_queue here.
"""
from __future__ import annotations

import errno
import struct

import pytest

from helpers import CLEARED, INST, INVAL, LINKED, LOSS, REVOKED, SETATTR, UNLINKED, UPD

from wqfs import abi
from wqfs.kernel import Cred, Kernel, KernelError, WatchQueue

# ---- core internals. Test files import these from here, never from wqfs.kernel.<module>: the
# core is being reorganised along the kernel's source files, and when a path moves, this is the
# only file to change.
from wqfs.kernel import pipe_accounting  # a module: a test patches its SYSCTL_DIR
from wqfs.kernel.pipe_accounting import PipeAccounting, PipeLimits, read_pipe_limits
from wqfs.kernel.keys.persistent import persistent_keyring_expiry
from wqfs.kernel.watch_queue import Watch, add_watch_to_object  # kernel/watch_queue.c

__all__ = ["persistent_keyring_expiry", "ALICE", "BOB", "ROOT", "NOWHERE", "SEED", "Clock", "new_kernel", "new_queue", "ses", "members",
           "force_watch", "key_rec", "removal_rec", "errno_of", "drain",
           "INST", "UPD", "LINKED", "UNLINKED", "CLEARED", "REVOKED", "INVAL", "SETATTR", "LOSS",
           "pipe_accounting", "PipeAccounting", "PipeLimits", "read_pipe_limits", "Watch", "add_watch_to_object"]

# ---------------------------------------------------------------- callers

# Each with its own thread, process and session, so that nobody possesses another's keyrings.
ALICE = Cred(1000, 1000, thread="ta", process="pa", session="sa")
BOB = Cred(1001, 1001, thread="tb", process="pb", session="sb")
ROOT = Cred(0, 0, thread="tr", process="pr", session="sr")

NOWHERE = 0x7FFFFFF0  # a serial that is never allocated with the seeds used here
SEED = 12345  # the kernel fixture's serial seed: serials are random, but the same in every run


# ---------------------------------------------------------------- kernels and queues

class Clock:
    """A settable clock for Kernel(clock=...): tests move .t instead of sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def new_kernel(clock: Clock, *, gc_delay: float = abi.KEY_GC_DELAY, seed: int = SEED,
               rcu_grace: float = 0.0) -> Kernel:
    """A kernel on the fake clock; NOWHERE stays unallocated (tests use it as "no such key").
    Without RCU grace periods unless told (a key is freed at the next collect()): the grace
    periods have tests of their own (test_core_gc.py), the other rules are tested apart from them."""
    k = Kernel(gc_delay=gc_delay, clock=clock, seed=seed, rcu_grace=rcu_grace)
    assert NOWHERE not in k.keys
    return k


def new_queue(size: int = 256) -> WatchQueue:
    """A queue whose size is set: an unsized queue drops every notification silently."""
    q = WatchQueue()
    q.set_size(size)
    return q


def ses(kernel: Kernel, cred: Cred = ALICE) -> int:
    """The caller's session keyring's serial, created (an anonymous "_ses") if missing."""
    return kernel.get_keyring_id(cred, abi.KEY_SPEC_SESSION_KEYRING, True)


def members(kernel: Kernel, cred: Cred, ring: int) -> list[int]:
    """A keyring's members as KEYCTL_READ gives them (keyring_read: u32 serials)."""
    data = kernel.read(cred, ring)
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


def force_watch(kernel: Kernel, q: WatchQueue, serial: int, tag: int, uid: int = 1000) -> None:
    """Watch a key that KEYCTL_WATCH_KEY cannot reach yet (under construction): what
    keyctl_watch_key does after its lookup, without the lookup."""
    key = kernel.keys[serial]
    watch = Watch(q, key.watchers, abi.WATCH_TYPE_KEY_NOTIFY, serial, tag, uid)
    add_watch_to_object(watch, kernel.watch_counts, 1 << 20)


# ---------------------------------------------------------------- expected records and errors

def key_rec(subtype: int, key_id: int, aux: int = 0, tag: int = 0) -> bytes:
    """struct key_notification: type 1, the subtype in byte 3, length 16, the tag in info."""
    return struct.pack("<IIII", 1 | (subtype << 24), (tag << 8) | 16, key_id, aux & 0xFFFFFFFF)


def removal_rec(object_id: int, tag: int = 0) -> bytes:
    """struct watch_notification_removal: type 0, subtype 0, length 16, the object's id."""
    return struct.pack("<IIQ", 0, (tag << 8) | 16, object_id)


def errno_of(fn, *args, **kwargs) -> int:
    """The errno of the KernelError fn raises (and it must raise one)."""
    with pytest.raises(KernelError) as info:
        fn(*args, **kwargs)
    return info.value.errno


def drain(q: WatchQueue, bufsize: int = 4096) -> bytes:
    """Everything readable now, in reads of bufsize."""
    out = b""
    while True:
        try:
            chunk = q.read_nowait(bufsize)
        except KernelError as e:
            assert e.errno == errno.EAGAIN
            return out
        if not chunk:
            return out
        out += chunk
