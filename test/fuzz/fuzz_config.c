/*
 * Fuzz target: config_rewrite(), the client-config rewriter.
 *
 * The input is the file.  Checked, from the contract in config.h:
 *
 *   - a refusal has a reason and a position within the text; a success has text, and as
 *     many CHANGED and UPDATED entries as n_changed;
 *   - the text is refused as neither JSON nor JSON5 exactly when the reference check
 *     below refuses it (an independent reading of the JSON5 grammar: decoded to code
 *     points first, then parsed, sharing no code with json5.c); what yajl takes for JSON
 *     the reference takes too;
 *   - what comes out is JSON5 by the reference, and JSON by yajl when the input was;
 *   - only the entries that changed changed: the text outside their spans is the input's,
 *     and when no server changes, the output is the input, byte for byte;
 *   - wrapping is idempotent, with the same options and with others (B) after an update;
 *   - unwrap undoes wrap byte for byte, when wrap found nothing already wrapped and no
 *     entry is flagged inexact; whatever the options of the wrapped entries, unwrap gives
 *     the same text;
 *   - unwrap on the input itself obeys the same general rules.
 */
#include "fuzz.h"

#include "mcpmux/config.h"

static const struct config_opts wrap_opts = {
	.mcpmux = "/usr/bin/mcpmux",
	.log_dir = "/var/log/mcpmux",
	.eof_grace = "500",
};

static const struct config_opts other_opts = {
	.mcpmux = "/usr/bin/mcpmux",
	.eof_grace = "700",
	.idle_suspend = "60",
	.pool = "p",
};

/* ---- a reference JSON5 check ---- */

enum ref_verdict {
	REF_JSON5,
	REF_NOT,
	REF_TOO_DEEP,
};

struct ref {
	uint32_t *c; /* the text as code points */
	size_t n, i;
	unsigned depth;
	bool too_deep;
};

/* Decode strict UTF-8 into code points; false if it is not UTF-8. */
static bool
ref_decode(const unsigned char *p, size_t len, struct ref *r)
{
	if (!fuzz_utf8_strict(p, len)) {
		return false;
	}
	r->c = malloc((len + 1) * sizeof(*r->c));
	FUZZ_CHECK(r->c != NULL, "out of memory");
	for (size_t i = 0; i < len;) {
		uint32_t c = p[i];
		size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

		if (k > 1) {
			c &= 0x3fu >> (k - 1);
		}
		for (size_t j = 1; j < k; j++) {
			c = (c << 6) | (p[i + j] & 0x3fu);
		}
		r->c[r->n++] = c;
		i += k;
	}
	return true;
}

static uint32_t
ref_at(const struct ref *r, size_t i)
{
	return i < r->n ? r->c[i] : UINT32_MAX;
}

/* JSON5 WhiteSpace and LineTerminator: the spec's list, with Unicode's Zs. */
static bool
ref_white(uint32_t c)
{
	static const uint32_t zs[] = { 0x20,   0xa0,   0x1680, 0x2000, 0x2001, 0x2002,
				       0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
				       0x2009, 0x200a, 0x202f, 0x205f, 0x3000 };

	if (c == 9 || c == 0xb || c == 0xc || c == 0xfeff || c == 0xa || c == 0xd || c == 0x2028 ||
	    c == 0x2029) {
		return true;
	}
	for (size_t i = 0; i < sizeof(zs) / sizeof(zs[0]); i++) {
		if (zs[i] == c) {
			return true;
		}
	}
	return false;
}

static bool
ref_line_end(uint32_t c)
{
	return c == 0xa || c == 0xd || c == 0x2028 || c == 0x2029;
}

static bool
ref_digit(uint32_t c)
{
	return c >= '0' && c <= '9';
}

static bool
ref_hex(uint32_t c)
{
	return ref_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* n hex digits from i: their value, or -1. */
static long
ref_hex_value(const struct ref *r, size_t i, size_t n)
{
	long v = 0;

	for (size_t k = 0; k < n; k++) {
		uint32_t c = ref_at(r, i + k);

		if (!ref_hex(c)) {
			return -1;
		}
		v = v * 16 + (long)(ref_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

/* The identifier rule mcpmux documents: ASCII as ES5, any other non-space character. */
static bool
ref_id_start_cp(long c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '$' || c == '_' ||
	       (c >= 0x80 && !ref_white((uint32_t)c) && !(c >= 0xd800 && c <= 0xdfff));
}

/*
 * Length of the identifier character at i (1, or 6 for \uXXXX) that may stand first
 * (start) or later; 0 if there is none.  *bad when a backslash begins no valid one.
 */
static size_t
ref_id_char(const struct ref *r, size_t i, bool start, bool *bad)
{
	uint32_t c = ref_at(r, i);
	long v;

	*bad = false;
	if (c == '\\') {
		v = ref_at(r, i + 1) == 'u' ? ref_hex_value(r, i + 2, 4) : -1;
		if (v >= 0 && (ref_id_start_cp(v) || (!start && v >= '0' && v <= '9'))) {
			return 6;
		}
		*bad = true;
		return 0;
	}
	if (c == UINT32_MAX) {
		return 0;
	}
	return ref_id_start_cp(c) || (!start && ref_digit(c)) ? 1 : 0;
}

/* White space and comments; false on an unterminated block comment. */
static bool
ref_space(struct ref *r)
{
	for (;;) {
		uint32_t c = ref_at(r, r->i);

		if (c != UINT32_MAX && ref_white(c)) {
			r->i++;
		} else if (c == '/' && ref_at(r, r->i + 1) == '/') {
			r->i += 2;
			while (r->i < r->n && !ref_line_end(r->c[r->i])) {
				r->i++;
			}
		} else if (c == '/' && ref_at(r, r->i + 1) == '*') {
			r->i += 2;
			while (!(ref_at(r, r->i) == '*' && ref_at(r, r->i + 1) == '/')) {
				if (r->i >= r->n) {
					return false;
				}
				r->i++;
			}
			r->i += 2;
		} else {
			return true;
		}
	}
}

static bool
ref_string(struct ref *r)
{
	uint32_t q = r->c[r->i++];

	for (;;) {
		uint32_t c = ref_at(r, r->i++);

		if (c == UINT32_MAX || c == 0xa || c == 0xd) {
			return false;
		}
		if (c == q) {
			return true;
		}
		if (c != '\\') {
			continue;
		}
		c = ref_at(r, r->i++);
		if (c == UINT32_MAX) {
			return false;
		} else if (c == 0xd) {
			r->i += ref_at(r, r->i) == 0xa;
		} else if (c == '0') {
			if (ref_digit(ref_at(r, r->i))) {
				return false;
			}
		} else if (c >= '1' && c <= '9') {
			return false;
		} else if (c == 'x' || c == 'u') {
			size_t n = c == 'x' ? 2 : 4;

			if (ref_hex_value(r, r->i, n) < 0) {
				return false;
			}
			r->i += n;
		}
		/* Anything else: a character that stands for itself, or a continuation. */
	}
}

/* A keyword or a number: Infinity, NaN, true, false, null, or ES5 NumericLiteral. */
static bool
ref_word_is(const struct ref *r, size_t i, const char *w)
{
	size_t n = strlen(w);
	bool bad;

	for (size_t k = 0; k < n; k++) {
		if (ref_at(r, i + k) != (unsigned char)w[k]) {
			return false;
		}
	}
	return ref_id_char(r, i + n, false, &bad) == 0 && !bad;
}

static bool
ref_number(struct ref *r)
{
	size_t i = r->i, int_digits = 0, frac_digits = 0;
	bool bad;

	if (ref_at(r, i) == '+' || ref_at(r, i) == '-') {
		i++;
	}
	if (ref_word_is(r, i, "Infinity")) {
		r->i = i + 8;
		return true;
	}
	if (ref_word_is(r, i, "NaN")) {
		r->i = i + 3;
		return true;
	}
	if (ref_at(r, i) == '0' && (ref_at(r, i + 1) == 'x' || ref_at(r, i + 1) == 'X')) {
		i += 2;
		if (!ref_hex(ref_at(r, i))) {
			return false;
		}
		while (ref_hex(ref_at(r, i))) {
			i++;
		}
	} else {
		if (ref_at(r, i) == '0') {
			i++;
			int_digits = 1;
		} else {
			while (ref_digit(ref_at(r, i))) {
				i++;
				int_digits++;
			}
		}
		if (ref_at(r, i) == '.') {
			i++;
			while (ref_digit(ref_at(r, i))) {
				i++;
				frac_digits++;
			}
		}
		if (int_digits + frac_digits == 0) {
			return false;
		}
		if (ref_at(r, i) == 'e' || ref_at(r, i) == 'E') {
			i++;
			if (ref_at(r, i) == '+' || ref_at(r, i) == '-') {
				i++;
			}
			if (!ref_digit(ref_at(r, i))) {
				return false;
			}
			while (ref_digit(ref_at(r, i))) {
				i++;
			}
		}
	}
	/* ES5 7.8.3: no IdentifierStart or digit right after a numeric literal. */
	if (ref_digit(ref_at(r, i)) || ref_id_char(r, i, true, &bad) > 0 || bad) {
		return false;
	}
	r->i = i;
	return true;
}

static bool ref_value(struct ref *r);

static bool
ref_key(struct ref *r)
{
	bool bad;
	size_t k;
	uint32_t c = ref_at(r, r->i);

	if (c == '"' || c == '\'') {
		return ref_string(r);
	}
	if ((k = ref_id_char(r, r->i, true, &bad)) == 0) {
		return false;
	}
	r->i += k;
	while ((k = ref_id_char(r, r->i, false, &bad)) > 0) {
		r->i += k;
	}
	return !bad;
}

/* An object or array, at its opening bracket. */
static bool
ref_container(struct ref *r)
{
	bool obj = r->c[r->i] == '{';
	uint32_t close = obj ? '}' : ']';

	if (r->depth == CONFIG_MAX_DEPTH) {
		r->too_deep = true;
		return false;
	}
	r->depth++;
	r->i++;
	for (;;) {
		if (!ref_space(r)) {
			return false;
		}
		if (ref_at(r, r->i) == close) {
			break;
		}
		if (obj &&
		    (!ref_key(r) || !ref_space(r) || ref_at(r, r->i++) != ':' || !ref_space(r))) {
			return false;
		}
		if (!ref_value(r) || !ref_space(r)) {
			return false;
		}
		if (ref_at(r, r->i) == ',') {
			r->i++;
			continue;
		}
		if (ref_at(r, r->i) != close) {
			return false;
		}
		break;
	}
	r->i++;
	r->depth--;
	return true;
}

static bool
ref_value(struct ref *r)
{
	uint32_t c = ref_at(r, r->i);

	if (c == '{' || c == '[') {
		return ref_container(r);
	}
	if (c == '"' || c == '\'') {
		return ref_string(r);
	}
	if (ref_word_is(r, r->i, "true") || ref_word_is(r, r->i, "null")) {
		r->i += 4;
		return true;
	}
	if (ref_word_is(r, r->i, "false")) {
		r->i += 5;
		return true;
	}
	return ref_number(r);
}

static enum ref_verdict
ref_check(const char *p, size_t len)
{
	struct ref r = { 0 };
	bool ok;

	if (!ref_decode((const unsigned char *)p, len, &r)) {
		return REF_NOT;
	}
	ok = ref_space(&r) && ref_value(&r) && ref_space(&r) && r.i == r.n;
	free(r.c);
	return ok ? REF_JSON5 : r.too_deep ? REF_TOO_DEEP : REF_NOT;
}

/* ---- the checks ---- */

static size_t
bom_len(const char *p, size_t len)
{
	return len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
}

/* JSON by yajl, and UTF-8 by RFC 3629 (yajl lets U+110000 and beyond through). */
static bool
is_json(const char *p, size_t len)
{
	size_t skip = bom_len(p, len);

	return fuzz_utf8_strict((const unsigned char *)p, len) &&
	       fuzz_yajl_valid(p + skip, len - skip);
}

static bool
same(const struct config_result *a, const struct config_result *b)
{
	return a->text != NULL && b->text != NULL && a->len == b->len &&
	       memcmp(a->text, b->text, a->len) == 0;
}

/* Outside the spans of the entries that changed, out is in. */
static void
check_spans(const char *in, size_t len, const struct config_result *r)
{
	size_t at = 0, out_at = 0;

	for (size_t i = 0; i < r->n_entries; i++) {
		const struct config_entry *e = &r->entries[i];

		FUZZ_CHECK(e->start < e->end && e->end <= len, "entry span %zu-%zu", e->start,
			   e->end);
		FUZZ_CHECK(e->out_start <= e->out_end && e->out_end <= r->len,
			   "entry output span %zu-%zu", e->out_start, e->out_end);
		if (e->verdict == CONFIG_SKIPPED) {
			FUZZ_CHECK(e->out_end - e->out_start == e->end - e->start &&
					   memcmp(r->text + e->out_start, in + e->start,
						  e->end - e->start) == 0,
				   "a skipped entry changed");
			continue;
		}
		FUZZ_CHECK(e->start >= at, "entries out of order");
		FUZZ_CHECK(e->start - at == e->out_start - out_at &&
				   memcmp(in + at, r->text + out_at, e->start - at) == 0,
			   "text between entries changed");
		at = e->end;
		out_at = e->out_end;
	}
	FUZZ_CHECK(len - at == r->len - out_at && memcmp(in + at, r->text + out_at, len - at) == 0,
		   "text after the entries changed");
}

/* One rewrite, with the checks that hold for any result.  Returns its rc. */
static int
check_one(enum config_op op, const struct config_opts *o, const char *in, size_t len,
	  struct config_result *r)
{
	int rc = config_rewrite(op, in, len, o, r);
	enum ref_verdict ref = ref_check(in, len);

	if (rc == -1) {
		FUZZ_CHECK(r->text == NULL, "a refusal with text");
		FUZZ_CHECK(r->error[0] != '\0', "a refusal without a reason");
		FUZZ_CHECK(memchr(r->error, '\0', sizeof(r->error)) != NULL, "unterminated reason");
		FUZZ_CHECK(r->line <= len + 1 && r->col <= len + 1, "position %zu:%zu outside",
			   r->line, r->col);
		FUZZ_CHECK((r->line == 0) == (r->col == 0), "position %zu:%zu half set", r->line,
			   r->col);
		FUZZ_CHECK(r->syntax == (ref != REF_JSON5),
			   "syntax error %d, the reference says %d (%s)", r->syntax, ref, r->error);
		if (is_json(in, len)) {
			FUZZ_CHECK(!r->syntax || ref == REF_TOO_DEEP, "refused JSON: %s", r->error);
		}
		return rc;
	}
	FUZZ_CHECK(rc == 0, "rc %d", rc);
	FUZZ_CHECK(ref == REF_JSON5, "accepted what the reference refuses (%d)", ref);
	FUZZ_CHECK(r->text != NULL, "no text");
	FUZZ_CHECK(r->text[r->len] == '\0', "text not NUL-terminated");
	FUZZ_CHECK(r->n_changed <= r->n_entries, "changed %zu of %zu", r->n_changed, r->n_entries);
	size_t changed = 0;

	for (size_t i = 0; i < r->n_entries; i++) {
		const struct config_entry *e = &r->entries[i];

		FUZZ_CHECK(e->name != NULL, "an entry without a name");
		if (e->verdict != CONFIG_SKIPPED) {
			changed++;
			FUZZ_CHECK(e->before != NULL && e->after != NULL, "a change without lines");
		} else {
			FUZZ_CHECK(e->why != NULL, "a skip without a reason");
		}
		FUZZ_CHECK(!e->inexact || (op == CONFIG_WRAP && e->verdict == CONFIG_CHANGED),
			   "inexact, yet not wrapped");
	}
	FUZZ_CHECK(changed == r->n_changed, "%zu changed entries, n_changed %zu", changed,
		   r->n_changed);
	if (r->n_changed == 0) {
		FUZZ_CHECK(r->len == len && memcmp(r->text, in, len) == 0,
			   "unchanged servers, changed text");
	}
	check_spans(in, len, r);
	FUZZ_CHECK(ref_check(r->text, r->len) == REF_JSON5, "wrote what is not JSON5");
	if (is_json(in, len)) {
		FUZZ_CHECK(is_json(r->text, r->len), "JSON in, not JSON out");
	}
	return rc;
}

static bool
any(const struct config_result *r, enum config_verdict v, bool inexact)
{
	for (size_t i = 0; i < r->n_entries; i++) {
		if (r->entries[i].verdict == v && (!inexact || r->entries[i].inexact)) {
			return true;
		}
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct config_result w = { 0 }, w2 = { 0 }, u = { 0 }, u2 = { 0 }, b = { 0 }, b2 = { 0 },
			     ub = { 0 }, plain = { 0 };

	if (check_one(CONFIG_WRAP, &wrap_opts, in, size, &w) == 0) {
		/* Idempotent. */
		(void)check_one(CONFIG_WRAP, &wrap_opts, w.text, w.len, &w2);
		FUZZ_CHECK(w2.text != NULL && w2.n_changed == 0,
			   "wrapping twice changed %zu servers", w2.n_changed);
		FUZZ_CHECK(same(&w2, &w), "wrapping twice changed the text");
		/* Unwrap undoes it. */
		(void)check_one(CONFIG_UNWRAP, &wrap_opts, w.text, w.len, &u);
		FUZZ_CHECK(u.text != NULL, "the wrapped text does not unwrap: %s", u.error);
		FUZZ_CHECK(u.n_changed >= w.n_changed, "unwrapped %zu of %zu wrapped", u.n_changed,
			   w.n_changed);
		if (u.n_changed == w.n_changed && !any(&w, CONFIG_UPDATED, false) &&
		    !any(&w, CONFIG_CHANGED, true)) {
			FUZZ_CHECK(u.len == size && memcmp(u.text, in, size) == 0,
				   "wrap then unwrap is not the original");
		} else {
			/* Not the original, but what it means: wrapping it gives w's servers. */
			(void)check_one(CONFIG_WRAP, &wrap_opts, u.text, u.len, &u2);
			FUZZ_CHECK(u2.text != NULL && u2.n_entries == w.n_entries,
				   "the unwrapped text wraps to %zu servers, not %zu", u2.n_entries,
				   w.n_entries);
		}
		/* Other options for the wrapped entries: set, idempotent, and no matter to unwrap.
		 */
		(void)check_one(CONFIG_WRAP, &other_opts, w.text, w.len, &b);
		FUZZ_CHECK(b.text != NULL, "the wrapped text does not wrap: %s", b.error);
		(void)check_one(CONFIG_WRAP, &other_opts, b.text, b.len, &b2);
		FUZZ_CHECK(b2.n_changed == 0 && same(&b2, &b), "updating twice changed the text");
		(void)check_one(CONFIG_UNWRAP, &wrap_opts, b.text, b.len, &ub);
		FUZZ_CHECK(same(&ub, &u), "unwrap after an update differs");
	}
	(void)check_one(CONFIG_UNWRAP, &wrap_opts, in, size, &plain);
	config_result_release(&w);
	config_result_release(&w2);
	config_result_release(&u);
	config_result_release(&u2);
	config_result_release(&b);
	config_result_release(&b2);
	config_result_release(&ub);
	config_result_release(&plain);
	return 0;
}
