/*
 * cmd_connect: `mcpmux connect [--session ID] [--keep] PATH`.  Plain MCP stdio on one
 * side, one session's envelopes on a serve socket on the other, so that any MCP client
 * config can point at a shared `mcpmux serve --listen`.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <yajl/yajl_tree.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/conn.h"
#include "mcpmux/diag.h"
#include "mcpmux/envelope.h"
#include "mcpmux/errout.h"
#include "mcpmux/framer.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/jsonspan.h"
#include "mcpmux/listener.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/sys.h"

struct cconn {
	struct ev_loop *loop;
	struct conn client; /* stdin/stdout */
	struct conn server; /* the socket */
	int fd;
	char id[SESSION_ID_MAX + 1];
	size_t id_len;
	const char *end_method;
	size_t max_message; /* --max-message: a line of the client; serve's add its envelope */
	bool keep;
	bool ending;	 /* stdin is over; waiting for the session's end */
	bool signalled;	 /* that end was asked for by a signal, not stdin's EOF */
	bool out_gone;	 /* that end was asked for as stdout went (client_on_gone()) */
	bool cut_failed; /* a line for the client was cut for want of memory, before a signal */
	int cut_sig;	 /* the signal that ended the wait (write_what_fits()) or asked for the
			  * end: a stdout lost after it is said after it */
	bool sig_lost;	 /* and stdout lost lines after it: connect exits 128 + that signal */
	bool failed;	 /* exit_code is connect's own failure (1), which no status replaces */
	bool done;	 /* the session ended (or, with --keep, stdin is over) */
	bool ended;	 /* the session's end came: exit_code is its status */
	bool serve_gone; /* writing to serve failed, or its socket's EOF: nothing can be sent */
	bool serve_eof;	 /* and nothing more comes from serve */
	bool closing;	 /* done: the socket is shut down for writing, serve's EOF awaited */
	bool sent;	 /* a line of the client went to the session */
	bool startable;	 /* and one that starts a session (not all serve only answers) */
	bool first_init; /* the first envelope was the client's initialize (no --keep) */
	int exit_code;
	struct sbuf tmp;
	struct jsonrpc_scanner scan;
	struct jsonrpc_idscan big_id;	/* the id of a client line over the bound, as it passes */
	bool big_batch;			/* ... a batch: its elements scanned as they end */
	size_t big_fed;			/* ... its bytes so far */
	bool big_ended;			/* ... its end read (client_on_big_end()) */
	bool big_lead;			/* ... nothing but whitespace read of it yet */
	struct rpcout_bigreqs big_reqs; /* ... a batch's requests, to be answered by id */
	size_t big_answers, big_notes;	/* ... its answers and notifications so far */
	struct session_ids srv_ids;	/* the server's requests in flight, as serve passes them */
	struct envelope_bigscan big;	/* the same of a line of serve's that was not held */
	int in_fd, out_fd;		/* our own descriptions of stdin and stdout */
	bool in_shared, out_shared;
	ev_prepare turn_w; /* arms trim_w when a turn grew a big buffer */
	ev_timer trim_w;
	ev_timer end_w;	  /* the deadline of what is waited for of serve after stdin's EOF */
	ev_timer close_w; /* the deadline of serve's EOF once connect is done (closing) */
	double end_by;	  /* its sys_mono() */
	double end_limit; /* and its length, in seconds */
	double held_at;	  /* serve_held() since when (sys_mono()), or since stdin's EOF if later */
};

/*
 * Memory grown for a big message (the framers' and the scanner's buffers, the heap glibc
 * keeps) is given back once connect has been idle for half a second, as wrap and serve
 * do (backend_on_trim()).  Neither watcher keeps the loop running.
 */
static void
connect_on_turn(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct cconn *cc = w->data;

	(void)revents;
	if (sys_big_alloc) {
		sys_big_alloc = false;
		if (!ev_is_active(&cc->trim_w)) {
			ev_timer_again(loop, &cc->trim_w);
			ev_unref(loop);
		} else {
			ev_timer_again(loop, &cc->trim_w);
		}
	}
}

static void
connect_on_trim(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	ev_ref(loop);
	ev_timer_stop(loop, w);
	jsonrpc_trim();
	(void)malloc_trim(0);
}

static void
connect_usage(void)
{
	fputs("usage: mcpmux connect [--session ID] [--keep] [--end-method NAME] [--max-message SIZE]\n"
	      "                      PATH\n"
	      "\n"
	      "Relay plain MCP stdio to one session of `mcpmux serve --listen PATH`.\n"
	      "  --session ID       the session ID (default: a fresh UUID)\n"
	      "  --keep             keep the session when this connection ends (stdin EOF\n"
	      "                     then leaves it running; another connect can take it over)\n"
	      "  --end-method NAME  the end-of-run method the server uses (mcpmux/endRun)\n"
	      "  --max-message SIZE the longest message either way (64M); give it serve's own\n"
	      "                     when that is larger\n"
	      "  -q, -v             fewer, or more, of mcpmux's own messages on stderr\n"
	      "Exit status: the server's, like the wrapped command's (code, or 128+signal).\n",
	      stdout);
}

/*
 * How long what connect still has to say on stderr may wait for a reader at exit (as
 * wrap's and serve's wait their --eof-grace, 2 s by default).
 */
#define CONNECT_STDERR_GRACE_S 2.

/* The id of connect's own end-of-run request, as JSON text. */
#define END_ID "\"mcpmux-connect-end\""
/* And of its mcpmux/stats request, sent with it. */
#define STATS_ID "\"mcpmux-connect-stats\""

/*
 * How long connect waits, from its stdin's EOF, for what it still needs of serve (the
 * session's end, its last lines taken), as `mcpmux ctl end` waits: 60 s, and as long
 * again as serve says its teardowns take at most (`teardown_max_s` of mcpmux/stats,
 * asked with the end).  A serve that is stopped or stuck holds connect no longer.  The
 * time while stdout takes nothing, and serve is not read for it, is the client's
 * (read_serve()): not counted.
 */
#define CONNECT_END_WAIT_S 60.

/*
 * How long connect waits, once it is done, for serve to close the socket after connect's
 * own close of its side (maybe_exit()).
 */
#define CONNECT_CLOSE_WAIT_S 2.

/*
 * The exit status an "ended" event (or, under "result", an end-of-run result)
 * describes: its code, or 128 + its signal; 0 for a session that had no server at its
 * end ("suspended": its last server was ended by mcpmux, as wrap exits then); 1 for one
 * whose server could not be started, unless nothing was sent that starts one (!tried: the
 * client's lines were all answered by serve itself, and nothing failed, as wrap exits 0
 * after lines that its server never sees).
 */
static int
ended_status(const char *line, size_t len, bool in_result, bool tried)
{
	char err[128], *buf = malloc(len + 1);
	yajl_val root, v;
	int code = 0;

	/* As long as the line is (an "abandoned" list of many pids): within --max-message. */
	if (buf == NULL) {
		diag_error("out of memory: the exit status of the session's server is not known");
		return 1;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	root = yajl_tree_parse(buf, err, sizeof(err));
	free(buf);
	const char *pcode[] = { "result", "exit", "code", NULL };
	const char *psig[] = { "result", "exit", "signal", NULL };
	const char *psusp[] = { "result", "suspended", NULL };
	const char **code_path = in_result ? pcode : pcode + 1;
	const char **sig_path = in_result ? psig : psig + 1;
	const char **susp_path = in_result ? psusp : psusp + 1;

	if ((v = yajl_tree_get(root, code_path, yajl_t_number)) != NULL && YAJL_IS_INTEGER(v)) {
		code = (int)YAJL_GET_INTEGER(v);
	} else if ((v = yajl_tree_get(root, sig_path, yajl_t_string)) != NULL) {
		const char *want = YAJL_GET_STRING(v);
		char name[32];

		code = 1;
		for (int sig = 1; want != NULL && sig < NSIG; sig++) {
			if (strcmp(rpcout_signame(sig, name, sizeof(name)), want) == 0) {
				code = 128 + sig;
				break;
			}
		}
	} else if (yajl_tree_get(root, susp_path, yajl_t_true) == NULL && tried) {
		code = 1; /* the server could not be started */
	}
	yajl_tree_free(root);
	return code;
}

/*
 * Exit once the session is over and everything queued has been written: to stdout at the
 * client's own pace, as a pipe's reader takes it, also when serve is gone (it is not
 * bounded); to serve until it is gone, or until the session's end came: the client's lines
 * still queued then (serve did not take them: a slow server) would only start a new run
 * that nobody follows, and are not sent.
 */
static void read_serve(struct cconn *cc, bool on);

static void
maybe_exit(struct cconn *cc)
{
	if (!cc->done || (conn_queued(&cc->client) > 0 && !cc->client.out_dead) ||
	    (conn_queued(&cc->server) > 0 && !cc->serve_eof && !cc->ended)) {
		return;
	}
	if (conn_queued(&cc->server) > 0 && !cc->serve_eof && !cc->closing) {
		diag_warn("session %s ended with %zu bytes of the client's lines not yet taken "
			  "by serve: not sent",
			  cc->id, conn_queued(&cc->server));
	}
	if (!cc->serve_eof && !cc->closing && conn_queued(&cc->server) == 0 &&
	    !cc->server.out_dead) {
		/*
		 * What serve still writes (the "ended" event after the end's answer, the "kept"
		 * event) is read, to its EOF, and dropped, rather than left unread in the socket
		 * when it is closed, which serve would take for lines of the session lost.  Serve
		 * closes once it has our EOF and has written the rest; a serve that does not is
		 * not waited for long: the status is known.  (With lines of the client not sent,
		 * the socket is closed at once, as they are dropped.)
		 */
		cc->closing = true;
		(void)shutdown(cc->fd, SHUT_WR);
		read_serve(cc, true);
		ev_timer_start(cc->loop, &cc->close_w);
		return;
	}
	if (!cc->serve_eof && cc->closing) {
		return;
	}
	ev_break(cc->loop, EVBREAK_ALL);
}

/* Serve has not closed within CONNECT_CLOSE_WAIT_S of connect's own close: not waited for. */
static void
connect_on_close_wait(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct cconn *cc = w->data;

	(void)revents;
	diag_info("serve did not close session %s's connection within %g s of connect's close",
		  cc->id, CONNECT_CLOSE_WAIT_S);
	ev_break(loop, EVBREAK_ALL);
}

static void
on_drained(struct conn *c, void *ctx)
{
	(void)c;
	maybe_exit(ctx);
}

/* The wait for serve after stdin's EOF is over: connect exits 1, and says why. */
static void
connect_on_end_wait(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct cconn *cc = w->data;
	double left = cc->end_by - sys_mono();

	(void)revents;
	if (left > 0) {
		w->repeat = left; /* serve said its teardowns take that much longer */
		ev_timer_again(loop, w);
		return;
	}
	ev_timer_stop(loop, w);
	if (!cc->done) {
		diag_error("serve did not end session %s within %g s of the end of stdin (is it "
			   "stopped or stuck?): exiting without the session's end",
			   cc->id, cc->end_limit);
	} else if (conn_queued(&cc->server) > 0 && !cc->serve_eof && !cc->ended) {
		/* (after the session's end, those lines are not sent: maybe_exit()) */
		diag_error("serve did not take connect's last lines within %g s of the end of "
			   "stdin (is it stopped or stuck?): exiting, %zu bytes not sent",
			   cc->end_limit, conn_queued(&cc->server));
	} else {
		return; /* only stdout is left: written at the client's own pace */
	}
	cc->exit_code = 1;
	cc->failed = true;
	ev_break(loop, EVBREAK_ALL);
}

/*
 * Is serve not read, as stdout takes no more (its queue is full)?  Once connect is under
 * way, read_serve() is the only one to set or clear the owner's hold on the socket.
 */
static bool
serve_held(const struct cconn *cc)
{
	return (cc->server.hold & CONN_HOLD_OWNER) != 0;
}

/*
 * Reading serve stops while stdout takes no more (its queue is full), and goes on once it
 * takes again.  Meanwhile what serve sends, the session's end included, waits for the
 * client's pace: the wait for the end (end_w) stands still, and is that much longer.
 */
static void
read_serve(struct cconn *cc, bool on)
{
	double now = sys_mono();
	bool held = serve_held(cc);

	conn_read(&cc->server, on);
	if (on != held) {
		return;
	}
	if (!on) {
		cc->held_at = now;
		ev_timer_stop(cc->loop, &cc->end_w);
	} else if (cc->end_limit > 0) {
		cc->end_by += now - cc->held_at;
		ev_timer_set(&cc->end_w, SYS_MAX(cc->end_by - now, 0.), 0.);
		ev_timer_start(cc->loop, &cc->end_w);
	}
}

/* ---- client (stdin) to server (socket) ---- */

static void
send_envelope(struct cconn *cc, const char *msg, size_t len)
{
	struct iovec iov[5] = {
		{ .iov_base = (void *)(uintptr_t) "{\"session\":\"", .iov_len = 12 },
		{ .iov_base = cc->id, .iov_len = cc->id_len },
		{ .iov_base = (void *)(uintptr_t) "\",\"message\":", .iov_len = 12 },
		{ .iov_base = (void *)(uintptr_t)msg, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
	};

	if (conn_send(&cc->server, &cc->server.self, iov, 5) == -1 && errno == ENOMEM) {
		diag_error("out of memory: a message for the server was lost");
	}
	if (conn_source_full(&cc->server.self)) {
		conn_read(&cc->client, false); /* the socket is slow: stop reading stdin */
	}
}

/*
 * A message of connect's own for the client, in cc->tmp, emptied after (a long one, a
 * batch's errors, given back now): 0, or -1 when there was no memory to write it or to
 * queue it, which the caller says.  reserve: the one error with id null in place of a
 * batch's array of errors, which waits in the memory kept for such errors when the queue
 * has none (conn_send_error()).
 */
static int
send_own_tmp(struct cconn *cc, bool reserve)
{
	struct conn *c = &cc->client;
	bool lost = cc->tmp.failed ||
		    ((reserve ? conn_send_error(c, &c->self, cc->tmp.buf, cc->tmp.len)
			      : conn_send_line(c, &c->self, cc->tmp.buf, cc->tmp.len)) == -1 &&
		     errno == ENOMEM);

	sbuf_reset(&cc->tmp);
	return lost ? -1 : 0;
}

static int
send_own_or_fail(struct cconn *cc)
{
	return send_own_tmp(cc, false);
}

/* The same, one that is lost said on stderr. */
static void
send_own(struct cconn *cc)
{
	if (send_own_or_fail(cc) == -1) {
		diag_error("out of memory: a message from mcpmux for the client was lost");
	}
}

static void
client_on_line(void *ctx, const char *line, size_t len)
{
	struct cconn *cc = ctx;

	/*
	 * A line goes into its envelope as one JSON value, or not at all: `{...},"session":"x"`
	 * would otherwise add members to the envelope and reach another session.
	 */
	enum jsonrpc_kind kind = jsonrpc_scan_line(&cc->scan, line, len);

	if (kind == JSONRPC_INVALID_JSON) {
		sbuf_reset(&cc->tmp);
		rpcout_error(&cc->tmp, NULL, 0, RPC_PARSE_ERROR, "Parse error: not valid JSON");
		send_own(cc);
		return;
	}
	if (!cc->sent && !cc->keep) {
		cc->first_init = kind == JSONRPC_REQUEST &&
				 jsonrpc_method_is(&cc->scan, &cc->scan.one, "initialize");
	}
	cc->sent = true;
	session_ids_answered(&cc->srv_ids, &cc->scan);
	/* What serve answers itself starts no session: not JSON-RPC, an end-of-run. */
	if (kind != JSONRPC_INVALID_REQUEST &&
	    !((kind == JSONRPC_REQUEST || kind == JSONRPC_NOTIFICATION) &&
	      jsonrpc_method_is(&cc->scan, &cc->scan.one, cc->end_method))) {
		cc->startable = true;
	}
	send_envelope(cc, line, len);
}

/*
 * An answer of the client's over the bound (alone, or in a batch, as it ends): the request
 * of the server's in flight that it answers (one with an id too long to be read found by
 * its length, hash and first bytes) gets an error in its place, once, and the client none;
 * an answer to no request in flight is dropped, as wrap and serve do.
 */
static void
client_big_answer(struct cconn *cc, const struct jsonrpc_idscan *sc)
{
	/*
	 * One within the bound is over it unless the framer had no memory for it; over it
	 * before the line's end, its size is not known yet.
	 */
	bool no_memory = cc->big_fed <= cc->max_message && framer_big_no_memory(&cc->client.inf);
	bool unended = !cc->big_ended && !no_memory;
	struct rpcout_big big = { .answer = true,
				  .total = unended ? cc->max_message : cc->big_fed,
				  .limit = cc->max_message,
				  .no_memory = no_memory,
				  .unended = unended };
	struct rpcout_big found;

	rpcout_big_scanned_id(&big, sc);
	found = big;
	found.id = session_ids_find(&cc->srv_ids, sc, &found.id_len);
	if (found.id == NULL) {
		diag_warn(RPCOUT_BIG_STRAY, RPCOUT_BIG_ARGS_ID(&big), RPCOUT_BIG_ARGS_SIZE(&big));
		return;
	}
	diag_warn(RPCOUT_BIG_ANSWER, RPCOUT_BIG_ARGS_ID(&found), RPCOUT_BIG_ARGS_SIZE(&found));
	if (!cc->serve_gone) {
		sbuf_reset(&cc->tmp);
		rpcout_answer_too_large(&cc->tmp, &found);
		if (!cc->tmp.failed) {
			send_envelope(cc, cc->tmp.buf, cc->tmp.len);
		}
		sbuf_reset(&cc->tmp); /* (an id of megabytes is not kept) */
	}
	session_ids_remove(&cc->srv_ids, found.id, found.id_len);
}

/* An element of a batch of the client's over the bound, as it ends. */
static void
client_big_element(void *ctx, const struct jsonrpc_idscan *sc)
{
	struct cconn *cc = ctx;

	if (jsonrpc_idscan_is_answer(sc)) {
		cc->big_answers++;
		client_big_answer(cc, sc);
	} else if (sc->has_id) {
		size_t id_len = 0;
		const char *id = jsonrpc_idscan_id(sc, &id_len);

		/* An id too long to be kept, or of no use (null, true, {}): answered with id
		 * null. */
		rpcout_bigreqs_add(&cc->big_reqs, id, id_len);
	} else if (sc->has_method) {
		cc->big_notes++;
	} else if (sc->begun) {
		/* No message at all (1, {}): one error with id null for them at the end (not the
		 * ',' after an object). */
		rpcout_bigreqs_no_message(&cc->big_reqs);
	}
}

/* Bytes of a line over the bound to its scan (a batch's elements: client_big_element()). */
static void
client_big_feed(struct cconn *cc, const char *p, size_t len)
{
	jsonrpc_idscan_feed_line(&cc->big_id, &cc->big_lead, p, len);
	cc->big_batch = cc->big_id.batch;
}

/*
 * The requests of a batch of the client's over the bound, at its end: an error each with
 * its id, and one with id null for its elements that are no message, in one array.  False when they
 * are to be answered with one error with id null (too many of them, or no memory).
 */
static bool
client_big_requests(struct cconn *cc, const struct rpcout_big *big)
{
	bool answered = rpcout_bigreqs_answer(&cc->tmp, &cc->big_reqs, big);

	sbuf_reset(&cc->big_reqs.ids); /* (its memory given back after a long batch) */
	if (!answered) {
		return false;
	}
	if (send_own_or_fail(cc) == -1) { /* (a long array is given back now) */
		if (cc->client.out_dead) {
			diag_error(RPCOUT_BIGREQS_CUT_TEXT); /* (nothing can follow its head) */
			return true;
		}
		diag_error(RPCOUT_BIGREQS_NOT_QUEUED_TEXT);
		return false;
	}
	return true;
}

static void
client_on_big_begin(void *ctx, const char *head, size_t len)
{
	struct cconn *cc = ctx;

	cc->big_fed = len;
	cc->big_ended = false;
	cc->big_lead = true;
	cc->big_batch = false;
	rpcout_bigreqs_begin(&cc->big_reqs, cc->max_message);
	cc->big_answers = cc->big_notes = 0;
	jsonrpc_idscan_init(&cc->big_id);
	cc->big_id.on_element = client_big_element;
	cc->big_id.ctx = cc;
	client_big_feed(cc, head, len);
}

static void
client_on_big_more(void *ctx, const char *more, size_t len)
{
	struct cconn *cc = ctx;

	cc->big_fed += len;
	client_big_feed(cc, more, len);
}

/*
 * A client line over the bound: not sent; answered with its id (if it was seen).  A
 * batch: each answer in it as it ended (client_big_element()); its requests, if any, get
 * an error each with its id, and its elements that are no message one with id null, in
 * one array, as wrap's and serve's do (when that array would be longer than --max-message:
 * rpcout_bigreqs, or with no memory for it, one error with id null); one of answers and
 * notifications alone gets the client nothing.
 */
static void
client_on_big_end(void *ctx, size_t total)
{
	struct cconn *cc = ctx;
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(&cc->big_id, &id_len);
	struct rpcout_big big;
	char text[256];

	/* (the framer had no memory to hold it, within the bound) */
	bool no_memory = total <= cc->max_message && framer_big_no_memory(&cc->client.inf);

	cc->big_fed = total;
	cc->big_ended = true;
	big = (struct rpcout_big){ .answer = jsonrpc_idscan_is_answer(&cc->big_id),
				   .notification = !cc->big_id.has_id && cc->big_id.has_method,
				   .id = id,
				   .id_len = id_len,
				   .total = total,
				   .limit = cc->max_message,
				   .no_memory = no_memory };
	if (cc->big_batch) {
		/* An element cut short by the line's end, then the batch's. */
		if (cc->big_id.begun) {
			client_big_element(cc, &cc->big_id);
		}
		id = NULL; /* (the last element's) */
		id_len = 0;
		big = (struct rpcout_big){ .total = total,
					   .limit = cc->max_message,
					   .no_memory = no_memory };
		if (cc->big_notes > 0) {
			diag_warn(RPCOUT_BIG_NOTIFICATION, RPCOUT_BIG_ARGS_SIZE(&big));
		}
		bool errors = cc->big_reqs.n > 0 || cc->big_reqs.no_message > 0;

		if (!errors && (cc->big_answers > 0 || cc->big_notes > 0)) {
			return;
		}
		if (errors && client_big_requests(cc, &big)) {
			return;
		}
	}
	switch (rpcout_oversize(&big, text, sizeof(text))) {
	case RPCOUT_OVERSIZE_ANSWER:
		client_big_answer(cc, &cc->big_id);
		break;
	case RPCOUT_OVERSIZE_NOTIFICATION:
		diag_warn(RPCOUT_BIG_NOTIFICATION, RPCOUT_BIG_ARGS_SIZE(&big));
		break;
	case RPCOUT_OVERSIZE_REQUEST:
		sbuf_reset(&cc->tmp);
		rpcout_error(&cc->tmp, id, id_len, RPCOUT_BIG_CODE(&big), text);
		if (!cc->big_batch) {
			send_own(cc);
		} else if (send_own_tmp(cc, true) == -1) {
			diag_error(RPCOUT_BIGREQS_UNANSWERED_TEXT);
		}
		break;
	}
}

static const struct framer_sink client_sink = {
	.line = client_on_line,
	.big_begin = client_on_big_begin,
	.big_more = client_on_big_more,
	.big_end = client_on_big_end,
};

static void
client_on_eof(struct conn *c, void *ctx)
{
	struct cconn *cc = ctx;
	char method[6 * 255 + 2 + 1], msg[1900];

	(void)c;
	if (cc->ending) {
		maybe_exit(cc); /* stdout gone after stdin's EOF: the end is asked for once */
		return;
	}
	cc->ending = true;
	if (cc->end_limit == 0) {
		cc->end_limit = CONNECT_END_WAIT_S;
		cc->end_by = sys_mono() + CONNECT_END_WAIT_S;
		cc->held_at = sys_mono(); /* a stdout that holds serve now: counted from here */
		ev_timer_set(&cc->end_w, CONNECT_END_WAIT_S, 0.);
		if (!serve_held(cc)) {
			ev_timer_start(cc->loop, &cc->end_w);
		}
	}
	if (cc->serve_gone) {
		maybe_exit(cc); /* nothing can be sent: serve's EOF decides (server_on_eof()) */
		return;
	}
	if (cc->keep || !cc->sent) {
		/*
		 * Kept: the session stays with serve; this connection goes once its lines are
		 * sent.  Nothing sent: there is no session of ours to end.
		 */
		cc->done = true;
		maybe_exit(cc);
		return;
	}
	/*
	 * A request: its answer ends the wait even where no "ended" event can come (a
	 * session that never started: the result comes at once; one that is another's).
	 * How long serve's teardowns take is asked with it: the end is waited for that long.
	 */
	static const char stats[] = "{\"message\":{\"jsonrpc\":\"2.0\",\"id\":" STATS_ID
				    ",\"method\":\"mcpmux/stats\"}}";

	/* The method as a JSON string: any name wrap and serve take (1 to 255 bytes). */
	method[rpcout_escape_into(method, cc->end_method, strlen(cc->end_method))] = '\0';
	(void)snprintf(msg, sizeof(msg),
		       "{\"jsonrpc\":\"2.0\",\"id\":" END_ID ",\"method\":%s,\"params\":{"
		       "\"reason\":\"%s\"}}",
		       method,
		       cc->client.out_cut ? "connect cut a line for the client (out of memory)"
					  : "the client closed its input");
	send_envelope(cc, msg, strlen(msg));
	(void)conn_send_line(&cc->server, &cc->server.self, stats, sizeof(stats) - 1);
}

static void
client_on_gone(struct conn *c, void *ctx)
{
	struct cconn *cc = ctx;

	/* What serve sends is dropped now, but its end is still read (not held by stdout). */
	read_serve(cc, true);
	if (!cc->ending) {
		cc->out_gone = true;
	}
	cc->cut_failed = c->out_cut && !cc->signalled;
	client_on_eof(c, ctx);
}

/*
 * What is queued for stdout and will not be written, said on stderr after what (its bytes,
 * messages and ids), as wrap says it.
 */
static void
say_unsent(struct conn *c, const char *what)
{
	struct conn_ids u;
	bool cut = false;
	size_t lines;

	memset(&u, 0, sizeof(u));
	lines = conn_unsent(c, conn_ids_add, &u, &cut);
	diag_warn("%s its last %zu bytes (%zu message%s%s%s%s%s): exiting without them", what,
		  conn_queued(c), lines, lines == 1 ? "" : "s", cut ? ", one of them cut" : "",
		  u.n > 0 ? ", ids " : "", u.n > 0 && u.said.buf != NULL ? u.said.buf : "",
		  u.n > CONN_IDS_KEPT ? ", ..." : "");
	conn_ids_release(&u);
}

/*
 * Writing to stdout failed with lines for it left (the client closed it: EPIPE; or
 * ENOSPC, EIO, ...): lost, and said so, with the cause.
 */
static void
client_on_output_lost(struct conn *c, void *ctx)
{
	struct cconn *cc = ctx;
	char what[256];
	char lost[160];

	/* After a signal (while the end it asked for is waited for, or at its last write in
	 * write_what_fits()), after that signal, and with its status, as wrap says it. */
	cc->sig_lost = cc->cut_sig != 0;
	(void)snprintf(what, sizeof(what), "%s%s%s before",
		       cc->cut_sig != 0 ? strsignal(cc->cut_sig) : "", cc->cut_sig != 0 ? ": " : "",
		       conn_stdout_lost(c, lost, sizeof(lost)));
	say_unsent(c, what);
}

static void
client_on_writable(struct conn *c, struct conn_source *src, void *ctx)
{
	struct cconn *cc = ctx;

	(void)c;
	(void)src;
	read_serve(cc, true);
}

static const struct conn_hooks client_hooks = {
	.on_eof = client_on_eof,
	.on_gone = client_on_gone,
	.on_output_lost = client_on_output_lost,
	.on_source_writable = client_on_writable,
	.on_drained = on_drained,
};

/* ---- server (socket) to client (stdout) ---- */

/* Whether the message cc->scan holds has the id `id` (JSON text). */
static bool
has_id(const struct cconn *cc, const char *id)
{
	const struct jsonrpc_item *it = &cc->scan.one;

	return it->has_id && it->id.len == strlen(id) &&
	       memcmp(jsonrpc_str(&cc->scan, it->id), id, it->id.len) == 0;
}

/*
 * The answer to connect's own end-of-run request (its id): the session's end, as its
 * "ended" event says it (the result), or the end refused (an error: the session is
 * another connection's, say).  Not the client's: not written out.
 */
static bool
is_end_answer(struct cconn *cc, const struct envelope *env)
{
	enum jsonrpc_kind kind = cc->scan.kind; /* env's message (server_on_line()) */

	if (kind != JSONRPC_RESPONSE && kind != JSONRPC_ERROR) {
		return false;
	}
	bool ours = has_id(cc, END_ID);
	/*
	 * A serve older than this connect refuses a session of another connection without
	 * the request's id: then the end cannot be told from the rest, but it is refused
	 * just the same, and must not be waited for.
	 */
	bool refused_unnamed =
		!ours && kind == JSONRPC_ERROR && has_id(cc, "null") &&
		memmem(env->message, env->message_len, "belongs to another connection", 29) != NULL;

	if (cc->done) {
		return ours; /* the session ended first (its "ended" event): not the client's */
	}
	if (!ours && !refused_unnamed) {
		return false;
	}
	if (kind == JSONRPC_RESPONSE) {
		cc->exit_code = ended_status(env->message, env->message_len, true, cc->startable);
		diag_info("session %s ended: %.*s", cc->id, (int)env->message_len, env->message);
	} else {
		cc->exit_code = 1;
		cc->failed = true;
		diag_error("the session's end was refused: %.*s",
			   (int)SYS_MIN(env->message_len, 300), env->message);
	}
	cc->done = cc->ended = true;
	conn_read(&cc->client, false);
	maybe_exit(cc);
	return true;
}

/*
 * The answer to connect's mcpmux/stats: the end is waited for as long again as serve's
 * teardowns take at most.  A serve that does not say (an older one): the 60 s alone.
 */
static bool
is_stats_answer(struct cconn *cc, const struct envelope *env)
{
	enum jsonrpc_kind kind = cc->scan.kind; /* env's message (server_on_line()) */
	static const char *const path[] = { "result", "teardown_max_s" };
	struct jsonspan v;
	char num[32], *end;

	if ((kind != JSONRPC_RESPONSE && kind != JSONRPC_ERROR) || !has_id(cc, STATS_ID)) {
		return false;
	}
	if (kind == JSONRPC_ERROR || !jsonspan_find(env->message, env->message_len, path, 2, &v) ||
	    v.len >= sizeof(num)) {
		return true;
	}
	memcpy(num, v.p, v.len);
	num[v.len] = '\0';
	double s = strtod(num, &end);

	if (end == num + v.len && s > 0 && s < 1e7) {
		cc->end_by += s;
		cc->end_limit += s;
	}
	return true;
}

/*
 * A message of serve's for the client that there is no memory to queue.  An answer (a
 * batch of them): its requests get errors in its place, not a wait for ever.
 */
static void
lost_message(struct cconn *cc, const struct envelope *env)
{
	struct iovec iov[4];

	if (cc->client.out_dead) {
		return; /* cut for want of memory: said (conn_send()), and nothing goes now */
	}
	if (conn_send_lost_answers(&cc->client, &cc->client.self, iov, 0, "\n", env->message,
				   env->message_len)) {
		diag_error("out of memory: a server's answer for the client was lost (an error "
			   "went in its place)");
	} else {
		diag_error("out of memory: a message for the client was lost");
	}
}

/*
 * A batch of the server's passed on whose requests could not all be kept in flight (no
 * memory), once they are kept as far as memory allows: stderr says how many were not.
 */
static void
batch_unkept(struct cconn *cc)
{
	size_t unkept = session_ids_asked(&cc->srv_ids, &cc->scan);

	if (unkept > 0) {
		diag_error(
			"out of memory: %zu request%s of a batch of the server's could not be "
			"kept in flight: an answer of the client's over --max-message to %s gets "
			"the server no error",
			unkept, unkept == 1 ? "" : "s", unkept == 1 ? "it" : "one");
	}
}

/*
 * A request of the server's (alone) that there is no memory to keep in flight: not passed
 * on, for an answer to it over the bound could not get the server its error; the server
 * gets a -32000 error in its place at once.  False for a batch, which is passed on.
 */
static bool
unkept_request(struct cconn *cc)
{
	const struct jsonrpc_item *it = &cc->scan.one;

	if (cc->scan.kind != JSONRPC_REQUEST) {
		return false; /* (kept as far as memory allows once passed on: batch_unkept()) */
	}
	diag_error("out of memory: a request of the server's could not be kept in flight: not "
		   "passed on, the server gets an error in its place");
	if (!cc->serve_gone) {
		sbuf_reset(&cc->tmp);
		rpcout_error(&cc->tmp, jsonrpc_str(&cc->scan, it->id), it->id.len, RPC_SERVER_ERROR,
			     "out of memory: mcpmux could not keep the request in flight");
		if (!cc->tmp.failed) {
			send_envelope(cc, cc->tmp.buf, cc->tmp.len);
		}
		sbuf_reset(&cc->tmp);
	}
	return true;
}

static void
server_on_line(void *ctx, const char *line, size_t len)
{
	struct cconn *cc = ctx;
	struct envelope env;

	if (cc->closing) {
		return; /* the status is known, and the client's lines are all written */
	}
	if (envelope_parse_line(&env, line, len, &cc->scan) != ENVELOPE_OK) {
		diag_warn("serve sent a line that is not an envelope: %.*s", (int)SYS_MIN(len, 200),
			  line);
		return;
	}
	if (env.has_message && !env.scanned) {
		/*
		 * The usual envelope's message is scanned as the line is read; another
		 * order of members, or a message that is not JSON, is scanned here: either
		 * way cc->scan holds the message from now on.
		 */
		(void)jsonrpc_scan_checked(&cc->scan, env.message, env.message_len);
	}
	if (!env.has_session && env.has_message && cc->ending && is_stats_answer(cc, &env)) {
		return;
	}
	if (!env.has_session || env.session_len != cc->id_len ||
	    memcmp(env.session, cc->id, cc->id_len) != 0) {
		if (!env.has_session) {
			diag_warn("serve: %.*s", (int)SYS_MIN(len, 300), line);
		}
		return;
	}
	if (env.has_message && cc->ending && is_end_answer(cc, &env)) {
		return;
	}
	if (env.has_message) {
		/*
		 * The server's requests are in flight until the client answers them, once
		 * the client has them: one never delivered (no memory to queue it) is not
		 * kept, while the cancellations of a lost message still hold.  One that
		 * cannot be kept (no memory) is not passed on: the server gets an error.
		 */
		size_t n_kept;
		bool kept = session_ids_ask(&cc->srv_ids, &cc->scan, &n_kept);

		if (!kept && unkept_request(cc)) {
			return;
		}
		if (conn_send_line(&cc->client, &cc->client.self, env.message, env.message_len) ==
			    -1 &&
		    errno == ENOMEM) {
			/* (only those it kept: another in flight with the same id stays) */
			session_ids_unask(&cc->srv_ids, &cc->scan, n_kept);
			session_ids_cancelled(&cc->srv_ids, &cc->scan);
			lost_message(cc, &env);
		} else if (kept) {
			session_ids_cancelled(&cc->srv_ids, &cc->scan);
		} else {
			/* (a batch: passed on, its requests kept as far as they can be) */
			batch_unkept(cc);
		}
		if (!cc->client.out_dead && conn_source_full(&cc->client.self)) {
			read_serve(cc, false); /* stdout is slow: stop reading the socket */
		}
	} else if (env.has_event && env.event_len == 5 && memcmp(env.event, "ended", 5) == 0) {
		/* The end of an earlier run, that ended while no connection held it. */
		const char *v;
		size_t vlen;
		bool unseen = jsonspan_member(line, len, "unseen", &v, &vlen) && vlen == 4 &&
			      memcmp(v, "true", 4) == 0;

		if (unseen && cc->first_init) {
			/*
			 * The end of an earlier kept run of this ID, that nobody saw, told before
			 * the new run that the client's initialize starts: that one goes on.
			 */
			diag_warn("session %s: an earlier run of it ended while no connection held "
				  "it; the new one goes on: %.*s",
				  cc->id, (int)SYS_MIN(len, 300), line);
			return;
		}
		cc->exit_code = ended_status(line, len, false, true);
		if (unseen) {
			/* Before this connection came: the client's server is gone, say why. */
			diag_warn("session %s had ended while no connection held it: %.*s", cc->id,
				  (int)SYS_MIN(len, 300), line);
		} else {
			diag_info("session %s ended: %.*s", cc->id, (int)len, line);
		}
		cc->done = cc->ended = true;
		conn_read(&cc->client, false);
		maybe_exit(cc);
	} else if (!env.has_event) {
		const char *v;
		size_t vlen;

		/*
		 * serve's own error in the session, for no request of the client's (a server
		 * that could not be started for a notification): said, not lost.
		 */
		if (jsonspan_member(line, len, "error", &v, &vlen)) {
			diag_error("serve: session %s: %.*s", cc->id, (int)SYS_MIN(vlen, 300), v);
		}
	}
}

static void
server_on_big_begin(void *ctx, const char *head, size_t len)
{
	struct cconn *cc = ctx;

	envelope_bigscan_init(&cc->big);
	envelope_bigscan_feed(&cc->big, head, len);
}

static void
server_on_big_more(void *ctx, const char *more, size_t len)
{
	struct cconn *cc = ctx;

	envelope_bigscan_feed(&cc->big, more, len);
}

/*
 * A line of serve's over --max-message and its envelope, or within them one that the
 * framer had no memory to hold (framer_feed()): dropped.  An answer for the client, in its
 * session, gets a -32000 error in its place: its request does not wait for ever.
 */
static void
server_on_big_end(void *ctx, size_t total)
{
	struct cconn *cc = ctx;
	size_t sid_len = 0, id_len = 0;
	const char *sid = envelope_bigscan_session(&cc->big, &sid_len);
	const char *id = envelope_bigscan_id(&cc->big, &id_len);
	char text[160];

	if (cc->closing) {
		return; /* (server_on_line()) */
	}
	if (rpcout_dropped(text, sizeof(text), "serve's", total, cc->max_message,
			   ENVELOPE_OWN_MAX)) {
		diag_error("%s; dropped", text);
	} else {
		diag_error("serve sent a line of %zu bytes, over --max-message %zu and its "
			   "envelope: dropped (give connect serve's --max-message)",
			   total, cc->max_message);
	}
	/* (connect's stats request has no session: its answer has none either.) */
	if (id == NULL || !envelope_bigscan_is_answer(&cc->big) || sid == NULL ||
	    sid_len != cc->id_len || memcmp(sid, cc->id, sid_len) != 0 ||
	    (id_len == strlen(END_ID) && memcmp(id, END_ID, id_len) == 0)) {
		return; /* the client waits for none of it */
	}
	sbuf_reset(&cc->tmp);
	rpcout_error(&cc->tmp, id, id_len, RPC_SERVER_ERROR, text);
	if (cc->tmp.failed ||
	    (conn_send_error(&cc->client, &cc->client.self, cc->tmp.buf, cc->tmp.len) == -1 &&
	     errno == ENOMEM)) {
		diag_error("out of memory: the error in place of serve's message for the client "
			   "was lost");
	}
}

static const struct framer_sink server_sink = {
	.line = server_on_line,
	.big_begin = server_on_big_begin,
	.big_more = server_on_big_more,
	.big_end = server_on_big_end,
};

/*
 * Serve is gone.  Nothing can be sent any more: stdin is not read.  What serve sent
 * before it closed is still read, to the socket's EOF, and written to stdout (maybe_exit()).
 * The status is the session's if its end came; else 1, unless connect was done (--keep,
 * or nothing sent) and had sent everything.
 */
static void
server_on_eof(struct conn *c, void *ctx)
{
	struct cconn *cc = ctx;

	(void)c;
	cc->serve_gone = cc->serve_eof = true;
	conn_read(&cc->client, false);
	if (!cc->ended && !cc->done) {
		diag_error("the serve socket closed before the session ended");
		cc->exit_code = 1;
		cc->failed = true;
	} else if (!cc->ended && conn_queued(&cc->server) > 0) {
		diag_error("the serve socket closed before connect's last lines were sent");
		cc->exit_code = 1;
		cc->failed = true;
	}
	diag_info("the serve socket closed; %zu bytes for stdout are left to write",
		  cc->client.out_dead ? 0 : conn_queued(&cc->client));
	cc->done = true;
	maybe_exit(cc);
}

/* Writing to serve failed: what it sent before is still read, up to its EOF. */
static void
server_on_gone(struct conn *c, void *ctx)
{
	struct cconn *cc = ctx;

	(void)c;
	cc->serve_gone = true;
	conn_read(&cc->client, false);
}

static void
server_on_writable(struct conn *c, struct conn_source *src, void *ctx)
{
	struct cconn *cc = ctx;

	(void)c;
	(void)src;
	if (!cc->ending && !cc->done && !cc->serve_gone) {
		conn_read(&cc->client, true); /* (not after the session's end) */
	}
}

static const struct conn_hooks server_hooks = {
	.on_eof = server_on_eof,
	.on_gone = server_on_gone,
	.on_source_writable = server_on_writable,
	.on_drained = on_drained,
};

/*
 * Exiting at a signal: the whole lines stdout takes now, and what is left said, as wrap
 * says it.  (Not from the first signal on: connect still waits for its stdout to drain
 * then, and a line longer than the pipe would never be begun.)
 */
static void
write_what_fits(struct cconn *cc, int signum)
{
	char what[128];

	if (cc->client.out_dead || conn_queued(&cc->client) == 0) {
		return;
	}
	conn_whole_lines(&cc->client);
	cc->cut_sig = signum; /* (a write that fails now is said after it) */
	conn_write_now(&cc->client);
	if (cc->client.out_dead || conn_queued(&cc->client) == 0) {
		return;
	}
	(void)snprintf(what, sizeof(what), "%s: the client did not read", strsignal(signum));
	say_unsent(&cc->client, what);
}

static void
connect_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct cconn *cc = w->data;

	(void)revents;
	if (!cc->ending) {
		cc->signalled = true;
		cc->cut_sig = w->signum; /* (a stdout lost from now on is said after it) */
		conn_read(&cc->client, false);
		client_on_eof(&cc->client, cc);
		return;
	}
	/* A second signal, or one after stdin's EOF (the TypeScript SDK's close() sends
	 * SIGTERM 2 s after it) or after stdout went: no more waiting for the session's end. */
	if (cc->signalled || cc->out_gone) {
		diag_warn("%s %s: exiting without waiting for the session's end",
			  strsignal(w->signum),
			  cc->signalled ? "again" : "after the end of stdout");
	} else {
		/* The client's own close: as quiet as wrap, or the server run directly (-v says
		 * it); what its stdout does not take is said all the same (write_what_fits()),
		 * and the answers still to come by serve. */
		diag_info(
			"%s after the end of stdin: exiting without waiting for the session's end",
			strsignal(w->signum));
	}
	cc->sig_lost = false; /* (this signal's status, also after a loss at the first) */
	write_what_fits(cc, w->signum);
	cc->exit_code = 128 + w->signum;
	ev_break(loop, EVBREAK_ALL);
}

int
cmd_connect(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "session", required_argument, NULL, 's' },
		{ "keep", no_argument, NULL, 'k' },
		{ "end-method", required_argument, NULL, 'e' },
		{ "max-message", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct cconn cc = { .end_method = "mcpmux/endRun",
			    .fd = -1,
			    .max_message = FRAMER_MAX_DEFAULT };
	const char *id = NULL;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:hqv", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			id = optarg;
			break;
		case 'k':
			cc.keep = true;
			break;
		case 'e':
			cc.end_method = optarg;
			break;
		case 'm':
			if (cli_parse_size("--max-message", optarg, 64, &cc.max_message) == -1) {
				return EXIT_USAGE;
			}
			break;
		case 'h':
			connect_usage();
			return 0;
		case 'q':
			diag_set_level(DIAG_QUIET);
			break;
		case 'v':
			diag_set_level(DIAG_VERBOSE);
			break;
		default:
			(void)cli_option_error(c, argv, longopts, "mcpmux connect");
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		diag_error("connect needs one socket path (usage: mcpmux connect [--session ID] "
			   "[--keep] PATH)");
		return EXIT_USAGE;
	}
	if (id != NULL && !session_id_valid(id, strlen(id))) {
		diag_error("invalid session ID '%s' (1 to 128 characters of A-Z a-z 0-9 . _ : @ -)",
			   id);
		return EXIT_USAGE;
	}
	if (cc.end_method[0] == '\0' || strlen(cc.end_method) > 255) {
		diag_error("invalid --end-method '%s' (1 to 255 bytes)", cc.end_method);
		return EXIT_USAGE;
	}
	if (id == NULL) {
		char fresh[37];

		session_new_id(fresh);
		(void)snprintf(cc.id, sizeof(cc.id), "%s", fresh);
	} else {
		(void)snprintf(cc.id, sizeof(cc.id), "%s", id);
	}
	cc.id_len = strlen(cc.id);
	cc.fd = listener_connect_said(argv[optind]);
	if (cc.fd == -1) {
		return 1;
	}
	long peer;

	if (!listener_peer_is_us(cc.fd, &peer)) {
		diag_error("'%s' is served by uid %ld, not by this user (uid %d): not connecting "
			   "(what the session says would go to another user)",
			   argv[optind], peer, (int)getuid());
		sys_close(&cc.fd);
		return 1;
	}

	struct ev_loop *loop = EV_DEFAULT;
	ev_signal term_w, int_w, hup_w;

	cc.loop = loop;
	cc.in_fd = sys_stdio_open(STDIN_FILENO, &cc.in_shared);
	cc.out_fd = sys_stdio_open(STDOUT_FILENO, &cc.out_shared);
	if (cc.in_fd == -1 || cc.out_fd == -1) {
		diag_error_errno("cannot use stdin and stdout");
		sys_stdio_close(cc.in_fd, STDIN_FILENO, cc.in_shared);
		sys_close(&cc.fd);
		return 1;
	}
	/* A stderr its host does not read never blocks the loop (diagnostics are dropped). */
	(void)errout_start(loop);
	jsonrpc_init(&cc.scan);
	cc.scan.params_method = cc.end_method; /* no params are read but that method's */
	conn_init(&cc.client, loop, cc.in_fd, cc.out_fd, cc.max_message, WBUF_HIGH_DEF,
		  &client_sink, &client_hooks, &cc);
	conn_init(&cc.server, loop, cc.fd, cc.fd, cc.max_message + ENVELOPE_OWN_MAX, WBUF_HIGH_DEF,
		  &server_sink, &server_hooks, &cc);
	conn_no_output_hold(&cc.server);
	if (cc.keep) {
		sbuf_addf(&cc.tmp, "{\"session\":\"%s\",\"keep\":true}", cc.id);
		(void)conn_send_line(&cc.server, &cc.server.self, cc.tmp.buf, cc.tmp.len);
	}
	ev_signal_init(&term_w, connect_on_signal, SIGTERM);
	ev_signal_init(&int_w, connect_on_signal, SIGINT);
	ev_signal_init(&hup_w, connect_on_signal, SIGHUP);
	term_w.data = int_w.data = hup_w.data = &cc;
	/* Not one the caller ignored (nohup's SIGHUP): connect outlives it, as a server
	 * run directly in its place would. */
	if (!sys_signal_ignored_at_start(SIGTERM)) {
		ev_signal_start(loop, &term_w);
	}
	if (!sys_signal_ignored_at_start(SIGINT)) {
		ev_signal_start(loop, &int_w);
	}
	if (!sys_signal_ignored_at_start(SIGHUP)) {
		ev_signal_start(loop, &hup_w);
	}
	ev_prepare_init(&cc.turn_w, connect_on_turn);
	cc.turn_w.data = &cc;
	ev_prepare_start(loop, &cc.turn_w);
	ev_unref(loop);
	ev_init(&cc.trim_w, connect_on_trim);
	cc.trim_w.repeat = .5;
	ev_init(&cc.end_w, connect_on_end_wait);
	cc.end_w.data = &cc;
	ev_timer_init(&cc.close_w, connect_on_close_wait, CONNECT_CLOSE_WAIT_S, 0.);
	cc.close_w.data = &cc;
	conn_read(&cc.client, true);
	conn_read(&cc.server, true);
	ev_run(loop, 0);

	if (ev_is_active(&cc.trim_w)) {
		ev_ref(loop);
		ev_timer_stop(loop, &cc.trim_w);
	}
	ev_timer_stop(loop, &cc.end_w);
	ev_timer_stop(loop, &cc.close_w);
	if (cc.sig_lost && !cc.failed) {
		/* Lines for the client lost after a signal: the status of that signal, as wrap
		 * exits then, not the session's (connect's own failure stays 1). */
		cc.exit_code = 128 + cc.cut_sig;
	}
	if (cc.cut_failed) {
		/* connect failed its client, whatever the server's status (after a signal,
		 * the status a signal gives all the same) */
		cc.exit_code = 1;
	}
	ev_ref(loop);
	ev_prepare_stop(loop, &cc.turn_w);
	ev_signal_stop(loop, &term_w);
	ev_signal_stop(loop, &int_w);
	ev_signal_stop(loop, &hup_w);
	conn_release(&cc.client);
	conn_release(&cc.server);
	sys_close(&cc.fd);
	sbuf_release(&cc.tmp);
	sbuf_release(&cc.big_reqs.ids);
	session_ids_free(&cc.srv_ids);
	jsonrpc_release(&cc.scan);
	errout_stop(sys_mono() + CONNECT_STDERR_GRACE_S);
	sys_stdio_close(cc.in_fd, STDIN_FILENO, cc.in_shared);
	sys_stdio_close(cc.out_fd, STDOUT_FILENO, cc.out_shared);
	return cc.exit_code;
}
