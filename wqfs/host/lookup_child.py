"""The path lookup's program (run as `python -I -S lookup_child.py REQUEST`, standard library
only, everything imported before the chroot): resolve a path as the caller would, report it.

As root it joins the caller's mount namespace (setns), notes where the caller's root is in that
namespace, chroots to the caller's root and moves to its cwd or its dfd (all opened O_PATH by
the daemon from /proc/PID/...), then becomes the caller (groups, gid, uid, and the capabilities
path walks look at) before it opens the path O_PATH: every symlink resolves in the caller's
root, every directory is searched with the caller's rights, and the errno is the kernel's. It
checks MAY_EXEC on the target (faccessat2 AT_EACCESS) and sends back the mount id (statx
STATX_MNT_ID), the path in the namespace root's frame, and, for watch_sb, the O_PATH fd itself
(SCM_RIGHTS), on which the daemon puts its FAN_FS_ERROR mark.
"""
import array  # noqa: F401  (socket.send_fds needs it after the chroot)
import ctypes
import errno
import json
import os
import socket
import stat
import sys

CLONE_NEWNS = 0x00020000
PR_SET_KEEPCAPS = 8
AT_EMPTY_PATH = 0x1000
AT_EACCESS = 0x200
AT_NO_AUTOMOUNT = 0x800
NR_FACCESSAT2 = 439
NR_STATX = {"x86_64": 332, "aarch64": 291}.get(os.uname().machine, 332)
STATX_MNT_ID = 0x1000
CAP_VERSION_3 = 0x20080522
LOOKUP_CAPS = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: what may_lookup and MAY_EXEC consult

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def become(req: dict) -> None:
    """The caller's groups, gid and uid; of its capabilities, those a path walk consults."""
    uid, gid, caps = req["uid"], req["gid"], req["caps"]
    if not req["switch"]:
        return
    os.setgroups(req["groups"])
    os.setresgid(gid, gid, gid)
    keep = LOOKUP_CAPS if caps is None and uid == 0 else (caps or 0) & LOOKUP_CAPS
    if uid != 0:
        if keep:
            check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0))
        os.setresuid(uid, uid, uid)
    if caps is not None or uid != 0:
        header = (ctypes.c_uint32 * 2)(CAP_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)  # effective, permitted, inheritable (x2)
        check(libc.capset(header, data))


def lookup(req: dict) -> tuple:
    proc = req["proc"]
    if req["setns"]:
        check(libc.setns(req["ns"], CLONE_NEWNS))
    root_path = os.readlink(b"self/fd/%d" % req["root"], dir_fd=proc)  # the caller's root, in the namespace root's frame
    if req["chroot"]:
        os.fchdir(req["root"])
        os.chroot(".")
    path = bytes.fromhex(req["path"])
    for_sb = req["for_sb"]
    at_flags = req["at_flags"]
    empty_ok = not for_sb and at_flags & AT_EMPTY_PATH
    start = req["start"]
    if not path and not empty_ok:
        raise OSError(errno.ENOENT, "empty path")
    if path and not path.startswith(b"/"):
        if start < 0:
            raise OSError(errno.EBADF, "bad dfd")
        os.fchdir(start)  # ENOTDIR for a dfd that is not a directory, as path_init gives
    elif not path and start < 0:
        raise OSError(errno.EBADF, "bad dfd")
    become(req)
    if not path:
        fd = os.dup(start)
    elif for_sb:
        # watch_sb passes at_flags as the lookup flags: no LOOKUP_FOLLOW, no LOOKUP_DIRECTORY
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    elif at_flags & AT_NO_AUTOMOUNT:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # an O_PATH open without O_DIRECTORY triggers no automount
    else:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not for_sb and not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory")
    check(libc.syscall(ctypes.c_long(NR_FACCESSAT2), ctypes.c_int(fd), b"", ctypes.c_int(os.X_OK),
                       ctypes.c_int(AT_EMPTY_PATH | AT_EACCESS)))
    # the mount id by statx (fdinfo's mnt_id is the same number, but a process that changed its
    # uid is not dumpable, and its /proc/self/fdinfo is root's)
    buf = ctypes.create_string_buffer(256)
    check(libc.syscall(ctypes.c_long(NR_STATX), ctypes.c_int(fd), b"", ctypes.c_int(AT_EMPTY_PATH),
                       ctypes.c_uint(STATX_MNT_ID), buf))
    if not int.from_bytes(buf.raw[0:4], "little") & STATX_MNT_ID:
        raise OSError(errno.EIO, "statx gave no mount id")
    mnt_id = int.from_bytes(buf.raw[0x90:0x98], "little")
    found = os.readlink(b"self/fd/%d" % fd, dir_fd=proc)  # in the caller's frame (after the chroot)
    if req["chroot"] and root_path != b"/":
        found = root_path + found if found != b"/" else root_path
    reply = {"mnt_id": mnt_id, "path": found.hex(), "dev": st.st_dev}
    return reply, (fd if for_sb else None)


def main() -> int:
    req = json.loads(sys.argv[1])
    sock = socket.socket(fileno=req["reply"])
    try:
        reply, fd = lookup(req)
    except OSError as e:
        reply, fd = {"errno": e.errno or errno.EIO, "message": e.strerror or ""}, None
    data = json.dumps(reply).encode()
    if fd is None:
        sock.sendall(data)
    else:
        socket.send_fds(sock, [data], [fd])
    return 0


if __name__ == "__main__":
    sys.exit(main())
