/*
 * session: one run of one MCP server, between a front end and its backend.
 *
 * A session owns its backend and the JSON-RPC bookkeeping around it: the client's
 * requests in flight (answered with -32000 errors if the server dies before it answers
 * them), the idle timer, the end-of-run replies, and its counters.  Ids are matched by
 * JSON value (jsonrpc_id_key()); a request cancelled with notifications/cancelled is no
 * longer in flight; two requests in flight with one id are both owed an answer.
 *
 * The session never refuses a message because its server is slow: the backend tells,
 * through hooks->on_input_full(), when the server's input queue is at --max-queue, and
 * the front end holds the client's input until it is not.  It knows nothing of how its front end
 * frames lines for the client: everything for the client goes through hooks->deliver().
 *
 * Suspend and resume (--idle-suspend): after that long with no traffic either way and
 * nothing in flight, the session ends its server's tree with the normal ladder but stays,
 * SUSPENDED, with its client.  The next client message starts a fresh server, replays
 * the client's handshake to it (handshake.h), and is forwarded once the replay is done;
 * messages that come meanwhile wait, in order (their client is held back past
 * --max-queue).  A replay that fails answers the waiting requests with errors that say
 * why, and the session is SUSPENDED again: the next message tries again.  The same
 * replay is made for a server that has not seen the client's handshake when the first
 * message it is sent is not `initialize` (wrap mode's next run after an end-of-run).
 * With a pool (--max-servers), a server starts only once the pool grants it a slot
 * (pool.h): meanwhile the session is WAITING, its client's lines held as above; an idle
 * session gives its slot up when the pool asks (session_suspend(s, "pool")).
 *
 *   RUNNING --idle-suspend--> SUSPENDING --server done--> SUSPENDED
 *   SUSPENDED --client message--> RESUMING (fresh server, replay) --replay done--> RUNNING
 *   RESUMING --replay refused, or the server dies--> SUSPENDING / SUSPENDED
 *   (new) or SUSPENDED --pool full--> WAITING --slot granted--> RUNNING / RESUMING
 *   any --session_end()--> ... on_done
 *
 * Ownership: the front end creates sessions with session_new() and frees them with
 * session_free() once hooks->on_done() has been called (from the loop).
 */
#ifndef MCPMUX_SESSION_H
#define MCPMUX_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "mcpmux/backend.h"
#include "mcpmux/handshake.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/pool.h"
#include "mcpmux/rpcout.h"

#define SESSION_ID_MAX		128
#define SESSION_MAX_PENDING	65536 /* client requests in flight per session */
#define SESSION_MAX_END_REPLIES 64    /* end-of-run requests that await one run's result */
#define SESSION_STDERR_LINE	((size_t)16 << 10) /* longer stderr lines are logged in parts */
/* The error a repeated end-of-run request gets past SESSION_MAX_END_REPLIES (its number). */
#define SESSION_END_REPLIES_FULL \
	"the server's run is ending (64 end-of-run requests already await its result)"

struct session;

enum session_state {
	SESSION_RUNNING,
	SESSION_SUSPENDING, /* the server's tree is being ended for --idle-suspend */
	SESSION_SUSPENDED,  /* no server; the next client message resumes it */
	SESSION_RESUMING,   /* a fresh server is hearing the handshake again */
	SESSION_WAITING,    /* for a slot in its pool (--max-servers) before its server starts */
};

struct session_hooks {
	/* A line (no "\n") for the client: a server message or one of mcpmux's answers. */
	void (*deliver)(struct session *s, const char *line, size_t len, void *owner);
	/* The server's process exited (by itself, or as part of the teardown). */
	void (*on_exit)(struct session *s, void *owner);
	/* --idle-timeout expired; the session's teardown has begun. */
	void (*on_idle)(struct session *s, void *owner);
	/* The server's input queue is at its mark (full), or no longer (see above). */
	void (*on_input_full)(struct session *s, void *owner, bool full);
	/* The server took no input for --stall-timeout: its run is ending (end_requested). */
	void (*on_stall)(struct session *s, void *owner);
	/* The session's server was ended for --idle-suspend; the session stays (optional). */
	void (*on_suspended)(struct session *s, void *owner);
	/* The session's first server started late: its pool granted a slot (optional). */
	void (*on_started)(struct session *s, void *owner);
	/* A fresh server took over after the handshake replay, ms after it was asked for. */
	void (*on_resumed)(struct session *s, void *owner, double ms);
	/* Teardown complete (everything delivered); the front end may free s now. */
	void (*on_done)(struct session *s, void *owner);
};

struct session_config {
	char *const *argv;
	const char *not_found_hint; /* after what is said of an argv[0] not found */
	double eof_grace;	    /* seconds */
	double term_grace;	    /* seconds */
	double idle_timeout;	    /* seconds, 0 for none */
	double idle_suspend;	    /* seconds, 0 for none */
	double stall_timeout;
	double kill_deadline;
	size_t max_message;
	size_t max_queue;
	bool claim_orphans; /* see struct backend_config */
	struct pool *pool;  /* --max-servers, NULL for none */
};

/*
 * How long a fresh server may take to answer the handshake replay: --stall-timeout, or
 * SESSION_REPLAY_DEADLINE when that is 0.  Past it the replay fails (held requests get
 * -32000) and the server is ended.  A deadline that comes while the client is not reading
 * (the answer may be behind output it has not taken) is set again, whole: the replay goes
 * on.
 */
#define SESSION_REPLAY_DEADLINE 30.
/*
 * A line the server has begun is in flight (no suspend) while it grows: looked at every
 * --idle-suspend, or every SESSION_WRITE_PERIOD seconds without it (a pool's ask).
 */
#define SESSION_WRITE_PERIOD 1.
double session_replay_deadline(const struct session_config *cfg);

struct session_stats {
	uint64_t bytes_in, bytes_out; /* client to server, server to client */
	uint64_t msgs_in, msgs_out;
};

struct pending;

struct session {
	char id[SESSION_ID_MAX + 1];
	struct ev_loop *loop;
	enum session_state state;
	struct backend *backend; /* NULL while SUSPENDED */
	bool fresh;		 /* the server has seen no client message yet */
	struct handshake *hs;	 /* what a fresh server must hear again */
	struct handshake own_hs; /* hs, unless the front end keeps one across sessions */
	struct sbuf held;	 /* client lines waiting for a server (SUSPENDING, RESUMING) */
	size_t held_off;
	bool held_full;		 /* the client is held back for them */
	char *replay_id;	 /* the replayed initialize's id, NULL once answered */
	size_t replay_wait;	 /* other replayed requests not yet answered */
	double t_resume;	 /* when the resume (or the replay) was asked for */
	bool resuming;		 /* the replay is a resume from SUSPENDED */
	int last_exit;		 /* wait status of the last server that ended, -1 none */
	bool last_noexec;	 /* ... a command that could not be executed (127, 126) */
	const char *end_reason;	 /* why the run ended: the traffic log's ended.reason */
	const char *suspend_why; /* "idle", "pool", "resume-failed" */
	unsigned long n_suspends, n_resumes;
	const struct session_config *cfg;
	const struct session_hooks *hooks;
	void *owner;
	uint64_t seq;		     /* creation order */
	struct pending *pending;     /* uthash: client requests in flight */
	struct pending *srv_pending; /* uthash: server requests in flight */
	size_t n_srv_pending;
	/* Where the server's requests in flight go when its server is gone (NULL: dropped). */
	struct session_ids *srv_gone;
	bool server_full;	/* the server's input queue is at its mark */
	bool input_full;	/* that, or the held lines: the client is held back */
	struct pool_slot *slot; /* its server's place in the pool (cfg->pool) */
	bool busy;		/* as last told to the pool */
	struct sbuf err_line;	/* the server's stderr line being assembled (traffic log) */
	size_t n_pending;
	uint32_t batch_seq;    /* batches forwarded (their requests' tag in pending) */
	bool end_requested;    /* by the client (end-of-run) or the front end */
	bool paused;	       /* the client is not reading: server stdout paused */
	bool detached;	       /* no client holds it (session_detach()) */
	double detached_since; /* when it became so (sys_mono()) */
	struct sbuf *replies;  /* end-of-run request ids awaiting the result */
	size_t n_replies;
	ev_timer idle_w;
	ev_timer suspend_w;
	ev_timer write_w;     /* looks again at a line the server is still writing */
	size_t out_seen;      /* that line's bytes at the last look */
	bool writing;	      /* it grew since the look before: in flight (still_writing()) */
	ev_timer done_w;      /* an end with no server: on_done from the loop */
	ev_timer replay_w;    /* the replay's deadline (session_replay_deadline()) */
	double last_activity; /* sys_mono() */
	double started;
	struct session_stats stats;
	struct jsonrpc_idscan big_id;	       /* over-long server message: its id */
	bool big_batch;			       /* ... a batch: big_id is its first element's */
	struct session *prev_live, *next_live; /* every session of the process (status.h) */
};

struct mcpmux_options;
/* The session settings of wrap's or serve's options (claim_orphans and pool not set). */
void session_config_init(struct session_config *c, const struct mcpmux_options *o);

/* A fresh session ID (a UUID from libuuid) into out[37]. */
void session_new_id(char out[37]);
/* Is id a valid session ID (1..128 of [A-Za-z0-9._:@-])? */
bool session_id_valid(const char *id, size_t len);

/*
 * Create a session and start its server.  NULL with errno set when the server could
 * not be started at all (fork or pipe failure); an exec failure comes later, as
 * on_exit with s->backend->exec_errno set.  hs (borrowed, may be NULL) is a handshake
 * record that outlives the session (wrap mode keeps one across runs); NULL: the
 * session keeps its own.
 */
struct session *session_new(struct ev_loop *loop, const char *id, const struct session_config *cfg,
			    const struct session_hooks *hooks, void *owner, struct handshake *hs);
/* The first of every session not yet freed (then s->next_live), NULL for none. */
const struct session *session_first(void);
/* "running", "ending", "suspending", "suspended", "resuming", "waiting". */
const char *session_state_name(const struct session *s);
/* The pid of the current server, 0 when there is none. */
pid_t session_pid(const struct session *s);
/*
 * Running, its server idle (nothing in flight either way, nothing held, no line seen
 * growing at the last look; session_suspend() looks again)?
 */
bool session_is_idle(const struct session *s);
/*
 * Does it hold requests of the client's for a server to come (suspending, suspended,
 * waiting for its pool, resuming)?  They are answered by it: by the fresh server, or with
 * errors when its run ends first.  Held notifications alone owe the client nothing.
 */
bool session_holds_requests(const struct session *s);
/*
 * Suspend an idle session now (why: a static text for the log, "idle", "pool").  False
 * when it is not idle (session_is_idle()).
 */
bool session_suspend(struct session *s, const char *why);
/* The exit code its server's end means (as a shell's $?); 0 when suspended. */
int session_exit_code(const struct session *s);
/*
 * Why the run ends, for the traffic log's `ended` (a static text: "end-of-run",
 * "client-eof", "client-gone", "output-cut", "idle-timeout", "signal", "stall", "exit",
 * "crash", "delete", ...).  The first reason given is kept.
 */
void session_set_end_reason(struct session *s, const char *reason);
/*
 * A message from the client, already scanned (scan describes line).  Forwarded to the
 * server (or held for one to come), or answered by mcpmux (the server is ending, or not
 * reading its input, or memory ran out: RPCOUT_NO_MEMORY): then the reason (a static
 * text; its requests got errors saying it, its notifications and answers were dropped),
 * else NULL.
 */
const char *session_from_client(struct session *s, const char *line, size_t len,
				const struct jsonrpc_scanner *scan);
/*
 * The request of the server's in flight that the client's answer scanned in sc answers:
 * its id as the server wrote it (valid until the server's request is done), or NULL.  An
 * id too long for sc is found by its text as the server wrote it.
 */
const char *session_srv_request(struct session *s, const struct jsonrpc_idscan *sc, size_t *len);
/* The same for an answer whose id (JSON text) was read whole. */
const char *session_srv_request_id(struct session *s, const char *id, size_t id_len, size_t *len);
/*
 * The request of the server's in flight with this id (JSON text) is done: the client's
 * answer to it was not passed on (its run is over).  False when none is in flight.
 */
bool session_srv_answered(struct session *s, const char *id, size_t id_len);

/*
 * The requests of one side in flight, for a front end that has no session of its own
 * (connect: the server's, as serve passes them on), kept as a session keeps them: by JSON
 * value, at most SESSION_MAX_PENDING, an id longer than a scan keeps found by its length,
 * hash and first bytes.  Zero-initialised.
 */
struct session_ids {
	struct pending *table;
	size_t n;
	/* The session whose server's requests they are (session_keep_srv_gone()), or "". */
	char session[SESSION_ID_MAX + 1];
};
/*
 * The requests in a message of that side are in flight; those its cancellations name
 * (its own) are not.  How many of its requests could not be kept for want of memory (one
 * past SESSION_MAX_PENDING is not kept, and is not counted).
 */
size_t session_ids_asked(struct session_ids *t, const struct jsonrpc_scanner *scan);
/*
 * The requests in such a message are in flight, before it is passed on: false, with none
 * of them kept, when one could not be for want of memory (one past SESSION_MAX_PENDING is
 * not kept, and is no failure).  *n_kept: how many were (the message's first requests).
 * Its cancellations are left to session_ids_cancelled().
 */
bool session_ids_ask(struct session_ids *t, const struct jsonrpc_scanner *scan, size_t *n_kept);
/*
 * The first n_kept requests of such a message, those session_ids_ask() kept, are not
 * (never passed on); another request in flight with the same id stays.
 */
void session_ids_unask(struct session_ids *t, const struct jsonrpc_scanner *scan, size_t n_kept);
/* Only the cancellations of such a message: its requests never reached the other side. */
void session_ids_cancelled(struct session_ids *t, const struct jsonrpc_scanner *scan);
/* The requests that the answers in a message of the other side answer are done. */
void session_ids_answered(struct session_ids *t, const struct jsonrpc_scanner *scan);
/* The request in flight that the answer scanned in sc answers: its id as written, or NULL. */
const char *session_ids_find(struct session_ids *t, const struct jsonrpc_idscan *sc, size_t *len);
/* One request with this id (JSON text) is done. */
void session_ids_remove(struct session_ids *t, const char *id, size_t len);
void session_ids_free(struct session_ids *t);
/* Is a request with this id (JSON text) in flight in t? */
bool session_ids_has(const struct session_ids *t, const char *id, size_t len);
/*
 * The requests of s's server in flight, once its server is gone (or s freed), go to *t
 * (as far as its bound and memory allow) in place of what *t held, when there are any;
 * NULL: dropped.
 */
void session_keep_srv_gone(struct session *s, struct session_ids *t);
/*
 * End the run.  reply_id (JSON text, may be NULL) is answered with the end-of-run result
 * when the teardown is complete; past SESSION_MAX_END_REPLIES such requests (a client that
 * repeats it), or out of memory, at once with an error.  grace_ms < 0: the configured grace
 * periods.
 */
void session_end(struct session *s, double grace_ms, const char *reply_id, size_t reply_id_len);
/* Whether id (JSON text) is one that session_end() answers with the end-of-run result. */
bool session_is_end_reply(const struct session *s, const char *id, size_t id_len);
/* Record an end-of-run message (scanned by scan) in the traffic log. */
void session_log_end_request(const struct session *s, const struct jsonrpc_scanner *scan);
/* Stop or resume reading the server's output (the client's queue is full). */
void session_pause(struct session *s, bool paused);
/*
 * No client holds the session now (a kept session between connections; false: one does
 * again).  Nobody waits for the answers of its requests in flight or held, whose answers
 * wait unread: they do not hold --idle-timeout off.
 */
void session_detach(struct session *s, bool detached);
/* The end-of-run result object, {"session":...,"escalation":...}, into b. */
void session_result(const struct session *s, struct sbuf *b);
/* The same without "session" and braces: "pid":N,"exit":...,"escalation":"...","ms":N */
void session_end_fields(const struct session *s, struct sbuf *b);
void session_free(struct session *s);
/* Free the module's shared scratch memory (at exit, for leak checkers). */
void session_module_release(void);

#endif
