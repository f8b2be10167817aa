"""Random file operations on a wqfs mount, mostly wrong: odd names, bad commands and xattrs.

    python treefuzz.py MOUNT SEED OPERATIONS

Every operation may fail with OSError; anything else is printed as "PY ..." (a bug in the
daemon's answers). Ends with "done N" (N operations succeeded). Used by test_fuzz.py.
Files are opened O_NONBLOCK: a blocking read of a queue would wait, rightly, for ever.
"""
from __future__ import annotations

import os
import random
import sys

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


class Fuzzer:
    def __init__(self, mount: str, seed: int) -> None:
        self.mount = mount
        self.rnd = random.Random(seed)

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

    def one(self) -> None:
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


def main() -> None:
    fuzzer = Fuzzer(sys.argv[1], int(sys.argv[2]))
    done = 0
    for _ in range(int(sys.argv[3])):
        try:
            fuzzer.one()
            done += 1
        except OSError:
            pass
        except Exception as error:  # noqa: BLE001 - the point: nothing but OSError may come
            print("PY", type(error).__name__, error)
    print("done", done)


if __name__ == "__main__":
    main()
