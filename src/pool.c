/*
 * pool: the --max-servers cap, kept between instances with files and locks (pool.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/cli.h"
#include "mcpmux/diag.h"
#include "mcpmux/keeper.h"
#include "mcpmux/pool.h"
#include "mcpmux/sys.h"

#define STATE_LEN 26 /* "idle  %019llu\n": every state is written whole, at offset 0 */
#define START_LEN 27 /* "start %020llu\n", at STATE_LEN: the instance's start time, once */

struct pool_slot {
	struct pool *pool;
	const struct pool_slot_ops *ops;
	void *ctx;
	unsigned long long seq;
	int fd;		 /* the locked file; -1 while waiting, or when it could not be made */
	bool waiting;	 /* pool_want() not yet granted */
	bool asked;	 /* it asked an idle server to go: a slot is on its way for it */
	bool unrecorded; /* its last state could not be written: its file says an older one */
	bool kept;	 /* pool_keep(): taken until mcpmux exits (and its keeper is done) */
	size_t n_left;	 /* kept: the processes it waits for (0: until mcpmux exits) */
	pid_t *left;
	unsigned long long *left_start; /* their start times: a pid reused is not theirs */
	double t_want;
	double t_first;	       /* not tried before (pool_want()'s yield) */
	double t_locked_out;   /* since when the directory's lock failed it, 0 when it did not */
	struct keeper_slot ks; /* handed to the keeper (while fd >= 0) */
	struct pool_slot *next;
};

struct pool {
	struct ev_loop *loop;
	int dir_fd;
	DIR *dir;
	char name[256];
	size_t max;
	double wait_s;
	pid_t pid;
	unsigned long long start; /* this instance's start time (/proc/PID/stat), 0: unknown */
	unsigned long long seq;
	struct pool_slot *slots;
	bool shrink_wanted;  /* over the cap: a server went idle, ask the least recent one */
	bool pidfd_said;     /* a pidfd could not be opened for an ask: said once */
	size_t n_unrecorded; /* slots whose state could not be recorded: said when it turns 1 */
	ev_timer tick_w;
	ev_timer self_w; /* asks made to this very instance, handled from the loop */
	ev_timer kept_w; /* kept slots whose processes are listed: are they gone yet? */
	ev_signal usr2_w;
};

/* What a look at the pool's directory found. */
struct census {
	size_t live;	  /* live slots (their instance holds the lock) */
	size_t pending;	  /* asked to suspend, or suspending: a slot will be free */
	bool have_victim; /* the least recently active idle slot not yet asked */
	pid_t victim_pid;
	unsigned long long victim_seq, victim_ns, victim_start;
};

static unsigned long long
mono_ns(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

void
pool_name_of(char *const *argv, char *out, size_t size)
{
	size_t at = 0;

	out[0] = '\0';
	for (size_t i = 0; argv[i] != NULL && at + 1 < size; i++) {
		int n = snprintf(out + at, size - at, "%s%s", i > 0 ? " " : "", argv[i]);

		if (n < 0) {
			break;
		}
		at += (size_t)n;
	}
}

/*
 * A process's start time (field 22 of /proc/PID/stat, in clock ticks since boot): with its
 * pid, it names one process for good.  0 when it cannot be read (gone, or no /proc), with
 * errno ENOENT or ESRCH only when the process is gone.
 */
static unsigned long long
proc_start(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long start = 0;

	(void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (sys_read_small(path, buf, sizeof(buf)) <= 0) {
		if (errno == 0) {
			errno = EIO;
		}
		return 0;
	}
	errno = EIO; /* a line that cannot be read is no sign that the process is gone */
	const char *at = strrchr(buf, ')'); /* the name, in parentheses, may hold anything */

	/* Past the name: field 3 (the state) ... field 22 (the start time), 19 spaces on. */
	for (int field = 2; at != NULL && field < 22; field++) {
		at = strchr(at + 1, ' ');
	}
	if (at == NULL || sscanf(at + 1, "%llu", &start) != 1) {
		return 0;
	}
	return start;
}

/* Does the slot's file name the live instance pid (its start time, recorded when the slot
 * was granted, is that process's)?  Only then may it be signalled. */
static bool
is_instance(pid_t pid, unsigned long long start)
{
	return start != 0 && proc_start(pid) == start;
}

/*
 * Is the instance a held slot names alive, to be asked?  By its start time; without /proc
 * here (this instance's own start time unknown), by the earlier rule: its pid is alive,
 * which a pid reused by another process would be too (pool_open() says the check is off).
 */
static bool
instance_alive(const struct pool *p, pid_t pid, unsigned long long start)
{
	if (p->start == 0) {
		return kill(pid, 0) == 0 || errno != ESRCH;
	}
	return is_instance(pid, start);
}

static void
slot_file(char *buf, size_t size, char kind, pid_t pid, unsigned long long seq)
{
	(void)snprintf(buf, size, "%c.%d.%llu", kind, (int)pid, seq);
}

/* ---- the directory lock ---- */

static bool
dir_lock(struct pool *p)
{
	if (flock(p->dir_fd, LOCK_EX | LOCK_NB) == 0) {
		return true;
	}
	if (errno != EWOULDBLOCK && errno != EINTR) {
		diag_warn_errno("pool %s: cannot lock its directory", p->name);
	}
	return false;
}

static void
dir_unlock(const struct pool *p)
{
	(void)flock(p->dir_fd, LOCK_UN);
}

/* ---- looking ---- */

static bool
exists(const struct pool *p, const char *name)
{
	return faccessat(p->dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/*
 * One "s." file: is it live, and what does it say?  sweep: a dead instance's files are
 * removed, only under the directory's lock (a file being granted is not locked yet).
 */
static void
census_one(struct pool *p, const char *name, struct census *c, bool sweep)
{
	int pid;
	unsigned long long seq, ns, start = 0;
	char state[STATE_LEN + START_LEN + 1], word[8] = "", ask_name[64];

	if (sscanf(name, "s.%d.%llu", &pid, &seq) != 2) {
		return;
	}
	int fd = openat(p->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd == -1) {
		return; /* gone meanwhile */
	}
	slot_file(ask_name, sizeof(ask_name), 'a', pid, seq);
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		/* Nobody holds it: its instance died.  Not counted, and cleared away. */
		if (sweep) {
			(void)unlinkat(p->dir_fd, name, 0);
			(void)unlinkat(p->dir_fd, ask_name, 0);
		}
		(void)close(fd);
		return;
	}
	c->live++;
	ssize_t n = pread(fd, state, STATE_LEN + START_LEN, 0);

	(void)close(fd);
	state[n > 0 ? n : 0] = '\0';
	if (n == STATE_LEN + START_LEN) {
		(void)sscanf(state + STATE_LEN, "start %llu", &start);
	}
	if (pid == (int)p->pid ? p->start != 0 && start != p->start
			       : !instance_alive(p, pid, start)) {
		/* Held by the keeper of an instance that is gone (its pid free, or another
		 * process's now: this one's, even), while it ends what is left: on its way (the
		 * keeper says "going" as soon as it can, but may not have yet).  Or its start
		 * time is not known: it cannot be asked, as its pid may not be that instance. */
		c->pending++;
		return;
	}
	if (sscanf(state, "%7s %llu", word, &ns) != 2 || strcmp(word, "going") == 0) {
		if (strcmp(word, "going") == 0) {
			c->pending++;
		}
		return;
	}
	if (strcmp(word, "idle") != 0) {
		return; /* busy, or torn: not a candidate */
	}
	if (exists(p, ask_name)) {
		c->pending++;
	} else if (!c->have_victim || ns < c->victim_ns) {
		c->have_victim = true;
		c->victim_pid = pid;
		c->victim_seq = seq;
		c->victim_ns = ns;
		c->victim_start = start;
	}
}

static void
census(struct pool *p, struct census *c, bool sweep)
{
	const struct dirent *d;

	memset(c, 0, sizeof(*c));
	rewinddir(p->dir);
	while ((d = readdir(p->dir)) != NULL) {
		if (d->d_name[0] == 's' && d->d_name[1] == '.') {
			census_one(p, d->d_name, c, sweep);
		}
	}
}

/* ---- asking ---- */

/* Is the slot file still locked (by its instance, or by that instance's keeper)? */
static bool
held(const struct pool *p, pid_t pid, unsigned long long seq)
{
	char name[64];

	slot_file(name, sizeof(name), 's', pid, seq);
	int fd = openat(p->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	bool locked = false;

	if (fd >= 0) {
		locked = flock(fd, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK;
		(void)close(fd);
	}
	return locked;
}

static void
ask(struct pool *p, pid_t pid, unsigned long long seq, unsigned long long start)
{
	char name[64];

	slot_file(name, sizeof(name), 'a', pid, seq);
	int fd = openat(p->dir_fd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd == -1) {
		diag_warn_errno("pool %s: cannot ask for an idle server's slot", p->name);
		return;
	}
	(void)close(fd);
	if (pid == p->pid) {
		ev_timer_start(p->loop, &p->self_w);
		return;
	}
	/*
	 * The pidfd first: if pid is then still the process that started at the slot's
	 * recorded start time, the pidfd is that instance (it was alive when the pidfd was
	 * opened, and a pid is not reused while its process lives).  A held lock alone does
	 * not tell: a killed instance's keeper holds it, and its pid may be another's now.
	 */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int pidfd_errno = pidfd == -1 ? errno : 0;

	if (pidfd_errno != 0 && pidfd_errno != ESRCH && pidfd_errno != ENOSYS && !p->pidfd_said) {
		/* Refused (EPERM under a seccomp filter, EMFILE): asked by its pid, as without
		 * pidfds, the start time checked just before. */
		p->pidfd_said = true;
		diag_warn_errno("pool %s: cannot open a pidfd to ask another instance for a "
				"slot: asking by its pid",
				p->name);
	}
	if (pidfd_errno == ESRCH || !held(p, pid, (unsigned long long)seq) ||
	    !instance_alive(p, pid, start)) {
		/* Gone, or its slot freed since it was seen: no ask is left behind, where it
		 * would mark a later instance with that pid as asked. */
		(void)unlinkat(p->dir_fd, name, 0);
	} else {
		long rc = pidfd >= 0 ? syscall(SYS_pidfd_send_signal, pidfd, SIGUSR2, NULL, 0)
				     : kill(pid, SIGUSR2);

		if (rc == -1 && errno != ESRCH) {
			diag_warn_errno("pool %s: cannot ask process %d for a slot", p->name,
					(int)pid);
		}
	}
	if (pidfd >= 0) {
		(void)close(pidfd);
	}
}

static void
format_state(char *state, const char *word)
{
	(void)snprintf(state, STATE_LEN + 1, "%-5.5s %019llu\n", word, mono_ns());
}

void
pool_fd_going(int fd)
{
	char state[STATE_LEN + 1];

	format_state(state, "going");
	if (pwrite(fd, state, STATE_LEN, 0) != (ssize_t)STATE_LEN) {
		/* the word stays as it was: the lock still holds the slot, and an ask of it
		   finds its instance gone */
		return;
	}
}

static void
write_state(struct pool_slot *s, const char *word)
{
	char state[STATE_LEN + START_LEN + 1];

	if (s->fd < 0) {
		return;
	}
	format_state(state, word);
	/* The instance's start time with it, in the one write: who holds it, for good (an
	 * ask signals pid only while it is this process). */
	(void)snprintf(state + STATE_LEN, START_LEN + 1, "start %020llu\n", s->pool->start);
	/* Each server has a file of its own: the pool's states are recorded again when
	 * every one whose state could not be is recorded again (or gone). */
	if (pwrite(s->fd, state, STATE_LEN + START_LEN, 0) != STATE_LEN + START_LEN) {
		if (!s->unrecorded && s->pool->n_unrecorded++ == 0) {
			diag_warn_errno("pool %s: cannot record a server's state (said once, until "
					"they are all recorded again)",
					s->pool->name);
		}
		s->unrecorded = true;
	} else if (s->unrecorded) {
		s->unrecorded = false;
		if (--s->pool->n_unrecorded == 0) {
			diag_warn("pool %s: servers' states are recorded again", s->pool->name);
		}
	}
}

/* Asks for this instance's slots (SIGUSR2, or one of its own): suspend those servers. */
static void
answer_asks(struct pool *p)
{
	unsigned long long asked[64];
	size_t n = 0;
	char name[64];

	for (struct pool_slot *s = p->slots; s != NULL && n < 64; s = s->next) {
		slot_file(name, sizeof(name), 'a', p->pid, s->seq);
		if (s->fd >= 0 && !s->kept && unlinkat(p->dir_fd, name, 0) == 0) {
			asked[n++] = s->seq;
		}
	}
	/* ops->suspend() may change the list: each slot is looked up again. */
	for (size_t i = 0; i < n; i++) {
		for (struct pool_slot *s = p->slots; s != NULL; s = s->next) {
			if (s->seq == asked[i] && s->fd >= 0 && !s->kept) {
				(void)s->ops->suspend(s->ctx); /* going: pool_going() */
				break;
			}
		}
	}
}

static void
pool_on_usr2(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	answer_asks(w->data);
}

static void
pool_on_self(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	answer_asks(w->data);
}

/* ---- granting ---- */

/*
 * Count a server in (its slot file, locked for as long as it lives).  c: the census taken
 * under the directory's lock, which also sets or clears the "over" marker; NULL when the
 * lock could not be had.
 */
static void
grant(struct pool_slot *s, bool over, const struct census *c)
{
	struct pool *p = s->pool;
	char name[64];

	/* Past the names taken: a killed instance whose pid this one has may have left
	 * slots its keeper holds still, by the same names. */
	for (int tries = 0;; tries++) {
		s->seq = ++p->seq;
		slot_file(name, sizeof(name), 's', p->pid, s->seq);
		s->fd = openat(p->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			       0600);
		if (s->fd >= 0 || errno != EEXIST || tries == 1000) {
			break;
		}
	}
	if (s->fd >= 0 && flock(s->fd, LOCK_EX | LOCK_NB) == -1) {
		sys_close(&s->fd);
		(void)unlinkat(p->dir_fd, name, 0);
	}
	if (s->fd < 0) {
		diag_warn_errno("pool %s: cannot count a server in (it starts, uncounted)",
				p->name);
	} else {
		keeper_slot(&s->ks, s->fd); /* the keeper holds it too, should mcpmux be killed */
	}
	s->waiting = false;
	write_state(s, "idle");
	if (c == NULL) {
		return; /* the directory is not locked: the shared marker is left alone */
	}
	if (over) {
		int fd = openat(p->dir_fd, "over", O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
				0600);

		if (fd >= 0) {
			(void)close(fd);
		}
	} else if (c->live + 1 <= p->max) {
		(void)unlinkat(p->dir_fd, "over", 0);
	}
}

/* Try to grant a waiting slot: true when granted. */
static bool
try_grant(struct pool_slot *s)
{
	struct pool *p = s->pool;
	struct census c;

	if (sys_mono() < s->t_first) {
		return false; /* a slot it gave up goes to whoever waited for it first */
	}
	if (!dir_lock(p)) {
		double now = sys_mono();

		if (s->t_locked_out == 0) {
			s->t_locked_out = now;
		}
		if (now - s->t_want < p->wait_s || now - s->t_locked_out < p->wait_s) {
			return false; /* (a lock held a moment at the bound: the next try's) */
		}
		/* The lock is stuck (its holder stopped while it looked): start, uncounted as it
		 * were, and say why the start waited. */
		diag_warn("pool %s: its directory stayed locked by another process for %g s: the "
			  "server starts without a count of the pool (it may be over the cap)",
			  p->name, p->wait_s);
		grant(s, false, NULL);
		return true;
	}
	s->t_locked_out = 0;
	census(p, &c, true);
	bool ok = true;

	if (c.live < p->max) {
		grant(s, false, &c);
	} else if (sys_mono() - s->t_want >= p->wait_s) {
		/* Not "none idle": the one asked may be idle still (its instance stopped), or
		 * going (a slow teardown). */
		grant(s, true, &c);
		diag_warn("pool %s: no server's slot came free in %g s: one more starts, %zu of "
			  "%zu live (the pool shrinks back as soon as one is idle)",
			  p->name, p->wait_s, c.live, p->max);
	} else if (s->asked && c.pending > 0) {
		/*
		 * The server it asked is still going: not another one too (two servers would
		 * end for one waiter).  Should another instance take that slot, no ask is
		 * pending any more, and it asks again.
		 */
		ok = false;
	} else if (c.have_victim) {
		ask(p, c.victim_pid, c.victim_seq, c.victim_start);
		s->asked = true;
		ok = false;
	} else if (c.pending > 0) {
		ok = false; /* a slot is on its way */
	} else {
		grant(s, true, &c); /* every server is busy */
		diag_warn("pool %s: %zu of %zu servers live, none idle: one more starts (the "
			  "pool shrinks back as soon as one is idle)",
			  p->name, c.live, p->max);
	}
	dir_unlock(p);
	return ok;
}

/* Over the cap and a server went idle: ask the least recently active one to go. */
static bool
shrink(struct pool *p)
{
	struct census c;

	if (!dir_lock(p)) {
		return false;
	}
	census(p, &c, true);
	if (c.live <= p->max) {
		(void)unlinkat(p->dir_fd, "over", 0);
	} else if (c.have_victim && c.pending < c.live - p->max) {
		ask(p, c.victim_pid, c.victim_seq, c.victim_start);
	}
	dir_unlock(p);
	return true;
}

/* Is any of the processes a kept slot waits for still the one it was?  One that cannot be
 * read for another reason than being gone (EMFILE, ENOMEM, hidepid) counts as there. */
static bool
kept_alive(const struct pool_slot *s)
{
	for (size_t i = 0; i < s->n_left; i++) {
		if (s->left_start[i] == 0) {
			continue; /* gone already when the slot was kept */
		}
		errno = 0;
		unsigned long long now = proc_start(s->left[i]);

		if (now == s->left_start[i] || (now == 0 && errno != ENOENT && errno != ESRCH)) {
			return true;
		}
	}
	return false;
}

/*
 * Kept slots whose listed processes are all gone are let go (pool_keep()): when the pool
 * needs a slot, and every POOL_KEPT_S meanwhile.  True while some are still waited for.
 */
static bool
kept_check(struct pool *p)
{
	bool more = false;

	for (struct pool_slot **pp = &p->slots; *pp != NULL;) {
		struct pool_slot *s = *pp;

		if (s->kept && s->n_left > 0 && !kept_alive(s)) {
			diag_info("pool %s: the processes a slot was kept for are gone: it is free",
				  p->name);
			s->kept = false;
			pool_release(s); /* *pp is the next one now */
			continue;
		}
		more = more || (s->kept && s->n_left > 0);
		pp = &s->next;
	}
	return more;
}

static void
kept_timer_stop(struct pool *p)
{
	if (ev_is_active(&p->kept_w)) {
		ev_ref(p->loop); /* it was unref'd when started */
		ev_timer_stop(p->loop, &p->kept_w);
	}
}

static void
pool_on_kept(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	if (!kept_check(w->data)) {
		kept_timer_stop(w->data);
	}
}

static void
pool_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pool *p = w->data;
	bool waiting = false;

	(void)revents;
	if (ev_is_active(&p->kept_w) && !kept_check(p)) {
		kept_timer_stop(p); /* a slot they kept may be the one waited for */
	}
	for (struct pool_slot *s = p->slots; s != NULL; s = s->next) {
		if (s->waiting) {
			if (try_grant(s)) {
				s->ops->granted(s, s->ctx); /* may release s: look no further */
				return;			    /* the next tick goes on */
			}
			waiting = true;
		}
	}
	if (p->shrink_wanted && shrink(p)) {
		p->shrink_wanted = false;
	}
	if (!waiting && !p->shrink_wanted) {
		ev_timer_stop(loop, w);
	}
}

/*
 * Look every POOL_TICK_S from now, unless the looks go on already: started again, the
 * next look would be put off by each waiter that comes, and none made while they come.
 */
static void
tick_start(struct pool *p)
{
	if (!ev_is_active(&p->tick_w)) {
		ev_timer_again(p->loop, &p->tick_w);
	}
}

struct pool_slot *
pool_want(struct pool *p, const struct pool_slot_ops *ops, void *ctx, bool yield, bool *granted)
{
	struct pool_slot *s = calloc(1, sizeof(*s));

	*granted = s != NULL;
	if (s == NULL) {
		/* The server is not started: one started without its slot would go uncounted,
		 * over the cap maybe, in silence.  The caller refuses the start (errno). */
		errno = ENOMEM;
		return NULL;
	}
	s->pool = p;
	s->ops = ops;
	s->ctx = ctx;
	s->fd = -1;
	s->waiting = true;
	s->t_want = sys_mono();
	s->t_first = yield ? s->t_want + POOL_YIELD_S : 0.;
	if (ev_is_active(&p->kept_w) && !kept_check(p)) {
		kept_timer_stop(p); /* a slot they kept may be the one wanted */
	}
	/* Last in the list, which the tick goes through from its head: behind others of
	 * this instance that wait already, their turn first. */
	struct pool_slot **tail = &p->slots;
	bool behind = false;

	for (; *tail != NULL; tail = &(*tail)->next) {
		behind = behind || (*tail)->waiting;
	}
	*tail = s;
	if (behind || yield) {
		*granted = false;
		tick_start(p);
		return s;
	}
	*granted = try_grant(s);
	if (!*granted) {
		tick_start(p);
	}
	return s;
}

void
pool_busy(struct pool_slot *s, bool busy)
{
	struct pool *p = s->pool;

	write_state(s, busy ? "busy" : "idle");
	if (!busy && faccessat(p->dir_fd, "over", F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		p->shrink_wanted = true;
		tick_start(p);
	}
}

void
pool_going(struct pool_slot *s)
{
	write_state(s, "going");
}

void
pool_release(struct pool_slot *s)
{
	struct pool *p;

	if (s == NULL) {
		return;
	}
	p = s->pool;
	if (s->fd >= 0 && s->kept) {
		/* mcpmux exits: its file stays, locked by the keeper until it is done. */
		keeper_slot_left(&s->ks);
		sys_close(&s->fd);
	} else if (s->fd >= 0) {
		char name[64];

		slot_file(name, sizeof(name), 's', p->pid, s->seq);
		(void)unlinkat(p->dir_fd, name, 0);
		slot_file(name, sizeof(name), 'a', p->pid, s->seq);
		(void)unlinkat(p->dir_fd, name, 0);
		/* After the removal: a keeper that this record does not reach lets the slot go
		 * when the next one does, as its file is gone (keeper_slot_gone()). */
		keeper_slot_gone(&s->ks);
		sys_close(&s->fd); /* the lock goes with it */
	}
	/* Its file, and the state it did not take, are gone: the others' are recorded. */
	if (s->unrecorded && --p->n_unrecorded == 0) {
		diag_warn("pool %s: servers' states are recorded again", p->name);
	}
	for (struct pool_slot **pp = &p->slots; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	free(s->left);
	free(s->left_start);
	free(s);
}

void
pool_keep(struct pool_slot *s, const pid_t *left, size_t n_left)
{
	if (s == NULL || s->fd < 0) {
		pool_release(s); /* uncounted: nothing to keep */
		return;
	}
	write_state(s, "going");
	s->kept = true;
	s->ops = NULL;
	s->ctx = NULL;
	struct pool *p = s->pool;

	if (n_left == 0 || p->start == 0) {
		return; /* what is left is not known (or /proc cannot tell): until mcpmux exits */
	}
	s->left = calloc(n_left, sizeof(*s->left));
	s->left_start = calloc(n_left, sizeof(*s->left_start));
	if (s->left == NULL || s->left_start == NULL) {
		free(s->left);
		free(s->left_start);
		s->left = NULL;
		s->left_start = NULL;
		return;
	}
	for (size_t i = 0; i < n_left; i++) {
		s->left[i] = left[i];
		errno = 0;
		s->left_start[i] = proc_start(left[i]); /* 0: gone already */
		if (s->left_start[i] == 0 && errno != ENOENT && errno != ESRCH) {
			/* there, but its start time cannot be read: until mcpmux exits */
			free(s->left);
			free(s->left_start);
			s->left = NULL;
			s->left_start = NULL;
			return;
		}
	}
	s->n_left = n_left;
	if (!ev_is_active(&p->kept_w)) {
		ev_timer_again(p->loop, &p->kept_w);
		ev_unref(p->loop); /* it must not keep the loop running */
	}
}

void
pool_info(struct pool *p, struct pool_info *out)
{
	struct census c;

	/* Without the directory's lock: a file another instance is granting is not locked
	 * yet, and must not be taken for a dead one's. */
	census(p, &c, false);
	out->name = p->name;
	out->max = p->max;
	out->live = c.live;
	out->over = c.live > p->max;
}

/* ---- opening ---- */

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++) {
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	}
	return h;
}

struct pool *
pool_open(struct ev_loop *loop, const char *name, size_t max, double wait_s)
{
	char path[PATH_MAX] = "";
	struct stat st;
	struct pool *p = calloc(1, sizeof(*p));
	size_t at;

	if (p == NULL) {
		diag_error("pool %s: out of memory: --max-servers is not kept", name);
		return NULL;
	}
	p->dir_fd = -1;
	(void)snprintf(p->name, sizeof(p->name), "%s", name);
	if (sys_runtime_dir("pools", path, sizeof(path)) == -1) {
		goto fail;
	}
	at = strlen(path);
	(void)snprintf(path + at, sizeof(path) - at, "/%016" PRIx64, fnv1a(name));
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		goto fail;
	}
	p->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (p->dir_fd == -1 || fstat(p->dir_fd, &st) == -1) {
		goto fail;
	}
	if (st.st_uid != getuid() || (st.st_mode & 077) != 0) {
		errno = EPERM;
		goto fail;
	}
	int dup_fd = fcntl(p->dir_fd, F_DUPFD_CLOEXEC, 0);

	if (dup_fd == -1 || (p->dir = fdopendir(dup_fd)) == NULL) {
		if (dup_fd >= 0) {
			(void)close(dup_fd);
		}
		goto fail;
	}
	/* The pool's name, for `mcpmux ps`. */
	int fd = openat(p->dir_fd, "name", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			0600);

	if (fd >= 0) {
		char line[sizeof(p->name) + 1];
		int n = snprintf(line, sizeof(line), "%s\n", p->name);

		(void)sys_write_all(fd, line, (size_t)n);
		(void)close(fd);
	}
	p->loop = loop;
	p->max = max;
	p->wait_s = wait_s;
	p->pid = getpid();
	p->start = proc_start(p->pid);
	if (p->start == 0) {
		diag_warn("pool %s: cannot read this process's start time in /proc: its servers "
			  "cannot be asked for their slots by other instances, and it asks others "
			  "by their pids alone (that a pid is not another process's by now is not "
			  "checked)",
			  name);
	}
	ev_init(&p->tick_w, pool_on_tick);
	p->tick_w.repeat = POOL_TICK_S;
	p->tick_w.data = p;
	ev_timer_init(&p->self_w, pool_on_self, 0., 0.);
	p->self_w.data = p;
	ev_init(&p->kept_w, pool_on_kept);
	p->kept_w.repeat = POOL_KEPT_S;
	p->kept_w.data = p;
	ev_signal_init(&p->usr2_w, pool_on_usr2, SIGUSR2);
	p->usr2_w.data = p;
	ev_signal_start(loop, &p->usr2_w);
	ev_unref(loop); /* a watcher that must not keep the loop running */
	return p;
fail:
	diag_warn_errno("pool %s: cannot use its directory %s: --max-servers is not kept", name,
			path);
	sys_close(&p->dir_fd);
	free(p);
	return NULL;
}

struct pool *
pool_open_for(struct ev_loop *loop, const struct mcpmux_options *o)
{
	/* Long enough for an idle server's whole teardown ladder. */
	double wait_s = cli_teardown_max_s(o);
	size_t size = 1;

	if (o->max_servers == 0) {
		return NULL;
	}
	if (o->pool != NULL) {
		return pool_open(loop, o->pool, o->max_servers, wait_s);
	}
	/* The whole command line: its hash names the pool (p->name, what is shown, may be
	 * cut), so that commands that differ only past a cut are not one pool. */
	for (size_t i = 0; o->command[i] != NULL; i++) {
		size += strlen(o->command[i]) + 1;
	}
	char *name = malloc(size);

	if (name == NULL) {
		diag_error("pool: out of memory: --max-servers is not kept");
		return NULL;
	}
	pool_name_of(o->command, name, size);
	struct pool *p = pool_open(loop, name, o->max_servers, wait_s);

	free(name);
	return p;
}

void
pool_close(struct pool *p)
{
	if (p == NULL) {
		return;
	}
	while (p->slots != NULL) {
		pool_release(p->slots);
	}
	ev_timer_stop(p->loop, &p->tick_w);
	ev_timer_stop(p->loop, &p->self_w);
	kept_timer_stop(p);
	/*
	 * The stop puts SIGUSR2's default action back, which ends the process: an instance
	 * that saw this slot held a moment ago may still ask, and must not kill an mcpmux
	 * that is exiting.  It is blocked from before the stop until it is ignored, or an
	 * ask in between would still end it.  (Servers get every signal's default back, and
	 * an empty mask, before their exec.)
	 */
	sigset_t usr2, old;

	(void)sigemptyset(&usr2);
	(void)sigaddset(&usr2, SIGUSR2);
	(void)sigprocmask(SIG_BLOCK, &usr2, &old);
	ev_ref(p->loop);
	ev_signal_stop(p->loop, &p->usr2_w);
	(void)signal(SIGUSR2, SIG_IGN);
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	closedir(p->dir);
	sys_close(&p->dir_fd);
	free(p);
}
