/*
 * http: HTTP/1.1 server connections on libev, parsed by nodejs/http-parser.
 *
 * A connection reads into the loop's one read buffer (sys_scratch) and feeds the parser
 * from it;
 * what a request needs to outlive the read (target, header fields, body) is copied into
 * that request's own storage, and bytes that follow a complete request while its
 * exchange is open are held (up to HTTP_HOLD_MAX).  An idle keep-alive connection holds
 * no buffer: its struct, its parser state and its two watchers.
 *
 * The parser pauses itself at the end of every message (on_message_complete), so a
 * pipelined request is never parsed before the exchange ahead of it ends.  Connections
 * die in two steps: conn_kill() closes the socket at once and queues the connection;
 * the server's idle watcher then tells the handler (on_close) and frees it, outside of
 * any callback that might still hold a pointer to it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <http_parser.h>

#include "mcpmux/diag.h"
#include "mcpmux/http.h"
#include "mcpmux/listener.h"
#include "mcpmux/sys.h"
#include "mcpmux/wbuf.h"

#define READ_BUDGET	((size_t)256 << 10) /* per connection per callback: fairness */
#define ACCEPT_BUDGET	64
#define LINGER_TIME	2.0		   /* s to read what a client still sends after a close */
#define LINGER_MAX	((size_t)1 << 20)  /* bytes discarded at most while lingering */
#define HEAD_FIRST	256		   /* first allocation of a request's head storage */
#define HTTP_BODY_FIRST ((size_t)64 << 10) /* first allocation of a body with a length */
#define HEAD_STACK	1024 /* response heads up to this size are built on the stack */
#define SSE_KEEPALIVE	": keepalive\n\n"
#define SEND_IOV_MAX	18  /* a chunk's head, 16 pieces and its end */
#define HUP_CHECK	1.0 /* s between checks that a half-closed client is still there */
#define PROBE_100	"HTTP/1.1 100 Continue\r\n\r\n"

enum conn_state {
	CS_IDLE,     /* waiting for a request (keep-alive, or just accepted) */
	CS_HEAD,     /* reading a request's head */
	CS_BODY,     /* reading its body */
	CS_EXCHANGE, /* the request is the handler's: unanswered or streaming */
	CS_CLOSING,  /* the last response is (being) written; then linger and close */
};

enum rq_state {
	RQ_READING, /* being parsed */
	RQ_HANDLER, /* handed over, not answered yet */
	RQ_STREAM,  /* a streamed response is open */
};

enum timer_why {
	TW_NONE,
	TW_IDLE,
	TW_HEAD,
	TW_BODY,
	TW_WRITE,
	TW_KEEPALIVE,
	TW_LINGER,
	TW_HUP,
};

/* Where a header field lies in the head storage, while the head is being read. */
struct field_off {
	size_t name, name_len, value, value_len;
};

struct http_req {
	struct hconn *c;
	enum rq_state state;
	struct http_request r;
	void *data;
	/* Storage: method, target, then each field's name and value, all NUL-terminated. */
	char *head;
	size_t head_len, head_cap;
	size_t target_off, target_len;
	struct field_off *offs;
	size_t n_offs, offs_cap;
	bool in_value; /* the last header piece was a value */
	bool target_done;
	struct http_header *hdr;
	char *body;
	size_t body_len, body_cap;
	size_t body_declared; /* its Content-Length; 0: none (chunked) */
	int err;	      /* the status the layer answers with, when parsing stops on purpose */
	bool is_sse;
	bool chunked;	/* the response is chunked */
	bool head_only; /* a HEAD request: no body is written */
	bool was_full;
	bool want_empty; /* on_writable() once the queue is empty */
};

struct hconn {
	struct http_server *s;
	struct hconn *prev, *next; /* every connection of s */
	struct hconn *pnext;	   /* in s's pending list (dead, or to resume) */
	int fd;
	ev_io io_w;
	ev_timer timer_w;
	ev_tstamp timer_at;
	ev_tstamp t_idle, t_head, t_body, t_write, t_out, t_shut, t_hup;
	http_parser p;
	enum conn_state state;
	struct http_req *rq;
	struct wbuf out;
	char *hold; /* bytes read ahead of an open exchange */
	size_t hold_len, hold_off, hold_cap;
	size_t lingered;
	unsigned int write_turn; /* loop iteration of the last direct write */
	uint64_t sent;		 /* bytes the socket took, over the connection's life */
	unsigned int n_served;
	bool dead;
	bool pending;
	bool in_dispatch;
	bool close_after;
	bool shut;   /* our side is shut down: lingering */
	bool rd_eof; /* the client shut its side: nothing more is read; close after */
	bool is_reject;
	bool is_loopback;
	/*
	 * The bytes being parsed (for the parser's callbacks), and whether those parsed before
	 * them end in a line end and white space: where a value piece starts after a line end,
	 * the line is a fold.
	 */
	const char *feed;
	bool fed_line_end;
	socklen_t peer_len;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer; /* AF_UNIX (unnamed) for a Unix socket */
};

struct hlistener {
	struct http_server *s;
	int fd;
	ev_io accept_w;
	ev_timer retry_w; /* accepting again after a failure that would repeat at once */
	bool is_unix;
	bool is_loopback;
	struct listener ul; /* the Unix socket's, when is_unix */
};

struct http_server {
	struct ev_loop *loop;
	struct http_limits lim;
	const struct http_handler *h;
	void *ctx;
	struct hlistener lst[HTTP_LISTENERS_MAX];
	size_t n_lst;
	int spare; /* a descriptor given up to refuse a connection when out of them */
	struct hconn *conns;
	struct hconn *pending; /* to reap or to resume, at the next loop turn */
	ev_idle pending_w;
	size_t n_conns, n_rejects;
	struct http_stats st;
	time_t date_sec;
	char date[HTTPMSG_DATE_LEN + 1];
};

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t len);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static void conn_update(struct hconn *c);
static void conn_kill(struct hconn *c);
static void conn_error(struct hconn *c, int status);
static void conn_on_io(struct ev_loop *loop, ev_io *w, int revents);
static void conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents);

void
http_limits_init(struct http_limits *lim)
{
	*lim = (struct http_limits){
		.max_head = (size_t)16 << 10,
		.max_headers = 100,
		.max_body = (size_t)64 << 20,
		.max_conns = 1024,
		.max_rejects = HTTP_REJECTS_DEF,
		.max_queue = (size_t)1 << 20,
		.head_timeout = 10,
		.body_timeout = 60,
		.idle_timeout = 60,
		.write_timeout = 30,
		.sse_keepalive = 15,
	};
}

/* ---- requests ---- */

static void
rq_free(struct http_req *rq)
{
	if (rq == NULL) {
		return;
	}
	free(rq->head);
	free(rq->offs);
	free(rq->hdr);
	free(rq->body);
	free(rq);
}

/* Append to the head storage, within the head limit; -1 sets rq->err. */
static int
head_add(struct http_req *rq, size_t max, const char *p, size_t len, int status)
{
	if (rq->head_len + len + 1 > max) {
		rq->err = status;
		return -1;
	}
	if (rq->head_len + len + 1 > rq->head_cap) {
		size_t cap = rq->head_cap ? rq->head_cap : HEAD_FIRST;

		while (cap < rq->head_len + len + 1) {
			cap *= 2;
		}
		char *nb = realloc(rq->head, cap);

		if (nb == NULL) {
			rq->err = 503;
			return -1;
		}
		rq->head = nb;
		rq->head_cap = cap;
	}
	memcpy(rq->head + rq->head_len, p, len);
	rq->head_len += len;
	return 0;
}

/* End the string being stored (target, name or value) with a NUL. */
static int
head_end(struct http_req *rq, size_t max)
{
	if (head_add(rq, max, "", 0, 431) == -1) {
		return -1;
	}
	rq->head[rq->head_len++] = '\0';
	return 0;
}

/* The value being read is complete: trim it and close the field. */
static int
field_finish(struct http_req *rq, size_t max)
{
	struct field_off *f = &rq->offs[rq->n_offs - 1];

	f->value_len = rq->head_len - f->value;
	while (f->value_len > 0 && (rq->head[f->value + f->value_len - 1] == ' ' ||
				    rq->head[f->value + f->value_len - 1] == '\t')) {
		f->value_len--;
	}
	rq->in_value = false;
	if (head_end(rq, max) == -1) {
		return -1;
	}
	rq->head[f->value + f->value_len] = '\0';
	return 0;
}

static enum http_req_method
method_of(unsigned int m)
{
	switch (m) {
	case HTTP_GET:
		return HTTP_REQ_GET;
	case HTTP_HEAD:
		return HTTP_REQ_HEAD;
	case HTTP_POST:
		return HTTP_REQ_POST;
	case HTTP_PUT:
		return HTTP_REQ_PUT;
	case HTTP_DELETE:
		return HTTP_REQ_DELETE;
	case HTTP_OPTIONS:
		return HTTP_REQ_OPTIONS;
	case HTTP_PATCH:
		return HTTP_REQ_PATCH;
	default:
		return HTTP_REQ_OTHER;
	}
}

/* ---- parser callbacks ---- */

static int
on_message_begin(http_parser *p)
{
	struct hconn *c = p->data;

	if (c->rq == NULL) {
		c->rq = calloc(1, sizeof(*c->rq));
		if (c->rq == NULL) {
			return -1;
		}
		c->rq->c = c;
	}
	return 0;
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
	struct hconn *c = p->data;

	/* A target longer than the whole head may be is 414, not 431. */
	return head_add(c->rq, c->s->lim.max_head, at, len, 414);
}

static int
target_finish(struct hconn *c)
{
	struct http_req *rq = c->rq;

	if (rq->target_done) {
		return 0;
	}
	rq->target_done = true;
	rq->target_off = 0;
	rq->target_len = rq->head_len;
	return head_end(rq, c->s->lim.max_head);
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
	struct hconn *c = p->data;
	struct http_req *rq = c->rq;
	size_t max = c->s->lim.max_head;

	if (c->state == CS_BODY) {
		return 0; /* a chunked body's trailer: discarded (the head was built already) */
	}
	if (target_finish(c) == -1) {
		return -1;
	}
	if (rq->in_value && field_finish(rq, max) == -1) {
		return -1;
	}
	if (rq->n_offs == 0 || rq->offs[rq->n_offs - 1].value != 0) {
		/* A new field. */
		if (rq->n_offs == c->s->lim.max_headers) {
			rq->err = 431;
			return -1;
		}
		if (rq->n_offs == rq->offs_cap) {
			size_t cap = rq->offs_cap ? 2 * rq->offs_cap : 16;
			struct field_off *no = realloc(rq->offs, cap * sizeof(*no));

			if (no == NULL) {
				rq->err = 503;
				return -1;
			}
			rq->offs = no;
			rq->offs_cap = cap;
		}
		rq->offs[rq->n_offs++] = (struct field_off){ .name = rq->head_len };
	}
	return head_add(rq, max, at, len, 431);
}

/*
 * Whether the bytes before p, back over white space, end a line: p is then in a line that
 * starts with white space after a field, an obs-fold.
 */
static bool
after_line_end(const struct hconn *c, const char *p)
{
	while (p > c->feed && (p[-1] == ' ' || p[-1] == '\t')) {
		p--;
	}
	return p > c->feed ? p[-1] == '\n' : c->fed_line_end;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
	struct hconn *c = p->data;
	struct http_req *rq = c->rq;
	size_t max = c->s->lim.max_head;

	if (c->state == CS_BODY) {
		return 0; /* a trailer's */
	}
	/*
	 * RFC 9112, 5.2: a value continued on a line that starts with white space (obs-fold)
	 * is refused, as a proxy in front may read it otherwise.  The parser takes it as more
	 * of the value ("Transfer-Encoding:\r\n chunked" as chunked).  An empty value comes
	 * as an empty piece at the next line's start: not a fold.  (A fold of white space
	 * alone after an empty value, "X:\r\n \r\n", is taken: its value is empty however it
	 * is read.)
	 */
	if (len > 0 && after_line_end(c, at)) {
		rq->err = 400;
		return -1;
	}
	if (!rq->in_value) {
		struct field_off *f = &rq->offs[rq->n_offs - 1];

		f->name_len = rq->head_len - f->name;
		/* The parser lets "Host : x" and "Ho st: x" through: a name must be a token. */
		if (!httpmsg_is_token(rq->head + f->name, f->name_len)) {
			rq->err = 400;
			return -1;
		}
		if (head_end(rq, max) == -1) {
			return -1;
		}
		f->value = rq->head_len;
		rq->in_value = true;
	}
	return head_add(rq, max, at, len, 431);
}

/* The head is complete: build the handler's view of it. */
static int
rq_build(struct hconn *c)
{
	struct http_req *rq = c->rq;
	struct http_request *r = &rq->r;
	struct httpmsg_target t;

	if (rq->n_offs > 0) {
		rq->hdr = calloc(rq->n_offs, sizeof(*rq->hdr));
		if (rq->hdr == NULL) {
			rq->err = 503;
			return -1;
		}
	}
	for (size_t i = 0; i < rq->n_offs; i++) {
		rq->hdr[i] = (struct http_header){
			.name = rq->head + rq->offs[i].name,
			.name_len = rq->offs[i].name_len,
			.value = rq->head + rq->offs[i].value,
			.value_len = rq->offs[i].value_len,
		};
	}
	r->method = method_of(c->p.method);
	r->method_name = http_method_str((enum http_method)c->p.method);
	r->target = rq->head + rq->target_off;
	r->target_len = rq->target_len;
	httpmsg_split_target(r->target, r->target_len, &t);
	r->authority = t.authority;
	r->authority_len = t.authority_len;
	r->path = t.path;
	r->path_len = t.path_len;
	r->query = t.query;
	r->query_len = t.query_len;
	r->version = 10 * c->p.http_major + c->p.http_minor;
	r->headers = rq->hdr;
	r->n_headers = rq->n_offs;
	r->peer = &c->peer.sa;
	r->peer_len = c->peer_len;
	r->peer_is_loopback = c->is_loopback;
	rq->head_only = r->method == HTTP_REQ_HEAD;
	return 0;
}

static int conn_write_raw(struct hconn *c, const char *p, size_t len);

static int
on_headers_complete(http_parser *p)
{
	struct hconn *c = p->data;
	struct http_req *rq = c->rq;
	size_t max = c->s->lim.max_head;

	if (target_finish(c) == -1 || (rq->in_value && field_finish(rq, max) == -1)) {
		return -1;
	}
	if (rq->n_offs > 0 && rq->offs[rq->n_offs - 1].value == 0) {
		rq->err = 400; /* a name without a value: cannot happen, but cheap to refuse */
		return -1;
	}
	if (p->http_major != 1) {
		rq->err = p->http_major == 0 ? 400 : 505;
		return -1;
	}
	if (rq_build(c) == -1) {
		return -1;
	}
	/* RFC 9112, 3.2: an HTTP/1.1 request without a Host, or with two, is a 400. */
	size_t n_host = httpmsg_count(rq->hdr, rq->n_offs, "Host");

	if (n_host > 1 || (n_host == 0 && p->http_minor >= 1)) {
		rq->err = 400;
		return -1;
	}
	bool chunked = (p->flags & F_CHUNKED) != 0;
	bool has_len = (p->flags & F_CONTENTLENGTH) != 0;

	/*
	 * RFC 9112, 6.1: a transfer coding other than chunked (in "gzip, chunked") is not
	 * understood, 501.  One that does not end in chunked is the parser's 400 (6.3).
	 */
	for (size_t i = 0; chunked && i < rq->n_offs; i++) {
		const struct http_header *h = &rq->hdr[i];

		if (httpmsg_name_eq(h->name, h->name_len, "Transfer-Encoding") &&
		    !httpmsg_list_only(h->value, h->value_len, "chunked")) {
			rq->err = 501;
			return -1;
		}
	}

	if (has_len && p->content_length > c->s->lim.max_body) {
		rq->err = 413; /* refused before a byte of it is read */
		return -1;
	}
	size_t n;
	const char *expect = http_req_header(rq, "Expect", &n);

	if (expect != NULL) {
		if (!httpmsg_name_eq(expect, n, "100-continue")) {
			rq->err = 417;
			return -1;
		}
		if (p->http_minor >= 1 && (chunked || (has_len && p->content_length > 0)) &&
		    conn_write_raw(c, PROBE_100, sizeof(PROBE_100) - 1) == -1) {
			return -1;
		}
	}
	if (has_len && p->content_length > 0) {
		/*
		 * Grown as the bytes come, up to the length declared (bounded above): a client
		 * that declares 64 MiB and sends nothing holds no more than the first piece.
		 */
		rq->body_declared = p->content_length;
		rq->body_cap = SYS_MIN(rq->body_declared, HTTP_BODY_FIRST);
		rq->body = malloc(rq->body_cap);
		if (rq->body == NULL) {
			rq->err = 503;
			return -1;
		}
	}
	c->state = CS_BODY;
	c->t_body = ev_now(c->s->loop);
	return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
	struct hconn *c = p->data;
	struct http_req *rq = c->rq;

	if (rq->body_len + len > c->s->lim.max_body) {
		rq->err = 413; /* chunked: found out as it comes, and not buffered further */
		return -1;
	}
	if (rq->body_len + len > rq->body_cap) {
		size_t cap = rq->body_cap ? rq->body_cap : 4096;

		while (cap < rq->body_len + len) {
			cap *= 2;
		}
		cap = SYS_MIN(cap, rq->body_declared > 0 ? rq->body_declared : c->s->lim.max_body);
		char *nb = realloc(rq->body, cap);

		if (nb == NULL) {
			rq->err = 503;
			return -1;
		}
		rq->body = nb;
		rq->body_cap = cap;
		if (cap > ((size_t)256 << 10)) {
			sys_big_alloc = true;
		}
	}
	memcpy(rq->body + rq->body_len, at, len);
	rq->body_len += len;
	return 0;
}

static int
on_message_complete(http_parser *p)
{
	/* Stop here: the next request waits for this exchange to end. */
	http_parser_pause(p, 1);
	return 0;
}

/* ---- output ---- */

static void
date_refresh(struct http_server *s)
{
	time_t now = (time_t)ev_now(s->loop);

	if (now != s->date_sec) {
		s->date_sec = now;
		httpmsg_date(s->date, now);
	}
}

/*
 * Send iov[0..n) on c: written at once when nothing is queued (the first write of a loop
 * turn; later ones in the same turn are queued and leave together), the rest queued.
 * -1: EPIPE (the connection is broken, and killed) or ENOMEM (likewise).
 */
static int
conn_sendv(struct hconn *c, const struct iovec *iov, int n)
{
	size_t total = 0, done = 0;
	struct http_server *s = c->s;

	if (c->dead) {
		errno = EPIPE;
		return -1;
	}
	for (int i = 0; i < n; i++) {
		total += iov[i].iov_len;
	}
	if (total == 0) {
		return 0;
	}
	if (n > SEND_IOV_MAX) {
		BUG("conn_sendv: %d pieces", n);
	}
	unsigned int turn = ev_iteration(s->loop);

	if (wbuf_len(&c->out) == 0 && (c->write_turn != turn || total >= WBUF_CHUNK)) {
		c->write_turn = turn;
		ssize_t w = sys_writev(c->fd, iov, n);

		if (w == -1 && errno != EAGAIN) {
			conn_kill(c);
			errno = EPIPE;
			return -1;
		}
		done = w > 0 ? (size_t)w : 0;
		s->st.bytes_out += done;
		c->sent += done;
		if (done > 0) {
			c->t_write = ev_now(s->loop);
		}
		if (done == total) {
			return 0;
		}
	}
	struct iovec rest[SEND_IOV_MAX];
	int k = 0;
	size_t skip = done;

	for (int i = 0; i < n && k < SEND_IOV_MAX; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		rest[k].iov_base = (char *)iov[i].iov_base + skip;
		rest[k].iov_len = iov[i].iov_len - skip;
		skip = 0;
		k++;
	}
	if (wbuf_len(&c->out) == 0) {
		c->t_write = ev_now(s->loop); /* the stall clock starts with the queue */
	}
	if (wbuf_appendv(&c->out, rest, k) == -1) {
		conn_kill(c); /* part of a message may be out: the stream cannot go on */
		errno = ENOMEM;
		return -1;
	}
	s->st.queued += total - done;
	if (!c->in_dispatch) {
		conn_update(c);
	}
	return 0;
}

static int
conn_write_raw(struct hconn *c, const char *p, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)p, .iov_len = len };

	return conn_sendv(c, &iov, 1);
}

/* Write what is queued.  Returns -1 when the connection died. */
static int
conn_flush(struct hconn *c)
{
	struct http_server *s = c->s;
	size_t before = wbuf_len(&c->out);

	if (before == 0) {
		return 0;
	}
	if (wbuf_flush(&c->out, c->fd) == -1) {
		s->st.queued -= before;
		wbuf_release(&c->out);
		conn_kill(c);
		return -1;
	}
	size_t written = before - wbuf_len(&c->out);

	if (written > 0) {
		c->t_write = ev_now(s->loop);
		s->st.bytes_out += written;
		s->st.queued -= written;
		c->sent += written;
	}
	struct http_req *rq = c->rq;
	size_t left = wbuf_len(&c->out);

	if (rq != NULL && rq->state == RQ_STREAM &&
	    ((rq->was_full && left < s->lim.max_queue / 2) || (rq->want_empty && left == 0))) {
		rq->was_full = rq->was_full && left >= s->lim.max_queue / 2;
		rq->want_empty = rq->want_empty && left > 0;
		if (s->h->on_writable != NULL) {
			s->h->on_writable(rq, s->ctx);
		}
	}
	return c->dead ? -1 : 0;
}

/*
 * The head of a response, with the layer's fields.  framing is "Content-Length: N",
 * "Transfer-Encoding: chunked" or NULL.  Returns the head in *out (buf when it fits,
 * else malloc'd), or -1 (EINVAL for a field that cannot be written, ENOMEM).
 */
static int
build_head(struct hconn *c, int status, const struct http_field *fields, size_t n,
	   const char *framing, char *buf, size_t cap, char **out, size_t *len)
{
	struct http_server *s = c->s;
	bool keep_alive_10 = false;
	size_t need = 64 + HTTPMSG_DATE_LEN + (framing ? strlen(framing) : 0) + 48;

	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(fields[i].name), vl = strlen(fields[i].value);

		if (!httpmsg_is_token(fields[i].name, nl) ||
		    !httpmsg_value_ok(fields[i].value, vl) ||
		    httpmsg_name_eq(fields[i].name, nl, "Content-Length") ||
		    httpmsg_name_eq(fields[i].name, nl, "Transfer-Encoding") ||
		    httpmsg_name_eq(fields[i].name, nl, "Date")) {
			errno = EINVAL;
			return -1;
		}
		need += nl + vl + 4;
	}
	for (size_t i = 0; i < n; i++) {
		if (httpmsg_name_eq(fields[i].name, strlen(fields[i].name), "Connection") &&
		    httpmsg_list_has(fields[i].value, strlen(fields[i].value), "close")) {
			c->close_after = true;
		}
	}
	if (!c->close_after && c->rq != NULL && c->rq->r.version == 10) {
		keep_alive_10 = true; /* HTTP/1.0 keeps a connection only when told so */
	}
	char *h = need <= cap ? buf : malloc(need);

	if (h == NULL) {
		errno = ENOMEM;
		return -1;
	}
	date_refresh(s);
	int k = snprintf(h, need, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, httpmsg_reason(status),
			 s->date);
	size_t off = (size_t)k;

	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(fields[i].name), vl = strlen(fields[i].value);

		if (httpmsg_name_eq(fields[i].name, nl, "Connection")) {
			continue; /* the layer writes its own */
		}
		memcpy(h + off, fields[i].name, nl);
		off += nl;
		memcpy(h + off, ": ", 2);
		off += 2;
		memcpy(h + off, fields[i].value, vl);
		off += vl;
		memcpy(h + off, "\r\n", 2);
		off += 2;
	}
	k = snprintf(h + off, need - off, "%s%s%s\r\n", framing ? framing : "",
		     framing ? "\r\n" : "",
		     c->close_after ? "Connection: close\r\n"
				    : (keep_alive_10 ? "Connection: keep-alive\r\n" : ""));
	off += (size_t)k;
	*out = h;
	*len = off;
	return 0;
}

/* An answer of the layer's own (an error): then the connection closes. */
static void
conn_error(struct hconn *c, int status)
{
	struct http_server *s = c->s;
	char body[64], head[256];
	const char *reason = httpmsg_reason(status);
	int bl = snprintf(body, sizeof(body), "%s\n", reason);

	s->st.errors++;
	rq_free(c->rq);
	c->rq = NULL;
	c->close_after = true;
	c->state = CS_CLOSING;
	date_refresh(s);
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\n"
			  "Content-Length: %d\r\nConnection: close\r\n\r\n",
			  status, reason, s->date, bl);
	struct iovec iov[2] = {
		{ .iov_base = head, .iov_len = (size_t)hl },
		{ .iov_base = body, .iov_len = (size_t)bl },
	};

	(void)conn_sendv(c, iov, 2);
}

/* ---- the exchange ---- */

static void
pending_push(struct hconn *c)
{
	struct http_server *s = c->s;

	if (c->pending) {
		return;
	}
	c->pending = true;
	c->pnext = s->pending;
	s->pending = c;
	ev_idle_start(s->loop, &s->pending_w);
}

/* The exchange is over for the handler: go on with the connection. */
static void
exchange_end(struct hconn *c)
{
	struct http_server *s = c->s;

	rq_free(c->rq);
	c->rq = NULL;
	s->st.exchanges--;
	c->n_served++;
	if (c->close_after) {
		c->state = CS_CLOSING;
	} else {
		c->state = CS_IDLE;
		c->t_idle = ev_now(s->loop);
	}
	if (!c->in_dispatch) {
		/* Held requests are parsed at the next loop turn, not inside the caller. */
		pending_push(c);
		conn_update(c);
	}
}

/* A complete request: hand it to the handler. */
static void
dispatch(struct hconn *c)
{
	struct http_server *s = c->s;
	struct http_req *rq = c->rq;

	if (c->p.upgrade) {
		c->close_after = true; /* no protocol switch: what follows is not ours */
	}
	if (!http_should_keep_alive(&c->p)) {
		c->close_after = true;
	}
	if (rq->body_len > 0) {
		rq->r.body = rq->body;
		rq->r.body_len = rq->body_len;
	}
	rq->state = RQ_HANDLER;
	c->state = CS_EXCHANGE;
	s->st.requests++;
	s->st.exchanges++;
	c->in_dispatch = true;
	s->h->on_request(rq, s->ctx);
	c->in_dispatch = false;
}

static bool
only_line_ends(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\r' && p[i] != '\n') {
			return false;
		}
	}
	return true;
}

/*
 * Parse data; a complete request is dispatched.  Returns the bytes consumed: fewer than
 * len when a request ended before the data did, or the connection died or is closing.
 */
static size_t
conn_feed(struct hconn *c, const char *data, size_t len)
{
	if (c->state == CS_IDLE && !only_line_ends(data, len)) {
		/* A request starts (empty lines before one are skipped, not timed). */
		c->state = CS_HEAD;
		c->t_head = ev_now(c->s->loop);
	}
	c->feed = data;
	size_t k = http_parser_execute(&c->p, &parser_settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&c->p);

	if (k > 0) {
		c->fed_line_end = after_line_end(c, data + k);
	}

	if (e == HPE_PAUSED) {
		http_parser_pause(&c->p, 0);
		dispatch(c);
		return k;
	}
	if (e != HPE_OK) {
		int status = 400;

		if (c->rq != NULL && c->rq->err != 0) {
			status = c->rq->err;
		} else if (e == HPE_CB_message_begin) {
			/*
			 * No memory for the request's record (on_message_begin): the request may be
			 * well formed, and a 400 would tell its client never to send it again.
			 */
			status = 503;
		} else if (e == HPE_HEADER_OVERFLOW) {
			status = 431;
		}
		conn_error(c, status);
		return len;
	}
	if (c->p.upgrade) {
		/* Cannot happen after a complete message (that pauses); refuse what is left. */
		conn_error(c, 400);
		return len;
	}
	return k;
}

/*
 * Whether the answers the client has not taken leave room to parse its next request.
 * HTTP_HOLD_MAX, as for the requests read ahead of an open exchange, not max_queue (a
 * stream's mark): a client that sends request after request and reads no answer would
 * hold max_queue of them on each connection, before any check of the handler's.
 */
static bool
queue_has_room(const struct hconn *c)
{
	return wbuf_len(&c->out) < SYS_MIN(c->s->lim.max_queue, HTTP_HOLD_MAX);
}

static bool
can_parse(const struct hconn *c)
{
	return !c->dead && (c->state == CS_IDLE || c->state == CS_HEAD || c->state == CS_BODY) &&
	       queue_has_room(c);
}

/* Keep bytes that cannot be parsed yet (callers stay within hold_room()). */
static int
hold_add(struct hconn *c, const char *p, size_t len)
{
	size_t live = c->hold_len - c->hold_off;

	if (c->hold_off > 0) {
		memmove(c->hold, c->hold + c->hold_off, live);
		c->hold_len = live;
		c->hold_off = 0;
	}
	if (live + len > c->hold_cap) {
		size_t cap = SYS_MIN(SYS_MAX(2 * (live + len), (size_t)4096), HTTP_HOLD_MAX);
		char *nb = realloc(c->hold, cap);

		if (nb == NULL) {
			return -1;
		}
		c->hold = nb;
		c->hold_cap = cap;
	}
	memcpy(c->hold + c->hold_len, p, len);
	c->hold_len += len;
	return 0;
}

/* Parse held bytes while no exchange is open. */
static void
conn_drain_hold(struct hconn *c)
{
	while (c->hold != NULL && c->hold_off < c->hold_len && can_parse(c)) {
		size_t k = conn_feed(c, c->hold + c->hold_off, c->hold_len - c->hold_off);

		c->hold_off += k;
		if (k == 0) {
			break;
		}
	}
	if (c->hold != NULL && (c->hold_off == c->hold_len || c->state == CS_CLOSING)) {
		free(c->hold);
		c->hold = NULL;
		c->hold_len = c->hold_off = c->hold_cap = 0;
	}
}

static size_t
hold_room(const struct hconn *c)
{
	return HTTP_HOLD_MAX - (c->hold_len - c->hold_off);
}

/* The socket says its peer is gone (a reset, a failure), not only that it ended its side. */
static bool
conn_hup(const struct hconn *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = 0 };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR)) != 0;
}

/*
 * Another interim 100 to a half-closed client while its answer has not begun (the
 * handler has the request and nothing is queued): a client that closed after the probe
 * sends nothing, and only a write draws its reset.  0 when none is due or it was written;
 * -1 when the write failed (the connection is gone).
 */
static int
conn_probe_again(struct hconn *c)
{
	const struct http_req *rq = c->rq;

	if (rq == NULL || rq->state != RQ_HANDLER || wbuf_len(&c->out) != 0) {
		return 0;
	}
	return conn_write_raw(c, PROBE_100, sizeof(PROBE_100) - 1);
}

/*
 * Whether what the client sent that is not read yet is only line ends, which are then read
 * and dropped: RFC 9112, 2.2 has empty lines before a request ignored, and a body piped
 * from echo or a heredoc ends with one.  Anything else starts a pipelined request.
 */
static bool
conn_unread_line_ends(struct hconn *c)
{
	char buf[64];
	int unread = 0;

	if (ioctl(c->fd, FIONREAD, &unread) == -1) {
		return false;
	}
	if (unread == 0) {
		return true;
	}
	if ((size_t)unread > sizeof(buf)) {
		return false;
	}
	ssize_t n = recv(c->fd, buf, (size_t)unread, MSG_PEEK);

	if (n != unread || !only_line_ends(buf, (size_t)n)) {
		return false; /* left unread: the EOF takes them for a pipelined request */
	}
	n = sys_read(c->fd, buf, (size_t)unread);
	if (n > 0) {
		c->s->st.bytes_in += (size_t)n;
	}
	return n == unread && only_line_ends(buf, (size_t)n);
}

/*
 * The client ended its side (an EOF, read or not yet) while an exchange is open: RFC 9112
 * lets a client half-close after its request and wait for the answer.  The exchange is
 * kept when it may be (below), and the connection closes after its answer.  A FIN does
 * not say whether the client shut only its sending side or closed its socket: a few
 * bytes the answer allows (an SSE comment, or an interim 100 before a response has
 * begun) tell, since a closed socket answers them with a reset (on loopback before the
 * write returns; over a network a round trip later), and the HUP_CHECK polls find a reset
 * that comes later, or the failure of TCP keep-alive: a client that closes after the probe
 * sends nothing, so while no answer has begun each poll writes another 100 first, and so
 * does the look when the answer comes (on a stream, the keep-alive comments draw the
 * reset).  Not kept: a GET (a GET stream has
 * no request body whose end a half-close marks: it is gone, and its messages wait for a
 * resume rather than go into a connection that may be closed), an exchange with bytes
 * after its request other than line ends (pipelined requests: dropped as before), one
 * that cannot be probed (an HTTP/1.0 request before its answer began: no 1xx may be sent
 * to it; a stream other than SSE), and one whose probe finds the client gone.  Whether
 * it is kept; if not, the caller takes the client as gone.
 */
static bool
conn_keep_half_closed(struct hconn *c)
{
	struct http_req *rq = c->rq;

	if (c->rd_eof) {
		/* a client that closed since the last look: on loopback the reset comes now */
		if (!c->dead) {
			(void)conn_probe_again(c);
		}
		return !c->dead && !conn_hup(c);
	}
	if (c->dead || c->state != CS_EXCHANGE || rq == NULL || rq->state == RQ_READING ||
	    rq->r.method == HTTP_REQ_GET ||
	    (c->hold != NULL &&
	     !only_line_ends(c->hold + c->hold_off, c->hold_len - c->hold_off)) ||
	    !conn_unread_line_ends(c)) {
		return false;
	}
	if (rq->state == RQ_HANDLER) {
		if (rq->r.version < 11 ||
		    conn_write_raw(c, PROBE_100, sizeof(PROBE_100) - 1) == -1) {
			return false;
		}
	} else if (!rq->is_sse ||
		   http_stream_send(rq, SSE_KEEPALIVE, sizeof(SSE_KEEPALIVE) - 1) == -1) {
		return false;
	}
	if (c->dead || conn_hup(c)) {
		return false;
	}
	c->rd_eof = true;
	c->close_after = true;
	c->t_hup = ev_now(c->s->loop);
	if (!c->in_dispatch) {
		conn_update(c);
	}
	return true;
}

/*
 * An EOF read: whether the connection still has something to do (an exchange kept, or
 * an answer still being written); if not, the client is gone.
 */
static bool
conn_read_eof(struct hconn *c)
{
	if (c->state == CS_EXCHANGE) {
		return conn_keep_half_closed(c);
	}
	if ((c->state == CS_IDLE || (c->state == CS_CLOSING && !c->shut)) &&
	    wbuf_len(&c->out) > 0 && (c->hold == NULL || c->hold_off == c->hold_len)) {
		/* An answer is still being written: it is, then the connection closes. */
		c->rd_eof = true;
		c->close_after = true;
		c->state = CS_CLOSING;
		return true;
	}
	return false;
}

/* Read while closing: what the client still sends is read and dropped. */
static void
conn_read_discard(struct hconn *c)
{
	while (!sys_scratch_busy) {
		ssize_t n = sys_read(c->fd, sys_scratch, SYS_SCRATCH_SIZE);

		if (n > 0) {
			c->s->st.bytes_in += (size_t)n;
			c->lingered += (size_t)n;
			if (c->lingered > LINGER_MAX) {
				conn_kill(c);
				return;
			}
			continue;
		}
		if (n == -1 && errno == EAGAIN) {
			return;
		}
		if (n == 0 && conn_read_eof(c)) {
			return;
		}
		conn_kill(c); /* EOF or an error: done */
		return;
	}
}

static void
conn_read(struct hconn *c)
{
	struct http_server *s = c->s;
	size_t budget = READ_BUDGET;

	while (budget > 0 && !c->dead && !sys_scratch_busy) {
		if (c->state == CS_CLOSING) {
			conn_read_discard(c);
			return;
		}
		conn_drain_hold(c);
		if (c->dead || c->state == CS_CLOSING) {
			continue;
		}
		bool direct = can_parse(c) && c->hold == NULL;
		size_t want = direct ? SYS_SCRATCH_SIZE : SYS_MIN(SYS_SCRATCH_SIZE, hold_room(c));

		if (want == 0) {
			break; /* the read-ahead is full: reading waits for the exchange */
		}
		ssize_t n = sys_read(c->fd, sys_scratch, want);

		if (n == 0 && conn_read_eof(c)) {
			return; /* a half-closed client waits for its answer */
		}
		if (n == 0 || (n == -1 && errno != EAGAIN)) {
			/* The client is gone, or has closed its side: nothing more to do. */
			conn_kill(c);
			return;
		}
		if (n == -1) {
			break;
		}
		s->st.bytes_in += (size_t)n;
		budget -= (size_t)n;
		if (direct) {
			sys_scratch_busy = true;
			size_t k = conn_feed(c, sys_scratch, (size_t)n);

			sys_scratch_busy = false;
			if (!c->dead && c->state != CS_CLOSING && k < (size_t)n &&
			    hold_add(c, sys_scratch + k, (size_t)n - k) == -1) {
				conn_kill(c);
				return;
			}
		} else if (hold_add(c, sys_scratch, (size_t)n) == -1) {
			conn_kill(c);
			return;
		}
		if ((size_t)n < want) {
			break; /* drained: no read just to hear EAGAIN */
		}
	}
	if (!c->dead) {
		conn_drain_hold(c);
	}
}

/* ---- watchers ---- */

/* Make *d the earlier of *d and base + t, for reason w (t <= 0: no such deadline). */
static void
deadline_min(ev_tstamp *d, enum timer_why *why, ev_tstamp base, double t, enum timer_why w)
{
	if (t > 0 && (*why == TW_NONE || base + t < *d)) {
		*d = base + t;
		*why = w;
	}
}

static ev_tstamp
conn_deadline(const struct hconn *c, enum timer_why *why)
{
	const struct http_limits *lim = &c->s->lim;
	ev_tstamp d = 0;

	*why = TW_NONE;
	switch (c->state) {
	case CS_IDLE:
		/* Idle once its last answer is written: a client still taking one is not. */
		if (wbuf_len(&c->out) == 0) {
			deadline_min(&d, why, SYS_MAX(c->t_idle, c->t_write),
				     c->n_served == 0 ? lim->head_timeout : lim->idle_timeout,
				     TW_IDLE);
		}
		break;
	case CS_HEAD:
		deadline_min(&d, why, c->t_head, lim->head_timeout, TW_HEAD);
		break;
	case CS_BODY:
		deadline_min(&d, why, c->t_body, lim->body_timeout, TW_BODY);
		break;
	case CS_EXCHANGE:
		if (c->rq != NULL && c->rq->is_sse && c->rq->state == RQ_STREAM &&
		    wbuf_len(&c->out) == 0) {
			deadline_min(&d, why, c->t_out, lim->sse_keepalive, TW_KEEPALIVE);
		}
		if (c->rd_eof) {
			deadline_min(&d, why, c->t_hup, HUP_CHECK, TW_HUP);
		}
		break;
	case CS_CLOSING:
		if (c->shut) {
			deadline_min(&d, why, c->t_shut, LINGER_TIME, TW_LINGER);
		}
		break;
	}
	if (wbuf_len(&c->out) > 0) {
		deadline_min(&d, why, c->t_write, lim->write_timeout, TW_WRITE);
	}
	return d;
}

static void
conn_timer_arm(struct hconn *c)
{
	enum timer_why why;
	ev_tstamp d = conn_deadline(c, &why);
	struct ev_loop *loop = c->s->loop;

	if (why == TW_NONE) {
		ev_timer_stop(loop, &c->timer_w);
		c->timer_at = 0;
		return;
	}
	/* A later deadline is found when the timer fires (ev.pod's strategy 3). */
	if (ev_is_active(&c->timer_w) && c->timer_at <= d) {
		return;
	}
	ev_timer_stop(loop, &c->timer_w);
	ev_timer_set(&c->timer_w, SYS_MAX(d - ev_now(loop), 0.), 0.);
	ev_timer_start(loop, &c->timer_w);
	c->timer_at = d;
}

/* Recompute the io watcher's events and the timer from the connection's state. */
static void
conn_update(struct hconn *c)
{
	struct ev_loop *loop = c->s->loop;

	if (c->dead) {
		return;
	}
	if (c->state == CS_CLOSING && wbuf_len(&c->out) == 0 && !c->shut) {
		/* Everything is written: say so, then read what the client still sends. */
		(void)shutdown(c->fd, SHUT_WR);
		c->shut = true;
		c->t_shut = ev_now(loop);
		if (c->rd_eof) {
			conn_kill(c); /* both sides ended: nothing to linger for */
			return;
		}
	}
	int ev = 0;

	if (!c->rd_eof && (c->state == CS_CLOSING || (can_parse(c) && c->hold == NULL) ||
			   (!can_parse(c) && hold_room(c) > 0 && c->state == CS_EXCHANGE))) {
		ev |= EV_READ;
	}
	if (wbuf_len(&c->out) > 0) {
		ev |= EV_WRITE;
	}
	if (ev != (c->io_w.events & (EV_READ | EV_WRITE)) || !ev_is_active(&c->io_w)) {
		ev_io_stop(loop, &c->io_w);
		ev_io_set(&c->io_w, c->fd, ev);
		if (ev != 0) {
			ev_io_start(loop, &c->io_w);
		}
	}
	conn_timer_arm(c);
}

static void
conn_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hconn *c = container_of(w, struct hconn, io_w);

	(void)loop;
	if ((revents & EV_WRITE) && conn_flush(c) == -1) {
		return;
	}
	if ((revents & EV_READ) && !c->dead) {
		conn_read(c);
	}
	if (!c->dead && c->state != CS_EXCHANGE && queue_has_room(c)) {
		conn_drain_hold(c); /* a queue that drained lets held requests through */
	}
	conn_update(c);
}

static void
conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hconn *c = container_of(w, struct hconn, timer_w);
	struct http_server *s = c->s;
	enum timer_why why;
	ev_tstamp d = conn_deadline(c, &why);

	(void)revents;
	c->timer_at = 0;
	if (why == TW_NONE || d > ev_now(loop)) {
		conn_update(c);
		return;
	}
	switch (why) {
	case TW_HEAD:
	case TW_BODY:
		s->st.timeouts++;
		conn_error(c, 408);
		break;
	case TW_KEEPALIVE:
		c->t_out = ev_now(loop);
		(void)http_stream_send(c->rq, SSE_KEEPALIVE, sizeof(SSE_KEEPALIVE) - 1);
		break;
	case TW_IDLE:
	case TW_WRITE:
		s->st.timeouts++;
		conn_kill(c);
		break;
	case TW_HUP:
		/*
		 * A client that closes its socket after the probe sends nothing more: only a
		 * write draws its reset.  While the answer has not begun, another interim 100
		 * is written (RFC 9110 allows any number before the final response); on a
		 * stream, the keep-alive comments do it.
		 */
		c->t_hup = ev_now(loop);
		if (!conn_hup(c) && conn_probe_again(c) == -1) {
			break; /* the write failed: the connection is gone */
		}
		if (!c->dead && conn_hup(c)) {
			conn_kill(c); /* the half-closed client is gone */
		}
		break;
	case TW_LINGER:
	case TW_NONE:
		conn_kill(c);
		break;
	}
	conn_update(c);
}

/* ---- connections ---- */

/* Close the socket now; tell the handler and free at the next loop turn. */
static void
conn_kill(struct hconn *c)
{
	struct http_server *s = c->s;

	if (c->dead) {
		return;
	}
	c->dead = true;
	ev_io_stop(s->loop, &c->io_w);
	ev_timer_stop(s->loop, &c->timer_w);
	sys_close(&c->fd);
	s->st.queued -= wbuf_len(&c->out);
	wbuf_release(&c->out);
	pending_push(c);
}

static void
conn_unlink(struct hconn *c)
{
	struct http_server *s = c->s;

	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		s->conns = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	}
	if (c->is_reject) {
		s->n_rejects--;
	} else {
		s->n_conns--;
	}
}

/* Free a dead connection; the handler hears of an exchange it still had. */
static void
conn_free(struct hconn *c)
{
	struct http_server *s = c->s;

	conn_unlink(c);
	if (c->rq != NULL && c->rq->state != RQ_READING) {
		s->st.exchanges--;
		s->st.closed++;
		s->h->on_close(c->rq, s->ctx);
	}
	rq_free(c->rq);
	free(c->hold);
	free(c);
}

static void
server_on_pending(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct http_server *s = container_of(w, struct http_server, pending_w);

	(void)revents;
	while (s->pending != NULL) {
		struct hconn *c = s->pending;

		s->pending = c->pnext;
		c->pending = false;
		if (c->dead) {
			conn_free(c);
			continue;
		}
		conn_drain_hold(c);
		conn_update(c);
	}
	ev_idle_stop(loop, w);
}

static const char reject_503[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
				 "Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
				 "Service Unavailable\n";

/* Refuse a connection that cannot even linger: the answer, if the socket takes it. */
static void
reject_now(int fd)
{
	ssize_t w = write(fd, reject_503, sizeof(reject_503) - 1);

	(void)w; /* refused either way */
	sys_close(&fd);
}

/*
 * A client that vanished without a word (its machine slept, its network went) leaves a
 * connection that nothing but a write would find dead, and an exchange that writes
 * nothing (a request waiting for its answer) holds it, and what waits on it, for ever.
 * TCP keep-alive asks the peer after write_timeout of silence, three times, a third of it
 * apart: one that does not answer has the connection fail (ETIMEDOUT), as a write to it
 * would.  Set up or not (the connection serves all the same), nothing else can be done.
 */
static void
conn_keepalive(int fd, double timeout)
{
	double t = SYS_MIN(SYS_MAX(timeout, 1.), 32767.);
	int one = 1, cnt = 3, idle = (int)t + (t > (int)t), /* whole seconds, not fewer */
		intvl = SYS_MAX(idle / 3, 1);

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static void
conn_adopt(struct http_server *s, int fd, const struct sockaddr *sa, socklen_t sa_len)
{
	bool reject = s->n_conns >= s->lim.max_conns;

	s->st.accepted++;
	if (reject) {
		s->st.rejected++;
		if (s->n_rejects >= s->lim.max_rejects) {
			/* Too many to linger over: the answer, and close. */
			reject_now(fd);
			return;
		}
	}
	struct hconn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		/*
		 * No memory to serve it: the 503 (Retry-After) of a connection over the limit,
		 * not a close without a word, which its client cannot tell from a crash.
		 */
		if (!reject) {
			s->st.rejected++;
		}
		reject_now(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	c->t_idle = c->t_write = c->t_out = ev_now(s->loop);
	http_parser_init(&c->p, HTTP_REQUEST);
	c->p.data = c;
	wbuf_init(&c->out, s->lim.max_queue);
	ev_io_init(&c->io_w, conn_on_io, fd, EV_READ);
	ev_timer_init(&c->timer_w, conn_on_timer, 0., 0.);
	if (sa != NULL && sa->sa_family != AF_UNIX && sa_len <= (socklen_t)sizeof(c->peer)) {
		memcpy(&c->peer, sa, sa_len);
		c->peer_len = sa_len;
	} else {
		c->peer.sa.sa_family = AF_UNIX;
		c->peer_len = (socklen_t)sizeof(sa_family_t);
	}
	c->is_loopback = httpmsg_sockaddr_is_loopback(&c->peer.sa, c->peer_len);
	if (c->peer.sa.sa_family == AF_INET || c->peer.sa.sa_family == AF_INET6) {
		int one = 1;

		/* Responses leave whole: Nagle would only delay the last segment. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_keepalive(fd, s->lim.write_timeout);
	}
	c->next = s->conns;
	if (s->conns != NULL) {
		s->conns->prev = c;
	}
	s->conns = c;
	if (reject) {
		c->is_reject = true;
		s->n_rejects++;
		c->state = CS_CLOSING;
		c->close_after = true;
		(void)conn_write_raw(c, reject_503, sizeof(reject_503) - 1);
	} else {
		s->n_conns++;
	}
	conn_update(c);
}

/* ---- listeners ---- */

static void
server_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hlistener *l = container_of(w, struct hlistener, retry_w);

	(void)revents;
	sys_accept_spare(&l->s->spare);
	ev_io_start(loop, &l->accept_w);
}

static void
server_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hlistener *l = container_of(w, struct hlistener, accept_w);
	struct http_server *s = l->s;

	(void)revents;
	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = sys_accept(l->fd, (struct sockaddr *)&ss, &sl, &s->spare, reject_now);

		if (fd == SYS_ACCEPT_NONE) {
			return;
		}
		if (fd == SYS_ACCEPT_REFUSED) {
			/* out of descriptors: answered 503 at once */
			s->st.accepted++;
			s->st.rejected++;
			diag_warn("refused an HTTP connection: out of file descriptors (raise the "
				  "limit with ulimit -n)");
			continue;
		}
		if (fd == SYS_ACCEPT_FAILED) {
			/* The socket stays readable: not watched for a moment, not spun on. */
			diag_warn_errno("cannot accept an HTTP connection (trying again in %g s)",
					SYS_ACCEPT_PAUSE);
			ev_io_stop(loop, &l->accept_w);
			ev_timer_set(&l->retry_w, SYS_ACCEPT_PAUSE, 0.);
			ev_timer_start(loop, &l->retry_w);
			return;
		}
		conn_adopt(s, fd, (struct sockaddr *)&ss, sl);
	}
}

static void
server_on_unix_conn(int fd, void *ctx)
{
	conn_adopt(ctx, fd, NULL, 0);
}

struct http_server *
http_server_new(struct ev_loop *loop, const struct http_limits *lim,
		const struct http_handler *handler, void *ctx)
{
	struct http_server *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	s->loop = loop;
	s->lim = *lim;
	if (s->lim.max_queue == 0) {
		s->lim.max_queue = 1;
	}
	s->h = handler;
	s->ctx = ctx;
	s->spare = -1;
	ev_idle_init(&s->pending_w, server_on_pending);
	return s;
}

static struct hlistener *
listener_slot(struct http_server *s)
{
	if (s->n_lst == HTTP_LISTENERS_MAX) {
		diag_error("too many HTTP listeners (at most %d)", HTTP_LISTENERS_MAX);
		return NULL;
	}
	if (s->spare < 0) {
		s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	struct hlistener *l = &s->lst[s->n_lst];

	memset(l, 0, sizeof(*l));
	l->s = s;
	l->fd = -1;
	return l;
}

static void
listener_start(struct http_server *s, struct hlistener *l)
{
	ev_io_init(&l->accept_w, server_on_accept, l->fd, EV_READ);
	ev_timer_init(&l->retry_w, server_on_retry, 0., 0.);
	ev_io_start(s->loop, &l->accept_w);
	s->n_lst++;
}

int
http_server_listen_fd(struct http_server *s, int fd)
{
	struct hlistener *l = listener_slot(s);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int acc = 0, type = 0;
	socklen_t ol = sizeof(acc), tl = sizeof(type);

	if (l == NULL) {
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol) == -1 || acc == 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == -1 || type != SOCK_STREAM ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1) {
		return diag_error("descriptor %d is not a listening stream socket (check the "
				  "socket unit)",
				  fd);
	}
	if (sys_set_nonblock(fd, 1) == -1 || fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		return diag_error_errno("cannot set up descriptor %d", fd);
	}
	l->fd = fd;
	l->is_loopback = httpmsg_sockaddr_is_loopback((struct sockaddr *)&ss, sl);
	listener_start(s, l);
	return 0;
}

int
http_server_listen(struct http_server *s, const char *spec)
{
	struct httpmsg_addr a;
	struct hlistener *l;

	if (httpmsg_parse_addr(spec, &a) == -1) {
		return diag_error("'%s' is not an address to listen on (give PORT, ADDR:PORT, "
				  "[IPV6]:PORT or a socket path)",
				  spec);
	}
	l = listener_slot(s);
	if (l == NULL) {
		return -1;
	}
	if (a.is_path) {
		if (listener_open(&l->ul, s->loop, a.path, server_on_unix_conn, s) == -1) {
			return -1;
		}
		l->is_unix = true;
		l->is_loopback = true;
		s->n_lst++;
		return 0;
	}
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	}, *res = NULL;
	int rc = getaddrinfo(a.host, a.port, &hints, &res);

	if (rc != 0) {
		return diag_error("cannot listen on '%s': %s (give an address or a name that "
				  "resolves)",
				  spec, gai_strerror(rc));
	}
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
	    one = 1;

	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 512) == -1) {
		int err = errno;

		freeaddrinfo(res);
		sys_close(&fd);
		errno = err;
		if (err == EADDRINUSE) {
			return diag_error_errno("cannot listen on '%s' (another program listens "
						"there: stop it, or choose another port, 0 for "
						"any free one)",
						spec);
		}
		if (err == EACCES) {
			return diag_error_errno("cannot listen on '%s' (a port below 1024 needs "
						"root or CAP_NET_BIND_SERVICE: choose one of 1024 "
						"or more)",
						spec);
		}
		return diag_error_errno("cannot listen on '%s'", spec);
	}
	l->fd = fd;
	l->is_loopback = httpmsg_sockaddr_is_loopback(res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	listener_start(s, l);
	return 0;
}

bool
http_server_is_loopback(const struct http_server *s)
{
	for (size_t i = 0; i < s->n_lst; i++) {
		if (!s->lst[i].is_loopback) {
			return false;
		}
	}
	return true;
}

size_t
http_server_n_listeners(const struct http_server *s)
{
	return s->n_lst;
}

int
http_server_port_of(const struct http_server *s, size_t i, char *addr, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 1] = "";
	int port = 0;

	if (i >= s->n_lst || s->lst[i].is_unix ||
	    getsockname(s->lst[i].fd, (struct sockaddr *)&ss, &sl) == -1) {
		return 0;
	}
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(void *)&ss;

		port = ntohs(in->sin_port);
		(void)inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(void *)&ss;

		port = ntohs(in6->sin6_port);
		if (inet_ntop(AF_INET6, &in6->sin6_addr, host, INET6_ADDRSTRLEN) != NULL &&
		    in6->sin6_scope_id != 0) {
			/* A link-local address is typed with its interface: fe80::1%eth0. */
			char ifname[IF_NAMESIZE];
			size_t n = strlen(host);

			if (if_indextoname(in6->sin6_scope_id, ifname) != NULL) {
				(void)snprintf(host + n, sizeof(host) - n, "%%%s", ifname);
			} else {
				(void)snprintf(host + n, sizeof(host) - n, "%%%u",
					       (unsigned)in6->sin6_scope_id);
			}
		}
	}
	if (addr != NULL && cap > 0) {
		/* As --http takes it: an IPv6 address in brackets. */
		(void)snprintf(addr, cap, ss.ss_family == AF_INET6 ? "[%s]" : "%s", host);
	}
	return port;
}

int
http_server_port(const struct http_server *s)
{
	for (size_t i = 0; i < s->n_lst; i++) {
		int port = http_server_port_of(s, i, NULL, 0);

		if (port != 0) {
			return port;
		}
	}
	return 0;
}

void
http_server_stats(const struct http_server *s, struct http_stats *st)
{
	*st = s->st;
	st->conns = s->n_conns;
}

void
http_server_close_listeners(struct http_server *s)
{
	for (size_t i = 0; i < s->n_lst; i++) {
		struct hlistener *l = &s->lst[i];

		if (l->is_unix) {
			listener_close(&l->ul);
		} else {
			ev_io_stop(s->loop, &l->accept_w);
			ev_timer_stop(s->loop, &l->retry_w);
			sys_close(&l->fd);
		}
	}
	s->n_lst = 0;
}

void
http_server_free(struct http_server *s)
{
	if (s == NULL) {
		return;
	}
	http_server_close_listeners(s);
	for (struct hconn *c = s->conns; c != NULL; c = c->next) {
		conn_kill(c);
	}
	while (s->pending != NULL) {
		struct hconn *c = s->pending;

		s->pending = c->pnext;
		if (c->dead) {
			conn_free(c);
		}
	}
	ev_idle_stop(s->loop, &s->pending_w);
	sys_close(&s->spare);
	free(s);
}

int
http_listen_fds(int *fds, int max)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	char *end;

	if (pid == NULL || nfds == NULL) {
		return 0;
	}
	errno = 0;
	long p = strtol(pid, &end, 10);

	if (errno != 0 || *end != '\0' || p <= 0) {
		errno = EINVAL;
		return -1;
	}
	if ((pid_t)p != getpid()) {
		return 0; /* meant for another process */
	}
	long n = strtol(nfds, &end, 10);

	if (errno != 0 || *end != '\0' || n < 0 || n > 1024) {
		errno = EINVAL;
		return -1;
	}
	for (long i = 0; i < n; i++) {
		int fd = 3 + (int)i;

		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		(void)sys_set_nonblock(fd, 1);
		if (i < max) {
			fds[i] = fd;
		}
	}
	(void)unsetenv("LISTEN_PID");
	(void)unsetenv("LISTEN_FDS");
	(void)unsetenv("LISTEN_FDNAMES");
	return (int)n;
}

/* ---- the handler's side ---- */

const struct http_request *
http_req_request(const struct http_req *rq)
{
	return &rq->r;
}

const char *
http_req_header(const struct http_req *rq, const char *name, size_t *len)
{
	const struct http_header *h = httpmsg_find(rq->hdr, rq->n_offs, name);

	if (h == NULL) {
		return NULL;
	}
	if (len != NULL) {
		*len = h->value_len;
	}
	return h->value;
}

void
http_req_set_data(struct http_req *rq, void *data)
{
	rq->data = data;
}

void *
http_req_data(const struct http_req *rq)
{
	return rq->data;
}

/* build_head() failed: EINVAL leaves the exchange as it was; ENOMEM breaks it. */
static int
head_failed(struct hconn *c)
{
	if (errno == ENOMEM) {
		conn_kill(c);
		errno = ENOMEM;
	}
	return -1;
}

int
http_respond(struct http_req *rq, int status, const struct http_field *fields, size_t n_fields,
	     const void *body, size_t len)
{
	struct hconn *c = rq->c;
	char buf[HEAD_STACK], *head;
	char framing[48];
	size_t hl;
	bool bodiless = httpmsg_status_bodiless(status);

	if (rq->state != RQ_HANDLER || status < 100 || status > 999 || (bodiless && len > 0)) {
		errno = EINVAL;
		return -1;
	}
	if (c->dead) {
		errno = EPIPE;
		return -1;
	}
	framing[0] = '\0';
	if (!bodiless) {
		(void)snprintf(framing, sizeof(framing), "Content-Length: %zu", len);
	}
	if (build_head(c, status, fields, n_fields, bodiless ? NULL : framing, buf, sizeof(buf),
		       &head, &hl) == -1) {
		return head_failed(c);
	}
	struct iovec iov[2] = {
		{ .iov_base = head, .iov_len = hl },
		{ .iov_base = (void *)(uintptr_t)body, .iov_len = rq->head_only ? 0 : len },
	};
	int rc = conn_sendv(c, iov, 2);

	if (head != buf) {
		free(head);
	}
	if (rc == -1) {
		return -1;
	}
	exchange_end(c);
	return 0;
}

int
http_stream_begin(struct http_req *rq, int status, const struct http_field *fields, size_t n_fields)
{
	struct hconn *c = rq->c;
	char buf[HEAD_STACK], *head;
	size_t hl;

	if (rq->state != RQ_HANDLER || status < 200 || status > 999 ||
	    httpmsg_status_bodiless(status)) {
		errno = EINVAL;
		return -1;
	}
	if (c->dead) {
		errno = EPIPE;
		return -1;
	}
	bool was_closing = c->close_after;

	/* HTTP/1.0 has no chunks: the body ends when the connection does. */
	rq->chunked = rq->r.version >= 11;
	if (!rq->chunked) {
		c->close_after = true;
	}
	if (build_head(c, status, fields, n_fields,
		       rq->chunked ? "Transfer-Encoding: chunked" : NULL, buf, sizeof(buf), &head,
		       &hl) == -1) {
		c->close_after = was_closing; /* nothing was sent */
		return head_failed(c);
	}
	int rc = conn_write_raw(c, head, hl);

	if (head != buf) {
		free(head);
	}
	if (rc == -1) {
		return -1;
	}
	rq->state = RQ_STREAM;
	c->t_out = ev_now(c->s->loop);
	conn_update(c);
	return 0;
}

int
http_stream_sendv(struct http_req *rq, const struct iovec *iov, int n)
{
	struct hconn *c = rq->c;
	struct iovec v[SEND_IOV_MAX];
	char ch[HTTPMSG_CHUNK_HEAD_MAX];
	size_t total = 0;
	int k = 0;

	if (rq->state != RQ_STREAM || n < 0 || n > 16) {
		errno = EINVAL;
		return -1;
	}
	if (c->dead) {
		errno = EPIPE;
		return -1;
	}
	for (int i = 0; i < n; i++) {
		total += iov[i].iov_len;
	}
	if (total == 0 || rq->head_only) {
		return 0;
	}
	if (rq->chunked) {
		v[k].iov_base = ch;
		v[k++].iov_len = httpmsg_chunk_head(ch, total);
	}
	for (int i = 0; i < n; i++) {
		v[k++] = iov[i];
	}
	if (rq->chunked) {
		v[k].iov_base = (void *)(uintptr_t) "\r\n";
		v[k++].iov_len = 2;
	}
	c->t_out = ev_now(c->s->loop);
	if (conn_sendv(c, v, k) == -1) {
		return -1;
	}
	if (wbuf_len(&c->out) >= c->s->lim.max_queue) {
		rq->was_full = true;
	}
	return 0;
}

int
http_stream_send(struct http_req *rq, const void *p, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)p, .iov_len = len };

	return http_stream_sendv(rq, &iov, 1);
}

int
http_stream_end(struct http_req *rq)
{
	struct hconn *c = rq->c;

	if (rq->state != RQ_STREAM) {
		errno = EINVAL;
		return -1;
	}
	if (c->dead) {
		errno = EPIPE;
		return -1;
	}
	if (rq->chunked && !rq->head_only && conn_write_raw(c, "0\r\n\r\n", 5) == -1) {
		return -1;
	}
	exchange_end(c);
	return 0;
}

void
http_req_abort(struct http_req *rq)
{
	conn_kill(rq->c);
}

bool
http_req_gone(struct http_req *rq)
{
	struct hconn *c = rq->c;

	if (c->dead) {
		return true;
	}
	/*
	 * The peer's FIN (or RST) may wait unread behind this turn's other events, or behind
	 * bytes the connection reads no more of (held requests): POLLRDHUP sees past them.
	 * A FIN alone is a client that may only have half-closed: conn_keep_half_closed()
	 * tells.
	 */
	struct pollfd pfd = { .fd = c->fd, .events = POLLRDHUP };

	if (poll(&pfd, 1, 0) != 1) {
		return false;
	}
	if ((pfd.revents & (POLLHUP | POLLERR)) != 0) {
		return true;
	}
	return (pfd.revents & POLLRDHUP) != 0 && !conn_keep_half_closed(c);
}

bool
http_stream_full(const struct http_req *rq)
{
	return wbuf_len(&rq->c->out) >= rq->c->s->lim.max_queue;
}

size_t
http_stream_queued(const struct http_req *rq)
{
	return wbuf_len(&rq->c->out);
}

uint64_t
http_stream_sent(const struct http_req *rq)
{
	return rq->c->sent;
}

int
http_stream_want_empty(struct http_req *rq)
{
	if (rq->state != RQ_STREAM || wbuf_len(&rq->c->out) == 0) {
		errno = EINVAL;
		return -1;
	}
	rq->want_empty = true;
	return 0;
}

int
http_sse_begin(struct http_req *rq, const struct http_field *fields, size_t n_fields)
{
	struct http_field f[32];
	size_t n = 0;

	if (n_fields + 3 > sizeof(f) / sizeof(f[0])) {
		errno = EINVAL;
		return -1;
	}
	f[n++] = (struct http_field){ "Content-Type", "text/event-stream" };
	f[n++] = (struct http_field){ "Cache-Control", "no-cache" };
	/* Reverse proxies (nginx) would otherwise buffer the stream. */
	f[n++] = (struct http_field){ "X-Accel-Buffering", "no" };
	for (size_t i = 0; i < n_fields; i++) {
		f[n++] = fields[i];
	}
	if (http_stream_begin(rq, 200, f, n) == -1) {
		return -1;
	}
	rq->is_sse = true;
	conn_update(rq->c);
	return 0;
}

int
http_sse_send(struct http_req *rq, const struct httpmsg_sse *ev)
{
	char buf[1024];

	if ((ev->id != NULL && !httpmsg_sse_field_ok(ev->id)) ||
	    (ev->event != NULL && !httpmsg_sse_field_ok(ev->event)) ||
	    (ev->comment != NULL && !httpmsg_sse_field_ok(ev->comment))) {
		errno = EINVAL;
		return -1;
	}
	size_t n = httpmsg_sse_size(ev);
	char *p = n <= sizeof(buf) ? buf : malloc(n);

	if (p == NULL) {
		errno = ENOMEM;
		return -1;
	}
	(void)httpmsg_sse_format(p, ev);
	int rc = http_stream_send(rq, p, n);

	if (p != buf) {
		free(p);
	}
	return rc;
}

int
http_sse_message(struct http_req *rq, const char *id, const char *data, size_t len)
{
	if (httpmsg_sse_break(data, len) < len || (id != NULL && strlen(id) > 256)) {
		struct httpmsg_sse ev = {
			.id = id, .retry_ms = -1, .has_data = true, .data = data, .data_len = len
		};

		return http_sse_send(rq, &ev);
	}
	if (id != NULL && !httpmsg_sse_field_ok(id)) {
		errno = EINVAL;
		return -1;
	}
	char pre[280];
	int pl = snprintf(pre, sizeof(pre), "%s%s%sdata: ", id ? "id: " : "", id ? id : "",
			  id ? "\n" : "");
	struct iovec iov[3] = {
		{ .iov_base = pre, .iov_len = (size_t)pl },
		{ .iov_base = (void *)(uintptr_t)data, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t) "\n\n", .iov_len = 2 },
	};

	return http_stream_sendv(rq, iov, 3);
}
