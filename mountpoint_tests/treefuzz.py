"""Random file operations on a wqfs mount, mostly wrong: odd names, bad commands and xattrs.

    python treefuzz.py MOUNT SEED OPERATIONS

Every operation may fail with OSError; anything else is printed as "PY ..." (a bug in the
daemon's answers). Ends with "done N" (N operations succeeded). Used by test_fuzz.py.
"""
import os
import random
import sys

M = sys.argv[1]
rnd = random.Random(int(sys.argv[2]))
def rname():
    parts = ["user:", "logon:", "keyring:", "big_key:", "", "x", "%", "%2F", "%25", "%zz", ":", "..", ".", "a"*300, "\udcff", "@s", "12", "-1", "0", "4294967295", "user:a:b", "keyring:_uid.0"]
    return "".join(rnd.choice(parts) for _ in range(rnd.randint(1, 3)))
def rdir():
    base = rnd.choice([M, M + "/@s", M + "/@u", M + "/@us", M + "/@t", M + "/@p", M + "/keys", M + "/events", M + "/.pipe"])
    try:
        ents = os.listdir(base)
        if ents and rnd.random() < 0.5:
            cand = os.path.join(base, rnd.choice(ents))
            if os.path.isdir(cand):
                return cand
    except OSError:
        pass
    return base
def rbytes():
    choices = [b"", b"size 1", b"size 0", b"size 512", b"size 513", b"size -1", b"size 99999999999999999999", b"filter none", b"filter raw ", b"filter raw zz", b"filter raw " + os.urandom(20).hex().encode(),
               b"watch @s 1", b"watch @s 256", b"watch 0 1", b"watch -3 -1", b"unwatch @s", b"unwatch 12", b"watch", b"\x00\xff", os.urandom(rnd.randint(0, 5000)), b"filter entries key 0xff 0 0", b"filter entries " + b"x" * 5000]
    return rnd.choice(choices)
ops = 0
for i in range(int(sys.argv[3])):
    d = rdir(); p = os.path.join(d, rname())
    op = rnd.randrange(12)
    try:
        if op == 0:
            with open(p, "wb") as f: f.write(rbytes())
        elif op == 1:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            try: os.read(fd, rnd.choice([0, 1, 16, 4096]))
            finally: os.close(fd)
        elif op == 2: os.mkdir(p)
        elif op == 3: os.rmdir(p)
        elif op == 4: os.unlink(p)
        elif op == 5: os.rename(p, os.path.join(rdir(), rname()))
        elif op == 6: os.link(p, os.path.join(rdir(), rname()))
        elif op == 7:
            os.setxattr(p, rnd.choice(["user.keyctl.revoke", "user.keyctl.invalidate", "user.keyctl.clear", "user.keyctl.perm", "user.keyctl.timeout", "user.keyctl.reject", "user.keyctl.negate", "user.keyctl.link", "user.keyctl.unlink", "user.keyctl.restrict", "user.keyctl.request", "user.x", "trusted.x", "user.keyctl.chown"]), rbytes()[:200])
        elif op == 8:
            os.getxattr(p, rnd.choice(["user.keyctl.describe", "user.keyctl.perm", "user.keyctl.nope", "user.keyctl.security"])); os.listxattr(p)
        elif op == 9:
            fd = os.open(M + "/watch_queue", os.O_RDWR | os.O_NONBLOCK)
            try:
                for _ in range(rnd.randint(1, 6)):
                    try: os.write(fd, rbytes())
                    except OSError: pass
                try: os.read(fd, rnd.choice([0, 1, 15, 16, 4096, 65536]))
                except OSError: pass
            finally: os.close(fd)
        elif op == 10:
            fd = os.open(os.path.join(M, "events", rname()), os.O_RDONLY | os.O_NONBLOCK)
            try: os.read(fd, 100)
            except OSError: pass
            os.close(fd)
        elif op == 11:
            os.chown(p, rnd.choice([-1, 0, 65534, 1000]), rnd.choice([-1, 0, 65534])); os.stat(p); os.readlink(p)
        ops += 1
    except OSError as e:
        pass
    except Exception as e:
        print("PY", type(e).__name__, e, op, p[:80])
print("done", ops)
