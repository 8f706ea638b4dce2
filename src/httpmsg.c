/*
 * httpmsg: header fields, targets, status lines, dates, chunks, SSE, Accept, tokens,
 * origins and listen addresses.  Pure.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "mcpmux/httpmsg.h"
#include "mcpmux/sys.h"

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool
is_ows(char c)
{
	return c == ' ' || c == '\t';
}

bool
httpmsg_is_token(const char *p, size_t len)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	if (len == 0) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c != 0 && strchr(extra, c) != NULL))) {
			return false;
		}
	}
	return true;
}

bool
httpmsg_value_ok(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			return false;
		}
	}
	return true;
}

bool
httpmsg_name_eq(const char *p, size_t len, const char *name)
{
	size_t i = 0;

	for (; i < len; i++) {
		if (name[i] == '\0' ||
		    lower((unsigned char)p[i]) != lower((unsigned char)name[i])) {
			return false;
		}
	}
	return name[i] == '\0';
}

const struct http_header *
httpmsg_find(const struct http_header *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (httpmsg_name_eq(h[i].name, h[i].name_len, name)) {
			return &h[i];
		}
	}
	return NULL;
}

size_t
httpmsg_count(const struct http_header *h, size_t n, const char *name)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (httpmsg_name_eq(h[i].name, h[i].name_len, name)) {
			k++;
		}
	}
	return k;
}

/* The next element of a comma-separated list, without its whitespace; false at the end. */
static bool
list_next(const char **pp, const char *end, const char **elem, size_t *elen)
{
	const char *p = *pp;

	while (p < end && (is_ows(*p) || *p == ',')) {
		p++;
	}
	if (p == end) {
		return false;
	}
	const char *comma = memchr(p, ',', (size_t)(end - p));
	const char *e = comma != NULL ? comma : end;

	*pp = e;
	while (e > p && is_ows(e[-1])) {
		e--;
	}
	*elem = p;
	*elen = (size_t)(e - p);
	return true;
}

bool
httpmsg_list_has(const char *v, size_t len, const char *token)
{
	const char *p = v, *end = v + len, *e;
	size_t elen;

	while (list_next(&p, end, &e, &elen)) {
		if (httpmsg_name_eq(e, elen, token)) {
			return true;
		}
	}
	return false;
}

bool
httpmsg_list_only(const char *v, size_t len, const char *token)
{
	const char *p = v, *end = v + len, *e;
	size_t elen;

	while (list_next(&p, end, &e, &elen)) {
		if (!httpmsg_name_eq(e, elen, token)) {
			return false;
		}
	}
	return true;
}

/* The length of the "http://" or "https://" (any case) that v starts with, or 0. */
static size_t
scheme_len(const char *v, size_t len)
{
	if (len >= 7 && strncasecmp(v, "http://", 7) == 0) {
		return 7;
	}
	if (len >= 8 && strncasecmp(v, "https://", 8) == 0) {
		return 8;
	}
	return 0;
}

void
httpmsg_split_target(const char *t, size_t len, struct httpmsg_target *out)
{
	size_t skip = scheme_len(t, len);

	out->authority = NULL;
	out->authority_len = 0;
	if (skip > 0) {
		size_t a = skip;

		while (a < len && t[a] != '/' && t[a] != '?') {
			a++;
		}
		out->authority = t + skip;
		out->authority_len = a - skip;
		t += a;
		len -= a;
	}
	const char *q = memchr(t, '?', len);

	out->path = t;
	out->path_len = q == NULL ? len : (size_t)(q - t);
	if (out->path_len == 0 && skip > 0) {
		out->path = "/";
		out->path_len = 1;
	}
	if (q == NULL) {
		out->query = NULL;
		out->query_len = 0;
		return;
	}
	out->query = q + 1;
	out->query_len = len - (size_t)(q - t) - 1;
}

const char *
httpmsg_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

bool
httpmsg_status_bodiless(int status)
{
	return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* Write sep, then v in exactly `digits` decimal digits; returns the end. */
static char *
put_num(char *o, const char *sep, int v, int digits)
{
	size_t n = strlen(sep);

	memcpy(o, sep, n);
	o += n;
	for (int i = digits - 1; i >= 0; i--) {
		o[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return o + digits;
}

void
httpmsg_date(char out[HTTPMSG_DATE_LEN + 1], time_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	/* Not strftime: its %a and %b follow the locale. */
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
		memset(&tm, 0, sizeof(tm));
		tm.tm_year = 70;
		tm.tm_mday = 1;
		tm.tm_wday = 4;
	}
	char *o = out;

	memcpy(o, days[tm.tm_wday % 7], 3);
	o = put_num(o + 3, ", ", tm.tm_mday, 2);
	*o++ = ' ';
	memcpy(o, months[tm.tm_mon % 12], 3);
	o = put_num(o + 3, " ", tm.tm_year + 1900, 4);
	o = put_num(o, " ", tm.tm_hour, 2);
	o = put_num(o, ":", tm.tm_min, 2);
	o = put_num(o, ":", tm.tm_sec, 2);
	memcpy(o, " GMT", 4);
	out[HTTPMSG_DATE_LEN] = '\0';
}

size_t
httpmsg_chunk_head(char out[HTTPMSG_CHUNK_HEAD_MAX], size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[16];
	size_t n = 0, k = 0;

	do {
		tmp[n++] = hex[len & 15];
		len >>= 4;
	} while (len > 0);
	while (n > 0) {
		out[k++] = tmp[--n];
	}
	out[k++] = '\r';
	out[k++] = '\n';
	return k;
}

bool
httpmsg_sse_field_ok(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

size_t
httpmsg_sse_break(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' || data[i] == '\n') {
			return i;
		}
	}
	return len;
}

/* Calls line(ctx, p, n) for each line of data: split at CRLF, CR and LF. */
static void
sse_lines(const char *data, size_t len, void (*line)(void *ctx, const char *p, size_t n), void *ctx)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' || data[i] == '\n') {
			line(ctx, data + start, i - start);
			if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') {
				i++;
			}
			start = i + 1;
		}
	}
	line(ctx, data + start, len - start);
}

struct sse_out {
	char *p;    /* NULL: count only */
	size_t len; /* bytes written (or counted) */
};

static void
sse_put(struct sse_out *o, const char *p, size_t n)
{
	if (o->p != NULL && n > 0) {
		memcpy(o->p + o->len, p, n);
	}
	o->len += n;
}

static void
sse_data_line(void *ctx, const char *p, size_t n)
{
	struct sse_out *o = ctx;

	sse_put(o, "data: ", n > 0 ? 6 : 5);
	sse_put(o, p, n);
	sse_put(o, "\n", 1);
}

static void
sse_field(struct sse_out *o, const char *name, const char *value)
{
	if (value != NULL) {
		sse_put(o, name, strlen(name));
		sse_put(o, value, strlen(value));
		sse_put(o, "\n", 1);
	}
}

static void
sse_emit(struct sse_out *o, const struct httpmsg_sse *ev)
{
	if (ev->comment != NULL) {
		sse_put(o, ": ", 2);
		sse_put(o, ev->comment, strlen(ev->comment));
		sse_put(o, "\n", 1);
	}
	sse_field(o, "event: ", ev->event);
	sse_field(o, "id: ", ev->id);
	if (ev->retry_ms >= 0) {
		char num[32]; /* "retry: " and a long's 20 characters at most */
		int n = snprintf(num, sizeof(num), "retry: %ld\n", ev->retry_ms);

		sse_put(o, num, (size_t)n);
	}
	if (ev->has_data) {
		sse_lines(ev->data, ev->data_len, sse_data_line, o);
	}
	sse_put(o, "\n", 1);
}

size_t
httpmsg_sse_size(const struct httpmsg_sse *ev)
{
	struct sse_out o = { NULL, 0 };

	sse_emit(&o, ev);
	return o.len;
}

size_t
httpmsg_sse_format(char *out, const struct httpmsg_sse *ev)
{
	struct sse_out o = { out, 0 };

	sse_emit(&o, ev);
	return o.len;
}

/* A q parameter's value as 0..1000; -1 if it is malformed (RFC 9110 qvalue). */
static int
parse_q(const char *p, size_t n)
{
	int q = 0, digits = 0;

	if (n == 0 || (p[0] != '0' && p[0] != '1')) {
		return -1;
	}
	q = (p[0] - '0') * 1000;
	if (n == 1) {
		return q;
	}
	if (p[1] != '.' || n > 5) {
		return -1;
	}
	for (size_t i = 2; i < n; i++) {
		if (p[i] < '0' || p[i] > '9') {
			return -1;
		}
		static const int scale[3] = { 100, 10, 1 };

		q += (p[i] - '0') * scale[digits++];
	}
	return q > 1000 ? -1 : q;
}

/* The q of a media range's parameters ("a=b; q=0.5"): 1000 without one, 0 if malformed. */
static int
params_q(const char *p, size_t len)
{
	const char *end = p + len;
	int q = 1000;

	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		size_t n = semi != NULL ? (size_t)(semi - p) : (size_t)(end - p);
		const char *e = p;

		while (n > 0 && is_ows(*e)) {
			e++;
			n--;
		}
		while (n > 0 && is_ows(e[n - 1])) {
			n--;
		}
		if (n >= 2 && lower((unsigned char)e[0]) == 'q' && e[1] == '=') {
			q = parse_q(e + 2, n - 2);
			if (q < 0) {
				q = 0; /* malformed: the range is not acceptable */
			}
		}
		p = semi != NULL ? semi + 1 : end;
	}
	return q;
}

/* Fold the ranges of one Accept value into the best match so far (rank, then its q). */
static void
accept_scan(const char *v, size_t len, const char *type, int *best_rank, int *best_q)
{
	const char *slash = strchr(type, '/');
	size_t tlen = slash != NULL ? (size_t)(slash - type) : strlen(type);
	const char *p = v, *end = v + len, *e;
	size_t elen;

	while (list_next(&p, end, &e, &elen)) {
		const char *semi = memchr(e, ';', elen);
		size_t rlen = semi != NULL ? (size_t)(semi - e) : elen;
		int q = 1000, rank;

		while (rlen > 0 && is_ows(e[rlen - 1])) {
			rlen--;
		}
		if (httpmsg_name_eq(e, rlen, type)) {
			rank = 3;
		} else if (rlen == tlen + 2 && strncasecmp(e, type, tlen) == 0 && e[tlen] == '/' &&
			   e[tlen + 1] == '*') {
			rank = 2;
		} else if (rlen == 3 && memcmp(e, "*/*", 3) == 0) {
			rank = 1;
		} else {
			continue;
		}
		/* Parameters: only q matters here. */
		if (semi != NULL) {
			q = params_q(semi + 1, (size_t)(e + elen - semi - 1));
		}
		if (rank > *best_rank) {
			*best_rank = rank;
			*best_q = q;
		}
	}
}

int
httpmsg_accept_q(const char *v, size_t len, const char *type)
{
	int best_rank = 0, best_q = 0;

	accept_scan(v, len, type, &best_rank, &best_q);
	return best_q;
}

int
httpmsg_accept_fields_q(const struct http_header *h, size_t n, const char *type)
{
	int best_rank = 0, best_q = 0;
	bool any = false;

	for (size_t i = 0; i < n; i++) {
		if (httpmsg_name_eq(h[i].name, h[i].name_len, "Accept")) {
			any = true;
			accept_scan(h[i].value, h[i].value_len, type, &best_rank, &best_q);
		}
	}
	return any ? best_q : -1;
}

bool
httpmsg_bearer_ok(const char *v, size_t len, const char *token, size_t token_len)
{
	size_t start = 7, end = len;
	unsigned char diff = 0;

	if (len < 7 || strncasecmp(v, "Bearer ", 7) != 0 || token_len == 0) {
		return false;
	}
	while (start < end && v[start] == ' ') {
		start++;
	}
	while (end > start && is_ows(v[end - 1])) {
		end--;
	}
	if (end - start != token_len) { // cppcheck-suppress knownConditionTrueFalse
		return false;
	}
	/* Every byte is compared, whatever the first difference. */
	for (size_t k = 0; k < token_len; k++) {
		diff |= (unsigned char)(v[start + k] ^ token[k]);
	}
	return diff == 0;
}

/* Whether host (no brackets, no port) is a loopback name or address. */
static bool
host_is_loopback(const char *h, size_t n)
{
	static const char sfx[] = ".localhost";
	const size_t sfx_len = sizeof(sfx) - 1;

	if (httpmsg_name_eq(h, n, "localhost") || httpmsg_name_eq(h, n, "::1")) {
		return true;
	}
	if (n > sfx_len && httpmsg_name_eq(h + n - sfx_len, sfx_len, sfx)) {
		return true;
	}
	/* 127.a.b.c, each part a decimal 0..255. */
	int parts = 0, val = -1;

	if (n < 4 || memcmp(h, "127.", 4) != 0) {
		return false;
	}
	for (size_t i = 0; i <= n; i++) {
		if (i == n || h[i] == '.') {
			if (val < 0 || val > 255) {
				return false;
			}
			parts++;
			val = -1;
		} else if (h[i] >= '0' && h[i] <= '9') {
			val = (val < 0 ? 0 : val * 10) + (h[i] - '0');
			if (val > 255) {
				return false;
			}
		} else {
			return false;
		}
	}
	return parts == 4;
}

/*
 * Whether v is a loopback host, with an optional ":port" after it: "localhost:8080",
 * "127.0.0.1", "[::1]:80".  With origin, v may also end in one "/".
 */
static bool
authority_is_loopback(const char *h, const char *end, bool origin)
{
	const char *hend;

	if (h < end && *h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (rb == NULL || !host_is_loopback(h + 1, (size_t)(rb - h - 1))) {
			return false;
		}
		hend = rb + 1;
	} else {
		hend = h;
		while (hend < end && *hend != ':' && *hend != '/') {
			hend++;
		}
		if (!host_is_loopback(h, (size_t)(hend - h))) {
			return false;
		}
	}
	if (hend < end && *hend == ':') {
		const char *d = ++hend;

		while (hend < end && *hend >= '0' && *hend <= '9') {
			hend++;
		}
		unsigned long port = 0;

		for (const char *q = d; q < hend && port <= 65535; q++) {
			port = port * 10 + (unsigned long)(*q - '0');
		}
		if (hend == d || hend - d > 5 || port > 65535) {
			return false;
		}
	}
	return hend == end || (origin && hend + 1 == end && *hend == '/');
}

bool
httpmsg_host_is_loopback(const char *v, size_t len)
{
	return authority_is_loopback(v, v + len, false);
}

bool
httpmsg_origin_is_loopback(const char *v, size_t len)
{
	size_t skip = scheme_len(v, len);

	/* (A scheme with nothing after it: an empty host, which is not loopback.) */
	return skip > 0 && authority_is_loopback(v + skip, v + len, true);
}

bool
httpmsg_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len)
{
	if (sa->sa_family == AF_UNIX) {
		return true;
	}
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		const unsigned char *a = in6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
			return true;
		}
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && a[12] == 127;
	}
	return false;
}

static bool
parse_port(const char *p, char out[6])
{
	size_t n = strlen(p);
	long v = 0;

	if (n == 0 || n > 5) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9') {
			return false;
		}
		v = v * 10 + (p[i] - '0');
	}
	if (v > 65535) {
		return false;
	}
	memcpy(out, p, n + 1);
	return true;
}

int
httpmsg_parse_addr(const char *spec, struct httpmsg_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (strchr(spec, '/') != NULL) {
		if (strlen(spec) >= sizeof(out->path)) {
			goto bad;
		}
		out->is_path = true;
		memcpy(out->path, spec, strlen(spec) + 1);
		return 0;
	}
	const char *colon = strrchr(spec, ':');

	if (colon == NULL) {
		memcpy(out->host, "127.0.0.1", sizeof("127.0.0.1"));
		return parse_port(spec, out->port) ? 0 : (errno = EINVAL, -1);
	}
	const char *h = spec;
	size_t hlen = (size_t)(colon - spec);

	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	} else if (memchr(h, ':', hlen) != NULL || memchr(h, '[', hlen) != NULL) {
		goto bad; /* an IPv6 address needs its brackets */
	}
	if (hlen == 0 || hlen >= sizeof(out->host) || !parse_port(colon + 1, out->port)) {
		goto bad;
	}
	memcpy(out->host, h, hlen);
	out->host[hlen] = '\0';
	return 0;
bad:
	memset(out, 0, sizeof(*out));
	errno = EINVAL;
	return -1;
}
