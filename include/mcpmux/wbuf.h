/*
 * wbuf: the unsent bytes for one non-blocking file descriptor, as a FIFO of chunks.
 *
 * Small appends share 16 KiB chunks; a big message gets one chunk of its own size, so
 * it is copied once.  A chunk is freed as soon as it has been written: an empty wbuf
 * holds no memory.  wbuf_append() copies; the caller keeps its bytes.
 *
 * `high` is the backpressure mark: once wbuf_len() reaches it, wbuf_full() is true and
 * the producers of this wbuf stop reading (their own input then stays in the kernel's
 * pipe).  A single message larger than `high` is still taken whole: the bound on one
 * message is the framer's.
 */
#ifndef MCPMUX_WBUF_H
#define MCPMUX_WBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define WBUF_FIRST    ((size_t)1 << 10) /* the first chunk of an empty queue */
#define WBUF_CHUNK    ((size_t)16 << 10)
#define WBUF_HIGH_DEF ((size_t)16 << 20)

struct wchunk;

struct wbuf {
	struct wchunk *head;
	struct wchunk *tail;
	size_t len;  /* unsent bytes */
	size_t high; /* backpressure mark */
	char last;   /* the last byte written through it (if wrote) */
	bool wrote;  /* a byte was written through it */
};

void wbuf_init(struct wbuf *q, size_t high);
/* Free every chunk; the wbuf is empty and usable again. */
void wbuf_release(struct wbuf *q);
/* Queue bytes.  0, or -1 (ENOMEM) with nothing queued. */
int wbuf_append(struct wbuf *q, const void *p, size_t len);
/*
 * Send `len` bytes and then `len2` more (either may be 0) as one unit: written directly
 * when nothing is queued, the unwritten rest queued.  0 on success; -1 on a write error
 * other than EAGAIN (errno set, nothing queued) or ENOMEM (the rest not queued).  *sent
 * (if sent is not NULL) gets the bytes written, of the two together.
 */
int wbuf_send(struct wbuf *q, int fd, const void *p, size_t len, const void *p2, size_t len2,
	      size_t *sent);
/*
 * Write the queue and then p[0..len) with one writev, as far as the fd takes them, and
 * queue what is left of p: the queued bytes always go first.  0 on success; -1 on a write
 * error other than EAGAIN (errno set, nothing queued) or ENOMEM.
 */
int wbuf_send_after(struct wbuf *q, int fd, const void *p, size_t len);
/* Write queued bytes until done or EAGAIN.  0, or -1 on a write error (errno set). */
int wbuf_flush(struct wbuf *q, int fd);
/* Queue bytes given as an iovec array (at most one allocation; all or nothing). */
int wbuf_appendv(struct wbuf *q, const struct iovec *iov, int n);
/* Queue a line and its "\n" (the same as wbuf_appendv() of the two). */
int wbuf_append_line(struct wbuf *q, const char *line, size_t len);
/*
 * Write at most `max` queued bytes.  Returns the bytes written (0 on EAGAIN), or -1 on a
 * write error (errno set).
 */
ssize_t wbuf_write_upto(struct wbuf *q, int fd, size_t max);
/*
 * Where to stop a turn of writing from this queue, for fairness between queues that share
 * one fd: the end of the last whole line within the first `quantum` bytes, or, when the
 * first line is longer than that, the end of that line.  The queue holds whole lines only
 * ("\n"-terminated).  0 for an empty queue.
 */
size_t wbuf_line_cut(const struct wbuf *q, size_t quantum);
/* Copy the first len queued bytes (or fewer, if fewer are queued) to out.  Bytes copied. */
size_t wbuf_peek(const struct wbuf *q, void *out, size_t len);
/* Call fn with the queued bytes, in order, a contiguous piece at a time. */
void wbuf_each(const struct wbuf *q, void (*fn)(void *ctx, const char *p, size_t len), void *ctx);
/* How many of the queued bytes are `byte` (the lines of a queue of lines: '\n'). */
size_t wbuf_count(const struct wbuf *q, char byte);

static inline size_t
wbuf_len(const struct wbuf *q)
{
	return q->len;
}

/*
 * Whether a byte was written through q (from the queue, or directly by a send), and the
 * last one into *last.
 */
static inline bool
wbuf_last(const struct wbuf *q, char *last)
{
	*last = q->last;
	return q->wrote;
}

static inline bool
wbuf_full(const struct wbuf *q)
{
	return q->len >= q->high;
}

#endif
