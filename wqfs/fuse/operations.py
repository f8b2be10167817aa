"""The FUSE tree: pyfuse3 requests translated into calls on the emulated kernel.

Nothing here decides a rule of the key system; it names things, finds the caller,
and maps KernelError to an errno. Any other exception is logged and becomes EIO,
because an exception escaping a pyfuse3 handler would end the whole mount.
"""
from __future__ import annotations

import errno
import functools
import logging
import math
import os
import select
import stat
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Optional, TypeVar, Union

import pyfuse3
import trio

from .. import abi
from ..callers import CallerTable, nofile_limit
from ..kernel import (Cred, Filter, id_arg, Kernel, KernelError, Key, KeyUnderConstruction, permission, shown_gid,
                      WatchQueue)
from ..protocol import SetFilter, SetSize, WatchKey, WatchMount, parse_command, parse_key_spec
from . import names, xattrs
from .handles import DirHandle, EventFile, KeyFile, QueueFile, Stream, Waiter, sample_lines
from .pipes import PipeRegistry
from .requests import REQUESTS, Request

if TYPE_CHECKING:
    from ..host.feeds import MountFeeds

log = logging.getLogger("wqfs.fuse")

EVENTS_QUEUE_SIZE = 256

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def handler(fn: F) -> F:
    """The errno boundary of every request: the daemon never dies from bad input."""

    @functools.wraps(fn)
    async def wrapper(self: "WqfsOperations", *args: Any) -> Any:
        if self.verbose:
            return await _logged(self, fn, args)
        try:
            return await fn(self, *args)
        except KernelError as error:
            raise pyfuse3.FUSEError(error.errno) from None
        except pyfuse3.FUSEError:
            raise
        except Exception:
            log.exception("internal error in %s%s", fn.__name__, _brief(args))
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


async def _logged(self: "WqfsOperations", fn: Callable[..., Awaitable[Any]], args: tuple) -> Any:
    """handler's boundary with -v: a line per request, with its caller and its answer."""
    caller = REQUESTS.peek()  # for the log line; before any await
    try:
        result = await fn(self, *args)
    except KernelError as error:
        log.info("%s%s -> %s", fn.__name__, _brief(args, caller), error)
        raise pyfuse3.FUSEError(error.errno) from None
    except pyfuse3.FUSEError as error:
        log.info("%s%s -> %s", fn.__name__, _brief(args, caller), errno.errorcode.get(error.errno, error.errno))
        raise
    except Exception:
        log.exception("internal error in %s%s", fn.__name__, _brief(args, caller))
        raise pyfuse3.FUSEError(errno.EIO) from None
    log.info("%s%s -> ok", fn.__name__, _brief(args, caller))
    return result


def _brief(args: tuple, caller: Optional[Request] = None) -> str:
    """A request's arguments for a log line: the caller as pid and uid (a request without a
    context, such as read or write, by the pid of libfuse's request log), bytes cut at 40."""
    parts = [] if caller is None or any(isinstance(a, pyfuse3.RequestContext) for a in args) \
        else [f"pid={caller.pid}"]
    for a in args:
        if isinstance(a, pyfuse3.RequestContext):
            parts.append(f"pid={a.pid} uid={a.uid}")
        elif isinstance(a, (int, str)):
            parts.append(repr(a))
        elif isinstance(a, bytes):
            parts.append(repr(a[:40]))
        else:
            parts.append(type(a).__name__)
    return "(" + ", ".join(parts) + ")"


Handle = Union[KeyFile, QueueFile, EventFile, DirHandle]


class WqfsOperations(pyfuse3.Operations):
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, kernel: Kernel, callers: CallerTable, verbose: bool = False) -> None:
        super().__init__()
        self.kernel = kernel
        self.verbose = verbose
        self.callers = callers
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        # inode -> ("events", specs) | ("pending", KeyFile) | ("pipe", (token, end)): pipe ends
        # are made and freed by self.pipes
        self._dynamic: dict[int, tuple[str, Any]] = {}
        self._pending_names: dict[tuple[int, bytes, int], int] = {}  # (ring, name, uid) -> inode, uncommitted
        # (directory, name) -> inode of the text files named by what they watch: events/KEYS,
        # mounts/PATH, superblocks/PATH; and inode -> [(directory, name), the kernel's lookup count]
        self._events_inodes: dict[tuple[int, bytes], int] = {}
        self._events_lookups: dict[int, list] = {}
        self._next_inode = names.DYNAMIC_BASE
        # the pipes of `wqfs run`, served under .pipe/; the syscall front is handed this alone
        self.pipes = PipeRegistry(kernel, self._alloc_inode, self._free_inode)
        self._closing = False
        self._waiters: set[Waiter] = set()  # every parked request, for shutdown
        self._scopes: set[trio.CancelScope] = set()  # every request waiting on the host, for shutdown
        # The host's mount namespaces, for watch_mount and watch_sb (the daemon sets it; None:
        # those commands and files are ENOSYS)
        self.feeds: Optional["MountFeeds"] = None

    # ------------------------------------------------------------ plumbing

    def _cred(self, ctx: pyfuse3.RequestContext) -> Cred:
        return self.callers.cred(ctx.pid, ctx.uid, ctx.gid)

    def _add_handle(self, handle: Handle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EBADF) from None

    def _alloc_inode(self, kind: str, value: Any) -> int:
        inode = self._next_inode
        self._next_inode += 1
        self._dynamic[inode] = (kind, value)
        return inode

    def _free_inode(self, inode: int) -> None:
        self._dynamic.pop(inode, None)

    def _key(self, inode: int) -> Key:
        serial = names.serial_of(inode)
        if serial is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        try:
            return self.kernel.key(serial)
        except KernelError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    _started_ns = time.time_ns()

    @classmethod
    def _base_attr(cls, inode: int, mode: int, size: int = 0, nlink: int = 1) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = cls._started_ns
        attr.st_ino = inode
        attr.st_mode = mode
        attr.st_nlink = nlink
        attr.st_size = size
        attr.st_blksize = abi.PAGE_SIZE
        attr.st_blocks = (size + 511) // 512
        attr.entry_timeout = 0
        attr.attr_timeout = 0
        attr.st_uid = 0
        attr.st_gid = 0
        return attr

    def _viewed_attr(self, cred: Cred, key: Key) -> pyfuse3.EntryAttributes:
        """_key_attr after _check_view's rule (EACCES without VIEW, possession counted), from the
        one rights lookup both need."""
        own = self.kernel.rights(cred, key)
        return self._key_attr(cred, _check_view(self.kernel, cred, key, own), own)

    def _key_attr(self, cred: Cred, key: Key, own: Optional[int] = None) -> pyfuse3.EntryAttributes:
        """The key as a file for cred. The mode's user bits are cred's own rights (its class's
        and, if it possesses the key, the possessor's: what `ls -l` should tell the caller; own,
        if the caller has them already); the group and other bits are the key's group and other bytes."""
        perm = key.perm
        if own is None:
            own = self.kernel.rights(cred, key)
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = names.KEY_BASE + key.serial
        if key.is_keyring:  # a keyring's size is what a read of it gives: a serial per member
            attr.st_mode = (stat.S_IFDIR | _DIR_MODE[own] << 6
                            | _DIR_MODE[(perm >> 8) & 0xFF] << 3 | _DIR_MODE[perm & 0xFF])
            attr.st_size = size = 4 * key.nr_members
            attr.st_nlink = 2 + key.nr_subrings
        else:
            attr.st_mode = (stat.S_IFREG | _FILE_MODE[own] << 6
                            | _FILE_MODE[(perm >> 8) & 0xFF] << 3 | _FILE_MODE[perm & 0xFF])
            attr.st_size = size = key.payload_size
            attr.st_nlink = key.nr_links
        attr.st_blksize = abi.PAGE_SIZE
        attr.st_blocks = (size + 511) // 512
        attr.entry_timeout = 0
        attr.attr_timeout = 0
        attr.generation = key.generation
        attr.st_uid = key.uid
        attr.st_gid = shown_gid(key)
        # The kernel keeps no access time a caller could see; one that moved on every read or
        # search would tell anyone who may stat the key when others use it.
        attr.st_atime_ns = attr.st_mtime_ns = key.mtime_ns
        attr.st_ctime_ns = key.ctime_ns
        return attr

    def _hidden_attr(self, key: Key) -> pyfuse3.EntryAttributes:
        """A member listed by serial alone: keyctl_read_key of its keyring gave the serial, and
        all else would take keyctl_describe, i.e. VIEW on the member. So nothing of it shows:
        a plain file of mode 0, size 0, the overflow owner, the mount's time, on an inode of
        its own (names.HIDDEN_BASE) that keeps that one file type whatever the key is."""
        attr = self._base_attr(names.hidden_inode(key.serial), stat.S_IFREG)
        attr.st_uid, attr.st_gid = abi.OVERFLOW_UID, abi.OVERFLOW_GID
        attr.generation = key.generation
        return attr

    def _attr(self, inode: int, cred: Cred) -> pyfuse3.EntryAttributes:
        if inode in names.STATIC_INODES:
            attr = self._static_attr(inode, cred)
            attr.entry_timeout = names.STATIC_ENTRY_TIMEOUT
            return attr
        if inode == names.ROOT:
            return self._base_attr(inode, stat.S_IFDIR | 0o555, 0, 2)
        hidden = names.hidden_serial(inode)
        if hidden is not None:  # the same neutral attributes as the listing gave, to anyone
            return self._hidden_attr(self._key(names.key_inode(hidden)))
        dynamic = self._dynamic.get(inode)
        if dynamic is not None:
            kind, value = dynamic
            if kind in ("events", "mount", "sb"):
                return self._base_attr(inode, stat.S_IFREG | 0o444)
            if kind == "pipe":
                return self._base_attr(inode, stat.S_IFREG | 0o600)  # a FUSE FIFO would bypass us
            assert isinstance(value, KeyFile)
            if value.cred.uid != cred.uid:  # a file being created is its creator's alone
                raise pyfuse3.FUSEError(errno.ENOENT)
            if value.serial is not None:
                return self._viewed_attr(cred, self._key(names.key_inode(value.serial)))
            attr = self._base_attr(inode, stat.S_IFREG | 0o600, len(value.buffer or b""), 1)
            attr.st_uid, attr.st_gid = value.cred.uid, value.cred.gid
            return attr
        return self._viewed_attr(cred, self._key(inode))

    def _static_attr(self, inode: int, cred: Cred) -> pyfuse3.EntryAttributes:
        if inode in (names.KEYS, names.EVENTS, names.MOUNTS, names.SUPERBLOCKS):
            return self._base_attr(inode, stat.S_IFDIR | 0o555, 0, 2)
        if inode == names.PIPES:
            return self._base_attr(inode, stat.S_IFDIR | 0o111, 0, 2)
        if inode == names.QUEUE:
            return self._base_attr(inode, stat.S_IFREG | 0o666)
        return self._base_attr(inode, stat.S_IFLNK | 0o777, len(self._link_target(inode, cred, False)))

    def _link_target(self, inode: int, cred: Cred, create: bool) -> bytes:
        _, key_id = names.LINK_INODES[inode]
        if key_id is names.PERSISTENT:  # readlink makes it (and starts its expiry again); lstat does not
            ring = self.kernel.own_persistent_keyring(cred, create)
            return f"keys/{ring.serial}".encode() if ring is not None else b"keys/0000000000"
        if not create and key_id in (abi.KEY_SPEC_THREAD_KEYRING, abi.KEY_SPEC_PROCESS_KEYRING):
            try:
                key, _ = self.kernel.lookup(cred, key_id, partial=True)
            except KernelError:
                return b"keys/0000000000"
        else:
            key, _ = self.kernel.lookup(cred, key_id, create=True, partial=True)
        return f"keys/{key.serial}".encode()

    def _keyring(self, inode: int) -> Key:
        if inode in names.DIRECTORIES:
            raise pyfuse3.FUSEError(errno.EPERM)
        key = self._key(inode)
        if not key.is_keyring:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return key

    def _member(self, ring: Key, name: bytes) -> Key:
        """The member name (TYPE:DESCRIPTION or a serial) names in ring, or ENOENT; no permission."""
        key = self._find_member(ring, name)
        if key is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return key

    def _find_member(self, ring: Key, name: bytes) -> Optional[Key]:
        serial = names.parse_serial(name)
        if serial is not None:
            return self.kernel.find_member(ring, serial)
        try:
            return self.kernel.find_member(ring, names.parse_entry(name))
        except KernelError:
            return None

    def _visible_member(self, ring: Key, name: bytes, cred: Cred) -> Key:
        """The member a lookup of name in ring finds for cred, answered so that a name cred may
        not ask about gets the same EACCES whether or not it is there:

        * a serial needs READ on ring, keyctl_read_key's rule (READ, or possession), because a
          read of a keyring is what gives its members' serials;
        * TYPE:DESCRIPTION needs SEARCH on ring, possession counted, as keyctl_search asks
          lookup_user_key(ring, 0, KEY_NEED_SEARCH) before keyring_search. Without it, READ
          alone finds only the names it lists (members it may VIEW: its read's serials, then
          keyctl_describe), which tells nothing the read did not.

        With that permission a missing member is ENOENT, and a present one needs VIEW for its
        attributes (keyctl_describe's rule, possession counted), EACCES otherwise."""
        if names.parse_serial(name) is not None:
            self.kernel.check_read(cred, ring.serial)
            return _check_view(self.kernel, cred, self._member(ring, name))
        try:
            self.kernel.lookup(cred, ring.serial, abi.KEY_SEARCH, partial=True)
        except KernelError as error:
            if error.errno != errno.EACCES:
                raise  # a revoked or expired keyring: key_validate comes before the permission
            key = self._find_member(ring, name)
            if key is None and _may_write(self.kernel, cred, ring):
                # add_key needs only WRITE, and tells a writer whether the name is free (a new
                # key) or taken (an update): so absence is ENOENT to it, and O_CREAT goes on
                raise KernelError(errno.ENOENT, f"no {name!r} in keyring {ring.serial}") from None
            self.kernel.check_read(cred, ring.serial)  # EACCES too without READ
            if key is None or not _may_view(self.kernel, cred, key):
                raise KernelError(errno.EACCES, f"keyring {ring.serial}: no SEARCH to look {name!r} up") from None
            return key
        try:  # not a serial (above): TYPE:DESCRIPTION, or nothing this keyring can hold
            key = self.kernel.find_member(ring, names.parse_entry(name))
        except KernelError:
            key = None
        if key is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return _check_view(self.kernel, cred, key)

    def _own_pendings(self, ring: Key, cred: Cred) -> Iterator[tuple[int, KeyFile]]:
        """(inode, file) of the caller's own files being created in ring. Until its close
        commits one (add_key) there is no such key, so no other user may see its name."""
        for inode, (kind, value) in self._dynamic.items():
            if kind == "pending" and value.serial is None and value.ring == ring.serial \
                    and value.cred.uid == cred.uid:
                yield inode, value

    def _own_pending(self, ring: Key, name: bytes, cred: Cred) -> Optional[int]:
        """The inode of the caller's own file of that name being created in ring, if any (one
        dict lookup: every lookup in a keyring asks)."""
        inode = self._pending_names.get((ring.serial, name, cred.uid))
        if inode is None:
            return None
        dynamic = self._dynamic.get(inode)
        return inode if dynamic is not None and dynamic[0] == "pending" and dynamic[1].serial is None else None

    def _forget_pending_name(self, handle: KeyFile) -> None:
        name = (handle.ring, handle.entry_name, handle.cred.uid)  # type: ignore[attr-defined]
        if self._pending_names.get(name) == handle.inode:  # type: ignore[attr-defined]
            del self._pending_names[name]

    # -------------------------------------------------------------- lookup

    @handler
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        cred = self._cred(ctx)
        if name == b".":
            return self._attr(parent_inode, cred)
        if parent_inode == names.ROOT:
            inode = names.ROOT_NAMES.get(name)
            if inode is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attr(inode, cred)
        if parent_inode == names.PIPES:
            inode = self.pipes.end_inode(name)
            if inode is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attr(inode, cred)
        if parent_inode == names.KEYS:
            # ENOENT for a serial that names no key, EACCES for a key without VIEW: the oracle
            # is the kernel's own, since keyctl_describe answers ENOKEY (lookup_user_key finds
            # nothing) before EACCES (key_permission). Serials are not secret; VIEW guards the rest.
            serial = names.parse_serial(name)
            if serial is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            key = self._key(names.key_inode(serial))
            return self._viewed_attr(cred, key)  # what _attr does for a key
        if parent_inode == names.EVENTS or parent_inode in names.WATCH_DIRS:
            inode = self._events_inode(parent_inode, name)
            self._events_lookups.setdefault(inode, [(parent_inode, name), 0])[1] += 1
            return self._attr(inode, cred)
        ring = self._keyring(parent_inode)
        pending = self._own_pending(ring, name, cred)
        if pending is not None:  # its creator had WRITE on ring (create checked)
            return self._attr(pending, cred)
        # No VIEW on ring itself is asked (keyctl_search needs none); reaching ring by a path
        # already took it, as ring's own lookup.
        return self._key_attr(cred, self._visible_member(ring, name, cred))

    def _events_inode(self, parent_inode: int, name: bytes) -> int:
        """The inode of events/KEY,KEY... (its key specs), mounts/PATH or superblocks/PATH (the
        path, systemd-escape'd), made at its first lookup; ENOENT for a name of no such form.
        Whether the keys or the path exist is the open's to tell, as the watch would."""
        inode = self._events_inodes.get((parent_inode, name))
        if inode is not None:
            return inode
        if parent_inode in names.WATCH_DIRS:
            path = names.unescape_unit_path(name)
            if path is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            inode = self._alloc_inode(names.WATCH_DIRS[parent_inode], path)
        else:
            try:
                specs = [parse_key_spec(part) for part in name.decode("ascii").split(",")]
            except (KernelError, UnicodeDecodeError):
                raise pyfuse3.FUSEError(errno.ENOENT) from None
            if not specs or len(specs) > 255:
                raise pyfuse3.FUSEError(errno.ENOENT)
            inode = self._alloc_inode("events", specs)
        self._events_inodes[(parent_inode, name)] = inode
        return inode

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        """The kernel dropped inodes: a name of events/, mounts/ or superblocks/ it no longer knows is forgotten here too,
        so a long-lived mount does not keep every name ever looked up. (Key inodes are
        2^32 + serial and cost nothing; pipe ends are dropped once handed over.)"""
        for inode, count in inode_list:
            entry = self._events_lookups.get(inode)
            if entry is None:
                continue
            entry[1] -= count
            if entry[1] <= 0:
                del self._events_lookups[inode]
                self._events_inodes.pop(entry[0], None)
                self._dynamic.pop(inode, None)

    @handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(inode, self._cred(ctx))

    @handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        if inode not in names.LINK_INODES:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return self._link_target(inode, self._cred(ctx), True)

    @handler
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        cred = self._cred(ctx)
        serial = names.serial_of(inode)
        if serial is None:
            return not (mode & os.W_OK) or inode == names.QUEUE or inode in self._dynamic
        key = self._key(inode)
        possessed = self.kernel.possessed(cred, key)
        for bit, need in ((os.R_OK, abi.KEY_READ), (os.W_OK, abi.KEY_WRITE), (os.X_OK, abi.KEY_SEARCH)):
            if mode & bit and not permission.permitted(key, cred, need, possessed):
                return False
        return True

    # ----------------------------------------------------------- directories

    @handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        cred = self._cred(ctx)
        handle = DirHandle()
        if inode == names.ROOT:
            for entry, child in names.ROOT_ENTRIES:
                handle.entries.append((entry.encode(), self._attr(child, cred)))
        elif inode == names.KEYS:
            for key in self.kernel.visible_keys(cred):
                handle.entries.append((str(key.serial).encode(), self._key_attr(cred, key)))
        elif inode in (names.EVENTS, names.MOUNTS, names.SUPERBLOCKS):
            pass  # what they hold is named by the opener: nothing to list
        else:
            ring = self._keyring(inode)
            # Listing is reading: keyctl_read_key's rule (READ, or possession), from the core.
            # A read gives serials only; a member's type, description and attributes take
            # keyctl_describe's VIEW on it, and without that it is listed by serial, hidden.
            self.kernel.check_read(cred, ring.serial)
            for member in self.kernel.keyring_members(ring):
                if _may_view(self.kernel, cred, member):
                    handle.entries.append((names.entry_name(member), self._key_attr(cred, member)))
                else:
                    handle.entries.append((str(member.serial).encode(), self._hidden_attr(member)))
            for pending_inode, value in self._own_pendings(ring, cred):
                handle.entries.append((value.entry_name, self._attr(pending_inode, cred)))
        return self._add_handle(handle)

    @handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._handle(fh)
        assert isinstance(handle, DirHandle)
        for index in range(start_id, len(handle.entries)):
            name, attr = handle.entries[index]
            if not pyfuse3.readdir_reply(token, name, attr, index + 1):
                break

    @handler
    async def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    @handler
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        ring = self._keyring(parent_inode)
        type_name, description = names.parse_entry(name)
        if type_name != "keyring":
            raise KernelError(errno.EINVAL, "mkdir makes keyrings: name it keyring:NAME")
        cred = self._cred(ctx)
        serial = self.kernel.add_key(cred, "keyring", description, b"", ring.serial)
        return self._key_attr(cred, self._key(names.key_inode(serial)))

    @handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        ring = self._keyring(parent_inode)
        key = self._member(ring, name)
        if not key.is_keyring:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        self.kernel.unlink(self._cred(ctx), key.serial, ring.serial)

    @handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        ring = self._keyring(parent_inode)
        key = self._member(ring, name)
        if key.is_keyring:
            raise pyfuse3.FUSEError(errno.EISDIR)
        self.kernel.unlink(self._cred(ctx), key.serial, ring.serial)

    @handler
    async def rename(self, parent_old: int, name_old: bytes, parent_new: int, name_new: bytes,
                     flags: int, ctx: pyfuse3.RequestContext) -> None:
        source = self._keyring(parent_old)
        target = self._keyring(parent_new)
        key = self._member(source, name_old)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise KernelError(errno.EINVAL, "keys cannot be exchanged")
        if name_new not in (names.entry_name(key), str(key.serial).encode()):
            raise KernelError(errno.EINVAL, "a key keeps its name: mv it to a keyring, not to a new name")
        move_flags = abi.KEYCTL_MOVE_EXCL if flags & pyfuse3.RENAME_NOREPLACE else 0
        self.kernel.move(self._cred(ctx), key.serial, source.serial, target.serial, move_flags)

    @handler
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        ring = self._keyring(new_parent_inode)
        key = self._key(inode)
        if new_name not in (names.entry_name(key), str(key.serial).encode()):
            raise KernelError(errno.EINVAL, "a link keeps the key's name: ln KEY RING/")
        cred = self._cred(ctx)
        self.kernel.link(cred, key.serial, ring.serial)
        return self._key_attr(cred, key)

    @handler
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    @handler
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    # ----------------------------------------------------------------- files

    @handler
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        ring = self._keyring(parent_inode)
        type_name, description = names.parse_entry(name)
        if type_name == "keyring":
            raise KernelError(errno.EISDIR, "keyrings are made with mkdir")
        cred = self._cred(ctx)
        # add_key's checks now, so that open fails as the add_key at close would; the payload's at close
        self.kernel.check_add_key(cred, type_name, description, ring.serial)
        handle = KeyFile(cred, None, ring.serial, type_name, description,
                         limit=self.kernel.add_key_payload_limit(type_name))
        handle.entry_name = name  # type: ignore[attr-defined]
        inode = self._alloc_inode("pending", handle)
        handle.inode = inode  # type: ignore[attr-defined]
        self._pending_names.setdefault((ring.serial, name, cred.uid), inode)
        fh = self._add_handle(handle)
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False), self._attr(inode, cred)

    @handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        request = REQUESTS.current()  # before any await: a watch of the host may be interrupted
        cred = self._cred(ctx)  # with its capabilities: a queue is a pipe2, charged to its pages
        accmode = flags & os.O_ACCMODE
        nonblock = bool(flags & os.O_NONBLOCK)
        dynamic = self._dynamic.get(inode)
        if inode == names.QUEUE or dynamic is not None:
            stream = pyfuse3.FileInfo(direct_io=True, nonseekable=True, keep_cache=False)
        if inode == names.QUEUE:
            stream.fh = self._add_handle(QueueFile(self.kernel.new_queue(cred), cred, ctx.pid, nonblock))
            return stream
        if dynamic is not None and dynamic[0] == "pipe":
            token, end = dynamic[1]
            pipe = self.pipes.get(token)
            if pipe is None or ctx.uid != os.getuid():
                raise pyfuse3.FUSEError(errno.EACCES)
            stream.fh = self._add_handle(QueueFile(pipe.queue, pipe.cred, pipe.pid, nonblock, pipe, end))
            return stream
        if dynamic is not None and dynamic[0] == "events":
            if accmode != os.O_RDONLY:
                raise pyfuse3.FUSEError(errno.EACCES)
            stream.fh = self._add_handle(self._open_events(dynamic[1], cred, ctx.pid, nonblock))
            return stream
        if dynamic is not None and dynamic[0] in ("mount", "sb"):
            if accmode != os.O_RDONLY:
                raise pyfuse3.FUSEError(errno.EACCES)
            handle = await self._open_mount_file(dynamic[0] == "sb", dynamic[1], cred, ctx.pid, nonblock, request)
            stream.fh = self._add_handle(handle)
            return stream
        if dynamic is not None:  # a created key, opened again by name before its close
            handle = dynamic[1]
            if handle.serial is None:
                raise pyfuse3.FUSEError(errno.EBUSY)
            inode = names.key_inode(handle.serial)
        if inode in names.DIRECTORIES or inode in names.LINK_INODES:
            raise pyfuse3.FUSEError(errno.EISDIR)
        key = self._key(inode)
        if key.is_keyring:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if accmode in (os.O_RDONLY, os.O_RDWR):
            self.kernel.read(cred, key.serial)
        handle = KeyFile(cred, key.serial)
        if accmode in (os.O_WRONLY, os.O_RDWR):
            handle.limit = self.kernel.write_limit(cred, key.serial)
            if flags & os.O_APPEND:  # appending is reading, then writing: it needs what a read needs
                handle.buffer = bytearray(self.kernel.read(cred, key.serial))
        return pyfuse3.FileInfo(fh=self._add_handle(handle), direct_io=True, keep_cache=False)

    def _open_events(self, specs: list[int], cred: Cred, pid: int, nonblock: bool) -> EventFile:
        """pipe2, SET_SIZE(256) and a watch per key in one open, accounted as those calls are
        (ENFILE, EPERM); any failure releases the queue, and so gives its pages back."""
        queue = self.kernel.new_queue(cred)
        handle = EventFile(queue, cred, pid, nonblock)
        try:
            queue.set_size(EVENTS_QUEUE_SIZE, cred)
            limit = nofile_limit(pid)
            for tag, key_id in enumerate(specs, start=1):
                self.kernel.watch_key(cred, key_id, queue, tag, limit)
        except BaseException:
            handle.close(self.kernel)
            raise
        return handle

    async def _open_mount_file(self, sb: bool, path: bytes, cred: Cred, pid: int, nonblock: bool,
                               request: Optional[Request]) -> EventFile:
        """mounts/PATH (sb False) or superblocks/PATH: pipe2, SET_SIZE(256) and watch_mount (or
        watch_sb) of PATH with tag 1, as the opener (its root; PATH is absolute); the watch's
        errno is open's. Any failure releases the queue."""
        queue = self.kernel.new_queue(cred)
        handle = EventFile(queue, cred, pid, nonblock, sample_lines)
        try:
            queue.set_size(EVENTS_QUEUE_SIZE, cred)
            await self._watch_host(sb, pid, cred, path, 0, queue, 1, request)
        except BaseException:
            handle.close(self.kernel)
            raise
        return handle

    async def _watch_host(self, sb: bool, pid: int, cred: Cred, path: bytes, at_flags: int,
                          queue: Optional[WatchQueue], tag: int, request: Optional[Request],
                          charged: Optional[int] = None) -> None:
        """watch_mount(AT_FDCWD, path, at_flags, queue, tag) (watch_sb if sb) with cred, the
        path where pid stands; the watch counts against the RLIMIT_NOFILE of charged (pid's),
        through the host's feeds: the caller's namespace may have to be read first, and the
        lookup runs as the caller, so this waits (boundedly: the feeds bound it). A signal to
        the caller ends the wait (EINTR), as the daemon's stopping does (ENOTCONN)."""
        feeds = self.feeds
        if feeds is None:
            raise KernelError(errno.ENOSYS, "this daemon reads no mount namespaces")
        call = feeds.watch_sb if sb else feeds.watch_mount
        limit = nofile_limit(pid if charged is None else charged)
        await self._interruptible(request, lambda: call(pid, cred, None, path, at_flags, queue, tag, limit))

    async def _interruptible(self, request: Optional[Request], call: Callable[[], Awaitable[None]]) -> None:
        """await call(), cancelled when the kernel interrupts request (EINTR) or the daemon
        stops (ENOTCONN)."""
        if self._closing:
            raise pyfuse3.FUSEError(errno.ENOTCONN)
        scope = trio.CancelScope()
        if REQUESTS.on_interrupt(request, scope.cancel):
            raise pyfuse3.FUSEError(errno.EINTR)
        self._scopes.add(scope)
        try:
            with scope:
                await call()
        finally:
            self._scopes.discard(scope)
            REQUESTS.forget(request)
        if scope.cancelled_caught:
            raise pyfuse3.FUSEError(errno.ENOTCONN if self._closing else errno.EINTR)

    def _writer(self, handle: QueueFile, request: Optional[Request]) -> int:
        """The process writing a command, whose root and cwd a PATH is resolved in: the thread
        libfuse's request log names (a write carries no request context); the opener without
        that log (libfuse before 3.7). The command's rights stay the opener's (handle.cred),
        as every command's, so a passed fd cannot make its receiver watch for the sender."""
        if request is None or request.pid <= 0:
            return handle.pid
        return request.pid

    @handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        request = REQUESTS.current()  # before any await: the READ this handler answers
        handle = self._handle(fh)
        if isinstance(handle, KeyFile):
            if handle.serial is None:
                return bytes((handle.buffer or b"")[off:off + size])
            return self.kernel.read(handle.cred, handle.serial)[off:off + size]
        if isinstance(handle, EventFile):
            while True:
                handle.fill()
                if handle.text or size == 0:
                    data = bytes(handle.text[:size])
                    del handle.text[:size]
                    return data
                if handle.queue.hangup:
                    return b""
                await self._wait(handle, request)
        if isinstance(handle, QueueFile):
            while True:
                try:
                    return handle.queue.read_nowait(size)
                except KernelError as error:
                    if error.errno != errno.EAGAIN:
                        raise
                await self._wait(handle, request)
        raise pyfuse3.FUSEError(errno.EISDIR)

    async def _wait(self, handle: Stream, request: Optional[Request]) -> None:
        """pipe_read's wait: EAGAIN for O_NONBLOCK; else sleep until a post wakes the file, the
        kernel interrupts this request (its caller got a signal: EINTR, no record consumed),
        or the daemon stops. Waiting costs no polling: see requests.py."""
        if handle.nonblock:
            raise pyfuse3.FUSEError(errno.EAGAIN)
        await self._sleep(handle.waiters, request, math.inf)

    async def _sleep(self, waiters: "set[Waiter]", request: Optional[Request], timeout: float) -> None:
        """Park one request in waiters until woken or timeout; EINTR when interrupted, and
        ENOTCONN ("Transport endpoint is not connected", what every later call on the mount
        gets) when the daemon stops."""
        if self._closing:
            raise pyfuse3.FUSEError(errno.ENOTCONN)
        waiter = Waiter()
        if REQUESTS.on_interrupt(request, waiter.interrupt):
            raise pyfuse3.FUSEError(errno.EINTR)
        waiters.add(waiter)
        self._waiters.add(waiter)
        try:
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            waiters.discard(waiter)
            self._waiters.discard(waiter)
            REQUESTS.forget(request)
        if waiter.interrupted:
            raise pyfuse3.FUSEError(errno.EINTR)
        if self._closing:
            raise pyfuse3.FUSEError(errno.ENOTCONN)

    @handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        request = REQUESTS.current()
        handle = self._handle(fh)
        if isinstance(handle, KeyFile):
            return handle.write(off, buf)
        if isinstance(handle, QueueFile):
            if handle.pipe is not None:
                raise KernelError(errno.EXDEV, "notification pipes cannot be written")
            await self._control(handle, buf, request)
            return len(buf)
        raise pyfuse3.FUSEError(errno.EBADF)

    async def _control(self, handle: QueueFile, data: bytes, request: Optional[Request] = None) -> None:
        command = parse_command(data)
        queue = handle.queue
        if isinstance(command, SetSize):
            queue.set_size(command.notes, handle.cred)  # the opener's capabilities: FUSE names no writer
        elif isinstance(command, SetFilter):
            queue.set_filter(None if command.data is None else Filter.from_bytes(command.data))
        elif isinstance(command, WatchKey):
            await self._watch_key(handle, command, request)
        elif isinstance(command, WatchMount):
            await self._watch_host(command.sb, self._writer(handle, request), handle.cred, command.path,
                                   command.at_flags, handle.queue, command.tag, request, handle.pid)

    async def _watch_key(self, handle: QueueFile, command: WatchKey, request: Optional[Request]) -> None:
        """KEYCTL_WATCH_KEY, whose key lookup waits (interruptibly) for a key under construction."""
        while True:
            try:
                self.kernel.watch_key(handle.cred, command.key_id, handle.queue, command.tag,
                                      nofile_limit(handle.pid))
                return
            except KeyUnderConstruction:
                pass
            await self._sleep(set(), request, KeyUnderConstruction.CHECK_INTERVAL)

    @handler
    async def flush(self, fh: int) -> None:
        handle = self._handles.get(fh)
        if isinstance(handle, KeyFile):
            self._commit(handle)

    def _commit(self, handle: KeyFile) -> None:
        was_new = handle.serial is None
        try:
            handle.commit(self.kernel)
        finally:
            if was_new and handle.serial is not None:
                # The created file is a key now: its pending name goes, the key's own stays.
                self._dynamic[handle.inode] = ("pending", handle)  # type: ignore[attr-defined]
                self._forget_pending_name(handle)

    @handler
    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if isinstance(handle, KeyFile):
            try:
                if handle.dirty:
                    self._commit(handle)
            except KernelError as error:
                log.info("key write lost at close: %s", error)
            finally:
                if self._dynamic.pop(getattr(handle, "inode", -1), None) is not None:
                    self._forget_pending_name(handle)
        elif isinstance(handle, Stream):
            handle.close(self.kernel)
            if isinstance(handle, QueueFile) and handle.pipe is not None and handle.pipe.open_ends == 0:
                self.pipes.closed(handle.pipe)

    @handler
    async def poll(self, inode: int, fh: int, poll_handle: Optional[pyfuse3.PollHandle],
                   ctx: pyfuse3.RequestContext) -> int:
        handle = self._handles.get(fh)
        if isinstance(handle, EventFile):
            handle.fill()
        if isinstance(handle, Stream):
            mask = handle.poll_mask()
            if poll_handle is not None and not mask & select.POLLIN:
                handle.poll_handle = poll_handle
            return mask
        return select.POLLIN | select.POLLRDNORM | select.POLLOUT | select.POLLWRNORM

    @handler
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: Optional[int], ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        cred = self._cred(ctx)
        if names.serial_of(inode) is None:
            if fields.update_uid or fields.update_gid or fields.update_mode:
                raise pyfuse3.FUSEError(errno.EPERM)
            return self._attr(inode, cred)
        key = self._key(inode)
        if fields.update_mode:
            raise KernelError(errno.EPERM, "key permissions are set with user.keyctl.perm")
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            self.kernel.chown(cred, key.serial, id_arg(uid), id_arg(gid))
        return self._attr(inode, cred)

    # ---------------------------------------------------------------- xattrs

    @handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if names.serial_of(inode) is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        key = self._key(inode)
        if not name.startswith(xattrs.PREFIX):
            # what the kernel asks before every write (security.capability): nobody's to check
            raise pyfuse3.FUSEError(errno.ENODATA)
        return xattrs.get(self.kernel, self._cred(ctx), key.serial, name)

    @handler
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        if names.serial_of(inode) is None:
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        key = self._key(inode)
        xattrs.set(self.kernel, self._cred(ctx), key.serial, name, value)

    @handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if names.serial_of(inode) is None:
            return []
        key = _check_view(self.kernel, self._cred(ctx), self._key(inode))
        return xattrs.names(key.is_keyring)

    @handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    @handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = abi.PAGE_SIZE
        data.f_files = self.kernel.statistics()["keys"]
        data.f_namemax = names.NAME_MAX
        return data

    # ------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Wake every blocked reader so that nothing holds the unmount."""
        self._closing = True
        for waiter in list(self._waiters):
            waiter.event.set()
        for scope in list(self._scopes):
            scope.cancel()


def _check_view(kernel: Kernel, cred: Cred, key: Key, own: Optional[int] = None) -> Key:
    """EACCES without VIEW on key, possession counted: keyctl_describe's rule for all it shows.
    own: cred's rights on key (kernel.rights), when the caller has them already."""
    if not (kernel.permitted(cred, key, abi.KEY_VIEW) if own is None else own & abi.KEY_VIEW):
        raise KernelError(errno.EACCES, f"key {key.serial}: no VIEW")
    return key


def _may_write(kernel: Kernel, cred: Cred, ring: Key) -> bool:
    """Whether add_key's lookup of ring (KEY_NEED_WRITE) would pass."""
    try:
        kernel.lookup(cred, ring.serial, abi.KEY_WRITE, partial=True)
    except KernelError:
        return False
    return True


def _may_view(kernel: Kernel, cred: Cred, key: Key) -> bool:
    """Whether _check_view would pass."""
    return kernel.permitted(cred, key, abi.KEY_VIEW)


def _mode_bits(bits: int, keyring: bool) -> int:
    """rwx of one class of a key's permissions: READ, WRITE, and SEARCH as x on a keyring."""
    return ((4 if bits & abi.KEY_READ else 0) | (2 if bits & abi.KEY_WRITE else 0)
            | (1 if keyring and bits & abi.KEY_SEARCH else 0))


# One class's byte of a key's perm -> its rwx bits (st_mode = owner << 6 | group << 3 | other)
_FILE_MODE = tuple(_mode_bits(bits, False) for bits in range(256))
_DIR_MODE = tuple(_mode_bits(bits, True) for bits in range(256))


__all__ = ["WqfsOperations", "EVENTS_QUEUE_SIZE"]
