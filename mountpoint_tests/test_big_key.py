"""big_key through both fronts: keyutils' `keyctl padd big_key` under `wqfs run`, and a file
of the tree written and read back, with payloads far past a user key's 32767 bytes."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT, serial


def test_keyctl_padd_big_key_and_read_it_through_the_tree(mnt: str) -> None:
    data = os.urandom(200_000)
    added = subprocess.run([sys.executable, "-m", "wqfs", "run", "--mount", mnt, "--", "keyctl", "padd",
                            "big_key", "krb-ticket", "@u"], input=data, capture_output=True, timeout=60,
                           cwd=ROOT, start_new_session=True)
    assert added.returncode == 0, added.stderr
    key = int(added.stdout)
    path = os.path.join(mnt, "keys", str(key))
    assert os.getxattr(path, "user.keyctl.type") == b"big_key"
    assert os.stat(path).st_size == len(data)
    with open(path, "rb") as f:
        assert f.read() == data
    piped = subprocess.run([sys.executable, "-m", "wqfs", "run", "--mount", mnt, "--", "keyctl", "pipe", str(key)],
                           capture_output=True, timeout=60, cwd=ROOT, start_new_session=True)
    assert piped.returncode == 0 and piped.stdout == data, piped.stderr


def test_a_big_key_file_takes_up_to_add_keys_limit(mnt: str, ring: str) -> None:
    path = os.path.join(ring, "big_key:blob")
    data = b"b" * (1024 * 1024 - 1)
    with open(path, "wb") as f:
        f.write(data)
    assert os.stat(path).st_size == len(data)
    with open(path, "rb") as f:
        assert f.read() == data
    fd = os.open(os.path.join(ring, "big_key:toobig"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"b" * (1024 * 1024 - 1))
        try:
            os.write(fd, b"b")
            raise AssertionError("a write past 1 MiB - 1 was taken")
        except OSError as error:
            assert error.errno == 22  # EINVAL, add_key's
    finally:
        os.close(fd)
    assert serial(path) > 0
