/*
 * mcpmux: process set-up and subcommand dispatch.
 */
#include <errno.h>
#include <ev.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/diag.h"
#include "mcpmux/keeper.h"
#include "mcpmux/sys.h"

/*
 * libev grows its arrays (a descriptor past the highest so far, more timers or pending
 * events than ever) with an allocator that aborts the process when it gets no memory:
 * every session would end with that one allocation.  Its allocations come here, where a
 * failed one gives back a reserve kept for it and is tried once more; the reserve is
 * taken again at libev's next allocation.  (256 KiB, never touched: address space, not
 * resident memory.  Given back, it makes room for an allocation up to its size: libev's
 * arrays grow by steps smaller than that but for the largest tables.)
 */
#define LOOP_RESERVE ((size_t)256 << 10)
static void *loop_reserve;

static void *
loop_realloc(void *ptr, long size) EV_NOEXCEPT
{
	void *p;

	if (size <= 0) {
		free(ptr);
		return NULL;
	}
	if (loop_reserve == NULL) {
		loop_reserve = malloc(LOOP_RESERVE);
	}
	p = realloc(ptr, (size_t)size);
	if (p == NULL && loop_reserve != NULL) {
		free(loop_reserve);
		loop_reserve = NULL;
		p = realloc(ptr, (size_t)size);
	}
	return p;
}

int
main(int argc, char **argv)
{
	struct mcpmux_options opt;
	int argc0 = argc, rc;
	char **argv0 = argv;

	/* Before anything below changes it: what a server gets back, as a direct run would. */
	sys_signals_record();
	if (sys_sanitize_stdio() == -1) {
		return 1;
	}
	loop_reserve = malloc(LOOP_RESERVE);
	ev_set_allocator(loop_realloc);
	/* A peer that goes away is an EPIPE on that stream, not the end of mcpmux. */
	(void)signal(SIGPIPE, SIG_IGN);
	/* A file past RLIMIT_FSIZE (the traffic log) is an EFBIG on that write, not the end. */
	(void)signal(SIGXFSZ, SIG_IGN);
	/*
	 * SIGUSR1 reopens the traffic log (its watcher, once the log is open); otherwise it
	 * means nothing, and a fleet-wide `pkill -USR1 mcpmux` for log rotation must kill no
	 * mcpmux: not one without a log, not `connect` or `log`, not one still starting.
	 * (Servers get the dispositions mcpmux was started with back before their exec.)
	 */
	(void)signal(SIGUSR1, SIG_IGN);
	/* What the caller blocked is the server's (sys_signals_record()), not mcpmux's. */
	sys_signals_unblock();

	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("mcpmux %s\n", MCPMUX_VERSION);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "demo") == 0) {
		return cmd_demo(argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "connect") == 0) {
		return cmd_connect(argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "log") == 0) {
		return cmd_log(argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "ctl") == 0) {
		return cmd_ctl(argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "config") == 0) {
		return cmd_config(argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "ps") == 0) {
		return cmd_ps(argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "sweep") == 0) {
		return cmd_sweep(argc - 1, argv + 1);
	}
	bool serve = argc >= 2 && strcmp(argv[1], "serve") == 0;

	/*
	 * A signal that ends a run, come before the loop watches for it, waits for the
	 * watcher (sys_signals_release()): its default action would end mcpmux without a
	 * teardown or its exit status.
	 */
	sys_signals_hold();
	if (serve) {
		argc--;
		argv++;
	}
	/* Many sessions need many descriptors; servers get the original limit back. */
	sys_raise_nofile();
	cli_defaults(&opt);
	rc = cli_parse(&opt, argc, argv, serve);
	if (rc != 0) {
		return rc == 1 ? 0 : EXIT_USAGE;
	}
	/*
	 * Buffers of big messages come from the heap and are reused while big messages flow
	 * (mapping, faulting in and unmapping a fresh one for each costs a fifth of the CPU at
	 * 1 MiB); the loop gives free memory back with malloc_trim() once mcpmux has been idle
	 * for a second (see sys_big_alloc), so an idle mcpmux stays small whatever it carried.
	 */
	(void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
	(void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
	/*
	 * The keeper first (it must not be our descendant): it ends what we started if we are
	 * killed before we can (docs/lifecycle.md).
	 */
	keeper_kill_deadline(opt.kill_deadline_ms / 1000.);
	if (keeper_start(opt.term_grace_ms / 1000., argc0, argv0) == -1) {
		diag_warn_errno("cannot start the keeper (if mcpmux is killed, what its servers "
				"started may survive it): tried again every second");
	}
	/* Descendants that daemonise are re-parented to us, not to init: we can find them. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1) {
		diag_warn_errno("cannot become a child subreaper (daemonised descendants of the "
				"server may escape teardown)");
	}
	rc = serve ? cmd_serve(&opt) : cmd_wrap(&opt);
	keeper_done();
	return rc;
}
