"""Extended attributes of keys: the shell's way to keyctl operations that have no file verb.

    getfattr -n user.keyctl.describe FILE       type;uid;gid;perm;description
    setfattr -n user.keyctl.perm -v 3f3f0000 FILE      setperm (hexadecimal, as getfattr shows it)
    setfattr -n user.keyctl.revoke FILE          revoke (and .invalidate, .clear)
    setfattr -n user.keyctl.timeout -v 60 FILE   set_timeout (0 clears)
    setfattr -n user.keyctl.link -v SERIAL RING  link a key (keyrings too) into RING
    setfattr -n user.keyctl.request -v user:NAME RING   a key under construction in RING
    setfattr -n user.keyctl.negate -v 60 FILE    negate it (.reject -v "60 EKEYREJECTED")
    setfattr -n user.keyctl.restrict RING        restrict_keyring (no more links)

The construction attributes (request, negate, reject) stay beside the real path, request_key(2)
under `wqfs run` with its /sbin/request-key upcall: they make and end a key under construction
with no helper, its maker's (or root's) to end, so that a shell sees construction (a key linked
before it is instantiated, watchers waiting for it). A key request_key made ends only by the
request-key authority its helper assumes, and these give none (the kernel's EPERM).
"""
from __future__ import annotations

import errno

from .. import abi
from ..kernel import Cred, Kernel, KernelError, describe_key, permission, shown_gid
from ..protocol import parse_int, parse_key_spec

PREFIX = b"user.keyctl."
READABLE = ("describe", "serial", "type", "description", "uid", "gid", "perm", "state", "expiry", "security")


def _text(value: bytes) -> str:
    try:
        return value.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KernelError(errno.EINVAL, "attribute values are ASCII text") from None


def _perm_value(value: bytes) -> int:
    """A permission mask, hexadecimal as getfattr shows it ("3f3f0000", with or without 0x), so
    that get and set round-trip. setfattr itself decodes a value that starts with 0x into bytes
    (`-v 0x3f3f0000` sends 3f 3f 00 00): four bytes that are no hex text are taken so, big-endian."""
    text = value.rstrip(b"\0\n").decode("ascii", "replace").strip()
    digits = text[2:] if text[:2].lower() == "0x" else text
    if digits and len(digits) <= 8 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return int(digits, 16)
    if len(value) == 4:
        return int.from_bytes(value, "big")
    raise KernelError(errno.EINVAL, f"perm: {text!r} is not a hexadecimal mask (e.g. 3f010000)")


def _errno_value(text: str) -> int:
    if text.isdigit():
        return int(text)
    value = getattr(errno, text, None)
    if not isinstance(value, int):
        raise KernelError(errno.EINVAL, f"{text!r} is not an errno name or number")
    return value


def get(kernel: Kernel, cred: Cred, serial: int, name: bytes) -> bytes:
    if not name.startswith(PREFIX):
        raise KernelError(errno.ENODATA, "no such attribute")
    attr = name[len(PREFIX):].decode("ascii", "replace")
    if attr not in READABLE:
        raise KernelError(errno.ENODATA, f"no attribute {attr!r}")
    if attr == "security":
        return kernel.get_security(cred, serial).encode()
    if attr == "state":
        # Like /proc/keys: shown to whoever may view the key, whatever its state
        # (describe and the others fail on a revoked or expired key, as keyctl does).
        key, possessed = kernel.lookup(cred, serial, partial=True, defer=True)
        permission.check(key, cred, abi.KEY_VIEW, possessed)
        return kernel.key_state(key).encode()
    key, _ = kernel.lookup(cred, serial, abi.KEY_VIEW, partial=True)
    if attr == "describe":
        value = describe_key(key)
    elif attr == "serial":
        value = str(key.serial)
    elif attr == "type":
        value = key.type.name
    elif attr == "description":
        value = key.description
    elif attr == "uid":
        value = str(key.uid)
    elif attr == "gid":
        value = str(shown_gid(key))
    elif attr == "perm":
        value = f"{key.perm:08x}"
    else:  # expiry
        left = kernel.key_expiry_left(key)
        value = "none" if left is None else str(left)
    return value.encode("utf-8", "surrogateescape")


def set(kernel: Kernel, cred: Cred, serial: int, name: bytes, value: bytes) -> None:
    if not name.startswith(PREFIX):
        raise KernelError(errno.ENOTSUP, "only user.keyctl.* attributes can be set")
    attr = name[len(PREFIX):].decode("ascii", "replace")
    text = _text(value)
    if attr == "perm":
        kernel.setperm(cred, serial, _perm_value(value))
    elif attr == "timeout":
        timeout = parse_int(text, "timeout")
        if not 0 <= timeout < 1 << 32:
            raise KernelError(errno.EINVAL, "timeout is 0..2^32-1 seconds")
        kernel.set_timeout(cred, serial, timeout)
    elif attr == "revoke":
        kernel.revoke(cred, serial)
    elif attr == "invalidate":
        kernel.invalidate(cred, serial)
    elif attr == "clear":
        kernel.clear(cred, serial)
    elif attr == "link":
        kernel.link(cred, parse_key_spec(text), serial)
    elif attr == "unlink":
        kernel.unlink(cred, parse_key_spec(text), serial)
    elif attr == "restrict":
        kernel.restrict_keyring(cred, serial, None, None)
    elif attr == "request":
        type_name, sep, description = text.partition(":")
        if not sep:
            raise KernelError(errno.EINVAL, "request takes TYPE:DESCRIPTION")
        kernel.construct_key(cred, type_name, description, serial)
    elif attr == "negate":
        kernel.negate(cred, serial, parse_int(text or "0", "timeout"))
    elif attr == "reject":
        parts = text.split()
        if len(parts) != 2:
            raise KernelError(errno.EINVAL, "reject takes 'TIMEOUT ERRNO'")
        kernel.reject(cred, serial, parse_int(parts[0], "timeout"), _errno_value(parts[1]))
    elif attr in READABLE:
        raise KernelError(errno.EPERM, f"{attr} is read-only")
    else:
        raise KernelError(errno.ENOTSUP, f"no attribute {attr!r}")


def names(key_is_keyring: bool) -> list[bytes]:
    return [PREFIX + a.encode() for a in READABLE]


__all__ = ["get", "set", "names"]
