"""Random file operations on a wqfs mount, mostly wrong: odd names, bad commands and xattrs.

    python treefuzz.py MOUNT SEED OPERATIONS [OPENERS [BURSTS]]

Every operation may fail with OSError; anything else is printed as "PY ..." (a bug in the
daemon's answers). Ends with "done N" (N operations succeeded). Used by test_fuzz.py.
Files are opened O_NONBLOCK: a blocking read of a queue would wait, rightly, for ever.

Two classes of operation involve other processes:

* fds passed between processes: a queue or events file is opened here and reaches a child over
  a unix socket (SCM_RIGHTS), by fork, or by exec (pass_fds); the child, as nobody half the
  time when we are root, writes commands, reads - blocking, ended by its own SIGALRM (which must
  give EINTR, or kill it), or O_NONBLOCK - and closes, while we close our copy before or after;
* bursts: BURSTS times in a run (2 unless told), OPENERS (300 unless told) threads in several
  processes, half of them nobody's when we are root, open MOUNT/watch_queue or MOUNT/events/@u
  at once, set a size, read without blocking and close.

Everything is bounded: a child or a burst that does not finish in time is killed and reported
as "PY HANG ..."; an operation that takes longer than OP_LIMIT ends the fuzzer with every
thread's traceback on stderr (faulthandler), so a frozen daemon fails the test, and names
the operation, rather than hanging it. At the end, nobody's queue pages must all have come
back: nobody can hold as many queues as pipe-user-pages-soft allows (else "PY ACCOUNTING ...").
"""
from __future__ import annotations

import faulthandler
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

NAME_PARTS = ["user:", "logon:", "keyring:", "big_key:", "", "x", "%", "%2F", "%25", "%zz", ":",
              "..", ".", "a" * 300, "\udcff", "@s", "12", "-1", "0", "4294967295", "user:a:b",
              "keyring:_uid.0"]
DIRS = ["", "@s", "@u", "@us", "@t", "@p", "keys", "events", ".pipe"]
XATTRS_SET = ["user.keyctl.revoke", "user.keyctl.invalidate", "user.keyctl.clear", "user.keyctl.perm",
              "user.keyctl.timeout", "user.keyctl.reject", "user.keyctl.negate", "user.keyctl.link",
              "user.keyctl.unlink", "user.keyctl.restrict", "user.keyctl.request", "user.keyctl.chown",
              "user.x", "trusted.x"]
XATTRS_GET = ["user.keyctl.describe", "user.keyctl.perm", "user.keyctl.nope", "user.keyctl.security"]
READ_SIZES = [0, 1, 15, 16, 100, 4096, 65536]
EVENT_SPECS = ["@s", "@u", "@us", "@s,@u", "@t", "0", "nosuch"]
SIZES = [b"size 1", b"size 16", b"size 32", b"size 256", b"size 512", b"size 513", b"size 0"]
FD_PASS_RATE = 0.01   # of the operations: about 40 in 4000
OP_LIMIT = 40.0       # seconds any one operation may take (a burst or a child reports within 25)
CHILD_LIMIT = 10.0    # seconds a child given an fd has to finish (its reads end within 0.1 s)
BURST_LIMIT = 15.0    # seconds a burst's openers have to finish
NOBODY = 65534


def _nobody() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def _say(line: str) -> None:
    """A line on stdout, written at once (a forked child must not flush its parent's buffer)."""
    os.write(1, (line + "\n").encode(errors="replace"))


class Interrupted(Exception):
    pass


class Hang(Exception):
    """A child or a burst did not finish in time: the daemon froze, or holds a request for ever."""


def _wchan(pid: int) -> str:
    """Where the process's threads wait in the kernel (request_wait_answer: on FUSE)."""
    seen = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/wchan") as f:
                    seen.add(f.read().strip())
            except OSError:
                pass
    except OSError:
        pass
    return ", ".join(sorted(seen - {"", "0"})) or "?"


def _interrupted(signum, frame):
    raise Interrupted()


def fd_child(fd: int, plan: dict) -> int:
    """What a child does with the fd it was given: exit status 0, or 1 after a "PY" line.
    Reads end by O_NONBLOCK or by the child's own SIGALRM: caught ("eintr": the daemon must
    answer the interrupted read, EINTR, and the child goes on) or not ("kill": it dies of it),
    whoever opened the fd."""
    try:
        if plan["nobody"]:
            _nobody()
        for command in plan["commands"]:
            try:
                os.write(fd, command.encode("latin-1"))
            except OSError:
                pass
        mode = plan["read"]
        if mode == "nonblock":  # set after open: FUSE may not learn it, so the timer too
            os.set_blocking(fd, False)
        if mode != "none":
            signal.signal(signal.SIGALRM, signal.SIG_DFL if mode == "kill" else _interrupted)
            signal.setitimer(signal.ITIMER_REAL, plan["delay"])
            try:
                for _ in range(plan["reads"]):
                    os.read(fd, plan["size"])
            except (OSError, Interrupted):
                pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        os.close(fd)
        return 0
    except BaseException as error:  # noqa: BLE001 - a child reports everything and exits
        _say(f"PY fd child (read {plan['read']}, nobody={plan['nobody']}): {type(error).__name__} {error}")
        return 1


class Fuzzer:
    def __init__(self, mount: str, seed: int) -> None:
        self.mount = mount
        self.rnd = random.Random(seed)
        self.root = os.getuid() == 0
        self.passed: dict = {}  # fd passes made, by how

    def name(self) -> str:
        return "".join(self.rnd.choice(NAME_PARTS) for _ in range(self.rnd.randint(1, 3)))

    def directory(self) -> str:
        base = os.path.join(self.mount, self.rnd.choice(DIRS))
        try:
            entries = os.listdir(base)
        except OSError:
            return base
        if entries and self.rnd.random() < 0.5:
            candidate = os.path.join(base, self.rnd.choice(entries))
            if os.path.isdir(candidate):
                return candidate
        return base

    def data(self) -> bytes:
        return self.rnd.choice([
            b"", b"size 1", b"size 0", b"size 512", b"size 513", b"size -1", b"size 99999999999999999999",
            b"filter none", b"filter raw ", b"filter raw zz", b"filter raw " + os.urandom(20).hex().encode(),
            b"filter entries key 0xff 0 0", b"filter entries " + b"x" * 5000,
            b"watch @s 1", b"watch @s 256", b"watch 0 1", b"watch -3 -1", b"watch", b"unwatch @s",
            b"unwatch 12", b"\x00\xff", os.urandom(self.rnd.randint(0, 5000)),
        ])

    def read_some(self, path: str, flags: int = os.O_RDONLY) -> None:
        fd = os.open(path, flags | os.O_NONBLOCK)
        try:
            for _ in range(self.rnd.randint(0, 5)) if flags & os.O_RDWR else ():
                try:
                    os.write(fd, self.data())
                except OSError:
                    pass
            os.read(fd, self.rnd.choice(READ_SIZES))
        finally:
            os.close(fd)

    # ---- fds passed between processes

    def _wait(self, pid: int, limit: float, what: str) -> int:
        """The child's wait status; Hang (after a SIGKILL) if it outlives limit. A task whose
        FUSE request the daemon has read and never answers cannot die even of SIGKILL (the
        kernel waits the request out): the run ends there, with the child left to the test."""
        deadline = time.monotonic() + limit
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                raise Hang(f"{what}: pid {pid} did not finish in {limit:.0f} s (killed)")
            time.sleep(0.01)
        raise Hang(f"{what}: pid {pid} did not finish in {limit:.0f} s, nor die of SIGKILL "
                   f"(in {_wchan(pid)}: a request the daemon holds)")

    def pass_fd(self) -> None:
        """Open a queue or an events file and give it to another process, which uses it."""
        rnd = self.rnd
        if rnd.random() < 0.65:
            path, flags = os.path.join(self.mount, "watch_queue"), os.O_RDWR
            commands = [rnd.choice(SIZES) for _ in range(rnd.randint(0, 1))]
            commands += [self.data() for _ in range(rnd.randint(0, 3))]
            commands = [c.decode("latin-1") for c in commands if len(c) < 2000]
        else:
            path, flags = os.path.join(self.mount, "events", rnd.choice(EVENT_SPECS)), os.O_RDONLY
            commands = []
        if rnd.random() < 0.3:
            flags |= os.O_NONBLOCK
        how = rnd.choice(["socket", "socket", "fork", "exec"])
        plan = {"commands": commands, "read": rnd.choice(["eintr", "eintr", "kill", "nonblock", "none"]),
                "delay": rnd.choice([0.005, 0.02, 0.05]), "reads": rnd.randint(1, 3),
                "size": rnd.choice(READ_SIZES), "nobody": self.root and rnd.random() < 0.5}
        parent_first = rnd.random() < 0.5
        self.passed[how] = self.passed.get(how, 0) + 1
        what = f"fd child ({how}, {os.path.basename(path)}, {plan['read']}, nobody={plan['nobody']})"
        if how == "exec":
            fd = os.open(path, flags)
            try:
                child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", str(fd),
                                          json.dumps(plan)], pass_fds=[fd], stdin=subprocess.DEVNULL)
            finally:
                if parent_first:
                    os.close(fd)
            try:
                status = self._wait(child.pid, CHILD_LIMIT, what)
            finally:
                child.returncode = 0  # reaped by _wait (or given up on): Popen must not wait
                if not parent_first:
                    os.close(fd)
        elif how == "fork":
            fd = os.open(path, flags)
            pid = os.fork()
            if pid == 0:
                os._exit(fd_child(fd, plan))
            if parent_first:
                os.close(fd)
            try:
                status = self._wait(pid, CHILD_LIMIT, what)
            finally:
                if not parent_first:
                    os.close(fd)
        else:
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    ours.close()
                    theirs.settimeout(CHILD_LIMIT)
                    _, fds, _, _ = socket.recv_fds(theirs, 16, 1)
                    status = fd_child(fds[0], plan) if fds else 0
                except BaseException as error:  # noqa: BLE001
                    _say(f"PY fd child: {type(error).__name__} {error}")
                os._exit(status)
            theirs.close()
            try:
                fd = os.open(path, flags)
            except OSError:
                ours.close()  # the child gets nothing and exits
                self._wait(pid, CHILD_LIMIT, what)
                raise
            try:
                socket.send_fds(ours, [b"f"], [fd])
            finally:
                if parent_first:
                    os.close(fd)
                ours.close()
            try:
                status = self._wait(pid, CHILD_LIMIT, what)
            finally:
                if not parent_first:
                    os.close(fd)
        if os.WIFSIGNALED(status) and not (plan["read"] == "kill" and os.WTERMSIG(status) == signal.SIGALRM):
            _say(f"PY {what} died of signal {os.WTERMSIG(status)}")
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) not in (0, 1):
            _say(f"PY {what} exited {os.WEXITSTATUS(status)}")  # 1: it said why already

    # ---- many openers at once

    def burst(self, count: int) -> dict:
        """count openers at once, in up to 16 processes (half nobody's, when we are root), each
        opening a queue (and setting a size) or an events file, reading without blocking and
        closing. Returns the errno names seen, counted ("ok" for none)."""
        rnd = self.rnd
        procs = max(1, min(16, count // 125))
        plans = []
        for p in range(procs):
            n = count // procs + (p < count % procs)
            openers = []
            for _ in range(n):
                if rnd.random() < 0.7:
                    openers.append(("watch_queue", os.O_RDWR, rnd.choice(SIZES).decode()))
                else:
                    openers.append((os.path.join("events", rnd.choice(["@u", "@u", "@s", "@us"])), os.O_RDONLY, ""))
            plans.append((self.root and p % 2 == 1, openers))
        go_r, go_w = os.pipe()
        children = []  # (pid, the read end of its result pipe)
        try:
            for nobody, openers in plans:
                res_r, res_w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(go_w)
                    os.close(res_r)
                    os._exit(self._burst_child(go_r, res_w, nobody, openers))
                os.close(res_w)
                children.append((pid, res_r))
        finally:
            os.close(go_r)
            os.close(go_w)  # go: every opener's thread waits for this EOF
        seen: dict = {}
        deadline = time.monotonic() + BURST_LIMIT + 5
        for pid, res_r in children:
            try:
                status = self._wait(pid, max(0.1, deadline - time.monotonic()), f"burst of {count}")
            finally:
                os.set_blocking(res_r, False)
                try:
                    report = os.read(res_r, 1 << 16).decode()
                except BlockingIOError:
                    report = ""
                os.close(res_r)
            if status != 0:
                _say(f"PY burst child exited with status {status:#x}: {report}")
            for part in report.split():
                name, _, n = part.partition("=")
                if n.isdigit():
                    seen[name] = seen.get(name, 0) + int(n)
        return seen

    def _burst_child(self, go: int, out: int, nobody: bool, openers: list) -> int:
        try:
            if nobody:
                _nobody()
            threading.stack_size(256 * 1024)
            seen: dict = {}
            lock = threading.Lock()
            start = threading.Event()

            def one(name: str, flags: int, command: str) -> None:
                start.wait()
                result = "ok"
                try:
                    fd = os.open(os.path.join(self.mount, name), flags | os.O_NONBLOCK)
                    try:
                        if command:
                            os.write(fd, command.encode())
                        try:
                            os.read(fd, 4096)
                        except BlockingIOError:
                            pass
                    finally:
                        os.close(fd)
                except OSError as error:
                    result = errno_name(error.errno)
                except BaseException as error:  # noqa: BLE001
                    result = "PY"
                    _say(f"PY burst opener: {type(error).__name__} {error}")
                with lock:
                    seen[result] = seen.get(result, 0) + 1

            threads = [threading.Thread(target=one, args=opener, daemon=True) for opener in openers]
            for thread in threads:
                thread.start()
            os.read(go, 1)  # EOF once the parent has started every process
            start.set()
            deadline = time.monotonic() + BURST_LIMIT
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            stuck = sum(thread.is_alive() for thread in threads)
            with lock:
                os.write(out, " ".join(f"{k}={v}" for k, v in sorted(seen.items())).encode())
            if stuck:
                _say(f"PY HANG burst: {stuck} of {len(threads)} openers (uid {os.getuid()}) "
                     f"still in the daemon after {BURST_LIMIT:.0f} s")
                return 2
            return 1 if "PY" in seen else 0
        except BaseException as error:  # noqa: BLE001
            _say(f"PY burst child: {type(error).__name__} {error}")
            return 1

    def pages_came_back(self) -> None:
        """Every queue is closed, so nobody's pipe pages are all back: nobody may hold as many
        queues of 512 notes (16 pages each) at once as pipe-user-pages-soft allows, less a
        margin of 64. Pages that never came back put nobody over the soft limit sooner: a
        queue then gets 2 pages, and sizing it to 16 fails with EPERM."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                if self.root:
                    _nobody()
                os.write(w, (self._hold_queues() or "").encode())
            except BaseException as error:  # noqa: BLE001
                os.write(w, f"{type(error).__name__} {error}".encode())
            finally:
                os._exit(0)
        os.close(w)
        try:
            self._wait(pid, 30, "the accounting check")
        finally:
            os.set_blocking(r, False)
        try:
            problem = os.read(r, 4096).decode()
        except BlockingIOError:
            problem = ""
        os.close(r)
        if problem:
            _say(f"PY ACCOUNTING after every queue was closed: {problem}")

    def _hold_queues(self) -> "str | None":
        try:
            with open("/proc/sys/fs/pipe-user-pages-soft") as f:
                soft = int(f.read())
        except (OSError, ValueError):
            return None
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 1 << 16 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        count = min(soft // 16 - 64, want - 64, 4096) if soft else 0
        if count <= 0:
            return None
        deadline = time.monotonic() + 5  # a FUSE release comes after its close returned
        while True:
            fds: list = []
            try:
                for _ in range(count):
                    fds.append(os.open(os.path.join(self.mount, "watch_queue"), os.O_RDWR | os.O_NONBLOCK))
                    os.write(fds[-1], b"size 512")
                return None
            except OSError as error:
                problem = (f"nobody's queue {len(fds)} of {count} (16 pages each, soft limit {soft}): "
                           f"{errno_name(error.errno)} {error.strerror}")
            finally:
                for fd in fds:
                    os.close(fd)
            if time.monotonic() > deadline:
                return problem
            time.sleep(0.3)

    def one(self) -> None:
        if self.rnd.random() < FD_PASS_RATE:
            self.pass_fd()
            return
        path = os.path.join(self.directory(), self.name())
        op = self.rnd.randrange(12)
        if op == 0:
            with open(path, "wb") as f:
                f.write(self.data())
        elif op == 1:
            self.read_some(path)
        elif op == 2:
            os.mkdir(path)
        elif op == 3:
            os.rmdir(path)
        elif op == 4:
            os.unlink(path)
        elif op == 5:
            os.rename(path, os.path.join(self.directory(), self.name()))
        elif op == 6:
            os.link(path, os.path.join(self.directory(), self.name()))
        elif op == 7:
            os.setxattr(path, self.rnd.choice(XATTRS_SET), self.data()[:200])
        elif op == 8:
            os.listxattr(path)
            os.getxattr(path, self.rnd.choice(XATTRS_GET))
        elif op == 9:
            self.read_some(os.path.join(self.mount, "watch_queue"), os.O_RDWR)
        elif op == 10:
            self.read_some(os.path.join(self.mount, "events", self.name()))
        else:
            os.chown(path, self.rnd.choice([-1, 0, 65534, 1000]), self.rnd.choice([-1, 0, 65534]))
            os.stat(path)
            os.readlink(path)


def errno_name(number: "int | None") -> str:
    import errno
    return errno.errorcode.get(number or 0, str(number))


def main() -> None:
    if sys.argv[1] == "--child":  # an exec'd child: the fd it was passed, and its plan
        sys.exit(fd_child(int(sys.argv[2]), json.loads(sys.argv[3])))
    fuzzer = Fuzzer(sys.argv[1], int(sys.argv[2]))
    operations = int(sys.argv[3])
    openers = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    bursts = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    at = {(k + 1) * operations // (bursts + 1) for k in range(bursts)} if openers else set()
    done = 0
    try:
        for i in range(operations):
            faulthandler.dump_traceback_later(OP_LIMIT, exit=True)
            if i in at:
                started = time.monotonic()
                seen = fuzzer.burst(openers)
                summary = " ".join(f"{k}={v}" for k, v in sorted(seen.items()))
                print(f"burst of {openers} at {i}: {time.monotonic() - started:.1f} s, {summary}", flush=True)
                if sum(seen.values()) != openers:
                    print(f"PY burst of {openers}: {sum(seen.values())} openers reported", flush=True)
            try:
                fuzzer.one()
                done += 1
            except OSError:
                pass
            except Hang:
                raise
            except Exception as error:  # noqa: BLE001 - the point: nothing but OSError may come
                print("PY", type(error).__name__, error, flush=True)
        faulthandler.dump_traceback_later(OP_LIMIT, exit=True)
        fuzzer.pages_came_back()
    except Hang as hang:
        print(f"PY HANG at operation {i} of seed {sys.argv[2]}: {hang}", flush=True)
        print("done", done, "(stopped)", flush=True)
        os._exit(2)  # not sys.exit: a stuck child of ours must not hold our exit
    faulthandler.cancel_dump_traceback_later()
    print("fd passes:", " ".join(f"{k}={v}" for k, v in sorted(fuzzer.passed.items())), flush=True)
    print("done", done)


if __name__ == "__main__":
    main()
