/*
 * Fuzz target: framer.
 *
 * Input: 4 control bytes, then the stream.  Byte 0 picks the line bound (the default
 * 64 MiB when its top bit is set, else 1 to 512 with byte 1), bytes 2-3 seed the chunking.
 * The stream is fed four times through one framer (reused after framer_finish): in one
 * piece, one byte at a time, in random pieces (some empty), and in random pieces through
 * framer_feed_part() with the sink asking it to stop after random lines (the rest of the
 * piece fed again after it).  Each run must produce exactly the events of a reference
 * model written from the header's contract:
 *
 *   - split at every "\n"; drop one "\r" before it (and at the very end); skip empty lines;
 *   - a line of at most `max` bytes is one line() call with exactly its bytes;
 *   - a longer one is big_begin(its first max bytes), big_more(the rest, in any pieces),
 *     big_end(its length);
 *
 * and on every call: no "\n" in anything handed out, lines within the bound, big_* calls
 * properly nested.  After each piece: framer_pending() is the unfinished line's length
 * (less a held-back "\r"), the buffer never exceeds max + 1 bytes, and once a line has
 * been delivered no more than FRAMER_KEEP bytes are kept; a feed asked to stop takes
 * something of a piece, and stops only right after a "\n".
 */
#include "fuzz.h"

#include "mcpmux/framer.h"

struct sink_state {
	size_t max;
	struct fuzz_log log;
	bool in_big;
	size_t big_bytes; /* head + more of the current big line */
	struct fuzz_log more;
	struct framer *f; /* to stop (framer_stop()) after a line, when the coin says so */
	uint64_t coin;
};

static void
maybe_stop(struct sink_state *st)
{
	if (st->f != NULL) {
		framer_stop(st->f, (fuzz_rand(&st->coin) & 3) == 0);
	}
}

static void
on_line(void *ctx, const char *line, size_t len)
{
	struct sink_state *st = ctx;

	FUZZ_CHECK(!st->in_big, "line() inside a big line");
	FUZZ_CHECK(len > 0, "empty line delivered");
	FUZZ_CHECK(len <= st->max, "line of %zu bytes over the bound %zu", len, st->max);
	FUZZ_CHECK(memchr(line, '\n', len) == NULL, "newline inside a line");
	fuzz_log_rec(&st->log, 'L', line, len);
	maybe_stop(st);
}

static void
on_big_begin(void *ctx, const char *head, size_t len)
{
	struct sink_state *st = ctx;

	FUZZ_CHECK(!st->in_big, "big_begin() inside a big line");
	FUZZ_CHECK(len == st->max, "big head of %zu bytes, bound %zu", len, st->max);
	FUZZ_CHECK(memchr(head, '\n', len) == NULL, "newline inside a big head");
	st->in_big = true;
	st->big_bytes = len;
	st->more.len = 0;
	fuzz_log_rec(&st->log, 'B', head, len);
	maybe_stop(st);
}

static void
on_big_more(void *ctx, const char *more, size_t len)
{
	struct sink_state *st = ctx;

	FUZZ_CHECK(st->in_big, "big_more() outside a big line");
	FUZZ_CHECK(memchr(more, '\n', len) == NULL, "newline inside a big line");
	st->big_bytes += len;
	fuzz_log_add(&st->more, more, len);
}

static void
on_big_end(void *ctx, size_t total)
{
	struct sink_state *st = ctx;

	FUZZ_CHECK(st->in_big, "big_end() outside a big line");
	FUZZ_CHECK(total == st->big_bytes, "big_end(%zu) after %zu bytes handed out", total,
		   st->big_bytes);
	FUZZ_CHECK(total > st->max, "big line of %zu bytes within the bound %zu", total, st->max);
	/* The pieces of big_more() depend on the chunking; their concatenation does not. */
	fuzz_log_rec(&st->log, 'M', st->more.buf, st->more.len);
	fuzz_log_rec(&st->log, 'E', &total, sizeof(total));
	st->in_big = false;
}

static const struct framer_sink sink = {
	.line = on_line,
	.big_begin = on_big_begin,
	.big_more = on_big_more,
	.big_end = on_big_end,
};

/* The reference: the events the contract prescribes for this stream. */
static void
reference(const char *p, size_t len, size_t max, struct fuzz_log *out)
{
	size_t start = 0;

	while (start < len) {
		const char *nl = memchr(p + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - p) : len, n = end - start;
		const char *line = p + start;

		if (n > 0 && line[n - 1] == '\r') {
			n--;
		}
		if (n > 0 && n <= max) {
			fuzz_log_rec(out, 'L', line, n);
		} else if (n > max) {
			fuzz_log_rec(out, 'B', line, max);
			fuzz_log_rec(out, 'M', line + max, n - max);
			fuzz_log_rec(out, 'E', &n, sizeof(n));
		}
		start = end + 1;
	}
}

/* Bytes of the unfinished line after the first `fed` bytes of the stream. */
static size_t
partial_len(const char *p, size_t fed)
{
	size_t i = fed;

	while (i > 0 && p[i - 1] != '\n') {
		i--;
	}
	return fed - i;
}

static void
check_after_piece(const struct framer *f, const struct sink_state *st, const char *p, size_t fed)
{
	size_t partial = partial_len(p, fed), pending = framer_pending(f);

	FUZZ_CHECK(f->cap <= f->max + 1, "buffer of %zu bytes for a bound of %zu", f->cap, f->max);
	FUZZ_CHECK(f->len <= f->cap, "len %zu over cap %zu", f->len, f->cap);
	FUZZ_CHECK(f->is_big == st->in_big, "framer and sink disagree on a big line");
	if (f->is_big) {
		/* A "\r" at the end of a piece is held back until the next byte is known. */
		FUZZ_CHECK(pending == partial || (pending + 1 == partial && p[fed - 1] == '\r'),
			   "pending %zu for an unfinished big line of %zu", pending, partial);
		FUZZ_CHECK(f->cap <= FRAMER_KEEP, "a big line keeps %zu bytes", f->cap);
	} else {
		FUZZ_CHECK(pending == partial, "pending %zu for an unfinished line of %zu", pending,
			   partial);
	}
	if (partial == 0) {
		FUZZ_CHECK(f->cap <= FRAMER_KEEP, "%zu bytes kept between lines", f->cap);
	}
}

enum chunking { WHOLE, BYTES, RANDOM, STOPPED };

static void
run(struct framer *f, const char *p, size_t len, enum chunking how, uint64_t seed,
    const struct fuzz_log *want)
{
	struct sink_state st = { .max = f->max, .coin = seed };
	size_t fed = 0;

	if (how == STOPPED) {
		st.f = f;
	}
	if (how == RANDOM) {
		/* An empty piece is no input. */
		FUZZ_CHECK(framer_feed(f, p, 0, &sink, &st) == 0, "framer_feed failed");
		check_after_piece(f, &st, p, 0);
	}
	while (fed < len) {
		size_t n = len - fed;

		if (how == BYTES) {
			n = 1;
		} else if (how == RANDOM || how == STOPPED) {
			uint64_t r = fuzz_rand(&seed);

			/* Mostly small pieces, some empty, some large. */
			n = (r & 7) == 0   ? 0
			    : (r & 7) == 1 ? (size_t)(r >> 8) % 4096
					   : (r >> 8) % 17;
			n = n > len - fed ? len - fed : n;
		}
		if (how == STOPPED) {
			size_t used = 0;

			FUZZ_CHECK(framer_feed_part(f, p + fed, n, &sink, &st, &used) == 0,
				   "framer_feed_part failed");
			FUZZ_CHECK(used <= n && (used > 0 || n == 0), "%zu of %zu bytes taken",
				   used, n);
			FUZZ_CHECK(used == n || p[fed + used - 1] == '\n',
				   "stopped inside a line, %zu bytes into the stream", fed + used);
			n = used; /* the rest: in the next piece */
		} else {
			FUZZ_CHECK(framer_feed(f, p + fed, n, &sink, &st) == 0,
				   "framer_feed failed");
		}
		fed += n;
		check_after_piece(f, &st, p, fed);
	}
	framer_finish(f, &sink, &st);
	FUZZ_CHECK(!st.in_big, "a big line not ended by framer_finish()");
	FUZZ_CHECK(f->buf == NULL && f->len == 0 && framer_pending(f) == 0,
		   "memory or state left after framer_finish()");
	FUZZ_CHECK(fuzz_log_equal(&st.log, want),
		   "chunking %d: %zu bytes of events, the reference has %zu", (int)how, st.log.len,
		   want->len);
	fuzz_log_free(&st.log);
	fuzz_log_free(&st.more);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t ctl[4] = { 0x00, 0x40, 0x12, 0x34 };
	size_t max;
	struct framer f;
	struct fuzz_log want = { 0 };

	if (size >= sizeof(ctl)) {
		memcpy(ctl, data, sizeof(ctl));
		data += sizeof(ctl);
		size -= sizeof(ctl);
	}
	max = (ctl[0] & 0x80) ? FRAMER_MAX_DEFAULT : 1 + (((size_t)(ctl[0] & 1) << 8) | ctl[1]);
	uint64_t seed = ((uint64_t)ctl[2] << 8 | ctl[3]) + 1;
	const char *p = (const char *)data;

	reference(p, size, max, &want);
	framer_init(&f, max);
	run(&f, p, size, WHOLE, seed, &want);
	run(&f, p, size, BYTES, seed, &want);
	run(&f, p, size, RANDOM, seed, &want);
	run(&f, p, size, STOPPED, seed, &want);
	framer_release(&f);
	fuzz_log_free(&want);
	return 0;
}
