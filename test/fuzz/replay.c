/*
 * replay: run a fuzz target's LLVMFuzzerTestOneInput over saved inputs, without libFuzzer.
 *
 *   fuzz_framer_replay PATH...
 *
 * Each PATH is a file or a directory (its regular files, recursively, in name order; names
 * starting with '.' are skipped).  Each input runs in a child process of its own, so that
 * one failed invariant (an abort) or sanitizer report does not hide the next: every
 * failing input is named, and the exit status is 1 if any failed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

static size_t n_inputs, n_failed;

static int
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *nb = realloc(buf, cap ? cap * 2 : 4096);

			if (nb == NULL) {
				fprintf(stderr, "replay: out of memory reading %s\n", path);
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
			cap = cap ? cap * 2 : 4096;
		}
		size_t n = fread(buf + len, 1, cap - len, f);

		len += n;
		if (n == 0) {
			break;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	/* Named first, so that a failure is easy to reproduce. */
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
	fflush(stderr);
	pid_t pid = fork();
	int status = 0;

	if (pid == 0) {
		(void)LLVMFuzzerTestOneInput(buf, len);
		free(buf);
		exit(0); /* not _exit(): LeakSanitizer checks at exit */
	}
	free(buf);
	if (pid == -1 || waitpid(pid, &status, 0) == -1) {
		fprintf(stderr, "replay: cannot run %s: %s\n", path, strerror(errno));
		return -1;
	}
	n_inputs++;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		n_failed++;
		fprintf(stderr, "replay: FAILED: %s (%s %d)\n", path,
			WIFSIGNALED(status) ? "signal" : "exit status",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int run_path(const char *path);

static int
run_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (d == NULL) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.') {
			continue;
		}
		if (n == cap) {
			char **nn = realloc(names, (cap ? cap * 2 : 64) * sizeof(*names));

			if (nn == NULL) {
				rc = -1;
				break;
			}
			names = nn;
			cap = cap ? cap * 2 : 64;
		}
		size_t len = strlen(path) + strlen(de->d_name) + 2;

		names[n] = malloc(len);
		if (names[n] == NULL) {
			rc = -1;
			break;
		}
		(void)snprintf(names[n], len, "%s/%s", path, de->d_name);
		n++;
	}
	closedir(d);
	if (n > 0) {
		qsort(names, n, sizeof(*names), by_name);
	}
	for (size_t i = 0; i < n; i++) {
		if (rc == 0 && run_path(names[i]) == -1) {
			rc = -1;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

static int
run_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return S_ISDIR(st.st_mode) ? run_dir(path) : run_file(path);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (run_path(argv[i]) == -1) {
			return 1;
		}
	}
	if (n_failed > 0) {
		fprintf(stderr, "replay: %zu of %zu input(s) failed\n", n_failed, n_inputs);
		return 1;
	}
	fprintf(stderr, "replay: %zu input(s) passed\n", n_inputs);
	return 0;
}
