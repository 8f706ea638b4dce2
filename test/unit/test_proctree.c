/*
 * Unit tests for proctree: proctree_scan() and membership on a fake /proc tree built
 * in a temporary directory, then proctree_scan()/proctree_count()/proctree_signal() on
 * the real /proc with children of the test process itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mcpmux/proctree.h"
#include "tmpdir.h"

/* ---- a fake /proc ---- */

struct fake_proc {
	pid_t pid;
	pid_t ppid;
	pid_t pgid;
	char state;
	const char *comm;
	const char *cookie;	 /* MCPMUX_SESSION value; NULL: not set */
	size_t env_pad;		 /* bytes of other variables before the cookie */
	const char *tasks[2];	 /* thread ids (NULL: just the pid) */
	const char *children[2]; /* each task's children file */
};

struct fake_root {
	char dir[PATH_MAX];
	struct proctree t;
};

static int
root_setup(void **state)
{
	struct fake_root *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		return -1;
	}
	if (tmpdir_make(r->dir, sizeof(r->dir), "proctree") == -1) {
		free(r);
		return -1;
	}
	proctree_init(&r->t);
	*state = r;
	return 0;
}

static int
root_teardown(void **state)
{
	struct fake_root *r = *state;
	int rc = tmpdir_remove(r->dir);

	proctree_release(&r->t);
	free(r);
	return rc;
}

/* The start time the fake stat file gives a pid. */
static unsigned long long
start_of(pid_t pid)
{
	return 1000000ull + (unsigned long long)pid * 7;
}

/*
 * The environment: entries of padding ("P=ppp...", at most 101 bytes each) filling
 * exactly env_pad bytes, then the cookie (if any), then TAIL=1.
 */
static void
write_environ(const char *path, const struct fake_proc *p)
{
	char *env = malloc(p->env_pad + 512);
	size_t len = 0;

	assert_non_null(env);
	while (len < p->env_pad) {
		size_t body = p->env_pad - len - 1 > 100 ? 100 : p->env_pad - len - 1;

		for (size_t k = 0; k < body; k++) {
			env[len + k] = k == 0 ? 'P' : k == 1 ? '=' : 'p';
		}
		len += body;
		env[len++] = '\0';
	}
	if (p->cookie != NULL) {
		len += (size_t)sprintf(env + len, "%s=%s", PROCTREE_COOKIE_ENV, p->cookie) + 1;
	}
	len += (size_t)sprintf(env + len, "TAIL=1") + 1;
	write_file(path, env, len);
	free(env);
}

static void
add_proc(const char *root, const struct fake_proc *p)
{
	char dir[PATH_MAX], path[PATH_MAX + 64], line[512];
	int n;

	path_at(dir, sizeof(dir), "%s/%d", root, (int)p->pid);
	dir_at("%s", dir);
	dir_at("%s/task", dir);
	n = snprintf(line, sizeof(line),
		     "%d (%s) %c %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %llu 123456 789 "
		     "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n",
		     (int)p->pid, p->comm ? p->comm : "proc", p->state ? p->state : 'S',
		     (int)p->ppid, (int)p->pgid, (int)p->pgid, start_of(p->pid));
	write_file_at(line, (size_t)n, "%s/stat", dir);
	path_at(path, sizeof(path), "%s/environ", dir);
	write_environ(path, p);
	for (int i = 0; i < 2; i++) {
		char tid[32];

		if (i > 0 && p->tasks[i] == NULL) {
			break;
		}
		(void)snprintf(tid, sizeof(tid), "%s", p->tasks[i] ? p->tasks[i] : "");
		if (tid[0] == '\0') {
			(void)snprintf(tid, sizeof(tid), "%d", (int)p->pid);
		}
		dir_at("%s/task/%s", dir, tid);
		write_file_at(p->children[i] ? p->children[i] : "",
			      p->children[i] ? strlen(p->children[i]) : 0, "%s/task/%s/children",
			      dir, tid);
	}
}

/* mcpmux itself: only its task/<pid>/children file is read. */
static void
add_root(const char *root, pid_t pid, const char *children)
{
	dir_at("%s/%d", root, (int)pid);
	dir_at("%s/%d/task", root, (int)pid);
	dir_at("%s/%d/task/%d", root, (int)pid, (int)pid);
	write_file_at(children, strlen(children), "%s/%d/task/%d/children", root, (int)pid,
		      (int)pid);
}

static size_t
find(const struct proctree *t, pid_t pid)
{
	for (size_t i = 0; i < t->n; i++) {
		if (t->v[i].pid == pid) {
			return i;
		}
	}
	return SIZE_MAX;
}

/* ---- the fake tree ---- */

#define ROOT 50

/*
 * mcpmux (50)
 * |- 100 backend A, group 100, cookie A; two threads, one child listed by each
 * |  |- 101 in group 100, cookie A, a comm with spaces and parentheses
 * |  |  `- 103 setsid grandchild: group 103, cookie A
 * |  `- 102 zombie in group 100
 * |- 200 backend B, group 200, cookie B
 * |  `- 201 cookie B, but in group 100 (the group id of a reused pid)
 * |- 300 orphan: group 300, no cookie (its backend is gone)
 * |  `- 301 group 300, no cookie
 * |- 400 daemon re-parented to mcpmux, still in group 100, no cookie
 * |- 500 daemon re-parented to mcpmux, setsid (group 500), cookie A after 20000 bytes of
 * |  |   other environment
 * |  `- 501 group 500, no cookie
 * `- 999 listed, but gone before it could be read
 */
static const struct fake_proc tree[] = {
	{ 100, ROOT, 100, 'S', "backend A", "A", 0, { "100", "105" }, { "101", "102 " } },
	{ 101, 100, 100, 'S', "x) (y z) ) w", "A", 0, { NULL }, { "103\n" } },
	{ 102, 100, 100, 'Z', "dead", NULL, 0, { NULL }, { NULL } },
	{ 103, 101, 103, 'S', "setsid", "A", 0, { NULL }, { NULL } },
	{ 200, ROOT, 200, 'S', "backend B", "B", 0, { NULL }, { "201 " } },
	{ 201, 200, 100, 'R', "reused", "B", 0, { NULL }, { NULL } },
	{ 300, ROOT, 300, 'S', "orphan", NULL, 0, { NULL }, { "301" } },
	{ 301, 300, 300, 'D', "orphan child", NULL, 0, { NULL }, { NULL } },
	{ 400, ROOT, 100, 'S', "kept the group", NULL, 0, { NULL }, { NULL } },
	{ 500, ROOT, 500, 'T', "long environ", "A", 20000, { NULL }, { "501" } },
	{ 501, 500, 500, 'S', "under long", NULL, 0, { NULL }, { NULL } },
};

#define N_TREE (sizeof(tree) / sizeof(tree[0]))

static void
build_tree(const char *root)
{
	add_root(root, ROOT, "100 200 300 400 500 999 ");
	for (size_t i = 0; i < N_TREE; i++) {
		add_proc(root, &tree[i]);
	}
}

static bool
backends_100_200(pid_t pid)
{
	return pid == 100 || pid == 200;
}

static bool
everyone_is_a_backend(pid_t pid)
{
	(void)pid;
	return true;
}

static void
test_fake_scan(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;

	build_tree(r->dir);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(t->n, N_TREE);

	/* The children of mcpmux come first, in the order of its children file. */
	assert_int_equal(t->v[0].pid, 100);
	assert_int_equal(t->v[1].pid, 200);
	assert_int_equal(t->v[2].pid, 300);
	assert_int_equal(t->v[3].pid, 400);
	assert_int_equal(t->v[4].pid, 500);
	for (size_t k = 0; k < N_TREE; k++) {
		const struct fake_proc *p = &tree[k];
		size_t i = find(t, p->pid);

		assert_true(i != SIZE_MAX);
		const struct proc_info *pi = &t->v[i];

		assert_int_equal(pi->ppid, p->ppid);
		assert_int_equal(pi->pgid, p->pgid);
		assert_int_equal(pi->state, p->state);
		assert_int_equal(pi->start, start_of(p->pid));
		assert_string_equal(pi->cookie, p->cookie ? p->cookie : "");
		if (p->ppid == ROOT) {
			assert_int_equal(pi->parent, SIZE_MAX);
		} else {
			/* breadth first: the parent's entry comes before */
			assert_true(pi->parent < i);
			assert_int_equal(t->v[pi->parent].pid, p->ppid);
		}
	}
	assert_int_equal(find(t, 999), SIZE_MAX);
	assert_int_equal(find(t, 105), SIZE_MAX); /* a thread, not a process */

	/* A second scan replaces the first. */
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(t->n, N_TREE);
	/* A subtree. */
	assert_int_equal(proctree_scan(t, r->dir, 100), 0);
	assert_int_equal(t->n, 3);
	assert_true(find(t, 103) != SIZE_MAX);
	/* A pid that has no /proc entry at all: empty, not an error. */
	assert_int_equal(proctree_scan(t, r->dir, 4242), 0);
	assert_int_equal(t->n, 0);
}

/* Which entries of the fake tree are members of each match. */
struct member_row {
	pid_t pid;
	bool a;		  /* backend A */
	bool a_orphans;	  /* backend A, with is_backend (wrap mode) */
	bool b;		  /* backend B */
	bool a_no_cookie; /* A known only by pid and group */
};

static const struct member_row members[] = {
	{ 100, true, true, false, true },    { 101, true, true, false, true },
	{ 102, false, false, false, false }, /* zombie */
	{ 103, true, true, false, true },    /* setsid, but cookie A and under 101 */
	{ 200, false, false, true, false },  { 201, false, false, true, false }, /* cookie B */
	{ 300, false, true, false, false },					 /* orphan */
	{ 301, false, true, false, false }, /* orphan's child */
	{ 400, true, true, false, true },   /* group 100 */
	{ 500, true, true, false, false },  /* cookie A only */
	{ 501, true, true, false, false },  /* under 500 */
};

static void
check_members(const struct proctree *t, const struct proctree_match *m, size_t column)
{
	size_t want_count = 0;

	for (size_t k = 0; k < sizeof(members) / sizeof(members[0]); k++) {
		const struct member_row *row = &members[k];
		bool want = column == 0	  ? row->a
			    : column == 1 ? row->a_orphans
			    : column == 2 ? row->b
					  : row->a_no_cookie;
		size_t i = find(t, row->pid);

		assert_true(i != SIZE_MAX);
		if (proctree_is_member(t, i, m) != want) {
			fail_msg("pid %d: member %d, want %d (column %zu)", (int)row->pid, !want,
				 want, column);
		}
		want_count += want;
	}
	assert_int_equal(proctree_count(t, m), want_count);
}

static void
test_fake_membership(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct proctree_match a = { 100, 100, "A", NULL, NULL, NULL, 0 };
	const struct proctree_match a_wrap = { 100, 100, "A", backends_100_200, NULL, NULL, 0 };
	const struct proctree_match b = { 200, 200, "B", NULL, NULL, NULL, 0 };
	const struct proctree_match a_no_cookie = { 100, 100, NULL, NULL, NULL, NULL, 0 };

	build_tree(r->dir);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	check_members(t, &a, 0);
	check_members(t, &a_wrap, 1);
	check_members(t, &b, 2);
	check_members(t, &a_no_cookie, 3);
	assert_int_equal(proctree_count(t, &a), 6);
	assert_int_equal(proctree_count(t, &a_wrap), 8);
	assert_int_equal(proctree_count(t, &b), 2);
	assert_int_equal(proctree_count(t, &a_no_cookie), 4);
}

static void
test_fake_membership_variants(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;

	build_tree(r->dir);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);

	/* A reaped backend (pid 0): its group and cookie still find the rest. */
	const struct proctree_match reaped = { 0, 100, "A", NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &reaped), 6);

	/* By cookie alone: 400 (group only) is left out. */
	const struct proctree_match cookie_only = { 0, 0, "A", NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &cookie_only), 5);
	assert_false(proctree_is_member(t, find(t, 400), &cookie_only));

	/* An empty cookie matches nothing by cookie. */
	const struct proctree_match empty_cookie = { 0, 0, "", NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &empty_cookie), 0);

	/* Nothing to go by: no members. */
	const struct proctree_match nothing = { 0, 0, NULL, NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &nothing), 0);

	/* is_backend says 300 is a live backend: it is not an orphan. */
	const struct proctree_match all_backends = { 100,  100,	 "A", everyone_is_a_backend,
						     NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &all_backends), 6);
	assert_false(proctree_is_member(t, find(t, 300), &all_backends));

	/* B by pid only: 201 carries a cookie, but descends from the backend itself. */
	const struct proctree_match b_pid = { 200, 0, NULL, NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &b_pid), 2);
	assert_true(proctree_is_member(t, find(t, 201), &b_pid));
}

/* ---- the environ reader ---- */

/* A child of the fake root whose environ is env ('|' stands for NUL). */
static void
add_env_proc(const char *root, pid_t pid, pid_t ppid, const char *children, const char *env)
{
	struct fake_proc p = { pid, ppid, pid, 'S', "env", NULL, 0, { NULL }, { children } };
	char buf[512];
	size_t len = strlen(env);

	assert_true(len < sizeof(buf));
	add_proc(root, &p);
	for (size_t k = 0; k < len; k++) {
		buf[k] = env[k] == '|' ? '\0' : env[k];
	}
	write_file_at(buf, len, "%s/%d/environ", root, (int)pid);
}

/* A flat tree: mcpmux (1) with one child per environment shape. */
static void
test_fake_cookies(void **state)
{
	static const struct {
		pid_t pid;
		const char *env; /* '|' stands for NUL */
		const char *want;
	} rows[] = {
		{ 10, "A=1|MCPMUX_SESSION=abc|B=2|", "abc" },
		{ 11, "MCPMUX_SESSION=first|MCPMUX_SESSION=second|", "first" },
		{ 12, "XMCPMUX_SESSION=no|MCPMUX_SESSION_OLD=no|MCPMUX_SESSIONS=no|", "" },
		{ 13, "MCPMUX_SESSION=|", "" },
		{ 14, "", "" },
		{ 15, "mcpmux_session=lower|", "" },
	};
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	char children[256] = "";

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		add_env_proc(r->dir, rows[i].pid, 1, NULL, rows[i].env);
		(void)snprintf(children + strlen(children), sizeof(children) - strlen(children),
			       "%d ", (int)rows[i].pid);
	}
	add_root(r->dir, 1, children);
	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	assert_int_equal(t->n, sizeof(rows) / sizeof(rows[0]));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t k = find(t, rows[i].pid);

		assert_true(k != SIZE_MAX);
		if (strcmp(t->v[k].cookie, rows[i].want) != 0) {
			fail_msg("pid %d: cookie \"%s\", want \"%s\"", (int)rows[i].pid,
				 t->v[k].cookie, rows[i].want);
		}
	}
}

/*
 * mcpmux "1:100" (pid 1), an mcpmux nested in its session A, and a server of that one
 * whose session ID is B, like one of the outer mcpmux's own:
 *
 * 1
 * |- 10 backend A: an mcpmux
 * |  `- 11 its server: session B of mcpmux 10:200, nested in A
 * |- 12 that server's daemon, re-parented: nested in A (and in X of another mcpmux)
 * |- 13 two levels down: nested in mid of 10:200, which is nested in A
 * |- 20 backend B
 * |- 21 cookie B of an mcpmux that did not say its owner
 * `- 30 nested in a session A of another mcpmux (2:2)
 */
static void
build_nested(const char *root)
{
	add_root(root, 1, "10 12 13 20 21 30 ");
	add_env_proc(root, 10, 1, "11", "MCPMUX_SESSION=A|MCPMUX_OWNER=1:100|");
	add_env_proc(root, 11, 10, NULL,
		     "MCPMUX_SESSION=B|MCPMUX_OWNER=10:200|MCPMUX_OUTER=A,1:100|");
	add_env_proc(root, 12, 1, NULL,
		     "MCPMUX_OUTER=A,1:100 X,9:9|P=1|MCPMUX_SESSION=in|MCPMUX_OWNER=10:200|");
	add_env_proc(root, 13, 1, NULL,
		     "MCPMUX_SESSION=deep|MCPMUX_OWNER=77:1|MCPMUX_OUTER=mid,10:200 A,1:100|");
	add_env_proc(root, 20, 1, NULL, "MCPMUX_SESSION=B|MCPMUX_OWNER=1:100|");
	add_env_proc(root, 21, 1, NULL, "MCPMUX_SESSION=B|");
	add_env_proc(root, 30, 1, NULL, "MCPMUX_SESSION=x|MCPMUX_OWNER=1:100|MCPMUX_OUTER=A,2:2|");
}

/*
 * A process of mcpmux "1:100" caught in an execve() by the keeper's walk: its environ and
 * cmdline read empty while its exe link is there, until the kernel has laid out the new
 * ones (a child writes them 30 ms after the walk starts).  The walk reads it again and
 * finds it; one whose cmdline is not empty (an empty environment of its own) is not
 * waited for.
 */
static void
test_fake_exec_window(void **state)
{
	struct fake_root *r = *state;
	char path[PATH_MAX + 32], tmp[PATH_MAX + 32];
	static const char env[] = "MCPMUX_SESSION=E\0MCPMUX_OWNER=1:100\0";

	add_root(r->dir, 1, "40 41 ");
	add_env_proc(r->dir, 40, 1, NULL, "");
	add_env_proc(r->dir, 41, 1, NULL, "");
	for (pid_t pid = 40; pid <= 41; pid++) {
		write_file_at(pid == 41 ? "env-i\0" : "", pid == 41 ? 6 : 0, "%s/%d/cmdline",
			      r->dir, (int)pid);
		symlink_at("/bin/sh", "%s/%d/exe", r->dir, (int)pid);
	}
	pid_t child = fork();

	assert_true(child >= 0);
	if (child == 0) {
		(void)usleep(30000);
		(void)snprintf(tmp, sizeof(tmp), "%s/40/environ.new", r->dir);
		(void)snprintf(path, sizeof(path), "%s/40/environ", r->dir);
		FILE *f = fopen(tmp, "w");

		if (f == NULL || fwrite(env, 1, sizeof(env) - 1, f) != sizeof(env) - 1 ||
		    fclose(f) != 0 || rename(tmp, path) != 0) {
			_exit(1);
		}
		_exit(0);
	}
	int rc = proctree_scan_owned(&r->t, r->dir, "1:100");
	int st;

	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(rc, 0);
	assert_int_equal(r->t.n, 1);
	assert_int_equal(r->t.v[0].pid, 40);
}

static void
check_set(const struct proctree *t, const struct proctree_match *m, const char *name,
	  const pid_t *want, size_t n_want)
{
	for (size_t i = 0; i < t->n; i++) {
		bool in = false;

		for (size_t k = 0; k < n_want; k++) {
			in = in || want[k] == t->v[i].pid;
		}
		if (proctree_is_member(t, i, m) != in) {
			fail_msg("%s: pid %d member %d, want %d", name, (int)t->v[i].pid, !in, in);
		}
	}
	assert_int_equal(proctree_count(t, m), n_want);
}

/*
 * A reaped backend A (pid 100, group 100) whose pid is another process's now:
 *
 * mcpmux (50)
 * |- 100 a stranger at the reused pid: setsid (group 100), no cookie
 * |  `- 101 its child, group 100, no cookie
 * |- 300 re-parented daemon of a reaped backend C (pid 700, not reused): group 700
 * |- 400 cookie A, in group 100
 * `- 500 cookie A, setsid (group 500)
 *    `- 501 group 500, no cookie
 */
static void
build_reused(const char *root, bool with_stranger)
{
	static const struct fake_proc procs[] = {
		{ 100, ROOT, 100, 'S', "stranger", NULL, 0, { NULL }, { "101" } },
		{ 101, 100, 100, 'S', "its child", NULL, 0, { NULL }, { NULL } },
		{ 300, ROOT, 700, 'S', "kept group C", NULL, 0, { NULL }, { NULL } },
		{ 400, ROOT, 100, 'S', "cookie A", "A", 0, { NULL }, { NULL } },
		{ 500, ROOT, 500, 'S', "setsid A", "A", 0, { NULL }, { "501" } },
		{ 501, 500, 500, 'S', "under 500", NULL, 0, { NULL }, { NULL } },
	};

	add_root(root, ROOT, with_stranger ? "100 300 400 500 " : "101 300 400 500 ");
	for (size_t i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
		struct fake_proc p = procs[i];

		if (p.pid == 100 && !with_stranger) {
			continue;
		}
		if (p.pid == 101 && !with_stranger) {
			p.ppid = ROOT; /* the stranger exited: its child is re-parented */
		}
		add_proc(root, &p);
	}
}

static void
test_fake_reused_group(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	struct proctree_match a = { 0, 100, "A", NULL, NULL, NULL, 0 };
	struct proctree_match c = { 0, 700, "C", NULL, NULL, NULL, 0 };
	struct proctree_match live = { 100, 100, "A", NULL, NULL, NULL, 0 };
	static const pid_t a_members[] = { 400, 500, 501 };
	static const pid_t c_members[] = { 300 };
	static const pid_t live_members[] = { 100, 101, 400, 500, 501 };

	build_reused(r->dir, true);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(t->n, 6);
	proctree_check_group(t, &a);
	proctree_check_group(t, &c);
	proctree_check_group(t, &live);
	/* 100 is not A's server (reaped): group 100 is the stranger's, not A's. */
	check_set(t, &a, "a", a_members, 3);
	assert_int_equal(proctree_left(t, &a), 3);
	assert_int_equal(a.pgid, 0);
	/* No process holds 700: the group is still C's. */
	assert_int_equal(c.pgid, 700);
	check_set(t, &c, "c", c_members, 1);
	/* A backend not yet reaped is its group's leader. */
	assert_int_equal(live.pgid, 100);
	check_set(t, &live, "live", live_members, 5);

	/* The stranger exits; its child keeps group 100, which is still not A's. */
	assert_int_equal(tmpdir_remove(r->dir), 0);
	assert_int_equal(mkdir(r->dir, 0700), 0);
	build_reused(r->dir, false);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(t->n, 5);
	proctree_check_group(t, &a);
	check_set(t, &a, "a, the stranger gone", a_members, 3);
	assert_int_equal(a.pgid, 0);
}

static void
test_fake_nested(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct proctree_match a = { 10, 10, "A", NULL, NULL, "1:100", 0 };
	const struct proctree_match b = { 20, 20, "B", NULL, NULL, "1:100", 0 };
	const struct proctree_match a_any = { 10, 10, "A", NULL, NULL, NULL, 0 };
	const struct proctree_match b_any = { 20, 20, "B", NULL, NULL, NULL, 0 };
	static const pid_t want_a[] = { 10, 11, 12, 13 }, want_b[] = { 20, 21 };
	static const pid_t want_a_any[] = { 10, 11, 12, 13, 30 }, want_b_any[] = { 11, 20, 21 };

	build_nested(r->dir);
	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	assert_int_equal(t->n, 7);
	assert_string_equal(proctree_outer(t, find(t, 12)), "A,1:100 X,9:9");
	assert_string_equal(proctree_outer(t, find(t, 20)), "");
	assert_string_equal(t->v[find(t, 12)].cookie, "in");
	assert_string_equal(t->v[find(t, 12)].owner, "10:200");
	/* The daemon, re-parented away from its mcpmux, goes with A by MCPMUX_OUTER. */
	check_set(t, &a, "A", want_a, 4);
	/* Session B of the nested mcpmux is not this mcpmux's B. */
	check_set(t, &b, "B", want_b, 2);
	/* Without the owner, the cookie alone decides (and names the wrong 11 for B). */
	check_set(t, &a_any, "A, any owner", want_a_any, 5);
	check_set(t, &b_any, "B, any owner", want_b_any, 3);

	/*
	 * Told its own owner, the walk stops reading a process this mcpmux started at its
	 * cookie and owner (30's MCPMUX_OUTER, after them, is not read); the members of
	 * this mcpmux's sessions are the same.
	 */
	t->self_owner = "1:100";
	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	assert_string_equal(proctree_outer(t, find(t, 30)), "");
	assert_string_equal(proctree_outer(t, find(t, 11)), "A,1:100");
	assert_string_equal(proctree_outer(t, find(t, 12)), "A,1:100 X,9:9");
	check_set(t, &a, "A, reading less", want_a, 4);
	check_set(t, &b, "B, reading less", want_b, 2);
	t->self_owner = NULL;

	/* The keeper's scan: by MCPMUX_OWNER, or named in MCPMUX_OUTER. */
	assert_int_equal(proctree_scan_owned(t, r->dir, "1:100"), 0);
	assert_int_equal(t->n, 6); /* 10, 11, 12, 13, 20, 30 */
	assert_true(find(t, 11) != SIZE_MAX && find(t, 21) == SIZE_MAX);
	assert_int_equal(proctree_scan_owned(t, r->dir, "10:200"), 0);
	assert_int_equal(t->n, 3); /* 11, 12, 13 */
	assert_true(find(t, 11) != SIZE_MAX && find(t, 12) != SIZE_MAX && find(t, 13) != SIZE_MAX);
	assert_int_equal(proctree_scan_owned(t, r->dir, "1:10"), 0);
	assert_int_equal(t->n, 0); /* a prefix of an owner is no owner */
}

static void
test_outer_names(void **state)
{
	(void)state;
	assert_true(proctree_outer_names("A,1:2", "A", "1:2"));
	assert_true(proctree_outer_names("A,1:2", "A", NULL));
	assert_true(proctree_outer_names("A,1:2", NULL, "1:2"));
	assert_true(proctree_outer_names("x,3:4 A,1:2", "A", "1:2"));
	assert_false(proctree_outer_names("A,1:2", "A", "1:22"));
	assert_false(proctree_outer_names("A,1:22", "A", "1:2"));
	assert_false(proctree_outer_names("AA,1:2", "A", NULL));
	assert_false(proctree_outer_names("A,1:2", "AA", NULL));
	assert_false(proctree_outer_names("A 1:2", "A", NULL)); /* no comma: no entry */
	assert_false(proctree_outer_names("x,A 1:2", "A", "1:2"));
	assert_false(proctree_outer_names("", "A", NULL));
	assert_true(proctree_outer_names("  A,1:2 ", "A", "1:2"));
	assert_false(proctree_outer_names("A,1:2,3", "A", "1:2"));
}

/* Cookies at awkward places of a long environment; cookie length limits. */
static void
test_fake_cookie_lengths_and_offsets(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	char max_cookie[PROCTREE_COOKIE_MAX + 2];
	static const size_t pads[] = { 8100, 8170, 8175, 8180, 8191, 8192, 8193, 16384, 50000 };
	char children[512] = "";

	memset(max_cookie, 'm', sizeof(max_cookie));
	max_cookie[PROCTREE_COOKIE_MAX] = '\0';
	/* pids 10..18: the cookie entry starting around the reader's 8192-byte buffer */
	for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
		struct fake_proc p = { (pid_t)(10 + i), 1,	 1,	   'S',	    "pad",
				       "padded-cookie", pads[i], { NULL }, { NULL } };

		add_proc(r->dir, &p);
		(void)snprintf(children + strlen(children), sizeof(children) - strlen(children),
			       "%d ", (int)p.pid);
	}
	/* pid 30: a cookie of exactly PROCTREE_COOKIE_MAX bytes, after padding */
	struct fake_proc longest = { 30, 1, 1, 'S', "max", max_cookie, 9000, { NULL }, { NULL } };

	add_proc(r->dir, &longest);
	/* pid 31: one byte more is not a cookie */
	max_cookie[PROCTREE_COOKIE_MAX] = 'm';
	max_cookie[PROCTREE_COOKIE_MAX + 1] = '\0';
	struct fake_proc too_long = { 31, 1, 1, 'S', "max+1", max_cookie, 0, { NULL }, { NULL } };

	add_proc(r->dir, &too_long);
	(void)snprintf(children + strlen(children), sizeof(children) - strlen(children), "30 31");
	add_root(r->dir, 1, children);

	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	assert_int_equal(t->n, sizeof(pads) / sizeof(pads[0]) + 2);
	for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
		size_t k = find(t, (pid_t)(10 + i));

		assert_true(k != SIZE_MAX);
		if (strcmp(t->v[k].cookie, "padded-cookie") != 0) {
			fail_msg("cookie after %zu bytes: \"%s\"", pads[i], t->v[k].cookie);
		}
	}
	max_cookie[PROCTREE_COOKIE_MAX] = '\0';
	assert_string_equal(t->v[find(t, 30)].cookie, max_cookie);
	assert_string_equal(t->v[find(t, 31)].cookie, "");
}

/*
 * One environment variable longer than the reader's buffer (8192 bytes), whose bytes
 * from offset 8192 on happen to read "MCPMUX_SESSION=evil".  That is the middle of
 * another variable's value, not a cookie: the process has no cookie.
 */
static void
test_fake_cookie_inside_long_entry(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	struct fake_proc p = { 10, 1, 10, 'S', "long", NULL, 0, { NULL }, { NULL } };
	static const char tail[] = "MCPMUX_SESSION=evil";
	size_t len = 8192 + sizeof(tail) + 7;
	char *env = malloc(len);

	assert_non_null(env);
	add_proc(r->dir, &p);
	memcpy(env, "X=", 2);
	memset(env + 2, 'a', 8190);
	memcpy(env + 8192, tail, sizeof(tail)); /* with its NUL */
	memcpy(env + 8192 + sizeof(tail), "TAIL=1", 7);
	write_file_at(env, len, "%s/10/environ", r->dir);
	free(env);
	add_root(r->dir, 1, "10");

	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	assert_int_equal(t->n, 1);
	assert_string_equal(t->v[0].cookie, "");
}

/*
 * Malformed stat files are not fatal, and not "gone" either: the process is kept as
 * unknown, and it keeps any tree it might belong to from being called empty.
 */
static void
test_fake_bad_stat(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	static const char *const bad[] = { "", "12 noparen S 1 1 1", "13 (short) S 1" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fake_proc p = {
			(pid_t)(12 + i), 1, 1, 'S', "x", NULL, 0, { NULL }, { NULL }
		};

		add_proc(r->dir, &p);
		write_file_at(bad[i], strlen(bad[i]), "%s/%d/stat", r->dir, (int)p.pid);
	}
	struct fake_proc good = { 20, 1, 20, 'S', "good", NULL, 0, { NULL }, { NULL } };

	add_proc(r->dir, &good);
	add_root(r->dir, 1, "12 13 14 20");
	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	assert_int_equal(t->n, 4);
	assert_false(t->incomplete);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(t->v[i].pid, (pid_t)(12 + i));
		assert_true(t->v[i].unknown);
		assert_int_equal(t->v[i].state, '?');
	}
	assert_int_equal(t->v[3].pid, 20);
	assert_false(t->v[3].unknown);

	/* A tree known by group 20 has one member, and three processes nobody can claim. */
	const struct proctree_match g20 = { 0, 20, NULL, NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &g20), 1);
	assert_int_equal(proctree_left(t, &g20), 4);
	/* Unknown processes match no group, but a pid still matches. */
	const struct proctree_match p12 = { 12, 0, NULL, NULL, NULL, NULL, 0 };

	assert_true(proctree_is_member(t, 0, &p12)); /* state unknown: taken as alive */
	assert_int_equal(proctree_left(t, &p12), 3);
}

/* A zombie is no live member, but it keeps its tree from being called empty. */
static void
test_fake_zombie_keeps_tree(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct fake_proc z = { 100, ROOT, 100, 'Z', "gone", NULL, 0, { NULL }, { NULL } };
	const struct proctree_match reaped = { 0, 100, "A", NULL, NULL, NULL, 0 };

	add_root(r->dir, ROOT, "100 ");
	add_proc(r->dir, &z);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(t->n, 1);
	assert_int_equal(proctree_count(t, &reaped), 0);
	assert_int_equal(proctree_left(t, &reaped), 1);
	/* Nor is it signalled. */
	assert_int_equal(proctree_signal(t, &reaped, r->dir, SIGKILL, NULL), 0);
}

/*
 * A process in exit reads as having no environment (empty, or ESRCH) from the moment it
 * has let its memory go, while it still holds its files: a daemon found by its cookie
 * alone stays in its tree, under the ids an earlier walk saw on it (same pid and start
 * time), until it is a zombie; another process at its pid later has none of them.  The
 * keeper's walk of the processes its mcpmux started keeps them the same way.
 */
static void
test_fake_exit_keeps_ids(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct proctree_match reaped = { 0, 100, "A", NULL, NULL, NULL, 0 };
	char path[PATH_MAX + 32], line[256];
	struct proctree owned;

	add_root(r->dir, ROOT, "300 ");
	add_env_proc(r->dir, 300, ROOT, NULL,
		     "MCPMUX_SESSION=A|MCPMUX_OWNER=1:100|MCPMUX_OUTER=X,9:9|");
	proctree_init(&owned);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(proctree_left(t, &reaped), 1);
	assert_int_equal(proctree_scan_owned(&owned, r->dir, "1:100"), 0);
	assert_int_equal(owned.n, 1);
	(void)snprintf(path, sizeof(path), "%s/300/environ", r->dir);
	write_file(path, "", 0);
	for (int k = 0; k < 3; k++) {
		if (k == 2) {
			assert_int_equal(unlink(path), 0); /* as ENOENT or ESRCH would say */
		}
		assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
		assert_int_equal(t->n, 1);
		assert_false(t->incomplete);
		assert_false(t->v[0].cookie_unknown);
		assert_string_equal(t->v[0].cookie, "A");
		assert_string_equal(t->v[0].owner, "1:100");
		assert_string_equal(proctree_outer(t, 0), "X,9:9");
		assert_true(proctree_is_member(t, 0, &reaped));
		assert_int_equal(proctree_left(t, &reaped), 1);
		assert_int_equal(proctree_scan_owned(&owned, r->dir, "1:100"), 0);
		assert_int_equal(owned.n, 1);
		assert_int_equal(owned.v[0].pid, 300);
	}
	/* Another process at pid 300 now (a later start): nothing of the one before. */
	int n = snprintf(line, sizeof(line),
			 "300 (env) S %d 300 300 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %llu 1 1\n",
			 ROOT, start_of(300) + 1);

	write_file_at(line, (size_t)n, "%s/300/stat", r->dir);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(t->n, 1);
	assert_string_equal(t->v[0].cookie, "");
	assert_int_equal(proctree_left(t, &reaped), 0);
	assert_int_equal(proctree_scan_owned(&owned, r->dir, "1:100"), 0);
	assert_int_equal(owned.n, 0);
	proctree_release(&owned);
}

/*
 * A live process that re-executed itself without mcpmux's variables is no longer found by
 * them: an environment that names none (300), or that is empty while the process has its
 * memory (301: its cmdline reads and its exe link is there), keeps nothing of a walk
 * before; only one in exit (302: no cmdline, no exe link) keeps its ids.
 */
static void
test_fake_exec_drops_ids(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct proctree_match reaped = { 0, 100, "A", NULL, NULL, NULL, 0 };
	struct proctree owned;

	add_root(r->dir, ROOT, "300 301 302 ");
	for (pid_t pid = 300; pid <= 302; pid++) {
		add_env_proc(r->dir, pid, ROOT, NULL, "MCPMUX_SESSION=A|MCPMUX_OWNER=1:100|");
	}
	proctree_init(&owned);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(proctree_left(t, &reaped), 3);
	assert_int_equal(proctree_scan_owned(&owned, r->dir, "1:100"), 0);
	assert_int_equal(owned.n, 3);
	write_file_at("PATH=/bin", 10, "%s/300/environ", r->dir);
	for (pid_t pid = 301; pid <= 302; pid++) {
		write_file_at("", 0, "%s/%d/environ", r->dir, (int)pid);
	}
	write_file_at("sh", 3, "%s/301/cmdline", r->dir);
	symlink_at("/bin/sh", "%s/301/exe", r->dir);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
		assert_int_equal(t->n, 3);
		assert_false(t->incomplete);
		for (size_t i = 0; i < t->n; i++) {
			assert_string_equal(t->v[i].cookie, t->v[i].pid == 302 ? "A" : "");
			assert_int_equal(proctree_is_member(t, i, &reaped), t->v[i].pid == 302);
		}
		assert_int_equal(proctree_left(t, &reaped), 1);
		assert_int_equal(proctree_scan_owned(&owned, r->dir, "1:100"), 0);
		assert_int_equal(owned.n, 1);
		assert_int_equal(owned.v[0].pid, 302);
	}
	proctree_release(&owned);
}

/*
 * A daemon whose main thread has exited (pthread_exit()) while its thread 301 runs on: its
 * stat says Z and its environ is empty (the main thread's memory is gone), yet it runs.
 * The walks take its state and ids from the live thread: a live member of its tree, found
 * by its owner, not exiting; a dead one once that thread has exited too.
 */
static void
test_fake_main_thread_exited(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct proctree_match reaped = { 0, 100, "A", NULL, NULL, NULL, 0 };
	char path[PATH_MAX + 32], line[256];
	struct proctree owned;
	int n;

	add_root(r->dir, ROOT, "300 ");
	add_env_proc(r->dir, 300, ROOT, NULL, "");
	n = snprintf(line, sizeof(line),
		     "300 (env) Z %d 300 300 0 -1 4194572 0 0 0 0 0 0 0 0 20 0 2 0 %llu 0 0\n",
		     ROOT, start_of(300));
	write_file_at(line, (size_t)n, "%s/300/stat", r->dir);
	dir_at("%s/300/task/301", r->dir);
	write_file_at("MCPMUX_SESSION=A\0MCPMUX_OWNER=1:100\0", 36, "%s/300/task/301/environ",
		      r->dir);
	(void)snprintf(path, sizeof(path), "%s/300/task/301/stat", r->dir);
	n = snprintf(line, sizeof(line),
		     "301 (env) S %d 300 300 0 -1 4194368 0 0 0 0 0 0 0 0 20 0 2 0 %llu 1 1\n",
		     ROOT, start_of(300) + 1);
	write_file(path, line, (size_t)n);
	proctree_init(&owned);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
		assert_int_equal(t->n, 1);
		assert_false(t->incomplete);
		assert_int_equal(t->v[0].state, k == 0 ? 'S' : 'Z');
		assert_string_equal(t->v[0].cookie, "A");
		assert_int_equal(proctree_is_member(t, 0, &reaped), k == 0);
		assert_int_equal(proctree_count(t, &reaped), k == 0 ? 1 : 0);
		assert_int_equal(proctree_left(t, &reaped), 1);
		assert_int_equal(proctree_exiting(r->dir, 300), k == 1);
		assert_int_equal(proctree_scan_owned(&owned, r->dir, "1:100"), 0);
		assert_int_equal(owned.n, 1);
		assert_int_equal(owned.v[0].state, k == 0 ? 'S' : 'Z');
		assert_string_equal(owned.v[0].cookie, "A");
		/* Thread 301 exits too: the process is a zombie. */
		n = snprintf(line, sizeof(line),
			     "301 (env) Z %d 300 300 0 -1 4194372 0 0 0 0 0 0 0 0 20 0 2 0 %llu "
			     "0 0\n",
			     ROOT, start_of(300) + 1);
		write_file(path, line, (size_t)n);
	}
	proctree_release(&owned);
}

/*
 * A process caught in the middle of an execve() (its environ and cmdline read empty, its
 * exe link already there) keeps the ids the walk before saw: its tree is not taken for
 * gone for that instant.
 */
static void
test_fake_exec_window_keeps_ids(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct proctree_match reaped = { 0, 100, "A", NULL, NULL, NULL, 0 };
	char path[PATH_MAX + 32];

	add_root(r->dir, ROOT, "303 ");
	add_env_proc(r->dir, 303, ROOT, NULL, "MCPMUX_SESSION=A|MCPMUX_OWNER=1:100|");
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(proctree_left(t, &reaped), 1);
	write_file_at("", 0, "%s/303/environ", r->dir);
	write_file_at("", 0, "%s/303/cmdline", r->dir);
	(void)snprintf(path, sizeof(path), "%s/303/exe", r->dir);
	(void)unlink(path);
	assert_int_equal(symlink("/bin/sh", path), 0);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_string_equal(t->v[0].cookie, "A");
	assert_int_equal(proctree_left(t, &reaped), 1);
}

/* A process whose children cannot be listed: the snapshot is incomplete, never "empty". */
static void
test_fake_unlistable_task(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct fake_proc p = { 100, ROOT, 100, 'S', "x", "A", 0, { NULL }, { NULL } };
	const struct proctree_match other = { 0, 999, "B", NULL, NULL, NULL, 0 };
	char path[PATH_MAX + 32];

	add_root(r->dir, ROOT, "100 ");
	add_proc(r->dir, &p);
	/* task/ is a file now: opendir() fails with ENOTDIR, not ENOENT */
	(void)snprintf(path, sizeof(path), "%s/100/task/100/children", r->dir);
	assert_int_equal(unlink(path), 0);
	(void)snprintf(path, sizeof(path), "%s/100/task/100", r->dir);
	assert_int_equal(rmdir(path), 0);
	(void)snprintf(path, sizeof(path), "%s/100/task", r->dir);
	assert_int_equal(rmdir(path), 0);
	write_file(path, "", 0);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_true(t->incomplete);
	assert_int_equal(t->error, ENOTDIR);
	assert_int_equal(t->n, 1);
	/* Whatever the match, the tree is not known to be empty. */
	assert_int_equal(proctree_left(t, &other), 1);
}

/*
 * A child of the root whose environment cannot be read (a non-dumpable process, of
 * another uid) may be any tree's: it keeps every tree from being empty, but for the
 * trees of backends started after it, which it cannot descend from.
 */
static void
test_fake_unreadable_environ(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct fake_proc p = { 100, ROOT, 100, 'S', "x", "A", 0, { NULL }, { NULL } };
	const struct proctree_match older = { 0, 999, "B", NULL, NULL, NULL, start_of(100) };
	const struct proctree_match unknown = { 0, 999, "B", NULL, NULL, NULL, 0 };
	const struct proctree_match newer = { 0, 999, "B", NULL, NULL, NULL, start_of(100) + 1 };
	char path[PATH_MAX + 32];

	add_root(r->dir, ROOT, "100 ");
	add_proc(r->dir, &p);
	/* environ is a directory now: read() fails with EISDIR, not ENOENT */
	(void)snprintf(path, sizeof(path), "%s/100/environ", r->dir);
	assert_int_equal(unlink(path), 0);
	mkdir_at("%s", path);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_false(t->incomplete);
	assert_int_equal(t->n, 1);
	assert_true(t->v[0].cookie_unknown);
	assert_false(t->v[0].unknown);
	assert_int_equal(proctree_left(t, &older), 1);
	assert_int_equal(proctree_left(t, &unknown), 1);
	assert_int_equal(proctree_left(t, &newer), 0);
	/* Its stat unreadable too, its start is unknown: it counts for every tree. */
	(void)snprintf(path, sizeof(path), "%s/100/stat", r->dir);
	write_file(path, "", 0);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_true(t->v[0].unknown);
	assert_int_equal(proctree_left(t, &newer), 1);
}

/*
 * The processes that carry a session's cookie (`mcpmux demo`'s count of what is left): the
 * first MCPMUX_SESSION of each environment, however long it is.  The demo read the first
 * 32 KiB only, and counted none behind a long environment.
 */
static void
test_fake_count_cookie(void **state)
{
	struct fake_root *r = *state;
	const struct fake_proc procs[] = {
		{ 10, 1, 1, 'S', "long", "demo-id", 100 * 1024, { NULL }, { NULL } },
		{ 11, 1, 1, 'S', "short", "demo-id", 0, { NULL }, { NULL } },
		{ 12, 1, 1, 'S', "at-32k", "demo-id", 32 * 1024 - 8, { NULL }, { NULL } },
		{ 13, 1, 1, 'S', "other", "other-id", 100 * 1024, { NULL }, { NULL } },
		{ 14, 1, 1, 'S', "none", NULL, 100 * 1024, { NULL }, { NULL } },
	};

	for (size_t i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
		add_proc(r->dir, &procs[i]);
	}
	/* pid 15: the cookie second, after another MCPMUX_SESSION (getenv() takes the first) */
	mkdir_at("%s/15", r->dir);
	write_file_at("MCPMUX_SESSION=x\0MCPMUX_SESSION=demo-id\0", 40, "%s/15/environ", r->dir);
	mkdir_at("%s/self", r->dir);
	assert_int_equal(proctree_count_cookie(r->dir, "demo-id"), 3);
	assert_int_equal(proctree_count_cookie(r->dir, "other-id"), 1);
	assert_int_equal(proctree_count_cookie(r->dir, "x"), 1);
	assert_int_equal(proctree_count_cookie(r->dir, "nobody"), 0);
	assert_int_equal(proctree_count_cookie(r->dir, ""), 0);
}

/* The same of a real process: a sleep whose cookie comes last, after 100 KiB of others. */
static void
test_count_cookie_of_a_long_environment(void **state)
{
	char cookie[64], *env[1100], *pad;
	int ready[2];
	size_t n = 0;
	pid_t pid;

	(void)state;
	(void)snprintf(cookie, sizeof(cookie), "%s=count-test-%d", PROCTREE_COOKIE_ENV,
		       (int)getpid());
	pad = malloc(1024 * 100);
	assert_non_null(pad);
	for (; n < 1024; n++) {
		char *e = pad + n * 100;

		(void)snprintf(e, 100, "PAD%04zu=%090d", n, 0);
		env[n] = e;
	}
	env[n++] = cookie;
	env[n] = NULL;
	/* Its exec closes ready's write end: its environ is sleep's once the read sees EOF. */
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char a0[] = "sleep", a1[] = "60";
		char *argv[] = { a0, a1, NULL };

		execve("/bin/sleep", argv, env);
		_exit(127);
	}
	free(pad);
	(void)close(ready[1]);
	char c;
	ssize_t r;

	while ((r = read(ready[0], &c, 1)) == -1 && errno == EINTR) {
	}
	(void)close(ready[0]);
	int left = proctree_count_cookie("/proc", cookie + strlen(PROCTREE_COOKIE_ENV) + 1);

	(void)kill(pid, SIGKILL);
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(r, 0);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(left, 1);
}

static int
remove_children_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (strcmp(path + ftw->base, "children") == 0) {
		return unlink(path);
	}
	return 0;
}

/* A kernel without children files: every stat file is read, and the same tree found. */
static void
test_fake_walk_all(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	const struct proctree_match a = { 100, 100, "A", NULL, NULL, NULL, 0 };
	const struct proctree_match a_wrap = { 100, 100, "A", backends_100_200, NULL, NULL, 0 };
	const struct proctree_match b = { 200, 200, "B", NULL, NULL, NULL, 0 };
	/* someone else's process, in the same /proc, is not walked */
	const struct fake_proc stranger = { 7, 1, 7, 'S', "init's", "A", 0, { NULL }, { NULL } };

	build_tree(r->dir);
	add_proc(r->dir, &stranger);
	assert_int_equal(nftw(r->dir, remove_children_file, 16, FTW_PHYS), 0);
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_true(t->walk_all);
	assert_false(t->incomplete);
	assert_int_equal(t->n, N_TREE);
	assert_int_equal(find(t, 7), SIZE_MAX);
	for (size_t k = 0; k < N_TREE; k++) {
		size_t i = find(t, tree[k].pid);

		assert_true(i != SIZE_MAX);
		if (tree[k].ppid == ROOT) {
			assert_int_equal(t->v[i].parent, SIZE_MAX);
		} else {
			assert_true(t->v[i].parent < i);
			assert_int_equal(t->v[t->v[i].parent].pid, tree[k].ppid);
		}
		assert_string_equal(t->v[i].cookie, tree[k].cookie ? tree[k].cookie : "");
	}
	check_members(t, &a, 0);
	check_members(t, &a_wrap, 1);
	check_members(t, &b, 2);
	/* It stays in that mode: a second scan gives the same. */
	assert_int_equal(proctree_scan(t, r->dir, ROOT), 0);
	assert_int_equal(t->n, N_TREE);
}

/* proctree_exiting(): a zombie, a process past PF_EXITING, and not the others. */
static void
test_fake_exiting(void **state)
{
	struct fake_root *r = *state;
	static const struct {
		pid_t pid;
		const char *stat; /* NULL: no such process */
		bool exiting;
	} rows[] = {
		{ 30, "30 (srv) S 1 30 30 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5", false },
		{ 31, "31 (srv) Z 1 31 31 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5", true },
		{ 32, "32 (srv) X 1 32 32 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5", true },
		{ 33, "33 (srv) R 1 33 33 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 5", true },
		{ 34, "34 (a (b) c) S 1 34 34 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5", false },
		{ 35, "35 (a) Z) R 1 35 35 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5", false },
		{ 36, "36 (short) S 1", false },
		{ 37, NULL, false },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (rows[i].stat != NULL) {
			struct fake_proc p = { rows[i].pid, 1, rows[i].pid, 'S',     "srv",
					       NULL,	    0, { NULL },    { NULL } };

			add_proc(r->dir, &p);
			write_file_at(rows[i].stat, strlen(rows[i].stat), "%s/%d/stat", r->dir,
				      (int)p.pid);
		}
		if (proctree_exiting(r->dir, rows[i].pid) != rows[i].exiting) {
			fail_msg("pid %d: exiting should be %d", (int)rows[i].pid,
				 (int)rows[i].exiting);
		}
	}
	/* This process is neither. */
	assert_false(proctree_exiting("/proc", getpid()));
}

/* A wide tree: more entries than the initial capacity. */
static void
test_fake_wide(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	char children[4096] = "";

	for (int i = 0; i < 300; i++) {
		struct fake_proc p = { 1000 + i, 1,	   1000 + i, 'S', "w", i % 2 ? "odd" : NULL,
				       0,	 { NULL }, { NULL } };

		add_proc(r->dir, &p);
		(void)snprintf(children + strlen(children), sizeof(children) - strlen(children),
			       "%d ", 1000 + i);
	}
	add_root(r->dir, 1, children);
	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	assert_int_equal(t->n, 300);
	for (int i = 0; i < 300; i++) {
		assert_int_equal(t->v[i].pid, 1000 + i);
	}

	const struct proctree_match odd = { 0, 0, "odd", NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(t, &odd), 150);
}

/*
 * A children file longer than 4 KiB (1001 children, 7002 bytes).  Every listed child
 * must be found, and nothing else: in particular no "pid" made of the first digits of a
 * number cut by a buffer boundary (here 10058, the start of 100584, exists as an
 * unrelated process; a snapshot holding it as a child would get it signalled).
 */
static void
test_fake_many_children(void **state)
{
	struct fake_root *r = *state;
	struct proctree *t = &r->t;
	size_t cap = 8192, len = 0;
	char *children = malloc(cap);

	assert_non_null(children);
	len += (size_t)snprintf(children, cap, "7 ");
	struct fake_proc first = { 7, 1, 7, 'S', "first", NULL, 0, { NULL }, { NULL } };

	add_proc(r->dir, &first);
	for (int i = 0; i < 1000; i++) {
		struct fake_proc p = { 100000 + i, 1, 100000 + i, 'S',	   "many",
				       NULL,	   0, { NULL },	  { NULL } };

		add_proc(r->dir, &p);
		len += (size_t)snprintf(children + len, cap - len, "%d ", 100000 + i);
	}
	struct fake_proc unrelated = { 10058, 999, 10058,    'S',     "unrelated",
				       NULL,  0,   { NULL }, { NULL } };

	add_proc(r->dir, &unrelated);
	add_root(r->dir, 1, children);
	free(children);

	assert_int_equal(proctree_scan(t, r->dir, 1), 0);
	size_t bogus = find(t, 10058);

	if (bogus != SIZE_MAX) {
		fail_msg("pid 10058 (a prefix of 100584 cut at byte 4095) is in the snapshot as "
			 "a child of the root; %zu entries",
			 t->n);
	}
	assert_int_equal(t->n, 1001);
	assert_true(find(t, 100999) != SIZE_MAX);
}

/* ---- the real /proc ---- */

struct real_fixture {
	pid_t pids[3]; /* started by the test, killed and reaped by the teardown if still there */
	int was_subreaper;
};

static int
real_setup(void **state)
{
	struct real_fixture *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		return -1;
	}
	(void)prctl(PR_GET_CHILD_SUBREAPER, &f->was_subreaper);
	/* Become a subreaper, so that a grandchild whose parent dies is ours to reap. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static void
reap(struct real_fixture *f, size_t i)
{
	if (f->pids[i] > 0) {
		(void)kill(f->pids[i], SIGKILL);
		(void)waitpid(f->pids[i], NULL, 0);
		f->pids[i] = 0;
	}
}

static int
real_teardown(void **state)
{
	struct real_fixture *f = *state;

	/* the child before the grandchild, so that the grandchild is re-parented to us */
	for (size_t i = 0; i < 3; i++) {
		reap(f, i);
	}
	(void)prctl(PR_SET_CHILD_SUBREAPER, f->was_subreaper);
	free(f);
	return 0;
}

/* A child that execs sleep with MCPMUX_SESSION set; returns once the exec is done. */
static pid_t
spawn_sleeper(const char *cookie)
{
	char env0[64];
	char *const argv[] = { (char *)(uintptr_t) "sleep", (char *)(uintptr_t) "1000", NULL };
	char *const envp[] = { env0, NULL };
	int fds[2];
	char err;

	(void)snprintf(env0, sizeof(env0), "%s=%s", PROCTREE_COOKIE_ENV, cookie);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid_t pid = fork();

	assert_true(pid != -1);
	if (pid == 0) {
		close(fds[0]);
		execve("/bin/sleep", argv, envp);
		execve("/usr/bin/sleep", argv, envp);
		err = 1;
		ssize_t w = write(fds[1], &err, 1);

		_exit(w == 1 ? 127 : 126);
	}
	close(fds[1]);
	/* EOF: the write end was closed by exec (O_CLOEXEC). */
	ssize_t n = read(fds[0], &err, 1);

	close(fds[0]);
	assert_int_equal(n, 0);
	return pid;
}

/* A child in its own process group that forks a grandchild; both pause(). */
static pid_t
spawn_parent_of_one(pid_t *grandchild)
{
	int fds[2];

	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid_t pid = fork();

	assert_true(pid != -1);
	if (pid == 0) {
		close(fds[0]);
		(void)setpgid(0, 0);
		pid_t g = fork();

		if (g == 0) {
			pid_t self = getpid();

			if (write(fds[1], &self, sizeof(self)) != sizeof(self)) {
				_exit(126);
			}
			for (;;) {
				pause();
			}
		}
		close(fds[1]);
		for (;;) {
			pause();
		}
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], grandchild, sizeof(*grandchild)), sizeof(*grandchild));
	close(fds[0]);
	return pid;
}

static void
test_real_proc(void **state)
{
	struct real_fixture *f = *state;
	struct proctree t;
	pid_t sleeper, parent, grandchild;
	size_t i_sleeper, i_parent, i_grand;

	proctree_init(&t);
	sleeper = f->pids[0] = spawn_sleeper("unit-real");
	parent = f->pids[1] = spawn_parent_of_one(&grandchild);
	f->pids[2] = grandchild;

	assert_int_equal(proctree_scan(&t, "/proc", getpid()), 0);
	assert_int_equal(t.n, 3);
	i_sleeper = find(&t, sleeper);
	i_parent = find(&t, parent);
	i_grand = find(&t, grandchild);
	assert_true(i_sleeper != SIZE_MAX && i_parent != SIZE_MAX && i_grand != SIZE_MAX);
	assert_int_equal(t.v[i_sleeper].parent, SIZE_MAX);
	assert_int_equal(t.v[i_sleeper].ppid, getpid());
	assert_int_equal(t.v[i_parent].parent, SIZE_MAX);
	assert_int_equal(t.v[i_parent].ppid, getpid());
	assert_int_equal(t.v[i_grand].parent, i_parent);
	assert_int_equal(t.v[i_grand].ppid, parent);
	assert_int_equal(t.v[i_parent].pgid, parent);
	assert_int_equal(t.v[i_grand].pgid, parent);
	assert_string_equal(t.v[i_sleeper].cookie, "unit-real");
	assert_string_equal(t.v[i_parent].cookie, "");
	assert_true(t.v[i_parent].start > 0);

	const struct proctree_match m_sleeper = { sleeper, 0, "unit-real", NULL, NULL, NULL, 0 };
	const struct proctree_match m_cookie = { 0, 0, "unit-real", NULL, NULL, NULL, 0 };
	const struct proctree_match m_parent = { parent, parent, NULL, NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(&t, &m_sleeper), 1);
	assert_int_equal(proctree_count(&t, &m_cookie), 1);
	assert_int_equal(proctree_count(&t, &m_parent), 2);
	assert_true(proctree_is_member(&t, i_grand, &m_parent));
	assert_false(proctree_is_member(&t, i_sleeper, &m_parent));

	/* The parent dies: its child is re-parented to us and is still in its group. */
	reap(f, 1);
	assert_int_equal(proctree_scan(&t, "/proc", getpid()), 0);
	assert_int_equal(t.n, 2);
	i_grand = find(&t, grandchild);
	assert_true(i_grand != SIZE_MAX);
	assert_int_equal(t.v[i_grand].parent, SIZE_MAX);
	assert_int_equal(t.v[i_grand].ppid, getpid());

	const struct proctree_match m_gone = { 0, parent, NULL, NULL, NULL, NULL, 0 };

	assert_int_equal(proctree_count(&t, &m_gone), 1);

	/* proctree_signal reaches exactly that one process. */
	assert_int_equal(proctree_signal(&t, &m_gone, "/proc", SIGKILL, NULL), 1);
	int st = 0;

	assert_int_equal(waitpid(grandchild, &st, 0), grandchild);
	f->pids[2] = 0;
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_int_equal(kill(sleeper, 0), 0); /* untouched */

	/*
	 * A pid reused since the scan is never signalled: an entry whose start time is not
	 * the process's now (as a new process with the old one's pid would have) is left.
	 */
	size_t failed = 1;

	i_sleeper = find(&t, sleeper);
	assert_true(i_sleeper != SIZE_MAX);
	t.v[i_sleeper].start++;
	assert_int_equal(proctree_signal(&t, &m_cookie, "/proc", SIGKILL, &failed), 0);
	assert_int_equal(failed, 0);
	assert_int_equal(kill(sleeper, 0), 0);
	assert_int_equal(waitpid(sleeper, &st, WNOHANG), 0);
	t.v[i_sleeper].start--;

	/*
	 * An entry whose stat could not be read in the scan holds the time it was seen: a
	 * process at its pid that started later is a new one, never signalled; one that
	 * started by then may be it, and is.
	 */
	unsigned long long started = t.v[i_sleeper].start;

	assert_true(started > 0);
	t.v[i_sleeper].unknown = true;
	t.v[i_sleeper].start = started - 1;
	assert_int_equal(proctree_signal_one(&t, i_sleeper, "/proc", SIGKILL), PROCTREE_GONE);
	assert_int_equal(waitpid(sleeper, &st, WNOHANG), 0);
	t.v[i_sleeper].start = proctree_now_ticks();
	assert_true(t.v[i_sleeper].start >= started);
	assert_int_equal(proctree_signal_one(&t, i_sleeper, "/proc", 0), PROCTREE_SENT);
	t.v[i_sleeper].unknown = false;
	t.v[i_sleeper].start = started;

	/* SIGTERM is followed by SIGCONT, so a stopped process also ends. */
	assert_int_equal(kill(sleeper, SIGSTOP), 0);
	assert_int_equal(waitpid(sleeper, &st, WUNTRACED), sleeper);
	assert_true(WIFSTOPPED(st));
	assert_int_equal(proctree_scan(&t, "/proc", getpid()), 0);
	assert_int_equal(proctree_signal(&t, &m_cookie, "/proc", SIGTERM, NULL), 1);
	assert_int_equal(waitpid(sleeper, &st, 0), sleeper);
	f->pids[0] = 0;
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);

	/* A snapshot entry whose process is gone is not signalled. */
	assert_int_equal(proctree_signal(&t, &m_cookie, "/proc", SIGTERM, NULL), 0);
	proctree_release(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fake_scan, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_membership, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_membership_variants, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_reused_group, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_cookies, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_nested, root_setup, root_teardown),
		cmocka_unit_test(test_outer_names),
		cmocka_unit_test_setup_teardown(test_fake_cookie_lengths_and_offsets, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_cookie_inside_long_entry, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_bad_stat, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_exit_keeps_ids, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_zombie_keeps_tree, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_unlistable_task, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_unreadable_environ, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_walk_all, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_count_cookie, root_setup, root_teardown),
		cmocka_unit_test(test_count_cookie_of_a_long_environment),
		cmocka_unit_test_setup_teardown(test_fake_exiting, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_exec_window_keeps_ids, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_exec_drops_ids, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_main_thread_exited, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_exec_window, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_wide, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_fake_many_children, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_real_proc, real_setup, real_teardown),
	};

	return cmocka_run_group_tests_name("proctree", tests, NULL, NULL);
}
