/* check.h: how the suite's C programs report a call, for the tests to compare: one line per
 * checked call, "label: VALUE" or "label: ERRNAME". Included by wq.h and by watch_mounts.c
 * (which is built with wqfs's own header instead of wq.h's uapi.h). */
#ifndef WQFS_TEST_CHECK_H
#define WQFS_TEST_CHECK_H
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* One line per checked call: "label: VALUE" or "label: ERRNAME". */
static inline void report(const char *label, long ret)
{
	if (ret < 0)
		printf("%s: %s\n", label, strerrorname_np(errno));
	else
		printf("%s: %ld\n", label, ret);
	fflush(stdout);
}

#define CHECK(label, expr) do { errno = 0; long _r = (long)(expr); report(label, _r); } while (0)

#endif
