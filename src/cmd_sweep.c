/*
 * cmd_sweep: `mcpmux sweep [--dry-run] [--older-than D]`: end the orphans, processes
 * and containers whose mcpmux is gone, with the teardown ladder, and say what it ended.
 * It signals only processes of this user that carry the cookie of a selected orphan
 * session, never this command or one of its ancestors, each through a pidfd after a
 * start-time check; containers only when labelled with an owner that is gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/table.h" /* first: before anything that includes uthash.h */

#include "mcpmux/cgroup.h"
#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/diag.h"
#include "mcpmux/survey.h"
#include "mcpmux/sys.h"

#define KILL_ROUND_MS	  100 /* re-scan and re-kill interval */
#define CONTAINER_POLL_MS 100 /* how often a container's state is read */

enum escalation {
	ESC_NONE,      /* not signalled yet */
	ESC_GONE,      /* gone before the first signal */
	ESC_TERM,      /* ended after SIGTERM */
	ESC_KILL,      /* SIGKILL was needed */
	ESC_RM,	       /* a container that was not running: removed */
	ESC_FAILED,    /* could not be signalled (a container: removed) */
	ESC_ABANDONED, /* still there after the kill deadline */
};

static const char *const esc_name[] = {
	"none", "gone", "term", "kill", "rm", "failed", "abandoned"
};

struct victim {
	struct procscan_target t;
	enum escalation esc;
	int err; /* ESC_FAILED: why */
	char session[PROCTREE_COOKIE_MAX + 1];
	char owner[PROCSCAN_OWNER_MAX + 1];
	uid_t uid;
	char command[256];
	size_t cg;   /* of a dead instance's cgroup: its index in survey.cg; else SIZE_MAX */
	bool spared; /* its cgroup was found a live instance's since: signalled no more */
};

/* A victim's process, to find it among the victims in constant time. */
struct vseen {
	struct vkey {
		pid_t pid;
		unsigned long long start;
	} k; /* memset: its padding is hashed too */
	UT_hash_handle hh;
};

struct victims {
	struct victim *v;
	size_t n, cap;
	struct vseen *seen; /* uthash: every v[i]'s */
	bool unjudged;	    /* dead cgroups' victims spared: they could not be judged again */
};

static void
victims_release(struct victims *vs)
{
	struct vseen *e, *tmp;

	HASH_ITER (hh, vs->seen, e, tmp) {
		HASH_DEL(vs->seen, e);
		free(e);
	}
	for (size_t i = 0; i < vs->n; i++) {
		procscan_target_release(&vs->v[i].t);
	}
	free(vs->v);
}

/* A selected orphan group's key, to find its carriers again in later scans. */
struct key {
	char session[PROCTREE_COOKIE_MAX + 1];
	char owner[PROCSCAN_OWNER_MAX + 1];
	uid_t uid;
};

static bool
group_selected(const struct survey *p, size_t g)
{
	const struct procscan_group *x = &p->scan.g[g];

	return x->owner_state == PROCSCAN_GONE && x->uid == p->uid &&
	       survey_session_selected(&p->o, x->session) &&
	       (p->o.older_than_s <= 0 || procscan_age(&p->scan, x->top) > p->o.older_than_s);
}

static bool
has_victim(const struct victims *vs, pid_t pid, unsigned long long start)
{
	struct vkey k;
	struct vseen *e;

	memset(&k, 0, sizeof(k));
	k.pid = pid;
	k.start = start;
	HASH_FIND(hh, vs->seen, &k, sizeof(k), e);
	return e != NULL;
}

static int
push_victim(struct victims *vs, const struct procscan_proc *c, const char *session,
	    const char *owner, size_t cg)
{
	struct vseen *e = calloc(1, sizeof(*e));
	bool added;

	if (e == NULL) {
		return -1;
	}
	if (vs->n == vs->cap) {
		size_t cap = vs->cap ? vs->cap * 2 : 16;
		struct victim *nv = realloc(vs->v, cap * sizeof(*nv));

		if (nv == NULL) {
			free(e);
			return -1;
		}
		vs->v = nv;
		vs->cap = cap;
	}
	e->k.pid = c->pid;
	e->k.start = c->start;
	TABLE_ADD(hh, vs->seen, &e->k, sizeof(e->k), e, added);
	if (!added) {
		free(e);
		return -1;
	}
	struct victim *v = &vs->v[vs->n++];

	memset(v, 0, sizeof(*v));
	procscan_target_init(&v->t, c->pid, c->start);
	(void)snprintf(v->session, sizeof(v->session), "%s", session);
	(void)snprintf(v->owner, sizeof(v->owner), "%s", owner);
	v->uid = c->uid;
	v->cg = cg;
	survey_command(c, 0, v->command, sizeof(v->command));
	return 0;
}

/*
 * Add the carriers of group g (not yet victims) to vs; say so of those on this sweep's
 * own line when warn.  -1 when memory runs out.
 */
static int
add_victims(struct victims *vs, const struct survey *p, size_t g, bool warn)
{
	const struct procscan *s = &p->scan;

	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *c = &s->v[i];

		if (c->group != g || c->uid != p->uid || has_victim(vs, c->pid, c->start)) {
			continue;
		}
		if (c->is_self_line) {
			if (!warn) {
				continue;
			}
			char session[PROCTREE_COOKIE_MAX + 1];

			diag_warn("pid %d (session '%s') is an ancestor of this sweep: left alone",
				  (int)c->pid,
				  survey_printable(c->session, session, sizeof(session)));
			continue;
		}
		if (push_victim(vs, c, c->session, c->owner, SIZE_MAX) == -1) {
			return -1;
		}
	}
	return 0;
}

/* A selected session of a dead instance's cgroup (its session "" when unknown). */
struct cgkey {
	size_t cg;
	char session[PROCTREE_COOKIE_MAX + 1];
};

/* keys: sorted by cgroup, then session, as survey.cgp is. */
static bool
cgkey_has(const struct cgkey *keys, size_t n, size_t cg, const char *session)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = keys[mid].cg != cg ? (keys[mid].cg < cg ? -1 : 1)
					   : strcmp(keys[mid].session, session);

		if (d == 0) {
			return true;
		}
		if (d < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return false;
}

/*
 * Add the processes of the selected sessions of the dead instances' cgroups (not yet
 * victims) to vs, as add_victims() does.  -1 when memory runs out.
 */
static int
add_cg_victims(struct victims *vs, const struct survey *p, const struct cgkey *keys, size_t n,
	       bool warn)
{
	for (size_t i = 0; i < p->n_cgp; i++) {
		const struct survey_cgproc *x = &p->cgp[i];
		const struct survey_cgroup *cg = &p->cg[x->cg];
		const struct procscan_proc *c = &p->scan.v[x->proc];
		const char *base = strrchr(cg->dir, '/');

		if (c->uid != p->uid || !cgkey_has(keys, n, x->cg, x->session) ||
		    has_victim(vs, c->pid, c->start)) {
			continue;
		}
		if (c->is_self_line) {
			if (warn) {
				diag_warn(
					"pid %d (in the cgroup %s of an instance that is gone) is an "
					"ancestor of this sweep: left alone",
					(int)c->pid, cg->dir);
			}
			continue;
		}
		if (push_victim(vs, c, x->session, cg->owner[0] != '\0' ? cg->owner : base + 1,
				x->cg) == -1) {
			return -1;
		}
	}
	return 0;
}

/* The sessions of the dead instances' cgroups that this sweep ends, into keys.  -1: ENOMEM. */
static int
select_cgroups(const struct survey *p, struct cgkey **keys, size_t *n)
{
	*keys = calloc(p->n_cgp ? p->n_cgp : 1, sizeof(**keys));
	*n = 0;
	if (*keys == NULL) {
		return -1;
	}
	/* p->cgp is sorted by cgroup, then session: each session's processes are together. */
	for (size_t i = 0, j; i < p->n_cgp; i = j) {
		const struct survey_cgproc *x = &p->cgp[i];
		double age = -1;

		/* A session's age: its oldest process's, as an orphan group's is its server's. */
		for (j = i; j < p->n_cgp && p->cgp[j].cg == x->cg &&
			    strcmp(p->cgp[j].session, x->session) == 0;
		     j++) {
			age = SYS_MAX(age, procscan_age(&p->scan, p->cgp[j].proc));
		}
		if (!survey_session_selected(&p->o, x->session)) {
			continue;
		}
		if (p->o.older_than_s <= 0 || age > p->o.older_than_s) {
			(*keys)[*n].cg = x->cg;
			(void)snprintf((*keys)[*n].session, sizeof((*keys)[*n].session), "%s",
				       x->session);
			(*n)++;
		}
	}
	return 0;
}

static void
signal_victim(struct victim *v, int sig)
{
	if (v->t.is_gone || v->esc == ESC_FAILED || v->spared) {
		return;
	}
	int rc = procscan_signal(SURVEY_PROC_ROOT, &v->t, sig);

	if (rc == 1) {
		v->esc = sig == SIGKILL ? ESC_KILL : v->esc == ESC_NONE ? ESC_TERM : v->esc;
	} else if (rc == 0) {
		v->esc = v->esc == ESC_NONE ? ESC_GONE : v->esc;
	} else {
		v->esc = ESC_FAILED;
		v->err = errno;
	}
}

static size_t
wait_victims(struct victims *vs, long long deadline)
{
	struct procscan_target *t = calloc(vs->n ? vs->n : 1, sizeof(*t));
	size_t left = 0;

	if (t == NULL) {
		/* One at a time, then. */
		for (size_t i = 0; i < vs->n; i++) {
			left += procscan_wait(SURVEY_PROC_ROOT, &vs->v[i].t, 1, deadline);
		}
		return left;
	}
	for (size_t i = 0; i < vs->n; i++) {
		t[i] = vs->v[i].t;
		if (vs->v[i].esc == ESC_FAILED || vs->v[i].spared) {
			t[i].is_gone = true; /* not ours to wait for */
		}
	}
	left = procscan_wait(SURVEY_PROC_ROOT, t, vs->n, deadline);
	for (size_t i = 0; i < vs->n; i++) {
		vs->v[i].t.is_gone = vs->v[i].esc == ESC_FAILED || vs->v[i].spared
					     ? vs->v[i].t.is_gone
					     : t[i].is_gone;
		vs->v[i].t.state = t[i].state;
	}
	free(t);
	return left;
}

/*
 * Does this sweep remove dead cgroup k: not live, and each process found in it selected;
 * one with none, made (and its leaves) CGROUP_YOUNG_S ago or more, when no --session or
 * --older-than was given, or when --session selects a session its status file names.
 */
enum cg_removal { CG_KEEP, CG_EMPTIED, CG_EMPTY };

static enum cg_removal
cgroup_selected(const struct survey *p, size_t k, const struct cgkey *keys, size_t n)
{
	const struct survey_cgroup *cg = &p->cg[k];
	bool any = false;

	if (cg->live) {
		return CG_KEEP;
	}
	for (size_t i = 0; i < p->n_cgp; i++) {
		if (p->cgp[i].cg == k) {
			if (!cgkey_has(keys, n, k, p->cgp[i].session)) {
				return CG_KEEP;
			}
			any = true;
		}
	}
	if (any) {
		return CG_EMPTIED;
	}
	/* Found empty: a leaf made a moment ago may be a starting instance's, not yet used. */
	if (survey_cgroup_young(cg->dir) || p->o.older_than_s > 0) {
		return CG_KEEP;
	}
	if (p->o.session == NULL) {
		return CG_EMPTY;
	}
	for (size_t j = 0; j < cg->n_leaf; j++) {
		if (survey_session_selected(&p->o, cg->leaf[j].session)) {
			return CG_EMPTY;
		}
	}
	return CG_KEEP;
}

/*
 * The victims in a dead cgroup found a live instance's since they were chosen are
 * signalled no more.
 */
static void
spare_live(const struct survey *p, struct victims *vs)
{
	for (size_t i = 0; i < vs->n; i++) {
		struct victim *v = &vs->v[i];

		if (v->cg != SIZE_MAX && p->cg[v->cg].live && !v->spared) {
			v->spared = true;
			if (v->esc != ESC_NONE) {
				diag_warn(
					"pid %d was signalled before its cgroup %s was found a live "
					"instance's: signalled no more",
					(int)v->t.pid, p->cg[v->cg].dir);
			}
		}
	}
}

/*
 * The victims chosen in dead cgroups, when the cgroups could not be judged again: not
 * signalled (again) on a judgement that cannot be renewed.
 */
static void
spare_cg_victims(struct victims *vs)
{
	for (size_t i = 0; i < vs->n; i++) {
		if (vs->v[i].cg != SIZE_MAX && !vs->v[i].spared && !vs->v[i].t.is_gone) {
			vs->v[i].spared = true;
			vs->unjudged = true;
		}
	}
}

/*
 * Judge the dead cgroups again from a new scan, right before their processes are first
 * signalled (the containers' ladder may have taken minutes): those now found live, and
 * the victims chosen in them, are left alone.  If that cannot be done, no victim of a
 * dead cgroup is signalled.
 */
static int
rejudge(struct survey *p, struct victims *vs)
{
	if (p->n_cg == 0) {
		return 0;
	}
	if (procscan_read(&p->scan, SURVEY_PROC_ROOT, p->uid, false, getpid()) == -1) {
		spare_cg_victims(vs);
		return -1;
	}
	for (size_t k = 0; k < p->n_cg; k++) {
		if (!p->cg[k].live && !survey_cgroup_still_dead(p, k)) {
			p->cg[k].live = true;
		}
	}
	spare_live(p, vs);
	if (survey_cgroup_procs(p) == -1) {
		spare_cg_victims(vs);
		return -1;
	}
	spare_live(p, vs);
	return 0;
}

/*
 * Remove dead cgroup k that cgroup_selected() chose (how), emptied, by survey_cgroup_remove().
 * -1 when it could not be removed for another reason than a process or a cgroup still in it
 * (said).
 */
static int
remove_cgroup(const struct survey *p, size_t k, enum cg_removal how)
{
	if (how == CG_KEEP || survey_cgroup_remove(p, k, how == CG_EMPTY) != -1) {
		return 0;
	}
	diag_error_errno("cannot remove the cgroup %s of an instance that is gone", p->cg[k].dir);
	return -1;
}

/* What a sweep ends: orphan groups by their keys, and sessions of dead cgroups. */
struct selection {
	const struct key *keys;
	size_t n_keys;
	const struct cgkey *cg;
	size_t n_cg;
};

/*
 * Re-scan and add the selected groups' carriers, and the processes of the selected
 * sessions of dead cgroups, that appeared since (forked).
 */
static int
rescan(struct survey *p, const struct selection *sel, struct victims *vs)
{
	const struct key *keys = sel->keys;
	size_t n_keys = sel->n_keys;

	if (procscan_read(&p->scan, SURVEY_PROC_ROOT, p->uid, false, getpid()) == -1) {
		spare_cg_victims(vs);
		return -1;
	}
	if (survey_cgroup_procs(p) == -1) {
		spare_live(p, vs);
		spare_cg_victims(vs);
		return -1;
	}
	spare_live(p, vs);
	if (add_cg_victims(vs, p, sel->cg, sel->n_cg, false) == -1) {
		return -1;
	}
	for (size_t k = 0; k < n_keys; k++) {
		size_t g = procscan_find_orphans(&p->scan, keys[k].owner, keys[k].session,
						 keys[k].uid);

		if (g != SIZE_MAX && add_victims(vs, p, g, false) == -1) {
			return -1;
		}
	}
	return 0;
}

static size_t
live_victims(const struct victims *vs)
{
	size_t n = 0;

	for (size_t i = 0; i < vs->n; i++) {
		n += !vs->v[i].t.is_gone && vs->v[i].esc != ESC_FAILED && !vs->v[i].spared;
	}
	return n;
}

/* The process ladder: SIGTERM + SIGCONT, grace, SIGKILL rounds until gone or deadline. */
static void
end_processes(struct survey *p, const struct selection *sel, struct victims *vs)
{
	if (rejudge(p, vs) == -1) {
		diag_warn_errno("cannot read the processes again");
	}
	for (size_t i = 0; i < vs->n; i++) {
		signal_victim(&vs->v[i], SIGTERM);
	}
	(void)wait_victims(vs, procscan_now_ms() + (long long)p->o.term_grace_ms);
	long long deadline = procscan_now_ms() + (long long)p->o.kill_deadline_ms;

	/* Anything forked during the grace is found by the re-scan and killed with the rest. */
	for (;;) {
		if (rescan(p, sel, vs) == -1) {
			diag_warn_errno("cannot read the processes again");
		}
		if (live_victims(vs) == 0) {
			break;
		}
		for (size_t i = 0; i < vs->n; i++) {
			signal_victim(&vs->v[i], SIGKILL);
		}
		long long now = procscan_now_ms();

		if (now >= deadline) {
			break;
		}
		(void)wait_victims(vs, SYS_MIN(deadline, now + KILL_ROUND_MS));
	}
	for (size_t i = 0; i < vs->n; i++) {
		if (!vs->v[i].t.is_gone && vs->v[i].esc != ESC_FAILED && !vs->v[i].spared) {
			vs->v[i].esc = ESC_ABANDONED;
		}
	}
}

/* A selected container and how its ladder went. */
struct cvictim {
	const struct container_info *c;
	/* The helpers' words before `container`, and context (survey_run_in()): its run's. */
	char *const *prefix;
	size_t n_prefix;
	char *const *vars; /* NULL: as they are */
	enum escalation esc;
	bool is_gone, is_running;
	bool removed; /* by this sweep's rm -f: gone since then is not gone by itself */
	char error[256];
};

static bool
container_running(const char *state)
{
	return strcmp(state, "running") == 0 || strcmp(state, "paused") == 0 ||
	       strcmp(state, "restarting") == 0 || strcmp(state, "stopping") == 0;
}

/* Run one helper; false (with error set) when it failed for a reason other than "gone". */
static bool
helper(struct cvictim *cv, char **argv, struct survey_run *r, bool *gone)
{
	*gone = false;
	if (argv == NULL) {
		(void)snprintf(cv->error, sizeof(cv->error), "%s", strerror(errno));
		memset(r, 0, sizeof(*r));
		return false;
	}
	struct container_run cr;
	const char *not = NULL;

	/* A record's engine: by the path found for its run, checked again as it was read. */
	if (cv->vars != NULL &&
	    (not = container_record_engine(cv->prefix, cv->n_prefix, &cr)) != NULL) {
		(void)snprintf(cv->error, sizeof(cv->error), "its engine is not run: %s", not );
		free(argv);
		memset(r, 0, sizeof(*r));
		return false;
	}
	int rc = survey_run_in(argv, cv->vars, SURVEY_ENGINE_TIMEOUT_MS, r);

	free(argv);
	if (rc == 0 && survey_run_ok(r)) {
		return true;
	}
	/* not one killed at its deadline: what it said before is not its answer */
	if (rc == 0 && r->status != -1 && container_gone_output(&r->err_tail)) {
		*gone = true;
		return true;
	}
	survey_run_failure(r, cv->error, sizeof(cv->error));
	return false;
}

/* Read a container's state: updates is_running / is_gone. */
static void
inspect(struct cvictim *cv)
{
	struct survey_run r;
	bool gone;

	if (cv->is_gone) {
		return;
	}
	if (helper(cv, container_inspect_argv(cv->prefix, cv->n_prefix, cv->c->id), &r, &gone)) {
		char state[64];

		cv->is_gone = gone;
		if (gone && cv->esc == ESC_RM && !cv->removed) {
			cv->esc = ESC_GONE; /* it went by itself (--rm) */
		}
		survey_first_line(r.out.buf != NULL ? r.out.buf : "", r.out.len, state,
				  sizeof(state));
		cv->is_running = !gone && container_running(state);
	}
	survey_run_release(&r);
}

static void
kill_container(struct cvictim *cv, const char *sig)
{
	struct survey_run r;
	bool gone;

	if (cv->is_gone || !cv->is_running) {
		return;
	}
	if (helper(cv, container_kill_argv(cv->prefix, cv->n_prefix, sig, cv->c->id), &r, &gone)) {
		cv->is_gone = gone;
		if (!gone) {
			cv->esc = strcmp(sig, "KILL") == 0 ? ESC_KILL : ESC_TERM;
		} else if (cv->esc == ESC_RM) {
			cv->esc = ESC_GONE; /* before this sweep signalled it */
		}
	}
	survey_run_release(&r);
}

/* Poll the running ones until none runs or the deadline passes. */
static void
wait_containers(struct cvictim *cv, size_t n, long long deadline)
{
	for (;;) {
		bool any = false;

		for (size_t i = 0; i < n; i++) {
			if (cv[i].is_running && !cv[i].is_gone) {
				inspect(&cv[i]);
				any = any || (cv[i].is_running && !cv[i].is_gone);
			}
		}
		long long now = procscan_now_ms();

		if (!any || now >= deadline) {
			return;
		}
		struct timespec ts = { 0, (long)SYS_MIN(CONTAINER_POLL_MS, deadline - now) *
						  1000000L };

		while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
		}
	}
}

/* The container ladder: kill TERM, grace, kill KILL, deadline, rm -f. */
static void
end_containers(const struct survey *p, struct cvictim *cv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		cv[i].is_running = container_running(cv[i].c->state);
		cv[i].esc = ESC_RM;
		kill_container(&cv[i], "TERM");
	}
	wait_containers(cv, n, procscan_now_ms() + (long long)p->o.term_grace_ms);
	for (size_t i = 0; i < n; i++) {
		kill_container(&cv[i], "KILL");
	}
	wait_containers(cv, n, procscan_now_ms() + (long long)p->o.kill_deadline_ms);
	for (size_t i = 0; i < n; i++) {
		struct survey_run r;
		bool gone;

		if (cv[i].is_gone) {
			continue;
		}
		if (cv[i].is_running) {
			(void)snprintf(cv[i].error, sizeof(cv[i].error),
				       "still running %.0f ms after kill --signal KILL",
				       p->o.kill_deadline_ms);
			cv[i].esc = ESC_ABANDONED;
			continue;
		}
		if (!helper(&cv[i], container_rm_argv(cv[i].prefix, cv[i].n_prefix, cv[i].c->id),
			    &r, &gone)) {
			cv[i].esc = ESC_FAILED;
		} else {
			cv[i].removed = !gone;
		}
		survey_run_release(&r);
		if (cv[i].esc != ESC_FAILED) {
			inspect(&cv[i]);
			if (!cv[i].is_gone) {
				if (cv[i].error[0] == '\0') {
					(void)snprintf(cv[i].error, sizeof(cv[i].error),
						       "still there after rm -f");
				}
				cv[i].esc = ESC_FAILED;
			}
		}
	}
}

/* Housekeeping, not reported: mcpmux's id files of the containers ended (keeper.c). */
static void
sweep_cidfiles(const struct cvictim *cv, size_t n)
{
	const char **ids = calloc(n ? n : 1, sizeof(*ids));
	size_t k = 0;

	if (ids == NULL) {
		return; /* left for the next sweep */
	}
	for (size_t i = 0; i < n; i++) {
		if (cv[i].is_gone) {
			ids[k++] = cv[i].c->id;
		}
	}
	(void)survey_sweep_cidfiles(ids, k);
	free(ids);
}

static void
state_words(char state, char *out, size_t cap)
{
	const char *what = state == 'D'	  ? ", uninterruptible sleep"
			   : state == 'T' ? ", stopped"
			   : state == 't' ? ", traced"
					  : "";

	(void)snprintf(out, cap, "state %c%s", state ? state : '?', what);
}

static int
sweep_report(const struct survey *p, const struct victims *vs, const struct cvictim *cv, size_t ncv)
{
	static const char *const phead[] = { "PID", "SESSION", "OWNER", "ESCALATION", "COMMAND" };
	static const char *const chead[] = { "ENGINE", "CONTAINER",  "SESSION",
					     "OWNER",  "ESCALATION", "NAME" };
	struct survey_table pt = { 5, phead, "rllll", NULL, 0, 0, false };
	struct survey_table ct = { 6, chead, "llllll", NULL, 0, 0, false };
	size_t p_ended = 0, p_failed = 0, c_ended = 0, c_failed = 0;
	char pid[32], id[32], why[128], session[CONTAINER_LABEL_MAX + 1];

	for (size_t i = 0; i < vs->n; i++) {
		const struct victim *v = &vs->v[i];

		if (v->spared && v->esc == ESC_NONE) {
			continue; /* a live instance's after all: not ended */
		}
		(void)snprintf(pid, sizeof(pid), "%d", (int)v->t.pid);
		const char *row[] = { pid, v->session[0] ? v->session : "-",
				      v->owner[0] ? v->owner : "-",
				      p->o.dry_run ? "-" : esc_name[v->esc], v->command };

		survey_table_row(&pt, row);
		if (v->esc == ESC_FAILED) {
			diag_error("cannot signal pid %d (session '%s', '%s'): %s", (int)v->t.pid,
				   survey_printable(v->session, session, sizeof(session)),
				   v->command, strerror(v->err));
			p_failed++;
		} else if (v->esc == ESC_ABANDONED) {
			state_words(v->t.state, why, sizeof(why));
			diag_error("pid %d (session '%s', '%s') would not die: still there %.0f ms "
				   "after SIGKILL (%s)",
				   (int)v->t.pid,
				   survey_printable(v->session, session, sizeof(session)),
				   v->command, p->o.kill_deadline_ms, why);
			p_failed++;
		} else {
			p_ended++;
		}
	}
	for (size_t i = 0; i < ncv; i++) {
		const struct container_info *c = cv[i].c;

		(void)snprintf(id, sizeof(id), "%.12s", c->id);
		const char *row[] = {
			container_engine_name(c->engine),	  id,
			c->session[0] ? c->session : "-",	  c->owner,
			p->o.dry_run ? "-" : esc_name[cv[i].esc], c->name[0] ? c->name : "-"
		};

		survey_table_row(&ct, row);
		if (cv[i].esc == ESC_FAILED || cv[i].esc == ESC_ABANDONED) {
			diag_error("cannot end %s container %.12s (session '%s'): %s",
				   container_engine_name(c->engine), c->id,
				   survey_printable(c->session, session, sizeof(session)),
				   cv[i].error);
			c_failed++;
		} else {
			c_ended++;
		}
	}
	if (!pt.failed && pt.nrows > 0) {
		if (p->o.dry_run) {
			printf("would end:\n");
		}
		survey_table_print(&pt);
	}
	if (!ct.failed && ct.nrows > 0) {
		if (pt.nrows > 0) {
			fputs("\n", stdout);
		}
		if (p->o.dry_run && pt.nrows == 0) {
			printf("would end:\n");
		}
		survey_table_print(&ct);
	}
	if (vs->n == 0 && ncv == 0) {
		printf("no orphans to end\n");
	} else if (!p->o.dry_run) {
		printf("\nended %zu process(es) and %zu container(s)", p_ended, c_ended);
		if (p_failed + c_failed > 0) {
			printf("; %zu process(es) and %zu container(s) could not be ended",
			       p_failed, c_failed);
		}
		printf("\n");
	}
	bool oom = pt.failed || ct.failed;

	survey_table_release(&pt);
	survey_table_release(&ct);
	if (oom) {
		diag_error("out of memory");
		return 1;
	}
	if (vs->unjudged) {
		diag_error("the processes of the cgroups of instances that are gone could not be "
			   "judged again: those not ended yet were left alone");
	}
	return p_failed + c_failed > 0 || vs->unjudged ? 1 : 0;
}

/*
 * Is container c one to end: of the selected sessions, its owner gone, and older than
 * --older-than?  An owner that cannot be judged is said, and sets *unknown.
 */
static bool
container_selected(const struct survey *p, const struct container_info *c, bool *unknown)
{
	double age = survey_container_age(c);
	int err;
	enum survey_owner owner = survey_container_owner(p, c, &err);

	if (!survey_session_selected(&p->o, c->session)) {
		return false;
	}
	if (owner == SURVEY_UNKNOWN) {
		char text[CONTAINER_LABEL_MAX + 1];

		diag_warn("cannot tell whether mcpmux %s, the owner of %s container "
			  "%.12s, is alive: %s (left alone)",
			  survey_printable(c->owner, text, sizeof(text)),
			  container_engine_name(c->engine), c->id,
			  err != 0 ? strerror(err)
				   : "it runs in a pid namespace not seen from here");
		*unknown = true;
		return false;
	}
	return owner == SURVEY_ORPHAN && (p->o.older_than_s <= 0 || age > p->o.older_than_s);
}

int
cmd_sweep(int argc, char **argv)
{
	struct victims vs = { NULL, 0, 0, NULL, false };
	struct cvictim *cv = NULL;
	struct key *keys = NULL;
	struct cgkey *cgkeys = NULL;
	unsigned char *rm_cg = NULL;
	size_t n_keys = 0, ncv = 0, n_cgkeys = 0;
	struct survey p;
	int rc;

	memset(&p, 0, sizeof(p));
	/* Its output waits for room in a full non-blocking stdout, as config's does. */
	(void)sys_stdout_waits();
	rc = survey_parse(&p.o, argc, argv, true);
	if (rc != 0) {
		return rc == 1 ? 0 : EXIT_USAGE;
	}
	/* Only this user's processes, even for root: sweep never ends another user's. */
	if (survey_read(&p) == -1) {
		survey_release(&p);
		return 1;
	}
	bool unknown = survey_report_unknown(&p, true);

	/* An engine that is there but could not be listed may hold orphans not ended. */
	for (size_t e = 0; e < SURVEY_ENGINES; e++) {
		const struct survey_engine *en = &p.engines[e];

		if (en->present && !en->listed && !en->down) {
			diag_error("the containers of %s could not be listed: its orphans, if any, "
				   "are not ended (%s)",
				   container_engine_name(en->kind), en->error);
			unknown = true;
		}
	}
	/* The containers of gone instances' runs in other contexts (their id files' records). */
	if (survey_read_recorded(&p) == -1) {
		survey_release(&p);
		return 1;
	}
	keys = calloc(p.scan.n_groups ? p.scan.n_groups : 1, sizeof(*keys));
	size_t n_ctr = p.engines[0].n + p.engines[1].n + p.n_rec;

	cv = calloc(n_ctr ? n_ctr : 1, sizeof(*cv));
	rc = keys == NULL || cv == NULL ? -1 : 0;
	for (size_t g = 0; rc == 0 && g < p.scan.n_groups; g++) {
		if (!group_selected(&p, g)) {
			continue;
		}
		struct key *k = &keys[n_keys++];

		(void)snprintf(k->session, sizeof(k->session), "%s", p.scan.g[g].session);
		(void)snprintf(k->owner, sizeof(k->owner), "%s", p.scan.g[g].owner);
		k->uid = p.scan.g[g].uid;
		rc = add_victims(&vs, &p, g, true);
	}
	for (size_t e = 0; rc == 0 && e < 2; e++) {
		for (size_t k = 0; k < p.engines[e].n; k++) {
			const struct container_info *c = &p.engines[e].v[k];

			if (container_selected(&p, c, &unknown)) {
				cv[ncv].prefix = survey_engine_prefix(c->engine);
				cv[ncv].n_prefix = 1;
				cv[ncv++].c = c;
			}
		}
	}
	/* Those of other contexts, by the records of their runs: the same checks. */
	for (size_t k = 0; rc == 0 && k < p.n_rec; k++) {
		const struct survey_recorded *x = &p.rec[k];

		if (container_selected(&p, &x->c, &unknown)) {
			cv[ncv].prefix = x->v + x->n_vars + 1;
			cv[ncv].n_prefix = x->n_words;
			cv[ncv].vars = x->v;
			cv[ncv++].c = &x->c;
		}
	}
	/* What is left in the cgroups of instances that are gone (docs/ps.md). */
	if (rc == 0 &&
	    (survey_read_cgroups(&p) == -1 || select_cgroups(&p, &cgkeys, &n_cgkeys) == -1 ||
	     add_cg_victims(&vs, &p, cgkeys, n_cgkeys, true) == -1)) {
		rc = -1;
	}
	/* Which of them go once emptied, judged by what was found in them before the ladder. */
	if (rc == 0 && (rm_cg = calloc(p.n_cg ? p.n_cg : 1, sizeof(*rm_cg))) == NULL) {
		rc = -1;
	}
	for (size_t k = 0; rc == 0 && k < p.n_cg; k++) {
		rm_cg[k] = (unsigned char)cgroup_selected(&p, k, cgkeys, n_cgkeys);
	}
	if (rc == -1) {
		diag_error("out of memory");
		rc = 1;
	} else {
		size_t cg_failed = 0;

		if (!p.o.dry_run) {
			struct selection sel = { keys, n_keys, cgkeys, n_cgkeys };

			/*
			 * Containers first, as the keeper does (docs/decisions.md): a container
			 * run's processes (its engine command, conmon, which may be in a dead
			 * instance's cgroup leaf) are not signalled while the engine stops it.
			 */
			end_containers(&p, cv, ncv);
			end_processes(&p, &sel, &vs);
			/*
			 * The dead instances' cgroups this sweep selected, emptied: what holds a
			 * process stays.
			 */
			for (size_t k = 0; k < p.n_cg; k++) {
				cg_failed += remove_cgroup(&p, k, (enum cg_removal)rm_cg[k]) == -1;
			}
			/* housekeeping: not reported (what it leaves is said) */
			(void)survey_sweep_status(&p.scan, &p, false);
			sweep_cidfiles(cv, ncv);
			/* and those of containers gone without them (removed by hand) */
			(void)survey_sweep_lost_cidfiles(&p);
		}
		if (p.o.dry_run) {
			/* it removes nothing, and says what it would leave, as a sweep would */
			(void)survey_sweep_status(&p.scan, &p, true);
		}
		rc = sweep_report(&p, &vs, cv, ncv);
		if (fflush(stdout) == EOF || ferror(stdout)) {
			(void)diag_error_errno("cannot write to stdout");
			rc = 1;
		}
		rc = rc != 0 || unknown || cg_failed > 0 || p.cg_unread ? 1 : 0;
	}
	victims_release(&vs);
	free(keys);
	free(cgkeys);
	free(rm_cg);
	free(cv);
	survey_release(&p);
	return rc;
}
