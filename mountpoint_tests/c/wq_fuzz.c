/* Random calls of everything `wqfs run` traps, with arguments that are mostly wrong: bad and
 * half-mapped pointers, unknown options, random serials, flags, sizes and filters, strings
 * that run into an unmapped page. A seeded PRNG makes a run repeatable:
 *     wq_fuzz SEED CALLS
 * Prints "calls: N" and a histogram of the errno values seen; exits 0 unless a call returned
 * something no kernel returns (a positive errno outside 1..133). */
#include "wq.h"
#include <sys/mman.h>

static uint64_t state;

static uint64_t next(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

static uint64_t pick(uint64_t n)
{
	return next() % n;
}

static char *edge;       /* the last bytes of a mapped page; the next page is not mapped */
static char buf[8192];   /* a valid buffer, filled with random bytes */
static key_serial_t known[64];
static int nknown;
static int fds[16];
static int nfds;

static unsigned long pointer(void)
{
	switch (pick(6)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return 0xdead0000000UL;
	case 3: return (unsigned long)(edge + 4096 - 1 - pick(16)); /* runs off the mapped page */
	default: return (unsigned long)(buf + pick(64));
	}
}

static const char *string(void)
{
	static const char *names[] = {"user", "logon", "keyring", "big_key", "", ".x", "nosuch",
				      "k", "svc:name", "_ses", "_uid.0", "a:b:c"};
	switch (pick(4)) {
	case 0: return (const char *)pointer();
	case 1: /* random printable bytes, NUL somewhere or nowhere within the page */
		for (int i = 0; i < 64; i++)
			buf[i] = 32 + pick(95);
		buf[pick(80)] = 0;
		return buf;
	default: return names[pick(sizeof(names) / sizeof(names[0]))];
	}
}

static long serial(void)
{
	switch (pick(5)) {
	case 0: return -(long)pick(10);            /* specials, 0, and invalid negatives */
	case 1: return (long)next();                /* anything at all */
	default: return nknown ? known[pick(nknown)] : -3;
	}
}

static unsigned long number(void)
{
	static const unsigned long edges[] = {0, 1, 2, 16, 31, 32, 33, 255, 256, 512, 513, 4096,
					      32767, 32768, 1048575, 1048576, (unsigned long)-1,
					      0x7fffffff, 0x80000000, 0xffffffff, 0x100000001UL};
	return pick(3) ? edges[pick(sizeof(edges) / sizeof(edges[0]))] : next();
}

static int fd(void)
{
	return pick(4) && nfds ? fds[pick(nfds)] : (int)pick(40) - 2;
}

static long one_call(void)
{
	long r;
	switch (pick(10)) {
	case 0: { /* pipe2, notification or not */
		int p[2];
		r = pipe2(p, (pick(2) ? O_NOTIFICATION_PIPE : 0) | (pick(4) ? 0 : (int)number()));
		if (r == 0) {
			for (int i = 0; i < 2; i++) {
				if (nfds < 16)
					fds[nfds++] = p[i];
				else
					close(p[i]);
			}
		}
		return r;
	}
	case 1:
		return ioctl(fd(), IOC_WATCH_QUEUE_SET_SIZE, number());
	case 2: /* SET_FILTER: random bytes, or a NULL or bad pointer */
		for (int i = 0; i < 512; i++)
			buf[i] = (char)next();
		((uint32_t *)buf)[0] = pick(18);
		((uint32_t *)buf)[1] = pick(4) ? 0 : 1;
		return ioctl(fd(), IOC_WATCH_QUEUE_SET_FILTER, pick(4) ? (unsigned long)buf : pointer());
	case 3: {
		int n;
		return ioctl(fd(), FIONREAD, pick(4) ? (unsigned long)&n : pointer());
	}
	case 4:
		r = add_key(string(), string(), (const void *)pointer(), pick(2) ? pick(64) : number(), serial());
		if (r > 0 && nknown < 64)
			known[nknown++] = r;
		return r;
	case 5:
		return syscall(__NR_request_key, string(), string(), pick(2) ? NULL : string(), serial());
	case 6:
		return watch_key(serial(), fd(), pick(3) ? (int)pick(256) : (int)number());
	case 7: { /* 0-byte writes, reads and fcntls on the pipes */
		int f = fd();
		switch (pick(3)) {
		case 0: return write(f, buf, 0);
		case 1: return fcntl(f, pick(2) ? F_GETPIPE_SZ : F_SETPIPE_SZ, number());
		default: return read(f, buf, pick(2) ? 0 : 4096) < 0 ? -1 : 0;
		}
	}
	default: /* keyctl: every option, and some that do not exist */
		r = keyctl((int)pick(40), serial(), pick(2) ? serial() : pointer(), pick(2) ? pointer() : number(),
			   pick(2) ? serial() : number());
		if (r > 0 && nknown < 64 && pick(2))
			known[nknown++] = r;
		return r;
	}
}

int main(int argc, char **argv)
{
	unsigned long calls = argc > 2 ? strtoul(argv[2], NULL, 0) : 1000;
	unsigned long seen[134] = {0}, ok = 0;

	state = argc > 1 ? strtoull(argv[1], NULL, 0) * 2654435761u + 1 : 1;
	edge = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (edge == MAP_FAILED)
		die("mmap");
	munmap(edge + 4096, 4096);
	memset(edge, 'x', 4096);
	for (unsigned long i = 0; i < calls; i++) {
		for (int j = 0; j < nfds; j++) /* nonblocking, so that a read never waits */
			fcntl(fds[j], F_SETFL, O_NONBLOCK);
		errno = 0;
		long r = one_call();
		if (r >= 0) {
			ok++;
		} else if (errno > 0 && errno < 134) {
			seen[errno]++;
		} else {
			printf("call %lu: returned %ld with errno %d\n", i, r, errno);
			return 1;
		}
	}
	printf("calls: %lu, succeeded: %lu\n", calls, ok);
	for (int e = 1; e < 134; e++)
		if (seen[e])
			printf("%s: %lu\n", strerrorname_np(e), seen[e]);
	return 0;
}
