/*
 * Unit tests for jsonrpc: jsonrpc_scan() on a golden table, batches, nesting limits,
 * recovery after invalid lines, params pick-up, a batch less its answers
 * (jsonrpc_without_answers()), and jsonrpc_idscan and envelope_bigscan on pieces.
 *
 * To keep the JSON readable, lines and ids in the tables write ' for " (see q()); a
 * literal quote inside a JSON string is then written \' (that is, \" after q()).
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

#include "mcpmux/envelope.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/jsonsimd.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"

#include "quote.h"

/* Does the slice hold exactly `want` (NULL: the slice must be absent)? */
static void
assert_str(const struct jsonrpc_scanner *s, bool has, struct jsonrpc_str str, const char *want,
	   const char *what, const char *line)
{
	if (want == NULL) {
		if (has) {
			fail_msg("%s: unexpected %s %.*s", line, what, (int)str.len,
				 jsonrpc_str(s, str));
		}
		return;
	}
	char w[512];

	q(w, sizeof(w), want);
	if (!has || str.len != strlen(w) || memcmp(jsonrpc_str(s, str), w, str.len) != 0) {
		fail_msg("%s: %s is %.*s, want %s", line, what, has ? (int)str.len : 6,
			 has ? jsonrpc_str(s, str) : "(none)", w);
	}
}

static void
assert_item(const struct jsonrpc_scanner *s, const struct jsonrpc_item *it, enum jsonrpc_kind kind,
	    const char *id, const char *method, const char *line)
{
	if (it->kind != kind) {
		fail_msg("%s: kind %s (%d), want %s (%d)", line, jsonrpc_kind_name(it->kind),
			 (int)it->kind, jsonrpc_kind_name(kind), (int)kind);
	}
	assert_str(s, it->has_id, it->id, id, "id", line);
	assert_str(s, it->has_method, it->method, method, "method", line);
}

/* ---- golden table ---- */

struct scan_case {
	const char *line;
	enum jsonrpc_kind kind;
	bool top_container;
	const char *id;	    /* canonical id text (with ' for "), NULL: none */
	const char *method; /* NULL: none */
};

static const struct scan_case golden[] = {
	/* valid messages */
	{ "{'jsonrpc':'2.0','id':1,'method':'tools/list'}", JSONRPC_REQUEST, true, "1",
	  "tools/list" },
	{ "{'method':'tools/call','params':{'name':'x','arguments':{'id':[9]}},'id':'abc',"
	  "'jsonrpc':'2.0'}",
	  JSONRPC_REQUEST, true, "'abc'", "tools/call" },
	{ "{'jsonrpc':'2.0','method':'notifications/initialized'}", JSONRPC_NOTIFICATION, true,
	  NULL, "notifications/initialized" },
	{ "{'jsonrpc':'2.0','method':'n','params':[1,2]}", JSONRPC_NOTIFICATION, true, NULL, "n" },
	{ "  {'jsonrpc' : '2.0' , 'method' : 'spaced'}  ", JSONRPC_NOTIFICATION, true, NULL,
	  "spaced" },
	{ "{'jsonrpc':'2.0','id':2,'result':{'tools':[],'id':5,'method':'x'}}", JSONRPC_RESPONSE,
	  true, "2", NULL },
	{ "{'jsonrpc':'2.0','id':'r','result':null}", JSONRPC_RESPONSE, true, "'r'", NULL },
	{ "{'jsonrpc':'2.0','id':3,'error':{'code':-32601,'message':'nope'}}", JSONRPC_ERROR, true,
	  "3", NULL },
	{ "{'jsonrpc':'2.0','id':null,'error':{'code':-32700,'message':'Parse error'}}",
	  JSONRPC_ERROR, true, "null", NULL },
	{ "{'jsonrpc':'2.0','method':'m','extra':{'id':9,'method':'z'}}", JSONRPC_NOTIFICATION,
	  true, NULL, "m" },
	/* ids: strings re-escaped canonically, numbers as their raw text */
	{ "{'jsonrpc':'2.0','id':'\\u0041','method':'m'}", JSONRPC_REQUEST, true, "'A'", "m" },
	{ "{'jsonrpc':'2.0','id':'a\\'b\\\\c\\/d\\n','method':'m'}", JSONRPC_REQUEST, true,
	  "'a\\'b\\\\c/d\\n'", "m" },
	{ "{'jsonrpc':'2.0','id':'\\u0001\\u00e9\\ud83d\\ude00','method':'m'}", JSONRPC_REQUEST,
	  true, "'\\u0001\xc3\xa9\xf0\x9f\x98\x80'", "m" },
	{ "{'jsonrpc':'2.0','id':'','method':'m'}", JSONRPC_REQUEST, true, "''", "m" },
	{ "{'jsonrpc':'2.0','id':1.5e3,'method':'m'}", JSONRPC_REQUEST, true, "1.5e3", "m" },
	{ "{'jsonrpc':'2.0','id':-7,'result':0}", JSONRPC_RESPONSE, true, "-7", NULL },
	{ "{'jsonrpc':'2.0','id':12345678901234567890123,'result':0}", JSONRPC_RESPONSE, true,
	  "12345678901234567890123", NULL },
	{ "{'jsonrpc':'2.0','id':1E+2,'result':0}", JSONRPC_RESPONSE, true, "1E+2", NULL },
	{ "{'jsonrpc':'2.0','method':'m\\u00e9\\t'}", JSONRPC_NOTIFICATION, true, NULL,
	  "m\xc3\xa9\t" },
	/* JSON, but not JSON-RPC 2.0 */
	{ "{'jsonrpc':'2.0','id':null,'method':'m'}", JSONRPC_INVALID_REQUEST, true, "null", "m" },
	{ "{'jsonrpc':'2.0','method':'m','id':null}", JSONRPC_INVALID_REQUEST, true, "null", "m" },
	{ "{'jsonrpc':'2.0','id':true,'method':'m'}", JSONRPC_INVALID_REQUEST, true, NULL, "m" },
	{ "{'jsonrpc':'2.0','id':{'a':1},'method':'m'}", JSONRPC_INVALID_REQUEST, true, NULL, "m" },
	{ "{'jsonrpc':'2.0','id':[1],'result':1}", JSONRPC_INVALID_REQUEST, true, NULL, NULL },
	{ "{'id':1,'method':'m'}", JSONRPC_INVALID_REQUEST, true, "1", "m" },
	{ "{'jsonrpc':'1.0','id':1,'method':'m'}", JSONRPC_INVALID_REQUEST, true, "1", "m" },
	{ "{'jsonrpc':2.0,'id':1,'method':'m'}", JSONRPC_INVALID_REQUEST, true, "1", "m" },
	{ "{'jsonrpc':'2.0','id':1,'method':5}", JSONRPC_INVALID_REQUEST, true, "1", NULL },
	{ "{'jsonrpc':'2.0','id':1,'method':null}", JSONRPC_INVALID_REQUEST, true, "1", NULL },
	{ "{'jsonrpc':'2.0','id':1,'result':1,'error':{'code':1,'message':'m'}}",
	  JSONRPC_INVALID_REQUEST, true, "1", NULL },
	{ "{'jsonrpc':'2.0','result':1}", JSONRPC_INVALID_REQUEST, true, NULL, NULL },
	{ "{'jsonrpc':'2.0','id':1}", JSONRPC_INVALID_REQUEST, true, "1", NULL },
	{ "{'jsonrpc':'2.0','id':1,'error':'bad'}", JSONRPC_INVALID_REQUEST, true, "1", NULL },
	{ "{'jsonrpc':'2.0','id':1,'method':'m','result':1}", JSONRPC_INVALID_REQUEST, true, "1",
	  "m" },
	{ "{'jsonrpc':'2.0','method':'m','params':5}", JSONRPC_INVALID_REQUEST, true, NULL, "m" },
	{ "{'jsonrpc':'2.0','method':'m','params':'s'}", JSONRPC_INVALID_REQUEST, true, NULL, "m" },
	{ "{'jsonrpc':'2.0','method':'m','params':null}", JSONRPC_INVALID_REQUEST, true, NULL,
	  "m" },
	{ "{}", JSONRPC_INVALID_REQUEST, true, NULL, NULL },
	{ "[]", JSONRPC_INVALID_REQUEST, true, NULL, NULL },
	{ "42", JSONRPC_INVALID_REQUEST, false, NULL, NULL },
	{ "'str'", JSONRPC_INVALID_REQUEST, false, NULL, NULL },
	{ "null", JSONRPC_INVALID_REQUEST, false, NULL, NULL },
	{ "true", JSONRPC_INVALID_REQUEST, false, NULL, NULL },
	/* not JSON */
	{ "not json", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "   ", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{} {}", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "1 2", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{'jsonrpc':'2.0','method':'m'} x", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{'jsonrpc':'2.0','method':'m'},", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{'jsonrpc':'2.0'", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{'jsonrpc':'2.0','method':'m\xff'}", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{'jsonrpc':'2.0','method':'m','id':1,}", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{'jsonrpc':'2.0','method':'m','id':01}", JSONRPC_INVALID_JSON, false, NULL, NULL },
	{ "{jsonrpc:'2.0'}", JSONRPC_INVALID_JSON, false, NULL, NULL },
};

static void
check_scan(struct jsonrpc_scanner *s, const struct scan_case *c)
{
	char line[512];
	enum jsonrpc_kind kind;

	q(line, sizeof(line), c->line);
	kind = jsonrpc_scan(s, line, strlen(line));

	if (kind != c->kind || s->kind != c->kind) {
		fail_msg("%s: kind %d (%s), want %d", line, (int)kind, s->error ? s->error : "",
			 (int)c->kind);
	}
	if (c->kind == JSONRPC_INVALID_JSON) {
		assert_non_null(s->error);
		return;
	}
	if (c->kind == JSONRPC_INVALID_REQUEST) {
		assert_non_null(s->error);
	} else {
		assert_null(s->error);
	}
	if (s->top_container != c->top_container) {
		fail_msg("%s: top_container %d", line, (int)s->top_container);
	}
	if (line[strspn(line, " ")] == '{') {
		assert_item(s, &s->one, c->kind, c->id, c->method, line);
	}
}

/* ---- fixtures: every test gets a fresh scanner, released even when it fails ---- */

static int
scanner_setup(void **state)
{
	struct jsonrpc_scanner *s = malloc(sizeof(*s));

	if (s == NULL) {
		return -1;
	}
	jsonrpc_init(s);
	*state = s;
	return 0;
}

static int
scanner_teardown(void **state)
{
	jsonrpc_release(*state);
	free(*state);
	return 0;
}

/* Scan a line written with ' for ", into the buffer line. */
static enum jsonrpc_kind
scan_q(struct jsonrpc_scanner *s, char *line, size_t cap, const char *text)
{
	q(line, cap, text);
	return jsonrpc_scan(s, line, strlen(line));
}

/* One scanner for the whole table: valid and invalid lines alternate. */
static void
test_golden_one_scanner(void **state)
{
	for (size_t i = 0; i < sizeof(golden) / sizeof(golden[0]); i++) {
		check_scan(*state, &golden[i]);
	}
}

/* The same in reverse order, each line twice in a row. */
static void
test_golden_reverse_twice(void **state)
{
	for (size_t i = sizeof(golden) / sizeof(golden[0]); i-- > 0;) {
		check_scan(*state, &golden[i]);
		check_scan(*state, &golden[i]);
	}
}

/*
 * The simdjson path takes what it can give exactly as yajl would, and leaves the rest to
 * yajl: each line gets the same results from a scanner that uses yajl alone, and is
 * judged on the path expected.
 */
static void
test_simd_or_yajl(void **state)
{
	static const struct {
		const char *line;
		const char *params_method;
		bool by_simd;
		enum jsonrpc_kind kind;
		const char *id;
	} cases[] = {
		{ "{'jsonrpc':'2.0','id':1,'method':'ping'}", NULL, true, JSONRPC_REQUEST, "1" },
		{ "{'jsonrpc':'2.0','id':'a\\u00e9','method':'p'}", NULL, true, JSONRPC_REQUEST,
		  "'a\xc3\xa9'" },
		{ "{'jsonrpc':'2.0','id':-12,'result':{'x':1.5}}", NULL, true, JSONRPC_RESPONSE,
		  "-12" },
		{ "{'jsonrpc':'2.0','id':18446744073709551615,'result':1}", NULL, true,
		  JSONRPC_RESPONSE, "18446744073709551615" },
		{ "{'jsonrpc':'2.0','id':0,'method':'m'}", NULL, true, JSONRPC_REQUEST, "0" },
		/* simdjson reads -0 as 0, and keeps no text of a fraction or exponent */
		{ "{'jsonrpc':'2.0','id':-0,'method':'m'}", NULL, false, JSONRPC_REQUEST, "-0" },
		{ "{'jsonrpc':'2.0','id':1.50,'method':'m'}", NULL, false, JSONRPC_REQUEST,
		  "1.50" },
		{ "{'jsonrpc':'2.0','id':2E0,'method':'m'}", NULL, false, JSONRPC_REQUEST, "2E0" },
		/* ... unless nothing reads it: params of another method are not looked into */
		{ "{'jsonrpc':'2.0','method':'m','params':{'graceMs':1.5}}", NULL, false,
		  JSONRPC_NOTIFICATION, NULL },
		{ "{'jsonrpc':'2.0','method':'m','params':{'graceMs':1.5}}", "x", true,
		  JSONRPC_NOTIFICATION, NULL },
		/* what simdjson refuses, yajl judges: out-of-range numbers are JSON */
		{ "{'jsonrpc':'2.0','id':1e400,'method':'m'}", NULL, false, JSONRPC_REQUEST,
		  "1e400" },
		{ "{'jsonrpc':'2.0','id':18446744073709551616,'method':'m'}", NULL, false,
		  JSONRPC_REQUEST, "18446744073709551616" },
		{ "{'jsonrpc':'2.0','id':1,'method':'m',}", NULL, false, JSONRPC_INVALID_JSON,
		  NULL },
		{ "[{'jsonrpc':'2.0','method':'m'},{'jsonrpc':'2.0','id':'b','result':null}]", NULL,
		  true, JSONRPC_BATCH, NULL },
		{ " 7 ", NULL, true, JSONRPC_INVALID_REQUEST, NULL },
		/* a 0 is read as 0 when no "-0" is anywhere in the line (looked up once) */
		{ "[0,0,0,{'jsonrpc':'2.0','id':0,'result':0}]", NULL, true, JSONRPC_BATCH, NULL },
		{ "{'jsonrpc':'2.0','id':0,'method':'m','params':{'x':'-0'}}", NULL, false,
		  JSONRPC_REQUEST, "0" },
	};
	struct jsonrpc_scanner *s = *state, y;
	char line[512];

	jsonrpc_init(&y);
	y.yajl_only = true;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s->params_method = y.params_method = cases[i].params_method;
		q(line, sizeof(line), cases[i].line);
		enum jsonrpc_kind kind = jsonrpc_scan(s, line, strlen(line));

		if (kind != cases[i].kind || s->by_simd != cases[i].by_simd) {
			fail_msg("%s: kind %d, by_simd %d", line, (int)kind, (int)s->by_simd);
		}
		assert_int_equal(jsonrpc_scan(&y, line, strlen(line)), kind);
		assert_false(y.by_simd);
		if (kind != JSONRPC_BATCH && kind != JSONRPC_INVALID_JSON) {
			assert_str(s, s->one.has_id, s->one.id, cases[i].id, "id", line);
			assert_str(&y, y.one.has_id, y.one.id, cases[i].id, "id (yajl)", line);
			assert_int_equal(s->params.has_grace_ms, y.params.has_grace_ms);
		}
	}
	/* Past JSONSIMD_MAX_LEN, yajl alone. */
	size_t n = JSONSIMD_MAX_LEN + 1;
	char *big = malloc(n);

	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "{\"jsonrpc\":\"2.0\",\"method\":\"m\"}", 30);
	assert_int_equal(jsonrpc_scan(s, big, n), JSONRPC_NOTIFICATION);
	assert_false(s->by_simd);
	assert_int_equal(jsonrpc_scan(s, big, n - 1), JSONRPC_NOTIFICATION);
	assert_true(s->by_simd);
	free(big);
	jsonrpc_release(&y);
	s->params_method = NULL;
}

/*
 * simdjson's buffers grown for a long line are given back by jsonrpc_trim(), and made
 * again at the next scan; a scanner released before the trim is off the trim's list.
 */
static void
test_simd_trim(void **state)
{
	struct jsonrpc_scanner *s = *state, gone;
	size_t n = 20 << 10;
	char *line = malloc(n);

	assert_non_null(line);
	memset(line, ' ', n);
	memcpy(line, "{\"jsonrpc\":\"2.0\",\"method\":\"m\"}", 30);
	assert_int_equal(jsonrpc_scan(s, line, 30), JSONRPC_NOTIFICATION);
	assert_true(s->by_simd);
	assert_false(s->big); /* a short line: kept */

	jsonrpc_init(&gone);
	assert_int_equal(jsonrpc_scan(&gone, line, n), JSONRPC_NOTIFICATION);
	assert_true(gone.big);
	jsonrpc_release(&gone);
	memset(&gone, 0xa5, sizeof(gone)); /* a trim that still saw it would crash */

	/* Every long line asks for the idle trim again, not only the first. */
	sys_big_alloc = false;
	assert_int_equal(jsonrpc_scan(s, line, n), JSONRPC_NOTIFICATION);
	assert_true(s->by_simd);
	assert_true(s->big);
	assert_non_null(s->simd);
	assert_true(sys_big_alloc);
	sys_big_alloc = false;
	assert_int_equal(jsonrpc_scan(s, line, n), JSONRPC_NOTIFICATION);
	assert_true(sys_big_alloc);
	sys_big_alloc = false;
	jsonrpc_trim();
	assert_null(s->simd);
	assert_false(s->big);
	jsonrpc_trim(); /* nothing left to do */

	assert_int_equal(jsonrpc_scan(s, line, 30), JSONRPC_NOTIFICATION);
	assert_true(s->by_simd);
	assert_non_null(s->simd);
	assert_false(s->big);

	/* A "\n" (never in a line) is the yajl path's to judge: it refuses it. */
	line[40] = '\n';
	assert_int_equal(jsonrpc_scan(s, line, 100), JSONRPC_INVALID_JSON);
	assert_false(s->by_simd);
	line[40] = ' ';
	/* A framed line is not searched for one, and a line without takes the simdjson path. */
	assert_int_equal(jsonrpc_scan_line(s, line, 100), JSONRPC_NOTIFICATION);
	assert_true(s->by_simd);
	assert_int_equal(jsonrpc_scan_checked(s, line, 100), JSONRPC_NOTIFICATION);
	assert_true(s->by_simd);
	free(line);
}

/*
 * The memory of a long line's results, and yajl's for it, is given back by the trim too,
 * whether or not another line comes: an arena grown for a long id, and the handle that
 * decoded it (its buffer grows with an escaped string).
 */
static void
test_trim_long_id(void **state)
{
	static const char small[] = "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}";
	struct jsonrpc_scanner *s = *state;
	size_t n = (3 << 20) + 64, k = 0; /* past simdjson's 2 MiB: yajl's */
	char *line = malloc(n);

	assert_non_null(line);
	k += (size_t)sprintf(line, "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":\"");
	while (k + 8 < n - 4) {
		memcpy(line + k, "\\u00e9", 6);
		k += 6;
	}
	memcpy(line + k, "\"}", 2);
	k += 2;
	sys_big_alloc = false;
	assert_int_equal(jsonrpc_scan(s, line, k), JSONRPC_REQUEST);
	assert_false(s->by_simd);
	assert_true(s->big);
	assert_true(sys_big_alloc);
	assert_non_null(s->h);
	assert_true(s->arena_cap > (64 << 10));
	sys_big_alloc = false;
	jsonrpc_trim();
	assert_false(s->big);
	assert_null(s->h);
	assert_null(s->arena);
	assert_int_equal(s->arena_cap, 0);
	/* A short line after: nothing grows, nothing to trim. */
	assert_int_equal(jsonrpc_scan(s, small, sizeof(small) - 1), JSONRPC_REQUEST);
	assert_false(s->big);
	assert_false(sys_big_alloc);
	free(line);
}

/* A control character (here NUL) raw inside a string is not JSON. */
static void
test_raw_nul_in_string(void **state)
{
	static const char line[] = "{\"jsonrpc\":\"2.0\",\"method\":\"a\0b\"}";

	assert_int_equal(jsonrpc_scan(*state, line, sizeof(line) - 1), JSONRPC_INVALID_JSON);
}

/*
 * Invalid UTF-8 that has the right byte structure: overlong forms, UTF-16 surrogates,
 * code points above U+10FFFF.  JSON text must be UTF-8 (RFC 8259), so each line is
 * invalid JSON, like a line with a lone 0xff byte.
 */
static void
test_structured_invalid_utf8(void **state)
{
	static const char *const lines[] = {
		"{\"jsonrpc\":\"2.0\",\"method\":\"\xc0\xaf\"}",	 /* overlong '/' */
		"{\"jsonrpc\":\"2.0\",\"method\":\"\xe0\x80\xaf\"}",	 /* overlong, 3 bytes */
		"{\"jsonrpc\":\"2.0\",\"method\":\"\xed\xa0\x80\"}",	 /* surrogate D800 */
		"{\"jsonrpc\":\"2.0\",\"method\":\"\xf4\x90\x80\x80\"}", /* U+110000 */
		"{\"jsonrpc\":\"2.0\",\"method\":\"\xf5\x80\x80\x80\"}", /* 0xf5 lead byte */
	};

	size_t accepted = 0;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		enum jsonrpc_kind kind = jsonrpc_scan(*state, lines[i], strlen(lines[i]));

		if (kind != JSONRPC_INVALID_JSON) {
			print_error("line %zu: kind %s, want invalid JSON\n", i,
				    jsonrpc_kind_name(kind));
			accepted++;
		}
	}
	assert_int_equal(accepted, 0);
}

/*
 * Two requests whose string ids differ only in invalid UTF-8 bytes must not get the
 * same canonical id (the id is what routes a response back to its request).
 */
static void
test_distinct_ids_stay_distinct(void **state)
{
	static const char a[] = "{\"jsonrpc\":\"2.0\",\"id\":\"\xc0\xaf\",\"method\":\"m\"}";
	static const char b[] = "{\"jsonrpc\":\"2.0\",\"id\":\"\xc0\xb0\",\"method\":\"m\"}";
	struct jsonrpc_scanner *s = *state;
	char id_a[64];
	size_t len_a;

	if (jsonrpc_scan(s, a, strlen(a)) != JSONRPC_REQUEST) {
		return; /* refused as invalid JSON: nothing to confuse */
	}
	len_a = s->one.id.len;
	assert_true(len_a < sizeof(id_a));
	memcpy(id_a, jsonrpc_str(s, s->one.id), len_a);
	assert_int_equal(jsonrpc_scan(s, b, strlen(b)), JSONRPC_REQUEST);
	if (s->one.id.len == len_a && memcmp(jsonrpc_str(s, s->one.id), id_a, len_a) == 0) {
		fail_msg("ids \"\\xc0\\xaf\" and \"\\xc0\\xb0\" both canonicalise to %.*s",
			 (int)len_a, id_a);
	}
}

/* The scanner recovers after each kind of failure. */
static void
test_recovers_after_invalid(void **state)
{
	static const char *const bad[] = { "{", "{} {}", "[1,", "\"\xff\"", "}", "nul", "[[[" };
	struct jsonrpc_scanner *s = *state;
	char good[128];

	q(good, sizeof(good), "{'jsonrpc':'2.0','id':'x','method':'ping'}");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(jsonrpc_scan(s, bad[i], strlen(bad[i])), JSONRPC_INVALID_JSON);
		assert_non_null(s->error);
		assert_int_equal(jsonrpc_scan(s, good, strlen(good)), JSONRPC_REQUEST);
		assert_null(s->error);
		assert_item(s, &s->one, JSONRPC_REQUEST, "'x'", "ping", good);
	}
	/* Many lines on one reused parser handle. */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(jsonrpc_scan(s, good, strlen(good)), JSONRPC_REQUEST);
		assert_int_equal(jsonrpc_scan(s, "7", 1), JSONRPC_INVALID_REQUEST);
	}
}

/* ---- batches ---- */

struct batch_item {
	enum jsonrpc_kind kind;
	const char *id;
	const char *method;
};

static void
test_batch_mixed(void **state)
{
	static const struct batch_item want[] = {
		{ JSONRPC_REQUEST, "1", "a" },		 { JSONRPC_NOTIFICATION, NULL, "b" },
		{ JSONRPC_RESPONSE, "'r'", NULL },	 { JSONRPC_ERROR, "2", NULL },
		{ JSONRPC_INVALID_REQUEST, NULL, NULL }, { JSONRPC_INVALID_REQUEST, NULL, NULL },
		{ JSONRPC_INVALID_REQUEST, NULL, NULL }, { JSONRPC_INVALID_REQUEST, "3", "c" },
		{ JSONRPC_ERROR, "null", NULL },
	};
	struct jsonrpc_scanner *s = *state;
	char line[1024];

	assert_int_equal(scan_q(s, line, sizeof(line),
				"[{'jsonrpc':'2.0','id':1,'method':'a','params':{'graceMs':5}},"
				"{'jsonrpc':'2.0','method':'b'},"
				"{'jsonrpc':'2.0','id':'r','result':{'id':4}},"
				"{'jsonrpc':'2.0','id':2,'error':{'code':1,'message':'m'}},"
				"5,"
				"{'foo':1},"
				"[{'jsonrpc':'2.0','method':'nested'}],"
				"{'jsonrpc':'1.0','id':3,'method':'c'},"
				"{'jsonrpc':'2.0','id':null,'error':{'code':1,'message':'m'}}]"),
			 JSONRPC_BATCH);
	assert_null(s->error);
	assert_true(s->top_container);
	assert_int_equal(s->n_elements, 9);
	assert_int_equal(s->n_items, 9);
	for (size_t i = 0; i < 9; i++) {
		assert_item(s, &s->items[i], want[i].kind, want[i].id, want[i].method, line);
	}
	/* params are picked up for a single message only, not inside a batch */
	assert_false(s->params.has_grace_ms);
	assert_true(jsonrpc_method_is(s, &s->items[0], "a"));
	assert_true(jsonrpc_method_is(s, &s->items[1], "b"));
	assert_false(jsonrpc_method_is(s, &s->items[2], "a"));
}

static void
test_batch_of_scalars(void **state)
{
	struct jsonrpc_scanner *s = *state;

	assert_int_equal(jsonrpc_scan(s, "[1]", 3), JSONRPC_BATCH);
	assert_int_equal(s->n_elements, 1);
	assert_int_equal(s->n_items, 1);
	assert_int_equal(s->items[0].kind, JSONRPC_INVALID_REQUEST);
	assert_false(s->items[0].has_id);

	assert_int_equal(jsonrpc_scan(s, "[null, \"x\", [], {}]", 19), JSONRPC_BATCH);
	assert_int_equal(s->n_elements, 4);
	assert_int_equal(s->n_items, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(s->items[i].kind, JSONRPC_INVALID_REQUEST);
	}

	assert_int_equal(jsonrpc_scan(s, "[]", 2), JSONRPC_INVALID_REQUEST);
	assert_int_equal(s->n_elements, 0);
	assert_int_equal(s->n_items, 0);
	assert_true(s->top_container);
	assert_non_null(s->error);
}

/*
 * A batch longer than JSONRPC_MAX_ITEMS: all counted, the first ones described, and past
 * them every request and answer (what has an id to route or answer), in order; the other
 * elements there (a notification, a scalar, an array, an invalid object) only counted.
 */
static void
test_batch_cap(void **state)
{
	struct jsonrpc_scanner *s = *state;
	const int n = 2000;
	size_t cap = (size_t)n * 64 + 2, len = 0;
	char *line = malloc(cap);

	assert_non_null(line);
	line[len++] = '[';
	for (int i = 0; i < n; i++) {
		char *p = line + len;
		size_t room = cap - len;
		int r = i < JSONRPC_MAX_ITEMS ? 0 : i % 5;

		if (r == 1) {
			len += (size_t)snprintf(p, room,
						"{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{}}", i);
		} else if (r == 2 && i % 2) {
			len += (size_t)snprintf(p, room, "{\"jsonrpc\":\"2.0\",\"method\":\"n%d\"}",
						i);
		} else if (r == 2) {
			len += (size_t)snprintf(p, room, "[%d]", i);
		} else if (r == 3 && i % 2) {
			len += (size_t)snprintf(p, room, "%d", i);
		} else if (r == 3) {
			len += (size_t)snprintf(p, room, "{\"id\":%d,\"method\":\"n\"}", i);
		} else {
			len += (size_t)snprintf(
				p, room, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"n\"}", i);
		}
		line[len++] = i + 1 < n ? ',' : ']';
	}
	enum jsonrpc_kind kind = jsonrpc_scan(s, line, len);

	free(line);
	assert_int_equal(kind, JSONRPC_BATCH);
	assert_int_equal(s->n_elements, 2000);
	/* 976 past the first 1,024: 2 in 5 neither a request nor an answer */
	assert_int_equal(s->n_items, JSONRPC_MAX_ITEMS + 976 - 2 * 976 / 5);
	assert_item(s, &s->items[0], JSONRPC_REQUEST, "0", "n", "batch[0]");
	assert_item(s, &s->items[JSONRPC_MAX_ITEMS - 1], JSONRPC_REQUEST, "1023", "n",
		    "batch[1023]");
	assert_item(s, &s->items[JSONRPC_MAX_ITEMS], JSONRPC_REQUEST, "1024", "n", "batch[1024]");
	assert_item(s, &s->items[JSONRPC_MAX_ITEMS + 2], JSONRPC_RESPONSE, "1026", NULL,
		    "batch[1026]");
	assert_item(s, &s->items[JSONRPC_MAX_ITEMS + 3], JSONRPC_REQUEST, "1029", "n",
		    "batch[1029]");
	assert_item(s, &s->items[s->n_items - 1], JSONRPC_REQUEST, "1999", "n", "batch[1999]");

	/* The scanner is then as good as new for a small line. */
	assert_int_equal(jsonrpc_scan(s, "[5]", 3), JSONRPC_BATCH);
	assert_int_equal(s->n_elements, 1);
	assert_int_equal(s->n_items, 1);
}

/* ---- nesting ---- */

/* Scan a request whose params hold `arrays` nested arrays: its depth is arrays + 2. */
static enum jsonrpc_kind
scan_nested(struct jsonrpc_scanner *s, size_t arrays)
{
	static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"deep\",\"params\":[";
	size_t n = sizeof(head) - 1;
	char *line = malloc(n + 2 * arrays + 2);

	assert_non_null(line);
	memcpy(line, head, n);
	memset(line + n, '[', arrays);
	n += arrays;
	memset(line + n, ']', arrays);
	n += arrays;
	memcpy(line + n, "]}", 2);
	n += 2;
	enum jsonrpc_kind kind = jsonrpc_scan(s, line, n);

	free(line);
	return kind;
}

static void
test_nesting_limit(void **state)
{
	struct jsonrpc_scanner *s = *state;
	const size_t huge = 100000;

	/* exactly JSONRPC_MAX_DEPTH (512) levels */
	assert_int_equal(scan_nested(s, JSONRPC_MAX_DEPTH - 2), JSONRPC_REQUEST);
	assert_item(s, &s->one, JSONRPC_REQUEST, "1", "deep", "512 levels");
	assert_true(s->by_simd); /* simdjson's depth bound is the same */
	/* one more */
	assert_int_equal(scan_nested(s, JSONRPC_MAX_DEPTH - 1), JSONRPC_INVALID_JSON);
	assert_non_null(s->error);
	assert_false(s->by_simd);

	/* A bare array of 100000 levels is refused too. */
	char *arr = malloc(2 * huge);

	assert_non_null(arr);
	memset(arr, '[', huge);
	memset(arr + huge, ']', huge);
	enum jsonrpc_kind kind = jsonrpc_scan(s, arr, 2 * huge);

	free(arr);
	assert_int_equal(kind, JSONRPC_INVALID_JSON);

	/* and the scanner still works */
	assert_int_equal(scan_nested(s, 10), JSONRPC_REQUEST);
}

/* ---- long strings: the arena grows past what it keeps, then shrinks back ---- */

static void
test_long_strings(void **state)
{
	struct jsonrpc_scanner *s = *state;
	const size_t n = 100000;
	size_t cap = 2 * n + 128, len = 0;
	char *line = malloc(cap);

	assert_non_null(line);
	/* an id of n/2 escaped quotes and n/2 'x' */
	len += (size_t)snprintf(line, cap, "{\"jsonrpc\":\"2.0\",\"id\":\"");
	for (size_t i = 0; i < n / 2; i++) {
		line[len++] = '\\';
		line[len++] = '"';
	}
	memset(line + len, 'x', n / 2);
	len += n / 2;
	len += (size_t)snprintf(line + len, cap - len, "\",\"method\":\"m\"}");
	enum jsonrpc_kind kind = jsonrpc_scan(s, line, len);

	free(line);
	assert_int_equal(kind, JSONRPC_REQUEST);
	/* canonical: the same escaped text, with its quotes */
	assert_int_equal(s->one.id.len, n + n / 2 + 2);
	const char *id = jsonrpc_str(s, s->one.id);

	assert_memory_equal(id, "\"\\\"\\\"", 5);
	assert_memory_equal(id + n + n / 2 - 2, "xxx\"", 4);
	assert_true(s->arena_cap > n);

	/* the next small line does not keep the big arena */
	assert_int_equal(jsonrpc_scan(s, "[1]", 3), JSONRPC_BATCH);
	assert_true(s->arena_cap <= (size_t)64 << 10);
}

/* ---- params, method_is, kind_name ---- */

static void
test_end_run_params(void **state)
{
	struct jsonrpc_scanner *s = *state;
	char line[512];

	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'mcpmux/endRun','params':{'other':"
				"{'graceMs':9,'session':'no'},'graceMs':1500,'session':'s-1',"
				"'list':['reason'],'reason':'done \\'now\\''}}"),
			 JSONRPC_NOTIFICATION);
	assert_true(jsonrpc_method_is(s, &s->one, "mcpmux/endRun"));
	assert_true(s->params.has_grace_ms);
	assert_true(s->params.grace_ms == 1500.0);
	assert_str(s, s->params.has_session, s->params.session, "s-1", "session", line);
	assert_str(s, s->params.has_reason, s->params.reason, "done 'now'", "reason", line);

	/* Wrong types are ignored, and nothing carries over from the previous scan. */
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'mcpmux/endRun','params':{'graceMs':'5',"
				"'session':7,'reason':null}}"),
			 JSONRPC_NOTIFICATION);
	assert_false(s->params.has_grace_ms);
	assert_false(s->params.has_session);
	assert_false(s->params.has_reason);

	/* Members of other objects than params are not params. */
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'m','x':{'graceMs':5},"
				"'params':[{'graceMs':6}]}"),
			 JSONRPC_NOTIFICATION);
	assert_false(s->params.has_grace_ms);

	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','id':4,'method':'mcpmux/endRun',"
				"'params':{'graceMs':2.5e2}}"),
			 JSONRPC_REQUEST);
	assert_true(s->params.has_grace_ms);
	assert_true(s->params.grace_ms == 250.0);
	assert_false(s->params.has_session);
}

/* With params_method set, params are read for that method only (or while it is unknown). */
static void
test_params_method(void **state)
{
	struct jsonrpc_scanner *s = *state;
	char line[512];

	s->params_method = "mcpmux/endRun";
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'tools/call','params':{'graceMs':5,"
				"'session':'x','reason':'y'}}"),
			 JSONRPC_NOTIFICATION);
	assert_false(s->params.has_grace_ms);
	assert_false(s->params.has_session);
	assert_false(s->params.has_reason);

	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'mcpmux/endRun','params':{'graceMs':5,"
				"'session':'x','reason':'y'}}"),
			 JSONRPC_NOTIFICATION);
	assert_true(s->params.has_grace_ms && s->params.grace_ms == 5.0);
	assert_str(s, s->params.has_session, s->params.session, "x", "session", line);
	assert_str(s, s->params.has_reason, s->params.reason, "y", "reason", line);

	/* params before the method: read, since the method is not known yet. */
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','params':{'graceMs':7},'id':1,"
				"'method':'mcpmux/endRun'}"),
			 JSONRPC_REQUEST);
	assert_true(s->params.has_grace_ms && s->params.grace_ms == 7.0);

	/* Skipped params are still validated, and the message still classified. */
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'m','params':{'a':[1,{'b':'\\u00e9'}],"
				"'c':tru}}"),
			 JSONRPC_INVALID_JSON);
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','id':'r','method':'m','params':{'a':{'id':9}},"
				"'x':1}"),
			 JSONRPC_REQUEST);
	assert_str(s, s->one.has_id, s->one.id, "\"r\"", "id", line);
	s->params_method = NULL;
}

/*
 * Text checks go 64 and 16 bytes at a time where they can: a bad byte must be found at
 * every offset of a long line, and a good line of every length must pass.
 */
static void
test_text_ok_every_offset(void **state)
{
	static const char *const bad[] = { "\x01",     "\x1f",	       "\x0b", "\x80",
					   "\xc0\xaf", "\xed\xa0\x80", "\xff" };
	char buf[300];

	(void)state;
	for (size_t len = 0; len <= 200; len++) {
		memset(buf, 'a', len);
		assert_true(jsonrpc_text_ok(buf, len));
		if (len >= 2) {
			memcpy(buf + len - 2, "\xc3\xa9", 2); /* é at the very end */
			assert_true(jsonrpc_text_ok(buf, len));
		}
	}
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		size_t n = strlen(bad[b]);

		for (size_t at = 0; at + n <= 200; at++) {
			memset(buf, 'a', 200);
			memcpy(buf + at, bad[b], n);
			if (at > 0) {
				buf[at - 1] = '\r'; /* allowed anywhere, like tab */
			}
			if (jsonrpc_text_ok(buf, 200)) {
				fail_msg("bad byte %zu not found at offset %zu", b, at);
			}
		}
	}
	memset(buf, 'a', 200);
	buf[100] = '\t';
	buf[150] = '\r';
	buf[199] = 0x7f; /* DEL is not a control character for JSON */
	assert_true(jsonrpc_text_ok(buf, 200));
}

static void
test_method_is(void **state)
{
	struct jsonrpc_scanner *s = *state;
	char line[128];

	assert_int_equal(
		scan_q(s, line, sizeof(line), "{'jsonrpc':'2.0','method':'mcpmux/endRun'}"),
		JSONRPC_NOTIFICATION);
	assert_true(jsonrpc_method_is(s, &s->one, "mcpmux/endRun"));
	assert_false(jsonrpc_method_is(s, &s->one, "mcpmux/endRu"));
	assert_false(jsonrpc_method_is(s, &s->one, "mcpmux/endRunX"));
	assert_false(jsonrpc_method_is(s, &s->one, ""));

	assert_int_equal(scan_q(s, line, sizeof(line), "{'jsonrpc':'2.0','id':1,'result':{}}"),
			 JSONRPC_RESPONSE);
	assert_false(jsonrpc_method_is(s, &s->one, ""));
	assert_false(jsonrpc_method_is(s, &s->one, "mcpmux/endRun"));

	assert_int_equal(scan_q(s, line, sizeof(line), "{'jsonrpc':'2.0','method':''}"),
			 JSONRPC_NOTIFICATION);
	assert_true(jsonrpc_method_is(s, &s->one, ""));
	assert_false(jsonrpc_method_is(s, &s->one, "x"));
}

static void
test_kind_name(void **state)
{
	(void)state;
	assert_string_equal(jsonrpc_kind_name(JSONRPC_INVALID_JSON), "invalid");
	assert_string_equal(jsonrpc_kind_name(JSONRPC_INVALID_REQUEST), "invalid");
	assert_string_equal(jsonrpc_kind_name(JSONRPC_REQUEST), "request");
	assert_string_equal(jsonrpc_kind_name(JSONRPC_NOTIFICATION), "notification");
	assert_string_equal(jsonrpc_kind_name(JSONRPC_RESPONSE), "response");
	assert_string_equal(jsonrpc_kind_name(JSONRPC_ERROR), "error");
	assert_string_equal(jsonrpc_kind_name(JSONRPC_BATCH), "batch");
}

/* A scanner that was never used, or only failed, releases cleanly and can be reused. */
static void
test_release_unused(void **state)
{
	struct jsonrpc_scanner *s = *state;

	jsonrpc_release(s);
	assert_int_equal(jsonrpc_scan(s, "{", 1), JSONRPC_INVALID_JSON);
	jsonrpc_release(s);
	assert_null(s->h);
	assert_null(s->arena);
	assert_null(s->items);
	assert_int_equal(jsonrpc_scan(s, "[{}]", 4), JSONRPC_BATCH);
}

/* ---- idscan ---- */

struct idscan_case {
	const char *in;
	const char *id; /* NULL: no id */
};

static const struct idscan_case idscan_golden[] = {
	{ "{'jsonrpc':'2.0','id':42,'result':'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	  "42" },
	{ "{'jsonrpc':'2.0','id':'a\\'b','result':1}", "'a\\'b'" },
	{ "{'result':{'id':9,'x':[1,{'id':8}]},'id':7}", "7" },
	{ "{'result':['id',{'id':8}],'id':'last'}", "'last'" },
	{ "{'jsonrpc':'2.0','result':{'id':3}}", NULL },
	{ "{'idx':1,'i':2,'xid':3,'result':0}", NULL },
	{ "{'idx':1,'id':5}", "5" },
	{ "{'a':'id','id':3}", "3" },
	{ "{'a':'\\'id\\'','b':1}", NULL },
	{ "{ 'id' : -1.5e3 , 'x':1}", "-1.5e3" },
	{ "{\t'id':\r\n0}", "0" },
	{ "{'id':null,'result':1}", NULL },
	{ "{'id':true,'result':1}", NULL },
	{ "{'id':false}", NULL },
	{ "{'id':{'id':1}}", NULL },
	{ "{'id':'x'", "'x'" },
	{ "{'id':'xy", NULL },
	{ "{'id':42}", "42" },
	{ "[{'id':1}]", NULL },
	{ "{'a':'{[','id':1}", "1" },
	{ "{'a':'\\\\','id':2}", "2" },
	{ "{'a':{'b':'}'},'id':3}", "3" },
	{ "{'\\u0069d':4,'result':1}", "4" },
	{ "{'i\\u0064':'\\u0061','result':1}", "'\\u0061'" },
	{ "{'\\u0069\\u0064x':4,'result':1}", NULL },
};

/* in (len bytes) fed to sc in pieces of piece bytes (by lines, lead their state, if set). */
static void
idscan_feed_pieces(struct jsonrpc_idscan *sc, bool *lead, const char *in, size_t len, size_t piece)
{
	for (size_t at = 0; at < len; at += piece) {
		size_t n = len - at < piece ? len - at : piece;

		if (lead != NULL) {
			jsonrpc_idscan_feed_line(sc, lead, in + at, n);
		} else {
			jsonrpc_idscan_feed(sc, in + at, n);
		}
	}
}

static void
check_idscan(const char *in_q, const char *want_q, size_t piece)
{
	char in[256], want[256];
	size_t len, id_len = 0;
	struct jsonrpc_idscan sc;

	q(in, sizeof(in), in_q);
	len = strlen(in);
	jsonrpc_idscan_init(&sc);
	idscan_feed_pieces(&sc, NULL, in, len, piece);
	const char *id = jsonrpc_idscan_id(&sc, &id_len);

	if (want_q == NULL) {
		if (id != NULL) {
			fail_msg("%s (pieces of %zu): id %.*s, want none", in, piece, (int)id_len,
				 id);
		}
		return;
	}
	q(want, sizeof(want), want_q);
	if (id == NULL || id_len != strlen(want) || memcmp(id, want, id_len) != 0) {
		fail_msg("%s (pieces of %zu): id %.*s, want %s", in, piece, id ? (int)id_len : 6,
			 id ? id : "(none)", want);
	}
}

static void
test_idscan_every_piece_size(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(idscan_golden) / sizeof(idscan_golden[0]); i++) {
		for (size_t piece = 1; piece <= 16; piece++) {
			check_idscan(idscan_golden[i].in, idscan_golden[i].id, piece);
		}
		check_idscan(idscan_golden[i].in, idscan_golden[i].id, 1000);
	}
}

/* Whether what idscan was fed is an answer, or has a method, in pieces of every size. */
static void
test_idscan_kind(void **state)
{
	static const struct {
		const char *in;
		bool answer, method;
	} cases[] = {
		{ "{'jsonrpc':'2.0','id':1,'result':'xxxxxxxxxxxx", true, false },
		{ "{'jsonrpc':'2.0','id':1,'error':{'code':1}}", true, false },
		{ "{'jsonrpc':'2.0','id':1,'method':'x','params':{'result':1}}", false, true },
		{ "{'jsonrpc':'2.0','method':'x','params':{'error':1}}", false, true },
		{ "{'result':1,'method':'x','id':2}", false, true },
		{ "{'params':{'method':'m'},'id':1,'result':2}", true, false },
		{ "{'resul':1,'id':1}", false, false },
		{ "{'resultx':1,'errors':2,'methods':3,'id':1}", false, false },
		/* Keys written with escapes are the keys they decode to. */
		{ "{'r\\u0065sult':1,'id':1}", true, false },
		{ "{'\\u0065rror':1,'id':1}", true, false },
		{ "{'\\u006D\\u0065thod':'m','result':1,'id':1}", false, true },
		{ "{'\\/result':1,'id':1}", false, false },
		{ "{'result\\u0000':1,'id':1}", false, false },
		{ "{'r\\u00e9sult':1,'id':1}", false, false },
		{ "{'re\\u00sult':1,'id':1}", false, false },
		{ "{'a':'method','b':'result','id':1}", false, false },
		{ "{'a':['result',{'error':1}],'id':1}", false, false },
		/* A batch's elements fed from its first (past the '['): the scan ends with it. */
		{ "{'jsonrpc':'2.0','x':1},{'jsonrpc':'2.0','id':2,'result':1}]", false, false },
		{ "7,{'jsonrpc':'2.0','id':2,'method':'m'}]", false, false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[256];
		size_t len;

		q(in, sizeof(in), cases[i].in);
		len = strlen(in);
		for (size_t piece = 1; piece <= 17; piece++) {
			struct jsonrpc_idscan sc;

			jsonrpc_idscan_init(&sc);
			idscan_feed_pieces(&sc, NULL, in, len, piece);
			if (jsonrpc_idscan_is_answer(&sc) != cases[i].answer ||
			    sc.has_method != cases[i].method) {
				fail_msg("%s (pieces of %zu): answer %d method %d", in, piece,
					 jsonrpc_idscan_is_answer(&sc), sc.has_method);
			}
		}
	}
}

/*
 * jsonrpc_answer_id(): the id of an answer in a text the scan refuses, by its structure
 * alone; none of a request, of a notification, of an id that is no valid id, of an
 * object cut short.  '~' in a case stands for a NUL.
 */
static void
test_answer_id(void **state)
{
	static const struct {
		const char *in;
		const char *id; /* as q() quotes it; NULL: none */
	} cases[] = {
		{ "{'jsonrpc':'2.0','id':3,'result':{'text':'caf\xe9'}}", "3" },
		{ "  {'jsonrpc':'2.0','id':3,'result':{'text':'a~b'}}", "3" },
		{ "{'jsonrpc':'2.0','id':-1.5e3,'error':{'code':1,'message':'\xc0\xaf'}}",
		  "-1.5e3" },
		{ "{'jsonrpc':'2.0','result':[[[[[[[[[[]]]]]]]]]],'id':'a\\'b\\u0063'}",
		  "'a\\'b\\u0063'" },
		/* Keys are compared by what their escapes stand for; the last id wins. */
		{ "{'\\u0069d':7,'r\\u0065sult':1}", "7" },
		{ "{'id':1,'result':1,'id':2}", "2" },
		{ "{'id':1,'result':1,'id':true}", NULL },
		/* What follows the object is not read. */
		{ "{'id':4,'result':1} \xff garbage", "4" },
		/* No answer: a request, a notification, an answer that says no id. */
		{ "{'jsonrpc':'2.0','id':5,'method':'x','params':{'t':'\xe9'}}", NULL },
		{ "{'jsonrpc':'2.0','id':5,'method':'x','result':1}", NULL },
		{ "{'jsonrpc':'2.0','id':5,'\\u006dethod':'x','result':1}", NULL },
		{ "{'jsonrpc':'2.0','method':'x','params':{'id':1,'result':'\xe9'}}", NULL },
		{ "{'jsonrpc':'2.0','result':'\xe9'}", NULL },
		{ "{'jsonrpc':'2.0','id':5}", NULL },
		{ "{'params':{'id':1},'result':1}", NULL },
		/* An id that is no request's: null, true, an object, not a number, bad text. */
		{ "{'id':null,'error':{}}", NULL },
		{ "{'id':true,'result':1}", NULL },
		{ "{'id':{'a':1},'result':1}", NULL },
		{ "{'id':[1],'result':1}", NULL },
		{ "{'id':01,'result':1}", NULL },
		{ "{'id':1x,'result':1}", NULL },
		{ "{'id':'\xe9','result':1}", NULL },
		{ "{'id':'a~','result':1}", NULL },
		{ "{'id':'\\x','result':1}", NULL },
		/* A lone surrogate escape: the scan's text of it is not its own (yajl's '?'). */
		{ "{'id':'\\ud800','result':1}", NULL },
		{ "{'id':'a\\udc00','result':1}", NULL },
		{ "{'id':'\\ud800\\u0041','result':1}", NULL },
		{ "{'id':'\\ud83d\\ude00\\n','result':1}", "'\\ud83d\\ude00\\n'" },
		/* Not an object, or one cut short or broken before its end. */
		{ "[{'id':1,'result':1}]", NULL },
		{ "'id'", NULL },
		{ "{'id':3,'result':{'text':'abc", NULL },
		{ "{'id':3,'result':1", NULL },
		{ "{'id':3,'result':1,}", NULL },
		{ "{'id' 3,'result':1}", NULL },
		{ "{'id':3 'result':1}", NULL },
		{ "{'id':3,'result':]}", NULL },
		{ "{'id':3,~'result':1}", NULL },
		{ "{}", NULL },
		{ "", NULL },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[256], want[64];
		size_t len, id_len = 0;

		q(in, sizeof(in), cases[i].in);
		len = strlen(in);
		for (char *t = strchr(in, '~'); t != NULL; t = strchr(t + 1, '~')) {
			*t = '\0';
		}
		/* From a copy of its own length: nothing past it is read (ASan). */
		char *copy = malloc(len > 0 ? len : 1);

		assert_non_null(copy);
		memcpy(copy, in, len);
		const char *id = jsonrpc_answer_id(copy, len, &id_len);

		if (cases[i].id == NULL) {
			if (id != NULL) {
				fail_msg("case %zu: unexpected id %.*s", i, (int)id_len, id);
			}
		} else {
			q(want, sizeof(want), cases[i].id);
			if (id == NULL || id_len != strlen(want) || memcmp(id, want, id_len) != 0) {
				fail_msg("case %zu: id %.*s, want %s", i, id ? (int)id_len : 6,
					 id ? id : "(none)", want);
			}
		}
		free(copy);
	}
}

/*
 * The scan of in (fed in pieces of piece bytes) found an answer whose id is want_q (as
 * q() quotes it), or no answer when want_q is NULL.
 */
static void
check_idscan_answer(const struct jsonrpc_idscan *sc, const char *in, size_t piece,
		    const char *want_q)
{
	char want[16];
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(sc, &id_len);

	if (want_q == NULL) {
		if (jsonrpc_idscan_is_answer(sc)) {
			fail_msg("%s (pieces of %zu): an answer", in, piece);
		}
		return;
	}
	q(want, sizeof(want), want_q);
	if (!jsonrpc_idscan_is_answer(sc) || id == NULL || id_len != strlen(want) ||
	    memcmp(id, want, id_len) != 0) {
		fail_msg("%s (pieces of %zu): id %.*s", in, piece, (int)id_len,
			 id != NULL ? id : "");
	}
}

/*
 * A line over the bound fed whole or in pieces, its leading whitespace too: a batch is
 * known at its first other byte, and its first answer's id found.
 */
static void
test_idscan_feed_line(void **state)
{
	static const struct {
		const char *in;
		bool batch;
		const char *id;
	} cases[] = {
		{ "  \t\r [{'id':1,'method':'m'},{'id':2,'result':1}]", true, "2" },
		{ "[{'id':3,'result':1}]", true, "3" },
		{ " \t{'id':4,'result':[1]}", false, "4" },
		{ "      ", false, NULL },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[256];
		size_t len;

		q(in, sizeof(in), cases[i].in);
		len = strlen(in);
		for (size_t piece = 1; piece <= len; piece++) {
			struct jsonrpc_idscan sc;
			bool lead = true;

			jsonrpc_idscan_init(&sc);
			idscan_feed_pieces(&sc, &lead, in, len, piece);
			assert_int_equal(sc.batch, cases[i].batch);
			assert_int_equal(lead, cases[i].id == NULL);
			check_idscan_answer(&sc, in, piece, cases[i].id);
		}
	}
}

/* A batch's elements (batch set): the id of its first answer, the others passed over. */
static void
test_idscan_batch(void **state)
{
	static const struct {
		const char *in;
		const char *id; /* NULL: no answer */
	} cases[] = {
		{ "{'jsonrpc':'2.0','method':'n','params':{'id':9}},{'id':2,'result':1}]", "2" },
		{ "{'id':1,'method':'m'},{'id':'b','error':{'code':1}},{'id':4,'result':1}]",
		  "'b'" },
		{ "7,{'jsonrpc':'2.0','id':4,'result':1}]", "4" },
		{ "{'id':5,'result':[{'id':6}]},{'id':7,'result':1}]", "5" },
		{ "{'id':1,'method':'m'},{'jsonrpc':'2.0','method':'n'}]", NULL },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[256];
		size_t len;

		q(in, sizeof(in), cases[i].in);
		len = strlen(in);
		for (size_t piece = 1; piece <= 17; piece++) {
			struct jsonrpc_idscan sc;

			jsonrpc_idscan_init(&sc);
			sc.batch = true;
			idscan_feed_pieces(&sc, NULL, in, len, piece);
			check_idscan_answer(&sc, in, piece, cases[i].id);
		}
	}
}

/* A batch's answers with on_element set: each answer's id, in order, and none else. */
struct answers_seen {
	char ids[128];
	size_t len;
};

static void
idscan_seen(void *ctx, const struct jsonrpc_idscan *sc)
{
	struct answers_seen *seen = ctx;
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(sc, &id_len);

	if (!sc->found || !jsonrpc_idscan_is_answer(sc)) {
		return;
	}
	if (id == NULL) {
		id = "?", id_len = 1;
	}
	assert_true(seen->len + id_len + 1 < sizeof(seen->ids));
	memcpy(seen->ids + seen->len, id, id_len);
	seen->len += id_len;
	seen->ids[seen->len++] = ' ';
	seen->ids[seen->len] = '\0';
}

static void
test_idscan_every_answer_of_a_batch(void **state)
{
	static const struct {
		const char *in;
		const char *ids; /* each answer's, a space after each */
		bool left;	 /* an answer cut short left in the scanner */
	} cases[] = {
		{ "{'id':1,'result':1},{'id':2,'result':{'id':9}},{'id':'c','error':{}}]",
		  "1 2 'c' ", false },
		{ "{'id':1,'method':'m'},{'method':'n','params':{'id':3}},{'id':4,'result':1}]",
		  "4 ", false },
		{ "7,{'result':[{'id':6}],'id':5},null,{'\\u0069d':8,'r\\u0065sult':0}]", "5 8 ",
		  false },
		{ "{'id':null,'result':1},{'result':1},{'id':2,'result':1}]", "? 2 ", false },
		{ "{'id':1,'result':1},{'id':2,'result':'xxxx", "1 ", true },
		{ "{'id':1,'method':'m'}]", "", false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[256], want[64];
		size_t len;

		q(in, sizeof(in), cases[i].in);
		q(want, sizeof(want), cases[i].ids);
		len = strlen(in);
		for (size_t piece = 1; piece <= 17; piece++) {
			struct jsonrpc_idscan sc;
			struct answers_seen seen = { .len = 0 };

			seen.ids[0] = '\0';
			jsonrpc_idscan_init(&sc);
			sc.batch = true;
			sc.on_element = idscan_seen;
			sc.ctx = &seen;
			idscan_feed_pieces(&sc, NULL, in, len, piece);
			if (strcmp(seen.ids, want) != 0 ||
			    (sc.found && jsonrpc_idscan_is_answer(&sc)) != cases[i].left) {
				fail_msg("%s (pieces of %zu): answers %s, want %s; one left %d", in,
					 piece, seen.ids, want,
					 sc.found && jsonrpc_idscan_is_answer(&sc));
			}
		}
	}
}

/* ---- envelope_bigscan ---- */

struct bigscan_case {
	const char *in;
	const char *session; /* NULL: none */
	const char *id;	     /* NULL: none */
};

static const struct bigscan_case bigscan_golden[] = {
	{ "{'session':'s-1','message':{'jsonrpc':'2.0','id':7,'params':{'p':'xxxxxxxx'}}}", "s-1",
	  "7" },
	{ "{'session':'s','message':{'params':{'id':1,'p':['id',{'id':2}]},'id':'z'}}", "s",
	  "'z'" },
	{ "{'message':{'id':3,'params':{'session':'no'}},'session':'late'}", "late", "3" },
	{ " { 'session' : 'a' , 'message' : { 'id' : 4 } } ", "a", "4" },
	{ "{'session':'a\\u0062','message':{'id':5}}", NULL, "5" },
	{ "{'sessions':'x','message':{'id':6}}", NULL, "6" },
	{ "{'session':{'session':'x'},'message':{'id':6}}", NULL, "6" },
	{ "{'x':{'session':'in','message':{'id':1}},'session':'out'}", "out", NULL },
	{ "{'session':'s','message':[{'id':1}]}", "s", NULL },
	{ "{'session':'s','message':{'p':1},'id':8}", "s", NULL },
	{ "{'session':'s','messages':{'id':8}}", "s", NULL },
	{ "{'session':'s','message':{'result':'}{\\'','id':9}}", "s", "9" },
	{ "{'session':'s','message':{'id':1}", "s", "1" },
};

static void
check_bigscan(const struct bigscan_case *c, size_t piece)
{
	char in[256], want[256];
	size_t len, got_len = 0;
	struct envelope_bigscan b;

	q(in, sizeof(in), c->in);
	len = strlen(in);
	envelope_bigscan_init(&b);
	for (size_t at = 0; at < len; at += piece) {
		envelope_bigscan_feed(&b, in + at, len - at < piece ? len - at : piece);
	}
	const char *got = envelope_bigscan_session(&b, &got_len);

	if (c->session == NULL ? got != NULL
			       : got == NULL || got_len != strlen(c->session) ||
					 memcmp(got, c->session, got_len) != 0) {
		fail_msg("%s (pieces of %zu): session %.*s, want %s", in, piece,
			 got ? (int)got_len : 6, got ? got : "(none)",
			 c->session ? c->session : "none");
	}
	got = envelope_bigscan_id(&b, &got_len);
	if (c->id == NULL) {
		if (got != NULL) {
			fail_msg("%s (pieces of %zu): id %.*s, want none", in, piece, (int)got_len,
				 got);
		}
		return;
	}
	q(want, sizeof(want), c->id);
	if (got == NULL || got_len != strlen(want) || memcmp(got, want, got_len) != 0) {
		fail_msg("%s (pieces of %zu): id %.*s, want %s", in, piece, got ? (int)got_len : 6,
			 got ? got : "(none)", want);
	}
}

static void
test_bigscan_every_piece_size(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bigscan_golden) / sizeof(bigscan_golden[0]); i++) {
		for (size_t piece = 1; piece <= 16; piece++) {
			check_bigscan(&bigscan_golden[i], piece);
		}
		check_bigscan(&bigscan_golden[i], 1000);
	}
}

/* A session ID over 128 bytes is none. */
static void
test_bigscan_long_session(void **state)
{
	char in[400];
	size_t len;
	struct envelope_bigscan b;

	(void)state;
	len = (size_t)snprintf(in, sizeof(in), "{\"session\":\"");
	memset(in + len, 's', 129);
	len += 129;
	len += (size_t)snprintf(in + len, sizeof(in) - len, "\",\"message\":{\"id\":1}}");
	envelope_bigscan_init(&b);
	envelope_bigscan_feed(&b, in, len);
	assert_null(envelope_bigscan_session(&b, &len));
	assert_non_null(envelope_bigscan_id(&b, &len));
}

/* An id of `n` bytes of JSON text (quotes included), then a result. */
static void
check_idscan_len(size_t n, bool want_found)
{
	char in[512];
	size_t len = 0, id_len = 0;
	struct jsonrpc_idscan sc;

	assert_true(n >= 2 && n < 300);
	len += (size_t)snprintf(in, sizeof(in), "{\"id\":\"");
	memset(in + len, 'k', n - 2);
	len += n - 2;
	len += (size_t)snprintf(in + len, sizeof(in) - len, "\",\"result\":\"zzz\"}");
	jsonrpc_idscan_init(&sc);
	idscan_feed_pieces(&sc, NULL, in, len, 7); /* in pieces: the id's text spans them */
	const char *id = jsonrpc_idscan_id(&sc, &id_len);

	/* The whole text is known by its length and hash, past id[] too. */
	assert_true(jsonrpc_idscan_is(&sc, in + 6, n));
	assert_false(jsonrpc_idscan_is(&sc, in + 6, n - 1));
	/* (what an index of the requests in flight by length and hash looks up) */
	assert_int_equal(sc.id_total, n);
	assert_true(jsonrpc_id_hash(in + 6, n) == sc.id_hash);
	assert_false(jsonrpc_id_hash(in + 6, n - 1) == sc.id_hash);
	in[6 + n - 1] = '\''; /* its closing quote */
	assert_false(jsonrpc_idscan_is(&sc, in + 6, n));
	in[6 + n - 1] = '"';
	if (!want_found) {
		assert_null(id);
		return;
	}
	assert_non_null(id);
	assert_int_equal(id_len, n);
	assert_memory_equal(id, in + 6, n);
}

static void
test_idscan_long_id(void **state)
{
	(void)state;
	check_idscan_len(2, true);
	check_idscan_len(127, true);
	check_idscan_len(128, true); /* fills id[128] exactly */
	check_idscan_len(129, false);
	check_idscan_len(200, false);
}

/* notifications/cancelled: its requestId, as canonical id text, whatever params_method. */
static void
test_cancel_request_id(void **state)
{
	struct jsonrpc_scanner *s = *state;
	char line[512];

	s->params_method = "mcpmux/endRun";
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'notifications/cancelled','params':"
				"{'requestId':'a\\u0062','reason':'timeout'}}"),
			 JSONRPC_NOTIFICATION);
	assert_str(s, s->params.has_request_id, s->params.request_id, "\"ab\"", "requestId", line);
	assert_str(s, s->params.has_reason, s->params.reason, "timeout", "reason", line);
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'params':{'requestId':1.50},'jsonrpc':'2.0',"
				"'method':'notifications/cancelled'}"),
			 JSONRPC_NOTIFICATION);
	assert_str(s, s->params.has_request_id, s->params.request_id, "1.50", "requestId", line);
	/* Another method's requestId is not read. */
	assert_int_equal(scan_q(s, line, sizeof(line),
				"{'jsonrpc':'2.0','method':'notifications/progress','params':"
				"{'requestId':3}}"),
			 JSONRPC_NOTIFICATION);
	assert_false(s->params.has_request_id);
	s->params_method = NULL;
}

/*
 * notifications/cancelled in a batch: each element's requestId (its params before its
 * method too), none for another method, and one past the first JSONRPC_MAX_ITEMS kept.
 */
static void
test_cancel_request_id_in_a_batch(void **state)
{
	struct jsonrpc_scanner *s = *state;
	char line[512];
	size_t len = 0;

	s->params_method = "mcpmux/endRun";
	assert_int_equal(
		scan_q(s, line, sizeof(line),
		       "[{'jsonrpc':'2.0','id':7,'method':'x','params':{'requestId':1}},"
		       "{'jsonrpc':'2.0','method':'notifications/cancelled','params':"
		       "{'requestId':'a\\u0062','reason':'timeout'}},"
		       "{'params':{'requestId':1.50},'jsonrpc':'2.0','method':'notifications/cancelled'},"
		       "{'jsonrpc':'2.0','method':'notifications/progress','params':{'requestId':3}},"
		       "{'jsonrpc':'2.0','method':'notifications/cancelled','params':{'r':{'requestId':4}}}]"),
		JSONRPC_BATCH);
	assert_int_equal(s->n_items, 5);
	assert_null(jsonrpc_cancels(s, &s->items[0], &len));
	assert_str(s, jsonrpc_cancels(s, &s->items[1], &len) != NULL, s->items[1].request_id,
		   "\"ab\"", "requestId", line);
	assert_str(s, jsonrpc_cancels(s, &s->items[2], &len) != NULL, s->items[2].request_id,
		   "1.50", "requestId", line);
	assert_null(jsonrpc_cancels(s, &s->items[3], &len));
	assert_null(jsonrpc_cancels(s, &s->items[4], &len));
	assert_false(s->params.has_request_id);
	s->params_method = NULL;

	/* past JSONRPC_MAX_ITEMS notifications, a cancellation is kept */
	static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"n\"},";
	static const char cancel[] = "{\"jsonrpc\":\"2.0\",\"method\":\"" JSONRPC_CANCELLED
				     "\",\"params\":{\"requestId\":9}}]";
	size_t n = 1 + 1100 * (sizeof(note) - 1) + sizeof(cancel);
	char *big = malloc(n);
	char *p = big;

	assert_non_null(big);
	*p++ = '[';
	for (int i = 0; i < 1100; i++) {
		memcpy(p, note, sizeof(note) - 1);
		p += sizeof(note) - 1;
	}
	memcpy(p, cancel, sizeof(cancel));
	assert_int_equal(jsonrpc_scan(s, big, strlen(big)), JSONRPC_BATCH);
	free(big);
	assert_int_equal(s->n_elements, 1101);
	assert_int_equal(s->n_items, JSONRPC_MAX_ITEMS + 1);
	const char *id = jsonrpc_cancels(s, &s->items[JSONRPC_MAX_ITEMS], &len);

	assert_non_null(id);
	assert_int_equal(len, 1);
	assert_memory_equal(id, "9", 1);
}

static size_t
key_of(const char *id, char *out)
{
	return jsonrpc_id_key(id, strlen(id), out);
}

/* Ids are keyed by JSON value. */
static void
test_id_keys(void **state)
{
	static const char *const same[][6] = {
		{ "1", "1.0", "1e0", "10e-1", "0.1e1", "1.000E+0" },
		{ "0", "-0", "0.0", "0e5", "-0.0e-3", "0E0" },
		{ "-12", "-12.0", "-1.2e1", "-120e-1", "-0.12E2", "-1200e-2" },
		{ "123456789012345678901234567890", "1.23456789012345678901234567890e29",
		  "123456789012345678901234567890.0", "12345678901234567890123456789e1",
		  "12345678901234567890123456789000e-2", "123456789012345678901234567890e0" },
		{ "\"ab\"", "\"a\\u0062\"", "\"\\u0061\\u0062\"", "\"\\u0061b\"", "\"ab\"",
		  "\"ab\"" },
		{ "\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"", "\"\\uD83D\\uDE00\"",
		  "\"\xf0\x9f\x98\x80\"", "\"\xf0\x9f\x98\x80\"", "\"\xf0\x9f\x98\x80\"" },
		{ "\"a/b\"", "\"a\\/b\"", "\"a\\u002fb\"", "\"a/b\"", "\"a/b\"", "\"a/b\"" },
		/* an escape as the last character, after a run of plain ones */
		{ "\"xy\\\"\"", "\"\\u0078y\\\"\"", "\"xy\\u0022\"", "\"x\\u0079\\u0022\"",
		  "\"xy\\\"\"", "\"xy\\\"\"" },
	};
	static const char *const different[] = {
		"1",
		"\"1\"",
		"2",
		"-1",
		"1e1",
		"0.1",
		"12345678901234567890123456789",
		"123456789012345678901234567890",
		"null",
		"\"\"",
		"\"a\"",
		"\"A\"",
		"\"a \"",
		"\"\\ud83d\"",
		"\"\\ude00\"",
	};
	static const char *const keys[][2] = {
		{ "10", "n1e1" },
		{ "123", "n123e0" },
		{ "0.5", "n5e-1" },
		{ "-12", "n-12e0" },
		{ "0", "n0" },
		{ "-1.5e-3", "n-15e-4" },
		{ "1e99999999999999999999", "n1e1000000000000000" },
		{ "1e-99999999999999999999", "n1e-1000000000000000" },
	};
	char a[256], b[256];

	(void)state;
	for (size_t g = 0; g < sizeof(keys) / sizeof(keys[0]); g++) {
		size_t n = key_of(keys[g][0], a);

		a[n] = '\0';
		assert_string_equal(a, keys[g][1]);
	}
	for (size_t r = 0; r < sizeof(same) / sizeof(same[0]); r++) {
		size_t la = key_of(same[r][0], a);

		assert_true(la > 0);
		for (size_t c = 1; c < 6; c++) {
			size_t lb = key_of(same[r][c], b);

			if (la != lb || memcmp(a, b, la) != 0) {
				fail_msg("%s and %s should be one id", same[r][0], same[r][c]);
			}
		}
	}
	for (size_t i = 0; i < sizeof(different) / sizeof(different[0]); i++) {
		size_t li = key_of(different[i], a);

		assert_true(li > 0);
		for (size_t j = i + 1; j < sizeof(different) / sizeof(different[0]); j++) {
			size_t lj = key_of(different[j], b);

			if (li == lj && memcmp(a, b, li) == 0) {
				fail_msg("%s and %s should be two ids", different[i], different[j]);
			}
		}
	}
	/* Not ids: no key. */
	static const char *const bad[] = { "",	      "01x",	   "1.",   ".5", "1e", "\"a",
					   "\"\\x\"", "\"\\u12\"", "true", "-",	 "+1" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (key_of(bad[i], a) != 0) {
			fail_msg("%s should have no key", bad[i]);
		}
	}
	/* Huge exponents are capped, never overflow. */
	assert_true(key_of("1e999999999999999999999999", a) > 0);
	assert_true(key_of("-1e-999999999999999999999999", a) > 0);
}

/* keep() of jsonrpc_without_answers(): the answers whose id's JSON text is ctx's. */
static bool
keep_id(void *ctx, const char *id, size_t id_len)
{
	const char *want = ctx;

	return id_len == strlen(want) && memcmp(id, want, id_len) == 0;
}

static void
test_without_answers(void **state)
{
	struct jsonrpc_scanner *s = *state, other;
	struct sbuf out = { 0 }, taken = { 0 };
	size_t dropped = 0;
	char line[1024], want[1024], id_1[] = "1", id_x[] = "\"x\"", id_3[] = "3";
	static const char *const mixed =
		" [ {'jsonrpc':'2.0','id':1,'result':{}} , {'jsonrpc':'2.0','id':2,'method':'a'},"
		"7 ,{'jsonrpc':'2.0','id':'x','error':{'code':1,'message':'m'}},"
		"{'jsonrpc':'2.0','method':'n'}] ";
	static const char *const rest =
		"[{'jsonrpc':'2.0','id':2,'method':'a'},7,{'jsonrpc':'2.0','method':'n'}]";

	jsonrpc_init(&other);
	/* Not a batch, and a batch without answers: nothing made, nothing dropped. */
	static const char *const none[] = {
		"{'jsonrpc':'2.0','id':1,'result':{}}",
		"[{'jsonrpc':'2.0','id':1,'method':'a'},{'jsonrpc':'2.0','method':'n'},3]",
		"[]",
		"not json",
	};

	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		q(line, sizeof(line), none[i]);
		(void)jsonrpc_scan(s, line, strlen(line));
		dropped = 99;
		assert_true(jsonrpc_without_answers(s, line, strlen(line), keep_id, id_1, &out,
						    &other, &taken, &dropped));
		assert_int_equal(out.len, 0);
		assert_int_equal(taken.len, 0);
		assert_int_equal(dropped, 0);
	}

	/* Every answer dropped: the other elements, in order, a batch again. */
	q(line, sizeof(line), mixed);
	assert_int_equal(jsonrpc_scan(s, line, strlen(line)), JSONRPC_BATCH);
	assert_true(jsonrpc_without_answers(s, line, strlen(line), NULL, NULL, &out, &other, NULL,
					    &dropped));
	assert_int_equal(dropped, 2);
	assert_string_equal(out.buf, q(want, sizeof(want), rest));
	assert_int_equal(other.kind, JSONRPC_BATCH);
	assert_int_equal(other.n_elements, 3);
	assert_item(&other, &other.items[0], JSONRPC_REQUEST, "2", "a", out.buf);
	assert_item(&other, &other.items[2], JSONRPC_NOTIFICATION, NULL, "n", out.buf);

	/* The answer keep() takes goes on in a batch of its own; the other is dropped. */
	assert_true(jsonrpc_without_answers(s, line, strlen(line), keep_id, id_x, &out, &other,
					    &taken, &dropped));
	assert_int_equal(dropped, 1);
	assert_string_equal(out.buf, q(want, sizeof(want), rest));
	assert_string_equal(taken.buf,
			    q(want, sizeof(want),
			      "[{'jsonrpc':'2.0','id':'x','error':{'code':1,'message':'m'}}]"));

	/* Into the batch's own scanner: the same. */
	assert_true(jsonrpc_without_answers(s, line, strlen(line), keep_id, id_1, &out, s, &taken,
					    &dropped));
	assert_int_equal(dropped, 1);
	assert_string_equal(out.buf, q(want, sizeof(want), rest));
	assert_string_equal(taken.buf,
			    q(want, sizeof(want), "[{'jsonrpc':'2.0','id':1,'result':{}}]"));
	assert_int_equal(s->kind, JSONRPC_BATCH);
	assert_int_equal(s->n_elements, 3);

	/* jsonrpc_drop_answers(): the answer keep() takes stays in its place; the dropped one
	 * goes to a batch of its own. */
	q(line, sizeof(line), mixed);
	assert_int_equal(jsonrpc_scan(s, line, strlen(line)), JSONRPC_BATCH);
	assert_true(jsonrpc_drop_answers(s, line, strlen(line), keep_id, id_x, &out, &other, &taken,
					 &dropped));
	assert_int_equal(dropped, 1);
	assert_string_equal(out.buf,
			    q(want, sizeof(want),
			      "[{'jsonrpc':'2.0','id':2,'method':'a'},7,{'jsonrpc':'2.0','id':'x',"
			      "'error':{'code':1,'message':'m'}},{'jsonrpc':'2.0','method':'n'}]"));
	assert_int_equal(other.kind, JSONRPC_BATCH);
	assert_int_equal(other.n_elements, 4);
	assert_string_equal(taken.buf,
			    q(want, sizeof(want), "[{'jsonrpc':'2.0','id':1,'result':{}}]"));

	/* Answers only: nothing is left, each one dropped. */
	q(line, sizeof(line),
	  "[{'jsonrpc':'2.0','id':1,'result':1},{'jsonrpc':'2.0','id':2,'error':{'code':1,"
	  "'message':'m'}}]");
	assert_int_equal(jsonrpc_scan(s, line, strlen(line)), JSONRPC_BATCH);
	assert_true(jsonrpc_without_answers(s, line, strlen(line), keep_id, id_3, &out, &other,
					    &taken, &dropped));
	assert_int_equal(out.len, 0);
	assert_int_equal(taken.len, 0);
	assert_int_equal(dropped, 2);

	sbuf_release(&out);
	sbuf_release(&taken);
	jsonrpc_release(&other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cancel_request_id, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_request_id_in_a_batch, scanner_setup,
						scanner_teardown),
		cmocka_unit_test(test_id_keys),
		cmocka_unit_test_setup_teardown(test_without_answers, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_golden_one_scanner, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_golden_reverse_twice, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_simd_or_yajl, scanner_setup, scanner_teardown),
		cmocka_unit_test_setup_teardown(test_simd_trim, scanner_setup, scanner_teardown),
		cmocka_unit_test_setup_teardown(test_trim_long_id, scanner_setup, scanner_teardown),
		cmocka_unit_test_setup_teardown(test_raw_nul_in_string, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_structured_invalid_utf8, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_distinct_ids_stay_distinct, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_recovers_after_invalid, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_batch_mixed, scanner_setup, scanner_teardown),
		cmocka_unit_test_setup_teardown(test_batch_of_scalars, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_batch_cap, scanner_setup, scanner_teardown),
		cmocka_unit_test_setup_teardown(test_nesting_limit, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_long_strings, scanner_setup, scanner_teardown),
		cmocka_unit_test_setup_teardown(test_end_run_params, scanner_setup,
						scanner_teardown),
		cmocka_unit_test_setup_teardown(test_params_method, scanner_setup,
						scanner_teardown),
		cmocka_unit_test(test_text_ok_every_offset),
		cmocka_unit_test_setup_teardown(test_method_is, scanner_setup, scanner_teardown),
		cmocka_unit_test(test_kind_name),
		cmocka_unit_test_setup_teardown(test_release_unused, scanner_setup,
						scanner_teardown),
		cmocka_unit_test(test_answer_id),
		cmocka_unit_test(test_idscan_every_piece_size),
		cmocka_unit_test(test_idscan_kind),
		cmocka_unit_test(test_idscan_batch),
		cmocka_unit_test(test_idscan_feed_line),
		cmocka_unit_test(test_idscan_every_answer_of_a_batch),
		cmocka_unit_test(test_idscan_long_id),
		cmocka_unit_test(test_bigscan_every_piece_size),
		cmocka_unit_test(test_bigscan_long_session),
	};

	return cmocka_run_group_tests_name("jsonrpc", tests, NULL, NULL);
}
