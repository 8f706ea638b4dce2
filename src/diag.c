/*
 * diag: diagnostics on stderr, one write(2) per line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"

#define DIAG_KEYS   64	/* call sites whose repeats are being counted */
#define DIAG_WINDOW 1.0 /* seconds */
#define DIAG_LINE   1024

static enum diag_level diag_level = DIAG_NORMAL;
static bool diag_summing = true; /* repeats of a call site summed up (diag_sum_repeats) */
static const struct diag_sink *diag_sink;

/* A call site that printed in the last second, and what it has not printed since. */
static struct diag_key {
	const char *fmt;
	double last; /* when it last printed */
	unsigned long suppressed;
	size_t text_len;
	char text[DIAG_LINE]; /* the last suppressed line, "\n" excluded */
} keys[DIAG_KEYS];

void
diag_set_sink(const struct diag_sink *sink)
{
	diag_sink = sink;
}

void
diag_sum_repeats(bool on)
{
	diag_summing = on;
}

static void
put_line(const char *line, size_t len)
{
	if (diag_sink != NULL) {
		diag_sink->write(line, len);
		return;
	}
	/*
	 * Diagnostics are best effort: a stderr that cannot be written is not an error.
	 * sys_writev(): a socket taken with sys_stdio_open() (the keeper's) is written
	 * MSG_DONTWAIT, its shared description staying blocking.
	 */
	struct iovec iov = { .iov_base = (void *)(uintptr_t)line, .iov_len = len };

	if (sys_writev(STDERR_FILENO, &iov, 1) == -1) {
		return;
	}
}

/* The last of a key's suppressed lines, with the count of the others if there were any. */
static void
put_summary(struct diag_key *k)
{
	char line[DIAG_LINE + 64];
	int n = k->suppressed > 1
			? snprintf(line, sizeof(line), "%.*s (and %lu more like it)\n",
				   (int)k->text_len, k->text, k->suppressed - 1)
			: snprintf(line, sizeof(line), "%.*s\n", (int)k->text_len, k->text);

	if (n > 0) {
		put_line(line, SYS_MIN((size_t)n, sizeof(line)));
	}
	k->suppressed = 0;
}

bool
diag_tick(double now)
{
	bool pending = false;

	for (size_t i = 0; i < DIAG_KEYS; i++) {
		struct diag_key *k = &keys[i];

		if (k->fmt == NULL || k->suppressed == 0) {
			continue;
		}
		if (now - k->last >= DIAG_WINDOW) {
			put_summary(k);
			k->last = now;
		} else {
			pending = true;
		}
	}
	return pending;
}

/*
 * May a line from call site fmt be printed now?  If not, it is kept as the key's last
 * line and counted.
 */
static bool
may_print(const char *fmt, const char *line, size_t len)
{
	double now = sys_mono();
	struct diag_key *free_k = NULL, *old_k = NULL;

	for (size_t i = 0; i < DIAG_KEYS; i++) {
		struct diag_key *k = &keys[i];

		if (k->fmt == fmt) {
			if (now - k->last < DIAG_WINDOW) {
				if (k->suppressed++ == 0 && diag_sink != NULL &&
				    diag_sink->suppressing != NULL) {
					diag_sink->suppressing();
				}
				k->text_len = SYS_MIN(len, sizeof(k->text));
				memcpy(k->text, line, k->text_len);
				return false;
			}
			if (k->suppressed > 0) {
				put_summary(k);
			}
			k->last = now;
			return true;
		}
		if (k->fmt == NULL || (k->suppressed == 0 && now - k->last >= DIAG_WINDOW)) {
			free_k = free_k != NULL ? free_k : k;
		} else if (k->suppressed == 0 && (old_k == NULL || k->last < old_k->last)) {
			old_k = k;
		}
	}
	struct diag_key *k = free_k != NULL ? free_k : old_k;

	if (k != NULL) {
		k->fmt = fmt;
		k->last = now;
		k->suppressed = 0;
	}
	return true; /* every key busy counting: print (cannot happen with few call sites) */
}

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

/*
 * How many bytes fmt prints before the advice it ends with, " (...)", or -1 when it ends
 * with none: the reason of a failure goes before the advice, as the format of the lines
 * has it ("<what failed>: <why> (<what to do>)").
 */
static int
advice_at(const char *fmt, va_list ap)
{
	char head[DIAG_LINE];
	size_t n = strlen(fmt);
	unsigned depth = 0;

	if (n == 0 || fmt[n - 1] != ')') {
		return -1;
	}
	for (size_t i = n; i-- > 0;) {
		if (fmt[i] == ')') {
			depth++;
		} else if (fmt[i] == '(' && --depth == 0) {
			if (i < 2 || fmt[i - 1] != ' ' || i > sizeof(head)) {
				return -1;
			}
			memcpy(head, fmt, i - 1);
			head[i - 1] = '\0';
			/* The arguments of the advice are left unused. */
			return vsnprintf(NULL, 0, head, ap);
		}
	}
	return -1;
}

static void __attribute__((format(printf, 4, 0)))
diag_emit(const char *prefix, bool limited, int errnum, const char *fmt, va_list ap)
{
	char line[DIAG_LINE];
	size_t len, start;
	int n;
	va_list aq;

	n = snprintf(line, sizeof(line), "mcpmux: %s", prefix);
	start = len = n < 0 ? 0 : SYS_MIN((size_t)n, sizeof(line) - 2);
	va_copy(aq, ap);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	if (n >= 0 && len + (size_t)n > sizeof(line) - 2) {
		/* Cut between two UTF-8 characters, not in one. */
		len = sizeof(line) - 2;
		len -= rpcout_utf8_tail(line + start, len - start);
	} else if (n >= 0) {
		len += (size_t)n;
	}
	if (errnum != 0) {
		char why[256];
		int at = advice_at(fmt, aq);
		size_t pos = at >= 0 && start + (size_t)at < len ? start + (size_t)at : len;
		size_t max = sizeof(line) - 2;

		n = snprintf(why, sizeof(why), ": %s", strerror(errnum));
		size_t w = n < 0 ? 0 : SYS_MIN((size_t)n, sizeof(why) - 1);

		/* A line too long for the reason is cut, not the reason: at the advice's end,
		 * then at the end of the text before the reason. */
		if (len + w > max) {
			len -= SYS_MIN(len + w - max, len - pos);
			len -= rpcout_utf8_tail(line + pos, len - pos);
		}
		if (len + w > max) {
			size_t cut = SYS_MIN(len + w - max, pos - start);

			cut += rpcout_utf8_tail(line + start, pos - cut - start);
			memmove(line + pos - cut, line + pos, len - pos);
			pos -= cut;
			len -= cut;
		}
		w = SYS_MIN(w, max - len);
		memmove(line + pos + w, line + pos, len - pos);
		memcpy(line + pos, why, w);
		len += w;
	}
	va_end(aq);
	if (limited && diag_summing && !may_print(fmt, line, len)) {
		return;
	}
	line[len++] = '\n';
	put_line(line, len);
}

/* -v's lifecycle lines are what the user asked for: never summed up. */
#define DIAG_BODY(errnum, limited)                       \
	do {                                             \
		va_list ap;                              \
		va_start(ap, fmt);                       \
		diag_emit("", limited, errnum, fmt, ap); \
		va_end(ap);                              \
	} while (0)

int
diag_error(const char *fmt, ...)
{
	DIAG_BODY(0, true);
	return -1;
}

int
diag_error_each(const char *fmt, ...)
{
	DIAG_BODY(0, false);
	return -1;
}

int
diag_error_errno(const char *fmt, ...)
{
	int errnum = errno;

	DIAG_BODY(errnum, true);
	errno = errnum;
	return -1;
}

void
diag_warn(const char *fmt, ...)
{
	if (diag_level >= DIAG_NORMAL) {
		DIAG_BODY(0, true);
	}
}

void
diag_warn_errno(const char *fmt, ...)
{
	int errnum = errno;

	if (diag_level >= DIAG_NORMAL) {
		DIAG_BODY(errnum, true);
	}
	errno = errnum;
}

void
diag_warn_each(const char *fmt, ...)
{
	if (diag_level >= DIAG_NORMAL) {
		DIAG_BODY(0, false);
	}
}

void
diag_info(const char *fmt, ...)
{
	if (diag_level >= DIAG_VERBOSE) {
		DIAG_BODY(0, false);
	}
}

void
diag_bug(const char *file, int line, const char *fmt, ...)
{
	char where[256];
	va_list ap;

	(void)snprintf(where, sizeof(where), "BUG at %s:%d: ", file, line);
	diag_sink = NULL; /* straight out: abort() follows */
	va_start(ap, fmt);
	diag_emit(where, false, 0, fmt, ap);
	va_end(ap);
	abort();
}
