/* session.c: the special keyrings as describe shows them (type, owner, permissions, name),
 * and KEYCTL_JOIN_SESSION_KEYRING with names: joining an existing one, one the caller may not
 * search (a second uid), odd names. */
#include "wq.h"

static void describe(const char *label, long id)
{
    char buf[256];
    long r = keyctl(KEYCTL_DESCRIBE, id, (unsigned long)buf, sizeof(buf), 0);
    if (r < 0)
        check(label, r);
    else
        out("%s: %s", label, buf);
}

static void join_as_1000(void *arg)
{
    key_serial_t named = *(key_serial_t *)arg;
    long j = keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"named", 0, 0, 0);
    out("uid 1000: join \"named\" (root's, which only its possessor may search): %s",
        j < 0 ? errname(errno) : j == named ? "root's" : "a new one");
    describe("uid 1000: describe @s", KEY_SPEC_SESSION_KEYRING);
    describe("uid 1000: describe @u (created on demand)", KEY_SPEC_USER_KEYRING);
    describe("uid 1000: describe @us", KEY_SPEC_USER_SESSION_KEYRING);
}

/* what a join returned: 0, the keyring it should be, or another (a new) one */
static void join_again(const char *label, const char *name, key_serial_t expect)
{
    long r = keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)name, 0, 0, 0);
    if (r < 0)
        check(label, r);
    else if (r == 0)
        out("%s: 0", label);
    else if (r == expect)
        out("%s: %s", label, kname(expect));
    else
        out("%s: a new keyring", label);
}

int main(void)
{
    wq_start("session");
    describe("describe @s (joined anonymously)", KEY_SPEC_SESSION_KEYRING);
    describe("describe @t (made by the lookup? no: describe does not create)", KEY_SPEC_THREAD_KEYRING);
    check("get_keyring_id @t create", keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, 1, 0, 0) < 0 ? -1 : 0);
    describe("describe @t", KEY_SPEC_THREAD_KEYRING);
    check("get_keyring_id @p create", keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1, 0, 0) < 0 ? -1 : 0);
    describe("describe @p", KEY_SPEC_PROCESS_KEYRING);
    describe("describe @u", KEY_SPEC_USER_KEYRING);
    describe("describe @us", KEY_SPEC_USER_SESSION_KEYRING);
    describe("describe @g", KEY_SPEC_GROUP_KEYRING);

    key_serial_t named = check_key("join \"named\"", keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"named", 0, 0, 0), "N");
    describe("describe @s (named)", KEY_SPEC_SESSION_KEYRING);
    check("link N into @u (to keep it)", keyctl(KEYCTL_LINK, named, KEY_SPEC_USER_KEYRING, 0, 0));
    join_again("join \"named\" again (no SEARCH for its owner: not found)", "named", named);
    key_serial_t fresh = check_key("get_keyring_id @s (that new one)", keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0), "N2");
    (void)fresh;  /* not linked anywhere else: it would displace N (same name) in @u */
    check("setperm N (not possessed now, and its owner has no SETATTR)", keyctl(KEYCTL_SETPERM, named, KEY_POS_ALL | KEY_USR_ALL, 0, 0));
    join_again("join \"named\" (still not searchable)", "named", named);
    join_again("join \"named\" (yet another)", "named", named);
    key_serial_t other = check_key("join \"other\"", keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"other", 0, 0, 0), "O");
    check("link O into @u", keyctl(KEYCTL_LINK, other, KEY_SPEC_USER_KEYRING, 0, 0));
    check("setperm O: possessor all, user all", keyctl(KEYCTL_SETPERM, other, KEY_POS_ALL | KEY_USR_ALL, 0, 0));
    join_again("join \"other\" (already the session keyring)", "other", other);
    join_again("join \"named\"", "named", named);
    check("set_timeout O 1", keyctl(KEYCTL_SET_TIMEOUT, other, 1, 0, 0));
    sleep(2);
    join_again("join \"other\" (expired)", "other", other);
    join_again("join \"named\"", "named", named);
    check("revoke N (not possessed)", keyctl(KEYCTL_REVOKE, named, 0, 0, 0));
    join_again("join \"named\" (once more)", "named", named);
    join_again("join \"other\" (expired)", "other", other);
    join_again("join \"named\" (and again)", "named", named);
    long dot = keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)".dot", 0, 0, 0);
    out("join \".dot\": %s", dot < 0 ? errname(errno) : "joined");
    long empty = keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"", 0, 0, 0);
    out("join \"\": %s", empty < 0 ? errname(errno) : "joined");
    check("join a bad pointer", keyctl(KEYCTL_JOIN_SESSION_KEYRING, 1, 0, 0, 0));
    as_user(1000, 1000, join_as_1000, &named);
    return 0;
}
