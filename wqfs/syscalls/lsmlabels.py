"""Who may run programs under another label (`wqfs run --smack-label LABEL`), as Smack decides
who may write /proc/self/attr/current (smack_setprocattr): a task with CAP_MAC_ADMIN, and here
also the user the daemon runs as (its own daemon, whose policy it wrote). The label must be one
a task may have (no "*", no "@")."""
from __future__ import annotations

import os
from typing import Any, Optional

from ..kernel import KernelError, check_task_label

MAX_LABEL = 256  # SMK_LONGLABEL: a label and its NUL
CAP_MAC_ADMIN = 33


def _has_mac_admin(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_MAC_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def refuse_label(security: Optional[Any], label: str, uid: int, pid: int) -> Optional[bytes]:
    """Why a peer (uid, pid: SO_PEERCRED's) may not have its programs labelled label, or None."""
    if security is None:
        return b"the daemon runs no security module (mount it with --lsm smack)"
    try:
        check_task_label(label)
    except KernelError as error:
        return f"--smack-label {label!r}: {error.detail}".encode()
    if uid != os.getuid() and not _has_mac_admin(pid):
        return f"only uid {os.getuid()}, or a process with CAP_MAC_ADMIN, may choose a label".encode()
    return None
