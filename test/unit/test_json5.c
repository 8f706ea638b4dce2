/*
 * Unit tests for json5: every construct of JSON5 accepted (and JSON), every kind of
 * refusal with its offset, decoded strings and keys, the spans of values, keys, leads and
 * commas, comments and white space in every position, CRLF and the byte-order mark, what
 * the keep function keeps, and json5_skip().
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

#include "mcpmux/json5.h"

#define DEPTH 64

/* Keep everything, each node's role its depth. */
static int
keep_all(void *ctx, int parent, const char *key, size_t klen)
{
	(void)ctx;
	(void)key;
	(void)klen;
	return parent + 1;
}

static int
parse(const char *text, size_t len, struct json5_doc *doc, struct json5_error *err)
{
	return json5_parse(text, len, DEPTH, keep_all, NULL, 1, doc, err);
}

#define PARSE_OK(lit, doc) parse_ok(lit, sizeof(lit) - 1, doc)

static void
parse_ok(const char *text, size_t len, struct json5_doc *doc)
{
	struct json5_error err;

	if (parse(text, len, doc, &err) != 0) {
		fail_msg("'%.*s' refused at %zu: %s", (int)len, text, err.off, err.msg);
	}
}

/* Refused at offset off with a message that holds `what`. */
static void
refused_len(const char *text, size_t len, size_t off, const char *what)
{
	struct json5_doc doc;
	struct json5_error err;

	if (parse(text, len, &doc, &err) != -1) {
		json5_doc_release(&doc);
		fail_msg("'%.*s' accepted", (int)len, text);
	}
	if (strstr(err.msg, what) == NULL) {
		fail_msg("'%.*s': message '%s' lacks '%s'", (int)len, text, err.msg, what);
	}
	if (err.off != off) {
		fail_msg("'%.*s': refused at %zu, not %zu (%s)", (int)len, text, err.off, off,
			 err.msg);
	}
	assert_false(err.nomem);
	assert_null(doc.root.m);
}

static void
refused(const char *text, size_t off, const char *what)
{
	refused_len(text, strlen(text), off, what);
}

static void
accepted(const char *text)
{
	struct json5_doc doc;

	parse_ok(text, strlen(text), &doc);
	json5_doc_release(&doc);
}

/* The text of a node. */
static void
assert_span(const char *text, const struct json5_node *n, const char *want)
{
	size_t len = strlen(want);

	if (n->end - n->start != len || memcmp(text + n->start, want, len) != 0) {
		fail_msg("span '%.*s', wanted '%s'", (int)(n->end - n->start), text + n->start,
			 want);
	}
}

/* ---- what is accepted ---- */

static void
test_json_is_json5(void **state)
{
	static const char *const docs[] = {
		"{}",
		"[]",
		"null",
		"true",
		"false",
		"0",
		"-0",
		"1.5e-3",
		"-12E+2",
		"\"\"",
		"\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"",
		"{\"a\": [1, 2, {\"b\": null}], \"c\": {}}",
		" \t\r\n{ \"a\" : 1 } \r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		accepted(docs[i]);
	}
}

static void
test_json5_constructs(void **state)
{
	static const char *const docs[] = {
		/* objects and keys */
		"{a: 1}",
		"{$: 1, _: 2, a$_9: 3, \\u0061b: 4, a\\u0062: 5}",
		"{true: 1, false: 2, null: 3, Infinity: 4, NaN: 5, default: 6, if: 7}",
		"{'single': 1, \"double\": 2}",
		"{a: 1,}",
		"{caf\xc3\xa9: 1, \xe5\x90\x8d\xe5\x89\x8d: 2, a\xe2\x80\x8c"
		"b: 3}",
		/* arrays */
		"[1,]",
		"[[],[[]],{},]",
		/* strings */
		"'single'",
		"'with \"double\" inside'",
		"\"with 'single' inside\"",
		"'esc: \\' \\\" \\\\ \\b \\f \\n \\r \\t \\v \\0 \\x41 \\u0042'",
		"'line \\\ncontinued'",
		"'line \\\r\ncontinued'",
		"'line \\\rcontinued'",
		"'line \\\xe2\x80\xa8"
		"continued'",
		"'raw \xe2\x80\xa8 and \xe2\x80\xa9 inside'",
		"'non-escapes: \\a \\c \\z \\%'",
		"'raw\ttab'",
		/* numbers */
		"0x1F",
		"0XaBc",
		"-0x1",
		"+0x1",
		".5",
		"5.",
		"+.5e1",
		"-5.e-1",
		"+1",
		"Infinity",
		"-Infinity",
		"+Infinity",
		"NaN",
		"-NaN",
		"+NaN",
		"0e0",
		"123456789012345678901234567890",
		/* white space */
		"\xef\xbb\xbf{}",
		"{\xef\xbb\xbf}",
		"\v\f{}\xc2\xa0\xe2\x80\xa8\xe2\x80\xa9\xe3\x80\x80\xe2\x80\x80\xe2\x80\x8a",
		/* comments */
		"// only a comment, then\n{}",
		"{} // at the end, no newline",
		"{}/**/",
		"/* a */{/* b */a/* c */:/* d */1/* e */,/* f */}/* g */",
		"[ // line\n 1, /* block\n over lines */ 2 // after\n]",
		"{a: 1 /* * / ** */}",
		"{a: 1 // ends at a CR\r}",
		"{a: 1 // ends at U+2028\xe2\x80\xa8}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		accepted(docs[i]);
	}
}

/* ---- what is refused, and where ---- */

static void
test_refusals(void **state)
{
	(void)state;
	refused("", 0, "expected a value, found the end of the file");
	refused("   // nothing\n", 14, "expected a value");
	refused("{", 1, "expected a key or '}', found the end of the file");
	refused("{a}", 2, "expected ':' after the key, found '}'");
	refused("{a:1,", 5, "expected a key or '}', found the end of the file");
	refused("{a:1, ", 6, "expected a key or '}', found the end of the file");
	refused("[1,", 3, "expected a value, found the end of the file");
	refused("{a", 2, "expected ':' after the key, found the end of the file");
	refused("{a:", 3, "expected a value, found the end of the file");
	refused("{a:}", 3, "expected a value, found '}'");
	refused("{a:1 b:2}", 5, "expected ',' or '}' after the member, found 'b'");
	refused("[1 2]", 3, "expected ',' or ']' after the item, found '2'");
	refused("{,}", 1, "expected a key or '}', found ','");
	refused("[,]", 1, "expected a value, found ','");
	refused("[1,,]", 3, "expected a value, found ','");
	refused("{a:1,,}", 5, "expected a key or '}', found ','");
	refused("{} {}", 3, "expected nothing more after the value, found '{'");
	refused("{}}", 2, "expected nothing more");
	refused("[1]]", 3, "expected nothing more");
	refused("{1: 2}", 1, "expected a key or '}', found '1'");
	refused("{-a: 2}", 1, "expected a key");
	refused("{a-b: 2}", 2, "expected ':' after the key, found '-'");
	refused("{\\u0030a: 1}", 1, "\\u0030 cannot be part of an unquoted key");
	refused("{a\\u0020b: 1}", 2, "\\u0020 cannot be part of an unquoted key");
	refused("{a\\x41: 1}", 2, "invalid escape in a key");
	refused("{\\ud800: 1}", 1, "cannot be part of an unquoted key");
	/* words */
	refused("tru", 0, "found 'tru'");
	refused("[truex]", 1, "found 'truex'");
	refused("undefined", 0, "strings need quotes");
	refused("{a: b}", 4, "found 'b'");
	refused("infinity", 0, "found 'infinity'");
	/* numbers */
	refused("01", 0, "invalid number '01'");
	refused("-", 0, "invalid number");
	refused("+", 0, "invalid number");
	refused(".", 0, "invalid number");
	refused("+.", 0, "invalid number");
	refused("1e", 0, "invalid number '1e'");
	refused("1e+", 0, "invalid number");
	refused(".e1", 0, "invalid number");
	refused("0x", 0, "invalid number '0x'");
	refused("0xg", 0, "invalid number '0xg'");
	refused("1x", 0, "invalid number '1x'");
	refused("1.2.3", 0, "invalid number '1.2.3'");
	refused("--1", 0, "invalid number");
	refused("- 1", 0, "invalid number");
	refused("+-Infinity", 0, "invalid number");
	refused("-Infinityx", 0, "invalid number");
	refused("[1a]", 1, "invalid number '1a'");
	refused("0x1.5", 0, "invalid number");
	refused("00", 0, "invalid number");
	/* strings */
	refused("'abc", 0, "unterminated string");
	refused("\"abc'", 0, "unterminated string");
	refused("[\"a\\", 1, "unterminated string");
	refused("'a\nb'", 2, "line break in a string");
	refused("'a\rb'", 2, "line break in a string");
	refused("'\\1'", 1, "invalid escape '\\1'");
	refused("'\\9'", 1, "invalid escape '\\9'");
	refused("'\\01'", 1, "'\\0' followed by a digit");
	refused("'\\x4'", 1, "'\\x' needs two hex digits");
	refused("'\\u123'", 1, "'\\u' needs four hex digits");
	refused("'\\u12g4'", 1, "'\\u' needs four hex digits");
	/* comments and stray bytes */
	refused("{} /* open", 3, "unterminated comment");
	refused("{} / 1", 3, "found '/'");
	refused("{a: 1} #", 7, "found '#'");
	refused_len("{}\0", 3, 2, "found U+0000");
	/* UTF-8 */
	refused("{} \xff", 3, "invalid UTF-8");
	refused("'\xc3'", 1, "invalid UTF-8");
	refused("'\xed\xa0\x80'", 1, "invalid UTF-8"); /* a surrogate as UTF-8 */
	refused("'\xc0\xaf'", 1, "invalid UTF-8");     /* overlong */
	refused("{a\xff: 1}", 2, "invalid UTF-8");
	refused("// \xff\n{}", 3, "invalid UTF-8");
	refused("/* \xf4\x90\x80\x80 */{}", 3, "invalid UTF-8");
	refused("'\\\xff'", 2, "invalid UTF-8");
}

static void
test_depth(void **state)
{
	char buf[2 * DEPTH + 4];
	struct json5_doc doc;
	size_t n = 0;

	(void)state;
	for (int i = 0; i < DEPTH; i++) {
		buf[n++] = '[';
	}
	for (int i = 0; i < DEPTH; i++) {
		buf[n++] = ']';
	}
	parse_ok(buf, n, &doc);
	json5_doc_release(&doc);
	memmove(buf + 1, buf, n);
	buf[0] = '{';
	memmove(buf + 3, buf + 1, n);
	memcpy(buf + 1, "a:", 2);
	buf[n + 3] = '}';
	refused_len(buf, n + 4, 3 + DEPTH - 1, "nested deeper than 64 levels");
}

/* ---- values, spans, decoding ---- */

static void
test_strings_decoded(void **state)
{
	static const struct {
		const char *json5;
		const char *value;
		size_t len;
	} cases[] = {
		{ "'a\\'b\\\"c'", "a'b\"c", 5 },
		{ "\"\\b\\f\\n\\r\\t\\v\"", "\b\f\n\r\t\v", 6 },
		{ "'\\0'", "\0", 1 },
		{ "'\\x41\\xe9'", "A\xc3\xa9", 3 },
		{ "'\\u00e9\\u20AC'", "\xc3\xa9\xe2\x82\xac", 5 },
		{ "'\\uD83D\\uDE00'", "\xf0\x9f\x98\x80", 4 },
		{ "'\\ud800x'", "\xed\xa0\x80x", 4 },		       /* a lone surrogate */
		{ "'\\udc00\\ud800'", "\xed\xb0\x80\xed\xa0\x80", 6 }, /* the wrong order */
		{ "'a\\\nb'", "ab", 2 },
		{ "'a\\\r\nb'", "ab", 2 },
		{ "'a\\\rb'", "ab", 2 },
		{ "'a\\\xe2\x80\xa8"
		  "b'",
		  "ab", 2 },
		{ "'\\a\\z\\%\\\xc3\xa9'", "az%\xc3\xa9", 5 },
		{ "'raw\xe2\x80\xa8'", "raw\xe2\x80\xa8", 6 },
		{ "''", "", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json5_doc doc;

		parse_ok(cases[i].json5, strlen(cases[i].json5), &doc);
		assert_int_equal(doc.root.type, JSON5_STRING);
		assert_int_equal(doc.root.len, cases[i].len);
		assert_memory_equal(doc.root.str, cases[i].value, cases[i].len);
		assert_int_equal(doc.root.str[doc.root.len], '\0');
		assert_int_equal(doc.root.start, 0);
		assert_int_equal(doc.root.end, strlen(cases[i].json5));
		assert_int_equal(doc.root.quote, cases[i].json5[0]);
		json5_doc_release(&doc);
	}
}

static void
test_spans(void **state)
{
	static const char text[] = "\xef\xbb\xbf// head\n"
				   "{\n"
				   "  a: 'x', // one\n"
				   "  \"b\" /* k */ : [ 1 , 0x2, ],\n"
				   "  'c':{d:null},\n"
				   "  e\\u0066: -Infinity\n"
				   "}\n";
	struct json5_doc doc;
	const struct json5_node *r, *b;

	(void)state;
	PARSE_OK(text, &doc);
	r = &doc.root;
	assert_int_equal(r->type, JSON5_OBJECT);
	assert_int_equal(r->role, 1);
	assert_int_equal(r->start, strchr(text, '{') - text);
	assert_int_equal(r->end, sizeof(text) - 2);
	assert_int_equal(r->n, 4);
	assert_int_equal(r->n_all, 4);
	assert_false(r->trailing_comma);

	assert_string_equal(r->m[0].key, "a");
	assert_int_equal(r->m[0].key_quote, 0);
	assert_int_equal(r->m[0].index, 0);
	assert_int_equal(r->m[0].lead, r->start + 1);
	assert_memory_equal(text + r->m[0].key_start, "a: 'x'", 6);
	assert_int_equal(r->m[0].key_end, r->m[0].key_start + 1);
	assert_span(text, &r->m[0].val, "'x'");
	assert_string_equal(r->m[0].val.str, "x");
	assert_int_equal(text[r->m[0].comma], ',');
	assert_int_equal(r->m[0].comma, r->m[0].val.end);

	assert_string_equal(r->m[1].key, "b");
	assert_int_equal(r->m[1].key_quote, '"');
	assert_int_equal(r->m[1].lead, r->m[0].comma + 1);
	assert_int_equal(r->m[1].key_end - r->m[1].key_start, 3);
	b = &r->m[1].val;
	assert_span(text, b, "[ 1 , 0x2, ]");
	assert_int_equal(b->type, JSON5_ARRAY);
	assert_int_equal(b->n, 2);
	assert_true(b->trailing_comma);
	assert_null(b->m[0].key);
	assert_int_equal(b->m[0].key_start, b->m[0].val.start);
	assert_span(text, &b->m[0].val, "1");
	assert_span(text, &b->m[1].val, "0x2");
	assert_int_equal(b->m[0].lead, b->start + 1);
	assert_int_equal(text[b->m[0].comma - 1], ' ');
	assert_int_equal(b->m[1].comma, b->m[1].val.end);
	assert_int_equal(b->m[1].val.role, 3);

	assert_string_equal(r->m[2].key, "c");
	assert_int_equal(r->m[2].key_quote, '\'');
	assert_span(text, &r->m[2].val, "{d:null}");
	assert_int_equal(r->m[2].val.m[0].val.type, JSON5_NULL);

	assert_string_equal(r->m[3].key, "ef");
	assert_int_equal(r->m[3].klen, 2);
	assert_int_equal(r->m[3].key_end - r->m[3].key_start, 7);
	assert_span(text, &r->m[3].val, "-Infinity");
	assert_int_equal(r->m[3].val.type, JSON5_NUMBER);
	assert_int_equal(r->m[3].comma, JSON5_NONE);

	/* Strings counted by quote, keys too: 'x', "b", 'c' = 1 double, 2 single. */
	assert_int_equal(r->quotes[0], 1);
	assert_int_equal(r->quotes[1], 2);
	/* Spanning lines: the root; not the one-line array and object. */
	assert_int_equal(doc.n_multi, 1);
	assert_int_equal(doc.n_multi_trailing, 0);
	json5_doc_release(&doc);
	assert_null(doc.root.m);
}

static void
test_literals(void **state)
{
	static const struct {
		const char *text;
		enum json5_type type;
	} cases[] = {
		{ "null", JSON5_NULL },	      { "true", JSON5_BOOL }, { "false", JSON5_BOOL },
		{ "NaN", JSON5_NUMBER },      { "-0", JSON5_NUMBER }, { "0x0", JSON5_NUMBER },
		{ "'s'", JSON5_STRING },      { "{}", JSON5_OBJECT }, { "[]", JSON5_ARRAY },
		{ "Infinity", JSON5_NUMBER },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json5_doc doc;
		char text[32];

		snprintf(text, sizeof(text), "[ %s ]", cases[i].text);
		parse_ok(text, strlen(text), &doc);
		assert_int_equal(doc.root.m[0].val.type, cases[i].type);
		assert_span(text, &doc.root.m[0].val, cases[i].text);
		json5_doc_release(&doc);
	}
}

/* Comments in every position, in CRLF text: the spans skip them, nothing else moves. */
static void
test_comments_everywhere(void **state)
{
	static const char text[] =
		"/*0*/\r\n"
		"{ //1\r\n"
		"  /*2*/ 'k' /*3*/ : /*4*/ [ /*5*/ 'v' /*6*/ , /*7*/ ] /*8*/ , //9\r\n"
		"  /*10*/\r\n"
		"} //11";
	struct json5_doc doc;
	const struct json5_member *m;

	(void)state;
	PARSE_OK(text, &doc);
	m = &doc.root.m[0];
	assert_memory_equal(text + m->key_start, "'k'", 3);
	assert_span(text, &m->val, "[ /*5*/ 'v' /*6*/ , /*7*/ ]");
	assert_span(text, &m->val.m[0].val, "'v'");
	assert_true(m->val.trailing_comma);
	assert_true(doc.root.trailing_comma);
	assert_int_equal(text[m->comma], ',');
	assert_int_equal(m->comma, strstr(text, "/*8*/ ,") - text + 6);
	assert_int_equal(doc.n_multi, 1);
	assert_int_equal(doc.n_multi_trailing, 1);
	/* The lead: white space and comments from just after the '{'. */
	assert_int_equal(m->lead, strchr(text, '{') - text + 1);
	json5_doc_release(&doc);
}

static int
keep_some(void *ctx, int parent, const char *key, size_t klen)
{
	int *calls = ctx;

	(*calls)++;
	if (parent == 1 && key != NULL && klen == 4 && memcmp(key, "keep", 4) == 0) {
		return 2;
	}
	return parent == 2 ? 3 : 0;
}

static void
test_keep(void **state)
{
	static const char text[] = "{drop: {keep: [1, 2]}, keep: ['a', {x: 1}], 'keep': [3], z: 0}";
	struct json5_doc doc;
	struct json5_error err;
	int calls = 0;

	(void)state;
	assert_int_equal(json5_parse(text, strlen(text), 8, keep_some, &calls, 1, &doc, &err), 0);
	/* Asked for each member of a kept container: 4 of the root, 3 items, and x. */
	assert_int_equal(calls, 4 + 2 + 1 + 1);
	assert_int_equal(doc.root.n_all, 4);
	assert_int_equal(doc.root.n, 2);
	assert_int_equal(doc.root.m[0].index, 1);
	assert_int_equal(doc.root.m[1].index, 2);
	assert_int_equal(doc.root.m[0].val.n, 2);
	assert_string_equal(doc.root.m[0].val.m[0].val.str, "a");
	/* An item with role 3: its own member was dropped. */
	assert_int_equal(doc.root.m[0].val.m[1].val.n, 0);
	assert_int_equal(doc.root.m[0].val.m[1].val.n_all, 1);
	/* Dropped values are still checked. */
	json5_doc_release(&doc);
	assert_int_equal(json5_parse("{drop: [1 2]}", 13, 8, keep_some, &calls, 1, &doc, &err), -1);
	assert_int_equal(err.off, 10);
	/* No keep function: only the root. */
	assert_int_equal(json5_parse(text, strlen(text), 8, NULL, NULL, 5, &doc, &err), 0);
	assert_int_equal(doc.root.role, 5);
	assert_int_equal(doc.root.n, 0);
	assert_int_equal(doc.root.n_all, 4);
	assert_int_equal(doc.root.quotes[1], 2);
	json5_doc_release(&doc);
	/* Unkept strings are not decoded. */
	assert_int_equal(json5_parse("'abc'", 5, 8, NULL, NULL, 0, &doc, &err), 0);
	assert_null(doc.root.str);
	json5_doc_release(&doc);
}

static void
test_multi_line_stats(void **state)
{
	struct json5_doc doc;

	(void)state;
	PARSE_OK("{\n a: [\n 1,\n ],\n b: [2,],\n c: {\n},\n}", &doc);
	/* Spanning lines, non-empty: the root and a; of which both end with a comma. */
	assert_int_equal(doc.n_multi, 2);
	assert_int_equal(doc.n_multi_trailing, 2);
	json5_doc_release(&doc);
	PARSE_OK("{\r\n \"a\": [\r\n 1\r\n ]\r\n}", &doc);
	assert_int_equal(doc.n_multi, 2);
	assert_int_equal(doc.n_multi_trailing, 0);
	json5_doc_release(&doc);
	/* A line continuation is a line break too; a lone CR is one. */
	PARSE_OK("['a\\\nb']", &doc);
	assert_int_equal(doc.n_multi, 1);
	json5_doc_release(&doc);
	PARSE_OK("[1,\r2]", &doc);
	assert_int_equal(doc.n_multi, 1);
	json5_doc_release(&doc);
}

static void
test_skip(void **state)
{
	static const char t[] = "  /* c */ // d\n\xc2\xa0\xef\xbb\xbf x";
	size_t x = sizeof(t) - 2;

	(void)state;
	assert_int_equal(json5_skip(t, sizeof(t) - 1, 0, true), x);
	assert_int_equal(json5_skip(t, sizeof(t) - 1, 0, false), 2);
	assert_int_equal(json5_skip(t, sizeof(t) - 1, 9, false), 10);
	assert_int_equal(json5_skip(t, sizeof(t) - 1, 10, true), x);
	assert_int_equal(json5_skip(t, 5, 0, false), 2);
	assert_int_equal(json5_skip("  ", 2, 0, true), 2);
	assert_int_equal(json5_skip("// x\xe2\x80\xa8y", 8, 0, true), 7);
	assert_true(json5_is_space(0xfeff));
	assert_true(json5_is_space(0x3000));
	assert_false(json5_is_space(0x200b));
	assert_false(json5_is_space('x'));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_is_json5),
		cmocka_unit_test(test_json5_constructs),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_strings_decoded),
		cmocka_unit_test(test_spans),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_comments_everywhere),
		cmocka_unit_test(test_keep),
		cmocka_unit_test(test_multi_line_stats),
		cmocka_unit_test(test_skip),
	};

	return cmocka_run_group_tests_name("json5", tests, NULL, NULL);
}
