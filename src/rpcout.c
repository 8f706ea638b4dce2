/*
 * rpcout: JSON text that mcpmux writes itself.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "mcpmux/diag.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/jsonspan.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"

bool
sbuf_grow(struct sbuf *b, size_t more)
{
	if (b->failed) {
		return false;
	}
	if (b->len + more + 1 <= b->cap) {
		return true;
	}
	size_t cap = b->cap ? b->cap : 256;

	while (cap < b->len + more + 1) {
		cap *= 2;
	}
	char *nb = realloc(b->buf, cap);

	if (nb == NULL) {
		b->failed = true;
		return false;
	}
	b->buf = nb;
	b->cap = cap;
	return true;
}

void
sbuf_reset(struct sbuf *b)
{
	sbuf_reset_keep(b, SBUF_KEEP);
}

void
sbuf_reset_keep(struct sbuf *b, size_t keep)
{
	if (b->cap > keep) {
		sbuf_release(b);
	}
	b->len = 0;
	b->failed = false;
}

/*
 * A record kept for a session's life: an sbuf's first 256 bytes for a few bytes of text,
 * four records a session, were a kilobyte of every idle session.
 */
void
sbuf_set_exact(struct sbuf *b, const char *p, size_t len)
{
	sbuf_release(b);
	if ((b->buf = malloc(len + 1)) == NULL) {
		b->failed = true;
		return;
	}
	b->cap = len + 1;
	sbuf_add(b, p, len);
}

void
sbuf_release(struct sbuf *b)
{
	if (b->cap > 4 * SBUF_KEEP) {
		/* A big message, or many lines held: given back once mcpmux is idle. */
		sys_big_alloc = true;
	}
	free(b->buf);
	b->buf = NULL;
	b->len = 0;
	b->cap = 0;
	b->failed = false;
}

void
sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed) {
		return;
	}
	/* Formatted once where it fits (the common case), twice where it does not. */
	size_t room = b->buf != NULL ? b->cap - b->len : 0;

	va_start(ap, fmt);
	n = vsnprintf(room > 0 ? b->buf + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < room) {
		b->len += (size_t)n;
		return;
	}
	if (room > 0) {
		b->buf[b->len] = '\0'; /* what was cut short is not the string's */
	}
	if (n < 0 || !sbuf_grow(b, (size_t)n)) {
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
sbuf_add_uint(struct sbuf *b, unsigned long long v, int width)
{
	static const char pairs[] = "00010203040506070809101112131415161718192021222324"
				    "25262728293031323334353637383940414243444546474849"
				    "50515253545556575859606162636465666768697071727374"
				    "75767778798081828384858687888990919293949596979899";
	char d[24];
	int n = 0;

	/* Two digits a step: the traffic log writes a few numbers per record. */
	while (v >= 100) {
		unsigned k = (unsigned)(v % 100) * 2;

		v /= 100;
		d[sizeof(d) - 1 - n++] = pairs[k + 1];
		d[sizeof(d) - 1 - n++] = pairs[k];
	}
	if (v >= 10) {
		d[sizeof(d) - 1 - n++] = pairs[v * 2 + 1];
		d[sizeof(d) - 1 - n++] = pairs[v * 2];
	} else {
		d[sizeof(d) - 1 - n++] = (char)('0' + v);
	}
	while (n < width && n < (int)sizeof(d)) {
		d[sizeof(d) - 1 - n++] = '0';
	}
	sbuf_add(b, d + sizeof(d) - n, (size_t)n);
}

void
sbuf_add_milli(struct sbuf *b, double v)
{
	if (!(v >= 0 && v < 1e15)) {
		sbuf_addf(b, "%.3f", v); /* negative, huge, NaN: the slow way */
		return;
	}
	unsigned long long m = (unsigned long long)(v * 1000. + .5);

	sbuf_add_uint(b, m / 1000, 1);
	sbuf_add(b, ".", 1);
	sbuf_add_uint(b, m % 1000, 3);
}

void
sbuf_add_json_string(struct sbuf *b, const char *p, size_t len)
{
	if (sbuf_grow(b, len * 6 + 2)) {
		b->len += rpcout_escape_into(b->buf + b->len, p, len);
		b->buf[b->len] = '\0';
	}
}

size_t
rpcout_utf8_tail(const char *p, size_t len)
{
	size_t k = 0;

	/* Back over up to 3 continuation bytes to the character's first byte. */
	while (k < 3 && k < len && ((unsigned char)p[len - 1 - k] & 0xC0) == 0x80) {
		k++;
	}
	if (k == len) {
		return 0;
	}
	unsigned char lead = (unsigned char)p[len - 1 - k];
	size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;

	return need > k + 1 ? k + 1 : 0;
}

size_t
rpcout_utf8_len(const unsigned char *p, size_t len)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80) {
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n) {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			return 0;
		}
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
		return 0;
	}
	return n;
}

/* The bytes a JSON string holds as they are: printable ASCII but '"' and '\\'. */
static const unsigned char escape_plain[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

size_t
rpcout_escape_into(char *out, const char *in, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)in;
	char *o = out;

	*o++ = '"';
	for (size_t i = 0; i < len;) {
		/* The bytes that stand for themselves, most of a string: found, then copied. */
		size_t run = i;

		while (run < len && escape_plain[p[run]]) {
			run++;
		}
		if (run > i) {
			memcpy(o, p + i, run - i);
			o += run - i;
			i = run;
			if (i == len) {
				break;
			}
		}
		unsigned char c = p[i];

		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
			i++;
		} else if (c == '\n') {
			*o++ = '\\';
			*o++ = 'n';
			i++;
		} else if (c == '\t') {
			*o++ = '\\';
			*o++ = 't';
			i++;
		} else if (c == '\r') {
			*o++ = '\\';
			*o++ = 'r';
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(o, "\\u00", 4);
			o[4] = hex[c >> 4];
			o[5] = hex[c & 15];
			o += 6;
			i++;
		} else {
			size_t n = rpcout_utf8_len(p + i, len - i);

			if (n == 0) {
				memcpy(o, "\\ufffd", 6);
				o += 6;
				i++;
			} else {
				memcpy(o, p + i, n);
				o += n;
				i += n;
			}
		}
	}
	*o++ = '"';
	return (size_t)(o - out);
}

const char rpcout_no_memory[] = "out of memory";

void
rpcout_error(struct sbuf *b, const char *id, size_t id_len, int code, const char *msg)
{
	sbuf_adds(b, "{\"jsonrpc\":\"2.0\",\"id\":");
	if (id != NULL) {
		sbuf_add(b, id, id_len);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_addf(b, ",\"error\":{\"code\":%d,\"message\":", code);
	sbuf_add_json_string(b, msg, strlen(msg));
	sbuf_adds(b, "}}");
}

size_t
rpcout_error_each(struct sbuf *b, const struct jsonrpc_scanner *scan, int code, const char *msg,
		  bool (*skip)(void *ctx, const char *id, size_t id_len), void *ctx)
{
	bool batch = scan->kind == JSONRPC_BATCH;
	size_t n, k = 0;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);

	for (size_t i = 0; i < n; i++) {
		const char *id = jsonrpc_str(scan, items[i].id);
		/* A batch element that is no message (1, "a", {}): -32600, as a server answers
		 * it, with its id if it has one (as a message alone), null otherwise. */
		bool invalid = batch && items[i].kind == JSONRPC_INVALID_REQUEST;

		if ((items[i].kind != JSONRPC_REQUEST && !invalid) ||
		    (!invalid && skip != NULL && skip(ctx, id, items[i].id.len))) {
			continue;
		}
		if (batch) {
			sbuf_add(b, k == 0 ? "[" : ",", 1);
		}
		if (invalid) {
			rpcout_error(b, items[i].has_id ? id : NULL, items[i].id.len,
				     RPC_INVALID_REQUEST, RPCOUT_NOT_A_MESSAGE);
		} else {
			rpcout_error(b, id, items[i].id.len, code, msg);
		}
		k++;
	}
	if (batch && k > 0) {
		sbuf_add(b, "]", 1);
	}
	return k;
}

#define LOST_HEAD "{\"jsonrpc\":\"2.0\",\"id\":"
#define LOST_TAIL ",\"error\":{\"code\":-32000,\"message\":\"" RPCOUT_LOST_ANSWER "\"}}"

/* The id of an answer (an object with an id that is not null, a result or an error). */
static bool
answer_id(const char *line, size_t len, const char **id, size_t *id_len)
{
	const char *v;
	size_t vlen;

	return jsonspan_member(line, len, "id", id, id_len) &&
	       !(*id_len == 4 && memcmp(*id, "null", 4) == 0) &&
	       !jsonspan_member(line, len, "method", &v, &vlen) &&
	       (jsonspan_member(line, len, "result", &v, &vlen) ||
		jsonspan_member(line, len, "error", &v, &vlen));
}

int
rpcout_lost_answer(struct iovec *iov, const char *line, size_t len)
{
	static const char head[] = LOST_HEAD;
	static const char tail[] = LOST_TAIL;
	const char *id;
	size_t id_len;

	if (!answer_id(line, len, &id, &id_len)) {
		return 0;
	}
	iov[0] = (struct iovec){ .iov_base = (void *)(uintptr_t)head, .iov_len = sizeof(head) - 1 };
	iov[1] = (struct iovec){ .iov_base = (void *)(uintptr_t)id, .iov_len = id_len };
	iov[2] = (struct iovec){ .iov_base = (void *)(uintptr_t)tail, .iov_len = sizeof(tail) - 1 };
	return 3;
}

int
rpcout_lost_answers(struct iovec *iov, char *buf, size_t cap, const char *line, size_t len,
		    size_t *pos)
{
	static const char head[] = "[" LOST_HEAD;
	static const char tail[] = LOST_TAIL "]";
	const char *p = line + *pos, *end = line + len, *el, *at, *id;
	size_t el_len, id_len, n = 0;

	if (*pos == 0) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
			p++;
		}
		if (p == end || *p != '[') {
			*pos = len;
			return rpcout_lost_answer(iov, line, len);
		}
	}
	for (at = p; jsonspan_element(&p, end, &el, &el_len); at = p) {
		if (!answer_id(el, el_len, &id, &id_len)) {
			continue;
		}
		size_t need = 1 + sizeof(head) - 2 + id_len + sizeof(tail) - 1;

		if (n + need > cap) {
			if (n > 0) {
				p = at; /* the next array starts with it */
				break;
			}
			/* Too long for buf on its own: an array of its own, in pieces. */
			iov[0] = (struct iovec){ .iov_base = (void *)(uintptr_t)head,
						 .iov_len = sizeof(head) - 1 };
			iov[1] = (struct iovec){ .iov_base = (void *)(uintptr_t)id,
						 .iov_len = id_len };
			iov[2] = (struct iovec){ .iov_base = (void *)(uintptr_t)tail,
						 .iov_len = sizeof(tail) - 1 };
			*pos = (size_t)(p - line);
			return 3;
		}
		buf[n] = n == 0 ? '[' : ',';
		n++;
		memcpy(buf + n, head + 1, sizeof(head) - 2);
		n += sizeof(head) - 2;
		memcpy(buf + n, id, id_len);
		n += id_len;
		memcpy(buf + n, tail, sizeof(tail) - 2);
		n += sizeof(tail) - 2;
	}
	*pos = (size_t)(p - line);
	if (n == 0) {
		*pos = len;
		return 0;
	}
	buf[n++] = ']';
	iov[0] = (struct iovec){ .iov_base = buf, .iov_len = n };
	return 1;
}

void
rpcout_big_scanned_id(struct rpcout_big *m, const struct jsonrpc_idscan *sc)
{
	m->id_len = 0;
	m->id = jsonrpc_idscan_id(sc, &m->id_len);
	m->id_head = m->id == NULL && sc->overflow ? sc->id : NULL;
	m->id_head_len = m->id_head != NULL ? sc->id_len : 0;
}

const char *
rpcout_big_id(const struct rpcout_big *m, char *buf, size_t len)
{
	const char *p = m->id != NULL ? m->id : m->id_head;
	size_t n = m->id != NULL ? m->id_len : m->id_head_len;
	bool cut = m->id == NULL;

	if (p == NULL) {
		return "null";
	}
	if (n > RPCOUT_BIG_ID_SHOWN) {
		n = RPCOUT_BIG_ID_SHOWN;
		cut = true;
	}
	if (cut) {
		n -= rpcout_utf8_tail(p, n); /* no character cut in two */
	}
	(void)snprintf(buf, len, "%.*s%s", (int)n, p, cut ? "..." : "");
	return buf;
}

void
rpcout_answer_too_large(struct sbuf *b, const struct rpcout_big *m)
{
	char text[160];

	if (m->no_memory) {
		(void)snprintf(text, sizeof(text),
			       "out of memory: the client's answer (%zu bytes) could not be held",
			       m->total);
	} else {
		(void)snprintf(text, sizeof(text),
			       "the client's answer was too large for mcpmux (%s%zu bytes, the "
			       "limit is %zu: see --max-message)",
			       RPCOUT_BIG_OF(m), m->total, m->limit);
	}
	rpcout_error(b, m->id, m->id_len, RPC_SERVER_ERROR, text);
}

enum rpcout_oversize
rpcout_oversize(const struct rpcout_big *m, char *text, size_t len)
{
	if (m->answer) {
		return RPCOUT_OVERSIZE_ANSWER;
	}
	if (m->notification) {
		return RPCOUT_OVERSIZE_NOTIFICATION;
	}
	if (m->no_memory) {
		(void)snprintf(
			text, len,
			"out of memory: the client's message (%s%zu bytes) could not be held",
			m->enveloped ? "an envelope of " : "", m->total);
	} else {
		(void)snprintf(text, len,
			       "Invalid Request: message too large (%s%zu bytes, the limit is %zu: "
			       "see --max-message)",
			       m->enveloped ? "an envelope of " : "", m->total, m->limit);
	}
	return RPCOUT_OVERSIZE_REQUEST;
}

size_t
rpcout_big_bound(size_t limit)
{
	return 1024 + limit / 35;
}

/*
 * The bytes an error of rpcout_bigreqs_append() takes in its array but its id's, its ','
 * (or the ']') too: the most its message can take, the batch's length at its widest.
 */
static size_t
bigreqs_error_len(size_t limit)
{
	struct rpcout_big m = { .total = SIZE_MAX, .limit = limit, .enveloped = true };
	char text[256];
	size_t len;

	(void)rpcout_oversize(&m, text, sizeof(text));
	len = strlen(text);
	m.no_memory = true;
	(void)rpcout_oversize(&m, text, sizeof(text));
	len = SYS_MAX(len, strlen(text));
	return sizeof("{\"jsonrpc\":\"2.0\",\"id\":,\"error\":{\"code\":-32600,\"message\":\"\"}}") -
	       1 + len + 1;
}

void
rpcout_bigreqs_begin(struct rpcout_bigreqs *r, size_t limit)
{
	sbuf_reset(&r->ids);
	r->n = 0;
	r->cap = SYS_MAX(limit, RPCOUT_BIGREQS_FLOOR);
	r->error_len = bigreqs_error_len(limit);
	r->bytes = 1; /* its '[' */
	r->over = false;
	r->no_message = 0;
}

/* One more error in the array, its id id_len bytes (0: null): false, and over, past cap. */
static bool
bigreqs_fits(struct rpcout_bigreqs *r, size_t id_len)
{
	size_t cost = r->error_len + (id_len > 0 ? id_len : 4);

	if (r->over || r->bytes + cost > r->cap) {
		if (!r->over) {
			r->over = true;
			sbuf_release(&r->ids);
		}
		return false;
	}
	r->bytes += cost;
	return true;
}

void
rpcout_bigreqs_add(struct rpcout_bigreqs *r, const char *id, size_t id_len)
{
	unsigned char len = id != NULL && id_len <= 255 ? (unsigned char)id_len : 0;

	if (!bigreqs_fits(r, len)) {
		return;
	}
	r->n++;
	sbuf_add(&r->ids, (const char *)&len, 1);
	if (len > 0) {
		sbuf_add(&r->ids, id, len);
	}
}

void
rpcout_bigreqs_no_message(struct rpcout_bigreqs *r)
{
	/* One error with id null for them all. */
	if (r->no_message++ == 0) {
		(void)bigreqs_fits(r, 0);
	}
}

enum rpcout_bigreqs_end
rpcout_bigreqs_errors(struct sbuf *b, const struct rpcout_bigreqs *r, const struct rpcout_big *big)
{
	sbuf_reset(b);
	return rpcout_bigreqs_append(b, r, big);
}

enum rpcout_bigreqs_end
rpcout_bigreqs_append(struct sbuf *b, const struct rpcout_bigreqs *r, const struct rpcout_big *big)
{
	struct rpcout_big m = *big;
	const struct sbuf *ids = &r->ids;
	char text[256];
	size_t n = 0;

	if (r->over) {
		return RPCOUT_BIGREQS_TOO_MANY;
	}
	if (ids->failed) {
		return RPCOUT_BIGREQS_NO_IDS;
	}
	m.answer = false;
	m.notification = false;
	(void)rpcout_oversize(&m, text, sizeof(text));
	for (size_t i = 0; i < ids->len; i += 1 + (unsigned char)ids->buf[i]) {
		size_t id_len = (unsigned char)ids->buf[i];

		sbuf_adds(b, n++ == 0 ? "[" : ",");
		rpcout_error(b, id_len > 0 ? ids->buf + i + 1 : NULL, id_len, RPCOUT_BIG_CODE(&m),
			     text);
	}
	if (r->no_message > 0) {
		/* Its elements that are no message, which could not be read: one error. */
		sbuf_adds(b, n++ == 0 ? "[" : ",");
		rpcout_error(b, NULL, 0, RPCOUT_BIG_CODE(&m), text);
	}
	if (n > 0) {
		sbuf_adds(b, "]");
		if (b->failed) {
			sbuf_reset(b);
			return RPCOUT_BIGREQS_NO_ARRAY;
		}
	}
	return RPCOUT_BIGREQS_ANSWERED;
}

bool
rpcout_bigreqs_answer(struct sbuf *b, const struct rpcout_bigreqs *r, const struct rpcout_big *big)
{
	switch (rpcout_bigreqs_errors(b, r, big)) {
	case RPCOUT_BIGREQS_TOO_MANY:
		diag_warn(RPCOUT_BIGREQS_TOO_MANY_TEXT, r->cap);
		return false;
	case RPCOUT_BIGREQS_NO_IDS:
		diag_error(RPCOUT_BIGREQS_NO_IDS_TEXT);
		return false;
	case RPCOUT_BIGREQS_NO_ARRAY:
		diag_error(RPCOUT_BIGREQS_NO_ARRAY_TEXT);
		return false;
	case RPCOUT_BIGREQS_ANSWERED:
		break;
	}
	return true;
}

bool
rpcout_dropped(char *text, size_t len, const char *sender, size_t total, size_t limit,
	       size_t envelope)
{
	if (total <= limit + envelope) {
		(void)snprintf(text, len, "out of memory: %s message (%zu bytes) could not be held",
			       sender, total);
		return true;
	}
	(void)snprintf(text, len,
		       "%s message too large (%zu bytes, the limit is %zu: see --max-message)",
		       sender, total, limit);
	return false;
}

const char *
rpcout_signame(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev != NULL) {
		(void)snprintf(buf, len, "SIG%s", abbrev);
	} else {
		(void)snprintf(buf, len, "SIG%d", sig);
	}
	return buf;
}

void
rpcout_exit(struct sbuf *b, int wstatus)
{
	char name[32];

	if (wstatus < 0) {
		sbuf_adds(b, "null");
	} else if (WIFSIGNALED(wstatus)) {
		sbuf_addf(b, "{\"signal\":\"%s\"}",
			  rpcout_signame(WTERMSIG(wstatus), name, sizeof(name)));
	} else {
		sbuf_addf(b, "{\"code\":%d}", WEXITSTATUS(wstatus));
	}
}
