/*
 * Allocation failure in json5 and config: every allocation of a parse or a rewrite is
 * made to fail in turn (malloc, calloc and realloc are wrapped at link time), and each
 * run must then fail cleanly, saying "out of memory", leaking nothing (LeakSanitizer
 * checks at exit) and touching nothing freed (AddressSanitizer).
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

#include "mcpmux/config.h"
#include "mcpmux/json5.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static long fail_at = -1; /* the allocation (from 1) that fails; -1: none */
static long n_allocs;

static bool
failing(void)
{
	return fail_at > 0 && ++n_allocs == fail_at;
}

void *
__wrap_malloc(size_t size)
{
	return failing() ? NULL : __real_malloc(size);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	return failing() ? NULL : __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t size)
{
	return failing() ? NULL : __real_realloc(p, size);
}

static const char gateway[] =
	"// gateway\n"
	"{\n"
	"  agents: { defaults: { workspace: '~/w' } },\n"
	"  mcp: {\n"
	"    servers: {\n"
	"      browser: { command: 'lightpanda', args: ['mcp'], env: { A: '1' } },\n"
	"      memory: {\n"
	"        command: 'npx',\n"
	"        args: [\n"
	"          '-y',\n"
	"          'pkg',\n"
	"        ],\n"
	"      },\n"
	"      notes: { command: \"/opt/notes\" },\n"
	"      empty: { command: 'e', args: [ ] },\n"
	"      web: { url: 'https://x/mcp' },\n"
	"      'dup 1': { command: 'd' }, dup_1: { command: 'd' }, 'dup 1': { command: 'd' },\n"
	"      'dup 1': { command: 'd' },\n"
	"    },\n"
	"  },\n"
	"}\n";

static const char wrapped[] =
	"{\"mcpServers\": {\"a\": {\"command\": \"mcpmux\", \"args\": [\"--eof-grace=5\", "
	"\"--pool\", \"q\", \"--\", \"x\", \"-y\"]}, \"b\": {\"command\": \"/usr/bin/mcpmux\", "
	"\"args\": [\"--\", \"y\"]}}, \"servers\": {\"c\": {\"command\": \"z\"}}}";

static const struct config_opts opts = {
	.mcpmux = "/usr/local/bin/mcpmux",
	.set_command = true,
	.log_dir = "/var/log/mcp",
	.eof_grace = "700",
	.idle_suspend = "60",
	.pool = "p",
};

/* Run op on in with allocation n failing, for every n until one run allocates less. */
static void
every_failure(enum config_op op, const char *in)
{
	struct config_result want, r;
	long n;

	assert_int_equal(config_rewrite(op, in, strlen(in), &opts, &want), 0);
	for (n = 1;; n++) {
		int rc;

		fail_at = n;
		n_allocs = 0;
		rc = config_rewrite(op, in, strlen(in), &opts, &r);
		fail_at = -1;
		if (n_allocs < n) {
			/* Nothing failed: the whole run, as without the wrapper. */
			assert_int_equal(rc, 0);
			assert_int_equal(r.len, want.len);
			assert_memory_equal(r.text, want.text, want.len);
			config_result_release(&r);
			break;
		}
		if (rc != -1) {
			fail_msg("allocation %ld failed, yet the rewrite succeeded", n);
		}
		assert_string_equal(r.error, "out of memory");
		assert_null(r.text);
		assert_false(r.syntax);
		config_result_release(&r);
	}
	/* Every allocation was tried: each run allocates some, and this one many. */
	assert_true(n > 20);
	config_result_release(&want);
}

static void
test_wrap(void **state)
{
	(void)state;
	every_failure(CONFIG_WRAP, gateway);
}

static void
test_rewrap_and_unwrap(void **state)
{
	(void)state;
	every_failure(CONFIG_WRAP, wrapped);
	every_failure(CONFIG_UNWRAP, wrapped);
}

static int
keep_all(void *ctx, int parent, const char *key, size_t klen)
{
	(void)ctx;
	(void)key;
	(void)klen;
	return parent + 1;
}

static void
test_parse(void **state)
{
	struct json5_doc doc;
	struct json5_error err;
	long n;

	(void)state;
	for (n = 1;; n++) {
		int rc;

		fail_at = n;
		n_allocs = 0;
		rc = json5_parse(gateway, sizeof(gateway) - 1, 64, keep_all, NULL, 1, &doc, &err);
		fail_at = -1;
		if (n_allocs < n) {
			assert_int_equal(rc, 0);
			json5_doc_release(&doc);
			break;
		}
		assert_int_equal(rc, -1);
		assert_true(err.nomem);
		assert_string_equal(err.msg, "out of memory");
		assert_null(doc.root.m);
	}
	assert_true(n > 20);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_rewrap_and_unwrap),
	};

	return cmocka_run_group_tests_name("config_oom", tests, NULL, NULL);
}
