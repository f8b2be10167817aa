"""Mount tests' helpers: every mount a test makes is made inside a private mount namespace
(`unshare -m --propagation private`), so that nothing reaches the machine's own namespace and
nothing outlives the test: the namespace, and every mount in it, goes with its last process,
and every process the script started is killed (by pid) when the test is done, even when it
failed. The daemon stays in the machine's namespace; a process in the private one reaches the
wqfs mount through the namespace's copy of it, and its watches see that namespace's mounts.

A new namespace starts with a copy of every mount of the machine's, the other daemons' mounts
under /tmp among them; removing a mountpoint directory detaches the mounts on it in every
namespace (__detach_mounts), so a suite's daemon ending elsewhere would post an UNMOUNT into a
test's namespace. The namespace drops those copies (all mounts under /tmp but the ones the test
keeps: its own daemon's) before the test's command runs, so that only the test's own changes
are seen there."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Sequence

from helpers import NOBODY, ROOT, descendants

UNSHARE = ["unshare", "--mount", "--propagation", "private", "--fork", "--kill-child"]
# Inside the new namespace: detach every mount under /tmp but those named (the first argument,
# a colon-separated list), deepest first, then run the command.
PROLOGUE = r'''
keep=":$1:"; shift
awk '$5 ~ "^/tmp/" {print $5}' /proc/self/mountinfo | sort -r | while read -r point; do
    case "$keep" in *":$point:"*) ;; *) umount -l "$point" 2>/dev/null || true ;; esac
done
exec "$@"
'''
TIMEOUT = 60.0  # a bound on a script that went wrong, never a measurement


def in_private_ns(argv: Sequence[str], *, keep: str, timeout: float = TIMEOUT, nobody_inside: bool = False,
                  env: dict | None = None) -> subprocess.CompletedProcess:
    """argv run in a new private mount namespace where, under /tmp, only the mount at keep (the
    test's daemon's) is left (as nobody there if told: the namespace is made as root, then
    setpriv drops to nobody); its output as text. Whatever it left running is killed before
    this returns."""
    inner = ["sh", "-c", PROLOGUE, "sh", keep] + (NOBODY if nobody_inside else []) + list(argv)
    proc = subprocess.Popen(UNSHARE + inner, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{argv[:3]} did not end within {timeout} s: {out}\n{err}") from None
    finally:
        _kill_tree(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _kill_tree(proc: subprocess.Popen) -> None:
    for pid in reversed(descendants(proc.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def sh_in_private_ns(script: str, mnt: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """A shell script in a private mount namespace that keeps the wqfs mount mnt ($1 = mnt,
    $2... = args)."""
    return in_private_ns(["sh", "-ec", script, "sh", mnt, *args], keep=mnt, **kwargs)


def python_in_private_ns(script: str, mnt: str, *args: str, **kwargs) -> dict:
    """A Python script (wqfs importable; sys.argv[1] = mnt, the wqfs mount the namespace keeps,
    sys.argv[2:] = args) in a private mount namespace, which prints one JSON object as its last
    line: that object. Its exit status must be 0."""
    result = in_private_ns([sys.executable, "-c", PRELUDE + script, mnt, *args], keep=mnt, **kwargs)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


# What every Python script run in a namespace can use: run a command (checked), and a mount's
# id and its parent's as this namespace's mountinfo shows them (column 1 and 2), its device.
PRELUDE = r'''
import json, os, struct, subprocess, sys

def run(*argv):
    subprocess.run(argv, check=True)

def mount_of(path):
    """(mnt_id, parent id, st_dev) of the mount at path: the last line of mountinfo for it."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                major, minor = fields[2].split(":")
                found = (int(fields[0]), int(fields[1]), os.makedev(int(major), int(minor)))
    assert found is not None, path
    return found
'''
