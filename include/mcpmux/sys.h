/*
 * sys: thin, EINTR-safe wrappers around the system calls every module uses.
 *
 * Every function returns what the call it wraps returns (-1 with errno set on failure),
 * with EINTR retried.  EAGAIN is passed up: in an event loop it means "arm the watcher".
 */
#ifndef MCPMUX_SYS_H
#define MCPMUX_SYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SYS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SYS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* clang-format off */
/* The object that embeds member `member`, given a pointer to that member (type-checked). */
#define container_of(ptr, type, member)                                   \
	((void)sizeof((ptr) == &((type *)0)->member),                     \
	 (type *)(void *)((char *)(ptr) - offsetof(type, member)))
/* clang-format on */

int sys_set_nonblock(int fd, int on);
ssize_t sys_read(int fd, void *buf, size_t len);
ssize_t sys_writev(int fd, const struct iovec *iov, int iovcnt);
/* Write all of buf to a blocking fd (short writes continued); -1 on error. */
int sys_write_all(int fd, const void *buf, size_t len);
/* close(2) that leaves EINTR alone (on Linux the fd is gone either way). */
void sys_close(int *fd);
/* Make fds 0, 1 and 2 valid (open /dev/null where one is closed). */
int sys_sanitize_stdio(void);
/*
 * Set when a buffer grew past 64 KiB for a big message: the event loop hands freed
 * memory back to the system once mcpmux has been idle for a second (malloc_trim).
 */
extern bool sys_big_alloc;
/*
 * The read chunk whose lines are being handed out, [sys_chunk_lo, sys_chunk_hi), NULL
 * otherwise.  A line inside it stays valid until sys_chunk_done() is called, just before
 * the chunk's buffer is reused: a consumer may hold it by reference until then instead
 * of copying it (the server's stdin queue does, and copies only what is left when the
 * chunk is done).
 */
extern const char *sys_chunk_lo, *sys_chunk_hi;
extern void (*sys_chunk_done)(void);

#endif
