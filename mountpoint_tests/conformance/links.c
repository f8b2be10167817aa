/* links.c: the shape of the keyring graph. Cycles (EDEADLK), how deep keyrings may nest
 * before a link or a search gives up (KEYRING_SEARCH_MAX_DEPTH), links into what is not a
 * keyring, and a search that meets the same key by two paths. */
#include "wq.h"

#define CHAIN 8

int main(void)
{
    key_serial_t S = wq_start("links");
    key_serial_t chain[CHAIN];
    char name[32], label[160];

    /* a chain of keyrings: D1 in S, D2 in D1, ... D8 in D7 (a keyring 7 deep is still
     * possessed, as a member of one 6 deep: a ninth could not be added to D8) */
    key_serial_t parent = S;
    for (int i = 0; i < CHAIN; i++) {
        snprintf(name, sizeof(name), "d%d", i + 1);
        snprintf(label, sizeof(label), "add_key keyring %s into the one above", name);
        char kname[8];
        snprintf(kname, sizeof(kname), "D%d", i + 1);
        chain[i] = check_key(label, add_key("keyring", name, NULL, 0, parent), kname);
        parent = chain[i];
    }

    check("add_key keyring d9 into D8 (8 deep: not possessed)",
          add_key("keyring", "d9", NULL, 0, chain[7]) < 0 ? -1 : 0);

    /* cycles: a keyring may not be linked under itself or its descendants */
    check("KEYCTL_LINK D1 D2 (D2 is under D1)", keyctl(KEYCTL_LINK, chain[0], chain[1], 0, 0));
    check("KEYCTL_LINK D1 D5", keyctl(KEYCTL_LINK, chain[0], chain[4], 0, 0));
    check("KEYCTL_LINK S D3", keyctl(KEYCTL_LINK, S, chain[2], 0, 0));
    check("KEYCTL_LINK D3 D1 (already an ancestor's descendant)", keyctl(KEYCTL_LINK, chain[2], chain[0], 0, 0));
    check("KEYCTL_LINK D8 S (the bottom at the top)", keyctl(KEYCTL_LINK, chain[7], S, 0, 0));
    check("KEYCTL_UNLINK D8 S", keyctl(KEYCTL_UNLINK, chain[7], S, 0, 0));
    check("KEYCTL_MOVE D2 D1 -> D4 (under itself)", keyctl(KEYCTL_MOVE, chain[1], chain[0], chain[3], 0));

    /* depth: keys at each level, searched for from S */
    for (int i = 0; i < CHAIN; i++) {
        snprintf(name, sizeof(name), "at%d", i + 1);
        snprintf(label, sizeof(label), "add_key user %s into D%d", name, i + 1);
        char kname[8];
        snprintf(kname, sizeof(kname), "A%d", i + 1);
        check_key(label, add_key("user", name, "x", 1, chain[i]), kname);
    }
    for (int i = 0; i < CHAIN; i++) {
        snprintf(name, sizeof(name), "at%d", i + 1);
        snprintf(label, sizeof(label), "search S for %s (under %d keyrings)", name, i + 1);
        long r = keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)name, 0);
        if (r < 0)
            check(label, r);
        else
            out("%s: %s", label, kname((key_serial_t)r));
        snprintf(label, sizeof(label), "request_key %s", name);
        r = syscall(__NR_request_key, "user", name, NULL, 0);
        if (r < 0)
            check(label, r);
        else
            out("%s: %s", label, kname((key_serial_t)r));
    }
    /* a new, deep link: D1 (with 8 levels below it) linked into a fresh keyring */
    key_serial_t T = check_key("add_key keyring top @s", add_key("keyring", "top", NULL, 0, S), "T");
    check("KEYCTL_LINK D1 T (D2..D8 under it, by the long path)", keyctl(KEYCTL_LINK, chain[0], T, 0, 0));
    check("KEYCTL_LINK D2 T (6 levels under it)", keyctl(KEYCTL_LINK, chain[1], T, 0, 0));
    check("KEYCTL_LINK D3 T (5 levels under it)", keyctl(KEYCTL_LINK, chain[2], T, 0, 0));
    check("KEYCTL_UNLINK D3 D1 (the shortcut)", keyctl(KEYCTL_UNLINK, chain[2], chain[0], 0, 0));
    check("search S for at7 (now 7 keyrings down)", keyctl(KEYCTL_SEARCH, S, (unsigned long)"user", (unsigned long)"at7", 0) < 0 ? -1 : 0);
    check("search T for at7 (T > D3 > ... > D7)", keyctl(KEYCTL_SEARCH, T, (unsigned long)"user", (unsigned long)"at7", 0) < 0 ? -1 : 0);

    /* links into what is not a keyring */
    key_serial_t K = check_key("add_key user plain @s", add_key("user", "plain", "x", 1, S), "K");
    check("KEYCTL_LINK D1 K (K is no keyring)", keyctl(KEYCTL_LINK, chain[0], K, 0, 0));
    check("add_key user x into K", add_key("user", "x", "x", 1, K));
    check("KEYCTL_UNLINK K D1 (not there)", keyctl(KEYCTL_UNLINK, K, chain[0], 0, 0));
    check("KEYCTL_CLEAR K", keyctl(KEYCTL_CLEAR, K, 0, 0, 0));
    check("KEYCTL_SEARCH K", keyctl(KEYCTL_SEARCH, K, (unsigned long)"user", (unsigned long)"x", 0));
    check("KEYCTL_MOVE K S -> K", keyctl(KEYCTL_MOVE, K, S, K, 0));
    check("KEYCTL_READ of D8 (bytes: 4 per member)", keyctl(KEYCTL_READ, chain[7], 0, 0, 0));
    return 0;
}
