/*
 * echo_server: a fast MCP-ish stdio backend for the benchmarks.
 *
 *   echo_server [--payload BYTES] [--escapes]
 *
 * Reads newline-delimited JSON-RPC on stdin with a fast text scan (no JSON parser):
 *
 * - a line without "id": is a notification: counted, never answered;
 * - "initialize" gets a small initialize result;
 * - "bench/count" gets {"count":N}, N the notifications seen so far (oneway runs check it);
 * - any other request gets {"content":[{"type":"text","text":PAYLOAD}]}, PAYLOAD being
 *   BYTES of 'x' or, with --escapes, BYTES of escape-heavy JSON string text;
 * - a line with "id": but no "method" (a response from the client) is ignored.
 *
 * Answers to the requests of one read are written with one writev.  Exits 0 at stdin EOF.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"

#define PROG	   "echo_server"
#define READ_CHUNK ((size_t)1 << 20)
#define MAX_IOV	   1020

static const char resp_head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
static const char text_head[] = ",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"";
static const char text_tail[] = "\"}]}}\n";
static const char init_tail[] =
	",\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},"
	"\"serverInfo\":{\"name\":\"mcpmux-bench-echo\",\"version\":\"1.0.0\"}}}\n";

static char *resp_tail; /* text_head PAYLOAD text_tail */
static size_t resp_tail_len;
static uint64_t n_notes;

static struct iovec iov[MAX_IOV];
static int n_iov;
static char count_buf[128];

static void
flush_out(void)
{
	if (n_iov > 0 && bench_writev_all(STDOUT_FILENO, iov, n_iov) == -1) {
		/* The reader went away: nothing more to do. */
		exit(errno == EPIPE ? 0 : 1);
	}
	n_iov = 0;
}

static void
add_iov(const void *p, size_t len)
{
	if (n_iov == MAX_IOV) {
		flush_out();
	}
	iov[n_iov].iov_base = (void *)(uintptr_t)p;
	iov[n_iov].iov_len = len;
	n_iov++;
}

/* Build the constant part of every payload response. */
static void
make_payload(size_t bytes, bool escapes)
{
	/* Each unit is valid JSON string text: quotes, backslashes, controls, \u escapes. */
	static const char unit[] = "a\\\"b\\\\c\\nd\\te\\u00e9f\\/g\\r";
	size_t ulen = sizeof(unit) - 1, hl = sizeof(text_head) - 1, tl = sizeof(text_tail) - 1;
	char *p;

	resp_tail_len = hl + bytes + tl;
	resp_tail = malloc(resp_tail_len);
	if (resp_tail == NULL) {
		bench_die(PROG, "cannot allocate the payload");
	}
	memcpy(resp_tail, text_head, hl);
	p = resp_tail + hl;
	memset(p, 'x', bytes);
	if (escapes) {
		for (size_t off = 0; off + ulen <= bytes; off += ulen) {
			memcpy(p + off, unit, ulen);
		}
	}
	memcpy(p + bytes, text_tail, tl);
}

/* The id token after "id": (a number, or a string without escapes). */
static bool
find_id(const char *line, size_t len, const char **id, size_t *id_len)
{
	const char *p = memmem(line, len, "\"id\":", 5), *end = line + len, *q;

	if (p == NULL) {
		return false;
	}
	p += 5;
	while (p < end && (*p == ' ' || *p == '\t')) {
		p++;
	}
	if (p == end) {
		return false;
	}
	if (*p == '"') {
		q = memchr(p + 1, '"', (size_t)(end - p - 1));
		if (q == NULL) {
			return false;
		}
		q++;
	} else {
		q = p;
		while (q < end && *q != ',' && *q != '}' && *q != ' ' && *q != ']') {
			q++;
		}
	}
	*id = p;
	*id_len = (size_t)(q - p);
	return *id_len > 0;
}

static bool
method_is(const char *line, size_t len, const char *name, bool *has_method)
{
	const char *p = memmem(line, len, "\"method\":", 9), *end = line + len;
	size_t n = strlen(name);

	*has_method = p != NULL;
	if (p == NULL) {
		return false;
	}
	p += 9;
	while (p < end && *p == ' ') {
		p++;
	}
	return (size_t)(end - p) > n + 1 && p[0] == '"' && memcmp(p + 1, name, n) == 0 &&
	       p[n + 1] == '"';
}

static void
on_line(const char *line, size_t len)
{
	const char *id;
	size_t id_len;
	bool has_method;

	if (!find_id(line, len, &id, &id_len)) {
		n_notes++;
		return;
	}
	if (method_is(line, len, "initialize", &has_method)) {
		add_iov(resp_head, sizeof(resp_head) - 1);
		add_iov(id, id_len);
		add_iov(init_tail, sizeof(init_tail) - 1);
		return;
	}
	if (!has_method) {
		return;
	}
	if (method_is(line, len, "bench/count", &has_method)) {
		int n = snprintf(count_buf, sizeof(count_buf), ",\"result\":{\"count\":%llu}}\n",
				 (unsigned long long)n_notes);

		add_iov(resp_head, sizeof(resp_head) - 1);
		add_iov(id, id_len);
		add_iov(count_buf, (size_t)n);
		flush_out(); /* count_buf is reused */
		return;
	}
	add_iov(resp_head, sizeof(resp_head) - 1);
	add_iov(id, id_len);
	add_iov(resp_tail, resp_tail_len);
}

static void
usage(void)
{
	fprintf(stderr, "usage: " PROG " [--payload BYTES] [--escapes]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	size_t payload = 1024, cap = READ_CHUNK * 2, len = 0, scanned = 0;
	bool escapes = false;
	char *buf;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--payload") == 0 && i + 1 < argc) {
			payload = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--escapes") == 0) {
			escapes = true;
		} else {
			usage();
		}
	}
	make_payload(payload, escapes);
	buf = malloc(cap);
	if (buf == NULL) {
		bench_die(PROG, "cannot allocate the read buffer");
	}
	for (;;) {
		if (cap - len < READ_CHUNK) {
			char *nb = realloc(buf, cap * 2);

			if (nb == NULL) {
				bench_die(PROG, "cannot grow the read buffer");
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(STDIN_FILENO, buf + len, cap - len);

		if (n == -1 && errno == EINTR) {
			continue;
		}
		if (n == -1 && errno == EAGAIN) {
			struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };

			(void)poll(&p, 1, -1);
			continue;
		}
		if (n <= 0) {
			break;
		}
		len += (size_t)n;

		size_t start = 0;
		const char *nl;

		while ((nl = memchr(buf + scanned, '\n', len - scanned)) != NULL) {
			size_t end = (size_t)(nl - buf);

			if (end > start) {
				on_line(buf + start, end - start);
			}
			start = end + 1;
			scanned = start;
		}
		scanned = len;
		flush_out();
		if (start > 0) {
			memmove(buf, buf + start, len - start);
			len -= start;
			scanned -= start;
		}
	}
	flush_out();
	free(buf);
	free(resp_tail);
	return 0;
}
