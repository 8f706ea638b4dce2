/*
 * http_testd: the HTTP layer (src/http.c) with canned handlers, for test_http.py.
 *
 * usage: http_testd [--listen SPEC]... [--listen-fds] [--max-head N] [--max-headers N]
 *                   [--max-body N] [--max-conns N] [--max-queue N] [--head-timeout S]
 *                   [--body-timeout S] [--idle-timeout S] [--write-timeout S]
 *                   [--keepalive S]
 *
 * Prints "ready PORT" (0 without a TCP listener) on stdout once it accepts connections;
 * SIGTERM frees the server (on_close for open exchanges) and exits 0.
 *
 * Handlers, by path:
 *   /echo                 200, the body as received
 *   /info                 200, "METHOD PATH QUERY VERSION N_HEADERS BODY_LEN LOOPBACK"
 *   /header?NAME          200, the value of header NAME (case-insensitive), 404 without
 *   /slow?MS              200 "slow" after MS milliseconds (an answer from a timer)
 *   /hold                 never answered: ends when the client goes (on_close)
 *   /sse?N[&SIZE]         an SSE stream: a priming event (id 0, retry 1000), then N events
 *                         with ids 1..N and SIZE bytes of data each (default 16), then
 *                         the end; written as the client takes it (http_stream_full)
 *   /sse-lines            one event whose data has LF, CRLF and CR line breaks
 *   /flood                an SSE stream that never ends: data whenever the queue allows
 *   /chunked?N            N chunks "chunk I\n" through http_stream_send, then the end
 *   /close                200 with "Connection: close"
 *   /stop-listening       200 "stopped", after closing the listeners
 *   /stats                200, JSON: the layer's counters, producers alive, open fds, RSS
 *   anything else         404
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "mcpmux/http.h"
#include "mcpmux/sys.h"

/* Per-request state of the handlers that answer later. */
struct job {
	struct http_req *rq;
	ev_timer timer_w; /* /slow */
	long n, sent;	  /* /sse, /flood */
	size_t size;
	bool flood;
	struct job *next, *prev;
};

static struct http_server *srv;
static struct ev_loop *loop;
static struct job *jobs;
static long n_jobs, n_closed_jobs;

static struct job *
job_new(struct http_req *rq)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		abort();
	}
	j->rq = rq;
	j->next = jobs;
	if (jobs != NULL) {
		jobs->prev = j;
	}
	jobs = j;
	n_jobs++;
	http_req_set_data(rq, j);
	return j;
}

static void
job_free(struct job *j)
{
	ev_timer_stop(loop, &j->timer_w);
	if (j->prev != NULL) {
		j->prev->next = j->next;
	} else {
		jobs = j->next;
	}
	if (j->next != NULL) {
		j->next->prev = j->prev;
	}
	n_jobs--;
	free(j);
}

static void
text(struct http_req *rq, int status, const char *s)
{
	static const struct http_field f[] = { { "Content-Type", "text/plain" } };

	(void)http_respond(rq, status, f, 1, s, strlen(s));
}

static long
query_num(const struct http_request *r, int which, long def)
{
	if (r->query == NULL) {
		return def;
	}
	const char *p = r->query;

	for (int i = 0; i < which; i++) {
		p = strchr(p, '&');
		if (p == NULL) {
			return def;
		}
		p++;
	}
	return strtol(p, NULL, 10);
}

static size_t
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	size_t n = 0;

	if (d == NULL) {
		return 0;
	}
	while (readdir(d) != NULL) {
		n++;
	}
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own descriptor */
}

static long
rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (f == NULL) {
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			v = strtol(line + 6, NULL, 10);
		}
	}
	fclose(f);
	return v;
}

/* Write events while the queue allows; end after the last. */
static void
sse_pump(struct job *j)
{
	char *data = malloc(j->size + 1);
	char id[24];

	if (data == NULL) {
		abort();
	}
	memset(data, 'x', j->size);
	while ((j->flood || j->sent < j->n) && !http_stream_full(j->rq)) {
		j->sent++;
		(void)snprintf(id, sizeof(id), "%ld", j->sent);
		if (http_sse_message(j->rq, id, data, j->size) == -1) {
			free(data);
			return; /* broken: on_close follows */
		}
	}
	free(data);
	if (!j->flood && j->sent == j->n) {
		struct http_req *rq = j->rq;

		job_free(j);
		(void)http_stream_end(rq);
	}
}

static void
on_slow(struct ev_loop *l, ev_timer *w, int revents)
{
	struct job *j = container_of(w, struct job, timer_w);
	struct http_req *rq = j->rq;

	(void)l;
	(void)revents;
	job_free(j);
	text(rq, 200, "slow\n");
}

static void
serve_stats(struct http_req *rq)
{
	struct http_stats st;
	char buf[1024];

	http_server_stats(srv, &st);
	(void)snprintf(buf, sizeof(buf),
		       "{\"conns\":%zu,\"exchanges\":%zu,\"queued\":%zu,\"accepted\":%llu,"
		       "\"rejected\":%llu,\"requests\":%llu,\"errors\":%llu,\"timeouts\":%llu,"
		       "\"closed\":%llu,\"jobs\":%ld,\"closed_jobs\":%ld,\"fds\":%zu,"
		       "\"rss_kib\":%ld}\n",
		       st.conns, st.exchanges, st.queued, (unsigned long long)st.accepted,
		       (unsigned long long)st.rejected, (unsigned long long)st.requests,
		       (unsigned long long)st.errors, (unsigned long long)st.timeouts,
		       (unsigned long long)st.closed, n_jobs, n_closed_jobs, count_fds(),
		       rss_kib());
	text(rq, 200, buf);
}

static bool
path_is(const struct http_request *r, const char *p)
{
	return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static void
on_request(struct http_req *rq, void *ctx)
{
	const struct http_request *r = http_req_request(rq);
	char buf[512];

	(void)ctx;
	if (path_is(r, "/echo")) {
		static const struct http_field f[] = { { "Content-Type",
							 "application/octet-stream" } };

		(void)http_respond(rq, 200, f, 1, r->body, r->body_len);
	} else if (path_is(r, "/info")) {
		(void)snprintf(buf, sizeof(buf), "%s %.*s %s %d %zu %zu %d\n", r->method_name,
			       (int)r->path_len, r->path, r->query ? r->query : "-", r->version,
			       r->n_headers, r->body_len, r->peer_is_loopback);
		text(rq, 200, buf);
	} else if (path_is(r, "/header")) {
		size_t n;
		const char *v = r->query ? http_req_header(rq, r->query, &n) : NULL;

		if (v == NULL) {
			text(rq, 404, "no such header\n");
		} else {
			(void)snprintf(buf, sizeof(buf), "%.*s\n", (int)n, v);
			text(rq, 200, buf);
		}
	} else if (path_is(r, "/slow")) {
		struct job *j = job_new(rq);

		ev_timer_init(&j->timer_w, on_slow, (double)query_num(r, 0, 100) / 1000., 0.);
		ev_timer_start(loop, &j->timer_w);
	} else if (path_is(r, "/hold")) {
		(void)job_new(rq);
	} else if (path_is(r, "/sse") || path_is(r, "/flood")) {
		struct job *j = job_new(rq);
		struct httpmsg_sse prime = {
			.id = "0", .retry_ms = 1000, .has_data = true, .data = "", .data_len = 0
		};

		j->flood = path_is(r, "/flood");
		j->n = query_num(r, 0, 3);
		j->size = (size_t)query_num(r, 1, j->flood ? 4096 : 16);
		if (http_sse_begin(rq, NULL, 0) == -1 || http_sse_send(rq, &prime) == -1) {
			return; /* on_close follows */
		}
		sse_pump(j);
	} else if (path_is(r, "/sse-lines")) {
		static const char data[] = "one\ntwo\r\nthree\rfour";

		if (http_sse_begin(rq, NULL, 0) == 0 &&
		    http_sse_message(rq, "7", data, sizeof(data) - 1) == 0) {
			(void)http_stream_end(rq);
		}
	} else if (path_is(r, "/chunked")) {
		static const struct http_field f[] = { { "Content-Type", "text/plain" } };
		long n = query_num(r, 0, 3);

		if (http_stream_begin(rq, 200, f, 1) == -1) {
			return;
		}
		for (long i = 1; i <= n; i++) {
			int k = snprintf(buf, sizeof(buf), "chunk %ld\n", i);

			if (http_stream_send(rq, buf, (size_t)k) == -1) {
				return;
			}
		}
		(void)http_stream_end(rq);
	} else if (path_is(r, "/close")) {
		static const struct http_field f[] = { { "Connection", "close" } };

		(void)http_respond(rq, 200, f, 1, "bye\n", 4);
	} else if (path_is(r, "/stop-listening")) {
		http_server_close_listeners(srv);
		text(rq, 200, "stopped\n");
	} else if (path_is(r, "/stats")) {
		serve_stats(rq);
	} else {
		text(rq, 404, "not found\n");
	}
}

static void
on_writable(struct http_req *rq, void *ctx)
{
	struct job *j = http_req_data(rq);

	(void)ctx;
	if (j != NULL && j->size > 0) {
		sse_pump(j);
	}
}

static void
on_close(struct http_req *rq, void *ctx)
{
	struct job *j = http_req_data(rq);

	(void)ctx;
	if (j != NULL) {
		n_closed_jobs++;
		job_free(j);
	}
}

static const struct http_handler handler = {
	.on_request = on_request,
	.on_writable = on_writable,
	.on_close = on_close,
};

static void
on_term(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(l, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
	struct http_limits lim;
	const char *listen[HTTP_LISTENERS_MAX];
	int n_listen = 0;
	bool listen_fds = false;
	ev_signal term_w;

	signal(SIGPIPE, SIG_IGN);
	http_limits_init(&lim);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--listen-fds") == 0) {
			listen_fds = true;
			continue;
		}
		if (v == NULL) {
			fprintf(stderr, "http_testd: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (strcmp(a, "--listen") == 0 && n_listen < HTTP_LISTENERS_MAX) {
			listen[n_listen++] = v;
		} else if (strcmp(a, "--max-head") == 0) {
			lim.max_head = strtoul(v, NULL, 10);
		} else if (strcmp(a, "--max-headers") == 0) {
			lim.max_headers = strtoul(v, NULL, 10);
		} else if (strcmp(a, "--max-body") == 0) {
			lim.max_body = strtoul(v, NULL, 10);
		} else if (strcmp(a, "--max-conns") == 0) {
			lim.max_conns = strtoul(v, NULL, 10);
		} else if (strcmp(a, "--max-queue") == 0) {
			lim.max_queue = strtoul(v, NULL, 10);
		} else if (strcmp(a, "--head-timeout") == 0) {
			lim.head_timeout = strtod(v, NULL);
		} else if (strcmp(a, "--body-timeout") == 0) {
			lim.body_timeout = strtod(v, NULL);
		} else if (strcmp(a, "--idle-timeout") == 0) {
			lim.idle_timeout = strtod(v, NULL);
		} else if (strcmp(a, "--write-timeout") == 0) {
			lim.write_timeout = strtod(v, NULL);
		} else if (strcmp(a, "--keepalive") == 0) {
			lim.sse_keepalive = strtod(v, NULL);
		} else {
			fprintf(stderr, "http_testd: unknown option %s\n", a);
			return 2;
		}
	}
	loop = EV_DEFAULT;
	srv = http_server_new(loop, &lim, &handler, NULL);
	if (srv == NULL) {
		return 1;
	}
	if (listen_fds) {
		int fds[HTTP_LISTENERS_MAX];
		int n = http_listen_fds(fds, HTTP_LISTENERS_MAX);

		if (n <= 0) {
			fprintf(stderr, "http_testd: no descriptors from socket activation\n");
			return 1;
		}
		for (int i = 0; i < n && i < HTTP_LISTENERS_MAX; i++) {
			if (http_server_listen_fd(srv, fds[i]) == -1) {
				return 1;
			}
		}
	}
	for (int i = 0; i < n_listen; i++) {
		if (http_server_listen(srv, listen[i]) == -1) {
			return 1;
		}
	}
	ev_signal_init(&term_w, on_term, SIGTERM);
	ev_signal_start(loop, &term_w);
	printf("ready %d\n", http_server_port(srv));
	fflush(stdout);
	ev_run(loop, 0);
	http_server_free(srv);
	ev_signal_stop(loop, &term_w);
	return jobs == NULL ? 0 : 3;
}
