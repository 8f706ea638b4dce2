/*
 * tlog: the traffic log.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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
 * A regular file: the most records may hold while its writer is still busy with the
 * records before (and then a record, however big, that came while nothing waited).
 */
#define TLOG_BEHIND_MAX ((size_t)16 << 20)
/* The memory a buffer of records keeps for the next turn; a bigger one is given back. */
#define TLOG_KEEP ((size_t)128 << 10)
/* At exit, how long the records still waiting for a regular file may take (seconds). */
#define TLOG_EXIT_WAIT 10.0

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
	bool failing; /* the last write failed (reported once) */
	/*
	 * Not a regular file (a FIFO, a pipe, a socket, a terminal): it is written without
	 * blocking, what its reader has not taken yet waits in `pending` (up to
	 * TLOG_STREAM_MAX), and records past that are dropped whole and counted.
	 */
	bool stream;
	struct wbuf pending;
	ev_io pending_w;
	unsigned long long dropped; /* records, since it was last said */
	ev_prepare flush_w;
	ev_signal reopen_w;
	time_t ts_sec; /* the second that ts_head holds */
	char ts_head[24];
	struct esc_cache session, method;
	bool reopen; /* SIGUSR1 came: reopen once the writer is idle */
} L = { .fd = -1, .session = { .raw_len = SIZE_MAX }, .method = { .raw_len = SIZE_MAX } };

/*
 * The writer of a log that is a regular file: a thread of its own, so that the loop never
 * waits for the file system (a page cache under writeback, a slow or network disk), and
 * the copy into the page cache runs beside the traffic.  Only where mcpmux may use more
 * than one CPU: on one, the writer could only take turns with the loop, and each turn's
 * wake-up would cost more than the write it saves (the loop writes the file there).  Once
 * a turn the loop hands its records over by swapping buffers, never by copying them; while
 * the writer is busy, records wait in L.buf (up to TLOG_BEHIND_MAX, past that they are
 * dropped whole and counted) and the writer wakes the loop when it is done.  The writer
 * only writes: it never allocates, frees, or calls anything that takes a lock but mu, so
 * a child started by clone() or fork() meanwhile inherits no lock it could need.
 */
static struct {
	bool running;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* to the writer: work or quit; to the loop at exit: done */
	/* under mu: */
	struct sbuf work; /* the records being written (the writer's while busy) */
	int fd;
	bool busy;
	bool quit;
	bool wake;    /* the loop waits for this write: ev_async_send() when it is done */
	int done;     /* writes finished since the loop last looked */
	int failures; /* of them, those that failed; err is the last one's errno */
	int err;
	bool last_ok; /* the last write succeeded */
	ev_async done_w;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .fd = -1 };

static void writer_end(void);

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

static const char *const kind_names[] = {
	[JSONRPC_INVALID_JSON] = "invalid", [JSONRPC_INVALID_REQUEST] = "invalid",
	[JSONRPC_REQUEST] = "request",	    [JSONRPC_NOTIFICATION] = "notification",
	[JSONRPC_RESPONSE] = "response",    [JSONRPC_ERROR] = "error",
	[JSONRPC_BATCH] = "batch",
};

static int
open_file(void)
{
	struct stat st, err_st;
	int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

	L.stream = false;
	if (L.path == NULL) {
		L.fd = STDERR_FILENO;
		return 0;
	}
	/*
	 * A FIFO is opened for reading too, so that the open neither waits for a reader nor
	 * fails without one: records wait (up to the bound) until one comes.
	 */
	if (stat(L.path, &st) == 0 && S_ISFIFO(st.st_mode)) {
		flags = (flags & ~O_WRONLY) | O_RDWR;
	}
	/* 0600 whatever the umask: the log holds everything the agent and server said. */
	int fd = open(L.path, flags, 0600);

	if (fd == -1 || fstat(fd, &st) == -1) {
		if (fd != -1) {
			int err = errno;

			(void)close(fd);
			errno = err;
		}
		return -1;
	}
	if (!S_ISREG(st.st_mode) && fstat(STDERR_FILENO, &err_st) == 0 &&
	    st.st_dev == err_st.st_dev && st.st_ino == err_st.st_ino) {
		/* /dev/stderr and the like: the same as --log -, through errout. */
		(void)close(fd);
		L.fd = STDERR_FILENO;
		return 0;
	}
	L.stream = !S_ISREG(st.st_mode);
	L.fd = fd;
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
		diag_warn("traffic log %s: writing again", L.path);
		L.failing = false;
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
	if (L.fd < 0) {
		L.dropped += count_lines(L.buf.buf, L.buf.len);
		return;
	}
	if (wbuf_len(&L.pending) > 0) {
		if (wbuf_len(&L.pending) + L.buf.len > TLOG_STREAM_MAX ||
		    wbuf_append(&L.pending, L.buf.buf, L.buf.len) == -1) {
			L.dropped += count_lines(L.buf.buf, L.buf.len);
		}
		return; /* its watcher writes it */
	}
	if (wbuf_send(&L.pending, L.fd, L.buf.buf, L.buf.len, NULL, 0) == -1) {
		L.dropped += count_lines(L.buf.buf, L.buf.len);
		stream_failed();
	} else if (wbuf_len(&L.pending) > 0) {
		pending_watch(true);
	} else if (L.dropped > 0 || L.failing) {
		stream_drained();
	}
}

/* The loop's side of a regular file's writer. */

static void
writer_report(int done, int failures, int err, bool last_ok)
{
	if (failures > 0) {
		if (!L.failing) {
			errno = err;
			diag_warn_errno("traffic log %s: cannot write (records are dropped until "
					"it can be written again)",
					L.path);
			L.failing = true;
		}
	} else if (done > 0 && last_ok && L.failing) {
		diag_warn("traffic log %s: writing again", L.path);
		L.failing = false;
	}
}

static void
reopen_file(void)
{
	L.reopen = false;
	close_file();
	if (open_file() == -1) {
		diag_warn_errno("traffic log %s: cannot reopen", L.path);
	} else {
		ev_io_set(&L.pending_w, L.fd, EV_WRITE);
		diag_info("traffic log %s: reopened", L.path);
	}
}

/*
 * Hand the records over to the writer if it is idle (and reopen the file first if that
 * waits); if it is busy, they wait, and the writer wakes the loop when it is done.
 */
static void
file_turn(void)
{
	int done, failures, err;
	bool busy, last_ok;

	(void)pthread_mutex_lock(&W.mu);
	busy = W.busy;
	done = W.done;
	failures = W.failures;
	err = W.err;
	last_ok = W.last_ok;
	W.done = W.failures = 0;
	if (busy && (L.buf.len > 0 || L.reopen)) {
		W.wake = true;
	}
	if (!busy && W.work.cap > TLOG_KEEP) {
		sbuf_release(&W.work); /* the writer's while it is busy only */
	}
	(void)pthread_mutex_unlock(&W.mu);
	writer_report(done, failures, err, last_ok);
	if (busy) {
		return;
	}
	if (L.reopen) {
		reopen_file();
		if (L.stream || L.fd == STDERR_FILENO) {
			/* No longer a regular file: the loop's ways, which never block, from now
			 * on. */
			writer_end();
			tlog_flush();
			return;
		}
	}
	if (L.buf.len == 0) {
		return;
	}
	if (L.fd < 0) { /* it could not be reopened */
		writer_report(1, 1, EBADF, false);
		sbuf_reset_keep(&L.buf, TLOG_KEEP);
		return;
	}
	(void)pthread_mutex_lock(&W.mu);
	struct sbuf spare = W.work;

	W.work = L.buf;
	W.fd = L.fd;
	W.busy = true;
	W.wake = W.work.cap > TLOG_KEEP; /* to give the memory back once it is written */
	(void)pthread_cond_signal(&W.cv);
	(void)pthread_mutex_unlock(&W.mu);
	L.buf = spare; /* empty: given back by the writer */
	sbuf_reset_keep(&L.buf, TLOG_KEEP);
	if (L.dropped > 0) {
		diag_warn("traffic log %s: %llu records dropped (the file did not keep up)", L.path,
			  L.dropped);
		L.dropped = 0;
	}
}

static void *
writer_main(void *arg)
{
	(void)arg;
	(void)pthread_mutex_lock(&W.mu);
	for (;;) {
		while (!W.busy && !W.quit) {
			(void)pthread_cond_wait(&W.cv, &W.mu);
		}
		if (!W.busy) {
			break; /* told to quit, and nothing is left */
		}
		int fd = W.fd;
		const char *p = W.work.buf;
		size_t len = W.work.len;

		(void)pthread_mutex_unlock(&W.mu);
		int rc = sys_write_all(fd, p, len);
		int err = errno;

		(void)pthread_mutex_lock(&W.mu);
		W.work.len = 0;
		W.done++;
		W.last_ok = rc == 0;
		if (rc == -1) {
			W.failures++;
			W.err = err;
		}
		W.busy = false;
		(void)pthread_cond_broadcast(&W.cv);
		if (W.wake && !W.quit) {
			ev_async_send(L.loop, &W.done_w);
		}
		W.wake = false;
	}
	(void)pthread_mutex_unlock(&W.mu);
	return NULL;
}

static void
tlog_on_written(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	file_turn();
}

/* The CPUs mcpmux may run on: a writer on the loop's only CPU would only take turns. */
static int
cpus_allowed(void)
{
	cpu_set_t set;

	return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

/* Start the writer; false if it cannot be (then the loop writes, as it waits). */
static bool
writer_start(void)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc;

	if (pthread_condattr_init(&ca) != 0) {
		return false;
	}
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* writer_stop()'s deadline */
	if (rc == 0) {
		rc = pthread_cond_init(&W.cv, &ca);
	}
	(void)pthread_condattr_destroy(&ca);
	if (rc != 0) {
		return false;
	}
	/* Signals are the loop's: the writer is born with all of them blocked. */
	(void)sigfillset(&all);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&W.th, NULL, writer_main, NULL);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		diag_info("traffic log %s: no writer thread (%s): the loop writes the file", L.path,
			  strerror(rc));
		return false;
	}
	ev_async_init(&W.done_w, tlog_on_written);
	ev_async_start(L.loop, &W.done_w);
	ev_unref(L.loop);
	W.running = true;
	return true;
}

/* Stop an idle writer (after it was told to quit, it exits at once) and free its buffer. */
static void
writer_end(void)
{
	(void)pthread_mutex_lock(&W.mu);
	W.quit = true; /* (and no more wake-ups) */
	(void)pthread_cond_signal(&W.cv);
	(void)pthread_mutex_unlock(&W.mu);
	ev_ref(L.loop);
	ev_async_stop(L.loop, &W.done_w);
	W.running = false;
	(void)pthread_join(W.th, NULL);
	sbuf_release(&W.work);
}

/*
 * At exit: the records still waiting are written, within a deadline (a file system that
 * hangs does not keep mcpmux from exiting, as long as the writer's wait can be killed).
 * False if the writer did not finish.
 */
static bool
writer_stop(double deadline_s)
{
	struct timespec until;
	bool stuck = false;
	size_t left = 0;

	(void)clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)deadline_s;
	while (W.running) {
		(void)pthread_mutex_lock(&W.mu);
		while (W.busy && !stuck) {
			stuck = pthread_cond_timedwait(&W.cv, &W.mu, &until) == ETIMEDOUT && W.busy;
		}
		left = stuck ? W.work.len : 0;
		(void)pthread_mutex_unlock(&W.mu);
		if (stuck) {
			break;
		}
		bool last = L.buf.len == 0 && !L.reopen;

		file_turn(); /* the last write's report; then what waits, handed over */
		if (last) {
			break;
		}
	}
	if (!W.running) {
		return true; /* ended by a reopen that found no regular file */
	}
	if (!stuck) {
		writer_end();
		return true;
	}
	(void)pthread_mutex_lock(&W.mu);
	W.quit = true;
	(void)pthread_mutex_unlock(&W.mu);
	ev_ref(L.loop);
	ev_async_stop(L.loop, &W.done_w);
	W.running = false;
	diag_warn("traffic log %s: %zu bytes of records not written at exit (the file did not "
		  "take them within %.0f s)",
		  L.path, left + L.buf.len, deadline_s);
	(void)pthread_detach(W.th);
	return false;
}

void
tlog_flush(void)
{
	if (L.buf.len == 0) {
		return;
	}
	if (W.running) {
		file_turn();
		return;
	}
	if (L.path == NULL || L.fd == STDERR_FILENO) {
		/* On stderr: never blocking the loop, dropped and counted when stderr is full. */
		errout_lines(L.buf.buf, L.buf.len);
	} else if (L.stream) {
		stream_write();
	} else if (L.fd < 0 || sys_write_all(L.fd, L.buf.buf, L.buf.len) == -1) {
		if (!L.failing) {
			diag_warn_errno("traffic log %s: cannot write (records are dropped until "
					"it can be written again)",
					L.path ? L.path : "(stderr)");
			L.failing = true;
		}
	} else if (L.failing) {
		diag_warn("traffic log %s: writing again", L.path ? L.path : "(stderr)");
		L.failing = false;
	}
	sbuf_reset_keep(&L.buf, TLOG_KEEP);
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
	if (L.stream) {
		return; /* not a file that logrotate renames: nothing to reopen */
	}
	if (W.running) {
		L.reopen = true; /* once the writer is done with the old file */
		file_turn();
		return;
	}
	reopen_file();
}

int
tlog_open(struct ev_loop *loop, const char *path, size_t bodies)
{
	L.loop = loop;
	L.path = strcmp(path, "-") == 0 ? NULL : path;
	L.bodies = bodies;
	wbuf_init(&L.pending, TLOG_STREAM_MAX);
	if (open_file() == -1) {
		return diag_error_errno("cannot open the traffic log '%s' (check the directory "
					"exists and is writable, or use --log -)",
					path);
	}
	ev_io_init(&L.pending_w, tlog_on_pending, L.fd, EV_WRITE);
	if (L.path != NULL && !L.stream && L.fd != STDERR_FILENO && cpus_allowed() > 1) {
		(void)writer_start();
	}
	ev_prepare_init(&L.flush_w, tlog_on_prepare);
	ev_set_priority(&L.flush_w, EV_MINPRI); /* after every other prepare that logs */
	ev_prepare_start(loop, &L.flush_w);
	ev_unref(loop);
	if (L.path != NULL) {
		ev_signal_init(&L.reopen_w, tlog_on_usr1, SIGUSR1);
		ev_signal_start(loop, &L.reopen_w);
		ev_unref(loop);
	}
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
	if (W.running && !writer_stop(TLOG_EXIT_WAIT)) {
		L.fd = -1; /* the writer may still be in a write to it: left to the exit */
	}
	ev_ref(L.loop);
	ev_prepare_stop(L.loop, &L.flush_w);
	if (L.path != NULL) {
		ev_ref(L.loop);
		ev_signal_stop(L.loop, &L.reopen_w);
	}
	if (L.stream && wbuf_len(&L.pending) > 0 && wbuf_flush(&L.pending, L.fd) == 0 &&
	    wbuf_len(&L.pending) > 0) {
		/* At exit nothing waits for a reader that does not read. */
		diag_warn("traffic log %s: %zu bytes of records not written at exit (its reader "
			  "did not keep up)",
			  L.path, wbuf_len(&L.pending));
	}
	close_file();
	sbuf_release(&L.buf);
	tlog_enabled = false;
}

/*
 * {"ts":"...","session":"...","pid":N,  -- or false, and the record is dropped (counted):
 * the writer is busy and TLOG_BEHIND_MAX bytes of records wait already.
 */
static bool
record_head(const char *session, pid_t pid)
{
	struct timespec ts;
	struct sbuf *b = &L.buf;

	if (W.running && b->len >= TLOG_BEHIND_MAX) {
		bool busy;

		(void)pthread_mutex_lock(&W.mu);
		busy = W.busy;
		(void)pthread_mutex_unlock(&W.mu);
		if (busy) {
			L.dropped++;
			return false;
		}
	}
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != L.ts_sec || L.ts_head[0] == '\0') {
		struct tm tm;

		(void)gmtime_r(&ts.tv_sec, &tm);
		(void)strftime(L.ts_head, sizeof(L.ts_head), "%Y-%m-%dT%H:%M:%S", &tm);
		L.ts_sec = ts.tv_sec;
	}
	ADD_LIT(b, "{\"ts\":\"");
	sbuf_add(b, L.ts_head, 19); /* YYYY-MM-DDTHH:MM:SS */
	sbuf_add(b, ".", 1);
	sbuf_add_uint(b, (unsigned long long)ts.tv_nsec / 1000, 6);
	ADD_LIT(b, "Z\",\"session\":");
	if (session != NULL) {
		add_json_string_kept(b, &L.session, session, strlen(session));
	} else {
		ADD_LIT(b, "null");
	}
	if (pid > 0) {
		ADD_LIT(b, ",\"pid\":");
		sbuf_add_uint(b, (unsigned long long)pid, 1);
	} else {
		ADD_LIT(b, ",\"pid\":null");
	}
	return true;
}

static void
record_end(void)
{
	sbuf_adds(&L.buf, "}\n");
	if (L.buf.len >= TLOG_FLUSH_AT) {
		tlog_flush();
	}
}

/* Cut at most n bytes of p at a UTF-8 character boundary. */
static size_t
utf8_cut(const char *p, size_t len, size_t n)
{
	if (n >= len) {
		return len;
	}
	while (n > 0 && ((unsigned char)p[n] & 0xc0) == 0x80) {
		n--;
	}
	return n;
}

static void
record_body(const char *line, size_t len, bool valid)
{
	struct sbuf *b = &L.buf;

	if (L.bodies == 0) {
		return;
	}
	if (len > L.bodies) {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add_json_string(b, line, utf8_cut(line, len, L.bodies));
		sbuf_adds(b, ",\"truncated\":true");
	} else if (valid) {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add(b, line, len);
	} else {
		sbuf_adds(b, ",\"msg\":");
		sbuf_add_json_string(b, line, len);
	}
}

void
tlog_message(const char *session, pid_t pid, enum tlog_dir dir, const struct jsonrpc_scanner *scan,
	     const char *line, size_t len, double ms)
{
	enum jsonrpc_kind kind = scan != NULL ? scan->kind : JSONRPC_INVALID_JSON;
	struct sbuf *b = &L.buf;

	if (!tlog_enabled) {
		return;
	}
	if (!record_head(session, pid)) {
		return;
	}
	if (dir == TLOG_IN) {
		ADD_LIT(b, ",\"dir\":\"in\",\"kind\":\"");
	} else {
		ADD_LIT(b, ",\"dir\":\"out\",\"kind\":\"");
	}
	sbuf_adds(b, kind_names[kind]);
	sbuf_add(b, "\"", 1);
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
	ADD_LIT(b, ",\"bytes\":");
	sbuf_add_uint(b, len, 1);
	record_body(line, len, kind != JSONRPC_INVALID_JSON);
	record_end();
}

void
tlog_oversize(const char *session, pid_t pid, enum tlog_dir dir, size_t bytes)
{
	if (!tlog_enabled) {
		return;
	}
	if (!record_head(session, pid)) {
		return;
	}
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
	if (!record_head(session, pid)) {
		return;
	}
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
	if (!record_head(session, pid)) {
		return;
	}
	sbuf_adds(&L.buf, ",\"event\":\"stderr\",\"text\":");
	sbuf_add_json_string(&L.buf, text, len);
	record_end();
}
