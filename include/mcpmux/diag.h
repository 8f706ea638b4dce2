/*
 * diag: mcpmux's own diagnostics.  Everything goes to stderr, never stdout (stdout is
 * the protocol).  Format: "mcpmux: <what failed>: <why> (<what to do>)", lower case.
 *
 * Each message is written with one write(2), so lines from mcpmux and from a backend
 * that shares the same stderr do not interleave within a line.
 *
 * Diagnostics never flood: a message from the same call site (the same format string)
 * within a second of the last one it printed is counted, not printed, and the count is
 * printed with the last such message once the second is over ("... (and 41 more like
 * it)"): at most a line a second per condition.
 *
 * While the event loop runs, lines go to a sink (errout.h) that never blocks; before and
 * after, they are written directly.
 */
#ifndef MCPMUX_DIAG_H
#define MCPMUX_DIAG_H

#include <stdbool.h>
#include <stddef.h>

enum diag_level {
	DIAG_QUIET,   /* -q: errors only */
	DIAG_NORMAL,  /* errors, warnings, notices (backend stdout noise) */
	DIAG_VERBOSE, /* -v: also lifecycle information */
};

struct diag_sink {
	void (*write)(const char *line, size_t len); /* a whole line, "\n" included */
	void (*suppressing)(void); /* a count is pending: call diag_tick() each second */
};

void diag_set_level(enum diag_level level);
/* Where lines go (NULL: straight to fd 2). */
void diag_set_sink(const struct diag_sink *sink);
/*
 * Whether the repeats of a call site within a second are summed up in one line (the
 * default), or each said (the keeper, ps and sweep: each of their lines names a container,
 * an engine or a run, and they have no loop to say the sums from).
 */
void diag_sum_repeats(bool on);
/*
 * Print the counts of repeated messages whose second is over, as of `now` (sys_mono()).
 * Returns true while counts are pending (call again a second later).
 */
bool diag_tick(double now);
enum diag_level diag_get_level(void);

/* Print an error; returns -1 so that `return diag_error(...)` reads naturally. */
int diag_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error never summed up with the repeats of its call site: its caller bounds them. */
int diag_error_each(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same as diag_error(), with ": strerror(errno)" appended. */
int diag_error_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_warn_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * A warning never summed up with the repeats of its call site: for a line that names what
 * it says is lost, whose number its caller bounds (serve: at most two lines a connection).
 */
void diag_warn_each(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Programming errors: print file:line and abort. */
#define BUG(...) diag_bug(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void diag_bug(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
