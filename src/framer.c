/*
 * framer: newline-delimited framing with a hard per-line bound.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/framer.h"
#include "mcpmux/sys.h"

void
framer_init(struct framer *f, size_t max)
{
	memset(f, 0, sizeof(*f));
	f->max = max;
}

void
framer_release(struct framer *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = 0;
	f->cap = 0;
	f->big_len = 0;
	f->is_big = false;
	f->big_cr = false;
}

/* Give back a buffer that grew for a big line. */
static void
framer_trim(struct framer *f)
{
	if (f->cap > FRAMER_KEEP) {
		free(f->buf);
		f->buf = NULL;
		f->cap = 0;
	}
}

static int
framer_append(struct framer *f, const char *p, size_t n)
{
	size_t need = f->len + n;

	if (need > f->cap) {
		size_t cap = f->cap ? f->cap : 256;

		while (cap < need) {
			cap *= 2;
		}
		/* Never more than the bound plus the one "\r" that may precede "\n". */
		cap = SYS_MIN(cap, f->max + 1);
		char *nb = realloc(f->buf, cap);

		if (nb == NULL) {
			return -1;
		}
		f->buf = nb;
		f->cap = cap;
		if (cap > FRAMER_KEEP) {
			sys_big_alloc = true;
		}
	}
	memcpy(f->buf + f->len, p, n);
	f->len += n;
	return 0;
}

/* Deliver one complete line (its "\n" already removed). */
static void
framer_deliver(struct framer *f, const char *p, size_t n, const struct framer_sink *sink, void *ctx)
{
	if (n > 0 && p[n - 1] == '\r') {
		n--;
	}
	if (n == 0) {
		return;
	}
	if (n <= f->max) {
		sink->line(ctx, p, n);
		return;
	}
	f->big_oom = false;
	sink->big_begin(ctx, p, f->max);
	sink->big_more(ctx, p + f->max, n - f->max);
	sink->big_end(ctx, n);
}

/*
 * Switch the current line to "big" mode: hand out what was buffered as its head and
 * forget the buffer; from now on bytes pass through to big_more() until the line ends.
 */
static void
framer_go_big(struct framer *f, bool oom, const struct framer_sink *sink, void *ctx)
{
	size_t head = SYS_MIN(f->len, f->max);

	f->big_oom = oom;
	sink->big_begin(ctx, f->buf ? f->buf : "", head);
	if (f->len > head) {
		sink->big_more(ctx, f->buf + head, f->len - head);
	}
	f->is_big = true;
	f->big_len = f->len;
	f->len = 0;
	framer_trim(f);
}

/* Bytes of a big line: a chunk, or the part before its "\n" when at_end. */
static void
framer_big_bytes(struct framer *f, const char *p, size_t n, bool at_end,
		 const struct framer_sink *sink, void *ctx)
{
	/* A CR at the end of a chunk may be the first half of a CRLF: hold it back. */
	if (f->big_cr && (n > 0 || !at_end)) {
		f->big_len++;
		sink->big_more(ctx, "\r", 1);
	}
	f->big_cr = false;
	if (n > 0 && p[n - 1] == '\r') {
		n--;
		f->big_cr = !at_end;
	}
	if (n > 0) {
		f->big_len += n;
		sink->big_more(ctx, p, n);
	}
	if (at_end) {
		sink->big_end(ctx, f->big_len);
		f->is_big = false;
		f->big_len = 0;
	}
}

int
framer_feed(struct framer *f, const char *data, size_t len, const struct framer_sink *sink,
	    void *ctx)
{
	return framer_feed_part(f, data, len, sink, ctx, NULL);
}

bool
framer_big_no_memory(const struct framer *f)
{
	return f->big_oom;
}

void
framer_stop(struct framer *f, bool on)
{
	f->stop = on;
}

int
framer_feed_part(struct framer *f, const char *data, size_t len, const struct framer_sink *sink,
		 void *ctx, size_t *used)
{
	const char *p = data, *end = data + len;
	int rc = 0;
	bool stopped = false;

	f->stop = false;
	while (p < end) {
		if (f->stop && used != NULL) {
			stopped = true; /* at a line's end: the loop comes back only there */
			break;
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		size_t so_far = n + (f->is_big ? f->big_len : f->len);

		if (so_far > f->longest) {
			f->longest = so_far;
		}
		if (!f->is_big && f->len == 0 && nl != NULL) {
			/* The whole line is in this chunk: no copy. */
			framer_deliver(f, p, n, sink, ctx);
			p = nl + 1;
			continue;
		}
		if (!f->is_big) {
			size_t fit = SYS_MIN(n, f->max + 1 - f->len);

			if (framer_append(f, p, fit) == -1) {
				/* Out of memory: drop this line, reported as over-long (within
				 * max). */
				rc = -1;
				fit = 0;
				framer_go_big(f, true, sink, ctx);
			} else if (fit < n) { // cppcheck-suppress knownConditionTrueFalse
				framer_go_big(f, false, sink, ctx);
			} else if (nl != NULL) {
				framer_deliver(f, f->buf, f->len, sink, ctx);
				f->len = 0;
				framer_trim(f);
			}
			p += fit;
			n -= fit;
		}
		if (f->is_big) {
			framer_big_bytes(f, p, n, nl != NULL, sink, ctx);
		}
		if (nl == NULL) {
			break;
		}
		p = nl + 1;
	}
	if (used != NULL) {
		*used = stopped ? (size_t)(p - data) : len;
	}
	f->stop = false;
	if (rc == -1) {
		errno = ENOMEM;
	}
	return rc;
}

void
framer_finish(struct framer *f, const struct framer_sink *sink, void *ctx)
{
	if (f->is_big) {
		/* A held-back CR at the very end is dropped, as for any last line. */
		sink->big_end(ctx, f->big_len);
	} else if (f->len > 0) {
		framer_deliver(f, f->buf, f->len, sink, ctx);
	}
	framer_release(f);
}

size_t
framer_pending(const struct framer *f)
{
	return f->is_big ? f->big_len : f->len;
}

size_t
framer_longest(const struct framer *f)
{
	return f->longest;
}

void
framer_longest_reset(struct framer *f)
{
	f->longest = 0;
}
