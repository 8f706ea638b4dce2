/*
 * tlog: the traffic log.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/errout.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"
#include "mcpmux/tlog.h"
#include "mcpmux/wbuf.h"

#define TLOG_FLUSH_AT ((size_t)64 << 10)
/* A log that is a pipe, a FIFO, a socket or a terminal: the most it may hold unsent. */
#define TLOG_STREAM_MAX ((size_t)1 << 20)
/*
 * The memory the buffer of records keeps for the next turn (a turn's records fit; a big
 * message's record is given back).  At sbuf's default it was freed and grown again, from
 * 256 bytes, every turn.
 */
#define TLOG_KEEP ((size_t)128 << 10)
/*
 * A body at least this long, in a log that is a regular file, is not copied into the
 * buffer: the buffer (the records before it and this one's head), the body from where
 * it is, and the record's end go out in one writev.
 */
#define TLOG_DIRECT ((size_t)16 << 10)

bool tlog_enabled;

/*
 * A string's JSON text, kept from the record before: most records repeat their session
 * and their method, and escaping is the dearest part of a record without a body.
 */
#define ESC_CACHE_RAW 128
struct esc_cache {
	size_t raw_len; /* SIZE_MAX: nothing kept */
	size_t out_len;
	char raw[ESC_CACHE_RAW];
	char out[ESC_CACHE_RAW * 6 + 2];
};

static struct {
	struct ev_loop *loop;
	const char *path; /* NULL for stderr */
	int fd;
	size_t bodies;
	struct sbuf buf;
	bool failing;	    /* the last write failed (reported once) */
	bool mid_line;	    /* a failed write left part of a record: the file ends mid-line */
	bool mid_line_seen; /* ... or the file ended so when it was opened: looked at again */
	off_t seen_size;    /* its size then */
	dev_t dev;	    /* the file open, as fstat() saw it */
	ino_t ino;
	double reopen_t; /* when the path was last (re)opened after SIGUSR1 (sys_mono()) */
	/*
	 * Not a regular file (a FIFO, a pipe, a socket, a terminal): it is written without
	 * blocking, what its reader has not taken yet waits in `pending` (up to
	 * TLOG_STREAM_MAX), and records past that are dropped whole and counted.
	 */
	bool stream;
	bool stream_written; /* a record was given to it (the FIFO's bytes at exit are said) */
	struct wbuf pending;
	ev_io pending_w;
	unsigned long long dropped; /* records past the bound (a slow reader), since said */
	unsigned long long lost;    /* records a failed write took, since said */
	bool no_memory_said;	    /* records were dropped for want of memory (drop_failed()) */
	ev_prepare flush_w;
	ev_signal reopen_w;
	time_t ts_sec; /* the second that ts_head holds */
	char ts_head[24];
	/* The wall clock of this loop turn (sys_turn_mono), read at its first record. */
	double turn_mono;
	char ts_txt[36]; /* {"ts":"YYYY-MM-DDTHH:MM:SS.uuuuuuZ", */
	size_t ts_len;
	struct esc_cache session, method;
	pid_t pid;	  /* the pid that pid_txt holds, 0 for none */
	char pid_txt[32]; /* ,"pid":N */
	size_t pid_len;
	/*
	 * The head of the last message's record, from {"ts" to its kind: the messages of a
	 * turn mostly share it whole (one session, one server, one way), and it is copied
	 * at once instead of being put together again from its seven parts.
	 */
	struct {
		double turn; /* the turn it was made in; 0: none */
		pid_t pid;
		enum tlog_dir dir;
		enum jsonrpc_kind kind;
		size_t session_len; /* SIZE_MAX: a null session */
		char session[ESC_CACHE_RAW];
		size_t len;
		char txt[36 + 10 + ESC_CACHE_RAW * 6 + 2 + 32 + 40];
	} head;
} L = { .fd = -1, .session = { .raw_len = SIZE_MAX }, .method = { .raw_len = SIZE_MAX } };

static void
add_json_string_kept(struct sbuf *b, struct esc_cache *c, const char *p, size_t len)
{
	if (len != c->raw_len || memcmp(p, c->raw, len) != 0) {
		if (len > sizeof(c->raw)) {
			sbuf_add_json_string(b, p, len);
			return;
		}
		c->out_len = rpcout_escape_into(c->out, p, len);
		memcpy(c->raw, p, len);
		c->raw_len = len;
	}
	sbuf_add(b, c->out, c->out_len);
}

#define ADD_LIT(b, lit) sbuf_add((b), "" lit, sizeof(lit) - 1)

#define KIND(name)                        \
	{                                 \
		"" name, sizeof(name) - 1 \
	}
static const struct {
	const char *s;
	size_t n;
} kinds[] = {
	[JSONRPC_INVALID_JSON] = KIND("invalid"), [JSONRPC_INVALID_REQUEST] = KIND("invalid"),
	[JSONRPC_REQUEST] = KIND("request"),	  [JSONRPC_NOTIFICATION] = KIND("notification"),
	[JSONRPC_RESPONSE] = KIND("response"),	  [JSONRPC_ERROR] = KIND("error"),
	[JSONRPC_BATCH] = KIND("batch"),
};

/*
 * Does the file at the log's path, which st describes, end with a line end?  Read through
 * a descriptor of its own (the log's is for writing only); true when it cannot be read.
 */
static bool
ends_a_line(const struct stat *st)
{
	char last = '\n';
	int fd = open(L.path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd == -1) {
		return true;
	}
	if (sys_fd_is_file(fd, st) && pread(fd, &last, 1, st->st_size - 1) != 1) {
		last = '\n';
	}
	(void)close(fd);
	return last == '\n';
}

static int
open_file(void)
{
	struct stat st;
	int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

	L.stream = false;
	if (L.path == NULL) {
		L.fd = STDERR_FILENO;
		return 0;
	}
	/* 0600 whatever the umask: the log holds everything the agent and server said. */
	int fd = open(L.path, flags, 0600);

	/*
	 * A FIFO is opened for reading too, so that the open neither waits for a reader nor
	 * fails without one (ENXIO), and records wait (up to the bound) until one comes: the
	 * path is opened again, and taken if it still names that FIFO.  No stat() before the
	 * open: a FIFO put at the path in between was opened for writing only.
	 */
	if (fd == -1 && errno == ENXIO) {
		fd = open(L.path, (flags & ~O_WRONLY) | O_RDWR, 0600);
	} else if (fd != -1 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
		int rw = open(L.path, (flags & ~(O_WRONLY | O_CREAT)) | O_RDWR);

		if (rw != -1 && sys_fd_is_file(rw, &st)) {
			(void)close(fd);
			fd = rw;
		} else if (rw != -1) {
			(void)close(rw);
		}
	}
	if (fd == -1 && errno == ENXIO && stat(L.path, &st) == 0 &&
	    sys_fd_is_file(STDERR_FILENO, &st)) {
		/* /dev/stderr while stderr is a socket (a systemd service's journal), which no
		 * open() takes: the same as --log -, through errout. */
		L.fd = STDERR_FILENO;
		return 0;
	}
	if (fd == -1 || fstat(fd, &st) == -1) {
		if (fd != -1) {
			int err = errno;

			(void)close(fd);
			errno = err;
		}
		return -1;
	}
	if (sys_fd_is_file(STDERR_FILENO, &st)) {
		/* /dev/stderr and the like, or the file stderr goes to (`2>>FILE`): the same
		 * as --log -, through errout, whatever the file's type.  Written through a
		 * description of its own, a regular file's records would overwrite what stderr
		 * wrote, or be overwritten, unless both appended. */
		(void)close(fd);
		L.fd = STDERR_FILENO;
		return 0;
	}
	L.stream = !S_ISREG(st.st_mode);
	L.fd = fd;
	/* Another file (a rotation), empty or written by another instance meanwhile: the cut
	 * record was the old one's.  The same file, reopened, still ends in the middle of it,
	 * unless it was emptied. */
	if (!L.stream && (st.st_size == 0 || st.st_dev != L.dev || st.st_ino != L.ino)) {
		L.mid_line = false;
	}
	/* A file that ends in the middle of a line: a writer was killed while it wrote a
	 * record (a long one goes out in several pieces, and SIGKILL stops the write between
	 * two), another instance or this one's run before.  Appended to, that line would take
	 * this one's first record with it: the next write ends it first. */
	L.mid_line_seen = false;
	if (!L.stream && st.st_size > 0 && !ends_a_line(&st)) {
		L.mid_line = L.mid_line_seen = true;
		L.seen_size = st.st_size;
	}
	L.dev = st.st_dev;
	L.ino = st.st_ino;
	return 0;
}

/* The watcher that writes what waits; it never keeps the loop (or mcpmux) from ending. */
static void
pending_watch(bool on)
{
	if (on && !ev_is_active(&L.pending_w)) {
		ev_io_start(L.loop, &L.pending_w);
		ev_unref(L.loop);
	} else if (!on && ev_is_active(&L.pending_w)) {
		ev_ref(L.loop);
		ev_io_stop(L.loop, &L.pending_w);
	}
}

static void
close_file(void)
{
	if (L.loop != NULL) {
		pending_watch(false);
	}
	wbuf_release(&L.pending);
	if (L.fd > STDERR_FILENO) {
		sys_close(&L.fd);
	}
	L.fd = -1;
}

/* The number of records (lines) in p[0..len). */
static unsigned long long
count_lines(const char *p, size_t len)
{
	unsigned long long n = 0;
	const char *end = p + len, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		n++;
		p = nl + 1;
	}
	return n;
}

static void
stream_failed(void)
{
	if (!L.failing) {
		diag_warn_errno("traffic log %s: cannot write (records are dropped until it can "
				"be written again)",
				L.path);
		L.failing = true;
	}
	pending_watch(false);
	L.lost += wbuf_count(&L.pending, '\n'); /* a record cut counts */
	wbuf_release(&L.pending);
}

/* After the reader took what waited: say how many records could not wait. */
static void
stream_drained(void)
{
	pending_watch(false);
	wbuf_release(&L.pending);
	if (L.dropped > 0) {
		diag_warn("traffic log %s: %llu records dropped (its reader did not keep up)",
			  L.path, L.dropped);
		L.dropped = 0;
	}
	if (L.failing) {
		diag_warn("traffic log %s: writing again (%llu records were lost)", L.path, L.lost);
		L.failing = false;
		L.lost = 0;
	}
}

static void
tlog_on_pending(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	if (wbuf_flush(&L.pending, L.fd) == -1) {
		stream_failed();
	} else if (wbuf_len(&L.pending) == 0) {
		stream_drained();
	}
}

/* A log that is not a regular file: never a blocking write. */
static void
stream_write(void)
{
	L.stream_written = true;
	if (L.fd < 0) {
		L.lost += count_lines(L.buf.buf, L.buf.len);
		return;
	}
	if (wbuf_len(&L.pending) > 0) {
		if (wbuf_len(&L.pending) + L.buf.len > TLOG_STREAM_MAX ||
		    wbuf_append(&L.pending, L.buf.buf, L.buf.len) == -1) {
			L.dropped += count_lines(L.buf.buf, L.buf.len);
		}
		return; /* its watcher writes it */
	}
	size_t sent;

	if (wbuf_send(&L.pending, L.fd, L.buf.buf, L.buf.len, NULL, 0, &sent) == -1) {
		/* Out of memory: what the log took is not lost. */
		L.lost += count_lines(L.buf.buf + sent, L.buf.len - sent);
		stream_failed();
	} else if (wbuf_len(&L.pending) > 0) {
		pending_watch(true);
	} else if (L.dropped > 0 || L.lost > 0 || L.failing) {
		stream_drained();
	}
}

/* A log that is a regular file: written at once, whole. */
static bool
is_file(void)
{
	return L.path != NULL && L.fd != STDERR_FILENO && !L.stream;
}

/* The byte at offset at of the n pieces of iov (at < their total). */
static char
byte_at(const struct iovec *iov, int n, size_t at)
{
	for (int i = 0; i < n; i++) {
		if (at < iov[i].iov_len) {
			return ((const char *)iov[i].iov_base)[at];
		}
		at -= iov[i].iov_len;
	}
	return '\0';
}

static void
file_write(struct iovec *iov, int n)
{
	size_t total = 0, left = 0;
	int rc = -1;
	bool tried = false;
	struct iovec orig[3]; /* what sys_writev_all() is given (it moves iov on) */

	for (int i = 0; i < n; i++) {
		total += iov[i].iov_len;
	}
	if (n <= 3) {
		memcpy(orig, iov, (size_t)n * sizeof(*iov));
	}
	if (L.fd >= 0 && L.mid_line && L.mid_line_seen) {
		/* Seen at the open, it may have been another instance's long record on its
		 * way (the file grows a page at a time): one that has grown since is another's,
		 * written or being written, whose own line end comes (ours, waiting for its
		 * write, would make an empty line).  Only a file that stayed as it was ends in
		 * a record cut for good. */
		struct stat st;

		L.mid_line = fstat(L.fd, &st) == 0 && st.st_size == L.seen_size && st.st_size > 0 &&
			     !ends_a_line(&st);
		L.mid_line_seen = false;
	}
	if (L.fd >= 0 && L.mid_line) {
		/* After a record cut by a failed write, a line end of its own: the cut record
		 * is one bad line, and the next one is whole. */
		struct iovec nl = { .iov_base = (void *)(uintptr_t) "\n", .iov_len = 1 };

		L.mid_line = sys_writev_all(L.fd, &nl, 1) == -1;
	}
	if (L.fd >= 0 && !L.mid_line) {
		tried = true;
		rc = sys_writev_all(L.fd, iov, n);
		for (int i = 0; i < n; i++) {
			left += iov[i].iov_len; /* what sys_writev_all() did not take */
		}
	}
	if (rc == -1 && tried && left < total) {
		/* Part of a record went (ENOSPC): the next batch ends its line first.  Not when
		 * what went ends with a whole record (a batch cut between two records). */
		L.mid_line = n > 3 || byte_at(orig, n, total - left - 1) != '\n';
	}
	if (rc == -1) {
		if (!L.failing && L.fd < 0) {
			/* Nothing was written: errno is not of this log. */
			diag_warn("traffic log %s: closed after a failed reopen (records are "
				  "dropped until it can be opened again)",
				  L.path);
		} else if (!L.failing) {
			diag_warn_errno("traffic log %s: cannot write (records are dropped until "
					"it can be written again)",
					L.path);
		}
		L.failing = true;
	} else if (L.failing) {
		diag_warn("traffic log %s: writing again", L.path);
		L.failing = false;
	}
}

/* Open the log's path again (SIGUSR1; or a reopen that failed, at most once a second). */
static void
reopen(void)
{
	L.reopen_t = sys_mono();
	if (open_file() == -1) {
		diag_warn_errno("traffic log %s: cannot reopen (records are dropped; tried again "
				"every second)",
				L.path);
	} else {
		ev_io_set(&L.pending_w, L.fd, EV_WRITE);
		diag_info("traffic log %s: reopened", L.path);
	}
}

/* A reopen that failed (EMFILE, ENOSPC for the new file's inode): tried again. */
static void
reopen_retry(void)
{
	if (L.path != NULL && L.fd < 0 && L.loop != NULL && sys_mono() - L.reopen_t >= 1.) {
		reopen();
	}
}

/*
 * Memory ran out for a record (its buffer failed, and took nothing more): what was
 * built of it is dropped, and with it the records after it that the failed buffer did
 * not take: the rest of the turn, but none when it held TLOG_FLUSH_AT as the record
 * ended (record_end() writes it then, and the turn's next records are kept).  Said once
 * until records are kept again.  Written, the cut record would have
 * taken the next one's line.
 */
static void
drop_failed(void)
{
	const char *nl = L.buf.len > 0 ? memrchr(L.buf.buf, '\n', L.buf.len) : NULL;

	L.buf.len = nl != NULL ? (size_t)(nl - L.buf.buf) + 1 : 0;
	if (!L.no_memory_said) {
		diag_warn("traffic log %s: out of memory for a record: it is dropped, and "
			  "records after it in the same turn may be",
			  L.path != NULL ? L.path : "(stderr)");
		L.no_memory_said = true;
	}
}

/* tlog_flush() with something to write, or a failed buffer. */
__attribute__((noinline)) static void
flush_some(void)
{
	if (L.buf.failed) {
		drop_failed();
	} else {
		L.no_memory_said = false;
	}
	if (L.buf.len == 0) {
		sbuf_reset_keep(&L.buf, TLOG_KEEP); /* a failed one takes records again */
		return;
	}
	reopen_retry();
	if (L.path == NULL || L.fd == STDERR_FILENO) {
		/* On stderr: never blocking the loop, dropped and counted when stderr is full. */
		errout_lines(L.buf.buf, L.buf.len);
	} else if (L.stream) {
		stream_write();
	} else {
		struct iovec v = { .iov_base = L.buf.buf, .iov_len = L.buf.len };

		file_write(&v, 1);
	}
	sbuf_reset_keep(&L.buf, TLOG_KEEP);
}

void
tlog_flush(void)
{
	/*
	 * Called every loop turn, logged or not: an empty buffer returns before anything
	 * else (flush_some() kept apart, so that this costs no stack frame either).
	 */
	if (L.buf.len > 0 || L.buf.failed) {
		flush_some();
	}
}

static void
tlog_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	tlog_flush();
}

static void
tlog_on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	tlog_flush();
	if (L.stream || L.fd == STDERR_FILENO) {
		/* Not a file that logrotate renames, or stderr (as --log -): nothing to reopen. */
		return;
	}
	close_file();
	reopen();
}

/*
 * The log, opened by its path through a description of mcpmux's own (st; appending), or
 * a socket, which could not be opened, and mcpmux's stdin and stdout, which are the
 * client's: refused, said, when records would be read back as the client's (stdin), go
 * out among its messages (stdout, not a regular file), or overwrite what goes to stdout
 * or be overwritten (the same regular file, stdout not appending: two offsets).  A
 * terminal or another character device is never refused (--log /dev/tty).  (A log that
 * is stderr's file is written through stderr, as --log -, and never comes here: where
 * stderr goes is the caller's choice.)
 */
static bool
refuse_clients(const char *path, const struct stat *st)
{
	int out_fl;

	if (S_ISCHR(st->st_mode)) {
		return false;
	}
	if (sys_fd_is_file(STDIN_FILENO, st)) {
		diag_error("the traffic log '%s' is mcpmux's stdin, the client's: mcpmux would "
			   "read its records back as the client's messages (use another file, or "
			   "--log - for stderr)",
			   path);
		return true;
	}
	if (!sys_fd_is_file(STDOUT_FILENO, st)) {
		return false;
	}
	if (!S_ISREG(st->st_mode)) {
		diag_error("the traffic log '%s' is mcpmux's stdout, the client's: its records "
			   "would be among the client's messages (use another file, or --log - "
			   "for stderr)",
			   path);
		return true;
	}
	out_fl = fcntl(STDOUT_FILENO, F_GETFL);
	if (out_fl != -1 && (out_fl & O_APPEND) != 0) {
		return false; /* each write of both goes at the end, whole */
	}
	diag_error("the traffic log '%s' is the file mcpmux's stdout writes to, and the two "
		   "are not both opened for appending: they would write over each other "
		   "(append to it with >>, or use another file)",
		   path);
	return true;
}

int
tlog_open(struct ev_loop *loop, const char *path, size_t bodies, bool client_stdio)
{
	L.loop = loop;
	L.path = strcmp(path, "-") == 0 ? NULL : path;
	L.bodies = bodies;
	wbuf_init(&L.pending, TLOG_STREAM_MAX);
	if (open_file() == -1) {
		struct stat st;
		int err = errno;

		/* A socket, which no open() takes (ENXIO): when it is the client's, that is
		 * what is said. */
		if (client_stdio && err == ENXIO && stat(path, &st) == 0 &&
		    refuse_clients(path, &st)) {
			return -1;
		}
		errno = err;
		return diag_error_errno("cannot open the traffic log '%s' (check the directory "
					"exists and is writable, or use --log -)",
					path);
	}
	if (client_stdio && L.path != NULL && L.fd != STDERR_FILENO) {
		struct stat st;

		if (fstat(L.fd, &st) == 0 && refuse_clients(path, &st)) {
			close_file();
			return -1;
		}
	}
	ev_io_init(&L.pending_w, tlog_on_pending, L.fd, EV_WRITE);
	ev_prepare_init(&L.flush_w, tlog_on_prepare);
	ev_set_priority(&L.flush_w, EV_MINPRI); /* after every other prepare that logs */
	ev_prepare_start(loop, &L.flush_w);
	ev_unref(loop);
	if (L.path != NULL) {
		ev_signal_init(&L.reopen_w, tlog_on_usr1, SIGUSR1);
		ev_signal_start(loop, &L.reopen_w);
		ev_unref(loop);
	}
	L.turn_mono = 0; /* nothing of a log before is reused: its time, its last head */
	L.head.turn = 0;
	tlog_enabled = true;
	return 0;
}

void
tlog_close(void)
{
	if (!tlog_enabled) {
		return;
	}
	tlog_flush();
	ev_ref(L.loop);
	ev_prepare_stop(L.loop, &L.flush_w);
	if (L.path != NULL) {
		ev_ref(L.loop);
		ev_signal_stop(L.loop, &L.reopen_w);
	}
	if (L.stream) {
		/* At exit nothing waits for a reader that does not read: what is lost is said. */
		unsigned long long unwritten = 0;

		if (wbuf_len(&L.pending) > 0) {
			(void)wbuf_flush(&L.pending, L.fd); /* what the pipe takes now, once */
			unwritten = wbuf_count(&L.pending, '\n'); /* a record cut counts */
		}
		if (L.dropped > 0 || unwritten > 0) {
			diag_warn("traffic log %s: %llu records dropped (its reader did not keep "
				  "up), %llu of them not written at exit",
				  L.path, L.dropped + unwritten, unwritten);
		}
		if (L.lost > 0) {
			diag_warn("traffic log %s: %llu records lost (it could not be written)",
				  L.path, L.lost);
		}
		int in_pipe = 0;
		struct stat st;

		/* A FIFO mcpmux itself holds open for reading: lost with it if no one reads. */
		if (L.stream_written && fstat(L.fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
		    ioctl(L.fd, FIONREAD, &in_pipe) == 0 && in_pipe > 0) {
			diag_warn(
				"traffic log %s: %d bytes of records still in the FIFO at exit (lost "
				"unless a reader has it open)",
				L.path, in_pipe);
		}
		L.dropped = L.lost = 0;
		L.stream_written = false;
	}
	close_file();
	sbuf_release(&L.buf);
	L.turn_mono = 0;
	L.head.turn = 0;
	tlog_enabled = false;
}

/* {"ts":"...","session":"...","pid":N, */
static void
record_head(const char *session, pid_t pid)
{
	struct sbuf *b = &L.buf;

	/*
	 * The messages of one loop turn were read at its wake-up: they share its time (as
	 * their "ms" does), read and written out once: {"ts":"YYYY-MM-DDTHH:MM:SS.uuuuuuZ",
	 */
	if (sys_turn_mono <= 0 || sys_turn_mono != L.turn_mono) {
		struct timespec ts;
		char *o = L.ts_txt;
		unsigned long us;

		(void)clock_gettime(CLOCK_REALTIME, &ts);
		L.turn_mono = sys_turn_mono;
		if (ts.tv_sec != L.ts_sec || L.ts_head[0] == '\0') {
			struct tm tm;

			(void)gmtime_r(&ts.tv_sec, &tm);
			(void)strftime(L.ts_head, sizeof(L.ts_head), "%Y-%m-%dT%H:%M:%S", &tm);
			L.ts_sec = ts.tv_sec;
		}
		memcpy(o, "{\"ts\":\"", 7);
		memcpy(o + 7, L.ts_head, 19); /* YYYY-MM-DDTHH:MM:SS */
		o[26] = '.';
		us = (unsigned long)ts.tv_nsec / 1000;
		for (int i = 32; i > 26; i--, us /= 10) {
			o[i] = (char)('0' + us % 10);
		}
		memcpy(o + 33, "Z\",", 3);
		L.ts_len = 36;
	}
	sbuf_add(b, L.ts_txt, L.ts_len);
	ADD_LIT(b, "\"session\":");
	if (session != NULL) {
		add_json_string_kept(b, &L.session, session, strlen(session));
	} else {
		ADD_LIT(b, "null");
	}
	if (pid <= 0) {
		ADD_LIT(b, ",\"pid\":null");
		return;
	}
	if (pid != L.pid) {
		L.pid_len = (size_t)snprintf(L.pid_txt, sizeof(L.pid_txt), ",\"pid\":%d", (int)pid);
		L.pid = pid;
	}
	sbuf_add(b, L.pid_txt, L.pid_len);
}

static void
record_end(void)
{
	ADD_LIT(&L.buf, "}\n");
	if (L.buf.len >= TLOG_FLUSH_AT) {
		tlog_flush();
	}
}

/* The record's body; true if that ended (and wrote) the record too. */
static bool
record_body(const char *line, size_t len, bool valid)
{
	struct sbuf *b = &L.buf;

	if (L.bodies == 0) {
		return false;
	}
	if (len > L.bodies) {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add_json_string(b, line, L.bodies - rpcout_utf8_tail(line, L.bodies));
		sbuf_adds(b, ",\"truncated\":true");
	} else if (valid) {
		sbuf_adds(b, ",\"msg\":");
		if (len >= TLOG_DIRECT) {
			reopen_retry(); /* this record may not go through tlog_flush() */
		}
		if (len >= TLOG_DIRECT && is_file() && !b->failed) {
			struct iovec v[3] = {
				{ .iov_base = b->buf, .iov_len = b->len },
				{ .iov_base = (void *)(uintptr_t)line, .iov_len = len },
				{ .iov_base = (void *)(uintptr_t) "}\n", .iov_len = 2 },
			};

			file_write(v, 3);
			sbuf_reset_keep(b, TLOG_KEEP);
			return true;
		}
		sbuf_add(b, line, len);
	} else {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add_json_string(b, line, len);
	}
	return false;
}

/* {"ts":"...","session":"...","pid":N,"dir":"in","kind":"request" */
static void
message_head(const char *session, pid_t pid, enum tlog_dir dir, enum jsonrpc_kind kind)
{
	struct sbuf *b = &L.buf;
	size_t slen = session != NULL ? strlen(session) : SIZE_MAX;

	if (sys_turn_mono > 0 && L.head.turn == sys_turn_mono && L.head.pid == pid &&
	    L.head.dir == dir && L.head.kind == kind && L.head.session_len == slen &&
	    (session == NULL || memcmp(L.head.session, session, slen) == 0)) {
		sbuf_add(b, L.head.txt, L.head.len);
		return;
	}

	size_t start = b->len;

	record_head(session, pid);
	if (dir == TLOG_IN) {
		ADD_LIT(b, ",\"dir\":\"in\",\"kind\":\"");
	} else {
		ADD_LIT(b, ",\"dir\":\"out\",\"kind\":\"");
	}
	sbuf_add(b, kinds[kind].s, kinds[kind].n);
	sbuf_add(b, "\"", 1);

	size_t n = b->len - start;

	L.head.turn = 0;
	if (sys_turn_mono > 0 && !b->failed && n <= sizeof(L.head.txt) &&
	    (session == NULL || slen <= sizeof(L.head.session))) {
		memcpy(L.head.txt, b->buf + start, n);
		L.head.len = n;
		if (session != NULL) {
			memcpy(L.head.session, session, slen);
		}
		L.head.session_len = slen;
		L.head.pid = pid;
		L.head.dir = dir;
		L.head.kind = kind;
		L.head.turn = sys_turn_mono;
	}
}

void
tlog_message(const char *session, pid_t pid, enum tlog_dir dir, const struct jsonrpc_scanner *scan,
	     const char *line, size_t len, double ms)
{
	tlog_message_answers(session, pid, dir, scan, line, len, ms, NULL);
}

void
tlog_answer(struct sbuf *b, const char *id, size_t id_len, double ms)
{
	ADD_LIT(b, ",{\"id\":");
	sbuf_add(b, id, id_len);
	ADD_LIT(b, ",\"ms\":");
	sbuf_add_milli(b, ms);
	sbuf_add(b, "}", 1);
}

/* The record of a message; ended_run: the client's, dropped (tlog_message_ended_run()). */
static void
message_record(const char *session, pid_t pid, enum tlog_dir dir,
	       const struct jsonrpc_scanner *scan, const char *line, size_t len, double ms,
	       const struct sbuf *answers, bool ended_run)
{
	enum jsonrpc_kind kind = scan != NULL ? scan->kind : JSONRPC_INVALID_JSON;
	struct sbuf *b = &L.buf;

	if (!tlog_enabled) {
		return;
	}
	message_head(session, pid, dir, kind);
	if (kind != JSONRPC_BATCH && kind != JSONRPC_INVALID_JSON && scan->one.has_id) {
		ADD_LIT(b, ",\"id\":");
		sbuf_add(b, jsonrpc_str(scan, scan->one.id), scan->one.id.len);
	}
	if (kind != JSONRPC_BATCH && kind != JSONRPC_INVALID_JSON && scan->one.has_method) {
		ADD_LIT(b, ",\"method\":");
		add_json_string_kept(b, &L.method, jsonrpc_str(scan, scan->one.method),
				     scan->one.method.len);
	}
	if (ms >= 0) {
		ADD_LIT(b, ",\"ms\":");
		sbuf_add_milli(b, ms);
	}
	if (answers != NULL && answers->failed) {
		ADD_LIT(b, ",\"answers\":null"); /* not kept (memory): said, not left out */
	} else if (answers != NULL && answers->len > 1) {
		/* tlog_answer() starts each with a comma: the first one's opens the array. */
		ADD_LIT(b, ",\"answers\":[");
		sbuf_add(b, answers->buf + 1, answers->len - 1);
		sbuf_add(b, "]", 1);
	}
	if (ended_run) {
		ADD_LIT(b, ",\"ended_run\":true");
	}
	ADD_LIT(b, ",\"bytes\":");
	sbuf_add_uint(b, len, 1);
	if (!record_body(line, len, kind != JSONRPC_INVALID_JSON)) {
		record_end();
	}
}

void
tlog_message_answers(const char *session, pid_t pid, enum tlog_dir dir,
		     const struct jsonrpc_scanner *scan, const char *line, size_t len, double ms,
		     const struct sbuf *answers)
{
	message_record(session, pid, dir, scan, line, len, ms, answers, false);
}

void
tlog_message_ended_run(const char *session, pid_t pid, const struct jsonrpc_scanner *scan,
		       const char *line, size_t len)
{
	message_record(session, pid, TLOG_IN, scan, line, len, -1, NULL, true);
}

void
tlog_oversize(const char *session, pid_t pid, enum tlog_dir dir, size_t bytes)
{
	if (!tlog_enabled) {
		return;
	}
	record_head(session, pid);
	sbuf_addf(&L.buf, ",\"dir\":\"%s\",\"kind\":\"invalid\",\"bytes\":%zu,\"oversize\":true",
		  dir == TLOG_IN ? "in" : "out", bytes);
	record_end();
}

void
tlog_event(const char *session, pid_t pid, const char *event, const char *fields, size_t fields_len)
{
	if (!tlog_enabled) {
		return;
	}
	record_head(session, pid);
	sbuf_addf(&L.buf, ",\"event\":\"%s\"", event);
	if (fields != NULL && fields_len > 0) {
		sbuf_adds(&L.buf, ",");
		sbuf_add(&L.buf, fields, fields_len);
	}
	record_end();
}

void
tlog_stderr(const char *session, pid_t pid, const char *text, size_t len)
{
	if (!tlog_enabled) {
		return;
	}
	record_head(session, pid);
	sbuf_adds(&L.buf, ",\"event\":\"stderr\",\"text\":");
	sbuf_add_json_string(&L.buf, text, len);
	record_end();
}
