"""An example security module for the Python hook interface (wqfs/kernel/security/security.py):
no watch may be set on a keyring whose description starts with "_krb" (Kerberos credential
caches); everything else is allowed. Loaded with

    wqfs mount --lsm python:mountpoint_tests/lsm_refuse_krb.py:RefuseKrb
"""
from __future__ import annotations

import errno

from wqfs.kernel import LSM


class RefuseKrb(LSM):
    name = "refuse_krb"

    def watch_key(self, cred, key) -> int:
        if key.is_keyring and key.description.startswith("_krb"):
            return errno.EACCES
        return 0
