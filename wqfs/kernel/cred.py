"""Who is asking (include/linux/cred.h's struct cred and current_cred(), and capable() of
kernel/capability.c): the identity a front derives from the real caller, never from its words."""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Hashable, Optional


@dataclass(frozen=True)
class Cred:
    """A caller's credentials and the identities its special keyrings hang off.

    thread, process and session are opaque keys chosen by the front (for the FUSE
    tree: the tid, the tgid and the POSIX session id, each with its start time so
    a reused number is a new owner).
    """
    uid: int
    gid: int
    groups: frozenset[int] = field(default_factory=frozenset)
    thread: Hashable = None
    process: Hashable = None
    session: Hashable = None
    # KEY_LOOKUP_CREATE on @s installs a new anonymous session keyring when the
    # session has none (the kernel's rule, kept by the syscall front). The FUSE
    # tree turns it off so that every terminal without one shares @us.
    implicit_session: bool = True
    # The caller's effective capability set (CapEff), as a bit mask; None when the front did not
    # look, and then capable() takes uid 0 for all of them (what core tests and old fronts assume).
    caps: Optional[int] = None
    # The task's LSM label (its security blob: for Smack, /proc/PID/attr/current), None where
    # the front gave none (no module is loaded, or a core test): a module says what None means.
    label: Optional[str] = None

    # A Cred keys the kernel's caches (the possession reach) and is hashed on nearly every
    # request: its hash is computed once, and equal Creds compare by it first.
    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.uid, self.gid, self.groups, self.thread, self.process,
                                                self.session, self.implicit_session, self.caps,
                                                self.label)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not Cred:
            return NotImplemented
        return (self._hash == other._hash  # type: ignore[attr-defined]
                and (self.uid, self.gid, self.groups, self.thread, self.process, self.session,
                     self.implicit_session, self.caps, self.label)
                == (other.uid, other.gid, other.groups, other.thread, other.process,  # type: ignore[attr-defined]
                    other.session, other.implicit_session, other.caps, other.label))  # type: ignore[attr-defined]

    @property
    def is_admin(self) -> bool:
        return self.uid == 0

    def capable(self, cap: int) -> bool:
        """capable(cap): is the capability in the caller's effective set."""
        if self.caps is None:
            return self.uid == 0
        return bool(self.caps >> cap & 1)

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


# current_cred(): the credentials of the system call being served, which a post hands to the
# post_notification hook as the event generator's. None outside any system call: the event has
# no task (the key collector, a host mount event), as the hook's cred "may be NULL". Set only
# while a security module is loaded (security/security.py's bind_current_cred).
_current: ContextVar[Optional[Cred]] = ContextVar("current_cred", default=None)


def current_cred() -> Optional[Cred]:
    return _current.get()


def id_arg(value: int) -> int:
    """A uid_t or gid_t argument as keyctl_chown_key takes it: unsigned 32 bits, (uid_t)-1 (or
    -1 itself) meaning "leave it", which Kernel.chown calls -1."""
    value &= 0xFFFFFFFF
    return -1 if value == 0xFFFFFFFF else value
