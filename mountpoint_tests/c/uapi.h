/* The kernel's user ABI for watch_queue and keys, spelled out once for every C program of the
 * suite (c/ and conformance/), so that they build against any libc headers: constants and
 * structs of include/uapi/linux/watch_queue.h and keyctl.h, and the raw syscalls. */
#ifndef WQFS_UAPI_H
#define WQFS_UAPI_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- include/uapi/linux/watch_queue.h */
#define O_NOTIFICATION_PIPE         O_EXCL
#define IOC_WATCH_QUEUE_SET_SIZE    0x5760
#define IOC_WATCH_QUEUE_SET_FILTER  0x5761

#define WATCH_TYPE_META             0
#define WATCH_TYPE_KEY_NOTIFY       1
#define WATCH_META_REMOVAL_NOTIFICATION 0
#define WATCH_META_LOSS_NOTIFICATION    1

#define WATCH_INFO_LENGTH           0x0000007f
#define WATCH_INFO_ID               0x0000ff00
#define WATCH_INFO_TYPE_INFO        0xffff0000

#define NOTIFY_KEY_INSTANTIATED 0
#define NOTIFY_KEY_UPDATED      1
#define NOTIFY_KEY_LINKED       2
#define NOTIFY_KEY_UNLINKED     3
#define NOTIFY_KEY_CLEARED      4
#define NOTIFY_KEY_REVOKED      5
#define NOTIFY_KEY_INVALIDATED  6
#define NOTIFY_KEY_SETATTR      7

struct watch_notification {
    uint32_t type:24;
    uint32_t subtype:8;
    uint32_t info;
};

struct watch_notification_type_filter {
    uint32_t type;
    uint32_t info_filter;
    uint32_t info_mask;
    uint32_t subtype_filter[8];
};

struct watch_notification_filter {
    uint32_t nr_filters;
    uint32_t __reserved;
    struct watch_notification_type_filter filters[];
};

struct key_notification {
    struct watch_notification watch;
    uint32_t key_id;
    uint32_t aux;
};

/* ---- include/uapi/linux/keyctl.h */
#define KEY_SPEC_THREAD_KEYRING       -1
#define KEY_SPEC_PROCESS_KEYRING      -2
#define KEY_SPEC_SESSION_KEYRING      -3
#define KEY_SPEC_USER_KEYRING         -4
#define KEY_SPEC_USER_SESSION_KEYRING -5
#define KEY_SPEC_GROUP_KEYRING        -6
#define KEY_SPEC_REQKEY_AUTH_KEY      -7
#define KEY_SPEC_REQUESTOR_KEYRING    -8

#define KEYCTL_GET_KEYRING_ID       0
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_UPDATE               2
#define KEYCTL_REVOKE               3
#define KEYCTL_CHOWN                4
#define KEYCTL_SETPERM              5
#define KEYCTL_DESCRIBE             6
#define KEYCTL_CLEAR                7
#define KEYCTL_LINK                 8
#define KEYCTL_UNLINK               9
#define KEYCTL_SEARCH               10
#define KEYCTL_READ                 11
#define KEYCTL_INSTANTIATE          12
#define KEYCTL_NEGATE               13
#define KEYCTL_SET_REQKEY_KEYRING   14
#define KEYCTL_SET_TIMEOUT          15
#define KEYCTL_ASSUME_AUTHORITY     16
#define KEYCTL_GET_SECURITY         17
#define KEYCTL_SESSION_TO_PARENT    18
#define KEYCTL_REJECT               19
#define KEYCTL_INVALIDATE           21
#define KEYCTL_DH_COMPUTE           23
#define KEYCTL_RESTRICT_KEYRING     29
#define KEYCTL_MOVE                 30
#define KEYCTL_CAPABILITIES         31
#define KEYCTL_WATCH_KEY            32
#define KEYCTL_MOVE_EXCL            1
#define KEYCTL_CAPS1_NOTIFICATIONS  0x04

#define KEY_POS_VIEW    0x01000000
#define KEY_POS_READ    0x02000000
#define KEY_POS_WRITE   0x04000000
#define KEY_POS_SEARCH  0x08000000
#define KEY_POS_LINK    0x10000000
#define KEY_POS_SETATTR 0x20000000
#define KEY_POS_ALL     0x3f000000
#define KEY_USR_VIEW    0x00010000
#define KEY_USR_READ    0x00020000
#define KEY_USR_WRITE   0x00040000
#define KEY_USR_SEARCH  0x00080000
#define KEY_USR_LINK    0x00100000
#define KEY_USR_SETATTR 0x00200000
#define KEY_USR_ALL     0x003f0000
#define KEY_GRP_VIEW    0x00000100
#define KEY_GRP_ALL     0x00003f00
#define KEY_OTH_VIEW    0x00000001
#define KEY_OTH_ALL     0x0000003f

typedef int32_t key_serial_t;

/* ---- the raw syscalls, as kernel clients make them */
static inline long add_key(const char *type, const char *desc, const void *payload, size_t plen,
                           key_serial_t ring)
{
    return syscall(__NR_add_key, type, desc, payload, plen, ring);
}

static inline long keyctl(int cmd, unsigned long a2, unsigned long a3, unsigned long a4,
                          unsigned long a5)
{
    return syscall(__NR_keyctl, cmd, a2, a3, a4, a5);
}

static inline long watch_key(key_serial_t key, int fd, int tag)
{
    return keyctl(KEYCTL_WATCH_KEY, (unsigned long)(long)key, (unsigned long)(long)fd,
                  (unsigned long)(long)tag, 0);
}

#endif
