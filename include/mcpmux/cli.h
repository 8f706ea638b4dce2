/*
 * cli: command-line options shared by the subcommands, and their usage texts.
 */
#ifndef MCPMUX_CLI_H
#define MCPMUX_CLI_H

#include <stdbool.h>
#include <stddef.h>

#define EXIT_USAGE    2
#define EXIT_NOEXEC   126
#define EXIT_NOTFOUND 127

#define CLI_HTTP_MAX   8  /* --http given at most this often */
#define CLI_ORIGIN_MAX 32 /* --allow-origin given at most this often */

struct mcpmux_options {
	double eof_grace_ms;
	double term_grace_ms;
	const char *end_method;
	size_t max_message;
	size_t max_queue;
	size_t max_sessions;
	double idle_timeout_s;
	double idle_suspend_s;	 /* end an idle server but keep its client (0: never) */
	size_t max_servers;	 /* live servers across the pool's instances (0: no cap) */
	const char *pool;	 /* --pool, NULL: the command line names the pool */
	double stall_timeout_s;	 /* a server that takes no input this long while some waits */
	double kill_deadline_ms; /* after SIGKILL: then the tree is abandoned */
	const char *listen;	 /* --listen PATH, or "systemd" for the passed sockets */
	const char *http[CLI_HTTP_MAX]; /* --http [ADDR:]PORT, a socket path, or "systemd" */
	size_t n_http;
	const char *http_path; /* --http-path: the MCP endpoint (/mcp) */
	bool metrics;	       /* --metrics: /metrics and /healthz */
	const char *auth_token_file;
	const char *allow_origin[CLI_ORIGIN_MAX];
	size_t n_allow_origin;
	const char *log_path; /* --log, or MCPMUX_LOG; NULL for none */
	size_t log_bodies;    /* TLOG_BODIES_FULL, 0 (none), or bytes kept of each body */
	char **command;	      /* NULL-terminated; points into argv */
	bool command_first;   /* wrap: COMMAND was argv[1], where a subcommand goes */
};

void cli_defaults(struct mcpmux_options *o);
/*
 * A session takes three descriptors (its server's pipes), four with a log; CLI_FDS_SPARE
 * are kept for the rest (listeners, the log, the pool, a spare for EMFILE).
 */
#define CLI_SESSION_FDS 4
#define CLI_FDS_SPARE	64
/*
 * The most --max-sessions takes: the list of that many sessions and as many kept ones not
 * started (HUB_LIST_ENTRY_MAX each) is a line `mcpmux ctl` takes whole (cmd_ctl.c).
 */
#define CLI_MAX_SESSIONS_MAX 32768
/* The default --max-sessions for the descriptor limit, fds_each descriptors a session. */
size_t cli_default_max_sessions(size_t fds_each);
/*
 * The longest a server's teardown takes, in seconds: its whole ladder (--eof-grace,
 * --term-grace, --kill-deadline), and 1 s for the steps between.
 */
double cli_teardown_max_s(const struct mcpmux_options *o);
/*
 * Parse the options of wrap (serve = false) or serve, up to and including "--" and the
 * command.  Prints the problem and returns -1 on a usage error; 1 if --help was printed.
 */
int cli_parse(struct mcpmux_options *o, int argc, char **argv, bool serve);
void cli_usage(void);
/*
 * A size option's value: a non-negative integer with an optional K, M or G (binary)
 * suffix, at least min, into *out; 0, or -1 (said on stderr).
 */
int cli_parse_size(const char *opt, const char *s, size_t min, size_t *out);
/*
 * A COMMAND that does not exist (ENOENT) whose word is close to one of mcpmux's own
 * commands, a likely slip (`mcpmux sever -- x`): " (did you mean `mcpmux serve`?)", else "".
 * Close: no '/' in it, the same first letter, and an edit distance (a swap of two
 * neighbours counted as one) of at most 2 to a name of 5 letters or more, at most 1 to a
 * shorter one (so that "npx" or "uv" missing is not taken for `mcpmux ps`).
 */
const char *cli_did_you_mean(const char *word);

struct option;
/*
 * The option getopt_long() refused (it returned c, '?' or ':'), named as the user wrote it
 * ("-x", also in a cluster such as "-qx"; "--name", without its "=VALUE"), said on stderr
 * with what is wrong (unknown, needs a value, takes none) and a pointer to `cmd --help`.
 * Returns -1.
 */
int cli_option_error(int c, char **argv, const struct option *longopts, const char *cmd);

#endif
