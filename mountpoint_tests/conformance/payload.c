/* payload.c: payload rules per type (user, logon, keyring), for add_key, KEYCTL_UPDATE,
 * KEYCTL_READ and KEYCTL_INSTANTIATE-free paths: sizes at and past each limit, empty and NULL
 * payloads, reading into short, exact and NULL buffers. */
#include "wq.h"

static char big[40000];

int main(void)
{
    key_serial_t S = wq_start("payload");
    char buf[64];
    memset(big, 'b', sizeof(big));
    check("add_key user, 32767 bytes", add_key("user", "u32767", big, 32767, S) < 0 ? -1 : 0);
    check("add_key user, 32768 bytes", add_key("user", "u32768", big, 32768, S));
    check("add_key user, 0 bytes", add_key("user", "u0", big, 0, S));
    check("add_key user, NULL payload, 0 bytes", add_key("user", "unull", NULL, 0, S));
    check("add_key user, NULL payload, 5 bytes", add_key("user", "unull5", NULL, 5, S));
    check("add_key logon svc:a, 32767 bytes", add_key("logon", "svc:a", big, 32767, S) < 0 ? -1 : 0);
    check("add_key logon svc:b, 0 bytes", add_key("logon", "svc:b", big, 0, S));
    check("add_key logon \":x\" (empty prefix)", add_key("logon", ":x", "v", 1, S) < 0 ? -1 : 0);
    check("add_key logon \"x:\" (empty rest)", add_key("logon", "x:", "v", 1, S) < 0 ? -1 : 0);
    check("add_key keyring, 1 byte", add_key("keyring", "kr", "v", 1, S));
    check("add_key keyring, NULL payload, 3 bytes", add_key("keyring", "kr3", NULL, 3, S));
    check("add_key user, 1 MiB", add_key("user", "mib", big, 1024 * 1024, S));

    key_serial_t U = check_key("add_key user u, 3 bytes", add_key("user", "u", "abc", 3, S), "U");
    check("update U, 4096 bytes", keyctl(KEYCTL_UPDATE, U, (unsigned long)big, 4096, 0));
    check("update U, 4097 bytes", keyctl(KEYCTL_UPDATE, U, (unsigned long)big, 4097, 0));
    check("update U, 0 bytes", keyctl(KEYCTL_UPDATE, U, (unsigned long)big, 0, 0));
    check("update U, NULL, 0 bytes", keyctl(KEYCTL_UPDATE, U, 0, 0, 0));
    check("update U, NULL, 4 bytes", keyctl(KEYCTL_UPDATE, U, 0, 4, 0));
    check("update U, 5 bytes", keyctl(KEYCTL_UPDATE, U, (unsigned long)"hello", 5, 0));
    check("read U, NULL buffer", keyctl(KEYCTL_READ, U, 0, 0, 0));
    check("read U, NULL buffer, length 10", keyctl(KEYCTL_READ, U, 0, 10, 0));
    memset(buf, '#', sizeof(buf));
    long r = keyctl(KEYCTL_READ, U, (unsigned long)buf, 3, 0);
    out("read U into 3 bytes: %ld, buffer now \"%.5s\"", r, buf);
    memset(buf, '#', sizeof(buf));
    r = keyctl(KEYCTL_READ, U, (unsigned long)buf, 5, 0);
    out("read U into 5 bytes: %ld, buffer now \"%.6s\"", r, buf);
    check("read U into a bad pointer", keyctl(KEYCTL_READ, U, 1, 5, 0));
    key_serial_t L = check_key("add_key logon svc:l", add_key("logon", "svc:l", "secret", 6, S), "L");
    check("read L (logon)", keyctl(KEYCTL_READ, L, (unsigned long)buf, sizeof(buf), 0));
    check("update L, 3 bytes", keyctl(KEYCTL_UPDATE, L, (unsigned long)"new", 3, 0));
    key_serial_t K = check_key("add_key keyring k", add_key("keyring", "k", NULL, 0, S), "K");
    check("update K (keyring)", keyctl(KEYCTL_UPDATE, K, (unsigned long)"x", 1, 0));
    check("read K (empty keyring)", keyctl(KEYCTL_READ, K, (unsigned long)buf, sizeof(buf), 0));
    check("link U into K", keyctl(KEYCTL_LINK, U, K, 0, 0));
    check("read K, NULL buffer", keyctl(KEYCTL_READ, K, 0, 0, 0));
    check("read K into 2 bytes", keyctl(KEYCTL_READ, K, (unsigned long)buf, 2, 0));
    r = keyctl(KEYCTL_READ, K, (unsigned long)buf, sizeof(buf), 0);
    out("read K: %ld bytes, first member %s", r, r >= 4 ? kname(*(key_serial_t *)buf) : "-");
    return 0;
}
