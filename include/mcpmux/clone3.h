/*
 * clone3: the kernel's struct clone_args up to its cgroup member (CLONE_ARGS_SIZE_VER2,
 * 88 bytes), for a child born in a cgroup (CLONE_INTO_CGROUP, Linux 5.7).  Declared here:
 * <linux/sched.h> clashes with <sched.h>, and older ones lack the member.
 */
#ifndef MCPMUX_CLONE3_H
#define MCPMUX_CLONE3_H

#include <stdint.h>

struct spawn_clone_args {
	uint64_t flags;
	uint64_t unused[3]; /* pidfd, child_tid, parent_tid */
	uint64_t exit_signal;
	uint64_t unused2[5]; /* stack, stack_size, tls, set_tid, set_tid_size */
	uint64_t cgroup;
};
_Static_assert(sizeof(struct spawn_clone_args) == 88, "CLONE_ARGS_SIZE_VER2");
#define SPAWN_CLONE_INTO_CGROUP 0x200000000ULL

#endif
