/*
 * spawn_bare: the floor for session starts and ends, with no proxy.  Starts N copies of
 * COMMAND with posix_spawn and pipes, sends each an initialize request, waits for every
 * answer; then closes every stdin at once and reaps them all.
 *
 *   spawn_bare [--n N] -- COMMAND [ARG...]
 *
 * Prints one JSON line: the start rate (sessions per second until all answered
 * initialize) and the time from the EOFs to the last reap.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define PROG "spawn_bare"

static const char init_req[] =
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
	"\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}\n";

struct child {
	pid_t pid;
	int in, out;
	bool answered;
};

/* Read what is ready; a child has answered once a '\n' arrives. */
static int
collect(int ep, struct child *c, int timeout_ms)
{
	struct epoll_event ev[256];
	int got = 0, n = epoll_wait(ep, ev, 256, timeout_ms);

	for (int i = 0; i < n; i++) {
		struct child *x = &c[ev[i].data.u32];
		char buf[4096];
		ssize_t r = read(x->out, buf, sizeof(buf));

		if (r > 0 && !x->answered && memchr(buf, '\n', (size_t)r) != NULL) {
			x->answered = true;
			got++;
		}
		if (r == 0 || x->answered) {
			(void)epoll_ctl(ep, EPOLL_CTL_DEL, x->out, NULL);
		}
		if (r == 0 && !x->answered) {
			fprintf(stderr, PROG ": child %d closed stdout without answering\n",
				(int)x->pid);
			exit(1);
		}
	}
	return got;
}

int
main(int argc, char **argv)
{
	size_t n = 1000, answered = 0, reaped = 0;
	int i, ep;
	struct child *c;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
			n = strtoull(argv[++i], NULL, 10);
		} else {
			fprintf(stderr, "usage: " PROG " [--n N] -- COMMAND [ARG...]\n");
			return 2;
		}
	}
	if (i + 1 >= argc || n == 0) {
		fprintf(stderr, "usage: " PROG " [--n N] -- COMMAND [ARG...]\n");
		return 2;
	}
	(void)signal(SIGPIPE, SIG_IGN);
	bench_raise_nofile();
	c = calloc(n, sizeof(*c));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (c == NULL || ep == -1) {
		bench_die(PROG, "set-up");
	}

	uint64_t t0 = bench_now_ns();

	for (size_t k = 0; k < n; k++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)k };

		c[k].pid = bench_spawn(argv + i + 1, &c[k].in, &c[k].out);
		if (c[k].pid == -1) {
			bench_die(PROG, argv[i + 1]);
		}
		if (bench_write_all(c[k].in, init_req, sizeof(init_req) - 1) == -1 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, c[k].out, &ev) == -1) {
			bench_die(PROG, "initialize");
		}
		answered += (size_t)collect(ep, c, 0);
	}
	while (answered < n) {
		int got = collect(ep, c, 30000);

		if (got == 0) {
			fprintf(stderr, PROG ": no answer for 30 s (%zu of %zu)\n", answered, n);
			return 1;
		}
		answered += (size_t)got;
	}
	uint64_t t1 = bench_now_ns();

	/* End them all at once: EOF on every stdin, then reap. */
	for (size_t k = 0; k < n; k++) {
		close(c[k].in);
	}
	while (reaped < n) {
		int st;
		pid_t p = waitpid(-1, &st, 0);

		if (p == -1) {
			if (errno == EINTR) {
				continue;
			}
			bench_die(PROG, "waitpid");
		}
		reaped++;
	}
	uint64_t t2 = bench_now_ns();

	for (size_t k = 0; k < n; k++) {
		close(c[k].out);
	}
	double start_s = (double)(t1 - t0) / 1e9, end_ms = (double)(t2 - t1) / 1e6;

	printf("{\"tool\":\"spawn_bare\",\"n\":%zu,\"start_s\":%.4f,\"start_per_s\":%.1f,"
	       "\"end_ms\":%.2f}\n",
	       n, start_s, (double)n / start_s, end_ms);
	free(c);
	close(ep);
	return 0;
}
