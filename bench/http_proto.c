/*
 * http_proto: a minimal keep-alive HTTP/1.1 echo server on libev, for choosing the HTTP
 * parser (docs/decisions.md).  Built twice: with nodejs/http-parser (-DPROTO_HTTP_PARSER)
 * and with llhttp (-DPROTO_LLHTTP), each under mcpmux's own connection handling: one
 * ev_io per connection, reads into a shared scratch buffer, the body collected in a
 * per-request buffer, the response written at once with writev and queued only when the
 * kernel refuses it.  It answers every request with its body (200, Content-Length).
 *
 * usage: http_proto PORT
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ev.h>

#if defined(PROTO_LLHTTP)
#include <llhttp.h>
#elif defined(PROTO_HTTP_PARSER)
#include <http_parser.h>
#else
#error "define PROTO_LLHTTP or PROTO_HTTP_PARSER"
#endif

/* clang-format off */
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
/* clang-format on */

struct pconn {
	ev_io io;
	int fd;
#if defined(PROTO_LLHTTP)
	llhttp_t p;
#else
	http_parser p;
#endif
	char *body;
	size_t body_len, body_cap;
	char *out; /* unsent response bytes */
	size_t out_off, out_len;
	int n_headers;
	int keep_alive;
};

static char scratch[64 << 10];

static void
pconn_free(struct ev_loop *loop, struct pconn *c)
{
	ev_io_stop(loop, &c->io);
	close(c->fd);
	free(c->body);
	free(c->out);
	free(c);
}

static int
on_header_field(void *p, const char *at, size_t len)
{
	(void)at;
	(void)len;
	((struct pconn *)p)->n_headers++;
	return 0;
}

static int
on_body(struct pconn *c, const char *at, size_t len)
{
	if (c->body_len + len > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 4096;

		while (cap < c->body_len + len) {
			cap *= 2;
		}
		char *nb = realloc(c->body, cap);

		if (nb == NULL) {
			return -1;
		}
		c->body = nb;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

static int
respond(struct pconn *c)
{
	char head[128];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n",
			 c->body_len, c->keep_alive ? "" : "Connection: close\r\n");
	struct iovec iov[2] = { { head, (size_t)n }, { c->body, c->body_len } };
	ssize_t w = 0;
	size_t total = (size_t)n + c->body_len;

	if (c->out_len == 0) {
		do {
			w = writev(c->fd, iov, 2);
		} while (w == -1 && errno == EINTR);
		if (w == -1 && errno != EAGAIN) {
			return -1;
		}
		if (w < 0) {
			w = 0;
		}
	}
	if ((size_t)w < total) {
		size_t rest = total - (size_t)w, skip = (size_t)w;
		char *o = realloc(c->out, c->out_len + rest);

		if (o == NULL) {
			return -1;
		}
		c->out = o;
		for (int i = 0; i < 2; i++) {
			if (skip >= iov[i].iov_len) {
				skip -= iov[i].iov_len;
				continue;
			}
			memcpy(c->out + c->out_len, (char *)iov[i].iov_base + skip,
			       iov[i].iov_len - skip);
			c->out_len += iov[i].iov_len - skip;
			skip = 0;
		}
	}
	/* An idle connection holds no buffer. */
	free(c->body);
	c->body = NULL;
	c->body_len = c->body_cap = 0;
	return 0;
}

#if defined(PROTO_LLHTTP)
static int
ll_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	return on_header_field(p->data, at, len);
}

static int
ll_on_body(llhttp_t *p, const char *at, size_t len)
{
	return on_body(p->data, at, len);
}

static int
ll_on_message_complete(llhttp_t *p)
{
	struct pconn *c = p->data;

	c->keep_alive = llhttp_should_keep_alive(p);
	return respond(c) == 0 ? 0 : -1;
}

static llhttp_settings_t settings;
#else
static int
hp_on_header_field(http_parser *p, const char *at, size_t len)
{
	return on_header_field(p->data, at, len);
}

static int
hp_on_body(http_parser *p, const char *at, size_t len)
{
	return on_body(p->data, at, len);
}

static int
hp_on_message_complete(http_parser *p)
{
	struct pconn *c = p->data;

	c->keep_alive = http_should_keep_alive(p);
	return respond(c) == 0 ? 0 : -1;
}

static http_parser_settings settings;
#endif

static int
flush_out(struct pconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (w == -1) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EAGAIN ? 0 : -1;
		}
		c->out_off += (size_t)w;
	}
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = 0;
	return 0;
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pconn *c = container_of(w, struct pconn, io);

	if ((revents & EV_WRITE) && flush_out(c) == -1) {
		pconn_free(loop, c);
		return;
	}
	if (revents & EV_READ) {
		ssize_t n = read(c->fd, scratch, sizeof(scratch));

		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			pconn_free(loop, c);
			return;
		}
		if (n > 0) {
#if defined(PROTO_LLHTTP)
			if (llhttp_execute(&c->p, scratch, (size_t)n) != HPE_OK) {
				pconn_free(loop, c);
				return;
			}
#else
			if (http_parser_execute(&c->p, &settings, scratch, (size_t)n) !=
				    (size_t)n ||
			    HTTP_PARSER_ERRNO(&c->p) != HPE_OK) {
				pconn_free(loop, c);
				return;
			}
#endif
			if (c->out_len > 0 && flush_out(c) == -1) {
				pconn_free(loop, c);
				return;
			}
			if (!c->keep_alive && c->out_len == 0 && c->n_headers > 0) {
				pconn_free(loop, c);
				return;
			}
		}
	}
	int want = EV_READ | (c->out_len > 0 ? EV_WRITE : 0);

	if (want != (c->io.events & (EV_READ | EV_WRITE))) {
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, want);
		ev_io_start(loop, &c->io);
	}
}

static void
on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			return;
		}
		int one = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct pconn *c = calloc(1, sizeof(*c));

		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->keep_alive = 1;
#if defined(PROTO_LLHTTP)
		llhttp_init(&c->p, HTTP_REQUEST, &settings);
#else
		http_parser_init(&c->p, HTTP_REQUEST);
#endif
		c->p.data = c;
		ev_io_init(&c->io, on_io, fd, EV_READ);
		ev_io_start(loop, &c->io);
	}
}

int
main(int argc, char **argv)
{
	struct ev_loop *loop = EV_DEFAULT;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int one = 1, fd;
	ev_io accept_w;

	if (argc != 2) {
		fprintf(stderr, "usage: http_proto PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
#if defined(PROTO_LLHTTP)
	llhttp_settings_init(&settings);
	settings.on_header_field = ll_on_header_field;
	settings.on_body = ll_on_body;
	settings.on_message_complete = ll_on_message_complete;
#else
	settings.on_header_field = hp_on_header_field;
	settings.on_body = hp_on_body;
	settings.on_message_complete = hp_on_message_complete;
#endif
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(fd, 1024) == -1) {
		perror("http_proto: listen");
		return 1;
	}
	ev_io_init(&accept_w, on_accept, fd, EV_READ);
	ev_io_start(loop, &accept_w);
	ev_run(loop, 0);
	return 0;
}
