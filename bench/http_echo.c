/*
 * http_echo: mcpmux's HTTP layer (src/http.c) as a keep-alive echo server, for
 * http_compare.py and docs/decisions.md.
 *
 *   http_echo PORT
 *
 * Every request is answered 200 with its body, except GET /sse?N&SIZE: an SSE stream of N
 * events with SIZE bytes of data each, written as the client takes it (the producer
 * holds back while http_stream_full() and resumes on on_writable()).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "mcpmux/http.h"

struct sse {
	long n, sent;
	size_t size;
	char *data;
};

static void
sse_pump(struct http_req *rq, struct sse *st)
{
	char id[24];

	while (st->sent < st->n && !http_stream_full(rq)) {
		st->sent++;
		(void)snprintf(id, sizeof(id), "%ld", st->sent);
		if (http_sse_message(rq, id, st->data, st->size) == -1) {
			return; /* on_close follows */
		}
	}
	if (st->sent == st->n) {
		http_req_set_data(rq, NULL);
		free(st->data);
		free(st);
		(void)http_stream_end(rq);
	}
}

static void
on_request(struct http_req *rq, void *ctx)
{
	const struct http_request *r = http_req_request(rq);
	static const struct http_field f[] = { { "Content-Type", "application/json" } };

	(void)ctx;
	if (r->method == HTTP_REQ_GET && r->path_len == 4 && memcmp(r->path, "/sse", 4) == 0) {
		struct sse *st = calloc(1, sizeof(*st));
		const char *amp = r->query != NULL ? strchr(r->query, '&') : NULL;

		if (st == NULL) {
			(void)http_respond(rq, 503, NULL, 0, NULL, 0);
			return;
		}
		st->n = r->query != NULL ? strtol(r->query, NULL, 10) : 1000;
		st->size = amp != NULL ? strtoul(amp + 1, NULL, 10) : 200;
		st->data = malloc(st->size + 1);
		if (st->data == NULL) {
			free(st);
			(void)http_respond(rq, 503, NULL, 0, NULL, 0);
			return;
		}
		memset(st->data, 'x', st->size);
		http_req_set_data(rq, st);
		if (http_sse_begin(rq, NULL, 0) == 0) {
			sse_pump(rq, st);
		}
		return;
	}
	(void)http_respond(rq, 200, f, 1, r->body, r->body_len);
}

static void
on_writable(struct http_req *rq, void *ctx)
{
	struct sse *st = http_req_data(rq);

	(void)ctx;
	if (st != NULL) {
		sse_pump(rq, st);
	}
}

static void
on_close(struct http_req *rq, void *ctx)
{
	struct sse *st = http_req_data(rq);

	(void)ctx;
	if (st != NULL) {
		free(st->data);
		free(st);
	}
}

static const struct http_handler handler = {
	.on_request = on_request,
	.on_writable = on_writable,
	.on_close = on_close,
};

int
main(int argc, char **argv)
{
	struct ev_loop *loop = EV_DEFAULT;
	struct http_limits lim;
	char spec[64];

	if (argc != 2) {
		fprintf(stderr, "usage: http_echo PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	http_limits_init(&lim);
	lim.max_conns = 4096;
	struct http_server *s = http_server_new(loop, &lim, &handler, NULL);

	(void)snprintf(spec, sizeof(spec), "127.0.0.1:%s", argv[1]);
	if (s == NULL || http_server_listen(s, spec) == -1) {
		return 1;
	}
	ev_run(loop, 0);
	http_server_free(s);
	return 0;
}
