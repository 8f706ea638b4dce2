/*
 * diag: mcpmux's own diagnostics.  Everything goes to stderr, never stdout (stdout is
 * the protocol).  Format: "mcpmux: <what failed>: <why> (<what to do>)", lower case.
 *
 * Each message is written with one write(2), so lines from mcpmux and from a backend
 * that shares the same stderr do not interleave within a line.
 */
#ifndef MCPMUX_DIAG_H
#define MCPMUX_DIAG_H

enum diag_level {
	DIAG_QUIET,   /* -q: errors only */
	DIAG_NORMAL,  /* errors, warnings, notices (backend stdout noise) */
	DIAG_VERBOSE, /* -v: also lifecycle information */
};

void diag_set_level(enum diag_level level);
enum diag_level diag_get_level(void);

/* Print an error; returns -1 so that `return diag_error(...)` reads naturally. */
int diag_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, with ": strerror(errno)" appended. */
int diag_error_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_warn_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Programming errors: print file:line and abort. */
#define BUG(...) diag_bug(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void diag_bug(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
