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
#include "mcpmux/listener.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/sys.h"

#define CTL_TIMEOUT_MS 60000

static void
ctl_usage(void)
{
	fputs("usage: mcpmux ctl PATH list [--json]          sessions of a serve\n"
	      "       mcpmux ctl PATH stats [--json]         its totals\n"
	      "       mcpmux ctl PATH end SESSION [--json]   end a session, wait for its teardown\n",
	      stdout);
}

/* Send one request and read the reply line into *out (malloc'd).  0 or -1. */
static int
ctl_call(const char *path, const struct sbuf *req, char **out)
{
	int fd = listener_connect(path, LISTENER_CONNECT_S);
	struct sbuf reply = { 0 };
	char buf[65536];

	if (fd == -1 && errno == ETIMEDOUT) {
		return diag_error("cannot connect to '%s': its serve accepts no connection (none "
				  "was taken within %g s: is it stopped or stuck?)",
				  path, LISTENER_CONNECT_S);
	}
	if (fd == -1) {
		return diag_error_errno("cannot connect to '%s' (is `mcpmux serve --listen %s` "
					"running?)",
					path, path);
	}
	(void)sys_set_nonblock(fd, 0);
	if (sys_write_all(fd, req->buf, req->len) == -1) {
		sys_close(&fd);
		return diag_error_errno("cannot send to '%s'", path);
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *nl;

		if (poll(&p, 1, CTL_TIMEOUT_MS) <= 0) {
			diag_error("no reply from '%s' within %d s", path, CTL_TIMEOUT_MS / 1000);
			break;
		}
		ssize_t n = sys_read(fd, buf, sizeof(buf));

		if (n <= 0) {
			diag_error("'%s' closed the connection without a reply", path);
			break;
		}
		sbuf_add(&reply, buf, (size_t)n);
		if (reply.failed) {
			break;
		}
		nl = memchr(reply.buf, '\n', reply.len);
		if (nl == NULL) {
			continue;
		}
		*nl = '\0';
		/* Skip lines that are not the reply (none are expected). */
		if (strncmp(reply.buf, "{\"message\":", 11) != 0) {
			size_t used = (size_t)(nl + 1 - reply.buf);

			memmove(reply.buf, nl + 1, reply.len - used);
			reply.len -= used;
			continue;
		}
		sys_close(&fd);
		*out = reply.buf;
		return 0;
	}
	sys_close(&fd);
	sbuf_release(&reply);
	return -1;
}

static double
num(yajl_val v, const char *a, const char *b)
{
	const char *path[] = { a, b, NULL };
	yajl_val n = yajl_tree_get(v, path, yajl_t_number);

	return n != NULL ? YAJL_GET_DOUBLE(n) : 0;
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

static void
print_list(yajl_val result)
{
	const char *path[] = { "sessions", NULL };
	yajl_val arr = yajl_tree_get(result, path, yajl_t_array);
	size_t n = YAJL_IS_ARRAY(arr) ? arr->u.array.len : 0;

	printf("%-36s %8s %-8s %9s %9s %9s %9s %s\n", "SESSION", "PID", "STATE", "AGE", "IDLE",
	       "MSGS IN", "MSGS OUT", "FLAGS");
	for (size_t i = 0; i < n; i++) {
		yajl_val s = arr->u.array.values[i];
		const char *pidp[] = { "pid", NULL };
		yajl_val pid = yajl_tree_get(s, pidp, yajl_t_number);

		printf("%-36s %8lld %-8s %8.1fs %8.1fs %9.0f %9.0f %s%s\n", str(s, "session"),
		       pid != NULL ? YAJL_GET_INTEGER(pid) : 0LL, str(s, "state"),
		       num(s, "age_s", NULL), num(s, "idle_s", NULL), num(s, "in", "messages"),
		       num(s, "out", "messages"), flag(s, "kept") ? "kept " : "",
		       flag(s, "connected") ? "connected" : "detached");
	}
	printf("%zu session(s)\n", n);
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

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			ctl_usage();
			return 0;
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
	char *reply = NULL;

	sbuf_adds(&req, "{\"message\":{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":");
	if (n == 3) {
		sbuf_adds(&req, "\"mcpmux/endRun\",\"params\":{\"session\":");
		sbuf_add_json_string(&req, args[2], strlen(args[2]));
		sbuf_adds(&req, ",\"reason\":\"mcpmux ctl end\"}}}\n");
	} else {
		sbuf_addf(&req, "\"mcpmux/%s\"}}\n", args[1]);
	}
	int rc = ctl_call(args[0], &req, &reply);

	sbuf_release(&req);
	if (rc == -1) {
		return 1;
	}
	char err[256];
	yajl_val root = yajl_tree_parse(reply, err, sizeof(err));
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
		print_list(result);
	} else {
		print_stats(result);
	}
	yajl_tree_free(root);
	free(reply);
	return rc;
}
