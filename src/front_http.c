/*
 * front_http: MCP's Streamable HTTP transport in front of the hub's sessions.
 *
 * A session here is a hub port (struct hx_session) with its streams.  A stream is what
 * carries messages to the client: the SSE response of a POSTed request, or the session's
 * GET stream.  Every message the server sends goes to exactly one stream, by the rules
 * of docs/http.md: a response to the stream of its request, a progress notification to
 * the stream of its token, anything else to the only request in flight, else the open
 * GET stream, else the oldest request in flight, else it waits for the first stream to
 * open.  A stream keeps its events (numbered "<stream>:<seq>") so that a client whose
 * connection broke can resume it with GET and Last-Event-ID: events not yet written wait
 * there (nothing is dropped: a full queue pauses the server), events written stay for a
 * replay within bounds (a request's stream: all of it while it runs and for
 * HX_LINGER_S after; the GET stream: the last HX_GET_REPLAY bytes its socket took, and
 * what is still in its connection's queue).
 *
 * It does not parse HTTP (http.c does), start or end servers (the hub does), or keep
 * requests in flight (the session does): it maps the transport's rules onto them.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "mcpmux/diag.h"
#include "mcpmux/front_http.h"
#include "mcpmux/http.h"
#include "mcpmux/httpmsg.h"
#include "mcpmux/jsonspan.h"
#include "mcpmux/metrics.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

#define HX_PATH_DEFAULT	 "/mcp"
#define HX_RETRY_MS	 1000 /* the priming event's retry: a reconnection after 1 s */
#define HX_GET_REPLAY	 ((size_t)64 << 10) /* written events the GET stream keeps */
#define HX_LINGER_S	 10.0		    /* a finished request stream is kept for a resume */
#define HX_LINGER_MAX	 ((size_t)1 << 20)  /* ... up to this many bytes per session */
#define HX_DETACHED_S	 300.0 /* a stream nobody resumes is forgotten (no idle timeout) */
#define HX_WRITE_TIMEOUT 30.0  /* a client that takes nothing, with --stall-timeout 0 */
#define HX_TOKEN_MAX	 4096
#define HX_FIELDS_MAX	 12
#define HX_CONNS_MIN	 1024
#define HX_CONNS_FLOOR	 16 /* whatever the descriptor limit */
#define HX_VERSION_MAX	 32
#define HX_SPARE	 512 /* the event kept for an answer lost for want of memory */
#define HX_GET_NUMS	 4   /* the numbers of a session's latest GET streams, remembered */

/* What the data of an http_req is. */
enum hx_kind {
	HX_STREAM,  /* a stream (struct hx_stream) */
	HX_HELD,    /* a POST waiting for the server's input to drain (struct hx_pending) */
	HX_DELETE,  /* a DELETE waiting for the end of its session (struct hx_pending) */
	HX_SERVICE, /* a POST being handled (not yet a stream) */
};

struct hx_event {
	struct hx_event *next;
	uint64_t seq;
	uint64_t end; /* in flight: written once the connection's socket took this many */
	size_t len;
	char data[];
};

struct hx_session;

struct hx_stream {
	enum hx_kind kind; /* HX_STREAM: first, so that http_req_data() tells the kind */
	struct hx_stream *next;
	struct hx_session *hs;
	struct http_req *rq; /* the exchange that carries it; NULL while detached */
	uint32_t num;
	uint64_t seq; /* events numbered so far */
	bool is_get;
	bool is_json;	/* answered with one application/json body */
	bool json_gone; /* is_json, and its connection went before the answer: only kept to
			   cancel its request when forgotten (the answer goes by rule 3) */
	bool answered;	/* its response is among its events */
	bool finishing; /* answered: its exchange ends once its connection wrote it all */
	bool done;	/* ended on a connection: kept for a resume until it lingers out */
	double since;	/* detached or done since (sys_mono()) */
	struct hx_event *head, *tail;
	struct hx_event *unsent; /* the first event not written yet, or NULL */
	struct hx_event *flying; /* the first written one still in the connection's queue */
	size_t kept;		 /* bytes of written events kept for a replay */
	size_t flying_len;	 /* of them, bytes from flying on: not in the replay window */
	size_t key_len, tok_len;
	char *key; /* the request's id, as jsonrpc_id_key() makes it */
	char *tok; /* its progress token, likewise */
	char *id;  /* the request's id as JSON text, whole (for a cancellation) */
	size_t id_len;
};

struct hx_pending {
	enum hx_kind kind; /* HX_HELD or HX_DELETE */
	struct hx_pending *next;
	struct hx_session *hs;
	struct http_req *rq;
};

struct hx_session {
	struct hub_port port;
	struct front_http *fh;
	struct hub_entry *e; /* NULL once the hub let the session go */
	struct hx_session *next, *prev;
	char id[40];
	struct hx_stream *streams; /* oldest first */
	struct hx_stream *get;	   /* the GET stream, once opened */
	struct hx_stream *init;	   /* the initialize request's, until it is answered */
	char *init_key;		   /* its id's key once that stream is gone, until answered */
	size_t init_key_len;
	struct hx_event *orphans, *orphans_tail; /* messages no stream could take yet */
	size_t unsent;				 /* bytes waiting in streams and orphans */
	size_t lingering;			 /* bytes kept by done streams */
	size_t replay;				 /* bytes kept by running request streams */
	uint32_t n_streams;			 /* stream numbers given out */
	uint32_t get_nums[HX_GET_NUMS];		 /* its latest GET streams' numbers */
	uint32_t n_gets;			 /* GET streams opened */
	uint32_t known_from;			 /* a lower one may be a GET stream's */
	struct hx_pending *held, *held_tail;	 /* POSTs waiting for the server's input */
	struct hx_pending *deletes;		 /* DELETEs waiting for the end */
	struct sbuf result;			 /* the end-of-run result, once known */
	char version[HX_VERSION_MAX];		 /* the protocol version in use */
	bool holding;				 /* the server's input is full */
	bool was_full;				 /* full() said so last */
	bool ending;				 /* its end was asked for (DELETE, end-of-run) */
	bool end_soon;				 /* end it at the next turn (initialize failed) */
	bool gone;				 /* let go by the hub: freed at the next turn */
};

struct front_http {
	struct ev_loop *loop;
	struct hub *hub;
	const struct mcpmux_options *opt;
	struct http_server *srv;
	struct http_limits lim;
	struct jsonrpc_scanner scan;  /* bodies from clients */
	struct jsonrpc_scanner oscan; /* messages to clients, for routing */
	char *token;
	size_t token_len;
	const char *path;
	size_t path_len;
	bool loopback_only; /* every listener is loopback: Host must be too */
	struct hx_session *sessions;
	size_t n_sessions;
	ev_idle work_w;	    /* frees let-go sessions, runs held POSTs, ends failed ones */
	ev_timer sweep_w;   /* forgets lingering and abandoned streams */
	ev_timer drain_w;   /* at shutdown: waits for the last answers to be written */
	double drain_since; /* sys_mono() when the sessions had all ended; 0 before */
	bool work_queued;
	bool shutting_down;
	void (*on_drained)(void *ctx);
	void *drained_ctx;
	struct sbuf tmp;
	char *line; /* a body with line breaks, made one line */
	size_t line_cap;
	uint64_t n_http_sessions; /* started over HTTP */
	struct hx_event *spare;	  /* HX_SPARE bytes, for lost_answer() when nothing else is */
};

struct hx_fields {
	struct http_field f[HX_FIELDS_MAX];
	size_t n;
};

static void hx_on_request(struct http_req *rq, void *ctx);
static void hx_on_writable(struct http_req *rq, void *ctx);
static void hx_on_close(struct http_req *rq, void *ctx);

static const struct http_handler hx_handler = {
	.on_request = hx_on_request,
	.on_writable = hx_on_writable,
	.on_close = hx_on_close,
};

static const char *const hx_versions[] = {
	"2024-10-07", "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25",
};

static enum hx_kind hx_service_tag = HX_SERVICE;

/* ---- small helpers ---- */

static void
fields_add(struct hx_fields *fs, const char *name, const char *value)
{
	if (fs->n < HX_FIELDS_MAX) {
		fs->f[fs->n++] = (struct http_field){ name, value };
	}
}

/* CORS: a request that came with an Origin (it passed the checks) may read the answer. */
static void
fields_cors(struct hx_fields *fs, const struct http_req *rq)
{
	const char *origin = http_req_header(rq, "Origin", NULL);

	if (origin != NULL) {
		fields_add(fs, "Access-Control-Allow-Origin", origin);
		fields_add(fs, "Access-Control-Expose-Headers", "Mcp-Session-Id");
		fields_add(fs, "Vary", "Origin");
	}
}

static void
work_schedule(struct front_http *fh)
{
	if (!fh->work_queued) {
		fh->work_queued = true;
		ev_idle_start(fh->loop, &fh->work_w);
	}
}

static void
sweep_schedule(struct front_http *fh)
{
	if (!ev_is_active(&fh->sweep_w)) {
		ev_timer_set(&fh->sweep_w, 1.0, 1.0);
		ev_timer_start(fh->loop, &fh->sweep_w);
	}
}

/*
 * An answer of the transport's own: a JSON-RPC error, for the request whose id is id (JSON
 * text), or without an id (NULL; docs/http.md).
 */
static void
respond_error_id(struct front_http *fh, struct http_req *rq, int status, int code, const char *text,
		 const struct hx_fields *extra, const char *id, size_t id_len)
{
	struct hx_fields fs = { .n = 0 };
	struct sbuf *b = &fh->tmp;

	if (extra != NULL) {
		fs = *extra;
	}
	fields_add(&fs, "Content-Type", "application/json");
	fields_cors(&fs, rq);
	sbuf_reset(b);
	rpcout_error(b, id, id_len, code, text);
	if (b->failed) {
		(void)http_respond(rq, 503, NULL, 0, NULL, 0);
		return;
	}
	if (http_respond(rq, status, fs.f, fs.n, b->buf, b->len) == -1 && errno == EINVAL) {
		(void)http_respond(rq, 500, NULL, 0, NULL, 0);
	}
}

static void
respond_error(struct front_http *fh, struct http_req *rq, int status, int code, const char *text,
	      const struct hx_fields *extra)
{
	respond_error_id(fh, rq, status, code, text, extra, NULL, 0);
}

/* Out of memory for a POST whose body is in fh->scan: a request's error carries its id. */
static void
respond_oom(struct front_http *fh, struct http_req *rq)
{
	const struct jsonrpc_scanner *sc = &fh->scan;

	if (sc->kind == JSONRPC_REQUEST) {
		respond_error_id(fh, rq, 503, RPC_SERVER_ERROR, "out of memory", NULL,
				 jsonrpc_str(sc, sc->one.id), sc->one.id.len);
	} else {
		respond_error(fh, rq, 503, RPC_SERVER_ERROR, "out of memory", NULL);
	}
}

static bool
value_is(const char *v, size_t len, const char *s)
{
	return strlen(s) == len && memcmp(v, s, len) == 0;
}

/* "application/json", in any case, with parameters or not. */
static bool
ctype_is_json(const char *v, size_t len)
{
	static const char want[] = "application/json";
	size_t n = sizeof(want) - 1;

	if (len < n || strncasecmp(v, want, n) != 0) {
		return false;
	}
	return len == n || v[n] == ';' || v[n] == ' ' || v[n] == '\t';
}

/* A protocol version as the transport spells them: YYYY-MM-DD. */
static bool
version_form(const char *v, size_t len)
{
	if (len != 10 || v[4] != '-' || v[7] != '-') {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (i != 4 && i != 7 && (v[i] < '0' || v[i] > '9')) {
			return false;
		}
	}
	return true;
}

static bool
version_supported(const struct hx_session *hs, const char *v, size_t len)
{
	for (size_t i = 0; i < sizeof(hx_versions) / sizeof(hx_versions[0]); i++) {
		if (value_is(v, len, hx_versions[i])) {
			return true;
		}
	}
	/* Whatever the session's server agreed to speak: mcpmux relays it, it need not know it. */
	return hs != NULL && hs->version[0] != '\0' && value_is(v, len, hs->version);
}

/* Priming events (an empty data field) only for clients of 2025-11-25 or later. */
static bool
version_primes(const struct hx_session *hs)
{
	return version_form(hs->version, strlen(hs->version)) &&
	       strcmp(hs->version, "2025-11-25") >= 0;
}

static void
set_version(struct hx_session *hs, const struct jsonspan *v)
{
	const char *s;
	size_t n;

	if (jsonspan_plain_string(v, &s, &n) && n < sizeof(hs->version) && httpmsg_value_ok(s, n)) {
		memcpy(hs->version, s, n);
		hs->version[n] = '\0';
	}
}

/* The key of an id's JSON text (jsonrpc_id_key()), malloc'd; NULL when it has none. */
static char *
key_of(const char *id, size_t len, size_t *key_len)
{
	char *k = malloc(JSONRPC_KEY_MAX(len));

	if (k == NULL) {
		return NULL;
	}
	*key_len = jsonrpc_id_key(id, len, k);
	if (*key_len == 0) {
		free(k);
		return NULL;
	}
	return k;
}

/*
 * The key of an id's JSON text, for comparisons: in buf when it fits, else malloc'd
 * (key_done() frees that).  NULL when the text is no id (or memory ran out).
 */
static char *
key_tmp(const char *id, size_t len, char *buf, size_t cap, size_t *key_len)
{
	char *k = JSONRPC_KEY_MAX(len) <= cap ? buf : malloc(JSONRPC_KEY_MAX(len));

	if (k == NULL) {
		return NULL;
	}
	*key_len = jsonrpc_id_key(id, len, k);
	if (*key_len == 0) {
		if (k != buf) {
			free(k);
		}
		return NULL;
	}
	return k;
}

static void
key_done(char *k, const char *buf)
{
	if (k != buf) {
		free(k);
	}
}

static void
peer_text(char *out, size_t len, const struct http_request *r)
{
	char addr[INET6_ADDRSTRLEN] = "?";

	if (r->peer->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)r->peer;

		(void)inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		(void)snprintf(out, len, "http %s:%u", addr, (unsigned)ntohs(in->sin_port));
	} else if (r->peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)r->peer;

		(void)inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
		(void)snprintf(out, len, "http [%s]:%u", addr, (unsigned)ntohs(in6->sin6_port));
	} else {
		(void)snprintf(out, len, "http unix");
	}
}

/* ---- events and streams ---- */

static struct hx_event *
event_new(const char *data, size_t len)
{
	struct hx_event *ev = malloc(sizeof(*ev) + len);

	if (ev == NULL) {
		return NULL;
	}
	ev->next = NULL;
	ev->seq = 0;
	ev->len = len;
	memcpy(ev->data, data, len);
	if (len > ((size_t)256 << 10)) {
		sys_big_alloc = true; /* given back once mcpmux is idle */
	}
	return ev;
}

/* An event of the n pieces of iov, in ev (with room for them) or a new one; NULL: no memory. */
static struct hx_event *
event_newv(struct hx_event *ev, const struct iovec *iov, int n)
{
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		len += iov[i].iov_len;
	}
	if (ev == NULL && (ev = malloc(sizeof(*ev) + len)) == NULL) {
		return NULL;
	}
	ev->next = NULL;
	ev->seq = 0;
	ev->len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(ev->data + ev->len, iov[i].iov_base, iov[i].iov_len);
		ev->len += iov[i].iov_len;
	}
	return ev;
}

/*
 * A big event is given back to the system once mcpmux is idle: asked for when it is
 * freed too, not only when it was made (a finished stream keeps its events for 10 s).
 */
static void
event_free(struct hx_event *ev)
{
	if (ev->len > ((size_t)256 << 10)) {
		sys_big_alloc = true;
	}
	free(ev);
}

static void
events_free(struct hx_event *ev)
{
	while (ev != NULL) {
		struct hx_event *next = ev->next;

		event_free(ev);
		ev = next;
	}
}

static struct hx_stream *
stream_new(struct hx_session *hs, bool is_get)
{
	struct hx_stream *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		return NULL;
	}
	st->kind = HX_STREAM;
	st->hs = hs;
	st->is_get = is_get;
	st->num = ++hs->n_streams;
	/* Appended: the list stays oldest first. */
	struct hx_stream **pp = &hs->streams;

	while (*pp != NULL) {
		pp = &(*pp)->next;
	}
	*pp = st;
	return st;
}

/* Bytes of a running request stream's written events that its socket took (for a replay). */
static size_t
replay_of(const struct hx_stream *st)
{
	return st->is_get || st->done ? 0 : st->kept - st->flying_len;
}

/* Unlink and free a stream (it carries no exchange). */
static void
stream_free(struct hx_stream *st)
{
	struct hx_session *hs = st->hs;

	for (struct hx_stream **pp = &hs->streams; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	}
	if (hs->get == st) {
		hs->get = NULL;
	}
	if (hs->init == st) {
		/* Its answer still says whether the session lives (a JSON client that went). */
		hs->init = NULL;
		free(hs->init_key);
		hs->init_key = st->key;
		hs->init_key_len = st->key_len;
		st->key = NULL;
	}
	for (struct hx_event *ev = st->unsent; ev != NULL; ev = ev->next) {
		hs->unsent -= ev->len;
	}
	if (st->done) {
		hs->lingering -= st->kept;
	}
	hs->replay -= replay_of(st);
	if (st->rq != NULL) {
		http_req_set_data(st->rq, NULL);
	}
	events_free(st->head);
	free(st->key);
	free(st->tok);
	free(st->id);
	free(st);
}

static void
event_id(char *out, size_t len, const struct hx_stream *st, uint64_t seq)
{
	(void)snprintf(out, len, "%u:%llu", (unsigned)st->num, (unsigned long long)seq);
}

/* An event was written into the stream's connection: in flight until its socket takes it. */
static void
stream_sent(struct hx_stream *st, struct hx_event *ev)
{
	size_t before = replay_of(st);

	ev->end = http_stream_sent(st->rq) + http_stream_queued(st->rq);
	if (st->flying == NULL) {
		st->flying = ev;
	}
	st->flying_len += ev->len;
	st->hs->replay = st->hs->replay - before + replay_of(st);
}

/*
 * Drop the stream's oldest event if it may go: written and taken by the socket, and not
 * its response.  Whether one went.
 */
static bool
stream_drop_oldest(struct hx_stream *st)
{
	struct hx_event *ev = st->head;

	if (ev == NULL || ev == st->unsent || ev == st->flying ||
	    (st->answered && ev == st->tail)) {
		return false;
	}
	st->head = ev->next;
	if (st->head == NULL) {
		st->tail = NULL;
	}
	st->kept -= ev->len;
	event_free(ev);
	return true;
}

/*
 * Drop the oldest written events beyond what the stream may keep.  Events still in the
 * connection's queue do not count, and stay: a connection that breaks loses them, and a
 * resume gets them again.  A request's response stays whatever its size (its client
 * comes back for it).
 */
static void
stream_trim(struct hx_stream *st)
{
	struct hx_session *hs = st->hs;
	size_t max = st->is_get ? HX_GET_REPLAY : hs->fh->opt->max_queue;
	size_t before = replay_of(st);

	if (st->rq != NULL) {
		uint64_t sent = http_stream_sent(st->rq);

		while (st->flying != NULL && st->flying != st->unsent && st->flying->end <= sent) {
			st->flying_len -= st->flying->len;
			st->flying = st->flying->next;
		}
		if (st->flying == st->unsent) {
			st->flying = NULL;
		}
	}
	while (st->kept - st->flying_len > max && stream_drop_oldest(st)) {
	}
	hs->replay = hs->replay - before + replay_of(st);
	/*
	 * The running request streams that their clients let go share one --max-queue of
	 * replay: a client that opens stream after stream of a server that writes much for
	 * each, and lets each go, would otherwise hold --max-queue for every one.  The
	 * oldest streams' oldest events go first; what was not delivered, and responses,
	 * stay.  A stream still connected keeps its own window whole: what its socket took
	 * may still wait unread in the kernel's buffers, for a resume if the connection
	 * breaks (and connected streams are bounded by the connections).
	 */
	size_t bound = hs->fh->opt->max_queue, connected = 0;

	if (hs->replay <= bound) {
		return;
	}
	for (const struct hx_stream *o = hs->streams; o != NULL; o = o->next) {
		connected += o->rq != NULL ? replay_of(o) : 0;
	}
	for (struct hx_stream *o = hs->streams; o != NULL && hs->replay - connected > bound;
	     o = o->next) {
		while (o->rq == NULL && replay_of(o) > 0 && hs->replay - connected > bound) {
			size_t len = o->head != NULL ? o->head->len : 0;

			if (!stream_drop_oldest(o)) {
				break;
			}
			hs->replay -= len;
		}
	}
}

static bool
hxs_full(const struct hx_session *hs)
{
	if (hs->unsent >= hs->fh->opt->max_queue) {
		return true;
	}
	for (const struct hx_stream *st = hs->streams; st != NULL; st = st->next) {
		if (st->rq != NULL && !st->is_json && !st->finishing && http_stream_full(st->rq)) {
			return true;
		}
	}
	return false;
}

/* After the queues shrank: let the server's output flow again. */
static void
hxs_check_writable(struct hx_session *hs)
{
	if (hs->was_full && hs->e != NULL && !hxs_full(hs)) {
		hs->was_full = false;
		hub_port_writable(hs->e);
	}
}

static void stream_finish(struct hx_stream *st);

/* A stream's response, as one JSON body: the exchange is over. */
static void
stream_answer_json(struct hx_stream *st)
{
	struct hx_session *hs = st->hs;
	struct http_req *rq = st->rq;
	struct hx_event *ev = st->unsent;
	struct hx_fields fs = { .n = 0 };

	fields_add(&fs, "Content-Type", "application/json");
	fields_add(&fs, "Mcp-Session-Id", hs->id);
	fields_cors(&fs, rq);
	st->rq = NULL;
	http_req_set_data(rq, NULL);
	(void)http_respond(rq, 200, fs.f, fs.n, ev->data, ev->len);
	stream_free(st);
}

/* Write what the stream has not written yet; end it once its response is out. */
static void
stream_flush(struct hx_stream *st)
{
	struct hx_session *hs = st->hs;
	char id[48];

	if (st->rq == NULL) {
		return;
	}
	if (st->is_json) {
		if (st->answered && st->unsent != NULL) {
			stream_answer_json(st);
			hxs_check_writable(hs);
		}
		return;
	}
	while (st->unsent != NULL) {
		struct hx_event *ev = st->unsent;

		event_id(id, sizeof(id), st, ev->seq);
		if (http_sse_message(st->rq, id, ev->data, ev->len) == -1) {
			return; /* the connection broke: on_close detaches the stream */
		}
		size_t before = replay_of(st);

		st->unsent = ev->next;
		hs->unsent -= ev->len;
		st->kept += ev->len;
		hs->replay = hs->replay - before + replay_of(st);
		stream_sent(st, ev);
	}
	stream_trim(st);
	if (st->flying != NULL) {
		sweep_schedule(hs->fh); /* to let them go once the socket took them */
	}
	if (st->answered && !st->is_get) {
		stream_finish(st);
	}
	hxs_check_writable(hs);
}

/* Queue a message on a stream (and write it, when the stream has a connection). */
static void
stream_push(struct hx_stream *st, struct hx_event *ev)
{
	struct hx_session *hs = st->hs;

	ev->seq = ++st->seq;
	if (st->tail != NULL) {
		st->tail->next = ev;
	} else {
		st->head = ev;
	}
	st->tail = ev;
	if (st->unsent == NULL) {
		st->unsent = ev;
	}
	hs->unsent += ev->len;
	stream_flush(st);
}

/* The stream takes the messages that were waiting for a stream to open. */
static void
stream_adopt_orphans(struct hx_stream *st)
{
	struct hx_session *hs = st->hs;
	struct hx_event *ev = hs->orphans;

	/*
	 * Not for a request stream that has its answer (resumed after it): it ends with the
	 * answer's write, and may be freed then (stream_finish()).  They wait for the next.
	 */
	if (st->is_json || (st->answered && !st->is_get)) {
		return;
	}
	hs->orphans = hs->orphans_tail = NULL;
	while (ev != NULL) {
		struct hx_event *next = ev->next;

		ev->next = NULL;
		hs->unsent -= ev->len; /* stream_push counts it again */
		stream_push(st, ev);
		ev = next;
	}
}

/*
 * A request stream whose response went out: end its exchange, keep it for a resume
 * (within the session's bound: this may free st, and older finished streams).  While its
 * connection still queues bytes, it waits for them to be written (on_writable): the
 * time it is kept for counts from then, and a connection that breaks before detaches it.
 */
static void
stream_finish(struct hx_stream *st)
{
	struct hx_session *hs = st->hs;
	struct http_req *rq = st->rq;

	st->finishing = rq != NULL && http_stream_queued(rq) > 0 && http_stream_want_empty(rq) == 0;
	if (st->finishing) {
		return;
	}
	if (rq != NULL) {
		/* All written and taken: held to --max-queue, as while it ran, its answer kept. */
		stream_trim(st);
	}
	st->rq = NULL;
	if (rq != NULL) {
		http_req_set_data(rq, NULL);
		(void)http_stream_end(rq);
	}
	if (st->kept == 0) {
		stream_free(st);
		return;
	}
	hs->replay -= replay_of(st);
	st->done = true;
	st->since = sys_mono();
	hs->lingering += st->kept;
	/*
	 * Bounded per session: the oldest finished streams go first, never this one (a
	 * response larger than the bound would go at once, and its client, whose connection
	 * broke before it read it, could not resume it).
	 */
	for (struct hx_stream *o = hs->streams, *next; o != NULL && hs->lingering > HX_LINGER_MAX;
	     o = next) {
		next = o->next;
		if (o->done && o != st) {
			stream_free(o);
		}
	}
	sweep_schedule(hs->fh);
}

/*
 * Give a stream an exchange: the SSE head (with the session's ID), the priming event
 * for clients that take one, then what waits.  For a JSON stream, the answer when it is
 * there.  replay_after >= 0: events after that number are written again first (a resume).
 */
static void
stream_attach(struct hx_stream *st, struct http_req *rq, long long replay_after)
{
	struct hx_session *hs = st->hs;
	struct hx_fields fs = { .n = 0 };
	char id[48];

	st->rq = rq;
	http_req_set_data(rq, st);
	if (st->is_json) {
		stream_flush(st);
		return;
	}
	/* A new connection: what was in flight on the old one is replayed, or lost to it. */
	hs->replay -= replay_of(st);
	st->flying = NULL;
	st->flying_len = 0;
	hs->replay += replay_of(st);
	fields_add(&fs, "Mcp-Session-Id", hs->id);
	fields_cors(&fs, rq);
	if (http_sse_begin(rq, fs.f, fs.n) == -1) {
		if (errno == EINVAL) {
			st->rq = NULL;
			http_req_set_data(rq, NULL);
			(void)http_respond(rq, 500, NULL, 0, NULL, 0);
		}
		return; /* broken: on_close follows */
	}
	if (version_primes(hs)) {
		struct httpmsg_sse prime = { .id = id,
					     .retry_ms = HX_RETRY_MS,
					     .has_data = true,
					     .data = "",
					     .data_len = 0 };

		/* Its id says how far the client has the stream: a resume from it loses nothing. */
		uint64_t seen = replay_after >= 0    ? (uint64_t)replay_after
				: st->unsent != NULL ? st->unsent->seq - 1
						     : st->seq;

		event_id(id, sizeof(id), st, seen);
		if (http_sse_send(rq, &prime) == -1) {
			return;
		}
	}
	if (replay_after >= 0) {
		for (struct hx_event *ev = st->head; ev != NULL && ev != st->unsent;
		     ev = ev->next) {
			if (ev->seq <= (uint64_t)replay_after) {
				continue;
			}
			event_id(id, sizeof(id), st, ev->seq);
			if (http_sse_message(rq, id, ev->data, ev->len) == -1) {
				return;
			}
			stream_sent(st, ev);
		}
	}
	if (st->done) {
		/* A finished stream, resumed: everything after the client's event is out. */
		hs->lingering -= st->kept;
		st->done = false;
		hs->replay += replay_of(st);
		stream_finish(st);
		return;
	}
	stream_adopt_orphans(st);
	stream_flush(st);
}

/* The stream's connection went away: keep the stream for a resume. */
static void
stream_detach(struct hx_stream *st)
{
	/*
	 * What the socket took counts as written, up to the last byte: the stream keeps its
	 * replay window of it, not every event written since the last sweep.
	 */
	stream_trim(st);
	if (st->finishing) {
		/*
		 * Its response was still in the connection's queue: not delivered, it is kept
		 * as undelivered messages are, within the session's --max-queue (a full queue
		 * pauses the server), not beside it.
		 */
		if (st->flying != NULL) {
			for (struct hx_event *ev = st->flying; ev != NULL; ev = ev->next) {
				st->hs->unsent += ev->len;
			}
			st->kept -= st->flying_len;
			st->unsent = st->flying;
			st->flying = NULL;
			st->flying_len = 0;
		}
	}
	st->rq = NULL;
	st->finishing = false;
	st->since = sys_mono();
	if (st->is_json) {
		/*
		 * Cannot be resumed: its response, when it comes, goes to another stream.  A
		 * request still running is remembered, to be cancelled if it is forgotten.
		 */
		if (st->answered) {
			stream_free(st);
			return;
		}
		st->json_gone = true;
	}
	sweep_schedule(st->hs->fh);
}

/*
 * The GET stream's connection, closed by its client (or broken) while the layer has not
 * said so yet (its close is heard at a turn of the loop that has nothing else to do, or
 * not read at all): detached now, as on_close would.  False when it is still open.
 */
static bool
get_detach_gone(struct hx_session *hs)
{
	struct http_req *old = hs->get->rq;

	if (!http_req_gone(old)) {
		return false;
	}
	stream_detach(hs->get);
	http_req_set_data(old, NULL);
	(void)http_stream_end(old);
	return true;
}

/* ---- where the server's messages go ---- */

/* The oldest running request stream whose id (or progress token) has this JSON text. */
static struct hx_stream *
stream_by_key(struct hx_session *hs, const char *text, size_t len, bool by_token)
{
	char buf[256];
	size_t klen;
	char *k = key_tmp(text, len, buf, sizeof(buf), &klen);
	struct hx_stream *st;

	if (k == NULL) {
		return NULL;
	}
	for (st = hs->streams; st != NULL; st = st->next) {
		const char *sk = by_token ? st->tok : st->key;
		size_t sl = by_token ? st->tok_len : st->key_len;

		if (sk != NULL && !st->answered && !st->done && (!by_token || !st->is_json) &&
		    sl == klen && memcmp(sk, k, klen) == 0) {
			break;
		}
	}
	key_done(k, buf);
	return st;
}

static struct hx_stream *
stream_for_response(struct hx_session *hs, const char *id, size_t len)
{
	return stream_by_key(hs, id, len, false);
}

static struct hx_stream *
stream_for_progress(struct hx_session *hs, const char *msg, size_t len)
{
	static const char *const path[] = { "params", "progressToken" };
	struct jsonspan tok;

	if (!jsonspan_find(msg, len, path, 2, &tok)) {
		return NULL;
	}
	return stream_by_key(hs, tok.p, tok.len, true);
}

/* A message tied to no request: the rules of docs/http.md, "which stream carries them". */
static struct hx_stream *
stream_for_other(struct hx_session *hs)
{
	struct hx_stream *only = NULL, *oldest = NULL;
	size_t n = 0;

	for (struct hx_stream *st = hs->streams; st != NULL; st = st->next) {
		if (st->is_get || st->is_json || st->answered || st->done || st->key == NULL) {
			continue;
		}
		n++;
		only = st;
		if (oldest == NULL) {
			oldest = st;
		}
	}
	if (n == 1) {
		return only;
	}
	/*
	 * Connected, as far as mcpmux can tell: one whose client closed it would keep them
	 * undelivered, where without it they wait for the next stream to open (rule 4).
	 */
	if (hs->get != NULL && hs->get->rq != NULL && !get_detach_gone(hs)) {
		return hs->get;
	}
	return oldest;
}

/*
 * Messages for no stream at their bound pause the server's output, until a stream opens
 * to take them.  A client that accepts only JSON and has no GET stream open never opens
 * one, and the answer it waits for is behind them: that wait would never end.  Then the
 * oldest go (to half the bound), counted and said: they had no way to that client.
 */
static void
orphans_relieve(struct hx_session *hs, bool json_waits)
{
	/* A GET stream, even one between connections, takes them (a resume loses nothing). */
	if (hs->unsent < hs->fh->opt->max_queue || hs->get != NULL) {
		return;
	}
	for (const struct hx_stream *st = hs->streams; st != NULL; st = st->next) {
		json_waits = json_waits || (st->is_json && st->rq != NULL && !st->answered);
	}
	if (!json_waits) {
		return;
	}
	size_t n = 0, bytes = 0;

	while (hs->orphans != NULL && hs->unsent > hs->fh->opt->max_queue / 2) {
		struct hx_event *ev = hs->orphans;

		hs->orphans = ev->next;
		hs->unsent -= ev->len;
		bytes += ev->len;
		n++;
		event_free(ev);
	}
	if (hs->orphans == NULL) {
		hs->orphans_tail = NULL;
	}
	if (n == 0) {
		return; /* what holds the server is in streams, for their clients */
	}
	diag_warn("session %s: %zu message(s) of the server (%zu bytes) dropped: they had no "
		  "stream to go to (the client accepts only JSON and has no GET stream open), and "
		  "its answer waits behind them",
		  hs->id, n, bytes);
	if (tlog_enabled) {
		char f[64];
		int k = snprintf(f, sizeof(f), "\"dropped\":%zu,\"bytes\":%zu", n, bytes);

		tlog_event(hs->id, 0, "dropped", f, (size_t)k);
	}
}

/*
 * The error that goes in place of a server's answer (msg) that there is no memory to keep,
 * so that its request's stream still ends: in an event of its own (built in fh->tmp), else
 * in the spare one (with a null id if the answer's does not fit: the stream it goes to is
 * the answer's).  NULL when msg is no answer with an id, or when there is neither.
 */
static struct hx_event *
lost_answer(struct front_http *fh, const char *msg, size_t len)
{
	struct iovec iov[3];
	int n = rpcout_lost_answer(iov, msg, len);
	struct hx_event *ev;

	if (n == 0) {
		return NULL;
	}
	if ((ev = event_newv(NULL, iov, n)) != NULL || (ev = fh->spare) == NULL) {
		return ev;
	}
	fh->spare = NULL;
	if (iov[0].iov_len + iov[1].iov_len + iov[2].iov_len > HX_SPARE) {
		iov[1] = (struct iovec){ .iov_base = (void *)(uintptr_t) "null", .iov_len = 4 };
	}
	return event_newv(ev, iov, n);
}

static void
route(struct hx_session *hs, const char *msg, size_t len)
{
	struct front_http *fh = hs->fh;
	struct jsonrpc_scanner *sc = &fh->oscan;
	enum jsonrpc_kind kind = jsonrpc_scan(sc, msg, len);

	if (kind == JSONRPC_BATCH) {
		/*
		 * A batch of the server's (answers to requests of separate POSTs): each element
		 * goes its own way, as a message of its own, so that each answer ends its own
		 * request's stream (whole, it would go to one stream and end none).
		 */
		const char *p = msg, *el;
		size_t el_len;

		while (jsonspan_element(&p, msg + len, &el, &el_len)) {
			route(hs, el, el_len); /* the scanner is used again */
		}
		return;
	}
	struct hx_stream *st = NULL;
	struct hx_event *ev = event_new(msg, len);
	bool answer = (kind == JSONRPC_RESPONSE || kind == JSONRPC_ERROR) && sc->one.has_id;

	if (fh->spare == NULL) {
		fh->spare = malloc(sizeof(*fh->spare) + HX_SPARE); /* (again) */
	}
	if (ev == NULL) {
		diag_error("session %s: out of memory: a message for the HTTP client was lost",
			   hs->id);
		/* Its request's stream must still end: a small error in its place. */
		if (!answer || (ev = lost_answer(fh, msg, len)) == NULL) {
			return;
		}
	}
	if (answer) {
		st = stream_for_response(hs, jsonrpc_str(sc, sc->one.id), sc->one.id.len);
		if (st != NULL && st->is_json && st->rq != NULL && http_req_gone(st->rq)) {
			/* Gone, and the layer has not said so yet: it would not be written. */
			st->json_gone = true;
		}
		if (st != NULL && st->json_gone) {
			/* Its client went: the answer goes by rule 3 (the initialize's key stays).
			 */
			stream_free(st);
			st = NULL;
		}
		bool is_init = st != NULL && st == hs->init;

		if (st == NULL && hs->init_key != NULL) {
			char buf[256];
			size_t klen;
			char *k = key_tmp(jsonrpc_str(sc, sc->one.id), sc->one.id.len, buf,
					  sizeof(buf), &klen);

			is_init = k != NULL && klen == hs->init_key_len &&
				  memcmp(k, hs->init_key, klen) == 0;
			key_done(k, buf);
		}
		if (st != NULL) {
			st->answered = true;
		}
		if (is_init) {
			static const char *const path[] = { "result", "protocolVersion" };
			struct jsonspan v;

			if (kind == JSONRPC_RESPONSE && jsonspan_find(msg, len, path, 2, &v)) {
				set_version(hs, &v);
			} else if (kind == JSONRPC_ERROR) {
				/* No session without an initialized server. */
				hs->end_soon = true;
				work_schedule(fh);
			}
			hs->init = NULL;
			free(hs->init_key);
			hs->init_key = NULL;
		}
	} else if (kind == JSONRPC_NOTIFICATION && sc->one.has_method &&
		   jsonrpc_method_is(sc, &sc->one, "notifications/progress")) {
		st = stream_for_progress(hs, msg, len);
	}
	if (st == NULL) {
		st = stream_for_other(hs);
	}
	if (st == NULL) {
		/* No stream at all: it waits for the first one to open (full: pauses the server).
		 */
		if (hs->orphans_tail != NULL) {
			hs->orphans_tail->next = ev;
		} else {
			hs->orphans = ev;
		}
		hs->orphans_tail = ev;
		hs->unsent += ev->len;
		orphans_relieve(hs, false);
		return;
	}
	stream_push(st, ev);
}

/* ---- the hub's view: a port per session ---- */

static struct hx_session *
hs_of(struct hub_port *p)
{
	return container_of(p, struct hx_session, port);
}

static int
port_attach(struct hub_port *p, struct hub_entry *e)
{
	struct hx_session *hs = hs_of(p);

	hs->e = e;
	e->port_data = hs;
	return 0;
}

static void hxs_let_go(struct hx_session *hs);

static void
port_detach(struct hub_port *p, struct hub_entry *e)
{
	struct hx_session *hs = hs_of(p);

	e->port_data = NULL;
	hs->e = NULL;
	hxs_let_go(hs);
}

static void
port_message(struct hub_port *p, struct hub_entry *e, const char *msg, size_t len)
{
	(void)e;
	route(hs_of(p), msg, len);
}

static void
port_event(struct hub_port *p, struct hub_entry *e, const char *fields, size_t len)
{
	struct hx_session *hs = hs_of(p);
	static const char ended[] = ",\"event\":\"ended\",";
	size_t n = sizeof(ended) - 1;

	(void)e;
	if (len > n && memcmp(fields, ended, n) == 0) {
		/* The end-of-run result, for DELETE: {"session":...,"pid":...,...}. */
		sbuf_reset(&hs->result);
		sbuf_adds(&hs->result, "{\"session\":");
		sbuf_add_json_string(&hs->result, hs->id, strlen(hs->id));
		sbuf_adds(&hs->result, ",");
		sbuf_add(&hs->result, fields + n, len - n);
		sbuf_adds(&hs->result, "}");
	}
}

static void
port_reply(struct hub_port *p, const char *msg, size_t len)
{
	/* An HTTP session makes no control requests. */
	(void)p;
	(void)msg;
	(void)len;
}

static bool
port_full(struct hub_port *p, const struct hub_entry *e)
{
	struct hx_session *hs = hs_of(p);

	(void)e;
	hs->was_full = hxs_full(hs);
	return hs->was_full;
}

static void
port_hold(struct hub_port *p, bool on)
{
	struct hx_session *hs = hs_of(p);

	hs->holding = on;
	if (!on && hs->held != NULL) {
		work_schedule(hs->fh);
	}
}

static const struct hub_port_ops hx_ops = {
	.attach = port_attach,
	.detach = port_detach,
	.message = port_message,
	.event = port_event,
	.reply = port_reply,
	.full = port_full,
	.hold = port_hold,
};

/* The HTTP session with this ID, if it is one of ours and still running. */
static struct hx_session *
hxs_find(struct front_http *fh, const char *id, size_t len)
{
	struct hub_entry *e = hub_find(fh->hub, id, len);

	if (e == NULL || e->owner == NULL || e->owner->ops != &hx_ops) {
		return NULL;
	}
	struct hx_session *hs = hs_of(e->owner);

	return hs->gone ? NULL : hs;
}

static struct hx_session *
hxs_new(struct front_http *fh)
{
	struct hx_session *hs = calloc(1, sizeof(*hs));

	if (hs == NULL) {
		return NULL;
	}
	hs->port.ops = &hx_ops;
	hs->fh = fh;
	hs->next = fh->sessions;
	if (fh->sessions != NULL) {
		fh->sessions->prev = hs;
	}
	fh->sessions = hs;
	fh->n_sessions++;
	return hs;
}

static void
pending_answer(struct front_http *fh, struct hx_pending *pd)
{
	struct hx_session *hs = pd->hs;

	http_req_set_data(pd->rq, NULL);
	if (pd->kind == HX_DELETE) {
		struct hx_fields fs = { .n = 0 };
		struct sbuf *b = &fh->tmp;

		fields_add(&fs, "Content-Type", "application/json");
		fields_cors(&fs, pd->rq);
		sbuf_reset(b);
		if (hs->result.len > 0 && !hs->result.failed) {
			sbuf_add(b, hs->result.buf, hs->result.len);
		} else {
			hub_none_result(b, hs->id, strlen(hs->id));
		}
		(void)http_respond(pd->rq, 200, fs.f, fs.n, b->buf, b->len);
	} else {
		respond_error(fh, pd->rq, 404, -32001, "Session not found: it has ended", NULL);
	}
}

/*
 * The hub let the session go (its run is over, or it never started): answer what waits
 * for it, end the streams that have a connection, and free it at the next turn.
 */
static void
hxs_let_go(struct hx_session *hs)
{
	struct front_http *fh = hs->fh;

	if (hs->gone) {
		return;
	}
	hs->gone = true;
	while (hs->deletes != NULL) {
		struct hx_pending *pd = hs->deletes;

		hs->deletes = pd->next;
		pending_answer(fh, pd);
		free(pd);
	}
	while (hs->held != NULL) {
		struct hx_pending *pd = hs->held;

		hs->held = pd->next;
		pending_answer(fh, pd);
		free(pd);
	}
	hs->held_tail = NULL;
	for (struct hx_stream *st = hs->streams; st != NULL; st = st->next) {
		struct http_req *rq = st->rq;

		if (rq == NULL) {
			continue;
		}
		st->rq = NULL;
		http_req_set_data(rq, NULL);
		if (st->is_json) {
			respond_error(fh, rq, 404, -32001, "Session not found: it has ended", NULL);
		} else {
			(void)http_stream_end(rq);
		}
	}
	work_schedule(fh);
}

static void
hxs_free(struct hx_session *hs)
{
	struct front_http *fh = hs->fh;

	while (hs->streams != NULL) {
		stream_free(hs->streams);
	}
	events_free(hs->orphans);
	free(hs->init_key);
	sbuf_release(&hs->result);
	if (hs->prev != NULL) {
		hs->prev->next = hs->next;
	} else {
		fh->sessions = hs->next;
	}
	if (hs->next != NULL) {
		hs->next->prev = hs->prev;
	}
	fh->n_sessions--;
	free(hs);
}

/* ---- requests ---- */

/* The client's message as one line: a body with line breaks (pretty JSON) is joined. */
static const char *
body_line(struct front_http *fh, const char *body, size_t len)
{
	if (memchr(body, '\n', len) == NULL && memchr(body, '\r', len) == NULL) {
		return body;
	}
	if (fh->line_cap < len) {
		char *nb = realloc(fh->line, len);

		if (nb == NULL) {
			return NULL;
		}
		fh->line = nb;
		fh->line_cap = len;
	}
	/*
	 * Valid JSON has line breaks only between tokens: white space either way.  One raw
	 * in a string is kept, for the scan to refuse: the body is not JSON.
	 */
	bool in_string = false, escaped = false;

	for (size_t i = 0; i < len; i++) {
		char c = body[i];

		if (in_string) {
			in_string = escaped || c != '"';
			escaped = !escaped && c == '\\';
		} else if (c == '"') {
			in_string = true;
		} else if (c == '\n' || c == '\r') {
			c = ' ';
		}
		fh->line[i] = c;
	}
	return fh->line;
}

/* A body is handled: the copy of one that was big is not kept. */
static void
line_trim(struct front_http *fh)
{
	if (fh->line_cap > ((size_t)64 << 10)) {
		free(fh->line);
		fh->line = NULL;
		fh->line_cap = 0;
	}
}

/* A stream for a request about to be forwarded, with its id and progress token. */
static struct hx_stream *
request_stream(struct hx_session *hs, const struct jsonrpc_scanner *sc, const char *body,
	       size_t len, bool is_json)
{
	static const char *const tok_path[] = { "params", "_meta", "progressToken" };
	struct hx_stream *st = stream_new(hs, false);
	const struct jsonrpc_item *it = &sc->one;
	struct jsonspan tok;

	if (st == NULL) {
		return NULL;
	}
	st->is_json = is_json;
	st->key = key_of(jsonrpc_str(sc, it->id), it->id.len, &st->key_len);
	st->id = malloc(it->id.len);
	if (st->key == NULL || st->id == NULL) {
		stream_free(st);
		return NULL;
	}
	memcpy(st->id, jsonrpc_str(sc, it->id), it->id.len);
	st->id_len = it->id.len;
	if (jsonspan_find(body, len, tok_path, 3, &tok)) {
		st->tok = key_of(tok.p, tok.len, &st->tok_len);
	}
	return st;
}

/* 204, with the fields of every answer of the session. */
static void
respond_no_content(struct hx_session *hs, struct http_req *rq)
{
	struct hx_fields fs = { .n = 0 };

	fields_add(&fs, "Mcp-Session-Id", hs->id);
	fields_cors(&fs, rq);
	(void)http_respond(rq, 204, fs.f, fs.n, NULL, 0);
}

/*
 * notifications/cancelled: the request it names gets no answer; its stream ends, and a
 * POST that waits for one JSON body gets 204.
 */
static void
cancel_stream(struct hx_session *hs, const struct jsonrpc_scanner *sc)
{
	if (!sc->params.has_request_id) {
		return;
	}
	struct hx_stream *st = stream_for_response(hs, jsonrpc_str(sc, sc->params.request_id),
						   sc->params.request_id.len);

	if (st == NULL) {
		return;
	}
	if (st->rq != NULL) {
		struct http_req *rq = st->rq;

		st->rq = NULL;
		http_req_set_data(rq, NULL);
		if (st->is_json) {
			/* No response will come: no content, with the fields of every answer. */
			respond_no_content(hs, rq);
		} else {
			(void)http_stream_end(rq);
		}
	}
	stream_free(st);
	hxs_check_writable(hs);
}

/*
 * A notification or answer the session did not take (why: session_from_client()): the
 * server's run is ending, as for a session that has ended (404: the client starts
 * another), or memory ran out (503).
 */
static void
post_refused(struct front_http *fh, struct http_req *rq, const char *why)
{
	char text[160];

	if (why == RPCOUT_NO_MEMORY) {
		respond_error(fh, rq, 503, RPC_SERVER_ERROR, why, NULL);
		return;
	}
	(void)snprintf(text, sizeof(text), "Session not found: %s", why);
	respond_error(fh, rq, 404, -32001, text, NULL);
}

/* A POST of a session that runs, its body scanned into fh->scan: forward it, answer it. */
static void
post_forward(struct front_http *fh, struct hx_session *hs, struct http_req *rq, bool is_json)
{
	const struct http_request *r = http_req_request(rq);
	struct jsonrpc_scanner *sc = &fh->scan;
	const struct jsonrpc_item *it = &sc->one;
	const char *line = body_line(fh, r->body, r->body_len);
	bool is_end = jsonrpc_method_is(sc, it, fh->opt->end_method);

	if (line == NULL) {
		respond_oom(fh, rq);
		return;
	}
	peer_text(hs->port.peer, sizeof(hs->port.peer), r);
	if (sc->kind != JSONRPC_REQUEST) {
		struct hx_fields fs = { .n = 0 };

		if (is_end) {
			if (!hs->ending) {
				hs->ending = true;
				hub_end(hs->e, sc->params.has_grace_ms ? sc->params.grace_ms : -1,
					NULL, 0, sc);
			}
		} else {
			const char *why = hub_from_client(hs->e, line, r->body_len, sc);

			if (why != NULL) {
				/* Not accepted: an error status, never 202 (docs/http.md). */
				post_refused(fh, rq, why);
				return;
			}
			if (jsonrpc_method_is(sc, it, JSONRPC_CANCELLED)) {
				cancel_stream(hs, sc);
			}
		}
		fields_add(&fs, "Mcp-Session-Id", hs->id);
		fields_cors(&fs, rq);
		(void)http_respond(rq, 202, fs.f, fs.n, NULL, 0);
		return;
	}
	struct hx_stream *st = request_stream(hs, sc, line, r->body_len, is_json);

	if (st == NULL) {
		respond_oom(fh, rq);
		return;
	}
	http_req_set_data(rq, &hx_service_tag);
	if (is_end) {
		hs->ending = true;
		hub_end(hs->e, sc->params.has_grace_ms ? sc->params.grace_ms : -1,
			jsonrpc_str(sc, it->id), it->id.len, sc);
	} else {
		hub_from_client(hs->e, line, r->body_len, sc);
	}
	if (hs->gone) {
		/* Not expected (the hub lets go from the loop), but never leave it unanswered. */
		http_req_set_data(rq, NULL);
		respond_error(fh, rq, 404, -32001, "Session not found: it has ended", NULL);
		return;
	}
	if (is_json) {
		/* Its answer may be behind messages that no stream of this client can take. */
		orphans_relieve(hs, true);
		hxs_check_writable(hs);
	}
	stream_attach(st, rq, -1);
}

/* What the client accepts for a POST: SSE (true), JSON only (false); -1: neither. */
static int
post_accepts(const struct http_req *rq)
{
	const struct http_request *r = http_req_request(rq);
	int q = httpmsg_accept_fields_q(r->headers, r->n_headers, "text/event-stream");

	if (q != 0) {
		return 1; /* accepted, or no Accept at all */
	}
	return httpmsg_accept_fields_q(r->headers, r->n_headers, "application/json") > 0 ? 0 : -1;
}

/*
 * Whether the body has no content coding: every Content-Encoding (on any number of field
 * lines, one list) names identity.  mcpmux decodes none (RFC 9110, 8.4: 415).
 */
static bool
post_not_encoded(const struct http_req *rq)
{
	const struct http_request *r = http_req_request(rq);

	for (size_t i = 0; i < r->n_headers; i++) {
		const struct http_header *h = &r->headers[i];

		if (httpmsg_name_eq(h->name, h->name_len, "Content-Encoding") &&
		    !httpmsg_list_only(h->value, h->value_len, "identity")) {
			return false;
		}
	}
	return true;
}

/* Scan the body of a POST into fh->scan; false after answering a bad one. */
static bool
post_scan(struct front_http *fh, struct http_req *rq)
{
	const struct http_request *r = http_req_request(rq);
	enum jsonrpc_kind kind;

	if (r->body_len == 0) {
		respond_error(fh, rq, 400, RPC_PARSE_ERROR, "Parse error: the body is empty", NULL);
		return false;
	}
	const char *line = body_line(fh, r->body, r->body_len);

	if (line == NULL) {
		respond_error(fh, rq, 503, RPC_SERVER_ERROR, "out of memory", NULL);
		return false;
	}
	kind = jsonrpc_scan(&fh->scan, line, r->body_len);
	if (kind == JSONRPC_INVALID_JSON) {
		respond_error(fh, rq, 400, RPC_PARSE_ERROR,
			      "Parse error: the body is not valid JSON", NULL);
		return false;
	}
	if (kind == JSONRPC_BATCH) {
		respond_error(fh, rq, 400, RPC_INVALID_REQUEST,
			      "Invalid Request: batches are not part of MCP over HTTP (send one "
			      "message per POST)",
			      NULL);
		return false;
	}
	if (kind == JSONRPC_INVALID_REQUEST) {
		respond_error(fh, rq, 400, RPC_INVALID_REQUEST, RPCOUT_NOT_A_MESSAGE, NULL);
		return false;
	}
	return true;
}

static void
post_hold(struct front_http *fh, struct hx_session *hs, struct http_req *rq)
{
	struct hx_pending *pd = calloc(1, sizeof(*pd));

	if (pd == NULL) {
		respond_oom(fh, rq);
		return;
	}
	pd->kind = HX_HELD;
	pd->hs = hs;
	pd->rq = rq;
	if (hs->held_tail != NULL) {
		hs->held_tail->next = pd;
	} else {
		hs->held = pd;
	}
	hs->held_tail = pd;
	http_req_set_data(rq, pd);
	if (!hs->holding) {
		work_schedule(fh); /* behind others that wait: they go first, in order */
	}
}

/* A POST with initialize and no session: a new session, and its server. */
static void
post_initialize(struct front_http *fh, struct http_req *rq, bool is_json)
{
	static const char *const ver_path[] = { "params", "protocolVersion" };
	const struct http_request *r = http_req_request(rq);
	struct jsonrpc_scanner *sc = &fh->scan;
	struct hub *h = fh->hub;
	struct hx_fields fs = { .n = 0 };
	struct jsonspan v;

	if (fh->shutting_down || h->shutting_down) {
		/* As a refusal over --max-sessions: the error for the initialize request. */
		fields_add(&fs, "Retry-After", "1");
		respond_error_id(fh, rq, 503, RPC_SERVER_ERROR, "mcpmux is shutting down", &fs,
				 jsonrpc_str(sc, sc->one.id), sc->one.id.len);
		return;
	}
	const char *line = body_line(fh, r->body, r->body_len);
	struct hx_session *hs = line != NULL ? hxs_new(fh) : NULL;

	if (hs == NULL) {
		respond_oom(fh, rq);
		return;
	}
	session_new_id(hs->id);
	if (jsonspan_find(line, r->body_len, ver_path, 2, &v)) {
		set_version(hs, &v); /* the client's, until the server's answer says */
	}
	peer_text(hs->port.peer, sizeof(hs->port.peer), r);
	struct hub_entry *e = hub_entry_new(h, hs->id, strlen(hs->id));

	if (e == NULL || hub_set_owner(e, &hs->port) == -1) {
		if (e != NULL) {
			hub_entry_free(e);
		}
		hxs_free(hs);
		respond_oom(fh, rq);
		return;
	}
	struct hx_stream *st = request_stream(hs, sc, line, r->body_len, is_json);
	uint64_t refused = h->n_refused;

	if (st == NULL) {
		hub_entry_free(e); /* lets hs go */
		respond_oom(fh, rq);
		return;
	}
	hs->init = st;
	if (!hub_start(e, sc)) {
		/* Refused: its error (with the request's id) waits in the stream. */
		const struct hx_event *ev = st->head;
		// cppcheck-suppress knownConditionTrueFalse ; hub_start() counts a refusal
		int status = h->n_refused > refused || h->shutting_down ? 503 : 500;

		fields_add(&fs, "Content-Type", "application/json");
		if (status == 503) {
			fields_add(&fs, "Retry-After", "1");
		}
		fields_cors(&fs, rq);
		if (ev != NULL) {
			(void)http_respond(rq, status, fs.f, fs.n, ev->data, ev->len);
		} else {
			(void)http_respond(rq, status, fs.f, fs.n, NULL, 0);
		}
		return; /* hs was let go */
	}
	fh->n_http_sessions++;
	diag_info("session %s: started over HTTP for %s", hs->id, hs->port.peer);
	http_req_set_data(rq, &hx_service_tag);
	hub_from_client(e, line, r->body_len, sc);
	if (!hs->gone) {
		stream_attach(st, rq, -1);
	}
}

static void
handle_post(struct front_http *fh, struct http_req *rq, struct hx_session *hs, bool has_sid)
{
	size_t n;
	const char *ct = http_req_header(rq, "Content-Type", &n);
	int accepts;

	if (ct == NULL || !ctype_is_json(ct, n)) {
		respond_error(fh, rq, 415, RPC_SERVER_ERROR,
			      "Unsupported Media Type: the body must be application/json", NULL);
		return;
	}
	if (!post_not_encoded(rq)) {
		struct hx_fields ae = { .n = 0 };

		fields_add(&ae, "Accept-Encoding", "identity");
		respond_error(fh, rq, 415, RPC_SERVER_ERROR,
			      "Unsupported Media Type: the body must not have a content coding",
			      &ae);
		return;
	}
	accepts = post_accepts(rq);
	if (accepts < 0) {
		respond_error(fh, rq, 406, RPC_SERVER_ERROR,
			      "Not Acceptable: accept application/json and text/event-stream",
			      NULL);
		return;
	}
	if (!post_scan(fh, rq)) {
		return;
	}
	const struct jsonrpc_item *it = &fh->scan.one;
	bool is_init =
		fh->scan.kind == JSONRPC_REQUEST && jsonrpc_method_is(&fh->scan, it, "initialize");

	if (is_init) {
		if (has_sid) {
			respond_error(fh, rq, 400, RPC_INVALID_REQUEST,
				      "Bad Request: initialize starts a session: send it without "
				      "Mcp-Session-Id",
				      NULL);
			return;
		}
		post_initialize(fh, rq, accepts == 0);
		return;
	}
	if (!has_sid) {
		respond_error(fh, rq, 400, RPC_SERVER_ERROR,
			      "Bad Request: Mcp-Session-Id header is required (initialize first)",
			      NULL);
		return;
	}
	if (hs == NULL) {
		respond_error(fh, rq, 404, -32001, "Session not found", NULL);
		return;
	}
	if (hs->holding || hs->held != NULL) {
		/* The server is not taking its input: this POST waits, and so does its answer. */
		post_hold(fh, hs, rq);
		return;
	}
	post_forward(fh, hs, rq, accepts == 0);
}

/* "<stream>:<seq>" */
static bool
parse_event_id(const char *v, size_t len, uint32_t *num, unsigned long long *seq)
{
	char buf[48], *end;

	if (len == 0 || len >= sizeof(buf)) {
		return false;
	}
	memcpy(buf, v, len);
	buf[len] = '\0';
	if (buf[0] < '0' || buf[0] > '9') {
		return false;
	}
	errno = 0;
	unsigned long n = strtoul(buf, &end, 10);

	if (errno != 0 || *end != ':' || n == 0 || n > UINT32_MAX || end[1] < '0' || end[1] > '9') {
		return false;
	}
	*seq = strtoull(end + 1, &end, 10);
	if (errno != 0 || *end != '\0') {
		return false;
	}
	*num = (uint32_t)n;
	return true;
}

/* The number of a new GET stream, remembered; the oldest remembered one goes. */
static void
get_num_add(struct hx_session *hs, uint32_t num)
{
	uint32_t *slot = &hs->get_nums[hs->n_gets++ % HX_GET_NUMS];

	if (*slot != 0) {
		hs->known_from = *slot + 1; /* the oldest, its number the lowest */
	}
	*slot = num;
}

/*
 * Whether stream number num, which names no stream kept, was a request's: given out, not
 * a GET stream's, and not below the GET stream numbers remembered (any older one might
 * have been a GET stream's).
 */
static bool
was_request_stream(const struct hx_session *hs, uint32_t num)
{
	if (num > hs->n_streams || num < hs->known_from) {
		return false;
	}
	for (size_t i = 0; i < HX_GET_NUMS; i++) {
		if (hs->get_nums[i] == num) {
			return false;
		}
	}
	return true;
}

static void
handle_get(struct front_http *fh, struct http_req *rq, struct hx_session *hs, bool has_sid)
{
	const struct http_request *r = http_req_request(rq);
	size_t n;
	const char *last;

	if (httpmsg_accept_fields_q(r->headers, r->n_headers, "text/event-stream") == 0) {
		respond_error(fh, rq, 406, RPC_SERVER_ERROR,
			      "Not Acceptable: the GET stream is text/event-stream", NULL);
		return;
	}
	if (!has_sid) {
		respond_error(fh, rq, 400, RPC_SERVER_ERROR,
			      "Bad Request: Mcp-Session-Id header is required (initialize first)",
			      NULL);
		return;
	}
	if (hs == NULL) {
		respond_error(fh, rq, 404, -32001, "Session not found", NULL);
		return;
	}
	peer_text(hs->port.peer, sizeof(hs->port.peer), http_req_request(rq));
	if (httpmsg_count(http_req_request(rq)->headers, http_req_request(rq)->n_headers,
			  "Last-Event-ID") > 1) {
		respond_error(fh, rq, 400, RPC_SERVER_ERROR,
			      "Bad Request: more than one Last-Event-ID", NULL);
		return;
	}
	last = http_req_header(rq, "Last-Event-ID", &n);
	if (last != NULL) {
		uint32_t num;
		unsigned long long seq;

		if (!parse_event_id(last, n, &num, &seq)) {
			respond_error(fh, rq, 400, RPC_SERVER_ERROR,
				      "Bad Request: Last-Event-ID is not one of this session's "
				      "event IDs",
				      NULL);
			return;
		}
		for (struct hx_stream *st = hs->streams; st != NULL; st = st->next) {
			if (st->num != num || st->is_json) {
				continue;
			}
			if (seq > st->seq) {
				respond_error(fh, rq, 400, RPC_SERVER_ERROR,
					      "Bad Request: Last-Event-ID names an event that was "
					      "never sent",
					      NULL);
				return;
			}
			if (st->done && seq == st->seq) {
				/*
				 * A finished stream the client has whole (its client may not count
				 * an error as the response): nothing is left.  204 is SSE's "do not
				 * reconnect"; an empty stream would be resumed again and again.
				 */
				respond_no_content(hs, rq);
				return;
			}
			if (st->rq != NULL) {
				/*
				 * Still connected as far as mcpmux knows: most likely a connection
				 * that died unnoticed (a client that slept: nothing tells a server
				 * of a half-open connection but a write that fails minutes later).
				 * The resume takes the stream over, and the old answer ends.  One
				 * that still queues bytes its client did not take is closed: the
				 * resume writes them again, and each resume of a stream whose
				 * client reads nothing would hold another copy of them.
				 */
				struct http_req *old = st->rq;

				stream_trim(st); /* what its socket took, as stream_detach() does */
				st->rq = NULL;
				st->finishing = false;
				http_req_set_data(old, NULL);
				if (http_stream_queued(old) > 0) {
					http_req_abort(old);
				} else {
					(void)http_stream_end(old);
				}
				diag_info("session %s: stream %u resumed on a new connection while "
					  "its old one was open: that one is ended",
					  hs->id, (unsigned)num);
			}
			/* The first event kept (none kept: every one it numbered went). */
			uint64_t first = st->head != NULL ? st->head->seq : st->seq + 1;

			if (first > seq + 1) {
				diag_warn("session %s: stream %u resumed after event %llu, but "
					  "events up to %llu are no longer kept",
					  hs->id, (unsigned)num, seq,
					  (unsigned long long)first - 1);
			}
			stream_attach(st, rq, (long long)seq);
			return;
		}
		if (was_request_stream(hs, num)) {
			/*
			 * A request's stream that ended and was let go (answered and no longer
			 * kept, cancelled, or answered with one JSON body): nothing of it can still
			 * come, and the session's GET stream is another stream.  204: the stream is
			 * over, do not reconnect (SSE), whether or not a GET stream is open.
			 */
			respond_no_content(hs, rq);
			return;
		}
		/*
		 * A number not given yet, a GET stream's (forgotten), or one too old to tell:
		 * the GET stream.  A client that lost its GET stream before it had an event of
		 * the next one still names the old one.
		 */
	}
	if (hs->get != NULL && hs->get->rq != NULL && !get_detach_gone(hs)) {
		respond_error(fh, rq, 409, RPC_SERVER_ERROR,
			      "Conflict: only one GET stream per session", NULL);
		return;
	}
	if (hs->get == NULL) {
		if ((hs->get = stream_new(hs, true)) == NULL) {
			respond_error(fh, rq, 503, RPC_SERVER_ERROR, "out of memory", NULL);
			return;
		}
		get_num_add(hs, hs->get->num);
	}
	stream_attach(hs->get, rq, -1);
}

static void
handle_delete(struct front_http *fh, struct http_req *rq, struct hx_session *hs, bool has_sid)
{
	struct hx_pending *pd;

	if (!has_sid) {
		respond_error(fh, rq, 400, RPC_SERVER_ERROR,
			      "Bad Request: Mcp-Session-Id header is required", NULL);
		return;
	}
	if (hs == NULL) {
		respond_error(fh, rq, 404, -32001, "Session not found", NULL);
		return;
	}
	if ((pd = calloc(1, sizeof(*pd))) == NULL) {
		respond_error(fh, rq, 503, RPC_SERVER_ERROR, "out of memory", NULL);
		return;
	}
	pd->kind = HX_DELETE;
	pd->hs = hs;
	pd->rq = rq;
	pd->next = hs->deletes;
	hs->deletes = pd;
	http_req_set_data(rq, pd);
	if (!hs->ending) {
		hs->ending = true;
		if (tlog_enabled) {
			static const char f[] = "\"method\":\"DELETE\"";

			tlog_event(hs->id, session_pid(hs->e->s), "end-requested", f,
				   sizeof(f) - 1);
		}
		session_set_end_reason(hs->e->s, "delete");
		hub_end(hs->e, -1, NULL, 0, NULL);
	}
}

static void
handle_options(struct front_http *fh, struct http_req *rq)
{
	struct hx_fields fs = { .n = 0 };

	(void)fh;
	fields_add(&fs, "Allow", "GET, POST, DELETE, OPTIONS");
	if (http_req_header(rq, "Origin", NULL) != NULL) {
		fields_add(&fs, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
		fields_add(&fs, "Access-Control-Allow-Headers",
			   "Content-Type, Accept, Authorization, Mcp-Session-Id, "
			   "MCP-Protocol-Version, Last-Event-ID");
		fields_add(&fs, "Access-Control-Max-Age", "600");
		fields_cors(&fs, rq);
	}
	(void)http_respond(rq, 204, fs.f, fs.n, NULL, 0);
}

/*
 * Host, Origin and the token: DNS rebinding and strangers (docs/http.md, "Checks").
 * false after answering.
 */
static bool
check_access(struct front_http *fh, struct http_req *rq)
{
	size_t n;
	const char *v;

	if (fh->loopback_only) {
		const struct http_request *r = http_req_request(rq);

		/* RFC 9112, 3.2.2: an absolute-form target's authority, not the Host, names it. */
		v = r->authority;
		n = r->authority_len;
		if (v == NULL) {
			v = http_req_header(rq, "Host", &n);
		}
		if (v == NULL || !httpmsg_host_is_loopback(v, n)) {
			respond_error(fh, rq, 403, RPC_SERVER_ERROR,
				      "Forbidden: Host is not a loopback name (DNS rebinding?)",
				      NULL);
			return false;
		}
	}
	v = http_req_header(rq, "Origin", &n);
	if (v != NULL && !httpmsg_origin_is_loopback(v, n)) {
		bool ok = false;

		for (size_t i = 0; i < fh->opt->n_allow_origin && !ok; i++) {
			ok = value_is(v, n, fh->opt->allow_origin[i]);
		}
		if (!ok) {
			/* Not echoed: the answer must not let that origin read it. */
			struct hx_fields fs = { .n = 0 };
			struct sbuf *b = &fh->tmp;

			fields_add(&fs, "Content-Type", "application/json");
			sbuf_reset(b);
			rpcout_error(b, NULL, 0, RPC_SERVER_ERROR,
				     "Forbidden: Origin not allowed (see --allow-origin)");
			(void)http_respond(rq, 403, fs.f, fs.n, b->buf, b->len);
			return false;
		}
	}
	/* A CORS preflight never carries credentials (Fetch): it is answered without them. */
	if (fh->token != NULL && http_req_request(rq)->method != HTTP_REQ_OPTIONS) {
		v = http_req_header(rq, "Authorization", &n);
		if (v == NULL || !httpmsg_bearer_ok(v, n, fh->token, fh->token_len)) {
			struct hx_fields fs = { .n = 0 };

			fields_add(&fs, "WWW-Authenticate", "Bearer realm=\"mcpmux\"");
			respond_error(fh, rq, 401, RPC_SERVER_ERROR,
				      v == NULL ? "Unauthorized: a bearer token is required"
						: "Unauthorized: wrong bearer token",
				      &fs);
			return false;
		}
	}
	return true;
}

static void
handle_mcp(struct front_http *fh, struct http_req *rq)
{
	const struct http_request *r = http_req_request(rq);
	struct hx_session *hs = NULL;
	size_t sid_len = 0, ver_len = 0;
	const char *sid, *ver;

	if (!check_access(fh, rq)) {
		return;
	}
	switch (r->method) {
	case HTTP_REQ_POST:
	case HTTP_REQ_GET:
	case HTTP_REQ_DELETE:
		break;
	case HTTP_REQ_OPTIONS:
		handle_options(fh, rq);
		return;
	default: {
		struct hx_fields fs = { .n = 0 };

		fields_add(&fs, "Allow", "GET, POST, DELETE, OPTIONS");
		respond_error(fh, rq, 405, RPC_SERVER_ERROR, "Method Not Allowed", &fs);
		return;
	}
	}
	if (httpmsg_count(r->headers, r->n_headers, "Mcp-Session-Id") > 1 ||
	    httpmsg_count(r->headers, r->n_headers, "MCP-Protocol-Version") > 1) {
		respond_error(fh, rq, 400, RPC_SERVER_ERROR,
			      "Bad Request: Mcp-Session-Id or MCP-Protocol-Version given twice",
			      NULL);
		return;
	}
	sid = http_req_header(rq, "Mcp-Session-Id", &sid_len);
	if (sid != NULL) {
		bool ok = sid_len >= 1 && sid_len <= SESSION_ID_MAX;

		for (size_t i = 0; ok && i < sid_len; i++) {
			ok = sid[i] > 0x20 && sid[i] < 0x7f;
		}
		if (!ok) {
			respond_error(fh, rq, 400, RPC_SERVER_ERROR,
				      "Bad Request: Mcp-Session-Id is not 1 to 128 visible "
				      "characters",
				      NULL);
			return;
		}
		hs = hxs_find(fh, sid, sid_len);
	}
	ver = http_req_header(rq, "MCP-Protocol-Version", &ver_len);
	if (ver != NULL && !version_supported(hs, ver, ver_len)) {
		char text[160];

		(void)snprintf(text, sizeof(text),
			       "Bad Request: unsupported MCP-Protocol-Version '%.*s' (supported: "
			       "2024-11-05 to 2025-11-25, and the session's own)",
			       (int)SYS_MIN(ver_len, 32), ver);
		respond_error(fh, rq, 400, RPC_SERVER_ERROR, text, NULL);
		return;
	}
	if (r->method == HTTP_REQ_POST) {
		handle_post(fh, rq, hs, sid != NULL);
		line_trim(fh);
	} else if (r->method == HTTP_REQ_GET) {
		handle_get(fh, rq, hs, sid != NULL);
	} else {
		handle_delete(fh, rq, hs, sid != NULL);
	}
}

/* ---- /metrics and /healthz ---- */

static void
metrics_write(struct front_http *fh, struct sbuf *b)
{
	const struct hub *h = fh->hub;
	struct session_stats t;
	struct http_stats hst;
	char lab[64];

	hub_totals(h, &t);
	http_server_stats(fh->srv, &hst);
	metrics_head(b, "mcpmux_sessions", "gauge", "Sessions running now (every door).");
	metrics_u64(b, "mcpmux_sessions", NULL, h->n_live);
	metrics_head(b, "mcpmux_http_sessions", "gauge", "Of them, HTTP sessions.");
	metrics_u64(b, "mcpmux_http_sessions", NULL, fh->n_sessions);
	metrics_head(b, "mcpmux_http_sessions_started_total", "counter",
		     "Of them, HTTP sessions started.");
	metrics_u64(b, "mcpmux_http_sessions_started_total", NULL, fh->n_http_sessions);
	metrics_head(b, "mcpmux_sessions_started_total", "counter", "Sessions started.");
	metrics_u64(b, "mcpmux_sessions_started_total", NULL, h->n_started);
	metrics_head(b, "mcpmux_sessions_refused_total", "counter",
		     "Sessions refused (over --max-sessions).");
	metrics_u64(b, "mcpmux_sessions_refused_total", NULL, h->n_refused);
	metrics_head(b, "mcpmux_sessions_ended_total", "counter",
		     "Sessions ended, by how far the teardown had to go.");
	for (int i = BACKEND_ESC_NONE; i <= BACKEND_ESC_ABANDONED; i++) {
		(void)snprintf(lab, sizeof(lab), "escalation=\"%s\"",
			       backend_escalation_name((enum backend_escalation)i));
		metrics_u64(b, "mcpmux_sessions_ended_total", lab, h->n_escalation[i]);
	}
	metrics_head(b, "mcpmux_backend_exits_total", "counter",
		     "Servers ended, by how their process ended.");
	for (int i = 0; i < HUB_EXIT_KINDS; i++) {
		(void)snprintf(lab, sizeof(lab), "how=\"%s\"",
			       hub_exit_kind_name((enum hub_exit_kind)i));
		metrics_u64(b, "mcpmux_backend_exits_total", lab, h->n_exit[i]);
	}
	metrics_head(b, "mcpmux_messages_total", "counter",
		     "JSON-RPC messages: in, client to server; out, server to client.");
	metrics_u64(b, "mcpmux_messages_total", "dir=\"in\"", t.msgs_in);
	metrics_u64(b, "mcpmux_messages_total", "dir=\"out\"", t.msgs_out);
	metrics_head(b, "mcpmux_bytes_total", "counter", "Bytes of those messages.");
	metrics_u64(b, "mcpmux_bytes_total", "dir=\"in\"", t.bytes_in);
	metrics_u64(b, "mcpmux_bytes_total", "dir=\"out\"", t.bytes_out);
	metrics_hist_write(b, "mcpmux_request_duration_seconds",
			   "Time from a client's request to its server's response.",
			   &metrics_latency);
	metrics_head(b, "mcpmux_http_connections", "gauge", "HTTP connections open now.");
	metrics_u64(b, "mcpmux_http_connections", NULL, hst.conns);
	metrics_head(b, "mcpmux_http_connections_total", "counter", "HTTP connections accepted.");
	metrics_u64(b, "mcpmux_http_connections_total", NULL, hst.accepted);
	metrics_head(b, "mcpmux_http_rejected_total", "counter",
		     "HTTP connections refused (too many, or out of descriptors).");
	metrics_u64(b, "mcpmux_http_rejected_total", NULL, hst.rejected);
	metrics_head(b, "mcpmux_http_requests_total", "counter", "HTTP requests handled.");
	metrics_u64(b, "mcpmux_http_requests_total", NULL, hst.requests);
	metrics_head(b, "mcpmux_http_errors_total", "counter",
		     "HTTP requests refused by the HTTP layer (malformed, too large, ...).");
	metrics_u64(b, "mcpmux_http_errors_total", NULL, hst.errors);
	metrics_head(b, "mcpmux_http_timeouts_total", "counter",
		     "HTTP connections closed by a timeout.");
	metrics_u64(b, "mcpmux_http_timeouts_total", NULL, hst.timeouts);
	metrics_head(b, "mcpmux_http_streams", "gauge", "HTTP exchanges open now (streams).");
	metrics_u64(b, "mcpmux_http_streams", NULL, hst.exchanges);
	metrics_head(b, "mcpmux_http_queued_bytes", "gauge",
		     "Bytes waiting to be written to HTTP clients.");
	metrics_u64(b, "mcpmux_http_queued_bytes", NULL, hst.queued);
	metrics_head(b, "mcpmux_uptime_seconds", "gauge", "Seconds since mcpmux started.");
	metrics_f64(b, "mcpmux_uptime_seconds", NULL, sys_mono() - h->started);
}

static void
handle_service(struct front_http *fh, struct http_req *rq, bool is_metrics)
{
	const struct http_request *r = http_req_request(rq);
	struct hx_fields fs = { .n = 0 };

	if (r->method != HTTP_REQ_GET && r->method != HTTP_REQ_HEAD) {
		fields_add(&fs, "Allow", "GET, HEAD");
		respond_error(fh, rq, 405, RPC_SERVER_ERROR, "Method Not Allowed", &fs);
		return;
	}
	if (!is_metrics) {
		/* For load balancers and watchdogs: no session state, no token. */
		bool up = !fh->shutting_down && !fh->hub->shutting_down;

		fields_add(&fs, "Content-Type", "text/plain; charset=utf-8");
		fields_add(&fs, "Cache-Control", "no-store");
		(void)http_respond(rq, up ? 200 : 503, fs.f, fs.n, up ? "ok\n" : "shutting down\n",
				   up ? 3 : 14);
		return;
	}
	if (!check_access(fh, rq)) {
		return;
	}
	struct sbuf b = { 0 };

	metrics_write(fh, &b);
	if (b.failed) {
		sbuf_release(&b);
		respond_error(fh, rq, 503, RPC_SERVER_ERROR, "out of memory", NULL);
		return;
	}
	fields_add(&fs, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	fields_add(&fs, "Cache-Control", "no-store");
	(void)http_respond(rq, 200, fs.f, fs.n, b.buf, b.len);
	sbuf_release(&b);
}

/* ---- the layer's callbacks ---- */

static bool
path_is(const struct http_request *r, const char *p, size_t len)
{
	return r->path_len == len && memcmp(r->path, p, len) == 0;
}

static void
hx_on_request(struct http_req *rq, void *ctx)
{
	struct front_http *fh = ctx;
	const struct http_request *r = http_req_request(rq);

	if (path_is(r, fh->path, fh->path_len)) {
		handle_mcp(fh, rq);
	} else if (fh->opt->metrics && path_is(r, "/metrics", 8)) {
		handle_service(fh, rq, true);
	} else if (fh->opt->metrics && path_is(r, "/healthz", 8)) {
		handle_service(fh, rq, false);
	} else {
		char text[128];

		(void)snprintf(text, sizeof(text), "Not Found: the MCP endpoint is %s", fh->path);
		respond_error(fh, rq, 404, RPC_SERVER_ERROR, text, NULL);
	}
}

static void
hx_on_writable(struct http_req *rq, void *ctx)
{
	enum hx_kind *k = http_req_data(rq);

	(void)ctx;
	if (k != NULL && *k == HX_STREAM) {
		struct hx_stream *st = (struct hx_stream *)(void *)k;
		struct hx_session *hs = st->hs;

		if (st->finishing) {
			stream_finish(st); /* its response is written: it ends (st may be freed) */
		}
		hxs_check_writable(hs);
	}
}

static void
pending_unlink(struct hx_pending **list, struct hx_pending **tail, struct hx_pending *pd)
{
	struct hx_pending *prev = NULL;

	for (struct hx_pending **pp = list; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp == pd) {
			*pp = pd->next;
			if (tail != NULL && *tail == pd) {
				*tail = prev;
			}
			return;
		}
	}
}

static void
hx_on_close(struct http_req *rq, void *ctx)
{
	enum hx_kind *k = http_req_data(rq);

	(void)ctx;
	if (k == NULL) {
		return;
	}
	switch (*k) {
	case HX_STREAM: {
		struct hx_stream *st = (struct hx_stream *)(void *)k;
		struct hx_session *hs = st->hs;

		stream_detach(st);
		hxs_check_writable(hs);
		break;
	}
	case HX_HELD: {
		struct hx_pending *pd = (struct hx_pending *)(void *)k;

		pending_unlink(&pd->hs->held, &pd->hs->held_tail, pd);
		free(pd);
		break;
	}
	case HX_DELETE: {
		struct hx_pending *pd = (struct hx_pending *)(void *)k;

		pending_unlink(&pd->hs->deletes, NULL, pd);
		free(pd);
		break;
	}
	case HX_SERVICE:
		break;
	}
}

/* ---- per-turn work and the sweep ---- */

static void
hx_on_work(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct front_http *fh = container_of(w, struct front_http, work_w);

	(void)revents;
	ev_idle_stop(loop, w);
	fh->work_queued = false;
	for (struct hx_session *hs = fh->sessions, *next; hs != NULL; hs = next) {
		next = hs->next;
		if (hs->gone) {
			hxs_free(hs);
			continue;
		}
		if (hs->end_soon && !hs->ending && hs->e != NULL) {
			hs->ending = true;
			session_set_end_reason(hs->e->s, "init-error");
			hub_end(hs->e, -1, NULL, 0, NULL);
		}
		hs->end_soon = false;
		while (hs->held != NULL && !hs->holding && !hs->gone) {
			struct hx_pending *pd = hs->held;
			struct http_req *rq = pd->rq;

			hs->held = pd->next;
			if (hs->held == NULL) {
				hs->held_tail = NULL;
			}
			free(pd);
			http_req_set_data(rq, NULL);
			/* Scanned again: the scanner has seen other bodies since. */
			if (post_scan(fh, rq)) {
				post_forward(fh, hs, rq, post_accepts(rq) == 0);
			}
			line_trim(fh);
		}
	}
}

/*
 * A request whose stream is forgotten has no client any more to take its answer: the
 * server is told, as a client that gives up tells it (notifications/cancelled), and the
 * session no longer counts it in flight, so that --idle-timeout can end a session whose
 * client vanished while a call ran (a call that never ends would keep it for ever).
 */
static void
cancel_abandoned(struct front_http *fh, struct hx_session *hs, const struct hx_stream *st)
{
	static const char head[] = "{\"jsonrpc\":\"2.0\",\"method\":\"" JSONRPC_CANCELLED
				   "\",\"params\":{\"requestId\":";
	static const char tail[] = ",\"reason\":\"mcpmux: the HTTP client did not come back for "
				   "the answer\"}}";
	struct sbuf b = { 0 };

	if (hs->e == NULL || hs->gone) {
		return;
	}
	sbuf_add(&b, head, sizeof(head) - 1);
	sbuf_add(&b, st->id, st->id_len);
	sbuf_add(&b, tail, sizeof(tail) - 1);
	if (b.failed || jsonrpc_scan(&fh->scan, b.buf, b.len) != JSONRPC_NOTIFICATION) {
		diag_error("session %s: out of memory: request %.*s stays in flight", hs->id,
			   (int)SYS_MIN(st->id_len, 200), st->id);
	} else {
		hub_from_client(hs->e, b.buf, b.len, &fh->scan);
	}
	sbuf_release(&b);
}

static void
hx_on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct front_http *fh = container_of(w, struct front_http, sweep_w);
	double now = sys_mono();
	double keep = fh->opt->idle_timeout_s > 0 ? fh->opt->idle_timeout_s : HX_DETACHED_S;
	bool more = false;

	(void)revents;
	for (struct hx_session *hs = fh->sessions; hs != NULL; hs = hs->next) {
		for (struct hx_stream *st = hs->streams, *next; st != NULL; st = next) {
			next = st->next;
			if (st->rq != NULL && st->flying != NULL && !hs->gone) {
				/* Written out since: no longer held beyond the replay window. */
				stream_trim(st);
				more = more || st->flying != NULL;
				continue;
			}
			if (st->rq != NULL || hs->gone) {
				continue;
			}
			if (st->done && now - st->since >= HX_LINGER_S) {
				stream_free(st);
				continue;
			}
			if (!st->done && now - st->since >= keep) {
				bool running = !st->answered && !st->is_get;

				if (st->unsent != NULL || running) {
					diag_warn(
						"session %s: HTTP stream %u not resumed for %g s: "
						"forgotten%s%s",
						hs->id, (unsigned)st->num, keep,
						st->unsent != NULL
							? ", with messages it had not delivered"
							: "",
						running ? "; its request is cancelled" : "");
					if (tlog_enabled) {
						/* The id whole: a record is valid JSON. */
						struct sbuf f = { 0 };

						sbuf_addf(&f, "\"stream\":%u,\"request\":",
							  (unsigned)st->num);
						if (st->id != NULL) {
							sbuf_add(&f, st->id, st->id_len);
						} else {
							sbuf_adds(&f, "null");
						}
						if (!f.failed) {
							tlog_event(hs->id, 0, "timeout", f.buf,
								   f.len);
						}
						sbuf_release(&f);
					}
				}
				bool was_get = st == hs->get;

				if (running) {
					cancel_abandoned(fh, hs, st);
				}
				stream_free(st);
				if (was_get) {
					/* What waited for it may hold a JSON-only client's answer.
					 */
					orphans_relieve(hs, false);
				}
				hxs_check_writable(hs);
				continue;
			}
			more = true;
		}
	}
	if (!more) {
		ev_timer_stop(loop, w);
	}
}

/* ---- the whole ---- */

/* White space around the token on its line: what an editor or `echo` leaves there. */
static bool
token_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/*
 * The token is the first line of the file, white space around it removed: the rest of the
 * file (a second line, a note of when it was made) is not read.  What stays must be
 * visible ASCII, as a bearer token is.
 */
static int
read_token(struct front_http *fh, const char *path)
{
	char buf[HX_TOKEN_MAX], chunk[512];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	size_t n = 0, space = 0; /* the token so far; white space seen after it, not kept */
	bool line_end = false, too_long = false;
	ssize_t got = 0;

	if (fd == -1) {
		return diag_error_errno("cannot read the token file '%s'", path);
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
		diag_warn("the token file '%s' can be read by others (chmod 600 it)", path);
	}
	while (!line_end && !too_long && (got = sys_read(fd, chunk, sizeof(chunk))) > 0) {
		for (ssize_t i = 0; i < got && !line_end && !too_long; i++) {
			if (chunk[i] == '\n') {
				line_end = true;
			} else if (token_space(chunk[i])) {
				space += n > 0; /* leading white space is dropped at once */
			} else if (n + space + 1 > sizeof(buf)) {
				too_long = true;
			} else {
				/* White space inside the token is kept, and refused below. */
				memset(buf + n, ' ', space);
				n += space;
				space = 0;
				buf[n++] = chunk[i];
			}
		}
	}
	if (!line_end && !too_long && got < 0) {
		int e = errno;

		sys_close(&fd);
		errno = e;
		return diag_error_errno("cannot read the token file '%s'", path);
	}
	sys_close(&fd);
	if (n == 0 || too_long) {
		return diag_error("the token file '%s' holds no token, or one over %d bytes (put "
				  "the token on its first line)",
				  path, HX_TOKEN_MAX);
	}
	for (size_t i = 0; i < n; i++) {
		if (buf[i] <= ' ' || buf[i] >= 0x7f) {
			return diag_error("the token in '%s' has a character that a bearer token "
					  "cannot hold (visible ASCII only, one line)",
					  path);
		}
	}
	fh->token = malloc(n);
	if (fh->token == NULL) {
		return diag_error("cannot start: out of memory");
	}
	memcpy(fh->token, buf, n);
	fh->token_len = n;
	return 0;
}

/*
 * A session may hold a GET stream and a request or two: room for all of them, but no
 * more than the descriptors the sessions' servers leave (CLI_SESSION_FDS each, and
 * CLI_FDS_SPARE for the rest): a flood of idle connections gets 503s, where it took the
 * descriptors that servers, the socket door and ctl need.  The 503s that linger take a
 * fifth of that room at most.  Said at start when the limit leaves fewer connections
 * than two a session.
 */
static void
hx_size_connections(struct front_http *fh, const struct mcpmux_options *o)
{
	size_t nofile = sys_nofile_limit(),
	       want = SYS_MAX((size_t)HX_CONNS_MIN, 2 * o->max_sessions);
	size_t room = 0;

	if (nofile > CLI_FDS_SPARE &&
	    o->max_sessions <= (nofile - CLI_FDS_SPARE) / CLI_SESSION_FDS) {
		room = nofile - CLI_FDS_SPARE - CLI_SESSION_FDS * o->max_sessions;
	}
	fh->lim.max_rejects = SYS_MIN((size_t)HTTP_REJECTS_DEF, room / 5);
	fh->lim.max_conns =
		SYS_MAX((size_t)HX_CONNS_FLOOR, SYS_MIN(want, room - fh->lim.max_rejects));
	if (fh->lim.max_conns < 2 * o->max_sessions) {
		diag_warn("a descriptor limit of %zu leaves room for %zu HTTP connections beside "
			  "--max-sessions %zu (two a session are wanted): raise it (ulimit -n), or "
			  "lower --max-sessions",
			  nofile, fh->lim.max_conns, o->max_sessions);
	}
}

struct front_http *
front_http_new(struct ev_loop *loop, struct hub *h, const struct mcpmux_options *o)
{
	struct front_http *fh = calloc(1, sizeof(*fh));

	if (fh == NULL) {
		(void)diag_error("cannot start: out of memory");
		return NULL;
	}
	fh->loop = loop;
	fh->hub = h;
	fh->opt = o;
	fh->path = o->http_path != NULL ? o->http_path : HX_PATH_DEFAULT;
	fh->path_len = strlen(fh->path);
	jsonrpc_init(&fh->scan);
	jsonrpc_init(&fh->oscan);
	fh->oscan.params_method = "notifications/progress";
	ev_idle_init(&fh->work_w, hx_on_work);
	ev_timer_init(&fh->sweep_w, hx_on_sweep, 1.0, 1.0);
	http_limits_init(&fh->lim);
	fh->lim.max_body = o->max_message;
	fh->lim.max_queue = o->max_queue;
	/*
	 * --stall-timeout 0 lets a slow server take its time; a client that takes nothing
	 * still loses its connection, or it would hold its bytes (and a shutdown) for ever.
	 */
	fh->lim.write_timeout = o->stall_timeout_s > 0 ? o->stall_timeout_s : HX_WRITE_TIMEOUT;
	hx_size_connections(fh, o);
	if (o->auth_token_file != NULL && read_token(fh, o->auth_token_file) == -1) {
		front_http_free(fh);
		return NULL;
	}
	fh->srv = http_server_new(loop, &fh->lim, &hx_handler, fh);
	if (fh->srv == NULL) {
		(void)diag_error("cannot start: out of memory");
		front_http_free(fh);
		return NULL;
	}
	return fh;
}

int
front_http_listen(struct front_http *fh, const int *fds, size_t n_fds)
{
	const struct mcpmux_options *o = fh->opt;
	struct sbuf urls = { 0 };

	for (size_t i = 0; i < o->n_http; i++) {
		if (strcmp(o->http[i], "systemd") == 0) {
			if (n_fds == 0) {
				return diag_error("--http systemd: no socket was passed (start "
						  "mcpmux from its socket unit, with LISTEN_FDS)");
			}
			for (size_t k = 0; k < n_fds; k++) {
				if (http_server_listen_fd(fh->srv, fds[k]) == -1) {
					return -1;
				}
			}
			n_fds = 0; /* taken once */
		} else if (http_server_listen(fh->srv, o->http[i]) == -1) {
			return -1;
		}
	}
	fh->loopback_only = http_server_is_loopback(fh->srv);
	if (!fh->loopback_only && fh->token == NULL) {
		return diag_error("--http listens beyond loopback: give --auth-token-file (anyone "
				  "who can reach the port could run the server's commands)") -
		       1;
	}
	for (size_t i = 0; i < http_server_n_listeners(fh->srv); i++) {
		char addr[128];
		int port = http_server_port_of(fh->srv, i, addr, sizeof(addr));

		if (port != 0) {
			sbuf_addf(&urls, "%sport %d of %s", i > 0 ? ", " : "", port, addr);
		} else {
			sbuf_addf(&urls, "%sa Unix socket", i > 0 ? ", " : "");
		}
	}
	if (!urls.failed && urls.len > 0) {
		diag_warn("serving MCP over HTTP at %s on %.*s", fh->path, (int)urls.len, urls.buf);
	}
	sbuf_release(&urls);
	if (o->idle_timeout_s <= 0 && o->idle_suspend_s <= 0) {
		diag_warn("HTTP sessions that are never deleted keep their servers until mcpmux "
			  "exits (give --idle-timeout S to end idle ones)");
	}
	return 0;
}

static void
hx_on_drain(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct front_http *fh = container_of(w, struct front_http, drain_w);

	(void)loop;
	(void)revents;
	if (!hub_is_empty(fh->hub)) {
		return;
	}
	double now = sys_mono();

	if (fh->drain_since == 0) {
		fh->drain_since = now;
	}
	if (!front_http_drained(fh)) {
		/* A client that reads, but slowly, would hold the exit as long as it likes. */
		if (now - fh->drain_since < HUB_DRAIN_S) {
			return;
		}
		struct http_stats st;

		http_server_stats(fh->srv, &st);
		diag_warn("HTTP clients took not all of their last answers within %g s: %zu bytes "
			  "are dropped",
			  HUB_DRAIN_S, st.queued);
	}
	ev_timer_stop(fh->loop, w);
	if (fh->on_drained != NULL) {
		fh->on_drained(fh->drained_ctx);
	}
}

void
front_http_shutdown(struct front_http *fh, void (*on_drained)(void *ctx), void *ctx)
{
	if (fh->shutting_down) {
		return;
	}
	fh->shutting_down = true;
	fh->on_drained = on_drained;
	fh->drained_ctx = ctx;
	http_server_close_listeners(fh->srv);
	/* Polled: the layer has no event for "everything written".  Bounded: HUB_DRAIN_S once
	 * the sessions have ended. */
	ev_timer_init(&fh->drain_w, hx_on_drain, 0.02, 0.02);
	ev_timer_start(fh->loop, &fh->drain_w);
}

bool
front_http_drained(const struct front_http *fh)
{
	struct http_stats st;

	http_server_stats(fh->srv, &st);
	return st.queued == 0;
}

void
front_http_free(struct front_http *fh)
{
	if (fh == NULL) {
		return;
	}
	ev_idle_stop(fh->loop, &fh->work_w);
	ev_timer_stop(fh->loop, &fh->sweep_w);
	if (fh->shutting_down) {
		ev_timer_stop(fh->loop, &fh->drain_w);
	}
	/* Sessions first: the server's free calls on_close for what is still open. */
	for (struct hx_session *hs = fh->sessions; hs != NULL; hs = hs->next) {
		if (hs->e != NULL) {
			hs->e->port_data = NULL;
			hs->e->owner = NULL; /* the loop is over: the hub is released next */
			hs->e = NULL;
		}
		hxs_let_go(hs);
	}
	http_server_free(fh->srv);
	while (fh->sessions != NULL) {
		hxs_free(fh->sessions);
	}
	jsonrpc_release(&fh->scan);
	jsonrpc_release(&fh->oscan);
	sbuf_release(&fh->tmp);
	free(fh->spare);
	free(fh->line);
	free(fh->token);
	free(fh);
}
