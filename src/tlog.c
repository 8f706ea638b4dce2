/*
 * tlog: the traffic log.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/errout.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

#define TLOG_FLUSH_AT ((size_t)64 << 10)

bool tlog_enabled;

static struct {
	struct ev_loop *loop;
	const char *path; /* NULL for stderr */
	int fd;
	size_t bodies;
	struct sbuf buf;
	bool failing; /* the last write failed (reported once) */
	ev_prepare flush_w;
	ev_signal reopen_w;
	time_t ts_sec; /* the second that ts_head holds */
	char ts_head[24];
} L = { .fd = -1 };

static const char *const kind_names[] = {
	[JSONRPC_INVALID_JSON] = "invalid", [JSONRPC_INVALID_REQUEST] = "invalid",
	[JSONRPC_REQUEST] = "request",	    [JSONRPC_NOTIFICATION] = "notification",
	[JSONRPC_RESPONSE] = "response",    [JSONRPC_ERROR] = "error",
	[JSONRPC_BATCH] = "batch",
};

static int
open_file(void)
{
	if (L.path == NULL) {
		L.fd = STDERR_FILENO;
		return 0;
	}
	/* 0600 whatever the umask: the log holds everything the agent and server said. */
	int fd = open(L.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);

	if (fd == -1) {
		return -1;
	}
	L.fd = fd;
	return 0;
}

static void
close_file(void)
{
	if (L.fd > STDERR_FILENO) {
		sys_close(&L.fd);
	}
	L.fd = -1;
}

void
tlog_flush(void)
{
	if (L.buf.len == 0) {
		return;
	}
	if (L.path == NULL) {
		/* On stderr: never blocking the loop, dropped and counted when stderr is full. */
		errout_lines(L.buf.buf, L.buf.len);
	} else if (L.fd < 0 || sys_write_all(L.fd, L.buf.buf, L.buf.len) == -1) {
		if (!L.failing) {
			diag_warn_errno("traffic log %s: cannot write (records are dropped until "
					"it can be written again)",
					L.path ? L.path : "(stderr)");
			L.failing = true;
		}
	} else if (L.failing) {
		diag_warn("traffic log %s: writing again", L.path ? L.path : "(stderr)");
		L.failing = false;
	}
	sbuf_reset(&L.buf);
	if (L.buf.failed) {
		L.buf.failed = false;
	}
}

static void
tlog_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	tlog_flush();
}

static void
tlog_on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	tlog_flush();
	close_file();
	if (open_file() == -1) {
		diag_warn_errno("traffic log %s: cannot reopen", L.path);
	} else {
		diag_info("traffic log %s: reopened", L.path);
	}
}

int
tlog_open(struct ev_loop *loop, const char *path, size_t bodies)
{
	L.loop = loop;
	L.path = strcmp(path, "-") == 0 ? NULL : path;
	L.bodies = bodies;
	if (open_file() == -1) {
		return diag_error_errno("cannot open the traffic log '%s' (check the directory "
					"exists and is writable, or use --log -)",
					path);
	}
	ev_prepare_init(&L.flush_w, tlog_on_prepare);
	ev_set_priority(&L.flush_w, EV_MINPRI); /* after every other prepare that logs */
	ev_prepare_start(loop, &L.flush_w);
	ev_unref(loop);
	if (L.path != NULL) {
		ev_signal_init(&L.reopen_w, tlog_on_usr1, SIGUSR1);
		ev_signal_start(loop, &L.reopen_w);
		ev_unref(loop);
	}
	tlog_enabled = true;
	return 0;
}

void
tlog_close(void)
{
	if (!tlog_enabled) {
		return;
	}
	tlog_flush();
	ev_ref(L.loop);
	ev_prepare_stop(L.loop, &L.flush_w);
	if (L.path != NULL) {
		ev_ref(L.loop);
		ev_signal_stop(L.loop, &L.reopen_w);
	}
	close_file();
	sbuf_release(&L.buf);
	tlog_enabled = false;
}

/* Decimal digits of v, at least `width` of them (zero-padded). */
static void
add_uint(struct sbuf *b, unsigned long long v, int width)
{
	char d[24];
	int n = 0;

	do {
		d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0 || n < width);
	sbuf_add(b, d + sizeof(d) - n, (size_t)n);
}

/* Milliseconds with three decimals, without printf (it is the hot path of the log). */
static void
add_ms(struct sbuf *b, double ms)
{
	unsigned long long us = (unsigned long long)(ms * 1000. + .5);

	add_uint(b, us / 1000, 1);
	sbuf_add(b, ".", 1);
	add_uint(b, us % 1000, 3);
}

/* {"ts":"...","session":"...","pid":N, */
static void
record_head(const char *session, pid_t pid)
{
	struct timespec ts;
	struct sbuf *b = &L.buf;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != L.ts_sec || L.ts_head[0] == '\0') {
		struct tm tm;

		(void)gmtime_r(&ts.tv_sec, &tm);
		(void)strftime(L.ts_head, sizeof(L.ts_head), "%Y-%m-%dT%H:%M:%S", &tm);
		L.ts_sec = ts.tv_sec;
	}
	sbuf_adds(b, "{\"ts\":\"");
	sbuf_adds(b, L.ts_head);
	sbuf_add(b, ".", 1);
	add_uint(b, (unsigned long long)ts.tv_nsec / 1000, 6);
	sbuf_adds(b, "Z\",\"session\":");
	if (session != NULL) {
		sbuf_add_json_string(b, session, strlen(session));
	} else {
		sbuf_adds(b, "null");
	}
	if (pid > 0) {
		sbuf_adds(b, ",\"pid\":");
		add_uint(b, (unsigned long long)pid, 1);
	} else {
		sbuf_adds(b, ",\"pid\":null");
	}
}

static void
record_end(void)
{
	sbuf_adds(&L.buf, "}\n");
	if (L.buf.len >= TLOG_FLUSH_AT) {
		tlog_flush();
	}
}

/* Cut at most n bytes of p at a UTF-8 character boundary. */
static size_t
utf8_cut(const char *p, size_t len, size_t n)
{
	if (n >= len) {
		return len;
	}
	while (n > 0 && ((unsigned char)p[n] & 0xc0) == 0x80) {
		n--;
	}
	return n;
}

static void
record_body(const char *line, size_t len, bool valid)
{
	struct sbuf *b = &L.buf;

	if (L.bodies == 0) {
		return;
	}
	if (len > L.bodies) {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add_json_string(b, line, utf8_cut(line, len, L.bodies));
		sbuf_adds(b, ",\"truncated\":true");
	} else if (valid) {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add(b, line, len);
	} else {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add_json_string(b, line, len);
	}
}

void
tlog_message(const char *session, pid_t pid, enum tlog_dir dir, const struct jsonrpc_scanner *scan,
	     const char *line, size_t len, double ms)
{
	enum jsonrpc_kind kind = scan != NULL ? scan->kind : JSONRPC_INVALID_JSON;
	struct sbuf *b = &L.buf;

	if (!tlog_enabled) {
		return;
	}
	record_head(session, pid);
	sbuf_adds(b,
		  dir == TLOG_IN ? ",\"dir\":\"in\",\"kind\":\"" : ",\"dir\":\"out\",\"kind\":\"");
	sbuf_adds(b, kind_names[kind]);
	sbuf_add(b, "\"", 1);
	if (kind != JSONRPC_BATCH && kind != JSONRPC_INVALID_JSON && scan->one.has_id) {
		sbuf_adds(b, ",\"id\":");
		sbuf_add(b, jsonrpc_str(scan, scan->one.id), scan->one.id.len);
	}
	if (kind != JSONRPC_BATCH && kind != JSONRPC_INVALID_JSON && scan->one.has_method) {
		sbuf_adds(b, ",\"method\":");
		sbuf_add_json_string(b, jsonrpc_str(scan, scan->one.method), scan->one.method.len);
	}
	if (ms >= 0) {
		sbuf_adds(b, ",\"ms\":");
		add_ms(b, ms);
	}
	sbuf_adds(b, ",\"bytes\":");
	add_uint(b, len, 1);
	record_body(line, len, kind != JSONRPC_INVALID_JSON);
	record_end();
}

void
tlog_oversize(const char *session, pid_t pid, enum tlog_dir dir, size_t bytes)
{
	if (!tlog_enabled) {
		return;
	}
	record_head(session, pid);
	sbuf_addf(&L.buf, ",\"dir\":\"%s\",\"kind\":\"invalid\",\"bytes\":%zu,\"oversize\":true",
		  dir == TLOG_IN ? "in" : "out", bytes);
	record_end();
}

void
tlog_event(const char *session, pid_t pid, const char *event, const char *fields, size_t fields_len)
{
	if (!tlog_enabled) {
		return;
	}
	record_head(session, pid);
	sbuf_addf(&L.buf, ",\"event\":\"%s\"", event);
	if (fields != NULL && fields_len > 0) {
		sbuf_adds(&L.buf, ",");
		sbuf_add(&L.buf, fields, fields_len);
	}
	record_end();
}

void
tlog_stderr(const char *session, pid_t pid, const char *text, size_t len)
{
	if (!tlog_enabled) {
		return;
	}
	record_head(session, pid);
	sbuf_adds(&L.buf, ",\"event\":\"stderr\",\"text\":");
	sbuf_add_json_string(&L.buf, text, len);
	record_end();
}
