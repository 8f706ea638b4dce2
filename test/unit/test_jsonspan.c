/*
 * Unit tests for jsonspan: members found by path in valid JSON (nesting, escapes,
 * arrays and strings that look like keys skipped), absent and malformed inputs, and
 * every prefix of every case read without going past its end (the sanitizers watch:
 * each prefix is copied into a buffer of exactly its size).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/jsonspan.h"

#include "quote.h"

static bool
find(const char *json, const char *a, const char *b, const char *c, char *out, size_t cap)
{
	const char *path[3] = { a, b, c };
	size_t n = c != NULL ? 3 : b != NULL ? 2 : 1;
	struct jsonspan v;

	if (!jsonspan_find(json, strlen(json), path, n, &v)) {
		return false;
	}
	assert_true(v.len < cap);
	memcpy(out, v.p, v.len);
	out[v.len] = '\0';
	return true;
}

static void
test_found(void **state)
{
	char out[256];

	(void)state;
	assert_true(find("{\"id\":1}", "id", NULL, NULL, out, sizeof(out)));
	assert_string_equal(out, "1");
	assert_true(find(" { \"a\" : { \"b\" : \"x y\" } } ", "a", "b", NULL, out, sizeof(out)));
	assert_string_equal(out, "\"x y\"");
	assert_true(find("{\"params\":{\"_meta\":{\"progressToken\":-1.5e3}}}", "params", "_meta",
			 "progressToken", out, sizeof(out)));
	assert_string_equal(out, "-1.5e3");
	/* members before the one wanted: containers, strings with quotes and braces */
	assert_true(find("{\"x\":[1,{\"id\":2},\"}\"],\"s\":\"\\\"id\\\":3\",\"id\":{\"k\":[]}}",
			 "id", NULL, NULL, out, sizeof(out)));
	assert_string_equal(out, "{\"k\":[]}");
	/* escaped backslashes and quotes, the string's end right after one */
	assert_true(find("{\"s\":\"\\\\\",\"t\":\"\\\"\\\\\\\"}\\\\\",\"id\":5}", "id", NULL, NULL,
			 out, sizeof(out)));
	assert_string_equal(out, "5");
	/* of two of one name the last wins, at every step (as yajl and JSON.parse); true,
	 * false, null */
	assert_true(find("{\"a\":true,\"a\":false}", "a", NULL, NULL, out, sizeof(out)));
	assert_string_equal(out, "false");
	assert_true(
		find("{\"params\":{\"_meta\":{\"progressToken\":\"a\",\"progressToken\":\"b\"}}}",
		     "params", "_meta", "progressToken", out, sizeof(out)));
	assert_string_equal(out, "\"b\"");
	assert_true(find("{\"a\":{\"b\":1},\"a\":{\"b\":2,\"b\":3},\"c\":4}", "a", "b", NULL, out,
			 sizeof(out)));
	assert_string_equal(out, "3");
	assert_true(find("{\"a\":1,\"a\":{\"b\":2}}", "a", "b", NULL, out, sizeof(out)));
	assert_string_equal(out, "2");
	assert_true(find("{\"a\":null}", "a", NULL, NULL, out, sizeof(out)));
	assert_string_equal(out, "null");
	/* a key is compared as its bytes */
	assert_true(find("{\"\\u0069d\":1,\"id\":2}", "id", NULL, NULL, out, sizeof(out)));
	assert_string_equal(out, "2");
}

static void
test_not_found(void **state)
{
	char out[64];
	const char *path[JSONSPAN_PATH_MAX + 1] = { "a", "a", "a", "a", "a", "a", "a", "a", "a" };
	struct jsonspan v;

	(void)state;
	assert_false(find("{}", "id", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"a\":1}", "a", "b", NULL, out, sizeof(out)));
	assert_false(find("{\"a\":[{\"b\":1}]}", "a", "b", NULL, out, sizeof(out)));
	assert_false(find("[{\"a\":1}]", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("\"a\"", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"b\":{\"a\":1}}", "a", NULL, NULL, out, sizeof(out)));
	/* an earlier member of the name is not taken when a later one hides it */
	assert_false(find("{\"a\":{\"b\":1},\"a\":{\"c\":2}}", "a", "b", NULL, out, sizeof(out)));
	assert_false(find("{\"a\":{\"b\":1},\"a\":[]}", "a", "b", NULL, out, sizeof(out)));
	assert_false(find("", "a", NULL, NULL, out, sizeof(out)));
	assert_false(jsonspan_find("{\"a\":1}", 7, path, 0, &v));
	assert_false(jsonspan_find("{\"a\":1}", 7, path, JSONSPAN_PATH_MAX + 1, &v));
	/* malformed */
	assert_false(find("{\"a\" 1}", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"x\":1 \"a\":2}", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"x\":}", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"x\":[1, \"a\":1}", "a", NULL, NULL, out, sizeof(out)));
	/* the object is read to its end, for a later member of the name */
	assert_false(find("{\"a\":1,", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"a\":1 2}", "a", NULL, NULL, out, sizeof(out)));
	assert_false(jsonspan_find("{\"x\":\0, \"a\":1}", 14, path, 1, &v));
	assert_false(jsonspan_find("{\"x\":[\0], \"a\":1}", 16, path, 1, &v));
}

static void
test_plain_string(void **state)
{
	struct jsonspan v = { "\"2025-11-25\"", 12 };
	const char *s;
	size_t n;

	(void)state;
	assert_true(jsonspan_plain_string(&v, &s, &n));
	assert_int_equal(n, 10);
	assert_memory_equal(s, "2025-11-25", 10);
	v = (struct jsonspan){ "\"a\\nb\"", 6 };
	assert_false(jsonspan_plain_string(&v, &s, &n));
	v = (struct jsonspan){ "12", 2 };
	assert_false(jsonspan_plain_string(&v, &s, &n));
	v = (struct jsonspan){ "\"", 1 };
	assert_false(jsonspan_plain_string(&v, &s, &n));
	v = (struct jsonspan){ "\"\"", 2 };
	assert_true(jsonspan_plain_string(&v, &s, &n));
	assert_int_equal(n, 0);
}

/* Every prefix, in a buffer of its exact size: nothing is read beyond it. */
static void
test_prefixes(void **state)
{
	static const char *const cases[] = {
		"{\"params\":{\"_meta\":{\"progressToken\":\"tok\\\"en\"},\"x\":[1,2,{}]}}",
		"{\"a\":\"\\\\\",\"params\":{\"progressToken\":12345}}",
		"{\"params\" : { \"x\" : [ \"]\" , { \"progressToken\" : 1 } ] } }",
	};
	const char *path[] = { "params", "_meta", "progressToken" };

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t len = strlen(cases[c]);

		for (size_t n = 0; n <= len; n++) {
			char *buf = malloc(n > 0 ? n : 1);
			struct jsonspan v;

			assert_non_null(buf);
			memcpy(buf, cases[c], n);
			for (size_t depth = 1; depth <= 3; depth++) {
				if (jsonspan_find(buf, n, path, depth, &v)) {
					assert_true(v.p >= buf && v.p + v.len <= buf + n);
				}
			}
			free(buf);
		}
	}
}

/* ---- one-step paths, as handshake.c uses them ---- */

/* The member key of json (after q()) is want (after q()), or absent when want is NULL. */
static void
assert_member(const char *json, const char *key, const char *want)
{
	char j[512], w[512];
	const char *v = NULL;
	size_t vlen = 0;
	size_t len = strlen(q(j, sizeof(j), json));
	bool found = jsonspan_member(j, len, key, &v, &vlen);

	if (want == NULL) {
		if (found) {
			fail_msg("%s: %s should be absent, got %.*s", j, key, (int)vlen, v);
		}
		return;
	}
	q(w, sizeof(w), want);
	if (!found) {
		fail_msg("%s: %s not found", j, key);
	}
	if (vlen != strlen(w) || memcmp(v, w, vlen) != 0) {
		fail_msg("%s: %s is %.*s, want %s", j, key, (int)vlen, v, w);
	}
	/* A span of json itself. */
	assert_true(v >= j && v + vlen <= j + len);
}

static void
test_member(void **state)
{
	static const char *const table[][3] = {
		/* json, key, value (NULL: absent) */
		{ "{'a':1,'b':2}", "a", "1" },
		{ "{'a':1,'b':2}", "b", "2" },
		{ "{'a':1,'b':2}", "c", NULL },
		{ "{}", "a", NULL },
		{ "{ }", "a", NULL },
		{ "{'a':-1.5e+3}", "a", "-1.5e+3" },
		{ "{'a':true,'b':false,'c':null}", "b", "false" },
		{ "{'a':true,'b':false,'c':null}", "c", "null" },
		{ "{'a':'x','b':'y'}", "b", "'y'" },
		/* nested objects and arrays: their members are not the object's */
		{ "{'a':{'b':{'c':1}},'c':2}", "c", "2" },
		{ "{'a':{'b':{'c':1}},'c':2}", "a", "{'b':{'c':1}}" },
		{ "{'a':{'b':{'c':1}},'c':2}", "b", NULL },
		{ "{'a':[1,[2,{'b':3}],{}],'b':[]}", "a", "[1,[2,{'b':3}],{}]" },
		{ "{'a':[1,[2,{'b':3}],{}],'b':[]}", "b", "[]" },
		{ "{'a':[{'k':'v'}]}", "k", NULL },
		{ "{'x':[[[]]],'y':{'z':[{}]}}", "y", "{'z':[{}]}" },
		/* strings with escaped quotes, braces, brackets, colons and commas */
		{ "{'a':'q\\'}{','b':1}", "b", "1" },
		{ "{'a':'q\\'}{','b':1}", "a", "'q\\'}{'" },
		{ "{'a':'q\\',:}]','b':1}", "b", "1" },
		{ "{'a':{'s':'}]:,\\'\\\\'},'b':'\\\\'}", "a", "{'s':'}]:,\\'\\\\'}" },
		{ "{'a':{'s':'}]:,\\'\\\\'},'b':'\\\\'}", "b", "'\\\\'" },
		{ "{'a':'\\u0022','b':'c'}", "b", "'c'" },
		/* a key that looks like the one sought, inside another key or a value */
		{ "{'xa':1,'a\\'':2,'v':'a','a':3}", "a", "3" },
		{ "{'ab':1}", "a", NULL },
		{ "{'a':1}", "ab", NULL },
		{ "{'':5}", "", "5" },
		/* keys are compared as written */
		{ "{'\\u0061':1}", "a", NULL },
		/* white space everywhere */
		{ " \t{ 'a' :\t[ 1 , { } ] ,\r 'b' : 'x' } ", "a", "[ 1 , { } ]" },
		{ " \t{ 'a' :\t[ 1 , { } ] ,\r 'b' : 'x' } ", "b", "'x'" },
		{ "{ 'a' : 1 }", "a", "1" },
		{ "{'a' : true }", "a", "true" },
		/* the last of members of one name, as the scanner (yajl) and JSON.parse take it */
		{ "{'a':1,'a':2}", "a", "2" },
		{ "{'a':1,'b':{'a':3},'a':[2],'c':0}", "a", "[2]" },
		/* not an object */
		{ "[{'a':1}]", "a", NULL },
		{ "'a'", "a", NULL },
		{ "1", "a", NULL },
		{ "null", "a", NULL },
		{ "", "a", NULL },
		{ "   ", "a", NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		assert_member(table[i][0], table[i][1], table[i][2]);
	}
}

/* Cut short anywhere, the text yields no member past its end and no read beyond it. */
static void
test_member_cut_short(void **state)
{
	char j[128];
	const char *v = NULL;
	size_t vlen = 0;
	size_t len = strlen(q(j, sizeof(j), "{'a':{'b':'x\\'y'},'c':[1,'\\\\'],'d':true}"));

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		char *copy = malloc(cut + 1); /* exactly cut bytes: ASan sees any overread */

		assert_non_null(copy);
		memcpy(copy, j, cut);
		if (jsonspan_member(copy, cut, "d", &v, &vlen)) {
			assert_true(v >= copy && v + vlen <= copy + cut);
		}
		(void)jsonspan_member(copy, cut, "zz", &v, &vlen);
		free(copy);
	}
	assert_true(jsonspan_member(j, len, "d", &v, &vlen));
	assert_int_equal(vlen, 4);
}

/* A NUL byte, inside a string or (in text that was not validated) outside one. */
static void
test_member_nul(void **state)
{
	static const char a[] = "{\"a\":\"x\0y\",\"b\":2}";
	static const char b[] = "{\"a\":[1\0],\"b\":2}";
	const char *v = NULL;
	size_t vlen = 0;

	(void)state;
	assert_true(jsonspan_member(a, sizeof(a) - 1, "b", &v, &vlen));
	assert_int_equal(vlen, 1);
	assert_memory_equal(v, "2", 1);
	/* no endless loop */
	(void)jsonspan_member(b, sizeof(b) - 1, "b", &v, &vlen);
}

/* Each element of an array in turn; none of an empty one; nested arrays whole. */
static void
test_element(void **state)
{
	static const char text[] = " [ {\"id\":1} ,[2,[3]],\"a,]\" , null ] ";
	static const char *const want[] = { "{\"id\":1}", "[2,[3]]", "\"a,]\"", "null" };
	const char *p = text, *end = text + sizeof(text) - 1, *el;
	size_t len, k = 0;

	(void)state;
	while (jsonspan_element(&p, end, &el, &len)) {
		assert_true(k < 4);
		assert_int_equal(len, strlen(want[k]));
		assert_memory_equal(el, want[k], len);
		k++;
	}
	assert_int_equal(k, 4);
	assert_ptr_equal(p, end);
	p = "[]";
	assert_false(jsonspan_element(&p, p + 2, &el, &len));
	p = "[1,";
	assert_true(jsonspan_element(&p, p + 3, &el, &len));
	assert_false(jsonspan_element(&p, p + 1, &el, &len)); /* cut: no more */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_found),	     cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_plain_string), cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_member),	     cmocka_unit_test(test_member_cut_short),
		cmocka_unit_test(test_member_nul),   cmocka_unit_test(test_element),
	};

	return cmocka_run_group_tests_name("jsonspan", tests, NULL, NULL);
}
