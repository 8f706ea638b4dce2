/*
 * keeper: a process that outlives mcpmux by a moment, to end what mcpmux leaves.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utlist.h>

#include "mcpmux/cgroup.h"
#include "mcpmux/container.h"
#include "mcpmux/diag.h"
#include "mcpmux/keeper.h"
#include "mcpmux/pool.h"
#include "mcpmux/proctree.h"
#include "mcpmux/status.h"
#include "mcpmux/sys.h"

#define PROC_ROOT     "/proc"
#define KEEPER_POLL_S 0.02 /* how often the keeper looks whether what it ended is gone */
#define KEEPER_KILL_S 1.0  /* after SIGKILL, how long it looks */

static int keeper_fd = -1; /* mcpmux's end of the pipe */
static int slot_sock = -1; /* mcpmux's end of the socket the pool's slot locks go by */
static int ack_fd = -1;	   /* EOF on it when the keeper has exited */
static pid_t keeper_pid;   /* its pid, as the middle child told it; 0 unknown */

/* What keeper_start() was given, for another keeper (keeper_restart()). */
static double keeper_grace;
static int keeper_argc;
static char **keeper_argv;

/*
 * What the keeper was told that another keeper must be told again: the cgroup line, and
 * each container line not said gone since (with its id file and run, to find it by).
 */
struct told {
	char *line, *cidfile, *run;
};
static char *told_cg;
static bool slot_said;		      /* a taken slot not handed to the keeper: said once */
static int slot_sock_errno;	      /* why there is no slot socket (not made, given up), or 0 */
static double keeper_deadline = 5.0;  /* --kill-deadline (keeper_kill_deadline()) */
static struct keeper_slot *slot_list; /* the slots told (keeper_slot()), for another keeper */
static struct told *told_v;
static size_t told_n, told_cap;

#define KEEPER_EXIT_WAIT_MS 1000 /* at a normal exit, how long to wait for the keeper */
#define KEEPER_TELL_S	    1.0	 /* how long a line to the keeper may wait for room in the pipe */
/* (and all the lines told again to a keeper started in place of one gone, together) */
#define KEEPER_MID_FIRST_S 5.0	/* how long the first keeper's middle process is waited for */
#define KEEPER_MID_S	   0.5	/* and another's, in mcpmux's loop (then it is killed) */
#define KEEPER_ENGINE_S	   10.0 /* how long the keeper waits for one engine command */
#define KEEPER_DRAIN_TURN  (64 * 1024)	 /* an engine command's output read at a time */
#define KEEPER_DRAIN_END   (1024 * 1024) /* and once it has exited */
#define KEEPER_LISTED_MAX  4096		 /* the containers one listing may give the keeper */
#define KEEPER_LIST_ALL_S  10.0 /* all the listings by labels at the keeper's end, together */
/* the containers ended before the processes, all together, besides --term-grace */
#define KEEPER_FIRST_S 10.0

/* ---- in mcpmux ---- */

/*
 * Write a whole line to the keeper: 0, or -1 (errno).  The pipe is non-blocking and a
 * long line may not fit at once; the keeper reads all the time, so the rest is waited
 * for, a little, rather than left half written (which would garble every later line).
 */
static bool keeper_cut; /* a line went half written: nothing more can be told */

static int
tell_n(const char *line, size_t len, double until)
{
	bool started = false;

	if (keeper_fd < 0 || keeper_cut) {
		errno = EPIPE;
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(keeper_fd, line, len);

		if (n > 0) {
			started = true;
			line += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n == -1 && errno != EAGAIN) {
			keeper_cut = started;
			return -1;
		}
		struct pollfd p = { .fd = keeper_fd, .events = POLLOUT };
		double left = until - sys_mono();

		if (left <= 0) {
			/*
			 * Part of the line is in the pipe: whatever came next would be glued to it
			 * and misread.  Nothing more is told; at mcpmux's exit the keeper, without
			 * its "done", ends what mcpmux leaves, as after a kill.
			 */
			keeper_cut = started;
			errno = ETIMEDOUT;
			return -1;
		}
		if (poll(&p, 1, (int)(left * 1000) + 1) == -1 && errno != EINTR) {
			keeper_cut = started;
			return -1;
		}
	}
	return 0;
}

static void
tell(const char *line)
{
	if (keeper_fd >= 0 && tell_n(line, strlen(line), sys_mono() + KEEPER_TELL_S) == -1) {
		diag_warn_errno(
			"cannot tell the keeper (what a killed mcpmux leaves may survive it)");
	}
}

void
keeper_cgroup(const char *dir)
{
	char line[CGROUP_PATH_MAX + 8];

	if ((size_t)snprintf(line, sizeof(line), "G\t%s\n", dir) < sizeof(line)) {
		free(told_cg);
		told_cg = strdup(line); /* NULL: another keeper would not hear of it */
		tell(line);
	}
}

/* Keep a container line for another keeper; its strings are taken (freed on failure). */
static void
told_add(char *line, const char *cidfile, const char *run)
{
	if (told_n == told_cap) {
		size_t cap = told_cap != 0 ? told_cap * 2 : 8;
		struct told *nv = realloc(told_v, cap * sizeof(*nv));

		if (nv == NULL) {
			diag_warn("out of memory: another keeper, if this one is killed, would not "
				  "hear of container id file %s",
				  cidfile[0] != '\0' ? cidfile : "none");
			free(line);
			return;
		}
		told_v = nv;
		told_cap = cap;
	}
	struct told *t = &told_v[told_n];

	t->line = line;
	t->cidfile = strdup(cidfile);
	t->run = run != NULL ? strdup(run) : NULL;
	if (t->cidfile == NULL || (run != NULL && t->run == NULL)) {
		diag_warn("out of memory: another keeper, if this one is killed, would not hear "
			  "of container id file %s",
			  cidfile[0] != '\0' ? cidfile : "none");
		free(t->line);
		free(t->cidfile);
		free(t->run);
		return;
	}
	told_n++;
}

/* The container told with cidfile and run is gone: as the keeper forgets it. */
static void
told_gone(const char *cidfile, const char *run)
{
	for (size_t i = 0; i < told_n; i++) {
		struct told *t = &told_v[i];

		if (strcmp(t->cidfile, cidfile) == 0 &&
		    (run == NULL || (t->run != NULL && strcmp(t->run, run) == 0))) {
			free(t->line);
			free(t->cidfile);
			free(t->run);
			told_v[i] = told_v[--told_n];
			return;
		}
	}
}

char *
keeper_container_line(char *const *prefix, size_t n, const char *cidfile, const char *run, bool own)
{
	size_t len =
		strlen("C\t\t\t\town\n") + strlen(cidfile) + (run != NULL ? strlen(run) : 0) + 1;

	/*
	 * Fields are separated by tabs, words by US (0x1f): a word that holds one cannot go.
	 * No id file (""): the run's container is found by its labels alone.
	 */
	if (n == 0 || (cidfile[0] == '\0' && run == NULL) || strpbrk(cidfile, "\t\n") != NULL ||
	    (run != NULL && (run[0] == '\0' || strpbrk(run, "\t\n\x1f") != NULL))) {
		errno = EINVAL;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (strpbrk(prefix[i], "\t\n\x1f") != NULL) {
			errno = EINVAL;
			return NULL;
		}
		len += strlen(prefix[i]) + 1;
	}
	char *line = malloc(len), *p = line;

	if (line == NULL) {
		return NULL;
	}
	p += sprintf(p, "C\t%s\t", cidfile);
	for (size_t i = 0; i < n; i++) {
		if (i > 0) {
			*p++ = '\x1f';
		}
		size_t w = strlen(prefix[i]);

		memcpy(p, prefix[i], w);
		p += w;
	}
	if (run != NULL || own) {
		p += sprintf(p, "\t%s", run != NULL ? run : "");
	}
	if (own) {
		p += sprintf(p, "\town"); /* mcpmux's own id file: the keeper may remove it */
	}
	*p++ = '\n';
	*p = '\0';
	return line;
}

void
keeper_container(char *const *prefix, size_t n, const char *cidfile, const char *run, bool own)
{
	if (keeper_fd < 0) {
		return; /* no keeper: said when it could not be started */
	}
	char *line = keeper_container_line(prefix, n, cidfile, run, own);

	if (line == NULL || tell_n(line, strlen(line), sys_mono() + KEEPER_TELL_S) == -1) {
		diag_warn_errno("cannot tell the keeper about the container of '%s' (id file %s): "
				"if mcpmux is killed, the container may survive it%s",
				n > 0 ? prefix[0] : "", cidfile[0] != '\0' ? cidfile : "none",
				line == NULL && errno == EINVAL
					? " (a tab, line end or 0x1f in the engine's words or "
					  "the id file's name)"
					: "");
	}
	if (line != NULL) {
		told_add(line, cidfile, run);
	}
}

void
keeper_container_gone(const char *cidfile, const char *run)
{
	size_t len = strlen(cidfile) + 4 + (run != NULL ? strlen(run) + 1 : 0);
	char *line;

	if (keeper_fd < 0 || (cidfile[0] == '\0' && run == NULL) ||
	    strpbrk(cidfile, "\t\n") != NULL ||
	    (run != NULL && (run[0] == '\0' || strpbrk(run, "\t\n\x1f") != NULL))) {
		return; /* never told */
	}
	if ((line = malloc(len)) == NULL) {
		diag_warn_errno("cannot tell the keeper that container %s is gone", cidfile);
		return;
	}
	told_gone(cidfile, run);
	/* The run too: runs of one command line with a user's --cidfile share that file. */
	(void)snprintf(line, len, "D\t%s%s%s\n", cidfile, run != NULL ? "\t" : "",
		       run != NULL ? run : "");
	if (tell_n(line, len - 1, sys_mono() + KEEPER_TELL_S) == -1) {
		diag_warn_errno("cannot tell the keeper that container %s is gone", cidfile);
	}
	free(line);
}

/* A record on the slot socket: a slot told (its descriptor comes with it), or gone. */
struct slot_rec {
	uint64_t kind; /* 'S' or 'R' */
	uint64_t dev, ino;
};

/*
 * A taken slot not handed to the keeper (errno why): said once.  A freed slot's record that
 * did not go is not: the keeper lets that slot go at its next record all the same.
 */
static void
slot_unhanded(void)
{
	if (!slot_said) {
		slot_said = true;
		diag_warn_errno("cannot hand the keeper a pool slot (if mcpmux is killed, its "
				"slots may be free before what it left is ended)");
	}
}

static void
slot_send(int fd, bool gone)
{
	struct stat st;
	struct slot_rec r = { .kind = gone ? 'R' : 'S' };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = &r, .iov_len = sizeof(r) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (slot_sock < 0 && slot_sock_errno != 0 && !gone) {
		errno = slot_sock_errno;
		slot_unhanded();
	}
	if (slot_sock < 0 || fstat(fd, &st) == -1) {
		return;
	}
	r.dev = (uint64_t)st.st_dev;
	r.ino = (uint64_t)st.st_ino;
	if (!gone) {
		memset(&cm, 0, sizeof(cm));
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof(cm.buf);
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);

		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &fd, sizeof(int));
	}
	ssize_t n;

	while ((n = sendmsg(slot_sock, &m, MSG_DONTWAIT | MSG_NOSIGNAL)) == -1 && errno == EINTR) {
	}
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ||
			errno == ETOOMANYREFS)) {
		/*
		 * The keeper is behind (a full socket): this record is not sent, and the
		 * socket stays for the next ones (a record goes whole or not at all: a
		 * SOCK_SEQPACKET).  A slot not handed comes free when mcpmux dies; a freed
		 * one not said is let go when the keeper reads the next record, as its file
		 * is removed before (slots_unlinked()): nothing to say then.
		 */
		if (!gone) {
			slot_unhanded();
		}
		return;
	}
	if (n != (ssize_t)sizeof(r)) {
		/* The keeper is gone (EPIPE), or a failure: nothing more is sent on it. */
		if (n >= 0) {
			errno = EIO;
		}
		if (!gone) {
			slot_unhanded();
		} else {
			slot_sock_errno = errno; /* said when the next slot is to be handed */
		}
		sys_close(&slot_sock);
	}
}

void
keeper_slot(struct keeper_slot *ks, int fd)
{
	/* In a list through the slots themselves: nothing to allocate, so no slot is left out
	 * of what another keeper is told. */
	ks->fd = fd;
	DL_PREPEND(slot_list, ks);
	slot_send(fd, false);
}

/* The slot is no longer mcpmux's to tell another keeper of. */
static void
slot_forget(struct keeper_slot *ks)
{
	if (ks->prev != NULL) { /* (on the list: utlist's head's prev is its tail) */
		DL_DELETE(slot_list, ks);
		ks->prev = ks->next = NULL;
	}
}

void
keeper_slot_gone(struct keeper_slot *ks)
{
	slot_forget(ks);
	slot_send(ks->fd, true);
}

void
keeper_slot_left(struct keeper_slot *ks)
{
	slot_forget(ks); /* the keeper keeps its own */
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

bool
keeper_tried_start(void)
{
	return keeper_argv != NULL;
}

int
keeper_ack_fd(void)
{
	return ack_fd;
}

bool
keeper_gone(void)
{
	struct pollfd p = { .fd = ack_fd, .events = POLLIN };

	return ack_fd < 0 || poll(&p, 1, 0) != 0;
}

static int spawn_keeper(double term_grace, int argc, char **argv, double mid_s);

/*
 * Tell a new keeper again what the one gone was told and is still there, all of it
 * within KEEPER_TELL_S together: a keeper that does not read yet (held on a loaded
 * machine) holds up mcpmux's loop that long at most.  What could not be told is said,
 * unless the new keeper is gone too (the next one is told in its turn).
 */
static void
retell(void)
{
	double until = sys_mono() + KEEPER_TELL_S;
	int cg_err = 0, err = 0;
	size_t untold = 0;
	const char *first = NULL;

	if (told_cg != NULL && tell_n(told_cg, strlen(told_cg), until) == -1) {
		cg_err = errno;
	}
	for (size_t i = 0; i < told_n; i++) {
		if (tell_n(told_v[i].line, strlen(told_v[i].line), until) == -1 && untold++ == 0) {
			first = told_v[i].cidfile[0] != '\0' ? told_v[i].cidfile : "none";
			err = errno;
		}
	}
	for (const struct keeper_slot *ks = slot_list; ks != NULL; ks = ks->next) {
		slot_send(ks->fd, false);
	}
	if ((cg_err == 0 && untold == 0) || keeper_gone()) {
		return;
	}
	if (cg_err != 0) {
		errno = cg_err;
		diag_warn_errno("cannot tell the new keeper about the cgroup (if mcpmux is killed, "
				"what its servers started may survive it)");
	}
	if (untold > 0) {
		errno = err;
		diag_warn_errno(
			"cannot tell the new keeper about %zu container(s), such as id file "
			"%s: if mcpmux is killed, they may survive it",
			untold, first);
	}
}

pid_t
keeper_restart(void)
{
	static pid_t gone; /* the keeper gone, while others could not be started */

	if (keeper_pid > 0) {
		gone = keeper_pid;
	}
	sys_close(&keeper_fd);
	sys_close(&ack_fd);
	sys_close(&slot_sock);
	keeper_pid = 0;
	if (keeper_argv == NULL) {
		errno = EINVAL;
		return -1;
	}
	/* One try: the caller tries again later (its middle child may be killed too). */
	if (spawn_keeper(keeper_grace, keeper_argc, keeper_argv, KEEPER_MID_S) == -1) {
		return -1;
	}
	retell();
	return gone;
}

void
keeper_done(void)
{
	if (keeper_fd >= 0) {
		tell("X\n");
		sys_close(&keeper_fd);
	}
	sys_close(&slot_sock);
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
	char *cidfile;
	char *prefix;			/* words separated by 0x1f */
	char *run;			/* its mcpmux.run label, or NULL */
	char cid[CONTAINER_ID_MAX + 1]; /* the id its id file gave, or "" */
	bool own;			/* the id file is mcpmux's own, not the user's --cidfile */
	bool later; /* its id file had no id yet, or no time was left for it: ended after the
		       run's processes */
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

void
keeper_kill_deadline(double seconds)
{
	keeper_deadline = seconds;
}

/* Wait while a process carries the owner, for seconds at most; nothing is signalled. */
static void
wait_owned(const char *owner, double seconds)
{
	struct proctree t;

	proctree_init(&t);
	for (double until = now_s() + seconds;;) {
		if (proctree_scan_owned(&t, PROC_ROOT, owner) == 0 && live_count(&t) == 0) {
			break;
		}
		if (now_s() >= until) {
			diag_warn("keeper: mcpmux %s exited leaving processes that would not die: "
				  "its pool slots are free, %g s on",
				  owner, seconds);
			break;
		}
		nap(KEEPER_POLL_S);
	}
	proctree_release(&t);
}

char **
keeper_split_words(char *words, size_t *n)
{
	size_t count = 1;

	for (const char *p = words; (p = strchr(p, '\x1f')) != NULL; p++) {
		count++;
	}
	char **v = calloc(count + 1, sizeof(*v));

	if (v == NULL) {
		return NULL;
	}
	*n = 0;
	for (char *w = words; w != NULL;) {
		char *sep = strchr(w, '\x1f');

		if (sep != NULL) {
			*sep = '\0';
		}
		v[(*n)++] = w;
		w = sep != NULL ? sep + 1 : NULL;
	}
	return v;
}

/*
 * The ids of a listing (container_list_run_argv), taken from its output as it comes: each
 * ended by a NUL, n of them, at most KEEPER_LISTED_MAX.
 */
struct listed {
	char *ids;
	size_t len, cap, n;
	bool more; /* more were listed than could be kept */
	bool skip; /* in a line longer than the buffer: up to its end */
};

/* How an engine command ended. */
struct engine_res {
	int st;		 /* wait status; -1 when there is none (see how) */
	const char *how; /* without a status: why ("no answer", "cannot fork") */
	char err[2048];	 /* the start of its stderr (and stdout, when asked for) */
	size_t n_err;
	struct container_tail tail; /* the end of it, and whether it said the container is gone */
	/* keep the marked lines (container_whose_keep, ...), wherever they come; or NULL */
	size_t (*mark)(char *buf, size_t n);
	struct listed *listed; /* or the ids of its marked lines go there as they come */
};

static bool
engine_ok(const struct engine_res *r)
{
	return r->st != -1 && WIFEXITED(r->st) && WEXITSTATUS(r->st) == 0;
}

/* It failed because the container does not exist (any more). */
static bool
engine_gone(const struct engine_res *r)
{
	return r->st != -1 && !engine_ok(r) && r->n_err > 0 && container_gone_output(&r->tail);
}

/*
 * "exit 1: <its last stderr line>", "killed by signal 9", "no answer in time (killed)"...:
 * an engine says its error last, after any warnings.
 */
static void
engine_describe(const struct engine_res *r, char *out, size_t size)
{
	size_t why_n;
	const char *why = container_why(r->tail.buf, r->tail.n, &why_n);
	int k;

	if (r->st == -1) {
		k = snprintf(out, size, "%s", r->how);
	} else if (WIFEXITED(r->st)) {
		k = snprintf(out, size, "exit %d", WEXITSTATUS(r->st));
	} else {
		k = snprintf(out, size, "killed by signal %d",
			     WIFSIGNALED(r->st) ? WTERMSIG(r->st) : 0);
	}
	if (k > 0 && (size_t)k < size && why_n > 0) {
		(void)snprintf(out + k, size - (size_t)k, ": %.*s", (int)why_n, why);
	}
}

static void
listed_add(struct listed *l, const char *id, size_t len)
{
	if (l->n == KEEPER_LISTED_MAX) {
		l->more = true;
		return;
	}
	if (l->len + len + 1 > l->cap) {
		size_t cap = l->cap != 0 ? l->cap * 2 : 1024;
		char *nv = realloc(l->ids, cap);

		if (nv == NULL) {
			l->more = true;
			return;
		}
		l->ids = nv;
		l->cap = cap;
	}
	memcpy(l->ids + l->len, id, len);
	l->ids[l->len + len] = '\0';
	l->len += len + 1;
	l->n++;
}

/*
 * Take the ids of buf[0..n) into l: up to its last line end when full (what follows is
 * kept, at the start of buf, and its length returned), all of it when last.
 */
static size_t
listed_take(char *buf, size_t n, struct listed *l, bool last)
{
	const char *pos = buf, *end = buf + n, *id;
	const char *nl = last ? NULL : memrchr(buf, '\n', n);
	size_t len;

	if (!last && nl == NULL) {
		l->skip = true; /* a line longer than the buffer: no id of ours */
		return 0;
	}
	if (!last) {
		end = nl + 1;
	}
	if (l->skip) {
		const char *first = memchr(buf, '\n', (size_t)(end - buf));

		pos = first != NULL ? first + 1 : end;
		l->skip = first == NULL;
	}
	while ((id = container_listed_next(&pos, end, &len)) != NULL) {
		listed_add(l, id, len);
	}
	memmove(buf, end, (size_t)(buf + n - end));
	return (size_t)(buf + n - end);
}

/*
 * Read what is there of the command's output, keeping its start; or, with r->mark,
 * keeping the marked lines however much comes before them (an engine's warnings); or,
 * with r->listed, taking the ids of its marked lines out whenever the buffer is full.
 * At most budget bytes a call: what holds the pipe and writes faster than the keeper
 * reads must not keep it from its deadlines.  true when it stopped there (more may come
 * at once).
 */
static bool
engine_drain(int fd, struct engine_res *r, size_t budget)
{
	char sink[512];
	size_t got = 0;

	while (got < budget) {
		size_t room = sizeof(r->err) - 1 - r->n_err;

		if (room == 0 && r->mark != NULL) {
			r->n_err = r->mark(r->err, r->n_err);
			room = sizeof(r->err) - 1 - r->n_err;
		} else if (room == 0 && r->listed != NULL) {
			r->n_err = listed_take(r->err, r->n_err, r->listed, false);
			room = sizeof(r->err) - 1 - r->n_err;
		}
		ssize_t n =
			room > 0 ? read(fd, r->err + r->n_err, room) : read(fd, sink, sizeof(sink));

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		got += (size_t)n;
		container_tail_add(&r->tail, room > 0 ? r->err + r->n_err : sink, (size_t)n);
		if (room > 0) {
			r->n_err += (size_t)n;
		}
	}
	r->err[r->n_err] = '\0';
	return got >= budget;
}

/* r as for a command that did not run, for `how`: no status, no output. */
static void
engine_res_reset(struct engine_res *r, const char *how)
{
	r->st = -1;
	r->how = how;
	r->n_err = 0;
	r->err[0] = '\0';
	container_tail_reset(&r->tail);
}

/* Run an engine command and wait for it, at most `seconds`. */
static void
run_engine_out(char *const argv[], double seconds, struct engine_res *r, bool with_stdout)
{
	int errp[2];
	pid_t pid;

	engine_res_reset(r, "cannot fork");
	if (pipe2(errp, O_CLOEXEC | O_NONBLOCK) == -1) {
		r->how = "cannot make a pipe";
		return;
	}
	if ((pid = fork()) == -1) {
		(void)close(errp[0]);
		(void)close(errp[1]);
		return;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		(void)setpgid(0, 0); /* a group of its own: what it starts goes with it */
		if (null >= 0) {
			(void)dup2(null, STDIN_FILENO);
			(void)dup2(null, STDOUT_FILENO);
		}
		if (with_stdout) {
			(void)dup2(errp[1], STDOUT_FILENO);
		}
		(void)dup2(errp[1], STDERR_FILENO);
		(void)fcntl(STDERR_FILENO, F_SETFL, 0);
		execvp(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	(void)close(errp[1]);
	(void)setpgid(pid, pid); /* also in the child: whichever runs first */
	for (double until = now_s() + seconds;;) {
		pid_t w = waitpid(pid, &r->st, WNOHANG);
		bool more =
			engine_drain(errp[0], r, w == pid ? KEEPER_DRAIN_END : KEEPER_DRAIN_TURN);

		if (w == pid) {
			break;
		}
		if (w == -1 && errno != EINTR) {
			r->st = -1;
			r->how = "lost";
			break;
		}
		if (now_s() >= until) {
			/*
			 * The command and what it started: an engine waits for its runtime (podman
			 * for runc), which would outlive it, its orphan, and act late.
			 */
			sys_kill_group(pid);
			(void)waitpid(pid, &r->st, 0);
			r->st = -1;
			r->how = "no answer in time (killed)";
			break;
		}
		if (!more) {
			nap(KEEPER_POLL_S);
		}
	}
	(void)close(errp[0]);
}

/*
 * run_engine_out, bounded to until as well (INFINITY: to KEEPER_ENGINE_S alone): false
 * when there was no time left for it, or it was killed there, its answer unknown.
 */
static bool
run_engine_until(char *const argv[], double until, struct engine_res *r, bool with_stdout)
{
	double left = until - now_s();

	if (left <= 0) {
		engine_res_reset(r, "no time left");
		return false;
	}
	run_engine_out(argv, SYS_MIN(KEEPER_ENGINE_S, left), r, with_stdout);
	return r->st != -1 || now_s() < until;
}

/* The engine's name among the words (after a launcher such as env), for messages. */
static const char *
engine_word(char *const *prefix, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *base = strrchr(prefix[i], '/');

		base = base != NULL ? base + 1 : prefix[i];
		if (strcmp(base, "podman") == 0 || strcmp(base, "docker") == 0) {
			return prefix[i];
		}
	}
	return prefix[0];
}

/*
 * The id in c's id file, into cid: 1; 0 when there is none (no file, or still empty: the
 * engine has not written it); -1 when the file cannot be read (said).
 */
static int
read_cid(const struct ctr *c, char *cid, size_t size)
{
	int fd = c->cidfile[0] != '\0' ? open(c->cidfile, O_RDONLY | O_CLOEXEC) : -1;
	ssize_t got = fd >= 0 ? read(fd, cid, size - 1) : -1;
	int err = c->cidfile[0] != '\0' ? errno : ENOENT; /* no id file: as one not there */

	if (fd >= 0) {
		(void)close(fd);
	}
	if (got <= 0) {
		if (got == -1 && (fd >= 0 || err != ENOENT)) {
			errno = err;
			diag_warn_errno("keeper: cannot read container id file %s", c->cidfile);
			return -1;
		}
		return 0;
	}
	cid[got] = '\0';
	cid[strcspn(cid, "\r\n \t")] = '\0';
	return cid[0] != '\0';
}

/*
 * Whether the engine lists container cid among owner's (container_list_id_argv): asked
 * when its inspect cannot tell, which podman's cannot once a `podman run --rm` killed
 * while it removed the container has taken its storage, and the container, left in the
 * engine's records, would never go.  1 when listed, 0 when not (or no answer), -1 when
 * until came first.
 */
static int
listed_as_owners(char **prefix, size_t n, const char *cid, const char *owner, double until)
{
	char **list = container_list_id_argv(prefix, n, owner, cid);
	struct engine_res r = { .st = -1, .how = "out of memory" };
	const char *pos = r.err, *id;
	size_t len;
	bool late;

	if (list == NULL) {
		return 0;
	}
	r.mark = container_listed_keep;
	late = !run_engine_until(list, until, &r, true);
	free(list);
	if (late) {
		return -1;
	}
	while (engine_ok(&r) && (id = container_listed_next(&pos, r.err + r.n_err, &len)) != NULL) {
		if (len == strlen(cid) && memcmp(id, cid, len) == 0) {
			return 1;
		}
	}
	return 0;
}

/* mcpmux's own id file cidfile goes, and the record of its engine beside it (container.h). */
static void
unlink_own(const char *cidfile)
{
	char path[PATH_MAX];

	(void)unlink(cidfile);
	if (container_record_path(cidfile, path, sizeof(path)) == 0) {
		(void)unlink(path);
	}
}

/*
 * End container cid through its engine (prefix[0..n)), its commands bounded to until as
 * well (INFINITY: each to KEEPER_ENGINE_S alone), and say what happened: removed (or
 * gone by itself), or could not be removed, with the engine's answer.  1 when it is
 * gone, 0 when not; -1, nothing said, when until came first (to be done again).  Its id
 * file, cidfile (NULL for one listed by labels), goes with it when it is mcpmux's own
 * (own): a user's --cidfile is the user's.
 */
static int
end_by_id(const char *cidfile, bool own, char **prefix, size_t n, const char *cid,
	  const char *owner, double term_grace, double until)
{
	char **term = NULL, **kill9 = NULL, **look = NULL, **rm = NULL;
	char **whose = container_whose_argv(prefix, n, cid);
	bool asked = whose != NULL; /* (whose is freed once asked) */
	struct engine_res r = { .st = -1, .how = "out of memory" };
	bool gone = false, late = false;
	const char *done = NULL;

	if (asked) {
		/*
		 * The id file may have been written by another mcpmux's run of the same command
		 * line: only a container of this mcpmux's is ended.
		 */
		struct container_whose w;

		r.mark = container_whose_keep;
		late = !run_engine_until(whose, until, &r, true);
		r.mark = NULL;
		free(whose);
		if (late) {
			return -1;
		}
		if (engine_gone(&r)) {
			if (cidfile != NULL && own) {
				unlink_own(cidfile);
			}
			return 1;
		}
		bool told = engine_ok(&r) && container_whose_parse(r.err, r.n_err, &w);
		int listed = told ? 0 : listed_as_owners(prefix, n, cid, owner, until);

		if (listed == -1) {
			return -1;
		}
		if (listed == 0 && (!told || strcmp(w.owner, owner) != 0)) {
			/* Not known to be its mcpmux's: never ended on a guess. */
			if (told) {
				diag_warn(
					"keeper: container %.12s is another mcpmux's (%s): left alone",
					cid, w.owner);
			} else {
				char why[sizeof(r.err) + 64];

				engine_describe(&r, why, sizeof(why));
				diag_warn("keeper: cannot tell whose container %.12s is (%s): left "
					  "alone%s%s",
					  cid, why, cidfile != NULL ? "; its id is in " : "",
					  cidfile != NULL ? cidfile : "");
			}
			return told ? 1 : 0;
		}
	}
	term = container_kill_argv(prefix, n, "TERM", cid);
	kill9 = container_kill_argv(prefix, n, "KILL", cid);
	look = container_inspect_argv(prefix, n, cid);
	rm = container_rm_argv(prefix, n, cid);
	/* The ladder, through the engine: TERM, the grace while it is there, KILL, rm -f. */
	if (asked && term != NULL && look != NULL && kill9 != NULL && rm != NULL) {
		late = !run_engine_until(term, until, &r, false);
		if (!late && engine_gone(&r)) {
			gone = true;
			done = "it was gone already";
		}
		for (double grace_end = now_s() + term_grace; !gone && !late;) {
			late = !run_engine_until(look, until, &r, false);
			if (late) {
				break;
			} else if (engine_gone(&r)) {
				gone = true;
				done = "it stopped on SIGTERM";
			} else if (!engine_ok(&r) || now_s() >= grace_end) {
				break; /* still there, or the engine cannot tell: KILL and rm -f */
			} else {
				nap(0.1);
			}
		}
		if (!gone && !late) {
			late = !run_engine_until(kill9, until, &r, false) ||
			       !run_engine_until(rm, until, &r, false);
			gone = !late && (engine_ok(&r) || engine_gone(&r));
			done = "rm -f";
		}
	}
	if (gone) {
		if (cidfile != NULL && own) {
			unlink_own(cidfile);
		}
		diag_warn("keeper: removed container %.12s (%s: %s)", cid, engine_word(prefix, n),
			  done);
	} else if (!late) { /* late: nothing to say yet, it is ended again */
		char why[sizeof(r.err) + 64];

		engine_describe(&r, why, sizeof(why));
		diag_warn("keeper: could not remove container %.12s (%s: %s)%s%s", cid,
			  engine_word(prefix, n), why, cidfile != NULL ? "; its id is in " : "",
			  cidfile != NULL ? cidfile : "");
	}
	free(term);
	free(kill9);
	free(look);
	free(rm);
	return late ? -1 : gone ? 1 : 0;
}

/*
 * mcpmux's own id file of c, still empty once the engine has been asked by labels: nothing
 * will write it now (the engine's command is gone), and nobody else reads it.  A user's
 * --cidfile is the user's.
 */
static void
forget_own(const struct ctr *c)
{
	char cid[CONTAINER_ID_MAX + 1];

	char path[PATH_MAX];

	if (!c->own || read_cid(c, cid, sizeof(cid)) != 0) {
		return;
	}
	if (unlink(c->cidfile) == -1 && errno != ENOENT) {
		diag_warn_errno("keeper: cannot remove container id file %s", c->cidfile);
	} else if (container_record_path(c->cidfile, path, sizeof(path)) == 0) {
		(void)unlink(path); /* the record of its engine, beside it */
	}
}

/* c's words to its engine, split: an array to free() with *words; NULL without memory. */
static char **
ctr_words(const struct ctr *c, char **words, size_t *n)
{
	char **prefix;

	*n = 0;
	if ((*words = strdup(c->prefix)) == NULL) {
		return NULL;
	}
	if ((prefix = keeper_split_words(*words, n)) == NULL) {
		free(*words);
		*words = NULL;
	}
	return prefix;
}

/*
 * The containers the engine made for the runs of ctrs[0..n_ctr) marked later, whose id
 * their id files never got (the engine's command killed while it made one), all of those
 * that reach the engine through the same words as `first`: asked of the engine once, by
 * this mcpmux's owner label (and the run's, when there is one run; the mcpmux is gone:
 * every container of its is to go), for `seconds` at most; each one found that no id file named
 * (those were ended by it) then ended as by its id (whose owner is checked again), by until
 * (those left then are said).  Returns the time the question took.
 */
static double
end_listed(const struct ctr *first, struct ctr *ctrs, size_t n_ctr, const char *owner,
	   double seconds, double term_grace, double until)
{
	struct engine_res r = { .st = -1, .how = "out of memory" };
	struct listed ids = { .ids = NULL };
	char *words;
	size_t n, runs = 0;
	char **prefix = ctr_words(first, &words, &n), **list = NULL;
	double t0 = now_s();

	for (size_t i = 0; i < n_ctr; i++) {
		runs += ctrs[i].later && strcmp(ctrs[i].prefix, first->prefix) == 0;
	}
	if (prefix != NULL) {
		/* One run: its own label too, as mcpmux asks. */
		list = container_list_run_argv(prefix, n, owner, runs == 1 ? first->run : NULL);
	}
	if (list != NULL) {
		/* However many it lists: their ids are taken out as they come. */
		r.listed = &ids;
		run_engine_out(list, seconds, &r, true);
		free(list);
		(void)listed_take(r.err, r.n_err, &ids, true);
	}
	double took = now_s() - t0;

	if (!engine_ok(&r)) {
		char why[sizeof(r.err) + 64];

		engine_describe(&r, why, sizeof(why));
		diag_warn("keeper: cannot ask %s for the containers of %zu run(s) whose id file is "
			  "empty, such as %s (%s): a container they made may be left (mcpmux sweep "
			  "ends it)",
			  prefix != NULL ? engine_word(prefix, n) : "the engine", runs,
			  first->cidfile[0] != '\0' ? first->cidfile : first->run, why);
	} else if (ids.more) {
		diag_warn("keeper: %s listed more containers than the keeper can keep (%d): the "
			  "first are ended, the rest left (mcpmux sweep ends them)",
			  engine_word(prefix, n), KEEPER_LISTED_MAX);
	}
	size_t left = engine_ok(&r) ? ids.n : 0, late = 0;
	const char *first_late = NULL;

	for (const char *p = ids.ids; left > 0; left--, p += strlen(p) + 1) {
		bool known = false;

		for (size_t i = 0; i < n_ctr && !known; i++) {
			known = strcmp(ctrs[i].cid, p) == 0;
		}
		if (!known &&
		    end_by_id(NULL, false, prefix, n, p, owner, term_grace, until) == -1) {
			first_late = late++ == 0 ? p : first_late;
		}
	}
	if (late > 0) {
		diag_warn("keeper: no time left to end %zu container(s) %s listed, such as %.12s "
			  "(%.1f s for all of them): left (mcpmux sweep ends them)",
			  late, engine_word(prefix, n), first_late, KEEPER_FIRST_S + term_grace);
	}
	free(ids.ids);
	free(prefix);
	free(words);
	return took;
}

/*
 * The containers of every run marked later: one question for the runs that reach their
 * engine through the same words (one mcpmux runs one command: one question), all of the
 * questions together bounded to KEEPER_LIST_ALL_S, however many runs, and the containers
 * they give ended within KEEPER_FIRST_S and the grace from the start, however many: what
 * comes after them (the cgroup) is not held up longer; then mcpmux's own id files of those
 * runs, still empty, are removed (forget_own).
 */
static void
end_listed_all(struct ctr *ctrs, size_t n_ctr, const char *owner, double term_grace)
{
	double left = KEEPER_LIST_ALL_S, until = now_s() + KEEPER_FIRST_S + term_grace;

	for (size_t i = 0; i < n_ctr; i++) {
		if (!ctrs[i].later) {
			continue;
		}
		if (left > 0) {
			left -= end_listed(&ctrs[i], ctrs, n_ctr, owner,
					   SYS_MIN(KEEPER_ENGINE_S, left), term_grace, until);
		} else {
			diag_warn("keeper: no time left to ask the engine for the container of run "
				  "%s, whose id file %s is empty: a container it made may be left "
				  "(mcpmux sweep ends it)",
				  ctrs[i].run, ctrs[i].cidfile);
		}
		for (size_t j = i; j < n_ctr; j++) {
			if (ctrs[j].later && strcmp(ctrs[j].prefix, ctrs[i].prefix) == 0) {
				ctrs[j].later = false;
				forget_own(&ctrs[j]);
			}
		}
	}
}

/*
 * End c's container by the id its id file holds (kept in c->cid), by until (INFINITY:
 * each engine command bounded alone).  true when that file has none yet, and the run has
 * a label to find its container by: the run's processes may still be there, and the
 * engine's command, making the container, may still write its id, so it is read again
 * once they are gone (a second call); when it is still empty, the engine is asked
 * (end_listed_all).  true as well when until came before its end (said): it is ended
 * again by the second call.
 */
static bool
end_container(struct ctr *c, const char *owner, double term_grace, double until)
{
	int got = read_cid(c, c->cid, sizeof(c->cid));

	if (got != 1) {
		/*
		 * none yet, or none at all (no id file); or cannot be read (said): its labels
		 * say, where the run has them
		 */
		c->cid[0] = '\0';
		return c->run != NULL;
	}
	char *words;
	size_t n;
	char **prefix = ctr_words(c, &words, &n);
	bool again = false;

	if (prefix == NULL) {
		diag_warn("keeper: out of memory: the container of id file %s is left", c->cidfile);
	} else if (end_by_id(c->cidfile, c->own, prefix, n, c->cid, owner, term_grace, until) ==
		   -1) {
		diag_warn("keeper: no time left to end container %.12s before the processes "
			  "(%.1f s for all the containers): it is ended after them",
			  c->cid, KEEPER_FIRST_S + term_grace);
		again = true;
	}
	free(prefix);
	free(words);
	return again;
}

/* In the keeper: the pool slots' descriptors it holds (keeper_slot()). */
struct held {
	int fd;
	uint64_t dev, ino;
};

struct slots_in {
	int sock; /* -1 once it ended */
	struct held *v;
	size_t n, cap;
	unsigned char part[sizeof(struct slot_rec)]; /* a record read in part */
	size_t n_part;
	bool said; /* a slot could not be held: said once */
};

static void
slots_hold(struct slots_in *si, int fd)
{
	struct stat st;

	if (fstat(fd, &st) == -1) {
		(void)close(fd);
		return;
	}
	if (si->n == si->cap) {
		size_t cap = si->cap != 0 ? si->cap * 2 : 8;
		struct held *nv = realloc(si->v, cap * sizeof(*nv));

		if (nv == NULL) {
			/* Out of memory: not held, rather than held for good untracked. */
			if (!si->said) {
				si->said = true;
				diag_warn(
					"keeper: out of memory: a pool slot is not held (if mcpmux "
					"is killed, it may be free before what it left is ended)");
			}
			(void)close(fd);
			return;
		}
		si->v = nv;
		si->cap = cap;
	}
	si->v[si->n++] = (struct held){ fd, (uint64_t)st.st_dev, (uint64_t)st.st_ino };
}

/*
 * The held slots whose files are gone are let go, whenever a record comes: mcpmux removes a
 * freed slot's file before it says so, and a record it could not send (the socket full)
 * is one of many the keeper has still to read.  A file that is still there is a slot
 * taken, its record on its way, or its instance gone (killed, or kept for what it left).
 */
static void
slots_unlinked(struct slots_in *si)
{
	for (size_t i = 0; i < si->n;) {
		struct stat st;

		if (fstat(si->v[i].fd, &st) == 0 && st.st_nlink == 0) {
			(void)close(si->v[i].fd);
			si->v[i] = si->v[--si->n];
		} else {
			i++;
		}
	}
}

/* What waits on the slot socket: descriptors held, those of free slots let go. */
static void
slots_read(struct slots_in *si, bool wait)
{
	while (si->sock >= 0) {
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(64 * sizeof(int))];
		} cm;
		unsigned char data[64 * sizeof(struct slot_rec)];
		struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
		struct msghdr m = { .msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cm.buf,
				    .msg_controllen = sizeof(cm.buf) };
		ssize_t n = recvmsg(si->sock, &m, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;
		}
		if (n > 0 && (m.msg_flags & MSG_CTRUNC) != 0 && !si->said) {
			/* The kernel dropped descriptors it could not give (EMFILE): those
			 * slots are not held. */
			si->said = true;
			diag_warn("keeper: a pool slot's descriptor did not come (too many open "
				  "files?): it is not held (if mcpmux is killed, it may be free "
				  "before what it left is ended)");
		}
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); n > 0 && h != NULL;
		     h = CMSG_NXTHDR(&m, h)) {
			if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
				size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);

				for (size_t i = 0; i < k; i++) {
					int fd;

					memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
					slots_hold(si, fd);
				}
			}
		}
		if (n <= 0) {
			sys_close(&si->sock); /* mcpmux is gone, or done */
			return;
		}
		for (ssize_t at = 0; at < n;) {
			size_t take = SYS_MIN(sizeof(si->part) - si->n_part, (size_t)(n - at));

			memcpy(si->part + si->n_part, data + at, take);
			si->n_part += take;
			at += (ssize_t)take;
			if (si->n_part < sizeof(si->part)) {
				break;
			}
			struct slot_rec r;

			memcpy(&r, si->part, sizeof(r));
			si->n_part = 0;
			for (size_t i = 0; r.kind == 'R' && i < si->n; i++) {
				if (si->v[i].dev == r.dev && si->v[i].ino == r.ino) {
					(void)close(si->v[i].fd);
					si->v[i] = si->v[--si->n];
					break;
				}
			}
		}
		slots_unlinked(si);
		wait = false;
	}
}

/* One line from mcpmux (without its newline).  true for "done" (X). */
static bool
keeper_line(char *line, struct ctr **ctrs, size_t *n_ctr, char *cg, size_t cg_size)
{
	char *f1 = strchr(line, '\t'), *f2 = f1 != NULL ? strchr(f1 + 1, '\t') : NULL;

	if (strcmp(line, "X") == 0) {
		return true;
	} else if (line[0] == 'G' && f1 != NULL) {
		(void)snprintf(cg, cg_size, "%s", f1 + 1);
	} else if (line[0] == 'C' && f2 != NULL) {
		struct ctr *nc = realloc(*ctrs, (*n_ctr + 1) * sizeof(*nc));
		char *f3 = strchr(f2 + 1, '\t'), *f4 = f3 != NULL ? strchr(f3 + 1, '\t') : NULL;

		*f2 = '\0';
		if (f3 != NULL) {
			*f3 = '\0';
		}
		if (f4 != NULL) {
			*f4 = '\0';
		}
		if (nc == NULL) {
			diag_warn("keeper: out of memory: container id file %s not kept", f1 + 1);
			return false;
		}
		*ctrs = nc;
		nc[*n_ctr].cidfile = strdup(f1 + 1);
		nc[*n_ctr].prefix = strdup(f2 + 1);
		nc[*n_ctr].run = f3 != NULL && f3[1] != '\0' ? strdup(f3 + 1) : NULL;
		nc[*n_ctr].own = f4 != NULL && strcmp(f4 + 1, "own") == 0;
		nc[*n_ctr].later = false;
		nc[*n_ctr].cid[0] = '\0';
		if (nc[*n_ctr].cidfile == NULL || nc[*n_ctr].prefix == NULL ||
		    (f3 != NULL && f3[1] != '\0' && nc[*n_ctr].run == NULL)) {
			free(nc[*n_ctr].cidfile);
			free(nc[*n_ctr].prefix);
			free(nc[*n_ctr].run);
			diag_warn("keeper: out of memory: container id file %s not kept", f1 + 1);
			return false;
		}
		(*n_ctr)++;
	} else if (line[0] == 'D' && f1 != NULL) {
		const char *run = f2 != NULL ? f2 + 1 : NULL;

		if (f2 != NULL) {
			*f2 = '\0';
		}
		for (size_t i = 0; i < *n_ctr; i++) {
			const struct ctr *c = &(*ctrs)[i];

			if (strcmp(c->cidfile, f1 + 1) == 0 &&
			    (run == NULL || (c->run != NULL && strcmp(c->run, run) == 0))) {
				free((*ctrs)[i].cidfile);
				free((*ctrs)[i].prefix);
				free((*ctrs)[i].run);
				(*ctrs)[i] = (*ctrs)[--*n_ctr];
				break;
			}
		}
	}
	return false;
}

static _Noreturn void
keeper_main(int fd, int slot_fd, const char *owner, double term_grace)
{
	struct slots_in si = { .sock = slot_fd };
	struct ctr *ctrs = NULL;
	size_t n_ctr = 0;
	char cg[CGROUP_PATH_MAX] = "";
	char small[4096];
	char *buf = small;
	size_t cap = sizeof(small), len = 0;
	bool done = false, skip = false;

	diag_sum_repeats(false);
	while (!done) {
		if (len + 1 == cap) {
			/* A line longer than the buffer: room for it (mcpmux's lines have no
			 * bound). */
			char *nb = buf == small ? malloc(cap * 2) : realloc(buf, cap * 2);

			if (nb != NULL) {
				if (buf == small) {
					memcpy(nb, small, len);
				}
				buf = nb;
				cap *= 2;
			} else {
				diag_warn("keeper: out of memory: a line from mcpmux is lost");
				skip = true; /* up to its end */
				len = 0;
			}
		}
		if (si.sock >= 0) {
			/* The slots' descriptors as they come, and mcpmux's lines. */
			struct pollfd pf[2] = { { .fd = fd, .events = POLLIN },
						{ .fd = si.sock, .events = POLLIN } };

			if (poll(pf, 2, -1) == -1) {
				continue; /* EINTR */
			}
			if (pf[1].revents != 0) {
				slots_read(&si, false);
			}
			if (pf[0].revents == 0) {
				continue;
			}
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		size_t scanned = len;

		len += (size_t)n;
		buf[len] = '\0';
		char *line = buf, *nl;

		while (!done && (nl = memchr(buf + scanned, '\n', len - scanned)) != NULL) {
			*nl = '\0';
			if (!skip) {
				done = keeper_line(line, &ctrs, &n_ctr, cg, sizeof(cg));
			}
			skip = false;
			line = nl + 1;
			scanned = (size_t)(line - buf);
		}
		len -= (size_t)(line - buf);
		memmove(buf, line, len);
		if (skip) {
			len = 0;
		}
	}
	if (buf != small) {
		free(buf);
	}
	(void)close(fd);
	/* Every slot sent before mcpmux went (its end of the socket is closed by then). */
	slots_read(&si, false);
	sys_close(&si.sock);
	if (!done) {
		/* Its slots stay taken until what it left is ended (the keeper's exit). */
		for (size_t i = 0; i < si.n; i++) {
			pool_fd_going(si.v[i].fd);
		}
	}
	if (done && (n_ctr > 0 || si.n > 0)) {
		/* mcpmux must not wait for what follows: the end of fd 4 tells it the keeper
		 * is done with it. */
		(void)close(4);
	}
	if (done && n_ctr > 0) {
		/*
		 * mcpmux exited normally, but left containers it did not see gone (their
		 * teardown was abandoned: the engine was too slow).
		 */
		diag_warn("keeper: mcpmux %s exited leaving %zu container(s) it did not see gone: "
			  "ending them",
			  owner, n_ctr);
		for (size_t i = 0; i < n_ctr; i++) {
			ctrs[i].later = end_container(&ctrs[i], owner, term_grace, INFINITY);
		}
		end_listed_all(ctrs, n_ctr, owner, term_grace);
	} else if (!done) {
		/*
		 * Containers first, through their engines: their monitors carry the owner too,
		 * and must live until the engine has stopped them (container.h).  All of them
		 * together by KEEPER_FIRST_S and the grace: an engine that does not answer
		 * must not hold up the end of every other process; what is left of them then
		 * comes after the processes.
		 */
		double first_until = now_s() + KEEPER_FIRST_S + term_grace;

		for (size_t i = 0; i < n_ctr; i++) {
			ctrs[i].later = end_container(&ctrs[i], owner, term_grace, first_until);
		}
		/* SIGTERM to what carries the owner, SIGKILL after the grace... */
		(void)keeper_end_owned(PROC_ROOT, owner, term_grace);
		/*
		 * ...and then the containers whose id was not written yet: their engine's
		 * command is gone now (it was one of those processes), and what it made has
		 * no monitor (the engines write the id before they start it); and those the
		 * first turn had no time left for.
		 */
		for (size_t i = 0; i < n_ctr; i++) {
			if (ctrs[i].later) {
				ctrs[i].later =
					end_container(&ctrs[i], owner, term_grace, INFINITY);
			}
		}
		end_listed_all(ctrs, n_ctr, owner, term_grace);
		if (cg[0] != '\0') {
			/*
			 * ...then, where there is one, the cgroup: whatever dropped its cookie;
			 * again while it is populated, for what a process that cgroup.kill
			 * missed started before its own SIGKILL.
			 */
			for (double until = now_s() + KEEPER_KILL_S;;) {
				(void)cgroup_kill(cg);
				if (cgroup_populated(cg) != 1 || now_s() >= until) {
					break;
				}
				nap(KEEPER_POLL_S);
			}
		}
	}
	if (done && si.n > 0) {
		/*
		 * Slots mcpmux kept at its normal exit: a teardown it abandoned left processes
		 * that would not die.  They stay taken while those still run, for
		 * --kill-deadline at most (it already gave up on them once).
		 */
		wait_owned(owner, keeper_deadline);
	}
	if (cg[0] != '\0') {
		(void)cgroup_remove(cg);
	}
	/* Last, the status file of an mcpmux killed before it could remove it. */
	int owner_pid;
	unsigned long long owner_start;

	if (sscanf(owner, "%d:%llu", &owner_pid, &owner_start) == 2) {
		status_forget((pid_t)owner_pid, owner_start);
	}
	for (size_t i = 0; i < n_ctr; i++) {
		free(ctrs[i].cidfile);
		free(ctrs[i].prefix);
		free(ctrs[i].run);
	}
	free(ctrs);
	/* The slots' files whose instance left them (killed, or kept for what it left):
	 * removed with their asks ("a." for "s."), which would mark a later instance with
	 * that pid as asked; then their locks go with the exit.  Those freed are gone already. */
	for (size_t i = 0; i < si.n; i++) {
		char link[64], path[PATH_MAX];

		(void)snprintf(link, sizeof(link), "/proc/self/fd/%d", si.v[i].fd);
		ssize_t n = readlink(link, path, sizeof(path) - 1);

		if (n > 0) {
			path[n] = '\0';
			if (strstr(path, " (deleted)") == NULL) {
				char *base = strrchr(path, '/');

				(void)unlink(path);
				if (base != NULL && strncmp(base + 1, "s.", 2) == 0) {
					base[1] = 'a';
					(void)unlink(path);
				}
			}
		}
	}
	free(si.v);
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

/* Close lo..hi, those open among them: what close_range() does, with or without it. */
static void
close_from(unsigned int lo, unsigned int hi)
{
	if (close_range(lo, hi, 0) == 0) {
		return;
	}
	/* No close_range() (before Linux 5.9, or refused): each open descriptor, by /proc. */
	DIR *d = opendir("/proc/self/fd");

	if (d != NULL) {
		int self = dirfd(d);

		for (const struct dirent *e; (e = readdir(d)) != NULL;) {
			char *end;
			long fd = strtol(e->d_name, &end, 10);

			if (e->d_name[0] != '\0' && *end == '\0' && fd != self && fd >= (long)lo &&
			    fd <= (long)hi) {
				(void)close((int)fd);
			}
		}
		(void)closedir(d);
		return;
	}
	struct rlimit rl;
	unsigned int top = hi;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur <= (rlim_t)hi) {
		top = rl.rlim_cur > 0 ? (unsigned int)rl.rlim_cur - 1 : 0;
	}
	for (unsigned int fd = lo; fd <= top && fd >= lo; fd++) {
		(void)close((int)fd);
	}
}

/*
 * In the middle child, first of all: only the pipe from mcpmux (in, as fd 3), the end
 * whose closing tells mcpmux the keeper is gone (ack, as fd 4) and, where there is one,
 * the socket the pool's slots come by (as fd 5) are kept, besides stdio: keep[0..n-1]
 * become fds 3.. in that order.  Until then it holds a copy of every descriptor of
 * mcpmux's (its servers' pipes, the status file's lock, the loop's own): a middle process
 * or keeper held there (on a loaded machine) would keep a server's stdin open after
 * mcpmux closed it.  -1 when they cannot be moved.
 */
static int
keep_only(const int *keep, int n)
{
	int moved[3], lo = 3 + n;
	unsigned int from = 3;

	for (int i = 0; i < n; i++) {
		lo = SYS_MAX(lo, keep[i] + 1);
	}
	/* Above all of them, in ascending order (each the lowest free one from lo). */
	for (int i = 0; i < n; i++) {
		if ((moved[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, lo)) == -1) {
			return -1;
		}
	}
	for (int i = 0; i < n; i++) {
		if (moved[i] > (int)from) {
			close_from(from, (unsigned int)moved[i] - 1);
		}
		from = (unsigned int)moved[i] + 1;
	}
	close_from(from, ~0U);
	for (int i = 0; i < n; i++) {
		if (dup3(moved[i], 3 + i, O_CLOEXEC) == -1) {
			return -1;
		}
	}
	close_from(3 + (unsigned int)n, ~0U);
	return 0;
}

/*
 * Wait for the middle child, mid_s at most (mcpmux's loop waits meanwhile): one that takes
 * longer (stopped, or held on a loaded machine) is killed.  0 when it exited by itself.
 */
static int
middle_wait(pid_t mid, int *st, double mid_s)
{
	double pause = 0.0001;

	for (double until = sys_mono() + mid_s;;) {
		pid_t w = waitpid(mid, st, WNOHANG);

		if (w == mid) {
			return 0;
		}
		if (w == -1 && errno != EINTR) {
			return -1;
		}
		if (sys_mono() >= until) {
			(void)kill(mid, SIGKILL);
			while (waitpid(mid, st, 0) == -1 && errno == EINTR) {
			}
			return -1;
		}
		nap(pause);
		pause = SYS_MIN(pause * 2, 0.01);
	}
}

int
keeper_start(double term_grace, int argc, char **argv)
{
	return spawn_keeper(term_grace, argc, argv, KEEPER_MID_FIRST_S);
}

static int
spawn_keeper(double term_grace, int argc, char **argv, double mid_s)
{
	int p[2], ack[2], sp[2] = { -1, -1 };
	pid_t self = getpid(), mid;
	unsigned long long start = 0;
	char owner[64];

	keeper_grace = term_grace;
	keeper_argc = argc;
	keeper_argv = argv;
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
	/* Without it, the keeper holds no slot of the pool: they are free when mcpmux dies. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		slot_sock_errno = errno; /* said when a slot is to be handed (slot_send()) */
		sp[0] = sp[1] = -1;
	} else {
		slot_sock_errno = 0;
	}
	mid = fork();
	if (mid == -1) {
		int err = errno;

		(void)close(p[0]);
		(void)close(p[1]);
		(void)close(ack[0]);
		(void)close(ack[1]);
		sys_close(&sp[0]);
		sys_close(&sp[1]);
		errno = err;
		return -1;
	}
	if (mid == 0) {
		sigset_t all;

		/*
		 * No handler of mcpmux's runs here (the keeper sets its own): one would write
		 * to a descriptor of mcpmux's loop, whose number is now another's.
		 */
		sigfillset(&all);
		(void)sigprocmask(SIG_SETMASK, &all, NULL);
		int keep[3] = { p[0], ack[1], sp[1] };
		int n_keep = sp[1] >= 0 ? 3 : 2;

		if (keep_only(keep, n_keep) == -1) {
			_exit(1);
		}
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		/* Nothing of the client's either: it must see EOF when mcpmux goes. */
		if (null >= 0) {
			(void)dup2(null, STDIN_FILENO);
			(void)dup2(null, STDOUT_FILENO);
		}
		if (null > STDOUT_FILENO) {
			(void)close(null);
		}
		/*
		 * The middle child exits at once: the keeper is re-parented away from mcpmux
		 * (mcpmux is not a subreaper yet), so that no walk of mcpmux's tree sees it.
		 * It leaves mcpmux's session first, so that the keeper is out of mcpmux's
		 * process group from its first instruction, before mcpmux goes on (a signal
		 * to that group never reaches it), and is no session leader (it never gets
		 * a controlling terminal).
		 */
		(void)setsid();
		/*
		 * Its name before the keeper is forked, which inherits it: a keeper not yet under
		 * way (held on a loaded machine) must not look like an mcpmux instance, with
		 * mcpmux's command line, to `mcpmux ps`.
		 */
		retitle(argc, argv, self);
		pid_t k = fork();

		if (k != 0) {
			/*
			 * Its pid for mcpmux (a pipe's buffer takes it at once): where mcpmux is
			 * pid 1, the keeper comes back to it as an orphan, and must not be taken
			 * for one of a server's.
			 */
			if (k > 0 && write(4, &k, sizeof(k)) != (ssize_t)sizeof(k)) {
				_exit(0); /* the keeper runs: mcpmux just does not know its pid */
			}
			_exit(k == -1);
		}
		/*
		 * Its few words on stderr never block it: a description of its own, or a
		 * socket's shared one written with MSG_DONTWAIT (diag through sys_writev()), or
		 * else /dev/null.  Never the flags of a shared pipe or terminal: those are
		 * mcpmux's to set and give back (errout), and it is setting them meanwhile.
		 */
		struct stat est;
		bool shared = false;
		int err_fd = -1;

		if (fstat(STDERR_FILENO, &est) == 0) {
			if (S_ISFIFO(est.st_mode) || S_ISCHR(est.st_mode)) {
				err_fd = open("/proc/self/fd/2",
					      O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
			} else if (S_ISSOCK(est.st_mode) || S_ISREG(est.st_mode) ||
				   S_ISBLK(est.st_mode)) {
				err_fd = sys_stdio_open(STDERR_FILENO,
							&shared); /* (flags untouched) */
			}
		}
		if (err_fd >= 0 && err_fd != STDERR_FILENO) {
			(void)dup2(err_fd, STDERR_FILENO);
		} else if (err_fd < 0) {
			/* (the middle's /dev/null is closed: one of its own) */
			int null2 = open("/dev/null", O_WRONLY | O_CLOEXEC);

			if (null2 >= 0 && null2 != STDERR_FILENO) {
				(void)dup2(null2, STDERR_FILENO);
				(void)close(null2);
			}
		}
		/*
		 * fd 3: the pipe from mcpmux; fd 4: the end whose closing tells mcpmux we are
		 * gone (keep_only()); fd 5, where there is one, the slots' socket; nothing else
		 * but stdio.
		 */
		close_from(3 + (unsigned int)n_keep, ~0U);
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
		keeper_main(3, n_keep == 3 ? 5 : -1, owner, term_grace);
	}
	(void)close(p[0]);
	(void)close(ack[1]);
	sys_close(&sp[1]);
	int st = 0;

	if (middle_wait(mid, &st, mid_s) == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		/*
		 * The middle child killed (a signal to every process of the keeper's name, or
		 * by middle_wait()) may have forked the keeper already: "done" first, or the
		 * end of the pipe would tell it that mcpmux is gone, and it would end mcpmux's
		 * live servers.
		 */
		ssize_t w = write(p[1], "X\n", 2);

		(void)w;
		(void)close(p[1]);
		(void)close(ack[0]);
		sys_close(&sp[0]);
		errno = EAGAIN;
		return -1;
	}
	keeper_fd = p[1];
	keeper_cut = false;
	ack_fd = ack[0];
	/* Written before the middle child exited, which was waited for. */
	(void)sys_set_nonblock(ack_fd, 1);
	if (read(ack_fd, &keeper_pid, sizeof(keeper_pid)) != (ssize_t)sizeof(keeper_pid)) {
		keeper_pid = 0;
	}
	(void)sys_set_nonblock(keeper_fd, 1);
	sys_close(&slot_sock);
	slot_sock = sp[0];
	return 0;
}
