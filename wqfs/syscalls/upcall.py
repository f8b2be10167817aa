"""The request-key upcall: /sbin/request-key run as the kernel runs it, under this syscall front.

request_key(2) with callout information and no key found gives the front an Upcall
(wqfs/kernel's call_sbin_request_key): the helper's argv (`/sbin/request-key create KEY UID
GID THREAD PROCESS SESSION`), its environment (HOME=/ and PATH only), and a session keyring
"_req.KEY" holding the ".request_key_auth" token. Upcalls runs it as call_usermodehelper_keys
with UMH_WAIT_PROC does, except that it never blocks the loop and the requester may leave:

* each helper is a system task of the daemon's trio loop, not of the requester's call: a
  requester that is killed or interrupted leaves its upcall running, and whoever asks for the
  key later waits for it, as in the kernel;
* the helper is started through umh.py (a fresh Python that installs the seccomp filter and
  executes the helper), as root when the daemon is root, in a session and process group of its
  own; its trapped calls are served by a copy of the front (HelperFront) that also hands each
  forked process the authority its parent held, as fork copies credentials;
* before it runs, the "_req." keyring becomes its session keyring (umh_keys_init), handed down
  to what it forks (CallerTable.note_session);
* the requester waits interruptibly (it may be killed, unlike the kernel's, which waits in
  TASK_UNINTERRUPTIBLE); when the helper process exits, its exit status is ignored, as the
  kernel ignores it, and complete_upcall decides: a key left under construction is negated
  (ENOKEY) for 60 s;
* at most MAX_PER_UID helpers of one requester's uid, and MAX_RUNNING of everyone, run at once;
  more wait for a slot (their keys stay under construction, charged to their owner's quota, so
  waiting upcalls are bounded by the key quota). A slot is held until the helper's whole process
  tree has gone (its listener hangs up): a helper that never exits holds its own uid's slot, as
  the kernel would hold its requester, and nothing else;
* when the daemon stops, every helper's process group is killed.
"""
from __future__ import annotations

import array
import copy
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Hashable, Optional

import trio

from ..callers import TaskGone, ancestors
from ..kernel import KernelError, KeyUnderConstruction, Upcall

if TYPE_CHECKING:
    from .front import SyscallFront
    from .trapped import Trapped

log = logging.getLogger("wqfs.syscalls")

MAX_PER_UID = 8     # helpers of one requesting uid running at once
MAX_RUNNING = 64    # helpers running at once, all uids together
HANDSHAKE_TIMEOUT = 10.0  # seconds for the launcher to hand its listener over
MAX_SEEN = 1 << 16  # tasks of one helper's tree whose authority was settled (then forgotten)
# Where `python -m wqfs.syscalls.umh` finds this very wqfs: the directory holding the package.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Upcalls:
    """The daemon's request-key helpers: started, bounded, waited for, completed."""

    def __init__(self, front: "SyscallFront") -> None:
        self.front = front
        self._limiters: dict[int, trio.CapacityLimiter] = {}
        self._all: Optional[trio.CapacityLimiter] = None
        self._done: dict[int, trio.Event] = {}  # by the key's serial: set once completed
        self.running = 0  # helpers whose process has not exited yet

    # ---- for the requester

    def start(self, upcall: Upcall) -> None:
        """Run the helper, on its own: the requester's call may end before it does."""
        self._done[upcall.serial] = trio.Event()
        trio.lowlevel.spawn_system_task(self._run, upcall, name=f"request-key upcall for key {upcall.serial}")

    async def wait(self, upcall: Upcall, call: "Trapped") -> None:
        """Wait until the upcall is complete, looking every CHECK_INTERVAL whether the requester's
        call is still valid (Dropped once it was killed or interrupted)."""
        done = self._done.get(upcall.serial)
        while not upcall.done and done is not None:
            with trio.move_on_after(KeyUnderConstruction.CHECK_INTERVAL):
                await done.wait()
            call.require_valid()

    # ---- the helper

    def _slot(self, uid: int) -> trio.CapacityLimiter:
        if self._all is None:
            self._all = trio.CapacityLimiter(MAX_RUNNING)
        limiter = self._limiters.get(uid)
        if limiter is None:
            limiter = self._limiters[uid] = trio.CapacityLimiter(MAX_PER_UID)
        return limiter

    def _forget_slot(self, uid: int) -> None:
        limiter = self._limiters.get(uid)
        if limiter is not None:
            stats = limiter.statistics()
            if not stats.borrowed_tokens and not stats.tasks_waiting:
                del self._limiters[uid]

    async def _run(self, upcall: Upcall) -> None:
        """A system task: whatever happens, the upcall is completed and its waiters woken."""
        try:
            limiter = self._slot(upcall.uid)
            async with limiter:
                assert self._all is not None
                async with self._all:
                    await self._call_usermodehelper(upcall)
        except Exception:
            log.exception("request-key upcall for key %d failed", upcall.serial)
        finally:
            self._complete(upcall, errno.ENOKEY)
            self._forget_slot(upcall.uid)
            event = self._done.pop(upcall.serial, None)
            if event is not None:
                event.set()

    def _complete(self, upcall: Upcall, error: int) -> None:
        if not upcall.done:
            result = self.front.kernel.complete_upcall(upcall, error)
            log.info("request-key for key %d done: %s", upcall.serial,
                     errno.errorcode.get(result, result) if result else "constructed")
        event = self._done.get(upcall.serial)
        if event is not None:
            event.set()

    async def _call_usermodehelper(self, upcall: Upcall) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-s", "-m", "wqfs.syscalls.umh", str(theirs.fileno()), str(len(upcall.envp)),
                *upcall.envp, upcall.path, *upcall.argv]
        env = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "PYTHONPATH": _PACKAGE_PARENT}
        try:
            try:
                proc = await trio.lowlevel.open_process(
                    argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, cwd="/", env=env, start_new_session=True)
            except OSError as error:  # call_usermodehelper could not even fork: its errno
                self._complete(upcall, error.errno or errno.EAGAIN)
                return
            finally:
                theirs.close()
            self.running += 1
            try:
                await self._serve_helper(upcall, proc, trio.socket.from_stdlib_socket(ours))
            finally:
                self.running -= 1
                if proc.returncode is None:  # cancelled (the daemon stops), or the hand-over failed
                    _kill_group(proc.pid)
                    with trio.CancelScope(shield=True):
                        await proc.wait()
                self._complete(upcall, 0)  # the helper exited: the key decides (ENOKEY if not constructed)
        finally:
            ours.close()

    async def _serve_helper(self, upcall: Upcall, proc: trio.Process, sock: trio.socket.SocketType) -> None:
        listener = None
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            listener = await _receive_fd(sock)
        if listener is None:
            log.warning("request-key for key %d: the helper's launcher handed no listener over", upcall.serial)
            return
        front = self.front
        try:
            helper = front.callers.task(proc.pid).cred(implicit_session=True)
            front.kernel.umh_keys_init(upcall, helper)
            front.callers.note_session(front.kernel, helper)  # and so what it forks later
        except (TaskGone, KernelError) as error:
            os.close(listener)
            log.warning("request-key for key %d: the helper went away before it ran (%s)", upcall.serial, error)
            return
        log.info("request-key for key %d (uid %d): %s, pid %d", upcall.serial, upcall.uid, " ".join(upcall.argv), proc.pid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, HelperFront.of(front, proc.pid), listener, upcall.serial)
            try:
                await sock.send(b"go")
            except OSError:
                pass  # it died: wait() says so
            await proc.wait()
            self._complete(upcall, 0)  # UMH_WAIT_PROC: the helper process itself, not what it left running
        # the nursery ends once no task of the helper's tree is left to make a trapped call


async def _serve(front: "SyscallFront", listener: int, serial: int) -> None:
    try:
        await front.serve(listener)
    except Exception:
        log.exception("the seccomp listener of the request-key helper for key %d failed", serial)


class HelperFront:
    """The syscall front for one helper's process tree: the daemon's front (a shallow copy,
    sharing its kernel, callers, copy threads and upcalls) whose dispatch first settles, for a
    task not seen before, the authority it holds: a forked process holds what its parent held
    when it made its first trapped call (copy_creds at fork), a new thread what its process's
    main thread held."""

    @staticmethod
    def of(front: "SyscallFront", root: int) -> "SyscallFront":
        helper = copy.copy(front)
        seen: set[Hashable] = set()
        base = type(front).dispatch

        async def dispatch(call: "Trapped") -> object:
            info = call.info()
            if info.thread not in seen:
                if len(seen) >= MAX_SEEN:
                    seen.clear()
                seen.add(info.thread)
                parent = _parent_seen(info.tgid, info.thread, info.process, root, seen)
                if parent is not None:
                    front.kernel.inherit_authority(info.thread, parent)
            return await base(helper, call)

        helper.dispatch = dispatch  # type: ignore[method-assign]
        return helper


def _parent_seen(tgid: int, thread: Hashable, process: Hashable, root: int, seen: set) -> Optional[Hashable]:
    """The thread token this task's credentials were copied from, if its authority is settled:
    its process's main thread for a thread, else the nearest ancestor process seen (below the
    helper itself, whose own authority is its own)."""
    if thread != process:
        return process if process in seen else None
    if tgid == root:
        return None
    for owner in ancestors(tgid):
        if owner in seen:
            return owner
        if owner[0] == root:
            return None
    return None


async def _receive_fd(sock: trio.socket.SocketType) -> Optional[int]:
    """The one fd of a SCM_RIGHTS message (any others closed), None if none came."""
    try:
        _, ancdata, _, _ = await sock.recvmsg(16, socket.CMSG_SPACE(4 * 4))
    except OSError:
        return None
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else None


def _kill_group(pid: int) -> None:
    """SIGKILL to the helper's process group (it leads one; what it left in it goes too)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
