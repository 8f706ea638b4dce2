/*
 * http: mcpmux's HTTP/1.1 server layer.  Listening sockets (TCP, a Unix socket, or one
 * handed over by systemd), connections, request parsing (nodejs/http-parser, under
 * mcpmux's own buffers), whole and streamed responses (chunked transfer coding, or
 * connection-close framing for HTTP/1.0), Server-Sent Events, and the limits and
 * timeouts that keep a misbehaving client from holding memory or connections.  It knows
 * nothing of MCP: the front end decides what a request means (docs/http.md).
 *
 * Exchanges.  A connection carries one exchange at a time: a request and its response.
 * A request reaches the handler whole, head and body (buffered up to max_body; a longer
 * one is refused with 413 without being buffered).  The handler answers it then or
 * later: http_respond() with a whole body, or http_stream_begin() (or http_sse_begin())
 * and then any number of http_stream_send() before http_stream_end().  Pipelined
 * requests wait, unparsed, until the exchange before them is over, so responses go out
 * in request order; while an exchange is open, at most HTTP_HOLD_MAX bytes that follow
 * it are read ahead, then reading stops until it ends.  No request is parsed while
 * HTTP_HOLD_MAX bytes of answers (or max_queue, if less) wait for the client to take
 * them.
 *
 * The layer answers by itself, and closes the connection after: 400 (malformed request;
 * an HTTP/1.1 one without Host, any with two),
 * 408 (head or body not received in time), 413 (body over max_body), 414 (target over
 * max_head), 431 (head over max_head or more than max_headers fields), 501 (a transfer
 * coding other than chunked), 505 (not HTTP/1.x), 503 (over max_conns, sent on accept; no
 * memory for a connection, likewise; or no memory to read a request: never 400, which says
 * the request is at fault).  "Expect:
 * 100-continue" is answered with 100 when the body will be accepted.
 *
 * Backpressure.  Bytes the kernel does not take are queued per connection (wbuf).  Once
 * a stream's queue reaches max_queue, http_stream_full() is true and the producer
 * should hold back; on_writable() tells it when the queue has drained to half of that.
 * Sends beyond the mark are still queued (nothing is dropped); the bound is the
 * producer's to keep.  A client that takes nothing for write_timeout seconds while bytes
 * wait is gone.
 *
 * Ownership and lifetime.
 * - struct http_server: from http_server_new() to http_server_free(); free closes every
 *   listener and connection, calling on_close() for each exchange still open.
 * - struct http_req: the layer's.  It is valid from on_request() until the exchange
 *   ends: when http_respond() or http_stream_end() returns 0, or when on_close() has been
 *   called for it.  Everything it points to (method, target, headers, body, peer) lives
 *   exactly as long.  After on_close() returns, the request must not be used.
 * - on_close() means the exchange ended without the handler: the client closed the
 *   connection or reset it, a write failed, a write stalled past write_timeout, or the
 *   server is being freed.  It is the handler's cue that what it has not sent will not
 *   arrive.  An EOF while an exchange is open counts, except for a client that only
 *   half-closed after its request (RFC 9112): when the request is not a GET, nothing but
 *   line ends follows it, and a probe the answer allows finds the client there (an
 *   interim "100 Continue" to an HTTP/1.1 request not answered yet, or an SSE comment),
 *   the exchange goes on and the connection closes after its answer.  A reset that comes
 *   later ends it as a close does: it is looked for each second, and while no response
 *   has begun each look writes another interim 100 first, since a client that closes
 *   after the probe sends nothing that draws one; on an SSE stream the keep-alive
 *   comments draw it.
 * - Callbacks come from the event loop, never from inside an http_* call: a write error
 *   inside http_stream_send() makes it return -1 (EPIPE), and on_close() follows from the
 *   loop.  A callback may call any http_* function on its request, and answer it at
 *   once inside on_request().  http_server_free() must not be called from a callback.
 *
 * Errors: functions that return int give 0, or -1 with errno: EINVAL for a call that
 * does not fit the exchange's state or a field that cannot be written (nothing is sent;
 * the exchange is unchanged), EPIPE when the connection is already broken, ENOMEM.
 * After EPIPE or ENOMEM the connection is broken and on_close() follows.
 */
#ifndef MCPMUX_HTTP_H
#define MCPMUX_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <ev.h>

#include "mcpmux/httpmsg.h"

/* Bytes read ahead of an open exchange (pipelined requests) before reading stops. */
#define HTTP_HOLD_MAX ((size_t)64 << 10)
/* At most this many listening sockets per server. */
#define HTTP_LISTENERS_MAX 8

/* Bounds of a server.  A timeout of 0 is off. */
#define HTTP_REJECTS_DEF 64

struct http_limits {
	size_t max_head;      /* target and header fields, bytes */
	size_t max_headers;   /* header fields */
	size_t max_body;      /* request body, bytes (mcpmux: --max-message) */
	size_t max_conns;     /* open connections; more get 503 */
	size_t max_rejects;   /* of those, 503s that linger at once (HTTP_REJECTS_DEF); more
				 get the answer and are closed at once */
	size_t max_queue;     /* unsent response bytes before http_stream_full() */
	double head_timeout;  /* s from a request's first byte (or the accept) to its head's end */
	double body_timeout;  /* s from the end of the head to the end of the body */
	double idle_timeout;  /* s a keep-alive connection may wait for its next request, from
				 the end of its last answer's write */
	double write_timeout; /* s with bytes waiting and none taken: the client is gone */
	double sse_keepalive; /* s of silence on an SSE stream before a comment line */
};

/* 16 KiB head, 100 fields, 64 MiB body, 1024 connections, 1 MiB queue, 10/60/60/30/15 s. */
void http_limits_init(struct http_limits *lim);

enum http_req_method {
	HTTP_REQ_OTHER,
	HTTP_REQ_GET,
	HTTP_REQ_HEAD,
	HTTP_REQ_POST,
	HTTP_REQ_PUT,
	HTTP_REQ_DELETE,
	HTTP_REQ_OPTIONS,
	HTTP_REQ_PATCH,
};

/* A request as the handler sees it.  Strings are NUL-terminated as well as counted. */
struct http_request {
	enum http_req_method method;
	const char *method_name;
	const char *target; /* as received: path (or absolute URI), '?' and the query */
	size_t target_len;
	/*
	 * The authority of an absolute-form target ("http://127.0.0.1:8080/mcp"), which
	 * stands for the Host (RFC 9112, 3.2.2); NULL for the origin-form.
	 */
	const char *authority;
	size_t authority_len;
	const char *path;
	size_t path_len;
	const char *query; /* NULL when there is no '?' */
	size_t query_len;
	int version; /* 10 or 11 */
	const struct http_header *headers;
	size_t n_headers;
	const char *body; /* NULL when empty */
	size_t body_len;
	const struct sockaddr *peer; /* AF_UNIX (unnamed) for a Unix socket */
	socklen_t peer_len;
	bool peer_is_loopback;
};

/* A header field of a response: NUL-terminated name (a token) and value. */
struct http_field {
	const char *name;
	const char *value;
};

struct http_req;
struct http_server;

struct http_handler {
	void (*on_request)(struct http_req *rq, void *ctx);
	/*
	 * The stream's queue drained below half of max_queue after it was full, or is empty
	 * after http_stream_want_empty() (optional).
	 */
	void (*on_writable)(struct http_req *rq, void *ctx);
	/* The exchange ended without the handler (see above). */
	void (*on_close)(struct http_req *rq, void *ctx);
};

/* Counters for /metrics and tests. */
struct http_stats {
	uint64_t accepted;  /* connections accepted (rejected ones included) */
	uint64_t rejected;  /* answered 503 over max_conns, or refused out of descriptors */
	uint64_t requests;  /* requests handed to the handler */
	uint64_t errors;    /* requests the layer answered itself (4xx, 5xx) */
	uint64_t timeouts;  /* connections closed by a timeout (408 included) */
	uint64_t closed;    /* on_close() calls */
	size_t conns;	    /* connections open now */
	size_t exchanges;   /* exchanges open now (handler's or streaming) */
	size_t queued;	    /* unsent bytes over all connections */
	uint64_t bytes_in;  /* bytes read */
	uint64_t bytes_out; /* bytes written */
};

/*
 * A server with no listener yet.  lim is copied; handler and ctx are borrowed for the
 * server's life.  NULL (errno) when out of memory.
 */
struct http_server *http_server_new(struct ev_loop *loop, const struct http_limits *lim,
				    const struct http_handler *handler, void *ctx);
/*
 * Listen on the argument of --http (httpmsg_parse_addr()): TCP on the address (a name
 * is resolved once, here), or a Unix socket path (created 0600, a stale one replaced;
 * peers of another uid refused).  0, or -1 after printing why.
 */
int http_server_listen(struct http_server *s, const char *spec);
/* Accept on fd, a listening stream socket (from socket activation); owned after. */
int http_server_listen_fd(struct http_server *s, int fd);
/* Whether every listener so far is loopback or a Unix socket. */
bool http_server_is_loopback(const struct http_server *s);
/* The local port of the first TCP listener (for port 0), or 0. */
int http_server_port(const struct http_server *s);
/*
 * How many listeners s has, and the local port of listener i (0 for a Unix socket); its
 * local address, as --http takes it ("0.0.0.0", "[::1]"), in addr (unless NULL).
 */
size_t http_server_n_listeners(const struct http_server *s);
int http_server_port_of(const struct http_server *s, size_t i, char *addr, size_t cap);
void http_server_stats(const struct http_server *s, struct http_stats *st);
/*
 * Stop accepting: every listener is closed (a Unix socket's file removed); open
 * connections go on.  For a shutdown that lets streams finish.
 */
void http_server_close_listeners(struct http_server *s);
/* Close everything (on_close() for open exchanges) and free s.  NULL is a no-op. */
void http_server_free(struct http_server *s);

/*
 * Socket activation: the listening sockets systemd passed (LISTEN_PID is ours,
 * LISTEN_FDS of them from fd 3), made close-on-exec and non-blocking; the variables
 * are removed from the environment.  Up to max fds are stored; returns how many were
 * passed (0 when none), or -1 (EINVAL) when the variables are malformed.
 */
int http_listen_fds(int *fds, int max);

const struct http_request *http_req_request(const struct http_req *rq);
/* The value of the first header field called name (any case), or NULL. */
const char *http_req_header(const struct http_req *rq, const char *name, size_t *len);
/* A pointer of the handler's, kept with the request. */
void http_req_set_data(struct http_req *rq, void *data);
void *http_req_data(const struct http_req *rq);

/*
 * Answer with a whole body (copied as needed: the caller keeps body).  The layer adds
 * Date, Content-Length and, when the connection is to close, "Connection: close"; a
 * field "Connection: close" from the caller closes it after this response.
 * Content-Length and Transfer-Encoding must not be given.  0: the exchange is over.
 */
int http_respond(struct http_req *rq, int status, const struct http_field *fields, size_t n_fields,
		 const void *body, size_t len);

/*
 * Start a body written piecewise: chunked for HTTP/1.1, ended by closing the
 * connection for HTTP/1.0.  The head is written at once.
 */
int http_stream_begin(struct http_req *rq, int status, const struct http_field *fields,
		      size_t n_fields);
/* Queue bytes of the body (one chunk).  Empty sends are no-ops. */
int http_stream_send(struct http_req *rq, const void *p, size_t len);
int http_stream_sendv(struct http_req *rq, const struct iovec *iov, int n);
/* The last chunk; 0: the exchange is over (queued bytes are still written). */
int http_stream_end(struct http_req *rq);
/*
 * Close the exchange's connection at once, its queued bytes dropped: on_close() follows
 * at the next turn of the loop, as for a connection that broke.
 */
void http_req_abort(struct http_req *rq);
/* The stream's queue is at or over max_queue: hold back until on_writable(). */
bool http_stream_full(const struct http_req *rq);
/* Unsent bytes of this request's connection. */
size_t http_stream_queued(const struct http_req *rq);
/*
 * Bytes of this request's connection that its socket took, from its start.  A send has
 * left mcpmux once this reaches the sum of the two just after it: until then the bytes
 * are in the queue, and a connection that breaks loses them.
 */
uint64_t http_stream_sent(const struct http_req *rq);
/*
 * Ask for one on_writable() once the connection's queue is empty (every byte sent so far
 * taken by the socket).  EINVAL when nothing is queued, or rq is not a stream.
 */
int http_stream_want_empty(struct http_req *rq);

/*
 * A Server-Sent Events stream: http_stream_begin() with status 200, Content-Type
 * text/event-stream and Cache-Control no-cache, plus fields.  Comment lines keep it
 * alive after sse_keepalive seconds without output.
 */
int http_sse_begin(struct http_req *rq, const struct http_field *fields, size_t n_fields);
/* One event or field block (httpmsg_sse); EINVAL when id, event or comment has a line break. */
int http_sse_send(struct http_req *rq, const struct httpmsg_sse *ev);
/*
 * The common case: an event with data (and an id when id is not NULL).  Data without
 * line breaks (a JSON-RPC message) is written without a copy when the socket takes it.
 */
int http_sse_message(struct http_req *rq, const char *id, const char *data, size_t len);
/*
 * The exchange's connection is gone, or its peer closed it (seen without reading:
 * pipelined bytes are left where they are), though on_close has not been called yet.
 * A peer that ended its side only is gone unless the exchange is kept as half-closed
 * (above; the probe is written then).
 */
bool http_req_gone(struct http_req *rq);

#endif
