"""security/smack/smack_lsm.c: Smack's key and notification hooks (smack_key_alloc,
smack_key_getsecurity, smack_watch_key, smack_post_notification), over the rules of
smack_access.py and smackfs.py.

* A task's label is its Cred's (smk_of_task); a Cred without one is taken as "_", the floor
  label the kernel gives init and the kernel's threads (smack_init).
* A key gets its creator's label (smack_key_alloc), shown by KEYCTL_GET_SECURITY.
* smack_watch_key: the watcher needs MAY_READ from its label to the key's; a key without a
  label is allowed, and so is a watcher with CAP_MAC_OVERRIDE (smack_privileged_cred; the
  onlycap list is not modelled: every holder of the capability counts).
* smack_post_notification: META records always pass; a post with no generator (cred None)
  passes; else the generator needs MAY_WRITE from its label (the subject) to the watcher's
  (the object), with no capability override (the hook calls smk_access itself).
* A denial is reported, when an audit callback is given, as Smack's audit line (smack_log with
  the default log policy, denials only): audit(head, cred, tail), where head is what
  smack_log_callback writes, cred the current task's (the front adds lsm_audit.c's
  " pid=N comm=..." for it) and tail the object's fields (" key_serial=N key_desc=...").

The rule set is replaced whole (load_rules), never edited in place, so a check sees the old
set or the new one, never a mix.

Not modelled: smack_key_permission (in a Smack kernel every key operation needs MAY_READ or
MAY_WRITE from the caller's label to the key's, so a task that may not read a key's label
cannot even look the key up: its watch, describe and KEYCTL_GET_SECURITY fail with EACCES at
the lookup, where here only the watch does, in smack_watch_key); the onlycap and relabel-self
lists; the bringup mode ('b' is parsed and changes nothing, as in a kernel built without
CONFIG_SECURITY_SMACK_BRINGUP); the ambient label and the labels of files, sockets, IPC and
network packets (nothing here has them); the per-task rule lists of /sys/fs/smackfs/load-self2.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from .... import abi
from ...cred import Cred
from ..security import LSM
from .smack_access import (CAP_MAC_OVERRIDE, MAY_READ, MAY_WRITE, SMACK_KNOWN_FLOOR, smack_log_callback,
                           smk_access, untrusted_string)
from .smackfs import parse_load2, parse_rule

if TYPE_CHECKING:
    from ...keys.key import Key

Audit = Callable[[str, Optional[Cred], str], None]


class Smack(LSM):
    """The Smack module: its rule set (load2's), and where denials are reported."""

    name = "smack"
    untrusted_string = staticmethod(untrusted_string)  # how an audit line shows a string (for fronts)

    def __init__(self, rules: Optional[Mapping[tuple[str, str], int]] = None,
                 audit: Optional[Audit] = None) -> None:
        self._rules: Mapping[tuple[str, str], int] = dict(rules or {})
        self.audit = audit

    # ---- the rule set (smackfs) ----

    @property
    def rules(self) -> Mapping[tuple[str, str], int]:
        return self._rules

    def load_rules(self, text: str, source: str = "the rules") -> int:
        """Replace the whole rule set by a load2 file's (EINVAL naming the bad line, and the old
        set kept); the number of rules now loaded."""
        rules = parse_load2(text, source)
        self._rules = rules
        return len(rules)

    def set_rule(self, rule: str) -> None:
        """One "subject object access" rule, added or replacing the pair's, as a write to load2."""
        subject, object_, access = parse_rule(rule)
        rules = dict(self._rules)
        rules[(subject, object_)] = access
        self._rules = rules

    @staticmethod
    def task_label(cred: Optional[Cred]) -> str:
        """smk_of_task: the Cred's label, the floor for one without."""
        return cred.label if cred is not None and cred.label else SMACK_KNOWN_FLOOR

    def _denied(self, function: str, cred: Optional[Cred], subject: str, object_: str, request: int,
                tail: str = "") -> int:
        if self.audit is not None:
            self.audit(smack_log_callback(function, True, subject, object_, request), cred, tail)
        return errno.EACCES

    # ---- the hooks ----

    def key_alloc(self, key: Key, cred: Cred) -> int:
        key.security = self.task_label(cred)
        return 0

    def key_getsecurity(self, key: Key) -> Optional[str]:
        return key.security

    def watch_key(self, cred: Cred, key: Key) -> int:
        label = key.security
        if label is None:  # a key not yet labelled: let it be
            return 0
        if cred.capable(CAP_MAC_OVERRIDE):
            return 0
        subject = self.task_label(cred)
        if smk_access(subject, label, MAY_READ, self._rules) == 0:
            return 0
        return self._denied("smack_watch_key", cred, subject, label, MAY_READ,
                            f" key_serial={key.serial} key_desc={untrusted_string(key.description)}")

    def post_notification(self, w_cred: Optional[Cred], cred: Optional[Cred], rtype: int, subtype: int,
                          info: int, record: bytes) -> int:
        if rtype == abi.WATCH_TYPE_META or cred is None:
            return 0
        subject = cred.label or SMACK_KNOWN_FLOOR
        object_ = w_cred.label if w_cred is not None and w_cred.label else SMACK_KNOWN_FLOOR
        if smk_access(subject, object_, MAY_WRITE, self._rules) == 0:
            return 0
        return self._denied("smack_post_notification", cred, subject, object_, MAY_WRITE)
