"""Inode numbers and entry names of the tree: how keys become files and back."""
from __future__ import annotations

import errno
from typing import Optional

import pyfuse3

from ..kernel import Key, KernelError

ROOT = pyfuse3.ROOT_INODE
KEYS = 2
EVENTS = 3
QUEUE = 4
PIPES = 10                 # .pipe/: hidden; the ends of pipes made by `wqfs run`
MOUNTS = 12                # mounts/<escaped path>: watch_mount text files
SUPERBLOCKS = 13           # superblocks/<escaped path>: watch_sb text files
WATCH_DIRS = {MOUNTS: "mount", SUPERBLOCKS: "sb"}  # the directories of path-named text files
# name: (inode, key id); @persistent is the caller's persistent keyring (KEYCTL_GET_PERSISTENT)
PERSISTENT = None
SPECIAL_LINKS = {"@t": (5, -1), "@p": (6, -2), "@s": (7, -3), "@u": (8, -4), "@us": (9, -5),
                 "@persistent": (11, PERSISTENT)}
LINK_INODES = {inode: (name, key_id) for name, (inode, key_id) in SPECIAL_LINKS.items()}
ROOT_ENTRIES = [("keys", KEYS), ("events", EVENTS), ("watch_queue", QUEUE), ("mounts", MOUNTS),
                ("superblocks", SUPERBLOCKS)] + \
    [(name, inode) for name, (inode, _) in SPECIAL_LINKS.items()]
ROOT_NAMES = {name.encode(): inode for name, inode in ROOT_ENTRIES} | {b".pipe": PIPES}  # what lookup finds
# The root's own names (keys, events, watch_queue, mounts, superblocks, .pipe, @t ... @us) name the same node for
# every caller for as long as the mount lives, so the kernel may keep those entries instead of
# looking each up again on every path walk; their attributes it still asks for each time
# (timeout 0: a dead daemon's mount answers ENOTCONN to any stat), and a link's target is read
# on every walk (FUSE caches no symlink target unless told), so @s still means the caller's.
# Every other name is looked up every time: what it names depends on who asks.
STATIC_ENTRY_TIMEOUT = 24 * 3600.0
STATIC_INODES = frozenset([KEYS, EVENTS, QUEUE, PIPES, MOUNTS, SUPERBLOCKS, *LINK_INODES])
DIRECTORIES = frozenset([ROOT, KEYS, EVENTS, MOUNTS, SUPERBLOCKS])  # the tree's own, not keyrings
DYNAMIC_BASE = 16          # events/ names and files being created
KEY_BASE = 1 << 32         # keys: KEY_BASE + serial
# A member listed by its serial alone, to a caller who may READ the keyring but not VIEW the
# member: HIDDEN_BASE + serial, always a plain file of mode 0. It must not be the key's own
# inode: the kernel keeps one file type per node id and makes an inode bad (EIO for everyone)
# when a reply gives it another, and the key may be a directory for those who may VIEW it.
# Above every key inode, serial_of gives it no key (a serial over 2^32): the handlers that
# take a key inode answer ENOENT for it.
HIDDEN_BASE = 1 << 33
NAME_MAX = 255


def key_inode(serial: int) -> int:
    return KEY_BASE + serial


def serial_of(inode: int) -> Optional[int]:
    return inode - KEY_BASE if inode > KEY_BASE else None


def hidden_inode(serial: int) -> int:
    return HIDDEN_BASE + serial


def hidden_serial(inode: int) -> Optional[int]:
    return inode - HIDDEN_BASE if inode > HIDDEN_BASE else None


def escape(description: str) -> str:
    return description.replace("%", "%25").replace("/", "%2F")


def unescape(text: str) -> str:
    if "%" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "%":
            code = text[i + 1:i + 3].upper()
            if code == "25":
                out.append("%")
            elif code == "2F":
                out.append("/")
            else:
                raise KernelError(errno.ENOENT, f"bad escape in {text!r}: only %25 and %2F")
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def entry_name(key: Key) -> bytes:
    """The name a keyring's directory lists the key under; its serial if type:desc is too long."""
    name = f"{key.type.name}:{escape(key.description)}".encode("utf-8", "surrogateescape")
    return name if len(name) <= NAME_MAX else str(key.serial).encode()


def parse_entry(name: bytes) -> tuple[str, str]:
    """'type:description' -> (type, description); EINVAL when it is not of that form.

    The emulated kernel keeps descriptions as text, so a name must be UTF-8.
    """
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise KernelError(errno.EINVAL, f"{name!r}: names in a keyring are UTF-8") from None
    type_name, sep, description = text.partition(":")
    if not sep or not type_name:
        raise KernelError(errno.EINVAL, f"{text!r}: names in a keyring are TYPE:DESCRIPTION")
    return type_name, unescape(description)


def parse_serial(name: bytes) -> Optional[int]:
    if name.isdigit() and len(name) <= 10 and not name.startswith(b"0"):
        value = int(name)
        return value if value < 1 << 31 else None
    return None


def unescape_unit_path(name: bytes) -> Optional[bytes]:
    """A mounts/ or superblocks/ name back to its absolute path, as `systemd-escape --unescape
    --path` reads it: "-" alone is "/", every other "-" a "/", \\xNN the byte NN ("\\x2d" a
    literal "-"). None for a name that is not of that form (a stray backslash, an empty
    component: "a--b", a leading or trailing "-")."""
    if name == b"-":
        return b"/"
    if not name or name.startswith(b"-") or name.endswith(b"-") or b"--" in name:
        return None
    out, i = bytearray(b"/"), 0
    while i < len(name):
        byte = name[i]
        if byte == 0x2D:  # "-"
            out.append(0x2F)
            i += 1
        elif byte == 0x5C:  # "\\"
            digits = name[i + 2:i + 4]
            if name[i + 1:i + 2] != b"x" or len(digits) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
                return None
            out.append(int(digits, 16))
            i += 4
        else:
            out.append(byte)
            i += 1
    return bytes(out)

