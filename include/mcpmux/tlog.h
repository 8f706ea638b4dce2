/*
 * tlog: the traffic log, one JSON object per line (docs/traffic-log.md).
 *
 *   {"ts":"2026-11-24T10:00:00.123456Z","session":"run-42","pid":4242,"dir":"in",
 *    "kind":"request","id":1,"method":"tools/call","bytes":312,"msg":{...}}
 *
 * One log per process (a module, like diag).  Records are built in memory and written
 * once per event-loop turn (and whenever 64 KiB are waiting), with plain appending
 * write()s: a record is never split by another writer's.  In a regular file, a record
 * whose body is 16 KiB or more goes out at once, the records before it with it, its body
 * from where the message is.  A FIFO, pipe, socket or terminal is written without
 * blocking (what its reader has not taken waits, up to 1 MiB; past that records are
 * dropped whole and counted), stderr through errout.  A log that cannot be written
 * never stops the traffic: the failure is reported once on stderr, the records of that
 * turn are dropped, and writing is tried again the next turn.  SIGUSR1 reopens the file
 * (after logrotate has renamed it).
 */
#ifndef MCPMUX_TLOG_H
#define MCPMUX_TLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <ev.h>

#include "mcpmux/jsonrpc.h"

#define TLOG_BODIES_FULL ((size_t)-1)

enum tlog_dir {
	TLOG_IN,  /* client to server */
	TLOG_OUT, /* server (or mcpmux) to client */
};

extern bool tlog_enabled;

/*
 * Open the log: path "-" is stderr.  bodies: TLOG_BODIES_FULL, 0 (none), or the number
 * of bytes of each body to keep.  client_stdio: mcpmux's stdin and stdout are the
 * client's (wrap, serve on stdio), and a log given by a path that would mix with them is
 * refused: its stdin (a pipe, a socket, a regular file; records read back as the
 * client's), its stdout when that is not a regular file (records among the client's
 * messages), or the regular file stdout writes to when stdout does not append; never a
 * terminal or another character device, and never a log that is stderr's file (written
 * through stderr, as --log -).  0, or -1 after saying why on stderr.
 */
int tlog_open(struct ev_loop *loop, const char *path, size_t bodies, bool client_stdio);
/* Write what is buffered and close (at exit). */
void tlog_close(void);
/* Write what is buffered now. */
void tlog_flush(void);

/*
 * A message, as scanned by scan (kind, id, method come from it; scan may be NULL for a
 * line that is known to be invalid).  ms < 0: no latency.  session may be NULL.
 */
void tlog_message(const char *session, pid_t pid, enum tlog_dir dir,
		  const struct jsonrpc_scanner *scan, const char *line, size_t len, double ms);
struct sbuf;
/*
 * The answers of a batch matched to a request in flight, each with its latency, as an
 * answer alone has it (docs/traffic-log.md, `answers`): tlog_answer() adds one to b (its
 * id's JSON text, ms since its request), and tlog_message_answers() writes the batch's
 * record as tlog_message() does, with those of b (none when b is NULL, empty or failed).
 */
void tlog_answer(struct sbuf *b, const char *id, size_t id_len, double ms);
void tlog_message_answers(const char *session, pid_t pid, enum tlog_dir dir,
			  const struct jsonrpc_scanner *scan, const char *line, size_t len,
			  double ms, const struct sbuf *answers);
/*
 * The client's answer (or a batch of them) for a server whose run is over, dropped: it
 * reached no server (`"ended_run":true`).
 */
void tlog_message_ended_run(const char *session, pid_t pid, const struct jsonrpc_scanner *scan,
			    const char *line, size_t len);
/* An over-long message: only its size is known. */
void tlog_oversize(const char *session, pid_t pid, enum tlog_dir dir, size_t bytes);
/* An event; fields are extra members as JSON text ("\"exit\":..."), or NULL. */
void tlog_event(const char *session, pid_t pid, const char *event, const char *fields,
		size_t fields_len);
/* A line the server wrote on stderr. */
void tlog_stderr(const char *session, pid_t pid, const char *text, size_t len);

#endif
