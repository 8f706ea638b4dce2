/*
 * listener: the Unix socket of `mcpmux serve --listen`.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/listener.h"
#include "mcpmux/sys.h"

static int
make_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/*
 * Wait until the deadline for a connect that is under way (EINPROGRESS, EALREADY) to
 * finish.  0, or -1 with errno: its error, or ETIMEDOUT.
 */
static int
connect_finish(int fd, double end)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		double left = end - sys_mono();
		int n = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n == -1) {
			return -1;
		}
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
			return -1;
		}
		if (err != 0) {
			errno = err;
			return -1;
		}
		return 0;
	}
}

/*
 * The connect is non-blocking: a blocking one waits as long as the listener's backlog is
 * full (a serve that is stopped or stuck, with its 512 pending connections), which is
 * forever.  Linux says EAGAIN for a full backlog, and poll() on a socket not yet connected
 * tells nothing (it is writable at once), so the attempts are paced: 1 ms between the
 * first two, doubling up to LISTENER_CONNECT_PACE_MS.
 */
int
listener_connect(const char *path, double timeout_s)
{
	struct sockaddr_un sa;
	double end = sys_mono() + timeout_s;
	int pause_ms = 1;
	int fd;

	if (path[0] == '\0') {
		errno = ENOENT; /* not the abstract socket of a name of NULs */
		return -1;
	}
	if (make_addr(&sa, path) == -1) {
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		return -1;
	}
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EISCONN) {
			return fd; /* EISCONN: an attempt that EINTR cut short went through */
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno == ECONNREFUSED) {
			struct stat st;

			/* Linux refuses a connect to a file that is not a socket alike. */
			sys_close(&fd);
			errno = stat(path, &st) == 0 && !S_ISSOCK(st.st_mode) ? ENOTSOCK
									      : ECONNREFUSED;
			return -1;
		}
		if (errno == EINPROGRESS || errno == EALREADY) {
			/* Under way (not for a Unix socket on Linux, but elsewhere). */
			if (connect_finish(fd, end) == -1) {
				sys_close(&fd);
				return -1;
			}
			return fd;
		}
		if (errno != EAGAIN) {
			sys_close(&fd);
			return -1;
		}
		/* The backlog is full: someone listens, and does not accept (yet). */
		double left = end - sys_mono();

		if (left <= 0) {
			sys_close(&fd);
			errno = ETIMEDOUT;
			return -1;
		}
		(void)poll(NULL, 0, SYS_MIN(pause_ms, (int)(left * 1000) + 1));
		pause_ms = SYS_MIN(pause_ms * 2, LISTENER_CONNECT_PACE_MS);
	}
}

int
listener_connect_said(const char *path)
{
	int fd = listener_connect(path, LISTENER_CONNECT_S);

	if (fd >= 0) {
		return fd;
	}
	if (errno == ETIMEDOUT) {
		return diag_error("cannot connect to '%s': its serve accepts no connection (none "
				  "was taken within %g s: is it stopped or stuck?)",
				  path, LISTENER_CONNECT_S);
	}
	if (errno == ENOTSOCK) {
		return diag_error("cannot connect to '%s': it is not a socket (give the PATH of "
				  "`mcpmux serve --listen PATH`)",
				  path);
	}
	return diag_error_errno("cannot connect to '%s' (is `mcpmux serve --listen %s` running?)",
				path, path);
}

bool
listener_peer_is_us(int fd, long *uid_out)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 || len != sizeof(cred)) {
		if (uid_out != NULL) {
			*uid_out = -1;
		}
		return false;
	}
	if (uid_out != NULL) {
		*uid_out = (long)cred.uid;
	}
	return cred.uid == getuid();
}

/*
 * The lock of a socket path: an abstract socket named for its canonical form (the real
 * path of its directory, and its name), hashed when that is too long for a name.
 * The fd, or -1: EADDRINUSE when another process holds it.
 */
static int
path_lock(const char *path)
{
	char dir[PATH_MAX], canon[PATH_MAX * 2], copy1[PATH_MAX], copy2[PATH_MAX];
	struct sockaddr_un sa;

	(void)snprintf(copy1, sizeof(copy1), "%s", path);
	(void)snprintf(copy2, sizeof(copy2), "%s", path);
	if (realpath(dirname(copy1), dir) == NULL) {
		return -1;
	}
	int n = snprintf(canon, sizeof(canon), "%s/%s", dir, basename(copy2));

	if (n < 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	/* sun_path[0] = '\0': the abstract namespace. */
	static const char prefix[] = "mcpmux-listen:";
	size_t room = sizeof(sa.sun_path) - 1 - (sizeof(prefix) - 1);
	size_t len;

	memcpy(sa.sun_path + 1, prefix, sizeof(prefix) - 1);
	if ((size_t)n <= room) {
		memcpy(sa.sun_path + sizeof(prefix), canon, (size_t)n);
		len = sizeof(prefix) + (size_t)n;
	} else {
		uint64_t h = 1469598103934665603ULL; /* FNV-1a */

		for (int i = 0; i < n; i++) {
			h = (h ^ (unsigned char)canon[i]) * 1099511628211ULL;
		}
		len = sizeof(prefix) + (size_t)snprintf(sa.sun_path + sizeof(prefix), room,
							"#%016llx", (unsigned long long)h);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1) {
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) == -1) {
		sys_close(&fd);
		return -1;
	}
	return fd;
}

static void
listener_on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = container_of(w, struct listener, retry_w);

	(void)revents;
	sys_accept_spare(&l->spare);
	ev_io_start(loop, &l->accept_w);
}

static void
listener_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = container_of(w, struct listener, accept_w);

	(void)revents;
	for (int i = 0; i < 64; i++) {
		int fd = sys_accept(l->fd, NULL, NULL, &l->spare, NULL);

		if (fd == SYS_ACCEPT_NONE) {
			return;
		}
		if (fd == SYS_ACCEPT_REFUSED) {
			diag_warn("refused a connection: out of file descriptors (raise the limit "
				  "with ulimit -n)");
			continue;
		}
		if (fd == SYS_ACCEPT_FAILED) {
			/* The socket stays readable: not watched for a moment, not spun on. */
			diag_warn_errno("cannot accept a connection on '%s' (trying again in "
					"%g s)",
					l->path, SYS_ACCEPT_PAUSE);
			ev_io_stop(loop, &l->accept_w);
			ev_timer_set(&l->retry_w, SYS_ACCEPT_PAUSE, 0.);
			ev_timer_start(loop, &l->retry_w);
			return;
		}
		long uid;

		if (!listener_peer_is_us(fd, &uid)) {
			diag_warn(
				"refused a connection from uid %ld on '%s' (only uid %d may connect)",
				uid, l->path, (int)getuid());
			sys_close(&fd);
			continue;
		}
		l->on_conn(fd, l->ctx);
	}
}

int
listener_open(struct listener *l, struct ev_loop *loop, const char *path,
	      void (*on_conn)(int fd, void *ctx), void *ctx)
{
	struct sockaddr_un sa;
	struct stat st;
	mode_t old;

	memset(l, 0, sizeof(*l));
	l->fd = l->spare = l->lock_fd = -1;
	if (make_addr(&sa, path) == -1) {
		return diag_error("socket path '%s' is too long (at most %zu bytes)", path,
				  sizeof(sa.sun_path) - 1);
	}
	(void)snprintf(l->path, sizeof(l->path), "%s", path);
	l->lock_fd = path_lock(path);
	if (l->lock_fd == -1) {
		if (errno == EADDRINUSE) {
			return diag_error("another mcpmux serve is listening on '%s' (stop it, or "
					  "choose another path)",
					  path);
		}
		return diag_error_errno("cannot listen on '%s' (check that its directory exists)",
					path);
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			sys_close(&l->lock_fd);
			return diag_error("'%s' exists and is not a socket (remove it or choose "
					  "another path)",
					  path);
		}
		/*
		 * One attempt, no wait: a full backlog (ETIMEDOUT at once) is a server that
		 * listens but does not accept, stopped or stuck: alive all the same.
		 */
		int probe = listener_connect(path, 0);

		if (probe >= 0) {
			sys_close(&probe);
			sys_close(&l->lock_fd);
			return diag_error("another server is listening on '%s' (stop it, or "
					  "choose another path)",
					  path);
		}
		if (errno == ETIMEDOUT) {
			sys_close(&l->lock_fd);
			return diag_error("another server is listening on '%s', but accepts no "
					  "connection (it may be stopped or stuck; stop it, or "
					  "choose another path)",
					  path);
		}
		/* Nobody listens: a stale file from a process that died. */
		if (unlink(path) == -1) {
			sys_close(&l->lock_fd);
			return diag_error_errno("cannot remove the stale socket '%s'", path);
		}
	}
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd == -1) {
		sys_close(&l->lock_fd);
		return diag_error_errno("cannot create a socket");
	}
	/*
	 * Bind and listen under a temporary name, then rename into place: the socket file
	 * appears only once connections are accepted, so a client that waits for the file
	 * never gets ECONNREFUSED.
	 */
	struct sockaddr_un tmp;
	char tmp_path[sizeof(tmp.sun_path)];
	int n = snprintf(tmp_path, sizeof(tmp_path), "%s.%d.tmp", path, (int)getpid());
	bool renamed = n > 0 && (size_t)n < sizeof(tmp_path) && make_addr(&tmp, tmp_path) == 0;

	if (!renamed) {
		tmp = sa;
		(void)snprintf(tmp_path, sizeof(tmp_path), "%s", path);
	}
	(void)unlink(tmp_path);
	old = umask(0177);
	int rc = bind(l->fd, (struct sockaddr *)&tmp, sizeof(tmp));

	umask(old);
	if (rc == -1 || chmod(tmp_path, 0600) == -1 || listen(l->fd, 512) == -1 ||
	    (renamed && rename(tmp_path, path) == -1)) {
		diag_error_errno("cannot listen on '%s'", path);
		if (rc == 0) {
			(void)unlink(tmp_path);
		}
		sys_close(&l->fd);
		sys_close(&l->lock_fd);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	l->loop = loop;
	l->on_conn = on_conn;
	l->ctx = ctx;
	ev_io_init(&l->accept_w, listener_on_accept, l->fd, EV_READ);
	ev_timer_init(&l->retry_w, listener_on_retry, 0., 0.);
	ev_io_start(loop, &l->accept_w);
	return 0;
}

int
listener_open_fd(struct listener *l, struct ev_loop *loop, int fd,
		 void (*on_conn)(int fd, void *ctx), void *ctx)
{
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa);
	int acc = 0;
	socklen_t al = sizeof(acc);

	memset(l, 0, sizeof(*l));
	l->fd = l->spare = l->lock_fd = -1;
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) == -1 || sa.sun_family != AF_UNIX ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == -1 || acc == 0) {
		return diag_error("descriptor %d is not a listening Unix socket (check the socket "
				  "unit: ListenStream= with a path)",
				  fd);
	}
	if (sys_set_nonblock(fd, 1) == -1 || fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		return diag_error_errno("cannot set up descriptor %d", fd);
	}
	/* The path, for messages only: dev and ino stay 0, so the file is never removed. */
	size_t n = sl > offsetof(struct sockaddr_un, sun_path)
			   ? SYS_MIN((size_t)sl - offsetof(struct sockaddr_un, sun_path),
				     sizeof(l->path) - 1)
			   : 0;

	memcpy(l->path, sa.sun_path, n);
	l->path[n] = '\0';
	if (l->path[0] == '\0') {
		(void)snprintf(l->path, sizeof(l->path), "(descriptor %d)", fd);
	}
	l->fd = fd;
	l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	l->loop = loop;
	l->on_conn = on_conn;
	l->ctx = ctx;
	ev_io_init(&l->accept_w, listener_on_accept, l->fd, EV_READ);
	ev_timer_init(&l->retry_w, listener_on_retry, 0., 0.);
	ev_io_start(loop, &l->accept_w);
	return 0;
}

void
listener_close(struct listener *l)
{
	if (l->fd < 0) {
		return;
	}
	struct stat st;

	ev_io_stop(l->loop, &l->accept_w);
	ev_timer_stop(l->loop, &l->retry_w);
	sys_close(&l->fd);
	sys_close(&l->spare);
	/* Only our own socket file: another server may have put its own there since. */
	if ((l->dev != 0 || l->ino != 0) && lstat(l->path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino) {
		(void)unlink(l->path);
	}
	sys_close(&l->lock_fd);
}
