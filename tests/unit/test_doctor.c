/* test_doctor.c: the posture report's rules (src/doctor): the disk
 * thresholds against --log-min-free, what file modes mean, and the checks
 * that need only a data dir and a store (file modes, tokens, the audit
 * chain) run against a fresh temporary data dir. The
 * checks that read the supervisor and alerts are proven end to end in
 * tests/e2e/test_doctor.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat/crypto.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "doctor/doctor.h"
#include "store/store.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

struct fixture {
	char dir[64];
	struct store *st;
	struct doctor_input in;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/paasops-test-doctor-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	char *db = xasprintf("%s/state.db", f->dir);
	char *err = NULL;
	f->st = store_open(db, &err);
	free(db);
	if (!f->st) {
		fprintf(stderr, "store_open: %s\n", err ? err : "?");
		free(err);
		return -1;
	}
	f->in = (struct doctor_input){.data_dir = f->dir, .store = f->st, .now_ms = time_wall_ms(),
				      .log_min_free_pct = 5};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->st);
	static const char *const names[] = {"state.db", "state.db-wal", "state.db-shm",
					    "state.db-journal", "secret.key", "extra"};
	for (size_t n = 0; n < ARRAY_SIZE(names); n++) {
		char *p = xasprintf("%s/%s", f->dir, names[n]);
		unlink(p);
		free(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void run(struct fixture *f, const char *id, struct doctor_check *c)
{
	assert_int_equal(doctor_run_one(&f->in, id, c), 0);
	assert_string_equal(c->id, id);
	assert_non_null(c->summary);
	assert_non_null(c->hint);
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("'%s' does not contain '%s'", hay, needle);
}

static void plant_token(struct store *st, const char *id, const char *role, int64_t expires_at,
			bool revoked)
{
	char hash[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(id, strlen(id), hash);
	struct store_token t = {.id = id, .name = "", .hash = hash, .role = role, .apps = "[]",
				.created_at = time_wall_ms(), .expires_at = expires_at};
	assert_int_equal(store_token_add(st, &t), 0);
	if (revoked)
		assert_int_equal(store_token_revoke(st, id), 0);
}

/* ------------------------------------------------------------- pure rules */

static void test_doctor__disk_fails_below_the_floor_and_warns_below_twice_it(void **state)
{
	assert_int_equal(doctor_disk_status(4.9, 5), DOCTOR_FAIL);
	assert_int_equal(doctor_disk_status(5.0, 5), DOCTOR_WARN);
	assert_int_equal(doctor_disk_status(9.9, 5), DOCTOR_WARN);
	assert_int_equal(doctor_disk_status(10.0, 5), DOCTOR_OK);
	assert_int_equal(doctor_disk_status(80, 20), DOCTOR_OK);
	assert_int_equal(doctor_disk_status(39, 20), DOCTOR_WARN);
	/* No floor: only a full disk fails. */
	assert_int_equal(doctor_disk_status(0, 0), DOCTOR_FAIL);
	assert_int_equal(doctor_disk_status(0.5, 0), DOCTOR_OK);
}

static void test_doctor__writable_by_others_fails_and_readable_warns_when_private(void **state)
{
	assert_int_equal(doctor_mode_status(0700, true), DOCTOR_OK);
	assert_int_equal(doctor_mode_status(0750, true), DOCTOR_WARN);
	assert_int_equal(doctor_mode_status(0755, true), DOCTOR_WARN);
	assert_int_equal(doctor_mode_status(0770, true), DOCTOR_FAIL);
	assert_int_equal(doctor_mode_status(0644, false), DOCTOR_OK);
	assert_int_equal(doctor_mode_status(0664, false), DOCTOR_FAIL);
	assert_int_equal(doctor_mode_status(0602, false), DOCTOR_FAIL);
	assert_int_equal(doctor_mode_status(01777, true), DOCTOR_FAIL);
}

static void test_doctor__unknown_check_is_enoent(void **state)
{
	struct fixture *f = *state;
	struct doctor_check c;
	assert_int_equal(doctor_run_one(&f->in, "no-such-check", &c), -ENOENT);
}

/* ------------------------------------------------------------- files */

static void test_doctor__data_dir_modes_name_the_offending_path(void **state)
{
	struct fixture *f = *state;
	struct doctor_check c;
	assert_int_equal(chmod(f->dir, 0700), 0);
	run(f, "data-dir-permissions", &c);
	assert_int_equal(c.status, DOCTOR_OK);
	doctor_check_release(&c);

	assert_int_equal(chmod(f->dir, 0755), 0);
	run(f, "data-dir-permissions", &c);
	assert_int_equal(c.status, DOCTOR_WARN);
	assert_contains(c.summary, f->dir);
	assert_contains(c.summary, "0755");
	doctor_check_release(&c);

	char *extra = xasprintf("%s/extra", f->dir);
	FILE *fp = fopen(extra, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(chmod(extra, 0666), 0);
	run(f, "data-dir-permissions", &c);
	assert_int_equal(c.status, DOCTOR_FAIL);
	assert_contains(c.summary, extra);
	assert_contains(c.summary, "0666");
	doctor_check_release(&c);
	free(extra);
	chmod(f->dir, 0700);
}

static void test_doctor__secret_key_must_be_private(void **state)
{
	struct fixture *f = *state;
	char *key = xasprintf("%s/secret.key", f->dir);
	struct doctor_check c;
	run(f, "secret-key-permissions", &c);
	assert_int_equal(c.status, DOCTOR_OK); /* as the store made it */
	doctor_check_release(&c);

	assert_int_equal(chmod(key, 0640), 0);
	run(f, "secret-key-permissions", &c);
	assert_int_equal(c.status, DOCTOR_FAIL);
	assert_contains(c.summary, key);
	assert_contains(c.summary, "0640");
	doctor_check_release(&c);

	char *aside = xasprintf("%s/extra", f->dir);
	assert_int_equal(rename(key, aside), 0);
	run(f, "secret-key-permissions", &c);
	assert_int_equal(c.status, DOCTOR_FAIL);
	assert_contains(c.summary, "cannot be read");
	doctor_check_release(&c);
	assert_int_equal(rename(aside, key), 0);
	free(aside);
	free(key);
}

/* ------------------------------------------------------------- tokens and audit */

static void test_doctor__counts_only_live_admin_tokens_without_expiry(void **state)
{
	struct fixture *f = *state;
	int64_t now = f->in.now_ms, day = 86400000;
	struct doctor_check c;
	run(f, "admin-tokens-expiry", &c);
	assert_int_equal(c.status, DOCTOR_OK);
	doctor_check_release(&c);

	plant_token(f->st, "tok_forever1", "admin", 0, false);
	plant_token(f->st, "tok_forever2", "admin", 0, false);
	plant_token(f->st, "tok_expiring", "admin", now + day, false);
	plant_token(f->st, "tok_revoked", "admin", 0, true);
	plant_token(f->st, "tok_deployer", "deployer", 0, false);
	plant_token(f->st, "tok_stale", "admin", now - day, false);
	run(f, "admin-tokens-expiry", &c);
	assert_int_equal(c.status, DOCTOR_WARN);
	assert_contains(c.summary, "2 admin tokens never expire");
	assert_contains(c.summary, "tok_forever1");
	assert_contains(c.summary, "tok_forever2");
	assert_null(strstr(c.summary, "tok_expiring"));
	assert_null(strstr(c.summary, "tok_revoked"));
	assert_null(strstr(c.summary, "tok_deployer"));
	doctor_check_release(&c);

	/* Expired ones no longer authenticate: listed, but ok. */
	run(f, "expired-tokens", &c);
	assert_int_equal(c.status, DOCTOR_OK);
	assert_contains(c.summary, "1 expired token not revoked");
	assert_contains(c.summary, "tok_stale");
	doctor_check_release(&c);
}

static void test_doctor__empty_audit_log_is_ok(void **state)
{
	struct fixture *f = *state;
	struct doctor_check c;
	run(f, "audit-chain", &c);
	assert_int_equal(c.status, DOCTOR_OK);
	assert_contains(c.summary, "empty");
	doctor_check_release(&c);
}

static void test_doctor__exposure_warns_only_off_loopback_without_tls(void **state)
{
	struct fixture *f = *state;
	struct doctor_check c;
	static const struct {
		const char *addr;
		bool tls, metrics_public;
		enum doctor_status api, metrics;
	} cases[] = {
		{NULL, false, true, DOCTOR_OK, DOCTOR_OK},
		{"127.0.0.1:7070", false, true, DOCTOR_OK, DOCTOR_OK},
		{"0.0.0.0:7070", false, false, DOCTOR_WARN, DOCTOR_OK},
		{"0.0.0.0:7070", false, true, DOCTOR_WARN, DOCTOR_WARN},
		{"0.0.0.0:7070", true, false, DOCTOR_OK, DOCTOR_OK},
		{"[::]:7070", true, true, DOCTOR_OK, DOCTOR_WARN},
	};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		f->in.tcp_addr = cases[k].addr;
		f->in.tcp_tls = cases[k].tls;
		f->in.metrics_public = cases[k].metrics_public;
		run(f, "api-exposure", &c);
		assert_int_equal(c.status, cases[k].api);
		if (c.status == DOCTOR_WARN)
			assert_contains(c.summary, cases[k].addr);
		doctor_check_release(&c);
		run(f, "metrics-exposure", &c);
		assert_int_equal(c.status, cases[k].metrics);
		doctor_check_release(&c);
	}
}

static void test_doctor__report_json_counts_every_status(void **state)
{
	struct doctor_report r = {0};
	struct doctor_check checks[3] = {
		{.id = "a", .status = DOCTOR_OK, .summary = xstrdup("fine"), .hint = xstrdup("-")},
		{.id = "b", .status = DOCTOR_FAIL, .summary = xstrdup("bad"), .hint = xstrdup("fix")},
		{.id = "c", .status = DOCTOR_OK, .summary = xstrdup("fine"), .hint = xstrdup("-")},
	};
	r.checks = xmalloc(sizeof(checks));
	memcpy(r.checks, checks, sizeof(checks));
	r.n = 3;
	r.counts[DOCTOR_OK] = 2;
	r.counts[DOCTOR_FAIL] = 1;
	struct json *j = doctor_report_json(&r);
	char *text = json_print(j, false);
	assert_string_equal(text,
			    "{\"checks\":[{\"id\":\"a\",\"status\":\"ok\",\"summary\":\"fine\",\"hint\":\"-\"},"
			    "{\"id\":\"b\",\"status\":\"fail\",\"summary\":\"bad\",\"hint\":\"fix\"},"
			    "{\"id\":\"c\",\"status\":\"ok\",\"summary\":\"fine\",\"hint\":\"-\"}],"
			    "\"counts\":{\"ok\":2,\"warn\":0,\"fail\":1}}");
	free(text);
	json_free(j);
	doctor_report_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doctor__disk_fails_below_the_floor_and_warns_below_twice_it),
		cmocka_unit_test(test_doctor__writable_by_others_fails_and_readable_warns_when_private),
		cmocka_unit_test(test_doctor__report_json_counts_every_status),
		cmocka_unit_test_setup_teardown(test_doctor__unknown_check_is_enoent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doctor__data_dir_modes_name_the_offending_path, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_doctor__secret_key_must_be_private, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doctor__counts_only_live_admin_tokens_without_expiry,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_doctor__empty_audit_log_is_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doctor__exposure_warns_only_off_loopback_without_tls,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
