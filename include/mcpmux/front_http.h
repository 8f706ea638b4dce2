/*
 * front_http: the Streamable HTTP front end of `mcpmux serve --http` (docs/http.md).
 *
 * MCP's HTTP transport on the HTTP layer (http.h): POST carries one JSON-RPC message
 * from the client and is answered with 202 (a notification or a response), or with the
 * request's answer as an SSE stream (or one application/json body for a client that
 * accepts nothing else); GET opens the session's stream for messages the server sends on
 * its own, or resumes any stream after a lost connection (Last-Event-ID); DELETE ends the
 * session, process tree and all, and is answered once the tree is gone.
 *
 * Each HTTP session is a port of the hub (hub.h): the same sessions, control methods,
 * counts and traffic log as the envelope front end, seen through another door.  An HTTP
 * session belongs to no connection: connections come and go, and the session lives until
 * DELETE, --idle-timeout, its server's exit, or mcpmux's shutdown.
 *
 * Ownership: the serve main owns the front end (front_http_new() to front_http_free());
 * the front end owns its HTTP server, its sessions' ports and their streams.  The hub
 * must outlive it.  Every function is called from the loop; none exits the process.
 */
#ifndef MCPMUX_FRONT_HTTP_H
#define MCPMUX_FRONT_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "mcpmux/cli.h"
#include "mcpmux/hub.h"

struct front_http;

/*
 * A front end for hub h with the options o (borrowed for its life): limits from
 * --max-message, --max-queue and --stall-timeout; the token of --auth-token-file is read
 * here.  NULL after saying why (the file cannot be read, out of memory).
 */
struct front_http *front_http_new(struct ev_loop *loop, struct hub *h,
				  const struct mcpmux_options *o);
/*
 * Open the listeners of every --http, taking the sockets systemd passed (fds, n_fds) for
 * `--http systemd`.  0; -1 after saying why (exit 1); -2 when a listener is beyond
 * loopback and there is no token (a usage error: exit 2).
 */
int front_http_listen(struct front_http *fh, const int *fds, size_t n_fds);
/*
 * mcpmux is shutting down: stop accepting connections and starting sessions (the hub
 * ends those that run); on_drained(ctx) is called once the hub is empty and every
 * answer has been written (or could not be).
 */
void front_http_shutdown(struct front_http *fh, void (*on_drained)(void *ctx), void *ctx);
/* Is everything written (nothing queued for any HTTP client)? */
bool front_http_drained(const struct front_http *fh);
/* Close everything and free (NULL is a no-op).  Not from a callback of fh. */
void front_http_free(struct front_http *fh);

#endif
