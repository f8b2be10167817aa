/* bigkey.c: the big_key type (CONFIG_BIG_KEYS): payloads of 1 byte to 1 MiB - 1 (add_key's own
 * limit) and what it refuses (1 MiB: add_key's EINVAL; empty: big_key_preparse's), what is read
 * back (length and checksum), the quota each key uses (an arbitrary 16 bytes whatever the size,
 * as /proc/key-users shows), updates (KEYCTL_UPDATE up to a page; through add_key up to 1 MiB - 1,
 * which reserves the whole payload first), revoke (the 16 bytes given back at once), describe and
 * /proc/keys' description ("buff" or "file"), and the records a watch reads. All of it as a
 * fresh uid in a session keyring of its own, so that the quota's numbers are its keys' alone.
 *
 * The lines read from /proc/keys and /proc/key-users print only with WQ_PROC set
 * (`scripts/kernel-oracle run --env WQ_PROC=1 ...`): `wqfs run` does not serve those files, so
 * the recorded outputs leave them out (on Linux 6.1 each big key costs its description, its NUL and 16 bytes, and 4 more
 * for its link; revoke gives the 16 back at once; /proc/keys shows [buff] for 100 bytes and [file]
 * from 5000 up). */
#include "wq.h"

#define UID 3001
#define MAX (1024 * 1024)

static int q;
static key_serial_t S;
static unsigned char payload[MAX + 1], back[MAX + 1];

/* The payload of size bytes for the seed: a pattern that differs from one key to the next. */
static void fill(size_t size, unsigned seed)
{
    for (size_t i = 0; i < size; i++)
        payload[i] = (unsigned char)(i * 131 + (i >> 8) * 7 + seed);
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* The quota of UID as /proc/key-users shows it, once key GC has had time to give back what
 * destroyed keys held (two RCU grace periods on SMP: see quota.c). */
static void quota(const char *label)
{
    usleep(200000);
    if (!getenv("WQ_PROC"))
        return;
    char *all = slurp("/proc/key-users");
    if (!all) {
        out("%s: open /proc/key-users: %s", label, errname(errno));
        return;
    }
    for (char *line = all; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        unsigned uid;
        int usage, nkeys, nikeys, qnkeys, maxkeys, qnbytes, maxbytes;
        if (sscanf(line, " %u: %d %d/%d %d/%d %d/%d", &uid, &usage, &nkeys, &nikeys, &qnkeys, &maxkeys,
                   &qnbytes, &maxbytes) == 8 && uid == UID) {
            out("%s: nkeys %d nikeys %d qnkeys %d/%d qnbytes %d/%d", label, nkeys, nikeys, qnkeys, maxkeys,
                qnbytes, maxbytes);
            return;
        }
        line = next;
    }
    out("%s: uid %d not in /proc/key-users", label, UID);
}

/* /proc/keys' last column for k: the type's describe ("b5000: 5000 [file]"). */
static void proc_describe(const char *label, key_serial_t k)
{
    if (!getenv("WQ_PROC"))
        return;
    const char *line = proc_keys_line(k);
    if (!line) {
        out("%s: open /proc/keys: %s", label, errname(errno));
        return;
    }
    if (*line) {
        char f[8][32];
        int end = 0;
        if (sscanf(line, "%31s %31s %31s %31s %31s %31s %31s %31s %n", f[0], f[1], f[2], f[3], f[4],
                   f[5], f[6], f[7], &end) >= 8 && end > 0)
            out("%s: flags %s, %s", label, f[1], line + end);
        else
            out("%s: unparsed line", label);
        return;
    }
    out("%s: not in /proc/keys", label);
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

/* Read k back: its length (a NULL buffer), then the payload, compared with payload[0..size). */
static void read_back(const char *name, key_serial_t k, size_t size)
{
    char label[128];
    snprintf(label, sizeof(label), "%s: read with no buffer", name);
    check(label, keyctl(KEYCTL_READ, k, 0, 0, 0));
    snprintf(label, sizeof(label), "%s: read with a buffer one byte short", name);
    memset(back, 0, size ? size : 1);
    long r = keyctl(KEYCTL_READ, k, (unsigned long)back, size ? size - 1 : 0, 0);
    if (r < 0)
        out("%s: -1 %s", label, errname(errno));
    else
        out("%s: %ld, first byte %s", label, r, size && back[0] == 0 ? "untouched" : "written");
    memset(back, 0, sizeof(back));
    r = keyctl(KEYCTL_READ, k, (unsigned long)back, sizeof(back), 0);
    if (r < 0) {
        out("%s: read: -1 %s", name, errname(errno));
        return;
    }
    out("%s: read: %ld bytes, fnv1a %08x, %s", name, r, fnv1a(back, r),
        (size_t)r == size && memcmp(back, payload, size) == 0 ? "the payload" : "NOT the payload");
}

static key_serial_t add_big(size_t size, unsigned seed, const char *name, const char *desc)
{
    char label[128];
    fill(size, seed);
    snprintf(label, sizeof(label), "add_key big_key %s (%zu bytes) @s", desc, size);
    key_serial_t k = check_key(label, add_key("big_key", desc, payload, size, S), name);
    snprintf(label, sizeof(label), "records after adding %s", name);
    drain(label, q);
    if (k < 0)
        return k;
    read_back(name, k, size);
    snprintf(label, sizeof(label), "describe %s", name);
    describe(label, k);
    snprintf(label, sizeof(label), "/proc/keys %s", name);
    proc_describe(label, k);
    snprintf(label, sizeof(label), "quota after adding %s", name);
    quota(label);
    return k;
}

static void as_uid(void *arg)
{
    (void)arg;
    int fds[2];
    q = wq_pipe(fds, 64, O_NONBLOCK);
    long s = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    S = (key_serial_t)s;
    name_key(S, "S");
    out("uid %d: join a session keyring of its own: %s", UID, s < 0 ? errname(errno) : "S");
    check("watch S tag 1", watch_key(S, q, 1));
    quota("quota with only S");

    /* ---- sizes */
    key_serial_t B1 = add_big(1, 1, "B1", "b1");
    key_serial_t B100 = add_big(100, 2, "B100", "b100");
    key_serial_t B5000 = add_big(5000, 3, "B5000", "b5000");
    add_big(MAX - 1, 4, "B1048575", "b1048575");
    fill(MAX, 5);
    check("add_key big_key b1048576 (1048576 bytes) @s", add_key("big_key", "b1048576", payload, MAX, S));
    check("add_key big_key b0 (0 bytes) @s", add_key("big_key", "b0", payload, 0, S));
    check("add_key big_key b0 (0 bytes, NULL) @s", add_key("big_key", "b0", NULL, 0, S));
    drain("records after the refused adds", q);
    quota("quota after the refused adds");

    /* ---- KEYCTL_UPDATE: up to a page */
    check("watch B100 tag 2", watch_key(B100, q, 2));
    fill(4096, 6);
    check("update B100 with 4096 bytes", keyctl(KEYCTL_UPDATE, B100, (unsigned long)payload, 4096, 0));
    drain("records after the update", q);
    read_back("B100", B100, 4096);
    proc_describe("/proc/keys B100", B100);
    quota("quota after the update");
    fill(4097, 7);
    check("update B100 with 4097 bytes", keyctl(KEYCTL_UPDATE, B100, (unsigned long)payload, 4097, 0));
    check("update B100 with 0 bytes", keyctl(KEYCTL_UPDATE, B100, 0, 0, 0));
    drain("records after the refused updates", q);
    fill(4096, 6);
    read_back("B100", B100, 4096);
    quota("quota after the refused updates");

    /* ---- add_key of an existing description: an update, up to 1 MiB - 1 */
    fill(8192, 8);
    check_same("add_key big_key b100 (8192 bytes) @s again", add_key("big_key", "b100", payload, 8192, S));
    drain("records after that", q);
    read_back("B100", B100, 8192);
    quota("quota after that");
    check("watch B1 tag 3", watch_key(B1, q, 3));
    fill(30000, 9);
    check_same("add_key big_key b1 (30000 bytes: more than the quota) @s again",
               add_key("big_key", "b1", payload, 30000, S));
    drain("records after that", q);
    fill(1, 1);
    read_back("B1", B1, 1);
    quota("quota after that");
    fill(30000, 10);
    key_serial_t B30000 = check_key("add_key big_key b30000 (30000 bytes, a new key) @s",
                                    add_key("big_key", "b30000", payload, 30000, S), "B30000");
    drain("records after that", q);
    read_back("B30000", B30000, 30000);
    quota("quota after that");

    /* ---- revoke */
    check("watch B5000 tag 4", watch_key(B5000, q, 4));
    check("revoke B5000", keyctl(KEYCTL_REVOKE, B5000, 0, 0, 0));
    drain("records after the revoke", q);
    quota("quota after the revoke");
    check("read B5000", keyctl(KEYCTL_READ, B5000, (unsigned long)back, sizeof(back), 0));
    describe("describe B5000", B5000);
    proc_describe("/proc/keys B5000", B5000);
    check("update B5000", keyctl(KEYCTL_UPDATE, B5000, (unsigned long)"x", 1, 0));
    check("unlink B5000 from S", keyctl(KEYCTL_UNLINK, B5000, S, 0, 0));
    settle("records after the unlink (then its destruction)", q, 1, 1);
    quota("quota after B5000's destruction");
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    wq_start("bigkey");
    as_user(UID, UID, as_uid, NULL);
    return 0;
}
