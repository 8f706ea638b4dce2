/*
 * cmd_serve: the envelope front end of `mcpmux serve`: one backend per session ID, over
 * stdio or on every connection to a Unix socket.  Sessions, control methods and events
 * live in the hub (hub.h); each connection is a port of it.  docs/protocol.md is the
 * contract of the envelope protocol.  It is also serve's main: with --http it starts the
 * Streamable HTTP front end (front_http.h) on the same hub, and it takes the sockets
 * systemd passes (socket activation) for either door.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "mcpmux/cmd.h"
#include "mcpmux/conn.h"
#include "mcpmux/diag.h"
#include "mcpmux/envelope.h"
#include "mcpmux/errout.h"
#include "mcpmux/front_http.h"
#include "mcpmux/http.h"
#include "mcpmux/hub.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/listener.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/survey.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

struct serve;

#define SCONN_LOST_TEXT 640 /* the items of a connection's line of losses, at most */
#define SCONN_LOST_ITEM 160 /* one of them, at most */

/* A connection: a port of the hub, speaking envelopes. */
struct sconn {
	struct hub_port port;
	struct serve *sv;
	struct conn c;
	int fd;	     /* the socket, -1 for stdio */
	bool closed; /* input over: owned sessions are ending or detached */
	bool dead;   /* unlinked at the next loop turn, then freed */
	struct sconn *next;
	struct envelope_bigscan big; /* the envelope too long to buffer that is passing */
	/*
	 * Its message, a batch, as it passes (serve_big_element()): its requests kept for
	 * its end, as wrap's and connect's are (rpcout_bigreqs); its answers read before its
	 * session, each its id's length (a byte, 0: none kept) then its text, in big_early,
	 * at most rpcout_big_bound() of them (past that, counted in big_early_lost); how many
	 * answers and notifications; its bytes so far.
	 */
	struct rpcout_bigreqs big_reqs;
	struct sbuf big_early;
	size_t big_answers, big_notes, big_early_n, big_early_lost, big_fed;
	/*
	 * What of its sessions was lost with it (lost_note()), said in one line at its close
	 * and at its end (lost_say()): the items that fit, and how many did not.
	 */
	char lost[SCONN_LOST_TEXT];
	size_t lost_len, lost_more;
};

struct serve {
	struct ev_loop *loop;
	const struct mcpmux_options *opt;
	struct hub hub;
	struct sconn *conns;
	struct listener lst;
	bool listening;
	struct front_http *http; /* with --http */
	bool http_drained;	 /* shutting down: its last answers are written */
	ev_signal term_w, int_w, hup_w;
	ev_idle reap_w;	  /* frees dead connections, outside their callbacks */
	ev_timer drain_w; /* after a signal, every session ended: the clients' last lines get
			     HUB_DRAIN_S */
	bool signalled;	  /* SIGTERM, SIGINT or SIGHUP asked for the exit */
	bool refusing;	  /* connections over the limit are refused (said once a burst) */
	struct jsonrpc_scanner scan;
	struct sbuf tmp;
	int in_fd, out_fd; /* our own descriptions of stdin and stdout (sys_stdio_open) */
	bool in_shared, out_shared;
	bool out_cut;	 /* a line for the client on stdio was cut for want of memory: exit 1 */
	bool told_plain; /* a plain JSON-RPC line was said on stderr (once a run) */
};

static void serve_on_line(void *ctx, const char *line, size_t len);
static void serve_on_big_begin(void *ctx, const char *head, size_t len);
static void serve_on_big_more(void *ctx, const char *more, size_t len);
static void serve_on_big_end(void *ctx, size_t total);
static void sconn_maybe_free(struct sconn *sc);
static void serve_maybe_exit(struct serve *sv);

static const struct framer_sink serve_sink = {
	.line = serve_on_line,
	.big_begin = serve_on_big_begin,
	.big_more = serve_on_big_more,
	.big_end = serve_on_big_end,
};

/* ---- output ---- */

/*
 * A line of mcpmux's own (an envelope error, a control reply) to a connection; b is
 * emptied, and a long one (a huge id, a batch's errors) given back now.  About session
 * sid (NULL: none), it goes after what that session's runs left queued on the connection
 * (conn_send_behind()): an ended run's last replies are not overtaken by the answer to
 * a line written after them, whose id may be one of theirs.
 */
static void
send_own(struct sconn *sc, const char *sid, size_t sid_len, struct sbuf *b)
{
	if (b->failed) {
		diag_error("out of memory: a message from mcpmux was lost");
	} else if (conn_send_behind(&sc->c, sid, sid_len, NULL, b->buf, b->len, false) == -1 &&
		   errno == ENOMEM) {
		diag_error("out of memory: a message from mcpmux was lost");
	}
	sbuf_reset(b);
}

/* A line for session e, through e's own queue on its connection.  0, or -1 (errno set). */
static int
send_entry_iov(struct sconn *sc, struct hub_entry *e, struct iovec *iov, int n)
{
	int rc = conn_send(&sc->c, e->port_data, iov, n);

	if (rc == -1 && errno == ENOMEM && !sc->c.out_dead) {
		/* (cut for want of memory, the output gone: said by conn_send()) */
		diag_error("session %s: out of memory: a message for the client was lost", e->id);
		errno = ENOMEM;
	}
	return rc;
}

static struct sconn *
sconn_of(struct hub_port *p)
{
	return container_of(p, struct sconn, port);
}

static int
port_attach(struct hub_port *p, struct hub_entry *e)
{
	struct sconn *sc = sconn_of(p);
	/* After what an earlier run of the session ID left for this connection to write. */
	struct conn_source *out = conn_source_new(&sc->c, sc->sv->opt->max_queue, e->id, e->id_len);

	if (out == NULL) {
		return -1;
	}
	out->owner = e;
	e->port_data = out;
	return 0;
}

static void
port_detach(struct hub_port *p, struct hub_entry *e)
{
	struct sconn *sc = sconn_of(p);

	/* Lines already queued are still written; the conn frees the queue after. */
	conn_source_retire(&sc->c, e->port_data);
	e->port_data = NULL;
	sconn_maybe_free(sc);
}

/*
 * Something of a session lost with connection sc (an item: "session S: what"), kept to be
 * said in sc's line of losses; counted when that has no room for it.
 */
static void __attribute__((format(printf, 2, 3))) lost_note(struct sconn *sc, const char *fmt, ...)
{
	char item[SCONN_LOST_ITEM];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(item, sizeof(item), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(item) || sc->lost_len + 2 + (size_t)n > sizeof(sc->lost)) {
		sc->lost_more++;
		return;
	}
	if (sc->lost_len > 0) {
		memcpy(sc->lost + sc->lost_len, "; ", 2);
		sc->lost_len += 2;
	}
	memcpy(sc->lost + sc->lost_len, item, (size_t)n);
	sc->lost_len += (size_t)n;
}

/*
 * The losses noted since the last time, in one line, each named: not summed up with other
 * connections' (two lines a connection at most, at its close and at its end).
 */
static void
lost_say(struct sconn *sc)
{
	char more[48] = "";

	if (sc->lost_more > 0) {
		(void)snprintf(more, sizeof(more), "%sand %zu more", sc->lost_len > 0 ? "; " : "",
			       sc->lost_more);
	}
	if (sc->lost_len > 0 || sc->lost_more > 0) {
		diag_warn_each("a connection went before what mcpmux had for it was written or "
			       "read, and it is lost: %.*s%s",
			       (int)sc->lost_len, sc->lost, more);
	}
	sc->lost_len = sc->lost_more = 0;
}

/*
 * A message of session e that its connection can no longer take (its peer closed it, or
 * reads no more, before mcpmux saw it go): lost, and said, with the id of the request it
 * answers.
 */
static void
message_lost(struct sconn *sc, const struct hub_entry *e, const char *msg, size_t len)
{
	struct jsonrpc_idscan ids;
	size_t id_len = 0;
	const char *id;

	jsonrpc_idscan_init(&ids);
	jsonrpc_idscan_feed(&ids, msg, len);
	id = jsonrpc_idscan_id(&ids, &id_len);
	if (id != NULL && jsonrpc_idscan_is_answer(&ids) && e->s != NULL &&
	    session_is_end_reply(e->s, id, id_len)) {
		/*
		 * The end-of-run result for a connection that went while its run ended (connect,
		 * signalled after its stdin's end, as the TypeScript SDK's close() does): nobody
		 * waits for it, and the run ends all the same.
		 */
		return;
	}
	if (id != NULL && jsonrpc_idscan_is_answer(&ids)) {
		id_len = SYS_MIN(id_len, 64);
		lost_note(sc, "session %s: the answer to request %.*s", e->id,
			  (int)(id_len - rpcout_utf8_tail(id, id_len)), id);
	} else {
		size_t n = SYS_MIN(len, 64);

		lost_note(sc, "session %s: a message: %.*s", e->id,
			  (int)(n - rpcout_utf8_tail(msg, n)), msg);
	}
}

/* The envelope of port_message(), around an error of conn_send_lost_answers() in c->lost. */
_Static_assert(CONN_LOST_ENVELOPE >= 12 + SESSION_ID_MAX + 12 + 2, "CONN_LOST_ENVELOPE");

static void
port_message(struct hub_port *p, struct hub_entry *e, const char *msg, size_t len)
{
	struct sconn *sc = sconn_of(p);
	struct iovec iov[7] = {
		{ .iov_base = (void *)(uintptr_t) "{\"session\":\"", .iov_len = 12 },
		{ .iov_base = e->id, .iov_len = e->id_len },
		{ .iov_base = (void *)(uintptr_t) "\",\"message\":", .iov_len = 12 },
		{ .iov_base = (void *)(uintptr_t)msg, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
	};

	if (conn_send(&sc->c, e->port_data, iov, 5) == 0) {
		return;
	}
	if (errno != ENOMEM || sc->c.out_dead) {
		message_lost(sc, e, msg, len); /* (the output gone, or cut: conn_send() said) */
		return;
	}
	/* An answer (a batch of them): its requests get errors in its place, not a wait for ever.
	 */
	if (conn_send_lost_answers(&sc->c, e->port_data, iov, 3, "}\n", msg, len)) {
		diag_error("session %s: out of memory: a server's answer for the client was lost "
			   "(an error went in its place)",
			   e->id);
	} else {
		diag_error("session %s: out of memory: a message for the client was lost", e->id);
	}
}

/* {"session":"S"<fields>}: fields start with ',' (an event, an error, ...).  0 or -1. */
static int
entry_event(struct sconn *sc, struct hub_entry *e, const char *fields, size_t len)
{
	struct iovec iov[5] = {
		{ .iov_base = (void *)(uintptr_t) "{\"session\":\"", .iov_len = 12 },
		{ .iov_base = e->id, .iov_len = e->id_len },
		{ .iov_base = (void *)(uintptr_t) "\"", .iov_len = 1 },
		{ .iov_base = (void *)(uintptr_t)fields, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
	};

	return send_entry_iov(sc, e, iov, 5);
}

static void
port_event(struct hub_port *p, struct hub_entry *e, const char *fields, size_t len)
{
	(void)entry_event(sconn_of(p), e, fields, len);
}

/* A control reply, in an envelope without a session. */
static void
port_reply(struct hub_port *p, const char *msg, size_t len)
{
	struct sconn *sc = sconn_of(p);
	struct iovec iov[3] = {
		{ .iov_base = (void *)(uintptr_t) "{\"message\":", .iov_len = 11 },
		{ .iov_base = (void *)(uintptr_t)msg, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
	};

	if (conn_send(&sc->c, &sc->c.self, iov, 3) == -1 && errno == ENOMEM) {
		diag_error("out of memory: a message from mcpmux was lost");
	}
	/* The last answer a closed connection waited for: it may go once that is written. */
	sconn_maybe_free(sc);
}

static bool
port_full(struct hub_port *p, const struct hub_entry *e)
{
	/* A connection whose output is gone reads nothing more: its queue never drains. */
	return !sconn_of(p)->c.out_dead && e->port_data != NULL && conn_source_full(e->port_data);
}

static void
port_hold(struct hub_port *p, bool on)
{
	conn_hold(&sconn_of(p)->c, CONN_HOLD_SERVER, on);
}

static bool
port_gone(struct hub_port *p)
{
	return sconn_of(p)->c.out_dead;
}

static bool
port_hold_end(struct hub_port *p, struct hub_entry *e, struct hub_unseen *u)
{
	struct conn_source *src = e->port_data;

	(void)p;
	if (src == NULL || wbuf_len(&src->q) == 0) {
		return false;
	}
	if (src->held != NULL) {
		/* The end of an earlier run told here, not written yet: a later one has ended. */
		hub_unseen_told(e->hub, src->held);
	}
	src->held = u; /* its last line: the conn says whether it was written */
	src->held_left = wbuf_len(&src->q);
	return true;
}

static const struct hub_port_ops sconn_ops = {
	.attach = port_attach,
	.detach = port_detach,
	.message = port_message,
	.event = port_event,
	.reply = port_reply,
	.full = port_full,
	.hold = port_hold,
	.gone = port_gone,
	.hold_end = port_hold_end,
};

/*
 * A JSON-RPC error for connection sc about session sid, which sc does not own (or which
 * does not exist): in an envelope of that session, or of none when sid is NULL.  With a
 * scan, one for each request of that message (rpcout_error_each(): false, and nothing
 * sent, if it has nothing to answer).
 */
static bool
send_error_to(struct sconn *sc, const char *sid, size_t sid_len, const char *id, size_t id_len,
	      const struct jsonrpc_scanner *scan, int code, const char *text)
{
	struct sbuf *b = &sc->sv->tmp;

	sbuf_reset(b);
	sbuf_adds(b, "{");
	if (sid != NULL) {
		sbuf_adds(b, "\"session\":");
		sbuf_add_json_string(b, sid, sid_len);
		sbuf_adds(b, ",");
	}
	sbuf_adds(b, "\"message\":");
	size_t at = b->len;

	if (scan != NULL) {
		if (rpcout_error_each(b, scan, code, text, NULL, NULL) == 0) {
			return false;
		}
	} else {
		rpcout_error(b, id, id_len, code, text);
	}
	/* Not into the log of a session that exists: it is another connection's. */
	if (sid != NULL && !b->failed && hub_find(&sc->sv->hub, sid, sid_len) == NULL) {
		char sbuf_id[SESSION_ID_MAX + 1];

		(void)snprintf(sbuf_id, sizeof(sbuf_id), "%.*s", (int)sid_len, sid);
		hub_log_own(&sc->sv->hub, sbuf_id, NULL, b->buf + at, b->len - at);
	}
	sbuf_adds(b, "}");
	send_own(sc, sid, sid_len, b);
	return true;
}

static void
send_error(struct sconn *sc, const char *sid, size_t sid_len, const char *id, size_t id_len,
	   int code, const char *text)
{
	(void)send_error_to(sc, sid, sid_len, id, id_len, NULL, code, text);
}

/*
 * The same error for each request of the message scan describes (a batch: one array of
 * them, with a -32600 for each element that is no message: rpcout_error_each()); false,
 * and nothing sent, when it has nothing to answer.
 */
static bool
send_error_each(struct sconn *sc, const char *sid, size_t sid_len,
		const struct jsonrpc_scanner *scan, int code, const char *text)
{
	return send_error_to(sc, sid, sid_len, NULL, 0, scan, code, text);
}

/* An error in session sid: through e's queue when sc owns it, in order with its output. */
static void
session_error(struct sconn *sc, struct hub_entry *e, const char *sid, size_t sid_len,
	      const char *id, size_t id_len, int code, const char *text)
{
	if (e != NULL && e->owner == &sc->port) {
		hub_error(&sc->sv->hub, &sc->port, e, id, id_len, code, text);
	} else {
		send_error(sc, sid, sid_len, id, id_len, code, text);
	}
}

#define FOREIGN_ERROR "session belongs to another connection (only kept sessions can be taken over)"
#define FOREIGN_ENDING_ERROR                                                               \
	"the server's run is ending (the connection that holds the session asked for its " \
	"end, and waits for it)"

/*
 * A message for a session that another connection owns, and that is not kept (or is
 * ending at its holder's request): refused with text, each of its requests by its id (a
 * batch's in one array), or with no id when it has none (after the -32600s of a batch's
 * elements that are no message).
 */
static void
refuse_foreign(struct sconn *sc, const struct envelope *env, const char *text)
{
	struct serve *sv = sc->sv;

	if (env->has_message && !env->scanned) {
		(void)jsonrpc_scan_checked(&sv->scan, env->message, env->message_len);
	}
	if (!env->has_message ||
	    !send_error_each(sc, env->session, env->session_len, &sv->scan, RPC_SERVER_ERROR,
			     text) ||
	    !jsonrpc_has_request(&sv->scan)) {
		send_error(sc, env->session, env->session_len, NULL, 0, RPC_SERVER_ERROR, text);
	}
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
	send_own(sc, NULL, 0, b);
}

#define PLAIN_MCP_ERROR                                                                     \
	"mcpmux serve speaks envelopes ({\"session\":ID,\"message\":...}), not plain MCP: " \
	"to wrap one server for a client, use `mcpmux -- COMMAND` (or `mcpmux connect` to " \
	"reach a serve)"

/*
 * A line that is a plain JSON-RPC message ("jsonrpc":"2.0" at its top level, no session
 * nor message): a client of MCP itself, given serve by mistake.  A request is answered
 * with a JSON-RPC error by its id, which such a client reads (it would ignore an
 * envelope's error and wait for its timeout); stderr says it, once.  False for any other
 * line, which is answered as an envelope too broken to name a session.
 */
static bool
plain_jsonrpc(struct sconn *sc, const char *line, size_t len)
{
	struct serve *sv = sc->sv;
	enum jsonrpc_kind kind = jsonrpc_scan_checked(&sv->scan, line, len);
	const struct jsonrpc_item *it = &sv->scan.one;

	if (kind != JSONRPC_REQUEST && kind != JSONRPC_NOTIFICATION && kind != JSONRPC_RESPONSE &&
	    kind != JSONRPC_ERROR) {
		return false;
	}
	if (!sv->told_plain) {
		sv->told_plain = true;
		diag_warn("a client sent plain MCP (a JSON-RPC message), not an envelope: "
			  "`mcpmux serve` speaks envelopes; to wrap one server for a client, use "
			  "`mcpmux -- COMMAND` (or `mcpmux connect` to reach a serve)");
	}
	if (kind != JSONRPC_REQUEST) {
		return false;
	}
	sbuf_reset(&sv->tmp);
	rpcout_error(&sv->tmp, jsonrpc_str(&sv->scan, it->id), it->id.len, RPC_INVALID_REQUEST,
		     PLAIN_MCP_ERROR);
	send_own(sc, NULL, 0, &sv->tmp);
	return true;
}

/* ---- envelopes from a connection ---- */

static void
handle_keep(struct sconn *sc, struct hub_entry **ep, const struct envelope *env)
{
	struct serve *sv = sc->sv;
	struct hub_entry *e = *ep;

	/*
	 * A kept session that has not started yet holds no server, but an entry: as many of
	 * them as --max-sessions at most, or a client could grow mcpmux without bound.
	 */
	if (e == NULL && hub_n_unstarted(&sv->hub) >= sv->opt->max_sessions) {
		send_error(sc, env->session, env->session_len, NULL, 0, RPC_SERVER_ERROR,
			   "too many kept sessions that have not started (--max-sessions)");
		return;
	}
	if (e == NULL &&
	    (e = *ep = hub_entry_new(&sv->hub, env->session, env->session_len)) == NULL) {
		send_envelope_error(sc, RPC_SERVER_ERROR, "out of memory");
		return;
	}
	e->kept = env->keep;
	if (hub_set_owner(e, &sc->port) == -1) {
		send_envelope_error(sc, RPC_SERVER_ERROR, "out of memory");
		return;
	}
	sbuf_reset(&sv->tmp);
	sbuf_addf(&sv->tmp, ",\"event\":\"kept\",\"keep\":%s", env->keep ? "true" : "false");
	port_event(&sc->port, e, sv->tmp.buf, sv->tmp.len);
}

/* A client message that mcpmux answers itself, into the traffic log. */
static void
log_in(const struct envelope *env, const struct hub_entry *e, const struct jsonrpc_scanner *scan)
{
	char sid[SESSION_ID_MAX + 1];

	if (!tlog_enabled) {
		return;
	}
	(void)snprintf(sid, sizeof(sid), "%.*s", (int)env->session_len, env->session);
	tlog_message(sid, e != NULL && e->s != NULL ? session_pid(e->s) : 0, TLOG_IN, scan,
		     env->message, env->message_len, -1);
}

/* The answer (JSON text id) to an end-of-run for session sid, which runs nothing, into b. */
static void
none_answer(struct sbuf *b, const char *id, size_t id_len, const char *sid, size_t sid_len)
{
	sbuf_adds(b, "{\"jsonrpc\":\"2.0\",\"id\":");
	sbuf_add(b, id, id_len);
	sbuf_adds(b, ",\"result\":");
	hub_none_result(b, sid, sid_len);
	sbuf_adds(b, "}");
}

/*
 * A message of the client in session sid (e: its entry, if any) over --max-message, not
 * forwarded.  An answer (id: the server's) gets the server an error in its place, so that
 * it does not wait for ever, and the client none (the id is not one of its own); a
 * notification is dropped; a request is answered with an error.
 */
static void
oversize(struct sconn *sc, struct hub_entry *e, const char *sid, size_t sid_len,
	 const struct rpcout_big *big, const struct jsonrpc_idscan *ids)
{
	struct serve *sv = sc->sv;
	struct sbuf b = { 0 };
	struct rpcout_big found;
	const struct rpcout_big *as_read = big;
	char text[256];

	switch (rpcout_oversize(big, text, sizeof(text))) {
	case RPCOUT_OVERSIZE_ANSWER:
		if (e != NULL && e->owner == &sc->port && e->s != NULL) {
			/* The request of the server's in flight it answers (one with an id too
			 * long to be read found by its length, hash and first bytes), or none. */
			found = *big;
			found.id = ids != NULL ? session_srv_request(e->s, ids, &found.id_len)
				   : big->id != NULL
					   ? session_srv_request_id(e->s, big->id, big->id_len,
								    &found.id_len)
					   : NULL;
			big = &found;
		}
		if (big->id == NULL || e == NULL || e->owner != &sc->port || e->s == NULL) {
			/* (said with its id as it was read) */
			diag_warn("session %.*s: " RPCOUT_BIG_STRAY, (int)sid_len, sid,
				  RPCOUT_BIG_ARGS_ID(as_read), RPCOUT_BIG_ARGS_SIZE(as_read));
			return; /* nobody waits for it */
		}
		diag_warn("session %.*s: " RPCOUT_BIG_ANSWER, (int)sid_len, sid,
			  RPCOUT_BIG_ARGS_ID(big), RPCOUT_BIG_ARGS_SIZE(big));
		rpcout_answer_too_large(&b, big);
		if (!b.failed && jsonrpc_scan_checked(&sv->scan, b.buf, b.len) == JSONRPC_ERROR) {
			hub_from_client(e, b.buf, b.len, &sv->scan);
		}
		sbuf_release(&b);
		break;
	case RPCOUT_OVERSIZE_NOTIFICATION:
		diag_warn("session %.*s: " RPCOUT_BIG_NOTIFICATION, (int)sid_len, sid,
			  RPCOUT_BIG_ARGS_SIZE(big));
		break;
	case RPCOUT_OVERSIZE_REQUEST:
		session_error(sc, e, sid, sid_len, big->id, big->id_len, RPCOUT_BIG_CODE(big),
			      text);
		break;
	}
}

/*
 * A batch of the client over --max-message that was read whole (within the envelope's
 * allowance), not forwarded: as oversize() does for each of its elements, its requests
 * get an error each, by id, in one array; each request of the server's in flight that an
 * answer in it answers gets an error in its place, once; an answer to no such request is
 * dropped, as are its notifications.  Not rpcout_bigreqs, as a batch too long to be read
 * whole is: this one was scanned whole, so each element that is no message gets its own
 * -32600 "not a JSON-RPC 2.0 message" by its id, as in a batch within the bound
 * (rpcout_error_each()), where rpcout_bigreqs, which never saw them whole, gives them all one
 * error with id null.
 */
static void
oversize_batch(struct sconn *sc, struct hub_entry *e, const struct envelope *env)
{
	struct serve *sv = sc->sv;
	struct rpcout_big big = { .total = env->message_len, .limit = sv->opt->max_message };
	bool own = e != NULL && e->owner == &sc->port;
	struct sbuf answers = { 0 }; /* the answers' ids: each its length, then its text */
	bool notes = false;
	char text[256];
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(&sv->scan, &n);

	for (size_t i = 0; i < n; i++) {
		if (items[i].kind == JSONRPC_NOTIFICATION) {
			notes = true;
		} else if (items[i].kind == JSONRPC_RESPONSE || items[i].kind == JSONRPC_ERROR) {
			/* Looked for once the scan is no longer needed: the error for one
			 * answer is sent before the next is looked for (a repeat finds none). */
			size_t id_len = items[i].id.len;

			sbuf_add(&answers, (const char *)&id_len, sizeof(id_len));
			sbuf_add(&answers, jsonrpc_str(&sv->scan, items[i].id), id_len);
		}
	}
	if (notes) {
		diag_warn("session %.*s: " RPCOUT_BIG_NOTIFICATION, (int)env->session_len,
			  env->session, RPCOUT_BIG_ARGS_SIZE(&big));
	}
	big.id = NULL;
	(void)rpcout_oversize(&big, text, sizeof(text)); /* a request's error */
	if (own) {
		(void)hub_error_each(&sv->hub, &sc->port, e, &sv->scan, RPC_INVALID_REQUEST, text);
	} else {
		(void)send_error_each(sc, env->session, env->session_len, &sv->scan,
				      RPC_INVALID_REQUEST, text);
	}
	if (answers.failed) {
		diag_error("session %.*s: out of memory: the server's requests answered in a "
			   "batch over --max-message get no error",
			   (int)env->session_len, env->session);
	}
	for (size_t off = 0; !answers.failed && off < answers.len;) {
		struct rpcout_big found;
		struct sbuf b = { 0 };

		memcpy(&big.id_len, answers.buf + off, sizeof(big.id_len));
		big.id = answers.buf + off + sizeof(big.id_len);
		off += sizeof(big.id_len) + big.id_len;
		found = big;
		found.id = own && e->s != NULL
				   ? session_srv_request_id(e->s, big.id, big.id_len, &found.id_len)
				   : NULL;
		if (found.id == NULL) {
			diag_warn("session %.*s: " RPCOUT_BIG_STRAY, (int)env->session_len,
				  env->session, RPCOUT_BIG_ARGS_ID(&big),
				  RPCOUT_BIG_ARGS_SIZE(&big));
			continue;
		}
		diag_warn("session %.*s: " RPCOUT_BIG_ANSWER, (int)env->session_len, env->session,
			  RPCOUT_BIG_ARGS_ID(&found), RPCOUT_BIG_ARGS_SIZE(&found));
		rpcout_answer_too_large(&b, &found);
		if (!b.failed && jsonrpc_scan_checked(&sv->scan, b.buf, b.len) == JSONRPC_ERROR) {
			hub_from_client(e, b.buf, b.len, &sv->scan);
		}
		sbuf_release(&b);
	}
	sbuf_release(&answers);
}

static void
handle_message(struct sconn *sc, struct hub_entry *e, const struct envelope *env)
{
	struct serve *sv = sc->sv;
	enum jsonrpc_kind kind =
		env->scanned ? sv->scan.kind
			     : jsonrpc_scan_checked(&sv->scan, env->message, env->message_len);
	const struct jsonrpc_item *it = &sv->scan.one;
	const char *id = it->has_id ? jsonrpc_str(&sv->scan, it->id) : NULL;

	if (kind == JSONRPC_INVALID_JSON || kind == JSONRPC_INVALID_REQUEST) {
		log_in(env, e, kind == JSONRPC_INVALID_JSON ? NULL : &sv->scan);
	}
	if (kind == JSONRPC_INVALID_JSON) {
		session_error(sc, e, env->session, env->session_len, NULL, 0, RPC_PARSE_ERROR,
			      "Parse error: the message is not valid JSON");
		return;
	}
	if (kind == JSONRPC_INVALID_REQUEST) {
		session_error(sc, e, env->session, env->session_len, id, it->id.len,
			      RPC_INVALID_REQUEST, RPCOUT_NOT_A_MESSAGE);
		return;
	}
	if (env->message_len > sv->opt->max_message && kind == JSONRPC_BATCH) {
		oversize_batch(sc, e, env);
		return;
	}
	if (env->message_len > sv->opt->max_message) {
		struct rpcout_big big = {
			.answer = kind == JSONRPC_RESPONSE || kind == JSONRPC_ERROR,
			.notification = kind == JSONRPC_NOTIFICATION,
			.id = id,
			.id_len = id != NULL ? it->id.len : 0,
			.total = env->message_len,
			.limit = sv->opt->max_message,
		};

		oversize(sc, e, env->session, env->session_len, &big, NULL);
		return;
	}
	if ((kind == JSONRPC_REQUEST || kind == JSONRPC_NOTIFICATION) &&
	    jsonrpc_method_is(&sv->scan, it, sv->opt->end_method)) {
		if (e == NULL || e->s == NULL) {
			if (id != NULL) {
				sbuf_reset(&sv->tmp);
				sbuf_adds(&sv->tmp, "{\"session\":");
				sbuf_add_json_string(&sv->tmp, env->session, env->session_len);
				sbuf_adds(&sv->tmp, ",\"message\":");
				none_answer(&sv->tmp, id, it->id.len, env->session,
					    env->session_len);
				sbuf_adds(&sv->tmp, "}");
				send_own(sc, env->session, env->session_len, &sv->tmp);
			}
			return;
		}
		const struct jsonrpc_params *p = &sv->scan.params;

		e->end_asked = true; /* by its owner, this connection */
		hub_end(e, p->has_grace_ms ? p->grace_ms : -1, id, id ? it->id.len : 0, &sv->scan);
		return;
	}
	if (e == NULL) {
		e = hub_entry_new(&sv->hub, env->session, env->session_len);
		if (e == NULL || hub_set_owner(e, &sc->port) == -1) {
			if (e != NULL) {
				hub_entry_free(e);
			}
			send_error(sc, env->session, env->session_len, id, it->id.len,
				   RPC_SERVER_ERROR, "out of memory");
			return;
		}
	}
	if (e->s == NULL && !hub_start(e, &sv->scan)) {
		return; /* answered (and e freed unless kept) */
	}
	hub_from_client(e, env->message, env->message_len, &sv->scan);
}

#define UNSEEN_END_ERROR                                                            \
	"the session ended while no connection held it (see its \"ended\" event): " \
	"the request was not sent"

/*
 * The request (it) of the first envelope for a kept session that ended unseen: an
 * end-of-run gets the `none` result, any other request an error with its id.
 */
static void
unseen_answer(struct sconn *sc, struct hub_entry *e, const struct jsonrpc_item *it)
{
	struct serve *sv = sc->sv;
	const char *id = jsonrpc_str(&sv->scan, it->id);

	if (!jsonrpc_method_is(&sv->scan, it, sv->opt->end_method)) {
		hub_error(&sv->hub, &sc->port, e, id, it->id.len, RPC_SERVER_ERROR,
			  UNSEEN_END_ERROR);
		return;
	}
	sbuf_reset(&sv->tmp);
	none_answer(&sv->tmp, id, it->id.len, e->id, e->id_len);
	if (!sv->tmp.failed) {
		hub_log_own(&sv->hub, e->id, NULL, sv->tmp.buf, sv->tmp.len);
		port_message(&sc->port, e, sv->tmp.buf, sv->tmp.len);
	}
	sbuf_reset(&sv->tmp); /* a long one (a huge id) is given back now */
}

/* An unseen end told in out, upto bytes of it still queued: back to the hub if the
 * connection goes before they are written. */
static void
hold_unseen(struct serve *sv, struct conn_source *out, size_t upto, struct hub_unseen *u)
{
	if (upto > 0) {
		out->held = u;
		out->held_left = upto;
		hub_unseen_hold(&sv->hub, u);
	} else {
		free(u);
	}
}

/*
 * The first envelope for a kept session that ended while no connection held it: the
 * session's `ended` event comes first, through the session's own queue, so that nothing
 * of a new run can overtake it.  An initialize (a new run) then goes on as for a new
 * session, in *ep; anything else was meant for the run that is over: a request gets an
 * error with its id (a batch one array of them), an end-of-run the `none` result (as
 * anywhere, not one in a batch: a batch is the server's), a message that
 * is not JSON-RPC the error it gets anywhere, and the rest (and a keep) is dropped.  *ep
 * may already hold this connection's entry of the session that has not started (a keep
 * sent before the end came back to the hub): it goes on, or goes, as a new one.  true when
 * the envelope goes on.
 */
static bool
tell_unseen_end(struct sconn *sc, const struct envelope *env, struct hub_unseen *u,
		struct hub_entry **ep)
{
	struct serve *sv = sc->sv;
	struct hub_entry *e = *ep;
	bool made = e == NULL;

	if (made && ((e = hub_entry_new(&sv->hub, u->id, u->id_len)) == NULL ||
		     hub_set_owner(e, &sc->port) == -1)) {
		if (e != NULL) {
			hub_entry_free(e);
		}
		free(u);
		send_envelope_error(sc, RPC_SERVER_ERROR, "out of memory");
		return false;
	}
	/*
	 * Taken only by a connection that can be written to: one whose output is gone (or a
	 * line that cannot be queued) leaves the end for the next, and its envelope is dropped.
	 */
	if (entry_event(sc, e, u->fields, u->len) == -1) {
		diag_warn("session %s ended while no connection held it: a connection that "
			  "cannot be written to (%s) named it; the end is kept for the next",
			  e->id, strerror(errno));
		hub_unseen_untake(&sv->hub, u);
		if (made) {
			hub_entry_free(e);
		}
		return false;
	}
	/* Its bytes still queued: until they are written, the end is not told. */
	struct conn_source *out = e->port_data;
	size_t upto = wbuf_len(&out->q);

	if (!env->has_message) {
		diag_warn("session %s ended while no connection held it: a keep for it was "
			  "dropped",
			  e->id);
		goto over;
	}
	enum jsonrpc_kind kind =
		env->scanned ? sv->scan.kind
			     : jsonrpc_scan_checked(&sv->scan, env->message, env->message_len);
	const struct jsonrpc_item *it = &sv->scan.one;

	if (kind == JSONRPC_REQUEST && jsonrpc_method_is(&sv->scan, it, "initialize")) {
		/* Held as below: a run it starts marks it later, one refused does not. */
		hold_unseen(sv, out, upto, u);
		*ep = e;
		return true;
	}
	log_in(env, e, kind == JSONRPC_INVALID_JSON ? NULL : &sv->scan);
	if (kind == JSONRPC_INVALID_JSON) {
		hub_error(&sv->hub, &sc->port, e, NULL, 0, RPC_PARSE_ERROR,
			  "Parse error: the message is not valid JSON");
		goto over;
	}
	if (kind == JSONRPC_INVALID_REQUEST) {
		hub_error(&sv->hub, &sc->port, e,
			  it->has_id ? jsonrpc_str(&sv->scan, it->id) : NULL, it->id.len,
			  RPC_INVALID_REQUEST, RPCOUT_NOT_A_MESSAGE);
		goto over;
	}
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(&sv->scan, &n);
	bool dropped = false;

	if (kind == JSONRPC_REQUEST) {
		unseen_answer(sc, e, it);
	} else {
		(void)hub_error_each(&sv->hub, &sc->port, e, &sv->scan, RPC_SERVER_ERROR,
				     UNSEEN_END_ERROR);
	}
	for (size_t i = 0; i < n; i++) {
		dropped = dropped || items[i].kind != JSONRPC_REQUEST;
	}
	if (dropped) {
		diag_warn("session %s ended while no connection held it: a message for it was "
			  "dropped",
			  e->id);
	}
over:
	hold_unseen(sv, out, upto, u);
	/* Out of the table, then its queue let go (written, then freed): u back if it dies. */
	hub_entry_free(e);
	return false;
}

static void
control(struct sconn *sc, const struct envelope *env)
{
	struct serve *sv = sc->sv;

	if (!env->scanned) {
		(void)jsonrpc_scan_checked(&sv->scan, env->message, env->message_len);
	}
	hub_control(&sv->hub, &sc->port, &sv->scan);
}

static void
serve_on_line(void *ctx, const char *line, size_t len)
{
	struct sconn *sc = ctx;
	struct serve *sv = sc->sv;
	struct envelope env;
	enum envelope_status st = envelope_parse_line(&env, line, len, &sv->scan);

	if (st != ENVELOPE_OK) {
		send_envelope_error(sc,
				    st == ENVELOPE_NOT_JSON ? RPC_PARSE_ERROR : RPC_INVALID_REQUEST,
				    env.error);
		return;
	}
	if (!env.has_session) {
		if (!env.has_message) {
			if (plain_jsonrpc(sc, line, len)) {
				return;
			}
			send_envelope_error(
				sc, RPC_INVALID_REQUEST,
				"an envelope needs \"session\" and \"message\" (or "
				"\"keep\"); without a session, \"message\" is for mcpmux");
			return;
		}
		control(sc, &env);
		return;
	}
	/* Every session in the table has a valid ID: one found needs no second look. */
	struct hub_entry *e =
		env.session_is_string ? hub_find(&sv->hub, env.session, env.session_len) : NULL;

	if (e == NULL &&
	    (!env.session_is_string || !session_id_valid(env.session, env.session_len))) {
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
	if (sc->c.out_dead && (e == NULL || e->owner != &sc->port)) {
		/* Its output died earlier in this read: it takes no session, kept or new. */
		diag_warn("session %.*s: a connection that can no longer be written to named it: "
			  "its envelope was dropped",
			  (int)env.session_len, env.session);
		return;
	}
	if (e != NULL && e->owner != &sc->port) {
		if (e->owner != NULL && e->end_asked && e->s != NULL) {
			/* Its holder waits for the end it asked for: the answer is the holder's. */
			refuse_foreign(sc, &env, FOREIGN_ENDING_ERROR);
			return;
		}
		if (e->kept || e->owner == NULL) {
			/* A kept session: this connection takes it over. */
			if (hub_set_owner(e, &sc->port) == -1) {
				send_envelope_error(sc, RPC_SERVER_ERROR, "out of memory");
				return;
			}
		} else {
			refuse_foreign(sc, &env, FOREIGN_ERROR);
			return;
		}
	}
	/* A keep sent while its holder had the end left an entry that has not started. */
	if ((e == NULL || e->s == NULL) && sv->hub.unseen != NULL) {
		struct hub_unseen *u = hub_unseen_take(&sv->hub, env.session, env.session_len);

		if (u != NULL && !tell_unseen_end(sc, &env, u, &e)) {
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

/*
 * The answers of a batch too long to buffer read before its session: at most as many as
 * a batch within --max-message records (rpcout_big_bound()).
 */
static size_t
big_bound(const struct serve *sv)
{
	return rpcout_big_bound(sv->opt->max_message);
}

/* The session of the envelope too long to buffer that is passing, if it is known yet. */
static const char *
big_session(const struct sconn *sc, size_t *len)
{
	const char *sid = envelope_bigscan_session(&sc->big, len);

	return sid != NULL && session_id_valid(sid, *len) ? sid : NULL;
}

/*
 * An element of a batch too long to buffer kept in b for its end (serve_on_big_end()): an
 * id too long to be kept, or of no use (null, true, {}), as none.
 */
static void
big_keep(struct sbuf *b, const struct jsonrpc_idscan *ids)
{
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(ids, &id_len);
	unsigned char len = id != NULL && !ids->overflow ? (unsigned char)id_len : 0;

	sbuf_add(b, (const char *)&len, 1);
	if (len > 0) {
		sbuf_add(b, id, len);
	}
}

/*
 * An element of a batch too long to buffer, as it ends: an answer, once its session is
 * known, gets the server's request in flight that it answers an error in its place at
 * once (oversize()); a request is kept for its error at the batch's end.
 */
static void
serve_big_element(void *ctx, const struct jsonrpc_idscan *ids)
{
	struct sconn *sc = ctx;
	struct serve *sv = sc->sv;
	size_t sid_len = 0;

	if (jsonrpc_idscan_is_answer(ids)) {
		const char *sid = big_session(sc, &sid_len);

		sc->big_answers++;
		if (sid == NULL) {
			if (sc->big_early_n == big_bound(sv)) {
				sc->big_early_lost++; /* said at its end */
				return;
			}
			sc->big_early_n++;
			big_keep(&sc->big_early, ids);
			return;
		}
		/* Over the bound before the line's end, unless it had no memory within it. */
		bool no_memory = sc->big_fed <= sv->opt->max_message + ENVELOPE_OWN_MAX &&
				 framer_big_no_memory(&sc->c.inf);
		struct rpcout_big big = { .answer = true,
					  .total = no_memory ? sc->big_fed : sv->opt->max_message,
					  .limit = sv->opt->max_message,
					  .no_memory = no_memory,
					  .unended = !no_memory };

		rpcout_big_scanned_id(&big, ids);
		oversize(sc, hub_find(&sv->hub, sid, sid_len), sid, sid_len, &big, ids);
	} else if (ids->has_id) {
		size_t id_len = 0;
		const char *id = jsonrpc_idscan_id(ids, &id_len);

		/* An id too long to be kept, or of no use (null, true, {}): id null. */
		rpcout_bigreqs_add(&sc->big_reqs, id, id_len);
	} else if (ids->has_method) {
		sc->big_notes++;
	} else if (ids->begun) {
		/* No message at all: 1, {} (not the ',' after an object). */
		rpcout_bigreqs_no_message(&sc->big_reqs);
	}
}

static void
serve_on_big_begin(void *ctx, const char *head, size_t len)
{
	struct sconn *sc = ctx;
	struct serve *sv = sc->sv;

	envelope_bigscan_init(&sc->big);
	sc->big.batches = true;
	sc->big.id.on_element = serve_big_element;
	sc->big.id.ctx = sc;
	rpcout_bigreqs_begin(&sc->big_reqs, sv->opt->max_message);
	sbuf_reset(&sc->big_early);
	sc->big_answers = sc->big_notes = 0;
	sc->big_early_n = sc->big_early_lost = 0;
	sc->big_fed = len;
	envelope_bigscan_feed(&sc->big, head, len);
}

static void
serve_on_big_more(void *ctx, const char *more, size_t len)
{
	struct sconn *sc = ctx;

	sc->big_fed += len;
	envelope_bigscan_feed(&sc->big, more, len);
}

/*
 * The answers of a batch too long to buffer read before its session, at its end: each
 * gets the server an error for the request in flight it answers (oversize()); those
 * past big_bound(), or all when the memory to keep them ran out, are said lost.
 */
static void
big_early(struct sconn *sc, struct hub_entry *e, const char *sid, size_t sid_len,
	  const struct rpcout_big *big)
{
	const struct sbuf *items = &sc->big_early;
	size_t lost = sc->big_early_lost;

	if (items->failed) {
		lost += sc->big_early_n;
	} else {
		for (size_t i = 0; i < items->len; i += 1 + (unsigned char)items->buf[i]) {
			struct rpcout_big answer = *big;

			answer.answer = true;
			answer.id_len = (unsigned char)items->buf[i];
			answer.id = answer.id_len > 0 ? items->buf + i + 1 : NULL;
			oversize(sc, e, sid, sid_len, &answer, NULL);
		}
	}
	if (lost > 0) {
		diag_error("session %.*s: %s: %zu answers of a batch of the client's over "
			   "--max-message, read before its session, could not be kept: the "
			   "server's requests they answer get no error for them",
			   (int)sid_len, sid, items->failed ? "out of memory" : "too many answers",
			   lost);
	}
}

/*
 * An answer of mcpmux's own to a batch too long to buffer in session sid, begun in b
 * (emptied first): the envelope's head for a session not of this connection's (none for
 * one of its own, whose queue gets the envelope around it).  The head's length.
 */
static size_t
big_own_head(const struct sconn *sc, const struct hub_entry *e, const char *sid, size_t sid_len,
	     struct sbuf *b)
{
	sbuf_reset(b);
	if (e != NULL && e->owner == &sc->port) {
		return 0;
	}
	sbuf_adds(b, "{\"session\":");
	sbuf_add_json_string(b, sid, sid_len);
	sbuf_adds(b, ",\"message\":");
	return b->len;
}

/*
 * That answer, the message after head in b, to the client: through the session's own
 * queue for one of this connection's, never copied but into the queue (reserve: the one
 * error with id null, which waits in the memory kept for such errors when the queue has
 * none: conn_send_error()).  0, or -1 (errno ENOMEM: no memory to write it or to queue it,
 * which the caller says).
 */
static int
send_big_own(struct sconn *sc, struct hub_entry *e, const char *sid, size_t sid_len, struct sbuf *b,
	     size_t head, bool reserve)
{
	struct serve *sv = sc->sv;
	int rc;

	if (b->failed) {
		errno = ENOMEM;
		return -1;
	}
	if (e != NULL && e->owner == &sc->port) {
		struct iovec iov[5] = {
			{ .iov_base = (void *)(uintptr_t) "{\"session\":\"", .iov_len = 12 },
			{ .iov_base = e->id, .iov_len = e->id_len },
			{ .iov_base = (void *)(uintptr_t) "\",\"message\":", .iov_len = 12 },
			{ .iov_base = b->buf, .iov_len = b->len },
			{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
		};

		rc = reserve ? conn_send_error_iov(&sc->c, e->port_data, iov, 5)
			     : conn_send(&sc->c, e->port_data, iov, 5);
		if (rc == 0) {
			hub_log_own(&sv->hub, e->id, e->s, b->buf, b->len);
		} else if (errno != ENOMEM) {
			message_lost(sc, e, b->buf, b->len);
			errno = EPIPE; /* (lost, said: no error with id null in its place) */
		}
		return rc;
	}
	sbuf_adds(b, "}");
	rc = b->failed ? -1 : conn_send_behind(&sc->c, sid, sid_len, NULL, b->buf, b->len, reserve);
	if (b->failed) {
		errno = ENOMEM;
	}
	if (rc == 0 && e == NULL) {
		char id[SESSION_ID_MAX + 1];

		(void)snprintf(id, sizeof(id), "%.*s", (int)sid_len, sid);
		hub_log_own(&sv->hub, id, NULL, b->buf + head, b->len - head - 1);
	}
	return rc;
}

/*
 * The one error with id null that answers the requests of a batch too long to buffer in
 * session sid when big_batch() does not answer them each (big: as read); when the
 * client's queue has no memory for it either, it waits in the memory kept for such errors
 * (conn_send_error()), and when that is full too, stderr says they are left unanswered.
 */
static void
big_batch_error(struct sconn *sc, struct hub_entry *e, const char *sid, size_t sid_len,
		const struct rpcout_big *big)
{
	struct sbuf *b = &sc->sv->tmp;
	size_t head = big_own_head(sc, e, sid, sid_len, b);
	char text[256];

	(void)rpcout_oversize(big, text, sizeof(text));
	rpcout_error(b, NULL, 0, RPCOUT_BIG_CODE(big), text);
	if (send_big_own(sc, e, sid, sid_len, b, head, true) == -1 && errno == ENOMEM) {
		diag_error("session %.*s: " RPCOUT_BIGREQS_UNANSWERED_TEXT, (int)sid_len, sid);
	}
	sbuf_reset(b);
}

/*
 * A batch too long to buffer in session sid, at its end (its answers read after the
 * session got the server errors as they passed): its answers read before the session
 * get them now (big_early()), its requests each big's error with its id, and its
 * elements that are no message one error with id null, in one array.  False when nothing
 * of it could be read, its requests' array would be longer than --max-message
 * (rpcout_bigreqs), or the memory to keep them ran out: its requests are answered as
 * one message, one error with id null.
 */
static bool
big_batch(struct sconn *sc, struct hub_entry *e, const char *sid, size_t sid_len,
	  const struct rpcout_big *big)
{
	struct serve *sv = sc->sv;
	const struct rpcout_bigreqs *reqs = &sc->big_reqs;
	struct sbuf *b = &sv->tmp;

	/* An element cut short by the line's end. */
	if (sc->big.batch && sc->big.id.begun) {
		serve_big_element(sc, &sc->big.id);
	}
	big_early(sc, e, sid, sid_len, big);
	if (sc->big.batch && sc->big_notes > 0) {
		/* (said however its requests are answered: their array, or one error) */
		diag_warn("session %.*s: " RPCOUT_BIG_NOTIFICATION, (int)sid_len, sid,
			  RPCOUT_BIG_ARGS_SIZE(big));
	}
	if (reqs->over) {
		diag_warn("session %.*s: " RPCOUT_BIGREQS_TOO_MANY_TEXT, (int)sid_len, sid,
			  reqs->cap);
		return false;
	}
	if (reqs->ids.failed) {
		diag_error("session %.*s: out of memory: the requests of a batch of the client's "
			   "over --max-message could not be kept: one error with id null "
			   "answers them",
			   (int)sid_len, sid);
		return false;
	}
	if (!sc->big.batch || reqs->n + sc->big_answers + sc->big_notes + reqs->no_message == 0) {
		return false;
	}
	/*
	 * Wrap's and connect's array (its diagnostics said here, in its session), built in
	 * place: in its envelope for a session not of this connection's, and passed as it is
	 * to the session's own queue for one of this connection's, never copied but into the
	 * queue.  When the queue has no memory for it, the one error with id null goes in its
	 * place.
	 */
	size_t head = big_own_head(sc, e, sid, sid_len, b);
	int rc = 0;

	if (b->failed || rpcout_bigreqs_append(b, reqs, big) != RPCOUT_BIGREQS_ANSWERED) {
		diag_error("session %.*s: out of memory: the requests of a batch of the "
			   "client's over --max-message could not each be answered: one "
			   "error with id null answers them",
			   (int)sid_len, sid);
		sbuf_reset(b);
		return false;
	}
	if (b->len > head) {
		rc = send_big_own(sc, e, sid, sid_len, b, head, false);
	}
	sbuf_reset(b);
	if (rc == -1 && errno == ENOMEM && sc->c.out_dead) {
		/* (nothing can follow its head) */
		diag_error("session %.*s: " RPCOUT_BIGREQS_CUT_TEXT, (int)sid_len, sid);
	} else if (rc == -1 && errno == ENOMEM) {
		diag_error("session %.*s: out of memory: the array of errors for the requests of a "
			   "batch of the client's over --max-message could not be queued: one "
			   "error with id null answers them",
			   (int)sid_len, sid);
		return false;
	}
	return true;
}

/*
 * An envelope too long to buffer: refused unread.  One that named a valid session is
 * answered in that session, with its message's id if it was seen.
 */
static void
serve_on_big_end(void *ctx, size_t total)
{
	struct sconn *sc = ctx;
	struct serve *sv = sc->sv;
	size_t sid_len = 0, id_len = 0;
	const char *sid = envelope_bigscan_session(&sc->big, &sid_len);
	const char *id = envelope_bigscan_id(&sc->big, &id_len);
	struct rpcout_big big;

	/* The framer had no memory to hold it, within the bound (framer_feed()). */
	bool no_memory = total <= sv->opt->max_message + ENVELOPE_OWN_MAX &&
			 framer_big_no_memory(&sc->c.inf);

	if (sid == NULL || !session_id_valid(sid, sid_len)) {
		char text[200];

		/* A batch's ids kept as it passed: of no session, given back now. */
		sbuf_reset(&sc->big_reqs.ids);
		sbuf_reset(&sc->big_early);

		if (no_memory) {
			(void)snprintf(text, sizeof(text),
				       "out of memory: the envelope (%zu bytes) could not be held",
				       total);
		} else {
			(void)snprintf(text, sizeof(text),
				       "envelope too large (%zu bytes, the limit is %zu)", total,
				       sv->opt->max_message + ENVELOPE_OWN_MAX);
		}
		send_envelope_error(sc, no_memory ? RPC_SERVER_ERROR : RPC_INVALID_REQUEST, text);
		return;
	}
	struct hub_entry *e = hub_find(&sv->hub, sid, sid_len);

	big = (struct rpcout_big){ .total = total,
				   .enveloped = true,
				   .limit = sv->opt->max_message,
				   .no_memory = no_memory };
	if (sc->big.batch) {
		bool done = big_batch(sc, e, sid, sid_len, &big);

		sbuf_reset(&sc->big_reqs.ids); /* (its memory given back after a long batch) */
		sbuf_reset(&sc->big_early);
		if (!done) {
			/* One error with id null, in its session. */
			big_batch_error(sc, e, sid, sid_len, &big);
		}
		return;
	}
	big.answer = envelope_bigscan_is_answer(&sc->big);
	big.notification = !sc->big.id.has_id && sc->big.id.has_method;
	big.id = id;
	big.id_len = id_len;
	if (id == NULL && sc->big.id.overflow) {
		big.id_head = sc->big.id.id; /* (said in part) */
		big.id_head_len = sc->big.id.id_len;
	}
	oversize(sc, e, sid, sid_len, &big, &sc->big.id);
}

/* ---- connections ---- */

/*
 * A socket whose peer closed it with lines of ours not read (ECONNRESET, read or left in
 * SO_ERROR): what they held is lost, answers among them; noted for each session it held.
 */
static void
say_unread(struct sconn *sc)
{
	int err = 0;
	socklen_t err_len = sizeof(err);
	size_t n = 0;

	if (sc->fd < 0 || sc->closed ||
	    (!sc->c.in_reset && (getsockopt(sc->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) == -1 ||
				 err != ECONNRESET))) {
		return;
	}
	for (const struct hub_entry *e = sc->sv->hub.table; e != NULL; e = e->hh.next) {
		if (e->owner == &sc->port) {
			n++;
			lost_note(sc,
				  "session %s: lines written to it not read (answers among them)",
				  e->id);
		}
	}
	if (n == 0) {
		lost_note(sc, "lines written to it not read");
	}
}

static void
sconn_close_input(struct sconn *sc)
{
	say_unread(sc);
	if (sc->closed) {
		/* Its output died (on_gone) while it waited: what it lost is said at its end. */
		sconn_maybe_free(sc);
		return;
	}
	sc->closed = true;
	conn_read(&sc->c, false);
	/* On a socket a kept session waits for another connection; on stdio there is none.
	 * Output cut for want of memory is mcpmux's failure, not the client's end. */
	hub_port_closed(&sc->sv->hub, &sc->port, sc->fd >= 0, sc->c.out_cut ? "output-cut" : NULL);
	lost_say(sc); /* with the queues of its sessions that its output's end dropped */
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
	hub_port_forget(&sv->hub, &sc->port);
	sv->hub.n_ports--;
	sv->refusing = false; /* room again: the next refusal is said */
	conn_release(&sc->c);
	sbuf_release(&sc->big_reqs.ids);
	sbuf_release(&sc->big_early);
	lost_say(sc); /* what its sessions lost since its close */
	sys_close(&sc->fd);
	free(sc);
}

/*
 * A connection goes once its input is over, it owns nothing, the control endRuns it sent
 * are answered (a client that half-closes after its request still gets the answer) and
 * its output is written; or, for the last two, once it can no longer be written to.  The
 * endRuns wait for their sessions' end, which the teardown deadlines bound.  It is freed at
 * the next loop turn: its own callbacks may be on the stack.
 */
static void
sconn_maybe_free(struct sconn *sc)
{
	if (sc->fd < 0 || !sc->closed || sc->port.n_owned > 0 || sc->dead ||
	    ((conn_queued(&sc->c) > 0 || sc->port.n_waiting > 0) && !sc->c.out_dead)) {
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

	if (sc->fd < 0) {
		/* stdio: the client is gone; every session goes, then mcpmux (which failed its
		 * client if it cut a line for it). */
		sv->hub.shutting_down = true;
		sv->out_cut = sv->out_cut || (c->out_cut && !sv->signalled);
	}
	sconn_close_input(sc); /* may free sc */
	serve_maybe_exit(sv);
}

static void
sconn_on_gone(struct conn *c, void *ctx)
{
	struct sconn *sc = ctx;

	hub_port_gone(&sc->sv->hub, &sc->port);
	sconn_on_eof(c, ctx);
}

static void
sconn_on_source_writable(struct conn *c, struct conn_source *src, void *ctx)
{
	(void)c;
	(void)ctx;
	if (src->owner != NULL) { /* NULL: mcpmux's own lines (conn.self) */
		hub_port_writable(src->owner);
	}
}

static void
sconn_on_drained(struct conn *c, void *ctx)
{
	struct sconn *sc = ctx;

	struct serve *sv = sc->sv;

	(void)c;
	if (sc->fd >= 0) {
		sconn_maybe_free(sc); /* may free sc */
	}
	/* The last output of a shutdown may go out after the last session is done. */
	serve_maybe_exit(sv);
}

/*
 * A session's queue is gone: with it, what it held not written (its connection's output
 * died first), maybe its `ended` event.
 */
static void
sconn_on_source_freed(struct conn *c, struct conn_source *src, bool written, void *ctx)
{
	struct sconn *sc = ctx;
	struct hub_unseen *u = src->held;

	(void)c;
	if (wbuf_len(&src->q) > 0 && src->key != NULL) {
		lost_note(sc, "session %.*s: %zu bytes queued for it not written",
			  (int)src->key_len, src->key, wbuf_len(&src->q));
	}
	if (u == NULL) {
		return;
	}
	src->held = NULL;
	if (written) {
		hub_unseen_told(&sc->sv->hub, u);
		return;
	}
	diag_warn("session %s: the connection that held it went before its end was written to "
		  "it",
		  u->id);
	hub_unseen_lost(&sc->sv->hub, u);
}

static const struct conn_hooks sconn_hooks = {
	.on_eof = sconn_on_eof,
	.on_gone = sconn_on_gone,
	.on_source_writable = sconn_on_source_writable,
	.on_drained = sconn_on_drained,
	.on_source_freed = sconn_on_source_freed,
};

static struct sconn *
sconn_new(struct serve *sv, int in_fd, int out_fd, int sock)
{
	struct sconn *sc = calloc(1, sizeof(*sc));

	if (sc == NULL) {
		return NULL;
	}
	sc->port.ops = &sconn_ops;
	sc->sv = sv;
	sc->fd = sock;
	/* A line holds a message of --max-message and the envelope's own bytes. */
	conn_init(&sc->c, sv->loop, in_fd, out_fd, sv->opt->max_message + ENVELOPE_OWN_MAX,
		  sv->opt->max_queue, &serve_sink, &sconn_hooks, sc);
	sc->next = sv->conns;
	sv->conns = sc;
	sv->hub.n_ports++;
	conn_read(&sc->c, !sv->hub.shutting_down);
	return sc;
}

/*
 * Connections to the socket at most: one a session, and SERVE_CONNS_EXTRA for ctl and
 * clients between sessions.  Each may hold a line it is in the middle of sending (up to
 * --max-message), so their number bounds mcpmux's memory, and their descriptors are
 * counted in those each session may take (cli.h).
 */
#define SERVE_CONNS_EXTRA 64

/* Over the limit: told why, in an envelope without a session, and closed. */
static void
refuse_connection(struct serve *sv, int fd)
{
	char line[200];
	int n = snprintf(line, sizeof(line),
			 "{\"error\":{\"code\":-32000,\"message\":\"too many connections "
			 "(%zu, --max-sessions + %d): this one is closed\"}}\n",
			 sv->hub.n_ports, SERVE_CONNS_EXTRA);

	/* A new socket's buffer takes a line: if not, the close says it all the same. */
	(void)send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)close(fd);
	if (!sv->refusing) {
		sv->refusing = true;
		diag_warn("refusing connections: %zu are open, the most that --max-sessions %zu "
			  "allows (it + %d)",
			  sv->hub.n_ports, sv->opt->max_sessions, SERVE_CONNS_EXTRA);
	}
}

static void
serve_on_accept(int fd, void *ctx)
{
	struct serve *sv = ctx;

	if (!sv->hub.shutting_down &&
	    sv->hub.n_ports >= sv->opt->max_sessions + SERVE_CONNS_EXTRA) {
		refuse_connection(sv, fd);
		return;
	}
	if (sv->hub.shutting_down || sconn_new(sv, fd, fd, fd) == NULL) {
		(void)close(fd);
	}
}

/* ---- the whole ---- */

/* Unwritten bytes of the clients that are still there. */
static size_t
serve_queued(const struct serve *sv)
{
	size_t n = 0;

	for (const struct sconn *sc = sv->conns; sc != NULL; sc = sc->next) {
		if (!sc->c.out_dead) {
			n += conn_queued(&sc->c);
		}
	}
	return n;
}

static void
serve_maybe_exit(struct serve *sv)
{
	if (!hub_is_empty(&sv->hub) || (sv->http != NULL && !sv->http_drained)) {
		return;
	}
	if (serve_queued(sv) > 0) {
		/*
		 * Still writing: its on_drained calls again.  After a signal, a client that
		 * does not read holds the exit HUB_DRAIN_S at most; after stdin's EOF the
		 * reader of stdout takes its time, as a pipeline's does.
		 */
		if (sv->signalled && !ev_is_active(&sv->drain_w)) {
			ev_timer_start(sv->loop, &sv->drain_w);
		}
		return;
	}
	ev_timer_stop(sv->loop, &sv->drain_w);
	ev_break(sv->loop, EVBREAK_ALL);
}

static void
serve_on_drain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct serve *sv = container_of(w, struct serve, drain_w);

	(void)revents;
	diag_warn("clients took not all of their last lines within %g s: %zu bytes are dropped",
		  HUB_DRAIN_S, serve_queued(sv));
	ev_break(loop, EVBREAK_ALL);
}

static void
serve_on_empty(struct hub *h, void *ctx)
{
	(void)h;
	serve_maybe_exit(ctx);
}

static void
serve_on_http_drained(void *ctx)
{
	struct serve *sv = ctx;

	sv->http_drained = true;
	serve_maybe_exit(sv);
}

static void
serve_shutdown(struct serve *sv, const char *why)
{
	diag_info("%s: ending every session", why);
	if (sv->listening) {
		listener_close(&sv->lst);
		sv->listening = false;
	}
	if (sv->http != NULL) {
		front_http_shutdown(sv->http, serve_on_http_drained, sv);
	}
	for (struct sconn *sc = sv->conns; sc != NULL; sc = sc->next) {
		conn_read(&sc->c, false);
	}
	hub_shutdown(&sv->hub);
	serve_maybe_exit(sv);
}

static void
serve_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	((struct serve *)w->data)->hub.shutdown_reason = "signal";
	((struct serve *)w->data)->signalled = true;
	serve_shutdown(w->data, strsignal(w->signum));
}

/* The sockets systemd passed (LISTEN_FDS), sorted by door. */
struct activation {
	int http[HTTP_LISTENERS_MAX];
	size_t n_http;
	int env[1];
	size_t n_env;
};

static bool
wants_passed(const struct mcpmux_options *o, bool *for_http)
{
	*for_http = false;
	for (size_t i = 0; i < o->n_http; i++) {
		*for_http = *for_http || strcmp(o->http[i], "systemd") == 0;
	}
	return *for_http || (o->listen != NULL && strcmp(o->listen, "systemd") == 0);
}

/*
 * `--http systemd` and `--listen systemd`: the sockets of the socket unit.  With both,
 * each socket's FileDescriptorName= says its door ("http", or "listen"/"envelope");
 * with one, every socket is that door's.  0, or -1 after saying why.
 */
static int
passed_sockets(struct serve *sv, struct activation *act)
{
	const struct mcpmux_options *o = sv->opt;
	bool for_http, for_env;
	int fds[HTTP_LISTENERS_MAX + 1];
	char names[512] = "";
	const char *nm = getenv("LISTEN_FDNAMES");

	memset(act, 0, sizeof(*act));
	if (!wants_passed(o, &for_http)) {
		return 0;
	}
	for_env = o->listen != NULL && strcmp(o->listen, "systemd") == 0;
	if (nm != NULL) {
		(void)snprintf(names, sizeof(names), "%s", nm);
	}
	int n = http_listen_fds(fds, HTTP_LISTENERS_MAX + 1);

	if (n < 0) {
		return diag_error("LISTEN_PID or LISTEN_FDS is malformed (start mcpmux from its "
				  "socket unit, or without 'systemd' addresses)");
	}
	if (n == 0) {
		return diag_error("'systemd' was given as an address, but no socket was passed "
				  "(start mcpmux from its socket unit, which sets LISTEN_FDS)");
	}
	if (n > HTTP_LISTENERS_MAX + 1) {
		for (int i = HTTP_LISTENERS_MAX + 1; i < n; i++) {
			(void)close(3 + i);
		}
		n = HTTP_LISTENERS_MAX + 1;
		diag_warn("more sockets were passed than mcpmux takes: the rest were closed");
	}
	char *save = NULL, *name = strtok_r(names, ":", &save);

	for (int i = 0; i < n; i++, name = name != NULL ? strtok_r(NULL, ":", &save) : NULL) {
		bool to_http = for_http;

		if (for_http && for_env) {
			if (name != NULL && strcmp(name, "http") == 0) {
				to_http = true;
			} else if (name != NULL &&
				   (strcmp(name, "listen") == 0 || strcmp(name, "envelope") == 0)) {
				to_http = false;
			} else {
				for (int k = i; k < n; k++) {
					(void)close(fds[k]);
				}
				return diag_error(
					"with --http systemd and --listen systemd, each "
					"socket needs FileDescriptorName=http or =listen in "
					"its unit ('%s' is neither)",
					name != NULL ? name : "");
			}
		}
		if (to_http && act->n_http < HTTP_LISTENERS_MAX) {
			act->http[act->n_http++] = fds[i];
		} else if (!to_http && act->n_env == 0) {
			act->env[act->n_env++] = fds[i];
		} else {
			(void)close(fds[i]);
			diag_warn("socket %d that systemd passed is one too many for its door: "
				  "closed",
				  fds[i]);
		}
	}
	return 0;
}

int
cmd_serve(const struct mcpmux_options *o)
{
	struct ev_loop *loop = EV_DEFAULT;
	struct serve *sv = calloc(1, sizeof(*sv));
	struct activation act = { .n_http = 0 };
	int rc = 0;

	if (sv == NULL || loop == NULL) {
		free(sv);
		return diag_error("cannot start: out of memory") + 2;
	}
	sv->loop = loop;
	sv->opt = o;
	hub_init(&sv->hub, loop, o);
	sv->hub.on_empty = serve_on_empty;
	sv->hub.ctx = sv;
	sv->in_fd = sv->out_fd = -1;
	jsonrpc_init(&sv->scan);
	sv->scan.params_method = o->end_method; /* the only params mcpmux reads */
	backend_module_init(loop);
	if (backend_cgroup()[0] != '\0') {
		(void)survey_start_sweep(backend_cgroup()); /* what gone instances left beside it */
	}
	(void)errout_start(loop);
	ev_idle_init(&sv->reap_w, serve_on_reap);
	ev_timer_init(&sv->drain_w, serve_on_drain_timeout, HUB_DRAIN_S, 0.);

	/* Signals first: once the socket is there, a client may already want us to stop. */
	ev_signal_init(&sv->term_w, serve_on_signal, SIGTERM);
	ev_signal_init(&sv->int_w, serve_on_signal, SIGINT);
	ev_signal_init(&sv->hup_w, serve_on_signal, SIGHUP);
	sv->term_w.data = sv->int_w.data = sv->hup_w.data = sv;
	/* Not one the caller ignored (nohup's SIGHUP, a background job's SIGINT): serve
	 * outlives it, as the servers, which ignore it too, would in direct runs. */
	if (!sys_signal_ignored_at_start(SIGTERM)) {
		ev_signal_start(loop, &sv->term_w);
	}
	if (!sys_signal_ignored_at_start(SIGINT)) {
		ev_signal_start(loop, &sv->int_w);
	}
	if (!sys_signal_ignored_at_start(SIGHUP)) {
		ev_signal_start(loop, &sv->hup_w);
	}
	sys_signals_release(); /* one held since the start is acted on now */
	/* On stdin and stdout, the envelopes are the client's: a log there is refused. */
	if (o->log_path != NULL && tlog_open(loop, o->log_path, o->log_bodies,
					     o->listen == NULL && o->n_http == 0) == -1) {
		rc = 1;
		goto out;
	}
	if (passed_sockets(sv, &act) == -1) {
		rc = 1;
		goto out;
	}
	if (o->listen != NULL && strcmp(o->listen, "systemd") == 0 && act.n_env == 0) {
		(void)diag_error("--listen systemd: no socket for the envelope door was passed");
		rc = 1;
		goto out;
	}
	if (o->listen != NULL) {
		int lrc =
			act.n_env > 0
				? listener_open_fd(&sv->lst, loop, act.env[0], serve_on_accept, sv)
				: listener_open(&sv->lst, loop, o->listen, serve_on_accept, sv);

		if (lrc == -1) {
			rc = 1;
			goto out;
		}
		act.n_env = 0; /* the listener's now */
		sv->listening = true;
		diag_info("listening on '%s'", sv->lst.path);
	}
	if (o->n_http > 0) {
		int hrc = -1;

		sv->http = front_http_new(loop, &sv->hub, o);
		if (sv->http != NULL) {
			hrc = front_http_listen(sv->http, act.http, act.n_http);
		}
		act.n_http = 0; /* the front end's now (closed with it) */
		if (hrc < 0) {
			rc = hrc == -2 ? EXIT_USAGE : 1;
			goto out;
		}
	}
	if (o->listen == NULL && o->n_http == 0) {
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
	if (sv->out_cut) {
		rc = 1;
	}
	front_http_free(sv->http);
	sv->http = NULL;
	size_t killed = backend_kill_leftovers(sv->hub.scfg.kill_deadline);

	if (killed > 0) {
		diag_info("killed %zu leftover process(es) that no session claimed", killed);
	}
out:
	/*
	 * The loop is over: a signal that ends a run, come from now to the exit, waits
	 * (blocked) rather than ending mcpmux by its default action, without its exit
	 * status and before its keeper is told it is done.
	 */
	sys_signals_hold();
	ev_signal_stop(loop, &sv->term_w);
	ev_signal_stop(loop, &sv->int_w);
	ev_signal_stop(loop, &sv->hup_w);
	ev_idle_stop(loop, &sv->reap_w);
	ev_timer_stop(loop, &sv->drain_w);
	if (sv->listening) {
		listener_close(&sv->lst);
	}
	front_http_free(sv->http);
	for (size_t i = 0; i < act.n_env; i++) {
		sys_close(&act.env[i]);
	}
	for (size_t i = 0; i < act.n_http; i++) {
		sys_close(&act.http[i]);
	}
	hub_release(&sv->hub);
	while (sv->conns != NULL) {
		sconn_free(sv->conns);
	}
	tlog_close();
	errout_stop(sys_mono() + sv->hub.scfg.eof_grace);
	backend_module_release();
	session_module_release();
	sys_stdio_close(sv->in_fd, STDIN_FILENO, sv->in_shared);
	sys_stdio_close(sv->out_fd, STDOUT_FILENO, sv->out_shared);
	jsonrpc_release(&sv->scan);
	sbuf_release(&sv->tmp);
	free(sv);
	return rc;
}
