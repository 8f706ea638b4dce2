/*
 * status: the per-instance file that `mcpmux ps` reads (status.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/proctree.h"
#include "mcpmux/session.h"
#include "mcpmux/status.h"
#include "mcpmux/sys.h"

#define STATUS_EVERY_S 1.0  /* traffic updates "last" at most this often */
#define STATUS_SOON_S  0.05 /* a change of state is written this soon (one write for many) */

static struct {
	struct ev_loop *loop;
	int fd;
	const char *mode;
	char path[PATH_MAX];
	ev_timer w;
	struct sbuf buf;
	bool failed;	   /* said once */
	double last_write; /* sys_mono() */
} st = { .fd = -1 };

static void
status_write(void)
{
	struct sbuf *b = &st.buf;

	ev_timer_stop(st.loop, &st.w);
	st.last_write = sys_mono();
	sbuf_reset(b);
	sbuf_addf(b, "{\"mcpmux\":%d,\"mode\":\"%s\"", (int)getpid(), st.mode);
	/*
	 * Its MCPMUX_OWNER and its cgroup: the file stays when mcpmux and its keeper are
	 * killed together, and sweep finds there what is left in the cgroup.
	 */
	if (backend_owner()[0] != '\0') {
		sbuf_adds(b, ",\"owner\":");
		sbuf_add_json_string(b, backend_owner(), strlen(backend_owner()));
	}
	if (backend_cgroup()[0] != '\0') {
		sbuf_adds(b, ",\"cgroup\":");
		sbuf_add_json_string(b, backend_cgroup(), strlen(backend_cgroup()));
	}
	sbuf_adds(b, "}\n");
	for (const struct session *s = session_first(); s != NULL; s = s->next_live) {
		pid_t pid = session_pid(s);

		sbuf_adds(b, "{\"session\":");
		sbuf_add_json_string(b, s->id, strlen(s->id));
		/* No printf: a thousand sessions make a thousand lines, every 50 ms at most. */
		sbuf_adds(b, ",\"state\":\"");
		sbuf_adds(b, session_state_name(s));
		sbuf_adds(b, "\",\"pid\":");
		if (pid > 0) {
			sbuf_add_uint(b, (unsigned long long)pid, 1);
		} else {
			sbuf_adds(b, "null");
		}
		sbuf_adds(b, ",\"started\":");
		sbuf_add_milli(b, s->started);
		sbuf_adds(b, ",\"last\":");
		sbuf_add_milli(b, s->last_activity);
		if (s->backend != NULL && s->backend->cgroup != NULL) {
			const char *leaf = strrchr(s->backend->cgroup, '/');

			sbuf_adds(b, ",\"leaf\":");
			sbuf_add_json_string(b, leaf + 1, strlen(leaf + 1));
		}
		sbuf_adds(b, ",\"suspends\":");
		sbuf_add_uint(b, s->n_suspends, 1);
		sbuf_adds(b, ",\"resumes\":");
		sbuf_add_uint(b, s->n_resumes, 1);
		sbuf_adds(b, "}\n");
	}
	if (b->failed || pwrite(st.fd, b->buf, b->len, 0) != (ssize_t)b->len ||
	    ftruncate(st.fd, (off_t)b->len) == -1) {
		if (!st.failed) {
			diag_warn_errno("cannot write %s (mcpmux ps shows less)", st.path);
			st.failed = true;
		}
	}
	sbuf_release(b); /* nothing held between writes */
}

static void
status_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	status_write();
}

void
status_open(struct ev_loop *loop, const char *mode)
{
	char dir[PATH_MAX];

	if (sys_runtime_dir("instances", dir, sizeof(dir)) == -1 ||
	    (size_t)snprintf(st.path, sizeof(st.path), "%s/%d", dir, (int)getpid()) >=
		    sizeof(st.path)) {
		diag_warn_errno("no runtime directory for the instance's status (mcpmux ps "
				"shows less)");
		return;
	}
	/*
	 * A reader (ps, sweep) holds the lock for microseconds: a few tries.  The file is
	 * checked to be the one at the path once locked (a sweep may remove a dead pid's file
	 * between the open and the lock: then it is made again).
	 */
	for (int tries = 0; tries < 20 && st.fd < 0; tries++) {
		struct stat a, b;

		st.fd = open(st.path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (st.fd == -1) {
			break;
		}
		if (flock(st.fd, LOCK_EX | LOCK_NB) == -1 || fstat(st.fd, &a) == -1 ||
		    stat(st.path, &b) == -1 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
			sys_close(&st.fd);
			(void)nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
		}
	}
	if (st.fd < 0) {
		diag_warn_errno("cannot keep %s (mcpmux ps shows less)", st.path);
		return;
	}
	st.loop = loop;
	st.mode = mode;
	ev_timer_init(&st.w, status_on_timer, STATUS_EVERY_S, 0.);
	status_write();
	st.last_write = 0; /* the first session's start is not held back by this write */
}

void
status_rewrite(void)
{
	if (st.fd < 0) {
		return;
	}
	status_write();
	st.last_write = 0; /* as after status_open(): the first session's start is not held */
}

void
status_changed(void)
{
	if (st.fd < 0) {
		return;
	}
	/*
	 * A change after a quiet while is written at once; the changes that follow it within
	 * STATUS_SOON_S make one write at its end: a thousand sessions starting at once make
	 * a few writes, not a thousand writes of a thousand lines each.
	 */
	double since = sys_mono() - st.last_write;

	if (!ev_is_active(&st.w) && since >= STATUS_SOON_S) {
		status_write();
		return;
	}
	double due = SYS_MAX(0., STATUS_SOON_S - since);

	if (!ev_is_active(&st.w)) {
		ev_timer_set(&st.w, due, 0.);
		ev_timer_start(st.loop, &st.w);
	}
}

void
status_traffic(double now)
{
	/*
	 * No timer for traffic: an armed timer gives every wait of the loop a timeout, which
	 * the kernel charges on each one.  Traffic after a quiet second is written at once;
	 * within the second it goes out with the next write, so that an idle time read by ps
	 * is late by at most a second.
	 */
	if (st.fd >= 0 && now - st.last_write >= STATUS_EVERY_S && !ev_is_active(&st.w)) {
		status_write();
	}
}

void
status_close(void)
{
	if (st.fd < 0) {
		return;
	}
	ev_timer_stop(st.loop, &st.w);
	(void)unlink(st.path);
	sys_close(&st.fd);
	sbuf_release(&st.buf);
}

void
status_forget(pid_t pid, unsigned long long start)
{
	char path[PATH_MAX];
	unsigned long long now = 0;
	struct stat sb;
	int fd;

	if (sys_runtime_dir_found("instances", path, sizeof(path)) == -1) {
		return;
	}
	size_t at = strlen(path);

	if ((size_t)snprintf(path + at, sizeof(path) - at, "/%d", (int)pid) >= sizeof(path) - at) {
		return;
	}
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd == -1) {
		return;
	}
	/*
	 * Held by no one, and pid is still the dead instance (a zombie not reaped yet) or no
	 * process at all: a new instance that took the pid since keeps its file under its lock,
	 * or has not locked it yet and then has the pid (status_open() makes its file again
	 * if it goes between its open and its lock).
	 */
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == getuid() &&
	    flock(fd, LOCK_EX | LOCK_NB) == 0 &&
	    ((kill(pid, 0) == -1 && errno == ESRCH) ||
	     (proctree_start_time("/proc", pid, &now) == 0 && now == start)) &&
	    unlink(path) == -1 && errno != ENOENT) {
		diag_warn_errno("keeper: cannot remove %s", path);
	}
	sys_close(&fd);
}
