/* Every key notification subtype that keyctl() can produce, read back and printed
 * in watch_test.c's format. First line: the serials, for the test to expect.
 *
 * (INSTANTIATED is not among them: a watch's key lookup waits for construction to
 * finish, so no watch can exist on a key when it is instantiated.) */
#include "wq.h"

static key_serial_t must(key_serial_t k, const char *what)
{
	if (k < 0)
		die(what);
	return k;
}

static void ok(long r, const char *what)
{
	if (r < 0)
		die(what);
}

int main(void)
{
	int q[2], l[2], f[2], n = -1;
	key_serial_t ring, key, other, k2, k3, k5;
	char small[8];

	setvbuf(stdout, NULL, _IOLBF, 0);
	ok(pipe2(q, O_NOTIFICATION_PIPE), "pipe2");
	ok(set_size(q[0], 256), "size");
	ok(set_key_filter(q[0]), "filter");

	ring = must(add_key("keyring", "wq-ring", NULL, 0, KEY_SPEC_SESSION_KEYRING), "add ring");
	key = must(add_key("user", "k", "v", 1, ring), "add k");
	ok(keyctl(KEYCTL_LINK, key, KEY_SPEC_SESSION_KEYRING, 0, 0), "link k @s");
	other = must(add_key("user", "other", "v", 1, KEY_SPEC_SESSION_KEYRING), "add other");
	k2 = must(add_key("user", "k2", "v", 1, KEY_SPEC_SESSION_KEYRING), "add k2");
	k3 = must(add_key("user", "k3", "v", 1, KEY_SPEC_SESSION_KEYRING), "add k3");
	k5 = must(add_key("user", "k5", "v", 1, KEY_SPEC_SESSION_KEYRING), "add k5");
	printf("ring=%d key=%d other=%d k2=%d k3=%d k5=%d\n", ring, key, other, k2, k3, k5);

	/* Phase 1: everything synchronous, one read of 433 bytes. */
	ok(watch_key(ring, q[0], 1), "watch ring");
	ok(watch_key(key, q[1], 2), "watch key");      /* either end names the queue */
	ok(keyctl(KEYCTL_UPDATE, key, (unsigned long)"v2", 2, 0), "update");
	ok(keyctl(KEYCTL_LINK, other, ring, 0, 0), "link");
	ok(keyctl(KEYCTL_UNLINK, other, ring, 0, 0), "unlink");
	ok(keyctl(KEYCTL_SETPERM, key, 0x3f3f0000, 0, 0), "setperm");
	ok(keyctl(KEYCTL_SET_TIMEOUT, key, 1000, 0, 0), "timeout");
	ok(keyctl(KEYCTL_CHOWN, key, -1, -1, 0), "chown nothing");   /* no record */
	ok(keyctl(KEYCTL_CHOWN, key, -1, getgid(), 0), "chown gid");
	ok(add_key("user", "k", "v3", 2, ring) == key ? 0 : -1, "add_key updates");
	ok(keyctl(KEYCTL_LINK, key, ring, 0, 0), "link again");
	ok(keyctl(KEYCTL_DESCRIBE, key, 0, 0, 0), "describe");       /* no record */
	ok(keyctl(KEYCTL_READ, key, 0, 0, 0), "read");               /* no record */
	ok(keyctl(KEYCTL_CLEAR, ring, 0, 0, 0), "clear");
	ok(keyctl(KEYCTL_MOVE, other, KEY_SPEC_SESSION_KEYRING, ring, 0), "move in");
	ok(keyctl(KEYCTL_MOVE, other, ring, ring, 0), "move nowhere");  /* no record */
	ok(watch_key(key, q[0], -1), "unwatch");
	ok(ioctl(q[0], FIONREAD, &n), "fionread");
	printf("FIONREAD = %d\n", n);
	errno = 0;
	printf("read 8: %s\n", read(q[0], small, sizeof(small)) < 0 ? strerrorname_np(errno) : "data");
	consume_once(q[0], 433);

	/* Phase 2: revoke; the removal comes when the key is garbage-collected. */
	ok(watch_key(k2, q[0], 3), "watch k2");
	ok(keyctl(KEYCTL_REVOKE, k2, 0, 0, 0), "revoke");
	CHECK("revoke again", keyctl(KEYCTL_REVOKE, k2, 0, 0, 0));
	CHECK("unwatch revoked", watch_key(k2, q[0], -1));
	consume_once(q[0], 16);
	consume_once(q[0], 16);

	/* Phase 3: invalidate; the key goes at once, and so does the watch. */
	ok(watch_key(k3, q[0], 4), "watch k3");
	ok(keyctl(KEYCTL_INVALIDATE, k3, 0, 0, 0), "invalidate");
	consume_once(q[0], 16);
	consume_once(q[0], 16);

	/* Phase 4: a queue of one page (32 notes) and 40 updates: 32 records, then a loss. */
	ok(pipe2(l, O_NOTIFICATION_PIPE), "pipe2 small");
	ok(set_size(l[0], 1), "size 1");
	ok(watch_key(k5, l[0], 5), "watch k5");
	for (int i = 0; i < 40; i++)
		ok(keyctl(KEYCTL_UPDATE, k5, (unsigned long)"u", 1, 0), "update k5");
	n = -1;
	ok(ioctl(l[0], FIONREAD, &n), "fionread");
	printf("FIONREAD = %d\n", n);
	consume_once(l[0], 433);
	consume_once(l[0], 433);
	consume_once(l[0], 433);

	/* Phase 5: filters select subtypes and tags; META records always pass. */
	struct {
		struct watch_notification_filter f;
		struct watch_notification_type_filter t[2];
	} filter = { { 1, 0 }, { { WATCH_TYPE_KEY_NOTIFY, 0, 0, { 1u << 1 } } } };
	ok(pipe2(f, O_NOTIFICATION_PIPE), "pipe2 filtered");
	ok(set_size(f[0], 32), "size 32");
	ok(set_filter(f[0], &filter), "updated only");
	ok(watch_key(k5, f[0], 6), "watch k5 tag 6");
	ok(watch_key(key, f[0], 7), "watch key tag 7");
	ok(keyctl(KEYCTL_SETPERM, k5, 0x3f3f0000, 0, 0), "setperm filtered out");
	ok(keyctl(KEYCTL_UPDATE, k5, (unsigned long)"f", 1, 0), "update passes");
	filter.t[0].subtype_filter[0] = 1u << 7;     /* setattr, tag 7 only */
	filter.t[0].info_mask = 0xff00;
	filter.t[0].info_filter = 7 << 8;
	ok(set_filter(f[0], &filter), "setattr of tag 7");
	ok(keyctl(KEYCTL_SETPERM, k5, 0x3f3f0000, 0, 0), "setperm on tag 6: out");
	ok(keyctl(KEYCTL_SETPERM, key, 0x3f3f0000, 0, 0), "setperm on tag 7: in");
	ok(set_filter(f[0], NULL), "no filter");
	ok(keyctl(KEYCTL_SETPERM, k5, 0x3f3f0000, 0, 0), "setperm unfiltered");
	filter.t[0].type = 9;                       /* unknown types only: rejects everything */
	ok(set_filter(f[0], &filter), "nothing passes");
	ok(keyctl(KEYCTL_UPDATE, k5, (unsigned long)"g", 1, 0), "update filtered out");
	ok(watch_key(k5, f[0], -1), "unwatch passes");
	consume_once(f[0], 433);

	/* Phase 6: after the write end is closed, an empty queue reads as EOF. */
	close(f[1]);
	consume_once(f[0], 433);
	return 0;
}
