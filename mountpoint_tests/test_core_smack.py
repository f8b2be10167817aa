"""security/smack/ in the core alone: smk_access's every rule (smack_access.c), the load2 rules
file parsed strictly (smackfs.c), and the key and notification hooks of smack_lsm.c on a
Kernel: a key's label, a watch refused then allowed after a rule, records a writer may not
write to the watcher's label withheld while META records (removal, loss) still come, the
audit line, a reload."""
from __future__ import annotations

import errno

import pytest

from corelib import LOSS, Clock, drain, errno_of, key_rec, new_queue, removal_rec, ses
from wqfs import abi
from wqfs.kernel import Cred, Kernel, KernelError, Smack, check_task_label, parse_load2
from wqfs.kernel.security.smack.smack_access import (MAY_APPEND, MAY_EXEC, MAY_LOCK, MAY_READ, MAY_TRANSMUTE,
                                                     MAY_WRITE, smk_access)

R, W, X, A, T, L = MAY_READ, MAY_WRITE, MAY_EXEC, MAY_APPEND, MAY_TRANSMUTE, MAY_LOCK
NO_CAPS = 0  # CapEff without CAP_MAC_OVERRIDE: Smack's rules apply to the caller

# Two callers of the same uid, one session: only their labels differ.
ALICE_A = Cred(1000, 1000, thread="ta", process="pa", session="s", caps=NO_CAPS, label="A")
ALICE_B = Cred(1000, 1000, thread="tb", process="pb", session="s", caps=NO_CAPS, label="B")
ALICE_A_OVERRIDE = Cred(1000, 1000, thread="tc", process="pc", session="s", caps=1 << 32, label="A")


def ok(subject: str, object_: str, request: int, rules=None) -> bool:
    return smk_access(subject, object_, request, rules or {}) == 0


# ---------------------------------------------------------------- smk_access

@pytest.mark.parametrize("request_", [R, W, X, A, R | W, L, 0])
def test_a_star_subject_gets_nothing_not_even_a_star_object(request_: int) -> None:
    assert not ok("*", "*", request_) and not ok("*", "_", request_) and not ok("*", "@", request_)
    assert not ok("*", "X", request_, {("*", "X"): R | W | X | A})


@pytest.mark.parametrize("request_", [R, W, X, A, R | W | X | A | T | L])
def test_a_web_object_or_subject_gets_everything(request_: int) -> None:
    assert ok("A", "@", request_) and ok("@", "A", request_) and ok("@", "*", request_)


@pytest.mark.parametrize("request_", [R, W, X, A, R | W | X | A | T | L])
def test_a_star_object_may_be_accessed_by_anyone_but_star(request_: int) -> None:
    assert ok("A", "*", request_) and ok("_", "*", request_) and ok("^", "*", request_)


@pytest.mark.parametrize("request_", [R, W, X, A, R | W | X | A | T | L])
def test_the_same_label_gets_everything(request_: int) -> None:
    assert ok("A", "A", request_) and ok("_", "_", request_)


def test_a_floor_object_is_readable_and_lockable_by_anyone_not_writable() -> None:
    for request_ in (R, X, R | X, L):
        assert ok("A", "_", request_)
    for request_ in (W, A, R | W, R | L, T):
        assert not ok("A", "_", request_)
    assert ok("A", "_", W, {("A", "_"): W})  # an explicit rule grants the rest


def test_a_hat_subject_reads_and_locks_anything_writes_nothing() -> None:
    for request_ in (R, X, R | X, L):
        assert ok("^", "A", request_)
    for request_ in (W, A, R | W):
        assert not ok("^", "A", request_)
    assert not ok("A", "^", R)  # a hat object is no floor


def test_beyond_the_builtins_an_explicit_rule_must_grant_every_bit() -> None:
    rules = {("A", "B"): R | W, ("A", "C"): 0, ("B", "A"): R}
    assert ok("A", "B", R, rules) and ok("A", "B", W, rules) and ok("A", "B", R | W, rules)
    assert not ok("A", "B", X, rules) and not ok("A", "B", R | X, rules)
    assert ok("A", "B", L, rules)  # write implies lock
    assert not ok("B", "A", L, rules)  # read does not
    assert not ok("A", "C", R, rules)  # a rule of "-": nothing
    assert not ok("A", "D", R, rules)  # no rule: nothing
    assert not ok("B", "A", W, rules)  # rules are one way
    assert not ok("_", "A", R, rules)  # the floor subject has no privilege


# ---------------------------------------------------------------- load2 rules

def test_a_rules_file_in_load2_format() -> None:
    text = "A B rw\nB A r\n\n  C\tD  rwxatlb \nA B -r\nE F RWX\nG H -\n"
    assert parse_load2(text) == {("A", "B"): R, ("B", "A"): R, ("C", "D"): R | W | X | A | T | L | 0x4000,
                                 ("E", "F"): R | W | X, ("G", "H"): 0}


@pytest.mark.parametrize("line, why", [
    ("A B", "not 2 field"),
    ("A B rw extra", "not 4 field"),
    ("A B rwz", "'z' is not an access letter"),
    ("A/x B r", "the subject 'A/x'"),
    ("A B\"q r", "the object"),
    ("-A B r", "may not start with '-'"),
    ("A " + "x" * 256 + " r", "at most 255"),
    ("A caf\u00e9 r", "the object"),
])
def test_a_bad_line_is_refused_with_its_number(line: str, why: str) -> None:
    text = "A B r\n\nB C w\n" + line + "\nC D r\n"
    with pytest.raises(KernelError) as info:
        parse_load2(text, "rules.txt")
    assert info.value.errno == errno.EINVAL
    assert "rules.txt, line 4: " in info.value.detail and why in info.value.detail, info.value.detail


def test_a_label_of_255_characters_is_one() -> None:
    assert parse_load2("A " + "x" * 255 + " r") == {("A", "x" * 255): R}


def test_a_bad_file_loads_nothing_and_the_old_rules_stay() -> None:
    smack = Smack(parse_load2("A B r\n"))
    with pytest.raises(KernelError):
        smack.load_rules("B C w\nnonsense\n")
    assert smack.rules == {("A", "B"): R}
    assert smack.load_rules("X Y w\n") == 1
    assert smack.rules == {("X", "Y"): W}  # replaced whole


def test_task_labels_are_valid_labels_never_star_or_web() -> None:
    assert check_task_label("A") == "A" and check_task_label("^") == "^" and check_task_label("_") == "_"
    for label, code in (("*", errno.EPERM), ("@", errno.EPERM), ("", errno.EINVAL), ("-a", errno.EINVAL),
                        ("a b", errno.EINVAL), ("a/b", errno.EINVAL), ("x" * 256, errno.EINVAL)):
        assert errno_of(check_task_label, label) == code, label


# ---------------------------------------------------------------- the hooks on a Kernel

@pytest.fixture
def audit() -> list:
    return []


@pytest.fixture
def smack(audit: list) -> Smack:
    return Smack(audit=lambda head, cred, tail: audit.append((head, cred, tail)))


@pytest.fixture
def k(smack: Smack) -> Kernel:
    return Kernel(clock=Clock(), seed=12345, rcu_grace=0.0, lsm=smack)


def _shared_ring(k: Kernel, cred: Cred, name: str) -> int:
    """A keyring of cred's in the shared session keyring, that both callers may use."""
    ring = k.add_key(cred, "keyring", name, b"", ses(k, cred))
    k.setperm(cred, ring, 0x3f3f3f3f)
    return ring


def test_a_key_gets_its_creators_label_and_get_security_shows_it(k: Kernel, smack: Smack) -> None:
    # what a Smack kernel's smack_key_permission would also ask (not modelled: see smack_lsm.py)
    smack.load_rules("A B r\nB A rw\n")
    ring = _shared_ring(k, ALICE_A, "ra")
    key = k.add_key(ALICE_B, "user", "kb", b"v", ring)
    assert k.get_security(ALICE_A, ring) == "A"
    assert k.get_security(ALICE_A, key) == "B"
    assert k.get_security(ALICE_B, ses(k, ALICE_A)) == "A"  # the session keyring: its creator's
    floor = Cred(1000, 1000, thread="tf", process="pf", session="s", caps=NO_CAPS)
    assert k.get_security(floor, k.add_key(floor, "user", "kf", b"v", ring)) == "_"  # no label: the floor


def test_a_watch_is_refused_eacces_then_allowed_after_a_rule(k: Kernel, smack: Smack, audit: list) -> None:
    ring = _shared_ring(k, ALICE_A, "ra")
    q = drainable()
    assert errno_of(k.watch_key, ALICE_B, ring, q, 1) == errno.EACCES  # B may not read A
    assert q.statistics().watches == 0
    head, cred, tail = audit[-1]
    assert head == 'lsm=SMACK fn=smack_watch_key action=denied subject="B" object="A" requested=r'
    assert cred == ALICE_B and tail == f' key_serial={ring} key_desc="ra"'
    k.watch_key(ALICE_A, ring, q, 2)  # the same label: always
    smack.set_rule("B A r")
    k.watch_key(ALICE_B, ring, drainable(), 1)
    smack.load_rules("")  # the rule gone: refused again
    assert errno_of(k.watch_key, ALICE_B, ring, drainable(), 1) == errno.EACCES


def test_mac_override_bypasses_and_an_unlabelled_key_is_allowed(k: Kernel) -> None:
    ring = _shared_ring(k, ALICE_B, "rb")
    k.watch_key(ALICE_A_OVERRIDE, ring, drainable(), 1)
    root = Cred(0, 0, thread="tr", process="pr", session="s", label="A")  # caps unknown: uid 0 has them
    k.watch_key(root, ring, drainable(), 1)
    assert errno_of(k.watch_key, ALICE_A, ring, drainable(), 1) == errno.EACCES
    k.keys[ring].security = None  # as a key made before Smack labelled anything
    k.watch_key(ALICE_A, ring, drainable(), 1)


def test_records_a_writer_may_not_write_to_the_watcher_never_arrive_meta_ones_do(k: Kernel, smack: Smack,
                                                                               audit: list) -> None:
    smack.set_rule("A B rw")  # A may watch B's keyring, and link keys into it
    ring = _shared_ring(k, ALICE_B, "rb")
    q = drainable(1)  # 32 records
    k.watch_key(ALICE_A, ring, q, 1)
    key_b = k.add_key(ALICE_B, "user", "kb", b"v", ring)  # B writes: B -> A w, no rule
    assert drain(q) == b""
    head, cred, tail = audit[-1]
    assert head == 'lsm=SMACK fn=smack_post_notification action=denied subject="B" object="A" requested=w'
    assert cred == ALICE_B and tail == ""
    key_a = k.add_key(ALICE_A, "user", "ka", b"v", ring)  # A writes: the same label
    assert drain(q) == key_rec(abi.NOTIFY_KEY_LINKED, ring, key_a, tag=1)
    k.watch_key(ALICE_A, key_a, q, 2)
    for i in range(40):  # A overfills the queue: 32 records, then the loss record
        k.update(ALICE_A, key_a, b"%d" % i)
    k.unlink(ALICE_B, key_b, ring)  # refused: neither queued nor lost
    got = drain(q)
    assert len(got) == 32 * 16 + 8 and got.endswith(LOSS) and q.statistics().lost == 8
    smack.set_rule("B A w")  # now B may write to A: to A's key, and to A's queue
    k.update(ALICE_B, key_a, b"now allowed")
    assert drain(q) == key_rec(abi.NOTIFY_KEY_UPDATED, key_a, 0, tag=2)
    smack.load_rules("A B rw")  # and now not again
    k.revoke(ALICE_B, ring)  # REVOKED withheld; the keyring lets go of key_a, which is freed
    k.unlink(ALICE_A, ring, ses(k, ALICE_A))
    k.collect()
    got = drain(q)
    assert sorted(got[i:i + 16] for i in range(0, len(got), 16)) == sorted([removal_rec(ring, tag=1),
                                                                            removal_rec(key_a, tag=2)])


def test_a_post_with_no_generator_passes(k: Kernel, smack: Smack) -> None:
    from wqfs.kernel import MountInfo, MountTarget
    ns = ("ns", 1)
    k.mount_resync(ns, [MountInfo(20, 1, 8, "/", "/", "rw", "tmpfs", "none", "rw")])
    q = drainable()
    k.watch_mount(ALICE_A, MountTarget(ns, 20, "", 8), q, 1)  # Smack has no watch_mount hook
    k.attach_mounts(ns, [MountInfo(30, 20, 10, "/", "/mnt", "rw", "tmpfs", "none", "rw")])
    assert len(drain(q)) == 24  # the host's mount: no cred, as smack_post_notification lets NULL through


def test_hat_and_floor_labels_in_the_hooks(k: Kernel) -> None:
    """Watching needs read: a hat watcher reads any key, anyone reads a floor key. Posting needs
    write, which neither gives."""
    hat = Cred(1000, 1000, thread="th", process="ph", session="s", caps=NO_CAPS, label="^")
    floor = Cred(1000, 1000, thread="tf", process="pf", session="s", caps=NO_CAPS, label="_")
    ring_a = _shared_ring(k, ALICE_A, "ra")
    ring_f = _shared_ring(k, floor, "rf")
    qh, qa = drainable(), drainable()
    k.watch_key(hat, ring_a, qh, 1)
    k.watch_key(ALICE_A, ring_f, qa, 1)
    k.add_key(ALICE_A, "user", "x", b"v", ring_a)  # A -> ^ w: no
    k.add_key(floor, "user", "y", b"v", ring_f)  # _ -> A w: no
    assert drain(qh) == b"" and drain(qa) == b""


# ---------------------------------------------------------------- helpers

def drainable(size: int = 256):
    return new_queue(size)


