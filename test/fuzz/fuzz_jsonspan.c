/*
 * Fuzz target: jsonspan_find().
 *
 * The first byte chooses a path (the members the HTTP front end routes by); the rest is
 * the JSON text, in a buffer of exactly its size.  Always: a span found lies inside the
 * text.  When yajl accepts the text as JSON and it has no backslash (keys are compared as
 * their bytes; escapes are out of the contract): the span is found exactly when yajl's
 * tree holds a value on the path, taking the last member of a name at each step (as the
 * scanner does; yajl_tree_get() takes the first), and the span, parsed alone, is that
 * value (same type; same string, or the same number text).
 */
#include <yajl/yajl_tree.h>

#include "fuzz.h"

#include "mcpmux/jsonspan.h"

/* The paths end with NULL, as yajl_tree_get() has them. */
static const char *p_id[] = { "id", NULL };
static const char *p_tok[] = { "params", "progressToken", NULL };
static const char *p_meta[] = { "params", "_meta", "progressToken", NULL };
static const char *p_ver[] = { "result", "protocolVersion", NULL };
static const char **const paths[] = { p_id, p_tok, p_meta, p_ver };

static size_t
path_len(const char *const *p)
{
	size_t n = 0;

	while (p[n] != NULL) {
		n++;
	}
	return n;
}

/* The value at path in tree, the last member of a name at each step; NULL: none. */
static yajl_val
tree_get_last(yajl_val v, const char *const *path)
{
	for (; *path != NULL; path++) {
		size_t i;

		if (!YAJL_IS_OBJECT(v)) {
			return NULL;
		}
		for (i = v->u.object.len; i > 0; i--) {
			if (strcmp(v->u.object.keys[i - 1], *path) == 0) {
				break;
			}
		}
		if (i == 0) {
			return NULL;
		}
		v = v->u.object.values[i - 1];
	}
	return v;
}

static char *
dup0(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	FUZZ_CHECK(s != NULL, "out of memory");
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) {
		return 0;
	}
	const char **path = paths[data[0] % 4];
	size_t n = size - 1;
	char *text = malloc(n > 0 ? n : 1);
	struct jsonspan v;

	FUZZ_CHECK(text != NULL, "out of memory");
	memcpy(text, data + 1, n);
	bool found = jsonspan_find(text, n, path, path_len(path), &v);

	if (found) {
		FUZZ_CHECK(v.p >= text && v.len <= n && v.p + v.len <= text + n, "span outside");
	}
	if (memchr(text, '\\', n) == NULL && memchr(text, '\0', n) == NULL) {
		char *z = dup0(text, n);
		yajl_val tree = yajl_tree_parse(z, NULL, 0);

		if (tree != NULL) {
			yajl_val want = tree_get_last(tree, path);

			FUZZ_CHECK(found == (want != NULL), "found %d, yajl_tree %d", found,
				   want != NULL);
			if (found) {
				char *vz = dup0(v.p, v.len);
				yajl_val got = yajl_tree_parse(vz, NULL, 0);

				FUZZ_CHECK(got != NULL, "the span is not a JSON value: %s", vz);
				FUZZ_CHECK(got->type == want->type, "type %d, want %d", got->type,
					   want->type);
				if (YAJL_IS_STRING(want)) {
					FUZZ_CHECK(strcmp(got->u.string, want->u.string) == 0,
						   "string differs");
				} else if (YAJL_IS_NUMBER(want)) {
					FUZZ_CHECK(strcmp(got->u.number.r, want->u.number.r) == 0,
						   "number differs");
				}
				yajl_tree_free(got);
				free(vz);
			}
			yajl_tree_free(tree);
		}
		free(z);
	}
	free(text);
	return 0;
}
