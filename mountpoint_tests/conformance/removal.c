/* removal.c: REMOVAL records on unwatch and on destruction, two queues on one key, closing a
 * queue (no records, watches dropped), EOF after the write end closes (with records and a loss
 * pending), poll, FIONREAD, write() (EXDEV), splice and tee. */
#include "wq.h"

static void update(key_serial_t k)
{
    keyctl(KEYCTL_UPDATE, k, (unsigned long)"u", 1, 0);
}

int main(void)
{
    key_serial_t S = wq_start("removal");
    int a[2], b[2], c[2];
    int qa = wq_pipe(a, 32, O_NONBLOCK);
    int qb = wq_pipe(b, 32, O_NONBLOCK);

    /* ---- two queues on one key */
    key_serial_t K = check_key("add_key user k @s", add_key("user", "k", "a", 1, S), "K");
    check("qa: watch K tag 1", watch_key(K, qa, 1));
    check("qb: watch K tag 2", watch_key(K, qb, 2));
    update(K);
    drain("qa after update K", qa);
    drain("qb after update K", qb);
    check("qa: unwatch K", watch_key(K, qa, -1));
    drain("qa after unwatch", qa);
    drain("qb after qa's unwatch", qb);
    update(K);
    drain("qa after update K (unwatched)", qa);
    drain("qb after update K", qb);
    check("qa: watch K tag 3 again", watch_key(K, qa, 3));
    check("qa: watch S tag 4", watch_key(S, qa, 4));
    check("qb: watch S tag 5", watch_key(S, qb, 5));

    /* ---- destruction: unlink the last link; both queues get a REMOVAL with their own tag */
    check("unlink K from S (last link)", keyctl(KEYCTL_UNLINK, K, S, 0, 0));
    settle("qa: unlink, then K destroyed", qa, 1, 1);
    settle("qb: unlink, then K destroyed", qb, 1, 1);
    check("qa: unwatch destroyed K", watch_key(K, qa, -1));

    /* ---- invalidation destroys too; a removal after a watch was dropped by unwatch is not sent */
    key_serial_t K2 = check_key("add_key user k2 @s", add_key("user", "k2", "a", 1, S), "K2");
    drain("qa after add_key k2", qa);
    drain("qb after add_key k2", qb);
    check("qa: watch K2 tag 6", watch_key(K2, qa, 6));
    check("qb: watch K2 tag 7", watch_key(K2, qb, 7));
    check("qb: unwatch K2", watch_key(K2, qb, -1));
    drain("qb after unwatch K2", qb);
    check("invalidate K2", keyctl(KEYCTL_INVALIDATE, K2, 0, 0, 0));
    settle("qa: invalidate, then K2 destroyed", qa, 1, 1);
    out("qb: nothing within 1s: %s", wait_readable(qb, 1000) ? "no" : "yes");

    /* ---- closing a queue posts nothing and drops its watches */
    key_serial_t K3 = check_key("add_key user k3 @s", add_key("user", "k3", "a", 1, S), "K3");
    drain("qa after add_key k3", qa);
    drain("qb after add_key k3", qb);
    int qc = wq_pipe(c, 32, O_NONBLOCK);
    check("qc: watch K3 tag 8", watch_key(K3, qc, 8));
    check("qb: watch K3 tag 9", watch_key(K3, qb, 9));
    close(c[0]);
    close(c[1]);
    update(K3);
    drain("qb after qc closed and update K3", qb);
    qc = wq_pipe(c, 32, O_NONBLOCK);
    check("new qc (maybe same fd numbers): watch K3 tag 10", watch_key(K3, qc, 10));
    update(K3);
    drain("new qc after update K3", qc);
    close(c[0]);
    close(c[1]);

    /* ---- closing only the read end: the queue lives on */
    qc = wq_pipe(c, 32, O_NONBLOCK);
    check("qc2: watch K3 tag 11", watch_key(K3, qc, 11));
    close(c[0]);
    update(K3);
    check("qc2 write end: unwatch K3", watch_key(K3, c[1], -1));
    check("qc2 write end: watch K3 tag 12", watch_key(K3, c[1], 12));
    close(c[1]);
    check("qb: unwatch K3", watch_key(K3, qb, -1));
    drain("qb after unwatch K3", qb);

    /* ---- EOF after the write end closes */
    qc = wq_pipe(c, 1, O_NONBLOCK);
    check("qe: watch K3 tag 13", watch_key(K3, qc, 13));
    for (int i = 0; i < 34; i++)
        update(K3);
    poll_show("qe: full, write end open", qc, POLLIN);
    check("qe: close the write end", close(c[1]));
    poll_show("qe: full, write end closed", qc, POLLIN);
    fionread_show("qe: full", qc);
    update(K3);
    read_show("qe: read 4096", qc, 4096);
    poll_show("qe: loss pending, write end closed", qc, POLLIN);
    read_show("qe: read (loss before EOF)", qc, 4096);
    read_show("qe: read at EOF", qc, 4096);
    poll_show("qe: empty, write end closed", qc, POLLIN);
    update(K3);
    poll_show("qe: a record posted after the write end closed", qc, POLLIN);
    read_show("qe: read it", qc, 4096);
    read_show("qe: EOF again", qc, 4096);
    check("qe: watch S via the read end after the write end closed", watch_key(S, qc, 14));
    close(qc);

    /* ---- a blocking read at EOF returns 0 */
    qc = wq_pipe(c, 4, 0);
    close(c[1]);
    read_show("blocking queue, no writer, empty", qc, 4096);
    close(qc);

    /* ---- write() */
    qc = wq_pipe(c, 4, O_NONBLOCK);
    check("write 8 bytes to the write end", write(c[1], "12345678", 8));
    check("write 8 bytes to the read end", write(c[0], "12345678", 8));
    check("write 0 bytes to the write end", write(c[1], "", 0));
    poll_show("write end", c[1], POLLOUT);
    fionread_show("after writes", c[0]);
    read_show("after writes", c[0], 4096);
    close(c[0]);
    check("write 8 bytes with the read end closed", write(c[1], "12345678", 8));
    check("write 0 bytes with the read end closed", write(c[1], "", 0));
    close(c[1]);

    /* ---- splice and tee */
    {
        int n[2];
        qc = wq_pipe(c, 4, O_NONBLOCK);
        pipe2(n, O_NONBLOCK);
        write(n[1], "abcd", 4);
        check("splice from an ordinary pipe into the notification pipe",
              splice(n[0], NULL, c[1], NULL, 4, SPLICE_F_NONBLOCK));
        key_serial_t K4 = check_key("add_key user k4 @s", add_key("user", "k4", "a", 1, S), "K4");
        check("watch K4 tag 15", watch_key(K4, c[0], 15));
        update(K4);
        check("splice from the notification pipe into an ordinary pipe",
              splice(c[0], NULL, n[1], NULL, 4096, SPLICE_F_NONBLOCK));
        check("tee from the notification pipe", tee(c[0], n[1], 4096, SPLICE_F_NONBLOCK));
        check("tee into the notification pipe", tee(n[0], c[1], 4096, SPLICE_F_NONBLOCK));
        drain("notification pipe after splice and tee", c[0]);
        close(n[0]); close(n[1]); close(c[0]); close(c[1]);
    }

    /* ---- S destroyed? No: it is our session. Unwatch S on both queues. */
    check("qa: unwatch S", watch_key(S, qa, -1));
    check("qb: unwatch S", watch_key(S, qb, -1));
    drain("qa at the end", qa);
    drain("qb at the end", qb);
    return 0;
}
