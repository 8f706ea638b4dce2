/*
 * backend: one MCP server process and its whole process tree, from spawn to the end.
 *
 * A backend knows nothing of JSON or of its front end.  It writes lines to the server's
 * stdin, frames the server's stdout into lines for its owner (through a framer_sink),
 * and runs the teardown as a state machine on libev timers:
 *
 *   RUNNING --backend_end()--> CLOSING (stdin closed once flushed)
 *   RUNNING --stdin queue stuck for stall-timeout--> CLOSING (queue dropped, stdin closed)
 *   CLOSING --eof-grace--> TERMINATING (SIGTERM + SIGCONT to the tree)
 *   TERMINATING --term-grace--> KILLING (SIGKILL to the tree, repeated until it is empty)
 *   RUNNING --server exits or closes stdout--> TERMINATING at once for what is left
 *   any --tree empty, child reaped, stdout at EOF--> DONE
 *   KILLING --kill-deadline, tree not empty--> DONE, escalation "abandoned" (the pids
 *            that would not die are listed: another uid, D state, EPERM)
 *
 * A server command that runs a container (`docker run`, `podman run`: container.h) gets
 * mcpmux's labels and a --cidfile, and its teardown reaches the container through the
 * engine: `kill --signal TERM` on entering TERMINATING, `kill --signal KILL` on entering
 * KILLING, then `rm -f` once the run is over if the container is still there; DONE
 * waits until the engine says the container is gone.  The engine's commands run as
 * helper processes of mcpmux, one at a time, without the cookies.
 *
 * "The tree" is what proctree.h defines: the server, its process group, everything that
 * carries its MCPMUX_SESSION cookie, and all their descendants (mcpmux is a subreaper, so
 * daemonised descendants stay findable).  Tree scans of all backends that are ending are
 * batched: one /proc walk per loop turn.  docs/lifecycle.md describes the table.
 *
 * Ownership: the owner creates a backend with backend_spawn() and frees it with
 * backend_free(), which is allowed only from (or after) its on_done hook; on_done is
 * called from the loop, never from inside a backend_*() call.
 */
#ifndef MCPMUX_BACKEND_H
#define MCPMUX_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "mcpmux/cgroup.h"
#include "mcpmux/errout.h"
#include "mcpmux/framer.h"
#include "mcpmux/table.h"
#include "mcpmux/wbuf.h"

enum backend_state {
	BACKEND_RUNNING,
	BACKEND_CLOSING,
	BACKEND_TERMINATING,
	BACKEND_KILLING,
	BACKEND_DONE,
};

enum backend_escalation {
	BACKEND_ESC_NONE, /* the tree ended without mcpmux closing or signalling anything */
	BACKEND_ESC_EOF,
	BACKEND_ESC_TERM,
	BACKEND_ESC_KILL,
	BACKEND_ESC_ABANDONED, /* processes that would not die were left behind */
};

#define BACKEND_LEFT_MAX    64 /* pids of an abandoned tree that are listed */
#define BACKEND_LEFT_INLINE 4  /* ...in the backend itself; more are allocated */

struct backend;
struct backend_ctr;

struct backend_hooks {
	/* The server's process exited (b->wstatus), or could not be executed (b->exec_errno). */
	void (*on_exit)(struct backend *b, void *owner);
	/* Teardown complete: tree gone, pipes closed.  The owner may free b now. */
	void (*on_done)(struct backend *b, void *owner);
	/*
	 * The server's stdin queue reached its mark (full), or went below it again: the
	 * owner holds the client's input while it is full.
	 */
	void (*on_input_full)(struct backend *b, void *owner, bool full);
	/* The server accepted no input for stall-timeout while input waited: it is ending. */
	void (*on_stall)(struct backend *b, void *owner);
	/* Bytes the server wrote on stderr (only with capture_stderr), already passed on. */
	void (*on_stderr)(struct backend *b, void *owner, const char *data, size_t len);
};

struct backend_config {
	char *const *argv;	    /* the command; argv[0] is looked up in PATH */
	const char *not_found_hint; /* after what is said of an argv[0] not found (NULL: none) */
	const char *cookie;	    /* MCPMUX_SESSION for the tree */
	double eof_grace;	    /* seconds */
	double term_grace;	    /* seconds */
	size_t max_message;	    /* framer bound for the server's stdout */
	size_t max_queue;	    /* stdin queue mark */
	double stall_timeout; /* seconds without progress on stdin before the end (0: never) */
	double kill_deadline; /* seconds of KILLING before an unkillable tree is abandoned */
	bool claim_orphans;   /* cookie-less orphans of mcpmux count as this tree's */
	/*
	 * Read the server's stderr through a pipe (copying it to mcpmux's stderr and to
	 * hooks->on_stderr) instead of letting it inherit mcpmux's: for the traffic log.
	 */
	bool capture_stderr;
};

struct backend {
	struct ev_loop *loop;
	enum backend_state state;
	enum backend_escalation escalation;
	pid_t pid;
	pid_t pgid;	/* its process group for the teardown: pid; 0 once another holds pid */
	int wstatus;	/* wait status once reaped, -1 before */
	int exec_errno; /* errno of a failed exec, 0 otherwise */
	char *exec_why; /* what is said of it: "cannot run 'X': ..." (NULL: no memory) */
	bool exec_prep; /* exec_errno is of the child's set-up, before the exec was tried */
	bool reaped;
	bool tree_empty; /* as of the last scan after the child was reaped */
	bool out_eof;
	bool claim_orphans;
	bool exited_by_itself; /* the teardown began with the server's own exit */
	bool grace_waited;     /* a grace found it exited, its end not taken in: waited once */
	bool reap_scanned;     /* reaped, and its tree scanned since */
	int pending_signal;    /* for the rest of the tree, at the next batched scan */
	bool stalled;	       /* ended because it read nothing for stall-timeout */
	bool in_full;	       /* the stdin queue is at its mark (as last told the owner) */
	double eof_grace;
	double term_grace;
	double stall_timeout;
	double kill_deadline;
	double t_start;	 /* spawn time (sys_mono()) */
	double t_reaped; /* when the child was reaped */
	double t_end;	 /* teardown start */
	double t_done;
	double t_kill;	   /* KILLING since */
	double t_sigkill;  /* the tree's first SIGKILL not spared for its container (0: none yet) */
	bool kill_spared;  /* a SIGKILL of KILLING was held back while the engine stopped it */
	double in_since;   /* the stall watch's current stretch began (progress, start, resume) */
	double in_idle;	   /* without progress before in_since: earlier stretches, pauses apart */
	size_t n_left;	   /* abandoned: pids that would not die */
	bool left_partial; /* abandoned: more than left[] may be left (not all listed or seen) */
	pid_t *left;	   /* n_left of them: left_in, or allocated; NULL before */
	pid_t left_in[BACKEND_LEFT_INLINE];
	/* Its spawn, in clock ticks since boot as /proc gives start times (0: unknown). */
	unsigned long long born;

	int in_fd, out_fd, err_fd;
	ev_io in_w, out_w, err_w;
	ev_io in_gone_w; /* the server closed its stdin (see backend_on_stdin_gone()) */
	bool in_gone;
	ev_timer grace_w;
	ev_timer stall_w;
	struct errout_waiter err_wait; /* mcpmux's stderr is full: reading stderr waits */
	bool out_paused;
	bool out_drained; /* its last output was read past the pause (drain_stdout()) */
	bool pipes_big;	  /* enlarged while big messages flow */
	bool dirty;	  /* lines for stdin not yet written (backend_on_turn) */
	struct backend *next_dirty;
	const char *span; /* lines for stdin after the queue, still in the read chunk */
	size_t span_len;
	struct wbuf inq;
	struct framer outf;

	const struct framer_sink *sink;
	const struct backend_hooks *hooks;
	void *owner;
	char cookie[129];
	char *cgroup;		 /* its leaf cgroup (cgroup.h), allocated; NULL without one */
	struct backend_ctr *ctr; /* its container, NULL when it runs none */

	/* module bookkeeping */
	struct backend *next_ending, *prev_ending;
	bool on_ending_list;
	struct backend *next_done;
	bool done_queued;
	UT_hash_handle hh; /* the table of live backends by pid */
	/* Not in that table (no memory for its entry): in a list that is walked instead. */
	bool unhashed;
	struct backend *next_unhashed;
};

/*
 * Set up the module for a loop: the one child watcher (pid 0) that reaps everything,
 * and the per-turn scan.  Call once, with the default loop, before any spawn.
 */
void backend_module_init(struct ev_loop *loop);
void backend_module_release(void);

/*
 * Start a server.  Returns the backend in RUNNING state, or NULL with errno set when
 * pipes or clone failed (EMFILE, EAGAIN, ENOMEM).  An exec failure is in exec_errno at
 * once; the child exits 127 or 126 and is reaped (on_exit) like any server.
 */
struct backend *backend_spawn(struct ev_loop *loop, const struct backend_config *cfg,
			      const struct framer_sink *sink, const struct backend_hooks *hooks,
			      void *owner);
/*
 * Send one line (a "\n" is added) to the server's stdin.  0, or -1 with errno EPIPE
 * (stdin is closed: the server is ending or gone) or ENOMEM.
 */
int backend_send(struct backend *b, const char *line, size_t len);
bool backend_stdin_full(const struct backend *b);
/* Stop or resume reading the server's stdout (backpressure from the client side). */
void backend_pause(struct backend *b, bool paused);
/*
 * Begin the teardown (no-op once begun).  grace_ms >= 0 replaces both grace periods
 * when it is shorter.
 */
void backend_end(struct backend *b, double grace_ms);
bool backend_is_ending(const struct backend *b);
/* An abandoned run's container not seen gone, as messages name it; NULL when none. */
const char *backend_container_left(const struct backend *b);
/* Milliseconds the teardown took (DONE) or has taken so far. */
double backend_end_ms(const struct backend *b);
const char *backend_escalation_name(enum backend_escalation e);
/* Free a backend in DONE state (or NULL). */
void backend_free(struct backend *b);
/* Exit status as a shell reports it: code, or 128 + signal; 127/126 for exec failure. */
int backend_exit_code(const struct backend *b);
/*
 * A failed exec said as "cannot run 'X': why (advice)": the interpreter of a file that
 * exists (its "#!" line's, or an ELF file's loader) named when it is what is missing.
 * buf holds a plainer text when there was no memory for it.
 */
const char *backend_exec_text(const struct backend *b, char *buf, size_t len);
/*
 * At exit, once every backend is done: SIGKILL whatever descendant of mcpmux is still
 * alive (an orphan no tree claimed), through the same verified path as every signal, and
 * wait, for kill_deadline seconds (as long as a run's KILLING, at least its 50 ms
 * re-scan) at most, for each to be gone: reaped, where it is mcpmux's
 * child, so that nothing of it is left in /proc when mcpmux's exit is reported.  Walks
 * again (100 times at most) until a walk finds nothing: a process that forked
 * while a walk read the tree is found by the next.  What is still there at the deadline
 * is said on stderr.  Returns the number of processes killed.
 */
size_t backend_kill_leftovers(double kill_deadline);
/*
 * sig to the process group of every server not yet reaped (its pid names the group: no
 * other process can take that id while it lives): job control passed on to servers, which
 * run in groups of their own that a terminal's signals do not reach.
 */
void backend_signal_groups(int sig);
/*
 * "PID:STARTTIME" of this mcpmux, as MCPMUX_OWNER gives it to every server; "" when its
 * start time could not be read (its servers then carry no MCPMUX_OWNER).
 */
const char *backend_owner(void);
/* The instance cgroup (cgroup.h), "" when there is none. */
const char *backend_cgroup(void);

#endif
