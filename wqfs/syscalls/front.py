"""The syscall front: trapped pipe2/ioctl/keyctl/add_key/request_key answered by the emulated kernel.

A notification is decoded into a keyctl-style call on the same Kernel the FUSE tree
serves, with the caller's identity taken from /proc (never from its arguments), its
strings and buffers read and written in its own memory with the kernel's length rules.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import select
import struct
from typing import Optional

import trio

from .. import abi
from ..fuse.callers import CallerTable, fs_ids, nofile_limit
from ..kernel import Cred, Kernel, KernelError, KeyUnderConstruction, WatchQueue
from ..kernel.filter import Filter
from . import memory, seccomp
from .seccomp import Notification

log = logging.getLogger("wqfs.syscalls")

PIPE2_FLAGS = os.O_CLOEXEC | os.O_NONBLOCK | os.O_DIRECT | abi.O_NOTIFICATION_PIPE
CONTINUE = object()  # answer "let the real kernel do it"


def _i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


class SyscallFront:
    """Serves seccomp listeners in the daemon's trio loop, against its kernel and tree."""

    def __init__(self, kernel: Kernel, ops, mountpoint: str, callers: CallerTable) -> None:
        self.kernel = kernel
        self.ops = ops
        self.mountpoint = mountpoint  # already real: the daemon must never stat its own mount
        self.callers = callers
        self._pipe_re = re.compile(re.escape(self.mountpoint) + r"/\.pipe/([0-9a-f]+)([rw])$")
        self.served = 0

    # ------------------------------------------------------------ the loop

    async def serve(self, listener: int) -> None:
        """Answer notifications until every supervised task is gone."""
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
                    nursery.start_soon(self._answer, listener, notif)
        finally:
            os.close(listener)

    async def _answer(self, listener: int, notif: Notification) -> None:
        self.served += 1
        try:
            while True:
                try:
                    result = await self.dispatch(notif, listener)
                    break
                except KeyUnderConstruction:
                    pass
                # lookup_user_key waits (interruptibly) for a key under construction; the
                # lookups come before any change, so the call is simply made again.
                await trio.sleep(KeyUnderConstruction.CHECK_INTERVAL)
                if not seccomp.id_valid(listener, notif.id):
                    return  # interrupted by a signal, or gone: the kernel restarts or drops it
        except KernelError as error:
            seccomp.respond(listener, notif.id, error=error.errno)
            return
        except Exception:
            log.exception("internal error answering %s", seccomp.SYSCALL_NAMES.get(notif.nr, notif.nr))
            seccomp.respond(listener, notif.id, error=errno.EIO)
            return
        if result is CONTINUE:
            seccomp.respond(listener, notif.id, cont=True)
        elif result is not None:
            seccomp.respond(listener, notif.id, value=int(result))

    # ------------------------------------------------------------ identity

    def cred(self, pid: int) -> Cred:
        ids = fs_ids(pid)
        if ids is None:
            raise KernelError(errno.ESRCH, f"task {pid} is gone")
        info = self.callers.task(pid)  # what callers.cred(pid, fsuid, fsgid) takes, in one Cred
        return Cred(ids[0], ids[1], info.groups, info.thread, info.process, info.session,
                    implicit_session=True)

    # ------------------------------------------------------------ dispatch

    async def dispatch(self, notif: Notification, listener: int) -> object:
        if notif.arch != seccomp.AUDIT_ARCH_X86_64:
            return CONTINUE
        args = notif.args
        if notif.nr == seccomp.SYS_pipe2:
            return await self._pipe2(notif, listener)
        if notif.nr == seccomp.SYS_ioctl:
            return self._ioctl(notif.pid, _i32(args[0]), _u32(args[1]), args[2])
        if notif.nr == seccomp.SYS_fcntl:
            return self._fcntl(notif.pid, _i32(args[0]), _u32(args[1]), args[2])
        if notif.nr == seccomp.SYS_write:
            return self._write_nothing(notif.pid, _i32(args[0]))
        if notif.nr == seccomp.SYS_splice:
            return self._splice(notif.pid, _i32(args[0]))
        cred = self.cred(notif.pid)
        if notif.nr == seccomp.SYS_add_key:
            return self._add_key(notif.pid, cred, args)
        if notif.nr == seccomp.SYS_request_key:
            return self._request_key(notif.pid, cred, args)
        if notif.nr == seccomp.SYS_keyctl:
            return self._keyctl(notif.pid, cred, args)
        return CONTINUE

    # ---- pipe2 ----

    async def _pipe2(self, notif: Notification, listener: int) -> int:
        flags = _u32(notif.args[1])
        if flags & ~PIPE2_FLAGS:
            raise KernelError(errno.EINVAL, "unknown pipe2 flags")
        pid = notif.pid
        cred = self.cred(pid)
        read_name, write_name = self.ops.new_pipe(cred, pid)
        nonblock = os.O_NONBLOCK if flags & os.O_NONBLOCK else 0
        base = os.path.join(self.mountpoint, ".pipe")
        fds: list[int] = []
        try:
            # Opening our own FUSE files must not block the loop that serves them.
            fds.append(await trio.to_thread.run_sync(
                os.open, os.path.join(base, read_name), os.O_RDONLY | nonblock | os.O_CLOEXEC))
            fds.append(await trio.to_thread.run_sync(
                os.open, os.path.join(base, write_name), os.O_WRONLY | nonblock | os.O_CLOEXEC))
            if not seccomp.id_valid(listener, notif.id):
                return 0
            # do_pipe2 installs the fds only once copy_to_user succeeded: on EFAULT the
            # caller has none, so the array is probed before any fd is put there.
            memory.probe_writable(pid, notif.args[0], 8)
            cloexec = bool(flags & os.O_CLOEXEC)
            remote = [seccomp.add_fd(listener, notif.id, fd, cloexec) for fd in fds]
            memory.write(pid, notif.args[0], struct.pack("<ii", *remote))
            return 0
        finally:
            for fd in fds:  # close() flushes through FUSE: never on the loop's own thread
                await trio.to_thread.run_sync(os.close, fd)
            self.ops.forget_pipe(read_name, write_name)

    # ---- ioctl ----

    def _pipe_end(self, pid: int, fd: int) -> "tuple[str, str] | str":
        """(token, "r" or "w") for an end of one of our pipes, else what the fd is."""
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return "badf"
        match = self._pipe_re.match(target)
        if match is not None:
            return match.group(1), match.group(2)
        return "pipe" if target.startswith("pipe:") else "other"

    def queue_of(self, pid: int, fd: int) -> tuple[Optional[WatchQueue], str]:
        """The queue behind a caller's fd, and what the fd is (for the kernel's errno).

        What: "badf", "pipe", "other", or for a queue "r" or "w" (the end it was opened as).
        """
        end = self._pipe_end(pid, fd)
        if isinstance(end, str):
            return None, end
        queue = self.ops.pipe_queue(end[0])
        return (queue, end[1]) if queue is not None else (None, "other")

    def _set_nonblocking(self, pid: int, fd: int, nonblock: bool) -> object:
        """Note O_NONBLOCK for one of our ends; the kernel still sets the flag itself."""
        end = self._pipe_end(pid, fd)
        if not isinstance(end, str):
            self.ops.set_pipe_nonblocking(end[0], end[1], nonblock)
        return CONTINUE

    def _ioctl(self, pid: int, fd: int, cmd: int, arg: int) -> object:
        if cmd == abi.FIONBIO:
            try:
                value = struct.unpack("<i", memory.read(pid, arg, 4))[0]
            except KernelError:
                return CONTINUE  # the kernel's EFAULT
            return self._set_nonblocking(pid, fd, value != 0)
        queue, kind = self.queue_of(pid, fd)
        if queue is None:
            if cmd == abi.FIONREAD or kind == "badf":
                return CONTINUE
            if kind == "pipe":
                raise KernelError(errno.ENODEV, "not a notification pipe")
            raise KernelError(errno.ENOTTY, "not a pipe")
        if cmd == abi.FIONREAD:
            memory.write(pid, arg, struct.pack("<i", queue.nbytes))
            return 0
        if cmd == abi.IOC_WATCH_QUEUE_SET_SIZE:
            queue.set_size(_i32(arg) if arg < (1 << 63) else -1)
            return 0
        if arg == 0:
            queue.set_filter(None)
            return 0
        header = memory.read(pid, arg, 8)
        nr_filters, reserved = struct.unpack("<II", header)
        if nr_filters == 0 or nr_filters > abi.WATCH_QUEUE_MAX_FILTERS or reserved:
            raise KernelError(errno.EINVAL, "nr_filters must be 1..16 and __reserved 0")
        data = header + memory.read(pid, arg + 8, nr_filters * abi.TYPE_FILTER_SIZE)
        queue.set_filter(Filter.from_bytes(data))
        return 0

    # ---- the calls that differ on a notification pipe ----
    # The read and write ends are FUSE files: these would otherwise get a file's answers.

    def _fcntl(self, pid: int, fd: int, cmd: int, arg: int) -> object:
        if cmd == abi.F_SETFL:
            return self._set_nonblocking(pid, fd, bool(arg & os.O_NONBLOCK))
        queue, _ = self.queue_of(pid, fd)
        if queue is None:
            return CONTINUE
        if cmd == abi.F_GETPIPE_SZ:
            return queue.pipe_size()
        queue.set_pipe_size()
        return CONTINUE  # not reached: a notification pipe refuses F_SETPIPE_SZ

    def _write_nothing(self, pid: int, fd: int) -> object:
        """write(fd, buf, 0): pipe_write says EXDEV before it looks at the length."""
        queue, end = self.queue_of(pid, fd)
        if queue is None or end != "w":  # the read end: the kernel's EBADF, from FMODE_WRITE
            return CONTINUE
        raise KernelError(errno.EXDEV, "a notification pipe cannot be written to")

    def _splice(self, pid: int, fd_in: int) -> object:
        """A notification pipe is no pipe to splice (get_pipe_info) and has no splice_read."""
        queue, end = self.queue_of(pid, fd_in)
        if queue is None or end != "r":
            return CONTINUE
        raise KernelError(errno.EINVAL, "cannot splice from a notification pipe")

    # ---- add_key / request_key ----

    def _add_key(self, pid: int, cred: Cred, args: tuple[int, ...]) -> int:
        plen = args[3]
        if plen > abi.ADD_KEY_MAX_PAYLOAD:  # checked before anything is copied in
            raise KernelError(errno.EINVAL, "payload larger than 1 MiB - 1")
        type_name = memory.read_type(pid, args[0])
        description = memory.strndup_user(pid, args[1], abi.KEY_MAX_DESC_SIZE) if args[1] else ""
        payload = memory.read(pid, args[2], plen) if plen else b""
        return self.kernel.add_key(cred, type_name, description, payload, _i32(args[4]))

    def _request_key(self, pid: int, cred: Cred, args: tuple[int, ...]) -> int:
        type_name = memory.read_type(pid, args[0])
        description = memory.strndup_user(pid, args[1], abi.KEY_MAX_DESC_SIZE)
        if args[2]:
            memory.strndup_user(pid, args[2], memory.PAGE)
        return self.kernel.request_key(cred, type_name, description, _i32(args[3]))

    # ---- keyctl ----

    def _copy_out(self, pid: int, buffer: int, buflen: int, data: bytes, whole: bool) -> int:
        """Describe-style copies truncate; read-style copies only when everything fits."""
        if buffer and buflen > 0:
            if len(data) <= buflen:
                memory.write(pid, buffer, data)
            elif not whole:
                memory.write(pid, buffer, data[:buflen])
        return len(data)

    def _keyctl(self, pid: int, cred: Cred, args: tuple[int, ...]) -> object:
        option, a2, a3, a4, a5 = _i32(args[0]), args[1], args[2], args[3], args[4]
        k = self.kernel
        if option == abi.KEYCTL_GET_KEYRING_ID:
            return k.get_keyring_id(cred, _i32(a2), bool(_i32(a3)))
        if option == abi.KEYCTL_JOIN_SESSION_KEYRING:
            name = memory.strndup_user(pid, a2, abi.KEY_MAX_DESC_SIZE) if a2 else None
            return self.callers.join_session(self.kernel, cred, pid, name)
        if option == abi.KEYCTL_UPDATE:
            if a4 > abi.UPDATE_MAX_PAYLOAD:
                raise KernelError(errno.EINVAL, "an update payload is at most 4096 bytes")
            k.update(cred, _i32(a2), memory.read(pid, a3, a4) if a4 else b"")
            return 0
        if option == abi.KEYCTL_REVOKE:
            k.revoke(cred, _i32(a2))
            return 0
        if option == abi.KEYCTL_CHOWN:
            k.chown(cred, _i32(a2), _i32(a3), _i32(a4))
            return 0
        if option == abi.KEYCTL_SETPERM:
            k.setperm(cred, _i32(a2), _u32(a3))
            return 0
        if option == abi.KEYCTL_DESCRIBE:
            text = k.describe(cred, _i32(a2)).encode("utf-8", "surrogateescape") + b"\0"
            return self._copy_out(pid, a3, _u32(a4), text, whole=True)  # buflen is unsigned int
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
            type_name = memory.read_type(pid, a3)
            description = memory.strndup_user(pid, a4, abi.KEY_MAX_DESC_SIZE)
            return k.search(cred, _i32(a2), type_name, description, _i32(a5))
        if option == abi.KEYCTL_READ:
            return self._copy_out(pid, a3, a4, k.read(cred, _i32(a2), a4 if a3 else 0), whole=True)
        if option == abi.KEYCTL_INSTANTIATE:
            if a4 > abi.ADD_KEY_MAX_PAYLOAD:
                raise KernelError(errno.EINVAL, "payload larger than 1 MiB - 1")
            payload = memory.read(pid, a3, a4) if a3 and a4 else b""
            k.instantiate(cred, _i32(a2), payload, _i32(a5))
            return 0
        if option == abi.KEYCTL_INSTANTIATE_IOV:
            payload = self._read_iov(pid, a3, a4)
            k.instantiate(cred, _i32(a2), payload, _i32(a5))
            return 0
        if option == abi.KEYCTL_NEGATE:
            k.negate(cred, _i32(a2), _u32(a3), _i32(a4))
            return 0
        if option == abi.KEYCTL_REJECT:
            k.reject(cred, _i32(a2), _u32(a3), _u32(a4), _i32(a5))
            return 0
        if option == abi.KEYCTL_SET_TIMEOUT:
            k.set_timeout(cred, _i32(a2), _u32(a3))
            return 0
        if option == abi.KEYCTL_GET_SECURITY:
            k.get_security(cred, _i32(a2))
            if a3 and a4 > 0:  # no LSM: an empty string, copied whenever there is room
                memory.write(pid, a3, b"\0")
            elif a4 > 0:
                raise KernelError(errno.EFAULT, "NULL buffer")
            return 1
        if option == abi.KEYCTL_SESSION_TO_PARENT:
            self.callers.session_to_parent(pid, cred)
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
                type_name = memory.read_type(pid, a3)
                restriction = memory.strndup_user(pid, a4, memory.PAGE)
            k.restrict_keyring(cred, _i32(a2), type_name, restriction)
            return 0
        if option == abi.KEYCTL_MOVE:
            k.move(cred, _i32(a2), _i32(a3), _i32(a4), _u32(a5))
            return 0
        if option == abi.KEYCTL_CAPABILITIES:
            caps = k.capabilities()
            if a3 > 0:  # copies what fits and zeroes the rest of the buffer
                memory.write(pid, a2, caps[:a3] + bytes(max(0, min(a3, 1 << 20) - len(caps))))
            return len(caps)
        if option == abi.KEYCTL_WATCH_KEY:
            return self._watch_key(pid, cred, _i32(a2), _i32(a3), _i32(a4))
        raise KernelError(errno.EOPNOTSUPP, f"keyctl {option} is not emulated")

    def _read_iov(self, pid: int, iov: int, count: int) -> bytes:
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
        if total > abi.ADD_KEY_MAX_PAYLOAD:
            raise KernelError(errno.EINVAL, "payload larger than 1 MiB - 1")
        return b"".join(memory.read(pid, base, length) for base, length in vectors if length)

    def _watch_key(self, pid: int, cred: Cred, key_id: int, fd: int, tag: int) -> int:
        # The queue is resolved first, but the kernel checks it after the tag and the key.
        queue, _ = self.queue_of(pid, fd)
        self.kernel.watch_key(cred, key_id, queue, tag, nofile_limit(pid))
        return 0
