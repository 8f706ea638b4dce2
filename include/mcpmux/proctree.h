/*
 * proctree: find and signal the whole process tree of a backend.
 *
 * proctree_scan() takes a snapshot of every descendant of one process (mcpmux itself),
 * walking /proc/PID/task/TID/children from it, with each descendant's parent, process
 * group, start time, state, and the value of MCPMUX_SESSION in its environment.  Because
 * mcpmux is a child subreaper, a descendant that daemonises (double fork, setsid) is
 * re-parented to mcpmux and stays in this snapshot.
 *
 * A backend's tree, given its pid, its process group and its cookie, is every process of
 * the snapshot that is the backend, is in its process group, carries its cookie, or
 * descends from such a process.  A process that carries another cookie belongs to
 * another backend, so the process-group rule does not apply to it (a pid, and so a group
 * id, may be reused by a new backend).  Nor does it apply once the backend is reaped and
 * another process holds its pid (proctree_check_group()): the group is that one's then.
 * With the match's owner set, the cookie counts only on a process that this mcpmux
 * started (its MCPMUX_OWNER, where it has one): the server of a nested mcpmux may carry
 * a session ID that is one of ours.  A process of a
 * nested mcpmux's tree (`mcpmux -- mcpmux -- server`) carries the inner session's cookie;
 * its MCPMUX_OUTER names the outer session, and makes it a member of that one too, so
 * that it goes with the outer tree even when the inner mcpmux was killed before it could
 * end its own.  Zombies are members, but not live ones: they
 * cannot be signalled, and a tree is not empty while one is left (a process that forks
 * and exits between two reads of the walk must not let its child escape: its zombie
 * keeps the tree from being called empty until the next walk finds the child).
 *
 * A process whose main thread has exited (pthread_exit()) while its other threads run on
 * shows state Z and an empty environment in /proc, yet runs: its state is taken from a
 * live thread of it, and its environment read through that thread
 * (/proc/PID/task/TID/environ), so it is signalled and counted as live.
 *
 * Nothing that could not be read is taken as gone.  Only ENOENT and ESRCH mean a process
 * has exited; any other failure (EMFILE, EACCES, hidepid, a malformed file) leaves the
 * process in the snapshot as "unknown" (what could not be read stays unset) or, when a
 * whole subtree could not be listed, marks the snapshot incomplete.  proctree_left()
 * counts them, so that an error never makes a tree look empty.  A kernel without
 * /proc/PID/task/TID/children files is walked through every /proc/PID/stat instead.
 * Before the walk gives up on EMFILE or ENFILE, it closes a spare descriptor it keeps
 * for that (proctree_spare()) and tries again.
 *
 * A process a walk found with a cookie, an owner or outer sessions keeps them in the next
 * walk (proctree_scan() and proctree_scan_owned() alike) while it is the same process (pid
 * and start time) and its environment names none: one in exit reads so (empty, or ESRCH)
 * from the moment it has let its memory go, while it still holds its files.
 *
 * The /proc root is a parameter so that unit tests can run on a fake tree.
 */
#ifndef MCPMUX_PROCTREE_H
#define MCPMUX_PROCTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PROCTREE_COOKIE_ENV "MCPMUX_SESSION"
#define PROCTREE_OWNER_ENV  "MCPMUX_OWNER" /* "PID:STARTTIME" of the mcpmux that started it */
#define PROCTREE_COOKIE_MAX 128
#define PROCTREE_OWNER_MAX  64
/*
 * The sessions of the mcpmux instances a server is nested in, innermost first: entries
 * "SESSION,OWNER" separated by spaces (a session ID has neither).  mcpmux gives it to a
 * server when mcpmux is itself in a session's tree, and keeps it to PROCTREE_OUTER_MAX
 * bytes by leaving out the outermost entries.
 */
#define PROCTREE_OUTER_ENV "MCPMUX_OUTER"
#define PROCTREE_OUTER_MAX 1024

struct proc_info {
	pid_t pid;
	pid_t ppid;
	pid_t pgid;
	unsigned long long start; /* start time, clock ticks since boot */
	char state;		  /* from /proc/PID/stat: R, S, Z, ...; '?' unknown */
	bool unknown;	     /* stat could not be read: pgid unknown; start is when it was seen */
	bool cookie_unknown; /* environ could not be read */
	char comm[16];	     /* its command name, "" unknown */
	size_t parent;	     /* index of the parent in the snapshot, or SIZE_MAX */
	char cookie[PROCTREE_COOKIE_MAX + 1]; /* "" when none */
	char owner[PROCTREE_OWNER_MAX + 1];   /* MCPMUX_OWNER, "" when none */
	size_t outer; /* MCPMUX_OUTER: 1 + its offset in the tree's strings; 0 when none */
};

struct proctree {
	struct proc_info *v;
	size_t n;
	size_t cap;
	bool incomplete; /* a subtree could not be listed: there may be more */
	int error;	 /* errno of the first failure that made it so */
	bool walk_all;	 /* no children files: walk every /proc/PID/stat */
	char *str;	 /* the entries' MCPMUX_OUTER values, NUL-terminated */
	size_t str_len, str_cap;
	/*
	 * Set by the caller (NULL: none): this mcpmux's MCPMUX_OWNER.  A process it started
	 * is read only up to its cookie and owner: its MCPMUX_OUTER names the sessions this
	 * mcpmux is nested in, never one of its own, and reading on costs a read per
	 * process per walk.
	 */
	const char *self_owner;
	/*
	 * The previous walk's entries and strings, sorted by pid when first looked in: a
	 * process that carried a cookie, owner or outer sessions keeps them for as long as
	 * it is that process (its pid and start time), whatever its environment reads later.
	 */
	struct proc_info *prev;
	size_t prev_n, prev_cap;
	bool prev_sorted;
	char *prev_str;
	size_t prev_str_len, prev_str_cap;
};

/* The outcome of one verified signal. */
enum proctree_sig {
	PROCTREE_SENT,
	PROCTREE_GONE,	 /* exited, or the pid is another process now */
	PROCTREE_FAILED, /* could not be signalled or verified (EPERM, EMFILE, ...) */
};

struct proctree_match {
	pid_t pid;	    /* the backend's pid (0: already reaped) */
	pid_t pgid;	    /* its process group (0: none) */
	const char *cookie; /* its MCPMUX_SESSION value (NULL: none) */
	/*
	 * Also claim orphans: descendants that no longer link to any backend (they left
	 * the group, dropped the cookie and were re-parented to mcpmux).  is_backend(pid)
	 * tells which children of mcpmux are live backends, never orphans.  Wrap mode,
	 * where every descendant of mcpmux comes from its backend, sets it.
	 */
	bool (*is_backend)(pid_t pid);
	/*
	 * Optional: processes not to signal, with their descendants (they are still members,
	 * and still keep the tree from being empty).  A container engine's monitor and the
	 * container under it are the engine's to stop first.
	 */
	bool (*spare)(const struct proc_info *pi);
	/* This mcpmux's MCPMUX_OWNER value (NULL: the cookie alone decides). */
	const char *owner;
	/*
	 * The backend's start time (clock ticks since boot) or earlier, 0 unknown: a process
	 * that started before it is none of its descendants.
	 */
	unsigned long long born;
};

void proctree_init(struct proctree *t);
void proctree_release(struct proctree *t);
/*
 * Keep (or, with false, close) the spare descriptor the walk falls back on when the
 * descriptor table is full.
 */
void proctree_spare(bool keep);
/*
 * Snapshot the descendants of `root` under `proc_root` ("/proc").  0, or -1 (errno) when
 * nothing could be read at all; a partial failure gives 0 with t->incomplete set.
 */
int proctree_scan(struct proctree *t, const char *proc_root, pid_t root);
/*
 * Every process under proc_root (not only descendants) that the mcpmux `owner` started:
 * its MCPMUX_OWNER is owner, or its MCPMUX_OUTER names owner.  Each is an entry without
 * a parent; the caller's own process excepted.  0, or -1 (errno) when /proc could not be
 * listed.
 */
int proctree_scan_owned(struct proctree *t, const char *proc_root, const char *owner);
/* Entry i's MCPMUX_OUTER value ("" when none). */
const char *proctree_outer(const struct proctree *t, size_t i);
/*
 * Does an MCPMUX_OUTER value name session (NULL: any) of owner (NULL: any)?  At least
 * one of the two is given.
 */
bool proctree_outer_names(const char *outer, const char *session, const char *owner);
/* Is snapshot entry i a live (not zombie) member of the tree m describes? */
bool proctree_is_member(const struct proctree *t, size_t i, const struct proctree_match *m);
/* Live members of m's tree in the snapshot. */
size_t proctree_count(const struct proctree *t, const struct proctree_match *m);
/*
 * Once m's backend is reaped (m->pid 0), a process of the snapshot (zombies included) at
 * the pid that was its group id (m->pgid) means that group is gone: Linux reuses no pid
 * while a process still has it as its process group or session id.  Whatever has that
 * group id then, or later, is in the newcomer's group, not the backend's: m->pgid is set
 * to 0, and the caller keeps it so.  One pass over the snapshot, once per walk.
 */
void proctree_check_group(const struct proctree *t, struct proctree_match *m);
/*
 * What keeps m's tree from being empty: its members, zombies and unknown ones included,
 * plus one for a snapshot that is incomplete, or that holds an unknown child of the
 * walk's root that no match could claim (when m claims no orphans) and that did not start
 * before m's backend (m->born).  0 means gone.
 */
size_t proctree_left(const struct proctree *t, const struct proctree_match *m);
/*
 * Whether entry i is one of those that proctree_left() counts without being a member:
 * an unknown child of the walk's root that may be of m's tree.
 */
bool proctree_unattributed(const struct proctree *t, size_t i, const struct proctree_match *m);
/*
 * Send sig to every live member of m's tree, then SIGCONT when sig is SIGTERM (a stopped
 * process does not act on SIGTERM).  Each pid is checked against its start time through
 * a pidfd first, so a pid reused since the snapshot is never signalled.  Returns the
 * number of processes signalled; *n_failed (may be NULL) gets the number that could not
 * be signalled or verified.
 */
size_t proctree_signal(const struct proctree *t, const struct proctree_match *m,
		       const char *proc_root, int sig, size_t *n_failed);
/* Signal entry i if it is still the process the snapshot saw. */
enum proctree_sig proctree_signal_one(const struct proctree *t, size_t i, const char *proc_root,
				      int sig);
/*
 * proctree_signal_one(), and *pidfd gets the pidfd of the process once it is checked to be
 * entry i (to wait for its exit on; the caller closes it), even when the signal could not
 * be sent: -1 when it is gone, or there is no pidfd to be had.
 */
enum proctree_sig proctree_signal_pidfd(const struct proctree *t, size_t i, const char *proc_root,
					int sig, int *pidfd);
/* The start time of pid (clock ticks since boot).  0, or -1 with errno. */
int proctree_start_time(const char *proc_root, pid_t pid, unsigned long long *start);
/* Now, in clock ticks since boot as /proc gives start times, rounded down (0: unknown). */
unsigned long long proctree_now_ticks(void);
/*
 * Each entry ("KEY=VALUE", not NUL-terminated) of /proc/PID/environ, read from fd, given
 * to fn until it returns true; an entry longer than 8 KiB is skipped (none of mcpmux's
 * is).  Closes fd.  0, or -1 (errno) when a read failed.
 */
int proctree_environ_each(int fd, bool (*fn)(const char *e, size_t len, void *ctx), void *ctx);
/*
 * How many processes under proc_root carry MCPMUX_SESSION=cookie, read as a walk reads it
 * (the first such entry of the whole environment, however long).  -1 (errno) when
 * proc_root cannot be listed.
 */
int proctree_count_cookie(const char *proc_root, const char *cookie);
/*
 * Is process pid on its way out: a zombie, or past the start of exit (PF_EXITING, set
 * before the kernel closes its files), and no thread of it runs on?  False when it cannot
 * be read.
 */
bool proctree_exiting(const char *proc_root, pid_t pid);
/*
 * For a process whose main thread has exited (its stat says Z, or in exit) while another
 * thread of it runs on: that thread's id, and its state in *state; 0 when there is none.
 * Such a process runs (kill() reaches it, and its other threads), though its stat, cmdline
 * and environ read as a zombie's: its thread's, /proc/PID/task/TID/..., say what it is.
 */
pid_t proctree_live_thread(const char *proc_root, pid_t pid, char *state);

#endif
