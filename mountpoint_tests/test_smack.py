"""The security hooks end to end: a daemon with `--lsm smack`, programs under `wqfs run
--smack-label` (keyutils' keyctl, with CAP_MAC_OVERRIDE dropped so that Smack's rules apply to
them), the tree's callers labelled by uid (`--smack-label-map`), rules reloaded with `wqfs
smack-reload`; and a Python policy (`--lsm python:...`, lsm_refuse_krb.py).

Keys shared between two labels live in root's user keyring (@u), which every root program has.
Smack's check of every key operation (smack_key_permission) is not modelled: a label rules on
watches and deliveries only, so these programs may link into and update keys of other labels
without the rules a Smack kernel would also want for that.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import uuid
from typing import Iterator

import pytest

from helpers import LINKED, NOBODY, NOBODY_UID, ROOT, WAIT, Daemon, descendants, read_line, sh, stopped_after, wait_records
from test_run import wait_in_syscall

from wqfs.client import Queue

HERE = os.path.dirname(os.path.abspath(__file__))
# keyctl without CAP_MAC_OVERRIDE: root still, but Smack's rules bind it (smack_privileged_cred)
NO_OVERRIDE = ["setpriv", "--bounding-set=-mac_override", "--inh-caps=-mac_override"]


class SmackMount:
    """A daemon with --lsm smack -v, its rules file and label map (root is A, nobody is B)."""

    def __init__(self, tmp: str) -> None:
        self.rules = os.path.join(tmp, "rules")
        self.labels = os.path.join(tmp, "labels")
        with open(self.rules, "w") as f:
            f.write("")
        with open(self.labels, "w") as f:
            f.write(f"# uid label\n0 A\n{NOBODY_UID} B\n")
        self.daemon = Daemon("--lsm", "smack", "--smack-rules", self.rules, "--smack-label-map", self.labels, "-v")
        self.path = self.daemon.path

    def load(self, text: str) -> subprocess.CompletedProcess:
        """Write the rules file and `wqfs smack-reload` it."""
        with open(self.rules, "w") as f:
            f.write(text)
        return wqfs("smack-reload", self.path)

    def run(self, label: str, script: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """sh -c script under `wqfs run --smack-label label`, without CAP_MAC_OVERRIDE."""
        return subprocess.run(self.argv(label, script), capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL)

    def argv(self, label: str, script: str) -> list[str]:
        return [*NO_OVERRIDE, sys.executable, "-m", "wqfs", "run", "--mount", self.path, "--smack-label", label,
                "--", "sh", "-c", script]

    def new_key(self, label: str) -> int:
        """A user key in root's @u, made by a program labelled label."""
        name = f"k-{uuid.uuid4().hex[:10]}"
        result = self.run(label, f"keyctl add user {name} v @u")
        assert result.returncode == 0, result.stderr
        return int(result.stdout)


def wqfs(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wqfs", *argv], capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def smack(tmp_path_factory) -> Iterator[SmackMount]:
    m = SmackMount(str(tmp_path_factory.mktemp("smack")))
    with stopped_after(m.daemon):
        yield m


@pytest.fixture
def rules(smack: SmackMount) -> Iterator[SmackMount]:
    """The mount with no rules, and none left behind by the test."""
    assert smack.load("").returncode == 0
    yield smack
    assert smack.load("").returncode == 0


def start_watcher(m: SmackMount, label: str, key: int) -> subprocess.Popen:
    """`keyctl watch KEY` labelled label, returned once its watch is set (it sits in poll)."""
    proc = subprocess.Popen(m.argv(label, f"exec keyctl watch {key}"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for pid in descendants(proc.pid):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "keyctl":
                        wait_in_syscall(pid, ("7", "271"))
                        return proc
            except OSError:
                pass
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        time.sleep(0.02)
    raise AssertionError("keyctl watch never started")


def stop(proc: subprocess.Popen) -> str:
    """End a watcher; what it printed."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
    out, _ = proc.communicate(timeout=WAIT)
    return out.decode()


# ---------------------------------------------------------------- labels

def test_keys_carry_their_creators_label_in_keyctl_security_and_the_xattr(rules: SmackMount) -> None:
    key = rules.new_key("B")
    rules.load("A B r\n")  # what a Smack kernel's key_permission would ask too (not modelled)
    result = rules.run("A", f"keyctl security {key}")
    assert result.returncode == 0 and result.stdout == "B\n", result
    assert os.getxattr(f"{rules.path}/keys/{key}", "user.keyctl.security") == b"B"
    ring = os.path.join(rules.path, "@s", f"keyring:t-{uuid.uuid4().hex[:8]}")
    os.mkdir(ring)  # made through the tree by root: the label map's A
    try:
        assert os.getxattr(ring, "user.keyctl.security") == b"A"
        serial = int(os.getxattr(ring, "user.keyctl.serial"))
        os.setxattr(ring, "user.keyctl.perm", b"3f3f3f3f")
        result = sh(f"getfattr --only-values -n user.keyctl.security {rules.path}/keys/{serial}", nobody=True)
        assert result.returncode == 0 and result.stdout == "A", result
    finally:
        os.rmdir(ring)


# ---------------------------------------------------------------- watch_key

def test_a_watch_refused_with_eacces_is_allowed_after_a_rule_and_a_reload(rules: SmackMount) -> None:
    key = rules.new_key("B")
    refused = rules.run("A", f"keyctl watch {key}")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
    log = rules.daemon.log()
    assert (f'lsm=SMACK fn=smack_watch_key action=denied subject="A" object="B" requested=r pid=' in log
            and f'comm="keyctl" key_serial={key} key_desc=' in log), log[-2000:]
    reloaded = rules.load("A B r\n")
    assert reloaded.returncode == 0 and reloaded.stdout == f"wqfs: 1 rules from {rules.rules}\n", reloaded
    stop(start_watcher(rules, "A", key))  # set: it waits for records
    assert rules.run("C", f"keyctl watch {key}").returncode != 0  # C has no rule


def test_records_a_writer_may_not_write_to_the_watcher_never_arrive_the_removal_does(rules: SmackMount) -> None:
    key = rules.new_key("B")
    rules.load("A B r\n")  # A may watch B's key; B may not write to A
    watcher = start_watcher(rules, "A", key)
    try:
        assert rules.run("B", f"keyctl update {key} v2").returncode == 0  # refused copy: nothing
        assert rules.run("A", f"keyctl setperm {key} 0x3f3f0000").returncode == 0  # A's own: arrives
        assert read_line(watcher.stdout) == f"{key} attr\n"
        rules.load("A B r\nB A w\n")
        assert rules.run("B", f"keyctl update {key} v3").returncode == 0
        assert read_line(watcher.stdout) == f"{key} upd\n"  # the first update never came
        rules.load("A B r\n")
        assert rules.run("B", f"keyctl revoke {key}; keyctl unlink {key} @u").returncode == 0
        assert read_line(watcher.stdout, timeout=WAIT) == f"{key} gc\n"  # REVOKED withheld, the removal comes
    finally:
        out = stop(watcher)
    assert "rev" not in out
    assert 'fn=smack_post_notification action=denied subject="B" object="A" requested=w' in rules.daemon.log()


# ---------------------------------------------------------------- the tree's callers

def test_through_the_tree_another_labels_writes_are_withheld_while_loss_and_removal_come(rules: SmackMount) -> None:
    """root (A by the map) watches a keyring of its own; nobody (B) links keys into it: none of
    its records arrive, root's own fill the queue, the loss record comes, and the removal."""
    ring = os.path.join(rules.path, "@s", f"keyring:t-{uuid.uuid4().hex[:8]}")
    os.mkdir(ring)
    try:
        os.setxattr(ring, "user.keyctl.perm", b"3f3f3f3f")
        serial = int(os.getxattr(ring, "user.keyctl.serial"))
        with Queue(rules.path, size=1, nonblock=True) as q:  # 32 records
            q.watch(serial, 1)
            made = sh(f"for i in 1 2 3; do echo v > {rules.path}/keys/{serial}/user:nobody$i || exit 1; done",
                      nobody=True)
            assert made.returncode == 0, made.stderr
            assert wait_records(q, 1, timeout=1) == []
            for i in range(40):
                with open(os.path.join(ring, f"user:root{i}"), "w") as f:
                    f.write("v")
            got = wait_records(q, 33)
            assert len(got) == 33 and got[-1] == ("loss",) and all(r[0] == "key" and r[1] == LINKED for r in got[:-1])
            assert os.getxattr(os.path.join(ring, "user:nobody1"), "user.keyctl.security") == b"B"
            refused = sh(f"cat {rules.path}/events/{serial}", nobody=True, timeout=10)  # B watching A: EACCES
            assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
            q.unwatch(serial)
            assert wait_records(q, 1) == [("removal", serial, 1)]
    finally:
        os.rmdir(ring)


# ---------------------------------------------------------------- rules files

def test_a_bad_rules_file_is_refused_with_its_line_and_nothing_of_it_is_loaded(rules: SmackMount) -> None:
    key = rules.new_key("B")
    assert rules.load("A B r\n").returncode == 0
    bad = rules.load("C B r\nA B -\n\nA B/x r\n")
    assert bad.returncode == 1 and f"{rules.rules}, line 4: the object 'B/x'" in bad.stderr, bad
    assert "the old rules stay" in bad.stderr
    assert rules.run("C", f"keyctl watch {key}").returncode != 0  # line 1 was not taken
    watcher = start_watcher(rules, "A", key)  # and "A B -" neither: A still may
    stop(watcher)


def test_a_mount_with_a_bad_rules_file_is_refused_with_the_line(tmp_path) -> None:
    rules = tmp_path / "rules"
    rules.write_text("A B r\nA B rwq\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = wqfs("mount", "--lsm", "smack", "--smack-rules", str(rules), str(mnt))
    assert result.returncode == 1 and f"{rules}, line 2: 'q' is not an access letter" in result.stderr, result
    labels = tmp_path / "labels"
    labels.write_text("0 A\nnosuchuser-x B\n")
    result = wqfs("mount", "--lsm", "smack", "--smack-label-map", str(labels), str(mnt))
    assert result.returncode == 1 and f"{labels}, line 2: no user 'nosuchuser-x'" in result.stderr, result
    result = wqfs("mount", "--smack-rules", str(rules), str(mnt))
    assert result.returncode == 1 and "need --lsm smack" in result.stderr


def test_labels_a_task_may_not_have_and_a_daemon_without_a_module(rules: SmackMount, mnt: str) -> None:
    for label in ("*", "@", "a/b"):
        result = rules.run(label, "true")
        assert result.returncode == 1 and "refused the program" in result.stderr, result
    result = subprocess.run([sys.executable, "-m", "wqfs", "run", "--mount", mnt, "--smack-label", "A", "--", "true"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1 and "runs no security module" in result.stderr, result
    result = wqfs("smack-reload", mnt)
    assert result.returncode == 1 and "runs no security module" in result.stderr, result


def test_only_the_daemons_user_or_cap_mac_admin_may_choose_a_label(smack: SmackMount) -> None:
    argv = [sys.executable, "-m", "wqfs", "run", "--mount", smack.path, "--smack-label", "A", "--", "true"]
    result = subprocess.run(NOBODY + argv, capture_output=True, text=True, timeout=60, cwd=ROOT, start_new_session=True)
    assert result.returncode == 1 and "CAP_MAC_ADMIN" in result.stderr, result
    mine = subprocess.run(NOBODY + argv[:6] + ["--", "true"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          start_new_session=True)
    assert mine.returncode == 0, mine  # nobody's programs run all the same, labelled by the map (B)


def test_cap_mac_admin_lets_another_user_choose_a_label_but_only_where_it_may_run(smack: SmackMount,
                                                                                     tmp_path) -> None:
    """CAP_MAC_ADMIN (CapEff, as the caller table reads it) lets nobody choose a label; it is one
    more condition, never instead of the others: a daemon without --allow-other still refuses
    nobody's programs, labelled or not."""
    admin = NOBODY + ["--inh-caps=+mac_admin", "--ambient-caps=+mac_admin"]
    argv = ["wqfs", "run", "--smack-label", "A", "--", "true"]
    result = subprocess.run(admin + [sys.executable, "-m", *argv[:2], "--mount", smack.path, *argv[2:]],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, start_new_session=True)
    assert result.returncode == 0, result
    rules = tmp_path / "rules"
    rules.write_text("")
    with stopped_after(Daemon("--lsm", "smack", "--smack-rules", str(rules), allow_other=False)) as own:
        result = subprocess.run(admin + [sys.executable, "-m", *argv[:2], "--mount", own.path, *argv[2:]],
                                capture_output=True, text=True, timeout=60, cwd=ROOT, start_new_session=True)
    assert result.returncode == 1 and "--allow-other" in result.stderr, result


# ---------------------------------------------------------------- a Python policy

@pytest.fixture(scope="module")
def krb_daemon() -> Iterator[Daemon]:
    with stopped_after(Daemon("--lsm", f"python:{os.path.join(HERE, 'lsm_refuse_krb.py')}:RefuseKrb")) as d:
        yield d


def test_a_python_policy_refuses_watches_on_krb_keyrings(krb_daemon: Daemon) -> None:
    m = krb_daemon.path
    krb = os.path.join(m, "@s", f"keyring:_krb_{uuid.uuid4().hex[:8]}")
    plain = os.path.join(m, "@s", f"keyring:t-{uuid.uuid4().hex[:8]}")
    os.mkdir(krb)
    os.mkdir(plain)
    try:
        with Queue(m, size=8, nonblock=True) as q:
            with pytest.raises(PermissionError):
                q.watch(int(os.getxattr(krb, "user.keyctl.serial")), 1)
            q.watch(int(os.getxattr(plain, "user.keyctl.serial")), 2)
        with pytest.raises(OSError) as info:
            open(os.path.join(m, "events", os.getxattr(krb, "user.keyctl.serial").decode()), "rb").close()
        assert info.value.errno == errno.EACCES
        result = subprocess.run([sys.executable, "-m", "wqfs", "run", "--mount", m, "--", "sh", "-c",
                                 f"keyctl watch {int(os.getxattr(krb, 'user.keyctl.serial'))}"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT, start_new_session=True)
        assert result.returncode != 0 and "Permission denied" in result.stderr, result
        assert os.getxattr(krb, "user.keyctl.security") == b""  # it labels nothing
    finally:
        os.rmdir(krb)
        os.rmdir(plain)


def test_a_bad_policy_is_refused_in_one_line(tmp_path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for spec, says in ((f"python:{HERE}/lsm_refuse_krb.py:NoSuchClass", "not a subclass of wqfs.kernel.LSM"),
                       ("python:no_such_module_x:C", "cannot load no_such_module_x"),
                       ("python:only-one-part", "python:MODULE:CLASS"),
                       ("selinux", "the modules are smack and python:MODULE:CLASS")):
        result = wqfs("mount", "--lsm", spec, str(mnt))
        assert result.returncode == 1 and says in result.stderr, (spec, result)
