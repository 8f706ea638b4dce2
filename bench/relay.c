/*
 * relay: the byte-relay baseline.  Spawns COMMAND with pipes and copies bytes both ways,
 * without looking at them: the limit of any stdio proxy (two more pipe hops per round
 * trip than a direct connection).
 *
 *   relay [--splice] -- COMMAND [ARG...]
 *
 * One thread, poll(2): per chunk one poll, one read and one write (or, with --splice,
 * one splice(2) from pipe to pipe, no copy through user space).  A direction whose
 * destination is full stops reading its source until it drains.  Exits with the
 * command's status once the command's stdout is at EOF.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define PROG	 "relay"
#define BUF_SIZE ((size_t)256 << 10)

struct dir {
	int src, dst;
	bool src_eof;
	bool blocked; /* dst is full: wait for POLLOUT */
	size_t off, len;
	char *buf;
};

static bool use_splice;

/* Move what src has to dst: one read and one write (or one splice). */
static void
pump(struct dir *d)
{
	if (use_splice) {
		ssize_t n = splice(d->src, NULL, d->dst, NULL, (size_t)1 << 20,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n == 0) {
			d->src_eof = true;
		} else if (n == -1 && errno == EAGAIN) {
			d->blocked = true;
		} else if (n == -1 && errno != EINTR) {
			d->src_eof = true;
		}
		return;
	}
	if (d->len == 0) {
		ssize_t n = read(d->src, d->buf, BUF_SIZE);

		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			d->src_eof = true;
			return;
		}
		if (n <= 0) {
			return;
		}
		d->off = 0;
		d->len = (size_t)n;
	}
	ssize_t w = write(d->dst, d->buf + d->off, d->len);

	if (w == -1 && errno != EAGAIN && errno != EINTR) {
		/* The reader is gone: drop what it would have got. */
		d->len = 0;
		d->src_eof = true;
		return;
	}
	if (w > 0) {
		d->off += (size_t)w;
		d->len -= (size_t)w;
	}
	d->blocked = d->len > 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: " PROG " [--splice] -- COMMAND [ARG...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct dir d[2];
	int to_child, from_child, i;
	pid_t pid;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--splice") == 0) {
			use_splice = true;
		} else {
			usage();
		}
	}
	if (i + 1 >= argc) {
		usage();
	}
	(void)signal(SIGPIPE, SIG_IGN);
	pid = bench_spawn(argv + i + 1, &to_child, &from_child);
	if (pid == -1) {
		bench_die(PROG, argv[i + 1]);
	}
	memset(d, 0, sizeof(d));
	d[0].src = STDIN_FILENO;
	d[0].dst = to_child;
	d[1].src = from_child;
	d[1].dst = STDOUT_FILENO;
	for (int k = 0; k < 2; k++) {
		d[k].buf = use_splice ? NULL : malloc(BUF_SIZE);
		if (!use_splice && d[k].buf == NULL) {
			bench_die(PROG, "cannot allocate a buffer");
		}
		bench_set_nonblock(d[k].src, 1);
		bench_set_nonblock(d[k].dst, 1);
	}
	while (!d[1].src_eof || d[1].len > 0) {
		struct pollfd p[2];
		int np = 0, which[2];

		for (int k = 0; k < 2; k++) {
			if (d[k].blocked) {
				p[np] = (struct pollfd){ .fd = d[k].dst, .events = POLLOUT };
			} else if (!d[k].src_eof) {
				p[np] = (struct pollfd){ .fd = d[k].src, .events = POLLIN };
			} else {
				continue;
			}
			which[np++] = k;
		}
		if (np == 0) {
			break;
		}
		if (poll(p, (nfds_t)np, -1) == -1) {
			if (errno == EINTR) {
				continue;
			}
			bench_die(PROG, "poll");
		}
		for (int j = 0; j < np; j++) {
			struct dir *x = &d[which[j]];

			if (p[j].revents == 0) {
				continue;
			}
			if (x->blocked && !use_splice) {
				pump(x); /* write the rest */
			} else {
				x->blocked = false;
				pump(x);
			}
			if (x->src_eof && x->len == 0 && x->dst != STDOUT_FILENO && x->dst >= 0) {
				/* Client EOF: the command's stdin closes too. */
				close(x->dst);
				x->dst = -1;
			}
		}
	}
	close(STDOUT_FILENO);
	int code = bench_wait(pid);

	free(d[0].buf);
	free(d[1].buf);
	return code;
}
