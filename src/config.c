/*
 * config: find the servers of a client config in its JSON5 parse (json5.c) and rewrite
 * them as edits of the text: each edit replaces one span of the input, and the output is
 * the input with its edits applied.  New text takes its style from the text around it.
 * Nothing here reads or writes files (cmd_config.c does).
 */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/config.h"
#include "mcpmux/diag.h"
#include "mcpmux/json5.h"
#include "mcpmux/rpcout.h"

/* What the parse keeps, and so what each kept node is (json5_keep_fn roles). */
enum role {
	R_DROP,
	R_ROOT,
	R_MCP,	    /* the top-level "mcp" */
	R_LOCATION, /* "mcpServers", "servers", "mcp"."servers" */
	R_ENTRY,    /* one server */
	R_MEMBER,   /* a member of a server's entry */
	R_ARGS,	    /* its "args" */
	R_ITEM,	    /* an item of "args" */
};

/* The options config wrap writes, in the order it writes them. */
enum {
	OPT_LOG,
	OPT_EOF_GRACE,
	OPT_TERM_GRACE,
	OPT_IDLE_TIMEOUT,
	OPT_IDLE_SUSPEND,
	OPT_MAX_SERVERS,
	OPT_POOL,
	N_OPTS,
};

static const char *const opt_names[N_OPTS] = {
	"--log",	  "--eof-grace",   "--term-grace", "--idle-timeout",
	"--idle-suspend", "--max-servers", "--pool",
};

/* Every option of wrap mode that takes a value, and those that do not. */
static const char *const value_opts[] = {
	"--eof-grace",	 "--term-grace",    "--end-method",    "--log",		 "--log-bodies",
	"--max-message", "--max-queue",	    "--idle-timeout",  "--idle-suspend", "--max-servers",
	"--pool",	 "--stall-timeout", "--kill-deadline",
};
static const char *const flag_opts[] = { "-q", "-v", "--quiet", "--verbose" };
/* Every subcommand main() runs: "mcpmux ps" is no server wrapped. */
static const char *const subcommands[] = { "serve",  "connect", "ctl", "log",
					   "config", "demo",	"ps",  "sweep" };

/* Items of "args" that a rewrite writes: 2 per option, "--" and the command. */
#define MAX_NEW_ITEMS (2 * N_OPTS + 2)

struct edit {
	size_t start, end; /* the span of the input replaced */
	char *text;	   /* by this (owned) */
	size_t len;
	size_t seq; /* order of making, to keep the sort stable */
};

/* New items of an array, each a literal (or a moved token) in text, at off[i]. */
struct items {
	struct sbuf text;
	size_t off[MAX_NEW_ITEMS + 1];
	size_t n;
};

struct rewrite {
	enum config_op op;
	const struct config_opts *o;
	const char *text;
	size_t len;
	struct json5_doc doc;
	const struct json5_node *ref_args; /* a non-empty "args": its layout is copied */
	const char *nl;			   /* the file's line end */
	char indent[17];		   /* one indentation step: the first line's */
	struct edit *edits;
	size_t n_edits, cap_edits;
	struct config_result *r;
	size_t cap_entries; /* of r->entries */
	/* wrap --log-dir: the log NAME of each server of loc[] (flat, in the file's order) */
	const struct json5_node *loc[3];
	char **log_names;
	size_t n_log_names;
	size_t cur; /* the server being rewritten, in the file's order */
};

/* ---- errors ---- */

void
config_position(const char *text, size_t len, size_t off, size_t *line, size_t *col)
{
	size_t l = 1, c = 1;

	for (size_t i = 0; i < off && i < len; i++) {
		if (text[i] == '\n' || (text[i] == '\r' && (i + 1 >= len || text[i + 1] != '\n'))) {
			l++;
			c = 1;
		} else if (text[i] != '\r') {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/* An error at off (JSON5_NONE: nowhere in particular).  Returns -1. */
static int __attribute__((format(printf, 3, 4)))
fail(struct rewrite *rw, size_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(rw->r->error, sizeof(rw->r->error), fmt, ap);
	va_end(ap);
	if (off != JSON5_NONE) {
		config_position(rw->text, rw->len, off, &rw->r->line, &rw->r->col);
	}
	return -1;
}

static int
nomem(struct rewrite *rw)
{
	rw->r->line = rw->r->col = 0;
	(void)snprintf(rw->r->error, sizeof(rw->r->error), "out of memory");
	return -1;
}

/* ---- the tree ---- */

static bool
key_is(const char *key, size_t klen, const char *s)
{
	return key != NULL && klen == strlen(s) && memcmp(key, s, klen) == 0;
}

static int
keep_role(int parent, const char *key, size_t klen)
{
	switch (parent) {
	case R_ROOT:
		if (key_is(key, klen, "mcpServers") || key_is(key, klen, "servers")) {
			return R_LOCATION;
		}
		return key_is(key, klen, "mcp") ? R_MCP : R_DROP;
	case R_MCP:
		return key_is(key, klen, "servers") ? R_LOCATION : R_DROP;
	case R_LOCATION:
		return key != NULL ? R_ENTRY : R_DROP;
	case R_ENTRY:
		if (key == NULL) {
			return R_DROP;
		}
		return key_is(key, klen, "args") ? R_ARGS : R_MEMBER;
	case R_ARGS:
		return R_ITEM;
	default:
		return R_DROP;
	}
}

/*
 * Which members the parse keeps, counting them: once CONFIG_MAX_KEPT are kept, no more is
 * (the count goes past it), and the file is refused.  Every byte is still parsed and
 * checked.
 */
static int
keep(void *ctx, int parent, const char *key, size_t klen)
{
	size_t *kept = ctx;
	int role = keep_role(parent, key, klen);

	return role != R_DROP && (*kept)++ >= CONFIG_MAX_KEPT ? R_DROP : role;
}

/* The member `key` of a kept object (the last one: JSON.parse keeps the last). */
static const struct json5_member *
member_get(const struct json5_node *obj, const char *key)
{
	if (obj == NULL || obj->type != JSON5_OBJECT) {
		return NULL;
	}
	for (size_t i = obj->n; i-- > 0;) {
		if (key_is(obj->m[i].key, obj->m[i].klen, key)) {
			return &obj->m[i];
		}
	}
	return NULL;
}

static const struct json5_node *
value_get(const struct json5_node *obj, const char *key)
{
	const struct json5_member *m = member_get(obj, key);

	return m != NULL ? &m->val : NULL;
}

static const char *
type_name(enum json5_type t)
{
	switch (t) {
	case JSON5_NULL:
		return "null";
	case JSON5_BOOL:
		return "a boolean";
	case JSON5_NUMBER:
		return "a number";
	case JSON5_STRING:
		return "a string";
	case JSON5_OBJECT:
		return "an object";
	case JSON5_ARRAY:
		return "an array";
	}
	return "?";
}

static bool
is_string(const struct json5_node *n, const char *s)
{
	return n != NULL && n->type == JSON5_STRING && key_is(n->str, n->len, s);
}

static bool
all_strings(const struct json5_node *a)
{
	for (size_t i = 0; i < a->n; i++) {
		if (a->m[i].val.type != JSON5_STRING) {
			return false;
		}
	}
	return true;
}

/* ---- what the entries say ---- */

static bool
in_list(const char *s, size_t len, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (key_is(s, len, list[i])) {
			return true;
		}
	}
	return false;
}

#define IN_LIST(s, len, list) in_list(s, len, list, sizeof(list) / sizeof(list[0]))

/*
 * The index in a wrapped entry's args, from item `from` on, of the server's command:
 * mcpmux's wrap options, then "--" (or nothing, as getopt allows), then the command;
 * *opt_end is where the options end (the "--", or the command).  SIZE_MAX when the args
 * are not that.
 */
static size_t
wrapped_command_from(const struct json5_node *args, size_t from, size_t *opt_end)
{
	for (size_t i = from; i < args->n; i++) {
		const char *a = args->m[i].val.str;
		size_t len = args->m[i].val.len, name;

		*opt_end = i;
		if (strlen(a) != len) {
			return SIZE_MAX; /* a NUL inside: nothing mcpmux writes */
		}
		if (strcmp(a, "--") == 0) {
			return i + 1 < args->n ? i + 1 : SIZE_MAX;
		}
		if (a[0] != '-' || len == 1) {
			if (i == from && IN_LIST(a, len, subcommands)) {
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

static size_t
wrapped_command_index(const struct json5_node *args, size_t *opt_end)
{
	return wrapped_command_from(args, 0, opt_end);
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
		const unsigned char *u = (const unsigned char *)name + i;
		size_t n = u[0] >= 0x80 ? rpcout_utf8_len(u, len - i) : 0;

		/* A lone surrogate ("\ud800") is one character too, in its 3-byte form. */
		if (n == 0 && u[0] == 0xed && len - i >= 3 && u[1] >= 0xa0 && u[1] <= 0xbf &&
		    (u[2] & 0xc0) == 0x80) {
			n = 3;
		}
		if (!ok || (j == 0 && c == '.')) {
			c = '_';
		}
		s[j++] = c;
		/* One '_' a character, as for any other: "é" is "_", not one a byte. */
		i += n > 1 ? n - 1 : 0;
	}
	if (j == 0) {
		s[j++] = '_';
	}
	s[j] = '\0';
	return s;
}

/*
 * The length of the control character at s (len > 0 bytes are there), or 0: a C0 one, DEL,
 * or a C1 one (U+0080..U+009F, two bytes in UTF-8), which a terminal acts on as it does on
 * ESC (U+009B is CSI).  A config's names and values are whatever its author wrote, and a
 * project's .mcp.json or .vscode/mcp.json comes with the project.
 */
static size_t
control_len(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	if (u[0] < 0x20 || u[0] == 0x7f) {
		return 1;
	}
	return len >= 2 && u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f ? 2 : 0;
}

void
config_shell_quote(struct sbuf *b, const char *s, size_t len)
{
	bool plain = len > 0;

	for (size_t i = 0; i < len && plain; i++) {
		char c = s[i];

		plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || (c != '\0' && strchr("@%+=:,./_-", c) != NULL);
	}
	if (plain) {
		sbuf_add(b, s, len);
		return;
	}
	sbuf_adds(b, "'");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t n = control_len(s + i, len - i);

		if (c == '\'') {
			sbuf_adds(b, "'\\''");
		} else if (n > 0) {
			sbuf_adds(b, "?"); /* for display only: no control bytes on a terminal */
			i += n - 1;
		} else {
			sbuf_add(b, s + i, 1);
		}
	}
	sbuf_adds(b, "'");
}

void
config_literal(struct sbuf *b, const char *s, size_t len, char quote)
{
	static const char hex[] = "0123456789abcdef";

	sbuf_add(b, &quote, 1);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		size_t n;

		switch (c) {
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		case '\\':
			esc = "\\\\";
			break;
		default:
			break;
		}
		if (esc != NULL) {
			sbuf_adds(b, esc);
			i++;
		} else if (c == (unsigned char)quote) {
			sbuf_adds(b, quote == '"' ? "\\\"" : "\\'");
			i++;
		} else if (c < 0x20) {
			char u[7] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], '\0' };

			sbuf_adds(b, u);
			i++;
		} else if ((n = rpcout_utf8_len((const unsigned char *)s + i, len - i)) > 0) {
			sbuf_add(b, s + i, n);
			i += n;
		} else {
			sbuf_adds(b, "\xef\xbf\xbd");
			i++;
		}
	}
	sbuf_add(b, &quote, 1);
}

/*
 * Is the command of an entry an mcpmux binary (and not a string with a NUL inside)?  The
 * --mcpmux PATH given is recognised as it was written (an entry an earlier run wrapped
 * with the same relative PATH) and as it was made absolute; an absolute command, also
 * when it is the mcpmux file by another path (o->is_mcpmux_file).
 */
static bool
runs_mcpmux(const struct json5_node *cmd, const struct config_opts *o)
{
	return strlen(cmd->str) == cmd->len &&
	       (config_is_mcpmux(cmd->str, o->mcpmux) ||
		(o->mcpmux_given != NULL && strcmp(cmd->str, o->mcpmux_given) == 0) ||
		(o->is_mcpmux_file != NULL && cmd->str[0] == '/' &&
		 o->is_mcpmux_file(cmd->str, o->ctx)));
}

/* A value for a message line: control characters (a terminal's escapes) shown as '?'. */
static void
add_display(struct sbuf *b, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		size_t n = control_len(s + i, len - i);

		sbuf_add(b, n > 0 ? "?" : s + i, 1);
		i += n > 0 ? n - 1 : 0;
	}
}

/* Append s to a command line of the summary. */
static void
line_add(struct sbuf *b, const char *s, size_t len)
{
	if (b->len > 0) {
		sbuf_adds(b, " ");
	}
	config_shell_quote(b, s, len);
}

/* Append items [from, to) of args. */
static void
line_add_items(struct sbuf *b, const struct json5_node *args, size_t from, size_t to)
{
	for (size_t i = from; args != NULL && i < to && i < args->n; i++) {
		line_add(b, args->m[i].val.str, args->m[i].val.len);
	}
}

static struct config_entry *
entry_new(struct rewrite *rw, const struct json5_member *m, enum config_verdict v)
{
	struct config_result *r = rw->r;
	struct config_entry *e;
	struct sbuf name = { 0 };

	if (r->n_entries == rw->cap_entries) {
		size_t cap = rw->cap_entries ? rw->cap_entries * 2 : 8;
		struct config_entry *ne = realloc(r->entries, cap * sizeof(*ne));

		if (ne == NULL) {
			return NULL;
		}
		r->entries = ne;
		rw->cap_entries = cap;
	}
	config_shell_quote(&name, m->key, m->klen);
	if (name.failed || name.buf == NULL) {
		sbuf_release(&name);
		return NULL;
	}
	e = &r->entries[r->n_entries++];
	*e = (struct config_entry){
		.verdict = v,
		.name = name.buf,
		.start = m->val.start,
		.end = m->val.end,
	};
	if (v != CONFIG_SKIPPED) {
		r->n_changed++;
	}
	return e;
}

/* Record a skipped server: why, and a value from the entry to show after it (or NULL). */
static int
skip(struct rewrite *rw, const struct json5_member *m, const char *why_text,
     const struct json5_node *show)
{
	struct config_entry *e = entry_new(rw, m, CONFIG_SKIPPED);
	struct sbuf why = { 0 };

	if (e == NULL) {
		return nomem(rw);
	}
	sbuf_adds(&why, why_text);
	if (show != NULL) {
		add_display(&why, show->str, show->len);
		sbuf_adds(&why, ")");
	}
	if (why.failed) {
		sbuf_release(&why);
		return nomem(rw);
	}
	e->why = why.buf;
	return 0;
}

/* A changed entry, with its command lines before and after (both taken over). */
static int
describe(struct rewrite *rw, const struct json5_member *m, enum config_verdict v,
	 struct sbuf *before, struct sbuf *after)
{
	struct config_entry *ce = before->failed || after->failed ? NULL : entry_new(rw, m, v);

	if (ce == NULL) {
		sbuf_release(before);
		sbuf_release(after);
		return nomem(rw);
	}
	ce->before = before->buf;
	ce->after = after->buf;
	memset(before, 0, sizeof(*before));
	memset(after, 0, sizeof(*after));
	return 0;
}

/*
 * A URL, as an entry's "url", "serverUrl" (Windsurf) or "httpUrl" (Gemini CLI's
 * Streamable HTTP servers) gives one: a string that is not empty.
 */
static bool
is_url(const struct json5_node *n)
{
	return n != NULL && n->type == JSON5_STRING && n->len > 0;
}

/* Why a server is skipped (classify()). */
struct skipped {
	const char *why;
	const struct json5_node *show; /* a value shown after why, or NULL */
	bool ambiguous;
};

/*
 * Look at a server entry.  1: a stdio server, with *cmd and *args (NULL when it has
 * none) set; 0: skipped, with *sk set; -1: an error.  Nothing is recorded.
 */
static int
look_at(struct rewrite *rw, const struct json5_member *m, const struct json5_member **cmd_m,
	const struct json5_member **args_m, struct skipped *sk)
{
	const struct json5_node *e = &m->val, *cmd, *type, *url, *args;
	struct sbuf name = { 0 };
	bool remote_type;
	int rc;

	config_shell_quote(&name, m->key, m->klen);
	if (name.failed) {
		return nomem(rw);
	}
	if (e->type != JSON5_OBJECT) {
		rc = fail(rw, e->start, "server %s is %s, expected an object", name.buf,
			  type_name(e->type));
		sbuf_release(&name);
		return rc;
	}
	*cmd_m = member_get(e, "command");
	if (*cmd_m != NULL && (*cmd_m)->val.type == JSON5_NULL) {
		*cmd_m = NULL; /* "command": null, as some tools write beside a "url": none */
	}
	*args_m = member_get(e, "args");
	cmd = *cmd_m != NULL ? &(*cmd_m)->val : NULL;
	args = *args_m != NULL ? &(*args_m)->val : NULL;
	type = value_get(e, "type");
	remote_type = type != NULL && type->type == JSON5_STRING && !is_string(type, "stdio");
	url = value_get(e, "url");
	if (!is_url(url)) {
		url = value_get(e, "serverUrl");
	}
	if (!is_url(url)) {
		url = value_get(e, "httpUrl");
	}
	if (!is_url(url)) {
		url = NULL; /* "url": "" names nothing */
	}
	*sk = (struct skipped){ 0 };
	rc = 1;
	if (cmd != NULL && cmd->type != JSON5_STRING) {
		rc = fail(rw, cmd->start, "server %s: \"command\" is %s, expected a string",
			  name.buf, type_name(cmd->type));
	} else if (remote_type || cmd == NULL) {
		rc = 0;
		if (url != NULL) {
			*sk = (struct skipped){ .why = "remote (", .show = url };
		} else if (remote_type) {
			*sk = (struct skipped){ .why = "remote (type ", .show = type };
		} else {
			sk->why = "no \"command\"";
		}
	} else if (args != NULL && (args->type != JSON5_ARRAY || !all_strings(args))) {
		rc = fail(rw, args->start, "server %s: \"args\" must be an array of strings",
			  name.buf);
	} else if (rw->op == CONFIG_WRAP && url != NULL && !runs_mcpmux(cmd, rw->o)) {
		/*
		 * A command and a URL, and no "type" that says which: clients differ on which
		 * one they take (and one may take the other after an update).  Wrapped, the
		 * entry would be a stdio server for sure; left alone, it is what its author
		 * wrote, and the warning says why.  One that an earlier mcpmux wrapped is
		 * updated as any wrapped entry is (the user chose then), and unwrap restores
		 * such an entry all the same: it puts back what was there.
		 */
		rc = 0;
		*sk = (struct skipped){ .why = "ambiguous: both \"command\" and a URL (",
					.show = url,
					.ambiguous = true };
	}
	sbuf_release(&name);
	return rc;
}

/* look_at(), a skipped server recorded. */
static int
classify(struct rewrite *rw, const struct json5_member *m, const struct json5_member **cmd_m,
	 const struct json5_member **args_m)
{
	struct skipped sk;
	int rc = look_at(rw, m, cmd_m, args_m, &sk);

	if (rc == 0) {
		rc = skip(rw, m, sk.why, sk.show);
		if (rc == 0) {
			rw->r->entries[rw->r->n_entries - 1].ambiguous = sk.ambiguous;
		}
	}
	return rc;
}

/* ---- edits ---- */

/* Replace [start, end) with the bytes of b (taken over; b is left empty). */
static int
edit(struct rewrite *rw, size_t start, size_t end, struct sbuf *b)
{
	struct edit *e;

	if (b->failed) {
		sbuf_release(b);
		return nomem(rw);
	}
	if (rw->n_edits == rw->cap_edits) {
		size_t cap = rw->cap_edits ? rw->cap_edits * 2 : 16;

		e = realloc(rw->edits, cap * sizeof(*e));
		if (e == NULL) {
			sbuf_release(b);
			return nomem(rw);
		}
		rw->edits = e;
		rw->cap_edits = cap;
	}
	rw->edits[rw->n_edits] = (struct edit){
		.start = start,
		.end = end,
		.text = b->buf,
		.len = b->len,
		.seq = rw->n_edits,
	};
	rw->n_edits++;
	memset(b, 0, sizeof(*b));
	return 0;
}

static int
edit_remove(struct rewrite *rw, size_t start, size_t end)
{
	struct sbuf none = { 0 };

	return start == end ? 0 : edit(rw, start, end, &none);
}

static int
edit_cmp(const void *a, const void *b)
{
	const struct edit *x = a, *y = b;

	if (x->start != y->start) {
		return x->start < y->start ? -1 : 1;
	}
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Where input offset p lands in the output: p moved by the edits that start before it
 * (sorted; shift[i] is what edits 0..i-1 add, which may wrap around below zero).
 */
static size_t
out_offset(const struct rewrite *rw, const size_t *shift, size_t p)
{
	size_t lo = 0, hi = rw->n_edits;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rw->edits[mid].start < p) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return p + shift[lo];
}

static int
apply_edits(struct rewrite *rw)
{
	struct sbuf out = { 0 };
	size_t at = 0;

	qsort(rw->edits, rw->n_edits, sizeof(*rw->edits), edit_cmp);
	for (size_t i = 0; i < rw->n_edits; i++) {
		const struct edit *e = &rw->edits[i];

		if (e->start < at || e->end < e->start || e->end > rw->len) {
			BUG("overlapping edits: %zu-%zu after %zu", e->start, e->end, at);
		}
		sbuf_add(&out, rw->text + at, e->start - at);
		if (e->len > 0) {
			sbuf_add(&out, e->text, e->len);
		}
		at = e->end;
	}
	sbuf_add(&out, rw->text + at, rw->len - at);
	if (out.failed || out.buf == NULL) {
		sbuf_release(&out);
		return nomem(rw);
	}
	size_t *shift = malloc((rw->n_edits + 1) * sizeof(*shift));

	if (shift == NULL) {
		sbuf_release(&out);
		return nomem(rw);
	}
	shift[0] = 0;
	for (size_t i = 0; i < rw->n_edits; i++) {
		const struct edit *e = &rw->edits[i];

		shift[i + 1] = shift[i] + e->len - (e->end - e->start);
	}
	for (size_t i = 0; i < rw->r->n_entries; i++) {
		struct config_entry *ce = &rw->r->entries[i];

		ce->out_start = out_offset(rw, shift, ce->start);
		ce->out_end = out_offset(rw, shift, ce->end);
	}
	free(shift);
	rw->r->text = out.buf;
	rw->r->len = out.len;
	return 0;
}

/* ---- style ---- */

/* Only spaces and tabs in [a, b)? */
static bool
blanks(const struct rewrite *rw, size_t a, size_t b)
{
	for (size_t i = a; i < b; i++) {
		if (rw->text[i] != ' ' && rw->text[i] != '\t') {
			return false;
		}
	}
	return true;
}

/* Only white space (no comment) in [a, b)? */
static bool
white(const struct rewrite *rw, size_t a, size_t b)
{
	return json5_skip(rw->text, b, a, false) == b;
}

static size_t
line_start(const struct rewrite *rw, size_t off)
{
	while (off > 0 && rw->text[off - 1] != '\n' && rw->text[off - 1] != '\r') {
		off--;
	}
	return off;
}

static size_t
indent_len(const struct rewrite *rw, size_t ls)
{
	size_t w = 0;

	while (ls + w < rw->len && (rw->text[ls + w] == ' ' || rw->text[ls + w] == '\t')) {
		w++;
	}
	return w;
}

/* Is off the first thing on its line?  (Only its indentation is looked at.) */
static bool
starts_line(const struct rewrite *rw, size_t off)
{
	while (off > 0 && (rw->text[off - 1] == ' ' || rw->text[off - 1] == '\t')) {
		off--;
	}
	return off == 0 || rw->text[off - 1] == '\n' || rw->text[off - 1] == '\r';
}

/* The line break that ends the line before the line starting at ls. */
static const char *
nl_before(const struct rewrite *rw, size_t ls)
{
	if (ls >= 2 && rw->text[ls - 2] == '\r' && rw->text[ls - 1] == '\n') {
		return "\r\n";
	}
	if (ls >= 1 && rw->text[ls - 1] == '\r') {
		return "\r";
	}
	return ls >= 1 ? "\n" : rw->nl;
}

/* A line break and the indentation of the line of off (which starts its line). */
static void
add_newline_like(struct sbuf *b, const struct rewrite *rw, size_t off)
{
	size_t ls = line_start(rw, off);

	sbuf_adds(b, nl_before(rw, ls));
	sbuf_add(b, rw->text + ls, off - ls);
}

/*
 * What goes after a comma on one line in entry e: what its members have there, or, when
 * none shows it, a space unless the file is written without spaces (cmd_m's colon).
 */
static void
inline_sep(const struct rewrite *rw, const struct json5_node *e, const struct json5_member *cmd_m,
	   struct sbuf *b)
{
	for (size_t i = 0; i < e->n; i++) {
		const struct json5_member *m = &e->m[i];

		if (m->index > 0 && !starts_line(rw, m->key_start) &&
		    blanks(rw, m->lead, m->key_start)) {
			sbuf_add(b, rw->text + m->lead, m->key_start - m->lead);
			return;
		}
	}
	sbuf_adds(b, memchr(rw->text + cmd_m->key_end, ' ', cmd_m->val.start - cmd_m->key_end)
			     ? " "
			     : "");
}

/* What goes after each comma between items of the non-empty array a. */
static void
item_sep(const struct rewrite *rw, const struct json5_node *e, const struct json5_member *cmd_m,
	 const struct json5_node *a, struct sbuf *b)
{
	size_t first = a->m[0].key_start;

	if (starts_line(rw, first)) {
		add_newline_like(b, rw, first);
	} else if (a->n >= 2 && blanks(rw, a->m[1].lead, a->m[1].key_start)) {
		sbuf_add(b, rw->text + a->m[1].lead, a->m[1].key_start - a->m[1].lead);
	} else {
		inline_sep(rw, e, cmd_m, b);
	}
}

/* Append what another sbuf holds (which may be nothing at all). */
static void
add_sbuf(struct sbuf *b, const struct sbuf *from)
{
	if (from->len > 0) {
		sbuf_add(b, from->buf, from->len);
	}
	b->failed |= from->failed;
}

static void
items_add(struct items *it, const char *s, size_t len, char quote)
{
	if (it->n == MAX_NEW_ITEMS) {
		BUG("more than %d new items", MAX_NEW_ITEMS);
	}
	it->off[it->n++] = it->text.len;
	if (quote != 0) {
		config_literal(&it->text, s, len, quote);
	} else {
		sbuf_add(&it->text, s, len);
	}
	it->off[it->n] = it->text.len;
}

static void
add_item(struct sbuf *b, const struct items *it, size_t i)
{
	if (it->text.failed) {
		b->failed = true; /* the items are not all there */
		return;
	}
	sbuf_add(b, it->text.buf + it->off[i], it->off[i + 1] - it->off[i]);
}

/* Each item, then a comma and sep: text to go just before an item of an array. */
static void
join_before(struct sbuf *b, const struct items *it, const struct sbuf *sep)
{
	for (size_t i = 0; i < it->n; i++) {
		add_item(b, it, i);
		sbuf_adds(b, ",");
		add_sbuf(b, sep);
	}
}

/*
 * The items of an array that has none yet, whose interior is [w_start, w_end): all of
 * its new interior when that is white space (*replace set), or else the text to put
 * before what is there (a comment).  The array belongs to the member whose key is at
 * key_off, in entry e: one item a line, indented one level deeper than that member, or
 * all on one line, as the other "args" of the file are, or else as the entry is.
 */
static void
fill_empty(const struct rewrite *rw, const struct json5_node *e, const struct json5_member *cmd_m,
	   size_t key_off, size_t w_start, size_t w_end, const struct items *it, struct sbuf *b,
	   bool *replace)
{
	const struct json5_node *ref = rw->ref_args;
	bool multi =
		starts_line(rw, key_off) && (ref == NULL || starts_line(rw, ref->m[0].key_start));

	*replace = white(rw, w_start, w_end);
	if (multi) {
		size_t ls = line_start(rw, key_off), il = indent_len(rw, ls);
		size_t els = line_start(rw, e->start), eil = indent_len(rw, els);
		bool trailing = ref != NULL ? ref->trailing_comma
					    : rw->doc.n_multi_trailing * 2 > rw->doc.n_multi;

		for (size_t i = 0; i < it->n; i++) {
			sbuf_adds(b, nl_before(rw, ls));
			sbuf_add(b, rw->text + ls, il);
			/* One level: what this member has more than its entry's line. */
			if (il > eil && memcmp(rw->text + els, rw->text + ls, eil) == 0) {
				sbuf_add(b, rw->text + ls + eil, il - eil);
			} else {
				sbuf_adds(b, rw->indent);
			}
			add_item(b, it, i);
			if (i + 1 < it->n || trailing) {
				sbuf_adds(b, ",");
			}
		}
		if (*replace) {
			sbuf_adds(b, nl_before(rw, ls));
			sbuf_add(b, rw->text + ls, il);
		}
		return;
	}
	struct sbuf sep = { 0 };
	size_t pad = 0;

	if (ref != NULL && !starts_line(rw, ref->m[0].key_start)) {
		if (blanks(rw, ref->start + 1, ref->m[0].key_start)) {
			pad = ref->m[0].key_start - ref->start - 1;
		}
		item_sep(rw, e, cmd_m, ref, &sep);
	} else {
		inline_sep(rw, e, cmd_m, &sep);
	}
	sbuf_add(b, ref != NULL ? rw->text + ref->start + 1 : "", pad);
	for (size_t i = 0; i < it->n; i++) {
		if (i > 0) {
			sbuf_adds(b, ",");
			add_sbuf(b, &sep);
		}
		add_item(b, it, i);
	}
	if (*replace) {
		sbuf_add(b, ref != NULL ? rw->text + ref->start + 1 : "", pad);
	}
	b->failed |= sep.failed;
	sbuf_release(&sep);
}

/* The quotes of new strings in entry e: those most of its strings have. */
static char
entry_quote(const struct json5_node *e, const struct json5_node *cmd)
{
	if (e->quotes[0] != e->quotes[1]) {
		return e->quotes[1] > e->quotes[0] ? '\'' : '"';
	}
	return cmd->quote;
}

/* ---- wrap and unwrap ---- */

/*
 * A server's log NAME is its name made safe (config_log_name), cut (it is ASCII) to its
 * first LOG_NAME_MAX characters: a file's name longer than a file system takes (NAME_MAX),
 * mcpmux could not open, and the server would no longer start; one just under it, logrotate
 * could not rename to a rotated copy's name (".1.gz", "-20261206.gz").
 */
#define LOG_NAME_MAX 200
/* "-" and 8 hexadecimal digits: what tells apart servers whose names make the same NAME */
#define LOG_TAG_LEN 9

/* Lower-case ASCII letter of c, or c. */
static unsigned char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : (unsigned char)c;
}

/* strcmp() with ASCII letters compared without their case (NAMEs are ASCII). */
static int
ascii_casecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		int x = ascii_lower(*a), y = ascii_lower(*b);

		if (x != y || x == 0) {
			return x - y;
		}
	}
}

/* FNV-1a, 32 bits: the tag of a server name, the same on every run. */
static uint32_t
name_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	}
	return h;
}

/* The NAMEs given so far, ASCII case ignored: open addressing, never more than half full. */
struct name_slot {
	const char *name; /* NULL: free */
	size_t next;	  /* NAME-TAG: the first N of NAME-TAG-N not yet tried */
};

struct name_set {
	struct name_slot *slot;
	size_t mask;
};

/* The slot of name: its own, or the free one where it would go. */
static struct name_slot *
name_slot(const struct name_set *set, const char *name)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (const char *c = name; *c != '\0'; c++) {
		h = (h ^ ascii_lower(*c)) * 16777619u;
	}
	for (i = h & set->mask;; i = (i + 1) & set->mask) {
		if (set->slot[i].name == NULL || ascii_casecmp(set->slot[i].name, name) == 0) {
			return &set->slot[i];
		}
	}
}

/*
 * The log NAME of a server whose safe name (cut to LOG_NAME_MAX) is safe and whose name
 * is key: the first of NAME, NAME-TAG (TAG: "-" and the FNV-1a hash of its name, NAME cut
 * to leave room for it), NAME-TAG-2, NAME-TAG-3... that is not in set, ASCII case ignored
 * (a file system may ignore it); added to set.  safe is taken over.  NULL: out of memory.
 */
static char *
unique_log_name(struct name_set *set, char *safe, const char *key, size_t klen)
{
	struct name_slot *sl = name_slot(set, safe), *tag_sl;
	size_t cut = strlen(safe), len;
	char *tagged, *s;

	if (sl->name == NULL) {
		sl->name = safe;
		return safe;
	}
	if (cut > LOG_NAME_MAX - LOG_TAG_LEN) {
		cut = LOG_NAME_MAX - LOG_TAG_LEN;
	}
	tagged = malloc(cut + LOG_TAG_LEN + 1);
	if (tagged == NULL) {
		free(safe);
		return NULL;
	}
	memcpy(tagged, safe, cut);
	snprintf(tagged + cut, LOG_TAG_LEN + 1, "-%08" PRIx32, name_hash(key, klen));
	free(safe);
	tag_sl = name_slot(set, tagged);
	if (tag_sl->name == NULL) {
		tag_sl->name = tagged;
		return tagged;
	}
	/* The same name again: the next N that no server before took (one may be named so). */
	len = strlen(tagged) + 24;
	s = malloc(len);
	if (s == NULL) {
		free(tagged);
		return NULL;
	}
	for (size_t n = tag_sl->next > 2 ? tag_sl->next : 2;; n++) {
		snprintf(s, len, "%s-%zu", tagged, n);
		sl = name_slot(set, s);
		if (sl->name == NULL) {
			sl->name = s;
			tag_sl->next = n + 1;
			break;
		}
	}
	free(tagged);
	return s;
}

/* Does a server wrap writes a log for (look_at(): a stdio server, or a wrapped one)? */
static int
takes_log(struct rewrite *rw, const struct json5_member *m)
{
	const struct json5_member *cmd_m, *args_m;
	struct skipped sk;
	size_t opt_end;
	int rc = look_at(rw, m, &cmd_m, &args_m, &sk);

	if (rc == 1 && runs_mcpmux(&cmd_m->val, rw->o)) {
		rc = args_m != NULL && wrapped_command_index(&args_m->val, &opt_end) != SIZE_MAX;
	}
	return rc;
}

/*
 * The log NAMEs of the servers of the file that wrap gives a log, for wrap --log-dir
 * (rw->log_names; NULL for the others: remote and skipped servers take no part).  Each
 * server, in the order of their places ("mcpServers", "servers", "mcp"."servers", and
 * in each, the file's), takes its own NAME (unique_log_name()) given the NAMEs of those
 * before it alone: a run again gives the same names, and a server added after all the
 * others renames no log.
 */
static int
log_names(struct rewrite *rw)
{
	size_t n = 0, k = 0, size = 2;
	struct name_set set = { 0 };
	int rc = 0;

	for (size_t l = 0; l < 3; l++) {
		n += rw->loc[l] != NULL ? rw->loc[l]->n : 0;
	}
	if (n == 0) {
		return 0;
	}
	while (size < 2 * n) {
		size *= 2;
	}
	set.slot = calloc(size, sizeof(*set.slot));
	set.mask = size - 1;
	rw->log_names = calloc(n, sizeof(*rw->log_names));
	if (set.slot == NULL || rw->log_names == NULL) {
		free(set.slot);
		return nomem(rw);
	}
	rw->n_log_names = n;
	for (size_t l = 0; l < 3 && rc == 0; l++) {
		for (size_t i = 0; rw->loc[l] != NULL && i < rw->loc[l]->n && rc == 0; i++, k++) {
			const struct json5_member *m = &rw->loc[l]->m[i];
			int takes = takes_log(rw, m);
			char *safe;

			if (takes != 1) {
				rc = takes; /* -1: what the rewrite says again, at this server */
				continue;
			}
			safe = config_log_name(m->key, m->klen);
			if (safe != NULL && strlen(safe) > LOG_NAME_MAX) {
				safe[LOG_NAME_MAX] = '\0';
			}
			rw->log_names[k] =
				safe != NULL ? unique_log_name(&set, safe, m->key, m->klen) : NULL;
			if (rw->log_names[k] == NULL) {
				rc = nomem(rw);
			}
		}
	}
	free(set.slot);
	return rc;
}

/* The "--log" value of the server being rewritten: LOG_DIR/NAME.jsonl (log_names()). */
static char *
log_path(const struct rewrite *rw, const char *dir)
{
	struct sbuf b = { 0 };
	size_t dlen = strlen(dir);

	if (rw->cur >= rw->n_log_names || rw->log_names[rw->cur] == NULL) {
		return NULL;
	}
	sbuf_adds(&b, dir);
	if (dlen == 0 || dir[dlen - 1] != '/') {
		sbuf_adds(&b, "/");
	}
	sbuf_addf(&b, "%s.jsonl", rw->log_names[rw->cur]);
	if (b.failed) {
		sbuf_release(&b);
		return NULL;
	}
	return b.buf;
}

/* The values of the options asked for, by OPT_*; NULL where not.  *log: owned. */
static int
wanted(struct rewrite *rw, const char *val[N_OPTS], char **log)
{
	const struct config_opts *o = rw->o;

	*log = NULL;
	if (o->log_dir != NULL && (*log = log_path(rw, o->log_dir)) == NULL) {
		return nomem(rw);
	}
	val[OPT_LOG] = *log;
	val[OPT_EOF_GRACE] = o->eof_grace;
	val[OPT_TERM_GRACE] = o->term_grace;
	val[OPT_IDLE_TIMEOUT] = o->idle_timeout;
	val[OPT_IDLE_SUSPEND] = o->idle_suspend;
	val[OPT_MAX_SERVERS] = o->max_servers;
	val[OPT_POOL] = o->pool;
	return 0;
}

/* Between a key and its value, only white space and the colon? */
static bool
plain_colon(const struct rewrite *rw, size_t key_end, size_t val_start)
{
	size_t c = json5_skip(rw->text, val_start, key_end, false);

	return c < val_start && rw->text[c] == ':' && white(rw, c + 1, val_start);
}

/* How many members of the entry e are named `key`. */
static size_t
count_members(const struct json5_node *e, const char *key)
{
	size_t n = 0;

	for (size_t i = 0; i < e->n; i++) {
		n += key_is(e->m[i].key, e->m[i].klen, key);
	}
	return n;
}

/*
 * Is args_m where wrap puts an "args" it adds: just before "command", with no comment
 * around its colon or its comma, and the entry's only "args"?  Unwrap removes such an
 * "args" when it is left empty.  (Where another "args" comes before it, that one would
 * be read once this one is gone: a client takes the last of a key.)
 */
static bool
removable_args(const struct rewrite *rw, const struct json5_node *e,
	       const struct json5_member *args_m, const struct json5_member *cmd_m)
{
	return args_m->index + 1 == cmd_m->index && args_m->comma != JSON5_NONE &&
	       plain_colon(rw, args_m->key_end, args_m->val.start) &&
	       white(rw, args_m->val.end, args_m->comma) && count_members(e, "args") == 1;
}

/* The text of "args": [...], to go just before the "command" member cmd_m of entry e. */
static void
args_member(const struct rewrite *rw, const struct json5_node *e, const struct json5_member *cmd_m,
	    const struct items *it, struct sbuf *b)
{
	size_t colon = cmd_m->key_end, vs = cmd_m->val.start,
	       c = json5_skip(rw->text, vs, colon, false);
	bool replace;

	if (cmd_m->key_quote != 0) {
		sbuf_add(b, &cmd_m->key_quote, 1);
		sbuf_adds(b, "args");
		sbuf_add(b, &cmd_m->key_quote, 1);
	} else {
		sbuf_adds(b, "args");
	}
	/* The colon as the command's is written, unless a comment or a line break is in it. */
	if (c < vs && rw->text[c] == ':' && blanks(rw, colon, c) && blanks(rw, c + 1, vs)) {
		sbuf_add(b, rw->text + colon, vs - colon);
	} else {
		sbuf_adds(b, ": ");
	}
	sbuf_adds(b, "[");
	fill_empty(rw, e, cmd_m, cmd_m->key_start, 0, 0, it, b, &replace);
	sbuf_adds(b, "],");
	/* Then what separates members: the command's own separator if it follows a comma. */
	if (starts_line(rw, cmd_m->key_start)) {
		add_newline_like(b, rw, cmd_m->key_start);
	} else if (cmd_m->index > 0 && blanks(rw, cmd_m->lead, cmd_m->key_start)) {
		sbuf_add(b, rw->text + cmd_m->lead, cmd_m->key_start - cmd_m->lead);
	} else {
		inline_sep(rw, e, cmd_m, b);
	}
}

/*
 * Wrap a stdio server: its command's text moves into args after mcpmux's options and
 * "--", and mcpmux becomes the command.
 */
static int
wrap_fresh(struct rewrite *rw, const struct json5_member *m, const struct json5_member *cmd_m,
	   const struct json5_member *args_m)
{
	const struct json5_node *e = &m->val, *cmd = &cmd_m->val;
	const struct json5_node *args = args_m != NULL ? &args_m->val : NULL;
	const char *val[N_OPTS];
	char *log, q = entry_quote(e, cmd);
	struct items it = { 0 };
	struct sbuf b = { 0 }, sep = { 0 }, before = { 0 }, after = { 0 };
	bool replace = false;
	int rc;

	if (wanted(rw, val, &log) == -1) {
		return -1;
	}
	line_add(&before, cmd->str, cmd->len);
	line_add_items(&before, args, 0, SIZE_MAX);
	line_add(&after, rw->o->mcpmux, strlen(rw->o->mcpmux));
	for (size_t i = 0; i < N_OPTS; i++) {
		if (val[i] != NULL) {
			items_add(&it, opt_names[i], strlen(opt_names[i]), q);
			items_add(&it, val[i], strlen(val[i]), q);
			line_add(&after, opt_names[i], strlen(opt_names[i]));
			line_add(&after, val[i], strlen(val[i]));
		}
	}
	items_add(&it, "--", 2, q);
	items_add(&it, rw->text + cmd->start, cmd->end - cmd->start, 0);
	line_add(&after, "--", 2);
	line_add(&after, cmd->str, cmd->len);
	line_add_items(&after, args, 0, SIZE_MAX);
	if (args != NULL && args->n > 0) {
		item_sep(rw, e, cmd_m, args, &sep);
		join_before(&b, &it, &sep);
		rc = edit(rw, args->m[0].key_start, args->m[0].key_start, &b);
	} else if (args != NULL) {
		fill_empty(rw, e, cmd_m, args_m->key_start, args->start + 1, args->end - 1, &it, &b,
			   &replace);
		rc = edit(rw, args->start + 1, replace ? args->end - 1 : args->start + 1, &b);
	} else {
		/* No "args" before: one goes just before "command", which tells unwrap. */
		args_member(rw, e, cmd_m, &it, &b);
		rc = edit(rw, cmd_m->key_start, cmd_m->key_start, &b);
	}
	if (rc == 0) {
		config_literal(&b, rw->o->mcpmux, strlen(rw->o->mcpmux), q);
		rc = edit(rw, cmd->start, cmd->end, &b);
	}
	if (rc == 0 && (it.text.failed || sep.failed)) {
		rc = nomem(rw);
	}
	if (rc == 0) {
		rc = describe(rw, m, CONFIG_CHANGED, &before, &after);
	}
	/* What unwrap cannot tell apart: see config_entry.inexact. */
	if (rc == 0 && args != NULL && args->n == 0 && white(rw, args->start + 1, args->end - 1) &&
	    (args->end - args->start > 2 || removable_args(rw, e, args_m, cmd_m))) {
		rw->r->entries[rw->r->n_entries - 1].inexact = true;
	}
	sbuf_release(&before);
	sbuf_release(&after);
	sbuf_release(&sep);
	sbuf_release(&it.text);
	free(log);
	return rc;
}

/* Where the option `name` of a wrapped entry's args has its value (the last one counts,
 * as with getopt): the index of the item, *inline_val when it is "--name=VALUE". */
static size_t
find_option(const struct json5_node *args, size_t opt_end, const char *name, bool *inline_val)
{
	size_t hit = SIZE_MAX;

	for (size_t i = 0; i < opt_end; i++) {
		const struct json5_node *a = &args->m[i].val;
		size_t nl = strcspn(a->str, "=");

		if (nl < a->len) {
			if (key_is(a->str, nl, name)) {
				hit = i;
				*inline_val = true;
			}
		} else if (IN_LIST(a->str, a->len, value_opts)) {
			if (key_is(a->str, a->len, name)) {
				hit = i + 1;
				*inline_val = false;
			}
			i++;
		}
	}
	return hit;
}

/*
 * An entry already wrapped: set the options asked for (a value replaced where the option
 * is there, the option added before "--" where not), and the command with set_command.
 */
static int
rewrap(struct rewrite *rw, const struct json5_member *m, const struct json5_member *cmd_m,
       const struct json5_member *args_m)
{
	const struct json5_node *e = &m->val, *cmd = &cmd_m->val;
	const struct json5_node *args = args_m != NULL ? &args_m->val : NULL;
	size_t opt_end, k = args != NULL ? wrapped_command_index(args, &opt_end) : SIZE_MAX;
	const char *val[N_OPTS];
	char *log, *now[N_OPTS] = { NULL }, q = entry_quote(e, cmd);
	size_t at[N_OPTS], n_now = 0, added[N_OPTS], n_added = 0;
	struct items it = { 0 };
	struct sbuf b = { 0 }, sep = { 0 }, before = { 0 }, after = { 0 };
	const char *command = cmd->str;
	int rc = 0;

	if (k == SIZE_MAX) {
		return skip(rw, m, "already runs through mcpmux", NULL);
	}
	if (wanted(rw, val, &log) == -1) {
		return -1;
	}
	if (rw->o->set_command && !is_string(cmd, rw->o->mcpmux)) {
		command = rw->o->mcpmux;
		config_literal(&b, command, strlen(command), q);
		rc = edit(rw, cmd->start, cmd->end, &b);
	}
	for (size_t o = 0; o < N_OPTS && rc == 0; o++) {
		size_t name = strlen(opt_names[o]), hit;
		bool inline_val = false;
		struct sbuf v = { 0 };

		if (val[o] == NULL) {
			continue;
		}
		hit = find_option(args, opt_end, opt_names[o], &inline_val);
		if (hit == SIZE_MAX) {
			items_add(&it, opt_names[o], name, q);
			items_add(&it, val[o], strlen(val[o]), q);
			added[n_added++] = o;
			continue;
		}
		const struct json5_node *a = &args->m[hit].val;

		if (inline_val) {
			sbuf_addf(&v, "%s=", opt_names[o]);
		}
		sbuf_adds(&v, val[o]);
		if (v.failed) {
			sbuf_release(&v);
			rc = nomem(rw);
		} else if (key_is(a->str, a->len, v.buf)) {
			sbuf_release(&v);
		} else {
			config_literal(&b, v.buf, v.len, q);
			at[n_now] = hit;
			now[n_now++] = v.buf;
			rc = edit(rw, a->start, a->end, &b);
		}
	}
	if (rc == 0 && it.n > 0) {
		item_sep(rw, e, cmd_m, args, &sep);
		join_before(&b, &it, &sep);
		rc = edit(rw, args->m[opt_end].key_start, args->m[opt_end].key_start, &b);
	}
	if (rc == 0 && (it.text.failed || sep.failed)) {
		rc = nomem(rw);
	}
	if (rc == 0 && command == cmd->str && n_now == 0 && it.n == 0) {
		rc = skip(rw, m, "already runs through mcpmux", NULL);
	} else if (rc == 0) {
		line_add(&before, cmd->str, cmd->len);
		line_add_items(&before, args, 0, SIZE_MAX);
		line_add(&after, command, strlen(command));
		for (size_t i = 0; i < args->n; i++) {
			const struct json5_node *a = &args->m[i].val;
			const char *s = a->str;
			size_t len = a->len;

			for (size_t j = 0; j < n_now; j++) {
				if (at[j] == i) {
					s = now[j];
					len = strlen(now[j]);
				}
			}
			for (size_t j = 0; i == opt_end && j < n_added; j++) {
				line_add(&after, opt_names[added[j]], strlen(opt_names[added[j]]));
				line_add(&after, val[added[j]], strlen(val[added[j]]));
			}
			line_add(&after, s, len);
		}
		rc = describe(rw, m, CONFIG_UPDATED, &before, &after);
	}
	for (size_t j = 0; j < n_now; j++) {
		free(now[j]);
	}
	sbuf_release(&before);
	sbuf_release(&after);
	sbuf_release(&sep);
	sbuf_release(&it.text);
	free(log);
	return rc;
}

/* Just past the line terminator that ends the line comment at p (b if none does). */
static size_t
past_line_end(const char *t, size_t b, size_t p)
{
	for (; p < b; p++) {
		if (t[p] == '\n') {
			return p + 1;
		}
		if (t[p] == '\r') {
			return p + 1 < b && t[p + 1] == '\n' ? p + 2 : p + 1;
		}
		if (b - p >= 3 && memcmp(t + p, "\xe2\x80", 2) == 0 &&
		    (t[p + 2] == '\xa8' || t[p + 2] == '\xa9')) {
			return p + 3; /* U+2028, U+2029 */
		}
	}
	return b;
}

/* Where the last comment in [a, b) ends, its line break included (a when none is). */
static size_t
last_comment_end(const struct rewrite *rw, size_t a, size_t b)
{
	const char *t = rw->text;
	size_t end = a, p = a;

	while ((p = json5_skip(t, b, p, false)) < b) {
		if (t[p + 1] == '/') {
			/* A line comment's line break stays with it. */
			p = past_line_end(t, b, p);
		} else {
			const char *close = memmem(t + p + 2, b - p - 2, "*/", 2);

			p = close != NULL ? (size_t)(close - t) + 2 : b;
		}
		end = p;
	}
	return end;
}

/*
 * Remove an item of args and its comma, and with `space` the white space after the
 * comma.  A comment between the item and its comma stays.
 */
static int
remove_item(struct rewrite *rw, const struct json5_member *it, bool space)
{
	size_t after;

	if (it->comma == JSON5_NONE) {
		return edit_remove(rw, it->val.start, it->val.end);
	}
	after = space ? json5_skip(rw->text, rw->len, it->comma + 1, false) : it->comma + 1;
	if (white(rw, it->val.end, it->comma)) {
		return edit_remove(rw, it->val.start, after);
	}
	if (edit_remove(rw, it->val.start, it->val.end) == -1) {
		return -1;
	}
	return edit_remove(rw, it->comma, after);
}

/* Unwrap an entry that runs mcpmux as a wrapper: the server's command goes back. */
static int
unwrap_entry(struct rewrite *rw, const struct json5_member *m, const struct json5_member *cmd_m,
	     const struct json5_member *args_m)
{
	const struct json5_node *cmd = &cmd_m->val;
	const struct json5_node *args = args_m != NULL ? &args_m->val : NULL;
	size_t opt_end, k = args != NULL ? wrapped_command_index(args, &opt_end) : SIZE_MAX;
	struct sbuf b = { 0 }, before = { 0 }, after = { 0 };
	int rc = 0;

	if (k == SIZE_MAX) {
		return skip(rw, m, "runs mcpmux, but not as a wrapped server", NULL);
	}
	/*
	 * An entry wrapped twice (by a version that did not know mcpmux by another name): the
	 * command restored is mcpmux wrapping the server, which goes back instead, however
	 * deep (each look starts past the last: it ends with the items).
	 */
	while (runs_mcpmux(&args->m[k].val, rw->o)) {
		size_t inner = wrapped_command_from(args, k + 1, &opt_end);

		if (inner == SIZE_MAX) {
			break;
		}
		k = inner;
	}
	line_add(&before, cmd->str, cmd->len);
	line_add_items(&before, args, 0, SIZE_MAX);
	line_add_items(&after, args, k, SIZE_MAX);
	if (describe(rw, m, CONFIG_CHANGED, &before, &after) == -1) {
		return -1;
	}
	/* The server's command goes back to "command", as the text it was. */
	sbuf_add(&b, rw->text + args->m[k].val.start, args->m[k].val.end - args->m[k].val.start);
	if (edit(rw, cmd->start, cmd->end, &b) == -1) {
		return -1;
	}
	if (k + 1 < args->n) {
		/* Each of mcpmux's items goes with its comma and the white space after it. */
		for (size_t i = 0; i <= k && rc == 0; i++) {
			rc = remove_item(rw, &args->m[i], true);
		}
		return rc;
	}
	/* Nothing stays in args. */
	size_t in_start = args->start + 1, in_end = args->end - 1;
	const struct json5_member *last = &args->m[k];
	size_t last_end = last->comma != JSON5_NONE ? last->comma + 1 : last->val.end;
	bool empty = white(rw, in_start, args->m[0].val.start) && white(rw, last_end, in_end);

	for (size_t i = 0; i <= k && empty; i++) {
		const struct json5_member *it = &args->m[i];

		empty = (it->comma == JSON5_NONE || white(rw, it->val.end, it->comma)) &&
			(i == k || white(rw, it->comma + 1, args->m[i + 1].val.start));
	}
	/*
	 * An "args" that wrap added sits just before "command": it goes, unless a comment
	 * sits in it or around its colon or comma.
	 */
	if (empty && removable_args(rw, &m->val, args_m, cmd_m)) {
		return edit_remove(rw, args_m->key_start,
				   json5_skip(rw->text, rw->len, args_m->comma + 1, false));
	}
	if (empty) {
		return edit_remove(rw, in_start, in_end);
	}
	/* Comments stay, and the white space from the last one to the first item goes. */
	rc = edit_remove(rw, last_comment_end(rw, in_start, args->m[0].val.start),
			 args->m[0].val.start);
	for (size_t i = 0; i <= k && rc == 0; i++) {
		rc = remove_item(rw, &args->m[i], i < k);
	}
	return rc;
}

static int
rewrite_entry(struct rewrite *rw, const struct json5_member *m)
{
	const struct json5_member *cmd_m = NULL, *args_m = NULL;
	int rc = classify(rw, m, &cmd_m, &args_m);

	if (rc != 1) {
		return rc;
	}
	if (rw->op == CONFIG_WRAP) {
		if (runs_mcpmux(&cmd_m->val, rw->o)) {
			return rewrap(rw, m, cmd_m, args_m);
		}
		return wrap_fresh(rw, m, cmd_m, args_m);
	}
	if (!runs_mcpmux(&cmd_m->val, rw->o)) {
		return skip(rw, m, "not wrapped", NULL);
	}
	return unwrap_entry(rw, m, cmd_m, args_m);
}

/* ---- the whole ---- */

/* The file's line end, and one level of indentation (from the first indented line). */
static void
file_style(struct rewrite *rw)
{
	const char *t = rw->text;
	size_t n = rw->len;

	rw->nl = "\n";
	for (size_t i = 0; i < n; i++) {
		if (t[i] == '\r') {
			rw->nl = i + 1 < n && t[i + 1] == '\n' ? "\r\n" : "\r";
			break;
		}
		if (t[i] == '\n') {
			break;
		}
	}
	strcpy(rw->indent, "  ");
	for (size_t i = 0; i + 1 < n; i++) {
		if (t[i] != '\n' || (t[i + 1] != ' ' && t[i + 1] != '\t')) {
			continue;
		}
		size_t w = 0;

		while (w < sizeof(rw->indent) - 1 && i + 1 + w < n && t[i + 1 + w] == t[i + 1]) {
			rw->indent[w] = t[i + 1];
			w++;
		}
		rw->indent[w] = '\0';
		break;
	}
}

/* The first non-empty "args" of a stdio server, whose layout new ones copy. */
static const struct json5_node *
find_ref_args(const struct json5_node *const loc[3])
{
	for (size_t l = 0; l < 3; l++) {
		for (size_t i = 0; loc[l] != NULL && i < loc[l]->n; i++) {
			const struct json5_node *a = value_get(&loc[l]->m[i].val, "args");

			if (a != NULL && a->type == JSON5_ARRAY && a->n > 0) {
				return a;
			}
		}
	}
	return NULL;
}

static bool
toml_key_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/*
 * Does a text that is neither JSON nor JSON5 look like TOML (Codex's config.toml)?  Its
 * first line that is neither blank nor a '#' comment is a table header, "[a.b]" or
 * "[[a]]", or "key = value" (a bare or dotted key).  *at: that line's start.
 */
static bool
looks_toml(const char *p, size_t len, size_t *at)
{
	size_t i = 0;

	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
		i = 3; /* a UTF-8 BOM */
	}
	for (;;) {
		while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) {
			i++;
		}
		if (i == len) {
			return false;
		}
		if (p[i] != '#') {
			break;
		}
		while (i < len && p[i] != '\n') {
			i++;
		}
	}
	*at = i;
	if (p[i] == '[') {
		/* "[" "[" ? key ("." key)* "]" "]"?, and nothing but a comment after it. */
		size_t j = i + 1, keys = 0;

		if (j < len && p[j] == '[') {
			j++;
		}
		while (j < len && (toml_key_char(p[j]) || p[j] == '.' || p[j] == ' ')) {
			keys += p[j] != '.' && p[j] != ' ';
			j++;
		}
		if (keys == 0 || j == len || p[j] != ']') {
			return false;
		}
		j++;
		if (j < len && p[j] == ']') {
			j++;
		}
		while (j < len && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r')) {
			j++;
		}
		return j == len || p[j] == '\n' || p[j] == '#';
	}
	size_t j = i;

	while (j < len && (toml_key_char(p[j]) || p[j] == '.')) {
		j++;
	}
	if (j == i) {
		return false;
	}
	while (j < len && (p[j] == ' ' || p[j] == '\t')) {
		j++;
	}
	return j < len && p[j] == '=';
}

int
config_rewrite(enum config_op op, const char *in, size_t len, const struct config_opts *o,
	       struct config_result *r)
{
	struct rewrite rw = { .op = op, .o = o, .text = in, .len = len, .r = r };
	struct json5_error err;
	size_t kept = 0; /* values to keep: more than CONFIG_MAX_KEPT, some dropped */
	const struct json5_node *root, *loc[3] = { NULL, NULL, NULL }, *mcp;
	static const char *const loc_name[3] = { "mcpServers", "servers", "mcp.servers" };
	int rc = -1;

	memset(r, 0, sizeof(*r));
	file_style(&rw);
	if (json5_parse(in, len, CONFIG_MAX_DEPTH, keep, &kept, R_ROOT, &rw.doc, &err) == -1) {
		if (err.nomem) {
			return nomem(&rw);
		}
		r->syntax = true;
		size_t at;

		if (looks_toml(in, len, &at)) {
			return fail(
				&rw, at,
				"neither JSON nor JSON5, and it looks like TOML: TOML configs (Codex's) are "
				"not supported; mcpmux rewrites the JSON and JSON5 configs of Claude "
				"Desktop, Claude Code, Cursor, Windsurf, VS Code and OpenClaw "
				"(docs/configs.md)");
		}
		return fail(&rw, err.off, "neither JSON nor JSON5: %s", err.msg);
	}
	if (kept > CONFIG_MAX_KEPT) {
		rc = fail(&rw, JSON5_NONE,
			  "more than %d servers, members of servers and arguments in all: not a "
			  "client's config",
			  CONFIG_MAX_KEPT);
		goto out;
	}
	root = &rw.doc.root;
	if (root->type != JSON5_OBJECT) {
		rc = fail(&rw, root->start, "the top level is %s, expected an object",
			  type_name(root->type));
		goto out;
	}
	loc[0] = value_get(root, "mcpServers");
	loc[1] = value_get(root, "servers");
	mcp = value_get(root, "mcp");
	loc[2] = value_get(mcp, "servers");
	for (size_t i = 0; i < 3; i++) {
		rw.loc[i] = loc[i];
		if (loc[i] != NULL && loc[i]->type != JSON5_OBJECT) {
			rc = fail(&rw, loc[i]->start, "\"%s\" is %s, expected an object of servers",
				  loc_name[i], type_name(loc[i]->type));
			goto out;
		}
	}
	if (loc[0] == NULL && loc[1] == NULL && loc[2] == NULL) {
		rc = fail(&rw, JSON5_NONE,
			  "no MCP servers found (expected a top-level \"mcpServers\" or "
			  "\"servers\" object, or \"mcp\": {\"servers\": ...})");
		goto out;
	}
	rw.ref_args = find_ref_args(loc);
	if (op == CONFIG_WRAP && o->log_dir != NULL && log_names(&rw) == -1) {
		goto out;
	}
	for (size_t l = 0; l < 3; l++) {
		for (size_t i = 0; loc[l] != NULL && i < loc[l]->n; i++, rw.cur++) {
			if (rewrite_entry(&rw, &loc[l]->m[i]) == -1) {
				goto out;
			}
		}
	}
	if (r->n_changed == 0) {
		r->text = malloc(len + 1);
		if (r->text == NULL) {
			rc = nomem(&rw);
			goto out;
		}
		memcpy(r->text, in, len);
		r->text[len] = '\0';
		r->len = len;
		for (size_t i = 0; i < r->n_entries; i++) {
			r->entries[i].out_start = r->entries[i].start;
			r->entries[i].out_end = r->entries[i].end;
		}
		rc = 0;
	} else {
		rc = apply_edits(&rw);
	}
out:
	for (size_t i = 0; i < rw.n_edits; i++) {
		free(rw.edits[i].text);
	}
	free(rw.edits);
	for (size_t i = 0; i < rw.n_log_names; i++) {
		free(rw.log_names[i]);
	}
	free(rw.log_names);
	json5_doc_release(&rw.doc);
	if (rc == -1) {
		free(r->text);
		r->text = NULL;
		r->len = 0;
	}
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
