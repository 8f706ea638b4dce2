/*
 * http_mhd: the same keep-alive echo server as http_proto, on libmicrohttpd in its
 * external-event-loop mode driven from libev: MHD_USE_EPOLL without an internal thread,
 * MHD's epoll fd watched with an ev_io, MHD_run() on readiness, an ev_timer from
 * MHD_get_timeout() after every run.
 *
 * usage: http_mhd [MEMORY_LIMIT] PORT   (MHD_OPTION_CONNECTION_MEMORY_LIMIT, default MHD's)
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <microhttpd.h>

struct body {
	char *buf;
	size_t len, cap;
};

static struct MHD_Daemon *d;
static ev_io epoll_w;
static ev_timer timeout_w;

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct body *b = *con_cls;

	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	if (b == NULL) {
		b = calloc(1, sizeof(*b));
		if (b == NULL) {
			return MHD_NO;
		}
		*con_cls = b;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t need = b->len + *upload_data_size;

		if (need > b->cap) {
			size_t cap = b->cap ? b->cap : 4096;

			while (cap < need) {
				cap *= 2;
			}
			char *nb = realloc(b->buf, cap);

			if (nb == NULL) {
				return MHD_NO;
			}
			b->buf = nb;
			b->cap = cap;
		}
		memcpy(b->buf + b->len, upload_data, *upload_data_size);
		b->len = need;
		*upload_data_size = 0;
		return MHD_YES;
	}
	struct MHD_Response *r =
		MHD_create_response_from_buffer(b->len, b->buf, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);

	MHD_destroy_response(r);
	return rc;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
	     enum MHD_RequestTerminationCode toe)
{
	struct body *b = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (b != NULL) {
		free(b->buf);
		free(b);
		*con_cls = NULL;
	}
}

static void
rearm(struct ev_loop *loop)
{
	MHD_UNSIGNED_LONG_LONG ms;

	ev_timer_stop(loop, &timeout_w);
	if (MHD_get_timeout(d, &ms) == MHD_YES) {
		ev_timer_set(&timeout_w, (double)ms / 1000., 0.);
		ev_timer_start(loop, &timeout_w);
	}
}

static void
on_epoll(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)w;
	(void)revents;
	MHD_run(d);
	rearm(loop);
}

static void
on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	MHD_run(d);
	rearm(loop);
}

int
main(int argc, char **argv)
{
	struct ev_loop *loop = EV_DEFAULT;

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: http_mhd [MEMORY_LIMIT] PORT\n");
		return 2;
	}
	size_t mem = argc == 3 ? (size_t)atol(argv[1]) : 32 << 10;
	struct sockaddr_in sa = { .sin_family = AF_INET };

	sa.sin_port = htons((uint16_t)atoi(argv[argc - 1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	signal(SIGPIPE, SIG_IGN);
	d = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_TURBO | MHD_USE_ERROR_LOG, (uint16_t)atoi(argv[1]), NULL,
		NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)4000, MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&sa, MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1, MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "http_mhd: cannot start the daemon\n");
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);

	ev_io_init(&epoll_w, on_epoll, info->epoll_fd, EV_READ);
	ev_io_start(loop, &epoll_w);
	ev_timer_init(&timeout_w, on_timeout, 0., 0.);
	rearm(loop);
	ev_run(loop, 0);
	MHD_stop_daemon(d);
	return 0;
}
