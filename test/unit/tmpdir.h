/*
 * tmpdir: a scratch directory for the unit tests that read a fake /proc or runtime
 * directory (test_proctree, test_procscan, test_survey).  Include after cmocka.h.
 */
#ifndef MCPMUX_TEST_TMPDIR_H
#define MCPMUX_TEST_TMPDIR_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Make $TMPDIR/mcpmux-NAME-XXXXXX (or under /tmp) into dir.  0, or -1. */
static inline int
tmpdir_make(char *dir, size_t len, const char *name)
{
	const char *tmp = getenv("TMPDIR");

	(void)snprintf(dir, len, "%s/mcpmux-%s-XXXXXX",
		       tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", name);
	return mkdtemp(dir) != NULL ? 0 : -1;
}

static inline int
tmpdir_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove dir and everything in it.  0, or -1. */
static inline int
tmpdir_remove(const char *dir)
{
	return nftw(dir, tmpdir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write a file whole (the test fails if it cannot). */
static inline void
write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

/* The path that fmt formats, into path (len bytes): the test fails if it would be cut. */
static inline void
tmpdir_path(char *path, size_t len, const char *fmt, va_list ap)
{
	int n = vsnprintf(path, len, fmt, ap);

	assert_true(n >= 0 && (size_t)n < len);
}

/* tmpdir_path() with its arguments. */
static inline void __attribute__((format(printf, 3, 4)))
path_at(char *path, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tmpdir_path(path, len, fmt, ap);
	va_end(ap);
}

/*
 * A new directory at the path that fmt formats, or with there, one already there will do
 * (the test fails otherwise).
 */
static inline void
tmpdir_mkdir(bool there, const char *fmt, va_list ap)
{
	char path[PATH_MAX + 64];

	tmpdir_path(path, sizeof(path), fmt, ap);
	if (mkdir(path, 0755) == -1) {
		assert_true(there && errno == EEXIST);
	}
}

/* write_file() at the path that fmt formats. */
static inline void __attribute__((format(printf, 3, 4)))
write_file_at(const char *data, size_t len, const char *fmt, ...)
{
	char path[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	tmpdir_path(path, sizeof(path), fmt, ap);
	va_end(ap);
	write_file(path, data, len);
}

/* A new directory at the path that fmt formats (the test fails if it cannot). */
static inline void __attribute__((format(printf, 1, 2))) mkdir_at(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tmpdir_mkdir(false, fmt, ap);
	va_end(ap);
}

/* mkdir_at(), where a directory already there will do. */
static inline void __attribute__((format(printf, 1, 2))) dir_at(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tmpdir_mkdir(true, fmt, ap);
	va_end(ap);
}

/* A symbolic link to target at the path that fmt formats (the test fails if it cannot). */
static inline void __attribute__((format(printf, 2, 3)))
symlink_at(const char *target, const char *fmt, ...)
{
	char path[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	tmpdir_path(path, sizeof(path), fmt, ap);
	va_end(ap);
	assert_int_equal(symlink(target, path), 0);
}

#endif
