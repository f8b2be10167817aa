"""Numeric ABI of watch_queue and keyctl, exactly as the kernel's uapi headers spell it.

Every other module takes its numbers from here so that a value is written once.
"""
from __future__ import annotations

# pipe2 flag and ioctls (include/uapi/linux/watch_queue.h), x86/generic values.
O_NOTIFICATION_PIPE = 0o200  # == O_EXCL
IOC_WATCH_QUEUE_SET_SIZE = 0x5760
IOC_WATCH_QUEUE_SET_FILTER = 0x5761
FIONREAD = 0x541B
FIONBIO = 0x5421
F_SETFL = 4
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032  # fcntl (F_LINUX_SPECIFIC_BASE + 7, + 8)
PAGE_SIZE = 4096
UIO_MAXIOV = 1024
MAX_RW_COUNT = 0x7FFFF000  # INT_MAX & PAGE_MASK: what one read/write or iovec set may move
TASK_SIZE_MAX = 0x7FFFFFFFF000  # x86_64, 4-level paging: the end of user addresses (access_ok)
PIPE_DEF_BUFFERS = 16  # pages of a new pipe, notification pipes too until SET_SIZE
PIPE_MIN_DEF_BUFFERS = 2  # pages of a new pipe whose user is over pipe-user-pages-soft
PAGE_SHIFT = 12
# fs/pipe.c's sysctl defaults (/proc/sys/fs/pipe-max-size, pipe-user-pages-soft, -hard)
PIPE_MAX_SIZE_DEFAULT = 1048576
PIPE_USER_PAGES_SOFT_DEFAULT = PIPE_DEF_BUFFERS * 1024  # PIPE_DEF_BUFFERS * INR_OPEN_CUR
PIPE_USER_PAGES_HARD_DEFAULT = 0  # 0: no limit

# Capabilities (include/uapi/linux/capability.h) that lift the pipe-buffer limits
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
# ... and those Smack asks for (security/smack/smack_lsm.c): reading past a rule, choosing a label
CAP_MAC_OVERRIDE = 32
CAP_MAC_ADMIN = 33

# enum watch_notification_type. Mainline stops at KEY_NOTIFY (__NR 2); the mount and superblock
# types are those of the August 2020 mount patch (A2) and the February 2020 superblock patch
# (v16) on the same header, so the filter code (type >= __NR is dropped) accepts 2 and 3.
WATCH_TYPE_META = 0
WATCH_TYPE_KEY_NOTIFY = 1
WATCH_TYPE_MOUNT_NOTIFY = 2
WATCH_TYPE_SB_NOTIFY = 3
WATCH_TYPE__NR = 4

# enum watch_meta_notification_subtype
WATCH_META_REMOVAL_NOTIFICATION = 0
WATCH_META_LOSS_NOTIFICATION = 1

# enum key_notification_subtype
NOTIFY_KEY_INSTANTIATED = 0
NOTIFY_KEY_UPDATED = 1
NOTIFY_KEY_LINKED = 2
NOTIFY_KEY_UNLINKED = 3
NOTIFY_KEY_CLEARED = 4
NOTIFY_KEY_REVOKED = 5
NOTIFY_KEY_INVALIDATED = 6
NOTIFY_KEY_SETATTR = 7

KEY_SUBTYPE_NAMES = ("instantiated", "updated", "linked", "unlinked",
                     "cleared", "revoked", "invalidated", "setattr")

# struct watch_notification.info
WATCH_INFO_LENGTH = 0x0000007F
WATCH_INFO_ID = 0x0000FF00
WATCH_INFO_ID__SHIFT = 8
WATCH_INFO_TYPE_INFO = 0xFFFF0000
WATCH_INFO_FLAG_0, WATCH_INFO_FLAG_1, WATCH_INFO_FLAG_2 = 0x00010000, 0x00020000, 0x00040000

# enum mount_notification_subtype (A2 include/uapi/linux/watch_queue.h)
NOTIFY_MOUNT_NEW_MOUNT = 0
NOTIFY_MOUNT_UNMOUNT = 1
NOTIFY_MOUNT_EXPIRY = 2
NOTIFY_MOUNT_READONLY = 3
NOTIFY_MOUNT_SETATTR = 4
NOTIFY_MOUNT_MOVE_FROM = 5
NOTIFY_MOUNT_MOVE_TO = 6
MOUNT_SUBTYPE_NAMES = ("new_mount", "unmount", "expiry", "readonly", "setattr", "move_from", "move_to")
NOTIFY_MOUNT_IN_SUBTREE = WATCH_INFO_FLAG_0  # the change is below the watched point
NOTIFY_MOUNT_IS_NOW_RO = WATCH_INFO_FLAG_1
NOTIFY_MOUNT_IS_SUBMOUNT = WATCH_INFO_FLAG_2
MOUNT_NOTIFICATION_SIZE = 24  # struct mount_notification: header, u64 triggered_on, u64 auxiliary_mount

# enum superblock_notification_type (v16 include/uapi/linux/watch_queue.h)
NOTIFY_SUPERBLOCK_READONLY = 0
NOTIFY_SUPERBLOCK_ERROR = 1
NOTIFY_SUPERBLOCK_EDQUOT = 2
NOTIFY_SUPERBLOCK_NETWORK = 3
SB_SUBTYPE_NAMES = ("readonly", "error", "edquot", "network")
NOTIFY_SUPERBLOCK_IS_NOW_RO = WATCH_INFO_FLAG_0
SUPERBLOCK_NOTIFICATION_SIZE = 16  # struct superblock_notification: header, u64 sb_id
SUPERBLOCK_ERROR_NOTIFICATION_SIZE = 24  # + u32 error_number, u32 error_cookie

# watch_mount(2) and watch_sb(2): numbers no kernel assigns (every number the patches proposed,
# 439-441, is a real system call now), so a real kernel answers them ENOSYS and trapping them
# breaks nothing. wqfs/include/wqfs/watch_queue.h declares the same numbers.
NR_WATCH_MOUNT = 1000
NR_WATCH_SB = 1001
# The numbers of the 2020 patches, trapped only with `wqfs run --legacy-watch-nr` (and then only
# for calls that the real system call of that number would refuse): version -> {nr: name}.
LEGACY_WATCH_NRS = {
    "2020-08": {440: "watch_mount", 441: "watch_sb"},  # A2 and linux-next of mid-2020
    "2020-02": {439: "watch_mount"},                    # v17, standalone on 5.6-rc
}
NR_FACCESSAT2, NR_PROCESS_MADVISE, NR_EPOLL_PWAIT2 = 439, 440, 441  # what those numbers are today
PATH_MAX = 4096  # include/uapi/linux/limits.h: getname's buffer, the NUL included
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EACCESS = 0x200
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000

WATCH_QUEUE_NOTE_SIZE = 128
WATCH_QUEUE_NOTES_PER_PAGE = PAGE_SIZE // WATCH_QUEUE_NOTE_SIZE
WATCH_QUEUE_MAX_NOTES = 512
WATCH_QUEUE_MAX_FILTERS = 16
FILTER_HEADER_SIZE = 8
TYPE_FILTER_SIZE = 44

# Key permissions (include/linux/key.h)
KEY_POS_VIEW, KEY_POS_READ, KEY_POS_WRITE = 0x01000000, 0x02000000, 0x04000000
KEY_POS_SEARCH, KEY_POS_LINK, KEY_POS_SETATTR = 0x08000000, 0x10000000, 0x20000000
KEY_POS_ALL = 0x3F000000
KEY_USR_VIEW, KEY_USR_READ, KEY_USR_WRITE = 0x00010000, 0x00020000, 0x00040000
KEY_USR_SEARCH, KEY_USR_LINK, KEY_USR_SETATTR = 0x00080000, 0x00100000, 0x00200000
KEY_USR_ALL = 0x003F0000
KEY_GRP_ALL = 0x00003F00
KEY_OTH_ALL = 0x0000003F
KEY_PERM_VALID = KEY_POS_ALL | KEY_USR_ALL | KEY_GRP_ALL | KEY_OTH_ALL
KEY_PERM_UNDEF = 0xFFFFFFFF

# Per-class permission bits (the low byte of each class).
KEY_VIEW, KEY_READ, KEY_WRITE, KEY_SEARCH, KEY_LINK, KEY_SETATTR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# Special key IDs (include/uapi/linux/keyctl.h)
KEY_SPEC_THREAD_KEYRING = -1
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5
KEY_SPEC_GROUP_KEYRING = -6
KEY_SPEC_REQKEY_AUTH_KEY = -7
KEY_SPEC_REQUESTOR_KEYRING = -8

# Shell-friendly names of the special IDs, as keyutils' keyctl spells them.
SPECIAL_NAMES = {
    "@t": KEY_SPEC_THREAD_KEYRING,
    "@p": KEY_SPEC_PROCESS_KEYRING,
    "@s": KEY_SPEC_SESSION_KEYRING,
    "@u": KEY_SPEC_USER_KEYRING,
    "@us": KEY_SPEC_USER_SESSION_KEYRING,
    "@g": KEY_SPEC_GROUP_KEYRING,
    "@a": KEY_SPEC_REQKEY_AUTH_KEY,
}

# keyctl commands
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_UPDATE = 2
KEYCTL_REVOKE = 3
KEYCTL_CHOWN = 4
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
KEYCTL_CLEAR = 7
KEYCTL_LINK = 8
KEYCTL_UNLINK = 9
KEYCTL_SEARCH = 10
KEYCTL_READ = 11
KEYCTL_INSTANTIATE = 12
KEYCTL_NEGATE = 13
KEYCTL_SET_REQKEY_KEYRING = 14
KEYCTL_SET_TIMEOUT = 15
KEYCTL_ASSUME_AUTHORITY = 16
KEYCTL_GET_SECURITY = 17
KEYCTL_SESSION_TO_PARENT = 18
KEYCTL_REJECT = 19
KEYCTL_INSTANTIATE_IOV = 20
KEYCTL_INVALIDATE = 21
KEYCTL_GET_PERSISTENT = 22
KEYCTL_RESTRICT_KEYRING = 29
KEYCTL_MOVE = 30
KEYCTL_CAPABILITIES = 31
KEYCTL_WATCH_KEY = 32
KEYCTL_MOVE_EXCL = 1

# KEYCTL_CAPABILITIES bytes
KEYCTL_CAPS0_CAPABILITIES = 0x01
KEYCTL_CAPS0_PERSISTENT_KEYRINGS = 0x02
KEYCTL_CAPS0_DIFFIE_HELLMAN = 0x04
KEYCTL_CAPS0_PUBLIC_KEY = 0x08
KEYCTL_CAPS0_BIG_KEY = 0x10
KEYCTL_CAPS0_INVALIDATE = 0x20
KEYCTL_CAPS0_RESTRICT_KEYRING = 0x40
KEYCTL_CAPS0_MOVE = 0x80
KEYCTL_CAPS1_NS_KEYRING_NAME = 0x01
KEYCTL_CAPS1_NS_KEY_TAG = 0x02
KEYCTL_CAPS1_NOTIFICATIONS = 0x04

# Limits (security/keys)
KEY_MAX_DESC_SIZE = 4096
KEYQUOTA_LINK_BYTES = 4
KEY_GC_DELAY = 300.0
PERSISTENT_KEYRING_EXPIRY = 3 * 24 * 3600  # /proc/sys/kernel/keys/persistent_keyring_expiry
# One RCU grace period of a distribution kernel (SMP, Tree RCU, HZ=250): a key's last link is put
# one after its unlink, the key freed one after that. The SMP oracle (conformance/lifetime.c,
# WQ_MEASURE, 21 runs) measured 15.6 ms (9-32) to "no longer found", 35 ms (22-52) to the REMOVAL.
RCU_GRACE_PERIOD = 0.016
KEY_QUOTA_MAXKEYS = 200
KEY_QUOTA_MAXBYTES = 20000
KEY_QUOTA_ROOT_MAXKEYS = 1000000
KEY_QUOTA_ROOT_MAXBYTES = 25000000
ADD_KEY_MAX_PAYLOAD = 1024 * 1024 - 1
UPDATE_MAX_PAYLOAD = 4096
USER_MAX_PAYLOAD = 32767  # user_preparse: a user or logon key's payload
KEYRING_SEARCH_MAX_DEPTH = 6  # keyrings a search descends through (security/keys/keyring.c)
OVERFLOW_UID = OVERFLOW_GID = 65534  # /proc/sys/kernel/overflow{u,g}id: an id that has no mapping
