/*
 * envelope: serve mode's wire format, one JSON object per line:
 *
 *   {"session":"run-42","message":{...any JSON-RPC message or batch...}}
 *   {"session":"run-42","keep":true}
 *   {"message":{...}}                  (no session: addressed to mcpmux itself)
 *
 * envelope_parse() finds the members by a single structural pass over the line (strings,
 * escapes, nesting), so that the message can be forwarded as the exact bytes it arrived
 * as: yajl's callbacks do not report byte offsets.  The message itself is validated by
 * the caller with one jsonrpc_scan() of its span; members mcpmux does not know are
 * validated here.  All pointers point into the line.
 *
 * Given a scanner, the usual envelope, {"session":"ID","message":...} with white space
 * anywhere, is read without the structural pass nor the text pass over the message (the
 * scanner checks the message's text as it validates it).  More generally, an envelope
 * whose "message" comes last, after "session", costs one pass fewer: the message's span is taken to
 * run to the line's closing brace, and if jsonrpc_scan_checked() finds one JSON value there, the
 * message is that value and it is scanned already (e->scanned).  Otherwise (another member follows,
 * or the message is not JSON) the line takes the structural pass, and the result is the same as
 * without a scanner.
 */
#ifndef MCPMUX_ENVELOPE_H
#define MCPMUX_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "mcpmux/jsonrpc.h"

/*
 * An envelope's own bytes around its message, at most, that a line may add to
 * --max-message: the keys, a session ID (128 characters, each at most 6 as an escape), a
 * keep, white space.  A longer line is refused unread (in the session it names, with its
 * message's id: envelope_bigscan); a message over --max-message in a line under this
 * bound is refused in its session, with its id.
 */
#define ENVELOPE_OWN_MAX ((size_t)1024)

struct envelope {
	bool has_session;
	const char *session; /* raw bytes between the quotes (a valid id has no escapes) */
	size_t session_len;
	bool session_is_string;
	bool has_message;
	const char *message; /* the message's JSON text, exactly as received */
	size_t message_len;
	bool has_keep;
	bool keep;
	bool has_event;	   /* an "event" member (mcpmux -> client direction) */
	const char *event; /* its raw string bytes */
	size_t event_len;
	const char *error; /* why the line is not a valid envelope */
	bool scanned;	   /* the message is scanned into the scanner given (its kind is not
			      JSONRPC_INVALID_JSON) */
};

enum envelope_status {
	ENVELOPE_OK,
	ENVELOPE_NOT_JSON, /* -32700 */
	ENVELOPE_INVALID,  /* -32600: JSON, but not an envelope */
};

/*
 * A line that parses (ENVELOPE_OK) would pass jsonrpc_text_ok() whole (a framed line's
 * own bytes around a scanned message are not run through it again): its message may be
 * scanned with jsonrpc_scan_checked().  scan may be NULL (no scan ahead).
 */
enum envelope_status envelope_parse(struct envelope *e, const char *line, size_t len,
				    struct jsonrpc_scanner *scan);
/* The same for a line as the framer hands it out, which holds no "\n" (not looked for). */
enum envelope_status envelope_parse_line(struct envelope *e, const char *line, size_t len,
					 struct jsonrpc_scanner *scan);

/*
 * bigscan: the session and the message's id of an envelope too long to be buffered (over
 * --max-message and ENVELOPE_OWN_MAX), fed in pieces as it passes: the top-level
 * "session" string (its raw bytes, up to 128 of them, without escapes) and the top-level
 * "id" of the top-level "message" object.  Linear in the bytes fed, constant memory.
 * With batches set after init (and id.on_element, id.ctx), a "message" array is a batch:
 * batch is set and each of its elements goes to id.on_element() as it ends, up to the
 * message's end (an element cut short by the line's end is left in id).
 */
struct envelope_bigscan {
	int depth;
	bool in_string, escape;
	bool is_key;	/* the next string at depth 1 is a key */
	int key;	/* the depth-1 key read: 0 another, 1 "session", 2 "message" */
	int key_match;	/* bytes of the key matched ("session" and "message" are 7 long) */
	bool want;	/* after that key's ':': its value comes next */
	int in_session; /* 1 while its string is read, 2 once it was, -1 unusable */
	char session[128];
	size_t session_len;
	bool in_message, message_seen;
	bool batches; /* set after init: scan a batch's elements */
	bool batch;   /* the message is an array (with batches) */
	struct jsonrpc_idscan id;
};

void envelope_bigscan_init(struct envelope_bigscan *b);
void envelope_bigscan_feed(struct envelope_bigscan *b, const char *p, size_t len);
/* The session's raw bytes (NULL if none was read whole), and the message's id's JSON
 * text (NULL if none was seen). */
const char *envelope_bigscan_session(const struct envelope_bigscan *b, size_t *len);
const char *envelope_bigscan_id(const struct envelope_bigscan *b, size_t *len);
/* Whether the message is an answer (to a request of the server's: its id is the server's). */
bool envelope_bigscan_is_answer(const struct envelope_bigscan *b);

#endif
