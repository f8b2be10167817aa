"""The syscall front: trapped pipe2/ioctl/keyctl/add_key/request_key/watch_mount/watch_sb
answered by the emulated kernel.

A notification is decoded into a keyctl-style call on the same Kernel the FUSE tree
serves, with the caller's identity taken from its own /proc directory, bound to the trapped
task (trapped.py; never from its arguments), its strings and buffers read and written in its
own memory with the kernel's length rules, on copy threads (transfer.py) so that no caller's
page fault can stop the loop that serves FUSE. watch_mount and watch_sb go to the host's mount
feeds (wqfs/host/feeds.py), which look the path up as the caller would.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import struct
from typing import Any, Optional, Protocol

import trio

from .. import abi
from ..callers import CallerTable
from ..kernel import Cred, Filter, check_add_key_payload, check_update_payload, filter_entries_size, id_arg, Kernel, KernelError, KeyUnderConstruction, Upcall, WatchQueue
from . import memory, seccomp
from .upcall import Upcalls
from .seccomp import Notification
from .transfer import TransferPool
from .trapped import Dropped, Trapped

log = logging.getLogger("wqfs.syscalls")

PIPE2_FLAGS = os.O_CLOEXEC | os.O_NONBLOCK | os.O_DIRECT | abi.O_NOTIFICATION_PIPE
CONTINUE = object()  # answer "let the real kernel do it"
# Test hook: seconds to wait after a notification arrives, before anything is read about its
# task (makes the pid-reuse race of a killed caller deterministic in the suite).
TRAP_DELAY = float(os.environ.get("WQFS_TEST_TRAP_DELAY", "0") or 0)


def _i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


class Pipes(Protocol):
    """What the front needs of whoever serves the ends of its pipes as files of the mount (the
    tree: wqfs/fuse/pipes.py). An end is named by a path relative to the mount, a pipe by a token."""

    def new_pipe(self, cred: Cred, pid: int) -> tuple[str, str]:
        """A new pipe's read and write ends, to be opened once each and then forgotten."""

    def forget_pipe(self, *paths: str) -> None:
        """The ends' names go; the pipe lives on while an end is open."""

    def end_of(self, path: str) -> Optional[tuple[str, str]]:
        """(token, "r" or "w") when path names a pipe end, else None."""

    def pipe_queue(self, token: str) -> Optional[WatchQueue]:
        """The pipe's queue, None once its ends are all closed."""

    def set_pipe_nonblocking(self, token: str, end: str, nonblock: bool) -> None:
        """O_NONBLOCK set on an open end after its open (fcntl, FIONBIO)."""


class Feeds(Protocol):
    """What the front needs of the host's mount feeds (wqfs.host.feeds.MountFeeds): the lookup of
    the path as the caller (pid) sees it, then the emulated kernel's watch_mount or watch_sb.
    dfd None is AT_FDCWD; queue None: watch_fd is no notification queue."""

    async def watch_mount(self, pid: int, cred: Cred, dfd: Optional[int], path: bytes, at_flags: int,
                          queue: Optional[WatchQueue], watch_id: int, limit: int) -> None: ...

    async def watch_sb(self, pid: int, cred: Cred, dfd: Optional[int], path: bytes, at_flags: int,
                       queue: Optional[WatchQueue], watch_id: int, limit: int) -> None: ...


# Every number any legacy version traps, and what it is served as (no number means two things).
LEGACY_CALLS = {nr: name for numbers in abi.LEGACY_WATCH_NRS.values() for nr, name in numbers.items()}
PIDFD_LINK, EPOLL_LINK = "anon_inode:[pidfd]", "anon_inode:[eventpoll]"  # readlink of /proc/PID/fd/N


class SyscallFront:
    """Serves seccomp listeners in the daemon's trio loop, against its kernel, pipes and feeds."""

    def __init__(self, kernel: Kernel, pipes: Pipes, mountpoint: str, callers: CallerTable,
                 feeds: Optional[Feeds] = None) -> None:
        self.kernel = kernel
        self.pipes = pipes
        self.feeds = feeds  # None: watch_mount and watch_sb are ENOSYS, as on a real kernel
        self.mountpoint = mountpoint  # already real: the daemon must never stat its own mount
        self.callers = callers
        self._in_mount = self.mountpoint + "/"
        self.served = 0
        self.dropped = 0
        self.transfers = TransferPool()
        self.upcalls = Upcalls(self)  # request_key's /sbin/request-key helpers
        self.lsm_config: Optional[Any] = None  # the mount's lsmconfig.Security, if it has a module

    # ------------------------------------------------------------ the loop

    async def serve(self, listener: int, label: Optional[str] = None) -> None:
        """Answer notifications until every supervised task is gone; label: the security label
        of every task under this listener (`wqfs run --smack-label`), None for their own."""
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    await trio.lowlevel.wait_readable(listener)
                    events = dict(poller.poll(0)).get(listener, 0)
                    if not events & select.POLLIN:
                        if events & (select.POLLHUP | select.POLLERR):
                            break
                        continue
                    try:
                        notif = seccomp.receive(listener)
                    except OSError as error:
                        if error.errno in (errno.ENOENT, errno.EINTR):
                            continue  # the caller went away before we looked
                        raise
                    nursery.start_soon(self._answer, listener, notif, label)
        finally:
            os.close(listener)

    async def _answer(self, listener: int, notif: Notification, label: Optional[str] = None) -> None:
        self.served += 1
        if TRAP_DELAY:
            await trio.sleep(TRAP_DELAY)
        try:
            call = Trapped(listener, notif, self.transfers, self.callers, label)
        except Dropped:
            self.dropped += 1
            return  # killed or interrupted before we looked: the kernel restarts or drops it
        except KernelError as error:
            seccomp.respond(listener, notif.id, error=error.errno)
            return
        try:
            while True:
                try:
                    result = await self.dispatch(call)
                    break
                except KeyUnderConstruction:
                    pass
                # lookup_user_key waits (interruptibly) for a key under construction; the
                # lookups come before any change, so the call is simply made again.
                await trio.sleep(KeyUnderConstruction.CHECK_INTERVAL)
                call.require_valid()
        except Dropped:
            self.dropped += 1
            return
        except KernelError as error:
            seccomp.respond(listener, notif.id, error=error.errno)
            return
        except Exception:
            log.exception("internal error answering %s", seccomp.SYSCALL_NAMES.get(notif.nr, notif.nr))
            seccomp.respond(listener, notif.id, error=errno.EIO)
            return
        finally:
            call.close()
        if result is CONTINUE:
            seccomp.respond(listener, notif.id, cont=True)
        elif result is not None:
            seccomp.respond(listener, notif.id, value=int(result))

    # ------------------------------------------------------------ dispatch

    async def dispatch(self, call: Trapped) -> object:
        notif = call.notif
        if notif.arch != seccomp.AUDIT_ARCH_X86_64:
            return CONTINUE
        args = notif.args
        if notif.nr == seccomp.SYS_pipe2:
            return await self._pipe2(call)
        if notif.nr == seccomp.SYS_ioctl:
            return await self._ioctl(call, _i32(args[0]), _u32(args[1]), args[2])
        if notif.nr == seccomp.SYS_fcntl:
            return self._fcntl(call, _i32(args[0]), _u32(args[1]), args[2])
        if notif.nr == seccomp.SYS_write:
            return self._write_nothing(call, _i32(args[0]))
        if notif.nr == seccomp.SYS_splice:
            return self._splice(call, _i32(args[0]))
        if notif.nr in (seccomp.SYS_watch_mount, seccomp.SYS_watch_sb):
            return await self._watch(call, "watch_mount" if notif.nr == seccomp.SYS_watch_mount else "watch_sb")
        if notif.nr in LEGACY_CALLS:  # trapped only under --legacy-watch-nr
            if not self.legacy_watch_call(call):
                return CONTINUE
            return await self._watch(call, LEGACY_CALLS[notif.nr])
        if notif.nr not in (seccomp.SYS_add_key, seccomp.SYS_request_key, seccomp.SYS_keyctl):
            return CONTINUE
        cred = call.cred()
        try:
            if notif.nr == seccomp.SYS_add_key:
                return await self._add_key(call, cred, args)
            if notif.nr == seccomp.SYS_request_key:
                return await self._request_key(call, cred, args)
            return await self._keyctl(call, cred, args)
        finally:  # a lookup of @s may have given the process a session keyring, failed or not
            self.callers.note_session(self.kernel, cred)

    # ---- pipe2 ----

    async def _pipe2(self, call: Trapped) -> int:
        notif = call.notif
        flags = _u32(notif.args[1])
        if flags & ~PIPE2_FLAGS:
            raise KernelError(errno.EINVAL, "unknown pipe2 flags")
        cred = call.cred()
        read_end, write_end = self.pipes.new_pipe(cred, call.pid)
        nonblock = os.O_NONBLOCK if flags & os.O_NONBLOCK else 0
        fds: list[int] = []
        try:
            # Opening our own FUSE files must not block the loop that serves them.
            fds.append(await trio.to_thread.run_sync(
                os.open, self._in_mount + read_end, os.O_RDONLY | nonblock | os.O_CLOEXEC))
            fds.append(await trio.to_thread.run_sync(
                os.open, self._in_mount + write_end, os.O_WRONLY | nonblock | os.O_CLOEXEC))
            call.require_valid()
            # do_pipe2 installs the fds only once copy_to_user succeeded: on EFAULT the
            # caller has none, so the array is probed before any fd is put there.
            await call.copy(memory.probe_writable, notif.args[0], 8)
            cloexec = bool(flags & os.O_CLOEXEC)
            remote = [seccomp.add_fd(call.listener, notif.id, fd, cloexec) for fd in fds]
            await call.write(notif.args[0], struct.pack("<ii", *remote))
            return 0
        finally:
            for fd in fds:  # close() flushes through FUSE: never on the loop's own thread
                await trio.to_thread.run_sync(os.close, fd)
            self.pipes.forget_pipe(read_end, write_end)

    # ---- ioctl ----

    def _pipe_end(self, call: Trapped, fd: int) -> "tuple[str, str] | str":
        """(token, "r" or "w") for an end of one of our pipes, else what the fd is."""
        target = call.fd_target(fd)
        if target is None:
            return "badf"
        if target.startswith(self._in_mount):
            end = self.pipes.end_of(target[len(self._in_mount):])
            if end is not None:
                return end
        return "pipe" if target.startswith("pipe:") else "other"

    def queue_of(self, call: Trapped, fd: int) -> tuple[Optional[WatchQueue], str]:
        """The queue behind a caller's fd, and what the fd is (for the kernel's errno).

        What: "badf", "pipe", "other", or for a queue "r" or "w" (the end it was opened as).
        """
        end = self._pipe_end(call, fd)
        if isinstance(end, str):
            return None, end
        queue = self.pipes.pipe_queue(end[0])
        return (queue, end[1]) if queue is not None else (None, "other")

    def _set_nonblocking(self, call: Trapped, fd: int, nonblock: bool) -> object:
        """Note O_NONBLOCK for one of our ends; the kernel still sets the flag itself."""
        end = self._pipe_end(call, fd)
        if not isinstance(end, str):
            self.pipes.set_pipe_nonblocking(end[0], end[1], nonblock)
        return CONTINUE

    async def _ioctl(self, call: Trapped, fd: int, cmd: int, arg: int) -> object:
        if cmd == abi.FIONBIO:
            end = self._pipe_end(call, fd)
            if isinstance(end, str):
                return CONTINUE  # not one of ours: nothing to note, the kernel answers
            try:
                value = struct.unpack("<i", await call.read(arg, 4))[0]
            except KernelError:
                return CONTINUE  # the kernel's EFAULT
            self.pipes.set_pipe_nonblocking(end[0], end[1], value != 0)
            return CONTINUE
        queue, kind = self.queue_of(call, fd)
        if queue is None:
            if cmd == abi.FIONREAD or kind == "badf":
                return CONTINUE
            if kind == "pipe":
                raise KernelError(errno.ENODEV, "not a notification pipe")
            raise KernelError(errno.ENOTTY, "not a pipe")
        if cmd == abi.FIONREAD:
            await call.write(arg, struct.pack("<i", queue.nbytes))
            return 0
        if cmd == abi.IOC_WATCH_QUEUE_SET_SIZE:
            queue.set_size(_i32(arg) if arg < (1 << 63) else -1, call.cred())
            return 0
        if arg == 0:
            queue.set_filter(None)
            return 0
        queue.set_filter(Filter.from_bytes(await call.copy(_read_filter, arg)))
        return 0

    # ---- the calls that differ on a notification pipe ----
    # The read and write ends are FUSE files: these would otherwise get a file's answers.

    def _fcntl(self, call: Trapped, fd: int, cmd: int, arg: int) -> object:
        if cmd == abi.F_SETFL:
            return self._set_nonblocking(call, fd, bool(arg & os.O_NONBLOCK))
        queue, _ = self.queue_of(call, fd)
        if queue is None:
            return CONTINUE
        if cmd == abi.F_GETPIPE_SZ:
            return queue.pipe_size()
        queue.set_pipe_size()
        return CONTINUE  # not reached: a notification pipe refuses F_SETPIPE_SZ

    def _write_nothing(self, call: Trapped, fd: int) -> object:
        """write(fd, buf, 0): pipe_write says EXDEV before it looks at the length."""
        queue, end = self.queue_of(call, fd)
        if queue is None or end != "w":  # the read end: the kernel's EBADF, from FMODE_WRITE
            return CONTINUE
        raise KernelError(errno.EXDEV, "a notification pipe cannot be written to")

    def _splice(self, call: Trapped, fd_in: int) -> object:
        """A notification pipe is no pipe to splice (get_pipe_info) and has no splice_read."""
        queue, end = self.queue_of(call, fd_in)
        if queue is None or end != "r":
            return CONTINUE
        raise KernelError(errno.EINVAL, "cannot splice from a notification pipe")

    # ---- watch_mount / watch_sb ----

    async def _watch(self, call: Trapped, which: str) -> int:
        """watch_mount(dfd, filename, at_flags, watch_fd, watch_id), watch_sb(the same): the
        scalar checks, then getname, before anything is looked up (as the syscalls do); the
        lookup, MAY_EXEC and the watch itself are the feed's."""
        if self.feeds is None:
            raise KernelError(errno.ENOSYS, f"{which}: no mount feed in this daemon")
        args = call.notif.args
        dfd, at_flags, watch_fd, watch_id = _i32(args[0]), _u32(args[2]), _i32(args[3]), _i32(args[4])
        self.kernel.check_watch_args(watch_id, at_flags)
        path = await call.copy(memory.getname, args[1])
        queue, _ = self.queue_of(call, watch_fd)
        watch = self.feeds.watch_mount if which == "watch_mount" else self.feeds.watch_sb
        await watch(call.pid, call.cred(), None if dfd == abi.AT_FDCWD else dfd, path, at_flags, queue,
                    watch_id, call.nofile_limit())
        return 0

    def legacy_watch_call(self, call: Trapped) -> bool:
        """Is this trapped 439/440/441 a watch_mount or watch_sb of a binary built against the
        2020 patches, rather than the real faccessat2, process_madvise or epoll_pwait2?

        Only if both hold: (1) arg3 (watch_fd) is a wqfs notification queue of this process;
        (2) the real call of that number would certainly fail with these arguments, before it
        does anything:
          faccessat2(dfd, path, mode, flags): mode has bits beyond 07, or flags beyond
            AT_EACCESS|AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH (do_faccessat's first checks, EINVAL);
          process_madvise(pidfd, iovec, vlen, advice, flags): flags (arg4) is not 0 (EINVAL
            first), or arg0 is no pidfd (AT_FDCWD, or /proc/PID/fd/N is not anon_inode:[pidfd]:
            EBADF, before any advice is given);
          epoll_pwait2(epfd, events, maxevents, timeout, sigmask, size): maxevents (arg2) <= 0
            (EINVAL), or arg0 is no epoll fd (EBADF or EINVAL), before any wait.
        Anything else runs as the real call (SECCOMP_USER_NOTIF_FLAG_CONTINUE): a program that
        really means the real call gets it, whatever its arguments. A watch the rule refuses
        (watch_fd 256 read as faccessat2 flags AT_SYMLINK_NOFOLLOW, say) is the real call's.
        The fd table is read now; a thread of the caller changing it meanwhile races itself."""
        args = call.notif.args
        queue, _ = self.queue_of(call, _i32(args[3]))
        if queue is None:
            return False
        nr = call.notif.nr
        if nr == seccomp.SYS_faccessat2:
            return bool(_u32(args[2]) & ~seccomp.FACCESSAT2_MODES or _u32(args[3]) & ~seccomp.FACCESSAT2_FLAGS)
        if nr == seccomp.SYS_process_madvise:
            return _u32(args[4]) != 0 or call.fd_target(_i32(args[0])) != PIDFD_LINK
        if nr == seccomp.SYS_epoll_pwait2:
            return _i32(args[2]) <= 0 or call.fd_target(_i32(args[0])) != EPOLL_LINK
        return False

    # ---- add_key / request_key ----

    async def _add_key(self, call: Trapped, cred: Cred, args: tuple[int, ...]) -> int:
        plen = args[3]
        check_add_key_payload(plen)  # before anything is copied in
        type_name, description, payload = await call.copy(_read_add_key, args[0], args[1], args[2], plen)
        return self.kernel.add_key(cred, type_name, description, payload, _i32(args[4]))

    async def _request_key(self, call: Trapped, cred: Cred, args: tuple[int, ...]) -> int:
        """request_key(2): a key found, or made under construction and handed to the upcall
        (upcall.py), then waited for (wait_for_key_construction), interruptibly."""
        type_name, description, callout = await call.copy(_read_request_key, args[0], args[1], args[2])
        found = self.kernel.request_key(cred, type_name, description, _i32(args[3]), callout)
        if isinstance(found, Upcall):
            self.upcalls.start(found)
            await self.upcalls.wait(found, call)
            if found.error:
                raise KernelError(found.error, f"the request-key helper did not construct key {found.serial}")
            found = found.serial
        while True:
            try:
                return self.kernel.wait_for_key_construction(cred, found)
            except KeyUnderConstruction:
                await trio.sleep(KeyUnderConstruction.CHECK_INTERVAL)
                call.require_valid()

    # ---- keyctl ----

    async def _copy_out(self, call: Trapped, buffer: int, buflen: int, data: bytes, whole: bool) -> int:
        """Describe-style copies truncate; read-style copies only when everything fits."""
        if buffer and buflen > 0:
            if len(data) <= buflen:
                await call.write(buffer, data)
            elif not whole:
                await call.write(buffer, data[:buflen])
        return len(data)

    async def _keyctl(self, call: Trapped, cred: Cred, args: tuple[int, ...]) -> object:
        option, a2, a3, a4, a5 = _i32(args[0]), args[1], args[2], args[3], args[4]
        k = self.kernel
        if option == abi.KEYCTL_GET_KEYRING_ID:
            return k.get_keyring_id(cred, _i32(a2), bool(_i32(a3)))
        if option == abi.KEYCTL_JOIN_SESSION_KEYRING:
            name = await call.copy(memory.strndup_user, a2, abi.KEY_MAX_DESC_SIZE) if a2 else None
            return self.callers.join_session(self.kernel, cred, call.pid, name)
        if option == abi.KEYCTL_UPDATE:
            check_update_payload(a4)  # before the copy
            k.update(cred, _i32(a2), await call.read(a3, a4) if a4 else b"")
            return 0
        if option == abi.KEYCTL_REVOKE:
            k.revoke(cred, _i32(a2))
            return 0
        if option == abi.KEYCTL_CHOWN:
            k.chown(cred, _i32(a2), id_arg(a3), id_arg(a4))
            return 0
        if option == abi.KEYCTL_SETPERM:
            k.setperm(cred, _i32(a2), _u32(a3))
            return 0
        if option == abi.KEYCTL_DESCRIBE:
            text = k.describe(cred, _i32(a2)).encode("utf-8", "surrogateescape") + b"\0"
            return await self._copy_out(call, a3, _u32(a4), text, whole=True)  # buflen is unsigned int
        if option == abi.KEYCTL_CLEAR:
            k.clear(cred, _i32(a2))
            return 0
        if option == abi.KEYCTL_LINK:
            k.link(cred, _i32(a2), _i32(a3))
            return 0
        if option == abi.KEYCTL_UNLINK:
            k.unlink(cred, _i32(a2), _i32(a3))
            return 0
        if option == abi.KEYCTL_SEARCH:
            type_name, description = await call.copy(_read_type_and_description, a3, a4)
            return k.search(cred, _i32(a2), type_name, description, _i32(a5))
        if option == abi.KEYCTL_READ:
            return await self._copy_out(call, a3, a4, k.read(cred, _i32(a2), a4 if a3 else 0), whole=True)
        if option == abi.KEYCTL_INSTANTIATE:
            if a4 > abi.ADD_KEY_MAX_PAYLOAD:
                raise KernelError(errno.EINVAL, "payload larger than 1 MiB - 1")
            k.check_instantiate(cred, _i32(a2))  # the authority, before the payload is copied
            payload = await call.read(a3, a4) if a3 and a4 else b""
            k.instantiate(cred, _i32(a2), payload, _i32(a5))
            return 0
        if option == abi.KEYCTL_INSTANTIATE_IOV:
            payload = await call.copy(_read_iov, a3, a4)
            k.instantiate(cred, _i32(a2), payload, _i32(a5))
            return 0
        if option == abi.KEYCTL_NEGATE:
            k.negate(cred, _i32(a2), _u32(a3), _i32(a4))
            return 0
        if option == abi.KEYCTL_REJECT:
            k.reject(cred, _i32(a2), _u32(a3), _u32(a4), _i32(a5))
            return 0
        if option == abi.KEYCTL_ASSUME_AUTHORITY:
            return k.assume_authority(cred, _i32(a2))
        if option == abi.KEYCTL_SET_TIMEOUT:
            k.set_timeout(cred, _i32(a2), _u32(a3))
            return 0
        if option == abi.KEYCTL_GET_SECURITY:
            # the label and its NUL ("" with none), as much as fits; a NULL buffer gets nothing
            context = k.get_security(cred, _i32(a2)).encode() + b"\0"
            if a3 and a4 > 0:
                await call.write(a3, context[:a4])
            return len(context)
        if option == abi.KEYCTL_SESSION_TO_PARENT:
            self.callers.session_to_parent(call.pid, cred)
            return 0
        if option == abi.KEYCTL_INVALIDATE:
            k.invalidate(cred, _i32(a2))
            return 0
        if option == abi.KEYCTL_GET_PERSISTENT:
            return k.get_persistent(cred, _i32(a2), _i32(a3))
        if option == abi.KEYCTL_RESTRICT_KEYRING:
            k.lookup(cred, _i32(a2), abi.KEY_SETATTR)  # lookup_user_key comes before the strings
            type_name: Optional[str] = "" if a3 else None  # one without the other: EINVAL, unread
            restriction: Optional[str] = "" if a4 else None
            if a3 and a4:
                type_name, restriction = await call.copy(_read_restriction, a3, a4)
            k.restrict_keyring(cred, _i32(a2), type_name, restriction)
            return 0
        if option == abi.KEYCTL_MOVE:
            k.move(cred, _i32(a2), _i32(a3), _i32(a4), _u32(a5))
            return 0
        if option == abi.KEYCTL_CAPABILITIES:
            caps = k.capabilities()
            if a3 > 0:  # copies what fits and zeroes the rest of the buffer
                await call.write(a2, caps[:a3] + bytes(max(0, min(a3, 1 << 20) - len(caps))))
            return len(caps)
        if option == abi.KEYCTL_WATCH_KEY:
            # The queue is resolved first, but the kernel checks it after the tag and the key.
            queue, _ = self.queue_of(call, _i32(a3))
            self.kernel.watch_key(cred, _i32(a2), queue, _i32(a4), call.nofile_limit())
            return 0
        raise KernelError(errno.EOPNOTSUPP, f"keyctl {option} is not emulated")


# ---- copies from the caller's memory: each runs whole on a copy thread (transfer.py) ----

def _read_add_key(pid: int, type_ptr: int, desc_ptr: int, payload_ptr: int, plen: int) -> tuple[str, str, bytes]:
    type_name = memory.read_type(pid, type_ptr)
    description = memory.strndup_user(pid, desc_ptr, abi.KEY_MAX_DESC_SIZE) if desc_ptr else ""
    payload = memory.read(pid, payload_ptr, plen) if plen else b""
    return type_name, description, payload


def _read_request_key(pid: int, type_ptr: int, desc_ptr: int, info_ptr: int) -> tuple[str, str, Optional[bytes]]:
    """The type, the description and the callout information (NULL: None; a page at most)."""
    type_name = memory.read_type(pid, type_ptr)
    description = memory.strndup_user(pid, desc_ptr, abi.KEY_MAX_DESC_SIZE)
    callout = None
    if info_ptr:
        callout = memory.strndup_user(pid, info_ptr, memory.PAGE).encode("utf-8", "surrogateescape")
    return type_name, description, callout


def _read_type_and_description(pid: int, type_ptr: int, desc_ptr: int) -> tuple[str, str]:
    return memory.read_type(pid, type_ptr), memory.strndup_user(pid, desc_ptr, abi.KEY_MAX_DESC_SIZE)


def _read_restriction(pid: int, type_ptr: int, restriction_ptr: int) -> tuple[str, str]:
    return memory.read_type(pid, type_ptr), memory.strndup_user(pid, restriction_ptr, memory.PAGE)


def _read_filter(pid: int, arg: int) -> bytes:
    """watch_queue_set_filter's two copies: the header, checked, then the entries."""
    header = memory.read(pid, arg, 8)
    return header + memory.read(pid, arg + 8, filter_entries_size(header))


def _read_iov(pid: int, iov: int, count: int) -> bytes:
    """import_iovec, then keyctl_instantiate_key_common's size rule, then the copy: no
    length is trusted before the total is known to be at most 1 MiB - 1."""
    if not iov:
        count = 0
    if count > abi.UIO_MAXIOV:
        raise KernelError(errno.EINVAL, "too many iovecs")
    vectors = []
    total = 0
    for i in range(count):
        base, length = struct.unpack("<Qq", memory.read(pid, iov + 16 * i, 16))
        if length < 0:
            raise KernelError(errno.EINVAL, "negative iov_len")
        length = min(length, abi.MAX_RW_COUNT - total)
        if length and base + length > abi.TASK_SIZE_MAX:
            raise KernelError(errno.EFAULT, "iov_base is not a user address")
        vectors.append((base, length))
        total += length
    check_add_key_payload(total)
    return b"".join(memory.read(pid, base, length) for base, length in vectors if length)
