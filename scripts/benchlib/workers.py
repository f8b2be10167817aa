"""The processes a scenario runs: writers, readers, queue holders. Each prints one JSON line.

Every one is a real process with its own interpreter, making real system calls on a real
mount (or on tmpfs, for the inotify peer). Timestamps are CLOCK_MONOTONIC (time.monotonic_ns),
which is one clock for every process on the machine, so a writer's "close() returned" and a
reader's "read() returned" can be subtracted.

    python -m benchlib.workers ROLE [options]
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import select
import struct
import sys
import time

now = time.monotonic_ns
ACK = struct.Struct("<qi")  # reader -> writer: when the read returned, how many records
IN_MODIFY = 0x00000002
PAYLOADS = (b"value-a\n", b"value-b\n")
READ_SIZE = 65536


def raise_nofile() -> None:
    """Watches are charged to the uid and bounded by the caller's RLIMIT_NOFILE (as in the kernel)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def signal_ready(fd: int) -> None:
    if fd >= 0:
        os.write(fd, b"r")
        os.close(fd)


def wait_go(fd: int) -> None:
    if fd >= 0:
        os.read(fd, 1)
        os.close(fd)


# ---------------------------------------------------------------- queues

def open_queue(kind: str, target: str, size: int = 512, tag: int = 1) -> int:
    """A queue watching one object: wqfs (MOUNT, serial), floor (MOUNT), inotify (file)."""
    if kind == "wqfs":
        mount, serial = target.rsplit(":", 1)
        fd = os.open(os.path.join(mount, "watch_queue"), os.O_RDWR | os.O_CLOEXEC)
        os.write(fd, f"size {size}".encode())
        os.write(fd, f"watch {serial} {tag}".encode())
        return fd
    if kind == "events":
        mount, serial = target.rsplit(":", 1)
        return os.open(os.path.join(mount, "events", serial), os.O_RDONLY | os.O_CLOEXEC)
    if kind == "floor":
        return os.open(os.path.join(target, "queue"), os.O_RDONLY | os.O_CLOEXEC)
    if kind == "inotify":
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0 or libc.inotify_add_watch(fd, target.encode(), IN_MODIFY) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        return fd
    raise ValueError(kind)


def count_records(kind: str, data: bytes) -> tuple[int, int]:
    """(records, losses) in what one read() returned."""
    if kind == "wqfs":
        records = losses = 0
        offset = 0
        while offset < len(data):
            length = data[offset + 4] & 0x7F
            if length == 8 and data[offset] == 0:  # WATCH_TYPE_META ...
                losses += data[offset + 3] == 1   # ... subtype LOSS
            else:
                records += 1
            offset += max(length, 8)
        return records, losses
    if kind == "inotify":
        n = offset = 0
        while offset < len(data):
            offset += 16 + struct.unpack_from("<I", data, offset + 12)[0]
            n += 1
        return n, 0
    if kind == "events":
        return data.count(b"\n"), data.count(b"LOSS")
    return len(data) // 16, 0


# ---------------------------------------------------------------- scenario 1

def s1_reader(args: argparse.Namespace) -> None:
    """Wait in poll on the queue; after each read, tell the writer when it returned."""
    raise_nofile()
    fd = open_queue(args.kind, args.target)
    signal_ready(args.ready)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    received = losses = reads = 0
    ack = args.ack
    if args.mode == "pingpong":
        while received < args.n:
            poller.poll()
            data = os.read(fd, READ_SIZE)
            t = now()
            n, lost = count_records(args.kind, data)
            received += n
            losses += lost
            reads += 1
            os.write(ack, ACK.pack(t, n))
    else:  # stream: drain until the parent says the writer is done, then what is left
        ctl = args.ctl
        poller.register(ctl, select.POLLIN)
        done = False
        while True:
            events = poller.poll(0 if done else None)
            if not events:
                break
            for fd_ready, _ in events:
                if fd_ready == ctl:
                    os.read(ctl, 1)
                    poller.unregister(ctl)
                    done = True
                else:
                    data = os.read(fd, READ_SIZE)
                    n, lost = count_records(args.kind, data)
                    received += n
                    losses += lost
                    reads += 1
    emit({"received": received, "losses": losses, "reads": reads})


def s1_writer(args: argparse.Namespace) -> None:
    """open/write/close the key's file n times; in pingpong, wait for the reader after each.

    Latency runs from the return of the call that posts the record: close() for wqfs (the
    update is committed at flush) and the floor, write() for inotify (IN_MODIFY comes at write).
    """
    path = args.path.encode()
    flags = os.O_WRONLY | os.O_CLOEXEC
    wait_go(args.go)
    op_ns, lat_ns = [], []
    o, w, c = os.open, os.write, os.close
    if args.mode == "pingpong":
        ack = args.ack
        at_write = args.posted_by == "write"
        for i in range(args.n):
            t0 = now()
            fd = o(path, flags)
            w(fd, PAYLOADS[i & 1])
            tw = now()
            c(fd)
            t1 = now()
            t_read, _ = ACK.unpack(os.read(ack, ACK.size))
            op_ns.append(t1 - t0)
            lat_ns.append(t_read - (tw if at_write else t1))
        emit({"op_ns": op_ns, "lat_ns": lat_ns})
        return
    start = now()
    for i in range(args.n):
        fd = o(path, flags)
        w(fd, PAYLOADS[i & 1])
        c(fd)
    elapsed = now() - start
    emit({"n": args.n, "elapsed_ns": elapsed})


# ---------------------------------------------------------------- scenario 6

def path_writer(args: argparse.Namespace) -> None:
    """Update one file n times by open(O_WRONLY|O_TRUNC)/write/close, back to back; the path is
    resolved by the kernel on every open (through a symlink and a directory, or not)."""
    path = args.path.encode()
    flags = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC
    o, w, c = os.open, os.write, os.close
    wait_go(args.go)
    start = now()
    for i in range(args.n):
        fd = o(path, flags)
        w(fd, PAYLOADS[i & 1])
        c(fd)
    emit({"n": args.n, "elapsed_ns": now() - start})


# ---------------------------------------------------------------- scenario 2

def delivery(args: argparse.Namespace) -> None:
    """Fill a queue to its maximum through the mount, then time the reads that drain it."""
    fd = open_queue(args.kind, args.target, size=args.records)
    path = args.path.encode()
    flags = os.O_WRONLY | os.O_CLOEXEC
    samples = []
    for r in range(args.fills + 1):
        for i in range(args.records):
            wfd = os.open(path, flags)
            os.write(wfd, PAYLOADS[i & 1])
            os.close(wfd)
        got = reads = 0
        t0 = now()
        while got < args.records:
            got += count_records(args.kind, os.read(fd, READ_SIZE))[0]
            reads += 1
        elapsed = now() - t0
        if r:  # the first fill warms up
            samples.append({"ns": elapsed, "records": got, "reads": reads})
    emit({"samples": samples})


# ---------------------------------------------------------------- scenario 3

def fanout(args: argparse.Namespace) -> None:
    """n queues watch one key; time each update, then time draining every queue."""
    raise_nofile()
    mount, serial = args.target.rsplit(":", 1)
    queues = [open_queue("wqfs", args.target, size=args.updates) for _ in range(args.queues)]
    path = os.path.join(mount, "keys", serial).encode()
    flags = os.O_WRONLY | os.O_CLOEXEC
    update_ns, drain_ns, delivered = [], [], 0
    for r in range(args.rounds + 1):
        times = []
        for i in range(args.updates):
            t0 = now()
            fd = os.open(path, flags)
            os.write(fd, PAYLOADS[i & 1])
            os.close(fd)
            times.append(now() - t0)
        t0 = now()
        got = 0
        for q in queues:
            got += count_records("wqfs", os.read(q, READ_SIZE))[0]
        t1 = now()
        if got != args.updates * args.queues:
            raise SystemExit(f"fan-out: {got} records, expected {args.updates * args.queues}")
        if r:
            update_ns.extend(times)
            drain_ns.append(t1 - t0)
            delivered += got
    for q in queues:
        os.close(q)
    emit({"update_ns": update_ns, "drain_ns": drain_ns, "delivered": delivered})


# ---------------------------------------------------------------- scenario 4

def hold_watches(args: argparse.Namespace) -> None:
    """Open queues that watch the given keys, then hold them until told to stop."""
    raise_nofile()
    with open(args.serials) as f:
        serials = f.read().split()
    per_queue = args.watches // args.queues
    fds = []
    t0 = now()
    for q in range(args.queues):
        fd = os.open(os.path.join(args.mount, "watch_queue"), os.O_RDWR | os.O_CLOEXEC)
        os.write(fd, b"size 32")
        for tag, serial in enumerate(serials[:per_queue]):
            os.write(fd, f"watch {serial} {tag & 0xFF}".encode())
        fds.append(fd)
    elapsed = now() - t0
    signal_ready(args.ready)
    os.read(args.ctl, 1)
    emit({"watches": per_queue * args.queues, "elapsed_ns": elapsed})


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("s1-reader")
    p.add_argument("--kind", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--mode", choices=("pingpong", "stream"), required=True)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--ack", type=int, default=-1)
    p.add_argument("--ctl", type=int, default=-1)
    p.add_argument("--ready", type=int, default=-1)
    p.set_defaults(fn=s1_reader)
    p = sub.add_parser("s1-writer")
    p.add_argument("--path", required=True)
    p.add_argument("--mode", choices=("pingpong", "stream"), required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--ack", type=int, default=-1)
    p.add_argument("--go", type=int, default=-1)
    p.add_argument("--posted-by", choices=("close", "write"), default="close",
                   help="the system call whose return starts the latency clock: the one that posts")
    p.set_defaults(fn=s1_writer)
    p = sub.add_parser("path-writer")
    p.add_argument("--path", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--go", type=int, default=-1)
    p.set_defaults(fn=path_writer)
    p = sub.add_parser("delivery")
    p.add_argument("--kind", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--fills", type=int, required=True)
    p.set_defaults(fn=delivery)
    p = sub.add_parser("fanout")
    p.add_argument("--target", required=True)
    p.add_argument("--queues", type=int, required=True)
    p.add_argument("--updates", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.set_defaults(fn=fanout)
    p = sub.add_parser("hold-watches")
    p.add_argument("--mount", required=True)
    p.add_argument("--serials", required=True)
    p.add_argument("--queues", type=int, required=True)
    p.add_argument("--watches", type=int, required=True)
    p.add_argument("--ready", type=int, default=-1)
    p.add_argument("--ctl", type=int, default=-1)
    p.set_defaults(fn=hold_watches)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
