/* persistent.c: KEYCTL_GET_PERSISTENT (CONFIG_PERSISTENT_KEYRINGS): the per-uid keyring it
 * returns and links into a keyring, how describe and /proc/keys show it (its expiry, refreshed by
 * each get), who may get whose (root any uid's, an ordinary uid only its own: EPERM), what its
 * owner may not do with it (no SETATTR: set_timeout, setperm), destinations it refuses (no
 * WRITE: EACCES; not a keyring: ENOTDIR), and the records a watch on the destination reads.
 *
 * The lines read from /proc/keys and /proc/key-users print only with WQ_PROC set
 * (`scripts/kernel-oracle run --env WQ_PROC=1 ...`): `wqfs run` does not serve those files, so
 * the recorded outputs leave them out (on Linux 6.1 the expiry shows 3d, 2d a second later, and 3d again after a get). */
#include "wq.h"

#ifndef KEYCTL_GET_PERSISTENT
#define KEYCTL_GET_PERSISTENT 22
#endif

static int q;

static long get_persistent(long uid, key_serial_t dest)
{
    return keyctl(KEYCTL_GET_PERSISTENT, (unsigned long)uid, (unsigned long)(long)dest, 0, 0);
}

static void describe(const char *label, key_serial_t k)
{
    char d[256];
    long r = keyctl(KEYCTL_DESCRIBE, k, (unsigned long)d, sizeof(d), 0);
    if (r < 0)
        out("%s: -1 %s", label, errname(errno));
    else
        out("%s: %s", label, d);
}

/* /proc/keys' expiry column (the fourth) for k, into buf: "3d", "perm", or why there is none.
 * proc_keys_show prints whole days for 1 to 7 days left, rounded down, so a key set to expire
 * in 3 days reads "3d" only within the second it was set in: see second_start(). */
static const char *proc_keys_expiry(key_serial_t k, char *buf, size_t size)
{
    const char *line = proc_keys_line(k);
    if (!line) {
        snprintf(buf, size, "open /proc/keys: %s", errname(errno));
        return buf;
    }
    if (*line) {
        char serial[16], flags[16], usage[16], expiry[16];
        if (sscanf(line, "%15s %15s %15s %15s", serial, flags, usage, expiry) == 4)
            snprintf(buf, size, "%s", expiry);
        else
            snprintf(buf, size, "unparsed line");
        return buf;
    }
    snprintf(buf, size, "not in /proc/keys");
    return buf;
}

/* Sleep until 20 ms into the next second of CLOCK_REALTIME, so that what follows (a few
 * syscalls) happens within one second of ktime_get_real_seconds(), as the expiry is reckoned. */
static void second_start(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long ns = 1000000000L - t.tv_nsec + 20000000L;
    struct timespec d = { ns / 1000000000L, ns % 1000000000L };
    nanosleep(&d, NULL);
}

static void show_expiry(const char *label, key_serial_t k)
{
    if (!getenv("WQ_PROC"))
        return;
    char e[64];
    out("%s: %s", label, proc_keys_expiry(k, e, sizeof(e)));
}

static void as_1000(void *arg)
{
    (void)arg;
    int fds[2];
    int q2 = wq_pipe(fds, 16, O_NONBLOCK);
    long s = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    name_key((key_serial_t)s, "S1000");
    out("uid 1000: join a session keyring of its own: %s", s < 0 ? errname(errno) : "S1000");
    check("uid 1000: watch S1000 tag 2", watch_key((key_serial_t)s, q2, 2));
    second_start();
    key_serial_t P = check_key("uid 1000: get_persistent -1 @s", get_persistent(-1, KEY_SPEC_SESSION_KEYRING), "P1000");
    show_expiry("uid 1000: /proc/keys expiry of P1000", P);
    describe("uid 1000: describe P1000", P);
    drain("uid 1000: records", q2);
    check_same("uid 1000: get_persistent 1000 @s (its own uid)", get_persistent(1000, KEY_SPEC_SESSION_KEYRING));
    drain("uid 1000: records", q2);
    check_same("uid 1000: get_persistent 0 @s (root's)", get_persistent(0, KEY_SPEC_SESSION_KEYRING));
    check_same("uid 1000: get_persistent 1234 @s (another's)", get_persistent(1234, KEY_SPEC_SESSION_KEYRING));
    check_same("uid 1000: get_persistent 1234 into keyring 0 (the uid is checked first)", get_persistent(1234, 0));
    drain("uid 1000: records after the refused gets", q2);
    check("uid 1000: set_timeout P1000 100", keyctl(KEYCTL_SET_TIMEOUT, P, 100, 0, 0));
    check("uid 1000: setperm P1000 3f3f0000", keyctl(KEYCTL_SETPERM, P, 0x3f3f0000, 0, 0));
    char d[64];
    check("uid 1000: read P1000 (a keyring: its list of serials)", keyctl(KEYCTL_READ, P, (unsigned long)d, sizeof(d), 0));
    check("uid 1000: unlink P1000 from S1000", keyctl(KEYCTL_UNLINK, P, (key_serial_t)s, 0, 0));
    drain("uid 1000: records after the unlink", q2);
    check_same("uid 1000: get_persistent -1 @s again (the register kept it)", get_persistent(-1, KEY_SPEC_SESSION_KEYRING));
    drain("uid 1000: records", q2);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    int fds[2];
    key_serial_t S = wq_start("persistent");
    q = wq_pipe(fds, 64, O_NONBLOCK);
    check("watch S tag 1", watch_key(S, q, 1));

    /* ---- root's own */
    second_start();
    key_serial_t P0 = check_key("get_persistent -1 @s", get_persistent(-1, KEY_SPEC_SESSION_KEYRING), "P0");
    show_expiry("/proc/keys expiry of P0 at once", P0);
    describe("describe P0", P0);
    drain("records after the first get", q);
    check_same("get_persistent -1 @s again", get_persistent(-1, KEY_SPEC_SESSION_KEYRING));
    drain("records after the second get", q);
    check_same("get_persistent 0 @s (root's uid by number)", get_persistent(0, KEY_SPEC_SESSION_KEYRING));
    drain("records after the third get", q);
    check("watch P0 tag 3", watch_key(P0, q, 3));
    second_start();
    show_expiry("/proc/keys expiry of P0 in the next second", P0);
    check_same("get_persistent -1 @s (refreshes the expiry)", get_persistent(-1, KEY_SPEC_SESSION_KEYRING));
    show_expiry("/proc/keys expiry of P0 after that get", P0);
    drain("records (P0's watch sees no setattr for the refresh)", q);

    /* ---- its owner may not change its attributes */
    check("set_timeout P0 100", keyctl(KEYCTL_SET_TIMEOUT, P0, 100, 0, 0));
    check("set_timeout P0 0", keyctl(KEYCTL_SET_TIMEOUT, P0, 0, 0, 0));
    check("setperm P0 3f3f0000", keyctl(KEYCTL_SETPERM, P0, 0x3f3f0000, 0, 0));
    check("chown P0 0 0", keyctl(KEYCTL_CHOWN, P0, 0, 0, 0));
    show_expiry("/proc/keys expiry of P0 after them", P0);
    drain("records after the refused changes", q);

    /* ---- another uid's, as root */
    second_start();
    key_serial_t P1234 = check_key("get_persistent 1234 @s", get_persistent(1234, KEY_SPEC_SESSION_KEYRING), "P1234");
    show_expiry("/proc/keys expiry of P1234", P1234);
    describe("describe P1234", P1234);
    drain("records after getting P1234", q);
    check("set_timeout P1234 100 (root, not its owner)", keyctl(KEYCTL_SET_TIMEOUT, P1234, 100, 0, 0));
    key_serial_t P2 = check_key("get_persistent -2 @s (uid 4294967294)", get_persistent(-2, KEY_SPEC_SESSION_KEYRING), "P-2");
    describe("describe P-2", P2);
    drain("records", q);

    /* ---- destinations */
    key_serial_t NW = check_key("add_key keyring nw @s", add_key("keyring", "nw", NULL, 0, S), "NW");
    check("setperm NW 3b3b0000 (all but WRITE)", keyctl(KEYCTL_SETPERM, NW, 0x3b3b0000, 0, 0));
    check("watch NW tag 4", watch_key(NW, q, 4));
    drain("records after the setup", q);
    check_same("get_persistent -1 NW (no WRITE)", get_persistent(-1, NW));
    key_serial_t K = check_key("add_key user k @s", add_key("user", "k", "v", 1, S), "K");
    check_same("get_persistent -1 K (a user key)", get_persistent(-1, K));
    check_same("get_persistent -1 0 (no keyring 0)", get_persistent(-1, 0));
    check_same("get_persistent -1 12345678 (no such key)", get_persistent(-1, 12345678));
    check_same("get_persistent -1 @t (created on demand)", get_persistent(-1, KEY_SPEC_THREAD_KEYRING));
    drain("records after the gets into other destinations", q);

    /* ---- an ordinary uid */
    as_user(1000, 1000, as_1000, NULL);
    close(fds[0]);
    close(fds[1]);
    return 0;
}
