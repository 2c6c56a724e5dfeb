/* test_core.c: the core helpers every module leans on: allocation and string
 * helpers (src/core/util), the growable buffer (src/core/strbuf) and the
 * duration, size and time units (src/core/timeutil). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/hist.h"
#include "core/netaddr.h"
#include "core/paths.h"
#include "core/runas.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <math.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* ------------------------------------------------------------- helpers */

static int64_t duration_ok(const char *s)
{
	int64_t ms = -12345;
	int r = duration_parse(s, &ms);
	if (r != 0)
		fail_msg("duration_parse(\"%s\") = %d, expected 0", s, r);
	return ms;
}

static int64_t size_ok(const char *s)
{
	int64_t n = -12345;
	int r = size_parse(s, &n);
	if (r != 0)
		fail_msg("size_parse(\"%s\") = %d, expected 0", s, r);
	return n;
}

/* A rejected parse must fail with want and leave *out alone. */
#define assert_parse_fails(fn, s, want)                                                       \
	do {                                                                                  \
		int64_t v_ = 777;                                                             \
		int r_ = fn((s), &v_);                                                        \
		if (r_ != (want))                                                             \
			fail_msg(#fn "(\"%s\") = %d, expected %d", (s), r_, (want));          \
		assert_int_equal(v_, 777);                                                    \
	} while (0)

/* ---------------------------------------------------------------- util */

static void test_util__xasprintf_formats_into_a_new_string(void **state)
{
	char *s = xasprintf("%s-%d-%05.1f", "web", 42, 3.5);
	assert_string_equal(s, "web-42-003.5");
	free(s);

	s = xasprintf("%s", "");
	assert_string_equal(s, "");
	free(s);

	/* Longer than any small internal buffer. */
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	s = xasprintf("<%s>", big);
	assert_int_equal(strlen(s), sizeof(big) + 1);
	assert_int_equal(s[0], '<');
	assert_int_equal(s[sizeof(big)], '>');
	free(s);
}

static void test_util__xgrow_reaches_the_needed_size_and_keeps_contents(void **state)
{
	int *arr = NULL;
	size_t alloc = 0;
	arr = xgrow(arr, sizeof(*arr), 1, &alloc);
	assert_non_null(arr);
	assert_true(alloc >= 1);
	for (int i = 0; i < 1000; i++) {
		arr = xgrow(arr, sizeof(*arr), (size_t)i + 1, &alloc);
		assert_true(alloc >= (size_t)i + 1);
		arr[i] = i * 7;
	}
	for (int i = 0; i < 1000; i++)
		assert_int_equal(arr[i], i * 7);

	/* Asking for no more than we have changes nothing. */
	size_t before = alloc;
	int *same = xgrow(arr, sizeof(*arr), 10, &alloc);
	assert_ptr_equal(same, arr);
	assert_int_equal(alloc, before);
	free(arr);
}

static void test_util__utf8_seq_takes_valid_sequences_only(void **state)
{
	(void)state;
	const unsigned char *u = (const unsigned char *)"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	assert_int_equal(utf8_seq(u, 10), 1);
	assert_int_equal(utf8_seq(u + 1, 9), 2);
	assert_int_equal(utf8_seq(u + 3, 7), 3);
	assert_int_equal(utf8_seq(u + 6, 4), 4);
	assert_int_equal(utf8_seq(u + 6, 3), 0); /* cut short */
	assert_int_equal(utf8_seq((const unsigned char *)"\xff", 1), 0);
	assert_int_equal(utf8_seq((const unsigned char *)"\xc0\xaf", 2), 0);     /* overlong */
	assert_int_equal(utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0); /* surrogate */
	assert_int_equal(utf8_seq((const unsigned char *)"\xc3\x41", 2), 0);     /* no continuation */
}

static void test_util__string_predicates(void **state)
{
	assert_true(str_starts_with("pso_abc", "pso_"));
	assert_true(str_starts_with("abc", ""));
	assert_false(str_starts_with("ps", "pso_"));
	assert_true(str_ends_with("paasops.yaml", ".yaml"));
	assert_false(str_ends_with("yaml", ".yaml"));
	assert_true(str_eq(NULL, NULL));
	assert_false(str_eq("a", NULL));
	assert_false(str_eq(NULL, "a"));
	assert_true(str_eq("a", "a"));
	assert_false(str_eq("a", "b"));

	char buf[4];
	assert_int_equal(strlcpy_s(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	assert_int_equal(strlcpy_s(buf, "ab", sizeof(buf)), 2);
	assert_string_equal(buf, "ab");
}

static void test_util__edit_distance_counts_insertions_deletions_substitutions(void **state)
{
	assert_int_equal(str_edit_distance("", ""), 0);
	assert_int_equal(str_edit_distance("abc", "abc"), 0);
	assert_int_equal(str_edit_distance("", "abc"), 3);
	assert_int_equal(str_edit_distance("abc", ""), 3);
	assert_int_equal(str_edit_distance("kitten", "sitting"), 3);
	assert_int_equal(str_edit_distance("flaw", "lawn"), 2);
	assert_int_equal(str_edit_distance("instances", "instnaces"), 2);
	/* Symmetric. */
	assert_int_equal(str_edit_distance("sitting", "kitten"), 3);
}

static void test_util__suggest_returns_a_close_candidate_or_null(void **state)
{
	static const char *const keys[] = {"command", "instances", "health", "env", "routes"};
	size_t n = ARRAY_SIZE(keys);
	assert_string_equal(str_suggest("comand", keys, n), "command");
	assert_string_equal(str_suggest("instnces", keys, n), "instances");
	assert_string_equal(str_suggest("helth", keys, n), "health");
	/* Two edits on a three-letter word are not a likely typo. */
	assert_null(str_suggest("evn", keys, n));
	assert_string_equal(str_suggest("enx", keys, n), "env");
	assert_null(str_suggest("database", keys, n));
	assert_null(str_suggest("x", keys, 0));
	/* The suggestion is borrowed from the candidates. */
	assert_ptr_equal(str_suggest("route", keys, n), keys[4]);
}

static void test_util__str_to_i64_parses_whole_decimal_numbers(void **state)
{
	int64_t v = 0;
	assert_int_equal(str_to_i64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(str_to_i64("42", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(str_to_i64("-17", &v), 0);
	assert_int_equal(v, -17);
	assert_int_equal(str_to_i64("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(str_to_i64("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	/* Decimal, not octal. */
	assert_int_equal(str_to_i64("010", &v), 0);
	assert_int_equal(v, 10);
}

static void test_util__str_to_i64_rejects_overflow_and_garbage(void **state)
{
	assert_parse_fails(str_to_i64, "9223372036854775808", -ERANGE);
	assert_parse_fails(str_to_i64, "-9223372036854775809", -ERANGE);
	assert_parse_fails(str_to_i64, "99999999999999999999999", -ERANGE);
	assert_parse_fails(str_to_i64, "", -EINVAL);
	assert_parse_fails(str_to_i64, NULL, -EINVAL);
	assert_parse_fails(str_to_i64, "abc", -EINVAL);
	assert_parse_fails(str_to_i64, "12abc", -EINVAL);
	assert_parse_fails(str_to_i64, "12 ", -EINVAL);
	assert_parse_fails(str_to_i64, "1.5", -EINVAL);
	assert_parse_fails(str_to_i64, "-", -EINVAL);
	assert_parse_fails(str_to_i64, "0x10", -EINVAL);
}

/* "Parses a decimal int64 in full": text that is not a decimal number from
 * its first byte must be refused. api.c uses this for ?limit= and for the
 * port of --listen addresses. */
static void test_util__str_to_i64_rejects_leading_white_space(void **state)
{
	assert_parse_fails(str_to_i64, " 5", -EINVAL);
	assert_parse_fails(str_to_i64, "\t5", -EINVAL);
	assert_parse_fails(str_to_i64, "\n5", -EINVAL);
}

/* -------------------------------------------------------------- strbuf */

static void test_strbuf__init_without_hint_is_empty_and_terminated(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	assert_non_null(sb.buf);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
	strbuf_release(&sb);
	/* Released buffers are re-initialised and usable. */
	assert_non_null(sb.buf);
	assert_int_equal(sb.len, 0);
	strbuf_adds(&sb, "again");
	assert_string_equal(sb.buf, "again");
	strbuf_release(&sb);
}

static void test_strbuf__release_on_a_never_grown_buffer_is_safe(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_release(&sb);
	strbuf_release(&sb);
	strbuf_reset(&sb);
	assert_string_equal(sb.buf, "");
	strbuf_consume(&sb, 5);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
}

static void test_strbuf__add_grows_past_initial_size(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	char expect[200];
	for (int i = 0; i < 100; i++) {
		strbuf_addc(&sb, (char)('a' + i % 26));
		expect[i] = (char)('a' + i % 26);
		expect[i + 1] = '\0';
		assert_int_equal(sb.len, (size_t)i + 1);
		assert_true(sb.alloc > sb.len);
		assert_string_equal(sb.buf, expect);
	}
	strbuf_add(&sb, "XYZ", 2); /* only n bytes */
	assert_int_equal(sb.len, 102);
	assert_memory_equal(sb.buf + 100, "XY", 3 - 1);
	assert_int_equal(sb.buf[102], '\0');
	strbuf_release(&sb);
}

static void test_strbuf__add_keeps_embedded_nul_bytes(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_add(&sb, "a\0b", 3);
	assert_int_equal(sb.len, 3);
	assert_memory_equal(sb.buf, "a\0b", 4);
	strbuf_release(&sb);
}

static void test_strbuf__addf_grows_past_initial_size(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	/* The first format into a never-grown buffer. */
	strbuf_addf(&sb, "%d", 7);
	assert_string_equal(sb.buf, "7");
	/* One format crossing 64 bytes, then several KiB in pieces. */
	strbuf_addf(&sb, "%070d", 1);
	assert_int_equal(sb.len, 71);
	assert_int_equal(sb.buf[70], '1');
	for (int i = 0; i < 1000; i++)
		strbuf_addf(&sb, "[%04d]", i);
	assert_int_equal(sb.len, 71 + 6 * 1000);
	assert_memory_equal(sb.buf + 71, "[0000][0001]", 12);
	assert_memory_equal(sb.buf + sb.len - 6, "[0999]", 6);
	assert_int_equal(sb.buf[sb.len], '\0');
	assert_int_equal(strlen(sb.buf), sb.len);
	strbuf_release(&sb);
}

static void test_strbuf__addf_fills_the_buffer_exactly(void **state)
{
	/* Output that exactly fits, and one byte more than fits, the space left. */
	for (size_t pre = 0; pre < 70; pre++) {
		for (int w = 60; w < 70; w++) {
			struct strbuf sb;
			strbuf_init(&sb, 0);
			for (size_t k = 0; k < pre; k++)
				strbuf_addc(&sb, '.');
			strbuf_addf(&sb, "%0*d", w, 5);
			assert_int_equal(sb.len, pre + (size_t)w);
			assert_int_equal(strlen(sb.buf), sb.len);
			assert_int_equal(sb.buf[sb.len - 1], '5');
			assert_int_equal(sb.buf[pre], '0');
			strbuf_release(&sb);
		}
	}
}

static void test_strbuf__addf_of_an_empty_string_adds_nothing(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_addf(&sb, "%s", "");
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
	strbuf_adds(&sb, "x");
	strbuf_addf(&sb, "%s", "");
	assert_string_equal(sb.buf, "x");
	strbuf_release(&sb);
}

static void test_strbuf__grows_to_several_kib(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 16);
	char chunk[257];
	memset(chunk, 'q', 256);
	chunk[256] = '\0';
	for (int i = 0; i < 40; i++)
		strbuf_adds(&sb, chunk);
	assert_int_equal(sb.len, 40 * 256);
	assert_true(sb.alloc > sb.len);
	assert_int_equal(strlen(sb.buf), sb.len);
	strbuf_release(&sb);
}

static void test_strbuf__grow_reserves_without_changing_content(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_adds(&sb, "keep");
	strbuf_grow(&sb, 5000);
	assert_true(sb.alloc >= 5000 + 4 + 1);
	assert_int_equal(sb.len, 4);
	assert_string_equal(sb.buf, "keep");
	strbuf_release(&sb);
}

static void test_strbuf__consume_removes_a_prefix(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_adds(&sb, "GET / HTTP/1.1\r\nrest");
	strbuf_consume(&sb, 16);
	assert_int_equal(sb.len, 4);
	assert_string_equal(sb.buf, "rest");
	strbuf_consume(&sb, 0);
	assert_string_equal(sb.buf, "rest");
	strbuf_consume(&sb, 4);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
	strbuf_adds(&sb, "ab");
	strbuf_consume(&sb, 100); /* more than there is */
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
	strbuf_release(&sb);
}

static void test_strbuf__detach_returns_an_owned_string_and_leaves_the_buffer_empty(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	for (int i = 0; i < 30; i++)
		strbuf_adds(&sb, "0123456789");
	size_t len = 0;
	char *s = strbuf_detach(&sb, &len);
	assert_int_equal(len, 300);
	assert_int_equal(strlen(s), 300);
	/* The buffer is usable, empty and no longer shares memory with s. */
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
	strbuf_adds(&sb, "fresh");
	assert_string_equal(sb.buf, "fresh");
	assert_memory_equal(s, "0123456789", 10);
	free(s);
	strbuf_release(&sb);
}

static void test_strbuf__detach_of_a_never_grown_buffer_is_freeable(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	size_t len = 99;
	char *s = strbuf_detach(&sb, &len);
	assert_int_equal(len, 0);
	assert_string_equal(s, "");
	free(s); /* must be heap memory, not a shared placeholder */
	s = strbuf_detach(&sb, NULL);
	assert_string_equal(s, "");
	free(s);
	strbuf_release(&sb);
}

static void test_strbuf__reset_empties_but_keeps_capacity(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_adds(&sb, "something longer than nothing");
	size_t alloc = sb.alloc;
	strbuf_reset(&sb);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
	assert_int_equal(sb.alloc, alloc);
	strbuf_adds(&sb, "x");
	assert_string_equal(sb.buf, "x");
	strbuf_release(&sb);
}

/* ------------------------------------------------------------ durations */

static void test_duration__parses_every_unit(void **state)
{
	assert_int_equal(duration_ok("500ms"), 500);
	assert_int_equal(duration_ok("10s"), 10000);
	assert_int_equal(duration_ok("5m"), 300000);
	assert_int_equal(duration_ok("2h"), 7200000);
	assert_int_equal(duration_ok("30d"), 30LL * 86400000);
	assert_int_equal(duration_ok("0s"), 0);
	assert_int_equal(duration_ok("0"), 0);
}

static void test_duration__bare_number_is_seconds(void **state)
{
	assert_int_equal(duration_ok("1"), 1000);
	assert_int_equal(duration_ok("90"), 90000);
}

static void test_duration__with_unit_refuses_a_bare_number(void **state)
{
	int64_t ms = 777;
	assert_int_equal(duration_parse_with_unit("30", &ms), -EINVAL);
	assert_int_equal(duration_parse_with_unit("", &ms), -EINVAL);
	assert_int_equal(duration_parse_with_unit(NULL, &ms), -EINVAL);
	assert_int_equal(ms, 777);
	assert_int_equal(duration_parse_with_unit("30d", &ms), 0);
	assert_int_equal(ms, 30LL * 86400000);
}

static void test_duration__accepts_fractions(void **state)
{
	assert_int_equal(duration_ok("1.5s"), 1500);
	assert_int_equal(duration_ok("0.5m"), 30000);
	assert_int_equal(duration_ok("1.5h"), 5400000);
	assert_int_equal(duration_ok("2.5ms"), 3); /* rounds to the nearest ms */
}

static void test_duration__rejects_bad_syntax(void **state)
{
	static const char *const bad[] = {
		"", "-1s", "+1s", "10x", "s", "ms", " 5s", "5s ", "5 s", "5S", "5sec", "1m30s",
		"nan", "nans", "abc", "10.s.", "--1", "inf", "0x10h", "1e3h", "1e20s", ".5h", "5.",
		"5.s", "1,5s",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int64_t ms = 777;
		int r = duration_parse(bad[i], &ms);
		if (r != -EINVAL)
			fail_msg("duration_parse(\"%s\") = %d, expected -EINVAL", bad[i], r);
		assert_int_equal(ms, 777);
	}
	assert_parse_fails(duration_parse, NULL, -EINVAL);
}

static void test_duration__rejects_values_too_large(void **state)
{
	int64_t ms = 777;
	/* Out of double range: refused, whatever the code. */
	assert_true(duration_parse("1e400", &ms) < 0);
	assert_true(duration_parse("1e400s", &ms) < 0);
	assert_int_equal(ms, 777);
	/* Representable but far beyond any sane duration. */
	assert_parse_fails(duration_parse, "100000000000000000000s", -ERANGE);
	assert_parse_fails(duration_parse, "200000000d", -ERANGE);
}

static void test_duration__format_picks_the_shortest_exact_unit(void **state)
{
	static const struct {
		int64_t ms;
		const char *text;
	} cases[] = {
		{0, "0s"},
		{1, "1ms"},
		{500, "500ms"},
		{1500, "1500ms"},
		{1000, "1s"},
		{10000, "10s"},
		{90000, "90s"},
		{60000, "1m"},
		{300000, "5m"},
		{5400000, "90m"},
		{3600000, "1h"},
		{7200000, "2h"},
		{36LL * 3600000, "36h"},
		{86400000, "1d"},
		{30LL * 86400000, "30d"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char buf[32];
		duration_format(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].text);
		/* And it parses back to the same value. */
		assert_int_equal(duration_ok(buf), cases[i].ms);
	}
}

static void test_duration__format_truncates_to_the_buffer(void **state)
{
	char buf[4];
	memset(buf, 'z', sizeof(buf));
	duration_format(123456, buf, sizeof(buf));
	assert_int_equal(buf[3], '\0');
	assert_string_equal(buf, "123");
}

/* ---------------------------------------------------------------- sizes */

static void test_size__parses_units(void **state)
{
	assert_int_equal(size_ok("100"), 100);
	assert_int_equal(size_ok("100B"), 100);
	assert_int_equal(size_ok("512K"), 512 * 1024);
	assert_int_equal(size_ok("256M"), 256LL * 1024 * 1024);
	assert_int_equal(size_ok("1G"), 1024LL * 1024 * 1024);
	assert_int_equal(size_ok("2T"), 2LL * 1024 * 1024 * 1024 * 1024);
	assert_int_equal(size_ok("0"), 0);
	assert_int_equal(size_ok("1.5K"), 1536);
	assert_int_equal(size_ok("0.5G"), 512LL * 1024 * 1024);
}

static void test_size__mi_and_mb_forms_are_binary_units(void **state)
{
	assert_int_equal(size_ok("512Ki"), size_ok("512K"));
	assert_int_equal(size_ok("512KB"), size_ok("512K"));
	assert_int_equal(size_ok("256Mi"), 256LL * 1024 * 1024);
	assert_int_equal(size_ok("256MB"), 256LL * 1024 * 1024);
	assert_int_equal(size_ok("1Gi"), 1024LL * 1024 * 1024);
	assert_int_equal(size_ok("1GB"), 1024LL * 1024 * 1024);
	assert_int_equal(size_ok("1Ti"), 1024LL * 1024 * 1024 * 1024);
}

static void test_size__rejects_bad_syntax_and_overflow(void **state)
{
	static const char *const bad[] = {
		"", "Mi", "M", "-1M", "+1M", " 1M", "1M ", "1 M", "1X", "1Mib", "1MiB", "abc", "nan",
		"1e300", "1e6", "0x10M", ".5G", "1.G",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int64_t n = 777;
		int r = size_parse(bad[i], &n);
		if (r != -EINVAL)
			fail_msg("size_parse(\"%s\") = %d, expected -EINVAL", bad[i], r);
		assert_int_equal(n, 777);
	}
	assert_parse_fails(size_parse, NULL, -EINVAL);
	assert_parse_fails(size_parse, "100000T", -ERANGE);
	assert_parse_fails(size_parse, "100000000000000000000", -ERANGE);
	int64_t n = 777;
	assert_true(size_parse("1e400", &n) < 0);
	assert_int_equal(n, 777);
}

/* ----------------------------------------------------------------- time */

static void test_time__format_iso_is_utc_with_milliseconds(void **state)
{
	char buf[40];
	time_format_iso(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
	time_format_iso(1700000000123LL, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
	time_format_iso(951782400007LL, buf, sizeof(buf)); /* leap day 2000 */
	assert_string_equal(buf, "2000-02-29T00:00:00.007Z");
	time_format_iso(4102444799999LL, buf, sizeof(buf));
	assert_string_equal(buf, "2099-12-31T23:59:59.999Z");
}

static void test_time__format_iso_of_now_has_the_documented_shape(void **state)
{
	char buf[40];
	time_format_iso(time_wall_ms(), buf, sizeof(buf));
	assert_int_equal(strlen(buf), 24);
	const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
	for (size_t i = 0; i < 24; i++) {
		if (shape[i] == 'd')
			assert_true(buf[i] >= '0' && buf[i] <= '9');
		else
			assert_int_equal(buf[i], shape[i]);
	}
}

static void test_time__format_iso_truncates_to_the_buffer(void **state)
{
	char buf[11];
	time_format_iso(1700000000123LL, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14");
}

static void test_time__clocks_move_forward(void **state)
{
	int64_t w = time_wall_ms(), m = time_mono_ms();
	assert_true(w > 1600000000000LL); /* after 2020 */
	assert_true(m >= 0);
	assert_true(time_mono_ms() >= m);
}

/* ------------------------------------------------------------- hist */

static void test_hist__quantile_of_counts_interpolates_within_a_bucket(void **state)
{
	(void)state;
	static const double bounds[] = {0.1, 0.2, 0.5};
	/* 100 observations: 50 <= 0.1, 40 in (0.1, 0.2], 10 in (0.2, 0.5]. */
	const uint64_t counts[] = {50, 40, 10, 0};
	/* rank 95 is the 5th of 10 in the last bucket: 0.2 + 0.3 * 0.5. */
	assert_true(fabs(hist_quantile_counts(0.95, bounds, counts, 3) - 0.35) < 1e-9);
	assert_true(fabs(hist_quantile_counts(0.5, bounds, counts, 3) - 0.1) < 1e-9);
	/* Half of the first bucket, which starts at 0. */
	assert_true(fabs(hist_quantile_counts(0.25, bounds, counts, 3) - 0.05) < 1e-9);
	const uint64_t none[] = {0, 0, 0, 0};
	assert_true(isnan(hist_quantile_counts(0.95, bounds, none, 3)));
	/* Beyond the last finite bound the answer is that bound. */
	const uint64_t slow[] = {0, 0, 0, 7};
	assert_true(hist_quantile_counts(0.95, bounds, slow, 3) == 0.5);
	/* The same histogram as cumulative counts gives the same answer. */
	const double b4[] = {0.1, 0.2, 0.5, INFINITY}, cum[] = {50, 90, 100, 100};
	assert_true(hist_quantile(0.95, b4, cum, 4) == hist_quantile_counts(0.95, bounds, counts, 3));
}

/* ---- netaddr ---- */

static void test_netaddr__loopback_is_127_slash_8_ipv6_one_and_mapped_127(void **state)
{
	static const char *const loopback[] = {
		"127.0.0.1:7070", "127.1.2.3:1", "127.255.255.255:80", "[::1]:7070",
		"[0:0:0:0:0:0:0:1]:80", "[::ffff:127.0.0.1]:80", "[::ffff:127.9.8.7]:80",
	};
	static const char *const not_loopback[] = {
		"0.0.0.0:7070", "[::]:7070", "10.0.0.5:80", "128.0.0.1:80", "126.255.255.255:80",
		"192.168.1.1:80", "[::2]:80", "[fe80::1]:80", "[::ffff:10.0.0.1]:80",
		"[::ffff:0.0.0.0]:80", "[::127.0.0.1]:80",
		"localhost:80", "localhost.localdomain:80", /* names: not trusted */
		"127.0.0.1", "::1", ":80", "[]:80", "[::1:80", "127.0.0.1.5:80", "", NULL,
	};
	for (size_t i = 0; i < ARRAY_SIZE(loopback); i++)
		if (!netaddr_is_loopback(loopback[i]))
			fail_msg("'%s' should be loopback", loopback[i]);
	for (size_t i = 0; i < ARRAY_SIZE(not_loopback); i++)
		if (netaddr_is_loopback(not_loopback[i]))
			fail_msg("'%s' should not be loopback", not_loopback[i] ? not_loopback[i] : "(null)");
}

/* ------------------------------------------------------------- runas */

static void test_runas__names_and_numbers_resolve_and_root_is_refused(void **state)
{
	struct runas r;
	char *err = NULL;
	assert_int_equal(runas_parse("nobody", &r, &err), 0);
	assert_int_equal(r.uid, 65534);
	assert_string_equal(r.user, "nobody");
	assert_non_null(r.home);
	gid_t primary = r.gid;
	runas_release(&r);

	assert_int_equal(runas_parse("65534", &r, &err), 0);
	assert_string_equal(r.user, "nobody");
	assert_int_equal(r.gid, primary);
	runas_release(&r);

	assert_int_equal(runas_parse("nobody:4242", &r, &err), 0);
	assert_int_equal(r.gid, 4242);
	runas_release(&r);

	/* A uid without a passwd entry needs its group. */
	assert_int_equal(runas_parse("54321:54321", &r, &err), 0);
	assert_int_equal(r.uid, 54321);
	assert_string_equal(r.user, "54321");
	assert_string_equal(r.home, "/");
	runas_release(&r);

	static const char *const bad[][2] = {
		{"no-such-user", "no such user 'no-such-user'"},
		{"54321", "give its group"},
		{"nobody:no-such-group", "no such group 'no-such-group'"},
		{"root", "root's user"},
		{"0", "root's user"},
		{"nobody:0", "root's group"},
		{"", "want USER or USER:GROUP"},
		{"nobody:", "want USER or USER:GROUP"},
	};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		assert_int_equal(runas_parse(bad[k][0], &r, &err), -EINVAL);
		assert_non_null(strstr(err, bad[k][1]));
		free(err);
		err = NULL;
	}
}

static void test_runas__reach_names_the_first_directory_it_cannot_search(void **state)
{
	struct runas r = {.uid = 54321, .gid = 54321, .user = "u", .home = "/"};
	char tmpl[] = "/tmp/runas-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	char *a = xasprintf("%s/a", tmpl), *b = xasprintf("%s/a/b", tmpl);
	assert_int_equal(mkdir(a, 0700), 0);
	assert_int_equal(mkdir(b, 0755), 0);
	assert_int_equal(chmod(tmpl, 0711), 0);
	char *bad = NULL;
	assert_int_equal(runas_reach(&r, b, 0, &bad), -EACCES);
	assert_string_equal(bad, a);
	free(bad);
	bad = NULL;
	assert_int_equal(chmod(a, 0711), 0);
	assert_int_equal(runas_reach(&r, b, R_OK | X_OK, &bad), 0);
	assert_null(bad);
	/* Searching is not reading. */
	assert_int_equal(runas_reach(&r, a, R_OK, &bad), -EACCES);
	assert_string_equal(bad, a);
	free(bad);
	bad = NULL;
	/* Its own files go by the owner's bits. */
	assert_int_equal(chown(b, 54321, 0), 0);
	assert_int_equal(chmod(b, 0700), 0);
	assert_int_equal(runas_reach(&r, b, R_OK | W_OK | X_OK, &bad), 0);
	assert_int_equal(runas_chown_tree(&r, a), 0);
	struct stat st;
	assert_int_equal(stat(b, &st), 0);
	assert_int_equal(st.st_uid, 54321);
	assert_int_equal(st.st_gid, 54321);
	assert_int_equal(paths_remove_tree(tmpl), 0);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_util__xasprintf_formats_into_a_new_string),
		cmocka_unit_test(test_runas__names_and_numbers_resolve_and_root_is_refused),
		cmocka_unit_test(test_runas__reach_names_the_first_directory_it_cannot_search),
		cmocka_unit_test(test_util__xgrow_reaches_the_needed_size_and_keeps_contents),
		cmocka_unit_test(test_util__string_predicates),
		cmocka_unit_test(test_util__utf8_seq_takes_valid_sequences_only),
		cmocka_unit_test(test_netaddr__loopback_is_127_slash_8_ipv6_one_and_mapped_127),
		cmocka_unit_test(test_util__edit_distance_counts_insertions_deletions_substitutions),
		cmocka_unit_test(test_util__suggest_returns_a_close_candidate_or_null),
		cmocka_unit_test(test_util__str_to_i64_parses_whole_decimal_numbers),
		cmocka_unit_test(test_util__str_to_i64_rejects_overflow_and_garbage),
		cmocka_unit_test(test_util__str_to_i64_rejects_leading_white_space),
		cmocka_unit_test(test_strbuf__init_without_hint_is_empty_and_terminated),
		cmocka_unit_test(test_strbuf__release_on_a_never_grown_buffer_is_safe),
		cmocka_unit_test(test_strbuf__add_grows_past_initial_size),
		cmocka_unit_test(test_strbuf__add_keeps_embedded_nul_bytes),
		cmocka_unit_test(test_strbuf__addf_grows_past_initial_size),
		cmocka_unit_test(test_strbuf__addf_fills_the_buffer_exactly),
		cmocka_unit_test(test_strbuf__addf_of_an_empty_string_adds_nothing),
		cmocka_unit_test(test_strbuf__grows_to_several_kib),
		cmocka_unit_test(test_strbuf__grow_reserves_without_changing_content),
		cmocka_unit_test(test_strbuf__consume_removes_a_prefix),
		cmocka_unit_test(test_strbuf__detach_returns_an_owned_string_and_leaves_the_buffer_empty),
		cmocka_unit_test(test_strbuf__detach_of_a_never_grown_buffer_is_freeable),
		cmocka_unit_test(test_strbuf__reset_empties_but_keeps_capacity),
		cmocka_unit_test(test_duration__parses_every_unit),
		cmocka_unit_test(test_duration__bare_number_is_seconds),
		cmocka_unit_test(test_duration__with_unit_refuses_a_bare_number),
		cmocka_unit_test(test_duration__accepts_fractions),
		cmocka_unit_test(test_duration__rejects_bad_syntax),
		cmocka_unit_test(test_duration__rejects_values_too_large),
		cmocka_unit_test(test_duration__format_picks_the_shortest_exact_unit),
		cmocka_unit_test(test_duration__format_truncates_to_the_buffer),
		cmocka_unit_test(test_size__parses_units),
		cmocka_unit_test(test_size__mi_and_mb_forms_are_binary_units),
		cmocka_unit_test(test_size__rejects_bad_syntax_and_overflow),
		cmocka_unit_test(test_time__format_iso_is_utc_with_milliseconds),
		cmocka_unit_test(test_time__format_iso_of_now_has_the_documented_shape),
		cmocka_unit_test(test_time__format_iso_truncates_to_the_buffer),
		cmocka_unit_test(test_time__clocks_move_forward),
		cmocka_unit_test(test_hist__quantile_of_counts_interpolates_within_a_bucket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
