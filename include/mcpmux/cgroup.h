/*
 * cgroup: a cgroup v2 subtree of mcpmux's own, where one can be made.
 *
 * A cgroup holds every process started in it and every descendant, whatever they do
 * (double fork, setsid, a cleared environment): it is the exact answer to "the whole
 * tree", and `cgroup.kill` ends all of it at once.  mcpmux can use one only where its
 * own cgroup is delegated to it and writable (as root, or a systemd unit with
 * Delegate=yes): then it makes an instance cgroup under its own ("mcpmux.PID"), a leaf
 * per server ("s.N") that the server joins before it execs, kills a leaf at the SIGKILL
 * step of a teardown, counts a tree as empty only when its leaf is unpopulated too, and
 * removes the leaves and the instance cgroup when they are empty.  Elsewhere nothing
 * changes: the process walk (proctree.h) finds the tree by pid, group and cookie.
 *
 * Plain file operations on cgroupfs; no event loop.  The cgroupfs mount and the process's
 * own cgroup come from /proc/self/mountinfo and /proc/self/cgroup.
 */
#ifndef MCPMUX_CGROUP_H
#define MCPMUX_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CGROUP_PATH_MAX 512

/*
 * Make the instance cgroup for process pid under the caller's own v2 cgroup, into out:
 * "mcpmux.PID", or "mcpmux.PID.K" when that name is taken (by an instance of another pid
 * namespace, or by a killed one whose keeper still works in it): a cgroup that is there
 * already is never shared.  0, or -1 (errno) when there is no usable cgroup v2 here: no
 * cgroup2 mount, not writable, no cgroup.kill (kernels before 5.14).
 */
int cgroup_instance_make(char *out, size_t len, pid_t pid);
/* Where cgroup2 is mounted, into out.  0, or -1 (errno). */
int cgroup_mount(char *out, size_t len);
/* The caller's own v2 cgroup directory, into out.  0, or -1 (errno). */
int cgroup_own(char *out, size_t len);
/* The PID of an instance cgroup's name, "mcpmux.PID" or "mcpmux.PID.K".  0, or -1. */
int cgroup_instance_pid(const char *name, pid_t *pid);
/*
 * fn(ctx, top, pid) for each process that the cgroup.procs of dir and of the cgroups below
 * it list; top: the name of the cgroup right below dir that it is in (a leaf), NULL when it
 * is in dir itself.  dirfn (if not NULL): (ctx, its inode) for each cgroup below dir.  0,
 * or -1 with errno when a part of it could not be read (a cgroup.procs or a directory; one
 * removed meanwhile is no error).
 */
int cgroup_procs_each(const char *dir, void (*fn)(void *ctx, const char *top, pid_t pid),
		      void (*dirfn)(void *ctx, ino_t ino), void *ctx);
/*
 * A leaf for a server under the instance cgroup: out = inst/s.N, new (the instance
 * cgroup is made again if an empty one was removed meanwhile, twice at most).  0 or -1 (errno;
 * EEXIST: the name is another's).
 */
int cgroup_leaf_make(const char *inst, unsigned long long n, char *out, size_t len);
/*
 * Kill every process in dir and below: cgroup.kill, then SIGKILL to each process that the
 * cgroup.procs of dir and of the cgroups below it list (through a pidfd, if it is still
 * listed once that is open; by its pid when no pidfd can be had), for the one cgroup.kill
 * leaves alive (a process whose main thread has exited while its other threads run on).
 * 0 or -1 (errno: cgroup.kill's).
 */
int cgroup_kill(const char *dir);
/* 1 when dir (or a cgroup below it) holds a process, 0 when not, -1 (errno) unknown. */
int cgroup_populated(const char *dir);
/*
 * Remove an empty leaf (or instance and its empty leaves), and the empty cgroups below
 * it, depth first (a nested mcpmux's).  0, or -1 (errno; EBUSY: a process is still in
 * it, or in a cgroup below it that is not empty).
 */
int cgroup_remove(const char *dir);
/*
 * cgroup_remove(), but a cgroup below dir whose inode known() does not take (one made
 * after dir was judged: maybe a starting instance's) is neither entered nor removed.
 */
int cgroup_remove_known(const char *dir, bool (*known)(void *ctx, ino_t ino), void *ctx);
/*
 * Is there beside inst an "mcpmux.N[.K]" cgroup whose N is no process here (a gone
 * instance's, or one of another pid namespace's): the cheap first look of the clean-up at
 * a start (survey_start_sweep()), which judges them by sweep's rules.
 */
bool cgroup_stale_beside(const char *inst);

#endif
