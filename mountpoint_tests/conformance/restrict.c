#include "wq.h"
int main(void)
{
    key_serial_t S = wq_start("restrict");
    key_serial_t R = check_key("add_key keyring r @s", add_key("keyring", "r", NULL, 0, S), "R");
    key_serial_t K = check_key("add_key user k @s", add_key("user", "k", "v", 1, S), "K");
    check("restrict K (no keyring)", keyctl(KEYCTL_RESTRICT_KEYRING, K, 0, 0, 0));
    check("restrict R type nosuch", keyctl(KEYCTL_RESTRICT_KEYRING, R, (unsigned long)"nosuch", (unsigned long)"x", 0));
    check("restrict R type user", keyctl(KEYCTL_RESTRICT_KEYRING, R, (unsigned long)"user", (unsigned long)"x", 0));
    check("restrict R type keyring, no restriction", keyctl(KEYCTL_RESTRICT_KEYRING, R, (unsigned long)"keyring", 0, 0));
    check("restrict R type keyring, \"chain\"", keyctl(KEYCTL_RESTRICT_KEYRING, R, (unsigned long)"keyring", (unsigned long)"chain", 0));
    check("restrict R restriction without type", keyctl(KEYCTL_RESTRICT_KEYRING, R, 0, (unsigned long)"x", 0));
    check("restrict R (no links)", keyctl(KEYCTL_RESTRICT_KEYRING, R, 0, 0, 0));
    check("restrict R again", keyctl(KEYCTL_RESTRICT_KEYRING, R, 0, 0, 0));
    check("link K into R", keyctl(KEYCTL_LINK, K, R, 0, 0));
    check("add_key into R", add_key("user", "x", "v", 1, R));
    check("move K S -> R", keyctl(KEYCTL_MOVE, K, S, R, 0));
    check("unlink from R (nothing there)", keyctl(KEYCTL_UNLINK, K, R, 0, 0));
    check("clear R", keyctl(KEYCTL_CLEAR, R, 0, 0, 0));
    check("link R into S again", keyctl(KEYCTL_LINK, R, S, 0, 0));
    check("search R", keyctl(KEYCTL_SEARCH, R, (unsigned long)"user", (unsigned long)"k", 0));
    check("revoke R", keyctl(KEYCTL_REVOKE, R, 0, 0, 0));
    key_serial_t R2 = check_key("add_key keyring r2 @s", add_key("keyring", "r2", NULL, 0, S), "R2");
    check("restrict R2 with an empty type", keyctl(KEYCTL_RESTRICT_KEYRING, R2, (unsigned long)"", 0, 0));
    check("restrict R2 with type .x", keyctl(KEYCTL_RESTRICT_KEYRING, R2, (unsigned long)".x", 0, 0));
    check("restrict S itself", keyctl(KEYCTL_RESTRICT_KEYRING, S, 0, 0, 0));
    check("add_key into S after", add_key("user", "y", "v", 1, S));
    check("update K in S after (add_key of an existing key)", add_key("user", "k", "w", 1, S) == K ? 0 : -1);
    return 0;
}
