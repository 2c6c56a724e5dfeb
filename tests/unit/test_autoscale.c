/* test_autoscale.c: the autoscaler's pure parts (src/autoscale): the
 * decision from current/ready/value/target/min/max and the parsing of
 * its daemon flags (the p95 it may scale on is core/hist's). */
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
		cmocka_unit_test(test_autoscale__flags_take_durations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
