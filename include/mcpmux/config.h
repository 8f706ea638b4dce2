/*
 * config: rewrite an MCP client's config so that its stdio servers run through mcpmux
 * (wrap), and put them back (unwrap).  Pure: text in, text out, no I/O.
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
 * where OPTIONS are "--log", "DIR/<name>.jsonl", "--eof-grace", "MS", "--term-grace",
 * "MS" as asked for.  An entry without "args" gets one, inserted just before "command";
 * unwrap drops an "args" that sits just before "command" and is left empty, and keeps
 * every other "args", empty or not, where it is.  Every other member of the entry
 * ("env", "cwd", "type", ...) and of the file is kept, in its order.  Entries whose
 * command already is an mcpmux binary are left alone by wrap; unwrap restores entries
 * whose command is an mcpmux binary and whose args are mcpmux's wrap options, "--", and
 * a command.  Remote servers ("url", "serverUrl", or a "type" other than "stdio") are
 * never touched.
 *
 * The new text is made with yajl's generator, laid out in the input's style: its
 * indentation (a tab or N spaces, from the first indented line; two spaces by default),
 * its line ends (CRLF or LF), a final newline when the input had one, a byte-order mark
 * when it had one, everything on one line when it was on one line, and "{}" and "[]" for
 * empty objects and arrays, as JSON.stringify(value, null, N) lays them out.  Numbers are
 * written back as their original text.  So for files in that layout, wrap and then
 * unwrap gives back the original byte for byte.  When no server changes, the output is
 * the input, byte for byte.
 *
 * JSON with comments is refused (a generator cannot keep them), as is anything else that
 * is not strict JSON (RFC 8259): trailing commas, NaN, single quotes.
 */
#ifndef MCPMUX_CONFIG_H
#define MCPMUX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting accepted (yajl's generator stops at 127 open containers). */
#define CONFIG_MAX_DEPTH 127

enum config_op {
	CONFIG_WRAP,
	CONFIG_UNWRAP,
};

struct config_opts {
	const char *mcpmux;	/* the command of wrapped entries; unwrap also recognises it */
	const char *log_dir;	/* wrap: "--log LOG_DIR/<name>.jsonl" per server; NULL: none */
	const char *eof_grace;	/* wrap: "--eof-grace MS"; NULL: none (mcpmux's default) */
	const char *term_grace; /* wrap: "--term-grace MS"; NULL: none */
};

enum config_verdict {
	CONFIG_CHANGED, /* wrapped or unwrapped */
	CONFIG_SKIPPED,
};

/* What happened to one server, for the summary (--dry-run). */
struct config_entry {
	enum config_verdict verdict;
	char *name;   /* the server's name, shell-quoted when it needs to be */
	char *before; /* CHANGED: its command line before, shell-quoted */
	char *after;  /* CHANGED: and after */
	char *why;    /* SKIPPED: why, e.g. "remote (https://...)" */
};

struct config_result {
	char *text; /* the new file (NUL-terminated; len bytes) */
	size_t len;
	size_t n_changed;
	struct config_entry *entries;
	size_t n_entries;
	/* On error: what, and where (line and column from 1; 0 when there is no place). */
	char error[256];
	size_t line, col;
};

/*
 * Rewrite a config.  0 with r filled, or -1 with r->error (and r->line, r->col) set.
 * Either way, release r with config_result_release().
 */
int config_rewrite(enum config_op op, const char *in, size_t len, const struct config_opts *o,
		   struct config_result *r);
void config_result_release(struct config_result *r);

/* ---- the pieces, exposed for tests ---- */

struct config_style {
	char indent[17]; /* one level: "\t", "  ", "    ", ... */
	bool one_line;	 /* the JSON text had no line break: write it compact */
	bool crlf;	 /* lines end with "\r\n" */
	bool final_eol;	 /* the text ended with a line end */
	bool bom;	 /* it began with a UTF-8 byte-order mark */
};

void config_detect_style(const char *in, size_t len, struct config_style *s);
/*
 * Where the first comment ("//" or "slash-star") outside a string is: true with its line
 * and column, or false.
 */
bool config_find_comment(const char *in, size_t len, size_t *line, size_t *col);
/* Is this command an mcpmux binary (its last path component is "mcpmux", or it is `self`)? */
bool config_is_mcpmux(const char *command, const char *self);
/* A file-name-safe form of a server name for its log: [A-Za-z0-9._-], no leading dot. */
char *config_log_name(const char *name, size_t len);
/* Append s to a display line, in single quotes when the shell would need them. */
struct sbuf;
void config_shell_quote(struct sbuf *b, const char *s, size_t len);

#endif
