/*
 * spawn_bare: the floor for session starts and ends, with no proxy.  Starts N copies of
 * COMMAND with posix_spawn and pipes, sends each an initialize request, waits for every
 * answer; then closes every stdin at once and reaps them all.
 *
 *   spawn_bare [--n N] [--leaves] -- COMMAND [ARG...]
 *
 * --leaves: each copy starts in a cgroup of its own, as mcpmux starts a server: a new
 * cgroup v2 leaf under an instance cgroup made for this run (mcpmux's cgroup module
 * makes and removes both), clone3() with CLONE_INTO_CGROUP, and the leaf removed after
 * the reap.  The price of the leaf
 * alone, with no proxy.
 *
 * Prints one JSON line: the start rate (sessions per second until all answered
 * initialize) and the time from the EOFs to the last reap.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "mcpmux/cgroup.h"
#include "mcpmux/clone3.h"

#define PROG "spawn_bare"

static const char init_req[] =
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
	"\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}\n";

struct child {
	pid_t pid;
	int in, out;
	bool answered;
};

/* --leaves: this run's instance cgroup, made as mcpmux makes its own; "" without. */
static char cg_run[CGROUP_PATH_MAX];

#define LEAF_CLONE_VFORK 0x4000ULL
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/* Start argv in a new leaf k, with pipes, as bench_spawn() does; its pid (or no return). */
static pid_t
spawn_in_leaf(char *const *argv, size_t k, int *to_child, int *from_child)
{
	char leaf[CGROUP_PATH_MAX + 32];
	int in[2], out[2], cg;
	struct spawn_clone_args ca;

	if (cgroup_leaf_make(cg_run, k, leaf, sizeof(leaf)) == -1) {
		bench_die(PROG, "mkdir of a leaf");
	}
	if ((cg = open(leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1) {
		bench_die(PROG, "a leaf's descriptors");
	}
	memset(&ca, 0, sizeof(ca));
	/* Its memory a copy (this process is small), waited for until it execs, as a spawn. */
	ca.flags = LEAF_CLONE_VFORK | SPAWN_CLONE_INTO_CGROUP;
	ca.exit_signal = SIGCHLD;
	ca.cgroup = (uint64_t)cg;
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));

	if (pid == -1) {
		bench_die(PROG, "clone3() into a cgroup");
	}
	if (pid == 0) {
		(void)dup2(in[0], STDIN_FILENO);
		(void)dup2(out[1], STDOUT_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(cg);
	close(in[0]);
	close(out[1]);
	*to_child = in[1];
	*from_child = out[0];
	return (pid_t)pid;
}

/*
 * After the reap: the leaf of child k goes, as mcpmux removes a server's leaf when it
 * ends.  false while the kernel still counts the reaped child in it (EBUSY for a moment).
 */
static bool
leaf_remove(size_t k)
{
	char leaf[CGROUP_PATH_MAX + 32];

	(void)snprintf(leaf, sizeof(leaf), "%s/s.%zu", cg_run, k);
	if (cgroup_remove(leaf) == 0) {
		return true;
	}
	if (errno != EBUSY) {
		bench_die(PROG, "rmdir of a leaf");
	}
	return false;
}

/* At any exit: what is left in the leaves is killed, the leaves and the run's cgroup go. */
static void
leaves_cleanup(void)
{
	if (cg_run[0] == '\0') {
		return;
	}
	(void)cgroup_kill(cg_run);
	for (int tries = 0; tries < 2000; tries++) {
		while (waitpid(-1, NULL, WNOHANG) > 0) {
		}
		if (cgroup_remove(cg_run) == 0) {
			cg_run[0] = '\0';
			return;
		}
		struct timespec ms = { 0, 1000000 };

		(void)nanosleep(&ms, NULL);
	}
	fprintf(stderr, PROG ": could not remove %s\n", cg_run);
}

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
	size_t n = 1000, answered = 0, reaped = 0, hint = 0;
	int i, ep;
	bool leaves = false;
	struct child *c;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
			n = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--leaves") == 0) {
			leaves = true;
		} else {
			fprintf(stderr, "usage: " PROG " [--n N] [--leaves] -- COMMAND [ARG...]\n");
			return 2;
		}
	}
	if (i + 1 >= argc || n == 0) {
		fprintf(stderr, "usage: " PROG " [--n N] [--leaves] -- COMMAND [ARG...]\n");
		return 2;
	}
	if (leaves && cgroup_instance_make(cg_run, sizeof(cg_run), getpid()) == -1) {
		cg_run[0] = '\0';
		bench_die(PROG, "--leaves: no cgroup v2 of our own to make leaves in");
	}
	if (leaves && atexit(leaves_cleanup) != 0) {
		bench_die(PROG, "atexit");
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

		c[k].pid = leaves ? spawn_in_leaf(argv + i + 1, k, &c[k].in, &c[k].out)
				  : bench_spawn(argv + i + 1, &c[k].in, &c[k].out);
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
		/* Its leaf, looked for from the last one found (they end nearly in order). */
		for (size_t j = 0; leaves && j < n; j++) {
			size_t k = (hint + j) % n;

			if (c[k].pid == p) {
				c[k].pid = leaf_remove(k) ? 0 : -1; /* -1: its leaf is left */
				hint = k + 1;
				break;
			}
		}
		reaped++;
	}
	/* The leaves the kernel was not done with at the reap: again, until they go. */
	for (size_t k = 0, tries = 0; leaves && k < n;) {
		if (c[k].pid != -1 || leaf_remove(k)) {
			k++;
		} else if (++tries > 100000) {
			bench_die(PROG, "a leaf stays busy");
		} else {
			sched_yield();
		}
	}
	uint64_t t2 = bench_now_ns();

	if (leaves && rmdir(cg_run) == -1) {
		bench_die(PROG, "rmdir");
	}
	cg_run[0] = '\0';

	for (size_t k = 0; k < n; k++) {
		close(c[k].out);
	}
	double start_s = (double)(t1 - t0) / 1e9, end_ms = (double)(t2 - t1) / 1e6;

	printf("{\"tool\":\"spawn_bare\",\"n\":%zu,\"leaves\":%s,\"start_s\":%.4f,"
	       "\"start_per_s\":%.1f,\"end_ms\":%.2f}\n",
	       n, leaves ? "true" : "false", start_s, (double)n / start_s, end_ms);
	free(c);
	close(ep);
	return 0;
}
