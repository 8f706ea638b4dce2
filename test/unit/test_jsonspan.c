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
	/* the first of two wins; true, false, null */
	assert_true(find("{\"a\":true,\"a\":false}", "a", NULL, NULL, out, sizeof(out)));
	assert_string_equal(out, "true");
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
	assert_false(find("", "a", NULL, NULL, out, sizeof(out)));
	assert_false(jsonspan_find("{\"a\":1}", 7, path, 0, &v));
	assert_false(jsonspan_find("{\"a\":1}", 7, path, JSONSPAN_PATH_MAX + 1, &v));
	/* malformed */
	assert_false(find("{\"a\" 1}", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"x\":1 \"a\":2}", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"x\":}", "a", NULL, NULL, out, sizeof(out)));
	assert_false(find("{\"x\":[1, \"a\":1}", "a", NULL, NULL, out, sizeof(out)));
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_found),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_plain_string),
		cmocka_unit_test(test_prefixes),
	};

	return cmocka_run_group_tests_name("jsonspan", tests, NULL, NULL);
}
