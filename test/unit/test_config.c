/*
 * Unit tests for config: wrap and unwrap of each client's shape, in JSON and in JSON5,
 * byte-exact round trips, idempotence, what is skipped, the wrapped form unwrap accepts,
 * re-wrapping with other options, the style of inserted text (quotes, indentation, one
 * line or several, trailing commas, line ends), comments in every position, the spans of
 * the entries, and every refusal with its position.
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

/* Each client's name for a remote server's URL: the entry is skipped, or ambiguous. */
static void
test_remote_url_names(void **state)
{
	static const char *const names[] = { "url", "serverUrl", "httpUrl" };
	struct config_result r;
	char in[256];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(in, sizeof(in), "{\"mcpServers\":{\"g\":{\"%s\":\"https://h/mcp\"}}}",
			 names[i]);
		ok(CONFIG_WRAP, in, &plain, &r);
		assert_int_equal(r.n_changed, 0);
		assert_string_equal(r.entries[0].why, "remote (https://h/mcp)");
		config_result_release(&r);
		snprintf(in, sizeof(in),
			 "{\"mcpServers\":{\"g\":{\"command\":\"npx\",\"%s\":\"https://h/mcp\"}}}",
			 names[i]);
		ok(CONFIG_WRAP, in, &plain, &r);
		assert_int_equal(r.n_changed, 0);
		assert_true(r.entries[0].ambiguous);
		assert_string_equal(r.text, in);
		config_result_release(&r);
	}
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
	/* "command": null is no command: a remote server beside it is skipped, not refused. */
	ok(CONFIG_WRAP, "{\"servers\":{\"h\":{\"command\":null,\"url\":\"https://x\"}}}", &plain,
	   &r);
	assert_int_equal(r.n_changed, 0);
	assert_string_equal(r.entries[0].why, "remote (https://x)");
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
		/* Every other subcommand of main.c too. */
		{ "[\"ps\",\"--json\"]", NULL },
		{ "[\"sweep\",\"--session\",\"s\"]", NULL },
		{ "[\"ctl\",\"/run/s\",\"status\"]", NULL },
		{ "[\"log\",\"/l\"]", NULL },
		{ "[\"config\",\"wrap\",\"f\"]", NULL },
		{ "[\"demo\"]", NULL },
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
	/* Numbers and strings outside what changes keep their text. */
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
	/* The command moves as the text it was: its escapes stay as they were written. */
	round_trip("{\"servers\":{\"s\":{\"command\":\"\\u00e9\\/\"}}}", &plain,
		   "{\"servers\":{\"s\":{\"args\":[\"--\",\"\\u00e9\\/\"],\"command\":\"" MCPMUX
		   "\"}}}");
	/* A NUL inside a string survives. */
	ok(CONFIG_WRAP, "{\"servers\":{\"s\":{\"command\":\"a\\u0000b\"}}}", &plain, &w);
	assert_non_null(memmem(w.text, w.len, "\"a\\u0000b\"", 10));
	config_result_release(&w);
}

/* ---- layout: kept, and followed by what is inserted ---- */

static void
test_line_ends_and_bom(void **state)
{
	(void)state;
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
	/* Lone CRs (old Mac files): the inserted lines end with CR too. */
	round_trip("{\r  \"servers\": {\r    \"s\": {\r      \"command\": \"x\"\r    }\r  }\r}\r",
		   &plain,
		   "{\r  \"servers\": {\r    \"s\": {\r      \"args\": [\r        \"--\",\r        "
		   "\"x\"\r      ],\r      \"command\": \"" MCPMUX "\"\r    }\r  }\r}\r");
}

/* A layout JSON.stringify does not write is kept as it is (the old generator did not). */
static void
test_layout_kept(void **state)
{
	static const char in[] =
		"{\n"
		"  \"mcpServers\": {\n"
		"    \"fs\": { \"command\": \"npx\", \"args\": [\"-y\", \"pkg\"] },\n"
		"    \"b\": {\n"
		"      \"command\": \"b\",\n"
		"      \"args\": [],\n"
		"      \"env\": { \"K\": \"v\" }\n"
		"    }\n"
		"  },\n"
		"  \"n\": [1,2,   3], \"x\": \"\\u00e9\"\n"
		"}";
	static const char wrapped[] = "{\n"
				      "  \"mcpServers\": {\n"
				      "    \"fs\": { \"command\": \"" MCPMUX
				      "\", \"args\": [\"--\", \"npx\", \"-y\", \"pkg\"] },\n"
				      "    \"b\": {\n"
				      "      \"command\": \"" MCPMUX "\",\n"
				      "      \"args\": [\"--\", \"b\"],\n"
				      "      \"env\": { \"K\": \"v\" }\n"
				      "    }\n"
				      "  },\n"
				      "  \"n\": [1,2,   3], \"x\": \"\\u00e9\"\n"
				      "}";

	(void)state;
	round_trip(in, &plain, wrapped);
}

/* An agent gateway's config in JSON5: comments, unquoted keys, single quotes, commas. */
static const char openclaw5[] =
	"// ~/.openclaw/openclaw.json\n"
	"{\n"
	"  agents: {\n"
	"    defaults: {\n"
	"      workspace: '~/.openclaw/workspace',\n"
	"      model: { primary: 'anthropic/claude-sonnet-4-5' },\n"
	"    },\n"
	"  },\n"
	"  mcp: {\n"
	"    servers: {\n"
	"      // the headless browser of the scheduled runs\n"
	"      browser: {\n"
	"        command: 'lightpanda', // on PATH\n"
	"        args: ['mcp'],\n"
	"        env: { LIGHTPANDA_DISABLE_TELEMETRY: 'true' },\n"
	"      },\n"
	"      memory: {\n"
	"        command: 'npx',\n"
	"        args: [\n"
	"          '-y',\n"
	"          '@modelcontextprotocol/server-memory',\n"
	"        ],\n"
	"      },\n"
	"      files: {\n"
	"        command: '/opt/mcp/files',\n"
	"      },\n"
	"      search: { url: 'https://search.example.com/mcp' }, /* remote */\n"
	"    },\n"
	"  },\n"
	"  cron: { enabled: true, maxConcurrentRuns: 0x2, backoff: .5, },\n"
	"}\n";

static const char openclaw5_wrapped[] =
	"// ~/.openclaw/openclaw.json\n"
	"{\n"
	"  agents: {\n"
	"    defaults: {\n"
	"      workspace: '~/.openclaw/workspace',\n"
	"      model: { primary: 'anthropic/claude-sonnet-4-5' },\n"
	"    },\n"
	"  },\n"
	"  mcp: {\n"
	"    servers: {\n"
	"      // the headless browser of the scheduled runs\n"
	"      browser: {\n"
	"        command: '" MCPMUX "', // on PATH\n"
	"        args: ['--idle-timeout', '600', '--', 'lightpanda', 'mcp'],\n"
	"        env: { LIGHTPANDA_DISABLE_TELEMETRY: 'true' },\n"
	"      },\n"
	"      memory: {\n"
	"        command: '" MCPMUX "',\n"
	"        args: [\n"
	"          '--idle-timeout',\n"
	"          '600',\n"
	"          '--',\n"
	"          'npx',\n"
	"          '-y',\n"
	"          '@modelcontextprotocol/server-memory',\n"
	"        ],\n"
	"      },\n"
	"      files: {\n"
	"        args: ['--idle-timeout', '600', '--', '/opt/mcp/files'],\n"
	"        command: '" MCPMUX "',\n"
	"      },\n"
	"      search: { url: 'https://search.example.com/mcp' }, /* remote */\n"
	"    },\n"
	"  },\n"
	"  cron: { enabled: true, maxConcurrentRuns: 0x2, backoff: .5, },\n"
	"}\n";

static void
test_json5_gateway(void **state)
{
	const struct config_opts o = { .mcpmux = MCPMUX, .idle_timeout = "600" };
	struct config_result r;

	(void)state;
	round_trip(openclaw5, &o, openclaw5_wrapped);
	ok(CONFIG_WRAP, openclaw5, &o, &r);
	assert_int_equal(r.n_changed, 3);
	assert_int_equal(r.n_entries, 4);
	assert_string_equal(r.entries[0].after, MCPMUX " --idle-timeout 600 -- lightpanda mcp");
	assert_string_equal(r.entries[3].why, "remote (https://search.example.com/mcp)");
	for (size_t i = 0; i < r.n_entries; i++) {
		assert_false(r.entries[i].inexact);
	}
	config_result_release(&r);
}

/* Inserted strings take the entry's quotes; an inserted key, the command key's. */
static void
test_quotes(void **state)
{
	const struct config_opts o = { .mcpmux = "/opt/it's \"here\"/mcpmux" };

	(void)state;
	/* Most strings of the entry are single-quoted; the command stays as it was. */
	round_trip("{servers: {s: {command: \"x\", args: ['a', 'b']}}}", &plain,
		   "{servers: {s: {command: '" MCPMUX "', args: ['--', \"x\", 'a', 'b']}}}");
	/* A tie: the command's quotes. */
	round_trip("{servers: {s: {command: 'x', env: {A: \"1\"}}}}", &plain,
		   "{servers: {s: {args: ['--', 'x'], command: '" MCPMUX "', env: {A: \"1\"}}}}");
	round_trip("{'servers': {'s': {'command': 'x'}}}", &plain,
		   "{'servers': {'s': {'args': ['--', 'x'], 'command': '" MCPMUX "'}}}");
	/* Escapes for each kind of quote. */
	expect_text(CONFIG_WRAP, "{servers: {s: {command: 'x'}}}", &o,
		    "{servers: {s: {args: ['--', 'x'], command: '/opt/it\\'s \"here\"/mcpmux'}}}");
	expect_text(CONFIG_WRAP, "{\"servers\": {\"s\": {\"command\": \"x\"}}}", &o,
		    "{\"servers\": {\"s\": {\"args\": [\"--\", \"x\"], \"command\": \"/opt/it's "
		    "\\\"here\\\"/mcpmux\"}}}");
}

/* One item a line or one line, indentation, trailing commas, padding, as around. */
static void
test_inserted_layout(void **state)
{
	(void)state;
	/* Tabs; every multi-line container ends with a comma: so does the new array. */
	round_trip(
		"{\n\tservers: {\n\t\ts: {\n\t\t\tcommand: 'x',\n\t\t\targs: [],\n\t\t},\n\t},\n}\n",
		&plain,
		"{\n\tservers: {\n\t\ts: {\n\t\t\tcommand: '" MCPMUX
		"',\n\t\t\targs: [\n\t\t\t\t'--',\n\t\t\t\t'x',\n\t\t\t],\n\t\t},\n\t},\n}\n");
	/* Four spaces, no trailing commas, another server's args on one line with padding. */
	round_trip("{\n    \"servers\": {\n        \"a\": {\n            \"command\": \"a\",\n"
		   "            \"args\": [ \"-y\",  \"p\" ]\n        },\n        \"b\": {\n"
		   "            \"command\": \"b\"\n        }\n    }\n}\n",
		   &plain,
		   "{\n    \"servers\": {\n        \"a\": {\n            \"command\": \"" MCPMUX
		   "\",\n            \"args\": [ \"--\",  \"a\",  \"-y\",  \"p\" ]\n        },\n"
		   "        \"b\": {\n            \"args\": [ \"--\",  \"b\" ],\n            "
		   "\"command\": \"" MCPMUX "\"\n        }\n    }\n}\n");
	/* The other server's args one item a line, at its own depth. */
	round_trip(
		"{\n  \"servers\": {\n    \"a\": {\n      \"command\": \"a\",\n      \"args\": "
		"[\n        \"-y\"\n      ]\n    },\n    \"b\": {\"command\": \"b\"},\n    \"c\": "
		"{\n      \"env\": {},\n      \"command\": \"c\"\n    }\n  }\n}",
		&plain,
		"{\n  \"servers\": {\n    \"a\": {\n      \"command\": \"" MCPMUX
		"\",\n      \"args\": [\n        \"--\",\n        \"a\",\n        \"-y\"\n      "
		"]\n    },\n    \"b\": {\"args\": [\"--\", \"b\"], \"command\": \"" MCPMUX
		"\"},\n    \"c\": {\n      \"env\": {},\n      \"args\": [\n        \"--\",\n  "
		"      \"c\"\n      ],\n      \"command\": \"" MCPMUX "\"\n    }\n  }\n}");
	/* The colon as the command's is written; compact entries stay compact. */
	round_trip("{servers:{s:{command : 'x',env:{}}}}", &plain,
		   "{servers:{s:{args : ['--','x'],command : '" MCPMUX "',env:{}}}}");
}

/* What unwrap cannot tell apart comes back meaning the same, and is flagged. */
static void
test_inexact(void **state)
{
	static const struct {
		const char *in, *back;
		bool inexact;
	} cases[] = {
		{ "{\"servers\":{\"s\":{\"args\":[],\"command\":\"x\"}}}",
		  "{\"servers\":{\"s\":{\"command\":\"x\"}}}", true },
		{ "{\"servers\":{\"s\":{\"command\":\"x\",\"args\":[ ]}}}",
		  "{\"servers\":{\"s\":{\"command\":\"x\",\"args\":[]}}}", true },
		{ "{\"servers\":{\"s\":{\"args\":[ ],\"command\":\"x\"}}}",
		  "{\"servers\":{\"s\":{\"command\":\"x\"}}}", true },
		{ "{\"servers\":{\"s\":{\"command\":\"x\",\"args\":[]}}}", NULL, false },
		{ "{\"servers\":{\"s\":{\"command\":\"x\",\"args\":[ /* none */ ]}}}", NULL,
		  false },
		{ "{\"servers\":{\"s\":{\"args\":[/* none */],\"command\":\"x\"}}}", NULL, false },
		{ "{servers:{s:{args:[\n// none\n],command:'x'}}}", NULL, false },
		/*
		 * Two "args": a client reads the last, the empty one.  Unwrap keeps it: gone,
		 * it would leave the first one to be read.
		 */
		{ "{\"servers\":{\"s\":{\"args\":[\"a\"],\"args\":[],\"command\":\"x\"}}}", NULL,
		  false },
		{ "{\"servers\":{\"s\":{\"args\":[\"a\"],\"args\":[ ],\"command\":\"x\"}}}",
		  "{\"servers\":{\"s\":{\"args\":[\"a\"],\"args\":[],\"command\":\"x\"}}}", true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config_result w, u;

		ok(CONFIG_WRAP, cases[i].in, &plain, &w);
		assert_int_equal(w.n_changed, 1);
		assert_int_equal(w.entries[0].inexact, cases[i].inexact);
		ok(CONFIG_UNWRAP, w.text, &plain, &u);
		assert_string_equal(u.text, cases[i].back != NULL ? cases[i].back : cases[i].in);
		config_result_release(&u);
		config_result_release(&w);
	}
	/* A comment in an empty args: the items go before it. */
	expect_text(CONFIG_WRAP,
		    "{\"servers\":{\"s\":{\"command\":\"x\",\"args\":[ /* none */ ]}}}", &plain,
		    "{\"servers\":{\"s\":{\"command\":\"" MCPMUX
		    "\",\"args\":[\"--\",\"x\" /* none */ ]}}}");
}

/* Comments anywhere in and around an entry stay where they are, byte for byte. */
static void
test_comments_kept(void **state)
{
	static const char in[] =
		"{\n"
		"  /* a */ \"mcpServers\" /* b */ : /* c */ {\n"
		"    // d\n"
		"    \"s\" /* e */ : /* f */ {\n"
		"      /* g */ \"command\" /* h */ : /* i */ \"npx\" /* j */ , // k\n"
		"      \"args\" /* l */ : /* m */ [ /* n */ \"-y\" /* o */ , /* p */ \"pkg\" /* q "
		"*/ ] /* r */ // s\n"
		"      /* t */\n"
		"    }, /* u */\n"
		"    \"t\": { /* g */ \"command\" /* h */ : /* i */ \"x\" }\n"
		"  } // v\n"
		"} /* w */";
	static const char wrapped[] =
		"{\n"
		"  /* a */ \"mcpServers\" /* b */ : /* c */ {\n"
		"    // d\n"
		"    \"s\" /* e */ : /* f */ {\n"
		"      /* g */ \"command\" /* h */ : /* i */ \"" MCPMUX "\" /* j */ , // k\n"
		"      \"args\" /* l */ : /* m */ [ /* n */ \"--\", \"npx\", \"-y\" /* o */ , /* p */ "
		"\"pkg\" /* q */ ] /* r */ // s\n"
		"      /* t */\n"
		"    }, /* u */\n"
		"    \"t\": { /* g */ \"args\": [\"--\", \"x\"], \"command\" /* h */ : /* i */ \"" MCPMUX
		"\" }\n"
		"  } // v\n"
		"} /* w */";

	(void)state;
	round_trip(in, &plain, wrapped);
}

/* Hand-written wraps with comments among mcpmux's items: the comments stay. */
static void
test_unwrap_keeps_comments(void **state)
{
	(void)state;
	expect_text(CONFIG_UNWRAP,
		    "{\"servers\": {\"s\": {\"command\": \"mcpmux\", \"args\": [\n"
		    "  // mcpmux's own\n"
		    "  \"--log\", \"/tmp/s.jsonl\", // log it\n"
		    "  \"--\",\n"
		    "  \"srv\", \"a\"\n"
		    "]}}}",
		    &plain,
		    "{\"servers\": {\"s\": {\"command\": \"srv\", \"args\": [\n"
		    "  // mcpmux's own\n"
		    "  // log it\n"
		    "  \"a\"\n"
		    "]}}}");
	expect_text(CONFIG_UNWRAP,
		    "{servers: {s: {command: 'mcpmux', args: [ /* all */ '--', 'srv' ]}}}", &plain,
		    "{servers: {s: {command: 'srv', args: [ /* all */ ]}}}");
	/* A line comment keeps the line break that ends it. */
	expect_text(CONFIG_UNWRAP,
		    "{servers: {s: {command: 'mcpmux', args: [ // own\n  '--', 'srv' ]}}}", &plain,
		    "{servers: {s: {command: 'srv', args: [ // own\n ]}}}");
	expect_text(CONFIG_UNWRAP,
		    "{servers: {s: {command: 'mcpmux', args: [ // own\r\n'--', 'srv']}}}", &plain,
		    "{servers: {s: {command: 'srv', args: [ // own\r\n]}}}");
	/* A comment between an item and its comma. */
	expect_text(CONFIG_UNWRAP,
		    "{servers: {s: {command: 'mcpmux', args: ['--' /* c */ , 'srv', 'a']}}}",
		    &plain, "{servers: {s: {command: 'srv', args: [ /* c */ 'a']}}}");
	/* An "args" just before "command" with a comment at its colon stays, empty. */
	expect_text(CONFIG_UNWRAP, "{servers: {s: {args /* c */: ['--', 'x'], command: 'mcpmux'}}}",
		    &plain, "{servers: {s: {args /* c */: [], command: 'x'}}}");
}

/* ---- options ---- */

static void
test_all_options(void **state)
{
	const struct config_opts o = {
		.mcpmux = MCPMUX,
		.log_dir = "/var/log/mcp",
		.eof_grace = "1",
		.term_grace = "2",
		.idle_timeout = "3",
		.idle_suspend = "4",
		.max_servers = "5",
		.pool = "browsers",
	};

	(void)state;
	round_trip("{\"servers\":{\"b\":{\"command\":\"x\",\"args\":[\"a\"]}}}", &o,
		   "{\"servers\":{\"b\":{\"command\":\"" MCPMUX "\",\"args\":[\"--log\","
		   "\"/var/log/mcp/b.jsonl\",\"--eof-grace\",\"1\",\"--term-grace\",\"2\","
		   "\"--idle-timeout\",\"3\",\"--idle-suspend\",\"4\",\"--max-servers\",\"5\","
		   "\"--pool\",\"browsers\",\"--\",\"x\",\"a\"]}}}");
}

/* Wrapping a wrapped entry sets the options given, and keeps the others. */
static void
test_rewrap(void **state)
{
	const struct config_opts o = { .mcpmux = MCPMUX, .eof_grace = "700", .idle_suspend = "60" };
	const struct config_opts pool = { .mcpmux = MCPMUX, .pool = "p" };
	const struct config_opts same = { .mcpmux = MCPMUX, .eof_grace = "500" };
	const struct config_opts cmd = { .mcpmux = MCPMUX, .set_command = true };
	static const char wrapped[] =
		"{\"servers\": {\"s\": {\"command\": \"/opt/mcpmux\", \"args\": [\"-q\", "
		"\"--eof-grace\", \"500\", \"--\", \"x\", \"-y\"]}}}";
	struct config_result r, u;

	(void)state;
	ok(CONFIG_WRAP, wrapped, &o, &r);
	assert_string_equal(r.text,
			    "{\"servers\": {\"s\": {\"command\": \"/opt/mcpmux\", \"args\": "
			    "[\"-q\", \"--eof-grace\", \"700\", \"--idle-suspend\", \"60\", "
			    "\"--\", \"x\", \"-y\"]}}}");
	assert_int_equal(r.n_changed, 1);
	assert_int_equal(r.entries[0].verdict, CONFIG_UPDATED);
	assert_string_equal(r.entries[0].before, "/opt/mcpmux -q --eof-grace 500 -- x -y");
	assert_string_equal(r.entries[0].after,
			    "/opt/mcpmux -q --eof-grace 700 --idle-suspend 60 -- x -y");
	/* Again: nothing to do. */
	expect_text(CONFIG_WRAP, r.text, &o, r.text);
	ok(CONFIG_UNWRAP, r.text, &plain, &u);
	assert_string_equal(u.text,
			    "{\"servers\": {\"s\": {\"command\": \"x\", \"args\": [\"-y\"]}}}");
	config_result_release(&u);
	config_result_release(&r);
	/* The same values, or none given: left alone. */
	ok(CONFIG_WRAP, wrapped, &same, &r);
	assert_int_equal(r.n_changed, 0);
	assert_string_equal(r.entries[0].why, "already runs through mcpmux");
	config_result_release(&r);
	expect_text(CONFIG_WRAP, wrapped, &plain, wrapped);
	/* --name=VALUE keeps its form; without "--" new options go before the command. */
	expect_text(CONFIG_WRAP,
		    "{servers: {s: {command: 'mcpmux', args: ['--eof-grace=5', 'x']}}}", &o,
		    "{servers: {s: {command: 'mcpmux', args: ['--eof-grace=700', '--idle-suspend', "
		    "'60', 'x']}}}");
	/* The last of repeated options is the one mcpmux uses, and the one set. */
	expect_text(CONFIG_WRAP,
		    "{servers: {s: {command: 'mcpmux', args: ['--pool', 'a', '--pool', 'b', '--', "
		    "'x']}}}",
		    &pool,
		    "{servers: {s: {command: 'mcpmux', args: ['--pool', 'a', '--pool', 'p', '--', "
		    "'x']}}}");
	/* One item a line: new ones at the items' indentation. */
	expect_text(CONFIG_WRAP,
		    "{\n  \"servers\": {\n    \"s\": {\n      \"command\": \"mcpmux\",\n      "
		    "\"args\": [\n        \"--\",\n        \"x\"\n      ]\n    }\n  }\n}\n",
		    &pool,
		    "{\n  \"servers\": {\n    \"s\": {\n      \"command\": \"mcpmux\",\n      "
		    "\"args\": [\n        \"--pool\",\n        \"p\",\n        \"--\",\n        "
		    "\"x\"\n      ]\n    }\n  }\n}\n");
	/* With --mcpmux, the command too: an older install's path is replaced. */
	ok(CONFIG_WRAP, wrapped, &cmd, &r);
	assert_string_equal(r.text,
			    "{\"servers\": {\"s\": {\"command\": \"" MCPMUX
			    "\", \"args\": [\"-q\", \"--eof-grace\", \"500\", \"--\", \"x\", "
			    "\"-y\"]}}}");
	assert_int_equal(r.entries[0].verdict, CONFIG_UPDATED);
	config_result_release(&r);
	/* A wrap with options mcpmux does not know: not ours to change. */
	ok(CONFIG_WRAP, "{servers: {s: {command: 'mcpmux', args: ['--frob', '--', 'x']}}}", &o, &r);
	assert_int_equal(r.n_changed, 0);
	assert_string_equal(r.entries[0].why, "already runs through mcpmux");
	config_result_release(&r);
	/* Options of a newer mcpmux are known to unwrap. */
	expect_text(
		CONFIG_UNWRAP,
		"{servers: {s: {command: 'mcpmux', args: ['--idle-suspend', '1', '--max-servers', "
		"'2', '--pool=a', '--stall-timeout', '3', '--kill-deadline', '4', '--', 'x']}}}",
		&plain, "{servers: {s: {command: 'x', args: []}}}");
}

/* config_opts.is_mcpmux_file() of test_mcpmux_file(): "/opt/mux" is mcpmux; asks counted. */
static bool
opt_mux_is_mcpmux(const char *command, void *ctx)
{
	assert_true(command[0] == '/');
	(*(int *)ctx)++;
	return strcmp(command, "/opt/mux") == 0;
}

/*
 * An absolute command that the caller says is the mcpmux file (another path to it) is
 * wrapped already: wrap leaves it, unwrap restores it.  A relative one is not asked about.
 */
static void
test_mcpmux_file(void **state)
{
	int asked = 0;
	const struct config_opts o = { .mcpmux = MCPMUX,
				       .is_mcpmux_file = opt_mux_is_mcpmux,
				       .ctx = &asked };
	static const char wrapped[] = "{servers: {a: {command: '/opt/mux', args: ['--', 'x']}, "
				      "b: {command: 'mux', args: ['--', 'y']}}}";
	struct config_result r;

	(void)state;
	ok(CONFIG_WRAP, wrapped, &o, &r);
	assert_int_equal(r.n_changed, 1);
	assert_int_equal(r.entries[0].verdict, CONFIG_SKIPPED);
	assert_string_equal(r.entries[0].why, "already runs through mcpmux");
	assert_int_equal(r.entries[1].verdict, CONFIG_CHANGED);
	assert_string_equal(r.text, "{servers: {a: {command: '/opt/mux', args: ['--', 'x']}, "
				    "b: {command: '" MCPMUX "', args: ['--', 'mux', '--', 'y']}}}");
	config_result_release(&r);
	assert_int_not_equal(asked, 0);
	asked = 0;
	expect_text(CONFIG_UNWRAP, wrapped, &o,
		    "{servers: {a: {command: 'x', args: []}, b: {command: 'mux', args: ['--', "
		    "'y']}}}");
	assert_int_not_equal(asked, 0);
	/* Without it, "/opt/mux" is a server like any other. */
	expect_text(CONFIG_UNWRAP, wrapped, &plain, wrapped);
}

/* An entry wrapped twice (mcpmux by another name wrapped again) is unwrapped at once. */
static void
test_unwrap_twice_wrapped(void **state)
{
	int asked = 0;
	const struct config_opts o = { .mcpmux = MCPMUX,
				       .is_mcpmux_file = opt_mux_is_mcpmux,
				       .ctx = &asked };
	char deep[512] = "{servers: {a: {command: 'mcpmux', args: ['--', ";

	(void)state;
	expect_text(CONFIG_UNWRAP,
		    "{servers: {a: {command: '" MCPMUX "', args: ['--', '/opt/mux', '--', "
		    "'server', '-x']}}}",
		    &o, "{servers: {a: {command: 'server', args: ['-x']}}}");
	/* Options of either wrap go; one named mcpmux wraps the other. */
	expect_text(CONFIG_UNWRAP,
		    "{servers: {a: {command: '/opt/mux', args: ['--log', '/l', '/usr/bin/mcpmux', "
		    "'-v', '--', 'server']}}}",
		    &o, "{servers: {a: {command: 'server', args: []}}}");
	/* An mcpmux that runs no server (a subcommand) is what was wrapped: it stays. */
	expect_text(CONFIG_UNWRAP,
		    "{servers: {a: {command: '" MCPMUX "', args: ['--', '/usr/bin/mcpmux', "
		    "'connect', 'srv']}}}",
		    &plain,
		    "{servers: {a: {command: '/usr/bin/mcpmux', args: ['connect', 'srv']}}}");
	/* Without is_mcpmux_file, "/opt/mux" is the server. */
	expect_text(CONFIG_UNWRAP,
		    "{servers: {a: {command: '" MCPMUX "', args: ['--', '/opt/mux', '--', "
		    "'server']}}}",
		    &plain, "{servers: {a: {command: '/opt/mux', args: ['--', 'server']}}}");
	/* A wrap of it updates the outer wrap alone: the inner one stays. */
	expect_text(CONFIG_WRAP,
		    "{servers: {a: {command: '" MCPMUX "', args: ['--', '/usr/bin/mcpmux', '-q', "
		    "'--', 'server']}}}",
		    &plain,
		    "{servers: {a: {command: '" MCPMUX "', args: ['--', '/usr/bin/mcpmux', '-q', "
		    "'--', 'server']}}}");
	/* However many wraps: all of them go in one unwrap. */
	for (int i = 0; i < 9; i++) {
		strcat(deep, "'mcpmux', '--', ");
	}
	strcat(deep, "'server']}}}");
	expect_text(CONFIG_UNWRAP, deep, &plain, "{servers: {a: {command: 'server', args: []}}}");
}

/* Each entry's span in the input and the output; nothing else moves. */
static void
test_entry_spans(void **state)
{
	static const char in[] =
		"{\"servers\": {\"a\": {\"command\": \"x\"}, \"r\": {\"url\": \"u\"}, "
		"\"b\": {\"command\": \"y\", \"args\": []}}, \"z\": 1}";
	struct config_result r;

	(void)state;
	ok(CONFIG_WRAP, in, &plain, &r);
	assert_int_equal(r.n_entries, 3);
	for (size_t i = 0; i < r.n_entries; i++) {
		const struct config_entry *e = &r.entries[i];

		assert_int_equal(in[e->start], '{');
		assert_int_equal(in[e->end - 1], '}');
		assert_int_equal(r.text[e->out_start], '{');
		assert_int_equal(r.text[e->out_end - 1], '}');
	}
	assert_memory_equal(r.text + r.entries[0].out_start,
			    "{\"args\": [\"--\", \"x\"], \"command\": \"" MCPMUX "\"}",
			    r.entries[0].out_end - r.entries[0].out_start);
	/* The skipped entry, and what lies between entries, are as they were. */
	assert_int_equal(r.entries[1].out_end - r.entries[1].out_start,
			 r.entries[1].end - r.entries[1].start);
	assert_memory_equal(r.text + r.entries[1].out_start, in + r.entries[1].start,
			    r.entries[1].end - r.entries[1].start);
	assert_memory_equal(r.text, in, r.entries[0].start);
	assert_int_equal(r.entries[0].out_start, r.entries[0].start);
	assert_string_equal(r.text + r.entries[2].out_end, in + r.entries[2].end);
	config_result_release(&r);
}

/* ---- refusals ---- */

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
	refused(CONFIG_WRAP, "{\n  \"servers\": {\n    \"a\": x\n  }\n}", 3, 10,
		"neither JSON nor JSON5: expected a value, found 'x'");
	refused(CONFIG_WRAP, "{\"servers\": {} \"b\": 1}", 1, 16,
		"expected ',' or '}' after the member, found '\"'");
	refused(CONFIG_WRAP, "{\"servers\": {\"a\": tru}}", 1, 19, "found 'tru'");
	refused(CONFIG_WRAP, "{\"servers\": {", 1, 14, "found the end of the file");
	refused(CONFIG_WRAP, "", 1, 1, "expected a value, found the end of the file");
	refused(CONFIG_WRAP, "{} {}", 1, 4, "expected nothing more after the value");
	refused(CONFIG_WRAP, "{\"servers\": {}}\n \"", 2, 2, "expected nothing more");
	refused(CONFIG_WRAP, "{\"servers\": {}}\"abc", 1, 16, "expected nothing more");
	refused(CONFIG_WRAP, "{\"servers\": {\"a\": \"\xff\"}}", 1, 20, "invalid UTF-8");
	refused(CONFIG_WRAP, "{\n  servers: {}, /* open\n}", 2, 16, "unterminated comment");
	refused(CONFIG_WRAP, "{\r\n  servers: {a: 'b\r\n'}}", 2, 18, "line break in a string");
	refused(CONFIG_UNWRAP, "{servers: {}, 'x': 01}", 1, 20, "invalid number '01'");
	refused(CONFIG_WRAP, "[1]", 1, 1, "the top level is an array, expected an object");
	refused(CONFIG_WRAP, "{\"other\": 1}", 0, 0, "no MCP servers found");
	refused(CONFIG_WRAP, "{\"mcp\": {\"x\": 1}}", 0, 0, "no MCP servers found");
	refused(CONFIG_WRAP, "{\n\"mcpServers\": []\n}", 2, 15,
		"\"mcpServers\" is an array, expected an object of servers");
	refused(CONFIG_WRAP, "{\"mcp\": {\"servers\": 7}}", 1, 21, "\"mcp.servers\" is a number");
	refused(CONFIG_WRAP, "{\"servers\": {\n  \"a\": \"npx foo\"\n}}", 2, 8,
		"server a is a string, expected an object");
	refused(CONFIG_UNWRAP, "{\"servers\": {\n  \"my s\": {\n    \"command\": [\"x\"]}}}", 3, 16,
		"server 'my s': \"command\" is an array, expected a string");
	refused(CONFIG_WRAP, "{\"servers\": {\"a\": {\"command\": \"x\",\n \"args\": \"-y\"}}}", 2,
		10, "server a: \"args\" must be an array of strings");
	refused(CONFIG_WRAP, "{servers: {a: {command: 'x', args: [1]}}}", 1, 36,
		"\"args\" must be an array of strings");
	/* A byte-order mark shifts the columns of line 1. */
	refused(CONFIG_WRAP, "\xef\xbb\xbf{\"mcpServers\": 1}", 1, 19, "is a number");

	/* Only syntax errors are syntax errors. */
	assert_int_equal(config_rewrite(CONFIG_WRAP, "{", 1, &plain, &r), -1);
	assert_true(r.syntax);
	config_result_release(&r);
	assert_int_equal(config_rewrite(CONFIG_WRAP, "[]", 2, &plain, &r), -1);
	assert_false(r.syntax);
	config_result_release(&r);

	/* What JSON refuses and JSON5 takes. */
	expect_text(CONFIG_WRAP, "{\"servers\": {}}\v", &plain, "{\"servers\": {}}\v");
	expect_text(CONFIG_WRAP, "{\"servers\":\f{}}", &plain, "{\"servers\":\f{}}");
	expect_text(CONFIG_WRAP, "{\"servers\": {\"a\": {},},}", &plain,
		    "{\"servers\": {\"a\": {},},}");
	expect_text(CONFIG_WRAP, "{\"servers\": {\"a\": {\"url\": \"\\f\"}}}", &plain,
		    "{\"servers\": {\"a\": {\"url\": \"\\f\"}}}");

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

	config_literal(&b, "a\"b'c\\\n\x01\x1f\xff\xc3\xa9\x7f", 13, '"');
	assert_string_equal(b.buf, "\"a\\\"b'c\\\\\\n\\u0001\\u001f\xef\xbf\xbd\xc3\xa9\x7f\"");
	sbuf_release(&b);
	config_literal(&b, "a\"b'c\b\f\r\t", 9, '\'');
	assert_string_equal(b.buf, "'a\"b\\'c\\b\\f\\r\\t'");
	sbuf_release(&b);
	config_literal(&b, "", 0, '"');
	assert_string_equal(b.buf, "\"\"");
	sbuf_release(&b);
}

static void
test_position(void **state)
{
	static const char t[] = "ab\r\ncd\ref\ngh";
	size_t line, col;

	(void)state;
	config_position(t, sizeof(t) - 1, 1, &line, &col);
	assert_int_equal(line, 1);
	assert_int_equal(col, 2);
	config_position(t, sizeof(t) - 1, 5, &line, &col); /* d */
	assert_int_equal(line, 2);
	assert_int_equal(col, 2);
	config_position(t, sizeof(t) - 1, 7, &line, &col); /* e, after a lone CR */
	assert_int_equal(line, 3);
	assert_int_equal(col, 1);
	config_position(t, sizeof(t) - 1, 11, &line, &col); /* h */
	assert_int_equal(line, 4);
	assert_int_equal(col, 2);
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
		cmocka_unit_test(test_remote_url_names),
		cmocka_unit_test(test_skipped_left_verbatim),
		cmocka_unit_test(test_unwrap_forms),
		cmocka_unit_test(test_log_dir),
		cmocka_unit_test(test_numbers_and_strings),
		cmocka_unit_test(test_line_ends_and_bom),
		cmocka_unit_test(test_layout_kept),
		cmocka_unit_test(test_json5_gateway),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_inserted_layout),
		cmocka_unit_test(test_inexact),
		cmocka_unit_test(test_comments_kept),
		cmocka_unit_test(test_unwrap_keeps_comments),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_rewrap),
		cmocka_unit_test(test_mcpmux_file),
		cmocka_unit_test(test_unwrap_twice_wrapped),
		cmocka_unit_test(test_entry_spans),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_position),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
