"""Who may run programs under another label (`wqfs run --smack-label LABEL`), as Smack decides
who may write /proc/self/attr/current (smack_setprocattr): a task with CAP_MAC_ADMIN, and here
also the user the daemon runs as (its own daemon, whose policy it wrote). The label must be one
a task may have (no "*", no "@")."""
from __future__ import annotations

import os
from typing import Any, Optional

from .. import abi
from ..kernel import KernelError, check_task_label

MAX_LABEL = 256  # SMK_LONGLABEL: a label and its NUL


def refuse_label(security: Optional[Any], label: str, uid: int, caps: int) -> Optional[bytes]:
    """Why a peer (uid: SO_PEERCRED's; caps: its CapEff, as the caller table reads it, 0 in
    another user namespace) may not have its programs labelled label, or None."""
    if security is None:
        return b"the daemon runs no security module (mount it with --lsm smack)"
    try:
        check_task_label(label)
    except KernelError as error:
        return f"--smack-label {label!r}: {error.detail}".encode()
    if uid != os.getuid() and not caps >> abi.CAP_MAC_ADMIN & 1:
        return f"only uid {os.getuid()}, or a process with CAP_MAC_ADMIN, may choose a label".encode()
    return None
