/*
 * cli: option parsing for wrap and serve.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/cli.h"
#include "mcpmux/diag.h"
#include "mcpmux/framer.h"
#include "mcpmux/httpmsg.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"
#include "mcpmux/wbuf.h"

enum {
	OPT_EOF_GRACE = 256,
	OPT_TERM_GRACE,
	OPT_END_METHOD,
	OPT_MAX_MESSAGE,
	OPT_MAX_QUEUE,
	OPT_MAX_SESSIONS,
	OPT_IDLE_TIMEOUT,
	OPT_LISTEN,
	OPT_LOG,
	OPT_LOG_BODIES,
	OPT_STALL_TIMEOUT,
	OPT_KILL_DEADLINE,
	OPT_HTTP,
	OPT_HTTP_PATH,
	OPT_METRICS,
	OPT_AUTH_TOKEN_FILE,
	OPT_ALLOW_ORIGIN,
	OPT_IDLE_SUSPEND,
	OPT_MAX_SERVERS,
	OPT_POOL,
};

static const char usage_text[] =
	"usage: mcpmux [OPTIONS] -- COMMAND [ARG...]             wrap one MCP stdio server\n"
	"       mcpmux serve [OPTIONS] [--listen PATH] -- COMMAND [ARG...]\n"
	"                                                        one server per session ID\n"
	"       mcpmux serve [OPTIONS] --http [ADDR:]PORT -- COMMAND [ARG...]\n"
	"                                                        the same over MCP's\n"
	"                                                        Streamable HTTP\n"
	"       mcpmux connect [--session ID] [--keep] [--end-method NAME]\n"
	"                      [--max-message SIZE] PATH         MCP stdio <-> a serve socket\n"
	"       mcpmux ctl PATH (list | stats | end SESSION)     look at and steer a serve\n"
	"       mcpmux log (show | stats) [FILE]                 read a traffic log\n"
	"       mcpmux config (wrap | unwrap) FILE [--in-place]  route a client config's servers\n"
	"                                                        through mcpmux, or back\n"
	"       mcpmux ps [--json]                               running instances, sessions,\n"
	"                                                        orphans of dead instances\n"
	"       mcpmux sweep [--dry-run] [--older-than DURATION] end those orphans\n"
	"       mcpmux demo [--fixture PATH]                     a run, its end, its teardown\n"
	"       mcpmux --version | --help\n"
	"\n"
	"options of wrap and serve:\n"
	"  --eof-grace MS       after closing the server's stdin, wait this long (2000)\n"
	"  --term-grace MS      after SIGTERM to the tree, wait this long before SIGKILL (2000)\n"
	"  --end-method NAME    JSON-RPC method that ends a run (mcpmux/endRun)\n"
	"  --max-message BYTES  largest message in either direction (64M)\n"
	"  --max-queue BYTES    unsent bytes per direction before backpressure (16M)\n"
	"  --idle-timeout S     end the run after S seconds without traffic (0: never)\n"
	"  --idle-suspend S     after S idle seconds end the server but keep the client; its\n"
	"                       next message starts a fresh server, replaying the handshake\n"
	"                       (0: never).  Wrong for servers that keep state of their own\n"
	"                       (a browser, an open transaction): it is lost\n"
	"  --max-servers N      at most N live servers of this command (or --pool) across\n"
	"                       the user's mcpmux instances: the least recently active idle\n"
	"                       one is suspended first (0: no cap)\n"
	"  --pool NAME          the pool --max-servers counts in (default: the command line)\n"
	"  --stall-timeout S    end a run whose server takes none of its waiting input for\n"
	"                       S seconds (30; 0: never); under --http, also close the\n"
	"                       connection of a client that takes none of its bytes for S\n"
	"                       seconds (0: 30)\n"
	"  --kill-deadline MS   after SIGKILL, give up on a tree that will not die (5000;\n"
	"                       at least 50)\n"
	"  --log FILE           traffic log, one JSON line per message ('-': stderr;\n"
	"                       default: $MCPMUX_LOG); SIGUSR1 reopens it\n"
	"  --log-bodies WHAT    message bodies in the log: full, none, or a byte count\n"
	"  -q, -v               fewer, or more, of mcpmux's own messages on stderr\n"
	"options of serve:\n"
	"  --max-sessions N     concurrent sessions; more are refused (1024, or fewer with\n"
	"                       a low descriptor limit; at most 32768)\n"
	"  --listen PATH        serve on a Unix socket (0600) instead of stdin/stdout\n"
	"  --http [ADDR:]PORT   serve MCP's Streamable HTTP transport (loopback unless ADDR\n"
	"                       says otherwise; or a socket path); see mcpmux serve --help\n"
	"\n"
	"The server runs with MCPMUX_SESSION=<id> in its environment.  When the run ends\n"
	"(stdin EOF, the end-of-run message, SIGTERM/SIGINT/SIGHUP, the server's own exit,\n"
	"or the idle timeout) mcpmux closes its stdin, then sends SIGTERM, then SIGKILL to\n"
	"its whole process tree.  In wrap mode mcpmux exits with the server's status.\n"
	"Each subcommand takes --help.\n";

static void
cli_serve_usage(void)
{
	fputs("usage: mcpmux serve [OPTIONS] [--listen PATH] -- COMMAND [ARG...]\n"
	      "\n"
	      "One COMMAND per session ID, behind the envelope protocol (docs/protocol.md):\n"
	      "{\"session\":\"ID\",\"message\":{...}} lines on stdin/stdout, or on every\n"
	      "connection to the Unix socket PATH.  Each session ends, process tree and all,\n"
	      "with its own end-of-run; stdin EOF (or SIGTERM with --listen) ends them all.\n"
	      "\n"
	      "options: the options of wrap mode (see mcpmux --help), and\n"
	      "  --max-sessions N     concurrent sessions; more are refused (1024, or fewer with\n"
	      "                       a low descriptor limit; at most 32768)\n"
	      "  --listen PATH        serve on a Unix socket (0600) instead of stdin/stdout\n"
	      "                       ('systemd': the socket that systemd passed)\n"
	      "\n"
	      "Streamable HTTP (MCP's HTTP transport; docs/http.md):\n"
	      "  --http [ADDR:]PORT   serve HTTP on ADDR:PORT (ADDR: 127.0.0.1 unless given;\n"
	      "                       [::1]:PORT for IPv6; PORT 0: any free port), or on a Unix\n"
	      "                       socket PATH (one with a '/'), or on the sockets systemd\n"
	      "                       passed ('systemd'); repeatable.  One server per HTTP\n"
	      "                       session; DELETE ends it, process tree and all\n"
	      "  --http-path PATH     the MCP endpoint (/mcp)\n"
	      "  --metrics            also serve /metrics (Prometheus) and /healthz\n"
	      "  --auth-token-file F  require \"Authorization: Bearer <the token in F>\";\n"
	      "                       needed to listen beyond loopback\n"
	      "  --allow-origin O     accept requests from browser origin O (exact, such as\n"
	      "                       https://app.example; repeatable); loopback origins are\n"
	      "                       always accepted\n"
	      "Without --idle-timeout, an HTTP session that is never deleted keeps its server.\n",
	      stdout);
}

void
cli_usage(void)
{
	fputs(usage_text, stdout);
}

double
cli_teardown_max_s(const struct mcpmux_options *o)
{
	return (o->eof_grace_ms + o->term_grace_ms + o->kill_deadline_ms) / 1000. + 1;
}

size_t
cli_default_max_sessions(size_t fds_each)
{
	size_t nofile = sys_nofile_limit();

	return nofile > 256 ? SYS_MIN((size_t)1024, (nofile - CLI_FDS_SPARE) / fds_each) : 48;
}

void
cli_defaults(struct mcpmux_options *o)
{
	memset(o, 0, sizeof(*o));
	o->eof_grace_ms = 2000;
	o->term_grace_ms = 2000;
	o->end_method = "mcpmux/endRun";
	o->max_message = FRAMER_MAX_DEFAULT;
	o->max_queue = WBUF_HIGH_DEF;
	o->stall_timeout_s = 30;
	o->kill_deadline_ms = 5000;
	o->max_sessions = cli_default_max_sessions(CLI_SESSION_FDS);
	o->log_bodies = TLOG_BODIES_FULL;
	const char *env = getenv("MCPMUX_LOG");

	o->log_path = env != NULL && env[0] != '\0' ? env : NULL;
}

/* A non-negative integer with an optional K, M or G (binary) suffix. */
int
cli_option_error(int c, char **argv, const struct option *longopts, const char *cmd)
{
	/* What getopt_long() last took: the refused option, or (a short one inside a
	 * cluster, "-xq") an argument before it. */
	const char *arg = argv[optind - 1];
	int n = (int)strcspn(arg, "=");
	bool is_long = strncmp(arg, "--", 2) == 0 && n > 2;

	if (c == ':') {
		if (is_long) {
			return diag_error("option '%.*s' needs a value (see %s --help)", n, arg,
					  cmd);
		}
		return diag_error("option '-%c' needs a value (see %s --help)", optopt, cmd);
	}
	if (optopt == 0) { /* a long option that is none of cmd's */
		return diag_error("unknown option '%.*s' (see %s --help)", n, arg, cmd);
	}
	if (is_long && arg[n] == '=') {
		for (const struct option *o = longopts; o->name != NULL; o++) {
			if (o->val == optopt && o->has_arg == no_argument &&
			    strncmp(o->name, arg + 2, (size_t)n - 2) == 0) {
				return diag_error("option '--%s' takes no value (see %s --help)",
						  o->name, cmd);
			}
		}
	}
	return diag_error("unknown option '-%c' (see %s --help)", optopt, cmd);
}

/* A size: bytes, or with K, M or G (KiB, MiB, GiB), between min and SIZE_MAX / 2. */
static bool
parse_size(const char *s, size_t min, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno != 0 || s[0] == '-') {
		goto bad;
	}
	unsigned shift = 0;

	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		break;
	}
	if (shift > 0) {
		if (v > (SIZE_MAX / 2) >> shift) {
			goto bad; /* would overflow */
		}
		v <<= shift;
		end++;
	}
	if (*end == 'i' && end[1] == 'B') {
		end += 2;
	} else if (*end == 'B') {
		end++;
	}
	if (*end != '\0' || v < min || v > SIZE_MAX / 2) {
		goto bad;
	}
	*out = (size_t)v;
	return true;
bad:
	return false;
}

int
cli_parse_size(const char *opt, const char *s, size_t min, size_t *out)
{
	if (parse_size(s, min, out)) {
		return 0;
	}
	return diag_error("invalid value '%s' for %s (expected a number of bytes >= %zu, such as "
			  "65536 or 64M)",
			  s, opt, min);
}

/* A count (--max-sessions, --max-servers), read as a size is. */
static int
parse_count(const char *opt, const char *s, size_t min, size_t *out)
{
	if (parse_size(s, min, out)) {
		return 0;
	}
	return diag_error("invalid value '%s' for %s (expected a whole number >= %zu)", s, opt,
			  min);
}

/* The edit distance of a and b (each at most 31 bytes), a swap of neighbours as one. */
static size_t
edit_distance(const char *a, size_t na, const char *b, size_t nb)
{
	size_t d[32][32];

	for (size_t i = 0; i <= na; i++) {
		d[i][0] = i;
	}
	for (size_t j = 0; j <= nb; j++) {
		d[0][j] = j;
	}
	for (size_t i = 1; i <= na; i++) {
		for (size_t j = 1; j <= nb; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t v = SYS_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);

			v = SYS_MIN(v, d[i - 1][j - 1] + cost);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
				v = SYS_MIN(v, d[i - 2][j - 2] + 1);
			}
			d[i][j] = v;
		}
	}
	return d[na][nb];
}

const char *
cli_did_you_mean(const char *word)
{
	static const struct {
		const char *name, *hint;
	} cmds[] = {
		{ "serve", " (did you mean `mcpmux serve`?)" },
		{ "connect", " (did you mean `mcpmux connect`?)" },
		{ "config", " (did you mean `mcpmux config`?)" },
		{ "sweep", " (did you mean `mcpmux sweep`?)" },
		{ "ctl", " (did you mean `mcpmux ctl`?)" },
		{ "log", " (did you mean `mcpmux log`?)" },
		{ "ps", " (did you mean `mcpmux ps`?)" },
		/* the commands of those, said with theirs */
		{ "stats", " (did you mean `mcpmux log stats` or `mcpmux ctl PATH stats`?)" },
		{ "show", " (did you mean `mcpmux log show`?)" },
		{ "list", " (did you mean `mcpmux ctl PATH list`?)" },
		{ "unwrap", " (did you mean `mcpmux config unwrap`?)" },
		{ "wrap", " (did you mean `mcpmux config wrap`?)" },
	};
	size_t n = strlen(word), best = 3;
	const char *hint = "";

	if (n == 0 || n > 31 || strchr(word, '/') != NULL) {
		return "";
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		size_t len = strlen(cmds[i].name);
		size_t most = len >= 5 ? 2 : 1;
		size_t d;

		if (word[0] != cmds[i].name[0]) {
			continue;
		}
		d = edit_distance(word, n, cmds[i].name, len);
		if (d <= most && d < best) {
			best = d;
			hint = cmds[i].hint;
		}
	}
	return hint;
}

static int
parse_number(const char *opt, const char *s, const char *unit, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !(v >= 0) || v > 1e9) {
		return diag_error("invalid value '%s' for %s (expected a number of %s >= 0)", s,
				  opt, unit);
	}
	*out = v;
	return 0;
}

static int
parse_http(struct mcpmux_options *o, const char *v)
{
	struct httpmsg_addr a;

	if (o->n_http == CLI_HTTP_MAX) {
		return diag_error("too many --http options (at most %d)", CLI_HTTP_MAX);
	}
	if (strcmp(v, "systemd") != 0 && httpmsg_parse_addr(v, &a) == -1) {
		return diag_error("invalid value '%s' for --http (give PORT, ADDR:PORT, "
				  "[IPV6]:PORT, a socket path with a '/', or systemd)",
				  v);
	}
	o->http[o->n_http++] = v;
	return 0;
}

static int
parse_http_path(const char *v)
{
	size_t n = strlen(v);

	if (n < 1 || n > 255 || v[0] != '/' || strchr(v, '?') != NULL || strchr(v, '#') != NULL) {
		goto bad;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f) {
			goto bad;
		}
	}
	return 0;
bad:
	return diag_error("invalid value '%s' for --http-path (a path such as /mcp: 1 to 255 "
			  "visible characters, the first a '/', no '?' or '#')",
			  v);
}

static int
parse_origin(struct mcpmux_options *o, const char *v)
{
	size_t n = strlen(v);

	if (o->n_allow_origin == CLI_ORIGIN_MAX) {
		return diag_error("too many --allow-origin options (at most %d)", CLI_ORIGIN_MAX);
	}
	if (n == 0 || n > 255 || !httpmsg_value_ok(v, n) || strchr(v, ' ') != NULL ||
	    (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)) {
		return diag_error("invalid value '%s' for --allow-origin (an origin as browsers "
				  "send it, such as https://app.example or http://host:8080)",
				  v);
	}
	o->allow_origin[o->n_allow_origin++] = v;
	return 0;
}

/* The HTTP options that only mean something with --http. */
static int
check_http(const struct mcpmux_options *o)
{
	const char *orphan = NULL;

	if (o->n_http > 0) {
		return 0;
	}
	if (o->metrics) {
		orphan = "--metrics";
	} else if (o->http_path != NULL) {
		orphan = "--http-path";
	} else if (o->auth_token_file != NULL) {
		orphan = "--auth-token-file";
	} else if (o->n_allow_origin > 0) {
		orphan = "--allow-origin";
	}
	if (orphan != NULL) {
		return diag_error("%s belongs to the HTTP front end (add --http [ADDR:]PORT)",
				  orphan);
	}
	return 0;
}

int
cli_parse(struct mcpmux_options *o, int argc, char **argv, bool serve)
{
	static const struct option longopts[] = {
		{ "eof-grace", required_argument, NULL, OPT_EOF_GRACE },
		{ "term-grace", required_argument, NULL, OPT_TERM_GRACE },
		{ "end-method", required_argument, NULL, OPT_END_METHOD },
		{ "max-message", required_argument, NULL, OPT_MAX_MESSAGE },
		{ "max-queue", required_argument, NULL, OPT_MAX_QUEUE },
		{ "max-sessions", required_argument, NULL, OPT_MAX_SESSIONS },
		{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "log", required_argument, NULL, OPT_LOG },
		{ "log-bodies", required_argument, NULL, OPT_LOG_BODIES },
		{ "stall-timeout", required_argument, NULL, OPT_STALL_TIMEOUT },
		{ "kill-deadline", required_argument, NULL, OPT_KILL_DEADLINE },
		{ "http", required_argument, NULL, OPT_HTTP },
		{ "http-path", required_argument, NULL, OPT_HTTP_PATH },
		{ "metrics", no_argument, NULL, OPT_METRICS },
		{ "auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE },
		{ "allow-origin", required_argument, NULL, OPT_ALLOW_ORIGIN },
		{ "idle-suspend", required_argument, NULL, OPT_IDLE_SUSPEND },
		{ "max-servers", required_argument, NULL, OPT_MAX_SERVERS },
		{ "pool", required_argument, NULL, OPT_POOL },
		{ "help", no_argument, NULL, 'h' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	int c, rc = 0;
	bool max_sessions_given = false;

	optind = 1;
	opterr = 0;
	/* "+": stop at the first non-option, the command. */
	while ((c = getopt_long(argc, argv, "+:hqv", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_EOF_GRACE:
			rc = parse_number("--eof-grace", optarg, "milliseconds", &o->eof_grace_ms);
			break;
		case OPT_TERM_GRACE:
			rc = parse_number("--term-grace", optarg, "milliseconds",
					  &o->term_grace_ms);
			break;
		case OPT_END_METHOD:
			if (optarg[0] == '\0' || strlen(optarg) > 255) {
				rc = diag_error("invalid --end-method '%s' (1 to 255 bytes)",
						optarg);
			}
			o->end_method = optarg;
			break;
		case OPT_MAX_MESSAGE:
			rc = cli_parse_size("--max-message", optarg, 64, &o->max_message);
			break;
		case OPT_MAX_QUEUE:
			rc = cli_parse_size("--max-queue", optarg, 1024, &o->max_queue);
			break;
		case OPT_MAX_SESSIONS:
			if (!serve) {
				goto not_here;
			}
			rc = parse_count("--max-sessions", optarg, 1, &o->max_sessions);
			if (rc == 0 && o->max_sessions > CLI_MAX_SESSIONS_MAX) {
				rc = diag_error(
					"--max-sessions %s is over %d, the most mcpmux serves "
					"(the list of `mcpmux ctl` must fit its line)",
					optarg, CLI_MAX_SESSIONS_MAX);
			}
			max_sessions_given = true;
			break;
		case OPT_IDLE_TIMEOUT:
			rc = parse_number("--idle-timeout", optarg, "seconds", &o->idle_timeout_s);
			break;
		case OPT_IDLE_SUSPEND:
			rc = parse_number("--idle-suspend", optarg, "seconds", &o->idle_suspend_s);
			break;
		case OPT_MAX_SERVERS:
			rc = parse_count("--max-servers", optarg, 0, &o->max_servers);
			break;
		case OPT_POOL:
			if (optarg[0] == '\0' || strlen(optarg) > 64 ||
			    strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					   "0123456789._-") != strlen(optarg)) {
				rc = diag_error(
					"invalid --pool '%s' (1 to 64 of A-Z a-z 0-9 . _ -)",
					optarg);
			}
			o->pool = optarg;
			break;
		case OPT_STALL_TIMEOUT:
			rc = parse_number("--stall-timeout", optarg, "seconds",
					  &o->stall_timeout_s);
			break;
		case OPT_KILL_DEADLINE:
			rc = parse_number("--kill-deadline", optarg, "milliseconds",
					  &o->kill_deadline_ms);
			break;
		case OPT_LISTEN:
			if (!serve) {
				goto not_here;
			}
			o->listen = optarg;
			break;
		case OPT_HTTP:
			if (!serve) {
				goto not_here;
			}
			rc = parse_http(o, optarg);
			break;
		case OPT_HTTP_PATH:
			if (!serve) {
				goto not_here;
			}
			rc = parse_http_path(optarg);
			o->http_path = optarg;
			break;
		case OPT_METRICS:
			if (!serve) {
				goto not_here;
			}
			o->metrics = true;
			break;
		case OPT_AUTH_TOKEN_FILE:
			if (!serve) {
				goto not_here;
			}
			if (optarg[0] == '\0') {
				rc = diag_error("--auth-token-file needs a file name");
			}
			o->auth_token_file = optarg;
			break;
		case OPT_ALLOW_ORIGIN:
			if (!serve) {
				goto not_here;
			}
			rc = parse_origin(o, optarg);
			break;
		case OPT_LOG:
			if (optarg[0] == '\0') {
				rc = diag_error("--log needs a file name ('-' for stderr)");
			}
			o->log_path = optarg;
			break;
		case OPT_LOG_BODIES:
			if (strcmp(optarg, "full") == 0) {
				o->log_bodies = TLOG_BODIES_FULL;
			} else if (strcmp(optarg, "none") == 0) {
				o->log_bodies = 0;
			} else if (!parse_size(optarg, 1, &o->log_bodies)) {
				rc = diag_error(
					"invalid value '%s' for --log-bodies (expected full, "
					"none, or a number of bytes >= 1, such as 65536 or "
					"64M)",
					optarg);
			}
			break;
		case 'h':
			if (serve) {
				cli_serve_usage();
			} else {
				cli_usage();
			}
			return 1;
		case 'q':
			diag_set_level(DIAG_QUIET);
			break;
		case 'v':
			diag_set_level(DIAG_VERBOSE);
			break;
		default:
			return cli_option_error(c, argv, longopts, "mcpmux");
		}
		if (rc == -1) {
			return -1;
		}
	}
	if (serve && check_http(o) == -1) {
		return -1;
	}
	if (o->n_http > 0 && !max_sessions_given) {
		/*
		 * An HTTP session also holds its connections: a GET stream and a request, and
		 * room for a share of the 503s that linger (front_http.c, hx_size_connections()).
		 */
		o->max_sessions = cli_default_max_sessions(CLI_SESSION_FDS + 3);
	}
	if (optind >= argc) {
		return diag_error("no server command given (usage: mcpmux %s-- COMMAND [ARG...])",
				  serve ? "serve [OPTIONS] [--listen PATH] " : "[OPTIONS] ");
	}
	o->command = argv + optind;
	/* Not after -- or an option: where a misspelt subcommand would be. */
	o->command_first = !serve && o->command[0] != NULL && optind == 1;
	return 0;
not_here:
	/* After "--opt VALUE", optind is past the value: name the option, not the value. */
	return diag_error("option '%s' belongs to 'mcpmux serve' (see mcpmux --help)",
			  optind >= 2 && argv[optind - 1][0] != '-' ? argv[optind - 2]
								    : argv[optind - 1]);
}
