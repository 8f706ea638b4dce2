/*
 * errout: mcpmux's stderr as a bounded, non-blocking queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/errout.h"
#include "mcpmux/sys.h"
#include "mcpmux/wbuf.h"

/* How long after a write failed for a full file system it is tried again. */
#define ERROUT_RETRY_S 1.

/* Why lines are dropped. */
enum {
	DROP_SLOW,  /* stderr was not read in time */
	DROP_NOMEM, /* no memory to queue them */
	DROP_FULL,  /* stderr's file system was full (full_errno) */
	DROP_WHYS
};

static struct {
	struct ev_loop *loop;
	bool on;
	bool dead;	 /* stderr cannot be written at all: everything is discarded */
	bool full;	 /* its file system is full: nothing is written until retry_w */
	bool relay_skip; /* a relayed line's start was dropped: its rest is too */
	ev_timer retry_w;
	/* Why writes failed while stderr's file system was full (ENOSPC, EDQUOT, EFBIG). */
	int full_errno;
	bool shared;
	int fd;
	struct wbuf q;
	ev_io out_w;
	ev_timer tick_w;		/* repeated diagnostics are summed up once a second */
	unsigned long drops[DROP_WHYS]; /* the lines dropped, by why */
	struct errout_waiter *waiters;
	/*
	 * The last byte relayed from a server was not a newline: mcpmux's own next line
	 * (a diagnostic, a record of a log on stderr) starts with one, or it would be glued
	 * to the server's unfinished line, and neither would read right.
	 */
	bool mid_line;
	/*
	 * With mid_line: that line was cut, its rest dropped (no memory to queue it, no room
	 * for it on a full disk), so the server's next relayed line starts with a newline
	 * too, or it would run on from it.
	 */
	bool cut;
	/*
	 * At exit, the count of dropped lines goes before what is still queued (after the
	 * line being written): "\n" and the line, from say_off; say_drops lines, by why.
	 */
	char say[320];
	size_t say_len, say_off;
	unsigned long say_drops[DROP_WHYS];
	bool say_begun;
} E = { .fd = -1 };

/*
 * Queue p[0..len) (len > 0), after a newline if nl: mcpmux's own lines after a server's
 * unfinished one, a server's after a line cut.  0, or -1 (ENOMEM: nothing queued).
 */
static int
append(bool nl, const char *p, size_t len)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t) "\n", .iov_len = nl },
		{ .iov_base = (void *)(uintptr_t)p, .iov_len = len },
	};

	if (wbuf_appendv(&E.q, iov, 2) == -1) {
		return -1;
	}
	E.mid_line = p[len - 1] != '\n';
	E.cut = false;
	return 0;
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

/* How many lines p[0..len) holds (its line ends). */
static unsigned long
lines_in(const char *p, size_t len)
{
	unsigned long n = 0;

	for (const char *nl = p; (nl = memchr(nl, '\n', len - (size_t)(nl - p))) != NULL; nl++) {
		n++;
	}
	return n;
}

/* n lines dropped for why. */
static void
drop(int why, unsigned long n)
{
	E.drops[why] += n;
}

/* The lines of n[DROP_WHYS]. */
static unsigned long
drops_total(const unsigned long n[DROP_WHYS])
{
	unsigned long sum = 0;

	for (int i = 0; i < DROP_WHYS; i++) {
		sum += n[i];
	}
	return sum;
}

/*
 * Why the lines n[DROP_WHYS] were dropped, into why[size]: the one reason, or, when they
 * were dropped for more than one, each with its count ("2: ...; 1: ...").
 */
static const char *
drop_reason(char *why, size_t size, const unsigned long n[DROP_WHYS])
{
	int whys = 0;
	size_t at = 0;

	for (int i = 0; i < DROP_WHYS; i++) {
		whys += n[i] > 0;
	}
	why[0] = '\0';
	for (int i = 0; i < DROP_WHYS && at < size; i++) {
		char text[96];
		int k;

		if (n[i] == 0) {
			continue;
		}
		if (i == DROP_SLOW) {
			(void)snprintf(text, sizeof(text), "stderr was not read in time");
		} else if (i == DROP_NOMEM) {
			(void)snprintf(text, sizeof(text),
				       "stderr could not be queued: out of memory");
		} else {
			(void)snprintf(text, sizeof(text), "stderr could not be written: %s",
				       strerror(E.full_errno));
		}
		if (whys > 1) {
			k = snprintf(why + at, size - at, "%s%lu: %s", at > 0 ? "; " : "", n[i],
				     text);
		} else {
			k = snprintf(why + at, size - at, "%s", text);
		}
		if (k < 0) {
			break;
		}
		at += (size_t)k;
	}
	return why;
}

/* "N lines of stderr dropped (why)", after "\n" if nl. */
static int
dropped_line(char *buf, size_t size, bool nl, const unsigned long n[DROP_WHYS])
{
	char why[256];

	return snprintf(buf, size, "%smcpmux: %lu lines of stderr dropped (%s)\n", nl ? "\n" : "",
			drops_total(n), drop_reason(why, sizeof(why), n));
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

/*
 * Say how many lines were dropped, once nothing else is queued: written straight out, the
 * count kept until stderr takes it (tried again when it is writable, and at exit).  0, or
 * -1 on a write error.
 */
static int
say_dropped(void)
{
	char line[320];
	int n = dropped_line(line, sizeof(line), E.mid_line, E.drops);

	if (n <= 0 || (size_t)n >= sizeof(line)) {
		return 0;
	}
	if (wbuf_send(&E.q, E.fd, line, (size_t)n, NULL, 0, NULL) == -1) {
		return errno == ENOMEM ? 0 : -1;
	}
	if (wbuf_len(&E.q) == (size_t)n) {
		wbuf_release(&E.q); /* not written at all: kept for the next try */
		return 0;
	}
	memset(E.drops, 0, sizeof(E.drops));
	E.mid_line = false;
	return 0;
}

/*
 * A write failed.  A file system that is full (ENOSPC, EDQUOT; EFBIG: a file at `ulimit
 * -f`) may have room again: what is queued is kept, what does not fit is dropped and
 * counted (a relayed server's stderr too: a full disk holds no server back), and the
 * write is tried again a second later; the count is said once it works.  Anything else
 * (EPIPE, EBADF, EIO): nobody will ever read it.
 */
static void
write_failed(void)
{
	if (errno == ENOSPC || errno == EDQUOT || errno == EFBIG) {
		E.full = true;
		E.full_errno = errno;
		watch(false);
		if (!ev_is_active(&E.retry_w)) {
			ev_timer_again(E.loop, &E.retry_w);
			ev_unref(E.loop); /* never what keeps the loop running */
		}
		wake_waiters();
		return;
	}
	E.dead = true;
	wbuf_release(&E.q);
	watch(false);
	wake_waiters();
}

static void
flush(void)
{
	if (E.dead || E.full) {
		watch(false);
		return;
	}
	if ((wbuf_len(&E.q) > 0 && wbuf_flush(&E.q, E.fd) == -1) ||
	    (wbuf_len(&E.q) == 0 && drops_total(E.drops) > 0 && say_dropped() == -1)) {
		write_failed();
		return;
	}
	watch(wbuf_len(&E.q) > 0 || drops_total(E.drops) > 0);
	if (errout_room() >= ERROUT_MAX / 2) {
		wake_waiters();
	}
}

/*
 * At exit, with lines dropped and others still queued: their count is written first, at
 * the end of the line being written, then the rest of the queue.  A reader too slow to
 * take the whole queue in time still learns of them.
 */
static void
stop_flush(void)
{
	while (!E.dead && !E.full && E.say_off < E.say_len) {
		ssize_t w;

		if (!E.say_begun) {
			char last = '\0';

			if (wbuf_len(&E.q) > 0 && wbuf_last(&E.q, &last) && last != '\n') {
				w = wbuf_write_upto(&E.q, E.fd, wbuf_line_cut(&E.q, 1));
				if (w <= 0) {
					if (w == -1) {
						write_failed();
					}
					return;
				}
				continue;
			}
			/* Its own line: after a server's unfinished one, a line's end first. */
			E.say_off = wbuf_len(&E.q) == 0 && E.mid_line ? 0 : 1;
		}
		struct iovec iov = { .iov_base = E.say + E.say_off,
				     .iov_len = E.say_len - E.say_off };

		w = sys_writev(E.fd, &iov, 1);
		if (w == -1) {
			if (errno != EAGAIN) {
				write_failed();
			}
			return;
		}
		E.say_begun = true;
		E.say_off += (size_t)w;
		if (wbuf_len(&E.q) == 0) {
			E.mid_line = false;
		}
	}
	flush();
}

/*
 * At exit, after the deadline: what was dropped and what is still queued is said, with
 * one last write that never blocks (lost too if stderr has no room even for that).
 */
static void
say_lost_at_exit(void)
{
	if (E.dead || E.full) {
		return;
	}
	if (E.say_begun && E.say_off < E.say_len) {
		/* The count was cut: its rest, once. */
		struct iovec iov = { .iov_base = E.say + E.say_off,
				     .iov_len = E.say_len - E.say_off };

		E.mid_line = sys_writev(E.fd, &iov, 1) != (ssize_t)iov.iov_len;
		return;
	}
	size_t queued = wbuf_len(&E.q) == 0 ? 0 : wbuf_count(&E.q, '\n') + E.mid_line;
	/* What is still queued was not read in time. */
	unsigned long drops[DROP_WHYS];

	for (int i = 0; i < DROP_WHYS; i++) {
		drops[i] = E.drops[i] + (E.say_begun ? 0 : E.say_drops[i]) +
			   (i == DROP_SLOW ? queued : 0);
	}
	unsigned long dropped = drops_total(drops);
	/* What was written last: a line cut in the middle, or a server's unfinished one. */
	char last = '\0';
	bool cut = wbuf_len(&E.q) > 0 ? wbuf_last(&E.q, &last) && last != '\n' : E.mid_line;
	const char *nl = cut ? "\n" : "";
	char line[384], why[256];
	int n;

	E.mid_line = cut; /* the queue is not written: the last words follow what was */
	if (dropped == 0) {
		return;
	}
	if (queued == 0) {
		n = dropped_line(line, sizeof(line), cut, drops);
	} else if (dropped == queued) {
		n = snprintf(line, sizeof(line),
			     "%smcpmux: %zu lines of stderr not written at exit (%s)\n", nl, queued,
			     drop_reason(why, sizeof(why), drops));
	} else {
		n = snprintf(
			line, sizeof(line),
			"%smcpmux: %lu lines of stderr dropped (%s), %zu of them not written at "
			"exit\n",
			nl, dropped, drop_reason(why, sizeof(why), drops), queued);
	}
	if (n > 0 && (size_t)n < sizeof(line)) {
		struct iovec iov = { .iov_base = line, .iov_len = (size_t)n };

		if (sys_writev(E.fd, &iov, 1) == n) {
			E.mid_line = false;
		}
	}
}

static void relay_lost(const char *p, size_t len, int why);

/*
 * Nothing queued: pre[0..pre_len) and p[0..len) straight out, only the rest queued.  True
 * when that is the end of them: sent, or the rest lost for want of memory and counted
 * (its lines, or with relay as a server's relayed bytes; a line cut ends the next), or
 * lost with a stderr that nobody will ever read.  False when stderr's file system is
 * full (write_failed() has run): they are the caller's to queue.
 */
static bool
send_direct(const char *pre, size_t pre_len, const char *p, size_t len, bool relay)
{
	size_t sent;

	if (wbuf_send(&E.q, E.fd, pre, pre_len, p, len, &sent) == 0) {
		E.mid_line = p[len - 1] != '\n';
		E.cut = false;
		/* What the pipe did not take waits until it is writable. */
		watch(wbuf_len(&E.q) > 0 || drops_total(E.drops) > 0);
		return true;
	}
	if (errno != ENOMEM) {
		write_failed();
		return !E.full;
	}
	char last = '\n';
	size_t at = sent > pre_len ? sent - pre_len : 0;

	E.mid_line = wbuf_last(&E.q, &last) && last != '\n';
	if (relay) {
		relay_lost(p + at, len - at, DROP_NOMEM);
	} else {
		E.cut = E.mid_line;
		drop(DROP_NOMEM, lines_in(p + at, len - at));
		watch(true);
	}
	return true;
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
	/* A line that says memory ran out needs no queue to be written. */
	if (!E.full && wbuf_len(&E.q) == 0 && send_direct("\n", E.mid_line, p, len, false)) {
		return;
	}
	/* One unit bigger than the bound still goes when nothing waits before it. */
	if (wbuf_len(&E.q) > 0 && wbuf_len(&E.q) + len > ERROUT_MAX) {
		drop(E.full ? DROP_FULL : DROP_SLOW, lines_in(p, len));
		return;
	}
	if (append(E.mid_line, p, len) == -1) {
		drop(DROP_NOMEM, lines_in(p, len));
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
/*
 * final_fd is stderr's shared description, whose flags are back as they were: O_NONBLOCK
 * goes on it for the write only (a blocking one would wait for ever for a reader).
 */
static bool final_shared;

static void
final_write(const char *line, size_t len)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t) "\n", .iov_len = 1 },
		{ .iov_base = (void *)(uintptr_t)line, .iov_len = len },
	};
	bool nl = E.mid_line;
	int flags = final_shared ? fcntl(final_fd, F_GETFL) : O_NONBLOCK;

	if (flags == -1 ||
	    (!(flags & O_NONBLOCK) && fcntl(final_fd, F_SETFL, flags | O_NONBLOCK) == -1)) {
		return;
	}
	ssize_t w = sys_writev(final_fd, iov + !nl, 2 - !nl);

	if (!(flags & O_NONBLOCK)) {
		(void)fcntl(final_fd, F_SETFL, flags);
	}
	if (w == -1) {
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

/* A second after a write failed for a full file system: tried again. */
static void
errout_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	ev_ref(loop);
	ev_timer_stop(loop, w);
	E.full = false;
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
	E.dead = E.full = E.relay_skip = E.cut = false;
	memset(E.drops, 0, sizeof(E.drops));
	wbuf_init(&E.q, ERROUT_MAX);
	ev_init(&E.retry_w, errout_on_retry);
	E.retry_w.repeat = ERROUT_RETRY_S;
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
	E.full = false; /* a full file system may have room again: one more try */
	E.say_len = E.say_off = 0;
	E.say_begun = false;
	if (!E.dead && drops_total(E.drops) > 0 && wbuf_len(&E.q) > 0) {
		int n = dropped_line(E.say, sizeof(E.say), true, E.drops);

		if (n > 0 && (size_t)n < sizeof(E.say)) {
			E.say_len = (size_t)n;
			memcpy(E.say_drops, E.drops, sizeof(E.say_drops));
			memset(E.drops, 0, sizeof(E.drops));
		}
	}
	for (;;) {
		stop_flush();
		double left = deadline - sys_mono();

		if (E.dead || E.full ||
		    (wbuf_len(&E.q) == 0 && drops_total(E.drops) == 0 && E.say_off == E.say_len) ||
		    left <= 0) {
			break;
		}
		struct pollfd p = { .fd = E.fd, .events = POLLOUT };

		if (poll(&p, 1, (int)(left * 1000.) + 1) == -1 && errno != EINTR) {
			break;
		}
	}
	say_lost_at_exit();
	memset(E.drops, 0, sizeof(E.drops));
	watch(false);
	if (ev_is_active(&E.tick_w)) {
		ev_ref(E.loop);
		ev_timer_stop(E.loop, &E.tick_w);
	}
	if (ev_is_active(&E.retry_w)) {
		ev_ref(E.loop);
		ev_timer_stop(E.loop, &E.retry_w);
	}
	E.full = false;
	wbuf_release(&E.q);
	if (!E.shared && !E.dead) {
		/* Our own description stays open to the end: last words never block either. */
		final_fd = E.fd;
		final_shared = false;
		diag_set_sink(&final_sink);
	} else {
		sys_stdio_close(E.fd, STDERR_FILENO, E.shared);
		if (!E.dead) {
			/* The shared one, its flags given back: last words are not waited for. */
			final_fd = STDERR_FILENO;
			final_shared = true;
			diag_set_sink(&final_sink);
		}
	}
	E.fd = -1;
	E.on = false;
	E.waiters = NULL;
}

/* What the queue takes before it is at its bound. */
static size_t
errout_queue_room(void)
{
	return wbuf_len(&E.q) >= ERROUT_MAX ? 0 : ERROUT_MAX - wbuf_len(&E.q);
}

size_t
errout_room(void)
{
	if (!E.on || E.dead || E.full) {
		return ERROUT_MAX; /* a full disk holds no server back (errout_relay()) */
	}
	return errout_queue_room();
}

/*
 * Relayed bytes that are not queued, for why: their lines counted as dropped, and a line
 * begun counted now, its rest dropped as it comes.  The count is said once stderr takes
 * it.
 */
static void
relay_lost(const char *p, size_t len, int why)
{
	if (len == 0) {
		return;
	}
	E.cut = E.mid_line; /* the line before them, if unfinished, never is */
	drop(why, lines_in(p, len) + (p[len - 1] != '\n'));
	if (p[len - 1] != '\n') {
		E.relay_skip = true;
	}
	if (!E.full) {
		watch(true);
	}
}

void
errout_relay(const char *p, size_t len)
{
	if (!E.on) {
		if (len > 0) {
			E.mid_line = p[len - 1] != '\n';
		}
		(void)sys_write_all(STDERR_FILENO, p, len);
		return;
	}
	if (E.dead || len == 0) {
		return;
	}
	if (E.relay_skip) {
		/* The rest of a line whose start was dropped (counted then): dropped too. */
		const char *nl = memchr(p, '\n', len);

		if (nl == NULL) {
			return;
		}
		E.relay_skip = false;
		len -= (size_t)(nl + 1 - p);
		p = nl + 1;
		if (len == 0) {
			return;
		}
	}
	if (!E.full && wbuf_len(&E.q) == 0 &&
	    send_direct("\n", E.mid_line && E.cut, p, len, true)) {
		return;
	}
	if (E.full) {
		/* No room on the disk: queued while the queue has room, the rest counted. */
		size_t room = errout_queue_room();
		size_t keep = len;

		if (keep > room) {
			const char *nl = memrchr(p, '\n', room);

			keep = nl != NULL ? (size_t)(nl - p) + 1 : 0;
		}
		int why = DROP_FULL;

		if (keep > 0 && append(E.mid_line && E.cut, p, keep) == -1) {
			keep = 0;
			why = DROP_NOMEM;
		}
		relay_lost(p + keep, len - keep, why);
		return;
	}
	if (append(E.mid_line && E.cut, p, len) == -1) {
		relay_lost(p, len, DROP_NOMEM);
		return;
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
