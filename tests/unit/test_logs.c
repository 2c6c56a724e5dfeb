/* test_logs.c: the logs module: what a line says (JSON, logfmt, level
 * words), escaping, the query language (parser and matching), chunks
 * (encode/decode round trip, bloom filters and their false-positive rate),
 * and the whole store on a temporary data dir: queries, rate limits with
 * their marker, retention by size, per app and by age, reopening. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat/gzip.h"
#include "compat/json.h"
#include "core/paths.h"
#include "core/util.h"
#include "logs/logs.h"
#include "logs/logs_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- parse */

static const char *field(const struct logs_parsed *p, const char *key)
{
	for (size_t k = 0; k < p->n_fields; k++)
		if (strcmp(logs_field_key(p, &p->fields[k]), key) == 0)
			return logs_field_val(p, &p->fields[k]);
	return NULL;
}

static void parse(struct logs_parsed *p, const char *line, int stream)
{
	logs_parse(p, line, strlen(line), stream);
}

static void test_logs_parse__json_lifts_level_message_and_fields(void **state)
{
	struct logs_parsed p;
	logs_parsed_init(&p);
	parse(&p, "{\"level\":\"WARNING\",\"msg\":\"disk low\",\"free\":3,\"ok\":false,"
		  "\"http\":{\"status\":503,\"path\":\"/x\"},\"tags\":[1,2],\"n\":null}", 0);
	assert_true(p.json);
	assert_int_equal(p.level, LOGS_LEVEL_WARN);
	assert_true(p.has_msg);
	assert_string_equal(p.scratch.buf + p.msg, "disk low");
	assert_string_equal(field(&p, "free"), "3");
	assert_string_equal(field(&p, "ok"), "false");
	assert_string_equal(field(&p, "http.status"), "503");
	assert_string_equal(field(&p, "http.path"), "/x");
	assert_string_equal(field(&p, "n"), "null");
	assert_null(field(&p, "tags"));
	/* pino's numeric levels */
	parse(&p, "{\"level\":50,\"message\":\"boom\"}", 0);
	assert_int_equal(p.level, LOGS_LEVEL_ERROR);
	assert_string_equal(p.scratch.buf + p.msg, "boom");
	/* Not an object, or broken: plain text. */
	parse(&p, "[1,2,3]", 0);
	assert_false(p.json);
	parse(&p, "{\"level\":\"error\"", 0);
	assert_false(p.json);
	logs_parsed_release(&p);
}

static void test_logs_parse__logfmt_lifts_fields_and_quoted_values(void **state)
{
	struct logs_parsed p;
	logs_parsed_init(&p);
	parse(&p, "time=2026-11-29T22:57:15Z level=error msg=\"db \\\"main\\\" down\" retries=3 x= =y user.id=7", 0);
	assert_true(p.logfmt);
	assert_int_equal(p.level, LOGS_LEVEL_ERROR);
	assert_string_equal(p.scratch.buf + p.msg, "db \"main\" down");
	assert_string_equal(field(&p, "retries"), "3");
	assert_string_equal(field(&p, "x"), "");
	assert_string_equal(field(&p, "user.id"), "7");
	assert_null(field(&p, "y"));
	/* A plain line with one pair still lifts it. */
	parse(&p, "processed job 48213 in 23ms user=alice", 0);
	assert_string_equal(field(&p, "user"), "alice");
	assert_false(p.has_msg);
	logs_parsed_release(&p);
}

static void test_logs_parse__level_words_in_plain_lines(void **state)
{
	static const struct {
		const char *line;
		int level;
	} cases[] = {
		{"ERROR cannot connect", LOGS_LEVEL_ERROR},
		{"2026-11-29 22:57:15 WARN slow query", LOGS_LEVEL_WARN},
		{"[info] listening on 8080", LOGS_LEVEL_INFO},
		{"Debug: cache miss", LOGS_LEVEL_DEBUG},
		{"I 12:00 FATAL: out of memory", LOGS_LEVEL_FATAL},
		{"the error was handled", LOGS_LEVEL_NONE},
		{"error handling request", LOGS_LEVEL_NONE}, /* lower case, no colon: a word */
		{"one two three four ERROR", LOGS_LEVEL_NONE},  /* too far in */
		{"", LOGS_LEVEL_NONE},
	};
	struct logs_parsed p;
	logs_parsed_init(&p);
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		parse(&p, cases[k].line, 0);
		if (p.level != cases[k].level)
			fail_msg("'%s': level %d, want %d", cases[k].line, p.level, cases[k].level);
	}
	/* Router lines: the level comes from the status. */
	parse(&p, "method=GET path=\"/\" status=503 duration_ms=2.0", 2);
	assert_int_equal(p.level, LOGS_LEVEL_ERROR);
	parse(&p, "method=GET path=\"/\" status=404", 2);
	assert_int_equal(p.level, LOGS_LEVEL_WARN);
	parse(&p, "method=GET path=\"/\" status=200", 2);
	assert_int_equal(p.level, LOGS_LEVEL_INFO);
	logs_parsed_release(&p);
}

static void test_logs_parse__json_bombs_are_bounded(void **state)
{
	struct logs_parsed p;
	logs_parsed_init(&p);
	/* Deep nesting: refused by the JSON adapter, kept as text. */
	struct strbuf sb;
	strbuf_init(&sb, 0);
	for (int k = 0; k < 4000; k++)
		strbuf_adds(&sb, "{\"a\":");
	strbuf_adds(&sb, "1");
	for (int k = 0; k < 4000; k++)
		strbuf_addc(&sb, '}');
	logs_parse(&p, sb.buf, sb.len, 0);
	assert_true(p.n_fields <= LOGS_MAX_FIELDS);
	/* Wide: at most LOGS_MAX_FIELDS fields. */
	strbuf_reset(&sb);
	strbuf_addc(&sb, '{');
	for (int k = 0; k < 1000; k++)
		strbuf_addf(&sb, "%s\"k%d\":%d", k ? "," : "", k, k);
	strbuf_addc(&sb, '}');
	logs_parse(&p, sb.buf, sb.len, 0);
	assert_true(p.json);
	assert_int_equal(p.n_fields, LOGS_MAX_FIELDS);
	/* NUL bytes: never parsed as JSON. */
	logs_parse(&p, "{\"a\":\"b\0\"}", 10, 0);
	assert_false(p.json);
	strbuf_release(&sb);
	logs_parsed_release(&p);
}

static void test_logs_escape__invalid_utf8_nul_and_controls(void **state)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	const char in[] = "ok \xc3\xa9 \xff\xfe nul\0 \x1b[31mred \xe2\x82";
	logs_escape_utf8(&sb, in, sizeof(in) - 1);
	assert_string_equal(sb.buf, "ok \xc3\xa9 \\xff\\xfe nul\\x00 \x1b[31mred \\xe2\\x82");
	strbuf_reset(&sb);
	logs_escape_tty(&sb, in, sizeof(in) - 1);
	assert_string_equal(sb.buf, "ok \xc3\xa9 \\xff\\xfe nul\\x00 \\x1b[31mred \\xe2\\x82");
	/* Overlong encodings and surrogates are invalid. */
	strbuf_reset(&sb);
	logs_escape_utf8(&sb, "\xc0\xaf\xed\xa0\x80", 5);
	assert_string_equal(sb.buf, "\\xc0\\xaf\\xed\\xa0\\x80");
	strbuf_release(&sb);
}

/* ---------------------------------------------------------------- query */

static void assert_q(const char *q, const char *want)
{
	char *err = NULL;
	struct logs_node *n = logs_q_parse(q, &err);
	if (!n)
		fail_msg("'%s': %s", q, err ? err : "(empty)");
	struct strbuf sb;
	strbuf_init(&sb, 0);
	logs_node_format(n, &sb);
	if (strcmp(sb.buf, want) != 0)
		fail_msg("'%s' parsed as %s, want %s", q, sb.buf, want);
	strbuf_release(&sb);
	logs_node_free(n);
}

static void assert_q_error(const char *q, const char *needle)
{
	char *err = NULL;
	struct logs_node *n = logs_q_parse(q, &err);
	if (n || !err || !strstr(err, needle))
		fail_msg("'%s': want an error with '%s', got %s", q, needle, err ? err : "a query");
	free(err);
}

static void test_logs_q__parses_words_phrases_fields_and_operators(void **state)
{
	assert_q("timeout", "\"timeout\"");
	assert_q("Timeout DB", "(AND \"timeout\" \"db\")");
	assert_q("a b OR c", "(OR (AND \"a\" \"b\") \"c\")");
	assert_q("a OR b c", "(OR \"a\" (AND \"b\" \"c\"))");
	assert_q("a AND (b OR c)", "(AND \"a\" (OR \"b\" \"c\"))");
	assert_q("NOT a -b", "(AND (NOT \"a\") (NOT \"b\"))");
	assert_q("\"connection reset\" user:alice", "(AND \"connection reset\" user:alice)");
	assert_q("path:\"/a b\"", "path:/a b");
	assert_q("\"say \\\"hi\\\"\"", "\"say \"hi\"\"");
	assert_q("and or not", "(AND (AND \"and\" \"or\") \"not\")");
	assert_q("-", "\"-\"");
	assert_q("10.0.0.1:8080", "\"10.0.0.1:8080\"");
	char *err = NULL;
	assert_null(logs_q_parse("   ", &err));
	assert_null(err);
	assert_q_error("(a", "missing ')'");
	assert_q_error("a OR", "ends where a word");
	assert_q_error("\"open", "unterminated phrase");
	assert_q_error("user:", "needs a value");
	assert_q_error("a )", "unexpected ')'");
	assert_q_error("\"\"", "empty phrase");
	assert_q_error("OR a", "unexpected OR");
	/* The record's own values take what the filters take. */
	assert_q_error("level:bogus", "invalid level 'bogus'");
	assert_q_error("level:30", "invalid level '30'");
	assert_q_error("a OR stream:bogus", "invalid stream 'bogus'");
	assert_q_error("release:abc", "invalid release 'abc'");
	assert_q_error("release:0", "invalid release '0'");
}

static bool matches(const char *q, const char *line, int stream)
{
	struct logs_filter f;
	logs_filter_init(&f);
	char *err = NULL;
	if (logs_filter_set(&f, "q", q, 0, &err) < 0)
		fail_msg("'%s': %s", q, err);
	struct logs_rec r = {.seq = 1, .t_ns = 1, .release = 3, .stream = (uint8_t)stream,
			     .app = "shop", .process = "web", .instance = "shop.web.1",
			     .text = line, .len = (uint32_t)strlen(line)};
	struct logs_parsed p;
	logs_parsed_init(&p);
	logs_parse(&p, line, r.len, stream);
	r.level = (uint8_t)p.level;
	logs_parsed_release(&p);
	struct logs_match_ctx m;
	logs_match_ctx_init(&m);
	bool ok = logs_filter_match(&f, &r, &m);
	logs_match_ctx_release(&m);
	logs_filter_release(&f);
	return ok;
}

static void test_logs_q__matches_at_word_boundaries_ignoring_case(void **state)
{
	assert_true(matches("error", "an ERROR happened", 0));
	assert_false(matches("err", "an error happened", 0));
	assert_false(matches("error", "errors happened", 0));
	assert_true(matches("/api/", "GET /api/users", 0));
	assert_true(matches("api/users", "GET /api/users?x=1", 0));
	assert_true(matches("\"connection reset by\"", "read: Connection reset by peer", 0));
	assert_false(matches("\"reset connection\"", "read: Connection reset by peer", 0));
	assert_true(matches("10.0.0.1", "from 10.0.0.1:80", 0));
	assert_false(matches("10.0.0.1", "from 10.0.0.12", 0));
	assert_true(matches("a OR zzz", "a b", 0));
	assert_false(matches("a AND zzz", "a b", 0));
	assert_true(matches("NOT zzz", "a b", 0));
	assert_false(matches("-a", "a b", 0));
	assert_true(matches("caf\xc3\xa9", "un caf\xc3\xa9 noir", 0));
	/* Case is ignored for ASCII letters only, as doc/logs.md says. */
	assert_true(matches("CAF\xc3\xa9", "un caf\xc3\xa9 noir", 0));
	assert_true(matches("CAF\xc3\x89", "un caf\xc3\x89 noir", 0));
	assert_false(matches("CAF\xc3\x89", "un caf\xc3\xa9 noir", 0));
}

static void test_logs_q__fields_and_attributes(void **state)
{
	assert_true(matches("user:alice", "{\"user\":\"Alice\",\"msg\":\"hi\"}", 0));
	assert_false(matches("user:alic", "{\"user\":\"alice\"}", 0));
	assert_true(matches("status:503", "method=GET status=503", 2));
	assert_true(matches("http.status:503", "{\"http\":{\"status\":503}}", 0));
	assert_true(matches("level:error", "{\"level\":\"err\"}", 0));
	assert_false(matches("level:warn", "{\"level\":\"err\"}", 0));
	assert_true(matches("stream:stderr", "x", 1));
	assert_false(matches("stream:stderr", "x", 0));
	assert_true(matches("process:web instance:shop.web.1 release:3 app:shop", "x", 0));
	assert_false(matches("release:4", "x", 0));
	assert_true(matches("release:v3 stream:STDOUT level:ERR", "{\"level\":\"error\"}", 0));
	assert_false(matches("process:worker", "x", 0));
	/* user:alice is a field, not the text "user:alice" */
	assert_false(matches("user:alice", "note user:alice", 0));
}

static void assert_shown(const char *url, const char *want)
{
	char *got = logs_drain_url_shown(url);
	if (strcmp(got, want) != 0)
		fail_msg("'%s' shown as '%s', want '%s'", url, got, want);
	free(got);
}

static void test_logs_drain__urls_are_shown_without_credentials(void **state)
{
	assert_shown("http://user:s3cretpw@127.0.0.1:18183/cred?token=abc123",
		     "http://user:********@127.0.0.1:18183/cred?token=********");
	assert_shown("https://TOKEN@logs.example.com/in", "https://********@logs.example.com/in");
	assert_shown("https://:pw@h/a?x=1&y=&z#frag", "https://********@h/a?x=********&y=&********#frag");
	assert_shown("https://h/p/a@b?k=v", "https://h/p/a@b?k=********");
	assert_shown("http://a:b@c@host:1/", "http://a:********@host:1/");
	assert_shown("syslog://logs.internal:514", "syslog://logs.internal:514");
	assert_shown("syslog+tls://h:6514?ca=/etc/ca.pem", "syslog+tls://h:6514?ca=/etc/ca.pem");
}

static void test_logs_filter__parameters(void **state)
{
	struct logs_filter f;
	logs_filter_init(&f);
	char *err = NULL;
	int64_t now = 2000000000LL * 1000000000LL;
	assert_int_equal(logs_filter_set(&f, "since", "1h", now, &err), 0);
	assert_true(f.since_ns == now - 3600LL * 1000000000LL);
	assert_int_equal(logs_filter_set(&f, "until", "2026-11-29T22:57:15.5+01:00", now, &err), 0);
	assert_int_equal(logs_filter_set(&f, "since", "2024-02-29T23:59:59Z", now, &err), 0);
	assert_true(f.until_ns == (1795993035LL - 3600) * 1000000000LL + 500000000LL);
	assert_int_equal(logs_filter_set(&f, "stream", "stderr,router", now, &err), 0);
	assert_int_equal(f.streams, (1u << 1) | (1u << 2));
	assert_int_equal(logs_filter_set(&f, "level", "warning", now, &err), 0);
	assert_int_equal(f.min_level, LOGS_LEVEL_WARN);
	assert_int_equal(logs_filter_set(&f, "release", "v7", now, &err), 0);
	assert_int_equal(f.release, 7);
	assert_int_equal(logs_filter_set(&f, "app", "a,b", now, &err), 0);
	assert_int_equal(f.n_apps, 2);
	char *scope[] = {"b", "c"};
	logs_filter_scope(&f, scope, 2);
	assert_int_equal(f.n_apps, 1);
	assert_string_equal(f.apps[0], "b");
	static const char *const bad[][2] = {
		{"since", "yesterday"}, {"stream", "stdin"}, {"level", "loud"}, {"level", "50"},
		{"release", "x"}, {"q", "(a"}, {"until", "2026-11-29T22:57:15"},
		{"since", "2026-13-45T00:00:00Z"}, {"since", "2026-11-30T99:00:00Z"},
		{"since", "2026-02-30T00:00:00Z"}, {"since", "2026-11-30T10:60:00Z"},
		{"since", "2026-11-30T10:00:00+25:00"}, {"since", "2026-11-30T10:00:00+01:99"},
		{"since", "2026- 1-30T10:00:00Z"}, {"since", "+026-11-30T10:00:00Z"},
	};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		err = NULL;
		if (logs_filter_set(&f, bad[k][0], bad[k][1], now, &err) != -EINVAL || !err)
			fail_msg("%s=%s accepted", bad[k][0], bad[k][1]);
		free(err);
	}
	logs_filter_release(&f);
}

/* --------------------------------------------------------------- chunks */

static void test_logs_chunk__round_trip_and_bloom(void **state)
{
	struct logs_builder b;
	logs_builder_init(&b);
	struct logs_parsed p;
	logs_parsed_init(&p);
	struct gzip_deflater *z = gzip_deflater_new(1);
	const char bin[] = "bin\0ary \xff\xfe";
	struct logs_rec recs[] = {
		{.seq = 10, .t_ns = 1000, .release = 2, .stream = 0, .level = 3, .process = "web",
		 .instance = "shop.web.1", .text = "GET /api/users 200", .len = 18},
		{.seq = 11, .t_ns = 900, .release = 2, .stream = 1, .level = 5, .process = "web",
		 .instance = "shop.web.2", .text = "{\"user\":\"bob\",\"msg\":\"x\"}", .len = 24},
		{.seq = 15, .t_ns = 5000, .release = 3, .stream = 3, .level = 0, .process = "",
		 .instance = "", .text = bin, .len = sizeof(bin) - 1},
		{.seq = 16, .t_ns = 5001, .release = 3, .stream = 2, .level = 0, .process = "worker",
		 .instance = "shop.worker.1", .text = "", .len = 0},
	};
	for (size_t k = 0; k < ARRAY_SIZE(recs); k++) {
		logs_parse(&p, recs[k].text, recs[k].len, recs[k].stream);
		logs_builder_add(&b, &recs[k], &p);
		if (k == 0)
			logs_builder_cut(&b); /* as after a flush: a small chunk starts at 1 */
	}
	for (int whole = 0; whole < 2; whole++) {
		size_t from = whole ? 0 : 1;
		struct logs_chunk c;
		logs_chunk_encode(&b, from, b.n, "shop", z, &c);
		assert_int_equal(c.n_lines, b.n - from);
		assert_int_equal(c.seq_min, recs[from].seq);
		assert_int_equal(c.seq_max, 16);
		assert_true(c.t_min == (whole ? 900 : 900) && c.t_max == 5001);
		assert_int_equal(c.streams, whole ? 0xf : 0xe);
		struct logs_blocks bl;
		logs_blocks_init(&bl);
		assert_int_equal(logs_blocks_open(&bl, c.data.buf, c.data.len), 0);
		assert_int_equal(bl.n, 1);
		assert_int_equal(bl.b[0].n_lines, b.n - from);
		struct logs_view v;
		logs_view_init(&v);
		assert_int_equal(logs_view_decode(&v, bl.b[0].data, bl.b[0].len), 0);
		assert_int_equal(v.n, b.n - from);
		for (size_t k = 0; k < v.n; k++) {
			struct logs_rec r;
			logs_view_get(&v, k, "shop", &r);
			const struct logs_rec *w = &recs[from + k];
			assert_true(r.seq == w->seq && r.t_ns == w->t_ns && r.release == w->release);
			assert_int_equal(r.stream, w->stream);
			assert_int_equal(r.level, w->level);
			assert_string_equal(r.process, w->process);
			assert_string_equal(r.instance, w->instance);
			assert_int_equal(r.len, w->len);
			if (w->len)
				assert_memory_equal(r.text, w->text, w->len);
		}
		/* Every word, field and attribute is in the filter. */
		const uint32_t *bw = c.bloom.words;
		uint32_t nb = c.bloom.nblocks;
		assert_true(!whole || logs_bloom_test(bw, nb, logs_hash_word("users", 5)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_word("BOB", 3)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_field("user", 4, "Bob", 3)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_attr('i', "shop.worker.1", 13)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_attr('r', "3", 1)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_attr('a', "shop", 4)));
		/* The block's own filter has the same, but for the app. */
		bw = bl.words + bl.b[0].words;
		nb = bl.b[0].nblocks;
		assert_true(nb > 0);
		assert_true(logs_bloom_test(bw, nb, logs_hash_word("BOB", 3)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_field("user", 4, "Bob", 3)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_attr('i', "shop.worker.1", 13)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_attr('p', "worker", 6)));
		assert_true(logs_bloom_test(bw, nb, logs_hash_attr('r', "3", 1)));
		logs_view_release(&v);
		logs_blocks_release(&bl);
		logs_chunk_release(&c);
	}
	/* Damaged data is refused. */
	struct logs_view v;
	logs_view_init(&v);
	assert_int_equal(logs_view_decode(&v, "garbage", 7), -EINVAL);
	logs_view_release(&v);
	struct logs_blocks bl;
	logs_blocks_init(&bl);
	assert_int_equal(logs_blocks_open(&bl, "garbage", 7), -EINVAL);
	assert_int_equal(logs_blocks_open(&bl, "plb2\x05\x01", 6), -EINVAL);
	logs_blocks_release(&bl);
	logs_parsed_release(&p);
	logs_builder_release(&b);
	gzip_deflater_free(z);
}

/* A chunk of many lines is stored in blocks of about LOGS_BLOCK_BYTES, each
 * with its own filter: a word of one line passes its block's filter and
 * (nearly) no other; every line comes back, in order, across the blocks. */
static void test_logs_chunk__blocks_have_their_own_filters(void **state)
{
	struct logs_builder b;
	logs_builder_init(&b);
	struct logs_parsed p;
	logs_parsed_init(&p);
	struct gzip_deflater *z = gzip_deflater_new(1);
	char line[128];
	const size_t n = 4000;
	for (size_t k = 0; k < n; k++) {
		int len = snprintf(line, sizeof(line), "GET /api/users/%zu 200 req=r%06zux user=u%zu", k, k, k % 7);
		struct logs_rec r = {.seq = 100 + k, .t_ns = (int64_t)k * 1000, .release = 1 + (int)(k / 2000),
				     .process = "web", .instance = k % 2 ? "shop.web.1" : "shop.web.2",
				     .text = line, .len = (uint32_t)len};
		logs_parse(&p, line, (size_t)len, 0);
		logs_builder_add(&b, &r, &p);
		if (k == 1000)
			logs_builder_cut(&b); /* a flush: the blocks may be uneven */
	}
	struct logs_chunk c;
	logs_chunk_encode(&b, 0, b.n, "shop", z, &c);
	assert_true(logs_bloom_test(c.bloom.words, c.bloom.nblocks, logs_hash_word("r003210x", 8)));
	struct logs_blocks bl;
	logs_blocks_init(&bl);
	assert_int_equal(logs_blocks_open(&bl, c.data.buf, c.data.len), 0);
	assert_true(bl.n >= 8);
	struct logs_view v;
	logs_view_init(&v);
	uint64_t seq = 100;
	size_t passing = 0, holder = SIZE_MAX;
	for (size_t k = 0; k < bl.n; k++) {
		assert_int_equal(logs_view_decode(&v, bl.b[k].data, bl.b[k].len), 0);
		assert_int_equal(v.n, bl.b[k].n_lines);
		assert_true(v.n < n);
		for (size_t i = 0; i < v.n; i++) {
			struct logs_rec r;
			logs_view_get(&v, i, "shop", &r);
			assert_int_equal(r.seq, seq);
			int len = snprintf(line, sizeof(line), "GET /api/users/%zu 200 req=r%06zux user=u%zu",
					   (size_t)(seq - 100), (size_t)(seq - 100), (size_t)(seq - 100) % 7);
			assert_int_equal(r.len, len);
			assert_memory_equal(r.text, line, r.len);
			if (seq - 100 == 3210)
				holder = k;
			seq++;
		}
		const uint32_t *w = bl.words + bl.b[k].words;
		assert_true(logs_bloom_test(w, bl.b[k].nblocks, logs_hash_word("users", 5)));
		assert_true(logs_bloom_test(w, bl.b[k].nblocks, logs_hash_attr('p', "web", 3)));
		if (logs_bloom_test(w, bl.b[k].nblocks, logs_hash_word("r003210x", 8)))
			passing++;
	}
	assert_int_equal(seq, 100 + n);
	assert_true(holder != SIZE_MAX);
	assert_true(logs_bloom_test(bl.words + bl.b[holder].words, bl.b[holder].nblocks,
				    logs_hash_word("r003210x", 8)));
	assert_true(passing <= 2);
	/* Releases are attributes of the blocks that hold them. */
	assert_true(logs_bloom_test(bl.words + bl.b[0].words, bl.b[0].nblocks, logs_hash_attr('r', "1", 1)));
	assert_true(logs_bloom_test(bl.words + bl.b[bl.n - 1].words, bl.b[bl.n - 1].nblocks,
				    logs_hash_attr('r', "2", 1)));

	/* A chunk written before blocks existed is one gzip member of one
	 * block body: it opens as one block without a filter. */
	struct logs_blocks old;
	logs_blocks_init(&old);
	assert_int_equal(logs_blocks_open(&old, bl.b[0].data, bl.b[0].len), 0);
	assert_int_equal(old.n, 1);
	assert_int_equal(old.b[0].nblocks, 0);
	assert_int_equal(logs_view_decode(&v, old.b[0].data, old.b[0].len), 0);
	assert_int_equal(v.n, bl.b[0].n_lines);
	logs_blocks_release(&old);

	/* Read in parts, as queries do: the table from a head that grows until
	 * it holds it, then the filters and each block where it says. */
	struct logs_blocks part;
	logs_blocks_init(&part);
	size_t have = 6, need = 0;
	int r;
	while ((r = logs_blocks_head(&part, c.data.buf, have, c.data.len, &need)) == -EAGAIN) {
		assert_true(need > have && need <= c.data.len);
		have = need;
	}
	assert_int_equal(r, 0);
	assert_int_equal(part.n, bl.n);
	memcpy(part.words, c.data.buf + part.words_off, part.n_words * 4);
	for (size_t k = 0; k < bl.n; k++) {
		assert_true(c.data.buf + part.b[k].off == bl.b[k].data);
		assert_int_equal(part.b[k].len, bl.b[k].len);
		assert_int_equal(part.b[k].nblocks, bl.b[k].nblocks);
		assert_memory_equal(part.words + part.b[k].words, bl.words + bl.b[k].words, part.b[k].nblocks * 32);
	}
	logs_blocks_release(&part);

	/* A truncated body is refused. */
	assert_int_equal(logs_blocks_open(&bl, c.data.buf, c.data.len - 1), -EINVAL);
	logs_view_release(&v);
	logs_blocks_release(&bl);
	logs_chunk_release(&c);
	logs_parsed_release(&p);
	logs_builder_release(&b);
	gzip_deflater_free(z);
}

static void test_logs_bloom__false_positive_rate_is_low(void **state)
{
	struct logs_hset s;
	logs_hset_init(&s);
	char w[32];
	for (int k = 0; k < 20000; k++) {
		int n = snprintf(w, sizeof(w), "word%d", k);
		logs_hset_add(&s, logs_hash_word(w, (size_t)n));
		logs_hset_add(&s, logs_hash_word(w, (size_t)n)); /* duplicates count once */
	}
	assert_int_equal(s.n, 20000);
	struct logs_bloom b;
	logs_bloom_init(&b, s.n, LOGS_BLOOM_BITS_PER_KEY);
	logs_hset_to_bloom(&s, &b);
	for (int k = 0; k < 20000; k++) {
		int n = snprintf(w, sizeof(w), "word%d", k);
		assert_true(logs_bloom_test(b.words, b.nblocks, logs_hash_word(w, (size_t)n)));
	}
	int fp = 0, tries = 200000;
	for (int k = 0; k < tries; k++) {
		int n = snprintf(w, sizeof(w), "other%d", k);
		fp += logs_bloom_test(b.words, b.nblocks, logs_hash_word(w, (size_t)n));
	}
	double rate = (double)fp / tries;
	print_message("bloom: %u blocks for %zu keys, false positives %.4f%%\n", b.nblocks, s.n, rate * 100);
	assert_true(rate < 0.005);
	logs_bloom_release(&b);
	logs_hset_release(&s);
}

/* ----------------------------------------------------- the whole module */

struct env {
	char dir[64];
	uv_loop_t loop;
	struct logs_config cfg;
	struct logs *l;
};

static void env_open(struct env *e)
{
	char *err = NULL;
	e->cfg.loop = &e->loop;
	e->cfg.data_dir = e->dir;
	e->l = logs_new(&e->cfg, &err);
	if (!e->l)
		fail_msg("logs_new: %s", err);
}

static void env_close(struct env *e)
{
	logs_stop(e->l);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	logs_free(e->l);
	e->l = NULL;
}

static int env_setup(void **state)
{
	struct env *e = xcalloc(1, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/paasops-test-logs-XXXXXX");
	if (!mkdtemp(e->dir))
		return -1;
	uv_loop_init(&e->loop);
	logs_config_defaults(&e->cfg);
	e->cfg.rate = 1e9;
	e->cfg.burst = 1e9;
	e->cfg.min_free_pct = 0;
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;
	if (e->l)
		env_close(e);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	uv_loop_close(&e->loop);
	paths_remove_tree(e->dir);
	free(e);
	return 0;
}

struct qres {
	bool done;
	struct json *res;
};

static void q_done(void *ctx, struct json *result, const char *err)
{
	struct qres *r = ctx;
	if (!result)
		fail_msg("query failed: %s", err);
	r->res = result;
	r->done = true;
}

/* Runs a query: app, q (may be NULL), limit; ascending when asc. */
static struct json *query(struct env *e, const char *app, const char *q, int limit, bool asc)
{
	struct logs_query lq = {.limit = limit, .ascending = asc};
	logs_filter_init(&lq.filter);
	char *err = NULL;
	if (app)
		logs_filter_set(&lq.filter, "app", app, 0, &err);
	if (q && logs_filter_set(&lq.filter, "q", q, 0, &err) < 0)
		fail_msg("%s", err);
	struct qres r = {0};
	logs_query_start(e->l, &lq, q_done, &r);
	while (!r.done)
		uv_run(&e->loop, UV_RUN_ONCE);
	return r.res;
}

/* fmt gets the line number twice. */
static void ingest(struct env *e, const char *app, const char *inst, const char *fmt, int n)
{
	char line[256];
	for (int k = 0; k < n; k++) {
		int len = snprintf(line, sizeof(line), fmt, k, k);
		logs_ingest(e->l, app, "web", inst, 1, 0, line, (size_t)len);
	}
}

static const char *line_at(const struct json *res, size_t k)
{
	return json_get_str(json_at(json_get(res, "lines"), k), "line");
}

static void test_logs__query_pages_newest_first_with_a_cursor(void **state)
{
	struct env *e = *state;
	env_open(e);
	ingest(e, "shop", "shop.web.1", "request %d served user=u%d", 50);
	ingest(e, "blog", "blog.web.1", "blog line %d", 5);
	logs_sync(e->l, false);
	struct json *r = query(e, "shop", NULL, 10, false);
	assert_int_equal(json_size(json_get(r, "lines")), 10);
	assert_string_equal(line_at(r, 0), "request 49 served user=u49");
	/* Chunks are listed from the writer's directory, not the database. */
	assert_string_equal(json_get_str(json_get(r, "stats"), "chunk_list"), "memory");
	const char *cursor = json_get_str(r, "cursor");
	assert_non_null(cursor);
	struct logs_query lq = {.limit = 10};
	logs_filter_init(&lq.filter);
	char *err = NULL;
	logs_filter_set(&lq.filter, "app", "shop", 0, &err);
	uint64_t seq;
	assert_int_equal(logs_cursor_parse(cursor, &seq), 0);
	lq.filter.before_seq = seq;
	struct qres qr = {0};
	logs_query_start(e->l, &lq, q_done, &qr);
	while (!qr.done)
		uv_run(&e->loop, UV_RUN_ONCE);
	assert_string_equal(line_at(qr.res, 0), "request 39 served user=u39");
	json_free(qr.res);
	json_free(r);
	/* Oldest first, a term, a field, across apps. */
	r = query(e, "shop", "served", 3, true);
	assert_string_equal(line_at(r, 0), "request 0 served user=u0");
	json_free(r);
	r = query(e, NULL, "user:u7 OR \"blog line 3\"", 10, true);
	assert_int_equal(json_size(json_get(r, "lines")), 2);
	assert_string_equal(line_at(r, 0), "request 7 served user=u7");
	assert_string_equal(line_at(r, 1), "blog line 3");
	json_free(r);
	r = query(e, "blog", "request", 10, true);
	assert_int_equal(json_size(json_get(r, "lines")), 0);
	assert_true(json_is_null(json_get(r, "cursor")));
	json_free(r);
}

static void test_logs__rate_limit_drops_with_a_marker(void **state)
{
	struct env *e = *state;
	e->cfg.rate = 10;
	e->cfg.burst = 10;
	env_open(e);
	ingest(e, "shop", "shop.web.1", "flood %d", 1000);
	ingest(e, "blog", "blog.web.1", "calm %d", 5);
	usleep(150 * 1000); /* a token and a half back */
	ingest(e, "shop", "shop.web.1", "after %d", 1);
	logs_sync(e->l, false);
	struct json *r = query(e, "shop", NULL, 100, true);
	const struct json *lines = json_get(r, "lines");
	assert_int_equal(json_size(lines), 12);
	assert_string_equal(line_at(r, 9), "flood 9");
	assert_string_equal(line_at(r, 10), "\xe2\x80\xa6 990 lines dropped \xe2\x80\xa6");
	assert_string_equal(json_get_str(json_at(lines, 10), "level"), "warn");
	assert_string_equal(json_get_str(json_at(lines, 10), "instance"), "shop.web.1");
	assert_string_equal(line_at(r, 11), "after 0");
	json_free(r);
	r = query(e, "blog", NULL, 100, true);
	assert_int_equal(json_size(json_get(r, "lines")), 5);
	json_free(r);
	struct json *st = logs_stats_json(e->l);
	int64_t dropped;
	assert_int_equal(json_get_int(json_get(st, "dropped_rate_limit"), &dropped), 0);
	assert_int_equal(dropped, 990);
	json_free(st);
}

static int64_t stat_int(struct logs *l, const char *key)
{
	struct json *st = logs_stats_json(l);
	int64_t v = -1;
	json_get_int(json_get(st, key), &v);
	json_free(st);
	return v;
}

static void test_logs__retention_keeps_size_bounds_in_whole_chunks(void **state)
{
	struct env *e = *state;
	e->cfg.max_bytes = 3 << 20;
	e->cfg.app_max_bytes = 1 << 20;
	env_open(e);
	/* Random-ish text compresses poorly, so sizes are close to raw. */
	char line[160];
	uint64_t x = 88172645463325252ULL;
	for (int k = 0; k < 120000; k++) {
		int n = snprintf(line, sizeof(line), "big %d", k);
		while (n < 120) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			n += snprintf(line + n, sizeof(line) - (size_t)n, " %llx", (unsigned long long)(x & 0xffffff));
		}
		logs_ingest(e->l, "big", "web", "big.web.1", 1, 0, line, (size_t)n);
		if (k % 5000 == 0)
			uv_run(&e->loop, UV_RUN_NOWAIT);
	}
	ingest(e, "small", "small.web.1", "small %d", 100);
	logs_sync(e->l, true);
	assert_true(stat_int(e->l, "chunks_removed") > 0);
	struct json *r = query(e, "big", NULL, 1, true);
	const char *oldest = line_at(r, 0);
	assert_true(strncmp(oldest, "big 0 ", 6) != 0); /* the oldest went */
	json_free(r);
	r = query(e, "big", NULL, 1, false);
	assert_true(strncmp(line_at(r, 0), "big 119999 ", 11) == 0); /* the newest stayed */
	json_free(r);
	r = query(e, "small", NULL, 1000, true);
	assert_int_equal(json_size(json_get(r, "lines")), 100);
	json_free(r);
	/* Per app: at most the bound plus the open chunk and one sealed. */
	int64_t stored = stat_int(e->l, "stored_bytes");
	assert_true(stored <= (1 << 20) + (3 << 20) / 2);
}

static void test_logs__retention_by_age_and_reopen(void **state)
{
	struct env *e = *state;
	env_open(e);
	ingest(e, "shop", "shop.web.1", "kept %d", 10);
	logs_sync(e->l, false);
	env_close(e);
	/* Reopened: the open chunk comes back and later lines follow it. */
	env_open(e);
	ingest(e, "shop", "shop.web.1", "more %d", 2);
	logs_sync(e->l, false);
	struct json *r = query(e, "shop", NULL, 100, true);
	assert_int_equal(json_size(json_get(r, "lines")), 12);
	int64_t s0, s11;
	json_get_int(json_get(json_at(json_get(r, "lines"), 0), "seq"), &s0);
	json_get_int(json_get(json_at(json_get(r, "lines"), 11), "seq"), &s11);
	assert_true(s11 > s0);
	json_free(r);
	env_close(e);
	/* A retention of 50 ms removes everything older, open chunks too. */
	e->cfg.retention_ms = 50;
	env_open(e);
	usleep(100 * 1000);
	logs_sync(e->l, true);
	r = query(e, "shop", NULL, 100, true);
	assert_int_equal(json_size(json_get(r, "lines")), 0);
	json_free(r);
	assert_int_equal(stat_int(e->l, "stored_bytes"), 0);
	ingest(e, "shop", "shop.web.1", "new %d", 1);
	logs_sync(e->l, false);
	r = query(e, "shop", NULL, 100, true);
	assert_int_equal(json_size(json_get(r, "lines")), 1);
	json_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_logs_parse__json_lifts_level_message_and_fields),
		cmocka_unit_test(test_logs_parse__logfmt_lifts_fields_and_quoted_values),
		cmocka_unit_test(test_logs_parse__level_words_in_plain_lines),
		cmocka_unit_test(test_logs_parse__json_bombs_are_bounded),
		cmocka_unit_test(test_logs_escape__invalid_utf8_nul_and_controls),
		cmocka_unit_test(test_logs_q__parses_words_phrases_fields_and_operators),
		cmocka_unit_test(test_logs_q__matches_at_word_boundaries_ignoring_case),
		cmocka_unit_test(test_logs_q__fields_and_attributes),
		cmocka_unit_test(test_logs_filter__parameters),
		cmocka_unit_test(test_logs_drain__urls_are_shown_without_credentials),
		cmocka_unit_test(test_logs_chunk__round_trip_and_bloom),
		cmocka_unit_test(test_logs_chunk__blocks_have_their_own_filters),
		cmocka_unit_test(test_logs_bloom__false_positive_rate_is_low),
		cmocka_unit_test_setup_teardown(test_logs__query_pages_newest_first_with_a_cursor, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_logs__rate_limit_drops_with_a_marker, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_logs__retention_keeps_size_bounds_in_whole_chunks, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_logs__retention_by_age_and_reopen, env_setup, env_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
