/*
 * jsonspan: one member of a JSON text, found by its path of object keys without parsing
 * the rest: a single structural pass (strings, escapes, nesting) that skips every value
 * it does not need.  For the few members the HTTP front end routes by (a request's
 * params._meta.progressToken, a progress notification's params.progressToken, the
 * protocolVersion of an initialize request and of its result) in messages that yajl has
 * already validated.  On any other input it fails or finds something, but never reads
 * outside [p, p + len).
 *
 * Keys are compared as their raw bytes: a key written with escapes ("\u0069d") does not
 * match.  Pointers in results point into the text.  Pure: no allocation, no state.
 */
#ifndef MCPMUX_JSONSPAN_H
#define MCPMUX_JSONSPAN_H

#include <stdbool.h>
#include <stddef.h>

#define JSONSPAN_PATH_MAX 8

struct jsonspan {
	const char *p; /* the value's JSON text: "abc" with its quotes, 42, {...} */
	size_t len;
};

/*
 * The value at path[0].path[1]...path[n-1] of the object p holds, into *out.  false when
 * the text is not an object, a step is missing or not an object, or n is 0 or over
 * JSONSPAN_PATH_MAX.  Of members of one name the last wins, at every step, as in the
 * scanner (yajl's callbacks), JavaScript's JSON.parse and Python's json: each object on
 * the path is read to its end.
 */
bool jsonspan_find(const char *p, size_t len, const char *const *path, size_t n,
		   struct jsonspan *out);

/* jsonspan_find() of one step: the member key of the object json, as *val, *vlen. */
bool jsonspan_member(const char *json, size_t len, const char *key, const char **val, size_t *vlen);

/*
 * Past the white space at p (JSON's four, and \v and \f, as yajl takes them): the first
 * byte that is not, or end.
 */
const char *jsonspan_ws(const char *p, const char *end);

/*
 * Past the one value at p (after any white space), by the same structural pass: where it
 * ends, or NULL when it does not end before `end` or is not a value's start.
 */
const char *jsonspan_skip(const char *p, const char *end);

/*
 * The elements of a JSON array, one a call: *p at the array's text first (its '[', after
 * any white space), then where the last call left it.  The next element into *elem and
 * *len; false, *p at end, when there is none more (the array's end, or not a value).
 */
bool jsonspan_element(const char **p, const char *end, const char **elem, size_t *len);

/* Whether v is a JSON string with no escapes; its bytes (without quotes) into *s, *n. */
bool jsonspan_plain_string(const struct jsonspan *v, const char **s, size_t *n);

#endif
