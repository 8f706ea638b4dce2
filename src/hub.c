/*
 * hub: serve's session table, control methods and events, shared by its front ends.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "mcpmux/cli.h"
#include "mcpmux/diag.h"
#include "mcpmux/hub.h"
#include "mcpmux/status.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

static void hub_on_deliver(struct session *s, const char *line, size_t len, void *owner);
static void hub_on_exit(struct session *s, void *owner);
static void hub_on_input_full(struct session *s, void *owner, bool full);
static void hub_on_done(struct session *s, void *owner);
static void hub_on_idle(struct session *s, void *owner);
static void hub_on_suspended(struct session *s, void *owner);
static void hub_on_resumed(struct session *s, void *owner, double ms);
static void hub_on_started(struct session *s, void *owner);
static void send_started(struct hub_entry *e);

static const struct session_hooks hub_hooks = {
	.deliver = hub_on_deliver,
	.on_exit = hub_on_exit,
	.on_idle = hub_on_idle,
	.on_input_full = hub_on_input_full,
	.on_suspended = hub_on_suspended,
	.on_resumed = hub_on_resumed,
	.on_started = hub_on_started,
	.on_done = hub_on_done,
};

void
hub_init(struct hub *h, struct ev_loop *loop, const struct mcpmux_options *o)
{
	memset(h, 0, sizeof(*h));
	h->loop = loop;
	h->opt = o;
	h->started = sys_mono();
	session_config_init(&h->scfg, o);
	h->scfg.pool = pool_open_for(loop, o);
	status_open(loop, "serve");
	jsonrpc_init(&h->log_scan);
}

/* Out of the table (and out of hub_find()'s memory of the last one found). */
static void
hub_unlink(struct hub *h, struct hub_entry *e)
{
	HASH_DEL(h->table, e);
	if (h->last == e) {
		h->last = NULL;
	}
}

void
hub_release(struct hub *h)
{
	while (h->table != NULL) {
		struct hub_entry *e = h->table;

		if (e->s != NULL) {
			/* Only when the loop could not run: a session never left RUNNING. */
			hub_unlink(h, e);
			continue;
		}
		hub_entry_free(e);
	}
	while (h->unseen != NULL) {
		struct hub_unseen *u = h->unseen;

		HASH_DEL(h->unseen, u);
		free(u);
	}
	status_close();
	pool_close(h->scfg.pool);
	h->scfg.pool = NULL;
	jsonrpc_release(&h->log_scan);
	sbuf_release(&h->tmp);
}

/* ---- what goes to a port ---- */

void
hub_log_own(struct hub *h, const char *sid, const struct session *s, const char *m, size_t len)
{
	if (!tlog_enabled) {
		return;
	}
	(void)jsonrpc_scan(&h->log_scan, m, len);
	tlog_message(sid, s != NULL ? session_pid(s) : 0, TLOG_OUT, &h->log_scan, m, len, 0);
}

/* An event of e, to its owner (nobody to tell without one). */
static void
send_event(struct hub_entry *e, const char *fields, size_t len)
{
	if (e->owner != NULL) {
		e->owner->ops->event(e->owner, e, fields, len);
	}
}

/*
 * An answer of mcpmux's own in h->tmp, to session e's owner p or as a reply; h->tmp is
 * emptied, and a long one (a huge id, a batch's errors) given back now.
 */
static void
send_own_answer(struct hub *h, struct hub_port *p, struct hub_entry *e)
{
	struct sbuf *b = &h->tmp;

	if (b->failed) {
		diag_error("out of memory: a message from mcpmux was lost");
	} else if (e != NULL && e->owner == p) {
		hub_log_own(h, e->id, e->s, b->buf, b->len);
		p->ops->message(p, e, b->buf, b->len);
	} else {
		p->ops->reply(p, b->buf, b->len);
	}
	sbuf_reset(b);
}

void
hub_error(struct hub *h, struct hub_port *p, struct hub_entry *e, const char *id, size_t id_len,
	  int code, const char *text)
{
	sbuf_reset(&h->tmp);
	rpcout_error(&h->tmp, id, id_len, code, text);
	send_own_answer(h, p, e);
}

void
hub_own_answer(struct hub *h, struct hub_port *p, struct hub_entry *e, const char *msg, size_t len)
{
	sbuf_reset(&h->tmp);
	sbuf_add(&h->tmp, msg, len);
	send_own_answer(h, p, e);
}

bool
hub_error_each(struct hub *h, struct hub_port *p, struct hub_entry *e,
	       const struct jsonrpc_scanner *scan, int code, const char *text)
{
	sbuf_reset(&h->tmp);
	if (rpcout_error_each(&h->tmp, scan, code, text, NULL, NULL) == 0) {
		return false;
	}
	send_own_answer(h, p, e);
	return true;
}

/* ---- entries ---- */

struct hub_entry *
hub_find(struct hub *h, const char *id, size_t len)
{
	struct hub_entry *e = h->last;

	/* Lines come in runs for one session: the last one found is looked at first. */
	if (e != NULL && e->id_len == len && memcmp(e->id, id, len) == 0) {
		return e;
	}
	HASH_FIND(hh, h->table, id, len, e);
	if (e != NULL) {
		h->last = e;
	}
	return e;
}

struct hub_entry *
hub_entry_new(struct hub *h, const char *id, size_t len)
{
	struct hub_entry *e = calloc(1, sizeof(*e));
	bool added;

	if (e == NULL) {
		return NULL;
	}
	memcpy(e->id, id, len);
	e->id_len = len;
	e->hub = h;
	TABLE_ADD(hh, h->table, e->id, len, e, added);
	if (!added) {
		free(e); /* the table could not grow */
		return NULL;
	}
	return e;
}

/*
 * Read the server's output or let it wait in its pipe.  With an owner: read while its
 * queue has room.  Without one (a kept session between ports): wait for the next owner,
 * unless the run is over (the server exited, or the session is ending), when what is
 * left is read, and dropped with a warning, so that the teardown can finish.
 */
static void
sync_pause(struct hub_entry *e)
{
	if (e->s == NULL) {
		return;
	}
	session_detach(e->s, e->owner == NULL);
	if (e->owner != NULL) {
		session_pause(e->s, e->owner->ops->full(e->owner, e));
	} else {
		session_pause(e->s, !e->exited && !e->s->end_requested);
	}
}

/* A session whose server's input is full holds its owner's input, and no other port's. */
static void
sync_hold(struct hub_entry *e)
{
	struct hub_port *want = e->s != NULL && e->s->input_full ? e->owner : NULL;

	if (want == e->holding) {
		return;
	}
	if (e->holding != NULL && --e->holding->n_full == 0) {
		e->holding->ops->hold(e->holding, false);
	}
	e->holding = want;
	if (want != NULL && want->n_full++ == 0) {
		want->ops->hold(want, true);
	}
}

int
hub_set_owner(struct hub_entry *e, struct hub_port *p)
{
	if (e->owner == p) {
		return 0;
	}
	void *old_data = e->port_data;
	struct hub_port *old = e->owner;

	if (p != NULL) {
		e->port_data = NULL;
		if (p->ops->attach(p, e) == -1) {
			e->port_data = old_data;
			return -1;
		}
	} else {
		e->port_data = NULL;
	}
	void *new_data = e->port_data;

	if (old != NULL) {
		/* The old owner gives its queue back (it writes what is in it, then frees it). */
		old->n_owned--;
		e->owner = NULL;
		sync_hold(e);
		e->port_data = old_data;
		old->ops->detach(old, e);
	}
	e->owner = p;
	e->port_data = new_data;
	if (p != NULL) {
		p->n_owned++;
		e->end_asked = false; /* a new owner has not seen the end another asked for */
	}
	sync_pause(e);
	sync_hold(e);
	return 0;
}

void
hub_entry_free(struct hub_entry *e)
{
	struct hub *h = e->hub;

	/*
	 * Out of the table first: its owner's queue may go at once, and an end that it held
	 * back to the hub (hub_unseen_lost()) must not find it as a later run.
	 */
	hub_unlink(h, e);
	(void)hub_set_owner(e, NULL);
	while (e->waiters != NULL) {
		struct hub_waiter *w = e->waiters;

		e->waiters = w->next;
		w->port->n_waiting--;
		free(w);
	}
	free(e);
}

void
hub_port_writable(struct hub_entry *e)
{
	if (e->s != NULL) {
		session_pause(e->s, false);
	}
}

/* ---- the session's hooks ---- */

static void
hub_on_deliver(struct session *s, const char *line, size_t len, void *owner)
{
	struct hub_entry *e = owner;

	if (e->owner == NULL) {
		diag_warn("session %s: no client: a line for it was dropped: %.*s", e->id,
			  (int)SYS_MIN(len, 200), line);
		return;
	}
	e->owner->ops->message(e->owner, e, line, len);
	if (e->owner->ops->full(e->owner, e)) {
		session_pause(s, true);
	}
}

static void
hub_on_exit(struct session *s, void *owner)
{
	struct hub_entry *e = owner;

	(void)s;
	e->exited = true;
	sync_pause(e);
}

/* A session ended by --idle-timeout: said at the default verbosity (-q silences it), its
 * repeats within a second summed up in one line. */
static void
hub_on_idle(struct session *s, void *owner)
{
	diag_warn("session %s: idle for %g s: ending it (--idle-timeout)", s->id,
		  s->cfg->idle_timeout);
	hub_on_exit(s, owner);
}

static enum hub_exit_kind
exit_kind(int wstatus, bool noexec)
{
	if (noexec) {
		return HUB_EXIT_NOEXEC;
	}
	if (wstatus < 0) {
		return HUB_EXIT_UNKNOWN;
	}
	if (WIFSIGNALED(wstatus)) {
		return HUB_EXIT_SIGNAL;
	}
	return WEXITSTATUS(wstatus) == 0 ? HUB_EXIT_ZERO : HUB_EXIT_NONZERO;
}

static void
hub_on_suspended(struct session *s, void *owner)
{
	struct hub_entry *e = owner;
	struct sbuf *b = &e->hub->tmp;

	e->hub->n_exit[exit_kind(s->last_exit, s->last_noexec)]++;
	sbuf_reset(b);
	sbuf_adds(b, ",\"event\":\"suspended\",\"reason\":");
	sbuf_add_json_string(b, s->suspend_why, strlen(s->suspend_why));
	if (!b->failed) {
		send_event(e, b->buf, b->len);
	}
}

static void
hub_on_resumed(struct session *s, void *owner, double ms)
{
	struct hub_entry *e = owner;
	struct sbuf *b = &e->hub->tmp;

	if (!e->started) {
		/* Its first server never came (a spawn that failed after its pool's grant). */
		send_started(e);
		return;
	}
	sbuf_reset(b);
	sbuf_addf(b, ",\"event\":\"resumed\",\"pid\":%d,\"ms\":%.0f", (int)session_pid(s), ms);
	send_event(e, b->buf, b->len);
}

/* "started" when the server is spawned: at once, or once its pool granted a slot. */
static void
send_started(struct hub_entry *e)
{
	struct sbuf *b = &e->hub->tmp;

	e->started = true;
	sbuf_reset(b);
	sbuf_addf(b, ",\"event\":\"started\",\"pid\":%d", (int)session_pid(e->s));
	send_event(e, b->buf, b->len);
}

static void
hub_on_started(struct session *s, void *owner)
{
	(void)s;
	send_started(owner);
}

static void
hub_on_input_full(struct session *s, void *owner, bool full)
{
	(void)s;
	(void)full;
	sync_hold(owner);
}

static void
stats_add(struct session_stats *to, const struct session_stats *from)
{
	to->bytes_in += from->bytes_in;
	to->bytes_out += from->bytes_out;
	to->msgs_in += from->msgs_in;
	to->msgs_out += from->msgs_out;
}

const char *
hub_exit_kind_name(enum hub_exit_kind k)
{
	static const char *const names[HUB_EXIT_KINDS] = {
		"zero", "nonzero", "signal", "noexec", "unknown",
	};

	return (unsigned)k < HUB_EXIT_KINDS ? names[k] : "unknown";
}

/* The `ended` event of e (its fields) as an unseen end, or NULL when out of memory. */
static struct hub_unseen *
unseen_new(const struct hub_entry *e, const char *fields, size_t len)
{
	static const char mark[] = ",\"unseen\":true"; /* told late: not the run of its reader */
	struct hub_unseen *u = malloc(sizeof(*u) + len + sizeof(mark) - 1);

	if (u == NULL) {
		diag_error("session %s: out of memory: its end cannot be told to a client", e->id);
		return NULL;
	}
	memset(u, 0, sizeof(*u));
	memcpy(u->id, e->id, e->id_len);
	u->id_len = e->id_len;
	u->seq = e->hub->n_ended;
	u->len = len + sizeof(mark) - 1;
	memcpy(u->fields, fields, len);
	memcpy(u->fields + len, mark, sizeof(mark) - 1);
	return u;
}

/* Into the table of unseen ends; false (u freed, and said) when it could not grow. */
static bool
unseen_enter(struct hub *h, struct hub_unseen *u)
{
	bool added;

	TABLE_ADD(hh, h->unseen, u->id, u->id_len, u, added);
	if (!added) {
		diag_error("session %s: out of memory: its end cannot be told to a client", u->id);
		free(u);
		return false;
	}
	return true;
}

/*
 * A kept session ended with no port to tell (or one whose output is gone): its `ended`
 * event is kept for the next port that names it (a client that comes back must learn that
 * its server is gone, not talk to a fresh one that knows nothing of it).
 */
static void
unseen_add(struct hub *h, struct hub_unseen *u)
{
	if (HASH_COUNT(h->unseen) >= h->opt->max_sessions) {
		struct hub_unseen *old = h->unseen; /* the oldest */

		diag_warn("session %s: its end was never told to a client, and is forgotten (more "
			  "than %zu such ends)",
			  old->id, h->opt->max_sessions);
		HASH_DEL(h->unseen, old);
		free(old);
	}
	if (!unseen_enter(h, u)) {
		return;
	}
	diag_info("session %s ended while no client held it: the next connection that names "
		  "it is told",
		  u->id);
}

void
hub_unseen_hold(struct hub *h, struct hub_unseen *u)
{
	u->later = false;
	u->held_prev = NULL;
	u->held_next = h->held;
	if (h->held != NULL) {
		h->held->held_prev = u;
	}
	h->held = u;
}

/* Out of the list of held ends. */
static void
held_unlink(struct hub *h, struct hub_unseen *u)
{
	if (u->held_prev != NULL) {
		u->held_prev->held_next = u->held_next;
	} else {
		h->held = u->held_next;
	}
	if (u->held_next != NULL) {
		u->held_next->held_prev = u->held_prev;
	}
}

void
hub_unseen_told(struct hub *h, struct hub_unseen *u)
{
	held_unlink(h, u);
	free(u);
}

void
hub_unseen_lost(struct hub *h, struct hub_unseen *u)
{
	struct hub_unseen *was = NULL;
	/* A keep that started nothing is no later run: its next envelope is told. */
	const struct hub_entry *e = hub_find(h, u->id, u->id_len);

	held_unlink(h, u);
	HASH_FIND(hh, h->unseen, u->id, u->id_len, was);
	if (h->shutting_down || u->later || (was != NULL && was->seq > u->seq) ||
	    (e != NULL && e->s != NULL)) {
		free(u); /* mcpmux is ending, or a later run of the session started */
		return;
	}
	if (was != NULL) {
		/* The end of an earlier run, kept first: the later one is told. */
		HASH_DEL(h->unseen, was);
		free(was);
	}
	unseen_add(h, u);
}

struct hub_unseen *
hub_unseen_take(struct hub *h, const char *id, size_t len)
{
	struct hub_unseen *u = NULL;

	HASH_FIND(hh, h->unseen, id, len, u);
	if (u != NULL) {
		HASH_DEL(h->unseen, u);
	}
	return u;
}

void
hub_unseen_untake(struct hub *h, struct hub_unseen *u)
{
	(void)unseen_enter(h, u);
}

/*
 * The run is over.  The session leaves the table and the count first, so that every
 * answer that says so (`ended`, the end-of-run results) means that its slot is free.
 */
static void
hub_on_done(struct session *s, void *owner)
{
	struct hub_entry *e = owner;
	struct hub *h = e->hub;
	struct sbuf *b = &h->tmp;
	struct hub_waiter *waiters = e->waiters;

	hub_unlink(h, e);
	h->n_live--;
	h->n_ended++;
	stats_add(&h->done_stats, &s->stats);
	if (s->backend == NULL) {
		/* Ended while suspended: its last server's exit was counted then. */
		h->n_escalation[BACKEND_ESC_NONE]++;
	} else {
		if ((unsigned)s->backend->escalation <= BACKEND_ESC_ABANDONED) {
			h->n_escalation[s->backend->escalation]++;
		}
		h->n_exit[exit_kind(s->backend->wstatus, s->backend->exec_errno != 0)]++;
	}
	e->waiters = NULL;
	e->n_waiters = 0;

	sbuf_reset(b);
	sbuf_adds(b, ",\"event\":\"ended\",");
	session_end_fields(s, b);
	if (!b->failed) {
		send_event(e, b->buf, b->len);
		/* An owner whose output is gone holds it no more than none: not told. */
		bool told = e->owner != NULL &&
			    (e->owner->ops->gone == NULL || !e->owner->ops->gone(e->owner));
		struct hub_unseen *u = NULL;

		if (e->kept && !e->end_asked && !h->shutting_down) {
			u = unseen_new(e, b->buf, b->len);
		}
		if (u != NULL && !told) {
			unseen_add(h, u);
		} else if (u != NULL && (e->owner->ops->hold_end == NULL ||
					 !e->owner->ops->hold_end(e->owner, e, u))) {
			free(u); /* written: told */
		} else if (u != NULL) {
			hub_unseen_hold(h, u);
		}
	}
	while (waiters != NULL) {
		struct hub_waiter *w = waiters;

		waiters = w->next;
		w->port->n_waiting--; /* before the reply: the port may go once it is written */
		sbuf_reset(b);
		sbuf_adds(b, "{\"jsonrpc\":\"2.0\",\"id\":");
		sbuf_add(b, w->id, w->id_len);
		sbuf_adds(b, ",\"result\":");
		session_result(s, b);
		sbuf_adds(b, "}");
		if (!b->failed) {
			w->port->ops->reply(w->port, b->buf, b->len);
		}
		free(w);
	}
	sbuf_reset(b); /* a long one (a waiter's huge id) is given back now */
	session_free(s);
	e->s = NULL;
	(void)hub_set_owner(e, NULL);
	free(e);
	if (hub_is_empty(h) && h->on_empty != NULL) {
		h->on_empty(h, h->ctx);
	}
}

/* ---- starting and ending ---- */

bool
hub_start(struct hub_entry *e, const struct jsonrpc_scanner *scan)
{
	struct hub *h = e->hub;
	char text[200];

	if (h->shutting_down) {
		(void)snprintf(text, sizeof(text), "mcpmux is shutting down");
		goto refuse;
	}
	if (h->n_live >= h->opt->max_sessions) {
		h->n_refused++;
		(void)snprintf(
			text, sizeof(text),
			"too many sessions (%zu running; see --max-sessions): session refused",
			h->n_live);
		diag_warn("session %s: %s", e->id, text);
		if (tlog_enabled) {
			sbuf_reset(&h->tmp);
			sbuf_adds(&h->tmp, "\"reason\":");
			sbuf_add_json_string(&h->tmp, text, strlen(text));
			tlog_event(e->id, 0, "refused", h->tmp.buf, h->tmp.len);
		}
		goto refuse;
	}
	e->s = session_new(h->loop, e->id, &h->scfg, &hub_hooks, e, NULL);
	if (e->s == NULL) {
		const char *advice = sys_spawn_advice(errno);

		(void)snprintf(text, sizeof(text), "cannot start the server: %s", strerror(errno));
		diag_error("session %s: %s%s", e->id, text, advice);
		goto refuse;
	}
	h->n_live++;
	h->n_started++;
	/* An end of an earlier run still in a port's queue is not told again if it is lost. */
	for (struct hub_unseen *u = h->held; u != NULL; u = u->held_next) {
		if (u->id_len == e->id_len && memcmp(u->id, e->id, e->id_len) == 0) {
			u->later = true;
		}
	}
	sync_pause(e);
	if (session_pid(e->s) > 0) {
		send_started(e); /* else when its pool grants it a slot (hub_on_started()) */
	}
	return true;
refuse:
	/*
	 * A message with no request (a notification; a batch of them and of elements that
	 * are no message, which get their -32600s) has the reason in the error event.
	 */
	if (scan == NULL || e->owner == NULL ||
	    !hub_error_each(h, e->owner, e, scan, RPC_SERVER_ERROR, text) ||
	    !jsonrpc_has_request(scan)) {
		sbuf_reset(&h->tmp);
		sbuf_adds(&h->tmp, ",\"error\":{\"code\":-32000,\"message\":");
		sbuf_add_json_string(&h->tmp, text, strlen(text));
		sbuf_adds(&h->tmp, "}");
		send_event(e, h->tmp.buf, h->tmp.len);
	}
	if (!e->kept) {
		hub_entry_free(e);
	}
	return false;
}

const char *
hub_from_client(struct hub_entry *e, const char *msg, size_t len,
		const struct jsonrpc_scanner *scan)
{
	return session_from_client(e->s, msg, len, scan);
}

void
hub_end(struct hub_entry *e, double grace_ms, const char *reply_id, size_t reply_id_len,
	const struct jsonrpc_scanner *scan)
{
	if (scan != NULL) {
		session_log_end_request(e->s, scan);
	}
	/* The first reason given is kept: a shutdown's, or else the message's or the port's. */
	session_set_end_reason(e->s, scan != NULL ? "end-of-run" : "client-eof");
	session_end(e->s, grace_ms, reply_id, reply_id_len);
	sync_pause(e);
}

/* ---- control ---- */

static void
control_list(struct hub *h, struct sbuf *r)
{
	double now = sys_mono();
	bool first = true;

	sbuf_adds(r, "{\"sessions\":[");
	for (struct hub_entry *e = h->table; e != NULL; e = e->hh.next) {
		const struct session *s = e->s;

		sbuf_adds(r, first ? "{\"session\":" : ",{\"session\":");
		first = false;
		sbuf_add_json_string(r, e->id, e->id_len);
		if (s == NULL) {
			sbuf_adds(r, ",\"state\":\"not started\",\"pid\":null");
		} else {
			sbuf_addf(r, ",\"state\":\"%s\",\"pid\":", session_state_name(s));
			if (session_pid(s) > 0) {
				sbuf_addf(r, "%d", (int)session_pid(s));
			} else {
				sbuf_adds(r, "null");
			}
			sbuf_addf(
				r,
				",\"age_s\":%.3f,\"idle_s\":%.3f,\"suspends\":%lu,\"resumes\":%lu,"
				"\"pending\":%zu,\"in\":{\"bytes\":%llu,\"messages\":%llu},"
				"\"out\":{\"bytes\":%llu,\"messages\":%llu}",
				now - s->started, now - s->last_activity, s->n_suspends,
				s->n_resumes, s->n_pending, (unsigned long long)s->stats.bytes_in,
				(unsigned long long)s->stats.msgs_in,
				(unsigned long long)s->stats.bytes_out,
				(unsigned long long)s->stats.msgs_out);
		}
		sbuf_addf(r, ",\"kept\":%s,\"connected\":%s", e->kept ? "true" : "false",
			  e->owner != NULL ? "true" : "false");
		if (e->owner != NULL && e->owner->peer[0] != '\0') {
			sbuf_adds(r, ",\"peer\":");
			sbuf_add_json_string(r, e->owner->peer, strlen(e->owner->peer));
		}
		sbuf_adds(r, "}");
	}
	sbuf_adds(r, "]}");
}

void
hub_totals(const struct hub *h, struct session_stats *t)
{
	*t = h->done_stats;
	for (const struct hub_entry *e = h->table; e != NULL; e = e->hh.next) {
		if (e->s != NULL) {
			stats_add(t, &e->s->stats);
		}
	}
}

static void
control_stats(struct hub *h, struct sbuf *r)
{
	struct session_stats t;
	size_t n_kept = 0;

	hub_totals(h, &t);
	for (struct hub_entry *e = h->table; e != NULL; e = e->hh.next) {
		n_kept += e->kept;
	}
	sbuf_addf(r,
		  "{\"sessions\":%zu,\"max_sessions\":%zu,\"kept\":%zu,\"connections\":%zu,"
		  "\"started\":%llu,\"ended\":%llu,\"refused\":%llu,\"uptime_s\":%.3f,"
		  "\"teardown_max_s\":%.3f,"
		  "\"in\":{\"bytes\":%llu,\"messages\":%llu},\"out\":{\"bytes\":%llu,"
		  "\"messages\":%llu}}",
		  h->n_live, h->opt->max_sessions, n_kept, h->n_ports,
		  (unsigned long long)h->n_started, (unsigned long long)h->n_ended,
		  (unsigned long long)h->n_refused, sys_mono() - h->started,
		  cli_teardown_max_s(h->opt), (unsigned long long)t.bytes_in,
		  (unsigned long long)t.msgs_in, (unsigned long long)t.bytes_out,
		  (unsigned long long)t.msgs_out);
	if (h->scfg.pool != NULL) {
		struct pool_info pi;

		pool_info(h->scfg.pool, &pi);
		if (r->failed || r->len == 0) {
			return;
		}
		r->len--; /* the closing brace */
		sbuf_adds(r, ",\"pool\":{\"name\":");
		sbuf_add_json_string(r, pi.name, strlen(pi.name));
		sbuf_addf(r, ",\"max\":%zu,\"live\":%zu,\"over\":%s}}", pi.max, pi.live,
			  pi.over ? "true" : "false");
	}
}

void
hub_none_result(struct sbuf *r, const char *sid, size_t sid_len)
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
reply_result(struct hub *h, struct hub_port *p, const char *id, size_t id_len,
	     const struct sbuf *result)
{
	struct sbuf *b = &h->tmp;

	sbuf_reset(b);
	sbuf_adds(b, "{\"jsonrpc\":\"2.0\",\"id\":");
	sbuf_add(b, id, id_len);
	sbuf_adds(b, ",\"result\":");
	sbuf_add(b, result->buf, result->len);
	sbuf_adds(b, "}");
	if (b->failed) {
		diag_error("out of memory: a message from mcpmux was lost");
	} else {
		p->ops->reply(p, b->buf, b->len);
	}
	sbuf_reset(b); /* a long one (a huge id, mcpmux/list of many) is given back now */
}

void
hub_control(struct hub *h, struct hub_port *p, const struct jsonrpc_scanner *scan)
{
	const struct jsonrpc_item *it = &scan->one;
	const char *id = it->has_id ? jsonrpc_str(scan, it->id) : NULL;
	struct sbuf r = { 0 };

	if (scan->kind == JSONRPC_INVALID_JSON) {
		hub_error(h, p, NULL, NULL, 0, RPC_PARSE_ERROR, "Parse error: not valid JSON");
		return;
	}
	if (scan->kind != JSONRPC_REQUEST && scan->kind != JSONRPC_NOTIFICATION) {
		hub_error(h, p, NULL, id, it->id.len, RPC_INVALID_REQUEST,
			  "Invalid Request: mcpmux itself takes requests (mcpmux/list, "
			  "mcpmux/stats, mcpmux/endRun)");
		return;
	}
	if (jsonrpc_method_is(scan, it, "mcpmux/list")) {
		control_list(h, &r);
	} else if (jsonrpc_method_is(scan, it, "mcpmux/stats")) {
		control_stats(h, &r);
	} else if (jsonrpc_method_is(scan, it, h->opt->end_method)) {
		const struct jsonrpc_params *pa = &scan->params;
		struct hub_entry *e = pa->has_session ? hub_find(h, jsonrpc_str(scan, pa->session),
								 pa->session.len)
						      : NULL;

		if (!pa->has_session) {
			hub_error(h, p, NULL, id, it->id.len, -32602,
				  "Invalid params: params.session names the session to end");
			return;
		}
		if (e == NULL || e->s == NULL) {
			hub_none_result(&r, jsonrpc_str(scan, pa->session), pa->session.len);
		} else {
			/* One allocation, the id in it; a bounded number of them (a client that
			 * repeats it while the run ends). */
			bool room = e->n_waiters < SESSION_MAX_END_REPLIES;
			struct hub_waiter *w =
				id != NULL && room ? malloc(sizeof(*w) + it->id.len) : NULL;

			if (w != NULL) {
				w->port = p;
				w->id_len = it->id.len;
				memcpy(w->id, id, it->id.len);
				w->next = e->waiters;
				e->waiters = w;
				e->n_waiters++;
				p->n_waiting++;
			} else if (id != NULL && !room) {
				hub_error(h, p, NULL, id, it->id.len, RPC_SERVER_ERROR,
					  SESSION_END_REPLIES_FULL);
			} else if (id != NULL) {
				/* The end goes on; its result could not be awaited: said now. */
				hub_error(
					h, p, NULL, id, it->id.len, -32603,
					"Internal error: out of memory (the run is ended, but its "
					"result cannot be sent)");
			}
			e->end_asked = e->end_asked || e->owner == p;
			hub_end(e, pa->has_grace_ms ? pa->grace_ms : -1, NULL, 0, scan);
			return;
		}
	} else {
		if (id != NULL) {
			hub_error(h, p, NULL, id, it->id.len, -32601,
				  "Method not found (mcpmux takes mcpmux/list, mcpmux/stats, "
				  "mcpmux/endRun)");
		}
		sbuf_release(&r);
		return;
	}
	if (id != NULL) {
		reply_result(h, p, id, it->id.len, &r);
	}
	sbuf_release(&r);
}

/* ---- ports coming and going, and the end ---- */

void
hub_port_closed(struct hub *h, const struct hub_port *p, bool keep_kept, const char *reason)
{
	for (struct hub_entry *e = h->table, *next; e != NULL; e = next) {
		next = e->hh.next;
		if (e->owner != p) {
			continue;
		}
		if (e->kept && keep_kept) {
			(void)hub_set_owner(e, NULL); /* kept: waits for another port */
		} else if (e->s != NULL) {
			if (!e->s->end_requested) {
				/* (the first reason given is kept: hub_end()'s comes after) */
				if (reason != NULL) {
					session_set_end_reason(e->s, reason);
				}
				hub_end(e, -1, NULL, 0, NULL);
			}
		} else {
			hub_entry_free(e);
		}
	}
}

void
hub_port_forget(struct hub *h, const struct hub_port *p)
{
	for (struct hub_entry *e = h->table; e != NULL; e = e->hh.next) {
		for (struct hub_waiter **wp = &e->waiters; *wp != NULL;) {
			struct hub_waiter *w = *wp;

			if (w->port == p) {
				*wp = w->next;
				e->n_waiters--;
				w->port->n_waiting--;
				free(w);
			} else {
				wp = &w->next;
			}
		}
	}
}

void
hub_port_gone(struct hub *h, const struct hub_port *p)
{
	for (struct hub_entry *e = h->table; e != NULL; e = e->hh.next) {
		if (e->owner == p && e->s != NULL) {
			session_pause(e->s, false); /* nobody reads: no point in holding it */
		}
	}
}

void
hub_shutdown(struct hub *h)
{
	h->shutting_down = true;
	for (struct hub_entry *e = h->table, *next; e != NULL; e = next) {
		next = e->hh.next;
		if (e->s == NULL) {
			hub_entry_free(e);
		} else if (!e->s->end_requested) {
			session_set_end_reason(e->s, h->shutdown_reason != NULL ? h->shutdown_reason
										: "shutdown");
			hub_end(e, -1, NULL, 0, NULL);
		}
	}
	if (hub_is_empty(h) && h->on_empty != NULL) {
		h->on_empty(h, h->ctx);
	}
}

size_t
hub_n_unstarted(const struct hub *h)
{
	return HASH_COUNT(h->table) - h->n_live;
}

bool
hub_is_empty(const struct hub *h)
{
	return h->shutting_down && h->n_live == 0;
}
