/*
 * cmd_demo: `mcpmux demo`.  Plays an agent session against a misbehaving fixture server
 * (it ignores SIGTERM and leaves a daemonised grandchild behind), through mcpmux wrap
 * mode, ends the run, and shows that nothing of the server's tree is left.
 *
 * The fixture server is installed as a helper program; it is looked for relative to the
 * running binary (/proc/self/exe), never at a path of the build: installed, in
 * MCPMUX_HELPER_DIR (e.g. ../libexec/mcpmux, set by the build from the install layout);
 * in a build tree, in fixtures/ beside the binary.  --fixture PATH overrides both.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/diag.h"
#include "mcpmux/proctree.h"
#include "mcpmux/sys.h"

#ifndef MCPMUX_HELPER_DIR
#define MCPMUX_HELPER_DIR "../libexec/mcpmux"
#endif
#define DEMO_FIXTURE "mcp-fixture"

#define DEMO_TIMEOUT_MS 10000

/* A signal that ends the demo (Ctrl-C): it waits for its mcpmux first, then dies of it. */
static volatile sig_atomic_t demo_signal;

static void
demo_on_signal(int sig)
{
	demo_signal = sig;
}

/* Catch the signals that end a program from a terminal, unless they are ignored. */
static void
demo_catch_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction sa = { .sa_handler = demo_on_signal }, old;

	(void)sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
			(void)sigaction(sigs[i], &sa, NULL); /* no SA_RESTART: poll() returns */
		}
	}
}

struct demo {
	pid_t pid;
	int to, from;
	char buf[1 << 16];
	size_t len;
};

static void
show(const char *arrow, const char *line, size_t len)
{
	if (len > 150) {
		printf("  %s %.*s ... (%zu bytes)\n", arrow, 150, line, len);
	} else {
		printf("  %s %.*s\n", arrow, (int)len, line);
	}
	fflush(stdout);
}

static int
demo_send(struct demo *d, const char *line)
{
	show("client -> server", line, strlen(line));
	if (sys_write_all(d->to, line, strlen(line)) == -1 || sys_write_all(d->to, "\n", 1) == -1) {
		return diag_error_errno("demo: cannot write to mcpmux");
	}
	return 0;
}

/* Read lines until one contains `want`; the line is left in d->buf.  -1 on timeout. */
static int
demo_expect(struct demo *d, const char *want)
{
	for (;;) {
		char *nl = memchr(d->buf, '\n', d->len);

		if (nl != NULL) {
			*nl = '\0';
			size_t n = (size_t)(nl - d->buf);

			show("server -> client", d->buf, n);
			bool hit = strstr(d->buf, want) != NULL;

			if (hit) {
				return (int)n;
			}
			memmove(d->buf, nl + 1, d->len - n - 1);
			d->len -= n + 1;
			continue;
		}
		struct pollfd pfd = { .fd = d->from, .events = POLLIN };
		int ready = demo_signal != 0 ? -1 : poll(&pfd, 1, DEMO_TIMEOUT_MS);

		if (demo_signal != 0) {
			return -1;
		}
		if (ready == -1 && errno == EINTR) {
			continue;
		}
		if (ready == -1) {
			return diag_error_errno("demo: cannot wait for mcpmux's answer");
		}
		if (ready == 0) {
			return diag_error("demo: no answer containing '%s' within %d ms", want,
					  DEMO_TIMEOUT_MS);
		}
		ssize_t r = sys_read(d->from, d->buf + d->len, sizeof(d->buf) - 1 - d->len);

		if (r <= 0) {
			return diag_error("demo: mcpmux closed its stdout early");
		}
		d->len += (size_t)r;
	}
}

static void
demo_consume(struct demo *d, int n)
{
	size_t used = (size_t)n + 1;

	memmove(d->buf, d->buf + used, d->len - used);
	d->len -= used;
}

/*
 * The fixture server beside the running binary: the installed helper, else the build
 * tree's.  0 with its path in buf; -1 with the installed helper's path in buf, for the
 * message (only its relative part when the binary's own path cannot be read).
 */
static int
demo_find_fixture(char *buf, size_t cap)
{
	static const char *const rel[] = { MCPMUX_HELPER_DIR "/" DEMO_FIXTURE,
					   "fixtures/" DEMO_FIXTURE };
	char exe[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	(void)snprintf(buf, cap, "%s", rel[0]);
	if (n <= 0) {
		return -1;
	}
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash == NULL) {
		return -1;
	}
	*slash = '\0';
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		int k = snprintf(path, sizeof(path), "%s/%s", exe, rel[i]);

		if (k < 0 || (size_t)k >= sizeof(path)) {
			continue;
		}
		if (i == 0) {
			(void)snprintf(buf, cap, "%s", path);
		}
		if (access(path, X_OK) == 0) {
			/* Shown in the demo's command line: without the "..". */
			char *real = realpath(path, NULL);

			(void)snprintf(buf, cap, "%s", real != NULL ? real : path);
			free(real);
			return 0;
		}
	}
	return -1;
}

static void
demo_usage(void)
{
	fputs("usage: mcpmux demo [--fixture PATH]\n"
	      "\n"
	      "Run the fixture MCP server through mcpmux as an agent would: a session, an\n"
	      "end-of-run, and a check that nothing of the server's process tree is left.\n",
	      stdout);
}

int
cmd_demo(int argc, char **argv)
{
	char found[PATH_MAX + 64];
	const char *fixture = NULL;
	int in[2], out[2], status;
	struct demo d = { 0 };

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			demo_usage();
			return 0;
		}
		if (strcmp(argv[i], "--fixture") == 0 && i + 1 < argc) {
			fixture = argv[++i];
		} else if (strcmp(argv[i], "--fixture") == 0) {
			diag_error("option '--fixture' needs a value (see mcpmux demo --help)");
			return EXIT_USAGE;
		} else if (argv[i][0] == '-') {
			diag_error("unknown option '%s' (see mcpmux demo --help)", argv[i]);
			return EXIT_USAGE;
		} else {
			diag_error("unexpected argument '%s' (see mcpmux demo --help)", argv[i]);
			return EXIT_USAGE;
		}
	}

	if (fixture == NULL && demo_find_fixture(found, sizeof(found)) == -1) {
		diag_error("demo: the demo's server '%s' is not there (install mcpmux with its "
			   "helper programs, or give a server's path: mcpmux demo --fixture PATH)",
			   found);
		return 1;
	}
	if (fixture == NULL) {
		fixture = found;
	} else if (access(fixture, X_OK) != 0) {
		diag_error("demo: the fixture server '%s' is not there (give the path of a built "
			   "mcp-fixture with: mcpmux demo --fixture PATH)",
			   fixture);
		return 1;
	}
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1) {
		return diag_error_errno("demo: cannot create pipes") + 2;
	}
	printf("mcpmux demo: an agent run against a server that ignores SIGTERM and leaves a\n"
	       "daemonised grandchild behind (the leak mcpmux exists to stop).\n\n"
	       "$ mcpmux --eof-grace 500 --term-grace 500 -- %s --ignore-sigterm "
	       "--daemonize-grandchild\n\n",
	       fixture);
	fflush(stdout);
	demo_catch_signals();
	d.pid = fork();
	if (d.pid == 0) {
		const char *args[] = { "mcpmux",
				       "--eof-grace",
				       "500",
				       "--term-grace",
				       "500",
				       "--",
				       fixture,
				       "--ignore-sigterm",
				       "--daemonize-grandchild",
				       NULL };

		(void)dup2(in[0], STDIN_FILENO);
		(void)dup2(out[1], STDOUT_FILENO);
		execv("/proc/self/exe", (char *const *)(uintptr_t)args);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	d.to = in[1];
	d.from = out[0];
	if (d.pid == -1) {
		return diag_error_errno("demo: cannot fork") + 2;
	}

	int n, rc = 1;
	char session[PROCTREE_COOKIE_MAX + 1] = "";

	if (demo_send(&d, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
			  "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{"
			  "\"name\":\"demo\",\"version\":\"1\"}}}") == -1 ||
	    (n = demo_expect(&d, "\"id\":1")) < 0) {
		goto out;
	}
	demo_consume(&d, n);
	if (demo_send(&d, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}") == -1 ||
	    demo_send(&d,
		      "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
		      "\"name\":\"echo\",\"arguments\":{\"text\":\"hello through mcpmux\"}}}") ==
		    -1 ||
	    (n = demo_expect(&d, "\"id\":2")) < 0) {
		goto out;
	}
	demo_consume(&d, n);
	printf("\nthe run is over: the agent sends the end-of-run request\n\n");
	if (demo_send(&d, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"mcpmux/endRun\",\"params\":{"
			  "\"reason\":\"demo finished\"}}") == -1 ||
	    (n = demo_expect(&d, "\"id\":3")) < 0) {
		goto out;
	}
	const char *sp = strstr(d.buf, "\"session\":\"");

	if (sp != NULL) {
		sp += strlen("\"session\":\"");
		size_t k = strcspn(sp, "\"");

		(void)snprintf(session, sizeof(session), "%.*s",
			       (int)SYS_MIN(k, sizeof(session) - 1), sp);
	}
	demo_consume(&d, n);
	/* As mcpmux's teardown and ps read them: the whole environment, however long. */
	int left = session[0] ? proctree_count_cookie("/proc", session) : -1;

	if (session[0] && left == -1) {
		diag_warn_errno("demo: cannot list /proc");
	}

	printf("\nprocesses still carrying MCPMUX_SESSION=%s: %d\n", session, left);
	rc = left == 0 ? 0 : 1;
out:
	/*
	 * Interrupted too: mcpmux's stdin closed ends the session (a Ctrl-C reached mcpmux
	 * as well), and the demo waits until mcpmux has ended the server's tree, so that
	 * nothing of it runs once the demo is gone.
	 */
	sys_close(&d.to);
	while (waitpid(d.pid, &status, 0) == -1 && errno == EINTR) {
	}
	sys_close(&d.from);
	int sig = demo_signal;

	printf("mcpmux exited with status %d\n%s\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       sig != 0	 ? "demo: interrupted"
	       : rc == 0 ? "demo: OK, nothing was leaked"
			 : "demo: FAILED");
	if (sig != 0) {
		/* Dies of the signal, as an interrupted program does (the shell sees 128 + it). */
		fflush(stdout);
		(void)signal(sig, SIG_DFL);
		(void)raise(sig);
	}
	return rc;
}
