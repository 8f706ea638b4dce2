/*
 * keeper: a process that outlives mcpmux by a moment, to end what mcpmux leaves.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/cgroup.h"
#include "mcpmux/container.h"
#include "mcpmux/diag.h"
#include "mcpmux/keeper.h"
#include "mcpmux/proctree.h"
#include "mcpmux/sys.h"

#define PROC_ROOT     "/proc"
#define KEEPER_POLL_S 0.02 /* how often the keeper looks whether what it ended is gone */
#define KEEPER_KILL_S 1.0  /* after SIGKILL, how long it looks */

static int keeper_fd = -1; /* mcpmux's end of the pipe */
static int ack_fd = -1;	   /* EOF on it when the keeper has exited */
static pid_t keeper_pid;   /* its pid, as the middle child told it; 0 unknown */

#define KEEPER_EXIT_WAIT_MS 1000 /* at a normal exit, how long to wait for the keeper */

/* ---- in mcpmux ---- */

static void
tell(const char *line)
{
	size_t len = strlen(line);

	if (keeper_fd < 0) {
		return;
	}
	/* A line is far below PIPE_BUF: written whole or not at all. */
	ssize_t n = write(keeper_fd, line, len);

	if (n != (ssize_t)len) {
		diag_warn_errno(
			"cannot tell the keeper (what a killed mcpmux leaves may survive it)");
	}
}

void
keeper_cgroup(const char *dir)
{
	char line[CGROUP_PATH_MAX + 8];

	if ((size_t)snprintf(line, sizeof(line), "G\t%s\n", dir) < sizeof(line)) {
		tell(line);
	}
}

void
keeper_container(char *const *prefix, size_t n, const char *cidfile)
{
	char line[2048];
	size_t len = 0;
	int k = snprintf(line, sizeof(line), "C\t%s\t", cidfile);

	if (k < 0 || (size_t)k >= sizeof(line)) {
		return;
	}
	len = (size_t)k;
	for (size_t i = 0; i < n; i++) {
		/* Words are separated by US (0x1f); a word that holds one (or a line end) cannot
		 * go. */
		if (strpbrk(prefix[i], "\t\n\x1f") != NULL) {
			return;
		}
		k = snprintf(line + len, sizeof(line) - len, "%s%s", i > 0 ? "\x1f" : "",
			     prefix[i]);
		if (k < 0 || (size_t)k >= sizeof(line) - len) {
			return;
		}
		len += (size_t)k;
	}
	if (len + 2 <= sizeof(line)) {
		line[len++] = '\n';
		line[len] = '\0';
		tell(line);
	}
}

void
keeper_container_gone(const char *cidfile)
{
	char line[1024];

	if ((size_t)snprintf(line, sizeof(line), "D\t%s\n", cidfile) < sizeof(line)) {
		tell(line);
	}
}

pid_t
keeper_pid_live(void)
{
	struct pollfd p = { .fd = ack_fd, .events = POLLIN };

	/* EOF (or an error) on the pipe: the keeper has exited, and its pid may be reused. */
	if (ack_fd < 0 || keeper_pid <= 0 || poll(&p, 1, 0) != 0) {
		return 0;
	}
	return keeper_pid;
}

void
keeper_done(void)
{
	if (keeper_fd >= 0) {
		tell("X\n");
		sys_close(&keeper_fd);
	}
	if (ack_fd >= 0) {
		/* Gone with us: nothing of this instance is left when mcpmux has exited. */
		struct pollfd p = { .fd = ack_fd, .events = POLLIN };

		while (poll(&p, 1, KEEPER_EXIT_WAIT_MS) == -1 && errno == EINTR) {
		}
		sys_close(&ack_fd);
	}
}

/* ---- in the keeper ---- */

struct ctr {
	char cidfile[512];
	char prefix[1024]; /* words separated by 0x1f */
	bool live;
};

static double
now_s(void)
{
	return sys_mono();
}

static void
nap(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s,
			       .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
	}
}

/* Signal every live entry of t; count the ones that could not be. */
static size_t
signal_all(const struct proctree *t, int sig)
{
	size_t failed = 0;

	for (size_t i = 0; i < t->n; i++) {
		if (t->v[i].state == 'Z' || t->v[i].state == 'X') {
			continue;
		}
		if (proctree_signal_one(t, i, PROC_ROOT, sig) == PROCTREE_FAILED) {
			failed++;
		} else if (sig == SIGTERM) {
			(void)proctree_signal_one(t, i, PROC_ROOT, SIGCONT);
		}
	}
	return failed;
}

static size_t
live_count(const struct proctree *t)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n; i++) {
		n += t->v[i].state != 'Z' && t->v[i].state != 'X';
	}
	return n;
}

size_t
keeper_end_owned(const char *proc_root, const char *owner, double term_grace)
{
	struct proctree t;
	size_t first = 0, left = 0;

	proctree_init(&t);
	(void)proc_root;
	if (proctree_scan_owned(&t, PROC_ROOT, owner) == 0 && (first = live_count(&t)) > 0) {
		(void)signal_all(&t, SIGTERM);
		for (double until = now_s() + term_grace; now_s() < until;) {
			nap(KEEPER_POLL_S);
			if (proctree_scan_owned(&t, PROC_ROOT, owner) == 0 && live_count(&t) == 0) {
				break;
			}
		}
		/* What is left, and what forked meanwhile: SIGKILL until none, for a while. */
		for (double until = now_s() + KEEPER_KILL_S;;) {
			if (proctree_scan_owned(&t, PROC_ROOT, owner) == 0 && live_count(&t) == 0) {
				break;
			}
			(void)signal_all(&t, SIGKILL);
			if (now_s() >= until) {
				left = live_count(&t);
				break;
			}
			nap(KEEPER_POLL_S);
		}
	}
	if (first > 0) {
		diag_warn("keeper: mcpmux %s is gone: ended %zu process(es) it had started%s",
			  owner, first - SYS_MIN(first, left),
			  left > 0 ? "; some would not die" : "");
	}
	proctree_release(&t);
	return left;
}

/* Run an engine command and wait for it, at most `seconds`: its exit code, or -1. */
static int
run_engine(char *const argv[], double seconds)
{
	pid_t pid = fork();
	int st;

	if (pid == -1) {
		return -1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (null >= 0) {
			(void)dup2(null, STDIN_FILENO);
			(void)dup2(null, STDOUT_FILENO);
			(void)dup2(null, STDERR_FILENO);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	for (double until = now_s() + seconds;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		if (r == -1 && errno != EINTR) {
			return -1;
		}
		if (now_s() >= until) {
			(void)kill(pid, SIGKILL);
			(void)waitpid(pid, &st, 0);
			return -1;
		}
		nap(KEEPER_POLL_S);
	}
}

static void
end_container(const struct ctr *c, double term_grace)
{
	char cid[CONTAINER_ID_MAX + 1], words[sizeof(c->prefix)];
	char *prefix[32];
	size_t n = 0;
	int fd = open(c->cidfile, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd >= 0 ? read(fd, cid, sizeof(cid) - 1) : -1;

	if (fd >= 0) {
		(void)close(fd);
	}
	if (got <= 0) {
		return; /* never created */
	}
	cid[got] = '\0';
	cid[strcspn(cid, "\r\n")] = '\0';
	memcpy(words, c->prefix, sizeof(words));
	for (char *w = words; w != NULL && n < sizeof(prefix) / sizeof(prefix[0]);) {
		char *sep = strchr(w, '\x1f');

		if (sep != NULL) {
			*sep = '\0';
		}
		prefix[n++] = w;
		w = sep != NULL ? sep + 1 : NULL;
	}
	char **term = container_kill_argv(prefix, n, "TERM", cid);
	char **kill9 = container_kill_argv(prefix, n, "KILL", cid);
	char **look = container_inspect_argv(prefix, n, cid);
	char **rm = container_rm_argv(prefix, n, cid);

	/* The ladder, through the engine: TERM, the grace while it is there, KILL, rm -f. */
	if (term != NULL && look != NULL && kill9 != NULL && rm != NULL) {
		(void)run_engine(term, 10);
		for (double until = now_s() + term_grace;
		     now_s() < until && run_engine(look, 10) == 0;) {
			nap(0.1);
		}
		if (run_engine(look, 10) == 0) {
			(void)run_engine(kill9, 10);
			(void)run_engine(rm, 10);
		}
	}
	free(term);
	free(kill9);
	free(look);
	free(rm);
	(void)unlink(c->cidfile);
	diag_warn("keeper: removed container %.12s (%s)", cid, prefix[0]);
}

static _Noreturn void
keeper_main(int fd, const char *owner, double term_grace)
{
	struct ctr *ctrs = NULL;
	size_t n_ctr = 0;
	char cg[CGROUP_PATH_MAX] = "";
	char buf[4096];
	size_t len = 0;
	bool done = false;

	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		len += (size_t)n;
		buf[len] = '\0';
		char *line = buf, *nl;

		while ((nl = memchr(line, '\n', len - (size_t)(line - buf))) != NULL) {
			*nl = '\0';
			char *f1 = strchr(line, '\t'),
			     *f2 = f1 != NULL ? strchr(f1 + 1, '\t') : NULL;

			if (line[0] == 'X') {
				done = true; /* mcpmux ends normally: nothing to do */
				break;
			} else if (line[0] == 'G' && f1 != NULL) {
				(void)snprintf(cg, sizeof(cg), "%s", f1 + 1);
			} else if (line[0] == 'C' && f2 != NULL) {
				struct ctr *nc = realloc(ctrs, (n_ctr + 1) * sizeof(*nc));

				*f2 = '\0';
				if (nc != NULL) {
					ctrs = nc;
					(void)snprintf(ctrs[n_ctr].cidfile,
						       sizeof(ctrs[n_ctr].cidfile), "%s", f1 + 1);
					(void)snprintf(ctrs[n_ctr].prefix,
						       sizeof(ctrs[n_ctr].prefix), "%s", f2 + 1);
					ctrs[n_ctr++].live = true;
				}
			} else if (line[0] == 'D' && f1 != NULL) {
				for (size_t i = 0; i < n_ctr; i++) {
					if (strcmp(ctrs[i].cidfile, f1 + 1) == 0) {
						ctrs[i] = ctrs[--n_ctr];
						break;
					}
				}
			}
			line = nl + 1;
		}
		if (done) {
			break;
		}
		len -= (size_t)(line - buf);
		memmove(buf, line, len);
		if (len == sizeof(buf) - 1) {
			len = 0; /* a line longer than any mcpmux writes */
		}
	}
	if (!done) {
		/*
		 * Containers first, through their engines: their monitors carry the owner too,
		 * and must live until the engine has stopped them (container.h).
		 */
		for (size_t i = 0; i < n_ctr; i++) {
			end_container(&ctrs[i], term_grace);
		}
		/* SIGTERM to what carries the owner, SIGKILL after the grace... */
		(void)keeper_end_owned(PROC_ROOT, owner, term_grace);
		if (cg[0] != '\0') {
			/* ...then, where there is one, the cgroup: whatever dropped its cookie. */
			(void)cgroup_kill(cg);
			for (double until = now_s() + KEEPER_KILL_S;
			     cgroup_populated(cg) == 1 && now_s() < until;) {
				nap(KEEPER_POLL_S);
			}
		}
	}
	if (cg[0] != '\0') {
		(void)cgroup_remove(cg);
	}
	free(ctrs);
	_exit(0);
}

/* Show "mcpmux-keeper for PID" as the keeper's command line (it is mcpmux's argv area). */
static void
retitle(int argc, char **argv, pid_t owner_pid)
{
	char *start = argv[0], *end = argv[0];

	for (int i = 0; i < argc; i++) {
		if (argv[i] == end) {
			end = argv[i] + strlen(argv[i]) + 1;
		}
	}
	size_t room = (size_t)(end - start);

	if (room > 1) {
		memset(start, 0, room);
		(void)snprintf(start, room, "mcpmux-keeper for %d", (int)owner_pid);
	}
	(void)prctl(PR_SET_NAME, "mcpmux-keeper");
}

int
keeper_start(double term_grace, int argc, char **argv)
{
	int p[2], ack[2];
	pid_t self = getpid(), mid;
	unsigned long long start = 0;
	char owner[64];

	if (proctree_start_time(PROC_ROOT, self, &start) == -1) {
		return -1;
	}
	(void)snprintf(owner, sizeof(owner), "%d:%llu", (int)self, start);
	if (pipe2(p, O_CLOEXEC) == -1) {
		return -1;
	}
	if (pipe2(ack, O_CLOEXEC) == -1) {
		int err = errno;

		(void)close(p[0]);
		(void)close(p[1]);
		errno = err;
		return -1;
	}
	mid = fork();
	if (mid == -1) {
		int err = errno;

		(void)close(p[0]);
		(void)close(p[1]);
		(void)close(ack[0]);
		(void)close(ack[1]);
		errno = err;
		return -1;
	}
	if (mid == 0) {
		/*
		 * The middle child exits at once: the keeper is re-parented away from mcpmux
		 * (mcpmux is not a subreaper yet), so that no walk of mcpmux's tree sees it.
		 */
		pid_t k = fork();

		if (k != 0) {
			/*
			 * Its pid for mcpmux (a pipe's buffer takes it at once): where mcpmux is
			 * pid 1, the keeper comes back to it as an orphan, and must not be taken
			 * for one of a server's.
			 */
			if (k > 0 && write(ack[1], &k, sizeof(k)) != (ssize_t)sizeof(k)) {
				_exit(0); /* the keeper runs: mcpmux just does not know its pid */
			}
			_exit(k == -1);
		}
		(void)setsid();
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		/* Nothing of the client's: it must see EOF when mcpmux goes. */
		if (null >= 0) {
			(void)dup2(null, STDIN_FILENO);
			(void)dup2(null, STDOUT_FILENO);
		}
		/* Its few words on stderr never block it: a description of its own. */
		bool shared;
		int err_fd = sys_stdio_open(STDERR_FILENO, &shared);

		if (err_fd >= 0 && err_fd != STDERR_FILENO) {
			(void)dup2(err_fd, STDERR_FILENO);
		} else if (shared || err_fd < 0) {
			if (shared) {
				sys_stdio_close(err_fd, STDERR_FILENO, shared);
			}
			if (null >= 0) {
				(void)dup2(null, STDERR_FILENO);
			}
		}
		/* fd 3: the pipe from mcpmux; fd 4: the end whose closing tells mcpmux we are gone
		 */
		int keep = fcntl(ack[1], F_DUPFD_CLOEXEC, 10);

		if (p[0] != 3) {
			(void)dup2(p[0], 3);
		}
		if (keep >= 0) {
			(void)dup2(keep, 4);
		}
		(void)close_range(5, ~0U, 0);
		struct sigaction sa = { .sa_handler = SIG_DFL };

		for (int sig = 1; sig < NSIG; sig++) {
			(void)sigaction(sig, &sa, NULL);
		}
		sa.sa_handler = SIG_IGN;
		(void)sigaction(SIGPIPE, &sa, NULL);
		(void)sigaction(SIGHUP, &sa, NULL);
		(void)sigaction(SIGINT, &sa, NULL);
		(void)sigaction(SIGUSR1, &sa, NULL);
		sigset_t none;

		sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		retitle(argc, argv, self);
		keeper_main(3, owner, term_grace);
	}
	(void)close(p[0]);
	(void)close(ack[1]);
	int st;

	while (waitpid(mid, &st, 0) == -1 && errno == EINTR) {
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		(void)close(p[1]);
		(void)close(ack[0]);
		errno = EAGAIN;
		return -1;
	}
	keeper_fd = p[1];
	ack_fd = ack[0];
	/* Written before the middle child exited, which was waited for. */
	(void)sys_set_nonblock(ack_fd, 1);
	if (read(ack_fd, &keeper_pid, sizeof(keeper_pid)) != (ssize_t)sizeof(keeper_pid)) {
		keeper_pid = 0;
	}
	(void)sys_set_nonblock(keeper_fd, 1);
	return 0;
}
