/*
 * json5: a recursive-descent parser of JSON5 over bytes, recording spans.  It validates
 * everything (UTF-8 included) and decodes only what is kept: keys, and the strings of
 * kept values.  It does not write JSON5; rewriters splice text themselves.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/json5.h"

struct parser {
	const char *t;
	size_t len, pos;
	size_t lines; /* line breaks passed (LF, CRLF or a lone CR) */
	unsigned depth, max_depth;
	json5_keep_fn *keep;
	void *ctx;
	struct json5_doc *doc;
	struct json5_error *err;
	char *buf; /* the string or key being decoded */
	size_t blen, bcap;
	bool nomem;
};

bool
json5_is_space(unsigned long cp)
{
	return cp == 0x09 || cp == 0x0a || cp == 0x0b || cp == 0x0c || cp == 0x0d || cp == 0x20 ||
	       cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
	       cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000 || cp == 0xfeff;
}

/*
 * The code point of the UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF) with its length in *n; -1 when it is not valid.
 */
static long
utf8_decode(const char *s, size_t len, size_t *n)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned long cp;
	size_t k;

	if (p[0] < 0x80) {
		*n = 1;
		return p[0];
	} else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		k = 2;
		cp = p[0] & 0x1fu;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		k = 3;
		cp = p[0] & 0x0fu;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		k = 4;
		cp = p[0] & 0x07u;
	} else {
		return -1;
	}
	if (len < k) {
		return -1;
	}
	for (size_t i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			return -1;
		}
		cp = (cp << 6) | (p[i] & 0x3fu);
	}
	if ((k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (k == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
		return -1;
	}
	*n = k;
	return (long)cp;
}

/* ---- errors ---- */

static int __attribute__((format(printf, 3, 4)))
perr(struct parser *p, size_t off, const char *fmt, ...)
{
	va_list ap;

	if (p->err->msg[0] != '\0') {
		return -1; /* the first error is the one that counts */
	}
	p->err->off = off;
	va_start(ap, fmt);
	(void)vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int
nomem(struct parser *p)
{
	p->err->nomem = true;
	return perr(p, p->pos, "out of memory");
}

/* What is at off, for a message: 'x', U+00A0, byte 0xff, the end of the file. */
static const char *
found(const struct parser *p, size_t off, char *buf, size_t size)
{
	unsigned char c;
	size_t n;
	long cp;

	if (off >= p->len) {
		return "the end of the file";
	}
	c = (unsigned char)p->t[off];
	if (c >= 0x21 && c < 0x7f) {
		(void)snprintf(buf, size, "'%c'", c);
	} else if (c < 0x80) {
		(void)snprintf(buf, size, "U+%04X", c);
	} else if ((cp = utf8_decode(p->t + off, p->len - off, &n)) >= 0) {
		(void)snprintf(buf, size, "U+%04lX", (unsigned long)cp);
	} else {
		(void)snprintf(buf, size, "byte 0x%02x (invalid UTF-8)", c);
	}
	return buf;
}

static int
expected(struct parser *p, const char *what)
{
	char buf[48];

	return perr(p, p->pos, "expected %s, found %s", what, found(p, p->pos, buf, sizeof(buf)));
}

/* ---- bytes of a decoded string ---- */

static void
buf_add(struct parser *p, const char *s, size_t n)
{
	if (p->blen + n + 1 > p->bcap) {
		size_t cap = p->bcap ? p->bcap : 64;
		char *b;

		while (cap < p->blen + n + 1) {
			cap *= 2;
		}
		b = realloc(p->buf, cap);
		if (b == NULL) {
			p->nomem = true;
			return;
		}
		p->buf = b;
		p->bcap = cap;
	}
	memcpy(p->buf + p->blen, s, n);
	p->blen += n;
	p->buf[p->blen] = '\0';
}

/* A code point as UTF-8 (surrogates in their 3-byte form). */
static void
buf_add_cp(struct parser *p, unsigned long cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_add(p, b, n);
}

static char *
buf_dup(struct parser *p)
{
	char *s = malloc(p->blen + 1);

	if (s == NULL) {
		p->nomem = true;
		return NULL;
	}
	if (p->blen > 0) {
		memcpy(s, p->buf, p->blen);
	}
	s[p->blen] = '\0';
	return s;
}

/* ---- characters ---- */

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

/* n hex digits at off, or -1. */
static long
hex_at(const struct parser *p, size_t off, size_t n)
{
	long v = 0;

	if (off > p->len || p->len - off < n) {
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int h = hex_value(p->t[off + i]);

		if (h < 0) {
			return -1;
		}
		v = v * 16 + h;
	}
	return v;
}

/* Characters of unquoted keys (see json5.h for the rule on non-ASCII ones). */
static bool
id_start(long cp)
{
	return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '$' || cp == '_' ||
	       (cp >= 0x80 && !json5_is_space((unsigned long)cp) &&
		!(cp >= 0xd800 && cp <= 0xdfff));
}

static bool
id_part(long cp)
{
	return id_start(cp) || (cp >= '0' && cp <= '9');
}

/* The code point at off and its length; -1 (an error set) for invalid UTF-8. */
static long
cp_at(struct parser *p, size_t off, size_t *n)
{
	long cp = utf8_decode(p->t + off, p->len - off, n);

	if (cp < 0) {
		perr(p, off, "invalid UTF-8");
	}
	return cp;
}

static void
line_break(struct parser *p, size_t off)
{
	/* CRLF is one break: count it at the LF. */
	if (p->t[off] == '\n' || off + 1 >= p->len || p->t[off + 1] != '\n') {
		p->lines++;
	}
}

/* ---- white space and comments ---- */

static int
skip_comment(struct parser *p)
{
	size_t start = p->pos, n;
	bool block = p->t[p->pos + 1] == '*';

	p->pos += 2;
	while (p->pos < p->len) {
		char c = p->t[p->pos];
		long cp;

		if (block && c == '*' && p->pos + 1 < p->len && p->t[p->pos + 1] == '/') {
			p->pos += 2;
			return 0;
		}
		if (c == '\n' || c == '\r') {
			if (!block) {
				return 0; /* the line break itself is white space */
			}
			line_break(p, p->pos);
			p->pos++;
			continue;
		}
		if ((cp = cp_at(p, p->pos, &n)) < 0) {
			return -1;
		}
		if (!block && (cp == 0x2028 || cp == 0x2029)) {
			return 0;
		}
		p->pos += n;
	}
	return block ? perr(p, start, "unterminated comment (no '*/' after this '/*')") : 0;
}

static int
skip_space(struct parser *p)
{
	while (p->pos < p->len) {
		char c = p->t[p->pos];
		size_t n;
		long cp;

		if (c == '\n' || c == '\r') {
			line_break(p, p->pos);
			p->pos++;
		} else if (c == ' ' || c == '\t' || c == '\v' || c == '\f') {
			p->pos++;
		} else if (c == '/' && p->pos + 1 < p->len &&
			   (p->t[p->pos + 1] == '/' || p->t[p->pos + 1] == '*')) {
			if (skip_comment(p) == -1) {
				return -1;
			}
		} else if ((unsigned char)c >= 0x80) {
			if ((cp = cp_at(p, p->pos, &n)) < 0) {
				return -1;
			}
			if (!json5_is_space((unsigned long)cp)) {
				return 0;
			}
			p->pos += n;
		} else {
			return 0;
		}
	}
	return 0;
}

size_t
json5_skip(const char *text, size_t len, size_t off, bool comments)
{
	while (off < len) {
		char c = text[off];
		size_t n = 1;
		long cp;

		if (c == '/' && comments && off + 1 < len && text[off + 1] == '/') {
			off += 2;
			while (off < len && text[off] != '\n' && text[off] != '\r') {
				if ((cp = utf8_decode(text + off, len - off, &n)) == 0x2028 ||
				    cp == 0x2029) {
					break;
				}
				off += cp < 0 ? 1 : n;
			}
		} else if (c == '/' && comments && off + 1 < len && text[off + 1] == '*') {
			const char *end = memmem(text + off + 2, len - off - 2, "*/", 2);

			off = end != NULL ? (size_t)(end - text) + 2 : len;
		} else if ((unsigned char)c < 0x80) {
			if (!json5_is_space((unsigned char)c)) {
				return off;
			}
			off++;
		} else if ((cp = utf8_decode(text + off, len - off, &n)) >= 0 &&
			   json5_is_space((unsigned long)cp)) {
			off += n;
		} else {
			return off;
		}
	}
	return off;
}

/* ---- tokens ---- */

/*
 * The escape sequence at p->pos (its backslash), inside the string that began at start.
 * Decodes into p->buf when decode.
 */
static int
lex_escape(struct parser *p, size_t start, bool decode)
{
	size_t at = p->pos, n;
	char c;
	long cp, lo;

	if (++p->pos >= p->len) {
		return perr(p, start, "unterminated string");
	}
	c = p->t[p->pos];
	switch (c) {
	case 'b':
		c = '\b';
		break;
	case 'f':
		c = '\f';
		break;
	case 'n':
		c = '\n';
		break;
	case 'r':
		c = '\r';
		break;
	case 't':
		c = '\t';
		break;
	case 'v':
		c = '\v';
		break;
	case '0':
		if (p->pos + 1 < p->len && is_digit(p->t[p->pos + 1])) {
			return perr(p, at, "invalid escape: '\\0' followed by a digit");
		}
		c = '\0';
		break;
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
	case '6':
	case '7':
	case '8':
	case '9':
		return perr(p, at, "invalid escape '\\%c' (JSON5 has no octal escapes)", c);
	case 'x':
		if ((cp = hex_at(p, p->pos + 1, 2)) < 0) {
			return perr(p, at, "invalid escape: '\\x' needs two hex digits");
		}
		p->pos += 3;
		if (decode) {
			buf_add_cp(p, (unsigned long)cp);
		}
		return 0;
	case 'u':
		if ((cp = hex_at(p, p->pos + 1, 4)) < 0) {
			return perr(p, at, "invalid escape: '\\u' needs four hex digits");
		}
		p->pos += 5;
		/* A UTF-16 pair is one code point; a lone surrogate stays what it is. */
		if (cp >= 0xd800 && cp <= 0xdbff && p->pos + 1 < p->len && p->t[p->pos] == '\\' &&
		    p->t[p->pos + 1] == 'u' && (lo = hex_at(p, p->pos + 2, 4)) >= 0xdc00 &&
		    lo <= 0xdfff) {
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			p->pos += 6;
		}
		if (decode) {
			buf_add_cp(p, (unsigned long)cp);
		}
		return 0;
	case '\n':
	case '\r':
		/* A line continuation: the escaped line break is not part of the value. */
		p->lines++;
		p->pos++;
		if (c == '\r' && p->pos < p->len && p->t[p->pos] == '\n') {
			p->pos++;
		}
		return 0;
	default:
		if ((unsigned char)c >= 0x80) {
			if ((cp = cp_at(p, p->pos, &n)) < 0) {
				return -1;
			}
			/* U+2028 and U+2029 are line terminators: a continuation too. */
			if (decode && cp != 0x2028 && cp != 0x2029) {
				buf_add(p, p->t + p->pos, n);
			}
			p->pos += n;
			return 0;
		}
		break; /* \' \" \\ and any other character stand for themselves */
	}
	if (decode) {
		buf_add(p, &c, 1);
	}
	p->pos++;
	return 0;
}

/* The string at p->pos (its opening quote); its value in p->buf when decode. */
static int
lex_string(struct parser *p, bool decode)
{
	size_t start = p->pos, n;
	char q = p->t[p->pos++];

	p->blen = 0;
	for (;;) {
		char c;

		if (p->pos >= p->len) {
			return perr(p, start, "unterminated string");
		}
		c = p->t[p->pos];
		if (c == q) {
			p->pos++;
			return p->nomem ? nomem(p) : 0;
		}
		if (c == '\n' || c == '\r') {
			return perr(p, p->pos,
				    "line break in a string (end the line with '\\' to continue "
				    "the string, or close it)");
		}
		if (c == '\\') {
			if (lex_escape(p, start, decode) == -1) {
				return -1;
			}
			continue;
		}
		n = 1;
		if ((unsigned char)c >= 0x80 && cp_at(p, p->pos, &n) < 0) {
			return -1;
		}
		if (decode) {
			buf_add(p, p->t + p->pos, n);
		}
		p->pos += n;
	}
}

/*
 * The code point of the identifier character at off, and its length in *n (6 for a
 * \uXXXX escape, *escaped then set); -1 when it is a backslash without a \u escape.
 */
static long
id_char(struct parser *p, size_t off, size_t *n, bool *escaped)
{
	char c = p->t[off];

	*escaped = false;
	*n = 1;
	if (c == '\\') {
		long cp = off + 1 < p->len && p->t[off + 1] == 'u' ? hex_at(p, off + 2, 4) : -1;

		*escaped = true;
		*n = 6;
		return cp;
	}
	if ((unsigned char)c < 0x80) {
		return (unsigned char)c;
	}
	return utf8_decode(p->t + off, p->len - off, n);
}

/* The unquoted key at p->pos, if one starts there (none: p->pos stays); its value in p->buf. */
static int
lex_ident(struct parser *p)
{
	bool first = true;

	p->blen = 0;
	while (p->pos < p->len) {
		bool escaped;
		size_t n;
		long cp = id_char(p, p->pos, &n, &escaped);

		if (cp < 0 && escaped) {
			return perr(p, p->pos,
				    "invalid escape in a key (only \\uXXXX may be used)");
		}
		if (cp < 0) {
			return perr(p, p->pos, "invalid UTF-8");
		}
		if (!(first ? id_start(cp) : id_part(cp))) {
			if (escaped) {
				return perr(p, p->pos, "\\u%04lX cannot be part of an unquoted key",
					    (unsigned long)cp);
			}
			break;
		}
		buf_add_cp(p, (unsigned long)cp);
		p->pos += n;
		first = false;
	}
	return p->nomem ? nomem(p) : 0;
}

/* Does an identifier character start at off (one that would run on from a word)? */
static bool
id_part_at(struct parser *p, size_t off)
{
	bool escaped;
	size_t n;
	long cp;

	if (off >= p->len) {
		return false;
	}
	cp = id_char(p, off, &n, &escaped);
	return escaped || (cp >= 0 && id_part(cp));
}

/* The end of the word (letters, digits, '.', identifier characters) at off. */
static size_t
word_end(struct parser *p, size_t off)
{
	while (off < p->len && (p->t[off] == '.' || id_part_at(p, off))) {
		bool escaped;
		size_t n;

		(void)id_char(p, off, &n, &escaped);
		off += off + n <= p->len ? n : 1;
	}
	return off;
}

static bool
word_is(const struct parser *p, size_t start, size_t end, const char *w)
{
	size_t n = strlen(w);

	return end - start == n && memcmp(p->t + start, w, n) == 0;
}

/* A number: [+-] (Infinity | NaN | 0x hex | decimal), per ES5's NumericLiteral. */
static int
lex_number(struct parser *p)
{
	size_t start = p->pos, digits = 0, end;
	const char *t = p->t;

	if (t[p->pos] == '+' || t[p->pos] == '-') {
		p->pos++;
	}
	if (p->pos < p->len && (t[p->pos] == 'I' || t[p->pos] == 'N')) {
		end = word_end(p, p->pos);
		if (word_is(p, p->pos, end, "Infinity") || word_is(p, p->pos, end, "NaN")) {
			p->pos = end;
			return 0;
		}
		goto bad;
	}
	if (p->pos + 1 < p->len && t[p->pos] == '0' &&
	    (t[p->pos + 1] == 'x' || t[p->pos + 1] == 'X')) {
		p->pos += 2;
		while (p->pos < p->len && hex_value(t[p->pos]) >= 0) {
			p->pos++;
			digits++;
		}
	} else {
		if (p->pos < p->len && t[p->pos] == '0') {
			p->pos++;
			digits++;
		} else {
			while (p->pos < p->len && is_digit(t[p->pos])) {
				p->pos++;
				digits++;
			}
		}
		if (p->pos < p->len && t[p->pos] == '.') {
			p->pos++;
			while (p->pos < p->len && is_digit(t[p->pos])) {
				p->pos++;
				digits++;
			}
		}
		if (digits > 0 && p->pos < p->len && (t[p->pos] == 'e' || t[p->pos] == 'E')) {
			size_t exp = 0;

			p->pos++;
			if (p->pos < p->len && (t[p->pos] == '+' || t[p->pos] == '-')) {
				p->pos++;
			}
			while (p->pos < p->len && is_digit(t[p->pos])) {
				p->pos++;
				exp++;
			}
			digits = exp > 0 ? digits : 0;
		}
	}
	/* ES5: what follows a number must not be a digit or start an identifier. */
	if (digits > 0 && !(p->pos < p->len && (t[p->pos] == '.' || id_part_at(p, p->pos)))) {
		return 0;
	}
bad:
	end = word_end(p, start + 1);
	if (end - start > 32) {
		end = start + 32;
	}
	return perr(p, start, "invalid number '%.*s'", (int)(end - start), t + start);
}

/* ---- values ---- */

static void node_release(struct json5_node *n);

static void
member_release(struct json5_member *m)
{
	free(m->key);
	node_release(&m->val);
}

static void
node_release(struct json5_node *n)
{
	for (size_t i = 0; i < n->n; i++) {
		member_release(&n->m[i]);
	}
	free(n->m);
	free(n->str);
	memset(n, 0, sizeof(*n));
}

static int
append(struct parser *p, struct json5_node *c, const struct json5_member *m)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4;
		struct json5_member *nm = realloc(c->m, cap * sizeof(*nm));

		if (nm == NULL) {
			return nomem(p);
		}
		c->m = nm;
		c->cap = cap;
	}
	c->m[c->n++] = *m;
	return 0;
}

static int parse_value(struct parser *p, struct json5_node *n, int role);

/* The key of an object member at p->pos, into m (the key's value in p->buf). */
static int
parse_key(struct parser *p, struct json5_node *obj, struct json5_member *m)
{
	char c = p->pos < p->len ? p->t[p->pos] : '\0';

	m->key_start = p->pos;
	if (p->pos >= p->len) {
		return expected(p, "a key or '}'");
	}
	if (c == '"' || c == '\'') {
		m->key_quote = c;
		obj->quotes[c == '\'']++;
		if (lex_string(p, true) == -1) {
			return -1;
		}
	} else if (lex_ident(p) == -1) {
		return -1;
	} else if (p->pos == m->key_start) {
		return expected(p, "a key or '}'");
	}
	m->key_end = p->pos;
	if (skip_space(p) == -1) {
		return -1;
	}
	if (p->pos >= p->len || p->t[p->pos] != ':') {
		return expected(p, "':' after the key");
	}
	p->pos++;
	return 0;
}

static int
parse_container(struct parser *p, struct json5_node *c, int role)
{
	bool is_obj = p->t[p->pos] == '{';
	char close = is_obj ? '}' : ']';
	size_t lines = p->lines, lead;

	if (p->depth == p->max_depth) {
		return perr(p, p->pos, "nested deeper than %u levels", p->max_depth);
	}
	p->depth++;
	c->type = is_obj ? JSON5_OBJECT : JSON5_ARRAY;
	lead = ++p->pos;
	if (skip_space(p) == -1) {
		return -1;
	}
	if (p->pos < p->len && p->t[p->pos] == close) {
		p->pos++;
		p->depth--;
		return 0;
	}
	for (;;) {
		struct json5_member m = { .index = c->n_all, .lead = lead, .comma = JSON5_NONE };
		int keep = 0;

		if (is_obj && parse_key(p, c, &m) == -1) {
			return -1;
		}
		if (role != 0 && p->keep != NULL) {
			keep = p->keep(p->ctx, role, is_obj ? p->buf : NULL, is_obj ? p->blen : 0);
		}
		if (keep != 0 && is_obj) {
			if ((m.key = buf_dup(p)) == NULL) {
				return nomem(p);
			}
			m.klen = p->blen;
		}
		if (skip_space(p) == -1 || parse_value(p, &m.val, keep) == -1 ||
		    skip_space(p) == -1) {
			member_release(&m);
			return -1;
		}
		if (!is_obj) {
			m.key_start = m.key_end = m.val.start;
		}
		c->quotes[0] += m.val.quotes[0];
		c->quotes[1] += m.val.quotes[1];
		c->n_all++;
		if (p->pos < p->len && p->t[p->pos] == ',') {
			m.comma = p->pos++;
			lead = p->pos;
			if (skip_space(p) == -1) {
				member_release(&m);
				return -1;
			}
			c->trailing_comma = p->pos < p->len && p->t[p->pos] == close;
		} else if (!(p->pos < p->len && p->t[p->pos] == close)) {
			member_release(&m);
			return expected(p, is_obj ? "',' or '}' after the member"
						  : "',' or ']' after the item");
		}
		if (keep == 0) {
			member_release(&m);
		} else if (append(p, c, &m) == -1) {
			member_release(&m);
			return -1;
		}
		if (p->pos < p->len && p->t[p->pos] == close) {
			break;
		}
	}
	p->pos++;
	p->depth--;
	if (p->lines != lines) {
		p->doc->n_multi++;
		p->doc->n_multi_trailing += c->trailing_comma;
	}
	return 0;
}

static int
parse_value(struct parser *p, struct json5_node *n, int role)
{
	size_t end;
	char c;

	memset(n, 0, sizeof(*n));
	n->role = role;
	n->start = p->pos;
	if (p->pos >= p->len) {
		return expected(p, "a value");
	}
	c = p->t[p->pos];
	if (c == '{' || c == '[') {
		if (parse_container(p, n, role) == -1) {
			node_release(n);
			return -1;
		}
	} else if (c == '"' || c == '\'') {
		n->type = JSON5_STRING;
		n->quote = c;
		n->quotes[c == '\'']++;
		if (lex_string(p, role != 0) == -1) {
			return -1;
		}
		if (role != 0) {
			if ((n->str = buf_dup(p)) == NULL) {
				return nomem(p);
			}
			n->len = p->blen;
		}
	} else if (is_digit(c) || c == '.' || c == '+' || c == '-' ||
		   word_is(p, p->pos, word_end(p, p->pos), "Infinity") ||
		   word_is(p, p->pos, word_end(p, p->pos), "NaN")) {
		n->type = JSON5_NUMBER;
		if (lex_number(p) == -1) {
			return -1;
		}
	} else {
		end = word_end(p, p->pos);
		if (word_is(p, p->pos, end, "true") || word_is(p, p->pos, end, "false")) {
			n->type = JSON5_BOOL;
		} else if (word_is(p, p->pos, end, "null")) {
			n->type = JSON5_NULL;
		} else if (end > p->pos) {
			return perr(p, p->pos,
				    "expected a value, found '%.*s' (strings need quotes; the "
				    "words of JSON5 are true, false, null, Infinity and NaN)",
				    (int)(end - p->pos > 32 ? 32 : end - p->pos), p->t + p->pos);
		} else {
			return expected(p, "a value");
		}
		p->pos = end;
	}
	n->end = p->pos;
	return 0;
}

int
json5_parse(const char *text, size_t len, unsigned max_depth, json5_keep_fn *keep, void *ctx,
	    int root_role, struct json5_doc *doc, struct json5_error *err)
{
	struct parser p = {
		.t = text,
		.len = len,
		.max_depth = max_depth,
		.keep = keep,
		.ctx = ctx,
		.doc = doc,
		.err = err,
	};
	int rc;

	memset(doc, 0, sizeof(*doc));
	memset(err, 0, sizeof(*err));
	rc = skip_space(&p);
	if (rc == 0) {
		rc = parse_value(&p, &doc->root, root_role);
	}
	if (rc == 0) {
		rc = skip_space(&p);
	}
	if (rc == 0 && p.pos < len) {
		rc = expected(&p, "nothing more after the value");
	}
	free(p.buf);
	if (rc == -1) {
		json5_doc_release(doc);
	}
	return rc;
}

void
json5_doc_release(struct json5_doc *doc)
{
	node_release(&doc->root);
	memset(doc, 0, sizeof(*doc));
}
