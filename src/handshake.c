/*
 * handshake: record the client's session set-up, and replay it to a fresh server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/handshake.h"

void
handshake_init(struct handshake *hs)
{
	memset(hs, 0, sizeof(*hs));
}

static void
subs_clear(struct handshake *hs)
{
	for (size_t i = 0; i < hs->n_subs; i++) {
		free(hs->subs[i].uri);
		free(hs->subs[i].params);
	}
	free(hs->subs);
	hs->subs = NULL;
	hs->n_subs = 0;
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

static void
set(struct sbuf *b, const char *p, size_t len)
{
	sbuf_reset(b);
	sbuf_add(b, p, len);
}

/* The params of line (JSON text), "{}" when it has none. */
static void
params_of(const char *line, size_t len, const char **p, size_t *plen)
{
	if (!jsonrpc_member(line, len, "params", p, plen)) {
		*p = "{}";
		*plen = 2;
	}
}

static void
subscribe(struct handshake *hs, const char *params, size_t plen)
{
	const char *uri;
	size_t ulen;

	if (!jsonrpc_member(params, plen, "uri", &uri, &ulen)) {
		return;
	}
	for (size_t i = 0; i < hs->n_subs; i++) {
		if (hs->subs[i].uri_len == ulen && memcmp(hs->subs[i].uri, uri, ulen) == 0) {
			return; /* subscribed already */
		}
	}
	if (hs->n_subs >= HANDSHAKE_SUBS) {
		return;
	}
	struct handshake_sub *ns = realloc(hs->subs, (hs->n_subs + 1) * sizeof(*ns));

	if (ns == NULL) {
		return;
	}
	hs->subs = ns;
	struct handshake_sub *s = &hs->subs[hs->n_subs];

	s->uri = malloc(ulen);
	s->params = malloc(plen);
	if (s->uri == NULL || s->params == NULL) {
		free(s->uri);
		free(s->params);
		return;
	}
	memcpy(s->uri, uri, ulen);
	s->uri_len = ulen;
	memcpy(s->params, params, plen);
	s->params_len = plen;
	hs->n_subs++;
}

static void
unsubscribe(struct handshake *hs, const char *params, size_t plen)
{
	const char *uri;
	size_t ulen;

	if (!jsonrpc_member(params, plen, "uri", &uri, &ulen)) {
		return;
	}
	for (size_t i = 0; i < hs->n_subs; i++) {
		if (hs->subs[i].uri_len == ulen && memcmp(hs->subs[i].uri, uri, ulen) == 0) {
			free(hs->subs[i].uri);
			free(hs->subs[i].params);
			hs->subs[i] = hs->subs[--hs->n_subs];
			return;
		}
	}
}

void
handshake_observe_client(struct handshake *hs, const struct jsonrpc_scanner *scan, const char *line,
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
		char key[JSONRPC_KEY_MAX(64)];
		size_t klen = it->id.len <= 64
				      ? jsonrpc_id_key(jsonrpc_str(scan, it->id), it->id.len, key)
				      : 0;

		/* A new initialize: a new protocol session, set up again by the client. */
		params_of(line, len, &p, &plen);
		set(&hs->init_params, p, plen);
		set(&hs->init_key, key, klen);
		hs->have_init = klen > 0 && !hs->init_params.failed;
		hs->have_result = false;
		hs->initialized = false;
		hs->have_level = false;
		subs_clear(hs);
	} else if (jsonrpc_method_is(scan, it, "logging/setLevel")) {
		params_of(line, len, &p, &plen);
		set(&hs->level_params, p, plen);
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
	char key[JSONRPC_KEY_MAX(64)];
	const char *result, *v;
	size_t rlen, vlen, klen;

	if (!hs->have_init || hs->have_result || scan->kind != JSONRPC_RESPONSE ||
	    scan->one.id.len > 64) {
		return;
	}
	klen = jsonrpc_id_key(jsonrpc_str(scan, scan->one.id), scan->one.id.len, key);
	if (klen != hs->init_key.len || memcmp(key, hs->init_key.buf, klen) != 0 ||
	    !jsonrpc_member(line, len, "result", &result, &rlen)) {
		return;
	}
	sbuf_reset(&hs->proto);
	sbuf_reset(&hs->caps);
	if (jsonrpc_member(result, rlen, "protocolVersion", &v, &vlen)) {
		sbuf_add(&hs->proto, v, vlen);
	}
	if (jsonrpc_member(result, rlen, "capabilities", &v, &vlen)) {
		sbuf_add(&hs->caps, v, vlen);
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

/* JSON text without the white space outside strings: two layouts of one value compare equal. */
static size_t
squeeze(const char *p, size_t len, char *out)
{
	size_t o = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (in_str) {
			out[o++] = c;
			if (c == '\\' && i + 1 < len) {
				out[o++] = p[++i];
			} else if (c == '"') {
				in_str = false;
			}
		} else if (c == '"') {
			in_str = true;
			out[o++] = c;
		} else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			out[o++] = c;
		}
	}
	return o;
}

static bool
same_json(const char *a, size_t alen, const char *b, size_t blen)
{
	char *x = malloc(alen + 1), *y = malloc(blen + 1);
	bool same = false;

	if (x != NULL && y != NULL) {
		size_t xl = squeeze(a, alen, x), yl = squeeze(b, blen, y);

		same = xl == yl && memcmp(x, y, xl) == 0;
	}
	free(x);
	free(y);
	return same;
}

const char *
handshake_check_init(const struct handshake *hs, const struct jsonrpc_scanner *scan,
		     const char *line, size_t len, char *why, size_t why_size)
{
	const char *result, *v;
	size_t rlen, vlen;

	if (scan->kind == JSONRPC_ERROR) {
		const char *err = "", *msg = "";
		size_t elen = 0, mlen = 0;

		if (jsonrpc_member(line, len, "error", &err, &elen)) {
			(void)jsonrpc_member(err, elen, "message", &msg, &mlen);
		}
		(void)snprintf(why, why_size, "the restarted server refused initialize: %.*s",
			       (int)(mlen > 200 ? 200 : mlen), msg);
		return why;
	}
	if (!jsonrpc_member(line, len, "result", &result, &rlen)) {
		return "the restarted server answered initialize without a result";
	}
	if (!jsonrpc_member(result, rlen, "protocolVersion", &v, &vlen) ||
	    !same_json(v, vlen, hs->proto.buf, hs->proto.len)) {
		(void)snprintf(why, why_size,
			       "the restarted server's protocol version differs from the first "
			       "one's (%.*s, was %.*s)",
			       (int)(vlen > 40 ? 40 : vlen), v,
			       (int)(hs->proto.len > 40 ? 40 : hs->proto.len), hs->proto.buf);
		return why;
	}
	if (!jsonrpc_member(result, rlen, "capabilities", &v, &vlen) ||
	    !same_json(v, vlen, hs->caps.buf, hs->caps.len)) {
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

	return len > sizeof(prefix) - 1 && memcmp(id, prefix, sizeof(prefix) - 1) == 0;
}
