/*
 * hub: the sessions of a `mcpmux serve`, whatever door they come in by.
 *
 * The hub keeps the table of sessions by ID, starts their servers (session.h), counts
 * them against --max-sessions, ends them, keeps the totals, and answers the control
 * methods (mcpmux/list, mcpmux/stats, and mcpmux/endRun with params.session).  It does
 * not know how a client speaks: each client is a port, a door with a small set of
 * operations (struct hub_port_ops).  The envelope front end (cmd_serve.c) makes one port
 * per connection, which owns many sessions; the Streamable HTTP front end (front_http.c)
 * makes one port per HTTP session.  A session is the same object seen through either.
 *
 * Ownership.  An entry (a session ID) is owned by at most one port at a time; a port
 * attaches what it needs for the entry (a queue) in ops->attach() and gives it back in
 * ops->detach().  A kept session may have no port between connections, and its server's
 * output then waits in its pipe.  The hub frees an entry when its session is done (or
 * when it never started and no port wants it); ports learn of it through ops->detach()
 * and the `ended` event.
 *
 * Flow control.  A port says when its queue for an entry is at its mark (ops->full());
 * the hub then pauses that session's server output, and hub_port_writable() resumes it.
 * When a session's server input is at its mark, the hub holds the input of the port that
 * owns the session (ops->hold()), and releases it when no session of that port is full.
 *
 * Every function is called from the loop; none exits the process.
 */
#ifndef MCPMUX_HUB_H
#define MCPMUX_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "mcpmux/cli.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/table.h"

/*
 * After a signal, once every session has ended, how long the clients of every door get
 * to take their last lines before serve exits without them.
 */
#define HUB_DRAIN_S 5.0

struct hub;
struct hub_entry;
struct hub_port;
struct hub_unseen;

struct hub_port_ops {
	/* e is now this port's: make its queue.  0, or -1 when out of memory. */
	int (*attach)(struct hub_port *p, struct hub_entry *e);
	/* e leaves this port (another takes it over, or it ends): give its queue back. */
	void (*detach)(struct hub_port *p, struct hub_entry *e);
	/* A JSON-RPC message for the client in session e: the server's, or mcpmux's own. */
	void (*message)(struct hub_port *p, struct hub_entry *e, const char *msg, size_t len);
	/*
	 * An event or an error of session e, as JSON members that start with ','
	 * (",\"event\":\"started\",\"pid\":42"; ",\"error\":{...}" for a refusal without id).
	 */
	void (*event)(struct hub_port *p, struct hub_entry *e, const char *fields, size_t len);
	/* The answer (a whole JSON-RPC message) to a control request this port made. */
	void (*reply)(struct hub_port *p, const char *msg, size_t len);
	/* Is this port's queue for e at its mark? */
	bool (*full)(struct hub_port *p, const struct hub_entry *e);
	/* Hold (true) or release the port's input: a server it feeds is not keeping up. */
	void (*hold)(struct hub_port *p, bool on);
	/* Can nothing more reach the port's client (its output is gone)?  Optional. */
	bool (*gone)(struct hub_port *p);
	/*
	 * Kept e's `ended` event went to the port, which has not written it yet: the port
	 * keeps u (the end, unseen) and gives it back with hub_unseen_lost() if its output
	 * dies first, or with hub_unseen_told() once written.  false: it is written (u stays
	 * the caller's).  Optional.
	 */
	bool (*hold_end)(struct hub_port *p, struct hub_entry *e, struct hub_unseen *u);
};

struct hub_port {
	const struct hub_port_ops *ops;
	size_t n_owned;	  /* entries it owns */
	size_t n_full;	  /* of them, sessions whose server's input is full */
	size_t n_waiting; /* its control endRuns not answered yet (struct hub_waiter) */
	char peer[64];	  /* who is behind it, for mcpmux/list ("" when nothing to say) */
};

/* A control endRun waiting for a session's teardown. */
struct hub_waiter {
	struct hub_waiter *next;
	struct hub_port *port;
	size_t id_len;
	char id[]; /* the request's id, as JSON text */
};

struct hub_entry {
	UT_hash_handle hh;
	char id[SESSION_ID_MAX + 1];
	size_t id_len;
	struct hub *hub;
	struct session *s;	/* NULL until started */
	struct hub_port *owner; /* NULL while a kept session has no port */
	void *port_data;	/* the owner's, for this entry */
	struct hub_waiter *waiters;
	size_t n_waiters;	  /* at most SESSION_MAX_END_REPLIES */
	struct hub_port *holding; /* the port whose input this session holds, or NULL */
	bool kept;
	bool end_asked; /* its owner asked for its end: it knows, and is not told again */
	bool exited;	/* the server exited: its output is read to its end */
	bool started;	/* its "started" event went out */
};

/*
 * The end of a kept session that no port saw: it ended (its server exited, its idle
 * timeout, a control endRun) while no connection owned it.  Its `ended` event waits for
 * the next port that names the session (hub_unseen_take()); at most --max-sessions of
 * them are kept, the oldest forgotten first.
 */
struct hub_unseen {
	UT_hash_handle hh;
	char id[SESSION_ID_MAX + 1];
	size_t id_len;
	uint64_t seq; /* the hub's n_ended with it: a later run's end has a greater one */
	bool later;   /* held by a port (hub_unseen_hold()), and a later run has started */
	struct hub_unseen *held_prev, *held_next; /* in the hub's list of held ends */
	size_t len;
	char fields[]; /* ",\"event\":\"ended\",...,\"unseen\":true" */
};

/* How a session's server ended, for /metrics. */
enum hub_exit_kind {
	HUB_EXIT_ZERO,	  /* exit code 0 */
	HUB_EXIT_NONZERO, /* another exit code */
	HUB_EXIT_SIGNAL,  /* killed by a signal (the teardown's, or its own) */
	HUB_EXIT_NOEXEC,  /* the command could not be executed */
	HUB_EXIT_UNKNOWN, /* never reaped (an abandoned tree) */
	HUB_EXIT_KINDS,
};

struct hub {
	struct ev_loop *loop;
	const struct mcpmux_options *opt;
	struct session_config scfg;
	struct hub_entry *table;
	struct hub_entry *last;	   /* the entry hub_find() found last (NULL: none) */
	size_t n_live;		   /* entries with a session */
	struct hub_unseen *unseen; /* ends of kept sessions that no port saw, oldest first */
	struct hub_unseen *held;   /* ends in ports' queues, not written yet (a list) */
	bool shutting_down;
	double started;
	uint64_t n_started, n_ended, n_refused;
	struct session_stats done_stats;		  /* totals of ended sessions */
	uint64_t n_escalation[BACKEND_ESC_ABANDONED + 1]; /* ended sessions, by escalation */
	uint64_t n_exit[HUB_EXIT_KINDS];		  /* ended sessions, by how */
	size_t n_ports;					  /* for mcpmux/stats */
	struct jsonrpc_scanner log_scan; /* mcpmux's own messages, for the traffic log */
	struct sbuf tmp;
	/* Why hub_shutdown() ends the sessions ("signal"; default "shutdown"), for the log. */
	const char *shutdown_reason;
	/* Called when the hub is shutting down and its last session is done (optional). */
	void (*on_empty)(struct hub *h, void *ctx);
	void *ctx;
};

void hub_init(struct hub *h, struct ev_loop *loop, const struct mcpmux_options *o);
/* At exit: free what is left (sessions that never left RUNNING only if the loop died). */
void hub_release(struct hub *h);

struct hub_entry *hub_find(struct hub *h, const char *id, size_t len);
/* A new entry, owned by nobody, not started.  NULL when out of memory. */
struct hub_entry *hub_entry_new(struct hub *h, const char *id, size_t len);
/*
 * Free an entry that has no session (one that never started): it leaves the table before
 * its owner lets its queue go.
 */
void hub_entry_free(struct hub_entry *e);
/* Give e to port p (NULL: none).  0, or -1 when out of memory (e keeps its owner). */
int hub_set_owner(struct hub_entry *e, struct hub_port *p);

/*
 * Start e's server.  scan (may be NULL) is the message that asked: a refusal
 * (--max-sessions, a spawn that failed, shutting down) is answered to each of its requests
 * (hub_error_each()) through e's owner, or, without one, as an event.  true when started.
 * An entry refused and not kept is freed (so e must not be used after false unless kept).
 */
bool hub_start(struct hub_entry *e, const struct jsonrpc_scanner *scan);
/* A client message for a started e, scanned by scan: session_from_client(). */
const char *hub_from_client(struct hub_entry *e, const char *msg, size_t len,
			    const struct jsonrpc_scanner *scan);
/*
 * End e's run (the end-of-run message, a DELETE, the port going away).  reply_id (JSON
 * text, may be NULL) is answered in the session when the teardown is complete, after the
 * session has left the table; scan, if not NULL, is the message, for the traffic log.
 */
void hub_end(struct hub_entry *e, double grace_ms, const char *reply_id, size_t reply_id_len,
	     const struct jsonrpc_scanner *scan);
/*
 * A control request (a message for mcpmux itself) from port p, scanned by scan.  The
 * answer goes to ops->reply(), at once or, for an endRun, once the teardown is done.
 * An entry of mcpmux/list is at most HUB_LIST_ENTRY_MAX bytes (its longest, under 570:
 * an ID of SESSION_ID_MAX, ages of ten digits, counts of 20, a peer of 63 characters),
 * and the list has at most 2 x --max-sessions of them (running; kept, not started).
 */
#define HUB_LIST_ENTRY_MAX 700
void hub_control(struct hub *h, struct hub_port *p, const struct jsonrpc_scanner *scan);
/* An answer of mcpmux's own to a request of session sid (e may be NULL): a JSON-RPC error. */
void hub_error(struct hub *h, struct hub_port *p, struct hub_entry *e, const char *id,
	       size_t id_len, int code, const char *text);
/*
 * The same error for each request of the message scan describes (a batch: one array of
 * them, with a -32600 for each element that is no message: rpcout_error_each()), as
 * hub_error() sends one.  false, and nothing sent, when it has nothing to answer.
 */
bool hub_error_each(struct hub *h, struct hub_port *p, struct hub_entry *e,
		    const struct jsonrpc_scanner *scan, int code, const char *text);
/* An answer of mcpmux's own (msg: JSON text, a batch's errors), as hub_error() sends one. */
void hub_own_answer(struct hub *h, struct hub_port *p, struct hub_entry *e, const char *msg,
		    size_t len);
/* The end-of-run result for a session ID that runs nothing, into b. */
void hub_none_result(struct sbuf *b, const char *sid, size_t sid_len);

/*
 * Port p's queue for e went below its mark: resume e's server output.  Call it from the
 * port's queue callback.
 */
void hub_port_writable(struct hub_entry *e);
/*
 * Port p's input is over.  Its sessions end, except kept ones when `keep_kept`, which
 * wait for another port; reason is why, for the log (a static text; NULL: "client-eof").
 * The sessions that end stay p's until they are done (their last output and their `ended`
 * event go to p); ops->detach() says when each one leaves.
 */
void hub_port_closed(struct hub *h, const struct hub_port *p, bool keep_kept, const char *reason);
/*
 * Port p is going away (it owns nothing): forget the control requests it is waiting for.
 * A port whose input is over waits, if it can still write, until p->n_waiting is 0: each
 * one is answered when its session is done, which its teardown deadlines bound.
 */
void hub_port_forget(struct hub *h, const struct hub_port *p);
/* Port p can no longer write: its sessions' output is read and dropped, never held. */
void hub_port_gone(struct hub *h, const struct hub_port *p);
/* End every session and start nothing more; on_empty once the last one is done. */
void hub_shutdown(struct hub *h);
/* The unseen end of session id, out of the hub (the caller free()s it), or NULL. */
struct hub_unseen *hub_unseen_take(struct hub *h, const char *id, size_t len);
/*
 * u, taken and not told (the port could not be written to), back for the next port (or
 * freed, and said, when there is no memory to keep it).
 */
void hub_unseen_untake(struct hub *h, struct hub_unseen *u);
/* u waits in a port's queue (not in the hub's unseen ends): hub_unseen_lost() or _told(). */
void hub_unseen_hold(struct hub *h, struct hub_unseen *u);
/*
 * u, an end a port held (ops->hold_end(), hub_unseen_hold()) and could not write, is kept
 * for the next port that names the session, even one that holds an entry of it that has
 * not started (a keep), in place of an earlier run's; freed instead when mcpmux is ending,
 * or a later run of the session has started since it was held (or its end is kept).
 */
void hub_unseen_lost(struct hub *h, struct hub_unseen *u);
/* u, an end a port held, is written: freed. */
void hub_unseen_told(struct hub *h, struct hub_unseen *u);
/* Entries without a session: kept ones that have not started. */
size_t hub_n_unstarted(const struct hub *h);
/* Is the hub shutting down with no session left? */
bool hub_is_empty(const struct hub *h);

/* The totals of every session, ended and running, into *t. */
void hub_totals(const struct hub *h, struct session_stats *t);
/* The name of an exit kind, for a label: "zero", "nonzero", "signal", ... */
const char *hub_exit_kind_name(enum hub_exit_kind k);

/* A message of mcpmux's own in session e (or sid), into the traffic log. */
void hub_log_own(struct hub *h, const char *sid, const struct session *s, const char *m,
		 size_t len);

#endif
