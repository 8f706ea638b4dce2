/*
 * procscan: every mcpmux instance on the machine, its sessions, and the orphans of
 * instances that are gone, found from /proc alone, for `mcpmux ps` and `mcpmux sweep`.
 * And the verified signals and the wait of sweep's teardown ladder.
 *
 * procscan_read() reads every /proc/PID: stat (parent, group, state, start time) and
 * status (real uid, VmRSS) of all processes, and the command line, the exe link and the
 * environment (MCPMUX_SESSION, MCPMUX_OWNER) of those of the user asked for (all users
 * for root).  Then it sorts them:
 *
 * - An instance is a live process that looks like mcpmux (basename of its exe link,
 *   its comm, or the basename of argv[0] is "mcpmux") running in wrap or serve mode
 *   (not ps, ctl, log, ...), or any live process named by a carrier's MCPMUX_OWNER
 *   with a matching start time (a renamed binary, mcpmux under valgrind).  The scanning
 *   process itself never is one.
 * - A carrier is a live process with MCPMUX_SESSION.  With MCPMUX_OWNER=PID:START, it
 *   belongs to that instance while a process PID with that start time lives; once PID
 *   is gone (no such process, another start time, a zombie) it is an orphan.  When the
 *   owner cannot be read (an error other than ENOENT/ESRCH), or was brought into this
 *   pid namespace from outside by the carrier's topmost ancestor here (which carries the
 *   same MCPMUX_OWNER and has its parent outside), its state is unknown: neither
 *   attached nor orphaned.  Without MCPMUX_OWNER (older mcpmux), it belongs to
 *   its nearest ancestor that is an instance, and is an orphan when it has none.  With
 *   an MCPMUX_OWNER that is not PID:START (too long, or of another format: a newer
 *   mcpmux's?), it belongs to that ancestor too, and is unknown when it has none; PID:0,
 *   which an older mcpmux that could not read its own start time gave, counts as none,
 *   but that with no instance above it, it belongs to the live process PID when that is
 *   an instance that started no later than the carrier, and is unknown when that is
 *   another process that did (an mcpmux not known by its looks?).
 * - Carriers are grouped: those of one instance by session ID; orphans by owner,
 *   session and uid.  A group's tree is its carriers and all their descendants.
 *
 * Everything a group refers to is an index into procscan.v, valid until the next
 * procscan_read() or procscan_release().  The /proc root is a parameter so that unit
 * tests can run on a fake tree.  No libev; the calls block on /proc reads only.
 */
#ifndef MCPMUX_PROCSCAN_H
#define MCPMUX_PROCSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "mcpmux/proctree.h"

#define PROCSCAN_OWNER_ENV "MCPMUX_OWNER"
#define PROCSCAN_OWNER_MAX 64
#define PROCSCAN_ARGV_MAX  (128 * 1024) /* bytes of a command line kept (a longer one: argv_cut) */
#define PROCSCAN_BOOT_MAX  64

enum procscan_mode {
	PROCSCAN_NONE,	/* not an instance */
	PROCSCAN_WRAP,	/* mcpmux [OPTIONS] -- COMMAND */
	PROCSCAN_SERVE, /* mcpmux serve ... */
	PROCSCAN_OTHER, /* named by a carrier's MCPMUX_OWNER; its command line does not say */
};

enum procscan_owner {
	PROCSCAN_LIVE,	  /* the session of a live instance */
	PROCSCAN_GONE,	  /* an orphan */
	PROCSCAN_UNKNOWN, /* the owner could not be read */
};

struct procscan_proc {
	pid_t pid;
	pid_t ppid;
	pid_t pgid;
	uid_t uid;    /* real uid */
	char state;   /* R, S, D, T, Z, ... */
	pid_t thread; /* its main thread exited: a live thread's id (state is its), else 0 */
	unsigned long long start;   /* clock ticks since boot */
	unsigned long long rss_kib; /* VmRSS */
	char comm[17];
	int read_errno;	 /* stat or status failed (not ENOENT/ESRCH): nothing is sure */
	bool is_read;	 /* argv, exe and environment were read (the user asked for) */
	char *argv;	 /* command line, NUL-separated words; NULL when none */
	size_t argv_len; /* bytes, each word's NUL included */
	bool argv_cut;	 /* /proc gave more than PROCSCAN_ARGV_MAX bytes: argv is their start */
	char exe[64];	 /* basename of the exe link, "" unreadable */
	char session[PROCTREE_COOKIE_MAX + 1]; /* MCPMUX_SESSION, "" none */
	char owner[PROCSCAN_OWNER_MAX + 1];    /* MCPMUX_OWNER, "" none (or too long) */
	bool env_unread;   /* its environment could not be read (not vanished): unknown */
	bool has_owner;	   /* MCPMUX_OWNER is there, whether owner could keep it or not */
	bool owner_cut;	   /* MCPMUX_OWNER is there, too long for owner to keep ("") */
	pid_t ns_pid;	   /* its pid in its own pid namespace (NSpid's last), as it sees itself */
	unsigned ns_depth; /* pid namespaces it is below this /proc's (NSpid's fields - 1) */
	char pidns[32];	   /* a carrier in a pid namespace below: its ns/pid link; "" else */
	bool other_time;   /* a carrier in a time namespace not the scanner's */
	/* Sorted out by procscan_read(): */
	size_t parent;		 /* index of the parent, SIZE_MAX when not in the scan */
	enum procscan_mode mode; /* instances */
	size_t cmd_at;		 /* instances: word index of the server command, SIZE_MAX */
	const char *listen;	 /* serve: --listen's value (into argv), NULL */
	size_t group;		 /* carriers: their group; SIZE_MAX otherwise */
	bool is_self_line;	 /* the scanning process or one of its ancestors */
};

struct procscan_group {
	enum procscan_owner owner_state;
	int owner_errno; /* PROCSCAN_UNKNOWN: why the owner could not be read */
	bool other_time; /* PROCSCAN_UNKNOWN: its carriers' start times are not comparable */
	bool outside;	 /* PROCSCAN_UNKNOWN: its owner is outside the scanned pid namespace */
	bool bad_owner;	 /* PROCSCAN_UNKNOWN: its MCPMUX_OWNER is not PID:START */
	bool zero_owner; /* PROCSCAN_UNKNOWN: PID:0, PID a live process not known as mcpmux */
	size_t instance; /* PROCSCAN_LIVE: index of the instance, else SIZE_MAX */
	char session[PROCTREE_COOKIE_MAX + 1];
	char owner[PROCSCAN_OWNER_MAX + 1]; /* "" for carriers of older mcpmux */
	bool owner_cut;			    /* its MCPMUX_OWNER was too long to be kept */
	uid_t uid;
	size_t top;	 /* the server (see has_server), else the oldest carrier */
	bool has_server; /* top is a child of the instance leading its process group */
	size_t n_carriers;
	size_t n_tree;		    /* carriers and their descendants */
	unsigned long long rss_kib; /* of the whole tree */
};

struct procscan {
	struct procscan_proc *v; /* sorted by pid */
	size_t n, cap;
	struct procscan_group *g;
	size_t n_groups, cap_groups;
	double uptime_s;     /* /proc/uptime when read */
	char timens[32];     /* the scanner's time namespace (its ns/time link), "" unknown */
	long long boot_off;  /* its boottime offset, clock ticks (what its start times add) */
	bool boot_off_known; /* ... could be read */
	bool boot_off_part;  /* ... is not a whole number of ticks */
	long hz;	     /* clock ticks per second */
};

void procscan_init(struct procscan *s);
void procscan_release(struct procscan *s);

/*
 * Read and sort out every process under proc_root.  uid: the user asked for; all: every
 * user (root); self: the scanning process (never an instance; it and its ancestors are
 * marked is_self_line).  0, or -1 with errno when proc_root itself cannot be read or
 * memory runs out; a process that vanishes during the scan is simply left out.
 */
int procscan_read(struct procscan *s, const char *proc_root, uid_t uid, bool all, pid_t self);

/* Index of pid in the scan, SIZE_MAX when absent. */
size_t procscan_find(const struct procscan *s, pid_t pid);
/* An NSpid line's fields after "NSpid:" ("\t4242\t1"): p->ns_pid (the last: its own pid)
 * and p->ns_depth (how many below this /proc's); both left when there are none. */
void procscan_parse_nspid(const char *f, struct procscan_proc *p);
/* Is v[i] a carrier of group g or a descendant of one? */
bool procscan_in_tree(const struct procscan *s, size_t g, size_t i);
/*
 * Is p, of a scan, still the process of its pid (the same start time, a zombie or not)?
 * 1, 0 (gone, or another), -1 with errno when that cannot be read.
 */
int procscan_still(const char *proc_root, const struct procscan_proc *p);
/* Seconds since v[i] started (from /proc/uptime and its start time). */
double procscan_age(const struct procscan *s, size_t i);
/*
 * The words of v[i]'s command line, at most cap of them, into words (pointers into
 * v[i].argv).  Returns how many there are (possibly more than cap).
 */
size_t procscan_words(const struct procscan_proc *p, const char **words, size_t cap);

/*
 * The pid namespace of pid: the inode number of its ns/pid link ("4026531836"), into
 * out.  0, or -1 when it cannot be read.
 */
#define PROCSCAN_PIDNS_MAX 24
int procscan_pidns(const char *proc_root, pid_t pid, char out[PROCSCAN_PIDNS_MAX]);
/*
 * Is the owner "PID:START" of a container labelled with the pid namespace `pidns` (not
 * the scanner's) alive?  The live process that is PID in that namespace, with that
 * start: LIVE; none, while every process can be seen from here (this /proc is the
 * initial pid namespace's): GONE; else UNKNOWN, *err 0 when that namespace cannot be
 * seen from here.
 */
enum procscan_owner procscan_owner_in_pidns(const struct procscan *s, const char *proc_root,
					    const char *owner, const char *pidns, int *err);

/* MCPMUX_OWNER text "PID:START" -> its parts.  0, or -1 when malformed. */
int procscan_parse_owner(const char *text, pid_t *pid, unsigned long long *start);
/*
 * Is the owner "PID:START" alive?  Uses the scan, and /proc when PID is not in it.
 * PROCSCAN_UNKNOWN (with *err) when /proc fails with an error other than ENOENT or
 * ESRCH, or the text is malformed (*err EINVAL).
 */
enum procscan_owner procscan_owner_state(const struct procscan *s, const char *proc_root,
					 const char *owner, int *err);
/*
 * procscan_owner_state(), and *unsure when PID is a live process whose start time could
 * not be compared (read, or in a time namespace of its own): GONE is then not sure.
 */
enum procscan_owner procscan_owner_judge(const struct procscan *s, const char *proc_root,
					 const char *owner, int *err, bool *unsure);

/*
 * An orphan group with this owner, session and uid (another scan's group), or SIZE_MAX.
 */
size_t procscan_find_orphans(const struct procscan *s, const char *owner, const char *session,
			     uid_t uid);

/* "90", "90s", "10m", "1.5h", "2d" -> seconds (> 0).  0, or -1 when malformed. */
int procscan_parse_duration(const char *text, double *seconds);

/* Why a PROCSCAN_UNKNOWN group's owner could not be judged, in words. */
const char *procscan_unknown_why(const struct procscan_group *g);
/* The boot ID (/proc/sys/kernel/random/boot_id) into out.  0, or -1 with errno. */
int procscan_boot_id(const char *proc_root, char out[PROCSCAN_BOOT_MAX]);

/*
 * One process of sweep's ladder.  procscan_signal() opens a pidfd on first use and,
 * before every signal, checks through /proc that the process is still the one scanned
 * (same start time, not a zombie): a pid reused since the scan is never signalled.
 */
struct procscan_target {
	pid_t pid;
	unsigned long long start;
	int pidfd; /* -1 before the first signal, without pidfd support, or in the upper
		      half of the descriptor table (opened for each signal, then closed) */
	bool no_pidfd;
	bool is_gone;
	char state; /* last state seen in /proc */
};

void procscan_target_init(struct procscan_target *t, pid_t pid, unsigned long long start);
void procscan_target_release(struct procscan_target *t);
/*
 * Send sig (and SIGCONT after SIGTERM).  1: signalled; 0: gone (marked is_gone);
 * -1: could not (errno: EPERM, or the /proc error that left its identity unknown).
 */
int procscan_signal(const char *proc_root, struct procscan_target *t, int sig);
/*
 * Wait until every target is gone or deadline_ms (CLOCK_MONOTONIC, milliseconds) has
 * passed: on the pidfds, or by reading /proc every 10 ms without them.  Marks the gone
 * ones and returns how many are left.
 */
size_t procscan_wait(const char *proc_root, struct procscan_target *t, size_t n,
		     long long deadline_ms);
/* CLOCK_MONOTONIC in milliseconds. */
long long procscan_now_ms(void);

#endif
