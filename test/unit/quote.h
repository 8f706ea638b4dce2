/*
 * quote: JSON written with single quotes in the unit tests' C strings, turned into the
 * real thing (test_jsonrpc, test_handshake, test_jsonspan).  Include after cmocka.h.
 */
#ifndef MCPMUX_TEST_QUOTE_H
#define MCPMUX_TEST_QUOTE_H

#include <string.h>

/* s with every ' turned into ", into out (which holds cap bytes). */
static inline char *
q(char *out, size_t cap, const char *s)
{
	size_t len = strlen(s);

	assert_true(len < cap);
	for (size_t i = 0; i <= len; i++) {
		out[i] = s[i] == '\'' ? '"' : s[i];
	}
	return out;
}

#endif
