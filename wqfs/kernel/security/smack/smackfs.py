"""security/smack/smackfs.c: the rules of /sys/fs/smackfs/load2 (smk_write_rules_list in
SMK_LONG_FMT, smk_parse_long_rule, smk_fill_rule, smk_perm_from_str, smk_set_access), read
from a file and parsed strictly.

A rule is "subject object access": two labels and the access letters r w x a t l b (either
case; '-' for none), separated by white space. One rule a line; blank lines are skipped. A
later rule for the same subject and object replaces the earlier one, as a write to load2
does (its access becomes exactly the new one).

Stricter than the kernel, which takes a label's characters up to the first it stops at, an
access string's letters up to the first it does not know, and any number of rules a line: a
line here that is not exactly one valid rule is refused, with its number, and then nothing of
the file is taken (so a typo never loads half a policy).
"""
from __future__ import annotations

import errno

from ...errors import KernelError
from .smack_access import (MAY_APPEND, MAY_BRINGUP, MAY_EXEC, MAY_LOCK, MAY_READ, MAY_TRANSMUTE,
                           MAY_WRITE, smk_label_error)

_ACCESS_LETTERS = {"-": 0, "r": MAY_READ, "w": MAY_WRITE, "x": MAY_EXEC, "a": MAY_APPEND,
                   "t": MAY_TRANSMUTE, "l": MAY_LOCK, "b": MAY_BRINGUP}


def smk_perm_from_str(text: str) -> int:
    """The access bits of an access string; EINVAL for a letter outside rwxatlb and '-'."""
    perm = 0
    for ch in text:
        bit = _ACCESS_LETTERS.get(ch.lower())
        if bit is None:
            raise KernelError(errno.EINVAL, f"{ch!r} is not an access letter (rwxatlb, or - for none)")
        perm |= bit
    return perm


def parse_rule(line: str) -> tuple[str, str, int]:
    """One "subject object access" rule (EINVAL with the reason)."""
    fields = line.split()
    if len(fields) != 3:
        raise KernelError(errno.EINVAL, f"a rule is \"subject object access\", not {len(fields)} field(s)")
    subject, object_, access = fields
    for what, label in (("subject", subject), ("object", object_)):
        why = smk_label_error(label)
        if why is not None:
            raise KernelError(errno.EINVAL, f"the {what} {label!r}: {why}")
    return subject, object_, smk_perm_from_str(access)


def parse_load2(text: str, source: str = "the rules") -> dict[tuple[str, str], int]:
    """Every rule of a load2 file, as (subject, object) -> access; EINVAL naming source and the
    first bad line's number, and nothing taken, if any line is not a rule."""
    rules: dict[tuple[str, str], int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            subject, object_, access = parse_rule(line)
        except KernelError as error:
            raise KernelError(errno.EINVAL, f"{source}, line {number}: {error.detail}: {line.strip()!r}") from None
        rules[(subject, object_)] = access
    return rules
