"""One emulated machine: the state the kernel keeps in the globals of security/keys/*.c,
kernel/watch_queue.c and fs/pipe.c, and the operations a front calls.

The state is a few small objects, each owned by the file that mirrors the kernel file which
keeps it (keys/key.py's serials and quotas, keys/process_keys.py's keyrings of threads,
processes and sessions, keys/gc.py's collector, watch_queue's watch counts, the pipe pages
of pipe_accounting.py). The operations are module-level functions in those files; Kernel
binds the public ones as its methods, so that a front writes kernel.add_key(cred, ...) and
each rule is written once, in the file named for the kernel's.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from .. import abi
from .cred import Cred
from .fs import mount_notify, namespace
from .fs import super as super_c
from .keys import gc, keyctl, keyring, persistent, proc, process_keys
from .keys import request_key as request_key_c
from .keys import request_key_auth
from .keys.key import Key, KeySerials, KeyUsers, key_lookup
from .keys.process_keys import ProcessKeyrings
from .pipe_accounting import PipeAccounting, PipeLimits, read_pipe_limits
from .security import LSM, bind_current_cred
from .watch_queue import WatchCounts, WatchQueue, watch_queue_clear


class Kernel:
    """All keys and queues of one emulated machine."""

    def __init__(self, gc_delay: float = abi.KEY_GC_DELAY,
                 clock: Callable[[], float] = time.monotonic, seed: Optional[int] = None,
                 pipe_limits: Callable[[], PipeLimits] = read_pipe_limits,
                 rcu_grace: float = abi.RCU_GRACE_PERIOD, lsm: Optional[LSM] = None) -> None:
        """gc_delay: key_gc_delay; rcu_grace: one RCU grace period (keys/gc.py), 0 for none;
        pipe_limits: where the fs.pipe-* sysctls come from (the host's, read live, by default);
        lsm: the security module (security/security.py), chosen once as at boot; None for none."""
        self.keys: dict[int, Key] = {}  # key.c's key_serial_tree
        self.serials = KeySerials(seed)
        self.key_users = KeyUsers()
        self.process = ProcessKeyrings()
        self.persistent_register: Optional[Key] = None  # persistent.c's, made on first use
        self.gc = gc.GarbageCollector(gc_delay, rcu_grace, clock)
        self.watch_counts = WatchCounts()
        self.pipes = PipeAccounting(pipe_limits)  # every user's pipe-buffer pages
        self.constructions = request_key_c.Constructions()  # keys under construction, upcalls on the way
        self.authorities = request_key_auth.Authorities()   # request-key tokens, and who assumed them
        self.mounts = namespace.MountTable()  # the namespaces the mount feeds report, their superblocks
        self._clock = clock
        self.lsm = lsm  # the one place the hook points look: None costs a single test each
        if lsm is not None:
            bind_current_cred(self)  # what a system call posts carries its caller's Cred

    def now(self) -> float:
        return self._clock()

    # The system calls (keys/keyctl.py, keys/request_key.py, keys/persistent.py,
    # keys/process_keys.py): each takes the caller's Cred and says what permission it needs.
    add_key = keyctl.add_key
    check_add_key = keyctl.check_add_key
    add_key_payload_limit = staticmethod(keyctl.add_key_payload_limit)
    update = keyctl.update
    write_limit = keyctl.write_limit
    write_payload = keyctl.write_payload
    read = keyctl.read
    check_read = keyctl.check_read
    describe = keyctl.describe
    link = keyctl.link
    unlink = keyctl.unlink
    move = keyctl.move
    clear = keyctl.clear
    revoke = keyctl.revoke
    invalidate = keyctl.invalidate
    setperm = keyctl.setperm
    chown = keyctl.chown
    set_timeout = keyctl.set_timeout
    restrict_keyring = keyctl.restrict_keyring
    search = keyctl.search
    get_keyring_id = keyctl.get_keyring_id
    get_security = keyctl.get_security
    watch_key = keyctl.watch_key
    capabilities = staticmethod(keyctl.capabilities)
    request_key = request_key_c.request_key
    construct_key = request_key_c.construct_key
    instantiate = request_key_c.instantiate
    check_instantiate = request_key_c.check_instantiate
    reject = request_key_c.reject
    negate = request_key_c.negate
    assume_authority = keyctl.assume_authority
    wait_for_key_construction = request_key_c.wait_for_key_construction

    # The request-key upcall (keys/request_key.py): what request_key returns to a front that is
    # to run the helper, and how the front reports it (call_usermodehelper_keys's two ends).
    umh_keys_init = request_key_c.umh_keys_init
    complete_upcall = request_key_c.complete_upcall
    inherit_authority = request_key_auth.inherit_authority
    get_persistent = persistent.get_persistent
    own_persistent_keyring = persistent.own_persistent_keyring
    join_session_keyring = process_keys.join_session_keyring

    # What a front asks to show a key or find it (no permission is checked by these: the
    # front asks lookup, possessed or permitted for that).
    lookup = process_keys.lookup_user_key
    possessed = process_keys.possessed
    permitted = process_keys.key_task_permission
    rights = process_keys.key_task_rights
    session_keyring = process_keys.session_keyring
    user_keyrings = process_keys.look_up_user_keyrings
    visible_keys = proc.visible_keys
    key_state = proc.key_state
    key_expiry_left = proc.key_expiry_left
    find_member = keyring.find_member
    keyring_members = staticmethod(keyring.keyring_members)

    def key(self, serial: int) -> Key:
        """The live key with this serial (ENOKEY), whatever the caller may see of it."""
        return key_lookup(self, serial)

    # The owners of thread, process and session keyrings, which only a front sees end.
    owner_gone = process_keys.owner_gone
    owners = process_keys.owners

    # Mount and superblock notifications (fs/mount_notify.c, fs/super.c): the system calls, each
    # after the front's path lookup as the caller (MAY_EXEC on the directory)...
    check_watch_args = staticmethod(mount_notify.check_watch_args)
    watch_mount = mount_notify.watch_mount
    watch_sb = super_c.watch_sb
    # ... and what a feed of the host's mount events reports (fs/namespace.c's hooks); these
    # post as the system, and need no permission.
    mount_resync = namespace.mount_resync
    attach_mounts = namespace.attach_mounts
    umount_mounts = namespace.umount_mounts
    move_mount = namespace.move_mount
    change_mount = namespace.change_mount
    notify_sb_error = super_c.notify_sb_error
    drop_mount_namespace = namespace.drop_mount_namespace
    mount_namespace_known = namespace.mount_namespace_known
    namespace_watch_count = namespace.namespace_watch_count
    superblock_watch_count = super_c.superblock_watch_count
    find_mount = namespace.find_mount

    # Garbage collection (keys/gc.py).
    collect = gc.collect

    def add_gc_listener(self, callback: Callable[[], None]) -> None:
        """callback() whenever a collector pass is due."""
        self.gc.add_listener(callback)

    # Notification pipes (fs/pipe.c, kernel/watch_queue.c).
    def new_queue(self, cred: Cred) -> WatchQueue:
        """pipe2(O_NOTIFICATION_PIPE): alloc_pipe_info charges the pipe to cred's user (2 pages
        instead of 16 past pipe-user-pages-soft; ENFILE past -hard, for the unprivileged)."""
        pages = self.pipes.alloc_pipe_info(cred)
        return WatchQueue(cred.uid, pages, self.pipes, cred)

    def release_queue(self, queue: WatchQueue) -> None:
        """The last file on the queue closed: detach every watch without posting anything, and
        (free_pipe_info) give its pages back to the user charged; a second call refunds nothing."""
        watch_queue_clear(queue, self.watch_counts)
        if queue.accounting is not None:
            queue.accounting.free_pipe_info(queue)

    def statistics(self) -> dict[str, int]:
        return {"keys": len(self.keys), "gc_pending": len(self.gc.pending), "timed": len(self.gc.timed),
                "watches": self.watch_counts.total(), "mount_namespaces": len(self.mounts.namespaces),
                "mounts": sum(len(ns.mounts) for ns in self.mounts.namespaces.values()),
                "superblocks": len(self.mounts.superblocks)}
