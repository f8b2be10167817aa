"""security/keys/request_key.c: request_key_and_link and the construction of a key by the upcall
(construct_key_and_link, construct_get_dest_keyring, construct_alloc_key, construct_key,
call_sbin_request_key, complete_request_key, wait_for_key_construction); and keyctl.c's ends of
construction by authority (keyctl_instantiate_key_common, keyctl_reject_key,
get_instantiation_keyring), with key.c's key_instantiate_and_link and key_reject_and_link.

request_key(2) with callout information and no key found makes a key under construction,
linked into the destination keyring at once, a ".request_key_auth" token for it
(request_key_auth.py) and a session keyring "_req.SERIAL" holding the token, and returns the
Upcall: what call_sbin_request_key hands to the usermode helper, `/sbin/request-key create KEY
UID GID THREAD PROCESS SESSION` with HOME=/ and PATH=/sbin:/bin:/usr/sbin:/usr/bin. A front runs
it (the core runs nothing), installs the session keyring for the helper (umh_keys_init) and,
once the helper has exited, completes it (complete_upcall): a key still under construction (or
no longer valid) is negated for key_negative_timeout seconds and the requester gets ENOKEY;
else the token is revoked and the requester waits for the key as any later requester does.

The tree's construct_key (setfattr user.keyctl.request) makes a key under construction with no
upcall and no token: its maker, or root, ends it (constructor_uid). Keys from request_key end
only by the assumed authority, as in the kernel.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Union

from ... import abi
from ..cred import Cred
from ..errors import KernelError, KeyUnderConstruction
from . import permission
from .key import Key, KeyState, check_add_key_payload, instantiate as instantiate_key, key_alloc, key_invalidate, key_reject
from .key_type import KeyType, check_type_name, lookup_type
from .keyring import check_link, check_link_restriction, key_link, key_link_begin, keyring_alloc, search_nested_keyrings
from .process_keys import (install_keyring, look_up_user_keyrings, lookup_keyring, lookup_user_key, possessed,
                           search_roots, session_keyring)
from .request_key_auth import (REQUEST_KEY_AUTH, RequestKeyAuth, authority_credentials, change_reqkey_auth,
                               current_authority, get_request_key_auth, has_authority_token,
                               release_request_key_auth, request_key_auth_new, request_key_auth_revoke)

if TYPE_CHECKING:
    from ..kernel import Kernel

KEY_NEGATIVE_TIMEOUT = 60  # key_negative_timeout: how long a failed construction's negative key lasts
REQUEST_KEY = "/sbin/request-key"
UMH_ENVIRONMENT = ("HOME=/", "PATH=/sbin:/bin:/usr/sbin:/usr/bin")
REQ_KEYRING_PERM = abi.KEY_POS_ALL | abi.KEY_USR_VIEW | abi.KEY_USR_READ  # the helper's "_req." session keyring


@dataclass(eq=False)
class Upcall:
    """One call_sbin_request_key: the usermode helper a front is to run (path, argv, envp, as
    root, with the session keyring umh_keys_init installs), for whom (uid: the original
    requester's fsuid, whose helpers these are), and, once complete_upcall has run, error: 0,
    or the errno the requester gets."""
    serial: int
    path: str
    argv: tuple[str, ...]
    envp: tuple[str, ...]
    uid: int
    error: Optional[int] = None
    _key: Optional[Key] = field(default=None, repr=False)
    _authkey: Optional[Key] = field(default=None, repr=False)
    _session: Optional[Key] = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.error is not None


class Constructions:
    """Keys under construction (so that a request finds them and waits, as the kernel's search
    would), and the upcalls on the way, by the key's serial."""

    __slots__ = ("keys", "upcalls")

    def __init__(self) -> None:
        self.keys: dict[int, Key] = {}
        self.upcalls: dict[int, Upcall] = {}


def _constructed(k: Kernel, key: Key) -> None:
    k.constructions.keys.pop(key.serial, None)


def _constructing(k: Kernel, key: Key) -> None:
    """Note a key under construction; every 256th, forget those that were freed meanwhile (a
    key the tree made under construction may be unlinked and collected before it ends)."""
    keys = k.constructions.keys
    if len(keys) % 256 == 255:
        for serial in [s for s, old in keys.items() if old.dead or old.state is not KeyState.UNINSTANTIATED]:
            del keys[serial]
    keys[key.serial] = key


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


# ---------------------------------------------------------------- the search

def _search_cred_keyrings(k: Kernel, cred: Cred, index: tuple[str, str]) -> Union[Key, KernelError]:
    """search_cred_keyrings_rcu: thread, process, then session (or user-session) keyring, each
    searched (SEARCH on it, possessed) for a live positive match. A match wins; then a negative
    key (ENOKEY), then nothing found (EAGAIN: "the keyrings were searchable"), then the last
    other error."""
    now = k.now()
    ret: Optional[KernelError] = None
    err = KernelError(errno.EAGAIN, f"no {index[0]}:{index[1]} found")
    for ring in search_roots(k, cred):
        if not permission.permitted(ring, cred, abi.KEY_SEARCH, True):  # keyring_search_rcu
            err = KernelError(errno.EACCES, f"keyring {ring.serial} is not searchable")
            continue
        result = search_nested_keyrings(ring, cred, index, True, now, skip_expired=True)
        if isinstance(result, Key):
            return result
        if result is None:
            if ret is None:
                ret = KernelError(errno.EAGAIN, f"no {index[0]}:{index[1]} found")
        elif result.errno == errno.ENOKEY:
            ret = result
        else:
            err = result
    return ret if ret is not None else err


def search_process_keyrings(k: Kernel, cred: Cred, type_name: str, description: str) -> Key:
    """search_process_keyrings_rcu: the caller's keyrings, then, for a caller holding a valid
    authority, the requester's (searched with the requester's credentials; never for a token).
    EAGAIN when nothing was found and a keyring was searchable; ENOKEY for a negative key."""
    index = (type_name, description)
    found = _search_cred_keyrings(k, cred, index)
    if isinstance(found, Key):
        return found
    err = found
    ret = KernelError(errno.EACCES, f"no {type_name}:{description} found")
    requester = authority_credentials(k, cred) if type_name != REQUEST_KEY_AUTH.name else None
    if requester is not None:
        second = _search_cred_keyrings(k, requester, index)
        if isinstance(second, Key):
            return second
        ret = second
    if errno.ENOKEY in (err.errno, ret.errno):
        raise err if err.errno == errno.ENOKEY else ret
    raise ret if err.errno == errno.EACCES else err


def _found_under_construction(k: Kernel, cred: Cred, index: tuple[str, str]) -> Optional[Key]:
    """A key under construction the caller's search would find (keyring_search_iterator takes a
    key whose state is still 0): the caller then waits for it."""
    for serial, key in list(k.constructions.keys.items()):
        if key.dead or key.state is not KeyState.UNINSTANTIATED:
            del k.constructions.keys[serial]
            continue
        if key.index_key == index and not key.revoked and not key.invalidated \
                and possessed(k, cred, key):
            return key
    return None


# ---------------------------------------------------------------- request_key(2)

def request_key(k: Kernel, cred: Cred, type_name: str, description: str, dest_id: int = 0,
                callout: Optional[bytes] = None) -> Union[int, Upcall]:
    """request_key(2): WRITE on the destination keyring (dest_id 0: none given). A key the
    caller's keyrings hold (possessed; expired keys skipped; one under construction will do, to
    be waited for with wait_for_key_construction) is linked into the destination (LINK on it)
    and its serial returned. Else, without callout information, ENOKEY; with it, a new key
    under construction is linked into the destination (or the default keyring: WRITE on it)
    and the Upcall that is to construct it is returned."""
    check_type_name(type_name)  # key_get_type_from_user
    dest = lookup_keyring(k, cred, dest_id, abi.KEY_WRITE) if dest_id else None
    ktype = lookup_type(type_name)
    try:
        found: Optional[Key] = search_process_keyrings(k, cred, type_name, description)
    except KernelError as error:
        if error.errno != errno.EAGAIN:
            raise
        found = _found_under_construction(k, cred, (type_name, description))
    if found is not None:
        if dest is not None:
            permission.check(found, cred, abi.KEY_LINK, True)  # found by a search: possessed
            check_link(dest, found)
            key_link(k, dest, found)
        return found.serial
    if callout is None:
        raise KernelError(errno.ENOKEY, f"no {type_name}:{description} found")
    return construct_key_and_link(k, cred, ktype, description, callout, dest)


def construct_get_dest_keyring(k: Kernel, cred: Cred, dest: Optional[Key]) -> Key:
    """construct_get_dest_keyring for the default (KEY_REQKEY_DEFL_DEFAULT) setting: the given
    keyring; else the destination of the request the caller is servicing (no permission
    checked, so that a helper's own request_key links where its requester asked); else the
    thread, process, session or user-session keyring, the first there is, with WRITE."""
    if dest is not None:
        return dest
    instkey = current_authority(k, cred)
    if instkey is not None:
        rka = get_request_key_auth(k, instkey)
        if rka is not None and rka.dest is not None:
            return rka.dest
    ring = (k.process.tables["thread"].get(cred.thread) or k.process.tables["process"].get(cred.process)
            or session_keyring(k, cred) or look_up_user_keyrings(k, cred.uid)[1])
    permission.check(ring, cred, abi.KEY_WRITE, True)
    return ring


def construct_key_and_link(k: Kernel, cred: Cred, ktype: KeyType, description: str, callout: bytes,
                           dest: Optional[Key]) -> Upcall:
    """construct_key_and_link: no keyrings (EPERM); the destination; construct_alloc_key (a key
    under construction owned by the caller, in its quota, linked into the destination at once:
    NOTIFY_KEY_LINKED); then construct_key and call_sbin_request_key up to running the helper."""
    if ktype.is_keyring:
        raise KernelError(errno.EPERM, "keyrings cannot be constructed by request_key")
    dest = construct_get_dest_keyring(k, cred, dest)
    if not description:
        raise KernelError(errno.EINVAL, "a description is required")
    with key_link_begin(k, dest, (ktype.name, description)) as charged:
        key = key_alloc(k, cred, ktype, description, ktype.default_perm())
    # construct_alloc_key links with __key_link directly: no link restriction is consulted
    key_link(k, dest, key, charged)
    _constructing(k, key)
    try:
        authkey = request_key_auth_new(k, cred, key, "create", callout, dest)
    except KernelError:
        key_negate_and_link(k, key, KEY_NEGATIVE_TIMEOUT, None, None)  # construction_failed
        raise
    return call_sbin_request_key(k, cred, key, authkey)


def call_sbin_request_key(k: Kernel, cred: Cred, key: Key, authkey: Key) -> Upcall:
    """call_sbin_request_key, up to call_usermodehelper_keys: the helper's session keyring
    "_req.SERIAL" (the caller's, not in quota: KEY_ALLOC_QUOTA_OVERRUN) holding the token, and
    the argv: the key, the caller's fsuid and fsgid, its thread and process keyrings ("0" when
    none) and its session keyring (the user-session keyring when it has none)."""
    rka = get_request_key_auth(k, authkey)
    assert rka is not None
    user_session = look_up_user_keyrings(k, cred.uid)[1]
    ring = keyring_alloc(k, cred, f"_req.{key.serial}", REQ_KEYRING_PERM, in_quota=False)
    key_link(k, ring, authkey)
    thread = k.process.tables["thread"].get(cred.thread)
    process = k.process.tables["process"].get(cred.process)
    session = session_keyring(k, cred) or user_session
    argv = (REQUEST_KEY, rka.op, str(key.serial), str(_signed(cred.uid)), str(_signed(cred.gid)),
            str(thread.serial if thread else 0), str(process.serial if process else 0), str(session.serial))
    authkey.pins += 1  # construct_key's reference, until it returns
    ring.pins += 1     # call_sbin_request_key's, until the helper is done
    upcall = Upcall(key.serial, REQUEST_KEY, argv, UMH_ENVIRONMENT, rka.cred.uid, None, key, authkey, ring)
    k.constructions.upcalls[key.serial] = upcall
    return upcall


def umh_keys_init(k: Kernel, upcall: Upcall, helper: Cred) -> None:
    """umh_keys_init: the helper's credentials get the "_req." keyring as their session keyring
    (install_session_keyring_to_cred): helper is the Cred of the process that will run it,
    before it runs."""
    if upcall.done or upcall._session is None:
        raise KernelError(errno.EINVAL, "the upcall is over")
    install_keyring(k, "session", helper.session, upcall._session)


def complete_upcall(k: Kernel, upcall: Upcall, error: int = 0) -> int:
    """The end of call_sbin_request_key, once the helper has exited (error 0), or could not be
    run (error: why): a key still under construction, or no longer valid, is ENOKEY; then
    complete_request_key (on error the key is negated for key_negative_timeout seconds and
    the token invalidated, else the token is revoked) and the references are put. Returns the
    errno the requester gets, 0 when it is to wait for the key (wait_for_key_construction).
    Completing twice changes nothing."""
    if upcall.error is not None:
        return upcall.error
    key, authkey, ring = upcall._key, upcall._authkey, upcall._session
    assert key is not None and authkey is not None and ring is not None
    if not error and (key.state is KeyState.UNINSTANTIATED or _invalid(k, key)):
        error = errno.ENOKEY
    if error:
        key_negate_and_link(k, key, KEY_NEGATIVE_TIMEOUT, None, authkey)
        release_request_key_auth(k, authkey)
    else:
        request_key_auth_revoke(k, authkey)
    for held in (authkey, ring):
        held.pins -= 1
        k.gc.maybe_unreferenced(held)
    upcall._key = upcall._authkey = upcall._session = None
    upcall.error = error
    k.constructions.upcalls.pop(upcall.serial, None)
    k.gc.wake()
    return error


def _invalid(k: Kernel, key: Key) -> bool:
    try:
        permission.key_validate(k, key)
    except KernelError:
        return True
    return False


def wait_for_key_construction(k: Kernel, cred: Cred, key_id: int) -> int:
    """wait_for_key_construction, as request_key(2) ends: KeyUnderConstruction while the key is
    under construction (a front waits, interruptibly, and asks again); then the key's stored
    error if it is negative, else key_validate's; else its serial. No permission: the caller
    holds the key it requested."""
    key = k.keys.get(key_id)
    if key is None or key.dead:
        raise KernelError(errno.ENOKEY, f"no key {key_id}")
    if key.state is KeyState.UNINSTANTIATED:
        raise KeyUnderConstruction(key.serial)
    if key.state is KeyState.NEGATIVE:
        raise KernelError(key.reject_error, f"key {key.serial} is negative")
    permission.key_validate(k, key)
    return key.serial


# ---------------------------------------------------------------- the tree's construction

def construct_key(k: Kernel, cred: Cred, type_name: str, description: str, ring_id: int) -> int:
    """The tree's construct_alloc_key without an upcall: a key under construction in ring
    (WRITE), which its maker (or root) instantiates or rejects."""
    ring = lookup_keyring(k, cred, ring_id, abi.KEY_WRITE)
    ktype = lookup_type(type_name)
    if not description:
        raise KernelError(errno.EINVAL, "a description is required")
    ktype.check_description(description)
    check_link_restriction(ring)
    with key_link_begin(k, ring, (type_name, description)) as charged:
        key = key_alloc(k, cred, ktype, description, ktype.default_perm())
    key.constructor_uid = cred.uid
    key_link(k, ring, key, charged)
    _constructing(k, key)
    return key.serial


# ---------------------------------------------------------------- the end of construction

def has_authority(k: Kernel, cred: Cred, key_id: int) -> bool:
    """What lets keyctl_describe_key and keyctl_get_security view a key they may not: the token
    for it in the caller's keyrings (key_get_instantiation_authkey); for a key the tree made
    under construction, being its maker (or root)."""
    key = k.keys.get(key_id) if key_id > 0 else None
    if key is not None and key.constructor_uid is not None:
        return (not key.dead and key.state is KeyState.UNINSTANTIATED
                and (key.constructor_uid == cred.uid or cred.is_admin))
    return has_authority_token(k, cred, key_id)


def construction_target(k: Kernel, cred: Cred, key_id: int) -> tuple[Key, Optional[Key], Optional[RequestKeyAuth]]:
    """The key an instantiate or reject is for, and the authority for it: the assumed token
    (EPERM without one or for another key, EKEYREVOKED once it is revoked); for a key the tree
    made under construction, its maker or root (EPERM otherwise)."""
    key = k.keys.get(key_id) if key_id > 0 else None
    if key is not None and key.constructor_uid is not None:
        if has_authority(k, cred, key_id):
            return key, None, None
        raise KernelError(errno.EPERM, f"no authority to instantiate key {key_id}")
    instkey = current_authority(k, cred)
    if instkey is None:
        raise KernelError(errno.EPERM, "no request-key authority is assumed")
    rka = get_request_key_auth(k, instkey)
    if rka is None:
        raise KernelError(errno.EKEYREVOKED, "the assumed authority is revoked")
    if rka.target.serial != key_id:
        raise KernelError(errno.EPERM, f"the assumed authority is not for key {key_id}")
    return rka.target, instkey, rka


def get_instantiation_keyring(k: Kernel, cred: Cred, ring_id: int, rka: Optional[RequestKeyAuth]) -> Optional[Key]:
    """get_instantiation_keyring: 0, none; a serial, that keyring, with WRITE (possessed also
    through the authority, as search_process_keyrings_rcu has it); KEY_SPEC_REQKEY_AUTH_KEY,
    EINVAL; any other special keyring, the destination recorded in the token; below that,
    ENOKEY. (A key the tree made under construction takes any keyring the caller may WRITE.)"""
    if ring_id == 0:
        return None
    if rka is None:
        return lookup_keyring(k, cred, ring_id, abi.KEY_WRITE)
    if ring_id > 0:
        ring, _ = lookup_user_key(k, cred, ring_id, create=True)
        permission.check(ring, cred, abi.KEY_WRITE, possessed(k, cred, ring))
        return ring
    if ring_id == abi.KEY_SPEC_REQKEY_AUTH_KEY:
        raise KernelError(errno.EINVAL, "the authorisation key is no keyring to link into")
    if ring_id >= abi.KEY_SPEC_REQUESTOR_KEYRING:
        return rka.dest
    raise KernelError(errno.ENOKEY, f"invalid keyring ID {ring_id}")


def check_instantiate(k: Kernel, cred: Cred, key_id: int) -> None:
    """KernelError unless the caller has the authority to instantiate key_id: what
    keyctl_instantiate_key_common checks before it copies the payload in."""
    construction_target(k, cred, key_id)


def _end_of_construction(k: Kernel, cred: Cred, key: Key, instkey: Optional[Key]) -> None:
    """key_instantiate_and_link's and key_reject_and_link's last step, "disable the
    authorisation key" (key_invalidate: NOTIFY_KEY_INVALIDATED on the token), then the caller
    gives up the authority it used (keyctl_change_reqkey_auth(NULL))."""
    _constructed(k, key)
    if instkey is not None:
        key_invalidate(k, instkey)
        change_reqkey_auth(k, cred, None)


def instantiate(k: Kernel, cred: Cred, key_id: int, payload: bytes, ring_id: int = 0) -> None:
    """keyctl_instantiate_key_common: needs the authority for the key, and WRITE on the keyring
    to link into. The payload is the type's (EINVAL); a key no longer under construction is
    EBUSY. Posts NOTIFY_KEY_INSTANTIATED on the key, NOTIFY_KEY_LINKED on the keyring, then
    NOTIFY_KEY_INVALIDATED on the token."""
    check_add_key_payload(len(payload))
    key, instkey, rka = construction_target(k, cred, key_id)
    ring = get_instantiation_keyring(k, cred, ring_id, rka)
    key.type.check_payload(payload)
    if ring is not None:
        check_link(ring, key)
    if key.state is not KeyState.UNINSTANTIATED:
        raise KernelError(errno.EBUSY, f"key {key.serial} is instantiated already")
    with key_link_begin(k, ring, key.index_key) as charged:
        instantiate_key(k, key, payload)
    if ring is not None:
        key_link(k, ring, key, charged)
    _end_of_construction(k, cred, key, instkey)


def key_negate_and_link(k: Kernel, key: Key, timeout: int, ring: Optional[Key], authkey: Optional[Key]) -> bool:
    """key_negate_and_link without a caller (request_key.c's own): the key negative (ENOKEY) for
    timeout seconds, linked into ring, the token invalidated; False (EBUSY) if the key was
    no longer under construction."""
    if key.state is not KeyState.UNINSTANTIATED or key.dead:
        return False
    key_reject(k, key, timeout, errno.ENOKEY)
    if ring is not None:
        key_link(k, ring, key)
    _constructed(k, key)
    if authkey is not None:
        key_invalidate(k, authkey)
    k.gc.wake()
    return True


def reject(k: Kernel, cred: Cred, key_id: int, timeout: int, error: int, ring_id: int = 0) -> None:
    """keyctl_reject_key: an error the kernel may store (EINVAL otherwise); the authority for the
    key; WRITE on the keyring to link into (a restricted one is EPERM); EBUSY once the key is
    no longer under construction. Posts NOTIFY_KEY_INSTANTIATED (aux -error) on the key,
    NOTIFY_KEY_LINKED on the keyring, NOTIFY_KEY_INVALIDATED on the token."""
    if error <= 0 or error >= 4096 or error in (512, 513, 514, 516):
        raise KernelError(errno.EINVAL, f"cannot reject with error {error}")
    key, instkey, rka = construction_target(k, cred, key_id)
    ring = get_instantiation_keyring(k, cred, ring_id, rka)
    if ring is not None:
        check_link(ring, key)
    if key.state is not KeyState.UNINSTANTIATED:
        raise KernelError(errno.EBUSY, f"key {key.serial} is instantiated already")
    with key_link_begin(k, ring, key.index_key) as charged:
        key_reject(k, key, timeout, error)
    if ring is not None:
        key_link(k, ring, key, charged)
    _end_of_construction(k, cred, key, instkey)
    k.gc.wake()


def negate(k: Kernel, cred: Cred, key_id: int, timeout: int, ring_id: int = 0) -> None:
    """keyctl_negate_key: reject with ENOKEY (the same authority and permissions)."""
    reject(k, cred, key_id, timeout, errno.ENOKEY, ring_id)

