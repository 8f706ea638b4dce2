/*
 * jsonspan: the span of one member of a JSON text, by a structural pass.
 */
#include <string.h>

#include "mcpmux/jsonspan.h"

struct cur {
	const char *p, *end;
};

/* White space as yajl takes it: JSON's four, and \v and \f. */
static bool
is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

static void
skip_ws(struct cur *c)
{
	while (c->p < c->end && is_ws(*c->p)) {
		c->p++;
	}
}

/*
 * At a '"': past the closing quote.  false when the string does not end.  Linear: the
 * quote searched for last is kept while it is ahead, so that each backslash before it
 * does not search the rest of the text for a quote again.
 */
static bool
skip_string(struct cur *c)
{
	const char *q = NULL;

	c->p++;
	while (c->p < c->end) {
		/* The next quote closes the string unless a backslash comes before it. */
		const char *bs;

		if (q == NULL || q < c->p) {
			q = memchr(c->p, '"', (size_t)(c->end - c->p));
			if (q == NULL) {
				break;
			}
		}
		bs = memchr(c->p, '\\', (size_t)(q - c->p));
		if (bs == NULL) {
			c->p = q + 1;
			return true;
		}
		c->p = bs + 2; /* a backslash and the character it escapes */
	}
	c->p = c->end;
	return false;
}

/* The bytes that end a number, true, false or null: structure, white space, NUL. */
static const unsigned char scalar_end[256] = {
	['"'] = 1,  ['{'] = 1, ['}'] = 1,  ['['] = 1,  [']'] = 1,  [','] = 1,  [':'] = 1,
	['\0'] = 1, [' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1,
};

/* One value (a scalar, or a container and everything in it). */
static bool
skip_value(struct cur *c)
{
	size_t depth = 0;

	do {
		skip_ws(c);
		if (c->p >= c->end) {
			return false;
		}
		switch (*c->p) {
		case '"':
			if (!skip_string(c)) {
				return false;
			}
			break;
		case '{':
		case '[':
			depth++;
			c->p++;
			break;
		case '}':
		case ']':
			if (depth == 0) {
				return false;
			}
			depth--;
			c->p++;
			break;
		case ',':
		case ':':
			if (depth == 0) {
				return false;
			}
			c->p++;
			break;
		default: {
			/* A number, true, false or null: up to what cannot be part of it. */
			const char *start = c->p;

			while (c->p < c->end && !scalar_end[(unsigned char)*c->p]) {
				c->p++;
			}
			if (c->p == start) {
				return false; /* a NUL: not JSON */
			}
			break;
		}
		}
	} while (depth > 0);
	return true;
}

const char *
jsonspan_ws(const char *p, const char *end)
{
	struct cur c = { p, end };

	skip_ws(&c);
	return c.p;
}

const char *
jsonspan_skip(const char *p, const char *end)
{
	struct cur c = { p, end };

	return skip_value(&c) ? c.p : NULL;
}

bool
jsonspan_element(const char **p, const char *end, const char **elem, size_t *len)
{
	struct cur c = { *p, end };

	skip_ws(&c);
	if (c.p < c.end && (*c.p == '[' || *c.p == ',')) {
		c.p++; /* the array's start, or the one after an element */
		skip_ws(&c);
	}
	const char *start = c.p;

	if (c.p >= c.end || *c.p == ']' || !skip_value(&c)) {
		*p = end;
		return false;
	}
	*elem = start;
	*len = (size_t)(c.p - start);
	*p = c.p;
	return true;
}

bool
jsonspan_find(const char *p, size_t len, const char *const *path, size_t n, struct jsonspan *out)
{
	struct cur c = { p, p + len };
	size_t step = 0;

	if (n == 0 || n > JSONSPAN_PATH_MAX) {
		return false;
	}
	for (;;) {
		/* At the value of step's parent: it must be an object. */
		skip_ws(&c);
		if (c.p >= c.end || *c.p != '{') {
			return false;
		}
		c.p++;
		size_t want = strlen(path[step]);
		/* Of members of one name the last wins, as in the scanner (yajl) and JSON.parse. */
		const char *found = NULL, *found_end = NULL;

		for (;;) {
			skip_ws(&c);
			if (c.p >= c.end || *c.p != '"') {
				return false; /* '}' (not there: empty) or not JSON */
			}
			const char *k = c.p + 1;

			if (!skip_string(&c)) {
				return false;
			}
			size_t klen = (size_t)(c.p - 1 - k);

			skip_ws(&c);
			if (c.p >= c.end || *c.p != ':') {
				return false;
			}
			c.p++;
			skip_ws(&c);
			const char *v = c.p;

			if (!skip_value(&c)) {
				return false;
			}
			if (klen == want && memcmp(k, path[step], want) == 0) {
				found = v;
				found_end = c.p;
			}
			skip_ws(&c);
			if (c.p < c.end && *c.p == '}') {
				break;
			}
			if (c.p >= c.end || *c.p != ',') {
				return false;
			}
			c.p++;
		}
		if (found == NULL) {
			return false;
		}
		if (++step == n) {
			out->p = found;
			out->len = (size_t)(found_end - found);
			return true;
		}
		c.p = found;
	}
}

bool
jsonspan_plain_string(const struct jsonspan *v, const char **s, size_t *n)
{
	if (v->len < 2 || v->p[0] != '"' || v->p[v->len - 1] != '"' ||
	    memchr(v->p + 1, '\\', v->len - 2) != NULL) {
		return false;
	}
	*s = v->p + 1;
	*n = v->len - 2;
	return true;
}

bool
jsonspan_member(const char *json, size_t len, const char *key, const char **val, size_t *vlen)
{
	const char *const path[1] = { key };
	struct jsonspan v;

	if (!jsonspan_find(json, len, path, 1, &v)) {
		return false;
	}
	*val = v.p;
	*vlen = v.len;
	return true;
}
