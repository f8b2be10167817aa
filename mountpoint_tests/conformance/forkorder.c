/* forkorder.c: which session keyring a child has, by when it was forked. A process without a
 * session keyring (as init's children start) forks A and D, waits, joins a new anonymous session
 * keyring and forks B: A keeps what it had at its fork (no session keyring: its first look at @s
 * installs the user-session keyring), B has the parent's new one; B joins its own and forks C,
 * which has B's. D, without a session keyring too, looks @s up without create (which installs the
 * user-session keyring), then with create (add_key into @s), which replaces that with a new
 * anonymous one. Each child asks only once the parent has joined, and sends the serials it saw
 * through a pipe; the parent reads them in a fixed order and prints each by its role. */
#include "wq.h"

#define NSLOT 8
static key_serial_t parent_new, user_session, user_keyring, b_new, d_new;

struct report {
    long v[NSLOT];
    int err[NSLOT];
    char desc[2][128];
};

static void send(int fd, const struct report *r)
{
    if (write(fd, r, sizeof(*r)) != sizeof(*r))
        _exit(2);
}

static int take(int fd, struct report *r)
{
    size_t got = 0;
    while (got < sizeof(*r)) {
        ssize_t n = read(fd, (char *)r + got, sizeof(*r) - got);
        if (n <= 0)
            return -1;
        got += n;
    }
    return 0;
}

static long session_id(int create, int *err)
{
    long r = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create, 0, 0);
    *err = r < 0 ? errno : 0;
    return r;
}

/* What serial v is, by role. */
static const char *role(long v, int err)
{
    static char buf[64];
    if (v < 0) {
        snprintf(buf, sizeof(buf), "-1 %s", errname(err));
        return buf;
    }
    if (v == 0)
        return "0";
    if (v == parent_new)
        return "the parent's new session keyring";
    if (v == user_session)
        return "the user-session keyring";
    if (v == user_keyring)
        return "the user keyring";
    if (v == b_new)
        return "B's own new session keyring";
    if (v == d_new)
        return "D's new session keyring";
    return "another keyring";
}

static void wait_for(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        _exit(3);
}

static void describe_to(char *buf, size_t size, key_serial_t k)
{
    long r = keyctl(KEYCTL_DESCRIBE, k, (unsigned long)buf, size, 0);
    if (r < 0)
        snprintf(buf, size, "-1 %s", errname(errno));
    buf[size - 1] = 0;
}

static long search(key_serial_t ring, const char *desc, int *err)
{
    long r = keyctl(KEYCTL_SEARCH, (unsigned long)(long)ring, (unsigned long)"user", (unsigned long)desc, 0);
    *err = r < 0 ? errno : 0;
    return r;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    out("# forkorder");
    int go[2], ra[2], rb[2], rc[2], rd[2];
    if (pipe(go) || pipe(ra) || pipe(rb) || pipe(rc) || pipe(rd)) {
        out("pipe: -1 %s", errname(errno));
        return 1;
    }

    /* ---- A: forked before the parent joins; asks only after the parent has joined */
    pid_t a = fork();
    if (a == 0) {
        struct report r;
        memset(&r, 0, sizeof(r));
        wait_for(go[0]);
        r.v[0] = session_id(0, &r.err[0]);
        r.v[1] = session_id(0, &r.err[1]);
        send(ra[1], &r);
        _exit(0);
    }
    /* ---- D: forked before too; @s without create, then with (add_key into @s) */
    pid_t d = fork();
    if (d == 0) {
        struct report r;
        memset(&r, 0, sizeof(r));
        wait_for(go[0]);
        r.v[0] = session_id(0, &r.err[0]);
        describe_to(r.desc[0], sizeof(r.desc[0]), KEY_SPEC_SESSION_KEYRING);
        long k = add_key("user", "k", "v", 1, KEY_SPEC_SESSION_KEYRING);
        r.v[1] = k < 0 ? k : 0;
        r.err[1] = k < 0 ? errno : 0;
        r.v[2] = session_id(0, &r.err[2]);
        describe_to(r.desc[1], sizeof(r.desc[1]), KEY_SPEC_SESSION_KEYRING);
        long f = search(KEY_SPEC_SESSION_KEYRING, "k", &r.err[3]);
        r.v[3] = f < 0 ? f : f == k ? 1 : 2;
        f = search(KEY_SPEC_USER_SESSION_KEYRING, "k", &r.err[4]);
        r.v[4] = f < 0 ? f : f == k ? 1 : 2;
        r.v[5] = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_SESSION_KEYRING, 0, 0, 0);
        r.err[5] = r.v[5] < 0 ? errno : 0;
        send(rd[1], &r);
        _exit(0);
    }
    usleep(30000);  /* A and D are well under way (waiting) before the parent joins */
    long j = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    int jerr = errno;
    parent_new = j > 0 ? (key_serial_t)j : 0;

    /* ---- B: forked after; joins its own and forks C */
    pid_t b = fork();
    if (b == 0) {
        struct report r;
        memset(&r, 0, sizeof(r));
        wait_for(go[0]);
        r.v[0] = session_id(0, &r.err[0]);
        long own = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
        r.v[1] = own;
        r.err[1] = own < 0 ? errno : 0;
        r.v[2] = session_id(0, &r.err[2]);
        pid_t c = fork();
        if (c == 0) {
            struct report r2;
            memset(&r2, 0, sizeof(r2));
            r2.v[0] = session_id(0, &r2.err[0]);
            r2.v[1] = session_id(1, &r2.err[1]);  /* with create: it has one, so the same */
            send(rc[1], &r2);
            _exit(0);
        }
        waitpid(c, NULL, 0);
        send(rb[1], &r);
        _exit(0);
    }
    /* the children wait for this, so none asks before the parent has joined and forked B */
    if (write(go[1], "abd", 3) != 3)
        out("write go: -1 %s", errname(errno));
    struct report A, B, C, D;
    int okA = take(ra[0], &A), okB = take(rb[0], &B), okC = take(rc[0], &C), okD = take(rd[0], &D);
    waitpid(a, NULL, 0);
    waitpid(b, NULL, 0);
    waitpid(d, NULL, 0);

    /* the names: asked only now, so that no lookup of the parent's came before the children's */
    int err;
    user_session = (key_serial_t)keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_SESSION_KEYRING, 0, 0, 0);
    user_keyring = (key_serial_t)keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0, 0, 0);
    b_new = okB == 0 && B.v[1] > 0 ? (key_serial_t)B.v[1] : 0;
    d_new = okD == 0 && D.v[2] > 0 && D.v[2] != user_session ? (key_serial_t)D.v[2] : 0;

    out("parent (no session keyring): join an anonymous session keyring: %s",
        j < 0 ? errname(jerr) : j == user_session ? "the user-session keyring (!)" : "a new keyring");
    long now = session_id(0, &err);
    out("parent: @s now: %s", role(now, err));
    if (okA == 0) {
        out("A (forked before the parent joined, asked after): @s: %s", role(A.v[0], A.err[0]));
        out("A: @s asked again: %s", role(A.v[1], A.err[1]));
    } else {
        out("A: no report");
    }
    if (okB == 0) {
        out("B (forked after the parent joined): @s: %s", role(B.v[0], B.err[0]));
        out("B: join an anonymous session keyring: %s", B.v[1] < 0 ? role(B.v[1], B.err[1]) :
            B.v[1] == parent_new ? "the parent's (!)" : "a new keyring");
        out("B: @s now: %s", role(B.v[2], B.err[2]));
    } else {
        out("B: no report");
    }
    if (okC == 0) {
        out("C (forked by B after B joined): @s: %s", role(C.v[0], C.err[0]));
        out("C: @s with create: %s", role(C.v[1], C.err[1]));
    } else {
        out("C: no report");
    }
    if (okD == 0) {
        out("D (forked before the parent joined): @s without create: %s", role(D.v[0], D.err[0]));
        out("D: describe @s: %s", D.desc[0]);
        out("D: add_key user k @s (a lookup with create): %s", role(D.v[1], D.err[1]));
        out("D: @s now: %s", role(D.v[2], D.err[2]));
        out("D: describe @s: %s", D.desc[1]);
        out("D: @us: %s", role(D.v[5], D.err[5]));
        out("D: search @s for k: %s", D.v[3] < 0 ? role(D.v[3], D.err[3]) : D.v[3] == 1 ? "k" : "another key");
        out("D: search @us for k: %s", D.v[4] < 0 ? role(D.v[4], D.err[4]) : D.v[4] == 1 ? "k" : "another key");
    } else {
        out("D: no report");
    }
    now = session_id(0, &err);
    out("parent: @s after its children: %s", role(now, err));
    char buf[128];
    describe_to(buf, sizeof(buf), KEY_SPEC_USER_SESSION_KEYRING);
    out("parent: describe @us: %s", buf);
    describe_to(buf, sizeof(buf), KEY_SPEC_SESSION_KEYRING);
    out("parent: describe @s: %s", buf);
    return 0;
}
