"""The control language of a queue file: what a write() to MOUNT/watch_queue says.

FUSE cannot pass the watch-queue ioctls through, so each write() carries one command
in text. Parsing lives here so the FUSE front and the Python client agree on it.

    size N                      IOC_WATCH_QUEUE_SET_SIZE
    filter none                 IOC_WATCH_QUEUE_SET_FILTER with NULL
    filter [reserved=R] ENTRY...   one ENTRY per struct watch_notification_type_filter:
        type=T[,subtypes=M][,info_filter=F][,info_mask=K][,subtype_filter=W0:W1:...:W7]
    filter raw HEX              the struct's bytes, exactly as a program would pass them
    watch KEY TAG               keyctl(KEYCTL_WATCH_KEY, KEY, fd, TAG)
    unwatch KEY                 keyctl(KEYCTL_WATCH_KEY, KEY, fd, -1)
    watch_mount PATH TAG [no_automount]   watch_mount(AT_FDCWD, PATH, AT_FLAGS, fd, TAG)
    unwatch_mount PATH [no_automount]     watch_mount(AT_FDCWD, PATH, AT_FLAGS, fd, -1)
    watch_sb PATH TAG [no_automount]      watch_sb(AT_FDCWD, PATH, AT_FLAGS, fd, TAG)
    unwatch_sb PATH [no_automount]        watch_sb(AT_FDCWD, PATH, AT_FLAGS, fd, -1)

KEY is a serial or @t, @p, @s, @u, @us (or a special ID such as -3). Numbers take
0x and 0o prefixes. subtypes defaults to all 32 bits; it sets subtype_filter[0].
PATH is resolved as the writing process sees it (its root, its cwd for a relative
PATH), and written as /proc/PID/mountinfo writes paths: a byte that is not printable
ASCII, a space or a backslash is \\ and three octal digits (\\040 for a space).
no_automount is AT_NO_AUTOMOUNT.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Optional, Union

from . import abi
from .kernel import KernelError, TypeFilter, pack_filter

MAX_COMMAND = 4096
TYPE_NAMES = {"meta": abi.WATCH_TYPE_META, "key": abi.WATCH_TYPE_KEY_NOTIFY,
              "mount": abi.WATCH_TYPE_MOUNT_NOTIFY, "sb": abi.WATCH_TYPE_SB_NOTIFY}
AT_FLAG_WORDS = {"no_automount": abi.AT_NO_AUTOMOUNT}


@dataclass(frozen=True)
class SetSize:
    notes: int


@dataclass(frozen=True)
class SetFilter:
    data: Optional[bytes]  # None removes the filter


@dataclass(frozen=True)
class WatchKey:
    key_id: int
    tag: int


@dataclass(frozen=True)
class WatchMount:
    """watch_mount(2) (sb False) or watch_sb(2) (sb True) of path with dfd AT_FDCWD."""
    path: bytes
    tag: int
    at_flags: int = 0
    sb: bool = False


Command = Union[SetSize, SetFilter, WatchKey, WatchMount]


def _bad(message: str) -> KernelError:
    return KernelError(errno.EINVAL, message)


def parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise _bad(f"{what}: {text!r} is not a number") from None


def parse_key_spec(text: str) -> int:
    """A serial, a special ID, or @t/@p/@s/@u/@us/@g/@a."""
    if text in abi.SPECIAL_NAMES:
        return abi.SPECIAL_NAMES[text]
    value = parse_int(text, "key")
    if not -(1 << 31) <= value < (1 << 31):
        raise _bad(f"key: {text!r} is out of range")
    return value


def escape_path(path: bytes) -> str:
    """A path as a command word: mountinfo's octal escapes for every byte that would end the
    word, or is not printable ASCII, and for the backslash itself."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x5C else f"\\{b:03o}" for b in path)


def unescape_path(word: str) -> bytes:
    """escape_path's inverse: EINVAL for a backslash not followed by three octal digits."""
    if "\\" not in word:
        return word.encode("ascii")
    out, i = bytearray(), 0
    while i < len(word):
        if word[i] == "\\":
            digits = word[i + 1:i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 0xFF:
                raise _bad(f"path {word[:60]!r}: a backslash takes three octal digits (\\040 for a space)")
            out.append(int(digits, 8))
            i += 4
        else:
            out.append(ord(word[i]))
            i += 1
    return bytes(out)


def _parse_watch_mount(verb: str, args: list[str]) -> Optional[WatchMount]:
    """watch_mount/watch_sb PATH TAG [FLAG...], unwatch_mount/unwatch_sb PATH [FLAG...]."""
    removing = verb.startswith("unwatch_")
    fixed = 1 if removing else 2
    if len(args) < fixed:
        return None
    at_flags = 0
    for word in args[fixed:]:
        if word not in AT_FLAG_WORDS:
            raise _bad(f"{verb}: unknown flag {word[:40]!r}; the flags are {', '.join(AT_FLAG_WORDS)}")
        at_flags |= AT_FLAG_WORDS[word]
    tag = -1 if removing else parse_int(args[1], "tag")
    return WatchMount(unescape_path(args[0]), tag, at_flags, sb=verb.endswith("_sb"))


def _parse_entry(text: str) -> TypeFilter:
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or name in fields:
            raise _bad(f"filter entry {text!r}: expected NAME=VALUE once each")
        fields[name] = value
    if "type" not in fields:
        raise _bad(f"filter entry {text!r}: type= is required")
    unknown = set(fields) - {"type", "subtypes", "info_filter", "info_mask", "subtype_filter"}
    if unknown:
        raise _bad(f"filter entry {text!r}: unknown field {sorted(unknown)[0]!r}")
    if "subtypes" in fields and "subtype_filter" in fields:
        raise _bad("give subtypes= or subtype_filter=, not both")
    type_text = fields["type"]
    ftype = TYPE_NAMES[type_text] if type_text in TYPE_NAMES else parse_int(type_text, "type")
    words: list[int]
    if "subtype_filter" in fields:
        words = [parse_int(w, "subtype_filter") for w in fields["subtype_filter"].split(":")]
        if len(words) > 8:
            raise _bad("subtype_filter has at most 8 words")
    elif fields.get("subtypes", "all") == "all":
        words = [0xFFFFFFFF]
    else:
        words = [parse_int(fields["subtypes"], "subtypes")]
    values = [ftype, parse_int(fields.get("info_filter", "0"), "info_filter"),
              parse_int(fields.get("info_mask", "0"), "info_mask"), *words]
    if any(not 0 <= v <= 0xFFFFFFFF for v in values):
        raise _bad("filter fields are 32-bit unsigned numbers")
    return TypeFilter(ftype, values[1], values[2], tuple(words + [0] * (8 - len(words))))


def parse_command(data: bytes) -> Command:
    if len(data) > MAX_COMMAND:
        raise KernelError(errno.EMSGSIZE, f"a command is at most {MAX_COMMAND} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise _bad("commands are ASCII text") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise _bad("write exactly one command per write()")
    words = lines[0].split()
    verb, args = words[0], words[1:]
    if verb == "size" and len(args) == 1:
        return SetSize(parse_int(args[0], "size"))
    if verb == "watch" and len(args) == 2:
        return WatchKey(parse_key_spec(args[0]), parse_int(args[1], "tag"))
    if verb == "unwatch" and len(args) == 1:
        return WatchKey(parse_key_spec(args[0]), -1)
    if verb in ("watch_mount", "unwatch_mount", "watch_sb", "unwatch_sb"):
        command = _parse_watch_mount(verb, args)
        if command is not None:
            return command
    if verb == "filter" and args:
        if args == ["none"]:
            return SetFilter(None)
        if args[0] == "raw" and len(args) == 2:
            try:
                return SetFilter(bytes.fromhex(args[1]))
            except ValueError:
                raise _bad("filter raw takes hex bytes") from None
        reserved = 0
        if args[0].startswith("reserved="):
            reserved = parse_int(args[0][len("reserved="):], "reserved")
            args = args[1:]
        entries = [_parse_entry(arg) for arg in args]
        if len(entries) > 255:
            raise _bad("too many filter entries")
        return SetFilter(pack_filter(entries, reserved & 0xFFFFFFFF))
    raise _bad(f"unknown command {lines[0][:60]!r}; expected size, filter, watch, unwatch, "
               "watch_mount, unwatch_mount, watch_sb or unwatch_sb")


# ---- the client side: commands as bytes ----

def size_command(notes: int) -> bytes:
    return f"size {notes}\n".encode()


def watch_command(key: Union[int, str], tag: int) -> bytes:
    return f"watch {key} {tag}\n".encode()


def unwatch_command(key: Union[int, str]) -> bytes:
    return f"unwatch {key}\n".encode()


def filter_command(entries: Optional[list[TypeFilter]], reserved: int = 0) -> bytes:
    if entries is None:
        return b"filter none\n"
    return f"filter raw {pack_filter(entries, reserved).hex()}\n".encode()


def watch_mount_command(path: Union[str, bytes], tag: int, no_automount: bool = False, sb: bool = False) -> bytes:
    """watch_mount (sb: watch_sb) of path; tag -1 is the unwatch command."""
    raw = os.fsencode(path)
    verb = ("unwatch_" if tag == -1 else "watch_") + ("sb" if sb else "mount")
    words = [verb, escape_path(raw)] + ([] if tag == -1 else [str(tag)]) + (["no_automount"] if no_automount else [])
    return (" ".join(words) + "\n").encode()
