"""Where `wqfs run` hands its seccomp listener to the daemon: an abstract unix socket per mount."""
from __future__ import annotations

import array
import logging
import os
import socket
import struct
from typing import Callable, Optional

import trio

from ..callers import TaskGone
from . import lsmlabels
from .front import SyscallFront

log = logging.getLogger("wqfs.syscalls")


def socket_name(mountpoint: str) -> bytes:
    """Abstract names need no file and vanish with the daemon. Pass a real path:
    resolving it here would stat the mount, which the daemon itself must never do."""
    return b"\0wqfs:" + mountpoint.encode()


async def serve(front: SyscallFront, mountpoint: str, allow_other: bool = False,
                on_unmount: Optional[Callable[[], None]] = None,
                on_reload: Optional[Callable[[], str]] = None,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests on the mount's socket: b"listener" (with the fd) from `wqfs run`, from our
    own uid only unless the mount is --allow-other (the pipes it hands out are files of the mount,
    which FUSE would refuse them anyway), b"listener\0LABEL" for programs labelled LABEL (from
    our uid, or a peer with CAP_MAC_ADMIN, as Smack lets a task relabel itself); b"unmount" from
    `wqfs unmount`, from our uid or root only, which calls on_unmount once answered;
    b"smack-reload" from `wqfs smack-reload`, the same uids, answered with on_reload()'s words;
    and nothing at all, a probe (daemon_running)."""
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await listener.bind(socket_name(mountpoint))
    except OSError as error:
        log.warning("wqfs run cannot use this mount: another daemon holds %s (%s)", mountpoint, error.strerror)
        task_status.started()
        return
    listener.listen(64)
    task_status.started()
    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await listener.accept()
            nursery.start_soon(_accept_listener, front, conn, nursery, allow_other, on_unmount, on_reload)


REQUEST_TIMEOUT = 10.0  # a peer that connects and sends nothing for this long is dropped
# Each listener handed over is an fd of the daemon for as long as its programs run: another
# user may hold this many at once (the daemon's own uid is not limited).
MAX_LISTENERS_PER_UID = 1024
_listeners: dict[int, int] = {}  # uid -> listeners being served


async def _accept_listener(front: SyscallFront, conn: trio.socket.SocketType, nursery: trio.Nursery,
                           allow_other: bool, on_unmount: Optional[Callable[[], None]] = None,
                           on_reload: Optional[Callable[[], str]] = None) -> None:
    """A peer that hangs up or sends junk costs us nothing: the daemon keeps serving."""
    try:
        await _take_listener(front, conn, nursery, allow_other, on_unmount, on_reload)
    except OSError as error:
        log.info("listener hand-over failed: %s", error)


async def _take_listener(front: SyscallFront, conn: trio.socket.SocketType, nursery: trio.Nursery,
                         allow_other: bool, on_unmount: Optional[Callable[[], None]] = None,
                         on_reload: Optional[Callable[[], str]] = None) -> None:
    with conn:
        data, ancdata = b"", []
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                data, ancdata, _, _ = await conn.recvmsg(16 + lsmlabels.MAX_LABEL, socket.CMSG_SPACE(4))
            except OSError:
                return
        fd = _fd_from(ancdata)
        if not data and fd is None:  # a probe: connected and hung up (or said nothing)
            return
        pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if data == b"unmount" and fd is None and on_unmount is not None:
            await _unmount(conn, uid, on_unmount)
            return
        if data == b"smack-reload" and fd is None:
            await _reload(conn, uid, on_reload)
            return
        data, _, label_bytes = data.partition(b"\0")
        label = label_bytes.decode("ascii", "replace") if label_bytes else None
        refusal = None
        if data != b"listener" or fd is None:
            refusal = b"bad request"
        elif uid != os.getuid() and not allow_other:
            refusal = f"it serves uid {os.getuid()} only (mount it with --allow-other)".encode()
        elif uid != os.getuid() and _listeners.get(uid, 0) >= MAX_LISTENERS_PER_UID:
            refusal = f"uid {uid} has {MAX_LISTENERS_PER_UID} programs under wqfs run already".encode()
        elif label is not None:  # one more condition, never instead of those above
            refusal = lsmlabels.refuse_label(front.lsm_config, label, uid, _caps(front, pid))
        if refusal is not None:
            if fd is not None:
                os.close(fd)
            await conn.send(refusal)
            return
        nursery.start_soon(_serve_listener, front, fd, uid, label)
        await conn.send(b"ok")


async def _unmount(conn: trio.socket.SocketType, uid: int, on_unmount: Callable[[], None]) -> None:
    """`wqfs unmount`: the uid that mounted, or root, stops the daemon as SIGTERM would."""
    if uid not in (os.getuid(), 0):
        await conn.send(f"only uid {os.getuid()}, who mounted it, or root may unmount it".encode())
        return
    log.info("unmount requested by uid %d: unmounting", uid)
    try:
        await conn.send(b"ok")
    except OSError:  # it went away: it asked all the same
        pass
    on_unmount()


async def _reload(conn: trio.socket.SocketType, uid: int, on_reload: Optional[Callable[[], str]]) -> None:
    """`wqfs smack-reload`: the uid that mounted, or root, has the rules file read again."""
    if uid not in (os.getuid(), 0):
        reply = f"only uid {os.getuid()}, who mounted it, or root may reload its rules"
    elif on_reload is None:
        reply = "the daemon runs no security module (mount it with --lsm smack)"
    else:
        reply = on_reload()
    try:
        await conn.send(reply.encode()[:4096])
    except OSError:
        pass


async def _serve_listener(front: SyscallFront, fd: int, uid: int, label: Optional[str] = None) -> None:
    _listeners[uid] = _listeners.get(uid, 0) + 1
    try:
        await front.serve(fd, label)
    except Exception:
        log.exception("a seccomp listener failed; its programs' trapped syscalls now fail with ENOSYS")
    finally:
        _listeners[uid] -= 1
        if not _listeners[uid]:
            del _listeners[uid]


def _caps(front: SyscallFront, pid: int) -> int:
    """The peer's effective capabilities (0 if it is gone, or in another user namespace)."""
    try:
        return front.callers.task(pid).caps
    except TaskGone:
        return 0


def _fd_from(ancdata: list) -> Optional[int]:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            for extra in fds[1:]:
                os.close(extra)
            return fds[0] if fds else None
    return None


def hand_over(mountpoint: str, listener_fd: int, label: Optional[str] = None) -> Optional[str]:
    """Client side: give the listener to the daemon at mountpoint, its programs labelled label
    if given. None on success, else why not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_name(os.path.realpath(mountpoint)))
    except OSError:
        sock.close()
        return "no daemon"
    with sock:
        socket.send_fds(sock, [b"listener" + (b"\0" + label.encode() if label else b"")], [listener_fd])
        reply = sock.recv(512)
    return None if reply == b"ok" else reply.decode(errors="replace") or "the daemon closed the connection"


def daemon_running(mountpoint: str) -> bool:
    return holds_socket(os.path.realpath(mountpoint))


def holds_socket(real_mountpoint: str) -> bool:
    """Whether a daemon holds the socket of a resolved mountpoint (not stat'ed here: a dead or a
    hung mount may be). Connect, send nothing, hang up: the daemon takes a peer that says
    nothing for a probe, and neither answers nor logs it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(socket_name(real_mountpoint))
        except OSError:
            return False
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True


def request_unmount(mountpoint: str, timeout: float = 5.0) -> Optional[str]:
    """Client side of `wqfs unmount`: ask the daemon at mountpoint (a resolved path, not stat'ed
    here) to unmount. "ok" once it agreed, its refusal otherwise, None when no daemon answered
    (none holds the socket, or it hung up or stayed silent for timeout seconds)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_name(mountpoint))
            sock.sendall(b"unmount")
            reply = sock.recv(256)
        except OSError:  # socket.timeout is one
            return None
    return reply.decode(errors="replace").strip() or None


def request_reload(mountpoint: str, timeout: float = 5.0) -> Optional[str]:
    """Client side of `wqfs smack-reload`: the daemon's answer ("ok N rules from FILE", or why
    not), None when no daemon answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_name(mountpoint))
            sock.sendall(b"smack-reload")
            reply = sock.recv(4096)
        except OSError:
            return None
    return reply.decode(errors="replace").strip() or None
