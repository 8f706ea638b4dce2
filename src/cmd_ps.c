/*
 * cmd_ps: `mcpmux ps [--json]`: the running mcpmux instances of this user (of every
 * user for root), their sessions, the orphans of instances that are gone, and the
 * containers labelled by mcpmux, as aligned tables or one JSON object (docs/ps.md).
 * Everything comes from survey_read(), /proc and the engines' listings, and from
 * survey_read_status(), what each running instance keeps in its status file (states,
 * idle times, the sessions without a server): no daemon.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpmux/cli.h"
#include "mcpmux/cmd.h"
#include "mcpmux/diag.h"
#include "mcpmux/survey.h"
#include "mcpmux/sys.h"

static const char *
mode_name(enum procscan_mode m)
{
	return m == PROCSCAN_WRAP ? "wrap" : m == PROCSCAN_SERVE ? "serve" : "?";
}

/* ---- ps: JSON ---- */

static void
json_str(struct sbuf *b, const char *s)
{
	sbuf_add_json_string(b, s, strlen(s));
}

/* The words of pr's command line from word from on, all that was read (PROCSCAN_ARGV_MAX). */
static void
json_words(struct sbuf *b, const struct procscan_proc *pr, size_t from)
{
	size_t at = 0, k = 0;

	sbuf_adds(b, "[");
	while (pr->argv != NULL && at < pr->argv_len) {
		const char *w = pr->argv + at;
		size_t len = strnlen(w, pr->argv_len - at);

		if (k >= from) {
			sbuf_adds(b, k > from ? "," : "");
			sbuf_add_json_string(b, w, len);
		}
		k++;
		at += len + 1;
	}
	sbuf_adds(b, "]");
}

/* ,"name":true when pr's command line was longer than what was read, false, or null. */
static void
json_cut(struct sbuf *b, const char *name, const struct procscan_proc *pr)
{
	sbuf_addf(b, ",\"%s\":%s", name, pr == NULL ? "null" : pr->argv_cut ? "true" : "false");
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

/*
 * A session's state: its instance's word, except that a server /proc shows stopped is
 * "stopped" (/proc has the last word on processes); without the instance's word, what
 * /proc shows of its top process.
 */
static const char *
session_state(const struct procscan_proc *top, const struct survey_status *st)
{
	if (top != NULL && (st == NULL || strcmp(st->state, "running") == 0)) {
		return proc_state_name(top->state);
	}
	return st != NULL ? st->state : "running";
}

static void
json_count(struct sbuf *b, const char *name, const struct survey_status *st, unsigned long long n)
{
	if (st != NULL) {
		sbuf_addf(b, ",\"%s\":%llu", name, n);
	} else {
		sbuf_addf(b, ",\"%s\":null", name);
	}
}

static void
json_bool(struct sbuf *b, const char *name, const struct survey_status *st, const char *state)
{
	sbuf_addf(b, ",\"%s\":%s", name,
		  st == NULL			  ? "null"
		  : strcmp(st->state, state) == 0 ? "true"
						  : "false");
}

/*
 * A session of instance i: group g (its processes), what the instance says of it (st),
 * or both.  g is SIZE_MAX for a session without a process (suspended, waiting).
 */
static void
json_session(struct sbuf *b, const struct survey *p, size_t i, size_t g,
	     const struct survey_status *st)
{
	const struct procscan *s = &p->scan;
	const struct procscan_group *x = g != SIZE_MAX ? &s->g[g] : NULL;
	const struct procscan_proc *top = x != NULL ? &s->v[x->top] : NULL;
	const struct procscan_proc *in = &s->v[i];
	const char *session = x != NULL ? x->session : st != NULL ? st->session : "";

	sbuf_adds(b, "{\"session\":");
	json_str(b, session);
	if (x != NULL && x->has_server) {
		sbuf_addf(b, ",\"server_pid\":%d", (int)top->pid);
	} else {
		sbuf_adds(b, ",\"server_pid\":null");
	}
	sbuf_addf(b, ",\"tree\":%zu,\"pids\":", x != NULL ? x->n_tree : 0);
	if (x != NULL) {
		json_pids(b, s, g);
	} else {
		sbuf_adds(b, "[]");
	}
	sbuf_adds(b, ",\"state\":");
	json_str(b, session_state(top, st));
	sbuf_adds(b, ",\"proc_state\":");
	if (top != NULL) {
		json_str(b, proc_state_name(top->state));
	} else {
		sbuf_adds(b, "null");
	}
	json_bool(b, "ending", st, "ending");
	json_bool(b, "suspended", st, "suspended");
	sbuf_adds(b, ",\"idle_s\":");
	json_age(b, st != NULL ? st->idle_s : -1);
	sbuf_adds(b, ",\"age_s\":");
	json_age(b, x != NULL ? procscan_age(s, x->top) : -1);
	sbuf_adds(b, ",\"session_age_s\":");
	json_age(b, st != NULL ? st->age_s : -1);
	json_count(b, "suspends", st, st != NULL ? st->suspends : 0);
	json_count(b, "resumes", st, st != NULL ? st->resumes : 0);
	sbuf_addf(b, ",\"rss_kib\":%llu,\"command\":", x != NULL ? x->rss_kib : 0);
	if (top != NULL) {
		json_words(b, top, 0);
	} else if (in->cmd_at != SIZE_MAX) {
		json_words(b, in, in->cmd_at); /* what a resume would start */
	} else {
		sbuf_adds(b, "null");
	}
	json_cut(b, "command_cut", top != NULL ? top : in->cmd_at != SIZE_MAX ? in : NULL);
	sbuf_adds(b, ",\"containers\":[");
	bool first = true;

	for (size_t e = 0; e < 2; e++) {
		const struct survey_engine *en = &p->engines[e];
		char owner[64];

		(void)snprintf(owner, sizeof(owner), "%d:%llu", (int)in->pid, in->start);
		for (size_t k = 0; k < en->n; k++) {
			if (strcmp(en->v[k].owner, owner) == 0 &&
			    strcmp(en->v[k].session, session) == 0) {
				sbuf_adds(b, first ? "" : ",");
				json_str(b, en->v[k].id);
				first = false;
			}
		}
	}
	sbuf_adds(b, "]}");
}

static void
json_instance(struct sbuf *b, const struct survey *p, size_t i)
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
	json_str(b, survey_user(pr->uid, user, sizeof(user)));
	sbuf_adds(b, ",\"age_s\":");
	json_age(b, procscan_age(s, i));
	sbuf_addf(b, ",\"rss_kib\":%llu,\"argv\":", pr->rss_kib);
	json_words(b, pr, 0);
	json_cut(b, "argv_cut", pr);
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
		json_cut(b, "argv_cut", &s->v[pr->parent]);
	} else {
		sbuf_adds(b, "null");
		json_cut(b, "argv_cut", NULL);
	}
	sbuf_adds(b, ",\"comm\":");
	if (pr->parent != SIZE_MAX) {
		json_str(b, s->v[pr->parent].comm);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_adds(b, "},\"sessions\":[");
	for (size_t g = 0; g < s->n_groups; g++) {
		if (s->g[g].instance == i && survey_session_selected(&p->o, s->g[g].session)) {
			sbuf_adds(b, first ? "" : ",");
			json_session(b, p, i, g, survey_group_status(p, g));
			first = false;
		}
	}
	for (size_t k = 0; k < p->n_st; k++) {
		const struct survey_status *st = &p->st[k];

		if (st->instance == i && st->group == SIZE_MAX &&
		    survey_session_selected(&p->o, st->session)) {
			sbuf_adds(b, first ? "" : ",");
			json_session(b, p, i, SIZE_MAX, st);
			first = false;
		}
	}
	sbuf_adds(b, "]}");
}

/*
 * The end of an orphan's object, after its "state" key: its top process's state, age and
 * command, and rss_kib.
 */
static void
json_orphan_end(struct sbuf *b, const struct procscan *s, size_t top_i, unsigned long long rss)
{
	const struct procscan_proc *top = &s->v[top_i];

	json_str(b, proc_state_name(top->state));
	sbuf_adds(b, ",\"age_s\":");
	json_age(b, procscan_age(s, top_i));
	sbuf_addf(b, ",\"rss_kib\":%llu,\"command\":", rss);
	json_words(b, top, 0);
	json_cut(b, "command_cut", top);
	sbuf_adds(b, "}");
}

static void
json_orphan(struct sbuf *b, const struct survey *p, size_t g)
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
	json_str(b, survey_user(x->uid, user, sizeof(user)));
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
	json_orphan_end(b, s, x->top, x->rss_kib);
}

/* A session of a dead instance's cgroup: what its processes (p->cgp) add up to. */
struct cg_group {
	size_t first; /* its first entry in p->cgp */
	size_t top;   /* its oldest process, in scan.v */
	size_t n;
	unsigned long long rss_kib;
};

static bool
cg_same(const struct survey *p, size_t i, size_t j)
{
	return p->cgp[i].cg == p->cgp[j].cg && strcmp(p->cgp[i].session, p->cgp[j].session) == 0;
}

/* Is p->cgp[i] the first of its session, a selected one?  Then its sums, into *o. */
static bool
cg_group_at(const struct survey *p, size_t i, struct cg_group *o)
{
	const struct procscan *s = &p->scan;

	/* p->cgp is sorted by cgroup, then session: each session's processes are together. */
	if (!survey_session_selected(&p->o, p->cgp[i].session) || (i > 0 && cg_same(p, i, i - 1))) {
		return false;
	}
	memset(o, 0, sizeof(*o));
	o->first = i;
	o->top = p->cgp[i].proc;
	for (size_t j = i; j < p->n_cgp && cg_same(p, i, j); j++) {
		size_t k = p->cgp[j].proc;

		o->n++;
		o->rss_kib += s->v[k].rss_kib;
		if (s->v[k].start < s->v[o->top].start) {
			o->top = k;
		}
	}
	return true;
}

/* Its owner as shown: the instance's MCPMUX_OWNER, else its cgroup's name. */
static const char *
cg_owner(const struct survey *p, size_t i)
{
	const struct survey_cgroup *c = &p->cg[p->cgp[i].cg];

	return c->owner[0] != '\0' ? c->owner : strrchr(c->dir, '/') + 1;
}

static void
json_cg_orphan(struct sbuf *b, const struct survey *p, const struct cg_group *x)
{
	const struct procscan *s = &p->scan;
	const struct survey_cgproc *c = &p->cgp[x->first];
	const struct procscan_proc *top = &s->v[x->top];
	char user[64];
	bool first = true;

	sbuf_adds(b, "{\"session\":");
	if (c->session[0] != '\0') {
		json_str(b, c->session);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_adds(b, ",\"owner\":");
	if (p->cg[c->cg].owner[0] != '\0') {
		json_str(b, p->cg[c->cg].owner);
	} else {
		sbuf_adds(b, "null");
	}
	sbuf_adds(b, ",\"cgroup\":");
	json_str(b, p->cg[c->cg].dir);
	sbuf_addf(b, ",\"uid\":%u,\"user\":", (unsigned)top->uid);
	json_str(b, survey_user(top->uid, user, sizeof(user)));
	sbuf_addf(b, ",\"pid\":%d,\"carriers\":[],\"tree\":%zu,\"pids\":[", (int)top->pid, x->n);
	for (size_t j = x->first; j < p->n_cgp; j++) {
		if (cg_same(p, x->first, j)) {
			sbuf_addf(b, "%s%d", first ? "" : ",", (int)s->v[p->cgp[j].proc].pid);
			first = false;
		}
	}
	sbuf_adds(b, "],\"state\":");
	json_orphan_end(b, s, x->top, x->rss_kib);
}

static void
json_container(struct sbuf *b, const struct survey *p, const struct container_info *c)
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
	json_str(b, survey_owner_name(survey_container_owner(p, c, &err)));
	sbuf_adds(b, ",\"state\":");
	json_str(b, c->state);
	sbuf_adds(b, ",\"age_s\":");
	json_age(b, survey_container_age(c));
	sbuf_adds(b, "}");
}

static int
ps_json(const struct survey *p)
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
		    survey_session_selected(&p->o, s->g[g].session)) {
			sbuf_adds(&b, first ? "" : ",");
			json_orphan(&b, p, g);
			first = false;
		}
	}
	for (size_t i = 0; i < p->n_cgp; i++) {
		struct cg_group x;

		if (cg_group_at(p, i, &x)) {
			sbuf_adds(&b, first ? "" : ",");
			json_cg_orphan(&b, p, &x);
			first = false;
		}
	}
	sbuf_adds(&b, "],\"unknown\":[");
	first = true;
	for (size_t g = 0; g < s->n_groups; g++) {
		const struct procscan_group *x = &s->g[g];

		if (x->owner_state == PROCSCAN_UNKNOWN &&
		    survey_session_selected(&p->o, x->session)) {
			sbuf_adds(&b, first ? "{\"session\":" : ",{\"session\":");
			json_str(&b, x->session);
			sbuf_adds(&b, ",\"owner\":");
			if (!x->owner_cut) {
				json_str(&b, x->owner);
			} else {
				sbuf_adds(&b, "null"); /* too long to be kept */
			}
			sbuf_addf(&b, ",\"pid\":%d,\"error\":", (int)s->v[x->top].pid);
			json_str(&b, procscan_unknown_why(x));
			sbuf_adds(&b, "}");
			first = false;
		}
	}
	sbuf_adds(&b, "],\"containers\":[");
	first = true;
	for (size_t e = 0; e < 2; e++) {
		for (size_t k = 0; k < p->engines[e].n; k++) {
			if (survey_session_selected(&p->o, p->engines[e].v[k].session)) {
				sbuf_adds(&b, first ? "" : ",");
				json_container(&b, p, &p->engines[e].v[k]);
				first = false;
			}
		}
	}
	sbuf_adds(&b, "],\"engines\":[");
	first = true;
	for (size_t e = 0; e < 2; e++) {
		const struct survey_engine *en = &p->engines[e];

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
	int rc = sys_write_fd(STDOUT_FILENO, b.buf, b.len);

	sbuf_release(&b);
	return rc == -1 ? diag_error_errno("cannot write to stdout") : 0;
}

/* ---- ps: tables ---- */

static size_t
count_sessions(const struct survey *p, size_t i)
{
	size_t n = 0;

	for (size_t g = 0; g < p->scan.n_groups; g++) {
		n += p->scan.g[g].instance == i;
	}
	for (size_t k = 0; k < p->n_st; k++) {
		n += p->st[k].instance == i && p->st[k].group == SIZE_MAX;
	}
	return n;
}

/* A row of the sessions' table: see json_session(). */
static void
session_row(struct survey_table *t, const struct survey *p, size_t i, size_t g,
	    const struct survey_status *st)
{
	const struct procscan *s = &p->scan;
	const struct procscan_group *x = g != SIZE_MAX ? &s->g[g] : NULL;
	const struct procscan_proc *top = x != NULL ? &s->v[x->top] : NULL;
	const struct procscan_proc *in = &s->v[i];
	char mcpmux[32], server[32], tree[32], idle[32], age[32], sr[64], rss[32], cmd[512];

	(void)snprintf(mcpmux, sizeof(mcpmux), "%d", (int)in->pid);
	if (x != NULL && x->has_server) {
		(void)snprintf(server, sizeof(server), "%d", (int)top->pid);
	} else {
		(void)snprintf(server, sizeof(server), "-");
	}
	(void)snprintf(tree, sizeof(tree), "%zu", x != NULL ? x->n_tree : 0);
	survey_fmt_age(st != NULL ? st->idle_s : -1, idle, sizeof(idle));
	/* The session's age when its instance tells, else its server's. */
	survey_fmt_age(st != NULL  ? st->age_s
		       : x != NULL ? procscan_age(s, x->top)
				   : -1,
		       age, sizeof(age));
	if (st != NULL) {
		(void)snprintf(sr, sizeof(sr), "%llu/%llu", st->suspends, st->resumes);
	} else {
		(void)snprintf(sr, sizeof(sr), "-");
	}
	survey_fmt_kib(x != NULL ? x->rss_kib : 0, rss, sizeof(rss));
	if (top != NULL) {
		survey_command(top, 0, cmd, sizeof(cmd));
	} else if (in->cmd_at != SIZE_MAX) {
		survey_command(in, in->cmd_at, cmd, sizeof(cmd));
	} else {
		(void)snprintf(cmd, sizeof(cmd), "-");
	}
	const char *row[] = { x != NULL	   ? x->session
			      : st != NULL ? st->session
					   : "-",
			      mcpmux,
			      server,
			      tree,
			      session_state(top, st),
			      idle,
			      age,
			      sr,
			      rss,
			      cmd };

	survey_table_row(t, row);
}

static bool
ps_tables(const struct survey *p)
{
	static const char *const ihead[] = { "MCPMUX", "USER",	   "MODE",   "AGE",
					     "RSS",    "SESSIONS", "CLIENT", "COMMAND" };
	static const char *const shead[] = { "SESSION", "MCPMUX", "SERVER",   "TREE", "STATE",
					     "IDLE",	"AGE",	  "SUSP/RES", "RSS",  "COMMAND" };
	static const char *const ohead[] = { "SESSION", "OWNER", "USER", "PID",
					     "TREE",	"AGE",	 "RSS",	 "COMMAND" };
	static const char *const chead[] = { "ENGINE", "CONTAINER", "NAME", "SESSION",
					     "OWNER",  "STATE",	    "AGE",  "IMAGE" };
	const struct procscan *s = &p->scan;
	struct survey_table it = { 8, ihead, "rllrrrll", NULL, 0, 0, false };
	struct survey_table st = { 10, shead, "lrrrlrrrrl", NULL, 0, 0, false };
	struct survey_table ot = { 8, ohead, "lllrrrrl", NULL, 0, 0, false };
	struct survey_table ct = { 8, chead, "llllllrl", NULL, 0, 0, false };
	char a[32], b[32], c[32], d[32], e[32], user[64], client[160], cmd[512];

	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *pr = &s->v[i];

		if (pr->mode == PROCSCAN_NONE) {
			continue;
		}
		(void)snprintf(a, sizeof(a), "%d", (int)pr->pid);
		survey_fmt_age(procscan_age(s, i), b, sizeof(b));
		survey_fmt_kib(pr->rss_kib, c, sizeof(c));
		(void)snprintf(d, sizeof(d), "%zu", count_sessions(p, i));
		if (pr->parent != SIZE_MAX) {
			char line[44]; /* 40 bytes, or fewer and "..." */

			survey_command(&s->v[pr->parent], 0, line, sizeof(line));
			(void)snprintf(client, sizeof(client), "%d %s", (int)pr->ppid, line);
		} else {
			(void)snprintf(client, sizeof(client), "%d", (int)pr->ppid);
		}
		if (pr->cmd_at != SIZE_MAX) {
			survey_command(pr, pr->cmd_at, cmd, sizeof(cmd));
		} else {
			(void)snprintf(cmd, sizeof(cmd), "-");
		}
		const char *row[] = { a,
				      survey_user(pr->uid, user, sizeof(user)),
				      mode_name(pr->mode),
				      b,
				      c,
				      d,
				      client,
				      cmd };

		survey_table_row(&it, row);
	}
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].mode == PROCSCAN_NONE) {
			continue;
		}
		for (size_t g = 0; g < s->n_groups; g++) {
			if (s->g[g].instance == i && s->g[g].owner_state == PROCSCAN_LIVE &&
			    survey_session_selected(&p->o, s->g[g].session)) {
				session_row(&st, p, i, g, survey_group_status(p, g));
			}
		}
		for (size_t k = 0; k < p->n_st; k++) {
			if (p->st[k].instance == i && p->st[k].group == SIZE_MAX &&
			    survey_session_selected(&p->o, p->st[k].session)) {
				session_row(&st, p, i, SIZE_MAX, &p->st[k]);
			}
		}
	}
	for (size_t g = 0; g < s->n_groups; g++) {
		const struct procscan_group *x = &s->g[g];
		const struct procscan_proc *top = &s->v[x->top];
		char owner[PROCSCAN_OWNER_MAX + 16];

		if (!survey_session_selected(&p->o, x->session) ||
		    x->owner_state != PROCSCAN_GONE) {
			continue;
		}
		survey_fmt_age(procscan_age(s, x->top), b, sizeof(b));
		survey_fmt_kib(x->rss_kib, c, sizeof(c));
		(void)snprintf(d, sizeof(d), "%zu", x->n_tree);
		(void)snprintf(e, sizeof(e), "%d", (int)top->pid);
		survey_command(top, 0, cmd, sizeof(cmd));
		(void)snprintf(owner, sizeof(owner), "%s",
			       x->owner[0] != '\0' ? x->owner : "(older mcpmux)");
		const char *row[] = { x->session, owner, survey_user(x->uid, user, sizeof(user)),
				      e,	  d,	 b,
				      c,	  cmd };

		survey_table_row(&ot, row);
	}
	for (size_t i = 0; i < p->n_cgp; i++) {
		struct cg_group x;

		if (!cg_group_at(p, i, &x)) {
			continue;
		}
		const struct procscan_proc *top = &s->v[x.top];

		survey_fmt_age(procscan_age(s, x.top), b, sizeof(b));
		survey_fmt_kib(x.rss_kib, c, sizeof(c));
		(void)snprintf(d, sizeof(d), "%zu", x.n);
		(void)snprintf(e, sizeof(e), "%d", (int)top->pid);
		survey_command(top, 0, cmd, sizeof(cmd));
		const char *row[] = { p->cgp[i].session[0] ? p->cgp[i].session : "-",
				      cg_owner(p, i),
				      survey_user(top->uid, user, sizeof(user)),
				      e,
				      d,
				      b,
				      c,
				      cmd };

		survey_table_row(&ot, row);
	}
	for (size_t en = 0; en < 2; en++) {
		for (size_t k = 0; k < p->engines[en].n; k++) {
			const struct container_info *ci = &p->engines[en].v[k];
			int err;

			if (!survey_session_selected(&p->o, ci->session)) {
				continue;
			}
			(void)snprintf(a, sizeof(a), "%.12s", ci->id);
			(void)snprintf(cmd, sizeof(cmd), "%s (%s)", ci->owner,
				       survey_owner_name(survey_container_owner(p, ci, &err)));
			survey_fmt_age(survey_container_age(ci), b, sizeof(b));
			const char *row[] = { container_engine_name(ci->engine),
					      a,
					      ci->name[0] ? ci->name : "-",
					      ci->session[0] ? ci->session : "-",
					      cmd,
					      ci->state,
					      b,
					      ci->image[0] ? ci->image : "-" };

			survey_table_row(&ct, row);
		}
	}
	bool failed = it.failed || st.failed || ot.failed || ct.failed;

	if (!failed) {
		const struct survey_table *order[] = { &it, &st, &ot, &ct };
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
			survey_table_print(order[k]);
			any = true;
		}
		if (!any) {
			printf("no mcpmux instance, and no orphan\n");
		}
	}
	survey_table_release(&it);
	survey_table_release(&st);
	survey_table_release(&ot);
	survey_table_release(&ct);
	if (failed) {
		diag_error("out of memory");
	}
	return !failed;
}

int
cmd_ps(int argc, char **argv)
{
	struct survey p;
	int rc;

	memset(&p, 0, sizeof(p));
	/* Its output waits for room in a full non-blocking stdout, as config's does. */
	(void)sys_stdout_waits();
	rc = survey_parse(&p.o, argc, argv, false);
	if (rc != 0) {
		return rc == 1 ? 0 : EXIT_USAGE;
	}
	if (survey_read(&p) == -1 || survey_read_status(&p) == -1 ||
	    survey_read_cgroups(&p) == -1) {
		survey_release(&p);
		return 1;
	}
	if (p.o.json) {
		rc = ps_json(&p) == 0 ? 0 : 1;
	} else {
		(void)survey_report_unknown(&p, false);
		rc = ps_tables(&p) ? 0 : 1;
		if (fflush(stdout) == EOF || ferror(stdout)) {
			(void)diag_error_errno("cannot write to stdout");
			rc = 1;
		}
	}
	survey_release(&p);
	return rc;
}
