/* watch_errors.c: KEYCTL_WATCH_KEY's errors and their order: tag range (EINVAL) before the key
 * lookup (EINVAL for bad special ids, ENOKEY, EKEYREVOKED, EKEYEXPIRED, EACCES as a second uid)
 * before the queue fd (EINVAL, not EBADF), then EBUSY for a duplicate (queue, key), EBADSLT for
 * removing a watch that does not exist, EAGAIN over the RLIMIT_NOFILE watch count. */
#include "wq.h"

static key_serial_t K;   /* root's key with no permission for "other" */
static int rootq;        /* a valid queue fd (inherited by children) */

static void as_1000_not_possessed(void *arg)
{
    (void)arg;
    int fds[2];
    int q = wq_pipe(fds, 4, O_NONBLOCK);
    check("uid 1000, possessed via the inherited session: watch K (POS_VIEW)", watch_key(K, q, 1));
    check("uid 1000, possessed: unwatch K", watch_key(K, q, -1));
    drain("uid 1000, possessed: records", q);
    long s = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    check("uid 1000: join a new anonymous session", s < 0 ? s : 0);
    check("uid 1000, not possessed: watch K (no USR/OTH VIEW)", watch_key(K, q, 1));
    check("uid 1000, not possessed: watch K, tag 256", watch_key(K, q, 256));
    check("uid 1000, not possessed: watch K, bad fd", watch_key(K, 999, 1));
    check("uid 1000, not possessed: unwatch K", watch_key(K, q, -1));
    check("uid 1000: watch root's queue fd on K", watch_key(K, rootq, 1));
}

static void as_1001_rlimit(void *arg)
{
    (void)arg;
    int fds[2];
    struct rlimit rl = { 8, 1024 };
    keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    int q = wq_pipe(fds, 4, O_NONBLOCK);
    check("uid 1001: setrlimit NOFILE soft 8", setrlimit(RLIMIT_NOFILE, &rl));
    int ok = 0, err = 0;
    for (int i = 0; i < 12; i++) {
        char d[16];
        snprintf(d, sizeof(d), "w%d", i);
        long k = add_key("user", d, "a", 1, KEY_SPEC_SESSION_KEYRING);
        if (k < 0) {
            out("uid 1001: add_key %s: -1 %s", d, errname(errno));
            break;
        }
        if (watch_key((key_serial_t)k, q, 1) == 0) {
            ok++;
        } else {
            err = errno;
            break;
        }
    }
    out("uid 1001: %d watches accepted, then %s", ok, err ? errname(err) : "no error");
}

int main(void)
{
    key_serial_t S = wq_start("watch_errors");
    int fds[2], fds2[2], nfd[2];
    int q = wq_pipe(fds, 16, O_NONBLOCK);
    int q2 = wq_pipe(fds2, 16, O_NONBLOCK);
    rootq = q;
    pipe(nfd);
    int devnull = open("/dev/null", O_RDWR);

    K = check_key("add_key user k @s", add_key("user", "k", "a", 1, S), "K");
    check("setperm K 3f3f0000 (possessor and user only)", keyctl(KEYCTL_SETPERM, K, 0x3f3f0000, 0, 0));

    /* ---- tag range comes first */
    check("tag 256, good key, good fd", watch_key(K, q, 256));
    check("tag -2, good key, good fd", watch_key(K, q, -2));
    check("tag 256, unknown key 1, bad fd", watch_key(1, 999, 256));
    check("tag -2, key 0, bad fd", watch_key(0, 999, -2));
    check("tag 0x7fffffff", watch_key(K, q, 0x7fffffff));

    /* ---- key lookup */
    check("key 0", watch_key(0, q, 1));
    check("key -6 (group keyring)", watch_key(KEY_SPEC_GROUP_KEYRING, q, 1));
    check("key -7 (request-key authority, none)", watch_key(KEY_SPEC_REQKEY_AUTH_KEY, q, 1));
    check("key -8 (requestor keyring, none)", watch_key(KEY_SPEC_REQUESTOR_KEYRING, q, 1));
    check("key -9", watch_key(-9, q, 1));
    check("key -100", watch_key(-100, q, 1));
    check("key 1 (serials start at 3)", watch_key(1, q, 1));
    check("key 2", watch_key(2, q, 1));
    check("key 1, bad fd (key before fd)", watch_key(1, 999, 1));
    check("key 0, bad fd", watch_key(0, 999, 1));
    check("key 1, unwatch", watch_key(1, q, -1));

    key_serial_t KR = check_key("add_key user revoked @s", add_key("user", "revoked", "a", 1, S), "KR");
    check("watch KR tag 3 on q2", watch_key(KR, q2, 3));
    check("revoke KR", keyctl(KEYCTL_REVOKE, KR, 0, 0, 0));
    check("watch revoked KR", watch_key(KR, q, 1));
    check("watch revoked KR, bad fd", watch_key(KR, 999, 1));
    check("unwatch revoked KR (watched by q2)", watch_key(KR, q2, -1));
    drain("q2 after the failed unwatch", q2);

    key_serial_t KI = check_key("add_key user invalidated @s", add_key("user", "invalidated", "a", 1, S), "KI");
    check("invalidate KI", keyctl(KEYCTL_INVALIDATE, KI, 0, 0, 0));
    check("watch invalidated KI", watch_key(KI, q, 1));

    key_serial_t KE = check_key("add_key user expiring @s", add_key("user", "expiring", "a", 1, S), "KE");
    check("set_timeout KE 1", keyctl(KEYCTL_SET_TIMEOUT, KE, 1, 0, 0));
    check("watch KE tag 4 on q2 (before expiry)", watch_key(KE, q2, 4));
    drain("q2 after set_timeout", q2);
    struct timespec ts = { 2, 500000000 };
    nanosleep(&ts, NULL);
    check("watch expired KE", watch_key(KE, q, 1));
    check("watch expired KE, bad fd", watch_key(KE, 999, 1));
    check("unwatch expired KE (watched by q2)", watch_key(KE, q2, -1));
    drain("q2 after expiry (expiry posts nothing)", q2);

    /* ---- queue fd */
    check("bad fd 999", watch_key(K, 999, 1));
    check("fd -1", watch_key(K, -1, 1));
    check("ordinary pipe read end", watch_key(K, nfd[0], 1));
    check("ordinary pipe write end", watch_key(K, nfd[1], 1));
    check("/dev/null", watch_key(K, devnull, 1));
    check("bad fd, unwatch", watch_key(K, 999, -1));
    {
        int nosize[2];
        wq_pipe(nosize, 0, O_NONBLOCK);
        check("notification pipe without a size", watch_key(K, nosize[0], 1));
        check("its unwatch", watch_key(K, nosize[0], -1));
        close(nosize[0]);
        close(nosize[1]);
    }

    /* ---- EBUSY, EBADSLT */
    check("unwatch K never watched (no watch list)", watch_key(K, q, -1));
    check("watch K tag 1", watch_key(K, q, 1));
    check("watch K tag 1 again", watch_key(K, q, 1));
    check("watch K tag 2 (retag)", watch_key(K, q, 2));
    check("watch K via the write end", watch_key(K, fds[1], 5));
    check("watch K tag 256 (already watched)", watch_key(K, q, 256));
    check("unwatch K from q2 (K watched by q only)", watch_key(K, q2, -1));
    check("watch K tag 0 on q2", watch_key(K, q2, 0));
    check("unwatch K via q's write end", watch_key(K, fds[1], -1));
    drain("q: removal has the first watch's tag", q);
    drain("q2: nothing", q2);
    check("unwatch K again", watch_key(K, q, -1));
    check("watch K tag 255", watch_key(K, q, 255));
    check("update K", keyctl(KEYCTL_UPDATE, K, (unsigned long)"b", 1, 0));
    drain("q: tag 255", q);
    drain("q2: tag 0", q2);

    /* ---- special ids resolve to the same key */
    check("watch S via -3 tag 6", watch_key(KEY_SPEC_SESSION_KEYRING, q, 6));
    check("watch S by serial (already watched via -3)", watch_key(S, q, 7));
    check("unwatch S by serial", watch_key(S, q, -1));
    drain("q: removal of S", q);

    /* ---- KEYCTL_CAPABILITIES */
    {
        unsigned char caps[4] = { 0 };
        long n = keyctl(KEYCTL_CAPABILITIES, (unsigned long)caps, sizeof(caps), 0, 0);
        if (n < 0)
            check("KEYCTL_CAPABILITIES", n);
        else
            out("KEYCTL_CAPABILITIES: %ld bytes, notifications bit %s", n,
                caps[1] & KEYCTL_CAPS1_NOTIFICATIONS ? "set" : "clear");
    }

    /* ---- permissions as a second uid */
    as_user(1000, 1000, as_1000_not_possessed, NULL);
    drain("q after uid 1000's attempts", q);
    as_user(1001, 1001, as_1001_rlimit, NULL);
    close(fds[0]); close(fds[1]);
    close(fds2[0]); close(fds2[1]);
    return 0;
}
