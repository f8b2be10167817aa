"""security/keys/proc.c: which keys /proc/keys shows a reader (proc_keys_show's VIEW check,
possession counted)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from ... import abi
from ..cred import Cred
from . import permission
from .key import Key
from .process_keys import possessed

if TYPE_CHECKING:
    from ..kernel import Kernel


def visible_keys(k: Kernel, cred: Cred) -> Iterator[Key]:
    """Keys the caller may view."""
    for key in list(k.keys.values()):
        if not key.dead and key not in k.gc.reaping and permission.permitted(key, cred, abi.KEY_VIEW, possessed(k, cred, key)):
            yield key


def key_state(k: Kernel, key: Key) -> str:
    """What /proc/keys' flags say of a key's state, as one word: invalidated, revoked, expired,
    else uninstantiated, positive or negative."""
    if key.invalidated:
        return "invalidated"
    if key.revoked:
        return "revoked"
    if key.expired(k.now()):
        return "expired"
    return key.state.value


def key_expiry_left(k: Kernel, key: Key) -> "int | None":
    """Whole seconds until the key expires (0 once it has), None if it never does: /proc/keys'
    expiry column."""
    if key.expiry is None:
        return None
    return max(0, int(key.expiry - k.now()))
