/*
 * procscan: mcpmux instances, their sessions and orphans from a whole-/proc scan, and
 * the verified signals and pidfd waits of sweep.  It does not decide what to end (the
 * caller selects groups) and never signals a process it was not handed.
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
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/nsfs.h>

#include "mcpmux/procscan.h"
#include "mcpmux/sys.h"

#define MAX_DEPTH 4096 /* ancestor walks: longer is a cycle of reused pids */
#define MAX_WORDS 256  /* words of a command line looked at for the mode */

void
procscan_init(struct procscan *s)
{
	memset(s, 0, sizeof(*s));
}

static void
free_procs(struct procscan *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].argv);
	}
	s->n = 0;
}

void
procscan_release(struct procscan *s)
{
	free_procs(s);
	free(s->v);
	free(s->g);
	procscan_init(s);
}

/* ---- reading /proc ---- */

static bool
vanished(int err)
{
	return err == ENOENT || err == ESRCH;
}

/* /proc/PID/stat: comm, state, ppid, pgid, start time.  0, or -1 (errno; EINVAL). */
static int
read_stat(const char *root, pid_t pid, struct procscan_proc *p)
{
	char path[PATH_MAX], buf[1024];
	unsigned long long start = 0;
	int ppid = 0, pgid = 0;
	char state = '?';

	(void)snprintf(path, sizeof(path), "%s/%d/stat", root, (int)pid);
	if (sys_read_small(path, buf, sizeof(buf)) == -1) {
		return -1;
	}
	/* The command name may hold spaces and parentheses: parse after the last ')'. */
	char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');

	if (open_paren == NULL || close_paren == NULL || close_paren < open_paren ||
	    sscanf(close_paren + 1,
		   " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d "
		   "%llu",
		   &state, &ppid, &pgid, &start) != 4) {
		errno = EINVAL;
		return -1;
	}
	size_t clen = (size_t)(close_paren - open_paren - 1);

	clen = clen < sizeof(p->comm) - 1 ? clen : sizeof(p->comm) - 1;
	memcpy(p->comm, open_paren + 1, clen);
	p->comm[clen] = '\0';
	p->pid = pid;
	p->state = state;
	p->ppid = ppid;
	p->pgid = pgid;
	p->start = start;
	p->thread = 0;
	/* A main thread that exited while others run on: the process runs, as they do. */
	if (state == 'Z') {
		p->thread = proctree_live_thread(root, pid, &p->state);
	}
	return 0;
}

/* An NSpid line's fields ("\t4242\t1"): how many, and the last (its own pid). */
void
procscan_parse_nspid(const char *f, struct procscan_proc *p)
{
	unsigned n = 0;
	long last = 0;

	for (;;) {
		char *end;
		long v;

		while (*f == ' ' || *f == '\t') {
			f++;
		}
		if (*f < '0' || *f > '9') {
			break;
		}
		v = strtol(f, &end, 10);
		f = end;
		n++;
		last = v;
	}
	if (n > 0 && last > 0 && last <= INT_MAX) {
		p->ns_pid = (pid_t)last;
		p->ns_depth = n - 1;
	}
}

/*
 * /proc/PID/status: the real uid, VmRSS and NSpid, read line by line however long the
 * file is (thousands of supplementary groups come before NSpid).  0, or -1 (errno;
 * EINVAL).
 */
static int
read_status(const char *root, pid_t pid, struct procscan_proc *p)
{
	char path[PATH_MAX];
	unsigned long uid = 0;
	unsigned long long rss = 0;
	bool have_uid = false;
	char *line = NULL;
	size_t cap = 0;

	(void)snprintf(path, sizeof(path), "%s/%d/status", root, (int)pid);
	FILE *f = fopen(path, "re");

	if (f == NULL) {
		return -1;
	}
	/* "NSpid:\t4242\t1": its pid here, then in each pid namespace below, its own last. */
	p->ns_pid = p->pid;
	p->ns_depth = 0;
	errno = 0;
	while (getline(&line, &cap, f) != -1) {
		if (strncmp(line, "Uid:", 4) == 0) {
			have_uid = sscanf(line + 4, "%lu", &uid) == 1;
		} else if (strncmp(line, "VmRSS:", 6) == 0 && sscanf(line + 6, "%llu", &rss) != 1) {
			rss = 0;
		} else if (strncmp(line, "NSpid:", 6) == 0) {
			procscan_parse_nspid(line + 6, p);
		}
	}
	int err = ferror(f) ? (errno != 0 ? errno : EIO) : 0;

	free(line);
	(void)fclose(f);
	if (err != 0 || !have_uid) {
		errno = err != 0 ? err : EINVAL;
		return -1;
	}
	p->uid = (uid_t)uid;
	p->rss_kib = rss; /* kernel threads and zombies have none */
	return 0;
}

/*
 * /proc/PID/cmdline, its first PROCSCAN_ARGV_MAX bytes (argv_cut when there are more;
 * a line of PROCSCAN_ARGV_MAX bytes and its final NUL is whole), into a page: most are
 * short.  A line that fills it is read again from its start, whole, into a buffer of the
 * bound in one read (the kernel copies what is asked in one call, where a read of the
 * rest could come after the process exited or rewrote its arguments, and join two
 * lines).  The buffer then shrinks to the line.  0 (argv may stay NULL), or -1 (errno).
 */
static int
read_cmdline(const char *root, pid_t pid, struct procscan_proc *p)
{
	char path[PATH_MAX + 32];
	(void)snprintf(path, sizeof(path), "%s/%d/cmdline", root, (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 4096;
	const size_t most = (size_t)PROCSCAN_ARGV_MAX + 2; /* one byte past a whole line */
	char *buf;

	if (fd == -1) {
		return vanished(errno) ? -1 : 0;
	}
	buf = malloc(cap + 1);
	if (buf == NULL) {
		sys_close(&fd);
		return -1;
	}
	for (;;) {
		if (len == cap) {
			if (cap == most) {
				break;
			}
			char *nbuf = realloc(buf, most + 1);

			if (nbuf == NULL) {
				free(buf);
				sys_close(&fd);
				return -1;
			}
			buf = nbuf;
			cap = most;
			if (lseek(fd, 0, SEEK_SET) == 0) {
				len = 0; /* (else the rest, read on from where it is) */
			}
		}
		ssize_t n = sys_read(fd, buf + len, cap - len);

		if (n == -1) {
			int err = errno;

			free(buf);
			sys_close(&fd);
			return vanished(err) ? -1 : 0;
		}
		if (n == 0) {
			break;
		}
		len += (size_t)n;
	}
	sys_close(&fd);
	if (len == most) {
		len = PROCSCAN_ARGV_MAX;
		p->argv_cut = true;
	}
	if (len == 0) {
		free(buf);
		return 0;
	}
	if (buf[len - 1] != '\0') {
		buf[len++] = '\0'; /* cut, or a process that rewrote its arguments */
	}
	if (len < cap) {
		char *fit = realloc(buf, len); /* keep what it holds, not the page it grew by */

		buf = fit != NULL ? fit : buf;
	}
	p->argv = buf;
	p->argv_len = len;
	return 0;
}

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

static void
read_exe(const char *root, pid_t pid, struct procscan_proc *p)
{
	static const char deleted[] = " (deleted)";
	char path[PATH_MAX + 32], target[PATH_MAX];
	ssize_t n;

	p->exe[0] = '\0';
	(void)snprintf(path, sizeof(path), "%s/%d/exe", root, (int)pid);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0) {
		return; /* a kernel thread, another user's process: unknown */
	}
	target[n] = '\0';
	size_t len = (size_t)n, dl = sizeof(deleted) - 1;

	/* A binary replaced while it runs (a rebuild, an upgrade) reads "PATH (deleted)". */
	if (len > dl && strcmp(target + len - dl, deleted) == 0) {
		target[len - dl] = '\0';
	}
	/* Cut to fit, as the kernel's comm is: a name, not a path. */
	const char *base = base_name(target);
	size_t bl = strnlen(base, sizeof(p->exe) - 1);

	memcpy(p->exe, base, bl);
	p->exe[bl] = '\0';
}

/* What is taken from an environment: the first entry of each key, as getenv() does. */
struct env_read {
	struct procscan_proc *p;
	bool got_session, got_owner; /* seen (kept, or too long to be) */
};

/*
 * If the entry [e, e + len) is KEY=value and KEY was not seen before, mark it seen and
 * copy the value to out when it fits.  True when it is and does not fit.
 */
static bool
match_entry(const char *e, size_t len, const char *key, bool *got, char *out, size_t cap)
{
	size_t kl = strlen(key);

	if (!*got && len > kl && memcmp(e, key, kl) == 0 && e[kl] == '=') {
		*got = true;
		if (len - kl - 1 >= cap) {
			return true;
		}
		memcpy(out, e + kl + 1, len - kl - 1);
		out[len - kl - 1] = '\0';
	}
	return false;
}

static bool
environ_entry(const char *e, size_t len, void *ctx)
{
	struct env_read *r = ctx;

	match_entry(e, len, PROCTREE_COOKIE_ENV, &r->got_session, r->p->session,
		    sizeof(r->p->session));
	if (match_entry(e, len, PROCSCAN_OWNER_ENV, &r->got_owner, r->p->owner,
			sizeof(r->p->owner))) {
		r->p->owner_cut = true;
	}
	return r->got_session && r->got_owner; /* both may come, in any order */
}

/*
 * MCPMUX_SESSION and MCPMUX_OWNER from /proc/PID/environ.  0 (absent or unreadable:
 * ""), or -1 when the process vanished.
 */
static int
read_environ(const char *root, pid_t pid, struct procscan_proc *p)
{
	char path[PATH_MAX + 32];
	struct env_read r = { p, false, false };
	int fd, rc;

	p->session[0] = '\0';
	p->owner[0] = '\0';
	p->owner_cut = false;
	p->env_unread = false;
	(void)snprintf(path, sizeof(path), "%s/%d/environ", root, (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	rc = fd == -1 ? -1 : proctree_environ_each(fd, environ_entry, &r);
	p->has_owner = r.got_owner; /* what was read, if not all */
	if (rc == -1) {
		if (vanished(errno)) {
			return -1;
		}
		p->env_unread = true;
	}
	return 0;
}

static struct procscan_proc *
push_proc(struct procscan *s)
{
	if (s->n == s->cap) {
		size_t cap = s->cap != 0 ? s->cap * 2 : 256;
		struct procscan_proc *nv = realloc(s->v, cap * sizeof(*nv));

		if (nv == NULL) {
			return NULL;
		}
		s->v = nv;
		s->cap = cap;
	}
	struct procscan_proc *p = &s->v[s->n];

	memset(p, 0, sizeof(*p));
	p->parent = SIZE_MAX;
	p->group = SIZE_MAX;
	p->cmd_at = SIZE_MAX;
	return p;
}

/* A namespace link of pid ("pid", "time") into out; "" when unreadable. */
static void
ns_link(const char *root, pid_t pid, const char *ns, char *out, size_t len)
{
	char path[PATH_MAX];

	(void)snprintf(path, sizeof(path), "%s/%d/ns/%s", root, (int)pid, ns);
	ssize_t n = readlink(path, out, len - 1);

	out[n > 0 ? n : 0] = '\0';
}

/*
 * Read one process into a new entry.  0 (kept, or vanished and dropped), -1 (ENOMEM).
 * An error other than ENOENT/ESRCH on stat or status keeps the entry with read_errno.
 */
static int
read_proc(struct procscan *s, const char *root, pid_t pid, uid_t uid, bool all)
{
	struct procscan_proc *p = push_proc(s);

	if (p == NULL) {
		return -1;
	}
	p->pid = pid;
	if (read_stat(root, pid, p) == -1 || read_status(root, pid, p) == -1) {
		if (vanished(errno)) {
			return 0;
		}
		p->read_errno = errno;
		p->state = '?';
		s->n++;
		return 0;
	}
	if ((all || p->uid == uid) && p->state != 'Z' && p->state != 'X') {
		/* Of one whose main thread has exited, its live thread's (its own are empty). */
		char task_root[PATH_MAX];
		const char *at = root;
		pid_t id = pid;

		if (p->thread > 0) {
			(void)snprintf(task_root, sizeof(task_root), "%s/%d/task", root, (int)pid);
			at = task_root;
			id = p->thread;
		}
		if (read_cmdline(at, id, p) == -1) {
			int err = errno;

			free(p->argv);
			p->argv = NULL;
			return vanished(err) ? 0 : -1;
		}
		read_exe(at, id, p);
		if (read_environ(at, id, p) == -1) {
			free(p->argv);
			p->argv = NULL;
			return 0;
		}
		p->is_read = true;
		if (p->session[0] != '\0') {
			/* A carrier: its clock, and, in a pid namespace below, which one. */
			char tns[sizeof(s->timens)];

			if (p->ns_depth > 0) { /* its pid there may be the same number */
				ns_link(root, pid, "pid", p->pidns, sizeof(p->pidns));
			}
			ns_link(root, pid, "time", tns, sizeof(tns));
			p->other_time = tns[0] != '\0' && s->timens[0] != '\0' &&
					strcmp(tns, s->timens) != 0;
		}
	}
	s->n++;
	return 0;
}

static int
by_pid(const void *a, const void *b)
{
	const struct procscan_proc *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

size_t
procscan_find(const struct procscan *s, pid_t pid)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid].pid == pid) {
			return mid;
		}
		if (s->v[mid].pid < pid) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return SIZE_MAX;
}

static bool
is_live(const struct procscan_proc *p)
{
	return p->read_errno == 0 && p->state != 'Z' && p->state != 'X';
}

size_t
procscan_words(const struct procscan_proc *p, const char **words, size_t cap)
{
	size_t n = 0, at = 0;

	if (p->argv == NULL) {
		return 0;
	}
	while (at < p->argv_len) {
		const char *w = p->argv + at;

		if (n < cap) {
			words[n] = w;
		}
		n++;
		at += strnlen(w, p->argv_len - at) + 1;
	}
	return n;
}

/* ---- sorting out ---- */

static const char *const tool_words[] = {
	"connect", "ctl",    "log",	  "config", "demo", "ps",
	"sweep",   "--help", "--version", "-h",	    "help", NULL,
};

/* Options of wrap and serve that take a value as the next word. */
static const char *const value_options[] = {
	"--eof-grace",
	"--term-grace",
	"--end-method",
	"--max-message",
	"--max-queue",
	"--max-sessions",
	"--idle-timeout",
	"--idle-suspend",
	"--listen",
	"--log",
	"--log-bodies",
	"--max-servers",
	"--pool",
	"--stall-timeout",
	"--kill-deadline",
	"--http",
	"--auth-token-file",
	"--allow-origin",
	NULL,
};

static bool
word_in(const char *w, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strcmp(w, list[i]) == 0) {
			return true;
		}
	}
	return false;
}

static bool
looks_like_mcpmux(const struct procscan_proc *p)
{
	/* An instance's keeper (keeper.h) is a fork of mcpmux, not an instance. */
	if (strcmp(p->comm, "mcpmux-keeper") == 0) {
		return false;
	}
	return strcmp(p->exe, "mcpmux") == 0 || strcmp(p->comm, "mcpmux") == 0 ||
	       (p->argv != NULL && strcmp(base_name(p->argv), "mcpmux") == 0);
}

/* Wrap, serve or neither, from the command line; sets cmd_at and listen. */
static enum procscan_mode
parse_mode(struct procscan_proc *p)
{
	const char *w[MAX_WORDS];
	size_t nw = SYS_MIN(procscan_words(p, w, MAX_WORDS), (size_t)MAX_WORDS), k = 0, j;
	enum procscan_mode mode;

	/* mcpmux run through another program (valgrind): its own words start at its name. */
	while (k < nw && strcmp(base_name(w[k]), "mcpmux") != 0) {
		k++;
	}
	if (k == nw) {
		/* Renamed, or started as another name (exec -a): its exe or comm says mcpmux. */
		if (strcmp(p->exe, "mcpmux") != 0 && strcmp(p->comm, "mcpmux") != 0) {
			return PROCSCAN_NONE;
		}
		k = 0;
	}
	if (k + 1 >= nw || word_in(w[k + 1], tool_words)) {
		return PROCSCAN_NONE;
	}
	mode = strcmp(w[k + 1], "serve") == 0 ? PROCSCAN_SERVE : PROCSCAN_WRAP;
	for (j = mode == PROCSCAN_SERVE ? k + 2 : k + 1; j < nw; j++) {
		if (strcmp(w[j], "--") == 0) {
			j++;
			break;
		}
		if (w[j][0] != '-' || w[j][1] == '\0') {
			break;
		}
		if (strncmp(w[j], "--listen=", 9) == 0) {
			p->listen = w[j] + 9;
		} else if (strchr(w[j], '=') == NULL && word_in(w[j], value_options)) {
			if (strcmp(w[j], "--listen") == 0 && j + 1 < nw) {
				p->listen = w[j + 1];
			}
			j++;
		}
	}
	p->cmd_at = j < nw ? j : SIZE_MAX;
	return mode;
}

int
procscan_parse_owner(const char *text, pid_t *pid, unsigned long long *start)
{
	char *end;
	unsigned long long v, st;

	if (text[0] < '0' || text[0] > '9') {
		return -1;
	}
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != ':' || v == 0 || v > INT_MAX || end[1] < '0' || end[1] > '9') {
		return -1;
	}
	st = strtoull(end + 1, &end, 10);
	/* A start time of 0 names no process (an mcpmux that could not read its own). */
	if (errno != 0 || *end != '\0' || st == 0) {
		return -1;
	}
	*pid = (pid_t)v;
	*start = st;
	return 0;
}

/*
 * The boottime offset of pid's time namespace, in clock ticks: what it adds to the start
 * times it reads.  0, 1 when it is not a whole number of ticks, or -1 when it cannot be
 * read (timens_offsets shows the namespace of pid's children, which must be its own).
 */
static int
boot_offset(const struct procscan *s, const char *root, pid_t pid, long long *ticks)
{
	char own[sizeof(s->timens)], children[sizeof(s->timens)], path[PATH_MAX], buf[256];
	long long sec, nsec;

	ns_link(root, pid, "time", own, sizeof(own));
	ns_link(root, pid, "time_for_children", children, sizeof(children));
	if (own[0] == '\0' || strcmp(own, children) != 0) {
		return -1;
	}
	(void)snprintf(path, sizeof(path), "%s/%d/timens_offsets", root, (int)pid);
	if (sys_read_small(path, buf, sizeof(buf)) == -1) {
		return -1;
	}
	const char *bt = strstr(buf, "boottime");

	if (bt == NULL || sscanf(bt + 8, "%lld %lld", &sec, &nsec) != 2) {
		return -1;
	}
	*ticks = sec * s->hz + nsec * s->hz / 1000000000LL;
	/* Not a whole number of ticks: the kernel rounds the sum, this the parts. */
	return nsec * s->hz % 1000000000LL != 0;
}

/*
 * Is `start`, a start time as an owner read its own (in its time namespace), p's?  1,
 * 0, or -1 when that cannot be told: p's clock is not this scan's, and its offset
 * cannot be read.
 */
static int
start_matches(const struct procscan *s, const char *root, const struct procscan_proc *p,
	      unsigned long long start)
{
	char tns[sizeof(s->timens)];
	long long off;

	if (p->start == start) {
		return 1;
	}
	if (s->timens[0] == '\0') {
		return 0; /* no time namespaces here: one clock for all */
	}
	ns_link(root, p->pid, "time", tns, sizeof(tns));
	if (strcmp(tns, s->timens) == 0) {
		return 0; /* the same clock */
	}
	int part = boot_offset(s, root, p->pid, &off);

	if (!s->boot_off_known || part == -1) {
		return -1;
	}
	long long d = (long long)p->start - s->boot_off + off - (long long)start;

	/* Offsets in parts of a tick are rounded apart: one tick either way is the same. */
	return d == 0 || ((part == 1 || s->boot_off_part) && (d == 1 || d == -1));
}

/* Is c's pid namespace p's, or one below it?  1, 0, or -1 (errno) when it cannot be told. */
static int
in_pid_subtree(const char *root, const struct procscan_proc *c, const struct procscan_proc *p)
{
	char path[PATH_MAX];
	struct stat want, got;
	int fd, rc;

	if (p->ns_depth > c->ns_depth) {
		return 0;
	}
	if (p->ns_depth == c->ns_depth) {
		char ns[sizeof(c->pidns)];

		ns_link(root, p->pid, "pid", ns, sizeof(ns));
		return c->pidns[0] != '\0' && strcmp(ns, c->pidns) == 0;
	}
	(void)snprintf(path, sizeof(path), "%s/%d/ns/pid", root, (int)p->pid);
	if (stat(path, &want) == -1) {
		return -1;
	}
	(void)snprintf(path, sizeof(path), "%s/%d/ns/pid", root, (int)c->pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		return -1;
	}
	/* Up from c's namespace to the depth of p's (NS_GET_PARENT: Linux 4.9). */
	for (unsigned k = c->ns_depth - p->ns_depth; k > 0; k--) {
		int up = ioctl(fd, NS_GET_PARENT);
		int err = errno;

		(void)close(fd);
		if (up == -1) {
			errno = err;
			return -1;
		}
		fd = up;
	}
	rc = fstat(fd, &got) == 0 ? got.st_dev == want.st_dev && got.st_ino == want.st_ino : -1;
	(void)close(fd);
	return rc;
}

/*
 * The owner pid:start, named by carrier c, of an mcpmux in a pid namespace below this one
 * (a container's, whose carriers name it by its pid there): the live process that is
 * that pid in its own pid namespace, with that start time, where that namespace is c's
 * or one c's is below (an mcpmux in a container may run its server in a sandbox of its
 * own).  Its index, or SIZE_MAX; *unsure (with *err) when a candidate could not be judged.
 */
static size_t
owner_nested(const struct procscan *s, const char *root, pid_t pid, unsigned long long start,
	     const struct procscan_proc *c, bool *unsure, int *err)
{
	if (c->pidns[0] == '\0') {
		return SIZE_MAX;
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *p = &s->v[i];

		if (p->ns_pid != pid || p->pid == pid || !is_live(p)) {
			continue;
		}
		int same = start_matches(s, root, p, start);
		int here = same != 0 ? in_pid_subtree(root, c, p) : 0;

		if (here == -1) {
			*unsure = true;
			*err = errno;
		} else if (here == 1 && same == 1) {
			return i;
		} else if (here == 1) {
			*unsure = true; /* that pid, below: but whose clock cannot be read */
		}
	}
	return SIZE_MAX;
}

/*
 * The process pid as the scan has it, or, when the scan has none (it exited during it, or
 * never was: another machine's pid), as its stat reads now, into *now.  NULL with *state
 * GONE when there is no such process, or UNKNOWN (*err) when it cannot be read.
 */
static const struct procscan_proc *
look_up(const struct procscan *s, const char *root, pid_t pid, struct procscan_proc *now,
	enum procscan_owner *state, int *err)
{
	size_t j = procscan_find(s, pid);

	if (j != SIZE_MAX && s->v[j].read_errno != 0) {
		*err = s->v[j].read_errno;
		*state = PROCSCAN_UNKNOWN;
		return NULL;
	}
	if (j != SIZE_MAX) {
		return &s->v[j];
	}
	memset(now, 0, sizeof(*now));
	now->pid = pid;
	if (read_stat(root, pid, now) == -1) {
		if (vanished(errno)) {
			*state = PROCSCAN_GONE;
		} else {
			*err = errno;
			*state = PROCSCAN_UNKNOWN;
		}
		return NULL;
	}
	return now;
}

/* procscan_owner_state(), and *unsure when a live process of that pid has a clock of its own. */
static enum procscan_owner
owner_state(const struct procscan *s, const char *proc_root, const char *owner, int *err,
	    bool *unsure)
{
	struct procscan_proc now;
	enum procscan_owner state;
	unsigned long long start;
	pid_t pid;

	*err = 0;
	if (procscan_parse_owner(owner, &pid, &start) == -1) {
		*err = EINVAL;
		return PROCSCAN_UNKNOWN;
	}
	const struct procscan_proc *p = look_up(s, proc_root, pid, &now, &state, err);

	if (p == NULL) {
		return state;
	}
	if (!is_live(p)) {
		return PROCSCAN_GONE;
	}
	int same = start_matches(s, proc_root, p, start);

	*unsure = same == -1;
	return same == 1 ? PROCSCAN_LIVE : PROCSCAN_GONE;
}

enum procscan_owner
procscan_owner_judge(const struct procscan *s, const char *proc_root, const char *owner, int *err,
		     bool *unsure)
{
	*unsure = false;
	return owner_state(s, proc_root, owner, err, unsure);
}

enum procscan_owner
procscan_owner_state(const struct procscan *s, const char *proc_root, const char *owner, int *err)
{
	bool unsure = false;

	return owner_state(s, proc_root, owner, err, &unsure);
}

int
procscan_pidns(const char *proc_root, pid_t pid, char out[PROCSCAN_PIDNS_MAX])
{
	char link[64];
	unsigned long long ino;

	ns_link(proc_root, pid, "pid", link, sizeof(link));
	if (sscanf(link, "pid:[%llu]", &ino) != 1) {
		out[0] = '\0';
		return -1;
	}
	(void)snprintf(out, PROCSCAN_PIDNS_MAX, "%llu", ino);
	return 0;
}

/* The initial pid namespace's inode (PROC_PID_INIT_INO): its /proc shows every process. */
#define PIDNS_INIT "4026531836"

enum procscan_owner
procscan_owner_in_pidns(const struct procscan *s, const char *proc_root, const char *owner,
			const char *pidns, int *err)
{
	char ns[PROCSCAN_PIDNS_MAX];
	unsigned long long start;
	pid_t pid;
	bool unsure = false;

	*err = 0;
	if (procscan_parse_owner(owner, &pid, &start) == -1) {
		*err = EINVAL;
		return PROCSCAN_UNKNOWN;
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *p = &s->v[i];

		if (p->ns_pid != pid || !is_live(p) || p->ns_depth == 0) {
			continue;
		}
		if (procscan_pidns(proc_root, p->pid, ns) == -1) {
			unsure = true; /* whose namespace it is in cannot be read: it may be that
					  one */
			continue;
		}
		if (strcmp(ns, pidns) != 0) {
			continue;
		}
		int same = start_matches(s, proc_root, p, start);

		if (same == 1) {
			return PROCSCAN_LIVE;
		}
		unsure = unsure || same == -1;
	}
	if (unsure) {
		return PROCSCAN_UNKNOWN; /* a candidate that could not be judged */
	}
	/*
	 * Every process is seen only from the initial pid namespace, with its own /proc,
	 * and by root (hidepid hides other users' processes from the others).
	 */
	char self[32];
	ssize_t n = readlink("/proc/self", self, sizeof(self) - 1);

	self[n > 0 ? n : 0] = '\0';
	if (geteuid() == 0 && procscan_pidns(proc_root, getpid(), ns) == 0 &&
	    strcmp(ns, PIDNS_INIT) == 0 && strcmp(proc_root, "/proc") == 0 &&
	    atoi(self) == (int)getpid()) {
		return PROCSCAN_GONE;
	}
	return PROCSCAN_UNKNOWN;
}

const char *
procscan_unknown_why(const struct procscan_group *g)
{
	return g->bad_owner    ? "its MCPMUX_OWNER is not PID:START"
	       : g->zero_owner ? "its MCPMUX_OWNER has no start time, and a process that may be "
				 "that owner holds its pid"
	       : g->outside    ? "it runs outside this pid namespace, where it cannot be seen"
	       : g->other_time ? "it runs in another time namespace, where start times differ"
			       : strerror(g->owner_errno);
}

static size_t
find_group(struct procscan *s, enum procscan_owner state, size_t instance, const char *session,
	   const char *owner, bool owner_cut, uid_t uid)
{
	for (size_t g = 0; g < s->n_groups; g++) {
		const struct procscan_group *x = &s->g[g];

		if (x->owner_state == state && strcmp(x->session, session) == 0 &&
		    (state == PROCSCAN_LIVE ? x->instance == instance
					    : strcmp(x->owner, owner) == 0 &&
						      x->owner_cut == owner_cut && x->uid == uid)) {
			return g;
		}
	}
	if (s->n_groups == s->cap_groups) {
		size_t cap = s->cap_groups != 0 ? s->cap_groups * 2 : 16;
		struct procscan_group *ng = realloc(s->g, cap * sizeof(*ng));

		if (ng == NULL) {
			return SIZE_MAX;
		}
		s->g = ng;
		s->cap_groups = cap;
	}
	struct procscan_group *x = &s->g[s->n_groups];

	memset(x, 0, sizeof(*x));
	x->owner_state = state;
	x->instance = state == PROCSCAN_LIVE ? instance : SIZE_MAX;
	(void)snprintf(x->session, sizeof(x->session), "%s", session);
	(void)snprintf(x->owner, sizeof(x->owner), "%s", owner);
	x->owner_cut = owner_cut;
	x->uid = uid;
	x->top = SIZE_MAX;
	return s->n_groups++;
}

/* Mark the instances: by their look and command line, then those named by owners. */
static void
find_instances(struct procscan *s, const char *root, pid_t self)
{
	for (size_t i = 0; i < s->n; i++) {
		struct procscan_proc *p = &s->v[i];

		if (is_live(p) && p->is_read && p->pid != self && looks_like_mcpmux(p)) {
			p->mode = parse_mode(p);
		}
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *c = &s->v[i];
		unsigned long long start;
		pid_t pid;

		if (!is_live(c) || c->session[0] == '\0' ||
		    procscan_parse_owner(c->owner, &pid, &start) == -1) {
			continue;
		}
		size_t j = procscan_find(s, pid);
		bool unsure = false;
		int err = 0;

		if (j == SIZE_MAX || !is_live(&s->v[j]) ||
		    start_matches(s, root, &s->v[j], start) != 1) {
			/* an mcpmux in a container */
			j = owner_nested(s, root, pid, start, c, &unsure, &err);
		}
		if (j == SIZE_MAX || s->v[j].pid == self || s->v[j].mode != PROCSCAN_NONE) {
			continue;
		}
		s->v[j].mode = parse_mode(&s->v[j]);
		if (s->v[j].mode == PROCSCAN_NONE) {
			s->v[j].mode = PROCSCAN_OTHER;
		}
	}
}

/* The nearest ancestor of v[i] that is an instance, SIZE_MAX when none. */
static size_t
instance_above(const struct procscan *s, size_t i)
{
	size_t k = s->v[i].parent;

	for (int depth = 0; k != SIZE_MAX && depth < MAX_DEPTH; depth++) {
		if (s->v[k].mode != PROCSCAN_NONE && is_live(&s->v[k])) {
			return k;
		}
		k = s->v[k].parent;
	}
	return SIZE_MAX;
}

/*
 * Did v[i]'s owner come into this pid namespace from outside?  True when the topmost
 * ancestor of v[i] seen here (v[i] itself, maybe) has its parent outside this pid
 * namespace (ppid 0: the namespace's first process, or one that entered it) and carries
 * the same MCPMUX_OWNER: the owner is then no process of this namespace (a sandbox or a
 * container an mcpmux outside runs its server in, scanned from inside), and its pid here,
 * if any, is another process's.
 */
static bool
owner_outside(const struct procscan *s, size_t i)
{
	size_t k = i;

	for (int depth = 0; s->v[k].parent != SIZE_MAX && depth < MAX_DEPTH; depth++) {
		k = s->v[k].parent;
	}
	const struct procscan_proc *top = &s->v[k];

	return top->ppid == 0 && top->is_read && strcmp(top->owner, s->v[i].owner) == 0;
}

/*
 * Is owner, which does not parse, PID:0?  What an older mcpmux that could not read its own
 * start time gave its servers; one of today gives them no MCPMUX_OWNER.
 */
static bool
names_no_owner(const char *owner)
{
	size_t digits = strspn(owner, "0123456789");

	return digits > 0 && strcmp(owner + digits, ":0") == 0;
}

/*
 * zero_owner_state() for a carrier c in a pid namespace below this one (a container's,
 * where a daemon is re-parented to the container's first process, no instance): PID is a
 * pid there, that of a process in c's pid namespace or one c's is below (as owner_nested()
 * finds them), never one of this namespace's.
 */
static enum procscan_owner
zero_owner_nested(const struct procscan *s, const char *root, const struct procscan_proc *c,
		  pid_t pid, size_t *instance, int *err)
{
	enum procscan_owner state = PROCSCAN_GONE;

	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *p = &s->v[i];

		if (p->ns_pid != pid || p->ns_depth == 0 || !is_live(p) || p->start > c->start) {
			continue;
		}
		int here = in_pid_subtree(root, c, p);

		if (here == -1) {
			*err = errno;
			state = PROCSCAN_UNKNOWN;
		} else if (here == 1 && p->mode != PROCSCAN_NONE) {
			*instance = i;
			*err = 0;
			return PROCSCAN_LIVE;
		} else if (here == 1) {
			state = PROCSCAN_UNKNOWN;
		}
	}
	return state;
}

/*
 * The owner of carrier c, whose MCPMUX_OWNER is PID:0 and which has no instance above it.
 * Its owner was alive when its server started, so no later than c did: a process PID that
 * started after c is not it, and neither is one that is gone or a zombie (GONE).  A live
 * process PID that started no later than c may be it: the carrier is that instance's when
 * it is one (LIVE, *instance), unknown when it is not (an mcpmux not known by its looks,
 * or a pid reused before c started: *err 0), as when PID cannot be read (*err).  For c in
 * a pid namespace below this one, PID is a pid of that namespace (zero_owner_nested()).
 */
static enum procscan_owner
zero_owner_state(const struct procscan *s, const char *root, const struct procscan_proc *c,
		 size_t *instance, int *err)
{
	struct procscan_proc now;
	enum procscan_owner state;
	unsigned long long v = strtoull(c->owner, NULL, 10);

	*instance = SIZE_MAX;
	*err = 0;
	if (v > INT_MAX) {
		return PROCSCAN_GONE; /* no such pid */
	}
	if (c->ns_depth > 0) {
		return zero_owner_nested(s, root, c, (pid_t)v, instance, err);
	}
	const struct procscan_proc *p = look_up(s, root, (pid_t)v, &now, &state, err);

	if (p == NULL) {
		return state;
	}
	/* Both start times as this scan reads them: one clock, whatever their namespaces. */
	if (!is_live(p) || p->start > c->start) {
		return PROCSCAN_GONE;
	}
	if (p != &now && p->mode != PROCSCAN_NONE) {
		*instance = (size_t)(p - s->v);
		return PROCSCAN_LIVE;
	}
	return PROCSCAN_UNKNOWN;
}

/* Put every carrier into its group.  0, or -1 (ENOMEM). */
static int
group_carriers(struct procscan *s, const char *root, pid_t self)
{
	for (size_t i = 0; i < s->n; i++) {
		struct procscan_proc *c = &s->v[i];
		enum procscan_owner state = PROCSCAN_GONE;
		size_t instance = SIZE_MAX;
		unsigned long long start;
		pid_t opid;
		int err = 0;

		if (!is_live(c) || !c->is_read || c->session[0] == '\0' || c->pid == self) {
			continue;
		}
		bool other_time = false, outside = false, bad_owner = false, zero_owner = false;

		if (procscan_parse_owner(c->owner, &opid, &start) == 0) {
			bool unsure = false, nested_unsure = false;

			state = owner_state(s, root, c->owner, &err, &unsure);
			if (state == PROCSCAN_GONE) {
				/* Gone here; maybe an mcpmux in a container, seen from here. */
				int nerr = 0;

				instance = owner_nested(s, root, opid, start, c, &nested_unsure,
							&nerr);
				state = instance != SIZE_MAX ? PROCSCAN_LIVE : PROCSCAN_GONE;
				if (state == PROCSCAN_GONE && nested_unsure) {
					/* A candidate that could not be judged: never an orphan. */
					state = PROCSCAN_UNKNOWN;
					err = nerr;
					other_time = nerr == 0;
				} else if (state == PROCSCAN_GONE && unsure && c->other_time) {
					/* Its owner's clock (that of its own) could not be read. */
					state = PROCSCAN_UNKNOWN;
					other_time = true;
				} else if (state == PROCSCAN_GONE && owner_outside(s, i)) {
					/* Its owner is not in this pid namespace: not seen. */
					state = PROCSCAN_UNKNOWN;
					outside = true;
				}
			} else if (state == PROCSCAN_LIVE) {
				instance = procscan_find(s, opid);
				if (instance == SIZE_MAX) {
					/* It started after the scan's listing: not shown. */
					continue;
				}
			}
		} else {
			/* An older mcpmux (no owner), or an owner that does not parse. */
			instance = instance_above(s, i);
			state = instance != SIZE_MAX ? PROCSCAN_LIVE : PROCSCAN_GONE;
			if (state == PROCSCAN_GONE && c->has_owner && !names_no_owner(c->owner)) {
				/* Whose it is cannot be told (a newer mcpmux's?): never an orphan.
				 */
				state = PROCSCAN_UNKNOWN;
				bad_owner = true;
			} else if (state == PROCSCAN_GONE && c->has_owner) {
				/* PID:0: that pid, if it lives and is old enough, may be its owner.
				 */
				state = zero_owner_state(s, root, c, &instance, &err);
				zero_owner = state == PROCSCAN_UNKNOWN && err == 0;
			}
		}
		size_t g =
			find_group(s, state, instance, c->session, c->owner, c->owner_cut, c->uid);

		if (g == SIZE_MAX) {
			return -1;
		}
		c->group = g;
		s->g[g].owner_errno = err;
		s->g[g].other_time = other_time;
		s->g[g].outside = outside;
		s->g[g].bad_owner = bad_owner;
		s->g[g].zero_owner = zero_owner;
		s->g[g].n_carriers++;
	}
	return 0;
}

/* Choose each group's top process, and count its tree and memory. */
static void
measure_groups(struct procscan *s)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *c = &s->v[i];

		if (c->group == SIZE_MAX) {
			continue;
		}
		struct procscan_group *g = &s->g[c->group];
		bool server = g->instance != SIZE_MAX && c->ppid == s->v[g->instance].pid &&
			      c->pgid == c->pid;

		if (g->top == SIZE_MAX || (server && !g->has_server) ||
		    (server == g->has_server && c->start < s->v[g->top].start)) {
			g->top = i;
			g->has_server = server;
		}
	}
	/* Each live process counts once in every group found on its line of ancestors. */
	for (size_t i = 0; i < s->n; i++) {
		size_t seen[8], n_seen = 0, k = i;

		if (!is_live(&s->v[i])) {
			continue;
		}
		for (int depth = 0; k != SIZE_MAX && depth < MAX_DEPTH; depth++) {
			size_t g = s->v[k].group;
			bool dup = false;

			for (size_t x = 0; x < n_seen; x++) {
				dup = dup || seen[x] == g;
			}
			if (g != SIZE_MAX && !dup) {
				s->g[g].n_tree++;
				s->g[g].rss_kib += s->v[i].rss_kib;
				if (n_seen < sizeof(seen) / sizeof(seen[0])) {
					seen[n_seen++] = g;
				}
			}
			k = s->v[k].parent;
		}
	}
}

static void
read_clock(struct procscan *s, const char *root)
{
	char path[PATH_MAX], buf[128];

	s->hz = sysconf(_SC_CLK_TCK);
	if (s->hz <= 0) {
		s->hz = 100;
	}
	s->uptime_s = -1;
	(void)snprintf(path, sizeof(path), "%s/uptime", root);
	if (sys_read_small(path, buf, sizeof(buf)) >= 0 && sscanf(buf, "%lf", &s->uptime_s) != 1) {
		s->uptime_s = -1;
	}
}

int
procscan_read(struct procscan *s, const char *proc_root, uid_t uid, bool all, pid_t self)
{
	DIR *d;
	int rc = 0;

	free_procs(s);
	s->n_groups = 0;
	read_clock(s, proc_root);
	ns_link(proc_root, self, "time", s->timens, sizeof(s->timens));
	int part = boot_offset(s, proc_root, self, &s->boot_off);

	s->boot_off_known = part != -1;
	s->boot_off_part = part == 1;
	d = opendir(proc_root);
	if (d == NULL) {
		return -1;
	}
	for (;;) {
		errno = 0;
		const struct dirent *de = readdir(d);

		if (de == NULL) {
			rc = errno != 0 ? -1 : 0;
			break;
		}
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (de->d_name[0] < '1' || de->d_name[0] > '9' || *end != '\0' || pid > INT_MAX) {
			continue;
		}
		if (read_proc(s, proc_root, (pid_t)pid, uid, all) == -1) {
			rc = -1;
			break;
		}
	}
	int err = errno;

	closedir(d);
	if (rc == -1) {
		errno = err;
		return -1;
	}
	if (s->n > 0) {
		qsort(s->v, s->n, sizeof(*s->v), by_pid); /* none: s->v may be NULL */
	}
	for (size_t i = 0; i < s->n; i++) {
		s->v[i].parent = procscan_find(s, s->v[i].ppid);
	}
	size_t k = procscan_find(s, self);

	for (int depth = 0; k != SIZE_MAX && depth < MAX_DEPTH; depth++) {
		s->v[k].is_self_line = true;
		k = s->v[k].parent;
	}
	find_instances(s, proc_root, self);
	if (group_carriers(s, proc_root, self) == -1) {
		errno = ENOMEM;
		return -1;
	}
	measure_groups(s);
	return 0;
}

bool
procscan_in_tree(const struct procscan *s, size_t g, size_t i)
{
	size_t k = i;

	for (int depth = 0; k != SIZE_MAX && depth < MAX_DEPTH; depth++) {
		if (s->v[k].group == g) {
			return true;
		}
		k = s->v[k].parent;
	}
	return false;
}

double
procscan_age(const struct procscan *s, size_t i)
{
	double age = s->uptime_s - (double)s->v[i].start / (double)s->hz;

	return s->uptime_s < 0 ? -1 : age > 0 ? age : 0;
}

size_t
procscan_find_orphans(const struct procscan *s, const char *owner, const char *session, uid_t uid)
{
	for (size_t g = 0; g < s->n_groups; g++) {
		const struct procscan_group *x = &s->g[g];

		if (x->owner_state == PROCSCAN_GONE && x->uid == uid &&
		    strcmp(x->owner, owner) == 0 && strcmp(x->session, session) == 0) {
			return g;
		}
	}
	return SIZE_MAX;
}

int
procscan_parse_duration(const char *text, double *seconds)
{
	char *end;
	double v, unit = 1;

	if (text[0] < '0' || text[0] > '9') {
		if (text[0] != '.') {
			return -1;
		}
	}
	errno = 0;
	v = strtod(text, &end);
	if (end == text || errno != 0) {
		return -1;
	}
	switch (*end) {
	case '\0':
		break;
	case 's':
		end++;
		break;
	case 'm':
		unit = 60;
		end++;
		break;
	case 'h':
		unit = 3600;
		end++;
		break;
	case 'd':
		unit = 86400;
		end++;
		break;
	default:
		return -1;
	}
	if (*end != '\0' || !isfinite(v) || !(v > 0) || v * unit > 1e10) {
		return -1;
	}
	*seconds = v * unit;
	return 0;
}

int
procscan_boot_id(const char *proc_root, char out[PROCSCAN_BOOT_MAX])
{
	char path[PATH_MAX];
	(void)snprintf(path, sizeof(path), "%s/sys/kernel/random/boot_id", proc_root);
	ssize_t got = sys_read_small(path, out, PROCSCAN_BOOT_MAX);

	if (got == -1) {
		return -1;
	}
	size_t len = (size_t)got;

	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' ')) {
		out[--len] = '\0';
	}
	if (len == 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* ---- the ladder ---- */

void
procscan_target_init(struct procscan_target *t, pid_t pid, unsigned long long start)
{
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->start = start;
	t->pidfd = -1;
}

void
procscan_target_release(struct procscan_target *t)
{
	sys_close(&t->pidfd);
}

/*
 * Is pid still the process that started at start (a zombie or not: its state into *state)?
 * 1, 0 (gone, or another), -1 with errno when that cannot be read.
 */
static int
same_start(const char *root, pid_t pid, unsigned long long start, char *state)
{
	struct procscan_proc now;

	memset(&now, 0, sizeof(now));
	if (read_stat(root, pid, &now) == -1) {
		return vanished(errno) ? 0 : -1;
	}
	*state = now.state;
	return now.start == start;
}

int
procscan_still(const char *proc_root, const struct procscan_proc *p)
{
	char state;

	return same_start(proc_root, p->pid, p->start, &state);
}

/* Is t still the process that was scanned?  1 yes, 0 gone, -1 unknown (errno). */
static int
still_there(const char *root, struct procscan_target *t)
{
	int same = same_start(root, t->pid, t->start, &t->state);

	if (same == -1) {
		return -1;
	}
	if (same == 0 || t->state == 'Z' || t->state == 'X') {
		t->is_gone = true; /* reaped and the pid reused, or dead and not yet reaped */
		return 0;
	}
	return 1;
}

static int
send_one(struct procscan_target *t, int sig)
{
	long rc = t->pidfd >= 0 ? syscall(SYS_pidfd_send_signal, t->pidfd, sig, NULL, 0)
				: (long)kill(t->pid, sig);

	if (rc == -1 && errno == ESRCH) {
		t->is_gone = true;
		return 0;
	}
	return rc == -1 ? -1 : 1;
}

/*
 * May a pidfd of this number be kept for the wait?  Kept ones stay in the lower half of
 * the descriptor table, so that any number of targets leaves room for the /proc reads
 * and the engines' pipes.
 */
static bool
keep_pidfd(int fd)
{
	struct rlimit rl;

	return getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY ||
	       (rlim_t)fd < rl.rlim_cur / 2;
}

int
procscan_signal(const char *proc_root, struct procscan_target *t, int sig)
{
	if (t->is_gone) {
		return 0;
	}
	/*
	 * The pidfd is opened before the identity check: if the check then sees the start
	 * time scanned, the pidfd refers to that very process, whatever happens to the pid.
	 */
	if (t->pidfd == -1 && !t->no_pidfd) {
		t->pidfd = (int)syscall(SYS_pidfd_open, t->pid, 0);
		if (t->pidfd == -1) {
			if (errno == ESRCH) {
				t->is_gone = true;
				return 0;
			}
			if (errno != ENOSYS && errno != EMFILE && errno != ENFILE) {
				return -1;
			}
			/* Before Linux 5.3 (and this once, with a full table): kill(), right after
			 * the check. */
			t->no_pidfd = errno == ENOSYS;
		}
	}
	int rc = still_there(proc_root, t);

	if (rc == 1) {
		rc = send_one(t, sig);
		if (rc == 1 && sig == SIGTERM) {
			(void)send_one(t, SIGCONT); /* a stopped process does not act on SIGTERM */
		}
	}
	if (t->pidfd >= 0 && !keep_pidfd(t->pidfd)) {
		sys_close(&t->pidfd); /* the wait reads /proc for it; the next signal opens one */
	}
	return rc;
}

long long
procscan_now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t
procscan_wait(const char *proc_root, struct procscan_target *t, size_t n, long long deadline_ms)
{
	struct pollfd *fds = calloc(n > 0 ? n : 1, sizeof(*fds));
	size_t *which = calloc(n > 0 ? n : 1, sizeof(*which));
	size_t left;

	for (;;) {
		size_t nfds = 0;
		bool by_proc = fds == NULL || which == NULL;

		left = 0;
		for (size_t i = 0; i < n; i++) {
			if (t[i].is_gone) {
				continue;
			}
			if (t[i].pidfd < 0 || fds == NULL || which == NULL) {
				/* No pidfd to wait on: look in /proc (unknown counts as there). */
				if (still_there(proc_root, &t[i]) == 0) {
					continue;
				}
				by_proc = true;
			} else {
				fds[nfds].fd = t[i].pidfd;
				fds[nfds].events = POLLIN;
				fds[nfds].revents = 0;
				which[nfds++] = i;
			}
			left++;
		}
		long long now = procscan_now_ms();

		if (left == 0 || now >= deadline_ms) {
			break;
		}
		long long wait = deadline_ms - now;

		if (by_proc && wait > 10) {
			wait = 10;
		}
		int rc = poll(nfds > 0 ? fds : NULL, (nfds_t)nfds, (int)SYS_MIN(wait, INT_MAX));

		if (rc == -1 && errno != EINTR) {
			break;
		}
		for (size_t k = 0; rc > 0 && k < nfds; k++) {
			if (fds[k].revents != 0) {
				t[which[k]].is_gone = true; /* POLLIN: it has exited */
			}
		}
	}
	free(fds);
	free(which);
	return left;
}
