/*
 * pool: at most N live servers of one command across a user's mcpmux instances.
 *
 * No daemon: a directory per pool under the runtime directory (sys_runtime_dir(),
 * "pools/<hash of the name>", 0700), and in it one file per live server ("s.PID.SEQ"),
 * held with an exclusive flock() by the instance that runs it for as long as it runs.
 * A file whose lock can be taken belongs to a dead instance: it is not counted, and it
 * is removed by whoever sees it, so nothing goes stale.  The file says whether its server
 * is busy (requests in flight either way, a message it is still writing, or a resume under
 * way), idle, and since when ("idle NS", the CLOCK_MONOTONIC nanoseconds of its last
 * answer), or going (being suspended: its slot is on its way); after it, in the same
 * write, the instance's start time ("start TICKS", field 22 of /proc/PID/stat).
 *
 * An instance that wants one more server (pool_want()) takes the directory's lock
 * (never waiting for it: a held lock is tried again on the next tick), counts the live
 * files, and if the pool is full asks the least recently active idle server's instance
 * to suspend it: an "a.PID.SEQ" file, then SIGUSR2 sent through a pidfd opened before
 * PID was seen to be the process that started at the file's start time (so the signal
 * cannot reach a recycled pid: a held lock alone does not tell, as a killed instance's
 * keeper holds it).  A slot held whose PID is not that process is on its way.  It waits, looking
 * every POOL_TICK_S, until a slot is free (bounded by the wait given to pool_open(); then
 * it starts anyway).  When every server is busy it starts at once, over the cap, marks
 * the pool "over", and the pool shrinks back as soon as one is idle (pool_busy()).
 *
 * Each slot file's lock is shared with the instance's keeper (keeper_slot()): an instance
 * killed leaves its slots taken until its keeper has ended what the servers left, and no
 * longer (the keeper exits then).
 *
 * A failure of the pool's files (no runtime directory, EMFILE, ENOSPC) never stops a
 * server from starting: the cap is not kept then, and mcpmux says so.
 */
#ifndef MCPMUX_POOL_H
#define MCPMUX_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <ev.h>

#define POOL_TICK_S 0.02
/* How long a slot wanted by yield (pool_want()) waits before its first try. */
#define POOL_YIELD_S (5 * POOL_TICK_S)
/* How often a kept slot's processes are looked at (pool_keep()). */
#define POOL_KEPT_S 0.5

struct pool;
struct pool_slot;

struct pool_slot_ops {
	/* The slot a pool_want() waited for is granted: start the server. */
	void (*granted)(struct pool_slot *slot, void *ctx);
	/* Another server needs this one's slot: suspend it if it is idle (true if so). */
	bool (*suspend)(void *ctx);
};

/*
 * The pool `name` (any text: a --pool name, or the command line; its hash names the
 * directory, its first 255 bytes are shown), capped at max live servers; a wait for a
 * slot lasts at most wait_s.  NULL (said why) when its directory cannot be used: mcpmux
 * runs without the cap then.
 */
struct pool *pool_open(struct ev_loop *loop, const char *name, size_t max, double wait_s);
/* The pool of wrap's or serve's options (--max-servers, --pool); NULL for none. */
struct mcpmux_options;
struct pool *pool_open_for(struct ev_loop *loop, const struct mcpmux_options *o);
void pool_close(struct pool *p);
/* The pool name for a command line: its words joined by spaces, into out. */
void pool_name_of(char *const *argv, char *out, size_t size);

/*
 * A slot for one more server.  *granted is true when it may start now; else
 * ops->granted() comes later, from the loop.  yield: a slot was just given up by the
 * wanter (a suspend), maybe for another instance's waiter, which looks every POOL_TICK_S:
 * this one is not tried before POOL_YIELD_S.  NULL only when out of memory (errno
 * ENOMEM, *granted false): the server must not start, as it would go uncounted.
 */
struct pool_slot *pool_want(struct pool *p, const struct pool_slot_ops *ops, void *ctx, bool yield,
			    bool *granted);
/* The slot's server is busy (something in flight), or idle since now. */
void pool_busy(struct pool_slot *s, bool busy);
/* The slot's server is being ended (a suspend): its slot is on its way, not to be asked. */
void pool_going(struct pool_slot *s);
/* The slot's server is gone (or the wait is given up): the slot is free. */
void pool_release(struct pool_slot *s);
/*
 * The slot's server was given up on while something of it may still run (an abandoned
 * suspend or end of run, left to the keeper): the slot stays taken, "going".  left: the
 * processes that would not die (n_left of them, their start times read now): once none
 * of them is the process it was, the slot is free, looked at every POOL_KEPT_S and when
 * this instance wants a slot.  n_left 0 (what is left is not known: a container, a list
 * cut short): until mcpmux exits, and then until its keeper has ended what is left (it
 * holds the slot's lock too).  s belongs to the pool from now on.
 */
void pool_keep(struct pool_slot *s, const pid_t *left, size_t n_left);
/* The keeper's: a slot file whose instance is gone is going (its keeper ends it). */
void pool_fd_going(int fd);

struct pool_info {
	const char *name;
	size_t max, live; /* live: this pool's servers across all its instances */
	bool over;	  /* started over the cap, every server busy */
};
void pool_info(struct pool *p, struct pool_info *out);

#endif
