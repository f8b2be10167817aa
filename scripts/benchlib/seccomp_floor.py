"""The trapped-syscall floor: `wqfs run`'s machinery with nothing behind it.

The program gets wqfs's own seccomp filter (wqfs.syscalls.seccomp.install_filter, the same
syscalls trapped), and its listener is served by wqfs's own loop (SyscallFront.serve and
_answer, in trio) whose dispatch answers every notification with 0 at once. The cost that
is left is the trap, the notification's round trip through the listener, the binding of the
call to its task (its /proc directory opened, then SECCOMP_IOCTL_NOTIF_ID_VALID: what any
answer must do before it may trust the pid) and the trio task that answers it: the floor
under anything `wqfs run` can do.

    python -m benchlib.seccomp_floor -- PROGRAM [ARGS...]
"""
from __future__ import annotations

import os
import sys

import trio

from wqfs.callers import CallerTable
from wqfs.syscalls.front import SyscallFront
from wqfs.syscalls.run import Supervised
from wqfs.syscalls.transfer import TransferPool


class FloorFront(SyscallFront):
    """SyscallFront's serve loop and answer path; the dispatch answers 0."""

    def __init__(self) -> None:  # no kernel, no tree: nothing to dispatch to
        self.served = 0
        self.dropped = 0
        self.transfers = TransferPool()
        self.callers = CallerTable()

    async def dispatch(self, call):  # type: ignore[override]
        return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    child = Supervised(argv)  # wqfs run's own spawner: the same filter, the same hand-over
    listener = child.listener
    front = FloorFront()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(front.serve, listener)
            await trio.sleep(0)
            child.go()

    trio.run(serve)  # returns when the program (every task under the filter) is gone
    _, status = os.waitpid(child.pid, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
