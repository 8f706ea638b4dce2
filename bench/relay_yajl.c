/*
 * relay_yajl: the relay-yajl baseline.  Like relay, but frames both directions by
 * newline and validates every complete line with one yajl_parse call before forwarding
 * it: the limit for a proxy that must not forward invalid JSON.
 *
 *   relay_yajl [--libev] -- COMMAND [ARG...]
 *
 * It waits with poll(2).  --libev: the same relay waits in libev's loop instead (an
 * ev_io watcher a direction, on libev's default backend, epoll on Linux), as mcpmux
 * does: the price of the event loop alone, with the same work around it.
 *
 * Lines are validated where they were read (a line split across reads is completed in
 * the same buffer, never re-parsed); the valid lines of one read leave with one write.
 * An invalid line is dropped.  Exits with the command's status once its stdout is at EOF.
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

#include <ev.h>

#include <yajl/yajl_parse.h>

#include "bench.h"

#define PROG	   "relay_yajl"
#define READ_CHUNK ((size_t)256 << 10)

struct dir {
	int src, dst;
	bool src_eof;
	char *in; /* read buffer: [0, len) holds bytes, [0, scanned) has no '\n' */
	size_t len, cap, scanned;
	char *out; /* what dst did not take yet */
	size_t out_off, out_len, out_cap;
	yajl_handle h;
	unsigned long long dropped;
};

static bool
line_valid(struct dir *d, const char *p, size_t n)
{
	yajl_status st;

	if (d->h == NULL) {
		d->h = yajl_alloc(NULL, NULL, NULL);
		if (d->h == NULL) {
			return false;
		}
		(void)yajl_config(d->h, yajl_allow_multiple_values, 1);
	}
	st = yajl_parse(d->h, (const unsigned char *)p, n);
	if (st == yajl_status_ok) {
		st = yajl_complete_parse(d->h);
	}
	if (st != yajl_status_ok) {
		/* yajl has no reset: a handle that saw an error is replaced. */
		yajl_free(d->h);
		d->h = NULL;
		return false;
	}
	return true;
}

/* Send [p, p+n) to dst; keep what it does not take (then reading src pauses). */
static void
emit(struct dir *d, const char *p, size_t n)
{
	if (n == 0) {
		return;
	}
	if (d->out_len == 0) {
		ssize_t w = write(d->dst, p, n);

		if (w == -1 && errno != EAGAIN && errno != EINTR) {
			d->src_eof = true; /* the reader is gone */
			return;
		}
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
		if (n == 0) {
			return;
		}
	}
	if (d->out_off + d->out_len + n > d->out_cap) {
		if (d->out_len > 0) {
			memmove(d->out, d->out + d->out_off, d->out_len);
		}
		d->out_off = 0;
		if (d->out_len + n > d->out_cap) {
			size_t cap = d->out_cap ? d->out_cap : READ_CHUNK;

			while (cap < d->out_len + n) {
				cap *= 2;
			}
			d->out = realloc(d->out, cap);
			if (d->out == NULL) {
				bench_die(PROG, "cannot grow an output buffer");
			}
			d->out_cap = cap;
		}
	}
	memcpy(d->out + d->out_off + d->out_len, p, n);
	d->out_len += n;
}

static void
flush_pending(struct dir *d)
{
	ssize_t w = write(d->dst, d->out + d->out_off, d->out_len);

	if (w == -1 && errno != EAGAIN && errno != EINTR) {
		d->out_len = 0;
		d->src_eof = true;
		return;
	}
	if (w > 0) {
		d->out_off += (size_t)w;
		d->out_len -= (size_t)w;
	}
	if (d->out_len == 0) {
		d->out_off = 0;
	}
}

/* One read; validate the complete lines; forward the valid ones. */
static void
pump(struct dir *d)
{
	if (d->cap - d->len < READ_CHUNK) {
		size_t cap = d->cap ? d->cap * 2 : READ_CHUNK * 2;

		d->in = realloc(d->in, cap);
		if (d->in == NULL) {
			bench_die(PROG, "cannot grow a read buffer");
		}
		d->cap = cap;
	}
	ssize_t n = read(d->src, d->in + d->len, d->cap - d->len);

	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		d->src_eof = true;
		return;
	}
	if (n <= 0) {
		return;
	}
	d->len += (size_t)n;

	size_t start = 0, run = 0;
	const char *nl;

	while ((nl = memchr(d->in + d->scanned, '\n', d->len - d->scanned)) != NULL) {
		size_t end = (size_t)(nl - d->in);

		if (end > start && !line_valid(d, d->in + start, end - start)) {
			emit(d, d->in + run, start - run);
			run = end + 1;
			d->dropped++;
		}
		start = end + 1;
		d->scanned = start;
	}
	emit(d, d->in + run, start - run);
	d->scanned = d->len;
	if (start > 0) {
		memmove(d->in, d->in + start, d->len - start);
		d->len -= start;
		d->scanned -= start;
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: " PROG " [--libev] -- COMMAND [ARG...]\n");
	exit(2);
}

static struct dir d[2];

static bool
done(void)
{
	return d[1].src_eof && d[1].out_len == 0;
}

/* After x's work: a source at EOF whose data all went closes its destination. */
static void
settle(struct dir *x)
{
	if (x->src_eof && x->out_len == 0 && x->dst != STDOUT_FILENO && x->dst >= 0) {
		close(x->dst);
		x->dst = -1;
	}
}

static void
run_poll(void)
{
	while (!done()) {
		struct pollfd p[2];
		int np = 0, which[2];

		for (int k = 0; k < 2; k++) {
			if (d[k].out_len > 0) {
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
			if (x->out_len > 0) {
				flush_pending(x);
			} else {
				pump(x);
			}
			settle(x);
		}
	}
}

static ev_io read_w[2], write_w[2];

/* Watch what direction k waits for: its destination to drain, or its source. */
static void
watch(struct ev_loop *loop, int k)
{
	if (d[k].out_len > 0) {
		ev_io_stop(loop, &read_w[k]);
		ev_io_start(loop, &write_w[k]);
	} else {
		ev_io_stop(loop, &write_w[k]);
		if (d[k].src_eof) {
			ev_io_stop(loop, &read_w[k]);
		} else {
			ev_io_start(loop, &read_w[k]);
		}
	}
	settle(&d[k]);
	if (done()) {
		ev_break(loop, EVBREAK_ALL);
	}
}

static void
on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	pump(&d[w - read_w]);
	watch(loop, (int)(w - read_w));
}

static void
on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	flush_pending(&d[w - write_w]);
	watch(loop, (int)(w - write_w));
}

static void
run_libev(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

	if (loop == NULL) {
		bench_die(PROG, "ev_loop_new");
	}
	for (int k = 0; k < 2; k++) {
		ev_io_init(&read_w[k], on_readable, d[k].src, EV_READ);
		ev_io_init(&write_w[k], on_writable, d[k].dst, EV_WRITE);
		ev_io_start(loop, &read_w[k]);
	}
	ev_run(loop, 0);
	ev_loop_destroy(loop);
}

int
main(int argc, char **argv)
{
	int to_child, from_child, a = 1;
	bool libev = false;
	pid_t pid;

	if (argc > a && strcmp(argv[a], "--libev") == 0) {
		libev = true;
		a++;
	}
	if (argc < a + 2 || strcmp(argv[a], "--") != 0) {
		usage();
	}
	(void)signal(SIGPIPE, SIG_IGN);
	pid = bench_spawn(argv + a + 1, &to_child, &from_child);
	if (pid == -1) {
		bench_die(PROG, argv[a + 1]);
	}
	d[0].src = STDIN_FILENO;
	d[0].dst = to_child;
	d[1].src = from_child;
	d[1].dst = STDOUT_FILENO;
	for (int k = 0; k < 2; k++) {
		bench_set_nonblock(d[k].src, 1);
		bench_set_nonblock(d[k].dst, 1);
	}
	if (libev) {
		run_libev();
	} else {
		run_poll();
	}
	close(STDOUT_FILENO);
	int code = bench_wait(pid);

	for (int k = 0; k < 2; k++) {
		if (d[k].dropped > 0) {
			fprintf(stderr, PROG ": dropped %llu invalid line(s) %s\n", d[k].dropped,
				k == 0 ? "from the client" : "from the server");
		}
		if (d[k].h != NULL) {
			yajl_free(d[k].h);
		}
		free(d[k].in);
		free(d[k].out);
	}
	return code;
}
