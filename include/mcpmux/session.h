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
#include "mcpmux/jsonrpc.h"
#include "mcpmux/rpcout.h"

#define SESSION_ID_MAX	    128
#define SESSION_MAX_PENDING 65536	       /* client requests in flight per session */
#define SESSION_STDERR_LINE ((size_t)16 << 10) /* longer stderr lines are logged in parts */

struct session;

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
	/* Teardown complete (everything delivered); the front end may free s now. */
	void (*on_done)(struct session *s, void *owner);
};

struct session_config {
	char *const *argv;
	double eof_grace;    /* seconds */
	double term_grace;   /* seconds */
	double idle_timeout; /* seconds, 0 for none */
	double stall_timeout;
	double kill_deadline;
	size_t max_message;
	size_t max_queue;
	bool claim_orphans; /* see struct backend_config */
};

struct session_stats {
	uint64_t bytes_in, bytes_out; /* client to server, server to client */
	uint64_t msgs_in, msgs_out;
};

struct pending;

struct session {
	char id[SESSION_ID_MAX + 1];
	struct ev_loop *loop;
	struct backend *backend;
	const struct session_config *cfg;
	const struct session_hooks *hooks;
	void *owner;
	uint64_t seq;		     /* creation order */
	struct pending *pending;     /* uthash: client requests in flight */
	struct pending *srv_pending; /* uthash: server requests in flight (traffic log only) */
	size_t n_srv_pending;
	bool input_full;      /* the server's input queue is at its mark */
	struct sbuf err_line; /* the server's stderr line being assembled (traffic log) */
	size_t n_pending;
	bool end_requested;   /* by the client (end-of-run) or the front end */
	bool paused;	      /* the client is not reading: server stdout paused */
	struct sbuf *replies; /* end-of-run request ids awaiting the result */
	size_t n_replies;
	ev_timer idle_w;
	double last_activity; /* sys_mono() */
	double started;
	struct session_stats stats;
	struct jsonrpc_idscan big_id; /* over-long server message: its id */
};

/* A fresh session ID (a UUID from libuuid) into out[37]. */
void session_new_id(char out[37]);
/* Is id a valid session ID (1..128 of [A-Za-z0-9._:@-])? */
bool session_id_valid(const char *id, size_t len);

/*
 * Create a session and start its server.  NULL with errno set when the server could
 * not be started at all (fork or pipe failure); an exec failure comes later, as
 * on_exit with s->backend->exec_errno set.
 */
struct session *session_new(struct ev_loop *loop, const char *id, const struct session_config *cfg,
			    const struct session_hooks *hooks, void *owner);
/*
 * A message from the client, already scanned (scan describes line).  Forwarded to the
 * server, or answered by mcpmux (the server is ending, or not reading its input).
 */
void session_from_client(struct session *s, const char *line, size_t len,
			 const struct jsonrpc_scanner *scan);
/*
 * End the run.  reply_id (JSON text, may be NULL) is answered with the end-of-run result
 * when the teardown is complete.  grace_ms < 0: the configured grace periods.
 */
void session_end(struct session *s, double grace_ms, const char *reply_id, size_t reply_id_len);
/* Record an end-of-run message (scanned by scan) in the traffic log. */
void session_log_end_request(const struct session *s, const struct jsonrpc_scanner *scan);
/* Stop or resume reading the server's output (the client's queue is full). */
void session_pause(struct session *s, bool paused);
/* The end-of-run result object, {"session":...,"escalation":...}, into b. */
void session_result(const struct session *s, struct sbuf *b);
/* The same without "session" and braces: "pid":N,"exit":...,"escalation":"...","ms":N */
void session_end_fields(const struct session *s, struct sbuf *b);
void session_free(struct session *s);
/* Free the module's shared scratch memory (at exit, for leak checkers). */
void session_module_release(void);

#endif
