/* test_metrics.c: the metrics module (src/metrics): registry, exposition
 * formats and escaping, content negotiation, the Gorilla bit streams and
 * chunks, tiers and downsampling, the memory budget, the history file,
 * query functions and expressions; plus the gzip adapter it uses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat/gzip.h"
#include "core/hist.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "metrics/metrics_internal.h"
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define assert_contains(hay, needle)                                                          \
	do {                                                                                  \
		if (!strstr((hay), (needle)))                                                 \
			fail_msg("expected to find\n%s\nin\n%s", (needle), (hay));            \
	} while (0)

static const struct metrics_tier tiers3[] = {{1000, 3600000}, {10000, 86400000}, {300000, 2592000000LL}};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ------------------------------------------------------------- registry */

static void test_registry__refuses_bad_names_labels_and_duplicates(void **state)
{
	struct metrics_registry *reg = metrics_registry_new();
	const char *l1[] = {"app"}, *dup[] = {"app", "app"}, *le[] = {"le"}, *res[] = {"__x"};
	double b[] = {0.1, 1}, bad[] = {1, 0.5};
	assert_non_null(metrics_family_add(reg, "a_total", "h", METRICS_COUNTER, l1, 1, NULL, 0, false));
	assert_null(metrics_family_add(reg, "a_total", "h", METRICS_COUNTER, l1, 1, NULL, 0, false));
	assert_null(metrics_family_add(reg, "b", "counter without _total", METRICS_COUNTER, NULL, 0, NULL, 0, false));
	assert_null(metrics_family_add(reg, "c_total", "gauge with _total", METRICS_GAUGE, NULL, 0, NULL, 0, false));
	assert_null(metrics_family_add(reg, "9d", "h", METRICS_GAUGE, NULL, 0, NULL, 0, false));
	assert_null(metrics_family_add(reg, "e-f", "h", METRICS_GAUGE, NULL, 0, NULL, 0, false));
	assert_null(metrics_family_add(reg, "g", "h", METRICS_GAUGE, dup, 2, NULL, 0, false));
	assert_null(metrics_family_add(reg, "g", "h", METRICS_GAUGE, le, 1, NULL, 0, false));
	assert_null(metrics_family_add(reg, "g", "h", METRICS_GAUGE, res, 1, NULL, 0, false));
	assert_null(metrics_family_add(reg, "h", "h", METRICS_HISTOGRAM, NULL, 0, bad, 2, false));
	assert_null(metrics_family_add(reg, "h", "h", METRICS_HISTOGRAM, NULL, 0, NULL, 0, false));
	assert_non_null(metrics_family_add(reg, "h", "h", METRICS_HISTOGRAM, NULL, 0, b, 2, false));
	assert_non_null(metrics_family_add(reg, "ns:g", "colons are allowed", METRICS_GAUGE, NULL, 0, NULL, 0, false));
	metrics_registry_free(reg);
}

static void test_registry__finds_series_again_and_sweeps_stale_ones(void **state)
{
	struct metrics_registry *reg = metrics_registry_new();
	const char *l[] = {"app", "instance"};
	struct metrics_family *f = metrics_family_add(reg, "g", "h", METRICS_GAUGE, l, 2, NULL, 0, true);
	struct metrics_family *keep = metrics_family_add(reg, "k", "h", METRICS_GAUGE, NULL, 0, NULL, 0, false);
	const char *v1[] = {"shop", "shop.web.1"}, *v2[] = {"shop", "shop.web.2"};
	/* "ab"+"c" and "a"+"bc" must be different series. */
	const char *v3[] = {"ab", "c"}, *v4[] = {"a", "bc"};
	struct metrics_series *a = metrics_series_get(f, v1);
	assert_ptr_equal(a, metrics_series_get(f, v1));
	assert_ptr_not_equal(a, metrics_series_get(f, v2));
	assert_ptr_not_equal(metrics_series_get(f, v3), metrics_series_get(f, v4));
	const char *none[] = {NULL};
	metrics_set(metrics_series_get(keep, none), 7);
	assert_int_equal(metrics_registry_series(reg), 5);
	metrics_set(a, 1);
	metrics_set(metrics_series_get(f, v2), 2);
	metrics_set(metrics_series_get(f, v3), 3);
	metrics_set(metrics_series_get(f, v4), 4);
	metrics_registry_sweep(reg); /* everything was set */
	assert_int_equal(metrics_registry_series(reg), 5);
	metrics_set(metrics_series_get(f, v2), 5);
	metrics_registry_sweep(reg); /* only v2 of the expiring family was set */
	assert_int_equal(metrics_registry_series(reg), 2);
	struct metrics_series *b = metrics_series_get(f, v2);
	assert_true(metrics_value(b) == 5);
	assert_true(metrics_value(metrics_series_get(keep, none)) == 7);
	metrics_registry_free(reg);
}

/* ----------------------------------------------------------- exposition */

static void test_exposition__text_escapes_labels_and_help(void **state)
{
	struct metrics_registry *reg = metrics_registry_new();
	const char *l[] = {"app", "path"};
	struct metrics_family *f = metrics_family_add(reg, "x_requests_total",
						      "Requests \\ with \"quotes\"\nand lines.",
						      METRICS_COUNTER, l, 2, NULL, 0, false);
	const char *v[] = {"a\"b", "c\\d\ne"};
	metrics_set(metrics_series_get(f, v), 3);
	struct metrics_family *g = metrics_family_add(reg, "x_temp", "", METRICS_GAUGE, NULL, 0, NULL, 0, false);
	const char *none[] = {NULL};
	metrics_set(metrics_series_get(g, none), -0.25);
	metrics_family_add(reg, "x_empty", "no series: not shown", METRICS_GAUGE, NULL, 0, NULL, 0, false);
	struct strbuf out;
	strbuf_init(&out, 0);
	metrics_expose(reg, METRICS_TEXT_004, NULL, NULL, &out);
	assert_string_equal(out.buf,
			    "# HELP x_requests_total Requests \\\\ with \"quotes\"\\nand lines.\n"
			    "# TYPE x_requests_total counter\n"
			    "x_requests_total{app=\"a\\\"b\",path=\"c\\\\d\\ne\"} 3\n"
			    "# HELP x_temp \n"
			    "# TYPE x_temp gauge\n"
			    "x_temp -0.25\n");
	strbuf_reset(&out);
	metrics_expose(reg, METRICS_OPENMETRICS, NULL, NULL, &out);
	assert_string_equal(out.buf,
			    "# HELP x_requests Requests \\\\ with \\\"quotes\\\"\\nand lines.\n"
			    "# TYPE x_requests counter\n"
			    "x_requests_total{app=\"a\\\"b\",path=\"c\\\\d\\ne\"} 3\n"
			    "# HELP x_temp \n"
			    "# TYPE x_temp gauge\n"
			    "x_temp -0.25\n"
			    "# EOF\n");
	strbuf_release(&out);
	metrics_registry_free(reg);
}

static bool only_shop(void *ctx, const char *app)
{
	return app && !strcmp(app, "shop");
}

static void test_exposition__histograms_are_cumulative_and_filters_apply(void **state)
{
	struct metrics_registry *reg = metrics_registry_new();
	const char *l[] = {"app"};
	double b[] = {0.1, 1};
	struct metrics_family *f = metrics_family_add(reg, "d_seconds", "d", METRICS_HISTOGRAM, l, 1, b, 2, false);
	const char *shop[] = {"shop"}, *blog[] = {"blog"};
	struct metrics_series *s = metrics_series_get(f, shop);
	metrics_observe(s, 0.05);
	metrics_observe(s, 0.1); /* upper bounds are inclusive */
	metrics_observe(s, 0.5);
	metrics_observe(s, 7);
	uint64_t counts[] = {1, 0, 0};
	metrics_histogram_set(metrics_series_get(f, blog), counts, 0.01);
	struct strbuf out;
	strbuf_init(&out, 0);
	metrics_expose(reg, METRICS_TEXT_004, only_shop, NULL, &out);
	assert_string_equal(out.buf, "# HELP d_seconds d\n"
				     "# TYPE d_seconds histogram\n"
				     "d_seconds_bucket{app=\"shop\",le=\"0.1\"} 2\n"
				     "d_seconds_bucket{app=\"shop\",le=\"1\"} 3\n"
				     "d_seconds_bucket{app=\"shop\",le=\"+Inf\"} 4\n"
				     "d_seconds_sum{app=\"shop\"} 7.65\n"
				     "d_seconds_count{app=\"shop\"} 4\n");
	strbuf_reset(&out);
	metrics_expose(reg, METRICS_OPENMETRICS, NULL, NULL, &out);
	assert_contains(out.buf, "d_seconds_bucket{app=\"shop\",le=\"1.0\"} 3\n");
	assert_contains(out.buf, "d_seconds_bucket{app=\"blog\",le=\"+Inf\"} 1\n");
	strbuf_release(&out);
	metrics_registry_free(reg);
}

static void test_exposition__numbers_round_trip(void **state)
{
	const double v[] = {0, 1, -1, 42, 1e15, 0.1, 1.0 / 3, 123456789.125, 1e-300, -2.5e20};
	for (size_t k = 0; k < ARRAY_SIZE(v); k++) {
		struct strbuf sb;
		strbuf_init(&sb, 0);
		mx_format_double(&sb, v[k]);
		if (strtod(sb.buf, NULL) != v[k])
			fail_msg("%.17g printed as %s", v[k], sb.buf);
		strbuf_release(&sb);
	}
	struct strbuf sb;
	strbuf_init(&sb, 0);
	mx_format_double(&sb, 12);
	mx_format_double(&sb, INFINITY);
	mx_format_double(&sb, -INFINITY);
	mx_format_double(&sb, NAN);
	mx_format_double(&sb, 0.1);
	assert_string_equal(sb.buf, "12+Inf-InfNaN0.1");
	strbuf_release(&sb);
}

static void test_exposition__negotiation(void **state)
{
	assert_int_equal(metrics_negotiate(NULL), METRICS_TEXT_004);
	assert_int_equal(metrics_negotiate("*/*"), METRICS_TEXT_004);
	assert_int_equal(metrics_negotiate("text/plain"), METRICS_TEXT_004);
	assert_int_equal(metrics_negotiate("application/openmetrics-text"), METRICS_OPENMETRICS);
	/* What Prometheus 2.x sends. */
	assert_int_equal(metrics_negotiate("application/openmetrics-text;version=1.0.0,application/"
					   "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;"
					   "q=0.5,*/*;q=0.1"),
			 METRICS_OPENMETRICS);
	assert_int_equal(metrics_negotiate("text/plain;q=1, application/openmetrics-text;q=0.5"),
			 METRICS_TEXT_004);
	assert_int_equal(metrics_negotiate("application/openmetrics-text;q=0"), METRICS_TEXT_004);
	assert_string_equal(metrics_content_type(METRICS_TEXT_004), "text/plain; version=0.0.4; charset=utf-8");
}

/* ---------------------------------------------------------- bit streams */

static void test_tsdb__bits_round_trip(void **state)
{
	uint8_t buf[4096];
	uint32_t nbits = 0;
	int widths[300];
	uint64_t vals[300];
	for (int k = 0; k < 300; k++) {
		widths[k] = 1 + (int)(rnd() % 64);
		vals[k] = rnd() & (widths[k] == 64 ? ~0ULL : (1ULL << widths[k]) - 1);
		mx_bits_write(buf, &nbits, vals[k], widths[k]);
	}
	uint32_t pos = 0;
	for (int k = 0; k < 300; k++) {
		uint64_t v;
		assert_true(mx_bits_read(buf, nbits, &pos, widths[k], &v));
		assert_true(v == vals[k]);
	}
	uint64_t v;
	assert_int_equal(pos, nbits);
	assert_false(mx_bits_read(buf, nbits, &pos, 1, &v));
}

#define TEST_POINTS 120

static uint64_t bits_of(double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof(u));
	return u;
}

/* Encodes then decodes; every value must come back bit for bit. */
static void round_trip(const int64_t *ts, const double *vs, uint32_t n)
{
	struct mx_chunk c = {0};
	uint8_t *data = xcalloc(1, MX_POINT_MAX_BYTES * (n + 1));
	for (uint32_t k = 0; k < n; k++)
		mx_chunk_append(&c, data, ts[k], vs[k]);
	int64_t *ot = xcalloc(n + 1, sizeof(*ot));
	double *ov = xcalloc(n + 1, sizeof(*ov));
	assert_int_equal(mx_chunk_decode(&c, data, ot, ov), n);
	for (uint32_t k = 0; k < n; k++) {
		if (ot[k] != ts[k])
			fail_msg("point %u: time %lld decoded as %lld", k, (long long)ts[k], (long long)ot[k]);
		if (bits_of(ov[k]) != bits_of(vs[k]))
			fail_msg("point %u: %.17g decoded as %.17g", k, vs[k], ov[k]);
	}
	free(ot);
	free(ov);
	free(data);
}

static void test_tsdb__gorilla_round_trip_special_values_and_irregular_times(void **state)
{
	int64_t ts[TEST_POINTS];
	double vs[TEST_POINTS];
	/* Special values, each repeated and mixed. */
	const double special[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1e-310, DBL_MAX, -1.5, 3.25};
	int64_t t = 1700000000000;
	uint32_t n = 0;
	for (int r = 0; r < 3; r++)
		for (size_t k = 0; k < ARRAY_SIZE(special); k++) {
			ts[n] = t;
			vs[n++] = special[k];
			t += 1000;
		}
	round_trip(ts, vs, n);
	/* Irregular: every delta-of-delta class, negative ones, huge gaps. */
	const int64_t deltas[] = {1000, 1000, 999, 1003, 1, 9000, 1, 70000, 1, 600000, 1,
				  86400000LL * 40, 1, 1000, 5, 8191, 8192, 65535, 65536, 524287, 524288};
	t = 1;
	n = 0;
	double v = 0;
	for (size_t k = 0; k < ARRAY_SIZE(deltas); k++) {
		ts[n] = t;
		vs[n++] = v;
		t += deltas[k];
		v += (double)(rnd() % 1000) / 7.0;
	}
	round_trip(ts, vs, n);
	/* Random walks and random bits, 120 points each. */
	for (int trial = 0; trial < 200; trial++) {
		t = (int64_t)(rnd() % 1000000000000ULL);
		for (n = 0; n < TEST_POINTS; n++) {
			ts[n] = t;
			t += 1 + (int64_t)(rnd() % (trial % 2 ? 3000 : 100000));
			uint64_t b = rnd();
			double d;
			memcpy(&d, &b, sizeof(d));
			vs[n] = trial % 3 == 0 ? d : trial % 3 == 1 ? (double)(rnd() % 100) : (double)n * 0.1;
		}
		round_trip(ts, vs, n);
	}
}

/* Values that are short decimals are stored as the difference of their
 * scaled integers, and come back bit for bit, however close a neighbour
 * that is not such a decimal is; a counter in hundredths growing by a
 * random amount a second costs about 2.5 bytes a point. */
static void test_tsdb__decimal_values_round_trip_bit_for_bit_and_cost_less(void **state)
{
	enum { N = 3000 };
	static int64_t ts[N];
	static double vs[N];
	double cpu = 1234.56, bytes = 1e9, load = 1.5;
	for (int k = 0; k < N; k++) {
		ts[k] = 1700000000000 + (int64_t)k * 1000;
		switch (k % 8) {
		case 0:
			cpu = (double)(llround(cpu * 100) + (int64_t)(rnd() % 150)) / 100;
			vs[k] = cpu;
			break;
		case 1:
			bytes += (double)(rnd() % 5000);
			vs[k] = bytes;
			break;
		case 2:
			load = (double)llabs(llround(load * 100) + (int64_t)(rnd() % 7) - 3) / 100;
			vs[k] = -load;
			break;
		case 3: /* next to a decimal, but not one */
			vs[k] = nextafter(cpu, INFINITY);
			break;
		case 4:
			vs[k] = (double)(rnd() % 1000000) / 1e6;
			break;
		case 5:
			vs[k] = k % 3 ? -0.0 : 0.0;
			break;
		case 6:
			vs[k] = k % 5 ? 4503599627370496.0 + (double)(rnd() % 4) : NAN;
			break;
		default:
			vs[k] = (double)(rnd() % 100) / 7;
			break;
		}
	}
	round_trip(ts, vs, N);
	/* A counter in hundredths alone. */
	struct mx_chunk c = {0};
	uint8_t *data = xcalloc(1, MX_POINT_MAX_BYTES * (N + 1));
	cpu = 50000;
	for (int k = 0; k < N; k++) {
		cpu = (double)(llround(cpu * 100) + (int64_t)(rnd() % 150)) / 100;
		ts[k] = 1700000000000 + (int64_t)k * 1000;
		vs[k] = cpu;
		mx_chunk_append(&c, data, ts[k], cpu);
	}
	print_message("a counter in hundredths: %.2f bytes a point\n", c.nbits / 8.0 / N);
	assert_true(c.nbits / 8 < N * 5 / 2);
	round_trip(ts, vs, N);
	free(data);
}

/* A chunk of format 2, values as XOR only ('10' reuses the window, '11'
 * sets a new one), still reads: written here bit by bit. */
static void test_tsdb__format_2_chunks_still_read(void **state)
{
	uint8_t data[64] = {0};
	uint32_t nbits = 0;
	uint64_t a = bits_of(1.5), b = bits_of(2.25), c = bits_of(2.75);
	mx_bits_write(data, &nbits, a, 64);
	/* second point: dod 1000 as '10' + 14 bits, value XOR with a new window */
	mx_bits_write(data, &nbits, 0x2, 2);
	mx_bits_write(data, &nbits, 1000, 14);
	uint64_t x = a ^ b;
	int lead = __builtin_clzll(x), trail = __builtin_ctzll(x), sig = 64 - lead - trail;
	mx_bits_write(data, &nbits, 0x3, 2);
	mx_bits_write(data, &nbits, (uint64_t)lead, 5);
	mx_bits_write(data, &nbits, (uint64_t)sig, 6);
	mx_bits_write(data, &nbits, x >> trail, sig);
	/* third point: dod 0, value XOR in the same window */
	x = b ^ c;
	assert_true(__builtin_clzll(x) >= lead && __builtin_ctzll(x) >= trail);
	mx_bits_write(data, &nbits, 0, 1);
	mx_bits_write(data, &nbits, 0x2, 2);
	mx_bits_write(data, &nbits, x >> trail, sig);
	struct mx_chunk_it it;
	mx_chunk_it_init(&it, data, nbits, 3, 1000, MX_FMT_V2);
	const double want[] = {1.5, 2.25, 2.75};
	int64_t t;
	double v;
	for (int k = 0; k < 3; k++) {
		assert_true(mx_chunk_it_next(&it, &t, &v));
		assert_true(t == 1000 + 1000 * k);
		assert_true(bits_of(v) == bits_of(want[k]));
	}
	assert_false(mx_chunk_it_next(&it, &t, &v));
}

static void test_tsdb__regular_series_take_about_two_bytes_per_point(void **state)
{
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 1, 64 << 20);
	const char *ln[] = {"app"}, *lv[] = {"shop"};
	struct mx_tseries *s = mx_tsdb_series(db, "g", ln, lv, 1, false);
	size_t before = db->used;
	for (int k = 0; k < 3600; k++)
		assert_int_equal(mx_tsdb_append(db, s, 1700000000000 + k * 1000 + (k % 7 == 0 ? 3 : 0), (double)(k % 50)), 0);
	size_t per_point = (db->used - before) / 3600;
	if (per_point > 4)
		fail_msg("%zu bytes per point", per_point);
	/* Appending an older or equal timestamp is refused. */
	assert_int_equal(mx_tsdb_append(db, s, 1700000000000, 1), -EINVAL);
	mx_tsdb_free(db);
}

static void test_tsdb__downsampling_averages_gauges_and_keeps_counters_last(void **state)
{
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, 64 << 20);
	struct mx_tseries *g = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
	struct mx_tseries *c = mx_tsdb_series(db, "c_total", NULL, NULL, 0, true);
	int64_t t0 = 1700000100000; /* a multiple of 10 s and of 5 min */
	for (int k = 0; k < 30; k++) {
		mx_tsdb_append(db, g, t0 + k * 1000, k);
		mx_tsdb_append(db, c, t0 + k * 1000, 100 + k);
	}
	struct metrics_point *p = NULL;
	size_t n = 0, alloc = 0;
	mx_tsdb_read(db, g, 1, 0, INT64_MAX, &p, &n, &alloc);
	assert_int_equal(n, 3); /* two flushed buckets and the open one */
	assert_true(p[0].t_ms == t0 && p[0].v == 4.5);
	assert_true(p[1].t_ms == t0 + 10000 && p[1].v == 14.5);
	assert_true(p[2].t_ms == t0 + 20000 && p[2].v == 24.5);
	n = 0;
	mx_tsdb_read(db, c, 1, 0, INT64_MAX, &p, &n, &alloc);
	assert_int_equal(n, 3);
	assert_true(p[0].v == 109 && p[1].v == 119 && p[2].v == 129);
	n = 0;
	mx_tsdb_read(db, g, 2, 0, INT64_MAX, &p, &n, &alloc);
	assert_int_equal(n, 1);
	assert_true(p[0].t_ms == t0 && p[0].v == 14.5);
	n = 0;
	mx_tsdb_read(db, g, 0, t0 + 5000, t0 + 7000, &p, &n, &alloc);
	assert_int_equal(n, 3);
	assert_true(p[0].v == 5 && p[2].v == 7);
	free(p);
	mx_tsdb_free(db);
}

static void test_tsdb__retention_drops_old_chunks_then_the_series(void **state)
{
	struct metrics_tier t[] = {{1000, 600000}};
	struct mx_tsdb *db = mx_tsdb_new(t, 1, 64 << 20);
	struct mx_tseries *s = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
	int64_t t0 = 1700000000000;
	for (int k = 0; k < 1200; k++)
		mx_tsdb_append(db, s, t0 + k * 1000, k);
	size_t full = db->used;
	mx_tsdb_gc(db, t0 + 1200 * 1000);
	assert_true(db->used < full);
	struct metrics_point *p = NULL;
	size_t n = 0, alloc = 0;
	mx_tsdb_read(db, s, 0, 0, INT64_MAX, &p, &n, &alloc);
	/* Whole chunks go: at most one chunk span (1/4 of retention) more stays. */
	assert_true(n >= 600 && n <= 600 + 600 / MX_CHUNK_SPANS);
	assert_true(p[0].t_ms >= t0 + 1200 * 1000 - 600000 - 600000 / MX_CHUNK_SPANS);
	free(p);
	mx_tsdb_gc(db, t0 + 1000 * 1000000LL);
	assert_int_equal(db->n, 0);
	assert_int_equal(db->used, 0);
	mx_tsdb_free(db);
}

/* The history begins at its first sample, not at the start of the coarser
 * bucket it fell in; once the raw samples of that bucket are gone, the
 * bucket's start is the best left. */
static void test_tsdb__oldest_is_the_first_sample_until_only_its_bucket_is_left(void **state)
{
	struct metrics_tier t[] = {{1000, 600000}, {10000, 86400000}};
	struct mx_tsdb *db = mx_tsdb_new(t, 2, 64 << 20);
	assert_true(mx_tsdb_oldest(db) == 0);
	struct mx_tseries *s = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
	int64_t t0 = 1700000000000; /* a multiple of 10 s */
	for (int k = 0; k < 1200; k++)
		mx_tsdb_append(db, s, t0 + 3500 + k * 1000, k);
	assert_true(mx_tsdb_oldest(db) == t0 + 3500);
	mx_tsdb_gc(db, t0 + 1200 * 1000);
	struct metrics_point *p = NULL;
	size_t n = 0, alloc = 0;
	mx_tsdb_read(db, s, 0, 0, INT64_MAX, &p, &n, &alloc);
	assert_true(n > 0 && p[0].t_ms > t0 + 10000);
	assert_true(mx_tsdb_oldest(db) == t0);
	free(p);
	mx_tsdb_free(db);
}

/* A chunk's head holds its span in 32 bits of ms: with a retention long
 * enough for chunks of 250 days, one closes before it spans 49 days, and
 * the history file keeps the points. */
static void test_tsdb__chunks_close_before_their_span_outgrows_the_head(void **state)
{
	struct metrics_tier t[] = {{1000, 1000 * 86400000LL}};
	struct mx_tsdb *db = mx_tsdb_new(t, 1, 64 << 20);
	struct mx_tseries *s = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
	int64_t t0 = 1700000000000, day = 86400000;
	const int64_t at[] = {t0, t0 + 30 * day, t0 + 60 * day, t0 + 61 * day, t0 + 200 * day};
	for (size_t k = 0; k < ARRAY_SIZE(at); k++)
		assert_int_equal(mx_tsdb_append(db, s, at[k], (double)k), 0);
	struct strbuf img;
	strbuf_init(&img, 0);
	mx_tsdb_save(db, &img);
	struct mx_tsdb *back = mx_tsdb_new(t, 1, 64 << 20);
	char *err = NULL;
	assert_int_equal(mx_tsdb_load(back, img.buf, img.len, &err), 0);
	for (int pass = 0; pass < 2; pass++) {
		struct mx_tsdb *d = pass ? back : db;
		struct metrics_point *p = NULL;
		size_t n = 0, alloc = 0;
		mx_tsdb_read(d, d->all[0], 0, 0, INT64_MAX, &p, &n, &alloc);
		assert_int_equal(n, ARRAY_SIZE(at));
		for (size_t k = 0; k < n; k++) {
			assert_true(p[k].t_ms == at[k]);
			assert_true(p[k].v == (double)k);
		}
		free(p);
	}
	strbuf_release(&img);
	mx_tsdb_free(back);
	mx_tsdb_free(db);
}

static void test_tsdb__series_share_their_strings_until_the_last_goes(void **state)
{
	struct metrics_tier t[] = {{1000, 600000}};
	struct mx_tsdb *db = mx_tsdb_new(t, 1, 64 << 20);
	const char *ln[] = {"app", "instance"};
	char i1[] = "shop.web.1", i2[] = "shop.web.2";
	const char *lv1[] = {"shop", i1}, *lv2[] = {"shop", i2};
	struct mx_tseries *a = mx_tsdb_series(db, "m_bytes", ln, lv1, 2, false);
	struct mx_tseries *b = mx_tsdb_series(db, "m_bytes", ln, lv2, 2, false);
	struct mx_tseries *c = mx_tsdb_series(db, "n_total", ln, lv1, 2, true);
	assert_ptr_not_equal(a, b);
	assert_ptr_not_equal(a, c);
	/* Found again by equal strings at other addresses. */
	char copy[] = "shop.web.1";
	const char *lv1b[] = {"shop", copy};
	assert_ptr_equal(mx_tsdb_series(db, "m_bytes", ln, lv1b, 2, false), a);
	/* One copy of each string. */
	assert_ptr_equal(a->name, b->name);
	assert_ptr_equal(mx_tseries_lvalues(a)[0], mx_tseries_lvalues(b)[0]);
	assert_ptr_equal(mx_tseries_lvalues(a)[1], mx_tseries_lvalues(c)[1]);
	assert_ptr_not_equal(mx_tseries_lvalues(a)[1], mx_tseries_lvalues(b)[1]);
	assert_int_equal(db->strs.n, 7); /* m_bytes n_total app instance shop shop.web.1 .2 */
	int64_t t0 = 1700000000000;
	mx_tsdb_append(db, a, t0, 1);
	mx_tsdb_append(db, b, t0 + 5000000, 1);
	mx_tsdb_append(db, c, t0 + 5000000, 1);
	/* a expires: its instance's string stays for c, m_bytes for b. */
	mx_tsdb_gc(db, t0 + 1000000);
	assert_int_equal(db->n, 2);
	assert_non_null(mx_tsdb_str(db, "shop.web.1"));
	assert_non_null(mx_tsdb_str(db, "m_bytes"));
	mx_tsdb_gc(db, t0 + 100000000);
	assert_int_equal(db->n, 0);
	assert_null(mx_tsdb_str(db, "shop"));
	assert_int_equal(db->strs.n, 0);
	assert_int_equal(db->used, 0);
	assert_int_equal(db->reserved, 0);
	mx_tsdb_free(db);
}

static void test_tsdb__memory_budget_holds_with_50000_series(void **state)
{
	const size_t budget = 16 << 20;
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, budget);
	struct mx_tseries **all = xcalloc(50000, sizeof(*all));
	size_t made = 0;
	char inst[64];
	const char *ln[] = {"app", "instance"};
	for (int k = 0; k < 50000; k++) {
		snprintf(inst, sizeof(inst), "app%d.web.%d", k / 100, k % 100);
		const char *lv[] = {"app", inst};
		all[k] = mx_tsdb_series(db, "paasops_instance_resident_memory_bytes", ln, lv, 2, false);
		made += all[k] != NULL;
		assert_true(db->used <= budget);
	}
	assert_true(made > 1000);
	assert_int_equal(db->dropped_series, 50000 - made);
	/* Ten minutes of samples for every series that was taken in. */
	for (int s = 0; s < 600; s++)
		for (int k = 0; k < 50000; k++) {
			if (!all[k])
				continue;
			mx_tsdb_append(db, all[k], 1700000000000 + s * 1000, (double)(rnd() % 1000000));
			if (db->used > budget)
				fail_msg("used %zu > budget %zu", db->used, budget);
		}
	/* Admitted series never lose a sample; old chunks made room instead. */
	assert_int_equal(db->dropped_samples, 0);
	assert_true(db->evicted_chunks > 0);
	assert_true(db->reserved <= budget);
	/* The accounting adds up: the series, and the strings they share. */
	size_t sum = db->strs.bytes;
	for (size_t k = 0; k < db->n; k++)
		sum += db->all[k]->bytes;
	assert_int_equal(sum, db->used);
	/* Each series still has its newest samples. */
	struct metrics_point *p = NULL;
	size_t n = 0, alloc = 0;
	mx_tsdb_read(db, db->all[0], 0, 0, INT64_MAX, &p, &n, &alloc);
	if (!(n > 0 && p[n - 1].t_ms == 1700000000000 + 599 * 1000))
		fail_msg("n=%zu last=%lld dropped=%llu evicted=%llu", n, n ? (long long)p[n - 1].t_ms : 0LL,
			 (unsigned long long)db->dropped_samples, (unsigned long long)db->evicted_chunks);
	free(p);
	free(all);
	mx_tsdb_free(db);
}

static void test_tsdb__history_file_round_trip_and_damage_detected(void **state)
{
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, 64 << 20);
	const char *ln[] = {"app", "code"}, *lv[] = {"sh\"op", "2xx"};
	struct mx_tseries *s = mx_tsdb_series(db, "r_total", ln, lv, 2, true);
	struct mx_tseries *g = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
	int64_t t0 = 1700000000000;
	for (int k = 0; k < 500; k++) {
		mx_tsdb_append(db, s, t0 + k * 1000, k * 3);
		mx_tsdb_append(db, g, t0 + k * 1000, k % 2 ? NAN : 1.5);
	}
	struct strbuf img;
	strbuf_init(&img, 0);
	mx_tsdb_save(db, &img);
	struct mx_tsdb *back = mx_tsdb_new(tiers3, 3, 64 << 20);
	char *err = NULL;
	assert_int_equal(mx_tsdb_load(back, img.buf, img.len, &err), 0);
	assert_int_equal(back->n, 2);
	struct mx_tseries *s2 = mx_tsdb_series(back, "r_total", ln, lv, 2, true);
	for (size_t tier = 0; tier < 3; tier++) {
		struct metrics_point *a = NULL, *b = NULL;
		size_t na = 0, nb = 0, aa = 0, ab = 0;
		mx_tsdb_read(db, s, tier, 0, INT64_MAX, &a, &na, &aa);
		mx_tsdb_read(back, s2, tier, 0, INT64_MAX, &b, &nb, &ab);
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, na * sizeof(*a));
		free(a);
		free(b);
	}
	/* New samples continue after the loaded ones. */
	assert_int_equal(mx_tsdb_append(back, s2, t0 + 499 * 1000, 1), -EINVAL);
	assert_int_equal(mx_tsdb_append(back, s2, t0 + 600 * 1000, 2000), 0);
	mx_tsdb_free(back);
	/* One flipped byte is refused as a whole. */
	img.buf[img.len / 2] ^= 0x40;
	back = mx_tsdb_new(tiers3, 3, 64 << 20);
	assert_int_equal(mx_tsdb_load(back, img.buf, img.len, &err), -EINVAL);
	assert_non_null(strstr(err, "checksum"));
	free(err);
	mx_tsdb_free(back);
	strbuf_release(&img);
	mx_tsdb_free(db);
}


/* Every point back, bit for bit, with the reads over [from, to] equal to
 * filtering all points (so skipping over runs skips exactly). */
static void check_series(struct mx_tsdb *db, struct mx_tseries *s, const int64_t *ts,
			 const double *vs, size_t n)
{
	struct metrics_point *p = NULL;
	size_t got = 0, alloc = 0;
	mx_tsdb_read(db, s, 0, 0, INT64_MAX, &p, &got, &alloc);
	assert_int_equal(got, n);
	for (size_t k = 0; k < n; k++)
		if (p[k].t_ms != ts[k] || bits_of(p[k].v) != bits_of(vs[k]))
			fail_msg("point %zu: (%lld, %.17g) read as (%lld, %.17g)", k, (long long)ts[k],
				 vs[k], (long long)p[k].t_ms, p[k].v);
	for (int trial = 0; trial < 200; trial++) {
		size_t a = rnd() % n, b = a + rnd() % (n - a);
		int64_t from = ts[a] - (int64_t)(rnd() % 2), to = ts[b] + (int64_t)(rnd() % 2);
		got = 0;
		mx_tsdb_read(db, s, 0, from, to, &p, &got, &alloc);
		size_t want = 0;
		for (size_t k = 0; k < n; k++)
			if (ts[k] >= from && ts[k] <= to) {
				assert_true(want < got && p[want].t_ms == ts[k] &&
					    bits_of(p[want].v) == bits_of(vs[k]));
				want++;
			}
		assert_int_equal(got, want);
	}
	free(p);
}

static void test_tsdb__runs_of_repeated_and_steadily_growing_values_round_trip(void **state)
{
	enum { N = 200000 };
	int64_t *ts = xcalloc(N, sizeof(*ts));
	double *vs = xcalloc(N, sizeof(*vs));
	struct metrics_tier t[] = {{1000, 86400000LL * 365}};
	for (int kind = 0; kind < 4; kind++) {
		struct mx_tsdb *db = mx_tsdb_new(t, 1, 256 << 20);
		struct mx_tseries *s = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
		int64_t tt = 1700000000000;
		int64_t up = 1234;
		for (int k = 0; k < N; k++) {
			/* mostly regular, now and then a late sample or a gap */
			tt += rnd() % 5000 == 0 ? 1000 + (int64_t)(rnd() % 100000) : 1000;
			ts[k] = tt;
			switch (kind) {
			case 0: /* constant, changing now and then (more than a run holds) */
				vs[k] = k < 100000 ? 42 : (rnd() % 3000 == 0 ? (double)(rnd() % 5) : vs[k - 1]);
				break;
			case 1: /* an uptime in ms, as seconds: a decimal progression */
				up += rnd() % 1000 == 0 ? 1003 : 1000;
				vs[k] = (double)up / 1000.0;
				break;
			case 2: /* counters, negative steps, fractions, and special values */
				vs[k] = k % 7000 < 3000 ? -0.25 * k : k % 7000 < 5000 ? 1e15 - 3.0 * k
					: k % 7000 < 5001 ? NAN : k % 7000 < 5002 ? -0.0 : 0.1 * (double)(k % 10);
				break;
			default: /* random bits: nothing to run */
				vs[k] = (double)rnd() / 3.0;
				break;
			}
			assert_int_equal(mx_tsdb_append(db, s, ts[k], vs[k]), 0);
		}
		check_series(db, s, ts, vs, N);
		/* And once more after a save and a load. */
		struct strbuf img;
		strbuf_init(&img, 0);
		mx_tsdb_save(db, &img);
		struct mx_tsdb *back = mx_tsdb_new(t, 1, 256 << 20);
		char *err = NULL;
		assert_int_equal(mx_tsdb_load(back, img.buf, img.len, &err), 0);
		check_series(back, mx_tsdb_series(back, "g", NULL, NULL, 0, false), ts, vs, N);
		if (kind < 2 && db->used > 16384)
			fail_msg("kind %d: %zu bytes for %d points", kind, db->used, N);
		mx_tsdb_free(back);
		strbuf_release(&img);
		mx_tsdb_free(db);
	}
	free(ts);
	free(vs);
}

static void put_le(struct strbuf *b, uint64_t v, int bytes)
{
	for (int k = 0; k < bytes; k++) {
		char c = (char)(v >> (8 * k));
		strbuf_add(b, &c, 1);
	}
}

/* A history file written before run records existed (format 1, where
 * '1111' + 64 bits is a large delta-of-delta) still loads. */
static void test_tsdb__history_file_of_format_1_still_loads(void **state)
{
	uint8_t data[64] = {0};
	uint32_t nbits = 0;
	mx_bits_write(data, &nbits, bits_of(1.5), 64);
	mx_bits_write(data, &nbits, 0x2, 2); /* +1000 ms: dod 1000 */
	mx_bits_write(data, &nbits, 1000, 14);
	mx_bits_write(data, &nbits, 0, 1); /* same value */
	mx_bits_write(data, &nbits, 0xf, 4); /* + 1000 + 10^9 ms: dod 10^9 */
	mx_bits_write(data, &nbits, 1000000000, 64);
	mx_bits_write(data, &nbits, 0, 1);
	struct strbuf b;
	strbuf_init(&b, 0);
	strbuf_add(&b, "PSOTSDB1", 8);
	put_le(&b, 1, 4);
	put_le(&b, 1000, 8);
	put_le(&b, 3600000, 8);
	put_le(&b, 1, 8);
	put_le(&b, 1, 4);
	strbuf_add(&b, "g", 1);
	put_le(&b, 0, 4);
	put_le(&b, 0, 1);
	int64_t t0 = 1700000000000, t2 = t0 + 2000 + 1000000000;
	put_le(&b, (uint64_t)t2, 8);
	put_le(&b, 0, 8); /* no bucket: acc_t, acc_sum, acc_last, acc_n */
	put_le(&b, 0, 8);
	put_le(&b, 0, 8);
	put_le(&b, 0, 4);
	put_le(&b, 1, 4);
	put_le(&b, (uint64_t)t0, 8);
	put_le(&b, (uint64_t)t2, 8);
	put_le(&b, 3, 4);
	put_le(&b, nbits, 4);
	strbuf_add(&b, data, (nbits + 7) / 8);
	put_le(&b, gzip_crc32(0, b.buf, b.len), 4);
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 1, 64 << 20);
	char *err = NULL;
	if (mx_tsdb_load(db, b.buf, b.len, &err) != 0)
		fail_msg("%s", err);
	struct mx_tseries *s = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
	struct metrics_point *p = NULL;
	size_t n = 0, alloc = 0;
	mx_tsdb_read(db, s, 0, 0, INT64_MAX, &p, &n, &alloc);
	assert_int_equal(n, 3);
	assert_true(p[0].t_ms == t0 && p[1].t_ms == t0 + 1000 && p[2].t_ms == t2);
	assert_true(p[0].v == 1.5 && p[1].v == 1.5 && p[2].v == 1.5);
	/* New samples go on after them, and the next save is format 2. */
	assert_int_equal(mx_tsdb_append(db, s, t2 + 1000, 2.5), 0);
	strbuf_reset(&b);
	mx_tsdb_save(db, &b);
	assert_memory_equal(b.buf, "PSOTSDB2", 8);
	free(p);
	strbuf_release(&b);
	mx_tsdb_free(db);
}

/* What a series costs once the history is full: one hour of tier 0 and a
 * day of tier 1 (and of tier 2), for the kinds of series an idle instance
 * has. Prints bytes per series; the bound keeps 1,000 idle instances (8
 * series each) within about 7 MB. */
static void test_tsdb__a_day_of_idle_series_costs_a_few_hundred_bytes(void **state)
{
	enum { PER_KIND = 8, KINDS = 4 };
	static const char *const kinds[KINDS] = {"constant", "uptime", "rss steps", "cpu counter"};
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, 256 << 20);
	struct mx_tseries *s[KINDS][PER_KIND];
	double v[KINDS][PER_KIND];
	const char *ln[] = {"instance"};
	for (int k = 0; k < KINDS; k++)
		for (int j = 0; j < PER_KIND; j++) {
			char name[32], inst[32];
			snprintf(name, sizeof(name), "kind_%d", k);
			snprintf(inst, sizeof(inst), "idle.web.%d", j);
			const char *lv[] = {inst};
			s[k][j] = mx_tsdb_series(db, name, ln, lv, 1, k == 3);
			v[k][j] = k == 0 ? 1 : k == 1 ? 12.345 + j : k == 2 ? 1 << 20 : 0.002 + j / 1e4;
		}
	int64_t t0 = 1700000000000;
	const int secs = 86400 + 3600;
	for (int k = 0; k < secs; k++) {
		int64_t t = t0 + (int64_t)k * 1000;
		for (int a = 0; a < KINDS; a++)
			for (int j = 0; j < PER_KIND; j++) {
				if (a == 1)
					v[a][j] = (double)llround(v[a][j] * 1000 + 1000) / 1000.0;
				else if (a == 2 && rnd() % 600 == 0)
					v[a][j] += rnd() % 2 ? 4096 : -4096;
				else if (a == 3 && rnd() % 60 == 0)
					v[a][j] += 0.000123;
				mx_tsdb_append(db, s[a][j], t, v[a][j]);
			}
		if (k % 10 == 0)
			mx_tsdb_gc(db, t);
	}
	size_t worst = 0;
	for (int a = 0; a < KINDS; a++) {
		size_t bytes = 0;
		for (int j = 0; j < PER_KIND; j++)
			bytes += s[a][j]->bytes;
		bytes /= PER_KIND;
		print_message("history of one %s series after 1 h + 1 day: %zu bytes\n", kinds[a], bytes);
		if (a < 2 && bytes > worst)
			worst = bytes;
	}
	if (worst > 900)
		fail_msg("an idle series costs %zu bytes", worst);
	mx_tsdb_free(db);
}

/* The history of the bench's 1,000 idle instances after 1 h of tier 0 and a
 * day of tier 1: per instance 4 constant series, an uptime, a memory that
 * moves a page every ~10 minutes, a CPU counter that moves every ~30
 * minutes and its usage ratio; 1,000 "starting" state series that stopped after their
 * first seconds; 57 host and daemon series that change every second
 * (counters in hundredths, byte counts, two-decimal gauges, microsecond
 * timings). Prints the total, which is what the daemon's RSS gains; takes
 * about a minute, so it runs only with PAASOPS_TSDB_PROJECTION set (to a
 * number of instances from 10 to 999 for a quicker look at fewer). */
static void test_tsdb__projection_of_1000_idle_instances(void **state)
{
	const char *env = getenv("PAASOPS_TSDB_PROJECTION");
	if (!env)
		skip();
	enum { MAX_INST = 1000, PER = 8, BUSY = 57 };
	int n_inst = atoi(env); /* fewer instances for a quick look */
	const int INST = n_inst >= 10 && n_inst < MAX_INST ? n_inst : MAX_INST;
	static const char *const names[PER] = {"fds", "threads", "restarts", "state", "uptime",
					       "rss", "cpu_total", "cpu_ratio"};
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, 256 << 20);
	static struct mx_tseries *s[MAX_INST][PER], *starting[MAX_INST], *busy[BUSY];
	static double v[MAX_INST][PER], bv[BUSY];
	const char *ln[] = {"app", "process", "instance", "state"};
	for (int i = 0; i < INST; i++) {
		char app[32], inst[32];
		snprintf(app, sizeof(app), "app%d", i / 4);
		snprintf(inst, sizeof(inst), "app%d.web.%d", i / 4, i % 4);
		for (int k = 0; k < PER; k++) {
			const char *lv[] = {app, "web", inst, "ready"};
			s[i][k] = mx_tsdb_series(db, names[k], ln, lv, k == 3 ? 4 : 3,
						 k == 2 || k == 6);
			v[i][k] = k == 0 ? 12 : k == 1 ? 3 : k == 2 ? 0 : k == 3 ? 1
				: k == 4 ? 30.001 + i / 1000.0 : k == 5 ? 24 << 20 : k == 6 ? 0.02 + i / 1e4 : 0;
		}
		const char *lv[] = {app, "web", inst, "starting"};
		starting[i] = mx_tsdb_series(db, "state", ln, lv, 4, false);
	}
	for (int b = 0; b < BUSY; b++) {
		char name[32];
		snprintf(name, sizeof(name), "busy_%d", b);
		busy[b] = mx_tsdb_series(db, name, NULL, NULL, 0, b < 30);
		bv[b] = b < 20 ? 1000 + b : b < 35 ? 1e9 + b * 1e6 : b < 47 ? 1.5 : 0.001;
	}
	int64_t t0 = 1700000000000;
	const int secs = 86400 + 3600;
	for (int k = 0; k < secs; k++) {
		int64_t t = t0 + (int64_t)k * 1000;
		if (k < 5)
			for (int i = 0; i < INST; i++)
				mx_tsdb_append(db, starting[i], t, 1);
		for (int i = 0; i < INST; i++) {
			double *x = v[i];
			x[4] = (double)llround(x[4] * 1000 + 1000) / 1000.0;
			if (rnd() % 600 == 0)
				x[5] += rnd() % 2 ? 4096 : -4096;
			x[7] = 0;
			if (rnd() % 1800 == 0) {
				x[6] += 0.000123;
				x[7] = 0.000123;
			}
			for (int j = 0; j < PER; j++)
				mx_tsdb_append(db, s[i][j], t, x[j]);
		}
		for (int b = 0; b < BUSY; b++) {
			if (b < 20)
				bv[b] = (double)(llround(bv[b] * 100) + (int64_t)(rnd() % 150)) / 100;
			else if (b < 30)
				bv[b] += (double)(rnd() % 5000);
			else if (b < 35)
				bv[b] += (double)((int64_t)(rnd() % 64) - 32) * 4096;
			else if (b < 47)
				bv[b] = (double)llabs(llround(bv[b] * 100) + (int64_t)(rnd() % 7) - 3) / 100;
			else
				bv[b] = (double)(rnd() % 5000) / 1e6;
			mx_tsdb_append(db, busy[b], t, bv[b]);
		}
		if (k % 10 == 0)
			mx_tsdb_gc(db, t);
	}
	size_t idle = 0, stale = 0, hot = 0, kind[PER] = {0};
	for (int i = 0; i < INST; i++) {
		for (int j = 0; j < PER; j++)
			kind[j] += s[i][j]->bytes;
		stale += starting[i]->bytes;
	}
	for (int j = 0; j < PER; j++) {
		idle += kind[j];
		print_message("projection: %s series: %zu bytes each\n", names[j], kind[j] / INST);
	}
	for (int b = 0; b < BUSY; b++)
		hot += busy[b]->bytes;
	print_message("projection: %zu series, history %zu bytes (idle instances %zu, per-second "
		      "%zu, stale %zu, strings and the rest %zu)\n",
		      db->n, db->used, idle, hot, stale, db->used - idle - hot - stale);
	mx_tsdb_free(db);
}

/* --------------------------------------------------------------- queries */

static struct metrics_result run(struct mx_tsdb *db, struct metrics_query *q, int64_t now)
{
	struct metrics_result r;
	char *err = NULL;
	if (mx_query(db, q, now, &r, &err) != 0)
		fail_msg("query failed: %s", err);
	return r;
}

static void test_query__rate_handles_counter_resets(void **state)
{
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, 64 << 20);
	const char *ln[] = {"app"}, *lv[] = {"shop"};
	struct mx_tseries *s = mx_tsdb_series(db, "r_total", ln, lv, 1, true);
	int64_t t0 = 1700000000000;
	/* 10/s for 60 s, a restart just before 60 s (the counter starts over),
	 * then 10/s again. */
	for (int k = 0; k <= 120; k++)
		mx_tsdb_append(db, s, t0 + k * 1000, k < 60 ? 10.0 * k : 10.0 * (k - 59));
	struct metrics_query q = {.name = "r_total", .fn = METRICS_FN_RATE, .start_ms = t0 + 30000,
				  .end_ms = t0 + 120000, .step_ms = 30000, .window_ms = 20000};
	struct metrics_result r = run(db, &q, t0 + 121000);
	assert_int_equal(r.n_series, 1);
	assert_int_equal(r.series[0].n_points, 4);
	for (size_t k = 0; k < 4; k++)
		if (fabs(r.series[0].points[k].v - 10) > 1e-9)
			fail_msg("rate at step %zu = %g", k, r.series[0].points[k].v);
	assert_string_equal(r.series[0].names[0], "app");
	assert_string_equal(r.series[0].values[0], "shop");
	metrics_result_release(&r);
	mx_tsdb_free(db);
}

static void test_query__avg_min_max_sum_raw_and_by(void **state)
{
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, 64 << 20);
	const char *ln[] = {"app", "instance"};
	const char *a1[] = {"shop", "1"}, *a2[] = {"shop", "2"}, *b1[] = {"blog", "1"};
	struct mx_tseries *s1 = mx_tsdb_series(db, "m", ln, a1, 2, false);
	struct mx_tseries *s2 = mx_tsdb_series(db, "m", ln, a2, 2, false);
	struct mx_tseries *s3 = mx_tsdb_series(db, "m", ln, b1, 2, false);
	int64_t t0 = 1700000000000;
	for (int k = 0; k < 10; k++) {
		mx_tsdb_append(db, s1, t0 + k * 1000, k);      /* 0..9 */
		mx_tsdb_append(db, s2, t0 + k * 1000, 100);
		mx_tsdb_append(db, s3, t0 + k * 1000, -k);
	}
	struct metrics_matcher shop1[] = {{"app", "shop"}, {"instance", "1"}};
	struct metrics_query q = {.name = "m", .match = shop1, .n_match = 2, .start_ms = t0 + 9000,
				  .end_ms = t0 + 9000, .step_ms = 1000, .window_ms = 4000};
	static const struct {
		enum metrics_fn fn;
		double want;
	} cases[] = {{METRICS_FN_AVG, 7.5}, {METRICS_FN_MIN, 6}, {METRICS_FN_MAX, 9},
		     {METRICS_FN_SUM, 30}, {METRICS_FN_RAW, 9}};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		q.fn = cases[k].fn;
		struct metrics_result r = run(db, &q, t0 + 10000);
		assert_int_equal(r.n_series, 1);
		assert_int_equal(r.series[0].n_points, 1);
		if (r.series[0].points[0].v != cases[k].want)
			fail_msg("fn %d: %g, want %g", (int)cases[k].fn, r.series[0].points[0].v, cases[k].want);
		metrics_result_release(&r);
	}
	/* Raw over a range returns the stored points. */
	q.fn = METRICS_FN_RAW;
	q.start_ms = t0 + 2000;
	q.end_ms = t0 + 5000;
	struct metrics_result r = run(db, &q, t0 + 10000);
	assert_int_equal(r.series[0].n_points, 4);
	assert_true(r.series[0].points[0].v == 2 && r.series[0].points[3].v == 5);
	metrics_result_release(&r);
	/* Sum by app: shop = 9 + 100, blog = -9. */
	const char *by[] = {"app"};
	struct metrics_query qb = {.name = "m", .fn = METRICS_FN_RAW, .start_ms = t0 + 9000,
				   .end_ms = t0 + 9000, .step_ms = 1000, .aggregate = true,
				   .by = by, .n_by = 1};
	r = run(db, &qb, t0 + 10000);
	assert_int_equal(r.n_series, 2);
	assert_string_equal(r.series[0].values[0], "blog"); /* sorted */
	assert_true(r.series[0].points[0].v == -9);
	assert_true(r.series[1].points[0].v == 109);
	metrics_result_release(&r);
	/* by () sums everything. */
	qb.n_by = 0;
	r = run(db, &qb, t0 + 10000);
	assert_int_equal(r.n_series, 1);
	assert_int_equal(r.series[0].n_labels, 0);
	assert_true(r.series[0].points[0].v == 100);
	metrics_result_release(&r);
	/* Too many steps is an error, not a huge answer. */
	struct metrics_query big = {.name = "m", .fn = METRICS_FN_AVG, .start_ms = 0, .end_ms = t0, .step_ms = 1};
	char *err = NULL;
	assert_int_equal(mx_query(db, &big, t0, &r, &err), -EINVAL);
	free(err);
	mx_tsdb_free(db);
}

static void test_query__histogram_quantile_known_values(void **state)
{
	/* Prometheus' examples: linear interpolation within the bucket. */
	double bounds[] = {0.1, 0.25, 0.5, INFINITY};
	double cum[] = {50, 90, 100, 100};
	assert_true(fabs(hist_quantile(0.5, bounds, cum, 4) - 0.1) < 1e-12);
	assert_true(fabs(hist_quantile(0.95, bounds, cum, 4) - 0.375) < 1e-12);
	assert_true(fabs(hist_quantile(0.25, bounds, cum, 4) - 0.05) < 1e-12);
	double tail[] = {0, 0, 0, 10}; /* all in +Inf: the highest finite bound */
	assert_true(hist_quantile(0.5, bounds, tail, 4) == 0.5);
	double empty[] = {0, 0, 0, 0};
	assert_true(isnan(hist_quantile(0.5, bounds, empty, 4)));

	/* Through the store: 90 fast requests and 10 slow ones in one minute,
	 * on top of older traffic outside the window. */
	struct mx_tsdb *db = mx_tsdb_new(tiers3, 3, 64 << 20);
	const char *les[] = {"0.1", "0.25", "0.5", "+Inf"};
	const double before[] = {1000, 1000, 1000, 1000}, after[] = {1050, 1090, 1100, 1100};
	const char *ln[] = {"app", "le"};
	int64_t t0 = 1700000000000;
	for (int b = 0; b < 4; b++) {
		const char *lv[] = {"shop", les[b]};
		struct mx_tseries *s = mx_tsdb_series(db, "d_seconds_bucket", ln, lv, 2, true);
		for (int k = 0; k <= 120; k++)
			mx_tsdb_append(db, s, t0 + k * 1000, k < 60 ? before[b] : after[b]);
	}
	struct metrics_query q = {.name = "d_seconds", .fn = METRICS_FN_QUANTILE, .quantile = 0.95,
				  .start_ms = t0 + 90000, .end_ms = t0 + 90000, .step_ms = 1000,
				  .window_ms = 60000};
	struct metrics_result r = run(db, &q, t0 + 121000);
	assert_int_equal(r.n_series, 1);
	assert_int_equal(r.series[0].n_labels, 1); /* le is gone */
	assert_int_equal(r.series[0].n_points, 1);
	if (fabs(r.series[0].points[0].v - 0.375) > 1e-9)
		fail_msg("p95 = %g", r.series[0].points[0].v);
	metrics_result_release(&r);
	q.quantile = 0.5;
	r = run(db, &q, t0 + 121000);
	assert_true(fabs(r.series[0].points[0].v - 0.1) < 1e-9);
	metrics_result_release(&r);
	/* A histogram's name without a quantile says what to ask instead. */
	q.fn = METRICS_FN_RATE;
	char *err = NULL;
	assert_int_equal(mx_query(db, &q, t0, &r, &err), -EINVAL);
	assert_non_null(strstr(err, "histogram"));
	free(err);
	mx_tsdb_free(db);
}

static void test_query__old_ranges_come_from_coarser_tiers(void **state)
{
	struct metrics_tier t[] = {{1000, 60000}, {10000, 3600000}};
	struct mx_tsdb *db = mx_tsdb_new(t, 2, 64 << 20);
	struct mx_tseries *s = mx_tsdb_series(db, "g", NULL, NULL, 0, false);
	int64_t t0 = 1700000000000;
	for (int k = 0; k < 600; k++)
		mx_tsdb_append(db, s, t0 + k * 1000, k);
	mx_tsdb_gc(db, t0 + 600000);
	struct metrics_query q = {.name = "g", .fn = METRICS_FN_AVG, .start_ms = t0 + 100000,
				  .end_ms = t0 + 500000, .step_ms = 100000};
	struct metrics_result r = run(db, &q, t0 + 600000);
	assert_int_equal(r.res_ms, 10000);
	assert_int_equal(r.window_ms, 100000);
	assert_int_equal(r.series[0].n_points, 5);
	/* avg of the 10 s averages in (t-100 s, t]: buckets 10..90 s after t-100 s */
	assert_true(fabs(r.series[0].points[0].v - 59.5) < 1e-9);
	metrics_result_release(&r);
	q.start_ms = t0 + 590000;
	q.end_ms = t0 + 599000;
	q.step_ms = 1000;
	q.window_ms = 3000;
	r = run(db, &q, t0 + 600000);
	assert_int_equal(r.res_ms, 1000);
	metrics_result_release(&r);
	mx_tsdb_free(db);
}

static void test_query__expressions_parse(void **state)
{
	struct metrics_query q;
	char *buf = NULL, *err = NULL;
	assert_int_equal(metrics_expr_parse("rate(paasops_http_requests_total{app=\"shop\", code=\"5xx\"}[5m])",
					    1000, &q, &buf, &err), 0);
	assert_string_equal(q.name, "paasops_http_requests_total");
	assert_int_equal(q.fn, METRICS_FN_RATE);
	assert_int_equal(q.n_match, 2);
	assert_string_equal(q.match[1].label, "code");
	assert_string_equal(q.match[1].value, "5xx");
	assert_int_equal(q.window_ms, 300000);
	assert_true(q.start_ms == 1000 && q.end_ms == 1000);
	assert_false(q.aggregate);
	free(buf);
	assert_int_equal(metrics_expr_parse(" p95( d_seconds {app=\"a\\\"b\"} [30s] ) by (app, process)",
					    0, &q, &buf, &err), 0);
	assert_int_equal(q.fn, METRICS_FN_QUANTILE);
	assert_true(q.quantile == 0.95);
	assert_string_equal(q.name, "d_seconds");
	assert_string_equal(q.match[0].value, "a\"b");
	assert_true(q.aggregate);
	assert_int_equal(q.n_by, 2);
	assert_string_equal(q.by[1], "process");
	free(buf);
	assert_int_equal(metrics_expr_parse("paasops_replicas_ready", 0, &q, &buf, &err), 0);
	assert_int_equal(q.fn, METRICS_FN_RAW);
	assert_int_equal(q.n_match, 0);
	free(buf);
	assert_int_equal(metrics_expr_parse("quantile_0.999(x[1m]) by ()", 0, &q, &buf, &err), 0);
	assert_true(q.quantile == 0.999 && q.aggregate && q.n_by == 0);
	free(buf);
	static const char *const bad[] = {"", "rate(", "nosuch(x[1m])", "x{app=shop}", "x[5q]",
					  "rate(x[1m]", "x{a=\"b\"", "x y", "x by app"};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		if (metrics_expr_parse(bad[k], 0, &q, &buf, &err) != -EINVAL)
			fail_msg("'%s' was accepted", bad[k]);
		free(err);
		err = NULL;
	}
}

static void test_query__config_flags(void **state)
{
	struct metrics_config c;
	char *err = NULL;
	metrics_config_defaults(&c);
	assert_int_equal(metrics_config_parse(&c, "metrics-interval", "500ms", &err), 0);
	assert_int_equal(c.interval_ms, 500);
	assert_int_equal(c.tiers[0].res_ms, 500);
	assert_int_equal(metrics_config_parse(&c, "metrics-retention", "2h,1m:7d", &err), 0);
	assert_int_equal(c.n_tiers, 2);
	assert_true(c.tiers[0].res_ms == 500 && c.tiers[0].retention_ms == 7200000);
	assert_true(c.tiers[1].res_ms == 60000 && c.tiers[1].retention_ms == 7 * 86400000LL);
	assert_int_equal(metrics_config_parse(&c, "metrics-memory", "64M", &err), 0);
	assert_int_equal(c.memory_budget, 64 << 20);
	static const char *const bad[][2] = {{"metrics-interval", "10ms"}, {"metrics-interval", "x"},
					     {"metrics-retention", "1h,1h"}, {"metrics-retention", "1h,5m:1m"},
					     {"metrics-retention", "10s:1d,1s:1d"}, {"metrics-memory", "1K"},
					     {"metrics-retention", "1h,1s:1d,2s:1d,3s:1d,4s:1d"}};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		if (metrics_config_parse(&c, bad[k][0], bad[k][1], &err) != -EINVAL)
			fail_msg("--%s %s was accepted", bad[k][0], bad[k][1]);
		free(err);
	}
}

/* ------------------------------------------------------------------ usage */

static void test_usage__trend_fits_known_points(void **state)
{
	/* y = 2 + 0.5 x exactly, then with symmetric noise that cancels out. */
	const double x[] = {-4, -3, -2, -1, 0};
	double y[5];
	for (size_t k = 0; k < 5; k++)
		y[k] = 2 + 0.5 * x[k];
	struct metrics_trend t;
	assert_int_equal(metrics_trend_fit(x, y, 5, &t), 0);
	assert_float_equal(t.slope, 0.5, 1e-12);
	assert_float_equal(t.intercept, 2, 1e-12);
	assert_int_equal(t.n, 5);
	const double xn[] = {0, 1, 2, 3};
	const double yn[] = {1, 2, 2, 3}; /* least squares: slope 0.6, intercept 1.1 */
	assert_int_equal(metrics_trend_fit(xn, yn, 4, &t), 0);
	assert_float_equal(t.slope, 0.6, 1e-12);
	assert_float_equal(t.intercept, 1.1, 1e-12);
	/* Far from 0 (days since the epoch) the centred sums keep it exact. */
	const double xf[] = {20000, 20001, 20002};
	const double yf[] = {5, 4, 3};
	assert_int_equal(metrics_trend_fit(xf, yf, 3, &t), 0);
	assert_float_equal(t.slope, -1, 1e-9);
}

static void test_usage__fewer_than_three_points_is_no_trend(void **state)
{
	const double x[] = {0, 1, 2}, y[] = {1, 2, 3};
	struct metrics_trend t;
	assert_int_equal(metrics_trend_fit(x, y, 2, &t), -EINVAL);
	assert_int_equal(metrics_trend_fit(x, y, 0, &t), -EINVAL);
	const double same[] = {4, 4, 4};
	assert_int_equal(metrics_trend_fit(same, y, 3, &t), -EINVAL);
	assert_int_equal(metrics_trend_fit(x, y, 3, &t), 0);
}

static void test_usage__counter_increase_across_a_reset(void **state)
{
	/* 10 -> 15 -> 20, the daemon restarts (counter back to 3), then 7. */
	const struct metrics_point p[] = {{1000, 10}, {2000, 15}, {3000, 20}, {4000, 3}, {5000, 7}};
	assert_float_equal(metrics_counter_increase(p, 5, false), 5 + 5 + 3 + 4, 1e-12);
	/* A series that began in the window counts its first value as well. */
	assert_float_equal(metrics_counter_increase(p, 5, true), 10 + 17, 1e-12);
	assert_float_equal(metrics_counter_increase(p, 1, false), 0, 0);
	assert_float_equal(metrics_counter_increase(p, 0, true), 0, 0);
}

static void test_usage__gauge_integral_over_time(void **state)
{
	/* 1 s samples of 100 bytes: each stands for 1 s, the first one too. */
	const struct metrics_point p[] = {{1000, 100}, {2000, 100}, {3000, 100}};
	assert_float_equal(metrics_gauge_integral(p, 3, 1000), 300, 1e-9);
	/* A gap of more than two samples: the series was gone meanwhile, so the
	 * point after it stands for one sample only. */
	const struct metrics_point g[] = {{1000, 2}, {2000, 2}, {60000, 4}, {62000, 4}};
	assert_float_equal(metrics_gauge_integral(g, 4, 1000), 2 + 2 + 4 + 4 * 2, 1e-9);
}

static void test_usage__cost_is_hours_at_the_prices(void **state)
{
	struct metrics_prices pr = {.set = true, .cpu_hour = 0.04, .memory_gb_hour = 0.005};
	assert_float_equal(metrics_cost(&pr, 10, 200), 0.4 + 1.0, 1e-12);
	pr.memory_gb_hour = 0;
	assert_float_equal(metrics_cost(&pr, 2.5, 1000), 0.1, 1e-12);

	struct metrics_config c;
	char *err = NULL;
	metrics_config_defaults(&c);
	assert_false(c.prices.set);
	assert_int_equal(metrics_config_parse(&c, "price-cpu-hour", "0.025", &err), 0);
	assert_int_equal(metrics_config_parse(&c, "price-memory-gb-hour", "0.003", &err), 0);
	assert_int_equal(metrics_config_parse(&c, "price-currency", "EUR", &err), 0);
	assert_true(c.prices.set);
	assert_float_equal(c.prices.cpu_hour, 0.025, 0);
	assert_float_equal(c.prices.memory_gb_hour, 0.003, 0);
	assert_string_equal(c.prices.currency, "EUR");
	static const char *const bad[][2] = {{"price-cpu-hour", "-1"}, {"price-cpu-hour", "x"},
					     {"price-memory-gb-hour", "nan"}, {"price-memory-gb-hour", ""},
					     {"price-currency", ""}, {"price-currency", "EURO DOLLAR"},
					     {"price-currency", "12345678"}};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		if (metrics_config_parse(&c, bad[k][0], bad[k][1], &err) != -EINVAL)
			fail_msg("--%s '%s' was accepted", bad[k][0], bad[k][1]);
		assert_non_null(strstr(err, bad[k][0]));
		free(err);
	}
}

/* ------------------------------------------------------------------ gzip */

static void test_gzip__round_trip(void **state)
{
	struct strbuf in, z, out;
	strbuf_init(&in, 0);
	for (int k = 0; k < 5000; k++)
		strbuf_addf(&in, "paasops_http_requests_total{app=\"a%d\",code=\"2xx\"} %d\n", k % 50, k);
	strbuf_init(&z, 0);
	strbuf_init(&out, 0);
	assert_int_equal(gzip_compress(in.buf, in.len, 1, &z), 0);
	assert_true(z.len < in.len / 4);
	assert_true((unsigned char)z.buf[0] == 0x1f && (unsigned char)z.buf[1] == 0x8b);
	assert_int_equal(gzip_decompress(z.buf, z.len, in.len, &out), 0);
	assert_int_equal(out.len, in.len);
	assert_memory_equal(out.buf, in.buf, in.len);
	strbuf_reset(&out);
	assert_int_equal(gzip_decompress(z.buf, z.len, in.len - 1, &out), -EFBIG);
	strbuf_reset(&out);
	assert_int_equal(gzip_decompress(z.buf, z.len / 2, in.len, &out), -EINVAL);
	assert_int_equal(gzip_crc32(0, "123456789", 9), 0xcbf43926u);
	strbuf_release(&in);
	strbuf_release(&z);
	strbuf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry__refuses_bad_names_labels_and_duplicates),
		cmocka_unit_test(test_registry__finds_series_again_and_sweeps_stale_ones),
		cmocka_unit_test(test_exposition__text_escapes_labels_and_help),
		cmocka_unit_test(test_exposition__histograms_are_cumulative_and_filters_apply),
		cmocka_unit_test(test_exposition__numbers_round_trip),
		cmocka_unit_test(test_exposition__negotiation),
		cmocka_unit_test(test_tsdb__bits_round_trip),
		cmocka_unit_test(test_tsdb__gorilla_round_trip_special_values_and_irregular_times),
		cmocka_unit_test(test_tsdb__decimal_values_round_trip_bit_for_bit_and_cost_less),
		cmocka_unit_test(test_tsdb__format_2_chunks_still_read),
		cmocka_unit_test(test_tsdb__regular_series_take_about_two_bytes_per_point),
		cmocka_unit_test(test_tsdb__downsampling_averages_gauges_and_keeps_counters_last),
		cmocka_unit_test(test_tsdb__retention_drops_old_chunks_then_the_series),
		cmocka_unit_test(test_tsdb__oldest_is_the_first_sample_until_only_its_bucket_is_left),
		cmocka_unit_test(test_tsdb__chunks_close_before_their_span_outgrows_the_head),
		cmocka_unit_test(test_tsdb__series_share_their_strings_until_the_last_goes),
		cmocka_unit_test(test_tsdb__memory_budget_holds_with_50000_series),
		cmocka_unit_test(test_tsdb__history_file_round_trip_and_damage_detected),
		cmocka_unit_test(test_tsdb__runs_of_repeated_and_steadily_growing_values_round_trip),
		cmocka_unit_test(test_tsdb__history_file_of_format_1_still_loads),
		cmocka_unit_test(test_tsdb__a_day_of_idle_series_costs_a_few_hundred_bytes),
		cmocka_unit_test(test_tsdb__projection_of_1000_idle_instances),
		cmocka_unit_test(test_query__rate_handles_counter_resets),
		cmocka_unit_test(test_query__avg_min_max_sum_raw_and_by),
		cmocka_unit_test(test_query__histogram_quantile_known_values),
		cmocka_unit_test(test_query__old_ranges_come_from_coarser_tiers),
		cmocka_unit_test(test_query__expressions_parse),
		cmocka_unit_test(test_query__config_flags),
		cmocka_unit_test(test_usage__trend_fits_known_points),
		cmocka_unit_test(test_usage__fewer_than_three_points_is_no_trend),
		cmocka_unit_test(test_usage__counter_increase_across_a_reset),
		cmocka_unit_test(test_usage__gauge_integral_over_time),
		cmocka_unit_test(test_usage__cost_is_hours_at_the_prices),
		cmocka_unit_test(test_gzip__round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
