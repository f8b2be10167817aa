/* lifetime.c: when a key that nothing references any more dies, observed without waiting it away.
 *
 * The last link of a key is dropped in an RCU callback (assoc_array_apply_edit -> call_rcu ->
 * keyring_free_object -> key_put), and key GC, once the count is 0, takes the key out of the
 * serial tree and posts its REMOVAL only after synchronize_rcu(). So for a grace period after an
 * unlink, clear or keyring revoke has left a key unreferenced, the key is alive: it is found by
 * serial and can be linked again; then it is gone by serial; then its REMOVAL is queued. An
 * invalidated key is refused by lookups at once (ENOKEY), but GC unlinks it the same way
 * (keyring_gc), so its REMOVAL waits as long. How long depends on the RCU flavour (Tree RCU on
 * SMP: a grace period each, some ms; Tiny RCU on a uniprocessor build: none), which is the point:
 * each check prints one deterministic line, and times are printed as coarse buckets (bucket()).
 *
 * With WQ_MEASURE=N in the environment (scripts/kernel-oracle run --env WQ_MEASURE=N, or
 * WQ_MEASURE=N wqfs run -- lifetime), it instead repeats each case N times and prints the raw
 * times in ms with their median, minimum and maximum: not deterministic, never recorded. */
#include "wq.h"

static int q;
static key_serial_t S;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Coarse enough that scheduling noise does not move a time across a boundary: a grace period
 * (a few jiffies) falls in the second bucket, an immediate effect in the first. */
static const char *bucket(double ms)
{
    if (ms < 5)
        return "<5 ms";
    if (ms < 100)
        return "5-100 ms";
    if (ms < 1000)
        return "100 ms-1 s";
    return ">1 s";
}

/* KEYCTL_DESCRIBE: "user;0;0;3f010000;k", or an error name */
static const char *describe(key_serial_t k)
{
    static char buf[256];
    long r = keyctl(KEYCTL_DESCRIBE, k, (unsigned long)buf, sizeof(buf), 0);
    if (r < 0)
        return errname(errno);
    buf[sizeof(buf) - 1] = 0;
    return buf;
}

/* Records read so far in one case, described and appended to line. */
struct seen {
    char line[2048];
    size_t used;
    int removal;       /* a REMOVAL of the key was read */
    double removal_at; /* when (now_ms()) */
};

/* Describe n bytes of records into s->line; note whether a REMOVAL of k is among them. */
static void absorb(struct seen *s, key_serial_t k, const unsigned char *buf, size_t n)
{
    for (size_t pos = 0; pos < n;) {
        char d[160];
        size_t len = describe_record(buf + pos, n - pos, d, sizeof(d));
        s->used += snprintf(s->line + s->used, s->used < sizeof(s->line) ? sizeof(s->line) - s->used : 0,
                            " %s", d);
        uint32_t w0;
        memcpy(&w0, buf + pos, 4);
        if ((w0 & 0xffffff) == WATCH_TYPE_META && (w0 >> 24) == WATCH_META_REMOVAL_NOTIFICATION &&
            len >= 16) {
            uint64_t id;
            memcpy(&id, buf + pos + 8, 8);
            if ((key_serial_t)id == k && !s->removal) {
                s->removal = 1;
                s->removal_at = now_ms();
            }
        }
        if (!len)
            break;
        pos += len;
    }
}

/* Read what is queued (q is O_NONBLOCK) into s. */
static void take(struct seen *s, key_serial_t k)
{
    static unsigned char buf[4096];
    ssize_t n;
    while ((n = read(q, buf, sizeof(buf))) > 0)
        absorb(s, k, buf, n);
}

/* One read, no waiting: "read(4096) = N [records]" (as read_show) into line; a REMOVAL of k in it
 * counts for s. */
static void read_once(char *line, size_t size, key_serial_t k, struct seen *s)
{
    static unsigned char buf[4096];
    struct seen once = { "", 0, 0, 0 };
    ssize_t n = read(q, buf, sizeof(buf));
    if (n < 0) {
        snprintf(line, size, "read(%zu) = -1 %s", sizeof(buf), errname(errno));
        return;
    }
    absorb(&once, k, buf, n);
    snprintf(line, size, "read(%zu) = %zd%s", sizeof(buf), n, once.line);
    if (once.removal && !s->removal) {
        s->removal = 1;
        s->removal_at = once.removal_at;
    }
}

struct timing {
    double gone;     /* ms from the operation until k was no longer found by serial (-1: never) */
    double removal;  /* ms until its REMOVAL was read (-1: not within 10 s) */
};

/* After op (started at t0): every millisecond, look k up by serial and read the queue, until
 * the REMOVAL of k has been read (bounded at 10 s). */
static struct timing follow(key_serial_t k, double t0, struct seen *s)
{
    struct timing t = { -1, -1 };
    for (;;) {
        double now = now_ms();
        if (t.gone < 0 && !s->removal) {
            char d[256];
            long r = keyctl(KEYCTL_DESCRIBE, k, (unsigned long)d, sizeof(d), 0);
            if (r < 0 && errno == ENOKEY)
                t.gone = now - t0;
        }
        take(s, k);
        if (s->removal) {
            t.removal = s->removal_at - t0;
            if (t.gone < 0 || t.gone > t.removal)
                t.gone = t.removal;
            return t;
        }
        if (now - t0 > 10000)
            return t;
        wait_readable(q, 1);
    }
}

enum op { OP_UNLINK, OP_CLEAR, OP_INVALIDATE, OP_REVOKE_KEYRING };
static const char *op_names[] = {  /* %1$s: the key's name, %2$s: its keyring's */
    "unlink %1$s from S (its only link)", "clear %2$s (%1$s's only keyring)", "invalidate %1$s",
    "revoke %2$s (%1$s's only keyring)",
};
static const char *op_tags[] = { "unlink", "clear", "invalidate", "revoke" };

/* Unlink a keyring from S and wait for its REMOVAL, so that nothing of it is left to come. */
static void bury(key_serial_t R)
{
    struct seen s = { "", 0, 0, 0 };
    double t0 = now_ms();
    keyctl(KEYCTL_UNLINK, R, S, 0, 0);
    follow(R, t0, &s);
}

/* One key K, unreferenced by op: K in S (unlink, invalidate) or in a keyring R of S (clear,
 * revoke), K watched with tag 2 and R with tag 3. verbose: print every step (the checks),
 * else only time it (measurement mode). */
static struct timing one_case(enum op op, int i, int verbose)
{
    struct seen s = { "", 0, 0, 0 };
    char label[200], desc[32], kn[16], rn[16];
    const char *tag = op_tags[op];
    key_serial_t R = S;
    snprintf(kn, sizeof(kn), "K%d", i);
    snprintf(rn, sizeof(rn), "R%d", i);
    if (op == OP_CLEAR || op == OP_REVOKE_KEYRING) {
        snprintf(desc, sizeof(desc), "r%d", i);
        snprintf(label, sizeof(label), "%s: add_key keyring %s @s", tag, desc);
        R = (key_serial_t)add_key("keyring", desc, NULL, 0, S);
        if (verbose)
            check_key(label, R, rn);
        watch_key(R, q, 3);
    }
    snprintf(desc, sizeof(desc), "k%d", i);
    snprintf(label, sizeof(label), "%s: add_key user %s %s", tag, desc, R == S ? "@s" : rn);
    key_serial_t K = (key_serial_t)add_key("user", desc, "v", 1, R);
    if (verbose)
        check_key(label, K, kn);
    /* LINK for everyone, so that a link after the operation (K is no longer possessed then)
     * fails only for want of the key */
    snprintf(label, sizeof(label), "%s: setperm %s 3f3f0000", tag, kn);
    if (verbose)
        check(label, keyctl(KEYCTL_SETPERM, K, 0x3f3f0000, 0, 0));
    else
        keyctl(KEYCTL_SETPERM, K, 0x3f3f0000, 0, 0);
    snprintf(label, sizeof(label), "%s: watch %s tag 2", tag, kn);
    if (verbose)
        check(label, watch_key(K, q, 2));
    else
        watch_key(K, q, 2);
    take(&s, K);  /* what the setup posted */
    s.used = 0;
    s.line[0] = 0;

    /* The operation, then at once one read and one lookup, then the wait for the REMOVAL; all
     * printed only after them, since writing to a (virtual) serial console takes long enough
     * for a tick to pass. */
    char read_line[2200], described[256];
    double t0 = now_ms();
    long r = -1;
    switch (op) {
    case OP_UNLINK: r = keyctl(KEYCTL_UNLINK, K, S, 0, 0); break;
    case OP_CLEAR: r = keyctl(KEYCTL_CLEAR, R, 0, 0, 0); break;
    case OP_INVALIDATE: r = keyctl(KEYCTL_INVALIDATE, K, 0, 0, 0); break;
    case OP_REVOKE_KEYRING: r = keyctl(KEYCTL_REVOKE, R, 0, 0, 0); break;
    }
    int err = errno;
    if (verbose) {
        read_once(read_line, sizeof(read_line), K, &s);
        snprintf(described, sizeof(described), "%s", describe(K));
    }
    struct timing t = follow(K, t0, &s);
    if (verbose) {
        char what[100];
        snprintf(what, sizeof(what), op_names[op], kn, rn);
        snprintf(label, sizeof(label), "%s: %s", tag, what);
        errno = err;
        check(label, r);
        out("%s: read at once: %s", tag, read_line);
        out("%s: describe %s at once: %s", tag, kn, described);
        out("%s: read after that:%s", tag, s.used ? s.line : " none");
        if (t.removal < 0) {
            out("%s: no REMOVAL of %s within 10 s", tag, kn);
        } else {
            out("%s: %s not found by serial: %s after the operation", tag, kn, bucket(t.gone));
            out("%s: REMOVAL of %s read: %s after the operation", tag, kn, bucket(t.removal));
        }
        out("%s: describe %s after its REMOVAL: %s", tag, kn, describe(K));
        out("%s: link %s into S after its REMOVAL: %s", tag, kn,
            keyctl(KEYCTL_LINK, K, S, 0, 0) < 0 ? errname(errno) : "0");
    }
    if (R != S)
        bury(R);
    return t;
}

/* Linking a key again right after its last unlink keeps it: the unlink's reference is still
 * held until the grace period ends. */
static void relink(void)
{
    struct seen s = { "", 0, 0, 0 };
    key_serial_t K = check_key("relink: add_key user again @s", add_key("user", "again", "v", 1, S), "K5");
    check("relink: setperm K5 3f3f0000 (LINK for the user: K5 is not possessed once unlinked)",
          keyctl(KEYCTL_SETPERM, K, 0x3f3f0000, 0, 0));
    check("relink: watch K5 tag 4", watch_key(K, q, 4));
    drain("relink: after add_key", q);
    long unlinked = keyctl(KEYCTL_UNLINK, K, S, 0, 0);
    int unlink_err = errno;
    long linked = keyctl(KEYCTL_LINK, K, S, 0, 0);  /* before any printing (see one_case) */
    int link_err = errno;
    errno = unlink_err;
    check("relink: unlink K5 from S (its only link)", unlinked);
    errno = link_err;
    check("relink: link K5 into S at once", linked);
    drain("relink: read", q);
    out("relink: no REMOVAL of K5 within 500 ms: %s", wait_readable(q, 500) ? "no (readable)" : "yes");
    out("relink: describe K5: %s", describe(K));
    double t0 = now_ms();
    unlinked = keyctl(KEYCTL_UNLINK, K, S, 0, 0);
    unlink_err = errno;
    struct timing t = follow(K, t0, &s);
    errno = unlink_err;
    check("relink: unlink K5 from S again", unlinked);
    out("relink: read after that:%s", s.used ? s.line : " none");
    if (t.removal < 0)
        out("relink: no REMOVAL of K5 within 10 s");
    else
        out("relink: REMOVAL of K5 read: %s after the unlink", bucket(t.removal));
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void summary(const char *what, double *v, int n)
{
    char raw[4096];
    size_t used = 0;
    raw[0] = 0;
    for (int i = 0; i < n; i++)
        used += snprintf(raw + used, used < sizeof(raw) ? sizeof(raw) - used : 0, " %.1f", v[i]);
    if (n == 0) {
        out("measure %s: no REMOVAL within 10 s", what);
        return;
    }
    qsort(v, n, sizeof(v[0]), cmpd);
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    out("measure %s: median %.1f ms, min %.1f, max %.1f, n=%d; raw:%s", what, median, v[0], v[n - 1], n, raw);
}

static void measure(int n)
{
    static double gone[256], removal[256];
    if (n > 256)
        n = 256;
    for (int op = 0; op <= OP_REVOKE_KEYRING; op++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            struct timing t = one_case(op, 100 + i, 0);
            if (t.removal < 0)
                continue;
            gone[m] = t.gone;
            removal[m] = t.removal;
            m++;
        }
        char what[128];
        snprintf(what, sizeof(what), "%s: not found by serial", op_tags[op]);
        summary(what, gone, m);
        snprintf(what, sizeof(what), "%s: REMOVAL read", op_tags[op]);
        summary(what, removal, m);
    }
}

int main(void)
{
    int fds[2];
    S = wq_start("lifetime");
    q = wq_pipe(fds, 256, O_NONBLOCK);
    check("watch S tag 1", watch_key(S, q, 1));
    const char *m = getenv("WQ_MEASURE");
    if (m && atoi(m) > 0) {
        measure(atoi(m));
        return 0;
    }
    for (int op = 0; op <= OP_REVOKE_KEYRING; op++)
        one_case(op, op + 1, 1);
    relink();
    return 0;
}
