"""Smack, the Simplified Mandatory Access Control Kernel (security/smack/): its key and
notification hooks (smack_lsm.py), labels and access check (smack_access.py) and the load2
rules (smackfs.py). See Documentation/admin-guide/LSM/Smack.rst."""
from .smack_access import check_task_label, smk_access
from .smack_lsm import Smack
from .smackfs import parse_load2

__all__ = ["Smack", "check_task_label", "parse_load2", "smk_access"]
