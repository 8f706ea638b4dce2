/*
 * Unit tests for session_id_valid(): 1..128 bytes of [A-Za-z0-9._:@-]; and for
 * session_replay_deadline(): --stall-timeout, 30 s with 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <stdbool.h>
#include <string.h>

#include "mcpmux/session.h"

static bool
valid(const char *id)
{
	return session_id_valid(id, strlen(id));
}

static void
test_charset(void **state)
{
	(void)state;
	assert_true(valid("a"));
	assert_true(valid("Z"));
	assert_true(valid("0"));
	assert_true(valid("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-"));
	assert_true(valid("2f6c1a8e-4b7d-4c3e-9a51-0d8e7f6a5b4c"));
	assert_true(valid("user@host:run.1_x"));
	assert_true(valid("..."));
	assert_true(valid("-"));
}

static void
test_every_byte(void **state)
{
	static const char allowed[] = "._:@-";

	(void)state;
	for (int c = 0; c < 256; c++) {
		char id[3] = { 'a', (char)c, 'b' };
		bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || (c != 0 && strchr(allowed, c) != NULL);

		if (session_id_valid(id, sizeof(id)) != want) {
			fail_msg("byte 0x%02x: valid %d, want %d", c, !want, want);
		}
	}
}

static void
test_rejected(void **state)
{
	(void)state;
	assert_false(valid(""));
	assert_false(session_id_valid("abc", 0));
	assert_false(valid(" "));
	assert_false(valid("a b"));
	assert_false(valid(" a"));
	assert_false(valid("a/b"));
	assert_false(valid("../x"));
	assert_false(valid("a\\b"));
	assert_false(valid("caf\xc3\xa9"));
	assert_false(valid("\xe2\x82\xac"));
	assert_false(valid("a\nb"));
	assert_false(valid("a\"b"));
	assert_false(valid("a,b"));
	assert_false(valid("a+b"));
	assert_false(valid("a=b"));
	/* a NUL inside the given length counts as a byte, and is not allowed */
	assert_false(session_id_valid("ab\0cd", 5));
	/* only len bytes are looked at */
	assert_true(session_id_valid("ab/cd", 2));
}

static void
test_length(void **state)
{
	char id[200];

	(void)state;
	memset(id, 'k', sizeof(id));
	assert_true(session_id_valid(id, 1));
	assert_true(session_id_valid(id, 127));
	assert_true(session_id_valid(id, 128));
	assert_false(session_id_valid(id, 129));
	assert_false(session_id_valid(id, 200));
}

/* The replay's deadline is --stall-timeout, and 30 s with 0 (never, for a stall). */
static void
test_the_replay_deadline_is_the_stall_timeout_or_30_s(void **state)
{
	struct session_config cfg = { .stall_timeout = 0 };

	(void)state;
	assert_true(session_replay_deadline(&cfg) == 30.);
	cfg.stall_timeout = 1;
	assert_true(session_replay_deadline(&cfg) == 1.);
	cfg.stall_timeout = 0.5;
	assert_true(session_replay_deadline(&cfg) == 0.5);
	cfg.stall_timeout = 120;
	assert_true(session_replay_deadline(&cfg) == 120.);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_rejected),
		cmocka_unit_test(test_length),
		cmocka_unit_test(test_the_replay_deadline_is_the_stall_timeout_or_30_s),
	};

	return cmocka_run_group_tests_name("session_id", tests, NULL, NULL);
}
