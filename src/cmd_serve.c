/*
 * cmd_serve: one backend per session ID, over stdio or on every connection to a Unix
 * socket.  docs/protocol.md is the contract of the envelope protocol.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "mcpmux/cmd.h"
#include "mcpmux/conn.h"
#include "mcpmux/diag.h"
#include "mcpmux/envelope.h"
#include "mcpmux/errout.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/listener.h"
#include "mcpmux/proctree.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

struct serve;
struct sconn;

/* A control endRun waiting for a session's teardown. */
struct waiter {
	struct waiter *next;
	struct sconn *conn;
	struct sbuf id;
};

/* A session ID's entry: exists from its first message (or keep) until its end. */
struct entry {
	UT_hash_handle hh;
	char id[SESSION_ID_MAX + 1];
	size_t id_len;
	struct serve *sv;
	struct session *s;	 /* NULL until started */
	struct sconn *owner;	 /* NULL while a kept session has no connection */
	struct conn_source *out; /* its lines to the owner, NULL without one */
	struct waiter *waiters;
	bool kept;
	bool exited; /* the server exited: its output is read to its end */
	/*
	 * The connection whose input this session holds because its server's input queue is
	 * full (counted in that connection's n_full), NULL when it holds none.
	 */
	struct sconn *holding;
};

struct sconn {
	struct serve *sv;
	struct conn c;
	int fd;		/* the socket, -1 for stdio */
	size_t n_owned; /* entries whose owner this is */
	size_t n_full;	/* of them, sessions whose server's input is full: input held */
	bool closed;	/* input over: owned sessions are ending or detached */
	bool dead;	/* unlinked at the next loop turn, then freed */
	struct sconn *next;
};

struct serve {
	struct ev_loop *loop;
	const struct mcpmux_options *opt;
	struct session_config scfg;
	struct entry *table;
	size_t n_live; /* entries with a session */
	struct sconn *conns;
	struct listener lst;
	bool listening;
	bool shutting_down;
	ev_signal term_w, int_w, hup_w;
	ev_idle reap_w; /* frees dead connections, outside their callbacks */
	struct jsonrpc_scanner scan;
	struct jsonrpc_scanner log_scan; /* mcpmux's own messages, for the traffic log */
	struct sbuf tmp;
	ev_tstamp started;
	uint64_t n_started, n_ended, n_refused;
	struct session_stats done_stats; /* totals of ended sessions */
	int in_fd, out_fd; /* our own descriptions of stdin and stdout (sys_stdio_open) */
	bool in_shared, out_shared;
};

static void serve_on_line(void *ctx, const char *line, size_t len);
static void serve_on_big_begin(void *ctx, const char *head, size_t len);
static void serve_on_big_more(void *ctx, const char *more, size_t len);
static void serve_on_big_end(void *ctx, size_t total);
static void serve_deliver(struct session *s, const char *line, size_t len, void *owner);
static void serve_on_done(struct session *s, void *owner);
static void serve_on_exit(struct session *s, void *owner);
static void log_own(struct serve *sv, const char *sid, const struct session *s, const char *m,
		    size_t len);
static void sconn_maybe_free(struct sconn *sc);
static void serve_maybe_exit(struct serve *sv);
static void serve_on_input_full(struct session *s, void *owner, bool full);

static const struct framer_sink serve_sink = {
	.line = serve_on_line,
	.big_begin = serve_on_big_begin,
	.big_more = serve_on_big_more,
	.big_end = serve_on_big_end,
};

static const struct session_hooks serve_hooks = {
	.deliver = serve_deliver,
	.on_exit = serve_on_exit,
	.on_idle = serve_on_exit,
	.on_input_full = serve_on_input_full,
	.on_done = serve_on_done,
};

/* ---- output ---- */

/* A line of mcpmux's own (an event, an error, a control reply) to a connection. */
static void
send_own(struct sconn *sc, const struct sbuf *b)
{
	if (b->failed) {
		diag_error("out of memory: a message from mcpmux was lost");
		return;
	}
	if (conn_send_line(&sc->c, &sc->c.self, b->buf, b->len) == -1 && errno == ENOMEM) {
		diag_error("out of memory: a message from mcpmux was lost");
	}
}

/* Queue an envelope line for the entry's owner, through the entry's own queue. */
static void
send_entry_iov(struct entry *e, struct iovec *iov, int n)
{
	if (e->owner == NULL) {
		diag_warn("session %s: no connection: a line for the client was dropped: %.*s",
			  e->id, (int)SYS_MIN(iov[n - 2].iov_len, 200),
			  (const char *)iov[n - 2].iov_base);
		return;
	}
	if (conn_send(&e->owner->c, e->out, iov, n) == -1 && errno == ENOMEM) {
		diag_error("session %s: out of memory: a message for the client was lost", e->id);
	}
	if (e->s != NULL && conn_source_full(e->out)) {
		session_pause(e->s, true);
	}
}

/* {"session":"S"<fields>}: fields start with ',' (an event, an error, ...). */
static void
send_entry(struct entry *e, const char *fields, size_t len)
{
	struct iovec iov[5] = {
		{ .iov_base = (void *)(uintptr_t) "{\"session\":\"", .iov_len = 12 },
		{ .iov_base = e->id, .iov_len = e->id_len },
		{ .iov_base = (void *)(uintptr_t) "\"", .iov_len = 1 },
		{ .iov_base = (void *)(uintptr_t)fields, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
	};

	send_entry_iov(e, iov, 5);
}

static void
serve_deliver(struct session *s, const char *line, size_t len, void *owner)
{
	struct iovec iov[5] = {
		{ .iov_base = (void *)(uintptr_t) "{\"session\":\"", .iov_len = 12 },
		{ .iov_base = NULL, .iov_len = 0 },
		{ .iov_base = (void *)(uintptr_t) "\",\"message\":", .iov_len = 12 },
		{ .iov_base = (void *)(uintptr_t)line, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
	};
	struct entry *e = owner;

	(void)s;
	iov[1].iov_base = e->id;
	iov[1].iov_len = e->id_len;
	send_entry_iov(e, iov, 5);
}

/*
 * A JSON-RPC error for connection sc, in the envelope of session sid (or in one without a
 * session when sid is NULL).  When sc owns entry e, it goes through e's queue, in order
 * with the session's other output.
 */
static void
send_error(struct sconn *sc, struct entry *e, const char *sid, size_t sid_len, const char *id,
	   size_t id_len, int code, const char *text)
{
	struct sbuf *b = &sc->sv->tmp;

	sbuf_reset(b);
	if (e != NULL && e->owner == sc) {
		sbuf_adds(b, ",\"message\":");
		rpcout_error(b, id, id_len, code, text);
		if (!b->failed) {
			log_own(sc->sv, e->id, e->s, b->buf + 11, b->len - 11);
			send_entry(e, b->buf, b->len);
		}
		return;
	}
	sbuf_adds(b, "{");
	if (sid != NULL) {
		sbuf_adds(b, "\"session\":");
		sbuf_add_json_string(b, sid, sid_len);
		sbuf_adds(b, ",");
	}
	sbuf_adds(b, "\"message\":");
	size_t at = b->len;

	rpcout_error(b, id, id_len, code, text);
	if (sid != NULL && !b->failed) {
		char sbuf_id[SESSION_ID_MAX + 1];

		(void)snprintf(sbuf_id, sizeof(sbuf_id), "%.*s", (int)sid_len, sid);
		log_own(sc->sv, sbuf_id, e != NULL ? e->s : NULL, b->buf + at, b->len - at);
	}
	sbuf_adds(b, "}");
	send_own(sc, b);
}

/* A message of mcpmux's own for a session, into the traffic log. */
static void
log_own(struct serve *sv, const char *sid, const struct session *s, const char *m, size_t len)
{
	if (!tlog_enabled) {
		return;
	}
	struct jsonrpc_scanner *scan = &sv->log_scan;

	(void)jsonrpc_scan(scan, m, len);
	tlog_message(sid, s != NULL ? s->backend->pid : 0, TLOG_OUT, scan, m, len, 0);
}

/* An envelope too broken to name a session: {"error":{...}}. */
static void
send_envelope_error(struct sconn *sc, int code, const char *text)
{
	struct sbuf *b = &sc->sv->tmp;

	sbuf_reset(b);
	sbuf_addf(b, "{\"error\":{\"code\":%d,\"message\":", code);
	sbuf_add_json_string(b, text, strlen(text));
	sbuf_adds(b, "}}");
	send_own(sc, b);
}

/* ---- entries ---- */

static struct entry *
entry_find(struct serve *sv, const char *id, size_t len)
{
	struct entry *e;

	HASH_FIND(hh, sv->table, id, len, e);
	return e;
}

static struct entry *
entry_new(struct serve *sv, const char *id, size_t len)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		return NULL;
	}
	memcpy(e->id, id, len);
	e->id_len = len;
	e->sv = sv;
	HASH_ADD(hh, sv->table, id, len, e);
	return e;
}

/*
 * Read the server's output or let it wait in its pipe.  With an owner: read while its
 * queue has room.  Without one (a kept session between connections): wait for the next
 * owner, unless the run is over (the server exited, or the session is ending), when
 * what is left is read, and dropped with a warning, so that the teardown can finish.
 */
static void
entry_sync_pause(struct entry *e)
{
	if (e->s == NULL) {
		return;
	}
	if (e->owner != NULL) {
		session_pause(e->s, conn_source_full(e->out));
	} else {
		session_pause(e->s, !e->exited && !e->s->end_requested);
	}
}

/*
 * A session whose server's input is full holds its owner's input (only that
 * connection: the others go on).  Kept in step with ownership and the session's state.
 */
static void
entry_sync_hold(struct entry *e)
{
	struct sconn *want = e->s != NULL && e->s->input_full ? e->owner : NULL;

	if (want == e->holding) {
		return;
	}
	if (e->holding != NULL && --e->holding->n_full == 0) {
		conn_hold(&e->holding->c, CONN_HOLD_SERVER, false);
	}
	e->holding = want;
	if (want != NULL && want->n_full++ == 0) {
		conn_hold(&want->c, CONN_HOLD_SERVER, true);
	}
}

static void
serve_on_input_full(struct session *s, void *owner, bool full)
{
	(void)s;
	(void)full;
	entry_sync_hold(owner);
}

static void
entry_end(struct entry *e, double grace_ms, const char *reply_id, size_t reply_id_len)
{
	session_end(e->s, grace_ms, reply_id, reply_id_len);
	entry_sync_pause(e);
}

static void
serve_on_exit(struct session *s, void *owner)
{
	struct entry *e = owner;

	(void)s;
	e->exited = true;
	entry_sync_pause(e);
}

/*
 * Give the entry to connection sc (NULL: none; a kept session waits for one).  Lines
 * already queued for the old owner are still written to it.  -1 when out of memory.
 */
static int
entry_set_owner(struct entry *e, struct sconn *sc)
{
	struct conn_source *out = NULL;

	if (e->owner == sc) {
		return 0;
	}
	if (sc != NULL && (out = conn_source_new(e->sv->opt->max_queue)) == NULL) {
		return -1;
	}
	if (e->owner != NULL) {
		struct sconn *old = e->owner;

		conn_source_retire(&old->c, e->out);
		old->n_owned--;
		e->owner = NULL;
		entry_sync_hold(e); /* before old may go */
		sconn_maybe_free(old);
	}
	e->owner = sc;
	e->out = out;
	if (out != NULL) {
		out->owner = e;
	}
	if (sc != NULL) {
		sc->n_owned++;
	}
	entry_sync_pause(e);
	entry_sync_hold(e);
	return 0;
}

static void
entry_free(struct entry *e)
{
	struct serve *sv = e->sv;

	(void)entry_set_owner(e, NULL);
	while (e->waiters != NULL) {
		struct waiter *w = e->waiters;

		e->waiters = w->next;
		sbuf_release(&w->id);
		free(w);
	}
	HASH_DEL(sv->table, e);
	free(e);
}

static void
stats_add(struct session_stats *to, const struct session_stats *from)
{
	to->bytes_in += from->bytes_in;
	to->bytes_out += from->bytes_out;
	to->msgs_in += from->msgs_in;
	to->msgs_out += from->msgs_out;
}

static void
serve_on_done(struct session *s, void *owner)
{
	struct entry *e = owner;
	struct serve *sv = e->sv;
	struct sbuf *b = &sv->tmp;

	sbuf_reset(b);
	sbuf_adds(b, ",\"event\":\"ended\",");
	session_end_fields(s, b);
	if (!b->failed) {
		send_entry(e, b->buf, b->len);
	}
	for (struct waiter *w = e->waiters; w != NULL; w = w->next) {
		sbuf_reset(b);
		sbuf_adds(b, "{\"message\":{\"jsonrpc\":\"2.0\",\"id\":");
		sbuf_add(b, w->id.buf, w->id.len);
		sbuf_adds(b, ",\"result\":");
		session_result(s, b);
		sbuf_adds(b, "}}");
		send_own(w->conn, b);
	}
	stats_add(&sv->done_stats, &s->stats);
	sv->n_ended++;
	sv->n_live--;
	session_free(s);
	e->s = NULL;
	entry_free(e);
	serve_maybe_exit(sv);
}

/* Start the session's server; false (after answering) when it cannot be started. */
static bool
entry_start(struct sconn *sc, struct entry *e, const struct jsonrpc_item *it)
{
	struct serve *sv = sc->sv;
	const char *id = it->kind == JSONRPC_REQUEST ? jsonrpc_str(&sv->scan, it->id) : NULL;
	char text[200];

	if (sv->n_live >= sv->opt->max_sessions) {
		sv->n_refused++;
		(void)snprintf(
			text, sizeof(text),
			"too many sessions (%zu running; see --max-sessions): session refused",
			sv->n_live);
		diag_warn("session %s: %s", e->id, text);
		if (tlog_enabled) {
			sbuf_reset(&sv->tmp);
			sbuf_adds(&sv->tmp, "\"reason\":");
			sbuf_add_json_string(&sv->tmp, text, strlen(text));
			tlog_event(e->id, 0, "refused", sv->tmp.buf, sv->tmp.len);
		}
		goto refuse;
	}
	e->s = session_new(sv->loop, e->id, &sv->scfg, &serve_hooks, e);
	if (e->s == NULL) {
		(void)snprintf(text, sizeof(text), "cannot start the server: %s", strerror(errno));
		diag_error("session %s: %s", e->id, text);
		goto refuse;
	}
	sv->n_live++;
	sv->n_started++;
	if (e->owner == NULL) {
		session_pause(e->s, true);
	}
	sbuf_reset(&sv->tmp);
	sbuf_addf(&sv->tmp, ",\"event\":\"started\",\"pid\":%d", (int)e->s->backend->pid);
	send_entry(e, sv->tmp.buf, sv->tmp.len);
	return true;
refuse:
	if (id != NULL) {
		send_error(sc, e, e->id, e->id_len, id, it->id.len, RPC_SERVER_ERROR, text);
	} else {
		sbuf_reset(&sv->tmp);
		sbuf_adds(&sv->tmp, ",\"error\":{\"code\":-32000,\"message\":");
		sbuf_add_json_string(&sv->tmp, text, strlen(text));
		sbuf_adds(&sv->tmp, "}");
		send_entry(e, sv->tmp.buf, sv->tmp.len);
	}
	if (!e->kept) {
		entry_free(e);
	}
	return false;
}

/* ---- control: envelopes without a session ---- */

static void
reply_result(struct sconn *sc, const char *id, size_t id_len, const struct sbuf *result)
{
	struct sbuf *b = &sc->sv->tmp;

	sbuf_reset(b);
	sbuf_adds(b, "{\"message\":{\"jsonrpc\":\"2.0\",\"id\":");
	sbuf_add(b, id, id_len);
	sbuf_adds(b, ",\"result\":");
	sbuf_add(b, result->buf, result->len);
	sbuf_adds(b, "}}");
	send_own(sc, b);
}

static void
control_list(struct serve *sv, struct sbuf *r)
{
	ev_tstamp now = ev_now(sv->loop);
	bool first = true;

	sbuf_adds(r, "{\"sessions\":[");
	for (struct entry *e = sv->table; e != NULL; e = e->hh.next) {
		const struct session *s = e->s;

		sbuf_adds(r, first ? "{\"session\":" : ",{\"session\":");
		first = false;
		sbuf_add_json_string(r, e->id, e->id_len);
		if (s == NULL) {
			sbuf_adds(r, ",\"state\":\"not started\",\"pid\":null");
		} else {
			sbuf_addf(r,
				  ",\"state\":\"%s\",\"pid\":%d,\"age_s\":%.3f,\"idle_s\":%.3f,"
				  "\"pending\":%zu,\"in\":{\"bytes\":%llu,\"messages\":%llu},"
				  "\"out\":{\"bytes\":%llu,\"messages\":%llu}",
				  backend_is_ending(s->backend) ? "ending" : "running",
				  (int)s->backend->pid, now - s->started, now - s->last_activity,
				  s->n_pending, (unsigned long long)s->stats.bytes_in,
				  (unsigned long long)s->stats.msgs_in,
				  (unsigned long long)s->stats.bytes_out,
				  (unsigned long long)s->stats.msgs_out);
		}
		sbuf_addf(r, ",\"kept\":%s,\"connected\":%s}", e->kept ? "true" : "false",
			  e->owner != NULL ? "true" : "false");
	}
	sbuf_adds(r, "]}");
}

static void
control_stats(struct serve *sv, struct sbuf *r)
{
	struct session_stats t = sv->done_stats;
	size_t n_conns = 0, n_kept = 0;

	for (struct entry *e = sv->table; e != NULL; e = e->hh.next) {
		if (e->s != NULL) {
			stats_add(&t, &e->s->stats);
		}
		n_kept += e->kept;
	}
	for (struct sconn *sc = sv->conns; sc != NULL; sc = sc->next) {
		n_conns++;
	}
	sbuf_addf(r,
		  "{\"sessions\":%zu,\"max_sessions\":%zu,\"kept\":%zu,\"connections\":%zu,"
		  "\"started\":%llu,\"ended\":%llu,\"refused\":%llu,\"uptime_s\":%.3f,"
		  "\"in\":{\"bytes\":%llu,\"messages\":%llu},\"out\":{\"bytes\":%llu,"
		  "\"messages\":%llu}}",
		  sv->n_live, sv->opt->max_sessions, n_kept, n_conns,
		  (unsigned long long)sv->n_started, (unsigned long long)sv->n_ended,
		  (unsigned long long)sv->n_refused, ev_now(sv->loop) - sv->started,
		  (unsigned long long)t.bytes_in, (unsigned long long)t.msgs_in,
		  (unsigned long long)t.bytes_out, (unsigned long long)t.msgs_out);
}

static void
none_result(struct sbuf *r, const char *sid, size_t sid_len)
{
	sbuf_adds(r, "{\"session\":");
	if (sid != NULL) {
		sbuf_add_json_string(r, sid, sid_len);
	} else {
		sbuf_adds(r, "null");
	}
	sbuf_adds(r, ",\"pid\":null,\"exit\":null,\"escalation\":\"none\",\"ms\":0}");
}

static void
control(struct sconn *sc, const struct envelope *env)
{
	struct serve *sv = sc->sv;
	enum jsonrpc_kind kind = jsonrpc_scan(&sv->scan, env->message, env->message_len);
	const struct jsonrpc_item *it = &sv->scan.one;
	const char *id = it->has_id ? jsonrpc_str(&sv->scan, it->id) : NULL;
	struct sbuf r = { 0 };

	if (kind == JSONRPC_INVALID_JSON) {
		send_error(sc, NULL, NULL, 0, NULL, 0, RPC_PARSE_ERROR,
			   "Parse error: not valid JSON");
		return;
	}
	if (kind != JSONRPC_REQUEST && kind != JSONRPC_NOTIFICATION) {
		send_error(sc, NULL, NULL, 0, id, it->id.len, RPC_INVALID_REQUEST,
			   "Invalid Request: mcpmux itself takes requests (mcpmux/list, "
			   "mcpmux/stats, mcpmux/endRun)");
		return;
	}
	if (jsonrpc_method_is(&sv->scan, it, "mcpmux/list")) {
		control_list(sv, &r);
	} else if (jsonrpc_method_is(&sv->scan, it, "mcpmux/stats")) {
		control_stats(sv, &r);
	} else if (jsonrpc_method_is(&sv->scan, it, sv->opt->end_method)) {
		const struct jsonrpc_params *p = &sv->scan.params;
		struct entry *e =
			p->has_session
				? entry_find(sv, jsonrpc_str(&sv->scan, p->session), p->session.len)
				: NULL;

		if (!p->has_session) {
			send_error(sc, NULL, NULL, 0, id, it->id.len, -32602,
				   "Invalid params: params.session names the session to end");
			return;
		}
		if (e == NULL || e->s == NULL) {
			none_result(&r, jsonrpc_str(&sv->scan, p->session), p->session.len);
		} else {
			struct waiter *w = id != NULL ? calloc(1, sizeof(*w)) : NULL;

			if (w != NULL) {
				w->conn = sc;
				sbuf_add(&w->id, id, it->id.len);
				w->next = e->waiters;
				e->waiters = w;
			}
			session_log_end_request(e->s, &sv->scan);
			entry_end(e, p->has_grace_ms ? p->grace_ms : -1, NULL, 0);
			return;
		}
	} else {
		if (id != NULL) {
			send_error(sc, NULL, NULL, 0, id, it->id.len, -32601,
				   "Method not found (mcpmux takes mcpmux/list, mcpmux/stats, "
				   "mcpmux/endRun)");
		}
		sbuf_release(&r);
		return;
	}
	if (id != NULL) {
		reply_result(sc, id, it->id.len, &r);
	}
	sbuf_release(&r);
}

/* ---- envelopes from a connection ---- */

static void
handle_keep(struct sconn *sc, struct entry **ep, const struct envelope *env)
{
	struct serve *sv = sc->sv;
	struct entry *e = *ep;

	if (e == NULL && (e = *ep = entry_new(sv, env->session, env->session_len)) == NULL) {
		send_envelope_error(sc, RPC_SERVER_ERROR, "out of memory");
		return;
	}
	e->kept = env->keep;
	if (entry_set_owner(e, sc) == -1) {
		send_envelope_error(sc, RPC_SERVER_ERROR, "out of memory");
		return;
	}
	sbuf_reset(&sv->tmp);
	sbuf_addf(&sv->tmp, ",\"event\":\"kept\",\"keep\":%s", env->keep ? "true" : "false");
	send_entry(e, sv->tmp.buf, sv->tmp.len);
}

/* A client message that mcpmux answers itself, into the traffic log. */
static void
log_in(struct serve *sv, const struct envelope *env, const struct entry *e,
       const struct jsonrpc_scanner *scan)
{
	char sid[SESSION_ID_MAX + 1];

	if (!tlog_enabled) {
		return;
	}
	(void)snprintf(sid, sizeof(sid), "%.*s", (int)env->session_len, env->session);
	tlog_message(sid, e != NULL && e->s != NULL ? e->s->backend->pid : 0, TLOG_IN, scan,
		     env->message, env->message_len, -1);
	(void)sv;
}

static void
handle_message(struct sconn *sc, struct entry *e, const struct envelope *env)
{
	struct serve *sv = sc->sv;
	enum jsonrpc_kind kind = jsonrpc_scan(&sv->scan, env->message, env->message_len);
	const struct jsonrpc_item *it = &sv->scan.one;
	const char *id = it->has_id ? jsonrpc_str(&sv->scan, it->id) : NULL;

	if (kind == JSONRPC_INVALID_JSON || kind == JSONRPC_INVALID_REQUEST) {
		log_in(sv, env, e, kind == JSONRPC_INVALID_JSON ? NULL : &sv->scan);
	}
	if (kind == JSONRPC_INVALID_JSON) {
		send_error(sc, e, env->session, env->session_len, NULL, 0, RPC_PARSE_ERROR,
			   "Parse error: the message is not valid JSON");
		return;
	}
	if (kind == JSONRPC_INVALID_REQUEST) {
		send_error(sc, e, env->session, env->session_len, id, it->id.len,
			   RPC_INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message");
		return;
	}
	if ((kind == JSONRPC_REQUEST || kind == JSONRPC_NOTIFICATION) &&
	    jsonrpc_method_is(&sv->scan, it, sv->opt->end_method)) {
		if (e == NULL || e->s == NULL) {
			if (id != NULL) {
				struct sbuf r = { 0 };

				none_result(&r, env->session, env->session_len);
				sbuf_reset(&sv->tmp);
				sbuf_adds(&sv->tmp, "{\"session\":");
				sbuf_add_json_string(&sv->tmp, env->session, env->session_len);
				sbuf_adds(&sv->tmp, ",\"message\":{\"jsonrpc\":\"2.0\",\"id\":");
				sbuf_add(&sv->tmp, id, it->id.len);
				sbuf_adds(&sv->tmp, ",\"result\":");
				sbuf_add(&sv->tmp, r.buf, r.len);
				sbuf_adds(&sv->tmp, "}}");
				send_own(sc, &sv->tmp);
				sbuf_release(&r);
			}
			return;
		}
		const struct jsonrpc_params *p = &sv->scan.params;

		session_log_end_request(e->s, &sv->scan);
		entry_end(e, p->has_grace_ms ? p->grace_ms : -1, id, id ? it->id.len : 0);
		return;
	}
	if (e == NULL) {
		e = entry_new(sv, env->session, env->session_len);
		if (e == NULL || entry_set_owner(e, sc) == -1) {
			if (e != NULL) {
				entry_free(e);
			}
			send_error(sc, NULL, env->session, env->session_len, id, it->id.len,
				   RPC_SERVER_ERROR, "out of memory");
			return;
		}
	}
	if (e->s == NULL && (sv->shutting_down || !entry_start(sc, e, it))) {
		if (sv->shutting_down && id != NULL) {
			send_error(sc, e, env->session, env->session_len, id, it->id.len,
				   RPC_SERVER_ERROR, "mcpmux is shutting down");
		}
		return;
	}
	session_from_client(e->s, env->message, env->message_len, &sv->scan);
}

static void
serve_on_line(void *ctx, const char *line, size_t len)
{
	struct sconn *sc = ctx;
	struct serve *sv = sc->sv;
	struct envelope env;
	enum envelope_status st = envelope_parse(&env, line, len);

	if (st != ENVELOPE_OK) {
		send_envelope_error(sc,
				    st == ENVELOPE_NOT_JSON ? RPC_PARSE_ERROR : RPC_INVALID_REQUEST,
				    env.error);
		return;
	}
	if (!env.has_session) {
		if (!env.has_message) {
			send_envelope_error(
				sc, RPC_INVALID_REQUEST,
				"an envelope needs \"session\" and \"message\" (or "
				"\"keep\"); without a session, \"message\" is for mcpmux");
			return;
		}
		control(sc, &env);
		return;
	}
	if (!env.session_is_string || !session_id_valid(env.session, env.session_len)) {
		send_envelope_error(
			sc, RPC_INVALID_REQUEST,
			"invalid session ID (1 to 128 characters of A-Z a-z 0-9 . _ : @ -)");
		return;
	}
	if (!env.has_message && !env.has_keep) {
		send_envelope_error(sc, RPC_INVALID_REQUEST,
				    "an envelope with a session needs \"message\" or \"keep\"");
		return;
	}
	struct entry *e = entry_find(sv, env.session, env.session_len);

	if (e != NULL && e->owner != sc) {
		if (e->kept || e->owner == NULL) {
			/* A kept session: this connection takes it over. */
			if (entry_set_owner(e, sc) == -1) {
				send_envelope_error(sc, RPC_SERVER_ERROR, "out of memory");
				return;
			}
		} else {
			send_error(sc, NULL, env.session, env.session_len, NULL, 0,
				   RPC_SERVER_ERROR,
				   "session belongs to another connection (only kept sessions can "
				   "be taken over)");
			return;
		}
	}
	if (env.has_keep) {
		handle_keep(sc, &e, &env);
	}
	if (env.has_message) {
		handle_message(sc, e, &env);
	}
}

static void
serve_on_big_begin(void *ctx, const char *head, size_t len)
{
	(void)ctx;
	(void)head;
	(void)len;
}

static void
serve_on_big_more(void *ctx, const char *more, size_t len)
{
	(void)ctx;
	(void)more;
	(void)len;
}

static void
serve_on_big_end(void *ctx, size_t total)
{
	struct sconn *sc = ctx;
	char text[160];

	(void)snprintf(text, sizeof(text), "envelope too large (%zu bytes, the limit is %zu)",
		       total, sc->sv->opt->max_message);
	send_envelope_error(sc, RPC_INVALID_REQUEST, text);
}

/* ---- connections ---- */

static void
sconn_close_input(struct sconn *sc)
{
	struct serve *sv = sc->sv;

	if (sc->closed) {
		return;
	}
	sc->closed = true;
	conn_read(&sc->c, false);
	for (struct entry *e = sv->table, *next; e != NULL; e = next) {
		next = e->hh.next;
		if (e->owner != sc) {
			continue;
		}
		if (e->kept && sc->fd >= 0) {
			(void)entry_set_owner(e, NULL); /* kept: waits for another connection */
		} else if (e->s != NULL) {
			if (!e->s->end_requested) {
				entry_end(e, -1, NULL, 0);
			}
		} else {
			entry_free(e);
		}
	}
	sconn_maybe_free(sc);
}

static void
sconn_free(struct sconn *sc)
{
	struct serve *sv = sc->sv;

	for (struct sconn **pp = &sv->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == sc) {
			*pp = sc->next;
			break;
		}
	}
	/* Control requests it was waiting for: nobody to answer. */
	for (struct entry *e = sv->table; e != NULL; e = e->hh.next) {
		for (struct waiter **wp = &e->waiters; *wp != NULL;) {
			struct waiter *w = *wp;

			if (w->conn == sc) {
				*wp = w->next;
				sbuf_release(&w->id);
				free(w);
			} else {
				wp = &w->next;
			}
		}
	}
	conn_release(&sc->c);
	sys_close(&sc->fd);
	free(sc);
}

/*
 * A connection goes once its input is over, it owns nothing and its output is written.
 * It is freed at the next loop turn: its own callbacks may be on the stack.
 */
static void
sconn_maybe_free(struct sconn *sc)
{
	if (sc->fd < 0 || !sc->closed || sc->n_owned > 0 || sc->dead ||
	    (conn_queued(&sc->c) > 0 && !sc->c.out_dead)) {
		return;
	}
	sc->dead = true;
	conn_read(&sc->c, false);
	/* An idle watcher, not a prepare: this may run inside a prepare callback (a
	 * session's on_done), and a prepare started there would wait for the next event. */
	ev_idle_start(sc->sv->loop, &sc->sv->reap_w);
}

static void
serve_on_reap(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct serve *sv = container_of(w, struct serve, reap_w);

	(void)revents;
	ev_idle_stop(loop, w);
	for (struct sconn *sc = sv->conns, *next; sc != NULL; sc = next) {
		next = sc->next;
		if (sc->dead) {
			sconn_free(sc);
		}
	}
}

static void
sconn_on_eof(struct conn *c, void *ctx)
{
	struct sconn *sc = ctx;
	struct serve *sv = sc->sv;

	(void)c;
	if (sc->fd < 0) {
		/* stdio: the client is gone; every session goes, then mcpmux. */
		sv->shutting_down = true;
	}
	sconn_close_input(sc); /* may free sc */
	serve_maybe_exit(sv);
}

static void
sconn_on_gone(struct conn *c, void *ctx)
{
	struct sconn *sc = ctx;

	(void)c;
	for (struct entry *e = sc->sv->table; e != NULL; e = e->hh.next) {
		if (e->owner == sc && e->s != NULL) {
			session_pause(e->s, false); /* nobody reads: no point in holding it */
		}
	}
	sconn_on_eof(c, ctx);
}

static void
sconn_on_source_writable(struct conn *c, struct conn_source *src, void *ctx)
{
	struct entry *e = src->owner;

	(void)c;
	(void)ctx;
	if (e != NULL && e->s != NULL) {
		session_pause(e->s, false);
	}
}

static void
sconn_on_drained(struct conn *c, void *ctx)
{
	struct sconn *sc = ctx;

	(void)c;
	if (sc->fd >= 0) {
		sconn_maybe_free(sc);
	} else {
		serve_maybe_exit(sc->sv);
	}
}

static const struct conn_hooks sconn_hooks = {
	.on_eof = sconn_on_eof,
	.on_gone = sconn_on_gone,
	.on_source_writable = sconn_on_source_writable,
	.on_drained = sconn_on_drained,
};

static struct sconn *
sconn_new(struct serve *sv, int in_fd, int out_fd, int sock)
{
	struct sconn *sc = calloc(1, sizeof(*sc));

	if (sc == NULL) {
		return NULL;
	}
	sc->sv = sv;
	sc->fd = sock;
	conn_init(&sc->c, sv->loop, in_fd, out_fd, sv->opt->max_message, sv->opt->max_queue,
		  &serve_sink, &sconn_hooks, sc);
	sc->next = sv->conns;
	sv->conns = sc;
	conn_read(&sc->c, !sv->shutting_down);
	return sc;
}

static void
serve_on_accept(int fd, void *ctx)
{
	struct serve *sv = ctx;

	if (sv->shutting_down || sconn_new(sv, fd, fd, fd) == NULL) {
		(void)close(fd);
	}
}

/* ---- the whole ---- */

static void
serve_maybe_exit(struct serve *sv)
{
	if (!sv->shutting_down || sv->n_live > 0) {
		return;
	}
	for (struct sconn *sc = sv->conns; sc != NULL; sc = sc->next) {
		if (conn_queued(&sc->c) > 0 && !sc->c.out_dead) {
			return; /* still writing: its on_drained calls again */
		}
	}
	ev_break(sv->loop, EVBREAK_ALL);
}

static void
serve_shutdown(struct serve *sv, const char *why)
{
	diag_info("%s: ending every session", why);
	sv->shutting_down = true;
	if (sv->listening) {
		listener_close(&sv->lst);
		sv->listening = false;
	}
	for (struct sconn *sc = sv->conns; sc != NULL; sc = sc->next) {
		conn_read(&sc->c, false);
	}
	for (struct entry *e = sv->table, *next; e != NULL; e = next) {
		next = e->hh.next;
		if (e->s == NULL) {
			entry_free(e);
		} else if (!e->s->end_requested) {
			entry_end(e, -1, NULL, 0);
		}
	}
	serve_maybe_exit(sv);
}

static void
serve_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	serve_shutdown(w->data, strsignal(w->signum));
}

int
cmd_serve(const struct mcpmux_options *o)
{
	struct ev_loop *loop = EV_DEFAULT;
	struct serve *sv = calloc(1, sizeof(*sv));
	int rc = 0;

	if (sv == NULL || loop == NULL) {
		free(sv);
		return diag_error("cannot start: out of memory") + 2;
	}
	sv->loop = loop;
	sv->opt = o;
	sv->started = ev_now(loop);
	sv->scfg = (struct session_config){
		.argv = o->command,
		.eof_grace = o->eof_grace_ms / 1000.,
		.term_grace = o->term_grace_ms / 1000.,
		.idle_timeout = o->idle_timeout_s,
		.stall_timeout = o->stall_timeout_s,
		.kill_deadline = o->kill_deadline_ms / 1000.,
		.max_message = o->max_message,
		.max_queue = o->max_queue,
	};
	sv->in_fd = sv->out_fd = -1;
	jsonrpc_init(&sv->scan);
	sv->scan.params_method = o->end_method; /* the only params mcpmux reads */
	jsonrpc_init(&sv->log_scan);
	backend_module_init(loop);
	(void)errout_start(loop);
	ev_idle_init(&sv->reap_w, serve_on_reap);

	/* Signals first: once the socket is there, a client may already want us to stop. */
	ev_signal_init(&sv->term_w, serve_on_signal, SIGTERM);
	ev_signal_init(&sv->int_w, serve_on_signal, SIGINT);
	ev_signal_init(&sv->hup_w, serve_on_signal, SIGHUP);
	sv->term_w.data = sv->int_w.data = sv->hup_w.data = sv;
	ev_signal_start(loop, &sv->term_w);
	ev_signal_start(loop, &sv->int_w);
	ev_signal_start(loop, &sv->hup_w);
	if (o->log_path != NULL && tlog_open(loop, o->log_path, o->log_bodies) == -1) {
		rc = 1;
		goto out;
	}
	if (o->listen != NULL) {
		if (listener_open(&sv->lst, loop, o->listen, serve_on_accept, sv) == -1) {
			rc = 1;
			goto out;
		}
		sv->listening = true;
		diag_info("listening on '%s'", o->listen);
	} else {
		/* Descriptions of our own: the servers share stderr, maybe the same file. */
		sv->in_fd = sys_stdio_open(STDIN_FILENO, &sv->in_shared);
		sv->out_fd = sys_stdio_open(STDOUT_FILENO, &sv->out_shared);
		if (sv->in_fd == -1 || sv->out_fd == -1) {
			(void)diag_error_errno("cannot use stdin and stdout");
			rc = 1;
			goto out;
		}
		if (sconn_new(sv, sv->in_fd, sv->out_fd, -1) == NULL) {
			rc = diag_error("cannot start: out of memory") + 2;
			goto out;
		}
	}
	ev_run(loop, 0);
	size_t killed = backend_kill_leftovers();

	if (killed > 0) {
		diag_info("killed %zu leftover process(es) that no session claimed", killed);
	}
out:
	ev_signal_stop(loop, &sv->term_w);
	ev_signal_stop(loop, &sv->int_w);
	ev_signal_stop(loop, &sv->hup_w);
	ev_idle_stop(loop, &sv->reap_w);
	if (sv->listening) {
		listener_close(&sv->lst);
	}
	while (sv->table != NULL) {
		struct entry *e = sv->table;

		if (e->s != NULL) {
			/* Only when the loop could not run: a session never left RUNNING. */
			HASH_DEL(sv->table, e);
			continue;
		}
		entry_free(e);
	}
	while (sv->conns != NULL) {
		sconn_free(sv->conns);
	}
	tlog_close();
	errout_stop(sys_mono() + sv->scfg.eof_grace);
	backend_module_release();
	session_module_release();
	sys_stdio_close(sv->in_fd, STDIN_FILENO, sv->in_shared);
	sys_stdio_close(sv->out_fd, STDOUT_FILENO, sv->out_shared);
	jsonrpc_release(&sv->scan);
	jsonrpc_release(&sv->log_scan);
	sbuf_release(&sv->tmp);
	free(sv);
	return rc;
}
