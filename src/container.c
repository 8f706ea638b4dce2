/*
 * container: recognise `docker run` / `podman run` server commands, insert mcpmux's
 * labels and cidfile, build the helper commands of the teardown ladder, and read the
 * engines' listings.  It runs nothing: see container.h for the contract.
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>

#include "mcpmux/container.h"

/* ---- detection ---- */

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

static bool
in_list(const char *word, size_t len, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strlen(list[i]) == len && memcmp(list[i], word, len) == 0) {
			return true;
		}
	}
	return false;
}

/* What an env(1) launcher's words do (env_read()). */
struct env_launch {
	size_t sets; /* words[sets..cmd): its assignments (NAME=VALUE) */
	size_t cmd;  /* the command's index (its end when there is none) */
	bool clears; /* -i, --ignore-environment or - */
	bool unsets; /* a -u of the name asked about */
};

/* A name env(1) can take away: unsetenv() fails on an empty one, or one with '='. */
static bool
env_name_ok(const char *s)
{
	return s[0] != '\0' && strchr(s, '=') == NULL;
}

/*
 * Is w long option opt of env(1), or an abbreviation of it of at least min bytes (as
 * getopt_long takes one that no other of env's options begins with)?  *value: what
 * follows its '=', NULL when none.
 */
static bool
env_long(const char *w, const char *opt, size_t min, const char **value)
{
	const char *eq = strchr(w, '=');
	size_t len = eq != NULL ? (size_t)(eq - w) : strlen(w);

	*value = eq != NULL ? eq + 1 : NULL;
	return len >= min && len <= strlen(opt) && strncmp(w, opt, len) == 0;
}

/*
 * Read the words argv[1..n) of an env(1) launcher (argv[0]; n SIZE_MAX: up to argv's NULL)
 * as GNU env reads them: options up to the first word that is not one ("--" ends them
 * too), a "-" after them (as -i), then assignments (every word with a '='), then the
 * command.  The options read are -i, --ignore-environment, -u NAME, -uNAME, --unset NAME,
 * --unset=NAME (and -i and -u together in one word, and the long ones shortened as far as
 * they are env's alone: --ignore-e, --u); *e says what they do, its unsets for variable
 * name (NULL: none).  false when a word is another option (-C and -S change what the rest
 * means, -0 fails with a command, -v, --ignore shared with --ignore-signal, ...) or a
 * name -u cannot take away (env fails on it, or ignores it after -i): such a launcher is
 * not read.
 */
static bool
env_read(char *const *argv, size_t n, const char *name, struct env_launch *e)
{
	size_t i = 1;

	memset(e, 0, sizeof(*e));
	while (i < n && argv[i] != NULL) {
		const char *w = argv[i], *val = NULL;

		if (strcmp(w, "--") == 0) {
			i++;
			break;
		}
		if (w[0] != '-' || w[1] == '\0') {
			break; /* the first word that is no option ends them */
		}
		if (w[1] == '-') {
			if (env_long(w, "--ignore-environment", strlen("--ignore-e"), &val) &&
			    val == NULL) {
				e->clears = true;
				i++;
				continue;
			}
			if (!env_long(w, "--unset", strlen("--u"), &val)) {
				return false;
			}
		} else {
			/* a cluster of short options: -i, then perhaps -u with its name */
			const char *c = w + 1;

			while (*c == 'i') {
				e->clears = true;
				c++;
			}
			if (*c == '\0') {
				i++;
				continue;
			}
			if (*c != 'u') {
				return false;
			}
			val = c[1] != '\0' ? c + 1 : NULL;
		}
		if (val == NULL) {
			if (i + 1 >= n || argv[i + 1] == NULL) {
				return false;
			}
			val = argv[++i];
		}
		if (!env_name_ok(val)) {
			return false;
		}
		e->unsets = e->unsets || (name != NULL && strcmp(val, name) == 0);
		i++;
	}
	if (i < n && argv[i] != NULL && strcmp(argv[i], "-") == 0) {
		e->clears = true;
		i++;
	}
	e->sets = i;
	while (i < n && argv[i] != NULL && strchr(argv[i], '=') != NULL) {
		i++;
	}
	e->cmd = i;
	return true;
}

/*
 * Skip an env(1) launcher (env_read()).  Returns the index of the command after it, or 0
 * when there is none, or argv[0] is no env we read: such a command is left alone.
 */
static size_t
skip_env(char *const *argv)
{
	struct env_launch e;

	return env_read(argv, SIZE_MAX, NULL, &e) && argv[e.cmd] != NULL ? e.cmd : 0;
}

/* Global options of each engine: those that take a value, and flags. */
static const char *const docker_global_value[] = {
	"--config",    "-c",	      "--context", "-H",       "--host", "-l",
	"--log-level", "--tlscacert", "--tlscert", "--tlskey", NULL,
};
static const char *const docker_global_flag[] = {
	"-D", "--debug", "--tls", "--tlsverify", NULL,
};
static const char *const podman_global_value[] = {
	"--cdi-spec-dir",
	"--cgroup-manager",
	"--config",
	"--conmon",
	"--connection",
	"-c",
	"--db-backend",
	"--events-backend",
	"--hooks-dir",
	"--identity",
	"--imagestore",
	"--log-level",
	"--module",
	"--network-cmd-path",
	"--network-config-dir",
	"--out",
	"--root",
	"--runroot",
	"--runtime",
	"--runtime-flag",
	"--ssh",
	"--storage-driver",
	"--storage-opt",
	"--tmpdir",
	"--url",
	"--volumepath",
	NULL,
};
static const char *const podman_global_flag[] = {
	"--remote", "-r", "--syslog", "--noout", "--transient-store", "--debug", "-D", NULL,
};

/*
 * Run options that take no value (everything else long takes one): docker's and podman's
 * boolean flags, which never take the next word (only --flag=false).  Short options:
 * flags and those with a value; any other letter is not known.
 */
static const char *const run_flags[] = {
	"--detach",
	"--disable-content-trust",
	"--env-host",
	"--help",
	"--http-proxy",
	"--init",
	"--interactive",
	"--no-healthcheck",
	"--no-hostname",
	"--no-hosts",
	"--oom-kill-disable",
	"--passwd",
	"--privileged",
	"--publish-all",
	"--quiet",
	"--read-only",
	"--read-only-tmpfs",
	"--replace",
	"--rm",
	"--rmi",
	"--rootfs",
	"--sig-proxy",
	"--tls-verify",
	"--tty",
	"--unsetenv-all",
	"--use-api-socket",
	NULL,
};
#define RUN_SHORT_FLAGS	 "diPqt"
#define RUN_SHORT_VALUES "acehlmpuvw"

/* Go's strconv.ParseBool, which both engines' flag parsers use: 1, t, true, 0, f, false. */
static int
parse_bool(const char *s)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True", NULL };
	static const char *const no[] = { "0", "f", "F", "false", "FALSE", "False", NULL };

	if (in_list(s, strlen(s), yes)) {
		return 1;
	}
	if (in_list(s, strlen(s), no)) {
		return 0;
	}
	return -1;
}

/* One of the labels mcpmux sets (owner, session, boot, ...): a command may not set them. */
static bool
is_mcpmux_label(const char *kv)
{
	static const char *const ours[] = { CONTAINER_LABEL_OWNER, CONTAINER_LABEL_SESSION,
					    CONTAINER_LABEL_BOOT, CONTAINER_LABEL_PIDNS,
					    CONTAINER_LABEL_RUN };

	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
		size_t n = strlen(ours[i]);

		if (strncmp(kv, ours[i], n) == 0 && (kv[n] == '=' || kv[n] == '\0')) {
			return true;
		}
	}
	return false;
}

/*
 * Read the run options from argv[i], up to the image.  Returns CONTAINER_MANAGED with
 * r->image_at set, or why the run is not managed in r->why.
 */
static enum container_kind
read_run_options(char *const *argv, size_t i, struct container_run *r)
{
	bool detach = false;

	for (; argv[i] != NULL; i++) {
		const char *w = argv[i], *value = NULL;

		if (strcmp(w, "--") == 0) {
			i++;
			break;
		}
		if (w[0] != '-' || w[1] == '\0') {
			break; /* the image */
		}
		if (w[1] == '-') {
			const char *eq = strchr(w, '=');
			size_t nlen = eq != NULL ? (size_t)(eq - w) : strlen(w);
			bool flag = in_list(w, nlen, run_flags);

			if (eq != NULL) {
				value = eq + 1;
			} else if (!flag) {
				value = argv[++i];
				if (value == NULL) {
					r->why = "an option of the run has no value";
					return CONTAINER_UNMANAGED;
				}
			}
			int b = flag ? (value != NULL ? parse_bool(value) : 1) : -1;

			if (flag && b == -1) {
				r->why = "a flag of the run has a value that is not true or false";
				return CONTAINER_UNMANAGED;
			}
			if (nlen == 8 && strncmp(w, "--detach", nlen) == 0) {
				detach = b == 1;
			} else if (nlen == 13 && strncmp(w, "--interactive", nlen) == 0) {
				r->is_interactive = b == 1;
			} else if (nlen == 5 && strncmp(w, "--tty", nlen) == 0) {
				r->has_tty = b == 1;
			} else if (nlen == 4 && strncmp(w, "--rm", nlen) == 0) {
				r->has_rm = b == 1;
			} else if (nlen == 9 && strncmp(w, "--cidfile", nlen) == 0) {
				r->cidfile = value;
			} else if (nlen == 6 && strncmp(w, "--name", nlen) == 0) {
				r->name = value;
			} else if (nlen == 7 && strncmp(w, "--label", nlen) == 0 &&
				   is_mcpmux_label(value)) {
				r->why = "the command sets mcpmux's own labels";
				return CONTAINER_UNMANAGED;
			}
			continue;
		}
		/*
		 * A cluster of short options: flags, then at most one that takes a value.  As
		 * the engines' flag parser reads it, "=" after a letter starts that letter's
		 * value and ends the cluster: -d=false, -it=false, -e=A=1 (the value A=1).
		 */
		for (const char *p = w + 1; *p != '\0'; p++) {
			if (strchr(RUN_SHORT_FLAGS, *p) != NULL) {
				int b = p[1] == '=' ? parse_bool(p + 2) : 1;

				if (b == -1) {
					r->why =
						"a flag of the run has a value that is not true or false";
					return CONTAINER_UNMANAGED;
				}
				if (*p == 'd') {
					detach = b == 1;
				} else if (*p == 'i') {
					r->is_interactive = b == 1;
				} else if (*p == 't') {
					r->has_tty = b == 1;
				}
				if (p[1] == '=') {
					break;
				}
				continue;
			}
			if (strchr(RUN_SHORT_VALUES, *p) == NULL) {
				r->why = "a short option of the run that mcpmux does not know";
				return CONTAINER_UNMANAGED;
			}
			value = p[1] == '=' && p[2] != '\0' ? p + 2
				: p[1] != '\0'		    ? p + 1
							    : argv[++i];
			if (value == NULL) {
				r->why = "an option of the run has no value";
				return CONTAINER_UNMANAGED;
			}
			if (*p == 'l' && is_mcpmux_label(value)) {
				r->why = "the command sets mcpmux's own labels";
				return CONTAINER_UNMANAGED;
			}
			break;
		}
	}
	if (detach) {
		r->why = "a detached run (-d) is not a stdio server";
		return CONTAINER_UNMANAGED;
	}
	if (argv[i] == NULL) {
		r->why = "the run names no image";
		return CONTAINER_UNMANAGED;
	}
	r->image_at = i;
	return CONTAINER_MANAGED;
}

/* Options of `docker compose` and `podman-compose` before their subcommand. */
static const char *const compose_value[] = {
	"-f",
	"--file",
	"-p",
	"--project-name",
	"--profile",
	"--env-file",
	"--project-directory",
	"--ansi",
	"--progress",
	"--parallel",
	"--podman-path",
	NULL,
};
static const char *const compose_flag[] = {
	"--compatibility", "--dry-run", "--all-resources", "--verbose", "--no-ansi", NULL,
};
static const char *const no_options[] = { NULL };

/*
 * Do argv[i...], an engine's options then its subcommand, run a container: is the
 * subcommand `run` (or `container run`)?  Options in value_opts take the next word.  After
 * an option in neither list, which may take the next word as its value, any later `run`
 * word counts: the answer only decides a warning, which is better said once too often.
 */
static bool
sub_is_run(char *const *argv, size_t i, const char *const *value_opts, const char *const *flags)
{
	for (; argv[i] != NULL && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *w = argv[i], *eq = strchr(w, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - w) : strlen(w);

		if (strcmp(w, "--") == 0) {
			i++;
			break;
		}
		if (in_list(w, nlen, flags)) {
			continue;
		}
		if (!in_list(w, nlen, value_opts)) {
			for (; argv[i] != NULL; i++) {
				if (strcmp(argv[i], "run") == 0) {
					return true;
				}
			}
			return false;
		}
		if (eq == NULL && argv[++i] == NULL) {
			return false;
		}
	}
	if (argv[i] != NULL && strcmp(argv[i], "container") == 0) {
		i++;
	}
	return argv[i] != NULL && strcmp(argv[i], "run") == 0;
}

/* `compose run`: a project's service, started through the engine's daemon: said, not run. */
static enum container_kind
compose_run(char *const *argv, size_t i, struct container_run *r)
{
	if (!sub_is_run(argv, i, compose_value, compose_flag)) {
		return CONTAINER_PLAIN;
	}
	r->why = "compose run: its container is the project's, and may outlive the command";
	return CONTAINER_UNMANAGED;
}

enum container_kind
container_detect(char *const *argv, struct container_run *r)
{
	const char *const *gvalue, *const *gflag;
	size_t i = 0;

	memset(r, 0, sizeof(*r));
	if (argv == NULL || argv[0] == NULL) {
		return CONTAINER_PLAIN;
	}
	if (strcmp(base_name(argv[0]), "env") == 0) {
		i = skip_env(argv);
		if (i == 0) {
			return CONTAINER_PLAIN;
		}
	}
	const char *engine = base_name(argv[i]);

	if (strcmp(engine, "docker") == 0) {
		r->engine = CONTAINER_DOCKER;
		gvalue = docker_global_value;
		gflag = docker_global_flag;
	} else if (strcmp(engine, "podman") == 0) {
		r->engine = CONTAINER_PODMAN;
		gvalue = podman_global_value;
		gflag = podman_global_flag;
	} else if (strcmp(engine, "nerdctl") == 0 || strcmp(engine, "podman-remote") == 0) {
		/* Engines of the same kind whose helpers mcpmux does not drive: said, not run. */
		r->engine = engine[0] == 'p' ? CONTAINER_PODMAN : CONTAINER_DOCKER;
		if (argv[i + 1] != NULL && strcmp(argv[i + 1], "compose") == 0) {
			return compose_run(argv, i + 2, r);
		}
		if (!sub_is_run(argv, i + 1, no_options, no_options)) {
			return CONTAINER_PLAIN;
		}
		r->why = "an engine mcpmux does not drive: its container may outlive the command";
		return CONTAINER_UNMANAGED;
	} else if (strcmp(engine, "docker-compose") == 0 || strcmp(engine, "podman-compose") == 0) {
		r->engine = engine[0] == 'p' ? CONTAINER_PODMAN : CONTAINER_DOCKER;
		return compose_run(argv, i + 1, r);
	} else {
		return CONTAINER_PLAIN;
	}
	r->engine_at = i++;
	/* Global options up to the subcommand. */
	for (; argv[i] != NULL && argv[i][0] == '-'; i++) {
		const char *w = argv[i], *eq = strchr(w, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - w) : strlen(w);

		if (in_list(w, nlen, gflag)) {
			if (eq != NULL && parse_bool(eq + 1) == -1) {
				r->why = "a global flag has a value that is not true or false";
				return CONTAINER_UNMANAGED;
			}
			continue;
		}
		if (in_list(w, nlen, gvalue)) {
			if (eq == NULL && argv[++i] == NULL) {
				return CONTAINER_PLAIN;
			}
			continue;
		}
		/* -Hhost, -ccontext: a short value option with its value attached. */
		char shortopt[3] = { w[0], w[1], '\0' };

		if (w[1] != '-' && w[1] != '\0' && w[2] != '\0' && in_list(shortopt, 2, gvalue)) {
			continue;
		}
		r->why = "an option before 'run' that mcpmux does not know";
		return CONTAINER_UNMANAGED;
	}
	if (argv[i] == NULL) {
		return CONTAINER_PLAIN;
	}
	r->prefix_len = i;
	if (strcmp(argv[i], "compose") == 0) {
		return compose_run(argv, i + 1, r);
	}
	if (strcmp(argv[i], "container") == 0) {
		i++;
	}
	if (argv[i] == NULL || strcmp(argv[i], "run") != 0) {
		return CONTAINER_PLAIN; /* exec, start, compose, ...: not a run */
	}
	r->run_at = i;
	return read_run_options(argv, i + 1, r);
}

/* ---- building command lines ---- */

/*
 * One block: n_words + 1 pointers, then the bytes of `extra` added words.  The caller
 * fills the pointers; add_word() copies a string into the tail.
 */
struct argv_block {
	char **v;
	size_t n;    /* words set */
	char *tail;  /* next free byte for copied words */
	char *limit; /* end of the block */
};

static int
block_init(struct argv_block *b, size_t n_words, size_t extra_bytes)
{
	size_t head = (n_words + 1) * sizeof(char *);

	b->v = malloc(head + extra_bytes);
	if (b->v == NULL) {
		errno = ENOMEM;
		return -1;
	}
	b->n = 0;
	b->tail = (char *)b->v + head;
	b->limit = b->tail + extra_bytes;
	return 0;
}

static void
block_borrow(struct argv_block *b, const char *w)
{
	b->v[b->n++] = (char *)(uintptr_t)w;
}

/* Copy the concatenation of a and b (b may be NULL) into the block as one word. */
static void
block_copy(struct argv_block *blk, const char *a, const char *b)
{
	size_t la = strlen(a), lb = b != NULL ? strlen(b) : 0;
	char *w = blk->tail;

	memcpy(w, a, la);
	if (lb > 0) {
		memcpy(w + la, b, lb);
	}
	w[la + lb] = '\0';
	blk->tail += la + lb + 1;
	blk->v[blk->n++] = w;
}

static char **
block_done(struct argv_block *b)
{
	b->v[b->n] = NULL;
	return b->v;
}

static size_t
label_bytes(const char *key, const char *value)
{
	return value != NULL ? strlen(key) + 1 + strlen(value) + 1 : 0;
}

char **
container_run_argv(char *const *argv, const struct container_run *r,
		   const struct container_labels *labels, const char *cidfile)
{
	static const char k_owner[] = CONTAINER_LABEL_OWNER "=",
			  k_session[] = CONTAINER_LABEL_SESSION "=",
			  k_boot[] = CONTAINER_LABEL_BOOT "=",
			  k_pidns[] = CONTAINER_LABEL_PIDNS "=", k_run[] = CONTAINER_LABEL_RUN "=";
	bool add_cidfile = r->cidfile == NULL && cidfile != NULL;
	size_t n = 0, extra;
	struct argv_block b;

	while (argv[n] != NULL) {
		n++;
	}
	extra = label_bytes(CONTAINER_LABEL_OWNER, labels->owner) +
		label_bytes(CONTAINER_LABEL_SESSION, labels->session) +
		label_bytes(CONTAINER_LABEL_BOOT, labels->boot) +
		label_bytes(CONTAINER_LABEL_PIDNS, labels->pidns) +
		label_bytes(CONTAINER_LABEL_RUN, labels->run);
	if (block_init(&b, n + 12, extra) == -1) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		block_borrow(&b, argv[i]);
		if (i != r->run_at) {
			continue;
		}
		if (labels->owner != NULL) {
			block_borrow(&b, "--label");
			block_copy(&b, k_owner, labels->owner);
		}
		if (labels->session != NULL) {
			block_borrow(&b, "--label");
			block_copy(&b, k_session, labels->session);
		}
		if (labels->boot != NULL) {
			block_borrow(&b, "--label");
			block_copy(&b, k_boot, labels->boot);
		}
		if (labels->pidns != NULL) {
			block_borrow(&b, "--label");
			block_copy(&b, k_pidns, labels->pidns);
		}
		if (labels->run != NULL) {
			block_borrow(&b, "--label");
			block_copy(&b, k_run, labels->run);
		}
		if (add_cidfile) {
			block_borrow(&b, "--cidfile");
			block_borrow(&b, cidfile);
		}
	}
	return block_done(&b);
}

/*
 * Start b with PREFIX container WORDS... (borrowed), with room for more more words and
 * bytes bytes to copy after them.  0, or -1 when out of memory.
 */
static int
helper_begin(struct argv_block *b, char *const *prefix, size_t n, const char *const *words,
	     size_t more, size_t bytes)
{
	size_t nw = 0;

	while (words[nw] != NULL) {
		nw++;
	}
	if (block_init(b, n + 1 + nw + more, bytes) == -1) {
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		block_borrow(b, prefix[i]);
	}
	block_borrow(b, "container");
	for (size_t i = 0; i < nw; i++) {
		block_borrow(b, words[i]);
	}
	return 0;
}

/* PREFIX container WORDS... (borrowed), then copied (copied may be NULL). */
static char **
helper_argv(char *const *prefix, size_t n, const char *const *words, const char *copied_a,
	    const char *copied_b)
{
	struct argv_block b;
	size_t extra =
		copied_a != NULL ? strlen(copied_a) + (copied_b ? strlen(copied_b) : 0) + 1 : 0;

	if (helper_begin(&b, prefix, n, words, 1, extra) == -1) {
		return NULL;
	}
	if (copied_a != NULL) {
		block_copy(&b, copied_a, copied_b);
	}
	return block_done(&b);
}

char **
container_kill_argv(char *const *prefix, size_t n, const char *sig, const char *id)
{
	const char *words[] = { "kill", "--signal", sig, NULL };

	return helper_argv(prefix, n, words, id, NULL);
}

char **
container_rm_argv(char *const *prefix, size_t n, const char *id)
{
	const char *words[] = { "rm", "-f", NULL };

	return helper_argv(prefix, n, words, id, NULL);
}

char **
container_inspect_argv(char *const *prefix, size_t n, const char *id)
{
	const char *words[] = { "inspect", "--format", "{{.State.Status}}", NULL };

	return helper_argv(prefix, n, words, id, NULL);
}

char **
container_whose_argv(char *const *prefix, size_t n, const char *id)
{
	const char *words[] = { "inspect", "--format",
				CONTAINER_WHOSE
				"|{{index .Config.Labels \"" CONTAINER_LABEL_OWNER
				"\"}}|{{index .Config.Labels \"" CONTAINER_LABEL_SESSION
				"\"}}|{{.Id}}",
				NULL };

	return helper_argv(prefix, n, words, id, NULL);
}

/* Copy the field p[0..len) into out (cap bytes): false when it does not fit. */
static bool
whose_field(const char *p, size_t len, char *out, size_t cap)
{
	if (len >= cap) {
		return false;
	}
	memcpy(out, p, len);
	out[len] = '\0';
	return true;
}

/* Room in buf[0..n) for reading on: from the first line marked tag (of tag_len bytes). */
static size_t
marked_keep(char *buf, size_t n, const char *tag, size_t tag_len)
{
	const char *m = memmem(buf, n, tag, tag_len);
	size_t from = m != NULL ? (size_t)(m - buf) : n >= tag_len ? n - (tag_len - 1) : 0;

	memmove(buf, buf + from, n - from);
	return n - from;
}

size_t
container_whose_keep(char *buf, size_t n)
{
	static const char tag[] = CONTAINER_WHOSE "|";

	return marked_keep(buf, n, tag, sizeof(tag) - 1);
}

size_t
container_listed_keep(char *buf, size_t n)
{
	static const char tag[] = CONTAINER_LISTED "|";

	return marked_keep(buf, n, tag, sizeof(tag) - 1);
}

bool
container_whose_parse(const char *out, size_t len, struct container_whose *w)
{
	static const char tag[] = CONTAINER_WHOSE "|";
	const char *end = out + len;

	for (const char *line = out; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *stop = nl != NULL ? nl : end;

		if ((size_t)(stop - line) > sizeof(tag) - 1 &&
		    memcmp(line, tag, sizeof(tag) - 1) == 0) {
			const char *f = line + sizeof(tag) - 1;
			const char *b1 = memchr(f, '|', (size_t)(stop - f));
			const char *b2 =
				b1 != NULL ? memchr(b1 + 1, '|', (size_t)(stop - b1 - 1)) : NULL;
			size_t id_len = b2 != NULL ? (size_t)(stop - b2 - 1) : 0;

			while (id_len > 0 && (b2[id_len] == '\r' || b2[id_len] == ' ')) {
				id_len--;
			}
			return b2 != NULL && id_len > 0 &&
			       whose_field(f, (size_t)(b1 - f), w->owner, sizeof(w->owner)) &&
			       whose_field(b1 + 1, (size_t)(b2 - b1 - 1), w->session,
					   sizeof(w->session)) &&
			       whose_field(b2 + 1, id_len, w->id, sizeof(w->id));
		}
		line = stop + 1;
	}
	return false;
}

char **
container_list_argv(char *const *prefix, size_t n, enum container_engine engine)
{
	const char *words[] = { "ls",
				"-a",
				"--no-trunc",
				"--filter",
				"label=" CONTAINER_LABEL_OWNER,
				"--format",
				engine == CONTAINER_PODMAN ? "json" : "{{json .}}",
				NULL };

	return helper_argv(prefix, n, words, NULL, NULL);
}

char **
container_list_one_argv(char *const *prefix, size_t n, enum container_engine engine,
			const char *run, const char *id)
{
	static const char k_run[] = "label=" CONTAINER_LABEL_RUN "=", k_id[] = "id=";
	const char *words[] = { "ls", "-a", "--no-trunc", NULL };
	struct argv_block b;

	if (helper_begin(&b, prefix, n, words, 6,
			 strlen(k_run) + strlen(run) + strlen(k_id) + strlen(id) + 2) == -1) {
		return NULL;
	}
	block_borrow(&b, "--filter");
	block_copy(&b, k_run, run);
	block_borrow(&b, "--filter");
	block_copy(&b, k_id, id);
	block_borrow(&b, "--format");
	block_borrow(&b, engine == CONTAINER_PODMAN ? "json" : "{{json .}}");
	return block_done(&b);
}

/* The listing of owner's containers, with one more filter KEY VALUE when value is not NULL. */
static char **
list_owned_argv(char *const *prefix, size_t n, const char *owner, const char *key,
		const char *value)
{
	static const char k_owner[] = "label=" CONTAINER_LABEL_OWNER "=";
	const char *words[] = { "ls", "-a", "--no-trunc", NULL };
	struct argv_block b;

	if (helper_begin(&b, prefix, n, words, 6,
			 strlen(k_owner) + strlen(owner) +
				 (value != NULL ? strlen(key) + strlen(value) : 0) + 2) == -1) {
		return NULL;
	}
	block_borrow(&b, "--filter");
	block_copy(&b, k_owner, owner);
	if (value != NULL) {
		block_borrow(&b, "--filter");
		block_copy(&b, key, value);
	}
	block_borrow(&b, "--format");
	block_borrow(&b, CONTAINER_LISTED "|{{.ID}}");
	return block_done(&b);
}

char **
container_list_run_argv(char *const *prefix, size_t n, const char *owner, const char *run)
{
	return list_owned_argv(prefix, n, owner, "label=" CONTAINER_LABEL_RUN "=", run);
}

char **
container_list_id_argv(char *const *prefix, size_t n, const char *owner, const char *id)
{
	return list_owned_argv(prefix, n, owner, "id=", id);
}

const char *
container_listed_next(const char **pos, const char *end, size_t *len)
{
	static const char tag[] = CONTAINER_LISTED "|";

	while (*pos < end) {
		const char *line = *pos, *nl = memchr(line, '\n', (size_t)(end - line));

		/* A line without its end may be cut (a buffer's end): its id a prefix, which
		 * the engine would take for another container's. */
		*pos = nl != NULL ? nl + 1 : end;
		if (nl == NULL || (size_t)(nl - line) <= sizeof(tag) - 1 ||
		    memcmp(line, tag, sizeof(tag) - 1) != 0) {
			continue;
		}
		const char *id = line + sizeof(tag) - 1;
		size_t n = (size_t)(nl - id);

		while (n > 0 && (id[n - 1] == '\r' || id[n - 1] == ' ')) {
			n--;
		}
		size_t ok = 0;

		while (ok < n &&
		       ((id[ok] >= '0' && id[ok] <= '9') || (id[ok] >= 'a' && id[ok] <= 'z') ||
			(id[ok] >= 'A' && id[ok] <= 'Z'))) {
			ok++;
		}
		if (n > 0 && ok == n && n <= CONTAINER_ID_MAX) {
			*len = n;
			return id;
		}
	}
	return NULL;
}

size_t
container_listed_ids(const char *out, size_t n, char *dst, size_t cap, size_t *count)
{
	const char *pos = out, *id;
	size_t at = 0, len;

	*count = 0;
	while ((id = container_listed_next(&pos, out + n, &len)) != NULL && at + len + 1 <= cap) {
		memcpy(dst + at, id, len);
		dst[at + len] = '\0';
		at += len + 1;
		(*count)++;
	}
	return at;
}

const char *
container_engine_name(enum container_engine engine)
{
	return engine == CONTAINER_PODMAN ? "podman" : "docker";
}

/* ---- reading listings ---- */

static yajl_val
member(yajl_val obj, const char *key)
{
	const char *path[] = { key, NULL };

	return yajl_tree_get(obj, path, yajl_t_any);
}

static void
copy_str(char *out, size_t cap, const char *s, size_t len)
{
	len = len < cap - 1 ? len : cap - 1;
	memcpy(out, s, len);
	out[len] = '\0';
}

static void
copy_member(char *out, size_t cap, yajl_val obj, const char *key)
{
	const char *str = YAJL_GET_STRING(member(obj, key));

	if (str != NULL) {
		copy_str(out, cap, str, strlen(str));
	} else {
		out[0] = '\0';
	}
}

/* docker's Labels: "k=v,k=v" (values with commas cannot be told apart; ours have none). */
static void
docker_label(const char *labels, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);

	out[0] = '\0';
	for (const char *p = labels; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

		if (len > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
			copy_str(out, cap, p + klen + 1, len - klen - 1);
			return;
		}
		p = comma != NULL ? comma + 1 : NULL;
	}
}

/* docker's CreatedAt: "2024-05-01 12:34:56 +0000 UTC" (Go's time.Time.String()). */
static long long
docker_time(const char *s)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, off, n = 0;
	char sign;

	if (sscanf(s, "%d-%d-%d %d:%d:%d %c%4d%n", &y, &mo, &d, &h, &mi, &sec, &sign, &off, &n) !=
		    8 ||
	    (sign != '+' && sign != '-')) {
		return -1;
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);

	if (t == (time_t)-1) {
		return -1;
	}
	long long offset = (off / 100) * 3600LL + (off % 100) * 60LL;

	return (long long)t - (sign == '+' ? offset : -offset);
}

static void
fill_podman(struct container_info *c, yajl_val o)
{
	yajl_val names = member(o, "Names"), labels = member(o, "Labels"),
		 created = member(o, "Created");

	copy_member(c->id, sizeof(c->id), o, "Id");
	const char *first = YAJL_IS_ARRAY(names) && names->u.array.len > 0
				    ? YAJL_GET_STRING(names->u.array.values[0])
				    : NULL;

	if (first != NULL) {
		copy_str(c->name, sizeof(c->name), first, strlen(first));
	}
	copy_member(c->image, sizeof(c->image), o, "Image");
	copy_member(c->state, sizeof(c->state), o, "State");
	if (YAJL_IS_OBJECT(labels)) {
		copy_member(c->owner, sizeof(c->owner), labels, CONTAINER_LABEL_OWNER);
		copy_member(c->session, sizeof(c->session), labels, CONTAINER_LABEL_SESSION);
		copy_member(c->boot, sizeof(c->boot), labels, CONTAINER_LABEL_BOOT);
		copy_member(c->pidns, sizeof(c->pidns), labels, CONTAINER_LABEL_PIDNS);
		copy_member(c->run, sizeof(c->run), labels, CONTAINER_LABEL_RUN);
	}
	c->created = YAJL_IS_INTEGER(created) ? YAJL_GET_INTEGER(created) : -1;
}

static void
fill_docker(struct container_info *c, yajl_val o)
{
	yajl_val labels = member(o, "Labels"), created = member(o, "CreatedAt");

	copy_member(c->id, sizeof(c->id), o, "ID");
	copy_member(c->name, sizeof(c->name), o, "Names");
	/* "a,b" when a container has several names: the first. */
	char *comma = strchr(c->name, ',');

	if (comma != NULL) {
		*comma = '\0';
	}
	copy_member(c->image, sizeof(c->image), o, "Image");
	copy_member(c->state, sizeof(c->state), o, "State");
	const char *ltext = YAJL_GET_STRING(labels), *ctext = YAJL_GET_STRING(created);

	if (ltext != NULL) {
		docker_label(ltext, CONTAINER_LABEL_OWNER, c->owner, sizeof(c->owner));
		docker_label(ltext, CONTAINER_LABEL_SESSION, c->session, sizeof(c->session));
		docker_label(ltext, CONTAINER_LABEL_BOOT, c->boot, sizeof(c->boot));
		docker_label(ltext, CONTAINER_LABEL_PIDNS, c->pidns, sizeof(c->pidns));
		docker_label(ltext, CONTAINER_LABEL_RUN, c->run, sizeof(c->run));
	}
	c->created = ctext != NULL ? docker_time(ctext) : -1;
}

struct list_out {
	struct container_info *v;
	size_t n, cap;
};

/* Add one object of a listing; 0, or -1 (ENOMEM, EINVAL). */
static int
add_entry(struct list_out *l, enum container_engine engine, yajl_val o)
{
	if (!YAJL_IS_OBJECT(o)) {
		errno = EINVAL;
		return -1;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap != 0 ? l->cap * 2 : 8;
		struct container_info *nv = realloc(l->v, cap * sizeof(*nv));

		if (nv == NULL) {
			errno = ENOMEM;
			return -1;
		}
		l->v = nv;
		l->cap = cap;
	}
	struct container_info *c = &l->v[l->n];

	memset(c, 0, sizeof(*c));
	c->engine = engine;
	if (engine == CONTAINER_PODMAN) {
		fill_podman(c, o);
	} else {
		fill_docker(c, o);
	}
	if (c->owner[0] != '\0' && c->id[0] != '\0') {
		l->n++;
	}
	return 0;
}

/* Parse one JSON text (NUL-terminated) into v; NULL with errno EINVAL or ENOMEM. */
static yajl_val
parse_json(const char *text)
{
	char err[128];
	yajl_val v = yajl_tree_parse(text, err, sizeof(err));

	if (v == NULL) {
		errno = strstr(err, "memory") != NULL ? ENOMEM : EINVAL;
	}
	return v;
}

int
container_parse_list(enum container_engine engine, const char *text, size_t len,
		     struct container_info **out, size_t *n)
{
	struct list_out l = { NULL, 0, 0 };
	char *copy = malloc(len + 1);
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (copy == NULL) {
		errno = ENOMEM;
		return -1;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (memchr(copy, '\0', len) != NULL) {
		free(copy);
		errno = EINVAL;
		return -1;
	}
	/* podman: one array (or nothing at all); docker: one object a line. */
	char *p = copy + strspn(copy, " \t\r\n");

	if (*p == '[' || engine == CONTAINER_PODMAN) {
		yajl_val arr = *p != '\0' ? parse_json(p) : NULL;

		if (*p != '\0' && !YAJL_IS_ARRAY(arr)) {
			errno = arr == NULL ? errno : EINVAL;
			rc = -1;
		}
		for (size_t i = 0; rc == 0 && arr != NULL && i < arr->u.array.len; i++) {
			rc = add_entry(&l, engine, arr->u.array.values[i]);
		}
		yajl_tree_free(arr);
	} else {
		for (char *line = p; rc == 0 && line != NULL && *line != '\0';) {
			char *nl = strchr(line, '\n');

			if (nl != NULL) {
				*nl = '\0';
			}
			if (line[strspn(line, " \t\r")] != '\0') {
				yajl_val o = parse_json(line);

				rc = o != NULL ? add_entry(&l, engine, o) : -1;
				yajl_tree_free(o);
			}
			line = nl != NULL ? nl + 1 : NULL;
		}
	}
	free(copy);
	if (rc == -1) {
		int err = errno;

		free(l.v);
		errno = err;
		return -1;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

bool
container_gone_message(const char *text, size_t len)
{
	static const char needle[] = CONTAINER_GONE_WORDS;
	size_t nl = sizeof(needle) - 1;

	for (size_t i = 0; i + nl <= len; i++) {
		if (strncasecmp(text + i, needle, nl) == 0) {
			return true;
		}
	}
	return false;
}

const char *
container_why(const char *text, size_t len, size_t *n)
{
	size_t end = len, from;

	while (end > 0 &&
	       (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ')) {
		end--;
	}
	for (from = end; from > 0 && text[from - 1] != '\n';) {
		from--;
	}
	*n = end - from;
	return text + from;
}

void
container_tail_reset(struct container_tail *t)
{
	*t = (struct container_tail){ .n = 0 };
}

/*
 * The gone verdict, line by line (see struct container_tail): seg[0..n) is more of the
 * line being read, none of it a newline.
 */
static void
tail_line_add(struct container_tail *t, const char *seg, size_t n)
{
	/* How an engine's error line begins (docker's failures that do not say "Error") */
	static const char *const heads[] = {
		"Error",
		"Cannot connect to the Docker daemon",
		"permission denied while trying to connect",
		"error during connect",
	};
	enum { N_HEADS = sizeof(heads) / sizeof(heads[0]), ALL_OUT = (1u << N_HEADS) - 1 };
	const size_t span = sizeof(t->seam);
	size_t k = 0;

	_Static_assert(N_HEADS <= 8, "container_tail.out has a bit for each head");
	while (t->kind == 0 && k < n) {
		for (size_t i = 0; i < N_HEADS; i++) {
			if ((t->out & (1u << i)) == 0 && heads[i][t->head] != seg[k]) {
				t->out |= (unsigned char)(1u << i);
			}
		}
		t->head++;
		k++;
		if (t->out == ALL_OUT) {
			t->kind = -1;
			break;
		}
		for (size_t i = 0; i < N_HEADS; i++) {
			if ((t->out & (1u << i)) == 0 && heads[i][t->head] == '\0') {
				t->kind = 1; /* an error line: the last one so far */
				t->gone = false;
			}
		}
	}
	if (t->kind != 1 || t->has || n == 0) {
		return;
	}
	/* the words within seg, or begun in what came before of the line and ended in seg */
	char both[2 * sizeof(t->seam)];
	size_t after = n < span ? n : span;

	memcpy(both, t->seam, t->seam_n);
	memcpy(both + t->seam_n, seg, after);
	if (container_gone_message(both, t->seam_n + after) || container_gone_message(seg, n)) {
		t->has = true;
		t->gone = true;
		return;
	}
	if (n >= span) {
		memcpy(t->seam, seg + n - span, span);
		t->seam_n = (unsigned char)span;
	} else {
		size_t keep = span - n < t->seam_n ? span - n : t->seam_n;

		memmove(t->seam, t->seam + t->seam_n - keep, keep);
		memcpy(t->seam + keep, seg, n);
		t->seam_n = (unsigned char)(keep + n);
	}
}

void
container_tail_add(struct container_tail *t, const char *p, size_t n)
{
	const size_t cap = sizeof(t->buf);
	size_t keep;

	for (const char *at = p, *end = p + n; at < end;) {
		const char *nl = memchr(at, '\n', (size_t)(end - at));

		tail_line_add(t, at, (size_t)((nl != NULL ? nl : end) - at));
		if (nl == NULL) {
			break;
		}
		t->head = 0; /* a new line */
		t->out = 0;
		t->kind = 0;
		t->has = false;
		t->seam_n = 0;
		at = nl + 1;
	}
	if (n > cap) {
		p += n - cap;
		n = cap;
	}
	keep = cap - n < t->n ? cap - n : t->n;
	memmove(t->buf, t->buf + t->n - keep, keep);
	memcpy(t->buf + keep, p, n);
	t->n = keep + n;
}

bool
container_gone_output(const struct container_tail *t)
{
	return t->gone;
}

/* ---- the record of a run's engine ---- */

#define RECORD_MAGIC "mcpmux-engine 3"

const char *const container_record_vars[] = {
	"DOCKER_HOST",
	"DOCKER_CONTEXT",
	"DOCKER_CONFIG",
	"DOCKER_TLS_VERIFY",
	"DOCKER_CERT_PATH",
	"CONTAINER_HOST",
	"CONTAINER_CONNECTION",
	"CONTAINER_SSHKEY",
	"CONTAINERS_CONF",
	"CONTAINERS_STORAGE_CONF",
	"HOME",
	"XDG_CONFIG_HOME",
	"XDG_DATA_HOME",
	"XDG_RUNTIME_DIR",
	"PODMAN_CONNECTIONS_CONF",
	"CONTAINERS_CONF_OVERRIDE",
	NULL,
};

int
container_record_path(const char *cidfile, char *out, size_t cap)
{
	size_t len = strlen(cidfile);

	if (len < 5 || strcmp(cidfile + len - 4, ".cid") != 0 || len >= cap) {
		return -1;
	}
	memcpy(out, cidfile, len - 4);
	memcpy(out + len - 4, ".ctx", 5);
	return 0;
}

/* ---- the engine a record names, and its context ---- */

/*
 * The absolute path that execvp() runs for word: as it is when it is one, made absolute
 * against the working directory cwd when it has a '/', else the first regular executable
 * file of that name in path's directories (NULL: execvp()'s default; an empty entry, or
 * a relative one, against cwd).  0, or -1 when there is none (or it does not fit).
 */
static int
resolve_word(const char *word, const char *path, const char *cwd, char *out, size_t cap)
{
	if (word[0] == '/') {
		return (size_t)snprintf(out, cap, "%s", word) < cap ? 0 : -1;
	}
	if (strchr(word, '/') != NULL) {
		return cwd != NULL && (size_t)snprintf(out, cap, "%s/%s", cwd, word) < cap ? 0 : -1;
	}
	if (word[0] == '\0') {
		return -1;
	}
	if (path == NULL) {
		path = "/bin:/usr/bin";
	}
	for (const char *d = path;;) {
		const char *colon = strchr(d, ':');
		size_t dlen = colon != NULL ? (size_t)(colon - d) : strlen(d);
		struct stat st;
		int n;

		if (dlen == 0 || d[0] != '/') {
			n = cwd == NULL ? -1
					: snprintf(out, cap, "%s/%.*s%s%s", cwd, (int)dlen, d,
						   dlen > 0 ? "/" : "", word);
		} else {
			n = snprintf(out, cap, "%.*s/%s", (int)dlen, d, word);
		}
		if (n >= 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(out, X_OK) == 0) {
			return 0;
		}
		if (colon == NULL) {
			return -1;
		}
		d = colon + 1;
	}
}

/*
 * The value of variable name for the engine, as launcher words[1..at) leave it: NULL when
 * they do not set it; *cleared when they take it away (-i, -u name; and words that are not
 * read, which are not those of a launcher detection takes).
 */
static const char *
launched_var(char *const *words, size_t at, const char *name, bool *cleared)
{
	struct env_launch e;
	const char *v = NULL;
	size_t len = strlen(name);

	if (at == 0) {
		*cleared = false; /* no launcher */
		return NULL;
	}
	if (!env_read(words, at, name, &e) || e.cmd != at) {
		*cleared = true;
		return NULL;
	}
	*cleared = e.clears || e.unsets;
	for (size_t i = e.sets; i < at; i++) {
		if (strncmp(words[i], name, len) == 0 && words[i][len] == '=') {
			v = words[i] + len + 1;
		}
	}
	return v;
}

/*
 * Is one of words[from..to) global option names (a long one or -X)?  As its last one says
 * (the engine's flag parser keeps the last): 1 with a value that is not empty
 * (--context=X, --context X, -cX, -c X), 0 with an empty one, -1 none.
 */
static int
has_option(char *const *words, size_t from, size_t to, const char *const *names)
{
	int found = -1;

	for (size_t i = from; i < to; i++) {
		const char *w = words[i], *eq = strchr(w, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - w) : strlen(w);
		char shortopt[3] = { w[0], w[0] != '\0' ? w[1] : '\0', '\0' };
		const char *value = "";

		if (in_list(w, nlen, names)) {
			if (eq != NULL) {
				value = eq + 1;
			} else if (i + 1 < to) {
				value = words[++i];
			}
		} else if (w[0] == '-' && w[1] != '-' && w[1] != '\0' &&
			   in_list(shortopt, 2, names)) {
			if (w[2] == '=') {
				value = w + 3;
			} else if (w[2] != '\0') {
				value = w + 2;
			} else if (i + 1 < to) {
				value = words[++i];
			}
		} else {
			continue;
		}
		found = *value != '\0';
	}
	return found;
}

/*
 * Variable name for the engine of a record (vars; words[0..engine_at): launcher): 1 set to
 * a value, 0 set but empty, -1 not set.
 */
static int
record_var_is(char *const *vars, size_t n_vars, char *const *words, size_t engine_at,
	      const char *name)
{
	bool cleared;
	size_t len = strlen(name);
	const char *v = launched_var(words, engine_at, name, &cleared);

	for (size_t i = 0; v == NULL && !cleared && i < n_vars; i++) {
		if (strncmp(vars[i], name, len) == 0 && vars[i][len] == '=') {
			v = vars[i] + len + 1;
		}
	}
	return v == NULL ? -1 : v[0] != '\0';
}

/* -H "" is the default daemon's socket (a host, so no context); --context "" is none */
static const char *const docker_host_words[] = { "-H", "--host", NULL };
static const char *const docker_context_words[] = { "-c", "--context", NULL };
static const char *const podman_pin_words[] = { "--url", "--connection", "-c", NULL };
static const char *const podman_remote_words[] = { "--remote", "-r", NULL };

const char *
container_record_unpinned(char *const *vars, size_t n_vars, char *const *words,
			  const struct container_run *cr)
{
	size_t from = cr->engine_at + 1, to = cr->prefix_len;

	if (cr->engine == CONTAINER_DOCKER) {
		if (has_option(words, from, to, docker_host_words) != -1 ||
		    has_option(words, from, to, docker_context_words) == 1 ||
		    record_var_is(vars, n_vars, words, cr->engine_at, "DOCKER_HOST") == 1 ||
		    record_var_is(vars, n_vars, words, cr->engine_at, "DOCKER_CONTEXT") == 1) {
			/* docker takes an empty DOCKER_HOST or DOCKER_CONTEXT for none */
			return NULL;
		}
		return "its context was docker's current one, which the record does not name";
	}
	int host = record_var_is(vars, n_vars, words, cr->engine_at, "CONTAINER_HOST"),
	    conn = record_var_is(vars, n_vars, words, cr->engine_at, "CONTAINER_CONNECTION");

	int opt = has_option(words, from, to, podman_pin_words);

	if (opt == 1 || host == 1 || conn == 1) {
		return NULL;
	}
	if (opt == 0 || host == 0 || conn == 0) {
		/* set but empty: podman may go remote, to no connection the record names */
		return "its context was podman's default connection, which the record does not "
		       "name";
	}
	for (size_t i = from; i < to; i++) {
		const char *w = words[i], *eq = strchr(w, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - w) : strlen(w);

		if (in_list(w, nlen, podman_remote_words) &&
		    (eq == NULL || parse_bool(eq + 1) == 1)) {
			return "its context was podman's default connection, which the record does "
			       "not name";
		}
	}
	return NULL; /* local podman */
}

const char *
container_record_engine(char *const *words, size_t n_words, struct container_run *cr)
{
	char **probe = calloc(n_words + 3, sizeof(*probe));
	enum container_kind k;
	struct stat st;

	if (probe == NULL) {
		return "out of memory";
	}
	memcpy(probe, words, n_words * sizeof(*probe));
	probe[n_words] = (char *)(uintptr_t) "run";
	probe[n_words + 1] = (char *)(uintptr_t) "image";
	k = container_detect(probe, cr);
	free(probe);
	if (k != CONTAINER_MANAGED || cr->prefix_len != n_words) {
		return "its words are not those of an engine mcpmux runs";
	}
	/* What mcpmux ran, and an env launcher's engine: each by the path found for the run. */
	const char *run[2] = { words[0], words[cr->engine_at] };

	for (size_t i = 0; i < 2; i++) {
		if (run[i][0] != '/') {
			return "it is not named by an absolute path";
		}
		if (stat(run[i], &st) == -1) {
			return errno == ENOENT ? "it is no longer there" : strerror(errno);
		}
		if (!S_ISREG(st.st_mode) || access(run[i], X_OK) == -1) {
			return "it is no longer an executable file";
		}
	}
	return NULL;
}

/* The currentContext of docker's config.json in directory dir: "default" when none. */
static char *
docker_current_context(const char *dir)
{
	char path[PATH_MAX], *text = NULL, *out = NULL;
	size_t len = 0;
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/config.json", dir) >= sizeof(path)) {
		return NULL;
	}
	if ((f = fopen(path, "re")) == NULL) {
		return errno == ENOENT ? strdup("default") : NULL;
	}
	text = malloc(CONTAINER_RECORD_MAX + 1);
	if (text != NULL) {
		len = fread(text, 1, CONTAINER_RECORD_MAX + 1, f);
	}
	if (text != NULL && !ferror(f) && len <= CONTAINER_RECORD_MAX) {
		char err[128];

		text[len] = '\0';
		yajl_val v = yajl_tree_parse(text, err, sizeof(err));
		const char *key[] = { "currentContext", NULL };
		yajl_val c = YAJL_IS_OBJECT(v) ? yajl_tree_get(v, key, yajl_t_any) : NULL;

		if (YAJL_IS_OBJECT(v) && c == NULL) {
			out = strdup("default");
		} else if (YAJL_IS_STRING(c)) {
			const char *name = YAJL_GET_STRING(c);

			out = strdup(name != NULL && name[0] != '\0' ? name : "default");
		}
		yajl_tree_free(v);
	}
	free(text);
	(void)fclose(f);
	return out;
}

/*
 * The value of variable name for the engine of launcher words[1..at) run here: the
 * launcher's own, none when it takes the variable away (-i, -u name), else this process's.
 */
static const char *
engine_env(char *const *words, size_t at, const char *name)
{
	bool cleared;
	const char *v = launched_var(words, at, name, &cleared);

	return v != NULL || cleared ? v : getenv(name);
}

/* Is variable name unset or empty for the engine of launcher words[1..at) run here? */
static bool
var_unset_for(char *const *words, size_t at, const char *name)
{
	const char *v = engine_env(words, at, name);

	return v == NULL || v[0] == '\0';
}

/*
 * The home directory docker reads its configuration in: $HOME as the engine sees it, or,
 * unset or empty (env -i), that of the user's passwd entry, as docker takes it.  Into out;
 * -1 when there is none, or it is not an absolute path.
 */
static int
docker_home(char *const *words, size_t at, char *out, size_t cap)
{
	const char *home = engine_env(words, at, "HOME");

	if (home == NULL || home[0] == '\0') {
		char buf[4096];
		struct passwd pw, *found = NULL;

		if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &found) != 0 || found == NULL ||
		    pw.pw_dir == NULL || pw.pw_dir[0] != '/') {
			return -1;
		}
		return (size_t)snprintf(out, cap, "%s", pw.pw_dir) < cap ? 0 : -1;
	}
	if (home[0] != '/') {
		return -1;
	}
	return (size_t)snprintf(out, cap, "%s", home) < cap ? 0 : -1;
}

/*
 * For docker with no host or context of its words or variables: the context its
 * configuration chose (docker context use), read as docker reads it, for the record as
 * DOCKER_CONTEXT; NULL when it cannot be known (a relative HOME, a config.json that
 * cannot be read).  Each variable is the one docker sees after an env launcher.
 */
static char *
docker_config_context(char *const *words, const struct container_run *cr, const char *cwd)
{
	char dir[PATH_MAX], home[PATH_MAX];
	const char *cfg = NULL;

	if (cr->engine != CONTAINER_DOCKER ||
	    container_record_unpinned(NULL, 0, words, cr) == NULL) {
		return NULL;
	}
	/* As an env launcher leaves them (-i, -u, NAME=); an empty variable is none to docker. */
	if (!var_unset_for(words, cr->engine_at, "DOCKER_HOST") ||
	    !var_unset_for(words, cr->engine_at, "DOCKER_CONTEXT")) {
		return NULL;
	}
	for (size_t i = cr->engine_at + 1; i < cr->prefix_len; i++) {
		const char *w = words[i];

		if (strcmp(w, "--config") == 0 && i + 1 < cr->prefix_len) {
			cfg = words[++i];
		} else if (strncmp(w, "--config=", 9) == 0) {
			cfg = w + 9;
		}
	}
	if (cfg == NULL) {
		cfg = engine_env(words, cr->engine_at, "DOCKER_CONFIG");
	}
	if (cfg != NULL && cfg[0] != '\0') {
		if ((size_t)snprintf(dir, sizeof(dir), "%s%s%s", cfg[0] == '/' ? "" : cwd,
				     cfg[0] == '/' ? "" : "/", cfg) >= sizeof(dir) ||
		    (cfg[0] != '/' && cwd[0] == '\0')) {
			return NULL;
		}
	} else if (docker_home(words, cr->engine_at, home, sizeof(home)) == -1 ||
		   (size_t)snprintf(dir, sizeof(dir), "%s/.docker", home) >= sizeof(dir)) {
		return NULL;
	}
	return docker_current_context(dir);
}

/* The value of variable name the record keeps: an empty DOCKER_CONTEXT gives way to ctx. */
static const char *
record_env(const char *name, const char *ctx)
{
	return ctx != NULL && strcmp(name, "DOCKER_CONTEXT") == 0 ? NULL : getenv(name);
}

/*
 * Is prefix[i] an env launcher's word that sets DOCKER_CONTEXT empty (words[1..at), read as
 * launched_var() reads them)?  With a context ctx recorded, the record has
 * DOCKER_CONTEXT=ctx in its place: the launcher would otherwise set it empty again for
 * sweep's commands, which would then run in whatever context is current by then.
 */
static bool
launched_empty_context(char *const *prefix, size_t at, size_t i)
{
	struct env_launch e;

	return at > 0 && env_read(prefix, at, NULL, &e) && i >= e.sets && i < e.cmd &&
	       strcmp(prefix[i], "DOCKER_CONTEXT=") == 0;
}

/* Word i of the record of prefix: what mcpmux runs (exe), an env launcher's engine, ... */
static const char *
record_word(char *const *prefix, const struct container_run *cr, size_t i, const char *exe,
	    const char *engine, const char *ctx)
{
	if (i == 0) {
		return exe;
	}
	if (i == cr->engine_at) {
		return engine;
	}
	return ctx != NULL && launched_empty_context(prefix, cr->engine_at, i) ? NULL : prefix[i];
}

char *
container_record_text(char *const *prefix, const struct container_run *cr, const char *run,
		      size_t *len)
{
	size_t n = cr->prefix_len, n_vars = 0, total = 0;
	char head[64], cwd[PATH_MAX], exe[PATH_MAX], engine[PATH_MAX];
	const char *launcher_path = getenv("PATH");
	char *config_ctx = NULL;
	bool cleared = false;

	if (getcwd(cwd, sizeof(cwd)) == NULL) {
		cwd[0] = '\0';
	}
	/* What mcpmux runs, found as execvp() finds it: the run's PATH and directory. */
	if (resolve_word(prefix[0], getenv("PATH"), cwd[0] != '\0' ? cwd : NULL, exe,
			 sizeof(exe)) == -1) {
		(void)snprintf(exe, sizeof(exe), "%s", prefix[0]);
	}
	/* An env launcher's engine, found on the PATH it gives it. */
	engine[0] = '\0';
	if (cr->engine_at > 0) {
		const char *p = launched_var(prefix, cr->engine_at, "PATH", &cleared);

		if (p != NULL || !cleared) {
			launcher_path = p != NULL ? p : launcher_path;
		} else {
			launcher_path = NULL;
		}
		if (resolve_word(prefix[cr->engine_at], launcher_path, cwd[0] != '\0' ? cwd : NULL,
				 engine, sizeof(engine)) == -1) {
			(void)snprintf(engine, sizeof(engine), "%s", prefix[cr->engine_at]);
		}
	}
	config_ctx = docker_config_context(prefix, cr, cwd);
	/*
	 * An env launcher that takes DOCKER_CONTEXT away (-i, -u) would take the recorded one
	 * away from sweep's commands too: DOCKER_CONTEXT= that context goes in the record's
	 * words just before the engine, after the launcher's options and its own variables.
	 */
	bool ctx_word = false, ctx_cleared = false;

	if (config_ctx != NULL && cr->engine_at > 0) {
		ctx_word = launched_var(prefix, cr->engine_at, "DOCKER_CONTEXT", &ctx_cleared) ==
				   NULL &&
			   ctx_cleared;
	}
	for (size_t i = 0; container_record_vars[i] != NULL; i++) {
		const char *v = record_env(container_record_vars[i], config_ctx);

		if (v != NULL) {
			n_vars++;
			total += strlen(container_record_vars[i]) + 1 + strlen(v) + 1;
		}
	}
	if (config_ctx != NULL) {
		n_vars++;
		total += strlen("DOCKER_CONTEXT=") + strlen(config_ctx) + 1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *w = record_word(prefix, cr, i, exe, engine, config_ctx);

		total += (w != NULL ? strlen(w) : strlen("DOCKER_CONTEXT=") + strlen(config_ctx)) +
			 1;
	}
	if (ctx_word) {
		total += strlen("DOCKER_CONTEXT=") + strlen(config_ctx) + 1;
	}
	(void)snprintf(head, sizeof(head), RECORD_MAGIC " %zu %zu", n_vars, n + (ctx_word ? 1 : 0));
	total += strlen(head) + 1 + strlen(run) + 1 + 1;

	char *buf = malloc(total), *p = buf;

	if (buf == NULL) {
		free(config_ctx);
		return NULL;
	}
	p += sprintf(p, "%s", head) + 1;
	p += sprintf(p, "%s", run) + 1;
	for (size_t i = 0; container_record_vars[i] != NULL; i++) {
		const char *v = record_env(container_record_vars[i], config_ctx);

		if (v != NULL) {
			p += sprintf(p, "%s=%s", container_record_vars[i], v) + 1;
		}
	}
	if (config_ctx != NULL) {
		p += sprintf(p, "DOCKER_CONTEXT=%s", config_ctx) + 1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *w = record_word(prefix, cr, i, exe, engine, config_ctx);

		if (ctx_word && i == cr->engine_at) {
			p += sprintf(p, "DOCKER_CONTEXT=%s", config_ctx) + 1;
		}
		if (w != NULL) {
			p += sprintf(p, "%s", w) + 1;
		} else {
			p += sprintf(p, "DOCKER_CONTEXT=%s", config_ctx) + 1;
		}
	}
	*p++ = '\0';
	*len = (size_t)(p - buf);
	free(config_ctx);
	return buf;
}

/* The NUL-terminated string at *pos (before end): its start, *pos moved past; NULL none. */
static const char *
record_next(const char **pos, const char *end)
{
	const char *s = *pos;
	const char *nul = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;

	if (nul == NULL) {
		return NULL;
	}
	*pos = nul + 1;
	return s;
}

/* Is s NAME=VALUE of one of container_record_vars? */
static bool
record_var(const char *s)
{
	const char *eq = strchr(s, '=');

	return eq != NULL && in_list(s, (size_t)(eq - s), container_record_vars);
}

char **
container_record_parse(const char *buf, size_t len, size_t *n_vars, size_t *n_words,
		       const char **run)
{
	const char *pos = buf, *end = buf + len, *head = record_next(&pos, end), *s;
	const char *label = head != NULL ? record_next(&pos, end) : NULL;
	size_t nv, nw;
	char tail;
	char **v;

	if (head == NULL || sscanf(head, RECORD_MAGIC " %zu %zu%c", &nv, &nw, &tail) != 2 ||
	    nw == 0 || nv >= len || nw >= len || label == NULL || label[0] == '\0') {
		errno = EINVAL;
		return NULL;
	}
	if ((v = calloc(nv + nw + 2, sizeof(*v))) == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < nv + nw; i++) {
		if ((s = record_next(&pos, end)) == NULL || (i < nv && !record_var(s))) {
			free(v);
			errno = EINVAL;
			return NULL;
		}
		v[i < nv ? i : i + 1] = (char *)(uintptr_t)s;
	}
	/* The empty string that ends it, and nothing after. */
	if ((s = record_next(&pos, end)) == NULL || s[0] != '\0' || pos != end) {
		free(v);
		errno = EINVAL;
		return NULL;
	}
	*n_vars = nv;
	*n_words = nw;
	*run = label;
	return v;
}
