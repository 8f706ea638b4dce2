/*
 * sys: EINTR-safe system call wrappers.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/sys.h"

int
sys_set_nonblock(int fd, int on)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags == -1) {
		return -1;
	}
	flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, flags);
}

/* Stdio sockets shared with other processes: MSG_DONTWAIT instead of O_NONBLOCK. */
static bool stdio_dontwait[3];
static int stdio_saved_flags[3] = { -1, -1, -1 };

static bool
is_dontwait(int fd)
{
	return fd >= 0 && fd <= 2 && stdio_dontwait[fd];
}

ssize_t
sys_read(int fd, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = is_dontwait(fd) ? recv(fd, buf, len, MSG_DONTWAIT) : read(fd, buf, len);
	} while (n == -1 && errno == EINTR);
	return n;
}

ssize_t
sys_writev(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	if (is_dontwait(fd)) {
		struct msghdr mh = { .msg_iov = (struct iovec *)(uintptr_t)iov,
				     .msg_iovlen = (size_t)iovcnt };

		do {
			n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		} while (n == -1 && errno == EINTR);
		return n;
	}
	do {
		/* One piece: write(), which skips importing an iovec array (about 45 ns). */
		n = iovcnt == 1 ? write(fd, iov[0].iov_base, iov[0].iov_len)
				: writev(fd, iov, iovcnt);
	} while (n == -1 && errno == EINTR);
	return n;
}

int
sys_write_all(int fd, const void *buf, size_t len)
{
	struct iovec v = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };

	return sys_writev_all(fd, &v, 1);
}

int
sys_writev_all(int fd, struct iovec *iov, int n)
{
	for (;;) {
		while (n > 0 && iov->iov_len == 0) {
			iov++;
			n--;
		}
		if (n == 0) {
			return 0;
		}
		ssize_t w = writev(fd, iov, n);

		if (w == -1) {
			if (errno == EINTR) {
				continue;
			}
			return -1;
		}
		if (w == 0) {
			errno = ENOSPC;
			return -1;
		}
		for (size_t left = (size_t)w; left > 0;) {
			size_t k = SYS_MIN(left, iov->iov_len);

			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= k;
			left -= k;
			if (iov->iov_len == 0) {
				iov++;
				n--;
			}
		}
	}
}

int
sys_write_fd(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n == -1 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			if (poll(&p, 1, -1) == -1 && errno != EINTR) {
				return -1;
			}
			continue;
		}
		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			if (n == 0) {
				errno = ENOSPC;
			}
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* fopencookie()'s writer: all of buf, or 0 on an error (errno set; never negative). */
static ssize_t
stdout_write(void *cookie, const char *buf, size_t len)
{
	(void)cookie;
	return sys_write_fd(STDOUT_FILENO, buf, len) == 0 ? (ssize_t)len : 0;
}

int
sys_stdout_waits(void)
{
	static const cookie_io_functions_t io = { .write = stdout_write };
	FILE *f;

	if (fflush(stdout) == EOF || (f = fopencookie(NULL, "w", io)) == NULL) {
		return -1;
	}
	if (isatty(STDOUT_FILENO)) {
		(void)setvbuf(f, NULL, _IOLBF, 0);
	}
	stdout = f; /* glibc's stdout is a variable that may be set */
	return 0;
}

ssize_t
sys_read_small_fd(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	if (fd == -1) {
		return -1;
	}
	while (got + 1 < cap) {
		ssize_t n = sys_read(fd, buf + got, cap - 1 - got);

		if (n == -1) {
			sys_close(&fd);
			return -1;
		}
		if (n == 0) {
			break;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	sys_close(&fd);
	return (ssize_t)got;
}

ssize_t
sys_read_small(const char *path, char *buf, size_t cap)
{
	return sys_read_small_fd(open(path, O_RDONLY | O_CLOEXEC), buf, cap);
}

void
sys_close(int *fd)
{
	if (*fd >= 0) {
		int err = errno; /* the error a caller is about to report survives the close */

		(void)close(*fd);
		*fd = -1;
		errno = err;
	}
}

bool
sys_fd_is_file(int fd, const struct stat *st)
{
	struct stat fd_st;

	return fstat(fd, &fd_st) == 0 && fd_st.st_dev == st->st_dev && fd_st.st_ino == st->st_ino;
}

static bool stdio_closed[3]; /* at the start, before sys_sanitize_stdio() */

int
sys_sanitize_stdio(void)
{
	struct stat st;

	for (int fd = 0; fd <= 2; fd++) {
		if (fstat(fd, &st) == 0 || errno != EBADF) {
			continue;
		}
		stdio_closed[fd] = true;
		int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);

		if (nfd == -1) {
			return -1;
		}
		if (nfd != fd) {
			/* Cannot happen: open() returns the lowest free fd. */
			(void)close(nfd);
			errno = EBADF;
			return -1;
		}
	}
	return 0;
}

bool
sys_stdio_closed_at_start(int fd)
{
	return fd >= 0 && fd <= 2 && stdio_closed[fd];
}

int
sys_stdio_open(int fd, bool *shared)
{
	struct stat st;

	*shared = false;
	if (fd < 0 || fd > 2 || fstat(fd, &st) == -1) {
		if (fd < 0 || fd > 2) {
			errno = EBADF;
		}
		return -1;
	}
	if (S_ISSOCK(st.st_mode)) {
		stdio_dontwait[fd] = true;
		return fd;
	}
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		return fd; /* never blocks; and epoll takes it as always ready */
	}
	if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
		char path[32];

		(void)snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		int nfd = open(path, (fd == STDIN_FILENO ? O_RDONLY : O_WRONLY) | O_NONBLOCK |
					     O_CLOEXEC | O_NOCTTY);

		if (nfd >= 0) {
			return nfd;
		}
		/*
		 * No /proc, or a pipe of another user, or (for output) a pipe whose reader is
		 * gone (ENXIO): the shared description it must be.
		 */
	}
	int flags = fcntl(fd, F_GETFL);

	if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		return -1;
	}
	stdio_saved_flags[fd] = flags;
	*shared = true;
	return fd;
}

void
sys_stdio_close(int fd, int stdio_fd, bool shared)
{
	if (fd < 0) {
		return;
	}
	if (fd != stdio_fd) {
		(void)close(fd);
		return;
	}
	if (shared && stdio_fd >= 0 && stdio_fd <= 2 && stdio_saved_flags[stdio_fd] != -1) {
		(void)fcntl(stdio_fd, F_SETFL, stdio_saved_flags[stdio_fd]);
		stdio_saved_flags[stdio_fd] = -1;
	}
	if (stdio_fd >= 0 && stdio_fd <= 2) {
		stdio_dontwait[stdio_fd] = false;
	}
}

bool
sys_stdio_any_shared(void)
{
	for (int i = 0; i < 3; i++) {
		if (stdio_saved_flags[i] != -1) {
			return true;
		}
	}
	return false;
}

#define NOFILE_CAP ((rlim_t)1 << 20) /* far beyond what mcpmux needs */

static struct rlimit nofile_orig;
static bool nofile_raised;

void
sys_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		return;
	}
	rlim_t want =
		rl.rlim_max == RLIM_INFINITY || rl.rlim_max > NOFILE_CAP ? NOFILE_CAP : rl.rlim_max;

	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		struct rlimit nrl = { .rlim_cur = want, .rlim_max = rl.rlim_max };

		if (setrlimit(RLIMIT_NOFILE, &nrl) == 0) {
			nofile_orig = rl;
			nofile_raised = true;
		}
	}
}

bool
sys_nofile_original(struct rlimit *rl)
{
	if (nofile_raised) {
		*rl = nofile_orig;
	}
	return nofile_raised;
}

size_t
sys_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY) {
		return 1024;
	}
	return (size_t)rl.rlim_cur;
}

void
sys_kill_group(pid_t pid)
{
	if (kill(-pid, SIGKILL) == -1) {
		(void)kill(pid, SIGKILL);
	}
}

static void
signals_mask(int how)
{
	sigset_t set;

	(void)sigemptyset(&set);
	(void)sigaddset(&set, SIGTERM);
	(void)sigaddset(&set, SIGINT);
	(void)sigaddset(&set, SIGHUP);
	(void)sigaddset(&set, SIGUSR2);
	(void)sigprocmask(how, &set, NULL);
}

static sigset_t start_ignored;
static sigset_t start_mask;

void
sys_signals_record(void)
{
	struct sigaction sa;

	(void)sigemptyset(&start_ignored);
	for (int sig = 1; sig < NSIG; sig++) {
		/* (the C library's own signals, 32 and 33, are refused: EINVAL) */
		if (sigaction(sig, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
		    sa.sa_handler == SIG_IGN) {
			(void)sigaddset(&start_ignored, sig);
		}
	}
	(void)sigprocmask(SIG_SETMASK, NULL, &start_mask);
}

void
sys_signals_unblock(void)
{
	sigset_t mask;

	/*
	 * Only those mcpmux watches of its own: every other signal the caller blocked stays
	 * blocked, as in a direct run (unblocked, SIGQUIT or SIGALRM would end mcpmux by its
	 * default action, without a teardown).  Those that sys_signals_hold() and
	 * sys_signals_release() govern stay as they were too: one pending since before the
	 * start must not end mcpmux by its default action.
	 */
	(void)sigemptyset(&mask);
	(void)sigaddset(&mask, SIGCHLD);
	(void)sigaddset(&mask, SIGUSR1);
	(void)sigaddset(&mask, SIGTSTP);
	(void)sigprocmask(SIG_UNBLOCK, &mask, NULL);
}

void
sys_signals_at_start(sigset_t *ignored, sigset_t *mask)
{
	*ignored = start_ignored;
	*mask = start_mask;
}

bool
sys_signal_ignored_at_start(int sig)
{
	return sigismember(&start_ignored, sig) == 1;
}

void
sys_signals_hold(void)
{
	signals_mask(SIG_BLOCK);
}

void
sys_signals_release(void)
{
	signals_mask(SIG_UNBLOCK);
}

const char *
sys_spawn_advice(int err)
{
	switch (err) {
	case EMFILE:
		return " (raise the limit with ulimit -n)";
	case ENFILE:
		return " (close some programs, or raise fs.file-max)";
	case EAGAIN:
		return " (the limit of processes is reached: end some, or raise it with ulimit -u "
		       "or the service's TasksMax)";
	default:
		return "";
	}
}

void
sys_accept_spare(int *spare)
{
	if (*spare < 0) {
		*spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
}

/*
 * A failure of one connection, not of the socket: a signal, a connection gone before it
 * was taken, or the network error of a pending TCP connection, which accept(2) reports
 * and which is to be treated as EAGAIN (tried again).
 */
static bool
accept_passing(int err)
{
	switch (err) {
	case EINTR:
	case ECONNABORTED:
	case EPROTO:
	case ENETDOWN:
	case ENOPROTOOPT:
	case EHOSTDOWN:
	case ENONET:
	case EHOSTUNREACH:
	case EOPNOTSUPP:
	case ENETUNREACH:
		return true;
	default:
		return false;
	}
}

int
sys_accept(int lfd, struct sockaddr *sa, socklen_t *sl, int *spare, void (*refuse)(int fd))
{
	/* Bounded: the listener's watcher calls again while the socket stays readable. */
	for (int tries = 0; tries < 64; tries++) {
		int fd = accept4(lfd, sa, sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			return fd;
		}
		if (accept_passing(errno)) {
			continue;
		}
		if (errno == EAGAIN) {
			return SYS_ACCEPT_NONE;
		}
		if ((errno != EMFILE && errno != ENFILE) || *spare < 0) {
			return SYS_ACCEPT_FAILED;
		}
		/* The spare's slot takes the waiting connection, to refuse it. */
		sys_close(spare);
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int err = errno;
		bool refused = fd >= 0;

		if (refused) {
			/* first: the spare takes its slot again */
			if (refuse != NULL) {
				refuse(fd);
			} else {
				sys_close(&fd);
			}
		}
		sys_accept_spare(spare);
		if (refused) {
			return SYS_ACCEPT_REFUSED;
		}
		errno = err;
		if (accept_passing(err)) {
			continue;
		}
		return err == EAGAIN ? SYS_ACCEPT_NONE : SYS_ACCEPT_FAILED;
	}
	return SYS_ACCEPT_NONE;
}

/* mkdir 0700 if missing (when make); then it must be our own private directory. */
static int
private_dir(const char *path, bool make)
{
	struct stat st;

	if (make && mkdir(path, 0700) == -1 && errno != EEXIST) {
		return -1;
	}
	if (lstat(path, &st) == -1) {
		return -1;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 0077) != 0) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

static int
runtime_dir(const char *sub, char *out, size_t len, bool make)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (xdg != NULL && xdg[0] == '/') {
		n = snprintf(out, len, "%s/mcpmux", xdg);
	} else {
		n = snprintf(out, len, "/tmp/mcpmux-%u", (unsigned)getuid());
	}
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (private_dir(out, make) == -1) {
		return -1;
	}
	if (sub != NULL) {
		size_t at = (size_t)n;

		n = snprintf(out + at, len - at, "/%s", sub);
		if (n < 0 || (size_t)n >= len - at) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (private_dir(out, make) == -1) {
			return -1;
		}
	}
	return 0;
}

int
sys_runtime_dir(const char *sub, char *out, size_t len)
{
	return runtime_dir(sub, out, len, true);
}

int
sys_runtime_dir_found(const char *sub, char *out, size_t len)
{
	return runtime_dir(sub, out, len, false);
}

double sys_turn_mono;

double
sys_mono(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool sys_big_alloc;
const char *sys_chunk_lo, *sys_chunk_hi;
void (*sys_chunk_done)(void);
char sys_scratch[SYS_SCRATCH_SIZE];
bool sys_scratch_busy;
