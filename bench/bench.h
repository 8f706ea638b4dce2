/*
 * bench.h: small helpers shared by the benchmark programs (each program is one file;
 * everything here is static inline so that a program uses only what it needs).
 */
#ifndef MCPMUX_BENCH_H
#define MCPMUX_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static inline uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_die(const char *prog, const char *what) __attribute__((noreturn));

static inline void
bench_die(const char *prog, const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(1);
}

static inline void
bench_set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl != -1) {
		(void)fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
	}
}

/* Raise the soft limit of open files to the hard one (1,000 children need 2,000 fds). */
static inline void
bench_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * Spawn argv with its stdin and stdout on pipes (close-on-exec on our ends); stderr is
 * inherited.  Returns the pid, or -1 with errno set.
 */
static inline pid_t
bench_spawn(char *const *argv, int *to_child, int *from_child)
{
	int in[2], out[2];
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int err;

	if (pipe2(in, O_CLOEXEC) == -1) {
		return -1;
	}
	if (pipe2(out, O_CLOEXEC) == -1) {
		err = errno;
		close(in[0]);
		close(in[1]);
		errno = err;
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (err != 0) {
		close(in[1]);
		close(out[0]);
		errno = err;
		return -1;
	}
	*to_child = in[1];
	*from_child = out[0];
	return pid;
}

/* Reap child pid; its exit status as a shell reports it (128 + N for signal N). */
static inline int
bench_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			return -1;
		}
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Write all of iov to fd, waiting with poll() when the fd is non-blocking and full. */
static inline int
bench_writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);

		if (w == -1) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = fd, .events = POLLOUT };

				(void)poll(&p, 1, -1);
				continue;
			}
			return -1;
		}
		size_t left = (size_t)w;

		while (n > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

static inline int
bench_write_all(int fd, const void *p, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)p, .iov_len = len };

	return bench_writev_all(fd, &iov, 1);
}

/*
 * A field of /proc/PID/status ("RssAnon:") or /proc/PID/smaps_rollup ("Pss_Anon:"), in
 * KiB; -1 when absent.
 */
static inline long
bench_proc_kib(int pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long v = -1;
	FILE *f;

	(void)snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, klen) == 0) {
			v = strtol(line + klen, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static inline int
bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

#endif
