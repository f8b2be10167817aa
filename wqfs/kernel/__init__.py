"""The emulated kernel: no FUSE, no trio; keys, keyrings, queues and their rules."""
from . import permission
from .cred import Cred, id_arg
from .errors import KernelError, KeyUnderConstruction
from .filter import Filter, TypeFilter, pack_filter
from .kernel import Kernel, describe_key
from .key import Key, KeyState
from .queue import QueueStatistics, WatchQueue, capacity_for

__all__ = ["permission", "Cred", "id_arg", "Filter", "Kernel", "KernelError", "KeyUnderConstruction", "Key", "KeyState", "QueueStatistics",
           "TypeFilter", "WatchQueue", "capacity_for", "describe_key", "pack_filter"]
