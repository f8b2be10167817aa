/* watch_test.c with arguments: wq_watch [-s NOTES] [-n] [-w] KEY:TAG...
 *
 * Like samples/watch_queue/watch_test.c: pipe2(O_NOTIFICATION_PIPE), SET_SIZE,
 * the key-only filter (-n: none), a watch per KEY:TAG (KEY a serial or a
 * special name @t @p @s @u @us), then the consumer loop with 433-byte reads until EOF.
 * -w closes the write end first, so an empty queue reads as EOF.
 * "ready" goes to stderr once every watch is set; stdout is watch_test's.
 */
#include "wq.h"

int main(int argc, char **argv)
{
	int pipefd[2], fd, opt, size = 256, filter = 1, close_writer = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "s:nw")) != -1) {
		switch (opt) {
		case 's': size = atoi(optarg); break;
		case 'n': filter = 0; break;
		case 'w': close_writer = 1; break;
		default: fprintf(stderr, "usage: wq_watch [-s NOTES] [-n] [-w] KEY:TAG...\n"); exit(2);
		}
	}

	if (pipe2(pipefd, O_NOTIFICATION_PIPE) == -1)
		die("pipe2");
	fd = pipefd[0];

	if (ioctl(fd, IOC_WATCH_QUEUE_SET_SIZE, size) == -1)
		die("watch_queue(size)");
	if (filter && set_key_filter(fd) == -1)
		die("watch_queue(filter)");

	for (int i = optind; i < argc; i++) {
		char *colon = strchr(argv[i], ':');
		long key = key_spec(argv[i]);
		int tag = colon ? atoi(colon + 1) : i - optind + 1;
		if (watch_key(key, fd, tag) == -1)
			die("keyctl");
	}
	if (close_writer)
		close(pipefd[1]);
	fprintf(stderr, "ready\n");

	while (consume_once(fd, 433) > 0)
		;
	exit(0);
}
