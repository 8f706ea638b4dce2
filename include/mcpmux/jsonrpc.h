/*
 * jsonrpc: message inspection with yajl's callbacks.
 *
 * jsonrpc_scan() validates one whole line and learns what routing needs, through yajl's
 * callbacks, without building a tree: the kind of message, its id (as canonical JSON
 * text, so that it can be written back verbatim), its method, and for a batch the same
 * for each element.  It also picks up the few members of `params` that mcpmux itself acts
 * on (graceMs, session, reason), of every single message or only of one method
 * (params_method), and the requestId of notifications/cancelled (of each such element of
 * a batch too).
 *
 * The callbacks are fed by jsonsimd (simdjson's validation) when it is sure to give
 * yajl's events, and by one yajl_parse() call otherwise: the verdict and every result
 * are the same either way (fuzz_jsonrpc compares the two).
 *
 * A scanner is reusable: results stay valid until the next scan, jsonrpc_release(), or
 * the idle trim (jsonrpc_trim(), from a loop's idle timer: never inside a scan's caller).
 * All strings in a result point into the scanner's arena and are not NUL-terminated.
 */
#ifndef MCPMUX_JSONRPC_H
#define MCPMUX_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <yajl/yajl_parse.h>

struct jsonsimd; /* the fast path (jsonsimd.h) */

#define JSONRPC_MAX_DEPTH 512 /* deeper JSON is refused like invalid JSON */
/* Batch elements all described; past them, requests, answers and cancellations. */
#define JSONRPC_MAX_ITEMS 1024

enum jsonrpc_kind {
	JSONRPC_INVALID_JSON,	 /* not JSON (or too deep): -32700 */
	JSONRPC_INVALID_REQUEST, /* JSON, but not a JSON-RPC message: -32600 */
	JSONRPC_REQUEST,
	JSONRPC_NOTIFICATION,
	JSONRPC_RESPONSE,
	JSONRPC_ERROR,
	JSONRPC_BATCH,
};

/* A slice of the scanner's arena. */
struct jsonrpc_str {
	uint32_t off;
	uint32_t len;
};

struct jsonrpc_item {
	enum jsonrpc_kind kind;
	bool has_id;	       /* id present and of a valid type (string, number, null) */
	struct jsonrpc_str id; /* canonical JSON text: "abc" (quoted, escaped), 42, null */
	bool has_method;
	struct jsonrpc_str method; /* the method string, unescaped */
	/* a batch element's params.requestId (read for notifications/cancelled, and for an
	 * element whose method comes after its params); a single message's is in params */
	bool has_request_id;
	struct jsonrpc_str request_id; /* canonical JSON text, like an id */
	/* internal: which members were seen */
	unsigned seen;
	bool bad;
};

#define JSONRPC_CANCELLED "notifications/cancelled"

struct jsonrpc_params {
	bool has_request_id;	       /* notifications/cancelled: the id it cancels */
	struct jsonrpc_str request_id; /* canonical JSON text, like an id */
	bool has_grace_ms;
	double grace_ms;
	struct jsonrpc_str grace_ms_text; /* its JSON text, as written */
	bool has_session;
	struct jsonrpc_str session;
	bool has_reason;
	struct jsonrpc_str reason;
};

struct jsonrpc_scanner {
	yajl_handle h;		    /* reused across valid lines; re-created after an error */
	yajl_callbacks cb;	    /* the handle's; scalars off below the levels read */
	enum jsonrpc_kind kind;	    /* result: the message's kind (BATCH for an array) */
	struct jsonrpc_item one;    /* result: the message, when not a batch */
	struct jsonrpc_item *items; /* result: batch elements (jsonrpc_items()) */
	size_t n_items;
	size_t items_cap;
	size_t n_elements;	      /* result: all batch elements, described or not */
	struct jsonrpc_params params; /* result: for a single request/notification */
	const char *params_method;    /* read params only for this method (NULL: for any) */
	bool yajl_only;		      /* never the simdjson path (tests compare the two) */
	struct jsonsimd *simd;	      /* the fast path, made at the first scan */
	bool big;		      /* holds memory grown for a long line (on a list) */
	struct jsonrpc_scanner *next_big;
	char *arena;
	size_t arena_len;
	size_t arena_cap;
	const char *error;  /* result: why a line was invalid (static text) */
	bool top_container; /* result: the line is a JSON object or array */
	bool by_simd;	    /* result: judged on the simdjson path (for the tests) */

	/* parse state */
	bool fast; /* the events come from jsonsimd, not from s->h */
	int depth;
	size_t end;   /* offset just past the top-level value */
	int n_values; /* top-level values on this line */
	bool is_batch;
	struct jsonrpc_item *cur; /* the message being filled, NULL between elements */
	int key;		  /* message-level member the next value belongs to */
	bool in_params;		  /* inside a params object of a single message */
	int mute_depth;		  /* callbacks for scalars and keys off from here (0: on) */
	int params_key;
	bool arena_failed;
};

void jsonrpc_init(struct jsonrpc_scanner *s);
void jsonrpc_release(struct jsonrpc_scanner *s);

/* Scan one text (a line without its "\n", an HTTP body).  Returns the kind (also in s->kind). */
enum jsonrpc_kind jsonrpc_scan(struct jsonrpc_scanner *s, const char *line, size_t len);
/* The same for a line as the framer hands it out, which holds no "\n" (not looked for). */
enum jsonrpc_kind jsonrpc_scan_line(struct jsonrpc_scanner *s, const char *line, size_t len);
/*
 * The same for text known to pass jsonrpc_text_ok() (a value within a line that passed
 * it whole, such as an envelope's message): that pass is not made twice.
 */
enum jsonrpc_kind jsonrpc_scan_checked(struct jsonrpc_scanner *s, const char *line, size_t len);

/*
 * Give back the memory that every scanner grew for long lines (over 16 KiB): simdjson's
 * buffers, yajl's handle (its buffer for a decoded string), an arena over 64 KiB (a long
 * id, method or string of params) and the items of a long batch.  Called once mcpmux has
 * been idle (a scan sets sys_big_alloc when they grow), with no scan's results still to
 * be read: those of the last scan of each such scanner are forgotten.  The next scan
 * makes them again, small.
 */
void jsonrpc_trim(void);

/*
 * Could these bytes be JSON text, as far as yajl does not check: no control character
 * but tab and CR, and strictly valid UTF-8.
 */
bool jsonrpc_text_ok(const char *text, size_t len);

/* The string a slice names (not NUL-terminated). */
static inline const char *
jsonrpc_str(const struct jsonrpc_scanner *s, struct jsonrpc_str str)
{
	return s->arena != NULL ? s->arena + str.off : "";
}

/*
 * Does the message's method equal `name`?  Inline: with a literal name the length is known
 * at compile time, and most methods differ from it in length.
 */
static inline bool
jsonrpc_method_is(const struct jsonrpc_scanner *s, const struct jsonrpc_item *it, const char *name)
{
	size_t n = strlen(name);

	return it->has_method && it->method.len == n &&
	       memcmp(jsonrpc_str(s, it->method), name, n) == 0;
}

/*
 * The characters the JSON string p (len bytes with its quotes) stands for, written to out
 * (room for len bytes: never more than the text): its escapes decoded ("\u0000" a NUL), a
 * UTF-16 pair as its code point, and a surrogate escape that is not one of a pair as
 * U+FFFD when lone_as_fffd (else in its 3-byte form).  Returns the length, or SIZE_MAX
 * when p is not a JSON string.
 */
size_t jsonrpc_string_text(const char *p, size_t len, char *out, bool lone_as_fffd);

/*
 * The key under which an id is matched: ids are matched by JSON value, the way clients
 * match them.  `id` is an id's JSON text (a string, with any escapes, or a number, or
 * null).  Numbers of equal value get equal keys (1, 1.0, 1e0, 10e-1; -0 and 0), a string
 * is compared by the characters its escapes stand for ("a" and "\u0061"), and a string
 * never equals a number ("1" and 1 differ).  Exponents beyond 10^15 in magnitude are
 * taken as equal.  Writes at most JSONRPC_KEY_MAX(len) bytes to out and returns the
 * key's length, or 0 when id is not a JSON string, number or null.
 */
#define JSONRPC_KEY_MAX(len) ((len) + 32)
size_t jsonrpc_id_key(const char *id, size_t len, char *out);

/*
 * The items of the message s describes: a batch's elements (the first JSONRPC_MAX_ITEMS of
 * them, then only its requests, answers and cancellations, in order: every element with
 * an id to route, answer or forget), or its one item; how many in *n.
 */
static inline const struct jsonrpc_item *
jsonrpc_items(const struct jsonrpc_scanner *s, size_t *n)
{
	*n = s->kind == JSONRPC_BATCH ? s->n_items : 1;
	return s->kind == JSONRPC_BATCH ? s->items : &s->one;
}

/* Does s's message hold a request (itself, or one of a batch's described elements)? */
static inline bool
jsonrpc_has_request(const struct jsonrpc_scanner *s)
{
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(s, &n);

	for (size_t i = 0; i < n; i++) {
		if (items[i].kind == JSONRPC_REQUEST) {
			return true;
		}
	}
	return false;
}

/*
 * Is s's message answers only (to requests of the server): one, or a batch of nothing
 * else?  A batch with elements past JSONRPC_MAX_ITEMS that are not described is not.
 */
static inline bool
jsonrpc_answers_only(const struct jsonrpc_scanner *s)
{
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(s, &n);

	if (n == 0 || (s->kind == JSONRPC_BATCH && s->n_items != s->n_elements)) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (items[i].kind != JSONRPC_RESPONSE && items[i].kind != JSONRPC_ERROR) {
			return false;
		}
	}
	return true;
}

/*
 * The id (JSON text, its length in *len) of the request that `it` cancels, when it is a
 * notifications/cancelled that names one: s's one message, or an element of its batch;
 * NULL otherwise.
 */
static inline const char *
jsonrpc_cancels(const struct jsonrpc_scanner *s, const struct jsonrpc_item *it, size_t *len)
{
	bool one = it == &s->one;
	struct jsonrpc_str id = one ? s->params.request_id : it->request_id;

	if (it->kind != JSONRPC_NOTIFICATION ||
	    !(one ? s->params.has_request_id : it->has_request_id) ||
	    !jsonrpc_method_is(s, it, JSONRPC_CANCELLED)) {
		return NULL;
	}
	*len = id.len;
	return jsonrpc_str(s, id);
}

struct sbuf;

/*
 * A batch that holds answers (to requests of the server) besides other messages, for a
 * server that must not get some of them (they answer requests of one that is gone): its
 * other messages, the batch less every answer, into *out (empty when none is left),
 * scanned into *out_scan (which may be s).  keep, when not NULL, says which answers are
 * to go on anyway (by the id's JSON text): those into *taken, a batch of them (empty when
 * none), not scanned.  The others are dropped: how many into *dropped.  When s is no
 * batch or holds no answer, *out (and *taken) are left empty and *dropped is 0.  false
 * when they could not be made, or an element could not be scanned (memory: it may be
 * an answer).
 */
bool jsonrpc_without_answers(const struct jsonrpc_scanner *s, const char *line, size_t len,
			     bool (*keep)(void *ctx, const char *id, size_t id_len), void *ctx,
			     struct sbuf *out, struct jsonrpc_scanner *out_scan, struct sbuf *taken,
			     size_t *dropped);
/*
 * The same, but the answers keep() says go on stay in *out in their places (the batch's
 * order kept: *out may hold answers alone); those it does not into *gone (when not NULL),
 * a batch of them (empty when none), not scanned.
 */
bool jsonrpc_drop_answers(const struct jsonrpc_scanner *s, const char *line, size_t len,
			  bool (*keep)(void *ctx, const char *id, size_t id_len), void *ctx,
			  struct sbuf *out, struct jsonrpc_scanner *out_scan, struct sbuf *gone,
			  size_t *dropped);

/*
 * The id of the answer a text holds that the scan refused (invalid UTF-8, a NUL, nested
 * too deeply, ...), so that the request it answers can be answered all the same: found
 * by a structural pass (jsonspan's) that trusts nothing else of the text.  The text must
 * be an object whose members are whole up to its closing brace (what follows it is not
 * read), with a "result" or an "error" and no "method" among them (keys compared by the
 * characters their escapes stand for), and an "id" (the last, as the scan takes it) that
 * is a valid JSON string or number.  Its JSON text, in the text, and its length in
 * *id_len; NULL when there is none.  Pure: no allocation, no state.
 */
const char *jsonrpc_answer_id(const char *text, size_t len, size_t *id_len);

/* The name used for a kind in the traffic log: "request", "response", ... */
const char *jsonrpc_kind_name(enum jsonrpc_kind kind);

/*
 * idscan: find the top-level "id" of a JSON object seen only in part, fed in pieces
 * (an over-long message whose body is skipped without being buffered), and whether it
 * has a top-level "method" or a "result" or "error" (a request or an answer).  Linear in
 * the bytes fed, constant memory; it stops reading once it knows both.
 */
/* The bytes of an id that a scan keeps: a longer one is known by its length and hash too. */
#define JSONRPC_IDSCAN_KEPT 128

struct jsonrpc_idscan {
	int depth;
	bool in_string, escape, is_key;
	bool want_value; /* the last depth-1 key was "id" */
	bool capturing;
	char key[8]; /* the depth-1 key being read, its first bytes, escapes decoded */
	size_t key_len;
	bool key_bad;	 /* longer than key, or not ASCII: none of those sought */
	int key_hex;	 /* hex digits of a \uXXXX in the key still to come */
	unsigned key_cp; /* the code point they make */
	char id[JSONRPC_IDSCAN_KEPT];
	size_t id_len;
	size_t id_total;  /* the whole id's length, past id[] too */
	uint64_t id_hash; /* FNV-1a of the whole id's text */
	bool found, overflow;
	bool ended; /* the value fed is over: what follows is another's */
	bool begun; /* a value was fed, past whitespace (in a batch: the element's) */
	/* Set after init: fed a batch's elements (past its '['), the id sought is that of its
	 * first answer; the elements before it (notifications, requests) are passed over. */
	bool batch;
	bool has_method, has_answer; /* "method"; "result" or "error" */
	bool has_id;		     /* "id", whatever its value (one of no use too) */
	/*
	 * Set after init, with batch: called with the scanner as each element of the batch
	 * ends (an answer: found and jsonrpc_idscan_is_answer()), every one of them, not only
	 * up to the first answer (the scan goes on to the batch's end); an element cut short
	 * by the end of what is fed is left in the scanner.
	 */
	void (*on_element)(void *ctx, const struct jsonrpc_idscan *sc);
	void *ctx;
};

void jsonrpc_idscan_init(struct jsonrpc_idscan *sc);
void jsonrpc_idscan_feed(struct jsonrpc_idscan *sc, const char *p, size_t len);
/*
 * Bytes of a line over the bound to its scan (wrap's, connect's), *lead while nothing but
 * whitespace of it has been read: past that whitespace, however long, whether it is a
 * batch (sc->batch, its '[' passed over: its elements are scanned as messages of their
 * own, on_element) is known at its first other byte.
 */
void jsonrpc_idscan_feed_line(struct jsonrpc_idscan *sc, bool *lead, const char *p, size_t len);
/* The id's JSON text, or NULL if none was seen (or it was not a string or number). */
const char *jsonrpc_idscan_id(const struct jsonrpc_idscan *sc, size_t *len);
/*
 * Is the id that was fed, one too long for id[] included, exactly this JSON text?  (Its
 * length, first bytes and hash are compared: an id written back in another form is not.)
 */
bool jsonrpc_idscan_is(const struct jsonrpc_idscan *sc, const char *id, size_t len);
/* The hash of an id's JSON text that a scan of it gives (jsonrpc_idscan.id_hash). */
uint64_t jsonrpc_id_hash(const char *id, size_t len);
/*
 * Whether what was fed is an answer (a "result" or an "error", no "method"): one to a
 * request of the other side, whose id is that side's.
 */
bool jsonrpc_idscan_is_answer(const struct jsonrpc_idscan *sc);

#endif
