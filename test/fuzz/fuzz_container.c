/*
 * Fuzz target: container_detect(), container_run_argv(), the helpers' command lines, and
 * container_parse_list().
 *
 * The first byte chooses: even, the rest is a command line (words separated by NUL or
 * newline); odd, it is an engine's listing (podman when bit 1 is set, else docker).
 * Checked, from the contract in container.h:
 *
 *   - a managed run has `run` at run_at, its image after it and inside argv, the engine's
 *     binary before it, and the prefix between them; an unmanaged one has a reason;
 *   - the run command is the same words with mcpmux's labels (and a cidfile, unless it
 *     has its own) right after `run`, the command's own words borrowed, in order;
 *   - read again, that command is a run that sets mcpmux's labels (so the inserted words
 *     were taken as options of `run`, not as the image or its arguments), with the same
 *     image word;
 *   - each helper is the prefix and its own words, NULL-terminated;
 *   - a listing's entries all have an ID and an owner.
 */
#include "fuzz.h"

#include "mcpmux/container.h"

#define MAX_WORDS 64

static size_t
count(char *const *v)
{
	size_t n = 0;

	while (v[n] != NULL) {
		n++;
	}
	return n;
}

static void
check_run(char **argv, size_t argc)
{
	struct container_run r, again;
	enum container_kind kind = container_detect(argv, &r);

	if (kind == CONTAINER_PLAIN) {
		return;
	}
	if (kind == CONTAINER_UNMANAGED) {
		FUZZ_CHECK(r.why != NULL && r.why[0] != '\0', "unmanaged without a reason");
		return;
	}
	FUZZ_CHECK(kind == CONTAINER_MANAGED, "kind %d", (int)kind);
	FUZZ_CHECK(r.run_at < argc && strcmp(argv[r.run_at], "run") == 0, "run at %zu", r.run_at);
	FUZZ_CHECK(r.image_at > r.run_at && r.image_at < argc, "image at %zu", r.image_at);
	FUZZ_CHECK(r.engine_at < r.prefix_len && r.prefix_len <= r.run_at, "engine %zu prefix %zu",
		   r.engine_at, r.prefix_len);

	const struct container_labels labels = { "42:1000", "s-1", "boot", "4026531836", "r-1" };
	char **out = container_run_argv(argv, &r, &labels, "/run/cid");

	FUZZ_CHECK(out != NULL, "no run argv");
	size_t n = count(out), added = 10 + (r.cidfile == NULL ? 2 : 0);

	FUZZ_CHECK(n == argc + added, "%zu words, expected %zu", n, argc + added);
	for (size_t i = 0; i <= r.run_at; i++) {
		FUZZ_CHECK(out[i] == argv[i], "word %zu not borrowed", i);
	}
	for (size_t i = r.run_at + 1; i < argc; i++) {
		FUZZ_CHECK(out[i + added] == argv[i], "word %zu moved", i);
	}
	FUZZ_CHECK(strcmp(out[r.run_at + 2], "mcpmux.owner=42:1000") == 0, "owner label");
	FUZZ_CHECK(container_detect(out, &again) == CONTAINER_UNMANAGED, "inserted labels unseen");
	free(out);

	/* With the cidfile the run ends up with, and no boot label. */
	const struct container_labels two = { "1:2", "s", NULL, NULL, NULL };

	out = container_run_argv(argv, &r, &two, NULL);
	FUZZ_CHECK(out != NULL && count(out) == argc + 4, "without cidfile");
	free(out);

	const char *const sigs[] = { "TERM", "KILL" };

	for (size_t k = 0; k < 2; k++) {
		char **h = container_kill_argv(argv, r.prefix_len, sigs[k], "id");

		FUZZ_CHECK(h != NULL && count(h) == r.prefix_len + 5, "kill helper");
		FUZZ_CHECK(strcmp(h[r.prefix_len], "container") == 0, "kill helper form");
		free(h);
	}
	char **h = container_rm_argv(argv, r.prefix_len, "id");

	FUZZ_CHECK(h != NULL && count(h) == r.prefix_len + 4, "rm helper");
	free(h);
	h = container_inspect_argv(argv, r.prefix_len, "id");
	FUZZ_CHECK(h != NULL && count(h) == r.prefix_len + 5, "inspect helper");
	free(h);
}

static void
check_list(enum container_engine engine, const char *text, size_t len)
{
	struct container_info *v = NULL;
	size_t n = 0;

	if (container_parse_list(engine, text, len, &v, &n) == -1) {
		FUZZ_CHECK(v == NULL && n == 0, "output after a failure");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(v[i].id[0] != '\0' && v[i].owner[0] != '\0', "entry %zu unlabelled", i);
		FUZZ_CHECK(v[i].engine == engine, "engine");
	}
	free(v);
	(void)container_gone_message(text, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0) {
		return 0;
	}
	if (data[0] & 1) {
		check_list(data[0] & 2 ? CONTAINER_PODMAN : CONTAINER_DOCKER,
			   (const char *)data + 1, size - 1);
		return 0;
	}
	char *copy = malloc(size);
	char *argv[MAX_WORDS + 1];
	size_t argc = 0;

	if (copy == NULL) {
		return 0;
	}
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	for (char *p = copy, *end = copy + size - 1; p <= end && argc < MAX_WORDS;) {
		char *sep = p;

		while (sep < end && *sep != '\0' && *sep != '\n') {
			sep++;
		}
		*sep = '\0';
		argv[argc++] = p;
		p = sep + 1;
	}
	argv[argc] = NULL;
	check_run(argv, argc);
	free(copy);
	return 0;
}
