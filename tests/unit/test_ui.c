/* test_ui.c: the dashboard's files compiled into the binary (src/ui): lookup
 * by name, their strong ETags, and If-None-Match matching. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ui/ui.h"
#include <stdbool.h>
#include <string.h>

static void test_ui__empty_name_is_the_index_page(void **state)
{
	const struct ui_asset *a = ui_asset_find("");
	assert_non_null(a);
	assert_ptr_equal(a, ui_asset_find("index.html"));
	assert_string_equal(a->content_type, "text/html; charset=utf-8");
	assert_true(a->len > 0);
	assert_memory_equal(a->data, "<!doctype html>", 15);
}

static void test_ui__files_have_their_content_types(void **state)
{
	assert_string_equal(ui_asset_find("app.js")->content_type, "text/javascript; charset=utf-8");
	assert_string_equal(ui_asset_find("style.css")->content_type, "text/css; charset=utf-8");
}

static void test_ui__unknown_names_are_not_found(void **state)
{
	const char *bad[] = {"nope", "app.js/", "/app.js", "./app.js", "../app.js", "app", "APP.JS",
			     "app.js.map", "index.html/x", ".."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ui_asset_find(bad[i]))
			fail_msg("'%s' was found", bad[i]);
}

static void test_ui__etag_is_a_quoted_sha256_that_tells_files_apart(void **state)
{
	char e1[UI_ETAG_MAX], e2[UI_ETAG_MAX], again[UI_ETAG_MAX];
	ui_asset_etag(ui_asset_find("app.js"), e1);
	ui_asset_etag(ui_asset_find("style.css"), e2);
	ui_asset_etag(ui_asset_find("app.js"), again);
	assert_int_equal(strlen(e1), 66);
	assert_true(e1[0] == '"' && e1[65] == '"');
	assert_int_equal(strspn(e1 + 1, "0123456789abcdef"), 64);
	assert_string_equal(e1, again);
	assert_string_not_equal(e1, e2);
}

static void test_ui__if_none_match_names_the_etag(void **state)
{
	const char *tag = "\"abc\"";
	assert_true(ui_etag_matches("\"abc\"", tag));
	assert_true(ui_etag_matches("*", tag));
	assert_true(ui_etag_matches("W/\"abc\"", tag)); /* weak comparison */
	assert_true(ui_etag_matches("\"x\", \"abc\"", tag));
	assert_true(ui_etag_matches("\"x\",W/\"abc\" ,\"y\"", tag));
	assert_false(ui_etag_matches(NULL, tag));
	assert_false(ui_etag_matches("", tag));
	assert_false(ui_etag_matches("\"abcd\"", tag));
	assert_false(ui_etag_matches("\"ab\"", tag));
	assert_false(ui_etag_matches("abc", tag));        /* unquoted */
	assert_false(ui_etag_matches("\"abc", tag));      /* unterminated */
	assert_false(ui_etag_matches("\"x\", abc", tag)); /* malformed after a tag */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ui__empty_name_is_the_index_page),
		cmocka_unit_test(test_ui__files_have_their_content_types),
		cmocka_unit_test(test_ui__unknown_names_are_not_found),
		cmocka_unit_test(test_ui__etag_is_a_quoted_sha256_that_tells_files_apart),
		cmocka_unit_test(test_ui__if_none_match_names_the_etag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
