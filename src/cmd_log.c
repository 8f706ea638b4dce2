/*
 * mcpmux log show | stats: read a traffic log (docs/traffic-log.md).
 *
 * Both read one record at a time: memory is bounded by the longest record (a longer line
 * than any record of a log written with --max-message is skipped), the requests still
 * waiting for their response (to name a response's method), and, for stats, one histogram
 * per method and a few counters per session.  A last line cut short (a log
 * being written) is reported and skipped; with --follow, show waits for the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utlist.h>
#include <wchar.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/diag.h"
#include "mcpmux/framer.h"
#include "mcpmux/jsonrpc.h"
#include "mcpmux/jsonspan.h"
#include "mcpmux/sys.h"
#include "mcpmux/table.h"

#define MAX_METHODS  10000 /* beyond: counted under "(other)" */
#define MAX_SESSIONS 1000000
#define HIST_BUCKETS 400 /* log-scale latency buckets, 5% wide, from 1 µs */
#define HIST_BASE    1.05
#define HIST_MIN_MS  0.001

struct opts {
	const char *file;
	const char *session; /* prefix */
	const char *method;
	bool follow;
	bool color;
	size_t max_message; /* the log writer's --max-message */
};

/* ---- reading records ---- */

struct reader {
	FILE *f;
	const char *name;
	const char *path; /* with --follow on a file: the name a rotation puts a new file at */
	FILE *old;	  /* the file a rotation replaced, read until it has been quiet a while */
	double old_until;
	char *line;
	size_t cap;
	size_t max;    /* bytes of a line, its newline left out, that can be a record */
	bool skip_f;   /* a line longer than max is being skipped in f ... */
	bool skip_old; /* ... in old */
	bool follow;
	bool cut;    /* the last line read was not whole (a record being written) */
	bool failed; /* a read error was said: the command fails */
	bool gone;   /* --follow: the reader of the output went (| head): nothing more to do */
	unsigned long lineno;
	unsigned long bad;
	unsigned long good; /* records read */
};

/* An allocation failed: what the records say was not all kept (log stats fails). */
static bool no_memory;

/* How often --follow looks for more, and how long a rotated file is still read. */
#define FOLLOW_POLL_NS 100000000L
#define FOLLOW_OLD_S   2.0

/* The line buffer kept between records; one a longer record needed is freed after it. */
#define READER_KEEP ((size_t)1 << 20)

/* The whole line is JSON (as yajl_tree_parse() reads it), checked without building it. */
static bool
is_json(const char *p, size_t len)
{
	yajl_handle h = yajl_alloc(NULL, NULL, NULL);
	bool ok = false;

	if (h != NULL) {
		(void)yajl_config(h, yajl_allow_comments, 1);
		ok = yajl_parse(h, (const unsigned char *)p, len) == yajl_status_ok &&
		     yajl_complete_parse(h) == yajl_status_ok;
		yajl_free(h);
	}
	return ok;
}

/* A body this long is not built as a tree (the line is checked as JSON first, apart). */
#define RECORD_BODY_TREE_MAX 4096

/* The most values the tree of a record mcpmux writes holds (its own members, and a body
 * and answers of up to RECORD_BODY_TREE_MAX bytes each), with room to spare. */
#define RECORD_TREE_VALUES_MAX 16384

/*
 * Nested deeper, or holding more values (counted by their '[', '{' and ','), than the
 * tree of any record mcpmux writes?  Comments are skipped as yajl skips them (it reads
 * the line with comments allowed): a bracket or a quote in one is no JSON's.
 */
static bool
too_big_a_tree(const char *p, size_t len)
{
	bool in_string = false;
	int depth = 0;
	size_t values = 0;

	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (in_string) {
			if (c == '\\') {
				i++;
			} else if (c == '"') {
				in_string = false;
			}
		} else if (c == '"') {
			in_string = true;
		} else if (c == '/' && i + 1 < len && p[i + 1] == '*') {
			const char *end = memmem(p + i + 2, len - i - 2, "*/", 2);

			if (end == NULL) {
				return false; /* not JSON: yajl refuses it */
			}
			i = (size_t)(end - p) + 1;
		} else if (c == '/' && i + 1 < len && p[i + 1] == '/') {
			return false; /* a comment to the end of the line */
		} else if ((c == '{' || c == '[') &&
			   (++depth > 1024 || ++values > RECORD_TREE_VALUES_MAX)) {
			return true;
		} else if (c == ',' && ++values > RECORD_TREE_VALUES_MAX) {
			return true;
		} else if (c == '}' || c == ']') {
			depth--;
		}
	}
	return false;
}

/* A member's text becomes null and blanks, in place (its line known to be JSON). */
static void
blank_member(char *line, const char *val, size_t len)
{
	char *at = line + (val - line);

	memcpy(at, "null", 4);
	memset(at + 4, ' ', len - 4);
}

/*
 * A record, as a tree of what the reader uses: everything but a long message body, which
 * only takes room (a tree of a body of many small values is tens of times its size), and
 * a batch's long list of answers (not used).  Such a member's text becomes null and
 * blanks, in place, once the whole line is known to be JSON; a short one is parsed with
 * the rest, in one pass.  NULL when it is not JSON, or not a record of mcpmux's (nested
 * deeper, or with more values, than its records).  The body's place in the line is
 * *body_at, *body_len_out (none: 0, 0).
 */
static yajl_val
parse_record(char *line, size_t len, size_t *body_at, size_t *body_len_out)
{
	const char *body, *answers;
	size_t body_len, answers_len;
	bool checked = false;

	*body_at = 0;
	*body_len_out = 0;
	bool has_body = jsonspan_member(line, len, "msg", &body, &body_len);

	if (has_body) {
		*body_at = (size_t)(body - line);
		*body_len_out = body_len;
	}
	if (has_body && body_len > RECORD_BODY_TREE_MAX) {
		if (!is_json(line, len)) {
			return NULL;
		}
		checked = true;
		blank_member(line, body, body_len);
	}
	/* "answers" comes before the body: looked for (a second pass) only when named there. */
	if (memmem(line, has_body ? (size_t)(body - line) : len, "\"answers\"", 9) != NULL &&
	    jsonspan_member(line, len, "answers", &answers, &answers_len) &&
	    answers_len > RECORD_BODY_TREE_MAX) {
		if (!checked && !is_json(line, len)) {
			return NULL;
		}
		blank_member(line, answers, answers_len);
	}
	/* Not one of mcpmux's (it refuses messages nested deeper than 512, and the rest of a
	 * record is a few values): yajl's tree would recurse as deep, on the stack, and take
	 * tens of times the size of many small values. */
	if (too_big_a_tree(line, len)) {
		return NULL;
	}
	return yajl_tree_parse(line, NULL, 0);
}

/*
 * A record's own bytes besides what its message gives it (a message's method and id are
 * written apart too, escaped: at most 6 bytes a byte, as is a body that is not JSON or
 * cut by --log-bodies): the keys, the time, a session ID (128 characters, each at most 6
 * as an escape), a part of a stderr line (16 KiB, escaped), an event's fields.
 */
#define RECORD_OWN_MAX ((size_t)128 << 10)

/*
 * The longest record a log written with --max-message max_message can hold (at most what
 * leaves room for its newline and a '\0' in a size_t).
 */
static size_t
record_max(size_t max_message)
{
	if (max_message > (SIZE_MAX - 2 - RECORD_OWN_MAX) / 7) {
		return SIZE_MAX - 2;
	}
	return max_message * 7 + RECORD_OWN_MAX;
}

/* A line longer than any record: counted with the lines that are no record. */
static void
line_too_long(struct reader *r)
{
	r->lineno++;
	if (r->bad++ == 0) {
		diag_warn("%s:%lu: a line longer than any record (%zu bytes): skipped", r->name,
			  r->lineno, r->max);
	}
}

/* Bytes asked of fgets() at a time (each piece filled first: see piece_len()). */
#define READ_PIECE ((size_t)64 << 10)

/*
 * What fgets() read into p, NULs in it included: p held size '\n' before, and what was
 * read ends at its only '\n' followed by fgets()'s '\0', or just before that '\0'.
 */
static size_t
piece_len(const char *p, size_t size)
{
	const char *nl = memchr(p, '\n', size);

	if (nl == NULL) {
		return size - 1;
	}
	size_t at = (size_t)(nl - p);

	return at + 1 < size && nl[1] == '\0' ? at + 1 : at - 1;
}

/* Wait until f, a non-blocking input that had nothing to read, has more (or its end). */
static int
input_waits(FILE *f)
{
	struct pollfd p = { .fd = fileno(f), .events = POLLIN };

	while (poll(&p, 1, -1) == -1) {
		if (errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/*
 * One whole line of f into r->line: its length; 0 when there is none yet (the end of the
 * file, or a line still being written, which is left unread with --follow, and r->cut
 * set); -1 after a read error, said (a read that failed mid-line too: what came before
 * it is no line being written), or when memory ran out.  A line longer than r->max is
 * not kept: the rest of it is read and dropped (*skip while its end has not come), and
 * it is counted as a bad line.
 */
static ssize_t
whole_line(struct reader *r, FILE *f, bool *skip)
{
	size_t n = 0;

	r->cut = false;
	for (;;) {
		if (r->cap - n < 2) {
			size_t cap = r->cap != 0 ? r->cap * 2 : 256;
			char *nl;

			if (cap > r->max + 2 || cap < r->cap) {
				cap = r->max + 2; /* its bytes, its newline and a '\0' */
			}
			nl = realloc(r->line, cap);
			if (nl == NULL) {
				diag_error("%s: out of memory for a line of %zu bytes", r->name,
					   cap);
				r->failed = true;
				return -1;
			}
			r->line = nl;
			r->cap = cap;
		}
		/* As much as the line has so far (each piece is filled first), within bounds. */
		size_t size = n < 256 ? 256 : n < READ_PIECE ? n : READ_PIECE;

		if (size > r->cap - n) {
			size = r->cap - n;
		}
		char *at = r->line + n;

		memset(at, '\n', size);
		errno = 0;
		const char *got_p = fgets(at, (int)size, f);

		if (ferror(f) && errno == EAGAIN) {
			/* A non-blocking input (a stdin whose open file another process made so)
			 * that had nothing more yet: waited on, as a blocking read waits. */
			clearerr(f);
			if (input_waits(f) == -1) {
				diag_error_errno("%s: read error", r->name);
				r->failed = true;
				return -1;
			}
			if (got_p == NULL) {
				continue;
			}
		}
		if (got_p == NULL) {
			break;
		}
		size_t got = piece_len(at, size);

		n += got;
		if (got > 0 && at[got - 1] == '\n') {
			if (!*skip) {
				return (ssize_t)n;
			}
			*skip = false;
			line_too_long(r);
			n = 0;
		} else if (*skip || n > r->max) {
			*skip = true;
			n = 0;
		}
	}
	if (ferror(f)) {
		if (errno != EINTR) {
			diag_error_errno("%s: read error", r->name);
			r->failed = true;
			return -1;
		}
	}
	clearerr(f);
	if (n > 0 || *skip) {
		r->cut = true;
		if (r->follow && n > 0) {
			(void)fseeko(f, -(off_t)n, SEEK_CUR);
		}
	}
	return 0;
}

/*
 * Has the reader of stdout gone, stdout being a pipe (| head -1 that has its line)?  A
 * write would say so (EPIPE), but --follow on a log that stays idle writes nothing, and
 * would wait for ever: as tail -f does, it looks (POLLERR: no reader left).
 */
static bool
output_gone(void)
{
	struct stat st;
	struct pollfd p = { .fd = STDOUT_FILENO, .events = 0 };

	return fstat(STDOUT_FILENO, &st) == 0 && S_ISFIFO(st.st_mode) && poll(&p, 1, 0) == 1 &&
	       (p.revents & POLLERR) != 0;
}

/*
 * --follow at the end of the file: wait, then see whether the file was truncated (read
 * again from its start) or rotated.  A rotation is followed once the file now at the path
 * has something in it: mcpmux writes to the new file only after it reopened the log
 * (SIGUSR1), so the old one is complete by then, but for other instances that share the
 * log and reopen a moment later: the old file is read as well, until it has been quiet
 * for FOLLOW_OLD_S.
 */
static void
follow_wait(struct reader *r)
{
	struct timespec ts = { 0, FOLLOW_POLL_NS };
	struct stat cur, named;
	off_t at;

	(void)nanosleep(&ts, NULL);
	if (output_gone()) {
		r->gone = true;
		return;
	}
	if (fstat(fileno(r->f), &cur) == -1) {
		return;
	}
	at = ftello(r->f);
	if (at != -1 && cur.st_size < at) {
		diag_warn("%s: the file was truncated: read again from its start", r->name);
		(void)fseeko(r->f, 0, SEEK_SET);
		r->skip_f = false;
		return;
	}
	if (r->path == NULL || stat(r->path, &named) == -1 || !S_ISREG(named.st_mode) ||
	    (named.st_dev == cur.st_dev && named.st_ino == cur.st_ino) || named.st_size == 0) {
		return;
	}
	/* Rotated twice within FOLLOW_OLD_S: what came to the oldest meanwhile is read first. */
	if (r->old != NULL && (fstat(fileno(r->old), &cur) == -1 || cur.st_size > ftello(r->old))) {
		return;
	}
	/* Not blocking in open() if the path became a FIFO since the stat: only a file. */
	int fd = open(r->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	FILE *nf = NULL;

	if (fd == -1 || fstat(fd, &named) == -1 || !S_ISREG(named.st_mode) ||
	    fcntl(fd, F_SETFL, O_RDONLY) == -1 || (nf = fdopen(fd, "r")) == NULL) {
		if (fd != -1) {
			(void)close(fd);
		}
		return; /* tried again at the next wait */
	}
	if (r->old != NULL) {
		(void)fclose(r->old); /* rotated twice within FOLLOW_OLD_S */
	}
	r->old = r->f;
	r->skip_old = r->skip_f;
	r->skip_f = false;
	r->old_until = sys_mono() + FOLLOW_OLD_S;
	r->f = nf;
	diag_info("%s: the log was rotated: following the new file", r->name);
}

/*
 * The log FILE, opened; with --follow, a FILE that does not exist yet (nor, maybe, its
 * directory) is waited for, as tail -F does, looked for as often as follow_wait() looks:
 * said once, and again when it appears.  NULL: said, or *gone (the reader of the output
 * went while it was waited for: nothing more to do, as follow_wait() sees it).
 */
static FILE *
open_log(const struct opts *o, bool *gone)
{
	struct timespec ts = { 0, FOLLOW_POLL_NS };
	FILE *f = fopen(o->file, "re");

	if (f == NULL && errno == ENOENT && o->follow) {
		diag_warn("the log '%s' does not exist yet: waiting for it to appear (--follow)",
			  o->file);
		do {
			(void)nanosleep(&ts, NULL);
			if (output_gone()) {
				*gone = true;
				return NULL;
			}
		} while ((f = fopen(o->file, "re")) == NULL && errno == ENOENT);
		if (f != NULL) {
			diag_warn("the log '%s' has appeared: following it", o->file);
		}
	}
	if (f == NULL) {
		diag_error_errno("cannot open the log '%s'", o->file);
	}
	return f;
}

/*
 * The line of the record next_record() returned last (valid until its next call), for the
 * strings that yajl's tree does not have as they are: it keeps C strings, and "\u0000"
 * ends one; a surrogate escape that is not one of a pair is a '?' there, or joined with
 * the escape after it ("\ud800\u0041" is U+10041).
 */
static const char *rec_line;
static size_t rec_len;
static bool rec_odd; /* it holds such an escape (besides in its body) */

/* Has p (n bytes) a "\u0000", or a surrogate's escape (\uD800 to \uDFFF)? */
static bool
odd_escapes(const char *p, size_t n)
{
	const char *end = p + n;

	while ((p = memmem(p, (size_t)(end - p), "\\u", 2)) != NULL && end - p >= 6) {
		if (memcmp(p + 2, "0000", 4) == 0 || ((p[2] | 0x20) == 'd' && p[3] != '\0' &&
						      strchr("89abcdefABCDEF", p[3]) != NULL)) {
			return true;
		}
		p += 2;
	}
	return false;
}

/* Strings of that record decoded from its line (rec_str()), freed with it. */
#define REC_STRS 8
static struct rec_str {
	const char *key;
	char *s;
	size_t n;
} rec_strs[REC_STRS];
static size_t n_rec_strs;

static void
rec_strs_free(void)
{
	while (n_rec_strs > 0) {
		free(rec_strs[--n_rec_strs].s);
	}
}

/* The next record, parsed; NULL at the end.  Lines that are not JSON objects are skipped. */
static yajl_val
next_record(struct reader *r)
{
	rec_line = NULL;
	rec_len = 0;
	rec_strs_free();
	if (r->cap > READER_KEEP) {
		free(r->line);
		r->line = NULL;
		r->cap = 0;
	}
	for (;;) {
		ssize_t n = 0;

		if (r->old != NULL) {
			n = whole_line(r, r->old, &r->skip_old);
			if (n == -1 || (n == 0 && sys_mono() >= r->old_until)) {
				if (n == 0 && r->cut) {
					diag_warn(
						"%s: the file it was rotated from ends with a line "
						"cut short: skipped",
						r->name);
				}
				/* A read error on it (said) leaves the new file to follow. */
				(void)fclose(r->old);
				r->old = NULL;
				r->skip_old = false;
				n = 0;
			} else if (n > 0) {
				r->old_until = sys_mono() + FOLLOW_OLD_S;
			}
		}
		if (n == 0) {
			n = whole_line(r, r->f, &r->skip_f);
		}
		if (n == -1) {
			return NULL;
		}
		if (n == 0) {
			if (r->follow) {
				follow_wait(r);
				if (r->gone) {
					return NULL;
				}
				continue;
			}
			if (r->cut) {
				diag_warn("%s:%lu: the last line is cut short (a log still being "
					  "written?): skipped",
					  r->name, r->lineno + 1);
			}
			return NULL;
		}
		r->lineno++;
		if (n == 1) {
			/* An empty line: no record, nothing lost (mcpmux ends a line that a writer
			 * killed in the middle of a record left cut, and can meet one on its way).
			 */
			continue;
		}
		r->line[n - 1] = '\0';
		size_t body_at, body_len;

		errno = 0;
		yajl_val v = parse_record(r->line, (size_t)n - 1, &body_at, &body_len);

		if (v == NULL && errno == ENOMEM) {
			diag_error("%s:%lu: out of memory for a record", r->name, r->lineno);
			no_memory = true;
			r->failed = true;
			return NULL;
		}
		if (v != NULL && YAJL_IS_OBJECT(v)) {
			rec_line = r->line;
			rec_len = (size_t)n - 1;
			rec_odd = odd_escapes(rec_line, body_at) ||
				  odd_escapes(rec_line + body_at + body_len,
					      rec_len - body_at - body_len);
			r->good++;
			return v;
		}
		yajl_tree_free(v);
		if (r->bad++ == 0) {
			diag_warn("%s:%lu: not a traffic log record: skipped", r->name, r->lineno);
		}
	}
}

static yajl_val
get(yajl_val v, const char *key)
{
	const char *path[] = { key, NULL };

	return yajl_tree_get(v, path, yajl_t_any);
}

static const char *
get_str(yajl_val v, const char *key)
{
	yajl_val s = get(v, key);

	return YAJL_IS_STRING(s) ? YAJL_GET_STRING(s) : NULL;
}

static bool
get_num(yajl_val v, const char *key, double *out)
{
	yajl_val n = get(v, key);

	if (!YAJL_IS_NUMBER(n)) {
		return false;
	}
	*out = YAJL_GET_DOUBLE(n);
	return true;
}

/* ---- text from the log, as it is shown ---- */

/*
 * A string of a record is shown with nothing a terminal acts on, and on one line:
 * printable UTF-8 as it is; a backslash as \\; a newline, carriage return and tab as \n,
 * \r, \t; any other C0 control, DEL, and a byte that is not part of a UTF-8 character as
 * \xNN (ESC: \x1b); a C1 control (U+0080..U+009F) as \u0080..\u009f.
 */

/* The length of the UTF-8 character that s starts with (n bytes are there), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len;

	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		len = 2;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		len = 3;
		lo = s[0] == 0xE0 ? 0xA0 : 0x80; /* no overlong form */
		hi = s[0] == 0xED ? 0x9F : 0xBF; /* no surrogate */
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		len = 4;
		lo = s[0] == 0xF0 ? 0x90 : 0x80;
		hi = s[0] == 0xF4 ? 0x8F : 0xBF; /* nothing past U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi) {
		return 0;
	}
	for (size_t i = 2; i < len; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF) {
			return 0;
		}
	}
	return len;
}

/*
 * The shown form of the character s starts with (n > 0 bytes are there) in out, a string
 * of at most 6 bytes; returns how many bytes of s it takes.
 */
static size_t
shown_char(const char *s, size_t n, char out[8])
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len;

	if (u[0] == '\\' || u[0] == '\n' || u[0] == '\r' || u[0] == '\t') {
		out[0] = '\\';
		out[1] = u[0] == '\\' ? '\\' : (u[0] == '\n' ? 'n' : (u[0] == '\r' ? 'r' : 't'));
		out[2] = '\0';
		return 1;
	}
	if (u[0] >= 0x20 && u[0] < 0x7F) {
		out[0] = s[0];
		out[1] = '\0';
		return 1;
	}
	len = u[0] < 0x80 ? 0 : utf8_len(u, n);
	if (len == 0) {
		(void)snprintf(out, 8, "\\x%02x", u[0]);
		return 1;
	}
	if (len == 2 && u[0] == 0xC2 && u[1] <= 0x9F) {
		(void)snprintf(out, 8, "\\u%04x", u[1]);
		return 2;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return len;
}

/* Columns are counted in terminal cells (wcwidth()) under a UTF-8 locale, else bytes. */
static bool utf8_cells;

/* The cells a shown character (shown_char()'s out) takes on a terminal. */
static int
shown_width(const char *c)
{
	const unsigned char *u = (const unsigned char *)c;
	size_t len = strlen(c);
	uint32_t cp;
	int w;

	if (!utf8_cells || u[0] < 0x80) {
		return (int)len;
	}
	/* one valid UTF-8 character (shown_char() checked it) */
	cp = len == 2 ? u[0] & 0x1Fu : (len == 3 ? u[0] & 0x0Fu : u[0] & 0x07u);
	for (size_t i = 1; i < len; i++) {
		cp = cp << 6 | (u[i] & 0x3Fu);
	}
	w = wcwidth((wchar_t)cp);
	return w >= 0 ? w : 1; /* one the locale does not know: a terminal gives it a cell */
}

/*
 * A line being put together in a fixed buffer: once something does not fit (in its
 * bytes, or in its columns when it has a width), the line ends there, and never inside a
 * shown character (UTF-8 or an escape).
 */
struct text {
	char *buf;
	size_t cap;
	size_t len;
	int cols;     /* the cells it takes */
	int max_cols; /* 0: as many as its bytes allow */
	bool cut;
};

static void
text_init(struct text *t, char *buf, size_t cap)
{
	*t = (struct text){ .buf = buf, .cap = cap };
	buf[0] = '\0';
}

/* The spaces after t up to width cells (none when it takes them all). */
static int
text_pad(const struct text *t, int width)
{
	return t->cols < width ? width - t->cols : 0;
}

/* Text of mcpmux's own (ASCII), cut anywhere when it does not fit. */
static void
text_add(struct text *t, const char *s)
{
	size_t n = strlen(s);

	if (t->cut) {
		return;
	}
	if (t->len + n >= t->cap) {
		n = t->cap - 1 - t->len;
		t->cut = true;
	}
	if (t->max_cols > 0 && t->cols + (int)n > t->max_cols) {
		n = (size_t)(t->max_cols - t->cols);
		t->cut = true;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->cols += (int)n;
	t->buf[t->len] = '\0';
}

/* A string of a record, n bytes, shown (above), cut only between two shown characters. */
static void
text_show_n(struct text *t, const char *s, size_t n)
{
	char c[8];

	while (n > 0 && !t->cut) {
		size_t used = shown_char(s, n, c);
		size_t cl = strlen(c);
		int w = shown_width(c);

		if (t->len + cl >= t->cap || (t->max_cols > 0 && t->cols + w > t->max_cols)) {
			t->cut = true;
			break;
		}
		memcpy(t->buf + t->len, c, cl + 1);
		t->len += cl;
		t->cols += w;
		s += used;
		n -= used;
	}
}

/* A string of a record, shown (above), cut only between two shown characters. */
static void
text_show(struct text *t, const char *s)
{
	text_show_n(t, s, strlen(s));
}

/* How many members named key the object rec has (yajl's tree keeps each of them). */
static size_t
members_named(yajl_val rec, const char *key)
{
	size_t n = 0;

	for (size_t i = 0; i < rec->u.object.len; i++) {
		n += strcmp(rec->u.object.keys[i], key) == 0;
	}
	return n;
}

/*
 * The string member key of the record next_record() returned (rec), as its escapes stand
 * for (a surrogate escape not of a pair as U+FFFD, the character after it kept), whole,
 * past any NUL ("\u0000") that ends yajl's C string: its bytes (valid until the next
 * record) and their number in *len; NULL when it has none.
 */
static const char *
rec_str(yajl_val rec, const char *key, size_t *len)
{
	const char *s = get_str(rec, key), *q;
	size_t ql;

	*len = s != NULL ? strlen(s) : 0;
	if (s == NULL || rec_line == NULL || !rec_odd) {
		return s;
	}
	for (size_t i = 0; i < n_rec_strs; i++) {
		if (strcmp(rec_strs[i].key, key) == 0) {
			*len = rec_strs[i].n;
			return rec_strs[i].s;
		}
	}
	/* The line's member is the tree's when the name is there once (of several, the
	 * tree's is the first, the line's the last). */
	if (n_rec_strs < REC_STRS && members_named(rec, key) == 1 &&
	    jsonspan_member(rec_line, rec_len, key, &q, &ql) && ql >= 2 && q[0] == '"') {
		char *buf = malloc(ql);
		size_t n = buf != NULL ? jsonrpc_string_text(q, ql, buf, true) : SIZE_MAX;

		no_memory |= buf == NULL;
		if (n != SIZE_MAX) {
			rec_strs[n_rec_strs++] = (struct rec_str){ key, buf, n };
			*len = n;
			return buf;
		}
		free(buf);
	}
	return s;
}

/* Show the string member key of the record next_record() returned (rec), or dflt. */
static void
text_show_member(struct text *t, yajl_val rec, const char *key, const char *dflt)
{
	size_t n;
	const char *s = rec_str(rec, key, &n);

	text_show_n(t, s != NULL ? s : dflt, s != NULL ? n : strlen(dflt));
}

/* A string of a record (n bytes), shown whole on stdout, then spaces up to width cells. */
static void
put_shown(const char *s, size_t n, int width)
{
	int w = 0;
	char c[8];

	while (n > 0) {
		size_t used = shown_char(s, n, c);

		w += shown_width(c);
		(void)fputs(c, stdout);
		s += used;
		n -= used;
	}
	printf("%*s", w < width ? width - w : 0, "");
}

/* The id of rec as shown: 7, "abc" (quoted, whole), or nothing when absent. */
static void
text_id(struct text *t, yajl_val rec)
{
	yajl_val id = get(rec, "id");

	if (YAJL_IS_STRING(id)) {
		text_add(t, "\"");
		text_show_member(t, rec, "id", "");
		text_add(t, "\"");
	} else if (YAJL_IS_NUMBER(id)) {
		text_show(t, YAJL_GET_NUMBER(id));
	} else if (YAJL_IS_NULL(id)) {
		text_add(t, "null");
	}
}

/* An `undelivered` event: [reason, ]N messages, B bytes[, one cut][, ids 1, "a"[, ... (N more)]] */
static void
text_undelivered(struct text *t, yajl_val rec)
{
	double n = 0, bytes = 0, more = 0;
	char num[96];
	yajl_val cut = get(rec, "cut"), ids = get(rec, "ids");

	(void)get_num(rec, "messages", &n);
	(void)get_num(rec, "bytes", &bytes);
	if (get_str(rec, "reason") != NULL) {
		text_show_member(t, rec, "reason", "");
		text_add(t, ", ");
	}
	(void)snprintf(num, sizeof(num), "%.0f message%s, %.0f bytes", n, n == 1 ? "" : "s", bytes);
	text_add(t, num);
	if (YAJL_IS_TRUE(cut)) {
		text_add(t, ", one cut");
	}
	if (!YAJL_IS_ARRAY(ids) || ids->u.array.len == 0) {
		return;
	}
	text_add(t, ", ids ");
	for (size_t i = 0; i < ids->u.array.len; i++) {
		yajl_val id = ids->u.array.values[i];

		text_add(t, i > 0 ? ", " : "");
		const char *str = YAJL_IS_STRING(id) ? YAJL_GET_STRING(id) : NULL;

		if (str != NULL) {
			text_add(t, "\"");
			text_show_n(t, str, strlen(str));
			text_add(t, "\"");
		} else if (YAJL_IS_NUMBER(id)) {
			text_show(t, YAJL_GET_NUMBER(id));
		} else {
			text_add(t, "?");
		}
	}
	if (get_num(rec, "ids_more", &more) && more > 0) {
		(void)snprintf(num, sizeof(num), ", ... (%.0f more)", more);
		text_add(t, num);
	}
}

/* Has the record an id (a string, a number or null)? */
static bool
has_id(yajl_val id)
{
	return YAJL_IS_STRING(id) || YAJL_IS_NUMBER(id) || YAJL_IS_NULL(id);
}

/*
 * How a server's run ended, from an `ended` or `suspended` record's exit, added to t
 * (unless NULL): "exit 0", "SIGKILL"; false for none (exit null: no server was running).
 */
static bool
exit_of(yajl_val rec, struct text *t)
{
	yajl_val ex = get(rec, "exit");
	const char *sig = YAJL_IS_OBJECT(ex) ? get_str(ex, "signal") : NULL;
	double code;

	if (sig != NULL) {
		if (t != NULL) {
			text_show(t, sig);
		}
		return true;
	}
	if (YAJL_IS_OBJECT(ex) && get_num(ex, "code", &code)) {
		char num[64];

		(void)snprintf(num, sizeof(num), "exit %.0f", code);
		if (t != NULL) {
			text_add(t, num);
		}
		return true;
	}
	return false;
}

/* ---- requests waiting for their response: (session, direction, id) -> method ---- */

struct waiting_session;

struct waiting {
	UT_hash_handle hh;
	/* the others of its session (utlist's DL_*2(), which cppcheck does not expand) */
	// cppcheck-suppress unusedStructMember
	struct waiting *s_prev, *s_next;
	struct waiting_session *ws;
	char *method;
	size_t method_len;
	size_t key_len;
	char key[];
};

/* The requests of a session still waiting: its `ended` record lets them all go. */
struct waiting_session {
	UT_hash_handle hh;
	struct waiting *head;
	size_t len;
	char id[];
};

static struct waiting *waiting;
static struct waiting_session *waiting_sessions;
static size_t n_waiting;
static bool waiting_full_said;

/*
 * At most this many requests wait for their answer (MCPMUX_LOG_WAITING_MAX, for the
 * tests: docs/testing.md); the answers to those past it are shown without their method and
 * latency, which stderr says once.
 */
#define WAITING_MAX 1000000

static size_t
waiting_max(void)
{
	static size_t max;

	if (max == 0) {
		const char *e = getenv("MCPMUX_LOG_WAITING_MAX");
		size_t v = 0;
		const char *p = e;

		max = WAITING_MAX;
		if (e == NULL || *e == '\0') {
			return max;
		}
		/* Digits only (no sign, no space), from 1 to the bound. */
		while (*p >= '0' && *p <= '9' && v <= WAITING_MAX) {
			v = v * 10 + (size_t)(*p++ - '0');
		}
		if (*p != '\0' || v == 0 || v > WAITING_MAX) {
			diag_warn("MCPMUX_LOG_WAITING_MAX (a setting for tests) is not a number "
				  "from 1 to %d: ignored",
				  WAITING_MAX);
			return max;
		}
		max = v;
		diag_warn("MCPMUX_LOG_WAITING_MAX=%zu (a setting for tests): at most %zu "
			  "requests wait for their answer, not %d",
			  v, v, WAITING_MAX);
	}
	return max;
}

static void
waiting_unlink(struct waiting *w)
{
	struct waiting_session *ws = w->ws;

	DL_DELETE2(ws->head, w, s_prev, s_next);
	if (ws->head == NULL) {
		HASH_DEL(waiting_sessions, ws);
		free(ws);
	}
}

/* The id of a record, to be keyed: JSON text (a number, or a string with escapes that
 * yajl's text does not keep apart), yajl's text of a string, or null. */
struct rec_id {
	const char *v;
	size_t len;
	char kind; /* 'j' JSON text, 's' a string's text, 'z' null */
};

/* The id of rec, as mcpmux matches ids; false when it has none (or one of another type). */
static bool
rec_id(yajl_val rec, struct rec_id *id)
{
	yajl_val v = get(rec, "id");

	if (YAJL_IS_NULL(v)) {
		*id = (struct rec_id){ "", 0, 'z' };
	} else if (YAJL_IS_NUMBER(v)) {
		*id = (struct rec_id){ v->u.number.r, strlen(v->u.number.r), 'j' };
	} else if (!YAJL_IS_STRING(v)) {
		return false;
	} else if (rec_odd && members_named(rec, "id") == 1 &&
		   jsonspan_member(rec_line, rec_len, "id", &id->v, &id->len)) {
		id->kind = 'j'; /* a NUL, a lone surrogate: as mcpmux keys them */
	} else {
		*id = (struct rec_id){ v->u.string, strlen(v->u.string), 's' };
	}
	return true;
}

/* The longest key of id in a session of sl bytes. */
static size_t
waiting_key_max(size_t sl, const struct rec_id *id)
{
	return sizeof(sl) + sl + 2 + JSONRPC_KEY_MAX(id->len);
}

/*
 * The key of a request in the table, written to key (waiting_key_max() bytes): its session
 * (after its length), the way it went, and its id by value, as mcpmux matches ids (1 and
 * 1.0 are one id; a string by the characters it stands for).  Its length; 0 when the id
 * cannot be keyed.
 */
static size_t
waiting_key(char *key, const char *session, size_t sl, bool from_client, const struct rec_id *id)
{
	size_t at = sizeof(sl);

	memcpy(key, &sl, sizeof(sl));
	if (sl > 0) {
		memcpy(key + at, session, sl);
	}
	at += sl;
	key[at++] = from_client ? '>' : '<';
	if (id->kind == 'j') {
		size_t kl = jsonrpc_id_key(id->v, id->len, key + at);

		return kl > 0 ? at + kl : 0;
	}
	key[at++] = id->kind;
	memcpy(key + at, id->v, id->len);
	return at + id->len;
}

/* A copy of the n bytes at s with a NUL after them, or NULL (no_memory said). */
static char *
dup_kept(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL) {
		no_memory = true;
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static void
waiting_put(const char *session, bool from_client, yajl_val rec, const char *method,
	    size_t method_len)
{
	size_t sl = session != NULL ? strlen(session) : 0;
	struct rec_id id;
	struct waiting *w, *old;

	if (!rec_id(rec, &id)) {
		return;
	}
	if (n_waiting >= waiting_max()) {
		if (!waiting_full_said) {
			waiting_full_said = true;
			diag_warn("more than %zu requests wait for their answer: the answers to "
				  "those after them are shown without their method and latency",
				  waiting_max());
		}
		return;
	}
	if ((w = malloc(sizeof(*w) + waiting_key_max(sl, &id))) == NULL) {
		no_memory = true;
		return;
	}
	w->key_len = waiting_key(w->key, session, sl, from_client, &id);
	HASH_FIND(hh, waiting, w->key, w->key_len, old);
	if (w->key_len == 0 || old != NULL) {
		free(w);
		return;
	}
	if ((w->method = dup_kept(method, method_len)) == NULL) {
		free(w);
		return;
	}
	w->method_len = method_len;
	bool added;
	struct waiting_session *ws;

	HASH_FIND(hh, waiting_sessions, session != NULL ? session : "", sl, ws);
	if (ws == NULL) {
		if ((ws = malloc(sizeof(*ws) + sl + 1)) == NULL) {
			no_memory = true;
			free(w->method);
			free(w);
			return;
		}
		memcpy(ws->id, session != NULL ? session : "", sl + 1);
		ws->len = sl;
		ws->head = NULL;
		TABLE_ADD(hh, waiting_sessions, ws->id, ws->len, ws, added);
		if (!added) {
			no_memory = true;
			free(ws);
			free(w->method);
			free(w);
			return;
		}
	}
	TABLE_ADD(hh, waiting, w->key, w->key_len, w, added);
	if (!added) {
		no_memory = true;
		if (ws->head == NULL) {
			HASH_DEL(waiting_sessions, ws);
			free(ws);
		}
		free(w->method);
		free(w);
		return;
	}
	w->ws = ws;
	DL_PREPEND2(ws->head, w, s_prev, s_next);
	n_waiting++;
}

/* A session's end (its `ended` record): none of its requests waits any more. */
static void
waiting_end(const char *session)
{
	size_t sl = session != NULL ? strlen(session) : 0;
	struct waiting_session *ws;

	HASH_FIND(hh, waiting_sessions, session != NULL ? session : "", sl, ws);
	if (ws == NULL) {
		return;
	}
	for (struct waiting *w = ws->head, *next; w != NULL; w = next) {
		next = w->s_next;
		HASH_DEL(waiting, w);
		free(w->method);
		free(w);
		n_waiting--;
	}
	HASH_DEL(waiting_sessions, ws);
	free(ws);
}

/*
 * The method of the request a response answers (malloc'd, caller frees; *method_len
 * bytes), or NULL.
 */
static char *
waiting_take(const char *session, bool request_from_client, yajl_val rec, size_t *method_len)
{
	size_t sl = session != NULL ? strlen(session) : 0, kl;
	struct rec_id id;
	struct waiting *w;
	char stack[512], *key;

	if (!rec_id(rec, &id)) {
		return NULL;
	}
	key = waiting_key_max(sl, &id) <= sizeof(stack) ? stack : malloc(waiting_key_max(sl, &id));
	if (key == NULL) {
		no_memory = true;
		return NULL;
	}
	kl = waiting_key(key, session, sl, request_from_client, &id);
	HASH_FIND(hh, waiting, key, kl, w);
	if (key != stack) {
		free(key);
	}
	if (kl == 0 || w == NULL) {
		return NULL;
	}
	char *m = w->method;

	*method_len = w->method_len;
	waiting_unlink(w);
	HASH_DEL(waiting, w);
	free(w);
	n_waiting--;
	return m;
}

static void
waiting_free(void)
{
	struct waiting *w, *tmp;
	struct waiting_session *ws, *wtmp;

	HASH_ITER (hh, waiting, w, tmp) {
		HASH_DEL(waiting, w);
		free(w->method);
		free(w);
	}
	HASH_ITER (hh, waiting_sessions, ws, wtmp) {
		HASH_DEL(waiting_sessions, ws);
		free(ws);
	}
	n_waiting = 0;
}

/*
 * Learn the method of a message record: its own, or for a response that of the request
 * it answers.  Returns a malloc'd string of *len bytes (a NUL after them), or NULL (and
 * *len 0).
 */
static char *
record_method(yajl_val rec, const char *session, bool in, size_t *len)
{
	const char *kind = get_str(rec, "kind");
	const char *method = rec_str(rec, "method", len);

	if (kind == NULL) {
		*len = 0;
		return NULL;
	}
	if (strcmp(kind, "request") == 0 && method != NULL) {
		waiting_put(session, in, rec, method, *len);
		return dup_kept(method, *len);
	}
	if (strcmp(kind, "response") == 0 || strcmp(kind, "error") == 0) {
		/* a response travels the other way from its request (its own method, if it
		 * has one, is not its name) */
		*len = 0;
		return waiting_take(session, !in, rec, len);
	}
	return method != NULL ? dup_kept(method, *len) : NULL;
}

/* Is the method (n bytes) the one --method names? */
static bool
method_is(const char *method, size_t n, const char *name)
{
	return method != NULL && n == strlen(name) && memcmp(method, name, n) == 0;
}

/* An end-of-run request is logged as an event: remember its id for its answer. */
static void
note_end_request(yajl_val rec, const char *session)
{
	size_t n;
	const char *method = rec_str(rec, "method", &n);

	if (method != NULL) {
		waiting_put(session, true, rec, method, n);
	}
}

/* ---- show ---- */

#define C_RESET "\033[0m"
#define C_DIM	"\033[2m"
#define C_RED	"\033[31m"
#define C_IN	"\033[36m"
#define C_OUT	"\033[32m"
#define C_EVENT "\033[33m"

static void
human_bytes(double b, char *buf, size_t len)
{
	if (b < 10000) {
		(void)snprintf(buf, len, "%.0f B", b);
	} else if (b < 10000 * 1024.) {
		(void)snprintf(buf, len, "%.0f KiB", b / 1024);
	} else {
		(void)snprintf(buf, len, "%.1f MiB", b / 1048576);
	}
}

static bool
session_matches(const struct opts *o, const char *session)
{
	return o->session == NULL ||
	       (session != NULL && strncmp(session, o->session, strlen(o->session)) == 0);
}

static void
show_record(const struct opts *o, yajl_val rec)
{
	const char *ts = get_str(rec, "ts");
	const char *session = get_str(rec, "session");
	const char *dir = get_str(rec, "dir");
	const char *event = get_str(rec, "event");
	/* the session's column is 8 cells: of bytes, as many as 8 characters can take */
	char when[13] = "", sess[8 * 4 + 1], size[32] = "", lat[32] = "";
	struct text t, st;
	double v;

	if (!session_matches(o, session)) {
		return;
	}
	if (ts != NULL && strlen(ts) >= 23) {
		text_init(&t, when, sizeof(when));
		text_show(&t, ts + 11);
	}
	text_init(&st, sess, sizeof(sess));
	st.max_cols = 8;
	if (session != NULL) {
		text_show(&st, session);
	} else {
		text_add(&st, "-");
	}
	if (event != NULL) {
		char detail[256], name[64], num[64];

		if (strcmp(event, "end-requested") == 0) {
			note_end_request(rec, session);
		} else if (strcmp(event, "ended") == 0) {
			waiting_end(session);
		}
		if (o->method != NULL) {
			return;
		}
		text_init(&t, detail, sizeof(detail));
		if (strcmp(event, "stderr") == 0) {
			text_show_member(&t, rec, "text", "");
		} else if (strcmp(event, "ended") == 0 || strcmp(event, "suspended") == 0) {
			/* [reason, ][exit, ]escalation E, N ms; "[reason, ]no server running"
			 * for the end of a suspended session */
			const char *esc = get_str(rec, "escalation");
			const char *reason = get_str(rec, "reason");
			double ms = 0;

			(void)get_num(rec, "ms", &ms);
			if (reason != NULL) {
				text_show_member(&t, rec, "reason", "");
				text_add(&t, ", ");
			}
			if (!exit_of(rec, NULL) && esc != NULL && strcmp(esc, "none") == 0) {
				text_add(&t, "no server running");
			} else {
				if (exit_of(rec, &t)) {
					text_add(&t, ", ");
				}
				text_add(&t, "escalation ");
				text_show(&t, esc ? esc : "?");
				(void)snprintf(num, sizeof(num), ", %.0f ms", ms);
				text_add(&t, num);
			}
		} else if ((strcmp(event, "resumed") == 0 || strcmp(event, "replayed") == 0) &&
			   get_num(rec, "ms", &v)) {
			(void)snprintf(num, sizeof(num), "in %.0f ms", v);
			text_add(&t, num);
		} else if (strcmp(event, "undelivered") == 0) {
			text_undelivered(&t, rec);
		} else if (strcmp(event, "resume-failed") == 0 ||
			   strcmp(event, "end-requested") == 0) {
			text_show_member(&t, rec, "reason", "");
		} else if (get_num(rec, "pid", &v)) {
			(void)snprintf(num, sizeof(num), "pid %.0f", v);
			text_add(&t, num);
		}
		text_init(&t, name, sizeof(name));
		text_show(&t, event);
		printf("%s %s%s%*s  %s  %s %s%*s %s\n", when, o->color ? C_DIM : "", sess,
		       text_pad(&st, 8), "", o->color ? C_RESET : "",
		       o->color ? C_EVENT "*" C_RESET : "*", name, text_pad(&t, 13), "", detail);
		return;
	}
	if (dir == NULL) {
		return;
	}
	bool in = strcmp(dir, "in") == 0;
	const char *kind = get_str(rec, "kind");
	size_t method_len = 0;
	/* The client's answers for a run that is over reached no server: they answer none of
	 * the session's requests. */
	bool dropped = YAJL_IS_TRUE(get(rec, "ended_run"));
	char *method = dropped ? NULL : record_method(rec, session, in, &method_len);
	char what[512];

	if (o->method != NULL && !method_is(method, method_len, o->method)) {
		free(method);
		return;
	}
	bool is_err = kind != NULL && strcmp(kind, "error") == 0;
	bool invalid = kind != NULL && strcmp(kind, "invalid") == 0;

	text_init(&t, what, sizeof(what));
	if (invalid) {
		text_add(&t, "(not JSON-RPC)");
	} else if (kind != NULL && strcmp(kind, "batch") == 0) {
		text_add(&t, "[batch]");
	} else if (kind != NULL && (strcmp(kind, "response") == 0 || is_err)) {
		text_add(&t, "#");
		text_id(&t, rec);
		text_add(&t, " ");
		text_show_n(&t, method ? method : "", method_len);
	} else if (has_id(get(rec, "id"))) {
		text_show_n(&t, method ? method : "?", method ? method_len : 1);
		text_add(&t, " #");
		text_id(&t, rec);
	} else {
		text_show_n(&t, method ? method : "?", method ? method_len : 1);
	}
	if (get_num(rec, "bytes", &v)) {
		human_bytes(v, size, sizeof(size));
	}
	if (get_num(rec, "ms", &v)) {
		(void)snprintf(lat, sizeof(lat), "%.1f ms", v);
	}
	const char *arrow = in ? "->" : "<-";
	const char *col = o->color ? (in ? C_IN : C_OUT) : "";

	printf("%s %s%s%*s%s  %s%s%s %s%*s %10s %10s%s%s%s%s\n", when, o->color ? C_DIM : "", sess,
	       text_pad(&st, 8), "", o->color ? C_RESET : "", col, arrow, o->color ? C_RESET : "",
	       what, text_pad(&t, 40), "", lat, size,
	       (is_err || invalid || dropped) && o->color ? C_RED : "",
	       is_err ? "  ERROR" : (invalid ? "  INVALID" : ""), dropped ? "  DROPPED" : "",
	       (is_err || invalid || dropped) && o->color ? C_RESET : "");
	free(method);
}

/* ---- stats ---- */

struct hist {
	uint32_t b[HIST_BUCKETS];
	uint64_t n;
	double max;
};

struct mstat {
	UT_hash_handle hh;
	uint64_t count, errors;
	struct hist lat;
	size_t name_len;
	char name[];
};

struct sstat {
	UT_hash_handle hh;
	char first_ts[32], last_ts[32]; /* (a record's time is 27 bytes) */
	uint64_t msgs, bytes, errors;
	uint64_t suspends, resumes;
	bool suspended; /* its last record so far is a `suspended` event */
	char ended[96];
	char id[];
};

static void
hist_add(struct hist *h, double ms)
{
	int i = 0;

	if (ms > HIST_MIN_MS) {
		/* A time past the last bucket's (up to an infinite one: 1e999 in a log that
		 * is not mcpmux's) is in the last. */
		double at = log(ms / HIST_MIN_MS) / log(HIST_BASE) + 1;

		i = at < HIST_BUCKETS - 1 ? (int)at : HIST_BUCKETS - 1;
	}
	h->b[i]++;
	h->n++;
	if (ms > h->max) {
		h->max = ms;
	}
}

/* The upper edge of the bucket holding the p-th quantile (5% precision). */
static double
hist_quantile(const struct hist *h, double p)
{
	uint64_t want = (uint64_t)ceil(p * (double)h->n), seen = 0;

	if (want == 0) {
		want = 1;
	}
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			double edge = i == 0 ? HIST_MIN_MS : HIST_MIN_MS * pow(HIST_BASE, i);

			return edge < h->max ? edge : h->max;
		}
	}
	return h->max;
}

/* The counters of the method name (len bytes). */
static struct mstat *
mstat_get(struct mstat **table, size_t *n, const char *name, size_t len)
{
	struct mstat *m;

	HASH_FIND(hh, *table, name, len, m);
	if (m != NULL) {
		return m;
	}
	if (*n >= MAX_METHODS && !method_is(name, len, "(other)")) {
		return mstat_get(table, n, "(other)", strlen("(other)"));
	}
	m = calloc(1, sizeof(*m) + len + 1);
	if (m == NULL) {
		no_memory = true;
		return NULL;
	}
	memcpy(m->name, name, len);
	m->name_len = len;
	bool added;

	TABLE_ADD(hh, *table, m->name, len, m, added);
	if (!added) {
		no_memory = true;
		free(m);
		return NULL;
	}
	(*n)++;
	return m;
}

static struct sstat *
sstat_get(struct sstat **table, size_t *n, const char *id)
{
	struct sstat *s;
	size_t len = strlen(id);

	HASH_FIND(hh, *table, id, len, s);
	if (s != NULL || *n >= MAX_SESSIONS) {
		return s;
	}
	s = calloc(1, sizeof(*s) + len + 1);
	if (s == NULL) {
		no_memory = true;
		return NULL;
	}
	memcpy(s->id, id, len + 1);
	bool added;

	TABLE_ADD(hh, *table, s->id, len, s, added);
	if (!added) {
		no_memory = true;
		free(s);
		return NULL;
	}
	(*n)++;
	return s;
}

static int
by_name(struct mstat *a, struct mstat *b)
{
	int c = memcmp(a->name, b->name, SYS_MIN(a->name_len, b->name_len));

	return c != 0 ? c : (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

static double
ts_seconds(const char *ts)
{
	struct tm tm;
	const char *rest;

	if (ts == NULL) {
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
	if (rest == NULL) {
		return 0;
	}
	return (double)timegm(&tm) + (rest[0] == '.' ? strtod(rest, NULL) : 0);
}

static void
print_method_row(const char *name, size_t name_len, uint64_t count, uint64_t errors,
		 const struct hist *h)
{
	put_shown(name, name_len, 32);
	// cppcheck-suppress ctuuninitvar ; the tables are calloc()ed
	if (h->n > 0) {
		printf(" %8llu %7llu %9.2f %9.2f %9.2f %9.2f\n", (unsigned long long)count,
		       (unsigned long long)errors, hist_quantile(h, .5), hist_quantile(h, .9),
		       hist_quantile(h, .99), h->max);
	} else {
		printf(" %8llu %7llu %9s %9s %9s %9s\n", (unsigned long long)count,
		       (unsigned long long)errors, "-", "-", "-", "-");
	}
}

/*
 * How a session ended, from its `ended` record: the reason, then in parentheses the
 * escalation (unless none) and the exit: "end-of-run (eof, exit 0)", "crash (SIGSEGV)".
 * A log written before `reason` existed: "eof (exit 0)", "kill (SIGKILL)", and
 * "none (no server running)" for a session that ended while suspended.
 */
static void
ended_text(yajl_val rec, char *buf, size_t len)
{
	const char *reason = get_str(rec, "reason");
	const char *esc = get_str(rec, "escalation");
	bool ex = exit_of(rec, NULL);
	bool show_esc = esc != NULL && strcmp(esc, "none") != 0;
	struct text t;

	text_init(&t, buf, len);
	if (reason == NULL) {
		text_show(&t, esc ? esc : "?");
		if (ex) {
			text_add(&t, " (");
			(void)exit_of(rec, &t);
			text_add(&t, ")");
		} else if (esc != NULL && !show_esc) {
			text_add(&t, " (no server running)");
		}
		return;
	}

	text_show_member(&t, rec, "reason", "");
	if (show_esc || ex) {
		text_add(&t, " (");
		if (show_esc) {
			text_show(&t, esc);
		}
		if (show_esc && ex) {
			text_add(&t, ", ");
		}
		(void)exit_of(rec, &t);
		text_add(&t, ")");
	}
}

static int
run_stats(const struct opts *o, struct reader *r)
{
	struct mstat *methods = NULL, *m, *tmp;
	struct sstat *sessions = NULL, *s, *stmp;
	size_t n_methods = 0, n_sessions = 0;
	struct hist all = { 0 };
	uint64_t total = 0, total_err = 0, total_bytes = 0, records = 0;
	uint64_t total_susp = 0, total_resumes = 0, total_dropped = 0;
	yajl_val rec;
	int rc = 0;

	/* Counts that miss what could not be kept would be wrong: none are printed. */
	while (!no_memory && (rec = next_record(r)) != NULL) {
		const char *session = get_str(rec, "session");
		const char *event = get_str(rec, "event");
		const char *dir = get_str(rec, "dir");
		const char *ts = get_str(rec, "ts");

		records++;
		if (!session_matches(o, session)) {
			yajl_tree_free(rec);
			continue;
		}
		s = session != NULL ? sstat_get(&sessions, &n_sessions, session) : NULL;
		if (s != NULL && ts != NULL) {
			if (s->first_ts[0] == '\0') {
				snprintf(s->first_ts, sizeof(s->first_ts), "%s", ts);
			}
			snprintf(s->last_ts, sizeof(s->last_ts), "%s", ts);
		}
		if (event != NULL) {
			if (strcmp(event, "end-requested") == 0) {
				note_end_request(rec, session);
			} else if (strcmp(event, "ended") == 0) {
				waiting_end(session);
			}
			if (s != NULL) {
				s->suspended = strcmp(event, "suspended") == 0;
				s->suspends += s->suspended;
				s->resumes += strcmp(event, "resumed") == 0;
				total_susp += s->suspended;
				total_resumes += strcmp(event, "resumed") == 0;
				if (strcmp(event, "ended") == 0) {
					ended_text(rec, s->ended, sizeof(s->ended));
				}
			}
			yajl_tree_free(rec);
			continue;
		}
		if (s != NULL) {
			s->suspended = false;
		}
		if (dir == NULL) {
			yajl_tree_free(rec);
			continue;
		}
		bool in = strcmp(dir, "in") == 0;
		const char *kind = get_str(rec, "kind");
		size_t method_len = 0;
		bool dropped = YAJL_IS_TRUE(get(rec, "ended_run"));
		char *method = dropped ? NULL : record_method(rec, session, in, &method_len);
		bool is_err = kind != NULL && strcmp(kind, "error") == 0;
		bool answer = kind != NULL && (strcmp(kind, "response") == 0 || is_err);
		double bytes = 0, ms;

		/* A size that is none (negative, or past any: 1e999 in a log that is not
		 * mcpmux's) counts no bytes. */
		if (!get_num(rec, "bytes", &bytes) || !(bytes >= 0 && bytes < 0x1p63)) {
			bytes = 0;
		}
		if (o->method != NULL && !method_is(method, method_len, o->method)) {
			free(method);
			yajl_tree_free(rec);
			continue;
		}
		total++;
		total_bytes += (uint64_t)bytes;
		if (s != NULL) {
			s->msgs++;
			s->bytes += (uint64_t)bytes;
			s->errors += is_err && !dropped;
		}
		if (dropped) {
			/* The client's answers for a run that is over: no method's, no error. */
			total_dropped++;
			yajl_tree_free(rec);
			continue;
		}
		/* A method's count is its requests and notifications; errors and latency come
		 * from the answers. */
		if (method == NULL) {
			const char *none =
				kind && strcmp(kind, "invalid") == 0 ? "(invalid)" : "(unknown)";

			m = mstat_get(&methods, &n_methods, none, strlen(none));
		} else {
			m = mstat_get(&methods, &n_methods, method, method_len);
		}
		if (m != NULL) {
			if (!answer) {
				m->count++;
			}
			if (is_err) {
				m->errors++;
				total_err++;
			}
			if (answer && get_num(rec, "ms", &ms)) {
				hist_add(&m->lat, ms);
				hist_add(&all, ms);
			}
		}
		free(method);
		yajl_tree_free(rec);
	}

	if (no_memory) {
		if (!r->failed) {
			diag_error("%s:%lu: out of memory: the statistics cannot all be counted",
				   r->name, r->lineno);
		}
		rc = 1;
		goto out;
	}
	HASH_SORT(methods, by_name);
	printf("%-32s %8s %7s %9s %9s %9s %9s\n", "METHOD", "COUNT", "ERRORS", "P50 MS", "P90 MS",
	       "P99 MS", "MAX MS");
	HASH_ITER (hh, methods, m, tmp) {
		// cppcheck-suppress [uninitvar,ctuuninitvar] ; uthash iteration, filled by
		// mstat_get()
		print_method_row(m->name, m->name_len, m->count, m->errors, &m->lat);
	}
	print_method_row("(all)", strlen("(all)"), total, total_err, &all);
	printf("\n%-36s %9s %8s %10s %6s %5s %7s  %s\n", "SESSION", "DURATION", "MSGS", "BYTES",
	       "ERRORS", "SUSP", "RESUMES", "ENDED");
	HASH_ITER (hh, sessions, s, stmp) {
		char b[32];

		// cppcheck-suppress uninitvar ; uthash iteration, filled by sstat_get()
		human_bytes((double)s->bytes, b, sizeof(b));
		put_shown(s->id, strlen(s->id), 36);
		printf(" %8.1fs %8llu %10s %6llu %5llu %7llu  %s\n",
		       ts_seconds(s->last_ts) - ts_seconds(s->first_ts),
		       (unsigned long long)s->msgs, b, (unsigned long long)s->errors,
		       (unsigned long long)s->suspends, (unsigned long long)s->resumes,
		       s->ended[0] ? s->ended : (s->suspended ? "suspended" : "(running)"));
	}
	char tb[32];

	human_bytes((double)total_bytes, tb, sizeof(tb));
	printf("\n%llu records, %llu messages (%s), %llu errors, %zu sessions, %zu methods, "
	       "%llu suspends, %llu resumes",
	       (unsigned long long)records, (unsigned long long)total, tb,
	       (unsigned long long)total_err, n_sessions, n_methods, (unsigned long long)total_susp,
	       (unsigned long long)total_resumes);
	if (total_dropped > 0) {
		printf(", %llu dropped for ended runs", (unsigned long long)total_dropped);
	}
	printf("\n");
out:
	HASH_ITER (hh, methods, m, tmp) {
		HASH_DEL(methods, m);
		free(m);
	}
	HASH_ITER (hh, sessions, s, stmp) {
		HASH_DEL(sessions, s);
		free(s);
	}
	return rc;
}

/* ---- command ---- */

static void
log_usage(void)
{
	fputs("usage: mcpmux log show [--session PREFIX] [--method NAME] [--follow] [--color "
	      "WHEN]\n"
	      "                       [--max-message BYTES] [FILE]\n"
	      "       mcpmux log stats [--session PREFIX] [--method NAME] [--max-message BYTES] "
	      "[FILE]\n"
	      "\n"
	      "Read a traffic log written by --log (FILE '-' or none: stdin).\n"
	      "show   a timeline, one line a message: time, session, direction, method or id,\n"
	      "       latency, size, error marker; colour on a terminal (--color "
	      "auto|always|never)\n"
	      "stats  per method: count, errors, latency p50/p90/p99/max; per session:\n"
	      "       duration, messages, bytes, errors, suspends and resumes (--idle-suspend),\n"
	      "       how it ended; totals\n"
	      "--max-message is the one the log was written with (64M): a line longer than any\n"
	      "record it allows is read past, and skipped\n",
	      stdout);
}

int
cmd_log(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "session", required_argument, NULL, 's' },
		{ "method", required_argument, NULL, 'm' },
		{ "follow", no_argument, NULL, 'f' },
		{ "color", required_argument, NULL, 'c' },
		{ "max-message", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .max_message = FRAMER_MAX_DEFAULT };
	const char *color = "auto";
	int c;

	/* Its output waits for room in a full non-blocking stdout, as config's does. */
	(void)sys_stdout_waits();
	/* Columns line up in terminal cells under a UTF-8 locale, as column(1) and ls(1)
	 * line them up (the character type only: numbers keep their '.'). */
	utf8_cells = setlocale(LC_CTYPE, "") != NULL && strcmp(nl_langinfo(CODESET), "UTF-8") == 0;

	if (argc < 2) {
		diag_error("no log command given (show or stats; see mcpmux log --help)");
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		log_usage();
		return 0;
	}
	bool show = strcmp(argv[1], "show") == 0;

	if (!show && strcmp(argv[1], "stats") != 0) {
		diag_error("unknown log command '%s' (show or stats; see mcpmux log --help)",
			   argv[1]);
		return EXIT_USAGE;
	}
	argc--;
	argv++;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.session = optarg;
			break;
		case 'm':
			o.method = optarg;
			break;
		case 'f':
			o.follow = true;
			break;
		case 'c':
			color = optarg;
			break;
		case 'x':
			if (cli_parse_size("--max-message", optarg, 64, &o.max_message) != 0) {
				return EXIT_USAGE;
			}
			break;
		case 'h':
			log_usage();
			return 0;
		default:
			(void)cli_option_error(c, argv, longopts, "mcpmux log");
			return EXIT_USAGE;
		}
	}
	if (o.follow && !show) {
		diag_error("option '--follow' goes with 'mcpmux log show', not stats (see mcpmux "
			   "log --help)");
		return EXIT_USAGE;
	}
	if (argc - optind > 1) {
		diag_error("usage: mcpmux log (show | stats) [OPTIONS] [FILE]");
		return EXIT_USAGE;
	}
	o.file = optind < argc ? argv[optind] : "-";
	if (strcmp(color, "always") == 0) {
		o.color = true;
	} else if (strcmp(color, "auto") == 0) {
		const char *no_color = getenv("NO_COLOR");

		/* no-color.org: NO_COLOR set and not empty, whatever its value, means none. */
		o.color = isatty(STDOUT_FILENO) && (no_color == NULL || no_color[0] == '\0');
	} else if (strcmp(color, "never") != 0) {
		diag_error("--color takes auto, always or never");
		return EXIT_USAGE;
	}

	struct reader r = { .name = o.file, .follow = o.follow, .max = record_max(o.max_message) };

	if (strcmp(o.file, "-") == 0) {
		r.f = stdin;
		r.name = "(stdin)";
	} else if ((r.f = open_log(&o, &r.gone)) == NULL) {
		return r.gone ? 0 : 1;
	}
	struct stat st;

	/* A pipe ends with its writer: --follow waits for more of a file only. */
	if (r.follow && (fstat(fileno(r.f), &st) == -1 || !S_ISREG(st.st_mode))) {
		r.follow = false;
	}
	if (r.follow && r.f != stdin) {
		r.path = o.file;
	}
	int rc = 0, out_err = 0;

	if (show) {
		yajl_val rec;

		while ((rec = next_record(&r)) != NULL) {
			errno = 0; /* the reason of a failed write below, not of the read */
			show_record(&o, rec);
			if (o.follow) {
				(void)fflush(stdout);
			}
			out_err = ferror(stdout) ? (errno != 0 ? errno : EIO) : 0;
			yajl_tree_free(rec);
			if (out_err != 0) {
				break; /* the reader went (EPIPE), or a write failed */
			}
		}
	} else {
		rc = run_stats(&o, &r);
	}
	if (r.failed) {
		rc = 1;
	}
	if (r.bad > 0 && r.good == 0 && !r.failed && !o.follow) {
		/* Not an empty log (no traffic yet): the wrong file, given by mistake. */
		diag_error("%s is not a traffic log: none of its %lu lines is a record", r.name,
			   r.bad);
		rc = 1;
	} else if (r.bad > 1) {
		diag_warn("%s: %lu lines in all were not traffic log records (skipped)", r.name,
			  r.bad);
	}
	if (fflush(stdout) == EOF && out_err == 0) {
		out_err = errno;
	}
	if (out_err != 0 && out_err != EPIPE) {
		errno = out_err;
		diag_error_errno("cannot write the output");
		rc = 1;
	}
	waiting_free();
	rec_strs_free();
	free(r.line);
	if (r.f != stdin) {
		(void)fclose(r.f);
	}
	if (r.old != NULL) {
		(void)fclose(r.old);
	}
	return rc;
}
