/* quota.c: key quotas of an ordinary user (maxkeys 200, maxbytes 20000 by default): how many
 * keys, how many bytes, what a keyring's links cost, and that root has no quota. Each probe runs
 * as a fresh uid in a session keyring of its own, so no probe sees another's charges (a quota is
 * given back only when the key is garbage collected, which is asynchronous). */
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

static void max_bytes(void *arg)
{
    (void)arg;
    key_serial_t s = own_session();
    static char payload[32767];
    memset(payload, 'p', sizeof(payload));
    int size = 20000;
    while (size > 0 && add_key("user", "big", payload, size, s) < 0) {
        if (errno != EDQUOT) {
            out("payload %d: -1 %s", size, errname(errno));
            return;
        }
        size--;
    }
    out("largest payload that fits, description \"big\": %d", size);
    check("one byte more in a second key", add_key("user", "b2", payload, 1, s));
    check("a key with an empty payload", add_key("user", "b3", payload, 0, s));
}

static void link_cost(void *arg)
{
    (void)arg;
    key_serial_t s = own_session();
    static char payload[32767];
    memset(payload, 'p', sizeof(payload));
    /* fill the byte quota to the last byte, then see what one more link costs */
    int size = 20000;
    while (size > 0 && add_key("user", "fill", payload, size, s) < 0)
        size--;
    out("filled with a payload of %d", size);
    key_serial_t r = add_key("keyring", "r", NULL, 0, s);
    out("a new keyring: %s", r < 0 ? errname(errno) : "ok");
    long k = add_key("user", "x", "", 0, s);
    out("a key with no payload: %s", k < 0 ? errname(errno) : "ok");
}

static void description_cost(void *arg)
{
    (void)arg;
    key_serial_t s = own_session();
    static char payload[32767], desc[4096];
    memset(payload, 'p', sizeof(payload));
    memset(desc, 'd', sizeof(desc) - 1);
    desc[sizeof(desc) - 1] = 0;
    int size = 20000;
    while (size > 0 && add_key("user", desc, payload, size, s) < 0)
        size--;
    out("largest payload that fits with a description of 4095 bytes: %d", size);
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
