/* lookup.c: what each operation answers for a key that is revoked, invalidated or expired
 * (lookup_user_key's state checks and the search's), and add_key/search/request_key argument
 * rules (types, descriptions). Expiry is waited for in real time (set_timeout 1, then 2 s). */
#include "wq.h"

static key_serial_t S;

/* Every operation on one key, in the order keyctl_* would be called by a user. */
static void each_operation(const char *what, key_serial_t K, key_serial_t R)
{
    char label[160], buf[256];

#define L(op) (snprintf(label, sizeof(label), "%s: %s", what, op), label)
    check(L("describe"), keyctl(KEYCTL_DESCRIBE, K, (unsigned long)buf, sizeof(buf), 0) < 0 ? -1 : 0);
    check(L("read"), keyctl(KEYCTL_READ, K, (unsigned long)buf, sizeof(buf), 0));
    check(L("update"), keyctl(KEYCTL_UPDATE, K, (unsigned long)"x", 1, 0));
    check(L("link into R again"), keyctl(KEYCTL_LINK, K, R, 0, 0));
    check(L("search S for it"), keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)what, 0) < 0 ? -1 : 0);
    check(L("request_key"), syscall(__NR_request_key, "user", what, NULL, 0) < 0 ? -1 : 0);
    check(L("setperm"), keyctl(KEYCTL_SETPERM, K, KEY_POS_ALL | KEY_USR_ALL, 0, 0));
    check(L("chown to -1"), keyctl(KEYCTL_CHOWN, K, (unsigned long)-1, (unsigned long)-1, 0));
    check(L("set_timeout 100"), keyctl(KEYCTL_SET_TIMEOUT, K, 100, 0, 0));
    check(L("get_security"), keyctl(KEYCTL_GET_SECURITY, K, (unsigned long)buf, sizeof(buf), 0));
    check(L("unlink from S"), keyctl(KEYCTL_UNLINK, K, S, 0, 0));
    check(L("link into S again"), keyctl(KEYCTL_LINK, K, S, 0, 0));
    /* last: the key is replaced in S by a new one */
    check(L("add_key of the same type and description"), add_key("user", what, "y", 1, S) < 0 ? -1 : 0);
#undef L
}

int main(void)
{
    char desc[5000];
    S = wq_start("lookup");
    key_serial_t R = check_key("add_key keyring r @s", add_key("keyring", "r", NULL, 0, S), "R");

    key_serial_t K1 = check_key("add_key user revoked @s", add_key("user", "revoked", "a", 1, S), "K1");
    check("link K1 into R (R keeps it from GC when S lets go)", keyctl(KEYCTL_LINK, K1, R, 0, 0));
    check("revoke K1", keyctl(KEYCTL_REVOKE, K1, 0, 0, 0));
    each_operation("revoked", K1, R);

    key_serial_t K2 = check_key("add_key user expired @s", add_key("user", "expired", "a", 1, S), "K2");
    check("link K2 into R", keyctl(KEYCTL_LINK, K2, R, 0, 0));
    check("set_timeout K2 1", keyctl(KEYCTL_SET_TIMEOUT, K2, 1, 0, 0));
    sleep(2);
    each_operation("expired", K2, R);

    key_serial_t R3 = check_key("add_key keyring rrevoked @s", add_key("keyring", "rrevoked", NULL, 0, S), "R3");
    check_key("add_key user inside R3", add_key("user", "inside", "a", 1, R3), "K3");
    check("revoke R3", keyctl(KEYCTL_REVOKE, R3, 0, 0, 0));
    check("search S for a key inside revoked R3", keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"inside", 0) < 0 ? -1 : 0);
    check("add_key into revoked R3", add_key("user", "new", "a", 1, R3));
    check("clear revoked R3", keyctl(KEYCTL_CLEAR, R3, 0, 0, 0));

    /* ---- a match the caller may not search: EACCES, not ENOKEY */
    key_serial_t K5 = check_key("add_key user nosearch @s", add_key("user", "nosearch", "a", 1, S), "K5");
    check("setperm K5: possessor all but search", keyctl(KEYCTL_SETPERM, K5, (KEY_POS_ALL & ~KEY_POS_SEARCH) | KEY_USR_VIEW, 0, 0));
    check("search S for K5", keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"nosearch", 0));
    check("request_key K5", syscall(__NR_request_key, "user", "nosearch", NULL, 0));
    check("read K5 (possessed through S? no: possession needs SEARCH)", keyctl(KEYCTL_READ, K5, 0, 0, 0));

    /* ---- request_key over several keyrings (thread, then session): a found key wins, and
     * "nothing here" in one keyring outranks a revoked match in another */
    key_serial_t T1 = check_key("add_key user dup @t (makes the thread keyring)",
                                add_key("user", "dup", "t", 1, KEY_SPEC_THREAD_KEYRING), "T1");
    check("revoke T1", keyctl(KEYCTL_REVOKE, T1, 0, 0, 0));
    key_serial_t K6 = check_key("add_key user dup @s", add_key("user", "dup", "s", 1, S), "K6");
    check("request_key dup (revoked in @t, live in @s)",
          syscall(__NR_request_key, "user", "dup", NULL, 0) == K6 ? 0 : -1);
    key_serial_t K7 = check_key("add_key user onlyrev @s", add_key("user", "onlyrev", "a", 1, S), "K7");
    check("revoke K7", keyctl(KEYCTL_REVOKE, K7, 0, 0, 0));
    check("request_key onlyrev (none in @t, revoked in @s)", syscall(__NR_request_key, "user", "onlyrev", NULL, 0));
    check("search @s for onlyrev", keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"onlyrev", 0));
    check("search @t for dup (revoked there)", keyctl(KEYCTL_SEARCH, KEY_SPEC_THREAD_KEYRING,
          (unsigned long)"user", (unsigned long)"dup", 0));

    /* ---- types and descriptions */
    check("add_key type nosuch", add_key("nosuch", "d", "a", 1, S));
    check("add_key type \"\"", add_key("", "d", "a", 1, S));
    check("add_key type .x", add_key(".x", "d", "a", 1, S));
    check("add_key user \"\" (empty description)", add_key("user", "", "a", 1, S) < 0 ? -1 : 0);
    check("add_key user NULL description", add_key("user", NULL, "a", 1, S) < 0 ? -1 : 0);
    check("add_key keyring \"\"", add_key("keyring", "", NULL, 0, S) < 0 ? -1 : 0);
    check("add_key keyring NULL description", add_key("keyring", NULL, NULL, 0, S) < 0 ? -1 : 0);
    check("add_key keyring with a payload", add_key("keyring", "p", "a", 1, S));
    check("add_key user no payload", add_key("user", "nopayload", NULL, 0, S) < 0 ? -1 : 0);
    check("add_key logon without a colon", add_key("logon", "nocolon", "a", 1, S));
    check("add_key logon with a colon", add_key("logon", "svc:name", "a", 1, S) < 0 ? -1 : 0);
    memset(desc, 'd', sizeof(desc));
    desc[4095] = 0;
    check("add_key user, description of 4095 bytes", add_key("user", desc, "a", 1, S) < 0 ? -1 : 0);
    desc[4095] = 'd';
    desc[4096] = 0;
    check("add_key user, description of 4096 bytes", add_key("user", desc, "a", 1, S));
    check("search type nosuch", keyctl(KEYCTL_SEARCH, S, (unsigned long)"nosuch", (unsigned long)"d", 0));
    check("search type \"\"", keyctl(KEYCTL_SEARCH, S, (unsigned long)"", (unsigned long)"d", 0));
    check("search type .x", keyctl(KEYCTL_SEARCH, S, (unsigned long)".x", (unsigned long)"d", 0));
    key_serial_t K4 = check_key("add_key user plain @s", add_key("user", "plain", "a", 1, S), "K4");
    check("search in a user key", keyctl(KEYCTL_SEARCH, K4, (unsigned long)"user", (unsigned long)"d", 0));
    check("search keyring \"r\" (keyrings are found too)",
          keyctl(KEYCTL_SEARCH, S, (unsigned long)"keyring", (unsigned long)"r", 0) == R ? 0 : -1);
    check("request_key type nosuch", syscall(__NR_request_key, "nosuch", "d", NULL, 0));
    check("request_key keyring \"r\"", syscall(__NR_request_key, "keyring", "r", NULL, 0) == R ? 0 : -1);
    check("request_key missing, no callout", syscall(__NR_request_key, "user", "missing", NULL, 0));
    return 0;
}
