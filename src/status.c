/*
 * status: the per-instance file that `mcpmux ps` reads (status.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "mcpmux/diag.h"
#include "mcpmux/session.h"
#include "mcpmux/status.h"
#include "mcpmux/sys.h"

#define STATUS_EVERY_S 1.0 /* traffic updates "last" at most this often */

static struct {
	struct ev_loop *loop;
	int fd;
	const char *mode;
	char path[PATH_MAX];
	ev_timer w;
	struct sbuf buf;
	bool failed; /* said once */
} st = { .fd = -1 };

static void
status_write(void)
{
	struct sbuf *b = &st.buf;

	sbuf_reset(b);
	sbuf_addf(b, "{\"mcpmux\":%d,\"mode\":\"%s\"}\n", (int)getpid(), st.mode);
	for (const struct session *s = session_first(); s != NULL; s = s->next_live) {
		pid_t pid = session_pid(s);

		sbuf_adds(b, "{\"session\":");
		sbuf_add_json_string(b, s->id, strlen(s->id));
		sbuf_addf(b, ",\"state\":\"%s\",\"pid\":", session_state_name(s));
		if (pid > 0) {
			sbuf_addf(b, "%d", (int)pid);
		} else {
			sbuf_adds(b, "null");
		}
		sbuf_addf(b, ",\"started\":%.3f,\"last\":%.3f,\"suspends\":%lu,\"resumes\":%lu}\n",
			  s->started, s->last_activity, s->n_suspends, s->n_resumes);
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
	st.fd = open(st.path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (st.fd == -1 || flock(st.fd, LOCK_EX | LOCK_NB) == -1) {
		diag_warn_errno("cannot keep %s (mcpmux ps shows less)", st.path);
		sys_close(&st.fd);
		return;
	}
	st.loop = loop;
	st.mode = mode;
	ev_timer_init(&st.w, status_on_timer, STATUS_EVERY_S, 0.);
	status_write();
}

void
status_note(bool now)
{
	if (st.fd < 0) {
		return;
	}
	if (now) {
		ev_timer_stop(st.loop, &st.w);
		status_write();
	} else if (!ev_is_active(&st.w)) {
		ev_timer_start(st.loop, &st.w);
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
