/*
 * metrics: a latency histogram and the Prometheus text format.
 */
#include <math.h>
#include <stdio.h>

#include "mcpmux/metrics.h"

const double metrics_bounds[METRICS_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60,
};

struct metrics_hist metrics_latency;

void
metrics_hist_observe(struct metrics_hist *h, double seconds)
{
	size_t i = 0;

	if (!(seconds >= 0)) {
		seconds = 0; /* a clock that went wrong, or NaN: counted, as the fastest */
	}
	while (i < METRICS_BUCKETS && seconds > metrics_bounds[i]) {
		i++;
	}
	if (i < METRICS_BUCKETS) {
		h->bucket[i]++;
	}
	h->count++;
	h->sum += seconds;
}

void
metrics_head(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
metrics_u64(struct sbuf *b, const char *name, const char *labels, uint64_t v)
{
	if (labels != NULL) {
		sbuf_addf(b, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
	} else {
		sbuf_addf(b, "%s %llu\n", name, (unsigned long long)v);
	}
}

/* A sample value as the format writes it (Go's ParseFloat reads it back exactly). */
static void
fmt_num(char *num, size_t len, double v)
{
	if (isnan(v)) {
		(void)snprintf(num, len, "NaN");
	} else if (isinf(v)) {
		(void)snprintf(num, len, v > 0 ? "+Inf" : "-Inf");
	} else {
		(void)snprintf(num, len, "%.17g", v);
	}
}

void
metrics_f64(struct sbuf *b, const char *name, const char *labels, double v)
{
	char num[40];

	fmt_num(num, sizeof(num), v);
	if (labels != NULL) {
		sbuf_addf(b, "%s{%s} %s\n", name, labels, num);
	} else {
		sbuf_addf(b, "%s %s\n", name, num);
	}
}

void
metrics_hist_write(struct sbuf *b, const char *name, const char *help, const struct metrics_hist *h)
{
	uint64_t cum = 0;

	metrics_head(b, name, "histogram", help);
	for (size_t i = 0; i < METRICS_BUCKETS; i++) {
		cum += h->bucket[i];
		sbuf_addf(b, "%s_bucket{le=\"%g\"} %llu\n", name, metrics_bounds[i],
			  (unsigned long long)cum);
	}
	sbuf_addf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
	char num[40];

	fmt_num(num, sizeof(num), h->sum);
	sbuf_addf(b, "%s_sum %s\n", name, num);
	sbuf_addf(b, "%s_count %llu\n", name, (unsigned long long)h->count);
}
