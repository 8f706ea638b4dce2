/*
 * rpcout: what mcpmux itself writes: JSON-RPC error responses, results, events, and the
 * JSON string escaping they need.  Pure: formats into memory, does no I/O.
 *
 * struct sbuf is a growable byte string.  Appends never fail visibly: on allocation
 * failure the buffer is marked failed and later appends do nothing; check sbuf.failed
 * once at the end.  sbuf_release() frees; sbuf_reset() empties but keeps (up to
 * SBUF_KEEP bytes of) memory for reuse.
 */
#ifndef MCPMUX_RPCOUT_H
#define MCPMUX_RPCOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>

#define SBUF_KEEP ((size_t)16 << 10)

struct sbuf {
	char *buf;
	size_t len;
	size_t cap;
	bool failed;
};

void sbuf_reset(struct sbuf *b);
/* Empty b, keeping up to keep bytes of its memory (a buffer that is filled again and again). */
void sbuf_reset_keep(struct sbuf *b, size_t keep);
/* b = p in exactly its size (failed, and empty, when there is no memory for it). */
void sbuf_set_exact(struct sbuf *b, const char *p, size_t len);
void sbuf_release(struct sbuf *b);
/* Room for more bytes (and a NUL); false if the buffer failed. */
bool sbuf_grow(struct sbuf *b, size_t more);

/* Inline: records are made of many short appends, most of them literals. */
static inline void
sbuf_add(struct sbuf *b, const char *p, size_t len)
{
	if ((!b->failed && b->len + len < b->cap) || sbuf_grow(b, len)) {
		memcpy(b->buf + b->len, p, len);
		b->len += len;
		b->buf[b->len] = '\0';
	}
}

static inline void
sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Decimal digits of v, at least `width` of them (zero-padded); no printf. */
void sbuf_add_uint(struct sbuf *b, unsigned long long v, int width);
/* v with three decimals, as "%.3f" writes it (within a rounding of the last digit). */
void sbuf_add_milli(struct sbuf *b, double v);
/* Append p as a JSON string (quoted, escaped; invalid UTF-8 becomes U+FFFD). */
void sbuf_add_json_string(struct sbuf *b, const char *p, size_t len);

/*
 * Escape p as a JSON string into out, which must hold 6 * len + 2 bytes.
 * Returns the bytes written.
 */
size_t rpcout_escape_into(char *out, const char *p, size_t len);

/*
 * Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not valid by RFC 3629
 * (cut short, overlong, a UTF-16 surrogate, past U+10FFFF).  len >= 1.
 */
size_t rpcout_utf8_len(const unsigned char *p, size_t len);
/*
 * The bytes at the end of p[0..len) that begin a UTF-8 character it does not finish
 * (0..3): cutting there leaves no character in two.
 */
size_t rpcout_utf8_tail(const char *p, size_t len);

/* Standard JSON-RPC error codes that mcpmux produces. */
#define RPC_PARSE_ERROR	    (-32700)
#define RPC_INVALID_REQUEST (-32600)
#define RPC_SERVER_ERROR    (-32000)

/*
 * {"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":"MSG"}}
 * id is JSON text (e.g. "\"abc\"" or "7"); NULL means null.  No "\n".
 */
void rpcout_error(struct sbuf *b, const char *id, size_t id_len, int code, const char *msg);
struct jsonrpc_scanner;

#define RPCOUT_NOT_A_MESSAGE "Invalid Request: not a JSON-RPC 2.0 message"
/*
 * "out of memory": the reason of a message refused for want of memory
 * (session_from_client()), one object for all, so that it is told by its address.
 */
extern const char rpcout_no_memory[];
#define RPCOUT_NO_MEMORY rpcout_no_memory

/*
 * The same error for each request of the message scan describes, into b: for one request,
 * rpcout_error() with its id; for a batch, one array of them in the batch's order (none for
 * its notifications and answers, as JSON-RPC 2.0 answers a batch), with a -32600
 * RPCOUT_NOT_A_MESSAGE in its place for each element that is not a JSON-RPC message (1,
 * "a", {}), by its id if it has one, null otherwise: those among the first
 * JSONRPC_MAX_ITEMS, which are described.  skip, if not NULL, leaves out the requests for
 * which it returns true.  Returns how many were written: with 0, b is as it was.
 */
size_t rpcout_error_each(struct sbuf *b, const struct jsonrpc_scanner *scan, int code,
			 const char *msg, bool (*skip)(void *ctx, const char *id, size_t id_len),
			 void *ctx);
#define RPCOUT_LOST_ANSWER "out of memory: the server's answer was lost"

/*
 * A server's answer (line: an object with an id and a "result" or an "error") that there
 * is no memory to keep for its client: the -32000 error RPCOUT_LOST_ANSWER that goes in
 * its place, so that its request does not wait for ever.  Built without allocating: three
 * pieces into iov, the id the answer's own text.  Their count, or 0 when line is no
 * answer with an id (nobody waits for it).
 */
int rpcout_lost_answer(struct iovec *iov, const char *line, size_t len);

/* Room for a few dozen errors of rpcout_lost_answers(): a buffer on the stack. */
#define RPCOUT_LOST_BUF 4096

/*
 * The same for any line: called again and again (*pos 0 the first time) until it returns
 * 0, each time one line's pieces into iov[3].  For an object, rpcout_lost_answer().  For a
 * batch (the answers to a client's batch, whose ids the session no longer waits for), one
 * array with an error for each of its answers with an id, in their order, the next ones
 * from *pos; built in buf[cap] (one piece) without allocating: answers whose errors do not
 * all fit in buf take more than one array, one whose error alone does not fit an array of
 * its own in three pieces.
 */
int rpcout_lost_answers(struct iovec *iov, char *buf, size_t cap, const char *line, size_t len,
			size_t *pos);

/*
 * A message of the client over --max-message, which mcpmux does not forward, and what it
 * says in its place: one decision for wrap, connect and serve.  Or (no_memory) one within
 * the bound that the framer had no memory to hold: said to be out of memory, not too large.
 */
struct rpcout_big {
	bool answer;	   /* the client's answer to a request of the server (id: the server's) */
	bool notification; /* a method without an id */
	const char *id;	   /* JSON text, NULL if none was seen */
	size_t id_len;
	const char *id_head; /* id NULL: the first bytes of one too long to be kept, or NULL */
	size_t id_head_len;
	size_t total;	/* its bytes: of the envelope around it when enveloped */
	bool enveloped; /* total counts serve's envelope too */
	size_t limit;	/* --max-message */
	bool no_memory; /* within the bound: the framer had no memory to hold it */
	bool unended;	/* in a batch over the bound not yet read to its end: total is the
			 * limit, which the batch is over */
};

struct jsonrpc_idscan;
/* m's id (and id_head) as the scan sc read it: jsonrpc_idscan_id(). */
void rpcout_big_scanned_id(struct rpcout_big *m, const struct jsonrpc_idscan *sc);

/*
 * The error a server gets in place of the client's answer m (m->id: the server's, not NULL)
 * to one of its requests: too large (over m->limit), or out of memory (m->no_memory).
 */
void rpcout_answer_too_large(struct sbuf *b, const struct rpcout_big *m);

enum rpcout_oversize {
	RPCOUT_OVERSIZE_ANSWER,	      /* warned (RPCOUT_BIG_ANSWER); the server gets
				       * rpcout_answer_too_large() in its place (if id != NULL),
				       * the client nothing */
	RPCOUT_OVERSIZE_NOTIFICATION, /* warned (RPCOUT_BIG_NOTIFICATION); dropped */
	RPCOUT_OVERSIZE_REQUEST,      /* the client gets an error (RPCOUT_BIG_CODE(m)) with the
				       * id: Invalid Request, or out of memory */
};

/* The code of a request's error: -32600, or -32000 when out of memory. */
#define RPCOUT_BIG_CODE(m) ((m)->no_memory ? RPC_SERVER_ERROR : RPC_INVALID_REQUEST)

/*
 * What becomes of m; for a request, the error's message into text[len] (cut to fit,
 * NUL-terminated).
 */
enum rpcout_oversize rpcout_oversize(const struct rpcout_big *m, char *text, size_t len);

/*
 * The requests of a batch of the client's over --max-message, as it passes (wrap, connect,
 * serve): each is answered by its id in one array of errors, as long as that array is no
 * longer than --max-message (RPCOUT_BIGREQS_FLOOR at least): each error, of ~150 bytes
 * for a request of ~40, is counted as its request ends (its fixed part at its widest and
 * its id's length), and past that the batch has too many: its ids are let go and one
 * error with id null answers them all (docs/decisions.md).  So the array is never longer
 * than the bound, and the peak for such a batch is a small multiple of it (measured,
 * release build: docs/reliability.md).  ids: each id's length (a byte, 0: id null, or
 * one too long to be kept) then its text; once over, none.
 */
#define RPCOUT_BIGREQS_FLOOR ((size_t)64 << 10)
struct rpcout_bigreqs {
	struct sbuf ids;
	size_t n;	   /* requests kept */
	size_t cap;	   /* the array's bound: --max-message, RPCOUT_BIGREQS_FLOOR at least */
	size_t error_len;  /* an error's bytes but its id's (its ',' too), at their most */
	size_t bytes;	   /* the array's bytes so far, at their most */
	bool over;	   /* its array would be longer than cap: one error with id null
			    * answers them all */
	size_t no_message; /* elements that are no JSON-RPC message (1, {"foo":2}) */
};

/* 1,024 + limit / 35: a batch within limit records its first 1,024 elements, then those of
 * 35 bytes or more. */
size_t rpcout_big_bound(size_t limit);
/* A new batch's (the memory of the last one's ids kept, up to SBUF_KEEP bytes). */
void rpcout_bigreqs_begin(struct rpcout_bigreqs *r, size_t limit);
/* A request of it as it ends: id (JSON text, NULL: null or too long) its id. */
void rpcout_bigreqs_add(struct rpcout_bigreqs *r, const char *id, size_t id_len);
/*
 * An element of it that is no message (1, {"foo":2}: begun, with no "id", "method",
 * "result" or "error"), as it ends: all of them get one error with id null.
 */
void rpcout_bigreqs_no_message(struct rpcout_bigreqs *r);

enum rpcout_bigreqs_end {
	RPCOUT_BIGREQS_ANSWERED, /* b holds one array of their errors, or nothing if none */
	RPCOUT_BIGREQS_TOO_MANY, /* over: b as it was, one error with id null answers them */
	RPCOUT_BIGREQS_NO_IDS,	 /* no memory to keep their ids: the same */
	RPCOUT_BIGREQS_NO_ARRAY, /* no memory for the array: the same */
};

/*
 * The batch's end: into b (emptied first), one array with big's error (rpcout_oversize()
 * of a request, big->answer and big->notification aside) for each of its requests, with
 * its id, in their order, then, if it had elements that are no message, one more with id
 * null for them all (as serve's).
 */
enum rpcout_bigreqs_end rpcout_bigreqs_errors(struct sbuf *b, const struct rpcout_bigreqs *r,
					      const struct rpcout_big *big);
/*
 * The same array appended to what b holds (serve's envelope around it: the array is not
 * copied once more); b as it was when there is none, emptied on NO_ARRAY (sbuf_reset():
 * failed is cleared, and memory over SBUF_KEEP given back).
 */
enum rpcout_bigreqs_end rpcout_bigreqs_append(struct sbuf *b, const struct rpcout_bigreqs *r,
					      const struct rpcout_big *big);

/*
 * rpcout_bigreqs_errors(), and when it does not answer them (TOO_MANY, NO_IDS, NO_ARRAY)
 * its diagnostic on stderr: true when b holds their array (or nothing), false when they
 * are to be answered with one error with id null.
 */
bool rpcout_bigreqs_answer(struct sbuf *b, const struct rpcout_bigreqs *r,
			   const struct rpcout_big *big);

/* The diagnostics of TOO_MANY, NO_IDS and NO_ARRAY, as formats: TOO_MANY takes the cap. */
#define RPCOUT_BIGREQS_TOO_MANY_TEXT                                                       \
	"a batch of the client's over --max-message has too many requests to be answered " \
	"each: their errors would be longer than --max-message (%zu bytes); one error "    \
	"with id null answers them"
#define RPCOUT_BIGREQS_NO_IDS_TEXT                                                           \
	"out of memory: the ids of a batch of the client's over --max-message could not be " \
	"kept: one error with id null answers its requests"
#define RPCOUT_BIGREQS_NO_ARRAY_TEXT                                                       \
	"out of memory: the requests of a batch of the client's over --max-message could " \
	"not each be answered: one error with id null answers them"
/* Their array built, but the client's queue had no memory for it (wrap, connect). */
#define RPCOUT_BIGREQS_NOT_QUEUED_TEXT                                                    \
	"out of memory: the array of errors for the requests of a batch of the client's " \
	"over --max-message could not be queued: one error with id null answers them"
/*
 * Their array written in part (the client's pipe took only its head), and the client's
 * queue had no memory for its rest: half a line is out, which nothing may follow, so the
 * client's output is let go as gone (conn_send()) and no error with id null can go.
 */
#define RPCOUT_BIGREQS_CUT_TEXT                                                           \
	"out of memory: the array of errors for the requests of a batch of the client's " \
	"over --max-message was written only in part, its rest could not be queued: the " \
	"client's output ends there, and they are left unanswered"
/* Nor for that one error with id null. */
#define RPCOUT_BIGREQS_UNANSWERED_TEXT                                                       \
	"out of memory: the error with id null for the requests of a batch of the client's " \
	"over --max-message was lost: they are left unanswered"

/*
 * A line of a server's (sender: "the server's", "serve's"), total bytes, that was not held
 * as it came in: the error that goes in place of an answer in it, into text[len].  Over
 * limit + envelope it is too large (the limit, --max-message, is said); within them the
 * framer had no memory to hold it, and true: out of memory.
 */
bool rpcout_dropped(char *text, size_t len, const char *sender, size_t total, size_t limit,
		    size_t envelope);

/*
 * The warnings, as formats of their own (diag's rate limit goes by format): an answer's
 * takes RPCOUT_BIG_ARGS_ID(m) then RPCOUT_BIG_ARGS_SIZE(m), a notification's the latter.
 */
#define RPCOUT_BIG_ANSWER                                                 \
	"the client's answer %s to a request of the server is %s (%s%zu " \
	"bytes): the server gets an error in its place"
#define RPCOUT_BIG_STRAY                                                                   \
	"the client's answer %s is %s (%s%zu bytes) and answers no request of the server " \
	"in flight: dropped"
#define RPCOUT_BIG_NOTIFICATION "a notification of the client %s (%s%zu bytes) was dropped"

/* Room for rpcout_big_id(): RPCOUT_BIG_ID_SHOWN bytes of an id, "..." and a NUL. */
#define RPCOUT_BIG_ID_SHOWN 100
#define RPCOUT_BIG_ID_MAX   (RPCOUT_BIG_ID_SHOWN + 4)
/*
 * m's id as stderr says it, into buf[len] (RPCOUT_BIG_ID_MAX): its text, its first bytes
 * and "..." when longer than RPCOUT_BIG_ID_SHOWN bytes or too long to be kept (id_head),
 * "null" when it has none (null, none at all, or one of no use).
 */
const char *rpcout_big_id(const struct rpcout_big *m, char *buf, size_t len);
#define RPCOUT_BIG_ARGS_ID(m) rpcout_big_id((m), (char[RPCOUT_BIG_ID_MAX]){ 0 }, RPCOUT_BIG_ID_MAX)
#define RPCOUT_BIG_OF(m) \
	((m)->enveloped ? "an envelope of " : (m)->unended ? "a batch of more than " : "")
#define RPCOUT_BIG_ARGS_SIZE(m)                                                      \
	(m)->no_memory ? "that mcpmux had no memory to hold" : "over --max-message", \
		RPCOUT_BIG_OF(m), (m)->total

/* The "exit" value of a wait status: {"code":N} or {"signal":"SIGKILL"}; null if < 0. */
void rpcout_exit(struct sbuf *b, int wstatus);
/* A signal's name without a number: "SIGTERM"; "SIG<n>" for others. */
const char *rpcout_signame(int sig, char *buf, size_t len);

#endif
