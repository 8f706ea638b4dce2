/*
 * container: server commands that run a container (docker run, podman run), and the
 * command lines of what mcpmux does to such a container.  Pure: it reads argv arrays
 * and engine output and builds argv arrays; it runs nothing.
 *
 * container_detect() decides whether a server command is a foreground container run
 * that mcpmux manages:
 *
 *   [env [-i] [-u NAME] [NAME=value...] [--]] (docker|podman) [GLOBAL OPTIONS]
 *           [container] run [RUN OPTIONS] IMAGE [ARG...]
 *
 * argv[0] (or the word after an env launcher) is matched by its basename.  The global
 * options before `run` are the ones docker and podman document (-H, --context,
 * --log-level, --remote, --url, --root, ...); one it does not know makes the command a
 * container run that mcpmux does not manage, as does a detached run (-d, --detach: not
 * a stdio server) or a command that sets mcpmux's own labels.  The run options are
 * read up to the image, so that an argument of the container's command is never taken
 * for one of them.
 *
 * container_run_argv() builds the command mcpmux runs instead: the same words, with
 * `--label mcpmux.owner=OWNER --label mcpmux.session=ID [--label mcpmux.boot=BOOT]
 * [--label mcpmux.pidns=NS] [--label mcpmux.run=RUN] [--cidfile PATH]` inserted right
 * after `run`.  Labels add up, so the command's own
 * labels are kept; a command with its own --cidfile keeps it, and mcpmux reads that one
 * (container_run.cidfile).  The helper commands (kill, rm, inspect) are built from the
 * words before `run` (launcher, engine, global options), so they reach the same engine
 * the same way; `mcpmux ps` and `sweep`, which have no run command, use the engine's
 * name alone as that prefix.
 *
 * Every argv returned is one malloc'd block, NULL-terminated: free() it once.  Words
 * copied from the caller's arrays are borrowed (they point into them, so those must
 * outlive the result); words mcpmux adds live inside the block.  NULL with errno
 * ENOMEM when memory runs out.
 */
#ifndef MCPMUX_CONTAINER_H
#define MCPMUX_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>

#define CONTAINER_LABEL_OWNER	"mcpmux.owner"
#define CONTAINER_LABEL_SESSION "mcpmux.session"
#define CONTAINER_LABEL_BOOT	"mcpmux.boot"
/* The owner's pid namespace (the inode of its /proc/self/ns/pid): where its pid means it. */
#define CONTAINER_LABEL_PIDNS "mcpmux.pidns"
/*
 * The run that made it (a UUID of its own): what finds a container its engine made but
 * whose id the run never learnt (the engine's command killed while it made it).
 */
#define CONTAINER_LABEL_RUN "mcpmux.run"
#define CONTAINER_ID_MAX    128
#define CONTAINER_NAME_MAX  256
#define CONTAINER_LABEL_MAX 256

enum container_engine {
	CONTAINER_DOCKER,
	CONTAINER_PODMAN,
};

enum container_kind {
	CONTAINER_PLAIN,     /* not a container run: run it as it is */
	CONTAINER_MANAGED,   /* a foreground run: labels and a cidfile go in (run_argv) */
	CONTAINER_UNMANAGED, /* a container run mcpmux leaves alone (why): run it as it is */
};

struct container_run {
	enum container_engine engine;
	size_t engine_at;    /* argv index of the engine's binary (after a launcher) */
	size_t prefix_len;   /* words before `run` or `container run`: the helpers' prefix */
	size_t run_at;	     /* argv index of `run` */
	size_t image_at;     /* argv index of the image */
	const char *cidfile; /* the command's own --cidfile (borrowed from argv), or NULL */
	const char *name;    /* its --name (borrowed), or NULL */
	bool is_interactive; /* -i: stdin is attached (without it the server reads EOF) */
	bool has_tty;	     /* -t: a terminal mangles the JSON-RPC lines (CR LF) */
	bool has_rm;	     /* --rm: the engine removes the container when it exits */
	const char *why;     /* CONTAINER_UNMANAGED: why, a static string */
};

/* The labels mcpmux puts on a container it starts.  boot may be NULL (left out). */
struct container_labels {
	const char *owner;   /* "PID:STARTTIME" of the mcpmux instance */
	const char *session; /* the session ID */
	const char *boot;    /* the boot ID (/proc/sys/kernel/random/boot_id), or NULL */
	const char *pidns;   /* the owner's pid namespace, its inode number; or NULL */
	const char *run;     /* the run's own label (a UUID); or NULL */
};

/* Classify argv (NULL-terminated).  *r is filled for MANAGED and UNMANAGED. */
enum container_kind container_detect(char *const *argv, struct container_run *r);

/*
 * The run command with mcpmux's labels and, unless the command has its own, --cidfile
 * cidfile inserted after `run`.  r must come from container_detect() on the same argv
 * with the result CONTAINER_MANAGED.
 */
char **container_run_argv(char *const *argv, const struct container_run *r,
			  const struct container_labels *labels, const char *cidfile);

/*
 * Helpers, each `PREFIX container VERB ...` with the n first words of prefix (for a run:
 * argv and r->prefix_len; without one: the engine's name, n = 1).  id is a container's
 * ID or name; sig a signal name without "SIG" ("TERM", "KILL").
 *   kill:    PREFIX container kill --signal SIG ID
 *   rm:      PREFIX container rm -f ID
 *   inspect: PREFIX container inspect --format {{.State.Status}} ID
 *            (prints the state; exits non-zero with "no such container" once it is gone)
 *   list:    PREFIX container ls -a --no-trunc --filter label=mcpmux.owner --format F
 *            (F: json for podman, {{json .}} for docker; read with container_parse_list())
 */
char **container_kill_argv(char *const *prefix, size_t n, const char *sig, const char *id);
char **container_rm_argv(char *const *prefix, size_t n, const char *id);
char **container_inspect_argv(char *const *prefix, size_t n, const char *id);
/*
 * Its labels' owner and session, and its full id, on a line of their own that an engine's
 * warnings on the same stream cannot be taken for: "mcpmux-whose|OWNER|SESSION|ID" ("" for
 * a label it lacks).
 */
#define CONTAINER_WHOSE "mcpmux-whose"
char **container_whose_argv(char *const *prefix, size_t n, const char *id);

struct container_whose {
	char owner[CONTAINER_LABEL_MAX + 1];
	char session[CONTAINER_LABEL_MAX + 1];
	char id[CONTAINER_ID_MAX + 1];
};
/* That line, in the output of its command (other lines ignored).  false when not there. */
bool container_whose_parse(const char *out, size_t len, struct container_whose *w);
/*
 * Room in a full buffer of that command's output, for reading on: what comes before the
 * marked line goes (or, while it has not come, all but the bytes where it may begin).
 * The bytes kept: n when the marked line starts the buffer (no room can be made).
 */
size_t container_whose_keep(char *buf, size_t n);
char **container_list_argv(char *const *prefix, size_t n, enum container_engine engine);
/*
 * container_list_argv()'s listing of one container of one run:
 *   PREFIX container ls -a --no-trunc --filter label=mcpmux.run=RUN --filter id=ID --format F
 * (the engine matches a prefix of the id: only an entry of the whole id tells).
 */
char **container_list_one_argv(char *const *prefix, size_t n, enum container_engine engine,
			       const char *run, const char *id);
/*
 * The containers of one run (of every run of the mcpmux, when run is NULL: no run filter):
 *   PREFIX container ls -a --no-trunc --filter label=mcpmux.owner=OWNER
 *          [--filter label=mcpmux.run=RUN] --format mcpmux-listed|{{.ID}}
 * (docker's and podman's formats alike), one marked line a container, which an engine's
 * warnings on the same stream cannot be taken for.  Read with container_listed_next().
 */
#define CONTAINER_LISTED "mcpmux-listed"
char **container_list_run_argv(char *const *prefix, size_t n, const char *owner, const char *run);
/*
 * Container id if it is owner's, the same way:
 *   PREFIX container ls -a --no-trunc --filter label=mcpmux.owner=OWNER --filter id=ID ...
 * (the engine matches a prefix of the id: only a line of the whole id tells).  A listing
 * reads the labels from the engine's record of the container, where podman's inspect also
 * needs its storage, which a `podman run --rm` killed while it removed the container has
 * taken away already ("getting container from store ...: container not known").
 */
char **container_list_id_argv(char *const *prefix, size_t n, const char *owner, const char *id);
/*
 * The next id in that command's output from *pos (up to end): its start, with *len its
 * length, and *pos moved past its line; NULL when there is no other.  Only a whole line
 * (ended by its newline) gives an id; other lines, a last one without its newline (it may
 * be cut), and ids too long or with bytes no id has, are skipped.
 */
const char *container_listed_next(const char **pos, const char *end, size_t *len);
/*
 * The ids of that output (out[0..n)) into dst[0..cap), each ended by a NUL, as many as
 * fit; *count of them.  Returns the bytes written.
 */
size_t container_listed_ids(const char *out, size_t n, char *dst, size_t cap, size_t *count);
/* Like container_whose_keep(), for the lines marked CONTAINER_LISTED. */
size_t container_listed_keep(char *buf, size_t n);

/* The engine's usual binary name: "docker" or "podman". */
const char *container_engine_name(enum container_engine engine);

/* One container of a listing, with mcpmux's labels ("" where absent). */
struct container_info {
	enum container_engine engine;
	char id[CONTAINER_ID_MAX + 1];
	char name[CONTAINER_NAME_MAX + 1];
	char image[CONTAINER_NAME_MAX + 1];
	char state[32]; /* running, exited, created, paused, ... */
	char owner[CONTAINER_LABEL_MAX + 1];
	char session[CONTAINER_LABEL_MAX + 1];
	char boot[CONTAINER_LABEL_MAX + 1];
	char pidns[CONTAINER_LABEL_MAX + 1];
	char run[CONTAINER_LABEL_MAX + 1];
	long long created; /* Unix time, seconds; -1 when unknown */
};

/*
 * Parse the output of container_list_argv()'s command (text need not be NUL-terminated):
 * podman's JSON array, or docker's one JSON object a line.  Entries without an
 * mcpmux.owner label are skipped.  On success *out (malloc'd, free() it; NULL when
 * empty) holds *n entries and 0 is returned; -1 with errno EINVAL when the text is not
 * such a listing, ENOMEM when memory runs out.
 */
int container_parse_list(enum container_engine engine, const char *text, size_t len,
			 struct container_info **out, size_t *n);

#define CONTAINER_GONE_WORDS "no such container"

/*
 * Does text (a line of the stderr of a failed inspect, kill or rm) hold the words an
 * engine says when the container does not exist (any more), "no such container" in any
 * case?  Other failures (an engine that cannot be reached) do not.  Which line of a
 * command's output counts: container_gone_output().
 */
bool container_gone_message(const char *text, size_t len);

/*
 * The line of an engine command's output (text[0..len)) that says why it failed: its last
 * line that is not blank, since an engine says its error after any warnings.  Its length
 * goes to *n (0 when there is none).
 */
const char *container_why(const char *text, size_t len, size_t *n);

/*
 * The end of an engine command's output, kept as it is read: where container_why looks;
 * and, line by line across reads, whether the engine said the container is gone.
 *
 * That is the verdict of the last engine error line read: a line that begins with "Error"
 * (docker's "Error response from daemon: No such container: ID" and "Error: No such
 * container: ID", podman's "Error: no container with name or ID ... found: no such
 * container"), or with one of docker's failures that do not ("Cannot connect to the
 * Docker daemon", "permission denied while trying to connect", "error during connect").
 * It says gone when it holds container_gone_message()'s words, and a later error line
 * without them says not gone.  Other lines (warnings such as "WARN[...",
 * "level=warning", "WARNING:") do not change it, even when they quote those words about
 * something else; the last line counts as it comes, with or without a newline at its
 * end.  A child the command left behind that writes lines of its own is taken as such
 * lines are (one that begins with "Error" counts as an error line), and one that writes
 * more than a pipe takes at once may put the engine's line in the middle of one of its
 * own, where it is not seen: either way the verdict can only be "not gone", which costs
 * a KILL and an rm -f that were not needed, never a container left running.  The state
 * is fixed in size: no allocation, however long the output or its lines.
 */
struct container_tail {
	char buf[256];
	size_t n;
	bool gone; /* the verdict of the last error line so far (the one being read included) */
	/* the line being read: */
	unsigned char head;   /* how many of its first bytes were those of an error line's */
	unsigned char out;    /* the heads of error lines that it does not begin with (bits) */
	signed char kind;     /* 0 its start is not known yet, 1 an error line, -1 not one */
	bool has;	      /* an error line that holds the words */
	unsigned char seam_n; /* its last bytes (up to the words' length less one) */
	char seam[sizeof(CONTAINER_GONE_WORDS) - 2];
};
/* An empty t, for a command about to run. */
void container_tail_reset(struct container_tail *t);
/* Add what was read, p[0..n), to the end kept in t. */
void container_tail_add(struct container_tail *t, const char *p, size_t n);
/* Did a failed command whose output went through t say the container is gone (above)? */
bool container_gone_output(const struct container_tail *t);

/*
 * The record of the engine of a run with mcpmux's own id file, kept beside that file
 * (PID.SEQ.cid: PID.SEQ.ctx) for `mcpmux sweep`, which may have to ask that engine, in
 * that context, about the container once mcpmux and its keeper are gone: the words
 * before `run` (a launcher, the engine, its global options) and the variables of
 * container_record_vars as they were for the run (set or not), and the run's own label
 * (mcpmux.run), which tells its container there from any other.  Strings each ended by a
 * NUL: "mcpmux-engine 3 NVARS NWORDS", the run's label, the NVARS variables set
 * (NAME=VALUE), then the NWORDS words, then an empty one: a record cut short is no record.
 */
#define CONTAINER_RECORD_MAX ((size_t)1 << 20) /* bytes of a record read */
/* The variables that choose an engine's context, NULL-terminated. */
extern const char *const container_record_vars[];
/* The record's path beside id file cidfile (its ".cid" as ".ctx"): -1 when not one. */
int container_record_path(const char *cidfile, char *out, size_t cap);
/*
 * The record of the words cr->prefix_len of prefix (container_detect()'s of the run), run's
 * label run (a UUID) and this process's environment (malloc'd, *len bytes).  What mcpmux
 * runs, prefix[0], is recorded as the absolute path that execvp() finds for it (on PATH,
 * or against the working directory), and so is an env launcher's engine (on the PATH the
 * launcher gives it); for docker with no host or context of its words or variables (as an
 * env launcher leaves them), the context of its configuration (config.json's
 * currentContext in --config, $DOCKER_CONFIG or $HOME/.docker, the passwd entry's home
 * when HOME is unset or empty: "default" when none) as DOCKER_CONTEXT, which also takes
 * the place of an env launcher's word that sets DOCKER_CONTEXT empty (DOCKER_CONTEXT=),
 * and is added as the launcher's last assignment when it takes DOCKER_CONTEXT away.
 */
char *container_record_text(char *const *prefix, const struct container_run *cr, const char *run,
			    size_t *len);
/*
 * The engine of a record's words[0..n_words) as the run's detection reads them, into *cr:
 * NULL when it may be run, else why not (a static string): words that detection would not
 * take for an engine's, what mcpmux ran (or an env launcher's engine) not an absolute path,
 * or no longer an executable file there.
 */
const char *container_record_engine(char *const *words, size_t n_words, struct container_run *cr);
/*
 * NULL when the record (vars[0..n_vars), words, cr: container_record_engine()'s) pins the
 * context of its engine: a host or context of its words (docker -H/--host/-c/--context,
 * podman --url/--connection), or of its variables (DOCKER_HOST, DOCKER_CONTEXT,
 * CONTAINER_HOST, CONTAINER_CONNECTION; those an env launcher sets; those of the record
 * unless the launcher takes variables away), or local podman (no --remote).  Else why not.
 */
const char *container_record_unpinned(char *const *vars, size_t n_vars, char *const *words,
				      const struct container_run *cr);
/*
 * Read a record (buf[0..len)): an array (free() it; its strings point into buf) of the
 * *n_vars variables set, NULL, then the *n_words words, NULL; *run its run's label (into
 * buf).  NULL with errno EINVAL when it is not a whole record (or names another variable,
 * or has no run's label), ENOMEM.
 */
char **container_record_parse(const char *buf, size_t len, size_t *n_vars, size_t *n_words,
			      const char **run);

#endif
