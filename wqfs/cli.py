"""The wqfs command: mount, unmount, watch, decode, cflags (and run)."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import time
from typing import Optional, Sequence

from . import __version__, abi, records
from .mounts import WQFS_TYPE, default_mountpoint, force_unmount, mount_path, mount_type
from .watchcmd import reflow

PROG = "wqfs"
MOUNT_ENGINES = ("auto", "fanotify", "mountinfo")  # wqfs.host.feeds.MountFeeds's engines


class UsageError(Exception):
    """One clear line for the user, exit status 1 (2 for usage errors from argparse)."""


UNMOUNT_WAIT = 10.0  # seconds `wqfs unmount` waits for the daemon to unmount once it agreed


def _check_mountpoint(path: str, is_default: bool) -> str:
    """One line for each reason wqfs cannot mount at path (exit 1)."""
    _check_not_mounted(path)  # first: a dead mountpoint's stat fails (ENOTCONN), a hung one's hangs
    if is_default:
        os.makedirs(path, exist_ok=True)
    if not os.path.exists(path):
        raise UsageError(f"mountpoint {path} does not exist")
    if not os.path.isdir(path):
        raise UsageError(f"mountpoint {path} is not a directory")
    if os.listdir(path):
        raise UsageError(f"mountpoint {path} is not empty: mounting there would hide its files")
    if not os.path.exists("/dev/fuse"):
        raise UsageError("/dev/fuse is missing: load the fuse module (modprobe fuse) or install fuse3")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise UsageError("/dev/fuse is not accessible to this user")
    return os.path.realpath(path)


def _check_not_mounted(path: str) -> None:
    """By mountinfo; a stat only of a wqfs mount no daemon holds: a dead one, whose stat fails
    at once (a live daemon, even a stopped one, holds its socket and is not stat'ed)."""
    from .syscalls import server
    kind = mount_type(path)
    if kind is None:
        return
    if kind == WQFS_TYPE and not server.holds_socket(mount_path(path)):
        try:
            os.stat(path)
        except OSError as error:
            if error.errno == errno.ENOTCONN:
                raise UsageError(f"{path} is a dead wqfs mount (its daemon stopped): "
                                 f"run `wqfs unmount {path}` first") from None
    raise UsageError(f"{path} is already mounted (wqfs unmount {path} first)")


def _banner(mountpoint: str) -> str:
    return (f"wqfs: mounted at {mountpoint}\n"
            f"Try, in another terminal:\n"
            f"  cat {mountpoint}/events/@s                  # watch your session keyring\n"
            f"  echo hello > {mountpoint}/@s/user:greeting   # add a key: a 'link' line appears\n"
            f"  ls -l {mountpoint}/@s/                       # list the keyring\n"
            f"Ctrl-C unmounts.")


def cmd_mount(args: argparse.Namespace) -> int:
    from . import daemon
    mountpoint = _check_mountpoint(args.mountpoint or default_mountpoint(), args.mountpoint is None)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s wqfs: %(message)s" if args.verbose else "wqfs: %(message)s")
    if args.foreground:
        mounted = _init(mountpoint, args)
        print(_banner(mountpoint), flush=True)
        daemon.serve(mounted, mountpoint)
        print("wqfs: unmounted", flush=True)
        if args.remove_mountpoint:  # a private daemon of `wqfs run`: its directory goes with it
            for path in (mountpoint, os.path.dirname(mountpoint)):
                try:
                    os.rmdir(path)
                except OSError:
                    break
        return 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as status:
            message = status.read().decode()
        if message.startswith("ok"):
            print(f"wqfs: mounted at {mountpoint}")
            return 0
        os.waitpid(pid, 0)
        raise UsageError(message.strip() or "the daemon died before the mount was ready")
    os.close(read_end)
    os.setsid()
    try:
        mounted = _init(mountpoint, args)
    except UsageError as error:
        os.write(write_end, str(error).encode())
        os._exit(1)
    _detach_stdio(args.log)

    def ready() -> None:
        os.write(write_end, b"ok")
        os.close(write_end)

    daemon.serve(mounted, mountpoint, ready)
    os._exit(0)


def _init(mountpoint: str, args: argparse.Namespace):
    from . import daemon, lsmconfig
    try:
        security = lsmconfig.configure(args.lsm, args.smack_rules, args.smack_label_map, args.verbose)
    except lsmconfig.ConfigError as error:
        raise UsageError(str(error)) from None
    try:
        return daemon.init(mountpoint, args.allow_other, args.verbose, args.gc_delay, args.rcu_grace,
                           security=security, mount_engine=args.mount_engine)
    except RuntimeError as error:
        hint = " (is user_allow_other set in /etc/fuse.conf?)" if args.allow_other and os.getuid() else ""
        raise UsageError(f"cannot mount at {mountpoint}: {error}{hint}") from None


def _detach_stdio(log: Optional[str]) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def cmd_unmount(args: argparse.Namespace) -> int:
    """Ask the daemon to stop (it wakes every blocked reader, then unmounts); where none
    answers, the mount is dead: unmount it lazily. Decided by mountinfo, never by stat."""
    from .syscalls import server
    path = args.mountpoint
    kind = mount_type(path)
    if kind is None:
        if not os.path.lexists(path):
            raise UsageError(f"{path} does not exist")
        raise UsageError(f"{path} is not mounted")
    if kind != WQFS_TYPE:
        raise UsageError(f"{path} is not a wqfs mount but {kind} (use umount)")
    real = mount_path(path)
    reply = server.request_unmount(real)
    if reply is not None and reply != "ok":
        raise UsageError(f"cannot unmount {path}: {reply}")
    if reply == "ok":
        deadline = time.monotonic() + UNMOUNT_WAIT
        while mount_type(real) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
    why = force_unmount(real)  # no daemon answered, or it did not unmount in time
    if why is not None:
        raise UsageError(f"cannot unmount {path}: {why}")
    return 0


def cmd_smack_reload(args: argparse.Namespace) -> int:
    """Have the daemon read its --smack-rules file again (the whole rule set replaced, or the
    old one kept and the bad line named)."""
    from .syscalls import server
    path = args.mountpoint
    if mount_type(path) != WQFS_TYPE:
        raise UsageError(f"{path} is not a wqfs mount")
    reply = server.request_reload(mount_path(path))
    if reply is None:
        raise UsageError(f"no daemon answered at {path}")
    if not reply.startswith("ok"):
        raise UsageError(f"cannot reload the rules of {path}: {reply}")
    print(f"wqfs: {reply[3:]}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from . import watchcmd
    try:
        return watchcmd.run(args)
    except watchcmd.WatchError as error:
        raise UsageError(str(error)) from None


def cmd_decode(args: argparse.Namespace) -> int:
    decoder = records.Decoder()
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    out = sys.stdout
    try:
        while True:
            data = os.read(stdin.fileno(), 65536)
            if not data:
                break
            try:
                batch = decoder.feed(data)
            except records.RecordError as error:
                raise UsageError(f"bad record: {error}") from None
            if args.style == "watch_test":
                out.write(f"read() = {len(data)}\n")
                offset = 0
                for record in batch:
                    out.write("\n".join(records.format_watch_test(record, offset)) + "\n")
                    offset += record.info & 0x7F
            else:
                fmt = records.format_json if args.style == "json" else records.format_keyctl
                for record in batch:
                    out.write(fmt(record) + "\n")
            out.flush()
    except KeyboardInterrupt:
        return 0
    if decoder.pending:
        raise UsageError(f"input ended inside a record ({decoder.pending} bytes left over)")
    return 0


def cmd_cflags(args: argparse.Namespace) -> int:
    from . import include
    print(include.cflags())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .syscalls.run import RunError, run
    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        return run(argv, args.mount or default_mountpoint(), private=args.private, new_session=args.new_session,
                   label=args.smack_label, legacy_watch_nr=args.legacy_watch_nr)
    except RunError as error:
        raise UsageError(str(error)) from None


def _seconds(text: str) -> float:
    """A duration for argparse: a number of seconds, not negative, not NaN."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds are a finite number, 0 or more")
    return value


def _notes(text: str) -> int:
    """A queue size for argparse: IOC_WATCH_QUEUE_SET_SIZE's 1..512 notes."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of notes") from None
    if not 1 <= value <= 512:
        raise argparse.ArgumentTypeError(f"{value}: a queue holds 1..512 notes")
    return value


DESCRIPTION = """\
wqfs emulates Linux's general notification queue (watch_queue) and the key subsystem's
notifications in user space, and the mount and superblock notifications the 2020 patches
proposed, fed by the host's own mount events: a FUSE tree where keys are files and keyrings
directories (MOUNT/keys, MOUNT/@s, ...), notification queue files (MOUNT/watch_queue,
MOUNT/events/KEY, MOUNT/mounts/PATH, MOUNT/superblocks/PATH), and `wqfs run`, which gives
unmodified programs (keyctl watch, watch_test) the syscalls."""

EPILOG = """\
The default mountpoint is /run/wqfs for root, else $XDG_RUNTIME_DIR/wqfs, or ~/.wqfs without
XDG_RUNTIME_DIR.

Exit status: 0 on success; 1 when the command could not do its work (one line on stderr says
why); 2 on bad usage (the command's usage and one line). `wqfs run` exits with the program's
status (128+N when a signal N killed it); `wqfs watch` has its own (wqfs watch --help).

See also: keyctl(1), keyrings(7), inotifywait(1), fusermount3(1)."""


DESCRIPTION, EPILOG = reflow(DESCRIPTION), reflow(EPILOG)


def _command(sub, name: str, summary: str, description: str, epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """A subcommand whose help, description and epilog are the man page's text as well."""
    return sub.add_parser(name, help=summary, description=reflow(description),
                          epilog=None if epilog is None else reflow(epilog),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    """The one source of the CLI: argparse, --help, scripts/gen-docs' man page and completion."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wqfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mount = _command(sub, "mount", "mount the keyring tree and notification queues",
                     "Mount the tree at MOUNTPOINT. It backgrounds once the mount is ready (like sshfs);\n"
                     "-f stays in the foreground, and Ctrl-C there unmounts. A missing, busy or non-empty\n"
                     "mountpoint, or a missing /dev/fuse, is one line on stderr and exit status 1.")
    mount.add_argument("mountpoint", nargs="?", help="default: $XDG_RUNTIME_DIR/wqfs, /run/wqfs for root")
    mount.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    mount.add_argument("--allow-other", action="store_true", help="let other users use the mount")
    mount.add_argument("-v", "--verbose", action="store_true", help="log each request")
    mount.add_argument("--gc-delay", type=_seconds, default=None, metavar="SECONDS",
                       help=f"how long revoked and expired keys linger (kernel default {abi.KEY_GC_DELAY:g})")
    mount.add_argument("--rcu-grace", type=_seconds, default=None, metavar="SECONDS",
                       help="one RCU grace period: a key's last link is put this long after its unlink, "
                            f"and the key freed as long after that (default {abi.RCU_GRACE_PERIOD:g}, a "
                            "distribution kernel's; 0: at once)")
    mount.add_argument("--mount-engine", choices=MOUNT_ENGINES, default="auto",
                       help="how the host's mount namespaces are read for mount and superblock watches: "
                            "fanotify mount events with statmount, or mountinfo alone (the fallback of "
                            "kernels before 6.15); auto (the default) takes fanotify where the kernel has it")
    mount.add_argument("--log", metavar="FILE", help="where a backgrounded daemon writes its log")
    mount.add_argument("--lsm", metavar="MODULE",
                       help="a security module: smack, or python:MODULE:CLASS (a subclass of wqfs.kernel.LSM)")
    mount.add_argument("--smack-rules", metavar="FILE",
                       help="Smack's rules, \"subject object access\" a line (smackfs load2); "
                            "`wqfs smack-reload` reads it again")
    mount.add_argument("--smack-label-map", metavar="FILE",
                       help="\"UID LABEL\" lines: the label of the tree's callers by uid (default _)")
    mount.add_argument("--remove-mountpoint", action="store_true", help=argparse.SUPPRESS)
    mount.set_defaults(func=cmd_mount)

    unmount = _command(sub, "unmount", "unmount a wqfs mount",
                       "Ask the daemon of MOUNTPOINT to stop: every blocked reader's read fails with\n"
                       "ENOTCONN, the mount goes, and this returns once it is gone (10 s at most). Only\n"
                       "the user who mounted, or root, may. A mount whose daemon died is unmounted lazily.")
    unmount.add_argument("mountpoint", help="a wqfs mount")
    unmount.set_defaults(func=cmd_unmount)

    reload = _command(sub, "smack-reload", "reload the Smack rules of a mount",
                      "Have the daemon of MOUNTPOINT read its --smack-rules file again: the whole rule set\n"
                      "is replaced at once or, if a line is bad, kept as it was (the line is named).\n"
                      "Only the user who mounted, or root, may.")
    reload.add_argument("mountpoint", help="a wqfs mount with --lsm smack")
    reload.set_defaults(func=cmd_smack_reload)

    from . import watchcmd
    watch = sub.add_parser("watch", help="print key, mount and superblock notifications as they come",
                           description="Print a line per notification of the KEYs, as keyctl watch does,\n"
                                       "with inotifywait's options; of mounts (--mounts) and superblocks (--sb)\n"
                                       "as the 2020 patches' watch_test.c does.",
                           epilog=watchcmd.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    watchcmd.add_arguments(watch, _seconds, _notes)
    watch.set_defaults(func=cmd_watch)

    decode = _command(sub, "decode", "decode binary records from stdin",
                      "Read notification records from stdin (a wqfs queue, or a real kernel's notification\n"
                      "pipe) and print them as keyctl watch does, as the kernel's samples/watch_queue/\n"
                      "watch_test.c does, or as JSON lines. Mount and superblock records are printed as\n"
                      "the 2020 patches' watch_test.c prints them (MOUNT 0000002f change=0[new_mount] aux=30)\n"
                      "in the keyctl and watch_test styles.")
    decode.add_argument("--style", choices=("keyctl", "watch_test", "json"), default="keyctl",
                        help="keyctl (the default), watch_test or json")
    decode.set_defaults(func=cmd_decode)

    cflags = _command(sub, "cflags", "print the compiler flags for wqfs's C header",
                      "Print the -I flag that finds <wqfs/watch_queue.h>, the mount and superblock\n"
                      "notification ABI and wqfs's watch_mount and watch_sb syscall numbers, for programs\n"
                      "run under `wqfs run`: cc $(wqfs cflags) -o watch_test watch_test.c")
    cflags.set_defaults(func=cmd_cflags)

    run = _command(sub, "run", "run a program with watch_queue and key syscalls emulated",
                   "Run PROGRAM under a seccomp filter that hands its watch_queue and key syscalls\n"
                   "(pipe2 with O_NOTIFICATION_PIPE, the watch-queue ioctls, keyctl, add_key, request_key,\n"
                   "and watch_mount and watch_sb at wqfs's numbers: `wqfs cflags`)\n"
                   "to the daemon of --mount, or to a private daemon where none runs. Its children run\n"
                   "under the filter too.")
    run.add_argument("--mount", metavar="DIR", help="the daemon to use (default: the default mountpoint; else a private one)")
    run.add_argument("--private", action="store_true",
                     help="always a private daemon, a fresh key store for this program alone")
    run.add_argument("--new-session", action="store_true",
                     help="start the program with a new session keyring of its own (as `keyctl session -`), "
                          "which the processes it starts share")
    run.add_argument("--smack-label", metavar="LABEL",
                     help="run the program and its children with this Smack label (the daemon must "
                          "run a security module; choosing a label takes the daemon's uid or CAP_MAC_ADMIN)")
    run.add_argument("--legacy-watch-nr", choices=sorted(abi.LEGACY_WATCH_NRS), metavar="VERSION",
                     help="serve watch_mount and watch_sb at the 2020 patches' numbers too, for binaries built "
                          "with their headers: 2020-08 (440 watch_mount, 441 watch_sb) or 2020-02 (439 "
                          "watch_mount); those numbers are faccessat2, process_madvise and epoll_pwait2 today, "
                          "and a call is taken for watch_mount only where the real call would certainly fail "
                          "and its fourth argument is a notification queue (off by default)")
    run.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
    run.set_defaults(func=cmd_run)
    parser.commands = sub.choices  # type: ignore[attr-defined]  (main: each command's own usage)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = parser.commands[args.command]  # type: ignore[attr-defined]
    if extra:  # say it in the command's own usage, not the top-level one (exit 2)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "watch" and not (args.keys or args.mounts or args.sb):
        command.error("watch needs a KEY, --mounts PATH or --sb PATH")
    if args.command == "run":
        program = list(args.program)
        if not program or program == ["--"]:
            command.error("run needs a program: wqfs run -- PROGRAM [ARGS...]")
    try:
        return args.func(args)
    except UsageError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return 0


if __name__ == "__main__":
    sys.exit(main())
