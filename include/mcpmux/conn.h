/*
 * conn: the client side of mcpmux, one instance per client stream: stdin/stdout in wrap
 * and serve mode, one accepted socket per connection with --listen, the socket in
 * connect mode.
 *
 * Input is read (with a per-callback budget, for fairness) and framed into lines for a
 * framer_sink.  Output comes from any number of sources (a session, or mcpmux itself),
 * each with its own queue of whole lines; the writer serves them round robin, a quantum
 * of whole lines at a time, so one source that floods cannot delay another's answer by
 * more than a quantum.  Sources of one stream (the runs of a session ID, one after
 * another) keep its order: a new one is written only after what the ones before it had
 * queued when it was made (not what an earlier one, still in use, queues later).
 * A line is written at once when nothing is queued; only what the kernel refuses is
 * queued.  A source whose queue reaches its mark is "full": its producer should pause
 * until hooks->on_source_writable().  That comes when the queue is below its mark again,
 * or, while what is queued over all sources holds the input (CONN_HOLD_OUTPUT, below),
 * once that hold ends: a producer faster than the client would otherwise fill again what
 * the client frees, the hold would never end, and the input (another session's messages)
 * would never be read.  Until then conn_source_full() stays true.  The input's watcher
 * comes before the others of its loop turn (a higher priority), so that the input is read
 * as soon as a hold ends, before a producer told in the same turn queues more.  (A source
 * that never filled is not held by the hold: its producer may go on queueing.)
 *
 * Input is read only while nothing holds it.  Each reason to hold is a bit: the owner's
 * (conn_read()), a server whose input queue is full (the front end's, CONN_HOLD_SERVER),
 * messages waiting for an earlier run's last replies (CONN_HOLD_ORDER), and the conn's
 * own: when all it has queued for the client reaches max_queue, a client that writes
 * without reading is not read either (CONN_HOLD_OUTPUT), until half of it is written.
 * That hold stops the lines of the chunk being handed out at the end of the line whose
 * answer set it: the rest of the chunk (64 KiB at most) is kept, and handed out first once
 * nothing holds the input, from where it is kept, however often the hold stops it again
 * (many small requests, each with a long answer, would otherwise queue a chunk's worth of
 * answers past max_queue).
 * The same stop, and hold, when conn_send() finds the client's output gone
 * (CONN_HOLD_GONE): no line after the one whose answer found it is handed out before the
 * owner is told (on_gone, later in the turn); then the rest goes to an owner that knows.
 * A held conn leaves the client's bytes in the kernel's buffer: the client is held back
 * as a direct pipe would hold it, and nothing is lost.
 *
 * Ownership: the owner embeds the conn.  Sources are made by conn_source_new(); their
 * producer hands each back with conn_source_retire(), after which the conn writes what is
 * left in it and frees it.  The conn never closes the fds it was given.
 */
#ifndef MCPMUX_CONN_H
#define MCPMUX_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ev.h>

#include "mcpmux/framer.h"
#include "mcpmux/rpcout.h"
#include "mcpmux/wbuf.h"

#define CONN_QUANTUM ((size_t)16 << 10)
/* The most pieces of one line that conn_send() takes (what it queues is copied from them). */
#define CONN_SEND_IOV_MAX 8
/*
 * The errors in place of lost answers that wait for the client when the queues have no
 * memory for them either (conn_send_lost_answers(), conn_send_error()): two of
 * rpcout_lost_answers()'s arrays (RPCOUT_LOST_BUF each at most), each in serve's envelope
 * with its line end (CONN_LOST_ENVELOPE: 26 bytes and a session ID of at most
 * SESSION_ID_MAX, checked in cmd_serve.c).
 */
#define CONN_LOST_ENVELOPE ((size_t)160)
#define CONN_LOST_BUF	   (2 * (RPCOUT_LOST_BUF + CONN_LOST_ENVELOPE))

#define CONN_HOLD_OWNER	 (1u << 0)
#define CONN_HOLD_OUTPUT (1u << 1)
#define CONN_HOLD_SERVER (1u << 2)
#define CONN_HOLD_ORDER	 (1u << 3)
#define CONN_HOLD_GONE	 (1u << 4)

struct conn;

struct conn_source {
	struct wbuf q;
	struct conn_source *next; /* in the ready list */
	bool ready;
	bool was_full;
	/*
	 * Below its mark again while what is queued over all sources holds the input
	 * (CONN_HOLD_OUTPUT): its producer is told only once that hold ends (in c->wake).
	 */
	bool wake_due;
	struct conn_source *wake_next;
	bool retired;	  /* its producer is gone: freed by the conn once written */
	void *owner;	  /* the producer's, for on_source_writable */
	void *held;	  /* the producer's, for on_source_freed (NULL: not told) */
	size_t held_left; /* bytes of q up to the end of the line that held stands for */
	/*
	 * Lines of one stream (a session ID) across sources: src is not written while its
	 * `after` (an earlier one, with lines still queued when src was made) is there, until
	 * after_left more bytes of after's queue are written; `then` is the one that waits.
	 */
	struct conn_source *after, *then;
	size_t after_left;
	const char *key; /* the stream's (in the same allocation), or NULL */
	size_t key_len;
	uint64_t seq; /* order made, among c's sources with a key */
};

struct conn_hooks {
	/* The client closed its side (or reading failed).  Input is over. */
	void (*on_eof)(struct conn *c, void *ctx);
	/*
	 * Writing to the client failed (EPIPE, ECONNRESET): output is over.  Never called
	 * from inside conn_send(): a failure there is told at the end of the loop turn; it
	 * can be from inside conn_write_now().
	 */
	void (*on_gone)(struct conn *c, void *ctx);
	/*
	 * Writing to the client failed, and what is queued for it is about to be dropped
	 * (optional): conn_unsent() and conn_queued() still tell it.  Called once, before
	 * on_gone, from inside any conn function that writes (conn_send() too); it must only
	 * note what was lost.
	 */
	void (*on_output_lost)(struct conn *c, void *ctx);
	/* src's queue went from full to below its mark. */
	void (*on_source_writable)(struct conn *c, struct conn_source *src, void *ctx);
	/* Everything queued has been written (optional).  Like on_gone, it can be called from
	 * inside conn_write_now(). */
	void (*on_drained)(struct conn *c, void *ctx);
	/*
	 * Retired src, whose held is set or whose q still has bytes (the output died first:
	 * they are dropped, wbuf_len(&src->q) of them), is freed: written says whether the
	 * line that held stands for (the one that ended held_left bytes into q) was written
	 * (false: it is dropped).  Optional; it may be called from inside any conn function,
	 * and must only take src->held back and note what was lost.
	 */
	void (*on_source_freed)(struct conn *c, struct conn_source *src, bool written, void *ctx);
};

struct conn {
	struct ev_loop *loop;
	int in_fd, out_fd;
	ev_io in_w, out_w;
	ev_prepare flush_w; /* fed (never started): lines queued in this loop turn go out */
	ev_timer room_w;    /* conn_whole_lines(): a look again at the pipe's room */
	bool whole;	    /* conn_whole_lines() */
	bool mid_line;	    /* the last byte written was not a line's end */
	bool flush_fed;
	unsigned int write_turn; /* loop iteration of the last direct write */
	struct framer inf;
	const struct framer_sink *sink;
	const struct conn_hooks *hooks;
	void *ctx;
	struct conn_source self; /* mcpmux's own lines to this client */
	struct conn_source *ready_head, *ready_tail;
	struct conn_source *cur;  /* the source whose turn is being written */
	struct conn_source *wake; /* sources with wake_due, linked by wake_next */
	size_t cut_left;	  /* bytes left in cur's turn (it ends on a line end) */
	size_t queued;		  /* bytes queued over all sources */
	size_t max_queue;	  /* CONN_HOLD_OUTPUT at this many queued bytes */
	unsigned hold;		  /* CONN_HOLD_* bits: input is read only when 0 */
	uint64_t n_keyed;	  /* sources made with a key */
	bool in_eof;
	bool in_reset; /* its end was ECONNRESET: the peer closed with output of ours unread */
	bool out_dead;
	/* The errno of the write that killed the output (EPIPE, ENOSPC, ...); 0: none did. */
	int out_errno;
	/*
	 * The output died of a line cut for want of memory (conn_send(): its head written,
	 * no memory to queue its rest), not of the client: on_gone tells of it all the same.
	 */
	bool out_cut;
	bool gone_pending; /* on_gone is due at flush_w (the output failed in conn_send()) */
	bool in_big;	   /* the input pipe was enlarged for long messages */
	char *rest;	   /* the rest of a chunk that CONN_HOLD_OUTPUT stopped, or NULL */
	size_t rest_len;
	size_t rest_off; /* of which this much is handed out (each stop of it moves on) */
	bool out_big;	 /* the output pipe was enlarged for long messages */
	/*
	 * Errors in place of lost answers that no queue had memory for: whole lines, written
	 * at the end of the line being written (lost_off of lost_len written; in queued).
	 */
	size_t lost_len, lost_off;
	char lost[CONN_LOST_BUF];
};

void conn_init(struct conn *c, struct ev_loop *loop, int in_fd, int out_fd, size_t max_message,
	       size_t max_queue, const struct framer_sink *sink, const struct conn_hooks *hooks,
	       void *ctx);
/* Start (or resume) and stop reading the client's input: the owner's hold. */
void conn_read(struct conn *c, bool on);
/* Set or clear one reason (CONN_HOLD_*) to hold the input. */
void conn_hold(struct conn *c, unsigned reason, bool on);
/* Stop everything; free the buffers and every retired source (all must be retired). */
void conn_release(struct conn *c);
/*
 * Write what is queued until everything is written or the output would block (or, after
 * conn_whole_lines(), until the next line does not fit).  The hooks on_drained and on_gone
 * can be called from inside it.
 */
void conn_write_now(struct conn *c);
/*
 * From now on, when the output is a pipe, write one line a write, each begun only when the
 * pipe will take all of it (at most PIPE_BUF bytes, or a longer one into an empty pipe no
 * smaller than it), conn_send()'s direct write too, so that the client is never left with
 * part of a line mcpmux began after this (unless another writer shares the pipe); the rest
 * of a line begun before goes as ever.  A line longer than the pipe is never begun, and
 * holds back those after it.  Output of another kind is written as before.
 */
void conn_whole_lines(struct conn *c);
/*
 * The owner has said what is left unwritten and stops here: nothing more is written (the
 * watchers of the output are stopped, an event of theirs already pending in this loop turn
 * too), conn_send() fails with EPIPE from now on, and no hook is told of the output again
 * (on_output_lost, on_gone, on_drained), so that what was said stays what was lost.
 */
void conn_end_output(struct conn *c);
/*
 * What is queued and not yet written: the number of lines (a line begun counted, *cut then
 * set), and on_id (may be NULL) called with the id's JSON text of each line not begun that
 * has one.
 */
size_t conn_unsent(const struct conn *c, void (*on_id)(void *ctx, const char *id, size_t len),
		   void *ctx, bool *cut);

/*
 * Why the output died, as wrap and connect say it of their stdout (buf: size bytes, which
 * it returns): "the client closed its stdout" when a write found the reader gone (EPIPE,
 * ECONNRESET), else "writing to stdout failed (<strerror>)".
 */
const char *conn_stdout_lost(const struct conn *c, char *buf, size_t size);

#define CONN_IDS_KEPT 100 /* the most ids kept of what the client did not take */

/*
 * The ids conn_unsent() gives (conn_ids_add() as its on_id), the first CONN_IDS_KEPT of
 * them: as JSON array elements (log) and as a list for a person (said); n: how many in
 * all.  Zeroed to start; conn_ids_release() it.
 */
struct conn_ids {
	struct sbuf log, said;
	size_t n;
};

void conn_ids_add(void *ctx, const char *id, size_t len);
void conn_ids_release(struct conn_ids *ids);

/*
 * A new source of c whose queue is full at `high` bytes; NULL when out of memory.  key
 * (key_len bytes, copied; NULL: none) names the stream it continues: none of its lines is
 * written before the lines queued at this moment in the latest made of c's sources of the
 * same key that has lines queued or waits, nor before what that one waits for.  When that
 * one is retired (and holds no line its producer waits to hear of), it is returned, taken
 * up again, instead of a new one.
 */
struct conn_source *conn_source_new(struct conn *c, size_t high, const char *key, size_t key_len);
/*
 * A line of the owner's own (an error it answers, a control reply) that must not be
 * written before the lines of stream key queued so far (a run's last replies), nor after
 * those a later source of the stream queues (the next run's): it goes in live, the
 * stream's newest source, when its producer has one (after its lines); else in the
 * stream's last source that has lines queued, when its producer is live; else in a source
 * of the stream, its last, retired, taken up again, or a new one, retired once the line is
 * in it.  key NULL, or no memory for a source: c->self, and the line goes, but not in the
 * stream's order.  reserve: conn_send_error() (the line may wait in the memory kept for
 * errors), else conn_send_line(); its result, errno kept.
 */
int conn_send_behind(struct conn *c, const char *key, size_t key_len, struct conn_source *live,
		     const char *line, size_t len, bool reserve);
/*
 * The producer is done with src: the conn writes its queued lines, in order, and then
 * frees it (at once if it is empty).  on_source_writable is not called for it again.
 */
void conn_source_retire(struct conn *c, struct conn_source *src);

/*
 * Send one line: the iovecs (at most CONN_SEND_IOV_MAX of them: more is a bug, which
 * aborts) hold the line's bytes, "\n" included.  0, or -1: ENOMEM (nothing queued) or
 * EPIPE (the client is gone; the line is dropped).  ENOMEM with c->out_dead set: the
 * line's head was written and its rest could not be queued; half a line is out, and
 * the client's output is let go as gone (on_gone later in the turn).
 */
int conn_send(struct conn *c, struct conn_source *src, const struct iovec *iov, int n);
/* The common case: line + "\n". */
int conn_send_line(struct conn *c, struct conn_source *src, const char *line, size_t len);
/*
 * An error of mcpmux's own in place of a message that was lost (line + "\n"), so that its
 * request does not wait for ever: conn_send_line(), and when the source's queue has no
 * memory for it, it waits in c->lost as conn_send_lost_answers()'s errors do.  0, or -1:
 * ENOMEM (no room there either) or EPIPE.
 */
int conn_send_error(struct conn *c, struct conn_source *src, const char *line, size_t len);
/* The same for a line in pieces, as conn_send() takes them (serve's envelope around it). */
int conn_send_error_iov(struct conn *c, struct conn_source *src, const struct iovec *iov, int n);
/*
 * In place of line, an answer (or a batch of them) that could not be queued for want of
 * memory: rpcout_lost_answers()'s -32000 errors for its requests, each after the pieces
 * iov[0..pre) and followed by end (a line's end, and what closes the pieces).  iov has
 * room for pre + 4.  An error that the source's queue has no memory for either waits in
 * c->lost, which needs none, and goes at the end of the line being written, ahead of the
 * lines still queued.  True when errors went out (or wait in c->lost) for all of it.
 */
bool conn_send_lost_answers(struct conn *c, struct conn_source *src, struct iovec *iov, int pre,
			    const char *end, const char *line, size_t len);

static inline bool
conn_source_full(const struct conn_source *src)
{
	return wbuf_full(&src->q) || src->wake_due;
}

static inline size_t
conn_queued(const struct conn *c)
{
	return c->queued;
}

/*
 * Never hold the input for what is queued for output (CONN_HOLD_OUTPUT): for a stream whose
 * input is not the answers to its output, where holding it could leave both peers waiting for
 * each other (connect's socket: serve's messages, which connect must go on reading while what
 * it writes to serve waits; what it writes is bounded by its stdin, which a full queue holds).
 */
static inline void
conn_no_output_hold(struct conn *c)
{
	c->max_queue = SIZE_MAX;
}

#endif
