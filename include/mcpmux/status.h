/*
 * status: what `mcpmux ps` cannot read from /proc, in a file per running instance.
 *
 * A suspended session has no server process, and the idle time and state of a session
 * live only in mcpmux's memory.  So each wrap and serve keeps a small file,
 * $XDG_RUNTIME_DIR/mcpmux/instances/PID (else /tmp/mcpmux-UID/instances/PID), 0600,
 * held under an exclusive flock() for as long as the instance runs: a file whose lock can
 * be taken is a dead instance's, and is ignored (and removed) by its readers.
 *
 * Content, one JSON object a line: first {"mcpmux":PID,"mode":"wrap"|"serve"}, then one
 * line per session: {"session":ID,"state":"running"|"ending"|"suspending"|"suspended"|
 * "resuming"|"waiting","pid":N|null,"started":T,"last":T,"suspends":N,"resumes":N}, where
 * T is CLOCK_MONOTONIC seconds (the reader's clock too: age = now - started, idle = now -
 * last).  The file is rewritten when a session changes state (at once after a quiet
 * while; else at most every 50 ms, one write for all the changes of that time), and for
 * traffic at most once a second, without a timer (a session's "last" may be late by up to
 * a second); a reader may see a torn last line and skips it.
 *
 * A failure to make or write the file costs only what ps shows: mcpmux runs on, says so
 * once.
 */
#ifndef MCPMUX_STATUS_H
#define MCPMUX_STATUS_H

#include <stdbool.h>
#include <sys/types.h>

#include <ev.h>

/* Start keeping this instance's file (mode: "wrap" or "serve"). */
void status_open(struct ev_loop *loop, const char *mode);
/* Written again now (what the instance is has changed: its cgroup made), without holding
 * back the write of the first session's start. */
void status_rewrite(void);
/* A session changed state: written within 50 ms. */
void status_changed(void);
/* A session saw traffic at now (sys_mono()): "last" is written within about a second. */
void status_traffic(double now);
/* Remove the file (at exit). */
void status_close(void);
/*
 * Remove the file of instance pid (started at start, in clock ticks since boot: its
 * MCPMUX_OWNER), which died without status_close(): its keeper's last act.  Only a file
 * whose lock is free, while pid is that instance or no process at all.
 */
void status_forget(pid_t pid, unsigned long long start);

#endif
