"""security/smack/smack_access.c: Smack's labels (smk_parse_smack, the built-in labels), the
access check (smk_access and smk_access_entry) and the audit line (smack_log,
smack_log_callback, and lsm_audit.c's untrusted strings); the MAY_* bits of
include/linux/fs.h and security/smack/smack.h.

A label is its text (the kernel interns labels in smack_known_list, so equal text is the
same label). The check, in smk_access's order:

1. a "*" (star) subject gets nothing;
2. a "@" (web) object or subject gets everything;
3. a "*" object gets everything;
4. a subject with the object's own label gets everything;
5. a request of read or execute only (MAY_ANYREAD), or of lock only: a "_" (floor) object,
   or a "^" (hat) subject, gets it;
6. else the explicit rule for (subject, object) must grant every bit requested (a rule's
   write implies lock); no rule, or a rule granting nothing, is a denial.
"""
from __future__ import annotations

import errno
from typing import Mapping, Optional

from .... import abi
from ...errors import KernelError

MAY_EXEC = 0x1
MAY_WRITE = 0x2
MAY_READ = 0x4
MAY_APPEND = 0x8
MAY_TRANSMUTE = 0x1000
MAY_LOCK = 0x2000
MAY_BRINGUP = 0x4000
MAY_ANYREAD = MAY_READ | MAY_EXEC

SMACK_KNOWN_HUH = "?"
SMACK_KNOWN_HAT = "^"
SMACK_KNOWN_STAR = "*"
SMACK_KNOWN_FLOOR = "_"
SMACK_KNOWN_WEB = "@"

SMK_LONGLABEL = 256  # a label is at most 255 characters

CAP_MAC_OVERRIDE = abi.CAP_MAC_OVERRIDE
CAP_MAC_ADMIN = 33

# A rule set: (subject, object) -> the access bits granted.
Rules = Mapping[tuple[str, str], int]


def smk_label_error(text: str) -> Optional[str]:
    """Why text is not a Smack label, or None if it is one. smk_parse_smack takes a label's
    characters up to the first it stops at; here the whole text must be a label: 1..255
    characters from '!' to '~' other than / " \\ and ', not starting with '-'."""
    if not text:
        return "an empty label"
    if text[0] == "-":
        return "a label may not start with '-'"
    for ch in text:
        if ch > "~" or ch <= " " or ch in "/\"\\'":
            return f"{ch!r} may not be in a label"
    if len(text) >= SMK_LONGLABEL:
        return f"a label is at most {SMK_LONGLABEL - 1} characters"
    return None


def smk_access_entry(subject: str, object_: str, rules: Rules) -> int:
    """The rule's access for the pair (write implies lock), -1 (the kernel's -ENOENT) for none."""
    may = rules.get((subject, object_))
    if may is None:
        return -1
    if may & MAY_WRITE:
        may |= MAY_LOCK
    return may


def smk_access(subject: str, object_: str, request: int, rules: Rules) -> int:
    """0 if subject may access object_ as requested, else -EACCES (smk_access)."""
    if subject == SMACK_KNOWN_STAR:
        return -errno.EACCES
    if object_ == SMACK_KNOWN_WEB or subject == SMACK_KNOWN_WEB:
        return 0
    if object_ == SMACK_KNOWN_STAR:
        return 0
    if subject == object_:
        return 0
    if (request & MAY_ANYREAD) == request or (request & MAY_LOCK) == request:
        if object_ == SMACK_KNOWN_FLOOR or subject == SMACK_KNOWN_HAT:
            return 0
    may = smk_access_entry(subject, object_, rules)
    if may <= 0 or (request & may) != request:
        return -errno.EACCES
    return 0


def smack_str_from_perm(access: int) -> str:
    """The access letters an audit line shows (rwxatl, in that order)."""
    return "".join(letter for bit, letter in ((MAY_READ, "r"), (MAY_WRITE, "w"), (MAY_EXEC, "x"),
                                               (MAY_APPEND, "a"), (MAY_TRANSMUTE, "t"), (MAY_LOCK, "l"))
                   if access & bit)


def untrusted_string(text: str) -> str:
    """audit_log_untrustedstring: quoted, or in upper-case hex when it holds a quote, a space,
    a control character or anything past '~'."""
    raw = text.encode("utf-8", "surrogateescape")
    if any(b == 0x22 or b < 0x21 or b > 0x7E for b in raw):
        return raw.hex().upper()
    return f'"{text}"'


def smack_log_callback(function: str, denied: bool, subject: str, object_: str, request: int) -> str:
    """The part of a Smack audit line that smack_log_callback writes, before lsm_audit.c's
    " pid=... comm=..." and the object's own fields."""
    requested = smack_str_from_perm(request)
    return (f"lsm=SMACK fn={function} action={'denied' if denied else 'granted'}"
            f" subject={untrusted_string(subject)} object={untrusted_string(object_)}"
            + (f" requested={requested}" if requested else " labels_differ"))


def check_task_label(label: str) -> str:
    """A label a task may be given (smack_setprocattr's rules, less its privilege check, which
    the front makes): a valid label, and never "*" or "@" (EPERM)."""
    why = smk_label_error(label)
    if why is not None:
        raise KernelError(errno.EINVAL, f"{label!r}: {why}")
    if label in (SMACK_KNOWN_STAR, SMACK_KNOWN_WEB):
        raise KernelError(errno.EPERM, f"no task may have the label {label!r}")
    return label
