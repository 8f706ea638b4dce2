/*
 * Unit tests for wbuf: direct and queued sends through a real pipe, the exact byte
 * stream end to end, the backpressure mark, memory after a drain, write errors, and the
 * pure helpers (appendv, peek, write_upto, line_cut); and sys_writev_all(), the log's
 * blocking gather write, through partial writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mcpmux/sys.h"
#include "mcpmux/wbuf.h"

#define MIB ((size_t)1 << 20)

/* ---- a growable byte string ---- */

struct bytes {
	char *p;
	size_t len;
	size_t cap;
};

static void
bytes_add(struct bytes *b, const void *p, size_t n)
{
	if (n == 0) {
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n) {
			cap *= 2;
		}
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
bytes_free(struct bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- fixture: a pipe with both ends non-blocking, a wbuf, and the two streams ---- */

struct pipe_fixture {
	int rfd, wfd;
	struct wbuf q;
	struct bytes want; /* every byte written to the pipe, in order */
	struct bytes got;  /* every byte read from it */
};

static int
pipe_setup(void **state)
{
	struct pipe_fixture *f = calloc(1, sizeof(*f));
	int fds[2];

	if (f == NULL || pipe2(fds, O_CLOEXEC | O_NONBLOCK) == -1) {
		free(f);
		return -1;
	}
	f->rfd = fds[0];
	f->wfd = fds[1];
	wbuf_init(&f->q, WBUF_HIGH_DEF);
	*state = f;
	return 0;
}

static int
pipe_teardown(void **state)
{
	struct pipe_fixture *f = *state;

	wbuf_release(&f->q);
	sys_close(&f->rfd);
	sys_close(&f->wfd);
	bytes_free(&f->want);
	bytes_free(&f->got);
	free(f);
	return 0;
}

/* Read up to max bytes (stopping at EAGAIN) into f->got.  Bytes read. */
static size_t
drain(struct pipe_fixture *f, size_t max)
{
	char buf[65536];
	size_t total = 0;

	while (total < max) {
		size_t want = max - total < sizeof(buf) ? max - total : sizeof(buf);
		ssize_t n = read(f->rfd, buf, want);

		if (n == -1 && errno == EAGAIN) {
			break;
		}
		assert_true(n > 0);
		bytes_add(&f->got, buf, (size_t)n);
		total += (size_t)n;
	}
	return total;
}

/* Write filler bytes straight to the pipe until it is full.  Bytes written. */
static size_t
fill_pipe(struct pipe_fixture *f)
{
	char buf[4096];
	size_t total = 0;

	memset(buf, 'F', sizeof(buf));
	for (;;) {
		ssize_t n = write(f->wfd, buf, sizeof(buf));

		if (n == -1) {
			assert_int_equal(errno, EAGAIN);
			break;
		}
		bytes_add(&f->want, buf, (size_t)n);
		total += (size_t)n;
	}
	/* A pipe with less than a page free refuses a 4096-byte write: top it up. */
	for (;;) {
		ssize_t n = write(f->wfd, "F", 1);

		if (n == -1) {
			assert_int_equal(errno, EAGAIN);
			break;
		}
		bytes_add(&f->want, "F", 1);
		total++;
	}
	return total;
}

/* wbuf_send, recording the bytes as expected output. */
static void
send2(struct pipe_fixture *f, const void *p, size_t len, const void *p2, size_t len2)
{
	assert_int_equal(wbuf_send(&f->q, f->wfd, p, len, p2, len2, NULL), 0);
	bytes_add(&f->want, p, len);
	bytes_add(&f->want, p2, len2);
}

/* Flush and drain until everything queued has gone through; then compare the streams. */
static void
pump_and_compare(struct pipe_fixture *f)
{
	for (int rounds = 0; wbuf_len(&f->q) > 0; rounds++) {
		assert_true(rounds < 100000);
		drain(f, SIZE_MAX);
		assert_int_equal(wbuf_flush(&f->q, f->wfd), 0);
	}
	drain(f, SIZE_MAX);
	assert_null(f->q.head);
	assert_null(f->q.tail);
	assert_int_equal(f->got.len, f->want.len);
	assert_memory_equal(f->got.p, f->want.p, f->want.len);
}

/* ---- tests ---- */

static void
test_send_direct_when_empty(void **state)
{
	struct pipe_fixture *f = *state;

	send2(f, "hello ", 6, "world\n", 6);
	assert_int_equal(wbuf_len(&f->q), 0);
	assert_null(f->q.head);
	assert_int_equal(drain(f, SIZE_MAX), 12);
	assert_memory_equal(f->got.p, "hello world\n", 12);

	send2(f, "", 0, "only the second\n", 16);
	send2(f, "only the first\n", 15, NULL, 0);
	assert_null(f->q.head);
	pump_and_compare(f);
}

static void
test_send_queues_when_pipe_full(void **state)
{
	struct pipe_fixture *f = *state;
	size_t filler = fill_pipe(f);

	assert_true(filler > 0);
	send2(f, "abc", 3, "def\n", 4);
	assert_int_equal(wbuf_len(&f->q), 7);
	assert_non_null(f->q.head);

	/* Once something is queued, later sends queue behind it even if the pipe has room. */
	assert_int_equal(drain(f, SIZE_MAX), filler);
	send2(f, "ghi\n", 4, NULL, 0);
	assert_int_equal(wbuf_len(&f->q), 11);
	assert_int_equal(drain(f, SIZE_MAX), 0);

	assert_int_equal(wbuf_flush(&f->q, f->wfd), 0);
	assert_int_equal(wbuf_len(&f->q), 0);
	assert_null(f->q.head);
	assert_int_equal(drain(f, SIZE_MAX), 11);
	assert_memory_equal(f->got.p + filler, "abcdef\nghi\n", 11);
	pump_and_compare(f);
}

/* wbuf_send_after: the queue, then the bytes, in one writev; the rest queued in order. */
static void
test_send_after(void **state)
{
	struct pipe_fixture *f = *state;
	static char big[200000];

	for (size_t i = 0; i < sizeof(big); i++) {
		big[i] = (char)('A' + i % 23);
	}
	/* Nothing queued: written at once. */
	assert_int_equal(wbuf_send_after(&f->q, f->wfd, "one\n", 4), 0);
	bytes_add(&f->want, "one\n", 4);
	assert_null(f->q.head);
	assert_int_equal(drain(f, SIZE_MAX), 4);

	/* Something queued and room in the pipe: both leave, the queue first. */
	assert_int_equal(wbuf_append(&f->q, "two\n", 4), 0);
	bytes_add(&f->want, "two\n", 4);
	assert_int_equal(wbuf_send_after(&f->q, f->wfd, "three\n", 6), 0);
	bytes_add(&f->want, "three\n", 6);
	assert_int_equal(wbuf_len(&f->q), 0);
	assert_null(f->q.head);
	assert_int_equal(drain(f, SIZE_MAX), 10);

	/* A full pipe: all of it is queued behind what was there. */
	size_t filler = fill_pipe(f);

	assert_true(filler > 0);
	assert_int_equal(wbuf_append(&f->q, "four\n", 5), 0);
	bytes_add(&f->want, "four\n", 5);
	assert_int_equal(wbuf_send_after(&f->q, f->wfd, "five\n", 5), 0);
	bytes_add(&f->want, "five\n", 5);
	assert_int_equal(wbuf_len(&f->q), 10);

	/* More than the pipe takes: the pipe gets the queue and a part, the rest is queued. */
	assert_int_equal(drain(f, SIZE_MAX), filler);
	assert_int_equal(wbuf_send_after(&f->q, f->wfd, big, sizeof(big)), 0);
	bytes_add(&f->want, big, sizeof(big));
	assert_true(wbuf_len(&f->q) > 0 && wbuf_len(&f->q) < sizeof(big));

	/* A closed reader: an error, and nothing queued for it. */
	pump_and_compare(f);
	(void)signal(SIGPIPE, SIG_IGN);
	sys_close(&f->rfd);
	size_t before = wbuf_len(&f->q);

	assert_int_equal(wbuf_send_after(&f->q, f->wfd, "six\n", 4), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(wbuf_len(&f->q), before);
}

/* An empty pipe takes part of a 1 MiB message; wbuf_send queues exactly the rest. */
static void
test_send_partial_write(void **state)
{
	struct pipe_fixture *f = *state;
	char *big = malloc(MIB), last;

	assert_non_null(big);
	for (size_t i = 0; i < MIB; i++) {
		big[i] = (char)('a' + i % 26);
	}
	send2(f, big, MIB, "\n", 1);
	free(big);
	size_t taken = drain(f, SIZE_MAX);

	assert_true(taken > 0 && taken < MIB);
	assert_int_equal(wbuf_len(&f->q), MIB + 1 - taken);
	/* The last byte written, directly, then from the queue (wbuf_last). */
	assert_true(wbuf_last(&f->q, &last));
	assert_int_equal(last, 'a' + (taken - 1) % 26);
	pump_and_compare(f);
	assert_true(wbuf_last(&f->q, &last));
	assert_int_equal(last, '\n');
}

/* Nothing written is told from a NUL written last. */
static void
test_last_nul(void **state)
{
	struct pipe_fixture *f = *state;
	char last = 'x';

	assert_false(wbuf_last(&f->q, &last));
	assert_int_equal(wbuf_send(&f->q, f->wfd, "a\0", 2, NULL, 0, NULL), 0);
	assert_true(wbuf_last(&f->q, &last));
	assert_int_equal(last, '\0');
}

/* Small and 1 MiB messages, sends and appends, interleaved with partial drains. */
static void
test_end_to_end_stream(void **state)
{
	struct pipe_fixture *f = *state;
	char *big = malloc(MIB);
	uint32_t lcg = 12345;

	assert_non_null(big);
	fill_pipe(f);
	for (int i = 0; i < 600; i++) {
		char small[64];
		int n = snprintf(small, sizeof(small), "message %d\n", i);

		lcg = lcg * 1103515245u + 12345u;
		switch ((lcg >> 16) % 8) {
		case 0:
			/* a 1 MiB message, as body + "\n" */
			memset(big, 'A' + i % 26, MIB);
			big[0] = '<';
			big[MIB - 1] = '>';
			send2(f, big, MIB, "\n", 1);
			break;
		case 1:
			assert_int_equal(wbuf_append(&f->q, small, (size_t)n), 0);
			bytes_add(&f->want, small, (size_t)n);
			break;
		case 2:
			/* the reader takes some, the writer flushes some */
			drain(f, (lcg >> 8) % 100000);
			assert_int_equal(wbuf_flush(&f->q, f->wfd), 0);
			break;
		default:
			send2(f, small, (size_t)n - 1, "\n", 1);
			break;
		}
		assert_true(f->want.len - f->got.len >= wbuf_len(&f->q));
	}
	free(big);
	pump_and_compare(f);
}

static void
test_full_at_high_mark(void **state)
{
	struct wbuf q;
	char buf[1000];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	wbuf_init(&q, 100);
	assert_false(wbuf_full(&q));
	assert_int_equal(wbuf_append(&q, buf, 99), 0);
	assert_int_equal(wbuf_len(&q), 99);
	assert_false(wbuf_full(&q));
	assert_int_equal(wbuf_append(&q, buf, 1), 0);
	assert_int_equal(wbuf_len(&q), 100);
	assert_true(wbuf_full(&q));
	wbuf_release(&q);
	assert_int_equal(wbuf_len(&q), 0);
	assert_null(q.head);
	assert_false(wbuf_full(&q));

	/* One message over the mark is taken whole. */
	assert_int_equal(wbuf_append(&q, buf, sizeof(buf)), 0);
	assert_int_equal(wbuf_len(&q), sizeof(buf));
	assert_true(wbuf_full(&q));
	wbuf_release(&q);
	assert_null(q.head);
	assert_null(q.tail);
}

static void
test_flush_to_closed_pipe(void **state)
{
	struct pipe_fixture *f = *state;

	(void)signal(SIGPIPE, SIG_IGN);
	assert_int_equal(wbuf_append(&f->q, "data\n", 5), 0);
	sys_close(&f->rfd);

	errno = 0;
	assert_int_equal(wbuf_flush(&f->q, f->wfd), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(wbuf_len(&f->q), 5); /* nothing was consumed */

	/* A direct send fails the same way and queues nothing. */
	wbuf_release(&f->q);
	errno = 0;
	assert_int_equal(wbuf_send(&f->q, f->wfd, "x\n", 2, NULL, 0, NULL), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(wbuf_len(&f->q), 0);
	assert_null(f->q.head);

	errno = 0;
	assert_int_equal(wbuf_append(&f->q, "y\n", 2), 0);
	assert_int_equal(wbuf_write_upto(&f->q, f->wfd, 1), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(wbuf_len(&f->q), 2);
}

static void
test_appendv_and_peek(void **state)
{
	struct wbuf q;
	char big[40000], out[50000];
	struct iovec iov[3] = {
		{ .iov_base = (void *)(uintptr_t) "head:", .iov_len = 5 },
		{ .iov_base = big, .iov_len = sizeof(big) },
		{ .iov_base = (void *)(uintptr_t) ":tail\n", .iov_len = 6 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(big); i++) {
		big[i] = (char)('0' + i % 10);
	}
	wbuf_init(&q, WBUF_HIGH_DEF);
	assert_int_equal(wbuf_peek(&q, out, sizeof(out)), 0);
	assert_int_equal(wbuf_appendv(&q, iov, 0), 0);
	assert_null(q.head);

	assert_int_equal(wbuf_append(&q, "first\n", 6), 0);
	assert_int_equal(wbuf_appendv(&q, iov, 3), 0);
	assert_int_equal(wbuf_append(&q, "last\n", 5), 0);
	assert_int_equal(wbuf_len(&q), 6 + 5 + sizeof(big) + 6 + 5);

	size_t n = wbuf_peek(&q, out, sizeof(out));

	assert_int_equal(n, wbuf_len(&q));
	assert_memory_equal(out, "first\nhead:", 11);
	assert_memory_equal(out + 11, big, sizeof(big));
	assert_memory_equal(out + 11 + sizeof(big), ":tail\nlast\n", 11);

	/* A short peek copies only what was asked for. */
	memset(out, 0, 20);
	assert_int_equal(wbuf_peek(&q, out, 8), 8);
	assert_memory_equal(out, "first\nhe\0", 9);

	/* The lines queued, across chunks: the big one holds no newline. */
	assert_int_equal(wbuf_count(&q, '\n'), 3);
	assert_int_equal(wbuf_count(&q, ':'), 2);
	assert_int_equal(wbuf_count(&q, '0'), (sizeof(big) + 9) / 10);
	wbuf_release(&q);
	assert_int_equal(wbuf_count(&q, '\n'), 0);
}

/* Lines of every size up to two chunks, across chunk ends: each whole, "\n"-ended. */
static void
test_append_line(void **state)
{
	struct wbuf q;
	static char line[2 * WBUF_CHUNK + 10], out[64 * WBUF_CHUNK];
	size_t want = 0, sizes[] = { 0,
				     1,
				     199,
				     WBUF_CHUNK - 2,
				     WBUF_CHUNK - 1,
				     WBUF_CHUNK,
				     WBUF_CHUNK + 1,
				     200,
				     sizeof(line),
				     3 };

	(void)state;
	for (size_t i = 0; i < sizeof(line); i++) {
		line[i] = (char)('a' + i % 26);
	}
	wbuf_init(&q, WBUF_HIGH_DEF);
	for (int round = 0; round < 3; round++) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			assert_int_equal(wbuf_append_line(&q, line, sizes[k]), 0);
			want += sizes[k] + 1;
		}
	}
	assert_int_equal(wbuf_len(&q), want);
	assert_true(want <= sizeof(out));
	assert_int_equal(wbuf_peek(&q, out, sizeof(out)), want);

	size_t at = 0;

	for (int round = 0; round < 3; round++) {
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			assert_memory_equal(out + at, line, sizes[k]);
			assert_int_equal(out[at + sizes[k]], '\n');
			at += sizes[k] + 1;
		}
	}
	wbuf_release(&q);
}

static void
test_write_upto(void **state)
{
	struct pipe_fixture *f = *state;
	char out[16];

	assert_int_equal(wbuf_append(&f->q, "line1\nline2\n", 12), 0);
	assert_int_equal(wbuf_write_upto(&f->q, f->wfd, 3), 3);
	assert_int_equal(wbuf_len(&f->q), 9);
	assert_int_equal(wbuf_peek(&f->q, out, sizeof(out)), 9);
	assert_memory_equal(out, "e1\nline2\n", 9);
	assert_int_equal(drain(f, SIZE_MAX), 3);
	assert_memory_equal(f->got.p, "lin", 3);

	assert_int_equal(wbuf_write_upto(&f->q, f->wfd, 0), 0);
	assert_int_equal(wbuf_write_upto(&f->q, f->wfd, 1000), 9);
	assert_int_equal(wbuf_len(&f->q), 0);
	assert_null(f->q.head);
	assert_int_equal(wbuf_write_upto(&f->q, f->wfd, 1000), 0); /* empty queue */
	bytes_add(&f->want, "line1\nline2\n", 12);

	/* A full pipe: nothing written, nothing lost. */
	fill_pipe(f);
	assert_int_equal(wbuf_append(&f->q, "more\n", 5), 0);
	assert_int_equal(wbuf_write_upto(&f->q, f->wfd, 5), 0);
	assert_int_equal(wbuf_len(&f->q), 5);
	bytes_add(&f->want, "more\n", 5);
	pump_and_compare(f);
}

/* ---- line_cut against a model computed from the flat queue content ---- */

static size_t
model_line_cut(const char *p, size_t len, size_t quantum)
{
	size_t lim = quantum < len ? quantum : len;

	for (size_t k = lim; k > 0; k--) {
		if (p[k - 1] == '\n') {
			return k;
		}
	}
	for (size_t k = lim; k < len; k++) {
		if (p[k] == '\n') {
			return k + 1;
		}
	}
	return len;
}

static void
check_line_cut_all_quanta(const struct wbuf *q)
{
	size_t len = wbuf_len(q);
	char *flat = malloc(len ? len : 1);

	assert_non_null(flat);
	assert_int_equal(wbuf_peek(q, flat, len), len);
	for (size_t quantum = 0; quantum <= len + 2; quantum++) {
		size_t got = wbuf_line_cut(q, quantum), want = model_line_cut(flat, len, quantum);

		if (got != want) {
			free(flat);
			fail_msg("queue of %zu bytes, quantum %zu: cut %zu, want %zu", len, quantum,
				 got, want);
		}
	}
	free(flat);
}

static void
test_line_cut_simple(void **state)
{
	struct wbuf q;

	(void)state;
	wbuf_init(&q, WBUF_HIGH_DEF);
	assert_int_equal(wbuf_line_cut(&q, 100), 0);
	assert_int_equal(wbuf_append(&q, "aa\nbbbb\nc\n", 10), 0);
	assert_int_equal(wbuf_line_cut(&q, 0), 3);
	assert_int_equal(wbuf_line_cut(&q, 1), 3);
	assert_int_equal(wbuf_line_cut(&q, 3), 3);
	assert_int_equal(wbuf_line_cut(&q, 5), 3);
	assert_int_equal(wbuf_line_cut(&q, 8), 8);
	assert_int_equal(wbuf_line_cut(&q, 9), 8);
	assert_int_equal(wbuf_line_cut(&q, 10), 10);
	assert_int_equal(wbuf_line_cut(&q, 1000), 10);
	check_line_cut_all_quanta(&q);
	wbuf_release(&q);
}

/* Lines of pseudo-random lengths (some over a chunk), so that lines span chunks. */
static void
test_line_cut_across_chunks(void **state)
{
	struct pipe_fixture *f = *state;
	static const size_t lens[] = { 3, 20000, 1, 16380, 2, 5, 40000, 7, 16384, 16385, 9 };
	char *line = malloc(40001);

	assert_non_null(line);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memset(line, 'a' + (int)i, lens[i] - 1);
		line[lens[i] - 1] = '\n';
		assert_int_equal(wbuf_append(&f->q, line, lens[i]), 0);
		bytes_add(&f->want, line, lens[i]);
	}
	free(line);
	/* every quantum is slow on 130 KB: test a sample around each line end */
	size_t len = wbuf_len(&f->q), end = 0;
	char *flat = malloc(len);

	assert_non_null(flat);
	assert_int_equal(wbuf_peek(&f->q, flat, len), len);
	for (size_t i = 0; i <= sizeof(lens) / sizeof(lens[0]); i++) {
		for (size_t d = 0; d < 5; d++) {
			for (int sign = -1; sign <= 1; sign += 2) {
				size_t quantum = sign < 0 ? (end >= d ? end - d : 0) : end + d;

				assert_int_equal(wbuf_line_cut(&f->q, quantum),
						 model_line_cut(flat, len, quantum));
			}
		}
		end += i < sizeof(lens) / sizeof(lens[0]) ? lens[i] : 0;
	}
	free(flat);

	/* After a partial write the first chunk starts mid-line. */
	assert_int_equal(wbuf_write_upto(&f->q, f->wfd, 10), 10);
	len = wbuf_len(&f->q);
	flat = malloc(len);
	assert_non_null(flat);
	assert_int_equal(wbuf_peek(&f->q, flat, len), len);
	for (size_t quantum = 0; quantum < 40; quantum++) {
		assert_int_equal(wbuf_line_cut(&f->q, quantum), model_line_cut(flat, len, quantum));
	}
	for (size_t quantum = 16370; quantum < 16400; quantum++) {
		assert_int_equal(wbuf_line_cut(&f->q, quantum), model_line_cut(flat, len, quantum));
	}
	free(flat);
	pump_and_compare(f);
}

/* Many small lines, sharing chunks: every quantum. */
static void
test_line_cut_small_lines(void **state)
{
	struct wbuf q;
	uint32_t lcg = 7;

	(void)state;
	wbuf_init(&q, WBUF_HIGH_DEF);
	for (int i = 0; i < 300; i++) {
		char line[100];
		size_t n;

		lcg = lcg * 1103515245u + 12345u;
		n = 1 + (lcg >> 16) % 90;
		memset(line, 'k', n - 1);
		line[n - 1] = '\n';
		assert_int_equal(wbuf_append(&q, line, n), 0);
	}
	check_line_cut_all_quanta(&q);
	wbuf_release(&q);
}

/* sys_close() (the wbuf tests' closer) closes, marks the fd closed, and keeps errno. */
static void
test_sys_close_keeps_errno(void **state)
{
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	int was = p[0];

	errno = ENOSPC;
	sys_close(&p[0]);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(p[0], -1);
	assert_int_equal(fcntl(was, F_GETFD), -1); /* closed (nothing opened since) */
	errno = EPIPE;
	sys_close(&p[0]); /* already closed: nothing happens */
	assert_int_equal(errno, EPIPE);
	sys_close(&p[1]);
}

static void
on_alarm(int sig)
{
	(void)sig;
}

/*
 * sys_writev_all() through a 4 KiB pipe that a child drains slowly, while a timer's
 * signal (no SA_RESTART) cuts the blocked writes short: every short write is continued
 * at the right byte, EINTR is retried, empty pieces are passed over, and the pieces are
 * consumed.
 */
static void
test_writev_all_partial(void **state)
{
	struct sigaction sa = { .sa_handler = on_alarm }, old_sa;
	struct itimerval tick = { .it_interval = { 0, 500 }, .it_value = { 0, 500 } }, off = { 0 };

	static char data[70000 + 1 + 150000];
	int fds[2];

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++) {
		data[i] = (char)(i * 31 + i / 251);
	}
	assert_int_equal(pipe(fds), 0);
	(void)fcntl(fds[1], F_SETPIPE_SZ, 4096);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		size_t got = 0;
		char buf[1000];
		ssize_t n;

		(void)close(fds[1]);
		while ((n = read(fds[0], buf, sizeof(buf))) > 0) {
			(void)usleep(50);
			if (got + (size_t)n > sizeof(data) ||
			    memcmp(buf, data + got, (size_t)n) != 0) {
				_exit(1);
			}
			got += (size_t)n;
		}
		_exit(got == sizeof(data) ? 0 : 2);
	}
	(void)close(fds[0]);
	struct iovec v[5] = {
		{ .iov_base = data, .iov_len = 70000 },
		{ .iov_base = data, .iov_len = 0 },
		{ .iov_base = data + 70000, .iov_len = 1 },
		{ .iov_base = data + 70001, .iov_len = 150000 },
		{ .iov_base = data, .iov_len = 0 },
	};

	assert_int_equal(sigaction(SIGALRM, &sa, &old_sa), 0);
	assert_int_equal(setitimer(ITIMER_REAL, &tick, NULL), 0);
	int rc = sys_writev_all(fds[1], v, 5);

	(void)setitimer(ITIMER_REAL, &off, NULL);
	(void)sigaction(SIGALRM, &old_sa, NULL);
	assert_int_equal(rc, 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(v[i].iov_len, 0);
	}
	(void)close(fds[1]);
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	/* A reader that is gone: EPIPE, not a loop. */
	assert_int_equal(pipe(fds), 0);
	(void)close(fds[0]);
	struct iovec one = { .iov_base = data, .iov_len = 10 };
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);

	assert_int_equal(sys_writev_all(fds[1], &one, 1), -1);
	assert_int_equal(errno, EPIPE);
	(void)signal(SIGPIPE, old);
	(void)close(fds[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_send_direct_when_empty, pipe_setup,
						pipe_teardown),
		cmocka_unit_test_setup_teardown(test_send_queues_when_pipe_full, pipe_setup,
						pipe_teardown),
		cmocka_unit_test_setup_teardown(test_send_after, pipe_setup, pipe_teardown),
		cmocka_unit_test_setup_teardown(test_send_partial_write, pipe_setup, pipe_teardown),
		cmocka_unit_test_setup_teardown(test_last_nul, pipe_setup, pipe_teardown),
		cmocka_unit_test_setup_teardown(test_end_to_end_stream, pipe_setup, pipe_teardown),
		cmocka_unit_test(test_full_at_high_mark),
		cmocka_unit_test(test_sys_close_keeps_errno),
		cmocka_unit_test_setup_teardown(test_flush_to_closed_pipe, pipe_setup,
						pipe_teardown),
		cmocka_unit_test(test_appendv_and_peek),
		cmocka_unit_test(test_append_line),
		cmocka_unit_test_setup_teardown(test_write_upto, pipe_setup, pipe_teardown),
		cmocka_unit_test(test_line_cut_simple),
		cmocka_unit_test_setup_teardown(test_line_cut_across_chunks, pipe_setup,
						pipe_teardown),
		cmocka_unit_test(test_line_cut_small_lines),
		cmocka_unit_test(test_writev_all_partial),
	};

	return cmocka_run_group_tests_name("wbuf", tests, NULL, NULL);
}
