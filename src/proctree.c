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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/proctree.h"
#include "mcpmux/sys.h"

#define PROCTREE_MAX ((size_t)1 << 22) /* more entries than pid_max allows */

/*
 * Closed to make room when the descriptor table is full: a walk holds two descriptors
 * at a time (a task directory and a file in it).
 */
static int spare_fd[2] = { -1, -1 };

void
proctree_init(struct proctree *t)
{
	memset(t, 0, sizeof(*t));
}

void
proctree_release(struct proctree *t)
{
	free(t->v);
	free(t->str);
	free(t->prev);
	free(t->prev_str);
	proctree_init(t);
}

/* A new walk: the last one's entries and strings become the previous ones. */
static void
walk_begin(struct proctree *t)
{
	struct proc_info *v = t->prev;
	size_t cap = t->prev_cap, str_cap = t->prev_str_cap;
	char *str = t->prev_str;

	t->prev = t->v;
	t->prev_n = t->n;
	t->prev_cap = t->cap;
	t->prev_sorted = false;
	t->prev_str = t->str;
	t->prev_str_len = t->str_len;
	t->prev_str_cap = t->str_cap;
	t->v = v;
	t->cap = cap;
	t->str = str;
	t->str_cap = str_cap;
	t->n = 0;
	t->str_len = 0;
	t->incomplete = false;
	t->error = 0;
}

static int
cmp_pid(const void *a, const void *b)
{
	const struct proc_info *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* The previous walk's entry for pid, or NULL. */
static const struct proc_info *
prev_find(struct proctree *t, pid_t pid)
{
	struct proc_info key = { .pid = pid };

	if (t->prev_n == 0) {
		return NULL;
	}
	if (!t->prev_sorted) {
		qsort(t->prev, t->prev_n, sizeof(*t->prev), cmp_pid);
		t->prev_sorted = true;
	}
	return bsearch(&key, t->prev, t->prev_n, sizeof(*t->prev), cmp_pid);
}

void
proctree_spare(bool keep)
{
	for (int i = 0; i < 2; i++) {
		if (keep && spare_fd[i] < 0) {
			spare_fd[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		} else if (!keep) {
			sys_close(&spare_fd[i]);
		}
	}
}

/* Exited: the only failures that say so. */
static bool
is_gone(int err)
{
	return err == ENOENT || err == ESRCH;
}

/*
 * open(2), and once more after closing the spare descriptor when the table is full.  The
 * spare is taken back afterwards (by the caller's proctree_spare(true), at the next walk).
 */
static int
open_retry(const char *path, int flags)
{
	int fd = open(path, flags);

	for (int i = 0; i < 2 && fd == -1 && (errno == EMFILE || errno == ENFILE); i++) {
		if (spare_fd[i] >= 0) {
			sys_close(&spare_fd[i]);
			fd = open(path, flags);
		}
	}
	return fd;
}

static DIR *
opendir_retry(const char *path)
{
	int fd = open_retry(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd == -1) {
		return NULL;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		int err = errno;

		(void)close(fd);
		errno = err;
	}
	return d;
}

/* Read a small file whole into buf (NUL-terminated).  Bytes read, or -1 (errno). */
static ssize_t
read_file(const char *path, char *buf, size_t len)
{
	return sys_read_small_fd(open_retry(path, O_RDONLY | O_CLOEXEC), buf, len);
}

#define PF_EXITING 0x00000004u /* the kernel's task flag: in do_exit() */

/* State (field 3) and flags (field 9) of a stat file.  0, or -1 (errno). */
static int
read_state(const char *path, char *state, unsigned int *flags)
{
	char buf[1024];

	if (read_file(path, buf, sizeof(buf)) <= 0) {
		return -1;
	}
	char *p = strrchr(buf, ')');

	/* After the command name in parentheses, which may hold spaces and parentheses. */
	if (p == NULL || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", state, flags) != 2) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* A thread of pid's group other than pid that is not exiting (its state), or 0. */
static pid_t
live_thread(const char *proc_root, pid_t pid, char *state)
{
	char path[PATH_MAX];
	struct dirent *de;
	pid_t found = 0;
	DIR *d;

	(void)snprintf(path, sizeof(path), "%s/%d/task", proc_root, (int)pid);
	if ((d = opendir_retry(path)) == NULL) {
		return 0;
	}
	while (found == 0 && (de = readdir(d)) != NULL) {
		char *end, st;
		long tid = strtol(de->d_name, &end, 10);
		unsigned int flags;

		if (*end != '\0' || tid <= 0 || tid > INT_MAX || (pid_t)tid == pid) {
			continue;
		}
		(void)snprintf(path, sizeof(path), "%s/%d/task/%ld/stat", proc_root, (int)pid, tid);
		if (read_state(path, &st, &flags) == 0 && st != 'Z' && st != 'X' &&
		    (flags & PF_EXITING) == 0) {
			found = (pid_t)tid;
			*state = st;
		}
	}
	closedir(d);
	return found;
}

pid_t
proctree_live_thread(const char *proc_root, pid_t pid, char *state)
{
	char path[PATH_MAX], st;
	unsigned int flags;

	(void)snprintf(path, sizeof(path), "%s/%d/stat", proc_root, (int)pid);
	if (read_state(path, &st, &flags) == -1 || st == 'X' ||
	    (st != 'Z' && (flags & PF_EXITING) == 0)) {
		return 0;
	}
	return live_thread(proc_root, pid, state);
}

/*
 * Parse /proc/PID/stat: state, ppid, pgid and start time.  0, or -1 with errno: ENOENT
 * or ESRCH when the process is gone, EINVAL for a file that makes no sense, or the error
 * of the read.
 */
static int
read_stat(const char *proc_root, pid_t pid, struct proc_info *pi)
{
	char path[PATH_MAX], buf[1024];
	unsigned long long start = 0;
	int ppid, pgid, n = 0;
	char state;
	ssize_t got;

	(void)snprintf(path, sizeof(path), "%s/%d/stat", proc_root, (int)pid);
	got = read_file(path, buf, sizeof(buf));
	if (got == -1) {
		return -1;
	}
	/* The command name may hold spaces and parentheses: parse after the last ')'. */
	char *p = strrchr(buf, ')');
	char *open_paren = strchr(buf, '(');

	if (got == 0 || p == NULL ||
	    sscanf(p + 1,
		   " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d "
		   "%*d %*d %*d %*d %*d %llu%n",
		   &state, &ppid, &pgid, &start, &n) < 4) {
		errno = EINVAL;
		return -1;
	}
	/* A main thread that exited while others run on: the process runs, as they do. */
	if (state == 'Z') {
		(void)live_thread(proc_root, pid, &state);
	}
	pi->pid = pid;
	pi->state = state;
	pi->ppid = ppid;
	pi->pgid = pgid;
	pi->start = start;
	pi->unknown = false;
	pi->comm[0] = '\0';
	if (open_paren != NULL && open_paren < p) {
		size_t clen = SYS_MIN((size_t)(p - open_paren - 1), sizeof(pi->comm) - 1);

		memcpy(pi->comm, open_paren + 1, clen);
		pi->comm[clen] = '\0';
	}
	return 0;
}

int
proctree_start_time(const char *proc_root, pid_t pid, unsigned long long *start)
{
	struct proc_info pi;

	if (read_stat(proc_root, pid, &pi) == -1) {
		return -1;
	}
	*start = pi.start;
	return 0;
}

bool
proctree_exiting(const char *proc_root, pid_t pid)
{
	char path[PATH_MAX], state;
	unsigned int flags = 0;

	(void)snprintf(path, sizeof(path), "%s/%d/stat", proc_root, (int)pid);
	if (read_state(path, &state, &flags) == -1) {
		return false;
	}
	/* Not one whose main thread alone has exited: its other threads run on. */
	return state == 'X' || ((state == 'Z' || (flags & PF_EXITING) != 0) &&
				live_thread(proc_root, pid, &state) == 0);
}

int
proctree_environ_each(int fd, bool (*fn)(const char *e, size_t len, void *ctx), void *ctx)
{
	char buf[8192];
	size_t keep = 0;
	/* An entry cut by the buffer is carried over; one longer than it is skipped. */
	bool skip = false;

	for (;;) {
		ssize_t n = sys_read(fd, buf + keep, sizeof(buf) - keep);

		if (n == -1) {
			sys_close(&fd);
			return -1;
		}
		if (n == 0) {
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

			if (fn(buf + at, elen, ctx)) {
				sys_close(&fd);
				return 0;
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
	return 0;
}

/* What a walk takes from /proc/PID/environ: the first of each of these entries. */
enum { GOT_COOKIE = 1, GOT_OWNER = 2, GOT_OUTER = 4 };

struct env_ids {
	char cookie[PROCTREE_COOKIE_MAX + 1];
	char owner[PROCTREE_OWNER_MAX + 1];
	char outer[PROCTREE_OUTER_MAX + 1];
	unsigned got;		/* GOT_*: which were seen (kept, or too long to be) */
	const char *self_owner; /* stop at cookie and owner when the owner is this */
	bool any;		/* an entry was read: the environment is not empty */
};

static bool
env_take(const char *e, size_t len, void *ctx)
{
	static const struct {
		const char *key;
		size_t key_len, off, max;
		unsigned bit;
	} keys[] = {
		{ PROCTREE_COOKIE_ENV "=", sizeof(PROCTREE_COOKIE_ENV),
		  offsetof(struct env_ids, cookie), PROCTREE_COOKIE_MAX, GOT_COOKIE },
		{ PROCTREE_OWNER_ENV "=", sizeof(PROCTREE_OWNER_ENV),
		  offsetof(struct env_ids, owner), PROCTREE_OWNER_MAX, GOT_OWNER },
		{ PROCTREE_OUTER_ENV "=", sizeof(PROCTREE_OUTER_ENV),
		  offsetof(struct env_ids, outer), PROCTREE_OUTER_MAX, GOT_OUTER },
	};
	struct env_ids *w = ctx;

	w->any = true;
	for (unsigned k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		if ((w->got & keys[k].bit) != 0 || len < keys[k].key_len ||
		    memcmp(e, keys[k].key, keys[k].key_len) != 0) {
			continue;
		}
		w->got |= keys[k].bit;
		/* A value longer than mcpmux ever writes is none of mcpmux's. */
		if (len - keys[k].key_len <= keys[k].max) {
			char *out = (char *)w + keys[k].off;

			memcpy(out, e + keys[k].key_len, len - keys[k].key_len);
			out[len - keys[k].key_len] = '\0';
		}
		break;
	}
	if (w->got == (GOT_COOKIE | GOT_OWNER | GOT_OUTER)) {
		return true;
	}
	/* A process this mcpmux started: its MCPMUX_OUTER cannot name one of our sessions. */
	return (w->got & (GOT_COOKIE | GOT_OWNER)) == (GOT_COOKIE | GOT_OWNER) &&
	       w->self_owner != NULL && w->cookie[0] != '\0' &&
	       strcmp(w->owner, w->self_owner) == 0;
}

static int
read_env(const char *proc_root, pid_t pid, struct env_ids *w, const char *self_owner)
{
	char path[PATH_MAX], state;
	pid_t tid;
	int fd;

	w->cookie[0] = w->owner[0] = w->outer[0] = '\0';
	w->got = 0;
	w->any = false;
	w->self_owner = self_owner;
	(void)snprintf(path, sizeof(path), "%s/%d/environ", proc_root, (int)pid);
	fd = open_retry(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1 && !is_gone(errno)) {
		return -1;
	}
	if (fd != -1 && proctree_environ_each(fd, env_take, w) == -1) {
		w->cookie[0] = w->owner[0] = w->outer[0] = '\0';
		if (!is_gone(errno)) {
			return -1;
		}
		fd = -1;
	}
	if ((fd == -1 || !w->any) && (tid = proctree_live_thread(proc_root, pid, &state)) > 0) {
		/* Its main thread has exited (its memory with it): another thread's environ. */
		(void)snprintf(path, sizeof(path), "%s/%d/task/%d/environ", proc_root, (int)pid,
			       (int)tid);
		fd = open_retry(path, O_RDONLY | O_CLOEXEC);
		if (fd == -1) {
			return is_gone(errno) ? 0 : -1;
		}
		if (proctree_environ_each(fd, env_take, w) == -1) {
			w->cookie[0] = w->owner[0] = w->outer[0] = '\0';
			return is_gone(errno) ? 0 : -1;
		}
	}
	return 0;
}

int
proctree_count_cookie(const char *proc_root, const char *cookie)
{
	DIR *d = opendir(proc_root);
	struct dirent *de;
	int n = 0;

	if (d == NULL) {
		return -1;
	}
	errno = 0;
	while (cookie[0] != '\0' && (de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		struct env_ids w;

		/* A process whose environment cannot be read (another user's) is left out. */
		if (de->d_name[0] >= '1' && de->d_name[0] <= '9' && *end == '\0' &&
		    pid <= INT_MAX && read_env(proc_root, (pid_t)pid, &w, NULL) == 0 &&
		    strcmp(w.cookie, cookie) == 0) {
			n++;
		}
		errno = 0;
	}
	int err = errno;

	(void)closedir(d);
	errno = err;
	return err != 0 ? -1 : n;
}

/* Keep an MCPMUX_OUTER value with the snapshot: 1 + its offset, or 0 (ENOMEM). */
static size_t
str_keep(struct proctree *t, const char *s)
{
	size_t len = strlen(s) + 1;

	if (t->str_cap - t->str_len < len) {
		size_t cap = t->str_cap ? t->str_cap : 256;

		while (cap - t->str_len < len) {
			cap *= 2;
		}
		char *ns = realloc(t->str, cap);

		if (ns == NULL) {
			return 0;
		}
		t->str = ns;
		t->str_cap = cap;
	}
	memcpy(t->str + t->str_len, s, len);
	t->str_len += len;
	return t->str_len - len + 1;
}

static void mark_incomplete(struct proctree *t, int err);

/*
 * Has pid no memory of its own to read now?  Its cmdline reads empty, or cannot be opened
 * (ESRCH): in exit, once it has let its memory go, or in the middle of an execve() (the
 * new image's memory not yet set up; its exe link may already name it).  Either way the
 * empty environment says nothing of its ids.
 */
static bool
in_exit(const char *proc_root, pid_t pid)
{
	char path[PATH_MAX], buf[8];

	(void)snprintf(path, sizeof(path), "%s/%d/cmdline", proc_root, (int)pid);
	return read_file(path, buf, sizeof(buf)) <= 0;
}

/*
 * Are the ids of a walk before the best word on pid, whose environment was read into w
 * (rc: read_env()'s)?  When it cannot be read, or when the process is in exit: it reads
 * as having no environment from the moment it has let its memory go, while it still holds
 * its files.  Not for a live process whose environment names none of them: one that
 * re-executed itself without them is found by them no more.
 */
static bool
ids_carried(const char *proc_root, pid_t pid, int rc, const struct env_ids *w)
{
	return rc == -1 || (!w->any && in_exit(proc_root, pid));
}

/*
 * The cookie, owner and outer sessions the previous walk saw on the process pi is (same
 * pid, same start time), for one whose ids_carried().  True if there were some.
 */
static bool
carry_ids(struct proctree *t, struct proc_info *pi)
{
	const struct proc_info *old = prev_find(t, pi->pid);

	if (old == NULL || old->unknown || pi->unknown || old->start != pi->start ||
	    (old->cookie[0] == '\0' && old->owner[0] == '\0' && old->outer == 0)) {
		return false;
	}
	memcpy(pi->cookie, old->cookie, sizeof(pi->cookie));
	memcpy(pi->owner, old->owner, sizeof(pi->owner));
	pi->cookie_unknown = false;
	if (old->outer != 0 && (pi->outer = str_keep(t, t->prev_str + old->outer - 1)) == 0) {
		pi->cookie_unknown = true;
		mark_incomplete(t, ENOMEM);
	}
	return true;
}

/* pi's cookie, owner and outer sessions, from its environment. */
static void
read_ids(struct proctree *t, const char *proc_root, struct proc_info *pi)
{
	struct env_ids w;
	int rc = read_env(proc_root, pi->pid, &w, t->self_owner);

	if (prev_find(t, pi->pid) != NULL && ids_carried(proc_root, pi->pid, rc, &w) &&
	    carry_ids(t, pi)) {
		return;
	}
	if (rc == -1) {
		pi->cookie_unknown = true;
		return;
	}
	memcpy(pi->cookie, w.cookie, sizeof(pi->cookie));
	memcpy(pi->owner, w.owner, sizeof(pi->owner));
	if (w.outer[0] != '\0' && (pi->outer = str_keep(t, w.outer)) == 0) {
		/* Which trees it belongs to cannot be told: the snapshot is not whole. */
		pi->cookie_unknown = true;
		mark_incomplete(t, ENOMEM);
	}
}

const char *
proctree_outer(const struct proctree *t, size_t i)
{
	return t->v[i].outer == 0 ? "" : t->str + t->v[i].outer - 1;
}

bool
proctree_outer_names(const char *outer, const char *session, const char *owner)
{
	size_t sl = session != NULL ? strlen(session) : 0, ol = owner != NULL ? strlen(owner) : 0;

	for (const char *p = outer; *p != '\0';) {
		const char *end = p + strcspn(p, " ");
		const char *comma = memchr(p, ',', (size_t)(end - p));

		if (comma != NULL &&
		    (session == NULL ||
		     ((size_t)(comma - p) == sl && memcmp(p, session, sl) == 0)) &&
		    (owner == NULL ||
		     ((size_t)(end - comma - 1) == ol && memcmp(comma + 1, owner, ol) == 0))) {
			return true;
		}
		p = *end == ' ' ? end + 1 : end;
	}
	return false;
}

static void
mark_incomplete(struct proctree *t, int err)
{
	if (!t->incomplete) {
		t->incomplete = true;
		t->error = err;
	}
}

static struct proc_info *
tree_slot(struct proctree *t)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct proc_info *nv = realloc(t->v, cap * sizeof(*nv));

		if (nv == NULL) {
			return NULL;
		}
		t->v = nv;
		t->cap = cap;
	}
	return &t->v[t->n];
}

/* Add pid, a child of entry `parent` (SIZE_MAX: of the root).  0, or -1 (ENOMEM). */
static int
tree_push(struct proctree *t, const char *proc_root, pid_t pid, pid_t ppid, size_t parent)
{
	struct proc_info *pi = tree_slot(t);

	if (pi == NULL) {
		return -1;
	}
	memset(pi, 0, sizeof(*pi));
	if (read_stat(proc_root, pid, pi) == -1) {
		if (is_gone(errno)) {
			return 0; /* gone since its parent listed it */
		}
		/* There, but unreadable: kept, with what is known of it. */
		pi->pid = pid;
		pi->ppid = ppid;
		pi->state = '?';
		pi->unknown = true;
		pi->start = proctree_now_ticks(); /* seen by then: it started no later */
	}
	pi->parent = parent;
	read_ids(t, proc_root, pi);
	t->n++;
	return 0;
}

/*
 * Append the pids listed in one task's children file ("1 2 3 "), read in pieces: a
 * process may have more children than one buffer holds, and a pid cut by the buffer
 * is carried over to the next read.  -1 only for ENOMEM; a file that cannot be read
 * marks the snapshot incomplete (or, when the kernel has no such files, switches to
 * the whole-/proc walk).
 */
static int
scan_children_file(struct proctree *t, const char *proc_root, const char *path, pid_t ppid,
		   size_t self)
{
	char buf[4096];
	size_t keep = 0;
	int fd = open_retry(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd == -1) {
		int err = errno;
		char task[PATH_MAX];
		struct stat st;
		const char *slash = strrchr(path, '/');

		if (!is_gone(err)) {
			mark_incomplete(t, err);
		} else if (slash != NULL && (size_t)(slash - path) < sizeof(task)) {
			/* The task is there but has no children file: a kernel without them. */
			memcpy(task, path, (size_t)(slash - path));
			task[slash - path] = '\0';
			if (stat(task, &st) == 0) {
				t->walk_all = true;
			}
		}
		return 0;
	}
	for (;;) {
		ssize_t n = sys_read(fd, buf + keep, sizeof(buf) - 1 - keep);
		bool eof = n <= 0;
		size_t len = keep + (eof ? 0 : (size_t)n), at = 0;

		if (n == -1 && !is_gone(errno)) {
			mark_incomplete(t, errno);
		}
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
				rc = tree_push(t, proc_root, (pid_t)child, ppid, self);
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
	d = opendir_retry(path);
	if (d == NULL) {
		if (!is_gone(errno)) {
			mark_incomplete(t, errno);
		}
		return 0;
	}
	while (rc == 0 && !t->walk_all && (de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9') {
			continue;
		}
		(void)snprintf(path, sizeof(path), "%s/%d/task/%s/children", proc_root, (int)pid,
			       de->d_name);
		rc = scan_children_file(t, proc_root, path, pid, self);
	}
	closedir(d);
	return rc;
}

static int
cmp_ppid(const void *a, const void *b)
{
	const struct proc_info *x = a, *y = b;

	return (x->ppid > y->ppid) - (x->ppid < y->ppid);
}

/*
 * Without children files: read every /proc/PID/stat, then take the descendants of root,
 * breadth first, by their parent pids.
 */
static int
scan_all(struct proctree *t, const char *proc_root, pid_t root)
{
	struct proctree all;
	struct dirent *de;
	DIR *d = opendir_retry(proc_root);
	int rc = 0;

	if (d == NULL) {
		mark_incomplete(t, errno);
		return 0;
	}
	proctree_init(&all);
	while ((de = readdir(d)) != NULL) {
		/* (entries start with parent 0: "not taken" in the walk below) */
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end != '\0' || pid <= 0 || pid > INT_MAX) {
			continue;
		}
		struct proc_info *pi = tree_slot(&all);

		if (pi == NULL) {
			rc = -1;
			break;
		}
		memset(pi, 0, sizeof(*pi));
		if (read_stat(proc_root, (pid_t)pid, pi) == -1) {
			if (!is_gone(errno)) {
				/* Whose child it is cannot be told: it may be one of ours. */
				mark_incomplete(t, errno);
			}
			continue;
		}
		all.n++;
	}
	closedir(d);
	if (rc == 0 && all.n > 0) {
		qsort(all.v, all.n, sizeof(*all.v), cmp_ppid);
	}
	/* Breadth first from root: entry k's children are the run of all.v with ppid. */
	for (size_t k = SIZE_MAX; rc == 0; k = k == SIZE_MAX ? 0 : k + 1) {
		if (k != SIZE_MAX && k >= t->n) {
			break;
		}
		pid_t ppid = k == SIZE_MAX ? root : t->v[k].pid;
		size_t lo = 0, hi = all.n;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (all.v[mid].ppid < ppid) {
				lo = mid + 1;
			} else {
				hi = mid;
			}
		}
		for (size_t i = lo; i < all.n && all.v[i].ppid == ppid && rc == 0; i++) {
			struct proc_info *pi;

			if (all.v[i].parent != 0) {
				continue; /* taken already: a loop of reused pids */
			}
			all.v[i].parent = 1;
			if ((pi = tree_slot(t)) == NULL) {
				rc = -1;
				break;
			}
			*pi = all.v[i];
			pi->parent = k;
			read_ids(t, proc_root, pi);
			t->n++;
		}
	}
	proctree_release(&all);
	return rc;
}

int
proctree_scan(struct proctree *t, const char *proc_root, pid_t root)
{
	int rc;

	proctree_spare(true);
	walk_begin(t);
	if (!t->walk_all) {
		rc = scan_children(t, proc_root, root, SIZE_MAX);
		/* Breadth first: every entry's parent comes before it. */
		for (size_t i = 0; rc == 0 && i < t->n && !t->walk_all; i++) {
			if (t->n > PROCTREE_MAX) {
				/* Only pids reused while the walk ran could make it this long. */
				mark_incomplete(t, EAGAIN);
				break;
			}
			rc = scan_children(t, proc_root, t->v[i].pid, i);
		}
		if (rc == 0 && t->walk_all) {
			/* The kernel has no children files: the long way, from now on. */
			t->n = 0;
			t->incomplete = false;
		}
	}
	if (t->walk_all) {
		rc = scan_all(t, proc_root, root);
	}
	proctree_spare(true);
	if (rc == -1) {
		errno = ENOMEM;
		mark_incomplete(t, ENOMEM);
		return -1;
	}
	return 0;
}

/*
 * Is pid in the middle of an execve()?  From the switch to its new memory until the
 * kernel has laid out its arguments, its environ and cmdline read empty, while its exe
 * link is there already (a kernel thread or a zombie has none).
 */
static bool
in_exec(const char *proc_root, pid_t pid)
{
	char path[PATH_MAX], buf[8];

	(void)snprintf(path, sizeof(path), "%s/%d/cmdline", proc_root, (int)pid);
	if (read_file(path, buf, sizeof(buf)) != 0) {
		return false;
	}
	(void)snprintf(path, sizeof(path), "%s/%d/exe", proc_root, (int)pid);
	return readlink(path, buf, sizeof(buf)) != -1;
}

#define EXEC_WAIT_TRIES 100	 /* how often an environ read in an exec is tried again */
#define EXEC_WAIT_NS	1000000L /* and how long apart */

int
proctree_scan_owned(struct proctree *t, const char *proc_root, const char *owner)
{
	struct dirent *de;
	DIR *d;
	struct env_ids w;

	walk_begin(t);
	if ((d = opendir_retry(proc_root)) == NULL) {
		mark_incomplete(t, errno);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end != '\0' || pid <= 0 || pid > INT_MAX || (pid_t)pid == getpid()) {
			continue;
		}
		int rc = read_env(proc_root, (pid_t)pid, &w, owner);

		/*
		 * An environment read in the middle of an execve() is empty: read again once
		 * the exec is through, or a carrier that execs just then would be missed.
		 */
		for (int i = 0;
		     rc == 0 && !w.any && i < EXEC_WAIT_TRIES && in_exec(proc_root, (pid_t)pid);
		     i++) {
			struct timespec ts = { .tv_sec = 0, .tv_nsec = EXEC_WAIT_NS };

			(void)nanosleep(&ts, NULL);
			rc = read_env(proc_root, (pid_t)pid, &w, owner);
		}
		int err = errno;
		/* One the previous scan found, whose environment cannot tell now (in exit). */
		bool carry = prev_find(t, (pid_t)pid) != NULL &&
			     ids_carried(proc_root, (pid_t)pid, rc, &w);

		if (!carry && rc == -1) {
			mark_incomplete(t, err);
			continue;
		}
		if (!carry && strcmp(w.owner, owner) != 0 &&
		    !proctree_outer_names(w.outer, NULL, owner)) {
			continue;
		}
		struct proc_info *pi = tree_slot(t);

		if (pi == NULL) {
			closedir(d);
			errno = ENOMEM;
			return -1;
		}
		memset(pi, 0, sizeof(*pi));
		if (read_stat(proc_root, (pid_t)pid, pi) == -1) {
			if (is_gone(errno)) {
				continue;
			}
			pi->pid = (pid_t)pid;
			pi->state = '?';
			pi->unknown = true;
			pi->start = proctree_now_ticks(); /* seen by then */
		}
		pi->parent = SIZE_MAX;
		if (carry) {
			if (!carry_ids(t, pi)) {
				/* Another process at its pid now, or not known to be the same. */
				if (rc == -1) {
					mark_incomplete(t, err);
				}
				continue;
			}
		} else {
			memcpy(pi->cookie, w.cookie, sizeof(pi->cookie));
			memcpy(pi->owner, w.owner, sizeof(pi->owner));
		}
		t->n++;
	}
	closedir(d);
	return 0;
}

/*
 * Does pi carry m's cookie, as a process this mcpmux started (or of an mcpmux that does
 * not say), or name m's session among the sessions it is nested in?
 */
static bool
has_cookie(const struct proctree *t, const struct proc_info *pi, const struct proctree_match *m)
{
	if (m->cookie == NULL || m->cookie[0] == '\0') {
		return false;
	}
	if (strcmp(pi->cookie, m->cookie) == 0 &&
	    (m->owner == NULL || pi->owner[0] == '\0' || strcmp(pi->owner, m->owner) == 0)) {
		return true;
	}
	return pi->outer != 0 && proctree_outer_names(t->str + pi->outer - 1, m->cookie, m->owner);
}

static bool
proc_matches(const struct proctree *t, const struct proc_info *pi, const struct proctree_match *m)
{
	bool ours = has_cookie(t, pi, m);
	bool foreign = pi->cookie[0] != '\0' && !ours;

	return (m->pid > 0 && pi->pid == m->pid) || ours ||
	       (!pi->unknown && m->pgid > 0 && pi->pgid == m->pgid && !foreign);
}

/* Membership whatever the state: zombies and unknown entries included. */
static bool
member_any(const struct proctree *t, size_t i, const struct proctree_match *m)
{
	bool foreign = false;
	size_t top = i;

	for (size_t k = i; k != SIZE_MAX; k = t->v[k].parent) {
		if (proc_matches(t, &t->v[k], m)) {
			return true;
		}
		foreign = foreign || t->v[k].cookie[0] != '\0';
		top = k;
	}
	/* An orphan: no cookie on its line, and its top is a child of mcpmux but no backend. */
	return m->is_backend != NULL && !foreign && !m->is_backend(t->v[top].pid);
}

static bool
is_dead(const struct proc_info *pi)
{
	return pi->state == 'Z' || pi->state == 'X';
}

bool
proctree_is_member(const struct proctree *t, size_t i, const struct proctree_match *m)
{
	return !is_dead(&t->v[i]) && member_any(t, i, m);
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

void
proctree_check_group(const struct proctree *t, struct proctree_match *m)
{
	/* While the backend is unreaped, the process at its pid is the backend itself. */
	for (size_t i = 0; m->pid == 0 && m->pgid > 0 && i < t->n; i++) {
		if (t->v[i].pid == m->pgid) {
			m->pgid = 0;
		}
	}
}

bool
proctree_unattributed(const struct proctree *t, size_t i, const struct proctree_match *m)
{
	const struct proc_info *pi = &t->v[i];

	/*
	 * A child of the root that no rule can attribute: it may be ours, unless it started
	 * before our backend did (then it descends from none of it).
	 */
	return !member_any(t, i, m) && pi->parent == SIZE_MAX && m->is_backend == NULL &&
	       (pi->unknown || (pi->cookie_unknown && pi->start >= m->born)) &&
	       !(m->pid > 0 && pi->pid == m->pid);
}

size_t
proctree_left(const struct proctree *t, const struct proctree_match *m)
{
	size_t n = t->incomplete;

	for (size_t i = 0; i < t->n; i++) {
		n += member_any(t, i, m) || proctree_unattributed(t, i, m);
	}
	return n;
}

unsigned long long
proctree_now_ticks(void)
{
	static long hz;
	struct timespec ts;

	if (hz == 0) {
		hz = sysconf(_SC_CLK_TCK);
	}
	if (hz <= 0 || hz > 1000000000 || clock_gettime(CLOCK_BOOTTIME, &ts) == -1) {
		return 0;
	}
	return (unsigned long long)ts.tv_sec * (unsigned long long)hz +
	       (unsigned long long)ts.tv_nsec / (1000000000ull / (unsigned long long)hz);
}

/*
 * Is the process now at pi's pid (its stat: now) the one the snapshot saw?  Same start
 * time; for an entry whose stat could not be read then, a start no later than when it
 * was seen (pi->start then holds that time; 0: unknown, taken as the same).
 */
static bool
same_process(const struct proc_info *pi, const struct proc_info *now)
{
	if (pi->unknown) {
		return pi->start == 0 || now->start <= pi->start;
	}
	return now->start == pi->start;
}

enum proctree_sig
proctree_signal_one(const struct proctree *t, size_t i, const char *proc_root, int sig)
{
	return proctree_signal_pidfd(t, i, proc_root, sig, NULL);
}

enum proctree_sig
proctree_signal_pidfd(const struct proctree *t, size_t i, const char *proc_root, int sig,
		      int *pidfd)
{
	const struct proc_info *pi = &t->v[i];
	struct proc_info now;
	int pfd = (int)syscall(SYS_pidfd_open, pi->pid, 0);

	if (pidfd != NULL) {
		*pidfd = -1;
	}
	if (pfd == -1) {
		if (errno == ESRCH) {
			return PROCTREE_GONE;
		}
		/* No pidfd (ENOSYS, EMFILE, ...): a plain kill, guarded by the start time. */
		if (read_stat(proc_root, pi->pid, &now) == -1) {
			return is_gone(errno) ? PROCTREE_GONE : PROCTREE_FAILED;
		}
		if (!same_process(pi, &now)) {
			return PROCTREE_GONE;
		}
		if (kill(pi->pid, sig) == 0) {
			return PROCTREE_SENT;
		}
		return errno == ESRCH ? PROCTREE_GONE : PROCTREE_FAILED;
	}
	/* The pidfd pins the process: if its start time is the snapshot's, it is that one. */
	if (read_stat(proc_root, pi->pid, &now) == -1) {
		int err = errno;

		sys_close(&pfd);
		return is_gone(err) ? PROCTREE_GONE : PROCTREE_FAILED;
	}
	if (!same_process(pi, &now)) {
		sys_close(&pfd);
		return PROCTREE_GONE;
	}
	enum proctree_sig r = PROCTREE_SENT;

	if (syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0) == -1) {
		r = errno == ESRCH ? PROCTREE_GONE : PROCTREE_FAILED;
	}
	if (pidfd != NULL && r != PROCTREE_GONE) {
		*pidfd = pfd;
		pfd = -1;
	}
	sys_close(&pfd);
	return r;
}

/* Is entry i, or an ancestor of it in the snapshot, one that m spares? */
static bool
is_spared(const struct proctree *t, size_t i, const struct proctree_match *m)
{
	if (m->spare == NULL) {
		return false;
	}
	for (size_t k = i; k != SIZE_MAX; k = t->v[k].parent) {
		if (m->spare(&t->v[k])) {
			return true;
		}
	}
	return false;
}

size_t
proctree_signal(const struct proctree *t, const struct proctree_match *m, const char *proc_root,
		int sig, size_t *n_failed)
{
	size_t n = 0, failed = 0;

	for (size_t i = 0; i < t->n; i++) {
		if (!proctree_is_member(t, i, m) || is_spared(t, i, m)) {
			continue;
		}
		switch (proctree_signal_one(t, i, proc_root, sig)) {
		case PROCTREE_SENT:
			n++;
			if (sig == SIGTERM) {
				(void)proctree_signal_one(t, i, proc_root, SIGCONT);
			}
			break;
		case PROCTREE_FAILED:
			failed++;
			break;
		case PROCTREE_GONE:
			break;
		}
	}
	if (n_failed != NULL) {
		*n_failed = failed;
	}
	return n;
}
