"""The request-key upcall: keyutils' real /sbin/request-key, run by the daemon under its own
syscall front with a rule of /etc/request-key.d/ that each test writes (and removes, whatever
happens), for keyutils' real `keyctl request2` under `wqfs run`.

What the kernel does, checked on Debian's 6.1 under qemu with a /sbin/request-key of our own
(the facts these tests hold wqfs to): argv `create KEY UID GID THREAD PROCESS SESSION`, the
environment HOME=/ and PATH, uid 0 and no groups, a session keyring "_req.KEY" holding the
".request_key_auth" token (described `.request_key_auth;UID;GID;1b010000;KEY-IN-HEX`), readable
as @a once assumed (the callout information); the requester's keyrings possessed through the
authority; a key left under construction negated and the requester answered ENOKEY; a
rejection's error for the requester; the destination keyring's LINKED record as the key is
made, and again when the helper links it there; a watch on a key under construction waiting
for it (so that no watcher ever gets that key's INSTANTIATED record).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Iterator, Optional

import pytest

from helpers import LINKED, NOBODY, NOBODY_UID, WAIT, Daemon, key, read_line, wait_records

from wqfs.syscalls import upcall

RULES_DIR = "/etc/request-key.d"


def run_argv(mnt: str, *argv: str, nobody: bool = False, new_session: bool = True) -> list[str]:
    """`wqfs run --new-session` (a session keyring of the program's own, as a login's), as nobody if
    told; without new_session, the program has no session keyring: it searches the user-session
    keyring (and through it the user keyring), as every such program of its uid does."""
    return (NOBODY if nobody else []) + [sys.executable, "-m", "wqfs", "run", *(["--new-session"] if new_session else []),
                                         "--mount", mnt, "--", *argv]


def wqfs_run(mnt: str, script: str, *args: str, nobody: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(run_argv(mnt, "sh", "-c", script, "sh", *args, nobody=nobody), capture_output=True,
                          text=True, timeout=timeout, cwd="/", start_new_session=True, stdin=subprocess.DEVNULL)


class Rules:
    """A rule file /etc/request-key.d/wqfs-test-ID.conf and a directory of helper scripts, both
    removed at the end; key descriptions starting "wqfs-ID-" are this test's alone."""

    def __init__(self, tmp: str) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.prefix = f"wqfs-{self.id}-"
        self.conf = os.path.join(RULES_DIR, f"wqfs-test-{self.id}.conf")
        self.dir = tmp
        os.chmod(self.dir, 0o755)  # the helper runs as root, but the scripts' directory is walked by nobody's tests too
        self.lines: list[str] = []

    def sleeper(self) -> str:
        """An argument for sleep (an hour, and a fraction that is this test's alone) by which
        the test finds its hanging helpers among the processes."""
        return f"3600.{int(self.id, 16) % 10 ** 12:012d}"

    def desc(self, name: str) -> str:
        return self.prefix + name

    def add(self, name_pattern: str, command: str, callout: str = "*") -> None:
        """create user PREFIX+NAME_PATTERN CALLOUT COMMAND"""
        self.lines.append(f"create\tuser\t{self.prefix}{name_pattern}\t{callout}\t{command}\n")
        with open(self.conf + ".new", "w") as f:
            f.writelines(self.lines)
        os.rename(self.conf + ".new", self.conf)

    def script(self, name: str, body: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)
        return path

    def log(self, name: str = "log") -> str:
        path = os.path.join(self.dir, name)
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def remove(self) -> None:
        for path in (self.conf, self.conf + ".new"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


@pytest.fixture
def rules(tmp_path) -> Iterator[Rules]:
    os.makedirs(RULES_DIR, exist_ok=True)
    made = Rules(str(tmp_path))
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def own(own_daemon: Daemon) -> Daemon:
    return own_daemon


def _state(mnt: str, serial: int) -> str:
    return os.getxattr(os.path.join(mnt, "keys", str(serial)), "user.keyctl.state").decode()


def _processes(marker: str) -> list[int]:
    """Pids of the processes whose command line holds marker."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def _wait_for(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


def _serves(mnt: str) -> None:
    """The daemon still answers: the tree and a trapped call."""
    assert os.path.isdir(os.path.join(mnt, "keys"))
    result = subprocess.run([sys.executable, "-m", "wqfs", "run", "--mount", mnt, "--", "keyctl", "add", "user",
                             f"alive-{uuid.uuid4().hex[:8]}", "v", "@u"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().isdigit(), result.stderr


# ------------------------------------------------------------------ the upcall, as keyutils uses it

# What the helper sees: request-key's argv (by the rule's macros), its identity and environment,
# its session keyring, the token as @a; then it instantiates the key into the requester's
# session keyring. Each keyctl is a child of the script: it holds the authority request-key
# assumed (fork copies it), and the helper's session keyring.
INSTANTIATE = r"""
log="$(dirname "$0")/log"
{
  echo "macros $*"
  echo "ids $(id -u) $(id -g) groups=$(id -G)"
  tr '\0' '\n' < /proc/$$/environ | sort | tr '\n' ' '; echo
  echo "cwd $(pwd) umask $(umask)"
  echo "nnp $(grep NoNewPrivs /proc/$$/status | cut -f2)"
  echo "session $(keyctl rdescribe @s)"
  echo "token $(keyctl rdescribe @a)"
  echo "callout $(keyctl print @a)"
} >> "$log" 2>&1
exec keyctl instantiate "$2" "$7" "$8"
"""


def test_request2_runs_request_key_with_a_rule_of_request_key_d(mnt, rules, queues):
    """`keyctl request2 user DESC callout @s`: request-key reads /etc/request-key.d/*.conf, runs the
    rule's program as the kernel's helper, which instantiates the key into the requester's session
    keyring (%S); a watcher of that keyring sees LINKED when the key is made under construction
    (construct_alloc_key) and LINKED again when the helper links it (key_instantiate_and_link)."""
    helper = rules.script("instantiate.sh", INSTANTIATE)
    rules.add("inst*", f"{helper} %o %k %u %g %T %P %c %S")
    desc = rules.desc("inst")
    proc = subprocess.Popen(run_argv(mnt, "sh", "-c", 'keyctl id @s; read go; keyctl request2 user "$1" "the callout" @s'
                                     ' && keyctl print "%user:$1"', "sh", desc),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd="/", start_new_session=True)
    try:
        session = int(read_line(proc.stdout))
        q = queues()
        q.watch(session, 1)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        serial = int(read_line(proc.stdout))
        assert read_line(proc.stdout) == "the callout\n"
        assert proc.wait(WAIT) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    seen = wait_records(q, 2)
    assert seen[:2] == [key(LINKED, session, serial), key(LINKED, session, serial)]
    assert seen[2:] in ([], [("removal", session, 1)])  # the program is gone, and so may its keyring be
    lines = rules.log().splitlines()
    # call_sbin_request_key's argv: create, the key, the requester's fsuid and fsgid, no thread or
    # process keyring, its session keyring
    assert lines[0] == f"macros create {serial} 0 0 0 0 the callout {session}"
    assert lines[1] == "ids 0 0 groups=0"  # root, no supplementary group (id -G names the primary)
    assert lines[2] == "HOME=/ PATH=/sbin:/bin:/usr/sbin:/usr/bin "
    assert lines[3] == "cwd / umask 0022"
    assert lines[4] == "nnp 1"  # it runs under the syscall front's seccomp filter (see README)
    assert lines[5] == f"session keyring;0;0;3f030000;_req.{serial}"
    assert lines[6] == f"token .request_key_auth;0;0;1b010000;{serial:x}"
    assert lines[7] == "callout the callout"
    assert _state(mnt, serial) == "positive"


# keyutils' tests/keyctl/requesting/valid and piped, in short: Debian's own /etc/request-key.conf
# rule for debug:* runs /usr/share/keyutils/request-key-debug.sh, whose `keyctl instantiate`
# (a child of the script) links the key into the requester's session keyring.
KEYUTILS_VALID = r"""
set -e
ring=$(keyctl newring sandbox @s)
k=$(keyctl request2 user "$1" gizzard)
echo "data $(keyctl print "$k")"
keyctl rlist @s | tr ' ' '\n' | grep -cx "$k" | sed 's/^/in session /'
[ "$(keyctl request2 user "$1" gizzard)" = "$k" ] && echo "again the same"
keyctl unlink "$k" @s >/dev/null
p=$(echo gizzard | keyctl prequest2 user "$1" "$ring")
[ "$p" != "$k" ] && echo "piped a new one"
keyctl rlist "$ring" | tr ' ' '\n' | grep -cx "$p" | sed 's/^/in sandbox /'
keyctl rlist @s | tr ' ' '\n' | grep -cx "$p" | sed 's/^/in session /'
keyctl rdescribe "$p"
"""


def test_keyutils_requesting_valid_and_piped_with_debians_debug_rule(mnt):
    """Without a destination the key goes to the default keyring (the session keyring); with one,
    to it (and the script links it into the session keyring too); a second request finds it."""
    desc = f"debug:wqfs-{uuid.uuid4().hex[:12]}"
    result = wqfs_run(mnt, KEYUTILS_VALID, desc)
    assert result.stdout.splitlines() == ["data Debug gizzard", "in session 1", "again the same", "piped a new one",
                                          "in sandbox 1", "in session 1", f"user;0;0;3f010000;{desc}"], result.stderr


@pytest.mark.parametrize("command,callout,error,state", [
    ("/bin/keyctl negate %k 30 %S", "x", "Required key not available", "negative"),
    ("/bin/keyctl reject %k 30 %c %S", "rejected", "Key was rejected by service", "negative"),
    ("/bin/false", "x", "Required key not available", "negative"),
    ("/bin/true", "x", "Required key not available", "negative"),
], ids=["negate", "reject", "program-fails", "exits-0-without-instantiating"])
def test_a_rule_that_negates_rejects_or_fails(mnt, rules, command, callout, error, state):
    """The requester gets the error the helper stored (ENOKEY, EKEYREJECTED); a helper that exits,
    well or not, leaving the key under construction has it negated for key_negative_timeout (60 s)
    and the requester gets ENOKEY. A second request meets the negative key: no second upcall."""
    rules.add("neg*", command)
    desc = rules.desc("neg")
    # read while the program runs: its session keyring (and the key in it) goes after it ends
    script = r"""keyctl request2 user "$1" "$2" @s
s=$(keyctl show @s | awk -v d="$1" 'index($0, d) {print $1}')
keyctl request2 user "$1" "$2" @s
k="$WQFS_MOUNT/keys/$s"
echo "$s $(getfattr --absolute-names --only-values -n user.keyctl.state "$k") $(getfattr --absolute-names --only-values -n user.keyctl.expiry "$k")"
"""
    result = wqfs_run(mnt, script, desc, callout)
    assert result.stderr.splitlines() == [f"request_key: {error}"] * 2
    serial, shown_state, expiry_text = result.stdout.split()
    assert int(serial) > 0 and shown_state == state
    expiry = int(expiry_text)
    assert (25 <= expiry <= 30) if command.startswith("/bin/keyctl") else (55 <= expiry <= 60)


def test_request_key_without_callout_makes_no_upcall(mnt, rules):
    rules.script("never.sh", 'echo ran >> "$(dirname "$0")/log"\n')
    rules.add("none*", os.path.join(rules.dir, "never.sh"))
    result = wqfs_run(mnt, 'keyctl request user "$1" @s', rules.desc("none"))
    assert result.stderr.strip() == "request_key: Required key not available"
    result = wqfs_run(mnt, 'keyctl request2 keyring "$1" x @s', rules.desc("none"))
    assert result.stderr.strip() == "request_key: Operation not permitted"  # keyrings are never constructed
    assert rules.log() == ""


# ------------------------------------------------------------------ hostile requesters

def _helper_pid(marker: str) -> int:
    return _wait_for(lambda: (_processes(marker) or [None])[0], f"a helper running {marker}")


def test_a_hanging_helper_and_a_killed_requester(own, rules):
    """The kernel waits for a helper for ever; so may wqfs, but never in its loop: the requester is
    killable, the daemon goes on serving, a second requester of the key waits for the same upcall
    (and is killable too), and when the helper finally exits the key is negated."""
    marker = rules.sleeper()
    rules.script("hang.sh", f"exec sleep {marker}\n")
    rules.add("hang*", os.path.join(rules.dir, "hang.sh"))
    desc = rules.desc("hang")
    first = subprocess.Popen(run_argv(own.path, "keyctl", "request2", "user", desc, "x", "@u", new_session=False), cwd="/",
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    second = None
    try:
        helper = _helper_pid(marker)
        os.killpg(first.pid, signal.SIGKILL)  # wqfs run and the keyctl waiting in request_key
        first.wait(WAIT)
        _serves(own.path)
        pending = _wait_for(lambda: _find(own.path, "@u", desc), "the key in @u")
        assert _state(own.path, pending) == "uninstantiated"
        second = subprocess.Popen(run_argv(own.path, "keyctl", "request2", "user", desc, "x", "@u", new_session=False),
                                  cwd="/",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(0.5)
        assert second.poll() is None  # waiting for the construction already on the way
        assert len(_processes(marker)) == 1  # no second helper
        os.kill(helper, signal.SIGKILL)
        assert second.wait(WAIT) == 1
        assert second.stderr.read().decode().strip() == "request_key: Required key not available"
        assert _state(own.path, pending) == "negative"
    finally:
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                proc.stdout.close()
                proc.stderr.close()
        for pid in _processes(marker):
            os.kill(pid, signal.SIGKILL)


def _find(mnt: str, ring: str, desc: str) -> Optional[int]:
    path = os.path.join(mnt, ring, f"user:{desc}")
    try:
        return int(os.getxattr(path, "user.keyctl.serial"))
    except OSError:
        return None


def test_one_uid_runs_a_bounded_number_of_helpers_and_others_are_not_held(own, rules):
    """nobody's requests whose helpers hang: MAX_PER_UID helpers run, the next waits for a slot
    (its key stays under construction, charged to nobody); root's request meanwhile is served."""
    marker = rules.sleeper()
    rules.script("hang.sh", f"exec sleep {marker}\n")
    rules.add("hang*", os.path.join(rules.dir, "hang.sh"))
    rules.add("root*", "/bin/keyctl instantiate %k %c %S")
    requesters = []
    try:
        for i in range(upcall.MAX_PER_UID + 1):
            requesters.append(subprocess.Popen(
                run_argv(own.path, "keyctl", "request2", "user", rules.desc(f"hang{i}"), "x", "@s", nobody=True),
                cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_for(lambda: len(_processes(marker)) == upcall.MAX_PER_UID, "every slot taken")
        time.sleep(1.0)
        assert len(_processes(marker)) == upcall.MAX_PER_UID  # the last one waits
        for proc in requesters:  # nobody's requesters go; their helpers stay
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        result = wqfs_run(own.path, 'keyctl request2 user "$1" fine @s && keyctl print "%user:$1"', rules.desc("root"))
        assert result.stdout.splitlines()[1:] == ["fine"], result.stderr
        os.kill(_processes(marker)[0], signal.SIGKILL)  # a slot frees: the waiting upcall runs
        _wait_for(lambda: len(_processes(marker)) == upcall.MAX_PER_UID, "the waiting helper started")
        _serves(own.path)
    finally:
        for proc in requesters:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in _processes(marker):
            os.kill(pid, signal.SIGKILL)


# nobody's helper: told the serial of another key under construction (root's, its helper
# hanging), it may not instantiate that one, only its own, into nobody's session keyring, which
# its root helper possesses only through the authority.
OTHER = r"""
log="$(dirname "$0")/log"
other=$(cat "$(dirname "$0")/other")
{
  echo "ids $(id -u) requester $3 $4"
  keyctl instantiate "$other" stolen 0 && echo "other instantiated" || echo "other refused"
} >> "$log" 2>&1
exec keyctl instantiate "$2" "mine" "$5"
"""


def test_nobodys_request_gives_the_helper_no_more_than_its_own_key(own, rules):
    marker = rules.sleeper()
    rules.script("hang.sh", f"exec sleep {marker}\n")
    rules.add("roots*", os.path.join(rules.dir, "hang.sh"))
    rules.add("nobodys*", f"{os.path.join(rules.dir, 'other.sh')} %o %k %u %g %S")
    rules.script("other.sh", OTHER)
    root = subprocess.Popen(run_argv(own.path, "keyctl", "request2", "user", rules.desc("roots"), "x", "@u"), cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _helper_pid(marker)
        other = _wait_for(lambda: _find(own.path, "@u", rules.desc("roots")), "root's key under construction")
        with open(os.path.join(rules.dir, "other"), "w") as f:
            f.write(str(other))
        result = wqfs_run(own.path, 'keyctl request2 user "$1" x @s && keyctl print "%user:$1" && keyctl rdescribe "%user:$1"',
                          rules.desc("nobodys"), nobody=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[1:] == ["mine", f"user;{NOBODY_UID};{NOBODY_UID};3f010000;{rules.desc('nobodys')}"]
        assert rules.log().splitlines() == [f"ids 0 requester {NOBODY_UID} {NOBODY_UID}",
                                            "keyctl_instantiate: Operation not permitted", "other refused"]
        assert _state(own.path, other) == "uninstantiated"
        # and nobody itself holds no authority over anything
        result = wqfs_run(own.path, 'keyctl instantiate "$1" x 0; keyctl negate "$1" 1 0', str(other), nobody=True)
        assert result.stderr.splitlines() == ["keyctl_instantiate: Operation not permitted",
                                              "keyctl_negate: Operation not permitted"]
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        root.wait()
        for pid in _processes(marker):
            os.kill(pid, signal.SIGKILL)


def test_nobodys_callout_and_description_are_only_words_to_the_helper(own, rules):
    """What nobody chooses reaches the helper as arguments, never as a command line."""
    rules.script("echo.sh", 'printf "%s|" "$@" >> "$(dirname "$0")/log"; exec keyctl instantiate "$1" ok "$2"\n')
    rules.add("words*", f"{os.path.join(rules.dir, 'echo.sh')} %k %S %c %d")
    desc = rules.desc("words;$(touch /tmp/pwned) `id`")
    result = wqfs_run(own.path, 'keyctl request2 user "$1" "$2" @s', desc, "a b; rm -rf / $(id)", nobody=True)
    assert result.returncode == 0, result.stderr
    # request-key splits the rule's line on blanks, then puts each macro's value in one argument
    assert rules.log().split("|")[2:4] == ["a b; rm -rf / $(id)", desc]
    assert not os.path.exists("/tmp/pwned")
