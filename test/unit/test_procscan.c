/*
 * Unit tests for procscan: instances, sessions, orphans and unknown owners on a fake
 * /proc built in a temporary directory; the owner, duration and boot-ID parsers; then
 * the verified signals and the pidfd wait on children of the test process itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mcpmux/procscan.h"
#include "tmpdir.h"

/* ---- a fake /proc ---- */

struct fake {
	pid_t pid, ppid, pgid;
	char state;
	unsigned uid;
	unsigned long long start;
	unsigned long long rss_kib;
	const char *comm;
	const char *exe;  /* the exe link's target; NULL: none */
	const char *argv; /* words separated by '|'; NULL: empty cmdline */
	const char *env;  /* entries separated by '|'; NULL: empty */
};

struct root {
	char dir[PATH_MAX];
	struct procscan s;
};

static int
root_setup(void **state)
{
	struct root *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		return -1;
	}
	/* A root longer than /proc, as a deep TMPDIR gives: no path of a process is cut. */
	if (tmpdir_make(r->dir, sizeof(r->dir),
			"procscan-a-fake-proc-root-longer-than-the-path-buffers-of-proc") == -1) {
		free(r);
		return -1;
	}
	procscan_init(&r->s);
	*state = r;
	return 0;
}

static int
root_teardown(void **state)
{
	struct root *r = *state;
	int rc = tmpdir_remove(r->dir);

	procscan_release(&r->s);
	free(r);
	return rc;
}

/* Write `words` ('|'-separated) as NUL-terminated entries. */
static void
write_nul_list(const char *path, const char *words)
{
	char buf[16384];
	size_t len = 0;

	if (words != NULL) {
		len = strlen(words) + 1;
		assert_true(len <= sizeof(buf));
		memcpy(buf, words, len);
		for (size_t i = 0; i < len; i++) {
			buf[i] = buf[i] == '|' ? '\0' : buf[i];
		}
	}
	write_file(path, buf, len);
}

static void
add(const char *root, const struct fake *f)
{
	char path[PATH_MAX + 32], buf[1024];
	int n;

	mkdir_at("%s/%d", root, (int)f->pid);
	n = snprintf(buf, sizeof(buf),
		     "%d (%s) %c %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %llu 123456 789 "
		     "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n",
		     (int)f->pid, f->comm ? f->comm : "proc", f->state ? f->state : 'S',
		     (int)f->ppid, (int)(f->pgid ? f->pgid : f->pid), (int)f->pid, f->start);
	write_file_at(buf, (size_t)n, "%s/%d/stat", root, (int)f->pid);
	n = snprintf(buf, sizeof(buf),
		     "Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nPid:\t%d\n"
		     "PPid:\t%d\nUid:\t%u\t%u\t%u\t%u\nGid:\t0\t0\t0\t0\nVmRSS:\t   %llu kB\n",
		     f->comm ? f->comm : "proc", (int)f->pid, (int)f->pid, (int)f->ppid, f->uid,
		     f->uid, f->uid, f->uid, f->rss_kib);
	write_file_at(buf, (size_t)n, "%s/%d/status", root, (int)f->pid);
	path_at(path, sizeof(path), "%s/%d/cmdline", root, (int)f->pid);
	write_nul_list(path, f->argv);
	path_at(path, sizeof(path), "%s/%d/environ", root, (int)f->pid);
	write_nul_list(path, f->env);
	if (f->exe != NULL) {
		symlink_at(f->exe, "%s/%d/exe", root, (int)f->pid);
	}
}

/* Each of the n processes of procs. */
static void
add_all(const char *root, const struct fake *procs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		add(root, &procs[i]);
	}
}

static void
add_uptime(const char *root, const char *text)
{
	write_file_at(text, strlen(text), "%s/uptime", root);
}

static size_t
group_of(const struct procscan *s, const char *session)
{
	for (size_t g = 0; g < s->n_groups; g++) {
		if (strcmp(s->g[g].session, session) == 0) {
			return g;
		}
	}
	fail_msg("no group for session '%s'", session);
	return SIZE_MAX;
}

static bool
has_group(const struct procscan *s, const char *session)
{
	for (size_t g = 0; g < s->n_groups; g++) {
		if (strcmp(s->g[g].session, session) == 0) {
			return true;
		}
	}
	return false;
}

static const struct procscan_proc *
proc(const struct procscan *s, pid_t pid)
{
	size_t i = procscan_find(s, pid);

	assert_true(i != SIZE_MAX);
	return &s->v[i];
}

static pid_t
top_pid(const struct procscan *s, size_t g)
{
	assert_true(s->g[g].top != SIZE_MAX);
	return s->v[s->g[g].top].pid;
}

/*
 * The machine of the scenario: a client (100) with a wrap instance (200) and a serve
 * instance (300), a `mcpmux ps` (400), the scanner (500, a `mcpmux sweep` started by
 * 450), mcpmux under valgrind (700), a zombie mcpmux (710), an owner whose stat cannot
 * be read (720), and their carriers, orphans among them.
 */
static void
build_machine(const char *d)
{
	static const struct fake procs[] = {
		{ 1, 0, 1, 'S', 0, 1, 0, "init", NULL, "/sbin/init", NULL },
		{ 100, 1, 100, 'S', 1000, 4000, 3000, "bash", "/usr/bin/bash", "-bash", "HOME=/h" },
		/* wrap, its server, the server's child, and a grandchild without environment */
		{ 200, 100, 200, 'S', 1000, 5000, 800, "mcpmux", "/usr/local/bin/mcpmux (deleted)",
		  "mcpmux|--eof-grace|100|--|srv|--flag", "HOME=/h" },
		{ 201, 200, 201, 'S', 1000, 5001, 1000, "srv", "/usr/bin/srv", "srv|--flag",
		  "A=1|MCPMUX_SESSION=w1|MCPMUX_OWNER=200:5000|B=2" },
		{ 202, 201, 201, 'S', 1000, 5002, 500, "srv-child", "/usr/bin/srv", "srv|child",
		  "MCPMUX_OWNER=200:5000|MCPMUX_SESSION=w1" },
		{ 203, 202, 201, 'R', 1000, 5003, 250, "bare", "/usr/bin/bare", "bare", NULL },
		/* a carrier of an older mcpmux (no owner), under the wrap instance */
		{ 204, 200, 204, 'S', 1000, 5004, 10, "old", "/usr/bin/old", "old",
		  "MCPMUX_SESSION=legacy1" },
		/* an owner that is not PID:START (a newer mcpmux's?), under the wrap instance */
		{ 205, 200, 205, 'S', 1000, 5005, 10, "new", "/usr/bin/new", "new",
		  "MCPMUX_SESSION=newlive|MCPMUX_OWNER=200:5000:1" },
		/* serve with two sessions; a descendant of session a re-parented to serve */
		{ 300, 100, 300, 'S', 1000, 6000, 900, "mcpmux", "/opt/mcpmux",
		  "/opt/mcpmux|serve|--listen|/tmp/s.sock|-q|--|fixture", NULL },
		{ 301, 300, 301, 'T', 1000, 6001, 100, "fixture", "/usr/bin/fixture", "fixture",
		  "MCPMUX_SESSION=a|MCPMUX_OWNER=300:6000" },
		{ 302, 300, 302, 'S', 1000, 6002, 100, "fixture", "/usr/bin/fixture", "fixture",
		  "MCPMUX_SESSION=b|MCPMUX_OWNER=300:6000" },
		{ 310, 300, 305, 'S', 1000, 6010, 100, "daemon", "/usr/bin/daemon", "daemon",
		  "MCPMUX_SESSION=a|MCPMUX_OWNER=300:6000" },
		/* tools: never instances */
		{ 400, 100, 400, 'R', 1000, 7000, 10, "mcpmux", "/usr/bin/mcpmux",
		  "mcpmux|ps|--json", NULL },
		{ 450, 100, 450, 'S', 1000, 7400, 10, "sh", "/bin/sh", "sh|-c|mcpmux sweep",
		  "MCPMUX_SESSION=self-line|MCPMUX_OWNER=9999:1" },
		{ 500, 450, 500, 'R', 1000, 7500, 10, "mcpmux", "/usr/bin/mcpmux", "mcpmux|sweep",
		  "MCPMUX_SESSION=self|MCPMUX_OWNER=9999:1" },
		/* orphans: a dead owner, its server, a child and a setsid grandchild */
		{ 600, 1, 600, 'S', 1000, 8000, 300, "orphan", "/usr/bin/orphan", "orphan|x",
		  "MCPMUX_SESSION=o1|MCPMUX_OWNER=999:12345" },
		{ 601, 600, 600, 'S', 1000, 8001, 300, "orphan", "/usr/bin/orphan", "orphan|y",
		  "MCPMUX_SESSION=o1|MCPMUX_OWNER=999:12345" },
		{ 602, 1, 602, 'S', 1000, 8002, 300, "orphan", "/usr/bin/orphan", "orphan|z",
		  "MCPMUX_SESSION=o1|MCPMUX_OWNER=999:12345" },
		/* the owner's pid was reused: another start time */
		{ 610, 1, 610, 'S', 1000, 8100, 1, "reused", "/usr/bin/reused", "reused",
		  "MCPMUX_SESSION=o2|MCPMUX_OWNER=100:1" },
		/* an older mcpmux's carrier with no instance above it */
		{ 630, 1, 630, 'S', 1000, 8300, 1, "oldorphan", "/usr/bin/old", "old",
		  "MCPMUX_SESSION=o3" },
		/* ... with an owner that is not PID:START: whose it is cannot be told */
		{ 631, 1, 631, 'S', 1000, 8301, 1, "neworphan", "/usr/bin/new", "new",
		  "MCPMUX_SESSION=n1|MCPMUX_OWNER=200:5000:1" },
		/* ... with PID:0, which an older mcpmux without its start time gave */
		{ 632, 1, 632, 'S', 1000, 8302, 1, "zeroorphan", "/usr/bin/old", "old",
		  "MCPMUX_SESSION=o4|MCPMUX_OWNER=999:0" },
		/* ... PID:0 naming a live instance that started before it: that instance's */
		{ 633, 1, 633, 'S', 1000, 8303, 1, "zerolive", "/usr/bin/old", "old",
		  "MCPMUX_SESSION=zl|MCPMUX_OWNER=300:0" },
		/* ... naming a live process that is no instance, older than it: unknown */
		{ 634, 1, 634, 'S', 1000, 8304, 1, "zerostranger", "/usr/bin/old", "old",
		  "MCPMUX_SESSION=zs|MCPMUX_OWNER=100:0" },
		/* ... naming processes that started after it: not its owner, an orphan */
		{ 635, 1, 635, 'S', 1000, 8305, 1, "zeroyoung", "/usr/bin/old", "old",
		  "MCPMUX_SESSION=zy|MCPMUX_OWNER=680:0" },
		{ 636, 1, 636, 'S', 1000, 4500, 1, "zeroreused", "/usr/bin/old", "old",
		  "MCPMUX_SESSION=zr|MCPMUX_OWNER=200:0" },
		/* owned by mcpmux under valgrind: an instance because a carrier names it */
		{ 700, 100, 700, 'S', 1000, 9000, 5000, "memcheck-amd64-",
		  "/usr/libexec/valgrind/memcheck-amd64-linux",
		  "/usr/bin/valgrind.bin|-q|/x/mcpmux|--|srv2", NULL },
		{ 640, 700, 640, 'S', 1000, 9001, 1, "srv2", "/usr/bin/srv2", "srv2",
		  "MCPMUX_SESSION=v1|MCPMUX_OWNER=700:9000" },
		/* owned by something that is no mcpmux at all by its looks */
		{ 730, 100, 730, 'S', 1000, 9700, 1, "sleep", "/usr/bin/sleep", "sleep|1000",
		  NULL },
		{ 740, 730, 740, 'S', 1000, 9701, 1, "srv5", "/usr/bin/srv5", "srv5",
		  "MCPMUX_SESSION=x1|MCPMUX_OWNER=730:9700" },
		/* started under another name: exe and comm say mcpmux */
		{ 750, 100, 750, 'S', 1000, 9800, 1, "mcpmux", "/usr/bin/mcpmux", "mux|--|srv6",
		  NULL },
		/* owned by a zombie mcpmux */
		{ 710, 100, 710, 'Z', 1000, 9100, 0, "mcpmux", NULL, NULL, NULL },
		{ 650, 1, 650, 'S', 1000, 9101, 1, "srv3", "/usr/bin/srv3", "srv3",
		  "MCPMUX_SESSION=z1|MCPMUX_OWNER=710:9100" },
		/* owned by a process whose stat cannot be read */
		{ 670, 1, 670, 'S', 1000, 9201, 1, "srv4", "/usr/bin/srv4", "srv4",
		  "MCPMUX_SESSION=u1|MCPMUX_OWNER=720:9200" },
		/* another user's orphan */
		{ 660, 1, 660, 'S', 2000, 9300, 7, "theirs", "/usr/bin/theirs", "theirs",
		  "MCPMUX_SESSION=t1|MCPMUX_OWNER=998:1" },
		/* a process with no cookie at all */
		{ 680, 1, 680, 'S', 1000, 9400, 1, "plain", "/usr/bin/plain", "plain", "A=1" },
		/* a zombie carrier: dead, not shown */
		{ 690, 600, 600, 'Z', 1000, 9500, 0, "dead", NULL, NULL, NULL },
	};

	add_all(d, procs, sizeof(procs) / sizeof(procs[0]));
	/* 720: its stat is a directory, which fails with EISDIR rather than ENOENT. */
	mkdir_at("%s/720", d);
	mkdir_at("%s/720/stat", d);
	/* Entries that are not processes. */
	mkdir_at("%s/self", d);
	mkdir_at("%s/0123", d);
	add_uptime(d, "10000.00 20000.00\n");
}

static void
test_instances(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	const char *w[8];

	build_machine(r->dir);
	assert_int_equal(procscan_read(s, r->dir, 1000, false, 500), 0);

	const struct procscan_proc *wrap = proc(s, 200), *serve = proc(s, 300), *vg = proc(s, 700);

	assert_int_equal(wrap->mode, PROCSCAN_WRAP);
	assert_string_equal(wrap->exe, "mcpmux"); /* " (deleted)" taken off */
	assert_int_equal(procscan_words(wrap, w, 8), 6);
	assert_int_equal(wrap->cmd_at, 4);
	assert_string_equal(w[wrap->cmd_at], "srv");
	assert_null(wrap->listen);

	assert_int_equal(serve->mode, PROCSCAN_SERVE);
	assert_int_equal(procscan_words(serve, w, 8), 7);
	assert_string_equal(w[serve->cmd_at], "fixture");
	assert_non_null(serve->listen);
	assert_string_equal(serve->listen, "/tmp/s.sock");

	assert_int_equal(vg->mode, PROCSCAN_WRAP);
	assert_int_equal(procscan_words(vg, w, 8), 5);
	assert_string_equal(w[vg->cmd_at], "srv2");

	assert_int_equal(proc(s, 730)->mode, PROCSCAN_OTHER);
	assert_int_equal(proc(s, 730)->cmd_at, SIZE_MAX);
	assert_int_equal(s->g[group_of(s, "x1")].owner_state, PROCSCAN_LIVE);
	assert_int_equal(proc(s, 750)->mode, PROCSCAN_WRAP);
	assert_int_equal(proc(s, 750)->cmd_at, 2);

	/* tools, the scanner, zombies, other programs */
	assert_int_equal(proc(s, 400)->mode, PROCSCAN_NONE);
	assert_int_equal(proc(s, 500)->mode, PROCSCAN_NONE);
	assert_int_equal(proc(s, 710)->mode, PROCSCAN_NONE);
	assert_int_equal(proc(s, 100)->mode, PROCSCAN_NONE);
	assert_true(proc(s, 500)->is_self_line);
	assert_true(proc(s, 450)->is_self_line);
	assert_true(proc(s, 100)->is_self_line);
	assert_false(proc(s, 200)->is_self_line);

	/* 720 is listed, with the error; the non-process entries are not. */
	assert_int_equal(proc(s, 720)->read_errno, EISDIR);
	assert_int_equal(procscan_find(s, 123), SIZE_MAX);
	/* another user's process: stat and status only */
	assert_false(proc(s, 660)->is_read);
	assert_int_equal(proc(s, 660)->uid, 2000);
	assert_null(proc(s, 660)->argv);
	assert_string_equal(proc(s, 660)->session, "");
	assert_true(proc(s, 600)->is_read);
	assert_int_equal(proc(s, 600)->rss_kib, 300);
	assert_string_equal(proc(s, 600)->comm, "orphan");

	/* ages from /proc/uptime: 10000 s - 5000 ticks */
	assert_true(procscan_age(s, procscan_find(s, 200)) > 9949.9);
	assert_true(procscan_age(s, procscan_find(s, 200)) < 9950.1);
}

static void
test_sessions_and_orphans(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	size_t g;

	build_machine(r->dir);
	assert_int_equal(procscan_read(s, r->dir, 1000, false, 500), 0);

	/* wrap's session: the server, its child, and the grandchild without environment */
	g = group_of(s, "w1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 200);
	assert_int_equal(top_pid(s, g), 201);
	assert_true(s->g[g].has_server);
	assert_int_equal(s->g[g].n_carriers, 2);
	assert_int_equal(s->g[g].n_tree, 3);
	assert_int_equal(s->g[g].rss_kib, 1750);
	assert_true(procscan_in_tree(s, g, procscan_find(s, 203)));
	assert_false(procscan_in_tree(s, g, procscan_find(s, 301)));
	assert_false(procscan_in_tree(s, g, procscan_find(s, 200)));

	g = group_of(s, "legacy1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 200);
	assert_string_equal(s->g[g].owner, "");

	/* serve: session a has its server and a re-parented member */
	g = group_of(s, "a");
	assert_int_equal(s->v[s->g[g].instance].pid, 300);
	assert_int_equal(top_pid(s, g), 301);
	assert_true(s->g[g].has_server);
	assert_int_equal(s->g[g].n_carriers, 2);
	assert_int_equal(s->g[g].n_tree, 2);
	assert_int_equal(proc(s, 301)->state, 'T');
	g = group_of(s, "b");
	assert_int_equal(top_pid(s, g), 302);

	g = group_of(s, "v1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 700);

	/* orphans */
	g = group_of(s, "o1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_GONE);
	assert_int_equal(s->g[g].instance, SIZE_MAX);
	assert_string_equal(s->g[g].owner, "999:12345");
	assert_int_equal(s->g[g].uid, 1000);
	assert_int_equal(top_pid(s, g), 600);
	assert_false(s->g[g].has_server);
	assert_int_equal(s->g[g].n_carriers, 3);
	assert_int_equal(s->g[g].n_tree, 3); /* the zombie is not counted */
	assert_int_equal(s->g[g].rss_kib, 900);
	assert_int_equal(procscan_find_orphans(s, "999:12345", "o1", 1000), g);
	assert_int_equal(procscan_find_orphans(s, "999:12345", "o1", 1001), SIZE_MAX);

	assert_int_equal(s->g[group_of(s, "o2")].owner_state, PROCSCAN_GONE);
	assert_int_equal(s->g[group_of(s, "o3")].owner_state, PROCSCAN_GONE);
	assert_string_equal(s->g[group_of(s, "o3")].owner, "");
	g = group_of(s, "newlive");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 200);
	g = group_of(s, "n1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_UNKNOWN);
	assert_true(s->g[g].bad_owner);
	assert_string_equal(procscan_unknown_why(&s->g[g]), "its MCPMUX_OWNER is not PID:START");
	assert_int_equal(s->g[group_of(s, "o4")].owner_state, PROCSCAN_GONE);
	g = group_of(s, "zl");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 300);
	assert_false(s->g[g].has_server);
	g = group_of(s, "zs");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_UNKNOWN);
	assert_true(s->g[g].zero_owner);
	assert_int_equal(s->g[g].owner_errno, 0);
	assert_string_equal(procscan_unknown_why(&s->g[g]),
			    "its MCPMUX_OWNER has no start time, and a process that may be that "
			    "owner holds its pid");
	assert_int_equal(s->g[group_of(s, "zy")].owner_state, PROCSCAN_GONE);
	assert_int_equal(s->g[group_of(s, "zr")].owner_state, PROCSCAN_GONE);
	assert_int_equal(s->g[group_of(s, "z1")].owner_state, PROCSCAN_GONE);
	/* the line of the scanner: its parent carries a cookie of a dead owner */
	assert_int_equal(s->g[group_of(s, "self-line")].owner_state, PROCSCAN_GONE);
	assert_false(has_group(s, "self"));

	/* an owner that cannot be read is neither live nor gone */
	g = group_of(s, "u1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_UNKNOWN);
	assert_int_equal(s->g[g].owner_errno, EISDIR);

	/* another user's orphan is not seen by this user */
	assert_false(has_group(s, "t1"));

	/* still the process scanned: the same start time (a zombie too); else gone */
	struct procscan_proc other = *proc(s, 600);

	assert_int_equal(procscan_still(r->dir, proc(s, 600)), 1);
	assert_int_equal(procscan_still(r->dir, proc(s, 690)), 1);
	other.start++;
	assert_int_equal(procscan_still(r->dir, &other), 0);
	other.pid = 99999;
	assert_int_equal(procscan_still(r->dir, &other), 0);
	other.pid = 720; /* its stat cannot be read */
	assert_int_equal(procscan_still(r->dir, &other), -1);

	/* root sees it */
	assert_int_equal(procscan_read(s, r->dir, 0, true, 500), 0);
	g = group_of(s, "t1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_GONE);
	assert_int_equal(s->g[g].uid, 2000);
	assert_int_equal(top_pid(s, g), 660);
	assert_int_equal(s->g[group_of(s, "w1")].n_tree, 3);
}

static void
test_owner_state(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	int err;

	build_machine(r->dir);
	assert_int_equal(procscan_read(s, r->dir, 1000, false, 500), 0);
	assert_int_equal(procscan_owner_state(s, r->dir, "200:5000", &err), PROCSCAN_LIVE);
	assert_int_equal(procscan_owner_state(s, r->dir, "200:5001", &err), PROCSCAN_GONE);
	assert_int_equal(procscan_owner_state(s, r->dir, "999:1", &err), PROCSCAN_GONE);
	assert_int_equal(procscan_owner_state(s, r->dir, "710:9100", &err), PROCSCAN_GONE);
	assert_int_equal(procscan_owner_state(s, r->dir, "720:9200", &err), PROCSCAN_UNKNOWN);
	assert_int_equal(err, EISDIR);
	assert_int_equal(procscan_owner_state(s, r->dir, "x", &err), PROCSCAN_UNKNOWN);
	assert_int_equal(err, EINVAL);

	/* A process that appears after the scan is read from /proc directly. */
	const struct fake late = { 800, 1, 800, 'S', 1000, 9900, 1, "late", NULL, NULL, NULL };

	add(r->dir, &late);
	assert_int_equal(procscan_owner_state(s, r->dir, "800:9900", &err), PROCSCAN_LIVE);
	assert_int_equal(procscan_owner_state(s, r->dir, "800:9901", &err), PROCSCAN_GONE);
}

/*
 * A carrier whose main thread has exited while its thread 901 runs on: its stat says Z,
 * its cmdline, exe and environ are empty.  It is read as live, through that thread.
 */
static void
test_main_thread_exited(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	const struct fake leader = { 900, 1, 900, 'Z', 1000, 9000, 0, "srv", NULL, NULL, NULL };
	const struct fake thread = { 901,
				     1,
				     900,
				     'S',
				     1000,
				     9001,
				     0,
				     "srv",
				     "/usr/bin/srv",
				     "srv|--x",
				     "MCPMUX_SESSION=abc|MCPMUX_OWNER=7:7" };
	char path[PATH_MAX + 32];

	add(r->dir, &leader);
	path_at(path, sizeof(path), "%s/900/task", r->dir);
	mkdir_at("%s", path);
	add(path, &thread);
	assert_int_equal(procscan_read(s, r->dir, 1000, false, 500), 0);
	size_t i = procscan_find(s, 900);

	assert_true(i != SIZE_MAX);
	assert_int_equal(s->v[i].state, 'S');
	assert_int_equal(s->v[i].thread, 901);
	assert_true(s->v[i].is_read);
	assert_string_equal(s->v[i].session, "abc");
	assert_string_equal(s->v[i].owner, "7:7");
	assert_string_equal(s->v[i].exe, "srv");
	assert_int_equal(procscan_still(r->dir, &s->v[i]), 1);
}

/* Cookies far into the environment, after an entry longer than the read buffer. */
static void
test_environ_edges(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	static char env[16000];
	size_t len = 0;

	/* 9000 bytes of small entries, so that the cookie crosses the first read */
	while (len < 9000) {
		len += (size_t)snprintf(env + len, sizeof(env) - len, "PAD%zu=xxxxxxxxxxxxxx|",
					len);
	}
	(void)snprintf(env + len, sizeof(env) - len, "MCPMUX_SESSION=far|MCPMUX_OWNER=1:99");
	const struct fake far = { 10, 1, 10, 'S', 1000, 1, 1, "far", NULL, "far", env };

	add(r->dir, &far);

	/* one entry longer than the buffer, then the cookie */
	len = (size_t)snprintf(env, sizeof(env), "LONG=");
	memset(env + len, 'y', 9000);
	len += 9000;
	(void)snprintf(env + len, sizeof(env) - len, "|MCPMUX_SESSION=afterlong");
	const struct fake after = { 11, 1, 11, 'S', 1000, 1, 1, "after", NULL, "after", env };

	add(r->dir, &after);

	/* a session ID longer than any mcpmux gives: not a cookie */
	len = (size_t)snprintf(env, sizeof(env), "MCPMUX_SESSION=");
	memset(env + len, 'z', 200);
	env[len + 200] = '\0';
	const struct fake toolong = { 12, 1, 12, 'S', 1000, 1, 1, "toolong", NULL, "x", env };

	add(r->dir, &toolong);

	/* a name that only starts like ours */
	const struct fake prefix = { 13,
				     1,
				     13,
				     'S',
				     1000,
				     1,
				     1,
				     "prefix",
				     NULL,
				     "x",
				     "MCPMUX_SESSIONS=no|XMCPMUX_SESSION=no|MCPMUX_SESSION" };

	add(r->dir, &prefix);

	/*
	 * A key twice: the first counts, as for getenv() and mcpmux's own walk (the one
	 * here names a live owner, 14 itself); a first value too long to keep hides the next.
	 */
	const struct fake twice = { 14,
				    1,
				    14,
				    'S',
				    1000,
				    7,
				    1,
				    "twice",
				    NULL,
				    "x",
				    "MCPMUX_SESSION=dup|MCPMUX_OWNER=14:7|MCPMUX_SESSION=other|"
				    "MCPMUX_OWNER=9999:1" };

	add(r->dir, &twice);
	len = (size_t)snprintf(env, sizeof(env), "MCPMUX_OWNER=");
	memset(env + len, '9', 100);
	len += 100;
	(void)snprintf(env + len, sizeof(env) - len, "|MCPMUX_OWNER=9999:1|MCPMUX_SESSION=hid");
	const struct fake hidden = { 15, 1, 15, 'S', 1000, 1, 1, "hidden", NULL, "x", env };

	add(r->dir, &hidden);
	add_uptime(r->dir, "50.0 1.0\n");
	assert_int_equal(procscan_read(s, r->dir, 1000, false, 1), 0);
	assert_string_equal(proc(s, 14)->session, "dup");
	assert_string_equal(proc(s, 14)->owner, "14:7");
	assert_int_equal(s->g[group_of(s, "dup")].owner_state, PROCSCAN_LIVE);
	assert_string_equal(proc(s, 15)->owner, "");
	assert_true(proc(s, 15)->has_owner);
	assert_string_equal(proc(s, 15)->session, "hid");
	/* too long to be kept is not none: whose it is cannot be told */
	assert_int_equal(s->g[group_of(s, "hid")].owner_state, PROCSCAN_UNKNOWN);
	assert_true(s->g[group_of(s, "hid")].bad_owner);
	assert_string_equal(proc(s, 10)->session, "far");
	assert_string_equal(proc(s, 10)->owner, "1:99");
	assert_string_equal(proc(s, 11)->session, "afterlong");
	assert_string_equal(proc(s, 12)->session, "");
	assert_string_equal(proc(s, 13)->session, "");
	assert_int_equal(s->n_groups, 4);
}

/*
 * Scanned from inside a pid namespace: its first process (ppid 0) carries the owner of
 * the mcpmux outside, which no process here is.
 */
static void
test_owner_outside(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	static const struct fake procs[] = {
		{ 1, 0, 1, 'S', 1000, 500, 1, "bwrap", NULL, "bwrap",
		  "MCPMUX_SESSION=in|MCPMUX_OWNER=4242:77" },
		{ 2, 1, 2, 'S', 1000, 501, 1, "srv", NULL, "srv",
		  "MCPMUX_SESSION=in|MCPMUX_OWNER=4242:77" },
		/* an mcpmux of this namespace that is gone */
		{ 3, 2, 3, 'S', 1000, 502, 1, "inner", NULL, "inner",
		  "MCPMUX_SESSION=gone|MCPMUX_OWNER=9:510" },
		/* one that entered the namespace (setns) with its owner */
		{ 7, 0, 7, 'S', 1000, 600, 1, "entered", NULL, "entered",
		  "MCPMUX_SESSION=entered|MCPMUX_OWNER=4343:88" },
		{ 8, 0, 8, 'S', 1000, 601, 1, "plain", NULL, "plain", "A=1" },
		{ 9, 8, 9, 'S', 1000, 602, 1, "child", NULL, "child",
		  "MCPMUX_SESSION=child|MCPMUX_OWNER=4444:99" },
	};

	add_all(r->dir, procs, sizeof(procs) / sizeof(procs[0]));
	add_uptime(r->dir, "50.0 1.0\n");
	assert_int_equal(procscan_read(s, r->dir, 1000, false, 99), 0);
	size_t g = group_of(s, "in");

	assert_int_equal(s->g[g].owner_state, PROCSCAN_UNKNOWN);
	assert_true(s->g[g].outside);
	assert_int_equal(s->g[g].n_carriers, 2);
	assert_non_null(strstr(procscan_unknown_why(&s->g[g]), "pid namespace"));
	assert_int_equal(s->g[group_of(s, "entered")].owner_state, PROCSCAN_UNKNOWN);
	assert_int_equal(s->g[group_of(s, "gone")].owner_state, PROCSCAN_GONE);
	/* its first process here carries no owner: nothing says it came from outside */
	assert_int_equal(s->g[group_of(s, "child")].owner_state, PROCSCAN_GONE);
}

/*
 * A process's namespaces in the fake /proc: its NSpid line (appended to its status),
 * its ns/pid link, and its time namespace (ns/time and ns/time_for_children, with the
 * boottime offset "SEC NSEC" in timens_offsets).  NULL leaves one out.
 */
static void
add_ns(const char *root, pid_t pid, const char *nspid, const char *pidns, const char *timens,
       const char *boottime)
{
	char path[PATH_MAX + 64], buf[256];
	int n;

	if (nspid != NULL) {
		(void)snprintf(path, sizeof(path), "%s/%d/status", root, (int)pid);
		int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);

		assert_true(fd >= 0);
		n = snprintf(buf, sizeof(buf), "NSpid:\t%s\n", nspid);
		assert_int_equal(write(fd, buf, (size_t)n), n);
		assert_int_equal(close(fd), 0);
	}
	mkdir_at("%s/%d/ns", root, (int)pid);
	if (pidns != NULL) {
		symlink_at(pidns, "%s/%d/ns/pid", root, (int)pid);
	}
	if (timens != NULL) {
		symlink_at(timens, "%s/%d/ns/time", root, (int)pid);
		symlink_at(timens, "%s/%d/ns/time_for_children", root, (int)pid);
		n = snprintf(buf, sizeof(buf), "monotonic 0 0\nboottime %s\n", boottime);
		write_file_at(buf, (size_t)n, "%s/%d/timens_offsets", root, (int)pid);
	}
}

#define CTR_PIDNS "pid:[4026532001]"

/*
 * An mcpmux in a container (250, pid 5 there) and its carriers there: one whose pid is
 * the same number here and there (300), whose namespace is still read (it is one level
 * down, NSpid says); and, without time namespaces on this kernel, the carrier of a gone
 * mcpmux (owner 6:7100) whose pid there another process (260) has taken since: one clock
 * for all, so its other start time makes it an orphan, not unknown.
 */
static void
test_owner_in_a_container(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	static const struct fake procs[] = {
		{ 1, 0, 1, 'S', 0, 1, 0, "init", NULL, "/sbin/init", NULL },
		{ 250, 1, 250, 'S', 0, 7000, 1, "mcpmux", "/usr/bin/mcpmux", "mcpmux|serve|--|srv",
		  NULL },
		{ 300, 250, 300, 'S', 0, 7001, 1, "srv", "/usr/bin/srv", "srv",
		  "MCPMUX_SESSION=same|MCPMUX_OWNER=5:7000" },
		{ 260, 1, 260, 'S', 0, 8000, 1, "other", "/usr/bin/other", "other", NULL },
		{ 310, 1, 310, 'S', 0, 7101, 1, "srv", "/usr/bin/srv", "srv",
		  "MCPMUX_SESSION=reused|MCPMUX_OWNER=6:7100" },
	};

	add_all(r->dir, procs, sizeof(procs) / sizeof(procs[0]));
	add_ns(r->dir, 250, "250\t5", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 300, "300\t300", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 260, "260\t6", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 310, "310\t9", CTR_PIDNS, NULL, NULL);
	add_uptime(r->dir, "100.0 1.0\n");
	assert_int_equal(procscan_read(s, r->dir, 0, true, 99), 0);
	assert_int_equal(proc(s, 300)->ns_depth, 1);

	size_t g = group_of(s, "same");

	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 250);
	assert_int_equal(s->g[group_of(s, "reused")].owner_state, PROCSCAN_GONE);
}

/*
 * Carriers in a container (pid namespace CTR_PIDNS) whose MCPMUX_OWNER is PID:0, with no
 * instance above them (daemons, re-parented to the container's init, 240, pid 1 there):
 * PID is a pid of that namespace, never this one's.  The container's mcpmux (250, pid 5
 * there) owns the carrier that names 5; the container's init, older, leaves the one that
 * names 1 unknown.  One naming 200, a live instance here but no pid there, and one naming
 * 9, an old process here and no pid there, are orphans; so is one naming 6, a process
 * there that started after it.
 */
static void
test_zero_owner_in_a_container(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	static const struct fake procs[] = {
		{ 1, 0, 1, 'S', 0, 1, 0, "init", NULL, "/sbin/init", NULL },
		{ 9, 1, 9, 'S', 0, 2, 0, "daemon", NULL, "daemon", NULL },
		{ 200, 1, 200, 'S', 0, 5000, 1, "mcpmux", "/usr/bin/mcpmux", "mcpmux|--|srv",
		  NULL },
		{ 240, 1, 240, 'S', 0, 6900, 1, "tini", "/usr/bin/tini", "tini", NULL },
		{ 250, 240, 250, 'S', 0, 7000, 1, "mcpmux", "/usr/bin/mcpmux",
		  "mcpmux|serve|--|srv", NULL },
		{ 260, 240, 260, 'S', 0, 9000, 1, "late", "/usr/bin/late", "late", NULL },
		{ 320, 240, 320, 'S', 0, 7002, 1, "srv", "/usr/bin/srv", "srv",
		  "MCPMUX_SESSION=cz5|MCPMUX_OWNER=5:0" },
		{ 321, 240, 321, 'S', 0, 7003, 1, "srv", "/usr/bin/srv", "srv",
		  "MCPMUX_SESSION=cz1|MCPMUX_OWNER=1:0" },
		{ 322, 240, 322, 'S', 0, 7004, 1, "srv", "/usr/bin/srv", "srv",
		  "MCPMUX_SESSION=cz200|MCPMUX_OWNER=200:0" },
		{ 323, 240, 323, 'S', 0, 7005, 1, "srv", "/usr/bin/srv", "srv",
		  "MCPMUX_SESSION=cz9|MCPMUX_OWNER=9:0" },
		{ 324, 240, 324, 'S', 0, 7006, 1, "srv", "/usr/bin/srv", "srv",
		  "MCPMUX_SESSION=cz6|MCPMUX_OWNER=6:0" },
	};

	add_all(r->dir, procs, sizeof(procs) / sizeof(procs[0]));
	add_ns(r->dir, 240, "240\t1", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 250, "250\t5", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 260, "260\t6", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 320, "320\t20", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 321, "321\t21", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 322, "322\t22", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 323, "323\t23", CTR_PIDNS, NULL, NULL);
	add_ns(r->dir, 324, "324\t24", CTR_PIDNS, NULL, NULL);
	add_uptime(r->dir, "100.0 1.0\n");
	assert_int_equal(procscan_read(s, r->dir, 0, true, 99), 0);

	size_t g = group_of(s, "cz5");

	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 250);
	g = group_of(s, "cz1");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_UNKNOWN);
	assert_true(s->g[g].zero_owner);
	assert_int_equal(s->g[g].owner_errno, 0);
	assert_int_equal(s->g[group_of(s, "cz200")].owner_state, PROCSCAN_GONE);
	assert_int_equal(s->g[group_of(s, "cz9")].owner_state, PROCSCAN_GONE);
	assert_int_equal(s->g[group_of(s, "cz6")].owner_state, PROCSCAN_GONE);
}

/*
 * Owners in time namespaces of their own (no pid namespace): an MCPMUX_OWNER holds the
 * start time as the owner's clock reads it.  An offset in parts of a tick is rounded
 * with the start time by the kernel, and here apart: one tick either way is the same
 * start.  A whole offset leaves nothing to round.
 */
static void
test_owner_in_a_time_namespace(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	long hz = sysconf(_SC_CLK_TCK);
	char env[4][96];
	const char *sessions[4] = { "part-up", "part-2", "whole", "whole-1" };

	assert_true(hz > 0);
	/* 270: an offset of 1 ns, so its start, 9000 here, may read 9001 there */
	(void)snprintf(env[0], sizeof(env[0]), "MCPMUX_SESSION=%s|MCPMUX_OWNER=270:9001",
		       sessions[0]);
	(void)snprintf(env[1], sizeof(env[1]), "MCPMUX_SESSION=%s|MCPMUX_OWNER=270:9002",
		       sessions[1]);
	/* 280: an offset of 1 s, hz ticks */
	(void)snprintf(env[2], sizeof(env[2]), "MCPMUX_SESSION=%s|MCPMUX_OWNER=280:%ld",
		       sessions[2], 9100 + hz);
	(void)snprintf(env[3], sizeof(env[3]), "MCPMUX_SESSION=%s|MCPMUX_OWNER=280:%ld",
		       sessions[3], 9101 + hz);
	const struct fake procs[] = {
		{ 99, 1, 99, 'R', 0, 8900, 1, "mcpmux", "/usr/bin/mcpmux", "mcpmux|ps", NULL },
		{ 270, 1, 270, 'S', 0, 9000, 1, "mcpmux", "/usr/bin/mcpmux", "mcpmux|--|srv",
		  NULL },
		{ 280, 1, 280, 'S', 0, 9100, 1, "mcpmux", "/usr/bin/mcpmux", "mcpmux|--|srv",
		  NULL },
		{ 400, 270, 400, 'S', 0, 9010, 1, "srv", "/usr/bin/srv", "srv", env[0] },
		{ 401, 270, 401, 'S', 0, 9011, 1, "srv", "/usr/bin/srv", "srv", env[1] },
		{ 402, 280, 402, 'S', 0, 9110, 1, "srv", "/usr/bin/srv", "srv", env[2] },
		{ 403, 280, 403, 'S', 0, 9111, 1, "srv", "/usr/bin/srv", "srv", env[3] },
	};

	add_all(r->dir, procs, sizeof(procs) / sizeof(procs[0]));
	add_ns(r->dir, 99, NULL, NULL, "time:[4026531834]", "0 0");
	add_ns(r->dir, 270, NULL, NULL, "time:[4026532200]", "0 1");
	add_ns(r->dir, 280, NULL, NULL, "time:[4026532201]", "1 0");
	add_ns(r->dir, 400, NULL, NULL, "time:[4026532200]", "0 1");
	add_ns(r->dir, 401, NULL, NULL, "time:[4026532200]", "0 1");
	add_ns(r->dir, 402, NULL, NULL, "time:[4026532201]", "1 0");
	add_ns(r->dir, 403, NULL, NULL, "time:[4026532201]", "1 0");
	add_uptime(r->dir, "100.0 1.0\n");
	assert_int_equal(procscan_read(s, r->dir, 0, true, 99), 0);

	size_t g = group_of(s, "part-up");

	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 270);
	assert_int_equal(s->g[group_of(s, "part-2")].owner_state, PROCSCAN_GONE);
	g = group_of(s, "whole");
	assert_int_equal(s->g[g].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s->v[s->g[g].instance].pid, 280);
	assert_int_equal(s->g[group_of(s, "whole-1")].owner_state, PROCSCAN_GONE);
}

/*
 * An owner in a container's pid namespace that no process seen here is: gone only where
 * every process is seen (the initial pid namespace, its own /proc, and root, since
 * hidepid hides other users' processes from the others); unknown for another user.  A
 * process of that pid there whose namespace cannot be read (one that has exited since
 * the scan: no such pid in /proc) may be it: unknown, even for root.
 */
static void
test_owner_in_pidns_seen_whole(void **state)
{
	struct root *r = *state;
	struct procscan *s = &r->s;
	static const struct fake gone = {
		999999999,	 1,   999999999, 'S', 0, 7000, 1, "mcpmux", "/usr/bin/mcpmux",
		"mcpmux|--|srv", NULL
	};
	char ns[PROCSCAN_PIDNS_MAX];
	enum procscan_owner as_root, as_other;
	int err, rc;

	if (geteuid() != 0 || procscan_pidns("/proc", getpid(), ns) == -1 ||
	    strcmp(ns, "4026531836") != 0) {
		skip(); /* gone is never told but by root in the initial pid namespace */
	}
	add_uptime(r->dir, "100.0 1.0\n");
	assert_int_equal(procscan_read(s, r->dir, 0, true, 99), 0);
	as_root = procscan_owner_in_pidns(s, "/proc", "5:7000", "4026532001", &err);
	rc = seteuid(65534);
	as_other = procscan_owner_in_pidns(s, "/proc", "5:7000", "4026532001", &err);
	assert_int_equal(rc, 0);
	assert_int_equal(seteuid(0), 0);
	assert_int_equal(as_root, PROCSCAN_GONE);
	assert_int_equal(as_other, PROCSCAN_UNKNOWN);

	add(r->dir, &gone);
	add_ns(r->dir, 999999999, "999999999\t5", CTR_PIDNS, NULL, NULL);
	assert_int_equal(procscan_read(s, r->dir, 0, true, 99), 0);
	assert_int_equal(proc(s, 999999999)->ns_pid, 5);
	assert_int_equal(procscan_owner_in_pidns(s, "/proc", "5:7000", "4026532001", &err),
			 PROCSCAN_UNKNOWN);
}

static void
test_missing_root(void **state)
{
	struct root *r = *state;
	char path[PATH_MAX + 16];

	(void)snprintf(path, sizeof(path), "%s/nonexistent", r->dir);
	errno = 0;
	assert_int_equal(procscan_read(&r->s, path, 0, true, 1), -1);
	assert_int_equal(errno, ENOENT);
	/* An empty one (procfs not mounted there): no process. */
	assert_int_equal(procscan_read(&r->s, r->dir, 0, true, 1), 0);
	assert_int_equal(r->s.n, 0);
	assert_int_equal(r->s.n_groups, 0);
	/* No uptime: ages are unknown (-1), not made up. */
	const struct fake p = { 5, 1, 5, 'S', 0, 100, 1, "p", NULL, "p", NULL };

	add(r->dir, &p);
	assert_int_equal(procscan_read(&r->s, r->dir, 0, true, 1), 0);
	assert_true(procscan_age(&r->s, 0) < 0);
}

static void
test_parsers(void **state)
{
	static const struct {
		const char *text;
		double seconds; /* 0: malformed */
	} durations[] = {
		{ "90", 90 },	 { "90s", 90 },	 { "10m", 600 }, { "1.5h", 5400 }, { "2d", 172800 },
		{ "0.5s", 0.5 }, { "", 0 },	 { "-1", 0 },	 { "0", 0 },	   { "10x", 0 },
		{ "m", 0 },	 { "1e400", 0 }, { "inf", 0 },	 { "nan", 0 },	   { "5mm", 0 },
		{ " 5", 0 },	 { "1e12d", 0 },
	};
	static const struct {
		const char *text;
		int ok;
		pid_t pid;
		unsigned long long start;
	} owners[] = {
		{ "1:2", 1, 1, 2 },  { "12:345", 1, 12, 345 },
		{ "0:1", 0, 0, 0 },  { "x", 0, 0, 0 },
		{ "1:", 0, 0, 0 },   { ":2", 0, 0, 0 },
		{ "1:2x", 0, 0, 0 }, { "99999999999:1", 0, 0, 0 },
		{ "-1:2", 0, 0, 0 }, { "1:-2", 0, 0, 0 },
		{ "", 0, 0, 0 },     { "4242:0", 0, 0, 0 }, /* a start of 0 names nothing */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		double v = -1;
		int rc = procscan_parse_duration(durations[i].text, &v);

		if (durations[i].seconds == 0 ? rc != -1 : rc != 0 || v != durations[i].seconds) {
			fail_msg("duration '%s': rc %d, %g", durations[i].text, rc, v);
		}
	}
	for (size_t i = 0; i < sizeof(owners) / sizeof(owners[0]); i++) {
		pid_t pid = 0;
		unsigned long long start = 0;
		int rc = procscan_parse_owner(owners[i].text, &pid, &start);

		if (owners[i].ok ? rc != 0 || pid != owners[i].pid || start != owners[i].start
				 : rc != -1) {
			fail_msg("owner '%s': rc %d, %d:%llu", owners[i].text, rc, (int)pid, start);
		}
	}
}

static void
test_boot_id(void **state)
{
	struct root *r = *state;
	char path[PATH_MAX + 64], id[PROCSCAN_BOOT_MAX];

	assert_int_equal(procscan_boot_id(r->dir, id), -1);
	mkdir_at("%s/sys", r->dir);
	mkdir_at("%s/sys/kernel", r->dir);
	mkdir_at("%s/sys/kernel/random", r->dir);
	(void)snprintf(path, sizeof(path), "%s/sys/kernel/random/boot_id", r->dir);
	write_file(path, "\n", 1);
	assert_int_equal(procscan_boot_id(r->dir, id), -1);
	write_file(path, "2b5f1c2e-aaaa-bbbb-cccc-0123456789ab\n", 37);
	assert_int_equal(procscan_boot_id(r->dir, id), 0);
	assert_string_equal(id, "2b5f1c2e-aaaa-bbbb-cccc-0123456789ab");
	/* the real one */
	assert_int_equal(procscan_boot_id("/proc", id), 0);
	assert_int_equal(strlen(id), 36);
}

/* ---- the real /proc ---- */

struct kids {
	pid_t pids[4];
};

static int
kids_setup(void **state)
{
	struct kids *k = calloc(1, sizeof(*k));

	*state = k;
	return k != NULL ? 0 : -1;
}

static int
kids_teardown(void **state)
{
	struct kids *k = *state;

	for (size_t i = 0; i < 4; i++) {
		if (k->pids[i] > 0) {
			(void)kill(k->pids[i], SIGKILL);
			(void)waitpid(k->pids[i], NULL, 0);
		}
	}
	free(k);
	return 0;
}

/* The start time of a live process. */
static unsigned long long
start_of(pid_t pid)
{
	struct procscan s;
	unsigned long long start;

	procscan_init(&s);
	assert_int_equal(procscan_read(&s, "/proc", getuid(), false, 0), 0);
	start = proc(&s, pid)->start;
	procscan_release(&s);
	return start;
}

/*
 * A child that execs `sleep` with the cookie and owner, optionally ignoring SIGTERM
 * (SIG_IGN survives exec); returns once the exec is done.
 */
static pid_t
spawn(const char *session, const char *owner, bool ignore_term)
{
	char e0[160], e1[160];
	char *const argv[] = { (char *)(uintptr_t) "sleep", (char *)(uintptr_t) "1000", NULL };
	char *const envp[] = { e0, e1, NULL };
	int fds[2];
	char err = 1;

	(void)snprintf(e0, sizeof(e0), "MCPMUX_SESSION=%s", session);
	(void)snprintf(e1, sizeof(e1), "MCPMUX_OWNER=%s", owner);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid_t pid = fork();

	assert_true(pid != -1);
	if (pid == 0) {
		close(fds[0]);
		if (ignore_term) {
			(void)signal(SIGTERM, SIG_IGN);
		}
		execve("/bin/sleep", argv, envp);
		execve("/usr/bin/sleep", argv, envp);
		_exit(write(fds[1], &err, 1) == 1 ? 127 : 126);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], &err, 1);

	close(fds[0]);
	assert_int_equal(n, 0);
	return pid;
}

static void
test_real(void **state)
{
	struct kids *k = *state;
	struct procscan s;
	char owner[64], mine[64];
	int st;

	/* A dead owner: a child that has exited, reaped. */
	pid_t dead = fork();

	assert_true(dead != -1);
	if (dead == 0) {
		pause();
		_exit(0);
	}
	unsigned long long dead_start = start_of(dead);

	assert_int_equal(kill(dead, SIGKILL), 0);
	assert_int_equal(waitpid(dead, NULL, 0), dead);
	(void)snprintf(owner, sizeof(owner), "%d:%llu", (int)dead, dead_start);
	(void)snprintf(mine, sizeof(mine), "%d:%llu", (int)getpid(), start_of(getpid()));

	pid_t orphan = k->pids[0] = spawn("unit-orphan", owner, false);
	pid_t stubborn = k->pids[1] = spawn("unit-orphan", owner, true);
	pid_t owned = k->pids[2] = spawn("unit-owned", mine, false);

	procscan_init(&s);
	assert_int_equal(procscan_read(&s, "/proc", getuid(), false, 0), 0);
	size_t g = procscan_find_orphans(&s, owner, "unit-orphan", getuid());

	assert_true(g != SIZE_MAX);
	assert_int_equal(s.g[g].n_carriers, 2);
	assert_true(top_pid(&s, g) == orphan || top_pid(&s, g) == stubborn);
	/* This test process is the owner of the other: an instance (mode unknown). */
	size_t o = group_of(&s, "unit-owned");

	assert_int_equal(s.g[o].owner_state, PROCSCAN_LIVE);
	assert_int_equal(s.v[s.g[o].instance].pid, getpid());
	assert_int_equal(s.v[s.g[o].instance].mode, PROCSCAN_OTHER);
	assert_int_equal(top_pid(&s, o), owned);

	struct procscan_target t[2];

	procscan_target_init(&t[0], orphan, proc(&s, orphan)->start);
	procscan_target_init(&t[1], stubborn, proc(&s, stubborn)->start);
	procscan_release(&s);

	/* A stopped process still ends on SIGTERM: SIGCONT follows it. */
	assert_int_equal(kill(orphan, SIGSTOP), 0);
	assert_int_equal(waitpid(orphan, &st, WUNTRACED), orphan);
	assert_true(WIFSTOPPED(st));
	assert_int_equal(procscan_signal("/proc", &t[0], SIGTERM), 1);
	assert_int_equal(procscan_signal("/proc", &t[1], SIGTERM), 1);
	assert_true(t[0].pidfd >= 0);
	long long t0 = procscan_now_ms();

	/* The orphan ends (a zombie of ours: gone); the stubborn one outlives the grace. */
	assert_int_equal(procscan_wait("/proc", t, 2, t0 + 300), 1);
	assert_true(t[0].is_gone);
	assert_false(t[1].is_gone);
	assert_true(procscan_now_ms() - t0 >= 290);
	assert_int_equal(procscan_signal("/proc", &t[0], SIGKILL), 0); /* gone: not signalled */
	assert_int_equal(waitpid(orphan, &st, 0), orphan);
	k->pids[0] = 0;
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);

	assert_int_equal(procscan_signal("/proc", &t[1], SIGKILL), 1);
	assert_int_equal(procscan_wait("/proc", t, 2, procscan_now_ms() + 5000), 0);
	assert_int_equal(waitpid(stubborn, &st, 0), stubborn);
	k->pids[1] = 0;
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	/* A target whose start time does not match (a reused pid) is never signalled. */
	struct procscan_target wrong;

	procscan_target_init(&wrong, owned, 1);
	assert_int_equal(procscan_signal("/proc", &wrong, SIGKILL), 0);
	assert_true(wrong.is_gone);
	assert_int_equal(kill(owned, 0), 0);
	assert_int_equal(waitpid(owned, &st, WNOHANG), 0);

	/* A pid that is not there at all. */
	struct procscan_target none;

	procscan_target_init(&none, dead, dead_start);
	assert_int_equal(procscan_signal("/proc", &none, SIGKILL), 0);
	assert_int_equal(procscan_wait("/proc", &none, 1, procscan_now_ms()), 0);

	for (size_t i = 0; i < 2; i++) {
		procscan_target_release(&t[i]);
	}
	procscan_target_release(&wrong);
	procscan_target_release(&none);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_instances, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_sessions_and_orphans, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_owner_state, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_main_thread_exited, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_environ_edges, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_owner_outside, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_owner_in_a_container, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_zero_owner_in_a_container, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_owner_in_a_time_namespace, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_owner_in_pidns_seen_whole, root_setup,
						root_teardown),
		cmocka_unit_test_setup_teardown(test_missing_root, root_setup, root_teardown),
		cmocka_unit_test(test_parsers),
		cmocka_unit_test_setup_teardown(test_boot_id, root_setup, root_teardown),
		cmocka_unit_test_setup_teardown(test_real, kids_setup, kids_teardown),
	};

	return cmocka_run_group_tests_name("procscan", tests, NULL, NULL);
}
