/*
 * cmd_ps: `mcpmux ps [--json]` lists the running mcpmux instances of this user (all
 * users for root), their sessions, the orphans of instances that are gone, and the
 * containers labelled by mcpmux; `mcpmux sweep` ends those orphans with the teardown
 * ladder.  Everything comes from /proc (procscan) and the container engines' listings
 * (container): no daemon, no registry file.  It never signals a process that carries
 * no cookie, belongs to another user, or is this command or one of its ancestors.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/container.h"
#include "mcpmux/diag.h"
#include "mcpmux/procscan.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/sys.h"

#define PROC_ROOT	      "/proc"
#define ENGINE_TIMEOUT_MS     30000		 /* one engine command (a listing, a kill) */
#define ENGINE_OUTPUT_MAX     ((size_t)16 << 20) /* bytes of an engine's output kept */
#define KILL_ROUND_MS	      100		 /* sweep: re-scan and re-kill interval */
#define CONTAINER_POLL_MS     100		 /* sweep: how often a container's state is read */
#define JSON_WORDS_MAX	      512		 /* words of a command line in --json */
#define TERM_GRACE_DEFAULT    2000.0
#define KILL_DEADLINE_DEFAULT 5000.0

enum {
	OPT_JSON = 256,
	OPT_DRY_RUN,
	OPT_OLDER_THAN,
	OPT_SESSION,
	OPT_TERM_GRACE,
	OPT_KILL_DEADLINE,
};

struct ps_opts {
	bool json, dry_run;
	double older_than_s; /* 0: any age */
	const char *session; /* a glob(7) pattern, NULL: any */
	double term_grace_ms, kill_deadline_ms;
};

/* One engine's listing of containers labelled by mcpmux. */
struct engine {
	enum container_engine kind;
	bool present;	 /* its binary was found */
	bool listed;	 /* and it answered */
	char error[256]; /* why it did not */
	struct container_info *v;
	size_t n;
};

enum ctr_owner {
	CTR_OWNED,     /* its mcpmux lives */
	CTR_ORPHAN,    /* its mcpmux is gone */
	CTR_ELSEWHERE, /* labelled on another boot or machine: not judged */
	CTR_UNKNOWN,   /* the owner could not be read */
};

struct ps {
	struct ps_opts o;
	struct procscan scan;
	uid_t uid;
	bool all_users;
	char boot[PROCSCAN_BOOT_MAX]; /* "" when unknown */
	struct engine engines[2];
};

/* ---- small helpers ---- */

static void
ps_release(struct ps *p)
{
	procscan_release(&p->scan);
	for (size_t e = 0; e < 2; e++) {
		free(p->engines[e].v);
	}
}

/* The first line of text, without control characters, into out. */
static void
first_line(const char *text, size_t len, char *out, size_t cap)
{
	size_t k = 0;

	while (len > 0 && (*text == '\n' || *text == '\r' || *text == ' ')) {
		text++;
		len--;
	}
	for (size_t i = 0; i < len && text[i] != '\n' && k + 1 < cap; i++) {
		out[k++] = (unsigned char)text[i] < 0x20 ? ' ' : text[i];
	}
	while (k > 0 && out[k - 1] == ' ') {
		k--;
	}
	out[k] = '\0';
}

/* Words [from, n) of a command line joined by spaces, control bytes as '?'. */
static void
join_words(const char *const *w, size_t from, size_t n, char *out, size_t cap)
{
	size_t k = 0;

	out[0] = '\0';
	for (size_t i = from; i < n && k + 1 < cap; i++) {
		if (i > from) {
			out[k++] = ' ';
		}
		for (const char *c = w[i]; *c != '\0' && k + 1 < cap; c++) {
			out[k++] = (unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c;
		}
	}
	out[k] = '\0';
}

/* A process's command line for a table: its words, or [comm] when unknown. */
static void
proc_command(const struct procscan_proc *pr, size_t from, char *out, size_t cap)
{
	const char *w[64];
	size_t n = SYS_MIN(procscan_words(pr, w, 64), (size_t)64);

	/* cppcheck-suppress knownConditionTrueFalse ; it takes procscan_words() to return 0 */
	if (from < n) {
		join_words(w, from, n, out, cap);
	} else {
		(void)snprintf(out, cap, "[%s]", pr->comm); /* no command line: a kernel thread */
	}
}

static void
fmt_age(double s, char *out, size_t cap)
{
	long long t = (long long)s;

	if (s < 0) {
		(void)snprintf(out, cap, "-");
	} else if (t < 60) {
		(void)snprintf(out, cap, "%llds", t);
	} else if (t < 3600) {
		(void)snprintf(out, cap, "%lldm%02llds", t / 60, t % 60);
	} else if (t < 86400) {
		(void)snprintf(out, cap, "%lldh%02lldm", t / 3600, t % 3600 / 60);
	} else {
		(void)snprintf(out, cap, "%lldd%02lldh", t / 86400, t % 86400 / 3600);
	}
}

static void
fmt_kib(unsigned long long kib, char *out, size_t cap)
{
	if (kib < 1024) {
		(void)snprintf(out, cap, "%lluK", kib);
	} else if (kib < 1024 * 1024) {
		(void)snprintf(out, cap, "%.1fM", (double)kib / 1024);
	} else {
		(void)snprintf(out, cap, "%.1fG", (double)kib / (1024 * 1024));
	}
}

static const char *
user_name(uid_t uid, char *buf, size_t cap)
{
	const struct passwd *pw = getpwuid(uid);

	if (pw != NULL) {
		(void)snprintf(buf, cap, "%s", pw->pw_name);
	} else {
		(void)snprintf(buf, cap, "%u", (unsigned)uid);
	}
	return buf;
}

static const char *
mode_name(enum procscan_mode m)
{
	return m == PROCSCAN_WRAP ? "wrap" : m == PROCSCAN_SERVE ? "serve" : "?";
}

/* ---- an aligned table ---- */

#define TABLE_MAX_COLS 12

struct table {
	size_t ncol;
	const char *const *head;
	const char *right; /* 'r' per right-aligned column */
	char **cells;	   /* nrows * ncol strings */
	size_t nrows, cap;
	bool failed;
};

static void
table_row(struct table *t, const char *const *cols)
{
	if (t->failed) {
		return;
	}
	if (t->nrows == t->cap) {
		size_t cap = t->cap != 0 ? t->cap * 2 : 16;
		char **nc = realloc(t->cells, cap * t->ncol * sizeof(*nc));

		if (nc == NULL) {
			t->failed = true;
			return;
		}
		t->cells = nc;
		t->cap = cap;
	}
	for (size_t c = 0; c < t->ncol; c++) {
		t->cells[t->nrows * t->ncol + c] = strdup(cols[c] != NULL ? cols[c] : "-");
		t->failed = t->failed || t->cells[t->nrows * t->ncol + c] == NULL;
	}
	t->nrows++;
}

/* Columns on a terminal: UTF-8 continuation bytes take none. */
static size_t
text_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++) {
		w += ((unsigned char)*s & 0xc0) != 0x80;
	}
	return w;
}

static void
table_print_row(const struct table *t, const char *const *cols, const size_t *width)
{
	for (size_t c = 0; c < t->ncol; c++) {
		size_t pad = width[c] - text_width(cols[c]);
		bool last = c + 1 == t->ncol;

		if (t->right[c] == 'r') {
			printf("%*s%s", (int)pad, "", cols[c]);
		} else {
			printf("%s%*s", cols[c], last ? 0 : (int)pad, "");
		}
		fputs(last ? "\n" : "  ", stdout);
	}
}

static void
table_print(const struct table *t)
{
	size_t width[TABLE_MAX_COLS];

	for (size_t c = 0; c < t->ncol; c++) {
		width[c] = text_width(t->head[c]);
		for (size_t r = 0; r < t->nrows; r++) {
			width[c] = SYS_MAX(width[c], text_width(t->cells[r * t->ncol + c]));
		}
	}
	table_print_row(t, t->head, width);
	for (size_t r = 0; r < t->nrows; r++) {
		table_print_row(t, (const char *const *)(t->cells + r * t->ncol), width);
	}
}

static void
table_release(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncol; i++) {
		free(t->cells[i]);
	}
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/* ---- running an engine's command ---- */

struct run_result {
	int status;	 /* wait status; -1 when it could not run */
	int spawn_errno; /* why it could not */
	struct sbuf out, err;
};

static void
run_release(struct run_result *r)
{
	sbuf_release(&r->out);
	sbuf_release(&r->err);
}

/*
 * Run argv with stdin on /dev/null, its stdout and stderr captured (up to
 * ENGINE_OUTPUT_MAX each), for at most timeout_ms; killed after that.  0 when it ran
 * (see r->status), -1 when it could not be started (r->spawn_errno).
 */
static int
run_capture(char *const *argv, int timeout_ms, struct run_result *r)
{
	int out[2] = { -1, -1 }, err[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t dflt, empty;
	pid_t pid;
	int rc;

	memset(r, 0, sizeof(*r));
	r->status = -1;
	if (pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1) {
		r->spawn_errno = errno;
		sys_close(&out[0]);
		sys_close(&out[1]);
		return -1;
	}
	/* The child gets default signal dispositions (mcpmux ignores SIGPIPE) and mask. */
	sigemptyset(&empty);
	sigfillset(&dflt);
	sigdelset(&dflt, SIGKILL);
	sigdelset(&dflt, SIGSTOP);
	rc = posix_spawn_file_actions_init(&fa);
	if (rc == 0) {
		rc = posix_spawnattr_init(&attr);
		if (rc != 0) {
			(void)posix_spawn_file_actions_destroy(&fa);
		}
	}
	if (rc == 0) {
		(void)posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
		(void)posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
		(void)posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
		(void)posix_spawnattr_setsigdefault(&attr, &dflt);
		(void)posix_spawnattr_setsigmask(&attr, &empty);
		(void)posix_spawnattr_setflags(&attr,
					       POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
		rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
		(void)posix_spawn_file_actions_destroy(&fa);
		(void)posix_spawnattr_destroy(&attr);
	}
	sys_close(&out[1]);
	sys_close(&err[1]);
	if (rc != 0) {
		r->spawn_errno = rc;
		sys_close(&out[0]);
		sys_close(&err[0]);
		return -1;
	}
	long long deadline = procscan_now_ms() + timeout_ms;
	bool killed = false;

	while (out[0] >= 0 || err[0] >= 0) {
		struct pollfd pf[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
		long long left = deadline - procscan_now_ms();

		if (left <= 0) {
			(void)kill(pid, SIGKILL);
			killed = true;
			break;
		}
		int n = poll(pf, 2, (int)left);

		if (n == -1 && errno != EINTR) {
			break;
		}
		for (int k = 0; n > 0 && k < 2; k++) {
			int *fd = k == 0 ? &out[0] : &err[0];
			struct sbuf *b = k == 0 ? &r->out : &r->err;
			char buf[16384];

			if (pf[k].revents == 0) {
				continue;
			}
			ssize_t got = sys_read(*fd, buf, sizeof(buf));

			if (got <= 0) {
				sys_close(fd);
			} else if (b->len + (size_t)got <= ENGINE_OUTPUT_MAX) {
				sbuf_add(b, buf, (size_t)got);
			}
		}
	}
	sys_close(&out[0]);
	sys_close(&err[0]);
	while (waitpid(pid, &r->status, 0) == -1 && errno == EINTR) {
	}
	if (killed) {
		sbuf_adds(&r->err, "no answer within the time limit");
		r->status = -1;
	}
	return 0;
}

static char *engine_prefix[2][2] = {
	{ (char *)(uintptr_t) "docker", NULL },
	{ (char *)(uintptr_t) "podman", NULL },
};

static char **
prefix_of(enum container_engine e)
{
	return engine_prefix[e == CONTAINER_PODMAN ? 1 : 0];
}

/* Describe a failed engine command in out: its stderr's first line, or its status. */
static void
run_failure(const struct run_result *r, char *out, size_t cap)
{
	first_line(r->err.buf != NULL ? r->err.buf : "", r->err.len, out, cap);
	if (out[0] == '\0') {
		if (r->status == -1) {
			(void)snprintf(out, cap, "%s", strerror(r->spawn_errno));
		} else if (WIFEXITED(r->status)) {
			(void)snprintf(out, cap, "exit status %d", WEXITSTATUS(r->status));
		} else {
			(void)snprintf(out, cap, "killed by signal %d", WTERMSIG(r->status));
		}
	}
}

static bool
run_ok(const struct run_result *r)
{
	return r->status != -1 && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

/* List each engine's containers labelled mcpmux.owner; an engine not installed is skipped. */
static void
list_containers(struct ps *p)
{
	for (size_t e = 0; e < 2; e++) {
		struct engine *en = &p->engines[e];
		struct run_result r;

		en->kind = e == 0 ? CONTAINER_PODMAN : CONTAINER_DOCKER;
		char **argv = container_list_argv(prefix_of(en->kind), 1, en->kind);

		if (argv == NULL) {
			(void)snprintf(en->error, sizeof(en->error), "%s", strerror(errno));
			en->present = true;
			continue;
		}
		if (run_capture(argv, ENGINE_TIMEOUT_MS, &r) == -1 && r.spawn_errno == ENOENT) {
			free(argv);
			run_release(&r);
			continue;
		}
		free(argv);
		en->present = true;
		if (!run_ok(&r)) {
			run_failure(&r, en->error, sizeof(en->error));
		} else if (container_parse_list(en->kind, r.out.buf != NULL ? r.out.buf : "",
						r.out.len, &en->v, &en->n) == -1) {
			(void)snprintf(en->error, sizeof(en->error), "cannot read its listing: %s",
				       strerror(errno));
		} else {
			en->listed = true;
		}
		run_release(&r);
		if (!en->listed) {
			diag_warn("cannot list the containers of %s: %s (they are left out)",
				  container_engine_name(en->kind), en->error);
		}
	}
	/* `docker` may be podman under another name: keep each container once. */
	struct engine *pd = &p->engines[0], *dk = &p->engines[1];

	for (size_t i = 0; i < dk->n;) {
		bool dup = false;

		for (size_t k = 0; k < pd->n && !dup; k++) {
			dup = strcmp(pd->v[k].id, dk->v[i].id) == 0;
		}
		if (dup) {
			dk->v[i] = dk->v[--dk->n];
		} else {
			i++;
		}
	}
}

static enum ctr_owner
container_owner(const struct ps *p, const struct container_info *c, int *err)
{
	*err = 0;
	if (c->boot[0] != '\0' && p->boot[0] != '\0' && strcmp(c->boot, p->boot) != 0) {
		return CTR_ELSEWHERE;
	}
	switch (procscan_owner_state(&p->scan, PROC_ROOT, c->owner, err)) {
	case PROCSCAN_LIVE:
		return CTR_OWNED;
	case PROCSCAN_GONE:
		return CTR_ORPHAN;
	default:
		return CTR_UNKNOWN;
	}
}

static const char *
ctr_owner_name(enum ctr_owner o)
{
	static const char *const names[] = { "owned", "orphan", "elsewhere", "unknown" };

	return names[o];
}

static double
container_age(const struct container_info *c)
{
	return c->created >= 0 ? (double)(time(NULL) - c->created) : -1;
}

static int
scan(struct ps *p)
{
	p->uid = getuid();
	p->all_users = p->uid == 0;
	procscan_init(&p->scan);
	if (procscan_read(&p->scan, PROC_ROOT, p->uid, p->all_users, getpid()) == -1) {
		return diag_error_errno("cannot read the processes in %s", PROC_ROOT);
	}
	if (procscan_boot_id(PROC_ROOT, p->boot) == -1) {
		p->boot[0] = '\0';
	}
	return 0;
}

static bool
session_selected(const struct ps_opts *o, const char *session)
{
	return o->session == NULL || fnmatch(o->session, session, 0) == 0;
}

/* Report the carriers whose owner could not be read (own_only: of this user); any? */
static bool
report_unknown(const struct ps *p, bool own_only)
{
	bool any = false;

	for (size_t g = 0; g < p->scan.n_groups; g++) {
		const struct procscan_group *x = &p->scan.g[g];

		if (x->owner_state == PROCSCAN_UNKNOWN && session_selected(&p->o, x->session) &&
		    (!own_only || x->uid == p->uid)) {
			diag_warn(
				"cannot tell whether mcpmux %s, the owner of pid %d (session '%s'), "
				"is alive: %s (left alone)",
				x->owner, (int)p->scan.v[x->top].pid, x->session,
				strerror(x->owner_errno));
			any = true;
		}
	}
	return any;
}

/* ---- ps: JSON ---- */

static void
json_str(struct sbuf *b, const char *s)
{
	sbuf_add_json_string(b, s, strlen(s));
}

static void
json_words(struct sbuf *b, const struct procscan_proc *pr, size_t from)
{
	const char *w[JSON_WORDS_MAX];
	size_t n = SYS_MIN(procscan_words(pr, w, JSON_WORDS_MAX), (size_t)JSON_WORDS_MAX);

	sbuf_adds(b, "[");
	for (size_t i = from; i < n; i++) {
		sbuf_adds(b, i > from ? "," : "");
		json_str(b, w[i]);
	}
	sbuf_adds(b, "]");
}

static void
json_age(struct sbuf *b, double age)
{
	if (age < 0) {
		sbuf_adds(b, "null");
	} else {
		sbuf_addf(b, "%.1f", age);
	}
}

static void
json_pids(struct sbuf *b, const struct procscan *s, size_t g)
{
	bool first = true;

	sbuf_adds(b, "[");
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].read_errno == 0 && s->v[i].state != 'Z' && s->v[i].state != 'X' &&
		    procscan_in_tree(s, g, i)) {
			sbuf_addf(b, "%s%d", first ? "" : ",", (int)s->v[i].pid);
			first = false;
		}
	}
	sbuf_adds(b, "]");
}

static const char *
proc_state_name(char state)
{
	return state == 'T' || state == 't' ? "stopped" : "running";
}

static void
json_session(struct sbuf *b, const struct ps *p, size_t g)
{
	const struct procscan *s = &p->scan;
	const struct procscan_group *x = &s->g[g];
	const struct procscan_proc *top = &s->v[x->top];

	sbuf_adds(b, "{\"session\":");
	json_str(b, x->session);
	if (x->has_server) {
		sbuf_addf(b, ",\"server_pid\":%d", (int)top->pid);
	} else {
		sbuf_adds(b, ",\"server_pid\":null");
	}
	sbuf_addf(b, ",\"tree\":%zu,\"pids\":", x->n_tree);
	json_pids(b, s, g);
	sbuf_adds(b, ",\"state\":");
	json_str(b, proc_state_name(top->state));
	sbuf_adds(b, ",\"ending\":null,\"suspended\":null,\"idle_s\":null,\"age_s\":");
	json_age(b, procscan_age(s, x->top));
	sbuf_addf(b, ",\"rss_kib\":%llu,\"command\":", x->rss_kib);
	json_words(b, top, 0);
	sbuf_adds(b, ",\"containers\":[");
	bool first = true;

	for (size_t e = 0; e < 2; e++) {
		const struct engine *en = &p->engines[e];
		char owner[64];

		(void)snprintf(owner, sizeof(owner), "%d:%llu", (int)s->v[x->instance].pid,
			       s->v[x->instance].start);
		for (size_t k = 0; k < en->n; k++) {
			if (strcmp(en->v[k].owner, owner) == 0 &&
			    strcmp(en->v[k].session, x->session) == 0) {
				sbuf_adds(b, first ? "" : ",");
				json_str(b, en->v[k].id);
				first = false;
			}
		}
	}
	sbuf_adds(b, "]}");
}

static void
json_instance(struct sbuf *b, const struct ps *p, size_t i)
{
	const struct procscan *s = &p->scan;
	const struct procscan_proc *pr = &s->v[i];
	char user[64];
	bool first = true;

	sbuf_addf(b, "{\"pid\":%d,\"start_ticks\":%llu,\"mode\":", (int)pr->pid, pr->start);
	if (pr->mode == PROCSCAN_OTHER) {
		sbuf_adds(b, "null");
	} else {
		json_str(b, mode_name(pr->mode));
	}
	sbuf_addf(b, ",\"uid\":%u,\"user\":", (unsigned)pr->uid);
	json_str(b, user_name(pr->uid, user, sizeof(user)));
	sbuf_adds(b, ",\"age_s\":");
	json_age(b, procscan_age(s, i));
	sbuf_addf(b, ",\"rss_kib\":%llu,\"argv\":", pr->rss_kib);
	json_words(b, pr, 0);
	sbuf_adds(b, ",\"command\":");
	if (pr->cmd_at != SIZE_MAX) {
		json_words(b, pr, pr->cmd_at);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_adds(b, ",\"listen\":");
	if (pr->listen != NULL) {
		json_str(b, pr->listen);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_addf(b, ",\"client\":{\"pid\":%d,\"argv\":", (int)pr->ppid);
	if (pr->parent != SIZE_MAX && s->v[pr->parent].argv != NULL) {
		json_words(b, &s->v[pr->parent], 0);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_adds(b, ",\"comm\":");
	if (pr->parent != SIZE_MAX) {
		json_str(b, s->v[pr->parent].comm);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_adds(b, "},\"sessions\":[");
	for (size_t g = 0; g < s->n_groups; g++) {
		if (s->g[g].instance == i && session_selected(&p->o, s->g[g].session)) {
			sbuf_adds(b, first ? "" : ",");
			json_session(b, p, g);
			first = false;
		}
	}
	sbuf_adds(b, "]}");
}

static void
json_orphan(struct sbuf *b, const struct ps *p, size_t g)
{
	const struct procscan *s = &p->scan;
	const struct procscan_group *x = &s->g[g];
	const struct procscan_proc *top = &s->v[x->top];
	char user[64];
	bool first = true;

	sbuf_adds(b, "{\"session\":");
	json_str(b, x->session);
	sbuf_adds(b, ",\"owner\":");
	if (x->owner[0] != '\0') {
		json_str(b, x->owner);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_addf(b, ",\"uid\":%u,\"user\":", (unsigned)x->uid);
	json_str(b, user_name(x->uid, user, sizeof(user)));
	sbuf_addf(b, ",\"pid\":%d,\"carriers\":[", (int)top->pid);
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].group == g) {
			sbuf_addf(b, "%s%d", first ? "" : ",", (int)s->v[i].pid);
			first = false;
		}
	}
	sbuf_addf(b, "],\"tree\":%zu,\"pids\":", x->n_tree);
	json_pids(b, s, g);
	sbuf_adds(b, ",\"state\":");
	json_str(b, proc_state_name(top->state));
	sbuf_adds(b, ",\"age_s\":");
	json_age(b, procscan_age(s, x->top));
	sbuf_addf(b, ",\"rss_kib\":%llu,\"command\":", x->rss_kib);
	json_words(b, top, 0);
	sbuf_adds(b, "}");
}

static void
json_container(struct sbuf *b, const struct ps *p, const struct container_info *c)
{
	int err;

	sbuf_adds(b, "{\"engine\":");
	json_str(b, container_engine_name(c->engine));
	sbuf_adds(b, ",\"id\":");
	json_str(b, c->id);
	sbuf_adds(b, ",\"name\":");
	json_str(b, c->name);
	sbuf_adds(b, ",\"image\":");
	json_str(b, c->image);
	sbuf_adds(b, ",\"session\":");
	json_str(b, c->session);
	sbuf_adds(b, ",\"owner\":");
	json_str(b, c->owner);
	sbuf_adds(b, ",\"owner_state\":");
	json_str(b, ctr_owner_name(container_owner(p, c, &err)));
	sbuf_adds(b, ",\"state\":");
	json_str(b, c->state);
	sbuf_adds(b, ",\"age_s\":");
	json_age(b, container_age(c));
	sbuf_adds(b, "}");
}

static int
ps_json(const struct ps *p)
{
	const struct procscan *s = &p->scan;
	struct sbuf b = { 0 };
	bool first = true;

	sbuf_adds(&b, "{\"instances\":[");
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].mode != PROCSCAN_NONE) {
			sbuf_adds(&b, first ? "" : ",");
			json_instance(&b, p, i);
			first = false;
		}
	}
	sbuf_adds(&b, "],\"orphans\":[");
	first = true;
	for (size_t g = 0; g < s->n_groups; g++) {
		if (s->g[g].owner_state == PROCSCAN_GONE &&
		    session_selected(&p->o, s->g[g].session)) {
			sbuf_adds(&b, first ? "" : ",");
			json_orphan(&b, p, g);
			first = false;
		}
	}
	sbuf_adds(&b, "],\"unknown\":[");
	first = true;
	for (size_t g = 0; g < s->n_groups; g++) {
		const struct procscan_group *x = &s->g[g];

		if (x->owner_state == PROCSCAN_UNKNOWN && session_selected(&p->o, x->session)) {
			sbuf_adds(&b, first ? "{\"session\":" : ",{\"session\":");
			json_str(&b, x->session);
			sbuf_adds(&b, ",\"owner\":");
			json_str(&b, x->owner);
			sbuf_addf(&b, ",\"pid\":%d,\"error\":", (int)s->v[x->top].pid);
			json_str(&b, strerror(x->owner_errno));
			sbuf_adds(&b, "}");
			first = false;
		}
	}
	sbuf_adds(&b, "],\"containers\":[");
	first = true;
	for (size_t e = 0; e < 2; e++) {
		for (size_t k = 0; k < p->engines[e].n; k++) {
			if (session_selected(&p->o, p->engines[e].v[k].session)) {
				sbuf_adds(&b, first ? "" : ",");
				json_container(&b, p, &p->engines[e].v[k]);
				first = false;
			}
		}
	}
	sbuf_adds(&b, "],\"engines\":[");
	first = true;
	for (size_t e = 0; e < 2; e++) {
		const struct engine *en = &p->engines[e];

		if (!en->present) {
			continue;
		}
		sbuf_adds(&b, first ? "{\"engine\":" : ",{\"engine\":");
		json_str(&b, container_engine_name(en->kind));
		sbuf_adds(&b, en->listed ? ",\"listed\":true,\"error\":null}"
					 : ",\"listed\":false,\"error\":");
		if (!en->listed) {
			json_str(&b, en->error);
			sbuf_adds(&b, "}");
		}
		first = false;
	}
	sbuf_adds(&b, "]}\n");
	if (b.failed) {
		sbuf_release(&b);
		return diag_error("out of memory");
	}
	int rc = sys_write_all(STDOUT_FILENO, b.buf, b.len);

	sbuf_release(&b);
	return rc == -1 ? diag_error_errno("cannot write to stdout") : 0;
}

/* ---- ps: tables ---- */

static size_t
count_sessions(const struct ps *p, size_t i)
{
	size_t n = 0;

	for (size_t g = 0; g < p->scan.n_groups; g++) {
		n += p->scan.g[g].instance == i;
	}
	return n;
}

static bool
ps_tables(const struct ps *p)
{
	static const char *const ihead[] = { "MCPMUX", "USER",	   "MODE",   "AGE",
					     "RSS",    "SESSIONS", "CLIENT", "COMMAND" };
	static const char *const shead[] = { "SESSION", "MCPMUX", "SERVER",    "TREE",
					     "STATE",	"ENDING", "SUSPENDED", "IDLE",
					     "AGE",	"RSS",	  "COMMAND" };
	static const char *const ohead[] = { "SESSION", "OWNER", "USER", "PID",
					     "TREE",	"AGE",	 "RSS",	 "COMMAND" };
	static const char *const chead[] = { "ENGINE", "CONTAINER", "NAME", "SESSION",
					     "OWNER",  "STATE",	    "AGE",  "IMAGE" };
	const struct procscan *s = &p->scan;
	struct table it = { 8, ihead, "rllrrrll", NULL, 0, 0, false };
	struct table st = { 11, shead, "lrrrllllrrl", NULL, 0, 0, false };
	struct table ot = { 8, ohead, "lllrrrrl", NULL, 0, 0, false };
	struct table ct = { 8, chead, "llllllrl", NULL, 0, 0, false };
	char a[32], b[32], c[32], d[32], e[32], f[32], user[64], client[160], cmd[512];

	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *pr = &s->v[i];

		if (pr->mode == PROCSCAN_NONE) {
			continue;
		}
		(void)snprintf(a, sizeof(a), "%d", (int)pr->pid);
		fmt_age(procscan_age(s, i), b, sizeof(b));
		fmt_kib(pr->rss_kib, c, sizeof(c));
		(void)snprintf(d, sizeof(d), "%zu", count_sessions(p, i));
		if (pr->parent != SIZE_MAX) {
			char line[128];

			proc_command(&s->v[pr->parent], 0, line, sizeof(line));
			(void)snprintf(client, sizeof(client), "%d %.40s%s", (int)pr->ppid, line,
				       strlen(line) > 40 ? "..." : "");
		} else {
			(void)snprintf(client, sizeof(client), "%d", (int)pr->ppid);
		}
		if (pr->cmd_at != SIZE_MAX) {
			proc_command(pr, pr->cmd_at, cmd, sizeof(cmd));
		} else {
			(void)snprintf(cmd, sizeof(cmd), "-");
		}
		const char *row[] = { a,
				      user_name(pr->uid, user, sizeof(user)),
				      mode_name(pr->mode),
				      b,
				      c,
				      d,
				      client,
				      cmd };

		table_row(&it, row);
	}
	for (size_t g = 0; g < s->n_groups; g++) {
		const struct procscan_group *x = &s->g[g];
		const struct procscan_proc *top = &s->v[x->top];

		if (!session_selected(&p->o, x->session) || x->owner_state == PROCSCAN_UNKNOWN) {
			continue;
		}
		fmt_age(procscan_age(s, x->top), b, sizeof(b));
		fmt_kib(x->rss_kib, c, sizeof(c));
		(void)snprintf(d, sizeof(d), "%zu", x->n_tree);
		(void)snprintf(e, sizeof(e), "%d", (int)top->pid);
		proc_command(top, 0, cmd, sizeof(cmd));
		if (x->owner_state == PROCSCAN_LIVE) {
			(void)snprintf(a, sizeof(a), "%d", (int)s->v[x->instance].pid);
			(void)snprintf(f, sizeof(f), "%s", x->has_server ? e : "-");
			const char *row[] = { x->session, a,   f,   d, proc_state_name(top->state),
					      "-",	  "-", "-", b, c,
					      cmd };

			table_row(&st, row);
		} else {
			char owner[PROCSCAN_OWNER_MAX + 16];

			(void)snprintf(owner, sizeof(owner), "%s",
				       x->owner[0] != '\0' ? x->owner : "(older mcpmux)");
			const char *row[] = {
				x->session, owner, user_name(x->uid, user, sizeof(user)), e, d, b,
				c,	    cmd
			};

			table_row(&ot, row);
		}
	}
	for (size_t en = 0; en < 2; en++) {
		for (size_t k = 0; k < p->engines[en].n; k++) {
			const struct container_info *ci = &p->engines[en].v[k];
			int err;

			if (!session_selected(&p->o, ci->session)) {
				continue;
			}
			(void)snprintf(a, sizeof(a), "%.12s", ci->id);
			(void)snprintf(cmd, sizeof(cmd), "%s (%s)", ci->owner,
				       ctr_owner_name(container_owner(p, ci, &err)));
			fmt_age(container_age(ci), b, sizeof(b));
			const char *row[] = { container_engine_name(ci->engine),
					      a,
					      ci->name[0] ? ci->name : "-",
					      ci->session[0] ? ci->session : "-",
					      cmd,
					      ci->state,
					      b,
					      ci->image[0] ? ci->image : "-" };

			table_row(&ct, row);
		}
	}
	bool failed = it.failed || st.failed || ot.failed || ct.failed;

	if (!failed) {
		const struct table *order[] = { &it, &st, &ot, &ct };
		bool any = false;
		static const char *const title[] = { NULL, NULL, "orphans (their mcpmux is gone):",
						     "containers:" };

		for (size_t k = 0; k < 4; k++) {
			if (order[k]->nrows == 0) {
				continue;
			}
			if (any) {
				fputs("\n", stdout);
			}
			if (title[k] != NULL) {
				printf("%s\n", title[k]);
			}
			table_print(order[k]);
			any = true;
		}
		if (!any) {
			printf("no mcpmux instance, and no orphan\n");
		}
	}
	table_release(&it);
	table_release(&st);
	table_release(&ot);
	table_release(&ct);
	if (failed) {
		diag_error("out of memory");
	}
	return !failed;
}

/* ---- options ---- */

static int
parse_ms(const char *opt, const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !(v >= 0) || v > 1e9) {
		return diag_error("invalid value '%s' for %s (expected a number of milliseconds "
				  ">= 0)",
				  s, opt);
	}
	*out = v;
	return 0;
}

static void
ps_usage(bool sweep)
{
	if (sweep) {
		fputs("usage: mcpmux sweep [--dry-run] [--older-than DURATION] [--session PATTERN]\n"
		      "                    [--term-grace MS] [--kill-deadline MS] [-q]\n"
		      "\n"
		      "End the orphans: processes with MCPMUX_SESSION whose mcpmux is gone, and\n"
		      "containers labelled mcpmux.owner whose mcpmux is gone.  Processes get\n"
		      "SIGTERM (and SIGCONT), then SIGKILL after --term-grace (2000); containers\n"
		      "`kill --signal TERM`, then KILL, then `rm -f`.  Only this user's processes\n"
		      "carrying the cookie are touched.\n"
		      "\n"
		      "  --dry-run             list what would be ended, end nothing\n"
		      "  --older-than D        only orphans started more than D ago (90s, 10m, 2h, 1d)\n"
		      "  --session PATTERN     only sessions whose ID matches PATTERN (glob)\n"
		      "  --term-grace MS       after SIGTERM, wait this long before SIGKILL (2000)\n"
		      "  --kill-deadline MS    after SIGKILL, give up on a process after MS (5000)\n"
		      "  -q                    no notes about container engines\n"
		      "Exit status: 0, or 1 when something could not be ended.\n",
		      stdout);
	} else {
		fputs("usage: mcpmux ps [--json] [--session PATTERN] [-q]\n"
		      "\n"
		      "The running mcpmux instances of this user (of every user for root), their\n"
		      "sessions, the orphans of instances that are gone, and the containers\n"
		      "labelled by mcpmux.  From /proc and the container engines' listings.\n"
		      "\n"
		      "  --json                one JSON object (docs/ps.md describes it)\n"
		      "  --session PATTERN     only sessions whose ID matches PATTERN (glob)\n"
		      "  -q                    no notes about container engines\n",
		      stdout);
	}
}

/* 0 to go on, 1 after --help, -1 on a usage error. */
static int
ps_parse(struct ps_opts *o, int argc, char **argv, bool sweep)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "older-than", required_argument, NULL, OPT_OLDER_THAN },
		{ "session", required_argument, NULL, OPT_SESSION },
		{ "term-grace", required_argument, NULL, OPT_TERM_GRACE },
		{ "kill-deadline", required_argument, NULL, OPT_KILL_DEADLINE },
		{ "help", no_argument, NULL, 'h' },
		{ "quiet", no_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sub = sweep ? "sweep" : "ps";
	int c;

	memset(o, 0, sizeof(*o));
	o->term_grace_ms = TERM_GRACE_DEFAULT;
	o->kill_deadline_ms = KILL_DEADLINE_DEFAULT;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", longopts, NULL)) != -1) {
		bool sweep_only = c == OPT_DRY_RUN || c == OPT_OLDER_THAN || c == OPT_TERM_GRACE ||
				  c == OPT_KILL_DEADLINE;

		if ((sweep_only && !sweep) || (c == OPT_JSON && sweep)) {
			return diag_error(
				"option '%s' does not belong to 'mcpmux %s' (see mcpmux %s "
				"--help)",
				argv[optind - 1], sub, sub);
		}
		switch (c) {
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_DRY_RUN:
			o->dry_run = true;
			break;
		case OPT_OLDER_THAN:
			if (procscan_parse_duration(optarg, &o->older_than_s) == -1) {
				return diag_error(
					"invalid duration '%s' for --older-than (a number "
					"with s, m, h or d, such as 90s, 10m or 1d)",
					optarg);
			}
			break;
		case OPT_SESSION:
			o->session = optarg;
			break;
		case OPT_TERM_GRACE:
			if (parse_ms("--term-grace", optarg, &o->term_grace_ms) == -1) {
				return -1;
			}
			break;
		case OPT_KILL_DEADLINE:
			if (parse_ms("--kill-deadline", optarg, &o->kill_deadline_ms) == -1) {
				return -1;
			}
			break;
		case 'h':
			ps_usage(sweep);
			return 1;
		case 'q':
			diag_set_level(DIAG_QUIET);
			break;
		case ':':
			return diag_error("option '%s' needs a value (see mcpmux %s --help)",
					  argv[optind - 1], sub);
		default:
			return diag_error("unknown option '%s' (see mcpmux %s --help)",
					  argv[optind - 1], sub);
		}
	}
	if (optind < argc) {
		return diag_error("unexpected argument '%s' (see mcpmux %s --help)", argv[optind],
				  sub);
	}
	return 0;
}

int
cmd_ps(int argc, char **argv)
{
	struct ps p;
	int rc;

	memset(&p, 0, sizeof(p));
	rc = ps_parse(&p.o, argc, argv, false);
	if (rc != 0) {
		return rc == 1 ? 0 : EXIT_USAGE;
	}
	if (scan(&p) == -1) {
		ps_release(&p);
		return 1;
	}
	list_containers(&p);
	if (p.o.json) {
		rc = ps_json(&p) == 0 ? 0 : 1;
	} else {
		(void)report_unknown(&p, false);
		rc = ps_tables(&p) ? 0 : 1;
	}
	ps_release(&p);
	return rc;
}

/* ---- sweep ---- */

enum escalation {
	ESC_NONE,      /* not signalled yet */
	ESC_GONE,      /* gone before the first signal */
	ESC_TERM,      /* ended after SIGTERM */
	ESC_KILL,      /* SIGKILL was needed */
	ESC_RM,	       /* a container that was not running: removed */
	ESC_FAILED,    /* could not be signalled (removed) */
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
};

struct victims {
	struct victim *v;
	size_t n, cap;
};

/* A selected orphan group's key, to find its carriers again in later scans. */
struct key {
	char session[PROCTREE_COOKIE_MAX + 1];
	char owner[PROCSCAN_OWNER_MAX + 1];
	uid_t uid;
};

static bool
group_selected(const struct ps *p, size_t g)
{
	const struct procscan_group *x = &p->scan.g[g];

	return x->owner_state == PROCSCAN_GONE && x->uid == p->uid &&
	       session_selected(&p->o, x->session) &&
	       (p->o.older_than_s <= 0 || procscan_age(&p->scan, x->top) > p->o.older_than_s);
}

static bool
has_victim(const struct victims *vs, pid_t pid, unsigned long long start)
{
	for (size_t i = 0; i < vs->n; i++) {
		if (vs->v[i].t.pid == pid && vs->v[i].t.start == start) {
			return true;
		}
	}
	return false;
}

/* Add the carriers of group g (not yet victims) to vs.  -1 when memory runs out. */
static int
add_victims(struct victims *vs, const struct ps *p, size_t g)
{
	const struct procscan *s = &p->scan;

	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *c = &s->v[i];

		if (c->group != g || c->uid != p->uid || has_victim(vs, c->pid, c->start)) {
			continue;
		}
		if (c->is_self_line) {
			diag_warn("pid %d (session '%s') is an ancestor of this sweep: left alone",
				  (int)c->pid, c->session);
			continue;
		}
		if (vs->n == vs->cap) {
			size_t cap = vs->cap ? vs->cap * 2 : 16;
			struct victim *nv = realloc(vs->v, cap * sizeof(*nv));

			if (nv == NULL) {
				return -1;
			}
			vs->v = nv;
			vs->cap = cap;
		}
		struct victim *v = &vs->v[vs->n++];

		memset(v, 0, sizeof(*v));
		procscan_target_init(&v->t, c->pid, c->start);
		(void)snprintf(v->session, sizeof(v->session), "%s", c->session);
		(void)snprintf(v->owner, sizeof(v->owner), "%s", c->owner);
		v->uid = c->uid;
		proc_command(c, 0, v->command, sizeof(v->command));
	}
	return 0;
}

static void
signal_victim(struct victim *v, int sig)
{
	if (v->t.is_gone || v->esc == ESC_FAILED) {
		return;
	}
	int rc = procscan_signal(PROC_ROOT, &v->t, sig);

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
			left += procscan_wait(PROC_ROOT, &vs->v[i].t, 1, deadline);
		}
		return left;
	}
	for (size_t i = 0; i < vs->n; i++) {
		t[i] = vs->v[i].t;
		if (vs->v[i].esc == ESC_FAILED) {
			t[i].is_gone = true; /* not ours to wait for */
		}
	}
	left = procscan_wait(PROC_ROOT, t, vs->n, deadline);
	for (size_t i = 0; i < vs->n; i++) {
		vs->v[i].t.is_gone = vs->v[i].esc == ESC_FAILED ? vs->v[i].t.is_gone : t[i].is_gone;
		vs->v[i].t.state = t[i].state;
	}
	free(t);
	return left;
}

/* Re-scan and add the selected groups' carriers that appeared since (forked). */
static int
rescan(struct ps *p, const struct key *keys, size_t n_keys, struct victims *vs)
{
	if (procscan_read(&p->scan, PROC_ROOT, p->uid, false, getpid()) == -1) {
		return -1;
	}
	for (size_t k = 0; k < n_keys; k++) {
		size_t g = procscan_find_orphans(&p->scan, keys[k].owner, keys[k].session,
						 keys[k].uid);

		if (g != SIZE_MAX && add_victims(vs, p, g) == -1) {
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
		n += !vs->v[i].t.is_gone && vs->v[i].esc != ESC_FAILED;
	}
	return n;
}

/* The process ladder: SIGTERM + SIGCONT, grace, SIGKILL rounds until gone or deadline. */
static void
end_processes(struct ps *p, const struct key *keys, size_t n_keys, struct victims *vs)
{
	for (size_t i = 0; i < vs->n; i++) {
		signal_victim(&vs->v[i], SIGTERM);
	}
	(void)wait_victims(vs, procscan_now_ms() + (long long)p->o.term_grace_ms);
	long long deadline = procscan_now_ms() + (long long)p->o.kill_deadline_ms;

	/* Anything forked during the grace is found by the re-scan and killed with the rest. */
	for (;;) {
		if (rescan(p, keys, n_keys, vs) == -1) {
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
		if (!vs->v[i].t.is_gone && vs->v[i].esc != ESC_FAILED) {
			vs->v[i].esc = ESC_ABANDONED;
		}
	}
}

/* A selected container and how its ladder went. */
struct cvictim {
	const struct container_info *c;
	enum escalation esc;
	bool is_gone, is_running;
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
helper(struct cvictim *cv, char **argv, struct run_result *r, bool *gone)
{
	*gone = false;
	if (argv == NULL) {
		(void)snprintf(cv->error, sizeof(cv->error), "%s", strerror(errno));
		memset(r, 0, sizeof(*r));
		return false;
	}
	int rc = run_capture(argv, ENGINE_TIMEOUT_MS, r);

	free(argv);
	if (rc == 0 && run_ok(r)) {
		return true;
	}
	if (rc == 0 && container_gone_message(r->err.buf != NULL ? r->err.buf : "", r->err.len)) {
		*gone = true;
		return true;
	}
	run_failure(r, cv->error, sizeof(cv->error));
	return false;
}

/* Read a container's state: updates is_running / is_gone. */
static void
inspect(struct cvictim *cv)
{
	struct run_result r;
	bool gone;

	if (cv->is_gone) {
		return;
	}
	if (helper(cv, container_inspect_argv(prefix_of(cv->c->engine), 1, cv->c->id), &r, &gone)) {
		char state[64];

		cv->is_gone = gone;
		if (gone && cv->esc == ESC_RM) {
			cv->esc = ESC_GONE; /* it went by itself (--rm) */
		}
		first_line(r.out.buf != NULL ? r.out.buf : "", r.out.len, state, sizeof(state));
		cv->is_running = !gone && container_running(state);
	}
	run_release(&r);
}

static void
kill_container(struct cvictim *cv, const char *sig)
{
	struct run_result r;
	bool gone;

	if (cv->is_gone || !cv->is_running) {
		return;
	}
	if (helper(cv, container_kill_argv(prefix_of(cv->c->engine), 1, sig, cv->c->id), &r,
		   &gone)) {
		cv->is_gone = gone;
		cv->esc = strcmp(sig, "KILL") == 0 ? ESC_KILL : ESC_TERM;
	}
	run_release(&r);
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
end_containers(const struct ps *p, struct cvictim *cv, size_t n)
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
		struct run_result r;
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
		if (!helper(&cv[i], container_rm_argv(prefix_of(cv[i].c->engine), 1, cv[i].c->id),
			    &r, &gone)) {
			cv[i].esc = ESC_FAILED;
		}
		run_release(&r);
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
sweep_report(const struct ps *p, const struct victims *vs, const struct cvictim *cv, size_t ncv)
{
	static const char *const phead[] = { "PID", "SESSION", "OWNER", "ESCALATION", "COMMAND" };
	static const char *const chead[] = { "ENGINE", "CONTAINER",  "SESSION",
					     "OWNER",  "ESCALATION", "NAME" };
	struct table pt = { 5, phead, "rllll", NULL, 0, 0, false };
	struct table ct = { 6, chead, "llllll", NULL, 0, 0, false };
	size_t p_ended = 0, p_failed = 0, c_ended = 0, c_failed = 0;
	char pid[32], id[32], why[128];

	for (size_t i = 0; i < vs->n; i++) {
		const struct victim *v = &vs->v[i];

		(void)snprintf(pid, sizeof(pid), "%d", (int)v->t.pid);
		const char *row[] = { pid, v->session, v->owner[0] ? v->owner : "-",
				      p->o.dry_run ? "-" : esc_name[v->esc], v->command };

		table_row(&pt, row);
		if (v->esc == ESC_FAILED) {
			diag_error("cannot signal pid %d (session '%s', '%s'): %s", (int)v->t.pid,
				   v->session, v->command, strerror(v->err));
			p_failed++;
		} else if (v->esc == ESC_ABANDONED) {
			state_words(v->t.state, why, sizeof(why));
			diag_error("pid %d (session '%s', '%s') would not die: still there %.0f ms "
				   "after SIGKILL (%s)",
				   (int)v->t.pid, v->session, v->command, p->o.kill_deadline_ms,
				   why);
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

		table_row(&ct, row);
		if (cv[i].esc == ESC_FAILED || cv[i].esc == ESC_ABANDONED) {
			diag_error("cannot end %s container %.12s (session '%s'): %s",
				   container_engine_name(c->engine), c->id, c->session,
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
		table_print(&pt);
	}
	if (!ct.failed && ct.nrows > 0) {
		if (pt.nrows > 0) {
			fputs("\n", stdout);
		}
		if (p->o.dry_run && pt.nrows == 0) {
			printf("would end:\n");
		}
		table_print(&ct);
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

	table_release(&pt);
	table_release(&ct);
	if (oom) {
		diag_error("out of memory");
		return 1;
	}
	return p_failed + c_failed > 0 ? 1 : 0;
}

int
cmd_sweep(int argc, char **argv)
{
	struct victims vs = { NULL, 0, 0 };
	struct cvictim *cv = NULL;
	struct key *keys = NULL;
	size_t n_keys = 0, ncv = 0;
	struct ps p;
	int rc;

	memset(&p, 0, sizeof(p));
	rc = ps_parse(&p.o, argc, argv, true);
	if (rc != 0) {
		return rc == 1 ? 0 : EXIT_USAGE;
	}
	/* Only this user's processes, even for root: sweep never ends another user's. */
	if (scan(&p) == -1) {
		ps_release(&p);
		return 1;
	}
	bool unknown = report_unknown(&p, true);

	list_containers(&p);
	keys = calloc(p.scan.n_groups ? p.scan.n_groups : 1, sizeof(*keys));
	size_t n_ctr = p.engines[0].n + p.engines[1].n;

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
		rc = add_victims(&vs, &p, g);
	}
	for (size_t e = 0; rc == 0 && e < 2; e++) {
		for (size_t k = 0; k < p.engines[e].n; k++) {
			const struct container_info *c = &p.engines[e].v[k];
			double age = container_age(c);
			int err;

			if (container_owner(&p, c, &err) == CTR_ORPHAN &&
			    session_selected(&p.o, c->session) &&
			    (p.o.older_than_s <= 0 || age > p.o.older_than_s)) {
				cv[ncv++].c = c;
			}
		}
	}
	if (rc == -1) {
		diag_error("out of memory");
		rc = 1;
	} else {
		if (!p.o.dry_run) {
			end_processes(&p, keys, n_keys, &vs);
			end_containers(&p, cv, ncv);
		}
		rc = sweep_report(&p, &vs, cv, ncv);
		rc = rc != 0 || unknown ? 1 : 0;
	}
	for (size_t i = 0; i < vs.n; i++) {
		procscan_target_release(&vs.v[i].t);
	}
	free(vs.v);
	free(keys);
	free(cv);
	ps_release(&p);
	return rc;
}
