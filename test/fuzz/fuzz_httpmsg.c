/*
 * Fuzz target: httpmsg, the header values and event text the HTTP layer handles.
 *
 * Input: A, optionally followed by a NUL and B.  A goes through every reader of a field
 * value (Accept, Origin, Host, Authorization, a list, a --http address), and is the data
 * of an SSE event whose id is B (when B can be an id).  Each must hold:
 *
 *   - httpmsg_accept_q() is within 0..1000, and 1000 for A's own first media type;
 *   - a loopback Origin starts with "http://" or "https://"; a loopback Host has no '/';
 *   - "Bearer " + B is accepted for token B, and refused with any one byte of it changed;
 *   - a --http address that parses has a port of 0..65535 in digits, or a path with a '/';
 *   - an SSE event is exactly httpmsg_sse_size() bytes, holds no CR, ends with a blank
 *     line, and gives back A's lines (CRLF, CR and LF all line ends) read as a client
 *     reads an event stream, with B as its id.
 */
#include <strings.h>

#include "fuzz.h"

#include "mcpmux/httpmsg.h"

static void
check_sse(const char *a, size_t alen, const char *b)
{
	struct httpmsg_sse ev = {
		.id = b, .retry_ms = -1, .has_data = true, .data = a, .data_len = alen
	};
	size_t n = httpmsg_sse_size(&ev);
	char *out = malloc(n + 1);
	struct fuzz_log want = { 0 }, got = { 0 };

	FUZZ_CHECK(out != NULL, "out of memory");
	FUZZ_CHECK(httpmsg_sse_format(out, &ev) == n, "size and format disagree");
	FUZZ_CHECK(memchr(out, '\r', n) == NULL, "a CR in the event");
	FUZZ_CHECK(n >= 2 && out[n - 1] == '\n' && out[n - 2] == '\n', "no blank line at the end");
	FUZZ_CHECK(memmem(out, n, "\n\n", 2) == out + n - 2, "the event ends early");
	/* The data, as a client rebuilds it: every line end of A becomes one LF. */
	for (size_t i = 0; i < alen; i++) {
		if (a[i] == '\r' && i + 1 < alen && a[i + 1] == '\n') {
			continue;
		}
		fuzz_log_add(&want, a[i] == '\r' ? "\n" : &a[i], 1);
	}
	/* Read the event: "id: " and "data: " lines, as a client would. */
	const char *p = out, *end = out + n - 1, *id = NULL;
	size_t id_len = 0;
	bool first = true;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)(nl - p);

		if (len >= 4 && memcmp(p, "id: ", 4) == 0) {
			id = p + 4;
			id_len = len - 4;
		} else {
			FUZZ_CHECK(len >= 5 && memcmp(p, "data:", 5) == 0,
				   "a line that is no field");
			size_t skip = len > 5 && p[5] == ' ' ? 6 : 5;

			if (!first) {
				fuzz_log_add(&got, "\n", 1);
			}
			fuzz_log_add(&got, p + skip, len - skip);
			first = false;
		}
		p = nl + 1;
	}
	FUZZ_CHECK(fuzz_log_equal(&want, &got), "the data does not come back");
	if (b != NULL) {
		FUZZ_CHECK(id != NULL && id_len == strlen(b) && memcmp(id, b, id_len) == 0,
			   "the id does not come back");
	}
	fuzz_log_free(&want);
	fuzz_log_free(&got);
	free(out);
}

static void
check_bearer(const char *b, size_t blen)
{
	char *v = malloc(blen + 8);

	FUZZ_CHECK(v != NULL, "out of memory");
	memcpy(v, "Bearer ", 7);
	memcpy(v + 7, b, blen);
	bool trimmed = blen > 0 && (b[0] == ' ' || b[blen - 1] == ' ' || b[blen - 1] == '\t');

	if (blen > 0 && !trimmed) {
		FUZZ_CHECK(httpmsg_bearer_ok(v, blen + 7, b, blen), "the token is refused");
		v[7 + blen / 2] ^= 0x20;
		FUZZ_CHECK(!httpmsg_bearer_ok(v, blen + 7, b, blen), "a changed token passes");
	}
	free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *nul = memchr(in, '\0', size);
	size_t alen = nul != NULL ? (size_t)(nul - in) : size;
	char *a = malloc(alen + 1), *b = NULL;

	FUZZ_CHECK(a != NULL, "out of memory");
	memcpy(a, in, alen);
	a[alen] = '\0';
	if (nul != NULL) {
		size_t blen = size - alen - 1;

		b = malloc(blen + 1);
		FUZZ_CHECK(b != NULL, "out of memory");
		memcpy(b, nul + 1, blen);
		b[blen] = '\0';
		check_bearer(b, blen);
		if (strlen(b) != blen || !httpmsg_sse_field_ok(b)) {
			free(b);
			b = NULL; /* not an id */
		}
	}
	int q = httpmsg_accept_q(a, alen, "text/event-stream");

	FUZZ_CHECK(q >= 0 && q <= 1000, "q of %d", q);
	/* A's first media type, if it is one, is accepted fully by itself. */
	size_t tl = strcspn(a, ",; \t");

	if (tl > 0 && tl < 64 && tl == alen && memchr(a, '/', tl) != NULL &&
	    strchr(a, '*') == NULL) {
		char type[64];

		memcpy(type, a, tl);
		type[tl] = '\0';
		FUZZ_CHECK(httpmsg_accept_q(a, alen, type) == 1000, "a type refuses itself");
	}
	if (httpmsg_origin_is_loopback(a, alen)) {
		FUZZ_CHECK(strncasecmp(a, "http://", 7) == 0 || strncasecmp(a, "https://", 8) == 0,
			   "a loopback origin without a scheme");
	}
	if (httpmsg_host_is_loopback(a, alen)) {
		FUZZ_CHECK(memchr(a, '/', alen) == NULL, "a loopback host with a path");
	}
	(void)httpmsg_list_has(a, alen, "close");
	(void)httpmsg_is_token(a, alen);
	(void)httpmsg_value_ok(a, alen);

	struct httpmsg_addr addr;

	if (httpmsg_parse_addr(a, &addr) == 0) {
		if (addr.is_path) {
			FUZZ_CHECK(strchr(addr.path, '/') != NULL, "a path without a '/'");
		} else {
			FUZZ_CHECK(addr.port[0] != '\0' &&
					   strspn(addr.port, "0123456789") == strlen(addr.port),
				   "a port that is not a number");
			FUZZ_CHECK(atol(addr.port) <= 65535, "port %s", addr.port);
			FUZZ_CHECK(addr.host[0] != '\0', "an empty host");
		}
	}
	check_sse(a, alen, b);
	free(a);
	free(b);
	return 0;
}
