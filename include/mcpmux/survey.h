/*
 * survey: what `mcpmux ps` and `mcpmux sweep` share: their options, one look at the
 * machine (the /proc scan of procscan, the boot ID, and the listing of each container
 * engine that is installed), the verdict on a labelled container's owner, the runner of
 * engine commands, and the aligned tables and short formats they print.
 *
 * survey_read() fills a struct survey; everything in it stays valid until
 * survey_release().  survey_read_status() adds what only the running instances know, from
 * their status files (status.h), for ps; survey_sweep_status() removes the files of
 * instances that are gone, for sweep.  A container engine whose binary is not found is skipped
 * silently; one that fails to answer is reported once on stderr (a warning) and in
 * survey_engine.error.  Blocking calls, no event loop: front ends of layer 4.
 */
#ifndef MCPMUX_SURVEY_H
#define MCPMUX_SURVEY_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "mcpmux/cgroup.h"
#include "mcpmux/container.h"
#include "mcpmux/procscan.h"
#include "mcpmux/rpcout.h"

#define SURVEY_PROC_ROOT	 "/proc"
#define SURVEY_ENGINE_TIMEOUT_MS 30000 /* one engine command (a listing, a kill) */
/* sweep's question about one id file to the engine of its record (docs/ps.md) */
#define SURVEY_RECORD_TIMEOUT_MS 10000
#define SURVEY_ENGINES		 2 /* podman, docker */

/* Bounds on reading one instance's status file (status.h). */
#define SURVEY_STATUS_MAX_BYTES	   ((size_t)4 << 20) /* more is left unread */
#define SURVEY_STATUS_MAX_SESSIONS 16384	     /* session lines kept */
#define SURVEY_STATUS_LINE_MAX	   1024		     /* a longer line is skipped */
#define SURVEY_STATUS_READS	   4		     /* reads to get the same bytes twice */
#define SURVEY_STATE_MAX	   32		     /* bytes of a session's state kept */

struct survey_opts {
	bool json, dry_run;
	bool sweep; /* for mcpmux sweep, which says an engine it cannot list as its error */
	double older_than_s; /* 0: any age */
	const char *session; /* a glob(7) pattern, NULL: any */
	double term_grace_ms, kill_deadline_ms;
};

/* One engine's listing of the containers labelled mcpmux.owner. */
struct survey_engine {
	enum container_engine kind;
	bool present;	 /* its binary was found */
	bool listed;	 /* and it answered */
	bool down;	 /* it did not: its daemon is not there (its socket is not listened on) */
	char error[256]; /* why it did not */
	struct container_info *v;
	size_t n;
};

enum survey_owner {
	SURVEY_OWNED,	  /* its mcpmux lives */
	SURVEY_ORPHAN,	  /* its mcpmux is gone */
	SURVEY_ELSEWHERE, /* labelled on another boot or machine: not judged */
	SURVEY_UNKNOWN,	  /* the owner could not be read */
};

/* One session as its running instance tells it (a line of its status file). */
struct survey_status {
	size_t instance; /* index of the instance in scan.v */
	size_t group;	 /* the session's group in the scan (it has processes), SIZE_MAX */
	char session[PROCTREE_COOKIE_MAX + 1];
	/*
	 * "running", "ending", "suspending", "suspended", "resuming", "waiting", or a word of
	 * a newer mcpmux, as written (cut at SURVEY_STATE_MAX bytes, between two characters)
	 */
	char state[SURVEY_STATE_MAX + 1];
	pid_t pid;     /* the server's pid by the instance, 0 none: /proc has the last word */
	double age_s;  /* since the session began */
	double idle_s; /* since its last message either way (up to a second more) */
	unsigned long long suspends, resumes;
};

/* A leaf of a dead instance's cgroup and the session its status file said it was. */
struct survey_cgleaf {
	char leaf[32]; /* "s.N" */
	char session[PROCTREE_COOKIE_MAX + 1];
};

/*
 * The cgroup of an instance that is gone (cgroup.h), found through its status file or
 * next to where an mcpmux started from here makes its own.
 */
struct survey_cgroup {
	char dir[CGROUP_PATH_MAX];
	char owner[PROCSCAN_OWNER_MAX + 1]; /* its MCPMUX_OWNER (status file), "" unknown */
	pid_t pid;			    /* the PID of its name */
	pid_t file_pid; /* found through the status file instances/PID, else 0 */
	bool live;	/* a process in it is a carrier of a session not orphaned: left alone */
	struct survey_cgleaf *leaf; /* from its status file */
	size_t n_leaf;
	ino_t *below; /* the inodes of the cgroups below it at the first look, sorted */
	size_t n_below, cap_below;
	bool below_failed; /* not all of them kept (out of memory) */
};

/*
 * A dead instance's status file (found, its lock free and its owner gone) whose cgroup the
 * live process that has its pid now, no instance, may have made: the cgroup is left, and
 * so is the file, the only thing that names it, until that process is gone.
 */
struct survey_cgleft {
	pid_t pid; /* the file's */
	char dir[CGROUP_PATH_MAX];
};

/* A process in a dead instance's cgroup that carries no cookie of an orphan group. */
struct survey_cgproc {
	size_t cg;			       /* index in survey.cg */
	size_t proc;			       /* index in scan.v */
	char session[PROCTREE_COOKIE_MAX + 1]; /* its leaf's, "" unknown */
};

/*
 * The engine of a record (its words and variables) that did not answer in this sweep (no
 * answer within SURVEY_RECORD_TIMEOUT_MS, or it could not be run): not asked again then.
 */
struct survey_silent {
	char *key;		  /* the record's variables and words, each ended by a NUL */
	size_t key_len;		  /* bytes of key */
	char what[1024];	  /* the engine and its context, for a message */
	char why[512];		  /* why it did not answer */
	char first[NAME_MAX + 1]; /* the id file whose keeping said so, "" not said yet */
	size_t kept;		  /* id files kept since, not asked */
};

/* A container found in the context of its run (survey_read_recorded()). */
struct survey_recorded {
	struct container_info c;
	char *text; /* the record, which v points into */
	char **v;   /* container_record_parse(): its variables, NULL, its words, NULL */
	size_t n_vars, n_words;
};

struct survey {
	struct survey_opts o;
	struct procscan scan;
	uid_t uid;
	bool all_users;			/* root: the scan read every user's processes */
	char boot[PROCSCAN_BOOT_MAX];	/* "" when unknown */
	char pidns[PROCSCAN_PIDNS_MAX]; /* the scanner's pid namespace, "" when unknown */
	struct survey_engine engines[SURVEY_ENGINES];
	/* survey_read_status(): */
	struct survey_status *st; /* grouped by instance, in each in the file's order */
	size_t n_st, cap_st;
	size_t *group_st; /* per scan group: its index in st, SIZE_MAX */
	/* survey_read_cgroups(): */
	struct survey_cgroup *cg;
	size_t n_cg;
	struct survey_cgproc *cgp; /* by cgroup, then session, then pid */
	size_t n_cgp, cap_cgp;
	bool cg_unread;		       /* one could not be read whole: left alone, and said */
	struct survey_cgleft *cg_left; /* status files kept for the cgroups they name */
	size_t n_cg_left, cap_cg_left;
	/* survey_read_recorded(): */
	struct survey_recorded *rec;
	size_t n_rec;
	struct survey_silent *silent; /* engines of records that did not answer */
	size_t n_silent;
};

/*
 * The options of ps (sweep = false) or sweep, from argv[1] on (argv[0] is the
 * subcommand).  0 to go on, 1 after --help was printed, -1 after a usage error.
 */
int survey_parse(struct survey_opts *o, int argc, char **argv, bool sweep);
/* Scan /proc and list the containers.  0, or -1 after an error message. */
int survey_read(struct survey *sv);
void survey_release(struct survey *sv);

/*
 * Read the status file of every live instance (docs/ps.md): a file that is not held
 * under its lock is a dead instance's and is ignored, as is one that is not a regular
 * file of the instance's user, not in a private directory, or whose first line names
 * another pid.  Then match each session with its group in the scan.  0, or -1 after an
 * error message (out of memory); a file that cannot be read costs only its fields.
 */
int survey_read_status(struct survey *sv);
/* What group g's instance says of it, NULL when it says nothing. */
const struct survey_status *survey_group_status(const struct survey *sv, size_t g);

enum survey_status_file {
	SURVEY_STATUS_NONE,  /* no such file */
	SURVEY_STATUS_STALE, /* its lock is free: the instance is gone */
	SURVEY_STATUS_READ,  /* held by a live instance, and read */
};

/*
 * The status file of instance pid of user uid in mcpmux's runtime directory dir (its
 * "instances/PID", opened without following symlinks), read into out (at most
 * SURVEY_STATUS_MAX_BYTES, read again until two reads agree, or SURVEY_STATUS_READS
 * times).  -1 with errno: EPERM (not a regular file of uid, or a directory others can
 * write), ELOOP (a symlink), or what open or read said.
 */
int survey_status_load(const char *dir, pid_t pid, uid_t uid, struct sbuf *out);
/*
 * Parse a status file of instance pid: its session lines into *v (appended, *n and *cap
 * updated, instance and group set to SIZE_MAX), ages from now (CLOCK_MONOTONIC seconds).
 * A line that is torn (no newline), too long, malformed, or of a session already seen
 * is skipped; lines past SURVEY_STATUS_MAX_SESSIONS are not read (*cut).  0; -1 with
 * errno EINVAL when the first line does not name pid (the whole file is ignored),
 * ENOMEM.
 */
int survey_status_parse(const char *buf, size_t len, pid_t pid, double now,
			struct survey_status **v, size_t *n, size_t *cap, bool *cut);
/*
 * sweep: remove the status files that this user's instances left behind (killed, so
 * not removed at exit), in the runtime directory of this process's environment: those
 * whose lock is free and whose pid is gone, or held by a process that s, a scan, saw
 * there and found no instance (still there, with the same start time).  A file that
 * names a cgroup still there that keep holds (keep->cg), or that keep->cg_left has (its
 * pid another process now, which may have made it), stays: the latter is said.  Returns
 * how many were removed.  With dry_run (sweep --dry-run), nothing is removed, and what a
 * sweep would say is said.
 */
size_t survey_sweep_status(const struct procscan *s, const struct survey *keep, bool dry_run);
/*
 * sweep: remove mcpmux's own id files of containers (the runtime directory's cid/, as
 * survey_sweep_status() reads it) that name one of the n full ids, containers that the
 * sweep has ended: a file whose mcpmux and keeper were both killed, or whose keeper could
 * not remove its container, is left there.  Returns how many were removed.
 */
size_t survey_sweep_cidfiles(const char *const *ids, size_t n);
/*
 * sweep: remove mcpmux's own id files of containers (as survey_sweep_cidfiles() reads them)
 * of instances that are gone (as a stale status file's) whose container is gone without
 * them (removed by hand): the engine of the record beside the file (container.h), asked
 * with that record's words and variables, that is in the context the run had, answers
 * its `container inspect` with "no such container".  Any other answer keeps the file:
 * the container there, or a failure (the engine missing, not reached, no record), said on
 * stderr.  An engine whose inspect did not answer for one record (sv->silent) is not
 * asked about the others with the same words and variables: they are kept, said in one
 * line with their count.  (One whose listing did not answer in survey_read_recorded() is
 * still asked this: a listing and an inspect are kept apart.)  A record whose id
 * file is gone goes too.  Returns how many id files were removed.
 */
size_t survey_sweep_lost_cidfiles(struct survey *sv);
/*
 * sweep: the containers of instances that are gone found by mcpmux's own id files (as
 * survey_sweep_lost_cidfiles() reads them) and the records beside them, in the context of
 * their runs (sv->rec): the engine of a record, with its words and variables, lists the
 * id of the file with the run's label (container_list_one_argv()), and the entry of that
 * whole id with that label and an owner of the file's pid is kept.  An id that the
 * engines' own listings (sv->engines) have is left to them.  An engine that does not
 * answer (within SURVEY_RECORD_TIMEOUT_MS, or cannot be run) goes into sv->silent, and is
 * not asked for another listing, for a record with the same words and variables, in this
 * sweep.  A record
 * that cannot be read or an engine that cannot answer gives nothing, not said here
 * (survey_sweep_lost_cidfiles() says it).  0, or -1 when out of memory.
 */
int survey_read_recorded(struct survey *sv);

/*
 * The cgroups of this user's instances that are gone (docs/ps.md), into sv->cg, and the
 * processes left in them (survey_cgroup_procs()).  A cgroup is taken from the status file
 * that a dead instance left in the runtime directory of this process's environment (its
 * lock free, its owner gone), or from the "mcpmux.PID[.K]" cgroups below this process's
 * own cgroup whose PID is gone, or is a process the scan found no instance.  Never one
 * that a live instance's status file names, one not of this user, or one holding a
 * carrier of a session that is not an orphan's (marked live).  0, or -1 after an error
 * message (out of memory).
 */
int survey_read_cgroups(struct survey *sv);
/* The processes in sv->cg's cgroups now, from sv->scan, into sv->cgp.  0, or -1 (ENOMEM). */
int survey_cgroup_procs(struct survey *sv);
/* Was the cgroup of inode ino below sv->cg[k] there at the first look? */
bool survey_cgroup_below(const struct survey *sv, size_t k, ino_t ino);
/*
 * Judge dead cgroup k of sv->cg again, from what is there now: false when its status file
 * is held now, or the PID of its name is a live instance or a process that started before
 * the cgroup was made (its maker, an mcpmux under another name, or not yet locking).
 */
bool survey_cgroup_still_dead(const struct survey *sv, size_t k);
/*
 * Was dir, or a cgroup right below it, made less than 5 s ago (MCPMUX_SWEEP_YOUNG_S for
 * the tests), or is that unknown?  An empty one may be a starting instance's.
 */
bool survey_cgroup_young(const char *dir);
/*
 * Remove dead cgroup k of sv->cg if it is still a dead instance's now
 * (survey_cgroup_still_dead()), and not young when found_empty (its processes were not
 * ended by the caller), and of the cgroups below it only those there at the first look
 * (survey_cgroup_below()): one made since may be a starting instance's leaf.  1 removed,
 * 0 left (judged live or young, or a process or a cgroup still in it), -1 (errno).
 */
int survey_cgroup_remove(const struct survey *sv, size_t k, bool found_empty);
/*
 * At an instance's start, once its cgroup inst is made: remove the empty cgroups beside
 * it that instances that are gone left, "mcpmux.N[.K]" whose N is no process here, each
 * judged by sweep's rules with only what a start needs (survey_cgroup_remove()): never one
 * that holds a process, that a held status file names or is named after, that is young,
 * or whose N is the pid there of a live process of a pid namespace below (NSpid).  No
 * other process's cmdline or environ is read (a read that may wait on it), /proc/PID/status
 * only when such a cgroup is left to judge, and no cgroup elsewhere.  Processes are never
 * signalled.  How many went (said with -v).
 */
size_t survey_start_sweep(const char *inst);

bool survey_session_selected(const struct survey_opts *o, const char *session);
/* Warn about carriers whose owner could not be read (own_only: this user's); any? */
bool survey_report_unknown(const struct survey *sv, bool own_only);
enum survey_owner survey_container_owner(const struct survey *sv, const struct container_info *c,
					 int *err);
const char *survey_owner_name(enum survey_owner o);
/* Seconds since the container was created, -1 when unknown. */
double survey_container_age(const struct container_info *c);

/* ---- engine commands ---- */

#define SURVEY_ENGINE_OUTPUT_MAX ((size_t)16 << 20) /* bytes of an engine's output kept */

struct survey_run {
	int status;	 /* wait status; -1 when it could not run or was killed */
	int spawn_errno; /* why it could not run */
	struct sbuf out, err;
	bool out_cut, err_cut;		/* more came than SURVEY_ENGINE_OUTPUT_MAX: cut there */
	struct container_tail err_tail; /* the end of stderr, however much was cut */
};

/*
 * Run argv with stdin on /dev/null and stdout and stderr captured, for at most
 * timeout_ms (then SIGKILL), with default signal dispositions and without mcpmux's
 * cookies in its environment.  0 when it ran (see r->status), -1 when it could not be
 * started (r->spawn_errno; ENOENT: no such program).  survey_run_release() always.
 */
int survey_run(char *const *argv, int timeout_ms, struct survey_run *r);
/*
 * survey_run() with the variables of container_record_vars as vars (NAME=VALUE,
 * NULL-terminated) has them, set or not: NULL leaves them as they are.
 */
int survey_run_in(char *const *argv, char *const *vars, int timeout_ms, struct survey_run *r);
void survey_run_release(struct survey_run *r);
/*
 * Add p[0..len) to b, b->len kept at most max: what does not fit is cut, *cut set, and
 * nothing is added after it, so that b always holds the start of the output, whole.
 */
void survey_output_add(struct sbuf *b, size_t max, const char *p, size_t len, bool *cut);
bool survey_run_ok(const struct survey_run *r);
/* Why a run failed, in one line: its stderr's last line (however long), or its status. */
void survey_run_failure(const struct survey_run *r, char *out, size_t cap);
/* The engine's binary name as a one-word prefix for container_*_argv(). */
char **survey_engine_prefix(enum container_engine e);

/* ---- text ---- */

/* The first line of text (not NUL-terminated), control characters as spaces. */
void survey_first_line(const char *text, size_t len, char *out, size_t cap);
/*
 * s for a terminal (a table, stderr): control characters (C0, DEL, C1) and bytes that are
 * not UTF-8 as '?', as in a command line; ended by "..." when cut to cap.  A session ID or
 * an owner is any process's environment, a label any container's.
 */
const char *survey_printable(const char *s, char *out, size_t cap);
/*
 * Words [from...] of a process's command line as survey_printable() shows them, ended by
 * "..." when cut (to cap, or at 64 words), or "[comm]" when it has none.
 */
void survey_command(const struct procscan_proc *pr, size_t from, char *out, size_t cap);
/* 42s, 5m03s, 2h05m, 3d04h; "-" when negative (unknown). */
void survey_fmt_age(double s, char *out, size_t cap);
/* 812K, 45.2M, 1.5G. */
void survey_fmt_kib(unsigned long long kib, char *out, size_t cap);
const char *survey_user(uid_t uid, char *buf, size_t cap);

/* An aligned table: one header, rows of ncol strings (copied), printed like ps(1). */
#define SURVEY_TABLE_MAX_COLS 12

struct survey_table {
	size_t ncol;
	const char *const *head;
	const char *align; /* one letter a column: 'r' right-aligned, 'l' left */
	char **cells;	   /* nrows * ncol strings */
	size_t nrows, cap;
	bool failed; /* out of memory: rows were lost */
};

void survey_table_row(struct survey_table *t, const char *const *cols);
void survey_table_print(const struct survey_table *t);
void survey_table_release(struct survey_table *t);

#endif
