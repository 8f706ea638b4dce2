/*
 * httpmsg: the pure pieces of mcpmux's HTTP layer.  Header fields (lookup, validation,
 * lists), the request target, status reasons, the Date format, chunk framing,
 * Server-Sent Events, Accept matching, bearer tokens, Origin checks, and the listen
 * address of --http.  No I/O and no event loop: everything takes bytes and returns
 * results, so it is unit-tested on its own (http.c is its user).
 *
 * Strings given as (pointer, length) need not be NUL-terminated; names given as a plain
 * `const char *` must be.  Nothing here allocates or keeps a pointer.
 */
#ifndef MCPMUX_HTTPMSG_H
#define MCPMUX_HTTPMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

/* A header field of a request: pointers into the request's own storage. */
struct http_header {
	const char *name;
	size_t name_len;
	const char *value; /* leading and trailing whitespace removed */
	size_t value_len;
};

/* A token (RFC 9110 tchar+): what a field name or a method must be.  Empty is not. */
bool httpmsg_is_token(const char *p, size_t len);
/*
 * A field value mcpmux may write: no CR, LF, NUL or other control character except
 * HTAB.  (A CR or LF in a response header would let its source inject fields.)
 */
bool httpmsg_value_ok(const char *p, size_t len);
/* Case-insensitive comparison of a field name with NUL-terminated `name`. */
bool httpmsg_name_eq(const char *p, size_t len, const char *name);
/* The first field called `name` (any case), or NULL. */
const struct http_header *httpmsg_find(const struct http_header *h, size_t n, const char *name);
/* How many fields are called `name`. */
size_t httpmsg_count(const struct http_header *h, size_t n, const char *name);
/* Whether a comma-separated list value (Connection, ...) holds `token` (any case). */
bool httpmsg_list_has(const char *v, size_t len, const char *token);
/* Whether every element of a comma-separated list value is `token` (any case). */
bool httpmsg_list_only(const char *v, size_t len, const char *token);

/*
 * The request target split at its first '?': path, and the query without the '?'.  An
 * absolute-form target ("http://host:port/path?query", scheme http or https in any case:
 * RFC 9112, 3.2.2) has its authority apart, and its path is "/" when it has none.
 */
struct httpmsg_target {
	const char *authority; /* NULL for any other form */
	size_t authority_len;
	const char *path;
	size_t path_len;
	const char *query; /* NULL when the target has no '?' */
	size_t query_len;
};
void httpmsg_split_target(const char *t, size_t len, struct httpmsg_target *out);

/* The reason phrase of a status code ("Unknown" for codes it does not know). */
const char *httpmsg_reason(int status);
/* Whether a response with this status has no body (1xx, 204, 304). */
bool httpmsg_status_bodiless(int status);

/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"): exactly HTTPMSG_DATE_LEN bytes + NUL. */
#define HTTPMSG_DATE_LEN 29
void httpmsg_date(char out[HTTPMSG_DATE_LEN + 1], time_t t);

/* The head of a chunk of `len` bytes ("1a2b\r\n"); returns its length (at most 18). */
#define HTTPMSG_CHUNK_HEAD_MAX 18
size_t httpmsg_chunk_head(char out[HTTPMSG_CHUNK_HEAD_MAX], size_t len);

/*
 * One Server-Sent Events block (WHATWG HTML, "event stream interpretation").  Every
 * member is optional: a comment alone is a keep-alive; retry alone sets the client's
 * reconnection delay; an id with has_data and empty data is the "priming" event of
 * MCP 2025-11-25 (it sets the client's last event ID and dispatches nothing).  data is
 * split at every CRLF, CR or LF into "data:" lines, so that no byte of it can end the
 * event early or start a field.
 */
struct httpmsg_sse {
	const char *comment; /* ": comment" (NUL-terminated, no line breaks), or NULL */
	const char *event;   /* "event: ..." or NULL */
	const char *id;	     /* "id: ..." or NULL */
	long retry_ms;	     /* "retry: N" when >= 0 */
	bool has_data;
	const char *data;
	size_t data_len;
};
/* Whether an id, event or comment can be written: no CR, LF or NUL. */
bool httpmsg_sse_field_ok(const char *s);
/* Bytes that httpmsg_sse_format() writes for ev. */
size_t httpmsg_sse_size(const struct httpmsg_sse *ev);
/* Write ev, ending with its blank line, to out (httpmsg_sse_size() bytes); the length. */
size_t httpmsg_sse_format(char *out, const struct httpmsg_sse *ev);
/*
 * Where data has its first line break (CR or LF), or data_len when it has none: data
 * without one can be written as "data: " + data + "\n\n" with no copy.
 */
size_t httpmsg_sse_break(const char *data, size_t len);

/*
 * How much an Accept header value accepts media type `type` ("text/event-stream"):
 * the q-value (0..1000) of the most specific range that matches it (type/subtype, then
 * type/ *, then * / *), 0 when none does or that range has q=0.  A missing header accepts
 * everything; that is the caller's decision, not this function's.
 */
int httpmsg_accept_q(const char *v, size_t len, const char *type);
/*
 * The same over every Accept field of a head: a list field may come as several field
 * lines, which mean their values joined by commas (RFC 9110, 5.3).  -1 when there is none.
 */
int httpmsg_accept_fields_q(const struct http_header *h, size_t n, const char *type);

/*
 * Whether an Authorization value is "Bearer <token>" (scheme in any case) with exactly
 * `token`.  The comparison of the token takes the same time wherever the first
 * difference lies (it depends only on the lengths).
 */
bool httpmsg_bearer_ok(const char *v, size_t len, const char *token, size_t token_len);

/*
 * Whether an Origin value names a loopback host: http or https, and localhost,
 * *.localhost, 127.0.0.0/8 or [::1], with any port.  "null" and anything else is not.
 */
bool httpmsg_origin_is_loopback(const char *v, size_t len);

/*
 * Whether a Host value names a loopback host ("localhost:8080", "127.0.0.1", "[::1]:80"):
 * what a request that came through DNS rebinding does not carry.
 */
bool httpmsg_host_is_loopback(const char *v, size_t len);

/* Whether a socket address is loopback (127/8, ::1, ::ffff:127/104) or a Unix socket. */
bool httpmsg_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len);

/*
 * The argument of --http: "PORT", "HOST:PORT", "[IPV6]:PORT", or a Unix socket path
 * (anything with a '/').  Without a host, 127.0.0.1 (loopback).  Port 0 asks for any
 * free port.  0, or -1 (EINVAL) when it is none of those (port 0..65535 in decimal,
 * host at most 255 bytes, no empty parts).
 */
struct httpmsg_addr {
	bool is_path;
	char host[256]; /* without the brackets of an IPv6 address */
	char port[6];
	char path[108];
};
int httpmsg_parse_addr(const char *spec, struct httpmsg_addr *out);

#endif
