"""Conformance: each program under conformance/ prints, under `wqfs run`, what Linux printed.

The kernel's outputs are committed for two configurations of Linux 6.1 (scripts/kernel-oracle):
conformance/expected-smp/, a distribution's (SMP, Tree RCU, voluntary preemption, HZ=250), the
one users run and so the one compared here; and conformance/expected/, a uniprocessor tinyconfig
(Tiny RCU), kept as the second witness: the two differ only in when an unreferenced key dies
(lifetime.c). Each KERNEL file names its kernel and config; `make conformance` boots the kernels
under qemu to regenerate them. Here each program is compiled statically and run by
`scripts/kernel-oracle compare --config smp`, the same code `make conformance` uses, with a
private daemon of its own, as each ran in a freshly booted kernel.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from helpers import ROOT

CONFORMANCE = os.path.join(ROOT, "mountpoint_tests", "conformance")
PROGRAMS = sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(CONFORMANCE, "*.c")))
EXPECTED = {"smp": os.path.join(CONFORMANCE, "expected-smp"), "tiny": os.path.join(CONFORMANCE, "expected")}


@pytest.mark.parametrize("config", sorted(EXPECTED))
def test_every_program_has_kernel_output(config: str) -> None:
    assert PROGRAMS, "no conformance programs"
    for name in PROGRAMS:
        assert os.path.exists(os.path.join(EXPECTED[config], name + ".out")), (config, name)
    with open(os.path.join(EXPECTED[config], "KERNEL")) as f:
        assert f.readline().startswith("# Kernel that produced")
        assert f.readline().startswith("release: 6.1.")
        assert any(line.startswith(f"configuration: {config}:") for line in f)


@pytest.mark.parametrize("name", PROGRAMS)
def test_matches_kernel(name: str, tmp_path) -> None:
    env = dict(os.environ, KERNEL_ORACLE_CACHE=str(tmp_path))  # binaries stay in the test's tmp
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "kernel-oracle"), "compare", "--config", "smp",
         "--python", sys.executable, os.path.join(CONFORMANCE, name + ".c")],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "1 passed, 0 failed"
