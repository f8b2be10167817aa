/* Processes and threads under `wqfs run`:
 *   wq_proc exit N        exit with status N
 *   wq_proc signal        die of SIGKILL
 *   wq_proc fork          a child and an exec'd child share the session keyring and the queue
 *   wq_proc threads       threads: own thread keyrings, shared process and session keyrings
 *   wq_proc limit N       RLIMIT_NOFILE = N: how many watches the user may add (then EAGAIN)
 *   wq_proc construct MNT a watch on a key under construction waits for its instantiation
 *                         (the key is made through the mount: setfattr user.keyctl.request)
 */
#include "wq.h"
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#define KEYCTL_INSTANTIATE 12
#define KEYCTL_NEGATE 13

static long keyring_id(key_serial_t spec, int create)
{
	return keyctl(KEYCTL_GET_KEYRING_ID, spec, create, 0, 0);
}

/* The exec'd child: argv = exec-child FD SESSION */
static int exec_child(int fd, long session)
{
	int n = -1;
	printf("exec: same session keyring: %s\n", keyring_id(KEY_SPEC_SESSION_KEYRING, 0) == session ? "yes" : "no");
	printf("exec: fionread on the inherited queue: %d\n", ioctl(fd, FIONREAD, &n) == 0 ? n : -errno);
	if (add_key("user", "from-exec", "v", 1, KEY_SPEC_SESSION_KEYRING) < 0)
		die("exec add_key");
	return 0;
}

static int do_fork(char *self)
{
	int q[2], status;
	long session, process;
	pid_t pid;

	if (pipe2(q, O_NOTIFICATION_PIPE) < 0)
		die("pipe2");
	set_size(q[0], 32);
	session = keyring_id(KEY_SPEC_SESSION_KEYRING, 1);
	process = keyring_id(KEY_SPEC_PROCESS_KEYRING, 1);
	if (watch_key(KEY_SPEC_SESSION_KEYRING, q[0], 1) < 0)
		die("watch");
	fflush(stdout);

	pid = fork();
	if (pid == 0) {
		printf("child: same session keyring: %s\n",
		       keyring_id(KEY_SPEC_SESSION_KEYRING, 0) == session ? "yes" : "no");
		printf("child: own process keyring: %s\n",
		       keyring_id(KEY_SPEC_PROCESS_KEYRING, 0) < 0 && errno == ENOKEY ? "none yet" : "inherited");
		long mine = keyring_id(KEY_SPEC_PROCESS_KEYRING, 1);
		printf("child: new process keyring differs: %s\n", mine > 0 && mine != process ? "yes" : "no");
		if (add_key("user", "from-child", "v", 1, KEY_SPEC_SESSION_KEYRING) < 0)
			die("child add_key");
		exit(7);
	}
	waitpid(pid, &status, 0);
	printf("child status: %d\n", WEXITSTATUS(status));
	fflush(stdout);

	pid = fork();
	if (pid == 0) {
		char fd[16], ses[16];
		snprintf(fd, sizeof(fd), "%d", q[0]);
		snprintf(ses, sizeof(ses), "%ld", session);
		execl(self, self, "exec-child", fd, ses, (char *)NULL);
		die("execl");
	}
	waitpid(pid, &status, 0);
	printf("exec child status: %d\n", WEXITSTATUS(status));
	printf("session=%ld from-child=%ld from-exec=%ld\n", session,
	       keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, (unsigned long)"user", (unsigned long)"from-child", 0),
	       keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, (unsigned long)"user", (unsigned long)"from-exec", 0));
	consume_once(q[0], 433);
	return 0;
}

struct thread_result {
	int index;
	long thread_ring, process_ring, session_ring, key;
};

static pthread_barrier_t barrier;

static void *thread_main(void *arg)
{
	struct thread_result *r = arg;
	char name[16];

	pthread_barrier_wait(&barrier);   /* all at once: concurrent trapped syscalls */
	snprintf(name, sizeof(name), "t%d", r->index);
	r->thread_ring = keyring_id(KEY_SPEC_THREAD_KEYRING, 1);
	r->process_ring = keyring_id(KEY_SPEC_PROCESS_KEYRING, 1);
	r->session_ring = keyring_id(KEY_SPEC_SESSION_KEYRING, 1);
	r->key = add_key("user", name, "v", 1, KEY_SPEC_SESSION_KEYRING);
	return NULL;
}

static void *reader_main(void *arg)
{
	int fd = *(int *)arg;
	unsigned char buf[433];
	ssize_t n = read(fd, buf, 16);   /* blocks until the first record, and takes only it */
	printf("reader thread got %zd bytes\n", n);
	return NULL;
}

static int do_threads(void)
{
	enum { N = 4 };
	pthread_t threads[N], reader;
	struct thread_result results[N];
	int q[2], r[2], distinct = 1, shared = 1;
	long main_thread;

	if (pipe2(q, O_NOTIFICATION_PIPE) < 0 || pipe2(r, O_NOTIFICATION_PIPE) < 0)
		die("pipe2");
	set_size(q[0], 32);
	set_size(r[0], 32);
	if (watch_key(KEY_SPEC_SESSION_KEYRING, q[0], 1) < 0 || watch_key(KEY_SPEC_SESSION_KEYRING, r[0], 2) < 0)
		die("watch");
	main_thread = keyring_id(KEY_SPEC_THREAD_KEYRING, 1);
	pthread_create(&reader, NULL, reader_main, &r[0]);

	pthread_barrier_init(&barrier, NULL, N);
	for (int i = 0; i < N; i++) {
		results[i].index = i;
		pthread_create(&threads[i], NULL, thread_main, &results[i]);
	}
	for (int i = 0; i < N; i++)
		pthread_join(threads[i], NULL);
	pthread_join(reader, NULL);

	for (int i = 0; i < N; i++) {
		if (results[i].thread_ring <= 0 || results[i].thread_ring == main_thread || results[i].key <= 0)
			distinct = 0;
		for (int j = 0; j < i; j++)
			if (results[i].thread_ring == results[j].thread_ring)
				distinct = 0;
		if (results[i].process_ring != results[0].process_ring ||
		    results[i].session_ring != results[0].session_ring)
			shared = 0;
	}
	printf("thread keyrings distinct: %s\n", distinct ? "yes" : "no");
	printf("process and session keyrings shared: %s\n", shared ? "yes" : "no");
	printf("process keyring is the main thread's: %s\n",
	       keyring_id(KEY_SPEC_PROCESS_KEYRING, 0) == results[0].process_ring ? "yes" : "no");
	int n = -1;
	ioctl(q[0], FIONREAD, &n);
	printf("records: %d\n", n / 16);
	for (int i = 0; i < N; i++)
		printf("key t%d=%ld\n", i, results[i].key);
	return 0;
}

static int do_limit(int limit)
{
	struct rlimit rl = { limit, limit };
	int q[2], count = 0;
	key_serial_t ring;

	if (pipe2(q, O_NOTIFICATION_PIPE) < 0)
		die("pipe2");
	set_size(q[0], 32);
	ring = add_key("keyring", "limit", NULL, 0, KEY_SPEC_SESSION_KEYRING);
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit");
	for (int i = 0; i < limit + 5; i++) {
		char name[16];
		snprintf(name, sizeof(name), "w%d", i);
		key_serial_t k = add_key("user", name, "v", 1, ring);
		if (k < 0)
			die("add_key");
		if (watch_key(k, q[0], 1) < 0) {
			printf("watches=%d then %s\n", count, strerrorname_np(errno));
			return 0;
		}
		count++;
	}
	printf("watches=%d and no limit\n", count);
	return 0;
}

/* Wait (bounded) until the task sits in the keyctl syscall, i.e. the emulation holds its call. */
static int in_keyctl(pid_t pid)
{
	char path[64], buf[64];
	snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
	for (int i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "r");
		if (f) {
			int n = fread(buf, 1, sizeof(buf) - 1, f);
			fclose(f);
			buf[n > 0 ? n : 0] = 0;
			if (strncmp(buf, "250 ", 4) == 0)
				return 1;
		}
		usleep(10000);
	}
	return 0;
}

/* A child watches a key under construction; the parent completes the construction. */
static void watch_pending(int q, key_serial_t key, const char *label, int instantiate)
{
	int status;
	pid_t pid = fork();
	if (pid == 0) {
		errno = 0;
		long r = watch_key(key, q, 1);
		printf("%s: child watch: %s\n", label, r == 0 ? "0" : strerrorname_np(errno));
		exit(0);
	}
	printf("%s: child waits in keyctl: %s\n", label, in_keyctl(pid) ? "yes" : "no");
	if (instantiate)
		CHECK("instantiate", keyctl(KEYCTL_INSTANTIATE, key, (unsigned long)"made", 4, 0));
	else
		CHECK("negate", keyctl(KEYCTL_NEGATE, key, 60, 0, 0));
	waitpid(pid, &status, 0);
}

static key_serial_t request_through_mount(const char *mnt, key_serial_t ring, const char *what)
{
	char path[4096];
	key_serial_t members[16];
	snprintf(path, sizeof(path), "%s/keys/%d", mnt, ring);
	if (setxattr(path, "user.keyctl.request", what, strlen(what), 0) < 0)
		die("setxattr user.keyctl.request");
	long n = keyctl(KEYCTL_READ, ring, (unsigned long)members, sizeof(members), 0);
	if (n < 4)
		die("read ring");
	return members[n / 4 - 1];
}

static int do_construct(const char *mnt)
{
	int q[2];
	key_serial_t ring, pending, negated;

	if (pipe2(q, O_NOTIFICATION_PIPE) < 0)
		die("pipe2");
	set_size(q[0], 32);
	ring = add_key("keyring", "construct", NULL, 0, KEY_SPEC_SESSION_KEYRING);
	if (watch_key(ring, q[0], 2) < 0)
		die("watch ring");

	pending = request_through_mount(mnt, ring, "user:pending");
	negated = request_through_mount(mnt, ring, "user:negated");
	printf("ring=%d pending=%d negated=%d\n", ring, pending, negated);
	consume_once(q[0], 433);  /* the two links, posted by the file operations */

	watch_pending(q[0], pending, "instantiated", 1);
	CHECK("update", keyctl(KEYCTL_UPDATE, pending, (unsigned long)"again", 5, 0));
	consume_once(q[0], 433);  /* only the update: the watch began after the instantiation */

	watch_pending(q[0], negated, "negated", 0);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && strcmp(argv[1], "exit") == 0)
		return atoi(argv[2]);
	if (argc >= 2 && strcmp(argv[1], "signal") == 0) {
		fflush(stdout);
		raise(SIGKILL);
	}
	if (argc >= 2 && strcmp(argv[1], "fork") == 0)
		return do_fork(argv[0]);
	if (argc >= 4 && strcmp(argv[1], "exec-child") == 0)
		return exec_child(atoi(argv[2]), atol(argv[3]));
	if (argc >= 2 && strcmp(argv[1], "threads") == 0)
		return do_threads();
	if (argc >= 3 && strcmp(argv[1], "limit") == 0)
		return do_limit(atoi(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "construct") == 0)
		return do_construct(argv[2]);
	fprintf(stderr, "usage: wq_proc exit N | signal | fork | threads | limit N | construct MNT\n");
	return 2;
}
