/*
 * Fuzz target: config_rewrite(), the client-config rewriter.
 *
 * The input is the file.  Checked, from the contract in config.h:
 *
 *   - a refusal has a reason and a position within the text; a success has text, and as
 *     many CHANGED entries as n_changed;
 *   - only strict JSON is accepted, and what comes out is JSON (after a byte-order mark);
 *   - when no server changes, the output is the input, byte for byte;
 *   - wrapping is idempotent: wrapping the output again changes nothing, byte for byte;
 *   - unwrap undoes wrap: unwrapping the wrapped text restores at least the servers wrap
 *     changed, and wrapping that again gives the wrapped text back, byte for byte, when
 *     no other server was involved;
 *   - unwrap on the input itself obeys the same general rules.
 */
#include "fuzz.h"

#include "mcpmux/config.h"

static const struct config_opts wrap_opts = {
	.mcpmux = "/usr/bin/mcpmux",
	.log_dir = "/var/log/mcpmux",
	.eof_grace = "500",
};

static size_t
bom_len(const char *p, size_t len)
{
	return len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
}

/* One rewrite, with the checks that hold for any result.  Returns its rc. */
static int
check_one(enum config_op op, const char *in, size_t len, struct config_result *r)
{
	int rc = config_rewrite(op, in, len, &wrap_opts, r);

	if (rc == -1) {
		FUZZ_CHECK(r->error[0] != '\0', "a refusal without a reason");
		FUZZ_CHECK(memchr(r->error, '\0', sizeof(r->error)) != NULL, "unterminated reason");
		FUZZ_CHECK(r->line <= len + 1 && r->col <= len + 4, "position %zu:%zu outside",
			   r->line, r->col);
		FUZZ_CHECK((r->line == 0) == (r->col == 0), "position %zu:%zu half set", r->line,
			   r->col);
		return rc;
	}
	FUZZ_CHECK(rc == 0, "rc %d", rc);
	FUZZ_CHECK(r->text != NULL, "no text");
	FUZZ_CHECK(r->text[r->len] == '\0', "text not NUL-terminated");
	FUZZ_CHECK(r->n_changed <= r->n_entries, "changed %zu of %zu", r->n_changed, r->n_entries);
	size_t changed = 0;

	for (size_t i = 0; i < r->n_entries; i++) {
		const struct config_entry *e = &r->entries[i];

		FUZZ_CHECK(e->name != NULL, "an entry without a name");
		if (e->verdict == CONFIG_CHANGED) {
			changed++;
			FUZZ_CHECK(e->before != NULL && e->after != NULL, "a change without lines");
		} else {
			FUZZ_CHECK(e->why != NULL, "a skip without a reason");
		}
	}
	FUZZ_CHECK(changed == r->n_changed, "%zu CHANGED entries, n_changed %zu", changed,
		   r->n_changed);
	if (r->n_changed == 0) {
		FUZZ_CHECK(r->len == len && memcmp(r->text, in, len) == 0,
			   "unchanged servers, changed text");
	}
	size_t skip = bom_len(in, len);

	FUZZ_CHECK(fuzz_yajl_valid(in + skip, len - skip), "accepted what yajl refuses");
	skip = bom_len(r->text, r->len);
	FUZZ_CHECK(fuzz_yajl_valid(r->text + skip, r->len - skip), "wrote invalid JSON");
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct config_result w = { 0 }, w2 = { 0 }, u = { 0 }, u2 = { 0 }, plain = { 0 };

	if (check_one(CONFIG_WRAP, in, size, &w) == 0) {
		(void)check_one(CONFIG_WRAP, w.text, w.len, &w2);
		FUZZ_CHECK(w2.text != NULL && w2.n_changed == 0,
			   "wrapping twice changed %zu servers", w2.n_changed);
		FUZZ_CHECK(w2.len == w.len && memcmp(w2.text, w.text, w.len) == 0,
			   "wrapping twice changed the text");
		(void)check_one(CONFIG_UNWRAP, w.text, w.len, &u);
		FUZZ_CHECK(u.text != NULL, "the wrapped text does not unwrap: %s", u.error);
		FUZZ_CHECK(u.n_changed >= w.n_changed, "unwrapped %zu of %zu wrapped", u.n_changed,
			   w.n_changed);
		(void)check_one(CONFIG_WRAP, u.text, u.len, &u2);
		FUZZ_CHECK(u2.text != NULL, "the unwrapped text does not wrap: %s", u2.error);
		if (u.n_changed == w.n_changed) {
			FUZZ_CHECK(u2.len == w.len && memcmp(u2.text, w.text, w.len) == 0,
				   "wrap, unwrap, wrap differs from wrap");
		}
	}
	(void)check_one(CONFIG_UNWRAP, in, size, &plain);
	config_result_release(&w);
	config_result_release(&w2);
	config_result_release(&u);
	config_result_release(&u2);
	config_result_release(&plain);
	return 0;
}
