/*
 * Unit tests for framer: golden transcripts under every chunking, zero-copy delivery,
 * over-long lines, and the memory a framer keeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/framer.h"

/* A string literal as (pointer, length), so that NUL bytes inside it count. */
#define BYTES(lit) lit, sizeof(lit) - 1

/* ---- the transcript sink ---- */

/*
 * Every event as text: "L:<line>|" for a line, "B:<head>|" when an over-long line
 * begins, "M:<n>|E:<total>|" when it ends (n: all its big_more bytes), "F|" when the
 * input ends.  Lines may hold NULs, so the transcript is a byte string.
 */
struct transcript {
	char *buf;
	size_t len;
	size_t cap;
	size_t more; /* big_more bytes of the current over-long line */
};

static void
tr_add(struct transcript *tr, const char *p, size_t n)
{
	if (tr->len + n > tr->cap) {
		size_t cap = tr->cap ? tr->cap : 256;

		while (cap < tr->len + n) {
			cap *= 2;
		}
		tr->buf = realloc(tr->buf, cap);
		assert_non_null(tr->buf);
		tr->cap = cap;
	}
	memcpy(tr->buf + tr->len, p, n);
	tr->len += n;
}

static void
tr_adds(struct transcript *tr, const char *s)
{
	tr_add(tr, s, strlen(s));
}

static void
tr_free(struct transcript *tr)
{
	free(tr->buf);
	memset(tr, 0, sizeof(*tr));
}

static void
tr_line(void *ctx, const char *line, size_t len)
{
	struct transcript *tr = ctx;

	tr_adds(tr, "L:");
	tr_add(tr, line, len);
	tr_adds(tr, "|");
}

static void
tr_big_begin(void *ctx, const char *head, size_t len)
{
	struct transcript *tr = ctx;

	tr_adds(tr, "B:");
	tr_add(tr, head, len);
	tr_adds(tr, "|");
	tr->more = 0;
}

static void
tr_big_more(void *ctx, const char *more, size_t len)
{
	struct transcript *tr = ctx;

	(void)more;
	assert_true(len > 0);
	tr->more += len;
}

static void
tr_big_end(void *ctx, size_t total)
{
	struct transcript *tr = ctx;
	char text[64];

	(void)snprintf(text, sizeof(text), "M:%zu|E:%zu|", tr->more, total);
	tr_adds(tr, text);
	tr->more = 0;
}

static const struct framer_sink tr_sink = {
	.line = tr_line,
	.big_begin = tr_big_begin,
	.big_more = tr_big_more,
	.big_end = tr_big_end,
};

/* ---- chunk schedules ---- */

/* How the input is cut: whole, in fixed steps, or in pseudo-random steps (0..40). */
struct schedule {
	size_t step;  /* fixed chunk size; 0: pseudo-random */
	uint32_t lcg; /* state of the pseudo-random sizes */
	bool whole;
};

static size_t
next_chunk(struct schedule *s, size_t left)
{
	if (s->whole) {
		return left;
	}
	if (s->step > 0) {
		return s->step;
	}
	s->lcg = s->lcg * 1103515245u + 12345u;
	return (s->lcg >> 16) % 41; /* 0 feeds an empty chunk */
}

static void
describe(const struct schedule *s, uint32_t seed, char *out, size_t len)
{
	if (s->whole) {
		(void)snprintf(out, len, "whole");
	} else if (s->step > 0) {
		(void)snprintf(out, len, "step %zu", s->step);
	} else {
		(void)snprintf(out, len, "seed %u", (unsigned)seed);
	}
}

/*
 * Feed `in` cut by the schedule, each chunk from a fresh heap copy that is freed right
 * after the call (ASan then catches a framer that keeps a pointer into it), then "F|"
 * and framer_finish().
 */
static void
run_framer(size_t max, const char *in, size_t len, struct schedule *s, struct transcript *tr)
{
	struct framer f;
	size_t at = 0;

	framer_init(&f, max);
	while (at < len) {
		size_t n = next_chunk(s, len - at);

		if (n > len - at) {
			n = len - at;
		}
		char *chunk = malloc(n ? n : 1);

		assert_non_null(chunk);
		memcpy(chunk, in + at, n);
		assert_int_equal(framer_feed(&f, chunk, n, &tr_sink, tr), 0);
		free(chunk);
		at += n;
	}
	tr_adds(tr, "F|");
	framer_finish(&f, &tr_sink, tr);
	assert_null(f.buf);
	assert_int_equal(framer_pending(&f), 0);
	framer_release(&f);
}

/* ---- golden cases ---- */

struct framer_case {
	const char *name;
	size_t max;
	const char *in;
	size_t in_len;
	const char *want;
	size_t want_len;
};

static const struct framer_case golden[] = {
	{ "single line", 8, BYTES("hello\n"), BYTES("L:hello|F|") },
	{ "many lines in one chunk", 8, BYTES("a\nbb\nccc\ndddd\n"),
	  BYTES("L:a|L:bb|L:ccc|L:dddd|F|") },
	{ "line split across chunks", 16, BYTES("abcdefghijklmno\nxyz\n"),
	  BYTES("L:abcdefghijklmno|L:xyz|F|") },
	{ "CRLF: the CR is dropped", 8, BYTES("ab\r\ncd\r\n"), BYTES("L:ab|L:cd|F|") },
	{ "lone CR inside a line is kept", 8, BYTES("a\rb\n\rc\n"), BYTES("L:a\rb|L:\rc|F|") },
	{ "empty LF lines skipped", 8, BYTES("\n\n"), BYTES("F|") },
	{ "empty CRLF lines skipped", 8, BYTES("\r\n\r\n"), BYTES("F|") },
	{ "empty lines between lines", 8, BYTES("a\n\n\r\n\nb\n"), BYTES("L:a|L:b|F|") },
	{ "last line without newline: only at finish", 8, BYTES("abc"), BYTES("F|L:abc|") },
	{ "lines then a last line without newline", 8, BYTES("x\nyz\nabc"),
	  BYTES("L:x|L:yz|F|L:abc|") },
	{ "line of exactly max bytes", 8, BYTES("12345678\n"), BYTES("L:12345678|F|") },
	{ "line of max + 1 bytes is over-long", 8, BYTES("123456789\n"),
	  BYTES("B:12345678|M:1|E:9|F|") },
	{ "max bytes + CRLF: delivered, CR stripped", 8, BYTES("12345678\r\n"),
	  BYTES("L:12345678|F|") },
	{ "over-long line, then normal lines", 8, BYTES("0123456789abcdef\nok\nfine\n"),
	  BYTES("B:01234567|M:8|E:16|L:ok|L:fine|F|") },
	{ "two over-long lines in a row", 4, BYTES("abcdefgh\n123456\nxy\n"),
	  BYTES("B:abcd|M:4|E:8|B:1234|M:2|E:6|L:xy|F|") },
	{ "over-long last line without newline", 8, BYTES("0123456789ab"),
	  BYTES("B:01234567|F|M:4|E:12|") },
	{ "max + 1 bytes without newline: over-long at finish", 8, BYTES("123456789"),
	  BYTES("F|B:12345678|M:1|E:9|") },
	{ "NUL bytes inside a line pass through", 8, BYTES("a\0b\n\0\n"), BYTES("L:a\0b|L:\0|F|") },
	{ "CR in the middle of an over-long line is content", 4, BYTES("ab\rcdef\n"),
	  BYTES("B:ab\rc|M:3|E:7|F|") },
};

static const uint32_t seeds[] = { 1, 2, 3, 42, 1234, 99991, 0xdeadbeefu };

/* Run one case under one schedule and require the golden transcript. */
static void
check_case(const struct framer_case *c, struct schedule *s, uint32_t seed)
{
	struct transcript tr = { 0 };
	char how[64];

	run_framer(c->max, c->in, c->in_len, s, &tr);
	describe(s, seed, how, sizeof(how));
	if (tr.len != c->want_len || memcmp(tr.buf, c->want, tr.len) != 0) {
		print_error("case \"%s\" (%s): got \"%.*s\", want \"%.*s\"\n", c->name, how,
			    (int)tr.len, tr.buf, (int)c->want_len, c->want);
		tr_free(&tr);
		fail();
	}
	tr_free(&tr);
}

/* Every schedule: whole, steps 1..32, pseudo-random with several seeds. */
static void
check_case_all_schedules(const struct framer_case *c)
{
	struct schedule whole = { .whole = true };

	check_case(c, &whole, 0);
	for (size_t step = 1; step <= 32; step++) {
		struct schedule s = { .step = step };

		check_case(c, &s, 0);
	}
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct schedule s = { .lcg = seeds[i] };

		check_case(c, &s, seeds[i]);
	}
}

static void
test_golden_every_chunking(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(golden) / sizeof(golden[0]); i++) {
		check_case_all_schedules(&golden[i]);
	}
}

/*
 * An over-long line ended by CRLF.  Fed whole, the CR is dropped like for any line
 * (total 9, one big_more byte); the result must not depend on where the chunks split,
 * in particular not on a split between the CR and the LF.
 */
static void
test_overlong_crlf_every_chunking(void **state)
{
	static const struct framer_case c = {
		"over-long line ended by CRLF",
		8,
		BYTES("123456789\r\nok\n"),
		BYTES("B:12345678|M:1|E:9|L:ok|F|"),
	};

	(void)state;
	check_case_all_schedules(&c);
}

/* ---- zero copy ---- */

struct zc_sink {
	const char *chunk; /* the chunk being fed */
	size_t chunk_len;
	size_t n;
	char text[8][16];
	bool inside[8]; /* was the line a pointer into the chunk? */
};

static void
zc_line(void *ctx, const char *line, size_t len)
{
	struct zc_sink *z = ctx;

	assert_true(z->n < 8);
	assert_true(len < sizeof(z->text[0]));
	memcpy(z->text[z->n], line, len);
	z->text[z->n][len] = '\0';
	z->inside[z->n] = line >= z->chunk && line + len <= z->chunk + z->chunk_len;
	z->n++;
}

static void
zc_unexpected_big(void *ctx, const char *p, size_t len)
{
	(void)ctx;
	(void)p;
	(void)len;
	fail_msg("no line here is over-long");
}

static void
zc_unexpected_end(void *ctx, size_t total)
{
	(void)ctx;
	(void)total;
	fail_msg("no line here is over-long");
}

static const struct framer_sink zc_sink_ops = {
	.line = zc_line,
	.big_begin = zc_unexpected_big,
	.big_more = zc_unexpected_big,
	.big_end = zc_unexpected_end,
};

static void
zc_feed(struct framer *f, struct zc_sink *z, const char *chunk)
{
	z->chunk = chunk;
	z->chunk_len = strlen(chunk);
	assert_int_equal(framer_feed(f, chunk, z->chunk_len, &zc_sink_ops, z), 0);
}

static void
test_zero_copy(void **state)
{
	char first[] = "one\r\ntwo\nthr";
	char second[] = "ee\nfour\nfive\n";
	struct zc_sink z = { 0 };
	struct framer f;

	(void)state;
	framer_init(&f, 64);
	zc_feed(&f, &z, first);
	assert_int_equal(z.n, 2);
	assert_string_equal(z.text[0], "one");
	assert_true(z.inside[0]);
	assert_string_equal(z.text[1], "two");
	assert_true(z.inside[1]);
	assert_int_equal(framer_pending(&f), 3);

	zc_feed(&f, &z, second);
	assert_int_equal(z.n, 5);
	/* "three" straddles the chunks: it comes from the framer's own copy. */
	assert_string_equal(z.text[2], "three");
	assert_false(z.inside[2]);
	assert_string_equal(z.text[3], "four");
	assert_true(z.inside[3]);
	assert_string_equal(z.text[4], "five");
	assert_true(z.inside[4]);
	assert_int_equal(framer_pending(&f), 0);
	framer_release(&f);
}

/* ---- big buffered lines and memory ---- */

struct count_sink {
	size_t lines;
	size_t last_len;
	bool all_x; /* every byte of every line was 'x' */
	size_t big_begins, big_more, big_total;
};

static void
count_line(void *ctx, const char *line, size_t len)
{
	struct count_sink *c = ctx;

	c->lines++;
	c->last_len = len;
	for (size_t i = 0; i < len; i++) {
		if (line[i] != 'x') {
			c->all_x = false;
			break;
		}
	}
}

static void
count_big_begin(void *ctx, const char *head, size_t len)
{
	struct count_sink *c = ctx;

	(void)head;
	c->big_begins++;
	c->big_more = len;
}

static void
count_big_more(void *ctx, const char *more, size_t len)
{
	struct count_sink *c = ctx;

	(void)more;
	c->big_more += len;
}

static void
count_big_end(void *ctx, size_t total)
{
	struct count_sink *c = ctx;

	c->big_total = total;
}

static const struct framer_sink count_sink_ops = {
	.line = count_line,
	.big_begin = count_big_begin,
	.big_more = count_big_more,
	.big_end = count_big_end,
};

static void
test_big_line_buffer_released(void **state)
{
	const size_t mib = (size_t)1 << 20;
	char chunk[1000];
	struct count_sink c = { .all_x = true };
	struct framer f;
	size_t fed = 0;

	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	framer_init(&f, 2 * mib);
	while (fed < mib) {
		size_t n = mib - fed < sizeof(chunk) ? mib - fed : sizeof(chunk);

		assert_int_equal(framer_feed(&f, chunk, n, &count_sink_ops, &c), 0);
		fed += n;
		assert_int_equal(framer_pending(&f), fed);
	}
	assert_true(f.cap >= mib);
	assert_int_equal(c.lines, 0);

	assert_int_equal(framer_feed(&f, "\n", 1, &count_sink_ops, &c), 0);
	assert_int_equal(c.lines, 1);
	assert_int_equal(c.last_len, mib);
	assert_true(c.all_x);
	assert_int_equal(c.big_begins, 0);
	assert_true(f.cap <= FRAMER_KEEP);
	assert_int_equal(framer_pending(&f), 0);

	/* Still usable, and a small line does not need the big buffer back. */
	assert_int_equal(framer_feed(&f, "xx", 2, &count_sink_ops, &c), 0);
	assert_int_equal(framer_feed(&f, "x\n", 2, &count_sink_ops, &c), 0);
	assert_int_equal(c.lines, 2);
	assert_int_equal(c.last_len, 3);
	assert_true(f.cap <= FRAMER_KEEP);
	framer_release(&f);
	assert_null(f.buf);
}

/* An over-long line is not buffered: memory stays bounded by max + 1 while it streams. */
static void
test_overlong_line_not_buffered(void **state)
{
	char chunk[4096];
	struct count_sink c = { .all_x = true };
	struct framer f;
	size_t fed = 0;

	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	framer_init(&f, 1000);
	for (int i = 0; i < 256; i++) {
		assert_int_equal(framer_feed(&f, chunk, sizeof(chunk), &count_sink_ops, &c), 0);
		fed += sizeof(chunk);
		assert_int_equal(framer_pending(&f), fed);
		assert_true(f.cap <= 1001);
	}
	assert_int_equal(c.big_begins, 1);
	assert_int_equal(framer_feed(&f, "\r\n", 2, &count_sink_ops, &c), 0);
	assert_int_equal(c.big_total, fed);
	assert_int_equal(c.big_more, fed);
	assert_int_equal(c.lines, 0);
	assert_int_equal(framer_pending(&f), 0);
	framer_release(&f);
}

static void
test_pending_values(void **state)
{
	struct transcript tr = { 0 };
	struct framer f;

	(void)state;
	framer_init(&f, 8);
	assert_int_equal(framer_pending(&f), 0);
	assert_int_equal(framer_feed(&f, "", 0, &tr_sink, &tr), 0);
	assert_int_equal(framer_pending(&f), 0);
	assert_int_equal(framer_feed(&f, "abc", 3, &tr_sink, &tr), 0);
	assert_int_equal(framer_pending(&f), 3);
	assert_int_equal(framer_feed(&f, "d\r", 2, &tr_sink, &tr), 0);
	assert_int_equal(framer_pending(&f), 5);
	assert_int_equal(framer_feed(&f, "\nxy", 3, &tr_sink, &tr), 0);
	assert_int_equal(framer_pending(&f), 2);
	assert_int_equal(framer_feed(&f, "\n0123456789", 11, &tr_sink, &tr), 0);
	/* Over-long: pending counts the bytes skipped so far. */
	assert_int_equal(framer_pending(&f), 10);
	assert_int_equal(framer_feed(&f, "ab", 2, &tr_sink, &tr), 0);
	assert_int_equal(framer_pending(&f), 12);
	assert_int_equal(framer_feed(&f, "\n", 1, &tr_sink, &tr), 0);
	assert_int_equal(framer_pending(&f), 0);
	tr_adds(&tr, "F|");
	framer_finish(&f, &tr_sink, &tr);

	static const char want[] = "L:abcd|L:xy|B:01234567|M:4|E:12|F|";

	assert_int_equal(tr.len, sizeof(want) - 1);
	assert_memory_equal(tr.buf, want, tr.len);
	tr_free(&tr);
	framer_release(&f);
}

/* framer_finish() releases; the framer can then be fed again. */
static void
test_feed_after_finish(void **state)
{
	struct transcript tr = { 0 };
	struct framer f;

	(void)state;
	framer_init(&f, 8);
	assert_int_equal(framer_feed(&f, "first", 5, &tr_sink, &tr), 0);
	framer_finish(&f, &tr_sink, &tr);
	assert_null(f.buf);
	assert_int_equal(f.max, 8);
	assert_int_equal(framer_feed(&f, "again\nmore", 10, &tr_sink, &tr), 0);
	framer_finish(&f, &tr_sink, &tr);
	framer_finish(&f, &tr_sink, &tr); /* nothing left: no event */

	static const char want[] = "L:first|L:again|L:more|";

	assert_int_equal(tr.len, sizeof(want) - 1);
	assert_memory_equal(tr.buf, want, tr.len);
	tr_free(&tr);
	framer_release(&f);
}

/* The head and big_more bytes of an over-long line are the line, in order. */
struct content_sink {
	char out[256];
	size_t len;
	size_t total;
};

static void
content_add(void *ctx, const char *p, size_t len)
{
	struct content_sink *c = ctx;

	assert_true(c->len + len <= sizeof(c->out));
	memcpy(c->out + c->len, p, len);
	c->len += len;
}

static void
content_end(void *ctx, size_t total)
{
	struct content_sink *c = ctx;

	c->total = total;
}

static const struct framer_sink content_sink_ops = {
	.line = content_add,
	.big_begin = content_add,
	.big_more = content_add,
	.big_end = content_end,
};

static void
test_overlong_content_every_chunking(void **state)
{
	char line[201];

	(void)state;
	for (size_t i = 0; i < 200; i++) {
		line[i] = (char)('!' + (i * 7) % 90);
	}
	line[200] = '\n';
	for (size_t step = 1; step <= 32; step++) {
		struct content_sink c = { 0 };
		struct framer f;

		framer_init(&f, 13);
		for (size_t at = 0; at < sizeof(line); at += step) {
			size_t n = sizeof(line) - at < step ? sizeof(line) - at : step;

			assert_int_equal(framer_feed(&f, line + at, n, &content_sink_ops, &c), 0);
		}
		assert_int_equal(c.total, 200);
		assert_int_equal(c.len, 200);
		assert_memory_equal(c.out, line, 200);
		framer_release(&f);
	}
}

/*
 * framer_longest(): the longest line so far, an unfinished one counted by its bytes so
 * far, under every chunking and for a line over the bound too; reset forgets it.
 */
static void
test_longest(void **state)
{
	char in[3 + 301 + 3];

	(void)state;
	memcpy(in, "ab\n", 3);
	memset(in + 3, 'x', 300);
	in[303] = '\n';
	memcpy(in + 304, "cd\n", 3);
	for (size_t max = 100; max <= 1000; max += 900) {
		for (size_t step = 1; step <= 64; step++) {
			struct transcript tr = { 0 };
			struct framer f;

			framer_init(&f, max);
			assert_int_equal(framer_longest(&f), 0);
			for (size_t at = 0; at < sizeof(in); at += step) {
				size_t n = sizeof(in) - at < step ? sizeof(in) - at : step;

				assert_int_equal(framer_feed(&f, in + at, n, &tr_sink, &tr), 0);
				if (at + n <= 3) {
					assert_int_equal(framer_longest(&f),
							 at + n < 2 ? at + n : 2);
				} else if (at + n <= 303) {
					/* inside the long line: its bytes so far, or "ab" */
					assert_int_equal(framer_longest(&f),
							 at + n - 3 > 2 ? at + n - 3 : 2);
				} else {
					assert_int_equal(framer_longest(&f), 300);
				}
			}
			framer_longest_reset(&f);
			assert_int_equal(framer_longest(&f), 0);
			assert_int_equal(framer_feed(&f, BYTES("cd\n"), &tr_sink, &tr), 0);
			assert_int_equal(framer_longest(&f), 2);
			framer_release(&f);
			tr_free(&tr);
		}
	}
}

/* ---- stopping at a line's end (framer_feed_part(), framer_stop()) ---- */

/*
 * The transcript sink that asks the framer to stop after the line `on` (every line, or
 * at the beginning of an over-long one, when on is NULL), and, with cancel, takes it back
 * at once.
 */
struct stopper {
	struct transcript tr; /* first: the tr_* callbacks take the same ctx */
	struct framer *f;
	const char *on;
	bool cancel;
	int events; /* lines and over-long lines begun */
};

static void
stop_here(struct stopper *st, const char *line, size_t len)
{
	st->events++;
	if (st->on == NULL || (len == strlen(st->on) && memcmp(line, st->on, len) == 0)) {
		framer_stop(st->f, true);
		if (st->cancel) {
			framer_stop(st->f, false);
		}
	}
}

static void
stop_line(void *ctx, const char *line, size_t len)
{
	tr_line(ctx, line, len);
	stop_here(ctx, line, len);
}

static void
stop_big_begin(void *ctx, const char *head, size_t len)
{
	tr_big_begin(ctx, head, len);
	stop_here(ctx, head, len);
}

static const struct framer_sink stop_sink = {
	.line = stop_line,
	.big_begin = stop_big_begin,
	.big_more = tr_big_more,
	.big_end = tr_big_end,
};

/* Feed in, stopping where the sink says; how much was taken, and what came out. */
static size_t
feed_part(struct stopper *st, const char *in, size_t len, const char *want)
{
	size_t used = (size_t)-1;

	st->tr.len = 0;
	assert_int_equal(framer_feed_part(st->f, in, len, &stop_sink, st, &used), 0);
	if (st->tr.len != strlen(want) || memcmp(st->tr.buf, want, st->tr.len) != 0) {
		print_error("got \"%.*s\", want \"%s\"\n", (int)st->tr.len, st->tr.buf, want);
		fail();
	}
	return used;
}

static void
test_stop_and_resume(void **state)
{
	struct framer f;
	struct stopper st = { .f = &f, .on = "bb" };
	const char in[] = "a\nbb\nccc\ndddd\n";

	(void)state;
	framer_init(&f, 8);
	/* Stopped after "bb": the rest is the caller's, and comes out when fed again. */
	assert_int_equal(feed_part(&st, BYTES(in), "L:a|L:bb|"), 5);
	assert_int_equal(framer_pending(&f), 0);
	assert_null(f.buf); /* nothing of the rest was copied */
	assert_int_equal(feed_part(&st, in + 5, sizeof(in) - 1 - 5, "L:ccc|L:dddd|"), 9);
	/* Stopped after the last whole line: the partial one after it is not taken either. */
	st.on = "x";
	assert_int_equal(feed_part(&st, BYTES("x\nyz"), "L:x|"), 2);
	assert_int_equal(framer_pending(&f), 0);
	assert_int_equal(feed_part(&st, BYTES("yz"), ""), 2);
	assert_int_equal(framer_pending(&f), 2);
	/* A line that began in an earlier chunk stops the feed at its end too. */
	st.on = "yzw";
	assert_int_equal(feed_part(&st, BYTES("w\nv\n"), "L:yzw|"), 2);
	assert_int_equal(feed_part(&st, BYTES("v\n"), "L:v|"), 2);
	/* Asked at an over-long line's beginning: the feed stops at its end. */
	st.on = NULL;
	assert_int_equal(feed_part(&st, BYTES("0123456789\nz\n"), "B:01234567|M:2|E:10|"), 11);
	/* ... one that goes on past the chunk: all of the chunk is taken. */
	assert_int_equal(feed_part(&st, BYTES("0123456789"), "B:01234567|"), 10);
	assert_int_equal(feed_part(&st, BYTES("ab\nz\n"), "M:4|E:12|L:z|"), 5);
	/* Taken back at once: no stop.  And framer_feed() never stops. */
	st.cancel = true;
	assert_int_equal(feed_part(&st, BYTES(in), "L:a|L:bb|L:ccc|L:dddd|"), sizeof(in) - 1);
	st.cancel = false;
	st.tr.len = 0;
	assert_int_equal(framer_feed(&f, BYTES(in), &stop_sink, &st), 0);
	assert_int_equal(st.tr.len, strlen("L:a|L:bb|L:ccc|L:dddd|"));
	/* A stop asked before a feed does not carry into it. */
	framer_stop(&f, true);
	st.on = "none";
	assert_int_equal(feed_part(&st, BYTES("p\nq\n"), "L:p|L:q|"), 4);
	framer_release(&f);
	tr_free(&st.tr);
}

/*
 * Every golden case under every chunking, stopped after each line and fed the rest again
 * until it is all taken: the same transcript, one line (or over-long line) a feed.
 */
static void
test_stop_after_every_line_every_chunking(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(golden) / sizeof(golden[0]); i++) {
		const struct framer_case *c = &golden[i];

		for (size_t step = 1; step <= 33; step++) {
			struct framer f;
			struct stopper st = { .f = &f };
			size_t at = 0;

			framer_init(&f, c->max);
			while (at < c->in_len) {
				size_t n = c->in_len - at, off = 0;

				if (step < 33 && step < n) {
					n = step; /* (33: whole) */
				}

				while (off < n) {
					size_t used = 0;
					int before = st.events;

					assert_int_equal(framer_feed_part(&f, c->in + at + off,
									  n - off, &stop_sink, &st,
									  &used),
							 0);
					assert_true(used > 0 && used <= n - off);
					assert_true(st.events - before <= 1);
					off += used;
				}
				at += n;
			}
			tr_adds(&st.tr, "F|");
			framer_finish(&f, &stop_sink, &st);
			if (st.tr.len != c->want_len ||
			    memcmp(st.tr.buf, c->want, st.tr.len) != 0) {
				print_error("case \"%s\" (step %zu): got \"%.*s\", want \"%.*s\"\n",
					    c->name, step, (int)st.tr.len, st.tr.buf,
					    (int)c->want_len, c->want);
				fail();
			}
			tr_free(&st.tr);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_every_chunking),
		cmocka_unit_test(test_overlong_crlf_every_chunking),
		cmocka_unit_test(test_zero_copy),
		cmocka_unit_test(test_big_line_buffer_released),
		cmocka_unit_test(test_overlong_line_not_buffered),
		cmocka_unit_test(test_pending_values),
		cmocka_unit_test(test_feed_after_finish),
		cmocka_unit_test(test_overlong_content_every_chunking),
		cmocka_unit_test(test_longest),
		cmocka_unit_test(test_stop_and_resume),
		cmocka_unit_test(test_stop_after_every_line_every_chunking),
	};

	return cmocka_run_group_tests_name("framer", tests, NULL, NULL);
}
