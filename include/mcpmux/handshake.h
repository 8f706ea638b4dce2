/*
 * handshake: what a client told its server that a fresh server must hear again.
 *
 * MCP servers keep per-connection state that the client set up once: the initialize
 * exchange (protocol version, capabilities, client info), `notifications/initialized`,
 * the logging level (`logging/setLevel`) and the resources subscribed to
 * (`resources/subscribe`, minus `resources/unsubscribe`).  When mcpmux starts a fresh
 * server for a client that already did all that (a server resumed after --idle-suspend,
 * or a new run in wrap mode whose first message is not `initialize`), it replays that
 * state, under ids of its own, consumes the answers, and only then forwards the client's
 * message.  The client sees latency, and the server sees a proper handshake.
 *
 * Nothing else is replayed: a server that keeps other state across requests (a browser
 * session, an open transaction, an in-memory scratchpad) comes back without it.  That
 * is why suspending is an option (docs/decisions.md).
 *
 * handshake_observe_*() record from the traffic; handshake_replay_*() build the
 * messages.  Pure: no event loop; bounded (at most HANDSHAKE_SUBS subscriptions, each
 * line at most what the framer let through).
 */
#ifndef MCPMUX_HANDSHAKE_H
#define MCPMUX_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "mcpmux/jsonrpc.h"
#include "mcpmux/rpcout.h"

#define HANDSHAKE_SUBS 1024
#define HANDSHAKE_ID   "mcpmux-replay" /* ids of replayed requests: "mcpmux-replay-N" */

struct handshake_sub {
	char *uri_key; /* the subscribed URI by value (jsonrpc_id_key(): escapes decoded) */
	size_t uri_key_len;
	char *params; /* the request's params, JSON text */
	size_t params_len;
};

struct handshake {
	bool have_init;		 /* the client's initialize was seen */
	struct sbuf init_params; /* its params (JSON text) */
	struct sbuf init_key;	 /* its id's key (jsonrpc_id_key()), to see its answer */
	bool have_result;	 /* the first server's answer to it was seen */
	struct sbuf proto;	 /* that answer's protocolVersion (JSON text) */
	struct sbuf caps;	 /* and capabilities (JSON text) */
	bool initialized;	 /* notifications/initialized was sent */
	bool have_level;
	struct sbuf level_params; /* params of the last logging/setLevel */
	struct handshake_sub *subs;
	size_t n_subs;
	unsigned long subs_lost; /* subscriptions not kept (over HANDSHAKE_SUBS, out of memory) */
	unsigned long long seq;	 /* for replay ids */
};

void handshake_init(struct handshake *hs);
void handshake_release(struct handshake *hs);
/* Give back the memory of the scanner that batches' elements are read with. */
void handshake_module_release(void);

/*
 * A message the client sent to the server (scan describes line).  A subscription is
 * known by its URI's value: "a/b" and "a\/b" are one URI; a URI that is not a string
 * is not recorded.  Subscriptions are replayed in the order they were made.  A batch:
 * each of its elements, in order, as if it had come alone.
 */
void handshake_observe_client(struct handshake *hs, const struct jsonrpc_scanner *scan,
			      const char *line, size_t len);
/*
 * A message the server sent (scan describes line): the first answer to initialize, alone
 * or in a batch.  An error answer ends the record of that initialize: nothing is
 * replayed for it.
 */
void handshake_observe_server(struct handshake *hs, const struct jsonrpc_scanner *scan,
			      const char *line, size_t len);
/* Is there a handshake to replay (an initialize the first server answered)? */
bool handshake_ready(const struct handshake *hs);

/*
 * The replay's initialize request, into b: the client's params under id
 * "mcpmux-replay-N", whose JSON text goes into id (at most 64 bytes).
 */
void handshake_replay_init(struct handshake *hs, struct sbuf *b, char *id, size_t id_size);
/*
 * Check a fresh server's answer (line, a response or error with the replay's id) to the
 * replayed initialize: its protocolVersion and capabilities must be the first server's,
 * compared as JSON values (white space, key order and escapes aside; a member absent
 * from both is the same).  NULL when it may go on; else why not (a static text, or one
 * written into why).
 */
const char *handshake_check_init(const struct handshake *hs, const struct jsonrpc_scanner *scan,
				 const char *line, size_t len, char *why, size_t why_size);
/*
 * The rest of the replay, one message at a time: k from 0 until it returns false.  Each
 * is appended to b as one line (no "\n"); *is_request says whether an answer will come
 * (under the id it got, written into id).
 */
bool handshake_replay_next(struct handshake *hs, size_t k, struct sbuf *b, bool *is_request,
			   char *id, size_t id_size);
/* Is this id (canonical JSON text, as jsonrpc_scan() gives it) one of the replay's? */
bool handshake_is_replay_id(const char *id, size_t len);

#endif
