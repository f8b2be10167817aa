"""The emulated kernel: no FUSE, no trio. The general notification queue (watch_queue/) apart
from its sources (keys/, fs/), the security modules that rule on both (security/), and the
Kernel that holds one machine's state.

What this package exports is the core's public API: the fronts (the FUSE tree, the syscall
front, the CLI) import only these names (mountpoint_tests/test_boundary.py enforces it).
"""
from .cred import Cred, id_arg
from .errors import KernelError, KeyUnderConstruction
from .fs.mount_notify import path_below
from .fs.namespace import MountInfo, MountTarget
from .kernel import Kernel
from .keys import permission
from .keys.key import Key, KeyState, check_add_key_payload, check_update_payload, describe_key, shown_gid
from .keys.key_type import check_type_name
from .keys.request_key import Upcall
from .security import LSM, Smack, check_task_label, parse_load2
from .watch_queue import Filter, QueueStatistics, TypeFilter, WatchQueue, capacity_for, filter_entries_size, pack_filter

__all__ = ["Cred", "id_arg", "KernelError", "KeyUnderConstruction", "Kernel", "LSM", "Smack", "check_task_label", "parse_load2", "MountInfo", "MountTarget", "path_below", "permission", "Key", "KeyState",
           "describe_key", "shown_gid", "check_type_name", "Upcall", "check_add_key_payload", "check_update_payload",
           "Filter", "QueueStatistics", "TypeFilter", "WatchQueue", "capacity_for", "filter_entries_size",
           "pack_filter"]
