/*
 * diag: diagnostics on stderr, one write(2) per line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/sys.h"

static enum diag_level diag_level = DIAG_NORMAL;

void
diag_set_level(enum diag_level level)
{
	diag_level = level;
}

enum diag_level
diag_get_level(void)
{
	return diag_level;
}

static void __attribute__((format(printf, 3, 0)))
diag_emit(const char *prefix, int errnum, const char *fmt, va_list ap)
{
	char line[1024];
	size_t len;
	int n;

	n = snprintf(line, sizeof(line), "mcpmux: %s", prefix);
	len = n < 0 ? 0 : SYS_MIN((size_t)n, sizeof(line) - 2);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	len = n < 0 ? len : SYS_MIN(len + (size_t)n, sizeof(line) - 2);
	if (errnum != 0 && len < sizeof(line) - 2) {
		n = snprintf(line + len, sizeof(line) - 1 - len, ": %s", strerror(errnum));
		len = n < 0 ? len : SYS_MIN(len + (size_t)n, sizeof(line) - 2);
	}
	line[len++] = '\n';
	/* Diagnostics are best effort: a stderr that cannot be written is not an error. */
	if (write(STDERR_FILENO, line, len) == -1) {
		return;
	}
}

#define DIAG_BODY(errnum)                       \
	do {                                    \
		va_list ap;                     \
		va_start(ap, fmt);              \
		diag_emit("", errnum, fmt, ap); \
		va_end(ap);                     \
	} while (0)

int
diag_error(const char *fmt, ...)
{
	DIAG_BODY(0);
	return -1;
}

int
diag_error_errno(const char *fmt, ...)
{
	int errnum = errno;

	DIAG_BODY(errnum);
	errno = errnum;
	return -1;
}

void
diag_warn(const char *fmt, ...)
{
	if (diag_level >= DIAG_NORMAL) {
		DIAG_BODY(0);
	}
}

void
diag_warn_errno(const char *fmt, ...)
{
	int errnum = errno;

	if (diag_level >= DIAG_NORMAL) {
		DIAG_BODY(errnum);
	}
	errno = errnum;
}

void
diag_info(const char *fmt, ...)
{
	if (diag_level >= DIAG_VERBOSE) {
		DIAG_BODY(0);
	}
}

void
diag_bug(const char *file, int line, const char *fmt, ...)
{
	char where[256];
	va_list ap;

	(void)snprintf(where, sizeof(where), "BUG at %s:%d: ", file, line);
	va_start(ap, fmt);
	diag_emit(where, 0, fmt, ap);
	va_end(ap);
	abort();
}
