/* expiry.c: keyrings that expire or are revoked with keys inside. Is what they hold still
 * possessed (read needs possession here: the keys give their owner no READ), searchable,
 * reachable; and what may still be done to the keyring itself. */
#include "wq.h"

int main(void)
{
    key_serial_t S = wq_start("expiry");
    char buf[64];
    key_serial_t E = check_key("add_key keyring e @s", add_key("keyring", "e", NULL, 0, S), "E");
    key_serial_t K = check_key("add_key user inner e", add_key("user", "inner", "v", 1, E), "K");
    key_serial_t R = check_key("add_key keyring r @s", add_key("keyring", "r", NULL, 0, S), "R");
    key_serial_t K2 = check_key("add_key user inner2 r", add_key("user", "inner2", "v", 1, R), "K2");
    key_serial_t H = check_key("add_key keyring holder @s", add_key("keyring", "holder", NULL, 0, S), "H");
    check("link K2 into H too (so that K2 outlives R's revocation)", keyctl(KEYCTL_LINK, K2, H, 0, 0));
    check("setperm K possessor all, user VIEW", keyctl(KEYCTL_SETPERM, K, KEY_POS_ALL | KEY_USR_VIEW, 0, 0));
    check("setperm K2 possessor all, user VIEW", keyctl(KEYCTL_SETPERM, K2, KEY_POS_ALL | KEY_USR_VIEW, 0, 0));
    check("setperm H possessor VIEW only (no SEARCH: K2 is not possessed through it)",
          keyctl(KEYCTL_SETPERM, H, KEY_POS_VIEW | KEY_USR_VIEW, 0, 0));
    check("read K (possessed through E)", keyctl(KEYCTL_READ, K, (unsigned long)buf, sizeof(buf), 0));
    check("set_timeout E 1", keyctl(KEYCTL_SET_TIMEOUT, E, 1, 0, 0));
    check("revoke R", keyctl(KEYCTL_REVOKE, R, 0, 0, 0));
    sleep(2);

    check("read K (E has expired)", keyctl(KEYCTL_READ, K, (unsigned long)buf, sizeof(buf), 0));
    check("search S for inner (through expired E)",
          keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"inner", 0) == K ? 0 : -1);
    check("request_key inner", syscall(__NR_request_key, "user", "inner", NULL, 0) == K ? 0 : -1);
    check("describe E", keyctl(KEYCTL_DESCRIBE, E, (unsigned long)buf, sizeof(buf), 0) < 0 ? -1 : 0);
    check("read E", keyctl(KEYCTL_READ, E, (unsigned long)buf, sizeof(buf), 0));
    check("add_key into E", add_key("user", "new", "v", 1, E));
    check("link K into E again", keyctl(KEYCTL_LINK, K, E, 0, 0));
    check("search E itself", keyctl(KEYCTL_SEARCH, E, (unsigned long)"user", (unsigned long)"inner", 0) < 0 ? -1 : 0);
    check("watch E", watch_key(E, -1, 1));
    check("get_keyring_id E", keyctl(KEYCTL_GET_KEYRING_ID, E, 0, 0, 0) < 0 ? -1 : 0);

    check("read K2 (R is revoked)", keyctl(KEYCTL_READ, K2, (unsigned long)buf, sizeof(buf), 0));
    check("search S for inner2 (through revoked R)", keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"inner2", 0));
    check("read R", keyctl(KEYCTL_READ, R, (unsigned long)buf, sizeof(buf), 0));
    check("clear E (expired)", keyctl(KEYCTL_CLEAR, E, 0, 0, 0));
    check("unlink K from E", keyctl(KEYCTL_UNLINK, K, E, 0, 0));
    check("unlink E from S", keyctl(KEYCTL_UNLINK, E, S, 0, 0));
    return 0;
}
