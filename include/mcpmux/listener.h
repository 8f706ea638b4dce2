/*
 * listener: serve's Unix socket.  Created 0600; a stale socket file (nobody listening)
 * is replaced, a live one refused; peers of another uid are refused (SO_PEERCRED).
 * EMFILE on accept does not spin: a spare descriptor is given up to accept and close
 * the connection, with a warning.
 */
#ifndef MCPMUX_LISTENER_H
#define MCPMUX_LISTENER_H

#include <ev.h>

struct listener {
	struct ev_loop *loop;
	int fd;
	int spare;
	ev_io accept_w;
	char path[108];
	/* A new connection: a non-blocking, close-on-exec socket now owned by the callee. */
	void (*on_conn)(int fd, void *ctx);
	void *ctx;
};

/* Bind, listen, start accepting.  0, or -1 after printing why. */
int listener_open(struct listener *l, struct ev_loop *loop, const char *path,
		  void (*on_conn)(int fd, void *ctx), void *ctx);
/* Stop accepting, close, and remove the socket file. */
void listener_close(struct listener *l);

/* Connect to a serve socket (blocking connect, then non-blocking).  fd or -1 (errno). */
int listener_connect(const char *path);

#endif
