/* keyctl in a tight loop through syscall(2), timed with clock_gettime(CLOCK_MONOTONIC).
 *
 * Run directly, it measures the real kernel; under `wqfs run`, the emulator; under
 * benchlib.seccomp_floor, the floor (every trapped call answered 0 at once).
 *
 *   keyctl_bench update N         N x keyctl(KEYCTL_UPDATE, key, "value-a", 7)
 *   keyctl_bench linkunlink N     N x (keyctl(KEYCTL_LINK, key, ring2), keyctl(KEYCTL_UNLINK, key, ring2))
 *   keyctl_bench watch N          N x (keyctl(KEYCTL_WATCH_KEY, key, fd, 1), the same with tag -1)
 *                                 on a pipe2(O_NOTIFICATION_PIPE) sized 256
 *   keyctl_bench add N RING PREFIX   N x add_key("user", PREFIX<i>, "v", 1, RING) (seeding)
 *
 * It makes its own keyrings in the session keyring first and unlinks them at the end.
 * Prints one JSON line: calls, total ns, per-call p50/p99 ns, failures and the first errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KEY_SPEC_SESSION_KEYRING -3
#define KEYCTL_UPDATE 2
#define KEYCTL_LINK 8
#define KEYCTL_UNLINK 9
#define KEYCTL_WATCH_KEY 32
#define O_NOTIFICATION_PIPE O_EXCL
#define IOC_WATCH_QUEUE_SET_SIZE _IO('W', 0x60)

static long keyctl5(long op, long a, long b, long c, long d)
{
	return syscall(SYS_keyctl, op, a, b, c, d);
}

static long add_key(const char *type, const char *desc, const void *payload, size_t plen, long ring)
{
	return syscall(SYS_add_key, type, desc, payload, plen, ring);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t *samples;
static long nsamples, failures;
static int first_errno;

static void check(long rc)
{
	if (rc < 0) {
		if (!failures)
			first_errno = errno;
		failures++;
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s update|linkunlink|watch|add N [RING PREFIX]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]);
	long calls_per = (!strcmp(mode, "linkunlink") || !strcmp(mode, "watch")) ? 2 : 1;
	samples = calloc((size_t)(n * calls_per + 1), sizeof(*samples));
	char name[64];
	long ring = 0, ring2 = 0, key = 0;
	int pipefd[2] = {-1, -1};

	if (strcmp(mode, "add")) {
		snprintf(name, sizeof(name), "wqfs-bench-%d", getpid());
		ring = add_key("keyring", name, NULL, 0, KEY_SPEC_SESSION_KEYRING);
		snprintf(name, sizeof(name), "wqfs-bench-%d-2", getpid());
		ring2 = add_key("keyring", name, NULL, 0, KEY_SPEC_SESSION_KEYRING);
		key = add_key("user", "bench", "value-0", 7, ring);
		if (ring < 0 || ring2 < 0 || key < 0) {
			printf("{\"mode\": \"%s\", \"error\": \"setup: %s\"}\n", mode, strerror(errno));
			return 1;
		}
	}
	if (!strcmp(mode, "watch")) {
		if (syscall(SYS_pipe2, pipefd, O_NOTIFICATION_PIPE) < 0) {
			printf("{\"mode\": \"watch\", \"error\": \"pipe2(O_NOTIFICATION_PIPE): %s\"}\n", strerror(errno));
			keyctl5(KEYCTL_UNLINK, ring, KEY_SPEC_SESSION_KEYRING, 0, 0);
			keyctl5(KEYCTL_UNLINK, ring2, KEY_SPEC_SESSION_KEYRING, 0, 0);
			return 0;
		}
		ioctl(pipefd[0], IOC_WATCH_QUEUE_SET_SIZE, 256);
	}

	int64_t start = now_ns(), t0, t1;
	if (!strcmp(mode, "update")) {
		for (long i = 0; i < n; i++) {
			t0 = now_ns();
			check(keyctl5(KEYCTL_UPDATE, key, (long)(i & 1 ? "value-a" : "value-b"), 7, 0));
			samples[nsamples++] = now_ns() - t0;
		}
	} else if (!strcmp(mode, "linkunlink")) {
		for (long i = 0; i < n; i++) {
			t0 = now_ns();
			check(keyctl5(KEYCTL_LINK, key, ring2, 0, 0));
			t1 = now_ns();
			check(keyctl5(KEYCTL_UNLINK, key, ring2, 0, 0));
			samples[nsamples++] = t1 - t0;
			samples[nsamples++] = now_ns() - t1;
		}
	} else if (!strcmp(mode, "watch")) {
		for (long i = 0; i < n; i++) {
			t0 = now_ns();
			check(keyctl5(KEYCTL_WATCH_KEY, key, pipefd[0], 1, 0));
			t1 = now_ns();
			check(keyctl5(KEYCTL_WATCH_KEY, key, pipefd[0], -1, 0));
			samples[nsamples++] = t1 - t0;
			samples[nsamples++] = now_ns() - t1;
		}
	} else if (!strcmp(mode, "add") && argc >= 5) {
		long dest = atol(argv[3]);
		for (long i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "%s%ld", argv[4], i);
			t0 = now_ns();
			check(add_key("user", name, "v", 1, dest));
			samples[nsamples++] = now_ns() - t0;
		}
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	int64_t total = now_ns() - start;

	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	if (strcmp(mode, "add")) {
		keyctl5(KEYCTL_UNLINK, ring, KEY_SPEC_SESSION_KEYRING, 0, 0);
		keyctl5(KEYCTL_UNLINK, ring2, KEY_SPEC_SESSION_KEYRING, 0, 0);
	}
	qsort(samples, (size_t)nsamples, sizeof(*samples), cmp64);
	int64_t p50 = nsamples ? samples[nsamples / 2] : 0;
	int64_t p99 = nsamples ? samples[(nsamples * 99) / 100] : 0;
	printf("{\"mode\": \"%s\", \"calls\": %ld, \"ns\": %lld, \"p50_ns\": %lld, \"p99_ns\": %lld, "
	       "\"failures\": %ld, \"first_error\": \"%s\"}\n",
	       mode, nsamples, (long long)total, (long long)p50, (long long)p99, failures,
	       failures ? strerror(first_errno) : "");
	return 0;
}
