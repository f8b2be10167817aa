"""`wqfs watch`: keyctl watch's lines and exit, inotifywait's options, over one queue of a mount;
mount and superblock watches (--mounts, --sb) in the 2020 patches' watch_test.c lines beside them.

keyctl users get keyctl's lines (`<id> link <aux>`, `<id> gc`) and its ends: the watched key's
destruction prints `gc` and exits 0, Ctrl-C kills it by SIGINT. inotifywait users get
"Watches established." on stderr, -q, -t/--timeout and its exit codes (0, 1 when the target is
gone, 2 on timeout), -c/--count, --format with --timefmt, --csv, -r and --include/--exclude.

Everything goes through the mount: the queue is MOUNT/watch_queue read with wqfs.client, names
are the keys/SERIAL xattrs, a keyring's members its directory. Nothing here decides a rule of
the kernel; what may be watched, viewed or listed is the daemon's answer.
"""
from __future__ import annotations

import argparse
import csv
import errno
import fnmatch
import io
import json
import os
import signal
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Iterable, Optional, TextIO

from . import abi, records
from .mounts import WQFS_TYPE, default_mountpoint, mount_type

WORDS = ("inst", "upd", "link", "unlk", "clr", "rev", "inv", "attr")  # keyctl watch's, by subtype
LETTERS = "iplncrvs"  # keyctl watch -f: the same subtypes, a letter each
TREE_TOP = ("@t", "@p", "@s", "@u", "@us", "@persistent", "keys")  # MOUNT/... names a KEY may start with
SPECIAL_BY_ID = {number: name for name, number in abi.SPECIAL_NAMES.items()}
FIELDS = {  # --format: letter -> what it shows (the --help table, the man page)
    "i": "the record's key (serial); for gc, the key whose watch went; a mount record's mount "
         "(triggered_on), a superblock record's sb_id (st_dev), a removal's mount or sb_id",
    "e": "the event: inst upd link unlk clr rev inv attr gc loss; for mounts and superblocks, "
         "the subtype's name (new_mount, unmount, readonly...) and removal",
    "a": "the other key of link and unlk (serial; empty for other events); a mount record's "
         "auxiliary mount; a superblock error's errno",
    "g": "the watch's tag: 1 for the first KEY, 2 for the second...",
    "k": "type of the key (user, keyring, ...)",
    "d": "description of the key",
    "n": "name of the key, type:description as its keyring's directory lists it",
    "K": "type of the aux key",
    "D": "description of the aux key",
    "N": "name of the aux key",
    "T": "the time the record was read, as --timefmt",
    "%": "a percent sign",
}
DEFAULT_TIMEFMT = "%H:%M:%S"
MAX_TAG = 255  # a watch's tag is 0..255 (KEYCTL_WATCH_KEY)

EPILOG = """\
KEY is a serial, @t @p @s @u @us (as keyctl), @persistent, or a path to a key in the tree: one
starting with @s/, @u/, keys/... is taken in the mount (@s/keyring:work), any other names a
file of a wqfs mount (/run/wqfs/@s/keyring:work), which is then the mount.

--mounts PATH watches the directory PATH (watch_mount): a change is posted to it when the
mount the change is triggered on (a new or removed mount's parent, a remounted mount itself)
has its root at PATH or below it, so --mounts / sees every change of the namespace. --sb PATH
watches the superblock PATH is on (watch_sb). Both take PATH as this process sees it
(relative to its cwd).
Their records are watch_test.c's lines: MOUNT 0000002f change=0[new_mount] aux=30,
SUPER 00000035 change=0[readonly]; the watched mount's or superblock's going prints REMOVAL
of watchpoint TAG. Their tags follow the KEYs'.

--format fields:
  %i  the record's key (serial)      %a  the other key of link, unlk
  %e  the event: inst upd link unlk clr rev inv attr gc loss
      (mount and superblock records: %i the mount or sb_id, %e new_mount unmount ...
      readonly setattr error removal, %a the aux mount or the errno, all in decimal)
  %g  the watch's tag (1: the first KEY's)
  %k  the key's type    %d  its description    %n  its name
  %K  aux's type        %D  its description    %N  its name
  %T  when the record was read (--timefmt)     %%  a percent sign
A name shows what the tree lists (%2F for /, %25 for %, control characters %XX); a key that
may not be viewed has none (its serial stands alone), and a key already gone the name it had
when this watch saw it, if it did.

--include and --exclude take shell globs (fnmatch) matched against the description and
against type:description of the record's key and of its aux key: a record is shown if an
--include matches one of them (or there is no --include) and no --exclude does. gc and loss
records pass every filter, as removal records pass the kernel's; so do mount and superblock
records (-f and -e choose key events).

-r watches each KEY and every keyring linked below it; a keyring linked later into one of
them is watched, then listed, so that keyrings linked into it before its watch landed are
watched too (their records from before are not shown: there were none for this queue). A
keyring unlinked (or cleared away) from every watched keyring it was found in is unwatched,
with what was found only through it; its removal record is not shown.

Exit status: 0 when every KEY's key was destroyed (after its gc line, as keyctl watch) and
every --mounts and --sb watch removed (its mount or superblock gone), or after --count events;
1 on an error, or, with --timeout or --count, when every watch so went (inotifywait's "target
gone"); 2 on bad usage, or when --timeout passed with no
event. Ctrl-C kills it by SIGINT, as it kills keyctl watch (the shell says 130)."""


def reflow(text: str, width: int = 78) -> str:
    """Fill the plain lines of a help text to a terminal's width; indented lines (tables) stay."""
    out: list[str] = []
    run: list[str] = []
    for line in text.splitlines() + [""]:
        if line.strip() and not line.startswith(" "):
            run.append(line.strip())
            continue
        if run:
            out += textwrap.wrap(" ".join(run), width, break_on_hyphens=False)
            run = []
        out.append(line)
    return "\n".join(out[:-1])


EPILOG = reflow(EPILOG)


class WatchError(Exception):
    """One line for the user (exit status 1)."""


# ------------------------------------------------------------------ arguments (argparse types)

@dataclass(frozen=True)
class KeyArg:
    """A KEY as typed: a number, a special name or a path (resolved once the mount is known)."""
    text: str
    number: Optional[int] = None
    path: Optional[str] = None  # a path in the mount (TREE_TOP...) or in the file system


def key_arg(text: str) -> KeyArg:
    if text in abi.SPECIAL_NAMES or text == "@persistent":
        return KeyArg(text)
    if "/" in text:
        return KeyArg(text, path=text)
    try:
        number = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no key: give a serial, @t, @p, @s, @u, @us, @persistent or a path in the tree") from None
    if not -(1 << 31) <= number < (1 << 31) or number == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is no key: a serial is 1..2147483647")
    return KeyArg(text, number=number)


def letters_arg(text: str) -> frozenset[int]:
    """keyctl watch -f: a letter per subtype."""
    for letter in text:
        if letter not in LETTERS:
            raise argparse.ArgumentTypeError(
                f"unknown filter letter {letter!r}; use any of {LETTERS} ({' '.join(WORDS)})")
    return frozenset(LETTERS.index(letter) for letter in text)


def events_arg(text: str) -> frozenset[int]:
    """-e link,unlk: keyctl's words or the kernel's names (linked, unlinked...)."""
    subtypes = set()
    for word in filter(None, text.split(",")):
        if word in WORDS:
            subtypes.add(WORDS.index(word))
        elif word in abi.KEY_SUBTYPE_NAMES:
            subtypes.add(abi.KEY_SUBTYPE_NAMES.index(word))
        else:
            raise argparse.ArgumentTypeError(f"unknown event {word!r}; use any of {', '.join(WORDS)}")
    if not subtypes:
        raise argparse.ArgumentTypeError("name at least one event")
    return frozenset(subtypes)


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of events") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: count at least 1 event")
    return value


def format_arg(text: str) -> str:
    """A --format string; an unknown %x is a usage error here, not a surprise later."""
    i = 0
    while i < len(text):
        if text[i] == "%":
            letter = text[i + 1:i + 2]
            if letter not in FIELDS:
                shown = f"%{letter}" if letter else "a lone % at the end"
                raise argparse.ArgumentTypeError(f"unknown field {shown}; use %{' %'.join(FIELDS)}")
            i += 2
        else:
            i += 1
    return text


def add_arguments(watch: argparse.ArgumentParser, seconds, notes) -> None:
    """The options of `wqfs watch` (cli.build_parser: the parser, the man page, the completion)."""
    watch.add_argument("keys", nargs="*", type=key_arg, metavar="KEY",
                       help="a serial, @t @p @s @u @us, @persistent, or a path to a key in the tree")
    watch.add_argument("--mounts", action="append", default=[], metavar="PATH",
                       help="watch the mount changes below the directory PATH (watch_mount; repeatable)")
    watch.add_argument("--sb", action="append", default=[], metavar="PATH",
                       help="watch the superblock of PATH (watch_sb; repeatable)")
    watch.add_argument("--mount", metavar="DIR", help="the wqfs mount (default: the one a KEY path is in, "
                                                      "else the default mountpoint)")
    watch.add_argument("-f", "--filter", type=letters_arg, metavar="LETTERS",
                       help=f"only these events, as keyctl watch -f: {LETTERS} (= {' '.join(WORDS)})")
    watch.add_argument("-e", "--event", type=events_arg, action="append", metavar="EVENT[,EVENT]",
                       help="only these events, by name: inst upd link unlk clr rev inv attr (repeatable; "
                            "with -f, either's)")
    watch.add_argument("--include", action="append", metavar="GLOB",
                       help="only records whose key or aux key's description matches (repeatable)")
    watch.add_argument("--exclude", action="append", metavar="GLOB",
                       help="no records whose key or aux key's description matches (repeatable)")
    watch.add_argument("-r", "--recursive", action="store_true",
                       help="watch every keyring linked below each KEY too, and those linked later")
    watch.add_argument("-t", "--timeout", type=seconds, metavar="SECONDS",
                       help="exit 2 after SECONDS without an event (0: never)")
    watch.add_argument("-c", "--count", type=count_arg, metavar="N", help="exit 0 after N events")
    watch.add_argument("-q", "--quiet", action="store_true", help='no "Watches established." on stderr')
    style = watch.add_mutually_exclusive_group()
    style.add_argument("--json", action="store_true", help="JSON lines, every field (names with --names)")
    style.add_argument("--csv", action="store_true",
                       help="CSV: id,event,aux,tag (then type,description,aux_type,aux_description "
                            "with --names, time with --timefmt)")
    style.add_argument("--format", type=format_arg, metavar="FMT", help="a line per record: %%i %%e %%a... (below)")
    watch.add_argument("--names", action="store_true", help="show type:description beside serials")
    watch.add_argument("--timefmt", metavar="FMT",
                       help=f"strftime format of %%T (default {DEFAULT_TIMEFMT.replace('%', '%%')}); "
                            "without --format, lines start with the time")
    watch.add_argument("--size", type=notes, default=256, metavar="N", help="queue size in notes (1..512, default 256)")


# ------------------------------------------------------------------ the mount

def _wqfs_mount_above(path: str) -> Optional[str]:
    """The wqfs mount that path lies in, by mountinfo (the path's parents, not a stat of it)."""
    current = os.path.abspath(path)
    while True:
        if mount_type(current) == WQFS_TYPE:
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def check_mount(path: str, default: bool) -> str:
    """path as the mount to watch on, or one line saying what it is instead. Never a suggestion
    to mount where mounting would fail (a directory with files, another file system)."""
    kind = mount_type(path)
    if kind == WQFS_TYPE:
        try:
            os.stat(os.path.join(path, "watch_queue"))
        except OSError as error:
            if error.errno == errno.ENOTCONN:
                raise WatchError(f"{path} is a dead wqfs mount (its daemon stopped): "
                                 f"run `wqfs unmount {path}`, then mount again") from None
            raise WatchError(f"{path}: {os.strerror(error.errno or 0)}") from None
        return path
    start = "wqfs mount" if default else f"wqfs mount {path}"
    if kind is not None:
        raise WatchError(f"no wqfs mount at {path}: a {kind} file system is mounted there "
                         f"(`findmnt -t fuse.wqfs` lists the wqfs mounts)")
    above = _wqfs_mount_above(os.path.dirname(os.path.abspath(path)))
    if above is not None:
        raise WatchError(f"no wqfs mount at {path}: it is inside the wqfs mount at {above}; "
                         f"--mount takes the mountpoint ({above})")
    if not os.path.lexists(path):
        hint = start if default else f"mkdir -p {path} && {start}"
        raise WatchError(f"no wqfs mount at {path}: it does not exist (start one with: {hint})")
    if not os.path.isdir(path):
        raise WatchError(f"no wqfs mount at {path}: it is not a directory")
    if os.listdir(path):
        raise WatchError(f"no wqfs mount at {path}: it is a directory with files of its own, not a "
                         f"mountpoint (`findmnt -t fuse.wqfs` lists the wqfs mounts)")
    raise WatchError(f"no wqfs mount at {path} (start one with: {start})")


def choose_mount(given: Optional[str], keys: Iterable[KeyArg]) -> str:
    """--mount, else the mount a KEY path lies in, else the default mountpoint; a KEY path in
    another mount than --mount's is an error (its serial would name another daemon's key)."""
    for key in keys:
        if key.path is None or key.path.split("/", 1)[0] in TREE_TOP:
            continue
        above = _wqfs_mount_above(key.path)
        if above is None:
            raise WatchError(f"cannot watch {key.text}: it is not in a wqfs mount")
        if given is not None and os.path.realpath(given) != os.path.realpath(above):
            raise WatchError(f"cannot watch {key.text}: it is in the wqfs mount at {above}, not in --mount {given}")
        given = given or above
    if given is not None:
        return check_mount(given, False)
    return check_mount(default_mountpoint(), True)


def _path_error(key: KeyArg, error: OSError) -> WatchError:
    number = error.errno or 0
    if number == errno.ENOENT:
        bad_escape = "%" in key.text and any(key.text[i + 1:i + 3].upper() not in ("25", "2F")
                                             for i, c in enumerate(key.text) if c == "%")
        why = ("a bad %XX escape in a name: only %25 (%) and %2F (/) are escapes" if bad_escape
               else "no such key in the tree")
    elif number == errno.EACCES:
        why = "permission denied (a name is looked up with SEARCH on its keyring, a serial with READ)"
    elif number in (errno.ENODATA, errno.ENOTSUP):
        why = "not a key (it has no user.keyctl.serial)"
    else:
        why = os.strerror(number)
    return WatchError(f"cannot watch {key.text}: {why} ({errno.errorcode.get(number, number)})")


def resolve(key: KeyArg, mount: str) -> int:
    """The serial of KEY, through the tree (as the daemon shows it to this process); @g and @a,
    which the tree has no name for, stay special IDs for the daemon to judge."""
    if key.number is not None and key.number > 0:
        return key.number
    name = SPECIAL_BY_ID.get(key.number, key.text) if key.number is not None else key.text
    if key.path is not None:
        path = os.path.join(mount, key.path) if key.path.split("/", 1)[0] in TREE_TOP else key.path
    elif name in ("@g", "@a") or name not in abi.SPECIAL_NAMES and name != "@persistent":
        return key.number if key.number is not None else abi.SPECIAL_NAMES[name]
    else:
        path = os.path.join(mount, name)
    try:
        return int(os.getxattr(path, "user.keyctl.serial"))
    except OSError as error:
        raise _path_error(key, error) from None


# ------------------------------------------------------------------ names

def display(text: str) -> str:
    """A description as the tree spells it (%25, %2F), control characters as %XX: one line."""
    out = []
    for char in text.replace("%", "%25").replace("/", "%2F"):
        out.append(f"%{ord(char):02X}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
    return "".join(out)


def unescape(name: str) -> str:
    """The tree's %25 and %2F back to % and /."""
    out, i = [], 0
    while i < len(name):
        code = name[i + 1:i + 3].upper() if name[i] == "%" else ""
        if code in ("25", "2F"):
            out.append("%" if code == "25" else "/")
            i += 3
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


class Names:
    """type and description of serials, from MOUNT/keys/SERIAL's user.keyctl.describe, asked
    when a record is read. A key's type and description never change, so what was seen is
    kept for the key's lifetime: a key gone by the time its unlk or gc is read keeps its name."""

    def __init__(self, mount: str) -> None:
        self.mount = mount
        self.seen: dict[int, tuple[str, str]] = {}

    def learn(self, serial: int, key_type: str, description: str) -> None:
        self.seen[serial] = (key_type, description)

    def get(self, serial: int) -> Optional[tuple[str, str]]:
        if serial <= 0:
            return None
        try:
            described = os.getxattr(os.path.join(self.mount, "keys", str(serial)), "user.keyctl.describe")
        except OSError:  # ENOENT: gone (what was seen stands); EACCES: no VIEW (serial alone)
            return self.seen.get(serial)
        fields = described.decode("utf-8", "surrogateescape").split(";", 4)
        if len(fields) == 5:
            self.seen[serial] = (fields[0], fields[4])
        return self.seen.get(serial)

    def forget(self, serial: int) -> None:
        self.seen.pop(serial, None)


# ------------------------------------------------------------------ events

@dataclass
class Event:
    """One record as watch shows it, with the names resolved when it was read."""
    record: records.Record
    time: float
    word: str
    key: Optional[int] = None
    aux: Optional[int] = None
    key_name: Optional[tuple[str, str]] = None
    aux_name: Optional[tuple[str, str]] = None
    id_text: str = ""   # %i where the record names no key: a mount's id, a superblock's sb_id
    aux_text: str = ""  # %a likewise: the auxiliary mount, a superblock error's errno
    host: bool = False  # a mount or superblock watch's record (its removal too)

    @property
    def tag(self) -> int:
        return self.record.tag

    @property
    def id_field(self) -> str:
        return self.id_text if self.key is None else str(self.key)

    @property
    def aux_field(self) -> str:
        return self.aux_text if self.aux is None else str(self.aux)

    @property
    def counts(self) -> bool:
        return not isinstance(self.record, records.Loss)


def event_of(record: records.Record, now: float) -> Event:
    if isinstance(record, records.KeyNotification):
        word = WORDS[record.subtype] if record.subtype < len(WORDS) else f"type={record.subtype}"
        has_aux = record.subtype in (abi.NOTIFY_KEY_LINKED, abi.NOTIFY_KEY_UNLINKED)
        return Event(record, now, word, record.key_id, record.aux if has_aux else None)
    if isinstance(record, records.Removal):
        return Event(record, now, "gc", record.id)
    if isinstance(record, records.Loss):
        return Event(record, now, "loss")
    if isinstance(record, records.MountNotification):
        return Event(record, now, record.name, id_text=str(record.triggered_on), aux_text=str(record.aux), host=True)
    if isinstance(record, records.SuperblockNotification):
        error = "" if record.error_number is None else str(record.error_number)
        return Event(record, now, record.name, id_text=str(record.sb_id), aux_text=error, host=True)
    return Event(record, now, "other")


def host_removal(record: records.Removal, now: float) -> Event:
    """The removal record of a --mounts or --sb watch: its mount or superblock went."""
    return Event(record, now, "removal", id_text=str(record.id), host=True)


def _name(name: Optional[tuple[str, str]]) -> str:
    return f"{name[0]}:{display(name[1])}" if name else ""


class Printer:
    """The output styles: keyctl's lines (with --names, names beside serials; with --timefmt,
    the time first), --format, --csv, --json."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.out = out
        self.names = args.names
        self.timefmt = args.timefmt
        self.style = "json" if args.json else "csv" if args.csv else "format" if args.format else "keyctl"
        self.format = args.format

    @property
    def needs_names(self) -> bool:
        return self.names or (self.style == "format" and any(f"%{c}" in self.format for c in "kdnKDN"))

    def _time(self, event: Event) -> str:
        return time.strftime(self.timefmt or DEFAULT_TIMEFMT, time.localtime(event.time))

    def line(self, event: Event) -> str:
        if self.style == "json":
            return self._json(event)
        if self.style == "csv":
            return self._csv(event)
        if self.style == "format":
            return self._format(event)
        if event.host and isinstance(event.record, records.Removal):
            text = f"REMOVAL of watchpoint {event.tag:08x}"  # watch_test.c's line
        else:
            text = records.format_keyctl(event.record)
        if self.names and event.key is not None:
            words = text.split(" ")
            if event.key_name:
                words[0] += f" ({_name(event.key_name)})"
            if event.aux is not None and event.aux_name:
                words[-1] += f" ({_name(event.aux_name)})"
            text = " ".join(words)
        return f"{self._time(event)} {text}" if self.timefmt else text

    def _format(self, event: Event) -> str:
        key, aux = event.key_name or ("", ""), event.aux_name or ("", "")
        values = {"i": event.id_field, "e": event.word, "a": event.aux_field, "g": str(event.tag),
                  "k": key[0], "d": display(key[1]), "n": _name(event.key_name),
                  "K": aux[0], "D": display(aux[1]), "N": _name(event.aux_name), "%": "%"}
        out, i, text = [], 0, self.format
        while i < len(text):
            if text[i] == "%":
                letter = text[i + 1]
                out.append(self._time(event) if letter == "T" else values[letter])
                i += 2
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def _csv(self, event: Event) -> str:
        row = [event.id_field, event.word, event.aux_field, event.tag]
        if self.names:
            key, aux = event.key_name or ("", ""), event.aux_name or ("", "")
            row += [key[0], key[1], aux[0], aux[1]]
        if self.timefmt:
            row.append(self._time(event))
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(row)
        return buffer.getvalue()

    def _json(self, event: Event) -> str:
        fields = records.to_dict(event.record)
        fields["time"] = round(event.time, 6)
        if self.timefmt:
            fields["time_text"] = self._time(event)
        if self.names:
            for prefix, name, serial in (("", event.key_name, event.key), ("aux_", event.aux_name, event.aux)):
                if serial is not None:
                    fields[prefix + "type"] = name[0] if name else None
                    fields[prefix + "description"] = name[1] if name else None
        return json.dumps(fields, sort_keys=True)


class Selection:
    """Which records are shown: -f/-e by event, --include/--exclude by description."""

    def __init__(self, args: argparse.Namespace) -> None:
        chosen: Optional[set[int]] = None
        for subtypes in ([args.filter] if args.filter else []) + (args.event or []):
            chosen = (chosen or set()) | subtypes
        self.subtypes = chosen
        self.include = args.include or []
        self.exclude = args.exclude or []

    @property
    def needs_names(self) -> bool:
        return bool(self.include or self.exclude)

    def kernel_subtypes(self, recursive: bool) -> Optional[list[int]]:
        """What the queue's filter lets through: the chosen events, and for -r what changes the
        tree (link, unlk, clr), which is then followed but shown only if chosen."""
        if self.subtypes is None:
            return None
        extra = {abi.NOTIFY_KEY_LINKED, abi.NOTIFY_KEY_UNLINKED, abi.NOTIFY_KEY_CLEARED} if recursive else set()
        return sorted(self.subtypes | extra)

    @staticmethod
    def _matches(patterns: list[str], names: list[Optional[tuple[str, str]]]) -> bool:
        texts = [t for name in names if name for t in (name[1], f"{name[0]}:{name[1]}")]
        return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns for text in texts)

    def shows(self, event: Event) -> bool:
        if not isinstance(event.record, records.KeyNotification):
            return True  # gc and loss pass every filter
        if self.subtypes is not None and event.record.subtype not in self.subtypes:
            return False
        names = [event.key_name, event.aux_name]
        if self.include and not self._matches(self.include, names):
            return False
        return not (self.exclude and self._matches(self.exclude, names))


# ------------------------------------------------------------------ the watches

class Watches:
    """The watches of one queue: the KEYs named, and with -r the keyrings found below them.

    found_in[X] holds the watched keyrings X was found linked in; a keyring whose set empties
    (unlk) is unwatched, and so is what was found only through it. The removal record of an
    unwatch is this program's own doing and is not shown; a removal that comes otherwise is a
    key destroyed: its gc line is shown."""

    def __init__(self, queue, mount: str, names: Names, recursive: bool, warn) -> None:
        self.queue = queue
        self.mount = mount
        self.names = names
        self.recursive = recursive
        self.warn = warn
        self.tags: dict[int, int] = {}          # watched serial -> tag
        self.roots: set[int] = set()            # the KEYs' serials still there
        self.found_in: dict[int, set[int]] = {}  # keyring below a KEY -> watched keyrings it is in
        self.rings_in: dict[int, set[int]] = {}  # watched keyring -> the keyrings found in it
        self.unwatched: set[int] = set()        # unwatched by us: their removal record is ours

    def add_root(self, key: KeyArg, serial: int, tag: int) -> None:
        """Watch a KEY; errors name it (exit 1)."""
        if serial in self.tags:  # the same key twice: one watch (a second would be EBUSY)
            self.roots.add(serial)
            return
        from .client import command_error
        try:
            self.queue.watch(serial, tag)
        except OSError as error:
            raise WatchError(f"cannot watch {key.text}: {command_error('watch', error.errno or 0)}") from None
        self.tags[serial] = tag
        if serial > 0:
            self.roots.add(serial)
        if self.recursive:
            self._list(serial, tag)

    def _watch_below(self, serial: int, tag: int, parent: int) -> None:
        self.found_in.setdefault(serial, set()).add(parent)
        self.rings_in.setdefault(parent, set()).add(serial)
        if serial in self.tags:
            return
        try:
            self.queue.watch(serial, tag)
        except OSError as error:
            if error.errno == errno.EAGAIN:
                self.warn(f"cannot watch keyring {serial} (in {parent}): {error.strerror}")
            # ENOKEY: gone already; EACCES: not ours to view. Either way, nothing to watch.
            self._forget(serial)
            return
        self.tags[serial] = tag
        self._list(serial, tag)

    def _list(self, ring: int, tag: int) -> None:
        """List a keyring after its watch landed: what was linked before the watch is here,
        what is linked after comes as a link record (some keys both ways: that is harmless)."""
        directory = os.path.join(self.mount, "keys", str(ring))
        try:
            entries = list(os.scandir(directory))
        except OSError:  # not a keyring, or not readable (no READ): its members stay unknown
            return
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                child = int(os.getxattr(entry.path, "user.keyctl.serial"))
            except (OSError, ValueError):
                continue
            key_type, _, description = entry.name.partition(":")
            if description:
                self.names.learn(child, key_type, unescape(description))
            if ring in self.tags:  # still watched (a cascade may have dropped it meanwhile)
                self._watch_below(child, tag, ring)

    def _is_keyring(self, serial: int) -> bool:
        name = self.names.get(serial)
        return name is not None and name[0] == "keyring"

    def _unwatch(self, serial: int) -> None:
        """Drop a keyring below the KEYs, and what was found only through it."""
        if serial in self.roots or serial not in self.tags:
            return
        del self.tags[serial]
        try:
            self.queue.unwatch(serial)
            self.unwatched.add(serial)
        except OSError:
            pass  # EBADSLT: its watch went already (it was destroyed; its gc is on the way)
        self._forget(serial)

    def _forget(self, serial: int) -> None:
        for parent in self.found_in.pop(serial, set()):
            self.rings_in.get(parent, set()).discard(serial)
        for child in self.rings_in.pop(serial, set()):
            self.found_in.get(child, set()).discard(serial)
            if not self.found_in.get(child):
                self._unwatch(child)

    def see(self, event: Event) -> bool:
        """Follow the tree; False for a record of our own (an unwatch's removal) not to show."""
        record = event.record
        if isinstance(record, records.Removal):
            if record.id in self.unwatched:
                self.unwatched.discard(record.id)
                return False
            self.tags.pop(record.id, None)
            self.roots.discard(record.id)
            self._forget(record.id)
            return True
        if not self.recursive or not isinstance(record, records.KeyNotification):
            return True
        ring, other = record.key_id, record.aux
        if record.subtype == abi.NOTIFY_KEY_LINKED and ring in self.tags and self._is_keyring(other):
            self._watch_below(other, self.tags[ring], ring)
        elif record.subtype == abi.NOTIFY_KEY_UNLINKED and ring in self.found_in.get(other, ()):
            self.found_in[other].discard(ring)
            self.rings_in.get(ring, set()).discard(other)
            if not self.found_in[other]:
                self._unwatch(other)
        elif record.subtype == abi.NOTIFY_KEY_CLEARED and ring in self.rings_in:
            for child in list(self.rings_in[ring]):  # clear unlinks everything, one record for all
                self.found_in.get(child, set()).discard(ring)
                self.rings_in[ring].discard(child)
                if not self.found_in.get(child):
                    self._unwatch(child)
        return True


# ------------------------------------------------------------------ the command

def _die_of_sigint() -> None:
    """End as keyctl watch ends on Ctrl-C: killed by SIGINT (the shell's $? is 130)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)  # the signal is delivered before this returns
    sys.exit(130)


def run(args: argparse.Namespace) -> int:
    """wqfs watch: exit statuses as the epilog says."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        _die_of_sigint()
        return 130


def _run(args: argparse.Namespace) -> int:
    from .client import Queue, command_error, key_filter, mount_filter, sb_filter
    host_paths = [(False, path) for path in args.mounts] + [(True, path) for path in args.sb]
    if len(args.keys) + len(host_paths) > MAX_TAG:
        raise WatchError(f"at most {MAX_TAG} KEYs and PATHs: a watch's tag is 1..{MAX_TAG}")
    mount = choose_mount(args.mount, args.keys)
    out = sys.stdout
    printer, selection = Printer(args, out), Selection(args)
    names = Names(mount)
    resolve_names = printer.needs_names or selection.needs_names
    warn = (lambda message: None) if args.quiet else (lambda message: print(f"wqfs: {message}", file=sys.stderr))
    serials = [resolve(key, mount) for key in args.keys]
    inotify_mode = args.timeout is not None or args.count is not None
    try:
        queue = Queue(mount, size=args.size, nonblock=True)
    except OSError as error:
        if error.errno == errno.EPERM:
            raise WatchError(f"--size {args.size}: {command_error('size', errno.EPERM)}") from None
        raise WatchError(f"cannot open a queue on {mount}: {command_error('open', error.errno or 0)}") from None
    with queue:
        subtypes = selection.kernel_subtypes(args.recursive)
        if subtypes is not None:  # -f/-e choose key events; mount and superblock records all pass
            queue.set_filter(key_filter(subtypes) + (mount_filter() if args.mounts else [])
                             + (sb_filter() if args.sb else []))
        watches = Watches(queue, mount, names, args.recursive, warn)
        for tag, (key, serial) in enumerate(zip(args.keys, serials), start=1):
            watches.add_root(key, serial, tag)
        host: dict[int, str] = {}  # tag -> the --mounts or --sb PATH its watch is on, while it lasts
        for tag, (sb, path) in enumerate(host_paths, start=len(args.keys) + 1):
            verb = "watch_sb" if sb else "watch_mount"
            try:
                (queue.watch_sb if sb else queue.watch_mount)(path, tag)
            except OSError as error:
                option = "--sb" if sb else "--mounts"
                raise WatchError(f"cannot watch {option} {path}: {command_error(verb, error.errno or 0)}") from None
            host[tag] = path
        if not args.quiet:
            print("Watches established.", file=sys.stderr, flush=True)
        shown = 0
        timeout = args.timeout or None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not queue.poll(left):
                    if time.monotonic() >= deadline:
                        return 2
                    continue
            else:
                queue.poll(None)
            try:
                batch = queue.read()
            except BlockingIOError:
                continue
            except OSError as error:
                raise WatchError(f"{mount}: {command_error('read', error.errno or 0)}") from None
            if not batch:
                print("-- END --", file=out, flush=True)
                return 0
            now = time.time()
            for record in batch:
                gone = isinstance(record, records.Removal) and record.tag in host
                if gone:  # a --mounts or --sb watch's (tags apart from the keys')
                    event = host_removal(record, now)  # type: ignore[arg-type]
                    del host[record.tag]
                else:
                    event = event_of(record, now)
                    if resolve_names or args.recursive:
                        if event.key is not None:
                            event.key_name = names.get(event.key)
                        if event.aux is not None:
                            event.aux_name = names.get(event.aux)
                    if not watches.see(event):
                        continue
                    gone = isinstance(record, records.Removal) and record.id in serials
                if gone and not watches.roots and not host:
                    out.write(printer.line(event) + "\n")  # the last KEY went: keyctl's gc and exit
                    out.flush()
                    return 1 if inotify_mode else 0
                if not selection.shows(event):
                    continue
                out.write(printer.line(event) + "\n")
                if isinstance(record, records.Removal) and not event.host:
                    names.forget(record.id)
                if event.counts:
                    shown += 1
                    if timeout is not None:
                        deadline = time.monotonic() + timeout
                    if args.count is not None and shown >= args.count:
                        out.flush()
                        return 0
            out.flush()
