/*
 * keeper: what ends a run when mcpmux itself cannot.
 *
 * A SIGKILLed (or OOM-killed, or crashed) mcpmux runs no teardown: its servers' direct
 * children die with it (parent-death signal), but what they started, a launcher's real
 * server or a daemonised grandchild, would live on.  So every wrap and serve starts a
 * keeper first: a small process (a fork of mcpmux, named "mcpmux-keeper", in a session
 * of its own so that a hangup or a signal to mcpmux's process group misses it, holding
 * none of mcpmux's descriptors but a pipe, and a socket for the pool's slots) that
 * waits for the pipe to end.  mcpmux writes
 * to it what it cannot find from /proc alone (its cgroup, the containers its servers
 * run), and "done" just before it exits normally.  When the pipe ends without "done",
 * mcpmux is gone, and the keeper ends what carried it: the instance cgroup, if there is
 * one, with cgroup.kill; every process whose MCPMUX_OWNER names this mcpmux (SIGTERM and
 * SIGCONT, then SIGKILL after --term-grace; pids checked against their start times); and
 * the containers (kill, then rm -f).  Then it exits.  After "done" it exits at once,
 * unless containers it was told about were never said gone (their teardown abandoned
 * while their engine was slow): those it still ends, the same way, after letting mcpmux
 * go.  For each container it says what happened: removed, or not, with the engine's
 * answer.
 *
 * The keeper is started before mcpmux becomes a subreaper, by a double fork, so that it
 * is not mcpmux's descendant: no tree walk of mcpmux's ever counts or signals it.
 */
#ifndef MCPMUX_KEEPER_H
#define MCPMUX_KEEPER_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * Start the keeper for this process.  argv is main()'s (the keeper shows its own command
 * line in it).  0, or -1 (errno): mcpmux then runs without one, and says so.
 */
int keeper_start(double term_grace, int argc, char **argv);
/*
 * --kill-deadline, in seconds, before keeper_start(): at a normal exit that left pool
 * slots kept (an abandoned teardown), the keeper holds them while a process of mcpmux's
 * still runs, for that long at most.
 */
void keeper_kill_deadline(double seconds);
/* The instance cgroup to kill if mcpmux dies. */
void keeper_cgroup(const char *dir);
/*
 * A container that a server runs in: prefix[0..n) are the words that reach its engine
 * (launcher, engine, global options: container.h), cidfile where the engine writes its id
 * ("" when the run has none: its labels alone find it, run is then needed), run its
 * mcpmux.run label (or NULL): what finds it while that file is still empty; own
 * when that file is mcpmux's (the keeper removes it when it stays empty), not the user's.
 * Every word goes, however long or many; when the keeper cannot be told (a tab, a line
 * end or 0x1f in a word or in the file's name, no memory, a write that failed), mcpmux
 * says so on stderr.
 */
void keeper_container(char *const *prefix, size_t n, const char *cidfile, const char *run,
		      bool own);
/*
 * That container is gone: the one told with this cidfile and run ("D\t<cidfile>[\t<run>]\n";
 * runs of one command line with a user's --cidfile share the file, not the run).
 */
void keeper_container_gone(const char *cidfile, const char *run);
/*
 * A pool slot's locked file (pool.h): the keeper gets a descriptor of it (the same open
 * file, so the same lock) over a socket of its own, and holds it; should mcpmux be killed,
 * the slot stays taken until the keeper has ended what mcpmux left.  A slot not handed is
 * said once on stderr.  keeper_slot_gone(): the slot is free (its file removed before),
 * the keeper lets its descriptor go (and, should this record not go, when the next one
 * comes, the file being gone: nothing is said).  struct keeper_slot, in the slot itself,
 * lists the slots told, so that a keeper started in place of one gone is told them again
 * (keeper_restart()) without memory to allocate.
 */
struct keeper_slot {
	int fd;
	struct keeper_slot *prev, *next;
};
void keeper_slot(struct keeper_slot *ks, int fd);
void keeper_slot_gone(struct keeper_slot *ks);
/* mcpmux exits with the slot still taken (pool_keep()): the keeper keeps its descriptor. */
void keeper_slot_left(struct keeper_slot *ks);
/* The keeper's pid while it runs; 0 when it is gone or unknown. */
pid_t keeper_pid_live(void);
/* The descriptor that reads EOF once the keeper is gone (-1 when there is none). */
int keeper_ack_fd(void);
/* Was a keeper ever asked for (keeper_start() called), whether or not one runs? */
bool keeper_tried_start(void);
/* There is no keeper, or it is gone (its descriptor reads EOF). */
bool keeper_gone(void);
/*
 * The keeper is gone while mcpmux runs (killed): start another, and tell it again what
 * the first was told and is still there (the cgroup, the containers not said gone).
 * mcpmux is a subreaper by then, so the new keeper is its child, as where mcpmux is pid 1
 * (keeper_pid_live() tells it from an orphan of a run).  One try, its middle child waited
 * for half a second at most (then killed, and the try failed), the lines told again within
 * a second together (what was not told is said).  The pid of the keeper gone (0 when
 * unknown; after failed tries, the one they were to replace), or -1 (errno) when none
 * could be started: the caller tries again later.
 */
pid_t keeper_restart(void);
/*
 * mcpmux is exiting normally ("X"): the keeper exits without touching anything, unless
 * containers it was told about were not said gone (a teardown abandoned while the engine
 * was slow).  Then it lets mcpmux go at once and ends those containers as after a kill.
 */
void keeper_done(void);

/*
 * The line that tells the keeper about a container ("C\t<cidfile>\t<words separated by
 * 0x1f>[\t<run>[\town]]\n", "own" for mcpmux's own id file), malloc'd; NULL with errno EINVAL when
 * a word or run holds a tab, a line end or 0x1f (or the file's name a tab or a line end, or run
 * is empty, or the file's name is without a run, or n is 0), ENOMEM.  Exposed for tests.
 */
char *keeper_container_line(char *const *prefix, size_t n, const char *cidfile, const char *run,
			    bool own);
/*
 * Split words separated by 0x1f, in place: a malloc'd NULL-terminated array of pointers
 * into words (free() it), with *n entries; NULL when memory runs out.  Exposed for tests.
 */
char **keeper_split_words(char *words, size_t *n);

/*
 * The keeper's work, run in the keeper process when mcpmux is gone (exposed for tests):
 * end every process whose MCPMUX_OWNER is `owner`, TERM then KILL after term_grace
 * seconds, and report on stderr.  Returns the number of processes that would not die.
 */
size_t keeper_end_owned(const char *proc_root, const char *owner, double term_grace);

#endif
