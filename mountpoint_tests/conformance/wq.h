/* wq.h: shared helpers for the watch_queue conformance programs.
 *
 * The programs run twice: in a real kernel under qemu (scripts/kernel-oracle record writes
 * expected/NAME.out) and under `wqfs run` here (scripts/kernel-oracle compare). Their output must
 * therefore be symbolic and deterministic:
 *   - key serials are never printed: every key gets a name when the program learns its serial,
 *     and records show that name ("K1"); an unnamed serial prints as "unnamed";
 *   - errors are printed as errno names ("ENOBUFS"), never as numbers or strerror text;
 *   - asynchronous events (key garbage collection) are waited for with poll() and a bound.
 * One line per check. Only stdout is used.
 *
 * Raw syscalls only (no libkeyutils); every constant is defined here.
 */
#ifndef WQ_H
#define WQ_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "../c/uapi.h"  /* the kernel's constants, structs and raw syscalls, shared with c/ */

/* A filter with room for one entry more than the kernel takes (16), to test that limit. */
struct wq_filter {
    uint32_t nr_filters;
    uint32_t reserved;
    struct watch_notification_type_filter filters[17];
};

/* ---- errno names */
static const char *errname(int e)
{
    static char buf[32];
    switch (e) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(ECHILD) E(EAGAIN)
    E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR) E(EISDIR)
    E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EPIPE)
    E(ERANGE) E(EDEADLK) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY) E(ENODATA) E(ENOPKG)
    E(EBADSLT) E(ENOBUFS) E(EOPNOTSUPP) E(EDQUOT) E(ENOKEY) E(EKEYEXPIRED) E(EKEYREVOKED)
    E(EKEYREJECTED) E(EOVERFLOW) E(EMSGSIZE) E(ELOOP)
#undef E
    }
    snprintf(buf, sizeof(buf), "E#%d", e);
    return buf;
}

/* ---- output */
/* Read a whole file into a static buffer (NUL-terminated); NULL on error (errno set). The next
 * call reuses the buffer. */
static char *slurp(const char *path)
{
    static char all[1 << 20];
    size_t n = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    for (;;) {
        ssize_t r = read(fd, all + n, sizeof(all) - 1 - n);
        if (r <= 0)
            break;
        n += r;
    }
    close(fd);
    all[n] = 0;
    return all;
}

/* k's line of /proc/keys (in slurp's buffer), "" if k has none; NULL if the file cannot be read. */
static const char *proc_keys_line(key_serial_t k)
{
    char *all = slurp("/proc/keys");
    if (!all)
        return NULL;
    char want[16];
    snprintf(want, sizeof(want), "%08x ", (unsigned)k);
    for (char *line = all; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (strncmp(line, want, 9) == 0)
            return line;
        line = next;
    }
    return "";
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* "label: 0" / "label: -1 ENOKEY" (the value is printed only when it is not a serial) */
static long check(const char *label, long r)
{
    if (r < 0)
        out("%s: -1 %s", label, errname(errno));
    else
        out("%s: %ld", label, r);
    return r;
}

/* ---- key names */
#define MAXNAMES 512
static struct { key_serial_t serial; char name[24]; } names[MAXNAMES];
static int nnames;

static void name_key(key_serial_t serial, const char *name)
{
    for (int i = 0; i < nnames; i++)
        if (names[i].serial == serial) {
            snprintf(names[i].name, sizeof(names[i].name), "%s", name);
            return;
        }
    if (nnames < MAXNAMES) {
        names[nnames].serial = serial;
        snprintf(names[nnames].name, sizeof(names[nnames].name), "%s", name);
        nnames++;
    }
}

static const char *kname(key_serial_t serial)
{
    for (int i = 0; i < nnames; i++)
        if (names[i].serial == serial)
            return names[i].name;
    return "unnamed";
}

/* Result of a call that returns a serial: "label: KEY NAME" and the key gets NAME. */
static key_serial_t check_key(const char *label, long r, const char *name)
{
    if (r < 0) {
        out("%s: -1 %s", label, errname(errno));
        return -1;
    }
    const char *old = NULL;
    for (int i = 0; i < nnames; i++)
        if (names[i].serial == (key_serial_t)r)
            old = names[i].name;
    if (old && strcmp(old, name) != 0) {
        out("%s: key %s (already known as %s)", label, name, old);
        return (key_serial_t)r;
    }
    name_key((key_serial_t)r, name);
    out("%s: key %s", label, name);
    return (key_serial_t)r;
}

/* A serial the kernel returns for something already named: "label: key K1". */
static key_serial_t check_same(const char *label, long r)
{
    if (r < 0) {
        out("%s: -1 %s", label, errname(errno));
        return -1;
    }
    out("%s: key %s", label, kname((key_serial_t)r));
    return (key_serial_t)r;
}

/* ---- records */
static const char *key_subtype_names[8] = {
    "instantiated", "updated", "linked", "unlinked", "cleared", "revoked", "invalidated", "setattr",
};

/* Decode one record into s; return its length (0 on a malformed record). */
static size_t describe_record(const unsigned char *p, size_t left, char *s, size_t ssz)
{
    uint32_t w0, info;
    if (left < 8) {
        snprintf(s, ssz, "[short %zu]", left);
        return 0;
    }
    memcpy(&w0, p, 4);
    memcpy(&info, p + 4, 4);
    unsigned type = w0 & 0xffffff, subtype = w0 >> 24;
    unsigned len = info & WATCH_INFO_LENGTH, tag = (info & WATCH_INFO_ID) >> 8;
    unsigned tinfo = info >> 16, bit7 = info & 0x80;
    char extra[48] = "";
    if (tinfo || bit7)
        snprintf(extra, sizeof(extra), " info=%08x", info & ~(WATCH_INFO_ID | WATCH_INFO_LENGTH));
    if (len < 8 || len > left) {
        snprintf(s, ssz, "[bad length %u/%zu type=%u subtype=%u]", len, left, type, subtype);
        return 0;
    }
    if (type == WATCH_TYPE_META && subtype == WATCH_META_REMOVAL_NOTIFICATION) {
        if (len >= 16) {
            uint64_t id;
            memcpy(&id, p + 8, 8);
            snprintf(s, ssz, "[removal %s tag=%u len=%u%s]", kname((key_serial_t)id), tag, len, extra);
        } else {
            snprintf(s, ssz, "[removal tag=%u len=%u%s]", tag, len, extra);
        }
    } else if (type == WATCH_TYPE_META && subtype == WATCH_META_LOSS_NOTIFICATION) {
        snprintf(s, ssz, "[loss tag=%u len=%u%s]", tag, len, extra);
    } else if (type == WATCH_TYPE_KEY_NOTIFY && len == 16) {
        uint32_t key_id, aux;
        memcpy(&key_id, p + 8, 4);
        memcpy(&aux, p + 12, 4);
        const char *sn = subtype < 8 ? key_subtype_names[subtype] : "?";
        char auxs[40];
        if (subtype == NOTIFY_KEY_LINKED || subtype == NOTIFY_KEY_UNLINKED)
            snprintf(auxs, sizeof(auxs), "%s", kname((key_serial_t)aux));
        else if (subtype == NOTIFY_KEY_INSTANTIATED && aux)
            snprintf(auxs, sizeof(auxs), "-%s", errname(-(int32_t)aux));
        else
            snprintf(auxs, sizeof(auxs), "%u", aux);
        snprintf(s, ssz, "[%s %s aux=%s tag=%u%s]", kname((key_serial_t)key_id), sn, auxs, tag, extra);
    } else {
        snprintf(s, ssz, "[type=%u subtype=%u tag=%u len=%u%s]", type, subtype, tag, len, extra);
    }
    return len;
}

/* Describe a buffer of records, collapsing runs of identical records as "N*[...]". */
static void describe_buffer(const unsigned char *buf, size_t n, char *s, size_t ssz)
{
    char prev[160] = "", cur[160];
    int run = 0;
    size_t pos = 0, used = 0;
    s[0] = 0;
#define FLUSH() do { if (run > 1) used += snprintf(s + used, used < ssz ? ssz - used : 0, " %d*%s", run, prev); \
        else if (run) used += snprintf(s + used, used < ssz ? ssz - used : 0, " %s", prev); } while (0)
    while (pos < n) {
        size_t len = describe_record(buf + pos, n - pos, cur, sizeof(cur));
        if (run && strcmp(cur, prev) == 0) {
            run++;
        } else {
            FLUSH();
            strcpy(prev, cur);
            run = 1;
        }
        if (!len)
            break;
        pos += len;
    }
    FLUSH();
#undef FLUSH
}

/* One read of bufsize bytes: "label: read(N) = R [records]" or "label: read(N) = -1 EAGAIN". */
static long read_show(const char *label, int fd, size_t bufsize)
{
    static unsigned char buf[8192];
    char s[4096];
    ssize_t n = read(fd, buf, bufsize);
    if (n < 0) {
        out("%s: read(%zu) = -1 %s", label, bufsize, errname(errno));
        return -1;
    }
    describe_buffer(buf, n, s, sizeof(s));
    out("%s: read(%zu) = %zd%s", label, bufsize, n, s);
    return n;
}

/* Read everything queued (fd must be O_NONBLOCK) and show it all on one line:
 * "label: [rec] [rec]" or "label: none" (then the final EAGAIN/EOF is shown if not EAGAIN). */
static int drain(const char *label, int fd)
{
    static unsigned char all[65536];
    size_t total = 0;
    int reads = 0, err = 0;
    for (;;) {
        ssize_t n = read(fd, all + total, 4096);
        if (n < 0) {
            err = errno;
            break;
        }
        if (n == 0) {
            err = -1; /* EOF */
            break;
        }
        total += n;
        reads++;
        if (total + 4096 > sizeof(all))
            break;
    }
    char s[8192];
    describe_buffer(all, total, s, sizeof(s));
    const char *tail = err == EAGAIN ? "" : err == -1 ? " EOF" : errname(err);
    out("%s:%s%s%s", label, total ? s : " none", err && err != EAGAIN && err != -1 ? " then " : "", tail);
    return (int)total;
}

/* Wait (up to ms) until fd is readable; "label: readable after wait" / "label: nothing within Ns". */
static int wait_readable(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= ms)
            return 0;
        int r = poll(&p, 1, (int)(ms - spent));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
}

/* Wait for an asynchronous record (key GC) then drain: bounded at 10 s. */
static void await_drain(const char *label, int fd)
{
    if (!wait_readable(fd, 10000)) {
        out("%s: nothing within 10s", label);
        return;
    }
    /* GC may post to several watches in one pass; give it a moment to finish that pass. */
    usleep(200000);
    drain(label, fd);
}


static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* For operations that destroy keys: the operation's own records (nsync) are queued before it
 * returns, then key garbage collection posts REMOVAL records (nasync) asynchronously, in an order
 * that can depend on serials. Wait (bounded at 10 s) for nsync + nasync records on fd
 * (O_NONBLOCK), plus anything more within 300 ms, and print the first nsync in order, then the
 * rest sorted: "label: [sync] [sync] then [async] [async]". */
static void settle(const char *label, int fd, int nsync, int nasync)
{
    static unsigned char buf[4096];
    static char descs[64][160];
    char *ptrs[64];
    int got = 0, n = nsync + nasync;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r > 0) {
            for (size_t pos = 0; pos < (size_t)r && got < 64;) {
                size_t len = describe_record(buf + pos, r - pos, descs[got], sizeof(descs[got]));
                got++;
                if (!len)
                    break;
                pos += len;
            }
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        int wait_ms = got >= n ? 300 : (int)(10000 - spent);
        if (got >= 64 || wait_ms <= 0 || !wait_readable(fd, wait_ms))
            break;
    }
    for (int i = 0; i < got; i++)
        ptrs[i] = descs[i];
    if (got > nsync)
        qsort(ptrs + nsync, got - nsync, sizeof(ptrs[0]), cmpstr);
    char line[8192];
    size_t used = 0;
    line[0] = 0;
    for (int i = 0; i < got; i++)
        used += snprintf(line + used, used < sizeof(line) ? sizeof(line) - used : 0, "%s %s",
                         i == nsync && nsync ? " then" : "", ptrs[i]);
    if (got < n)
        out("%s: only %d of %d records within 10s:%s", label, got, n, got ? line : " none");
    else if (got > n)
        out("%s: %d more records than awaited:%s", label, got - n, line);
    else
        out("%s:%s", label, line);
}

static const char *revents_str(short r)
{
    static char s[128];
    s[0] = 0;
    if (!r)
        return "0";
    if (r & POLLIN) strcat(s, "|POLLIN");
    if (r & POLLPRI) strcat(s, "|POLLPRI");
    if (r & POLLOUT) strcat(s, "|POLLOUT");
    if (r & POLLERR) strcat(s, "|POLLERR");
    if (r & POLLHUP) strcat(s, "|POLLHUP");
    if (r & POLLNVAL) strcat(s, "|POLLNVAL");
    if (r & POLLRDNORM) strcat(s, "|POLLRDNORM");
    if (r & POLLWRNORM) strcat(s, "|POLLWRNORM");
    return s + 1;
}

/* "label: poll = N revents" with a zero timeout */
static void poll_show(const char *label, int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    int r = poll(&p, 1, 0);
    if (r < 0)
        out("%s: poll = -1 %s", label, errname(errno));
    else
        out("%s: poll = %d %s", label, r, revents_str(p.revents));
}

static void fionread_show(const char *label, int fd)
{
    int n = -12345;
    if (ioctl(fd, FIONREAD, &n) < 0)
        out("%s: FIONREAD = -1 %s", label, errname(errno));
    else
        out("%s: FIONREAD = %d", label, n);
}

/* A notification pipe; fds[0] read end, fds[1] write end. size <= 0: no size set. */
static int wq_pipe(int fds[2], int size, int flags)
{
    if (pipe2(fds, O_NOTIFICATION_PIPE | flags) < 0) {
        out("pipe2(O_NOTIFICATION_PIPE): -1 %s", errname(errno));
        exit(1);
    }
    if (size > 0 && ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, size) < 0) {
        out("IOC_WATCH_QUEUE_SET_SIZE %d: -1 %s", size, errname(errno));
        exit(1);
    }
    return fds[0];
}

/* Start: line-buffered stdout and a fresh anonymous session keyring named S. */
static key_serial_t wq_start(const char *program)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    out("# %s", program);
    long s = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    if (s < 0) {
        out("join anonymous session keyring: -1 %s", errname(errno));
        exit(1);
    }
    name_key((key_serial_t)s, "S");
    return (key_serial_t)s;
}

/* Run fn in a child with the given uid/gid (the parent is root); the child's output follows. */
static void as_user(uid_t uid, gid_t gid, void (*fn)(void *), void *arg)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
            out("setresuid(%u): -1 %s", (unsigned)uid, errname(errno));
            _exit(1);
        }
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        out("child as uid %u: status %d", (unsigned)uid, status);
}

#endif
