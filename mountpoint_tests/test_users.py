"""A second user: nobody (65534), through setpriv. The daemon asks /proc who is calling, and the
emulated kernel refuses what the real one would (security/keys/permission.c key_task_permission)."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from helpers import NOBODY, NOBODY_UID, PYTHON, drain, read_line, serial, sh, write_key


WATCHER = r"""
import os, select, struct, sys
fd = os.open(sys.argv[1] + "/watch_queue", os.O_RDWR | os.O_NONBLOCK)
os.write(fd, b"size 32")
try:
    os.write(fd, ("watch %s 1" % sys.argv[2]).encode())
except OSError as error:
    print("error", error.errno, flush=True)
    sys.exit(0)
print("watching", flush=True)
sys.stdin.readline()
poller = select.poll()
poller.register(fd, select.POLLIN)
if poller.poll(15000):
    data = os.read(fd, 433)
    print("got", len(data), *struct.unpack("<IIII", data[:16]), flush=True)
else:
    print("nothing", flush=True)
"""

SYSCALL = r"""
import os, sys
op, path = sys.argv[1], sys.argv[2]
try:
    if op == "setperm":
        os.setxattr(path, "user.keyctl.perm", b"0x3f3f3f3f")
    elif op == "chown":
        os.chown(path, 65534, -1)
    elif op == "revoke":
        os.setxattr(path, "user.keyctl.revoke", b"")
    elif op == "describe":
        print(os.getxattr(path, "user.keyctl.describe").decode())
    elif op == "readlink":
        print(os.readlink(path))
    print("ok")
except OSError as error:
    print("error", error.errno)
"""


def nobody_py(script: str, *args: str) -> str:
    result = subprocess.run(NOBODY + [PYTHON, "-c", script, *args], capture_output=True, text=True,
                            timeout=30, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout


def nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(NOBODY + list(argv), capture_output=True, text=True, timeout=30, cwd="/")


@pytest.fixture
def rootkey(ring):
    path = os.path.join(ring, "user:secret")
    write_key(path, b"root's secret")
    return path, serial(path)


def test_setpriv_really_runs_as_nobody():
    assert nobody("id", "-u").stdout.strip() == str(NOBODY_UID)


def test_nobody_does_not_see_roots_keys(mnt, ring, rootkey):
    _, k = rootkey
    # nobody's @s (made on first use) is its own user-session keyring, not root's ...
    target = nobody_py(SYSCALL, "readlink", os.path.join(mnt, "@s")).splitlines()[0]
    root_session = serial(os.path.join(mnt, "@s"))
    assert target.startswith("keys/") and int(target[5:]) != root_session
    result = nobody("ls", os.path.join(mnt, "keys"))
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    # ... which its listing shows, while none of root's keys are there.
    assert target[5:] in listed
    assert str(k) not in listed and str(serial(ring)) not in listed and str(root_session) not in listed
    assert str(k) in os.listdir(os.path.join(mnt, "keys"))  # root still sees it


def test_a_key_with_other_view_is_listed_for_nobody(mnt, rootkey):
    path, k = rootkey
    os.setxattr(path, "user.keyctl.perm", b"0x3f010001")
    listed = nobody("ls", os.path.join(mnt, "keys")).stdout.split()
    assert str(k) in listed
    assert nobody_py(SYSCALL, "describe", os.path.join(mnt, "keys", str(k))).splitlines()[0] == \
        "user;0;0;3f010001;secret"


def test_nobody_cannot_read_roots_key(mnt, rootkey):
    path, k = rootkey
    file = os.path.join(mnt, "keys", str(k))
    result = nobody("cat", file)
    assert result.returncode != 0 and "Permission denied" in result.stderr
    os.setxattr(path, "user.keyctl.perm", b"0x3f010001")  # VIEW but not READ
    result = nobody("cat", file)
    assert result.returncode != 0 and "Permission denied" in result.stderr and result.stdout == ""
    os.setxattr(path, "user.keyctl.perm", b"0x3f010003")  # READ granted: now it can
    result = nobody("cat", file)
    assert result.returncode == 0 and result.stdout == "root's secret"


def test_nobody_cannot_write_into_roots_keyring(mnt, ring):
    r = serial(ring)
    target = os.path.join(mnt, "keys", str(r))
    # Not even viewable (the default 0x3f010000): lookup is refused.
    result = sh(f"echo x > '{target}/user:intruder'", nobody=True)
    assert result.returncode != 0 and "Permission denied" in result.stderr
    # Viewable, readable and searchable, but not writable.
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f000b")
    assert nobody("ls", target).returncode == 0
    result = sh(f"echo x > '{target}/user:intruder'", nobody=True)
    assert result.returncode != 0 and "Permission denied" in result.stderr
    result = nobody("mkdir", f"{target}/keyring:intruder")
    assert result.returncode != 0 and "Permission denied" in result.stderr
    assert os.listdir(ring) == []


def test_nobody_may_write_where_root_allows_it(mnt, ring, queues):
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f000f")  # other: view, read, write, search
    r = serial(ring)
    q = queues()
    q.watch(r, 1)
    result = sh(f"echo hello > '{mnt}/keys/{r}/user:guest'", nobody=True)
    assert result.returncode == 0, result.stderr
    guest = os.path.join(ring, "user:guest")
    k = serial(guest)
    assert os.stat(guest).st_uid == NOBODY_UID
    assert drain(q) == [("key", 2, r, k, 1)]
    result = nobody("rm", "-f", f"{mnt}/keys/{r}/user:guest")
    assert result.returncode == 0, result.stderr
    assert drain(q) == [("key", 3, r, k, 1)]


def test_nobody_cannot_unlink_from_a_keyring_without_write(mnt, ring, rootkey):
    os.setxattr(ring, "user.keyctl.perm", b"0x3f3f000b")
    os.setxattr(rootkey[0], "user.keyctl.perm", b"0x3f3f003f")
    result = nobody("rm", "-f", f"{mnt}/keys/{serial(ring)}/user:secret")
    assert result.returncode != 0 and "Permission denied" in result.stderr
    assert os.listdir(ring) == ["user:secret"]


@pytest.mark.parametrize("op", ["setperm", "chown", "revoke"])
def test_nobody_cannot_change_roots_key(mnt, rootkey, queues, op):
    path, k = rootkey
    os.setxattr(path, "user.keyctl.perm", b"0x3f010001")  # nobody may view it, nothing more
    q = queues()
    q.watch(k, 1)
    drain(q)
    assert nobody_py(SYSCALL, op, os.path.join(mnt, "keys", str(k))).split() == ["error", str(errno.EACCES)]
    assert drain(q) == []
    assert os.getxattr(path, "user.keyctl.perm") == b"3f010001"


def test_nobody_cannot_watch_a_key_it_cannot_view(mnt, rootkey, procs):
    _, k = rootkey
    out = nobody_py(WATCHER, mnt, str(k))
    assert out.split() == ["error", str(errno.EACCES)]


def test_nobody_can_watch_a_viewable_key_and_gets_its_records(mnt, rootkey, procs):
    path, k = rootkey
    os.setxattr(path, "user.keyctl.perm", b"0x3f010001")
    proc = subprocess.Popen(NOBODY + [PYTHON, "-c", WATCHER, mnt, str(k)], cwd="/", text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(proc)
    assert read_line(proc.stdout) == "watching\n"
    write_key(path, b"changed by root")
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert read_line(proc.stdout).split() == ["got", "16", str(1 | (1 << 24)), str(0x110), str(k), "0"]
    assert proc.wait(15) == 0


def test_roots_keys_dir_does_not_show_nobodys_keys(mnt):
    name = f"user:nobodys-{os.getpid()}"
    result = sh(f"echo mine > {mnt}/@s/{name} && getfattr --only-values -n user.keyctl.serial {mnt}/@s/{name}",
                nobody=True)
    assert result.returncode == 0, result.stderr
    k = result.stdout.strip()
    assert k.isdigit()
    try:
        assert k not in os.listdir(os.path.join(mnt, "keys"))
        with pytest.raises(PermissionError):
            os.stat(os.path.join(mnt, "keys", k))
        assert nobody("cat", f"{mnt}/@s/{name}").stdout == "mine\n"
    finally:
        assert nobody("rm", "-f", f"{mnt}/@s/{name}").returncode == 0


def test_nobody_queue_is_its_own(mnt, procs):
    """A queue opened by nobody cannot be used to watch root's session keyring through @s:
    @s is nobody's own session keyring there."""
    script = r"""
import os, sys
fd = os.open(sys.argv[1] + "/watch_queue", os.O_RDWR)
os.write(fd, b"watch %s 1" % sys.argv[2].encode())
print("ok")
"""
    root_session = serial(os.path.join(mnt, "@s"))
    result = subprocess.run(NOBODY + [PYTHON, "-c", script, mnt, str(root_session)],
                            capture_output=True, text=True, timeout=30, cwd="/")
    assert result.returncode != 0 and "Permission denied" in result.stderr
    assert nobody_py(script, mnt, "@s").strip() == "ok"
