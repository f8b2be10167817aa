"""security/security.c's hook points in the core alone: where each hook is called, in the kernel's
order relative to the other checks, with which credentials; what a refusal does; and that with
no module everything is as it was. Smack itself is test_core_smack.py's."""
from __future__ import annotations

import errno
import importlib.util
import os

import pytest

from corelib import ALICE, BOB, Clock, drain, errno_of, key_rec, new_kernel, new_queue, removal_rec, ses
from wqfs import abi
from wqfs.kernel import LSM, Cred, Kernel, MountInfo, MountTarget

HERE = os.path.dirname(os.path.abspath(__file__))


class Recorder(LSM):
    """Allows everything (or refuses with .refuse[hook]) and records every call."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.refuse: dict[str, int] = {}

    def key_alloc(self, key, cred):
        self.calls.append(("key_alloc", key.description, cred))
        key.security = f"label-of-{cred.uid}"
        return self.refuse.get("key_alloc", 0)

    def key_getsecurity(self, key):
        return key.security

    def watch_key(self, cred, key):
        self.calls.append(("watch_key", cred, key.serial))
        return self.refuse.get("watch_key", 0)

    def watch_mount(self, cred, target):
        self.calls.append(("watch_mount", cred, target.mnt_id, target.dentry))
        return self.refuse.get("watch_mount", 0)

    def watch_sb(self, cred, sb):
        self.calls.append(("watch_sb", cred, sb.id))
        return self.refuse.get("watch_sb", 0)

    def post_notification(self, w_cred, cred, rtype, subtype, info, record):
        self.calls.append(("post", w_cred, cred, rtype, subtype, info, record))
        return self.refuse.get("post", 0)

    def of(self, hook: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == hook]


@pytest.fixture
def lsm() -> Recorder:
    return Recorder()


@pytest.fixture
def secured(lsm: Recorder) -> Kernel:
    return Kernel(clock=Clock(), seed=12345, rcu_grace=0.0, lsm=lsm)


def _ring(k: Kernel, cred: Cred = ALICE, name: str = "r") -> int:
    return k.add_key(cred, "keyring", name, b"", ses(k, cred))


# ---------------------------------------------------------------- no module

def test_no_module_is_today(kernel: Kernel) -> None:
    """Kernel() has no module: no label, "" from KEYCTL_GET_SECURITY, records as ever."""
    assert kernel.lsm is None
    ring = _ring(kernel)
    assert kernel.get_security(ALICE, ring) == ""
    q = new_queue()
    kernel.watch_key(ALICE, ring, q, 1)
    key = kernel.add_key(ALICE, "user", "k", b"v", ring)
    assert drain(q) == key_rec(abi.NOTIFY_KEY_LINKED, ring, key, tag=1)
    assert "add_key" not in vars(kernel)  # the system calls are the plain functions


def test_an_allow_all_module_changes_no_record(clock: Clock) -> None:
    """The same operations on a kernel without a module and on one with LSM (which allows
    everything) give the same bytes."""
    def scenario(k: Kernel) -> bytes:
        q = new_queue()
        ring = _ring(k)
        k.watch_key(ALICE, ring, q, 7)
        key = k.add_key(ALICE, "user", "k", b"v", ring)
        k.watch_key(ALICE, key, q, 8)
        k.update(ALICE, key, b"w")
        k.setperm(ALICE, key, 0x3f3f0000)
        k.unlink(ALICE, key, ring)
        k.collect()
        k.watch_key(ALICE, ring, q, -1)
        return drain(q)

    plain = scenario(new_kernel(Clock()))
    with_lsm = scenario(Kernel(clock=Clock(), seed=12345, rcu_grace=0.0, lsm=LSM()))
    assert plain == with_lsm and len(plain) == 16 * 6


# ---------------------------------------------------------------- key_alloc, key_getsecurity

def test_key_alloc_labels_every_new_key_with_its_creators_cred(secured: Kernel, lsm: Recorder) -> None:
    ring = _ring(secured)
    key = secured.add_key(BOB, "user", "bobs", b"v", secured.get_keyring_id(BOB, abi.KEY_SPEC_USER_KEYRING, True))
    allocs = lsm.of("key_alloc")
    assert ("key_alloc", "r", ALICE) in allocs and ("key_alloc", "bobs", BOB) in allocs
    assert ("key_alloc", "_ses", ALICE) in allocs  # the implicit session keyring too
    assert secured.get_security(ALICE, ring) == "label-of-1000"
    assert secured.get_security(BOB, key) == "label-of-1001"


def test_a_refused_key_alloc_fails_add_key_and_charges_nothing(secured: Kernel, lsm: Recorder) -> None:
    ring = _ring(secured)
    before = dict(secured.keys)
    lsm.refuse["key_alloc"] = errno.EPERM
    assert errno_of(secured.add_key, ALICE, "user", "k", b"v", ring) == errno.EPERM
    assert secured.keys == before
    del lsm.refuse["key_alloc"]
    for i in range(150):  # the quota was given back every time: 200 keys of ALICE's still fit
        lsm.refuse["key_alloc"] = errno.EPERM
        errno_of(secured.add_key, ALICE, "user", f"x{i}", b"v", ring)
    del lsm.refuse["key_alloc"]
    for i in range(150):
        secured.add_key(ALICE, "user", f"y{i}", b"v", ring)


def test_get_security_needs_view_before_the_module_is_asked(secured: Kernel) -> None:
    ring = _ring(secured)
    assert errno_of(secured.get_security, BOB, ring) == errno.ENOKEY  # no VIEW, no authority
    assert errno_of(secured.get_security, ALICE, 0x7FFFFFF0) == errno.ENOKEY


# ---------------------------------------------------------------- watch_key

def test_watch_key_asks_the_module_after_every_other_check_but_ebusy_and_eagain(secured: Kernel, lsm: Recorder) -> None:
    ring = _ring(secured)
    q = new_queue()
    lsm.refuse["watch_key"] = errno.EACCES
    assert errno_of(secured.watch_key, ALICE, ring, q, 256) == errno.EINVAL    # the tag's range first
    assert errno_of(secured.watch_key, ALICE, 0x7FFFFFF0, q, 1) == errno.ENOKEY  # then the key
    assert errno_of(secured.watch_key, BOB, ring, q, 1) == errno.EACCES        # VIEW: not the module's
    assert lsm.of("watch_key") == []
    assert errno_of(secured.watch_key, ALICE, ring, None, 1) == errno.EINVAL   # the queue
    assert lsm.of("watch_key") == []
    assert errno_of(secured.watch_key, ALICE, ring, q, 1) == errno.EACCES      # the module
    assert lsm.of("watch_key") == [("watch_key", ALICE, ring)]
    assert q.statistics().watches == 0
    assert errno_of(secured.watch_key, ALICE, ring, q, 1, watch_limit=0) == errno.EACCES  # before EAGAIN
    del lsm.refuse["watch_key"]
    secured.watch_key(ALICE, ring, q, 1)
    lsm.refuse["watch_key"] = errno.EPERM
    assert errno_of(secured.watch_key, ALICE, ring, q, 2) == errno.EPERM       # before EBUSY
    calls = len(lsm.of("watch_key"))
    secured.watch_key(ALICE, ring, q, -1)                                       # removal: not asked
    assert len(lsm.of("watch_key")) == calls
    assert drain(q) == removal_rec(ring, tag=1)


# ---------------------------------------------------------------- post_notification

def test_each_copy_is_asked_with_the_watchers_and_the_generators_creds(secured: Kernel, lsm: Recorder) -> None:
    ring = _ring(secured)
    secured.setperm(ALICE, ring, 0x3f3f3f3f)
    qa, qb = new_queue(), new_queue()
    secured.watch_key(ALICE, ring, qa, 1)
    secured.watch_key(BOB, ring, qb, 2)
    lsm.calls.clear()
    key = secured.add_key(BOB, "user", "k", b"v", ring)
    posts = lsm.of("post")
    # newest watch first, as the list is; w_cred the setter's, cred the caller's (BOB)
    assert [(p[1], p[2]) for p in posts] == [(BOB, BOB), (ALICE, BOB)]
    assert posts[0][3:6] == (abi.WATCH_TYPE_KEY_NOTIFY, abi.NOTIFY_KEY_LINKED, 16 | 2 << 8)
    assert posts[0][6] == key_rec(abi.NOTIFY_KEY_LINKED, ring, key, tag=2)
    lsm.refuse["post"] = errno.EACCES
    secured.add_key(ALICE, "user", "k2", b"v", ring)
    assert drain(qa) == key_rec(abi.NOTIFY_KEY_LINKED, ring, key, tag=1)  # the second: dropped
    stats = qa.statistics()
    assert (stats.lost, stats.filtered, stats.loss_pending) == (0, 0, False)  # silently
    assert drain(qb) == key_rec(abi.NOTIFY_KEY_LINKED, ring, key, tag=2)


def test_the_filter_comes_before_the_module(secured: Kernel, lsm: Recorder) -> None:
    from wqfs.kernel import Filter, TypeFilter, pack_filter
    ring = _ring(secured)
    q = new_queue()
    q.set_filter(Filter.from_bytes(pack_filter([TypeFilter(1, subtype_filter=(1 << abi.NOTIFY_KEY_UPDATED,))])))
    secured.watch_key(ALICE, ring, q, 1)
    lsm.calls.clear()
    secured.add_key(ALICE, "user", "k", b"v", ring)  # LINKED: filtered out, the module never sees it
    assert lsm.of("post") == [] and q.statistics().filtered == 1


def test_meta_records_never_reach_the_module(secured: Kernel, lsm: Recorder) -> None:
    ring = _ring(secured)
    key = secured.add_key(ALICE, "user", "k", b"v", ring)
    q = new_queue()
    secured.watch_key(ALICE, key, q, 3)
    secured.watch_key(ALICE, ring, q, 4)
    lsm.refuse["post"] = errno.EACCES
    secured.watch_key(ALICE, ring, q, -1)  # removal on unwatch
    secured.unlink(ALICE, key, ring)  # UNLINKED on the ring: not watched any more
    secured.collect()  # the key freed: its removal record, from the collector
    assert drain(q) == removal_rec(ring, tag=4) + removal_rec(key, tag=3)
    assert all(p[3] != abi.WATCH_TYPE_META for p in lsm.of("post"))


def test_the_generator_is_the_system_call_being_served_or_none(secured: Kernel, lsm: Recorder) -> None:
    """current_cred() is the caller's in every system call, nested ones included, and None
    outside any: a post made there (a host mount event) has no generator."""
    ring = _ring(secured)
    q = new_queue()
    secured.watch_key(ALICE, ring, q, 1)
    lsm.calls.clear()
    secured.clear(ALICE, ring)
    secured.revoke(ALICE, ring)
    assert [p[2] for p in lsm.of("post")] == [ALICE, ALICE]
    from wqfs.kernel.cred import current_cred
    assert current_cred() is None


# ---------------------------------------------------------------- watch_mount, watch_sb

def _mnt(mid: int, parent: int, point: str, dev: int) -> MountInfo:
    return MountInfo(mid, parent, dev, "/", point, "rw,relatime", "tmpfs", "none", "rw")


def test_watch_mount_and_watch_sb_ask_the_module_and_host_events_post_with_no_cred(secured: Kernel, lsm: Recorder) -> None:
    ns = ("ns", 1)
    secured.mount_resync(ns, [_mnt(20, 1, "/", 8), _mnt(21, 20, "/srv", 9)])
    q = new_queue()
    root = MountTarget(ns, 20, "", 8)
    lsm.refuse["watch_mount"] = errno.EACCES
    assert errno_of(secured.watch_mount, ALICE, root, q, 1) == errno.EACCES
    assert errno_of(secured.watch_mount, ALICE, root, None, 1) == errno.EINVAL  # the queue comes first
    assert lsm.of("watch_mount") == [("watch_mount", ALICE, 20, "")]
    del lsm.refuse["watch_mount"]
    secured.watch_mount(ALICE, root, q, 1)
    lsm.refuse["watch_sb"] = errno.EPERM
    assert errno_of(secured.watch_sb, ALICE, MountTarget(ns, 21, "", 9), q, 2) == errno.EPERM
    assert lsm.of("watch_sb") == [("watch_sb", ALICE, 9)]
    del lsm.refuse["watch_sb"]
    secured.watch_sb(ALICE, MountTarget(ns, 21, "", 9), q, 2)
    lsm.calls.clear()
    secured.attach_mounts(ns, [_mnt(30, 20, "/mnt", 10)])
    posts = lsm.of("post")
    assert [(p[1], p[2], p[3]) for p in posts] == [(ALICE, None, abi.WATCH_TYPE_MOUNT_NOTIFY)]
    secured.notify_sb_error(9, errno.EIO)
    assert lsm.of("post")[-1][1:4] == (ALICE, None, abi.WATCH_TYPE_SB_NOTIFY)
    lsm.refuse["post"] = errno.EACCES
    secured.umount_mounts(ns, [21])  # UNMOUNT refused; the superblock's removal (META) is not
    records = drain(q)
    assert len(records) == 24 + 24 + 16  # NEW_MOUNT, the sb error, the removal
    assert records[-16:] == removal_rec(9, tag=2)


# ---------------------------------------------------------------- a Python policy

def _load_example():
    spec = importlib.util.spec_from_file_location("lsm_refuse_krb", os.path.join(HERE, "lsm_refuse_krb.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RefuseKrb


def test_the_example_policy_refuses_watches_on_krb_keyrings_only() -> None:
    k = Kernel(clock=Clock(), seed=1, rcu_grace=0.0, lsm=_load_example()())
    krb = k.add_key(ALICE, "keyring", "_krb_ccache", b"", ses(k))
    plain = k.add_key(ALICE, "keyring", "work", b"", ses(k))
    user_krb = k.add_key(ALICE, "user", "_krb_not_a_ring", b"v", plain)
    q = new_queue()
    assert errno_of(k.watch_key, ALICE, krb, q, 1) == errno.EACCES
    k.watch_key(ALICE, plain, q, 2)
    k.watch_key(ALICE, user_krb, q, 3)
    assert k.get_security(ALICE, krb) == ""  # it labels nothing
    k.add_key(ALICE, "user", "x", b"v", plain)
    assert len(drain(q)) == 16
