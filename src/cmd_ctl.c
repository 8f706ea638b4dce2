/*
 * cmd_ctl: `mcpmux ctl PATH (list | stats | end SESSION) [--json]`: one control request
 * to a running `mcpmux serve --listen PATH`, printed as a table (or as JSON).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/diag.h"
#include "mcpmux/hub.h"
#include "mcpmux/listener.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/survey.h"
#include "mcpmux/sys.h"

/*
 * How long a reply may take, all of it (not each read: a peer that sends a byte now and
 * then must not hold ctl for ever).  The answer to an end comes when the session's
 * teardown is done: it may take as long again as serve says its teardowns take at most
 * (`teardown_max_s` of mcpmux/stats, asked first).
 */
#define CTL_TIMEOUT_S 60.
/*
 * The longest line ctl takes from serve: more than the longest list, that of
 * CLI_MAX_SESSIONS_MAX sessions and as many kept ones not started (under 44 MiB).  A
 * peer that sends more without a line's end is no serve: its bytes are not kept for the
 * whole of CTL_TIMEOUT_S.
 */
#define CTL_LINE_MAX ((size_t)64 << 20)
_Static_assert(CTL_LINE_MAX >= (size_t)2 * CLI_MAX_SESSIONS_MAX * HUB_LIST_ENTRY_MAX + 4096,
	       "the longest list is a line ctl takes");

static void
ctl_usage(void)
{
	fputs("usage: mcpmux ctl PATH list [--json]          sessions of a serve\n"
	      "       mcpmux ctl PATH stats [--json]         its totals\n"
	      "       mcpmux ctl PATH end SESSION [--json]   end a session, wait for its teardown\n"
	      "(after --, every word is PATH, the command or SESSION: an ID that starts with '-')\n",
	      stdout);
}

/* A connection to a serve, and what came from it that was not taken yet. */
struct ctl {
	const char *path;
	int fd;
	struct sbuf in;
	size_t used;   /* the bytes of in that the last reply took */
	size_t no_end; /* the bytes at the start of in known to hold no '\n' */
};

/* Connect to path and send the requests in req.  0 or -1 (said on stderr). */
static int
ctl_open(struct ctl *c, const char *path, const struct sbuf *req)
{
	c->path = path;
	c->fd = listener_connect_said(path);
	if (c->fd == -1) {
		return -1;
	}
	(void)sys_set_nonblock(c->fd, 0);
	if (req->failed || sys_write_all(c->fd, req->buf, req->len) == -1) {
		return diag_error_errno("cannot send to '%s'", path);
	}
	return 0;
}

/*
 * The answer to request id, parsed: the next line {"message":{...,"id":id,...}} (lines
 * that are not are skipped; an error without a request, on stderr), by deadline
 * (sys_mono()), that is limit_s after the request.  *line: its text (NUL-terminated; until
 * the next call).  NULL when it did not come (said on stderr).
 */
static yajl_val
ctl_reply(struct ctl *c, long long id, double deadline, double limit_s, const char **line)
{
	char buf[65536], err[256];

	for (;;) {
		char *nl;

		if (c->used > 0) {
			memmove(c->in.buf, c->in.buf + c->used, c->in.len - c->used);
			c->in.len -= c->used;
			c->used = 0;
			c->no_end = 0;
		}
		nl = c->in.len > c->no_end
			     ? memchr(c->in.buf + c->no_end, '\n', c->in.len - c->no_end)
			     : NULL;
		if (nl == NULL) {
			c->no_end = c->in.len;
		}
		if (nl == NULL && c->in.len > CTL_LINE_MAX) {
			diag_error("'%s' sent over %zu MiB without a line's end: not a reply of "
				   "serve",
				   c->path, CTL_LINE_MAX >> 20);
			return NULL;
		}
		if (nl != NULL) {
			const char *idp[] = { "message", "id", NULL };
			yajl_val root, v;

			*nl = '\0';
			c->used = (size_t)(nl + 1 - c->in.buf);
			if (strncmp(c->in.buf, "{\"error\":", 9) == 0) {
				diag_error("'%s': %s", c->path, c->in.buf);
				continue;
			}
			if (strncmp(c->in.buf, "{\"message\":", 11) != 0) {
				continue; /* none are expected */
			}
			root = yajl_tree_parse(c->in.buf, err, sizeof(err));
			v = yajl_tree_get(root, idp, yajl_t_any);
			/* An id of null: an error for a request serve could not read. */
			if (v != NULL && (YAJL_IS_NULL(v) ||
					  (YAJL_IS_INTEGER(v) && YAJL_GET_INTEGER(v) == id))) {
				*line = c->in.buf;
				return root;
			}
			yajl_tree_free(root);
			continue;
		}
		double left = deadline - sys_mono();
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int rc;

		if (left <= 0) {
			diag_error("no reply from '%s' within %.0f s", c->path, limit_s);
			return NULL;
		}
		rc = poll(&p, 1, (int)SYS_MIN(left * 1000 + 1, 3600000.));
		if (rc == -1 && errno != EINTR) {
			diag_error_errno("cannot wait for '%s'", c->path);
			return NULL;
		}
		if (rc <= 0) {
			continue;
		}
		ssize_t n = sys_read(c->fd, buf, sizeof(buf));

		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			continue;
		}
		if (n == -1) {
			diag_error_errno("cannot read from '%s'", c->path);
			return NULL;
		}
		if (n == 0) {
			diag_error("'%s' closed the connection without a reply", c->path);
			return NULL;
		}
		sbuf_add(&c->in, buf, (size_t)n);
		if (c->in.failed) {
			diag_error("out of memory: the reply of '%s' cannot be read", c->path);
			return NULL;
		}
	}
}

static double
num(yajl_val v, const char *a, const char *b)
{
	const char *path[] = { a, b, NULL };
	yajl_val n = yajl_tree_get(v, path, yajl_t_number);

	return n != NULL ? YAJL_GET_DOUBLE(n) : 0;
}

/* Member a of v with that many decimals and unit after it, or "-" when v has no such number. */
static void
fmt_num(yajl_val v, const char *a, int decimals, const char *unit, char *out, size_t cap)
{
	const char *path[] = { a, NULL };
	yajl_val n = yajl_tree_get(v, path, yajl_t_number);

	if (n != NULL) {
		(void)snprintf(out, cap, "%.*f%s", decimals, YAJL_GET_DOUBLE(n), unit);
	} else {
		(void)snprintf(out, cap, "-");
	}
}

static const char *
str(yajl_val v, const char *a)
{
	const char *path[] = { a, NULL };
	yajl_val s = yajl_tree_get(v, path, yajl_t_string);

	return s != NULL ? YAJL_GET_STRING(s) : "-";
}

static bool
flag(yajl_val v, const char *a)
{
	const char *path[] = { a, NULL };

	return YAJL_IS_TRUE(yajl_tree_get(v, path, yajl_t_true));
}

/*
 * The sessions as a table whose columns are as wide as their widest cell, as ps's are: a
 * session ID may have 128 bytes, a state ("not started") more than its header.  0, or 1
 * when memory ran out (said).
 */
static int
print_list(yajl_val result)
{
	static const char *const head[] = { "SESSION", "PID",	  "STATE",    "AGE",
					    "IDLE",    "MSGS IN", "MSGS OUT", "FLAGS" };
	const char *path[] = { "sessions", NULL };
	yajl_val arr = yajl_tree_get(result, path, yajl_t_array);
	size_t n = YAJL_IS_ARRAY(arr) ? arr->u.array.len : 0;
	struct survey_table t = { 8, head, "lrlrrrrl", NULL, 0, 0, false };

	for (size_t i = 0; i < n; i++) {
		yajl_val s = arr->u.array.values[i];
		char pid[32], age[32], idle[32], in[32], out[32], flags[32];

		/* What serve does not give (a session not started has no pid, no age) is "-". */
		fmt_num(s, "pid", 0, "", pid, sizeof(pid));
		fmt_num(s, "age_s", 1, "s", age, sizeof(age));
		fmt_num(s, "idle_s", 1, "s", idle, sizeof(idle));
		(void)snprintf(in, sizeof(in), "%.0f", num(s, "in", "messages"));
		(void)snprintf(out, sizeof(out), "%.0f", num(s, "out", "messages"));
		(void)snprintf(flags, sizeof(flags), "%s%s", flag(s, "kept") ? "kept " : "",
			       flag(s, "connected") ? "connected" : "detached");
		const char *row[] = {
			str(s, "session"), pid, str(s, "state"), age, idle, in, out, flags
		};

		survey_table_row(&t, row);
	}
	if (t.failed) {
		survey_table_release(&t);
		diag_error("out of memory: the list of %zu sessions cannot be shown", n);
		return 1;
	}
	survey_table_print(&t);
	survey_table_release(&t);
	printf("%zu session(s)\n", n);
	return 0;
}

static void
print_stats(yajl_val r)
{
	printf("sessions     %.0f of %.0f (%.0f kept)\n", num(r, "sessions", NULL),
	       num(r, "max_sessions", NULL), num(r, "kept", NULL));
	printf("connections  %.0f\n", num(r, "connections", NULL));
	printf("started      %.0f\nended        %.0f\nrefused      %.0f\n", num(r, "started", NULL),
	       num(r, "ended", NULL), num(r, "refused", NULL));
	printf("in           %.0f messages, %.0f bytes\n", num(r, "in", "messages"),
	       num(r, "in", "bytes"));
	printf("out          %.0f messages, %.0f bytes\n", num(r, "out", "messages"),
	       num(r, "out", "bytes"));
	printf("uptime       %.1f s\n", num(r, "uptime_s", NULL));
}

static void
print_end(yajl_val r)
{
	const char *code[] = { "exit", "code", NULL }, *sig[] = { "exit", "signal", NULL };
	yajl_val c = yajl_tree_get(r, code, yajl_t_number),
		 s = yajl_tree_get(r, sig, yajl_t_string);
	const char *esc = str(r, "escalation");

	if (strcmp(esc, "none") == 0 && c == NULL && s == NULL) {
		printf("session %s: not running\n", str(r, "session"));
		return;
	}
	printf("session %s ended: escalation %s, ", str(r, "session"), esc);
	if (c != NULL) {
		printf("exit code %lld", YAJL_GET_INTEGER(c));
	} else if (s != NULL) {
		printf("killed by %s", YAJL_GET_STRING(s));
	} else {
		printf("never started");
	}
	printf(", %.0f ms\n", num(r, "ms", NULL));
}

int
cmd_ctl(int argc, char **argv)
{
	bool json = false;
	const char *args[3] = { NULL, NULL, NULL };
	int n = 0;

	/* Its output waits for room in a full non-blocking stdout, as config's does. */
	(void)sys_stdout_waits();
	bool opts = true; /* until "--": after it, a session ID may start with '-' */

	for (int i = 1; i < argc; i++) {
		if (opts && strcmp(argv[i], "--") == 0) {
			opts = false;
		} else if (opts && strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (opts && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
			ctl_usage();
			return 0;
		} else if (opts && argv[i][0] == '-' && argv[i][1] != '\0') {
			diag_error("unknown option '%s' (see mcpmux ctl --help)", argv[i]);
			return EXIT_USAGE;
		} else if (n < 3) {
			args[n++] = argv[i];
		} else {
			n++;
		}
	}
	bool ok = (n == 2 && (strcmp(args[1], "list") == 0 || strcmp(args[1], "stats") == 0)) ||
		  (n == 3 && strcmp(args[1], "end") == 0);

	if (!ok) {
		diag_error("usage: mcpmux ctl PATH (list | stats | end SESSION) [--json]");
		return EXIT_USAGE;
	}
	if (n == 3 && !session_id_valid(args[2], strlen(args[2]))) {
		diag_error("invalid session ID '%s'", args[2]);
		return EXIT_USAGE;
	}
	struct sbuf req = { 0 };
	struct ctl c = { .fd = -1 };
	const char *reply = NULL;
	double t0 = sys_mono(), limit = CTL_TIMEOUT_S;
	yajl_val root = NULL;

	if (n == 3) {
		/* How long serve's teardowns take, then the end (answered when it is done). */
		sbuf_adds(&req, "{\"message\":{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
				"\"mcpmux/stats\"}}\n{\"message\":{\"jsonrpc\":\"2.0\",\"id\":2,"
				"\"method\":\"mcpmux/endRun\",\"params\":{\"session\":");
		sbuf_add_json_string(&req, args[2], strlen(args[2]));
		sbuf_adds(&req, ",\"reason\":\"mcpmux ctl end\"}}}\n");
	} else {
		sbuf_addf(&req,
			  "{\"message\":{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
			  "\"mcpmux/%s\"}}\n",
			  args[1]);
	}
	int rc = ctl_open(&c, args[0], &req);

	sbuf_release(&req);
	if (rc == 0) {
		root = ctl_reply(&c, 1, t0 + limit, limit, &reply);
	}
	if (root != NULL && n == 3) {
		const char *tpath[] = { "message", "result", "teardown_max_s", NULL };
		yajl_val t = yajl_tree_get(root, tpath, yajl_t_number);

		/* A serve that does not say (an older one): the end gets the usual limit. */
		limit += t != NULL && YAJL_GET_DOUBLE(t) > 0 ? YAJL_GET_DOUBLE(t) : 0;
		yajl_tree_free(root);
		root = ctl_reply(&c, 2, t0 + limit, limit, &reply);
	}
	sys_close(&c.fd);
	if (root == NULL) {
		sbuf_release(&c.in);
		return 1;
	}
	const char *rpath[] = { "message", "result", NULL };
	yajl_val result = yajl_tree_get(root, rpath, yajl_t_object);

	rc = 0;
	if (result == NULL) {
		const char *epath[] = { "message", "error", "message", NULL };
		yajl_val e = yajl_tree_get(root, epath, yajl_t_string);

		diag_error("serve answered with an error: %s", e ? YAJL_GET_STRING(e) : reply);
		rc = 1;
	} else if (json) {
		/* The result as serve sent it: cut out of {"message":{...,"result":R}}. */
		const char *p = strstr(reply, "\"result\":");
		size_t len = strlen(reply);

		printf("%.*s\n", p ? (int)(len - (size_t)(p + 9 - reply) - 2) : (int)len,
		       p ? p + 9 : reply);
	} else if (n == 3) {
		print_end(result);
	} else if (strcmp(args[1], "list") == 0) {
		rc = print_list(result);
	} else {
		print_stats(result);
	}
	if (fflush(stdout) == EOF || ferror(stdout)) {
		(void)diag_error_errno("cannot write to stdout");
		rc = 1;
	}
	yajl_tree_free(root);
	sbuf_release(&c.in);
	return rc;
}
