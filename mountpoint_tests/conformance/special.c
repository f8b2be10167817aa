/* special.c: watching the special keyrings (thread, process, session, user, user-session; group,
 * request-key authority and requestor), which KEY_LOOKUP_CREATE creates on demand, events on
 * them, and VIEW permission by class (possessor, user, group, other) as a second uid. */
#include "wq.h"

static void describe(const char *label, key_serial_t k)
{
    char d[256];
    long r = keyctl(KEYCTL_DESCRIBE, k, (unsigned long)d, sizeof(d), 0);
    if (r < 0)
        out("%s: describe: -1 %s", label, errname(errno));
    else
        out("%s: %s", label, d);
}

static key_serial_t KP;  /* root's key for the permission checks */
static key_serial_t U, US;

struct perm_case {
    const char *what;
    uint32_t perm;
    int chown_uid, chown_gid;   /* -1: unchanged */
};

static void try_watch_as_1000(void *arg)
{
    const struct perm_case *c = arg;
    int fds[2];
    char label[160];
    int q = wq_pipe(fds, 4, O_NONBLOCK);
    /* not possessed: our own fresh session */
    keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    snprintf(label, sizeof(label), "uid 1000 gid 1000: %s: watch", c->what);
    check(label, watch_key(KP, q, 1));
    snprintf(label, sizeof(label), "uid 1000 gid 1000: %s: describe", c->what);
    char d[256];
    check(label, keyctl(KEYCTL_DESCRIBE, KP, (unsigned long)d, sizeof(d), 0) < 0 ? -1 : 0);
}

static void try_possessed_as_1000(void *arg)
{
    const struct perm_case *c = arg;
    int fds[2];
    char label[160];
    int q = wq_pipe(fds, 4, O_NONBLOCK);
    /* possessed: KP is in the session keyring this child inherited */
    snprintf(label, sizeof(label), "uid 1000, possessed: %s: watch", c->what);
    check(label, watch_key(KP, q, 1));
}

static void user_keyrings_as_1000(void *arg)
{
    (void)arg;
    int fds[2];
    int q = wq_pipe(fds, 16, O_NONBLOCK);
    keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    long u = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 1, 0, 0);
    name_key((key_serial_t)u, "U1000");
    check("uid 1000: watch -4 tag 1", watch_key(KEY_SPEC_USER_KEYRING, q, 1));
    describe("uid 1000: -4", KEY_SPEC_USER_KEYRING);
    key_serial_t M = check_key("uid 1000: add_key user mine @u", add_key("user", "mine", "a", 1, KEY_SPEC_USER_KEYRING), "M1000");
    drain("uid 1000: records on @u", q);
    describe("uid 1000: its key", M);
    check("uid 1000: watch root's user keyring U (perm 3f3f0000 now)", watch_key(U, q, 1));
    check("uid 1000: watch root's user-session keyring US (perm 1f3f0000)", watch_key(US, q, 1));
}

int main(void)
{
    int fds[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    out("# special");
    int q = wq_pipe(fds, 64, O_NONBLOCK);

    /* ---- before any keyring exists for this process */
    check("get_keyring_id -1 (no create)", keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, 0, 0, 0));
    check("get_keyring_id -2 (no create)", keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 0, 0, 0));
    US = check_key("get_keyring_id -5 (no create)",
                                keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_SESSION_KEYRING, 0, 0, 0), "US");
    U = check_key("get_keyring_id -4 (no create)",
                               keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0, 0, 0), "U");
    check_same("get_keyring_id -3 (no create): falls back to the user-session keyring",
               keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0));
    describe("-4", KEY_SPEC_USER_KEYRING);
    describe("-5", KEY_SPEC_USER_SESSION_KEYRING);

    /* ---- watching creates thread, process and session keyrings */
    check("watch -1 tag 1", watch_key(KEY_SPEC_THREAD_KEYRING, q, 1));
    key_serial_t T = check_key("get_keyring_id -1 after the watch",
                               keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, 0, 0, 0), "T");
    describe("-1", KEY_SPEC_THREAD_KEYRING);
    check("watch -2 tag 2", watch_key(KEY_SPEC_PROCESS_KEYRING, q, 2));
    key_serial_t P = check_key("get_keyring_id -2 after the watch",
                               keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 0, 0, 0), "P");
    describe("-2", KEY_SPEC_PROCESS_KEYRING);
    check("watch -3 tag 3 (installs a new session keyring)", watch_key(KEY_SPEC_SESSION_KEYRING, q, 3));
    key_serial_t S = check_key("get_keyring_id -3 after the watch",
                               keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0), "S");
    describe("-3", KEY_SPEC_SESSION_KEYRING);
    check("watch -3 tag 3 again (same keyring now)", watch_key(KEY_SPEC_SESSION_KEYRING, q, 3));
    check("watch -4 tag 4", watch_key(KEY_SPEC_USER_KEYRING, q, 4));
    check("watch -5 tag 5", watch_key(KEY_SPEC_USER_SESSION_KEYRING, q, 5));
    check("watch U by serial (already via -4)", watch_key(U, q, 4));
    check("watch -6", watch_key(KEY_SPEC_GROUP_KEYRING, q, 6));
    check("watch -7", watch_key(KEY_SPEC_REQKEY_AUTH_KEY, q, 7));
    check("watch -8", watch_key(KEY_SPEC_REQUESTOR_KEYRING, q, 8));
    drain("records after watching the special keyrings", q);

    /* ---- events on each */
    check_key("add_key user a @t", add_key("user", "a", "1", 1, KEY_SPEC_THREAD_KEYRING), "KT");
    check_key("add_key user a @p", add_key("user", "a", "1", 1, KEY_SPEC_PROCESS_KEYRING), "KP0");
    check_key("add_key user a @s", add_key("user", "a", "1", 1, KEY_SPEC_SESSION_KEYRING), "KS");
    key_serial_t KU = check_key("add_key user a @u", add_key("user", "a", "1", 1, KEY_SPEC_USER_KEYRING), "KU");
    check_key("add_key user a @us", add_key("user", "a", "1", 1, KEY_SPEC_USER_SESSION_KEYRING), "KUS");
    drain("records after add_key into each", q);
    check("clear @t", keyctl(KEYCTL_CLEAR, KEY_SPEC_THREAD_KEYRING, 0, 0, 0));
    check("unlink KU from @u", keyctl(KEYCTL_UNLINK, KU, KEY_SPEC_USER_KEYRING, 0, 0));
    check("setperm @p 3f3f0000", keyctl(KEYCTL_SETPERM, KEY_SPEC_PROCESS_KEYRING, 0x3f3f0000, 0, 0));
    check("setperm @u 3f3f0000", keyctl(KEYCTL_SETPERM, KEY_SPEC_USER_KEYRING, 0x3f3f0000, 0, 0));
    drain("records after clear, unlink, setperm", q);
    check("link @us into @s", keyctl(KEYCTL_LINK, US, S, 0, 0));
    drain("records after link @us into @s", q);
    check("unwatch -1", watch_key(KEY_SPEC_THREAD_KEYRING, q, -1));
    check("unwatch T by serial again", watch_key(T, q, -1));
    check("unwatch -2", watch_key(KEY_SPEC_PROCESS_KEYRING, q, -1));
    check("unwatch P by serial again", watch_key(P, q, -1));
    drain("records after unwatching @t and @p", q);

    /* ---- joining a named session keyring: the old session S is no longer ours */
    key_serial_t J = check_key("join session keyring \"named\"",
                               keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"named", 0, 0, 0), "J");
    describe("named session", J);
    check_same("-3 now", keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0));
    check("add_key user b into S (old session, no longer possessed)", add_key("user", "b", "1", 1, S) < 0 ? -1 : 0);
    drain("records: S is still watched", q);
    check("watch -3 tag 9 (J)", watch_key(KEY_SPEC_SESSION_KEYRING, q, 9));
    check_key("join session keyring \"named\" again", keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"named", 0, 0, 0), "J");
    drain("records after rejoining", q);

    /* ---- VIEW permission by class, as uid 1000 */
    KP = check_key("add_key user perm @s", add_key("user", "perm", "a", 1, KEY_SPEC_SESSION_KEYRING), "KP");
    drain("records after add_key perm", q);
    check("watch KP tag 20 (as root, to see the setattrs)", watch_key(KP, q, 20));
    static const struct perm_case cases[] = {
        { "perm 3f3f0000 (other: none)", 0x3f3f0000, -1, -1 },
        { "perm 3f3f0001 (other: VIEW)", 0x3f3f0001, -1, -1 },
        { "perm 3f3f3f3e (other: all but VIEW)", 0x3f3f3f3e, -1, -1 },
        { "gid 1000, perm 3f000100 (group: VIEW)", 0x3f000100, -1, 1000 },
        { "gid 1000, perm 3f000001 (group: none, other: VIEW)", 0x3f000001, -1, 1000 },
        { "gid 1000, perm 3f003e01 (group: all but VIEW, other: VIEW)", 0x3f003e01, -1, 1000 },
        { "uid 1000, perm 3f010000 (user: VIEW)", 0x3f010000, 1000, -1 },
        { "uid 1000, perm 3f3e0101 (user: all but VIEW, group/other: VIEW)", 0x3f3e0101, 1000, -1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct perm_case *c = &cases[i];
        if (keyctl(KEYCTL_CHOWN, KP, 0, 0, 0) < 0 || keyctl(KEYCTL_SETPERM, KP, c->perm, 0, 0) < 0)
            out("%s: setting the permission: -1 %s", c->what, errname(errno));
        if ((c->chown_uid >= 0 || c->chown_gid >= 0) &&
            keyctl(KEYCTL_CHOWN, KP, (unsigned long)(long)c->chown_uid, (unsigned long)(long)c->chown_gid, 0) < 0)
            out("%s: chown: -1 %s", c->what, errname(errno));
        as_user(1000, 1000, try_watch_as_1000, (void *)c);
    }
    /* the owner (root) keeps USR_SETATTR so that it can go on changing the permissions */
    static const struct perm_case poss[] = {
        { "perm 09200000 (possessor: VIEW and SEARCH)", 0x09200000, -1, -1 },
        { "perm 01200000 (possessor: VIEW but no SEARCH, so not possessed)", 0x01200000, -1, -1 },
        { "perm 3e20003f (possessor: all but VIEW; other: all)", 0x3e20003f, -1, -1 },
        { "perm 3e200000 (possessor: all but VIEW)", 0x3e200000, -1, -1 },
    };
    for (size_t i = 0; i < sizeof(poss) / sizeof(poss[0]); i++) {
        if (keyctl(KEYCTL_CHOWN, KP, 0, 0, 0) < 0 || keyctl(KEYCTL_SETPERM, KP, poss[i].perm, 0, 0) < 0)
            out("%s: setting the permission: -1 %s", poss[i].what, errname(errno));
        as_user(1000, 1000, try_possessed_as_1000, (void *)&poss[i]);
    }
    drain("records on KP: one SETATTR per chown and setperm", q);
    as_user(1000, 1000, user_keyrings_as_1000, NULL);
    close(fds[0]);
    close(fds[1]);
    return 0;
}
