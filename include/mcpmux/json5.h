/*
 * json5: a parser of JSON5 (spec.json5.org, version 1.0.0), and so of JSON, that keeps
 * where everything is: each value knows its span in the text, each member where its key
 * and its comma are, so that a rewriter can change a few values and copy every other
 * byte (comments, layout, escapes) as it was.  Pure: text in, tree out, no I/O.
 *
 * What is accepted is JSON5 as specified, with one simplification: the specification
 * takes an unquoted key's characters from Unicode categories (letters, digits, marks,
 * connector punctuation); here any non-ASCII character that is not white space may be
 * part of one.  ASCII keys follow the rule exactly ([A-Za-z$_] first, then digits too,
 * and \uXXXX escapes of those).  The text must be UTF-8; a byte-order mark is white
 * space, as is any other JSON5 white space (U+FEFF, U+00A0, U+2028, tabs, \v, \f...).
 *
 * A keep function decides which members are kept in the tree, so that a rewriter that
 * looks at a small part of a big file does not pay for the rest: every byte is still
 * parsed and checked, but a member the keep function drops is not recorded, nor are the
 * members inside it.
 */
#ifndef MCPMUX_JSON5_H
#define MCPMUX_JSON5_H

#include <stdbool.h>
#include <stddef.h>

#define JSON5_NONE ((size_t)-1)

enum json5_type {
	JSON5_NULL,
	JSON5_BOOL,
	JSON5_NUMBER,
	JSON5_STRING,
	JSON5_OBJECT,
	JSON5_ARRAY,
};

struct json5_member;

struct json5_node {
	enum json5_type type;
	int role;	   /* what the keep function said about it (the root: root_role) */
	size_t start, end; /* the value's text, [start, end): a token, or brackets and all */
	char quote;	   /* JSON5_STRING: '"' or '\'' */
	char *str;	   /* JSON5_STRING, kept: its value in UTF-8, NUL-terminated; may hold */
	size_t len;	   /* NULs.  A lone surrogate (\ud800) is its 3-byte form. */
	struct json5_member *m; /* OBJECT, ARRAY: the members or items kept, in text order */
	size_t n, cap;
	size_t n_all;	     /* every member or item, kept or not */
	bool trailing_comma; /* a comma after the last member or item */
	size_t quotes[2];    /* strings in the value, quoted keys too: [0] "...", [1] '...' */
};

struct json5_member {
	size_t index; /* its place among all the members or items of its container */
	size_t lead;  /* just after the '{', '[' or ',' before it: its white space starts */
	size_t key_start, key_end; /* OBJECT: the key's text; ARRAY: both are val.start */
	char key_quote;		   /* '"', '\'', or 0: an identifier */
	char *key;		   /* OBJECT: the key's value, NUL-terminated; ARRAY: NULL */
	size_t klen;
	size_t comma; /* where the comma after the value is, or JSON5_NONE */
	struct json5_node val;
};

struct json5_doc {
	struct json5_node root;
	size_t n_multi;		 /* non-empty objects and arrays that span lines */
	size_t n_multi_trailing; /* those of them that end with a comma */
};

struct json5_error {
	size_t off; /* where: the offending byte, or the start of what is unterminated */
	bool nomem;
	char msg[160];
};

/*
 * Which members to keep.  Called for each member of a kept object (key, klen: its
 * decoded key) or item of a kept array (key NULL), with the role of that container.
 * Returns the role of the member's value, 0 to drop it.  Roles are the caller's.
 */
typedef int json5_keep_fn(void *ctx, int parent_role, const char *key, size_t klen);

/*
 * Parse a JSON5 text of len bytes (no NUL needed) into doc.  The root is kept with
 * root_role; keep (NULL: keep nothing below the root) decides the rest.  Nesting deeper
 * than max_depth objects and arrays is refused.  0, or -1 with err set (err->nomem when
 * memory ran out); either way, release doc with json5_doc_release().
 */
int json5_parse(const char *text, size_t len, unsigned max_depth, json5_keep_fn *keep, void *ctx,
		int root_role, struct json5_doc *doc, struct json5_error *err);
void json5_doc_release(struct json5_doc *doc);

/*
 * For a text that parsed: the first offset at or after off, and before len, that is not
 * white space (nor a comment, when comments is true); len if there is none.
 */
size_t json5_skip(const char *text, size_t len, size_t off, bool comments);

/* Is the code point JSON5 white space? */
bool json5_is_space(unsigned long cp);

#endif
