"""The package as users install it: `pip install .` (not -e) into a fresh virtual environment,
then `wqfs mount`, `wqfs run` and the client from there, run from / so that nothing of the
source tree can stand in for what the install left out."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Iterator

import pytest

from helpers import ROOT
from wqfs.harness import TemporaryMount

BASE_PYTHON = os.path.join(sys.base_prefix, "bin", "python3")

CLIENT = r"""
import os, sys
from wqfs.client import Queue, key_filter
assert "pyfuse3" not in sys.modules and "trio" not in sys.modules, "the blocking client pulled in the daemon"
import wqfs
assert os.sep + "site-packages" + os.sep in wqfs.__file__, wqfs.__file__
with Queue(sys.argv[1], size=32, nonblock=True) as q:
    q.set_filter(key_filter([2]))
    q.watch("@us", 1)
    with open(os.path.join(sys.argv[1], "@us", "user:from-the-client"), "w") as f:
        f.write("v")
    print(q.read())
"""


@pytest.fixture(scope="module")
def venv() -> Iterator[str]:
    """A fresh venv with wqfs installed from this tree, not editable: its bin directory."""
    base = tempfile.mkdtemp(prefix="wqfs-pkg-")
    os.chmod(base, 0o755)
    try:
        subprocess.run([BASE_PYTHON, "-m", "venv", os.path.join(base, "venv")], check=True, timeout=120)
        bin_dir = os.path.join(base, "venv", "bin")
        # a copy of the sources, so that pip's in-tree build/ cannot leave stale modules behind
        source = os.path.join(base, "src")
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
        result = subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q", "--disable-pip-version-check",
                                 source], capture_output=True, text=True, timeout=900, cwd="/")
        assert result.returncode == 0, result.stderr[-3000:]
        yield bin_dir
    finally:
        shutil.rmtree(base, ignore_errors=True)


class InstalledMount(TemporaryMount):
    """`wqfs mount -f` of the installed package's own entry point, run from /."""

    def __init__(self, bin_dir: str) -> None:
        self.bin_dir = bin_dir
        super().__init__(prefix="wqfs-pkg-mnt-", cwd="/")

    def command(self) -> list[str]:
        return [os.path.join(self.bin_dir, "wqfs"), "mount", "-f", self.path]


@pytest.fixture
def mounted(venv: str) -> Iterator[str]:
    mount = InstalledMount(venv)
    try:
        yield mount.path
    finally:
        mount.stop()


def test_the_installed_package_has_every_module(venv):
    listing = subprocess.run([os.path.join(venv, "python"), "-c",
                              "import pkgutil, wqfs; print(sorted(m.name for m in pkgutil.walk_packages(wqfs.__path__, 'wqfs.')))"],
                             capture_output=True, text=True, cwd="/", timeout=60)
    installed = set(eval(listing.stdout))  # a list of names printed by the line above
    source = set()
    for directory, _, files in os.walk(os.path.join(ROOT, "wqfs")):
        for name in files:
            if name.endswith(".py"):
                module = os.path.relpath(os.path.join(directory, name), ROOT)[:-3].replace(os.sep, ".")
                source.add(module[:-len(".__init__")] if module.endswith(".__init__") else module)
    assert source - {"wqfs"} <= installed, sorted(source - installed)


def test_the_installed_package_reads_libfuses_log_in_c(venv):
    """setup.py's one extension (wqfs/fuse/_requestlog.c) is built by the install, and used."""
    check = subprocess.run([os.path.join(venv, "python"), "-c",
                            "from wqfs.fuse.requests import REQUESTS; print(REQUESTS.install(), REQUESTS.native)"],
                           capture_output=True, text=True, cwd="/", timeout=60)
    assert check.stdout.split() == ["True", "True"], check.stderr


def test_the_installed_package_has_the_c_header(venv, tmp_path):
    """wqfs/include/wqfs/watch_queue.h is package data: a program builds against the installed
    copy (include_dir() of the installed package, outside the source tree) and gets its numbers."""
    found = subprocess.run([os.path.join(venv, "python"), "-c", "import wqfs.include as i; print(i.include_dir())"],
                           capture_output=True, text=True, cwd="/", timeout=60)
    include = found.stdout.strip()
    assert found.returncode == 0 and not include.startswith(ROOT + os.sep), (include, found.stderr)
    source = tmp_path / "nr.c"
    source.write_text("#include <stdio.h>\n#include <wqfs/watch_queue.h>\n"
                      "int main(void) { printf(\"%d %d %d\\n\", __NR_watch_mount, __NR_watch_sb, WATCH_TYPE__NR); return 0; }\n")
    built = subprocess.run(["gcc", "-Wall", "-Werror", f"-I{include}", "-o", str(tmp_path / "nr"), str(source)],
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    assert subprocess.run([str(tmp_path / "nr")], capture_output=True, text=True).stdout.split() == ["1000", "1001", "4"]


def test_mount_run_and_the_client_of_the_installed_package(venv, mounted):
    added = subprocess.run([os.path.join(venv, "wqfs"), "run", "--mount", mounted, "--",
                            "keyctl", "add", "user", "from-run", "v", "@us"],
                           capture_output=True, text=True, cwd="/", timeout=60)
    assert added.returncode == 0 and added.stdout.strip().isdigit(), added.stderr
    assert os.path.exists(os.path.join(mounted, "keys", added.stdout.strip()))
    client = subprocess.run([os.path.join(venv, "python"), "-c", CLIENT, mounted],
                            capture_output=True, text=True, cwd="/", timeout=60)
    assert client.returncode == 0, client.stderr
    assert "KeyNotification" in client.stdout and "subtype=2" in client.stdout, client.stdout
