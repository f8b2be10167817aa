"""The pipes of `wqfs run`: pipe2(O_NOTIFICATION_PIPE) made by the syscall front, served by the tree.

A trapped pipe2 gets one queue with a read end and a write end. The ends are files of the
mount, MOUNT/.pipe/TOKENr and TOKENw, which the daemon opens once (to hand the fds to the
caller) and then forgets by name: from then on a pipe is found by the token in its ends' path,
which is what the caller's fds show in /proc, and lives until its last end is closed.

The syscall front sees only the narrow interface below (new_pipe, forget_pipe, end_of,
pipe_queue, set_pipe_nonblocking: wqfs/syscalls/front.py's Pipes); the tree asks for an end's
inode by name (lookup), a pipe by token (open), and drops a pipe whose ends are all closed.
The ends' inodes are the tree's own dynamic inodes, given by the allocator the tree passes in.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Optional

from ..kernel import Cred, Kernel, WatchQueue
from .handles import Pipe

DIRECTORY = ".pipe"  # names.PIPES: hidden, searchable only
_END = re.compile(re.escape(DIRECTORY) + r"/([0-9a-f]+)([rw])")


class PipeRegistry:
    """The pipes whose ends are served under MOUNT/.pipe, by token."""

    def __init__(self, kernel: Kernel, alloc_inode: Callable[[str, Any], int],
                 free_inode: Callable[[int], None]) -> None:
        self.kernel = kernel
        self._alloc_inode = alloc_inode  # the tree's dynamic inodes: ("pipe", (token, end))
        self._free_inode = free_inode
        self._pipes: dict[str, Pipe] = {}
        self._ends: dict[bytes, int] = {}  # unopened end name -> inode

    # ---- for the syscall front ----

    def new_pipe(self, cred: Cred, pid: int) -> tuple[str, str]:
        """A queue with a read end and a write end: their paths in the mount, to open once each
        and hand over, then forget_pipe."""
        token = os.urandom(8).hex()
        self._pipes[token] = Pipe(self.kernel.new_queue(cred), cred, pid)
        ends = (f"{token}r", f"{token}w")
        for end in ends:
            self._ends[end.encode()] = self._alloc_inode("pipe", (token, end[-1]))
        return f"{DIRECTORY}/{ends[0]}", f"{DIRECTORY}/{ends[1]}"

    def forget_pipe(self, *paths: str) -> None:
        """The ends' names go (the files opened stay); a pipe with no end open goes too."""
        names = [path.rpartition("/")[2] for path in paths]
        for name in names:
            inode = self._ends.pop(name.encode(), None)
            if inode is not None:
                self._free_inode(inode)
        token = names[0][:-1]
        pipe = self._pipes.get(token)
        if pipe is not None and pipe.open_ends == 0:
            del self._pipes[token]
            self.kernel.release_queue(pipe.queue)

    @staticmethod
    def end_of(path: str) -> Optional[tuple[str, str]]:
        """(token, "r" or "w") when path, relative to the mount, names a pipe end; else None."""
        match = _END.fullmatch(path)
        return (match.group(1), match.group(2)) if match is not None else None

    def pipe_queue(self, token: str) -> Optional[WatchQueue]:
        pipe = self._pipes.get(token)
        return pipe.queue if pipe is not None else None

    def set_pipe_nonblocking(self, token: str, end: str, nonblock: bool) -> None:
        """fcntl(F_SETFL) or FIONBIO on an end, seen by the syscall front: FUSE tells a
        file's O_NONBLOCK at open only (pyfuse3's read() drops the flags of each read)."""
        pipe = self._pipes.get(token)
        handle = pipe.ends.get(end) if pipe is not None else None
        if handle is not None:
            handle.nonblock = nonblock

    # ---- for the tree ----

    def end_inode(self, name: bytes) -> Optional[int]:
        """The inode of an end not yet forgotten, by its name in MOUNT/.pipe."""
        return self._ends.get(name)

    def get(self, token: str) -> Optional[Pipe]:
        return self._pipes.get(token)

    def closed(self, pipe: Pipe) -> None:
        """The last open end of pipe was released (which released its queue): it goes."""
        self._pipes = {t: p for t, p in self._pipes.items() if p is not pipe}


__all__ = ["DIRECTORY", "PipeRegistry"]
