"""security/keys/request_key_auth.c: the ".request_key_auth" key type, the token an upcall's
helper holds, and the authority a task assumes with it (keyctl.c's keyctl_assume_authority,
keyctl_change_reqkey_auth; the cred->request_key_auth branches of process_keys.c's
lookup_user_key and search_process_keyrings_rcu).

request_key_auth_new makes the token for a key under construction: its description is the
target's serial in hexadecimal, it belongs to the requester (not in quota), its possessor may
view, read, search and link it, and its payload (struct request_key_auth) names the target, the
destination keyring, the credentials whose keyrings the helper may search, and the callout
information, which KEYCTL_READ returns. A task that finds the token in its own keyrings may
assume it (KEYCTL_ASSUME_AUTHORITY); then it, and the processes it forks afterwards, may
instantiate, negate or reject that one key, read the token as KEY_SPEC_REQKEY_AUTH_KEY, name
the destination as KEY_SPEC_REQUESTOR_KEYRING, and possess what the requester possesses.

Where the kernel keeps the assumed token in each task's credentials, here it is kept by the
Cred's thread token (Authorities.assumed); a front that sees a process being forked (the
upcall's) copies it with inherit_authority. Instantiation invalidates the token and completion
revokes it (request_key.py); a revoked token's payload is gone (request_key_auth_revoke), and
so are the assumptions of it.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, Optional

from ... import abi
from ..cred import Cred
from ..errors import KernelError
from . import permission
from .key import Key, instantiate, key_alloc, key_revoke
from .key_type import KeyType, register_key_type
from .keyring import search_tree
from .process_keys import search_roots

if TYPE_CHECKING:
    from ..kernel import Kernel

# key_type_request_key_auth: readable (request_key_auth_read gives the callout information),
# no update; a name starting with '.' no caller may give (key_get_type_from_user: EPERM).
REQUEST_KEY_AUTH = KeyType(".request_key_auth", readable=True, updatable=False)
register_key_type(REQUEST_KEY_AUTH)

AUTH_KEY_PERM = abi.KEY_POS_VIEW | abi.KEY_POS_READ | abi.KEY_POS_SEARCH | abi.KEY_POS_LINK | abi.KEY_USR_VIEW


@dataclass
class RequestKeyAuth:
    """struct request_key_auth (include/keys/request_key_auth-type.h). It holds references on
    its target and destination (pins) until the token is revoked."""
    target: Key
    dest: Optional[Key]
    cred: Cred  # whose keyrings a holder searches (the original requester's)
    callout: bytes
    op: str = "create"


class Authorities:
    """The tokens' payloads, by the token's serial, and the token each thread has assumed
    (cred->request_key_auth)."""

    __slots__ = ("records", "assumed")

    def __init__(self) -> None:
        self.records: dict[int, RequestKeyAuth] = {}
        self.assumed: dict[Hashable, Key] = {}


def auth_description(target_id: int) -> str:
    """The token's description: sprintf("%x", target serial), of the key_serial_t."""
    return f"{target_id & 0xFFFFFFFF:x}"


def get_request_key_auth(k: Kernel, authkey: Key) -> Optional[RequestKeyAuth]:
    """The token's payload, None once the token is revoked (request_key_auth_get)."""
    if authkey.revoked:
        return None
    return k.authorities.records.get(authkey.serial)


def current_authority(k: Kernel, cred: Cred) -> Optional[Key]:
    """cred->request_key_auth: the token the caller's thread has assumed, if any."""
    return k.authorities.assumed.get(cred.thread)


def request_key_auth_new(k: Kernel, cred: Cred, target: Key, op: str, callout: bytes,
                         dest: Optional[Key]) -> Key:
    """request_key_auth_new: the token for target. A caller that is itself servicing a request
    (it holds an authority) passes that request's context on: the new token searches the
    original requester's keyrings (EKEYREVOKED if its own token is revoked)."""
    held = current_authority(k, cred)
    if held is not None:
        irka = get_request_key_auth(k, held)
        if irka is None:
            raise KernelError(errno.EKEYREVOKED, "the authority this caller holds is revoked")
        context = irka.cred
    else:
        context = cred
    authkey = key_alloc(k, cred, REQUEST_KEY_AUTH, auth_description(target.serial), AUTH_KEY_PERM,
                        in_quota=False)  # KEY_ALLOC_NOT_IN_QUOTA
    instantiate(k, authkey, callout)  # request_key_auth_read returns the callout information
    target.pins += 1
    if dest is not None:
        dest.pins += 1
    k.authorities.records[authkey.serial] = RequestKeyAuth(target, dest, context, callout, op)
    return authkey


def request_key_auth_revoke(k: Kernel, authkey: Key) -> None:
    """key_revoke of a token (NOTIFY_KEY_REVOKED), with the type's revoke op: its payload goes."""
    key_revoke(k, authkey)
    release_request_key_auth(k, authkey)


def release_request_key_auth(k: Kernel, authkey: Key) -> None:
    """The token's payload goes (request_key_auth_revoke, request_key_auth_destroy): its
    references on the target and the destination with it, and nobody holds it assumed any more."""
    rka = k.authorities.records.pop(authkey.serial, None)
    if rka is not None:
        for held in (rka.target, rka.dest):
            if held is not None:
                held.pins -= 1
                k.gc.maybe_unreferenced(held)
    forget_authority(k, authkey)


def forget_authority(k: Kernel, authkey: Key) -> None:
    """Every thread that assumed authkey lets go of it."""
    assumed = k.authorities.assumed
    for thread in [t for t, held in assumed.items() if held is authkey]:
        del assumed[thread]


def key_get_instantiation_authkey(k: Kernel, cred: Cred, target_id: int) -> Key:
    """key_get_instantiation_authkey: the token for target_id in the caller's own keyrings (not
    the requester's: a token is never found through an authority). ENOKEY if none is there,
    EKEYREVOKED for a revoked or invalidated one."""
    authkey = search_tree(k, search_roots(k, cred), cred, REQUEST_KEY_AUTH.name, auth_description(target_id),
                          possessed=True)
    if authkey.revoked:
        raise KernelError(errno.EKEYREVOKED, f"the authority for key {target_id} is revoked")
    return authkey


def has_authority_token(k: Kernel, cred: Cred, key_id: int) -> bool:
    """Whether the caller has the token for key_id in its keyrings (what lets keyctl_describe_key
    and keyctl_get_security view a key under construction they may not otherwise view)."""
    try:
        key_get_instantiation_authkey(k, cred, key_id)
    except KernelError:
        return False
    return True


def change_reqkey_auth(k: Kernel, cred: Cred, authkey: Optional[Key]) -> None:
    """keyctl_change_reqkey_auth: the caller's thread holds authkey from now on (None: nothing)."""
    if authkey is None:
        k.authorities.assumed.pop(cred.thread, None)
    else:
        k.authorities.assumed[cred.thread] = authkey


def inherit_authority(k: Kernel, child: Hashable, parent: Hashable) -> None:
    """copy_creds at fork: the thread token child (a task forked by the one of token parent)
    holds what parent held, and from then on its own."""
    held = k.authorities.assumed.get(parent)
    if held is not None:
        k.authorities.assumed[child] = held
    else:
        k.authorities.assumed.pop(child, None)


def lookup_authority_special(k: Kernel, cred: Cred, key_id: int) -> Optional[Key]:
    """lookup_user_key's KEY_SPEC_REQKEY_AUTH_KEY (the assumed token) and
    KEY_SPEC_REQUESTOR_KEYRING (the token's destination: EKEYREVOKED once the token is
    revoked) cases, both possessed; ENOKEY without an authority (or a destination). None for
    any other id."""
    if key_id not in (abi.KEY_SPEC_REQKEY_AUTH_KEY, abi.KEY_SPEC_REQUESTOR_KEYRING):
        return None
    instkey = current_authority(k, cred)
    if instkey is None:
        raise KernelError(errno.ENOKEY, "no request-key authority is assumed")
    if key_id == abi.KEY_SPEC_REQKEY_AUTH_KEY:
        return instkey
    if instkey.revoked:
        raise KernelError(errno.EKEYREVOKED, "the assumed authority is revoked")
    rka = get_request_key_auth(k, instkey)
    if rka is None or rka.dest is None:
        raise KernelError(errno.ENOKEY, "the request has no destination keyring")
    return rka.dest


def authority_credentials(k: Kernel, cred: Cred) -> Optional[Cred]:
    """search_process_keyrings_rcu's second round: the credentials whose keyrings a caller holding
    a valid authority also searches (and so possesses), None without one."""
    instkey = current_authority(k, cred)
    if instkey is None:
        return None
    rka = get_request_key_auth(k, instkey)
    if rka is None:
        return None
    try:
        permission.key_validate(k, instkey)
    except KernelError:
        return None
    return rka.cred
