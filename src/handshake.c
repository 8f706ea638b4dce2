/*
 * handshake: record the client's session set-up, and replay it to a fresh server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "mcpmux/handshake.h"
#include "mcpmux/jsonspan.h"

void
handshake_init(struct handshake *hs)
{
	memset(hs, 0, sizeof(*hs));
}

static void
subs_clear(struct handshake *hs)
{
	for (size_t i = 0; i < hs->n_subs; i++) {
		free(hs->subs[i].uri_key);
		free(hs->subs[i].params);
	}
	free(hs->subs);
	hs->subs = NULL;
	hs->n_subs = 0;
	hs->subs_lost = 0;
}

void
handshake_release(struct handshake *hs)
{
	sbuf_release(&hs->init_params);
	sbuf_release(&hs->init_key);
	sbuf_release(&hs->proto);
	sbuf_release(&hs->caps);
	sbuf_release(&hs->level_params);
	subs_clear(hs);
	handshake_init(hs);
}

/* The params of line (JSON text), "{}" when it has none. */
static void
params_of(const char *line, size_t len, const char **p, size_t *plen)
{
	if (!jsonspan_member(line, len, "params", p, plen)) {
		*p = "{}";
		*plen = 2;
	}
}

/*
 * The key of params.uri, by value (a malloc'd jsonrpc_id_key()), or NULL when there is
 * no such member or it is not a string.
 */
static char *
uri_key(const char *params, size_t plen, size_t *klen)
{
	const char *uri;
	size_t ulen;
	char *key;

	if (!jsonspan_member(params, plen, "uri", &uri, &ulen) || ulen < 2 || uri[0] != '"' ||
	    (key = malloc(JSONRPC_KEY_MAX(ulen))) == NULL) {
		return NULL;
	}
	*klen = jsonrpc_id_key(uri, ulen, key);
	if (*klen == 0) {
		free(key);
		return NULL;
	}
	return key;
}

/* The subscription to the URI of key k, or n_subs. */
static size_t
sub_find(const struct handshake *hs, const char *k, size_t klen)
{
	size_t i = 0;

	while (i < hs->n_subs &&
	       (hs->subs[i].uri_key_len != klen || memcmp(hs->subs[i].uri_key, k, klen) != 0)) {
		i++;
	}
	return i;
}

static void
subscribe(struct handshake *hs, const char *params, size_t plen)
{
	size_t klen;
	char *k = uri_key(params, plen, &klen);

	if (k == NULL) {
		return;
	}
	if (sub_find(hs, k, klen) < hs->n_subs) {
		free(k); /* subscribed already */
		return;
	}
	if (hs->n_subs >= HANDSHAKE_SUBS) {
		free(k);
		hs->subs_lost++; /* too many: not replayed, and said at the replay */
		return;
	}
	struct handshake_sub *ns = realloc(hs->subs, (hs->n_subs + 1) * sizeof(*ns));
	char *pc = malloc(plen);

	if (ns != NULL) {
		hs->subs = ns;
	}
	if (ns == NULL || pc == NULL) {
		free(k);
		free(pc);
		hs->subs_lost++;
		return;
	}
	memcpy(pc, params, plen);
	hs->subs[hs->n_subs++] = (struct handshake_sub){
		.uri_key = k, .uri_key_len = klen, .params = pc, .params_len = plen
	};
}

static void
unsubscribe(struct handshake *hs, const char *params, size_t plen)
{
	size_t klen;
	char *k = uri_key(params, plen, &klen);

	if (k == NULL) {
		return;
	}
	size_t i = sub_find(hs, k, klen);

	free(k);
	if (i < hs->n_subs) {
		free(hs->subs[i].uri_key);
		free(hs->subs[i].params);
		/* The others keep their order: they are replayed as they were made. */
		memmove(&hs->subs[i], &hs->subs[i + 1], (hs->n_subs - i - 1) * sizeof(*hs->subs));
		hs->n_subs--;
	}
}

/* A batch's elements, each scanned as a message of its own (handshake_observe_*()). */
static struct jsonrpc_scanner el_scan;

void
handshake_module_release(void)
{
	jsonrpc_release(&el_scan);
}

/*
 * The key of an item's id (jsonrpc_id_key()): in buf, JSONRPC_KEY_MAX(64) bytes, or for a
 * longer id in memory of its own, *heap (the caller frees it).  0 when it has none, or
 * there is no memory for it.
 */
static size_t
id_key_of(const struct jsonrpc_scanner *scan, const struct jsonrpc_item *it, char *buf, char **heap)
{
	const char *id = jsonrpc_str(scan, it->id);

	*heap = NULL;
	if (it->id.len <= 64) {
		return jsonrpc_id_key(id, it->id.len, buf);
	}
	if ((*heap = malloc(JSONRPC_KEY_MAX(it->id.len))) == NULL) {
		return 0;
	}
	return jsonrpc_id_key(id, it->id.len, *heap);
}

static bool
is_setup_method(const struct jsonrpc_scanner *scan, const struct jsonrpc_item *it)
{
	static const char *const methods[] = { "initialize", "notifications/initialized",
					       "logging/setLevel", "resources/subscribe",
					       "resources/unsubscribe" };

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (jsonrpc_method_is(scan, it, methods[i])) {
			return true;
		}
	}
	return false;
}

/*
 * Does a batch hold an element that matters here (want(): for the client's set-up, or
 * an answer for the server's)?  One past the elements described may: true then too.
 */
static bool
batch_matters(const struct jsonrpc_scanner *scan,
	      bool (*want)(const struct jsonrpc_scanner *, const struct jsonrpc_item *))
{
	size_t n;
	const struct jsonrpc_item *items = jsonrpc_items(scan, &n);

	if (scan->n_elements > n) {
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		if (want(scan, &items[i])) {
			return true;
		}
	}
	return false;
}

static bool
is_client_setup(const struct jsonrpc_scanner *scan, const struct jsonrpc_item *it)
{
	return (it->kind == JSONRPC_REQUEST || it->kind == JSONRPC_NOTIFICATION) &&
	       is_setup_method(scan, it);
}

static bool
is_answer(const struct jsonrpc_scanner *scan, const struct jsonrpc_item *it)
{
	(void)scan;
	return it->kind == JSONRPC_RESPONSE || it->kind == JSONRPC_ERROR;
}

static void observe_client(struct handshake *hs, const struct jsonrpc_scanner *scan,
			   const char *line, size_t len);
static void observe_server(struct handshake *hs, const struct jsonrpc_scanner *scan,
			   const char *line, size_t len);

/* A batch: each element that matters, in order, as if it had come alone. */
static void
observe_batch(struct handshake *hs, const struct jsonrpc_scanner *scan, const char *line,
	      size_t len, bool client)
{
	const char *p = line, *end = line + len, *el;
	size_t el_len;

	if (!batch_matters(scan, client ? is_client_setup : is_answer)) {
		return;
	}
	while (jsonspan_element(&p, end, &el, &el_len)) {
		enum jsonrpc_kind kind = jsonrpc_scan(&el_scan, el, el_len);

		if (kind == JSONRPC_BATCH || kind == JSONRPC_INVALID_JSON ||
		    !el_scan.top_container) {
			continue; /* not a message */
		}
		if (client) {
			observe_client(hs, &el_scan, el, el_len);
		} else {
			observe_server(hs, &el_scan, el, el_len);
		}
	}
	/* Nothing kept for the next batch: its elements' memory goes (a big one's too). */
	jsonrpc_release(&el_scan);
}

void
handshake_observe_client(struct handshake *hs, const struct jsonrpc_scanner *scan, const char *line,
			 size_t len)
{
	if (scan->kind == JSONRPC_BATCH) {
		observe_batch(hs, scan, line, len, true);
	} else {
		observe_client(hs, scan, line, len);
	}
}

static void
observe_client(struct handshake *hs, const struct jsonrpc_scanner *scan, const char *line,
	       size_t len)
{
	const struct jsonrpc_item *it = &scan->one;
	const char *p;
	size_t plen;

	if (scan->kind == JSONRPC_NOTIFICATION) {
		if (jsonrpc_method_is(scan, it, "notifications/initialized")) {
			hs->initialized = true;
		}
		return;
	}
	if (scan->kind != JSONRPC_REQUEST) {
		return;
	}
	if (jsonrpc_method_is(scan, it, "initialize")) {
		char buf[JSONRPC_KEY_MAX(64)], *heap = NULL;
		size_t klen = id_key_of(scan, it, buf, &heap);

		/* A new initialize: a new protocol session, set up again by the client. */
		params_of(line, len, &p, &plen);
		sbuf_set_exact(&hs->init_params, p, plen);
		sbuf_set_exact(&hs->init_key, heap != NULL ? heap : buf, klen);
		free(heap);
		hs->have_init = klen > 0 && !hs->init_params.failed && !hs->init_key.failed;
		hs->have_result = false;
		hs->initialized = false;
		hs->have_level = false;
		subs_clear(hs);
	} else if (jsonrpc_method_is(scan, it, "logging/setLevel")) {
		params_of(line, len, &p, &plen);
		sbuf_set_exact(&hs->level_params, p, plen);
		hs->have_level = !hs->level_params.failed;
	} else if (jsonrpc_method_is(scan, it, "resources/subscribe")) {
		params_of(line, len, &p, &plen);
		subscribe(hs, p, plen);
	} else if (jsonrpc_method_is(scan, it, "resources/unsubscribe")) {
		params_of(line, len, &p, &plen);
		unsubscribe(hs, p, plen);
	}
}

void
handshake_observe_server(struct handshake *hs, const struct jsonrpc_scanner *scan, const char *line,
			 size_t len)
{
	if (!hs->have_init || hs->have_result) {
		return;
	}
	if (scan->kind == JSONRPC_BATCH) {
		observe_batch(hs, scan, line, len, false);
	} else {
		observe_server(hs, scan, line, len);
	}
}

static void
observe_server(struct handshake *hs, const struct jsonrpc_scanner *scan, const char *line,
	       size_t len)
{
	char buf[JSONRPC_KEY_MAX(64)], *heap = NULL;
	const char *result, *v;
	size_t rlen, vlen, klen;

	if (!hs->have_init || hs->have_result ||
	    (scan->kind != JSONRPC_RESPONSE && scan->kind != JSONRPC_ERROR)) {
		return;
	}
	klen = id_key_of(scan, &scan->one, buf, &heap);
	bool same = klen == hs->init_key.len &&
		    memcmp(heap != NULL ? heap : buf, hs->init_key.buf, klen) == 0;

	free(heap);
	if (!same) {
		return;
	}
	if (scan->kind == JSONRPC_ERROR) {
		/* Refused: no protocol session to set up again, and a later answer under
		 * that id (reused by the client) is not the initialize's. */
		hs->have_init = false;
		return;
	}
	if (!jsonspan_member(line, len, "result", &result, &rlen)) {
		return;
	}
	/* A member the answer lacks is not kept from an earlier answer. */
	if (jsonspan_member(result, rlen, "protocolVersion", &v, &vlen)) {
		sbuf_set_exact(&hs->proto, v, vlen);
	} else {
		sbuf_release(&hs->proto);
	}
	if (jsonspan_member(result, rlen, "capabilities", &v, &vlen)) {
		sbuf_set_exact(&hs->caps, v, vlen);
	} else {
		sbuf_release(&hs->caps);
	}
	hs->have_result = !hs->proto.failed && !hs->caps.failed;
}

bool
handshake_ready(const struct handshake *hs)
{
	return hs->have_init && hs->have_result;
}

static void
next_id(struct handshake *hs, char *id, size_t id_size)
{
	(void)snprintf(id, id_size, "\"%s-%llu\"", HANDSHAKE_ID, ++hs->seq);
}

void
handshake_replay_init(struct handshake *hs, struct sbuf *b, char *id, size_t id_size)
{
	next_id(hs, id, id_size);
	sbuf_adds(b, "{\"jsonrpc\":\"2.0\",\"id\":");
	sbuf_adds(b, id);
	sbuf_adds(b, ",\"method\":\"initialize\",\"params\":");
	sbuf_add(b, hs->init_params.buf, hs->init_params.len);
	sbuf_adds(b, "}");
}

/* ---- comparing the fresh server's answer ---- */

static bool same_value(yajl_val a, yajl_val b);

/* Two JSON numbers of one value (1 and 1.0 and 1e0), compared as jsonrpc_id_key() does. */
static bool
same_number(const char *a, const char *b)
{
	size_t al = strlen(a), bl = strlen(b);
	char ka[JSONRPC_KEY_MAX(64)], kb[JSONRPC_KEY_MAX(64)];

	if (al > 64 || bl > 64) {
		return al == bl && memcmp(a, b, al) == 0;
	}
	al = jsonrpc_id_key(a, al, ka);
	bl = jsonrpc_id_key(b, bl, kb);
	return al > 0 && al == bl && memcmp(ka, kb, al) == 0;
}

static bool
same_object(yajl_val a, yajl_val b)
{
	if (a->u.object.len != b->u.object.len) {
		return false;
	}
	for (size_t i = 0; i < a->u.object.len; i++) {
		size_t j = 0;

		while (j < b->u.object.len &&
		       strcmp(a->u.object.keys[i], b->u.object.keys[j]) != 0) {
			j++;
		}
		if (j == b->u.object.len ||
		    !same_value(a->u.object.values[i], b->u.object.values[j])) {
			return false;
		}
	}
	return true;
}

static bool
same_value(yajl_val a, yajl_val b)
{
	if (a == NULL || b == NULL || a->type != b->type) {
		return a == b;
	}
	switch (a->type) {
	case yajl_t_string:
		return strcmp(a->u.string, b->u.string) == 0;
	case yajl_t_number:
		return same_number(a->u.number.r, b->u.number.r);
	case yajl_t_object:
		return same_object(a, b);
	case yajl_t_array:
		if (a->u.array.len != b->u.array.len) {
			return false;
		}
		for (size_t i = 0; i < a->u.array.len; i++) {
			if (!same_value(a->u.array.values[i], b->u.array.values[i])) {
				return false;
			}
		}
		return true;
	default: /* true, false, null */
		return true;
	}
}

/* JSON text as a NUL-terminated string, parsed (NULL when it is no JSON). */
static yajl_val
parse(const char *p, size_t len)
{
	char *z = malloc(len + 1);
	yajl_val v = NULL;

	if (z != NULL) {
		memcpy(z, p, len);
		z[len] = '\0';
		v = yajl_tree_parse(z, NULL, 0);
		free(z);
	}
	return v;
}

/*
 * Two JSON texts (or absences: len 0) of one value: white space, the order of an object's
 * members, the escapes of strings and the spelling of numbers aside.
 */
static bool
same_json(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen == 0 || blen == 0) {
		return alen == blen;
	}
	yajl_val x = parse(a, alen), y = parse(b, blen);
	bool same = x != NULL && y != NULL && same_value(x, y);

	yajl_tree_free(x);
	yajl_tree_free(y);
	return same;
}

/* A member of the object json as JSON text: len 0 when it is absent. */
static void
member_or_none(const char *json, size_t len, const char *key, const char **v, size_t *vlen)
{
	if (!jsonspan_member(json, len, key, v, vlen)) {
		*v = "";
		*vlen = 0;
	}
}

/* At most max bytes of p, not cutting a UTF-8 sequence; the quotes of a string dropped. */
static int
shown(const char **p, size_t len, size_t max)
{
	if (len >= 2 && (*p)[0] == '"' && (*p)[len - 1] == '"') {
		(*p)++;
		len -= 2;
	}
	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)(*p)[len] & 0xc0) == 0x80) {
			len--;
		}
	}
	return (int)len;
}

const char *
handshake_check_init(const struct handshake *hs, const struct jsonrpc_scanner *scan,
		     const char *line, size_t len, char *why, size_t why_size)
{
	const char *result, *v, *was = hs->proto.len > 0 ? hs->proto.buf : "";
	size_t rlen, vlen;

	if (scan->kind == JSONRPC_ERROR) {
		const char *err = "", *msg = "";
		size_t elen = 0, mlen = 0;

		if (jsonspan_member(line, len, "error", &err, &elen)) {
			member_or_none(err, elen, "message", &msg, &mlen);
		}
		int n = shown(&msg, mlen, 200);

		(void)snprintf(why, why_size, "the restarted server refused initialize: %.*s",
			       n > 0 ? n : 12, n > 0 ? msg : "(no message)");
		return why;
	}
	if (!jsonspan_member(line, len, "result", &result, &rlen)) {
		return "the restarted server answered initialize without a result";
	}
	member_or_none(result, rlen, "protocolVersion", &v, &vlen);
	if (!same_json(v, vlen, hs->proto.buf, hs->proto.len)) {
		int n = shown(&v, vlen, 40), m = shown(&was, hs->proto.len, 40);

		(void)snprintf(why, why_size,
			       "the restarted server's protocol version differs from the first "
			       "one's (%.*s, was %.*s)",
			       n > 0 ? n : 4, n > 0 ? v : "none", m > 0 ? m : 4,
			       m > 0 ? was : "none");
		return why;
	}
	member_or_none(result, rlen, "capabilities", &v, &vlen);
	if (!same_json(v, vlen, hs->caps.buf, hs->caps.len)) {
		return "the restarted server's capabilities differ from the first one's";
	}
	return NULL;
}

bool
handshake_replay_next(struct handshake *hs, size_t k, struct sbuf *b, bool *is_request, char *id,
		      size_t id_size)
{
	if (hs->initialized) {
		if (k == 0) {
			sbuf_adds(b,
				  "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
			*is_request = false;
			return true;
		}
		k--;
	}
	const char *method = NULL, *params = NULL;
	size_t plen = 0;

	if (hs->have_level && k == 0) {
		method = "logging/setLevel";
		params = hs->level_params.buf;
		plen = hs->level_params.len;
	} else {
		k -= hs->have_level;
		if (k >= hs->n_subs) {
			return false;
		}
		method = "resources/subscribe";
		params = hs->subs[k].params;
		plen = hs->subs[k].params_len;
	}
	next_id(hs, id, id_size);
	sbuf_adds(b, "{\"jsonrpc\":\"2.0\",\"id\":");
	sbuf_adds(b, id);
	sbuf_adds(b, ",\"method\":\"");
	sbuf_adds(b, method);
	sbuf_adds(b, "\",\"params\":");
	sbuf_add(b, params, plen);
	sbuf_adds(b, "}");
	*is_request = true;
	return true;
}

bool
handshake_is_replay_id(const char *id, size_t len)
{
	static const char prefix[] = "\"" HANDSHAKE_ID "-";
	const size_t n = sizeof(prefix) - 1;

	/* "mcpmux-replay-N": the prefix, digits, the closing quote */
	if (len < n + 2 || memcmp(id, prefix, n) != 0 || id[len - 1] != '"') {
		return false;
	}
	for (size_t i = n; i < len - 1; i++) {
		if (id[i] < '0' || id[i] > '9') {
			return false;
		}
	}
	return true;
}
