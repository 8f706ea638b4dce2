/*
 * Unit tests for survey's reading of the instances' status files (status.h): the parser
 * (header, torn and malformed lines, repeats, the caps) and the loader on a temporary
 * runtime directory (no file, a file whose lock is free, a held one, a symlink, a FIFO,
 * files and directories others could write, a file bigger than the cap), and a command
 * line cut for a table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpmux/survey.h"
#include "tmpdir.h"

#define NOW 1000.0

struct parsed {
	struct survey_status *v;
	size_t n, cap;
	bool cut;
};

static int
parse(struct parsed *p, const char *text, pid_t pid)
{
	return survey_status_parse(text, strlen(text), pid, NOW, &p->v, &p->n, &p->cap, &p->cut);
}

static void
test_parse_good(void **state)
{
	(void)state;
	struct parsed p = { 0 };
	const char *text =
		"{\"mcpmux\":42,\"mode\":\"serve\"}\n"
		"{\"session\":\"run-1\",\"state\":\"running\",\"pid\":4711,\"started\":900.5,"
		"\"last\":990,\"suspends\":0,\"resumes\":0}\n"
		"{\"session\":\"run-2\",\"state\":\"suspended\",\"pid\":null,\"started\":100,"
		"\"last\":400.25,\"suspends\":3,\"resumes\":2}\n"
		"{\"session\":\"run-3\",\"state\":\"running\",\"pid\":4712,\"sta"; /* torn */

	assert_int_equal(parse(&p, text, 42), 0);
	assert_int_equal(p.n, 2);
	assert_false(p.cut);
	assert_string_equal(p.v[0].session, "run-1");
	assert_string_equal(p.v[0].state, "running");
	assert_int_equal(p.v[0].pid, 4711);
	assert_true(p.v[0].age_s > 99.49 && p.v[0].age_s < 99.51);
	assert_true(p.v[0].idle_s > 9.99 && p.v[0].idle_s < 10.01);
	assert_int_equal(p.v[0].instance, SIZE_MAX);
	assert_int_equal(p.v[0].group, SIZE_MAX);
	assert_string_equal(p.v[1].session, "run-2");
	assert_string_equal(p.v[1].state, "suspended");
	assert_int_equal(p.v[1].pid, 0);
	assert_true(p.v[1].idle_s > 599.74 && p.v[1].idle_s < 599.76);
	assert_int_equal(p.v[1].suspends, 3);
	assert_int_equal(p.v[1].resumes, 2);

	/* A second instance's file is appended; its sessions may have the same IDs. */
	assert_int_equal(parse(&p,
			       "{\"mcpmux\":43,\"mode\":\"wrap\"}\n"
			       "{\"session\":\"run-1\",\"state\":\"waiting\",\"pid\":null,"
			       "\"started\":1500,\"last\":1500,\"suspends\":0,\"resumes\":0}\n",
			       43),
			 0);
	assert_int_equal(p.n, 3);
	assert_string_equal(p.v[2].session, "run-1");
	assert_string_equal(p.v[2].state, "waiting");
	/* A time after now (rounding): no negative ages. */
	assert_true(p.v[2].age_s == 0 && p.v[2].idle_s == 0);

	/* A state of a newer mcpmux is kept as written, a long one cut between characters. */
	assert_int_equal(
		parse(&p,
		      "{\"mcpmux\":44,\"mode\":\"serve\"}\n"
		      "{\"session\":\"new-1\",\"state\":\"hibernating\",\"pid\":null,"
		      "\"started\":1,\"last\":1,\"suspends\":0,\"resumes\":0}\n"
		      "{\"session\":\"new-2\",\"state\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u00e9z\","
		      "\"pid\":null,\"started\":1,\"last\":1,\"suspends\":0,\"resumes\":0}\n",
		      44),
		0);
	assert_int_equal(p.n, 5);
	assert_string_equal(p.v[3].state, "hibernating");
	assert_string_equal(p.v[4].state, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	free(p.v);
}

static void
test_parse_header(void **state)
{
	(void)state;
	struct parsed p = { 0 };
	const char *line = "{\"session\":\"a\",\"state\":\"running\",\"pid\":1,\"started\":1,"
			   "\"last\":1,\"suspends\":0,\"resumes\":0}\n";
	char text[512];

	/* Another pid's file, no header, a torn header, an empty file: nothing. */
	(void)snprintf(text, sizeof(text), "{\"mcpmux\":7,\"mode\":\"wrap\"}\n%s", line);
	errno = 0;
	assert_int_equal(parse(&p, text, 8), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(parse(&p, line, 1), -1);
	assert_int_equal(parse(&p, "{\"mcpmux\":7,\"mo", 7), -1);
	assert_int_equal(parse(&p, "", 7), -1);
	assert_int_equal(parse(&p, "{\"mcpmux\":\"7\"}\n", 7), -1);
	assert_int_equal(parse(&p, "[7]\n", 7), -1);
	assert_int_equal(p.n, 0);
	/* A header alone: an instance without sessions. */
	assert_int_equal(parse(&p, "{\"mcpmux\":7,\"mode\":\"wrap\"}\n", 7), 0);
	assert_int_equal(p.n, 0);
	free(p.v);
}

static void
test_parse_bad_lines(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"session\":\"a\",\"state\":\"\",\"pid\":1,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":7,\"pid\":1,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a b\",\"state\":\"running\",\"pid\":1,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"\",\"state\":\"running\",\"pid\":1,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":0,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":-5,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":4294967296,\"started\":1,"
		"\"last\":1,\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":\"1\",\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":1,\"started\":1,\"last\":\"1\","
		"\"suspends\":0,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":1,\"started\":1,\"last\":1,"
		"\"suspends\":-1,\"resumes\":0}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":1,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0.5}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":1,\"started\":1,\"last\":1,"
		"\"suspends\":0,\"resumes\":0} {}",
		"{\"session\":\"a\",\"state\":\"running\",\"pid\":1,\"started\":1e999,\"last\":1,"
		"\"suspends\":0,\"resumes\":0}",
		"[\"a\"]",
		"null",
		"",
		"garbage",
	};
	char text[4096];
	struct parsed p = { 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		(void)snprintf(text, sizeof(text),
			       "{\"mcpmux\":9}\n%s\n"
			       "{\"session\":\"ok\",\"state\":\"ending\",\"pid\":3,\"started\":1,"
			       "\"last\":2,\"suspends\":0,\"resumes\":0}\n",
			       bad[i]);
		p.n = 0;
		assert_int_equal(parse(&p, text, 9), 0);
		if (p.n != 1) {
			fail_msg("line %zu was taken: %s", i, bad[i]);
		}
		assert_string_equal(p.v[0].session, "ok");
	}

	/* A NUL inside a line, and a line longer than the cap, are skipped. */
	static const char head[] = "{\"mcpmux\":9}\n";
	static const char good[] = "{\"session\":\"ok\",\"state\":\"ending\",\"pid\":3,"
				   "\"started\":1,\"last\":2,\"suspends\":0,\"resumes\":0}\n";
	char nul[256];
	size_t k = 0;

	memcpy(nul + k, head, sizeof(head) - 1);
	k += sizeof(head) - 1;
	memcpy(nul + k, "{\"session\":\"x\"}\0{}\n", 19);
	k += 19;
	memcpy(nul + k, good, sizeof(good) - 1);
	k += sizeof(good) - 1;
	p.n = 0;
	assert_int_equal(survey_status_parse(nul, k, 9, NOW, &p.v, &p.n, &p.cap, &p.cut), 0);
	assert_int_equal(p.n, 1);

	char *long_text = malloc(2 * SURVEY_STATUS_LINE_MAX + 256);

	assert_non_null(long_text);
	k = 0;
	memcpy(long_text + k, head, sizeof(head) - 1);
	k += sizeof(head) - 1;
	k += (size_t)sprintf(long_text + k, "{\"session\":\"long\",\"state\":\"running\","
					    "\"pid\":3,\"started\":1,\"last\":2,\"suspends\":0,"
					    "\"resumes\":0,\"pad\":\"");
	memset(long_text + k, 'x', SURVEY_STATUS_LINE_MAX);
	k += SURVEY_STATUS_LINE_MAX;
	memcpy(long_text + k, "\"}\n", 3);
	k += 3;
	memcpy(long_text + k, good, sizeof(good) - 1);
	k += sizeof(good) - 1;
	p.n = 0;
	assert_int_equal(survey_status_parse(long_text, k, 9, NOW, &p.v, &p.n, &p.cap, &p.cut), 0);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.v[0].session, "ok");
	free(long_text);
	free(p.v);
}

static void
test_parse_repeats_and_cap(void **state)
{
	(void)state;
	struct parsed p = { 0 };
	const char *text = "{\"mcpmux\":5}\n"
			   "{\"session\":\"b\",\"state\":\"running\",\"pid\":11,\"started\":1,"
			   "\"last\":1,\"suspends\":0,\"resumes\":0}\n"
			   "{\"session\":\"a\",\"state\":\"running\",\"pid\":12,\"started\":1,"
			   "\"last\":1,\"suspends\":0,\"resumes\":0}\n"
			   "{\"session\":\"b\",\"state\":\"suspended\",\"pid\":null,\"started\":1,"
			   "\"last\":1,\"suspends\":1,\"resumes\":0}\n"
			   "{\"session\":\"c\",\"state\":\"waiting\",\"pid\":null,\"started\":1,"
			   "\"last\":1,\"suspends\":0,\"resumes\":0}\n";

	/* The first line of a session counts (the rest is an older version's tail). */
	assert_int_equal(parse(&p, text, 5), 0);
	assert_int_equal(p.n, 3);
	assert_string_equal(p.v[0].session, "b");
	assert_int_equal(p.v[0].pid, 11);
	assert_string_equal(p.v[1].session, "a");
	assert_string_equal(p.v[2].session, "c");

	/* More sessions than the cap: the first SURVEY_STATUS_MAX_SESSIONS, and cut. */
	size_t lines = SURVEY_STATUS_MAX_SESSIONS + 5, cap = 32 + lines * 128, k = 0;
	char *big = malloc(cap);

	assert_non_null(big);
	k += (size_t)snprintf(big, cap, "{\"mcpmux\":5}\n");
	for (size_t i = 0; i < lines; i++) {
		k += (size_t)snprintf(big + k, cap - k,
				      "{\"session\":\"s%zu\",\"state\":\"running\",\"pid\":%zu,"
				      "\"started\":1,\"last\":1,\"suspends\":0,\"resumes\":0}\n",
				      i, i + 1);
	}
	p.n = 0;
	assert_int_equal(survey_status_parse(big, k, 5, NOW, &p.v, &p.n, &p.cap, &p.cut), 0);
	assert_int_equal(p.n, SURVEY_STATUS_MAX_SESSIONS);
	assert_true(p.cut);
	assert_string_equal(p.v[SURVEY_STATUS_MAX_SESSIONS - 1].session, "s16383");
	free(big);
	free(p.v);
}

/* ---- the loader, on a runtime directory of our own ---- */

struct dir {
	char root[PATH_MAX]; /* plays $XDG_RUNTIME_DIR/mcpmux */
	char inst[PATH_MAX + 16];
};

static int
dir_setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		return -1;
	}
	if (tmpdir_make(d->root, sizeof(d->root), "survey") == -1) {
		free(d);
		return -1;
	}
	(void)snprintf(d->inst, sizeof(d->inst), "%s/instances", d->root);
	if (mkdir(d->inst, 0700) == -1) {
		free(d);
		return -1;
	}
	*state = d;
	return 0;
}

static int
dir_teardown(void **state)
{
	struct dir *d = *state;

	(void)tmpdir_remove(d->root);
	free(d);
	return 0;
}

/* Write instances/NAME with text and mode; its fd (open), for the caller to lock. */
static int
put(const struct dir *d, const char *name, const char *text, mode_t mode)
{
	char path[PATH_MAX + 64];
	int fd;

	(void)snprintf(path, sizeof(path), "%s/%s", d->inst, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	return fd;
}

static void
test_load(void **state)
{
	struct dir *d = *state;
	struct sbuf b = { 0 };
	const char *text = "{\"mcpmux\":77,\"mode\":\"wrap\"}\n";
	char path[PATH_MAX + 64];
	uid_t me = getuid();

	/* No file, no directory. */
	assert_int_equal(survey_status_load(d->root, 77, me, &b), SURVEY_STATUS_NONE);
	assert_int_equal(survey_status_load("/nonexistent/mcpmux", 77, me, &b), SURVEY_STATUS_NONE);

	/* A file whose lock is free is a dead instance's; one held under LOCK_EX is read. */
	int fd = put(d, "77", text, 0600);

	assert_int_equal(survey_status_load(d->root, 77, me, &b), SURVEY_STATUS_STALE);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	assert_int_equal(survey_status_load(d->root, 77, me, &b), SURVEY_STATUS_READ);
	assert_int_equal(b.len, strlen(text));
	assert_memory_equal(b.buf, text, b.len);

	/* Not the owner's: refused. */
	errno = 0;
	assert_int_equal(survey_status_load(d->root, 77, me + 1, &b), -1);
	assert_int_equal(errno, EPERM);

	/* Writable by others: refused. */
	assert_int_equal(fchmod(fd, 0620), 0);
	assert_int_equal(survey_status_load(d->root, 77, me, &b), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(fchmod(fd, 0600), 0);

	/* A symlink to a held file is not followed. */
	(void)snprintf(path, sizeof(path), "%s/78", d->inst);
	assert_int_equal(symlink("77", path), 0);
	assert_int_equal(survey_status_load(d->root, 78, me, &b), -1);
	assert_int_equal(errno, ELOOP);

	/* A FIFO: refused, without blocking on the open. */
	(void)snprintf(path, sizeof(path), "%s/79", d->inst);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(survey_status_load(d->root, 79, me, &b), -1);
	assert_int_equal(errno, EPERM);

	/* A directory that others can get into: refused. */
	assert_int_equal(chmod(d->inst, 0755), 0);
	assert_int_equal(survey_status_load(d->root, 77, me, &b), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(chmod(d->inst, 0700), 0);
	assert_int_equal(chmod(d->root, 0711), 0);
	assert_int_equal(survey_status_load(d->root, 77, me, &b), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(chmod(d->root, 0700), 0);

	/* instances/ a symlink to a private directory: not followed either. */
	char other[PATH_MAX + 32];

	(void)snprintf(other, sizeof(other), "%s/elsewhere", d->root);
	assert_int_equal(rename(d->inst, other), 0);
	assert_int_equal(symlink("elsewhere", d->inst), 0);
	assert_int_equal(survey_status_load(d->root, 77, me, &b), -1);
	assert_true(errno == ELOOP || errno == ENOTDIR);
	assert_int_equal(unlink(d->inst), 0);
	assert_int_equal(rename(other, d->inst), 0);
	assert_int_equal(survey_status_load(d->root, 77, me, &b), SURVEY_STATUS_READ);

	(void)close(fd);
	sbuf_release(&b);
}

static void
test_load_cap(void **state)
{
	struct dir *d = *state;
	struct sbuf b = { 0 };
	size_t big = SURVEY_STATUS_MAX_BYTES + 100;
	char *text = malloc(big + 1);

	assert_non_null(text);
	memset(text, '\n', big);
	text[big] = '\0';
	int fd = put(d, "80", text, 0600);

	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	assert_int_equal(survey_status_load(d->root, 80, getuid(), &b), SURVEY_STATUS_READ);
	assert_int_equal(b.len, SURVEY_STATUS_MAX_BYTES);
	(void)close(fd);
	free(text);
	sbuf_release(&b);
}

/* An engine's output past the bound is cut there: nothing after it, not even what fits. */
/*
 * A cut command line ends in "..." after its last whole character, whatever the buffer
 * held before (a table's row buffer holds the last row's text).
 */
static void
test_command_cut(void **state)
{
	char line[1024], out[512], small[12];
	size_t len = 0;
	struct procscan_proc pr = { .argv = line };

	(void)state;
	for (int i = 0; i < 63; i++) {
		memcpy(line + len, "a", 2);
		len += 2;
	}
	memcpy(line + len, "x\xc3\xa9", 4); /* the 64th word, "x" and U+00E9 */
	len += 4;
	memcpy(line + len, "b", 2); /* a 65th: more words than are shown */
	len += 2;
	pr.argv_len = len;
	for (int fill = 0; fill < 2; fill++) {
		memset(out, fill ? 0x80 : 0, sizeof(out));
		survey_command(&pr, 0, out, sizeof(out));
		assert_int_equal(strlen(out), 63 * 2 + 3 + 3);
		assert_string_equal(out + strlen(out) - 6, "x\xc3\xa9...");
		/* No room for all: cut back to a character's start, with its "..." */
		memset(small, fill ? 0x80 : 0, sizeof(small));
		memcpy(line, "abcdef\xc3\xa9", 9);
		pr.argv_len = 9;
		survey_command(&pr, 0, small, sizeof(small));
		assert_string_equal(small, "abcdef\xc3\xa9");
		memcpy(line, "abcdefg\xc3\xa9xyz", 13); /* "..." where the U+00E9 ends */
		pr.argv_len = 13;
		survey_command(&pr, 0, small, sizeof(small));
		assert_string_equal(small, "abcdefg...");
		memset(line, 0, sizeof(line));
		len = 0;
		for (int i = 0; i < 63; i++) {
			memcpy(line + len, "a", 2);
			len += 2;
		}
		memcpy(line + len, "x\xc3\xa9", 4);
		len += 4;
		memcpy(line + len, "b", 2);
		len += 2;
		pr.argv_len = len;
	}
}

static void
test_output_cut(void **state)
{
	struct sbuf b = { 0 };
	bool cut = false;

	(void)state;
	survey_output_add(&b, 10, "12345678", 8, &cut);
	assert_false(cut);
	survey_output_add(&b, 10, "abcd", 4, &cut);
	assert_true(cut);
	survey_output_add(&b, 10, "x", 1, &cut);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.buf, "12345678ab", 10);
	assert_true(cut);
	sbuf_release(&b);

	/* exactly the bound is not cut */
	cut = false;
	survey_output_add(&b, 4, "abcd", 4, &cut);
	assert_false(cut);
	survey_output_add(&b, 4, "", 0, &cut);
	assert_false(cut);
	survey_output_add(&b, 4, "e", 1, &cut);
	assert_true(cut);
	assert_int_equal(b.len, 4);
	sbuf_release(&b);
}

/* A command that writes more than the bound: its start is kept, whole, and said cut. */
static void
test_run_cut(void **state)
{
	char sh[] = "sh", c[] = "-c",
	     script[] = "head -c 16777000 /dev/zero | tr '\\0' a; "
			"head -c 1000 /dev/zero | tr '\\0' b; printf c";
	char *argv[] = { sh, c, script, NULL };
	struct survey_run r;

	(void)state;
	assert_int_equal(survey_run(argv, 60000, &r), 0);
	assert_true(survey_run_ok(&r));
	assert_true(r.out_cut);
	assert_false(r.err_cut);
	assert_int_equal(r.out.len, SURVEY_ENGINE_OUTPUT_MAX);
	assert_int_equal(r.out.buf[16777000 - 1], 'a');
	for (size_t i = 16777000; i < r.out.len; i++) {
		assert_int_equal(r.out.buf[i], 'b');
	}
	survey_run_release(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_header),
		cmocka_unit_test(test_parse_bad_lines),
		cmocka_unit_test(test_parse_repeats_and_cap),
		cmocka_unit_test_setup_teardown(test_load, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_load_cap, dir_setup, dir_teardown),
		cmocka_unit_test(test_command_cut),
		cmocka_unit_test(test_output_cut),
		cmocka_unit_test(test_run_cut),
	};

	return cmocka_run_group_tests_name("survey", tests, NULL, NULL);
}
