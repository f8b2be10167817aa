/* SPDX-License-Identifier: MIT */
/*
 * wqfs/watch_queue.h: mount and superblock notifications for programs run under `wqfs run`.
 *
 * The general notification queue of <linux/watch_queue.h> (Linux 5.8) carries key records
 * only; the patches that added mount and superblock sources were never merged. This header
 * adds them on top of it, as wqfs emulates them:
 *
 *   - mount records as in "watch_queue: Implement mount topology and attribute change
 *     notifications [ver #2]" (August 2020): WATCH_TYPE_MOUNT_NOTIFY 2, the 24-byte
 *     struct mount_notification, ids the 32-bit mount ids of /proc/PID/mountinfo's first column;
 *   - superblock records as in "vfs: Add superblock notifications [ver #16]" (February 2020),
 *     moved onto the same header: WATCH_TYPE_SB_NOTIFY 3, the 16-byte record and the 24-byte
 *     error record; wqfs's sb_id is the superblock's device number (what `stat -c %d` prints).
 *
 * The system call numbers are wqfs's own (no kernel assigns them, so a real kernel answers
 * ENOSYS): every number the patches proposed (439-441) is a real system call today. A binary
 * built with the 2020 patches' numbers runs under `wqfs run --legacy-watch-nr=2020-08` (or
 * 2020-02) instead. Get the include directory with `wqfs cflags`.
 */
#ifndef _WQFS_WATCH_QUEUE_H
#define _WQFS_WATCH_QUEUE_H

/* <linux/watch_queue.h> includes <linux/fcntl.h>, whose struct flock and f_owner_ex clash with
 * libc's <fcntl.h> in either order. The queue's definitions need nothing of it, so this header
 * takes libc's <fcntl.h> (O_EXCL, AT_FDCWD, pipe2's flags) and marks the kernel's as included:
 * a program may include <fcntl.h> before or after it. One that included <linux/fcntl.h> itself
 * keeps it (and cannot have libc's anyway). */
#ifndef _LINUX_FCNTL_H
#include <fcntl.h>
#define _LINUX_FCNTL_H
#endif
#include <linux/watch_queue.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AT_FDCWD
#define AT_FDCWD		-100
#endif
#ifndef AT_NO_AUTOMOUNT
#define AT_NO_AUTOMOUNT		0x800	/* watch_mount/watch_sb at_flags */
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH		0x1000
#endif

/* enum watch_notification_type grows by two; its __NR (2 in the kernel's header) becomes 4, so
 * that filters accept the new types exactly as the kernel's filter code (type < __NR) would. */
#define WATCH_TYPE_MOUNT_NOTIFY 2	/* Mount topology change notification */
#define WATCH_TYPE_SB_NOTIFY	3	/* Superblock change notification */
#ifdef WATCH_TYPE__NR
#undef WATCH_TYPE__NR
#endif
#define WATCH_TYPE__NR		4

/*
 * Type of mount topology change notification.
 */
enum mount_notification_subtype {
	NOTIFY_MOUNT_NEW_MOUNT	= 0, /* New mount added */
	NOTIFY_MOUNT_UNMOUNT	= 1, /* Mount removed manually */
	NOTIFY_MOUNT_EXPIRY	= 2, /* Automount expired */
	NOTIFY_MOUNT_READONLY	= 3, /* Mount R/O state changed */
	NOTIFY_MOUNT_SETATTR	= 4, /* Mount attributes changed */
	NOTIFY_MOUNT_MOVE_FROM	= 5, /* Mount moved from here */
	NOTIFY_MOUNT_MOVE_TO	= 6, /* Mount moved to here (compare op_id) */
};

#define NOTIFY_MOUNT_IN_SUBTREE		WATCH_INFO_FLAG_0 /* Event not actually at watched dentry */
#define NOTIFY_MOUNT_IS_NOW_RO		WATCH_INFO_FLAG_1 /* Mount changed to R/O */
#define NOTIFY_MOUNT_IS_SUBMOUNT	WATCH_INFO_FLAG_2 /* New mount is submount */

/*
 * Mount topology/configuration change notification record.
 * - watch.type = WATCH_TYPE_MOUNT_NOTIFY
 * - watch.subtype = enum mount_notification_subtype
 */
struct mount_notification {
	struct watch_notification watch; /* WATCH_TYPE_MOUNT_NOTIFY */
	__u64	triggered_on;		/* Mount (mountinfo id) the event is attributed to */
	__u64	auxiliary_mount;	/* Added/removed/moved mount, or 0 */
};

/*
 * Type of superblock notification.
 */
enum superblock_notification_type {
	NOTIFY_SUPERBLOCK_READONLY	= 0, /* Filesystem toggled between R/O and R/W */
	NOTIFY_SUPERBLOCK_ERROR		= 1, /* Error in filesystem or blockdev */
	NOTIFY_SUPERBLOCK_EDQUOT	= 2, /* EDQUOT notification */
	NOTIFY_SUPERBLOCK_NETWORK	= 3, /* Network status change */
};

#define NOTIFY_SUPERBLOCK_IS_NOW_RO	WATCH_INFO_FLAG_0 /* Superblock changed to R/O */

/*
 * Superblock notification record.
 * - watch.type = WATCH_TYPE_SB_NOTIFY
 * - watch.subtype = enum superblock_notification_type
 */
struct superblock_notification {
	struct watch_notification watch; /* WATCH_TYPE_SB_NOTIFY */
	__u64	sb_id;			/* The superblock (wqfs: its st_dev) */
};

struct superblock_error_notification {
	struct superblock_notification s; /* subtype = NOTIFY_SUPERBLOCK_ERROR */
	__u32	error_number;
	__u32	error_cookie;
};

/* x86_64 and every other architecture alike: wqfs traps these numbers under `wqfs run`. */
#ifndef __NR_watch_mount
#define __NR_watch_mount 1000
#endif
#ifndef __NR_watch_sb
#define __NR_watch_sb 1001
#endif

/*
 * watch_mount(dfd, path, at_flags, watch_fd, watch_id): watch the mount topology at and below
 * a directory; watch_sb(...): watch the superblock of the filesystem holding path. at_flags:
 * AT_NO_AUTOMOUNT, AT_EMPTY_PATH; watch_id 0..255, or -1 to remove the watch.
 */
#ifndef __cplusplus
/* unistd.h declares it only with _DEFAULT_SOURCE or _GNU_SOURCE; a second, compatible
 * declaration is harmless, so strict -std=c99 builds work too. (C++ compilers define
 * _GNU_SOURCE.) */
extern long syscall(long number, ...);
#endif

static inline long watch_mount(int dfd, const char *path, unsigned int at_flags, int watch_fd, int watch_id)
{
	return syscall(__NR_watch_mount, dfd, path, at_flags, watch_fd, watch_id);
}

static inline long watch_sb(int dfd, const char *path, unsigned int at_flags, int watch_fd, int watch_id)
{
	return syscall(__NR_watch_sb, dfd, path, at_flags, watch_fd, watch_id);
}

#endif /* _WQFS_WATCH_QUEUE_H */
