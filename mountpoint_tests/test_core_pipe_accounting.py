"""Unit tests of the pipe-buffer accounting of notification pipes (issue item 4): alloc_pipe_info's
16 or 2 pages and ENFILE, watch_queue_set_size's EPERM, free_pipe_info's refund, the privileged
bypass, with the fs.pipe-* sysctls injected instead of read from the host."""
from __future__ import annotations

import dataclasses
import errno
import pytest

import corelib
from corelib import PipeAccounting, PipeLimits, errno_of, pipe_accounting, read_pipe_limits

from wqfs import abi
from wqfs.kernel import Cred, Kernel, WatchQueue

# corelib's callers as a front that looked at CapEff sees them: with no capabilities at all
ALICE = dataclasses.replace(corelib.ALICE, caps=0)
BOB = dataclasses.replace(corelib.BOB, caps=0)
RESOURCE = Cred(1000, 1000, caps=1 << abi.CAP_SYS_RESOURCE)  # alice's uid, with a capability
ADMIN = Cred(1000, 1000, caps=1 << abi.CAP_SYS_ADMIN)
ROOT_NO_CAPS = Cred(0, 0, caps=0)  # uid 0 without capabilities is an ordinary user here
ROOT_UNKNOWN = Cred(0, 0)  # a front that did not look: uid 0 counts as privileged


class Limits:
    """A settable stand-in for the sysctls, called at each use like the live reader."""

    def __init__(self, **values: int) -> None:
        self.value = PipeLimits(**values)
        self.calls = 0

    def __call__(self) -> PipeLimits:
        self.calls += 1
        return self.value

    def set(self, **values: int) -> None:
        self.value = PipeLimits(**values)


def make(**values: int) -> tuple[Kernel, Limits]:
    limits = Limits(**values)
    return Kernel(pipe_limits=limits), limits


def opened(kernel: Kernel, cred: Cred, count: int) -> list[WatchQueue]:
    return [kernel.new_queue(cred) for _ in range(count)]


# --------------------------------------------------------------- defaults

def test_a_new_queue_charges_16_pages_and_set_size_recharges():
    kernel, _ = make()
    q = kernel.new_queue(ALICE)
    assert (q.max_usage, q.nr_accounted, q.pipe_user) == (16, 16, 1000)
    assert q.pipe_size() == 16 * 4096
    assert kernel.pipes.pipe_bufs(1000) == 16
    q.set_size(33)  # two pages
    assert (q.capacity, q.max_usage, q.nr_accounted) == (64, 2, 2)
    assert q.pipe_size() == 8192 and kernel.pipes.pipe_bufs(1000) == 2


@pytest.mark.parametrize("notes, pages", [(1, 1), (32, 1), (33, 2), (100, 4), (256, 8), (512, 16)])
def test_pipe_size_is_max_usage_pages(notes, pages):
    kernel, _ = make()
    q = kernel.new_queue(ALICE)
    q.set_size(notes)
    assert q.pipe_size() == pages * abi.PAGE_SIZE == q.capacity // 32 * abi.PAGE_SIZE
    assert kernel.pipes.pipe_bufs(1000) == pages


def test_an_uncharged_queue_keeps_its_old_sizes():
    q = WatchQueue()
    assert q.pipe_size() == 65536 and q.pipe_user is None
    q.set_size(100)
    assert q.pipe_size() == 16384


def test_release_refunds_exactly_once():
    kernel, _ = make()
    q1, q2 = opened(kernel, ALICE, 2)
    q1.set_size(256)
    assert kernel.pipes.pipe_bufs(1000) == 8 + 16
    kernel.release_queue(q1)
    assert kernel.pipes.pipe_bufs(1000) == 16
    kernel.release_queue(q1)  # a second release (both ends, forget_pipe) gives nothing back
    assert kernel.pipes.pipe_bufs(1000) == 16 and q1.pipe_user is None
    kernel.release_queue(q2)
    assert kernel.pipes.pipe_bufs(1000) == 0


def test_accounting_is_per_uid():
    kernel, _ = make(user_pages_soft=32)
    opened(kernel, ALICE, 3)
    assert kernel.pipes.pipe_bufs(1000) == 16 + 16 + 2
    assert kernel.new_queue(BOB).max_usage == 16  # alice's pages are not bob's
    assert kernel.pipes.pipe_bufs(1001) == 16


def test_einval_and_ebusy_come_before_the_accounting():
    kernel, _ = make(user_pages_soft=16)
    q = kernel.new_queue(ALICE)
    assert errno_of(q.set_size, 513) == errno.EINVAL
    assert errno_of(q.set_size, 0) == errno.EINVAL
    assert kernel.pipes.pipe_bufs(1000) == 16
    q.set_size(1)
    assert errno_of(q.set_size, 9999) == errno.EBUSY
    assert kernel.pipes.pipe_bufs(1000) == 1 and q.nr_accounted == 1


# ------------------------------------------------------------- soft limit

def test_soft_limit_gives_two_page_pipes():
    kernel, _ = make(user_pages_soft=64)
    qs = opened(kernel, ALICE, 6)
    assert [q.max_usage for q in qs] == [16, 16, 16, 16, 2, 2]  # 64 is not over 64; 80 is
    assert [q.pipe_size() for q in qs[3:]] == [65536, 8192, 8192]
    assert kernel.pipes.pipe_bufs(1000) == 64 + 2 + 2


def test_soft_limit_eperm_for_more_than_64_notes_on_a_two_page_pipe():
    kernel, _ = make(user_pages_soft=64)
    *full, small = opened(kernel, ALICE, 5)
    assert errno_of(small.set_size, 65) == errno.EPERM  # 3 pages > max_usage 2, and over the limit
    assert errno_of(small.set_size, 512) == errno.EPERM
    # EPERM puts the charge back, and the size is still unset
    assert kernel.pipes.pipe_bufs(1000) == 66 and small.nr_accounted == 2 and small.capacity == 0
    assert small.pipe_size() == 8192
    small.set_size(64)  # no growth past max_usage: allowed over the limit
    assert (small.capacity, small.max_usage, kernel.pipes.pipe_bufs(1000)) == (64, 2, 66)
    full[0].set_size(512)  # 16 pages is no growth for a 16-page pipe
    assert kernel.pipes.pipe_bufs(1000) == 66


def test_soft_limit_small_sizes_still_work_and_shrink_the_charge():
    kernel, _ = make(user_pages_soft=64)
    qs = opened(kernel, ALICE, 5)
    qs[4].set_size(32)
    assert kernel.pipes.pipe_bufs(1000) == 65 and qs[4].pipe_size() == 4096


def test_growth_is_allowed_once_under_the_soft_limit_again():
    kernel, _ = make(user_pages_soft=64)
    *full, small = opened(kernel, ALICE, 5)
    assert errno_of(small.set_size, 512) == errno.EPERM
    kernel.release_queue(full[0])
    kernel.release_queue(full[1])  # 34 pages now: 34 - 2 + 16 = 48, under 64
    small.set_size(512)
    assert small.max_usage == 16 and kernel.pipes.pipe_bufs(1000) == 48


def test_limits_are_read_at_each_use():
    kernel, limits = make()
    q1, q2 = opened(kernel, ALICE, 2)
    assert q2.max_usage == 16
    limits.set(user_pages_soft=16)
    q3 = kernel.new_queue(ALICE)
    assert q3.max_usage == 2
    assert errno_of(q3.set_size, 100) == errno.EPERM
    limits.set()
    q3.set_size(100)
    assert q3.max_usage == 4 and limits.calls == 5  # 3 pipe2s, 2 SET_SIZEs


# --------------------------------------------------------------- privilege

@pytest.mark.parametrize("cred", [RESOURCE, ADMIN, ROOT_UNKNOWN], ids=["CAP_SYS_RESOURCE", "CAP_SYS_ADMIN", "uid0"])
def test_privileged_callers_are_not_limited(cred):
    kernel, _ = make(user_pages_soft=32, user_pages_hard=40)
    qs = opened(kernel, cred, 8)
    assert all(q.max_usage == 16 for q in qs)
    assert kernel.pipes.pipe_bufs(cred.uid) == 128  # still counted, only not refused
    for q in qs:
        q.set_size(512)


def test_uid_0_without_capabilities_is_limited():
    kernel, _ = make(user_pages_soft=32, user_pages_hard=40)
    assert [q.max_usage for q in opened(kernel, ROOT_NO_CAPS, 6)] == [16, 16, 2, 2, 2, 2]
    assert errno_of(kernel.new_queue, ROOT_NO_CAPS) == errno.ENFILE  # 42 > 40


def test_the_callers_capabilities_count_and_the_creators_user_pays():
    kernel, _ = make(user_pages_soft=32)
    *_, small = opened(kernel, ALICE, 3)
    assert errno_of(small.set_size, 512, ALICE) == errno.EPERM
    small.set_size(512, ADMIN)  # sized by a privileged caller: allowed, charged to the pipe's user
    assert kernel.pipes.pipe_bufs(1000) == 48 and small.max_usage == 16


def test_set_size_without_a_cred_goes_by_the_creator():
    kernel, _ = make(user_pages_soft=32)
    *_, small = opened(kernel, ALICE, 3)
    assert errno_of(small.set_size, 512) == errno.EPERM
    *_, privileged = opened(kernel, ADMIN, 3)
    privileged.set_size(512)


# -------------------------------------------------------------- hard limit

def test_hard_limit_refuses_new_pipes_with_enfile():
    kernel, _ = make(user_pages_soft=0, user_pages_hard=40)
    opened(kernel, ALICE, 2)
    assert errno_of(kernel.new_queue, ALICE) == errno.ENFILE  # 48 > 40
    assert kernel.pipes.pipe_bufs(1000) == 32  # nothing stays charged for the refused pipe


def test_hard_limit_counts_the_two_page_fallback():
    kernel, _ = make(user_pages_soft=32, user_pages_hard=36)
    assert [q.max_usage for q in opened(kernel, ALICE, 4)] == [16, 16, 2, 2]  # 34, then 36: not over
    assert errno_of(kernel.new_queue, ALICE) == errno.ENFILE  # 38 > 36
    assert kernel.pipes.pipe_bufs(1000) == 36


def test_release_makes_room_under_the_hard_limit():
    kernel, _ = make(user_pages_soft=0, user_pages_hard=32)
    q1, _ = opened(kernel, ALICE, 2)
    assert errno_of(kernel.new_queue, ALICE) == errno.ENFILE
    kernel.release_queue(q1)
    assert kernel.new_queue(ALICE).max_usage == 16


def test_hard_limit_eperm_on_growth():
    # pipe-max-size of 2 pages makes small pipes without the soft limit; the hard one refuses growth
    kernel, _ = make(max_size=8192, user_pages_soft=0, user_pages_hard=20)
    q1 = kernel.new_queue(ALICE)
    assert q1.max_usage == 2 and q1.pipe_size() == 8192
    q1.set_size(512)  # 16 pages, not over 20
    q2 = kernel.new_queue(ALICE)
    assert errno_of(q2.set_size, 512) == errno.EPERM  # 16 + 16 > 20
    assert kernel.pipes.pipe_bufs(1000) == 18
    q2.set_size(64)


# ------------------------------------------------------------ pipe-max-size

@pytest.mark.parametrize("cred, pages", [(ALICE, 2), (ADMIN, 2), (RESOURCE, 16)])
def test_pipe_max_size_caps_new_pipes_unless_cap_sys_resource(cred, pages):
    kernel, _ = make(max_size=8192)
    assert kernel.new_queue(cred).max_usage == pages


# --------------------------------------------------------- sysctls and creds

def test_the_live_limits_are_the_hosts_sysctls():
    def sysctl(name: str) -> int:
        with open(f"/proc/sys/fs/{name}") as f:
            return int(f.read())
    assert read_pipe_limits() == PipeLimits(sysctl("pipe-max-size"), sysctl("pipe-user-pages-soft"),
                                            sysctl("pipe-user-pages-hard"))
    accounting = Kernel().pipes
    assert isinstance(accounting, PipeAccounting) and accounting.limits is read_pipe_limits


def test_unreadable_sysctls_give_the_kernels_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(pipe_accounting, "SYSCTL_DIR", str(tmp_path))
    (tmp_path / "pipe-user-pages-soft").write_text("128\n")
    (tmp_path / "pipe-user-pages-hard").write_text("junk\n")
    assert read_pipe_limits() == PipeLimits(1048576, 128, 0)


def test_cred_capable_and_hashable():
    assert ROOT_UNKNOWN.capable(abi.CAP_SYS_ADMIN) and not ROOT_NO_CAPS.capable(abi.CAP_SYS_ADMIN)
    assert not Cred(1000, 1000).capable(abi.CAP_SYS_RESOURCE)
    assert RESOURCE.capable(abi.CAP_SYS_RESOURCE) and not RESOURCE.capable(abi.CAP_SYS_ADMIN)
    cache: dict[Cred, int] = {ALICE: 1, RESOURCE: 2, Cred(1000, 1000, caps=1 << 24): 3}
    assert len(cache) == 2


def test_many_queues_are_bounded_by_the_default_soft_limit():
    """The issue's case: 10,000 queues of 512 notes. With the default 16384 soft pages, only
    the first 1024 pipes (16 pages each) may hold 512 notes; the rest get 2 pages and EPERM."""
    kernel, _ = make()
    sized = refused = 0
    for _ in range(10000):
        q = kernel.new_queue(ALICE)
        try:
            q.set_size(512)
            sized += 1
        except Exception as error:
            assert getattr(error, "errno", None) == errno.EPERM
            refused += 1
            q.set_size(64)
    assert (sized, refused) == (1024, 8976)
    assert kernel.pipes.pipe_bufs(1000) == 1024 * 16 + 8976 * 2

