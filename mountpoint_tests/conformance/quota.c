/* quota.c: key quotas of an ordinary user (maxkeys 200, maxbytes 20000 by default): how many
 * keys, how many bytes, what a keyring's links cost, and that root has no quota. Each probe runs
 * as a fresh uid in a session keyring of its own, so no probe sees another's charges (a quota is
 * given back only when the key is garbage collected, which is asynchronous: the largest payload
 * that fits is found by bisection, each try waited out). */
#include "wq.h"

static void read_sysctl(const char *name)
{
    char path[128], value[32] = "?";
    snprintf(path, sizeof(path), "/proc/sys/kernel/keys/%s", name);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, value, sizeof(value) - 1);
        value[n > 0 ? n : 0] = 0;
        value[strcspn(value, "\n")] = 0;
        close(fd);
    }
    out("%s: %s", name, value);
}

static key_serial_t own_session(void)
{
    long s = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    if (s < 0)
        out("join session: -1 %s", errname(errno));
    return (key_serial_t)s;
}

static void max_keys(void *arg)
{
    (void)arg;
    key_serial_t s = own_session();
    char desc[32];
    int n = 0;
    long r = 0;
    for (; n < 1000; n++) {
        snprintf(desc, sizeof(desc), "k%d", n);
        r = add_key("user", desc, "v", 1, s);
        if (r < 0)
            break;
    }
    out("keys added before failing: %d, then %s", n, r < 0 ? errname(errno) : "no failure");
    check("a keyring now", add_key("keyring", "one-more", NULL, 0, s));
    check("updating an existing key still works", add_key("user", "k0", "w", 1, s) < 0 ? -1 : 0);
}

/* A try that fails for its payload (EDQUOT) has already been charged for its description, and
 * a key unlinked from its only keyring still holds its charge: both give it back only when key
 * GC destroys the key, which on an SMP kernel is two RCU grace periods later (some 30 ms; see
 * lifetime.c), at once on a uniprocessor one. So a probe waits this long after each try, lest a
 * try pay for the ones before it (which would make the result depend on timing). */
#define QUOTA_SETTLE_US 200000

/* The largest payload (0..20000 bytes) with which a user key desc fits in s, by bisection
 * (waiting out each try); the key is left in s with that payload. -1: not even an empty one. */
static int largest_payload(const char *desc, key_serial_t s)
{
    static char payload[32767];
    memset(payload, 'p', sizeof(payload));
    int fits = -1, fails = 20001;
    while (fails - fits > 1) {
        int size = fits + (fails - fits) / 2;
        long k = add_key("user", desc, payload, size, s);
        if (k >= 0) {
            fits = size;
            keyctl(KEYCTL_UNLINK, k, s, 0, 0);
        } else if (errno == EDQUOT || errno == EINVAL) {  /* EINVAL: an empty user payload */
            fails = size;
        } else {
            out("payload %d: -1 %s", size, errname(errno));
            return -1;
        }
        usleep(QUOTA_SETTLE_US);
    }
    if (fits >= 0 && add_key("user", desc, payload, fits, s) < 0)
        out("payload %d again: -1 %s", fits, errname(errno));
    return fits;
}

static void max_bytes(void *arg)
{
    (void)arg;
    key_serial_t s = own_session();
    static char payload[32767];
    memset(payload, 'p', sizeof(payload));
    out("largest payload that fits, description \"big\": %d", largest_payload("big", s));
    check("one byte more in a second key", add_key("user", "b2", payload, 1, s));
    check("a key with an empty payload", add_key("user", "b3", payload, 0, s));
}

static void link_cost(void *arg)
{
    (void)arg;
    key_serial_t s = own_session();
    /* fill the byte quota to the last byte, then see what one more link costs */
    out("filled with a payload of %d", largest_payload("fill", s));
    key_serial_t r = add_key("keyring", "r", NULL, 0, s);
    out("a new keyring: %s", r < 0 ? errname(errno) : "ok");
    long k = add_key("user", "x", "", 0, s);
    out("a key with no payload: %s", k < 0 ? errname(errno) : "ok");
}

static void description_cost(void *arg)
{
    (void)arg;
    key_serial_t s = own_session();
    static char desc[4096];
    memset(desc, 'd', sizeof(desc) - 1);
    desc[sizeof(desc) - 1] = 0;
    out("largest payload that fits with a description of 4095 bytes: %d", largest_payload(desc, s));
}

int main(void)
{
    wq_start("quota");
    read_sysctl("maxkeys");
    read_sysctl("maxbytes");
    as_user(2001, 2001, max_keys, NULL);
    as_user(2002, 2002, max_bytes, NULL);
    as_user(2003, 2003, link_cost, NULL);
    as_user(2004, 2004, description_cost, NULL);
    /* root: no quota */
    static char payload[32767];
    int n = 0;
    char desc[32];
    for (; n < 300; n++) {
        snprintf(desc, sizeof(desc), "root%d", n);
        if (add_key("user", desc, payload, 32767, KEY_SPEC_SESSION_KEYRING) < 0)
            break;
    }
    out("root added %d keys of 32767 bytes (no quota)", n);
    return 0;
}
