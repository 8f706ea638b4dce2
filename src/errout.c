/*
 * errout: mcpmux's stderr as a bounded, non-blocking queue.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/errout.h"
#include "mcpmux/sys.h"
#include "mcpmux/wbuf.h"

static struct {
	struct ev_loop *loop;
	bool on;
	bool dead; /* stderr cannot be written at all: everything is discarded */
	bool shared;
	int fd;
	struct wbuf q;
	ev_io out_w;
	ev_timer tick_w; /* repeated diagnostics are summed up once a second */
	unsigned long dropped;
	struct errout_waiter *waiters;
	/*
	 * The last byte relayed from a server was not a newline: mcpmux's own next line
	 * (a diagnostic, a record of a log on stderr) starts with one, or it would be glued
	 * to the server's unfinished line, and neither would read right.
	 */
	bool mid_line;
} E = { .fd = -1 };

/* Queue whole lines of mcpmux's own, on a line of their own.  0, or -1 (ENOMEM). */
static int
own_append(const char *p, size_t len)
{
	if (E.mid_line) {
		if (wbuf_append(&E.q, "\n", 1) == -1) {
			return -1;
		}
		E.mid_line = false;
	}
	return wbuf_append(&E.q, p, len);
}

static void errout_on_writable(struct ev_loop *loop, ev_io *w, int revents);
static void errout_on_tick(struct ev_loop *loop, ev_timer *w, int revents);

static void
watch(bool on)
{
	if (on && !ev_is_active(&E.out_w)) {
		ev_io_start(E.loop, &E.out_w);
		ev_unref(E.loop); /* never what keeps the loop running */
	} else if (!on && ev_is_active(&E.out_w)) {
		ev_ref(E.loop);
		ev_io_stop(E.loop, &E.out_w);
	}
}

static void
wake_waiters(void)
{
	while (E.waiters != NULL && (errout_room() > 0 || E.dead)) {
		struct errout_waiter *w = E.waiters;

		E.waiters = w->next;
		w->next = NULL;
		w->waiting = false;
		w->on_room(w);
	}
}

static void
flush(void)
{
	if (E.dead || wbuf_len(&E.q) == 0) {
		watch(false);
		return;
	}
	if (wbuf_flush(&E.q, E.fd) == -1) {
		/* EPIPE, EBADF, EIO: nobody will ever read it. */
		E.dead = true;
		wbuf_release(&E.q);
		watch(false);
		wake_waiters();
		return;
	}
	if (wbuf_len(&E.q) == 0 && E.dropped > 0) {
		char line[128];
		int n = snprintf(
			line, sizeof(line),
			"mcpmux: %lu lines of stderr dropped (stderr was not read in time)\n",
			E.dropped);

		E.dropped = 0;
		if (n > 0 && own_append(line, (size_t)n) == 0) {
			(void)wbuf_flush(&E.q, E.fd);
		}
	}
	watch(wbuf_len(&E.q) > 0);
	if (errout_room() >= ERROUT_MAX / 2) {
		wake_waiters();
	}
}

void
errout_lines(const char *p, size_t len)
{
	if (!E.on) {
		if (E.mid_line && len > 0) {
			(void)sys_write_all(STDERR_FILENO, "\n", 1);
			E.mid_line = false;
		}
		(void)sys_write_all(STDERR_FILENO, p, len);
		return;
	}
	if (E.dead || len == 0) {
		return;
	}
	/* One unit bigger than the bound still goes when nothing waits before it. */
	if ((wbuf_len(&E.q) > 0 && wbuf_len(&E.q) + len > ERROUT_MAX) || own_append(p, len) == -1) {
		for (const char *nl = p; (nl = memchr(nl, '\n', len - (size_t)(nl - p))) != NULL;
		     nl++) {
			E.dropped++;
		}
		return;
	}
	flush();
}

/* diag's sink: a whole diagnostic line, dropped (and counted) when there is no room. */
static void
sink_write(const char *line, size_t len)
{
	errout_lines(line, len);
}

static void
sink_suppressing(void)
{
	if (!ev_is_active(&E.tick_w)) {
		ev_timer_again(E.loop, &E.tick_w);
		ev_unref(E.loop);
	}
}

static const struct diag_sink sink = {
	.write = sink_write,
	.suppressing = sink_suppressing,
};

/* After errout_stop(): one non-blocking try per line, then it is lost. */
static int final_fd = -1;

static void
final_write(const char *line, size_t len)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t) "\n", .iov_len = 1 },
		{ .iov_base = (void *)(uintptr_t)line, .iov_len = len },
	};
	bool nl = E.mid_line;

	if (sys_writev(final_fd, iov + !nl, 2 - !nl) == -1) {
		return;
	}
	E.mid_line = false;
}

static const struct diag_sink final_sink = {
	.write = final_write,
};

static void
errout_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	flush();
}

static void
errout_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	if (!diag_tick(sys_mono())) {
		ev_ref(loop);
		ev_timer_stop(loop, w);
	}
}

int
errout_start(struct ev_loop *loop)
{
	int fd = sys_stdio_open(STDERR_FILENO, &E.shared);

	if (fd == -1) {
		return -1;
	}
	E.loop = loop;
	E.fd = fd;
	E.on = true;
	E.dead = false;
	wbuf_init(&E.q, ERROUT_MAX);
	ev_io_init(&E.out_w, errout_on_writable, fd, EV_WRITE);
	ev_init(&E.tick_w, errout_on_tick);
	E.tick_w.repeat = 1.;
	diag_set_sink(&sink);
	return 0;
}

void
errout_stop(double deadline)
{
	if (!E.on) {
		return;
	}
	(void)diag_tick(sys_mono() + 3600.); /* the last sums, into the queue */
	diag_set_sink(NULL);
	for (;;) {
		flush();
		double left = deadline - sys_mono();

		if (E.dead || wbuf_len(&E.q) == 0 || left <= 0) {
			break;
		}
		struct pollfd p = { .fd = E.fd, .events = POLLOUT };

		if (poll(&p, 1, (int)(left * 1000.) + 1) == -1 && errno != EINTR) {
			break;
		}
	}
	watch(false);
	if (ev_is_active(&E.tick_w)) {
		ev_ref(E.loop);
		ev_timer_stop(E.loop, &E.tick_w);
	}
	wbuf_release(&E.q);
	if (!E.shared && !E.dead) {
		/* Our own description stays open to the end: last words never block either. */
		final_fd = E.fd;
		diag_set_sink(&final_sink);
	} else {
		sys_stdio_close(E.fd, STDERR_FILENO, E.shared);
	}
	E.fd = -1;
	E.on = false;
	E.waiters = NULL;
}

size_t
errout_room(void)
{
	if (!E.on || E.dead) {
		return ERROUT_MAX;
	}
	return wbuf_len(&E.q) >= ERROUT_MAX ? 0 : ERROUT_MAX - wbuf_len(&E.q);
}

void
errout_relay(const char *p, size_t len)
{
	if (len > 0) {
		E.mid_line = p[len - 1] != '\n';
	}
	if (!E.on) {
		(void)sys_write_all(STDERR_FILENO, p, len);
		return;
	}
	if (E.dead || len == 0) {
		return;
	}
	if (wbuf_len(&E.q) == 0) {
		/* Nothing queued: straight out, only the rest is queued. */
		if (wbuf_send(&E.q, E.fd, p, len, NULL, 0) == -1) {
			E.dead = errno != ENOMEM;
			return;
		}
		watch(wbuf_len(&E.q) > 0);
		return;
	}
	if (wbuf_append(&E.q, p, len) == -1) {
		return; /* out of memory: lost, like a line diag could not format */
	}
	flush();
}

void
errout_wait(struct errout_waiter *w)
{
	if (w->waiting) {
		return;
	}
	w->waiting = true;
	w->next = E.waiters;
	E.waiters = w;
}

void
errout_cancel(struct errout_waiter *w)
{
	if (!w->waiting) {
		return;
	}
	for (struct errout_waiter **pp = &E.waiters; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	w->next = NULL;
	w->waiting = false;
}

bool
errout_drained(void)
{
	return !E.on || E.dead || wbuf_len(&E.q) == 0;
}
