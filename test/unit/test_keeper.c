/*
 * Unit tests for keeper: the line that tells the keeper about a container, and the
 * keeper's reading of its words, whatever their number and length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/keeper.h"

#define W(s) ((char *)(uintptr_t)(s))

/* 200 words of 300 bytes each (60 KB, far over any fixed line), all of them back. */
static void
test_many_long_words_round_trip(void **state)
{
	enum { N = 200, LEN = 300 };
	char *words[N];

	(void)state;
	for (size_t i = 0; i < N; i++) {
		words[i] = malloc(LEN + 1);
		assert_non_null(words[i]);
		memset(words[i], 'a' + (int)(i % 26), LEN);
		(void)snprintf(words[i], LEN + 1, "V%zu=", i);
		words[i][strlen(words[i])] = 'x';
		words[i][LEN] = '\0';
	}
	char *line = keeper_container_line(words, N, "/run/x/1.2.cid", NULL);

	assert_non_null(line);
	assert_int_equal(strncmp(line, "C\t/run/x/1.2.cid\t", 17), 0);
	assert_int_equal(line[strlen(line) - 1], '\n');
	line[strlen(line) - 1] = '\0';

	size_t n = 0;
	char **back = keeper_split_words(line + 17, &n);

	assert_non_null(back);
	assert_int_equal(n, N);
	for (size_t i = 0; i < N; i++) {
		assert_string_equal(back[i], words[i]);
	}
	assert_null(back[N]);
	free(back);
	free(line);
	for (size_t i = 0; i < N; i++) {
		free(words[i]);
	}
}

static void
test_one_word_and_empty_words(void **state)
{
	char *one[] = { W("podman") };
	char *gaps[] = { W("env"), W(""), W("docker") };
	size_t n = 0;

	(void)state;
	char *line = keeper_container_line(one, 1, "c", NULL);

	assert_string_equal(line, "C\tc\tpodman\n");
	free(line);
	line = keeper_container_line(one, 1, "c", "r-1");
	assert_string_equal(line, "C\tc\tpodman\tr-1\n");
	free(line);
	assert_null(keeper_container_line(one, 1, "c", "r\t1"));
	assert_null(keeper_container_line(one, 1, "c", ""));
	line = keeper_container_line(gaps, 3, "c", NULL);
	assert_string_equal(line, "C\tc\tenv\x1f\x1f"
				  "docker\n");
	line[strlen(line) - 1] = '\0';
	char **back = keeper_split_words(line + 4, &n);

	assert_int_equal(n, 3);
	assert_string_equal(back[0], "env");
	assert_string_equal(back[1], "");
	assert_string_equal(back[2], "docker");
	free(back);
	free(line);
}

/* What cannot be carried is refused (and mcpmux says so), never cut. */
static void
test_what_cannot_go_is_refused(void **state)
{
	char *tab[] = { W("env"), W("A=1\t2"), W("podman") };
	char *nl[] = { W("env"), W("A=1\n2"), W("podman") };
	char *us[] = { W("env"),
		       W("A=1\x1f"
			 "2"),
		       W("podman") };
	char *ok[] = { W("podman") };

	(void)state;
	errno = 0;
	assert_null(keeper_container_line(tab, 3, "c", NULL));
	assert_int_equal(errno, EINVAL);
	assert_null(keeper_container_line(nl, 3, "c", NULL));
	assert_null(keeper_container_line(us, 3, "c", NULL));
	assert_null(keeper_container_line(ok, 1, "a\tb", NULL));
	assert_null(keeper_container_line(ok, 1, "a\nb", NULL));
	assert_null(keeper_container_line(ok, 1, "", NULL));
	assert_null(keeper_container_line(ok, 0, "c", NULL));
	assert_int_equal(errno, EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_long_words_round_trip),
		cmocka_unit_test(test_one_word_and_empty_words),
		cmocka_unit_test(test_what_cannot_go_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
