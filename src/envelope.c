/*
 * envelope: a structural pass over one envelope line.
 */
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <yajl/yajl_parse.h>

#include "mcpmux/envelope.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/jsonspan.h"

struct cursor {
	const char *p, *end;
};

static inline void
skip_ws(struct cursor *c)
{
	/* Most envelopes have no white space between their tokens: one test says so. */
	while (c->p < c->end && (unsigned char)*c->p <= ' ' &&
	       (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n')) {
		c->p++;
	}
}

/* Past the value at c->p (jsonspan's structural pass); false when it does not end. */
static bool
skip_value(struct cursor *c)
{
	const char *past = jsonspan_skip(c->p, c->end);

	if (past == NULL) {
		return false;
	}
	c->p = past;
	return true;
}

static bool
key_is(const char *k, size_t len, const char *name)
{
	return strlen(name) == len && memcmp(k, name, len) == 0;
}

/*
 * The inside of a string that is valid as it is: only a backslash, a tab or a CR needs a
 * closer look (jsonrpc_text_ok() lets tab and CR through, for white space).
 */
static bool
plain_string(const char *p, size_t len)
{
	return memchr(p, '\\', len) == NULL && memchr(p, '\t', len) == NULL &&
	       memchr(p, '\r', len) == NULL;
}

/*
 * Is span one valid JSON value?  (For members mcpmux does not interpret.)  The whole line
 * has passed jsonrpc_text_ok(), so a string without a backslash is valid as it is.
 */
static bool
valid_json(const char *p, size_t len)
{
	if (len >= 2 && p[0] == '"' && plain_string(p + 1, len - 2)) {
		return true;
	}
	yajl_handle h = yajl_alloc(NULL, NULL, NULL);
	bool ok;

	if (h == NULL) {
		return false;
	}
	ok = yajl_parse(h, (const unsigned char *)p, len) == yajl_status_ok &&
	     yajl_complete_parse(h) == yajl_status_ok;
	yajl_free(h);
	return ok;
}

static bool
is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/*
 * The message's value starts at v and is the envelope's last member: where it ends (the
 * line's closing brace and white space taken off), or NULL if the line ends otherwise.
 */
static const char *
last_member_end(const char *v, const char *end)
{
	while (end > v && is_ws(end[-1])) {
		end--;
	}
	if (end == v || end[-1] != '}') {
		return NULL;
	}
	end--;
	while (end > v && is_ws(end[-1])) {
		end--;
	}
	return end > v ? end : NULL;
}

static enum envelope_status parse(struct envelope *e, const char *line, size_t len,
				  struct jsonrpc_scanner *scan);

/* Past white space and then the byte ch, or false. */
static inline bool
eat_ch(struct cursor *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

/* Past white space and then the n bytes of lit (a key with its quotes), or false. */
static inline bool
eat_lit(struct cursor *c, const char *lit, size_t n)
{
	skip_ws(c);
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) {
		return false;
	}
	c->p += n;
	return true;
}

/*
 * Where a session id of ASCII from the space up, without a backslash, ends: the first
 * byte in [p, end) that is a quote, a backslash, below the space or not ASCII (end if
 * none).
 * Such an id is its own JSON text, and valid as it is.
 */
static const char *
plain_id_end(const char *p, const char *end)
{
#if defined(__SSE2__)
	const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
		      backslash = _mm_set1_epi8('\\');

	for (; end - p >= 16; p += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		/* Signed: bytes past 0x7f are below the space too. */
		int stop = _mm_movemask_epi8(_mm_or_si128(
			_mm_cmplt_epi8(v, space),
			_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash))));

		if (stop != 0) {
			return p + __builtin_ctz((unsigned)stop);
		}
	}
#endif
	for (; p < end; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch < 0x20 || ch >= 0x80 || ch == '"' || ch == '\\') {
			break;
		}
	}
	return p;
}

/*
 * The envelope as connect and most clients write it, {"session":"ID","message":...},
 * read without the structural pass: its own bytes are matched and text-checked here, the
 * message is left to the scanner (which checks its text itself), and whatever follows it
 * can only be white space and the closing brace.  Anything else (another member, a
 * session that is not a plain string, a message that does not scan): false, and the line
 * takes the general way.  The result is the same either way (fuzz_envelope).
 */
static bool
parse_usual(struct envelope *e, const char *line, size_t len, struct jsonrpc_scanner *scan,
	    bool framed, bool *scanned_bad)
{
	struct cursor c = { line, line + len };

	if (!eat_ch(&c, '{') || !eat_lit(&c, "\"session\"", 9) || !eat_ch(&c, ':') ||
	    !eat_ch(&c, '"')) {
		return false;
	}
	const char *sid = c.p, *q = plain_id_end(sid, c.end);

	if (q == c.end || *q != '"') {
		return false; /* escapes, control characters, UTF-8: the general way judges it */
	}
	c.p = q + 1;
	if (!eat_ch(&c, ',') || !eat_lit(&c, "\"message\"", 9) || !eat_ch(&c, ':')) {
		return false;
	}
	skip_ws(&c);
	const char *v = c.p, *vend = last_member_end(v, c.end);

	/*
	 * Around the message, only the bytes matched above: its own text, white space and a
	 * session id of ASCII from the space up.  The text pass could refuse none of them but
	 * a "\n", which a framed line cannot hold.
	 */
	if (vend == NULL || (!framed && (!jsonrpc_text_ok(line, (size_t)(v - line)) ||
					 !jsonrpc_text_ok(vend, (size_t)(c.end - vend))))) {
		return false;
	}
	if ((framed ? jsonrpc_scan_line(scan, v, (size_t)(vend - v))
		    : jsonrpc_scan(scan, v, (size_t)(vend - v))) == JSONRPC_INVALID_JSON) {
		*scanned_bad = true; /* no second try at it */
		return false;
	}
	e->has_session = true;
	e->session_is_string = true;
	e->session = sid;
	e->session_len = (size_t)(q - sid);
	e->has_message = true;
	e->message = v;
	e->message_len = (size_t)(vend - v);
	e->scanned = true;
	return true;
}

static enum envelope_status
parse_any(struct envelope *e, const char *line, size_t len, struct jsonrpc_scanner *scan,
	  bool framed)
{
	bool scanned_bad = false;

	memset(e, 0, sizeof(*e));
	if (scan != NULL && parse_usual(e, line, len, scan, framed, &scanned_bad)) {
		return ENVELOPE_OK;
	}
	memset(e, 0, sizeof(*e));
	return parse(e, line, len, scanned_bad ? NULL : scan);
}

enum envelope_status
envelope_parse(struct envelope *e, const char *line, size_t len, struct jsonrpc_scanner *scan)
{
	return parse_any(e, line, len, scan, false);
}

enum envelope_status
envelope_parse_line(struct envelope *e, const char *line, size_t len, struct jsonrpc_scanner *scan)
{
	return parse_any(e, line, len, scan, true);
}

static enum envelope_status
parse(struct envelope *e, const char *line, size_t len, struct jsonrpc_scanner *scan)
{
	struct cursor c = { line, line + len };

	if (!jsonrpc_text_ok(line, len)) {
		goto not_json;
	}
	skip_ws(&c);
	if (c.p >= c.end || *c.p != '{') {
		/* A non-object may still be valid JSON: tell the two apart. */
		if (valid_json(line, len)) {
			e->error = "Invalid Request: an envelope is a JSON object";
			return ENVELOPE_INVALID;
		}
		goto not_json;
	}
	c.p++;
	skip_ws(&c);
	if (c.p < c.end && *c.p == '}') {
		c.p++;
		goto tail;
	}
	for (;;) {
		skip_ws(&c);
		if (c.p >= c.end || *c.p != '"') {
			goto not_json;
		}
		const char *k = c.p + 1;

		if (!skip_value(&c)) {
			goto not_json;
		}
		size_t klen = (size_t)(c.p - 1 - k);

		if (!plain_string(k, klen) && !valid_json(k - 1, klen + 2)) {
			goto not_json; /* a bad escape, a tab or a CR in a key */
		}

		skip_ws(&c);
		if (c.p >= c.end || *c.p != ':') {
			goto not_json;
		}
		c.p++;
		skip_ws(&c);
		const char *v = c.p;

		if (scan != NULL && e->has_session && !e->has_message &&
		    key_is(k, klen, "message")) {
			/*
			 * After the session (the order connect and most clients write), most
			 * likely the last member: if what runs from here to the closing brace
			 * is one JSON value, it is the message (a member after it would make
			 * that span no JSON value), and the line is done.  (Another order
			 * takes the structural pass at once: a failed try costs a scan.)
			 */
			const char *vend = last_member_end(v, c.end);

			if (vend != NULL && jsonrpc_scan_checked(scan, v, (size_t)(vend - v)) !=
						    JSONRPC_INVALID_JSON) {
				e->has_message = true;
				e->message = v;
				e->message_len = (size_t)(vend - v);
				e->scanned = true;
				return ENVELOPE_OK;
			}
			scan = NULL; /* the structural pass, as without a scanner */
		}
		if (!skip_value(&c)) {
			goto not_json;
		}
		size_t vlen = (size_t)(c.p - v);

		if (key_is(k, klen, "message") && e->has_message &&
		    !valid_json(e->message, e->message_len)) {
			/* A repeated member: the last one counts (as in most JSON parsers), but
			 * the line must still be JSON, the earlier one included. */
			goto not_json;
		}
		if (key_is(k, klen, "message")) {
			e->has_message = true;
			e->message = v;
			e->message_len = vlen;
		} else if (key_is(k, klen, "session") || key_is(k, klen, "event")) {
			bool is_string = vlen >= 2 && v[0] == '"';

			if (!valid_json(v, vlen)) {
				goto not_json;
			}
			if (key_is(k, klen, "session")) {
				e->has_session = true;
				e->session_is_string = is_string;
				e->session = is_string ? v + 1 : v;
				e->session_len = is_string ? vlen - 2 : vlen;
			} else if (is_string) {
				e->has_event = true;
				e->event = v + 1;
				e->event_len = vlen - 2;
			}
		} else if (key_is(k, klen, "keep")) {
			e->has_keep = true;
			if (vlen == 4 && memcmp(v, "true", 4) == 0) {
				e->keep = true;
			} else if (vlen == 5 && memcmp(v, "false", 5) == 0) {
				e->keep = false; /* (a repeated member: the last one counts) */
			} else {
				if (!valid_json(v, vlen)) {
					goto not_json;
				}
				e->error = "Invalid Request: \"keep\" must be true or false";
				return ENVELOPE_INVALID;
			}
		} else if (!valid_json(v, vlen)) {
			goto not_json;
		}
		skip_ws(&c);
		if (c.p < c.end && *c.p == ',') {
			c.p++;
			continue;
		}
		if (c.p < c.end && *c.p == '}') {
			c.p++;
			break;
		}
		goto not_json;
	}
tail:
	skip_ws(&c);
	if (c.p != c.end) {
		goto not_json;
	}
	return ENVELOPE_OK;
not_json:
	e->error = "Parse error: not valid JSON";
	return ENVELOPE_NOT_JSON;
}

/* ---- bigscan ---- */

void
envelope_bigscan_init(struct envelope_bigscan *b)
{
	memset(b, 0, sizeof(*b));
	jsonrpc_idscan_init(&b->id);
}

/* The key string's byte c at depth 1, matched against "session" and "message". */
static void
bigscan_key_byte(struct envelope_bigscan *b, char c)
{
	static const char session[] = "session", message[] = "message";

	if (b->key_match < 0 || b->key_match >= 7) {
		b->key_match = -1;
		return;
	}
	if (b->key_match == 0) {
		b->key = c == 's' ? 1 : c == 'm' ? 2 : 0;
	}
	if (b->key == 0 || c != (b->key == 1 ? session : message)[b->key_match]) {
		b->key_match = -1;
		return;
	}
	b->key_match++;
}

void
envelope_bigscan_feed(struct envelope_bigscan *b, const char *p, size_t len)
{
	size_t from = 0; /* where the message's bytes in p began */

	/* Until both are known: the session (or that it is unusable), and the message's id
	 * and kind (or that the message ended without them). */
	for (size_t i = 0;
	     i < len && !(b->in_session != 0 && b->in_session != 1 && b->message_seen &&
			  (!b->in_message ||
			   (!b->batch && b->id.found && (b->id.has_method || b->id.has_answer))));
	     i++) {
		char c = p[i];

		if (b->in_string) {
			if (b->escape) {
				b->escape = false;
				continue;
			}
			if (c == '\\') {
				b->escape = true;
				b->key_match = -1;
				if (b->in_session == 1) {
					b->in_session = -1; /* a valid session ID has no escapes */
				}
			} else if (c == '"') {
				b->in_string = false;
				if (b->in_session == 1) {
					b->in_session = 2;
				}
				if (b->is_key) {
					b->is_key = false;
					b->key = b->key_match == 7 ? b->key : 0;
				}
			} else if (b->is_key) {
				bigscan_key_byte(b, c);
			} else if (b->in_session == 1) {
				if (b->session_len < sizeof(b->session)) {
					b->session[b->session_len++] = c;
				} else {
					b->in_session = -1;
				}
			}
			continue;
		}
		switch (c) {
		case '"':
			b->in_string = true;
			if (b->depth == 1 && b->want && b->key == 1 && b->in_session == 0) {
				b->in_session = 1;
			} else if (b->depth == 1 && b->is_key) {
				b->key_match = 0;
				b->key = 0;
			} else {
				b->is_key = false;
			}
			b->want = false;
			break;
		case '{':
		case '[':
			if (b->depth == 1 && b->want && b->key == 2 && (c == '{' || b->batches) &&
			    !b->message_seen) {
				b->in_message = b->message_seen = true;
				/* A batch's elements are fed as messages of their own. */
				b->batch = c == '[';
				b->id.batch = b->batch;
				from = i + b->batch;
			}
			b->depth++;
			b->want = false;
			b->is_key = b->depth == 1 && c == '{';
			break;
		case '}':
		case ']':
			b->depth--;
			if (b->in_message && b->depth == 1) {
				jsonrpc_idscan_feed(&b->id, p + from, i + !b->batch - from);
				b->in_message = false;
			}
			break;
		case ',':
			b->is_key = b->depth == 1;
			b->want = false;
			break;
		case ':':
			b->want = b->depth == 1;
			break;
		default:
			if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
				b->want = false;
			}
			break;
		}
	}
	if (b->in_message) {
		jsonrpc_idscan_feed(&b->id, p + from, len - from);
	}
}

const char *
envelope_bigscan_session(const struct envelope_bigscan *b, size_t *len)
{
	if (b->in_session != 2) {
		return NULL;
	}
	*len = b->session_len;
	return b->session;
}

const char *
envelope_bigscan_id(const struct envelope_bigscan *b, size_t *len)
{
	return jsonrpc_idscan_id(&b->id, len);
}

bool
envelope_bigscan_is_answer(const struct envelope_bigscan *b)
{
	return jsonrpc_idscan_is_answer(&b->id);
}
