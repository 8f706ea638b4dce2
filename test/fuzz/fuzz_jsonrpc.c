/*
 * Fuzz target: jsonrpc_scan() and idscan.
 *
 * The input is one line (skipped if it holds a newline: framing never hands one out).
 * jsonrpc_scan() is checked against oracles that share no code with it:
 *
 *   - validity: strict UTF-8 (fuzz.h) and yajl's default verdict on the exact bytes, with
 *     nesting deeper than JSONRPC_MAX_DEPTH refused;
 *   - meaning: the same line parsed into a tree (yajl_tree_parse) and classified by the
 *     JSON-RPC 2.0 rules member by member: kind, id (its canonical text must parse back to
 *     the same string or number), method, batch elements, and the params mcpmux acts on;
 *   - repeatability: the same scanner gives the same answer again, after another line and
 *     after an invalid one;
 *   - one judge: the simdjson path (jsonsimd) and yajl alone give the same verdict, error
 *     and every result field, byte for byte, with params read for every method and for
 *     one.
 *
 * jsonrpc_without_answers(), on a batch (an empty result for anything else), with no keep,
 * one that keeps every answer, and one that keeps some (by its id's text), into another
 * scanner and into the batch's own: the batch less its answers is a JSON array that
 * jsonrpc_scan() takes as a batch and that holds exactly the elements the tree oracle
 * says are no answers, in order (nothing when there is none); the answers kept are the
 * oracle's answers in order (those keep took), and kept plus dropped are all of them.
 *
 * idscan gets the line in three chunkings and must give the same answer each time.  What
 * it returns is written by mcpmux, unchecked, into an error response as the "id": it must
 * be one valid JSON string or number, and for a valid object with one top-level "id" it
 * must be that id.

 *
 * jsonrpc_answer_id() reads only the line, and what it finds is in it and goes into an
 * error response likewise: one valid JSON string or number.  Of a line the scan takes for
 * an answer with an id that is not null it finds that id (by its key), or nothing for an
 * id with a lone surrogate escape; of a request or a notification nothing.
 */
#include <math.h>

#include <yajl/yajl_tree.h>

#include "fuzz.h"

#include "mcpmux/jsonrpc.h"
#include "mcpmux/jsonspan.h"
#include "mcpmux/rpcout.h"

/* ---- the tree oracle ---- */

struct want_item {
	enum jsonrpc_kind kind;
	bool has_id;
	yajl_val id; /* the id value (string or number), NULL for null or none */
	bool has_method;
	const char *method;
	bool cancels; /* a batch element: notifications/cancelled naming a request */
};

struct want_params {
	bool has_grace_ms, has_session, has_reason;
	double grace_ms;
	const char *session, *reason;
};

static bool
is_str(yajl_val v, const char *s)
{
	return YAJL_IS_STRING(v) && strcmp(v->u.string, s) == 0;
}

/* Classify one batch element or message, member by member in order. */
static void
classify(yajl_val v, struct want_item *w)
{
	bool seen_jsonrpc = false, has_result = false, has_error = false, bad = false;
	bool id_null = false, request_id = false;

	memset(w, 0, sizeof(*w));
	w->kind = JSONRPC_INVALID_REQUEST;
	if (!YAJL_IS_OBJECT(v)) {
		return;
	}
	for (size_t i = 0; i < v->u.object.len; i++) {
		const char *k = v->u.object.keys[i];
		yajl_val m = v->u.object.values[i];

		if (strcmp(k, "jsonrpc") == 0) {
			if (is_str(m, "2.0")) {
				seen_jsonrpc = true;
			} else {
				bad = true;
			}
		} else if (strcmp(k, "id") == 0) {
			if (YAJL_IS_STRING(m) || YAJL_IS_NUMBER(m)) {
				w->has_id = true;
				w->id = m;
				id_null = false;
			} else if (YAJL_IS_NULL(m)) {
				w->has_id = true;
				w->id = NULL;
				id_null = true;
				bad = bad || w->has_method; /* a request's id must not be null */
			} else {
				bad = true;
			}
		} else if (strcmp(k, "method") == 0) {
			if (YAJL_IS_STRING(m)) {
				w->has_method = true;
				w->method = m->u.string;
				bad = bad || (w->has_id && id_null);
			} else {
				bad = true;
			}
		} else if (strcmp(k, "params") == 0) {
			bad = bad || !(YAJL_IS_OBJECT(m) || YAJL_IS_ARRAY(m));
			/* In a batch, read when no method came before it, or a cancellation's. */
			if (YAJL_IS_OBJECT(m) &&
			    (!w->has_method || strcmp(w->method, JSONRPC_CANCELLED) == 0)) {
				for (size_t j = 0; j < m->u.object.len; j++) {
					yajl_val r = m->u.object.values[j];

					request_id =
						request_id ||
						(strcmp(m->u.object.keys[j], "requestId") == 0 &&
						 (YAJL_IS_STRING(r) || YAJL_IS_NUMBER(r)));
				}
			}
		} else if (strcmp(k, "result") == 0) {
			has_result = true;
		} else if (strcmp(k, "error") == 0) {
			has_error = true;
			bad = bad || !YAJL_IS_OBJECT(m);
		}
	}
	if (bad || !seen_jsonrpc) {
		return;
	}
	if (w->has_method) {
		if (!has_result && !has_error) {
			w->kind = w->has_id ? JSONRPC_REQUEST : JSONRPC_NOTIFICATION;
		}
		w->cancels = w->kind == JSONRPC_NOTIFICATION && request_id &&
			     strcmp(w->method, JSONRPC_CANCELLED) == 0;
		return;
	}
	if (w->has_id && has_result != has_error) {
		w->kind = has_result ? JSONRPC_RESPONSE : JSONRPC_ERROR;
	}
}

static void
want_params(yajl_val top, struct want_params *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; YAJL_IS_OBJECT(top) && i < top->u.object.len; i++) {
		yajl_val v = top->u.object.values[i];

		if (strcmp(top->u.object.keys[i], "params") != 0 || !YAJL_IS_OBJECT(v)) {
			continue;
		}
		for (size_t k = 0; k < v->u.object.len; k++) {
			const char *key = v->u.object.keys[k];
			yajl_val m = v->u.object.values[k];

			if (strcmp(key, "graceMs") == 0 && YAJL_IS_NUMBER(m) &&
			    strlen(m->u.number.r) < 32) {
				p->has_grace_ms = true;
				p->grace_ms = strtod(m->u.number.r, NULL);
			} else if (strcmp(key, "session") == 0 && YAJL_IS_STRING(m)) {
				p->has_session = true;
				p->session = m->u.string;
			} else if (strcmp(key, "reason") == 0 && YAJL_IS_STRING(m)) {
				p->has_reason = true;
				p->reason = m->u.string;
			}
		}
	}
}

/* Nesting depth of containers, counted up to `limit`. */
static int
depth_of(yajl_val v, int limit)
{
	int d = 0;

	if (limit <= 0 || !(YAJL_IS_OBJECT(v) || YAJL_IS_ARRAY(v))) {
		return 0;
	}
	size_t n = YAJL_IS_OBJECT(v) ? v->u.object.len : v->u.array.len;
	yajl_val *vals = YAJL_IS_OBJECT(v) ? v->u.object.values : v->u.array.values;

	for (size_t i = 0; i < n && d < limit - 1; i++) {
		int c = depth_of(vals[i], limit - 1);

		d = c > d ? c : d;
	}
	return d + 1;
}

/* ---- checks of one scan result against the oracle ---- */

static void
check_str(const struct jsonrpc_scanner *s, struct jsonrpc_str str)
{
	FUZZ_CHECK((size_t)str.off + str.len <= s->arena_len, "slice %u+%u past the arena (%zu)",
		   str.off, str.len, s->arena_len);
}

/* The id's canonical text parses back to the value the tree holds. */
static void
check_id(const struct jsonrpc_scanner *s, const struct jsonrpc_item *it, yajl_val want)
{
	const char *text = jsonrpc_str(s, it->id);

	check_str(s, it->id);
	FUZZ_CHECK(fuzz_yajl_valid(text, it->id.len), "id text %.*s is not JSON", (int)it->id.len,
		   text);
	FUZZ_CHECK(fuzz_utf8_strict((const unsigned char *)text, it->id.len),
		   "id text is not UTF-8");
	char *copy = fuzz_strndup(text, it->id.len);
	yajl_val got = yajl_tree_parse(copy, NULL, 0);

	FUZZ_CHECK(got != NULL, "id text %s does not parse", copy);
	if (want == NULL) {
		FUZZ_CHECK(YAJL_IS_NULL(got), "id %s, want null", copy);
	} else if (YAJL_IS_STRING(want) && !fuzz_utf8_strict((const unsigned char *)want->u.string,
							     strlen(want->u.string))) {
		/*
		 * An unpaired surrogate escape: yajl decodes "\udc00" to three bytes that
		 * are not UTF-8 (and "\ud800" to "?"), and mcpmux writes invalid UTF-8 back
		 * as U+FFFD.  Such an id cannot come back verbatim (docs/reliability.md).
		 */
		FUZZ_CHECK(YAJL_IS_STRING(got), "id %s, want a string", copy);
	} else if (YAJL_IS_STRING(want)) {
		FUZZ_CHECK(YAJL_IS_STRING(got) && strcmp(got->u.string, want->u.string) == 0,
			   "id %s, want the string \"%s\"", copy, want->u.string);
	} else {
		FUZZ_CHECK(YAJL_IS_NUMBER(got) && strcmp(got->u.number.r, want->u.number.r) == 0,
			   "id %s, want the number %s", copy, want->u.number.r);
	}
	yajl_tree_free(got);
	free(copy);
}

static void
check_item(const struct jsonrpc_scanner *s, const struct jsonrpc_item *it,
	   const struct want_item *w)
{
	FUZZ_CHECK(it->kind == w->kind, "kind %d, the oracle says %d", (int)it->kind, (int)w->kind);
	if (w->kind == JSONRPC_INVALID_REQUEST) {
		return; /* what was collected of an invalid message is not used but for its id */
	}
	FUZZ_CHECK(it->has_id == w->has_id, "has_id %d, want %d", it->has_id, w->has_id);
	if (it->has_id) {
		check_id(s, it, w->id);
	}
	FUZZ_CHECK(it->has_method == w->has_method, "has_method %d, want %d", it->has_method,
		   w->has_method);
	if (it->has_method) {
		check_str(s, it->method);
		FUZZ_CHECK(strlen(w->method) == it->method.len &&
				   memcmp(jsonrpc_str(s, it->method), w->method, it->method.len) ==
					   0,
			   "method differs from the oracle's \"%s\"", w->method);
		FUZZ_CHECK(jsonrpc_method_is(s, it, w->method), "jsonrpc_method_is() disagrees");
	}
}

static bool
same_double(double a, double b)
{
	return a == b || (isnan(a) && isnan(b));
}

static void
check_params(const struct jsonrpc_scanner *s, const struct want_params *p)
{
	const struct jsonrpc_params *g = &s->params;

	FUZZ_CHECK(g->has_grace_ms == p->has_grace_ms, "has_grace_ms %d, want %d", g->has_grace_ms,
		   p->has_grace_ms);
	FUZZ_CHECK(!p->has_grace_ms || same_double(g->grace_ms, p->grace_ms), "graceMs %g, want %g",
		   g->grace_ms, p->grace_ms);
	FUZZ_CHECK(g->has_session == p->has_session, "has_session");
	if (p->has_session) {
		check_str(s, g->session);
		FUZZ_CHECK(strlen(p->session) == g->session.len &&
				   memcmp(jsonrpc_str(s, g->session), p->session, g->session.len) ==
					   0,
			   "params.session differs");
	}
	FUZZ_CHECK(g->has_reason == p->has_reason, "has_reason");
	if (p->has_reason) {
		check_str(s, g->reason);
		FUZZ_CHECK(strlen(p->reason) == g->reason.len &&
				   memcmp(jsonrpc_str(s, g->reason), p->reason, g->reason.len) == 0,
			   "params.reason differs");
	}
}

/* The scanner's answer for a line, checked against every oracle. */
static void
check_scan(struct jsonrpc_scanner *s, const char *line, size_t len)
{
	enum jsonrpc_kind kind = jsonrpc_scan(s, line, len);
	bool utf8 = fuzz_utf8_strict((const unsigned char *)line, len);
	bool valid = utf8 && fuzz_yajl_valid(line, len);

	FUZZ_CHECK(kind == s->kind, "returned kind differs from s->kind");
	FUZZ_CHECK(s->arena_len <= s->arena_cap, "arena overrun");
	FUZZ_CHECK(kind != JSONRPC_INVALID_JSON || !valid || s->error != NULL,
		   "no reason for an invalid line");
	if (!valid) {
		FUZZ_CHECK(kind == JSONRPC_INVALID_JSON, "kind %d for a line that is not JSON%s",
			   (int)kind, utf8 ? "" : " (not strict UTF-8)");
		return;
	}
	/* yajl_tree strings end at a NUL: compare meanings only for lines without \u0000. */
	char *copy = fuzz_strndup(line, len);
	char err[128];
	yajl_val top = yajl_tree_parse(copy, err, sizeof(err));

	FUZZ_CHECK(top != NULL, "yajl_tree_parse refused what yajl_parse took: %s", err);
	if (depth_of(top, JSONRPC_MAX_DEPTH + 2) > JSONRPC_MAX_DEPTH) {
		FUZZ_CHECK(kind == JSONRPC_INVALID_JSON, "kind %d for JSON nested over %d",
			   (int)kind, JSONRPC_MAX_DEPTH);
		goto out;
	}
	FUZZ_CHECK(kind != JSONRPC_INVALID_JSON, "valid JSON refused: %s",
		   s->error ? s->error : "?");
	FUZZ_CHECK(s->top_container == (YAJL_IS_OBJECT(top) || YAJL_IS_ARRAY(top)),
		   "top_container");
	if (memmem(line, len, "\\u0000", 6) != NULL) {
		goto out;
	}
	if (YAJL_IS_ARRAY(top)) {
		size_t n = top->u.array.len;

		FUZZ_CHECK(kind == (n > 0 ? JSONRPC_BATCH : JSONRPC_INVALID_REQUEST),
			   "kind %d for an array of %zu", (int)kind, n);
		FUZZ_CHECK(s->n_elements == n, "n_elements %zu, want %zu", s->n_elements, n);
		/* Every element up to JSONRPC_MAX_ITEMS, then only requests, answers and
		 * cancellations. */
		size_t k = 0, id_len;

		for (size_t i = 0; i < n; i++) {
			struct want_item w;

			classify(top->u.array.values[i], &w);
			if (i >= JSONRPC_MAX_ITEMS && w.kind != JSONRPC_REQUEST &&
			    w.kind != JSONRPC_RESPONSE && w.kind != JSONRPC_ERROR && !w.cancels) {
				continue;
			}
			FUZZ_CHECK(k < s->n_items, "n_items %zu of %zu", s->n_items, n);
			FUZZ_CHECK((jsonrpc_cancels(s, &s->items[k], &id_len) != NULL) == w.cancels,
				   "batch[%zu]: cancels a request, the oracle says %d", i,
				   w.cancels);
			check_item(s, &s->items[k++], &w);
		}
		FUZZ_CHECK(s->n_items == k, "n_items %zu, want %zu of %zu", s->n_items, k, n);
	} else {
		struct want_item w;
		struct want_params p;

		classify(top, &w);
		FUZZ_CHECK(kind == w.kind, "kind %d, the oracle says %d", (int)kind, (int)w.kind);
		check_item(s, &s->one, &w);
		want_params(top, &p);
		check_params(s, &p);
	}
out:
	yajl_tree_free(top);
	free(copy);
}

/*
 * Reading params only for one method (what mcpmux does) changes nothing else: the same
 * kind, id and method as a scan that reads every params object.
 */
static void
check_params_method(struct jsonrpc_scanner *all, const char *line, size_t len)
{
	struct jsonrpc_scanner one;

	jsonrpc_init(&one);
	one.params_method = "m";
	(void)jsonrpc_scan(all, line, len);
	(void)jsonrpc_scan(&one, line, len);
	FUZZ_CHECK(one.kind == all->kind, "kind %d with params_method, %d without", (int)one.kind,
		   (int)all->kind);
	if (one.kind != JSONRPC_INVALID_JSON && one.kind != JSONRPC_BATCH) {
		const struct jsonrpc_item *a = &all->one, *b = &one.one;

		FUZZ_CHECK(a->kind == b->kind && a->has_id == b->has_id &&
				   a->has_method == b->has_method,
			   "the message reads differently with params_method");
		FUZZ_CHECK(!a->has_id || (a->id.len == b->id.len &&
					  memcmp(jsonrpc_str(all, a->id), jsonrpc_str(&one, b->id),
						 a->id.len) == 0),
			   "id differs with params_method");
		FUZZ_CHECK(!a->has_method ||
				   (a->method.len == b->method.len &&
				    memcmp(jsonrpc_str(all, a->method),
					   jsonrpc_str(&one, b->method), a->method.len) == 0),
			   "method differs with params_method");
		if (jsonrpc_method_is(&one, b, "m")) {
			FUZZ_CHECK(one.params.has_grace_ms == all->params.has_grace_ms &&
					   one.params.has_session == all->params.has_session &&
					   one.params.has_reason == all->params.has_reason,
				   "params of the wanted method differ");
		}
	}
	jsonrpc_release(&one);
}

/* ---- the simdjson path against yajl alone ---- */

static bool
same_str(const struct jsonrpc_scanner *a, struct jsonrpc_str x, const struct jsonrpc_scanner *b,
	 struct jsonrpc_str y)
{
	return x.len == y.len && memcmp(jsonrpc_str(a, x), jsonrpc_str(b, y), x.len) == 0;
}

static void
same_item(const struct jsonrpc_scanner *a, const struct jsonrpc_item *x,
	  const struct jsonrpc_scanner *b, const struct jsonrpc_item *y)
{
	FUZZ_CHECK(x->kind == y->kind, "item kind %d with simdjson, %d with yajl", (int)x->kind,
		   (int)y->kind);
	FUZZ_CHECK(x->has_id == y->has_id && (!x->has_id || same_str(a, x->id, b, y->id)),
		   "item id differs: %.*s with simdjson, %.*s with yajl", (int)x->id.len,
		   jsonrpc_str(a, x->id), (int)y->id.len, jsonrpc_str(b, y->id));
	FUZZ_CHECK(x->has_method == y->has_method &&
			   (!x->has_method || same_str(a, x->method, b, y->method)),
		   "item method differs");
	FUZZ_CHECK(x->seen == y->seen && x->bad == y->bad, "item members seen differ");
	FUZZ_CHECK(x->has_request_id == y->has_request_id &&
			   (!x->has_request_id || same_str(a, x->request_id, b, y->request_id)),
		   "item requestId differs");
}

/* Scanner a (the simdjson path, where it is sure) against b (yajl alone). */
static void
judge_pair(struct jsonrpc_scanner *a, struct jsonrpc_scanner *b, const char *line, size_t len,
	   const char *params_method)
{
	a->params_method = b->params_method = params_method;
	/* A line without "\n" as the framer hands it out (not searched for one). */
	bool framed = memchr(line, '\n', len) == NULL;
	enum jsonrpc_kind ka =
		framed ? jsonrpc_scan_line(a, line, len) : jsonrpc_scan(a, line, len);
	enum jsonrpc_kind kb = jsonrpc_scan(b, line, len);

	FUZZ_CHECK(b->simd == NULL, "yajl_only made a simdjson parser");
	FUZZ_CHECK(ka == kb, "kind %d with simdjson, %d with yajl", (int)ka, (int)kb);
	FUZZ_CHECK((a->error == NULL) == (b->error == NULL) &&
			   (a->error == NULL || strcmp(a->error, b->error) == 0),
		   "error \"%s\" with simdjson, \"%s\" with yajl", a->error ? a->error : "",
		   b->error ? b->error : "");
	if (ka != JSONRPC_INVALID_JSON) {
		FUZZ_CHECK(a->top_container == b->top_container, "top_container differs");
		FUZZ_CHECK(a->n_items == b->n_items && a->n_elements == b->n_elements,
			   "batch sizes differ");
		same_item(a, &a->one, b, &b->one);
		for (size_t i = 0; i < a->n_items && i < b->n_items; i++) {
			same_item(a, &a->items[i], b, &b->items[i]);
		}
		const struct jsonrpc_params *p = &a->params, *q = &b->params;

		FUZZ_CHECK(p->has_grace_ms == q->has_grace_ms &&
				   (!p->has_grace_ms || same_double(p->grace_ms, q->grace_ms)),
			   "graceMs differs");
		FUZZ_CHECK(p->has_session == q->has_session &&
				   (!p->has_session || same_str(a, p->session, b, q->session)),
			   "params.session differs");
		FUZZ_CHECK(p->has_reason == q->has_reason &&
				   (!p->has_reason || same_str(a, p->reason, b, q->reason)),
			   "params.reason differs");
		FUZZ_CHECK(p->has_request_id == q->has_request_id &&
				   (!p->has_request_id ||
				    same_str(a, p->request_id, b, q->request_id)),
			   "params.requestId differs");
	}
}

/*
 * One pair of scanners for every input (as mcpmux keeps one per stream), so that what a
 * line leaves in a scanner can show in the next one's results.
 */
static void
check_one_judge(const char *line, size_t len, const char *params_method)
{
	static struct jsonrpc_scanner pairs[2][2];
	static bool ready;

	if (!ready) {
		for (int i = 0; i < 2; i++) {
			jsonrpc_init(&pairs[i][0]);
			jsonrpc_init(&pairs[i][1]);
			pairs[i][1].yajl_only = true;
		}
		ready = true;
	}
	judge_pair(&pairs[params_method != NULL][0], &pairs[params_method != NULL][1], line, len,
		   params_method);
}

/* ---- jsonrpc_without_answers() ---- */

/* Two trees of one JSON text (strings without NULs): equal member by member, in order. */
static bool
same_tree(yajl_val a, yajl_val b)
{
	if (a == NULL || b == NULL || a->type != b->type) {
		return a == b;
	}
	if (YAJL_IS_STRING(a)) {
		return strcmp(a->u.string, b->u.string) == 0;
	}
	if (YAJL_IS_NUMBER(a)) {
		return strcmp(a->u.number.r, b->u.number.r) == 0;
	}
	if (YAJL_IS_ARRAY(a)) {
		if (a->u.array.len != b->u.array.len) {
			return false;
		}
		for (size_t i = 0; i < a->u.array.len; i++) {
			if (!same_tree(a->u.array.values[i], b->u.array.values[i])) {
				return false;
			}
		}
		return true;
	}
	if (YAJL_IS_OBJECT(a)) {
		if (a->u.object.len != b->u.object.len) {
			return false;
		}
		for (size_t i = 0; i < a->u.object.len; i++) {
			if (strcmp(a->u.object.keys[i], b->u.object.keys[i]) != 0 ||
			    !same_tree(a->u.object.values[i], b->u.object.values[i])) {
				return false;
			}
		}
	}
	return true; /* true, false, null */
}

struct keep_ctx {
	int how; /* 0: none is kept (keep not given), 1: every one, 2: by its id's text */
	size_t calls;
};

static bool
keep_some(void *ctx, const char *id, size_t id_len)
{
	struct keep_ctx *k = ctx;
	unsigned sum = 0;

	k->calls++;
	FUZZ_CHECK(id_len > 0 && fuzz_yajl_valid(id, id_len), "keep() given the id %.*s",
		   (int)id_len, id);
	for (size_t i = 0; i < id_len; i++) {
		sum += (unsigned char)id[i];
	}
	return k->how == 1 || (k->how == 2 && sum % 2 == 1);
}

/* The elements of the oracle's batch that are answers (want == true) or not, in order. */
static size_t
elements_of(yajl_val top, bool answers, yajl_val *out)
{
	size_t k = 0;

	for (size_t i = 0; i < top->u.array.len; i++) {
		struct want_item w;

		classify(top->u.array.values[i], &w);
		if ((w.kind == JSONRPC_RESPONSE || w.kind == JSONRPC_ERROR) == answers) {
			out[k++] = top->u.array.values[i];
		}
	}
	return k;
}

/* b (a batch made by jsonrpc_without_answers()) holds the n elements want, in order. */
static void
check_made_batch(const struct sbuf *b, yajl_val *want, size_t n, const char *what)
{
	if (n == 0) {
		FUZZ_CHECK(b->len == 0, "%s: %zu bytes for no element", what, b->len);
		return;
	}
	FUZZ_CHECK(b->len > 0 && b->buf[0] == '[' && b->buf[b->len - 1] == ']',
		   "%s: not an array: %.*s", what, (int)b->len, b->buf);
	char *copy = fuzz_strndup(b->buf, b->len);
	yajl_val got = yajl_tree_parse(copy, NULL, 0);

	FUZZ_CHECK(YAJL_IS_ARRAY(got), "%s: not JSON: %s", what, copy);
	FUZZ_CHECK(got->u.array.len == n, "%s: %zu elements, want %zu", what, got->u.array.len, n);
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(same_tree(got->u.array.values[i], want[i]), "%s: element %zu differs",
			   what, i);
	}
	yajl_tree_free(got);
	free(copy);
}

/* Each way of keeping answers, into another scanner and into the batch's own. */
static void
check_without_answers(const char *line, size_t len)
{
	struct jsonrpc_scanner s, other;
	struct sbuf out = { 0 }, taken = { 0 };

	jsonrpc_init(&s);
	jsonrpc_init(&other);
	for (int run = 0; run < 6; run++) {
		struct keep_ctx k = { .how = run % 3 };
		struct jsonrpc_scanner *into = run < 3 ? &other : &s;
		enum jsonrpc_kind kind = jsonrpc_scan(&s, line, len);
		size_t dropped = 99, n_answers = 0;
		yajl_val top = NULL, *want = NULL;
		char *copy = NULL;

		if (kind == JSONRPC_BATCH && memmem(line, len, "\\u0000", 6) == NULL) {
			copy = fuzz_strndup(line, len);
			top = yajl_tree_parse(copy, NULL, 0);
			FUZZ_CHECK(YAJL_IS_ARRAY(top), "a batch that is not an array");
			want = calloc(top->u.array.len + 1, sizeof(*want));
			FUZZ_CHECK(want != NULL, "out of memory");
			n_answers = elements_of(top, true, want);
		}
		bool ok = jsonrpc_without_answers(&s, line, len, k.how == 0 ? NULL : keep_some, &k,
						  &out, into, &taken, &dropped);

		FUZZ_CHECK(ok, "jsonrpc_without_answers() failed");
		if (kind != JSONRPC_BATCH) {
			FUZZ_CHECK(out.len == 0 && taken.len == 0 && dropped == 0 && k.calls == 0,
				   "not a batch, yet %zu bytes, %zu taken, %zu dropped", out.len,
				   taken.len, dropped);
			continue;
		}
		if (top == NULL) {
			continue; /* (a NUL in a string: the tree oracle cannot see it) */
		}
		if (n_answers == 0) {
			FUZZ_CHECK(out.len == 0 && taken.len == 0 && dropped == 0,
				   "a batch without answers, yet %zu bytes, %zu taken, %zu dropped",
				   out.len, taken.len, dropped);
		} else {
			size_t n_taken = 0;

			if (taken.len > 0) {
				char *tc = fuzz_strndup(taken.buf, taken.len);
				yajl_val t = yajl_tree_parse(tc, NULL, 0);
				size_t j = 0;

				FUZZ_CHECK(YAJL_IS_ARRAY(t), "taken is not an array: %s", tc);
				n_taken = t->u.array.len;
				/* In order, each one of the answers. */
				for (size_t i = 0; i < n_taken; i++, j++) {
					while (j < n_answers &&
					       !same_tree(t->u.array.values[i], want[j])) {
						j++;
					}
					FUZZ_CHECK(j < n_answers,
						   "taken[%zu] is none of the answers", i);
				}
				yajl_tree_free(t);
				free(tc);
			}
			FUZZ_CHECK(k.how != 0 || n_taken == 0, "answers taken without keep()");
			FUZZ_CHECK(k.how != 1 || n_taken == n_answers, "%zu of %zu answers taken",
				   n_taken, n_answers);
			if (k.how == 1) {
				check_made_batch(&taken, want, n_answers, "taken");
			}
			FUZZ_CHECK(n_taken + dropped == n_answers,
				   "%zu taken and %zu dropped of %zu answers", n_taken, dropped,
				   n_answers);
			size_t n_rest = elements_of(top, false, want);

			check_made_batch(&out, want, n_rest, "the batch less its answers");
			if (n_rest > 0) {
				FUZZ_CHECK(into->kind == JSONRPC_BATCH &&
						   into->n_elements == n_rest,
					   "the batch less its answers scans as kind %d of %zu",
					   (int)into->kind, into->n_elements);
				size_t n_items;
				const struct jsonrpc_item *items = jsonrpc_items(into, &n_items);

				for (size_t i = 0; i < n_items; i++) {
					FUZZ_CHECK(items[i].kind != JSONRPC_RESPONSE &&
							   items[i].kind != JSONRPC_ERROR,
						   "an answer left in the batch (%zu)", i);
				}
			}
		}
		free(want);
		yajl_tree_free(top);
		free(copy);
	}
	sbuf_release(&out);
	sbuf_release(&taken);
	jsonrpc_release(&s);
	jsonrpc_release(&other);
}

/* ---- idscan ---- */

struct idscan_result {
	bool found;
	char id[sizeof(((struct jsonrpc_idscan *)0)->id)];
	size_t len;
};

static void
idscan_run(const char *line, size_t len, int how, uint64_t seed, struct idscan_result *r)
{
	struct jsonrpc_idscan sc;
	size_t fed = 0;

	jsonrpc_idscan_init(&sc);
	while (fed < len) {
		size_t n = len - fed;

		if (how == 1) {
			n = 1;
		} else if (how == 2) {
			n = (size_t)(fuzz_rand(&seed) % 9);
			n = n > len - fed ? len - fed : n;
		}
		jsonrpc_idscan_feed(&sc, line + fed, n);
		fed += n;
		FUZZ_CHECK(sc.id_len <= sizeof(sc.id), "idscan id_len %zu", sc.id_len);
	}
	const char *id = jsonrpc_idscan_id(&sc, &r->len);

	r->found = id != NULL;
	if (id != NULL) {
		FUZZ_CHECK(r->len > 0 && r->len <= sizeof(r->id), "idscan length %zu", r->len);
		memcpy(r->id, id, r->len);
	} else {
		r->len = 0;
	}
}

/* The top-level "id" of a valid object line, when there is exactly one. */
static yajl_val
single_top_id(yajl_val top)
{
	yajl_val id = NULL;
	int n = 0;

	for (size_t i = 0; YAJL_IS_OBJECT(top) && i < top->u.object.len; i++) {
		if (strcmp(top->u.object.keys[i], "id") == 0) {
			id = top->u.object.values[i];
			n++;
		}
	}
	return n == 1 ? id : NULL;
}

static void
check_idscan(const char *line, size_t len, uint64_t seed)
{
	struct idscan_result r[3];

	for (int how = 0; how < 3; how++) {
		idscan_run(line, len, how, seed, &r[how]);
	}
	for (int how = 1; how < 3; how++) {
		FUZZ_CHECK(r[how].found == r[0].found && r[how].len == r[0].len &&
				   memcmp(r[how].id, r[0].id, r[0].len) == 0,
			   "idscan depends on the chunking (%d)", how);
	}
	if (r[0].found) {
		/* It goes into {"jsonrpc":"2.0","id":<here>,"error":...} as it is. */
		char c = r[0].id[0];

		FUZZ_CHECK(c == '"' || c == '-' || (c >= '0' && c <= '9'),
			   "idscan id %.*s is neither a string nor a number", (int)r[0].len,
			   r[0].id);
		FUZZ_CHECK(fuzz_yajl_valid(r[0].id, r[0].len) &&
				   fuzz_utf8_strict((const unsigned char *)r[0].id, r[0].len),
			   "idscan id %.*s is not valid JSON", (int)r[0].len, r[0].id);
	}
	/* A valid object (strict UTF-8), keys without escapes: the id is the one idscan finds. */
	if (memchr(line, '\\', len) != NULL || !fuzz_yajl_valid(line, len) ||
	    !fuzz_utf8_strict((const unsigned char *)line, len)) {
		return;
	}
	char *copy = fuzz_strndup(line, len);
	yajl_val top = yajl_tree_parse(copy, NULL, 0);
	yajl_val id = single_top_id(top);

	if (YAJL_IS_OBJECT(top) && id != NULL && (YAJL_IS_NUMBER(id) || YAJL_IS_STRING(id))) {
		size_t want =
			YAJL_IS_NUMBER(id) ? strlen(id->u.number.r) : strlen(id->u.string) + 2;

		if (want <= sizeof(r[0].id)) {
			FUZZ_CHECK(r[0].found, "idscan missed the id");
			if (YAJL_IS_NUMBER(id)) {
				FUZZ_CHECK(r[0].len == want &&
						   memcmp(r[0].id, id->u.number.r, want) == 0,
					   "idscan id %.*s, want %s", (int)r[0].len, r[0].id,
					   id->u.number.r);
			} else {
				FUZZ_CHECK(r[0].len == want &&
						   memcmp(r[0].id + 1, id->u.string, want - 2) == 0,
					   "idscan id %.*s, want \"%s\"", (int)r[0].len, r[0].id,
					   id->u.string);
			}
		}
	} else if (YAJL_IS_OBJECT(top) && id == NULL && single_top_id(top) == NULL) {
		bool any = false;

		for (size_t i = 0; i < top->u.object.len; i++) {
			any = any || strcmp(top->u.object.keys[i], "id") == 0;
		}
		FUZZ_CHECK(any || !r[0].found, "idscan found %.*s in an object without an id",
			   (int)r[0].len, r[0].id);
	}
	yajl_tree_free(top);
	free(copy);
}

/* ---- the id of an answer refused ---- */

/*
 * The text of the line's last top-level "id" member (keys compared by the characters
 * their escapes stand for, as the scan compares them), member by member; NULL when the
 * line is not an object read so to its closing brace.
 */
static const char *
raw_id(const char *line, size_t len, size_t *n)
{
	const char *p = jsonspan_ws(line, line + len), *end = line + len, *id = NULL;

	if (p >= end || *p != '{') {
		return NULL;
	}
	for (p++;;) {
		const char *k = jsonspan_ws(p, end), *v;
		char key[64];
		size_t kn;

		if (k >= end || *k != '"' || (p = jsonspan_skip(k, end)) == NULL) {
			return NULL;
		}
		kn = (size_t)(p - k) <= sizeof(key)
			     ? jsonrpc_string_text(k, (size_t)(p - k), key, false)
			     : SIZE_MAX;
		p = jsonspan_ws(p, end);
		if (p >= end || *p != ':') {
			return NULL;
		}
		v = jsonspan_ws(p + 1, end);
		if ((p = jsonspan_skip(v, end)) == NULL) {
			return NULL;
		}
		if (kn == 2 && memcmp(key, "id", 2) == 0) {
			id = v;
			*n = (size_t)(p - v);
		}
		p = jsonspan_ws(p, end);
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		return p < end && *p == '}' ? id : NULL;
	}
}

/*
 * Does the JSON string p hold a surrogate escape that is not one of a pair?  Its
 * characters then differ as such an escape is taken (U+FFFD, or its 3-byte form).
 */
static bool
lone_surrogate_id(const char *p, size_t len)
{
	char *a = malloc(len), *b = malloc(len);
	size_t na, nb;
	bool lone;

	FUZZ_CHECK(a != NULL && b != NULL, "out of memory");
	na = jsonrpc_string_text(p, len, a, true);
	nb = jsonrpc_string_text(p, len, b, false);
	lone = na != SIZE_MAX && (na != nb || memcmp(a, b, na) != 0);
	free(a);
	free(b);
	return lone;
}

static void
check_answer_id(const char *line, size_t len)
{
	char *copy = malloc(len > 0 ? len : 1); /* nothing past the line may be read (ASan) */
	size_t id_len = 0;

	FUZZ_CHECK(copy != NULL, "out of memory");
	if (len > 0) {
		memcpy(copy, line, len);
	}
	const char *id = jsonrpc_answer_id(copy, len, &id_len);
	struct jsonrpc_scanner s;

	if (id != NULL) {
		FUZZ_CHECK(id >= copy && id_len > 0 && id_len <= len &&
				   (size_t)(id - copy) <= len - id_len,
			   "answer id outside the line");
		FUZZ_CHECK(id[0] == '"' || id[0] == '-' || (id[0] >= '0' && id[0] <= '9'),
			   "answer id %.*s is neither a string nor a number", (int)id_len, id);
		FUZZ_CHECK(fuzz_yajl_valid(id, id_len) &&
				   fuzz_utf8_strict((const unsigned char *)id, id_len),
			   "answer id %.*s is not valid JSON", (int)id_len, id);
	}
	jsonrpc_init(&s);
	enum jsonrpc_kind kind = jsonrpc_scan(&s, copy, len);

	if (kind == JSONRPC_REQUEST || kind == JSONRPC_NOTIFICATION) {
		FUZZ_CHECK(id == NULL, "answer id %.*s in a %s", (int)id_len, id,
			   jsonrpc_kind_name(kind));
	} else if ((kind == JSONRPC_RESPONSE || kind == JSONRPC_ERROR) && s.one.has_id &&
		   !(s.one.id.len == 4 && memcmp(jsonrpc_str(&s, s.one.id), "null", 4) == 0)) {
		if (id == NULL) {
			/* Only of an id with a lone surrogate escape, whose text is yajl's. */
			size_t rn = 0;
			const char *raw = raw_id(line, len, &rn);

			FUZZ_CHECK(raw != NULL && *raw == '"' && lone_surrogate_id(raw, rn),
				   "the answer's id is not found");
			jsonrpc_release(&s);
			free(copy);
			return;
		}
		char *a = malloc(JSONRPC_KEY_MAX(id_len)),
		     *b = malloc(JSONRPC_KEY_MAX(s.one.id.len));

		FUZZ_CHECK(a != NULL && b != NULL, "out of memory");
		size_t na = jsonrpc_id_key(id, id_len, a);
		size_t nb = jsonrpc_id_key(jsonrpc_str(&s, s.one.id), s.one.id.len, b);

		FUZZ_CHECK(na > 0 && na == nb && memcmp(a, b, na) == 0,
			   "answer id %.*s, the scan's %.*s", (int)id_len, id, (int)s.one.id.len,
			   jsonrpc_str(&s, s.one.id));
		free(a);
		free(b);
	}
	jsonrpc_release(&s);
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char ping[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
	const char *line = (const char *)data;
	struct jsonrpc_scanner s;
	uint64_t seed = size;

	if (memchr(data, '\n', size) != NULL) {
		return 0; /* framed lines never hold a newline (see fuzz_framer) */
	}
	for (size_t i = 0; i < size && i < 8; i++) {
		seed = seed << 8 | data[i];
	}
	jsonrpc_init(&s);
	check_scan(&s, line, size);
	enum jsonrpc_kind first = s.kind;

	check_scan(&s, line, size);
	FUZZ_CHECK(s.kind == first, "a second scan of the same line differs");
	FUZZ_CHECK(jsonrpc_scan(&s, ping, sizeof(ping) - 1) == JSONRPC_REQUEST,
		   "a ping after the line is not a request");
	check_scan(&s, line, size);
	check_params_method(&s, line, size);
	jsonrpc_release(&s);
	check_one_judge(line, size, NULL);
	check_one_judge(line, size, JSONRPC_CANCELLED);
	check_without_answers(line, size);

	check_idscan(line, size, seed);
	check_answer_id(line, size);
	return 0;
}
