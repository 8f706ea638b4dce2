/*
 * config: parse a client config into a small ordered tree that remembers where each value
 * was (yajl's callbacks), rewrite its server entries in place, generate the new text with
 * yajl_gen, and lay it out the way the input was laid out.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "mcpmux/config.h"
#include "mcpmux/rpcout.h"

enum node_type {
	N_NULL,
	N_FALSE,
	N_TRUE,
	N_NUMBER,
	N_STRING,
	N_OBJECT,
	N_ARRAY,
};

struct member;

struct node {
	enum node_type type;
	size_t off;	  /* offset of the value's last byte in the parsed text */
	char *s;	  /* string bytes or number text, NUL-terminated */
	size_t len;	  /* their length (a string may hold NUL bytes) */
	struct member *m; /* object members, array items (key NULL) */
	size_t n, cap;
};

struct member {
	char *key;
	size_t klen;
	struct node *val;
};

/* ---- tree ---- */

static void
node_free(struct node *n)
{
	if (n == NULL) {
		return;
	}
	for (size_t i = 0; i < n->n; i++) {
		free(n->m[i].key);
		node_free(n->m[i].val);
	}
	free(n->m);
	free(n->s);
	free(n);
}

static char *
memdup0(const char *p, size_t len)
{
	char *s = malloc(len + 1);

	if (s != NULL) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

static struct node *
node_string(const char *p, size_t len, size_t off)
{
	struct node *n = calloc(1, sizeof(*n));

	if (n == NULL) {
		return NULL;
	}
	n->type = N_STRING;
	n->off = off;
	n->len = len;
	n->s = memdup0(p, len);
	if (n->s == NULL) {
		free(n);
		return NULL;
	}
	return n;
}

/* Room for `extra` more members.  0 or -1. */
static int
node_reserve(struct node *c, size_t extra)
{
	size_t cap = c->cap ? c->cap : 4;
	struct member *m;

	if (c->n + extra <= c->cap) {
		return 0;
	}
	while (cap < c->n + extra) {
		cap *= 2;
	}
	m = realloc(c->m, cap * sizeof(*m));
	if (m == NULL) {
		return -1;
	}
	c->m = m;
	c->cap = cap;
	return 0;
}

/* Insert (key, val) at index i (i <= n); the member takes both.  0 or -1 (never when room
 * was reserved). */
static int
node_insert(struct node *c, size_t i, char *key, size_t klen, struct node *val)
{
	if (node_reserve(c, 1) == -1) {
		return -1;
	}
	memmove(c->m + i + 1, c->m + i, (c->n - i) * sizeof(*c->m));
	c->m[i] = (struct member){ .key = key, .klen = klen, .val = val };
	c->n++;
	return 0;
}

static void
node_remove(struct node *c, size_t i)
{
	free(c->m[i].key);
	node_free(c->m[i].val);
	memmove(c->m + i, c->m + i + 1, (c->n - i - 1) * sizeof(*c->m));
	c->n--;
}

/* The index of member `key` of an object (the last one: JSON.parse keeps the last). */
static size_t
node_find(const struct node *obj, const char *key)
{
	size_t klen = strlen(key);

	for (size_t i = obj->n; i-- > 0;) {
		if (obj->m[i].klen == klen && memcmp(obj->m[i].key, key, klen) == 0) {
			return i;
		}
	}
	return SIZE_MAX;
}

static struct node *
node_get(const struct node *obj, const char *key)
{
	size_t i = node_find(obj, key);

	return i == SIZE_MAX ? NULL : obj->m[i].val;
}

static const char *
type_name(enum node_type t)
{
	switch (t) {
	case N_NULL:
		return "null";
	case N_FALSE:
	case N_TRUE:
		return "a boolean";
	case N_NUMBER:
		return "a number";
	case N_STRING:
		return "a string";
	case N_OBJECT:
		return "an object";
	case N_ARRAY:
		return "an array";
	}
	return "?";
}

static bool
is_string(const struct node *n, const char *s)
{
	return n != NULL && n->type == N_STRING && n->len == strlen(s) && strcmp(n->s, s) == 0;
}

static bool
all_strings(const struct node *a)
{
	for (size_t i = 0; i < a->n; i++) {
		if (a->m[i].val->type != N_STRING) {
			return false;
		}
	}
	return true;
}

/* ---- parse ---- */

struct parser {
	yajl_handle h;
	struct node *root;
	struct node *stack[CONFIG_MAX_DEPTH];
	size_t depth;
	char *key; /* the key of the next member */
	size_t klen;
	size_t end; /* the offset just after the top-level object or array */
	bool nomem, too_deep;
};

static struct node *
p_new(struct parser *p, enum node_type type)
{
	struct node *n = calloc(1, sizeof(*n));
	size_t consumed = yajl_get_bytes_consumed(p->h);

	if (n == NULL) {
		p->nomem = true;
		return NULL;
	}
	n->type = type;
	n->off = consumed > 0 ? consumed - 1 : 0;
	return n;
}

static int
p_add(struct parser *p, struct node *n)
{
	if (n == NULL) {
		return 0;
	}
	if (p->depth == 0) {
		p->root = n;
		return 1;
	}
	struct node *c = p->stack[p->depth - 1];

	if (node_insert(c, c->n, p->key, p->klen, n) == -1) {
		node_free(n);
		p->nomem = true;
		return 0;
	}
	p->key = NULL;
	return 1;
}

static int
p_null(void *ctx)
{
	struct parser *p = ctx;

	return p_add(p, p_new(p, N_NULL));
}

static int
p_bool(void *ctx, int v)
{
	struct parser *p = ctx;

	return p_add(p, p_new(p, v ? N_TRUE : N_FALSE));
}

static int
p_text(struct parser *p, enum node_type type, const char *s, size_t len)
{
	struct node *n = p_new(p, type);

	if (n == NULL) {
		return 0;
	}
	n->len = len;
	n->s = memdup0(s, len);
	if (n->s == NULL) {
		free(n);
		p->nomem = true;
		return 0;
	}
	return p_add(p, n);
}

static int
p_number(void *ctx, const char *s, size_t len)
{
	return p_text(ctx, N_NUMBER, s, len);
}

static int
p_string(void *ctx, const unsigned char *s, size_t len)
{
	return p_text(ctx, N_STRING, (const char *)s, len);
}

static int
p_open(struct parser *p, enum node_type type)
{
	if (p->depth == CONFIG_MAX_DEPTH) {
		p->too_deep = true;
		return 0;
	}
	struct node *n = p_new(p, type);

	if (n == NULL || !p_add(p, n)) {
		return 0;
	}
	p->stack[p->depth++] = n;
	return 1;
}

static int
p_start_map(void *ctx)
{
	return p_open(ctx, N_OBJECT);
}

static int
p_start_array(void *ctx)
{
	return p_open(ctx, N_ARRAY);
}

static int
p_close(void *ctx)
{
	struct parser *p = ctx;

	if (--p->depth == 0) {
		p->end = yajl_get_bytes_consumed(p->h);
	}
	return 1;
}

static int
p_key(void *ctx, const unsigned char *s, size_t len)
{
	struct parser *p = ctx;

	free(p->key);
	p->key = memdup0((const char *)s, len);
	p->klen = len;
	if (p->key == NULL) {
		p->nomem = true;
		return 0;
	}
	return 1;
}

static const yajl_callbacks parse_callbacks = {
	.yajl_null = p_null,
	.yajl_boolean = p_bool,
	.yajl_number = p_number,
	.yajl_string = p_string,
	.yajl_start_map = p_start_map,
	.yajl_map_key = p_key,
	.yajl_end_map = p_close,
	.yajl_start_array = p_start_array,
	.yajl_end_array = p_close,
};

/* ---- errors and positions ---- */

struct rewrite {
	enum config_op op;
	const struct config_opts *o;
	const char *text; /* the input (after a byte-order mark) */
	size_t len;
	size_t base; /* the byte-order mark's length, for columns on line 1 */
	struct config_result *r;
};

static void
position(const char *text, size_t len, size_t off, size_t *line, size_t *col)
{
	size_t l = 1, c = 1;

	for (size_t i = 0; i < off && i < len; i++) {
		if (text[i] == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/* A character of a number or of a bare word (true, null, NaN...). */
static bool
is_word(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '+' || c == '-' || c == '.';
}

/*
 * Where the token at `off` begins: yajl reports an error somewhere inside the token it
 * could not take (inside a string, for one).  Strings do not span lines, so the line is
 * scanned from its start for the string that holds `off`; a word or number is followed
 * back to its first character.
 */
static size_t
token_start(const char *text, size_t len, size_t off)
{
	size_t line = off, str = SIZE_MAX;
	bool esc = false;

	if (off >= len) {
		return off;
	}
	while (line > 0 && text[line - 1] != '\n') {
		line--;
	}
	for (size_t i = line; i < off; i++) {
		if (str == SIZE_MAX) {
			str = text[i] == '"' ? i : SIZE_MAX;
		} else if (esc) {
			esc = false;
		} else if (text[i] == '\\') {
			esc = true;
		} else if (text[i] == '"') {
			str = SIZE_MAX;
		}
	}
	if (str != SIZE_MAX) {
		return str;
	}
	while (off > line && is_word(text[off]) && is_word(text[off - 1])) {
		off--;
	}
	return off;
}

static void
set_position(struct rewrite *rw, size_t off)
{
	position(rw->text, rw->len, off, &rw->r->line, &rw->r->col);
	if (rw->r->line == 1) {
		rw->r->col += rw->base;
	}
}

static int __attribute__((format(printf, 3, 4)))
fail(struct rewrite *rw, const struct node *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(rw->r->error, sizeof(rw->r->error), fmt, ap);
	va_end(ap);
	if (at != NULL) {
		/* A value's recorded offset is its last byte: report where it begins. */
		set_position(rw, token_start(rw->text, rw->len, at->off));
	}
	return -1;
}

static int
fail_at(struct rewrite *rw, size_t off, const char *msg)
{
	(void)snprintf(rw->r->error, sizeof(rw->r->error), "%s", msg);
	set_position(rw, off);
	return -1;
}

static int
nomem(struct rewrite *rw)
{
	(void)snprintf(rw->r->error, sizeof(rw->r->error), "out of memory");
	rw->r->line = rw->r->col = 0;
	return -1;
}

/* yajl's message without its "parse error: " prefix and trailing newline. */
static void
yajl_reason(yajl_handle h, char *out, size_t size)
{
	unsigned char *e = yajl_get_error(h, 0, NULL, 0);
	const char *s = e != NULL ? (const char *)e : "invalid JSON";
	const char *colon = strstr(s, "error: ");
	size_t len;

	if (colon != NULL) {
		s = colon + strlen("error: ");
	}
	len = strcspn(s, "\n");
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '.')) {
		len--;
	}
	(void)snprintf(out, size, "%.*s", (int)len, s);
	if (e != NULL) {
		yajl_free_error(h, e);
	}
}

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * yajl takes a vertical tab and a form feed for white space; RFC 8259 does not, and
 * neither do the clients' parsers.  The offset of the first one outside a string, or
 * SIZE_MAX.
 */
static size_t
find_bad_space(const char *text, size_t len)
{
	bool in_str = false, esc = false;

	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (in_str) {
			if (esc) {
				esc = false;
			} else if (c == '\\') {
				esc = true;
			} else if (c == '"' || c == '\n') {
				in_str = false;
			}
		} else if (c == '"') {
			in_str = true;
		} else if (c == '\v' || c == '\f') {
			return i;
		}
	}
	return SIZE_MAX;
}

static int
parse(struct rewrite *rw, struct node **root)
{
	struct parser p = { 0 };
	yajl_status st;
	int rc = 0;
	size_t bad = find_bad_space(rw->text, rw->len);

	if (bad != SIZE_MAX) {
		return fail_at(rw, bad,
			       "invalid JSON: a vertical tab or form feed between tokens (JSON "
			       "allows only spaces, tabs and line breaks)");
	}
	p.h = yajl_alloc(&parse_callbacks, NULL, &p);
	if (p.h == NULL) {
		return nomem(rw);
	}
	st = yajl_parse(p.h, (const unsigned char *)rw->text, rw->len);
	size_t off = yajl_get_bytes_consumed(p.h);

	if (st == yajl_status_ok) {
		st = yajl_complete_parse(p.h);
		off = rw->len; /* only "premature EOF" is found here: the end */
	} else {
		off = token_start(rw->text, rw->len, off > 0 ? off - 1 : 0);
	}
	if (p.nomem) {
		rc = nomem(rw);
	} else if (p.too_deep) {
		char msg[80];

		(void)snprintf(msg, sizeof(msg), "nested deeper than %d levels", CONFIG_MAX_DEPTH);
		rc = fail_at(rw, off, msg);
	} else if (st != yajl_status_ok) {
		char why[200], msg[240];
		size_t prev = off;

		yajl_reason(p.h, why, sizeof(why));
		while (prev > 0 && is_ws(rw->text[prev - 1])) {
			prev--;
		}
		if (off < rw->len && (rw->text[off] == '}' || rw->text[off] == ']') && prev > 0 &&
		    rw->text[prev - 1] == ',') {
			(void)snprintf(msg, sizeof(msg),
				       "invalid JSON: trailing commas are not supported");
			off = prev - 1;
		} else if (strcmp(why, "premature EOF") == 0) {
			(void)snprintf(msg, sizeof(msg), "invalid JSON: unexpected end of file");
		} else {
			(void)snprintf(msg, sizeof(msg), "invalid JSON: %s", why);
		}
		rc = fail_at(rw, off, msg);
	} else if (p.root->type == N_OBJECT || p.root->type == N_ARRAY) {
		/* yajl takes an unterminated string after the value for the end of input. */
		for (size_t i = p.end; i < rw->len && rc == 0; i++) {
			if (!is_ws(rw->text[i])) {
				rc = fail_at(rw, i, "invalid JSON: trailing garbage");
			}
		}
	}
	yajl_free(p.h);
	free(p.key);
	if (rc == -1) {
		node_free(p.root);
		return -1;
	}
	*root = p.root;
	return 0;
}

/* ---- what the entries say ---- */

static const char *const value_opts[] = {
	"--eof-grace",	"--term-grace",	 "--end-method", "--log",
	"--log-bodies", "--max-message", "--max-queue",	 "--idle-timeout",
};
static const char *const flag_opts[] = { "-q", "-v", "--quiet", "--verbose" };
static const char *const subcommands[] = { "serve", "connect", "ctl", "log", "config", "demo" };

static bool
in_list(const char *s, size_t len, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0) {
			return true;
		}
	}
	return false;
}

#define IN_LIST(s, len, list) in_list(s, len, list, sizeof(list) / sizeof(list[0]))

/*
 * The index in a wrapped entry's args of the server's command: mcpmux's wrap options,
 * then "--" (or nothing, as getopt allows), then the command.  SIZE_MAX when the args
 * are not that.
 */
static size_t
wrapped_command_index(const struct node *args)
{
	for (size_t i = 0; i < args->n; i++) {
		const char *a = args->m[i].val->s;
		size_t len = args->m[i].val->len, name;

		if (strlen(a) != len) {
			return SIZE_MAX; /* a NUL inside: nothing mcpmux writes */
		}
		if (strcmp(a, "--") == 0) {
			return i + 1 < args->n ? i + 1 : SIZE_MAX;
		}
		if (a[0] != '-' || len == 1) {
			if (i == 0 && IN_LIST(a, len, subcommands)) {
				return SIZE_MAX;
			}
			return i;
		}
		name = strcspn(a, "=");
		if (name < len) {
			if (!IN_LIST(a, name, value_opts)) {
				return SIZE_MAX;
			}
		} else if (IN_LIST(a, len, value_opts)) {
			i++;
		} else if (!IN_LIST(a, len, flag_opts)) {
			return SIZE_MAX;
		}
	}
	return SIZE_MAX;
}

bool
config_is_mcpmux(const char *command, const char *self)
{
	const char *base = strrchr(command, '/');

	base = base != NULL ? base + 1 : command;
	return strcmp(base, "mcpmux") == 0 || (self != NULL && strcmp(command, self) == 0);
}

char *
config_log_name(const char *name, size_t len)
{
	char *s = malloc(len + 2);
	size_t j = 0;

	if (s == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';

		if (!ok || (j == 0 && c == '.')) {
			c = '_';
		}
		s[j++] = c;
	}
	if (j == 0) {
		s[j++] = '_';
	}
	s[j] = '\0';
	return s;
}

void
config_shell_quote(struct sbuf *b, const char *s, size_t len)
{
	bool plain = len > 0;

	for (size_t i = 0; i < len && plain; i++) {
		char c = s[i];

		plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || strchr("@%+=:,./_-", c) != NULL;
	}
	if (plain) {
		sbuf_add(b, s, len);
		return;
	}
	sbuf_adds(b, "'");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\'') {
			sbuf_adds(b, "'\\''");
		} else if (c < 0x20 || c == 0x7f) {
			sbuf_adds(b, "?"); /* for display only: no control bytes on a terminal */
		} else {
			sbuf_add(b, s + i, 1);
		}
	}
	sbuf_adds(b, "'");
}

/* Is the command of an entry an mcpmux binary (and not a string with a NUL inside)? */
static bool
runs_mcpmux(const struct node *cmd, const char *self)
{
	return strlen(cmd->s) == cmd->len && config_is_mcpmux(cmd->s, self);
}

/* A value for a message line: control characters (a terminal's escapes) shown as '?'. */
static void
add_display(struct sbuf *b, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		sbuf_add(b, c < 0x20 || c == 0x7f ? "?" : s + i, 1);
	}
}

/* "cmd arg..." for the summary: the command, then the items of args from `from`. */
static char *
command_line(const struct node *cmd, const struct node *args, size_t from)
{
	struct sbuf b = { 0 };

	config_shell_quote(&b, cmd->s, cmd->len);
	for (size_t i = from; args != NULL && i < args->n; i++) {
		sbuf_adds(&b, " ");
		config_shell_quote(&b, args->m[i].val->s, args->m[i].val->len);
	}
	if (b.failed) {
		sbuf_release(&b);
		return NULL;
	}
	return b.buf != NULL ? b.buf : memdup0("", 0);
}

static struct config_entry *
entry_new(struct rewrite *rw, const struct member *m, enum config_verdict v)
{
	struct config_result *r = rw->r;
	struct config_entry *e;
	struct sbuf name = { 0 };
	/* A config holds a handful of servers: one realloc each is fine. */
	struct config_entry *ne = realloc(r->entries, (r->n_entries + 1) * sizeof(*ne));

	if (ne == NULL) {
		return NULL;
	}
	r->entries = ne;
	config_shell_quote(&name, m->key, m->klen);
	if (name.failed || name.buf == NULL) {
		sbuf_release(&name);
		return NULL;
	}
	e = &r->entries[r->n_entries++];
	*e = (struct config_entry){ .verdict = v, .name = name.buf };
	if (v == CONFIG_CHANGED) {
		r->n_changed++;
	}
	return e;
}

/* Record a skipped server: why, and a value from the entry to show after it (or NULL). */
static int
skip(struct rewrite *rw, const struct member *m, const char *why_text, const struct node *show)
{
	struct config_entry *e = entry_new(rw, m, CONFIG_SKIPPED);
	struct sbuf why = { 0 };

	if (e == NULL) {
		return nomem(rw);
	}
	sbuf_adds(&why, why_text);
	if (show != NULL) {
		add_display(&why, show->s, show->len);
		sbuf_adds(&why, ")");
	}
	if (why.failed) {
		sbuf_release(&why);
		return nomem(rw);
	}
	e->why = why.buf;
	return 0;
}

/*
 * Look at a server entry.  1: a stdio server, with *cmd_i and *args_i (SIZE_MAX when it
 * has none) set; 0: skipped (recorded); -1: an error.
 */
static int
classify(struct rewrite *rw, const struct member *m, size_t *cmd_i, size_t *args_i)
{
	const struct node *e = m->val, *cmd, *type, *url, *args;
	struct sbuf name = { 0 };
	int rc;

	config_shell_quote(&name, m->key, m->klen);
	if (name.failed) {
		return nomem(rw);
	}
	if (e->type != N_OBJECT) {
		rc = fail(rw, e, "server %s is %s, expected an object", name.buf,
			  type_name(e->type));
		sbuf_release(&name);
		return rc;
	}
	*cmd_i = node_find(e, "command");
	*args_i = node_find(e, "args");
	cmd = *cmd_i != SIZE_MAX ? e->m[*cmd_i].val : NULL;
	args = *args_i != SIZE_MAX ? e->m[*args_i].val : NULL;
	type = node_get(e, "type");
	url = node_get(e, "url");
	if (url == NULL || url->type != N_STRING) {
		url = node_get(e, "serverUrl");
	}
	rc = 1;
	if (cmd != NULL && cmd->type != N_STRING) {
		rc = fail(rw, cmd, "server %s: \"command\" is %s, expected a string", name.buf,
			  type_name(cmd->type));
	} else if ((type != NULL && type->type == N_STRING && !is_string(type, "stdio")) ||
		   cmd == NULL) {
		if (url != NULL && url->type == N_STRING) {
			rc = skip(rw, m, "remote (", url);
		} else if (type != NULL && type->type == N_STRING && !is_string(type, "stdio")) {
			rc = skip(rw, m, "remote (type ", type);
		} else {
			rc = skip(rw, m, "no \"command\"", NULL);
		}
	} else if (args != NULL && (args->type != N_ARRAY || !all_strings(args))) {
		rc = fail(rw, args, "server %s: \"args\" must be an array of strings", name.buf);
	}
	sbuf_release(&name);
	return rc;
}

static int
push_string(struct node *a, const char *s, size_t len)
{
	struct node *n = node_string(s, len, a->off);

	if (n == NULL || node_insert(a, a->n, NULL, 0, n) == -1) {
		node_free(n);
		return -1;
	}
	return 0;
}

static int
push_opt(struct node *a, const char *opt, const char *value)
{
	if (value == NULL) {
		return 0;
	}
	return push_string(a, opt, strlen(opt)) == -1 ? -1 : push_string(a, value, strlen(value));
}

/* The "--log" value of server `name`: LOG_DIR/<name>.jsonl. */
static char *
log_path(const char *dir, const struct member *m)
{
	char *base = config_log_name(m->key, m->klen);
	struct sbuf b = { 0 };
	size_t dlen = strlen(dir);

	if (base == NULL) {
		return NULL;
	}
	sbuf_adds(&b, dir);
	if (dlen == 0 || dir[dlen - 1] != '/') {
		sbuf_adds(&b, "/");
	}
	sbuf_addf(&b, "%s.jsonl", base);
	free(base);
	if (b.failed) {
		sbuf_release(&b);
		return NULL;
	}
	return b.buf;
}

/* [--log FILE] [--eof-grace MS] [--term-grace MS] -- COMMAND, with room for `extra` more. */
static struct node *
wrapped_args(const struct config_opts *o, const struct member *m, const struct node *cmd,
	     size_t extra)
{
	struct node *a = calloc(1, sizeof(*a));
	char *path = NULL;

	if (a == NULL) {
		return NULL;
	}
	a->type = N_ARRAY;
	a->off = cmd->off;
	if (o->log_dir != NULL && (path = log_path(o->log_dir, m)) == NULL) {
		goto fail;
	}
	if (push_opt(a, "--log", path) == -1 || push_opt(a, "--eof-grace", o->eof_grace) == -1 ||
	    push_opt(a, "--term-grace", o->term_grace) == -1 || push_string(a, "--", 2) == -1 ||
	    push_string(a, cmd->s, cmd->len) == -1 || node_reserve(a, extra) == -1) {
		goto fail;
	}
	free(path);
	return a;
fail:
	free(path);
	node_free(a);
	return NULL;
}

static int
wrap_entry(struct rewrite *rw, struct member *m)
{
	const struct config_opts *o = rw->o;
	struct node *e = m->val, *cmd, *old, *a;
	size_t ci, ai;
	int rc = classify(rw, m, &ci, &ai);
	struct config_entry *ce;
	char *mcpmux, *key = NULL;

	if (rc != 1) {
		return rc;
	}
	cmd = e->m[ci].val;
	old = ai != SIZE_MAX ? e->m[ai].val : NULL;
	if (runs_mcpmux(cmd, o->mcpmux)) {
		return skip(rw, m, "already runs through mcpmux", NULL);
	}
	ce = entry_new(rw, m, CONFIG_CHANGED);
	if (ce == NULL || (ce->before = command_line(cmd, old, 0)) == NULL) {
		return nomem(rw);
	}
	a = wrapped_args(o, m, cmd, old != NULL ? old->n : 0);
	mcpmux = memdup0(o->mcpmux, strlen(o->mcpmux));
	if (old == NULL) {
		key = memdup0("args", 4);
	}
	if (a == NULL || mcpmux == NULL ||
	    (old == NULL && (key == NULL || node_reserve(e, 1) == -1))) {
		node_free(a);
		free(mcpmux);
		free(key);
		return nomem(rw);
	}
	/* Nothing fails from here on: the room is reserved. */
	if (old != NULL) {
		for (size_t i = 0; i < old->n; i++) {
			a->m[a->n++] = old->m[i];
		}
		old->n = 0;
		node_free(old);
		e->m[ai].val = a;
	} else {
		/* No "args" before: it goes just before "command", which tells unwrap. */
		(void)node_insert(e, ci, key, 4, a);
	}
	free(cmd->s);
	cmd->s = mcpmux;
	cmd->len = strlen(mcpmux);
	ce->after = command_line(cmd, a, 0);
	return ce->after == NULL ? nomem(rw) : 0;
}

static int
unwrap_entry(struct rewrite *rw, struct member *m)
{
	struct node *e = m->val, *cmd, *args;
	struct config_entry *ce;
	size_t ci, ai, k;
	int rc = classify(rw, m, &ci, &ai);

	if (rc != 1) {
		return rc;
	}
	cmd = e->m[ci].val;
	if (!runs_mcpmux(cmd, rw->o->mcpmux)) {
		return skip(rw, m, "not wrapped", NULL);
	}
	args = ai != SIZE_MAX ? e->m[ai].val : NULL;
	k = args != NULL ? wrapped_command_index(args) : SIZE_MAX;
	if (k == SIZE_MAX) {
		return skip(rw, m, "runs mcpmux, but not as a wrapped server", NULL);
	}
	ce = entry_new(rw, m, CONFIG_CHANGED);
	if (ce == NULL) {
		return nomem(rw);
	}
	ce->before = command_line(cmd, args, 0);
	ce->after = command_line(args->m[k].val, args, k + 1);
	if (ce->before == NULL || ce->after == NULL) {
		return nomem(rw);
	}
	/* The server's command goes back to "command"; what follows it stays in "args". */
	free(cmd->s);
	cmd->s = args->m[k].val->s;
	cmd->len = args->m[k].val->len;
	args->m[k].val->s = NULL;
	for (size_t i = 0; i <= k; i++) {
		node_free(args->m[i].val);
	}
	memmove(args->m, args->m + k + 1, (args->n - k - 1) * sizeof(*args->m));
	args->n -= k + 1;
	/* An "args" that wrap added sits just before "command"; it goes if it is empty. */
	if (args->n == 0 && ai + 1 == ci) {
		node_remove(e, ai);
	}
	return 0;
}

/* ---- style, comments, generation ---- */

void
config_detect_style(const char *in, size_t len, struct config_style *s)
{
	const char *p = in, *nl;
	size_t n = len, a = 0, b;

	memset(s, 0, sizeof(*s));
	if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
		s->bom = true;
		p += 3;
		n -= 3;
	}
	nl = memchr(p, '\n', n);
	s->crlf = nl != NULL && nl > p && nl[-1] == '\r';
	s->final_eol = n > 0 && p[n - 1] == '\n';
	while (a < n && is_ws(p[a])) {
		a++;
	}
	b = n;
	while (b > a && is_ws(p[b - 1])) {
		b--;
	}
	s->one_line = memchr(p + a, '\n', b - a) == NULL;
	strcpy(s->indent, "  ");
	for (size_t i = a; i < b; i++) {
		if (p[i] != '\n' || (p[i + 1] != ' ' && p[i + 1] != '\t')) {
			continue;
		}
		size_t w = 0;

		while (w < sizeof(s->indent) - 1 && i + 1 + w < b && p[i + 1 + w] == p[i + 1]) {
			s->indent[w] = p[i + 1];
			w++;
		}
		s->indent[w] = '\0';
		break;
	}
}

bool
config_find_comment(const char *in, size_t len, size_t *line, size_t *col)
{
	bool in_str = false, esc = false;
	size_t l = 1, c = 1;

	for (size_t i = 0; i < len; i++) {
		char ch = in[i];

		if (in_str) {
			if (esc) {
				esc = false;
			} else if (ch == '\\') {
				esc = true;
			} else if (ch == '"' || ch == '\n') {
				in_str = false; /* a line break ends even a broken string */
			}
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == '/' && i + 1 < len && (in[i + 1] == '/' || in[i + 1] == '*')) {
			*line = l;
			*col = c;
			return true;
		}
		if (ch == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
	}
	return false;
}

static yajl_gen_status
gen_node(yajl_gen g, const struct node *n)
{
	yajl_gen_status st;

	switch (n->type) {
	case N_NULL:
		return yajl_gen_null(g);
	case N_FALSE:
	case N_TRUE:
		return yajl_gen_bool(g, n->type == N_TRUE);
	case N_NUMBER:
		return yajl_gen_number(g, n->s, n->len);
	case N_STRING:
		return yajl_gen_string(g, (const unsigned char *)n->s, n->len);
	case N_OBJECT:
	case N_ARRAY:
		break;
	}
	st = n->type == N_OBJECT ? yajl_gen_map_open(g) : yajl_gen_array_open(g);
	for (size_t i = 0; i < n->n && st == yajl_gen_status_ok; i++) {
		if (n->type == N_OBJECT) {
			st = yajl_gen_string(g, (const unsigned char *)n->m[i].key, n->m[i].klen);
		}
		if (st == yajl_gen_status_ok) {
			st = gen_node(g, n->m[i].val);
		}
	}
	if (st == yajl_gen_status_ok) {
		st = n->type == N_OBJECT ? yajl_gen_map_close(g) : yajl_gen_array_close(g);
	}
	return st;
}

static void
newline(struct sbuf *b, const struct config_style *st, size_t depth)
{
	sbuf_adds(b, st->crlf ? "\r\n" : "\n");
	for (size_t i = 0; i < depth; i++) {
		sbuf_adds(b, st->indent);
	}
}

/*
 * Lay out yajl's compact text as JSON.stringify(value, null, indent) does: "{}" and "[]"
 * when empty, one member or item a line, ": " after keys, and lower-case hex digits in
 * "\u001b" (yajl writes upper case; JSON.stringify and Python write lower case).
 */
static void
layout(struct sbuf *b, const char *j, size_t n, const struct config_style *st)
{
	bool in_str = false, esc = false, pretty = !st->one_line;
	size_t depth = 0, hex = 0;

	if (st->bom) {
		sbuf_adds(b, "\xef\xbb\xbf");
	}
	for (size_t i = 0; i < n; i++) {
		char c = j[i];

		if (in_str) {
			if (hex > 0) {
				hex--;
				c = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
			} else if (esc) {
				esc = false;
				hex = c == 'u' ? 4 : 0;
			} else if (c == '\\') {
				esc = true;
			} else if (c == '"') {
				in_str = false;
			}
			sbuf_add(b, &c, 1);
			continue;
		}
		if (c == '"') {
			in_str = true;
		}
		if (!pretty) {
			sbuf_add(b, &c, 1);
			continue;
		}
		switch (c) {
		case '{':
		case '[':
			sbuf_add(b, &c, 1);
			if (i + 1 < n && (j[i + 1] == '}' || j[i + 1] == ']')) {
				sbuf_add(b, &j[++i], 1);
			} else {
				newline(b, st, ++depth);
			}
			break;
		case '}':
		case ']':
			newline(b, st, --depth);
			sbuf_add(b, &c, 1);
			break;
		case ',':
			sbuf_add(b, &c, 1);
			newline(b, st, depth);
			break;
		case ':':
			sbuf_adds(b, ": ");
			break;
		default:
			sbuf_add(b, &c, 1);
			break;
		}
	}
	if (st->final_eol) {
		sbuf_adds(b, st->crlf ? "\r\n" : "\n");
	}
}

static int
generate(struct rewrite *rw, const struct node *root, const struct config_style *st)
{
	yajl_gen g = yajl_gen_alloc(NULL);
	const unsigned char *buf;
	size_t len;
	struct sbuf out = { 0 };

	if (g == NULL) {
		return nomem(rw);
	}
	if (gen_node(g, root) != yajl_gen_status_ok ||
	    yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
		yajl_gen_free(g);
		return nomem(rw); /* the tree is valid: only memory can fail */
	}
	layout(&out, (const char *)buf, len, st);
	yajl_gen_free(g);
	if (out.failed || out.buf == NULL) {
		sbuf_release(&out);
		return nomem(rw);
	}
	rw->r->text = out.buf;
	rw->r->len = out.len;
	return 0;
}

/* ---- the whole ---- */

/* Rewrite the servers of one location (an object of name -> entry). */
static int
rewrite_servers(struct rewrite *rw, struct node *servers)
{
	for (size_t i = 0; i < servers->n; i++) {
		struct member *m = &servers->m[i];
		int rc = rw->op == CONFIG_WRAP ? wrap_entry(rw, m) : unwrap_entry(rw, m);

		if (rc == -1) {
			return -1;
		}
	}
	return 0;
}

int
config_rewrite(enum config_op op, const char *in, size_t len, const struct config_opts *o,
	       struct config_result *r)
{
	struct rewrite rw = { .op = op, .o = o, .text = in, .len = len, .r = r };
	struct config_style st;
	struct node *root = NULL, *loc[3] = { NULL, NULL, NULL }, *mcp;
	static const char *const loc_name[3] = { "mcpServers", "servers", "mcp.servers" };
	size_t line, col;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	config_detect_style(in, len, &st);
	if (st.bom) {
		rw.text += 3;
		rw.len -= 3;
		rw.base = 3;
	}
	if (config_find_comment(rw.text, rw.len, &line, &col)) {
		(void)snprintf(r->error, sizeof(r->error),
			       "comments are not supported (the rewritten file could not keep "
			       "them); remove them and try again");
		r->line = line;
		r->col = col + (line == 1 ? rw.base : 0);
		return -1;
	}
	if (parse(&rw, &root) == -1) {
		return -1;
	}
	if (root->type != N_OBJECT) {
		rc = fail(&rw, root, "the top level is %s, expected an object",
			  type_name(root->type));
		goto out;
	}
	loc[0] = node_get(root, "mcpServers");
	loc[1] = node_get(root, "servers");
	mcp = node_get(root, "mcp");
	if (mcp != NULL && mcp->type == N_OBJECT) {
		loc[2] = node_get(mcp, "servers");
	}
	for (size_t i = 0; i < 3; i++) {
		if (loc[i] != NULL && loc[i]->type != N_OBJECT) {
			rc = fail(&rw, loc[i], "\"%s\" is %s, expected an object of servers",
				  loc_name[i], type_name(loc[i]->type));
			goto out;
		}
	}
	if (loc[0] == NULL && loc[1] == NULL && loc[2] == NULL) {
		rc = fail(&rw, NULL,
			  "no MCP servers found (expected a top-level \"mcpServers\" or "
			  "\"servers\" object, or \"mcp\": {\"servers\": ...})");
		goto out;
	}
	for (size_t i = 0; i < 3; i++) {
		if (loc[i] != NULL && rewrite_servers(&rw, loc[i]) == -1) {
			goto out;
		}
	}
	if (r->n_changed == 0) {
		r->text = memdup0(in, len);
		r->len = len;
		rc = r->text == NULL ? nomem(&rw) : 0;
	} else {
		rc = generate(&rw, root, &st);
	}
out:
	node_free(root);
	return rc;
}

void
config_result_release(struct config_result *r)
{
	for (size_t i = 0; i < r->n_entries; i++) {
		free(r->entries[i].name);
		free(r->entries[i].before);
		free(r->entries[i].after);
		free(r->entries[i].why);
	}
	free(r->entries);
	free(r->text);
	memset(r, 0, sizeof(*r));
}
