"""A process inside a mount namespace, for its /proc/PID/mountinfo (fs/proc_namespace.c:
the table in the namespace root's frame, and POLLPRI on change) and /proc/PID/root.

The sentinel joins the namespace by setns(2) and blocks reading a pipe from the daemon: it
exits on EOF, so a daemon that dies, however it dies, leaves no sentinel behind. It is
nsenter(1) exec'ing cat(1) (util-linux and coreutils: a few hundred KiB each), or where those
are missing a small Python of its own (sentinel_child.py, some MiB); never a fork of the
daemon's trio process.
"""
from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
import sys
import trio

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentinel_child.py")
START_TIMEOUT = 10.0


class SentinelError(OSError):
    pass


class Sentinel:
    """A running sentinel: its pid, and the pipe that keeps it alive."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.pid = process.pid

    @classmethod
    async def start(cls, nsfd: int) -> "Sentinel":
        """A sentinel in nsfd's namespace, once it is in (OSError with the setns errno if it cannot be)."""
        process = await trio.lowlevel.open_process(
            _argv(nsfd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            pass_fds=(nsfd,), start_new_session=True)
        sentinel = cls(process)
        try:
            line = b""
            with trio.fail_after(START_TIMEOUT):
                assert process.stdout is not None
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(64)
                    if not chunk:
                        break
                    line += chunk
            if line != b"ready\n":
                words = line.split()
                # the Python sentinel says its errno; nsenter only fails, most likely for want of CAP_SYS_ADMIN
                err = int(words[1]) if len(words) == 2 and words[0] == b"error" and words[1].isdigit() else errno.EPERM
                raise SentinelError(err, f"the sentinel could not join the namespace: {os.strerror(err)}")
        except BaseException:
            await sentinel.stop()
            raise
        return sentinel

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self) -> None:
        """Close its pipe and kill it; reaped before returning."""
        with trio.CancelScope(shield=True):
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    try:
                        await stream.aclose()
                    except (trio.ClosedResourceError, OSError):
                        pass
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process.returncode is None



def _argv(nsfd: int) -> list[str]:
    nsenter, cat, sh = shutil.which("nsenter"), shutil.which("cat"), shutil.which("sh")
    if nsenter and cat and sh:
        return [nsenter, f"--mount=/proc/self/fd/{nsfd}", "--", sh, "-c", f"echo ready && exec {shlex.quote(cat)} >/dev/null"]
    return [sys.executable, "-I", "-S", CHILD, str(nsfd)]
