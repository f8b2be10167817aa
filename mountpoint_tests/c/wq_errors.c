/* Queue set-up and every error path of pipe2, the watch-queue ioctls, KEYCTL_WATCH_KEY
 * and the string and buffer rules of add_key/keyctl: one "label: RESULT" line each. */
#include "wq.h"
#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

struct filter2 {
	struct watch_notification_filter f;
	struct watch_notification_type_filter t[17];
};

static char *page_pair(void)
{
	/* Two pages: the first readable and writable, the second not mapped at all. */
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	munmap(p + 4096, 4096);
	return p;
}

static void pipes(void)
{
	int fds[2], before;

	CHECK("pipe2 notification", pipe2(fds, O_NOTIFICATION_PIPE));
	printf("ends differ: %s\n", fds[0] != fds[1] ? "yes" : "no");
	printf("accmode read end: %d\n", fcntl(fds[0], F_GETFL) & O_ACCMODE);
	printf("accmode write end: %d\n", fcntl(fds[1], F_GETFL) & O_ACCMODE);
	printf("cloexec: %d %d\n", fcntl(fds[0], F_GETFD) & FD_CLOEXEC, fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
	printf("nonblock: %d %d\n", !!(fcntl(fds[0], F_GETFL) & O_NONBLOCK), !!(fcntl(fds[1], F_GETFL) & O_NONBLOCK));
	close(fds[0]);
	close(fds[1]);

	CHECK("pipe2 all flags", pipe2(fds, O_NOTIFICATION_PIPE | O_NONBLOCK | O_CLOEXEC | O_DIRECT));
	printf("cloexec: %d %d\n", fcntl(fds[0], F_GETFD) & FD_CLOEXEC, fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
	printf("nonblock: %d %d\n", !!(fcntl(fds[0], F_GETFL) & O_NONBLOCK), !!(fcntl(fds[1], F_GETFL) & O_NONBLOCK));
	close(fds[0]);
	close(fds[1]);

	CHECK("pipe2 O_APPEND", pipe2(fds, O_NOTIFICATION_PIPE | O_APPEND));
	CHECK("pipe2 O_SYNC", pipe2(fds, O_NOTIFICATION_PIPE | O_SYNC));
	CHECK("pipe2 bit 30", pipe2(fds, O_NOTIFICATION_PIPE | 0x40000000));
	before = count_fds();
	CHECK("pipe2 bad pointer", syscall(__NR_pipe2, (int *)8, O_NOTIFICATION_PIPE));
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK("pipe2 read-only memory", syscall(__NR_pipe2, (int *)ro, O_NOTIFICATION_PIPE));
	printf("fds leaked: %d\n", count_fds() - before);
	CHECK("plain pipe2 still works", pipe2(fds, O_NONBLOCK));
	close(fds[0]);
	close(fds[1]);
}

static void ioctls(void)
{
	int q[2], plain[2], devnull = open("/dev/null", O_RDONLY), n = -1;
	struct filter2 f;
	char *pages = page_pair();

	pipe2(q, O_NOTIFICATION_PIPE | O_NONBLOCK);
	pipe(plain);

	CHECK("size plain pipe", set_size(plain[0], 32));
	CHECK("size /dev/null", set_size(devnull, 32));
	CHECK("size bad fd", set_size(1000, 32));
	CHECK("size 0", set_size(q[0], 0));
	CHECK("size 513", set_size(q[0], 513));
	CHECK("size -1", set_size(q[0], -1UL));
	CHECK("size 256", set_size(q[0], 256));
	CHECK("size again", set_size(q[0], 256));
	CHECK("size via write end", set_size(q[1], 1));
	CHECK("size bad value after set", set_size(q[1], 0));

	CHECK("filter plain pipe", set_filter(plain[0], NULL));
	CHECK("filter /dev/null", set_filter(devnull, NULL));
	CHECK("filter NULL", set_filter(q[0], NULL));
	CHECK("filter bad pointer", set_filter(q[0], (void *)8));
	memset(&f, 0, sizeof(f));
	CHECK("filter nr 0", set_filter(q[0], &f));
	f.f.nr_filters = 17;
	CHECK("filter nr 17", set_filter(q[0], &f));
	f.f.nr_filters = 1;
	f.f.__reserved = 1;
	CHECK("filter reserved", set_filter(q[0], &f));
	f.f.__reserved = 0;
	f.t[0].type = WATCH_TYPE_KEY_NOTIFY;
	f.t[0].subtype_filter[0] = UINT_MAX;
	f.t[0].info_filter = 0x100;
	CHECK("filter info outside mask", set_filter(q[0], &f));
	f.t[0].info_mask = 0x7f;
	f.t[0].info_filter = 0;
	CHECK("filter mask on length", set_filter(q[0], &f));
	f.t[0].info_mask = 0xff00;
	f.t[0].info_filter = 0x100;
	CHECK("filter by tag", set_filter(q[0], &f));
	f.t[0].type = 7;
	f.t[0].info_filter = 0x1;
	CHECK("filter unknown type still checked", set_filter(q[0], &f));
	f.t[0].info_filter = 0;
	f.t[0].info_mask = 0;
	CHECK("filter unknown type", set_filter(q[0], &f));
	f.f.nr_filters = 16;
	for (int i = 0; i < 16; i++)
		f.t[i] = (struct watch_notification_type_filter){ WATCH_TYPE_KEY_NOTIFY, 0, 0, { 1u << (i % 8) } };
	CHECK("filter 16 entries", set_filter(q[0], &f));
	/* The header is readable, the array after it is not. */
	struct watch_notification_filter *edge = (void *)(pages + 4096 - 8);
	edge->nr_filters = 1;
	edge->__reserved = 0;
	CHECK("filter array unreadable", set_filter(q[0], edge));
	CHECK("filter via write end", set_filter(q[1], NULL));

	CHECK("fionread empty", ioctl(q[0], FIONREAD, &n));
	printf("fionread value: %d\n", n);
	CHECK("fionread bad pointer", ioctl(q[0], FIONREAD, (int *)8));
	n = -1;
	write(plain[1], "abc", 3);
	CHECK("fionread plain pipe", ioctl(plain[0], FIONREAD, &n));
	printf("fionread plain value: %d\n", n);

	char buf[64];
	CHECK("write to write end", write(q[1], "x", 1));
	CHECK("write to read end", write(q[0], "x", 1));
	CHECK("read size 0", read(q[0], buf, 0));
	CHECK("read empty nonblock", read(q[0], buf, sizeof(buf)));

	/* A fresh queue without O_NONBLOCK: EOF once the write end is gone. */
	int b[2];
	pipe2(b, O_NOTIFICATION_PIPE);
	set_size(b[0], 1);
	close(b[1]);
	CHECK("read after writer closed", read(b[0], buf, sizeof(buf)));
	CHECK("read after writer closed again", read(b[0], buf, sizeof(buf)));
	close(b[0]);

	/* Size never set: a watch is fine, every record is dropped. */
	int u[2];
	pipe2(u, O_NOTIFICATION_PIPE | O_NONBLOCK);
	key_serial_t k = add_key("user", "unsized", "v", 1, KEY_SPEC_SESSION_KEYRING);
	CHECK("watch on unsized queue", watch_key(k, u[0], 1));
	CHECK("update with unsized queue", keyctl(KEYCTL_UPDATE, k, (unsigned long)"w", 1, 0));
	CHECK("read unsized queue", read(u[0], buf, sizeof(buf)));
	close(u[0]);
	close(u[1]);

	close(q[0]);
	close(q[1]);
	close(plain[0]);
	close(plain[1]);
	close(devnull);
}

static void watches(void)
{
	int q[2], plain[2], devnull = open("/dev/null", O_RDONLY);
	key_serial_t k, revoked, hidden;

	pipe2(q, O_NOTIFICATION_PIPE);
	set_size(q[0], 32);
	pipe(plain);
	k = add_key("user", "watched", "v", 1, KEY_SPEC_SESSION_KEYRING);

	CHECK("watch tag 256", watch_key(k, q[0], 256));
	CHECK("watch tag -2", watch_key(k, q[0], -2));
	CHECK("watch tag 256 key 0", watch_key(0, q[0], 256));
	CHECK("watch key 0", watch_key(0, q[0], 1));
	CHECK("watch key -6", watch_key(KEY_SPEC_GROUP_KEYRING, q[0], 1));
	CHECK("watch key -9", watch_key(-9, q[0], 1));
	CHECK("watch unknown key", watch_key(0x7ffffff0, q[0], 1));
	CHECK("watch unknown key bad fd", watch_key(0x7ffffff0, 1000, 1));
	CHECK("watch bad fd", watch_key(k, 1000, 1));
	CHECK("watch plain pipe", watch_key(k, plain[0], 1));
	CHECK("watch /dev/null", watch_key(k, devnull, 1));
	CHECK("watch", watch_key(k, q[0], 1));
	CHECK("watch again other tag", watch_key(k, q[0], 2));
	CHECK("watch again via write end", watch_key(k, q[1], 3));
	CHECK("unwatch", watch_key(k, q[1], -1));
	CHECK("unwatch again", watch_key(k, q[0], -1));
	CHECK("watch tag 0", watch_key(k, q[0], 0));
	CHECK("watch tag 255 session", watch_key(KEY_SPEC_SESSION_KEYRING, q[0], 255));
	CHECK("watch user keyring", watch_key(KEY_SPEC_USER_KEYRING, q[0], 4));

	revoked = add_key("user", "revoked", "v", 1, KEY_SPEC_SESSION_KEYRING);
	keyctl(KEYCTL_REVOKE, revoked, 0, 0, 0);
	CHECK("watch revoked", watch_key(revoked, q[0], 1));
	CHECK("unwatch revoked", watch_key(revoked, q[0], -1));

	hidden = add_key("user", "hidden", "v", 1, KEY_SPEC_SESSION_KEYRING);
	CHECK("setperm no view", keyctl(KEYCTL_SETPERM, hidden, 0x3e000000, 0, 0));
	CHECK("watch without view", watch_key(hidden, q[0], 1));

	close(q[0]);
	close(q[1]);
	close(plain[0]);
	close(plain[1]);
	close(devnull);
}

static void strings(void)
{
	char *pages = page_pair();
	char *edge = pages + 4096 - 4;   /* "abcd" then an unmapped page: no NUL */
	static char desc[4097], type[40];
	key_serial_t k;
	char buf[256];
	unsigned char caps[4];

	memcpy(edge, "abcd", 4);
	CHECK("add_key type NULL", add_key(NULL, "d", "v", 1, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key type bad pointer", add_key((char *)8, "d", "v", 1, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key type runs off the map", add_key(edge, "d", "v", 1, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key type empty", add_key("", "d", "v", 1, KEY_SPEC_SESSION_KEYRING));
	memset(type, 'a', 32);
	type[32] = 0;
	CHECK("add_key type 32 chars", add_key(type, "d", "v", 1, KEY_SPEC_SESSION_KEYRING));
	type[31] = 0;
	CHECK("add_key type 31 chars", add_key(type, "d", "v", 1, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key type .user", add_key(".user", "d", "v", 1, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key plen over 1 MiB", add_key(NULL, "d", "v", 1024 * 1024, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key description bad pointer", add_key("user", (char *)8, "v", 1, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key description runs off the map", add_key("user", edge, "v", 1, KEY_SPEC_SESSION_KEYRING));
	memset(desc, 'd', 4096);
	desc[4096] = 0;
	CHECK("add_key description 4096", add_key("user", desc, "v", 1, KEY_SPEC_SESSION_KEYRING));
	desc[4095] = 0;
	k = add_key("user", desc, "v", 1, KEY_SPEC_SESSION_KEYRING);
	printf("add_key description 4095: %s\n", k > 0 ? "serial" : strerrorname_np(errno));
	CHECK("add_key payload bad pointer", add_key("user", "d", (char *)8, 4, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key user empty payload", add_key("user", "d", NULL, 0, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key keyring .name", add_key("keyring", ".name", NULL, 0, KEY_SPEC_SESSION_KEYRING));
	CHECK("add_key ring 0", add_key("user", "d", "v", 1, 0));
	CHECK("add_key unknown ring", add_key("user", "d", "v", 1, 0x7ffffff0));

	k = add_key("user", "strings", "value", 5, KEY_SPEC_SESSION_KEYRING);
	CHECK("update over a page", keyctl(KEYCTL_UPDATE, k, (unsigned long)desc, 4097, 0));
	CHECK("update bad pointer", keyctl(KEYCTL_UPDATE, k, 8, 4, 0));

	/* describe copies only when the whole text fits; read likewise */
	long len = keyctl(KEYCTL_DESCRIBE, k, 0, 0, 0);
	printf("describe length: %ld\n", len);
	memset(buf, '#', sizeof(buf));
	CHECK("describe short buffer", keyctl(KEYCTL_DESCRIBE, k, (unsigned long)buf, len - 1, 0));
	printf("describe short buffer untouched: %s\n", buf[0] == '#' ? "yes" : "no");
	CHECK("describe exact buffer", keyctl(KEYCTL_DESCRIBE, k, (unsigned long)buf, len, 0));
	printf("describe text: %s\n", buf);
	CHECK("describe bad pointer", keyctl(KEYCTL_DESCRIBE, k, 8, 100, 0));
	memset(buf, '#', sizeof(buf));
	CHECK("read NULL", keyctl(KEYCTL_READ, k, 0, 100, 0));
	CHECK("read short buffer", keyctl(KEYCTL_READ, k, (unsigned long)buf, 4, 0));
	printf("read short buffer untouched: %s\n", buf[0] == '#' ? "yes" : "no");
	CHECK("read", keyctl(KEYCTL_READ, k, (unsigned long)buf, sizeof(buf), 0));
	printf("read text: %.5s\n", buf);
	CHECK("read bad pointer", keyctl(KEYCTL_READ, k, 8, 100, 0));

	memset(caps, 0xff, sizeof(caps));
	CHECK("capabilities", keyctl(KEYCTL_CAPABILITIES, (unsigned long)caps, sizeof(caps), 0, 0));
	printf("capabilities notifications: %s\n", caps[1] & 0x04 ? "yes" : "no");
	printf("capabilities tail cleared: %s\n", caps[2] == 0 && caps[3] == 0 ? "yes" : "no");
	memset(caps, 0xff, sizeof(caps));
	CHECK("capabilities one byte", keyctl(KEYCTL_CAPABILITIES, (unsigned long)caps, 1, 0, 0));
	printf("capabilities second byte untouched: %s\n", caps[1] == 0xff ? "yes" : "no");
	CHECK("capabilities NULL 0", keyctl(KEYCTL_CAPABILITIES, 0, 0, 0, 0));
	CHECK("capabilities bad pointer", keyctl(KEYCTL_CAPABILITIES, 8, 2, 0, 0));

	CHECK("keyctl dh_compute", keyctl(KEYCTL_DH_COMPUTE, 0, 0, 0, 0));
	CHECK("keyctl 99", keyctl(99, 0, 0, 0, 0));
	CHECK("keyctl -1", keyctl(-1, 0, 0, 0, 0));

	CHECK("search bad type", keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, 8, (unsigned long)"x", 0));
	CHECK("search unknown type", keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, (unsigned long)"nosuch",
					  (unsigned long)"x", 0));
	CHECK("search missing", keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, (unsigned long)"user",
				     (unsigned long)"missing", 0));
	long found = keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, (unsigned long)"user", (unsigned long)"strings", 0);
	printf("search finds the key: %s\n", found == k ? "yes" : "no");
	CHECK("request_key missing", syscall(__NR_request_key, "user", "missing", NULL, 0));
	CHECK("request_key unknown type", syscall(__NR_request_key, "nosuch", "missing", NULL, 0));
	CHECK("request_key type bad pointer", syscall(__NR_request_key, (char *)8, "missing", NULL, 0));
	found = syscall(__NR_request_key, "user", "strings", NULL, 0);
	printf("request_key finds the key: %s\n", found == k ? "yes" : "no");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	pipes();
	ioctls();
	watches();
	strings();
	return 0;
}
