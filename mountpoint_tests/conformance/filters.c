/* filters.c: IOC_WATCH_QUEUE_SET_FILTER: valid filters, each invalid form, unknown types,
 * subtype selection, tag selection through info_mask, type-info bits, OR of entries,
 * replacement, removal with NULL, META records bypassing filters. */
#include "wq.h"
#include <sys/mman.h>

static key_serial_t K1, K2;
static struct wq_filter f;

static void reset(void)
{
    memset(&f, 0, sizeof(f));
}

static struct watch_notification_type_filter *entry(int i, uint32_t type, uint32_t subtypes, uint32_t info_filter,
                                    uint32_t info_mask)
{
    struct watch_notification_type_filter *e = &f.filters[i];
    e->type = type;
    e->subtype_filter[0] = subtypes;
    e->info_filter = info_filter;
    e->info_mask = info_mask;
    if ((uint32_t)(i + 1) > f.nr_filters)
        f.nr_filters = i + 1;
    return e;
}

static long set_filter(int q)
{
    return ioctl(q, IOC_WATCH_QUEUE_SET_FILTER, &f);
}

/* Post: update K1, update K2, setperm K1 (SETATTR); then show what passed. */
static void post_and_show(const char *label, int q)
{
    keyctl(KEYCTL_UPDATE, K1, (unsigned long)"u", 1, 0);
    keyctl(KEYCTL_UPDATE, K2, (unsigned long)"u", 1, 0);
    keyctl(KEYCTL_SETPERM, K1, KEY_POS_ALL | KEY_USR_ALL, 0, 0);
    drain(label, q);
}

int main(void)
{
    wq_start("filters");
    int fds[2], q, nfd[2];
    K1 = check_key("add_key user k1 @s", add_key("user", "k1", "a", 1, KEY_SPEC_SESSION_KEYRING), "K1");
    K2 = check_key("add_key user k2 @s", add_key("user", "k2", "a", 1, KEY_SPEC_SESSION_KEYRING), "K2");

    q = wq_pipe(fds, 64, O_NONBLOCK);
    check("watch K1 tag 1", watch_key(K1, q, 1));
    check("watch K2 tag 2", watch_key(K2, q, 2));
    post_and_show("no filter", q);

    /* ---- invalid forms (each on its own) */
    if (pipe(nfd) == 0) {
        reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0);
        check("valid filter on an ordinary pipe", set_filter(nfd[0]));
        close(nfd[0]); close(nfd[1]);
    }
    reset(); f.nr_filters = 0;
    check("nr_filters 0", set_filter(q));
    reset(); for (int i = 0; i < 17; i++) entry(i, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0);
    check("nr_filters 17", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0); f.reserved = 1;
    check("__reserved 1", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0x100, 0);
    check("info_filter 0x100 outside info_mask 0", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0x100, 0x200);
    check("info_filter 0x100 outside info_mask 0x200", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0x1);
    check("info_mask 0x1 (length bits)", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0x7f);
    check("info_mask 0x7f", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0x80);
    check("info_mask 0x80 (bit 7)", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0); entry(1, 5, ~0u, 0, 0x40);
    check("unknown type 5 with info_mask 0x40", set_filter(q));
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0); entry(1, 1000, ~0u, 0x10000, 0);
    check("unknown type 1000 with info_filter outside mask", set_filter(q));
    check("filter pointer 8 (unmapped)", ioctl(q, IOC_WATCH_QUEUE_SET_FILTER, (void *)8));
    {
        /* header readable, entries past the end of the mapping */
        long pg = sysconf(_SC_PAGESIZE);
        char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        mprotect(m + pg, pg, PROT_NONE);
        uint32_t *h = (uint32_t *)(m + pg - 8);
        h[0] = 1; h[1] = 0;
        check("header readable, entries unmapped", ioctl(q, IOC_WATCH_QUEUE_SET_FILTER, h));
        h[0] = 0;
        check("nr_filters 0, entries unmapped", ioctl(q, IOC_WATCH_QUEUE_SET_FILTER, h));
        h = (uint32_t *)(m + pg - 4);
        check("header straddling the end of the mapping", ioctl(q, IOC_WATCH_QUEUE_SET_FILTER, h));
        munmap(m, 2 * pg);
    }
    post_and_show("after the invalid filters (none stored)", q);

    /* ---- 16 entries are allowed */
    reset(); for (int i = 0; i < 16; i++) entry(i, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_SETATTR, 0, 0);
    check("16 entries, SETATTR only", set_filter(q));
    post_and_show("16 entries, SETATTR only", q);

    /* ---- subtype selection */
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_UPDATED, 0, 0);
    check("UPDATED only", set_filter(q));
    post_and_show("UPDATED only", q);
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, 0, 0, 0);
    check("KEY_NOTIFY with no subtype bits", set_filter(q));
    post_and_show("KEY_NOTIFY with no subtype bits", q);
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_UPDATED, 0, 0);
    for (int w = 1; w < 8; w++) f.filters[0].subtype_filter[w] = 0xdeadbeef;
    check("subtype_filter[1..7] garbage", set_filter(q));
    post_and_show("subtype_filter[1..7] garbage", q);

    /* ---- tag selection through info_mask */
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0x0200, 0xff00);
    check("tag 2 only (info_filter 0x200, mask 0xff00)", set_filter(q));
    post_and_show("tag 2 only", q);
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0x0000, 0x0100);
    check("tag bit 0 clear (info_filter 0, mask 0x100)", set_filter(q));
    post_and_show("tag bit 0 clear", q);
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0x0300, 0xff00);
    check("tag 3 (watched by nobody)", set_filter(q));
    post_and_show("tag 3", q);

    /* ---- type-info bits: always 0 in key records */
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0x10000, 0x10000);
    check("info FLAG_0 set required", set_filter(q));
    post_and_show("FLAG_0 set required", q);
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, ~0u, 0, 0xffff0000);
    check("type-info all clear required", set_filter(q));
    post_and_show("type-info all clear required", q);

    /* ---- OR of entries */
    reset();
    entry(0, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_UPDATED, 0x0100, 0xff00);
    entry(1, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_SETATTR, 0, 0);
    check("OR: (UPDATED, tag 1) | SETATTR", set_filter(q));
    post_and_show("OR: (UPDATED, tag 1) | SETATTR", q);

    /* ---- unknown types: ignored, and a filter of only unknown types rejects everything */
    reset(); entry(0, 2, ~0u, 0, 0); entry(1, 1000, ~0u, 0, 0);
    check("only unknown types 2 and 1000", set_filter(q));
    post_and_show("only unknown types", q);
    reset(); entry(0, 1000, ~0u, 0, 0); entry(1, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_UPDATED, 0, 0);
    check("unknown type 1000 + UPDATED", set_filter(q));
    post_and_show("unknown type 1000 + UPDATED", q);

    /* ---- META entry only: key records rejected, META still delivered */
    reset(); entry(0, WATCH_TYPE_META, ~0u, 0, 0);
    check("META only", set_filter(q));
    post_and_show("META only", q);
    check("META only: unwatch K2", watch_key(K2, q, -1));
    drain("META only: after unwatch K2 (removal bypasses the filter)", q);
    check("META only: rewatch K2 tag 2", watch_key(K2, q, 2));

    /* ---- META records bypass a filter that has no META entry */
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_SETATTR, 0, 0);
    check("SETATTR only", set_filter(q));
    check("SETATTR only: unwatch K2", watch_key(K2, q, -1));
    drain("SETATTR only: after unwatch K2", q);
    check("SETATTR only: rewatch K2 tag 2", watch_key(K2, q, 2));
    for (int i = 0; i < 40; i++)
        keyctl(KEYCTL_SETPERM, K1, KEY_POS_ALL | KEY_USR_ALL, 0, 0);
    drain("SETATTR only: 40 setperms on a 64-note queue", q);

    /* ---- replacement and removal */
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_UPDATED, 0x0100, 0xff00);
    check("replace: UPDATED tag 1", set_filter(q));
    post_and_show("replace: UPDATED tag 1", q);
    check("remove with NULL", ioctl(q, IOC_WATCH_QUEUE_SET_FILTER, NULL));
    post_and_show("after NULL", q);
    check("remove with NULL again", ioctl(q, IOC_WATCH_QUEUE_SET_FILTER, NULL));
    check("filter via the write end: SETATTR only",
          (reset(), entry(0, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_SETATTR, 0, 0), set_filter(fds[1])));
    post_and_show("filter set via the write end", q);
    close(fds[0]); close(fds[1]);

    /* ---- a filter set before the size and before any watch */
    q = wq_pipe(fds, 0, O_NONBLOCK);
    reset(); entry(0, WATCH_TYPE_KEY_NOTIFY, 1u << NOTIFY_KEY_UPDATED, 0, 0);
    check("filter before size", set_filter(q));
    check("size 4 after filter", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, 4));
    check("watch K1 tag 9", watch_key(K1, q, 9));
    post_and_show("filter, then size, then watch", q);
    close(fds[0]); close(fds[1]);
    return 0;
}
