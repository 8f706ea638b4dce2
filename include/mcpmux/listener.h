/*
 * listener: serve's Unix socket.  Created 0600; a stale socket file (nobody listening)
 * is replaced, a live one refused; peers of another uid are refused (SO_PEERCRED).
 * EMFILE on accept does not spin: a spare descriptor is given up to accept and close
 * the connection, with a warning.
 *
 * Binding is exclusive: two `serve --listen` on one path at once, exactly one wins.  The
 * winner holds a lock for the path for as long as it listens: an abstract-namespace
 * socket named for the path's canonical form, which the kernel releases when the process
 * dies however it dies (no lock file to go stale).  At exit the socket file is removed
 * only if it is still the one this listener made (same device and inode): a socket that
 * another server put there since is left alone.
 */
#ifndef MCPMUX_LISTENER_H
#define MCPMUX_LISTENER_H

#include <stdbool.h>
#include <sys/types.h>

#include <ev.h>

struct listener {
	struct ev_loop *loop;
	int fd;
	int spare;
	ev_io accept_w;
	ev_timer retry_w; /* accepting again after a failure that would repeat at once */
	int lock_fd;	  /* the path's abstract lock */
	dev_t dev;	  /* the socket file made, as lstat() saw it */
	ino_t ino;
	char path[108];
	/* A new connection: a non-blocking, close-on-exec socket now owned by the callee. */
	void (*on_conn)(int fd, void *ctx);
	void *ctx;
};

/* Bind, listen, start accepting.  0, or -1 after printing why. */
int listener_open(struct listener *l, struct ev_loop *loop, const char *path,
		  void (*on_conn)(int fd, void *ctx), void *ctx);
/*
 * Accept on fd, a listening Unix stream socket that systemd passed (socket activation):
 * owned from now on, never removed (its unit owns the file).  0, or -1 after saying why.
 */
int listener_open_fd(struct listener *l, struct ev_loop *loop, int fd,
		     void (*on_conn)(int fd, void *ctx), void *ctx);
/* Stop accepting, close, and remove the socket file. */
void listener_close(struct listener *l);

/*
 * How long `mcpmux connect` and `mcpmux ctl` wait for room in the backlog of a serve that
 * does not accept (its 512 pending connections are taken: it is stopped or stuck).
 */
#define LISTENER_CONNECT_S 5.0
/* The longest pause between two attempts while the backlog is full. */
#define LISTENER_CONNECT_PACE_MS 50

/*
 * Connect to a serve socket, waiting timeout_s at most while its backlog is full (0: one
 * attempt).  A non-blocking fd, or -1 with errno: ETIMEDOUT when the backlog stayed full
 * (someone listens, and does not accept), ECONNREFUSED when nobody listens, ENOTSOCK
 * when path is a file that is not a socket, ENOENT when it is empty, ...
 */
int listener_connect(const char *path, double timeout_s);
/* listener_connect() for LISTENER_CONNECT_S; -1 said on stderr (as ctl and connect say it). */
int listener_connect_said(const char *path);
/*
 * Is the peer of a connected socket the same user as this process?  With uid_out (may be
 * NULL) set to the peer's uid, or -1 when it cannot be told.
 */
bool listener_peer_is_us(int fd, long *uid_out);

#endif
