/*
 * config: rewrite an MCP client's config so that its stdio servers run through mcpmux
 * (wrap), and put them back (unwrap).  Pure: text in, text out, no I/O.
 *
 * The config may be JSON or JSON5 (comments, unquoted keys, single quotes, trailing
 * commas...: see json5.h).  It is rewritten by splicing: only the spans that must change
 * are replaced, the "command" and "args" values of the entries concerned; every other
 * byte (comments, layout, escapes, numbers, other members) is copied as it was.  When no
 * server changes, the output is the input, byte for byte.
 *
 * Servers are looked for in the three places clients keep them, every one that is
 * present: a top-level "mcpServers" object (Claude Desktop, Claude Code's .mcp.json,
 * Cursor, Windsurf), a top-level "servers" object (VS Code's mcp.json), and "mcp":
 * {"servers": ...} (OpenClaw).  Each member is one server, by name.
 *
 * A stdio server (a string "command") is wrapped by moving its command line behind
 * mcpmux's:
 *
 *   "command": "npx", "args": ["-y", "pkg"]
 *   -> "command": "/usr/bin/mcpmux", "args": [OPTIONS..., "--", "npx", "-y", "pkg"]
 *
 * where OPTIONS are those of struct config_opts that are set, in its order.  The
 * server's command moves into "args" as the very text it was ('npx', "np\u0078"...).
 * New text follows the entry's style: its quotes, the layout of its "args" (one line or
 * one item a line, the items' indentation), the file's line ends, and trailing commas
 * where the file uses them.  An entry without "args" gets one, inserted just before
 * "command"; unwrap removes an "args" that sits just before "command" and is left empty
 * (when it is the entry's only "args"), and keeps every other "args" where it is.
 * Remote servers ("url", "serverUrl", or a "type" other than "stdio") are never touched.
 *
 * Wrap leaves alone an entry whose command is an mcpmux binary, except for what the call
 * sets explicitly: each option of config_opts that is set is written into a wrapped
 * entry's options (its value replaced where the option is there, the option added before
 * "--" where it is not), and with set_command the command becomes `mcpmux`.  Options not
 * given stay as they are.  So wrapping twice with the same options changes nothing.
 *
 * Unwrap restores entries whose command is an mcpmux binary and whose args are mcpmux's
 * wrap options, "--" (or nothing), and a command: the command goes back to "command" (as
 * the text it was), what follows it stays in "args".  For an entry that wrap changed,
 * unwrap gives back the original bytes, except where config_entry.inexact says.
 */
#ifndef MCPMUX_CONFIG_H
#define MCPMUX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting accepted: far beyond any config, and a bound on the parser's stack. */
#define CONFIG_MAX_DEPTH 127
/*
 * Most values kept from a config: its servers' places ("mcpServers"...), the servers, their
 * members and the items of their "args", in all.  Clients' configs hold tens of servers of
 * a few members and tens of arguments each, some thousand values; each kept one costs a
 * few hundred bytes, where its text may take 3 ("",): this bound keeps a hostile file's
 * cost to tens of MiB beyond its size.
 */
#define CONFIG_MAX_KEPT 100000

enum config_op {
	CONFIG_WRAP,
	CONFIG_UNWRAP,
};

struct config_opts {
	const char *mcpmux; /* the command of wrapped entries; unwrap also recognises it */
	/* --mcpmux PATH as given, when mcpmux is it made absolute (or NULL): recognised too */
	const char *mcpmux_given;
	/*
	 * Or NULL: is this absolute command the mcpmux file by another path (a symlink, a
	 * versioned name)?  Such an entry is wrapped too.  (The caller looks at the file
	 * system; this module does not.)
	 */
	bool (*is_mcpmux_file)(const char *command, void *ctx);
	void *ctx;
	bool set_command; /* wrap: also make `mcpmux` the command of already wrapped entries */
	/* wrap, each NULL when not given: */
	const char *log_dir;	  /* "--log LOG_DIR/<name>.jsonl" */
	const char *eof_grace;	  /* "--eof-grace MS" */
	const char *term_grace;	  /* "--term-grace MS" */
	const char *idle_timeout; /* "--idle-timeout S" */
	const char *idle_suspend; /* "--idle-suspend S" */
	const char *max_servers;  /* "--max-servers N" */
	const char *pool;	  /* "--pool NAME" */
};

enum config_verdict {
	CONFIG_CHANGED, /* wrapped or unwrapped */
	CONFIG_UPDATED, /* already wrapped: its options (or command) set as asked */
	CONFIG_SKIPPED,
};

/* What happened to one server, for the summary (--dry-run). */
struct config_entry {
	enum config_verdict verdict;
	char *name;   /* the server's name, shell-quoted when it needs to be */
	char *before; /* CHANGED, UPDATED: its command line before, shell-quoted */
	char *after;  /* and after */
	char *why;    /* SKIPPED: why, e.g. "remote (https://...)" */
	/* The entry's value: [start, end) in the input, [out_start, out_end) in the output. */
	size_t start, end, out_start, out_end;
	/*
	 * CHANGED by wrap, but unwrap will not give back the same bytes: the entry had an
	 * empty "args" with only white space inside ("[ ]" comes back as "[]"), or an
	 * empty "args" just before "command" (it comes back without "args").  Either way
	 * it means the same to a client.
	 */
	bool inexact;
	/*
	 * SKIPPED by wrap: a string "command" that is not mcpmux and a non-empty "url" (or
	 * "serverUrl"), and no "type" other than "stdio": which one a client takes is not
	 * known, so it is left alone.
	 */
	bool ambiguous;
};

struct config_result {
	char *text; /* the new file (NUL-terminated; len bytes) */
	size_t len;
	size_t n_changed; /* CHANGED and UPDATED entries */
	struct config_entry *entries;
	size_t n_entries;
	/* On error: what, and where (line and column from 1; 0 when there is no place). */
	char error[256];
	size_t line, col;
	bool syntax; /* the error is that the text is neither JSON nor JSON5 */
};

/*
 * Rewrite a config.  0 with r filled, or -1 with r->error (and r->line, r->col) set.
 * Either way, release r with config_result_release().
 */
int config_rewrite(enum config_op op, const char *in, size_t len, const struct config_opts *o,
		   struct config_result *r);
void config_result_release(struct config_result *r);

/* ---- the pieces, exposed for tests ---- */

/* Is this command an mcpmux binary (its last path component is "mcpmux", or it is `self`)? */
bool config_is_mcpmux(const char *command, const char *self);
/* A file-name-safe form of a server name for its log: [A-Za-z0-9._-], no leading dot. */
char *config_log_name(const char *name, size_t len);
/* Append s to a display line, in single quotes when the shell would need them. */
struct sbuf;
void config_shell_quote(struct sbuf *b, const char *s, size_t len);
/*
 * Append s as a JSON5 string literal in quote ('"' or '\''): JSON's escapes (lower-case
 * \u00XX for control characters), \' inside single quotes, UTF-8 as it is (invalid
 * bytes as U+FFFD).  With '"', the literal is also JSON.
 */
void config_literal(struct sbuf *b, const char *s, size_t len, char quote);
/* Line and column (from 1; the column counts bytes) of offset off in text. */
void config_position(const char *text, size_t len, size_t off, size_t *line, size_t *col);

#endif
