"""Linux security modules (security/): the hook points of security/security.c that rule on keys
and notifications, and an emulated Smack (security/smack/)."""
from .security import LSM, bind_current_cred
from .smack import Smack, check_task_label, parse_load2

__all__ = ["LSM", "bind_current_cred", "Smack", "check_task_label", "parse_load2"]
