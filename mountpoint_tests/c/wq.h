/* Shared by the test programs of test_run.py: the ioctls and key specs as kernel clients use
 * them, one-line reports, and watch_test.c's consumer. The ABI itself is in uapi.h. */
#ifndef WQ_TEST_H
#define WQ_TEST_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uapi.h"

static inline int set_size(int fd, unsigned long notes)
{
	return ioctl(fd, IOC_WATCH_QUEUE_SET_SIZE, notes);
}

static inline int set_filter(int fd, const void *filter)
{
	return ioctl(fd, IOC_WATCH_QUEUE_SET_FILTER, filter);
}

/* The filter of watch_test.c: every key notification, nothing else (META passes anyway). */
static inline int set_key_filter(int fd)
{
	static struct {
		struct watch_notification_filter f;
		struct watch_notification_type_filter t[1];
	} filter = { { 1, 0 }, { { WATCH_TYPE_KEY_NOTIFY, 0, 0, { UINT_MAX } } } };
	return set_filter(fd, &filter);
}

/* "@s" and friends, or a serial; a ":TAG" suffix is ignored. */
static inline key_serial_t key_spec(const char *arg)
{
	static const struct { const char *name; key_serial_t id; } specs[] = {
		{ "@t", KEY_SPEC_THREAD_KEYRING }, { "@p", KEY_SPEC_PROCESS_KEYRING },
		{ "@s", KEY_SPEC_SESSION_KEYRING }, { "@u", KEY_SPEC_USER_KEYRING },
		{ "@us", KEY_SPEC_USER_SESSION_KEYRING },
	};
	size_t n = strcspn(arg, ":");
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		if (strlen(specs[i].name) == n && strncmp(arg, specs[i].name, n) == 0)
			return specs[i].id;
	return strtol(arg, NULL, 0);
}

static inline void die(const char *what)
{
	perror(what);
	exit(1);
}

#include "check.h"

static const char *key_subtypes[256] = {
	[0] = "instantiated", [1] = "updated", [2] = "linked", [3] = "unlinked",
	[4] = "cleared", [5] = "revoked", [6] = "invalidated", [7] = "setattr",
};

/* The records of one read(), printed exactly as samples/watch_queue/watch_test.c does. */
static inline void print_records(const unsigned char *buffer, ssize_t buf_len)
{
	const unsigned char *p = buffer, *end = buffer + buf_len;

	printf("read() = %zd\n", buf_len);
	while (p < end) {
		union {
			struct watch_notification n;
			unsigned char buf1[128];
		} n;
		size_t largest, len;

		largest = end - p;
		if (largest > 128)
			largest = 128;
		if (largest < sizeof(struct watch_notification)) {
			fprintf(stderr, "Short message header: %zu\n", largest);
			return;
		}
		memcpy(&n, p, largest);

		printf("NOTIFY[%03zx]: ty=%06x sy=%02x i=%08x\n",
		       p - buffer, n.n.type, n.n.subtype, n.n.info);

		len = n.n.info & 0x7f;
		if (len < sizeof(n.n) || len > largest) {
			fprintf(stderr, "Bad message length: %zu/%zu\n", len, largest);
			exit(1);
		}

		switch (n.n.type) {
		case WATCH_TYPE_META:
			switch (n.n.subtype) {
			case WATCH_META_REMOVAL_NOTIFICATION:
				printf("REMOVAL of watchpoint %08x\n", (n.n.info & 0xff00) >> 8);
				break;
			case WATCH_META_LOSS_NOTIFICATION:
				printf("-- LOSS --\n");
				break;
			default:
				printf("other meta record\n");
				break;
			}
			break;
		case WATCH_TYPE_KEY_NOTIFY: {
			struct key_notification *k = (struct key_notification *)&n.n;
			if (len != sizeof(struct key_notification))
				fprintf(stderr, "Incorrect key message length\n");
			else
				printf("KEY %08x change=%u[%s] aux=%u\n", k->key_id, k->watch.subtype,
				       key_subtypes[k->watch.subtype], k->aux);
			break;
		}
		default:
			printf("other type\n");
			break;
		}
		p += len;
	}
	fflush(stdout);
}

/* One read() of up to size bytes, printed; returns what read() returned. */
static inline ssize_t consume_once(int fd, size_t size)
{
	unsigned char buffer[433];
	ssize_t buf_len;

	if (size > sizeof(buffer))
		size = sizeof(buffer);
	buf_len = read(fd, buffer, size);
	if (buf_len == -1)
		die("read");
	if (buf_len == 0) {
		printf("-- END --\n");
		fflush(stdout);
		return 0;
	}
	if (buf_len > (ssize_t)size) {
		fprintf(stderr, "Read buffer overrun: %zd\n", buf_len);
		return 0;
	}
	print_records(buffer, buf_len);
	return buf_len;
}

#endif
