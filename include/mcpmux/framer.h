/*
 * framer: newline-delimited message framing (MCP's stdio transport), in one direction.
 *
 * Bytes go in with framer_feed() in any chunking; complete lines come out through the
 * sink, without their "\n" and without a "\r" just before it.  Empty lines are skipped.
 * A line that lies whole inside the fed chunk is handed out as a pointer into that chunk
 * (no copy); only the partial line at the end of a chunk is copied into the framer's
 * buffer.  Pointers handed to the sink are valid only during the call.
 *
 * A line longer than `max` bytes is not buffered: its first `max` bytes go to
 * sink->big_begin(), every later byte of it to sink->big_more() as it arrives, and its end
 * to sink->big_end() with the line's full length.  The buffer that held a big line is
 * released once that line has been delivered, so a framer that is idle holds no memory
 * beyond FRAMER_KEEP bytes.
 *
 * The framer is pure: it knows nothing of file descriptors, JSON or the event loop.
 */
#ifndef MCPMUX_FRAMER_H
#define MCPMUX_FRAMER_H

#include <stdbool.h>
#include <stddef.h>

#define FRAMER_MAX_DEFAULT ((size_t)64 << 20)
#define FRAMER_KEEP	   ((size_t)64 << 10) /* buffer capacity kept between lines */

struct framer_sink {
	void (*line)(void *ctx, const char *line, size_t len);
	void (*big_begin)(void *ctx, const char *head, size_t len);
	void (*big_more)(void *ctx, const char *more, size_t len);
	void (*big_end)(void *ctx, size_t total);
};

struct framer {
	char *buf;	/* partial line; NULL when none is buffered and nothing is kept */
	size_t len;	/* bytes of the partial line in buf */
	size_t cap;	/* bytes allocated for buf */
	size_t max;	/* longest line delivered whole */
	size_t big_len; /* bytes of the current over-long line so far */
	bool is_big;	/* inside an over-long (or unbufferable) line: skipping to "\n" */
	bool big_cr;	/* a big line's chunk ended in "\r", not yet passed on */
	bool big_oom;	/* the big line was dropped for want of memory, not for its length */
	size_t longest; /* the longest line seen so far, whole or in part (framer_longest) */
	bool stop;	/* framer_stop(): the feed under way stops at the next line's end */
};

void framer_init(struct framer *f, size_t max);
/* Release all memory; the framer can be fed again afterwards. */
void framer_release(struct framer *f);
/*
 * Feed bytes.  Returns 0, or -1 with errno ENOMEM if a partial line could not be
 * buffered (that line is then dropped up to its end and reported to sink->big_*()
 * as if it had been over-long, so the caller still answers it: framer_big_no_memory()
 * tells it that the line was dropped for want of memory).
 */
int framer_feed(struct framer *f, const char *data, size_t len, const struct framer_sink *sink,
		void *ctx);
/*
 * framer_feed() that may stop before the end of the chunk: once the sink has called
 * framer_stop(f, true) while a line was handed out (and not framer_stop(f, false) since),
 * the feed stops where that line ends (an over-long line: at its end), and *used says how
 * many bytes of data it took (len when it did not stop).  The caller feeds the rest again
 * later, before anything newer.  (framer_feed() never stops.)
 */
int framer_feed_part(struct framer *f, const char *data, size_t len, const struct framer_sink *sink,
		     void *ctx, size_t *used);
/*
 * Whether the big line being handed out (from sink->big_begin() to sink->big_end()) went
 * big because its buffer had no memory, not because it is over max.  One that did may
 * still be over max: it is a line within max dropped for want of memory while its bytes
 * so far (at sink->big_end(), its total) are within max.  One that did not is over max
 * from its first byte, however few of them were handed out yet.
 */
bool framer_big_no_memory(const struct framer *f);
/*
 * Ask the feed under way to stop at the end of the line handed out (on), or not (off).
 * Out of a feed it does nothing: each feed starts without it.
 */
void framer_stop(struct framer *f, bool on);
/* End of input: deliver a last line that had no "\n", if any. */
void framer_finish(struct framer *f, const struct framer_sink *sink, void *ctx);
/* Bytes of an unfinished line held (or skipped, for an over-long one). */
size_t framer_pending(const struct framer *f);
/*
 * The longest line fed since framer_init() or the last reset, counting an unfinished
 * one's bytes so far (a reader sizes its pipe by it).
 */
size_t framer_longest(const struct framer *f);
void framer_longest_reset(struct framer *f);

#endif
