/*
 * survey: the look at the machine that `mcpmux ps` and `mcpmux sweep` share: their
 * options, the /proc scan and the container engines' listings, the running instances'
 * status files, the engine command runner, and the tables they print.  See survey.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>

#include "mcpmux/cli.h"
#include "mcpmux/diag.h"
#include "mcpmux/httpmsg.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/session.h"
#include "mcpmux/survey.h"
#include "mcpmux/sys.h"

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

/* ---- small helpers ---- */

void
survey_release(struct survey *p)
{
	procscan_release(&p->scan);
	for (size_t e = 0; e < 2; e++) {
		free(p->engines[e].v);
	}
	free(p->st);
	free(p->group_st);
	for (size_t k = 0; k < p->n_cg; k++) {
		free(p->cg[k].leaf);
		free(p->cg[k].below);
	}
	free(p->cg);
	free(p->cgp);
	free(p->cg_left);
	p->cg_left = NULL;
	p->n_cg_left = p->cap_cg_left = 0;
	for (size_t k = 0; k < p->n_rec; k++) {
		free(p->rec[k].v);
		free(p->rec[k].text);
	}
	free(p->rec);
	p->rec = NULL;
	p->n_rec = 0;
	for (size_t k = 0; k < p->n_silent; k++) {
		free(p->silent[k].key);
	}
	free(p->silent);
	p->silent = NULL;
	p->n_silent = 0;
	p->cg = NULL;
	p->cgp = NULL;
	p->n_cg = p->n_cgp = p->cap_cgp = 0;
	p->st = NULL;
	p->group_st = NULL;
	p->n_st = p->cap_st = 0;
}

/* The first line of text, without control characters, into out. */
void
survey_first_line(const char *text, size_t len, char *out, size_t cap)
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

/*
 * The first character of s (len bytes, len > 0) as a table or a message shows it: its
 * bytes when it is UTF-8 and no control character, else "?" (a control character, C0,
 * DEL or C1, U+0080 to U+009F, which a terminal may take for the start of an escape
 * sequence; a byte that is not UTF-8).  *n: the bytes of s it takes; the bytes shown,
 * never more than *n.
 */
static size_t
printable_char(const char *s, size_t len, size_t *n)
{
	const unsigned char *u = (const unsigned char *)s;

	*n = 1;
	if (u[0] < 0x20 || u[0] == 0x7f) {
		return 0;
	}
	if (u[0] < 0x80) {
		return 1;
	}
	size_t k = rpcout_utf8_len(u, len);

	if (k == 0) {
		return 0;
	}
	*n = k;
	return u[0] == 0xc2 && u[1] < 0xa0 ? 0 : k; /* C1 */
}

/*
 * Copy s into out[*k..cap - 1) as printable_char() shows it, a character whole or not at
 * all.  false when s did not fit.
 */
static bool
printable_add(const char *s, char *out, size_t *k, size_t cap)
{
	size_t len = strlen(s);

	while (len > 0) {
		size_t n, shown = printable_char(s, len, &n);

		if (*k + SYS_MAX(shown, (size_t)1) >= cap) {
			return false;
		}
		if (shown == 0) {
			out[(*k)++] = '?';
		} else {
			memmove(out + *k, s, shown);
			*k += shown;
		}
		s += n;
		len -= n;
	}
	return true;
}

/*
 * Words [from, n) of a command line joined by spaces, as printable_add() shows them.  What
 * does not fit, or more words (cut: there were some after n), ends in "...", so that a
 * cut line is not taken for the whole.
 */
static void
join_words(const char *const *w, size_t from, size_t n, bool cut, char *out, size_t cap)
{
	size_t k = 0;
	bool full = false;

	for (size_t i = from; i < n && !full; i++) {
		if (i > from && k + 1 < cap) {
			out[k++] = ' ';
		} else if (i > from) {
			full = true;
			break;
		}
		full = !printable_add(w[i], out, &k, cap);
	}
	if ((cut || full) && cap > 4) {
		/*
		 * Back to the start of a character with room for the "...", when what is
		 * written leaves none (out[k] past what it wrote is not looked at).
		 */
		if (k > cap - 4) {
			k = cap - 4;
			while (k > 0 && ((unsigned char)out[k] & 0xc0) == 0x80) {
				k--;
			}
		}
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
}

const char *
survey_printable(const char *s, char *out, size_t cap)
{
	join_words(&s, 0, 1, false, out, cap);
	return out;
}

/* A process's command line for a table: its words, or [comm] when unknown. */
void
survey_command(const struct procscan_proc *pr, size_t from, char *out, size_t cap)
{
	const char *w[64];
	size_t all = procscan_words(pr, w, 64), n = SYS_MIN(all, (size_t)64);

	/* cppcheck-suppress knownConditionTrueFalse ; it takes procscan_words() to return 0 */
	if (from < n) {
		join_words(w, from, n, all > n, out, cap);
	} else {
		(void)snprintf(out, cap, "[%s]", pr->comm); /* no command line: a kernel thread */
	}
}

void
survey_fmt_age(double s, char *out, size_t cap)
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

void
survey_fmt_kib(unsigned long long kib, char *out, size_t cap)
{
	if (kib < 1024) {
		(void)snprintf(out, cap, "%lluK", kib);
	} else if (kib < 1024 * 1024) {
		(void)snprintf(out, cap, "%.1fM", (double)kib / 1024);
	} else {
		(void)snprintf(out, cap, "%.1fG", (double)kib / (1024 * 1024));
	}
}

const char *
survey_user(uid_t uid, char *buf, size_t cap)
{
	const struct passwd *pw = getpwuid(uid);

	if (pw != NULL) {
		(void)snprintf(buf, cap, "%s", pw->pw_name);
	} else {
		(void)snprintf(buf, cap, "%u", (unsigned)uid);
	}
	return buf;
}

/* ---- an aligned table ---- */

void
survey_table_row(struct survey_table *t, const char *const *cols)
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
		char *cell = strdup(cols[c] != NULL ? cols[c] : "-");

		/*
		 * Control characters and bytes that are not UTF-8 as '?' (in place: what is shown
		 * is never longer): a cell may be any process's session ID or owner.
		 */
		if (cell != NULL) {
			size_t k = 0;

			(void)printable_add(cell, cell, &k, strlen(cell) + 1);
			cell[k] = '\0';
		}
		t->cells[t->nrows * t->ncol + c] = cell;
		t->failed = t->failed || cell == NULL;
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
table_print_row(const struct survey_table *t, const char *const *cols, const size_t *width)
{
	for (size_t c = 0; c < t->ncol; c++) {
		size_t pad = width[c] - text_width(cols[c]);
		bool last = c + 1 == t->ncol;

		if (t->align[c] == 'r') {
			printf("%*s%s", (int)pad, "", cols[c]);
		} else {
			printf("%s%*s", cols[c], last ? 0 : (int)pad, "");
		}
		fputs(last ? "\n" : "  ", stdout);
	}
}

void
survey_table_print(const struct survey_table *t)
{
	size_t width[SURVEY_TABLE_MAX_COLS];

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

void
survey_table_release(struct survey_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncol; i++) {
		free(t->cells[i]);
	}
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/* ---- running an engine's command ---- */

void
survey_run_release(struct survey_run *r)
{
	sbuf_release(&r->out);
	sbuf_release(&r->err);
}

void
survey_output_add(struct sbuf *b, size_t max, const char *p, size_t len, bool *cut)
{
	if (*cut) {
		return;
	}
	if (len > max - SYS_MIN(b->len, max)) {
		len = max - SYS_MIN(b->len, max);
		*cut = true;
	}
	sbuf_add(b, p, len);
}

/*
 * The environment without MCPMUX_SESSION, MCPMUX_OWNER and MCPMUX_OUTER (malloc'd array, strings
 * borrowed), so that an engine command run by a sweep from inside a server's tree is
 * not itself a carrier of that tree, for a re-scan to find and kill.
 */
static char **
env_without_cookies(void)
{
	size_t n = 0, k = 0;

	while (environ[n] != NULL) {
		n++;
	}
	char **env = malloc((n + 1) * sizeof(*env));

	if (env == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], PROCTREE_COOKIE_ENV "=", sizeof(PROCTREE_COOKIE_ENV)) !=
			    0 &&
		    strncmp(environ[i], PROCSCAN_OWNER_ENV "=", sizeof(PROCSCAN_OWNER_ENV)) != 0 &&
		    strncmp(environ[i], PROCTREE_OUTER_ENV "=", sizeof(PROCTREE_OUTER_ENV)) != 0) {
			env[k++] = environ[i];
		}
	}
	env[k] = NULL;
	return env;
}

/* Is entry NAME=VALUE one of container_record_vars? */
static bool
record_var_entry(const char *entry)
{
	for (size_t i = 0; container_record_vars[i] != NULL; i++) {
		size_t len = strlen(container_record_vars[i]);

		if (strncmp(entry, container_record_vars[i], len) == 0 && entry[len] == '=') {
			return true;
		}
	}
	return false;
}

/*
 * env_without_cookies(), and with vars (NULL: as it is) the variables of
 * container_record_vars as vars has them, set or not.
 */
static char **
env_for(char *const *vars)
{
	char **env = env_without_cookies();
	size_t n = 0, nv = 0;

	if (env == NULL || vars == NULL) {
		return env;
	}
	while (env[n] != NULL) {
		n++;
	}
	while (vars[nv] != NULL) {
		nv++;
	}
	char **out = malloc((n + nv + 1) * sizeof(*out));

	if (out != NULL) {
		size_t k = 0;

		for (size_t i = 0; i < n; i++) {
			if (!record_var_entry(env[i])) {
				out[k++] = env[i];
			}
		}
		for (size_t i = 0; i < nv; i++) {
			out[k++] = vars[i];
		}
		out[k] = NULL;
	}
	free(env);
	return out;
}

/*
 * Run argv with stdin on /dev/null, its stdout and stderr captured (up to
 * SURVEY_ENGINE_OUTPUT_MAX each, cut there), for at most timeout_ms; killed after that.  0 when it
 * ran (see r->status), -1 when it could not be started (r->spawn_errno).
 */
int
survey_run(char *const *argv, int timeout_ms, struct survey_run *r)
{
	return survey_run_in(argv, NULL, timeout_ms, r);
}

int
survey_run_in(char *const *argv, char *const *vars, int timeout_ms, struct survey_run *r)
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
		/* A group of its own, killed whole at the deadline: an engine waits for helpers
		 * of its own (podman for its runtime), which would outlive it. */
		(void)posix_spawnattr_setpgroup(&attr, 0);
		(void)posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF |
							      POSIX_SPAWN_SETSIGMASK |
							      POSIX_SPAWN_SETPGROUP);
		char **envp = env_for(vars);

		rc = envp == NULL ? ENOMEM : posix_spawnp(&pid, argv[0], &fa, &attr, argv, envp);
		free(envp);
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
			sys_kill_group(pid);
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
			} else {
				survey_output_add(b, SURVEY_ENGINE_OUTPUT_MAX, buf, (size_t)got,
						  k == 0 ? &r->out_cut : &r->err_cut);
				if (k == 1) {
					container_tail_add(&r->err_tail, buf, (size_t)got);
				}
			}
		}
	}
	sys_close(&out[0]);
	sys_close(&err[0]);
	/* Its output is closed; it may still linger: wait for it up to the same deadline. */
	for (;;) {
		pid_t w = waitpid(pid, &r->status, killed ? 0 : WNOHANG);

		if (w == pid || (w == -1 && errno != EINTR)) {
			break;
		}
		if (w == 0 && procscan_now_ms() >= deadline) {
			sys_kill_group(pid);
			killed = true;
		} else if (w == 0) {
			struct timespec ts = { 0, 5 * 1000000L };

			(void)nanosleep(&ts, NULL);
		}
	}
	if (killed) {
		static const char nl[] = "\n", why[] = "no answer within the time limit";

		if (r->err_tail.n > 0 && r->err_tail.buf[r->err_tail.n - 1] != '\n') {
			sbuf_adds(&r->err, nl); /* a line of its own, the last */
			container_tail_add(&r->err_tail, nl, sizeof(nl) - 1);
		}
		sbuf_adds(&r->err, why);
		container_tail_add(&r->err_tail, why, sizeof(why) - 1);
		r->status = -1;
	}
	return 0;
}

static char *engine_names[2][2] = {
	{ (char *)(uintptr_t) "docker", NULL },
	{ (char *)(uintptr_t) "podman", NULL },
};

char **
survey_engine_prefix(enum container_engine e)
{
	return engine_names[e == CONTAINER_PODMAN ? 1 : 0];
}

/*
 * Describe a failed engine command in out: the line of its stderr that says why (its last,
 * after any warnings), or its status.
 */
void
survey_run_failure(const struct survey_run *r, char *out, size_t cap)
{
	size_t n;
	/* An engine says its error last: past what is kept of a long stderr, in its tail. */
	const char *why =
		r->err_cut ? container_why(r->err_tail.buf, r->err_tail.n, &n)
			   : container_why(r->err.buf != NULL ? r->err.buf : "", r->err.len, &n);

	survey_first_line(why, n, out, cap);
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

bool
survey_run_ok(const struct survey_run *r)
{
	return r->status != -1 && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

#define ENGINE_TCP_CHECK_MS 2000 /* our own connect to an engine's tcp:// endpoint */

/* Is nothing listening at the unix socket path?  1 yes, 0 no, -1 it is no path. */
static int
unix_refused(const char *path, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc, err;

	if (len == 0 || path[0] != '/' || len >= sizeof(sa.sun_path)) {
		return -1;
	}
	memcpy(sa.sun_path, path, len);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		return 0;
	}
	rc = connect(fd, (const struct sockaddr *)&sa, sizeof(sa));
	err = errno;
	sys_close(&fd);
	return rc == -1 && (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR);
}

/*
 * A connect to addr: 1 refused (a RST: no one listens), 0 not possible from here (no such
 * address family or route), -1 anything else (it answered, or not within the deadline).
 */
static int
tcp_refused_at(const struct addrinfo *ai, long long deadline)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int err = 0;
	socklen_t el = sizeof(err);

	if (fd == -1) {
		return errno == EAFNOSUPPORT ? 0 : -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		err = errno;
	}
	while (err == EINPROGRESS || err == EINTR) {
		struct pollfd pf = { fd, POLLOUT, 0 };
		long long left = deadline - procscan_now_ms();
		int n = left > 0 ? poll(&pf, 1, (int)left) : 0;

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1) {
			err = ETIMEDOUT;
		}
	}
	sys_close(&fd);
	return err == ECONNREFUSED ? 1 : err == EADDRNOTAVAIL || err == ENETUNREACH ? 0 : -1;
}

/*
 * Is nothing listening at the tcp endpoint HOST:PORT ([V6]:PORT)?  Only a numeric address
 * or localhost (the loopback addresses) is tried: a name lookup has no deadline.  Every
 * address that can be reached from here must refuse: one that answers, or does not in
 * time, may be a daemon's.  1 refused, 0 not, -1 no such endpoint.
 */
static int
tcp_refused(const char *at, size_t len)
{
	struct httpmsg_addr a;
	char spec[sizeof(a.host) + 8]; /* [HOST]:PORT */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int refused = 0;

	/* A port is required here: httpmsg_parse_addr() takes "PORT" alone as loopback's. */
	if (len >= sizeof(spec) || memchr(at, ':', len) == NULL) {
		return -1;
	}
	memcpy(spec, at, len);
	spec[len] = '\0';
	if (httpmsg_parse_addr(spec, &a) == -1 || a.is_path) {
		return -1;
	}
	bool local = strcmp(a.host, "localhost") == 0;

	hints.ai_flags |= local ? 0 : AI_NUMERICHOST;
	if (getaddrinfo(local ? NULL : a.host, a.port, &hints, &res) != 0) {
		return -1;
	}
	long long deadline = procscan_now_ms() + ENGINE_TCP_CHECK_MS;

	for (const struct addrinfo *ai = res; ai != NULL && refused != -1; ai = ai->ai_next) {
		int r = tcp_refused_at(ai, deadline);

		refused = r == -1 ? -1 : SYS_MAX(refused, r);
	}
	freeaddrinfo(res);
	return refused == 1;
}

/*
 * Did a failed command fail because its engine's daemon is not there: its stderr names its
 * endpoint, a unix socket (unix://PATH, or "dial unix PATH:") that nothing listens on (no
 * such file, or connection refused), or a tcp one (tcp://HOST:PORT, as docker says it, or
 * "dial tcp HOST:PORT:") whose connect this process sees refused?  Such an engine has no
 * container to list.  A command that did not answer in time never is.
 */
static bool
engine_down(const struct survey_run *r)
{
	static const char *const keys[] = { "unix://", "dial unix ", "tcp://", "dial tcp " };
	size_t n;

	if (r->status == -1) {
		return false;
	}
	/*
	 * Its error line only, the one said (survey_run_failure()): a warning before it may
	 * name a socket that is not there (podman's "dial unix /run/user/UID/bus" without a
	 * user session) while the listing failed for another reason.
	 */
	const char *text =
		r->err_cut ? container_why(r->err_tail.buf, r->err_tail.n, &n)
			   : container_why(r->err.buf != NULL ? r->err.buf : "", r->err.len, &n);
	const char *nl = memchr(text, '\n', n);
	size_t text_len = nl != NULL ? (size_t)(nl - text) : n;

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		const char *at = memmem(text, text_len, keys[k], strlen(keys[k]));
		size_t len;

		if (at == NULL) {
			continue;
		}
		at += strlen(keys[k]);
		/* (bounded by the line: the tail kept of a long stderr need not end in a NUL) */
		const char *stop = k < 2 ? " \t\r\n\"'" : " \t\r\n\"'/";

		for (len = 0; at + len < text + text_len && strchr(stop, at[len]) == NULL; len++) {
		}
		while (len > 0 &&
		       (at[len - 1] == '.' || at[len - 1] == ',' || at[len - 1] == ':')) {
			len--;
		}
		int down = k < 2 ? unix_refused(at, len) : tcp_refused(at, len);

		if (down != -1) {
			return down == 1;
		}
	}
	return false;
}

/*
 * List each engine's containers labelled mcpmux.owner; an engine not installed is skipped,
 * one whose daemon is not there is marked down.  One that cannot be listed is said here,
 * but for sweep, which says it as its error (exit 1) when the engine is not down.
 */
static void
list_containers(struct survey *p)
{
	for (size_t e = 0; e < 2; e++) {
		struct survey_engine *en = &p->engines[e];
		struct survey_run r;

		en->kind = e == 0 ? CONTAINER_PODMAN : CONTAINER_DOCKER;
		char **argv = container_list_argv(survey_engine_prefix(en->kind), 1, en->kind);

		if (argv == NULL) {
			(void)snprintf(en->error, sizeof(en->error), "%s", strerror(errno));
			en->present = true;
			continue;
		}
		if (survey_run(argv, SURVEY_ENGINE_TIMEOUT_MS, &r) == -1 &&
		    r.spawn_errno == ENOENT) {
			free(argv);
			survey_run_release(&r);
			continue;
		}
		free(argv);
		en->present = true;
		if (!survey_run_ok(&r)) {
			survey_run_failure(&r, en->error, sizeof(en->error));
			en->down = engine_down(&r);
		} else if (r.out_cut) {
			(void)snprintf(en->error, sizeof(en->error),
				       "its listing is longer than %zu MiB: cut there, not read",
				       SURVEY_ENGINE_OUTPUT_MAX >> 20);
		} else if (container_parse_list(en->kind, r.out.buf != NULL ? r.out.buf : "",
						r.out.len, &en->v, &en->n) == -1) {
			(void)snprintf(en->error, sizeof(en->error), "cannot read its listing: %s",
				       strerror(errno));
		} else {
			en->listed = true;
		}
		survey_run_release(&r);
		/*
		 * An engine whose daemon is not there (a docker CLI with Docker stopped) has no
		 * container running: nothing to say at every ps (--json keeps its error).
		 */
		if (!en->listed && !en->down && !p->o.sweep) {
			diag_warn("cannot list the containers of %s: %s (they are left out)",
				  container_engine_name(en->kind), en->error);
		}
	}
	/* `docker` may be podman under another name: keep each container once. */
	struct survey_engine *pd = &p->engines[0], *dk = &p->engines[1];

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

enum survey_owner
survey_container_owner(const struct survey *p, const struct container_info *c, int *err)
{
	*err = 0;
	if (c->boot[0] != '\0' && p->boot[0] != '\0' && strcmp(c->boot, p->boot) != 0) {
		return SURVEY_ELSEWHERE;
	}
	/* An owner in another pid namespace (a container's mcpmux): its pid means it there. */
	bool elsewhere =
		c->pidns[0] != '\0' && p->pidns[0] != '\0' && strcmp(c->pidns, p->pidns) != 0;

	switch (elsewhere ? procscan_owner_in_pidns(&p->scan, SURVEY_PROC_ROOT, c->owner, c->pidns,
						    err)
			  : procscan_owner_state(&p->scan, SURVEY_PROC_ROOT, c->owner, err)) {
	case PROCSCAN_LIVE:
		return SURVEY_OWNED;
	case PROCSCAN_GONE:
		return SURVEY_ORPHAN;
	default:
		return SURVEY_UNKNOWN;
	}
}

const char *
survey_owner_name(enum survey_owner o)
{
	static const char *const names[] = { "owned", "orphan", "elsewhere", "unknown" };

	return names[o];
}

double
survey_container_age(const struct container_info *c)
{
	return c->created >= 0 ? (double)(time(NULL) - c->created) : -1;
}

int
survey_read(struct survey *p)
{
	p->uid = getuid();
	p->all_users = p->uid == 0;
	procscan_init(&p->scan);
	if (procscan_read(&p->scan, SURVEY_PROC_ROOT, p->uid, p->all_users, getpid()) == -1) {
		return diag_error_errno("cannot read the processes in %s", SURVEY_PROC_ROOT);
	}
	if (procscan_boot_id(SURVEY_PROC_ROOT, p->boot) == -1) {
		p->boot[0] = '\0';
	}
	(void)procscan_pidns(SURVEY_PROC_ROOT, getpid(), p->pidns);
	list_containers(p);
	return 0;
}

bool
survey_session_selected(const struct survey_opts *o, const char *session)
{
	return o->session == NULL || fnmatch(o->session, session, 0) == 0;
}

/* Report the carriers whose owner could not be read (own_only: of this user); any? */
bool
survey_report_unknown(const struct survey *p, bool own_only)
{
	bool any = false;

	for (size_t g = 0; g < p->scan.n_groups; g++) {
		const struct procscan_group *x = &p->scan.g[g];

		if (x->owner_state == PROCSCAN_UNKNOWN &&
		    survey_session_selected(&p->o, x->session) && (!own_only || x->uid == p->uid)) {
			char owner[PROCSCAN_OWNER_MAX + 1], session[PROCTREE_COOKIE_MAX + 1];

			diag_warn(
				"cannot tell whether mcpmux %s, the owner of pid %d (session '%s'), "
				"is alive: %s (left alone)",
				survey_printable(x->owner_cut	       ? "(too long)"
						 : x->owner[0] == '\0' ? "(empty)"
								       : x->owner,
						 owner, sizeof(owner)),
				(int)p->scan.v[x->top].pid,
				survey_printable(x->session, session, sizeof(session)),
				procscan_unknown_why(x));
			any = true;
		}
	}
	return any;
}

/* ---- the instances' status files (status.h) ---- */

/* Directory path under at, without following a symlink, if it is private to uid. */
static int
open_private_dir(int at, const char *path, uid_t uid)
{
	struct stat st;
	int fd = openat(at, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd == -1) {
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		int err = errno;

		sys_close(&fd);
		errno = err;
		return -1;
	}
	if (st.st_uid != uid || (st.st_mode & 0077) != 0) {
		sys_close(&fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

/* Up to max bytes of fd from its start into b.  0, or -1 with errno. */
static int
pread_all(int fd, struct sbuf *b, size_t max)
{
	char chunk[16384];

	sbuf_reset(b);
	while (b->len < max) {
		ssize_t n = pread(fd, chunk, SYS_MIN(sizeof(chunk), max - b->len), (off_t)b->len);

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return (int)n;
		}
		sbuf_add(b, chunk, (size_t)n);
		if (b->failed) {
			errno = ENOMEM;
			return -1;
		}
	}
	return 0;
}

static bool
same_bytes(const struct sbuf *a, const struct sbuf *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0);
}

int
survey_status_load(const char *dir, pid_t pid, uid_t uid, struct sbuf *out)
{
	struct sbuf again = { 0 };
	int dfd, ifd, fd = -1, rc = -1;
	char name[32];
	struct stat st;

	sbuf_reset(out);
	dfd = open_private_dir(AT_FDCWD, dir, uid);
	if (dfd == -1) {
		return errno == ENOENT ? SURVEY_STATUS_NONE : -1;
	}
	ifd = open_private_dir(dfd, "instances", uid);
	sys_close(&dfd);
	if (ifd == -1) {
		return errno == ENOENT ? SURVEY_STATUS_NONE : -1;
	}
	(void)snprintf(name, sizeof(name), "%d", (int)pid);
	/* O_NONBLOCK: a FIFO planted there does not block the open (then it is refused). */
	fd = openat(ifd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	sys_close(&ifd);
	if (fd == -1) {
		return errno == ENOENT ? SURVEY_STATUS_NONE : -1;
	}
	if (fstat(fd, &st) == -1) {
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != uid || (st.st_mode & 0022) != 0) {
		errno = EPERM;
		goto out;
	}
	/* Its instance holds it under LOCK_EX while it runs: a lock we can take is free. */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		(void)flock(fd, LOCK_UN);
		rc = SURVEY_STATUS_STALE;
		goto out;
	}
	if (errno != EWOULDBLOCK || pread_all(fd, out, SURVEY_STATUS_MAX_BYTES) == -1) {
		goto out;
	}
	/*
	 * The instance rewrites the file in place (pwrite, then ftruncate): a read during a
	 * rewrite can see a mix of two versions.  Read until two reads agree.
	 */
	for (int k = 1; k < SURVEY_STATUS_READS; k++) {
		if (pread_all(fd, &again, SURVEY_STATUS_MAX_BYTES) == -1) {
			goto out;
		}
		if (same_bytes(out, &again)) {
			break;
		}
		struct sbuf t = *out;

		*out = again;
		again = t;
	}
	rc = SURVEY_STATUS_READ;
out:
	if (rc == -1) {
		int err = errno;

		sbuf_release(&again);
		sys_close(&fd);
		errno = err;
		return -1;
	}
	sbuf_release(&again);
	sys_close(&fd);
	return rc;
}

static yajl_val
member(yajl_val v, const char *key, yajl_type type)
{
	const char *path[] = { key, NULL };

	return yajl_tree_get(v, path, type);
}

/* A count: an integer >= 0. */
static bool
get_count(yajl_val v, const char *key, unsigned long long *out)
{
	yajl_val n = member(v, key, yajl_t_number);

	if (n == NULL || !YAJL_IS_INTEGER(n) || YAJL_GET_INTEGER(n) < 0) {
		return false;
	}
	*out = (unsigned long long)YAJL_GET_INTEGER(n);
	return true;
}

/* A CLOCK_MONOTONIC time, as seconds before now (>= 0). */
static bool
get_since(yajl_val v, const char *key, double now, double *out)
{
	yajl_val n = member(v, key, yajl_t_number);

	if (n == NULL || !YAJL_IS_DOUBLE(n) || !isfinite(YAJL_GET_DOUBLE(n))) {
		return false;
	}
	*out = SYS_MAX(now - YAJL_GET_DOUBLE(n), 0.);
	return true;
}

/* One session line into *o; false when it is not one. */
static bool
parse_session(yajl_val v, double now, struct survey_status *o)
{
	const char *id = YAJL_GET_STRING(member(v, "session", yajl_t_string));
	const char *state = YAJL_GET_STRING(member(v, "state", yajl_t_string));
	yajl_val pid = member(v, "pid", yajl_t_any);
	size_t n;

	if (id == NULL || state == NULL || state[0] == '\0' || pid == NULL ||
	    strlen(id) > PROCTREE_COOKIE_MAX || !session_id_valid(id, strlen(id))) {
		return false;
	}
	if (YAJL_IS_NULL(pid)) {
		o->pid = 0;
	} else if (YAJL_IS_INTEGER(pid) && YAJL_GET_INTEGER(pid) > 0 &&
		   YAJL_GET_INTEGER(pid) <= INT_MAX) {
		o->pid = (pid_t)YAJL_GET_INTEGER(pid);
	} else {
		return false;
	}
	(void)snprintf(o->session, sizeof(o->session), "%s", id);
	/* A state this mcpmux does not know (a newer one's) is shown as written. */
	n = strlen(state);
	if (n > SURVEY_STATE_MAX) {
		n = SURVEY_STATE_MAX - rpcout_utf8_tail(state, SURVEY_STATE_MAX);
	}
	memcpy(o->state, state, n);
	o->state[n] = '\0';
	o->instance = o->group = SIZE_MAX;
	return get_since(v, "started", now, &o->age_s) && get_since(v, "last", now, &o->idle_s) &&
	       get_count(v, "suspends", &o->suspends) && get_count(v, "resumes", &o->resumes);
}

/* One line as a JSON value (yajl_tree_free() it), NULL when it is not one. */
static yajl_val
parse_line(const char *l, size_t len)
{
	char line[SURVEY_STATUS_LINE_MAX + 1];

	if (len > SURVEY_STATUS_LINE_MAX || memchr(l, '\0', len) != NULL) {
		return NULL;
	}
	memcpy(line, l, len);
	line[len] = '\0';
	return yajl_tree_parse(line, NULL, 0);
}

struct status_key {
	const char *session;
	size_t at;
};

static int
status_key_cmp(const void *a, const void *b)
{
	const struct status_key *x = a, *y = b;
	int c = strcmp(x->session, y->session);

	return c != 0 ? c : x->at < y->at ? -1 : x->at > y->at;
}

/* Keep the first line of each session in v[from, *n), in their order.  -1: ENOMEM. */
static int
drop_repeats(struct survey_status *v, size_t from, size_t *n)
{
	size_t m = *n - from, k = from;
	struct status_key *keys;
	bool *drop;

	if (m < 2) {
		return 0;
	}
	keys = malloc(m * sizeof(*keys));
	drop = calloc(m, sizeof(*drop));
	if (keys == NULL || drop == NULL) {
		free(keys);
		free(drop);
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i < m; i++) {
		keys[i].session = v[from + i].session;
		keys[i].at = i;
	}
	qsort(keys, m, sizeof(*keys), status_key_cmp);
	for (size_t i = 1; i < m; i++) {
		drop[keys[i].at] = strcmp(keys[i].session, keys[i - 1].session) == 0;
	}
	for (size_t i = 0; i < m; i++) {
		if (!drop[i]) {
			v[k++] = v[from + i];
		}
	}
	*n = k;
	free(keys);
	free(drop);
	return 0;
}

int
survey_status_parse(const char *buf, size_t len, pid_t pid, double now, struct survey_status **v,
		    size_t *n, size_t *cap, bool *cut)
{
	size_t at = 0, from = *n;
	bool header = false;

	*cut = false;
	while (at < len) {
		const char *l = buf + at, *nl = memchr(l, '\n', len - at);

		if (nl == NULL) {
			break; /* torn: being written */
		}
		size_t ll = (size_t)(nl - l);
		yajl_val root = parse_line(l, ll);

		at += ll + 1;
		if (!header) {
			yajl_val me = root != NULL ? member(root, "mcpmux", yajl_t_number) : NULL;

			header = me != NULL && YAJL_IS_INTEGER(me) && YAJL_GET_INTEGER(me) == pid;
			yajl_tree_free(root);
			if (!header) {
				break;
			}
			continue;
		}
		if (*n - from == SURVEY_STATUS_MAX_SESSIONS) {
			yajl_tree_free(root);
			*cut = true;
			break;
		}
		if (*n == *cap) {
			size_t nc = *cap != 0 ? *cap * 2 : 16;
			struct survey_status *nv = realloc(*v, nc * sizeof(*nv));

			if (nv == NULL) {
				yajl_tree_free(root);
				*n = from;
				errno = ENOMEM;
				return -1;
			}
			*v = nv;
			*cap = nc;
		}
		if (root != NULL && parse_session(root, now, &(*v)[*n])) {
			(*n)++;
		}
		yajl_tree_free(root);
	}
	if (!header) {
		errno = EINVAL;
		return -1;
	}
	if (drop_repeats(*v, from, n) == -1) {
		*n = from;
		return -1;
	}
	return 0;
}

/* XDG_RUNTIME_DIR of an environment: its first entry, as getenv() takes it. */
struct xdg_read {
	char dir[PATH_MAX]; /* "" when absent or too long */
};

static bool
xdg_entry(const char *e, size_t len, void *ctx)
{
	static const char key[] = "XDG_RUNTIME_DIR=";
	struct xdg_read *r = ctx;
	size_t kl = sizeof(key) - 1;

	if (len < kl || memcmp(e, key, kl) != 0) {
		return false;
	}
	if (len - kl < sizeof(r->dir)) {
		memcpy(r->dir, e + kl, len - kl);
		r->dir[len - kl] = '\0';
	}
	return true;
}

/*
 * mcpmux's runtime directory as instance pr made it (sys_runtime_dir()): from the
 * XDG_RUNTIME_DIR of its environment, else /tmp/mcpmux-UID.  -1 when its environment
 * cannot be read.
 */
static int
instance_runtime_dir(const struct procscan_proc *pr, char *out, size_t cap)
{
	char path[64];
	struct xdg_read r = { "" };
	int fd, n;

	(void)snprintf(path, sizeof(path), "%s/%d/environ", SURVEY_PROC_ROOT, (int)pr->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1 || proctree_environ_each(fd, xdg_entry, &r) == -1) {
		return -1;
	}
	if (r.dir[0] == '/') {
		n = snprintf(out, cap, "%s/mcpmux", r.dir);
	} else {
		n = snprintf(out, cap, "/tmp/mcpmux-%u", (unsigned)pr->uid);
	}
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int
instance_key_cmp(const void *a, const void *b)
{
	const struct survey_status *x = a, *y = b;

	return x->instance != y->instance ? (x->instance < y->instance ? -1 : 1)
					  : strcmp(x->session, y->session);
}

/* Match each session that has processes with its group. */
static int
match_groups(struct survey *p)
{
	const struct procscan *s = &p->scan;
	struct survey_status *sorted;

	p->group_st = malloc((s->n_groups != 0 ? s->n_groups : 1) * sizeof(*p->group_st));
	sorted = malloc((p->n_st != 0 ? p->n_st : 1) * sizeof(*sorted));
	if (p->group_st == NULL || sorted == NULL) {
		free(sorted);
		return -1;
	}
	/* Sorted copies, each with its index in st in .group. */
	for (size_t k = 0; k < p->n_st; k++) {
		sorted[k] = p->st[k];
		sorted[k].group = k;
	}
	qsort(sorted, p->n_st, sizeof(*sorted), instance_key_cmp);
	for (size_t g = 0; g < s->n_groups; g++) {
		const struct procscan_group *x = &s->g[g];
		struct survey_status key = { 0 };
		const struct survey_status *hit;

		p->group_st[g] = SIZE_MAX;
		if (x->owner_state != PROCSCAN_LIVE || p->n_st == 0) {
			continue;
		}
		key.instance = x->instance;
		(void)snprintf(key.session, sizeof(key.session), "%s", x->session);
		hit = bsearch(&key, sorted, p->n_st, sizeof(*sorted), instance_key_cmp);
		if (hit != NULL) {
			p->group_st[g] = hit->group;
			p->st[hit->group].group = g;
		}
	}
	free(sorted);
	return 0;
}

int
survey_read_status(struct survey *p)
{
	const struct procscan *s = &p->scan;
	struct sbuf buf = { 0 };
	bool oom = false;

	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *pr = &s->v[i];
		size_t from = p->n_st;
		char dir[PATH_MAX];
		bool cut = false;
		int rc;

		if (pr->mode == PROCSCAN_NONE || instance_runtime_dir(pr, dir, sizeof(dir)) == -1) {
			continue;
		}
		rc = survey_status_load(dir, pr->pid, pr->uid, &buf);
		if (rc == -1 && errno == ENOMEM) {
			oom = true;
			break;
		}
		if (rc == -1) {
			diag_warn_errno("cannot read the status of mcpmux %d in %s/instances (its "
					"sessions' states are left out)",
					(int)pr->pid, dir);
		}
		if (rc != SURVEY_STATUS_READ) {
			continue;
		}
		if (survey_status_parse(buf.buf != NULL ? buf.buf : "", buf.len, pr->pid,
					sys_mono(), &p->st, &p->n_st, &p->cap_st, &cut) == -1) {
			if (errno == ENOMEM) {
				oom = true;
				break;
			}
			continue; /* not the file of this pid, or being written: nothing known */
		}
		if (cut || buf.len >= SURVEY_STATUS_MAX_BYTES) {
			diag_warn("mcpmux %d has more sessions than ps reads of it (%d, %zu "
				  "bytes): the others are shown without their states",
				  (int)pr->pid, SURVEY_STATUS_MAX_SESSIONS,
				  SURVEY_STATUS_MAX_BYTES);
		}
		for (size_t k = from; k < p->n_st; k++) {
			p->st[k].instance = i;
		}
	}
	sbuf_release(&buf);
	if (oom || match_groups(p) == -1) {
		return diag_error("out of memory");
	}
	return 0;
}

const struct survey_status *
survey_group_status(const struct survey *p, size_t g)
{
	return p->group_st != NULL && p->group_st[g] != SIZE_MAX ? &p->st[p->group_st[g]] : NULL;
}

/* Is pid certainly gone (not even a zombie)? */
static bool
pid_gone(pid_t pid)
{
	return kill(pid, 0) == -1 && errno == ESRCH;
}

/*
 * Is the file of pid a dead instance's: is pid gone, or held by the process that the scan
 * saw there and found no instance (a pid reused since, by another program, or a zombie)?
 * A live pid the scan did not see may be an instance that has made its file but not yet
 * locked it: that file is not stale.
 */
static bool
status_stale(const struct procscan *s, pid_t pid)
{
	if (pid_gone(pid)) {
		return true;
	}
	size_t i = procscan_find(s, pid);

	return i != SIZE_MAX && s->v[i].read_errno == 0 && s->v[i].mode == PROCSCAN_NONE &&
	       procscan_still(SURVEY_PROC_ROOT, &s->v[i]) == 1;
}

/*
 * The subdirectory sub ("instances", "cid") of mcpmux's runtime directory in this process's
 * environment (dir: that runtime directory), opened if both are private to uid; NULL with
 * errno.
 */
static DIR *
open_runtime_sub(char *dir, size_t cap, uid_t uid, const char *sub)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int dfd, sfd;
	DIR *d;

	if (xdg != NULL && xdg[0] == '/') {
		(void)snprintf(dir, cap, "%s/mcpmux", xdg);
	} else {
		(void)snprintf(dir, cap, "/tmp/mcpmux-%u", (unsigned)uid);
	}
	dfd = open_private_dir(AT_FDCWD, dir, uid);
	sfd = dfd != -1 ? open_private_dir(dfd, sub, uid) : -1;
	sys_close(&dfd);
	d = sfd != -1 ? fdopendir(sfd) : NULL;
	if (d == NULL) {
		int err = errno;

		sys_close(&sfd);
		errno = err;
	}
	return d;
}

/* Does keep hold a dead instance's cgroup, still there, found through pid's file? */
static bool
cgroup_kept(const struct survey *keep, pid_t pid)
{
	struct stat st;

	for (size_t i = 0; keep != NULL && i < keep->n_cg; i++) {
		if (keep->cg[i].file_pid == pid && stat(keep->cg[i].dir, &st) == 0) {
			return true;
		}
	}
	return false;
}

/* The cgroup, still there, of pid's file that keep left to the process at pid, or NULL. */
static const char *
cgroup_left(const struct survey *keep, pid_t pid)
{
	struct stat st;

	for (size_t i = 0; keep != NULL && i < keep->n_cg_left; i++) {
		if (keep->cg_left[i].pid == pid && stat(keep->cg_left[i].dir, &st) == 0) {
			return keep->cg_left[i].dir;
		}
	}
	return NULL;
}

/*
 * Remove the entry name of d (the runtime directory dir's subdirectory sub) if it is a
 * regular file of uid's and pred(fd, ctx) holds of it, opened: 1 if it was removed, else 0
 * (said when it could not be).
 */
static size_t
remove_own_file(DIR *d, const char *dir, const char *sub, const char *name, uid_t uid,
		bool (*pred)(int fd, void *ctx), void *ctx)
{
	struct stat st;
	size_t removed = 0;
	int fd = openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd == -1) {
		return 0;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == uid && pred(fd, ctx)) {
		if (unlinkat(dirfd(d), name, 0) == 0) {
			removed = 1;
		} else if (errno != ENOENT) {
			diag_warn_errno("cannot remove %s/%s/%s", dir, sub, name);
		}
	}
	sys_close(&fd);
	return removed;
}

struct stale_file {
	const struct procscan *s;
	pid_t pid;
};

/* A status file whose lock is free and whose instance is gone (still, once locked). */
static bool
status_file_stale(int fd, void *ctx)
{
	const struct stale_file *sf = ctx;

	return flock(fd, LOCK_EX | LOCK_NB) == 0 && status_stale(sf->s, sf->pid);
}

size_t
survey_sweep_status(const struct procscan *s, const struct survey *keep, bool dry_run)
{
	char dir[PATH_MAX];
	uid_t uid = getuid();
	size_t n = 0;
	DIR *d = open_runtime_sub(dir, sizeof(dir), uid, "instances");

	if (d == NULL) {
		if (errno != ENOENT) {
			diag_warn_errno("cannot look for the status files of instances that are "
					"gone in %s/instances",
					dir);
		}
		return 0;
	}
	for (const struct dirent *e; (e = readdir(d)) != NULL;) {
		char *end;
		long pid;

		errno = 0;
		pid = strtol(e->d_name, &end, 10);
		/*
		 * A live pid may be an instance that has made its file but not yet locked it:
		 * only the files of dead instances are taken, under their lock.
		 */
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || *end != '\0' || errno != 0 ||
		    pid > INT_MAX || !status_stale(s, (pid_t)pid)) {
			continue;
		}
		/* It tells sweep where the processes still in its cgroup are. */
		if (cgroup_kept(keep, (pid_t)pid)) {
			continue;
		}
		/* The only thing that names a cgroup that the process at pid now may have made. */
		const char *left = cgroup_left(keep, (pid_t)pid);

		if (left != NULL) {
			diag_warn(
				"left the cgroup %s, and the status file of the gone instance %ld "
				"that names it: pid %ld is now another process, which may have "
				"made it",
				left, pid, pid);
			continue;
		}
		if (dry_run) {
			continue;
		}
		struct stale_file sf = { s, (pid_t)pid };

		n += remove_own_file(d, dir, "instances", e->d_name, uid, status_file_stale, &sf);
	}
	(void)closedir(d);
	return n;
}

/* ---- the cgroups of instances that are gone ---- */

/* What a status file says of its instance's cgroup. */
struct cg_file {
	char dir[CGROUP_PATH_MAX]; /* "" none */
	char owner[PROCSCAN_OWNER_MAX + 1];
	struct survey_cgleaf *leaf;
	size_t n_leaf, cap_leaf;
};

/* The cgroup, owner and leaves that the status file buf of instance pid names.  0, -1. */
static int
cg_file_parse(const char *buf, size_t len, pid_t pid, struct cg_file *f)
{
	bool header = false;

	for (size_t at = 0; at < len;) {
		const char *l = buf + at, *nl = memchr(l, '\n', len - at);

		if (nl == NULL) {
			break; /* torn: being written */
		}
		yajl_val root = parse_line(l, (size_t)(nl - l));

		at += (size_t)(nl - l) + 1;
		if (root == NULL) {
			if (!header) {
				errno = EINVAL;
				return -1;
			}
			continue;
		}
		if (!header) {
			yajl_val me = member(root, "mcpmux", yajl_t_number);
			const char *cg = YAJL_GET_STRING(member(root, "cgroup", yajl_t_string));
			const char *owner = YAJL_GET_STRING(member(root, "owner", yajl_t_string));

			header = me != NULL && YAJL_IS_INTEGER(me) && YAJL_GET_INTEGER(me) == pid;
			if (header && cg != NULL && strlen(cg) < sizeof(f->dir)) {
				(void)snprintf(f->dir, sizeof(f->dir), "%s", cg);
			}
			if (header && owner != NULL && strlen(owner) < sizeof(f->owner)) {
				(void)snprintf(f->owner, sizeof(f->owner), "%s", owner);
			}
			yajl_tree_free(root);
			if (!header) {
				errno = EINVAL;
				return -1;
			}
			continue;
		}
		const char *id = YAJL_GET_STRING(member(root, "session", yajl_t_string));
		const char *leaf = YAJL_GET_STRING(member(root, "leaf", yajl_t_string));

		if (id != NULL && leaf != NULL && strlen(id) <= PROCTREE_COOKIE_MAX &&
		    strlen(leaf) < sizeof(f->leaf->leaf) && strchr(leaf, '/') == NULL &&
		    f->n_leaf < SURVEY_STATUS_MAX_SESSIONS) {
			if (f->n_leaf == f->cap_leaf) {
				size_t nc = f->cap_leaf ? f->cap_leaf * 2 : 8;
				struct survey_cgleaf *nv = realloc(f->leaf, nc * sizeof(*nv));

				if (nv == NULL) {
					yajl_tree_free(root);
					errno = ENOMEM;
					return -1;
				}
				f->leaf = nv;
				f->cap_leaf = nc;
			}
			struct survey_cgleaf *x = &f->leaf[f->n_leaf++];

			(void)snprintf(x->leaf, sizeof(x->leaf), "%s", leaf);
			(void)snprintf(x->session, sizeof(x->session), "%s", id);
		}
		yajl_tree_free(root);
	}
	if (!header) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/*
 * Is dir an instance cgroup of pid's (its name "mcpmux.PID[.K]") below the cgroup2 mount
 * mnt, with no "." or ".." in its path: what a status file says is taken at its word only
 * so far.
 */
static bool
cg_path_ok(const char *mnt, const char *dir, pid_t pid)
{
	size_t ml = strlen(mnt);
	const char *base = strrchr(dir, '/');
	pid_t named;

	if (ml == 0 || strncmp(dir, mnt, ml) != 0 || dir[ml] != '/' || base == NULL ||
	    cgroup_instance_pid(base + 1, &named) == -1 || named != pid ||
	    strstr(dir, "/./") != NULL || strstr(dir, "/../") != NULL) {
		return false;
	}
	return true;
}

/* A directory of uid's (made by one of its instances). */
static bool
cg_mine(const char *dir, uid_t uid)
{
	struct stat st;

	return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid;
}

static bool
cg_listed(char (*v)[CGROUP_PATH_MAX], size_t n, const char *dir)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i], dir) == 0) {
			return true;
		}
	}
	return false;
}

static bool
cg_taken(const struct survey *p, const char *dir)
{
	for (size_t i = 0; i < p->n_cg; i++) {
		if (strcmp(p->cg[i].dir, dir) == 0) {
			return true;
		}
	}
	return false;
}

/* Add a dead instance's cgroup (f's leaves taken).  0, or -1 (ENOMEM). */
static int
cg_add(struct survey *p, size_t *cap, const char *dir, pid_t pid, pid_t file_pid, struct cg_file *f)
{
	size_t dir_len = strnlen(dir, CGROUP_PATH_MAX);

	if (dir_len == CGROUP_PATH_MAX) {
		return 0; /* (the callers keep no longer path) */
	}
	if (p->n_cg == *cap) {
		size_t nc = *cap ? *cap * 2 : 4;
		struct survey_cgroup *nv = realloc(p->cg, nc * sizeof(*nv));

		if (nv == NULL) {
			errno = ENOMEM;
			return -1;
		}
		p->cg = nv;
		*cap = nc;
	}
	struct survey_cgroup *c = &p->cg[p->n_cg++];

	memset(c, 0, sizeof(*c));
	memcpy(c->dir, dir, dir_len + 1);
	c->pid = pid;
	c->file_pid = file_pid;
	if (f != NULL) {
		(void)snprintf(c->owner, sizeof(c->owner), "%s", f->owner);
		c->leaf = f->leaf;
		c->n_leaf = f->n_leaf;
		f->leaf = NULL;
		f->n_leaf = f->cap_leaf = 0;
	}
	return 0;
}

/* The pids whose status file is held: live instances, whatever their file says yet. */
struct pidset {
	pid_t *v;
	size_t n, cap;
};

static int
held_add(struct pidset *h, long pid)
{
	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 8;
		pid_t *nv = realloc(h->v, nc * sizeof(*nv));

		if (nv == NULL) {
			errno = ENOMEM;
			return -1;
		}
		h->v = nv;
		h->cap = nc;
	}
	h->v[h->n++] = (pid_t)pid;
	return 0;
}

static bool
held_has(const struct pidset *h, pid_t pid)
{
	for (size_t i = 0; i < h->n; i++) {
		if (h->v[i] == pid) {
			return true;
		}
	}
	return false;
}

/*
 * The status files in the runtime directory: the cgroups of the dead instances' into
 * p->cg, those of the live ones' into *live (*n_live), and the pids of every file held
 * (its cgroup named or not yet, or too long to be kept) into held_pids.  held_only: the held
 * files alone (no dead instance's cgroup, and no use of p->scan).  0, or -1 (ENOMEM).
 */
static bool named_in_pidns(const struct procscan *s, pid_t pid);

enum named_keep {
	NAMED_NONE,	/* keeps nothing */
	NAMED_INSTANCE, /* an instance */
	NAMED_OTHER,	/* another process, which may have made the cgroup */
};

static enum named_keep named_keeps(const struct procscan *s, pid_t pid, const char *dir,
				   const char *dead_owner);

/* cg_left_add(): pid's file and the cgroup dir it names, left to the process at pid. */
static int
cg_left_add(struct survey *p, pid_t pid, const char *dir)
{
	if (p->n_cg_left == p->cap_cg_left) {
		size_t nc = p->cap_cg_left ? p->cap_cg_left * 2 : 4;
		struct survey_cgleft *nv = realloc(p->cg_left, nc * sizeof(*nv));

		if (nv == NULL) {
			errno = ENOMEM;
			return -1;
		}
		p->cg_left = nv;
		p->cap_cg_left = nc;
	}
	p->cg_left[p->n_cg_left].pid = pid;
	(void)snprintf(p->cg_left[p->n_cg_left].dir, CGROUP_PATH_MAX, "%s", dir);
	p->n_cg_left++;
	return 0;
}

static int
cg_from_files(struct survey *p, size_t *cap, const char *mnt, char (**live)[CGROUP_PATH_MAX],
	      size_t *n_live, struct pidset *held_pids, bool held_only)
{
	char dir[PATH_MAX];
	struct sbuf b = { 0 };
	size_t cap_live = 0;
	int rc = 0;
	DIR *d = open_runtime_sub(dir, sizeof(dir), p->uid, "instances");

	if (d == NULL) {
		return 0;
	}
	for (const struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
		struct cg_file f;
		struct stat st;
		char *end;
		long pid;
		int fd;
		bool held;

		errno = 0;
		pid = strtol(e->d_name, &end, 10);
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || *end != '\0' || errno != 0 ||
		    pid > INT_MAX) {
			continue;
		}
		fd = openat(dirfd(d), e->d_name,
			    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd == -1) {
			continue;
		}
		if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_uid != p->uid ||
		    (st.st_mode & 0022) != 0) {
			sys_close(&fd);
			continue;
		}
		/* Its instance holds it under LOCK_EX while it runs. */
		held = flock(fd, LOCK_SH | LOCK_NB) == -1;
		if (held && errno != EWOULDBLOCK) {
			sys_close(&fd);
			continue;
		}
		memset(&f, 0, sizeof(f));
		if (held && held_add(held_pids, pid) == -1) {
			rc = -1;
		} else if (pread_all(fd, &b, SURVEY_STATUS_MAX_BYTES) == -1 ||
			   cg_file_parse(b.buf != NULL ? b.buf : "", b.len, (pid_t)pid, &f) == -1) {
			rc = errno == ENOMEM ? -1 : 0;
		} else if (f.dir[0] == '\0' || !cg_path_ok(mnt, f.dir, (pid_t)pid)) {
			/* no cgroup, or not one of its own */
		} else if (held) {
			if (*n_live == cap_live) {
				size_t nc = cap_live ? cap_live * 2 : 4;
				char(*nv)[CGROUP_PATH_MAX] = realloc(*live, nc * sizeof(*nv));

				if (nv == NULL) {
					rc = -1;
				} else {
					*live = nv;
					cap_live = nc;
				}
			}
			if (rc == 0) {
				(void)snprintf((*live)[(*n_live)++], CGROUP_PATH_MAX, "%s", f.dir);
			}
		} else if (!held_only) {
			int err;
			bool unsure = false;
			/* A start time that cannot be compared (unsure) counts as alive. */
			bool owner_gone =
				f.owner[0] != '\0'
					? procscan_owner_judge(&p->scan, SURVEY_PROC_ROOT, f.owner,
							       &err, &unsure) == PROCSCAN_GONE &&
						  !unsure
					: status_stale(&p->scan, (pid_t)pid);

			/*
			 * A lock that is free, and its owner gone (not a pid reused by it), and
			 * its pid no live instance's of a pid namespace below (whose cgroup it
			 * would name), nor, here, that of a live instance of another runtime
			 * directory (or of a process older than the cgroup) that made the
			 * cgroup of that name again once the gone instance's was removed.  One
			 * left to a process that is no instance keeps its file (sweep).
			 */
			enum named_keep k = NAMED_NONE;

			if (owner_gone && !named_in_pidns(&p->scan, (pid_t)pid) &&
			    (k = named_keeps(&p->scan, (pid_t)pid, f.dir, f.owner)) !=
				    NAMED_INSTANCE &&
			    cg_mine(f.dir, p->uid) && !cg_taken(p, f.dir)) {
				rc = k == NAMED_OTHER
					     ? cg_left_add(p, (pid_t)pid, f.dir)
					     : cg_add(p, cap, f.dir, (pid_t)pid, (pid_t)pid, &f);
			}
		}
		if (!held) {
			(void)flock(fd, LOCK_UN);
		}
		free(f.leaf);
		sys_close(&fd);
	}
	sbuf_release(&b);
	(void)closedir(d);
	return rc;
}

/*
 * Did pid, which the scan saw as no instance, exec since (its comm another now)?  An
 * instance makes its cgroup after its exec: a cgroup listed after the scan and named after
 * a process that the scan saw before that exec (a starting mcpmux) is its.  Unreadable:
 * taken as yes.
 */
static bool
named_execd(const struct procscan *s, pid_t pid)
{
	char path[64], comm[sizeof(s->v[0].comm)];
	size_t i = procscan_find(s, pid);
	ssize_t n;
	int fd;

	if (i == SIZE_MAX || pid_gone(pid)) {
		return false; /* gone: status_stale() said so */
	}
	(void)snprintf(path, sizeof(path), SURVEY_PROC_ROOT "/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		return errno != ENOENT && errno != ESRCH;
	}
	n = read(fd, comm, sizeof(comm) - 1);
	(void)close(fd);
	if (n <= 0) {
		return n == -1 && errno != ESRCH;
	}
	comm[n] = '\0';
	comm[strcspn(comm, "\n")] = '\0';
	return strcmp(comm, s->v[i].comm) != 0 || strcmp(comm, "mcpmux") == 0;
}

/*
 * Is pid a live process that started before the cgroup dir was made (so maybe its maker,
 * an instance not known as one: renamed, or run under another program)?  A process that
 * started after it cannot have made it: a pid reused.  The start is compared with the
 * directory's time with a second's slack toward yes (a kernfs time may look later than the
 * making, never earlier).  Unknown: yes.
 */
/*
 * Did a process that started at start (clock ticks since boot, as /proc reads here) start
 * no later than dir was made (its ctime, a second's slack)?  -1 when that cannot be told
 * (dir unreadable but there, a clock), 0 no, 1 yes; dir gone: 0.
 */
static int
started_before_made(unsigned long long start, const char *dir)
{
	struct timespec boot, real;
	struct stat st;
	long hz = sysconf(_SC_CLK_TCK);

	if (lstat(dir, &st) == -1) {
		return errno != ENOENT ? -1 : 0;
	}
	if (hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &boot) == -1 ||
	    clock_gettime(CLOCK_REALTIME, &real) == -1) {
		return -1;
	}
	double now_boot = (double)boot.tv_sec + (double)boot.tv_nsec / 1e9;
	double started = (double)real.tv_sec + (double)real.tv_nsec / 1e9 -
			 (now_boot - (double)start / (double)hz);
	double made = (double)st.st_ctim.tv_sec + (double)st.st_ctim.tv_nsec / 1e9;

	return started <= made + 1.0;
}

static bool
named_older(pid_t pid, const char *dir)
{
	unsigned long long start = 0;
	struct stat st;

	if (lstat(dir, &st) == -1) {
		return errno != ENOENT;
	}
	if (proctree_start_time(SURVEY_PROC_ROOT, pid, &start) == -1) {
		return !pid_gone(pid);
	}
	return started_before_made(start, dir) != 0;
}

/*
 * Is pid the pid, in a pid namespace below this one, of a live instance (or of a process
 * there that cannot be read whole, which may be one)?  An instance names its cgroup after
 * its pid in its own pid namespace: an idle one's is empty, and its pid may be no process
 * here.
 */
static bool
named_in_pidns(const struct procscan *s, pid_t pid)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *pr = &s->v[i];

		if (pr->ns_pid == pid && pr->ns_depth > 0 && pr->state != 'Z' && pr->state != 'X' &&
		    (pr->mode != PROCSCAN_NONE || pr->read_errno != 0 || pr->env_unread)) {
			return true;
		}
	}
	return false;
}

/*
 * Does the live process pid keep the cgroup dir named after it: one that the scan found an
 * instance (NAMED_INSTANCE), or that exec'd since (named_execd()), or that started before
 * dir was made (its maker, maybe an mcpmux renamed: named_older())?  A zombie keeps nothing
 * (the gone instance itself, not reaped yet, whatever its start time says).  dead_owner:
 * the MCPMUX_OWNER of the gone instance whose status file names dir ("" none): a process
 * that started no later than that instance had pid at the same time as it, so that
 * instance was of another pid namespace (below, a container's), and dir its own: such a
 * process is not taken for its maker.  That start is read in the instance's own clock:
 * one that says it started after dir was made (which it made after it started) is of
 * another time namespace, and proves nothing: then named_older() judges, as for none.
 */
static enum named_keep
named_keeps(const struct procscan *s, pid_t pid, const char *dir, const char *dead_owner)
{
	unsigned long long dead_start, start;
	pid_t dead_pid;

	if (pid_gone(pid)) {
		return NAMED_NONE;
	}
	size_t i = procscan_find(s, pid);

	if (i != SIZE_MAX && s->v[i].mode != PROCSCAN_NONE) {
		return NAMED_INSTANCE;
	}
	if (proctree_exiting(SURVEY_PROC_ROOT, pid)) {
		return NAMED_NONE;
	}
	if (named_execd(s, pid)) {
		return NAMED_OTHER;
	}
	if (dead_owner[0] != '\0' &&
	    procscan_parse_owner(dead_owner, &dead_pid, &dead_start) == 0 && dead_pid == pid &&
	    proctree_start_time(SURVEY_PROC_ROOT, pid, &start) == 0 && start <= dead_start &&
	    started_before_made(dead_start, dir) == 1) {
		return NAMED_NONE;
	}
	return named_older(pid, dir) ? NAMED_OTHER : NAMED_NONE;
}

/*
 * The "mcpmux.PID[.K]" cgroups below this process's own cgroup, where an mcpmux started
 * from here makes its own, whose PID is gone or is a process the scan found no instance.
 * 0, or -1 (ENOMEM).
 */
static int
cg_from_own(struct survey *p, size_t *cap, char (*live)[CGROUP_PATH_MAX], size_t n_live,
	    const struct pidset *held_pids)
{
	char own[CGROUP_PATH_MAX], dir[CGROUP_PATH_MAX + 256];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (cgroup_own(own, sizeof(own)) == -1 || (d = opendir(own)) == NULL) {
		return 0;
	}
	while (rc == 0 && (de = readdir(d)) != NULL) {
		pid_t pid;

		if (de->d_type != DT_DIR || cgroup_instance_pid(de->d_name, &pid) == -1 ||
		    (size_t)snprintf(dir, sizeof(dir), "%s/%s", own, de->d_name) >=
			    CGROUP_PATH_MAX ||
		    cg_listed(live, n_live, dir) || cg_taken(p, dir) || held_has(held_pids, pid) ||
		    !status_stale(&p->scan, pid) || named_execd(&p->scan, pid) ||
		    (!pid_gone(pid) && named_older(pid, dir)) || named_in_pidns(&p->scan, pid) ||
		    !cg_mine(dir, p->uid)) {
			continue;
		}
		rc = cg_add(p, cap, dir, pid, 0, NULL);
	}
	closedir(d);
	return rc;
}

struct cg_walk {
	struct survey *p;
	size_t cg;
	int rc;
	bool first;	   /* the first look: a process the scan did not see keeps the cgroup */
	unsigned ns_depth; /* the scanning process's pid namespace depth */
};

/* Is v[i] or one of its ancestors a live instance (in any pid namespace seen from here)? */
static bool
below_instance(const struct procscan *s, size_t i)
{
	for (size_t n = 0; i != SIZE_MAX && n < 4096; n++, i = s->v[i].parent) {
		if (s->v[i].mode != PROCSCAN_NONE) {
			return true;
		}
	}
	return false;
}

static void
cg_proc(void *ctx, const char *top, pid_t pid)
{
	struct cg_walk *w = ctx;
	struct survey *p = w->p;
	struct survey_cgroup *c = &p->cg[w->cg];
	size_t i = procscan_find(&p->scan, pid);

	if (w->rc == -1) {
		return;
	}
	if (i == SIZE_MAX) {
		/* Started since the scan: unknown at first; later, a fork the next look sees. */
		c->live = c->live || w->first;
		return;
	}
	const struct procscan_proc *pr = &p->scan.v[i];

	if (pr->group != SIZE_MAX) {
		/* An orphan's carrier is ended by its cookie; a live one's keeps it all. */
		c->live = c->live || p->scan.g[pr->group].owner_state != PROCSCAN_GONE;
		return;
	}
	/*
	 * A live instance's, whatever the cgroup's name says (the PID of the name is in the
	 * instance's pid namespace, maybe not this one): a process below a live instance, one
	 * in another pid namespace than this, or one whose environment or state cannot be
	 * read keeps the whole cgroup.
	 */
	bool dead = pr->state == 'Z' && pr->thread == 0;

	if (below_instance(&p->scan, i) || pr->ns_depth != w->ns_depth ||
	    (!dead && (pr->read_errno != 0 || pr->env_unread || !pr->is_read))) {
		c->live = true;
		return;
	}
	if ((pr->state == 'Z' && pr->thread == 0) || (pr->uid != p->uid && !p->all_users)) {
		return;
	}
	if (p->n_cgp == p->cap_cgp) {
		size_t nc = p->cap_cgp ? p->cap_cgp * 2 : 16;
		struct survey_cgproc *nv = realloc(p->cgp, nc * sizeof(*nv));

		if (nv == NULL) {
			w->rc = -1;
			return;
		}
		p->cgp = nv;
		p->cap_cgp = nc;
	}
	struct survey_cgproc *x = &p->cgp[p->n_cgp++];

	x->cg = w->cg;
	x->proc = i;
	x->session[0] = '\0';
	for (size_t k = 0; top != NULL && k < c->n_leaf; k++) {
		if (strcmp(c->leaf[k].leaf, top) == 0) {
			(void)snprintf(x->session, sizeof(x->session), "%s", c->leaf[k].session);
			break;
		}
	}
}

/* The first look: each cgroup below, by inode, to tell from one made later. */
static void
cg_dir(void *ctx, ino_t ino)
{
	struct cg_walk *w = ctx;
	struct survey_cgroup *c = &w->p->cg[w->cg];

	if (!w->first || c->below_failed) {
		return;
	}
	if (c->n_below == c->cap_below) {
		size_t nc = c->cap_below ? c->cap_below * 2 : 4;
		ino_t *nv = realloc(c->below, nc * sizeof(*nv));

		if (nv == NULL) {
			c->below_failed = true; /* then none of them goes */
			return;
		}
		c->below = nv;
		c->cap_below = nc;
	}
	c->below[c->n_below++] = ino;
}

static int
ino_cmp(const void *a, const void *b)
{
	ino_t x = *(const ino_t *)a, y = *(const ino_t *)b;

	return x < y ? -1 : x > y;
}

bool
survey_cgroup_below(const struct survey *p, size_t k, ino_t ino)
{
	const struct survey_cgroup *c = &p->cg[k];

	return !c->below_failed && c->n_below > 0 &&
	       bsearch(&ino, c->below, c->n_below, sizeof(ino), ino_cmp) != NULL;
}

static int
cgproc_cmp(const void *a, const void *b)
{
	const struct survey_cgproc *x = a, *y = b;

	if (x->cg != y->cg) {
		return x->cg < y->cg ? -1 : 1;
	}
	int d = strcmp(x->session, y->session);

	return d != 0 ? d : (x->proc < y->proc ? -1 : x->proc > y->proc);
}

/* survey_cgroup_procs(); first: the look of survey_read_cgroups(). */
static int
cgroup_procs(struct survey *p, bool first)
{
	size_t self = procscan_find(&p->scan, getpid());
	unsigned depth = self != SIZE_MAX ? p->scan.v[self].ns_depth : 0;

	p->n_cgp = 0;
	for (size_t k = 0; k < p->n_cg; k++) {
		struct cg_walk w = { p, k, 0, first, depth };
		size_t from = p->n_cgp;

		if (p->cg[k].live) {
			continue;
		}
		if (cgroup_procs_each(p->cg[k].dir, cg_proc, cg_dir, &w) == -1) {
			/* What it holds is not all known: left alone. */
			if (first) {
				diag_warn_errno("cannot read all of the cgroup %s of an instance "
						"that is gone (left alone)",
						p->cg[k].dir);
				p->cg_unread = true;
			}
			p->cg[k].live = true;
		}
		if (w.rc == -1) {
			errno = ENOMEM;
			return -1;
		}
		if (p->cg[k].live) {
			p->n_cgp = from;
		}
		if (first && p->cg[k].n_below > 1) {
			qsort(p->cg[k].below, p->cg[k].n_below, sizeof(ino_t), ino_cmp);
		}
	}
	if (p->n_cgp > 1) {
		qsort(p->cgp, p->n_cgp, sizeof(*p->cgp), cgproc_cmp);
	}
	return 0;
}

int
survey_cgroup_procs(struct survey *p)
{
	return cgroup_procs(p, false);
}

int
survey_read_cgroups(struct survey *p)
{
	char mnt[CGROUP_PATH_MAX];
	char(*live)[CGROUP_PATH_MAX] = NULL;
	struct pidset held = { NULL, 0, 0 };
	size_t n_live = 0, cap = 0;
	int rc = 0;

	if (cgroup_mount(mnt, sizeof(mnt)) == -1) {
		return 0; /* no cgroup v2 here */
	}
	if (cg_from_files(p, &cap, mnt, &live, &n_live, &held, false) == -1 ||
	    cg_from_own(p, &cap, live, n_live, &held) == -1 || cgroup_procs(p, true) == -1) {
		rc = diag_error("out of memory");
	}
	free(live);
	free(held.v);
	return rc;
}

bool
survey_cgroup_still_dead(const struct survey *p, size_t k)
{
	const struct survey_cgroup *cg = &p->cg[k];
	char dir[PATH_MAX];
	DIR *d;

	if (cg->live) {
		return false;
	}
	/*
	 * A status file of its pid held now: an instance that took the pid, or its maker.
	 * Only "no such file" says it is not; any other failure to tell keeps the cgroup.
	 */
	if ((d = open_runtime_sub(dir, sizeof(dir), p->uid, "instances")) != NULL) {
		char name[32];

		(void)snprintf(name, sizeof(name), "%d", (int)cg->pid);
		int fd = openat(dirfd(d), name,
				O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		bool held = false;

		if (fd != -1) {
			held = flock(fd, LOCK_SH | LOCK_NB) == -1;
			if (!held) {
				(void)flock(fd, LOCK_UN);
			}
			sys_close(&fd);
		} else {
			held = errno != ENOENT;
		}
		(void)closedir(d);
		if (held) {
			return false;
		}
	} else if (errno != ENOENT) {
		return false;
	}
	/*
	 * Its pid an instance's of a pid namespace below (by a status file or by its name);
	 * or, here, an instance now, or a process older than the cgroup (by its name, or by
	 * a status file whose instance is gone: not a zombie, nor a process that had the pid
	 * while that instance ran).
	 */
	if (named_in_pidns(&p->scan, cg->pid) ||
	    named_keeps(&p->scan, cg->pid, cg->dir, cg->owner) != NAMED_NONE) {
		return false;
	}
	return true;
}

/* An empty cgroup made or given a leaf less than this long ago may be a starting instance's. */
#define CGROUP_YOUNG_S 5

/* CGROUP_YOUNG_S, or MCPMUX_SWEEP_YOUNG_S for the tests (docs/testing.md). */
static long
young_s(void)
{
	const char *e = getenv("MCPMUX_SWEEP_YOUNG_S");
	char *end;
	long v;

	if (e == NULL || *e == '\0') {
		return CGROUP_YOUNG_S;
	}
	errno = 0;
	v = strtol(e, &end, 10);
	if (*end != '\0' || errno != 0 || v < 0) {
		return CGROUP_YOUNG_S;
	}
	static bool said;

	if (v < CGROUP_YOUNG_S && !said) {
		said = true;
		diag_warn("MCPMUX_SWEEP_YOUNG_S=%ld (a setting for tests): an empty cgroup made "
			  "more than %ld s ago may be removed, even a starting instance's",
			  v, v);
	}
	return v;
}

bool
survey_cgroup_young(const char *dir)
{
	time_t now = time(NULL);
	long young = young_s();
	struct stat st;
	DIR *d;

	if (stat(dir, &st) == -1) {
		return errno != ENOENT;
	}
	if (now - st.st_ctime < young) {
		return true;
	}
	if ((d = opendir(dir)) == NULL) {
		return errno != ENOENT;
	}
	bool is_young = false;

	for (const struct dirent *e; !is_young && (e = readdir(d)) != NULL;) {
		if (e->d_type == DT_DIR && e->d_name[0] != '.') {
			is_young = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1
					   ? errno != ENOENT
					   : now - st.st_ctime < young;
		}
	}
	closedir(d);
	return is_young;
}

struct below {
	const struct survey *p;
	size_t k;
};

static bool
was_below(void *ctx, ino_t ino)
{
	const struct below *b = ctx;

	return survey_cgroup_below(b->p, b->k, ino);
}

int
survey_cgroup_remove(const struct survey *p, size_t k, bool found_empty)
{
	const struct survey_cgroup *cg = &p->cg[k];

	if (cg->live || !survey_cgroup_still_dead(p, k) ||
	    (found_empty && survey_cgroup_young(cg->dir))) {
		return 0;
	}
	struct below b = { p, k };

	if (cgroup_remove_known(cg->dir, was_below, &b) == -1) {
		return errno == EBUSY || errno == ENOENT ? 0 : -1;
	}
	return 1;
}

/*
 * Into out, the pids in their own pid namespace of the live processes of the pid namespaces
 * below this /proc's, from each /proc/PID/status alone: never a process's memory (cmdline,
 * environ), whose read may wait on the process.  0, or -1 (errno: /proc or a status could
 * not be read, or ENOMEM).
 */
static int
pids_below(struct pidset *out)
{
	DIR *d = opendir(SURVEY_PROC_ROOT);
	char *line = NULL;
	size_t cap = 0;
	int err = 0;

	if (d == NULL) {
		return -1;
	}
	for (;;) {
		char path[PATH_MAX];
		struct procscan_proc pr;
		char state = '?';
		const struct dirent *e;

		errno = 0;
		e = err == 0 ? readdir(d) : NULL;
		if (e == NULL) {
			if (err == 0 && errno != 0) {
				err = errno; /* a listing cut short is no list of every process */
			}
			break;
		}
		if (e->d_name[0] < '1' || e->d_name[0] > '9') {
			continue;
		}
		(void)snprintf(path, sizeof(path), SURVEY_PROC_ROOT "/%s/status", e->d_name);
		FILE *f = fopen(path, "re");

		if (f == NULL) {
			/* gone, or hidden from this user (hidepid): as sweep's scan */
			err = errno == ENOENT || errno == ESRCH || errno == EACCES || errno == EPERM
				      ? 0
				      : errno;
			continue;
		}
		memset(&pr, 0, sizeof(pr));
		errno = 0;
		while (getline(&line, &cap, f) != -1) {
			if (strncmp(line, "State:", 6) == 0) {
				state = line[6 + strspn(line + 6, " \t")];
			} else if (strncmp(line, "NSpid:", 6) == 0) {
				procscan_parse_nspid(line + 6, &pr);
			}
		}
		if (ferror(f) && errno != ESRCH) {
			err = errno != 0 ? errno : EIO;
		}
		(void)fclose(f);
		if (err == 0 && pr.ns_depth > 0 && state != 'Z' && state != 'X' &&
		    held_add(out, pr.ns_pid) == -1) {
			err = ENOMEM;
		}
	}
	free(line);
	(void)closedir(d);
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

size_t
survey_start_sweep(const char *inst)
{
	char parent[CGROUP_PATH_MAX], mnt[CGROUP_PATH_MAX], dir[CGROUP_PATH_MAX + 256];
	char(*live)[CGROUP_PATH_MAX] = NULL;
	const char *base = strrchr(inst, '/');
	struct pidset held = { NULL, 0, 0 }, below = { NULL, 0, 0 };
	size_t n_live = 0, cap = 0, gone = 0, n_left = 0;
	struct survey p;
	DIR *d;
	int rc = 0;

	/* The common case, nothing there that may be a gone instance's: nothing read. */
	if (base == NULL || (size_t)(base - inst) >= sizeof(parent) || !cgroup_stale_beside(inst) ||
	    cgroup_mount(mnt, sizeof(mnt)) == -1) {
		return 0;
	}
	memcpy(parent, inst, (size_t)(base - inst));
	parent[base - inst] = '\0';
	memset(&p, 0, sizeof(p));
	p.uid = getuid();
	/* No scan of the processes: one in a cgroup keeps it whole (sweep's business). */
	procscan_init(&p.scan);
	if (cg_from_files(&p, &cap, mnt, &live, &n_live, &held, true) == -1) {
		rc = -1;
	} else if ((d = opendir(parent)) != NULL) {
		for (const struct dirent *de; rc == 0 && (de = readdir(d)) != NULL;) {
			pid_t pid;

			/* Beside inst, named after no process here, and no held file's. */
			if (de->d_type != DT_DIR || strcmp(de->d_name, base + 1) == 0 ||
			    cgroup_instance_pid(de->d_name, &pid) == -1 ||
			    (size_t)snprintf(dir, sizeof(dir), "%s/%s", parent, de->d_name) >=
				    CGROUP_PATH_MAX ||
			    !pid_gone(pid) || held_has(&held, pid) ||
			    cg_listed(live, n_live, dir) || cg_taken(&p, dir) ||
			    !cg_mine(dir, p.uid)) {
				continue;
			}
			rc = cg_add(&p, &cap, dir, pid, 0, NULL);
		}
		closedir(d);
	}
	/* The first look: found empty (a process in it keeps it whole), and not young. */
	if (rc == 0 && p.n_cg > 0) {
		rc = cgroup_procs(&p, true);
	}
	for (size_t k = 0; rc == 0 && k < p.n_cg; k++) {
		if (!p.cg[k].live && survey_cgroup_young(p.cg[k].dir)) {
			p.cg[k].live = true;
		}
		n_left += !p.cg[k].live;
	}
	/* Named after the pid there of a process of a pid namespace below: maybe its. */
	if (rc == 0 && n_left > 0 && pids_below(&below) == -1) {
		if (errno == ENOMEM) {
			rc = -1;
		} else {
			diag_warn_errno("cannot read the processes in %s: the cgroups of instances "
					"that are gone are left",
					SURVEY_PROC_ROOT);
			n_left = 0;
		}
	}
	for (size_t k = 0; rc == 0 && n_left > 0 && k < p.n_cg; k++) {
		if (!p.cg[k].live && pid_gone(p.cg[k].pid) && !held_has(&below, p.cg[k].pid) &&
		    survey_cgroup_remove(&p, k, true) == 1) {
			gone++;
		}
	}
	if (rc == -1) {
		diag_warn("out of memory: the cgroups of instances that are gone are left");
	}
	free(live);
	free(held.v);
	free(below.v);
	survey_release(&p);
	if (gone > 0) {
		diag_info("cgroup: removed %zu empty cgroup(s) of mcpmux instances that are gone",
			  gone);
	}
	return gone;
}

static bool owner_of_pid(const char *owner, long pid);

/* Remove the record of the engine beside id file name of d (container.h), if any. */
static void
record_remove(DIR *d, const char *name)
{
	char rec[NAME_MAX + 1];

	if (container_record_path(name, rec, sizeof(rec)) == 0 &&
	    unlinkat(dirfd(d), rec, 0) == -1 && errno != ENOENT) {
		diag_warn_errno("cannot remove %s", rec);
	}
}

struct ended_ids {
	const char *const *ids;
	size_t n;
};

static bool cidfile_id(int fd, char *id, size_t cap);

/* Does the id file fd hold one of the ids (the engine's id, maybe a newline after it)? */
static bool
cidfile_names(int fd, void *ctx)
{
	const struct ended_ids *ei = ctx;
	char id[CONTAINER_ID_MAX + 1];

	if (!cidfile_id(fd, id, sizeof(id))) {
		return false;
	}
	for (size_t i = 0; i < ei->n; i++) {
		if (strcmp(ei->ids[i], id) == 0) {
			return true;
		}
	}
	return false;
}

size_t
survey_sweep_cidfiles(const char *const *ids, size_t n)
{
	char dir[PATH_MAX];
	uid_t uid = getuid();
	size_t removed = 0;
	DIR *d;

	if (n == 0) {
		return 0;
	}
	if ((d = open_runtime_sub(dir, sizeof(dir), uid, "cid")) == NULL) {
		if (errno != ENOENT) {
			diag_warn_errno("cannot look for the id files of the containers ended in "
					"%s/cid",
					dir);
		}
		return 0;
	}
	for (const struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);

		/* mcpmux's own: PID.SEQ.cid */
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || len < 5 ||
		    strcmp(e->d_name + len - 4, ".cid") != 0) {
			continue;
		}
		struct ended_ids ei = { ids, n };

		if (remove_own_file(d, dir, "cid", e->d_name, uid, cidfile_names, &ei) == 1) {
			removed++;
			record_remove(d, e->d_name);
		}
	}
	(void)closedir(d);
	return removed;
}

/* The id in id file fd, into id (NUL-terminated): true when it holds one that can be asked about.
 */
static bool
cidfile_id(int fd, char *id, size_t cap)
{
	char buf[CONTAINER_ID_MAX + 2];
	size_t len = 0;
	ssize_t r;

	while (len < sizeof(buf) &&
	       ((r = read(fd, buf + len, sizeof(buf) - len)) > 0 || (r == -1 && errno == EINTR))) {
		len += r > 0 ? (size_t)r : 0;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ')) {
		len--;
	}
	if (len == 0 || len > CONTAINER_ID_MAX || len >= cap) {
		return false; /* still empty (the engine has not written it), or no id */
	}
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		/* An engine's id: never a word an engine would take for an option. */
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
			return false;
		}
	}
	memcpy(id, buf, len);
	id[len] = '\0';
	return true;
}

/* Does the id file fd still hold id (read again under its descriptor)? */
static bool
cidfile_holds(int fd, void *ctx)
{
	const char *id = ctx;
	char now[CONTAINER_ID_MAX + 1];

	return cidfile_id(fd, now, sizeof(now)) && strcmp(now, id) == 0;
}

/*
 * The record beside id file name of d (container.h), read into b: 0, or -1 with errno
 * (ENOENT: there is none; EPERM: not a regular file of uid's; EFBIG: too long).
 */
static int
record_load(DIR *d, const char *name, uid_t uid, struct sbuf *b)
{
	char rec[NAME_MAX + 1], buf[16384];
	struct stat st;
	ssize_t got;
	int fd, err = 0;

	if (container_record_path(name, rec, sizeof(rec)) == -1) {
		errno = ENOENT;
		return -1;
	}
	fd = openat(dirfd(d), rec, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd == -1) {
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		err = errno;
	} else if (!S_ISREG(st.st_mode) || st.st_uid != uid) {
		err = EPERM;
	}
	while (err == 0 && (got = read(fd, buf, sizeof(buf))) != 0) {
		if (got == -1 && errno != EINTR) {
			err = errno;
		} else if (got > 0 && b->len + (size_t)got > CONTAINER_RECORD_MAX) {
			err = EFBIG;
		} else if (got > 0) {
			sbuf_add(b, buf, (size_t)got);
		}
	}
	sys_close(&fd);
	if (err == 0 && b->failed) {
		err = ENOMEM;
	}
	errno = err;
	return err == 0 ? 0 : -1;
}

/* The engine of a record and its context, for a message: its words, and its variables. */
static void
record_describe(char **v, size_t n_vars, size_t n_words, char *out, size_t cap)
{
	static const char *const shown[] = { "DOCKER_HOST", "DOCKER_CONTEXT", "CONTAINER_HOST",
					     "CONTAINER_CONNECTION", NULL };
	size_t at = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n_words && at < cap; i++) {
		char pr[256];

		at += (size_t)snprintf(out + at, cap - at, "%s%s", i > 0 ? " " : "",
				       survey_printable(v[n_vars + 1 + i], pr, sizeof(pr)));
	}
	for (size_t i = 0; i < n_vars && at < cap; i++) {
		for (size_t k = 0; shown[k] != NULL; k++) {
			size_t len = strlen(shown[k]);

			if (strncmp(v[i], shown[k], len) == 0 && v[i][len] == '=') {
				char pr[256];

				at += (size_t)snprintf(out + at, cap - at, " (%s)",
						       survey_printable(v[i], pr, sizeof(pr)));
			}
		}
	}
}

/*
 * What an engine did not answer: a listing of one id (the first pass) or an inspect (the
 * second).  Each is kept apart: an engine whose listing hangs (podman's ps on a stuck
 * container's lock) may still answer an inspect at once.
 */
enum silent_kind { SILENT_LIST = 'l', SILENT_INSPECT = 'i' };

/*
 * The key of a record's engine (v: container_record_parse()), its variables and words, for
 * a command of kind: malloc'd, *len bytes; NULL when out of memory.
 */
static char *
silent_key(char *const *v, size_t n_vars, size_t n_words, enum silent_kind kind, size_t *len)
{
	struct sbuf b = { 0 };
	char head[64];

	/* how many are variables: a launcher's word may look like one */
	(void)snprintf(head, sizeof(head), "%c%zu", (char)kind, n_vars);
	sbuf_add(&b, head, strlen(head) + 1);
	for (size_t i = 0; i < n_vars + 1 + n_words; i++) {
		if (i != n_vars) {
			sbuf_add(&b, v[i], strlen(v[i]) + 1);
		}
	}
	if (b.failed) {
		sbuf_release(&b);
		return NULL;
	}
	*len = b.len;
	return b.buf;
}

/* The engine of a record that did not answer in this sweep, or NULL. */
static struct survey_silent *
silent_find(const struct survey *p, char *const *v, size_t n_vars, size_t n_words,
	    enum silent_kind kind)
{
	size_t len = 0;
	char *key = silent_key(v, n_vars, n_words, kind, &len);
	struct survey_silent *found = NULL;

	for (size_t k = 0; key != NULL && found == NULL && k < p->n_silent; k++) {
		if (p->silent[k].key_len == len && memcmp(p->silent[k].key, key, len) == 0) {
			found = &p->silent[k];
		}
	}
	free(key);
	return found;
}

/*
 * The engine of a record did not answer, why; first: the id file whose keeping said so,
 * NULL when not said yet.  Out of memory, it is not kept (and may be asked again).
 */
static void
silent_add(struct survey *p, char *const *v, size_t n_vars, size_t n_words, enum silent_kind kind,
	   const char *why, const char *first)
{
	size_t len = 0;
	char *key = silent_key(v, n_vars, n_words, kind, &len);
	struct survey_silent *grown =
		key != NULL ? realloc(p->silent, (p->n_silent + 1) * sizeof(*grown)) : NULL;

	if (grown == NULL) {
		free(key);
		return;
	}
	p->silent = grown;
	struct survey_silent *s = &grown[p->n_silent++];

	memset(s, 0, sizeof(*s));
	s->key = key;
	s->key_len = len;
	record_describe((char **)(uintptr_t)v, n_vars, n_words, s->what, sizeof(s->what));
	(void)snprintf(s->why, sizeof(s->why), "%s", why);
	(void)snprintf(s->first, sizeof(s->first), "%s", first != NULL ? first : "");
}

enum lost_answer {
	LOST_GONE,  /* that engine, in that context, has no such container */
	LOST_THERE, /* it has */
	LOST_FAIL,  /* it cannot say: why */
};

/*
 * Ask the engine of a record (v: container_record_parse()), in its context, whether
 * container id is there.
 */
static enum lost_answer
lost_ask(char **v, size_t n_vars, size_t n_words, const char *id, char *why, size_t cap,
	 bool *silent)
{
	struct survey_run r;
	char **argv = container_inspect_argv(v + n_vars + 1, n_words, id);
	enum lost_answer a;

	*silent = false;
	if (argv == NULL) {
		(void)snprintf(why, cap, "out of memory");
		return LOST_FAIL;
	}
	int rc = survey_run_in(argv, v, SURVEY_RECORD_TIMEOUT_MS, &r);

	free(argv);
	*silent = rc == -1 || r.status == -1;
	if (rc == -1) {
		(void)snprintf(why, cap, "cannot run it: %s", strerror(r.spawn_errno));
		a = LOST_FAIL;
	} else if (survey_run_ok(&r)) {
		a = LOST_THERE;
	} else if (r.status != -1 && container_gone_output(&r.err_tail)) {
		a = LOST_GONE;
	} else {
		survey_run_failure(&r, why, cap);
		a = LOST_FAIL;
	}
	survey_run_release(&r);
	return a;
}

/*
 * Might process q be of this user's (a process whose stat or status could not be read:
 * whose /proc directory is)?
 */
static bool
maybe_users(const struct procscan_proc *q)
{
	char path[PATH_MAX];
	struct stat st;

	if (q->read_errno == 0) {
		return q->uid == getuid();
	}
	(void)snprintf(path, sizeof(path), "%s/%d", SURVEY_PROC_ROOT, (int)q->pid);
	return stat(path, &st) == -1 ? errno != ENOENT && errno != ESRCH : st.st_uid == getuid();
}

/*
 * Does anything of the instance of pid (gone: status_stale()) still run, or might it, among
 * this user's processes: its keeper ("mcpmux-keeper for PID", or its start when its
 * argument area cut the title short), a process that carries its owner (PID:START, whatever
 * the start: a gone instance's pid is not reused by another mcpmux while its carriers are
 * there to tell), one whose owner is too long to read, or one that could not be read (its
 * stat, status or environment)?  Pid 1 is not counted: the first process of the pid
 * namespace sweep reads is never one an mcpmux started there.
 */
static bool
instance_left(const struct procscan *s, long pid)
{
	char title[64];
	int n = snprintf(title, sizeof(title), "mcpmux-keeper for %ld", pid);

	for (size_t i = 0; i < s->n; i++) {
		const struct procscan_proc *q = &s->v[i];

		if (q->pid == 1 || !maybe_users(q)) {
			continue; /* init, or another user's */
		}
		if (q->read_errno != 0) {
			return true; /* what it is cannot be known */
		}
		if (q->state == 'Z' || q->state == 'X') {
			continue; /* dead */
		}
		if (q->env_unread || q->owner_cut ||
		    (q->has_owner && owner_of_pid(q->owner, pid))) {
			return true;
		}
		if (strcmp(q->comm, "mcpmux-keeper") == 0) {
			size_t w = q->argv != NULL ? strnlen(q->argv, q->argv_len) : 0;

			/* the whole title, or its start filling the argument area */
			if (q->argv == NULL || (w <= (size_t)n && memcmp(q->argv, title, w) == 0 &&
						(w == (size_t)n || w + 1 >= q->argv_len))) {
				return true;
			}
		}
	}
	return false;
}
/*
 * The id in mcpmux's own id file name of directory d, if it is a regular file of uid's
 * with an id in it (one still empty: its engine may be making it).
 */
static bool
own_cid_id(DIR *d, const char *name, uid_t uid, char *id, size_t size)
{
	struct stat st;
	int fd = openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	bool got;

	if (fd == -1) {
		return false;
	}
	got = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == uid &&
	      cidfile_id(fd, id, size);
	sys_close(&fd);
	return got;
}

size_t
survey_sweep_lost_cidfiles(struct survey *p)
{
	char dir[PATH_MAX];
	uid_t uid = getuid();
	size_t removed = 0;
	DIR *d;

	if ((d = open_runtime_sub(dir, sizeof(dir), uid, "cid")) == NULL) {
		if (errno != ENOENT) {
			diag_warn_errno(
				"cannot look for the id files of containers that are gone in "
				"%s/cid",
				dir);
		}
		return 0;
	}
	for (const struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);
		char id[CONTAINER_ID_MAX + 1], why[512], what[1024];
		struct sbuf rec = { 0 };
		struct stat st;
		size_t n_vars = 0, n_words = 0;
		const char *run = NULL, *not ;
		struct container_run cr;
		struct survey_silent *quiet;
		char **v = NULL, *end;
		long pid;

		/* mcpmux's own, PID.SEQ.cid or its record PID.SEQ.ctx, of an instance that is gone
		 */
		errno = 0;
		pid = strtol(e->d_name, &end, 10);
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || *end != '.' || errno != 0 ||
		    pid > INT_MAX || len < 5 ||
		    (strcmp(e->d_name + len - 4, ".cid") != 0 &&
		     strcmp(e->d_name + len - 4, ".ctx") != 0) ||
		    !status_stale(&p->scan, (pid_t)pid)) {
			continue;
		}
		if (strcmp(e->d_name + len - 4, ".ctx") == 0) {
			/*
			 * A record whose id file is gone (never written: a run that failed), once
			 * nothing of its instance runs: its keeper, or an engine's command that
			 * may write the id file yet (podman writes it once it made the container).
			 */
			char cid[NAME_MAX + 1];

			(void)snprintf(cid, sizeof(cid), "%.*s.cid", (int)(len - 4), e->d_name);
			if (!instance_left(&p->scan, pid) &&
			    fstatat(dirfd(d), cid, &st, AT_SYMLINK_NOFOLLOW) == -1 &&
			    errno == ENOENT &&
			    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode) && st.st_uid == uid) {
				(void)unlinkat(dirfd(d), e->d_name, 0);
			}
			continue;
		}
		bool ask = own_cid_id(d, e->d_name, uid, id, sizeof(id));

		if (!ask) {
			continue; /* still empty: its engine may be making it (the keeper's) */
		}
		/*
		 * Only the engine that made it, asked in the context it was made in, can say
		 * that it is gone (removed by hand): another engine, or the same in another
		 * context (DOCKER_HOST, --context, --url, --root), does not know of it.
		 */
		if (record_load(d, e->d_name, uid, &rec) == -1) {
			diag_warn(
				"sweep: keeping %s/cid/%s: no record of the engine of its container "
				"%.12s (%s)",
				dir, e->d_name, id,
				errno == ENOENT ? "made by an older mcpmux, or not written"
						: strerror(errno));
		} else if ((v = container_record_parse(rec.buf != NULL ? rec.buf : "", rec.len,
						       &n_vars, &n_words, &run)) == NULL) {
			diag_warn(
				"sweep: keeping %s/cid/%s: the record of the engine of its container "
				"%.12s cannot be read (%s)",
				dir, e->d_name, id, strerror(errno));
		} else if ((not = container_record_engine(v + n_vars + 1, n_words, &cr)) != NULL) {
			record_describe(v, n_vars, n_words, what, sizeof(what));
			diag_warn(
				"sweep: keeping %s/cid/%s: the engine of its container %.12s, %s, "
				"is not run: %s",
				dir, e->d_name, id, what, not );
		} else if ((not = container_record_unpinned(v, n_vars, v + n_vars + 1, &cr)) !=
			   NULL) {
			/* Asked now, it would answer for another context than the run's. */
			record_describe(v, n_vars, n_words, what, sizeof(what));
			diag_warn("sweep: keeping %s/cid/%s: %s cannot be asked about container "
				  "%.12s in the context of its run: %s",
				  dir, e->d_name, what, id, not );
		} else if ((quiet = silent_find(p, v, n_vars, n_words, SILENT_INSPECT)) != NULL) {
			/* It did not answer about another record in this sweep: not asked again. */
			if (quiet->first[0] == '\0') {
				diag_warn(
					"sweep: keeping %s/cid/%s: %s cannot say whether container "
					"%.12s is there: %s",
					dir, e->d_name, quiet->what, id, quiet->why);
				(void)snprintf(quiet->first, sizeof(quiet->first), "%s", e->d_name);
			} else {
				quiet->kept++;
			}
		} else {
			bool silent;
			enum lost_answer a =
				lost_ask(v, n_vars, n_words, id, why, sizeof(why), &silent);

			record_describe(v, n_vars, n_words, what, sizeof(what));
			if (a == LOST_FAIL) {
				diag_warn(
					"sweep: keeping %s/cid/%s: %s cannot say whether container "
					"%.12s is there: %s",
					dir, e->d_name, what, id, why);
				if (silent) {
					silent_add(p, v, n_vars, n_words, SILENT_INSPECT, why,
						   e->d_name);
				}
			} else if (a == LOST_GONE && remove_own_file(d, dir, "cid", e->d_name, uid,
								     cidfile_holds, id) == 1) {
				removed++;
				record_remove(d, e->d_name);
			}
		}
		free(v);
		sbuf_release(&rec);
	}
	(void)closedir(d);
	/* One line for each engine that left files unasked: its first file was said. */
	for (size_t k = 0; k < p->n_silent; k++) {
		const struct survey_silent *q = &p->silent[k];

		if (q->kept > 0) {
			diag_warn(
				"sweep: keeping %zu more id file(s) in %s/cid of containers of %s: "
				"not asked again in this sweep, as it did not answer (said for %s)",
				q->kept, dir, q->what, q->first);
		}
	}
	return removed;
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
		      "  -q, --quiet           no notes about container engines\n"
		      "Exit status: 0, or 1 when something could not be ended.\n",
		      stdout);
	} else {
		fputs("usage: mcpmux ps [--json] [--session PATTERN] [-q]\n"
		      "\n"
		      "The running mcpmux instances of this user (of every user for root), their\n"
		      "sessions, the orphans of instances that are gone, and the containers\n"
		      "labelled by mcpmux.  From /proc, the container engines' listings, and\n"
		      "the status files the running instances keep (states, idle times).\n"
		      "\n"
		      "  --json                one JSON object (docs/ps.md describes it)\n"
		      "  --session PATTERN     only sessions whose ID matches PATTERN (glob)\n"
		      "  -q, --quiet           no notes about container engines\n",
		      stdout);
	}
}

/* 0 to go on, 1 after --help, -1 on a usage error. */
int
survey_parse(struct survey_opts *o, int argc, char **argv, bool sweep)
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

	/*
	 * Each line said: two engines, or instances, fail at the same call site within a
	 * second, and a run without a loop has no place to say the sum of the repeats.
	 */
	diag_sum_repeats(false);
	memset(o, 0, sizeof(*o));
	o->sweep = sweep;
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
		default:
			return cli_option_error(c, argv, longopts,
						sweep ? "mcpmux sweep" : "mcpmux ps");
		}
	}
	if (optind < argc) {
		return diag_error("unexpected argument '%s' (see mcpmux %s --help)", argv[optind],
				  sub);
	}
	return 0;
}

/* Is id that of a container the engines' own listings have? */
static bool
listed_by_engines(const struct survey *p, const char *id)
{
	for (size_t e = 0; e < SURVEY_ENGINES; e++) {
		for (size_t k = 0; k < p->engines[e].n; k++) {
			if (strcmp(p->engines[e].v[k].id, id) == 0) {
				return true;
			}
		}
	}
	return false;
}

/* Is owner ("PID:STARTTIME") of pid? */
static bool
owner_of_pid(const char *owner, long pid)
{
	char *end;
	long o;

	errno = 0;
	o = strtol(owner, &end, 10);
	return owner[0] >= '1' && owner[0] <= '9' && errno == 0 && *end == ':' && o == pid;
}

/*
 * The container of id file name (id in it, of pid's run) in the context of its run, by
 * the record beside it: added to p->rec when the engine lists it as that run's.  0, or -1
 * when out of memory.
 */
static int
recorded_one(struct survey *p, DIR *d, const char *name, uid_t uid, const char *id, long pid)
{
	struct sbuf rec = { 0 };
	struct survey_run r;
	struct container_info *list = NULL;
	struct container_run cr;
	size_t n_vars = 0, n_words = 0, n = 0;
	const char *run = NULL;
	char **v = NULL, **argv = NULL;
	int rc = 0;

	if (record_load(d, name, uid, &rec) == -1 ||
	    (v = container_record_parse(rec.buf != NULL ? rec.buf : "", rec.len, &n_vars, &n_words,
					&run)) == NULL) {
		rc = errno == ENOMEM ? -1 : 0;
		goto out;
	}
	/* The engine the words name, as the run's command was read, run only by the path
	 * found for the run (survey_sweep_lost_cidfiles() says why not). */
	if (container_record_engine(v + n_vars + 1, n_words, &cr) != NULL ||
	    silent_find(p, v, n_vars, n_words, SILENT_LIST) != NULL) {
		goto out; /* not run, or it did not answer about another record */
	}
	if ((argv = container_list_one_argv(v + n_vars + 1, n_words, cr.engine, run, id)) == NULL) {
		rc = -1;
		goto out;
	}
	int ran = survey_run_in(argv, v, SURVEY_RECORD_TIMEOUT_MS, &r);

	if (ran == 0 && survey_run_ok(&r) && !r.out_cut &&
	    container_parse_list(cr.engine, r.out.buf != NULL ? r.out.buf : "", r.out.len, &list,
				 &n) == -1 &&
	    errno == ENOMEM) {
		rc = -1;
	}
	if (ran == -1 || r.status == -1) {
		char why[512];

		if (ran == -1) {
			(void)snprintf(why, sizeof(why), "cannot run it: %s",
				       strerror(r.spawn_errno));
		} else {
			survey_run_failure(&r, why, sizeof(why));
		}
		silent_add(p, v, n_vars, n_words, SILENT_LIST, why, NULL);
	}
	survey_run_release(&r);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct container_info *c = &list[i];

		/* That whole id, with the run's own label, of an owner of the file's pid. */
		if (strcmp(c->id, id) != 0 || strcmp(c->run, run) != 0 ||
		    !owner_of_pid(c->owner, pid)) {
			continue;
		}
		struct survey_recorded *grown = realloc(p->rec, (p->n_rec + 1) * sizeof(*grown));

		if (grown == NULL) {
			rc = -1;
			break;
		}
		p->rec = grown;
		grown[p->n_rec].c = *c;
		grown[p->n_rec].text = rec.buf;
		grown[p->n_rec].v = v;
		grown[p->n_rec].n_vars = n_vars;
		grown[p->n_rec].n_words = n_words;
		p->n_rec++;
		rec.buf = NULL; /* now the entry's */
		v = NULL;
		break;
	}
out:
	free(list);
	free(argv);
	free(v);
	sbuf_release(&rec);
	return rc;
}

int
survey_read_recorded(struct survey *p)
{
	char dir[PATH_MAX];
	uid_t uid = getuid();
	int rc = 0;
	DIR *d;

	if ((d = open_runtime_sub(dir, sizeof(dir), uid, "cid")) == NULL) {
		return 0; /* survey_sweep_lost_cidfiles() says why */
	}
	for (const struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
		size_t len = strlen(e->d_name);
		char id[CONTAINER_ID_MAX + 1], *end;
		long pid;

		/* mcpmux's own, PID.SEQ.cid, of an instance that is gone */
		errno = 0;
		pid = strtol(e->d_name, &end, 10);
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || *end != '.' || errno != 0 ||
		    pid > INT_MAX || len < 5 || strcmp(e->d_name + len - 4, ".cid") != 0 ||
		    !status_stale(&p->scan, (pid_t)pid)) {
			continue;
		}
		bool ask = own_cid_id(d, e->d_name, uid, id, sizeof(id));

		for (size_t k = 0; ask && k < p->n_rec; k++) {
			ask = strcmp(p->rec[k].c.id, id) != 0;
		}
		if (ask && !listed_by_engines(p, id)) {
			rc = recorded_one(p, d, e->d_name, uid, id, pid);
		}
	}
	(void)closedir(d);
	if (rc == -1) {
		diag_error("out of memory");
	}
	return rc;
}
