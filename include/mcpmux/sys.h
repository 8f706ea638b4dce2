/*
 * sys: thin, EINTR-safe wrappers around the system calls every module uses.
 *
 * Every function returns what the call it wraps returns (-1 with errno set on failure),
 * with EINTR retried.  EAGAIN is passed up: in an event loop it means "arm the watcher".
 */
#ifndef MCPMUX_SYS_H
#define MCPMUX_SYS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SYS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SYS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Seconds a listener stops accepting after a failure that would repeat at once. */
#define SYS_ACCEPT_PAUSE 0.1

/* What sys_accept() returns when it has no connection to give. */
#define SYS_ACCEPT_NONE	   (-1) /* none is waiting */
#define SYS_ACCEPT_REFUSED (-2) /* out of descriptors: one was refused */
#define SYS_ACCEPT_FAILED  (-3) /* errno set: would fail again at once */

/* clang-format off */
/* The object that embeds member `member`, given a pointer to that member (type-checked). */
#define container_of(ptr, type, member)                                   \
	((void)sizeof((ptr) == &((type *)0)->member),                     \
	 (type *)(void *)((char *)(ptr) - offsetof(type, member)))
/* clang-format on */

int sys_set_nonblock(int fd, int on);
/*
 * sys_read() and sys_writev() on a socket that is registered with sys_stdio_open() use
 * recv()/sendmsg() with MSG_DONTWAIT: non-blocking without touching the O_NONBLOCK flag
 * of a file description that other processes share.
 */
ssize_t sys_read(int fd, void *buf, size_t len);
ssize_t sys_writev(int fd, const struct iovec *iov, int iovcnt);
/* Write all of buf to a blocking fd (short writes continued); -1 on error. */
int sys_write_all(int fd, const void *buf, size_t len);
/* The same for n pieces; iov is consumed (its entries are advanced past what was written). */
int sys_writev_all(int fd, struct iovec *iov, int n);
/*
 * Write all of buf to fd, waiting (poll) while it is non-blocking and full, as a blocking
 * write would: the output of a command, whose stdout may be a pipe that its reader shares
 * with a process that set O_NONBLOCK on it.  0, or -1 (errno set).
 */
int sys_write_fd(int fd, const char *buf, size_t len);
/*
 * stdout becomes a stream whose bytes are written with sys_write_fd(): stdio would fail
 * at a full non-blocking stdout and drop what it had not written (line-buffered on a
 * terminal, as stdio's own).  What was printed before is flushed first.  0, or -1 (stdout
 * stays as it was).
 */
int sys_stdout_waits(void);
/*
 * Read a small file whole (a /proc or cgroup file): up to cap - 1 bytes into buf,
 * NUL-terminated.  Bytes read, or -1 (errno).  sys_read_small_fd() reads an fd the caller
 * opened, and closes it either way.
 */
ssize_t sys_read_small(const char *path, char *buf, size_t cap);
ssize_t sys_read_small_fd(int fd, char *buf, size_t cap);
/*
 * close(2) that leaves EINTR alone (on Linux the fd is gone either way), sets *fd to -1,
 * and keeps errno: a failure path may close before it reports.
 */
void sys_close(int *fd);
/*
 * Is fd open on the file that st describes (the same device and inode)?  False when fstat()
 * of fd fails (a closed fd is no file).
 */
bool sys_fd_is_file(int fd, const struct stat *st);
/*
 * Make fds 0, 1 and 2 valid (open /dev/null where one is closed): mcpmux's own files must
 * not take those numbers.  sys_stdio_closed_at_start() says which were closed, for a
 * server that inherits mcpmux's stderr: it gets it closed, as a direct run would.
 */
int sys_sanitize_stdio(void);
bool sys_stdio_closed_at_start(int fd);

/*
 * A non-blocking descriptor for stdio fd `fd` (0, 1 or 2) that changes nothing another
 * process sees.  O_NONBLOCK is a flag of the open file description, which the client,
 * the server (its stderr is mcpmux's) and a terminal share: setting it on fd 1 when
 * 2>&1 makes the server's stderr non-blocking too.  So:
 *
 *   - a pipe, FIFO or terminal is opened again through /proc/self/fd (a description of
 *     mcpmux's own, O_NONBLOCK and close-on-exec): the returned fd differs from `fd`;
 *   - a socket cannot be opened again: `fd` itself is returned and registered, so that
 *     sys_read()/sys_writev() on it use MSG_DONTWAIT;
 *   - a regular file or block device never blocks: `fd` itself, flags untouched.
 *
 * When none of that works (no /proc, or a pipe of another user), O_NONBLOCK is set on `fd` itself
 * as a last resort and *shared is set: the caller puts the flags back with sys_stdio_close().
 * Returns the fd to use, or -1 with errno set.
 */
int sys_stdio_open(int fd, bool *shared);
/* Undo sys_stdio_open(): close a private fd, or restore the flags of a shared one. */
void sys_stdio_close(int fd, int stdio_fd, bool shared);
/*
 * Whether O_NONBLOCK is now set on a description of fds 0-2 that mcpmux shares (the last
 * resort of sys_stdio_open()).  A server that inherited mcpmux's stderr would then write
 * to a non-blocking stderr, which a direct run never gives it: its stderr is relayed
 * through a pipe instead.
 */
bool sys_stdio_any_shared(void);

/*
 * Raise RLIMIT_NOFILE's soft limit to its hard limit (a server of many sessions needs
 * descriptors), remembering the original for children: sys_nofile_original() is what a
 * server must get back before exec, so that it runs with the limits of a direct run.
 */
void sys_raise_nofile(void);
bool sys_nofile_original(struct rlimit *rl);
/* The soft limit now in effect. */
size_t sys_nofile_limit(void);
/*
 * What a user can do when a server cannot be started for the reason err (a limit of
 * descriptors or processes), as " (...)" to end a message with; "" when nothing.
 */
const char *sys_spawn_advice(int err);
/*
 * SIGKILL to the process group that pid leads (a command started in a group of its own,
 * with what it started: an engine's runtime), or to pid alone if it leads none.
 */
void sys_kill_group(pid_t pid);
/*
 * SIGTERM, SIGINT, SIGHUP and SIGUSR2 blocked from the start of a wrap or a serve, the
 * commands that run servers (sys_signals_hold(), in main() once the command is known),
 * until the loop's watchers for them are started (sys_signals_release()): one that comes
 * in between is acted on then, rather than ending mcpmux by its default action.  Held
 * again when the loop is over, before its watchers are stopped: one that comes while
 * mcpmux exits is left pending, and the exit status is mcpmux's own.  The
 * other commands (connect, ctl, ps, ...) keep the default actions.  Servers are given the
 * mask mcpmux was started with (sys_signals_record()).
 */
void sys_signals_hold(void);
void sys_signals_release(void);
/*
 * The signal state mcpmux was started with, taken first thing in main(), before mcpmux
 * ignores SIGPIPE and the rest: which signals the caller left ignored (nohup's SIGHUP, a
 * shell's SIGINT and SIGQUIT for a background job, a client's SIGPIPE) and which blocked.
 * A server gets both back before its exec, as a direct run inherits them; a signal
 * ignored at the start is not one that ends a wrap (sys_signal_ignored_at_start()).
 */
void sys_signals_record(void);
/*
 * mcpmux's own mask: a signal its caller blocked that mcpmux watches (SIGCHLD, by which
 * libev learns of a child's exit; SIGUSR1, SIGTSTP) must still reach its watchers; the
 * others stay blocked.  SIGTERM, SIGINT, SIGHUP and SIGUSR2 are left to
 * sys_signals_hold() and sys_signals_release().
 */
void sys_signals_unblock(void);
void sys_signals_at_start(sigset_t *ignored, sigset_t *mask);
bool sys_signal_ignored_at_start(int sig);

/*
 * The next connection on the listening socket lfd, non-blocking and close-on-exec, its
 * address into sa/sl if sa is not NULL (EINTR, ECONNABORTED and a pending connection's
 * network error, EPROTO and the like, are tried again).  Or SYS_ACCEPT_NONE (also after
 * 64 such tries: the socket's watcher calls again); or SYS_ACCEPT_REFUSED when out of descriptors
 * (EMFILE, ENFILE): the waiting connection was taken with the spare descriptor *spare (opened on
 * /dev/null again after) and handed to refuse(), or closed if it is NULL, so that its client is
 * told at once; or SYS_ACCEPT_FAILED (errno set) for a failure that would repeat at once (no
 * descriptor even to refuse with, no memory): the caller stops watching the socket for
 * SYS_ACCEPT_PAUSE seconds, and reopens a missing spare with sys_accept_spare() then.
 */
int sys_accept(int lfd, struct sockaddr *sa, socklen_t *sl, int *spare, void (*refuse)(int fd));
/* *spare opened on /dev/null if it is not open (-1). */
void sys_accept_spare(int *spare);

/*
 * mcpmux's directory for files of this user's running instances (container id files,
 * pool locks): $XDG_RUNTIME_DIR/mcpmux when XDG_RUNTIME_DIR is set, else /tmp/mcpmux-UID;
 * created 0700 if missing, and refused unless it is a directory of this user that no
 * one else can write (not a symlink).  `sub`, if not NULL, is a subdirectory made the
 * same way.  0, or -1 with errno (EPERM: not ours or not private).
 */
int sys_runtime_dir(const char *sub, char *out, size_t len);
/* The same, only when it is there already: nothing is made (-1 with ENOENT). */
int sys_runtime_dir_found(const char *sub, char *out, size_t len);

/* Monotonic time in seconds: for every deadline and duration (the wall clock may jump). */
double sys_mono(void);
/*
 * sys_mono() as of this loop turn's wake-up, for the per-message time stamps (a clock read
 * per message costs more than the rest of a small message's bookkeeping): kept by the
 * backend module's check watcher; sys_mono() itself while no loop keeps it.
 */
extern double sys_turn_mono;
static inline double
sys_now(void)
{
	return sys_turn_mono > 0 ? sys_turn_mono : sys_mono();
}
/*
 * Set when a buffer grew past 64 KiB for a big message, and when such a buffer, or a queue
 * that held more than that of small lines, is freed: the event loop hands freed memory back
 * to the system once mcpmux has been idle for a second (malloc_trim).
 */
extern bool sys_big_alloc;
/*
 * The read chunk whose lines are being handed out, [sys_chunk_lo, sys_chunk_hi), NULL
 * otherwise: in sys_scratch, or the rest of one that a conn kept (conn.h).  A line inside
 * it stays valid until sys_chunk_done() is called, just before the chunk's buffer is
 * reused or freed: a consumer may hold it by reference until then instead of copying it
 * (the server's stdin queue does, and copies only what is left when the chunk is done).
 */
extern const char *sys_chunk_lo, *sys_chunk_hi;
extern void (*sys_chunk_done)(void);
/*
 * The one read buffer of the event loop's stream readers (the client's stdin or socket,
 * the server's stdout, HTTP connections).  A reader fills it only from its own watcher
 * callback and hands the chunk out in full before it returns: every consumer copies what
 * it keeps (or holds it until sys_chunk_done()), and no consumer reads a stream in turn.
 * So one buffer serves them all, and one 64 KiB is resident instead of one per reader.
 * sys_scratch_busy is set while a chunk is handed out: a reader that finds it set (no
 * path does today) leaves its read to the next loop turn rather than overwrite the chunk.
 */
#define SYS_SCRATCH_SIZE ((size_t)64 << 10)
extern char sys_scratch[SYS_SCRATCH_SIZE];
extern bool sys_scratch_busy;
/*
 * Is line (len bytes) in the chunk being handed out, its newline right behind it?  Then
 * line and newline can be written as one piece.  (A line of the chunk is handed out only
 * with its newline there; a line from anywhere else is not in sys_scratch.)
 */
static inline bool
sys_line_in_chunk(const char *line, size_t len)
{
	uintptr_t at = (uintptr_t)line, lo = (uintptr_t)sys_scratch;

	return sys_scratch_busy && at >= lo && at + len < lo + SYS_SCRATCH_SIZE &&
	       line[len] == '\n';
}

#endif
