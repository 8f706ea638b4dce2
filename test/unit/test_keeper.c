/*
 * Unit tests for keeper: the line that tells the keeper about a container, and the
 * keeper's reading of its words, whatever their number and length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mcpmux/keeper.h"
#include "tmpdir.h"

#define W(s) ((char *)(uintptr_t)(s))

/* 200 words of 300 bytes each (60 KB, far over any fixed line), all of them back. */
static void
test_many_long_words_round_trip(void **state)
{
	enum { N = 200, LEN = 300 };
	char *words[N];

	(void)state;
	for (size_t i = 0; i < N; i++) {
		words[i] = malloc(LEN + 1);
		assert_non_null(words[i]);
		memset(words[i], 'a' + (int)(i % 26), LEN);
		(void)snprintf(words[i], LEN + 1, "V%zu=", i);
		words[i][strlen(words[i])] = 'x';
		words[i][LEN] = '\0';
	}
	char *line = keeper_container_line(words, N, "/run/x/1.2.cid", NULL, false);

	assert_non_null(line);
	assert_int_equal(strncmp(line, "C\t/run/x/1.2.cid\t", 17), 0);
	assert_int_equal(line[strlen(line) - 1], '\n');
	line[strlen(line) - 1] = '\0';

	size_t n = 0;
	char **back = keeper_split_words(line + 17, &n);

	assert_non_null(back);
	assert_int_equal(n, N);
	for (size_t i = 0; i < N; i++) {
		assert_string_equal(back[i], words[i]);
	}
	assert_null(back[N]);
	free(back);
	free(line);
	for (size_t i = 0; i < N; i++) {
		free(words[i]);
	}
}

static void
test_one_word_and_empty_words(void **state)
{
	char *one[] = { W("podman") };
	char *gaps[] = { W("env"), W(""), W("docker") };
	size_t n = 0;

	(void)state;
	char *line = keeper_container_line(one, 1, "c", NULL, false);

	assert_string_equal(line, "C\tc\tpodman\n");
	free(line);
	line = keeper_container_line(one, 1, "c", "r-1", false);
	assert_string_equal(line, "C\tc\tpodman\tr-1\n");
	free(line);
	line = keeper_container_line(one, 1, "c", "r-1", true);
	assert_string_equal(line, "C\tc\tpodman\tr-1\town\n");
	free(line);
	line = keeper_container_line(one, 1, "c", NULL, true);
	assert_string_equal(line, "C\tc\tpodman\t\town\n");
	free(line);
	assert_null(keeper_container_line(one, 1, "c", "r\t1", false));
	assert_null(keeper_container_line(one, 1, "c", "", false));
	line = keeper_container_line(gaps, 3, "c", NULL, false);
	assert_string_equal(line, "C\tc\tenv\x1f\x1f"
				  "docker\n");
	line[strlen(line) - 1] = '\0';
	char **back = keeper_split_words(line + 4, &n);

	assert_int_equal(n, 3);
	assert_string_equal(back[0], "env");
	assert_string_equal(back[1], "");
	assert_string_equal(back[2], "docker");
	free(back);
	free(line);
}

/* What cannot be carried is refused (and mcpmux says so), never cut. */
static void
test_what_cannot_go_is_refused(void **state)
{
	char *tab[] = { W("env"), W("A=1\t2"), W("podman") };
	char *nl[] = { W("env"), W("A=1\n2"), W("podman") };
	char *us[] = { W("env"),
		       W("A=1\x1f"
			 "2"),
		       W("podman") };
	char *ok[] = { W("podman") };

	(void)state;
	errno = 0;
	assert_null(keeper_container_line(tab, 3, "c", NULL, false));
	assert_int_equal(errno, EINVAL);
	assert_null(keeper_container_line(nl, 3, "c", NULL, false));
	assert_null(keeper_container_line(us, 3, "c", NULL, false));
	assert_null(keeper_container_line(ok, 1, "a\tb", NULL, false));
	assert_null(keeper_container_line(ok, 1, "a\nb", NULL, false));
	assert_null(keeper_container_line(ok, 1, "", NULL, false));
	char *line = keeper_container_line(ok, 1, "", "r-1", false); /* no id file: its labels */

	assert_string_equal(line, "C\t\tpodman\tr-1\n");
	free(line);
	assert_null(keeper_container_line(ok, 0, "c", NULL, false));
	assert_int_equal(errno, EINVAL);
}

/*
 * Wait, a bounded time, until /proc/PID/<file> of process pid holds `want` at `at`
 * (after the last ')' when at_paren); true when it does.
 */
static bool
proc_shows(pid_t pid, const char *file, bool at_paren, const char *want, int ms)
{
	char path[64], buf[512];

	(void)snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	for (int waited = 0; waited <= ms; waited += 10) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		const char *at = buf;

		if (fd >= 0) {
			(void)close(fd);
		}
		buf[n > 0 ? n : 0] = '\0';
		if (at_paren && (at = strrchr(buf, ')')) != NULL) {
			at += 2;
		}
		if (at != NULL && strncmp(at, want, strlen(want)) == 0) {
			return true;
		}
		(void)usleep(10000);
	}
	return false;
}

/* What the pipe holds now (it is non-blocking); the bytes read. */
static size_t
drain(int fd, char *last)
{
	char buf[65536];
	size_t total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		total += (size_t)n;
		*last = buf[n - 1];
	}
	return total;
}

/*
 * A line the keeper is too slow to take whole (stopped here: the pipe stays full) is
 * left half written: anything told after it would be glued to it and misread (a "D"
 * line taken for the rest of a container's words, the "X" of a normal exit heard), so
 * nothing more is told, "done" included.  The keeper's pipe is read here, through /proc,
 * in its place.
 */
static void
test_nothing_is_told_after_a_line_left_half_written(void **state)
{
	enum { N = 1000, LEN = 200 }; /* 200 KB: more than a pipe holds */
	char name[] = "test_keeper";
	char *argv[] = { name, NULL };
	char *words[N], path[64], last = '\0';

	(void)state;
	for (size_t i = 0; i < N; i++) {
		words[i] = malloc(LEN + 1);
		assert_non_null(words[i]);
		memset(words[i], 'w', LEN);
		words[i][LEN] = '\0';
	}
	assert_int_equal(keeper_start(0.1, 1, argv), 0);
	pid_t k = keeper_pid_live();

	assert_true(k > 0);
	/* Once it reads its pipe (fd 3): then stopped, and its pipe read here instead. */
	bool ready = proc_shows(k, "comm", false, "mcpmux-keeper", 5000);

	(void)snprintf(path, sizeof(path), "/proc/%d/fd/3", (int)k);
	int rd = ready ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
	bool stopped = rd >= 0 && kill(k, SIGSTOP) == 0 && proc_shows(k, "stat", true, "T", 5000);
	size_t got = 0;

	if (stopped) {
		keeper_container(words, N, "/nonexistent/a.cid", NULL,
				 false); /* cut after a second */
		got = drain(rd, &last);
		keeper_container_gone("/nonexistent/a.cid", NULL);
		keeper_cgroup("/nonexistent/cgroup");
	}
	(void)kill(k, SIGKILL); /* (not ours to reap: its parent, a middle child, is gone) */
	keeper_done();		/* its pipe closed; the keeper gone (its end of the other one) */
	/* nothing after the cut: the end of the pipe */
	struct pollfd pfd = { .fd = rd, .events = POLLIN };
	int polled = stopped ? poll(&pfd, 1, 5000) : -1;
	ssize_t after = polled == 1 ? read(rd, path, sizeof(path)) : -1;

	if (rd >= 0) {
		(void)close(rd);
	}
	for (size_t i = 0; i < N; i++) {
		free(words[i]);
	}
	assert_true(stopped);
	assert_true(got > 0 && got < (size_t)N * (LEN + 1));
	assert_int_not_equal(last, '\n');
	assert_int_equal(polled, 1);
	assert_int_equal(after, 0);
}

/* Wait, a bounded time, until process pid is gone (or a zombie); true when it is. */
static bool
proc_gone(pid_t pid, int ms)
{
	for (int waited = 0; waited <= ms; waited += 10) {
		if (kill(pid, 0) == -1 || proc_shows(pid, "stat", true, "Z", 0)) {
			return true;
		}
		(void)usleep(10000);
	}
	return false;
}

/*
 * An mcpmux that starts a keeper, tells it what tell() tells, and exits without "done"
 * (as if killed), in a child; then the keeper's work is waited for (bounded).  The
 * engine's words: a shell that logs each command it is given to the file log.  true
 * when the keeper is gone.
 */
static bool
keeper_after_kill(void (*tell)(char **engine, size_t n), const char *log)
{
	char name[] = "test_keeper";
	char *argv[] = { name, NULL };
	char *engine[] = { W("sh"), W("-c"), W("printf '%s\\n' \"$*\" >>\"$0\""), W(log) };
	int p[2];
	pid_t k = 0, child;

	if (pipe2(p, O_CLOEXEC) == -1) {
		return false;
	}
	if ((child = fork()) == 0) {
		(void)close(p[0]);
		if (keeper_start(0.1, 1, argv) == 0) {
			k = keeper_pid_live();
			tell(engine, 4);
		}
		/* no "done": the keeper takes mcpmux for killed */
		_exit(write(p[1], &k, sizeof(k)) == (ssize_t)sizeof(k) ? 0 : 1);
	}
	(void)close(p[1]);
	bool got = child > 0 && read(p[0], &k, sizeof(k)) == (ssize_t)sizeof(k) && k > 0;

	(void)close(p[0]);
	if (child > 0) {
		(void)waitpid(child, NULL, 0);
	}
	return got && proc_gone(k, 20000);
}

static char shared_cid[320];

static void
tell_two_runs_one_gone(char **engine, size_t n)
{
	keeper_container(engine, n, shared_cid, "run-a", false);
	keeper_container(engine, n, shared_cid, "run-b", false);
	keeper_container_gone(shared_cid, "run-b");
}

/*
 * Two runs of one command line share a user's --cidfile (both told before the engine
 * wrote it): the one said gone is the run said, not the first told with that file.  The
 * other's id file is still empty when mcpmux is killed: the keeper asks for the
 * container of that run, not of the gone one.
 */
static void
test_a_gone_run_is_told_by_its_run_not_its_id_file(void **state)
{
	char dir[256], log[300], buf[4096] = "";

	(void)state;
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "keeper"), 0);
	(void)snprintf(shared_cid, sizeof(shared_cid), "%s/users.cid", dir);
	(void)snprintf(log, sizeof(log), "%s/engine.log", dir);
	bool gone = keeper_after_kill(tell_two_runs_one_gone, log);
	int fd = open(log, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0) {
		(void)close(fd);
	}
	buf[n > 0 ? n : 0] = '\0';
	(void)tmpdir_remove(dir);
	assert_true(gone);
	assert_non_null(strstr(buf, "container ls "));
	assert_non_null(strstr(buf, "--filter label=mcpmux.run=run-a "));
	assert_null(strstr(buf, "run-b"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_long_words_round_trip),
		cmocka_unit_test(test_one_word_and_empty_words),
		cmocka_unit_test(test_what_cannot_go_is_refused),
		cmocka_unit_test(test_a_gone_run_is_told_by_its_run_not_its_id_file),
		cmocka_unit_test(test_nothing_is_told_after_a_line_left_half_written),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
