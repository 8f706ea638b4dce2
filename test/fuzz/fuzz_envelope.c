/*
 * Fuzz target: envelope_parse(), and what serve does with its result.
 *
 * The input is one line (skipped if it holds a newline: framing never hands one out).
 * Checked:
 *
 *   - every span it returns (session, message, event) lies inside the line;
 *   - a line that is JSON (yajl's verdict, in strict UTF-8) is never called "not JSON":
 *     an object is an envelope (OK) unless a "keep" is not a boolean, anything else is
 *     INVALID;
 *   - for such a line, the spans mean what the tree says: the message span is valid JSON
 *     and equal to the tree's "message" (the last one), "session" and "keep" likewise;
 *   - serve forwards the message span once jsonrpc_scan_checked() takes it (which answers
 *     as jsonrpc_scan() does): an envelope that is OK and whose message (if any) scans as
 *     JSON must be JSON as a whole line, so that no byte of a broken line reaches a
 *     backend or earns anything but -32700.
 */
#include <yajl/yajl_tree.h>

#include "fuzz.h"

#include "mcpmux/envelope.h"
#include "mcpmux/jsonrpc.h"

static bool
inside(const char *line, size_t len, const char *p, size_t n)
{
	return p >= line && p <= line + len && n <= (size_t)(line + len - p);
}

/* Do two trees hold the same value?  (Member order matters: spans are byte-exact.) */
static bool
val_equal(yajl_val a, yajl_val b, int limit)
{
	if (limit <= 0) {
		return true;
	}
	if (a == NULL || b == NULL) {
		return a == b;
	}
	if (a->type != b->type) {
		return false;
	}
	switch (a->type) {
	case yajl_t_string:
		return strcmp(a->u.string, b->u.string) == 0;
	case yajl_t_number:
		return strcmp(a->u.number.r, b->u.number.r) == 0;
	case yajl_t_object:
		if (a->u.object.len != b->u.object.len) {
			return false;
		}
		for (size_t i = 0; i < a->u.object.len; i++) {
			if (strcmp(a->u.object.keys[i], b->u.object.keys[i]) != 0 ||
			    !val_equal(a->u.object.values[i], b->u.object.values[i], limit - 1)) {
				return false;
			}
		}
		return true;
	case yajl_t_array:
		if (a->u.array.len != b->u.array.len) {
			return false;
		}
		for (size_t i = 0; i < a->u.array.len; i++) {
			if (!val_equal(a->u.array.values[i], b->u.array.values[i], limit - 1)) {
				return false;
			}
		}
		return true;
	default:
		return true;
	}
}

static yajl_val
parse_span(const char *p, size_t n)
{
	char *copy = fuzz_strndup(p, n);
	yajl_val v = yajl_tree_parse(copy, NULL, 0);

	free(copy);
	return v;
}

/* The envelope of a line that is valid JSON, checked against its tree. */
static void
check_valid(const char *line, size_t len, enum envelope_status st, const struct envelope *e)
{
	char *copy = fuzz_strndup(line, len);
	yajl_val top = yajl_tree_parse(copy, NULL, 0), message = NULL, session = NULL, keep = NULL;
	bool keep_bad = false;

	FUZZ_CHECK(top != NULL, "yajl_tree_parse refused valid JSON");
	FUZZ_CHECK(st != ENVELOPE_NOT_JSON, "valid JSON called not JSON");
	if (!YAJL_IS_OBJECT(top)) {
		FUZZ_CHECK(st == ENVELOPE_INVALID, "a non-object accepted as an envelope");
		goto out;
	}
	for (size_t i = 0; i < top->u.object.len; i++) {
		const char *k = top->u.object.keys[i];
		yajl_val v = top->u.object.values[i];

		if (strcmp(k, "message") == 0) {
			message = v;
		} else if (strcmp(k, "session") == 0) {
			session = v;
		} else if (strcmp(k, "keep") == 0) {
			keep = v;
			keep_bad = keep_bad || !(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v));
		}
	}
	/* Keys with escapes ("mess\u0061ge") are other members to envelope_parse. */
	bool escaped_keys = memchr(line, '\\', len) != NULL;

	if (escaped_keys) {
		goto out;
	}
	FUZZ_CHECK(st == (keep_bad ? ENVELOPE_INVALID : ENVELOPE_OK), "status %d, keep_bad %d",
		   (int)st, keep_bad);
	if (st != ENVELOPE_OK) {
		goto out;
	}
	FUZZ_CHECK(e->has_message == (message != NULL), "has_message");
	if (message != NULL) {
		FUZZ_CHECK(fuzz_yajl_valid(e->message, e->message_len),
			   "message span of a valid line is not JSON");
		yajl_val got = parse_span(e->message, e->message_len);

		FUZZ_CHECK(got != NULL && val_equal(got, message, 600),
			   "the message span is not the line's message");
		yajl_tree_free(got);
	}
	FUZZ_CHECK(e->has_session == (session != NULL), "has_session");
	if (session != NULL) {
		FUZZ_CHECK(e->session_is_string == YAJL_IS_STRING(session), "session_is_string");
		if (YAJL_IS_STRING(session)) {
			FUZZ_CHECK(strlen(session->u.string) == e->session_len &&
					   memcmp(session->u.string, e->session, e->session_len) ==
						   0,
				   "session differs");
		}
	}
	FUZZ_CHECK(e->has_keep == (keep != NULL), "has_keep");
	FUZZ_CHECK(keep == NULL || e->keep == YAJL_IS_TRUE(keep), "keep");
out:
	yajl_tree_free(top);
	free(copy);
}

static bool
same_str(const struct jsonrpc_scanner *a, bool ha, struct jsonrpc_str sa,
	 const struct jsonrpc_scanner *b, bool hb, struct jsonrpc_str sb)
{
	return ha == hb && (!ha || (sa.len == sb.len &&
				    memcmp(jsonrpc_str(a, sa), jsonrpc_str(b, sb), sa.len) == 0));
}

/* Did two scans find the same: kind, id, method, the params serve reads, batch size? */
static bool
same_scan(const struct jsonrpc_scanner *a, const struct jsonrpc_scanner *b)
{
	const struct jsonrpc_params *p = &a->params, *q = &b->params;

	return a->kind == b->kind && a->n_items == b->n_items &&
	       same_str(a, a->one.has_id, a->one.id, b, b->one.has_id, b->one.id) &&
	       same_str(a, a->one.has_method, a->one.method, b, b->one.has_method, b->one.method) &&
	       same_str(a, p->has_request_id, p->request_id, b, q->has_request_id, q->request_id) &&
	       same_str(a, p->has_session, p->session, b, q->has_session, q->session) &&
	       same_str(a, p->has_reason, p->reason, b, q->has_reason, q->reason) &&
	       p->has_grace_ms == q->has_grace_ms &&
	       (!p->has_grace_ms || memcmp(&p->grace_ms, &q->grace_ms, sizeof(double)) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct envelope e;

	if (memchr(data, '\n', size) != NULL) {
		return 0; /* framed lines never hold a newline (see fuzz_framer) */
	}
	enum envelope_status st = envelope_parse(&e, line, size, NULL);

	/*
	 * With a scanner (serve's way: the last member's span scanned ahead), every verdict
	 * and span must be the same as without, and the scan ahead must be the scan serve
	 * would have made of that span.
	 */
	{
		/* As serve has it: one scanner for every line, reading endRun's params. */
		static struct jsonrpc_scanner ahead;
		static bool ready;
		struct jsonrpc_scanner again;
		struct envelope f;

		if (!ready) {
			jsonrpc_init(&ahead);
			ahead.params_method = "mcpmux/endRun";
			ready = true;
		}
		/* Lines hold no "\n" here: both ways of saying so (or not), in turn. */
		enum envelope_status st2 = size % 2 == 1
						   ? envelope_parse_line(&f, line, size, &ahead)
						   : envelope_parse(&f, line, size, &ahead);

		FUZZ_CHECK(st2 == st, "with a scanner %d, without %d", (int)st2, (int)st);
		FUZZ_CHECK(f.has_message == e.has_message && f.message == e.message &&
				   f.message_len == e.message_len,
			   "the message span differs with a scanner");
		FUZZ_CHECK(f.has_session == e.has_session && f.session == e.session &&
				   f.session_len == e.session_len &&
				   f.session_is_string == e.session_is_string,
			   "the session differs with a scanner");
		FUZZ_CHECK(f.has_keep == e.has_keep && f.keep == e.keep &&
				   f.has_event == e.has_event && f.event == e.event &&
				   f.event_len == e.event_len,
			   "keep or event differs with a scanner");
		FUZZ_CHECK((f.error == NULL) == (e.error == NULL) &&
				   (f.error == NULL || strcmp(f.error, e.error) == 0),
			   "the reason differs with a scanner");
		FUZZ_CHECK(!f.scanned || st2 == ENVELOPE_OK, "scanned, yet not OK");
		if (f.scanned) {
			jsonrpc_init(&again);
			again.params_method = ahead.params_method;
			FUZZ_CHECK(ahead.kind != JSONRPC_INVALID_JSON, "scanned as invalid JSON");
			(void)jsonrpc_scan_checked(&again, e.message, e.message_len);
			FUZZ_CHECK(same_scan(&ahead, &again),
				   "the scan ahead differs from a scan of the span");
			jsonrpc_release(&again);
		}
	}

	FUZZ_CHECK(st == ENVELOPE_OK || st == ENVELOPE_NOT_JSON || st == ENVELOPE_INVALID,
		   "status %d", (int)st);
	FUZZ_CHECK(st == ENVELOPE_OK || e.error != NULL, "no reason for a refused envelope");
	if (e.has_message) {
		/* May be empty ("message": ,): jsonrpc_scan() then answers -32700. */
		FUZZ_CHECK(inside(line, size, e.message, e.message_len), "message span outside");
	}
	if (e.has_session) {
		FUZZ_CHECK(inside(line, size, e.session, e.session_len), "session span outside");
	}
	if (e.has_event) {
		FUZZ_CHECK(inside(line, size, e.event, e.event_len), "event span outside");
	}

	/* JSON text is UTF-8 (RFC 8259): strictly so, which yajl alone does not check. */
	bool valid =
		fuzz_yajl_valid(line, size) && fuzz_utf8_strict((const unsigned char *)line, size);

	if (valid) {
		check_valid(line, size, st, &e);
	}
	if (st == ENVELOPE_OK && e.has_message) {
		/*
		 * What serve does next: one scan of the span, forwarded unless INVALID_JSON,
		 * without the text pass the whole line had (jsonrpc_scan_checked()), which
		 * must answer as the full scan does.
		 */
		struct jsonrpc_scanner s;

		jsonrpc_init(&s);
		enum jsonrpc_kind kind = jsonrpc_scan_checked(&s, e.message, e.message_len);
		enum jsonrpc_kind full = jsonrpc_scan(&s, e.message, e.message_len);

		jsonrpc_release(&s);
		FUZZ_CHECK(kind == full, "the checked scan says %d, the full one %d", (int)kind,
			   (int)full);
		FUZZ_CHECK(kind == JSONRPC_INVALID_JSON || valid,
			   "an envelope that is not JSON passes with a valid message");
	} else if (st == ENVELOPE_OK) {
		FUZZ_CHECK(valid, "an envelope that is not JSON accepted without a message");
	}
	return 0;
}
