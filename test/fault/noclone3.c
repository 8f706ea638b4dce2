/*
 * noclone3: run a command where clone3() fails with ENOSYS, as it does under a container
 * runtime's seccomp profile that predates it, or on a kernel older than 5.3:
 *
 *   noclone3 [--errno N] [--nr SYSCALL] COMMAND [ARG...]
 *
 * For test/integration/test_escape.py: mcpmux then spawns every server the old way, and
 * the server joins its cgroup leaf itself.  --errno N fails it with errno N instead: with
 * EAGAIN (11), as when the process limit is reached, every spawn through clone3() fails
 * (test/integration/test_faults.py).  --nr fails another system call instead of clone3()
 * (by its number: pidfd_open() is 434 on every architecture).  The filter is inherited
 * across exec and fork.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_clone3
#define __NR_clone3 435 /* the same number on every architecture */
#endif

int
main(int argc, char **argv)
{
	unsigned int err = ENOSYS;
	int first = 1;

	unsigned int nr = __NR_clone3;

	for (;;) {
		if (argc > first + 1 && strcmp(argv[first], "--errno") == 0) {
			err = (unsigned int)strtoul(argv[first + 1], NULL, 10);
		} else if (argc > first + 1 && strcmp(argv[first], "--nr") == 0) {
			nr = (unsigned int)strtoul(argv[first + 1], NULL, 10);
		} else {
			break;
		}
		first += 2;
	}
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

	if (argc <= first || err == 0 || err > 4095) {
		fprintf(stderr, "usage: noclone3 [--errno N] [--nr SYSCALL] COMMAND [ARG...]\n");
		return 2;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == -1) {
		fprintf(stderr, "noclone3: cannot install the filter: %s\n", strerror(errno));
		return 2;
	}
	execvp(argv[first], argv + first);
	fprintf(stderr, "noclone3: %s: %s\n", argv[first], strerror(errno));
	return 127;
}
