/*
 * faultshim: an LD_PRELOAD library that makes system calls fail the way the kernel may,
 * so that the integration tests can check that mcpmux copes.
 *
 *   LD_PRELOAD=faultshim.so FAULT_EINTR=200 FAULT_SHORT=300 mcpmux -- server
 *
 * Controlled by the environment (read once, at load):
 *
 *   FAULT_SEED=N          seed of the generator (1); the same seed gives the same sequence
 *                         of decisions for the same sequence of calls
 *   FAULT_EINTR=P         read, readv, write, writev: fail with EINTR before doing anything,
 *                         P times in 1000
 *   FAULT_SHORT=P         the same calls: move fewer bytes than asked (1 .. n-1, uniformly),
 *                         P times in 1000, for transfers of at least FAULT_SHORT_MIN bytes
 *   FAULT_SHORT_MIN=N     (16) smaller transfers are never cut: a pipe never splits a
 *                         write of at most PIPE_BUF bytes that a reader asks for whole
 *   FAULT_SHORT_FIRST=N   the first N transfers that may be cut are cut, reads and writes
 *                         each (0): a test that needs some is not left to chance
 *   FAULT_FORK_FAIL=N,..  the Nth process creation (from 1) fails with EAGAIN: calls of
 *                         fork(), clone(), clone3 (through syscall()) and
 *                         posix_spawn[p]() are counted together
 *                         (vfork() is not interposed: its child would return through
 *                         the shim's stack frame)
 *   FAULT_PIPE2_FAIL=N,.. the Nth call of pipe2() fails with EMFILE
 *   FAULT_SOCKETPAIR_FAIL=N,.. the Nth call of socketpair() fails with EMFILE
 *   FAULT_SENDFD_EAGAIN=N,.. the Nth call of sendmsg() that passes descriptors fails with
 *                         EAGAIN (a full socket)
 *   FAULT_SENDREC_EAGAIN=N,.. the Nth call of sendmsg() on a SOCK_SEQPACKET socket that
 *                         passes no descriptors (a freed pool slot's record) fails with
 *                         EAGAIN
 *   FAULT_NO_CLOSE_RANGE=1 close_range() fails with ENOSYS, as before Linux 5.9: mcpmux
 *                         then starts its servers with clone(), which the shim sees,
 *                         where it would start them with an inline clone3() that it
 *                         cannot see; =2: in mcpmux's forked children too (the keeper's
 *                         middle process and the keeper)
 *   FAULT_CLONE_STOP=1    the process stops itself (SIGSTOP) right after each clone()
 *                         that made a child: a test can kill it between a server's start
 *                         and what follows it
 *   FAULT_FORK_STOP=1     the process stops itself (SIGSTOP) right after its first fork()
 *                         that made a child (mcpmux's first is its keeper's, before its
 *                         signal watchers are there): a test can signal it that early
 *   FAULT_KEEPER_STOP=1   a process forked by a child of the process (before any exec;
 *                         not one forked by a grandchild) stops itself (SIGSTOP) at its
 *                         start: mcpmux's keeper, held before its first act (with the
 *                         name its middle process gave it), as on a loaded machine, while
 *                         mcpmux goes on
 *   FAULT_MIDDLE_STOP=N   the child made by the process's Nth fork() (mcpmux's Nth keeper's
 *                         middle process: the first keeper's is the 1st) stops itself
 *                         (SIGSTOP) when it calls fork(), before the keeper is forked
 *   FAULT_MIDDLE_KILL=N   that child kills itself (SIGKILL) right after its fork() made
 *                         a child (the keeper), before it can tell mcpmux its pid, as a
 *                         signal to every process named mcpmux-keeper would
 *   FAULT_CHILD_UNSHARE=E close_range() with CLOSE_RANGE_UNSHARE fails with errno E (a
 *                         number) when a child calls it before its exec (a server's first
 *                         act, in the memory it shares with mcpmux), as when the kernel
 *                         has no memory for the copy of the table; mcpmux's own calls
 *                         pass
 *   FAULT_ACCEPT4_FAIL=N,.. the Nth call of accept4() fails with EMFILE
 *   FAULT_ACCEPT4_ERRNO=E  with FAULT_ACCEPT4_FAIL: fails with errno E (a number) instead
 *                         (EPROTO: the network error of one pending TCP connection)
 *   FAULT_ACCEPT4_ENFILE_MS=T every call of accept4() fails with ENFILE for T milliseconds
 *                         from the first one (the system's file table full: a descriptor
 *                         given up does not help)
 *   FAULT_LINK_FAIL=N,..  the Nth call of link() or linkat() (counted together) fails with
 *                         EPERM (a file system without hard links, such as vfat)
 *   FAULT_LSTAT_ENOENT=SUFFIX lstat() of a path that ends with SUFFIX fails with ENOENT,
 *                         whatever is there: a file that another process makes right
 *                         after the process looked for it
 *   FAULT_FSYNC_STOP=N,.. the Nth call of fsync() stops the process (SIGSTOP) before it
 *                         syncs: a test sees it stopped in the middle of writing a file
 *   FAULT_FSYNC_DIR=E     fsync() of a directory fails with errno E (a number), syncing
 *                         nothing, as on a file system that cannot sync one
 *   FAULT_XATTR_FAIL=NAME fsetxattr() of the extended attribute NAME fails with EPERM (one
 *                         that only a privileged process may set)
 *   FAULT_NOSPC_FILE=SUFFIX the first writev() of two lines or more to a file whose path
 *                         ends with SUFFIX takes its first line only, and the next
 *                         FAULT_NOSPC_CALLS (1) writev() calls to that file (wherever it
 *                         is renamed) fail with ENOSPC: a file system that fills up
 *                         exactly at the end of a line, and has room again after
 *   FAULT_NOSPC_CUT=N     with FAULT_NOSPC_FILE: that writev() takes the first N bytes of
 *                         its first line only (a record cut in the middle)
 *   FAULT_PWRITE_NOSPC=NAME pwrite() to a file whose path (as /proc/self/fd/N shows it)
 *                         holds NAME fails with ENOSPC, for the first FAULT_PWRITE_NOSPC_CALLS
 *                         (1) such calls: a file system that is full, and has room again
 *                         after
 *   FAULT_FULL_FILE=SUFFIX write() and writev() to a file whose path ends with SUFFIX (as
 *   FAULT_FULL_WHILE=PATH /proc/self/fd/N shows it) fail with ENOSPC, writing nothing,
 *                         while the file PATH exists: a file system that is full until
 *                         the test makes room (removes PATH), such as a stderr file's
 *   FAULT_PWRITE_NOSPC_END=1 with FAULT_PWRITE_NOSPC: the path must end with NAME (one
 *                         file of a kind, such as a pool's first slot, "s.PID.1": ".1")
 *   FAULT_FLOCK_SLOW=N,.. the Nth call of flock() sleeps FAULT_FLOCK_MS milliseconds (1000)
 *                         before it locks (with FAULT_FLOCK_AFTER=1: after): a window
 *                         for another process to act
 *   FAULT_FLOCK_BUSY_STOP=1 the first flock() of a directory that fails with EWOULDBLOCK
 *                         (another process holds its lock) stops the process (SIGSTOP)
 *                         before it returns: a test sees the moment the process found the
 *                         lock held, and can let it go before the process goes on
 *   FAULT_ENVIRON_FAIL=PID  opening /proc/PID/environ fails with EACCES (a process of the
 *                         user's whose environment cannot be read).
 *   FAULT_PROC_ERRNO=E    opening /proc/PID/task or a file under it fails with errno E (a
 *   FAULT_PROC_MS=T       number), for T milliseconds from the first such open (as with a
 *                         full descriptor table, or hidepid)
 *   FAULT_NOKILL=COMM     processes whose /proc/PID/comm is COMM cannot be signalled:
 *                         kill() and pidfd_send_signal (through syscall()) fail with EPERM
 *                         for them, as for a process of another user; kill() of a process
 *                         group signals the group's other members one by one
 *   FAULT_PIDFD_STOP=COMM the first pidfd_open() (through syscall()) of a process whose
 *                         /proc/PID/comm is COMM stops the process (SIGSTOP) before it
 *                         opens: a test sees it stopped between the walk of /proc that
 *                         found that process and its signal, and can make it fork then
 *   FAULT_LEAF_BUSY_MS=T  a server's cgroup leaf (".../mcpmux.PID/s.N") stays busy for T
 *                         milliseconds from the first rmdir() of it: rmdir() fails with
 *                         EBUSY and its cgroup.events reads "populated 1", as on kernels
 *                         where a reaped process leaves its cgroup a moment after the reap
 *   FAULT_LEAF_GONE=AT    a server's cgroup leaf is removed just after mcpmux made it (AT
 *                         "mkdir": its mkdir() succeeds, then the leaf is gone) or just
 *                         after mcpmux opened it for clone3()'s CLONE_INTO_CGROUP ("open":
 *                         clone3() then fails with ENOENT), as when another process removes
 *                         it before the server is started in it
 *   FAULT_INST_GONE=N,..  the Nth mkdir() of an instance cgroup (".../mcpmux.PID[.K]") that
 *                         succeeds is undone right after (the cgroup removed), as when
 *                         another process removes it before a server's leaf is made in it:
 *                         mcpmux's start makes the 1st, a leaf's making it again the next
 *   FAULT_EIO_FILE=NAME   fgets() of a regular file whose name (as /proc/self/fd/N shows
 *   FAULT_EIO_AT=N        it: after a rename, the new one) ends with NAME reads as if its
 *                         bytes from offset N (0) on were on a bad block: a read that
 *                         reaches it takes the bytes before it and fails with EIO and the
 *                         stream's error flag set, as glibc's fgets() does when a read()
 *                         fails mid-line, and so does one that starts there (while the
 *                         file has bytes there; at its end, the end).  stdio's own read()
 *                         calls cannot be interposed: fgets() is what `mcpmux log` reads
 *                         with
 *   FAULT_OPEN_STOP=NAME  the first open() of a path that ends with NAME stops the
 *                         process (SIGSTOP) before it opens: a test sees it stopped between
 *                         looking at a path and opening it, and can put something else there
 *   FAULT_STDIO_SHARED=1  open() of /proc/self/fd/0, 1 or 2 fails with ENOENT, as without
 *                         /proc: mcpmux then works on the descriptions of its stdin,
 *                         stdout and stderr that it shares with others (O_NONBLOCK set on
 *                         them while it runs, and their flags given back at its exit)
 *   FAULT_MALLOC_AFTER=MARKER once a read() or readv() returns bytes that hold MARKER
 *                         (the first such read only; within one iovec for readv(); or
 *                         an fgets() whose line holds it: `mcpmux log`'s reads), the
 *                         next FAULT_MALLOC_COUNT (1) calls of malloc(), calloc() or
 *                         realloc() fail with ENOMEM: memory that runs out just after a
 *                         given message came in.  C++'s operator new calls malloc() and
 *                         is counted too (simdjson allocates with std::nothrow: it sees
 *                         NULL, not an exception)
 *   FAULT_MALLOC_MIN=N    with FAULT_MALLOC_AFTER: only allocations of at least N bytes
 *                         (0) fail and are counted; smaller ones pass (a big message's
 *                         copy fails where the small error that replaces it does not)
 *   FAULT_MALLOC_MAX=N    with FAULT_MALLOC_AFTER: only allocations of at most N bytes
 *                         (no bound) fail and are counted; larger ones pass (with
 *                         FAULT_MALLOC_MIN: one size, such as a new table's header)
 *   FAULT_MALLOC_THEN=N   with FAULT_MALLOC_AFTER: once the last of those calls failed,
 *                         the next N (0) calls fail too, of any size (of FN only, with
 *                         FAULT_MALLOC_ONLY): a big block that does not fit, then no
 *                         memory at all for the small one that would replace it
 *   FAULT_MALLOC_ONLY=FN  with FAULT_MALLOC_AFTER: only calls of FN ("malloc", "calloc"
 *                         or "realloc") fail and are counted (a buffer that realloc()
 *                         grows while a line comes in, in pieces or not, is left alone).
 *                         The next allocator (glibc's, or AddressSanitizer's) is found
 *                         with dlsym(RTLD_NEXT) at the first allocation; what dlsym()
 *                         allocates meanwhile comes from an 8 KiB arena of the shim's
 *                         that free() leaves alone.
 *                         AddressSanitizer intercepts malloc() before the shim: tests of
 *                         this fault run on a build without sanitizers only
 *   FAULT_LOG=PATH        at exit, append one line of counters to PATH:
 *                         "pid=P reads=R writes=W eintr=E short_reads=S short_writes=T
 *                          spawn=F pipe2=I accept4=A failed=X"
 *
 * FAULT_EINTR and FAULT_SHORT apply to pipes and sockets only: libev's eventfd and /proc
 * files are left alone (an eventfd read is never short; a regular file is not what is
 * under test); the faults of a named file (FAULT_NOSPC_FILE, FAULT_PWRITE_NOSPC,
 * FAULT_FULL_FILE, FAULT_EIO_FILE) apply to that file only.
 * Faults apply in the process that loaded the library, never in its children: the
 * constructor removes LD_PRELOAD from the environment, and a forked child (before its
 * exec) sees the parent's pid recorded and passes every call through, but the
 * close_range() that FAULT_CHILD_UNSHARE fails and the fork() of a child after which
 * FAULT_KEEPER_STOP stops the grandchild, which are a child's.
 *
 * With AddressSanitizer (gcc's shared runtime), the library must not be sanitized itself,
 * and ASAN_OPTIONS must hold verify_asan_link_order=0: the runtime otherwise insists on
 * being first in the link map.  Calls then go shim -> ASan's interceptor -> libc.
 */
#define _GNU_SOURCE /* clone(), RTLD_NEXT */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MAX_NTH 16
#define MAX_IOV 1024

struct nth {
	unsigned long at[MAX_NTH]; /* call numbers that fail, from 1 */
	size_t n;
	unsigned long calls;
};

static struct {
	bool ready;
	pid_t owner;
	uint64_t rng;
	unsigned eintr, shorts; /* per mille */
	size_t short_min;
	unsigned long short_first;
	struct nth fork, pipe2, socketpair, sendfd, sendrec, accept4, flock, link, fsync_stop,
		inst_gone;
	unsigned long flock_ms;			/* FAULT_FLOCK_MS */
	bool flock_after;			/* FAULT_FLOCK_AFTER */
	bool flock_busy_stop;			/* FAULT_FLOCK_BUSY_STOP, false once it stopped */
	bool no_close_range;			/* FAULT_NO_CLOSE_RANGE */
	bool no_close_range_children;		/* FAULT_NO_CLOSE_RANGE=2 */
	bool stdio_shared;			/* FAULT_STDIO_SHARED */
	int child_unshare;			/* FAULT_CHILD_UNSHARE */
	bool clone_stop;			/* FAULT_CLONE_STOP */
	bool fork_stop;				/* FAULT_FORK_STOP, false once it stopped */
	bool keeper_stop;			/* FAULT_KEEPER_STOP */
	unsigned long middle_stop, middle_kill; /* FAULT_MIDDLE_STOP, FAULT_MIDDLE_KILL */
	unsigned long forks;			/* fork() calls that made a child, so far */
	int log_fd;
	unsigned long reads, writes, n_eintr, n_short_reads, n_short_writes, n_failed;
} F = { .log_fd = -1, .short_min = 16 };

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static pid_t (*real_fork)(void);
static int (*real_clone)(int (*)(void *), void *, int, void *, ...);
static int (*real_posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			       const posix_spawnattr_t *, char *const[], char *const[]);
static int (*real_posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
				const posix_spawnattr_t *, char *const[], char *const[]);
static int (*real_pipe2)(int[2], int);
static int (*real_socketpair)(int, int, int, int[2]);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_accept4)(int, __SOCKADDR_ARG, socklen_t *__restrict, int);
static int (*real_flock)(int, int);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_fsync)(int);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_fsetxattr)(int, const char *, const void *, size_t, int);
static int (*real_kill)(pid_t, int);
static long (*real_syscall)(long, ...);
static char nokill[32];	      /* FAULT_NOKILL */
static char pidfd_stop[32];   /* FAULT_PIDFD_STOP */
static bool pidfd_stopped;    /* ...and it did */
static char xattr_fail[64];   /* FAULT_XATTR_FAIL */
static char lstat_enoent[64]; /* FAULT_LSTAT_ENOENT */
static int (*real_open)(const char *, int, ...);
static int proc_errno;		  /* FAULT_PROC_ERRNO */
static char environ_fail[64];	  /* FAULT_ENVIRON_FAIL: /proc/PID/environ */
static int fsync_dir_errno;	  /* FAULT_FSYNC_DIR */
static long proc_ms;		  /* FAULT_PROC_MS */
static struct timespec proc_from; /* the window's start, 0: not yet */
static long leaf_busy_ms;	  /* FAULT_LEAF_BUSY_MS */
static char nospc_file[64];	  /* FAULT_NOSPC_FILE */
static bool nospc_done;		  /* the line is cut: the file below fails */
static dev_t nospc_dev;		  /* the file whose line was cut */
static ino_t nospc_ino;
static unsigned long nospc_left;  /* FAULT_NOSPC_CALLS: writev() calls left to fail */
static size_t nospc_cut;	  /* FAULT_NOSPC_CUT */
static char pwrite_nospc[64];	  /* FAULT_PWRITE_NOSPC */
static unsigned long pwrite_left; /* FAULT_PWRITE_NOSPC_CALLS: pwrite() calls left to fail */
static bool pwrite_end;		  /* FAULT_PWRITE_NOSPC_END: NAME ends the path */
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static char full_file[64];	     /* FAULT_FULL_FILE */
static char full_while[256];	     /* FAULT_FULL_WHILE */
static long accept4_enfile_ms;	     /* FAULT_ACCEPT4_ENFILE_MS */
static int accept4_errno = EMFILE;   /* FAULT_ACCEPT4_ERRNO */
static struct timespec accept4_from; /* its window's start, 0: not yet */
static int (*real_rmdir)(const char *);
static int (*real_mkdir)(const char *, mode_t);
static char leaf_gone[8]; /* FAULT_LEAF_GONE: "mkdir", "open" or "" */
static int (*real_close_range)(unsigned int, unsigned int, int);
static char *(*real_fgets)(char *, int, FILE *);
static char open_stop[256];	   /* FAULT_OPEN_STOP, "" once it stopped */
static char eio_file[256];	   /* FAULT_EIO_FILE */
static off_t eio_at;		   /* FAULT_EIO_AT */
static char malloc_after[256];	   /* FAULT_MALLOC_AFTER, "" once it was seen */
static size_t malloc_min;	   /* FAULT_MALLOC_MIN */
static size_t malloc_max;	   /* FAULT_MALLOC_MAX */
static unsigned long malloc_count; /* FAULT_MALLOC_COUNT */
static unsigned long malloc_left;  /* allocations left to fail, once armed */
static unsigned long malloc_then;  /* FAULT_MALLOC_THEN */
static unsigned long malloc_more;  /* of those, left to fail */
static char malloc_only[8];	   /* FAULT_MALLOC_ONLY, "": any */
#define MAX_LEAVES 64
static struct {
	char path[256];
	struct timespec from;
} leaves[MAX_LEAVES];
static size_t n_leaves;

static unsigned long
env_num(const char *name, unsigned long dflt)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? strtoul(v, NULL, 10) : dflt;
}

static void
env_nth(const char *name, struct nth *n)
{
	const char *v = getenv(name);

	while (v != NULL && *v != '\0' && n->n < MAX_NTH) {
		char *end;
		unsigned long k = strtoul(v, &end, 10);

		if (end == v) {
			break;
		}
		n->at[n->n++] = k;
		v = *end == ',' ? end + 1 : end;
	}
}

static bool
nth_fails(struct nth *n)
{
	n->calls++;
	for (size_t i = 0; i < n->n; i++) {
		if (n->at[i] == n->calls) {
			F.n_failed++;
			return true;
		}
	}
	return false;
}

static void *
next_symbol(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p == NULL) {
		static const char msg[] = "faultshim: a symbol is missing\n";

		(void)syscall(SYS_write, 2, msg, sizeof(msg) - 1);
		abort();
	}
	return p;
}

static void
resolve(void)
{
	if (real_read != NULL) {
		return;
	}
	*(void **)&real_readv = next_symbol("readv");
	*(void **)&real_write = next_symbol("write");
	*(void **)&real_writev = next_symbol("writev");
	*(void **)&real_fork = next_symbol("fork");
	*(void **)&real_clone = next_symbol("clone");
	*(void **)&real_posix_spawn = next_symbol("posix_spawn");
	*(void **)&real_posix_spawnp = next_symbol("posix_spawnp");
	*(void **)&real_pipe2 = next_symbol("pipe2");
	*(void **)&real_socketpair = next_symbol("socketpair");
	*(void **)&real_sendmsg = next_symbol("sendmsg");
	*(void **)&real_accept4 = next_symbol("accept4");
	*(void **)&real_flock = next_symbol("flock");
	*(void **)&real_link = next_symbol("link");
	*(void **)&real_linkat = next_symbol("linkat");
	*(void **)&real_fsync = next_symbol("fsync");
	*(void **)&real_lstat = next_symbol("lstat");
	*(void **)&real_fsetxattr = next_symbol("fsetxattr");
	*(void **)&real_kill = next_symbol("kill");
	*(void **)&real_syscall = next_symbol("syscall");
	*(void **)&real_open = next_symbol("open");
	*(void **)&real_rmdir = next_symbol("rmdir");
	*(void **)&real_mkdir = next_symbol("mkdir");
	*(void **)&real_close_range = next_symbol("close_range");
	*(void **)&real_fgets = next_symbol("fgets");
	*(void **)&real_pwrite = next_symbol("pwrite");
	*(void **)&real_read = next_symbol("read");
}

__attribute__((constructor)) static void
faultshim_init(void)
{
	const char *log = getenv("FAULT_LOG");

	resolve();
	F.owner = getpid();
	F.rng = env_num("FAULT_SEED", 1) * 0x9e3779b97f4a7c15u + 1;
	F.eintr = (unsigned)env_num("FAULT_EINTR", 0);
	F.shorts = (unsigned)env_num("FAULT_SHORT", 0);
	F.short_min = env_num("FAULT_SHORT_MIN", 16);
	F.short_min = F.short_min < 2 ? 2 : F.short_min;
	F.short_first = env_num("FAULT_SHORT_FIRST", 0);
	env_nth("FAULT_FORK_FAIL", &F.fork);
	env_nth("FAULT_PIPE2_FAIL", &F.pipe2);
	env_nth("FAULT_SOCKETPAIR_FAIL", &F.socketpair);
	env_nth("FAULT_SENDFD_EAGAIN", &F.sendfd);
	env_nth("FAULT_SENDREC_EAGAIN", &F.sendrec);
	env_nth("FAULT_ACCEPT4_FAIL", &F.accept4);
	env_nth("FAULT_FLOCK_SLOW", &F.flock);
	env_nth("FAULT_LINK_FAIL", &F.link);
	env_nth("FAULT_FSYNC_STOP", &F.fsync_stop);
	env_nth("FAULT_INST_GONE", &F.inst_gone);
	F.flock_ms = env_num("FAULT_FLOCK_MS", 1000);
	F.flock_after = env_num("FAULT_FLOCK_AFTER", 0) != 0;
	F.flock_busy_stop = env_num("FAULT_FLOCK_BUSY_STOP", 0) != 0;
	F.no_close_range = env_num("FAULT_NO_CLOSE_RANGE", 0) != 0;
	F.no_close_range_children = env_num("FAULT_NO_CLOSE_RANGE", 0) == 2;
	F.stdio_shared = env_num("FAULT_STDIO_SHARED", 0) != 0;
	F.child_unshare = (int)env_num("FAULT_CHILD_UNSHARE", 0);
	F.clone_stop = env_num("FAULT_CLONE_STOP", 0) != 0;
	F.fork_stop = env_num("FAULT_FORK_STOP", 0) != 0;
	F.keeper_stop = env_num("FAULT_KEEPER_STOP", 0) != 0;
	F.middle_stop = env_num("FAULT_MIDDLE_STOP", 0);
	F.middle_kill = env_num("FAULT_MIDDLE_KILL", 0);
	proc_errno = (int)env_num("FAULT_PROC_ERRNO", 0);
	fsync_dir_errno = (int)env_num("FAULT_FSYNC_DIR", 0);
	proc_ms = (long)env_num("FAULT_PROC_MS", 0);
	leaf_busy_ms = (long)env_num("FAULT_LEAF_BUSY_MS", 0);
	accept4_enfile_ms = (long)env_num("FAULT_ACCEPT4_ENFILE_MS", 0);
	accept4_errno = (int)env_num("FAULT_ACCEPT4_ERRNO", EMFILE);
	if (getenv("FAULT_XATTR_FAIL") != NULL) {
		(void)snprintf(xattr_fail, sizeof(xattr_fail), "%s", getenv("FAULT_XATTR_FAIL"));
	}
	if (getenv("FAULT_ENVIRON_FAIL") != NULL) {
		(void)snprintf(environ_fail, sizeof(environ_fail), "/proc/%s/environ",
			       getenv("FAULT_ENVIRON_FAIL"));
	}
	if (getenv("FAULT_LSTAT_ENOENT") != NULL) {
		(void)snprintf(lstat_enoent, sizeof(lstat_enoent), "%s",
			       getenv("FAULT_LSTAT_ENOENT"));
	}
	if (getenv("FAULT_OPEN_STOP") != NULL) {
		(void)snprintf(open_stop, sizeof(open_stop), "%s", getenv("FAULT_OPEN_STOP"));
	}
	if (getenv("FAULT_LEAF_GONE") != NULL) {
		(void)snprintf(leaf_gone, sizeof(leaf_gone), "%s", getenv("FAULT_LEAF_GONE"));
	}
	if (getenv("FAULT_EIO_FILE") != NULL) {
		(void)snprintf(eio_file, sizeof(eio_file), "%s", getenv("FAULT_EIO_FILE"));
	}
	eio_at = (off_t)env_num("FAULT_EIO_AT", 0);
	if (getenv("FAULT_NOSPC_FILE") != NULL) {
		(void)snprintf(nospc_file, sizeof(nospc_file), "%s", getenv("FAULT_NOSPC_FILE"));
		nospc_cut = env_num("FAULT_NOSPC_CUT", 0);
		nospc_left = env_num("FAULT_NOSPC_CALLS", 1);
	}
	if (getenv("FAULT_FULL_FILE") != NULL && getenv("FAULT_FULL_WHILE") != NULL) {
		(void)snprintf(full_file, sizeof(full_file), "%s", getenv("FAULT_FULL_FILE"));
		(void)snprintf(full_while, sizeof(full_while), "%s", getenv("FAULT_FULL_WHILE"));
	}
	if (getenv("FAULT_PWRITE_NOSPC") != NULL) {
		(void)snprintf(pwrite_nospc, sizeof(pwrite_nospc), "%s",
			       getenv("FAULT_PWRITE_NOSPC"));
		pwrite_left = env_num("FAULT_PWRITE_NOSPC_CALLS", 1);
		pwrite_end = env_num("FAULT_PWRITE_NOSPC_END", 0) != 0;
	}
	if (getenv("FAULT_MALLOC_AFTER") != NULL) {
		(void)snprintf(malloc_after, sizeof(malloc_after), "%s",
			       getenv("FAULT_MALLOC_AFTER"));
		malloc_min = env_num("FAULT_MALLOC_MIN", 0);
		malloc_max = env_num("FAULT_MALLOC_MAX", SIZE_MAX);
		malloc_count = env_num("FAULT_MALLOC_COUNT", 1);
		malloc_then = env_num("FAULT_MALLOC_THEN", 0);
		if (getenv("FAULT_MALLOC_ONLY") != NULL) {
			(void)snprintf(malloc_only, sizeof(malloc_only), "%s",
				       getenv("FAULT_MALLOC_ONLY"));
		}
	}
	if (getenv("FAULT_NOKILL") != NULL) {
		(void)snprintf(nokill, sizeof(nokill), "%s", getenv("FAULT_NOKILL"));
	}
	if (getenv("FAULT_PIDFD_STOP") != NULL) {
		(void)snprintf(pidfd_stop, sizeof(pidfd_stop), "%s", getenv("FAULT_PIDFD_STOP"));
	}
	if (log != NULL && *log != '\0') {
		F.log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	}
	/* The servers mcpmux starts are not under test. */
	(void)unsetenv("LD_PRELOAD");
	F.ready = true;
}

__attribute__((destructor)) static void
faultshim_fini(void)
{
	char line[320];
	int n;

	if (F.log_fd < 0 || getpid() != F.owner) {
		return;
	}
	n = snprintf(line, sizeof(line),
		     "pid=%d reads=%lu writes=%lu eintr=%lu short_reads=%lu short_writes=%lu "
		     "spawn=%lu pipe2=%lu accept4=%lu failed=%lu\n",
		     (int)F.owner, F.reads, F.writes, F.n_eintr, F.n_short_reads, F.n_short_writes,
		     F.fork.calls, F.pipe2.calls, F.accept4.calls, F.n_failed);
	if (n > 0) {
		(void)syscall(SYS_write, F.log_fd, line, (size_t)n);
	}
	(void)syscall(SYS_close, F.log_fd);
}

static uint64_t
next_rand(void)
{
	uint64_t x = F.rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	F.rng = x;
	return x * 0x2545f4914f6cdd1du;
}

/* Is this call subject to faults: our process, a pipe or a socket? */
static bool
in_scope(int fd)
{
	struct stat st;

	if (!F.ready || getpid() != F.owner || (F.eintr == 0 && F.shorts == 0)) {
		return false;
	}
	return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static bool
chance(unsigned per_mille)
{
	return per_mille > 0 && next_rand() % 1000 < per_mille;
}

/* How many of len bytes to move: len, or fewer for a short transfer. */
static size_t
cut(size_t len, unsigned long *counter)
{
	if (len >= F.short_min && (*counter < F.short_first || chance(F.shorts))) {
		(*counter)++;
		return 1 + (size_t)(next_rand() % (len - 1));
	}
	return len;
}

static bool
interrupted(void)
{
	if (chance(F.eintr)) {
		F.n_eintr++;
		errno = EINTR;
		return true;
	}
	return false;
}

/* The first iovecs of iov that hold `want` bytes, the last one cut. */
static int
cut_iov(const struct iovec *iov, int iovcnt, size_t want, struct iovec *out)
{
	int n = 0;

	for (int i = 0; i < iovcnt && want > 0 && n < MAX_IOV; i++) {
		out[n] = iov[i];
		if (out[n].iov_len > want) {
			out[n].iov_len = want;
		}
		want -= out[n].iov_len;
		n++;
	}
	return n;
}

static size_t
iov_total(const struct iovec *iov, int iovcnt)
{
	size_t t = 0;

	for (int i = 0; i < iovcnt; i++) {
		t += iov[i].iov_len;
	}
	return t;
}

/* Bytes just read (n of them at buf): do they hold FAULT_MALLOC_AFTER's marker? */
static void
malloc_arm(const void *buf, ssize_t n)
{
	size_t k = strlen(malloc_after);

	if (n > 0 && k > 0 && F.ready && getpid() == F.owner &&
	    memmem(buf, (size_t)n, malloc_after, k) != NULL) {
		malloc_after[0] = '\0';
		malloc_left = malloc_count;
	}
}

static ssize_t
read_faulty(int fd, void *buf, size_t len)
{
	if (!in_scope(fd)) {
		return real_read(fd, buf, len);
	}
	F.reads++;
	if (interrupted()) {
		return -1;
	}
	return real_read(fd, buf, cut(len, &F.n_short_reads));
}

/* Is fd open on the file FAULT_FULL_FILE names while FAULT_FULL_WHILE exists? */
static bool
full_now(int fd)
{
	char link[32], path[4096];
	size_t len = strlen(full_file);
	struct stat st;

	if (len == 0 || !F.ready || getpid() != F.owner || stat(full_while, &st) != 0) {
		return false;
	}
	(void)snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);

	if (n >= (ssize_t)len && memcmp(path + n - (ssize_t)len, full_file, len) == 0) {
		F.n_failed++;
		errno = ENOSPC;
		return true;
	}
	return false;
}

ssize_t
read(int fd, void *buf, size_t len)
{
	resolve();
	ssize_t n = read_faulty(fd, buf, len);

	malloc_arm(buf, n);
	return n;
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	resolve();
	if (full_now(fd)) {
		return -1;
	}
	if (!in_scope(fd)) {
		return real_write(fd, buf, len);
	}
	F.writes++;
	if (interrupted()) {
		return -1;
	}
	return real_write(fd, buf, cut(len, &F.n_short_writes));
}

static ssize_t
readv_faulty(int fd, const struct iovec *iov, int iovcnt)
{
	struct iovec part[MAX_IOV];
	size_t total, want;

	if (!in_scope(fd) || iovcnt > MAX_IOV) {
		return real_readv(fd, iov, iovcnt);
	}
	F.reads++;
	if (interrupted()) {
		return -1;
	}
	total = iov_total(iov, iovcnt);
	want = cut(total, &F.n_short_reads);
	if (want == total) {
		return real_readv(fd, iov, iovcnt);
	}
	return real_readv(fd, part, cut_iov(iov, iovcnt, want, part));
}

ssize_t
readv(int fd, const struct iovec *iov, int iovcnt)
{
	resolve();
	ssize_t n = readv_faulty(fd, iov, iovcnt);
	size_t left = n > 0 ? (size_t)n : 0;

	for (int i = 0; i < iovcnt && left > 0; i++) {
		size_t k = left < iov[i].iov_len ? left : iov[i].iov_len;

		malloc_arm(iov[i].iov_base, (ssize_t)k);
		left -= k;
	}
	return n;
}

/*
 * Is fd open on the file FAULT_NOSPC_FILE names (its path ends so), before its line is
 * cut; on that same file (renamed or not), after?
 */
static bool
nospc_fd(int fd)
{
	char link[32], path[4096];
	size_t len = strlen(nospc_file);
	struct stat st;

	if (len == 0 || !F.ready || getpid() != F.owner) {
		return false;
	}
	if (nospc_done) {
		return nospc_left > 0 && fstat(fd, &st) == 0 && st.st_dev == nospc_dev &&
		       st.st_ino == nospc_ino;
	}
	(void)snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);

	return n >= (ssize_t)len && memcmp(path + n - (ssize_t)len, nospc_file, len) == 0;
}

/* Bytes up to and including the first line end of iov, if another byte follows; 0 if not. */
static size_t
first_line(const struct iovec *iov, int iovcnt)
{
	size_t at = 0, total = iov_total(iov, iovcnt);

	for (int i = 0; i < iovcnt; i++) {
		const char *nl = memchr(iov[i].iov_base, '\n', iov[i].iov_len);

		if (nl != NULL) {
			at += (size_t)(nl - (const char *)iov[i].iov_base) + 1;
			return at < total ? at : 0;
		}
		at += iov[i].iov_len;
	}
	return 0;
}

/* ---- a full file system for pwrite() (FAULT_PWRITE_NOSPC) ---- */

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	char link[32], path[4096];

	resolve();
	if (pwrite_left > 0 && F.ready && getpid() == F.owner) {
		(void)snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t len = readlink(link, path, sizeof(path) - 1);

		if (len > 0) {
			size_t nlen = strlen(pwrite_nospc);
			bool hit;

			path[len] = '\0';
			if (pwrite_end) {
				hit = (size_t)len >= nlen &&
				      strcmp(path + len - nlen, pwrite_nospc) == 0;
			} else {
				hit = strstr(path, pwrite_nospc) != NULL;
			}
			if (hit) {
				pwrite_left--;
				F.n_failed++;
				errno = ENOSPC;
				return -1;
			}
		}
	}
	return real_pwrite(fd, buf, n, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct iovec part[MAX_IOV];
	size_t total, want;

	resolve();
	if (full_now(fd)) {
		return -1;
	}
	if (iovcnt <= MAX_IOV && nospc_fd(fd)) {
		struct stat st;

		if (nospc_done) {
			nospc_left--;
			F.n_failed++;
			errno = ENOSPC;
			return -1;
		}
		want = first_line(iov, iovcnt);
		if (want > 0 && nospc_cut > 0 && nospc_cut < want) {
			want = nospc_cut;
		}
		if (want > 0 && fstat(fd, &st) == 0) {
			nospc_done = true;
			nospc_dev = st.st_dev;
			nospc_ino = st.st_ino;
			return real_writev(fd, part, cut_iov(iov, iovcnt, want, part));
		}
	}
	if (!in_scope(fd) || iovcnt > MAX_IOV) {
		return real_writev(fd, iov, iovcnt);
	}
	F.writes++;
	if (interrupted()) {
		return -1;
	}
	total = iov_total(iov, iovcnt);
	want = cut(total, &F.n_short_writes);
	if (want == total) {
		return real_writev(fd, iov, iovcnt);
	}
	return real_writev(fd, part, cut_iov(iov, iovcnt, want, part));
}

/* Should this process creation fail? */
static bool
spawn_fails(void)
{
	resolve();
	return F.ready && getpid() == F.owner && nth_fails(&F.fork);
}

pid_t
fork(void)
{
	if (spawn_fails()) {
		errno = EAGAIN;
		return -1;
	}
	bool child = F.ready && getpid() != F.owner && getppid() == F.owner;
	bool in_child = F.keeper_stop && child;

	if (child && F.middle_stop != 0 && F.forks == F.middle_stop) {
		(void)raise(SIGSTOP); /* the middle process, before it forks the keeper */
	}
	if (F.ready && getpid() == F.owner) {
		F.forks++; /* (the child's copy is its number) */
	}
	pid_t pid = real_fork();

	if (pid == 0 && in_child) {
		(void)raise(SIGSTOP); /* a grandchild: the keeper */
	}
	if (pid > 0 && child && F.middle_kill != 0 && F.forks == F.middle_kill) {
		(void)raise(SIGKILL); /* the middle process, the keeper forked */
	}
	if (pid > 0 && F.ready && getpid() == F.owner && F.fork_stop) {
		F.fork_stop = false;
		(void)raise(SIGSTOP);
	}
	return pid;
}

int
close_range(unsigned int first, unsigned int last, int flags)
{
	resolve();
	if (F.ready && (getpid() == F.owner || F.no_close_range_children) && F.no_close_range) {
		errno = ENOSYS;
		return -1;
	}
	if (F.ready && getpid() != F.owner && F.child_unshare != 0 &&
	    ((unsigned int)flags & CLOSE_RANGE_UNSHARE) != 0) {
		errno = F.child_unshare;
		return -1;
	}
	return real_close_range(first, last, flags);
}

/* glibc's wrapper: the optional arguments are read only when the flags use them. */
int
clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	const int want_ptid = CLONE_PARENT_SETTID | CLONE_PIDFD | CLONE_SETTLS |
			      CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
	const int want_tls = CLONE_SETTLS | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
	const int want_ctid = CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
	void *ptid = NULL, *tls = NULL, *ctid = NULL;
	va_list ap;

	va_start(ap, arg);
	if (flags & want_ptid) {
		ptid = va_arg(ap, void *);
	}
	if (flags & want_tls) {
		tls = va_arg(ap, void *);
	}
	if (flags & want_ctid) {
		ctid = va_arg(ap, void *);
	}
	va_end(ap);
	if (spawn_fails()) {
		errno = EAGAIN;
		return -1;
	}
	int pid = real_clone(fn, stack, flags, arg, ptid, tls, ctid);

	if (pid > 0 && F.ready && getpid() == F.owner && F.clone_stop) {
		(void)raise(SIGSTOP);
	}
	return pid;
}

int
posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
	    const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn_fails() ? EAGAIN : real_posix_spawn(pid, path, fa, attr, argv, envp);
}

int
posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
	     const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn_fails() ? EAGAIN : real_posix_spawnp(pid, file, fa, attr, argv, envp);
}

int
pipe2(int fds[2], int flags)
{
	resolve();
	if (F.ready && getpid() == F.owner && nth_fails(&F.pipe2)) {
		errno = EMFILE;
		return -1;
	}
	return real_pipe2(fds, flags);
}

int
socketpair(int domain, int type, int protocol, int fds[2])
{
	resolve();
	if (F.ready && getpid() == F.owner && nth_fails(&F.socketpair)) {
		errno = EMFILE;
		return -1;
	}
	return real_socketpair(domain, type, protocol, fds);
}

static bool
is_seqpacket(int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);

	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET;
}

ssize_t
sendmsg(int fd, const struct msghdr *m, int flags)
{
	resolve();
	if (F.ready && getpid() == F.owner && m->msg_controllen > 0 && nth_fails(&F.sendfd)) {
		errno = EAGAIN;
		return -1;
	}
	if (F.ready && getpid() == F.owner && m->msg_controllen == 0 && is_seqpacket(fd) &&
	    nth_fails(&F.sendrec)) {
		errno = EAGAIN;
		return -1;
	}
	return real_sendmsg(fd, m, flags);
}

static void
flock_sleep(void)
{
	struct timespec ts = { (time_t)(F.flock_ms / 1000), (long)(F.flock_ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
	}
}

int
flock(int fd, int op)
{
	resolve();
	bool slow = F.ready && getpid() == F.owner && nth_fails(&F.flock);

	if (slow && !F.flock_after) {
		flock_sleep();
	}
	int rc = real_flock(fd, op), err = errno;

	if (slow && F.flock_after) {
		flock_sleep();
	}
	struct stat st;

	if (rc == -1 && err == EWOULDBLOCK && F.flock_busy_stop && F.ready && getpid() == F.owner &&
	    fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		F.flock_busy_stop = false;
		F.n_failed++;
		(void)raise(SIGSTOP);
	}
	errno = err;
	return rc;
}

int
link(const char *from, const char *to)
{
	resolve();
	if (F.ready && getpid() == F.owner && nth_fails(&F.link)) {
		errno = EPERM;
		return -1;
	}
	return real_link(from, to);
}

int
linkat(int from_dir, const char *from, int to_dir, const char *to, int flags)
{
	resolve();
	if (F.ready && getpid() == F.owner && nth_fails(&F.link)) {
		errno = EPERM;
		return -1;
	}
	return real_linkat(from_dir, from, to_dir, to, flags);
}

int
lstat(const char *path, struct stat *st)
{
	size_t k = strlen(lstat_enoent), len = strlen(path);

	resolve();
	if (k > 0 && F.ready && getpid() == F.owner && len >= k &&
	    strcmp(path + len - k, lstat_enoent) == 0) {
		F.n_failed++;
		errno = ENOENT;
		return -1;
	}
	return real_lstat(path, st);
}

int
fsync(int fd)
{
	resolve();
	if (F.ready && getpid() == F.owner && nth_fails(&F.fsync_stop)) {
		(void)raise(SIGSTOP);
	}
	if (fsync_dir_errno != 0 && F.ready && getpid() == F.owner) {
		struct stat st;

		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			errno = fsync_dir_errno;
			return -1;
		}
	}
	return real_fsync(fd);
}

int
fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
	resolve();
	if (F.ready && getpid() == F.owner && xattr_fail[0] != '\0' &&
	    strcmp(name, xattr_fail) == 0) {
		errno = EPERM;
		return -1;
	}
	return real_fsetxattr(fd, name, value, size, flags);
}

/* ---- a file with a bad block (FAULT_EIO_FILE, FAULT_EIO_AT) ---- */

/* Is f a regular file named ...FAULT_EIO_FILE? */
static bool
eio_file_of(FILE *f)
{
	char link[64], name[4096];
	struct stat st;
	int fd = fileno(f);

	if (!F.ready || getpid() != F.owner || eio_file[0] == '\0' || fd < 0 ||
	    fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		return false;
	}
	(void)snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, name, sizeof(name) - 1);
	size_t k = strlen(eio_file);

	if (n <= 0) {
		return false;
	}
	name[n] = '\0';
	return (size_t)n >= k && strcmp(name + n - k, eio_file) == 0;
}

static void
eio_fail(FILE *f)
{
	F.n_failed++;
	f->_flags |= _IO_ERR_SEEN; /* ferror(f), as after a read() that failed */
	errno = EIO;
}

char *
fgets(char *line, int size, FILE *f)
{
	resolve();
	if (!eio_file_of(f) || size < 2) {
		char *got = real_fgets(line, size, f);

		if (got != NULL) {
			malloc_arm(line, (ssize_t)strlen(line));
		}
		return got;
	}
	off_t at = ftello(f);
	struct stat st;

	if (at >= eio_at && fstat(fileno(f), &st) == 0 && st.st_size > at) {
		eio_fail(f);
		return NULL;
	}
	if (eio_at - at >= size - 1) {
		return real_fgets(line, size, f);
	}
	/* Its bytes up to the bad block, and there the error: the stream stays there. */
	char *got = real_fgets(line, (int)(eio_at - at) + 1, f);

	if (got != NULL && ftello(f) == eio_at && strchr(line, '\n') == NULL &&
	    fstat(fileno(f), &st) == 0 && st.st_size > eio_at) {
		eio_fail(f);
		return NULL;
	}
	return got;
}

/* glibc's own prototype: a transparent union of the sockaddr pointer types. */
int
accept4(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len, int flags)
{
	resolve();
	if (F.ready && getpid() == F.owner && nth_fails(&F.accept4)) {
		errno = accept4_errno;
		return -1;
	}
	if (F.ready && getpid() == F.owner && accept4_enfile_ms > 0) {
		struct timespec now;

		(void)clock_gettime(CLOCK_MONOTONIC, &now);
		if (accept4_from.tv_sec == 0 && accept4_from.tv_nsec == 0) {
			accept4_from = now;
		}
		if ((now.tv_sec - accept4_from.tv_sec) * 1000 +
			    (now.tv_nsec - accept4_from.tv_nsec) / 1000000 <
		    accept4_enfile_ms) {
			F.n_failed++;
			errno = ENFILE;
			return -1;
		}
	}
	return real_accept4(fd, addr, len, flags);
}

/* ---- processes that cannot be signalled (FAULT_NOKILL) ---- */

static bool
nokill_on(void)
{
	return F.ready && getpid() == F.owner && nokill[0] != '\0';
}

/* Is pid's /proc/PID/comm name? */
static bool
comm_is(pid_t pid, const char *name)
{
	char path[64], comm[64];
	int fd;
	ssize_t n;

	(void)snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		return false;
	}
	n = real_read(fd, comm, sizeof(comm) - 1);
	(void)close(fd);
	if (n <= 0) {
		return false;
	}
	comm[n] = '\0';
	comm[strcspn(comm, "\n")] = '\0';
	return strcmp(comm, name) == 0;
}

/* Is pid a process that FAULT_NOKILL protects? */
static bool
protected_pid(pid_t pid)
{
	return comm_is(pid, nokill);
}

/* The process group of pid, or -1. */
static pid_t
pgid_of(pid_t pid)
{
	char path[64], buf[512];
	int fd, pgid = -1;
	ssize_t n;

	(void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		return -1;
	}
	n = real_read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0) {
		return -1;
	}
	buf[n] = '\0';
	char *p = strrchr(buf, ')');

	if (p == NULL || sscanf(p + 1, " %*c %*d %d", &pgid) != 1) {
		return -1;
	}
	return (pid_t)pgid;
}

int
kill(pid_t pid, int sig)
{
	resolve();
	if (!nokill_on() || sig == 0) {
		return real_kill(pid, sig);
	}
	if (pid > 0) {
		if (protected_pid(pid)) {
			errno = EPERM;
			return -1;
		}
		return real_kill(pid, sig);
	}
	if (pid < -1) {
		/* A group: each member but the protected ones. */
		DIR *d = opendir("/proc");
		struct dirent *de;
		int sent = 0, refused = 0;

		if (d == NULL) {
			return real_kill(pid, sig);
		}
		while ((de = readdir(d)) != NULL) {
			pid_t p = (pid_t)atoi(de->d_name);

			if (p <= 0 || pgid_of(p) != -pid) {
				continue;
			}
			if (protected_pid(p)) {
				refused++;
			} else if (real_kill(p, sig) == 0) {
				sent++;
			}
		}
		closedir(d);
		if (sent > 0) {
			return 0;
		}
		errno = refused > 0 ? EPERM : ESRCH;
		return -1;
	}
	return real_kill(pid, sig);
}

/* The pid a pidfd refers to, from /proc/self/fdinfo, or -1. */
static pid_t
pidfd_pid(long fd)
{
	char path[64], buf[1024];
	int f;
	ssize_t n;

	(void)snprintf(path, sizeof(path), "/proc/self/fdinfo/%ld", fd);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f == -1) {
		return -1;
	}
	n = real_read(f, buf, sizeof(buf) - 1);
	(void)close(f);
	if (n <= 0) {
		return -1;
	}
	buf[n] = '\0';
	char *p = strstr(buf, "Pid:");

	return p != NULL ? (pid_t)atoi(p + 4) : -1;
}

long
syscall(long number, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, number);
	for (int i = 0; i < 6; i++) {
		a[i] = va_arg(ap, long);
	}
	va_end(ap);
	resolve();
	if (number == SYS_clone3 && spawn_fails()) {
		errno = EAGAIN; /* a process creation like fork() and clone() */
		return -1;
	}
	if (number == SYS_pidfd_open && F.ready && getpid() == F.owner && pidfd_stop[0] != '\0' &&
	    !pidfd_stopped && comm_is((pid_t)a[0], pidfd_stop)) {
		pidfd_stopped = true;
		(void)raise(SIGSTOP);
	}
	if (number == SYS_pidfd_send_signal && nokill_on() && a[1] != 0 &&
	    protected_pid(pidfd_pid(a[0]))) {
		errno = EPERM;
		return -1;
	}
	return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* ---- /proc that cannot be read (FAULT_PROC_ERRNO, FAULT_PROC_MS) ---- */

static bool
proc_fails(const char *path)
{
	struct timespec now;

	if (proc_errno == 0 || !F.ready || getpid() != F.owner || strncmp(path, "/proc/", 6) != 0 ||
	    strstr(path, "/task") == NULL) {
		return false;
	}
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	if (proc_from.tv_sec == 0 && proc_from.tv_nsec == 0) {
		proc_from = now;
	}
	long ms = (now.tv_sec - proc_from.tv_sec) * 1000 +
		  (now.tv_nsec - proc_from.tv_nsec) / 1000000;

	if (ms < proc_ms) {
		F.n_failed++;
		return true;
	}
	return false;
}

/* ---- cgroup leaves that stay busy after the reap (FAULT_LEAF_BUSY_MS) ---- */

/* Is dir (len bytes) a server's leaf: ".../mcpmux.N/s.M"? */
static bool
is_leaf(const char *dir, size_t len)
{
	const char *last = memrchr(dir, '/', len);

	return last != NULL && len - (size_t)(last - dir) > 3 && strncmp(last, "/s.", 3) == 0 &&
	       memmem(dir, (size_t)(last - dir), "/mcpmux.", 8) != NULL;
}

/* Is the leaf dir (len bytes) busy now?  start: its window begins now if not yet. */
static bool
leaf_busy(const char *dir, size_t len, bool start)
{
	struct timespec now;
	size_t i;

	if (leaf_busy_ms == 0 || !F.ready || getpid() != F.owner || len >= sizeof(leaves[0].path) ||
	    !is_leaf(dir, len)) {
		return false;
	}
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	for (i = 0; i < n_leaves; i++) {
		if (strlen(leaves[i].path) == len && memcmp(leaves[i].path, dir, len) == 0) {
			break;
		}
	}
	if (i == n_leaves) {
		if (!start || n_leaves == MAX_LEAVES) {
			return false;
		}
		memcpy(leaves[i].path, dir, len);
		leaves[i].path[len] = '\0';
		leaves[i].from = now;
		n_leaves++;
	}
	long ms = (now.tv_sec - leaves[i].from.tv_sec) * 1000 +
		  (now.tv_nsec - leaves[i].from.tv_nsec) / 1000000;

	return ms < leaf_busy_ms;
}

int
rmdir(const char *path)
{
	resolve();
	if (leaf_busy(path, strlen(path), true)) {
		F.n_failed++;
		errno = EBUSY;
		return -1;
	}
	return real_rmdir(path);
}

/* ---- cgroup leaves removed before their server is started in them (FAULT_LEAF_GONE) ---- */

static bool
leaf_gone_at(const char *at, const char *path)
{
	return strcmp(leaf_gone, at) == 0 && F.ready && getpid() == F.owner &&
	       is_leaf(path, strlen(path));
}

/* Is dir an instance cgroup: its last name "mcpmux.PID" or "mcpmux.PID.K"? */
static bool
is_instance(const char *dir)
{
	const char *last = strrchr(dir, '/');

	if (last == NULL || strncmp(last, "/mcpmux.", 8) != 0 || last[8] < '0' || last[8] > '9') {
		return false;
	}
	return last[8 + strspn(last + 8, "0123456789.")] == '\0';
}

int
mkdir(const char *path, mode_t mode)
{
	resolve();
	int rc = real_mkdir(path, mode);

	if (rc == 0 && leaf_gone_at("mkdir", path)) {
		F.n_failed++;
		(void)real_rmdir(path);
	}
	if (rc == 0 && F.ready && getpid() == F.owner && is_instance(path) &&
	    nth_fails(&F.inst_gone)) {
		(void)real_rmdir(path);
	}
	return rc;
}

/* A descriptor that reads "populated 1" (a memfd), or -1. */
static int
populated_fd(void)
{
	static const char text[] = "populated 1\nfrozen 0\n";
	int fd = (int)syscall(SYS_memfd_create, "cgroup.events", 0x0001U /* MFD_CLOEXEC */);

	if (fd >= 0 && (real_write(fd, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1 ||
			lseek(fd, 0, SEEK_SET) != 0)) {
		(void)close(fd);
		fd = -1;
	}
	return fd;
}

static int
shim_open(const char *path, int flags, mode_t mode)
{
	resolve();
	if (proc_fails(path)) {
		errno = proc_errno;
		return -1;
	}
	if (environ_fail[0] != '\0' && F.ready && getpid() == F.owner &&
	    strcmp(path, environ_fail) == 0) {
		F.n_failed++;
		errno = EACCES;
		return -1;
	}
	size_t len = strlen(path);
	size_t k = strlen(open_stop);

	if (F.stdio_shared && F.ready && getpid() == F.owner && len == 15 &&
	    strncmp(path, "/proc/self/fd/", 14) == 0 && path[14] >= '0' && path[14] <= '2') {
		F.n_failed++;
		errno = ENOENT;
		return -1;
	}

	if (k > 0 && F.ready && getpid() == F.owner && len >= k &&
	    strcmp(path + len - k, open_stop) == 0) {
		open_stop[0] = '\0';
		F.n_failed++;
		(void)raise(SIGSTOP);
	}
	if (len > 14 && strcmp(path + len - 14, "/cgroup.events") == 0 &&
	    leaf_busy(path, len - 14, false)) {
		return populated_fd();
	}
	int fd = real_open(path, flags, mode);

	if (fd >= 0 && (flags & O_DIRECTORY) && leaf_gone_at("open", path)) {
		F.n_failed++;
		(void)real_rmdir(path);
	}
	return fd;
}

int
open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;

		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return shim_open(path, flags, mode);
}

/* What open() with flags that are not a constant becomes under _FORTIFY_SOURCE. */
int __open_2(const char *path, int flags);

int
__open_2(const char *path, int flags)
{
	return shim_open(path, flags, 0);
}

/* ---- memory that runs out (FAULT_MALLOC_AFTER) ---- */

/*
 * The allocator after the shim (glibc's, or AddressSanitizer's in a sanitized build),
 * resolved at the first allocation.  dlsym() may allocate itself: what it asks for while
 * it resolves comes from a small arena of the shim's, which free() leaves alone.
 */
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static bool alloc_resolving;
static _Alignas(max_align_t) char arena[8192];
static size_t arena_used;

static void *
arena_alloc(size_t len)
{
	size_t at = (arena_used + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);

	if (len > sizeof(arena) - at) {
		return NULL;
	}
	arena_used = at + len;
	return arena + at;
}

static bool
in_arena(const void *p)
{
	return (const char *)p >= arena && (const char *)p < arena + sizeof(arena);
}

static bool
alloc_resolve(void)
{
	if (real_free != NULL) {
		return true;
	}
	if (alloc_resolving) {
		return false;
	}
	alloc_resolving = true;
	*(void **)&real_malloc = next_symbol("malloc");
	*(void **)&real_calloc = next_symbol("calloc");
	*(void **)&real_realloc = next_symbol("realloc");
	*(void **)&real_free = next_symbol("free");
	alloc_resolving = false;
	return true;
}

/* Should an allocation of len bytes by fn fail? */
static bool
malloc_fails(const char *fn, size_t len)
{
	if (!F.ready || (malloc_left == 0 && malloc_more == 0) || getpid() != F.owner ||
	    (malloc_only[0] != '\0' && strcmp(fn, malloc_only) != 0)) {
		return false;
	}
	if (malloc_more > 0) {
		malloc_more--;
	} else if (malloc_left == 0 || len < malloc_min || len > malloc_max) {
		return false;
	} else if (--malloc_left == 0) {
		malloc_more = malloc_then;
	}
	F.n_failed++;
	errno = ENOMEM;
	return true;
}

void *
malloc(size_t len)
{
	if (!alloc_resolve()) {
		return arena_alloc(len);
	}
	return malloc_fails("malloc", len) ? NULL : real_malloc(len);
}

void *
calloc(size_t n, size_t size)
{
	size_t len;

	if (__builtin_mul_overflow(n, size, &len)) {
		len = SIZE_MAX;
	}
	if (!alloc_resolve()) {
		return arena_alloc(len); /* the arena is zeroed and never reused */
	}
	return malloc_fails("calloc", len) ? NULL : real_calloc(n, size);
}

void *
realloc(void *p, size_t len)
{
	if (in_arena(p)) {
		/* An arena block (never grown in place): moved to a new one. */
		void *q = malloc(len);
		size_t room = (size_t)(arena + sizeof(arena) - (const char *)p);

		if (q != NULL) {
			memcpy(q, p, len < room ? len : room);
		}
		return q;
	}
	if (!alloc_resolve()) {
		return NULL;
	}
	return malloc_fails("realloc", len) ? NULL : real_realloc(p, len);
}

void
free(void *p)
{
	if (p == NULL || in_arena(p)) {
		return;
	}
	if (alloc_resolve()) {
		real_free(p);
	}
}
