/*
 * sessions: session scale through one `mcpmux serve` on stdio.
 *
 *   sessions [--n N] [--end control|eof] [--idle-ms MS] -- MCPMUX serve [OPTIONS] -- BACKEND...
 *
 * 1. Starts the serve command and waits for its answer to mcpmux/stats.
 * 2. Starts N sessions at once (one initialize envelope each) and times until every
 *    session has answered: the start rate.
 * 3. Leaves them idle for MS milliseconds (default 1000) and reads mcpmux's memory
 *    (RssAnon from /proc/PID/status, Pss_Anon from smaps_rollup) against the value
 *    before the first session: the memory per idle session.
 * 4. Ends them all at once, with one control mcpmux/endRun per session (control) or by
 *    closing mcpmux's stdin (eof), and times until the last `ended` event.
 *
 * Prints one JSON line.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define PROG "sessions"

static int to_mux = -1, from_mux = -1;
static pid_t mux_pid;

/* Bytes for mcpmux, written as the pipe takes them. */
static char *out;
static size_t out_off, out_len, out_cap;

static char *in;
static size_t in_len, in_cap;

static size_t n_started, n_answered, n_errors, n_ended, n_ready;
static bool mux_eof;

static void
queue(const char *p, size_t len)
{
	if (len == 0) {
		return;
	}
	if (out_off + out_len + len > out_cap) {
		if (out_len > 0) {
			memmove(out, out + out_off, out_len);
		}
		out_off = 0;
		while (out_len + len > out_cap) {
			out_cap = out_cap ? out_cap * 2 : (size_t)1 << 20;
		}
		out = realloc(out, out_cap);
		if (out == NULL) {
			bench_die(PROG, "out of memory");
		}
	}
	memcpy(out + out_off + out_len, p, len);
	out_len += len;
}

static void
on_line(const char *p, size_t len)
{
	if (p == NULL) {
		return;
	}
	if (memmem(p, len, "\"event\":\"started\"", 17) != NULL) {
		n_started++;
	} else if (memmem(p, len, "\"event\":\"ended\"", 15) != NULL) {
		n_ended++;
	} else if (memmem(p, len, "\"id\":\"ready\"", 12) != NULL) {
		n_ready++;
	} else if (memmem(p, len, "\"error\":", 8) != NULL) {
		if (n_errors++ == 0) {
			fprintf(stderr, PROG ": mcpmux answered an error: %.*s\n", (int)len, p);
		}
	} else if (memmem(p, len, "\"result\":", 9) != NULL && len > 11 &&
		   memcmp(p, "{\"session\":", 11) == 0) {
		n_answered++;
	}
}

/* One poll round: write what is queued, read and count what came. */
static void
io_round(int timeout_ms)
{
	struct pollfd p[2];
	nfds_t np = 0;

	if (!mux_eof) {
		p[np++] = (struct pollfd){ .fd = from_mux, .events = POLLIN };
	}
	if (out_len > 0 && to_mux >= 0) {
		p[np++] = (struct pollfd){ .fd = to_mux, .events = POLLOUT };
	}
	if (np == 0 || poll(p, np, timeout_ms) <= 0) {
		return;
	}
	if (out_len > 0 && to_mux >= 0) {
		ssize_t w = write(to_mux, out + out_off, out_len);

		if (w > 0) {
			out_off += (size_t)w;
			out_len -= (size_t)w;
		} else if (w == -1 && errno != EAGAIN && errno != EINTR) {
			bench_die(PROG, "write to mcpmux");
		}
	}
	if (in_cap - in_len < 65536) {
		in_cap = in_cap ? in_cap * 2 : (size_t)1 << 20;
		in = realloc(in, in_cap);
		if (in == NULL) {
			bench_die(PROG, "out of memory");
		}
	}
	ssize_t r = read(from_mux, in + in_len, in_cap - in_len);

	if (r == 0) {
		mux_eof = true;
		return;
	}
	if (r < 0) {
		return;
	}
	in_len += (size_t)r;

	size_t start = 0;
	const char *nl;

	while ((nl = memchr(in + start, '\n', in_len - start)) != NULL) {
		on_line(in + start, (size_t)(nl - (in + start)));
		start = (size_t)(nl - in) + 1;
	}
	if (start > 0) {
		memmove(in, in + start, in_len - start);
	}
	in_len -= start;
}

/* Run the I/O until *counter reaches want; false on a 60 s stall or mcpmux's EOF. */
static bool
wait_for(const size_t *counter, size_t want, const char *what)
{
	uint64_t last = bench_now_ns();
	size_t seen = *counter;

	while (*counter < want) {
		if (mux_eof) {
			fprintf(stderr, PROG ": mcpmux closed its stdout: %zu of %zu %s\n",
				*counter, want, what);
			return false;
		}
		io_round(1000);
		if (*counter != seen) {
			seen = *counter;
			last = bench_now_ns();
		} else if (bench_now_ns() - last > 60000000000ull) {
			fprintf(stderr, PROG ": stalled: %zu of %zu %s\n", *counter, want, what);
			return false;
		}
	}
	return true;
}

static void
idle(int ms)
{
	uint64_t until = bench_now_ns() + (uint64_t)ms * 1000000u;

	while (bench_now_ns() < until) {
		io_round((int)((until - bench_now_ns()) / 1000000u) + 1);
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: " PROG " [--n N] [--end control|eof] [--idle-ms MS] -- "
			"MCPMUX serve [OPTIONS] -- COMMAND [ARG...]\n");
	exit(2);
}

static void
give_up(void)
{
	(void)kill(mux_pid, SIGTERM);
	(void)waitpid(mux_pid, NULL, 0);
	exit(1);
}

int
main(int argc, char **argv)
{
	size_t n = 1000;
	bool end_eof = false;
	int idle_ms = 1000, i;
	char line[512];

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
			n = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--end") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "eof") == 0) {
				end_eof = true;
			} else if (strcmp(argv[i], "control") != 0) {
				usage();
			}
		} else if (strcmp(argv[i], "--idle-ms") == 0 && i + 1 < argc) {
			idle_ms = atoi(argv[++i]);
		} else {
			usage();
		}
	}
	if (i + 1 >= argc || n == 0) {
		usage();
	}
	(void)signal(SIGPIPE, SIG_IGN);
	/* mcpmux inherits the limit: three fds per session. */
	bench_raise_nofile();
	mux_pid = bench_spawn(argv + i + 1, &to_mux, &from_mux);
	if (mux_pid == -1) {
		bench_die(PROG, argv[i + 1]);
	}
	bench_set_nonblock(to_mux, 1);
	bench_set_nonblock(from_mux, 1);

	static const char ready[] =
		"{\"message\":{\"jsonrpc\":\"2.0\",\"id\":\"ready\",\"method\":\"mcpmux/stats\"}}\n";

	queue(ready, sizeof(ready) - 1);
	if (!wait_for(&n_ready, 1, "answers to mcpmux/stats")) {
		give_up();
	}
	idle(200);
	long rss0 = bench_proc_kib(mux_pid, "status", "RssAnon:");
	long pss0 = bench_proc_kib(mux_pid, "smaps_rollup", "Pss_Anon:");

	/* Start N sessions at once. */
	uint64_t t0 = bench_now_ns();

	for (size_t k = 0; k < n; k++) {
		int len =
			snprintf(line, sizeof(line),
				 "{\"session\":\"b%zu\",\"message\":{\"jsonrpc\":\"2.0\",\"id\":1,"
				 "\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
				 "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":"
				 "\"bench\",\"version\":\"1\"}}}}\n",
				 k);

		queue(line, (size_t)len);
	}
	if (!wait_for(&n_answered, n, "sessions answered initialize")) {
		give_up();
	}
	uint64_t t1 = bench_now_ns();

	idle(idle_ms);
	long rss1 = bench_proc_kib(mux_pid, "status", "RssAnon:");
	long pss1 = bench_proc_kib(mux_pid, "smaps_rollup", "Pss_Anon:");

	/* End them all at once. */
	uint64_t t2 = bench_now_ns();

	if (end_eof) {
		close(to_mux);
		to_mux = -1;
	} else {
		for (size_t k = 0; k < n; k++) {
			int len =
				snprintf(line, sizeof(line),
					 "{\"message\":{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":"
					 "\"mcpmux/endRun\",\"params\":{\"session\":\"b%zu\"}}}\n",
					 k, k);

			queue(line, (size_t)len);
		}
	}
	if (!wait_for(&n_ended, n, "ended events")) {
		give_up();
	}
	uint64_t t3 = bench_now_ns();

	if (to_mux >= 0) {
		close(to_mux);
		to_mux = -1;
	}
	while (!mux_eof) {
		io_round(1000);
	}
	int code = bench_wait(mux_pid);

	double start_s = (double)(t1 - t0) / 1e9;

	printf("{\"tool\":\"sessions\",\"n\":%zu,\"end\":\"%s\",\"start_s\":%.4f,"
	       "\"start_per_s\":%.1f,\"rss_anon_kib_before\":%ld,\"rss_anon_kib_idle\":%ld,"
	       "\"rss_per_session_b\":%.0f,\"pss_anon_per_session_b\":%.0f,\"end_ms\":%.2f,"
	       "\"started\":%zu,\"errors\":%zu,\"exit\":%d}\n",
	       n, end_eof ? "eof" : "control", start_s, (double)n / start_s, rss0, rss1,
	       (double)(rss1 - rss0) * 1024. / (double)n,
	       pss0 >= 0 && pss1 >= 0 ? (double)(pss1 - pss0) * 1024. / (double)n : -1.,
	       (double)(t3 - t2) / 1e6, n_started, n_errors, code);
	free(in);
	free(out);
	return n_errors > 0 || n_started != n;
}
