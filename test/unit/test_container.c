/*
 * Unit tests for container: which server commands are container runs mcpmux manages,
 * the run command with its labels and cidfile, the helpers of the teardown ladder, and
 * the engines' listings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcpmux/container.h"

#define W(s) ((char *)(uintptr_t)(s))

/* argv as one string of words separated by single spaces (no word holds a space). */
static char *
joined(char *const *v)
{
	static char buf[2048];
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; v[i] != NULL; i++) {
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? " " : "", v[i]);
	}
	return buf;
}

/* Split a command line at spaces into a NULL-terminated argv (static storage). */
static char **
words(const char *line)
{
	static char store[2048];
	static char *v[64];
	size_t n = 0;

	(void)snprintf(store, sizeof(store), "%s", line);
	for (char *tok = strtok(store, " "); tok != NULL && n < 63; tok = strtok(NULL, " ")) {
		v[n++] = tok;
	}
	v[n] = NULL;
	return v;
}

struct detect_case {
	const char *line;
	enum container_kind kind;
	enum container_engine engine;
	size_t prefix_len, run_at, image_at;
};

static void
test_detect_table(void **state)
{
	static const struct detect_case cases[] = {
		/* plain commands */
		{ "npx -y @modelcontextprotocol/server-everything", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "docker", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "dockerd --foo", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "/usr/bin/mydocker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "docker exec -i ctr server", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "podman ps -a", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "docker container ls", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "docker --log-level", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env FOO=1", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -S docker_run_-i_img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -C /tmp podman run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env FOO=1 node server.js", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "sudo podman run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		/* foreground runs */
		{ "podman run -i --rm img", CONTAINER_MANAGED, CONTAINER_PODMAN, 1, 1, 4 },
		{ "/usr/bin/docker run -i img server -d", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1,
		  3 },
		{ "docker container run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 2, 4 },
		{ "podman container run --rm -i img", CONTAINER_MANAGED, CONTAINER_PODMAN, 1, 2,
		  5 },
		{ "docker run -i -- img -d", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1, 4 },
		{ "docker run --detach=false -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1,
		  4 },
		{ "docker run --detach-keys ctrl-x -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 1,
		  1, 5 },
		{ "docker run -h myhost -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1, 5 },
		{ "docker run -eA=1 -e B=2 -p 80:80 -v /a:/b -w /w -u 1000 -i img",
		  CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1, 14 },
		{ "docker run --env=A=1 --network none --init -i img", CONTAINER_MANAGED,
		  CONTAINER_DOCKER, 1, 1, 7 },
		{ "podman run --label a=b -l c=d --label=e=f -i img", CONTAINER_MANAGED,
		  CONTAINER_PODMAN, 1, 1, 8 },
		{ "podman run -i --rm=true --tty=false img", CONTAINER_MANAGED, CONTAINER_PODMAN, 1,
		  1, 5 },
		/* boolean flags: never the next word; a value only after "=", short ones too */
		{ "docker run -d=false -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1, 4 },
		{ "docker run -id=0 img", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1, 3 },
		{ "podman run -i --rm=false --detach=false img", CONTAINER_MANAGED,
		  CONTAINER_PODMAN, 1, 1, 5 },
		{ "podman run -i --no-hostname img", CONTAINER_MANAGED, CONTAINER_PODMAN, 1, 1, 4 },
		{ "podman run -i --no-hostname=true --no-hosts img", CONTAINER_MANAGED,
		  CONTAINER_PODMAN, 1, 1, 5 },
		{ "docker run -e=A=1 -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 1, 1, 4 },
		/* global options before run */
		{ "docker --log-level debug -H tcp://h:2375 --context x run -i img",
		  CONTAINER_MANAGED, CONTAINER_DOCKER, 7, 7, 9 },
		{ "docker -Htcp://h --log-level=warn -D run -i img", CONTAINER_MANAGED,
		  CONTAINER_DOCKER, 4, 4, 6 },
		{ "docker --tls --tlscacert /ca container run -i img", CONTAINER_MANAGED,
		  CONTAINER_DOCKER, 4, 5, 7 },
		{ "podman --remote --url unix:///run/p.sock run -i img", CONTAINER_MANAGED,
		  CONTAINER_PODMAN, 4, 4, 6 },
		{ "podman --root /r --runroot /rr --log-level info run -i img", CONTAINER_MANAGED,
		  CONTAINER_PODMAN, 7, 7, 9 },
		{ "podman -r --remote=true -c conn run -i img", CONTAINER_MANAGED, CONTAINER_PODMAN,
		  5, 5, 7 },
		/* launchers */
		{ "env FOO=1 podman run -i img", CONTAINER_MANAGED, CONTAINER_PODMAN, 3, 3, 5 },
		{ "/usr/bin/env -i PATH=/usr/bin docker run -i img", CONTAINER_MANAGED,
		  CONTAINER_DOCKER, 4, 4, 6 },
		{ "env -u X --unset=Y -uZ -- A=1 docker run -i img", CONTAINER_MANAGED,
		  CONTAINER_DOCKER, 8, 8, 10 },
		{ "env DOCKER_HOST=tcp://h docker -H tcp://h run -i img", CONTAINER_MANAGED,
		  CONTAINER_DOCKER, 5, 5, 7 },
		/* env's words as GNU env reads them: "-" (-i) ends its options, after "--" too;
		 * every word with '=' is an assignment; -i and -u in one word; long ones
		 * shortened to what is theirs alone */
		{ "env - docker run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 3, 3, 5 },
		{ "env -- - A=1 docker run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 5, 5, 7 },
		{ "env -u X - docker run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 5, 5, 7 },
		{ "env - -u X docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env 1A=x a-b=y docker run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 4, 4,
		  6 },
		{ "env -iu X docker run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 4, 4, 6 },
		{ "env -iiuX docker run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 3, 3, 5 },
		{ "env --u=X --unset Y --ignore-e docker run -i img", CONTAINER_MANAGED,
		  CONTAINER_DOCKER, 6, 6, 8 },
		{ "env -- --unset=X docker run -i img", CONTAINER_MANAGED, CONTAINER_DOCKER, 4, 4,
		  6 },
		/* options not read, or that make env fail: left alone */
		{ "env --ignore docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env --ignore-environment=1 docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -0 docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -v docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -iC /tmp docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -u A=B docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env --unset= docker run -i img", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -ui docker", CONTAINER_PLAIN, 0, 0, 0, 0 },
		{ "env -u", CONTAINER_PLAIN, 0, 0, 0, 0 },
		/* container runs mcpmux leaves alone */
		{ "docker run -d img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run --detach img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run --detach=true img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run -d=true -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run -d=false -d -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run -id=maybe img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run -l=mcpmux.owner=1:2 -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1,
		  1, 0 },
		{ "podman run -dit img", CONTAINER_UNMANAGED, CONTAINER_PODMAN, 1, 1, 0 },
		{ "podman run -itd img", CONTAINER_UNMANAGED, CONTAINER_PODMAN, 1, 1, 0 },
		{ "docker --frobnicate run -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0,
		  0 },
		{ "docker --debug=maybe run -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0,
		  0 },
		{ "docker run --label mcpmux.owner=1:2 -i img", CONTAINER_UNMANAGED,
		  CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run -l mcpmux.session=x img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1,
		  0 },
		{ "docker run -l mcpmux.run=x img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1,
		  0 },
		{ "docker run -lmcpmux.owner=1:2 img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1,
		  0 },
		{ "docker run --label=mcpmux.owner=1:2 img", CONTAINER_UNMANAGED, CONTAINER_DOCKER,
		  1, 1, 0 },
		{ "docker run -i", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run --name", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run -Z img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		{ "docker run --rm=maybe img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 1, 1, 0 },
		/* containers of a project, or of an engine whose helpers mcpmux does not drive */
		{ "docker compose run -T svc", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0, 0 },
		{ "podman compose -f c.yml run svc", CONTAINER_UNMANAGED, CONTAINER_PODMAN, 0, 0,
		  0 },
		{ "docker compose up", CONTAINER_PLAIN, CONTAINER_DOCKER, 0, 0, 0 },
		{ "nerdctl run -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0, 0 },
		{ "env A=1 podman-remote run -i img", CONTAINER_UNMANAGED, CONTAINER_PODMAN, 0, 0,
		  0 },
		{ "nerdctl", CONTAINER_PLAIN, CONTAINER_DOCKER, 0, 0, 0 },
		{ "nerdctl ps", CONTAINER_PLAIN, CONTAINER_DOCKER, 0, 0, 0 },
		{ "nerdctl exec -i c server", CONTAINER_PLAIN, CONTAINER_DOCKER, 0, 0, 0 },
		{ "nerdctl container run -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0, 0 },
		{ "nerdctl -n k8s.io run -i img", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0, 0 },
		{ "nerdctl compose run svc", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0, 0 },
		{ "docker-compose run --rm svc", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0, 0 },
		{ "env A=1 podman-compose -f c.yml -p x run svc", CONTAINER_UNMANAGED,
		  CONTAINER_PODMAN, 0, 0, 0 },
		{ "docker-compose exec svc run", CONTAINER_PLAIN, CONTAINER_DOCKER, 0, 0, 0 },
		{ "docker compose -f run.yml up", CONTAINER_PLAIN, CONTAINER_DOCKER, 0, 0, 0 },
		{ "docker compose --file=c.yml --dry-run run svc", CONTAINER_UNMANAGED,
		  CONTAINER_DOCKER, 0, 0, 0 },
		{ "docker compose --frob x up run", CONTAINER_UNMANAGED, CONTAINER_DOCKER, 0, 0,
		  0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct detect_case *c = &cases[i];
		struct container_run r;
		char **argv = words(c->line);
		enum container_kind kind = container_detect(argv, &r);

		if (kind != c->kind) {
			fail_msg("'%s': kind %d, expected %d (why: %s)", c->line, (int)kind,
				 (int)c->kind, r.why ? r.why : "-");
		}
		if (kind == CONTAINER_PLAIN) {
			continue;
		}
		if (r.engine != c->engine) {
			fail_msg("'%s': engine %d", c->line, (int)r.engine);
		}
		if (kind == CONTAINER_UNMANAGED) {
			if (r.why == NULL || r.why[0] == '\0') {
				fail_msg("'%s': unmanaged without a reason", c->line);
			}
			if (c->run_at != 0 && r.run_at != c->run_at) {
				fail_msg("'%s': run at %zu", c->line, r.run_at);
			}
			continue;
		}
		if (r.prefix_len != c->prefix_len || r.run_at != c->run_at ||
		    r.image_at != c->image_at) {
			fail_msg("'%s': prefix %zu run %zu image %zu, expected %zu %zu %zu",
				 c->line, r.prefix_len, r.run_at, r.image_at, c->prefix_len,
				 c->run_at, c->image_at);
		}
		assert_string_equal(argv[r.run_at], "run");
		assert_null(r.why);
	}
}

static void
test_detect_details(void **state)
{
	struct container_run r;
	char **argv;

	(void)state;
	argv = words("docker run -e A=1 --name srv -v /a:/b --cidfile /tmp/c -i img -e X");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	assert_string_equal(r.name, "srv");
	assert_string_equal(r.cidfile, "/tmp/c");
	assert_true(r.cidfile == argv[9]); /* borrowed */
	assert_true(r.is_interactive);
	assert_false(r.has_tty);
	assert_false(r.has_rm);
	assert_int_equal(r.image_at, 11);
	assert_int_equal(r.engine_at, 0);

	argv = words("docker run --name=srv --cidfile=/x -eA=1 -it --rm img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	assert_string_equal(r.name, "srv");
	assert_string_equal(r.cidfile, "/x");
	assert_true(r.is_interactive);
	assert_true(r.has_tty);
	assert_true(r.has_rm);

	/* Without -i the server's stdin is not connected: detected, for a warning. */
	argv = words("podman run --rm img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	assert_false(r.is_interactive);
	assert_null(r.cidfile);
	assert_null(r.name);

	argv = words("env A=1 B=2 podman --log-level info run --interactive=true img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	assert_int_equal(r.engine_at, 3);
	assert_true(r.is_interactive);

	/* The last word of a flag wins, as in the engines; "=" goes with the letter before. */
	argv = words("docker run -t=false -i -ti=false --rm --rm=0 -e=A=1 img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	assert_false(r.is_interactive);
	assert_true(r.has_tty);
	assert_false(r.has_rm);
	assert_int_equal(r.image_at, 8);

	argv = words("docker run -d img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_UNMANAGED);
	assert_non_null(strstr(r.why, "detached"));

	char *none[] = { NULL };

	assert_int_equal(container_detect(none, &r), CONTAINER_PLAIN);
	assert_int_equal(container_detect(NULL, &r), CONTAINER_PLAIN);
}

static void
test_run_argv(void **state)
{
	struct container_run r;
	const struct container_labels all = { "42:1000", "s1", "b-1", "4026531836", "r-1" };
	const struct container_labels two = { "42:1000", "run-42", NULL, NULL, NULL };
	char **argv, **out;

	(void)state;
	argv = words("podman run -i --rm img a b");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	out = container_run_argv(argv, &r, &all, "/run/x/cid");
	assert_non_null(out);
	assert_string_equal(joined(out), "podman run --label mcpmux.owner=42:1000 --label "
					 "mcpmux.session=s1 --label mcpmux.boot=b-1 --label "
					 "mcpmux.pidns=4026531836 --label mcpmux.run=r-1 --cidfile "
					 "/run/x/cid -i --rm img a b");
	assert_true(out[0] == argv[0]); /* borrowed */
	assert_true(out[18] == argv[6]);
	free(out);

	/* Its own cidfile stays, and no second one goes in; its labels stay. */
	argv = words("docker run --cidfile /mine -l a=b -i img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	out = container_run_argv(argv, &r, &two, "/run/x/cid");
	assert_non_null(out);
	assert_string_equal(joined(out), "docker run --label mcpmux.owner=42:1000 --label "
					 "mcpmux.session=run-42 --cidfile /mine -l a=b -i img");
	free(out);

	/* After a launcher and global options: right after `run`. */
	argv = words("env A=1 docker --log-level warn container run -i img x");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	out = container_run_argv(argv, &r, &two, "/c");
	assert_non_null(out);
	assert_string_equal(joined(out), "env A=1 docker --log-level warn container run --label "
					 "mcpmux.owner=42:1000 --label mcpmux.session=run-42 "
					 "--cidfile /c -i img x");
	free(out);

	/* No cidfile asked for. */
	argv = words("podman run -i img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	out = container_run_argv(argv, &r, &two, NULL);
	assert_non_null(out);
	assert_string_equal(joined(out), "podman run --label mcpmux.owner=42:1000 --label "
					 "mcpmux.session=run-42 -i img");
	free(out);
}

static void
test_helpers(void **state)
{
	struct container_run r;
	char **argv, **out;
	char *podman[] = { W("podman"), NULL };
	char *docker[] = { W("docker"), NULL };

	(void)state;
	argv = words("env A=1 docker -H tcp://h run -i img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	assert_int_equal(r.prefix_len, 5);

	out = container_kill_argv(argv, r.prefix_len, "TERM", "0123abcd");
	assert_non_null(out);
	assert_string_equal(joined(out),
			    "env A=1 docker -H tcp://h container kill --signal TERM 0123abcd");
	free(out);
	out = container_rm_argv(argv, r.prefix_len, "0123abcd");
	assert_non_null(out);
	assert_string_equal(joined(out), "env A=1 docker -H tcp://h container rm -f 0123abcd");
	free(out);
	out = container_inspect_argv(argv, r.prefix_len, "srv");
	assert_non_null(out);
	assert_string_equal(joined(out), "env A=1 docker -H tcp://h container inspect --format "
					 "{{.State.Status}} srv");
	free(out);

	/* `docker container run`: the prefix stops before `container`. */
	argv = words("docker container run -i img");
	assert_int_equal(container_detect(argv, &r), CONTAINER_MANAGED);
	out = container_kill_argv(argv, r.prefix_len, "KILL", "c1");
	assert_non_null(out);
	assert_string_equal(joined(out), "docker container kill --signal KILL c1");
	free(out);

	out = container_list_argv(podman, 1, CONTAINER_PODMAN);
	assert_non_null(out);
	assert_string_equal(joined(out), "podman container ls -a --no-trunc --filter "
					 "label=mcpmux.owner --format json");
	free(out);
	out = container_list_argv(docker, 1, CONTAINER_DOCKER);
	assert_non_null(out);
	assert_string_equal(joined(out), "docker container ls -a --no-trunc --filter "
					 "label=mcpmux.owner --format {{json .}}");
	free(out);
	out = container_list_run_argv(argv, r.prefix_len, "42:1000", "r-1");
	assert_non_null(out);
	assert_string_equal(joined(out), "docker container ls -a --no-trunc --filter "
					 "label=mcpmux.owner=42:1000 --filter label=mcpmux.run=r-1 "
					 "--format mcpmux-listed|{{.ID}}");
	free(out);
	out = container_list_id_argv(argv, r.prefix_len, "42:1000", "c1");
	assert_non_null(out);
	assert_string_equal(joined(out), "docker container ls -a --no-trunc --filter "
					 "label=mcpmux.owner=42:1000 --filter id=c1 "
					 "--format mcpmux-listed|{{.ID}}");
	free(out);
	assert_string_equal(container_engine_name(CONTAINER_PODMAN), "podman");
	assert_string_equal(container_engine_name(CONTAINER_DOCKER), "docker");
}

/* podman 4.3's `ps -a --format json`, trimmed. */
static const char podman_list[] =
	"[\n  {\n    \"AutoRemove\": false,\n    \"Command\": [\"/mcp-fixture\", \"--ignore-eof\"],\n"
	"    \"CreatedAt\": \"Less than a second ago\",\n"
	"    \"Id\": \"363428eb3af4df650241f868ba74eab50ce1bdb179e06900e786e868b335e5d4\",\n"
	"    \"Image\": \"localhost/mcpmux-fixture:test\",\n"
	"    \"Labels\": {\"mcpmux.owner\": \"4242:123456\", \"mcpmux.session\": \"s1\", "
	"\"mcpmux.boot\": \"b-1\", \"mcpmux.pidns\": \"4026532001\", \"mcpmux.run\": \"r-1\"},\n"
	"    \"Names\": [\"pexp1\"], \"Pid\": 21206, \"StartedAt\": 1796416118,\n"
	"    \"State\": \"running\", \"Status\": \"Up\", \"Created\": 1796416118\n  },\n"
	"  {\"Id\": \"ffff\", \"Names\": [\"other\"], \"Labels\": null, \"State\": \"exited\", "
	"\"Created\": 5},\n"
	"  {\"Id\": \"eeee\", \"Names\": [], \"Labels\": {\"mcpmux.owner\": \"1:2\"}, "
	"\"State\": \"exited\"}\n"
	"]\n";

static void
test_parse_podman(void **state)
{
	struct container_info *v;
	size_t n;

	(void)state;
	assert_int_equal(
		container_parse_list(CONTAINER_PODMAN, podman_list, strlen(podman_list), &v, &n),
		0);
	assert_int_equal(n, 2); /* the one without mcpmux.owner is left out */
	assert_int_equal(v[0].engine, CONTAINER_PODMAN);
	assert_string_equal(v[0].id,
			    "363428eb3af4df650241f868ba74eab50ce1bdb179e06900e786e868b335e5d4");
	assert_string_equal(v[0].name, "pexp1");
	assert_string_equal(v[0].image, "localhost/mcpmux-fixture:test");
	assert_string_equal(v[0].state, "running");
	assert_string_equal(v[0].owner, "4242:123456");
	assert_string_equal(v[0].session, "s1");
	assert_string_equal(v[0].boot, "b-1");
	assert_string_equal(v[0].pidns, "4026532001");
	assert_string_equal(v[0].run, "r-1");
	assert_int_equal(v[0].created, 1796416118);
	assert_string_equal(v[1].id, "eeee");
	assert_string_equal(v[1].name, "");
	assert_string_equal(v[1].session, "");
	assert_string_equal(v[1].pidns, "");
	assert_int_equal(v[1].created, -1);
	free(v);

	assert_int_equal(container_parse_list(CONTAINER_PODMAN, "[]\n", 3, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	assert_int_equal(container_parse_list(CONTAINER_PODMAN, "", 0, &v, &n), 0);
	assert_int_equal(n, 0);

	errno = 0;
	assert_int_equal(container_parse_list(CONTAINER_PODMAN, "{\"Id\":\"x\"}", 10, &v, &n), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(container_parse_list(CONTAINER_PODMAN, "[{\"Id\":", 7, &v, &n), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(container_parse_list(CONTAINER_PODMAN, "[1,2]", 5, &v, &n), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(container_parse_list(CONTAINER_PODMAN, "[]\0x", 4, &v, &n), -1);
	assert_int_equal(errno, EINVAL);
}

/* docker's `ps -a --no-trunc --format '{{json .}}'`: one object a line. */
static const char docker_list[] =
	"{\"Command\":\"\\\"/mcp-fixture\\\"\",\"CreatedAt\":\"2024-05-01 12:34:56 +0000 UTC\","
	"\"ID\":\"abc123\",\"Image\":\"mcp/fetch\",\"Labels\":\"a=b,mcpmux.owner=42:1000,"
	"mcpmux.session=s1\",\"Names\":\"srv,alias\",\"State\":\"running\"}\n"
	"\r\n"
	"{\"CreatedAt\":\"2024-05-01 14:34:56 +0200 CEST\",\"ID\":\"def456\",\"Labels\":"
	"\"mcpmux.boot=b-2,mcpmux.owner=7:8,mcpmux.pidns=4026532002,mcpmux.run=r-2\",\"Names\":\"x\","
	"\"State\":\"exited\"}\n"
	"{\"ID\":\"nolabel\",\"Labels\":\"\",\"Names\":\"y\",\"State\":\"exited\"}\n";

/* The answer of container_whose_argv()'s command, among an engine's warnings. */
static void
test_whose_parse(void **state)
{
	static const char warned[] = "WARN[0000] a cgroup warning\n"
				     "mcpmux-whose|42:1000|run-7|abc123def\n";
	struct container_whose w;

	(void)state;
	assert_true(container_whose_parse(warned, strlen(warned), &w));
	assert_string_equal(w.owner, "42:1000");
	assert_string_equal(w.session, "run-7");
	assert_string_equal(w.id, "abc123def");
	/* labels it lacks are empty; a line end of \r\n is no part of the id */
	assert_true(container_whose_parse("mcpmux-whose|||ff\r\n", 19, &w));
	assert_string_equal(w.owner, "");
	assert_string_equal(w.session, "");
	assert_string_equal(w.id, "ff");
	/* not there, cut short, or without an id */
	assert_false(container_whose_parse("running\n", 8, &w));
	assert_false(container_whose_parse("mcpmux-whose|1:2|s", 18, &w));
	assert_false(container_whose_parse("mcpmux-whose|1:2|s|", 19, &w));
	assert_false(container_whose_parse("x mcpmux-whose|1:2|s|id\n", 24, &w));
	assert_false(container_whose_parse("", 0, &w));

	/* A full buffer: room made before the marked line, or kept from where it may begin. */
	char buf[64];

	(void)snprintf(buf, sizeof(buf), "WARN one\nWARN two\nmcpmux-whose|1:2|s|i");
	size_t n = container_whose_keep(buf, strlen(buf));

	assert_int_equal(n, strlen("mcpmux-whose|1:2|s|i"));
	assert_memory_equal(buf, "mcpmux-whose|1:2|s|i", n);
	assert_int_equal(container_whose_keep(buf, n), n); /* it starts the buffer: no room */
	(void)snprintf(buf, sizeof(buf), "WARN a warning of the engine\nmcpmux-whos");
	n = container_whose_keep(buf, strlen(buf));
	assert_memory_equal(buf, "\nmcpmux-whos", n); /* the 12 bytes a marker may begin in */
	(void)snprintf(buf, sizeof(buf), "short");
	assert_int_equal(container_whose_keep(buf, 5), 5);
	(void)snprintf(buf, sizeof(buf), "WARN one\nmcpmux-listed|a1\n");
	n = container_listed_keep(buf, strlen(buf));
	assert_memory_equal(buf, "mcpmux-listed|a1\n", n);
}

static void
test_listed(void **state)
{
	/* warnings, a line that only mentions the marker, ids too long or with other bytes,
	 * and a last line without its newline (cut: a prefix of another id) */
	static const char out[] = "WARN mcpmux-listed|x\nmcpmux-listed|ab12\r\nmcpmux-listed|\n"
				  "mcpmux-listed|a b\nmcpmux-listed|../x\nmcpmux-listed|CD\n"
				  "mcpmux-listed|ef01";
	const char *pos = out, *end = out + strlen(out), *id;
	size_t len = 0;

	(void)state;
	id = container_listed_next(&pos, end, &len);
	assert_non_null(id);
	assert_memory_equal(id, "ab12", len);
	assert_int_equal(len, 4);
	id = container_listed_next(&pos, end, &len);
	assert_non_null(id);
	assert_int_equal(len, 2);
	assert_memory_equal(id, "CD", 2);
	assert_null(container_listed_next(&pos, end, &len));

	/* the ids packed, each ended by a NUL, as many as fit */
	char ids[16];
	size_t count = 0;

	assert_int_equal(container_listed_ids(out, strlen(out), ids, sizeof(ids), &count), 8);
	assert_int_equal(count, 2);
	assert_memory_equal(ids, "ab12\0CD\0", 8);
	assert_int_equal(container_listed_ids(out, strlen(out), ids, 7, &count), 5);
	assert_int_equal(count, 1);

	char longer[CONTAINER_ID_MAX + 32];

	(void)snprintf(longer, sizeof(longer), "mcpmux-listed|%0*d\n", CONTAINER_ID_MAX + 1, 0);
	pos = longer;
	assert_null(container_listed_next(&pos, longer + strlen(longer), &len));
}

static void
test_parse_docker(void **state)
{
	struct container_info *v;
	size_t n;

	(void)state;
	assert_int_equal(
		container_parse_list(CONTAINER_DOCKER, docker_list, strlen(docker_list), &v, &n),
		0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].id, "abc123");
	assert_string_equal(v[0].name, "srv");
	assert_string_equal(v[0].image, "mcp/fetch");
	assert_string_equal(v[0].owner, "42:1000");
	assert_string_equal(v[0].session, "s1");
	assert_string_equal(v[0].boot, "");
	assert_string_equal(v[0].state, "running");
	assert_int_equal(v[0].created, 1714566896);
	assert_string_equal(v[1].owner, "7:8");
	assert_string_equal(v[1].boot, "b-2");
	assert_string_equal(v[1].pidns, "4026532002");
	assert_string_equal(v[1].run, "r-2");
	assert_string_equal(v[0].pidns, "");
	assert_string_equal(v[0].run, "");
	assert_int_equal(v[1].created, 1714566896); /* the same instant, two hours east */
	free(v);

	assert_int_equal(container_parse_list(CONTAINER_DOCKER, "\n", 1, &v, &n), 0);
	assert_int_equal(n, 0);
	errno = 0;
	assert_int_equal(container_parse_list(CONTAINER_DOCKER, "Cannot connect", 14, &v, &n), -1);
	assert_int_equal(errno, EINVAL);
}

static void
test_gone_message(void **state)
{
	static const char *const gone[] = {
		"Error: No such container: abc",
		"Error: inspecting object: no such container nonexist",
		"Error: no container with name or ID \"pexp1\" found: no such container",
	};
	static const char *const not_gone[] = {
		"Cannot connect to the Docker daemon at unix:///var/run/docker.sock.",
		"Error: permission denied",
		"",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		assert_true(container_gone_message(gone[i], strlen(gone[i])));
	}
	for (size_t i = 0; i < sizeof(not_gone) / sizeof(not_gone[0]); i++) {
		assert_false(container_gone_message(not_gone[i], strlen(not_gone[i])));
	}
}

static void
test_why(void **state)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
		{ "time=\"...\" level=warning msg=\"cgroup v1\"\nError: no such image\n",
		  "Error: no such image" },
		{ "WARNING: a\nWARNING: b\nError: denied\r\n \n\n", "Error: denied" },
		{ "only line", "only line" },
		{ "\n \r\n", "" },
		{ "", "" },
	};
	struct container_tail t = { .n = 0 };
	char big[1000];
	const char *why;
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why = container_why(cases[i].text, strlen(cases[i].text), &n);
		assert_int_equal(n, strlen(cases[i].why));
		assert_memory_equal(why, cases[i].why, n);
	}
	/* the tail keeps the end, across reads of any size */
	memset(big, 'w', sizeof(big));
	big[sizeof(big) - 1] = '\n';
	container_tail_add(&t, big, sizeof(big));
	container_tail_add(&t, "Error: ", 7);
	container_tail_add(&t, "gone\n", 5);
	assert_int_equal(t.n, sizeof(t.buf));
	why = container_why(t.buf, t.n, &n);
	assert_int_equal(n, strlen("Error: gone"));
	assert_memory_equal(why, "Error: gone", n);
	assert_false(t.gone);
}

/* Feed text to a new tail in reads of `step` bytes (all of it at once when 0). */
static bool
gone_by(const char *text, size_t step)
{
	struct container_tail t;
	size_t len = strlen(text);

	container_tail_reset(&t);
	for (size_t at = 0; at < len;) {
		size_t k = step == 0 || len - at < step ? len - at : step;

		container_tail_add(&t, text + at, k);
		at += k;
	}
	return container_gone_output(&t);
}

/*
 * The tail says the container is gone by the last engine error line (one that begins with
 * "Error") read, line by line across reads of any size: true when it holds "no such
 * container", false when a later error line does not; other lines, warnings quoting the
 * words included, change nothing, however many come after; a last line without a newline
 * counts.
 */
static void
test_tail_gone(void **state)
{
	static const struct {
		const char *text;
		bool gone;
	} cases[] = {
		{ "Error: No such container: x\n", true },
		{ "Error response from daemon: No such container: x\n", true },
		{ "Error: no container with name or ID \"x\" found: no such container\n", true },
		{ "Error: inspecting object: no such container x\n", true },
		{ "Error: No such container: x", true }, /* no newline at the end */
		{ "WARN[0000] a\nlevel=warning msg=b\nWARNING: c\nError: No such container: x\n",
		  true },
		/* warnings after the answer change nothing, whatever they say */
		{ "Error: No such container: x\nWARN[0000] a flood\nWARN[0000] a flood\n", true },
		{ "Error: No such container: x\nWARN[0000] container y: no such container\n"
		  "Errors? no, a warning: permission denied", /* "Errors?" begins with "Error" */
		  false },
		/* a warning that quotes the words about another container: not the answer */
		{ "WARN[0000] cleaning up container 0badc0ffee00: no such container\n"
		  "Error response from daemon: cannot kill container: x: permission denied\n",
		  false },
		{ "WARN[0000] cleaning up container 0badc0ffee00: no such container\n"
		  "Cannot connect to the Docker daemon. Is the docker daemon running?\n",
		  false },
		/* docker's failures that do not begin with "Error" are error lines too */
		{ "Error: cleaning up 0badc0ffee00: no such container\n"
		  "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n",
		  false },
		{ "Error response from daemon: No such container: x\n"
		  "permission denied while trying to connect to the Docker daemon socket\n",
		  false },
		{ "Error: No such container: x\nerror during connect: Get http://x: EOF", false },
		{ "Cannot connect to the Docker daemon\nError: No such container: x\n", true },
		{ "Cannot connect to the Docker\n", false },
		{ "no such container\n", false },
		{ " Error: No such container: x\n", false },
		{ "error: No such container: x\n", false },
		/* the last error line wins, with or without a newline at its end */
		{ "Error: No such container: x\nError: permission denied\n", false },
		{ "Error: No such container: x\nError: permission denied", false },
		{ "Error: permission denied\nError: No such container: x\n", true },
		{ "Error: permission denied\nWARN[0000] a\nError: No such container: x", true },
		{ "Error: denied, no such\n container\n", false },
		{ "Error\n", false },
		{ "Erro", false },
		{ "", false },
		{ "\n\n", false },
	};
	static const size_t steps[] = { 0, 1, 2, 3, 5, 7, 16, 17, 64 };
	struct container_tail t;
	char big[1000];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			if (gone_by(cases[i].text, steps[s]) != cases[i].gone) {
				fail_msg("case %zu, reads of %zu: %s", i, steps[s], cases[i].text);
			}
		}
	}
	/* split across reads, long lines: however much comes before and after the words */
	memset(big, 'w', sizeof(big));
	container_tail_reset(&t);
	container_tail_add(&t, "Error: ", 7);
	container_tail_add(&t, big, sizeof(big));
	container_tail_add(&t, " No su", 6);
	assert_false(container_gone_output(&t));
	container_tail_add(&t, "ch con", 6);
	container_tail_add(&t, "tainer", 6);
	assert_true(container_gone_output(&t));
	container_tail_add(&t, big, sizeof(big));
	container_tail_add(&t, "\n", 1);
	for (int k = 0; k < 100; k++) {
		static const char flood[] = "WARN[0000] a flood of warnings, on stderr\n";

		container_tail_add(&t, flood, sizeof(flood) - 1);
	}
	assert_true(container_gone_output(&t));
	assert_false(container_gone_message(t.buf, t.n)); /* past what is kept of the end */
	/* an error line that does not begin a read still counts: after a warning's end */
	container_tail_add(&t, "WARN[0000] x\nError: permission denied", 37);
	assert_false(container_gone_output(&t));
	/* the words apart in a long error line are not the words */
	container_tail_reset(&t);
	container_tail_add(&t, "Error: no such", 14);
	container_tail_add(&t, big, 1);
	container_tail_add(&t, " container", 10);
	assert_false(container_gone_output(&t));
	/* a reset tail is not gone */
	container_tail_add(&t, "\nError: No such container: x\n", 29);
	assert_true(container_gone_output(&t));
	container_tail_reset(&t);
	assert_false(container_gone_output(&t));
	assert_int_equal(t.n, 0);
}

/* The record of a run's engine: its words and context variables, whole or not at all. */
static void
test_record(void **state)
{
	char *prefix[] = { W("env"), W("A=1"), W("docker"), W("--host"), W("tcp://h:2375"), W("") };
	char path[64];
	size_t len = 0, nv = 9, nw = 9;
	const char *run = NULL;
	char *text, **v;

	assert_int_equal(container_record_path("/r/cid/12.3.cid", path, sizeof(path)), 0);
	assert_string_equal(path, "/r/cid/12.3.ctx");
	assert_int_equal(container_record_path("/r/cid/mine", path, sizeof(path)), -1);
	assert_int_equal(container_record_path("/r/cid/12.3.cid", path, 10), -1);

	assert_int_equal(setenv("DOCKER_HOST", "tcp://h:1", 1), 0);
	assert_int_equal(unsetenv("DOCKER_CONTEXT"), 0);
	struct container_run cr = { .engine = CONTAINER_DOCKER, .engine_at = 2, .prefix_len = 6 };

	assert_int_equal(setenv("PATH", "/usr/bin:/bin", 1), 0);
	text = container_record_text(prefix, &cr, "a-run", &len);
	assert_non_null(text);
	v = container_record_parse(text, len, &nv, &nw, &run);
	assert_non_null(v);
	assert_int_equal(nw, 6);
	assert_string_equal(run, "a-run");
	bool host = false;

	for (size_t i = 0; i < nv; i++) {
		host |= strcmp(v[i], "DOCKER_HOST=tcp://h:1") == 0;
		assert_true(strncmp(v[i], "DOCKER_CONTEXT=", 15) != 0);
	}
	assert_true(host);
	assert_null(v[nv]);
	/* what mcpmux runs, by the path found on PATH */
	assert_true(strcmp(v[nv + 1], "/usr/bin/env") == 0 || strcmp(v[nv + 1], "/bin/env") == 0);
	for (size_t i = 1; i < nw; i++) {
		assert_string_equal(v[nv + 1 + i], prefix[i]); /* an empty word too */
	}
	assert_null(v[nv + 1 + nw]);
	free(v);
	/* cut anywhere, or with more after it: no record */
	for (size_t cut = 0; cut < len; cut++) {
		errno = 0;
		assert_null(container_record_parse(text, cut, &nv, &nw, &run));
		assert_int_equal(errno, EINVAL);
	}
	char more[4096];

	assert_true(len + 1 < sizeof(more));
	memcpy(more, text, len);
	more[len] = 'x';
	assert_null(container_record_parse(more, len + 1, &nv, &nw, &run));
	free(text);
	/* a variable that is not one of those that choose a context */
	static const char other[] = "mcpmux-engine 3 1 1\0r\0PATH=/x\0docker\0";

	assert_null(container_record_parse(other, sizeof(other), &nv, &nw, &run));
	/* of the older format, or without the run's label */
	static const char old[] = "mcpmux-engine 2 1 1\0r\0DOCKER_CONTEXT=x\0docker\0";
	static const char unlabelled[] = "mcpmux-engine 3 1 1\0\0DOCKER_CONTEXT=x\0docker\0";

	assert_null(container_record_parse(old, sizeof(old), &nv, &nw, &run));
	assert_null(container_record_parse(unlabelled, sizeof(unlabelled), &nv, &nw, &run));
	static const char good[] = "mcpmux-engine 3 1 1\0r\0DOCKER_CONTEXT=x\0docker\0";

	v = container_record_parse(good, sizeof(good), &nv, &nw, &run);
	assert_non_null(v);
	assert_string_equal(v[0], "DOCKER_CONTEXT=x");
	assert_string_equal(v[2], "docker");
	assert_string_equal(run, "r");
	free(v);
	assert_int_equal(unsetenv("DOCKER_HOST"), 0);
	(void)state;
}

/* The words of a record of words[0..n) (cr of them), its variables into vars. */
static char **
record_of(char **words, const struct container_run *cr, char *buf, size_t *nv, size_t *nw)
{
	size_t len = 0;
	const char *run;
	char *text = container_record_text(words, cr, "r", &len);
	char **v;

	assert_non_null(text);
	assert_true(len < 4096);
	memcpy(buf, text, len);
	free(text);
	v = container_record_parse(buf, len, nv, nw, &run);
	assert_non_null(v);
	return v;
}

/* The engine a record names: by its absolute path; its context, pinned or not. */
static void
test_record_engine(void **state)
{
	char dir[] = "/tmp/mcpmux-unit-XXXXXX", path[PATH_MAX + 64], cwd[PATH_MAX], buf[4096];
	char *rel[] = { W("bin/docker") }, *bare[] = { W("docker") };
	struct container_run cr = { .engine = CONTAINER_DOCKER, .engine_at = 0, .prefix_len = 1 };
	size_t nv, nw;
	char **v;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	(void)unsetenv("DOCKER_HOST");
	(void)unsetenv("DOCKER_CONTEXT");
	(void)unsetenv("DOCKER_CONFIG");
	assert_int_equal(setenv("HOME", dir, 1), 0);
	/* a relative path: against the run's working directory */
	v = record_of(rel, &cr, buf, &nv, &nw);
	(void)snprintf(path, sizeof(path), "%s/bin/docker", cwd);
	assert_string_equal(v[nv + 1], path);
	/* no config.json: docker's default context, recorded */
	bool dflt = false;

	for (size_t i = 0; i < nv; i++) {
		dflt |= strcmp(v[i], "DOCKER_CONTEXT=default") == 0;
	}
	assert_true(dflt);
	free(v);
	/* a bare name: the file found on PATH */
	(void)snprintf(path, sizeof(path), "%s/bin", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(setenv("PATH", path, 1), 0);
	(void)snprintf(path, sizeof(path), "%s/bin/docker", dir);
	assert_non_null(f = fopen(path, "w"));
	(void)fclose(f);
	v = record_of(bare, &cr, buf, &nv, &nw);
	assert_string_equal(v[nv + 1], "docker"); /* not executable: not found */
	free(v);
	assert_int_equal(chmod(path, 0700), 0);
	v = record_of(bare, &cr, buf, &nv, &nw);
	assert_string_equal(v[nv + 1], path);
	/* the run's detection, and the file there */
	struct container_run got;

	assert_null(container_record_engine(v + nv + 1, nw, &got));
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	char *words[] = { W("docker") };

	assert_string_equal(container_record_engine(words, 1, &got),
			    "it is not named by an absolute path");
	words[0] = W("/nonexistent/docker");
	assert_string_equal(container_record_engine(words, 1, &got), "it is no longer there");
	words[0] = W("/bin/sh");
	assert_non_null(container_record_engine(words, 1, &got));
	words[0] = path;
	assert_int_equal(chmod(path, 0600), 0);
	assert_string_equal(container_record_engine(words, 1, &got),
			    "it is no longer an executable file");
	/* the current context of config.json */
	(void)snprintf(path, sizeof(path), "%s/.docker", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	(void)snprintf(path, sizeof(path), "%s/.docker/config.json", dir);
	assert_non_null(f = fopen(path, "w"));
	(void)fputs("{\"auths\": {}, \"currentContext\": \"ctx-a\"}", f);
	(void)fclose(f);
	v = record_of(bare, &cr, buf, &nv, &nw);
	dflt = false;
	for (size_t i = 0; i < nv; i++) {
		dflt |= strcmp(v[i], "DOCKER_CONTEXT=ctx-a") == 0;
	}
	assert_true(dflt);
	free(v);
	/* not when a word names the context; none when it cannot be read */
	char *ctx[] = { W("docker"), W("--context"), W("b") };
	struct container_run cr3 = { .engine = CONTAINER_DOCKER, .prefix_len = 3 };

	v = record_of(ctx, &cr3, buf, &nv, &nw);
	for (size_t i = 0; i < nv; i++) {
		assert_true(strncmp(v[i], "DOCKER_CONTEXT=", 15) != 0);
	}
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &cr3));
	free(v);
	assert_non_null(f = fopen(path, "w"));
	(void)fputs("{\"currentContext\": ", f);
	(void)fclose(f);
	v = record_of(bare, &cr, buf, &nv, &nw);
	for (size_t i = 0; i < nv; i++) {
		assert_true(strncmp(v[i], "DOCKER_CONTEXT=", 15) != 0);
	}
	assert_non_null(container_record_unpinned(v, nv, v + nv + 1, &cr));
	free(v);
	assert_int_equal(unlink(path), 0);
	/* pinned, or not, by words and variables */
	char *dh[] = { W("DOCKER_HOST=tcp://h:1") };
	char *envi[] = { W("env"), W("-i"), W("docker") };
	char *envh[] = { W("env"), W("DOCKER_HOST=x"), W("docker") };
	char *pod[] = { W("podman"), W("--remote") },
	     *podc[] = { W("podman"), W("-r"), W("-c"), W("x") };
	char *dhe[] = { W("DOCKER_HOST=") }, *dce[] = { W("DOCKER_CONTEXT=") },
	     *che[] = { W("CONTAINER_HOST=") }, *cce[] = { W("CONTAINER_CONNECTION=") };
	char *envhe[] = { W("env"), W("DOCKER_HOST="), W("docker") };
	char *envu[] = { W("env"), W("-u"), W("FOO"), W("docker") };
	struct container_run ce = { .engine = CONTAINER_DOCKER, .engine_at = 2, .prefix_len = 3 };
	struct container_run ceu = { .engine = CONTAINER_DOCKER, .engine_at = 3, .prefix_len = 4 };
	struct container_run cp1 = { .engine = CONTAINER_PODMAN, .prefix_len = 1 };
	struct container_run cp2 = { .engine = CONTAINER_PODMAN, .prefix_len = 2 };
	struct container_run cp4 = { .engine = CONTAINER_PODMAN, .prefix_len = 4 };
	const struct {
		char *const *vars;
		size_t n_vars;
		char *const *words;
		const struct container_run *cr;
		bool pinned;
	} pins[] = {
		{ dh, 1, bare, &cr, true },
		{ NULL, 0, bare, &cr, false },
		{ dh, 1, envi, &ce, false },
		{ NULL, 0, envh, &ce, true },
		{ NULL, 0, pod, &cp1, true },
		{ NULL, 0, pod, &cp2, false },
		{ NULL, 0, podc, &cp4, true },
		/* set but empty: docker takes it for none; podman may go remote, to no named
		 * place */
		{ dhe, 1, bare, &cr, false },
		{ dce, 1, bare, &cr, false },
		{ dh, 1, envhe, &ce, false },
		{ dh, 1, envu, &ceu, true },
		{ che, 1, pod, &cp1, false },
		{ cce, 1, pod, &cp1, false },
	};

	for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
		const char *why = container_record_unpinned(pins[i].vars, pins[i].n_vars,
							    pins[i].words, pins[i].cr);

		if ((why == NULL) != pins[i].pinned) {
			fail_msg("pins[%zu]: %s", i, why != NULL ? why : "pinned");
		}
	}
	(void)snprintf(path, sizeof(path), "%s/.docker", dir);
	assert_int_equal(rmdir(path), 0);
	(void)snprintf(path, sizeof(path), "%s/bin/docker", dir);
	assert_int_equal(unlink(path), 0);
	(void)snprintf(path, sizeof(path), "%s/bin", dir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(rmdir(dir), 0);
	(void)state;
}

/*
 * The record of launcher words w (NULL-terminated, the engine last) read back: its
 * variables and words, and the run's detection of them; fails unless the engine is found.
 */
static char **
launched_record(char **w, char *buf, size_t *nv, size_t *nw, struct container_run *got)
{
	char *argv[16];
	size_t n = 0;
	struct container_run cr;
	char **v;

	while (w[n] != NULL) {
		argv[n] = w[n];
		n++;
	}
	argv[n] = W("run");
	argv[n + 1] = W("img");
	argv[n + 2] = NULL;
	assert_int_equal(container_detect(argv, &cr), CONTAINER_MANAGED);
	assert_int_equal(cr.prefix_len, n);
	v = record_of(w, &cr, buf, nv, nw);
	assert_null(container_record_engine(v + *nv + 1, *nw, got));
	return v;
}

/* The value of variable name among the record's variables v[0..nv), or NULL. */
static const char *
record_value(char **v, size_t nv, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < nv; i++) {
		if (strncmp(v[i], name, len) == 0 && v[i][len] == '=') {
			return v[i] + len + 1;
		}
	}
	return NULL;
}

/*
 * An env launcher that takes DOCKER_CONTEXT or DOCKER_HOST away (-u NAME, --unset NAME,
 * --unset=NAME, -uNAME, -i, --ignore-environment, -): the record names the context docker
 * then reads from its configuration, in its variables and, when the launcher takes
 * DOCKER_CONTEXT away, in a word of the launcher's just before the engine (the launcher
 * would take it away from sweep's commands again); the record pins it.
 */
static void
test_record_env_unset(void **state)
{
	char dir[] = "/tmp/mcpmux-unit-XXXXXX", path[PATH_MAX + 64], buf[4096];
	char home[PATH_MAX + 8], pathw[PATH_MAX + 8], cfgw[PATH_MAX + 24], docker[PATH_MAX + 16];
	struct container_run got;
	size_t nv, nw;
	char **v;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	(void)snprintf(path, sizeof(path), "%s/bin", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	(void)snprintf(docker, sizeof(docker), "%s/bin/docker", dir);
	assert_non_null(f = fopen(docker, "w"));
	(void)fclose(f);
	assert_int_equal(chmod(docker, 0700), 0);
	(void)snprintf(path, sizeof(path), "%s/.docker", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	(void)snprintf(path, sizeof(path), "%s/.docker/config.json", dir);
	assert_non_null(f = fopen(path, "w"));
	(void)fputs("{\"auths\": {}, \"currentContext\": \"ctx-a\"}", f);
	(void)fclose(f);
	(void)snprintf(home, sizeof(home), "HOME=%s", dir);
	(void)snprintf(pathw, sizeof(pathw), "PATH=%s/bin", dir);
	(void)snprintf(cfgw, sizeof(cfgw), "DOCKER_CONFIG=%s/.docker", dir);
	assert_int_equal(setenv("HOME", dir, 1), 0);
	(void)snprintf(path, sizeof(path), "%s/bin:/usr/bin:/bin", dir);
	assert_int_equal(setenv("PATH", path, 1), 0);
	(void)unsetenv("DOCKER_CONFIG");
	/* both set for the run: each launcher takes both away */
	assert_int_equal(setenv("DOCKER_HOST", "tcp://h:1", 1), 0);
	assert_int_equal(setenv("DOCKER_CONTEXT", "ctx-b", 1), 0);
	char *both[][8] = {
		{ W("env"), W("-u"), W("DOCKER_CONTEXT"), W("-u"), W("DOCKER_HOST"), W("docker") },
		{ W("env"), W("--unset=DOCKER_CONTEXT"), W("--unset"), W("DOCKER_HOST"),
		  W("docker") },
		{ W("env"), W("-uDOCKER_HOST"), W("-uDOCKER_CONTEXT"), W("--"), W("docker") },
		{ W("env"), W("-i"), home, pathw, W("docker") },
		{ W("env"), W("--ignore-environment"), cfgw, pathw, W("docker") },
		{ W("env"), W("-"), pathw, home, W("docker") },
		/* the launcher's own empty one after -u: set empty, in place */
		{ W("env"), W("-u"), W("DOCKER_CONTEXT"), W("-u"), W("DOCKER_HOST"),
		  W("DOCKER_CONTEXT="), W("docker") },
	};

	for (size_t i = 0; i < sizeof(both) / sizeof(both[0]); i++) {
		size_t n = 0, found = 0;

		while (both[i][n] != NULL) {
			n++;
		}
		v = launched_record(both[i], buf, &nv, &nw, &got);
		assert_string_equal(record_value(v, nv, "DOCKER_CONTEXT"), "ctx-a");
		assert_string_equal(v[nv + nw], docker);
		assert_string_equal(v[nv + nw - 1], "DOCKER_CONTEXT=ctx-a");
		for (size_t k = 0; k < nw; k++) {
			found += strncmp(v[nv + 1 + k], "DOCKER_CONTEXT=", 15) == 0;
		}
		if (found != 1 || nw != n + (i == 6 ? 0 : 1)) {
			fail_msg("both[%zu]: %zu words, %zu of DOCKER_CONTEXT=", i, nw, found);
		}
		assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
		free(v);
	}
	/* -u shortened, and with -i in one word */
	char *short_u[] = { W("env"),	 W("--u"), W("DOCKER_CONTEXT"), W("--uns=DOCKER_HOST"),
			    W("docker"), NULL };
	char *cluster[] = { W("env"), W("-iuDOCKER_HOST"), home, pathw, W("docker"), NULL };

	v = launched_record(short_u, buf, &nv, &nw, &got);
	assert_int_equal(nw, 6);
	assert_string_equal(v[nv + 5], "DOCKER_CONTEXT=ctx-a");
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	v = launched_record(cluster, buf, &nv, &nw, &got);
	assert_int_equal(nw, 6);
	assert_string_equal(v[nv + 5], "DOCKER_CONTEXT=ctx-a");
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	/* one taken away, the other set: the other pins, nothing is added */
	char *ctx_only[] = { W("env"), W("-u"), W("DOCKER_CONTEXT"), W("docker"), NULL };
	char *host_only[] = { W("env"), W("-uDOCKER_HOST"), W("docker"), NULL };

	v = launched_record(ctx_only, buf, &nv, &nw, &got);
	assert_int_equal(nw, 4);
	assert_string_equal(record_value(v, nv, "DOCKER_HOST"), "tcp://h:1");
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	v = launched_record(host_only, buf, &nv, &nw, &got);
	assert_int_equal(nw, 3);
	assert_string_equal(record_value(v, nv, "DOCKER_CONTEXT"), "ctx-b");
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	/* after "--", --unset=DOCKER_CONTEXT is an assignment (of a variable "--unset"):
	 * DOCKER_CONTEXT is the run's, and the configuration is not read */
	char *not_unset[] = { W("env"),	   W("-uDOCKER_HOST"),
			      W("--"),	   W("--unset=DOCKER_CONTEXT"),
			      W("docker"), NULL };

	v = launched_record(not_unset, buf, &nv, &nw, &got);
	assert_int_equal(nw, 5);
	assert_string_equal(record_value(v, nv, "DOCKER_CONTEXT"), "ctx-b");
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	/* DOCKER_HOST taken away, DOCKER_CONTEXT not set: the configuration's, a variable */
	assert_int_equal(unsetenv("DOCKER_CONTEXT"), 0);
	v = launched_record(host_only, buf, &nv, &nw, &got);
	assert_int_equal(nw, 3);
	assert_string_equal(record_value(v, nv, "DOCKER_CONTEXT"), "ctx-a");
	assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	/* HOME taken away, or empty: docker reads the home directory of the passwd entry */
	struct passwd *pw = getpwuid(getuid());
	char *no_home[] = { W("env"),	      W("-u"),	   W("HOME"), W("-u"),
			    W("DOCKER_HOST"), W("docker"), NULL };
	char *empty_home[] = { W("env"), W("-uDOCKER_HOST"), W("HOME="), W("docker"), NULL };

	assert_non_null(pw);
	(void)snprintf(path, sizeof(path), "%s/.docker/config.json", pw->pw_dir);
	if (access(path, F_OK) == -1 && errno == ENOENT) {
		v = launched_record(no_home, buf, &nv, &nw, &got);
		assert_string_equal(record_value(v, nv, "DOCKER_CONTEXT"), "default");
		assert_null(container_record_unpinned(v, nv, v + nv + 1, &got));
		free(v);
		v = launched_record(empty_home, buf, &nv, &nw, &got);
		assert_string_equal(record_value(v, nv, "DOCKER_CONTEXT"), "default");
		free(v);
	}
	/* a relative HOME: not known, nothing recorded, not pinned */
	char *rel_home[] = { W("env"), W("-uDOCKER_HOST"), W("HOME=rel"), W("docker"), NULL };

	v = launched_record(rel_home, buf, &nv, &nw, &got);
	assert_null(record_value(v, nv, "DOCKER_CONTEXT"));
	assert_non_null(container_record_unpinned(v, nv, v + nv + 1, &got));
	free(v);
	assert_int_equal(unsetenv("DOCKER_HOST"), 0);
	(void)snprintf(path, sizeof(path), "%s/.docker/config.json", dir);
	assert_int_equal(unlink(path), 0);
	(void)snprintf(path, sizeof(path), "%s/.docker", dir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(unlink(docker), 0);
	(void)snprintf(path, sizeof(path), "%s/bin", dir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(rmdir(dir), 0);
	(void)state;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detect_table),  cmocka_unit_test(test_detect_details),
		cmocka_unit_test(test_run_argv),      cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_parse_podman),  cmocka_unit_test(test_parse_docker),
		cmocka_unit_test(test_whose_parse),   cmocka_unit_test(test_listed),
		cmocka_unit_test(test_gone_message),  cmocka_unit_test(test_why),
		cmocka_unit_test(test_tail_gone),     cmocka_unit_test(test_record),
		cmocka_unit_test(test_record_engine), cmocka_unit_test(test_record_env_unset),
	};

	return cmocka_run_group_tests_name("container", tests, NULL, NULL);
}
