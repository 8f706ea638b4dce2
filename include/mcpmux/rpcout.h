/*
 * rpcout: what mcpmux itself writes: JSON-RPC error responses, results, events, and the
 * JSON string escaping they need.  Pure: formats into memory, does no I/O.
 *
 * struct sbuf is a growable byte string.  Appends never fail visibly: on allocation
 * failure the buffer is marked failed and later appends do nothing; check sbuf.failed
 * once at the end.  sbuf_release() frees; sbuf_reset() empties but keeps (up to
 * SBUF_KEEP bytes of) memory for reuse.
 */
#ifndef MCPMUX_RPCOUT_H
#define MCPMUX_RPCOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define SBUF_KEEP ((size_t)16 << 10)

struct sbuf {
	char *buf;
	size_t len;
	size_t cap;
	bool failed;
};

void sbuf_reset(struct sbuf *b);
/* Empty b, keeping up to keep bytes of its memory (a buffer that is filled again and again). */
void sbuf_reset_keep(struct sbuf *b, size_t keep);
void sbuf_release(struct sbuf *b);
/* Room for more bytes (and a NUL); false if the buffer failed. */
bool sbuf_grow(struct sbuf *b, size_t more);

/* Inline: records are made of many short appends, most of them literals. */
static inline void
sbuf_add(struct sbuf *b, const char *p, size_t len)
{
	if ((!b->failed && b->len + len < b->cap) || sbuf_grow(b, len)) {
		memcpy(b->buf + b->len, p, len);
		b->len += len;
		b->buf[b->len] = '\0';
	}
}

static inline void
sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Decimal digits of v, at least `width` of them (zero-padded); no printf. */
void sbuf_add_uint(struct sbuf *b, unsigned long long v, int width);
/* v with three decimals, as "%.3f" writes it (within a rounding of the last digit). */
void sbuf_add_milli(struct sbuf *b, double v);
/* Append p as a JSON string (quoted, escaped; invalid UTF-8 becomes U+FFFD). */
void sbuf_add_json_string(struct sbuf *b, const char *p, size_t len);

/*
 * Escape p as a JSON string into out, which must hold 6 * len + 2 bytes.
 * Returns the bytes written.
 */
size_t rpcout_escape_into(char *out, const char *p, size_t len);

/*
 * Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not valid by RFC 3629
 * (cut short, overlong, a UTF-16 surrogate, past U+10FFFF).  len >= 1.
 */
size_t rpcout_utf8_len(const unsigned char *p, size_t len);
/*
 * The bytes at the end of p[0..len) that begin a UTF-8 character it does not finish
 * (0..3): cutting there leaves no character in two.
 */
size_t rpcout_utf8_tail(const char *p, size_t len);

/* Standard JSON-RPC error codes that mcpmux produces. */
#define RPC_PARSE_ERROR	    (-32700)
#define RPC_INVALID_REQUEST (-32600)
#define RPC_SERVER_ERROR    (-32000)

/*
 * {"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":"MSG"}}
 * id is JSON text (e.g. "\"abc\"" or "7"); NULL means null.  No "\n".
 */
void rpcout_error(struct sbuf *b, const char *id, size_t id_len, int code, const char *msg);
/*
 * The error a server gets in place of the client's answer (id: the server's) to one of
 * its requests, when that answer was over --max-message (limit): total bytes.
 */
void rpcout_answer_too_large(struct sbuf *b, const char *id, size_t id_len, size_t total,
			     size_t limit);

/* The "exit" value of a wait status: {"code":N} or {"signal":"SIGKILL"}; null if < 0. */
void rpcout_exit(struct sbuf *b, int wstatus);
/* A signal's name without a number: "SIGTERM"; "SIG<n>" for others. */
const char *rpcout_signame(int sig, char *buf, size_t len);

#endif
