/*
 * Unit tests for metrics: which bucket an observation lands in, and the Prometheus text
 * format as written (heads, labels, cumulative buckets, +Inf, _sum and _count).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four headers above */

#include <math.h>
#include <string.h>

#include "mcpmux/metrics.h"

static void
test_buckets(void **state)
{
	struct metrics_hist h = { 0 };

	(void)state;
	metrics_hist_observe(&h, 0);
	metrics_hist_observe(&h, metrics_bounds[0]); /* a bound is inside its bucket */
	metrics_hist_observe(&h, 0.003);
	metrics_hist_observe(&h, 1e9);
	metrics_hist_observe(&h, -1);
	metrics_hist_observe(&h, NAN);
	assert_int_equal(h.count, 6);
	assert_int_equal(h.bucket[0], 4);
	assert_int_equal(h.bucket[3], 1); /* (0.0025, 0.005] */
	uint64_t in_buckets = 0;

	for (size_t i = 0; i < METRICS_BUCKETS; i++) {
		in_buckets += h.bucket[i];
	}
	assert_int_equal(in_buckets, 5); /* 1e9 is only in +Inf */
	assert_true(h.sum > 1e9 - 1 && h.sum < 1e9 + 1);
}

static void
test_text(void **state)
{
	struct sbuf b = { 0 };
	struct metrics_hist h = { 0 };

	(void)state;
	metrics_head(&b, "mcpmux_x_total", "counter", "Things.");
	metrics_u64(&b, "mcpmux_x_total", "dir=\"in\"", 42);
	metrics_u64(&b, "mcpmux_y", NULL, 0);
	metrics_f64(&b, "mcpmux_z", NULL, 0.25);
	metrics_f64(&b, "mcpmux_z", "a=\"b\"", INFINITY);
	assert_false(b.failed);
	assert_string_equal(b.buf, "# HELP mcpmux_x_total Things.\n"
				   "# TYPE mcpmux_x_total counter\n"
				   "mcpmux_x_total{dir=\"in\"} 42\n"
				   "mcpmux_y 0\n"
				   "mcpmux_z 0.25\n"
				   "mcpmux_z{a=\"b\"} +Inf\n");
	sbuf_release(&b);

	metrics_hist_observe(&h, 0.0001);
	metrics_hist_observe(&h, 0.02);
	metrics_hist_observe(&h, 100);
	metrics_hist_write(&b, "mcpmux_d_seconds", "Durations.", &h);
	assert_false(b.failed);
	sbuf_add(&b, "", 1);
	assert_non_null(strstr(b.buf, "# TYPE mcpmux_d_seconds histogram\n"));
	assert_non_null(strstr(b.buf, "mcpmux_d_seconds_bucket{le=\"0.0005\"} 1\n"));
	assert_non_null(strstr(b.buf, "mcpmux_d_seconds_bucket{le=\"0.025\"} 2\n"));
	assert_non_null(strstr(b.buf, "mcpmux_d_seconds_bucket{le=\"60\"} 2\n"));
	assert_non_null(strstr(b.buf, "mcpmux_d_seconds_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(b.buf, "mcpmux_d_seconds_count 3\n"));
	assert_non_null(strstr(b.buf, "mcpmux_d_seconds_sum 100.0201"));
	sbuf_release(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_text),
	};

	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
