/*
 * Unit tests for config: wrap and unwrap of each client's shape, byte-exact round trips in
 * JSON.stringify's layout, idempotence, what is skipped, the wrapped form unwrap accepts,
 * numbers and strings, style detection, comments, and every refusal with its position.
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

#include "mcpmux/config.h"
#include "mcpmux/rpcout.h"

#define MCPMUX "/usr/local/bin/mcpmux"

static const struct config_opts plain = { .mcpmux = MCPMUX };

/* Style of a string literal (its length without the final NUL). */
#define STYLE(lit, s) config_detect_style(lit, sizeof(lit) - 1, s)

/* Rewrite, expecting success; the caller releases r. */
static void
ok(enum config_op op, const char *in, const struct config_opts *o, struct config_result *r)
{
	int rc = config_rewrite(op, in, strlen(in), o, r);

	if (rc != 0) {
		fail_msg("refused: %zu:%zu: %s", r->line, r->col, r->error);
	}
	assert_non_null(r->text);
	assert_int_equal(strlen(r->text), r->len);
}

static void
expect_text(enum config_op op, const char *in, const struct config_opts *o, const char *want)
{
	struct config_result r;

	ok(op, in, o, &r);
	assert_string_equal(r.text, want);
	config_result_release(&r);
}

/* wrap(in) == wrapped, unwrap(wrapped) == in, wrap(wrapped) == wrapped. */
static void
round_trip(const char *in, const struct config_opts *o, const char *wrapped)
{
	expect_text(CONFIG_WRAP, in, o, wrapped);
	expect_text(CONFIG_UNWRAP, wrapped, o, in);
	expect_text(CONFIG_WRAP, wrapped, o, wrapped);
}

/* Rewrite, expecting a refusal at line:col (0: no position) whose reason holds `what`. */
static void
refused(enum config_op op, const char *in, size_t line, size_t col, const char *what)
{
	struct config_result r;
	int rc = config_rewrite(op, in, strlen(in), &plain, &r);

	assert_int_equal(rc, -1);
	assert_null(r.text);
	if (strstr(r.error, what) == NULL) {
		fail_msg("reason '%s' lacks '%s'", r.error, what);
	}
	assert_int_equal(r.line, line);
	if (col != 0) {
		assert_int_equal(r.col, col);
	}
	config_result_release(&r);
}

/* ---- shapes ---- */

static const char claude_in[] = "{\n"
				"  \"mcpServers\": {\n"
				"    \"filesystem\": {\n"
				"      \"command\": \"npx\",\n"
				"      \"args\": [\n"
				"        \"-y\",\n"
				"        \"@modelcontextprotocol/server-filesystem\",\n"
				"        \"/home/me/Desktop\"\n"
				"      ],\n"
				"      \"env\": {\n"
				"        \"DEBUG\": \"1\"\n"
				"      }\n"
				"    },\n"
				"    \"remote\": {\n"
				"      \"url\": \"https://mcp.example.com/sse\"\n"
				"    }\n"
				"  }\n"
				"}\n";

static const char claude_wrapped[] = "{\n"
				     "  \"mcpServers\": {\n"
				     "    \"filesystem\": {\n"
				     "      \"command\": \"" MCPMUX "\",\n"
				     "      \"args\": [\n"
				     "        \"--\",\n"
				     "        \"npx\",\n"
				     "        \"-y\",\n"
				     "        \"@modelcontextprotocol/server-filesystem\",\n"
				     "        \"/home/me/Desktop\"\n"
				     "      ],\n"
				     "      \"env\": {\n"
				     "        \"DEBUG\": \"1\"\n"
				     "      }\n"
				     "    },\n"
				     "    \"remote\": {\n"
				     "      \"url\": \"https://mcp.example.com/sse\"\n"
				     "    }\n"
				     "  }\n"
				     "}\n";

static void
test_claude_desktop(void **state)
{
	struct config_result r;

	(void)state;
	round_trip(claude_in, &plain, claude_wrapped);
	ok(CONFIG_WRAP, claude_in, &plain, &r);
	assert_int_equal(r.n_entries, 2);
	assert_int_equal(r.n_changed, 1);
	assert_int_equal(r.entries[0].verdict, CONFIG_CHANGED);
	assert_string_equal(r.entries[0].name, "filesystem");
	assert_string_equal(r.entries[0].before,
			    "npx -y @modelcontextprotocol/server-filesystem /home/me/Desktop");
	assert_string_equal(r.entries[0].after, MCPMUX " -- npx -y "
						       "@modelcontextprotocol/server-filesystem "
						       "/home/me/Desktop");
	assert_int_equal(r.entries[1].verdict, CONFIG_SKIPPED);
	assert_string_equal(r.entries[1].why, "remote (https://mcp.example.com/sse)");
	config_result_release(&r);
}

/* VS Code: "servers", tabs, "type": "stdio", an http server, "inputs", no final newline. */
static void
test_vscode(void **state)
{
	static const char in[] = "{\n"
				 "\t\"inputs\": [\n"
				 "\t\t{\n"
				 "\t\t\t\"type\": \"promptString\",\n"
				 "\t\t\t\"id\": \"token\",\n"
				 "\t\t\t\"password\": true\n"
				 "\t\t}\n"
				 "\t],\n"
				 "\t\"servers\": {\n"
				 "\t\t\"github\": {\n"
				 "\t\t\t\"type\": \"stdio\",\n"
				 "\t\t\t\"command\": \"docker\",\n"
				 "\t\t\t\"args\": [\n"
				 "\t\t\t\t\"run\",\n"
				 "\t\t\t\t\"-i\"\n"
				 "\t\t\t],\n"
				 "\t\t\t\"env\": {\n"
				 "\t\t\t\t\"TOKEN\": \"${input:token}\"\n"
				 "\t\t\t}\n"
				 "\t\t},\n"
				 "\t\t\"web\": {\n"
				 "\t\t\t\"type\": \"http\",\n"
				 "\t\t\t\"url\": \"https://api.example.com/mcp\"\n"
				 "\t\t},\n"
				 "\t\t\"sse\": {\n"
				 "\t\t\t\"type\": \"sse\",\n"
				 "\t\t\t\"command\": \"ignored\"\n"
				 "\t\t}\n"
				 "\t}\n"
				 "}";
	static const char wrapped[] = "{\n"
				      "\t\"inputs\": [\n"
				      "\t\t{\n"
				      "\t\t\t\"type\": \"promptString\",\n"
				      "\t\t\t\"id\": \"token\",\n"
				      "\t\t\t\"password\": true\n"
				      "\t\t}\n"
				      "\t],\n"
				      "\t\"servers\": {\n"
				      "\t\t\"github\": {\n"
				      "\t\t\t\"type\": \"stdio\",\n"
				      "\t\t\t\"command\": \"" MCPMUX "\",\n"
				      "\t\t\t\"args\": [\n"
				      "\t\t\t\t\"--\",\n"
				      "\t\t\t\t\"docker\",\n"
				      "\t\t\t\t\"run\",\n"
				      "\t\t\t\t\"-i\"\n"
				      "\t\t\t],\n"
				      "\t\t\t\"env\": {\n"
				      "\t\t\t\t\"TOKEN\": \"${input:token}\"\n"
				      "\t\t\t}\n"
				      "\t\t},\n"
				      "\t\t\"web\": {\n"
				      "\t\t\t\"type\": \"http\",\n"
				      "\t\t\t\"url\": \"https://api.example.com/mcp\"\n"
				      "\t\t},\n"
				      "\t\t\"sse\": {\n"
				      "\t\t\t\"type\": \"sse\",\n"
				      "\t\t\t\"command\": \"ignored\"\n"
				      "\t\t}\n"
				      "\t}\n"
				      "}";
	struct config_result r;

	(void)state;
	round_trip(in, &plain, wrapped);
	ok(CONFIG_WRAP, in, &plain, &r);
	assert_int_equal(r.n_changed, 1);
	assert_string_equal(r.entries[1].why, "remote (https://api.example.com/mcp)");
	assert_string_equal(r.entries[2].why, "remote (type sse)");
	config_result_release(&r);
}

/* OpenClaw: "mcp": {"servers": ...}, 4 spaces, other top-level keys kept in order. */
static void
test_openclaw(void **state)
{
	static const char in[] = "{\n"
				 "    \"agents\": {\n"
				 "        \"defaults\": {\n"
				 "            \"model\": \"x\"\n"
				 "        }\n"
				 "    },\n"
				 "    \"mcp\": {\n"
				 "        \"enabled\": true,\n"
				 "        \"servers\": {\n"
				 "            \"browser\": {\n"
				 "                \"command\": \"lightpanda\",\n"
				 "                \"args\": [\n"
				 "                    \"mcp\"\n"
				 "                ]\n"
				 "            }\n"
				 "        }\n"
				 "    },\n"
				 "    \"z\": null\n"
				 "}\n";
	static const char wrapped[] = "{\n"
				      "    \"agents\": {\n"
				      "        \"defaults\": {\n"
				      "            \"model\": \"x\"\n"
				      "        }\n"
				      "    },\n"
				      "    \"mcp\": {\n"
				      "        \"enabled\": true,\n"
				      "        \"servers\": {\n"
				      "            \"browser\": {\n"
				      "                \"command\": \"" MCPMUX "\",\n"
				      "                \"args\": [\n"
				      "                    \"--eof-grace\",\n"
				      "                    \"500\",\n"
				      "                    \"--term-grace\",\n"
				      "                    \"1000\",\n"
				      "                    \"--\",\n"
				      "                    \"lightpanda\",\n"
				      "                    \"mcp\"\n"
				      "                ]\n"
				      "            }\n"
				      "        }\n"
				      "    },\n"
				      "    \"z\": null\n"
				      "}\n";
	const struct config_opts o = { .mcpmux = MCPMUX, .eof_grace = "500", .term_grace = "1000" };

	(void)state;
	round_trip(in, &o, wrapped);
}

/* Every location present is rewritten. */
static void
test_all_locations(void **state)
{
	static const char in[] = "{\"mcpServers\":{\"a\":{\"command\":\"x\"}},"
				 "\"servers\":{\"b\":{\"command\":\"y\"}},"
				 "\"mcp\":{\"servers\":{\"c\":{\"command\":\"z\"}}}}";
	struct config_result r;

	(void)state;
	ok(CONFIG_WRAP, in, &plain, &r);
	assert_int_equal(r.n_changed, 3);
	assert_string_equal(r.entries[0].name, "a");
	assert_string_equal(r.entries[1].name, "b");
	assert_string_equal(r.entries[2].name, "c");
	config_result_release(&r);
}

/* ---- the "args" rule ---- */

static void
test_no_args_key(void **state)
{
	(void)state;
	/* Inserted just before "command"; removed again by unwrap. */
	round_trip("{\"mcpServers\":{\"s\":{\"command\":\"srv\",\"env\":{\"A\":\"1\"}}}}\n", &plain,
		   "{\"mcpServers\":{\"s\":{\"args\":[\"--\",\"srv\"],\"command\":\"" MCPMUX
		   "\",\"env\":{\"A\":\"1\"}}}}\n");
	round_trip("{\"mcpServers\":{\"s\":{\"type\":\"stdio\",\"command\":\"srv\"}}}", &plain,
		   "{\"mcpServers\":{\"s\":{\"type\":\"stdio\",\"args\":[\"--\",\"srv\"],"
		   "\"command\":\"" MCPMUX "\"}}}");
}

static void
test_empty_args_kept(void **state)
{
	(void)state;
	round_trip("{\n  \"mcpServers\": {\n    \"s\": {\n      \"command\": \"srv\",\n      "
		   "\"args\": []\n    }\n  }\n}\n",
		   &plain,
		   "{\n  \"mcpServers\": {\n    \"s\": {\n      \"command\": \"" MCPMUX
		   "\",\n      "
		   "\"args\": [\n        \"--\",\n        \"srv\"\n      ]\n    }\n  }\n}\n");
	/* "args" after other members, then "command": kept where it is. */
	round_trip("{\"servers\":{\"s\":{\"args\":[],\"env\":{},\"command\":\"srv\"}}}", &plain,
		   "{\"servers\":{\"s\":{\"args\":[\"--\",\"srv\"],\"env\":{},\"command\":\"" MCPMUX
		   "\"}}}");
}

/* The documented exception: an empty "args" just before "command" comes back without it. */
static void
test_empty_args_before_command(void **state)
{
	struct config_result w, u;

	(void)state;
	ok(CONFIG_WRAP, "{\"mcpServers\":{\"s\":{\"args\":[],\"command\":\"srv\"}}}", &plain, &w);
	ok(CONFIG_UNWRAP, w.text, &plain, &u);
	assert_string_equal(u.text, "{\"mcpServers\":{\"s\":{\"command\":\"srv\"}}}");
	config_result_release(&u);
	config_result_release(&w);
}

/* ---- idempotence, skipping, what unwrap recognises ---- */

static void
test_idempotent(void **state)
{
	static const char hand[] =
		"{\"mcpServers\":{\"b\":{\"command\":\"mcpmux\",\"args\":[\"--\","
		"\"lightpanda\",\"mcp\"]}}}";
	struct config_result r;

	(void)state;
	ok(CONFIG_WRAP, hand, &plain, &r);
	assert_int_equal(r.n_changed, 0);
	assert_string_equal(r.text, hand);
	assert_string_equal(r.entries[0].why, "already runs through mcpmux");
	config_result_release(&r);
	/* A hand-written wrap unwraps too. */
	expect_text(CONFIG_UNWRAP, hand, &plain,
		    "{\"mcpServers\":{\"b\":{\"command\":\"lightpanda\",\"args\":[\"mcp\"]}}}");
	/* A custom --mcpmux path is recognised by its own name as well. */
	static const char custom[] = "{\"mcpServers\":{\"b\":{\"command\":\"/opt/mux\",\"args\":["
				     "\"--\",\"x\"]}}}";
	const struct config_opts o = { .mcpmux = "/opt/mux" };

	ok(CONFIG_WRAP, custom, &o, &r);
	assert_int_equal(r.n_changed, 0);
	config_result_release(&r);
	expect_text(CONFIG_UNWRAP, custom, &o,
		    "{\"mcpServers\":{\"b\":{\"command\":\"x\",\"args\":[]}}}");
	ok(CONFIG_UNWRAP, custom, &plain, &r);
	assert_int_equal(r.n_changed, 0);
	assert_string_equal(r.entries[0].why, "not wrapped");
	config_result_release(&r);
}

static void
test_skipped_left_verbatim(void **state)
{
	/* Nothing changes: the text comes back byte for byte, whatever its layout. */
	static const char in[] =
		"{ \"mcpServers\" : {\n\"a\": {\"serverUrl\": \"https://x\"},"
		"  \"b\":{\"type\":\"streamable-http\"},\"c\" :{\"disabled\":true} }"
		",\"n\":1.0 }  \n\n";
	struct config_result r;

	(void)state;
	ok(CONFIG_WRAP, in, &plain, &r);
	assert_int_equal(r.n_changed, 0);
	assert_int_equal(r.n_entries, 3);
	assert_string_equal(r.text, in);
	assert_string_equal(r.entries[0].why, "remote (https://x)");
	assert_string_equal(r.entries[1].why, "remote (type streamable-http)");
	assert_string_equal(r.entries[2].why, "no \"command\"");
	config_result_release(&r);
	ok(CONFIG_UNWRAP, in, &plain, &r);
	assert_int_equal(r.n_changed, 0);
	assert_string_equal(r.text, in);
	config_result_release(&r);
	/* Values shown in the summary carry no terminal escapes. */
	ok(CONFIG_WRAP, "{\"servers\":{\"e\":{\"url\":\"http://x/\\u001b[2J\"}}}", &plain, &r);
	assert_string_equal(r.entries[0].why, "remote (http://x/?[2J)");
	config_result_release(&r);
	/* A command with a NUL inside is not mcpmux, whatever comes before the NUL. */
	ok(CONFIG_WRAP, "{\"servers\":{\"n\":{\"command\":\"mcpmux\\u0000x\"}}}", &plain, &r);
	assert_int_equal(r.n_changed, 1);
	config_result_release(&r);
	/* An empty set of servers is fine too. */
	expect_text(CONFIG_WRAP, "{\"servers\":{}}", &plain, "{\"servers\":{}}");
}

static void
test_unwrap_forms(void **state)
{
	static const struct {
		const char *args; /* JSON array */
		const char *want; /* the entry after unwrap, or NULL: skipped */
	} cases[] = {
		{ "[\"--eof-grace=5\",\"--\",\"x\",\"-y\"]",
		  "{\"command\":\"x\",\"args\":[\"-y\"]}" },
		{ "[\"-q\",\"--log\",\"/l\",\"x\"]", "{\"command\":\"x\",\"args\":[]}" },
		{ "[\"--\",\"--\",\"a\"]", "{\"command\":\"--\",\"args\":[\"a\"]}" },
		{ "[\"--\",\"serve\"]", "{\"command\":\"serve\",\"args\":[]}" },
		{ "[\"--max-queue\",\"1M\",\"--idle-timeout\",\"9\",\"-v\",\"--\",\"x\"]",
		  "{\"command\":\"x\",\"args\":[]}" },
		{ "[\"connect\",\"/run/s\"]", NULL },
		{ "[\"serve\",\"--\",\"x\"]", NULL },
		{ "[\"--unknown\",\"--\",\"x\"]", NULL },
		{ "[\"--version\"]", NULL },
		{ "[\"--\"]", NULL },
		{ "[\"--eof-grace\"]", NULL },
		{ "[]", NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[512], want[512];
		struct config_result r;

		snprintf(in, sizeof(in),
			 "{\"mcpServers\":{\"s\":{\"command\":\"mcpmux\",\"args\":%s}}}",
			 cases[i].args);
		ok(CONFIG_UNWRAP, in, &plain, &r);
		if (cases[i].want == NULL) {
			assert_int_equal(r.n_changed, 0);
			assert_string_equal(r.text, in);
		} else {
			snprintf(want, sizeof(want), "{\"mcpServers\":{\"s\":%s}}", cases[i].want);
			assert_string_equal(r.text, want);
		}
		config_result_release(&r);
	}
	/* No "args" at all: not a wrapped server. */
	expect_text(CONFIG_UNWRAP, "{\"mcpServers\":{\"s\":{\"command\":\"mcpmux\"}}}", &plain,
		    "{\"mcpServers\":{\"s\":{\"command\":\"mcpmux\"}}}");
}

static void
test_log_dir(void **state)
{
	const struct config_opts o = { .mcpmux = MCPMUX, .log_dir = "/var/log/mcp/" };

	(void)state;
	round_trip(
		"{\"mcpServers\":{\"my server/1\":{\"command\":\"x\",\"args\":[\"a\"]},"
		"\".hidden\":{\"command\":\"y\",\"args\":[]}}}",
		&o,
		"{\"mcpServers\":{\"my server/1\":{\"command\":\"" MCPMUX "\",\"args\":[\"--log\","
		"\"/var/log/mcp/my_server_1.jsonl\",\"--\",\"x\",\"a\"]},\".hidden\":{\"command\":"
		"\"" MCPMUX
		"\",\"args\":[\"--log\",\"/var/log/mcp/_hidden.jsonl\",\"--\",\"y\"]}}}");
}

/* ---- values ---- */

static void
test_numbers_and_strings(void **state)
{
	/* Numbers keep their text; strings are re-escaped the way JSON.stringify does. */
	static const char in[] =
		"{\n"
		"  \"mcpServers\": {\n"
		"    \"s\": {\n"
		"      \"command\": \"caf\xc3\xa9 \\\"q\\\" \\\\ \\n\\t \\u001b\",\n"
		"      \"timeout\": 1.50,\n"
		"      \"big\": 123456789012345678901234567890,\n"
		"      \"huge\": 1e400,\n"
		"      \"neg\": -0,\n"
		"      \"exp\": 2.5E-3,\n"
		"      \"flags\": [\n"
		"        true,\n"
		"        false,\n"
		"        null\n"
		"      ],\n"
		"      \"empty\": {},\n"
		"      \"none\": [],\n"
		"      \"emoji\": \"\xf0\x9f\x98\x80\"\n"
		"    }\n"
		"  }\n"
		"}\n";
	struct config_result w, u;

	(void)state;
	ok(CONFIG_WRAP, in, &plain, &w);
	assert_non_null(strstr(w.text, "\"timeout\": 1.50,"));
	assert_non_null(strstr(w.text, "\"huge\": 1e400,"));
	ok(CONFIG_UNWRAP, w.text, &plain, &u);
	assert_string_equal(u.text, in);
	config_result_release(&u);
	config_result_release(&w);
	/* Escapes JSON.stringify would not write come back in its form (same value). */
	ok(CONFIG_WRAP, "{\"servers\":{\"s\":{\"command\":\"\\u00e9\\/\"}}}", &plain, &w);
	assert_non_null(strstr(w.text, "\"\xc3\xa9/\""));
	config_result_release(&w);
	/* A NUL inside a string survives. */
	ok(CONFIG_WRAP, "{\"servers\":{\"s\":{\"command\":\"a\\u0000b\"}}}", &plain, &w);
	assert_non_null(memmem(w.text, w.len, "\"a\\u0000b\"", 10));
	config_result_release(&w);
}

/* ---- style ---- */

static void
test_style(void **state)
{
	struct config_style s;

	(void)state;
	STYLE("{\n\t\"a\": 1\n}\n", &s);
	assert_string_equal(s.indent, "\t");
	assert_true(s.final_eol);
	assert_false(s.crlf || s.one_line || s.bom);
	STYLE("{\r\n    \"a\": 1\r\n}", &s);
	assert_string_equal(s.indent, "    ");
	assert_true(s.crlf);
	assert_false(s.final_eol);
	STYLE("\xef\xbb\xbf{\"a\": [1, 2]}\n", &s);
	assert_true(s.bom && s.one_line && s.final_eol);
	STYLE("{\n\"a\": 1\n}", &s);
	assert_string_equal(s.indent, "  ");
	assert_false(s.one_line);
	STYLE("", &s);
	assert_string_equal(s.indent, "  ");

	/* Layout follows: CRLF, a byte-order mark, one line. */
	round_trip("{\r\n  \"servers\": {\r\n    \"s\": {\r\n      \"command\": \"x\",\r\n      "
		   "\"args\": [\r\n        \"a\"\r\n      ]\r\n    }\r\n  }\r\n}\r\n",
		   &plain,
		   "{\r\n  \"servers\": {\r\n    \"s\": {\r\n      \"command\": \"" MCPMUX
		   "\",\r\n      \"args\": [\r\n        \"--\",\r\n        \"x\",\r\n        "
		   "\"a\"\r\n      ]\r\n    }\r\n  }\r\n}\r\n");
	round_trip("\xef\xbb\xbf{\"servers\":{\"s\":{\"command\":\"x\",\"args\":[\"a\"]}}}\n",
		   &plain,
		   "\xef\xbb\xbf{\"servers\":{\"s\":{\"command\":\"" MCPMUX "\",\"args\":[\"--\","
		   "\"x\",\"a\"]}}}\n");
}

/* ---- comments and refusals ---- */

static void
test_comments(void **state)
{
	size_t line = 0, col = 0;

	(void)state;
	assert_false(config_find_comment("{\"u\": \"http://x/*y*/\"}", 22, &line, &col));
	assert_false(config_find_comment("{\"a\\\"//\": 1}", 12, &line, &col));
	assert_true(config_find_comment("{\n  \"a\": 1 // one\n}", 19, &line, &col));
	assert_int_equal(line, 2);
	assert_int_equal(col, 10);
	assert_true(config_find_comment("/* c */{}", 9, &line, &col));
	assert_int_equal(line, 1);
	assert_int_equal(col, 1);
	refused(CONFIG_WRAP, "{\n  \"servers\": {\n    // off\n  }\n}\n", 3, 5,
		"comments are not supported");
	refused(CONFIG_UNWRAP, "{\"servers\": {} /* x */}", 1, 16, "comments are not supported");
}

/* {"servers":{},"x":[[...]]} with `arrays` nested arrays. */
static void
deep_config(char *buf, size_t size, int arrays)
{
	size_t n = (size_t)snprintf(buf, size, "{\"servers\":{},\"x\":");

	for (int i = 0; i < arrays; i++) {
		buf[n++] = '[';
	}
	for (int i = 0; i < arrays; i++) {
		buf[n++] = ']';
	}
	buf[n++] = '}';
	buf[n] = '\0';
}

static void
test_refusals(void **state)
{
	char deep[2 * CONFIG_MAX_DEPTH + 64];
	struct config_result r;

	(void)state;
	refused(CONFIG_WRAP, "{\n  \"servers\": {\n    \"a\": x\n  }\n}", 3, 10, "invalid JSON");
	refused(CONFIG_WRAP, "{\n  \"servers\": {\n    \"a\": {},\n  }\n}", 3, 12,
		"trailing commas are not supported");
	refused(CONFIG_WRAP, "{\"servers\": {} \"b\": 1}", 1, 16, "invalid JSON");
	refused(CONFIG_WRAP, "{\"servers\": {\"a\": tru}}", 1, 19, "invalid JSON");
	refused(CONFIG_WRAP, "{\"servers\": {", 1, 14, "unexpected end of file");
	refused(CONFIG_WRAP, "", 1, 1, "unexpected end of file");
	refused(CONFIG_WRAP, "{} {}", 1, 0, "trailing garbage");
	refused(CONFIG_WRAP, "{\"servers\": {}}\n \"", 2, 2, "trailing garbage");
	refused(CONFIG_WRAP, "{\"servers\": {}}\"abc", 1, 16, "trailing garbage");
	refused(CONFIG_WRAP, "{\"servers\": {\"a\": \"\xff\"}}", 1, 0, "invalid JSON");
	refused(CONFIG_WRAP, "{\"servers\": {}}\v", 1, 16, "vertical tab or form feed");
	refused(CONFIG_WRAP, "{\"servers\":\f{}}", 1, 12, "vertical tab or form feed");
	expect_text(CONFIG_WRAP, "{\"servers\": {\"a\": {\"url\": \"\\f\"}}}", &plain,
		    "{\"servers\": {\"a\": {\"url\": \"\\f\"}}}");
	refused(CONFIG_WRAP, "[1]", 1, 1, "the top level is an array, expected an object");
	refused(CONFIG_WRAP, "{\"other\": 1}", 0, 0, "no MCP servers found");
	refused(CONFIG_WRAP, "{\"mcp\": {\"x\": 1}}", 0, 0, "no MCP servers found");
	refused(CONFIG_WRAP, "{\n\"mcpServers\": []\n}", 2, 15,
		"\"mcpServers\" is an array, expected an object of servers");
	refused(CONFIG_WRAP, "{\"mcp\": {\"servers\": 7}}", 1, 21, "\"mcp.servers\" is a number");
	refused(CONFIG_WRAP, "{\"servers\": {\n  \"a\": \"npx foo\"\n}}", 2, 0,
		"server a is a string, expected an object");
	refused(CONFIG_UNWRAP, "{\"servers\": {\n  \"my s\": {\n    \"command\": [\"x\"]}}}", 3, 0,
		"server 'my s': \"command\" is an array, expected a string");
	refused(CONFIG_WRAP, "{\"servers\": {\"a\": {\"command\": \"x\",\n \"args\": \"-y\"}}}", 2,
		0, "server a: \"args\" must be an array of strings");
	refused(CONFIG_WRAP, "{\"servers\": {\"a\": {\"command\": \"x\", \"args\": [1]}}}", 1, 0,
		"\"args\" must be an array of strings");
	/* A byte-order mark shifts the columns of line 1. */
	refused(CONFIG_WRAP, "\xef\xbb\xbf{\"mcpServers\": 1}", 1, 19, "is a number");

	/* CONFIG_MAX_DEPTH levels are fine (the top object is one), one more is refused. */
	deep_config(deep, sizeof(deep), CONFIG_MAX_DEPTH - 1);
	ok(CONFIG_WRAP, deep, &plain, &r);
	config_result_release(&r);
	deep_config(deep, sizeof(deep), CONFIG_MAX_DEPTH);
	refused(CONFIG_WRAP, deep, 1, 145, "nested deeper than 127 levels");
}

/* ---- helpers ---- */

static void
test_helpers(void **state)
{
	struct sbuf b = { 0 };
	char *s;

	(void)state;
	assert_true(config_is_mcpmux("mcpmux", NULL));
	assert_true(config_is_mcpmux("/usr/bin/mcpmux", NULL));
	assert_true(config_is_mcpmux("/opt/x", "/opt/x"));
	assert_false(config_is_mcpmux("/usr/bin/mcpmux2", NULL));
	assert_false(config_is_mcpmux("mcpmux/bin", "/opt/x"));

	s = config_log_name("a b/c", 5);
	assert_string_equal(s, "a_b_c");
	free(s);
	s = config_log_name("..x", 3);
	assert_string_equal(s, "_.x");
	free(s);
	s = config_log_name("", 0);
	assert_string_equal(s, "_");
	free(s);

	config_shell_quote(&b, "plain/path-1.0", 14);
	sbuf_adds(&b, " ");
	config_shell_quote(&b, "it's $x", 7);
	sbuf_adds(&b, " ");
	config_shell_quote(&b, "", 0);
	sbuf_adds(&b, " ");
	config_shell_quote(&b, "a\nb", 3);
	assert_string_equal(b.buf, "plain/path-1.0 'it'\\''s $x' '' 'a?b'");
	sbuf_release(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claude_desktop),
		cmocka_unit_test(test_vscode),
		cmocka_unit_test(test_openclaw),
		cmocka_unit_test(test_all_locations),
		cmocka_unit_test(test_no_args_key),
		cmocka_unit_test(test_empty_args_kept),
		cmocka_unit_test(test_empty_args_before_command),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_skipped_left_verbatim),
		cmocka_unit_test(test_unwrap_forms),
		cmocka_unit_test(test_log_dir),
		cmocka_unit_test(test_numbers_and_strings),
		cmocka_unit_test(test_style),
		cmocka_unit_test(test_comments),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_helpers),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
