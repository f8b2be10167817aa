/* Random calls of everything `wqfs run` traps, with arguments that are mostly wrong: bad and
 * half-mapped pointers, unknown options, random serials, flags, sizes and filters, strings
 * that run into an unmapped page. A seeded PRNG makes a run repeatable:
 *     wq_fuzz SEED CALLS
 * Prints "calls: N", a "mapped:" line and a histogram of the errno values seen; exits 0 unless
 * a call returned something no kernel returns (a positive errno outside 1..133): 1, or a call
 * took longer than CALL_LIMIT seconds (a daemon that froze): 3, with the call on stdout.
 *
 * Pointers also go into pages only a FUSE server can bring in: a fresh (never faulted)
 * MAP_PRIVATE mapping of MOUNT/keys/SERIAL, a key of known content made through the tree of
 * the mount `wqfs run` names in WQFS_MOUNT; the copy of such a page makes the kernel ask that
 * same daemon for it. The mapping is made again every REMAP calls, so its pages are unfaulted
 * again (a direct_io file's page cache is dropped at mmap). Its layout:
 *     [file page 0][file page 1, EOF at PAYLOAD][a page past EOF: SIGBUS][not mapped]
 * so pointers may run off the end of the file's pages into the SIGBUS page, or off the end of
 * the mapping into nothing. If WQ_FUZZ_SLOW names a file (of a slow third-party FUSE mount),
 * it is mapped the same way (one page, then nothing), its page cache dropped each SLOW_REMAP
 * calls: pointers into pages a slow server brings in. */
#include "wq.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/xattr.h>

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
static volatile unsigned long current_call;
static volatile int current_op = -1;

/* ---- pages only a FUSE server can bring in ---- */

#define PAGE 4096
#define PAYLOAD 5000          /* the key's size: EOF in the middle of the second page */
#define FILE_PAGES 2
#define MAP_PAGES 3           /* the file's pages and one past EOF */
#define REMAP 50
#define SLOW_REMAP 500
#define CALL_LIMIT 20

static const char *mount_dir;  /* WQFS_MOUNT */
static char *mapped;           /* MAP_PAGES pages of MOUNT/keys/SERIAL, then one not mapped */
static char *slow;             /* one page of WQ_FUZZ_SLOW, then one not mapped */
static unsigned long remaps, remap_failures, slow_remaps;
/* offsets of NUL-terminated strings in the key's payload, for string() */
static const unsigned strings_at[] = {0, 5, 11, 19, 27, 39, 4080, 4090, 4100};

/* The key's payload: type names and descriptions, runs of printable bytes with no NUL that
 * cross the page boundary, and no NUL at all in the last 100 bytes before EOF. */
static void payload(char *p)
{
	memset(p, 'p', PAYLOAD);
	memcpy(p, "user\0logon\0keyring\0big_key\0fuzz-mapped\0_ses\0", 45);
	memcpy(p + 4080, "abcdefghi", 10); /* and the p... from 4090 crosses into page 1 */
	p[4100 + 20] = 0;
	p[4900 - 1] = 0;
}

/* A guard: reserve pages + 1 with nothing in them, then the file over the first pages. */
static char *map_file(const char *path, size_t pages, char *old)
{
	if (old)
		munmap(old, (pages + 1) * PAGE);
	int f = open(path, O_RDONLY);
	if (f < 0)
		return NULL;
	posix_fadvise(f, 0, 0, POSIX_FADV_DONTNEED); /* a keep_cache file's pages: read again */
	char *area = mmap(NULL, (pages + 1) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED) {
		close(f);
		return NULL;
	}
	munmap(area + pages * PAGE, PAGE);
	char *m = mmap(area, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, f, 0);
	close(f);
	if (m == MAP_FAILED) {
		munmap(area, pages * PAGE);
		return NULL;
	}
	return m;
}

/* Make the key through the tree: open(MOUNT/@s/user:fuzz-src, O_CREAT) + write + close, then
 * its serial from the xattr; 0 on failure. */
static long make_source(void)
{
	static char content[PAYLOAD];
	char name[4096], value[32];
	snprintf(name, sizeof(name), "%s/@s/user:fuzz-src", mount_dir);
	int f = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (f < 0)
		return 0;
	payload(content);
	ssize_t w = write(f, content, PAYLOAD);
	if (close(f) < 0 || w != PAYLOAD)
		return 0;
	ssize_t n = getxattr(name, "user.keyctl.serial", value, sizeof(value) - 1);
	if (n <= 0)
		return 0;
	value[n] = 0;
	return strtol(value, NULL, 10);
}

/* Map MOUNT/keys/SERIAL afresh; (re)make the key when that fails (the fuzz may clear, revoke,
 * unlink or setperm anything it finds), in a new session keyring if @s will not take it. */
static void remap(void)
{
	static char path[4096];
	remaps++;
	if (path[0] && (mapped = map_file(path, MAP_PAGES, mapped)))
		return;
	for (int attempt = 0; attempt < 2; attempt++) {
		long serial = make_source();
		if (serial > 0) {
			snprintf(path, sizeof(path), "%s/keys/%ld", mount_dir, serial);
			if ((mapped = map_file(path, MAP_PAGES, mapped)))
				return;
		}
		keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0); /* an anonymous one */
	}
	remap_failures++;
}

static unsigned long in_mapping(void)
{
	if (!mapped)
		return (unsigned long)(buf + pick(64));
	switch (pick(6)) {
	case 0: return (unsigned long)(mapped + pick(FILE_PAGES * PAGE));        /* anywhere in the file */
	case 1: return (unsigned long)(mapped + pick(FILE_PAGES) * PAGE);        /* a page's start */
	case 2: return (unsigned long)(mapped + PAGE - 1 - pick(16));            /* across file pages */
	case 3: return (unsigned long)(mapped + FILE_PAGES * PAGE - 1 - pick(16)); /* into the SIGBUS page */
	case 4: return (unsigned long)(mapped + MAP_PAGES * PAGE - 1 - pick(16)); /* off the mapping's end */
	default: return (unsigned long)(mapped + PAYLOAD - pick(64));           /* at EOF */
	}
}

static unsigned long in_slow(void)
{
	if (!slow)
		return in_mapping();
	switch (pick(3)) {
	case 0: return (unsigned long)slow;                          /* its content: a description */
	case 1: return (unsigned long)(slow + pick(PAGE));
	default: return (unsigned long)(slow + PAGE - 1 - pick(16)); /* off the mapping's end */
	}
}

static unsigned long pointer(void)
{
	switch (pick(10)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return 0xdead0000000UL;
	case 3: return (unsigned long)(edge + 4096 - 1 - pick(16)); /* runs off the mapped page */
	case 4: case 5: return in_mapping();
	case 6: return in_slow();
	default: return (unsigned long)(buf + pick(64));
	}
}

static const char *string(void)
{
	static const char *names[] = {"user", "logon", "keyring", "big_key", "", ".x", "nosuch",
				      "k", "svc:name", "_ses", "_uid.0", "a:b:c"};
	switch (pick(5)) {
	case 0: return (const char *)pointer();
	case 3: /* a string of the mapped key's payload, faulted in by the copy */
		return mapped ? mapped + strings_at[pick(sizeof(strings_at) / sizeof(strings_at[0]))]
			      : names[0];
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
	switch (current_op = pick(10)) {
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

/* A call that does not come back: say which, and end (the test fails, and does not hang). */
static void too_long(int sig)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "call %lu (op %d) did not return within %d s\n",
			 current_call, current_op, CALL_LIMIT);
	write(1, line, n);
	_exit(3);
}

int main(int argc, char **argv)
{
	unsigned long calls = argc > 2 ? strtoul(argv[2], NULL, 0) : 1000;
	unsigned long seen[134] = {0}, ok = 0;

	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGALRM, too_long);
	mount_dir = getenv("WQFS_MOUNT");
	const char *slow_path = getenv("WQ_FUZZ_SLOW");

	state = argc > 1 ? strtoull(argv[1], NULL, 0) * 2654435761u + 1 : 1;
	edge = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (edge == MAP_FAILED)
		die("mmap");
	munmap(edge + 4096, 4096);
	memset(edge, 'x', 4096);
	for (unsigned long i = 0; i < calls; i++) {
		for (int j = 0; j < nfds; j++) /* nonblocking, so that a read never waits */
			fcntl(fds[j], F_SETFL, O_NONBLOCK);
		alarm(CALL_LIMIT);
		current_call = i;
		current_op = -1;
		if (mount_dir && i % REMAP == 0)
			remap();
		if (slow_path && i % SLOW_REMAP == 0) {
			slow = map_file(slow_path, 1, slow);
			slow_remaps += slow != NULL;
		}
		errno = 0;
		long r = one_call();
		alarm(0);
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
	printf("mapped: %lu remaps, %lu failed, %lu slow\n", remaps, remap_failures, slow_remaps);
	for (int e = 1; e < 134; e++)
		if (seen[e])
			printf("%s: %lu\n", strerrorname_np(e), seen[e]);
	return 0;
}
