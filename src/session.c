/*
 * session: one run of a server: requests in flight, bounds, idle timer, end of run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <utlist.h>
#include <uuid/uuid.h>

#include "mcpmux/cli.h"
#include "mcpmux/diag.h"
#include "mcpmux/jsonspan.h"
#include "mcpmux/metrics.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/status.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

/* An id in flight: its key (by JSON value), then its JSON text as first seen. */
struct pending {
	UT_hash_handle hh;
	double t;	/* when the first of them was seen */
	uint32_t count; /* requests in flight with this id */
	uint32_t key_len;
	uint32_t batch; /* the batch the first of them came in (session.batch_seq), 0: none */
	uint32_t lost;	/* of them, answered in a server's line too large (session_big_answer()) */
	size_t id_len;
	char data[]; /* key, then id text */
};

static inline const char *
pending_id(const struct pending *p)
{
	return p->data + p->key_len;
}

/*
 * Entries for ids that fit in PENDING_SMALL bytes (key and text: every usual id) come from
 * a free list: a request in flight costs no malloc() once the list has warmed up (a
 * malloc and a free were about 4% of a round trip).  At most PENDING_SPARE are kept.
 */
#define PENDING_SMALL 96
#define PENDING_SPARE 64
static struct pending *spare_head; /* linked through hh.next */
static size_t n_spare;

/*
 * An id longer than a scan keeps of it (JSONRPC_IDSCAN_KEPT): an answer in a line too
 * large to read whole knows it by its length, hash and first bytes only
 * (jsonrpc_idscan_is()).  Its entry is also in long_ids, by those and the table it is in,
 * so that each such answer finds its request at once, however many are in flight.  It
 * follows the entry's data, in the same allocation.
 */
struct long_id {
	UT_hash_handle hh;
	struct pending *p;
	bool indexed; /* in long_ids (it could not be, for want of memory) */
	unsigned char key[sizeof(uintptr_t) + 2 * sizeof(uint64_t) + JSONRPC_IDSCAN_KEPT];
};
static struct long_id *long_ids;

#define LONG_ID_ALIGN  _Alignof(struct long_id)
#define LONG_ID_OFF(n) (((n) + LONG_ID_ALIGN - 1) / LONG_ID_ALIGN * LONG_ID_ALIGN)

static struct long_id *
pending_long(const struct pending *p)
{
	if (p->id_len <= JSONRPC_IDSCAN_KEPT) {
		return NULL;
	}
	return (struct long_id *)(void *)((char *)(uintptr_t)p +
					  LONG_ID_OFF(sizeof(struct pending) + p->key_len +
						      p->id_len));
}

/* The key in long_ids of an id of table with this length, hash and first bytes. */
static void
long_id_key(unsigned char *key, struct pending *const *table, uint64_t total, uint64_t hash,
	    const char *head)
{
	uintptr_t owner = (uintptr_t)table;

	memcpy(key, &owner, sizeof(owner));
	memcpy(key + sizeof(owner), &total, sizeof(total));
	memcpy(key + sizeof(owner) + sizeof(total), &hash, sizeof(hash));
	memcpy(key + sizeof(owner) + 2 * sizeof(uint64_t), head, JSONRPC_IDSCAN_KEPT);
}

/* The request in flight in table that the answer scanned in sc answers, an id too long for sc. */
static struct pending *
ids_find_long(struct pending *const *table, const struct jsonrpc_idscan *sc)
{
	unsigned char key[sizeof(((struct long_id *)NULL)->key)];
	struct long_id *l = NULL;

	if (!sc->found || !sc->overflow || long_ids == NULL) {
		return NULL;
	}
	long_id_key(key, table, sc->id_total, sc->id_hash, sc->id);
	HASH_FIND(hh, long_ids, key, sizeof(key), l);
	return l != NULL ? l->p : NULL;
}

static struct pending *
pending_alloc(size_t data_len)
{
	if (data_len > JSONRPC_IDSCAN_KEPT) {
		/* (its id may be long: room for a struct long_id after it) */
		return malloc(LONG_ID_OFF(sizeof(struct pending) + data_len) +
			      sizeof(struct long_id));
	}
	if (data_len > PENDING_SMALL) {
		return malloc(sizeof(struct pending) + data_len);
	}
	struct pending *p = spare_head;

	if (p != NULL) {
		spare_head = p->hh.next;
		n_spare--;
		return p;
	}
	return malloc(sizeof(struct pending) + PENDING_SMALL);
}

static void
pending_release(struct pending *p)
{
	struct long_id *l = pending_long(p);

	if (l != NULL && l->indexed) {
		HASH_DEL(long_ids, l);
	}
	if (p->key_len + p->id_len <= PENDING_SMALL && n_spare < PENDING_SPARE) {
		p->hh.next = spare_head;
		spare_head = p;
		n_spare++;
		return;
	}
	free(p);
}

static uint64_t session_seq;
static struct session *live_head;	 /* every session not yet freed */
static struct jsonrpc_scanner out_scan;	 /* server lines: scanned one at a time */
static struct jsonrpc_scanner held_scan; /* client lines that waited: scanned again */
static struct sbuf msg;			 /* mcpmux's own answers, built one at a time */
static struct sbuf log_answers;		 /* a batch's answers and their ms, for its record */
static struct sbuf kept;		 /* a batch less its answers (jsonrpc_without_answers()) */
static struct sbuf taken;		 /* its answers to the fresh server's requests (the same) */

static void session_on_line(void *ctx, const char *line, size_t len);
static void line_ended(struct session *s);
static void session_on_big_begin(void *ctx, const char *head, size_t len);
static void session_on_big_more(void *ctx, const char *more, size_t len);
static void session_on_big_end(void *ctx, size_t total);
static void answer_lost(struct session *s, bool batch, const char *text);
static void session_on_exit(struct backend *b, void *owner);
static void session_on_done(struct backend *b, void *owner);
static void session_on_idle(struct ev_loop *loop, ev_timer *w, int revents);
static void session_on_stderr(struct backend *b, void *owner, const char *data, size_t len);
static void session_on_input_full(struct backend *b, void *owner, bool full);
static void session_on_stall(struct backend *b, void *owner);
static void session_on_suspend_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void session_on_write_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void session_on_done_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void session_on_replay_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void resume_start(struct session *s, bool yield);
static int start_server(struct session *s, bool yield);
static void arm_suspend(struct session *s, double seconds);
static void replay_start(struct session *s);
static void replay_fail(struct session *s, const char *why);
static void held_answer(struct session *s, const char *why);
static void run_done(struct session *s);

static const struct framer_sink server_sink = {
	.line = session_on_line,
	.big_begin = session_on_big_begin,
	.big_more = session_on_big_more,
	.big_end = session_on_big_end,
};

static const struct backend_hooks backend_hooks = {
	.on_exit = session_on_exit,
	.on_done = session_on_done,
	.on_input_full = session_on_input_full,
	.on_stall = session_on_stall,
	.on_stderr = session_on_stderr,
};

void
session_config_init(struct session_config *c, const struct mcpmux_options *o)
{
	*c = (struct session_config){
		.argv = o->command,
		/* wrap's COMMAND where a subcommand goes: a slip of one's name? */
		.not_found_hint = o->command_first ? cli_did_you_mean(o->command[0]) : "",
		.eof_grace = o->eof_grace_ms / 1000.,
		.term_grace = o->term_grace_ms / 1000.,
		.idle_timeout = o->idle_timeout_s,
		.idle_suspend = o->idle_suspend_s,
		.stall_timeout = o->stall_timeout_s,
		.kill_deadline = o->kill_deadline_ms / 1000.,
		.max_message = o->max_message,
		.max_queue = o->max_queue,
	};
}

void
session_new_id(char out[37])
{
	uuid_t u;

	uuid_generate(u);
	uuid_unparse_lower(u, out);
}

bool
session_id_valid(const char *id, size_t len)
{
	if (len == 0 || len > SESSION_ID_MAX) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '@' || c == '-')) {
			return false;
		}
	}
	return true;
}

/* ---- requests in flight ---- */

/*
 * A table of request ids, each with the time it was seen: the client's requests in flight
 * (answered with an error if the server dies; their latency for the traffic log) and the
 * server's (the latency of the client's answers).  Ids are keyed by JSON value, the way
 * clients match them.  Bounded: at SESSION_MAX_PENDING, or when memory runs out, an id
 * is not added (ids_add() says so: a client request that cannot be tracked is refused, not
 * forwarded).  An id in flight twice is counted twice: two answers are owed.
 */
static char *key_buf;
static size_t key_cap;

/* The key of id text (see jsonrpc_id_key()) in key_buf; 0 when there is none. */
static size_t
id_key(const char *id, size_t len)
{
	if (key_cap < JSONRPC_KEY_MAX(len)) {
		size_t cap = SYS_MAX(JSONRPC_KEY_MAX(len), 256);
		char *nb = realloc(key_buf, cap);

		if (nb == NULL) {
			return 0;
		}
		key_buf = nb;
		key_cap = cap;
	}
	return jsonrpc_id_key(id, len, key_buf);
}

/* The key is used: a buffer grown for a huge id is not kept (ids are mostly short). */
static void
id_key_done(void)
{
	if (key_cap > 4096) {
		free(key_buf);
		key_buf = NULL;
		key_cap = 0;
	}
}

/* Track an id; false when it could not be (memory, SESSION_MAX_PENDING). */
static bool
ids_add(struct pending **table, size_t *n, const char *id, size_t len, double t, uint32_t batch)
{
	struct pending *p;
	size_t klen = id_key(id, len);
	bool added;

	if (klen == 0 || *n >= SESSION_MAX_PENDING) {
		id_key_done();
		return false;
	}
	HASH_FIND(hh, *table, key_buf, klen, p);
	if (p != NULL) {
		p->count++;
		(*n)++;
		id_key_done();
		return true;
	}
	if ((p = pending_alloc(klen + len)) == NULL) {
		id_key_done();
		return false;
	}
	p->t = t;
	p->count = 1;
	p->batch = batch;
	p->lost = 0;
	p->key_len = (uint32_t)klen;
	p->id_len = len;
	memcpy(p->data, key_buf, klen);
	memcpy(p->data + klen, id, len);
	struct long_id *l = pending_long(p);

	if (l != NULL) {
		l->p = p;
		l->indexed = false;
	}
	TABLE_ADD(hh, *table, p->data, klen, p, added);
	id_key_done();
	if (!added) {
		pending_release(p); /* the table could not grow */
		return false;
	}
	if (l != NULL) {
		/* Not indexed (no memory): an answer too large to read whole misses it. */
		long_id_key(l->key, table, len, jsonrpc_id_hash(id, len), id);
		TABLE_ADD(hh, long_ids, l->key, sizeof(l->key), l, l->indexed);
	}
	(*n)++;
	return true;
}

static struct pending *
ids_find(struct pending *table, const char *id, size_t len)
{
	struct pending *p = NULL;
	size_t klen = id_key(id, len);

	if (klen > 0) {
		HASH_FIND(hh, table, key_buf, klen, p);
	}
	id_key_done();
	return p;
}

/*
 * How long ago a request was seen, in ms: never below 0 (a held line's time is
 * sys_mono(), which may be later than the turn's sys_now()).
 */
static double
pending_age_ms(const struct pending *p)
{
	return SYS_MAX((sys_now() - p->t) * 1000., 0.);
}

/*
 * A table that held many ids (its buckets grew past those of PENDING_MANY of them) is let
 * go, emptied or freed: the memory its entries took goes back to the system once mcpmux is
 * idle (sys_big_alloc), as a big message's does, however small the messages that filled it.
 */
#define PENDING_MANY 1024

static void
ids_let_go(const struct pending *table)
{
	if (table != NULL &&
	    (HASH_COUNT(table) >= PENDING_MANY || table->hh.tbl->num_buckets >= PENDING_MANY / 8)) {
		sys_big_alloc = true;
	}
}

/*
 * p out of its table and freed: a table so emptied is let go (its buckets are freed), as
 * ids_let_go() says, by its buckets alone (one entry left; uthash never shrinks them).
 */
static inline void
ids_drop(struct pending **table, struct pending *p)
{
	if (HASH_COUNT(*table) == 1 && (*table)->hh.tbl->num_buckets >= PENDING_MANY / 8) {
		sys_big_alloc = true;
	}
	HASH_DEL(*table, p);
	pending_release(p);
}

/* Forget one request with this id (answered, or cancelled); ms since it was seen, or -1. */
static double
ids_remove(struct pending **table, size_t *n, const char *id, size_t len)
{
	struct pending *p = ids_find(*table, id, len);
	double ms = -1;

	if (p != NULL) {
		ms = pending_age_ms(p);
		(*n)--;
		if (--p->count == 0) {
			ids_drop(table, p);
		}
	}
	return ms;
}

/*
 * The gone server's requests in flight, to where its owner keeps them (s->srv_gone), in
 * place of those kept there before: only the last server gone with requests in flight has
 * them kept (bounded as a server's are), each until it is answered.
 */
static void
srv_gone(struct session *s)
{
	struct pending *p, *tmp;

	if (s->srv_gone == NULL || s->srv_pending == NULL) {
		return;
	}
	session_ids_free(s->srv_gone);
	(void)snprintf(s->srv_gone->session, sizeof(s->srv_gone->session), "%s", s->id);
	HASH_ITER (hh, s->srv_pending, p, tmp) {
		// cppcheck-suppress uninitvar ; uthash iteration, filled by ids_add()
		for (uint32_t k = 0; k < p->count; k++) {
			if (!ids_add(&s->srv_gone->table, &s->srv_gone->n, pending_id(p), p->id_len,
				     p->t, 0)) {
				return; /* (at the bound, or out of memory: not known) */
			}
		}
	}
}

static double
pending_remove(struct session *s, const char *id, size_t len)
{
	return ids_remove(&s->pending, &s->n_pending, id, len);
}

/* The requests among a message's first k items are not in flight: it was not forwarded. */
static void
pending_drop(struct session *s, const struct jsonrpc_scanner *scan,
	     const struct jsonrpc_item *items, size_t k)
{
	for (size_t i = 0; i < k; i++) {
		if (items[i].kind == JSONRPC_REQUEST) {
			(void)pending_remove(s, jsonrpc_str(scan, items[i].id), items[i].id.len);
		}
	}
}

/*
 * A message's requests in flight, received at t (sys_mono()), in a batch (0: none): all
 * of them, or (out of memory) none, false.
 */
static bool
pending_add(struct session *s, const struct jsonrpc_scanner *scan, const struct jsonrpc_item *items,
	    size_t n, double t, uint32_t batch)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].kind == JSONRPC_REQUEST &&
		    !ids_add(&s->pending, &s->n_pending, jsonrpc_str(scan, items[i].id),
			     items[i].id.len, t, batch)) {
			pending_drop(s, scan, items, i);
			return false;
		}
	}
	return true;
}

static void
pending_free_all(struct pending **table)
{
	struct pending *p, *tmp;

	ids_let_go(*table);
	HASH_ITER (hh, *table, p, tmp) {
		HASH_DEL(*table, p);
		pending_release(p);
	}
}

/*
 * notifications/cancelled (alone or in a batch): the request it names will not be answered
 * (MCP: the receiver of a cancellation does not respond), so it is no longer in flight.
 */
static void
note_cancel(struct pending **table, size_t *n, const struct jsonrpc_scanner *scan)
{
	size_t k, len;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &k);

	for (size_t i = 0; i < k; i++) {
		const char *id = jsonrpc_cancels(scan, &items[i], &len);

		if (id != NULL) {
			(void)ids_remove(table, n, id, len);
		}
	}
}

/* Is its server being ended (the run's end, or its own)?  Its slot is on its way. */
static bool
server_going(const struct session *s)
{
	return s->end_requested || (s->backend != NULL && backend_is_ending(s->backend));
}

/*
 * Tell the pool when the server turns busy (something in flight, a line seen growing at
 * the last look, still_writing(), or a resume under way: it would not be given up,
 * session_is_idle()) or idle; one being ended is going (pool_going()) until its slot is
 * released.
 */
static void
busy_sync(struct session *s)
{
	bool busy = s->n_pending > 0 || s->n_srv_pending > 0 || s->writing ||
		    s->state == SESSION_RESUMING;

	if (s->slot != NULL && s->state != SESSION_SUSPENDING && !server_going(s) &&
	    busy != s->busy) {
		s->busy = busy;
		pool_busy(s->slot, busy);
	}
}

const struct session *
session_first(void)
{
	return live_head;
}

static void
live_unlink(struct session *s)
{
	if (s->prev_live != NULL) { /* (on the list: utlist's head's prev is its tail) */
		DL_DELETE2(live_head, s, prev_live, next_live);
		s->prev_live = s->next_live = NULL;
	}
}

pid_t
session_pid(const struct session *s)
{
	return s->backend != NULL ? s->backend->pid : 0;
}

const char *
session_state_name(const struct session *s)
{
	switch (s->state) {
	case SESSION_SUSPENDING:
		return s->end_requested ? "ending" : "suspending";
	case SESSION_SUSPENDED:
		return s->end_requested ? "ending" : "suspended";
	case SESSION_RESUMING:
		return s->end_requested ? "ending" : "resuming";
	case SESSION_WAITING:
		return s->end_requested ? "ending" : "waiting";
	case SESSION_RUNNING:
		break;
	}
	return s->backend != NULL && backend_is_ending(s->backend) ? "ending" : "running";
}

int
session_exit_code(const struct session *s)
{
	/* Suspended: its last server was ended by mcpmux, not by a failure of its own. */
	return s->backend != NULL ? backend_exit_code(s->backend) : 0;
}

void
session_set_end_reason(struct session *s, const char *reason)
{
	if (s->end_reason == NULL) {
		s->end_reason = reason;
	}
}

/* A message of mcpmux's own to the client, in msg. */
static void
deliver_own(struct session *s, double ms)
{
	if (msg.failed) {
		diag_error("session %s: out of memory: a message from mcpmux was lost", s->id);
		sbuf_reset(&msg); /* what it had grown to is given back */
		return;
	}
	if (tlog_enabled) {
		(void)jsonrpc_scan(&out_scan, msg.buf, msg.len);
		tlog_message(s->id, session_pid(s), TLOG_OUT, &out_scan, msg.buf, msg.len, ms);
	}
	s->hooks->deliver(s, msg.buf, msg.len, s->owner);
	sbuf_reset(&msg); /* a long one (a batch's errors) is given back now */
}

/* Answer a client request with a JSON-RPC error, from mcpmux. */
static void
answer_error(struct session *s, const char *id, size_t id_len, int code, const char *text,
	     double ms)
{
	sbuf_reset(&msg);
	rpcout_error(&msg, id, id_len, code, text);
	deliver_own(s, ms);
}

/* ---- client to server ---- */

/*
 * A client message that cannot reach a server, received at t: each of its requests gets
 * why (a batch's in one array), but those skip() leaves out; the rest is dropped.
 */
static void
message_refused(struct session *s, const struct jsonrpc_scanner *scan, const char *why, double t,
		bool (*skip)(void *ctx, const char *id, size_t id_len), void *ctx)
{
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);

	for (size_t i = 0; i < n; i++) {
		if (items[i].kind != JSONRPC_REQUEST) {
			diag_warn("session %s: %s: dropped a client %s", s->id, why,
				  jsonrpc_kind_name(items[i].kind));
		}
	}
	sbuf_reset(&msg);
	if (rpcout_error_each(&msg, scan, RPC_SERVER_ERROR, why, skip, ctx) > 0) {
		deliver_own(s, (sys_mono() - t) * 1000.);
	}
}

/*
 * The client is held back while the server's input queue, or the lines held for a server
 * to come, are at --max-queue: s->input_full, told through hooks->on_input_full().
 */
static void
input_sync(struct session *s)
{
	bool full = s->server_full || s->held_full;

	if (full != s->input_full) {
		s->input_full = full;
		if (s->hooks->on_input_full != NULL) {
			s->hooks->on_input_full(s, s->owner, full);
		}
	}
}

/*
 * Keep a client line until a server can take it (SUSPENDING, RESUMING).  Past
 * --max-queue of them, the client is held back (hooks->on_input_full).  A line that
 * cannot be kept (out of memory) is refused (false); those held before it stay.
 */
static bool
hold_line(struct session *s, const char *line, size_t len, const struct jsonrpc_scanner *scan)
{
	double t = sys_mono(); /* its answer's latency counts from now */
	size_t was = s->held.len;

	sbuf_add(&s->held, (const char *)&t, sizeof(t));
	sbuf_add(&s->held, line, len);
	sbuf_add(&s->held, "\n", 1);
	if (s->held.failed) {
		/* realloc() failed: the buffer holds what it held. */
		s->held.len = was;
		s->held.failed = false;
		if (s->held.buf != NULL) {
			s->held.buf[was] = '\0';
		}
		message_refused(s, scan, RPCOUT_NO_MEMORY, t, NULL, NULL);
		return false;
	}
	if (!s->held_full && s->held.len - s->held_off >= s->cfg->max_queue) {
		s->held_full = true;
		input_sync(s);
	}
	return true;
}

static void
held_release(struct session *s)
{
	sbuf_release(&s->held);
	s->held_off = 0;
	if (s->held_full) {
		s->held_full = false;
		input_sync(s);
	}
}

static const char *forward(struct session *s, const char *line, size_t len,
			   const struct jsonrpc_scanner *scan, double t);

/* The held line at off (not consumed: s->held_off += HELD_SIZE(len) does that). */
#define HELD_SIZE(len) (sizeof(double) + (len) + 1)
static const char *
held_at(const struct session *s, size_t off, size_t *len, double *t)
{
	const char *p = s->held.buf + off;

	memcpy(t, p, sizeof(*t));
	p += sizeof(*t);
	*len = (size_t)((const char *)memchr(p, '\n', s->held.len - off - sizeof(*t)) - p);
	return p;
}

static const char *
held_next(const struct session *s, size_t *len, double *t)
{
	return held_at(s, s->held_off, len, t);
}

/*
 * The held requests still in flight, into *live (the caller frees it): each held request
 * (a batch's too), less those a later held notifications/cancelled names, which no longer
 * wait for an answer, as when forwarded (note_cancel()).  Returns how many; *whole is
 * false when one could not be kept (memory, SESSION_MAX_PENDING): then none is taken as
 * cancelled.
 */
static size_t
held_live(const struct session *s, struct pending **live, bool *whole)
{
	size_t n = 0;

	*whole = true;
	for (size_t off = s->held_off; off < s->held.len;) {
		size_t len;
		double t;
		const char *p = held_at(s, off, &len, &t);
		size_t k;

		(void)jsonrpc_scan(&held_scan, p, len);
		const struct jsonrpc_item *items = jsonrpc_items(&held_scan, &k);

		for (size_t i = 0; i < k; i++) {
			if (items[i].kind == JSONRPC_REQUEST) {
				size_t before = n;

				(void)ids_add(live, &n, jsonrpc_str(&held_scan, items[i].id),
					      items[i].id.len, t, 0);
				*whole = *whole && n > before;
			}
		}
		note_cancel(live, &n, &held_scan);
		off += HELD_SIZE(len);
	}
	return n;
}

/* Is a held request still in flight?  Its client waits for the answer. */
static bool
held_request(const struct session *s)
{
	struct pending *live = NULL;
	bool whole;
	size_t n = held_live(s, &live, &whole);

	pending_free_all(&live);
	return n > 0 || !whole;
}

/*
 * Must the handshake be replayed before this line?  A fresh server hears it first,
 * unless the line is the client's own initialize.
 */
static bool
needs_replay(const struct session *s, const struct jsonrpc_scanner *scan)
{
	return s->fresh && s->backend != NULL && !backend_is_ending(s->backend) &&
	       handshake_ready(s->hs) &&
	       !(scan->kind == JSONRPC_REQUEST &&
		 jsonrpc_method_is(scan, &scan->one, "initialize"));
}

static void resume_finished(struct session *s);

/* The lines that waited, now that a server runs: forwarded in order. */
static void
held_flush(struct session *s)
{
	while (s->held_off < s->held.len && s->state == SESSION_RUNNING) {
		size_t len;
		double t;
		const char *p = held_next(s, &len, &t);

		(void)jsonrpc_scan(&held_scan, p, len);
		if (needs_replay(s, &held_scan)) {
			if (!s->resuming) {
				s->t_resume = sys_mono();
			}
			replay_start(s); /* the line waits on, for the replay's end */
			return;
		}
		if (s->resuming) {
			resume_finished(s); /* nothing to replay */
		}
		s->held_off += HELD_SIZE(len);
		forward(s, p, len, &held_scan, t);
	}
	if (s->held_off >= s->held.len) {
		held_release(s);
	}
}

/* The held requests still in flight (held_live()), as held_answer() takes them. */
struct held_live {
	struct pending **live;
	size_t *n;
};

/* Did the client cancel this held request (not in flight)?  Taken off the table if not. */
static bool
held_cancelled(void *ctx, const char *id, size_t id_len)
{
	struct held_live *h = ctx;

	return ids_remove(h->live, h->n, id, id_len) < 0;
}

/*
 * The lines that waited will not be sent: their requests get `why`, but those the client
 * cancelled meanwhile (nobody waits for their answer).
 */
static void
held_answer(struct session *s, const char *why)
{
	struct pending *live = NULL;
	bool whole;
	size_t n_live = held_live(s, &live, &whole);

	struct held_live ctx = { .live = &live, .n = &n_live };

	while (s->held_off < s->held.len) {
		size_t len;
		double t;
		const char *p = held_next(s, &len, &t);

		s->held_off += HELD_SIZE(len);
		(void)jsonrpc_scan(&held_scan, p, len);
		message_refused(s, &held_scan, why, t, whole ? held_cancelled : NULL, &ctx);
	}
	pending_free_all(&live);
	held_release(s);
}

/*
 * Send a line to the running server (or answer it when it cannot be).  NULL when sent, else
 * why not (its requests were answered with errors saying so).
 */
static const char *
forward(struct session *s, const char *line, size_t len, const struct jsonrpc_scanner *scan,
	double t)
{
	size_t n, n_req = 0;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);
	const char *why = NULL;

	/* Only requests count against the bound of those in flight: a notification (a
	 * cancellation among them) or an answer to the server adds none, and passes. */
	for (size_t i = 0; i < n; i++) {
		n_req += items[i].kind == JSONRPC_REQUEST;
	}
	/* A batch's requests are tagged together: in run_done(), their errors make one array. */
	uint32_t batch = 0;

	if (scan->kind == JSONRPC_BATCH && (batch = ++s->batch_seq) == 0) {
		batch = s->batch_seq = 1;
	}
	if (s->backend == NULL || backend_is_ending(s->backend) || s->backend->in_fd < 0) {
		why = s->backend != NULL && s->backend->stalled
			      ? "the server stopped reading its input: its run is ending"
			      : "the server's run is ending";
	} else if (s->n_pending + n_req > SESSION_MAX_PENDING) {
		why = "too many requests in flight";
	} else if (!pending_add(s, scan, items, n, t, batch)) {
		/* Untracked, its answer would be owed for ever if the server died. */
		why = RPCOUT_NO_MEMORY;
	}
	if (why == NULL && backend_send(s->backend, line, len) == -1) {
		why = errno == EPIPE ? "the server closed its input" : RPCOUT_NO_MEMORY;
		pending_drop(s, scan, items, n);
	}
	if (why != NULL) {
		message_refused(s, scan, why, t, NULL, NULL);
		return why;
	}
	s->fresh = false;
	handshake_observe_client(s->hs, scan, line, len);
	s->stats.bytes_in += len + 1;
	s->stats.msgs_in++;
	note_cancel(&s->pending, &s->n_pending, scan);
	busy_sync(s);
	return NULL;
}

/* Does the client's answer with this id answer a request of the server's in flight? */
static bool
srv_asked(void *ctx, const char *id, size_t id_len)
{
	const struct session *s = ctx;

	return ids_find(s->srv_pending, id, id_len) != NULL;
}

/* The request in table that the answer scanned in sc answers (an id too long for sc too). */
static const char *
ids_answered(struct pending *const *table, const struct jsonrpc_idscan *sc, size_t *len)
{
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(sc, &id_len);
	struct pending *p;

	if (id != NULL) {
		p = ids_find(*table, id, id_len);
	} else {
		p = ids_find_long(table, sc);
	}
	if (p == NULL) {
		return NULL;
	}
	*len = p->id_len;
	return pending_id(p);
}

const char *
session_srv_request(struct session *s, const struct jsonrpc_idscan *sc, size_t *len)
{
	return ids_answered(&s->srv_pending, sc, len);
}

const char *
session_srv_request_id(struct session *s, const char *id, size_t id_len, size_t *len)
{
	struct pending *p = ids_find(s->srv_pending, id, id_len);

	if (p == NULL) {
		return NULL;
	}
	*len = p->id_len;
	return pending_id(p);
}

bool
session_srv_answered(struct session *s, const char *id, size_t id_len)
{
	if (ids_remove(&s->srv_pending, &s->n_srv_pending, id, id_len) < 0) {
		return false;
	}
	busy_sync(s);
	return true;
}

size_t
session_ids_asked(struct session_ids *t, const struct jsonrpc_scanner *scan)
{
	size_t n, unkept = 0;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);

	for (size_t i = 0; i < n; i++) {
		if (items[i].kind == JSONRPC_REQUEST) {
			/* (one not added, at the bound or out of memory, is not known in flight) */
			bool full = t->n >= SESSION_MAX_PENDING;

			if (!ids_add(&t->table, &t->n, jsonrpc_str(scan, items[i].id),
				     items[i].id.len, sys_now(), 0) &&
			    !full) {
				unkept++;
			}
		}
	}
	note_cancel(&t->table, &t->n, scan);
	return unkept;
}

bool
session_ids_ask(struct session_ids *t, const struct jsonrpc_scanner *scan, size_t *n_kept)
{
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);

	*n_kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (items[i].kind != JSONRPC_REQUEST) {
			continue;
		}
		if (t->n >= SESSION_MAX_PENDING) {
			return true; /* (this one and those after it are not known in flight) */
		}
		if (!ids_add(&t->table, &t->n, jsonrpc_str(scan, items[i].id), items[i].id.len,
			     sys_now(), 0)) {
			/* Out of memory: those kept before it are taken back. */
			session_ids_unask(t, scan, *n_kept);
			*n_kept = 0;
			return false;
		}
		(*n_kept)++;
	}
	return true;
}

void
session_ids_unask(struct session_ids *t, const struct jsonrpc_scanner *scan, size_t n_kept)
{
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);

	for (size_t i = 0; i < n && n_kept > 0; i++) {
		if (items[i].kind == JSONRPC_REQUEST) {
			(void)ids_remove(&t->table, &t->n, jsonrpc_str(scan, items[i].id),
					 items[i].id.len);
			n_kept--;
		}
	}
}

void
session_ids_cancelled(struct session_ids *t, const struct jsonrpc_scanner *scan)
{
	note_cancel(&t->table, &t->n, scan);
}

void
session_ids_answered(struct session_ids *t, const struct jsonrpc_scanner *scan)
{
	size_t n;
	const struct jsonrpc_item *items;

	if (t->n == 0) {
		return; /* (most of the time: nothing to look for) */
	}
	items = jsonrpc_items(scan, &n);
	for (size_t i = 0; i < n; i++) {
		if (items[i].kind == JSONRPC_RESPONSE || items[i].kind == JSONRPC_ERROR) {
			(void)ids_remove(&t->table, &t->n, jsonrpc_str(scan, items[i].id),
					 items[i].id.len);
		}
	}
}

const char *
session_ids_find(struct session_ids *t, const struct jsonrpc_idscan *sc, size_t *len)
{
	return ids_answered(&t->table, sc, len);
}

void
session_ids_remove(struct session_ids *t, const char *id, size_t len)
{
	(void)ids_remove(&t->table, &t->n, id, len);
}

void
session_ids_free(struct session_ids *t)
{
	pending_free_all(&t->table);
	t->n = 0;
}

bool
session_ids_has(const struct session_ids *t, const char *id, size_t len)
{
	return t->n > 0 && ids_find(t->table, id, len) != NULL;
}

void
session_keep_srv_gone(struct session *s, struct session_ids *t)
{
	s->srv_gone = t;
}

const char *
session_from_client(struct session *s, const char *line, size_t len,
		    const struct jsonrpc_scanner *scan)
{
	size_t dropped = 0;
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);
	double ms = -1; /* a lone answer's, for the traffic log (a batch's: log_answers) */
	bool stray = false, split = true;

	s->last_activity = sys_now();
	status_traffic(s->last_activity);
	if (s->state == SESSION_RESUMING) {
		/* Before the answers are taken off the table below: those to no request of the
		 * fresh server answer one of the server that is gone. */
		if (scan->kind != JSONRPC_BATCH) {
			stray = (scan->kind == JSONRPC_RESPONSE || scan->kind == JSONRPC_ERROR) &&
				!srv_asked(s, jsonrpc_str(scan, scan->one.id), scan->one.id.len);
		} else {
			split = jsonrpc_without_answers(scan, line, len, srv_asked, s, &kept,
							&held_scan, &taken, &dropped);
		}
	}
	/* The answers, alone or in a batch: the server's requests they answer are done. */
	for (size_t i = 0; i < n; i++) {
		if (items[i].kind == JSONRPC_RESPONSE || items[i].kind == JSONRPC_ERROR) {
			const char *id = jsonrpc_str(scan, items[i].id);
			double age =
				ids_remove(&s->srv_pending, &s->n_srv_pending, id, items[i].id.len);

			if (scan->kind != JSONRPC_BATCH) {
				ms = age;
			} else if (age >= 0 && tlog_enabled) {
				tlog_answer(&log_answers, id, items[i].id.len, age);
			}
		}
	}
	if (tlog_enabled) {
		tlog_message_answers(s->id, session_pid(s), TLOG_IN, scan, line, len, ms,
				     &log_answers);
		sbuf_reset(&log_answers); /* (its memory given back after a long batch) */
	}
	switch (s->state) {
	case SESSION_SUSPENDED:
	case SESSION_SUSPENDING:
	case SESSION_WAITING:
		if (jsonrpc_answers_only(scan)) {
			/* Their requests came from a server that is gone or going: nobody waits,
			 * and a fresh server would get answers to requests it never sent. */
			if (scan->kind == JSONRPC_BATCH) {
				diag_warn(
					"session %s: a batch of %zu answers for a server that was "
					"suspended: dropped",
					s->id, scan->n_items);
			} else {
				diag_warn("session %s: an answer for a server that was suspended: "
					  "dropped",
					  s->id);
			}
			return NULL;
		}
		/* The answers of a batch that holds other messages too: dropped as well. */
		if (!jsonrpc_without_answers(scan, line, len, NULL, NULL, &kept, &held_scan, NULL,
					     &dropped)) {
			message_refused(s, scan, RPCOUT_NO_MEMORY, sys_mono(), NULL, NULL);
			sbuf_reset(&kept);
			return RPCOUT_NO_MEMORY;
		}
		if (dropped > 0) {
			diag_warn("session %s: %zu answers in a batch for a server that was "
				  "suspended: dropped (its other messages are kept)",
				  s->id, dropped);
			line = kept.buf;
			len = kept.len;
			scan = &held_scan;
		}
		/* A line refused (out of memory) is answered: no server starts for it. */
		bool held = hold_line(s, line, len, scan);

		sbuf_reset(&kept);
		if (!held) {
			return RPCOUT_NO_MEMORY;
		}
		if (s->state == SESSION_SUSPENDED && !s->end_requested) {
			resume_start(s, false);
		}
		return NULL;
	case SESSION_RESUMING:
		/* Answers to no request of the fresh server are for the one that is gone:
		 * dropped, as above.  Those to its own requests go on to it at once (it may be
		 * waiting for them: roots/list, ...); the rest of their batch is held. */
		if (!split) {
			message_refused(s, scan, RPCOUT_NO_MEMORY, sys_mono(), NULL, NULL);
			sbuf_reset(&kept);
			sbuf_reset(&taken);
			return RPCOUT_NO_MEMORY;
		}
		if (stray) {
			diag_warn("session %s: an answer for a server that was suspended: dropped",
				  s->id);
			return NULL;
		}
		if (dropped > 0) {
			diag_warn("session %s: %zu answers in a batch for a server that was "
				  "suspended: dropped (its other messages are kept)",
				  s->id, dropped);
		}
		if (dropped > 0 || (taken.len > 0 && kept.len > 0)) {
			bool rest_held =
				kept.len == 0 || hold_line(s, kept.buf, kept.len, &held_scan);
			const char *why = NULL;

			/* Its own answers go on, the rest held or not: it waits for them. */
			if (taken.len > 0) {
				(void)jsonrpc_scan(&held_scan, taken.buf, taken.len);
				why = forward(s, taken.buf, taken.len, &held_scan,
					      s->last_activity);
				busy_sync(s);
			}
			sbuf_reset(&kept);
			sbuf_reset(&taken);
			return rest_held ? why : RPCOUT_NO_MEMORY;
		}
		sbuf_reset(&taken); /* (answers to it alone: the batch goes on as it came) */
		if (jsonrpc_answers_only(scan)) {
			break; /* the fresh server may be waiting for them (roots/list, ...) */
		}
		return hold_line(s, line, len, scan) ? NULL : RPCOUT_NO_MEMORY;
	case SESSION_RUNNING:
		if (needs_replay(s, scan)) {
			/* A server that never heard the client's handshake: it hears it first
			 * (not for a line refused: the next one starts the replay). */
			if (!hold_line(s, line, len, scan)) {
				return RPCOUT_NO_MEMORY;
			}
			s->t_resume = sys_mono();
			replay_start(s);
			return NULL;
		}
		break;
	}
	const char *why = forward(s, line, len, scan, s->last_activity);

	busy_sync(s); /* an answer to the server's request */
	return why;
}

/* ---- suspend and resume ---- */

static void
log_event_ms(const struct session *s, const char *event, const char *key, double v)
{
	if (tlog_enabled) {
		char f[64];
		int n = snprintf(f, sizeof(f), "\"%s\":%.0f", key, v);

		tlog_event(s->id, session_pid(s), event, f, (size_t)n);
	}
}

/*
 * A server for a suspended session (the handshake is replayed to it: held_flush()); yield:
 * its pool slot was given up a moment ago, which a waiter may be owed (start_server()).
 */
static void
resume_start(struct session *s, bool yield)
{
	s->t_resume = sys_mono();
	s->resuming = true;
	if (start_server(s, yield) == -1) {
		char why[160];

		const char *advice = sys_spawn_advice(errno);

		(void)snprintf(why, sizeof(why), "the server could not be restarted: %s",
			       strerror(errno));
		diag_error("session %s: %s%s", s->id, why, advice);
		s->resuming = false;
		held_answer(s, why);
		return;
	}
	if (s->state == SESSION_RUNNING) {
		/* (a child whose exec failed was said as such at its spawn: backend.c) */
		if (s->backend->exec_errno == 0) {
			diag_info("session %s: resuming (pid %d)", s->id, (int)s->backend->pid);
		}
		held_flush(s);
	}
}

/* The fresh server took the session over. */
static void
resume_finished(struct session *s)
{
	double ms = (sys_mono() - s->t_resume) * 1000.;

	s->resuming = false;
	s->n_resumes++;
	status_changed();
	diag_info("session %s: resumed in %.0f ms", s->id, ms);
	log_event_ms(s, "resumed", "ms", ms);
	if (s->hooks->on_resumed != NULL) {
		s->hooks->on_resumed(s, s->owner, ms);
	}
}

static bool
send_replay(struct session *s, const struct sbuf *b)
{
	if (b->failed || backend_send(s->backend, b->buf, b->len) == -1) {
		replay_fail(s, "the restarted server could not be sent the handshake");
		return false;
	}
	return true;
}

static void
replay_start(struct session *s)
{
	struct sbuf b = { 0 };

	s->state = SESSION_RESUMING;
	s->replay_wait = 0;
	ev_timer_set(&s->replay_w, session_replay_deadline(s->cfg), 0.);
	ev_timer_start(s->loop, &s->replay_w);
	busy_sync(s);
	if (s->hs->subs_lost > 0) {
		diag_warn(
			"session %s: %lu resource subscriptions (at most; counted as asked) were "
			"not kept (more than %d, or out of memory): the fresh server does not get "
			"them",
			s->id, s->hs->subs_lost, HANDSHAKE_SUBS);
	}
	char id[64];

	handshake_replay_init(s->hs, &b, id, sizeof(id));
	free(s->replay_id);
	s->replay_id = strdup(id);
	if (s->replay_id == NULL) {
		replay_fail(s, "the restarted server could not be sent the handshake (out of "
			       "memory)");
	} else {
		(void)send_replay(s, &b);
	}
	sbuf_release(&b);
}

/* Every replayed request is answered: the fresh server takes over. */
static void
replay_done(struct session *s)
{
	double ms = (sys_mono() - s->t_resume) * 1000.;

	ev_timer_stop(s->loop, &s->replay_w);
	s->state = SESSION_RUNNING;
	s->fresh = false;
	/* Its idle timer may have come and gone during a slow replay: it counts from now. */
	arm_suspend(s, s->cfg->idle_suspend);
	if (s->resuming) {
		resume_finished(s);
	} else {
		diag_info("session %s: the client's handshake replayed to the server in %.0f ms",
			  s->id, ms);
		log_event_ms(s, "replayed", "ms", ms);
	}
	held_flush(s);
	busy_sync(s);
}

/* The replayed initialize was accepted: the rest of the replay. */
static void
replay_rest(struct session *s)
{
	struct sbuf b = { 0 };
	bool is_request;
	char id[64];

	free(s->replay_id);
	s->replay_id = NULL;
	for (size_t k = 0;; k++) {
		sbuf_reset(&b);
		if (!handshake_replay_next(s->hs, k, &b, &is_request, id, sizeof(id))) {
			break;
		}
		if (!send_replay(s, &b)) {
			sbuf_release(&b);
			return;
		}
		s->replay_wait += is_request;
	}
	sbuf_release(&b);
	if (s->replay_wait == 0) {
		replay_done(s);
	}
}

/*
 * The fresh server cannot take the session over: the waiting requests get why, and the
 * session is suspended again (the next message tries again).
 */
static void
replay_fail(struct session *s, const char *why)
{
	ev_timer_stop(s->loop, &s->replay_w);
	if (s->backend == NULL || s->backend->exec_errno == 0) {
		diag_warn("session %s: %s", s->id, why);
	} /* else said at the spawn, once until it changes (exec_say()) */
	if (tlog_enabled) {
		sbuf_reset(&msg);
		sbuf_adds(&msg, "\"reason\":");
		sbuf_add_json_string(&msg, why, strlen(why));
		if (!msg.failed) {
			tlog_event(s->id, session_pid(s), "resume-failed", msg.buf, msg.len);
		}
	}
	held_answer(s, why);
	free(s->replay_id);
	s->replay_id = NULL;
	s->replay_wait = 0;
	s->state = SESSION_SUSPENDING;
	s->suspend_why = "resume-failed";
	if (s->slot != NULL) {
		pool_going(s->slot);
	}
	if (s->backend != NULL) {
		backend_end(s->backend, -1);
	}
}

double
session_replay_deadline(const struct session_config *cfg)
{
	return cfg->stall_timeout > 0 ? cfg->stall_timeout : SESSION_REPLAY_DEADLINE;
}

/* The fresh server did not answer the replay in time: it cannot take the session over. */
static void
session_on_replay_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = container_of(w, struct session, replay_w);
	char why[160];

	(void)revents;
	if (s->state != SESSION_RESUMING || s->end_requested) {
		return; /* its run is ending: run_done() answers the held requests */
	}
	if (s->paused) {
		/* Its answer may wait behind output the client does not read: not its fault. */
		ev_timer_set(w, session_replay_deadline(s->cfg), 0.);
		ev_timer_start(loop, w);
		return;
	}
	(void)snprintf(why, sizeof(why),
		       "the restarted server did not answer the handshake replay in %g s",
		       session_replay_deadline(s->cfg));
	replay_fail(s, why);
}

/*
 * A server line while RESUMING, or an answer to a replayed request: true when consumed.
 * While RESUMING the fresh server was sent the replay alone, so each of its answers is
 * the replay's, under whatever id it came (null: a server that could not read it).
 */
static bool
replay_answer(struct session *s, const char *line, size_t len)
{
	const struct jsonrpc_item *it = &out_scan.one;
	const char *id = jsonrpc_str(&out_scan, it->id);
	bool hearing = s->state == SESSION_RESUMING && !s->end_requested;

	if ((out_scan.kind != JSONRPC_RESPONSE && out_scan.kind != JSONRPC_ERROR) ||
	    (!hearing && !handshake_is_replay_id(id, it->id.len)) ||
	    ids_find(s->pending, id, it->id.len) != NULL) {
		/* (most answers: no replay heard, nor its id; and a client that used such an
		 * id itself gets its answer) */
		return false;
	}
	if (!hearing) {
		return true; /* late, or its run is ending (run_done() answers): dropped */
	}
	if (s->replay_id != NULL) {
		char why[256];
		const char *bad;

		if (out_scan.kind == JSONRPC_RESPONSE &&
		    (strlen(s->replay_id) != it->id.len ||
		     memcmp(s->replay_id, id, it->id.len) != 0)) {
			(void)snprintf(why, sizeof(why),
				       "the restarted server answered initialize under another id "
				       "(%.*s)",
				       (int)SYS_MIN(it->id.len, 64), id);
			bad = why;
		} else {
			bad = handshake_check_init(s->hs, &out_scan, line, len, why, sizeof(why));
		}
		if (bad != NULL) {
			replay_fail(s, bad);
		} else {
			replay_rest(s);
		}
		return true;
	}
	if (out_scan.kind == JSONRPC_ERROR) {
		diag_warn("session %s: the restarted server refused a replayed request: %.*s",
			  s->id, (int)SYS_MIN(len, 200), line);
	}
	if (s->replay_id == NULL && s->replay_wait > 0 && --s->replay_wait == 0) {
		replay_done(s);
	}
	return true;
}

/* ---- server to client ---- */

/*
 * A batch from a server that hears the replay, with answers to it (replay_answer()):
 * those are mcpmux's own, so it is taken apart, each element as a line of its own.
 * false when it holds none (it goes on whole).
 */
static bool
replay_batch(struct session *s, const char *line, size_t len)
{
	const char *p = line, *end = line + len, *el;
	size_t el_len;
	bool ours = false;

	if (s->state != SESSION_RESUMING || s->end_requested) {
		return false;
	}
	for (size_t i = 0; i < out_scan.n_items && !ours; i++) {
		const struct jsonrpc_item *it = &out_scan.items[i];

		ours = (it->kind == JSONRPC_RESPONSE || it->kind == JSONRPC_ERROR) &&
		       ids_find(s->pending, jsonrpc_str(&out_scan, it->id), it->id.len) == NULL;
	}
	if (!ours) {
		return false;
	}
	while (jsonspan_element(&p, end, &el, &el_len)) {
		if (*el == '{') {
			session_on_line(s, el, el_len); /* out_scan is scanned again */
		} else {
			diag_warn("session %s: server batch element that is not a message: dropped",
				  s->id);
		}
	}
	return true;
}

/*
 * The request in flight that the answer in text answers, if any, is marked lost.  One
 * under an id of no request in flight, from a server that hears the replay, is the
 * replay's (as replay_answer() takes it): counted in *replay.
 */
static bool
refused_answer(struct session *s, const char *text, size_t len, size_t *replay)
{
	size_t id_len;
	const char *id = jsonrpc_answer_id(text, len, &id_len);
	struct pending *p = id != NULL ? ids_find(s->pending, id, id_len) : NULL;

	if (id != NULL && p == NULL && s->state == SESSION_RESUMING && !s->end_requested) {
		(*replay)++;
		return false;
	}
	if (p == NULL || p->lost >= p->count) {
		return false;
	}
	p->lost++;
	return true;
}

/*
 * n answers that are not JSON from a server that hears the replay: one to the replayed
 * initialize fails the replay at once (it would wait for its deadline, then say the
 * server did not answer); one to a later replayed request counts as answered, as an
 * error to it does (replay_answer()).
 */
static void
refused_replay(struct session *s, size_t n)
{
	const char *fault = out_scan.error != NULL ? out_scan.error : "not valid JSON";

	if (s->state != SESSION_RESUMING || s->end_requested) {
		return;
	}
	if (s->replay_id != NULL) {
		char why[256];

		(void)snprintf(why, sizeof(why),
			       "the restarted server's answer to the replay is not valid JSON: %s",
			       fault);
		replay_fail(s, why);
		return;
	}
	diag_warn("session %s: the restarted server's answer to a replayed request is not "
		  "valid JSON: %s",
		  s->id, fault);
	for (; n > 0 && s->replay_wait > 0; n--) {
		if (--s->replay_wait == 0) {
			replay_done(s);
		}
	}
}

/*
 * A server's line refused as not JSON (invalid UTF-8, a NUL, too deep, ...): the
 * client's requests in flight that it answers (its id, each answer's of a batch, or
 * each's of objects one after the other on the line, as jsonrpc_answer_id() finds them) get an
 * error in its place at once, as those of a line too large do (answer_lost()): they would wait for
 * ever.  A line that holds no such id, or the id of no request in flight, changes nothing.
 */
static void
refused_answers(struct session *s, const char *line, size_t len)
{
	const char *p = line, *end = line + len, *el;
	size_t el_len, replay = 0;
	bool batch, lost = false;

	p = jsonspan_ws(p, end);
	batch = p < end && *p == '[';
	while (batch && jsonspan_element(&p, end, &el, &el_len)) {
		lost |= refused_answer(s, el, el_len, &replay);
	}
	/* An object, or several one after the other ("{...} {...}", not JSON): each's. */
	while (!batch && p < end && *p == '{') {
		const char *next = jsonspan_skip(p, end);

		lost |= refused_answer(s, p, (size_t)((next != NULL ? next : end) - p), &replay);
		p = next != NULL ? jsonspan_ws(next, end) : end;
	}
	if (lost) {
		char text[160];

		(void)snprintf(text, sizeof(text), "the server's answer could not be forwarded: %s",
			       out_scan.error != NULL ? out_scan.error : "not valid JSON");
		answer_lost(s, batch, text);
		busy_sync(s);
	}
	if (replay > 0) {
		refused_replay(s, replay);
	}
}

static void
session_on_line(void *ctx, const char *line, size_t len)
{
	struct session *s = ctx;
	enum jsonrpc_kind kind = jsonrpc_scan_line(&out_scan, line, len);

	s->last_activity = sys_now();
	status_traffic(s->last_activity);
	line_ended(s);
	if (kind == JSONRPC_BATCH && replay_batch(s, line, len)) {
		return; /* each element went its own way */
	}
	if (kind != JSONRPC_INVALID_JSON && replay_answer(s, line, len)) {
		return; /* an answer to the handshake's replay: mcpmux's own */
	}
	if (kind == JSONRPC_INVALID_JSON || !out_scan.top_container) {
		/* A banner or a debug print on stdout: it would break the client. */
		if (tlog_enabled) {
			tlog_message(s->id, session_pid(s), TLOG_OUT, NULL, line, len, -1);
		}
		diag_warn("session %s: server wrote a line that is not JSON-RPC (not forwarded): "
			  "%.*s",
			  s->id, (int)SYS_MIN(len, 300), line);
		if (kind == JSONRPC_INVALID_JSON) {
			refused_answers(s, line, len);
		}
		return;
	}
	double ms = -1;

	if (kind == JSONRPC_RESPONSE || kind == JSONRPC_ERROR) {
		ms = pending_remove(s, jsonrpc_str(&out_scan, out_scan.one.id),
				    out_scan.one.id.len);
		if (ms >= 0) {
			metrics_hist_observe(&metrics_latency, ms / 1000.);
		}
	} else if (kind == JSONRPC_REQUEST) {
		/* Tracked always: a server waiting for an answer is not idle (--idle-suspend). */
		(void)ids_add(&s->srv_pending, &s->n_srv_pending,
			      jsonrpc_str(&out_scan, out_scan.one.id), out_scan.one.id.len,
			      s->last_activity, 0);
	} else if (kind == JSONRPC_NOTIFICATION) {
		note_cancel(&s->srv_pending, &s->n_srv_pending, &out_scan);
	} else if (kind == JSONRPC_BATCH) {
		for (size_t i = 0; i < out_scan.n_items; i++) {
			const struct jsonrpc_item *it = &out_scan.items[i];
			const char *id = jsonrpc_str(&out_scan, it->id);

			if (it->kind == JSONRPC_RESPONSE || it->kind == JSONRPC_ERROR) {
				double age = pending_remove(s, id, it->id.len);

				if (age >= 0) {
					metrics_hist_observe(&metrics_latency, age / 1000.);
				}
				if (age >= 0 && tlog_enabled) {
					tlog_answer(&log_answers, id, it->id.len, age);
				}
			} else if (it->kind == JSONRPC_REQUEST) {
				ids_add(&s->srv_pending, &s->n_srv_pending,
					jsonrpc_str(&out_scan, it->id), it->id.len,
					s->last_activity, 0);
			}
		}
		note_cancel(&s->srv_pending, &s->n_srv_pending, &out_scan);
	}
	busy_sync(s);
	if (kind == JSONRPC_RESPONSE || kind == JSONRPC_ERROR || kind == JSONRPC_BATCH) {
		handshake_observe_server(s->hs, &out_scan, line, len);
	}
	if (tlog_enabled) {
		tlog_message_answers(s->id, session_pid(s), TLOG_OUT, &out_scan, line, len, ms,
				     kind == JSONRPC_BATCH ? &log_answers : NULL);
		sbuf_reset(&log_answers); /* (its memory given back after a long batch) */
	}
	s->stats.bytes_out += len + 1;
	s->stats.msgs_out++;
	s->hooks->deliver(s, line, len, s->owner);
}

/*
 * A server's line too large to forward, as it passes (alone, or each element of a
 * batch): the request an answer in it answers is marked lost, to get an error in its place.
 */
static void
session_big_answer(void *ctx, const struct jsonrpc_idscan *sc)
{
	struct session *s = ctx;
	size_t id_len = 0;
	const char *id = jsonrpc_idscan_id(sc, &id_len);
	struct pending *p;

	if (!sc->found || !jsonrpc_idscan_is_answer(sc)) {
		return; /* a request of the server's, or a notification: in its numbering */
	} else if (id != NULL) {
		p = ids_find(s->pending, id, id_len);
	} else {
		/* An id too long to be kept whole: the request that wrote it so. */
		p = ids_find_long(&s->pending, sc);
	}
	if (p != NULL && p->lost < p->count) {
		p->lost++;
	}
}

static void
session_on_big_begin(void *ctx, const char *head, size_t len)
{
	struct session *s = ctx;
	size_t i = 0;

	while (i < len && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r')) {
		i++;
	}
	/* A batch: its elements are scanned as messages of their own, each answer among
	 * them as it ends (session_big_answer()). */
	s->big_batch = i < len && head[i] == '[';
	if (s->big_batch) {
		i++;
	} else {
		i = 0;
	}
	jsonrpc_idscan_init(&s->big_id);
	s->big_id.batch = s->big_batch;
	s->big_id.on_element = session_big_answer;
	s->big_id.ctx = s;
	jsonrpc_idscan_feed(&s->big_id, head + i, len - i);
}

static void
session_on_big_more(void *ctx, const char *more, size_t len)
{
	struct session *s = ctx;

	jsonrpc_idscan_feed(&s->big_id, more, len);
}

static void
session_on_big_end(void *ctx, size_t total)
{
	struct session *s = ctx;
	char text[160];

	s->last_activity = sys_mono();
	line_ended(s);
	if (rpcout_dropped(text, sizeof(text), "the server's", total, s->cfg->max_message, 0)) {
		/* Within the bound: the framer had no memory to hold it (framer_feed()). */
		diag_error("session %s: %s; not forwarded", s->id, text);
	} else {
		diag_warn("session %s: %s; not forwarded", s->id, text);
		tlog_oversize(s->id, session_pid(s), TLOG_OUT, total);
	}
	/* An answer still in the scanner: the message alone, or a batch's last, cut short.
	 * A request of the server's (or a notification) is passed over: its id, if any, is
	 * in the server's numbering, not the client's, and answers none of the client's. */
	session_big_answer(s, &s->big_id);
	answer_lost(s, s->big_batch, text);
	busy_sync(s);
}

/* ---- lifecycle ---- */

/*
 * A server command that cannot be executed is said on stderr, in every mode: the first
 * time, then again only when what is said changes (another error, another interpreter
 * missing) or after a server that did start.  A client that tries again and again (each
 * try a session of its own in serve) does not repeat it.
 */
static char exec_said[1024]; /* the last one said, "" after a start */

static void
exec_say(const struct backend *b)
{
	char buf[160];
	const char *text = backend_exec_text(b, buf, sizeof(buf));

	if (b->exec_errno == 0) {
		exec_said[0] = '\0';
	} else if (strncmp(text, exec_said, sizeof(exec_said) - 1) != 0) {
		diag_error_each("%s", text); /* (each a change: not summed up) */
		(void)snprintf(exec_said, sizeof(exec_said), "%s", text);
	}
}

/* Start a server for s now.  0, or -1 with errno set. */
static int
spawn_now(struct session *s)
{
	const struct session_config *cfg = s->cfg;
	struct backend_config bc = {
		.argv = cfg->argv,
		.not_found_hint = cfg->not_found_hint,
		.cookie = s->id,
		.eof_grace = cfg->eof_grace,
		.term_grace = cfg->term_grace,
		.max_message = cfg->max_message,
		.max_queue = cfg->max_queue,
		.stall_timeout = cfg->stall_timeout,
		.kill_deadline = cfg->kill_deadline,
		.claim_orphans = cfg->claim_orphans,
		/* Also when its stderr, mcpmux's, was made non-blocking (sys.h). */
		.capture_stderr = tlog_enabled || sys_stdio_any_shared(),
	};

	s->backend = backend_spawn(s->loop, &bc, &server_sink, &backend_hooks, s);
	if (s->backend == NULL) {
		int err = errno;

		pool_release(s->slot);
		s->slot = NULL;
		errno = err;
		return -1;
	}
	s->state = SESSION_RUNNING;
	s->fresh = true;
	s->busy = false;
	ev_timer_stop(s->loop, &s->write_w);
	s->writing = false;
	s->out_seen = 0;
	if (s->paused) {
		backend_pause(s->backend, true);
	}
	tlog_event(s->id, s->backend->pid, "started", NULL, 0);
	exec_say(s->backend);
	arm_suspend(s, s->cfg->idle_suspend);
	status_changed();
	return 0;
}

static bool
slot_suspend(void *ctx)
{
	struct session *s = ctx;

	if (session_suspend(s, "pool")) {
		return true;
	}
	if (server_going(s) && s->slot != NULL) {
		/* Its server is being ended already (it ended its run, or ends by itself): the
		 * slot is on its way, said at once, or the asker would ask again at each look. */
		pool_going(s->slot);
	}
	return false;
}

static void slot_granted(struct pool_slot *slot, void *ctx);

static const struct pool_slot_ops slot_ops = {
	.granted = slot_granted,
	.suspend = slot_suspend,
};

/*
 * Start a server for s (at creation, and to resume): now, or once its pool grants a
 * slot (then s is WAITING).  yield: s gave its slot up a moment ago (a suspend), maybe
 * to a waiter of another instance that asked for it or waits for it: that one has it
 * first (pool_want()).  0, or -1 with errno set.
 */
static int
start_server(struct session *s, bool yield)
{
	if (s->cfg->pool != NULL && s->slot == NULL) {
		bool granted;

		s->slot = pool_want(s->cfg->pool, &slot_ops, s, yield, &granted);
		if (s->slot == NULL) {
			return -1; /* out of memory (ENOMEM): refused, not started uncounted */
		}
		if (!granted) {
			if (yield) {
				diag_info(
					"session %s: waiting behind whoever waits for the slot its "
					"server gave up",
					s->id);
			} else {
				diag_info(
					"session %s: its pool is full: waiting for an idle server "
					"to be suspended",
					s->id);
			}
			s->state = SESSION_WAITING;
			status_changed();
			return 0;
		}
	}
	return spawn_now(s);
}

static void
slot_granted(struct pool_slot *slot, void *ctx)
{
	struct session *s = ctx;

	(void)slot;
	if (s->end_requested || s->state != SESSION_WAITING) {
		/* Ended while it waited (session_end() gave the slot back; or about to): no
		 * server for it. */
		pool_release(s->slot);
		s->slot = NULL;
		return;
	}
	if (spawn_now(s) == -1) {
		char why[160];

		const char *advice = sys_spawn_advice(errno);

		(void)snprintf(why, sizeof(why), "the server could not be started: %s",
			       strerror(errno));
		diag_error("session %s: %s%s", s->id, why, advice);
		s->state = SESSION_SUSPENDED; /* the next message tries again */
		s->resuming = false;
		held_answer(s, why);
		return;
	}
	if (s->backend->exec_errno == 0) { /* (else said at its spawn: backend.c) */
		diag_info("session %s: its pool has room: started (pid %d)", s->id,
			  (int)s->backend->pid);
	}
	if (!s->resuming && s->hooks->on_started != NULL) {
		s->hooks->on_started(s, s->owner);
	}
	held_flush(s);
}

static void
arm_suspend(struct session *s, double seconds)
{
	if (s->cfg->idle_suspend > 0) {
		ev_timer_stop(s->loop, &s->suspend_w);
		ev_timer_set(&s->suspend_w, seconds, 0.);
		ev_timer_start(s->loop, &s->suspend_w);
	}
}

struct session *
session_new(struct ev_loop *loop, const char *id, const struct session_config *cfg,
	    const struct session_hooks *hooks, void *owner, struct handshake *hs)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	(void)snprintf(s->id, sizeof(s->id), "%s", id);
	s->loop = loop;
	s->cfg = cfg;
	s->hooks = hooks;
	s->owner = owner;
	s->seq = ++session_seq;
	s->last_exit = -1;
	s->started = s->last_activity = sys_mono();
	handshake_init(&s->own_hs);
	s->hs = hs != NULL ? hs : &s->own_hs;
	out_scan.params_method = JSONRPC_CANCELLED; /* the only server params mcpmux reads */
	held_scan.params_method = JSONRPC_CANCELLED;
	ev_init(&s->idle_w, session_on_idle);
	ev_init(&s->suspend_w, session_on_suspend_timer);
	ev_init(&s->write_w, session_on_write_timer);
	ev_init(&s->done_w, session_on_done_timer);
	ev_init(&s->replay_w, session_on_replay_timer);
	/* Listed first: the status file written when the server starts shows it. */
	DL_PREPEND2(live_head, s, prev_live, next_live);
	if (start_server(s, false) == -1) {
		int err = errno;

		live_unlink(s);
		free(s->replay_id);
		free(s);
		errno = err;
		return NULL;
	}
	if (cfg->idle_timeout > 0) {
		ev_timer_set(&s->idle_w, cfg->idle_timeout, 0.);
		ev_timer_start(loop, &s->idle_w);
	}
	return s;
}

static void
session_on_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = container_of(w, struct session, idle_w);
	double now = sys_mono(), due = s->last_activity + s->cfg->idle_timeout;
	/* A held request is in flight too; a replay alone is not (a fresh server that never
	 * answers it would keep the session for ever).  Neither is while no client holds the
	 * session: nobody waits for their answers, which wait unread (a kept session's
	 * connection gone with a request in flight kept its server for ever). */
	bool in_flight = s->n_pending > 0 || held_request(s);
	bool busy = !s->detached && in_flight;

	(void)revents;
	if (s->detached && in_flight) {
		due = SYS_MAX(due, s->detached_since + s->cfg->idle_timeout);
	}
	if (busy || due > now) {
		/* Busy, or traffic since the timer was set: look again later (ev.pod strategy 3).
		 */
		ev_timer_set(w, busy ? s->cfg->idle_timeout : due - now, 0.);
		ev_timer_start(loop, w);
		return;
	}
	if (s->hooks->on_idle == NULL) {
		/* (one there says it: wrap's and serve's at the default verbosity) */
		diag_info("session %s: idle for %g s: ending it", s->id, s->cfg->idle_timeout);
	}
	if (tlog_enabled) {
		char f[64];
		int n = snprintf(f, sizeof(f), "\"idle_s\":%g", s->cfg->idle_timeout);

		tlog_event(s->id, session_pid(s), "timeout", f, (size_t)n);
	}
	session_set_end_reason(s, "idle-timeout");
	session_end(s, -1, NULL, 0);
	if (s->hooks->on_idle != NULL) {
		s->hooks->on_idle(s, s->owner);
	}
}

/* How long a line the server is still writing must not grow to no longer be in flight. */
static double
write_period(const struct session *s)
{
	return s->cfg->idle_suspend > 0 ? s->cfg->idle_suspend : SESSION_WRITE_PERIOD;
}

/*
 * A message the server is still writing (a long line arriving in pieces, or one over
 * --max-message) is in flight: a suspend would cut its end off.  It is while its bytes
 * grow: looked at again every write_period() (write_w) until it ends or no longer grows,
 * so that a line never ended (a prompt with no newline) holds no suspend off for ever.
 * Meanwhile the pool is told the server is busy: it is not asked again.
 */
static bool
still_writing(struct session *s)
{
	size_t n = framer_pending(&s->backend->outf); /* session_is_idle(): there is one */

	if (n == 0 || n == s->out_seen) {
		return false;
	}
	s->out_seen = n;
	s->writing = true;
	ev_timer_set(&s->write_w, write_period(s), 0.);
	ev_timer_start(s->loop, &s->write_w);
	busy_sync(s);
	return true;
}

/* The line the server was writing ended: no longer in flight, nor the server busy for it. */
static void
line_ended(struct session *s)
{
	s->out_seen = 0;
	if (s->writing) {
		s->writing = false;
		ev_timer_stop(s->loop, &s->write_w);
		busy_sync(s);
	}
}

static void
session_on_write_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = container_of(w, struct session, write_w);
	size_t n = 0;

	(void)revents;
	if (s->state == SESSION_RUNNING && s->backend != NULL) {
		n = framer_pending(&s->backend->outf);
	}
	s->writing = n > 0 && n != s->out_seen;
	s->out_seen = n;
	if (s->writing) {
		ev_timer_set(w, write_period(s), 0.);
		ev_timer_start(loop, w);
	}
	busy_sync(s);
}

/*
 * --idle-suspend: that long with no traffic either way and nothing in flight (either
 * way), the server's tree is ended with the usual ladder; the session stays.  A kept
 * session that no connection holds with a call in flight is not idle: its answer, made or
 * to come, is for the client that comes back (--idle-timeout bounds its wait).
 */
static void
session_on_suspend_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = container_of(w, struct session, suspend_w);
	double now = sys_mono(), due = s->last_activity + s->cfg->idle_suspend;

	(void)loop;
	(void)revents;
	if (s->state != SESSION_RUNNING || s->end_requested || s->backend == NULL ||
	    backend_is_ending(s->backend)) {
		return; /* armed again when it runs again */
	}
	if (due > now || !session_is_idle(s) || still_writing(s)) {
		arm_suspend(s, due > now ? due - now : s->cfg->idle_suspend);
		return;
	}
	diag_info("session %s: idle for %g s: suspending it (its server ends; the next message "
		  "starts another)",
		  s->id, s->cfg->idle_suspend);
	(void)session_suspend(s, "idle");
}

bool
session_is_idle(const struct session *s)
{
	return s->state == SESSION_RUNNING && !s->end_requested && s->backend != NULL &&
	       !backend_is_ending(s->backend) && s->n_pending == 0 && s->n_srv_pending == 0 &&
	       !s->writing && s->held_off >= s->held.len;
}

bool
session_holds_requests(const struct session *s)
{
	return s->held_off < s->held.len && held_request(s);
}

bool
session_suspend(struct session *s, const char *why)
{
	if (!session_is_idle(s) || still_writing(s)) {
		return false;
	}
	s->state = SESSION_SUSPENDING;
	s->suspend_why = why;
	ev_timer_stop(s->loop, &s->suspend_w);
	if (s->slot != NULL) {
		pool_going(s->slot);
	}
	backend_end(s->backend, -1);
	status_changed();
	return true;
}

/* An end with no server to end (a suspended session): done from the loop. */
static void
session_on_done_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = container_of(w, struct session, done_w);

	(void)loop;
	(void)revents;
	run_done(s);
}

void
session_end(struct session *s, double grace_ms, const char *reply_id, size_t reply_id_len)
{
	if (reply_id != NULL && s->n_replies >= SESSION_MAX_END_REPLIES) {
		/* Repeated while the run ends: its result is awaited a bounded number of times. */
		_Static_assert(SESSION_MAX_END_REPLIES == 64, "SESSION_END_REPLIES_FULL says 64");
		answer_error(s, reply_id, reply_id_len, RPC_SERVER_ERROR, SESSION_END_REPLIES_FULL,
			     0.);
	} else if (reply_id != NULL) {
		struct sbuf *nr = realloc(s->replies, (s->n_replies + 1) * sizeof(*nr));

		if (nr != NULL) {
			s->replies = nr;
			memset(&nr[s->n_replies], 0, sizeof(*nr));
			sbuf_add(&nr[s->n_replies], reply_id, reply_id_len);
		}
		if (nr == NULL || nr[s->n_replies].failed) {
			if (nr != NULL) {
				sbuf_release(&nr[s->n_replies]);
			}
			/* The end goes on; its result could not be awaited: said now. */
			answer_error(s, reply_id, reply_id_len, -32603,
				     "Internal error: out of memory (the run is ended, but its "
				     "result cannot be sent)",
				     0.);
		} else {
			s->n_replies++;
		}
	}
	s->end_requested = true;
	status_changed();
	ev_timer_stop(s->loop, &s->idle_w);
	ev_timer_stop(s->loop, &s->suspend_w);
	ev_timer_stop(s->loop, &s->write_w);
	ev_timer_stop(s->loop, &s->replay_w);
	if (s->backend != NULL) {
		if (s->slot != NULL) {
			pool_going(s->slot); /* on its way: waited for, not asked */
		}
		backend_end(s->backend, grace_ms);
	} else {
		if (s->state == SESSION_WAITING) {
			/* The wait is given up: the slot is another's now, and none is granted
			 * to this session any more. */
			pool_release(s->slot);
			s->slot = NULL;
		}
		if (!ev_is_active(&s->done_w)) {
			ev_timer_set(&s->done_w, 0., 0.);
			ev_timer_start(s->loop, &s->done_w);
		}
	}
}

void
session_log_end_request(const struct session *s, const struct jsonrpc_scanner *scan)
{
	struct sbuf *f = &msg;
	const struct jsonrpc_item *it = &scan->one;

	if (!tlog_enabled) {
		return;
	}
	sbuf_reset(f);
	sbuf_adds(f, "\"method\":");
	sbuf_add_json_string(f, jsonrpc_str(scan, it->method), it->method.len);
	if (it->has_id) {
		sbuf_adds(f, ",\"id\":");
		sbuf_add(f, jsonrpc_str(scan, it->id), it->id.len);
	}
	if (scan->params.has_reason) {
		sbuf_adds(f, ",\"reason\":");
		sbuf_add_json_string(f, jsonrpc_str(scan, scan->params.reason),
				     scan->params.reason.len);
	}
	if (scan->params.has_grace_ms && scan->params.grace_ms_text.len > 0) {
		/* As written: %g of a number past a double's range was "inf", which is no
		 * JSON, and of others a rounded value (1234567 as 1.23457e+06). */
		sbuf_adds(f, ",\"graceMs\":");
		sbuf_add(f, jsonrpc_str(scan, scan->params.grace_ms_text),
			 scan->params.grace_ms_text.len);
	}
	if (!f->failed) {
		tlog_event(s->id, session_pid(s), "end-requested", f->buf, f->len);
	}
}

static void
session_on_input_full(struct backend *b, void *owner, bool full)
{
	struct session *s = owner;

	(void)b;
	s->server_full = full;
	input_sync(s);
}

static void
session_on_stall(struct backend *b, void *owner)
{
	struct session *s = owner;

	if (tlog_enabled) {
		char f[64];
		int n = snprintf(f, sizeof(f), "\"stall_s\":%g", b->stall_timeout);

		tlog_event(s->id, session_pid(s), "stalled", f, (size_t)n);
	}
	s->end_requested = true;
	status_changed();
	ev_timer_stop(s->loop, &s->idle_w);
	if (s->hooks->on_stall != NULL) {
		s->hooks->on_stall(s, s->owner);
	}
}

void
session_pause(struct session *s, bool paused)
{
	s->paused = paused;
	if (s->backend != NULL) {
		backend_pause(s->backend, paused);
	}
}

void
session_detach(struct session *s, bool detached)
{
	if (detached && !s->detached) {
		/* Its idle time counts from now: a client away for a moment during a long call
		 * has not been idle for the call's length. */
		s->detached_since = sys_mono();
	}
	s->detached = detached;
}

/* "exit code N" or "killed by SIGNAME" for a wait status. */
static void
status_text(int wstatus, char *buf, size_t len)
{
	if (wstatus >= 0 && WIFSIGNALED(wstatus)) {
		char name[32];

		(void)snprintf(buf, len, "killed by %s",
			       rpcout_signame(WTERMSIG(wstatus), name, sizeof(name)));
	} else if (wstatus >= 0) {
		(void)snprintf(buf, len, "exit code %d", WEXITSTATUS(wstatus));
	} else {
		(void)snprintf(buf, len, "status unknown");
	}
}

static void
session_on_exit(struct backend *b, void *owner)
{
	struct session *s = owner;

	if (s->state == SESSION_RESUMING && !s->end_requested) {
		char why[1024];

		if (b->exec_errno != 0) {
			char buf[160];

			(void)snprintf(why, sizeof(why), "the server could not be restarted: %s",
				       backend_exec_text(b, buf, sizeof(buf)));
		} else {
			char text[48];

			status_text(b->wstatus, text, sizeof(text));
			(void)snprintf(
				why, sizeof(why),
				"the restarted server ended during the handshake replay (%s)",
				text);
		}
		replay_fail(s, why);
		return;
	}
	if (s->state != SESSION_RUNNING) {
		return; /* a server ending for a suspend: expected */
	}
	if (s->hooks->on_exit != NULL) {
		s->hooks->on_exit(s, s->owner);
	}
}

/* Why requests in flight will never be answered, for their -32000 errors. */
static void
exit_text(const struct backend *b, char *buf, size_t len)
{
	if (b->stalled) {
		(void)snprintf(
			buf, len,
			"the server stopped reading its input (none taken for %g s): its run "
			"was ended",
			b->stall_timeout);
	} else if (b->escalation == BACKEND_ESC_ABANDONED && !b->reaped) {
		(void)snprintf(buf, len, "the server could not be ended (it would not die)");
	} else if (b->exec_errno != 0) {
		char text[160];

		(void)snprintf(buf, len, "server could not be started: %s",
			       backend_exec_text(b, text, sizeof(text)));
	} else if (b->wstatus >= 0) {
		char st[48];

		status_text(b->wstatus, st, sizeof(st));
		(void)snprintf(buf, len, "server exited before answering (%s)", st);
	} else {
		(void)snprintf(buf, len, "server ended before answering");
	}
}

void
session_end_fields(const struct session *s, struct sbuf *b)
{
	const struct backend *be = s->backend;

	if (be == NULL) {
		/*
		 * Suspended (or waiting for a pool slot): its last server's end was reported
		 * then (the `suspended` event).  Nothing failed: an exit of null alone would
		 * say the server could not be started.
		 */
		sbuf_adds(b, "\"pid\":null,\"exit\":null,\"escalation\":\"none\",\"ms\":0,"
			     "\"suspended\":true");
		return;
	}
	sbuf_addf(b, "\"pid\":%d,\"exit\":", (int)be->pid);
	/* A command that could not be executed exits 127 or 126, as in a shell. */
	rpcout_exit(b, be->exec_errno != 0 ? backend_exit_code(be) << 8 : be->wstatus);
	sbuf_addf(b, ",\"escalation\":\"%s\",\"ms\":%.0f", backend_escalation_name(be->escalation),
		  backend_end_ms(be));
	if (be->escalation == BACKEND_ESC_ABANDONED) {
		sbuf_adds(b, ",\"abandoned\":[");
		for (size_t i = 0; i < be->n_left; i++) {
			sbuf_addf(b, "%s%d", i > 0 ? "," : "", (int)be->left[i]);
		}
		sbuf_adds(b, "]");
	}
}

bool
session_is_end_reply(const struct session *s, const char *id, size_t id_len)
{
	for (size_t i = 0; i < s->n_replies; i++) {
		if (s->replies[i].len == id_len && memcmp(s->replies[i].buf, id, id_len) == 0) {
			return true;
		}
	}
	return false;
}

void
session_result(const struct session *s, struct sbuf *b)
{
	sbuf_adds(b, "{\"session\":");
	sbuf_add_json_string(b, s->id, strlen(s->id));
	sbuf_adds(b, ",");
	session_end_fields(s, b);
	sbuf_adds(b, "}");
}

/* The traffic log's record of a server's end (event "ended" or "suspended"). */
static void
log_end(const struct session *s, const char *event, const char *reason)
{
	if (!tlog_enabled) {
		return;
	}
	sbuf_reset(&msg);
	session_end_fields(s, &msg);
	/* after "pid":N, which the record's head already has */
	const char *f = memchr(msg.buf, ',', msg.len);

	if (reason != NULL) {
		sbuf_adds(&msg, ",\"reason\":");
		sbuf_add_json_string(&msg, reason, strlen(reason));
	}
	if (!msg.failed && f != NULL) {
		tlog_event(s->id, session_pid(s), event, f + 1,
			   msg.len - (size_t)(f + 1 - msg.buf));
	}
}

/*
 * An abandoned server's slot stays taken while what it left runs: until the processes it
 * listed are gone, or, when that is not all (a container, a list cut short), until mcpmux
 * exits and its keeper has ended what is left.
 */
static void
keep_slot(struct session *s, const struct backend *b)
{
	bool known = !b->left_partial && backend_container_left(b) == NULL;

	pool_keep(s->slot, b->left, known ? b->n_left : 0);
}

/* The server of a session that stays (SUSPENDING, or a failed replay) is gone. */
static void
suspended(struct session *s)
{
	struct backend *b = s->backend;

	log_end(s, "suspended", s->suspend_why);
	s->last_exit = b->exec_errno != 0 ? backend_exit_code(b) << 8 : b->wstatus;
	s->last_noexec = b->exec_errno != 0;
	const char *ctr = backend_container_left(b);

	if (b->escalation == BACKEND_ESC_ABANDONED && b->n_left > 0) {
		diag_error("session %s: suspended, but %zu of its server's processes would not "
			   "die%s%s%s",
			   s->id, b->n_left, ctr != NULL ? ", nor was its container " : "",
			   ctr != NULL ? ctr : "", ctr != NULL ? " seen gone" : "");
	} else if (b->escalation == BACKEND_ESC_ABANDONED && ctr != NULL) {
		/* Every process is gone: the container is what is left. */
		diag_error("session %s: suspended, but its container %s was not seen gone (the "
			   "keeper ends it at mcpmux's exit)",
			   s->id, ctr);
	} else if (b->escalation == BACKEND_ESC_ABANDONED) {
		diag_error("session %s: suspended, but its server's tree was not seen gone", s->id);
	} else {
		diag_info("session %s: suspended (its server's tree is gone)", s->id);
	}
	bool b_abandoned = b->escalation == BACKEND_ESC_ABANDONED;

	if (b_abandoned) {
		/* What it left still runs: its slot stays taken while it does (pool_keep()). */
		keep_slot(s, b);
	}
	backend_free(b);
	s->backend = NULL;
	s->server_full = false; /* no server, no queue */
	input_sync(s);
	if (!b_abandoned) {
		pool_release(s->slot);
	}
	s->slot = NULL;
	s->state = SESSION_SUSPENDED;
	s->n_suspends++;
	status_changed();
	/* The gone server's requests: an answer to one will be dropped. */
	srv_gone(s);
	pending_free_all(&s->srv_pending);
	s->n_srv_pending = 0;
	if (s->hooks->on_suspended != NULL) {
		s->hooks->on_suspended(s, s->owner);
	}
	if (s->held_off < s->held.len && !s->end_requested) {
		resume_start(s, true); /* messages came while it was ending */
	}
}

/* The array of a batch's errors in msg, if one is open: closed and sent. */
static void
array_close(struct session *s, uint32_t *open, double ms)
{
	if (*open != 0) {
		sbuf_adds(&msg, "]");
		deliver_own(s, ms);
		*open = 0;
	}
}

/*
 * The requests still in flight get text: one error each, and those that came in one batch
 * one array of them, in the batch's order (JSON-RPC 2.0 answers a batch with one array).
 * The table is in the order the requests were forwarded, so a batch's are next to each
 * other (but one whose id was already in flight, which is counted with the first).
 */
static void
answer_pending(struct session *s, const char *text)
{
	struct pending *p, *tmp;
	uint32_t open = 0; /* the batch whose array msg holds */
	double ms = 0;

	ids_let_go(s->pending); /* (all of it answered and freed) */
	HASH_ITER (hh, s->pending, p, tmp) {
		HASH_DEL(s->pending, p);
		if (p->batch != open) {
			array_close(s, &open, ms);
		}
		for (uint32_t k = 0; k < p->count; k++) {
			if (p->batch == 0) {
				answer_error(s, pending_id(p), p->id_len, RPC_SERVER_ERROR, text,
					     (sys_mono() - p->t) * 1000.);
				continue;
			}
			if (open == 0) {
				open = p->batch;
				ms = (sys_mono() - p->t) * 1000.;
				sbuf_reset(&msg);
				sbuf_adds(&msg, "[");
			} else {
				sbuf_adds(&msg, ",");
			}
			rpcout_error(&msg, pending_id(p), p->id_len, RPC_SERVER_ERROR, text);
		}
		pending_release(p);
	}
	array_close(s, &open, ms);
	s->n_pending = 0;
}

/*
 * The requests answered in a server's line too large to forward (pending.lost) get text in
 * its place, at once: those of a batch of the client's, when the line was a batch, one
 * array of errors for that batch (each of the client's batches that it answered gets its
 * own); the others, and any answered by a line that was no batch, one error each.  The
 * requests it did not answer are still in flight.
 */
static void
answer_lost(struct session *s, bool batch, const char *text)
{
	struct pending *p, *tmp;
	uint32_t open = 0; /* the batch whose array msg holds */
	double ms = 0;

	HASH_ITER (hh, s->pending, p, tmp) {
		// cppcheck-suppress uninitvar ; uthash iteration, filled by ids_add()
		if (p->lost == 0) {
			continue;
		}
		uint32_t in = batch ? p->batch : 0;

		p->lost = SYS_MIN(p->lost, p->count); /* (some cancelled since) */

		if (in != open) {
			array_close(s, &open, ms);
		}
		for (uint32_t k = 0; k < p->lost; k++) {
			if (in == 0) {
				answer_error(s, pending_id(p), p->id_len, RPC_SERVER_ERROR, text,
					     pending_age_ms(p));
				continue;
			}
			if (open == 0) {
				open = in;
				ms = pending_age_ms(p);
				sbuf_reset(&msg);
				sbuf_adds(&msg, "[");
			} else {
				sbuf_adds(&msg, ",");
			}
			rpcout_error(&msg, pending_id(p), p->id_len, RPC_SERVER_ERROR, text);
		}
		s->n_pending -= p->lost;
		p->count -= p->lost;
		p->lost = 0;
		if (p->count == 0) {
			ids_drop(&s->pending, p);
		}
	}
	array_close(s, &open, ms);
}

/* The run is over: everything owed to the client, then hooks->on_done. */
static void
run_done(struct session *s)
{
	char text[1024]; /* (a command that cannot be executed is named in it) */

	if (s->backend != NULL) {
		exit_text(s->backend, text, sizeof(text));
	} else {
		(void)snprintf(text, sizeof(text), "the run ended");
	}
	answer_pending(s, text);
	held_answer(s, "the run ended before the server was restarted");
	for (size_t i = 0; i < s->n_replies; i++) {
		sbuf_reset(&msg);
		sbuf_adds(&msg, "{\"jsonrpc\":\"2.0\",\"id\":");
		sbuf_add(&msg, s->replies[i].buf, s->replies[i].len);
		sbuf_adds(&msg, ",\"result\":");
		session_result(s, &msg);
		sbuf_adds(&msg, "}");
		deliver_own(s, -1);
	}
	log_end(s, "ended", s->end_reason);
	if (s->backend != NULL && s->backend->escalation == BACKEND_ESC_ABANDONED) {
		/* What it left still runs: its slot stays taken while it does (pool_keep()). */
		keep_slot(s, s->backend);
	} else {
		pool_release(s->slot); /* its server is gone (or never came) */
	}
	s->slot = NULL;
	s->hooks->on_done(s, s->owner);
}

static void
session_on_done(struct backend *b, void *owner)
{
	struct session *s = owner;

	if (s->err_line.len > 0) {
		tlog_stderr(s->id, b->pid, s->err_line.buf, s->err_line.len);
		sbuf_release(&s->err_line);
	}
	if (!s->end_requested && s->state != SESSION_RUNNING) {
		suspended(s);
		return;
	}
	if (b->exec_errno != 0) {
		/* Known at the spawn, before anything else could end the run (a client's EOF
		 * read in the same turn as the message that started it): why it ended. */
		s->end_reason = "exec-failed";
	} else if (b->stalled) {
		session_set_end_reason(s, "stall");
	} else if (b->exited_by_itself) {
		session_set_end_reason(s, b->wstatus >= 0 && WIFEXITED(b->wstatus) &&
							  WEXITSTATUS(b->wstatus) == 0
						  ? "exit"
						  : "crash");
	}
	run_done(s);
}

/* The server's stderr, a line at a time, into the traffic log (long lines are cut). */
static void
session_on_stderr(struct backend *b, void *owner, const char *data, size_t len)
{
	struct session *s = owner;

	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl != NULL ? (size_t)(nl - data) : len;
		size_t room = SESSION_STDERR_LINE - s->err_line.len;

		if (n > room) {
			n = room;
			nl = NULL;
		}
		sbuf_add(&s->err_line, data, n);
		data += n + (nl != NULL);
		len -= n + (nl != NULL);
		if (nl != NULL || s->err_line.len == SESSION_STDERR_LINE) {
			size_t l = s->err_line.len, keep = 0;

			if (nl == NULL) {
				/* A part of a long line: cut between two UTF-8 characters. */
				keep = rpcout_utf8_tail(s->err_line.buf, l);
				l -= keep;
			} else if (l > 0 && s->err_line.buf[l - 1] == '\r') {
				l--;
			}
			tlog_stderr(s->id, b->pid, s->err_line.buf, l);
			if (keep == 0) {
				sbuf_reset(&s->err_line);
			} else {
				/* The start of a character: the next part begins with it. */
				memmove(s->err_line.buf, s->err_line.buf + l, keep);
				s->err_line.len = keep;
			}
		}
	}
}

void
session_free(struct session *s)
{
	if (s == NULL) {
		return;
	}
	live_unlink(s);
	status_changed();
	ev_timer_stop(s->loop, &s->idle_w);
	ev_timer_stop(s->loop, &s->suspend_w);
	ev_timer_stop(s->loop, &s->write_w);
	ev_timer_stop(s->loop, &s->done_w);
	ev_timer_stop(s->loop, &s->replay_w);
	sbuf_release(&s->held);
	handshake_release(&s->own_hs);
	pool_release(s->slot);
	pending_free_all(&s->pending);
	srv_gone(s);
	pending_free_all(&s->srv_pending);
	sbuf_release(&s->err_line);
	for (size_t i = 0; i < s->n_replies; i++) {
		sbuf_release(&s->replies[i]);
	}
	free(s->replies);
	backend_free(s->backend);
	free(s->replay_id);
	free(s);
}

void
session_module_release(void)
{
	while (spare_head != NULL) {
		struct pending *p = spare_head;

		spare_head = p->hh.next;
		free(p);
	}
	n_spare = 0;
	jsonrpc_release(&out_scan);
	jsonrpc_release(&held_scan);
	handshake_module_release();
	sbuf_release(&msg);
	sbuf_release(&log_answers);
	sbuf_release(&kept);
	sbuf_release(&taken);
	free(key_buf);
	key_buf = NULL;
	key_cap = 0;
}
