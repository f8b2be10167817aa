/* queue.c: pipe2 flags, IOC_WATCH_QUEUE_SET_SIZE (sizes, capacity, EINVAL, EBUSY, ENODEV, ENOTTY),
 * F_SETPIPE_SZ/F_GETPIPE_SZ, read sizes (0, ENOBUFS, whole records, several per read), loss
 * (placement, the LTP wqueue09 example, poll and FIONREAD with only a loss pending). */
#include "wq.h"

static key_serial_t K;

static void updates(int n)
{
    for (int i = 0; i < n; i++)
        if (keyctl(KEYCTL_UPDATE, K, (unsigned long)"x", 1, 0) < 0) {
            out("update %d: -1 %s", i, errname(errno));
            return;
        }
}

/* Capacity for a given size: watch K, post `posts` updates, count records and losses. */
static void capacity(int size, int posts)
{
    int fds[2];
    char label[64];
    wq_pipe(fds, size, O_NONBLOCK);
    snprintf(label, sizeof(label), "size %d: F_GETPIPE_SZ", size);
    check(label, fcntl(fds[0], F_GETPIPE_SZ));
    watch_key(K, fds[0], 1);
    updates(posts);
    int records = 0, losses = 0, other = 0;
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t p = 0; p + 8 <= n;) {
            uint32_t w0, info;
            memcpy(&w0, buf + p, 4);
            memcpy(&info, buf + p + 4, 4);
            if ((w0 & 0xffffff) == WATCH_TYPE_KEY_NOTIFY)
                records++;
            else if ((w0 & 0xffffff) == WATCH_TYPE_META && (w0 >> 24) == WATCH_META_LOSS_NOTIFICATION)
                losses++;
            else
                other++;
            if ((info & 0x7f) < 8)
                break;
            p += info & 0x7f;
        }
    }
    snprintf(label, sizeof(label), "size %d, %d updates", size, posts);
    out("%s: %d records, %d loss records%s", label, records, losses, other ? ", other records" : "");
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    key_serial_t S = wq_start("queue");
    int fds[2], q, nfd[2];
    char label[96];

    K = check_key("add_key user k1 @s", add_key("user", "k1", "a", 1, KEY_SPEC_SESSION_KEYRING), "K1");
    (void)S;

    /* ---- pipe2 flags */
    int p2[2];
    check("pipe2(O_NOTIFICATION_PIPE)", pipe2(p2, O_NOTIFICATION_PIPE));
    close(p2[0]); close(p2[1]);
    check("pipe2(O_NOTIFICATION_PIPE|O_CLOEXEC|O_NONBLOCK|O_DIRECT)",
          pipe2(p2, O_NOTIFICATION_PIPE | O_CLOEXEC | O_NONBLOCK | O_DIRECT));
    close(p2[0]); close(p2[1]);
    check("pipe2(O_NOTIFICATION_PIPE|O_APPEND)", pipe2(p2, O_NOTIFICATION_PIPE | O_APPEND));
    check("pipe2(O_NOTIFICATION_PIPE|O_TRUNC)", pipe2(p2, O_NOTIFICATION_PIPE | O_TRUNC));

    /* ---- SET_SIZE errors */
    if (pipe(nfd) == 0) {
        check("SET_SIZE on an ordinary pipe", ioctl(nfd[0], IOC_WATCH_QUEUE_SET_SIZE, 1));
        check("SET_FILTER NULL on an ordinary pipe", ioctl(nfd[0], IOC_WATCH_QUEUE_SET_FILTER, NULL));
        close(nfd[0]); close(nfd[1]);
    }
    int devnull = open("/dev/null", O_RDWR);
    check("SET_SIZE on /dev/null", ioctl(devnull, IOC_WATCH_QUEUE_SET_SIZE, 1));
    close(devnull);
    check("SET_SIZE on a closed fd", ioctl(999, IOC_WATCH_QUEUE_SET_SIZE, 1));

    q = wq_pipe(fds, 0, O_NONBLOCK);
    check("SET_SIZE 1<<32|1 (the argument is an unsigned int)", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, (1UL << 32) | 1));
    check("F_GETPIPE_SZ after that", fcntl(q, F_GETPIPE_SZ));
    close(fds[0]); close(fds[1]);

    q = wq_pipe(fds, 0, O_NONBLOCK);
    check("F_GETPIPE_SZ before a size", fcntl(q, F_GETPIPE_SZ));
    check("F_SETPIPE_SZ 4096 before a size", fcntl(q, F_SETPIPE_SZ, 4096));
    check("SET_SIZE 0", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, 0));
    check("SET_SIZE 513", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, 513));
    check("SET_SIZE -1", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, -1));
    check("SET_SIZE 512 via the write end", ioctl(fds[1], IOC_WATCH_QUEUE_SET_SIZE, 512));
    check("SET_SIZE 512 again", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, 512));
    check("SET_SIZE 0 after a size (EBUSY before EINVAL?)", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, 0));
    check("F_GETPIPE_SZ after size 512", fcntl(q, F_GETPIPE_SZ));
    check("F_SETPIPE_SZ 4096", fcntl(q, F_SETPIPE_SZ, 4096));
    close(fds[0]); close(fds[1]);

    /* ---- no size: everything is dropped, no loss record */
    q = wq_pipe(fds, 0, O_NONBLOCK);
    check("no size: watch K1", watch_key(K, q, 1));
    updates(3);
    read_show("no size: after 3 updates", q, 4096);
    fionread_show("no size", q);
    check("no size: SET_SIZE 4 afterwards", ioctl(q, IOC_WATCH_QUEUE_SET_SIZE, 4));
    updates(1);
    read_show("no size then size 4: after 1 update", q, 4096);
    close(fds[0]); close(fds[1]);

    /* ---- capacity: 32 * ceil(n/32) records */
    capacity(1, 40);
    capacity(31, 40);
    capacity(32, 40);
    capacity(33, 80);
    capacity(100, 140);
    capacity(256, 300);
    capacity(512, 560);

    /* ---- read sizes */
    q = wq_pipe(fds, 8, O_NONBLOCK);
    check("watch K1 tag 7", watch_key(K, q, 7));
    read_show("empty queue", q, 4096);
    updates(3);
    fionread_show("3 records queued", q);
    read_show("read 0 bytes", q, 0);
    read_show("read 8 bytes (record is 16)", q, 8);
    read_show("read 15 bytes", q, 15);
    read_show("read 16 bytes", q, 16);
    read_show("read 40 bytes (two fit)", q, 40);
    updates(3);
    read_show("read 47 bytes (3 queued)", q, 47);
    read_show("read 48 bytes (1 queued)", q, 48);
    updates(4);
    read_show("read 4096 bytes (4 queued)", q, 4096);
    read_show("read again", q, 4096);
    close(fds[0]); close(fds[1]);

    /* ---- LTP wqueue09: size 1 (32 notes), 64 updates, 433-byte reads */
    q = wq_pipe(fds, 1, O_NONBLOCK);
    check("wqueue09: watch K1 tag 1", watch_key(K, q, 1));
    updates(64);
    fionread_show("wqueue09: after 64 updates", q);
    poll_show("wqueue09: full", q, POLLIN);
    read_show("wqueue09 read#1", q, 433);
    read_show("wqueue09 read#2", q, 433);
    fionread_show("wqueue09: only the loss pending", q);
    poll_show("wqueue09: only the loss pending", q, POLLIN);
    read_show("wqueue09: read 7 bytes with the loss pending", q, 7);
    read_show("wqueue09 read#3", q, 433);
    read_show("wqueue09 read#4", q, 433);
    close(fds[0]); close(fds[1]);

    /* ---- loss placement when more records follow the flagged one */
    q = wq_pipe(fds, 1, O_NONBLOCK);
    check("placement: watch K1 tag 2", watch_key(K, q, 2));
    updates(40);                   /* 32 queued, 8 lost: the 32nd carries the flag */
    read_show("placement: read one record", q, 16);
    updates(1);                    /* 32 queued again: the flagged one is no longer last */
    updates(1);                    /* lost: flags the newest (the one just queued) */
    read_show("placement: read all", q, 4096);
    read_show("placement: next read", q, 4096);
    read_show("placement: then", q, 4096);
    close(fds[0]); close(fds[1]);

    /* ---- loss record in a read whose buffer cannot take it after the flagged record */
    q = wq_pipe(fds, 1, O_NONBLOCK);
    watch_key(K, q, 3);
    updates(33);                   /* flag on #32 */
    read_show("tight: read 31 records + 4 bytes", q, 31 * 16 + 4);
    updates(1);                    /* #33 queued behind the flagged #32 */
    read_show("tight: read 16+4 bytes", q, 20);
    read_show("tight: read 4 bytes (loss pending, a record queued)", q, 4);
    read_show("tight: read 8 bytes", q, 8);
    read_show("tight: read rest", q, 4096);
    close(fds[0]); close(fds[1]);

    /* ---- blocking read with only a loss pending returns it at once */
    q = wq_pipe(fds, 1, 0);
    watch_key(K, q, 4);
    updates(33);
    read_show("blocking: read 4096", q, 4096);
    poll_show("blocking: loss pending", q, POLLIN);
    read_show("blocking: read 4096 again (does not block)", q, 4096);
    poll_show("blocking: empty", q, POLLIN);
    close(fds[0]); close(fds[1]);

    /* ---- loss when the read end is full, then records keep flowing after a drain */
    q = wq_pipe(fds, 32, O_NONBLOCK);
    watch_key(K, q, 5);
    updates(32);
    snprintf(label, sizeof(label), "full 32: drain");
    drain(label, q);
    updates(2);
    drain("after drain: 2 updates", q);
    close(fds[0]); close(fds[1]);
    return 0;
}
