/*
 * cmd_config: `mcpmux config (wrap | unwrap) FILE [OPTIONS]`: read a client config, have
 * config.c rewrite it, and print it, print a summary (--dry-run), or replace the file
 * (--in-place): locked against another such run, a backup FILE.bak first (an existing
 * one is kept), then a temporary file in the same directory, both with the original's
 * owner, group, extended attributes (its ACL among them) and mode, fsync, rename over the original
 * (through a symlink, to its target), fsync of the directory.  On any error the file is left as it
 * was.  It also finds the mcpmux path that wrapped entries name: the one the user would type (see
 * self_path()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/config.h"
#include "mcpmux/diag.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"

#define CONFIG_MAX_SIZE ((size_t)64 << 20)

struct config_args {
	enum config_op op;
	const char *file;
	bool in_place;
	bool dry_run;
	const char *log_dir; /* as given */
	struct config_opts o;
};

static void
config_usage(void)
{
	fputs("usage: mcpmux config wrap FILE [OPTIONS]     route FILE's stdio servers through mcpmux\n"
	      "       mcpmux config unwrap FILE [OPTIONS]   put them back as they were\n"
	      "\n"
	      "FILE is an MCP client's config, in JSON or JSON5 (comments, unquoted keys,\n"
	      "trailing commas...): \"mcpServers\" (Claude Desktop, Claude Code's .mcp.json,\n"
	      "Cursor, Windsurf), \"servers\" (VS Code's mcp.json) or \"mcp\": {\"servers\"}\n"
	      "(OpenClaw); '-' reads stdin.  Only the \"command\" and \"args\" of the servers\n"
	      "that change are rewritten; every other byte is kept.  Remote (url) servers are\n"
	      "left alone.  A server already wrapped gets the options given (and the command,\n"
	      "with --mcpmux) and keeps its others: wrapping twice changes nothing.  The\n"
	      "result goes to stdout unless --in-place.\n"
	      "  -i, --in-place     replace FILE (atomically), after a backup FILE.bak (an\n"
	      "                     existing FILE.bak is kept); owner, group, mode and\n"
	      "                     extended attributes kept\n"
	      "  -n, --dry-run      print what would change, one line per server; write nothing\n"
	      "  --mcpmux PATH      the mcpmux command to write (default: this mcpmux as found\n"
	      "                     on PATH, else by the path it was started with)\n"
	      "options of wrap, written into each wrapped server's command line:\n"
	      "  --log-dir DIR      traffic log per server: --log DIR/<name>.jsonl\n"
	      "  --eof-grace MS     --eof-grace MS\n"
	      "  --term-grace MS    --term-grace MS\n"
	      "  --idle-timeout S   --idle-timeout S: end a run after S idle seconds\n"
	      "  --idle-suspend S   --idle-suspend S: stop an idle server, keep the client\n"
	      "  --max-servers N    --max-servers N: live servers of the pool at most\n"
	      "  --pool NAME        --pool NAME (1 to 64 of A-Z a-z 0-9 . _ -)\n"
	      "Exit status: 0 done, 1 the file is unusable (nothing written), 2 usage.\n",
	      stdout);
}

static int
usage_error(const char *what, const char *arg)
{
	diag_error("%s%s%s (see mcpmux config --help)", what, arg ? " " : "", arg ? arg : "");
	return -1;
}

/* A number of milliseconds or seconds, as mcpmux's own options take it. */
static bool
valid_number(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	return end != s && *end == '\0' && errno == 0 && v >= 0 && v <= 1e9;
}

/* A positive integer in decimal digits. */
static bool
valid_count(const char *s)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9') {
		return false;
	}
	errno = 0;
	v = strtoul(s, &end, 10);
	return *end == '\0' && errno == 0 && v >= 1 && v <= INT32_MAX;
}

/* A pool name: 1 to 64 characters of [A-Za-z0-9._-]. */
static bool
valid_pool(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

	return n >= 1 && n <= 64 && s[n] == '\0';
}

/*
 * Is s UTF-8, as every string of a JSON text is?  Else say so: written into a config, each
 * invalid byte would be U+FFFD (config_literal), a path to another file.
 */
static bool
is_utf8(const char *what, const char *s)
{
	size_t len = strlen(s);

	for (size_t i = 0, n; i < len; i += n) {
		n = rpcout_utf8_len((const unsigned char *)s + i, len - i);
		if (n == 0) {
			diag_error(
				"%s is not UTF-8 text, which a config cannot hold (nothing written)",
				what);
			return false;
		}
	}
	return true;
}

/* argv[0] is "config".  0, 1 for --help, -1 on a usage error (printed). */
static int
parse_args(struct config_args *a, int argc, char **argv)
{
	const char *pos[3] = { NULL, NULL, NULL };
	int npos = 0;
	bool opts_done = false;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value = NULL, *eq;
		const char **target = NULL;
		size_t name_len;

		if (opts_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
			if (npos < 3) {
				pos[npos] = arg;
			}
			npos++;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			opts_done = true;
			continue;
		}
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			config_usage();
			return 1;
		}
		if (strcmp(arg, "-i") == 0 || strcmp(arg, "--in-place") == 0) {
			a->in_place = true;
			continue;
		}
		if (strcmp(arg, "-n") == 0 || strcmp(arg, "--dry-run") == 0) {
			a->dry_run = true;
			continue;
		}
		eq = strchr(arg, '=');
		name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		if (name_len == 9 && strncmp(arg, "--log-dir", 9) == 0) {
			target = &a->log_dir;
		} else if (name_len == 11 && strncmp(arg, "--eof-grace", 11) == 0) {
			target = &a->o.eof_grace;
		} else if (name_len == 12 && strncmp(arg, "--term-grace", 12) == 0) {
			target = &a->o.term_grace;
		} else if (name_len == 14 && strncmp(arg, "--idle-timeout", 14) == 0) {
			target = &a->o.idle_timeout;
		} else if (name_len == 14 && strncmp(arg, "--idle-suspend", 14) == 0) {
			target = &a->o.idle_suspend;
		} else if (name_len == 13 && strncmp(arg, "--max-servers", 13) == 0) {
			target = &a->o.max_servers;
		} else if (name_len == 6 && strncmp(arg, "--pool", 6) == 0) {
			target = &a->o.pool;
		} else if (name_len == 8 && strncmp(arg, "--mcpmux", 8) == 0) {
			target = &a->o.mcpmux;
			a->o.set_command = true;
		} else {
			return usage_error("unknown option", arg);
		}
		if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			return usage_error("missing value for", arg);
		}
		if (value[0] == '\0') {
			return usage_error("empty value for", arg);
		}
		*target = value;
	}
	if (npos < 1) {
		return usage_error("usage: mcpmux config (wrap | unwrap) FILE [OPTIONS]", NULL);
	}
	if (strcmp(pos[0], "wrap") == 0) {
		a->op = CONFIG_WRAP;
	} else if (strcmp(pos[0], "unwrap") == 0) {
		a->op = CONFIG_UNWRAP;
	} else {
		return usage_error("unknown config command (expected wrap or unwrap):", pos[0]);
	}
	if (npos != 2) {
		return usage_error(npos < 2 ? "no FILE given" : "more than one FILE given", NULL);
	}
	a->file = pos[1];
	if (a->op == CONFIG_UNWRAP &&
	    (a->log_dir != NULL || a->o.eof_grace != NULL || a->o.term_grace != NULL ||
	     a->o.idle_timeout != NULL || a->o.idle_suspend != NULL || a->o.max_servers != NULL ||
	     a->o.pool != NULL)) {
		return usage_error("--log-dir, --eof-grace, --term-grace, --idle-timeout, "
				   "--idle-suspend, --max-servers and --pool are options of wrap",
				   NULL);
	}
	if (a->o.eof_grace != NULL && !valid_number(a->o.eof_grace)) {
		return usage_error("invalid --eof-grace (milliseconds >= 0):", a->o.eof_grace);
	}
	if (a->o.term_grace != NULL && !valid_number(a->o.term_grace)) {
		return usage_error("invalid --term-grace (milliseconds >= 0):", a->o.term_grace);
	}
	if (a->o.idle_timeout != NULL && !valid_number(a->o.idle_timeout)) {
		return usage_error("invalid --idle-timeout (seconds >= 0):", a->o.idle_timeout);
	}
	if (a->o.idle_suspend != NULL && !valid_number(a->o.idle_suspend)) {
		return usage_error("invalid --idle-suspend (seconds >= 0):", a->o.idle_suspend);
	}
	if (a->o.max_servers != NULL && !valid_count(a->o.max_servers)) {
		return usage_error("invalid --max-servers (a whole number >= 1):",
				   a->o.max_servers);
	}
	if (a->o.pool != NULL && !valid_pool(a->o.pool)) {
		return usage_error("invalid --pool (1 to 64 of A-Z a-z 0-9 . _ -):", a->o.pool);
	}
	if (a->in_place && strcmp(a->file, "-") == 0) {
		return usage_error("--in-place needs a FILE, not stdin", NULL);
	}
	return 0;
}

/* dl_iterate_phdr() callback: does the first object, the program, ask for a loader? */
static int
has_interp(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
		if (info->dlpi_phdr[i].p_type == PT_INTERP) {
			*(bool *)data = true;
		}
	}
	return 1;
}

/*
 * Is /proc/self/exe this mcpmux?  Not when it was run by naming the dynamic loader
 * ("/lib64/ld-linux-x86-64.so.2 mcpmux ..."): the kernel ran the loader, which loaded
 * mcpmux itself.  Then the kernel gave no loader's address (AT_BASE is 0), as it does for
 * a program that asks for no loader (a static one) alone.
 */
static bool
exe_is_mcpmux(void)
{
	bool interp = false;

	if (getauxval(AT_BASE) != 0) {
		return true;
	}
	(void)dl_iterate_phdr(has_interp, &interp);
	return !interp;
}

/* Is path the very file self is (device and inode)? */
static bool
is_self(const char *path, const struct stat *self)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == self->st_dev &&
	       st.st_ino == self->st_ino;
}

/*
 * The files that are mcpmux, for entries that name one by another path than the one
 * written now (a symlink to it, a versioned name): this binary, and the file --mcpmux PATH
 * names (made absolute).
 */
struct mcpmux_files {
	struct stat st[2];
	size_t n;
};

static void
mcpmux_file_add(struct mcpmux_files *f, const char *path)
{
	struct stat st;

	if (f->n < sizeof(f->st) / sizeof(f->st[0]) && stat(path, &st) == 0 &&
	    S_ISREG(st.st_mode)) {
		f->st[f->n++] = st;
	}
}

/* config_opts.is_mcpmux_file(): is command one of the files of ctx (a mcpmux_files)? */
static bool
is_mcpmux_file(const char *command, void *ctx)
{
	const struct mcpmux_files *f = ctx;
	struct stat st;

	if (f->n == 0 || stat(command, &st) == -1 || !S_ISREG(st.st_mode)) {
		return false;
	}
	for (size_t i = 0; i < f->n; i++) {
		if (st.st_dev == f->st[i].st_dev && st.st_ino == f->st[i].st_ino) {
			return true;
		}
	}
	return false;
}

/* argv[0] of this process (main() keeps it to itself): malloc'd, or NULL. */
static char *
argv0(void)
{
	char buf[PATH_MAX + 1];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd == -1) {
		return NULL;
	}
	n = sys_read(fd, buf, sizeof(buf) - 1);
	sys_close(&fd);
	if (n <= 0) {
		return NULL;
	}
	buf[n] = '\0';
	return strdup(buf);
}

/* The first PATH entry (absolute) that holds an "mcpmux" that is self.  malloc'd or NULL. */
static char *
self_on_path(const struct stat *self)
{
	const char *p = getenv("PATH");

	while (p != NULL && *p != '\0') {
		size_t len = strcspn(p, ":");

		/* A relative entry would give a path that means nothing to a client. */
		if (len > 0 && p[0] == '/') {
			struct sbuf b = { 0 };
			size_t dlen = len;

			while (dlen > 1 && p[dlen - 1] == '/') {
				dlen--;
			}
			sbuf_add(&b, p, dlen);
			sbuf_adds(&b, dlen == 1 ? "mcpmux" : "/mcpmux");
			if (!b.failed && is_self(b.buf, self) && access(b.buf, X_OK) == 0) {
				return b.buf;
			}
			sbuf_release(&b);
		}
		p += len;
		p += *p == ':';
	}
	return NULL;
}

/*
 * Clean an absolute path in place, as its text alone allows: no "//", no "." component,
 * and "dir/.." taken away.  (That may name another file when dir is a symlink: the
 * caller checks the result.)
 */
static void
clean_path(char *p)
{
	char *out = p, *in = p;

	while (*in != '\0') {
		size_t len;

		while (*in == '/') {
			in++;
		}
		len = strcspn(in, "/");
		if (len == 1 && in[0] == '.') {
			in += len;
		} else if (len == 2 && in[0] == '.' && in[1] == '.') {
			while (out > p && *--out != '/') {
			}
			in += len;
		} else if (len > 0) {
			*out++ = '/';
			memmove(out, in, len);
			out += len;
			in += len;
		}
	}
	if (out == p) {
		*out++ = '/';
	}
	*out = '\0';
}

/*
 * The path of this mcpmux, for wrapped entries: the one its user would type.  That is
 * the first "mcpmux" on PATH that is this very file: a Homebrew, nix or /opt install
 * runs through a symlink that stays when an upgrade removes the versioned file behind
 * it, so the symlink is the path to write, not its target.  Else argv[0] made absolute,
 * when it holds a slash and is this file; else /proc/self/exe.  No symlink is resolved.
 * malloc'd, or NULL after saying why.
 */
static char *
self_path(void)
{
	char exe[PATH_MAX], *path, *a0;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	struct stat self;

	if (n <= 0) {
		diag_error_errno("cannot find the path of this mcpmux binary in /proc/self/exe "
				 "(give it with --mcpmux PATH)");
		return NULL;
	}
	exe[n] = '\0';
	if (!exe_is_mcpmux()) {
		diag_error("cannot find the path of this mcpmux binary: it runs through %s "
			   "(give it with --mcpmux PATH)",
			   exe);
		return NULL;
	}
	if (stat(exe, &self) == -1 && stat("/proc/self/exe", &self) == -1) {
		return strdup(exe);
	}
	if ((path = self_on_path(&self)) != NULL) {
		return path;
	}
	a0 = argv0();
	if (a0 != NULL && strchr(a0, '/') != NULL) {
		struct sbuf b = { 0 };
		char cwd[PATH_MAX];

		if (a0[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL) {
			sbuf_adds(&b, cwd);
			sbuf_adds(&b, "/");
		}
		sbuf_adds(&b, a0);
		if (!b.failed && b.buf[0] == '/' && is_self(b.buf, &self)) {
			char *clean = strdup(b.buf);

			if (clean != NULL) {
				clean_path(clean);
			}
			if (clean != NULL && is_self(clean, &self)) {
				sbuf_release(&b);
				b.buf = clean;
			} else {
				free(clean);
			}
			free(a0);
			return b.buf;
		}
		sbuf_release(&b);
	}
	free(a0);
	return strdup(exe);
}

/*
 * --mcpmux PATH as a client can use it: a relative path with a '/' ("./bin/mcpmux",
 * "build/mcpmux") made absolute against the working directory, since a client starts
 * servers in a directory of its own; cleaned of "." and "dir/.." where that names the same
 * file (or none is there).  A bare name ("mcpmux") is kept: the client looks it up on its
 * PATH, as asked.  malloc'd, or NULL after saying why.  For unwrap (!need_cwd), a working
 * directory that is gone leaves PATH as it is, with a warning: entries whose command is
 * the text given are still recognised.
 */
static char *
absolute_command(const char *path, bool need_cwd)
{
	struct sbuf b = { 0 };
	char cwd[PATH_MAX], *clean;
	struct stat st, cst;
	bool keep = path[0] == '/' || strchr(path, '/') == NULL;

	if (!keep && getcwd(cwd, sizeof(cwd)) == NULL) {
		if (need_cwd) {
			diag_error_errno("cannot find the working directory for --mcpmux '%s'",
					 path);
			return NULL;
		}
		diag_warn_errno("cannot find the working directory for --mcpmux '%s': only "
				"commands written as it is are recognised",
				path);
		keep = true;
	}
	if (keep) {
		clean = strdup(path);
		if (clean == NULL) {
			diag_error("out of memory");
		}
		return clean;
	}
	sbuf_addf(&b, "%s/%s", cwd, path);
	clean = b.failed ? NULL : strdup(b.buf);
	if (clean == NULL) {
		sbuf_release(&b);
		diag_error("out of memory");
		return NULL;
	}
	clean_path(clean);
	if (stat(b.buf, &st) == 0 &&
	    (stat(clean, &cst) == -1 || cst.st_dev != st.st_dev || cst.st_ino != st.st_ino)) {
		free(clean); /* "link/.." is not where the text says: keep the path as it is */
		return b.buf;
	}
	sbuf_release(&b);
	return clean;
}

/* DIR made absolute against the working directory (a client starts servers elsewhere). */
static char *
absolute_dir(const char *dir)
{
	struct sbuf b = { 0 };
	size_t len = strlen(dir);
	struct stat st;

	if (dir[0] != '/') {
		char cwd[PATH_MAX];

		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			diag_error_errno("cannot find the working directory for --log-dir '%s'",
					 dir);
			return NULL;
		}
		sbuf_adds(&b, cwd);
		if (strcmp(cwd, "/") != 0) {
			sbuf_adds(&b, "/");
		}
		while (len > 2 && dir[0] == '.' && dir[1] == '/') {
			dir += 2;
			len -= 2;
		}
	}
	while (len > 1 && dir[len - 1] == '/') {
		len--;
	}
	if (!(len == 1 && dir[0] == '.') || b.len == 0) {
		sbuf_add(&b, dir, len);
	} else if (b.len > 1) {
		b.buf[--b.len] = '\0'; /* "cwd/" + "." -> "cwd" */
	}
	if (b.failed) {
		sbuf_release(&b);
		diag_error("out of memory");
		return NULL;
	}
	if (stat(b.buf, &st) == -1 || !S_ISDIR(st.st_mode)) {
		diag_warn("log directory '%s' does not exist yet; the wrapped servers' logs go "
			  "there once it does",
			  b.buf);
	}
	return b.buf;
}

/* Read all of fd.  0 with *out (malloc'd, NUL-terminated), or -1 after printing why. */
static int
read_all(int fd, const char *name, char **out, size_t *len)
{
	struct sbuf b = { 0 };
	char buf[65536];

	for (;;) {
		ssize_t n = sys_read(fd, buf, sizeof(buf));

		if (n == -1 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (poll(&p, 1, -1) == -1 && errno != EINTR) {
				break;
			}
			continue;
		}
		if (n == -1) {
			break;
		}
		if (n == 0) {
			*out = b.buf != NULL ? b.buf : strdup("");
			*len = b.len;
			if (*out == NULL) {
				return diag_error("out of memory");
			}
			return 0;
		}
		if (b.len + (size_t)n > CONFIG_MAX_SIZE) {
			sbuf_release(&b);
			return diag_error("%s: too large for a config file (over %zu MiB)", name,
					  CONFIG_MAX_SIZE >> 20);
		}
		sbuf_add(&b, buf, (size_t)n);
		if (b.failed) {
			sbuf_release(&b);
			return diag_error("%s: out of memory", name);
		}
	}
	diag_error_errno("%s: cannot read", name);
	sbuf_release(&b);
	return -1;
}

static int
fsync_close(int *fd)
{
	int rc = 0;

	while (fsync(*fd) == -1) {
		if (errno != EINTR) {
			rc = -1;
			break;
		}
	}
	/* close() reports a deferred write error (NFS): that fails the write too. */
	if (close(*fd) == -1 && errno != EINTR) {
		rc = -1;
	}
	*fd = -1;
	return rc;
}

/* The value of the extended attribute `name` of fd, malloc'd, its length in *len; NULL. */
static char *
get_xattr(int fd, const char *name, size_t *len)
{
	for (int tries = 0; tries < 4; tries++) {
		ssize_t n = fgetxattr(fd, name, NULL, 0);
		char *v;

		if (n < 0 || (v = malloc((size_t)n + 1)) == NULL) {
			return NULL;
		}
		n = fgetxattr(fd, name, v, (size_t)n);
		if (n >= 0) {
			*len = (size_t)n;
			return v;
		}
		free(v);
		if (errno != ERANGE) { /* ERANGE: it grew in between */
			return NULL;
		}
	}
	return NULL;
}

/* The names of fd's extended attributes, each ended by a NUL, malloc'd; NULL (errno). */
static char *
list_xattrs(int fd, size_t *len)
{
	for (int tries = 0; tries < 4; tries++) {
		ssize_t n = flistxattr(fd, NULL, 0);
		char *names;

		if (n < 0 || (names = malloc((size_t)n + 1)) == NULL) {
			return NULL;
		}
		n = flistxattr(fd, names, (size_t)n);
		if (n >= 0) {
			*len = (size_t)n;
			return names;
		}
		free(names);
		if (errno != ERANGE) {
			return NULL;
		}
	}
	return NULL;
}

#define ACL_ACCESS "system.posix_acl_access"

/*
 * Give `to` the extended attributes of `from` (the original): its access ACL among them
 * (system.posix_acl_access), or none where the original had none (a default ACL of the
 * directory gives a new file one of its own, which would let others in).  An attribute
 * that cannot be read or set (one only a privileged process may set, a file system that
 * takes none) is a warning, as an owner that cannot be kept is; the text is written.
 * The number of attributes that could not be copied, the first one's name in `first`,
 * or -1 when none could be read.
 */
static int
copy_xattrs(int from, int to, char *first, size_t first_len)
{
	size_t len = 0;
	char *names = list_xattrs(from, &len);
	bool acl = false;
	int failed = 0, err = 0;

	if (names == NULL) {
		if (errno != ENOTSUP) {
			return -1;
		}
		len = 0; /* a file system without them: nothing to copy */
	}
	for (size_t off = 0; off < len; off += strlen(names + off) + 1) {
		const char *name = names + off;
		size_t vlen = 0;
		char *v;

		if (name[0] == '\0') {
			continue;
		}
		acl = acl || strcmp(name, ACL_ACCESS) == 0;
		v = get_xattr(from, name, &vlen);
		if ((v == NULL || fsetxattr(to, name, v, vlen, 0) == -1) && failed++ == 0) {
			err = errno;
			(void)snprintf(first, first_len, "%s", name);
		}
		free(v);
	}
	free(names);
	if (!acl && fremovexattr(to, ACL_ACCESS) == -1 && errno != ENODATA && errno != ENOTSUP &&
	    failed++ == 0) {
		err = errno;
		(void)snprintf(first, first_len, "%s", ACL_ACCESS);
	}
	errno = err; /* the first failure's, for the warning */
	return failed;
}

/*
 * Give fd the owner and group of st (when they are not ours), the extended attributes of
 * the original (src), then its mode: in that order, since a change of owner clears the
 * set-user-ID and set-group-ID bits (and a file capability), and the mode sets the mask
 * of an ACL.  Only root may give a file away: for others a failure to is a warning, not
 * an error, one for the backup and one for the file (two call sites: the rate limit of
 * diag_warn is by call site, and would keep the file's from being said after the
 * backup's).
 */
static int
copy_owner_mode(int fd, int src, const struct stat *st, const char *what, bool backup)
{
	struct stat now;
	char name[256];
	int failed;

	/*
	 * What the new file got (a set-group-ID directory gives it the directory's group),
	 * not what this process is.  A member of the file's group who does not own it may
	 * still give the new file that group: the group alone, when the owner cannot be.
	 */
	if (fstat(fd, &now) == 0 && (now.st_uid != st->st_uid || now.st_gid != st->st_gid) &&
	    fchown(fd, st->st_uid, st->st_gid) == -1) {
		bool group = now.st_gid == st->st_gid || fchown(fd, (uid_t)-1, st->st_gid) == 0;

		if (!group || now.st_uid != st->st_uid) {
			if (backup) {
				diag_warn_errno("cannot give the backup %s the owner %u:%u of the "
						"original",
						what, (unsigned)st->st_uid, (unsigned)st->st_gid);
			} else {
				diag_warn_errno("cannot give %s the owner %u:%u of the original",
						what, (unsigned)st->st_uid, (unsigned)st->st_gid);
			}
		}
	}
	failed = copy_xattrs(src, fd, name, sizeof(name));
	if (failed != 0) {
		if (failed == -1 && backup) {
			diag_warn_errno("cannot read the extended attributes of the original: the "
					"backup %s has none",
					what);
		} else if (failed == -1) {
			diag_warn_errno("cannot read the extended attributes of %s: the new file "
					"has none",
					what);
		} else if (backup) {
			diag_warn_errno("cannot give the backup %s %d extended attribute(s) of the "
					"original, %s among them",
					what, failed, name);
		} else {
			diag_warn_errno("cannot give %s %d extended attribute(s) of the original, "
					"%s among them",
					what, failed, name);
		}
	}
	return fchmod(fd, st->st_mode & 07777);
}

/* A copy of the directory part of the absolute path `path` ("/" for "/x"); NULL. */
static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash != NULL && slash != path ? (size_t)(slash - path) : 1;
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, path, n);
		d[n] = '\0';
	}
	return d;
}

/*
 * A temporary name beside the absolute path `path` (in `dir`, its directory, or NULL when
 * that could not be had): its directory, then `pre`, its file
 * name, ".mcpmux-" and `post`, with room for `more` bytes that the caller adds.  The file
 * name is cut where the whole would not fit in the longest name of the directory's file
 * system (NAME_MAX when that cannot be told): a file named near that bound is still one
 * that can be rewritten.
 */
static void
temp_name(struct sbuf *b, const char *dir, const char *path, const char *pre, const char *post,
	  size_t more)
{
	const char *base = strrchr(path, '/') + 1;
	long max = dir != NULL ? pathconf(dir, _PC_NAME_MAX) : -1;
	size_t longest = max > 0 ? (size_t)max : NAME_MAX;
	size_t fixed = strlen(pre) + strlen(".mcpmux-") + strlen(post) + more;
	size_t room = longest > fixed ? longest - fixed : 0;
	size_t len = strlen(base);

	sbuf_add(b, path, (size_t)(base - path));
	sbuf_adds(b, pre);
	sbuf_add(b, base, len < room ? len : room);
	sbuf_adds(b, ".mcpmux-");
	sbuf_adds(b, post);
}

/*
 * A new file made whole before it has a name: unnamed (O_TMPFILE) in `dir`, given the
 * original's owner, attributes and mode, written and synced, then linked to `name`,
 * which fails (EEXIST) if the name is taken.  A run killed before the link leaves
 * nothing behind, where a named temporary file would stay.  0 linked; -1 with errno (a
 * write that failed, EEXIST); -2 when the file system makes no unnamed file (before
 * Linux 3.11, NFS, FUSE) or cannot link one (no hard links, no /proc): the caller makes
 * a named one instead.
 */
static int
new_unnamed(const char *dir, const char *name, int src, const struct stat *st, const char *what,
	    bool backup, const char *text, size_t len)
{
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600), rc = -1, err;

	if (fd == -1) {
		return -2;
	}
	if (copy_owner_mode(fd, src, st, what, backup) == 0 && sys_write_fd(fd, text, len) == 0) {
		while ((rc = fsync(fd)) == -1 && errno == EINTR) {
		}
	}
	if (rc == 0) {
		char proc[48];

		(void)snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == -1) {
			rc = errno == EEXIST ? -1 : -2;
		}
	}
	err = errno;
	/* close() reports a deferred write error: the file is not whole, and goes again. */
	if (close(fd) == -1 && errno != EINTR && rc == 0) {
		err = errno;
		(void)unlink(name);
		rc = -1;
	}
	errno = err;
	return rc;
}

/*
 * bak (FILE.bak) with the original bytes, owner, attributes and mode, unless it exists.
 * Whole or not at all: made unnamed and linked to its name (new_unnamed()); where that
 * cannot be, written to a temporary file beside it, synced, then linked to its name.
 * Either link fails if the name is taken.  A name already taken is seen first: no copy is
 * written (on a full disk it could not be) and nothing is said of the owner or attributes
 * of a backup that is not made.  1 made, 0 kept, -1.
 */
static int
write_backup(const char *bak, int src, const struct stat *st, const char *text, size_t len)
{
	struct sbuf tmp = { 0 };
	struct stat old;
	char *dir = dir_of(bak);
	int fd = -1, rc = -1, made;

	if (dir == NULL) {
		return diag_error("out of memory");
	}
	if (lstat(bak, &old) == 0) {
		made = -1; /* taken: see below (the links would fail with EEXIST) */
		errno = EEXIST;
	} else {
		made = new_unnamed(dir, bak, src, st, bak, true, text, len);
	}
	if (made == -2) {
		temp_name(&tmp, dir, bak, "", "XXXXXX", 0);
	}
	free(dir);
	if (made == 0) {
		return 1;
	}
	if (made == -1 && errno != EEXIST) {
		diag_error_errno("cannot write the backup '%s' (nothing written)", bak);
		return -1;
	}
	if (made == -2) {
		if (tmp.failed) {
			return diag_error("out of memory");
		}
		/* Readable by its owner alone until it has the original's owner and mode. */
		fd = mkostemp(tmp.buf, O_CLOEXEC);
		if (fd == -1) {
			diag_error_errno("cannot create the backup '%s' (nothing written)", bak);
			sbuf_release(&tmp);
			return -1;
		}
	}
	if (made == -1) {
		errno = EEXIST; /* taken: see below */
	} else if (copy_owner_mode(fd, src, st, bak, true) == -1 ||
		   sys_write_fd(fd, text, len) == -1 || fsync_close(&fd) == -1) {
		diag_error_errno("cannot write the backup '%s' (nothing written)", bak);
		goto out;
	} else if (link(tmp.buf, bak) == 0 ||
		   (errno != EEXIST &&
		    renameat2(AT_FDCWD, tmp.buf, AT_FDCWD, bak, RENAME_NOREPLACE) == 0)) {
		rc = 1; /* (a file system without hard links: renamed, without replacing) */
		goto out;
	}
	if (errno != EEXIST) {
		diag_error_errno("cannot create the backup '%s' (nothing written)", bak);
	} else if (stat(bak, &old) == -1 || !S_ISREG(old.st_mode)) {
		/* A directory, a dangling symlink...: there would be no backup at all. */
		diag_error("'%s' exists but is not a file: no backup can be made (nothing "
			   "written)",
			   bak);
	} else if (old.st_dev == st->st_dev && old.st_ino == st->st_ino) {
		/*
		 * A symlink to the file itself: kept as an older backup, it would show the new
		 * text once the file is replaced, and the original would be nowhere.
		 */
		diag_error("'%s' is the file itself (a symlink to it), not a copy: no backup can "
			   "be made (nothing written)",
			   bak);
	} else {
		rc = 0; /* an older one: never overwritten */
	}
out:
	if (fd != -1) {
		sys_close(&fd);
	}
	if (tmp.buf != NULL) {
		(void)unlink(tmp.buf); /* after a rename, nothing there */
	}
	sbuf_release(&tmp);
	return rc;
}

/*
 * Whether the file is the one read, as it was: the same inode, size, modification and
 * change times.  (The change time is the kernel's own: a tool that restores the
 * modification time after a write cannot restore it.)
 */
static bool
same_file_state(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * Whether the file open at fd still holds exactly text, read again from its start: the
 * times are those of the kernel's clock tick, and a write of the same size within the
 * tick of the read would leave the state above as it was.
 */
static bool
same_text(int fd, const char *text, size_t len)
{
	char buf[8192];
	size_t off = 0;

	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return n == 0 && off == len;
		}
		if ((size_t)n > len - off || memcmp(buf, text + off, (size_t)n) != 0) {
			return false;
		}
		off += (size_t)n;
	}
}

/*
 * Replace the file `target` (a real path, no symlink) with text: a new file in its
 * directory, with its mode and owner, synced, linked to a temporary name only once it is
 * whole (new_unnamed(); where that cannot be, written under the temporary name), renamed
 * over it, and the directory synced.
 */
static int
replace_file(const char *file, const char *target, int src, const struct stat *st, const char *orig,
	     size_t orig_len, const char *text, size_t len)
{
	struct sbuf tmp = { 0 };
	const char *slash = strrchr(target, '/'); /* target is absolute */
	size_t dir_len = slash != NULL ? (size_t)(slash - target) : 0;
	char *dir = dir_of(target);
	struct stat now;
	char pid[24];
	int fd = -1, dfd, rc = -1, made = -2;

	(void)snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	temp_name(&tmp, dir, target, ".", pid, strlen("-XXXXXX"));
	if (tmp.failed || dir == NULL) {
		free(dir);
		sbuf_release(&tmp);
		return diag_error("out of memory");
	}
	made = new_unnamed(dir, tmp.buf, src, st, file, false, text, len);
	free(dir);
	if (made == -1 && errno != EEXIST) {
		diag_error_errno("cannot write '%s' (nothing written)", file);
		goto out;
	}
	if (made != 0) {
		/* A named one (the name is also taken: a run of the same pid, killed). */
		sbuf_adds(&tmp, "-XXXXXX");
		fd = tmp.failed ? -1 : mkostemp(tmp.buf, O_CLOEXEC);
		if (fd == -1) {
			diag_error_errno("cannot create a temporary file next to '%s' (nothing "
					 "written)",
					 file);
			goto out;
		}
		if (copy_owner_mode(fd, src, st, file, false) == -1) {
			diag_error_errno("cannot set the mode of '%s'", tmp.buf);
			goto fail;
		}
		if (sys_write_fd(fd, text, len) == -1 || fsync_close(&fd) == -1) {
			diag_error_errno("cannot write '%s' (nothing written)", tmp.buf);
			goto fail;
		}
	}
	/*
	 * Someone (the client itself) changed the file since it was read: do not clobber.
	 * The path given is looked at too: a save that replaced a symlink with a file, or
	 * pointed it elsewhere, leaves the target as it was, and the new one unseen.
	 */
	if (stat(target, &now) == -1 || !same_file_state(st, &now) || stat(file, &now) == -1 ||
	    !same_file_state(st, &now) || !same_text(src, orig, orig_len)) {
		diag_error("'%s' changed while it was being rewritten (nothing written; try again)",
			   file);
		goto fail;
	}
	if (rename(tmp.buf, target) == -1) {
		diag_error_errno("cannot replace '%s' (nothing written)", file);
		goto fail;
	}
	rc = 0;
	tmp.buf[dir_len > 0 ? dir_len : 1] = '\0'; /* its directory ("/" for "/x") */
	/*
	 * The rename is durable once the directory is.  A failure here loses nothing now
	 * (the new file is in place, and the run succeeds), but is said: until the system
	 * writes the directory out, a power loss may bring the old file back.
	 */
	dfd = open(tmp.buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1) {
		diag_warn_errno("'%s' is replaced, but its directory cannot be opened to sync it: "
				"the new name may not survive a power loss",
				file);
	} else {
		int synced;

		while ((synced = fsync(dfd)) == -1 && errno == EINTR) {
		}
		if (synced == -1) {
			diag_warn_errno("'%s' is replaced, but its directory cannot be synced: the "
					"new name may not survive a power loss",
					file);
		}
		sys_close(&dfd);
	}
	goto out;
fail:
	if (fd != -1) {
		sys_close(&fd);
	}
	(void)unlink(tmp.buf);
out:
	sbuf_release(&tmp);
	return rc;
}

/*
 * The summary of --dry-run, one line a server, written as the new text is (sys_write_fd()):
 * stdio would drop what a full non-blocking stdout, or a full disk, did not take, and
 * its last flush could then succeed.  0, or -1 after saying why.
 */
static int
print_summary(const struct config_args *a, const struct config_result *r)
{
	const char *verb = a->op == CONFIG_WRAP ? "wrap" : "unwrap";
	struct sbuf b = { 0 };
	int rc = 0;

	for (size_t i = 0; i < r->n_entries; i++) {
		const struct config_entry *e = &r->entries[i];

		if (e->verdict != CONFIG_SKIPPED) {
			sbuf_addf(&b, "%-6s %s: %s -> %s\n",
				  e->verdict == CONFIG_UPDATED ? "update" : verb, e->name,
				  e->before, e->after);
		} else {
			sbuf_addf(&b, "%-6s %s: %s\n", "skip", e->name, e->why);
		}
	}
	if (r->n_entries == 0) {
		sbuf_addf(&b, "no servers in %s\n", a->file);
	}
	if (b.failed) {
		rc = diag_error("out of memory");
	} else if (fflush(stdout) == EOF || sys_write_fd(STDOUT_FILENO, b.buf, b.len) == -1) {
		rc = diag_error_errno("cannot write to stdout");
	}
	sbuf_release(&b);
	return rc;
}

/*
 * Is stdout the file st is (`mcpmux config wrap FILE > FILE`, or >>)?  What is written
 * there would follow the text (>>), overwrite it from its start and leave the rest of a
 * longer text behind it (1<>), or replace a file the shell has already emptied (>):
 * either way the client's config is ruined.
 */
static bool
is_stdout(const struct stat *st)
{
	return S_ISREG(st->st_mode) && sys_fd_is_file(STDOUT_FILENO, st);
}

/*
 * Refuse a stdout that is FILE (is_stdout()), saying why on stderr, unless stderr is FILE
 * too (`>> FILE 2>&1`): the message would then go into the file, and the exit status
 * alone says that nothing was done.
 */
static void
refuse_stdout(const struct config_args *a, const char *name, bool from_stdin, const struct stat *st)
{
	int fl = fcntl(STDOUT_FILENO, F_GETFL);

	if (sys_fd_is_file(STDERR_FILENO, st)) {
		return;
	}
	/*
	 * An empty file may have been emptied by the shell's '>' (stdout then not O_APPEND),
	 * or been empty before: only what is known is said.
	 */
	diag_error("%s: is also the standard output, where %s would go: nothing written%s%s%s",
		   name, a->dry_run ? "the lines of --dry-run" : "the result",
		   st->st_size == 0 ? "; it is empty" : "",
		   st->st_size == 0 && fl != -1 && !(fl & O_APPEND)
			   ? " (a shell's '>' empties the file before mcpmux runs)"
			   : "",
		   a->in_place || from_stdin ? "" : " (use --in-place to rewrite a file)");
}

static int
run(struct config_args *a)
{
	bool from_stdin = strcmp(a->file, "-") == 0;
	const char *name = from_stdin ? "<stdin>" : a->file;
	struct config_result r;
	struct stat st;
	char *text = NULL, *target = NULL;
	struct sbuf bak = { 0 };
	size_t len;
	int fd = STDIN_FILENO, rc = 1, made;

	if (!from_stdin) {
		/*
		 * --in-place takes a regular file alone, and says so below: a FIFO is not
		 * waited on for a writer that may never come (O_NONBLOCK; a regular file
		 * reads as it would without it).
		 */
		fd = open(a->file, O_RDONLY | O_CLOEXEC | (a->in_place ? O_NONBLOCK : 0));
		if (fd == -1) {
			diag_error_errno("%s: cannot open", name);
			return 1;
		}
	}
	if (fstat(fd, &st) == -1) {
		diag_error_errno("%s: cannot stat", name);
	} else if (S_ISDIR(st.st_mode)) {
		diag_error("%s: is a directory, not a config file", name);
	} else if ((!a->in_place || a->dry_run) && is_stdout(&st)) {
		/* (--dry-run writes its lines to stdout, with --in-place too.) */
		refuse_stdout(a, name, from_stdin, &st);
	} else if (a->in_place && !S_ISREG(st.st_mode)) {
		diag_error("%s: not a regular file: cannot replace it --in-place", name);
	} else if (a->in_place && st.st_nlink > 1) {
		/* A new file renamed over one of its names would part it from the others. */
		diag_error("%s: one of %ju hard links to the file: replacing it --in-place would "
			   "leave the others with the old text (nothing written)",
			   name, (uintmax_t)st.st_nlink);
	} else if (a->in_place && flock(fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK) {
		/*
		 * Another `config --in-place` is at it: it may yet remove the backup it made,
		 * which this run would keep as an older one.  (A file system without locks
		 * goes on unlocked.)  The lock holds until fd is closed, after the rename.
		 */
		diag_error("%s: locked by another process, such as another mcpmux rewriting it "
			   "(nothing written; try again)",
			   name);
	} else if (read_all(fd, name, &text, &len) == 0) {
		rc = 0;
	}
	if (!from_stdin && (rc != 0 || !a->in_place)) {
		sys_close(&fd);
	}
	if (rc != 0) {
		return 1;
	}
	if (config_rewrite(a->op, text, len, &a->o, &r) == -1) {
		if (r.line > 0) {
			diag_error("%s:%zu:%zu: %s", name, r.line, r.col, r.error);
		} else {
			diag_error("%s: %s", name, r.error);
		}
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < r.n_entries; i++) {
		if (r.entries[i].ambiguous) {
			diag_warn_each("%s: server %s has both a \"command\" and a URL, and a "
				       "client may take either: left as it is (remove the one it "
				       "does not use, then wrap)",
				       name, r.entries[i].name);
		}
	}
	if (a->dry_run) {
		rc = print_summary(a, &r) == 0 ? 0 : 1;
		goto out;
	}
	if (!a->in_place) {
		if (sys_write_fd(STDOUT_FILENO, r.text, r.len) == -1) {
			diag_error_errno("cannot write to stdout");
			rc = 1;
		}
		goto out;
	}
	if (r.n_changed == 0) {
		fprintf(stderr, "mcpmux: %s: no server to %s; file left as it was\n", name,
			a->op == CONFIG_WRAP ? "wrap" : "unwrap");
		goto out;
	}
	/* Write through a symlink to its target, so that the link stays a link. */
	target = realpath(a->file, NULL);
	if (target == NULL) {
		diag_error_errno("%s: cannot resolve its path", name);
		rc = 1;
		goto out;
	}
	/*
	 * The backup goes beside the file itself, through a symlink too: `mv TARGET.bak
	 * TARGET` then restores it and the link stays a link.
	 */
	sbuf_addf(&bak, "%s.bak", target);
	if (bak.failed) {
		rc = diag_error("out of memory") + 2;
		goto out;
	}
	made = write_backup(bak.buf, fd, &st, text, len);
	if (made == -1 || replace_file(a->file, target, fd, &st, text, len, r.text, r.len) == -1) {
		if (made == 1) {
			(void)unlink(bak.buf); /* nothing was written: no backup of it either */
		}
		rc = 1;
		goto out;
	}
	size_t n_updated = 0;

	for (size_t i = 0; i < r.n_entries; i++) {
		n_updated += r.entries[i].verdict == CONFIG_UPDATED;
	}
	if (n_updated == 0) {
		fprintf(stderr, "mcpmux: %s: %s %zu", name,
			a->op == CONFIG_WRAP ? "wrapped" : "unwrapped", r.n_changed);
	} else if (n_updated == r.n_changed) {
		fprintf(stderr, "mcpmux: %s: updated %zu", name, n_updated);
	} else {
		fprintf(stderr, "mcpmux: %s: wrapped %zu and updated %zu", name,
			r.n_changed - n_updated, n_updated);
	}
	fprintf(stderr, " of %zu server%s; backup in %s%s\n", r.n_entries,
		r.n_entries == 1 ? "" : "s", bak.buf, made == 0 ? " (an older one, kept)" : "");
out:
	if (a->in_place) {
		sys_close(&fd);
	}
	sbuf_release(&bak);
	config_result_release(&r);
	free(target);
	free(text);
	return rc;
}

int
cmd_config(int argc, char **argv)
{
	struct config_args a = { 0 };
	struct mcpmux_files files = { 0 };
	char *self = NULL, *command = NULL, *log_dir = NULL;
	int rc = parse_args(&a, argc, argv);

	if (rc != 0) {
		return rc == 1 ? 0 : EXIT_USAGE;
	}
	if (a.o.mcpmux == NULL) {
		self = self_path();
	} else {
		command = absolute_command(a.o.mcpmux, a.op == CONFIG_WRAP);
		/* An entry wrapped with the same relative PATH before is recognised too. */
		a.o.mcpmux_given = a.o.mcpmux;
	}
	if (self == NULL && command == NULL) {
		return 1;
	}
	a.o.mcpmux = self != NULL ? self : command;
	/* (Through the dynamic loader, that is the loader.) */
	if (exe_is_mcpmux()) {
		mcpmux_file_add(&files, "/proc/self/exe");
	}
	if (command != NULL && command[0] == '/') {
		mcpmux_file_add(&files, command);
	}
	a.o.is_mcpmux_file = is_mcpmux_file;
	a.o.ctx = &files;
	/* (Unwrap only compares it with the commands of the entries.) */
	if (a.op == CONFIG_WRAP &&
	    !is_utf8(self != NULL ? "the path of this mcpmux (give one with --mcpmux PATH)"
				  : "--mcpmux PATH",
		     a.o.mcpmux)) {
		rc = self != NULL ? 1 : EXIT_USAGE;
		free(self);
		free(command);
		return rc;
	}
	if (a.log_dir != NULL) {
		log_dir = absolute_dir(a.log_dir);
		rc = log_dir == NULL ? 1 : is_utf8("--log-dir DIR", log_dir) ? 0 : EXIT_USAGE;
		if (rc != 0) {
			free(log_dir);
			free(self);
			free(command);
			return rc;
		}
		a.o.log_dir = log_dir;
	}
	rc = run(&a);
	free(log_dir);
	free(self);
	free(command);
	return rc;
}
