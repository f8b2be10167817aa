"""Every shell example of README.md, run as written against a real mount, its output checked.

A ```sh block whose lines start with `$ ` (or root's `# `) is a terminal session: each such line is typed into one
bash (a command that starts a shell, `wqfs run -- bash`, takes the lines after it, as it would
at a terminal), and the lines below it are what it prints, stderr included. Serials differ from
run to run: a number of 6 digits or more in an example stands for whatever number comes there,
the same one wherever the example repeats it. "Five minutes with it" is three terminals, its
expected output in the comments of terminal 3 (`terminal 2 prints "<ring> link <key>"`): it is
run as such. The example that feeds a queue from the shell is run in the background and its
output checked. Every other block is in SKIPPED, with the reason.

The README's /run/wqfs (root's default mountpoint) becomes the test daemon's mountpoint: in
paths, and as --mount for the wqfs commands that would take the default.
"""
from __future__ import annotations

import itertools
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pytest

from helpers import ROOT, WAIT, Daemon, descendants, serial, stopped_after

README = os.path.join(ROOT, "README.md")
README_MOUNT = "/run/wqfs"
# Blocks that cannot run as written, by their first line: why.
SKIPPED = {
    "make run     # installs what is missing, mounts wqfs at /run/wqfs in the foreground; Ctrl-C unmounts":
        "installs packages and mounts at /run/wqfs in the foreground, for good",
    "make run                          # or: .venv/bin/wqfs mount  (backgrounds once ready)":
        "terminal 1 of Five minutes: the test's own daemon stands in for it",
}
SERIAL = re.compile(r"\b\d{6,}\b")
PLACEHOLDER = re.compile(r"<[a-z ]+>")
BLOCKED = {"0", "7", "23", "232", "270", "271"}  # read poll select epoll_wait pselect6 ppoll: waiting for input


@dataclass
class Block:
    heading: str
    lines: list[str]

    @property
    def first(self) -> str:
        return self.lines[0] if self.lines else ""


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def blocks() -> list[Block]:
    """Every ```sh block of the README, with the ## heading it is under."""
    found, heading = [], ""
    with open(README) as f:
        text = f.read()
    for match in re.finditer(r"^(## [^\n]*)$|^```sh\n(.*?)^```", text, re.M | re.S):
        if match.group(1):
            heading = match.group(1)
        else:
            found.append(Block(heading, match.group(2).splitlines()))
    return found


PROMPTS = ("$ ", "# ")  # a user's prompt, and root's
REQUEST_KEY_D = "/etc/request-key.d"  # where an example's request-key rule goes, for its session only


def sessions() -> list[Block]:
    return [b for b in blocks() if b.lines and b.lines[0].startswith(PROMPTS) and "Five minutes" not in b.heading
            and any(line.startswith("$ ") for line in b.lines)]


def steps(block: Block) -> list[Step]:
    out: list[Step] = []
    for line in block.lines:
        if line.startswith(PROMPTS):
            out.append(Step(line[2:]))
        else:
            out[-1].expected.append(line)
    return out


def localise(command: str, mount: str) -> str:
    """The README's mount becomes ours; a wqfs command that would use the default mountpoint is
    given --mount (wqfs has no other way to be told where the mount is)."""
    command = command.replace(README_MOUNT, mount)
    return re.sub(r"\bwqfs (watch|run)\b(?! --mount)(?![^|;&]*--mount)", rf"wqfs \1 --mount {mount}", command)


class Pattern:
    """Expected lines with serials (and <placeholders>) as variables, bound on first sight."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}

    def _regex(self, line: str, mount: str) -> tuple[re.Pattern, list[str]]:
        names: list[str] = []
        parts = []
        position = 0
        line = line.replace(README_MOUNT, mount)
        for match in re.finditer(f"{SERIAL.pattern}|{PLACEHOLDER.pattern}", line):
            parts.append(re.escape(line[position:match.start()]))
            parts.append(r"(\d+)")
            names.append(match.group(0))
            position = match.end()
        parts.append(re.escape(line[position:]))
        return re.compile("".join(parts) + r"\Z"), names

    def _one(self, expected: str, actual: str, mount: str, bound: dict[str, str]) -> bool:
        regex, names = self._regex(expected, mount)
        match = regex.match(actual)
        if not match:
            return False
        for name, value in zip(names, match.groups()):
            if bound.setdefault(name, value) != value:
                return False
        return True

    def match(self, expected: list[str], actual: list[str], mount: str) -> bool:
        """actual, in some order (a background watcher and the command print concurrently), is
        expected with consistent variables."""
        if len(expected) != len(actual):
            return False
        for order in itertools.permutations(actual):
            bound = dict(self.bound)
            if all(self._one(e, a, mount, bound) for e, a in zip(expected, order)):
                self.bound = bound
                return True
        return False


# ---------------------------------------------------------------- processes

def _waiting(pid: int) -> bool:
    """Blocked in a call that waits for input (not running, not in another call)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return False
    return bool(fields) and fields[0] in BLOCKED


def _wait_for_new_waiter(shell: int, before: set[int]) -> None:
    """A command sent to the background (`... &`): until a process it started waits for input
    (a watcher in poll or read), twice in a row 50 ms apart, so its watches are set."""
    deadline = time.monotonic() + WAIT
    streak = 0
    while time.monotonic() < deadline:
        new = [pid for pid in descendants(shell) if pid not in before]
        streak = streak + 1 if any(_waiting(pid) for pid in new) else 0
        if streak >= 2:
            return
        time.sleep(0.05)
    raise AssertionError("the background command never waited for input")


class Terminal:
    """One bash fed line by line, as a person at a terminal would type; stdout and stderr as one."""

    def __init__(self, mount: str, cwd: str) -> None:
        env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                     start_new_session=True)
        self.buffer = b""
        self.count = 0

    def lines(self, until: Optional[str], want: int, settle: float = 0.3) -> list[str]:
        """Output lines until the marker line (dropped), then until `want` lines came (the
        background's may come later than the marker) and `settle` seconds of quiet."""
        out: list[str] = []
        deadline = time.monotonic() + WAIT
        marked = until is None
        quiet_since = time.monotonic()
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text == until:
                    marked = True
                else:
                    out.append(text)
                quiet_since = time.monotonic()
            if marked and len(out) >= want and time.monotonic() - quiet_since >= settle:
                break
            if select.select([fd], [], [], 0.05)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.buffer += chunk
        return out

    def run(self, command: str, want: int) -> list[str]:
        self.count += 1
        marker = f"__readme_step_{self.count}__"
        before = set(descendants(self.proc.pid))
        self.proc.stdin.write(f"{command}\n".encode())
        self.proc.stdin.flush()
        if command.rstrip().endswith("&"):
            _wait_for_new_waiter(self.proc.pid, before)
        self.proc.stdin.write(f"echo {marker}\n".encode())
        self.proc.stdin.flush()
        return self.lines(marker, want)

    def close(self) -> None:
        """End the shell and whatever it left running in the background (by pid)."""
        pids = descendants(self.proc.pid)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def readme_mount() -> Iterator[str]:
    """A daemon of the README's own: its examples make keys with fixed names (user:password)."""
    with stopped_after(Daemon()) as d:
        yield d.path


# ---------------------------------------------------------------- the tests

def test_every_sh_block_is_run_or_skipped_with_a_reason():
    runnable = [(b.heading, b.lines) for b in sessions()]
    for block in blocks():
        if (block.heading, block.lines) in runnable or "Five minutes" in block.heading and block.first.startswith("$ "):
            continue
        if block.first.startswith("exec 3<>"):
            continue  # test_the_shell_queue_example
        assert block.first in SKIPPED, f"README block under {block.heading!r} is neither run nor skipped: {block.first!r}"
    assert set(SKIPPED) <= {b.first for b in blocks()}, "a SKIPPED block is gone from the README"


@pytest.mark.parametrize("block", sessions(), ids=lambda b: f"{b.heading[3:]}: {b.first[2:40]}")
def test_a_terminal_session_of_the_readme(block: Block, readme_mount: str):
    pattern = Pattern()
    rules = set(os.listdir(REQUEST_KEY_D)) if os.path.isdir(REQUEST_KEY_D) else set()
    with tempfile.TemporaryDirectory() as cwd:
        terminal = Terminal(readme_mount, cwd)
        try:
            for step in steps(block):
                actual = terminal.run(localise(step.command, readme_mount), len(step.expected))
                assert pattern.match(step.expected, actual, readme_mount), \
                    f"$ {step.command}\nexpected {step.expected}\ngot      {actual}"
        finally:
            terminal.close()
            if os.path.isdir(REQUEST_KEY_D):  # a rule the example wrote is the example's alone
                for name in set(os.listdir(REQUEST_KEY_D)) - rules:
                    os.unlink(os.path.join(REQUEST_KEY_D, name))


def _five_minutes() -> tuple[str, list[tuple[str, str]], list[str]]:
    """Terminal 2's command, terminal 3's (command, comment) pairs, and the block of getfattr."""
    five = [b for b in blocks() if "Five minutes" in b.heading and b.first.startswith("$ ")]
    assert len(five) == 2, "Five minutes: terminal 2's block and terminal 3's"
    (watcher,), commands = [line[2:] for line in five[0].lines], five[1].lines
    pairs, outputs = [], []
    for line in commands:
        if line.startswith("$ "):
            command, _, comment = line[2:].partition("  #")
            pairs.append((command.strip(), comment.strip()))
        else:
            outputs.append(line)
    return watcher, pairs, outputs


def _expectation(comment: str) -> tuple[Optional[str], Optional[str]]:
    """(what terminal 2 prints, what a watcher of the key would print) from a comment."""
    quoted = re.search(r'"([^"]+)"', comment)
    if "nothing" in comment:
        return None, None
    assert quoted, f"Five minutes: a comment says neither what terminal 2 prints nor nothing: {comment!r}"
    if "only if you watch the key" in comment:
        return None, quoted.group(1)
    return quoted.group(1), None


def _read_line(stream, timeout: float) -> str:
    fd = stream.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    while not buffer.endswith(b"\n") and select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buffer += chunk
    return buffer.decode()


def test_five_minutes_with_it(readme_mount: str):
    """Terminal 2 cats events/@s; terminal 3's commands, each in its own session as a terminal's
    are; terminal 2 prints what each comment says, and nothing more. The note below the block
    (a watcher of events/@s,WORK sees the move's link and the rm's unlk) is checked too."""
    watcher, pairs, outputs = _five_minutes()
    mount = readme_mount
    pattern = Pattern()
    terminal2 = subprocess.Popen(["sh", "-c", localise(watcher, mount)], stdout=subprocess.PIPE,
                                 start_new_session=True)
    work_watcher = key_watcher = None
    try:
        deadline = time.monotonic() + WAIT
        while not _waiting(terminal2.pid) and not any(_waiting(p) for p in descendants(terminal2.pid)):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        ring = serial(os.path.join(mount, "@s"))
        pattern.bound["<ring>"] = str(ring)
        getfattr_output = None
        for command, comment in pairs:
            if command.startswith("mv ") and work_watcher is None:  # the note: events/@s,WORK
                work = serial(os.path.join(mount, "@s", "keyring:work"))
                pattern.bound["<work>"] = str(work)
                work_watcher = open(os.path.join(mount, "events", f"@s,{work}"), "rb", buffering=0)
            result = subprocess.run(["sh", "-c", localise(command, mount)], capture_output=True, text=True,
                                    timeout=30, start_new_session=True)
            assert result.returncode == 0, (command, result.stderr)
            if command.startswith("getfattr"):
                getfattr_output = result.stdout.splitlines()
            if "user:password" in command and command.startswith("echo") and "<key>" not in pattern.bound:
                key = serial(os.path.join(mount, "@s", "user:password"))
                pattern.bound["<key>"] = str(key)
                key_watcher = open(os.path.join(mount, "events", str(key)), "rb", buffering=0)
            if command.startswith("mkdir"):
                pattern.bound.setdefault("<new ring>", str(serial(os.path.join(mount, "@s", "keyring:work"))))
            printed, by_key = _expectation(comment) if comment else (None, None)
            if printed:
                line = _read_line(terminal2.stdout, WAIT).rstrip("\n")
                assert pattern.match([printed], [line], mount), f"{command}: terminal 2 printed {line!r}, not {printed!r}"
            elif not command.startswith("getfattr"):
                assert _read_line(terminal2.stdout, 0.5) == "", f"{command}: terminal 2 printed something"
            if by_key:
                line = os.read(key_watcher.fileno(), 4096).decode().rstrip("\n")
                assert pattern.match([by_key], [line], mount), f"{command}: the key's watcher printed {line!r}"
        assert getfattr_output is not None and pattern.match(outputs, getfattr_output, mount), getfattr_output
        # the note: the move posted link on work, the rm unlk on it
        lines: list[str] = []
        while len(lines) < 3:  # it watches @s too: the move's unlk there, and its two on work
            lines += os.read(work_watcher.fileno(), 4096).decode().splitlines()
        assert pattern.match(["<ring> unlk <key>", "<work> link <key>", "<work> unlk <key>"], lines, mount), lines
    finally:
        for handle in (work_watcher, key_watcher):
            if handle is not None:
                handle.close()
        os.killpg(terminal2.pid, signal.SIGKILL)
        terminal2.wait()
        terminal2.stdout.close()


def test_the_shell_queue_example(readme_mount: str):
    """Notification queues, "From the shell": the script as written, then a link in @s."""
    (block,) = [b for b in blocks() if b.first.startswith("exec 3<>")]
    script = "\n".join(localise(line, readme_mount) for line in block.lines)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT
        while not any(_waiting(p) for p in [proc.pid, *descendants(proc.pid)]):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(0.2)
        path = os.path.join(readme_mount, "@s", "keyring:from-the-shell")
        os.mkdir(path)
        ring, new = serial(os.path.join(readme_mount, "@s")), serial(path)
        lines = [_read_line(proc.stdout, WAIT) for _ in range(3)]
        assert lines == ["read() = 16\n", "NOTIFY[000]: ty=000001 sy=02 i=00000110\n",
                         f"KEY {ring:08x} change=2[linked] aux={new}\n"], lines
        os.rmdir(path)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
