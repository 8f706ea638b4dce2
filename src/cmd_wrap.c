/*
 * cmd_wrap: the drop-in command.  The client's stdio on one side, one server run at a
 * time on the other; the end-of-run message ends a run and the next message starts one.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/conn.h"
#include "mcpmux/diag.h"
#include "mcpmux/errout.h"
#include "mcpmux/framer.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/pool.h"
#include "mcpmux/proctree.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/status.h"
#include "mcpmux/survey.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"
#include "mcpmux/wbuf.h"

struct wrap;

struct wrap_run {
	struct wrap *w;
	struct session *s;
	struct conn_source *out; /* its lines to the client */
	struct wrap_run *next;
};

struct wrap {
	struct ev_loop *loop;
	const struct mcpmux_options *opt;
	struct session_config scfg;
	struct conn client;
	ev_signal term_w, int_w, hup_w;
	ev_signal tstp_w;
	ev_timer drain_w;
	size_t drain_left; /* what the client had to read when drain_w was armed */
	struct jsonrpc_scanner scan;
	struct jsonrpc_idscan big_id;
	/*
	 * A batch over the bound, as it passes: its requests, to be answered by id; how many
	 * answers and notifications; its bytes so far; whether its end was read
	 * (wrap_on_big_end()).
	 */
	bool big_batch;
	struct rpcout_bigreqs big_reqs;
	size_t big_answers;
	size_t big_notes;
	size_t big_fed;
	bool big_ended;
	bool big_lead; /* nothing but whitespace read of it yet */
	struct sbuf tmp;
	struct sbuf kept;      /* a batch less its answers, for a new run */
	struct session *cur;   /* the run that new messages go to, NULL after an end */
	struct wrap_run *runs; /* every run not yet done */
	size_t n_live;	       /* runs not yet done */
	bool shutting_down;    /* no new runs: exit once every run is done */
	int drain_cut;	       /* a signal came: the client's last bytes are not waited for */
	bool cut_failed;       /* a line for the client was cut before any signal: exit 1 */
	bool cut_lost;	       /* messages were lost to a client gone after that signal */
	int exit_code;
	uint64_t exit_seq; /* the run whose status exit_code is */
	int in_fd, out_fd; /* our own descriptions of stdin and stdout (sys_stdio_open) */
	bool in_shared, out_shared;
	/*
	 * Client lines that wait for an ended run's last replies (the -32000 errors of its
	 * requests in flight, its end-of-run result): a new run's first message must not
	 * overtake them.  Client input is held meanwhile, so this holds at most what one
	 * read brought, and the error for a line of it over the bound (hold()).  Each entry
	 * is a tag byte (HELD_LINE, HELD_OWN: mcpmux's answer to that line), the line, "\n";
	 * HELD_OWN_BATCH (an answer to a batch over the bound) has a NUL before its line, and
	 * before that, for the batch's array of errors, the one error with id null that
	 * answers the batch when the array cannot be queued (struct held_entry).
	 */
	struct sbuf held;
	size_t held_off;
	bool eof_held; /* the client's EOF came behind held lines: acted on after them */
	/*
	 * A held line is being handled: written before any run now current started, so its
	 * answers are an ended run's, even once an earlier held line started a new run.
	 */
	bool replaying;
	/*
	 * The requests in flight of servers gone whose runs are over (bounded as a run's
	 * are): an answer to one, not to one of the current run's, is dropped however late.
	 */
	struct session_ids ended_asked;
	/* The client's handshake, for a run whose first message is not initialize. */
	struct handshake hs;
	struct pool *pool; /* --max-servers */
};

static void wrap_on_line(void *ctx, const char *line, size_t len);
static void wrap_on_big_begin(void *ctx, const char *head, size_t len);
static void wrap_on_big_more(void *ctx, const char *more, size_t len);
static void wrap_on_big_end(void *ctx, size_t total);
static void wrap_deliver(struct session *s, const char *line, size_t len, void *owner);
static void wrap_on_exit(struct session *s, void *owner);
static void wrap_on_idle(struct session *s, void *owner);
static void wrap_on_done(struct session *s, void *owner);
static void shutdown_all(struct wrap *w, const char *why, const char *reason);
static void maybe_finish(struct wrap *w);
static void wrap_on_input_full(struct session *s, void *owner, bool full);
static void wrap_on_stall(struct session *s, void *owner);
static void handle_line(struct wrap *w, const char *line, size_t len);
static void replay_held(struct wrap *w);

enum { HELD_LINE = 'c', HELD_OWN = 'o', HELD_OWN_BATCH = 'b' };

/* An entry of struct wrap's held: head, for HELD_OWN_BATCH, the error in the array's place. */
struct held_entry {
	char tag;
	const char *head;
	size_t head_len;
	const char *line;
	size_t len;
};

static const struct framer_sink client_sink = {
	.line = wrap_on_line,
	.big_begin = wrap_on_big_begin,
	.big_more = wrap_on_big_more,
	.big_end = wrap_on_big_end,
};

static const struct session_hooks wrap_hooks = {
	.deliver = wrap_deliver,
	.on_exit = wrap_on_exit,
	.on_idle = wrap_on_idle,
	.on_input_full = wrap_on_input_full,
	.on_stall = wrap_on_stall,
	.on_done = wrap_on_done,
};

/* ---- to the client ---- */

static void
wrap_on_eof(struct conn *c, void *ctx)
{
	struct wrap *w = ctx;

	(void)c;
	if (w->held_off < w->held.len && !w->shutting_down) {
		/* Its last line (one without a "\n", framer_finish()) waits for a new run. */
		w->eof_held = true;
		return;
	}
	shutdown_all(w, "the client closed stdin", "client-eof");
}

static void
wrap_on_gone(struct conn *c, void *ctx)
{
	struct wrap *w = ctx;

	/* Nobody reads what the servers say: no point in pausing them. */
	for (struct wrap_run *r = w->runs; r != NULL; r = r->next) {
		session_pause(r->s, false);
	}
	if (c->out_cut) {
		w->cut_failed = w->drain_cut == 0;
		w->cut_lost = w->cut_lost || w->drain_cut != 0; /* after a signal: its status */
		/* mcpmux broke the client's output, not the client: a failure of its own. */
		shutdown_all(w, "the client's output was cut (out of memory)", "output-cut");
		return;
	}
	char why[160];

	shutdown_all(w, conn_stdout_lost(c, why, sizeof(why)), "client-gone");
}

static void
wrap_on_source_writable(struct conn *c, struct conn_source *src, void *ctx)
{
	struct wrap_run *r = src->owner;

	(void)c;
	(void)ctx;
	if (r != NULL) { /* NULL: mcpmux's own answers (conn.self) */
		session_pause(r->s, false);
	}
}

static void
wrap_on_drained(struct conn *c, void *ctx)
{
	(void)c;
	maybe_finish(ctx);
}

static void wrap_on_output_lost(struct conn *c, void *ctx);

static const struct conn_hooks client_hooks = {
	.on_eof = wrap_on_eof,
	.on_gone = wrap_on_gone,
	.on_output_lost = wrap_on_output_lost,
	.on_source_writable = wrap_on_source_writable,
	.on_drained = wrap_on_drained,
};

/* The current run's queue to the client, or NULL. */
static struct conn_source *
cur_out(const struct wrap *w)
{
	return w->cur != NULL ? ((struct wrap_run *)w->cur->owner)->out : NULL;
}

/* The current run's ID and server pid, for the traffic log. */
static const char *
cur_id(const struct wrap *w, pid_t *pid)
{
	*pid = w->cur != NULL ? session_pid(w->cur) : 0;
	return w->cur != NULL ? w->cur->id : NULL;
}

static int send_own_text(struct wrap *w, const char *p, size_t len, bool reserve);

/*
 * mcpmux's message in w->tmp to the client (send_own_text()), w->tmp emptied (a long one, a
 * huge id or a batch's errors, given back now): 0, or -1 when there was no memory to build
 * it, write it or queue it, which the caller says.
 */
static int
send_own_tmp(struct wrap *w, bool reserve)
{
	int rc = w->tmp.failed ? -1 : send_own_text(w, w->tmp.buf, w->tmp.len, reserve);

	sbuf_reset(&w->tmp);
	return rc;
}

static int
send_own_or_fail(struct wrap *w)
{
	return send_own_tmp(w, false);
}

static void
send_own(struct wrap *w)
{
	if (send_own_or_fail(w) == -1) {
		diag_error("out of memory: a message from mcpmux was lost");
	}
}

static void
answer_error(struct wrap *w, const char *id, size_t id_len, int code, const char *text)
{
	sbuf_reset(&w->tmp);
	rpcout_error(&w->tmp, id, id_len, code, text);
	send_own(w);
}

/* The same error for each request of the line in w->scan (a batch: one array of them). */
static void
answer_each(struct wrap *w, int code, const char *text)
{
	sbuf_reset(&w->tmp);
	if (rpcout_error_each(&w->tmp, &w->scan, code, text, NULL, NULL) > 0) {
		send_own(w);
	}
}

/* A client line that mcpmux answers itself, into the traffic log. */
static void
log_in(struct wrap *w, const char *line, size_t len, bool scanned)
{
	pid_t pid;
	const char *id = cur_id(w, &pid);

	tlog_message(id, pid, TLOG_IN, scanned ? &w->scan : NULL, line, len, -1);
}

/*
 * The run over whose server asked the request that the client's answer with this id
 * answers: its session id, and its server's pid (0 once gone); NULL when not known.
 */
static const char *
ended_asker(struct wrap *w, const char *id, size_t id_len, pid_t *pid)
{
	size_t len;

	*pid = 0;
	if (session_ids_has(&w->ended_asked, id, id_len)) {
		return w->ended_asked.session[0] != '\0' ? w->ended_asked.session : NULL;
	}
	for (const struct wrap_run *r = w->runs; r != NULL; r = r->next) {
		if (r->s != w->cur && session_srv_request_id(r->s, id, id_len, &len) != NULL) {
			*pid = session_pid(r->s);
			return r->s->id;
		}
	}
	return NULL;
}

/*
 * The client's answers for runs that are over (a line, or a batch of them, scanned in scan
 * or not), dropped, before the requests they answer are done: logged under the session of
 * the run whose server asked them (ended_asker()), or with no session when that is not
 * known, or when a batch's are of several runs.
 */
static void
log_ended_run(struct wrap *w, const char *line, size_t len, const struct jsonrpc_scanner *scan)
{
	const char *sid = NULL;
	pid_t pid = 0;
	size_t n = 0;
	const struct jsonrpc_item *items = NULL;

	if (!tlog_enabled) {
		return;
	}
	if (scan != NULL) {
		items = jsonrpc_items(scan, &n);
	}
	for (size_t i = 0; i < n; i++) {
		pid_t p;
		const char *s;

		if (items[i].kind != JSONRPC_RESPONSE && items[i].kind != JSONRPC_ERROR) {
			continue;
		}
		s = ended_asker(w, jsonrpc_str(scan, items[i].id), items[i].id.len, &p);
		if (s == NULL) {
			continue;
		}
		if (sid == NULL) {
			sid = s;
			pid = p;
		} else if (strcmp(sid, s) != 0) {
			sid = NULL; /* (several runs') */
			pid = 0;
			break;
		}
	}
	tlog_message_ended_run(sid, pid, scan, line, len);
}

static void
wrap_deliver(struct session *s, const char *line, size_t len, void *owner)
{
	struct wrap_run *r = owner;
	struct wrap *w = r->w;

	if (conn_send_line(&w->client, r->out, line, len) == -1 && errno == ENOMEM &&
	    !w->client.out_dead) {
		/* An answer (a batch of them): its requests get errors in its place, not a wait
		 * for ever.  (Cut for want of memory, the output gone: said by conn_send().) */
		struct iovec iov[4];

		if (conn_send_lost_answers(&w->client, r->out, iov, 0, "\n", line, len)) {
			diag_error(
				"session %s: out of memory: a server's answer for the client was "
				"lost (an error went in its place)",
				s->id);
		} else {
			diag_error("session %s: out of memory: a message for the client was lost",
				   s->id);
		}
	}
	/* A client that is gone reads nothing more: what its queue still holds never drains. */
	if (!w->client.out_dead && conn_source_full(r->out)) {
		session_pause(s, true);
	}
}

/* ---- runs ---- */

struct undelivered {
	struct conn_ids ids;
	size_t lines, bytes;
	bool cut;
};

/* What is still queued for the client, into u (undelivered_release() it). */
static void
undelivered_take(struct wrap *w, struct undelivered *u)
{
	memset(u, 0, sizeof(*u));
	u->lines = conn_unsent(&w->client, conn_ids_add, &u->ids, &u->cut);
	u->bytes = conn_queued(&w->client);
}

static void
undelivered_release(struct undelivered *u)
{
	conn_ids_release(&u->ids);
}

/*
 * What mcpmux exits without, of what it had for the client (undelivered_take()): said on
 * stderr (the messages, their ids, the bytes) and in the traffic log (an `undelivered`
 * event).  lost: why writing it failed (conn_stdout_lost()), or NULL: the client did not
 * read it.
 */
static void
say_undelivered(struct undelivered *u, const char *why, const char *reason, const char *lost)
{
	struct sbuf f;

	memset(&f, 0, sizeof(f));
	diag_warn("%s%s%s%s %zu bytes (%zu message%s%s%s%s%s): exiting without them",
		  why != NULL ? why : "", why != NULL ? ": " : "",
		  lost != NULL ? lost : "the client did not read its last",
		  lost != NULL ? " before its last" : "", u->bytes, u->lines,
		  u->lines == 1 ? "" : "s", u->cut ? ", one of them cut" : "",
		  u->ids.n > 0 ? ", ids " : "",
		  u->ids.n > 0 && u->ids.said.buf != NULL ? u->ids.said.buf : "",
		  u->ids.n > CONN_IDS_KEPT ? ", ..." : "");
	sbuf_addf(&f, "\"reason\":\"%s\",\"messages\":%zu,\"bytes\":%zu,\"cut\":%s,\"ids\":[",
		  reason, u->lines, u->bytes, u->cut ? "true" : "false");
	if (u->ids.log.buf != NULL) {
		sbuf_add(&f, u->ids.log.buf, u->ids.log.len);
	}
	sbuf_adds(&f, "]");
	if (u->ids.n > CONN_IDS_KEPT) {
		sbuf_addf(&f, ",\"ids_more\":%zu", u->ids.n - CONN_IDS_KEPT);
	}
	if (!f.failed) {
		tlog_event(NULL, 0, "undelivered", f.buf, f.len);
	}
	sbuf_release(&f);
}

/*
 * Writing to the client failed before mcpmux wrote what it had queued for it (it closed its
 * stdout: EPIPE; or ENOSPC, EIO, ...), at the last write after a signal or at any other
 * time: lost, and said so, with the cause.
 */
static void
wrap_on_output_lost(struct conn *c, void *ctx)
{
	struct wrap *w = ctx;
	struct undelivered u;
	char lost[160];

	/* (never a line cut: that is the first write, with nothing queued) */
	undelivered_take(w, &u);
	say_undelivered(&u, w->drain_cut != 0 ? strsignal(w->drain_cut) : NULL, "client-gone",
			conn_stdout_lost(c, lost, sizeof(lost)));
	undelivered_release(&u);
	if (w->drain_cut != 0) {
		w->cut_lost = true;
	}
}

static void
maybe_finish(struct wrap *w)
{
	if (!w->shutting_down || w->n_live > 0) {
		return;
	}
	if (w->drain_cut != 0 && conn_queued(&w->client) > 0 && !w->client.out_dead) {
		/* After a signal, the whole lines the client's pipe takes now, not what waits for
		 * it to read on (conn_whole_lines() since the signal).  A client gone before it
		 * took them (EPIPE) lost them as well: wrap_on_output_lost() says so. */
		conn_write_now(&w->client);
		if (!w->client.out_dead && conn_queued(&w->client) > 0) {
			struct undelivered u;

			undelivered_take(w, &u); /* what is left unwritten, only */
			say_undelivered(&u, strsignal(w->drain_cut), "signal", NULL);
			undelivered_release(&u);
			conn_end_output(&w->client); /* said: nothing more written, or said */
			w->cut_lost = true;
		}
	}
	if (w->cut_lost) {
		/* As a direct server still writing its answers would end, of the signal (the
		 * client gone after it, at the last write or during the teardown, too). */
		w->exit_code = 128 + w->drain_cut;
		ev_break(w->loop, EVBREAK_ALL);
		return;
	}
	if (conn_queued(&w->client) == 0 || w->client.out_dead) {
		ev_break(w->loop, EVBREAK_ALL);
		return;
	}
	/* What is left goes as long as the client reads; one that reads nothing for
	 * eof-grace is given up. */
	if (!ev_is_active(&w->drain_w)) {
		w->drain_left = conn_queued(&w->client);
		ev_timer_set(&w->drain_w, w->scfg.eof_grace, 0.);
		ev_timer_start(w->loop, &w->drain_w);
	}
}

static void
wrap_on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct wrap *w = container_of(t, struct wrap, drain_w);

	(void)revents;
	if (w->client.out_dead) {
		/* What was lost is said already (a signal's last write, a client gone). */
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (conn_queued(&w->client) < w->drain_left) {
		/* It reads, if slowly: eof-grace more from now. */
		w->drain_left = conn_queued(&w->client);
		ev_timer_set(t, w->scfg.eof_grace, 0.);
		ev_timer_start(loop, t);
		return;
	}
	struct undelivered u;

	undelivered_take(w, &u);
	say_undelivered(&u, NULL, "eof-grace", NULL);
	undelivered_release(&u);
	conn_end_output(&w->client); /* said: nothing more written, or said */
	ev_break(loop, EVBREAK_ALL);
}

/* End everything and exit once it is all gone. */
static void
shutdown_all(struct wrap *w, const char *why, const char *reason)
{
	if (!w->shutting_down) {
		diag_info("%s: ending", why);
	}
	w->shutting_down = true;
	conn_read(&w->client, false);
	w->cur = NULL;
	/* Held lines stay behind the ended runs' replies: then refused (replay_held()). */
	for (struct wrap_run *r = w->runs; r != NULL; r = r->next) {
		if (!r->s->end_requested) {
			if (reason != NULL) {
				session_set_end_reason(r->s, reason);
			}
			session_end(r->s, -1, NULL, 0);
		}
	}
	maybe_finish(w);
}

static struct session *
start_run(struct wrap *w)
{
	char id[37];
	struct wrap_run *r = malloc(sizeof(*r));

	if (r == NULL) {
		return NULL;
	}
	session_new_id(id);
	r->w = w;
	/* One stream: a run's lines go after what the runs before it left to write. */
	r->out = conn_source_new(&w->client, w->opt->max_queue, "", 0);
	if (r->out != NULL) {
		r->out->owner = r;
	}
	r->s = r->out != NULL ? session_new(w->loop, id, &w->scfg, &wrap_hooks, r, &w->hs) : NULL;
	if (r->s == NULL) {
		int err = r->out != NULL ? errno : ENOMEM;

		conn_source_retire(&w->client, r->out);
		free(r);
		errno = err;
		return NULL;
	}
	session_keep_srv_gone(r->s, &w->ended_asked);
	r->next = w->runs;
	w->runs = r;
	w->n_live++;
	return r->s;
}

static void
wrap_on_exit(struct session *s, void *owner)
{
	struct wrap *w = ((struct wrap_run *)owner)->w;
	/* (a command that cannot be executed was said at its spawn: session.c) */
	if (!s->end_requested) {
		/* The server exited by itself: like tini, mcpmux goes with it. */
		shutdown_all(w, "the server exited", NULL);
	}
}

static void
wrap_on_idle(struct session *s, void *owner)
{
	/* The client's tools go with the run: said at the default verbosity (-q: not). */
	diag_warn("idle for %g s: ending the run (--idle-timeout)", s->cfg->idle_timeout);
	shutdown_all(((struct wrap_run *)owner)->w, "idle timeout", "idle-timeout");
}

static void
wrap_on_done(struct session *s, void *owner)
{
	struct wrap *w = ((struct wrap_run *)owner)->w;

	if (s->seq >= w->exit_seq) {
		w->exit_seq = s->seq;
		w->exit_code = session_exit_code(s);
	}
	for (struct wrap_run **rp = &w->runs; *rp != NULL; rp = &(*rp)->next) {
		if (*rp == owner) {
			struct wrap_run *r = *rp;

			*rp = r->next;
			/* Its last lines are still written; the conn frees the queue after. */
			conn_source_retire(&w->client, r->out);
			free(r);
			break;
		}
	}
	w->n_live--;
	if (w->cur == s) {
		w->cur = NULL;
	}
	session_free(s);
	replay_held(w);
	maybe_finish(w);
}

/* The server's input queue is full: hold the client back (it sets the pace). */
static void
wrap_on_input_full(struct session *s, void *owner, bool full)
{
	struct wrap *w = ((struct wrap_run *)owner)->w;

	(void)s;
	conn_hold(&w->client, CONN_HOLD_SERVER, full);
}

/* A stuck server's run is ending: the next message starts a fresh one. */
static void
wrap_on_stall(struct session *s, void *owner) // cppcheck-suppress constParameter ; a hook
{
	struct wrap *w = ((struct wrap_run *)owner)->w;

	if (w->cur == s) {
		w->cur = NULL;
	}
}

/*
 * Does a run that ended still owe the client replies (its requests, those held for a
 * server to come, its end result)?
 */
static bool
ended_run_owes(const struct wrap *w)
{
	for (const struct wrap_run *r = w->runs; r != NULL; r = r->next) {
		if (r->s != w->cur &&
		    (r->s->n_pending > 0 || r->s->n_replies > 0 || session_holds_requests(r->s))) {
			return true;
		}
	}
	return false;
}

/* Must a client line wait (see struct wrap's held)? */
static bool
must_hold(const struct wrap *w)
{
	return w->cur == NULL && ended_run_owes(w);
}

/* The held entry at off into e: the offset of the next. */
static size_t
held_next(const struct wrap *w, size_t off, struct held_entry *e)
{
	const char *p = w->held.buf + off;
	const char *nl = memchr(p, '\n', w->held.len - off);
	const char *nul = *p == HELD_OWN_BATCH ? memchr(p + 1, '\0', (size_t)(nl - p - 1)) : NULL;

	e->tag = *p;
	e->head = nul != NULL ? p + 1 : NULL;
	e->head_len = nul != NULL ? (size_t)(nul - p - 1) : 0;
	e->line = nul != NULL ? nul + 1 : p + 1;
	e->len = (size_t)(nl - e->line);
	return off + (size_t)(nl - p) + 1;
}

/*
 * A held answer of mcpmux's own (e: HELD_OWN, HELD_OWN_BATCH) to the client now; one the
 * client's queue has no memory for is said lost, and a batch's array of errors gets the one
 * error with id null in its place (as wrap_big_batch()), said so; that error (or a batch's
 * one error itself) waits in the memory kept for such errors when the queue has none
 * (conn_send_error()).  A batch's requests left with no answer (that error lost too, or
 * none: no memory to make it) are said left unanswered.
 */
static void
send_held_own(struct wrap *w, const struct held_entry *e)
{
	bool one_error = e->head != NULL && (e->len == 0 || e->line[0] != '[');

	if (send_own_text(w, e->line, e->len, one_error) == 0) {
		return;
	}
	if (e->head == NULL) {
		diag_error("out of memory: a message from mcpmux was lost");
		return;
	}
	if (e->len > 0 && e->line[0] == '[') {
		if (w->client.out_dead) {
			diag_error(RPCOUT_BIGREQS_CUT_TEXT); /* (nothing can follow its head) */
			return;
		}
		diag_error(RPCOUT_BIGREQS_NOT_QUEUED_TEXT);
	}
	if (one_error || e->head_len == 0 || send_own_text(w, e->head, e->head_len, true) == -1) {
		diag_error(RPCOUT_BIGREQS_UNANSWERED_TEXT);
	}
}

/*
 * The lines held for a new run, now that the ended runs' replies are out (shutting down:
 * their requests get errors, handle_line()).
 */
static void
replay_held(struct wrap *w)
{
	while (w->held_off < w->held.len && !must_hold(w)) {
		struct held_entry e;

		w->held_off = held_next(w, w->held_off, &e);
		if (e.tag != HELD_LINE) {
			send_held_own(w, &e);
		} else {
			w->replaying = true;
			handle_line(w, e.line, e.len);
			w->replaying = false;
		}
	}
	if (w->held_off >= w->held.len) {
		sbuf_release(&w->held);
		w->held_off = 0;
		conn_hold(&w->client, CONN_HOLD_ORDER, false);
		if (w->eof_held && !w->shutting_down) {
			shutdown_all(w, "the client closed stdin", "client-eof");
		}
		w->eof_held = false;
	}
}

/* ---- from the client ---- */

static void
end_of_run(struct wrap *w, const struct jsonrpc_item *it)
{
	const char *id = it->kind == JSONRPC_REQUEST ? jsonrpc_str(&w->scan, it->id) : NULL;
	double grace = w->scan.params.has_grace_ms ? w->scan.params.grace_ms : -1;

	if (w->cur == NULL) {
		/* Nothing is running. */
		if (id != NULL) {
			sbuf_reset(&w->tmp);
			sbuf_adds(&w->tmp, "{\"jsonrpc\":\"2.0\",\"id\":");
			sbuf_add(&w->tmp, id, it->id.len);
			sbuf_adds(&w->tmp,
				  ",\"result\":{\"session\":null,\"pid\":null,\"exit\":null,"
				  "\"escalation\":\"none\",\"ms\":0}}");
			send_own(w);
		}
		return;
	}
	diag_info("session %s: end of run requested", w->cur->id);
	session_log_end_request(w->cur, &w->scan);
	session_set_end_reason(w->cur, "end-of-run");
	session_end(w->cur, grace, id, id ? it->id.len : 0);
	w->cur = NULL;
}

/* Must what comes from the client now wait behind held lines or an ended run's replies? */
static bool
must_wait(const struct wrap *w)
{
	return w->held_off < w->held.len || must_hold(w);
}

/*
 * A message of mcpmux's own to the client now: 0 (the client gone too: what was lost is
 * said with the rest), or -1 when the client's queue had no memory for it, which the
 * caller says.  It is written after what the runs have queued so far
 * (conn_send_behind()): an ended run's last replies are not overtaken by the answer to
 * a line the client wrote after them, whose id may be one of theirs.  reserve: the one
 * error with id null in place of a batch's array of errors, which waits in the memory kept
 * for such errors when the queue has none (conn_send_error()), ahead of them.
 */
static int
send_own_text(struct wrap *w, const char *p, size_t len, bool reserve)
{
	if (conn_send_behind(&w->client, "", 0, cur_out(w), p, len, reserve) == -1 &&
	    errno == ENOMEM) {
		return -1;
	}
	if (tlog_enabled) {
		pid_t pid;
		const char *id = cur_id(w, &pid);

		(void)jsonrpc_scan(&w->scan, p, len);
		tlog_message(id, pid, TLOG_OUT, &w->scan, p, len, 0);
	}
	return 0;
}

/*
 * The answer of mcpmux's own that a line of the client's not handled for want of memory
 * gets in its place, into b (nothing for one that gets none): a -32000 "out of memory"
 * error for each of its requests (one array for a batch's), a parse error for a line that
 * is not JSON and an Invalid Request for one that is no message, as they would have had
 * if held.  Returns what becomes of it, as stderr says it; *requests: the errors for
 * requests (and elements that are no message) of the last.
 */
static const char *
held_line_error(struct wrap *w, struct sbuf *b, const char *line, size_t len, size_t *requests)
{
	enum jsonrpc_kind kind = jsonrpc_scan_checked(&w->scan, line, len);
	const struct jsonrpc_item *it = &w->scan.one;

	switch (kind) {
	case JSONRPC_INVALID_JSON:
		rpcout_error(b, NULL, 0, RPC_PARSE_ERROR, "Parse error: not valid JSON");
		return "it is not JSON and gets a parse error";
	case JSONRPC_INVALID_REQUEST:
		rpcout_error(b, it->has_id ? jsonrpc_str(&w->scan, it->id) : NULL, it->id.len,
			     RPC_INVALID_REQUEST, RPCOUT_NOT_A_MESSAGE);
		return "it is no JSON-RPC message and gets an Invalid Request error";
	case JSONRPC_NOTIFICATION:
		return "a notification, dropped";
	case JSONRPC_RESPONSE:
	case JSONRPC_ERROR:
		return "an answer, dropped";
	case JSONRPC_REQUEST:
	case JSONRPC_BATCH:
		break;
	}
	*requests = rpcout_error_each(b, &w->scan, RPC_SERVER_ERROR, RPCOUT_NO_MEMORY, NULL, NULL);
	if (*requests == 0) {
		return "a batch of notifications and answers, dropped";
	}
	return kind == JSONRPC_REQUEST ? "its request gets an error"
				       : "its requests get an error each (one array)";
}

/*
 * One held entry (tag, line) that the held queue had no memory for, or that was dropped
 * with it: a line of the client's is not handled, and gets held_line_error()'s answer now
 * (its requests a -32000 "out of memory" error each, as a request that cannot be held as
 * it comes in does), which waits in the memory kept for such errors when the client's
 * queue has none (conn_send_error()); an answer of mcpmux's own goes now, ahead of the
 * ended run's last replies (there is no memory to keep it behind them).  Counted in
 * lines, requests, own.
 */
static void
held_lost(struct wrap *w, const struct held_entry *e, size_t *lines, size_t *requests, size_t *own)
{
	struct sbuf b = { 0 };
	size_t n = 0;

	if (e->tag != HELD_LINE) {
		(*own)++;
		send_held_own(w, e);
		return;
	}
	(*lines)++;
	(void)held_line_error(w, &b, e->line, e->len, &n);
	if (b.failed) {
		diag_error("out of memory: a message from mcpmux was lost");
	} else if (b.len > 0) {
		*requests += n;
		/* In place of the line's answers: it waits in the memory kept for such errors
		 * when the queue has none, as the other errors in place of lost answers do. */
		if (send_own_text(w, b.buf, b.len, true) == -1) {
			diag_error(
				"out of memory: the error for a line of the client's held behind "
				"an ended run's replies was lost%s",
				n > 0 ? ": its requests are left unanswered" : "");
		}
	}
	sbuf_release(&b);
}

/* Append an entry to the held queue; false, and what was held as it was, with no memory. */
static bool
held_add(struct wrap *w, const struct held_entry *e)
{
	size_t start = w->held.len;

	sbuf_add(&w->held, &e->tag, 1);
	if (e->head != NULL) {
		sbuf_add(&w->held, e->head, e->head_len);
		sbuf_add(&w->held, "", 1);
	}
	sbuf_add(&w->held, e->line, e->len);
	sbuf_add(&w->held, "\n", 1);
	if (!w->held.failed) {
		return true;
	}
	w->held.failed = false; /* (a failed append leaves the bytes before it as they were) */
	w->held.len = start;
	if (w->held.buf != NULL) {
		w->held.buf[start] = '\0';
	}
	return false;
}

/*
 * In order behind the ended run's last replies (struct wrap's held).  A line of the
 * client's that there is no memory to hold is not handled: its requests get a -32000 "out
 * of memory" error each (one array for a batch's), held in its place, as a line that
 * cannot be held for a server being resumed does; the lines held before it stay.  With no
 * memory for that either, or for an answer of mcpmux's own, every entry held is let go
 * (held_lost()), and stderr says how many.
 */
static void
hold(struct wrap *w, const struct held_entry *e)
{
	size_t lines = 0, requests = 0, own = 0;

	conn_hold(&w->client, CONN_HOLD_ORDER, true);
	if (held_add(w, e)) {
		return;
	}
	if (e->tag == HELD_LINE) {
		struct sbuf b = { 0 };
		size_t n = 0;
		const char *what = held_line_error(w, &b, e->line, e->len, &n);
		bool held = !b.failed &&
			    (b.len == 0 ||
			     held_add(w, &(struct held_entry){
						 .tag = HELD_OWN, .line = b.buf, .len = b.len }));

		sbuf_release(&b);
		if (held) {
			diag_error("out of memory: a line of the client's could not be held behind "
				   "an ended run's replies: not handled: %s",
				   what);
			return;
		}
	}
	for (size_t off = w->held_off; off < w->held.len;) {
		struct held_entry lost;

		off = held_next(w, off, &lost);
		held_lost(w, &lost, &lines, &requests, &own);
	}
	held_lost(w, e, &lines, &requests, &own);
	diag_error("out of memory: %zu lines of the client's held behind an ended run's replies "
		   "were dropped (their %zu requests get an error each) and %zu answers of "
		   "mcpmux's own held with them go now",
		   lines, requests, own);
	sbuf_release(&w->held);
	w->held_off = 0;
}

/*
 * mcpmux's answer in w->tmp to a client line over the bound: it waits as that line would
 * have, had it been within the bound (an error written before the ended run's last
 * replies could be read as one of them, or they as its).  batch: it answers a batch over
 * the bound; fallback: for its array of errors, the one error with id null that answers
 * it if the array cannot be queued when it goes (send_held_own()), or NULL: a batch's
 * message with none is that one error itself, which waits in the memory kept for such
 * errors when the queue has none (send_own_tmp()).  0, or -1 as send_own_or_fail().
 */
static int
send_own_in_order(struct wrap *w, bool batch, const struct sbuf *fallback)
{
	if (!w->tmp.failed && must_wait(w)) {
		bool fb = fallback != NULL && !fallback->failed && fallback->len > 0;

		hold(w, &(struct held_entry){ .tag = batch ? HELD_OWN_BATCH : HELD_OWN,
					      .head = fb      ? fallback->buf
						      : batch ? ""
							      : NULL,
					      .head_len = fb ? fallback->len : 0,
					      .line = w->tmp.buf,
					      .len = w->tmp.len });
		sbuf_reset(&w->tmp);
		return 0;
	}
	return send_own_tmp(w, batch && fallback == NULL);
}

static void
wrap_on_line(void *ctx, const char *line, size_t len)
{
	struct wrap *w = ctx;

	if (must_wait(w)) {
		/* All lines wait, whatever they are. */
		hold(w, &(struct held_entry){ .tag = HELD_LINE, .line = line, .len = len });
		return;
	}
	handle_line(w, line, len);
}

/*
 * Does the client's answer with this id answer a request of a server whose run is over
 * (one still ending, or gone: w->ended_asked), and none of the current run's?  However the
 * client's writes came, it is that run's: the current run's server never asked it.
 */
static bool
ended_run_answer(void *ctx, const char *id, size_t id_len)
{
	struct wrap *w = ctx;
	size_t len;

	if (w->cur == NULL || session_srv_request_id(w->cur, id, id_len, &len) != NULL) {
		return false;
	}
	if (session_ids_has(&w->ended_asked, id, id_len)) {
		return true;
	}
	for (const struct wrap_run *r = w->runs; r != NULL; r = r->next) {
		if (r->s != w->cur && session_srv_request_id(r->s, id, id_len, &len) != NULL) {
			return true;
		}
	}
	return false;
}

/* Which answers of the client's line in w->scan go on (to the current run's server). */
static bool
answer_goes_on(void *ctx, const char *id, size_t id_len)
{
	return !ended_run_answer(ctx, id, id_len);
}

/*
 * The client's answers in a line (scanned in sc), dropped, are for runs that are over:
 * the requests they answer are done, those of the gone server's (w->ended_asked) or,
 * failing that, of a server whose run is over but which still runs (when it exits, it is
 * gone with none of them in flight).
 */
static void
ended_run_answered(struct wrap *w, const struct jsonrpc_scanner *sc)
{
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(sc, &n);

	for (size_t i = 0; i < n; i++) {
		const char *id = jsonrpc_str(sc, items[i].id);
		size_t id_len = items[i].id.len;

		if (items[i].kind != JSONRPC_RESPONSE && items[i].kind != JSONRPC_ERROR) {
			continue;
		}
		if (session_ids_has(&w->ended_asked, id, id_len)) {
			session_ids_remove(&w->ended_asked, id, id_len);
			continue;
		}
		for (const struct wrap_run *r = w->runs; r != NULL; r = r->next) {
			if (r->s != w->cur && session_srv_answered(r->s, id, id_len)) {
				break;
			}
		}
	}
}

/*
 * The answers taken out of a batch of the client's and dropped (a batch of them, or
 * empty), once the rest of the batch was made: their requests are done, and they go into
 * the traffic log as one alone does (the rest is the session's to log, sent); gone
 * released.
 */
static void
drop_gone(struct wrap *w, struct sbuf *gone)
{
	if (gone->len > 0) {
		struct jsonrpc_scanner gs = { 0 };
		bool scanned = jsonrpc_scan(&gs, gone->buf, gone->len) == JSONRPC_BATCH;

		log_ended_run(w, gone->buf, gone->len, scanned ? &gs : NULL);
		if (scanned) {
			ended_run_answered(w, &gs);
		} else {
			diag_error("out of memory: the requests that a batch's dropped answers "
				   "answer are still kept in flight");
		}
		jsonrpc_release(&gs);
	}
	sbuf_release(gone);
}

/*
 * A batch of the client's that could not be made again without its answers for runs that
 * are over (out of memory): refused as it came, each of its requests answered.
 */
static void
refuse_unstripped(struct wrap *w, struct sbuf *gone, const char *line, size_t len)
{
	sbuf_reset(&w->kept);
	sbuf_release(gone);
	(void)jsonrpc_scan(&w->scan, line, len); /* the batch as it came */
	diag_error("out of memory: a batch of the client's was refused");
	log_in(w, line, len, true);
	answer_each(w, RPC_SERVER_ERROR, RPCOUT_NO_MEMORY);
}

/*
 * The client's answer alone (scanned in sc) for a run that is over is dropped: stderr says
 * so by its id, as it says one over --max-message (rpcout_big_id()).
 */
static void
warn_ended_run_answer(const struct jsonrpc_scanner *sc)
{
	struct rpcout_big m = { .answer = true };

	if (sc->one.has_id) {
		m.id = jsonrpc_str(sc, sc->one.id);
		m.id_len = sc->one.id.len;
	}
	diag_warn("the client's answer %s is for a server whose run is over: dropped",
		  RPCOUT_BIG_ARGS_ID(&m));
}

/* Does the line in w->scan hold an answer of the client's for a run that is over? */
static bool
holds_ended_run_answer(struct wrap *w)
{
	size_t n;
	const struct jsonrpc_item *items;

	if (w->cur == NULL || (w->ended_asked.n == 0 && w->runs != NULL && w->runs->next == NULL)) {
		return false; /* (most of the time: one run, none gone with requests in flight) */
	}
	items = jsonrpc_items(&w->scan, &n);
	for (size_t i = 0; i < n; i++) {
		if ((items[i].kind == JSONRPC_RESPONSE || items[i].kind == JSONRPC_ERROR) &&
		    ended_run_answer(w, jsonrpc_str(&w->scan, items[i].id), items[i].id.len)) {
			return true;
		}
	}
	return false;
}

/*
 * An answer of the client's (alone, or a batch's) for a run that is over, or a batch of
 * them with other messages, handled: the answers dropped (a warning), the rest of the
 * batch, and its answers for the current run, passed on.  False when the line holds none.
 */
static bool
drop_ended_run_answers(struct wrap *w, const char *line, size_t len)
{
	struct sbuf gone = { 0 };
	size_t dropped = 0;

	if (!holds_ended_run_answer(w)) {
		return false;
	}
	if (w->scan.kind != JSONRPC_BATCH) {
		log_ended_run(w, line, len, &w->scan);
		ended_run_answered(w, &w->scan); /* (it is answered) */
		warn_ended_run_answer(&w->scan);
		return true;
	}
	if (!jsonrpc_drop_answers(&w->scan, line, len, answer_goes_on, w, &w->kept, &w->scan, &gone,
				  &dropped)) {
		refuse_unstripped(w, &gone, line, len);
		return true;
	}
	drop_gone(w, &gone);
	diag_warn("%zu answers in a batch for a server whose run is over: dropped (its other "
		  "messages are kept)",
		  dropped);
	if (w->kept.len > 0) {
		/* One batch, in the client's order: its answers for the current run too. */
		session_from_client(w->cur, w->kept.buf, w->kept.len, &w->scan);
	}
	sbuf_reset(&w->kept);
	return true;
}

static void
handle_line(struct wrap *w, const char *line, size_t len)
{
	enum jsonrpc_kind kind = jsonrpc_scan_line(&w->scan, line, len);
	const struct jsonrpc_item *it = &w->scan.one;

	if (kind == JSONRPC_INVALID_JSON) {
		log_in(w, line, len, false);
		answer_error(w, NULL, 0, RPC_PARSE_ERROR, "Parse error: not valid JSON");
		return;
	}
	if (kind == JSONRPC_INVALID_REQUEST) {
		log_in(w, line, len, true);
		answer_error(w, it->has_id ? jsonrpc_str(&w->scan, it->id) : NULL, it->id.len,
			     RPC_INVALID_REQUEST, RPCOUT_NOT_A_MESSAGE);
		return;
	}
	if ((kind == JSONRPC_REQUEST || kind == JSONRPC_NOTIFICATION) &&
	    jsonrpc_method_is(&w->scan, it, w->opt->end_method)) {
		end_of_run(w, it);
		return;
	}
	/* (no run current, or a held line, or mcpmux ending: answers for a run that is over) */
	bool ended = w->cur == NULL || w->replaying || w->shutting_down;

	if (ended && jsonrpc_answers_only(&w->scan)) {
		/* Answers to requests of a server whose run is over: nobody waits for them,
		 * and they are no reason to start another. */
		log_ended_run(w, line, len, &w->scan);
		ended_run_answered(w, &w->scan);
		if (kind == JSONRPC_BATCH) {
			diag_warn("a batch of %zu answers of the client for a server whose run is "
				  "over: dropped",
				  w->scan.n_items);
		} else {
			warn_ended_run_answer(&w->scan);
		}
		return;
	}
	if (ended) {
		size_t dropped = 0;
		struct sbuf gone = { 0 };

		/* Those of a batch that holds other messages too: the next run's server never
		 * sent their requests (answered, whoever asked them: drop_gone()). */
		if (!jsonrpc_drop_answers(&w->scan, line, len, NULL, NULL, &w->kept, &w->scan,
					  &gone, &dropped)) {
			refuse_unstripped(w, &gone, line, len);
			return;
		}
		drop_gone(w, &gone);
		if (dropped > 0) {
			diag_warn("%zu answers in a batch for a server whose run is over: dropped "
				  "(its other messages are kept)",
				  dropped);
			line = w->kept.buf;
			len = w->kept.len;
		}
	} else if (drop_ended_run_answers(w, line, len)) {
		return;
	}
	if (w->shutting_down) {
		/* No run will take it (a line held behind an ended run's replies), less its
		 * answers, dropped above as any for a run that is over. */
		size_t n;
		const struct jsonrpc_item *items = jsonrpc_items(&w->scan, &n);

		log_in(w, line, len, true);
		for (size_t i = 0; i < n; i++) {
			if (items[i].kind != JSONRPC_REQUEST) {
				diag_warn("mcpmux is ending: dropped a client %s",
					  jsonrpc_kind_name(items[i].kind));
			}
		}
		answer_each(w, RPC_SERVER_ERROR, "the server's run is ending");
		sbuf_reset(&w->kept);
		return;
	}
	if (w->cur == NULL && (w->cur = start_run(w)) == NULL) {
		const char *advice = sys_spawn_advice(errno);
		char text[160];

		(void)snprintf(text, sizeof(text), "cannot start the server: %s", strerror(errno));
		diag_error("%s%s", text, advice);
		log_in(w, line, len, true);
		answer_each(w, RPC_SERVER_ERROR, text);
	} else {
		session_from_client(w->cur, line, len, &w->scan);
	}
	sbuf_reset(&w->kept); /* (its memory given back after a long batch) */
}

/*
 * The size of the client's line over the bound into m, as far as it was read: whether the
 * framer went big for want of memory (within the bound), not for its length, is the
 * framer's to say; in a batch not yet read to its end, it is more than the bound.
 */
static void
big_size(const struct wrap *w, struct rpcout_big *m)
{
	m->limit = w->opt->max_message;
	m->no_memory = w->big_fed <= w->opt->max_message && framer_big_no_memory(&w->client.inf);
	m->unended = !w->big_ended && !m->no_memory;
	m->total = m->unended ? w->opt->max_message : w->big_fed;
}

/*
 * Does an answer of the client's (one over the bound) answer a request in flight of a
 * server whose run is over (its end requested, or the one before the current run)?  Such
 * a server is sent nothing more: like an answer within the bound (handle_line()), it is
 * dropped.  (Lines held behind an ended run's replies are held only while no run is
 * current: a run they start has asked nothing yet.)
 */
static bool
ended_run_asked(struct wrap *w, const struct jsonrpc_idscan *sc)
{
	size_t gone_len = 0;
	const char *gone = session_ids_find(&w->ended_asked, sc, &gone_len);

	if (gone != NULL) {
		/* A gone server's (w->ended_asked): answered, it is kept no more. */
		session_ids_remove(&w->ended_asked, gone, gone_len);
		return true;
	}
	for (const struct wrap_run *r = w->runs; r != NULL; r = r->next) {
		size_t id_len = 0;
		const char *id = r->s != w->cur ? session_srv_request(r->s, sc, &id_len) : NULL;

		if (id != NULL) {
			/* Answered, as one within the bound is (ended_run_answered()). */
			(void)session_srv_answered(r->s, id, id_len);
			return true;
		}
	}
	return false;
}

/*
 * An answer of the client's over the bound (alone, or in a batch, as it ends): the request
 * of the server's in flight that it answers gets an error in its place at once (one for
 * each such request: it is done once the error is sent).  Answers to no request in flight,
 * or for a run that is over, are dropped, with a warning that says which.
 */
static void
wrap_big_answer(struct wrap *w, const struct jsonrpc_idscan *sc)
{
	size_t id_len = 0;
	const char *id = NULL;
	struct rpcout_big big = { .answer = true };
	struct sbuf b = { 0 };

	big_size(w, &big);
	if (w->cur != NULL && w->held_off == w->held.len) {
		/* (an id too long to be read is found by its length, hash and first bytes) */
		id = session_srv_request(w->cur, sc, &id_len);
	}
	if (id == NULL) {
		rpcout_big_scanned_id(&big, sc);
		if (ended_run_asked(w, sc)) {
			diag_warn("the client's answer %s is %s (%s%zu bytes) and answers a "
				  "request of a server whose run is over: dropped",
				  RPCOUT_BIG_ARGS_ID(&big), RPCOUT_BIG_ARGS_SIZE(&big));
		} else {
			diag_warn(RPCOUT_BIG_STRAY, RPCOUT_BIG_ARGS_ID(&big),
				  RPCOUT_BIG_ARGS_SIZE(&big));
		}
		return;
	}
	big.id = id;
	big.id_len = id_len;
	/* An answer to the client would read as one to a request of its own. */
	diag_warn(RPCOUT_BIG_ANSWER, RPCOUT_BIG_ARGS_ID(&big), RPCOUT_BIG_ARGS_SIZE(&big));
	rpcout_answer_too_large(&b, &big);
	if (!b.failed) {
		wrap_on_line(w, b.buf, b.len);
	}
	sbuf_release(&b);
}

/* An element of a batch of the client's over the bound, as it ends. */
static void
wrap_big_element(void *ctx, const struct jsonrpc_idscan *sc)
{
	struct wrap *w = ctx;
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(sc, &id_len);

	if (jsonrpc_idscan_is_answer(sc)) {
		w->big_answers++;
		wrap_big_answer(w, sc);
		return;
	}
	if (!sc->has_id) {
		if (sc->has_method) {
			w->big_notes++; /* dropped, with a warning at the batch's end */
		} else if (sc->begun) {
			/* No message at all (1, {}): one error with id null for them at the end
			 * (not the ',' after an object). */
			rpcout_bigreqs_no_message(&w->big_reqs);
		}
		return;
	}
	/* An id too long to be kept, or of no use (null, true, {}): answered with id null. */
	rpcout_bigreqs_add(&w->big_reqs, id, id_len);
}

/* Bytes of a line over the bound to its scan (a batch's elements: wrap_big_element()). */
static void
wrap_big_feed(struct wrap *w, const char *p, size_t len)
{
	jsonrpc_idscan_feed_line(&w->big_id, &w->big_lead, p, len);
	w->big_batch = w->big_id.batch;
}

static void
wrap_on_big_begin(void *ctx, const char *head, size_t len)
{
	struct wrap *w = ctx;

	w->big_lead = true;
	w->big_batch = false;
	rpcout_bigreqs_begin(&w->big_reqs, w->opt->max_message);
	w->big_answers = 0;
	w->big_notes = 0;
	w->big_fed = len;
	w->big_ended = false;
	jsonrpc_idscan_init(&w->big_id);
	w->big_id.on_element = wrap_big_element;
	w->big_id.ctx = w;
	wrap_big_feed(w, head, len);
}

static void
wrap_on_big_more(void *ctx, const char *more, size_t len)
{
	struct wrap *w = ctx;

	w->big_fed += len;
	wrap_big_feed(w, more, len);
}

/*
 * The one error with id null that answers a batch over the bound in place of its array of
 * errors (as wrap_on_big_end() gives it when wrap_big_batch() does not answer it), into b.
 */
static void
big_batch_fallback(const struct wrap *w, struct sbuf *b)
{
	struct rpcout_big big = { 0 };
	char text[256];

	big_size(w, &big);
	(void)rpcout_oversize(&big, text, sizeof(text));
	rpcout_error(b, NULL, 0, RPCOUT_BIG_CODE(&big), text);
}

/*
 * A batch of the client's over the bound, scanned whole (its answers got the server
 * errors as they passed): each of its requests gets big->code's error with its id, and
 * its elements that are no message one with id null, in one array.  False when it held no message,
 * too many requests (their array longer than --max-message: rpcout_bigreqs), or the memory to
 * answer them ran out: it is answered as one message, one error with id null.
 */
static bool
wrap_big_batch(struct wrap *w, struct rpcout_big *big)
{
	if (w->big_reqs.n == 0 && w->big_reqs.no_message == 0 && w->big_answers == 0 &&
	    w->big_notes == 0) {
		return false;
	}
	if (w->big_notes > 0) {
		/* (said however its requests are answered: their array, or one error) */
		diag_warn(RPCOUT_BIG_NOTIFICATION, RPCOUT_BIG_ARGS_SIZE(big));
	}
	if (!rpcout_bigreqs_answer(&w->tmp, &w->big_reqs, big)) {
		return false;
	}
	if (w->tmp.len > 0) {
		struct sbuf fallback = { 0 };
		int rc;

		if (must_wait(w)) {
			big_batch_fallback(w, &fallback);
		}
		rc = send_own_in_order(w, true, &fallback);
		sbuf_release(&fallback);
		if (rc == -1 && w->client.out_dead) {
			diag_error(RPCOUT_BIGREQS_CUT_TEXT); /* (nothing can follow its head) */
		} else if (rc == -1) {
			diag_error(RPCOUT_BIGREQS_NOT_QUEUED_TEXT);
			return false;
		}
	}
	return true;
}

static void
wrap_on_big_end(void *ctx, size_t total)
{
	struct wrap *w = ctx;
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(&w->big_id, &id_len);
	struct rpcout_big big;
	char text[256];

	if (tlog_enabled) {
		pid_t pid;
		const char *sid = cur_id(w, &pid);

		tlog_oversize(sid, pid, TLOG_IN, total);
	}
	w->big_fed = total;
	w->big_ended = true;
	big = (struct rpcout_big){ .answer = jsonrpc_idscan_is_answer(&w->big_id),
				   .notification = !w->big_id.has_id && w->big_id.has_method,
				   .id = id,
				   .id_len = id_len };
	big_size(w, &big);
	if (w->big_batch) {
		/* An element cut short by the line's end, then the batch's. */
		if (w->big_id.begun) {
			wrap_big_element(w, &w->big_id);
		}
		bool done = wrap_big_batch(w, &big);

		sbuf_reset(&w->big_reqs.ids); /* (its memory given back after a long batch) */
		if (done) {
			return;
		}
		id = NULL; /* (the last element's) */
		id_len = 0;
		big = (struct rpcout_big){ 0 };
		big_size(w, &big);
	}
	switch (rpcout_oversize(&big, text, sizeof(text))) {
	case RPCOUT_OVERSIZE_ANSWER:
		/* The server's request in flight that it answers gets an error in its place;
		 * another answer is dropped (wrap_big_answer() says which). */
		wrap_big_answer(w, &w->big_id);
		break;
	case RPCOUT_OVERSIZE_NOTIFICATION:
		diag_warn(RPCOUT_BIG_NOTIFICATION, RPCOUT_BIG_ARGS_SIZE(&big));
		break;
	case RPCOUT_OVERSIZE_REQUEST:
		sbuf_reset(&w->tmp);
		rpcout_error(&w->tmp, id, id_len, RPCOUT_BIG_CODE(&big), text);
		if (send_own_in_order(w, w->big_batch, NULL) == -1) {
			diag_error("%s", w->big_batch
						 ? RPCOUT_BIGREQS_UNANSWERED_TEXT
						 : "out of memory: a message from mcpmux was lost");
		}
		break;
	}
}

static void
wrap_on_signal(struct ev_loop *loop, ev_signal *sw, int revents)
{
	struct wrap *w = sw->data;

	(void)loop;
	(void)revents;
	/*
	 * The TypeScript SDK's close() ends its stdin, sends SIGTERM 2 s later and SIGKILL 2 s
	 * after that: the teardown goes on, bounded by its graces, but the client's last bytes
	 * are not waited for after it (maybe_finish()).
	 */
	w->drain_cut = sw->signum;
	conn_whole_lines(&w->client);
	shutdown_all(w, strsignal(sw->signum), "signal");
}

/*
 * Job control (^Z at a terminal, a shell's SIGTSTP): it reaches mcpmux's process group,
 * not the server's, a group of its own.  In a direct run it stops the server: so it does
 * here, and then mcpmux, by the signal's default action (the watcher stopped for it), so
 * that the kernel decides as it would for the server (a group with no shell to continue
 * it, an orphaned one, is not stopped).  Once mcpmux goes on (the shell's fg or bg, or
 * at once), so do the servers, as a shell's SIGCONT to a direct run's job continues it
 * whole.
 */
static void
wrap_on_tstp(struct ev_loop *loop, ev_signal *sw, int revents)
{
	(void)revents;
	backend_signal_groups(SIGTSTP);
	ev_signal_stop(loop, sw); /* SIGTSTP's default action back */
	/* The time stopped is not the run's: the timers (graces, stall) go on after it as
	 * they were, rather than ending at once what the stop held up. */
	ev_suspend(loop);
	(void)kill(getpid(), SIGTSTP); /* delivered before kill() returns */
	ev_resume(loop);
	ev_signal_start(loop, sw);
	backend_signal_groups(SIGCONT);
}

/*
 * A signal wrap acts on (one that ends the run, job control), unless the caller ignored
 * it (nohup's SIGHUP, a background job's SIGINT): a direct run would not act on it, and
 * the server ignores it too (sys_signals_record()).  Unreferenced: it does not keep the
 * loop running.
 */
static void
watch_signal(struct wrap *w, ev_signal *sw, int sig)
{
	ev_signal_init(sw, sig == SIGTSTP ? wrap_on_tstp : wrap_on_signal, sig);
	sw->data = w;
	if (!sys_signal_ignored_at_start(sig)) {
		ev_signal_start(w->loop, sw);
		ev_unref(w->loop);
	}
}

static void
unwatch_signal(struct wrap *w, ev_signal *sw)
{
	if (ev_is_active(sw)) {
		ev_ref(w->loop);
		ev_signal_stop(w->loop, sw);
	}
}

/* ---- main ---- */

int
cmd_wrap(const struct mcpmux_options *o)
{
	struct ev_loop *loop = EV_DEFAULT;
	struct wrap *w = calloc(1, sizeof(*w));

	if (w == NULL || loop == NULL) {
		free(w);
		return diag_error("cannot start: out of memory") + 2;
	}
	w->loop = loop;
	w->opt = o;
	session_config_init(&w->scfg, o);
	w->scfg.claim_orphans = true; /* every descendant is the one server's */
	/*
	 * Non-blocking I/O on descriptions of our own: the server shares the client's
	 * stderr, which may be the same file as stdout (2>&1, a terminal), and must see its
	 * flags as a direct run would.
	 */
	w->in_fd = sys_stdio_open(STDIN_FILENO, &w->in_shared);
	w->out_fd = sys_stdio_open(STDOUT_FILENO, &w->out_shared);
	if (w->in_fd == -1 || w->out_fd == -1) {
		diag_error_errno("cannot use stdin and stdout");
		sys_stdio_close(w->in_fd, STDIN_FILENO, w->in_shared);
		sys_stdio_close(w->out_fd, STDOUT_FILENO, w->out_shared);
		free(w);
		return 1;
	}
	conn_init(&w->client, loop, w->in_fd, w->out_fd, o->max_message, o->max_queue, &client_sink,
		  &client_hooks, w);
	jsonrpc_init(&w->scan);
	w->scan.params_method = o->end_method; /* the only params mcpmux reads */
	/*
	 * The status file locked before the instance's cgroup is made (backend_module_init()):
	 * a sweep takes a cgroup named after a pid whose file is held for a live instance's.
	 */
	status_open(loop, "wrap");
	backend_module_init(loop);
	status_rewrite(); /* now with the owner and the cgroup, which a sweep reads if we die */
	if (backend_cgroup()[0] != '\0') {
		(void)survey_start_sweep(backend_cgroup()); /* what gone instances left beside it */
	}
	(void)errout_start(loop);
	w->scfg.pool = w->pool = pool_open_for(loop, o);
	ev_init(&w->drain_w, wrap_on_drain_timeout);
	watch_signal(w, &w->term_w, SIGTERM);
	watch_signal(w, &w->int_w, SIGINT);
	watch_signal(w, &w->hup_w, SIGHUP);
	watch_signal(w, &w->tstp_w, SIGTSTP);
	sys_signals_release(); /* one held since the start is acted on now */

	/* Wrap mode starts its server at launch. */
	if (o->log_path != NULL && tlog_open(loop, o->log_path, o->log_bodies, true) == -1) {
		/* Also a log that would mix with the client's stdin or stdout (--log
		 * /dev/stdout, a typo for /dev/stderr): refused. */
		w->exit_code = 1;
	} else if ((w->cur = start_run(w)) == NULL) {
		diag_error("cannot start '%s': %s%s", o->command[0], strerror(errno),
			   sys_spawn_advice(errno));
		w->exit_code = 1;
	} else {
		conn_read(&w->client, true);
		ev_run(loop, 0);
	}

	/* A line for the client cut for want of memory: mcpmux failed it, whatever the
	 * server's status (after a signal, the signal's status all the same). */
	int code = w->cut_failed ? 1 : w->exit_code;

	/* Every run is done; anything of ours still alive is an orphan nobody claimed. */
	size_t killed = backend_kill_leftovers(w->scfg.kill_deadline);

	if (killed > 0) {
		diag_info("killed %zu leftover process(es)", killed);
	}

	/*
	 * The loop is over: a signal that ends a run, come from now to the exit, waits
	 * (blocked) rather than ending mcpmux by its default action, without its exit
	 * status and before its keeper is told it is done.
	 */
	sys_signals_hold();
	unwatch_signal(w, &w->term_w);
	unwatch_signal(w, &w->int_w);
	unwatch_signal(w, &w->hup_w);
	unwatch_signal(w, &w->tstp_w);
	ev_timer_stop(loop, &w->drain_w);
	while (w->runs != NULL) {
		/* Only when the loop could not run at all. */
		struct wrap_run *r = w->runs;

		w->runs = r->next;
		conn_source_retire(&w->client, r->out);
		free(r);
	}
	status_close();
	tlog_close();
	conn_release(&w->client);
	/* What mcpmux still has to say on stderr gets the client's eof-grace, too. */
	errout_stop(sys_mono() + w->scfg.eof_grace);
	backend_module_release();
	session_module_release();
	sys_stdio_close(w->in_fd, STDIN_FILENO, w->in_shared);
	sys_stdio_close(w->out_fd, STDOUT_FILENO, w->out_shared);
	jsonrpc_release(&w->scan);
	sbuf_release(&w->tmp);
	sbuf_release(&w->kept);
	session_ids_free(&w->ended_asked);
	sbuf_release(&w->big_reqs.ids);
	sbuf_release(&w->held);
	handshake_release(&w->hs);
	pool_close(w->pool);
	free(w);
	return code;
}
