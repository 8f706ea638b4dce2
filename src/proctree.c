/*
 * proctree: descendants of mcpmux from /proc, and signals to a backend's tree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mcpmux/proctree.h"
#include "mcpmux/sys.h"

void
proctree_init(struct proctree *t)
{
	memset(t, 0, sizeof(*t));
}

void
proctree_release(struct proctree *t)
{
	free(t->v);
	proctree_init(t);
}

/* Read a small file whole into buf (NUL-terminated).  Bytes read, or -1. */
static ssize_t
read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	if (fd == -1) {
		return -1;
	}
	while (got + 1 < len) {
		ssize_t n = sys_read(fd, buf + got, len - 1 - got);

		if (n <= 0) {
			if (n == -1) {
				got = 0;
			}
			break;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	sys_close(&fd);
	return (ssize_t)got;
}

/* Parse /proc/PID/stat: state, ppid, pgid and start time.  0 or -1. */
static int
read_stat(const char *proc_root, pid_t pid, struct proc_info *pi)
{
	char path[PATH_MAX], buf[1024];
	unsigned long long start = 0;
	int ppid, pgid, n = 0;
	char state;

	(void)snprintf(path, sizeof(path), "%s/%d/stat", proc_root, (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0) {
		return -1;
	}
	/* The command name may hold spaces and parentheses: parse after the last ')'. */
	char *p = strrchr(buf, ')');

	if (p == NULL || sscanf(p + 1,
				" %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d "
				"%*d %*d %*d %*d %*d %llu%n",
				&state, &ppid, &pgid, &start, &n) < 4) {
		return -1;
	}
	pi->pid = pid;
	pi->state = state;
	pi->ppid = ppid;
	pi->pgid = pgid;
	pi->start = start;
	return 0;
}

#define PF_EXITING 0x00000004u /* the kernel's task flag: in do_exit() */

bool
proctree_exiting(const char *proc_root, pid_t pid)
{
	char path[PATH_MAX], buf[1024];
	unsigned int flags = 0;
	char state;

	(void)snprintf(path, sizeof(path), "%s/%d/stat", proc_root, (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0) {
		return false;
	}
	char *p = strrchr(buf, ')');

	/* Fields 3 (state) and 9 (flags), after the command name in parentheses. */
	if (p == NULL || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) != 2) {
		return false;
	}
	return state == 'Z' || state == 'X' || (flags & PF_EXITING) != 0;
}

/* The MCPMUX_SESSION value from /proc/PID/environ, "" when absent or unreadable. */
static void
read_cookie(const char *proc_root, pid_t pid, char *out)
{
	static const char key[] = PROCTREE_COOKIE_ENV "=";
	char path[PATH_MAX], buf[8192];
	size_t keep = 0;
	int fd;

	out[0] = '\0';
	(void)snprintf(path, sizeof(path), "%s/%d/environ", proc_root, (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		return;
	}
	/*
	 * Entries are NUL-terminated; an entry cut by the buffer is carried over, and one
	 * longer than the whole buffer is skipped to its end (it is not ours).
	 */
	bool skip = false;

	for (;;) {
		ssize_t n = sys_read(fd, buf + keep, sizeof(buf) - keep);

		if (n <= 0) {
			break;
		}
		size_t len = keep + (size_t)n, at = 0;

		if (skip) {
			char *nul = memchr(buf, '\0', len);

			if (nul == NULL) {
				keep = 0;
				continue;
			}
			at = (size_t)(nul - buf) + 1;
			skip = false;
		}
		while (at < len) {
			char *nul = memchr(buf + at, '\0', len - at);

			if (nul == NULL) {
				break;
			}
			size_t elen = (size_t)(nul - (buf + at));

			if (elen > sizeof(key) - 1 && memcmp(buf + at, key, sizeof(key) - 1) == 0 &&
			    elen - (sizeof(key) - 1) <= PROCTREE_COOKIE_MAX) {
				memcpy(out, buf + at + sizeof(key) - 1, elen - (sizeof(key) - 1));
				out[elen - (sizeof(key) - 1)] = '\0';
				sys_close(&fd);
				return;
			}
			at += elen + 1;
		}
		keep = len - at;
		if (keep == sizeof(buf)) {
			keep = 0;
			skip = true;
		} else {
			memmove(buf, buf + at, keep);
		}
	}
	sys_close(&fd);
}

static int
tree_push(struct proctree *t, const char *proc_root, pid_t pid, size_t parent)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct proc_info *nv = realloc(t->v, cap * sizeof(*nv));

		if (nv == NULL) {
			return -1;
		}
		t->v = nv;
		t->cap = cap;
	}
	struct proc_info *pi = &t->v[t->n];

	if (read_stat(proc_root, pid, pi) == -1) {
		return 0; /* gone since its parent listed it */
	}
	pi->parent = parent;
	read_cookie(proc_root, pid, pi->cookie);
	t->n++;
	return 0;
}

/*
 * Append the pids listed in one task's children file ("1 2 3 "), read in pieces: a
 * process may have more children than one buffer holds, and a pid cut by the buffer
 * is carried over to the next read.
 */
static int
scan_children_file(struct proctree *t, const char *proc_root, const char *path, size_t self)
{
	char buf[4096];
	size_t keep = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd == -1) {
		return 0;
	}
	for (;;) {
		ssize_t n = sys_read(fd, buf + keep, sizeof(buf) - 1 - keep);
		bool eof = n <= 0;
		size_t len = keep + (eof ? 0 : (size_t)n), at = 0;

		while (rc == 0 && at < len) {
			size_t start = at;
			long child = 0;

			while (at < len && buf[at] >= '0' && buf[at] <= '9') {
				child = child < INT_MAX ? child * 10 + (buf[at] - '0') : child;
				at++;
			}
			if (at == len && !eof) {
				at = start; /* cut by the buffer: carry it over */
				break;
			}
			if (at > start && child > 0 && child <= INT_MAX) {
				rc = tree_push(t, proc_root, (pid_t)child, self);
			}
			if (at == start) {
				at++; /* a separator */
			}
		}
		if (eof || rc != 0) {
			break;
		}
		keep = len - at;
		memmove(buf, buf + at, keep);
	}
	sys_close(&fd);
	return rc;
}

/* Append the children of pid (all its threads' children lists). */
static int
scan_children(struct proctree *t, const char *proc_root, pid_t pid, size_t self)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	(void)snprintf(path, sizeof(path), "%s/%d/task", proc_root, (int)pid);
	d = opendir(path);
	if (d == NULL) {
		return 0; /* exited */
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9') {
			continue;
		}
		(void)snprintf(path, sizeof(path), "%s/%d/task/%s/children", proc_root, (int)pid,
			       de->d_name);
		rc = scan_children_file(t, proc_root, path, self);
	}
	closedir(d);
	return rc;
}

int
proctree_scan(struct proctree *t, const char *proc_root, pid_t root)
{
	t->n = 0;
	if (scan_children(t, proc_root, root, SIZE_MAX) == -1) {
		return -1;
	}
	/* Breadth first: every entry's parent comes before it. */
	for (size_t i = 0; i < t->n; i++) {
		if (scan_children(t, proc_root, t->v[i].pid, i) == -1) {
			return -1;
		}
	}
	return 0;
}

static bool
has_cookie(const struct proc_info *pi, const struct proctree_match *m)
{
	return m->cookie != NULL && m->cookie[0] != '\0' && strcmp(pi->cookie, m->cookie) == 0;
}

static bool
proc_matches(const struct proc_info *pi, const struct proctree_match *m)
{
	bool foreign = pi->cookie[0] != '\0' && !has_cookie(pi, m);

	return (m->pid > 0 && pi->pid == m->pid) || has_cookie(pi, m) ||
	       (m->pgid > 0 && pi->pgid == m->pgid && !foreign);
}

bool
proctree_is_member(const struct proctree *t, size_t i, const struct proctree_match *m)
{
	bool foreign = false;
	size_t top = i;

	if (t->v[i].state == 'Z' || t->v[i].state == 'X') {
		return false;
	}
	for (size_t k = i; k != SIZE_MAX; k = t->v[k].parent) {
		if (proc_matches(&t->v[k], m)) {
			return true;
		}
		foreign = foreign || t->v[k].cookie[0] != '\0';
		top = k;
	}
	/* An orphan: no cookie on its line, and its top is a child of mcpmux but no backend. */
	return m->is_backend != NULL && !foreign && !m->is_backend(t->v[top].pid);
}

size_t
proctree_count(const struct proctree *t, const struct proctree_match *m)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n; i++) {
		n += proctree_is_member(t, i, m);
	}
	return n;
}

/* Signal one process if it is still the one the snapshot saw.  true if signalled. */
static bool
signal_verified(const char *proc_root, const struct proc_info *pi, int sig)
{
	struct proc_info now;
	int pfd = (int)syscall(SYS_pidfd_open, pi->pid, 0);

	if (pfd == -1) {
		if (errno != ENOSYS) {
			return false; /* ESRCH: gone */
		}
		/* No pidfds: a plain kill, guarded by the start time. */
		if (read_stat(proc_root, pi->pid, &now) == -1 || now.start != pi->start) {
			return false;
		}
		return kill(pi->pid, sig) == 0;
	}
	bool ok = read_stat(proc_root, pi->pid, &now) == 0 && now.start == pi->start &&
		  syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0) == 0;

	sys_close(&pfd);
	return ok;
}

size_t
proctree_signal(const struct proctree *t, const struct proctree_match *m, const char *proc_root,
		int sig)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n; i++) {
		if (!proctree_is_member(t, i, m)) {
			continue;
		}
		if (signal_verified(proc_root, &t->v[i], sig)) {
			n++;
			if (sig == SIGTERM) {
				(void)signal_verified(proc_root, &t->v[i], SIGCONT);
			}
		}
	}
	return n;
}
