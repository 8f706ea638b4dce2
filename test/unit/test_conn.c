/*
 * Unit tests for conn's output to a client that is gone, through a real pipe: a line
 * written at once (nothing queued) that finds the client gone is told as lost, as queued
 * ones are; and once the owner ends the output (conn_end_output()), nothing more is
 * written and no hook is told of it, even of an event of the output already due.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "mcpmux/conn.h"

#define LINE_LEN ((size_t)64 << 10) /* more than the small pipe takes */

struct told {
	int lost, gone, drained;
	size_t lost_lines, lost_bytes;
	struct conn_ids ids;
};

static void
on_gone(struct conn *c, void *ctx)
{
	(void)c;
	((struct told *)ctx)->gone++;
}

static void
on_output_lost(struct conn *c, void *ctx)
{
	struct told *t = ctx;
	bool cut;

	t->lost++;
	t->lost_lines = conn_unsent(c, conn_ids_add, &t->ids, &cut);
	t->lost_bytes = conn_queued(c);
}

static void
on_drained(struct conn *c, void *ctx)
{
	(void)c;
	((struct told *)ctx)->drained++;
}

static const struct conn_hooks hooks = {
	.on_gone = on_gone,
	.on_output_lost = on_output_lost,
	.on_drained = on_drained,
};

static const struct framer_sink sink = { 0 };

struct fixture {
	struct ev_loop *loop;
	int in[2], out[2];
	struct conn c;
	struct told told;
	ev_timer turn;
};

static void
on_turn(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	(void)signal(SIGPIPE, SIG_IGN);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	assert_int_equal(pipe2(f->in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(f->out, O_CLOEXEC | O_NONBLOCK), 0);
	assert_true(fcntl(f->out[1], F_SETPIPE_SZ, 4096) > 0);
	conn_init(&f->c, f->loop, f->in[0], f->out[1], 1 << 20, 4 << 20, &sink, &hooks, &f->told);
	f->c.out_big = true; /* the pipe is not made bigger for a long line: it stays small */
	ev_timer_init(&f->turn, on_turn, 0., 0.); /* a turn of its own for the first write */
	ev_timer_start(f->loop, &f->turn);
	ev_run(f->loop, 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	conn_release(&f->c);
	conn_ids_release(&f->told.ids);
	ev_loop_destroy(f->loop);
	for (int i = 0; i < 2; i++) {
		(void)close(f->in[i]);
		(void)close(f->out[i]);
	}
	free(f);
	return 0;
}

/* A line of len bytes (no newline) with id `id`: {"jsonrpc":"2.0","id":N,"result":"xxx"}. */
static char *
line_of(size_t len, int id)
{
	char *p = malloc(len);
	int head;

	assert_non_null(p);
	head = snprintf(p, len, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":\"", id);
	memset(p + head, 'x', len - (size_t)head - 2);
	memcpy(p + len - 2, "\"}", 2);
	return p;
}

/* A line queued behind what the full pipe holds, the output's watcher started. */
static void
queue_past_the_pipe(struct fixture *f)
{
	char *line = line_of(LINE_LEN, 1);

	assert_int_equal(conn_send_line(&f->c, &f->c.self, line, LINE_LEN), 0);
	free(line);
	ev_run(f->loop, EVRUN_NOWAIT); /* the rest: EAGAIN, the watcher started */
	assert_true(conn_queued(&f->c) > 0);
	assert_true(ev_is_active(&f->c.out_w));
}

static void
test_a_direct_write_to_a_gone_client_is_told_as_lost(void **state)
{
	struct fixture *f = *state;
	const char line[] = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}";

	(void)close(f->out[0]);
	f->out[0] = -1;
	assert_int_equal(conn_queued(&f->c), 0);
	assert_int_equal(conn_send_line(&f->c, &f->c.self, line, strlen(line)), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(f->told.lost, 1);
	assert_int_equal(f->told.lost_lines, 1);
	assert_int_equal(f->told.lost_bytes, strlen(line) + 1);
	assert_int_equal(f->told.ids.n, 1);
	assert_memory_equal(f->told.ids.log.buf, "7", 1);
	ev_run(f->loop, EVRUN_NOWAIT);
	assert_int_equal(f->told.gone, 1); /* later in the turn */
	assert_int_equal(f->told.lost, 1);
}

static void
test_an_ended_output_is_not_told_of_a_gone_client(void **state)
{
	struct fixture *f = *state;

	queue_past_the_pipe(f);
	(void)close(f->out[0]); /* the client goes: the output's watcher is due */
	f->out[0] = -1;
	conn_end_output(&f->c);
	ev_run(f->loop, EVRUN_NOWAIT);
	assert_int_equal(f->told.lost, 0);
	assert_int_equal(f->told.gone, 0);
	assert_int_equal(f->told.drained, 0);
	assert_int_equal(conn_send_line(&f->c, &f->c.self, "{}", 2), -1);
	assert_int_equal(errno, EPIPE);
	ev_run(f->loop, EVRUN_NOWAIT);
	assert_int_equal(f->told.lost + f->told.gone + f->told.drained, 0);
}

static void
test_an_ended_output_writes_nothing_more(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	ssize_t n;

	queue_past_the_pipe(f);
	conn_end_output(&f->c);
	while ((n = read(f->out[0], buf, sizeof(buf))) > 0) {
		/* the client reads what it had: the output is writable again */
	}
	ev_run(f->loop, EVRUN_NOWAIT);
	errno = 0;
	assert_int_equal(read(f->out[0], buf, sizeof(buf)), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(f->told.lost + f->told.gone + f->told.drained, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_a_direct_write_to_a_gone_client_is_told_as_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_an_ended_output_is_not_told_of_a_gone_client,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_an_ended_output_writes_nothing_more, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
