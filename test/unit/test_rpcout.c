/*
 * Unit tests for rpcout and sbuf: error responses, JSON string escaping (checked
 * against a golden table and, exhaustively, against yajl and a strict UTF-8 checker),
 * exit values and signal names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "mcpmux/rpcout.h"

/* A string literal as (pointer, length), so that NUL bytes inside it count. */
#define BYTES(lit) lit, sizeof(lit) - 1

/* ---- fixture: one sbuf per test, released even when the test fails ---- */

static int
sbuf_setup(void **state)
{
	struct sbuf *b = calloc(1, sizeof(*b));

	*state = b;
	return b == NULL ? -1 : 0;
}

static int
sbuf_teardown(void **state)
{
	sbuf_release(*state);
	free(*state);
	return 0;
}

static void
assert_sbuf(const struct sbuf *b, const char *want)
{
	assert_false(b->failed);
	assert_non_null(b->buf);
	assert_int_equal(b->buf[b->len], '\0');
	if (b->len != strlen(want) || memcmp(b->buf, want, b->len) != 0) {
		fail_msg("got %.*s, want %s", (int)b->len, b->buf, want);
	}
}

/* ---- a strict UTF-8 checker (RFC 3629: no overlongs, surrogates, > U+10FFFF) ---- */

static bool
utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		unsigned char lo = 0x80, hi = 0xbf;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3;
			lo = c == 0xe0 ? 0xa0 : 0x80;
			hi = c == 0xed ? 0x9f : 0xbf;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4;
			lo = c == 0xf0 ? 0x90 : 0x80;
			hi = c == 0xf4 ? 0x8f : 0xbf;
		} else {
			return false;
		}
		if (len - i < n || p[i + 1] < lo || p[i + 1] > hi) {
			return false;
		}
		for (size_t k = 2; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80) {
				return false;
			}
		}
		i += n;
	}
	return true;
}

/* ---- decoding a JSON string back with yajl's parser ---- */

struct decoded {
	unsigned char s[4096];
	size_t len;
	int strings;
};

static int
decode_string_cb(void *ctx, const unsigned char *p, size_t len)
{
	struct decoded *d = ctx;

	if (len > sizeof(d->s)) {
		return 0;
	}
	memcpy(d->s, p, len);
	d->len = len;
	d->strings++;
	return 1;
}

static const yajl_callbacks decode_callbacks = {
	.yajl_string = decode_string_cb,
};

/* Parse json, which must be exactly one JSON string; its value into d. */
static bool
decode_json_string(const char *json, size_t len, struct decoded *d)
{
	yajl_handle h = yajl_alloc(&decode_callbacks, NULL, d);
	bool ok;

	assert_non_null(h);
	d->strings = 0;
	ok = yajl_parse(h, (const unsigned char *)json, len) == yajl_status_ok &&
	     yajl_complete_parse(h) == yajl_status_ok && d->strings == 1;
	yajl_free(h);
	return ok;
}

/* Escape into a buffer of exactly the documented worst-case size (ASan checks it). */
static char *
escape_exact(const char *in, size_t len, size_t *out_len)
{
	char *out = malloc(6 * len + 2);

	assert_non_null(out);
	*out_len = rpcout_escape_into(out, in, len);
	assert_true(*out_len <= 6 * len + 2);
	return out;
}

/* ---- rpcout_error ---- */

static void
test_error_ids(void **state)
{
	struct sbuf *b = *state;

	rpcout_error(b, NULL, 0, RPC_PARSE_ERROR, "Parse error");
	assert_sbuf(b, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
		       "\"message\":\"Parse error\"}}");
	sbuf_reset(b);
	rpcout_error(b, "7", 1, RPC_INVALID_REQUEST, "Invalid Request");
	assert_sbuf(b, "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32600,"
		       "\"message\":\"Invalid Request\"}}");
	sbuf_reset(b);
	rpcout_error(b, "\"x\"", 3, RPC_SERVER_ERROR, "server exited");
	assert_sbuf(b, "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"error\":{\"code\":-32000,"
		       "\"message\":\"server exited\"}}");
	sbuf_reset(b);
	/* id_len is honoured: the id is not NUL-terminated */
	rpcout_error(b, "123456", 2, 1, "m");
	assert_sbuf(b, "{\"jsonrpc\":\"2.0\",\"id\":12,\"error\":{\"code\":1,\"message\":\"m\"}}");
	sbuf_reset(b);
	/* the message is escaped */
	rpcout_error(b, "\"a\\\"b\"", 6, RPC_SERVER_ERROR, "bad \"thing\"\n\xff");
	assert_sbuf(b, "{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\",\"error\":{\"code\":-32000,"
		       "\"message\":\"bad \\\"thing\\\"\\n\\ufffd\"}}");
}

/* ---- rpcout_lost_answer ---- */

/* The pieces of rpcout_lost_answer(line) joined, or "" when there are none. */
static const char *
lost_answer(const char *line)
{
	static char out[512];
	struct iovec iov[3];
	int n = rpcout_lost_answer(iov, line, strlen(line));
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	out[len] = '\0';
	return out;
}

static void
test_lost_answer(void **state)
{
	(void)state;
	/* an answer, a result or an error: the error with its id, as written */
	assert_string_equal(lost_answer("{\"jsonrpc\":\"2.0\",\"id\":\"a\\u0062\",\"result\":{}}"),
			    "{\"jsonrpc\":\"2.0\",\"id\":\"a\\u0062\",\"error\":{\"code\":-32000,"
			    "\"message\":\"out of memory: the server's answer was lost\"}}");
	assert_string_equal(lost_answer("{\"error\":{\"code\":1},\"id\":7 ,\"jsonrpc\":\"2.0\"}"),
			    "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32000,"
			    "\"message\":\"out of memory: the server's answer was lost\"}}");
	/* nobody waits: a request, a notification, no id or a null one, a batch */
	assert_string_equal(lost_answer("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\"}"), "");
	assert_string_equal(lost_answer("{\"jsonrpc\":\"2.0\",\"method\":\"m\"}"), "");
	assert_string_equal(lost_answer("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{}}"), "");
	assert_string_equal(lost_answer("{\"jsonrpc\":\"2.0\",\"result\":{}}"), "");
	assert_string_equal(lost_answer("[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]"), "");
}

/* The lines of rpcout_lost_answers(line) with a buffer of cap bytes, each ended by "\n". */
static const char *
lost_answers(const char *line, size_t cap)
{
	static char out[2048];
	char buf[1024];
	struct iovec iov[3];
	size_t len = 0, pos = 0;
	int n, lines = 0;

	assert_true(cap <= sizeof(buf));
	while ((n = rpcout_lost_answers(iov, buf, cap, line, strlen(line), &pos)) > 0) {
		for (int i = 0; i < n; i++) {
			assert_true(len + iov[i].iov_len < sizeof(out) - 1);
			memcpy(out + len, iov[i].iov_base, iov[i].iov_len);
			len += iov[i].iov_len;
		}
		out[len++] = '\n';
		assert_true(++lines < 10);
	}
	out[len] = '\0';
	return out;
}

#define LOST_ERR(id)                                                     \
	"{\"jsonrpc\":\"2.0\",\"id\":" id ",\"error\":{\"code\":-32000," \
	"\"message\":\"out of memory: the server's answer was lost\"}}"

static void
test_lost_answers(void **state)
{
	static const char batch[] =
		" [ {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"a\":[1,\"]\"]}} ,"
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"},"
		"{\"jsonrpc\":\"2.0\",\"id\":\"x,y\",\"error\":{\"code\":1}},"
		"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{}},"
		"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"},"
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":null}]";
	size_t one = strlen("[" LOST_ERR("1") "]");

	(void)state;
	/* one answer: rpcout_lost_answer()'s error, once */
	assert_string_equal(lost_answers("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}", 16),
			    LOST_ERR("7") "\n");
	assert_string_equal(lost_answers("{\"jsonrpc\":\"2.0\",\"method\":\"m\"}", 1024), "");
	/* a batch: one array, an error for each answer with an id, in their order */
	assert_string_equal(lost_answers(batch, 1024),
			    "[" LOST_ERR("1") "," LOST_ERR("\"x,y\"") "," LOST_ERR("3") "]\n");
	/* more than fits in the buffer: more arrays; one too long alone: in pieces */
	assert_string_equal(
		lost_answers(batch, one + 3),
		"[" LOST_ERR("1") "]\n[" LOST_ERR("\"x,y\"") "]\n[" LOST_ERR("3") "]\n");
	assert_string_equal(
		lost_answers(batch, one - 1),
		"[" LOST_ERR("1") "]\n[" LOST_ERR("\"x,y\"") "]\n[" LOST_ERR("3") "]\n");
	assert_string_equal(lost_answers(batch, 2 * one + 4),
			    "[" LOST_ERR("1") "," LOST_ERR("\"x,y\"") "]\n[" LOST_ERR("3") "]\n");
	/* none to answer, or not a batch that ends */
	assert_string_equal(lost_answers("[{\"jsonrpc\":\"2.0\",\"method\":\"m\"}]", 1024), "");
	assert_string_equal(lost_answers("[]", 1024), "");
	assert_string_equal(lost_answers("[{\"jsonrpc\":\"2.0\",\"id\":1,\"res", 1024), "");
}

/* ---- rpcout_oversize ---- */

static void
test_oversize(void **state)
{
	struct rpcout_big m = {
		.answer = true, .id = "7", .id_len = 1, .total = 2000, .limit = 1024
	};
	char text[256];

	(void)state;
	/* an answer: warned, with its id and size */
	assert_int_equal(rpcout_oversize(&m, text, sizeof(text)), RPCOUT_OVERSIZE_ANSWER);
	(void)snprintf(text, sizeof(text), RPCOUT_BIG_ANSWER, RPCOUT_BIG_ARGS_ID(&m),
		       RPCOUT_BIG_ARGS_SIZE(&m));
	assert_string_equal(text, "the client's answer 7 to a request of the server is over "
				  "--max-message (2000 bytes): the server gets an error in its "
				  "place");
	/* a notification: warned, the envelope's size said as such */
	m = (struct rpcout_big){
		.notification = true, .total = 3000, .enveloped = true, .limit = 1024
	};
	assert_int_equal(rpcout_oversize(&m, text, sizeof(text)), RPCOUT_OVERSIZE_NOTIFICATION);
	(void)snprintf(text, sizeof(text), RPCOUT_BIG_NOTIFICATION, RPCOUT_BIG_ARGS_SIZE(&m));
	assert_string_equal(text, "a notification of the client over --max-message (an envelope "
				  "of 3000 bytes) was dropped");
	/* a request, or a message of no known kind: the client's error, with the limit */
	m = (struct rpcout_big){ .id = "\"a\"", .id_len = 3, .total = 2000, .limit = 1024 };
	assert_int_equal(rpcout_oversize(&m, text, sizeof(text)), RPCOUT_OVERSIZE_REQUEST);
	assert_string_equal(text, "Invalid Request: message too large (2000 bytes, the limit is "
				  "1024: see --max-message)");
	assert_int_equal(rpcout_oversize(&m, text, 10), RPCOUT_OVERSIZE_REQUEST);
	assert_string_equal(text, "Invalid R");
	assert_int_equal(RPCOUT_BIG_CODE(&m), RPC_INVALID_REQUEST);
	/* within the bound, not held for want of memory: said so, not too large */
	m.no_memory = true;
	assert_int_equal(rpcout_oversize(&m, text, sizeof(text)), RPCOUT_OVERSIZE_REQUEST);
	assert_string_equal(text, "out of memory: the client's message (2000 bytes) could not be "
				  "held");
	assert_int_equal(RPCOUT_BIG_CODE(&m), RPC_SERVER_ERROR);
	m.answer = true;
	(void)snprintf(text, sizeof(text), RPCOUT_BIG_ANSWER, RPCOUT_BIG_ARGS_ID(&m),
		       RPCOUT_BIG_ARGS_SIZE(&m));
	assert_string_equal(text, "the client's answer \"a\" to a request of the server is that "
				  "mcpmux had no memory to hold (2000 bytes): the server gets an "
				  "error in its place");
	struct sbuf b = { 0 };

	rpcout_answer_too_large(&b, &m);
	assert_false(b.failed);
	assert_non_null(strstr(b.buf, "out of memory: the client's answer (2000 bytes)"));
	sbuf_release(&b);
	/* a long id is cut at 100 bytes in the warning, and "..." says so */
	m = (struct rpcout_big){
		.answer = true,
		.id = "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		      "xxxxxx\"",
		.id_len = 128,
		.total = 1,
		.limit = 1
	};
	(void)snprintf(text, sizeof(text), RPCOUT_BIG_ANSWER, RPCOUT_BIG_ARGS_ID(&m),
		       RPCOUT_BIG_ARGS_SIZE(&m));
	assert_non_null(strstr(text, "answer \"xxx"));
	assert_null(strstr(text, "x\" to a request"));
	assert_non_null(strstr(text, "x... to a request"));
	/* no id (null, or none) is said null, not as an empty id */
	m = (struct rpcout_big){ .answer = true, .total = 1, .limit = 1 };
	(void)snprintf(text, sizeof(text), RPCOUT_BIG_STRAY, RPCOUT_BIG_ARGS_ID(&m),
		       RPCOUT_BIG_ARGS_SIZE(&m));
	assert_non_null(strstr(text, "the client's answer null is over --max-message"));
	/* one too long to be kept by its first bytes, cut at no character's middle */
	m.id_head = "\"ab\xc3\xa9";
	m.id_head_len = 4;
	(void)snprintf(text, sizeof(text), RPCOUT_BIG_STRAY, RPCOUT_BIG_ARGS_ID(&m),
		       RPCOUT_BIG_ARGS_SIZE(&m));
	assert_non_null(strstr(text, "the client's answer \"ab... is over --max-message"));
}

static const char *
string_of(yajl_val v)
{
	return YAJL_IS_STRING(v) ? v->u.string : "";
}

/* Each error response is a JSON object with the right members (yajl_tree). */
static void
test_error_parses(void **state)
{
	static const char *const ids[] = { NULL, "7", "\"x\"", "-1.5e3", "\"\\u0001\"" };
	const char *paths_id[] = { "id", NULL };
	const char *paths_code[] = { "error", "code", NULL };
	const char *paths_msg[] = { "error", "message", NULL };
	const char *paths_ver[] = { "jsonrpc", NULL };
	struct sbuf *b = *state;
	char err[256];

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		sbuf_reset(b);
		rpcout_error(b, ids[i], ids[i] ? strlen(ids[i]) : 0, -32601, "no \"such\"\tmethod");
		assert_false(b->failed);
		yajl_val doc = yajl_tree_parse(b->buf, err, sizeof(err));

		if (doc == NULL) {
			fail_msg("%s does not parse: %s", b->buf, err);
		}
		yajl_val id = yajl_tree_get(doc, paths_id, yajl_t_any);
		yajl_val code = yajl_tree_get(doc, paths_code, yajl_t_number);
		yajl_val msg = yajl_tree_get(doc, paths_msg, yajl_t_string);
		yajl_val ver = yajl_tree_get(doc, paths_ver, yajl_t_string);
		bool ok = id != NULL && code != NULL && msg != NULL && ver != NULL &&
			  YAJL_GET_INTEGER(code) == -32601 &&
			  strcmp(string_of(msg), "no \"such\"\tmethod") == 0 &&
			  strcmp(string_of(ver), "2.0") == 0 &&
			  (ids[i] != NULL || YAJL_IS_NULL(id));

		yajl_tree_free(doc);
		if (!ok) {
			fail_msg("%s: wrong members", b->buf);
		}
	}
}

/* ---- escaping: golden table ---- */

struct escape_case {
	const char *in;
	size_t in_len;
	const char *out; /* the JSON text, quotes included */
};

static const struct escape_case escapes[] = {
	{ BYTES(""), "\"\"" },
	{ BYTES("plain text / slash"), "\"plain text / slash\"" },
	{ BYTES("a\"b\\c"), "\"a\\\"b\\\\c\"" },
	{ BYTES("\n\t\r"), "\"\\n\\t\\r\"" },
	{ BYTES("\x01\x1f\b\f"), "\"\\u0001\\u001f\\u0008\\u000c\"" },
	{ BYTES("\0"), "\"\\u0000\"" },
	{ BYTES("a\0b"), "\"a\\u0000b\"" },
	{ BYTES("\x7f"), "\"\\u007f\"" },
	{ BYTES(" ~"), "\" ~\"" },
	/* valid UTF-8 is kept as it is */
	{ BYTES("\xc2\x80"), "\"\xc2\x80\"" },		       /* U+0080 */
	{ BYTES("caf\xc3\xa9"), "\"caf\xc3\xa9\"" },	       /* 2 bytes */
	{ BYTES("\xdf\xbf"), "\"\xdf\xbf\"" },		       /* U+07FF */
	{ BYTES("\xe0\xa0\x80"), "\"\xe0\xa0\x80\"" },	       /* U+0800 */
	{ BYTES("\xe2\x82\xac"), "\"\xe2\x82\xac\"" },	       /* euro, 3 bytes */
	{ BYTES("\xed\x9f\xbf"), "\"\xed\x9f\xbf\"" },	       /* U+D7FF */
	{ BYTES("\xee\x80\x80"), "\"\xee\x80\x80\"" },	       /* U+E000 */
	{ BYTES("\xef\xbf\xbf"), "\"\xef\xbf\xbf\"" },	       /* U+FFFF */
	{ BYTES("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"" }, /* emoji, 4 bytes */
	{ BYTES("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"" }, /* U+10FFFF */
	/* invalid UTF-8: each byte that starts no valid sequence becomes U+FFFD */
	{ BYTES("\xff"), "\"\\ufffd\"" },
	{ BYTES("a\xff"
		"b"),
	  "\"a\\ufffdb\"" },
	{ BYTES("\x80"), "\"\\ufffd\"" }, /* lone continuation */
	{ BYTES("\xc2"), "\"\\ufffd\"" }, /* truncated at the end */
	{ BYTES("\xc2"
		"A"),
	  "\"\\ufffdA\"" },						   /* truncated by ASCII */
	{ BYTES("\xe2\x82"), "\"\\ufffd\\ufffd\"" },			   /* truncated 3-byte */
	{ BYTES("\xf0\x9f\x98"), "\"\\ufffd\\ufffd\\ufffd\"" },		   /* truncated 4-byte */
	{ BYTES("\xc0\xaf"), "\"\\ufffd\\ufffd\"" },			   /* overlong '/' */
	{ BYTES("\xc1\xbf"), "\"\\ufffd\\ufffd\"" },			   /* overlong */
	{ BYTES("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"" },		   /* overlong, 3 bytes */
	{ BYTES("\xf0\x80\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* overlong, 4 bytes */
	{ BYTES("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"" },		   /* surrogate D800 */
	{ BYTES("\xed\xbf\xbf"), "\"\\ufffd\\ufffd\\ufffd\"" },		   /* surrogate DFFF */
	{ BYTES("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* U+110000 */
	{ BYTES("\xf5\x80\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" },
	{ BYTES("\xfe\xff"), "\"\\ufffd\\ufffd\"" },
	{ BYTES("ok\xe2\x82\xac\xe2\x82ok"), "\"ok\xe2\x82\xac\\ufffd\\ufffdok\"" },
};

/* An unfinished character at the end of a cut, and only that, is counted. */
static void
test_utf8_tail(void **state)
{
	static const struct {
		const char *p;
		size_t tail;
	} rows[] = {
		{ "", 0 },
		{ "abc", 0 },
		{ "a\xc3", 1 },		/* é cut after its first byte */
		{ "a\xc3\xa9", 0 },	/* é whole */
		{ "\xe2\x82", 2 },	/* € cut after two of three */
		{ "\xe2\x82\xac", 0 },	/* € whole */
		{ "x\xf0\x9f\x98", 3 }, /* a 4-byte emoji cut after three */
		{ "x\xf0\x9f\x98\x80", 0 },
		{ "\x80\x80", 0 }, /* stray continuation bytes: nothing to keep */
		{ "\x80\x80\x80\x80", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t got = rpcout_utf8_tail(rows[i].p, strlen(rows[i].p));

		if (got != rows[i].tail) {
			fail_msg("row %zu: %zu, want %zu", i, got, rows[i].tail);
		}
	}
}

static void
test_escape_golden(void **state)
{
	struct sbuf *b = *state;

	for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++) {
		const struct escape_case *c = &escapes[i];
		size_t len;
		char *out = escape_exact(c->in, c->in_len, &len);
		bool same = len == strlen(c->out) && memcmp(out, c->out, len) == 0;

		if (!same) {
			print_error("case %zu: got %.*s, want %s\n", i, (int)len, out, c->out);
			free(out);
			fail();
		}
		free(out);

		/* sbuf_add_json_string appends the same text */
		sbuf_reset(b);
		sbuf_adds(b, "<");
		sbuf_add_json_string(b, c->in, c->in_len);
		sbuf_adds(b, ">");
		assert_false(b->failed);
		assert_int_equal(b->len, strlen(c->out) + 2);
		assert_memory_equal(b->buf + 1, c->out, strlen(c->out));
		assert_int_equal(b->buf[b->len], '\0');
	}
}

/* Every golden output is a JSON string; valid inputs decode back to themselves. */
static void
test_escape_golden_parses(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++) {
		const struct escape_case *c = &escapes[i];
		struct decoded d;
		size_t len;
		char *out = escape_exact(c->in, c->in_len, &len);
		bool parsed = decode_json_string(out, len, &d);

		free(out);
		if (!parsed) {
			fail_msg("case %zu: %s is not a JSON string", i, c->out);
		}
		if (utf8_valid((const unsigned char *)c->in, c->in_len)) {
			assert_int_equal(d.len, c->in_len);
			assert_memory_equal(d.s, c->in, c->in_len);
		}
	}
}

/* The worst case, 6 bytes per input byte, fits the documented bound exactly. */
static void
test_escape_worst_case_bound(void **state)
{
	char in[100];
	size_t len;

	(void)state;
	memset(in, 0x01, sizeof(in));
	char *out = escape_exact(in, sizeof(in), &len);

	assert_int_equal(len, 6 * sizeof(in) + 2);
	free(out);
	memset(in, 0xff, sizeof(in));
	out = escape_exact(in, sizeof(in), &len);
	assert_int_equal(len, 6 * sizeof(in) + 2);
	free(out);
}

/*
 * Property, on every 1- and 2-byte input and on many pseudo-random short inputs: the
 * output is a JSON string of valid UTF-8, and valid UTF-8 input decodes back to itself.
 */
static void
check_escape_property(const unsigned char *in, size_t n)
{
	struct decoded d;
	size_t len;
	char *out = escape_exact((const char *)in, n, &len);
	bool valid_out = utf8_valid((const unsigned char *)out, len);
	bool parsed = decode_json_string(out, len, &d);

	free(out);
	if (!valid_out || !parsed) {
		fail_msg("input of %zu bytes starting %02x: output %s", n, n ? in[0] : 0,
			 valid_out ? "not a JSON string" : "not valid UTF-8");
	}
	if (utf8_valid(in, n) && (d.len != n || memcmp(d.s, in, n) != 0)) {
		fail_msg("valid input of %zu bytes starting %02x does not round-trip", n,
			 n ? in[0] : 0);
	}
}

static void
test_escape_exhaustive(void **state)
{
	static const unsigned char alphabet[] = { 0x00, 0x01, 0x0a, 0x1f, 0x20, '"',  '\\',
						  'a',	0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
						  0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1,
						  0xed, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff };
	unsigned char in[8];
	uint32_t lcg = 2024;

	(void)state;
	for (unsigned a = 0; a < 256; a++) {
		in[0] = (unsigned char)a;
		check_escape_property(in, 1);
		for (unsigned b = 0; b < 256; b++) {
			in[1] = (unsigned char)b;
			check_escape_property(in, 2);
		}
	}
	for (int i = 0; i < 100000; i++) {
		size_t n;

		lcg = lcg * 1103515245u + 12345u;
		n = 3 + (lcg >> 16) % 6;
		for (size_t k = 0; k < n; k++) {
			lcg = lcg * 1103515245u + 12345u;
			in[k] = alphabet[(lcg >> 16) % sizeof(alphabet)];
		}
		check_escape_property(in, n);
	}
}

/* ---- exit values and signal names ---- */

static void
check_exit(struct sbuf *b, int wstatus, const char *want)
{
	sbuf_reset(b);
	rpcout_exit(b, wstatus);
	assert_sbuf(b, want);
}

static void
test_exit_from_status(void **state)
{
	struct sbuf *b = *state;

	check_exit(b, W_EXITCODE(0, 0), "{\"code\":0}");
	check_exit(b, W_EXITCODE(3, 0), "{\"code\":3}");
	check_exit(b, W_EXITCODE(255, 0), "{\"code\":255}");
	check_exit(b, W_EXITCODE(0, SIGKILL), "{\"signal\":\"SIGKILL\"}");
	check_exit(b, W_EXITCODE(0, SIGTERM), "{\"signal\":\"SIGTERM\"}");
	check_exit(b, W_EXITCODE(0, SIGSEGV) | WCOREFLAG, "{\"signal\":\"SIGSEGV\"}");
	check_exit(b, -1, "null");
}

/* Fork a child that runs fn; its wait status. */
static int
child_status(void (*fn)(void))
{
	int st = 0;
	pid_t pid = fork();

	assert_true(pid != -1);
	if (pid == 0) {
		fn();
		_exit(99);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static void
exit_3(void)
{
	_exit(3);
}

static void
die_by_sigkill(void)
{
	(void)raise(SIGKILL);
}

static void
test_exit_from_real_children(void **state)
{
	struct sbuf *b = *state;

	check_exit(b, child_status(exit_3), "{\"code\":3}");
	check_exit(b, child_status(die_by_sigkill), "{\"signal\":\"SIGKILL\"}");
}

static void
test_signame(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(rpcout_signame(SIGTERM, buf, sizeof(buf)), "SIGTERM");
	assert_string_equal(rpcout_signame(SIGKILL, buf, sizeof(buf)), "SIGKILL");
	assert_string_equal(rpcout_signame(SIGHUP, buf, sizeof(buf)), "SIGHUP");
	assert_string_equal(rpcout_signame(SIGPIPE, buf, sizeof(buf)), "SIGPIPE");
	assert_string_equal(rpcout_signame(SIGCHLD, buf, sizeof(buf)), "SIGCHLD");
	assert_string_equal(rpcout_signame(200, buf, sizeof(buf)), "SIG200");
	assert_true(rpcout_signame(SIGTERM, buf, sizeof(buf)) == buf);
	/* truncated, still terminated */
	assert_string_equal(rpcout_signame(SIGTERM, buf, 5), "SIGT");
}

/* ---- sbuf ---- */

static void
test_sbuf_basics(void **state)
{
	struct sbuf *b = *state;

	sbuf_add(b, "ab", 2);
	sbuf_adds(b, "cd");
	sbuf_addf(b, "[%d:%s]", 42, "x");
	sbuf_add(b, "", 0);
	assert_sbuf(b, "abcd[42:x]");

	/* growth across many appends keeps every byte */
	sbuf_reset(b);
	for (int i = 0; i < 10000; i++) {
		sbuf_addf(b, "%04d,", i);
	}
	assert_false(b->failed);
	assert_int_equal(b->len, 50000);
	assert_memory_equal(b->buf, "0000,0001,", 10);
	assert_memory_equal(b->buf + 49995, "9999,", 5);
	assert_int_equal(b->buf[b->len], '\0');
}

/* A format that is cut short where it does not fit is formatted again, whole. */
static void
test_sbuf_addf_at_the_edge(void **state)
{
	struct sbuf *b = *state;
	char want[600];

	for (size_t pre = 240; pre < 260; pre++) {
		sbuf_reset(b);
		memset(want, 'a', pre);
		sbuf_add(b, want, pre);
		sbuf_addf(b, "<%s|%d>", "0123456789", 12345);
		(void)snprintf(want + pre, sizeof(want) - pre, "<%s|%d>", "0123456789", 12345);
		assert_int_equal(b->len, strlen(want));
		assert_memory_equal(b->buf, want, b->len + 1);
	}
}

/* The printf-free number writers agree with printf. */
static void
test_sbuf_numbers(void **state)
{
	struct sbuf *b = *state;
	char want[64];
	static const unsigned long long ints[] = { 0, 1, 9, 10, 99, 4242, 18446744073709551615ULL };
	static const double millis[] = {
		0,	    0.0004,	    0.0005,	     0.25, 1,	41.7, 999.9996,
		123456.789, 1733350000.123, 1733350000.9999, -1.5, 1e20
	};

	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		sbuf_reset(b);
		sbuf_add_uint(b, ints[i], 1);
		(void)snprintf(want, sizeof(want), "%llu", ints[i]);
		assert_sbuf(b, want);
		sbuf_reset(b);
		sbuf_add_uint(b, ints[i] % 1000000, 6);
		(void)snprintf(want, sizeof(want), "%06llu", ints[i] % 1000000);
		assert_sbuf(b, want);
	}
	for (size_t i = 0; i < sizeof(millis) / sizeof(millis[0]); i++) {
		sbuf_reset(b);
		sbuf_add_milli(b, millis[i]);
		(void)snprintf(want, sizeof(want), "%.3f", millis[i]);
		assert_sbuf(b, want);
	}
}

static void
test_sbuf_reset_keeps_small_memory(void **state)
{
	struct sbuf *b = *state;
	char big[SBUF_KEEP * 2];

	sbuf_adds(b, "small");
	char *kept = b->buf;

	sbuf_reset(b);
	assert_int_equal(b->len, 0);
	assert_true(b->buf == kept); /* small buffer kept for reuse */
	assert_true(b->cap <= SBUF_KEEP);

	memset(big, 'z', sizeof(big));
	sbuf_add(b, big, sizeof(big));
	assert_true(b->cap > SBUF_KEEP);
	sbuf_reset(b);
	assert_int_equal(b->len, 0);
	assert_null(b->buf); /* a big buffer is given back */
	assert_int_equal(b->cap, 0);
	assert_false(b->failed);
	sbuf_adds(b, "again");
	assert_sbuf(b, "again");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_error_ids, sbuf_setup, sbuf_teardown),
		cmocka_unit_test_setup_teardown(test_error_parses, sbuf_setup, sbuf_teardown),
		cmocka_unit_test_setup_teardown(test_escape_golden, sbuf_setup, sbuf_teardown),
		cmocka_unit_test(test_utf8_tail),
		cmocka_unit_test(test_escape_golden_parses),
		cmocka_unit_test(test_escape_worst_case_bound),
		cmocka_unit_test(test_escape_exhaustive),
		cmocka_unit_test_setup_teardown(test_exit_from_status, sbuf_setup, sbuf_teardown),
		cmocka_unit_test_setup_teardown(test_exit_from_real_children, sbuf_setup,
						sbuf_teardown),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_lost_answer),
		cmocka_unit_test(test_lost_answers),
		cmocka_unit_test(test_signame),
		cmocka_unit_test_setup_teardown(test_sbuf_basics, sbuf_setup, sbuf_teardown),
		cmocka_unit_test_setup_teardown(test_sbuf_addf_at_the_edge, sbuf_setup,
						sbuf_teardown),
		cmocka_unit_test_setup_teardown(test_sbuf_numbers, sbuf_setup, sbuf_teardown),
		cmocka_unit_test_setup_teardown(test_sbuf_reset_keeps_small_memory, sbuf_setup,
						sbuf_teardown),
	};

	return cmocka_run_group_tests_name("rpcout", tests, NULL, NULL);
}
