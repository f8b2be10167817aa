/* watch_mounts: the mount half of the 2020 patches' samples/watch_queue/watch_test.c, built
 * against wqfs's own header (cc $(wqfs cflags)), not the suite's uapi.h: what a program written
 * for the patches looks like under `wqfs run`.
 *
 *   watch_mounts watch [-n] [-x] [-s NOTES] [-c RECORDS] [-m PATH[:TAG]]... [-b PATH[:TAG]]...
 *       pipe2(O_NOTIFICATION_PIPE), IOC_WATCH_QUEUE_SET_SIZE (256), a filter passing every
 *       mount and superblock record (-n: no filter), watch_mount(AT_FDCWD, PATH, 0, fd, TAG)
 *       per -m (TAG 0x02 by default, "/" if neither -m nor -b is given) and watch_sb per -b
 *       (TAG 0x03); "ready" on stderr once the watches are set, then watch_test's consumer
 *       (read()s of 433 bytes, each record printed as the sample prints it; -x adds a BYTES
 *       line of its bytes in hex). Exits after RECORDS records (-c), or at EOF.
 *   watch_mounts errors DIR FILE
 *       The error paths, one "label: RESULT" line each. DIR is a directory, FILE a file in it
 *       without x bits, DIR/dangling a symlink to nowhere.
 *   watch_mounts try mount|sb PATH...
 *       watch_mount (or watch_sb) of each PATH with tag 1, each then removed: "PATH: RESULT".
 *   watch_mounts legacy 2020-08|2020-02
 *       watch_mount/watch_sb at the 2020 patches' numbers (what `wqfs run --legacy-watch-nr`
 *       serves), beside genuine faccessat2, process_madvise and epoll_pwait2 calls whose
 *       fourth argument is a notification queue too (those must reach the real kernel).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <wqfs/watch_queue.h>

#ifndef MADV_COLD
#define MADV_COLD 20
#endif

static const char *mount_subtypes[256] = {
	[NOTIFY_MOUNT_NEW_MOUNT] = "new_mount", [NOTIFY_MOUNT_UNMOUNT] = "unmount",
	[NOTIFY_MOUNT_EXPIRY] = "expiry", [NOTIFY_MOUNT_READONLY] = "readonly",
	[NOTIFY_MOUNT_SETATTR] = "setattr", [NOTIFY_MOUNT_MOVE_FROM] = "move_from",
	[NOTIFY_MOUNT_MOVE_TO] = "move_to",
};

static const char *sb_subtypes[256] = {
	[NOTIFY_SUPERBLOCK_READONLY] = "readonly", [NOTIFY_SUPERBLOCK_ERROR] = "error",
	[NOTIFY_SUPERBLOCK_EDQUOT] = "edquot", [NOTIFY_SUPERBLOCK_NETWORK] = "network",
};

static int hex_dump;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

#include "check.h"

static int notification_queue(int notes)
{
	int fds[2];

	if (pipe2(fds, O_NOTIFICATION_PIPE) == -1)
		die("pipe2");
	if (ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, notes) == -1)
		die("watch_queue(size)");
	return fds[0];
}

/* Every mount and superblock record (META passes anyway), as the sample's filter has it. */
static int set_mount_filter(int fd)
{
	static struct {
		struct watch_notification_filter f;
		struct watch_notification_type_filter t[2];
	} filter = {
		{ .nr_filters = 2 },
		{ { .type = WATCH_TYPE_MOUNT_NOTIFY, .subtype_filter = { UINT_MAX } },
		  { .type = WATCH_TYPE_SB_NOTIFY, .subtype_filter = { UINT_MAX } } },
	};
	return ioctl(fd, IOC_WATCH_QUEUE_SET_FILTER, &filter);
}

static void saw_mount_change(const struct watch_notification *n, size_t len)
{
	const struct mount_notification *m = (const struct mount_notification *)n;

	if (len != sizeof(struct mount_notification)) {
		fprintf(stderr, "Incorrect mount message length\n");
		return;
	}
	printf("MOUNT %08llx change=%u[%s] aux=%llx\n", (unsigned long long)m->triggered_on,
	       n->subtype, mount_subtypes[n->subtype] ? mount_subtypes[n->subtype] : "?",
	       (unsigned long long)m->auxiliary_mount);
}

static void saw_super_change(const struct watch_notification *n, size_t len)
{
	const struct superblock_notification *s = (const struct superblock_notification *)n;
	const char *name = sb_subtypes[n->subtype] ? sb_subtypes[n->subtype] : "?";

	if (len < sizeof(struct superblock_notification)) {
		fprintf(stderr, "Incorrect superblock message length\n");
		return;
	}
	if (n->subtype == NOTIFY_SUPERBLOCK_ERROR && len >= sizeof(struct superblock_error_notification)) {
		const struct superblock_error_notification *e = (const struct superblock_error_notification *)n;
		printf("SUPER %08llx change=%u[%s] error=%u\n", (unsigned long long)s->sb_id, n->subtype,
		       name, e->error_number);
	} else {
		printf("SUPER %08llx change=%u[%s]\n", (unsigned long long)s->sb_id, n->subtype, name);
	}
}

/* The records of one read(), as the sample prints them; returns how many there were. */
static int print_records(const unsigned char *buffer, ssize_t buf_len)
{
	const unsigned char *p = buffer, *end = buffer + buf_len;
	int count = 0;

	printf("read() = %zd\n", buf_len);
	while (p < end) {
		union {
			struct watch_notification n;
			unsigned char buf1[128];
		} n;
		size_t largest = end - p, len;

		if (largest > 128)
			largest = 128;
		if (largest < sizeof(struct watch_notification)) {
			fprintf(stderr, "Short message header: %zu\n", largest);
			exit(1);
		}
		memcpy(&n, p, largest);
		printf("NOTIFY[%03zx]: ty=%06x sy=%02x i=%08x\n", (size_t)(p - buffer), n.n.type, n.n.subtype,
		       n.n.info);
		len = n.n.info & WATCH_INFO_LENGTH;
		if (len < sizeof(n.n) || len > largest) {
			fprintf(stderr, "Bad message length: %zu/%zu\n", len, largest);
			exit(1);
		}
		switch (n.n.type) {
		case WATCH_TYPE_META:
			if (n.n.subtype == WATCH_META_REMOVAL_NOTIFICATION)
				printf("REMOVAL of watchpoint %08x\n", (n.n.info & WATCH_INFO_ID) >> WATCH_INFO_ID__SHIFT);
			else if (n.n.subtype == WATCH_META_LOSS_NOTIFICATION)
				printf("-- LOSS --\n");
			else
				printf("other meta record\n");
			break;
		case WATCH_TYPE_MOUNT_NOTIFY:
			saw_mount_change(&n.n, len);
			break;
		case WATCH_TYPE_SB_NOTIFY:
			saw_super_change(&n.n, len);
			break;
		default:
			printf("other type\n");
			break;
		}
		if (hex_dump) {
			printf("BYTES ");
			for (size_t i = 0; i < len; i++)
				printf("%02x", p[i]);
			printf("\n");
		}
		p += len;
		count++;
	}
	fflush(stdout);
	return count;
}

/* PATH[:TAG] */
static int split_tag(char *arg, int tag)
{
	char *colon = strrchr(arg, ':');

	if (colon) {
		*colon = '\0';
		tag = (int)strtol(colon + 1, NULL, 0);
	}
	return tag;
}

static int watch_main(int argc, char **argv)
{
	int fd, opt, notes = 256, filter = 1, limit = -1, seen = 0, watches = 0;
	unsigned char buffer[433];
	ssize_t buf_len;
	char *mounts[16], *supers[16];
	int nmounts = 0, nsupers = 0;

	while ((opt = getopt(argc, argv, "nxs:c:m:b:")) != -1) {
		switch (opt) {
		case 'n': filter = 0; break;
		case 'x': hex_dump = 1; break;
		case 's': notes = atoi(optarg); break;
		case 'c': limit = atoi(optarg); break;
		case 'm': if (nmounts < 16) mounts[nmounts++] = optarg; break;
		case 'b': if (nsupers < 16) supers[nsupers++] = optarg; break;
		default:
			fprintf(stderr, "usage: watch_mounts watch [-n] [-x] [-s NOTES] [-c RECORDS] "
				"[-m PATH[:TAG]]... [-b PATH[:TAG]]...\n");
			exit(2);
		}
	}

	fd = notification_queue(notes);
	if (filter && set_mount_filter(fd) == -1)
		die("watch_queue(filter)");
	if (nmounts == 0 && nsupers == 0) {
		if (watch_mount(AT_FDCWD, "/", 0, fd, 0x02) == -1)
			die("watch_mount");
		watches++;
	}
	for (int i = 0; i < nmounts; i++) {
		int tag = split_tag(mounts[i], 0x02);
		if (watch_mount(AT_FDCWD, mounts[i], 0, fd, tag) == -1)
			die("watch_mount");
	}
	for (int i = 0; i < nsupers; i++) {
		int tag = split_tag(supers[i], 0x03);
		if (watch_sb(AT_FDCWD, supers[i], 0, fd, tag) == -1)
			die("watch_sb");
	}
	fprintf(stderr, "ready\n");

	while (limit < 0 || seen < limit) {
		buf_len = read(fd, buffer, sizeof(buffer));
		if (buf_len == -1)
			die("read");
		if (buf_len == 0) {
			printf("-- END --\n");
			break;
		}
		seen += print_records(buffer, buf_len);
	}
	return 0;
}

static int errors_main(int argc, char **argv)
{
	int q, devnull, dirfd, filefd;
	char longpath[PATH_MAX + 1], slashes[PATH_MAX], link[PATH_MAX];
	const char *dir, *file;

	if (argc != 3) {
		fprintf(stderr, "usage: watch_mounts errors DIR FILE\n");
		exit(2);
	}
	dir = argv[1];
	file = argv[2];
	snprintf(link, sizeof(link), "%s/dangling", dir);
	q = notification_queue(256);
	devnull = open("/dev/null", O_RDONLY);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	filefd = open(file, O_RDONLY);

	/* the scalar checks come first: before the name is copied, before any lookup */
	CHECK("watch_id 256", watch_mount(AT_FDCWD, dir, 0, q, 256));
	CHECK("watch_id -2", watch_mount(AT_FDCWD, dir, 0, q, -2));
	CHECK("at_flags 1", watch_mount(AT_FDCWD, dir, 1, q, 1));
	CHECK("at_flags AT_SYMLINK_NOFOLLOW", watch_mount(AT_FDCWD, dir, AT_SYMLINK_NOFOLLOW, q, 1));
	CHECK("watch_id 256, bad pointer", watch_mount(AT_FDCWD, (const char *)1, 0, q, 256));
	CHECK("at_flags 1, no such path", watch_mount(AT_FDCWD, "/nonexistent/x", 1, q, 1));
	CHECK("sb watch_id 256", watch_sb(AT_FDCWD, dir, 0, q, 256));
	CHECK("sb at_flags 1", watch_sb(AT_FDCWD, dir, 1, q, 1));

	/* then getname */
	CHECK("bad path pointer", watch_mount(AT_FDCWD, (const char *)1, 0, q, 1));
	CHECK("NULL path", watch_mount(AT_FDCWD, NULL, 0, q, 1));
	CHECK("bad path pointer, not a queue", watch_mount(AT_FDCWD, (const char *)1, 0, devnull, 1));
	memset(longpath, 'a', PATH_MAX);
	longpath[PATH_MAX] = '\0';
	CHECK("PATH_MAX bytes", watch_mount(AT_FDCWD, longpath, 0, q, 1));
	CHECK("sb bad path pointer", watch_sb(AT_FDCWD, (const char *)1, 0, q, 1));

	/* then the lookup, before the queue is looked at */
	CHECK("no such path", watch_mount(AT_FDCWD, "/nonexistent", 0, q, 1));
	CHECK("no such path, not a queue", watch_mount(AT_FDCWD, "/nonexistent", 0, devnull, 1));
	CHECK("a file", watch_mount(AT_FDCWD, file, 0, q, 1));
	CHECK("dangling symlink", watch_mount(AT_FDCWD, link, 0, q, 1));
	CHECK("empty path", watch_mount(AT_FDCWD, "", 0, q, 1));
	CHECK("bad dfd", watch_mount(999, "x", 0, q, 1));
	CHECK("file dfd", watch_mount(filefd, "x", 0, q, 1));
	CHECK("sb no such path", watch_sb(AT_FDCWD, "/nonexistent", 0, q, 1));
	CHECK("sb empty path, AT_EMPTY_PATH", watch_sb(dirfd, "", AT_EMPTY_PATH, q, 1));

	/* then the queue */
	CHECK("not a queue", watch_mount(AT_FDCWD, dir, 0, devnull, 1));
	CHECK("no such fd", watch_mount(AT_FDCWD, dir, 0, 999, 1));
	CHECK("sb not a queue", watch_sb(AT_FDCWD, dir, 0, devnull, 1));

	/* and the watch itself */
	CHECK("unwatch nothing", watch_mount(AT_FDCWD, dir, 0, q, -1));
	CHECK("watch", watch_mount(AT_FDCWD, dir, 0, q, 1));
	CHECK("watch again", watch_mount(AT_FDCWD, dir, 0, q, 2));
	CHECK("unwatch", watch_mount(AT_FDCWD, dir, 0, q, -1));
	CHECK("unwatch again", watch_mount(AT_FDCWD, dir, 0, q, -1));
	CHECK("empty path, AT_EMPTY_PATH", watch_mount(dirfd, "", AT_EMPTY_PATH, q, 4));
	CHECK("unwatch through dfd", watch_mount(dirfd, ".", 0, q, -1));
	memset(slashes, '/', PATH_MAX - 1);
	slashes[PATH_MAX - 1] = '\0';
	CHECK("bad dfd, absolute path", watch_mount(999, dir, 0, q, 8));
	CHECK("unwatch it", watch_mount(AT_FDCWD, dir, 0, q, -1));
	CHECK("PATH_MAX - 1 bytes", watch_mount(AT_FDCWD, slashes, 0, q, 5));
	CHECK("unwatch /", watch_mount(AT_FDCWD, "/", 0, q, -1));
	CHECK("sb unwatch nothing", watch_sb(AT_FDCWD, dir, 0, q, -1));
	CHECK("sb a file without x bits", watch_sb(AT_FDCWD, file, 0, q, 6));
	CHECK("sb dangling symlink", watch_sb(AT_FDCWD, link, 0, q, 6));
	CHECK("sb again, through the directory", watch_sb(AT_FDCWD, dir, 0, q, 7));
	CHECK("sb unwatch", watch_sb(AT_FDCWD, dir, 0, q, -1));
	return 0;
}

static int try_main(int argc, char **argv)
{
	int q, sb;

	if (argc < 3 || (strcmp(argv[1], "mount") != 0 && strcmp(argv[1], "sb") != 0)) {
		fprintf(stderr, "usage: watch_mounts try mount|sb PATH...\n");
		exit(2);
	}
	sb = strcmp(argv[1], "sb") == 0;
	q = notification_queue(256);
	for (int i = 2; i < argc; i++) {
		long ret = sb ? watch_sb(AT_FDCWD, argv[i], 0, q, 1) : watch_mount(AT_FDCWD, argv[i], 0, q, 1);
		report(argv[i], ret);
		if (ret == 0 && (sb ? watch_sb(AT_FDCWD, argv[i], 0, q, -1) : watch_mount(AT_FDCWD, argv[i], 0, q, -1)) != 0)
			die("unwatch");
	}
	return 0;
}

static int legacy_main(int argc, char **argv)
{
	int q, devnull, pidfd, epfd, evfd;
	void *page;
	struct iovec iov;
	struct epoll_event event = { .events = EPOLLIN }, out;
	struct timespec zero = { 0, 0 };

	if (argc != 2 || (strcmp(argv[1], "2020-08") != 0 && strcmp(argv[1], "2020-02") != 0)) {
		fprintf(stderr, "usage: watch_mounts legacy 2020-08|2020-02\n");
		exit(2);
	}
	q = notification_queue(256);
	devnull = open("/dev/null", O_RDONLY);
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(page, 1, 4096);
	iov.iov_base = page;
	iov.iov_len = 4096;

	if (strcmp(argv[1], "2020-08") == 0) {
		/* A2: watch_mount = 440; watch_sb = 441 (linux-next of mid-2020) */
		CHECK("legacy watch_mount", syscall(440, AT_FDCWD, "/", 0, q, 0x02));
		CHECK("legacy watch_sb", syscall(441, AT_FDCWD, "/", 0, q, 0x03));

		/* process_madvise(pidfd, iov, 1, MADV_COLD, 0) with fd MADV_COLD a queue: a real call */
		pidfd = syscall(SYS_pidfd_open, getpid(), 0);
		if (dup2(q, MADV_COLD) != MADV_COLD)
			die("dup2");
		CHECK("process_madvise", syscall(440, pidfd, &iov, 1, MADV_COLD, 0));
		CHECK("process_madvise, not a queue", syscall(440, pidfd, &iov, 1, 21, 0));
		CHECK("process_madvise flags 1, not a queue", syscall(440, pidfd, &iov, 1, 21, 1));

		/* epoll_pwait2(epfd, events, 1, NULL, NULL, 0) with fd 0 a queue: a real call */
		epfd = epoll_create1(0);
		evfd = eventfd(1, 0);
		epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &event);
		if (dup2(q, 0) != 0)
			die("dup2");
		CHECK("epoll_pwait2", syscall(441, epfd, &out, 1, NULL, NULL, 0));
		CHECK("epoll_pwait2, zero timeout", syscall(441, epfd, &out, 1, &zero, NULL, 0));

		CHECK("legacy unwatch", syscall(440, AT_FDCWD, "/", 0, q, -1));
		CHECK("legacy unwatch again", syscall(440, AT_FDCWD, "/", 0, q, -1));
		CHECK("legacy sb unwatch", syscall(441, AT_FDCWD, "/", 0, q, -1));
	} else {
		/* v17: watch_mount = 439 (before faccessat2 took it) */
		CHECK("legacy watch_mount", syscall(439, AT_FDCWD, "/", 0, q, 0x02));
		/* glibc's faccessat is faccessat2; fd AT_EACCESS a queue, as flags: a real call */
		if (dup2(q, AT_EACCESS) != AT_EACCESS)
			die("dup2");
		CHECK("faccessat", faccessat(AT_FDCWD, "/", R_OK, AT_EACCESS));
		CHECK("faccessat2, flags a queue fd", syscall(439, AT_FDCWD, "/", R_OK, AT_EACCESS));
		CHECK("faccessat2, bad flags, not a queue", syscall(439, AT_FDCWD, "/", 0, devnull));
		CHECK("legacy unwatch", syscall(439, AT_FDCWD, "/", 0, q, -1));
		CHECK("legacy unwatch again", syscall(439, AT_FDCWD, "/", 0, q, -1));
	}
	CHECK("watch_mount at wqfs's number", watch_mount(AT_FDCWD, "/", 0, q, 0x09));
	CHECK("unwatch at wqfs's number", watch_mount(AT_FDCWD, "/", 0, q, -1));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && strcmp(argv[1], "watch") == 0)
		return watch_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "errors") == 0)
		return errors_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "try") == 0)
		return try_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "legacy") == 0)
		return legacy_main(argc - 1, argv + 1);
	fprintf(stderr, "usage: watch_mounts watch|errors|try|legacy ...\n");
	return 2;
}
