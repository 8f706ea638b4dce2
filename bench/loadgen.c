/*
 * loadgen: drives any stdio MCP command (a server, or a proxy in front of one) and
 * measures it.  The command must answer like bench/echo_server.
 *
 *   loadgen rtt|throughput|oneway [OPTIONS] -- COMMAND [ARG...]
 *
 * Every run starts with an initialize round trip and notifications/initialized (not
 * measured), then:
 *
 *   rtt         one request at a time, each carrying --size bytes of payload; latency
 *               percentiles (p50/p90/p99) of the round trips after the warm-up;
 *   throughput  requests pipelined with --window of them outstanding; the server's
 *               responses carry the payload: messages/s and MiB/s of response lines;
 *   oneway      notifications of --size bytes (whole line) as fast as the pipe takes
 *               them; a final bench/count request returns how many the server saw, and
 *               the run fails unless that is every one sent: messages/s.
 *
 * Options:
 *   --size BYTES      payload (rtt: of each request; oneway: of each line; throughput:
 *                     only reported, the server's --payload sizes the responses)  [1024]
 *   --duration S      measured time  [1]           --warmup S   time before it  [0.2]
 *   --window N        throughput: requests outstanding  [16]
 *   --envelope ID     speak mcpmux serve's envelopes, as session ID
 *   --sync-every B    oneway: also wait for bench/count after every B bytes sent
 *   --idle-rss MS     after the traffic, wait MS and report the command's RssAnon
 *
 * Prints one JSON line; throughput and oneway runs include cpu_ms, the CPU time (user and
 * system) the command itself used during the measured part, and user_ms, its user part.
 * Exit status 0 only when the run was verified.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define PROG	  "loadgen"
#define STALL_NS  30000000000ull
#define BLOCK_MAX ((size_t)64 << 10)

enum mode { RTT, THROUGHPUT, ONEWAY };

static struct {
	enum mode mode;
	size_t size;
	double duration, warmup;
	unsigned window;
	const char *envelope;
	int idle_rss_ms;
	size_t sync_every;
} opt = { RTT, 1024, 1.0, 0.2, 16, NULL, -1, 0 };

static int to_fd = -1, from_fd = -1;
static pid_t child;
static bool child_eof;

/* Output: copied bytes first, then one external buffer (a template, a block). */
static char *q;
static size_t q_off, q_len, q_cap;
static const char *ext;
static size_t ext_len;

static char *in;
static size_t in_len, in_cap, in_scanned;

static uint64_t last_progress;

/* Per-mode state. */
static uint64_t next_id = 1;   /* next request id to send */
static uint64_t expect_id = 1; /* next response id expected */
static uint64_t got_init, got_count, count_value;
static uint64_t n_resp, resp_bytes;
static uint64_t t_sent;
static uint64_t *lat;
static size_t n_lat, lat_cap;
static bool stop_sending;
static uint64_t t_warm_end, t_end;
static uint64_t base_resp, base_bytes, t_base, stop_resp, stop_bytes, t_stop;
static bool have_base, have_stop;
static double cpu_base, cpu_stop, user_base, user_stop;

static char *tmpl; /* rtt: the request, with a fixed-width id */
static size_t tmpl_len, tmpl_id_off;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (child > 0) {
		(void)kill(child, SIGKILL);
		(void)waitpid(child, NULL, 0);
	}
	exit(1);
}

static void
q_add(const char *p, size_t len)
{
	if (len == 0) {
		return;
	}
	if (q_off + q_len + len > q_cap) {
		if (q_len > 0) {
			memmove(q, q + q_off, q_len);
		}
		q_off = 0;
		while (q_len + len > q_cap) {
			q_cap = q_cap ? q_cap * 2 : (size_t)1 << 16;
		}
		q = realloc(q, q_cap);
		if (q == NULL) {
			fail("out of memory");
		}
	}
	memcpy(q + q_off + q_len, p, len);
	q_len += len;
}

/* Length of the envelope prefix written by wrap_open() (0 without envelopes). */
static size_t
wrap_open(char *dst)
{
	if (opt.envelope == NULL) {
		return 0;
	}
	return (size_t)sprintf(dst, "{\"session\":\"%s\",\"message\":", opt.envelope);
}

/* A message (no newline) for the command, in an envelope when asked. */
static void
send_msg(const char *msg, size_t len)
{
	char pre[200] = "";
	size_t pl = wrap_open(pre);

	q_add(pre, pl);
	q_add(msg, len);
	q_add(opt.envelope ? "}\n" : "\n", opt.envelope ? 2 : 1);
}

/* Write what is pending, as far as the pipe takes it. */
static void
flush_out(void)
{
	while (q_len > 0 || ext_len > 0) {
		const char *p = q_len > 0 ? q + q_off : ext;
		size_t len = q_len > 0 ? q_len : ext_len;
		ssize_t w = write(to_fd, p, len);

		if (w == -1) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN) {
				return;
			}
			fail("cannot write to the command: %s", strerror(errno));
		}
		if (q_len > 0) {
			q_off += (size_t)w;
			q_len -= (size_t)w;
			if (q_len == 0) {
				q_off = 0;
			}
		} else {
			ext += w;
			ext_len -= (size_t)w;
		}
		last_progress = bench_now_ns();
	}
}

static bool
pending_out(void)
{
	return q_len > 0 || ext_len > 0;
}

/*
 * CPU time (user + system, all threads) the command has used so far, in ms; *user_ms
 * gets the user part.
 */
static double
child_cpu_ms(double *user_ms)
{
	char path[64], buf[1024];
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	(void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
	f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';

	/* Fields 14 and 15, counted after the command name in parentheses (field 2). */
	const char *p = strrchr(buf, ')');

	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
		return -1;
	}
	*user_ms = (double)ut * 1000. / (double)sysconf(_SC_CLK_TCK);
	return (double)(ut + st) * 1000. / (double)sysconf(_SC_CLK_TCK);
}

/* ---- requests ---- */

static void
send_rtt_request(void)
{
	char digits[16];

	(void)snprintf(digits, sizeof(digits), "%010llu", (unsigned long long)next_id++);
	memcpy(tmpl + tmpl_id_off, digits, 10);
	ext = tmpl;
	ext_len = tmpl_len;
	t_sent = bench_now_ns();
	flush_out();
}

static void
send_small_request(const char *method)
{
	char msg[160];
	int n = snprintf(msg, sizeof(msg), "{\"jsonrpc\":\"2.0\",\"id\":%llu,\"method\":\"%s\"}",
			 (unsigned long long)next_id++, method);

	send_msg(msg, (size_t)n);
}

static void
build_rtt_template(void)
{
	static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":\"";
	static const char mid[] = "\",\"method\":\"bench/echo\",\"params\":{\"pad\":\"";
	static const char tail[] = "\"}}";
	char pre[200] = "";
	size_t pl = wrap_open(pre), el = opt.envelope ? 2 : 1;

	tmpl_len = pl + strlen(head) + 10 + strlen(mid) + opt.size + strlen(tail) + el;
	tmpl = malloc(tmpl_len);
	if (tmpl == NULL) {
		fail("out of memory");
	}
	char *p = tmpl;

	memcpy(p, pre, pl);
	p += pl;
	memcpy(p, head, strlen(head));
	p += strlen(head);
	tmpl_id_off = (size_t)(p - tmpl);
	memset(p, '0', 10);
	p += 10;
	memcpy(p, mid, strlen(mid));
	p += strlen(mid);
	memset(p, 'x', opt.size);
	p += opt.size;
	memcpy(p, tail, strlen(tail));
	p += strlen(tail);
	memcpy(p, opt.envelope ? "}\n" : "\n", el);
}

/* oneway: a block of identical notifications, each --size bytes without an envelope. */
static char *block;
static size_t block_len, block_msgs;
static uint64_t n_sent_notes;

static void
build_block(void)
{
	static const char head[] =
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/bench\",\"params\":{\"pad\":\"";
	static const char tail[] = "\"}}\n";
	size_t fixed = strlen(head) + strlen(tail);
	char pre[200] = "";
	size_t pl = wrap_open(pre), el = opt.envelope ? 1 : 0;

	if (opt.size < fixed) {
		opt.size = fixed;
	}
	size_t one = pl + opt.size + el;

	block_msgs = one >= BLOCK_MAX ? 1 : BLOCK_MAX / one;
	block_len = one * block_msgs;
	block = malloc(block_len);
	if (block == NULL) {
		fail("out of memory");
	}
	for (size_t k = 0; k < block_msgs; k++) {
		char *p = block + k * one;

		memcpy(p, pre, pl);
		p += pl;
		memcpy(p, head, strlen(head));
		p += strlen(head);
		memset(p, 'x', opt.size - fixed);
		p += opt.size - fixed;
		/* The envelope closes before the newline. */
		memcpy(p, "\"}}", 3);
		p += 3;
		if (el) {
			*p++ = '}';
		}
		*p = '\n';
	}
}

/* ---- responses ---- */

/* The numeric value of the id ("id":N or "id":"000N"); false without one. */
static bool
parse_id(const char *p, size_t len, uint64_t *id)
{
	const char *s = memmem(p, len, "\"id\":", 5), *end = p + len;
	uint64_t v = 0;
	bool any = false;

	if (s == NULL) {
		return false;
	}
	s += 5;
	while (s < end && (*s == ' ' || *s == '"')) {
		s++;
	}
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		any = true;
	}
	*id = v;
	return any;
}

static uint64_t count_id;

static void
on_response(uint64_t id, size_t len, uint64_t now)
{
	if (id != expect_id) {
		fail("response out of order: id %llu, expected %llu", (unsigned long long)id,
		     (unsigned long long)expect_id);
	}
	expect_id++;
	if (opt.mode == RTT) {
		if (t_sent >= t_warm_end) {
			if (n_lat == lat_cap) {
				lat_cap = lat_cap ? lat_cap * 2 : 4096;
				lat = realloc(lat, lat_cap * sizeof(*lat));
				if (lat == NULL) {
					fail("out of memory");
				}
			}
			lat[n_lat++] = now - t_sent;
		}
		if (now >= t_end) {
			stop_sending = true;
		} else {
			send_rtt_request();
		}
		return;
	}
	/* THROUGHPUT */
	n_resp++;
	resp_bytes += len + 1;
	if (!have_base && now >= t_warm_end) {
		have_base = true;
		base_resp = n_resp;
		base_bytes = resp_bytes;
		t_base = now;
		cpu_base = child_cpu_ms(&user_base);
	} else if (have_base && !have_stop && now >= t_end) {
		have_stop = true;
		stop_resp = n_resp;
		stop_bytes = resp_bytes;
		t_stop = now;
		cpu_stop = child_cpu_ms(&user_stop);
		stop_sending = true;
	}
	if (!stop_sending) {
		send_small_request("bench/echo");
	}
}

static void
on_line(const char *p, size_t len, uint64_t now)
{
	size_t head = len < 256 ? len : 256;
	uint64_t id;

	if (p == NULL) {
		return;
	}
	if (opt.envelope != NULL) {
		if (len < 11 || memcmp(p, "{\"session\":", 11) != 0) {
			fail("unexpected line from mcpmux: %.*s", (int)head, p);
		}
		if (memmem(p, head, "\"message\":", 10) == NULL) {
			return; /* an event: started, kept */
		}
	}
	if (memmem(p, head, "\"error\":", 8) != NULL) {
		fail("error response: %.*s", (int)head, p);
	}
	if (!parse_id(p, len, &id)) {
		return; /* a notification from the server */
	}
	if (id == 0) {
		got_init++;
	} else if (id == count_id) {
		const char *c = memmem(p, len, "\"count\":", 8);

		count_value = c != NULL ? strtoull(c + 8, NULL, 10) : 0;
		got_count++;
		expect_id = id + 1;
	} else {
		on_response(id, len, now);
	}
}

/*
 * oneway: the sender makes more as soon as the pipe takes what it had, so a step that
 * just wrote everything must not then sleep waiting only for input.
 */
static bool producing;

/* One poll: write what is pending, read once, handle the complete lines. */
static void
io_step(int timeout_ms)
{
	struct pollfd p[2];
	nfds_t np = 0;

	flush_out();
	if (producing && !pending_out()) {
		timeout_ms = 0; /* the pipe took it all: the caller has more to send */
	}
	if (!child_eof) {
		p[np++] = (struct pollfd){ .fd = from_fd, .events = POLLIN };
	}
	if (pending_out()) {
		p[np++] = (struct pollfd){ .fd = to_fd, .events = POLLOUT };
	}
	if (np == 0) {
		return;
	}
	int n = poll(p, np, timeout_ms);

	if (n <= 0) {
		if (bench_now_ns() - last_progress > STALL_NS) {
			fail("no progress for 30 s");
		}
		return;
	}
	if (np == 2 && p[1].revents != 0) {
		flush_out();
	}
	if (child_eof || p[0].revents == 0) {
		return;
	}
	if (in_cap - in_len < BLOCK_MAX) {
		in_cap = in_cap ? in_cap * 2 : (size_t)4 << 20;
		in = realloc(in, in_cap);
		if (in == NULL) {
			fail("out of memory");
		}
	}
	ssize_t r = read(from_fd, in + in_len, in_cap - in_len);

	if (r == 0) {
		child_eof = true;
		return;
	}
	if (r < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			fail("cannot read from the command: %s", strerror(errno));
		}
		return;
	}
	uint64_t now = bench_now_ns();

	last_progress = now;
	in_len += (size_t)r;

	size_t start = 0;
	const char *nl;

	while ((nl = memchr(in + in_scanned, '\n', in_len - in_scanned)) != NULL) {
		size_t end = (size_t)(nl - in);

		if (end > start) {
			on_line(in + start, end - start, now);
		}
		start = end + 1;
		in_scanned = start;
	}
	in_scanned = in_len;
	if (start > 0) {
		memmove(in, in + start, in_len - start);
		in_len -= start;
		in_scanned -= start;
	}
}

static void
run_until(const uint64_t *counter, uint64_t want)
{
	while (*counter < want) {
		if (child_eof) {
			fail("the command closed its stdout");
		}
		io_step(100);
	}
}

static void oneway_sync(void);

/*
 * oneway: send blocks of notifications for `secs`, then sync with bench/count; with
 * --sync-every, also sync after every that many bytes.
 */
static void
oneway_phase(double secs)
{
	uint64_t deadline = bench_now_ns() + (uint64_t)(secs * 1e9);
	size_t since_sync = 0;

	producing = true;

	while (bench_now_ns() < deadline) {
		if (!pending_out()) {
			if (opt.sync_every > 0 && since_sync >= opt.sync_every) {
				oneway_sync();
				since_sync = 0;
			}
			ext = block;
			ext_len = block_len;
			n_sent_notes += block_msgs;
			since_sync += block_len;
			flush_out();
			continue;
		}
		io_step(100);
	}
	producing = false;
	oneway_sync();
}

/* Wait until the server has counted every notification sent so far. */
static void
oneway_sync(void)
{
	bool was_producing = producing;

	producing = false;
	while (pending_out()) {
		io_step(100);
	}
	uint64_t want = got_count + 1;

	count_id = next_id;
	send_small_request("bench/count");
	run_until(&got_count, want);
	/* The server also counted notifications/initialized. */
	if (count_value != n_sent_notes + 1) {
		fail("notifications lost: the server saw %llu of %llu",
		     (unsigned long long)count_value - 1, (unsigned long long)n_sent_notes);
	}
	producing = was_producing;
}

static void
usage(void)
{
	fprintf(stderr,
		"usage: " PROG " rtt|throughput|oneway [--size BYTES] [--duration S] "
		"[--warmup S] [--window N] [--envelope ID] [--sync-every BYTES] [--idle-rss MS] "
		"-- COMMAND "
		"[ARG...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const char init_req[] =
		"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{"
		"\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":"
		"\"mcpmux-bench\",\"version\":\"1\"}}}";
	static const char initialized[] =
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
	int i;
	long rss = -1;

	if (argc < 2) {
		usage();
	}
	if (strcmp(argv[1], "rtt") == 0) {
		opt.mode = RTT;
	} else if (strcmp(argv[1], "throughput") == 0) {
		opt.mode = THROUGHPUT;
	} else if (strcmp(argv[1], "oneway") == 0) {
		opt.mode = ONEWAY;
	} else {
		usage();
	}
	for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL) {
			usage();
		}
		if (strcmp(a, "--size") == 0) {
			opt.size = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--duration") == 0) {
			opt.duration = atof(v);
		} else if (strcmp(a, "--warmup") == 0) {
			opt.warmup = atof(v);
		} else if (strcmp(a, "--window") == 0) {
			opt.window = (unsigned)atoi(v);
		} else if (strcmp(a, "--envelope") == 0) {
			opt.envelope = v;
		} else if (strcmp(a, "--sync-every") == 0) {
			opt.sync_every = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--idle-rss") == 0) {
			opt.idle_rss_ms = atoi(v);
		} else {
			usage();
		}
	}
	if (i + 1 >= argc || opt.window == 0) {
		usage();
	}
	(void)signal(SIGPIPE, SIG_IGN);
	child = bench_spawn(argv + i + 1, &to_fd, &from_fd);
	if (child == -1) {
		fail("cannot start the command: %s", strerror(errno));
	}
	bench_set_nonblock(to_fd, 1);
	bench_set_nonblock(from_fd, 1);
	last_progress = bench_now_ns();

	send_msg(init_req, sizeof(init_req) - 1);
	run_until(&got_init, 1);
	send_msg(initialized, sizeof(initialized) - 1);

	uint64_t t0 = bench_now_ns(), t1, sent0 = 0;

	t_warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
	t_end = t_warm_end + (uint64_t)(opt.duration * 1e9);
	expect_id = next_id;
	switch (opt.mode) {
	case RTT:
		build_rtt_template();
		send_rtt_request();
		while (!stop_sending) {
			if (child_eof) {
				fail("the command closed its stdout");
			}
			io_step(100);
		}
		break;
	case THROUGHPUT:
		for (unsigned k = 0; k < opt.window; k++) {
			send_small_request("bench/echo");
		}
		while (!stop_sending || expect_id < next_id) {
			if (child_eof) {
				fail("the command closed its stdout");
			}
			io_step(100);
		}
		break;
	case ONEWAY:
		build_block();
		oneway_phase(opt.warmup);
		sent0 = n_sent_notes;
		t0 = bench_now_ns();
		cpu_base = child_cpu_ms(&user_base);
		oneway_phase(opt.duration);
		cpu_stop = child_cpu_ms(&user_stop);
		break;
	}
	t1 = bench_now_ns();

	if (opt.idle_rss_ms >= 0) {
		uint64_t until = bench_now_ns() + (uint64_t)opt.idle_rss_ms * 1000000u;

		while (bench_now_ns() < until) {
			io_step(10);
		}
		rss = bench_proc_kib(child, "status", "RssAnon:");
	}

	/* EOF to the command; drain what it still says; reap it. */
	flush_out();
	close(to_fd);
	to_fd = -1;
	q_len = ext_len = 0;
	while (!child_eof) {
		last_progress = bench_now_ns();
		io_step(1000);
	}
	int code = bench_wait(child);

	printf("{\"mode\":\"%s\",\"size\":%zu", argv[1], opt.size);
	switch (opt.mode) {
	case RTT: {
		double sum = 0;

		if (n_lat == 0) {
			fail("no round trip measured");
		}
		qsort(lat, n_lat, sizeof(*lat), bench_cmp_u64);
		for (size_t k = 0; k < n_lat; k++) {
			sum += (double)lat[k];
		}
#define PCT(q) ((double)lat[(size_t)((q) * (double)(n_lat - 1) + 0.5)] / 1e3)
		printf(",\"n\":%zu,\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"min_us\":%.2f,"
		       "\"max_us\":%.2f,\"mean_us\":%.2f",
		       n_lat, PCT(0.50), PCT(0.90), PCT(0.99), (double)lat[0] / 1e3,
		       (double)lat[n_lat - 1] / 1e3, sum / (double)n_lat / 1e3);
#undef PCT
		break;
	}
	case THROUGHPUT: {
		if (!have_stop) {
			fail("the run ended before its measured part");
		}
		double secs = (double)(t_stop - t_base) / 1e9;
		double msgs = (double)(stop_resp - base_resp),
		       bytes = (double)(stop_bytes - base_bytes);

		printf(",\"window\":%u,\"n\":%.0f,\"secs\":%.4f,\"msgs_per_s\":%.1f,"
		       "\"mib_per_s\":%.2f,\"line_bytes\":%.0f",
		       opt.window, msgs, secs, msgs / secs, bytes / secs / 1048576., bytes / msgs);
		break;
	}
	case ONEWAY: {
		double secs = (double)(t1 - t0) / 1e9, msgs = (double)(n_sent_notes - sent0);

		printf(",\"n\":%.0f,\"secs\":%.4f,\"msgs_per_s\":%.1f,\"mib_per_s\":%.2f,"
		       "\"verified\":true",
		       msgs, secs, msgs / secs, msgs * (double)opt.size / secs / 1048576.);
		break;
	}
	}
	if (opt.mode != RTT && cpu_base >= 0 && cpu_stop >= 0) {
		printf(",\"cpu_ms\":%.0f,\"user_ms\":%.0f", cpu_stop - cpu_base,
		       user_stop - user_base);
	}
	if (rss >= 0) {
		printf(",\"rss_anon_kib\":%ld", rss);
	}
	printf(",\"exit\":%d}\n", code);
	free(q);
	free(in);
	free(lat);
	free(tmpl);
	free(block);
	return code == 0 ? 0 : 1;
}
