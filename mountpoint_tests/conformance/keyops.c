/* keyops.c: every keyctl operation and the records it posts: on which key, with which aux and
 * tag. Also what posts nothing (describe, read, search without destination, failed calls), the
 * scope of a watch (a keyring watch does not see its members' changes), and destruction
 * (REMOVAL from key garbage collection, awaited). negate/reject need a request-key authority
 * and are not covered here. */
#include "wq.h"

static int q;

static void show(const char *label)
{
    drain(label, q);
}

int main(void)
{
    key_serial_t S = wq_start("keyops");
    int fds[2];
    char desc[256];
    long r;

    q = wq_pipe(fds, 256, O_NONBLOCK);
    key_serial_t R1 = check_key("add_key keyring r1 @s", add_key("keyring", "r1", NULL, 0, S), "R1");
    key_serial_t R2 = check_key("add_key keyring r2 @s", add_key("keyring", "r2", NULL, 0, S), "R2");
    check("watch S tag 1", watch_key(S, q, 1));
    check("watch R1 tag 2", watch_key(R1, q, 2));
    check("watch R2 tag 3", watch_key(R2, q, 3));
    show("after watching (nothing yet)");

    /* ---- add_key: LINKED on the keyring; the new key's INSTANTIATED has no watcher */
    key_serial_t K1 = check_key("add_key user k1 R1", add_key("user", "k1", "a", 1, R1), "K1");
    show("add_key user k1 R1");
    check("watch K1 tag 4", watch_key(K1, q, 4));
    check_same("add_key user k1 R1 again (update)", add_key("user", "k1", "bb", 2, R1));
    show("add_key of an existing user key");

    /* ---- update */
    check("KEYCTL_UPDATE K1", keyctl(KEYCTL_UPDATE, K1, (unsigned long)"ccc", 3, 0));
    show("KEYCTL_UPDATE K1 (R1 sees nothing)");
    {
        static char big[8192];
        memset(big, 'x', sizeof(big));
        check("KEYCTL_UPDATE K1 with 8192 bytes", keyctl(KEYCTL_UPDATE, K1, (unsigned long)big, sizeof(big), 0));
        show("failed update");
    }

    /* ---- link / unlink */
    check("KEYCTL_LINK K1 R2", keyctl(KEYCTL_LINK, K1, R2, 0, 0));
    show("KEYCTL_LINK K1 R2");
    check("KEYCTL_LINK K1 R2 again", keyctl(KEYCTL_LINK, K1, R2, 0, 0));
    show("KEYCTL_LINK K1 R2 again");
    check("KEYCTL_LINK R1 R1 (itself)", keyctl(KEYCTL_LINK, R1, R1, 0, 0));
    show("failed link");
    check("KEYCTL_UNLINK K1 R2", keyctl(KEYCTL_UNLINK, K1, R2, 0, 0));
    show("KEYCTL_UNLINK K1 R2");
    check("KEYCTL_UNLINK K1 R2 again", keyctl(KEYCTL_UNLINK, K1, R2, 0, 0));
    show("failed unlink");

    /* ---- move */
    check("KEYCTL_MOVE K1 R1 -> R2", keyctl(KEYCTL_MOVE, K1, R1, R2, 0));
    show("KEYCTL_MOVE K1 R1 -> R2");
    check("KEYCTL_MOVE K1 R2 -> R2", keyctl(KEYCTL_MOVE, K1, R2, R2, 0));
    show("KEYCTL_MOVE to the same keyring");
    check("KEYCTL_MOVE K1 R1 -> R2 (not in R1)", keyctl(KEYCTL_MOVE, K1, R1, R2, 0));
    show("failed move");
    key_serial_t K2 = check_key("add_key user k1 R1 (new, same description)", add_key("user", "k1", "d", 1, R1), "K2");
    show("add_key user k1 R1");
    check("watch K2 tag 5", watch_key(K2, q, 5));
    check("KEYCTL_MOVE K2 R1 -> R2 EXCL (R2 has a k1)", keyctl(KEYCTL_MOVE, K2, R1, R2, KEYCTL_MOVE_EXCL));
    show("failed exclusive move");
    check("KEYCTL_MOVE K2 R1 -> R2 (displaces K1)", keyctl(KEYCTL_MOVE, K2, R1, R2, 0));
    settle("KEYCTL_MOVE K2 R1 -> R2, then K1 destroyed", q, 2, 1);

    /* ---- setperm, chown, set_timeout: SETATTR on the key */
    check("KEYCTL_SETPERM K2 3f010000 (unchanged)", keyctl(KEYCTL_SETPERM, K2, 0x3f010000, 0, 0));
    show("KEYCTL_SETPERM unchanged");
    check("KEYCTL_SETPERM K2 3f3f0000", keyctl(KEYCTL_SETPERM, K2, 0x3f3f0000, 0, 0));
    show("KEYCTL_SETPERM");
    check("KEYCTL_SETPERM K2 40000000 (invalid bits)", keyctl(KEYCTL_SETPERM, K2, 0x40000000, 0, 0));
    show("failed setperm");
    check("KEYCTL_CHOWN K2 -1 -1", keyctl(KEYCTL_CHOWN, K2, (unsigned long)-1, (unsigned long)-1, 0));
    show("KEYCTL_CHOWN -1 -1");
    check("KEYCTL_CHOWN K2 0 -1 (current owner)", keyctl(KEYCTL_CHOWN, K2, 0, (unsigned long)-1, 0));
    show("KEYCTL_CHOWN to the owner");
    check("KEYCTL_CHOWN K2 -1 0", keyctl(KEYCTL_CHOWN, K2, (unsigned long)-1, 0, 0));
    show("KEYCTL_CHOWN gid");
    check("KEYCTL_SET_TIMEOUT K2 1000", keyctl(KEYCTL_SET_TIMEOUT, K2, 1000, 0, 0));
    show("KEYCTL_SET_TIMEOUT 1000");
    check("KEYCTL_SET_TIMEOUT K2 0", keyctl(KEYCTL_SET_TIMEOUT, K2, 0, 0, 0));
    show("KEYCTL_SET_TIMEOUT 0");

    /* ---- operations that post nothing */
    r = keyctl(KEYCTL_DESCRIBE, K2, (unsigned long)desc, sizeof(desc), 0);
    if (r > 0)
        out("KEYCTL_DESCRIBE K2: %s", desc);
    else
        check("KEYCTL_DESCRIBE K2", r);
    check("KEYCTL_READ K2", keyctl(KEYCTL_READ, K2, (unsigned long)desc, sizeof(desc), 0));
    check_same("KEYCTL_SEARCH S user k1", keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"k1", 0));
    check("KEYCTL_GET_KEYRING_ID S", keyctl(KEYCTL_GET_KEYRING_ID, S, 0, 0, 0) == S ? 0 : -1);
    show("describe, read, search, get_keyring_id");

    /* ---- search with a destination links the found key */
    check_same("KEYCTL_SEARCH S user k1 -> R1", keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"k1", R1));
    show("search with destination R1");

    /* ---- clear: CLEARED only, no UNLINKED per member; again on an empty keyring */
    check("KEYCTL_CLEAR R2", keyctl(KEYCTL_CLEAR, R2, 0, 0, 0));
    show("KEYCTL_CLEAR R2");
    check("KEYCTL_CLEAR R2 (empty)", keyctl(KEYCTL_CLEAR, R2, 0, 0, 0));
    show("KEYCTL_CLEAR R2 again");

    /* ---- revoke: once only */
    check("KEYCTL_REVOKE K2", keyctl(KEYCTL_REVOKE, K2, 0, 0, 0));
    show("KEYCTL_REVOKE K2");
    check("KEYCTL_REVOKE K2 again", keyctl(KEYCTL_REVOKE, K2, 0, 0, 0));
    show("KEYCTL_REVOKE K2 again");
    check("KEYCTL_UPDATE revoked K2", keyctl(KEYCTL_UPDATE, K2, (unsigned long)"z", 1, 0));
    check("KEYCTL_SETPERM revoked K2", keyctl(KEYCTL_SETPERM, K2, 0x3f010000, 0, 0));
    show("operations on a revoked key");
    out("revoked K2: no removal within 1s: %s", wait_readable(q, 1000) ? "no (readable)" : "yes");

    /* ---- invalidate: INVALIDATED, then REMOVAL once GC frees it; no UNLINKED on R2 */
    key_serial_t K3 = check_key("add_key user k3 R2", add_key("user", "k3", "e", 1, R2), "K3");
    show("add_key user k3 R2");
    check("watch K3 tag 6", watch_key(K3, q, 6));
    check("KEYCTL_INVALIDATE K3", keyctl(KEYCTL_INVALIDATE, K3, 0, 0, 0));
    settle("KEYCTL_INVALIDATE K3, then K3 destroyed (no UNLINKED on R2)", q, 1, 1);
    check("KEYCTL_INVALIDATE K3 again", keyctl(KEYCTL_INVALIDATE, K3, 0, 0, 0));
    show("failed invalidate");

    /* ---- unlink of the last link destroys the key */
    key_serial_t K4 = check_key("add_key user k4 R2", add_key("user", "k4", "f", 1, R2), "K4");
    check("watch K4 tag 8", watch_key(K4, q, 8));
    show("add_key user k4 R2");
    check("KEYCTL_UNLINK K4 R2 (last link)", keyctl(KEYCTL_UNLINK, K4, R2, 0, 0));
    settle("KEYCTL_UNLINK K4 R2, then K4 destroyed", q, 1, 1);

    /* ---- revoking a keyring empties it silently */
    key_serial_t R3 = check_key("add_key keyring r3 @s", add_key("keyring", "r3", NULL, 0, S), "R3");
    show("add_key keyring r3 @s");
    check("watch R3 tag 10", watch_key(R3, q, 10));
    key_serial_t K5 = check_key("add_key user k5 R3", add_key("user", "k5", "g", 1, R3), "K5");
    check("watch K5 tag 11", watch_key(K5, q, 11));
    show("add_key user k5 R3");
    check("KEYCTL_REVOKE R3", keyctl(KEYCTL_REVOKE, R3, 0, 0, 0));
    settle("KEYCTL_REVOKE R3, then its member K5 destroyed", q, 1, 1);

    /* ---- restrict_keyring: SETATTR on the keyring */
    key_serial_t R4 = check_key("add_key keyring r4 @s", add_key("keyring", "r4", NULL, 0, S), "R4");
    check("watch R4 tag 12", watch_key(R4, q, 12));
    show("add_key keyring r4 @s");
    check("KEYCTL_RESTRICT_KEYRING R4 (no links)", keyctl(KEYCTL_RESTRICT_KEYRING, R4, 0, 0, 0));
    show("KEYCTL_RESTRICT_KEYRING R4");
    check("KEYCTL_LINK R1 R4 (restricted)", keyctl(KEYCTL_LINK, R1, R4, 0, 0));
    check("add_key user k6 R4 (restricted)", add_key("user", "k6", "h", 1, R4));
    show("refused links");

    /* ---- a keyring added under an existing name replaces the link: LINKED only */
    key_serial_t R1b = check_key("add_key keyring r1 @s (same name)", add_key("keyring", "r1", NULL, 0, S), "R1b");
    (void)R1b;
    settle("add_key keyring r1 @s again, then R1 and its member K2 destroyed", q, 1, 2);

    /* ---- a link that displaces a key of the same description: LINKED only */
    key_serial_t K7 = check_key("add_key user dup R2", add_key("user", "dup", "i", 1, R2), "K7");
    key_serial_t K8 = check_key("add_key user dup @s", add_key("user", "dup", "j", 1, S), "K8");
    check("watch K7 tag 13", watch_key(K7, q, 13));
    show("add_key user dup R2 and @s");
    check("KEYCTL_LINK K8 R2 (displaces K7)", keyctl(KEYCTL_LINK, K8, R2, 0, 0));
    settle("KEYCTL_LINK K8 R2, then K7 destroyed", q, 1, 1);

    /* ---- invalidating a watched keyring */
    check("KEYCTL_INVALIDATE R2", keyctl(KEYCTL_INVALIDATE, R2, 0, 0, 0));
    settle("KEYCTL_INVALIDATE R2, then R2 destroyed", q, 1, 1);
    close(fds[0]);
    close(fds[1]);
    return 0;
}
