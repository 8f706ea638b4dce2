/*
 * backend: spawn a server, relay its pipes, and tear down its whole process tree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utlist.h>
#include <uuid/uuid.h>

#include "mcpmux/backend.h"
#include "mcpmux/clone3.h"
#include "mcpmux/container.h"
#include "mcpmux/diag.h"
#include "mcpmux/execwhy.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/keeper.h"
#include "mcpmux/procscan.h"
#include "mcpmux/proctree.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"

#define READ_BUDGET   ((size_t)256 << 10) /* bytes per callback: fairness between sessions */
#define PIPE_SMALL    (64 << 10)	  /* Linux's default pipe size */
#define PIPE_BIG      (1 << 20)		  /* while long messages flow */
#define PIPE_LONG     (8 << 10)		  /* a line this long enlarges the pipes */
#define PIPE_BIG_MAX  8			  /* servers with enlarged pipes at once */
#define KILL_RESCAN_S 0.05		  /* KILLING: re-scan and re-kill interval */
#define LEAF_RESCAN_S 0.01		  /* a reaped tree whose leaf still counts a process, */
#define LEAF_SETTLE_S 0.5		  /* ...for this long after the reap */
#define PROC_ROOT     "/proc"
#define LEFT_WALKS    100  /* at exit: walks of what is left, at most */
#define LEFT_PIDFDS   64   /* pidfds one of them waits on, at most */
#define LEFT_NAP_S    0.01 /* its wait for those it has none for */

/* clone3() with CLONE_VM, through clone3_vm(): on x86-64. */
#if defined(__x86_64__)
#define SPAWN_CLONE_VM 1
#else
#define SPAWN_CLONE_VM 0
#endif

/* Module state: process-wide by nature (SIGCHLD, /proc). */
static struct ev_loop *mod_loop;
static ev_child child_w;	    /* pid 0: every child that libev reaps */
static ev_timer trim_w;		    /* hands memory back after big messages, once idle */
static ev_check clock_w;	    /* sys_turn_mono, at each turn's wake-up */
static ev_prepare turn_w;	    /* per loop turn: batched scan, deferred on_done */
static ev_timer leaf_w;		    /* scans again for leaves that were still populated */
static struct backend *by_pid;	    /* uthash: backends whose child is not yet reaped */
static struct backend *unhashed;    /* the same, that by_pid had no memory for */
static struct backend *ending_head; /* backends in CLOSING, TERMINATING or KILLING */
static struct backend *done_head;   /* DONE, on_done not yet called */
static struct backend *dirty_head;  /* lines queued for stdin this turn, not yet written */
static bool scan_wanted;
static struct proctree snapshot;
static char owner_env[sizeof(PROCTREE_OWNER_ENV) + 48]; /* MCPMUX_OWNER=PID:START */
/* MCPMUX_OUTER=... for servers, when this mcpmux is in a session's tree ("" otherwise) */
static char outer_env[sizeof(PROCTREE_OUTER_ENV) + PROCTREE_OUTER_MAX + 1];
static char inst_cgroup[CGROUP_PATH_MAX]; /* "" when there is none */
static unsigned long long leaf_seq;
static char boot_id[PROCSCAN_BOOT_MAX];	  /* the mcpmux.boot label, "" unknown */
static char pidns_id[PROCSCAN_PIDNS_MAX]; /* the mcpmux.pidns label, "" unknown */
static struct backend_ctr *ctr_head;	  /* backends that run a container */
static unsigned long long ctr_seq;

#define CTR_RETRY_S    0.2	     /* between two looks at a container that is not gone yet */
#define CTR_HELPER_S   30.0	     /* an engine command that takes longer is killed */
#define CTR_DRAIN_TURN (64 * 1024)   /* an engine command's output read in one loop turn */
#define CTR_DRAIN_END  (1024 * 1024) /* and once it has exited */

enum ctr_helper {
	CTR_NONE,
	CTR_KILL,
	CTR_RM,
	CTR_INSPECT,
	CTR_WHOSE, /* its labels: is the container of that name this run's? */
	CTR_LIST,  /* the containers of this run's labels (its id file never got the id) */
};

/* A backend's container: the engine's view of the server, and the ladder's steps. */
struct backend_ctr {
	struct backend *b;
	struct backend_ctr *next;
	struct container_run run;
	char *const *argv; /* the command as given (borrowed from the config) */
	char **run_argv;   /* what runs: labels and --cidfile added (container_run_argv) */
	char cidfile[PATH_MAX];
	bool own_cidfile;
	char run_label[37]; /* its mcpmux.run: a UUID of its own */
	bool id_checked;    /* by a name or a user's id file: its labels say it is this run's */
	char cid[CONTAINER_ID_MAX + 1];
	bool sent_term, sent_kill, sent_rm;
	bool kill_done; /* the engine's kill --signal KILL (or rm -f) has run */
	bool gone;	/* the engine says it does not exist (or it was never created) */
	/*
	 * The engine's command was killed while the id file was empty: the ids the engine
	 * listed for the run's labels (ids_n bytes, each NUL-terminated), the next one
	 * first, each checked by its labels (by_label) and ended in turn.
	 */
	bool listed;
	bool by_label;
	bool keeper_lists; /* the listing failed: the keeper is not told it is gone */
	char *ids;
	size_t ids_n;
	pid_t helper;
	enum ctr_helper what;
	int err_fd;	/* the helper's stderr */
	ev_io err_w;	/* read while it runs: a full pipe would block it */
	char out[4096]; /* what it wrote: its start; for CTR_WHOSE and CTR_LIST, from the marked
			   line */
	size_t out_n;
	bool out_any;
	bool out_cut;		    /* some of it was dropped: more than out holds */
	struct container_tail tail; /* its end, whatever was kept: the line that says why */
	double helper_since;
	double helper_s; /* and its time, past which it is killed */
	ev_timer retry_w;
};

static void ctr_step(struct backend *b);
static bool ctr_spares(const struct backend *b);
static double ctr_spare_s(const struct backend *b);
static bool ctr_reaped(pid_t pid, int st);
static void backend_on_ctr_retry(struct ev_loop *loop, ev_timer *w, int revents);
static void backend_on_ctr_out(struct ev_loop *loop, ev_io *w, int revents);

static void backend_on_child(struct ev_loop *loop, ev_child *w, int revents);
static void backend_on_turn(struct ev_loop *loop, ev_prepare *w, int revents);
static void backend_on_trim(struct ev_loop *loop, ev_timer *w, int revents);
static void backend_on_stdout(struct ev_loop *loop, ev_io *w, int revents);
static void backend_on_stdin(struct ev_loop *loop, ev_io *w, int revents);
static void backend_on_stdin_gone(struct ev_loop *loop, ev_io *w, int revents);
static void backend_on_stderr(struct ev_loop *loop, ev_io *w, int revents);
static void backend_on_grace(struct ev_loop *loop, ev_timer *w, int revents);
static void backend_on_stall(struct ev_loop *loop, ev_timer *w, int revents);
static void backend_on_err_room(struct errout_waiter *w);
static void by_pid_add(struct backend *b);
static void backend_step(struct backend *b);
static void ctr_free(struct backend_ctr *c);
static void ctr_stop(struct backend_ctr *c);
static int ctr_prepare(struct backend *b, char *const *argv);
static void dirty_flush(void);
static void input_broken(struct backend *b);
static void spawn_stack_free(void);
static void fd_slots_init(void);
static void fd_slots_release(void);

static void
backend_on_leaf(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	scan_wanted = true; /* the scan runs in this turn's prepare */
}

static ev_io keeper_w;		/* EOF once the keeper is gone */
static ev_timer keeper_again_w; /* the next try to start another */
static double keeper_tried;	/* when the last try ended (0: none yet) */
static bool keeper_failed;	/* a try failed since the keeper was gone (said once) */

#define KEEPER_AGAIN_S 1.0 /* at most one try to start a keeper a second (after the first) */

/*
 * The keeper is gone while mcpmux runs (killed: it exits only after mcpmux's "done"):
 * another takes its place, or a kill of mcpmux from now on would leave what its servers
 * started.  The first try at once; then one a second at most, until one runs: whatever
 * kills every keeper in a loop does not make mcpmux fork without a pause, and a try that
 * failed (no descriptors, no processes left) is made again.
 */
/* No keeper runs: the next try in a second (a failure is said once, by the caller). */
static void
keeper_retry_later(struct ev_loop *loop)
{
	keeper_failed = true;
	keeper_tried = sys_mono();
	ev_timer_set(&keeper_again_w, KEEPER_AGAIN_S, 0.);
	ev_timer_start(loop, &keeper_again_w);
	ev_unref(loop);
}

static void
keeper_try(struct ev_loop *loop)
{
	double wait = keeper_tried > 0 ? keeper_tried + KEEPER_AGAIN_S - sys_mono() : 0;
	pid_t old, now;

	if (wait > 0) {
		ev_timer_set(&keeper_again_w, wait, 0.);
		ev_timer_start(loop, &keeper_again_w);
		ev_unref(loop);
		return;
	}
	old = keeper_restart();
	keeper_tried = sys_mono();
	if (old == -1) {
		if (!keeper_failed) {
			diag_warn_errno(
				"the keeper is gone, and no other can be started yet (if "
				"mcpmux is killed, what its servers started may survive it): "
				"tried again every second");
		}
		keeper_retry_later(loop);
		return;
	}
	if (old == 0 && keeper_failed) {
		diag_warn("a keeper runs now%s", keeper_pid_live() > 0 ? "" : " (its pid unknown)");
	} else if ((now = keeper_pid_live()) > 0) {
		diag_warn("the keeper (pid %d) is gone: another (pid %d) takes its place", (int)old,
			  (int)now);
	} else if (!keeper_gone()) {
		diag_warn("the keeper (pid %d) is gone: another takes its place", (int)old);
	} /* else gone already too: the watcher sees it at once, and the next one is said */
	keeper_failed = false;
	ev_io_set(&keeper_w, keeper_ack_fd(), EV_READ);
	ev_io_start(loop, &keeper_w);
	ev_unref(loop);
}

static void
backend_on_keeper(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	ev_ref(loop);
	ev_io_stop(loop, w);
	keeper_try(loop);
}

static void
backend_on_keeper_again(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_ref(loop); /* (a timer that is not repeated is stopped already) */
	keeper_try(loop);
}

static void
backend_on_clock(struct ev_loop *loop, ev_check *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	sys_turn_mono = sys_mono();
}

/* One "SESSION,OWNER" entry is a session ID (no space, no comma) and an owner. */
static bool
outer_entry_ok(const char *session, const char *owner)
{
	return session != NULL && owner != NULL && session[0] != '\0' && owner[0] != '\0' &&
	       strlen(session) <= PROCTREE_COOKIE_MAX && strlen(owner) <= PROCTREE_OWNER_MAX &&
	       strpbrk(session, " ,") == NULL && strpbrk(owner, " ,") == NULL;
}

/*
 * When this mcpmux runs in a session's tree (it has MCPMUX_SESSION and MCPMUX_OWNER), its
 * servers carry that session, and the ones it is nested in, in MCPMUX_OUTER: an outer
 * mcpmux then ends them with its own tree, and its keeper with its own processes, even
 * when this one was killed before it could.  Innermost first; what does not fit in
 * PROCTREE_OUTER_MAX is the outermost, and is left out.
 */
static void
outer_make(void)
{
	const char *session = getenv(PROCTREE_COOKIE_ENV), *owner = getenv(PROCTREE_OWNER_ENV);
	const char *up = getenv(PROCTREE_OUTER_ENV);
	size_t at = (size_t)snprintf(outer_env, sizeof(outer_env), "%s=", PROCTREE_OUTER_ENV);
	size_t first = at;

	if (outer_entry_ok(session, owner)) {
		at += (size_t)snprintf(outer_env + at, sizeof(outer_env) - at, "%s,%s", session,
				       owner);
	}
	while (at > first && up != NULL && *up != '\0') {
		size_t len = strcspn(up, " ");

		if (len > 0 && memchr(up, ',', len) != NULL) {
			if (at + 1 + len > first + PROCTREE_OUTER_MAX) {
				break;
			}
			outer_env[at++] = ' ';
			memcpy(outer_env + at, up, len);
			at += len;
			outer_env[at] = '\0';
		}
		up += len + (up[len] == ' ');
	}
	if (at == first) {
		outer_env[0] = '\0';
	}
}

void
backend_module_init(struct ev_loop *loop)
{
	mod_loop = loop;
	ev_child_init(&child_w, backend_on_child, 0, 0);
	ev_child_start(loop, &child_w);
	ev_unref(loop);
	ev_init(&trim_w, backend_on_trim);
	ev_timer_init(&leaf_w, backend_on_leaf, LEAF_RESCAN_S, 0.);
	trim_w.repeat = .5;	      /* well within the contract's "idle 1 s" */
	sys_chunk_done = dirty_flush; /* a read chunk is done: write what came from it */
	ev_prepare_init(&turn_w, backend_on_turn);
	ev_prepare_start(loop, &turn_w);
	ev_unref(loop);
	/* First of every turn's callbacks: the clock of the turn (sys_now()). */
	ev_check_init(&clock_w, backend_on_clock);
	ev_set_priority(&clock_w, EV_MAXPRI);
	ev_check_start(loop, &clock_w);
	ev_unref(loop);
	sys_turn_mono = sys_mono();
	ev_init(&keeper_again_w, backend_on_keeper_again);
	if (keeper_ack_fd() >= 0) {
		ev_io_init(&keeper_w, backend_on_keeper, keeper_ack_fd(), EV_READ);
		ev_io_start(loop, &keeper_w);
		ev_unref(loop);
	} else if (keeper_tried_start()) {
		/* The first keeper could not be started (main() said so): tried again too. */
		ev_init(&keeper_w, backend_on_keeper);
		keeper_retry_later(loop);
	}
	proctree_init(&snapshot);
	proctree_spare(true);
	if (SPAWN_CLONE_VM) {
		fd_slots_init(); /* the table is shared through clone3_vm() only */
	}

	unsigned long long start = 0;

	/*
	 * Without its start time (no /proc) this mcpmux cannot be named: its servers carry
	 * no MCPMUX_OWNER, rather than one that names no process (ps and sweep would take
	 * them for orphans); they are then known by their place under it.
	 */
	owner_env[0] = '\0';
	if (proctree_start_time(PROC_ROOT, getpid(), &start) == 0 && start > 0) {
		(void)snprintf(owner_env, sizeof(owner_env), "%s=%d:%llu", PROCTREE_OWNER_ENV,
			       (int)getpid(), start);
		snapshot.self_owner = backend_owner();
	} else {
		diag_warn("cannot read this process's start time from /proc: its servers carry "
			  "no MCPMUX_OWNER");
	}
	outer_make();
	if (procscan_boot_id(PROC_ROOT, boot_id) == -1) {
		boot_id[0] = '\0';
	}
	(void)procscan_pidns(PROC_ROOT, getpid(), pidns_id);

	/* A cgroup of our own where one is delegated (MCPMUX_CGROUP=off: never). */
	const char *want = getenv("MCPMUX_CGROUP");

	inst_cgroup[0] = '\0';
	if (want != NULL && strcmp(want, "off") == 0) {
		diag_info("cgroup: off (MCPMUX_CGROUP=off)");
	} else if (cgroup_instance_make(inst_cgroup, sizeof(inst_cgroup), getpid()) == 0) {
		keeper_cgroup(inst_cgroup);
		diag_info("cgroup: %s", inst_cgroup);
	} else {
		inst_cgroup[0] = '\0';
		diag_info("cgroup: none usable here (%s): the process walk alone finds trees",
			  strerror(errno));
	}
}

const char *
backend_owner(void)
{
	return owner_env[0] != '\0' ? owner_env + sizeof(PROCTREE_OWNER_ENV) : "";
}

const char *
backend_cgroup(void)
{
	return inst_cgroup;
}

void
backend_module_release(void)
{
	if (mod_loop != NULL) {
		ev_ref(mod_loop);
		ev_child_stop(mod_loop, &child_w);
		ev_ref(mod_loop);
		ev_prepare_stop(mod_loop, &turn_w);
		ev_ref(mod_loop);
		ev_check_stop(mod_loop, &clock_w);
		sys_turn_mono = 0;
		if (ev_is_active(&trim_w)) {
			ev_ref(mod_loop);
			ev_timer_stop(mod_loop, &trim_w);
		}
		ev_timer_stop(mod_loop, &leaf_w);
		if (ev_is_active(&keeper_w)) {
			ev_ref(mod_loop);
			ev_io_stop(mod_loop, &keeper_w);
		}
		if (ev_is_active(&keeper_again_w)) {
			ev_ref(mod_loop);
			ev_timer_stop(mod_loop, &keeper_again_w);
		}
		mod_loop = NULL;
	}
	proctree_release(&snapshot);
	proctree_spare(false);
	spawn_stack_free();
	fd_slots_release();
	if (inst_cgroup[0] != '\0') {
		(void)cgroup_remove(inst_cgroup);
		inst_cgroup[0] = '\0';
	}
}

/* Backends not done whose tree takes mcpmux's cookie-less orphans (wrap's runs). */
static unsigned n_claimers;

static void
ending_add(struct backend *b)
{
	if (b->on_ending_list) {
		return;
	}
	b->on_ending_list = true;
	DL_PREPEND2(ending_head, b, prev_ending, next_ending);
}

static void
ending_remove(struct backend *b)
{
	if (!b->on_ending_list) {
		return;
	}
	DL_DELETE2(ending_head, b, prev_ending, next_ending);
	b->on_ending_list = false;
}

/* ---- spawning ---- */

/*
 * Spawning is clone(CLONE_VM | CLONE_VFORK), as posix_spawn() does it: no copy of
 * mcpmux's page tables, and mcpmux resumes only once the child has exec'd or failed, so
 * the child reports an exec failure by writing into shared memory (no status pipe).
 * posix_spawn() itself cannot be used: it has no way to set the parent-death signal.
 *
 * The child runs on a stack of its own, mapped with a guard page below it and sized to
 * what exec needs there: glibc's execvpe() puts a copy of argv on the stack when it
 * falls back to running a file without "#!" through /bin/sh (8 bytes an argument), and a
 * path buffer of at most PATH_MAX + NAME_MAX.  An overrun hits the guard page and kills
 * the child alone (it is a process of its own, not a thread), never mcpmux's memory.
 * One stack is kept and grown when needed: spawns never overlap.
 */
struct spawn_args {
	char *const *argv;
	char *const *envp;
	pid_t parent;
	int in_fd, out_fd, err_fd;
	bool close_err; /* no err_fd, and mcpmux's stderr was closed at its start */
	bool restore_nofile;
	struct rlimit nofile;
	sigset_t ignored, mask; /* mcpmux's at its start: sys_signals_record() */
	const char *cg_procs;	/* the leaf's cgroup.procs, NULL without one (or born in it) */
	int err_pipe;		/* the child's mm is a copy (clone3): err goes here too, or -1 */
	int fd_top;		/* the table is shared (CLONE_FILES): the child keeps fds below */
	volatile int err;	/* the child's errno when it could not exec */
	volatile bool prep;	/* err is of its own set-up, before the exec was tried */
	volatile int cg_err;	/* its errno when it could not join its leaf (cg_procs) */
};

#define STACK_BASE ((size_t)64 << 10)

static void *stack_map; /* guard page + stack */
static size_t stack_map_len;
static size_t stack_page;

static void
spawn_stack_free(void)
{
	if (stack_map != NULL) {
		(void)munmap(stack_map, stack_map_len);
		stack_map = NULL;
		stack_map_len = 0;
	}
}

/* The top of a stack for a child running argv; NULL with errno set. */
static char *
spawn_stack(char *const *argv)
{
	size_t argc = 0;

	if (stack_page == 0) {
		long pg = sysconf(_SC_PAGESIZE);

		stack_page = pg > 0 ? (size_t)pg : 4096;
	}
	while (argv[argc] != NULL) {
		argc++;
	}
	size_t need = STACK_BASE + (argc + 3) * sizeof(char *) + PATH_MAX + NAME_MAX;
	size_t len = (need + stack_page - 1) / stack_page * stack_page + stack_page;

	if (len > stack_map_len) {
		spawn_stack_free();
		void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

		if (m == MAP_FAILED) {
			return NULL;
		}
		if (mprotect(m, stack_page, PROT_NONE) == -1) {
			int err = errno;

			(void)munmap(m, len);
			errno = err;
			return NULL;
		}
		stack_map = m;
		stack_map_len = len;
	}
	return (char *)stack_map + stack_map_len;
}

/*
 * The child's descriptor table.  A child with a copy of mcpmux's table (what fork() and
 * posix_spawn() give) holds a reference to every pipe of every session until exec closes
 * them all again: the thousandth server's start paid for two thousand closes.  So the
 * child shares mcpmux's table (CLONE_FILES; mcpmux waits for its exec, CLONE_VFORK), and
 * its first act is close_range(fd_top, ~0U, CLOSE_RANGE_UNSHARE): a table of its own that
 * holds the descriptors below fd_top alone.  Those are the ones mcpmux inherited (they go
 * on to the server, as in a direct run), the few it opened before its first server, and
 * three slots, where mcpmux puts the server's pipe ends for the spawn and /dev/null
 * back after it.  fd_top is 0 where this cannot be done (not x86-64, no close_range(),
 * no /proc): the child then gets a copy of the whole table, as before.
 */
static int fd_slot[3] = { -1, -1, -1 };
static int fd_null = -1; /* what a slot holds between two spawns */
static int fd_top;

static void fd_slots_clear(void);

static void
fd_slots_release(void)
{
	for (size_t i = 0; i < 3; i++) {
		sys_close(&fd_slot[i]);
	}
	sys_close(&fd_null);
	fd_top = 0;
}

/* The slots, and fd_top above every descriptor open now (inherited ones included). */
static void
fd_slots_init(void)
{
	DIR *d = NULL;
	long top = -1;
	const char *why;

	fd_top = 0;
	why = "close_range()"; /* before Linux 5.9, or refused */
	if (close_range(~0U, ~0U, CLOSE_RANGE_UNSHARE) == -1) {
		goto fail;
	}
	why = "/dev/null";
	fd_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (size_t i = 0; i < 3 && fd_null >= 0; i++) {
		fd_slot[i] = fcntl(fd_null, F_DUPFD_CLOEXEC, 3);
		if (fd_slot[i] == -1) {
			goto fail;
		}
	}
	why = "/proc/self/fd";
	d = fd_null >= 0 ? opendir("/proc/self/fd") : NULL;
	if (d == NULL) {
		goto fail;
	}
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (e->d_name[0] != '.' && *end == '\0' && fd != dirfd(d) && fd > top) {
			top = fd;
		}
	}
	(void)closedir(d);
	if (top < fd_slot[2] || top >= INT_MAX) {
		errno = ERANGE;
		goto fail;
	}
	fd_top = (int)top + 1;
	diag_info("spawn: servers share mcpmux's descriptor table until they unshare it, "
		  "keeping descriptors 0-%d",
		  fd_top - 1);
	return;
fail:
	diag_info("spawn: servers get a copy of mcpmux's descriptor table (%s: %s)", why,
		  strerror(errno));
	fd_slots_release();
}

/*
 * For a spawn: the server's pipe ends into the slots (a->in_fd and the rest then name
 * the slots).  false (errno) leaves a as it was, to be spawned with a copy of the table.
 */
static bool
fd_slots_fill(struct spawn_args *a)
{
	int *fd[3] = { &a->in_fd, &a->out_fd, &a->err_fd };

	if (fd_top == 0) {
		return false;
	}
	for (size_t i = 0; i < 3; i++) {
		if (*fd[i] >= 0 && dup3(*fd[i], fd_slot[i], O_CLOEXEC) == -1) {
			int err = errno;

			fd_slots_clear();
			errno = err;
			return false;
		}
	}
	for (size_t i = 0; i < 3; i++) {
		if (*fd[i] >= 0) {
			*fd[i] = fd_slot[i];
		}
	}
	return true;
}

/*
 * After the spawn, in mcpmux: /dev/null back into the slots, so that no slot keeps a
 * server's pipe open.  A slot that cannot be refilled is closed, and the slots are given
 * up (its number may then be taken by anything: the child would copy it).
 */
static void
fd_slots_clear(void)
{
	for (size_t i = 0; i < 3 && fd_top > 0; i++) {
		if (dup3(fd_null, fd_slot[i], O_CLOEXEC) == -1) {
			diag_warn_errno("spawn: a descriptor slot cannot be reset (servers get a "
					"copy of mcpmux's descriptor table from now on)");
			fd_slots_release();
		}
	}
}

/*
 * The child could not exec: tell mcpmux why, and whether it failed before the exec
 * (prep: its own set-up, not the command), and exit.  Through the pipe, a set-up
 * failure's errno is sent negated.
 */
__attribute__((no_sanitize_address, noreturn)) static void
child_fail(struct spawn_args *a, int err, int code, bool prep)
{
	int sent = prep ? -err : err;

	a->err = err;
	a->prep = prep;
	if (a->err_pipe >= 0) {
		ssize_t w = write(a->err_pipe, &sent, sizeof(sent));

		(void)w; /* nothing to do about it: the exit status still says 126 or 127 */
	}
	_exit(code);
}

/* In the child, until exec.  Never returns. */
__attribute__((no_sanitize_address)) static int
child_main(void *arg)
{
	struct spawn_args *a = arg;
	struct sigaction sa;
	bool prep = false;
	int err;

	/* A table of its own, before anything opens or closes a descriptor: fd_slots_init(). */
	if (a->fd_top > 0 && close_range((unsigned int)a->fd_top, ~0U, CLOSE_RANGE_UNSHARE) == -1) {
		child_fail(a, errno, 126, true);
	}
	/*
	 * A stop signal sent to mcpmux's group (^Z) since the clone is pending here, blocked:
	 * ignored, it is discarded, before the child leaves that group, where the SIGCONT
	 * that continues mcpmux would no longer reach it (stopped before its exec, it would
	 * hold mcpmux in the clone for good).
	 */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGTSTP, &sa, NULL);
	(void)sigaction(SIGTTIN, &sa, NULL);
	(void)sigaction(SIGTTOU, &sa, NULL);
	(void)setpgid(0, 0);
	/*
	 * Dispositions back to those mcpmux was started with: SIG_IGN survives exec, and
	 * mcpmux ignores SIGPIPE of its own; a signal its caller ignored (nohup's SIGHUP, a
	 * client's SIGPIPE) the server ignores too, as in a direct run.
	 */
	for (int sig = 1; sig < NSIG; sig++) {
		sa.sa_handler = sigismember(&a->ignored, sig) == 1 ? SIG_IGN : SIG_DFL;
		(void)sigaction(sig, &sa, NULL);
	}
	/* A SIGKILLed mcpmux takes its direct child with it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != a->parent) {
		child_fail(a, EAGAIN, 1, true);
	}
	/* Into its own cgroup leaf, before anything it starts can escape it. */
	if (a->cg_procs != NULL) {
		int fd = open(a->cg_procs, O_WRONLY | O_CLOEXEC);
		ssize_t w = fd >= 0 ? write(fd, "0", 1) : -1;

		/* Not fatal: outside the leaf, the walk still finds the tree by pid.  Said by
		 * mcpmux (the clone() path shares its memory: a->cg_err). */
		if (w != 1) {
			a->cg_err = w == -1 ? errno : EIO;
		}
		if (fd >= 0) {
			(void)close(fd);
		}
	}
	/* The descriptor limit of a direct run (mcpmux raised its own). */
	if (a->restore_nofile) {
		(void)setrlimit(RLIMIT_NOFILE, &a->nofile);
	}
	if (dup2(a->in_fd, STDIN_FILENO) == -1 || dup2(a->out_fd, STDOUT_FILENO) == -1 ||
	    (a->err_fd >= 0 && dup2(a->err_fd, STDERR_FILENO) == -1)) {
		err = errno;
		prep = true;
	} else {
		/* The /dev/null mcpmux put there for itself (sys_sanitize_stdio()) is not the
		 * server's: a direct run would have no fd 2. */
		if (a->close_err) {
			(void)close(STDERR_FILENO);
		}
		/* libev may have left signals blocked: the server gets the mask of a direct
		 * run, the one mcpmux was started with. */
		(void)sigprocmask(SIG_SETMASK, &a->mask, NULL);
		execvpe(a->argv[0], a->argv, a->envp);
		err = errno;
	}
	err = err != 0 ? err : ENOEXEC;
	child_fail(a, err, !prep && err == ENOENT ? 127 : 126, prep);
}

static bool no_clone3; /* clone3() was refused once: not again */

#if SPAWN_CLONE_VM
/*
 * clone3(args, size) with CLONE_VM: the child starts on the stack args names, where no
 * C function of ours has a frame to return to, so it calls fn(arg) from here and exits
 * with its value (it never does: child_main() execs or _exits).  The parent gets the pid
 * or -errno, as the kernel returns them.  As glibc's own clone wrappers do it.
 */
__attribute__((naked, noinline)) static long
clone3_vm(struct spawn_clone_args *args __attribute__((unused)),
	  size_t size __attribute__((unused)), int (*fn)(void *) __attribute__((unused)),
	  void *arg __attribute__((unused)))
{
	__asm__ volatile("mov %rdx, %r8\n\t" /* fn and arg survive the syscall */
			 "mov %rcx, %r9\n\t"
			 "mov $435, %eax\n\t" /* SYS_clone3 */
			 "syscall\n\t"
			 "test %rax, %rax\n\t"
			 "jnz 1f\n\t"
			 "xor %ebp, %ebp\n\t" /* the child: no frame above this one */
			 "and $-16, %rsp\n\t"
			 "mov %r9, %rdi\n\t"
			 "call *%r8\n\t"
			 "mov %eax, %edi\n\t"
			 "mov $60, %eax\n\t" /* SYS_exit */
			 "syscall\n\t"
			 "hlt\n"
			 "1:\n\t"
			 "ret");
}
#endif

/*
 * Start the child with clone3(): in its cgroup leaf from birth (CLONE_INTO_CGROUP) when
 * leaf is not NULL, sharing mcpmux's descriptor table until its first act (CLONE_FILES,
 * fd_slots_init()) when a->fd_top is not 0.  Moving a running process into a cgroup
 * (writing cgroup.procs) waits for an RCU grace period, milliseconds per spawn; a process
 * born there costs nothing more.  On x86-64 the child shares mcpmux's memory until it
 * execs (CLONE_VM | CLONE_VFORK, on the spawn stack, through clone3_vm()), as with clone()
 * below; elsewhere its memory is a copy (a C function cannot return on a stack of its own
 * after a raw clone3), its descriptor table too, and its exec errno comes back through a
 * pipe.  The pid, -1 (errno) when the spawn failed, -2 when this way is not available
 * (then the caller spawns with clone(), which valgrind runs only without CLONE_FILES, and
 * the child joins its leaf itself), or -3 (errno) when the child cannot be born in leaf
 * (removed since it was made, or not one a process may join): the caller starts it
 * without one.
 */
static pid_t
spawn_clone3(struct spawn_args *a, const char *leaf, char *stack)
{
	struct spawn_clone_args ca;
	int ep[2] = { -1, -1 }, cg_fd = -1, err = 0;
	pid_t pid;

	if (no_clone3) {
		return -2; /* found missing before: the old way, every time */
	}
	if (leaf != NULL && (cg_fd = open(leaf, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		return -2;
	}
	if (!SPAWN_CLONE_VM && pipe2(ep, O_CLOEXEC) == -1) {
		sys_close(&cg_fd);
		return -2;
	}
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_VFORK;
	ca.exit_signal = SIGCHLD;
	if (cg_fd >= 0) {
		ca.flags |= SPAWN_CLONE_INTO_CGROUP;
		ca.cgroup = (uint64_t)cg_fd;
	}
	a->err_pipe = ep[1];
	const char *procs = a->cg_procs;

	if (cg_fd >= 0) {
		a->cg_procs = NULL; /* born in it */
	}
#if SPAWN_CLONE_VM
	char *base = (char *)stack_map + stack_page; /* above the guard page */

	ca.flags |= CLONE_VM | (a->fd_top > 0 ? CLONE_FILES : 0);
	ca.unused2[0] = (uint64_t)(uintptr_t)base;	     /* stack */
	ca.unused2[1] = (uint64_t)(stack - base);	     /* stack_size */
	long rc = clone3_vm(&ca, sizeof(ca), child_main, a); /* child_main never returns */

	pid = rc < 0 ? -1 : (pid_t)rc;
	err = rc < 0 ? (int)-rc : 0;
#else
	(void)stack;
	pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0) {
		(void)child_main(a); /* never returns */
	}
	err = errno;
#endif
	if (ep[1] >= 0) {
		(void)close(ep[1]);
	}
	bool cg_fd_used = cg_fd >= 0;

	sys_close(&cg_fd);
	a->err_pipe = -1;
	if (pid == -1) {
		a->cg_procs = procs;
		if (ep[0] >= 0) {
			(void)close(ep[0]);
		}
		if (err == ENOSYS || err == E2BIG || err == EINVAL || err == EPERM ||
		    err == EOPNOTSUPP) {
			no_clone3 = true; /* an old kernel, a seccomp filter: the old way */
			diag_info("spawn: clone3() is refused here (%s): servers are started "
				  "with clone(), with a copy of mcpmux's descriptor table, and "
				  "join their cgroup leaf themselves",
				  strerror(err));
			return -2;
		}
		errno = err;
		if (cg_fd_used && (err == ENOENT || err == ENODEV || err == EBUSY ||
				   err == EACCES || err == EBADF)) {
			return -3; /* about the leaf (gone, not a leaf, not ours) */
		}
		return -1; /* EAGAIN, ENOMEM: the old way would fail the same */
	}
	if (ep[0] < 0) {
		return pid; /* CLONE_VM: the child wrote a->err itself */
	}
	/* The child has exec'd (EOF) or failed (its errno): CLONE_VFORK waited for it. */
	int child_err = 0;
	ssize_t n;

	do {
		n = read(ep[0], &child_err, sizeof(child_err));
	} while (n == -1 && errno == EINTR);
	(void)close(ep[0]);
	if (n != (ssize_t)sizeof(child_err)) {
		child_err = 0;
	}
	a->prep = child_err < 0;
	a->err = child_err < 0 ? -child_err : child_err;
	return pid;
}

/*
 * Now, in clock ticks since boot as /proc gives start times, a tick early (0: unknown).
 * A process that started before it is none of a server's spawned from now on.
 */
static unsigned long long
boot_ticks(void)
{
	unsigned long long t = proctree_now_ticks();

	return t > 0 ? t - 1 : 0;
}

/*
 * mcpmux's environment without any MCPMUX_SESSION, MCPMUX_OWNER and MCPMUX_OUTER (a
 * server of an mcpmux under mcpmux belongs to the inner one first; an engine command is
 * no server), then entry, this mcpmux's MCPMUX_OWNER and, when this mcpmux is itself in
 * a session's tree, MCPMUX_OUTER, when entry is not NULL.  malloc'd (the strings are not).
 */
static char **
child_env(char *entry)
{
	static const char key[] = PROCTREE_COOKIE_ENV "=";
	static const char okey[] = PROCTREE_OWNER_ENV "=";
	static const char nkey[] = PROCTREE_OUTER_ENV "=";
	size_t n = 0, k = 0;

	while (environ[n] != NULL) {
		n++;
	}
	char **env = malloc((n + 4) * sizeof(*env));

	if (env == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], key, sizeof(key) - 1) != 0 &&
		    strncmp(environ[i], okey, sizeof(okey) - 1) != 0 &&
		    strncmp(environ[i], nkey, sizeof(nkey) - 1) != 0) {
			env[k++] = environ[i];
		}
	}
	if (entry != NULL) {
		env[k++] = entry;
		if (owner_env[0] != '\0') {
			env[k++] = owner_env;
		}
		if (outer_env[0] != '\0') {
			env[k++] = outer_env;
		}
	}
	env[k] = NULL;
	return env;
}

static void
ctr_free(struct backend_ctr *c)
{
	if (c == NULL) {
		return;
	}
	for (struct backend_ctr **pp = &ctr_head; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->b != NULL && c->b->loop != NULL) {
		ev_timer_stop(c->b->loop, &c->retry_w);
	}
	ctr_stop(c);
	free(c->ids);
	free(c->run_argv);
	free(c);
}

/*
 * The record of the engine of c's run beside mcpmux's own id file (container.h), for
 * `mcpmux sweep`: without it, sweep keeps that file for good once mcpmux is gone (said).
 */
static void
ctr_record(const struct backend_ctr *c)
{
	char path[PATH_MAX];
	size_t len = 0;
	char *text = container_record_text(c->argv, &c->run, c->run_label, &len);
	int fd = -1;

	if (text != NULL && container_record_path(c->cidfile, path, sizeof(path)) == 0) {
		(void)unlink(path);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	}
	if (fd == -1 || sys_write_all(fd, text, len) == -1) {
		diag_warn_errno("session %s: cannot keep the record of the engine of its container "
				"beside its id file %s (`mcpmux sweep` keeps that file once mcpmux "
				"is gone)",
				c->b->cookie, c->cidfile);
		if (fd != -1 && container_record_path(c->cidfile, path, sizeof(path)) == 0) {
			(void)unlink(path);
		}
	}
	sys_close(&fd);
	free(text);
}

/* Remove the record beside mcpmux's own id file cidfile. */
static void
ctr_record_remove(const char *cidfile)
{
	char path[PATH_MAX];

	if (container_record_path(cidfile, path, sizeof(path)) == 0) {
		(void)unlink(path);
	}
}

/*
 * A container run gets labels and a cidfile (container.h): b->ctr, whose run_argv is
 * what runs.  A command that is not one, or one mcpmux leaves alone (said once), runs as
 * it is.  -1 only when memory runs out.
 */
static int
ctr_prepare(struct backend *b, char *const *argv)
{
	struct container_run run;
	enum container_kind kind = container_detect(argv, &run);
	char dir[PATH_MAX];

	if (kind == CONTAINER_UNMANAGED) {
		diag_warn("session %s: a container run mcpmux does not manage (%s): it runs as "
			  "it is, and only the engine's command is torn down",
			  b->cookie, run.why);
		return 0;
	}
	if (kind != CONTAINER_MANAGED) {
		return 0;
	}
	struct backend_ctr *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return -1;
	}
	c->b = b;
	c->run = run;
	c->argv = argv;
	c->err_fd = -1;
	struct stat st;

	if (run.cidfile != NULL && stat(run.cidfile, &st) == 0) {
		/*
		 * The user's --cidfile is there already: the engine refuses the run, and the
		 * id in it is another container's, which is never this run's to end.
		 */
		c->cidfile[0] = '\0';
		diag_warn("session %s: its --cidfile '%s' exists already: the engine will refuse "
			  "the run, and that file's container is left alone",
			  b->cookie, run.cidfile);
	} else if (run.cidfile != NULL) {
		(void)snprintf(c->cidfile, sizeof(c->cidfile), "%s", run.cidfile);
	} else if (sys_runtime_dir("cid", dir, sizeof(dir)) == 0 &&
		   snprintf(c->cidfile, sizeof(c->cidfile), "%.3900s/%d.%llu.cid", dir,
			    (int)getpid(), ++ctr_seq) < (int)sizeof(c->cidfile)) {
		(void)unlink(c->cidfile); /* the engines refuse an existing one */
		c->own_cidfile = true;
	} else {
		c->cidfile[0] = '\0';
		diag_warn_errno("session %s: no directory for the container's id file (its "
				"teardown finds the container by its --name, or by its labels once "
				"its processes are gone, as the keeper and `mcpmux sweep` do)",
				b->cookie);
	}
	struct container_labels labels = {
		.owner = owner_env[0] != '\0' ? backend_owner() : NULL,
		.session = b->cookie,
		.boot = boot_id[0] != '\0' ? boot_id : NULL,
		.pidns = pidns_id[0] != '\0' ? pidns_id : NULL,
		.run = c->run_label,
	};
	uuid_t u;

	uuid_generate(u);
	uuid_unparse_lower(u, c->run_label);
	c->run_argv = container_run_argv(argv, &run, &labels, c->own_cidfile ? c->cidfile : NULL);
	if (c->run_argv == NULL) {
		free(c);
		return -1;
	}
	if (c->own_cidfile) {
		ctr_record(c);
	}
	b->ctr = c;
	return 0;
}

/* Its cgroup leaf is gone, or no longer its concern: the path is given back. */
static void
leaf_forget(struct backend *b)
{
	free(b->cgroup);
	b->cgroup = NULL;
}

struct backend *
backend_spawn(struct ev_loop *loop, const struct backend_config *cfg,
	      const struct framer_sink *sink, const struct backend_hooks *hooks, void *owner)
{
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 };
	int perr[2] = { -1, -1 };
	struct backend *b = calloc(1, sizeof(*b));
	sigset_t all, old;
	int err;
	bool told = false; /* the keeper knows of its container */

	if (b == NULL) {
		return NULL;
	}
	if (pipe2(pin, O_CLOEXEC) == -1 || pipe2(pout, O_CLOEXEC) == -1 ||
	    (cfg->capture_stderr && pipe2(perr, O_CLOEXEC) == -1)) {
		goto fail;
	}
	(void)snprintf(b->cookie, sizeof(b->cookie), "%s", cfg->cookie);
	char entry[sizeof(PROCTREE_COOKIE_ENV) + sizeof(b->cookie)];

	(void)snprintf(entry, sizeof(entry), "%s=%s", PROCTREE_COOKIE_ENV, b->cookie);
	char *const *argv = cfg->argv;

	if (ctr_prepare(b, cfg->argv) == -1) {
		goto fail;
	}
	/*
	 * The keeper hears of the container before the engine's command starts: mcpmux killed
	 * right after the start must not leave a container the keeper never heard of.
	 */
	if (b->ctr != NULL && (b->ctr->cidfile[0] != '\0' || owner_env[0] != '\0')) {
		/* Without an id file, by its labels alone (the owner's and its run's). */
		keeper_container(b->ctr->argv, b->ctr->run.prefix_len, b->ctr->cidfile,
				 b->ctr->run_label, b->ctr->own_cidfile);
		told = true;
	}
	if (b->ctr != NULL) {
		argv = b->ctr->run_argv;
	}
	char *stack = spawn_stack(argv);

	if (stack == NULL) {
		goto fail;
	}
	char **envp = child_env(entry);

	if (envp == NULL) {
		goto fail;
	}
	struct spawn_args args = {
		.argv = argv,
		.envp = envp,
		.parent = getpid(),
		.in_fd = pin[0],
		.out_fd = pout[1],
		.err_fd = perr[1],
	};

	args.restore_nofile = sys_nofile_original(&args.nofile);
	sys_signals_at_start(&args.ignored, &args.mask);
	args.close_err = args.err_fd < 0 && sys_stdio_closed_at_start(STDERR_FILENO);

	char cg_procs[CGROUP_PATH_MAX + 16], leaf[CGROUP_PATH_MAX];

	if (inst_cgroup[0] != '\0') {
		int made = cgroup_leaf_make(inst_cgroup, ++leaf_seq, leaf, sizeof(leaf));

		if (made == 0 && (b->cgroup = strdup(leaf)) == NULL) {
			int e = errno;

			(void)cgroup_remove(leaf);
			errno = e;
			made = -1;
		}
		if (made == 0) {
			(void)snprintf(cg_procs, sizeof(cg_procs), "%s/cgroup.procs", b->cgroup);
			args.cg_procs = cg_procs;
		} else {
			/*
			 * No leaf (cgroup.max.descendants or cgroup.max.depth reached, no
			 * memory, a leaf of that name there already): the server starts
			 * without one, and the process walk alone finds its tree.  Said: what
			 * it then loses is not small.
			 */
			diag_warn("session %s: cannot make a cgroup leaf for its server: %s (it "
				  "runs without one: the process walk alone finds its tree)",
				  b->cookie, strerror(errno));
		}
	}
	args.err_pipe = -1;
	/* The table is shared through clone3() only: see spawn_clone3(). */
	bool slots = !no_clone3 && fd_slots_fill(&args); /* fd_top is 0 but on x86-64 */

	args.fd_top = slots ? fd_top : 0;
	/* Before the child exists: its start time, and its descendants', is no earlier. */
	unsigned long long born = boot_ticks();

	/* Block every signal across the spawn: no handler may run in the child. */
	sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, &old);
	pid_t pid = -2;

	if (args.cg_procs != NULL || slots) {
		pid = spawn_clone3(&args, args.cg_procs != NULL ? b->cgroup : NULL, stack);
	}
	if (pid == -3) {
		diag_warn("session %s: cannot start its server in its cgroup leaf: %s (it runs "
			  "without one: the process walk alone finds its tree)",
			  b->cookie, strerror(errno));
		(void)cgroup_remove(b->cgroup);
		leaf_forget(b);
		args.cg_procs = NULL;
		pid = slots ? spawn_clone3(&args, NULL, stack) : -2;
	}
	if (pid == -2) {
		args.fd_top = 0;
		pid = clone(child_main, stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
	}
	err = errno;
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	if (slots) {
		fd_slots_clear();
	}
	free(envp);
	if (pid == -1) {
		errno = err;
		goto fail;
	}
	if (args.cg_err != 0) {
		diag_warn("session %s: its server could not join its cgroup leaf: %s (it runs "
			  "without one: the process walk alone finds its tree)",
			  b->cookie, strerror(args.cg_err));
		(void)cgroup_remove(b->cgroup);
		leaf_forget(b);
	}
	(void)setpgid(pid, pid); /* also in the child: whichever runs first */
	sys_close(&pin[0]);
	sys_close(&pout[1]);
	sys_close(&perr[1]);

	b->loop = loop;
	b->state = BACKEND_RUNNING;
	b->exec_errno = args.err;
	b->exec_prep = args.err != 0 && args.prep;
	if (b->exec_prep) {
		/* Not the command's fault: the child failed before it could try it. */
		char text[160];

		(void)snprintf(text, sizeof(text), "could not prepare the server's process: %s",
			       strerror(b->exec_errno));
		b->exec_why = strdup(text); /* NULL: said the same way (backend_exec_text()) */
	} else if (b->exec_errno != 0) {
		b->exec_why = execwhy_text(cfg->argv[0], b->exec_errno,
					   cfg->not_found_hint); /* NULL: said plainer */
	}
	b->pid = pid;
	b->pgid = pid;
	b->wstatus = -1;
	b->claim_orphans = cfg->claim_orphans;
	n_claimers += b->claim_orphans;
	b->eof_grace = cfg->eof_grace;
	b->term_grace = cfg->term_grace;
	b->stall_timeout = cfg->stall_timeout;
	b->kill_deadline = SYS_MAX(cfg->kill_deadline, KILL_RESCAN_S); /* one re-arm at least */
	b->t_start = sys_mono();
	b->born = born;
	b->in_fd = pin[1];
	b->out_fd = pout[0];
	b->err_fd = perr[0];
	b->sink = sink;
	b->hooks = hooks;
	b->owner = owner;
	b->err_wait.on_room = backend_on_err_room;
	wbuf_init(&b->inq, cfg->max_queue);
	framer_init(&b->outf, cfg->max_message);
	(void)sys_set_nonblock(b->in_fd, 1);
	(void)sys_set_nonblock(b->out_fd, 1);
	ev_io_init(&b->in_w, backend_on_stdin, b->in_fd, EV_WRITE);
	/* The write end of a pipe is never readable: EV_READ fires only when the reader is gone. */
	ev_io_init(&b->in_gone_w, backend_on_stdin_gone, b->in_fd, EV_READ);
	ev_io_start(loop, &b->in_gone_w);
	ev_io_init(&b->out_w, backend_on_stdout, b->out_fd, EV_READ);
	ev_init(&b->grace_w, backend_on_grace);
	ev_init(&b->stall_w, backend_on_stall);
	ev_io_start(loop, &b->out_w);
	if (b->err_fd >= 0) {
		(void)sys_set_nonblock(b->err_fd, 1);
		ev_io_init(&b->err_w, backend_on_stderr, b->err_fd, EV_READ);
		ev_io_start(loop, &b->err_w);
	}
	by_pid_add(b);
	if (b->ctr != NULL) {
		struct backend_ctr *c = b->ctr;

		c->next = ctr_head;
		ctr_head = c;
		ev_init(&c->retry_w, backend_on_ctr_retry);
	}
	if (b->exec_prep) {
		diag_info("session %s: its process (pid %d) could not be prepared to execute "
			  "'%s': %s",
			  b->cookie, (int)pid, cfg->argv[0], strerror(b->exec_errno));
	} else if (b->exec_errno != 0) {
		/* The pid is that of a child that never ran the command, and has exited. */
		diag_info("session %s: its process (pid %d) could not execute '%s': %s", b->cookie,
			  (int)pid, cfg->argv[0], strerror(b->exec_errno));
	} else {
		diag_info("started '%s' as pid %d (session %s)", cfg->argv[0], (int)pid, b->cookie);
	}
	return b;
fail:
	err = errno;
	if (b->cgroup != NULL) {
		(void)cgroup_remove(b->cgroup);
		leaf_forget(b);
	}
	if (told) {
		keeper_container_gone(b->ctr->cidfile, b->ctr->run_label); /* never started */
	}
	if (b->ctr != NULL && b->ctr->own_cidfile) {
		ctr_record_remove(b->ctr->cidfile); /* no container, no id file */
	}
	ctr_free(b->ctr);
	sys_close(&pin[0]);
	sys_close(&pin[1]);
	sys_close(&pout[0]);
	sys_close(&pout[1]);
	sys_close(&perr[0]);
	sys_close(&perr[1]);
	free(b);
	errno = err;
	return NULL;
}

/* ---- the pipes ---- */

/*
 * While long messages flow (a line of PIPE_LONG or more either way), the server's pipes
 * are enlarged (F_SETPIPE_SZ): a 1 MiB message then crosses in a few reads and writes
 * instead of sixteen of each, and a stream of 16 KiB ones wakes each side a sixteenth as
 * often.  They go back to the default size once mcpmux has been idle (backend_on_trim).
 * Pipe memory counts against the user's pipe-user-pages-soft (64 MiB by default), and
 * past it the kernel gives every new pipe of that user two pages; so at most
 * PIPE_BIG_MAX servers (16 MiB) have enlarged pipes at once, and the others keep the
 * default.  Failures are harmless (a system limit on pipe memory): the pipe keeps its size.
 */
static unsigned int pipes_big_n;

static void
pipes_resize(struct backend *b, int size)
{
	bool big = size > PIPE_SMALL;

	if (big == b->pipes_big || (big && pipes_big_n >= PIPE_BIG_MAX)) {
		return;
	}
	if (b->out_fd >= 0) {
		(void)fcntl(b->out_fd, F_SETPIPE_SZ, size);
	}
	if (b->in_fd >= 0) {
		(void)fcntl(b->in_fd, F_SETPIPE_SZ, size);
	}
	b->pipes_big = big;
	if (big) {
		pipes_big_n++;
		sys_big_alloc = true;
	} else {
		pipes_big_n--;
		framer_longest_reset(&b->outf);
	}
}

/*
 * Tell the owner when the stdin queue reaches its mark, and when it goes below it: while
 * it is full, the owner holds the client's input (the server sets the pace).
 */
static void
input_level(struct backend *b)
{
	bool full = b->in_fd >= 0 && b->state < BACKEND_CLOSING && wbuf_full(&b->inq);

	if (full != b->in_full) {
		b->in_full = full;
		if (b->hooks->on_input_full != NULL) {
			b->hooks->on_input_full(b, b->owner, full);
		}
	}
}

/*
 * The stall watch: while lines wait in the stdin queue, the server must take some of
 * them within stall-timeout.  `progress`: the pipe took bytes just now.  Not while its
 * stdout is not read (its client is slow): a server blocked writing is not stuck.  The
 * watch is suspended then, not reset: the time without progress before the pause counts
 * on once its output is read again, unless it took input meanwhile.
 */
static void
stall_watch(struct backend *b, bool progress)
{
	if (wbuf_len(&b->inq) == 0 || b->in_fd < 0 || b->state >= BACKEND_CLOSING ||
	    b->stall_timeout <= 0) {
		ev_timer_stop(b->loop, &b->stall_w);
		b->in_idle = 0;
		return;
	}
	bool paused = b->out_paused && b->out_fd >= 0;

	/*
	 * The clock only where it is needed: this runs for every write to the server.  Without
	 * progress, only a watch to suspend (paused) or to start (not paused) uses it.
	 */
	if (!progress && paused != ev_is_active(&b->stall_w)) {
		return;
	}
	double now = sys_mono();

	if (progress) {
		b->in_since = now; /* backend_on_stall() looks again at expiry */
		b->in_idle = 0;
	}
	if (paused) {
		if (ev_is_active(&b->stall_w)) {
			b->in_idle += now - b->in_since;
			ev_timer_stop(b->loop, &b->stall_w);
		}
		return;
	}
	if (!ev_is_active(&b->stall_w)) {
		/* The queue was empty until now, or the server's output is read again. */
		b->in_since = now;
		ev_timer_set(&b->stall_w,
			     b->in_idle < b->stall_timeout ? b->stall_timeout - b->in_idle : 0.,
			     0.);
		ev_timer_start(b->loop, &b->stall_w);
	}
}

static void
close_stdin(struct backend *b)
{
	if (b->in_fd >= 0) {
		ev_io_stop(b->loop, &b->in_w);
		ev_io_stop(b->loop, &b->in_gone_w);
		sys_close(&b->in_fd);
	}
	ev_timer_stop(b->loop, &b->stall_w);
	b->span = NULL;
	b->span_len = 0;
	wbuf_release(&b->inq);
	input_level(b);
}

static void
close_stdout(struct backend *b)
{
	if (b->out_fd >= 0) {
		ev_io_stop(b->loop, &b->out_w);
		sys_close(&b->out_fd);
		framer_finish(&b->outf, b->sink, b->owner);
	}
	b->out_eof = true;
}

static void
dirty_add(struct backend *b)
{
	if (!b->dirty) {
		b->dirty = true;
		b->next_dirty = dirty_head;
		dirty_head = b;
	}
}

/* Queue a copy of the span: its read chunk is about to be reused. */
static int
span_keep(struct backend *b)
{
	int rc = 0;

	if (b->span_len > 0) {
		rc = wbuf_append(&b->inq, b->span, b->span_len);
		b->span = NULL;
		b->span_len = 0;
	}
	return rc;
}

int
backend_send(struct backend *b, const char *line, size_t len)
{
	if (b->in_fd < 0 || b->state >= BACKEND_CLOSING) {
		errno = EPIPE;
		return -1;
	}
	if (!b->pipes_big && len >= PIPE_LONG) {
		pipes_resize(b, PIPE_BIG);
	}

	/*
	 * Lines are written once per read, or once per loop turn, just before the loop waits
	 * (dirty_flush()): one writev for a whole read's worth of messages, while a lone
	 * request still leaves as soon as the read that brought it is handled.  Consecutive
	 * lines of the read chunk, with their newlines, are held by reference (the span) and
	 * written from where they were read; the rest is copied into the queue.
	 */
	uintptr_t at = (uintptr_t)line;

	if (sys_chunk_lo != NULL && at >= (uintptr_t)sys_chunk_lo &&
	    at + len < (uintptr_t)sys_chunk_hi && line[len] == '\n') {
		if (b->span_len > 0 && line == b->span + b->span_len) {
			b->span_len += len + 1;
			return 0;
		}
		if (span_keep(b) == -1) {
			errno = ENOMEM;
			input_broken(b);
			errno = ENOMEM;
			return -1;
		}
		b->span = line;
		b->span_len = len + 1;
		dirty_add(b);
		input_level(b);
		return 0;
	}
	if (span_keep(b) == -1) {
		errno = ENOMEM;
		input_broken(b);
		errno = ENOMEM;
		return -1;
	}
	if (wbuf_len(&b->inq) == 0 && len >= WBUF_CHUNK) {
		/* A big line with nothing before it: written at once from where it was read. */
		if (wbuf_send(&b->inq, b->in_fd, line, len, "\n", 1, NULL) == -1) {
			int err = errno;

			/*
			 * EPIPE: the server closed its stdin, nothing more can reach it.  Anything
			 * else: perhaps half a line was written, the stream is broken.  Either way
			 * the run ends, so that its requests in flight are answered.
			 */
			input_broken(b);
			errno = err;
			return -1;
		}
		stall_watch(b, wbuf_len(&b->inq) < len + 1);
		if (wbuf_len(&b->inq) > 0) {
			ev_io_start(b->loop, &b->in_w);
		}
		input_level(b);
		return 0;
	}
	if (wbuf_append_line(&b->inq, line, len) == -1) {
		return -1;
	}
	dirty_add(b);
	input_level(b);
	return 0;
}

bool
backend_stdin_full(const struct backend *b)
{
	return wbuf_full(&b->inq);
}

/*
 * The server's stdout or stdin (in_closed) closed while it runs: it can no longer answer
 * (or hear).  End it.  If it closed because the server is exiting (a crash: the kernel
 * closes a process's files before it reports the exit; one that could not be executed has
 * exited already), this is the server's own exit: reported as such, and what it leaves
 * behind is signalled at once; otherwise a closed stdin is said.
 */
static void
end_closed(struct backend *b, bool in_closed)
{
	bool exiting =
		b->state < BACKEND_CLOSING && !b->reaped && proctree_exiting(PROC_ROOT, b->pid);

	if (!exiting && in_closed) {
		diag_warn("session %s: the server closed its input: ending it", b->cookie);
	}
	backend_end(b, -1);
	if (exiting) {
		b->exited_by_itself = true;
		b->escalation = BACKEND_ESC_NONE;
	}
}

/*
 * The server's stdin can take nothing more: it closed it (EPIPE), or memory ran out with
 * lines for it unqueued.  What it was sent but did not get is lost, so the run cannot go
 * on: it ends, and its requests in flight are answered when the teardown is done.
 */
static void
input_broken(struct backend *b)
{
	int err = errno;

	if (err == ENOMEM) {
		diag_error("session %s: out of memory: lines for the server were lost: ending it",
			   b->cookie);
	} else if (err != EPIPE) {
		diag_warn_errno("session %s: cannot write to the server: ending it", b->cookie);
	}
	close_stdin(b);
	if (err == EPIPE) {
		end_closed(b, true);
	} else {
		backend_end(b, -1);
	}
}

/* Write stdin's queue, then the span, as far as the pipe takes them. */
static void
stdin_flush(struct backend *b)
{
	int rc;

	if (b->in_fd < 0) {
		return;
	}
	size_t before = wbuf_len(&b->inq) + b->span_len;

	if (b->span_len > 0) {
		/* Straight from the read chunk; only what the pipe does not take is copied. */
		rc = wbuf_send_after(&b->inq, b->in_fd, b->span, b->span_len);
		b->span = NULL;
		b->span_len = 0;
	} else {
		rc = wbuf_flush(&b->inq, b->in_fd);
	}
	if (rc == -1) {
		input_broken(b);
		return;
	}
	stall_watch(b, wbuf_len(&b->inq) < before);
	if (wbuf_len(&b->inq) == 0) {
		ev_io_stop(b->loop, &b->in_w);
		wbuf_release(&b->inq); /* an idle session holds no queue memory */
		if (b->state >= BACKEND_CLOSING) {
			/* Everything the client sent before the end is delivered: now EOF. */
			close_stdin(b);
		}
	} else {
		ev_io_start(b->loop, &b->in_w); /* the rest when the pipe has room */
	}
	input_level(b);
}

/*
 * The server closed its stdin (EPOLLERR on the pipe's write end) while it runs: nothing
 * sent to it can arrive, and a request already in its pipe would wait for ever.
 */
static void
backend_on_stdin_gone(struct ev_loop *loop, ev_io *w, int revents)
{
	struct backend *b = container_of(w, struct backend, in_gone_w);

	(void)revents;
	ev_io_stop(loop, w);
	b->in_gone = true;
	backend_step(b);
}

static void
backend_on_stdin(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	stdin_flush(container_of(w, struct backend, in_w));
}

/*
 * stall-timeout without the server taking a byte of its input: it is stuck (or reads
 * only when it is answered, which nobody does while its input waits).  Its queue is
 * dropped and its run ended; its requests in flight and queued get errors that say so.
 */
static void
backend_on_stall(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct backend *b = container_of(w, struct backend, stall_w);
	double idle = b->in_idle + sys_mono() - b->in_since;

	(void)revents;
	if (wbuf_len(&b->inq) == 0 || b->in_fd < 0 || b->state >= BACKEND_CLOSING) {
		return;
	}
	if (idle < b->stall_timeout) {
		ev_timer_set(w, b->stall_timeout - idle, 0.);
		ev_timer_start(loop, w);
		return;
	}
	diag_warn("session %s: the server has not read its input for %g s (%zu bytes wait): "
		  "ending its run (see --stall-timeout)",
		  b->cookie, b->stall_timeout, wbuf_len(&b->inq));
	b->stalled = true;
	if (b->hooks->on_stall != NULL) {
		b->hooks->on_stall(b, b->owner);
	}
	close_stdin(b);
	backend_end(b, -1);
}

/* Write what backends got this read or this turn: one writev each. */
static void
dirty_flush(void)
{
	while (dirty_head != NULL) {
		struct backend *b = dirty_head;

		dirty_head = b->next_dirty;
		b->dirty = false;
		b->next_dirty = NULL;
		if (!ev_is_active(&b->in_w)) {
			stdin_flush(b);
		} else if (span_keep(b) == -1) {
			/* The pipe is full and its watcher writes the queue: the span joins it. */
			errno = ENOMEM;
			input_broken(b);
		} else {
			input_level(b);
		}
	}
}

void
backend_pause(struct backend *b, bool paused)
{
	if (b->out_paused == paused) {
		return;
	}
	b->out_paused = paused;
	if (b->out_fd < 0) {
		return;
	}
	if (paused) {
		ev_io_stop(b->loop, &b->out_w);
	} else {
		ev_io_start(b->loop, &b->out_w);
	}
	stall_watch(b, false);
}

static void
backend_on_stdout(struct ev_loop *loop, ev_io *w, int revents)
{
	struct backend *b = container_of(w, struct backend, out_w);
	size_t budget = READ_BUDGET;

	(void)loop;
	(void)revents;
	while (budget > 0 && !b->out_paused && b->out_fd >= 0 && !sys_scratch_busy) {
		size_t want = SYS_MIN(SYS_SCRATCH_SIZE, budget);
		ssize_t n = sys_read(b->out_fd, sys_scratch, want);

		if (n > 0) {
			sys_scratch_busy = true;
			(void)framer_feed(&b->outf, sys_scratch, (size_t)n, b->sink, b->owner);
			sys_scratch_busy = false;
			budget -= (size_t)n;
			if (!b->pipes_big && framer_longest(&b->outf) >= PIPE_LONG) {
				pipes_resize(b, PIPE_BIG);
			}
			if ((size_t)n < want) { // cppcheck-suppress knownConditionTrueFalse
				break;		/* drained: no read just to hear EAGAIN */
			}
		} else if (n == 0 || errno != EAGAIN) {
			close_stdout(b);
			backend_step(b);
			return;
		} else {
			break;
		}
	}
}

/*
 * The server's stderr, when captured: relayed to mcpmux's stderr as it comes, and to the
 * owner.  While mcpmux's stderr is full, the pipe is not read (the server waits, as it
 * would on a direct pipe), and errout calls back once there is room.  At the end (the
 * backend is done) what is in the pipe is read and the pipe closed: a leftover writer
 * cannot exist once the tree is gone, and a writer outside it must not hold the end up.
 */
static void
read_stderr(struct backend *b, bool at_end)
{
	char buf[16384];
	/*
	 * At the end, what the pipe holds: a pipe's worth.  A process outside the tree that
	 * still writes to it (one the walk spared) could otherwise keep this loop, and every
	 * session with it, here for as long as it writes.
	 */
	int size = at_end && b->err_fd >= 0 ? fcntl(b->err_fd, F_GETPIPE_SZ) : 0;
	size_t budget = size > 0 ? (size_t)size : (size_t)PIPE_BIG;

	for (int i = 0; b->err_fd >= 0 && (at_end ? budget > 0 : i < 16); i++) {
		size_t want = sizeof(buf);

		if (!at_end) {
			size_t room = errout_room();

			if (room == 0) {
				ev_io_stop(b->loop, &b->err_w);
				errout_wait(&b->err_wait);
				return;
			}
			want = SYS_MIN(want, room);
		}
		ssize_t n = sys_read(b->err_fd, buf, want);

		if (n > 0) {
			errout_relay(buf, (size_t)n);
			if (b->hooks->on_stderr != NULL) {
				b->hooks->on_stderr(b, b->owner, buf, (size_t)n);
			}
			budget -= SYS_MIN(budget, (size_t)n);
			if (!at_end || budget > 0) {
				continue;
			}
		} else if (n == -1 && errno == EAGAIN && !at_end) {
			return;
		}
		ev_io_stop(b->loop, &b->err_w);
		errout_cancel(&b->err_wait);
		sys_close(&b->err_fd);
	}
}

static void
backend_on_stderr(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	read_stderr(container_of(w, struct backend, err_w), false);
}

static void
backend_on_err_room(struct errout_waiter *w)
{
	struct backend *b = container_of(w, struct backend, err_wait);

	if (b->err_fd >= 0) {
		ev_io_start(b->loop, &b->err_w);
	}
}

/* ---- the teardown ---- */

static void
arm_grace(struct backend *b, double seconds)
{
	/*
	 * From now, not from the start of this turn: a long turn (many sessions ending at once
	 * on a loaded machine) would otherwise take its length off the grace, and a server
	 * that ends within its grace be signalled, and said to have been.
	 */
	ev_now_update(b->loop);
	ev_timer_stop(b->loop, &b->grace_w);
	ev_timer_set(&b->grace_w, seconds, 0.);
	ev_timer_start(b->loop, &b->grace_w);
}

/*
 * Backends whose child is not yet reaped, by pid: in by_pid, or, when it had no memory
 * for the entry, in a list walked instead (the child is still reaped, and its tree ended).
 */
static void
by_pid_add(struct backend *b)
{
	bool added;

	TABLE_ADD(hh, by_pid, &b->pid, sizeof(pid_t), b, added);
	if (!added) {
		diag_warn("session %s: out of memory: server %d is not in the table of servers by "
			  "pid (it is found in a list instead)",
			  b->cookie, (int)b->pid);
		b->unhashed = true;
		b->next_unhashed = unhashed;
		unhashed = b;
	}
}

static struct backend *
by_pid_find(pid_t pid)
{
	struct backend *b;

	HASH_FIND(hh, by_pid, &pid, sizeof(pid_t), b);
	for (struct backend *u = unhashed; b == NULL && u != NULL; u = u->next_unhashed) {
		if (u->pid == pid) {
			b = u;
		}
	}
	return b;
}

static void
by_pid_remove(struct backend *b)
{
	if (!b->unhashed) {
		HASH_DEL(by_pid, b);
		return;
	}
	for (struct backend **pp = &unhashed; *pp != NULL; pp = &(*pp)->next_unhashed) {
		if (*pp == b) {
			*pp = b->next_unhashed;
			break;
		}
	}
	b->unhashed = false;
}

/* A live server, or one of the engine commands mcpmux runs: never an orphan to claim. */
static bool
is_live_backend(pid_t pid)
{
	if (by_pid_find(pid) != NULL) {
		return true;
	}
	for (const struct backend_ctr *c = ctr_head; c != NULL; c = c->next) {
		if (c->helper == pid) {
			return true;
		}
	}
	/* mcpmux as pid 1 (a container's entry point) is its own keeper's parent. */
	return pid == keeper_pid_live();
}

/*
 * While the engine stops a container, nothing of its run is signalled by mcpmux: not the
 * monitor (conmon, which must outlive its container to clean it up), and not the engine's
 * command either, which removes a --rm container once it stops (a SIGKILL in the middle
 * leaves a container half removed, listed but unknown to its own store).
 */
static bool
spare_all(const struct proc_info *pi)
{
	(void)pi;
	return true;
}

static struct proctree_match
backend_match(const struct backend *b)
{
	struct proctree_match m = {
		.pid = b->reaped ? 0 : b->pid,
		.pgid = b->pgid,
		.cookie = b->cookie,
		/*
		 * Orphans are claimed only by the one run there is: while runs overlap (one
		 * ending, the next begun) a cookie-less orphan could be either's, and a live
		 * run's must not be ended with the other.  What it leaves meanwhile goes with
		 * a later run's end, or at exit (and its cgroup leaf holds it, where there is
		 * one).
		 */
		.is_backend = b->claim_orphans && n_claimers == 1 ? is_live_backend : NULL,
		.spare = ctr_spares(b) ? spare_all : NULL,
		.owner = owner_env[0] != '\0' ? backend_owner() : NULL,
		.born = b->born,
	};

	return m;
}

/*
 * Signal the whole tree.  The process group is signalled at once; the rest of the tree
 * (processes that left the group) at this turn's batched scan.
 */
static void
signal_tree(struct backend *b, int sig)
{
	if (!b->reaped && !ctr_spares(b)) {
		/* While the leader is unreaped its group id cannot be reused. */
		(void)kill(-b->pid, sig);
		if (sig == SIGTERM) {
			(void)kill(-b->pid, SIGCONT);
		}
	}
	if (sig == SIGKILL && b->cgroup != NULL && !ctr_spares(b)) {
		(void)cgroup_kill(b->cgroup); /* exact: whatever left the group and the cookie */
	}
	b->pending_signal = sig;
	scan_wanted = true;
}

static void
enter_done(struct backend *b)
{
	n_claimers -= b->claim_orphans;
	b->state = BACKEND_DONE;
	b->t_done = sys_mono();
	ev_timer_stop(b->loop, &b->grace_w);
	ev_timer_stop(b->loop, &b->stall_w);
	close_stdin(b);
	close_stdout(b);
	read_stderr(b, true);
	ending_remove(b);
	if (b->cgroup != NULL && cgroup_remove(b->cgroup) == 0) {
		leaf_forget(b);
	}
	if (b->ctr != NULL) {
		ev_timer_stop(b->loop, &b->ctr->retry_w);
		if (b->ctr->gone) {
			if (!b->ctr->keeper_lists) {
				keeper_container_gone(b->ctr->cidfile, b->ctr->run_label);
			}
			/* The keeper reads an id file that is not there as an empty one. */
			if (b->ctr->own_cidfile) {
				(void)unlink(b->ctr->cidfile);
				ctr_record_remove(b->ctr->cidfile);
			}
		}
	}
	if (!b->done_queued) {
		b->done_queued = true;
		b->next_done = done_head;
		done_head = b;
		/*
		 * on_done runs from the turn watcher, never from inside this call.  Feed it rather
		 * than wait for the next turn: the watchers just stopped may have been the last
		 * that kept the loop running (wrap after the client's EOF).
		 */
		ev_feed_event(b->loop, &turn_w, EV_CUSTOM);
	}
}

/*
 * The tree is gone, and its stdout is paused (the owner's queue is full: a slow client).
 * Nothing is left to write to the pipe, so what it holds is the server's last output, a
 * pipe's worth at most: it is read now, past the pause (the owner's queue may go over its
 * mark by that much), up to the pipe's EOF.  Closed unread (below, in KILLING), it would
 * be lost, and the requests it answers would get errors instead.
 */
static void
drain_stdout(struct backend *b)
{
	int size = fcntl(b->out_fd, F_GETPIPE_SZ);
	size_t budget = (size > 0 ? (size_t)size : (size_t)PIPE_BIG) + 1; /* + the EOF */

	if (sys_scratch_busy) {
		scan_wanted = true; /* the next turn's scan steps it again */
		return;
	}
	b->out_drained = true; /* once: what a writer outside the tree adds waits for the pause */
	while (budget > 0 && b->out_fd >= 0) {
		ssize_t n = sys_read(b->out_fd, sys_scratch, SYS_MIN(SYS_SCRATCH_SIZE, budget));

		if (n > 0) {
			sys_scratch_busy = true;
			(void)framer_feed(&b->outf, sys_scratch, (size_t)n, b->sink, b->owner);
			sys_scratch_busy = false;
			budget -= (size_t)n;
			continue;
		}
		if (n == 0 || errno != EAGAIN) {
			close_stdout(b);
		}
		break; /* EAGAIN: held open outside the tree, as without a pause */
	}
}

/* Re-evaluate after any event: can the teardown finish? */
static void
backend_step(struct backend *b)
{
	if (b->state == BACKEND_DONE) {
		return;
	}
	if (b->reaped && b->tree_empty && b->out_paused && !b->out_eof && b->out_fd >= 0 &&
	    !b->out_drained) {
		drain_stdout(b);
	}
	if (b->state < BACKEND_CLOSING && (b->out_eof || b->in_gone) && !b->reaped) {
		end_closed(b, !b->out_eof);
		return;
	}
	if (b->reaped && b->tree_empty && b->state == BACKEND_KILLING && !b->out_eof) {
		/* Nothing of the tree is left, yet stdout is held open: stop waiting for it. */
		close_stdout(b);
	}
	ctr_step(b);
	if (b->reaped && b->tree_empty && b->out_eof && (b->ctr == NULL || b->ctr->gone)) {
		enter_done(b);
	}
}

static void
begin_teardown(struct backend *b, enum backend_state state)
{
	b->state = state;
	b->t_end = sys_mono();
	ending_add(b);
	scan_wanted = true;
}

void
backend_end(struct backend *b, double grace_ms)
{
	if (b->state >= BACKEND_CLOSING) {
		return;
	}
	if (grace_ms >= 0) {
		b->eof_grace = SYS_MIN(b->eof_grace, grace_ms / 1000.);
		b->term_grace = SYS_MIN(b->term_grace, grace_ms / 1000.);
	}
	begin_teardown(b, BACKEND_CLOSING);
	if (b->exec_errno != 0) {
		/* It never ran, and has exited (to be reaped): its own end, not an EOF. */
		b->exited_by_itself = true;
		b->escalation = BACKEND_ESC_NONE;
	} else {
		b->escalation = BACKEND_ESC_EOF;
		diag_info("session %s: teardown begins (closing the server's stdin)", b->cookie);
	}
	ev_timer_stop(b->loop, &b->stall_w); /* eof-grace bounds the rest */
	if (span_keep(b) == -1) {
		diag_error("session %s: out of memory: lines for the server were lost", b->cookie);
	}
	input_level(b); /* the client is no longer held back by this server */
	if (wbuf_len(&b->inq) == 0) {
		close_stdin(b);
	} else if (b->in_fd >= 0) {
		ev_io_start(b->loop, &b->in_w); /* EOF once the queue is written */
	}
	arm_grace(b, b->eof_grace);
}

bool
backend_is_ending(const struct backend *b)
{
	return b->state >= BACKEND_CLOSING;
}

static const char *ctr_said(const struct backend_ctr *c);

const char *
backend_container_left(const struct backend *b)
{
	return b->ctr != NULL && !b->ctr->gone ? ctr_said(b->ctr) : NULL;
}

static void child_exited(struct backend *b, int wstatus);

/*
 * The server exited, though no turn has reaped it yet (a grace that ran out in the turn
 * that armed it, made long by other work after it, or one that runs before the turn hears
 * of SIGCHLD): reaped here (child_exited()), or, reaped already by libev and not yet said
 * (its watcher comes later in this turn), left to that.  True in both cases: the grace
 * signals nothing yet, and a server that ended within its grace is not said to have
 * needed it.
 */
static bool
exited_unheard(struct backend *b)
{
	int st;
	pid_t r;

	if (b->reaped || b->pid <= 0) {
		return false;
	}
	while ((r = waitpid(b->pid, &st, WNOHANG)) == -1 && errno == EINTR) {
	}
	if (r == b->pid) {
		child_exited(b, st);
		return true;
	}
	return r == -1 && errno == ECHILD;
}

static void
backend_on_grace(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct backend *b = container_of(w, struct backend, grace_w);

	(void)loop;
	(void)revents;
	if ((b->state == BACKEND_CLOSING || b->state == BACKEND_TERMINATING) && !b->grace_waited &&
	    (b->reaped ? !b->reap_scanned : exited_unheard(b))) {
		/*
		 * Exited, and its end not yet taken in (reaped, but its tree not yet scanned
		 * since): what is left of its tree, if anything, is found at the next turn's
		 * scan, and signalled at the next grace.
		 */
		b->grace_waited = true;
		if (!ev_is_active(&b->grace_w)) {
			arm_grace(b, KILL_RESCAN_S); /* time for its stdout's end to be read */
		}
		scan_wanted = true;
		return;
	}
	b->grace_waited = false;
	switch (b->state) {
	case BACKEND_CLOSING:
		close_stdin(b);
		b->state = BACKEND_TERMINATING;
		b->escalation = BACKEND_ESC_TERM;
		signal_tree(b, SIGTERM);
		arm_grace(b, b->term_grace);
		break;
	case BACKEND_TERMINATING:
		b->state = BACKEND_KILLING;
		b->escalation = BACKEND_ESC_KILL;
		b->t_kill = sys_mono();
		__attribute__((fallthrough));
	case BACKEND_KILLING:
		signal_tree(b, SIGKILL);
		arm_grace(b, KILL_RESCAN_S);
		break;
	case BACKEND_RUNNING:
	case BACKEND_DONE:
		BUG("grace timer in state %d", (int)b->state);
	}
	ctr_step(b);
	scan_wanted = true;
}

/* The server's own process exited (or could not be executed). */
static void
child_exited(struct backend *b, int wstatus)
{
	b->reaped = true;
	b->t_reaped = sys_mono();
	b->wstatus = wstatus;
	by_pid_remove(b);
	if (b->state < BACKEND_CLOSING) {
		/* Exited by itself: what is left of its tree goes at once. */
		b->exited_by_itself = true;
		close_stdin(b);
		begin_teardown(b, BACKEND_TERMINATING);
		b->escalation = BACKEND_ESC_NONE;
		arm_grace(b, b->term_grace);
	} else if (b->state == BACKEND_CLOSING && b->exited_by_itself) {
		/* Its exit began the teardown (a crash): on as for any exit, not an EOF. */
		b->state = BACKEND_TERMINATING;
		arm_grace(b, b->term_grace);
	}
	scan_wanted = true;
	if (b->hooks->on_exit != NULL) {
		b->hooks->on_exit(b, b->owner);
	}
}

static void
backend_on_child(struct ev_loop *loop, ev_child *w, int revents)
{
	struct backend *b;
	pid_t pid = w->rpid;

	(void)loop;
	(void)revents;
	if (ctr_reaped(pid, w->rstatus)) {
		return;
	}
	b = by_pid_find(pid);
	if (b != NULL) {
		child_exited(b, w->rstatus);
	}
	/* Any child: a re-parented descendant may have been the last of a tree. */
	scan_wanted = true;
}

/* A run's container as a message names it: its id, else its --name. */
static const char *
ctr_said(const struct backend_ctr *c)
{
	return c->cid[0] != '\0' ? c->cid : c->run.name != NULL ? c->run.name : "(its id unknown)";
}

/*
 * KILLING for kill-deadline and the tree is still not empty: processes mcpmux cannot end
 * (another uid, uninterruptible sleep, EPERM).  The run ends as "abandoned", with their
 * pids, rather than never: no end-of-run reply, no `ended`, a wrap that never exits
 * would be worse.  The pids are said on stderr and given to the owner (b->left).
 */
static void
abandon(struct backend *b, const struct proctree_match *m)
{
	char list[256];
	size_t len = 0, unknown = 0, want = 0, cap = BACKEND_LEFT_INLINE;
	bool cut = false; /* no memory for the list beyond left_in */

	/* The list in the backend itself, or allocated when it is longer (rare). */
	for (size_t i = 0; i < snapshot.n; i++) {
		want += proctree_unattributed(&snapshot, i, m) ||
			proctree_is_member(&snapshot, i, m);
	}
	if (b->left != b->left_in) {
		free(b->left);
	}
	b->n_left = 0;
	b->left = b->left_in;
	if (want > BACKEND_LEFT_INLINE) {
		pid_t *v = calloc(SYS_MIN(want, BACKEND_LEFT_MAX), sizeof(*v));

		if (v != NULL) {
			b->left = v;
			cap = SYS_MIN(want, BACKEND_LEFT_MAX);
		} else {
			cut = true;
		}
	}
	for (size_t i = 0; i < snapshot.n; i++) {
		/*
		 * Also those it could not tell from its own (an environment it cannot read):
		 * they kept the tree from being called empty, and are not signalled.
		 */
		bool held = proctree_unattributed(&snapshot, i, m);

		if (!held && !proctree_is_member(&snapshot, i, m)) {
			continue;
		}
		unknown += held;
		if (b->n_left < cap) {
			b->left[b->n_left++] = snapshot.v[i].pid;
		}
		if (len < sizeof(list) - 16) {
			int n = snprintf(list + len, sizeof(list) - len, "%s%d", len ? " " : "",
					 (int)snapshot.v[i].pid);

			len += n > 0 ? (size_t)n : 0;
		}
	}
	if (!b->reaped && b->n_left == 0) {
		b->left[b->n_left++] = b->pid;
		int n = snprintf(list, sizeof(list), "%d", (int)b->pid);

		len = n > 0 ? (size_t)n : 0;
	}
	if (b->n_left == 0 && !snapshot.incomplete && b->ctr != NULL && !b->ctr->gone) {
		/* Every process is gone: the container is what is left (the keeper's, at exit). */
		diag_error("session %s: container %s was not seen gone within %g s of SIGKILL "
			   "(abandoned; the keeper ends it at mcpmux's exit)",
			   b->cookie, ctr_said(b->ctr), b->kill_deadline);
	} else {
		diag_error(
			"session %s: %zu process(es) would not die within %g s of SIGKILL: %s%s%s%s%s "
			"(abandoned; they may be of another user, or in uninterruptible sleep)",
			b->cookie, SYS_MAX(want, b->n_left), b->kill_deadline, len > 0 ? list : "",
			unknown > 0
				? " (of which some could not be told apart from the tree: their "
				  "environment cannot be read; not signalled)"
				: "",
			snapshot.incomplete ? " and processes /proc could not show" : "",
			b->ctr != NULL && !b->ctr->gone ? ", and container " : "",
			b->ctr == NULL || b->ctr->gone ? "" : ctr_said(b->ctr));
	}
	if (cut) {
		diag_warn("session %s: out of memory: %zu of the %zu pids it left are listed "
			  "(its slot, if any, stays taken until mcpmux exits)",
			  b->cookie, b->n_left, want);
	}
	b->left_partial = snapshot.incomplete || b->n_left >= BACKEND_LEFT_MAX || len == 0 || cut;
	b->escalation = BACKEND_ESC_ABANDONED;
	if (b->ctr != NULL) {
		ev_timer_stop(b->loop, &b->ctr->retry_w);
		ctr_stop(b->ctr);
	}
	if (!b->reaped) {
		by_pid_remove(b); /* reaped later by the pid-0 watcher, whoever it was */
	}
	enter_done(b);
}

/*
 * Can a walk tell anything this turn?  A tree is found empty only once its server is
 * reaped; before that, a walk only signals (pending_signal) or checks the kill deadline
 * (KILLING).  A thousand sessions told to end at once walk nothing until their servers
 * exit; the events that make a walk useful ask for one again (scan_wanted).
 */
static bool
scan_useful(void)
{
	for (const struct backend *b = ending_head; b != NULL; b = b->next_ending) {
		if (b->reaped || b->pending_signal != 0 || b->state == BACKEND_KILLING ||
		    b->ctr != NULL) {
			return true;
		}
	}
	return false;
}

/* Once per loop turn: one /proc walk for every backend that is ending. */
static void
scan_ending(void)
{
	static bool warned_signal;

	if (proctree_scan(&snapshot, PROC_ROOT, getpid()) == -1 || snapshot.incomplete) {
		static bool warned_scan;

		if (!warned_scan) {
			errno = snapshot.error;
			diag_warn_errno(
				"cannot read every process of the trees from /proc (retrying; "
				"trees are not taken as gone meanwhile)");
			warned_scan = true;
		}
		if (ending_head != NULL) {
			scan_wanted = true; /* again next turn, or at the next rescan timer */
		}
	}
	for (struct backend *b = ending_head, *next; b != NULL; b = next) {
		struct proctree_match m = backend_match(b);

		/* A reaped server's pid held by another process: its group is that one's now. */
		proctree_check_group(&snapshot, &m);
		b->pgid = m.pgid;
		size_t n = proctree_count(&snapshot, &m);
		size_t left = proctree_left(&snapshot, &m);

		next = b->next_ending;
		b->reap_scanned = b->reaped;
		if (b->exited_by_itself && b->reaped && b->escalation == BACKEND_ESC_NONE &&
		    n > 0) {
			/* Leftovers of a server that exited: SIGTERM them now. */
			b->escalation = BACKEND_ESC_TERM;
			b->pending_signal = SIGTERM;
		}
		if (b->pending_signal != 0 && n > 0) {
			size_t failed = 0;
			size_t k = proctree_signal(&snapshot, &m, PROC_ROOT, b->pending_signal,
						   &failed);
			char name[32];

			diag_info("session %s: %s to %zu process(es)", b->cookie,
				  rpcout_signame(b->pending_signal, name, sizeof(name)), k);
			if (failed > 0 && !warned_signal) {
				diag_warn("session %s: %zu process(es) of the tree could not be "
					  "signalled (the next step signals them again)",
					  b->cookie, failed);
				warned_signal = true;
			}
		}
		if (b->state == BACKEND_KILLING && b->pending_signal == SIGKILL &&
		    b->t_sigkill == 0) {
			/* Spared while the engine stopped the container: SIGKILL from now on. */
			if (m.spare != NULL) {
				b->kill_spared = true;
			} else {
				b->t_sigkill = b->kill_spared ? sys_mono() : b->t_kill;
			}
		}
		b->pending_signal = 0;
		/*
		 * With a cgroup, the tree is empty only when the cgroup is too (-1: unknown).
		 * Asked only when the walk found nothing left (a file read per ending backend
		 * per scan would make a thousand teardowns quadratic), and by removing the
		 * leaf: the kernel removes only a cgroup that holds no process, so one rmdir
		 * both answers and cleans up; cgroup.events is read only when it failed.
		 */
		int populated = 1;

		if (b->cgroup == NULL) {
			populated = 0;
		} else if (b->reaped && left == 0) {
			if (cgroup_remove(b->cgroup) == 0) {
				leaf_forget(b);
				populated = 0;
			} else {
				populated = cgroup_populated(b->cgroup);
			}
			/*
			 * Nothing left that the walk sees, yet the leaf counts a process: on some
			 * kernels a reaped process leaves its cgroup a moment after the reap.
			 * Look again soon, for a while: no event would say when, and the next
			 * grace step would signal a tree that is gone and report it as such.
			 * Past that while it is a process that escaped the walk (a cleared
			 * environment, a new session): the grace steps and cgroup.kill end it,
			 * without a /proc walk every 10 ms until then.
			 */
			if (populated == 1 && sys_mono() - b->t_reaped < LEAF_SETTLE_S &&
			    !ev_is_active(&leaf_w)) {
				ev_timer_start(mod_loop, &leaf_w);
			}
		}

		b->tree_empty = b->reaped && left == 0 && populated == 0;
		bool ctr_left = b->ctr != NULL && !b->ctr->gone;
		bool procs_left = left > 0 || populated != 0;
		double now = sys_mono();

		/*
		 * Not at the walk that sends SIGKILL to the rest of the tree (it saw the tree
		 * alive before the signal): the deadline is at least one re-arm, whatever it is;
		 * and not before the tree's first SIGKILL, held back while the engine stops the
		 * container, has had that re-arm too, nor while the engine still has its time
		 * to stop the container (ctr_spare_s()).
		 */
		if (b->state == BACKEND_KILLING && (procs_left || ctr_left) &&
		    now - b->t_kill >= b->kill_deadline &&
		    (!procs_left || (b->t_sigkill != 0 && now - b->t_sigkill >= KILL_RESCAN_S)) &&
		    (!ctr_left || now - b->t_kill >= ctr_spare_s(b))) {
			abandon(b, &m);
			continue;
		}
		backend_step(b);
	}
}

/* ---- containers ---- */

static void ctr_read_cid(struct backend_ctr *c);
static bool ctr_killed_while_made(const struct backend_ctr *c);
static void ctr_list_failed(struct backend_ctr *c, const char *why);
static void ctr_name_unanswered(struct backend_ctr *c, const char *why, size_t why_len);

/*
 * The engine's command is over and the run's id file (mcpmux's, or the user's --cidfile,
 * which was not there before the run) holds no id: the engine made no container for it
 * (it writes the id as soon as it has made one), whatever the name.  The file is read
 * again now: it may have been written while the question ran.  A user's --cidfile that
 * was there before the run: the engine refused the run (ctr_prepare).
 */
static bool
ctr_never_made(struct backend_ctr *c)
{
	if (!c->b->reaped || !c->b->tree_empty) {
		return false;
	}
	if (c->cidfile[0] == '\0') {
		return c->run.cidfile != NULL;
	}
	ctr_read_cid(c);
	return c->cid[0] == '\0';
}

/* Run one engine command for c (argv malloc'd by container.h, freed here). */
static void
ctr_helper(struct backend_ctr *c, char **argv, enum ctr_helper what)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int p[2] = { -1, -1 };
	char **env = NULL;
	pid_t pid = -1;
	int rc = -1;

	/* Non-blocking on mcpmux's side only: the command gets a blocking stderr. */
	if (argv == NULL || pipe2(p, O_CLOEXEC) == -1 || sys_set_nonblock(p[0], 1) == -1 ||
	    (env = child_env(NULL)) == NULL) {
		goto out;
	}
	sigemptyset(&none);
	sigfillset(&all);
	if (posix_spawn_file_actions_init(&fa) != 0) {
		goto out;
	}
	if (posix_spawnattr_init(&attr) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		goto out;
	}
	/*
	 * Each action must be recorded (they fail only for want of memory): a command started
	 * without them would write on mcpmux's own stdout, the protocol.
	 */
	rc = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (rc == 0 && (what == CTR_WHOSE || what == CTR_LIST)) {
		rc = posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO); /* its answer */
	} else if (rc == 0) {
		rc = posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	}
	if (rc == 0) {
		rc = posix_spawn_file_actions_adddup2(&fa, p[1], STDERR_FILENO);
	}
	if (rc == 0) {
		rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
							     POSIX_SPAWN_SETSIGDEF |
							     POSIX_SPAWN_SETPGROUP);
	}
	(void)posix_spawnattr_setsigmask(&attr, &none);
	(void)posix_spawnattr_setsigdefault(&attr, &all);
	(void)posix_spawnattr_setpgroup(&attr, 0);
	if (rc == 0) {
		rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, env);
	}
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
out:
	sys_close(&p[1]);
	free(env);
	if (rc != 0) {
		sys_close(&p[0]);
		diag_warn("session %s: cannot run '%s' for its container: %s", c->b->cookie,
			  argv != NULL ? argv[0] : "?", strerror(rc > 0 ? rc : errno));
		free(argv);
		if (what == CTR_LIST) {
			ctr_list_failed(c, "its command cannot be run");
			scan_wanted = true; /* the next turn's scan ends the run */
			return;
		}
		if (what == CTR_WHOSE && ctr_never_made(c)) {
			static const char cannot[] = "its command cannot be run";

			ctr_name_unanswered(c, cannot, sizeof(cannot) - 1);
			scan_wanted = true; /* the next turn's scan ends the run */
			return;
		}
		/* Try again later: the kill deadline bounds it. */
		ev_timer_set(&c->retry_w, CTR_RETRY_S, 0.);
		ev_timer_start(c->b->loop, &c->retry_w);
		return;
	}
	free(argv);
	c->helper = pid;
	c->what = what;
	c->err_fd = p[0];
	c->out_n = 0;
	c->out[0] = '\0';
	c->out_any = false;
	c->out_cut = false;
	container_tail_reset(&c->tail);
	ev_io_init(&c->err_w, backend_on_ctr_out, c->err_fd, EV_READ);
	ev_io_start(c->b->loop, &c->err_w);
	c->helper_since = sys_mono();
	c->helper_s = CTR_HELPER_S;
	if (what == CTR_LIST) {
		/*
		 * Half the time left to the kill deadline, at most: a listing with no answer in
		 * time fails (said), and what it finds still has the rest for its ladder.
		 */
		const struct backend *b = c->b;
		double left = b->state == BACKEND_KILLING
				      ? b->t_kill + b->kill_deadline - c->helper_since
				      : b->kill_deadline;

		c->helper_s = SYS_MAX(0.01, SYS_MIN(CTR_HELPER_S, left / 2));
	}
	/* A hung engine command is killed (the retry timer doubles as its watchdog). */
	ev_timer_set(&c->retry_w, c->helper_s, 0.);
	ev_timer_start(c->b->loop, &c->retry_w);
}

/*
 * The run is over (abandoned, or its backend freed): an engine command still running is
 * killed with its process group, not left to run unwatched until mcpmux exits; its end
 * is reaped by the pid-0 watcher, and no further step of the ladder follows.
 */
static void
ctr_stop(struct backend_ctr *c)
{
	if (c->helper != 0) {
		sys_kill_group(c->helper);
	}
	c->helper = 0;
	c->what = CTR_NONE;
	if (c->err_fd >= 0 && c->b != NULL && c->b->loop != NULL) {
		ev_io_stop(c->b->loop, &c->err_w);
	}
	sys_close(&c->err_fd);
}

/* The engine's time to stop the container, into KILLING: half the kill deadline, 1 s at least. */
static double
ctr_spare_s(const struct backend *b)
{
	return SYS_MAX(1.0, b->kill_deadline / 2);
}

/*
 * While the engine has not yet killed the container, the run's processes (the engine's
 * command, its monitor, the container under it) are spared from mcpmux's own signals: the
 * engine must stop it first (container.h, spare_all()).  Not for ever: ctr_spare_s() into
 * KILLING, everything is fair game.
 */
static bool
ctr_spares(const struct backend *b)
{
	const struct backend_ctr *c = b->ctr;

	return c != NULL && !c->gone && !c->kill_done &&
	       !(b->state == BACKEND_KILLING && sys_mono() - b->t_kill >= ctr_spare_s(b));
}

/* The container's id, from its cidfile once the engine has written it. */
static void
ctr_read_cid(struct backend_ctr *c)
{
	char buf[CONTAINER_ID_MAX + 2];
	int fd;
	ssize_t n;

	if (c->cid[0] != '\0' || c->cidfile[0] == '\0' ||
	    (fd = open(c->cidfile, O_RDONLY | O_CLOEXEC)) == -1) {
		return;
	}
	n = sys_read(fd, buf, sizeof(buf) - 1);
	sys_close(&fd);
	if (n > 0) {
		buf[n] = '\0';
		buf[strcspn(buf, "\r\n \t")] = '\0';
		buf[CONTAINER_ID_MAX] = '\0';
		memcpy(c->cid, buf, strlen(buf) + 1);
	}
}

/*
 * The run's processes are gone, its id file holds no id, and the engine's command was
 * killed by a signal (by the teardown, or by another, such as the OOM killer, before it),
 * maybe while the engine made the container, which the engine goes on with without it.
 * Its id file never gets that container's id, and the engine is asked for it by the run's
 * labels.
 */
static bool
ctr_killed_while_made(const struct backend_ctr *c)
{
	const struct backend *b = c->b;

	return c->cidfile[0] != '\0' && owner_env[0] != '\0' && b->reaped && b->tree_empty &&
	       WIFSIGNALED(b->wstatus);
}

/*
 * The run has no id file at all (no directory for mcpmux's, nor a --cidfile of its own):
 * once its processes are gone, its labels find the container the engine made for it.
 */
static bool
ctr_found_by_labels(const struct backend_ctr *c)
{
	return c->cidfile[0] == '\0' && c->run.cidfile == NULL && owner_env[0] != '\0';
}

/* The next id the listing gave: its ladder begins, from the check of its labels. */
static void
ctr_next_listed(struct backend_ctr *c)
{
	size_t len = strlen(c->ids) + 1;

	(void)snprintf(c->cid, sizeof(c->cid), "%s", c->ids);
	memmove(c->ids, c->ids + len, c->ids_n - len);
	c->ids_n -= len;
	c->by_label = true;
	c->id_checked = false;
	c->sent_term = c->sent_kill = c->sent_rm = false;
	c->gone = false;
}

/*
 * The engine could not be asked (or did not answer) for the containers of the run's
 * labels: the run ends all the same, not abandoned at --kill-deadline for a container
 * that may never have been made; the keeper is not told it is gone, and asks again at
 * mcpmux's exit (and `mcpmux sweep` finds it by its labels).
 */
static void
ctr_list_failed(struct backend_ctr *c, const char *why)
{
	diag_warn("session %s: cannot ask the engine for the container of run %s, whose id "
		  "file is empty (%s): a container it made is left to the keeper at mcpmux's "
		  "exit (and to `mcpmux sweep`)",
		  c->b->cookie, c->run_label, why);
	c->keeper_lists = true;
	c->gone = true;
}

/*
 * The engine's command is over and the engine cannot say whether the container of the
 * run's name was made (why: why_len bytes of its answer): gone; but for a command killed
 * while the engine made it, not said gone, so that the keeper asks again.
 */
static void
ctr_name_unanswered(struct backend_ctr *c, const char *why, size_t why_len)
{
	if (ctr_killed_while_made(c)) {
		char text[160];

		(void)snprintf(text, sizeof(text), "its name %s: %.*s",
			       c->run.name != NULL ? c->run.name : "?", (int)SYS_MIN(why_len, 100),
			       why);
		ctr_list_failed(c, text);
	}
	c->gone = true;
}

/*
 * The next step of the container's ladder, if any: it follows the backend's state.  One
 * engine command at a time; each one's end calls this again.
 */
static void
ctr_step(struct backend *b)
{
	struct backend_ctr *c = b->ctr;
	char *const *pre;

	if (c != NULL && c->gone && c->ids_n > 0 && b->state != BACKEND_DONE) {
		ctr_next_listed(c);
	}
	if (c == NULL || c->gone || c->helper != 0 || b->state == BACKEND_RUNNING ||
	    b->state == BACKEND_DONE || ev_is_active(&c->retry_w)) {
		return;
	}
	pre = c->argv;
	ctr_read_cid(c);
	const char *id = c->cid[0] != '\0' ? c->cid : c->run.name;

	if (id == NULL) {
		/*
		 * No id yet.  The run's processes gone, an engine's command that exited made no
		 * container (it writes the id as soon as the engine has made one); one that was
		 * killed, by mcpmux or not, may have been killed while the engine made it:
		 * asked, once.
		 */
		if (b->reaped && b->tree_empty && !c->listed &&
		    (ctr_killed_while_made(c) || ctr_found_by_labels(c))) {
			c->listed = true;
			ctr_helper(c,
				   container_list_run_argv(pre, c->run.prefix_len, backend_owner(),
							   c->run_label),
				   CTR_LIST);
		} else if (b->reaped && b->tree_empty) {
			c->gone = true;
		}
		return;
	}
	if (!c->id_checked && (c->by_label || !(c->own_cidfile && c->cid[0] != '\0'))) {
		/*
		 * Known by its --name (no id yet), or by the user's --cidfile: that name may be
		 * another run's, whose name made this run's refused, and that file may have
		 * been written by another run of the same command line.  Its labels say.
		 */
		ctr_helper(c, container_whose_argv(pre, c->run.prefix_len, id), CTR_WHOSE);
		return;
	}
	if (b->state >= BACKEND_TERMINATING && !c->sent_term) {
		c->sent_term = true;
		ctr_helper(c, container_kill_argv(pre, c->run.prefix_len, "TERM", id), CTR_KILL);
	} else if (b->state >= BACKEND_KILLING && !c->sent_kill) {
		c->sent_kill = true;
		ctr_helper(c, container_kill_argv(pre, c->run.prefix_len, "KILL", id), CTR_KILL);
	} else if ((b->reaped && b->tree_empty) || b->state >= BACKEND_KILLING) {
		/* The run is over: is the container gone (--rm), or must it be removed? */
		ctr_helper(c, container_inspect_argv(pre, c->run.prefix_len, id), CTR_INSPECT);
	}
}

/*
 * The labels and id of the container this run knows by a name or by an id file it did
 * not make (out[0..n)): this run's, whose ladder goes on by that id from now on; or
 * another's (or none by that name, once the engine's command is over), which this run
 * never touches.
 */
static void
ctr_whose_done(struct backend_ctr *c, bool ok, bool gone, const char *out, ssize_t n)
{
	struct backend *b = c->b;
	struct container_whose w;
	bool found = ok && n > 0 && container_whose_parse(out, (size_t)n, &w);

	if (found && strcmp(w.owner, backend_owner()) == 0 && strcmp(w.session, b->cookie) == 0) {
		c->id_checked = true;
		(void)snprintf(c->cid, sizeof(c->cid), "%s", w.id); /* no name reused meanwhile */
	} else if (found && b->reaped && b->tree_empty) {
		/*
		 * Another's, and the engine's command is over: it made none of that name, or
		 * wrote no id of its own (a name is unique, an id file names one).  Before that,
		 * the other may still give the name up and this run's take it: asked again.
		 */
		diag_warn("session %s: container %s is another run's (owner '%s', session '%s'): "
			  "left alone",
			  b->cookie, c->cid[0] != '\0' ? c->cid : c->run.name, w.owner, w.session);
		c->cid[0] = '\0';
		c->gone = true;
	} else if (gone && b->reaped && b->tree_empty) {
		c->gone = true; /* none of that name, and the engine's command is over */
	} else if (ctr_never_made(c)) {
		/*
		 * The engine cannot say (not there, not reachable): as without a name, but for
		 * a command killed while the engine made it, which the engine cannot be asked
		 * about now: not said gone, the keeper asks again (as for a failed listing).
		 */
		size_t why_n;
		const char *why = container_why(c->tail.buf, c->tail.n, &why_n);

		ctr_name_unanswered(c, why_n > 0 ? why : "no answer",
				    why_n > 0 ? why_n : strlen("no answer"));
	} else {
		/* Not made yet, or no answer that can be read: ask again a little later. */
		ev_timer_set(&c->retry_w, CTR_RETRY_S, 0.);
		ev_timer_start(b->loop, &c->retry_w);
	}
	if (c->gone) {
		diag_info("session %s: its container is gone", b->cookie);
	}
	ctr_step(b);
	backend_step(b);
}

/*
 * The engine's answer for the containers of the run's labels (out[0..n), n -1 when there
 * was none): each one it gives goes through the ladder of a container known by a name
 * (its labels checked first), in turn; none, and the run's container is gone.
 */
static void
ctr_list_done(struct backend_ctr *c, int st, const char *out, ssize_t n)
{
	struct backend *b = c->b;
	const char *pos = out, *end = out + (n > 0 ? n : 0);
	size_t k = 0;

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char why[128];

		if (WIFEXITED(st)) {
			size_t said_n;
			const char *said = container_why(c->tail.buf, c->tail.n, &said_n);

			(void)snprintf(why, sizeof(why), "exit %d: %.*s", WEXITSTATUS(st),
				       (int)said_n, said);
		} else if (sys_mono() - c->helper_since >= c->helper_s) {
			(void)snprintf(why, sizeof(why), "no answer in %.1f s (killed)",
				       c->helper_s);
		} else {
			char name[32];

			(void)snprintf(why, sizeof(why), "ended by %s",
				       rpcout_signame(WIFSIGNALED(st) ? WTERMSIG(st) : 0, name,
						      sizeof(name)));
		}
		ctr_list_failed(c, why);
	} else if ((c->ids = malloc((size_t)(end - pos) + 1)) == NULL) {
		ctr_list_failed(c, strerror(errno));
	} else {
		c->ids_n = container_listed_ids(out, (size_t)(end - pos), c->ids,
						(size_t)(end - pos) + 1, &k);
		diag_info("session %s: the engine lists %zu container(s) of run %s", b->cookie, k,
			  c->run_label);
		c->gone = true; /* ctr_step goes on with each id listed */
		if (c->out_cut) {
			/* Those past what was read (and the line cut there) are the keeper's. */
			diag_warn(
				"session %s: the engine lists more containers of run %s than mcpmux "
				"reads (%zu read): the others are left to the keeper at mcpmux's "
				"exit (and to `mcpmux sweep`)",
				b->cookie, c->run_label, k);
			c->keeper_lists = true;
		}
	}
	ctr_step(b);
	backend_step(b);
}

/*
 * Read what the engine command has written so far into c->out (NUL-terminated): its
 * start; for CTR_WHOSE and CTR_LIST, from the marked line on, however much the engine warned before
 * it.  What does not fit is read and dropped, so that the command never blocks on a full
 * pipe.  At most budget bytes a call: a process that holds the pipe and writes faster
 * than the loop reads must not keep it here.  false once the pipe is at its end (or
 * fails); true when it may have more.
 */
static bool
ctr_drain(struct backend_ctr *c, size_t budget)
{
	const size_t cap = sizeof(c->out) - 1;
	char sink[4096];
	bool more = true;

	for (size_t got = 0; got < budget;) {
		/* Full: the start is kept; or, for CTR_WHOSE and CTR_LIST, the marked line, from
		 * its start. */
		if (c->out_n == cap && c->what == CTR_WHOSE) {
			c->out_n = container_whose_keep(c->out, c->out_n);
		} else if (c->out_n == cap && c->what == CTR_LIST) {
			c->out_n = container_listed_keep(c->out, c->out_n);
		}
		bool full = c->out_n == cap;
		// cppcheck-suppress legacyUninitvar ; sink is written by the read, never read
		ssize_t k = sys_read(c->err_fd, full ? sink : c->out + c->out_n,
				     full ? sizeof(sink) : cap - c->out_n);

		if (k <= 0) {
			more = k == -1 && (errno == EAGAIN || errno == EWOULDBLOCK);
			break;
		}
		c->out_any = true;
		container_tail_add(&c->tail, full ? sink : c->out + c->out_n, (size_t)k);
		got += (size_t)k;
		if (!full) {
			c->out_n += (size_t)k;
		} else {
			c->out_cut = true;
		}
	}
	c->out[c->out_n] = '\0';
	return more;
}

static void
backend_on_ctr_out(struct ev_loop *loop, ev_io *w, int revents)
{
	struct backend_ctr *c = container_of(w, struct backend_ctr, err_w);

	(void)revents;
	if (!ctr_drain(c, CTR_DRAIN_TURN)) {
		ev_io_stop(loop, w); /* the rest comes with its exit (ctr_helper_done) */
	}
}

/* An engine command ended with wait status st. */
static void
ctr_helper_done(struct backend_ctr *c, int st)
{
	struct backend *b = c->b;
	/* its stderr (and, for CTR_WHOSE and CTR_LIST, its answer, after any warnings) */
	char err[sizeof(c->out)];

	if (c->err_fd >= 0) {
		ev_io_stop(b->loop, &c->err_w);
		/* It has exited: what is left is in the pipe (and, bounded, what a child of
		 * its that still holds the pipe writes). */
		(void)ctr_drain(c, CTR_DRAIN_END);
	}
	ssize_t n = c->err_fd >= 0 && c->out_any ? (ssize_t)c->out_n : -1;
	bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;

	memcpy(err, c->out, c->out_n + 1);
	/* (killed at its deadline, or by any signal: no answer, whatever it said first) */
	bool gone = !ok && WIFEXITED(st) && n > 0 && container_gone_output(&c->tail);
	enum ctr_helper what = c->what;

	sys_close(&c->err_fd);
	c->helper = 0;
	c->what = CTR_NONE;
	ev_timer_stop(b->loop, &c->retry_w);
	if (what == CTR_WHOSE) {
		ctr_whose_done(c, ok, gone, err, n);
		return;
	}
	if (what == CTR_LIST) {
		ctr_list_done(c, st, err, n);
		return;
	}
	if ((what == CTR_KILL && c->sent_kill) || what == CTR_RM) {
		c->kill_done = true;
		scan_wanted = true; /* what was spared may be signalled now */
	}
	if (gone) {
		c->gone = true;
	} else if (what == CTR_RM && ok) {
		c->gone = true;
	} else if (what == CTR_INSPECT && ok) {
		/* Still there (exited, or not yet removed by --rm): remove it, once. */
		if (!c->sent_rm) {
			c->sent_rm = true;
			ctr_helper(c,
				   container_rm_argv(c->argv, c->run.prefix_len,
						     c->cid[0] != '\0' ? c->cid : c->run.name),
				   CTR_RM);
			return;
		}
		ev_timer_set(&c->retry_w, CTR_RETRY_S, 0.);
		ev_timer_start(b->loop, &c->retry_w);
	} else if (!ok && what != CTR_KILL) {
		/* The engine could not tell (not reachable?): ask again a little later. */
		size_t why_n;
		const char *why = container_why(c->tail.buf, c->tail.n, &why_n);

		if (why_n > 0) {
			diag_warn("session %s: the container engine: %.*s", b->cookie, (int)why_n,
				  why);
		}
		if (what == CTR_INSPECT && n > 0 && !c->sent_rm && b->state >= BACKEND_KILLING) {
			/*
			 * It answers, but not about the container: one half removed (its
			 * store lost it, its list did not).  rm -f clears what is left.
			 */
			c->sent_rm = true;
			ctr_helper(c,
				   container_rm_argv(c->argv, c->run.prefix_len,
						     c->cid[0] != '\0' ? c->cid : c->run.name),
				   CTR_RM);
			return;
		}
		ev_timer_set(&c->retry_w, CTR_RETRY_S, 0.);
		ev_timer_start(b->loop, &c->retry_w);
	}
	if (c->gone) {
		diag_info("session %s: container %.12s is gone", b->cookie, c->cid);
	}
	ctr_step(b);
	backend_step(b);
}

static void
backend_on_ctr_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct backend_ctr *c = container_of(w, struct backend_ctr, retry_w);

	(void)loop;
	(void)revents;
	if (c->helper != 0) {
		/* The timer may come a little before the helper's time (set from the loop's clock).
		 */
		double left = c->helper_since + c->helper_s - sys_mono();

		if (left > 0) {
			ev_timer_set(&c->retry_w, left, 0.);
			ev_timer_start(c->b->loop, &c->retry_w);
			return;
		}
		/*
		 * Its group: what it started too (podman's runtime, which it waits for), or that
		 * would go on, late, as an orphan.  Its end comes through the child watcher.
		 */
		sys_kill_group(c->helper);
		return;
	}
	ctr_step(c->b);
}

/* Is pid one of the engine commands?  Then its end is handled here. */
static bool
ctr_reaped(pid_t pid, int st)
{
	for (struct backend_ctr *c = ctr_head; c != NULL; c = c->next) {
		if (c->helper == pid) {
			ctr_helper_done(c, st);
			return true;
		}
	}
	return false;
}

static void
backend_on_turn(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	dirty_flush();
	if (scan_wanted && ending_head != NULL) {
		scan_wanted = false;
		if (scan_useful()) {
			scan_ending();
		}
	}
	if (sys_big_alloc) {
		/* Big buffers were allocated: give memory back a second after the last one. */
		sys_big_alloc = false;
		if (!ev_is_active(&trim_w)) {
			ev_timer_again(loop, &trim_w);
			ev_unref(loop); /* never what keeps the loop running */
		} else {
			ev_timer_again(loop, &trim_w);
		}
	}
	/* on_done may free the backend: unlink first. */
	while (done_head != NULL) {
		struct backend *b = done_head;

		done_head = b->next_done;
		b->done_queued = false;
		diag_info("session %s: ended (%s, %.0f ms)", b->cookie,
			  backend_escalation_name(b->escalation), backend_end_ms(b));
		b->hooks->on_done(b, b->owner);
	}
	/* What this turn logged leaves mcpmux's buffer (for the file, or its writer) before
	 * the loop sleeps. */
	tlog_flush();
}

static void
backend_on_trim(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct backend *b, *tmp;

	(void)revents;
	ev_ref(loop);
	ev_timer_stop(loop, w);
	HASH_ITER (hh, by_pid, b, tmp) {
		// cppcheck-suppress uninitvar ; uthash iteration over calloc()ed backends
		pipes_resize(b, PIPE_SMALL);
	}
	for (b = unhashed; b != NULL; b = b->next_unhashed) {
		pipes_resize(b, PIPE_SMALL);
	}
	jsonrpc_trim();
	(void)malloc_trim(0);
}

void
backend_signal_groups(int sig)
{
	struct backend *b, *tmp;

	HASH_ITER (hh, by_pid, b, tmp) {
		// cppcheck-suppress uninitvar ; uthash iteration over calloc()ed backends
		if (!b->reaped && b->pgid > 0) {
			(void)kill(-b->pgid, sig);
		}
	}
	for (b = unhashed; b != NULL; b = b->next_unhashed) {
		if (!b->reaped && b->pgid > 0) {
			(void)kill(-b->pgid, sig);
		}
	}
}

double
backend_end_ms(const struct backend *b)
{
	if (b->t_end == 0) {
		return 0;
	}
	double end = b->state == BACKEND_DONE ? b->t_done : sys_mono();

	return (end - b->t_end) * 1000.;
}

const char *
backend_escalation_name(enum backend_escalation e)
{
	switch (e) {
	case BACKEND_ESC_NONE:
		return "none";
	case BACKEND_ESC_EOF:
		return "eof";
	case BACKEND_ESC_TERM:
		return "term";
	case BACKEND_ESC_KILL:
		return "kill";
	case BACKEND_ESC_ABANDONED:
		return "abandoned";
	}
	return "none";
}

int
backend_exit_code(const struct backend *b)
{
	if (b->exec_errno != 0) {
		return !b->exec_prep && b->exec_errno == ENOENT ? 127 : 126;
	}
	if (b->wstatus < 0) {
		return 1;
	}
	if (WIFSIGNALED(b->wstatus)) {
		return 128 + WTERMSIG(b->wstatus);
	}
	return WEXITSTATUS(b->wstatus);
}

void
backend_free(struct backend *b)
{
	if (b == NULL) {
		return;
	}
	if (b->state != BACKEND_DONE || b->done_queued) {
		BUG("backend_free() of a backend that is not done");
	}
	for (struct backend **pp = &dirty_head; *pp != NULL; pp = &(*pp)->next_dirty) {
		if (*pp == b) {
			*pp = b->next_dirty;
			break;
		}
	}
	ev_timer_stop(b->loop, &b->stall_w);
	errout_cancel(&b->err_wait);
	pipes_resize(b, PIPE_SMALL); /* gives its share of the budget back */
	ctr_free(b->ctr);
	framer_release(&b->outf);
	wbuf_release(&b->inq);
	leaf_forget(b);
	if (b->left != b->left_in) {
		free(b->left);
	}
	free(b->exec_why);
	free(b);
}

const char *
backend_exec_text(const struct backend *b, char *buf, size_t len)
{
	if (b->exec_why != NULL) {
		return b->exec_why;
	}
	(void)snprintf(buf, len, "%s: %s",
		       b->exec_prep ? "could not prepare the server's process"
				    : "cannot run the server's command",
		       strerror(b->exec_errno));
	return buf;
}

/* A process the exit has sent its SIGKILL (its pid and start time). */
struct left_killed {
	pid_t pid;
	unsigned long long start;
};

/* Was pi sent its SIGKILL by an earlier walk? */
static bool
left_was_killed(const struct left_killed *v, size_t n, const struct proc_info *pi)
{
	for (size_t k = 0; k < n; k++) {
		if (v[k].pid == pi->pid && v[k].start == pi->start) {
			return true;
		}
	}
	return false;
}

/* Remember pi as sent its SIGKILL.  false when there is no memory for it. */
static bool
left_add_killed(struct left_killed **v, size_t *n, size_t *cap, const struct proc_info *pi)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct left_killed *nv = realloc(*v, ncap * sizeof(*nv));

		if (nv == NULL) {
			return false;
		}
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = (struct left_killed){ pi->pid, pi->start };
	return true;
}

/*
 * Wait until every process of fds[0..n) has exited (its pidfd reads POLLIN), or until
 * `until` (sys_mono()); with `nap`, LEFT_NAP_S at most: some processes have no pidfd,
 * and the next walk looks in /proc for them.  Closes the pidfds.
 */
static void
leftovers_wait(struct pollfd *fds, size_t n, bool nap, double until)
{
	double stop = nap ? SYS_MIN(until, sys_mono() + LEFT_NAP_S) : until;
	size_t open = n;

	while (open > 0 || nap) {
		double left = stop - sys_mono();

		if (left <= 0) {
			break;
		}
		int rc = poll(fds, (nfds_t)n, (int)(SYS_MIN(left, 1.) * 1000.) + 1);

		if (rc == -1 && errno != EINTR) {
			break;
		}
		for (size_t k = 0; rc > 0 && k < n; k++) {
			if (fds[k].fd >= 0 && fds[k].revents != 0) {
				sys_close(&fds[k].fd); /* poll() skips it from now on */
				open--;
			}
		}
	}
	for (size_t k = 0; k < n; k++) {
		sys_close(&fds[k].fd);
	}
}

size_t
backend_kill_leftovers(double kill_deadline)
{
	struct proctree left;
	struct pollfd fds[LEFT_PIDFDS];
	struct left_killed *killed = NULL;
	char list[256];
	size_t n = 0, n_killed = 0, cap_killed = 0, there = 0;
	pid_t self = getpid(), keeper = keeper_pid_live();
	bool last = false, unseen = false;
	double until = sys_mono() + SYS_MAX(kill_deadline, KILL_RESCAN_S);

	proctree_init(&left);
	for (unsigned walk = 1;; walk++) {
		size_t nfds = 0, len = 0;
		bool blind = proctree_scan(&left, PROC_ROOT, self) == -1;

		there = 0;
		if (blind) {
			left.n = 0;
		}
		/* What could not be read is not taken as gone. */
		unseen = blind || left.incomplete;
		bool nap = unseen;

		for (size_t i = 0; i < left.n; i++) {
			const struct proc_info *pi = &left.v[i];
			int st, fd;
			pid_t r = 0;

			if (pi->pid == keeper) {
				continue; /* mcpmux as pid 1: its keeper came back to it */
			}
			if (pi->state == 'Z' || pi->state == 'X') {
				/* Ours is reaped (else it is in /proc after the exit); another's
				 * goes with its parent, which is signalled. */
				while (pi->ppid == self &&
				       (r = waitpid(pi->pid, &st, WNOHANG)) == -1 &&
				       errno == EINTR) {
				}
				if (pi->ppid != self || r != 0) {
					continue;
				}
			}
			there++;
			if (len < sizeof(list) - 16) {
				int k = snprintf(list + len, sizeof(list) - len, "%s%d",
						 len ? " " : "", (int)pi->pid);

				len += k > 0 ? (size_t)k : 0;
			}
			if (last || pi->state == 'Z' || pi->state == 'X') {
				continue;
			}
			/* One killed by a walk before, still dying: waited for, not counted again.
			 */
			bool again = left_was_killed(killed, n_killed, pi);

			if (proctree_signal_pidfd(&left, i, PROC_ROOT, again ? 0 : SIGKILL, &fd) ==
				    PROCTREE_SENT &&
			    !again) {
				n++;
				(void)left_add_killed(&killed, &n_killed, &cap_killed, pi);
			}
			/* Waited for even when it could not be signalled: it may go by itself. */
			if (nfds < LEFT_PIDFDS && fd >= 0) {
				fds[nfds].fd = fd;
				fds[nfds].events = POLLIN;
				fds[nfds].revents = 0;
				nfds++;
			} else {
				sys_close(&fd);
				nap = true;
			}
		}
		if ((there == 0 && !unseen) || last) {
			break;
		}
		/*
		 * A process that forked while the walk read the tree, or whose parent died
		 * since, is found by the next walk: walk again once these are gone, until a
		 * walk finds nothing.  The last one, at the deadline or the walks' bound, only
		 * looks.
		 */
		leftovers_wait(fds, nfds, nap, until);
		last = walk + 1 >= LEFT_WALKS || sys_mono() >= until;
	}
	if (there > 0) {
		diag_error("%zu leftover process(es) still there at mcpmux's exit: %s%s (they may "
			   "be of another user, or in uninterruptible sleep)",
			   there, list, unseen ? ", and processes /proc could not show" : "");
	} else if (unseen) {
		diag_error("processes /proc could not show may be left at mcpmux's exit");
	}
	free(killed);
	proctree_release(&left);
	return n;
}
