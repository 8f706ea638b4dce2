/*
 * conn: a client stream: framed input, fair output from many sources.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "mcpmux/conn.h"
#include "mcpmux/diag.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"

#define READ_BUDGET    ((size_t)256 << 10)
#define CONN_PIPE_LONG ((size_t)8 << 10) /* a line this long enlarges the pipe */
#define CONN_PIPE_BIG  (1 << 20)
#define CONN_ROOM_POLL 0.02 /* s: conn_whole_lines(), while the next line does not fit */

static void conn_on_readable(struct ev_loop *loop, ev_io *w, int revents);
static void conn_on_writable(struct ev_loop *loop, ev_io *w, int revents);
static void conn_on_flush(struct ev_loop *loop, ev_prepare *w, int revents);
static void conn_on_room(struct ev_loop *loop, ev_timer *t, int revents);
static void conn_gone(struct conn *c, int err);
static void source_init(struct conn_source *src, size_t high);
static void wake_unlink(struct conn *c, struct conn_source *src);
static void wake_held(struct conn *c);

void
conn_init(struct conn *c, struct ev_loop *loop, int in_fd, int out_fd, size_t max_message,
	  size_t max_queue, const struct framer_sink *sink, const struct conn_hooks *hooks,
	  void *ctx)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	c->sink = sink;
	c->hooks = hooks;
	c->ctx = ctx;
	framer_init(&c->inf, max_message);
	source_init(&c->self, max_queue);
	ev_io_init(&c->in_w, conn_on_readable, in_fd, EV_READ);
	ev_set_priority(&c->in_w, 1); /* (conn.h: read as soon as a hold ends) */
	ev_io_init(&c->out_w, conn_on_writable, out_fd, EV_WRITE);
	ev_prepare_init(&c->flush_w, conn_on_flush);
	ev_set_priority(&c->flush_w, EV_MINPRI); /* after every other callback of the turn */
	ev_timer_init(&c->room_w, conn_on_room, CONN_ROOM_POLL, 0.);
	c->max_queue = max_queue;
	c->hold = CONN_HOLD_OWNER;
}

void
conn_hold(struct conn *c, unsigned reason, bool on)
{
	c->hold = on ? c->hold | reason : c->hold & ~reason;
	/*
	 * What is queued for the client is full: no line after this one (conn_feed()).  Out
	 * of a feed it does nothing: framer_feed_part() clears it on entry.
	 */
	framer_stop(&c->inf, (c->hold & (CONN_HOLD_OUTPUT | CONN_HOLD_GONE)) != 0);
	if (c->hold == 0 && !c->in_eof && c->in_fd >= 0) {
		ev_io_start(c->loop, &c->in_w);
		if (c->rest != NULL) {
			/* The rest of a chunk: handed out even if nothing more comes. */
			ev_feed_event(c->loop, &c->in_w, EV_READ);
		}
	} else {
		ev_io_stop(c->loop, &c->in_w);
	}
}

void
conn_read(struct conn *c, bool on)
{
	conn_hold(c, CONN_HOLD_OWNER, !on);
}

/* What is queued for the client holds its input back (see conn.h). */
static void
output_hold_check(struct conn *c)
{
	if (c->out_dead) {
		if (c->hold & CONN_HOLD_OUTPUT) {
			conn_hold(c, CONN_HOLD_OUTPUT, false);
		}
	} else if (c->queued >= c->max_queue) {
		if (!(c->hold & CONN_HOLD_OUTPUT)) {
			conn_hold(c, CONN_HOLD_OUTPUT, true);
		}
	} else if ((c->hold & CONN_HOLD_OUTPUT) && c->queued <= c->max_queue / 2) {
		conn_hold(c, CONN_HOLD_OUTPUT, false);
	}
}

static void
source_init(struct conn_source *src, size_t high)
{
	memset(src, 0, sizeof(*src));
	wbuf_init(&src->q, high);
}

static void ready_push(struct conn *c, struct conn_source *src);

/*
 * The source of c's stream key that a new one waits for, or NULL: the latest made of
 * those with lines queued or waiting behind another.  (The lines an earlier one, a run
 * still ending, queued after a later one was made are not waited for.)
 */
static struct conn_source *
stream_last(const struct conn *c, const char *key, size_t key_len)
{
	/*
	 * A source with lines queued is being written (cur), ready, or waits behind an
	 * earlier one of its stream, which is: the first of each chain is found there.
	 */
	struct conn_source *src = c->cur != NULL ? c->cur : c->ready_head, *last = NULL;

	while (src != NULL) {
		if (src->key != NULL && src->key_len == key_len &&
		    memcmp(src->key, key, key_len) == 0) {
			struct conn_source *tail = src;

			while (tail->then != NULL) {
				tail = tail->then;
			}
			if (last == NULL || tail->seq > last->seq) {
				last = tail;
			}
		}
		src = src == c->cur ? c->ready_head : src->next;
	}
	return last;
}

struct conn_source *
conn_source_new(struct conn *c, size_t high, const char *key, size_t key_len)
{
	struct conn_source *last =
		key != NULL && !c->out_dead ? stream_last(c, key, key_len) : NULL;

	if (last != NULL && last->retired && last->held == NULL) {
		/*
		 * The stream's last source is retired, its lines not all written: taken up
		 * again, its new lines after them, rather than one more source behind it (a
		 * session that connections take in turn from a client that does not read
		 * would chain a source, and its first chunk, for each line of a few bytes).
		 */
		last->retired = false;
		last->seq = ++c->n_keyed; /* (the stream's last now: a later source follows it) */
		return last;
	}
	struct conn_source *src = malloc(sizeof(*src) + (key != NULL ? key_len : 0));

	if (src == NULL) {
		return NULL;
	}
	source_init(src, high);
	if (key != NULL) {
		memcpy(src + 1, key, key_len);
		src->key = (const char *)(src + 1);
		src->key_len = key_len;
		src->seq = ++c->n_keyed;
		src->after = last;
		if (src->after != NULL) {
			/* Its lines queued now, not those it queues later (a run still ending). */
			src->after->then = src;
			src->after_left = wbuf_len(&src->after->q);
		}
	}
	return src;
}

/* The source for conn_send_behind()'s line (*lent: retire it once the line is in it). */
static struct conn_source *
source_behind(struct conn *c, const char *key, size_t key_len, struct conn_source *live, bool *lent)
{
	*lent = false;
	if (c->out_dead) {
		return &c->self; /* (nothing goes: the send says so) */
	}
	if (live != NULL) {
		return live;
	}
	struct conn_source *last = stream_last(c, key, key_len);

	if (last != NULL && !last->retired) {
		/*
		 * A live producer's queue, the line after its lines: not a source after it,
		 * which would wait only for what it has queued now, and which a later source
		 * of the stream, taking it up, would take for the stream's end.  It becomes
		 * the stream's last (of several chains, the one a later source follows).
		 */
		last->seq = ++c->n_keyed;
		return last;
	}
	/*
	 * Not c->self, even with nothing queued in the stream: a later source of the stream
	 * waits for none of c->self's lines, and may be written before a backlog there.
	 */
	struct conn_source *src = conn_source_new(c, c->self.q.high, key, key_len);

	if (src == NULL) {
		return &c->self;
	}
	src->owner = NULL; /* (one taken up again was a gone producer's) */
	*lent = true;
	return src;
}

int
conn_send_behind(struct conn *c, const char *key, size_t key_len, struct conn_source *live,
		 const char *line, size_t len, bool reserve)
{
	bool lent = false;
	struct conn_source *src =
		key != NULL ? source_behind(c, key, key_len, live, &lent) : &c->self;
	int rc = reserve ? conn_send_error(c, src, line, len) : conn_send_line(c, src, line, len);
	int err = errno;

	if (lent) {
		conn_source_retire(c, src);
	}
	errno = err;
	return rc;
}

static void source_free(struct conn *c, struct conn_source *src);

/*
 * src waits no more (what it waited for is written): it is written from now on, and so
 * are the ones behind it that waited only for that.  Those retired empty go.
 */
static void
stream_go(struct conn *c, struct conn_source *src)
{
	src->after->then = NULL;
	src->after = NULL;
	while (src != NULL) {
		struct conn_source *then = src->then;

		if (then != NULL && then->after_left == 0) {
			src->then = NULL;
			then->after = NULL;
		} else {
			then = NULL; /* it waits for lines of src: src has them queued */
		}
		if (wbuf_len(&src->q) > 0) {
			ready_push(c, src);
		} else if (src->retired) {
			source_free(c, src);
		}
		src = then;
	}
}

/* n bytes of src, which a later source of its stream waits for (then), are written. */
static void
stream_written(struct conn *c, struct conn_source *src, size_t n)
{
	struct conn_source *then = src->then;

	if (n < then->after_left) {
		then->after_left -= n;
		return;
	}
	then->after_left = 0;
	stream_go(c, then);
}

/*
 * A retired source goes: its producer hears whether its held line was written, and of the
 * bytes it leaves unwritten (its output died first).  The next
 * of its stream may be written now, or, if nothing will be, goes too when retired.
 */
static void
source_free(struct conn *c, struct conn_source *src)
{
	while (src != NULL) {
		struct conn_source *then = src->then, *next = NULL;

		wake_unlink(c, src);
		if (src->after != NULL) {
			src->after->then = NULL;
		}
		if ((src->held != NULL || wbuf_len(&src->q) > 0) &&
		    c->hooks->on_source_freed != NULL) {
			c->hooks->on_source_freed(c, src, src->held_left == 0, c->ctx);
		}
		if (then != NULL && c->out_dead && then->retired) {
			then->after = NULL;
			c->queued -= wbuf_len(&then->q);
			next = then;
		} else if (then != NULL) {
			then->after_left = 0;
			stream_go(c, then);
		}
		wbuf_release(&src->q);
		free(src);
		src = next;
	}
}

static void
ready_push(struct conn *c, struct conn_source *src)
{
	if (src->ready || src == c->cur || src->after != NULL) {
		return; /* (after: once what it waits for is written) */
	}
	src->ready = true;
	src->next = NULL;
	if (c->ready_tail != NULL) {
		c->ready_tail->next = src;
	} else {
		c->ready_head = src;
	}
	c->ready_tail = src;
}

static struct conn_source *
ready_pop(struct conn *c)
{
	struct conn_source *src = c->ready_head;

	if (src != NULL) {
		c->ready_head = src->next;
		if (c->ready_head == NULL) {
			c->ready_tail = NULL;
		}
		src->ready = false;
		src->next = NULL;
	}
	return src;
}

void
conn_source_retire(struct conn *c, struct conn_source *src)
{
	if (src == NULL) {
		return;
	}
	src->retired = true;
	wake_unlink(c, src); /* (its producer is told nothing more) */
	if (c->out_dead && src != c->cur) {
		/* Nobody will write it: unlink and free now. */
		struct conn_source **pp = &c->ready_head, *prev = NULL;

		for (; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
			if (*pp == src) {
				*pp = src->next;
				if (c->ready_tail == src) {
					c->ready_tail = prev;
				}
				break;
			}
		}
		c->queued -= wbuf_len(&src->q);
		source_free(c, src);
		return;
	}
	if (wbuf_len(&src->q) == 0 && src != c->cur && !src->ready && src->after == NULL) {
		source_free(c, src); /* (after: once what it waits for is written) */
	}
}

static void
flush_cancel(struct conn *c)
{
	if (c->flush_fed) {
		(void)ev_clear_pending(c->loop, &c->flush_w);
		c->flush_fed = false;
	}
}

static void
conn_dead(struct conn *c, bool tell)
{
	struct conn_source *src;

	if (tell && c->queued > 0 && c->hooks->on_output_lost != NULL) {
		c->hooks->on_output_lost(c, c->ctx); /* before it goes */
	}
	c->out_dead = true;
	ev_io_stop(c->loop, &c->out_w);
	ev_timer_stop(c->loop, &c->room_w);
	flush_cancel(c);
	c->queued -= c->lost_len - c->lost_off;
	c->lost_len = c->lost_off = 0;
	/* Retired sources will never be written: freed now, their producers told. */
	if (c->cur != NULL && c->cur->retired) {
		struct conn_source *cur = c->cur;

		c->cur = NULL;
		c->queued -= wbuf_len(&cur->q);
		source_free(c, cur);
	}
	src = c->ready_head;
	c->ready_head = c->ready_tail = NULL;
	while (src != NULL) {
		struct conn_source *next = src->next;

		src->ready = false;
		if (src->retired) {
			c->queued -= wbuf_len(&src->q);
			source_free(c, src);
		} else {
			ready_push(c, src);
		}
		src = next;
	}
	output_hold_check(c);
	wake_held(c); /* (only takes them off: nothing more is written) */
}

/*
 * The client's output failed (err: the write's errno, 0 when no write failed), found by a
 * watcher of ours: the owner is told now.
 */
static void
conn_gone(struct conn *c, int err)
{
	if (c->out_dead) {
		return;
	}
	c->out_errno = err; /* (before on_output_lost, which may say it) */
	conn_dead(c, true);
	if (c->hooks->on_gone != NULL) {
		c->hooks->on_gone(c, c->ctx);
	}
}

/*
 * The same, found by conn_send(): the owner is told later in the turn (flush_w), not
 * from inside its own call, where it may be in the middle of a session's start or of a
 * delivery, holding what on_gone would free.
 */
static void
conn_gone_later(struct conn *c, int err)
{
	if (c->out_dead) {
		return;
	}
	c->out_errno = err;
	conn_dead(c, true);
	conn_hold(c, CONN_HOLD_GONE, true); /* (input: no line for an owner not yet told) */
	c->gone_pending = true;
	c->flush_fed = true;
	ev_feed_event(c->loop, &c->flush_w, EV_CUSTOM);
}

/*
 * A source's queue shrank: tell its producer when it is no longer full, or, while what is
 * queued holds the input, once that hold ends (wake_due: conn.h).
 */
static void
check_writable(struct conn *c, struct conn_source *src)
{
	if (src->was_full && !wbuf_full(&src->q) && !src->retired && !src->wake_due) {
		if (c->hold & CONN_HOLD_OUTPUT) {
			src->wake_due = true;
			src->wake_next = c->wake;
			c->wake = src;
			return;
		}
		src->was_full = false;
		if (c->hooks->on_source_writable != NULL) {
			c->hooks->on_source_writable(c, src, c->ctx);
		}
	}
}

/* Take src out of the sources told once the output hold ends. */
static void
wake_unlink(struct conn *c, struct conn_source *src)
{
	if (!src->wake_due) {
		return;
	}
	for (struct conn_source **pp = &c->wake; *pp != NULL; pp = &(*pp)->wake_next) {
		if (*pp == src) {
			*pp = src->wake_next;
			break;
		}
	}
	src->wake_due = false;
	src->wake_next = NULL;
}

/*
 * The output hold is over (or the output dead): the producers whose sources came below
 * their marks under it are told now (not when dead: nothing will be written of theirs).
 */
static void
wake_held(struct conn *c)
{
	while (c->wake != NULL && !(c->hold & CONN_HOLD_OUTPUT)) {
		struct conn_source *src = c->wake;

		c->wake = src->wake_next;
		src->wake_due = false;
		src->wake_next = NULL;
		if (c->out_dead) {
			continue;
		}
		src->was_full = wbuf_full(&src->q);
		if (!src->was_full && c->hooks->on_source_writable != NULL) {
			c->hooks->on_source_writable(c, src, c->ctx);
		}
	}
}

/*
 * Write the errors waiting in c->lost, between two lines.  1 when they are all written, 0
 * when the rest waits for the fd to be writable (before any other line), -1 when the
 * write failed (the output is gone).
 */
static int
lost_flush(struct conn *c, size_t max)
{
	struct iovec iov = { .iov_base = c->lost + c->lost_off,
			     .iov_len = SYS_MIN(c->lost_len - c->lost_off, max) };
	ssize_t w = sys_writev(c->out_fd, &iov, 1);

	if (w == -1 && errno != EAGAIN) {
		return -1;
	}
	if (w > 0) {
		c->queued -= (size_t)w;
		c->lost_off += (size_t)w;
		c->mid_line = c->lost[c->lost_off - 1] != '\n';
	}
	if (c->lost_off < c->lost_len) {
		return 0;
	}
	c->lost_len = c->lost_off = 0;
	return 1;
}

/*
 * With c->whole: whether a line of len bytes, not begun, may be begun now, so that it is
 * written whole (or not at all).  A write of at most PIPE_BUF bytes to a pipe is atomic:
 * all of it goes, or EAGAIN.  A longer one is begun only into an empty pipe (FIONREAD 0)
 * no smaller than it: a write there takes whole free pages, one per page of it, and the
 * pipe has that many.  (A byte count of what a pipe holds does not tell its free pages: a
 * small write may take a page to itself.)  Another writer to the same pipe can still fill
 * it between this look and the write.
 */
static bool
line_fits(const struct conn *c, size_t len)
{
	int size, held = 0;

	if (len <= PIPE_BUF) {
		return true;
	}
	size = fcntl(c->out_fd, F_GETPIPE_SZ);
	if (size <= 0 || ioctl(c->out_fd, FIONREAD, &held) == -1) {
		return false;
	}
	return held == 0 && len <= (size_t)size;
}

/* The bytes up to the end of c->lost's next line (its rest, for one begun). */
static size_t
lost_line(const struct conn *c)
{
	const char *p = c->lost + c->lost_off;
	const char *nl = memchr(p, '\n', c->lost_len - c->lost_off);

	return nl != NULL ? (size_t)(nl - p) + 1 : c->lost_len - c->lost_off;
}

/*
 * Write turns until everything is written or the fd would block.  With c->whole (a pipe),
 * one line a write, each begun only when it will be written whole (line_fits()); the rest
 * of a line begun before goes as ever.  When the next one may not be begun, room_w looks
 * again later.
 */
static void
conn_flush(struct conn *c)
{
	bool no_room = false;

	while (!c->out_dead) {
		if (c->cur == NULL && c->lost_len > 0) {
			size_t max = c->whole ? lost_line(c) : SIZE_MAX;

			if (c->whole && !c->mid_line && !line_fits(c, max)) {
				no_room = true;
				break;
			}
			size_t before = c->lost_off;
			int r = lost_flush(c, max);

			if (r == -1) {
				conn_gone(c, errno);
				return;
			}
			if (r == 0) {
				if (c->whole && c->lost_off - before == max) {
					continue; /* one line of it written */
				}
				break;
			}
		}
		if (c->cur == NULL) {
			if (c->ready_head == NULL) {
				break;
			}
			if (c->whole && !line_fits(c, wbuf_line_cut(&c->ready_head->q, 1))) {
				no_room = true;
				break;
			}
			c->cur = ready_pop(c);
			c->cut_left = wbuf_line_cut(&c->cur->q, CONN_QUANTUM);
		}
		struct conn_source *src = c->cur;
		size_t upto = c->cut_left;

		if (c->whole) {
			upto = wbuf_line_cut(&src->q, 1); /* one line (or the rest of one begun) */
			if (!c->mid_line && !line_fits(c, upto)) {
				no_room = true;
				break;
			}
		}
		ssize_t w = wbuf_write_upto(&src->q, c->out_fd, upto);

		if (w == -1) {
			conn_gone(c, errno);
			return;
		}
		if (w > 0) {
			char last;

			c->mid_line = wbuf_last(&src->q, &last) && last != '\n';
		}
		c->queued -= (size_t)w;
		c->cut_left -= (size_t)w;
		src->held_left -= SYS_MIN((size_t)w, src->held_left);
		if (src->then != NULL) {
			stream_written(c, src, (size_t)w);
		}
		check_writable(c, src);
		if ((size_t)w < upto) {
			if (c->whole && w > 0) {
				continue; /* a short write (iovecs): the rest of the line, while it
					     goes */
			}
			break; /* EAGAIN (or a short write): the rest when writable */
		}
		if (c->cut_left > 0) {
			continue; /* (whole lines: the rest of the turn) */
		}
		c->cur = NULL;
		if (wbuf_len(&src->q) > 0) {
			ready_push(c, src);
		} else if (src->retired) {
			source_free(c, src);
		}
	}
	output_hold_check(c);
	wake_held(c);
	if (no_room && !c->out_dead) {
		/* Writable as the pipe is, the next line may not be begun: not a busy wait. */
		ev_io_stop(c->loop, &c->out_w);
		if (!ev_is_active(&c->room_w)) {
			ev_timer_start(c->loop, &c->room_w);
		}
		return;
	}
	ev_timer_stop(c->loop, &c->room_w);
	if (c->queued > 0 && !c->out_dead) {
		ev_io_start(c->loop, &c->out_w);
	} else {
		ev_io_stop(c->loop, &c->out_w);
		if (c->queued == 0 && c->hooks->on_drained != NULL) {
			c->hooks->on_drained(c, c->ctx);
		}
	}
}

void
conn_write_now(struct conn *c)
{
	conn_flush(c);
}

void
conn_end_output(struct conn *c)
{
	if (!c->out_dead) {
		conn_dead(c, false); /* (ev_io_stop() clears out_w's pending event too) */
	}
}

void
conn_whole_lines(struct conn *c)
{
	/* (Not a pipe, F_GETPIPE_SZ fails: a file, a socket, a terminal is written as ever.) */
	c->whole = fcntl(c->out_fd, F_GETPIPE_SZ) > 0;
}

static void
conn_on_room(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	conn_flush(container_of(t, struct conn, room_w));
}

/* Feeds the queued lines, split at their ends, to an idscan: the ids of what is unsent. */
struct unsent {
	struct jsonrpc_idscan sc;
	bool skip; /* the rest of a line begun: its id was in what is written */
	size_t lines;
	void (*on_id)(void *ctx, const char *id, size_t len);
	void *ctx;
};

static void
unsent_feed(void *ctx, const char *p, size_t len)
{
	struct unsent *u = ctx;

	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t n = nl != NULL ? (size_t)(nl - p) : len;

		if (!u->skip) {
			jsonrpc_idscan_feed(&u->sc, p, n);
		}
		if (nl == NULL) {
			return;
		}
		size_t id_len = 0;
		const char *id = u->skip ? NULL : jsonrpc_idscan_id(&u->sc, &id_len);

		if (id != NULL && u->on_id != NULL) {
			u->on_id(u->ctx, id, id_len);
		}
		u->lines++;
		u->skip = false;
		jsonrpc_idscan_init(&u->sc);
		p += n + 1;
		len -= n + 1;
	}
}

static void
unsent_source(struct unsent *u, const struct conn_source *src)
{
	for (; src != NULL; src = src->then) {
		wbuf_each(&src->q, unsent_feed, u);
		if (src->then != NULL && src->then->after != src) {
			break;
		}
	}
}

void
conn_ids_add(void *ctx, const char *id, size_t len)
{
	struct conn_ids *ids = ctx;

	if (ids->n < CONN_IDS_KEPT) {
		sbuf_adds(&ids->log, ids->n > 0 ? "," : "");
		sbuf_add(&ids->log, id, len);
		sbuf_adds(&ids->said, ids->n > 0 ? ", " : "");
		sbuf_add(&ids->said, id, len);
	}
	ids->n++;
}

void
conn_ids_release(struct conn_ids *ids)
{
	sbuf_release(&ids->log);
	sbuf_release(&ids->said);
}

const char *
conn_stdout_lost(const struct conn *c, char *buf, size_t size)
{
	if (c->out_errno == EPIPE || c->out_errno == ECONNRESET) {
		(void)snprintf(buf, size, "the client closed its stdout");
	} else if (c->out_errno != 0) {
		(void)snprintf(buf, size, "writing to stdout failed (%s)", strerror(c->out_errno));
	} else {
		(void)snprintf(buf, size, "writing to stdout failed");
	}
	return buf;
}

size_t
conn_unsent(const struct conn *c, void (*on_id)(void *ctx, const char *id, size_t len), void *ctx,
	    bool *cut)
{
	struct unsent u = { .on_id = on_id, .ctx = ctx };

	jsonrpc_idscan_init(&u.sc);
	*cut = c->queued > 0 && c->mid_line;
	u.skip = *cut;
	if (c->out_dead) {
		return 0;
	}
	if (c->lost_len > c->lost_off) {
		unsent_feed(&u, c->lost + c->lost_off, c->lost_len - c->lost_off);
	}
	if (c->cur != NULL) {
		unsent_source(&u, c->cur);
	}
	for (const struct conn_source *src = c->ready_head; src != NULL; src = src->next) {
		unsent_source(&u, src);
	}
	return u.lines;
}

static void
conn_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_flush(container_of(w, struct conn, out_w));
}

/*
 * The lines queued during a loop turn go out together once every other callback of the
 * turn has run: an event fed to flush_w, which has the lowest priority, so that it comes
 * after the reads that queue lines (and also when lines are queued from a prepare
 * callback, where a prepare watcher started would wait for the next event).  The write
 * watcher is started only when the client's pipe is full.  (Started for every batch, it
 * cost an epoll_ctl to add it and one to remove it, and a loop turn between.)
 */
static void
conn_on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct conn *c = container_of(w, struct conn, flush_w);

	(void)loop;
	(void)revents;
	c->flush_fed = false;
	if (c->gone_pending) {
		c->gone_pending = false;
		conn_hold(c, CONN_HOLD_GONE, false); /* (what is read next, after on_gone) */
		if (c->hooks->on_gone != NULL) {
			c->hooks->on_gone(c, c->ctx);
		}
		return;
	}
	conn_flush(c);
}

int
conn_send(struct conn *c, struct conn_source *src, const struct iovec *iov, int n)
{
	size_t total = 0, done = 0;

	if (n > CONN_SEND_IOV_MAX) {
		/* The pieces past the limit would be lost from the queue, in silence. */
		BUG("conn_send() of %d pieces (at most %d)", n, CONN_SEND_IOV_MAX);
	}
	if (c->out_dead) {
		errno = EPIPE;
		return -1;
	}
	for (int i = 0; i < n; i++) {
		total += iov[i].iov_len;
	}
	if (!c->out_big && total >= CONN_PIPE_LONG) {
		/*
		 * Long messages: a bigger pipe to the client, if it is one (kept for good: a
		 * client has one pair of pipes, outside the servers' budget of big ones).
		 */
		c->out_big = true;
		(void)fcntl(c->out_fd, F_SETPIPE_SZ, CONN_PIPE_BIG);
	}
	/*
	 * The first line of a loop turn is written at once, from where it is (the client can
	 * start on it); later ones go out together, in one write once the turn's other
	 * callbacks have run (conn_on_flush()).  A big line with nothing queued before it is
	 * written at once too.  (Measured against all of a turn's lines in one write: as fast
	 * a round trip, and 15-20% more small messages a second.)
	 */
	unsigned int turn = ev_iteration(c->loop);

	if (c->queued == 0 && (c->write_turn != turn || total >= WBUF_CHUNK) &&
	    (!c->whole || line_fits(c, total))) {
		c->write_turn = turn;
		ssize_t w = sys_writev(c->out_fd, iov, n);

		if (w == -1 && errno != EAGAIN) {
			int err = errno;

			/*
			 * The line is lost as a queued one would be: queued first, so that the
			 * owner hears of it with the rest (on_output_lost, conn_unsent()).
			 */
			if (c->hooks->on_output_lost != NULL &&
			    wbuf_appendv(&src->q, iov, n) == 0) {
				c->queued += total;
				ready_push(c, src);
			}
			conn_gone_later(c, err);
			errno = EPIPE;
			return -1;
		}
		done = w > 0 ? (size_t)w : 0;
		if (done == total) {
			c->mid_line = false;
			return 0;
		}
		if (done > 0) {
			c->mid_line = true; /* (one line: its only "\n" is its last byte) */
		}
	}
	struct iovec rest[CONN_SEND_IOV_MAX] = { { 0 } };
	int k = 0;
	size_t skip = done;

	for (int i = 0; i < n && k < CONN_SEND_IOV_MAX; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		rest[k].iov_base = (char *)iov[i].iov_base + skip;
		rest[k].iov_len = iov[i].iov_len - skip;
		skip = 0;
		k++;
	}
	if (wbuf_appendv(&src->q, rest, k) == -1) {
		if (done > 0) {
			/* Half a line is out: the stream is broken beyond repair (out_dead now,
			 * which tells the caller of ENOMEM so). */
			int e = errno;

			diag_error(
				"out of memory: a line for the client was cut after %zu of its %zu "
				"bytes (no memory to queue the rest): the client's output ends there",
				done, total);
			c->out_cut = true;
			conn_gone_later(c, 0);
			errno = e;
		}
		return -1;
	}
	c->queued += total - done;
	if (done > 0) {
		/* This line's head is written: its tail goes first. */
		c->cur = src;
		c->cut_left = total - done;
	} else {
		ready_push(c, src);
	}
	if (wbuf_full(&src->q)) {
		src->was_full = true;
	}
	output_hold_check(c);
	if (!ev_is_active(&c->out_w) && !c->flush_fed) {
		c->flush_fed = true; /* while writable, flushed this turn */
		ev_feed_event(c->loop, &c->flush_w, EV_CUSTOM);
	}
	return 0;
}

int
conn_send_line(struct conn *c, struct conn_source *src, const char *line, size_t len)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t)line, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "\n", .iov_len = 1 },
	};

	/* A line read with its newline (the client's, or a server's): one piece. */
	if (sys_line_in_chunk(line, len)) {
		iov[0].iov_len = len + 1;
		return conn_send(c, src, iov, 1);
	}
	return conn_send(c, src, iov, 2);
}

/*
 * Hand out the n bytes of input at p, line by line, until a line's answer fills what is
 * queued for the client (CONN_HOLD_OUTPUT, conn_hold()).  p is a chunk just read into
 * sys_scratch, whose rest is then kept in c->rest, or what is left of c->rest (from
 * c->rest_off), which is then used up to where the feed stopped; either is handed out
 * first once nothing holds the input, and c->rest is freed once it is used up.  Without
 * the memory to keep a rest, it is handed out now (at most a chunk's worth of answers
 * past max_queue), or dropped when the client's output is gone and the owner not told
 * yet (CONN_HOLD_GONE).
 */
static void
conn_feed(struct conn *c, const char *p, size_t n)
{
	size_t used = n;

	sys_chunk_lo = p;
	sys_chunk_hi = p + n;
	sys_scratch_busy = true;
	(void)framer_feed_part(&c->inf, p, n, c->sink, c->ctx, &used);
	if (c->rest != NULL) {
		c->rest_off += used;
	} else if (used < n) {
		c->rest = malloc(n - used);
		if (c->rest != NULL) {
			memcpy(c->rest, p + used, n - used);
			c->rest_len = n - used;
			c->rest_off = 0;
		} else if ((c->hold & CONN_HOLD_GONE) == 0) {
			(void)framer_feed(&c->inf, p + used, n - used, c->sink, c->ctx);
		}
		/* (else the client's output is gone, its owner not told yet: nothing read now
		 * could be answered, and no line may go before it is told: the rest is dropped) */
	}
	sys_chunk_lo = sys_chunk_hi = NULL;
	if (sys_chunk_done != NULL) {
		sys_chunk_done(); /* before c->rest goes: what was held of it is copied */
	}
	sys_scratch_busy = false;
	if (c->rest != NULL && c->rest_off == c->rest_len) {
		free(c->rest);
		c->rest = NULL;
		c->rest_len = c->rest_off = 0;
	}
}

static void
conn_on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = container_of(w, struct conn, in_w);
	size_t budget = READ_BUDGET;

	(void)revents;
	while (budget > 0 && c->hold == 0 && !c->in_eof && !sys_scratch_busy) {
		if (c->rest != NULL) {
			/* What a full output queue stopped, now that it has drained. */
			size_t n = c->rest_len - c->rest_off;

			conn_feed(c, c->rest + c->rest_off, n);
			budget -= SYS_MIN(n, budget);
			continue;
		}
		size_t want = SYS_MIN(SYS_SCRATCH_SIZE, budget);
		ssize_t n = sys_read(c->in_fd, sys_scratch, want);

		if (n > 0) {
			conn_feed(c, sys_scratch, (size_t)n);
			if (!c->in_big && framer_longest(&c->inf) >= CONN_PIPE_LONG) {
				/* Long messages: the client's pipe too (failure is harmless). */
				c->in_big = true;
				(void)fcntl(c->in_fd, F_SETPIPE_SZ, CONN_PIPE_BIG);
			}
			budget -= (size_t)n;
			if ((size_t)n < want) { // cppcheck-suppress knownConditionTrueFalse
				break;		/* drained: no read just to hear EAGAIN */
			}
			continue;
		}
		if (n == -1 && errno == EAGAIN) {
			break;
		}
		if (n == -1 && errno != ECONNRESET) {
			diag_warn_errno("cannot read from the client");
		}
		c->in_eof = true;
		c->in_reset = n == -1 && errno == ECONNRESET;
		ev_io_stop(loop, w);
		framer_finish(&c->inf, c->sink, c->ctx);
		c->hooks->on_eof(c, c->ctx);
		return;
	}
	if (c->rest != NULL && c->hold == 0) {
		ev_feed_event(loop, w, EV_READ); /* the budget ran out first: the next turn */
	}
}

void
conn_release(struct conn *c)
{
	ev_io_stop(c->loop, &c->in_w);
	ev_io_stop(c->loop, &c->out_w);
	ev_timer_stop(c->loop, &c->room_w);
	flush_cancel(c);
	framer_release(&c->inf);
	free(c->rest);
	c->rest = NULL;
	c->rest_len = c->rest_off = 0;
	c->lost_len = c->lost_off = 0;
	c->out_dead = true; /* sources retired later, and those waiting, are freed at once */
	if (c->cur != NULL && c->cur->retired) {
		struct conn_source *cur = c->cur;

		c->cur = NULL;
		source_free(c, cur);
	}
	while (c->ready_head != NULL) {
		struct conn_source *src = ready_pop(c);

		if (src->retired) {
			source_free(c, src);
		}
	}
	wbuf_release(&c->self.q);
	c->cur = NULL;
	c->queued = 0;
}

/*
 * An error in place of a lost answer (conn_send_lost_answers(), conn_send_error()) that
 * the queues had no memory for: kept in c->lost, which needs none.  0, or -1 when it does
 * not fit there.
 */
static int
lost_keep(struct conn *c, const struct iovec *iov, int n)
{
	size_t total = 0;

	for (int i = 0; i < n; i++) {
		total += iov[i].iov_len;
	}
	if (c->out_dead || total > sizeof(c->lost) - c->lost_len) {
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (iov[i].iov_len > 0) {
			memcpy(c->lost + c->lost_len, iov[i].iov_base, iov[i].iov_len);
			c->lost_len += iov[i].iov_len;
		}
	}
	c->queued += total;
	output_hold_check(c);
	if (!ev_is_active(&c->out_w) && !c->flush_fed) {
		c->flush_fed = true;
		ev_feed_event(c->loop, &c->flush_w, EV_CUSTOM);
	}
	return 0;
}

int
conn_send_error_iov(struct conn *c, struct conn_source *src, const struct iovec *iov, int n)
{
	if (conn_send(c, src, iov, n) == 0 || (errno == ENOMEM && lost_keep(c, iov, n) == 0)) {
		return 0;
	}
	return -1;
}

int
conn_send_error(struct conn *c, struct conn_source *src, const char *line, size_t len)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t)line, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "\n", .iov_len = 1 },
	};

	return conn_send_error_iov(c, src, iov, 2);
}

bool
conn_send_lost_answers(struct conn *c, struct conn_source *src, struct iovec *iov, int pre,
		       const char *end, const char *line, size_t len)
{
	char buf[RPCOUT_LOST_BUF];
	size_t pos = 0;
	int n, sent = 0, lost = 0;

	while ((n = rpcout_lost_answers(iov + pre, buf, sizeof(buf), line, len, &pos)) > 0) {
		iov[pre + n] = (struct iovec){ .iov_base = (void *)(uintptr_t)end,
					       .iov_len = strlen(end) };
		if (conn_send(c, src, iov, pre + n + 1) == 0 ||
		    (errno == ENOMEM && lost_keep(c, iov, pre + n + 1) == 0)) {
			sent++;
		} else {
			lost++;
		}
	}
	return sent > 0 && lost == 0;
}
