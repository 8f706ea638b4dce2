/*
 * Unit tests for httpmsg: field names and values, lookup, lists, targets, dates, chunk
 * heads, Server-Sent Events (golden blocks, and size == format for every case), Accept
 * q-values, bearer tokens, loopback origins and addresses, and --http addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "mcpmux/httpmsg.h"

#define S(lit) lit, (sizeof(lit) - 1)

static void
test_tokens_and_values(void **state)
{
	(void)state;
	assert_true(httpmsg_is_token(S("Content-Type")));
	assert_true(httpmsg_is_token(S("x!#$%&'*+-.^_`|~9")));
	assert_false(httpmsg_is_token(S("")));
	assert_false(httpmsg_is_token(S("Host ")));
	assert_false(httpmsg_is_token(S("Ho st")));
	assert_false(httpmsg_is_token(S("a:b")));
	assert_false(httpmsg_is_token(S("a\"b")));
	assert_false(httpmsg_is_token("a\0b", 3));
	assert_false(httpmsg_is_token(S("caf\xc3\xa9")));

	assert_true(httpmsg_value_ok(S("")));
	assert_true(httpmsg_value_ok(S("text/event-stream; q=0.9\tx")));
	assert_true(httpmsg_value_ok(S("caf\xc3\xa9")));
	assert_false(httpmsg_value_ok(S("a\r\nX-Injected: 1")));
	assert_false(httpmsg_value_ok(S("a\nb")));
	assert_false(httpmsg_value_ok("a\0b", 3));
	assert_false(httpmsg_value_ok(S("a\x7f")));
}

static void
test_lookup(void **state)
{
	const struct http_header h[] = {
		{ S("Host"), S("x") },
		{ S("MCP-Session-Id"), S("abc") },
		{ S("mcp-session-id"), S("def") },
		{ S("Accept"), S("text/event-stream") },
	};

	(void)state;
	assert_true(httpmsg_name_eq(S("mcp-SESSION-id"), "Mcp-Session-Id"));
	assert_false(httpmsg_name_eq(S("Mcp-Session"), "Mcp-Session-Id"));
	assert_false(httpmsg_name_eq(S("Mcp-Session-Idx"), "Mcp-Session-Id"));
	assert_ptr_equal(httpmsg_find(h, 4, "mcp-session-id"), &h[1]);
	assert_ptr_equal(httpmsg_find(h, 4, "ACCEPT"), &h[3]);
	assert_null(httpmsg_find(h, 4, "Origin"));
	assert_null(httpmsg_find(NULL, 0, "Host"));
	assert_int_equal(httpmsg_count(h, 4, "Mcp-Session-Id"), 2);
	assert_int_equal(httpmsg_count(h, 4, "Origin"), 0);

	assert_true(httpmsg_list_has(S("keep-alive, Close"), "close"));
	assert_true(httpmsg_list_has(S(" ,close ,"), "close"));
	assert_false(httpmsg_list_has(S("closed, xclose"), "close"));
	assert_false(httpmsg_list_has(S(""), "close"));
	assert_true(httpmsg_list_only(S("chunked"), "chunked"));
	assert_true(httpmsg_list_only(S(" Chunked ,, chunked"), "chunked"));
	assert_false(httpmsg_list_only(S("gzip, chunked"), "chunked"));
	assert_false(httpmsg_list_only(S("chunked;x=1"), "chunked"));
}

static void
test_targets(void **state)
{
	struct httpmsg_target t;

	(void)state;
	httpmsg_split_target(S("/mcp"), &t);
	assert_int_equal(t.path_len, 4);
	assert_null(t.query);
	httpmsg_split_target(S("/mcp?a=1?b"), &t);
	assert_int_equal(t.path_len, 4);
	assert_int_equal(t.query_len, 5);
	assert_memory_equal(t.query, "a=1?b", 5);
	httpmsg_split_target(S("/?"), &t);
	assert_int_equal(t.path_len, 1);
	assert_non_null(t.query);
	assert_int_equal(t.query_len, 0);
	assert_null(t.authority);
	/* the absolute-form (RFC 9112, 3.2.2) */
	httpmsg_split_target(S("HTTP://127.0.0.1:8080/mcp?a"), &t);
	assert_int_equal(t.authority_len, 14);
	assert_memory_equal(t.authority, "127.0.0.1:8080", 14);
	assert_int_equal(t.path_len, 4);
	assert_memory_equal(t.path, "/mcp", 4);
	assert_int_equal(t.query_len, 1);
	assert_memory_equal(t.query, "a", 1);
	httpmsg_split_target(S("https://[::1]"), &t);
	assert_int_equal(t.authority_len, 5);
	assert_memory_equal(t.path, "/", 1);
	assert_int_equal(t.path_len, 1);
	assert_null(t.query);
	httpmsg_split_target(S("http://localhost?x"), &t);
	assert_int_equal(t.authority_len, 9);
	assert_memory_equal(t.path, "/", 1);
	assert_int_equal(t.query_len, 1);
	httpmsg_split_target(S("HTTPS://"), &t); /* a scheme alone: an empty authority */
	assert_int_equal(t.authority_len, 0);
	assert_non_null(t.authority);
	assert_memory_equal(t.path, "/", 1);
	assert_int_equal(t.path_len, 1);
	httpmsg_split_target(S("/http://a/mcp"), &t);
	assert_null(t.authority);
	assert_int_equal(t.path_len, 13);
}

static void
test_status_and_date(void **state)
{
	char d[HTTPMSG_DATE_LEN + 1];

	(void)state;
	assert_string_equal(httpmsg_reason(200), "OK");
	assert_string_equal(httpmsg_reason(202), "Accepted");
	assert_string_equal(httpmsg_reason(431), "Request Header Fields Too Large");
	assert_string_equal(httpmsg_reason(799), "Unknown");
	assert_true(httpmsg_status_bodiless(100));
	assert_true(httpmsg_status_bodiless(204));
	assert_true(httpmsg_status_bodiless(304));
	assert_false(httpmsg_status_bodiless(202));

	httpmsg_date(d, 784111777); /* RFC 9110's example */
	assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
	httpmsg_date(d, 0);
	assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
	httpmsg_date(d, 1795046400);
	assert_int_equal(strlen(d), HTTPMSG_DATE_LEN);
}

static void
test_chunk_heads(void **state)
{
	char b[HTTPMSG_CHUNK_HEAD_MAX];

	(void)state;
	assert_int_equal(httpmsg_chunk_head(b, 0), 3);
	assert_memory_equal(b, "0\r\n", 3);
	assert_int_equal(httpmsg_chunk_head(b, 255), 4);
	assert_memory_equal(b, "ff\r\n", 4);
	assert_int_equal(httpmsg_chunk_head(b, 0x10000), 7);
	assert_memory_equal(b, "10000\r\n", 7);
	assert_int_equal(httpmsg_chunk_head(b, SIZE_MAX), HTTPMSG_CHUNK_HEAD_MAX);
	assert_memory_equal(b, "ffffffffffffffff\r\n", HTTPMSG_CHUNK_HEAD_MAX);
}

static void
expect_sse(const struct httpmsg_sse *ev, const char *want)
{
	size_t n = httpmsg_sse_size(ev);
	char *out = malloc(n + 1);

	assert_non_null(out);
	assert_int_equal(httpmsg_sse_format(out, ev), n);
	out[n] = '\0';
	assert_string_equal(out, want);
	free(out);
}

static void
test_sse(void **state)
{
	(void)state;
	expect_sse(&(struct httpmsg_sse){ .retry_ms = -1, .has_data = true, S("{\"a\":1}") },
		   "data: {\"a\":1}\n\n");
	expect_sse(&(struct httpmsg_sse){ .id = "s1-7", .retry_ms = -1, .has_data = true, S("x") },
		   "id: s1-7\ndata: x\n\n");
	/* The priming event of 2025-11-25: an id and an empty data field. */
	expect_sse(&(struct httpmsg_sse){ .id = "s1-0", .retry_ms = 3000, .has_data = true },
		   "id: s1-0\nretry: 3000\ndata:\n\n");
	expect_sse(&(struct httpmsg_sse){ .comment = "keepalive", .retry_ms = -1 },
		   ": keepalive\n\n");
	expect_sse(&(struct httpmsg_sse){ .retry_ms = 0 }, "retry: 0\n\n");
	/* Any retry a long holds is written whole. */
	expect_sse(&(struct httpmsg_sse){ .retry_ms = 9223372036854775807L },
		   "retry: 9223372036854775807\n\n");
	expect_sse(
		&(struct httpmsg_sse){
			.event = "message", .retry_ms = -1, .has_data = true, S("a\r\nb\rc\nd") },
		"event: message\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
	/* A break at the end is a last, empty line: the client gets "a\n" back. */
	expect_sse(&(struct httpmsg_sse){ .retry_ms = -1, .has_data = true, S("a\n") },
		   "data: a\ndata:\n\n");
	expect_sse(&(struct httpmsg_sse){ .retry_ms = -1, .has_data = true, S("\r\n\r\n") },
		   "data:\ndata:\ndata:\n\n");
	expect_sse(&(struct httpmsg_sse){ .retry_ms = -1 }, "\n");

	assert_true(httpmsg_sse_field_ok("abc-1"));
	assert_false(httpmsg_sse_field_ok("a\nb"));
	assert_false(httpmsg_sse_field_ok("a\rb"));
	assert_int_equal(httpmsg_sse_break(S("{\"a\":\"b c\"}")), 11);
	assert_int_equal(httpmsg_sse_break(S("ab\rc")), 2);
	assert_int_equal(httpmsg_sse_break(S("\n")), 0);
}

static void
test_accept(void **state)
{
	static const char sse[] = "text/event-stream", json[] = "application/json";

	(void)state;
	assert_int_equal(httpmsg_accept_q(S("application/json, text/event-stream"), sse), 1000);
	assert_int_equal(httpmsg_accept_q(S("application/json, text/event-stream"), json), 1000);
	assert_int_equal(httpmsg_accept_q(S("application/json"), sse), 0);
	assert_int_equal(httpmsg_accept_q(S("TEXT/Event-Stream"), sse), 1000);
	assert_int_equal(httpmsg_accept_q(S("text/*;q=0.5"), sse), 500);
	assert_int_equal(httpmsg_accept_q(S("text/*;q=0.5"), json), 0);
	assert_int_equal(httpmsg_accept_q(S("*/*"), json), 1000);
	assert_int_equal(httpmsg_accept_q(S("*/*;q=0.1, text/event-stream;q=0"), sse), 0);
	assert_int_equal(httpmsg_accept_q(S("*/*;q=0.1, text/event-stream;q=0"), json), 100);
	assert_int_equal(httpmsg_accept_q(S("text/event-stream; charset=utf-8 ; q=0.8"), sse), 800);
	assert_int_equal(httpmsg_accept_q(S("text/event-stream;q=1.000"), sse), 1000);
	assert_int_equal(httpmsg_accept_q(S("text/event-stream;q=1.5"), sse), 0);
	assert_int_equal(httpmsg_accept_q(S("text/event-stream;q=abc"), sse), 0);
	assert_int_equal(httpmsg_accept_q(S("text/event-streamx"), sse), 0);
	assert_int_equal(httpmsg_accept_q(S("text/*"), "text/plain"), 1000);
	assert_int_equal(httpmsg_accept_q(S(""), sse), 0);
}

static void
test_accept_fields(void **state)
{
	static const char sse[] = "text/event-stream", json[] = "application/json";
	/* Two field lines are one list: the second's ranges count as the first's. */
	const struct http_header two[] = {
		{ S("Accept"), S("application/json") },
		{ S("Host"), S("localhost") },
		{ S("accept"), S("text/event-stream;q=0.5") },
	};
	const struct http_header specific[] = {
		{ S("Accept"), S("*/*") },
		{ S("Accept"), S("text/event-stream;q=0") },
	};

	(void)state;
	assert_int_equal(httpmsg_accept_fields_q(two, 3, sse), 500);
	assert_int_equal(httpmsg_accept_fields_q(two, 3, json), 1000);
	assert_int_equal(httpmsg_accept_fields_q(two, 2, sse), 0);
	assert_int_equal(httpmsg_accept_fields_q(two + 1, 1, sse), -1); /* none: the caller's */
	/* The most specific range wins, whichever line it is on. */
	assert_int_equal(httpmsg_accept_fields_q(specific, 2, sse), 0);
	assert_int_equal(httpmsg_accept_fields_q(specific, 2, json), 1000);
}

static void
test_bearer(void **state)
{
	static const char tok[] = "s3cr3t-token";

	(void)state;
	assert_true(httpmsg_bearer_ok(S("Bearer s3cr3t-token"), S(tok)));
	assert_true(httpmsg_bearer_ok(S("bearer  s3cr3t-token "), S(tok)));
	assert_false(httpmsg_bearer_ok(S("Bearer s3cr3t-tokeN"), S(tok)));
	assert_false(httpmsg_bearer_ok(S("Bearer s3cr3t-toke"), S(tok)));
	assert_false(httpmsg_bearer_ok(S("Bearer s3cr3t-token2"), S(tok)));
	assert_false(httpmsg_bearer_ok(S("Basic s3cr3t-token"), S(tok)));
	assert_false(httpmsg_bearer_ok(S("Bearer"), S(tok)));
	assert_false(httpmsg_bearer_ok(S("Bearer "), "", 0));
	assert_false(httpmsg_bearer_ok(S("s3cr3t-token"), S(tok)));
}

static void
test_origins(void **state)
{
	(void)state;
	assert_true(httpmsg_origin_is_loopback(S("http://localhost:3000")));
	assert_true(httpmsg_origin_is_loopback(S("http://LOCALHOST")));
	assert_true(httpmsg_origin_is_loopback(S("https://127.0.0.1")));
	assert_true(httpmsg_origin_is_loopback(S("http://127.1.2.3:80/")));
	assert_true(httpmsg_origin_is_loopback(S("http://[::1]:8443")));
	assert_true(httpmsg_origin_is_loopback(S("http://app.localhost:5173")));
	assert_false(httpmsg_origin_is_loopback(S("null")));
	assert_false(httpmsg_origin_is_loopback(S("http://localhost.evil.example")));
	assert_false(httpmsg_origin_is_loopback(S("http://127.0.0.1.evil.example")));
	assert_false(httpmsg_origin_is_loopback(S("http://evil.example/localhost")));
	assert_false(httpmsg_origin_is_loopback(S("http://127.0.0.256")));
	assert_false(httpmsg_origin_is_loopback(S("http://127.1")));
	assert_false(httpmsg_origin_is_loopback(S("http://[::2]")));
	assert_false(httpmsg_origin_is_loopback(S("file://localhost")));
	assert_false(httpmsg_origin_is_loopback(S("http://localhost:")));
	assert_false(httpmsg_origin_is_loopback(S("http://localhost:80x")));
	assert_false(httpmsg_origin_is_loopback(S("http://")));
	assert_false(httpmsg_origin_is_loopback(S("HTTPS://")));
	assert_false(httpmsg_origin_is_loopback(S("https:/")));

	assert_true(httpmsg_host_is_loopback(S("localhost:8080")));
	assert_true(httpmsg_host_is_loopback(S("127.0.0.1")));
	assert_true(httpmsg_host_is_loopback(S("[::1]:80")));
	assert_false(httpmsg_host_is_loopback(S("localhost:8080/")));
	assert_false(httpmsg_host_is_loopback(S("evil.example:8080")));
	assert_false(httpmsg_host_is_loopback(S("")));
	assert_false(httpmsg_host_is_loopback(S("127.0.0.1:")));
	assert_true(httpmsg_host_is_loopback(S("localhost:65535")));
	assert_false(httpmsg_host_is_loopback(S("localhost:65536")));
	assert_false(httpmsg_host_is_loopback(S("localhost:99999")));
	assert_false(httpmsg_origin_is_loopback(S("http://localhost:99999")));
}

static void
test_sockaddrs(void **state)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct sockaddr_un un = { .sun_family = AF_UNIX };

	(void)state;
	inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
	assert_true(httpmsg_sockaddr_is_loopback((struct sockaddr *)&in, sizeof(in)));
	inet_pton(AF_INET, "127.9.9.9", &in.sin_addr);
	assert_true(httpmsg_sockaddr_is_loopback((struct sockaddr *)&in, sizeof(in)));
	inet_pton(AF_INET, "0.0.0.0", &in.sin_addr);
	assert_false(httpmsg_sockaddr_is_loopback((struct sockaddr *)&in, sizeof(in)));
	inet_pton(AF_INET, "10.0.0.1", &in.sin_addr);
	assert_false(httpmsg_sockaddr_is_loopback((struct sockaddr *)&in, sizeof(in)));
	inet_pton(AF_INET6, "::1", &in6.sin6_addr);
	assert_true(httpmsg_sockaddr_is_loopback((struct sockaddr *)&in6, sizeof(in6)));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
	assert_true(httpmsg_sockaddr_is_loopback((struct sockaddr *)&in6, sizeof(in6)));
	inet_pton(AF_INET6, "::", &in6.sin6_addr);
	assert_false(httpmsg_sockaddr_is_loopback((struct sockaddr *)&in6, sizeof(in6)));
	assert_true(httpmsg_sockaddr_is_loopback((struct sockaddr *)&un, sizeof(un)));
}

static void
test_addresses(void **state)
{
	struct httpmsg_addr a;

	(void)state;
	assert_int_equal(httpmsg_parse_addr("8080", &a), 0);
	assert_string_equal(a.host, "127.0.0.1");
	assert_string_equal(a.port, "8080");
	assert_false(a.is_path);
	assert_int_equal(httpmsg_parse_addr("0.0.0.0:80", &a), 0);
	assert_string_equal(a.host, "0.0.0.0");
	assert_int_equal(httpmsg_parse_addr("[::1]:443", &a), 0);
	assert_string_equal(a.host, "::1");
	assert_string_equal(a.port, "443");
	assert_int_equal(httpmsg_parse_addr("localhost:0", &a), 0);
	assert_string_equal(a.port, "0");
	assert_int_equal(httpmsg_parse_addr("/run/mcpmux/http.sock", &a), 0);
	assert_true(a.is_path);
	assert_string_equal(a.path, "/run/mcpmux/http.sock");
	assert_int_equal(httpmsg_parse_addr("./http.sock", &a), 0);
	assert_true(a.is_path);

	static const char *const bad[] = { "",	  "x",	   "::1:80",  ":80",   "host:", "70000",
					   "80a", "[::1]", "[::1]80", "1:2:3", "123456" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		assert_int_equal(httpmsg_parse_addr(bad[i], &a), -1);
		assert_int_equal(errno, EINVAL);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens_and_values),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_targets),
		cmocka_unit_test(test_status_and_date),
		cmocka_unit_test(test_chunk_heads),
		cmocka_unit_test(test_sse),
		cmocka_unit_test(test_accept),
		cmocka_unit_test(test_accept_fields),
		cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_origins),
		cmocka_unit_test(test_sockaddrs),
		cmocka_unit_test(test_addresses),
	};

	return cmocka_run_group_tests_name("httpmsg", tests, NULL, NULL);
}
