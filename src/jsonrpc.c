/*
 * jsonrpc: JSON-RPC message inspection with yajl callbacks, no tree.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mcpmux/jsonrpc.h"
#include "mcpmux/jsonsimd.h"
#include "mcpmux/jsonspan.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"

enum {
	KEY_NONE,
	KEY_JSONRPC,
	KEY_ID,
	KEY_METHOD,
	KEY_PARAMS,
	KEY_RESULT,
	KEY_ERROR,
	KEY_OTHER,
};

enum {
	SEEN_JSONRPC = 1u << 0,
	SEEN_ID = 1u << 1,
	SEEN_METHOD = 1u << 2,
	SEEN_RESULT = 1u << 3,
	SEEN_ERROR = 1u << 4,
};

enum {
	PKEY_NONE,
	PKEY_GRACE_MS,
	PKEY_SESSION,
	PKEY_REASON,
	PKEY_REQUEST_ID,
};

enum value_type {
	V_NULL,
	V_BOOL,
	V_NUMBER,
	V_STRING,
	V_MAP,
	V_ARRAY,
};

#define ARENA_KEEP ((size_t)64 << 10)
/*
 * simdjson's buffers, and yajl's for a string it decodes, are kept for lines up to this
 * long; longer, until jsonrpc_trim().
 */
#define LINE_KEEP ((size_t)16 << 10)

/*
 * Scanners holding memory grown for a long line (linked by next_big): simdjson's or
 * yajl's buffers, an arena over ARENA_KEEP, items over JSONRPC_MAX_ITEMS.
 */
static struct jsonrpc_scanner *big_head;

static struct jsonrpc_item spare_item; /* batch elements not kept (past JSONRPC_MAX_ITEMS) */

/*
 * The scanner grew memory for a long line: given back by jsonrpc_trim() once mcpmux has
 * been idle since the last such line, whether or not another line comes.
 */
__attribute__((cold, noinline)) static void
note_big(struct jsonrpc_scanner *s)
{
	sys_big_alloc = true;
	if (!s->big) {
		s->big = true;
		s->next_big = big_head;
		big_head = s;
	}
}

static bool
key_is(const unsigned char *k, size_t len, const char *name)
{
	return strlen(name) == len && memcmp(k, name, len) == 0;
}

static int
msg_key(const unsigned char *k, size_t len)
{
	switch (len) {
	case 2:
		return memcmp(k, "id", 2) == 0 ? KEY_ID : KEY_OTHER;
	case 5:
		return memcmp(k, "error", 5) == 0 ? KEY_ERROR : KEY_OTHER;
	case 6:
		if (memcmp(k, "method", 6) == 0) {
			return KEY_METHOD;
		}
		if (memcmp(k, "params", 6) == 0) {
			return KEY_PARAMS;
		}
		return memcmp(k, "result", 6) == 0 ? KEY_RESULT : KEY_OTHER;
	case 7:
		return memcmp(k, "jsonrpc", 7) == 0 ? KEY_JSONRPC : KEY_OTHER;
	default:
		return KEY_OTHER;
	}
}

static int
params_key(const unsigned char *k, size_t len)
{
	if (key_is(k, len, "graceMs")) {
		return PKEY_GRACE_MS;
	}
	if (key_is(k, len, "session")) {
		return PKEY_SESSION;
	}
	if (key_is(k, len, "reason")) {
		return PKEY_REASON;
	}
	if (key_is(k, len, "requestId")) {
		return PKEY_REQUEST_ID;
	}
	return PKEY_NONE;
}

/* Copy bytes into the arena; on failure the scan is answered as invalid. */
static struct jsonrpc_str
arena_put(struct jsonrpc_scanner *s, const char *p, size_t len, bool as_json_string)
{
	struct jsonrpc_str str = { 0, 0 };
	size_t need = as_json_string ? len * 6 + 2 : len;

	if (s->arena_len + need > s->arena_cap || s->arena == NULL) {
		size_t cap = s->arena_cap ? s->arena_cap : 256;

		while (cap < s->arena_len + need) {
			cap *= 2;
		}
		char *na = cap > UINT32_MAX ? NULL : realloc(s->arena, cap);

		if (na == NULL) {
			s->arena_failed = true;
			return str;
		}
		s->arena = na;
		s->arena_cap = cap;
		if (cap > ARENA_KEEP) {
			note_big(s);
		}
	}
	str.off = (uint32_t)s->arena_len;
	if (as_json_string) {
		str.len = (uint32_t)rpcout_escape_into(s->arena + s->arena_len, p, len);
	} else {
		memcpy(s->arena + s->arena_len, p, len);
		str.len = (uint32_t)len;
	}
	s->arena_len += str.len;
	return str;
}

static void
item_reset(struct jsonrpc_item *it)
{
	memset(it, 0, sizeof(*it));
	it->kind = JSONRPC_INVALID_REQUEST;
}

static void
item_finish(struct jsonrpc_item *it)
{
	bool has_result = it->seen & SEEN_RESULT, has_error = it->seen & SEEN_ERROR;

	it->kind = JSONRPC_INVALID_REQUEST;
	if (it->bad || !(it->seen & SEEN_JSONRPC)) {
		return;
	}
	if (it->has_method) {
		if (has_result || has_error) {
			return;
		}
		it->kind = it->has_id ? JSONRPC_REQUEST : JSONRPC_NOTIFICATION;
		return;
	}
	if (!it->has_id || has_result == has_error) {
		return;
	}
	it->kind = has_result ? JSONRPC_RESPONSE : JSONRPC_ERROR;
}

/* A value at message level, for the member named by s->key. */
static void
msg_value(struct jsonrpc_scanner *s, enum value_type t, const unsigned char *p, size_t len)
{
	struct jsonrpc_item *it = s->cur;
	int key = s->key;

	s->key = KEY_NONE;
	switch (key) {
	case KEY_JSONRPC:
		if (t == V_STRING && key_is(p, len, "2.0")) {
			it->seen |= SEEN_JSONRPC;
		} else {
			it->bad = true;
		}
		break;
	case KEY_ID:
		it->seen |= SEEN_ID;
		if (t == V_STRING) {
			it->id = arena_put(s, (const char *)p, len, true);
			it->has_id = true;
		} else if (t == V_NUMBER) {
			it->id = arena_put(s, (const char *)p, len, false);
			it->has_id = true;
		} else if (t == V_NULL) {
			it->id = arena_put(s, "null", 4, false);
			it->has_id = true;
			it->bad = it->bad || it->has_method;
		} else {
			it->bad = true;
		}
		break;
	case KEY_METHOD:
		if (t == V_STRING) {
			it->method = arena_put(s, (const char *)p, len, false);
			it->has_method = true;
			/* A request's id must not be null. */
			it->bad = it->bad || (it->has_id && it->id.len == 4 &&
					      memcmp(s->arena + it->id.off, "null", 4) == 0);
		} else {
			it->bad = true;
		}
		break;
	case KEY_PARAMS:
		if (t != V_MAP && t != V_ARRAY) {
			it->bad = true;
		}
		break;
	case KEY_RESULT:
		it->seen |= SEEN_RESULT;
		break;
	case KEY_ERROR:
		it->seen |= SEEN_ERROR;
		if (t != V_MAP) {
			it->bad = true;
		}
		break;
	default:
		break;
	}
}

static void
params_value(struct jsonrpc_scanner *s, enum value_type t, const unsigned char *p, size_t len)
{
	int key = s->params_key;

	s->params_key = PKEY_NONE;
	if (s->is_batch) {
		/* A batch element's: only a cancellation's requestId. */
		if (key == PKEY_REQUEST_ID && (t == V_STRING || t == V_NUMBER)) {
			s->cur->request_id = arena_put(s, (const char *)p, len, t == V_STRING);
			s->cur->has_request_id = true;
		}
		return;
	}
	if (key == PKEY_GRACE_MS && t == V_NUMBER) {
		/* Its text as written, whatever its length, and after it a NUL for strtod. */
		struct jsonrpc_str text = arena_put(s, (const char *)p, len, false);

		(void)arena_put(s, "", 1, false);
		if (!s->arena_failed) {
			s->params.grace_ms = strtod(s->arena + text.off, NULL);
			s->params.grace_ms_text = text;
			s->params.has_grace_ms = true;
		}
	} else if (key == PKEY_SESSION && t == V_STRING) {
		s->params.session = arena_put(s, (const char *)p, len, false);
		s->params.has_session = true;
	} else if (key == PKEY_REASON && t == V_STRING) {
		s->params.reason = arena_put(s, (const char *)p, len, false);
		s->params.has_reason = true;
	} else if (key == PKEY_REQUEST_ID && (t == V_STRING || t == V_NUMBER)) {
		s->params.request_id = arena_put(s, (const char *)p, len, t == V_STRING);
		s->params.has_request_id = true;
	}
}

/*
 * Scalars and keys are read only where they matter: the members of a message (level 1,
 * or 2 in a batch) and those of a wanted params object (level 2, or 3 in a batch, where
 * only a cancellation's are wanted).  Everywhere else
 * yajl only validates, with no callbacks and no decoding of escaped strings: the bulk of
 * a payload's cost.
 */
static const yajl_callbacks scan_callbacks;

static int
msg_depth(const struct jsonrpc_scanner *s)
{
	return s->is_batch ? 2 : 1;
}

/*
 * Room for one more batch element past JSONRPC_MAX_ITEMS (the array doubles); false when
 * memory runs out, and the scan is then answered as invalid.  A request, an answer or a
 * cancellation takes at least 35 bytes of the line, so what is kept is bounded by the
 * line's length.
 */
static bool
items_room(struct jsonrpc_scanner *s)
{
	if (s->n_items < s->items_cap) {
		return true;
	}
	struct jsonrpc_item *ni =
		s->arena_failed ? NULL : realloc(s->items, 2 * s->items_cap * sizeof(*ni));

	if (ni == NULL) {
		s->arena_failed = true;
		return false;
	}
	s->items = ni;
	s->items_cap *= 2;
	note_big(s);
	return true;
}

/* Any value: scalars, and containers at the moment they open (before depth++). */
static int
on_value(struct jsonrpc_scanner *s, enum value_type t, const unsigned char *p, size_t len)
{
	if (s->cur != NULL && s->depth == msg_depth(s)) {
		/* A member of a message: the common case, first. */
		if (t == V_MAP && s->key == KEY_PARAMS) {
			/* A batch element's: only a cancellation's (its method may come later). */
			bool wanted =
				!s->is_batch && (s->params_method == NULL ||
						 jsonrpc_method_is(s, s->cur, s->params_method));

			s->in_params = wanted || !s->cur->has_method ||
				       jsonrpc_method_is(s, s->cur, JSONRPC_CANCELLED);
		}
		msg_value(s, t, p, len);
		return 1;
	}
	if (s->depth == 0) {
		if (++s->n_values > 1) {
			s->error = "more than one JSON value on a line";
			return 0;
		}
		/*
		 * A container's end is noted when it closes, a scalar's now: inside
		 * yajl_parse(), just past it.  (A number that ends the line is reported only by
		 * yajl_complete_parse(), and nothing follows it.)
		 */
		s->end = t == V_MAP || t == V_ARRAY || s->fast ? SIZE_MAX
							       : yajl_get_bytes_consumed(s->h);
		s->is_batch = t == V_ARRAY;
		s->top_container = t == V_ARRAY || t == V_MAP;
		if (t == V_MAP) {
			s->cur = &s->one; /* reset by scan_reset() */
		}
		return 1;
	}
	if (s->is_batch && s->depth == 1) {
		struct jsonrpc_item *it = &spare_item;

		s->n_elements++;
		/* Past JSONRPC_MAX_ITEMS, only an object can be kept (close_container()). */
		if (s->n_items < JSONRPC_MAX_ITEMS || (t == V_MAP && items_room(s))) {
			it = &s->items[s->n_items++];
		}
		item_reset(it);
		if (t == V_MAP) {
			s->cur = it;
		}
		return 1;
	}
	if (s->in_params && s->depth == msg_depth(s) + 1) {
		params_value(s, t, p, len);
	}
	return 1;
}

static int
open_container(struct jsonrpc_scanner *s, enum value_type t)
{
	if (!on_value(s, t, NULL, 0)) {
		return 0;
	}
	if (++s->depth > JSONRPC_MAX_DEPTH) {
		s->error = "JSON nested too deeply";
		return 0;
	}
	if (s->mute_depth == 0 && s->depth > 1 && !(s->is_batch && s->depth == 2) &&
	    !(s->in_params && s->depth == msg_depth(s) + 1)) {
		s->mute_depth = s->depth;
		s->cb.yajl_null = NULL;
		s->cb.yajl_boolean = NULL;
		s->cb.yajl_number = NULL;
		s->cb.yajl_string = NULL;
		s->cb.yajl_map_key = NULL;
	}
	return 1;
}

static void
close_container(struct jsonrpc_scanner *s)
{
	size_t len;

	if (s->depth == s->mute_depth) {
		s->cb.yajl_null = scan_callbacks.yajl_null;
		s->cb.yajl_boolean = scan_callbacks.yajl_boolean;
		s->cb.yajl_number = scan_callbacks.yajl_number;
		s->cb.yajl_string = scan_callbacks.yajl_string;
		s->cb.yajl_map_key = scan_callbacks.yajl_map_key;
		s->mute_depth = 0;
	}
	s->depth--;
	if (s->depth == 0 && !s->fast) {
		s->end = yajl_get_bytes_consumed(s->h);
	}
	if (s->in_params && s->depth == msg_depth(s)) {
		s->in_params = false;
	}
	if (s->cur != NULL && s->depth == msg_depth(s) - 1) {
		item_finish(s->cur);
		/* Past JSONRPC_MAX_ITEMS, a batch keeps its requests, answers and cancellations:
		 * what has an id to route, answer or forget.  The others are counted only. */
		if (s->is_batch && s->n_items > JSONRPC_MAX_ITEMS && s->cur != &spare_item &&
		    s->cur->kind != JSONRPC_REQUEST && s->cur->kind != JSONRPC_RESPONSE &&
		    s->cur->kind != JSONRPC_ERROR && !jsonrpc_cancels(s, s->cur, &len)) {
			s->n_items--;
		}
		s->cur = NULL;
	}
}

static int
cb_null(void *ctx)
{
	return on_value(ctx, V_NULL, NULL, 0);
}

static int
cb_boolean(void *ctx, int b)
{
	(void)b;
	return on_value(ctx, V_BOOL, NULL, 0);
}

/* A message's members are most scalars: straight to msg_value(). */
static int
cb_number(void *ctx, const char *p, size_t len)
{
	struct jsonrpc_scanner *s = ctx;

	if (s->cur != NULL && s->depth == msg_depth(s)) {
		msg_value(s, V_NUMBER, (const unsigned char *)p, len);
		return 1;
	}
	return on_value(s, V_NUMBER, (const unsigned char *)p, len);
}

static int
cb_string(void *ctx, const unsigned char *p, size_t len)
{
	struct jsonrpc_scanner *s = ctx;

	if (s->cur != NULL && s->depth == msg_depth(s)) {
		msg_value(s, V_STRING, p, len);
		return 1;
	}
	return on_value(s, V_STRING, p, len);
}

static int
cb_start_map(void *ctx)
{
	return open_container(ctx, V_MAP);
}

static int
cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
	struct jsonrpc_scanner *s = ctx;

	if (s->cur != NULL && s->depth == msg_depth(s)) {
		s->key = msg_key(k, len);
	} else if (s->in_params && s->depth == msg_depth(s) + 1) {
		s->params_key = params_key(k, len);
	}
	return 1;
}

static int
cb_end(void *ctx)
{
	close_container(ctx);
	return 1;
}

static int
cb_start_array(void *ctx)
{
	return open_container(ctx, V_ARRAY);
}

static const yajl_callbacks scan_callbacks = {
	.yajl_null = cb_null,
	.yajl_boolean = cb_boolean,
	.yajl_number = cb_number,
	.yajl_string = cb_string,
	.yajl_start_map = cb_start_map,
	.yajl_map_key = cb_map_key,
	.yajl_end_map = cb_end,
	.yajl_start_array = cb_start_array,
	.yajl_end_array = cb_end,
};

void
jsonrpc_init(struct jsonrpc_scanner *s)
{
	memset(s, 0, sizeof(*s));
}

void
jsonrpc_release(struct jsonrpc_scanner *s)
{
	if (s->h != NULL) {
		yajl_free(s->h);
	}
	for (struct jsonrpc_scanner **p = &big_head; *p != NULL; p = &(*p)->next_big) {
		if (*p == s) {
			*p = s->next_big;
			break;
		}
	}
	jsonsimd_free(s->simd);
	free(s->items);
	free(s->arena);
	jsonrpc_init(s);
}

static void
scan_reset(struct jsonrpc_scanner *s)
{
	if (s->arena_cap > ARENA_KEEP) {
		free(s->arena);
		s->arena = NULL;
		s->arena_cap = 0;
	}
	if (s->items_cap > JSONRPC_MAX_ITEMS) {
		/* Grown for a long batch: given back, down to its usual size. */
		struct jsonrpc_item *ni = realloc(s->items, JSONRPC_MAX_ITEMS * sizeof(*ni));

		if (ni != NULL) {
			s->items = ni;
			s->items_cap = JSONRPC_MAX_ITEMS;
		}
	}
	s->arena_len = 0;
	s->arena_failed = false;
	s->cb = scan_callbacks;
	s->kind = JSONRPC_INVALID_JSON;
	item_reset(&s->one);
	s->n_items = 0;
	s->n_elements = 0;
	memset(&s->params, 0, sizeof(s->params));
	s->error = NULL;
	s->depth = 0;
	s->end = SIZE_MAX;
	s->n_values = 0;
	s->is_batch = false;
	s->top_container = false;
	s->by_simd = false;
	s->cur = NULL;
	s->key = KEY_NONE;
	s->in_params = false;
	s->mute_depth = 0;
	s->params_key = PKEY_NONE;
}

/*
 * The length of the leading run of printable ASCII (0x20-0x7f): almost all of a JSON-RPC
 * message.  On x86-64, 16 bytes per step with SSE2 (always there): as signed bytes, both
 * controls and bytes >= 0x80 compare below 0x20.  Elsewhere, 8 bytes per step.
 */
static size_t
ascii_run(const unsigned char *p, size_t len)
{
	size_t i = 0;

#if defined(__SSE2__)
	const __m128i space = _mm_set1_epi8(0x20);

	for (; i + 64 <= len; i += 64) {
		const __m128i *q = (const __m128i *)(const void *)(p + i);
		__m128i b =
			_mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(_mm_loadu_si128(q), space),
						  _mm_cmplt_epi8(_mm_loadu_si128(q + 1), space)),
				     _mm_or_si128(_mm_cmplt_epi8(_mm_loadu_si128(q + 2), space),
						  _mm_cmplt_epi8(_mm_loadu_si128(q + 3), space)));

		if (_mm_movemask_epi8(b) != 0) {
			break; /* found below */
		}
	}
	for (; i + 16 <= len; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		int bad = _mm_movemask_epi8(_mm_cmplt_epi8(v, space));

		if (bad != 0) {
			return i + (size_t)__builtin_ctz((unsigned)bad);
		}
	}
	if (i < len && len >= 16) {
		/* The last 16 bytes, overlapping what was checked: all of the tail at once. */
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + len - 16));
		int bad = _mm_movemask_epi8(_mm_cmplt_epi8(v, space));

		/* (what precedes i is printable, so the first bad byte is at or past it) */
		return bad == 0 ? len : len - 16 + (size_t)__builtin_ctz((unsigned)bad);
	}
#endif
	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		/* no byte >= 0x80, no byte < 0x20 */
		if (((w | (w - UINT64_C(0x2020202020202020))) & UINT64_C(0x8080808080808080)) !=
		    0) {
			break;
		}
	}
	while (i < len && p[i] >= 0x20 && p[i] < 0x80) {
		i++;
	}
	return i;
}

/*
 * Bytes no JSON text may hold anywhere, which yajl lets through: control characters
 * other than tab and CR (yajl takes vertical tab and form feed as white space), and
 * invalid UTF-8 by RFC 3629 (yajl checks only the byte structure of a sequence, so it
 * lets overlong forms, UTF-16 surrogates and code points past U+10FFFF through).
 */
bool
jsonrpc_text_ok(const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text, *end = p + len;

	while (p < end) {
		p += ascii_run(p, (size_t)(end - p));
		if (p == end) {
			break;
		}
		if (*p < 0x20) {
			if (*p != '\t' && *p != '\r') {
				return false;
			}
			p++;
			continue;
		}
		size_t n = rpcout_utf8_len(p, (size_t)(end - p));

		if (n == 0) {
			return false;
		}
		p += n;
	}
	return true;
}

/* What the caller knows of the text it passes. */
enum text_known {
	TEXT_ANY,     /* nothing */
	TEXT_NO_NL,   /* it holds no "\n" (a framed line) */
	TEXT_CHECKED, /* it passed jsonrpc_text_ok() (so it holds no "\n" either) */
};

static enum jsonrpc_kind scan(struct jsonrpc_scanner *s, const char *line, size_t len,
			      enum text_known known);
static enum jsonrpc_kind classify(struct jsonrpc_scanner *s);

enum jsonrpc_kind
jsonrpc_scan(struct jsonrpc_scanner *s, const char *line, size_t len)
{
	return scan(s, line, len, TEXT_ANY);
}

enum jsonrpc_kind
jsonrpc_scan_line(struct jsonrpc_scanner *s, const char *line, size_t len)
{
	return scan(s, line, len, TEXT_NO_NL);
}

enum jsonrpc_kind
jsonrpc_scan_checked(struct jsonrpc_scanner *s, const char *line, size_t len)
{
	return scan(s, line, len, TEXT_CHECKED);
}

static enum jsonrpc_kind
scan(struct jsonrpc_scanner *s, const char *line, size_t len, enum text_known known)
{
	scan_reset(s);
	if (s->items == NULL) {
		s->items = calloc(JSONRPC_MAX_ITEMS, sizeof(*s->items));
		if (s->items == NULL) {
			s->error = RPCOUT_NO_MEMORY;
			return s->kind = JSONRPC_INVALID_JSON;
		}
		s->items_cap = JSONRPC_MAX_ITEMS;
	}
	/*
	 * simdjson takes "\n" for white space; the yajl path refuses it (a line never holds
	 * one): such a text is yajl's to judge.
	 */
	bool try_simd = !s->yajl_only && len <= JSONSIMD_MAX_LEN &&
			(known != TEXT_ANY || memchr(line, '\n', len) == NULL);

	if (try_simd && s->simd == NULL) {
		s->simd = jsonsimd_new(JSONRPC_MAX_DEPTH); /* NULL: yajl alone, this time */
	}
	if (try_simd && s->simd != NULL) {
		if (len > LINE_KEEP) {
			note_big(s); /* its buffers grow to this line */
		}
		s->fast = true;
		enum jsonsimd_result r = jsonsimd_feed(s->simd, line, len, &s->cb, s);

		s->fast = false;
		if (r == JSONSIMD_DONE) {
			s->by_simd = true;
			return classify(s);
		}
		scan_reset(s); /* yajl decides, from the start */
	}
	if (s->h == NULL) {
		s->h = yajl_alloc(&s->cb, NULL, s);
		if (s->h != NULL) {
			(void)yajl_config(s->h, yajl_allow_multiple_values, 1);
		}
	}
	if (s->h == NULL) {
		s->error = RPCOUT_NO_MEMORY;
		return s->kind = JSONRPC_INVALID_JSON;
	}
	if (known != TEXT_CHECKED && !jsonrpc_text_ok(line, len)) {
		s->error = "not valid JSON text (a control character, or invalid UTF-8)";
		return s->kind = JSONRPC_INVALID_JSON;
	}
	if (len > LINE_KEEP) {
		note_big(s); /* the buffer yajl decodes an escaped string into grows to it */
	}
	yajl_status st = yajl_parse(s->h, (const unsigned char *)line, len);
	/* Where the value ended inside this line (SIZE_MAX: at its end, or not at all). */
	size_t end = s->end;

	if (st == yajl_status_ok) {
		st = yajl_complete_parse(s->h);
	}
	/*
	 * yajl (with allow_multiple_values) takes a token cut short at the end as the start of
	 * a next value and says nothing: after the value, only white space may follow.
	 */
	for (size_t i = end; st == yajl_status_ok && i < len; i++) {
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
			s->error = "not valid JSON: something after the value";
			st = yajl_status_error;
		}
	}
	if (st != yajl_status_ok || s->n_values != 1) {
		/* yajl has no reset: a handle that saw an error is replaced. */
		yajl_free(s->h);
		s->h = NULL;
		if (s->error == NULL) {
			s->error = "not valid JSON";
		}
		return s->kind = JSONRPC_INVALID_JSON;
	}
	return classify(s);
}

void
jsonrpc_trim(void)
{
	while (big_head != NULL) {
		struct jsonrpc_scanner *s = big_head;

		big_head = s->next_big;
		s->next_big = NULL;
		s->big = false;
		jsonsimd_free(s->simd);
		s->simd = NULL; /* made again, small, by the next scan */
		if (s->h != NULL) {
			yajl_free(s->h); /* likewise */
			s->h = NULL;
		}
		/* The arena and items of the last scan, with its results: never read after the
		 * callback that scanned (a line that waits is scanned again). */
		scan_reset(s);
	}
}

/* The result of a scan that found one valid JSON value. */
static enum jsonrpc_kind
classify(struct jsonrpc_scanner *s)
{
	if (s->arena_failed) {
		s->error = RPCOUT_NO_MEMORY;
		return s->kind = JSONRPC_INVALID_JSON;
	}
	if (s->is_batch) {
		s->kind = s->n_elements > 0 ? JSONRPC_BATCH : JSONRPC_INVALID_REQUEST;
		if (s->n_elements == 0) {
			s->error = "empty batch";
		}
	} else {
		s->kind = s->one.kind;
		if (s->kind == JSONRPC_INVALID_REQUEST) {
			s->error = "not a JSON-RPC 2.0 message";
		}
	}
	return s->kind;
}

/* ---- id keys ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

static int
hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);

		if (h < 0) {
			return -1;
		}
		v = v * 16 + h;
	}
	return v;
}

/* Code point cp as UTF-8 (a lone surrogate in its 3-byte form). */
static size_t
put_utf8(char *out, unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

size_t
jsonrpc_string_text(const char *p, size_t len, char *out, bool lone_as_fffd)
{
	size_t o = 0;

	if (len < 2 || p[0] != '"' || p[len - 1] != '"') {
		return SIZE_MAX;
	}
	/* Up to the first escape, the characters are the text's: one copy. */
	const char *esc = memchr(p + 1, '\\', len - 2);
	size_t i = esc == NULL ? len - 1 : (size_t)(esc - p);

	memcpy(out, p + 1, i - 1);
	o += i - 1;
	for (; i < len - 1; i++) {
		if (p[i] != '\\') {
			out[o++] = p[i];
			continue;
		}
		if (++i >= len - 1) {
			return SIZE_MAX;
		}
		switch (p[i]) {
		case '"':
		case '\\':
		case '/':
			out[o++] = p[i];
			break;
		case 'b':
			out[o++] = '\b';
			break;
		case 'f':
			out[o++] = '\f';
			break;
		case 'n':
			out[o++] = '\n';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case 't':
			out[o++] = '\t';
			break;
		case 'u': {
			int hi = i + 4 < len - 1 ? hex4(p + i + 1) : -1;
			unsigned long cp;

			if (hi < 0) {
				return SIZE_MAX;
			}
			i += 4;
			cp = (unsigned long)hi;
			if (hi >= 0xd800 && hi < 0xdc00 && i + 6 < len - 1 && p[i + 1] == '\\' &&
			    p[i + 2] == 'u') {
				int lo = hex4(p + i + 3);

				if (lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + (((unsigned long)hi - 0xd800) << 10) +
					     ((unsigned long)lo - 0xdc00);
					i += 6;
				}
			}
			if (lone_as_fffd && cp >= 0xd800 && cp < 0xe000) {
				cp = 0xfffd;
			}
			o += put_utf8(out + o, cp);
			break;
		}
		default:
			return SIZE_MAX;
		}
	}
	return o;
}

/* "..." with escapes -> 's' and the characters it stands for (a lone surrogate kept: keys
 * only need to be distinct). */
static size_t
string_key(const char *p, size_t len, char *out)
{
	size_t n = jsonrpc_string_text(p, len, out + 1, false);

	if (n == SIZE_MAX) {
		return 0;
	}
	out[0] = 's';
	return n + 1;
}

/* A number -> 'n', its sign, its significant digits, 'e' and the exponent of the last. */
static size_t
number_key(const char *p, size_t len, char *out)
{
	const long long cap = 1000000000000000LL;
	size_t i = 0, o = 0, first = 0, n_digits;
	long long exp = 0, frac = 0;
	bool neg = false;
	char *digits;

	if (i < len && p[i] == '-') {
		neg = true;
		i++;
	}
	out[o++] = 'n';
	o += neg; /* the sign's place; filled in once the number is known not to be 0 */
	digits = out + o;
	n_digits = 0;
	if (i >= len || p[i] < '0' || p[i] > '9') {
		return 0;
	}
	for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		digits[n_digits++] = p[i];
	}
	if (i < len && p[i] == '.') {
		size_t from = ++i;

		for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
			digits[n_digits++] = p[i];
		}
		if (i == from) {
			return 0;
		}
		frac = (long long)(i - from);
	}
	if (i < len && (p[i] == 'e' || p[i] == 'E')) {
		bool eneg = false;
		size_t from;

		i++;
		if (i < len && (p[i] == '+' || p[i] == '-')) {
			eneg = p[i] == '-';
			i++;
		}
		for (from = i; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
			exp = exp < cap ? exp * 10 + (p[i] - '0') : cap;
		}
		if (i == from) {
			return 0;
		}
		exp = eneg ? -exp : exp;
	}
	if (i != len) {
		return 0;
	}
	/* Significant digits only: no leading zeros, no trailing ones (into the exponent). */
	while (first < n_digits && digits[first] == '0') {
		first++;
	}
	if (first == n_digits) {
		out[0] = 'n';
		out[1] = '0';
		return 2; /* zero, whatever its sign or form */
	}
	exp -= frac;
	while (digits[n_digits - 1] == '0') {
		n_digits--;
		exp++;
	}
	memmove(digits, digits + first, n_digits - first);
	n_digits -= first;
	if (neg) {
		out[1] = '-';
	}
	o += n_digits;
	/* "e%lld" without printf: ids are keyed twice a round trip. */
	char d[24];
	int k = 0;
	unsigned long long u =
		exp < 0 ? (unsigned long long)(-(exp + 1)) + 1 : (unsigned long long)exp;

	out[o++] = 'e';
	if (exp < 0) {
		out[o++] = '-';
	}
	do {
		d[k++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	while (k > 0) {
		out[o++] = d[--k];
	}
	return o;
}

size_t
jsonrpc_id_key(const char *id, size_t len, char *out)
{
	if (len == 0) {
		return 0;
	}
	if (id[0] == '"') {
		return string_key(id, len, out);
	}
	if (len == 4 && memcmp(id, "null", 4) == 0) {
		out[0] = 'z';
		return 1;
	}
	return number_key(id, len, out);
}

static bool
is_answer(enum jsonrpc_kind kind)
{
	return kind == JSONRPC_RESPONSE || kind == JSONRPC_ERROR;
}

/* A scan that failed for want of memory (the text may be valid: nothing is known of it). */
static bool
scan_no_memory(const struct jsonrpc_scanner *s)
{
	return s->kind == JSONRPC_INVALID_JSON && s->error == RPCOUT_NO_MEMORY;
}

/* An element into the array b is making (k: those in it so far). */
static void
array_add(struct sbuf *b, size_t *k, const char *el, size_t len)
{
	sbuf_add(b, (*k)++ == 0 ? "[" : ",", 1);
	sbuf_add(b, el, len);
}

/*
 * jsonrpc_without_answers(), and with in_place the answers keep() keeps left in *out in
 * their places (taken unused), those it does not into *gone (when not NULL).
 */
static bool
split_answers(const struct jsonrpc_scanner *s, const char *line, size_t len,
	      bool (*keep)(void *ctx, const char *id, size_t id_len), void *ctx, struct sbuf *out,
	      struct jsonrpc_scanner *out_scan, struct sbuf *taken, bool in_place,
	      struct sbuf *gone, size_t *dropped)
{
	const char *p = line, *end = line + len, *el;
	size_t el_len, n, n_answers = 0, k = 0, t = 0, g = 0;
	const struct jsonrpc_item *items = jsonrpc_items(s, &n);

	sbuf_reset(out);
	if (taken != NULL) {
		sbuf_reset(taken);
	}
	if (gone != NULL) {
		sbuf_reset(gone);
	}
	*dropped = 0;
	if (s->kind != JSONRPC_BATCH) {
		return true;
	}
	/* Every answer is among the items, past JSONRPC_MAX_ITEMS too. */
	for (size_t i = 0; i < n && n_answers == 0; i++) {
		n_answers += is_answer(items[i].kind);
	}
	if (n_answers == 0) {
		return true;
	}
	while (jsonspan_element(&p, end, &el, &el_len)) {
		enum jsonrpc_kind kind = jsonrpc_scan(out_scan, el, el_len);

		if (scan_no_memory(out_scan)) {
			return false; /* (an answer it may be: not to be kept) */
		}
		if (!is_answer(kind)) {
			array_add(out, &k, el, el_len);
		} else if (keep != NULL && keep(ctx, jsonrpc_str(out_scan, out_scan->one.id),
						out_scan->one.id.len)) {
			if (in_place) {
				array_add(out, &k, el, el_len);
			} else {
				array_add(taken, &t, el, el_len);
			}
		} else {
			(*dropped)++;
			if (gone != NULL) {
				array_add(gone, &g, el, el_len);
			}
		}
	}
	if (t > 0) {
		sbuf_add(taken, "]", 1);
		if (taken->failed) {
			return false;
		}
	}
	if (g > 0) {
		sbuf_add(gone, "]", 1);
		if (gone->failed) {
			return false;
		}
	}
	if (k == 0) {
		return true;
	}
	sbuf_add(out, "]", 1);
	return !out->failed && jsonrpc_scan(out_scan, out->buf, out->len) == JSONRPC_BATCH;
}

bool
jsonrpc_without_answers(const struct jsonrpc_scanner *s, const char *line, size_t len,
			bool (*keep)(void *ctx, const char *id, size_t id_len), void *ctx,
			struct sbuf *out, struct jsonrpc_scanner *out_scan, struct sbuf *taken,
			size_t *dropped)
{
	return split_answers(s, line, len, keep, ctx, out, out_scan, taken, false, NULL, dropped);
}

bool
jsonrpc_drop_answers(const struct jsonrpc_scanner *s, const char *line, size_t len,
		     bool (*keep)(void *ctx, const char *id, size_t id_len), void *ctx,
		     struct sbuf *out, struct jsonrpc_scanner *out_scan, struct sbuf *gone,
		     size_t *dropped)
{
	return split_answers(s, line, len, keep, ctx, out, out_scan, NULL, true, gone, dropped);
}

const char *
jsonrpc_kind_name(enum jsonrpc_kind kind)
{
	switch (kind) {
	case JSONRPC_REQUEST:
		return "request";
	case JSONRPC_NOTIFICATION:
		return "notification";
	case JSONRPC_RESPONSE:
		return "response";
	case JSONRPC_ERROR:
		return "error";
	case JSONRPC_BATCH:
		return "batch";
	case JSONRPC_INVALID_JSON:
	case JSONRPC_INVALID_REQUEST:
		break;
	}
	return "invalid";
}

/* ---- idscan ---- */

void
jsonrpc_idscan_init(struct jsonrpc_idscan *sc)
{
	memset(sc, 0, sizeof(*sc));
}

#define FNV_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static void
idscan_capture(struct jsonrpc_idscan *sc, char c)
{
	if (sc->id_total++ == 0) {
		sc->id_hash = FNV_BASIS;
	}
	sc->id_hash = (sc->id_hash ^ (unsigned char)c) * FNV_PRIME;
	if (sc->id_len < sizeof(sc->id)) {
		sc->id[sc->id_len++] = c;
	} else {
		sc->overflow = true;
	}
}

/* A value fed ended: the scan is over, or, in a batch, goes on with the next element. */
static void
idscan_value_end(struct jsonrpc_idscan *sc)
{
	void (*on_element)(void *, const struct jsonrpc_idscan *) = sc->on_element;
	void *ctx = sc->ctx;

	if (!sc->batch) {
		sc->ended = true;
		return;
	}
	if (on_element != NULL) {
		on_element(ctx, sc);
	} else if (sc->found && jsonrpc_idscan_is_answer(sc)) {
		return; /* the first answer's id is the one sought */
	}
	jsonrpc_idscan_init(sc);
	sc->batch = true;
	sc->on_element = on_element;
	sc->ctx = ctx;
}

/* A character of a depth-1 key, as it decodes. */
static void
idscan_key_add(struct jsonrpc_idscan *sc, unsigned c)
{
	if (c < 0x80 && sc->key_len < sizeof(sc->key)) {
		sc->key[sc->key_len++] = (char)c;
	} else {
		sc->key_bad = true;
	}
}

/* The character after a backslash in a depth-1 key. */
static void
idscan_key_escape(struct jsonrpc_idscan *sc, char c)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *at = c != '\0' ? strchr(from, c) : NULL;

	if (c == 'u') {
		sc->key_hex = 4;
		sc->key_cp = 0;
	} else if (at != NULL) {
		idscan_key_add(sc, (unsigned char)to[at - from]);
	} else {
		sc->key_bad = true;
	}
}

/* A hex digit of a \uXXXX in a depth-1 key; false if c is none (the escape is bad). */
static bool
idscan_key_hex(struct jsonrpc_idscan *sc, char c)
{
	int v = c >= '0' && c <= '9'   ? c - '0'
		: c >= 'a' && c <= 'f' ? c - 'a' + 10
		: c >= 'A' && c <= 'F' ? c - 'A' + 10
				       : -1;

	if (v < 0) {
		sc->key_hex = 0;
		sc->key_bad = true;
		return false;
	}
	sc->key_cp = sc->key_cp * 16 + (unsigned)v;
	if (--sc->key_hex == 0) {
		idscan_key_add(sc, sc->key_cp);
	}
	return true;
}

/* A depth-1 key ended: the id's, a method's, or an answer's. */
static void
idscan_key_end(struct jsonrpc_idscan *sc)
{
	const char *k = sc->key;
	size_t n = sc->key_len;

	sc->want_value = false;
	if (sc->key_bad) {
		return;
	}
	if (n == 2 && memcmp(k, "id", 2) == 0) {
		sc->want_value = true;
		sc->has_id = true;
	} else if (n == 6 && memcmp(k, "method", 6) == 0) {
		sc->has_method = true;
	} else if ((n == 6 && memcmp(k, "result", 6) == 0) ||
		   (n == 5 && memcmp(k, "error", 5) == 0)) {
		sc->has_answer = true;
	}
}

void
jsonrpc_idscan_feed(struct jsonrpc_idscan *sc, const char *p, size_t len)
{
	for (size_t i = 0;
	     i < len && !sc->ended &&
	     !(sc->batch ? sc->on_element == NULL && sc->found && sc->has_answer && !sc->has_method
			 : sc->found && (sc->has_method || sc->has_answer));
	     i++) {
		char c = p[i];

		if (sc->in_string) {
			if (sc->capturing) {
				idscan_capture(sc, c);
			}
			if (sc->escape) {
				sc->escape = false;
				if (sc->is_key) {
					idscan_key_escape(sc, c);
				}
			} else if (sc->is_key && sc->key_hex > 0 && idscan_key_hex(sc, c)) {
				/* a digit of \uXXXX */
			} else if (c == '\\') {
				sc->escape = true;
			} else if (c == '"') {
				sc->in_string = false;
				if (sc->capturing) {
					sc->capturing = false;
					sc->found = true;
				} else if (sc->is_key) {
					idscan_key_end(sc);
				}
				sc->is_key = false;
			} else if (sc->is_key) {
				idscan_key_add(sc, (unsigned char)c);
			}
			continue;
		}
		if (sc->capturing) {
			/* A bare scalar (number, null, ...) ends at a delimiter, which counts. */
			if (c != ',' && c != '}' && c != ']' && c != ' ' && c != '\t' &&
			    c != '\r' && c != '\n') {
				idscan_capture(sc, c);
				continue;
			}
			sc->capturing = false;
			sc->found = true;
		}
		switch (c) {
		case '{':
		case '[':
			sc->begun = true;
			sc->depth++;
			sc->want_value = false;
			sc->is_key = sc->depth == 1 && c == '{';
			break;
		case '}':
		case ']':
			if (--sc->depth == 0) {
				idscan_value_end(sc);
			}
			break;
		case ',':
			sc->is_key = sc->depth == 1;
			sc->want_value = false;
			if (sc->depth == 0) {
				idscan_value_end(sc); /* after a bare scalar */
			}
			break;
		case ':':
			break;
		case '"':
			sc->begun = true;
			sc->in_string = true;
			if (sc->depth == 1 && sc->want_value && !sc->found) {
				sc->capturing = true;
				idscan_capture(sc, c);
			} else if (sc->depth == 1 && sc->is_key) {
				sc->key_len = 0;
				sc->key_bad = false;
				sc->key_hex = 0;
			} else {
				sc->is_key = false;
			}
			break;
		case ' ':
		case '\t':
		case '\r':
		case '\n':
			break;
		default:
			sc->begun = true;
			if (sc->depth == 1 && sc->want_value && !sc->found) {
				sc->capturing = true;
				idscan_capture(sc, c);
			}
			break;
		}
	}
}

/* RFC 8259 grammar of a number, and of a string (its escapes), for idscan's ids. */
static bool
json_number(const char *p, size_t len)
{
	size_t i = p[0] == '-', d;

	if (i < len && p[i] == '0') {
		i++;
	} else {
		for (d = i; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		}
		if (i == d) {
			return false;
		}
	}
	if (i < len && p[i] == '.') {
		for (d = ++i; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		}
		if (i == d) {
			return false;
		}
	}
	if (i < len && (p[i] == 'e' || p[i] == 'E')) {
		i += i + 1 < len && (p[i + 1] == '+' || p[i + 1] == '-') ? 2 : 1;
		for (d = i; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		}
		if (i == d) {
			return false;
		}
	}
	return i == len;
}

static bool
json_string(const char *p, size_t len)
{
	if (len < 2 || p[len - 1] != '"') {
		return false;
	}
	for (size_t i = 1; i < len - 1; i++) {
		if (p[i] == '"' || (unsigned char)p[i] < 0x20) {
			return false; /* an unescaped quote, tab or CR */
		}
		if (p[i] != '\\') {
			continue;
		}
		char c = p[++i];

		if (c == 'u') {
			for (size_t k = 1; k <= 4; k++) {
				if (i + k >= len - 1 || !isxdigit((unsigned char)p[i + k])) {
					return false;
				}
			}
			i += 4;
		} else if (i >= len - 1 || c == '\0' || strchr("\"\\/bfnrt", c) == NULL) {
			return false;
		}
	}
	return true;
}

void
jsonrpc_idscan_feed_line(struct jsonrpc_idscan *sc, bool *lead, const char *p, size_t len)
{
	size_t i = 0;

	if (*lead) {
		while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) {
			i++;
		}
		if (i == len) {
			return;
		}
		*lead = false;
		sc->batch = p[i] == '[';
		i += sc->batch;
	}
	jsonrpc_idscan_feed(sc, p + i, len - i);
}

const char *
jsonrpc_idscan_id(const struct jsonrpc_idscan *sc, size_t *len)
{
	bool ok = sc->id_len > 0 && !sc->overflow && (sc->found || !sc->in_string);

	if (!ok || sc->id[0] == 't' || sc->id[0] == 'f' || sc->id[0] == 'n' ||
	    (sc->id[0] == '"' && (sc->id_len < 2 || sc->id[sc->id_len - 1] != '"'))) {
		return NULL;
	}
	/* What is written back must be a valid JSON string or number. */
	if (!jsonrpc_text_ok(sc->id, sc->id_len) ||
	    !(sc->id[0] == '"' ? json_string(sc->id, sc->id_len)
			       : json_number(sc->id, sc->id_len))) {
		return NULL;
	}
	*len = sc->id_len;
	return sc->id;
}

uint64_t
jsonrpc_id_hash(const char *id, size_t len)
{
	uint64_t h = FNV_BASIS;

	for (size_t i = 0; i < len; i++) {
		h = (h ^ (unsigned char)id[i]) * FNV_PRIME;
	}
	return h;
}

bool
jsonrpc_idscan_is(const struct jsonrpc_idscan *sc, const char *id, size_t len)
{
	if (!sc->found || sc->id_total != len || memcmp(sc->id, id, sc->id_len) != 0) {
		return false;
	}
	return jsonrpc_id_hash(id, len) == sc->id_hash;
}

bool
jsonrpc_idscan_is_answer(const struct jsonrpc_idscan *sc)
{
	return sc->has_answer && !sc->has_method;
}

/* ---- the id of an answer refused ---- */

/*
 * Does the JSON string p (valid: json_string()) hold an escape of a UTF-16 surrogate that
 * is not one of a pair?  The scan's text of such an id is yajl's ("?" in its place).
 */
static bool
lone_surrogate(const char *p, size_t len)
{
	for (size_t i = 1; i + 1 < len; i++) {
		if (p[i] != '\\') {
			continue;
		}
		if (p[++i] != 'u') {
			continue;
		}
		int cp = hex4(p + i + 1);

		i += 4;
		if (cp >= 0xdc00 && cp < 0xe000) {
			return true;
		}
		if (cp >= 0xd800 && cp < 0xdc00) {
			int lo = i + 6 < len && p[i + 1] == '\\' && p[i + 2] == 'u'
					 ? hex4(p + i + 3)
					 : -1;

			if (lo < 0xdc00 || lo >= 0xe000) {
				return true;
			}
			i += 6;
		}
	}
	return false;
}

const char *
jsonrpc_answer_id(const char *text, size_t len, size_t *id_len)
{
	const char *p = jsonspan_ws(text, text + len), *end = text + len;
	const char *id = NULL, *id_end = NULL;
	bool answer = false, method = false;

	if (p >= end || *p != '{') {
		return NULL;
	}
	for (p++;;) {
		/* A member: its key, a string, decoded to be compared ("\u0069d" is "id"). */
		p = jsonspan_ws(p, end);
		if (p >= end || *p != '"') {
			return NULL; /* '}' of an empty object, or not JSON */
		}
		const char *k = p;

		if ((p = jsonspan_skip(p, end)) == NULL) {
			return NULL;
		}
		char key[64];
		size_t klen = (size_t)(p - k);
		size_t n =
			klen <= sizeof(key) ? jsonrpc_string_text(k, klen, key, false) : SIZE_MAX;

		p = jsonspan_ws(p, end);
		if (p >= end || *p != ':') {
			return NULL;
		}
		const char *v = jsonspan_ws(p + 1, end);

		if ((p = jsonspan_skip(v, end)) == NULL) {
			return NULL;
		}
		if (n == 2 && memcmp(key, "id", 2) == 0) {
			id = v; /* the last of them, as the scanner takes it */
			id_end = p;
		} else if (n == 6 && memcmp(key, "method", 6) == 0) {
			method = true;
		} else if ((n == 6 && memcmp(key, "result", 6) == 0) ||
			   (n == 5 && memcmp(key, "error", 5) == 0)) {
			answer = true;
		}
		p = jsonspan_ws(p, end);
		if (p < end && *p == '}') {
			break;
		}
		if (p >= end || *p != ',') {
			return NULL;
		}
		p++;
	}
	if (id == NULL || !answer || method) {
		return NULL;
	}
	size_t n = (size_t)(id_end - id);

	/* An id a request may have: a valid JSON string or number (not null, true, ...). */
	if (!jsonrpc_text_ok(id, n) || !(*id == '"' ? json_string(id, n) : json_number(id, n))) {
		return NULL;
	}
	if (*id == '"' && lone_surrogate(id, n)) {
		return NULL; /* (its value, as the scan takes it, is not known) */
	}
	*id_len = n;
	return id;
}
