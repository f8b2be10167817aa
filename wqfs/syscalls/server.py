"""Where `wqfs run` hands its seccomp listener to the daemon: an abstract unix socket per mount."""
from __future__ import annotations

import array
import logging
import os
import socket
import struct
from typing import Optional

import trio

from .front import SyscallFront

log = logging.getLogger("wqfs.syscalls")


def socket_name(mountpoint: str) -> bytes:
    """Abstract names need no file and vanish with the daemon. Pass a real path:
    resolving it here would stat the mount, which the daemon itself must never do."""
    return b"\0wqfs:" + mountpoint.encode()


async def serve(front: SyscallFront, mountpoint: str, allow_other: bool = False,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Take listeners from `wqfs run`: from our own uid only, unless the mount is --allow-other
    (the pipes it hands out are files of the mount, which FUSE would refuse them anyway)."""
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
            nursery.start_soon(_accept_listener, front, conn, nursery, allow_other)


async def _accept_listener(front: SyscallFront, conn: trio.socket.SocketType, nursery: trio.Nursery,
                           allow_other: bool) -> None:
    """A peer that hangs up or sends junk costs us nothing: the daemon keeps serving."""
    try:
        await _take_listener(front, conn, nursery, allow_other)
    except OSError as error:
        log.info("listener hand-over failed: %s", error)


async def _take_listener(front: SyscallFront, conn: trio.socket.SocketType, nursery: trio.Nursery,
                         allow_other: bool) -> None:
    with conn:
        try:
            data, ancdata, _, _ = await conn.recvmsg(16, socket.CMSG_SPACE(4))
        except OSError:
            return
        fd = _fd_from(ancdata)
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        refusal = None
        if data != b"listener" or fd is None:
            refusal = b"bad request"
        elif uid != os.getuid() and not allow_other:
            refusal = f"it serves uid {os.getuid()} only (mount it with --allow-other)".encode()
        if refusal is not None:
            if fd is not None:
                os.close(fd)
            await conn.send(refusal)
            return
        nursery.start_soon(_serve_listener, front, fd)
        await conn.send(b"ok")


async def _serve_listener(front: SyscallFront, fd: int) -> None:
    try:
        await front.serve(fd)
    except Exception:
        log.exception("a seccomp listener failed; its programs' trapped syscalls now fail with ENOSYS")


def _fd_from(ancdata: list) -> Optional[int]:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            for extra in fds[1:]:
                os.close(extra)
            return fds[0] if fds else None
    return None


def hand_over(mountpoint: str, listener_fd: int) -> Optional[str]:
    """Client side: give the listener to the daemon at mountpoint. None on success, else why not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_name(os.path.realpath(mountpoint)))
    except OSError:
        sock.close()
        return "no daemon"
    with sock:
        socket.send_fds(sock, [b"listener"], [listener_fd])
        reply = sock.recv(64)
    return None if reply == b"ok" else reply.decode(errors="replace") or "the daemon closed the connection"


def daemon_running(mountpoint: str) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_name(os.path.realpath(mountpoint)))
        return True
    except OSError:
        return False
    finally:
        sock.close()
