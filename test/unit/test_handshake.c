/*
 * Unit tests for handshake: what is recorded from the client's traffic (initialize,
 * notifications/initialized, logging/setLevel, resources/subscribe and unsubscribe), when
 * the first server's answer makes it ready, the replay's bytes and ids, and the check of
 * a fresh server's answer to the replayed initialize.
 *
 * As in test_jsonrpc.c, lines write ' for " (see q()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpmux/handshake.h"

#include "quote.h"

/* malloc is wrapped at link time: one of fail_size bytes fails while it is set. */
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
static size_t fail_size;

void *
__wrap_malloc(size_t size)
{
	return fail_size != 0 && size == fail_size ? NULL : __real_malloc(size);
}

struct fix {
	struct jsonrpc_scanner scan;
	struct handshake hs;
	struct sbuf b;
};

static int
setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		return -1;
	}
	jsonrpc_init(&f->scan);
	handshake_init(&f->hs);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;

	handshake_release(&f->hs);
	jsonrpc_release(&f->scan);
	sbuf_release(&f->b);
	free(f);
	return 0;
}

/* Scan line (after q()); it must be valid JSON-RPC.  Returns the line's length. */
static size_t
scan(struct fix *f, char *buf, size_t cap, const char *line)
{
	size_t len = strlen(q(buf, cap, line));
	enum jsonrpc_kind k = jsonrpc_scan(&f->scan, buf, len);

	if (k == JSONRPC_INVALID_JSON || k == JSONRPC_INVALID_REQUEST) {
		fail_msg("not JSON-RPC: %s", buf);
	}
	return len;
}

static void
client(struct fix *f, const char *line)
{
	char buf[1024];
	size_t len = scan(f, buf, sizeof(buf), line);

	handshake_observe_client(&f->hs, &f->scan, buf, len);
}

static void
server(struct fix *f, const char *line)
{
	char buf[1024];
	size_t len = scan(f, buf, sizeof(buf), line);

	handshake_observe_server(&f->hs, &f->scan, buf, len);
}

/* Does the sbuf hold exactly want (after q())? */
static void
assert_text(const char *got, size_t len, const char *want)
{
	char w[1024];

	q(w, sizeof(w), want);
	if (len != strlen(w) || memcmp(got, w, len) != 0) {
		fail_msg("got  %.*s\nwant %s", (int)len, got, w);
	}
}

static void
assert_sub(const struct fix *f, size_t i, const char *params)
{
	assert_true(i < f->hs.n_subs);
	assert_text(f->hs.subs[i].params, f->hs.subs[i].params_len, params);
}

#define INIT \
	"{'jsonrpc':'2.0','id':1,'method':'initialize','params':{'protocolVersion':'2025-06-18','capabilities':{},'clientInfo':{'name':'t','version':'1'}}}"
#define ANSWER \
	"{'jsonrpc':'2.0','id':1,'result':{'protocolVersion':'2025-06-18','capabilities':{'tools':{},'logging':{},'resources':{'subscribe':true}},'serverInfo':{'name':'s','version':'1'}}}"

static void
subscribe(struct fix *f, int id, const char *uri_json)
{
	char line[512];

	(void)snprintf(
		line, sizeof(line),
		"{'jsonrpc':'2.0','id':%d,'method':'resources/subscribe','params':{'uri':%s}}", id,
		uri_json);
	client(f, line);
}

static void
unsubscribe(struct fix *f, int id, const char *uri_json)
{
	char line[512];

	(void)snprintf(
		line, sizeof(line),
		"{'jsonrpc':'2.0','id':%d,'method':'resources/unsubscribe','params':{'uri':%s}}",
		id, uri_json);
	client(f, line);
}

/* ---- recording ---- */

static void
test_records_initialize(void **state)
{
	struct fix *f = *state;

	assert_false(f->hs.have_init);
	client(f, INIT);
	assert_true(f->hs.have_init);
	assert_false(f->hs.have_result);
	assert_text(f->hs.init_params.buf, f->hs.init_params.len,
		    "{'protocolVersion':'2025-06-18','capabilities':{},'clientInfo':{'name':'t',"
		    "'version':'1'}}");
	assert_false(f->hs.initialized);
	client(f, "{'jsonrpc':'2.0','method':'notifications/initialized'}");
	assert_true(f->hs.initialized);
	/* Other methods, answers and notifications leave it as it is. */
	client(f, "{'jsonrpc':'2.0','id':2,'method':'tools/list'}");
	client(f, "{'jsonrpc':'2.0','id':'s1','result':{}}");
	client(f, "{'jsonrpc':'2.0','method':'notifications/cancelled','params':{'requestId':2}}");
	assert_true(f->hs.have_init && f->hs.initialized && !f->hs.have_level);
	assert_int_equal(f->hs.n_subs, 0);
}

/*
 * The records live as long as the session, idle or not: each takes the bytes of its
 * text, not an sbuf's first 256 (four of them were a kilobyte of every idle session).
 */
static void
test_records_take_their_size(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	server(f, ANSWER);
	assert_true(handshake_ready(&f->hs));
	client(f, "{'jsonrpc':'2.0','id':2,'method':'logging/setLevel','params':{'level':'info'}}");
	assert_true(f->hs.have_level);
	const struct sbuf *b[] = { &f->hs.init_params, &f->hs.init_key, &f->hs.proto, &f->hs.caps,
				   &f->hs.level_params };

	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		assert_true(b[i]->len > 0);
		assert_int_equal(b[i]->cap, b[i]->len + 1);
	}
}

/* No memory for the initialize's id: there is no initialize to replay, params or not. */
static void
test_an_initialize_whose_id_cannot_be_kept_is_not_had(void **state)
{
	struct fix *f = *state;
	const char id[] = "\"an-id-of-its-own-length-0123456789\"";
	char key[JSONRPC_KEY_MAX(sizeof(id))];

	fail_size = jsonrpc_id_key(id, sizeof(id) - 1, key) + 1;
	client(f,
	       "{'jsonrpc':'2.0','id':'an-id-of-its-own-length-0123456789','method':'initialize',"
	       "'params':{'protocolVersion':'2025-06-18','capabilities':{}}}");
	fail_size = 0;
	assert_true(f->hs.init_key.failed);
	assert_false(f->hs.init_params.failed);
	assert_false(f->hs.have_init);
	server(f, "{'jsonrpc':'2.0','id':'an-id-of-its-own-length-0123456789','result':"
		  "{'protocolVersion':'2025-06-18','capabilities':{}}}");
	assert_false(handshake_ready(&f->hs));
}

static void
test_initialize_without_params(void **state)
{
	struct fix *f = *state;

	client(f, "{'jsonrpc':'2.0','id':'i','method':'initialize'}");
	assert_true(f->hs.have_init);
	assert_text(f->hs.init_params.buf, f->hs.init_params.len, "{}");
}

static void
test_set_level_keeps_the_last(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	client(f,
	       "{'jsonrpc':'2.0','id':2,'method':'logging/setLevel','params':{'level':'debug'}}");
	client(f,
	       "{'jsonrpc':'2.0','id':3,'method':'logging/setLevel','params':{ 'level' : 'error' }}");
	assert_true(f->hs.have_level);
	assert_text(f->hs.level_params.buf, f->hs.level_params.len, "{ 'level' : 'error' }");
}

static void
test_subscriptions_are_a_set(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	subscribe(f, 2, "'fixture://a'");
	subscribe(f, 3, "'fixture://b'");
	subscribe(f, 4, "'fixture://a'"); /* again: still one */
	assert_int_equal(f->hs.n_subs, 2);
	assert_sub(f, 0, "{'uri':'fixture://a'}");
	assert_sub(f, 1, "{'uri':'fixture://b'}");
	subscribe(f, 5, "'fixture://c'");
	unsubscribe(f, 6, "'fixture://a'");
	/* The rest keep their order. */
	assert_int_equal(f->hs.n_subs, 2);
	assert_sub(f, 0, "{'uri':'fixture://b'}");
	assert_sub(f, 1, "{'uri':'fixture://c'}");
	unsubscribe(f, 7, "'fixture://a'"); /* not subscribed: nothing */
	unsubscribe(f, 8, "'fixture://nope'");
	assert_int_equal(f->hs.n_subs, 2);
	unsubscribe(f, 9, "'fixture://c'");
	unsubscribe(f, 10, "'fixture://b'");
	assert_int_equal(f->hs.n_subs, 0);
	subscribe(f, 11, "'fixture://b'"); /* again after the unsubscribe */
	assert_int_equal(f->hs.n_subs, 1);
	assert_int_equal(f->hs.subs_lost, 0);
}

/* A URI is known by its value: escapes of one character are one URI. */
static void
test_subscription_uri_with_escapes(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	subscribe(f, 2, "'fixture://a/b'");
	subscribe(f, 3, "'fixture:\\/\\/a\\/b'");
	subscribe(f, 4, "'fixture://\\u0061/b'");
	assert_int_equal(f->hs.n_subs, 1);
	/* A quote and a brace inside the URI: the member is found whole. */
	subscribe(f, 5, "'q\\'}{\\\\'");
	assert_int_equal(f->hs.n_subs, 2);
	assert_sub(f, 1, "{'uri':'q\\'}{\\\\'}");
	unsubscribe(f, 6, "'fixture:\\/\\/a\\/b'");
	assert_int_equal(f->hs.n_subs, 1);
	unsubscribe(f, 7, "'q\\u0022}{\\u005c'");
	assert_int_equal(f->hs.n_subs, 0);
}

static void
test_subscription_without_a_string_uri(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	client(f, "{'jsonrpc':'2.0','id':2,'method':'resources/subscribe'}");
	client(f, "{'jsonrpc':'2.0','id':3,'method':'resources/subscribe','params':{}}");
	subscribe(f, 4, "7");
	subscribe(f, 5, "{'uri':'x'}");
	subscribe(f, 6, "null");
	client(f,
	       "{'jsonrpc':'2.0','id':7,'method':'resources/subscribe','params':{'x':{'uri':'y'}}}");
	assert_int_equal(f->hs.n_subs, 0);
	/* A URI after other members, and a params with members around it. */
	client(f,
	       "{'jsonrpc':'2.0','id':8,'method':'resources/subscribe','params':{'a':[1,{'uri':'no'}],'uri':'yes','z':1}}");
	assert_int_equal(f->hs.n_subs, 1);
	unsubscribe(f, 9, "'no'");
	assert_int_equal(f->hs.n_subs, 1);
	unsubscribe(f, 10, "'yes'");
	assert_int_equal(f->hs.n_subs, 0);
}

static void
test_subscriptions_bounded(void **state)
{
	struct fix *f = *state;
	char uri[64];

	client(f, INIT);
	for (int i = 0; i < HANDSHAKE_SUBS + 10; i++) {
		(void)snprintf(uri, sizeof(uri), "'u%d'", i);
		subscribe(f, i + 2, uri);
	}
	assert_int_equal(f->hs.n_subs, HANDSHAKE_SUBS);
	assert_int_equal(f->hs.subs_lost, 10); /* said when they would be replayed */
	assert_sub(f, HANDSHAKE_SUBS - 1, "{'uri':'u1023'}");
	/* Room again after an unsubscribe. */
	unsubscribe(f, 1, "'u0'");
	subscribe(f, 1, "'u5000'");
	assert_int_equal(f->hs.n_subs, HANDSHAKE_SUBS);
	assert_sub(f, HANDSHAKE_SUBS - 1, "{'uri':'u5000'}");
	subscribe(f, 1, "'u5001'");
	assert_int_equal(f->hs.n_subs, HANDSHAKE_SUBS);
	assert_int_equal(f->hs.subs_lost, 11);
	subscribe(f, 1, "'u5000'"); /* one it has: not lost */
	assert_int_equal(f->hs.subs_lost, 11);
}

/* A new initialize is a new protocol session: everything set up before is forgotten. */
static void
test_initialize_resets(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	server(f, ANSWER);
	client(f, "{'jsonrpc':'2.0','method':'notifications/initialized'}");
	client(f,
	       "{'jsonrpc':'2.0','id':2,'method':'logging/setLevel','params':{'level':'debug'}}");
	subscribe(f, 3, "'fixture://a'");
	assert_true(handshake_ready(&f->hs));
	f->hs.subs_lost = 2; /* as if two had not been kept */
	client(f,
	       "{'jsonrpc':'2.0','id':9,'method':'initialize','params':{'protocolVersion':'x'}}");
	assert_int_equal(f->hs.subs_lost, 0);
	assert_true(f->hs.have_init);
	assert_false(handshake_ready(&f->hs));
	assert_false(f->hs.initialized);
	assert_false(f->hs.have_level);
	assert_int_equal(f->hs.n_subs, 0);
	assert_text(f->hs.init_params.buf, f->hs.init_params.len, "{'protocolVersion':'x'}");
	/* The old id's answer no longer counts; the new one's does. */
	server(f, ANSWER);
	assert_false(handshake_ready(&f->hs));
	server(f, "{'jsonrpc':'2.0','id':9,'result':{'protocolVersion':'x','capabilities':{}}}");
	assert_true(handshake_ready(&f->hs));
	assert_text(f->hs.proto.buf, f->hs.proto.len, "'x'");
}

/* ---- ready ---- */

static void
test_ready_after_the_answer_by_value(void **state)
{
	struct fix *f = *state;

	assert_false(handshake_ready(&f->hs));
	server(f, ANSWER); /* no initialize yet */
	assert_false(handshake_ready(&f->hs));
	client(f, INIT);
	assert_false(handshake_ready(&f->hs));
	server(f, "{'jsonrpc':'2.0','id':2,'result':{'protocolVersion':'p','capabilities':{}}}");
	server(f, "{'jsonrpc':'2.0','id':'1','result':{'protocolVersion':'p','capabilities':{}}}");
	server(f, "{'jsonrpc':'2.0','method':'notifications/message','params':{}}");
	server(f, "{'jsonrpc':'2.0','id':1,'method':'roots/list'}");
	assert_false(handshake_ready(&f->hs));
	/* 1.0 is the value 1: the answer to the client's initialize. */
	server(f, "{'jsonrpc':'2.0','id':1.0,'result':{ 'capabilities' : {'tools':{}}, "
		  "'protocolVersion':'2025-06-18'}}");
	assert_true(handshake_ready(&f->hs));
	assert_text(f->hs.proto.buf, f->hs.proto.len, "'2025-06-18'");
	assert_text(f->hs.caps.buf, f->hs.caps.len, "{'tools':{}}");
	/* Only the first answer counts. */
	server(f,
	       "{'jsonrpc':'2.0','id':1,'result':{'protocolVersion':'other','capabilities':{}}}");
	assert_text(f->hs.proto.buf, f->hs.proto.len, "'2025-06-18'");
}

/* An initialize refused: nothing to replay, and a later answer under its id is another's. */
static void
test_a_refused_initialize_is_not_replayed(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	server(f, "{'jsonrpc':'2.0','id':1,'error':{'code':-32603,'message':'no'}}");
	assert_false(f->hs.have_init);
	client(f, "{'jsonrpc':'2.0','id':1,'method':'tools/list'}");
	server(f, "{'jsonrpc':'2.0','id':1,'result':{'tools':[]}}");
	assert_false(handshake_ready(&f->hs));
	/* A new initialize is recorded again. */
	client(f, INIT);
	server(f, ANSWER);
	assert_true(handshake_ready(&f->hs));
}

/* A batch counts as its elements, each as if it had come alone, the server's too. */
static void
test_batches_count_as_their_elements(void **state)
{
	struct fix *f = *state;

	client(f, "[" INIT "]");
	assert_true(f->hs.have_init);
	server(f, "[{'jsonrpc':'2.0','method':'notifications/message','params':{}}," ANSWER "]");
	assert_true(handshake_ready(&f->hs));
	client(f,
	       "[{'jsonrpc':'2.0','method':'notifications/initialized'},"
	       "{'jsonrpc':'2.0','id':2,'method':'logging/setLevel','params':{'level':'debug'}},"
	       "{'jsonrpc':'2.0','id':3,'method':'tools/list'},"
	       "{'jsonrpc':'2.0','id':4,'method':'resources/subscribe','params':{'uri':'a'}},"
	       "{'jsonrpc':'2.0','id':5,'method':'resources/subscribe','params':{'uri':'b'}},"
	       "{'jsonrpc':'2.0','id':6,'method':'resources/unsubscribe','params':{'uri':'a'}}]");
	assert_true(f->hs.initialized && f->hs.have_level);
	assert_text(f->hs.level_params.buf, f->hs.level_params.len, "{'level':'debug'}");
	assert_int_equal(f->hs.n_subs, 1);
	assert_sub(f, 0, "{'uri':'b'}");
	/* An error for the initialize inside a batch ends its record, as alone. */
	client(f, INIT);
	server(f, "[{'jsonrpc':'2.0','id':1,'error':{'code':-32603,'message':'no'}}]");
	assert_false(f->hs.have_init);
}

static void
test_ready_string_id_by_value(void **state)
{
	struct fix *f = *state;

	client(f, "{'jsonrpc':'2.0','id':'ab','method':'initialize','params':{}}");
	server(f, "{'jsonrpc':'2.0','id':'ab ','result':{}}");
	assert_false(handshake_ready(&f->hs));
	server(f, "{'jsonrpc':'2.0','id':'\\u0061b','result':{}}");
	assert_true(handshake_ready(&f->hs));
	assert_int_equal(f->hs.proto.len, 0); /* none in that answer */
	assert_int_equal(f->hs.caps.len, 0);
}

/* ---- replay ---- */

static void
test_replay_bytes_and_ids(void **state)
{
	struct fix *f = *state;
	char id[64];
	bool req = false;

	client(f, INIT);
	server(f, ANSWER);
	client(f, "{'jsonrpc':'2.0','method':'notifications/initialized'}");
	client(f, "{'jsonrpc':'2.0','id':2,'method':'logging/setLevel','params':{'level':'info'}}");
	subscribe(f, 3, "'fixture://a'");
	subscribe(f, 4, "'fixture://b'");

	handshake_replay_init(&f->hs, &f->b, id, sizeof(id));
	assert_string_equal(id, "\"mcpmux-replay-1\"");
	assert_text(f->b.buf, f->b.len,
		    "{'jsonrpc':'2.0','id':'mcpmux-replay-1','method':'initialize','params':{"
		    "'protocolVersion':'2025-06-18','capabilities':{},'clientInfo':{'name':'t',"
		    "'version':'1'}}}");
	static const char *const want[] = {
		"{'jsonrpc':'2.0','method':'notifications/initialized'}",
		"{'jsonrpc':'2.0','id':'mcpmux-replay-2','method':'logging/setLevel','params':{"
		"'level':'info'}}",
		"{'jsonrpc':'2.0','id':'mcpmux-replay-3','method':'resources/subscribe','params':{"
		"'uri':'fixture://a'}}",
		"{'jsonrpc':'2.0','id':'mcpmux-replay-4','method':'resources/subscribe','params':{"
		"'uri':'fixture://b'}}",
	};
	static const char *const want_id[] = { NULL, "\"mcpmux-replay-2\"", "\"mcpmux-replay-3\"",
					       "\"mcpmux-replay-4\"" };
	size_t k = 0;

	for (;; k++) {
		sbuf_reset(&f->b);
		id[0] = '\0';
		if (!handshake_replay_next(&f->hs, k, &f->b, &req, id, sizeof(id))) {
			break;
		}
		assert_true(k < 4);
		assert_text(f->b.buf, f->b.len, want[k]);
		assert_int_equal(req, want_id[k] != NULL);
		if (want_id[k] != NULL) {
			assert_string_equal(id, want_id[k]);
		}
		/* Each is a valid message that jsonrpc_scan() reads as mcpmux meant it. */
		assert_int_equal(jsonrpc_scan(&f->scan, f->b.buf, f->b.len),
				 req ? JSONRPC_REQUEST : JSONRPC_NOTIFICATION);
	}
	assert_int_equal(k, 4);
	assert_int_equal(f->b.len, 0);
	/* A second replay (another fresh server) gets ids of its own. */
	sbuf_reset(&f->b);
	handshake_replay_init(&f->hs, &f->b, id, sizeof(id));
	assert_string_equal(id, "\"mcpmux-replay-5\"");
	assert_true(handshake_is_replay_id(id, strlen(id)));
}

static void
test_replay_without_the_optional_parts(void **state)
{
	struct fix *f = *state;
	char id[64];
	bool req = true;

	client(f, INIT);
	server(f, ANSWER);
	/* No notifications/initialized, no level: the subscriptions alone. */
	subscribe(f, 2, "'fixture://a'");
	handshake_replay_init(&f->hs, &f->b, id, sizeof(id));
	sbuf_reset(&f->b);
	assert_true(handshake_replay_next(&f->hs, 0, &f->b, &req, id, sizeof(id)));
	assert_true(req);
	assert_text(
		f->b.buf, f->b.len,
		"{'jsonrpc':'2.0','id':'mcpmux-replay-2','method':'resources/subscribe','params':"
		"{'uri':'fixture://a'}}");
	sbuf_reset(&f->b);
	assert_false(handshake_replay_next(&f->hs, 1, &f->b, &req, id, sizeof(id)));
	/* Initialized only. */
	unsubscribe(f, 3, "'fixture://a'");
	client(f, "{'jsonrpc':'2.0','method':'notifications/initialized'}");
	assert_true(handshake_replay_next(&f->hs, 0, &f->b, &req, id, sizeof(id)));
	assert_false(req);
	sbuf_reset(&f->b);
	assert_false(handshake_replay_next(&f->hs, 1, &f->b, &req, id, sizeof(id)));
	assert_int_equal(f->b.len, 0);
}

/* ---- the fresh server's answer ---- */

static const char *
check(struct fix *f, const char *answer, char *why, size_t why_size)
{
	char buf[1024];
	size_t len = scan(f, buf, sizeof(buf), answer);

	return handshake_check_init(&f->hs, &f->scan, buf, len, why, why_size);
}

static void
test_check_init(void **state)
{
	struct fix *f = *state;
	char why[256];
	const char *r;

	client(f, INIT);
	server(f, ANSWER);
	/* The same answer, and the same values in another layout. */
	assert_null(check(f, ANSWER, why, sizeof(why)));
	assert_null(check(f,
			  "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'serverInfo':{"
			  "'name':'other','version':'2'},'capabilities': {\t'resources' : "
			  "{ 'subscribe' : true },\r 'logging':{ },'tools':{}} , "
			  "'protocolVersion' : '2025-\\u0030\\u0036-18'}}",
			  why, sizeof(why)));
	/* An error: its message is told. */
	r = check(f,
		  "{'jsonrpc':'2.0','id':'mcpmux-replay-1','error':{'code':-32603,'message':"
		  "'initialize refused'}}",
		  why, sizeof(why));
	assert_non_null(r);
	assert_string_equal(r, "the restarted server refused initialize: initialize refused");
	r = check(f, "{'jsonrpc':'2.0','id':'mcpmux-replay-1','error':{'code':-32603}}", why,
		  sizeof(why));
	assert_string_equal(r, "the restarted server refused initialize: (no message)");
	/* Another protocol version. */
	r = check(
		f,
		"{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'protocolVersion':'1999-01-01',"
		"'capabilities':{'tools':{},'logging':{},'resources':{'subscribe':true}}}}",
		why, sizeof(why));
	assert_non_null(r);
	assert_string_equal(r, "the restarted server's protocol version differs from the first "
			       "one's (1999-01-01, was 2025-06-18)");
	r = check(f,
		  "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'capabilities':{'tools':{},"
		  "'logging':{},'resources':{'subscribe':true}}}}",
		  why, sizeof(why));
	assert_string_equal(r, "the restarted server's protocol version differs from the first "
			       "one's (none, was 2025-06-18)");
	/* Other capabilities: one more, one fewer, one changed, none. */
	static const char *const caps[] = {
		"{'tools':{},'logging':{},'resources':{'subscribe':true},'prompts':{}}",
		"{'tools':{},'resources':{'subscribe':true}}",
		"{'tools':{},'logging':{},'resources':{'subscribe':false}}",
		"{'tools':{},'logging':{},'resources':{'subscribe':'true'}}",
		"{'tools':{},'logging':[],'resources':{'subscribe':true}}",
		"{'tools':{},'logging':{},'resources':{}}",
		"{}",
		"null",
	};
	char line[512];

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		(void)snprintf(
			line, sizeof(line),
			"{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'protocolVersion':"
			"'2025-06-18','capabilities':%s}}",
			caps[i]);
		r = check(f, line, why, sizeof(why));
		if (r == NULL ||
		    strcmp(r, "the restarted server's capabilities differ from the first one's") !=
			    0) {
			fail_msg("%s: %s", caps[i], r ? r : "accepted");
		}
	}
	r = check(
		f,
		"{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'protocolVersion':'2025-06-18'}}",
		why, sizeof(why));
	assert_non_null(r);
	/* A result of null: no protocol version, no capabilities. */
	r = check(f, "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':null}", why, sizeof(why));
	assert_non_null(r);
}

/* Numbers and strings compare by value; a member missing from both answers is the same. */
static void
test_check_init_values(void **state)
{
	struct fix *f = *state;
	char why[256];

	client(f, INIT);
	server(f, "{'jsonrpc':'2.0','id':1,'result':{'capabilities':{'x':{'n':1,'a':[1,'b',null,"
		  "false]}}}}");
	assert_true(handshake_ready(&f->hs));
	assert_null(check(f,
			  "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'capabilities':{'x':{"
			  "'a':[1.0,'\\u0062',null,false],'n':10e-1}}}}",
			  why, sizeof(why)));
	assert_non_null(check(f,
			      "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'capabilities':{"
			      "'x':{'a':['b',1,null,false],'n':1}}}}",
			      why, sizeof(why)));
	assert_non_null(check(f,
			      "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'capabilities':{"
			      "'x':{'a':[1,'b',null,true],'n':1}}}}",
			      why, sizeof(why)));
	assert_non_null(check(f,
			      "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'capabilities':{"
			      "'x':{'a':[1,'b',null,false],'n':2}}}}",
			      why, sizeof(why)));
	assert_non_null(check(f,
			      "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'capabilities':{"
			      "'x':{'a':[1,'b',null,false],'n':'1'}}}}",
			      why, sizeof(why)));
	assert_non_null(check(f,
			      "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'capabilities':{"
			      "'x':{'a':[1,'b',null,false],'m':1}}}}",
			      why, sizeof(why)));
	assert_non_null(check(f,
			      "{'jsonrpc':'2.0','id':'mcpmux-replay-1','result':{'protocolVersion':"
			      "'1','capabilities':{'x':{'a':[1,'b',null,false],'n':1}}}}",
			      why, sizeof(why)));
}

/* A long error message is cut, never in the middle of a UTF-8 character. */
static void
test_check_init_long_message(void **state)
{
	struct fix *f = *state;
	char why[512], line[1024], msg[400];
	const char *r;

	client(f, INIT);
	server(f, ANSWER);
	memset(msg, 'a', 199);
	strcpy(msg + 199, "\xc3\xa9tail"); /* é across the 200th byte */
	(void)snprintf(line, sizeof(line),
		       "{'jsonrpc':'2.0','id':'mcpmux-replay-1','error':{'code':1,'message':'%s'}}",
		       msg);
	r = check(f, line, why, sizeof(why));
	assert_non_null(r);
	const char *m = strstr(r, ": ") + 2;

	assert_int_equal(strlen(m), 199);
	assert_int_equal(m[198], 'a');
}

static void
test_is_replay_id(void **state)
{
	static const char *const yes[] = { "\"mcpmux-replay-1\"", "\"mcpmux-replay-42\"",
					   "\"mcpmux-replay-18446744073709551615\"" };
	static const char *const no[] = { "1",
					  "null",
					  "\"mcpmux-replay\"",
					  "\"mcpmux-replay-\"",
					  "\"mcpmux-replay-1x\"",
					  "\"mcpmux-replay-1",
					  "\"mcpmux-replay-1\"x",
					  "\"mcpmux-replay--1\"",
					  "\"x-mcpmux-replay-1\"",
					  "\"\"",
					  "" };

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!handshake_is_replay_id(yes[i], strlen(yes[i]))) {
			fail_msg("%s should be a replay id", yes[i]);
		}
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		if (handshake_is_replay_id(no[i], strlen(no[i]))) {
			fail_msg("%s should not be a replay id", no[i]);
		}
	}
	/* Only len bytes are looked at. */
	assert_true(handshake_is_replay_id("\"mcpmux-replay-7\"garbage", 17));
}

static void
test_release_and_reuse(void **state)
{
	struct fix *f = *state;

	client(f, INIT);
	server(f, ANSWER);
	client(f, "{'jsonrpc':'2.0','id':2,'method':'logging/setLevel','params':{'level':'info'}}");
	subscribe(f, 3, "'fixture://a'");
	handshake_release(&f->hs);
	assert_false(handshake_ready(&f->hs));
	assert_int_equal(f->hs.n_subs, 0);
	assert_false(f->hs.have_level);
	client(f, INIT);
	server(f, ANSWER);
	assert_true(handshake_ready(&f->hs));
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_records_initialize),
		T(test_records_take_their_size),
		T(test_an_initialize_whose_id_cannot_be_kept_is_not_had),
		T(test_initialize_without_params),
		T(test_set_level_keeps_the_last),
		T(test_subscriptions_are_a_set),
		T(test_subscription_uri_with_escapes),
		T(test_subscription_without_a_string_uri),
		T(test_subscriptions_bounded),
		T(test_initialize_resets),
		T(test_ready_after_the_answer_by_value),
		T(test_a_refused_initialize_is_not_replayed),
		T(test_batches_count_as_their_elements),
		T(test_ready_string_id_by_value),
		T(test_replay_bytes_and_ids),
		T(test_replay_without_the_optional_parts),
		T(test_check_init),
		T(test_check_init_values),
		T(test_check_init_long_message),
		cmocka_unit_test(test_is_replay_id),
		T(test_release_and_reuse),
	};
#undef T

	return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}
