/*
 * cgroup: the instance cgroup and a leaf per server, on cgroup v2.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mcpmux/cgroup.h"
#include "mcpmux/sys.h"

static int
write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(s);
	ssize_t n;

	if (fd == -1) {
		return -1;
	}
	do {
		n = write(fd, s, len);
	} while (n == -1 && errno == EINTR);
	int err = errno;

	sys_close(&fd);
	if (n != (ssize_t)len) {
		errno = n == -1 ? err : EIO;
		return -1;
	}
	return 0;
}

/* Where cgroup2 is mounted, from /proc/self/mountinfo. */
static int
cgroup2_mount(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	int rc = -1;

	if (f == NULL) {
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [FIELDS...] - FSTYPE SOURCE SUPER */
		char root[1024], mnt[1024];
		const char *dash = strstr(line, " - ");

		if (dash == NULL || strncmp(dash + 3, "cgroup2 ", 8) != 0 ||
		    sscanf(line, "%*s %*s %*s %1023s %1023s", root, mnt) != 2 ||
		    strcmp(root, "/") != 0) {
			continue;
		}
		if ((size_t)snprintf(out, len, "%s", mnt) < len) {
			rc = 0;
		}
		break;
	}
	fclose(f);
	if (rc == -1) {
		errno = ENOENT;
	}
	return rc;
}

int
cgroup_mount(char *out, size_t len)
{
	return cgroup2_mount(out, len);
}

int
cgroup_own(char *out, size_t len)
{
	char mnt[1024], own[2048];
	const char *rel = NULL;

	if (cgroup2_mount(mnt, sizeof(mnt)) == -1 ||
	    sys_read_small("/proc/self/cgroup", own, sizeof(own)) <= 0) {
		return -1;
	}
	/* The v2 line is "0::/path". */
	for (char *l = own; l != NULL && *l != '\0';) {
		char *nl = strchr(l, '\n');

		if (nl != NULL) {
			*nl = '\0';
		}
		if (strncmp(l, "0::", 3) == 0) {
			rel = l + 3;
			break;
		}
		l = nl != NULL ? nl + 1 : NULL;
	}
	if (rel == NULL) {
		errno = ENOENT;
		return -1;
	}
	int n = snprintf(out, len, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel);

	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int
cgroup_instance_make(char *out, size_t len, pid_t pid)
{
	char dir[CGROUP_PATH_MAX], probe[CGROUP_PATH_MAX + 32];

	if (cgroup_own(dir, sizeof(dir)) == -1) {
		return -1;
	}
	/*
	 * Delegated to us: our own cgroup.procs writable (moving a process needs write access
	 * to the common ancestor of where it is and where it goes).
	 */
	(void)snprintf(probe, sizeof(probe), "%s/cgroup.procs", dir);
	if (access(probe, W_OK) == -1) {
		return -1;
	}
	/*
	 * A cgroup of this name that is there already is another instance's, never ours to
	 * share: one of another pid namespace with the same pid, or a killed one of ours whose
	 * keeper still ends its trees (and kills all of its cgroup when done).  Taken, the
	 * name gets a suffix: "mcpmux.PID.K".
	 */
	for (unsigned k = 1;; k++) {
		int n = k == 1 ? snprintf(out, len, "%s/mcpmux.%d", dir, (int)pid)
			       : snprintf(out, len, "%s/mcpmux.%d.%u", dir, (int)pid, k);

		if (n < 0 || (size_t)n >= len || (size_t)n + 32 >= CGROUP_PATH_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (mkdir(out, 0755) == 0) {
			break;
		}
		if (errno != EEXIST || k == 64) {
			return -1;
		}
	}
	(void)snprintf(probe, sizeof(probe), "%s/cgroup.kill", out);
	if (access(probe, W_OK) == -1) {
		int err = errno;

		(void)rmdir(out);
		errno = err;
		return -1;
	}
	return 0;
}

int
cgroup_leaf_make(const char *inst, unsigned long long n, char *out, size_t len)
{
	int k = snprintf(out, len, "%s/s.%llu", inst, n);

	if (k < 0 || (size_t)k >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/*
	 * A leaf that is there already is not this server's: never joined (EEXIST).  The
	 * instance cgroup gone (ENOENT): removed while empty (by hand, or by an mcpmux that
	 * took it for a gone instance's, as an older mcpmux did at its start).  Made again: it
	 * held no process, so nothing escaped meanwhile, and the keeper knows it by its path.
	 * Made again by another instance meanwhile (EEXIST), it is that one's now.  Removed
	 * again before the leaf was made in it, it is made once more, and no more.
	 */
	for (int remade = 0;; remade++) {
		if (mkdir(out, 0755) == 0) {
			return 0;
		}
		if (errno != ENOENT || remade == 2 || mkdir(inst, 0755) == -1) {
			return -1;
		}
	}
}

/* Nested mcpmux instances (a server that is an mcpmux) nest their cgroups this deep. */
#define REMOVE_DEPTH_MAX 32
/* The processes of a cgroup that cgroup_kill() signals one by one, this many at a time. */
#define KILL_BATCH 64

/* A batch of the processes a cgroup's cgroup.procs lists. */
struct listed {
	int dfd; /* the cgroup */
	size_t n;
	pid_t pid[KILL_BATCH];
	int fd[KILL_BATCH]; /* its pidfd, -1 when none could be had (EMFILE, ...) */
	bool still[KILL_BATCH];
};

/* fn(l, pid) for each pid that the cgroup.procs of l->dfd lists.  0, or -1 (errno). */
static int
procs_each(struct listed *l, void (*fn)(struct listed *l, pid_t pid))
{
	int fd = openat(l->dfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
	char buf[1024];
	long pid = -1; /* the digits so far; -1: none yet; -2: not a pid (skipped) */
	ssize_t n;

	if (fd == -1) {
		return -1;
	}
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n == -1) {
			sys_close(&fd);
			return -1;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				if (pid > 0) {
					fn(l, (pid_t)pid);
				}
				pid = -1;
			} else if (buf[i] >= '0' && buf[i] <= '9' && pid >= -1 &&
				   pid < INT32_MAX / 10) {
				pid = (pid < 0 ? 0 : pid * 10) + (buf[i] - '0');
			} else {
				pid = -2;
			}
		}
	}
	sys_close(&fd);
	return 0;
}

static void
mark_listed(struct listed *l, pid_t pid)
{
	for (size_t i = 0; i < l->n; i++) {
		l->still[i] |= l->pid[i] == pid;
	}
}

/*
 * SIGKILL each process of the batch that cgroup.procs still lists now that its pidfd is
 * open: the pidfd pins it, so a pid reused meanwhile outside the cgroup is not signalled.
 */
static void
kill_listed(struct listed *l)
{
	bool read = procs_each(l, mark_listed) == 0;

	for (size_t i = 0; i < l->n; i++) {
		if (read && l->still[i]) {
			if (l->fd[i] >= 0) {
				(void)syscall(SYS_pidfd_send_signal, l->fd[i], SIGKILL, NULL, 0);
			} else {
				(void)kill(l->pid[i], SIGKILL);
			}
		}
		sys_close(&l->fd[i]);
	}
	l->n = 0;
}

static void
add_listed(struct listed *l, pid_t pid)
{
	if (l->n == KILL_BATCH) {
		kill_listed(l);
	}
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd == -1 && errno == ESRCH) {
		return; /* gone */
	}
	l->pid[l->n] = pid;
	l->fd[l->n] = fd;
	l->still[l->n] = false;
	l->n++;
}

/*
 * SIGKILL each process that cgroup.procs lists in the cgroup name (in the directory at) and
 * in the cgroups below it.
 */
static void
kill_procs_at(int at, const char *name, int depth)
{
	struct listed l = { .dfd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC) };
	DIR *d;
	struct dirent *de;

	if (l.dfd == -1) {
		return;
	}
	(void)procs_each(&l, add_listed);
	if (l.n > 0) {
		kill_listed(&l);
	}
	if (depth >= REMOVE_DEPTH_MAX || (d = fdopendir(l.dfd)) == NULL) {
		sys_close(&l.dfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_type == DT_DIR && de->d_name[0] != '.') {
			kill_procs_at(dirfd(d), de->d_name, depth + 1);
		}
	}
	closedir(d);
}

int
cgroup_kill(const char *dir)
{
	char path[CGROUP_PATH_MAX + 16];

	(void)snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
	int rc = write_str(path, "1");
	int err = errno;

	/*
	 * cgroup.kill leaves alive a process whose main thread has exited while its other
	 * threads run on (/proc says Z; 6.18), which cgroup.procs lists and kill() ends.
	 */
	kill_procs_at(AT_FDCWD, dir, 0);
	errno = err;
	return rc;
}

int
cgroup_populated(const char *dir)
{
	char path[CGROUP_PATH_MAX + 16], buf[256];

	(void)snprintf(path, sizeof(path), "%s/cgroup.events", dir);
	if (sys_read_small(path, buf, sizeof(buf)) == -1) {
		return -1;
	}
	const char *p = strstr(buf, "populated ");

	if (p == NULL) {
		errno = EINVAL;
		return -1;
	}
	return p[10] == '1';
}

static int
rmdir_at(int at, const char *name)
{
	return at == AT_FDCWD ? rmdir(name) : unlinkat(at, name, AT_REMOVEDIR);
}

/* Which cgroups below the one removed may go: those that known() takes, by inode. */
struct known {
	bool (*fn)(void *ctx, ino_t ino);
	void *ctx;
};

/* May the cgroup name in the directory at go (its inode known)?  Unknown: no. */
static bool
is_known(int at, const char *name, const struct known *k)
{
	struct stat st;

	return fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && k->fn(k->ctx, st.st_ino);
}

/*
 * Remove the empty cgroup name in the directory at at, and the empty ones below it; with
 * k, only those below it that k knows.
 */
static int
remove_at(int at, const char *name, int depth, const struct known *k)
{
	/*
	 * The kernel removes only a cgroup that holds no process and no cgroup (EBUSY
	 * otherwise): a leaf, the common case, goes in one call.
	 */
	if (k == NULL && (rmdir_at(at, name) == 0 || errno == ENOENT)) {
		return 0;
	}
	if (k != NULL) {
		/* Its children are looked at first: the rmdir of a leaf is not told from it. */
		errno = EBUSY;
	}
	if (errno != EBUSY || depth >= REMOVE_DEPTH_MAX) {
		return -1;
	}
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (d == NULL) {
		int err = errno;

		if (fd >= 0) {
			(void)close(fd);
		}
		return err == ENOENT ? 0 : (errno = err, -1);
	}
	/*
	 * Children first, depth first: a cgroup with children cannot be removed (a nested
	 * mcpmux's instance and leaves under one of ours).
	 */
	while ((de = readdir(d)) != NULL) {
		if (de->d_type == DT_DIR && de->d_name[0] != '.' &&
		    (k == NULL || is_known(dirfd(d), de->d_name, k))) {
			(void)remove_at(dirfd(d), de->d_name, depth + 1, k);
		}
	}
	closedir(d);
	return rmdir_at(at, name) == -1 && errno != ENOENT ? -1 : 0;
}

int
cgroup_remove(const char *dir)
{
	return remove_at(AT_FDCWD, dir, 0, NULL);
}

int
cgroup_remove_known(const char *dir, bool (*known)(void *ctx, ino_t ino), void *ctx)
{
	struct known k = { known, ctx };

	return remove_at(AT_FDCWD, dir, 0, &k);
}

int
cgroup_instance_pid(const char *name, pid_t *pid)
{
	char *end;
	long v;

	if (strncmp(name, "mcpmux.", 7) != 0 || name[7] < '1' || name[7] > '9') {
		return -1;
	}
	errno = 0;
	v = strtol(name + 7, &end, 10);
	if (*end == '.' && end[1] >= '1' && end[1] <= '9' && errno == 0) {
		char *k_end;

		(void)strtoul(end + 1, &k_end, 10);
		end = *k_end == '\0' && errno == 0 ? k_end : end;
	}
	if (*end != '\0' || errno != 0 || v <= 0 || v > INT32_MAX) {
		return -1;
	}
	*pid = (pid_t)v;
	return 0;
}

/*
 * fn(ctx, top, pid) for each process of the cgroup name in at and of those below it.  0, or
 * -1 with errno when a part of it could not be read (one removed meanwhile is no error).
 */
static int
procs_walk(int at, const char *name, const char *top, int depth,
	   void (*fn)(void *ctx, const char *top, pid_t pid), void (*dirfn)(void *ctx, ino_t ino),
	   void *ctx)
{
	int dfd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0, err = 0;
	DIR *d;

	if (dfd == -1) {
		return errno == ENOENT ? 0 : -1;
	}
	struct stat st;

	if (depth > 0 && dirfn != NULL && fstat(dfd, &st) == 0) {
		dirfn(ctx, st.st_ino);
	}
	int fd = openat(dfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;

	if (f == NULL) {
		err = errno;
		if (fd >= 0) {
			(void)close(fd);
		} else if (err == ENOENT) {
			err = 0; /* removed meanwhile */
		}
	}
	if (f != NULL) {
		long pid;

		errno = 0;
		while (fscanf(f, "%ld", &pid) == 1) {
			if (pid > 0 && pid <= INT32_MAX) {
				fn(ctx, top, (pid_t)pid);
			}
		}
		if (ferror(f) && errno != ENODEV) { /* ENODEV: removed meanwhile */
			err = errno != 0 ? errno : EIO;
		}
		fclose(f);
	}
	if ((d = fdopendir(dfd)) == NULL) {
		err = err != 0 ? err : errno;
		sys_close(&dfd);
	} else {
		for (const struct dirent *de; (de = readdir(d)) != NULL;) {
			if (de->d_type != DT_DIR || de->d_name[0] == '.') {
				continue;
			}
			if (depth + 1 >= REMOVE_DEPTH_MAX) {
				err = err != 0 ? err : ELOOP; /* deeper than it looks */
			} else if (procs_walk(dirfd(d), de->d_name, top != NULL ? top : de->d_name,
					      depth + 1, fn, dirfn, ctx) == -1) {
				err = err != 0 ? err : errno;
			}
		}
		closedir(d);
	}
	if (err != 0) {
		errno = err;
		rc = -1;
	}
	return rc;
}

int
cgroup_procs_each(const char *dir, void (*fn)(void *ctx, const char *top, pid_t pid),
		  void (*dirfn)(void *ctx, ino_t ino), void *ctx)
{
	return procs_walk(AT_FDCWD, dir, NULL, 0, fn, dirfn, ctx);
}

bool
cgroup_stale_beside(const char *inst)
{
	char parent[CGROUP_PATH_MAX];
	const char *base = strrchr(inst, '/');
	bool any = false;
	DIR *d;
	struct dirent *de;

	if (base == NULL || (size_t)(base - inst) >= sizeof(parent)) {
		return false;
	}
	memcpy(parent, inst, (size_t)(base - inst));
	parent[base - inst] = '\0';
	if ((d = opendir(parent)) == NULL) {
		return false;
	}
	while (!any && (de = readdir(d)) != NULL) {
		pid_t pid;

		/* "mcpmux.PID" or "mcpmux.PID.K"; its owner is no process here (ESRCH; EPERM:
		 * another user's, alive). */
		any = de->d_type == DT_DIR && strcmp(de->d_name, base + 1) != 0 &&
		      cgroup_instance_pid(de->d_name, &pid) == 0 && kill(pid, 0) == -1 &&
		      errno == ESRCH;
	}
	closedir(d);
	return any;
}
