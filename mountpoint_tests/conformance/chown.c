/* chown.c: KEYCTL_CHOWN and KEYCTL_SETPERM by owners and others: who may change the uid, the
 * group, the permissions; and the new owner's quota (a full one refuses the key). */
#include "wq.h"

static key_serial_t K, K2;

static void as_owner_1000(void *arg)
{
    (void)arg;
    check("1000: chown K uid to 1001", keyctl(KEYCTL_CHOWN, K, 1001, (unsigned long)-1, 0));
    check("1000: chown K uid to 1000 (itself)", keyctl(KEYCTL_CHOWN, K, 1000, (unsigned long)-1, 0));
    check("1000: chown K gid to 1000 (its group)", keyctl(KEYCTL_CHOWN, K, (unsigned long)-1, 1000, 0));
    check("1000: chown K gid to 1002 (not its group)", keyctl(KEYCTL_CHOWN, K, (unsigned long)-1, 1002, 0));
    check("1000: setperm K (its own)", keyctl(KEYCTL_SETPERM, K, KEY_POS_ALL | KEY_USR_ALL | KEY_OTH_ALL, 0, 0));
    check("1000: setperm K2 (root's, though other may SETATTR)", keyctl(KEYCTL_SETPERM, K2, KEY_OTH_ALL, 0, 0));
    check("1000: chown K2 gid to 1000 (root's key)", keyctl(KEYCTL_CHOWN, K2, (unsigned long)-1, 1000, 0));
    check("1000: chown K2 -1 -1 (root's key)", keyctl(KEYCTL_CHOWN, K2, (unsigned long)-1, (unsigned long)-1, 0));
}

static void fill_quota_2001(void *arg)
{
    (void)arg;
    key_serial_t s = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    char desc[16];
    int n = 0;
    for (; n < 300; n++) {
        snprintf(desc, sizeof(desc), "f%d", n);
        if (add_key("user", desc, "x", 1, s) < 0)
            break;
    }
    (void)n;  /* printed nowhere: the parent's lines would race with it */
    /* stay alive (and so keep the session keyring) until the parent is done */
    pause();
}

int main(void)
{
    key_serial_t S = wq_start("chown");
    K = check_key("add_key user k @s", add_key("user", "k", "v", 1, S), "K");
    K2 = check_key("add_key user k2 @s", add_key("user", "k2", "v", 1, S), "K2");
    check("setperm K2: other VIEW and SETATTR", keyctl(KEYCTL_SETPERM, K2, KEY_POS_ALL | KEY_USR_ALL | 0x21, 0, 0));
    check("setperm K: possessor all, user all", keyctl(KEYCTL_SETPERM, K, KEY_POS_ALL | KEY_USR_ALL, 0, 0));
    check("chown K to 1000:1000", keyctl(KEYCTL_CHOWN, K, 1000, 1000, 0));
    as_user(1000, 1000, as_owner_1000, NULL);
    check("root: chown K uid to 0 again", keyctl(KEYCTL_CHOWN, K, 0, (unsigned long)-1, 0));
    check("root: chown K gid to 12345", keyctl(KEYCTL_CHOWN, K, (unsigned long)-1, 12345, 0));
    check("root: chown K uid to 4294967294", keyctl(KEYCTL_CHOWN, K, 4294967294UL, (unsigned long)-1, 0));

    /* a new owner whose quota is full */
    fflush(stdout);
    pid_t filler = fork();
    if (filler == 0) {
        if (setgroups(0, NULL) < 0 || setresgid(2001, 2001, 2001) < 0 || setresuid(2001, 2001, 2001) < 0)
            _exit(1);
        fill_quota_2001(NULL);
        _exit(0);
    }
    /* wait, boundedly, until its quota is full: a chown to it fails then */
    for (int i = 0; i < 200; i++) {
        struct timespec t = {0, 20000000};
        nanosleep(&t, NULL);
        if (keyctl(KEYCTL_CHOWN, K2, 2001, (unsigned long)-1, 0) < 0 && errno == EDQUOT)
            break;
        keyctl(KEYCTL_CHOWN, K2, 0, (unsigned long)-1, 0);
    }
    check("root: chown K2 to 2001 (quota full)", keyctl(KEYCTL_CHOWN, K2, 2001, (unsigned long)-1, 0));
    kill(filler, SIGKILL);
    waitpid(filler, NULL, 0);
    return 0;
}
