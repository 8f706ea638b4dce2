/*
 * Shared helpers of the fuzz targets: the libFuzzer entry point, a checked assertion that
 * aborts (a crash to libFuzzer, a failed test to the replay driver), a byte log for
 * comparing event sequences, a deterministic generator for chunkings, and two oracles
 * that do not share code with mcpmux: yajl's own verdict on a byte string and a strict
 * UTF-8 check.
 */
#ifndef MCPMUX_FUZZ_H
#define MCPMUX_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant: print what broke and abort. */
#define FUZZ_CHECK(cond, ...)                                                                \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, \
				#cond);                                                      \
			fprintf(stderr, __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                 \
			abort();                                                             \
		}                                                                            \
	} while (0)

/* ---- a growable byte log ---- */

struct fuzz_log {
	char *buf;
	size_t len;
	size_t cap;
};

static inline void
fuzz_log_add(struct fuzz_log *l, const void *p, size_t n)
{
	if (l->len + n > l->cap) {
		size_t cap = l->cap ? l->cap : 256;

		while (cap < l->len + n) {
			cap *= 2;
		}
		l->buf = realloc(l->buf, cap);
		FUZZ_CHECK(l->buf != NULL, "out of memory");
		l->cap = cap;
	}
	if (n > 0) {
		memcpy(l->buf + l->len, p, n);
	}
	l->len += n;
}

/* A tagged record: tag, length (8 bytes), bytes. */
static inline void
fuzz_log_rec(struct fuzz_log *l, char tag, const void *p, size_t n)
{
	uint64_t n64 = n;

	fuzz_log_add(l, &tag, 1);
	fuzz_log_add(l, &n64, sizeof(n64));
	fuzz_log_add(l, p, n);
}

static inline bool
fuzz_log_equal(const struct fuzz_log *a, const struct fuzz_log *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
}

static inline void
fuzz_log_free(struct fuzz_log *l)
{
	free(l->buf);
	memset(l, 0, sizeof(*l));
}

/* ---- a deterministic generator (xorshift64*) ---- */

static inline uint64_t
fuzz_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15u;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1du;
}

/* ---- oracles ---- */

/*
 * Is p exactly one JSON text, by yajl's default rules (no comments, one value)?
 *
 * yajl alone is not enough: its lexer keeps an unterminated string at the end of the
 * input as "more to come", and yajl_complete_parse() then only asks whether a value was
 * complete, so `{}"` or `[] "abc` pass.  The oracle therefore also records where the
 * top-level value ended (yajl_get_bytes_consumed() inside the callback that completes it)
 * and requires nothing but whitespace after it.  yajl also takes \v and \f for
 * whitespace; RFC 8259 does not (and inside a string they are unescaped control
 * characters), so a text holding either byte is not JSON here.
 */
struct fuzz_valid_ctx {
	yajl_handle h;
	int depth;
	bool finishing; /* inside yajl_complete_parse(): offsets refer to yajl's own " " */
	bool ended;	/* the top-level value is complete */
	size_t end;	/* where it ended, when !finishing */
	bool end_known;
};

static inline int
fuzz_valid_value(struct fuzz_valid_ctx *c)
{
	if (c->depth == 0) {
		c->ended = true;
		c->end_known = !c->finishing;
		c->end = yajl_get_bytes_consumed(c->h);
	}
	return 1;
}

static inline int
fuzz_valid_null(void *ctx)
{
	return fuzz_valid_value(ctx);
}

static inline int
fuzz_valid_bool(void *ctx, int b)
{
	(void)b;
	return fuzz_valid_value(ctx);
}

static inline int
fuzz_valid_number(void *ctx, const char *p, size_t len)
{
	(void)p;
	(void)len;
	return fuzz_valid_value(ctx);
}

static inline int
fuzz_valid_string(void *ctx, const unsigned char *p, size_t len)
{
	(void)p;
	(void)len;
	return fuzz_valid_value(ctx);
}

static inline int
fuzz_valid_key(void *ctx, const unsigned char *p, size_t len)
{
	(void)ctx;
	(void)p;
	(void)len;
	return 1;
}

static inline int
fuzz_valid_open(void *ctx)
{
	((struct fuzz_valid_ctx *)ctx)->depth++;
	return 1;
}

static inline int
fuzz_valid_close(void *ctx)
{
	struct fuzz_valid_ctx *c = ctx;

	c->depth--;
	return fuzz_valid_value(c);
}

static inline bool
fuzz_yajl_valid(const char *p, size_t len)
{
	static const yajl_callbacks cb = {
		.yajl_null = fuzz_valid_null,
		.yajl_boolean = fuzz_valid_bool,
		.yajl_number = fuzz_valid_number,
		.yajl_string = fuzz_valid_string,
		.yajl_start_map = fuzz_valid_open,
		.yajl_map_key = fuzz_valid_key,
		.yajl_end_map = fuzz_valid_close,
		.yajl_start_array = fuzz_valid_open,
		.yajl_end_array = fuzz_valid_close,
	};
	struct fuzz_valid_ctx c = { 0 };
	bool ok;

	if (memchr(p, '\v', len) != NULL || memchr(p, '\f', len) != NULL) {
		return false;
	}
	c.h = yajl_alloc(&cb, NULL, &c);
	FUZZ_CHECK(c.h != NULL, "out of memory");
	ok = yajl_parse(c.h, (const unsigned char *)p, len) == yajl_status_ok;
	c.finishing = true;
	ok = ok && yajl_complete_parse(c.h) == yajl_status_ok && c.ended;
	yajl_free(c.h);
	for (size_t i = c.end; ok && c.end_known && i < len; i++) {
		ok = p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n';
	}
	return ok;
}

/*
 * Strict UTF-8 (RFC 3629 table 3-7): no overlong forms, no surrogates, nothing past
 * U+10FFFF.  Written from the table, byte by byte, independently of mcpmux's check.
 */
static inline bool
fuzz_utf8_strict(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		unsigned char lo = 0x80, hi = 0xbf;

		if (c <= 0x7f) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
		} else if (c == 0xe0) {
			n = 3;
			lo = 0xa0;
		} else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
			n = 3;
		} else if (c == 0xed) {
			n = 3;
			hi = 0x9f;
		} else if (c == 0xf0) {
			n = 4;
			lo = 0x90;
		} else if (c >= 0xf1 && c <= 0xf3) {
			n = 4;
		} else if (c == 0xf4) {
			n = 4;
			hi = 0x8f;
		} else {
			return false;
		}
		if (len - i < n || p[i + 1] < lo || p[i + 1] > hi) {
			return false;
		}
		for (size_t k = 2; k < n; k++) {
			if (p[i + k] < 0x80 || p[i + k] > 0xbf) {
				return false;
			}
		}
		i += n;
	}
	return true;
}

/* A NUL-terminated copy (yajl_tree_parse wants one). */
static inline char *
fuzz_strndup(const char *p, size_t len)
{
	char *s = malloc(len + 1);

	FUZZ_CHECK(s != NULL, "out of memory");
	if (len > 0) {
		memcpy(s, p, len);
	}
	s[len] = '\0';
	return s;
}

#endif
