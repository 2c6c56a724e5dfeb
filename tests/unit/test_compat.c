/* test_compat.c: the third-party adapters under src/compat: JSON (cJSON),
 * HTTP/1.1 message parsing and URL coding (llhttp) and hashes, randomness
 * and encodings (OpenSSL). Parsers are fed exactly-sized heap copies of
 * their input, so that a read past the end shows under ASan. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat/crypto.h"
#include "compat/http.h"
#include "compat/http_stream.h"
#include "compat/json.h"
#include "compat/tls.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

/* A heap copy of n bytes with no terminating NUL; caller frees. */
static char *exact_copy(const char *s, size_t n)
{
	char *p = xmalloc(n ? n : 1);
	memcpy(p, s, n);
	return p;
}

static struct json *parse_ok(const char *text)
{
	size_t n = strlen(text);
	char *buf = exact_copy(text, n);
	char *err = NULL;
	struct json *j = json_parse(buf, n, &err);
	free(buf);
	if (!j)
		fail_msg("json_parse(%s) failed: %s", text, err ? err : "(no message)");
	assert_null(err);
	return j;
}

/* Parses text that must be refused; returns the message (caller frees). */
static char *parse_err_n(const char *text, size_t n)
{
	char *buf = exact_copy(text, n);
	char *err = NULL;
	struct json *j = json_parse(buf, n, &err);
	free(buf);
	if (j) {
		json_free(j);
		fail_msg("json_parse(%.*s) should have failed", (int)n, text);
	}
	assert_non_null(err);
	return err;
}

static char *parse_err(const char *text)
{
	return parse_err_n(text, strlen(text));
}

/* Prints compactly and compares. */
static void assert_prints(const struct json *j, const char *want)
{
	char *s = json_print(j, false);
	if (strcmp(s, want) != 0)
		fail_msg("printed:\n  %s\nexpected:\n  %s", s, want);
	free(s);
}

/* Feeds all of text as one buffer to a new parser; the message must be
 * complete and consume everything. Caller frees the parser. */
static struct http_parser *http_whole(enum http_kind kind, const char *text)
{
	struct http_parser *p = http_parser_new(kind, 8192, 65536);
	size_t n = strlen(text), used = 12345;
	char *buf = exact_copy(text, n);
	int r = http_parser_feed(p, buf, n, &used);
	free(buf);
	if (r != HTTP_FEED_COMPLETE)
		fail_msg("feed = %d (%s), expected complete", r, r < 0 ? http_parser_error(p) : "");
	assert_int_equal(used, n);
	return p;
}

/* Feeds text one byte at a time; returns the result of the last feed. */
static int http_bytewise(struct http_parser *p, const char *text, size_t *fed)
{
	size_t n = strlen(text);
	for (size_t i = 0; i < n; i++) {
		char *b = exact_copy(text + i, 1);
		size_t used = 12345;
		int r = http_parser_feed(p, b, 1, &used);
		free(b);
		if (r != HTTP_FEED_MORE) {
			if (r == HTTP_FEED_COMPLETE)
				assert_int_equal(used, 1);
			*fed = i + 1;
			return r;
		}
		assert_int_equal(used, 1);
	}
	*fed = n;
	return HTTP_FEED_MORE;
}

/* Feeds text that must fail; returns the error. */
static int http_fail(struct http_parser *p, const char *text)
{
	size_t n = strlen(text), used;
	char *buf = exact_copy(text, n);
	int r = http_parser_feed(p, buf, n, &used);
	free(buf);
	if (r >= 0)
		fail_msg("feed = %d, expected an error for:\n%s", r, text);
	return r;
}

/* ================================================================ JSON */

static void test_json__parses_every_kind_of_value(void **state)
{
	struct json *j = parse_ok("{\"s\":\"hi\\n\\u00e9\",\"i\":-42,\"f\":1.5,\"t\":true,"
				  "\"F\":false,\"n\":null,\"a\":[1,2,3],\"o\":{\"k\":\"v\"}}");
	assert_true(json_is_object(j));
	assert_string_equal(json_get_str(j, "s"), "hi\n\xc3\xa9");
	int64_t v;
	assert_int_equal(json_get_int(json_get(j, "i"), &v), 0);
	assert_int_equal(v, -42);
	assert_true(json_is_number(json_get(j, "f")));
	assert_true(json_num(json_get(j, "f")) == 1.5);
	assert_true(json_is_bool(json_get(j, "t")));
	assert_true(json_true(json_get(j, "t")));
	assert_true(json_is_bool(json_get(j, "F")));
	assert_false(json_true(json_get(j, "F")));
	assert_true(json_is_null(json_get(j, "n")));
	assert_true(json_is_array(json_get(j, "a")));
	assert_int_equal(json_size(json_get(j, "a")), 3);
	assert_int_equal(json_get_int(json_at(json_get(j, "a"), 2), &v), 0);
	assert_int_equal(v, 3);
	assert_null(json_at(json_get(j, "a"), 3));
	assert_string_equal(json_get_str(json_get(j, "o"), "k"), "v");
	json_free(j);

	/* Scalars at the top level, and surrounding white space. */
	j = parse_ok(" \n\t\"x\"\r\n ");
	assert_string_equal(json_str(j), "x");
	json_free(j);
	j = parse_ok("17");
	assert_int_equal(json_get_int(j, &v), 0);
	assert_int_equal(v, 17);
	json_free(j);
}

static void test_json__getters_answer_null_for_the_wrong_kind(void **state)
{
	struct json *j = parse_ok("{\"s\":\"text\",\"n\":5,\"a\":[\"x\"]}");
	assert_null(json_get(j, "missing"));
	assert_null(json_get(j, "S")); /* keys are case-sensitive */
	assert_null(json_get_str(j, "n"));
	assert_null(json_get_str(j, "missing"));
	assert_null(json_str(json_get(j, "n")));
	assert_null(json_str(NULL));
	assert_null(json_get(json_get(j, "a"), "x")); /* not an object */
	assert_null(json_get(NULL, "x"));
	assert_true(json_num(json_get(j, "s")) == 0);
	assert_false(json_true(json_get(j, "n")));
	assert_false(json_true(NULL));
	assert_false(json_is_object(NULL));
	assert_false(json_is_array(NULL));
	assert_false(json_is_string(NULL));
	assert_false(json_is_number(NULL));
	assert_false(json_is_bool(NULL));
	assert_false(json_is_null(NULL));
	assert_int_equal(json_size(NULL), 0);
	assert_int_equal(json_size(json_get(j, "n")), 0);
	int64_t v = 99;
	assert_int_equal(json_get_int(json_get(j, "s"), &v), -EINVAL);
	assert_int_equal(json_get_int(NULL, &v), -EINVAL);
	assert_int_equal(v, 99);
	json_free(j);
	json_free(NULL);
}

static void test_json__finds_a_key_that_appears_twice_in_one_object(void **state)
{
	static const struct {
		const char *text, *dup;
	} cases[] = {
		{"{\"a\":1,\"b\":2}", NULL},
		{"{\"a\":{\"x\":1},\"b\":{\"x\":2}}", NULL}, /* same key, other objects */
		{"[{\"a\":1},{\"a\":2}]", NULL},
		{"{\"A\":1,\"a\":2}", NULL}, /* keys are case-sensitive */
		{"{\"a\":1,\"b\":2,\"a\":3}", "a"},
		{"{\"p\":{\"web\":2,\"web\":3}}", "web"},
		{"[1,[{\"k\":1,\"k\":1}]]", "k"},
		{"7", NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct json *j = parse_ok(cases[i].text);
		const char *dup = json_duplicate_key(j);
		if (cases[i].dup ? !dup || strcmp(dup, cases[i].dup) != 0 : dup != NULL)
			fail_msg("%s: got %s", cases[i].text, dup ? dup : "NULL");
		json_free(j);
	}
}

static void test_json__refuses_invalid_input_with_a_byte_offset(void **state)
{
	static const char *const bad[] = {
		"", "   ", "{", "}", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "'x'", "tru",
		"[1 2]", "\"unterminated", "{\"a\":1,}", "nul", "-", "01x", "[\"\\x\"]",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *err = parse_err(bad[i]);
		if (!str_starts_with(err, "invalid JSON near byte "))
			fail_msg("message for %s: %s", bad[i], err);
		free(err);
	}
}

static void test_json__refuses_trailing_garbage(void **state)
{
	char *err = parse_err("{\"a\":1} x");
	assert_string_equal(err, "invalid JSON near byte 8");
	free(err);
	err = parse_err("[1][2]");
	assert_string_equal(err, "invalid JSON near byte 3");
	free(err);
	err = parse_err("true false");
	assert_string_equal(err, "invalid JSON near byte 5");
	free(err);
	/* A NUL inside the length is not the end of the input. */
	err = parse_err_n("{}\0{}", 5);
	assert_string_equal(err, "invalid JSON near byte 3");
	free(err);
	/* Without an err pointer it still fails, quietly. */
	assert_null(json_parse("{} x", 4, NULL));
}

static void test_json__error_offset_points_into_the_input(void **state)
{
	const char *text = "{\"name\":\"web\",\"n\":@}";
	char *err = parse_err(text);
	unsigned long at = 0;
	assert_int_equal(sscanf(err, "invalid JSON near byte %lu", &at), 1);
	assert_true(at < strlen(text));
	assert_true(at >= strlen("{\"name\":\"web\",\"n\":") - 1);
	free(err);
}

static void test_json__parses_only_len_bytes(void **state)
{
	/* The buffer continues past len; only the first len bytes count. */
	const char *text = "[1,2]GARBAGE";
	struct json *j = json_parse(text, 5, NULL);
	assert_non_null(j);
	assert_int_equal(json_size(j), 2);
	json_free(j);
	/* Truncated documents in exact-size buffers fail without over-reading. */
	static const char *const cut[] = {"\"abc", "[1,2", "{\"a\":tru", "1.5e", "\"\\u00", "[\"a\\"};
	for (size_t i = 0; i < ARRAY_SIZE(cut); i++)
		free(parse_err(cut[i]));
}

static void test_json__refuses_deep_nesting_without_crashing(void **state)
{
	size_t depth = 200000;
	char *text = xmalloc(2 * depth);
	memset(text, '[', depth);
	memset(text + depth, ']', depth);
	char *err = NULL;
	struct json *j = json_parse(text, 2 * depth, &err);
	assert_null(j);
	assert_non_null(err);
	free(err);
	free(text);
	/* Moderate nesting is fine. */
	json_free(parse_ok("[[[[[[[[[[{\"a\":[[[[[[[[[[1]]]]]]]]]]}]]]]]]]]]]"));
}

static void test_json__builds_and_prints_compactly(void **state)
{
	struct json *o = json_object();
	json_set_str(o, "name", "web");
	json_set_int(o, "n", 3);
	json_set_bool(o, "ok", true);
	json_set_str(o, "none", NULL);
	json_set_num(o, "half", 0.5);
	struct json *list = json_set(o, "list", json_array());
	json_append(list, json_int(1));
	json_append(list, json_string("two"));
	json_append(list, json_array());
	json_append(list, json_null());
	json_append(list, json_bool(false));
	assert_prints(o, "{\"name\":\"web\",\"n\":3,\"ok\":true,\"none\":null,\"half\":0.5,"
			 "\"list\":[1,\"two\",[],null,false]}");
	assert_int_equal(json_size(o), 6);
	assert_int_equal(json_size(list), 5);
	/* Adders return the child they were given. */
	struct json *child = json_object();
	assert_ptr_equal(json_set(o, "child", child), child);
	struct json *el = json_string("e");
	assert_ptr_equal(json_append(list, el), el);
	json_free(o);
}

static void test_json__pretty_print_parses_back_to_the_same_tree(void **state)
{
	struct json *o = parse_ok("{\"a\":[1,{\"b\":null}],\"c\":\"d\"}");
	char *pretty = json_print(o, true);
	assert_non_null(strchr(pretty, '\n'));
	struct json *back = parse_ok(pretty);
	assert_prints(back, "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}");
	free(pretty);
	json_free(back);
	json_free(o);
}

static void test_json__print_escapes_and_round_trips(void **state)
{
	struct json *o = json_object();
	json_set_str(o, "quote\"key", "say \"hi\"\\ \n\t\x01 \xe2\x82\xac </script>");
	json_set_int(o, "big", 1700000000123LL);
	json_set_int(o, "neg", -9000000000000000LL);
	json_set_num(o, "pi", 3.141592653589793);
	char *s = json_print(o, false);
	struct json *back = parse_ok(s);
	char *again = json_print(back, false);
	assert_string_equal(s, again);
	assert_string_equal(json_get_str(back, "quote\"key"),
			    "say \"hi\"\\ \n\t\x01 \xe2\x82\xac </script>");
	int64_t v;
	assert_int_equal(json_get_int(json_get(back, "big"), &v), 0);
	assert_true(v == 1700000000123LL);
	assert_int_equal(json_get_int(json_get(back, "neg"), &v), 0);
	assert_true(v == -9000000000000000LL);
	assert_true(json_num(json_get(back, "pi")) == 3.141592653589793);
	/* Control characters never appear raw. */
	assert_null(strchr(s, '\n'));
	assert_null(strchr(s, '\x01'));
	free(s);
	free(again);
	json_free(back);
	json_free(o);
}

static void test_json__get_int_accepts_only_integral_values(void **state)
{
	struct json *j = parse_ok("{\"one\":1,\"zero\":0,\"neg\":-5,\"exp\":1e3,\"onefive\":1.5,"
				  "\"tiny\":1e-9,\"huge\":1e300,\"big\":1e16,\"nbig\":-1e16,"
				  "\"limit\":9000000000000000,\"str\":\"1\",\"bool\":true,\"nul\":null,"
				  "\"negfrac\":-0.5}");
	int64_t v;
	assert_int_equal(json_get_int(json_get(j, "one"), &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(json_get_int(json_get(j, "zero"), &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(json_get_int(json_get(j, "neg"), &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(json_get_int(json_get(j, "exp"), &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(json_get_int(json_get(j, "limit"), &v), 0);
	assert_true(v == 9000000000000000LL);
	static const char *const bad[] = {"onefive", "tiny", "huge", "big",  "nbig",
					  "str",     "bool", "nul",  "negfrac", "missing"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		v = 777;
		int r = json_get_int(json_get(j, bad[i]), &v);
		if (r != -EINVAL)
			fail_msg("json_get_int(%s) = %d, expected -EINVAL", bad[i], r);
		assert_int_equal(v, 777);
	}
	json_free(j);
}

static void test_json__remove_deletes_a_member_and_ignores_missing_ones(void **state)
{
	struct json *o = parse_ok("{\"a\":1,\"b\":[1,2],\"c\":3}");
	json_remove(o, "b");
	assert_null(json_get(o, "b"));
	assert_prints(o, "{\"a\":1,\"c\":3}");
	json_remove(o, "nope");
	json_remove(o, "A"); /* case-sensitive: "a" stays */
	assert_prints(o, "{\"a\":1,\"c\":3}");
	json_remove(o, "a");
	json_remove(o, "c");
	assert_prints(o, "{}");
	assert_int_equal(json_size(o), 0);
	json_free(o);
}

static void test_json__dup_is_a_deep_independent_copy(void **state)
{
	struct json *o = parse_ok("{\"a\":{\"b\":[1,2]},\"s\":\"x\"}");
	struct json *d = json_dup(o);
	assert_ptr_not_equal(d, o);
	assert_prints(d, "{\"a\":{\"b\":[1,2]},\"s\":\"x\"}");
	/* Changing the original leaves the copy alone ... */
	json_append(json_get(json_get(o, "a"), "b"), json_int(3));
	json_remove(o, "s");
	json_set_str(o, "t", "y");
	assert_prints(d, "{\"a\":{\"b\":[1,2]},\"s\":\"x\"}");
	/* ... and the copy outlives it. */
	json_free(o);
	assert_string_equal(json_get_str(d, "s"), "x");
	json_set_int(d, "n", 1);
	assert_prints(d, "{\"a\":{\"b\":[1,2]},\"s\":\"x\",\"n\":1}");
	json_free(d);

	/* Scalars duplicate too. */
	struct json *s = json_string("solo");
	struct json *sd = json_dup(s);
	json_free(s);
	assert_string_equal(json_str(sd), "solo");
	json_free(sd);
}

static void test_json__iterates_members_in_order_with_keys(void **state)
{
	struct json *o = parse_ok("{\"z\":1,\"a\":2,\"m\":3}");
	static const char *const keys[] = {"z", "a", "m"};
	size_t k = 0;
	for (struct json *m = json_first(o); m; m = json_next(m), k++) {
		assert_true(k < 3);
		assert_string_equal(json_key(m), keys[k]);
		int64_t v;
		assert_int_equal(json_get_int(m, &v), 0);
		assert_int_equal(v, (int64_t)k + 1);
	}
	assert_int_equal(k, 3);
	json_free(o);

	struct json *a = parse_ok("[\"x\",\"y\"]");
	k = 0;
	for (struct json *e = json_first(a); e; e = json_next(e), k++) {
		assert_string_equal(json_str(e), k == 0 ? "x" : "y");
		assert_null(json_key(e));
	}
	assert_int_equal(k, 2);
	json_free(a);

	struct json *empty = parse_ok("{}");
	assert_null(json_first(empty));
	json_free(empty);
	struct json *scalar = parse_ok("5");
	assert_null(json_first(scalar));
	json_free(scalar);
	assert_null(json_first(NULL));
	assert_null(json_next(NULL));
	assert_null(json_key(NULL));
}

/* ================================================================ HTTP */

static const char simple_get[] = "GET /apps/web?x=1 HTTP/1.1\r\n"
				 "Host: localhost\r\n"
				 "Authorization: Bearer pso_abc\r\n"
				 "X-Many: 1\r\n"
				 "\r\n";

static void test_http__parses_a_whole_request(void **state)
{
	struct http_parser *p = http_whole(HTTP_KIND_REQUEST, simple_get);
	struct http_msg *m = http_parser_msg(p);
	assert_string_equal(m->method, "GET");
	assert_string_equal(m->url.buf, "/apps/web?x=1");
	assert_int_equal(m->n_headers, 3);
	assert_string_equal(m->headers[0].name, "Host");
	assert_string_equal(m->headers[0].value, "localhost");
	assert_string_equal(m->headers[2].name, "X-Many");
	assert_int_equal(m->body.len, 0);
	assert_true(m->keep_alive);
	assert_false(m->chunked);
	http_parser_free(p);
	http_parser_free(NULL);
}

static void test_http__header_lookup_is_case_insensitive(void **state)
{
	struct http_parser *p = http_whole(HTTP_KIND_REQUEST, simple_get);
	struct http_msg *m = http_parser_msg(p);
	assert_string_equal(http_msg_header(m, "authorization"), "Bearer pso_abc");
	assert_string_equal(http_msg_header(m, "AUTHORIZATION"), "Bearer pso_abc");
	assert_string_equal(http_msg_header(m, "host"), "localhost");
	assert_null(http_msg_header(m, "Content-Length"));
	assert_null(http_msg_header(m, "Hos"));
	http_parser_free(p);
}

static void test_http__parses_a_request_fed_one_byte_at_a_time(void **state)
{
	static const char text[] = "POST /apps/web/scale HTTP/1.1\r\n"
				   "Host: localhost\r\n"
				   "Content-Type: application/json\r\n"
				   "X-Long-Header-Name: a value with spaces\r\n"
				   "Content-Length: 13\r\n"
				   "\r\n"
				   "{\"web\": 3 }\r\n";
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 65536);
	size_t fed = 0;
	assert_int_equal(http_bytewise(p, text, &fed), HTTP_FEED_COMPLETE);
	assert_int_equal(fed, strlen(text));
	struct http_msg *m = http_parser_msg(p);
	assert_string_equal(m->method, "POST");
	assert_string_equal(m->url.buf, "/apps/web/scale");
	assert_int_equal(m->n_headers, 4);
	assert_string_equal(m->headers[0].name, "Host");
	assert_string_equal(m->headers[0].value, "localhost");
	assert_string_equal(http_msg_header(m, "x-long-header-name"), "a value with spaces");
	assert_string_equal(http_msg_header(m, "content-type"), "application/json");
	assert_int_equal(m->body.len, 13);
	assert_string_equal(m->body.buf, "{\"web\": 3 }\r\n");
	http_parser_free(p);
}

static void test_http__keeps_an_empty_header_value_apart_from_the_next_header(void **state)
{
	static const char text[] = "GET / HTTP/1.1\r\nX-Empty:\r\nHost: h\r\nX-Blank:   \r\n\r\n";
	struct http_parser *p = http_whole(HTTP_KIND_REQUEST, text);
	struct http_msg *m = http_parser_msg(p);
	assert_int_equal(m->n_headers, 3);
	assert_string_equal(m->headers[0].name, "X-Empty");
	assert_string_equal(m->headers[0].value, "");
	assert_string_equal(http_msg_header(m, "host"), "h");
	assert_non_null(http_msg_header(m, "x-blank"));
	http_parser_free(p);
}

static void test_http__splits_two_pipelined_requests(void **state)
{
	static const char text[] = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
				   "POST /two HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz";
	size_t first_len = strlen("GET /one HTTP/1.1\r\nHost: a\r\n\r\n");
	size_t n = strlen(text);
	char *buf = exact_copy(text, n);
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 65536);

	size_t used = 0;
	assert_int_equal(http_parser_feed(p, buf, n, &used), HTTP_FEED_COMPLETE);
	assert_int_equal(used, first_len);
	struct http_msg *m = http_parser_msg(p);
	assert_string_equal(m->method, "GET");
	assert_string_equal(m->url.buf, "/one");
	assert_string_equal(http_msg_header(m, "host"), "a");

	/* Until reset, the finished message stays and nothing more is taken. */
	size_t again = 99;
	assert_int_equal(http_parser_feed(p, buf + used, n - used, &again), HTTP_FEED_COMPLETE);
	assert_int_equal(again, 0);

	http_parser_reset(p);
	size_t used2 = 0;
	assert_int_equal(http_parser_feed(p, buf + used, n - used, &used2), HTTP_FEED_COMPLETE);
	assert_int_equal(used2, n - first_len);
	m = http_parser_msg(p);
	assert_string_equal(m->method, "POST");
	assert_string_equal(m->url.buf, "/two");
	assert_int_equal(m->n_headers, 2);
	assert_string_equal(http_msg_header(m, "host"), "b");
	assert_string_equal(m->body.buf, "xyz");
	free(buf);
	http_parser_free(p);
}

static void test_http__reset_reuses_the_parser_for_many_requests(void **state)
{
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 65536);
	for (int i = 0; i < 50; i++) {
		char *req = xasprintf("GET /r%d HTTP/1.1\r\nHost: h\r\nX-I: %d\r\n\r\n", i, i);
		size_t n = strlen(req), used;
		assert_int_equal(http_parser_feed(p, req, n, &used), HTTP_FEED_COMPLETE);
		assert_int_equal(used, n);
		struct http_msg *m = http_parser_msg(p);
		char want[16];
		snprintf(want, sizeof(want), "/r%d", i);
		assert_string_equal(m->url.buf, want);
		assert_int_equal(m->n_headers, 2);
		snprintf(want, sizeof(want), "%d", i);
		assert_string_equal(http_msg_header(m, "x-i"), want);
		free(req);
		http_parser_reset(p);
	}
	http_parser_free(p);
}

static void test_http__decodes_a_chunked_body(void **state)
{
	static const char text[] = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
	struct http_parser *p = http_whole(HTTP_KIND_REQUEST, text);
	struct http_msg *m = http_parser_msg(p);
	assert_true(m->chunked);
	assert_int_equal(m->body.len, 11);
	assert_string_equal(m->body.buf, "hello world");
	http_parser_free(p);

	/* The same, a byte at a time. */
	p = http_parser_new(HTTP_KIND_REQUEST, 8192, 65536);
	size_t fed;
	assert_int_equal(http_bytewise(p, text, &fed), HTTP_FEED_COMPLETE);
	assert_int_equal(fed, strlen(text));
	assert_string_equal(http_parser_msg(p)->body.buf, "hello world");
	http_parser_free(p);
}

static void test_http__keep_alive_follows_version_and_connection(void **state)
{
	struct http_parser *p =
		http_whole(HTTP_KIND_REQUEST, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
	assert_false(http_parser_msg(p)->keep_alive);
	http_parser_free(p);
	p = http_whole(HTTP_KIND_REQUEST, "GET / HTTP/1.0\r\n\r\n");
	assert_false(http_parser_msg(p)->keep_alive);
	http_parser_free(p);
	p = http_whole(HTTP_KIND_REQUEST, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	assert_true(http_parser_msg(p)->keep_alive);
	http_parser_free(p);
}

static void test_http__refuses_a_content_length_over_max_body(void **state)
{
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 100);
	/* Refused from the head alone, before any body arrives. */
	assert_int_equal(http_fail(p, "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n"), -EFBIG);
	http_parser_free(p);

	/* Exactly max_body is fine. */
	p = http_parser_new(HTTP_KIND_REQUEST, 8192, 100);
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_adds(&sb, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
	for (int i = 0; i < 100; i++)
		strbuf_addc(&sb, 'b');
	size_t used;
	assert_int_equal(http_parser_feed(p, sb.buf, sb.len, &used), HTTP_FEED_COMPLETE);
	assert_int_equal(http_parser_msg(p)->body.len, 100);
	strbuf_release(&sb);
	http_parser_free(p);
}

static void test_http__refuses_a_chunked_body_over_max_body(void **state)
{
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 10);
	assert_int_equal(http_fail(p, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"),
			 -EFBIG);
	http_parser_free(p);
}

static void test_http__refuses_a_head_over_max_header(void **state)
{
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 256, 1024);
	struct strbuf sb;
	strbuf_init(&sb, 0);
	strbuf_adds(&sb, "GET / HTTP/1.1\r\nX-Big: ");
	for (int i = 0; i < 300; i++)
		strbuf_addc(&sb, 'v');
	strbuf_adds(&sb, "\r\n\r\n");
	assert_int_equal(http_fail(p, sb.buf), -EMSGSIZE);
	http_parser_free(p);

	/* Many small headers add up too, even fed a byte at a time. */
	strbuf_reset(&sb);
	strbuf_adds(&sb, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 40; i++)
		strbuf_addf(&sb, "X-H%d: value\r\n", i);
	strbuf_adds(&sb, "\r\n");
	p = http_parser_new(HTTP_KIND_REQUEST, 256, 1024);
	size_t fed;
	assert_int_equal(http_bytewise(p, sb.buf, &fed), -EMSGSIZE);
	assert_true(fed < sb.len);
	http_parser_free(p);

	/* A long URL counts. */
	strbuf_reset(&sb);
	strbuf_adds(&sb, "GET /");
	for (int i = 0; i < 400; i++)
		strbuf_addc(&sb, 'u');
	strbuf_adds(&sb, " HTTP/1.1\r\n\r\n");
	p = http_parser_new(HTTP_KIND_REQUEST, 256, 1024);
	assert_int_equal(http_fail(p, sb.buf), -EMSGSIZE);
	http_parser_free(p);
	strbuf_release(&sb);
}

static void test_http__refuses_garbage_with_a_message(void **state)
{
	static const char *const bad[] = {
		"\x01\x02\x03 garbage\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"NOTAMETHODATALL / HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 65536);
		int r = http_fail(p, bad[i]);
		if (r != -EPROTO)
			fail_msg("case %zu: feed = %d, expected -EPROTO", i, r);
		const char *msg = http_parser_error(p);
		assert_non_null(msg);
		assert_true(strlen(msg) > 0);
		http_parser_free(p);
	}
}

static void test_http__reset_after_an_error_starts_clean(void **state)
{
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 100);
	assert_int_equal(http_fail(p, "\x01garbage\r\n\r\n"), -EPROTO);
	http_parser_reset(p);
	size_t used;
	const char *ok = "GET /fine HTTP/1.1\r\n\r\n";
	assert_int_equal(http_parser_feed(p, ok, strlen(ok), &used), HTTP_FEED_COMPLETE);
	assert_string_equal(http_parser_msg(p)->url.buf, "/fine");
	http_parser_free(p);
}

/* After a size error and a reset, a later malformed message must be reported
 * as malformed, not as too large again. */
static void test_http__reset_after_a_size_error_forgets_it(void **state)
{
	struct http_parser *p = http_parser_new(HTTP_KIND_REQUEST, 8192, 10);
	assert_int_equal(http_fail(p, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), -EFBIG);
	http_parser_reset(p);
	assert_int_equal(http_fail(p, "\x01garbage\r\n\r\n"), -EPROTO);
	http_parser_free(p);
}

static void test_http__parses_a_response_with_content_length(void **state)
{
	struct http_parser *p = http_whole(HTTP_KIND_RESPONSE, "HTTP/1.1 404 Not Found\r\n"
							       "Content-Type: application/json\r\n"
							       "Content-Length: 2\r\n\r\n{}");
	struct http_msg *m = http_parser_msg(p);
	assert_int_equal(m->status, 404);
	assert_string_equal(m->body.buf, "{}");
	assert_string_equal(http_msg_header(m, "content-type"), "application/json");
	http_parser_free(p);
}

static void test_http__response_body_ended_by_eof_completes_on_finish(void **state)
{
	static const char text[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, world";
	struct http_parser *p = http_parser_new(HTTP_KIND_RESPONSE, 8192, 65536);
	size_t n = strlen(text), used;
	char *buf = exact_copy(text, n);
	assert_int_equal(http_parser_feed(p, buf, n, &used), HTTP_FEED_MORE);
	assert_int_equal(used, n);
	free(buf);
	assert_int_equal(http_parser_finish(p), HTTP_FEED_COMPLETE);
	struct http_msg *m = http_parser_msg(p);
	assert_int_equal(m->status, 200);
	assert_string_equal(m->body.buf, "hello, world");
	/* Finishing again answers the same. */
	assert_int_equal(http_parser_finish(p), HTTP_FEED_COMPLETE);
	http_parser_free(p);
}

static void test_http__eof_in_the_middle_of_a_body_is_an_error(void **state)
{
	static const char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
	struct http_parser *p = http_parser_new(HTTP_KIND_RESPONSE, 8192, 65536);
	size_t used;
	assert_int_equal(http_parser_feed(p, text, strlen(text), &used), HTTP_FEED_MORE);
	assert_int_equal(http_parser_finish(p), -EPROTO);
	assert_true(strlen(http_parser_error(p)) > 0);
	http_parser_free(p);

	/* EOF before anything at all is not a message. */
	p = http_parser_new(HTTP_KIND_RESPONSE, 8192, 65536);
	assert_int_equal(http_parser_finish(p), HTTP_FEED_MORE);
	http_parser_free(p);
}

struct collected {
	struct strbuf data;
	int calls;
	int stop_after; /* 0: never */
};

static int collect(void *ctx, const char *data, size_t len)
{
	struct collected *c = ctx;
	strbuf_add(&c->data, data, len);
	c->calls++;
	return c->stop_after && c->calls >= c->stop_after;
}

static void test_http__streams_a_response_body_to_the_callback(void **state)
{
	struct collected c = {.stop_after = 0};
	strbuf_init(&c.data, 0);
	/* max_body 0: unlimited when streaming. */
	struct http_parser *p = http_parser_new(HTTP_KIND_RESPONSE, 8192, 0);
	http_parser_stream_body(p, collect, &c);
	static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	size_t used;
	assert_int_equal(http_parser_feed(p, head, strlen(head), &used), HTTP_FEED_MORE);
	size_t total = 0;
	for (int i = 0; i < 100; i++) {
		char chunk[600];
		char line[520];
		memset(line, 'a' + i % 26, 512);
		line[512] = '\0';
		int n = snprintf(chunk, sizeof(chunk), "200\r\n%s\r\n", line);
		assert_int_equal(http_parser_feed(p, chunk, (size_t)n, &used), HTTP_FEED_MORE);
		total += 512;
	}
	assert_int_equal(http_parser_feed(p, "0\r\n\r\n", 5, &used), HTTP_FEED_COMPLETE);
	assert_int_equal(c.data.len, total);
	assert_int_equal(c.data.buf[0], 'a');
	assert_int_equal(c.data.buf[total - 1], 'a' + 99 % 26);
	/* Streamed bytes are not also buffered. */
	assert_int_equal(http_parser_msg(p)->body.len, 0);
	strbuf_release(&c.data);
	http_parser_free(p);
}

static void test_http__body_callback_can_stop_the_parse(void **state)
{
	struct collected c = {.stop_after = 1};
	strbuf_init(&c.data, 0);
	struct http_parser *p = http_parser_new(HTTP_KIND_RESPONSE, 8192, 0);
	http_parser_stream_body(p, collect, &c);
	static const char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst";
	size_t used;
	assert_true(http_parser_feed(p, text, strlen(text), &used) < 0);
	assert_int_equal(c.calls, 1);
	assert_string_equal(c.data.buf, "first");
	strbuf_release(&c.data);
	http_parser_free(p);
}

static void test_http__reason_phrases(void **state)
{
	assert_string_equal(http_reason(200), "OK");
	assert_string_equal(http_reason(404), "Not Found");
	assert_string_equal(http_reason(413), "Content Too Large");
	assert_string_equal(http_reason(206), "Partial Content");
	assert_string_equal(http_reason(414), "URI Too Long");
	assert_string_equal(http_reason(501), "Not Implemented");
	assert_string_equal(http_reason(505), "HTTP Version Not Supported");
	/* The phrase is optional: none for a code without one. */
	assert_string_equal(http_reason(599), "");
}

static void test_http__url_decode_decodes_escapes(void **state)
{
	char s1[] = "a%20b%2Fc%2fd%7E";
	assert_int_equal(http_url_decode(s1, false), 0);
	assert_string_equal(s1, "a b/c/d~");
	char s2[] = "%e2%82%AC";
	assert_int_equal(http_url_decode(s2, false), 0);
	assert_string_equal(s2, "\xe2\x82\xac");
	char s3[] = "plain";
	assert_int_equal(http_url_decode(s3, true), 0);
	assert_string_equal(s3, "plain");
	char s4[] = "";
	assert_int_equal(http_url_decode(s4, true), 0);
	assert_string_equal(s4, "");
	char s5[] = "%25%32%30"; /* decoded once, not twice */
	assert_int_equal(http_url_decode(s5, false), 0);
	assert_string_equal(s5, "%20");
}

static void test_http__url_decode_handles_plus_by_request(void **state)
{
	char q[] = "a+b%2Bc";
	assert_int_equal(http_url_decode(q, true), 0);
	assert_string_equal(q, "a b+c");
	char path[] = "a+b%2Bc";
	assert_int_equal(http_url_decode(path, false), 0);
	assert_string_equal(path, "a+b+c");
}

static void test_http__url_decode_refuses_bad_escapes(void **state)
{
	static const char *const bad[] = {"%", "abc%", "%4", "a%4", "%zz", "%g0", "%0g", "%%", "% 1",
					  "%-1"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		/* Exact-size copies, so that a read past the NUL shows under ASan. */
		size_t n = strlen(bad[i]);
		char *s = exact_copy(bad[i], n + 1);
		if (http_url_decode(s, true) != -EINVAL)
			fail_msg("http_url_decode(\"%s\") accepted", bad[i]);
		free(s);
	}
}

static void test_http__url_encode_escapes_all_but_unreserved(void **state)
{
	char *e = http_url_encode("AZaz09-_.~");
	assert_string_equal(e, "AZaz09-_.~");
	free(e);
	e = http_url_encode("a b/c?d=e&f+g%\xe2\x82\xac");
	assert_string_equal(e, "a%20b%2Fc%3Fd%3De%26f%2Bg%25%E2%82%AC");
	free(e);
	e = http_url_encode("");
	assert_string_equal(e, "");
	free(e);
	/* Decoding undoes encoding for every byte value. */
	char all[256];
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	e = http_url_encode(all);
	assert_int_equal(http_url_decode(e, false), 0);
	assert_string_equal(e, all);
	free(e);
}

/* ============================================================== crypto */

static void test_crypto__sha256_matches_known_vectors(void **state)
{
	char hex[CRYPTO_SHA256_HEX];
	crypto_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	crypto_sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	crypto_sha256_hex(two, strlen(two), hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_crypto__base64url_is_unpadded_and_url_safe(void **state)
{
	char *s = crypto_base64url("hello", 5);
	assert_string_equal(s, "aGVsbG8");
	free(s);
	s = crypto_base64url("", 0);
	assert_string_equal(s, "");
	free(s);
	static const unsigned char fb[] = {0xfb, 0xff, 0xfe};
	s = crypto_base64url(fb, 3);
	assert_string_equal(s, "-__-"); /* standard base64 would be "+//+" */
	free(s);
	s = crypto_base64url(fb, 1);
	assert_string_equal(s, "-w");
	free(s);
	s = crypto_base64url(fb, 2);
	assert_string_equal(s, "-_8");
	free(s);

	unsigned char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	for (size_t len = 0; len <= 256; len++) {
		s = crypto_base64url(all + (256 - len), len);
		assert_int_equal(strlen(s), (4 * len + 2) / 3);
		assert_null(strpbrk(s, "+/="));
		free(s);
	}
}

static void test_crypto__hex_encodes_lowercase(void **state)
{
	static const unsigned char b[] = {0x00, 0xab, 0xff, 0x10};
	char *s = crypto_hex(b, sizeof(b));
	assert_string_equal(s, "00abff10");
	free(s);
	s = crypto_hex(b, 0);
	assert_string_equal(s, "");
	free(s);
}

static void test_crypto__equal_compares_whole_buffers(void **state)
{
	assert_true(crypto_equal("abcdef", "abcdef", 6));
	assert_false(crypto_equal("abcdef", "abcdeg", 6));
	assert_false(crypto_equal("xbcdef", "abcdef", 6));
	assert_true(crypto_equal("abcX", "abcY", 3)); /* only len bytes */
	assert_true(crypto_equal("a", "b", 0));
}

static void test_crypto__random_fills_and_differs(void **state)
{
	unsigned char a[64], b[64], zero[64] = {0};
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	assert_int_equal(crypto_random(a, sizeof(a)), 0);
	assert_int_equal(crypto_random(b, sizeof(b)), 0);
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypto_random(a, 0), 0);
}

static void test_crypto__hkdf_matches_rfc5869_and_separates_purposes(void **state)
{
	/* RFC 5869, test case 3: SHA-256, no salt, no info. */
	unsigned char ikm[22], okm[42];
	memset(ikm, 0x0b, sizeof(ikm));
	crypto_hkdf_sha256(ikm, sizeof(ikm), "", okm, sizeof(okm));
	char *hex = crypto_hex(okm, sizeof(okm));
	assert_string_equal(hex, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
				 "9d201395faa4b61a96c8");
	free(hex);
	/* Another purpose, another key; the same purpose, the same key. */
	unsigned char a[32], b[32], c[32];
	crypto_hkdf_sha256(ikm, sizeof(ikm), "purpose a", a, sizeof(a));
	crypto_hkdf_sha256(ikm, sizeof(ikm), "purpose b", b, sizeof(b));
	crypto_hkdf_sha256(ikm, sizeof(ikm), "purpose a", c, sizeof(c));
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_equal(a, c, sizeof(a));
}

static void test_crypto__seal_round_trips_and_detects_tampering(void **state)
{
	unsigned char key[CRYPTO_KEY_BYTES], other[CRYPTO_KEY_BYTES];
	memset(key, 7, sizeof(key));
	memset(other, 8, sizeof(other));
	char *a = crypto_seal(key, "hunter2");
	char *b = crypto_seal(key, "hunter2");
	assert_non_null(strstr(a, "v1:"));
	assert_null(strstr(a, "hunter2"));
	assert_string_not_equal(a, b); /* a fresh nonce each time */
	char *back = crypto_open(key, a);
	assert_string_equal(back, "hunter2");
	free(back);
	assert_null(crypto_open(other, a));
	size_t n = strlen(a);
	a[n - 2] = a[n - 2] == 'A' ? 'B' : 'A';
	assert_null(crypto_open(key, a));
	assert_null(crypto_open(key, "plain"));
	assert_null(crypto_open(key, "v1:"));
	char *empty = crypto_seal(key, "");
	back = crypto_open(key, empty);
	assert_string_equal(back, "");
	free(back);
	free(empty);
	free(a);
	free(b);
}

/* -------------------------------------------------------------- tls */

/* A file holding text, in a fresh directory; caller removes both. */
static char *write_temp(char *dir, const char *name, const char *text)
{
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_tls__server_ctx_names_a_missing_certificate(void **state)
{
	char *err = NULL;
	assert_null(tls_server_ctx_new("/nonexistent/cert.pem", NULL, &err));
	assert_string_equal(err, "cannot read TLS certificate '/nonexistent/cert.pem': "
				 "No such file or directory");
	free(err);
}

static void test_tls__server_ctx_names_a_missing_key(void **state)
{
	char dir[] = "/tmp/paasops-test-tls-XXXXXX";
	char *cert = write_temp(dir, "cert.pem", "not a certificate\n");
	char *err = NULL;
	assert_null(tls_server_ctx_new(cert, "/nonexistent/key.pem", &err));
	assert_string_equal(err, "cannot read TLS key '/nonexistent/key.pem': No such file or directory");
	free(err);
	unlink(cert);
	rmdir(dir);
	free(cert);
}

static void test_tls__server_ctx_names_a_file_that_is_not_pem(void **state)
{
	char dir[] = "/tmp/paasops-test-tls-XXXXXX";
	char *cert = write_temp(dir, "cert.pem", "not a certificate\n");
	char *err = NULL;
	/* The key "in the certificate file" is that file too. */
	assert_null(tls_server_ctx_new(cert, NULL, &err));
	char *want = xasprintf("cannot use TLS certificate '%s': no PEM certificate in it "
			       "(no '-----BEGIN CERTIFICATE-----' line)", cert);
	assert_string_equal(err, want);
	free(want);
	free(err);
	unlink(cert);
	rmdir(dir);
	free(cert);
}

/* SNI picks a certificate by these rules: a wildcard is one whole
 * label, never zero or two; case does not matter. */
static void test_tls__name_match_takes_exact_names_and_one_label_wildcards(void **state)
{
	assert_true(tls_name_match("shop.example.com", "shop.example.com"));
	assert_true(tls_name_match("shop.example.com", "SHOP.Example.COM"));
	assert_false(tls_name_match("shop.example.com", "example.com"));
	assert_false(tls_name_match("shop.example.com", "xshop.example.com"));
	assert_true(tls_name_match("*.example.com", "a.example.com"));
	assert_true(tls_name_match("*.example.com", "A-1.EXAMPLE.com"));
	assert_false(tls_name_match("*.example.com", "example.com"));
	assert_false(tls_name_match("*.example.com", "a.b.example.com"));
	assert_false(tls_name_match("*.example.com", ".example.com"));
	assert_false(tls_name_match("*.example.com", "a.example.org"));
	assert_false(tls_name_match("*.example.com", "aexample.com"));
	/* Only a leading "*." is a wildcard; anything else is a plain name. */
	assert_false(tls_name_match("*", "example"));
	assert_false(tls_name_match("f*.example.com", "foo.example.com"));
	assert_true(tls_name_match("f*.example.com", "f*.example.com"));
}

static int wait_never(void *arg, int fd, bool for_write)
{
	return 0; /* the socketpair already holds what there is to read */
}

/* A blocking client facing peer bytes that are no TLS: a TLS error with a
 * reason, not a hang; facing a closed peer: -ECONNRESET. */
static void test_tls__blocking_client_fails_cleanly_on_a_peer_that_is_not_tls(void **state)
{
	struct tls_config cfg = {0};
	char *err = NULL;
	struct tls_ctx *ctx = tls_client_ctx_new(&cfg, &err);
	assert_non_null(ctx);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	const char *reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	assert_int_equal(write(sv[1], reply, strlen(reply)), (ssize_t)strlen(reply));
	struct tls_conn *t = NULL;
	assert_int_equal(tls_conn_client(ctx, sv[0], "localhost", wait_never, NULL, &t, &err),
			 -ECONNABORTED);
	assert_null(t);
	assert_non_null(err);
	assert_true(strncmp(err, "TLS: ", 5) == 0);
	free(err);
	err = NULL;
	close(sv[0]);
	close(sv[1]);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	int r = tls_conn_client(ctx, sv[0], "127.0.0.1", wait_never, NULL, &t, &err);
	assert_true(r == -ECONNRESET || r == -EPIPE);
	assert_null(t);
	assert_null(err);
	close(sv[0]);
	tls_ctx_free(ctx);
}

/* ------------------------------------------------------ http_stream */

/* What the stream callbacks saw: a copy of each head's headers. */
struct seen {
	int heads, completes;
	char names[16][64], values[16][64];
	unsigned char ids[16];
	size_t n;
	char host[64], conn[64];
	unsigned n_host, n_cl;
	struct strbuf body;
};

static int seen_head(void *ctx, struct http_head *h)
{
	struct seen *s = ctx;
	s->heads++;
	s->n = h->n_headers < 16 ? h->n_headers : 16;
	for (size_t k = 0; k < s->n; k++) {
		snprintf(s->names[k], sizeof(s->names[k]), "%s", h->headers[k].name);
		snprintf(s->values[k], sizeof(s->values[k]), "%s", h->headers[k].value);
		s->ids[k] = h->ids[k];
	}
	snprintf(s->host, sizeof(s->host), "%s", h->first[HH_HOST] ? h->first[HH_HOST] : "(none)");
	snprintf(s->conn, sizeof(s->conn), "%s", h->first[HH_CONNECTION] ? h->first[HH_CONNECTION] : "(none)");
	s->n_host = h->count[HH_HOST];
	s->n_cl = h->count[HH_CONTENT_LENGTH];
	return 0;
}

static int seen_body(void *ctx, const char *data, size_t len)
{
	strbuf_add(&((struct seen *)ctx)->body, data, len);
	return 0;
}

static void seen_complete(void *ctx)
{
	((struct seen *)ctx)->completes++;
}

static const struct http_stream_cbs seen_cbs = {seen_head, seen_body, seen_complete};

/* Feeds text in pieces of at most step bytes (each an exact heap copy);
 * returns the last result. */
static int feed_steps(struct http_stream *st, const char *text, size_t step)
{
	size_t n = strlen(text), at = 0;
	int rc = HTTP_STREAM_OK;
	while (at < n) {
		size_t k = n - at < step ? n - at : step;
		char *piece = exact_copy(text + at, k);
		size_t used = 0;
		rc = http_stream_feed(st, piece, k, &used);
		free(piece);
		at += used;
		if (rc == HTTP_STREAM_PAUSED)
			http_stream_next(st);
		else if (rc != HTTP_STREAM_OK)
			return rc;
	}
	return rc;
}

static void test_http_stream__names_and_values_whole_or_split(void **state)
{
	static const char text[] = "GET /a HTTP/1.1\r\nHost: example.org\r\nX-Empty:\r\n"
				   "CONNECTION: close, X-Hop\r\nX-Long-Header-Name: v1\r\n\r\n";
	for (size_t step = 1; step <= sizeof(text); step = step * 2 + 1) {
		struct seen s = {0};
		strbuf_init(&s.body, 0);
		struct http_stream *st = http_stream_new(HTTP_KIND_REQUEST, 8192, &seen_cbs, &s);
		feed_steps(st, text, step);
		assert_int_equal(s.heads, 1);
		assert_int_equal(s.completes, 1);
		assert_int_equal(s.n, 4);
		assert_string_equal(s.names[0], "Host");
		assert_string_equal(s.values[0], "example.org");
		assert_string_equal(s.names[1], "X-Empty");
		assert_string_equal(s.values[1], "");
		assert_string_equal(s.names[2], "CONNECTION");
		assert_string_equal(s.values[2], "close, X-Hop");
		assert_string_equal(s.names[3], "X-Long-Header-Name");
		assert_string_equal(s.values[3], "v1");
		assert_int_equal(s.ids[0], HH_HOST);
		assert_int_equal(s.ids[1], HH_OTHER);
		assert_int_equal(s.ids[2], HH_CONNECTION);
		assert_int_equal(s.ids[3], HH_OTHER);
		assert_string_equal(s.host, "example.org");
		assert_string_equal(s.conn, "close, X-Hop");
		http_stream_free(st);
		strbuf_release(&s.body);
	}
}

static void test_http_stream__recognises_names_in_any_case(void **state)
{
	static const struct {
		const char *name;
		enum http_hdr id;
	} cases[] = {
		{"host", HH_HOST},
		{"Content-Length", HH_CONTENT_LENGTH},
		{"transfer-ENCODING", HH_TRANSFER_ENCODING},
		{"Connection", HH_CONNECTION},
		{"Keep-Alive", HH_KEEP_ALIVE},
		{"Proxy-Connection", HH_PROXY_CONNECTION},
		{"TE", HH_TE},
		{"Trailer", HH_TRAILER},
		{"Upgrade", HH_UPGRADE},
		{"x-forwarded-for", HH_X_FORWARDED_FOR},
		{"X-Forwarded-Proto", HH_X_FORWARDED_PROTO},
		{"X-Forwarded-Host", HH_X_FORWARDED_HOST},
		{"X-Request-ID", HH_X_REQUEST_ID},
		{"Cookie", HH_COOKIE},
		{"Hosts", HH_OTHER},
		{"Te-", HH_OTHER},
		{"X-Forwarded-Fox", HH_OTHER},
		{"Content-Type", HH_OTHER},
		{"", HH_OTHER},
	};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++)
		assert_int_equal(http_hdr_id(cases[k].name, strlen(cases[k].name)), cases[k].id);
}

static void test_http_stream__counts_repeated_headers_per_message(void **state)
{
	static const char text[] = "POST / HTTP/1.1\r\nHost: a\r\nhost: b\r\nContent-Length: 3\r\n\r\nabc"
				   "GET / HTTP/1.1\r\nHost: c\r\n\r\n";
	struct seen s = {0};
	strbuf_init(&s.body, 0);
	struct http_stream *st = http_stream_new(HTTP_KIND_REQUEST, 8192, &seen_cbs, &s);
	size_t n = strlen(text), used = 0;
	char *buf = exact_copy(text, n);
	assert_int_equal(http_stream_feed(st, buf, n, &used), HTTP_STREAM_PAUSED);
	assert_int_equal(s.n_host, 2);
	assert_int_equal(s.n_cl, 1);
	assert_string_equal(s.host, "a");
	assert_string_equal(s.body.buf, "abc");
	http_stream_next(st);
	size_t more = 0;
	assert_int_equal(http_stream_feed(st, buf + used, n - used, &more), HTTP_STREAM_PAUSED);
	assert_int_equal(used + more, n);
	assert_int_equal(s.heads, 2);
	assert_int_equal(s.n_host, 1);
	assert_int_equal(s.n_cl, 0);
	assert_string_equal(s.host, "c");
	assert_string_equal(s.conn, "(none)");
	free(buf);
	http_stream_free(st);
	strbuf_release(&s.body);
}

static void test_http_stream__refuses_a_head_over_the_limit(void **state)
{
	struct seen s = {0};
	strbuf_init(&s.body, 0);
	struct http_stream *st = http_stream_new(HTTP_KIND_REQUEST, 48, &seen_cbs, &s);
	int rc = feed_steps(st, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: 0123456789012345678901234567890123456789"
				"0123456789\r\n\r\n", 7);
	assert_int_equal(rc, -EMSGSIZE);
	assert_int_equal(s.heads, 0);
	http_stream_free(st);
	strbuf_release(&s.body);
}

static void test_http_stream__values_lose_trailing_whitespace(void **state)
{
	for (size_t step = 1; step <= 64; step += 63) {
		struct seen s = {0};
		strbuf_init(&s.body, 0);
		struct http_stream *st = http_stream_new(HTTP_KIND_REQUEST, 4096, &seen_cbs, &s);
		int rc = feed_steps(st, "GET / HTTP/1.1\r\nHost: a.test \t\r\nX-A:  a b  \r\nX-E:   \r\n\r\n", step);
		assert_int_equal(rc, HTTP_STREAM_PAUSED);
		assert_int_equal(s.heads, 1);
		assert_string_equal(s.host, "a.test");
		assert_string_equal(s.values[1], "a b");
		assert_string_equal(s.values[2], "");
		http_stream_free(st);
		strbuf_release(&s.body);
	}
}

static void test_http_stream__refuses_a_header_without_a_name(void **state)
{
	struct seen s = {0};
	strbuf_init(&s.body, 0);
	struct http_stream *st = http_stream_new(HTTP_KIND_REQUEST, 4096, &seen_cbs, &s);
	int rc = feed_steps(st, "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", 64);
	assert_int_equal(rc, -EPROTO);
	assert_string_equal(http_stream_error(st), "a header without a name");
	assert_int_equal(s.heads, 0);
	http_stream_free(st);
	strbuf_release(&s.body);
}

static void test_http_stream__tells_a_long_target_from_long_headers(void **state)
{
	struct seen s = {0};
	strbuf_init(&s.body, 0);
	struct http_stream *st = http_stream_new(HTTP_KIND_REQUEST, 48, &seen_cbs, &s);
	assert_int_equal(feed_steps(st, "GET /01234567890123456789012345678901234567890123456789 HTTP/1.1\r\n\r\n", 7),
			 -EMSGSIZE);
	assert_true(http_stream_url_too_long(st));
	http_stream_free(st);
	st = http_stream_new(HTTP_KIND_REQUEST, 48, &seen_cbs, &s);
	assert_int_equal(feed_steps(st, "GET / HTTP/1.1\r\nX-Big: 01234567890123456789012345678901234567890123456789\r\n\r\n", 7),
			 -EMSGSIZE);
	assert_false(http_stream_url_too_long(st));
	http_stream_free(st);
	strbuf_release(&s.body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls__server_ctx_names_a_missing_certificate),
		cmocka_unit_test(test_tls__server_ctx_names_a_missing_key),
		cmocka_unit_test(test_tls__server_ctx_names_a_file_that_is_not_pem),
		cmocka_unit_test(test_tls__name_match_takes_exact_names_and_one_label_wildcards),
		cmocka_unit_test(test_tls__blocking_client_fails_cleanly_on_a_peer_that_is_not_tls),
		cmocka_unit_test(test_json__parses_every_kind_of_value),
		cmocka_unit_test(test_json__getters_answer_null_for_the_wrong_kind),
		cmocka_unit_test(test_json__refuses_invalid_input_with_a_byte_offset),
		cmocka_unit_test(test_json__finds_a_key_that_appears_twice_in_one_object),
		cmocka_unit_test(test_json__refuses_trailing_garbage),
		cmocka_unit_test(test_json__error_offset_points_into_the_input),
		cmocka_unit_test(test_json__parses_only_len_bytes),
		cmocka_unit_test(test_json__refuses_deep_nesting_without_crashing),
		cmocka_unit_test(test_json__builds_and_prints_compactly),
		cmocka_unit_test(test_json__pretty_print_parses_back_to_the_same_tree),
		cmocka_unit_test(test_json__print_escapes_and_round_trips),
		cmocka_unit_test(test_json__get_int_accepts_only_integral_values),
		cmocka_unit_test(test_json__remove_deletes_a_member_and_ignores_missing_ones),
		cmocka_unit_test(test_json__dup_is_a_deep_independent_copy),
		cmocka_unit_test(test_json__iterates_members_in_order_with_keys),
		cmocka_unit_test(test_http__parses_a_whole_request),
		cmocka_unit_test(test_http__header_lookup_is_case_insensitive),
		cmocka_unit_test(test_http__parses_a_request_fed_one_byte_at_a_time),
		cmocka_unit_test(test_http__keeps_an_empty_header_value_apart_from_the_next_header),
		cmocka_unit_test(test_http__splits_two_pipelined_requests),
		cmocka_unit_test(test_http__reset_reuses_the_parser_for_many_requests),
		cmocka_unit_test(test_http__decodes_a_chunked_body),
		cmocka_unit_test(test_http__keep_alive_follows_version_and_connection),
		cmocka_unit_test(test_http__refuses_a_content_length_over_max_body),
		cmocka_unit_test(test_http__refuses_a_chunked_body_over_max_body),
		cmocka_unit_test(test_http__refuses_a_head_over_max_header),
		cmocka_unit_test(test_http__refuses_garbage_with_a_message),
		cmocka_unit_test(test_http__reset_after_an_error_starts_clean),
		cmocka_unit_test(test_http__reset_after_a_size_error_forgets_it),
		cmocka_unit_test(test_http__parses_a_response_with_content_length),
		cmocka_unit_test(test_http__response_body_ended_by_eof_completes_on_finish),
		cmocka_unit_test(test_http__eof_in_the_middle_of_a_body_is_an_error),
		cmocka_unit_test(test_http__streams_a_response_body_to_the_callback),
		cmocka_unit_test(test_http__body_callback_can_stop_the_parse),
		cmocka_unit_test(test_http__reason_phrases),
		cmocka_unit_test(test_http_stream__names_and_values_whole_or_split),
		cmocka_unit_test(test_http_stream__recognises_names_in_any_case),
		cmocka_unit_test(test_http_stream__counts_repeated_headers_per_message),
		cmocka_unit_test(test_http_stream__refuses_a_head_over_the_limit),
		cmocka_unit_test(test_http_stream__values_lose_trailing_whitespace),
		cmocka_unit_test(test_http_stream__refuses_a_header_without_a_name),
		cmocka_unit_test(test_http_stream__tells_a_long_target_from_long_headers),
		cmocka_unit_test(test_http__url_decode_decodes_escapes),
		cmocka_unit_test(test_http__url_decode_handles_plus_by_request),
		cmocka_unit_test(test_http__url_decode_refuses_bad_escapes),
		cmocka_unit_test(test_http__url_encode_escapes_all_but_unreserved),
		cmocka_unit_test(test_crypto__sha256_matches_known_vectors),
		cmocka_unit_test(test_crypto__base64url_is_unpadded_and_url_safe),
		cmocka_unit_test(test_crypto__hex_encodes_lowercase),
		cmocka_unit_test(test_crypto__equal_compares_whole_buffers),
		cmocka_unit_test(test_crypto__random_fills_and_differs),
		cmocka_unit_test(test_crypto__seal_round_trips_and_detects_tampering),
		cmocka_unit_test(test_crypto__hkdf_matches_rfc5869_and_separates_purposes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
