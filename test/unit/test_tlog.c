/*
 * Unit tests for tlog: the records of one loop turn, whose heads ({"ts" to "kind") are
 * copied from the record before while session, pid, direction and kind stay the same.
 * Every record must still carry its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_tree.h>

#include "mcpmux/jsonrpc.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

#include "tmpdir.h"

struct rec {
	const char *session; /* NULL: null */
	pid_t pid;	     /* 0: null */
	enum tlog_dir dir;
	const char *line;
	const char *kind; /* expected */
	double turn;	  /* sys_turn_mono when it is logged */
};

/* What a record of the log said: copied out, so that a failed check leaks nothing. */
struct got {
	char session[400];
	long long pid; /* 0: null; -1: absent or not an integer */
	char dir[8];
	char kind[16];
	long long bytes;
	char ts[40];
};

static void
copy_str(char *out, size_t len, yajl_val v, const char *key)
{
	const char *path[] = { key, NULL };
	yajl_val s = yajl_tree_get(v, path, yajl_t_any);

	(void)snprintf(out, len, "%s",
		       s == NULL	   ? "(absent)"
		       : YAJL_IS_NULL(s)   ? "(null)"
		       : YAJL_IS_STRING(s) ? YAJL_GET_STRING(s)
					   : "(not a string)");
}

static long long
int_of(yajl_val v, const char *key)
{
	const char *path[] = { key, NULL };
	yajl_val n = yajl_tree_get(v, path, yajl_t_any);

	if (n != NULL && YAJL_IS_NULL(n)) {
		return 0;
	}
	return n != NULL && YAJL_IS_INTEGER(n) ? YAJL_GET_INTEGER(n) : -1;
}

#define MAX_RECS 32

/*
 * Log recs (sys_turn_mono set to each one's turn; the clock moves on between turns), read
 * the log back into got; the number of records read, or -1 for a line that is not JSON.
 * Everything is closed and removed before the caller checks anything.
 */
static int
write_and_read(const struct rec *recs, size_t n, struct got *got)
{
	char dir[256], path[300], line[4096];
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct jsonrpc_scanner scan;
	const struct timespec tick = { .tv_sec = 0, .tv_nsec = 1000000 };
	int count = 0;

	assert_non_null(loop);
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "tlog"), 0);
	(void)snprintf(path, sizeof(path), "%s/traffic.jsonl", dir);
	if (tlog_open(loop, path, 0, false) == -1) {
		tmpdir_remove(dir);
		ev_loop_destroy(loop);
		return -1;
	}
	jsonrpc_init(&scan);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && (recs[i].turn == 0 || recs[i].turn != recs[i - 1].turn)) {
			(void)nanosleep(&tick, NULL); /* a later turn, a later time */
		}
		sys_turn_mono = recs[i].turn;
		(void)jsonrpc_scan_line(&scan, recs[i].line, strlen(recs[i].line));
		tlog_message(recs[i].session, recs[i].pid, recs[i].dir, &scan, recs[i].line,
			     strlen(recs[i].line), -1);
	}
	sys_turn_mono = 0;
	jsonrpc_release(&scan);
	tlog_close();
	ev_loop_destroy(loop);

	FILE *f = fopen(path, "r");

	while (f != NULL && count < MAX_RECS && fgets(line, sizeof(line), f) != NULL) {
		char err[128];
		yajl_val v = yajl_tree_parse(line, err, sizeof(err));

		if (v == NULL) {
			count = -1;
			break;
		}
		copy_str(got[count].session, sizeof(got[count].session), v, "session");
		got[count].pid = int_of(v, "pid");
		copy_str(got[count].dir, sizeof(got[count].dir), v, "dir");
		copy_str(got[count].kind, sizeof(got[count].kind), v, "kind");
		got[count].bytes = int_of(v, "bytes");
		copy_str(got[count].ts, sizeof(got[count].ts), v, "ts");
		yajl_tree_free(v);
		count++;
	}
	if (f != NULL) {
		(void)fclose(f);
	}
	tmpdir_remove(dir);
	return count;
}

static void
check_log(const struct rec *recs, size_t n)
{
	static struct got got[MAX_RECS];

	assert_true(n <= MAX_RECS);
	assert_int_equal(write_and_read(recs, n, got), (int)n);
	for (size_t i = 0; i < n; i++) {
		const struct rec *r = &recs[i];

		assert_string_equal(got[i].session, r->session != NULL ? r->session : "(null)");
		assert_int_equal(got[i].pid, r->pid);
		assert_string_equal(got[i].dir, r->dir == TLOG_IN ? "in" : "out");
		assert_string_equal(got[i].kind, r->kind);
		assert_int_equal(got[i].bytes, (long long)strlen(r->line));
		assert_int_equal(strlen(got[i].ts), 27); /* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
		/* One turn, one time; another turn (or none), another time. */
		for (size_t j = 0; j < i; j++) {
			if (r->turn != 0 && r->turn == recs[j].turn) {
				assert_string_equal(got[i].ts, got[j].ts);
			} else {
				assert_string_not_equal(got[i].ts, got[j].ts);
			}
		}
	}
}

#define REQ  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}"
#define NOTE "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}"
#define RESP "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"
#define S1   "4f2a7c1e-0000-4000-8000-000000000001"
#define S2   "4f2a7c1e-0000-4000-8000-000000000002" /* as long as S1: only its text differs */

/* Within one turn, each part of the head changes in turn, and back. */
static void
test_head_parts_change_within_a_turn(void **state)
{
	(void)state;
	static const struct rec recs[] = {
		{ S1, 100, TLOG_IN, REQ, "request", 5.0 },
		{ S1, 100, TLOG_IN, REQ, "request", 5.0 },
		{ S2, 100, TLOG_IN, REQ, "request", 5.0 },
		{ S2, 101, TLOG_IN, REQ, "request", 5.0 },
		{ S2, 101, TLOG_OUT, REQ, "request", 5.0 },
		{ S2, 101, TLOG_OUT, RESP, "response", 5.0 },
		{ S2, 101, TLOG_OUT, NOTE, "notification", 5.0 },
		{ NULL, 101, TLOG_OUT, NOTE, "notification", 5.0 },
		{ "", 101, TLOG_OUT, NOTE, "notification", 5.0 },
		{ NULL, 0, TLOG_OUT, NOTE, "notification", 5.0 },
		{ S1, 100, TLOG_IN, REQ, "request", 5.0 },
		{ S1, 100, TLOG_IN, "{nope", "invalid", 5.0 },
		{ S1, 100, TLOG_IN, REQ, "request", 5.0 },
	};

	check_log(recs, sizeof(recs) / sizeof(recs[0]));
}

/*
 * A session id longer than the copy kept of it; records outside any turn; records alike
 * in all but their turn.
 */
static void
test_long_session_and_no_turn(void **state)
{
	(void)state;
	static char long_a[301], long_b[301];

	memset(long_a, 'a', 300);
	memcpy(long_b, long_a, 300);
	long_b[299] = 'b'; /* differs at its very end */
	const struct rec recs[] = {
		{ long_a, 7, TLOG_IN, REQ, "request", 9.0 },
		{ long_b, 7, TLOG_IN, REQ, "request", 9.0 },
		{ long_a, 7, TLOG_IN, REQ, "request", 9.0 },
		{ S1, 7, TLOG_IN, REQ, "request", 0 },
		{ S2, 7, TLOG_IN, REQ, "request", 0 },
		{ S2, 7, TLOG_IN, REQ, "request", 0 },
		{ S2, 8, TLOG_OUT, RESP, "response", 10.0 },
		{ S2, 8, TLOG_OUT, RESP, "response", 11.0 },
		{ S2, 8, TLOG_OUT, RESP, "response", 11.0 },
		{ S1, 7, TLOG_IN, REQ, "request", 12.0 },
		{ S2, 7, TLOG_IN, REQ, "request", 0 },
		{ S1, 7, TLOG_IN, REQ, "request", 0 },
	};

	check_log(recs, sizeof(recs) / sizeof(recs[0]));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head_parts_change_within_a_turn),
		cmocka_unit_test(test_long_session_and_no_turn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
