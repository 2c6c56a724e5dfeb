/* test_autoscale.c: the autoscaler's pure parts (src/autoscale): the
 * decision from current/ready/value/target/min/max, the panic state and
 * the decision while panicking, and the parsing of its daemon flags (the
 * p95 it may scale on is core/hist's). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "autoscale/autoscale.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* autoscale_desired(current, ready, value, target, min, max) */

static void test_autoscale__scales_up_to_what_brings_the_value_to_target(void **state)
{
	/* 2 instances at 410 rps each against 200: 820 / 200 = 4.1 -> 5. */
	assert_int_equal(autoscale_desired(2, 2, 410, 200, 1, 10), 5);
	/* 1 instance with 8 in flight against 2: 4. */
	assert_int_equal(autoscale_desired(1, 1, 8, 2, 1, 10), 4);
	/* Exactly a multiple is that multiple, not one more. */
	assert_int_equal(autoscale_desired(3, 3, 400, 200, 1, 10), 6);
}

static void test_autoscale__scales_down_to_what_the_load_needs(void **state)
{
	assert_int_equal(autoscale_desired(4, 4, 50, 200, 1, 10), 1);
	assert_int_equal(autoscale_desired(4, 4, 120, 200, 1, 10), 3);
	assert_int_equal(autoscale_desired(4, 4, 0, 200, 0, 10), 0);
}

static void test_autoscale__is_clamped_to_min_and_max(void **state)
{
	assert_int_equal(autoscale_desired(2, 2, 10000, 200, 1, 3), 3);
	assert_int_equal(autoscale_desired(3, 3, 0, 2, 1, 3), 1);
	assert_int_equal(autoscale_desired(2, 2, 0, 2, 2, 4), 2);
	/* A count set by hand outside the range comes back into it. */
	assert_int_equal(autoscale_desired(1, 1, 2, 2, 2, 4), 2);
	assert_int_equal(autoscale_desired(9, 9, 2, 2, 2, 4), 4);
}

static void test_autoscale__keeps_the_count_within_the_tolerance(void **state)
{
	/* 5% over target would be 4.2 -> 5; within 10% nothing moves. */
	assert_int_equal(autoscale_desired(4, 4, 210, 200, 1, 10), 4);
	assert_int_equal(autoscale_desired(4, 4, 185, 200, 1, 10), 4);
	/* Just past it, it does. */
	assert_int_equal(autoscale_desired(4, 4, 230, 200, 1, 10), 5);
	assert_int_equal(autoscale_desired(4, 4, 170, 200, 1, 10), 4);
	assert_int_equal(autoscale_desired(4, 4, 140, 200, 1, 10), 3);
}

static void test_autoscale__counts_only_ready_instances(void **state)
{
	/* 4 wanted, 2 ready at 300 each: 600 / 200 = 3. */
	assert_int_equal(autoscale_desired(4, 2, 300, 200, 1, 10), 3);
}

static void test_autoscale__wakes_from_zero_on_any_demand(void **state)
{
	assert_int_equal(autoscale_desired(0, 0, 0.1, 200, 0, 10), 1);
	assert_int_equal(autoscale_desired(0, 0, 5000, 200, 0, 10), 1);
	/* No demand: stays asleep. */
	assert_int_equal(autoscale_desired(0, 0, 0, 200, 0, 10), 0);
	/* With a min above 1, wakes to min. */
	assert_int_equal(autoscale_desired(0, 0, 1, 200, 3, 10), 3);
}

static void test_autoscale__waits_while_no_instance_is_ready(void **state)
{
	/* Starting instances have nothing to measure: keep the count. */
	assert_int_equal(autoscale_desired(3, 0, 0, 200, 1, 10), 3);
	assert_int_equal(autoscale_desired(3, 0, 900, 200, 1, 10), 3);
	assert_int_equal(autoscale_desired(12, 0, 0, 200, 1, 10), 10);
}

static void test_autoscale__ignores_a_value_that_is_not_a_number(void **state)
{
	assert_int_equal(autoscale_desired(3, 3, NAN, 200, 1, 10), 3);
	assert_int_equal(autoscale_desired(3, 3, -1, 200, 1, 10), 3);
	assert_int_equal(autoscale_desired(3, 3, 100, 0, 1, 10), 3);
}

/* autoscale_panic_next(state, ready, value, target, threshold, now, stable_window) */

#define WINDOW 60000

static void test_autoscale__panics_at_twice_the_target(void **state)
{
	struct autoscale_panic p = {0};
	/* Just under 2x: no panic. */
	p = autoscale_panic_next(p, 2, 399, 200, 2, 1000, WINDOW);
	assert_false(p.active);
	/* At 2x it starts, and says when. */
	p = autoscale_panic_next(p, 2, 400, 200, 2, 2000, WINDOW);
	assert_true(p.active);
	assert_int_equal(p.since, 2000);
	assert_false(p.calm);
	/* Staying over keeps the start. */
	p = autoscale_panic_next(p, 2, 900, 200, 2, 3000, WINDOW);
	assert_true(p.active);
	assert_int_equal(p.since, 2000);
}

/* The spec's panic_threshold moves the line, both ways. */
static void test_autoscale__panics_at_the_spec_threshold(void **state)
{
	struct autoscale_panic p = {0};
	p = autoscale_panic_next(p, 2, 999, 200, 5, 1000, WINDOW);
	assert_false(p.active);
	p = autoscale_panic_next(p, 2, 1000, 200, 5, 2000, WINDOW);
	assert_true(p.active);
	/* Under 5x but over 2x: calming, not kept up. */
	p = autoscale_panic_next(p, 2, 900, 200, 5, 3000, WINDOW);
	assert_true(p.calm);
	struct autoscale_panic q = autoscale_panic_next((struct autoscale_panic){0}, 2, 300, 200, 1.5,
							1000, WINDOW);
	assert_true(q.active);
}

static void test_autoscale__leaves_panic_after_a_whole_stable_window_below(void **state)
{
	struct autoscale_panic p = autoscale_panic_next((struct autoscale_panic){0}, 1, 10, 2, 2, 0,
							WINDOW);
	assert_true(p.active);
	/* Below from t=1000: still panicking for the whole window. */
	p = autoscale_panic_next(p, 3, 1, 2, 2, 1000, WINDOW);
	assert_true(p.active);
	assert_true(p.calm);
	assert_int_equal(p.calm_since, 1000);
	p = autoscale_panic_next(p, 3, 0, 2, 2, 1000 + WINDOW - 1, WINDOW);
	assert_true(p.active);
	assert_int_equal(p.calm_since, 1000);
	/* Over again: the calm starts over ... */
	p = autoscale_panic_next(p, 3, 4, 2, 2, 1000 + WINDOW, WINDOW);
	assert_true(p.active);
	assert_false(p.calm);
	p = autoscale_panic_next(p, 3, 1, 2, 2, 2000 + WINDOW, WINDOW);
	assert_true(p.calm);
	assert_int_equal(p.calm_since, 2000 + WINDOW);
	p = autoscale_panic_next(p, 3, 1, 2, 2, 2000 + 2 * WINDOW - 1, WINDOW);
	assert_true(p.active);
	/* ... and a whole window below ends it. */
	p = autoscale_panic_next(p, 3, 1, 2, 2, 2000 + 2 * WINDOW, WINDOW);
	assert_false(p.active);
	assert_false(p.calm);
}

static void test_autoscale__panic_needs_a_value_per_ready_instance(void **state)
{
	struct autoscale_panic p = {0};
	p = autoscale_panic_next(p, 0, 1000, 2, 2, 0, WINDOW);
	assert_false(p.active);
	p = autoscale_panic_next(p, 1, NAN, 2, 2, 0, WINDOW);
	assert_false(p.active);
	p = autoscale_panic_next(p, 1, 1000, 0, 2, 0, WINDOW);
	assert_false(p.active);
	/* While panicking, no measure changes nothing either. */
	p = autoscale_panic_next(p, 1, 5, 2, 2, 0, WINDOW);
	assert_true(p.active);
	struct autoscale_panic q = autoscale_panic_next(p, 0, 0, 2, 2, 2 * WINDOW, WINDOW);
	assert_true(q.active);
	assert_false(q.calm);
}

/* autoscale_desired_in_panic(current, ready, stable, panic, target, min, max) */

static void test_autoscale__panic_scales_up_to_what_the_short_window_asks(void **state)
{
	/* Stable (60 s) still low, the last 6 s at 5x: 2 ready * 1000 / 200 = 10. */
	assert_int_equal(autoscale_desired_in_panic(2, 2, 150, 1000, 200, 1, 20), 10);
	/* The stable window asking for more wins. */
	assert_int_equal(autoscale_desired_in_panic(2, 2, 1200, 1000, 200, 1, 20), 12);
	/* Clamped to max all the same. */
	assert_int_equal(autoscale_desired_in_panic(2, 2, 150, 1000, 200, 1, 6), 6);
}

static void test_autoscale__never_scales_down_while_panicking(void **state)
{
	/* Both windows now want 1, but it keeps its 8. */
	assert_int_equal(autoscale_desired(8, 8, 10, 200, 1, 20), 1);
	assert_int_equal(autoscale_desired_in_panic(8, 8, 10, 10, 200, 1, 20), 8);
	assert_int_equal(autoscale_desired_in_panic(8, 8, 0, 0, 200, 0, 20), 8);
	/* Within the tolerance nothing moves either. */
	assert_int_equal(autoscale_desired_in_panic(4, 4, 210, 190, 200, 1, 20), 4);
	/* Only max brings a hand-set count down; min lifts one. */
	assert_int_equal(autoscale_desired_in_panic(30, 30, 0, 0, 200, 1, 20), 20);
	assert_int_equal(autoscale_desired_in_panic(1, 1, 0, 0, 200, 3, 20), 3);
}

static void test_autoscale__flags_take_durations(void **state)
{
	struct autoscale_config cfg;
	char *err = NULL;
	autoscale_config_defaults(&cfg);
	assert_int_equal(cfg.interval_ms, 1000);
	assert_int_equal(cfg.stable_window_ms, 60000);
	assert_int_equal(cfg.scale_down_delay_ms, 300000);
	assert_int_equal(autoscale_config_parse(&cfg, "autoscale-stable-window", "6s", &err), 0);
	assert_int_equal(cfg.stable_window_ms, 6000);
	assert_int_equal(autoscale_config_parse(&cfg, "autoscale-stable-window", "0", &err), -EINVAL);
	assert_non_null(err);
	free(err);
	err = NULL;
	assert_int_equal(autoscale_config_parse(&cfg, "autoscale-window", "1s", &err), -EINVAL);
	assert_non_null(err);
	free(err);
	err = NULL;
	assert_int_equal(cfg.stable_window_ms, 6000);
	assert_int_equal(autoscale_config_parse(&cfg, "autoscale-interval", "500ms", &err), 0);
	assert_int_equal(cfg.interval_ms, 500);
	assert_int_equal(autoscale_config_parse(&cfg, "autoscale-scale-down-delay", "0", &err), 0);
	assert_int_equal(cfg.scale_down_delay_ms, 0);
	assert_int_equal(autoscale_config_parse(&cfg, "autoscale-interval", "0s", &err), -EINVAL);
	assert_non_null(err);
	free(err);
	err = NULL;
	assert_int_equal(autoscale_config_parse(&cfg, "autoscale-scale-down-delay", "soon", &err),
			 -EINVAL);
	assert_non_null(err);
	free(err);
	assert_int_equal(cfg.interval_ms, 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_autoscale__scales_up_to_what_brings_the_value_to_target),
		cmocka_unit_test(test_autoscale__scales_down_to_what_the_load_needs),
		cmocka_unit_test(test_autoscale__is_clamped_to_min_and_max),
		cmocka_unit_test(test_autoscale__keeps_the_count_within_the_tolerance),
		cmocka_unit_test(test_autoscale__counts_only_ready_instances),
		cmocka_unit_test(test_autoscale__wakes_from_zero_on_any_demand),
		cmocka_unit_test(test_autoscale__waits_while_no_instance_is_ready),
		cmocka_unit_test(test_autoscale__ignores_a_value_that_is_not_a_number),
		cmocka_unit_test(test_autoscale__panics_at_twice_the_target),
		cmocka_unit_test(test_autoscale__panics_at_the_spec_threshold),
		cmocka_unit_test(test_autoscale__leaves_panic_after_a_whole_stable_window_below),
		cmocka_unit_test(test_autoscale__panic_needs_a_value_per_ready_instance),
		cmocka_unit_test(test_autoscale__panic_scales_up_to_what_the_short_window_asks),
		cmocka_unit_test(test_autoscale__never_scales_down_while_panicking),
		cmocka_unit_test(test_autoscale__flags_take_durations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
