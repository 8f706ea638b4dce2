/*
 * sys: EINTR-safe system call wrappers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpmux/sys.h"

int
sys_set_nonblock(int fd, int on)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags == -1) {
		return -1;
	}
	flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, flags);
}

ssize_t
sys_read(int fd, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = read(fd, buf, len);
	} while (n == -1 && errno == EINTR);
	return n;
}

ssize_t
sys_writev(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	do {
		n = writev(fd, iov, iovcnt);
	} while (n == -1 && errno == EINTR);
	return n;
}

int
sys_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1) {
			if (errno == EINTR) {
				continue;
			}
			return -1;
		}
		if (n == 0) {
			errno = ENOSPC;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void
sys_close(int *fd)
{
	if (*fd >= 0) {
		(void)close(*fd);
		*fd = -1;
	}
}

int
sys_sanitize_stdio(void)
{
	struct stat st;

	for (int fd = 0; fd <= 2; fd++) {
		if (fstat(fd, &st) == 0 || errno != EBADF) {
			continue;
		}
		int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);

		if (nfd == -1) {
			return -1;
		}
		if (nfd != fd) {
			/* Cannot happen: open() returns the lowest free fd. */
			(void)close(nfd);
			errno = EBADF;
			return -1;
		}
	}
	return 0;
}

bool sys_big_alloc;
const char *sys_chunk_lo, *sys_chunk_hi;
void (*sys_chunk_done)(void);
