/* perms.c: which permission each operation needs. For every operation and every single user
 * permission bit (and none), root makes a fresh key owned by uid 1000 whose permission is that
 * bit alone (no possessor bits, so possession adds nothing), links it in the session keyring,
 * and uid 1000 tries the operation: one line each. Then the same for the keyring side of
 * link, unlink, clear and search, with the keyring owned by uid 1000. */
#include "wq.h"

static key_serial_t S;

static const struct { const char *name; uint32_t bit; } bits[] = {
    { "none", 0 },
    { "VIEW", KEY_USR_VIEW },
    { "READ", KEY_USR_READ },
    { "WRITE", KEY_USR_WRITE },
    { "SEARCH", KEY_USR_SEARCH },
    { "LINK", KEY_USR_LINK },
    { "SETATTR", KEY_USR_SETATTR },
};
#define NBITS (sizeof(bits) / sizeof(bits[0]))

struct attempt {
    const char *op;
    key_serial_t key;   /* the key (or keyring) under test, owned by 1000 */
    key_serial_t ring;  /* a keyring uid 1000 may write, for link and move */
    int fd;             /* a notification pipe, for watch */
    const char *bit;
};

static void attempt_as_1000(void *arg)
{
    const struct attempt *a = arg;
    char buf[256], label[128];
    long r = -1;

    snprintf(label, sizeof(label), "%s with %s", a->op, a->bit);
    if (!strcmp(a->op, "describe"))
        r = keyctl(KEYCTL_DESCRIBE, a->key, (unsigned long)buf, sizeof(buf), 0) < 0 ? -1 : 0;
    else if (!strcmp(a->op, "read"))
        r = keyctl(KEYCTL_READ, a->key, (unsigned long)buf, sizeof(buf), 0);
    else if (!strcmp(a->op, "update"))
        r = keyctl(KEYCTL_UPDATE, a->key, (unsigned long)"new", 3, 0);
    else if (!strcmp(a->op, "revoke"))
        r = keyctl(KEYCTL_REVOKE, a->key, 0, 0, 0);
    else if (!strcmp(a->op, "invalidate"))
        r = keyctl(KEYCTL_INVALIDATE, a->key, 0, 0, 0);
    else if (!strcmp(a->op, "setperm"))
        r = keyctl(KEYCTL_SETPERM, a->key, KEY_USR_ALL, 0, 0);
    else if (!strcmp(a->op, "set_timeout"))
        r = keyctl(KEYCTL_SET_TIMEOUT, a->key, 1000, 0, 0);
    else if (!strcmp(a->op, "chown to group 1000"))
        r = keyctl(KEYCTL_CHOWN, a->key, (unsigned long)-1, 1000, 0);
    else if (!strcmp(a->op, "link the key into a keyring"))
        r = keyctl(KEYCTL_LINK, a->key, a->ring, 0, 0);
    else if (!strcmp(a->op, "move the key out of S"))
        r = keyctl(KEYCTL_MOVE, a->key, S, a->ring, 0);
    else if (!strcmp(a->op, "watch"))
        r = watch_key(a->key, a->fd, 1);
    else if (!strcmp(a->op, "get_security"))
        r = keyctl(KEYCTL_GET_SECURITY, a->key, (unsigned long)buf, sizeof(buf), 0);
    else if (!strcmp(a->op, "search S for it"))
        r = keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"victim", 0) < 0 ? -1 : 0;
    /* the keyring side: a->key is a keyring owned by 1000 */
    else if (!strcmp(a->op, "link into the keyring"))
        r = keyctl(KEYCTL_LINK, a->ring, a->key, 0, 0);
    else if (!strcmp(a->op, "unlink from the keyring"))
        r = keyctl(KEYCTL_UNLINK, a->ring, a->key, 0, 0);
    else if (!strcmp(a->op, "clear the keyring"))
        r = keyctl(KEYCTL_CLEAR, a->key, 0, 0, 0);
    else if (!strcmp(a->op, "search in the keyring"))
        r = keyctl(KEYCTL_SEARCH, a->key, (unsigned long)"user", (unsigned long)"inner", 0) < 0 ? -1 : 0;
    else if (!strcmp(a->op, "add_key into the keyring"))
        r = add_key("user", "added", "x", 1, a->key) < 0 ? -1 : 0;
    else if (!strcmp(a->op, "read the keyring"))
        r = keyctl(KEYCTL_READ, a->key, (unsigned long)buf, sizeof(buf), 0) < 0 ? -1 : 0;
    check(label, r);
}

int main(void)
{
    static const char *key_ops[] = {
        "describe", "read", "update", "revoke", "invalidate", "setperm", "set_timeout",
        "chown to group 1000", "link the key into a keyring", "move the key out of S", "watch",
        "get_security", "search S for it",
    };
    static const char *ring_ops[] = {
        "link into the keyring", "unlink from the keyring", "clear the keyring",
        "search in the keyring", "add_key into the keyring", "read the keyring",
    };
    int fds[2];

    S = wq_start("perms");
    /* S: possessor everything, so uid 1000 (which possesses it through the session) may link
     * into it and search it; W: a keyring 1000 owns and may write, for link and move targets */
    check("setperm S possessor all", keyctl(KEYCTL_SETPERM, S, KEY_POS_ALL | KEY_USR_ALL, 0, 0));
    key_serial_t W = check_key("add_key keyring w @s", add_key("keyring", "w", NULL, 0, S), "W");
    check("chown W to 1000", keyctl(KEYCTL_CHOWN, W, 1000, 1000, 0));
    key_serial_t L = check_key("add_key user linkable @s", add_key("user", "linkable", "x", 1, S), "L");
    check("setperm L possessor all (link source for the keyring side)", keyctl(KEYCTL_SETPERM, L, KEY_POS_ALL, 0, 0));
    check("pipe2", pipe2(fds, O_NOTIFICATION_PIPE));
    check("set size", ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, 64));

    for (size_t o = 0; o < sizeof(key_ops) / sizeof(key_ops[0]); o++) {
        for (size_t b = 0; b < NBITS; b++) {
            key_serial_t K = add_key("user", "victim", "payload", 7, S);
            if (K < 0 || keyctl(KEYCTL_CHOWN, K, 1000, 1000, 0) < 0 ||
                keyctl(KEYCTL_SETPERM, K, bits[b].bit, 0, 0) < 0) {
                out("%s with %s: setting up: -1 %s", key_ops[o], bits[b].name, errname(errno));
                continue;
            }
            struct attempt a = { key_ops[o], K, W, fds[0], bits[b].name };
            as_user(1000, 1000, attempt_as_1000, &a);
            keyctl(KEYCTL_UNLINK, K, S, 0, 0);
            keyctl(KEYCTL_UNLINK, K, W, 0, 0);
        }
    }
    for (size_t o = 0; o < sizeof(ring_ops) / sizeof(ring_ops[0]); o++) {
        for (size_t b = 0; b < NBITS; b++) {
            key_serial_t R = add_key("keyring", "victim-ring", NULL, 0, S);
            if (R < 0 || add_key("user", "inner", "x", 1, R) < 0 || keyctl(KEYCTL_LINK, L, R, 0, 0) < 0 ||
                keyctl(KEYCTL_CHOWN, R, 1000, 1000, 0) < 0 || keyctl(KEYCTL_SETPERM, R, bits[b].bit, 0, 0) < 0) {
                out("%s with %s: setting up: -1 %s", ring_ops[o], bits[b].name, errname(errno));
                continue;
            }
            struct attempt a = { ring_ops[o], R, L, fds[0], bits[b].name };
            as_user(1000, 1000, attempt_as_1000, &a);
            keyctl(KEYCTL_UNLINK, R, S, 0, 0);
        }
    }
    return 0;
}
