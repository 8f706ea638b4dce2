/*
 * metrics: what `serve --metrics` exposes on /metrics, in the Prometheus text exposition
 * format (version 0.0.4): a histogram type for latencies, the one histogram the sessions
 * feed (client requests answered by their server), and the writers of the format's lines.
 * Pure: formats into an sbuf, does no I/O.  Which figures are exposed is the front end's
 * choice (front_http.c); their counters live where they are counted (the hub, the HTTP
 * layer).
 */
#ifndef MCPMUX_METRICS_H
#define MCPMUX_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "mcpmux/rpcout.h"

#define METRICS_BUCKETS 14

/* Upper bounds of the buckets, in seconds (the last bucket, +Inf, is implied). */
extern const double metrics_bounds[METRICS_BUCKETS];

struct metrics_hist {
	uint64_t count;
	double sum;			  /* seconds */
	uint64_t bucket[METRICS_BUCKETS]; /* observations <= bound i and > bound i-1 */
};

void metrics_hist_observe(struct metrics_hist *h, double seconds);

/*
 * The time from a client's request to its server's response, every session of the
 * process (session.c observes it; wrap mode too, where nothing reads it).
 */
extern struct metrics_hist metrics_latency;

/* "# HELP name help\n# TYPE name type\n" */
void metrics_head(struct sbuf *b, const char *name, const char *type, const char *help);
/* "name{labels} value\n"; labels is NULL or the text inside the braces. */
void metrics_u64(struct sbuf *b, const char *name, const char *labels, uint64_t v);
void metrics_f64(struct sbuf *b, const char *name, const char *labels, double v);
/* A whole histogram, head included: _bucket (cumulative, le=...), _sum and _count. */
void metrics_hist_write(struct sbuf *b, const char *name, const char *help,
			const struct metrics_hist *h);

#endif
