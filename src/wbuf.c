/*
 * wbuf: bounded FIFO of unsent bytes.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "mcpmux/sys.h"
#include "mcpmux/wbuf.h"

#define WBUF_IOV 64

struct wchunk {
	struct wchunk *next;
	size_t off; /* first unsent byte */
	size_t len; /* bytes filled */
	size_t cap;
	char data[];
};

void
wbuf_init(struct wbuf *q, size_t high)
{
	memset(q, 0, sizeof(*q));
	q->high = high;
}

/*
 * Memory of a big message, or of a queue of many small ones, is freed: the loop gives it back
 * to the system once mcpmux is idle (sys_big_alloc).  Asked for when it is freed, not only
 * when it was allocated: a queue may wait for its reader longer than the idle second.
 */
static void
freed_big(const struct wbuf *q, const struct wchunk *c)
{
	if (q->len > 4 * WBUF_CHUNK || c->cap > 4 * WBUF_CHUNK) {
		sys_big_alloc = true;
	}
}

void
wbuf_release(struct wbuf *q)
{
	struct wchunk *c = q->head;

	while (c != NULL) {
		struct wchunk *next = c->next;

		freed_big(q, c);
		free(c);
		c = next;
	}
	q->head = q->tail = NULL;
	q->len = 0;
}

/*
 * Queue the bytes of iov[0..n).  At most one allocation, made before anything is
 * copied, so a failure queues nothing.
 *
 * The two cases are kept apart on purpose: when everything fits in the tail's room no
 * chunk is allocated and nothing but the tail is written to; otherwise the tail takes
 * what fits in its room and the new chunk the rest.  (One loop for both, writing "the
 * rest" to a chunk that is NULL when there is no rest, left the compiler a path on which
 * a NULL chunk was written to: it could not know that the rest is then always empty.)
 */
int
wbuf_appendv(struct wbuf *q, const struct iovec *iov, int n)
{
	struct wchunk *t = q->tail;
	size_t room = t != NULL ? t->cap - t->len : 0, total = 0;

	for (int i = 0; i < n; i++) {
		total += iov[i].iov_len;
	}
	if (total == 0) {
		return 0;
	}
	if (t != NULL && total <= room) {
		for (int i = 0; i < n; i++) {
			if (iov[i].iov_len > 0) {
				memcpy(t->data + t->len, iov[i].iov_base, iov[i].iov_len);
				t->len += iov[i].iov_len;
			}
		}
		q->len += total;
		return 0;
	}

	/* A queue starts small (most hold one message at a time), then grows by chunks. */
	size_t cap = SYS_MAX(total - room, q->head == NULL ? WBUF_FIRST : WBUF_CHUNK);
	struct wchunk *c = malloc(sizeof(*c) + cap);

	if (c == NULL) {
		errno = ENOMEM;
		return -1;
	}
	c->next = NULL;
	c->off = 0;
	c->len = 0;
	c->cap = cap;
	if (cap > 4 * WBUF_CHUNK) {
		sys_big_alloc = true;
	}
	for (int i = 0; i < n; i++) {
		const char *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		size_t k = SYS_MIN(len, room); /* room > 0 only when there is a tail */
		size_t rest = len - k;

		if (k > 0) {
			memcpy(t->data + t->len, p, k);
			t->len += k;
			room -= k;
		}
		if (rest > 0) {
			memcpy(c->data + c->len, p + k, rest);
			c->len += rest;
		}
	}
	if (t != NULL) {
		t->next = c;
	} else {
		q->head = c;
	}
	q->tail = c;
	q->len += total;
	return 0;
}

int
wbuf_append_line(struct wbuf *q, const char *line, size_t len)
{
	struct wchunk *t = q->tail;

	if (t != NULL && t->cap - t->len > len) {
		/* The common case, a small message: it fits where the last one ended. */
		memcpy(t->data + t->len, line, len);
		t->data[t->len + len] = '\n';
		t->len += len + 1;
		q->len += len + 1;
		return 0;
	}
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t)line, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "\n", .iov_len = 1 },
	};

	return wbuf_appendv(q, iov, 2);
}

int
wbuf_append(struct wbuf *q, const void *p, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)p, .iov_len = len };

	return wbuf_appendv(q, &iov, 1);
}

/* Forget `n` written bytes from the front. */
static void
wbuf_consume(struct wbuf *q, size_t n)
{
	while (n > 0) {
		struct wchunk *c = q->head;
		size_t avail = c->len - c->off;

		if (n < avail) {
			c->off += n;
			q->len -= n;
			q->wrote = true;
			q->last = c->data[c->off - 1];
			return;
		}
		if (c->len > 0) {
			q->wrote = true;
			q->last = c->data[c->len - 1];
		}
		freed_big(q, c);
		n -= avail;
		q->len -= avail;
		q->head = c->next;
		free(c);
	}
	if (q->head == NULL) {
		q->tail = NULL;
	} else if (q->head->off == q->head->len) {
		/* An empty chunk at the tail keeps its room for the next append. */
		q->head->off = q->head->len = 0;
	}
}

ssize_t
wbuf_write_upto(struct wbuf *q, int fd, size_t max)
{
	struct iovec iov[WBUF_IOV];
	size_t want = 0;
	int n = 0;

	for (struct wchunk *c = q->head; c != NULL && n < WBUF_IOV && want < max; c = c->next) {
		size_t avail = SYS_MIN(c->len - c->off, max - want);

		if (avail > 0) {
			iov[n].iov_base = c->data + c->off;
			iov[n].iov_len = avail;
			want += avail;
			n++;
		}
	}
	if (n == 0) {
		return 0;
	}
	ssize_t w = sys_writev(fd, iov, n);

	if (w == -1) {
		return errno == EAGAIN ? 0 : -1;
	}
	wbuf_consume(q, (size_t)w);
	if (q->len == 0 && q->head != NULL) {
		wbuf_release(q);
	}
	return w;
}

size_t
wbuf_line_cut(const struct wbuf *q, size_t quantum)
{
	size_t seen = 0, cut = 0;

	for (const struct wchunk *c = q->head; c != NULL; c = c->next) {
		const char *p = c->data + c->off, *nl;
		size_t avail = c->len - c->off, from = 0;

		if (seen < quantum) {
			/* The last line end within the quantum. */
			size_t span = SYS_MIN(avail, quantum - seen);

			nl = memrchr(p, '\n', span);
			if (nl != NULL) {
				cut = seen + (size_t)(nl - p) + 1;
			}
			from = span;
		}
		if (from < avail || seen >= quantum) {
			if (cut > 0) {
				return cut;
			}
			/* The first line is longer than the quantum: up to its end. */
			nl = memchr(p + from, '\n', avail - from);
			if (nl != NULL) {
				return seen + (size_t)(nl - p) + 1;
			}
		}
		seen += avail;
	}
	return cut > 0 ? cut : q->len;
}

int
wbuf_send_after(struct wbuf *q, int fd, const void *p, size_t len)
{
	struct iovec iov[WBUF_IOV + 1];
	size_t queued = 0, done = 0;
	int n = 0;
	bool all = true; /* every queued byte is in iov: p may follow in the same writev */

	for (struct wchunk *c = q->head; c != NULL; c = c->next) {
		if (c->len == c->off) {
			continue;
		}
		if (n == WBUF_IOV) {
			all = false;
			break;
		}
		iov[n].iov_base = c->data + c->off;
		iov[n].iov_len = c->len - c->off;
		queued += iov[n].iov_len;
		n++;
	}
	if (all && len > 0) {
		iov[n].iov_base = (void *)(uintptr_t)p;
		iov[n].iov_len = len;
		n++;
	}
	if (n > 0) {
		ssize_t w = sys_writev(fd, iov, n);

		if (w == -1 && errno != EAGAIN) {
			return -1;
		}
		if (w > 0) {
			size_t from_q = SYS_MIN((size_t)w, queued);

			wbuf_consume(q, from_q);
			done = (size_t)w - from_q;
			if (done > 0) {
				q->wrote = true;
				q->last = ((const char *)p)[done - 1];
			}
		}
	}
	if (done < len) {
		return wbuf_append(q, (const char *)p + done, len - done);
	}
	if (q->len == 0 && q->head != NULL) {
		wbuf_release(q); /* drained: give the memory back */
	}
	return 0;
}

int
wbuf_flush(struct wbuf *q, int fd)
{
	while (q->len > 0) {
		struct iovec iov[WBUF_IOV];
		int n = 0;

		for (struct wchunk *c = q->head; c != NULL && n < WBUF_IOV; c = c->next) {
			if (c->len > c->off) {
				iov[n].iov_base = c->data + c->off;
				iov[n].iov_len = c->len - c->off;
				n++;
			}
		}
		ssize_t w = sys_writev(fd, iov, n);

		if (w == -1) {
			return errno == EAGAIN ? 0 : -1;
		}
		wbuf_consume(q, (size_t)w);
	}
	if (q->head != NULL) {
		/* Drained: give the memory back. */
		wbuf_release(q);
	}
	return 0;
}

int
wbuf_send(struct wbuf *q, int fd, const void *p, size_t len, const void *p2, size_t len2,
	  size_t *sent)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t)p, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t)p2, .iov_len = len2 },
	};
	size_t done = 0;

	if (sent != NULL) {
		*sent = 0;
	}
	if (q->len == 0) {
		ssize_t w = sys_writev(fd, iov, 2);

		if (w == -1 && errno != EAGAIN) {
			return -1;
		}
		done = w > 0 ? (size_t)w : 0;
		if (sent != NULL) {
			*sent = done;
		}
		if (done > 0) {
			q->wrote = true;
			q->last = done <= len ? ((const char *)p)[done - 1]
					      : ((const char *)p2)[done - len - 1];
		}
	}
	/* Queue what the kernel did not take. */
	if (done >= len) {
		iov[0].iov_len = 0;
		done -= len;
		if (done > 0) {
			iov[1].iov_base = (char *)iov[1].iov_base + done;
			iov[1].iov_len -= done;
		}
	} else {
		iov[0].iov_base = (char *)iov[0].iov_base + done;
		iov[0].iov_len -= done;
	}
	return wbuf_appendv(q, iov, 2);
}

size_t
wbuf_peek(const struct wbuf *q, void *out, size_t len)
{
	size_t got = 0;

	for (const struct wchunk *c = q->head; c != NULL && got < len; c = c->next) {
		size_t n = SYS_MIN(c->len - c->off, len - got);

		memcpy((char *)out + got, c->data + c->off, n);
		got += n;
	}
	return got;
}

size_t
wbuf_count(const struct wbuf *q, char byte)
{
	size_t n = 0;

	for (const struct wchunk *c = q->head; c != NULL; c = c->next) {
		const char *p = c->data + c->off, *end = c->data + c->len;

		while (p < end && (p = memchr(p, byte, (size_t)(end - p))) != NULL) {
			n++;
			p++;
		}
	}
	return n;
}

void
wbuf_each(const struct wbuf *q, void (*fn)(void *ctx, const char *p, size_t len), void *ctx)
{
	for (const struct wchunk *c = q->head; c != NULL; c = c->next) {
		if (c->len > c->off) {
			fn(ctx, c->data + c->off, c->len - c->off);
		}
	}
}
