/*
 * errout: mcpmux's stderr, written without ever blocking the event loop.
 *
 * Two kinds of bytes go to stderr, and a host that pipes stderr and reads it lazily must
 * freeze neither the sessions nor their timers:
 *
 *   - mcpmux's own diagnostics (diag.h; server stdout noise is one of them) are written
 *     at once while nothing is queued (a line needs no memory then: one that says memory
 *     ran out is not lost for want of it), and what stderr does not take goes through a
 *     bounded queue.  When it is full a line is dropped and counted, and once the queue
 *     has drained "mcpmux: N lines of stderr dropped (why)" says so (at exit, before what
 *     is still queued, so that a reader too slow for the rest still learns of it); lines
 *     dropped for more than one reason are counted for each.
 *   - the server's own stderr, relayed when mcpmux reads it through a pipe (with a
 *     traffic log), is not dropped for a slow reader: its reader asks errout_room()
 *     before reading the server's pipe and stops while there is none, which holds the
 *     server back as a direct pipe would.  errout calls a waiter back once there is room
 *     again.  While stderr's file system is full (ENOSPC), no server is held back: its
 *     bytes are queued while the queue has room, and what does not fit is dropped and
 *     counted like mcpmux's own lines.  What the queue has no memory for is dropped and
 *     counted too.  A line whose rest is dropped (either way) is ended with a newline
 *     before the server's next one.
 *
 * Writes go to a description of stderr of mcpmux's own (sys_stdio_open()), so the
 * server's stderr, which is the same pipe or terminal, keeps its flags.  Before
 * errout_start(), diagnostics are written directly (blocking), which is right for
 * start-up errors.  After errout_stop(), each of the last words at exit gets one write
 * that never blocks, on the shared description too (O_NONBLOCK for that write only), and
 * is lost when stderr has no room for it.
 *
 * One per process (a module, like diag and tlog).
 */
#ifndef MCPMUX_ERROUT_H
#define MCPMUX_ERROUT_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#define ERROUT_MAX ((size_t)64 << 10)

struct errout_waiter {
	struct errout_waiter *next;
	bool waiting;
	void (*on_room)(struct errout_waiter *w); /* called from the loop */
};

/* Take over stderr for the loop.  0, or -1 (stderr then stays with direct writes). */
int errout_start(struct ev_loop *loop);
/*
 * Write what is queued, waiting at most until `deadline` (sys_mono() seconds) for a
 * reader, then drop the rest and give stderr back to direct writes.
 */
void errout_stop(double deadline);
/*
 * Whole lines of mcpmux's own (diagnostics, a traffic log on stderr): queued, or dropped
 * and counted when the queue is full.
 */
void errout_lines(const char *p, size_t len);
/* Bytes the relay may read now (0: wait). */
size_t errout_room(void);
/*
 * Relay bytes of a server's stderr (the caller respects errout_room(); dropped and counted
 * only while stderr's file system is full and the queue has no room for them, or when the
 * queue has no memory for them).
 */
void errout_relay(const char *p, size_t len);
/* Call w->on_room once there is room; a waiter already waiting stays queued once. */
void errout_wait(struct errout_waiter *w);
void errout_cancel(struct errout_waiter *w);
/* Nothing is waiting to be written. */
bool errout_drained(void);

#endif
