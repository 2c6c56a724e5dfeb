/* test_auth.c: tokens, roles, the permission table and the audit log
 * (src/auth) against a store in a fresh temporary directory per test.
 * Tokens with a known secret are planted through the store, so that
 * revoked, expired and odd rows are tested without waiting on the clock;
 * tampered audit logs are made by copying a recorded chain, one entry
 * changed, into a second store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/audit.h"
#include "auth/auth.h"
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "store/store.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

struct fixture {
	char dir[64];
	char *path;
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/paasops-test-auth-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->path = xasprintf("%s/state.db", f->dir);
	char *err = NULL;
	f->st = store_open(f->path, &err);
	if (!f->st) {
		fprintf(stderr, "store_open: %s\n", err ? err : "?");
		free(err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->st);
	static const char *const names[] = {"state.db", "copy.db"};
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t n = 0; n < ARRAY_SIZE(names); n++) {
		for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
			char *p = xasprintf("%s/%s%s", f->dir, names[n], suffixes[i]);
			unlink(p);
			free(p);
		}
	}
	static const char *const others[] = {"other/state.db", "other/state.db-wal", "other/state.db-shm",
					     "other/secret.key", "other", "secret.key"};
	for (size_t n = 0; n < ARRAY_SIZE(others); n++) {
		char *p = xasprintf("%s/%s", f->dir, others[n]);
		if (unlink(p) < 0)
			rmdir(p);
		free(p);
	}
	rmdir(f->dir);
	free(f->path);
	free(f);
	return 0;
}

/* A principal of role scoped to the given apps (none: unscoped). The
 * strings are borrowed; do not release it. */
#define PRINCIPAL(r, ...)                                                                     \
	((struct auth_principal){.role = (r),                                                 \
				 .apps = (char *[]){__VA_ARGS__},                             \
				 .n_apps = sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)})
#define UNSCOPED(r) ((struct auth_principal){.role = (r)})

/* Plants a token row whose secret is secret. */
static void plant(struct store *st, const char *id, const char *secret, const char *role,
		  const char *apps, int64_t expires_at, bool revoked)
{
	char hash[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(secret, strlen(secret), hash);
	struct store_token t = {.id = id, .name = "planted", .hash = hash, .role = role,
				.apps = apps, .created_at = time_wall_ms(), .expires_at = expires_at};
	assert_int_equal(store_token_add(st, &t), 0);
	if (revoked)
		assert_int_equal(store_token_revoke(st, id), 0);
}

/* Authentication that must fail with -EACCES; returns the message (caller
 * frees). The principal must come back empty. */
static char *auth_refused(struct store *st, const char *header)
{
	struct auth_principal p;
	memset(&p, 0x5a, sizeof(p));
	char *err = NULL;
	int r = auth_authenticate(st, header, &p, &err);
	if (r != -EACCES)
		fail_msg("auth_authenticate(%s) = %d, expected -EACCES", header ? header : "NULL", r);
	assert_non_null(err);
	assert_true(strlen(err) > 0);
	assert_null(p.token_id);
	assert_null(p.apps);
	assert_int_equal(p.n_apps, 0);
	return err;
}

static void assert_refused(struct store *st, const char *header, const char *msg)
{
	char *err = auth_refused(st, header);
	if (msg && strcmp(err, msg) != 0)
		fail_msg("for %s: message '%s', expected '%s'", header ? header : "NULL", err, msg);
	free(err);
}

static struct json *create_ok(struct store *st, enum auth_role role, const char *apps_json,
			      int64_t expires_in_ms, const char *name)
{
	struct json *apps = apps_json ? json_parse(apps_json, strlen(apps_json), NULL) : NULL;
	struct json *out = NULL;
	char *err = NULL;
	int r = auth_token_create(st, role, apps, expires_in_ms, name, &out, &err);
	if (r < 0)
		fail_msg("auth_token_create = %d: %s", r, err ? err : "?");
	assert_null(err);
	assert_non_null(out);
	json_free(apps);
	return out;
}

static char *bearer(const struct json *answer)
{
	return xasprintf("Bearer %s", json_get_str(answer, "token"));
}

/* The listing entry of token id, or NULL; borrowed from list. */
static struct json *listed(struct json *list, const char *id)
{
	for (struct json *e = json_first(list); e; e = json_next(e))
		if (str_eq(json_get_str(e, "id"), id))
			return e;
	return NULL;
}

/* ------------------------------------------------------ permission table */

static void test_auth__viewer_may_only_read(void **state)
{
	struct auth_principal p = UNSCOPED(AUTH_VIEWER);
	assert_true(auth_allows(&p, AUTH_PUBLIC, NULL));
	assert_true(auth_allows(&p, AUTH_READ, "web"));
	assert_true(auth_allows(&p, AUTH_READ, NULL));
	assert_false(auth_allows(&p, AUTH_WRITE, "web"));
	assert_false(auth_allows(&p, AUTH_WRITE, NULL));
	assert_false(auth_allows(&p, AUTH_MANAGE, NULL));
}

static void test_auth__deployer_may_read_and_write_but_not_manage(void **state)
{
	struct auth_principal p = UNSCOPED(AUTH_DEPLOYER);
	assert_true(auth_allows(&p, AUTH_PUBLIC, NULL));
	assert_true(auth_allows(&p, AUTH_READ, "web"));
	assert_true(auth_allows(&p, AUTH_WRITE, "web"));
	assert_true(auth_allows(&p, AUTH_WRITE, NULL));
	assert_false(auth_allows(&p, AUTH_MANAGE, NULL));
	assert_false(auth_allows(&p, AUTH_MANAGE, "web"));
}

static void test_auth__admin_may_do_everything(void **state)
{
	struct auth_principal p = UNSCOPED(AUTH_ADMIN);
	for (int a = 0; a < AUTH_NACTIONS; a++) {
		assert_true(auth_allows(&p, (enum auth_action)a, NULL));
		assert_true(auth_allows(&p, (enum auth_action)a, "web"));
	}
	struct auth_principal local;
	auth_principal_local(&local);
	assert_int_equal(local.role, AUTH_ADMIN);
	assert_null(local.token_id);
	assert_int_equal(local.n_apps, 0);
	for (int a = 0; a < AUTH_NACTIONS; a++)
		assert_true(auth_allows(&local, (enum auth_action)a, "anything"));
	auth_principal_release(&local);
}

static void test_auth__public_is_always_allowed(void **state)
{
	for (int r = 0; r < AUTH_NROLES; r++) {
		struct auth_principal u = UNSCOPED((enum auth_role)r);
		struct auth_principal s = PRINCIPAL((enum auth_role)r, "other");
		assert_true(auth_allows(&u, AUTH_PUBLIC, NULL));
		assert_true(auth_allows(&s, AUTH_PUBLIC, "web"));
	}
}

static void test_auth__scoped_principals_reach_only_their_apps(void **state)
{
	struct auth_principal d = PRINCIPAL(AUTH_DEPLOYER, "web", "api");
	assert_true(auth_allows(&d, AUTH_WRITE, "web"));
	assert_true(auth_allows(&d, AUTH_WRITE, "api"));
	assert_true(auth_allows(&d, AUTH_READ, "api"));
	assert_false(auth_allows(&d, AUTH_WRITE, "shop"));
	assert_false(auth_allows(&d, AUTH_READ, "shop"));
	assert_false(auth_allows(&d, AUTH_WRITE, "we"));   /* whole names, */
	assert_false(auth_allows(&d, AUTH_WRITE, "webx")); /* not prefixes */
	assert_false(auth_allows(&d, AUTH_WRITE, "WEB"));
	/* Calls not about one app pass; the handler filters. */
	assert_true(auth_allows(&d, AUTH_READ, NULL));
	/* Scope never adds what the role lacks. */
	assert_false(auth_allows(&d, AUTH_MANAGE, NULL));
	struct auth_principal v = PRINCIPAL(AUTH_VIEWER, "web");
	assert_true(auth_allows(&v, AUTH_READ, "web"));
	assert_false(auth_allows(&v, AUTH_WRITE, "web"));
	assert_false(auth_allows(&v, AUTH_READ, "api"));
}

static void test_auth__unscoped_principals_reach_every_app(void **state)
{
	struct auth_principal d = UNSCOPED(AUTH_DEPLOYER);
	static const char *const apps[] = {"web", "api", "shop", "x"};
	for (size_t i = 0; i < ARRAY_SIZE(apps); i++) {
		assert_true(auth_allows(&d, AUTH_READ, apps[i]));
		assert_true(auth_allows(&d, AUTH_WRITE, apps[i]));
	}
}

static void test_auth__role_names_parse_and_print(void **state)
{
	enum auth_role r = AUTH_NROLES;
	assert_int_equal(auth_role_parse("viewer", &r), 0);
	assert_int_equal(r, AUTH_VIEWER);
	assert_int_equal(auth_role_parse("deployer", &r), 0);
	assert_int_equal(r, AUTH_DEPLOYER);
	assert_int_equal(auth_role_parse("admin", &r), 0);
	assert_int_equal(r, AUTH_ADMIN);
	r = AUTH_NROLES;
	static const char *const bad[] = {"", "Admin", "ADMIN", "root", "admin ", "view", "owner"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(auth_role_parse(bad[i], &r), -EINVAL);
	assert_int_equal(auth_role_parse(NULL, &r), -EINVAL);
	assert_int_equal(r, AUTH_NROLES);
	for (int k = 0; k < AUTH_NROLES; k++) {
		assert_int_equal(auth_role_parse(auth_role_name((enum auth_role)k), &r), 0);
		assert_int_equal(r, k);
	}
	assert_string_equal(auth_role_name(AUTH_NROLES), "unknown");
}

/* ------------------------------------------------------------ tokens */

static void test_auth__token_create_answers_the_secret_once(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_DEPLOYER, "[\"web\"]", 0, "ci");
	const char *tok = json_get_str(out, "token");
	assert_non_null(tok);
	assert_true(str_starts_with(tok, "pso_"));
	assert_int_equal(strlen(tok), 4 + 43); /* 32 bytes, unpadded base64url */
	assert_null(strpbrk(tok + 4, "+/="));
	const char *id = json_get_str(out, "id");
	assert_non_null(id);
	assert_true(str_starts_with(id, "tok_"));
	assert_true(strlen(id) > 4);
	assert_string_equal(json_get_str(out, "role"), "deployer");
	assert_string_equal(json_get_str(out, "name"), "ci");
	struct json *apps = json_get(out, "apps");
	assert_true(json_is_array(apps));
	assert_int_equal(json_size(apps), 1);
	assert_string_equal(json_str(json_at(apps, 0)), "web");
	assert_true(json_is_null(json_get(out, "expires_at")));

	/* A second token has another secret and id. */
	struct json *out2 = create_ok(f->st, AUTH_VIEWER, NULL, 0, NULL);
	assert_string_not_equal(json_get_str(out2, "token"), tok);
	assert_string_not_equal(json_get_str(out2, "id"), id);
	assert_true(json_is_null(json_get(out2, "name")));
	assert_int_equal(json_size(json_get(out2, "apps")), 0);
	json_free(out2);
	json_free(out);
}

static void test_auth__token_with_expiry_answers_when_it_expires(void **state)
{
	struct fixture *f = *state;
	int64_t before = time_wall_ms();
	struct json *out = create_ok(f->st, AUTH_VIEWER, NULL, 3600000, NULL);
	const char *exp = json_get_str(out, "expires_at");
	assert_non_null(exp);
	char lo[40], hi[40];
	time_format_iso(before + 3600000, lo, sizeof(lo));
	time_format_iso(time_wall_ms() + 3600000, hi, sizeof(hi));
	assert_true(strcmp(exp, lo) >= 0 && strcmp(exp, hi) <= 0);
	json_free(out);
}

static void test_auth__token_create_refuses_bad_input(void **state)
{
	struct fixture *f = *state;
	static const char *const bad_apps[] = {"{\"a\":1}", "\"web\"", "[1]", "[\"Web\"]",
					       "[\"-web\"]", "[\"web\", null]", "[\"\"]"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_apps); i++) {
		struct json *apps = json_parse(bad_apps[i], strlen(bad_apps[i]), NULL);
		assert_non_null(apps);
		struct json *out = NULL;
		char *err = NULL;
		int r = auth_token_create(f->st, AUTH_VIEWER, apps, 0, NULL, &out, &err);
		if (r != -EINVAL)
			fail_msg("apps %s: r = %d, expected -EINVAL", bad_apps[i], r);
		assert_null(out);
		assert_non_null(err);
		free(err);
		json_free(apps);
	}
	char name[120];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	struct json *out = NULL;
	char *err = NULL;
	assert_int_equal(auth_token_create(f->st, AUTH_VIEWER, NULL, 0, name, &out, &err), -EINVAL);
	assert_null(out);
	assert_non_null(err);
	free(err);
	/* Nothing was stored. */
	struct json *list = auth_tokens_json(f->st);
	assert_int_equal(json_size(list), 0);
	json_free(list);
}

static void test_auth__authenticate_resolves_role_and_scope(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_DEPLOYER, "[\"web\",\"api\"]", 0, "ci");
	char *hdr = bearer(out);
	struct auth_principal p;
	char *err = NULL;
	assert_int_equal(auth_authenticate(f->st, hdr, &p, &err), 0);
	assert_null(err);
	assert_int_equal(p.role, AUTH_DEPLOYER);
	assert_string_equal(p.token_id, json_get_str(out, "id"));
	assert_int_equal(p.n_apps, 2);
	assert_string_equal(p.apps[0], "web");
	assert_string_equal(p.apps[1], "api");
	assert_true(auth_allows(&p, AUTH_WRITE, "web"));
	assert_false(auth_allows(&p, AUTH_WRITE, "shop"));
	auth_principal_release(&p);
	assert_null(p.token_id);
	assert_int_equal(p.n_apps, 0);

	/* The scheme is case-insensitive. */
	char *lower = xasprintf("bearer %s", json_get_str(out, "token"));
	assert_int_equal(auth_authenticate(f->st, lower, &p, &err), 0);
	auth_principal_release(&p);
	free(lower);
	free(hdr);
	json_free(out);
}

static void test_auth__authenticate_unscoped_admin(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_ADMIN, NULL, 0, NULL);
	char *hdr = bearer(out);
	struct auth_principal p;
	char *err = NULL;
	assert_int_equal(auth_authenticate(f->st, hdr, &p, &err), 0);
	assert_int_equal(p.role, AUTH_ADMIN);
	assert_int_equal(p.n_apps, 0);
	assert_true(auth_allows(&p, AUTH_MANAGE, NULL));
	assert_true(auth_allows(&p, AUTH_WRITE, "any"));
	auth_principal_release(&p);
	free(hdr);
	json_free(out);
}

static void test_auth__authenticate_refuses_missing_and_malformed_headers(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_ADMIN, NULL, 0, NULL);
	const char *tok = json_get_str(out, "token");

	assert_refused(f->st, NULL, NULL);
	assert_refused(f->st, "", NULL);
	assert_refused(f->st, "garbage", NULL);
	assert_refused(f->st, "Bearer", NULL);
	assert_refused(f->st, "Bearer ", NULL);
	assert_refused(f->st, "Basic dXNlcjpwYXNzd29yZA==", NULL);
	char *h = xasprintf("Basic %s", tok);
	assert_refused(f->st, h, NULL);
	free(h);
	h = xasprintf("Token %s", tok);
	assert_refused(f->st, h, NULL);
	free(h);
	h = xasprintf("Bearer%s", tok);
	assert_refused(f->st, h, NULL);
	free(h);
	/* The right secret without its prefix, or with another one. */
	h = xasprintf("Bearer %s", tok + 4);
	assert_refused(f->st, h, NULL);
	free(h);
	h = xasprintf("Bearer psx_%s", tok + 4);
	assert_refused(f->st, h, NULL);
	free(h);
	h = xasprintf("Bearer PSO_%s", tok + 4);
	assert_refused(f->st, h, NULL);
	free(h);
	/* Absurdly long tokens are refused before any lookup. */
	char big[400];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	h = xasprintf("Bearer pso_%s", big);
	assert_refused(f->st, h, NULL);
	free(h);
	json_free(out);
}

static void test_auth__authenticate_refuses_unknown_and_altered_tokens(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_ADMIN, NULL, 0, NULL);
	const char *tok = json_get_str(out, "token");
	assert_refused(f->st, "Bearer pso_unknown", "unknown token");

	char *h = xasprintf("Bearer %s", tok);
	h[strlen(h) - 1] ^= 1; /* one bit off */
	assert_refused(f->st, h, "unknown token");
	free(h);
	h = xasprintf("Bearer %sx", tok);
	assert_refused(f->st, h, "unknown token");
	free(h);
	h = xasprintf("Bearer %.*s", (int)strlen(tok) - 1, tok);
	assert_refused(f->st, h, "unknown token");
	free(h);
	json_free(out);
}

static void test_auth__revoked_token_is_refused(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_DEPLOYER, NULL, 0, NULL);
	char *hdr = bearer(out);
	struct auth_principal p;
	char *err = NULL;
	assert_int_equal(auth_authenticate(f->st, hdr, &p, &err), 0);
	auth_principal_release(&p);

	char *id = NULL;
	assert_int_equal(auth_token_revoke(f->st, json_get_str(out, "id"), &id, &err), 0);
	assert_null(err);
	assert_string_equal(id, json_get_str(out, "id"));
	free(id);
	assert_refused(f->st, hdr, "token revoked");

	/* Other tokens are unaffected. */
	struct json *other = create_ok(f->st, AUTH_DEPLOYER, NULL, 0, NULL);
	char *h2 = bearer(other);
	assert_int_equal(auth_authenticate(f->st, h2, &p, &err), 0);
	auth_principal_release(&p);
	free(h2);
	json_free(other);
	free(hdr);
	json_free(out);
}

static void test_auth__revoke_of_an_unknown_token_is_enoent(void **state)
{
	struct fixture *f = *state;
	char *err = NULL, *id = NULL;
	assert_int_equal(auth_token_revoke(f->st, "tok_000000000000", &id, &err), -ENOENT);
	assert_null(id);
	assert_non_null(err);
	assert_non_null(strstr(err, "'tok_000000000000'"));
	free(err);
	/* An unknown secret is not echoed. */
	assert_int_equal(auth_token_revoke(f->st, "pso_unknown-secret", &id, &err), -ENOENT);
	assert_null(id);
	assert_null(strstr(err, "unknown-secret"));
	free(err);
}

static void test_auth__revoke_by_secret_revokes_the_token_it_belongs_to(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_VIEWER, NULL, 0, NULL);
	struct json *other = create_ok(f->st, AUTH_VIEWER, NULL, 0, NULL);
	char *hdr = bearer(out), *h2 = bearer(other);
	char *err = NULL, *id = NULL;
	assert_int_equal(auth_token_revoke(f->st, json_get_str(out, "token"), &id, &err), 0);
	assert_null(err);
	assert_string_equal(id, json_get_str(out, "id"));
	free(id);
	assert_refused(f->st, hdr, "token revoked");
	struct auth_principal p;
	assert_int_equal(auth_authenticate(f->st, h2, &p, &err), 0);
	auth_principal_release(&p);
	free(hdr);
	free(h2);
	json_free(out);
	json_free(other);
}

static void test_auth__admin_tokens_cannot_be_scoped(void **state)
{
	struct fixture *f = *state;
	struct json *apps = json_parse("[\"web\"]", 8, NULL);
	struct json *out = NULL;
	char *err = NULL;
	assert_int_equal(auth_token_create(f->st, AUTH_ADMIN, apps, 0, NULL, &out, &err), -EINVAL);
	assert_null(out);
	assert_non_null(strstr(err, "admin"));
	free(err);
	json_free(apps);
	/* An empty scope is no scope. */
	json_free(create_ok(f->st, AUTH_ADMIN, "[]", 0, NULL));
	/* One stored with a scope is refused, not taken as unscoped. */
	plant(f->st, "tok_scopedadm", "pso_scoped-admin", "admin", "[\"web\"]", 0, false);
	char *msg = auth_refused(f->st, "Bearer pso_scoped-admin");
	assert_non_null(strstr(msg, "tok_scopedadm"));
	free(msg);
}

static void test_auth__token_scope_names_each_app_once(void **state)
{
	struct fixture *f = *state;
	struct json *apps = json_parse("[\"web\",\"api\",\"web\"]", 19, NULL);
	struct json *out = NULL;
	char *err = NULL;
	assert_int_equal(auth_token_create(f->st, AUTH_VIEWER, apps, 0, NULL, &out, &err), -EINVAL);
	assert_non_null(strstr(err, "'web' twice"));
	free(err);
	json_free(apps);
	struct json *list = auth_tokens_json(f->st);
	assert_int_equal(json_size(list), 0);
	json_free(list);
}

static void test_auth__authenticate_gives_the_expiry(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_VIEWER, NULL, 3600 * 1000, NULL);
	char *hdr = bearer(out);
	struct auth_principal p;
	char *err = NULL;
	int64_t now = time_wall_ms();
	assert_int_equal(auth_authenticate(f->st, hdr, &p, &err), 0);
	assert_true(p.expires_at > now && p.expires_at <= now + 3600 * 1000);
	auth_principal_release(&p);
	free(hdr);
	json_free(out);
}

static void test_auth__expired_token_is_refused(void **state)
{
	struct fixture *f = *state;
	/* Deterministic: planted rows that expired long ago and just now. */
	plant(f->st, "tok_old", "pso_old-secret", "admin", "[]", 1, false);
	assert_refused(f->st, "Bearer pso_old-secret", "token expired");
	plant(f->st, "tok_now", "pso_now-secret", "admin", "[]", time_wall_ms(), false);
	assert_refused(f->st, "Bearer pso_now-secret", "token expired");
	/* One that expires in an hour works. */
	plant(f->st, "tok_new", "pso_new-secret", "viewer", "[\"web\"]",
	      time_wall_ms() + 3600000, false);
	struct auth_principal p;
	char *err = NULL;
	assert_int_equal(auth_authenticate(f->st, "Bearer pso_new-secret", &p, &err), 0);
	assert_int_equal(p.role, AUTH_VIEWER);
	assert_string_equal(p.token_id, "tok_new");
	assert_int_equal(p.n_apps, 1);
	assert_string_equal(p.apps[0], "web");
	auth_principal_release(&p);

	/* Through auth_token_create: a 1 ms lifetime runs out shortly. */
	struct json *out = create_ok(f->st, AUTH_ADMIN, NULL, 1, NULL);
	int64_t deadline = time_mono_ms() + 2000;
	struct timespec ms = {0, 1000000};
	nanosleep(&ms, NULL);
	nanosleep(&ms, NULL);
	char *hdr = bearer(out);
	char *e2 = NULL;
	int r;
	while ((r = auth_authenticate(f->st, hdr, &p, &e2)) == 0 && time_mono_ms() < deadline) {
		auth_principal_release(&p);
		nanosleep(&ms, NULL);
	}
	assert_int_equal(r, -EACCES);
	assert_string_equal(e2, "token expired");
	free(e2);
	free(hdr);
	json_free(out);

	/* The listing says so. */
	struct json *list = auth_tokens_json(f->st);
	assert_true(json_true(json_get(listed(list, "tok_old"), "expired")));
	assert_false(json_true(json_get(listed(list, "tok_new"), "expired")));
	json_free(list);
}

static void test_auth__revoked_and_expired_says_revoked(void **state)
{
	struct fixture *f = *state;
	plant(f->st, "tok_both", "pso_both", "admin", "[]", 1, true);
	assert_refused(f->st, "Bearer pso_both", "token revoked");
}

static void test_auth__token_with_an_unknown_role_is_refused(void **state)
{
	struct fixture *f = *state;
	plant(f->st, "tok_root", "pso_root-secret", "root", "[]", 0, false);
	assert_refused(f->st, "Bearer pso_root-secret", NULL);
}

static void test_auth__secret_is_not_stored_or_listed(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_DEPLOYER, "[\"web\"]", 0, "ci");
	const char *tok = json_get_str(out, "token");
	const char *id = json_get_str(out, "id");

	struct json *list = auth_tokens_json(f->st);
	assert_true(json_is_array(list));
	assert_int_equal(json_size(list), 1);
	struct json *e = listed(list, id);
	assert_non_null(e);
	assert_null(json_get(e, "token"));
	assert_null(json_get(e, "hash"));
	assert_string_equal(json_get_str(e, "role"), "deployer");
	assert_string_equal(json_get_str(e, "name"), "ci");
	assert_string_equal(json_str(json_at(json_get(e, "apps"), 0)), "web");
	assert_false(json_true(json_get(e, "revoked")));
	assert_true(json_is_null(json_get(e, "expires_at")));
	assert_true(json_is_null(json_get(e, "last_used_at")));
	assert_true(json_is_string(json_get(e, "created_at")));
	char *text = json_print(list, false);
	assert_null(strstr(text, tok));
	assert_null(strstr(text, tok + 4));
	free(text);
	json_free(list);

	/* The database file holds the hash, never the secret. */
	store_close(f->st);
	f->st = NULL;
	static const char *const suffixes[] = {"", "-wal"};
	char hash[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(tok, strlen(tok), hash);
	bool hash_seen = false;
	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
		char *p = xasprintf("%s%s", f->path, suffixes[i]);
		FILE *fp = fopen(p, "rb");
		free(p);
		if (!fp)
			continue;
		struct {
			char *b;
			size_t n, cap;
		} all = {NULL, 0, 0};
		char chunk[4096];
		size_t n;
		while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
			all.b = xgrow(all.b, 1, all.n + n + 1, &all.cap);
			memcpy(all.b + all.n, chunk, n);
			all.n += n;
		}
		fclose(fp);
		if (all.b) {
			all.b[all.n] = '\0';
			assert_null(memmem(all.b, all.n, tok + 4, strlen(tok + 4)));
			hash_seen = hash_seen || memmem(all.b, all.n, hash, 64);
		}
		free(all.b);
	}
	assert_true(hash_seen);
	char *err = NULL;
	f->st = store_open(f->path, &err);
	assert_non_null(f->st);
	json_free(out);
}

static void test_auth__authenticate_records_last_use(void **state)
{
	struct fixture *f = *state;
	struct json *out = create_ok(f->st, AUTH_VIEWER, NULL, 0, NULL);
	char *hdr = bearer(out);
	struct auth_principal p;
	char *err = NULL;
	assert_int_equal(auth_authenticate(f->st, hdr, &p, &err), 0);
	auth_principal_release(&p);
	struct json *list = auth_tokens_json(f->st);
	struct json *e = listed(list, json_get_str(out, "id"));
	assert_true(json_is_string(json_get(e, "last_used_at")));
	json_free(list);
	free(hdr);
	json_free(out);
}


/* ------------------------------------------------------------ audit log */

/* An entry read back from a store, owning its strings. */
struct entry {
	int64_t seq, time;
	char *actor, *role, *method, *path, *app, *remote, *detail, *prev, *hash;
	int status;
};

struct entries {
	struct entry *e;
	size_t n, alloc;
};

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void collect(void *ctx, const struct store_audit *a)
{
	struct entries *es = ctx;
	es->e = xgrow(es->e, sizeof(*es->e), es->n + 1, &es->alloc);
	es->e[es->n++] = (struct entry){
		.seq = a->seq, .time = a->time, .actor = dup_or_null(a->actor),
		.role = dup_or_null(a->role), .method = dup_or_null(a->method),
		.path = dup_or_null(a->path), .app = dup_or_null(a->app),
		.remote = dup_or_null(a->remote), .detail = dup_or_null(a->detail),
		.prev = dup_or_null(a->prev), .hash = dup_or_null(a->hash), .status = a->status,
	};
}

static void entry_release(struct entry *e)
{
	char **fields[] = {&e->actor, &e->role, &e->method, &e->path, &e->app,
			   &e->remote, &e->detail, &e->prev, &e->hash};
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
}

static void entries_free(struct entries *es)
{
	for (size_t i = 0; i < es->n; i++)
		entry_release(&es->e[i]);
	free(es->e);
	memset(es, 0, sizeof(*es));
}

/* Every entry, oldest first. */
static struct entries all_entries(struct store *st)
{
	struct entries es = {0};
	assert_int_equal(store_audit_each(st, NULL, INT64_MIN, -1, collect, &es), 0);
	return es;
}

static struct store_audit as_row(const struct entry *e)
{
	return (struct store_audit){
		.seq = e->seq, .time = e->time, .actor = e->actor, .role = e->role,
		.method = e->method, .path = e->path, .app = e->app, .status = e->status,
		.remote = e->remote, .detail = e->detail, .prev = e->prev, .hash = e->hash,
	};
}

static void record(struct store *st, const char *actor, const char *method, const char *path,
		   const char *app, int status, const char *detail)
{
	struct audit_call call = {
		.actor = actor, .role = str_eq(actor, "-") ? "-" : "admin", .method = method,
		.path = path, .app = app, .status = status, .remote = "127.0.0.1", .detail = detail,
	};
	char *err = NULL;
	int r = audit_record(st, &call, &err);
	if (r < 0)
		fail_msg("audit_record = %d: %s", r, err ? err : "?");
	assert_null(err);
}

/* Five calls of every kind: local and token callers, refused ones, with and
 * without an app and a detail. */
static void record_five(struct store *st)
{
	record(st, "local", "POST", "/v1/apps", "shop", 201, NULL);
	record(st, "local", "POST", "/v1/apps/shop/scale", "shop", 200, "web=3");
	record(st, "tok_0123456789ab", "POST", "/v1/apps/shop/config", "shop", 202,
	       "set DATABASE_URL (secret)");
	record(st, "-", "DELETE", "/v1/apps/shop", "shop", 401, NULL);
	record(st, "local", "POST", "/v1/tokens", NULL, 201, "id=tok_1 role=viewer apps=*");
}

/* A fresh, empty second store (the previous copy is thrown away). */
static struct store *open_copy(struct fixture *f)
{
	char *path = xasprintf("%s/copy.db", f->dir);
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
		char *p = xasprintf("%s%s", path, suffixes[i]);
		unlink(p);
		free(p);
	}
	char *err = NULL;
	struct store *st = store_open(path, &err);
	if (!st)
		fail_msg("store_open(%s): %s", path, err ? err : "?");
	free(path);
	return st;
}

/* The key f's store chains with, for tampering helpers that rehash as the
 * key's holder could. */
static struct audit_key f_key;

static void copy_key_row(void *ctx, const struct store_audit_key *k)
{
	assert_int_equal(store_audit_key_add(ctx, k), 0);
}

/* Copies the keying records of from into to. */
static void copy_keys(struct store *from, struct store *to)
{
	assert_int_equal(store_audit_keys_each(from, copy_key_row, to), 0);
}

/* Changes one entry of a copy. */
typedef void (*tamper_fn)(struct entry *e);

/* Copies f's log into a fresh store, calling tamper on the entry numbered
 * seq (or leaving it out when tamper is NULL), and verifies the copy. */
static void verify_tampered_copy(struct fixture *f, int64_t seq, tamper_fn tamper,
				 struct audit_verdict *v)
{
	struct entries es = all_entries(f->st);
	struct store *copy = open_copy(f);
	copy_keys(f->st, copy);
	audit_key_of(f->st, &f_key);
	for (size_t i = 0; i < es.n; i++) {
		if (es.e[i].seq == seq) {
			if (!tamper)
				continue;
			tamper(&es.e[i]);
		}
		struct store_audit row = as_row(&es.e[i]);
		assert_int_equal(store_audit_add(copy, &row), 0);
	}
	assert_int_equal(audit_verify(copy, v), 0);
	store_close(copy);
	entries_free(&es);
}

static void assert_broken(const struct audit_verdict *v, int64_t at, const char *reason_part)
{
	assert_false(v->ok);
	if (v->broken_at != at)
		fail_msg("broken at %lld, expected %lld (%s)", (long long)v->broken_at, (long long)at,
			 v->reason ? v->reason : "no reason");
	assert_non_null(v->reason);
	if (!strstr(v->reason, reason_part))
		fail_msg("reason '%s' does not say '%s'", v->reason, reason_part);
}

static void test_audit__empty_log_verifies(void **state)
{
	struct fixture *f = *state;
	struct audit_verdict v;
	assert_int_equal(audit_verify(f->st, &v), 0);
	assert_true(v.ok);
	assert_int_equal(v.entries, 0);
	assert_string_equal(v.head, "");
	audit_verdict_release(&v);
}

static void test_audit__chain_of_records_verifies(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	struct entries es = all_entries(f->st);
	assert_int_equal(es.n, 5);
	struct audit_key key;
	audit_key_of(f->st, &key);
	for (size_t i = 0; i < es.n; i++) {
		assert_int_equal(es.e[i].seq, (int64_t)i + 1);
		assert_string_equal(es.e[i].prev, i ? es.e[i - 1].hash : AUDIT_GENESIS);
		assert_int_equal(strlen(es.e[i].hash), 64);
		struct store_audit row = as_row(&es.e[i]);
		char h[CRYPTO_SHA256_HEX];
		audit_hash_keyed(&key, &row, h);
		assert_string_equal(h, es.e[i].hash);
		/* Keyed: the plain hash of the same entry is another. */
		audit_hash(&row, h);
		assert_string_not_equal(h, es.e[i].hash);
	}
	assert_null(es.e[0].detail);
	assert_string_equal(es.e[2].detail, "set DATABASE_URL (secret)");
	assert_null(es.e[4].app);

	struct audit_verdict v;
	assert_int_equal(audit_verify(f->st, &v), 0);
	assert_true(v.ok);
	assert_int_equal(v.entries, 5);
	assert_null(v.reason);
	assert_int_equal(v.keyed_from, 1);
	assert_int_equal(v.unchecked, 0);
	assert_string_equal(v.head, es.e[4].hash);
	audit_verdict_release(&v);

	/* An exact copy verifies too: the chain is in the rows alone. */
	verify_tampered_copy(f, -1, NULL, &v);
	assert_true(v.ok);
	assert_string_equal(v.head, es.e[4].hash);
	audit_verdict_release(&v);
	entries_free(&es);
}

static void swap_str(char **field, const char *value)
{
	free(*field);
	*field = value ? xstrdup(value) : NULL;
}

static void t_actor(struct entry *e) { swap_str(&e->actor, "local"); }
static void t_role(struct entry *e) { swap_str(&e->role, "viewer"); }
static void t_method(struct entry *e) { swap_str(&e->method, "GET"); }
static void t_path(struct entry *e) { swap_str(&e->path, "/v1/apps/shop/stop"); }
static void t_app(struct entry *e) { swap_str(&e->app, "other"); }
static void t_app_null(struct entry *e) { swap_str(&e->app, NULL); }
static void t_remote(struct entry *e) { swap_str(&e->remote, "10.0.0.1"); }
static void t_detail(struct entry *e) { swap_str(&e->detail, "set LOG_LEVEL"); }
static void t_detail_empty(struct entry *e) { swap_str(&e->detail, ""); }
static void t_status(struct entry *e) { e->status = 403; }
static void t_time(struct entry *e) { e->time += 1; }
static void t_prev(struct entry *e) { swap_str(&e->prev, AUDIT_GENESIS); }
static void t_hash(struct entry *e) { e->hash[0] = e->hash[0] == '0' ? '1' : '0'; }

static void test_audit__changed_field_of_a_middle_entry_is_found(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	static const tamper_fn tampers[] = {t_actor, t_role,   t_method, t_path,
					    t_app,   t_app_null, t_remote, t_detail,
					    t_detail_empty, t_status, t_time, t_prev, t_hash};
	for (size_t i = 0; i < ARRAY_SIZE(tampers); i++) {
		struct audit_verdict v;
		verify_tampered_copy(f, 3, tampers[i], &v);
		assert_broken(&v, 3, "hash mismatch");
		assert_int_equal(v.entries, 5);
		audit_verdict_release(&v);
	}
	/* The original is untouched. */
	struct audit_verdict v;
	assert_int_equal(audit_verify(f->st, &v), 0);
	assert_true(v.ok);
	audit_verdict_release(&v);
}

/* An edit whose author also fixed the entry's own hash. */
static void t_status_rehashed(struct entry *e)
{
	e->status = 200;
	struct store_audit row = as_row(e);
	char h[CRYPTO_SHA256_HEX];
	audit_hash_keyed(&f_key, &row, h);
	swap_str(&e->hash, h);
}

static void test_audit__edited_and_rehashed_entry_breaks_the_next_link(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	struct audit_verdict v;
	verify_tampered_copy(f, 4, t_status_rehashed, &v);
	assert_broken(&v, 5, "prev link mismatch");
	audit_verdict_release(&v);
}

static void test_audit__removed_entry_is_found_at_its_seq(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	static const int64_t gone[] = {3, 2, 1};
	for (size_t i = 0; i < ARRAY_SIZE(gone); i++) {
		struct audit_verdict v;
		verify_tampered_copy(f, gone[i], NULL, &v);
		assert_broken(&v, gone[i], "missing");
		assert_int_equal(v.entries, 4);
		audit_verdict_release(&v);
	}
	/* The last one cannot be told from a shorter log: only the head says so. */
	struct entries es = all_entries(f->st);
	struct audit_verdict v;
	verify_tampered_copy(f, 5, NULL, &v);
	assert_true(v.ok);
	assert_int_equal(v.entries, 4);
	assert_string_equal(v.head, es.e[3].hash);
	assert_string_not_equal(v.head, es.e[4].hash);
	audit_verdict_release(&v);
	entries_free(&es);
}

static void test_audit__inserted_entries_are_found(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	struct entries es = all_entries(f->st);

	/* A forged entry 3 that links properly, the old 3..5 moved up by one. */
	struct store *copy = open_copy(f);
	copy_keys(f->st, copy);
	struct audit_key key;
	audit_key_of(f->st, &key);
	for (size_t i = 0; i < 2; i++) {
		struct store_audit row = as_row(&es.e[i]);
		assert_int_equal(store_audit_add(copy, &row), 0);
	}
	struct store_audit forged = as_row(&es.e[2]);
	forged.actor = "local";
	forged.detail = "nothing to see";
	forged.prev = es.e[1].hash;
	char h[CRYPTO_SHA256_HEX];
	audit_hash_keyed(&key, &forged, h);
	forged.hash = h;
	assert_int_equal(store_audit_add(copy, &forged), 0);
	for (size_t i = 2; i < es.n; i++) {
		struct store_audit row = as_row(&es.e[i]);
		row.seq++;
		assert_int_equal(store_audit_add(copy, &row), 0);
	}
	struct audit_verdict v;
	assert_int_equal(audit_verify(copy, &v), 0);
	assert_broken(&v, 4, "hash mismatch");
	assert_int_equal(v.entries, 6);
	audit_verdict_release(&v);
	store_close(copy);

	/* A row numbered before the first one. */
	copy = open_copy(f);
	copy_keys(f->st, copy);
	struct store_audit early = as_row(&es.e[0]);
	early.seq = 0;
	assert_int_equal(store_audit_add(copy, &early), 0);
	assert_int_equal(audit_verify(copy, &v), 0);
	assert_broken(&v, 0, "out of sequence");
	audit_verdict_release(&v);
	store_close(copy);
	entries_free(&es);
}

/* The chain rewritten from entry 3 on, 3 edited, by someone without the
 * key: with plain SHA-256 as before keyed chaining, or with another key. */
static void rewrite_from_3(struct fixture *f, const struct audit_key *with, struct audit_verdict *v)
{
	struct entries es = all_entries(f->st);
	struct store *copy = open_copy(f);
	copy_keys(f->st, copy);
	char prev[CRYPTO_SHA256_HEX];
	for (size_t i = 0; i < es.n; i++) {
		if (es.e[i].seq >= 3) {
			if (es.e[i].seq == 3)
				es.e[i].status = 200;
			swap_str(&es.e[i].prev, prev);
			struct store_audit row = as_row(&es.e[i]);
			char h[CRYPTO_SHA256_HEX];
			if (with)
				audit_hash_keyed(with, &row, h);
			else
				audit_hash(&row, h);
			swap_str(&es.e[i].hash, h);
		}
		strlcpy_s(prev, es.e[i].hash, sizeof(prev));
		struct store_audit row = as_row(&es.e[i]);
		assert_int_equal(store_audit_add(copy, &row), 0);
	}
	assert_int_equal(audit_verify(copy, v), 0);
	store_close(copy);
	entries_free(&es);
}

static void test_audit__rehash_without_the_key_is_found_at_the_first_rewritten_entry(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	struct audit_verdict v;
	rewrite_from_3(f, NULL, &v);
	assert_broken(&v, 3, "hash mismatch");
	assert_true(v.broken);
	audit_verdict_release(&v);

	struct audit_key wrong;
	memset(&wrong, 0x5a, sizeof(wrong));
	rewrite_from_3(f, &wrong, &v);
	assert_broken(&v, 3, "hash mismatch");
	audit_verdict_release(&v);

	/* With the key it would pass: the check is the key, nothing else. */
	struct audit_key key;
	audit_key_of(f->st, &key);
	rewrite_from_3(f, &key, &v);
	assert_true(v.ok);
	audit_verdict_release(&v);
}

static void plant_key_row(void *ctx, const struct store_audit_key *k)
{
	struct store_audit_key *out = ctx;
	*out = *k;
	out->key_id = xstrdup(k->key_id);
	out->mac = xstrdup(k->mac);
}

static void test_audit__keying_records_cannot_be_moved_or_removed(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	struct store_audit_key k;
	assert_int_equal(store_audit_keys_each(f->st, plant_key_row, &k), 0);
	assert_int_equal(k.from_seq, 1);
	assert_int_equal(k.keyed_from, 1);
	assert_int_equal(strlen(k.key_id), 16);
	struct entries es = all_entries(f->st);

	/* Keyed chaining said to start after the log (so every entry would be
	 * checked the plain way), with the old MAC: refused. Then no record. */
	for (int variant = 0; variant < 2; variant++) {
		struct store *copy = open_copy(f);
		if (variant == 0) {
			struct store_audit_key moved = k;
			moved.from_seq = moved.keyed_from = 6;
			assert_int_equal(store_audit_key_add(copy, &moved), 0);
		}
		for (size_t i = 0; i < es.n; i++) {
			struct store_audit row = as_row(&es.e[i]);
			assert_int_equal(store_audit_add(copy, &row), 0);
		}
		struct audit_verdict v;
		assert_int_equal(audit_verify(copy, &v), 0);
		if (variant == 0)
			assert_broken(&v, 6, "does not match its MAC");
		else
			assert_broken(&v, 1, "audit_keys");
		audit_verdict_release(&v);
		store_close(copy);
	}
	entries_free(&es);
	free((char *)k.key_id);
	free((char *)k.mac);
}

static void test_audit__entries_of_another_key_are_unchecked_not_called_tampered(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	/* The same log under a data dir whose secret.key is another. */
	char *dir = xasprintf("%s/other", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	char *path = xasprintf("%s/state.db", dir);
	char *err = NULL;
	struct store *other = store_open(path, &err);
	assert_non_null(other);
	copy_keys(f->st, other);
	struct entries es = all_entries(f->st);
	for (size_t i = 0; i < es.n; i++) {
		struct store_audit row = as_row(&es.e[i]);
		assert_int_equal(store_audit_add(other, &row), 0);
	}
	struct audit_key mine, theirs;
	audit_key_of(f->st, &mine);
	audit_key_of(other, &theirs);
	assert_string_not_equal(mine.id, theirs.id);

	struct audit_verdict v;
	assert_int_equal(audit_verify(other, &v), 0);
	assert_false(v.ok);
	assert_false(v.broken);
	assert_int_equal(v.unchecked, 5);
	assert_int_equal(v.unchecked_from, 1);
	assert_int_equal(v.unchecked_to, 5);
	assert_non_null(strstr(v.reason, "entries 1 to 5 were chained with another secret key"));
	assert_non_null(strstr(v.reason, mine.id));
	assert_non_null(strstr(v.reason, theirs.id));
	assert_string_equal(v.head, es.e[4].hash);
	audit_verdict_release(&v);

	/* New entries are chained with the new key and checked; the old ones
	 * stay unchecked, and a broken link among them is still found. */
	record(other, "local", "POST", "/v1/apps/shop/stop", "shop", 200, NULL);
	assert_int_equal(audit_verify(other, &v), 0);
	assert_false(v.ok);
	assert_false(v.broken);
	assert_int_equal(v.entries, 6);
	assert_int_equal(v.unchecked, 5);
	audit_verdict_release(&v);
	/* Back with the original key: entries 1-5 check, 6 does not. */
	store_close(other);
	entries_free(&es);
	es = (struct entries){0};
	other = store_open(path, &err);
	struct entries all = all_entries(other);
	struct store *copy = open_copy(f);
	copy_keys(other, copy);
	for (size_t i = 0; i < all.n; i++) {
		struct store_audit row = as_row(&all.e[i]);
		assert_int_equal(store_audit_add(copy, &row), 0);
	}
	assert_int_equal(audit_verify(copy, &v), 0);
	assert_false(v.ok);
	assert_false(v.broken);
	assert_int_equal(v.unchecked, 1);
	assert_int_equal(v.unchecked_from, 6);
	audit_verdict_release(&v);
	/* An edit among the entries this key checks is still found. */
	store_close(copy);
	copy = open_copy(f);
	copy_keys(other, copy);
	for (size_t i = 0; i < all.n; i++) {
		struct store_audit row = as_row(&all.e[i]);
		if (row.seq == 4)
			row.hash = AUDIT_GENESIS;
		assert_int_equal(store_audit_add(copy, &row), 0);
	}
	assert_int_equal(audit_verify(copy, &v), 0);
	assert_broken(&v, 4, "hash mismatch");
	audit_verdict_release(&v);
	store_close(copy);
	store_close(other);
	entries_free(&all);
	free(path);
	free(dir);
}

struct verify_result {
	int calls, status;
	bool ok;
	int64_t entries, last_entries;
	char *reason;
};

static void verified(void *ctx, int status, const struct audit_verdict *v, const struct audit_last *last)
{
	struct verify_result *r = ctx;
	r->calls++;
	r->status = status;
	if (v) {
		r->ok = v->ok;
		r->entries = v->entries;
		free(r->reason);
		r->reason = v->reason ? xstrdup(v->reason) : NULL;
	}
	r->last_entries = last->entries;
}

static void test_audit__one_walk_at_a_time_off_the_loop_and_joined(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	uv_loop_t loop;
	uv_loop_init(&loop);
	char *err = NULL;
	struct audit *a = audit_new(&loop, f->st, &err);
	assert_non_null(a);
	struct verify_result r1 = {0}, r2 = {0}, r3 = {0};
	struct audit_anchor anchor = {.seq = 2};
	struct entries es = all_entries(f->st);
	strlcpy_s(anchor.hash, es.e[1].hash, sizeof(anchor.hash));
	assert_int_equal(audit_verify_start(a, NULL, verified, &r1), 0);
	assert_int_equal(audit_verify_start(a, NULL, verified, &r2), 1);
	assert_int_equal(audit_verify_start(a, &anchor, verified, &r3), -EBUSY);
	assert_int_equal(r1.calls + r2.calls, 0); /* answered from the loop only */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r1.calls, 1);
	assert_int_equal(r2.calls, 1);
	assert_int_equal(r3.calls, 0);
	assert_true(r1.ok && r2.ok);
	assert_int_equal(r1.entries, 5);
	assert_int_equal(r1.last_entries, 0);

	/* The next walk knows where the last one ended. */
	record(f->st, "local", "POST", "/v1/apps/shop/stop", "shop", 200, NULL);
	assert_int_equal(audit_verify_start(a, &anchor, verified, &r3), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r3.calls, 1);
	assert_true(r3.ok);
	assert_int_equal(r3.entries, 6);
	assert_int_equal(r3.last_entries, 5);

	/* After audit_stop nothing new starts. */
	audit_stop(a);
	assert_int_equal(audit_verify_start(a, NULL, verified, &r1), -ECANCELED);
	audit_free(a);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(r1.reason);
	free(r2.reason);
	free(r3.reason);
	entries_free(&es);
}

static bool same_hash(const struct store_audit *a, const struct store_audit *b)
{
	char h1[CRYPTO_SHA256_HEX], h2[CRYPTO_SHA256_HEX];
	audit_hash(a, h1);
	audit_hash(b, h2);
	return strcmp(h1, h2) == 0;
}

static void test_audit__hash_tells_field_boundaries_and_null_apart(void **state)
{
	const struct store_audit a = {.seq = 1, .time = 5, .actor = "ab", .role = "c",
				      .method = "POST", .path = "/v1/apps", .app = NULL,
				      .status = 200, .remote = "unix", .detail = NULL,
				      .prev = AUDIT_GENESIS};
	struct store_audit b = a;
	b.actor = "a";
	b.role = "bc";
	assert_false(same_hash(&a, &b));
	b = a;
	b.app = "";
	assert_false(same_hash(&a, &b));
	b = a;
	b.detail = "";
	assert_false(same_hash(&a, &b));
	b = a;
	b.seq = 15; /* "1" + time "5" must not read as "15" + "" */
	b.time = 0;
	assert_false(same_hash(&a, &b));
	/* And it is a function of the fields alone. */
	b = a;
	b.hash = "ignored";
	assert_true(same_hash(&a, &b));
}

static void test_audit__listing_filters_and_keeps_the_newest(void **state)
{
	struct fixture *f = *state;
	record_five(f->st);
	record(f->st, "local", "POST", "/v1/apps/blog/stop", "blog", 200, NULL);

	struct json *all = audit_entries_json(f->st, NULL, 0, 100);
	assert_int_equal(json_size(all), 6);
	struct json *first = json_at(all, 0);
	int64_t n;
	assert_int_equal(json_get_int(json_get(first, "seq"), &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(json_get_str(first, "actor"), "local");
	assert_string_equal(json_get_str(first, "role"), "admin");
	assert_string_equal(json_get_str(first, "method"), "POST");
	assert_string_equal(json_get_str(first, "path"), "/v1/apps");
	assert_string_equal(json_get_str(first, "app"), "shop");
	assert_string_equal(json_get_str(first, "remote"), "127.0.0.1");
	assert_true(json_is_null(json_get(first, "detail")));
	assert_true(json_is_string(json_get(first, "time")));
	assert_int_equal(strlen(json_get_str(first, "hash")), 64);
	assert_null(json_get(first, "prev"));
	assert_int_equal(json_get_int(json_get(first, "status"), &n), 0);
	assert_int_equal(n, 201);
	json_free(all);

	/* The newest N, oldest first. */
	struct json *last2 = audit_entries_json(f->st, NULL, 0, 2);
	assert_int_equal(json_size(last2), 2);
	assert_int_equal(json_get_int(json_get(json_at(last2, 0), "seq"), &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(json_get_int(json_get(json_at(last2, 1), "seq"), &n), 0);
	assert_int_equal(n, 6);
	json_free(last2);

	struct json *shop = audit_entries_json(f->st, "shop", 1, 100);
	assert_int_equal(json_size(shop), 3); /* 2, 3, 4 */
	for (size_t i = 0; i < json_size(shop); i++) {
		assert_string_equal(json_get_str(json_at(shop, i), "app"), "shop");
		assert_int_equal(json_get_int(json_get(json_at(shop, i), "seq"), &n), 0);
		assert_int_equal(n, (int64_t)i + 2);
	}
	json_free(shop);
	struct json *none = audit_entries_json(f->st, "nope", 0, 100);
	assert_int_equal(json_size(none), 0);
	json_free(none);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth__viewer_may_only_read),
		cmocka_unit_test(test_auth__deployer_may_read_and_write_but_not_manage),
		cmocka_unit_test(test_auth__admin_may_do_everything),
		cmocka_unit_test(test_auth__public_is_always_allowed),
		cmocka_unit_test(test_auth__scoped_principals_reach_only_their_apps),
		cmocka_unit_test(test_auth__unscoped_principals_reach_every_app),
		cmocka_unit_test(test_auth__role_names_parse_and_print),
		T(test_auth__token_create_answers_the_secret_once),
		T(test_auth__token_with_expiry_answers_when_it_expires),
		T(test_auth__token_create_refuses_bad_input),
		T(test_auth__authenticate_resolves_role_and_scope),
		T(test_auth__authenticate_unscoped_admin),
		T(test_auth__authenticate_refuses_missing_and_malformed_headers),
		T(test_auth__authenticate_refuses_unknown_and_altered_tokens),
		T(test_auth__revoked_token_is_refused),
		T(test_auth__revoke_of_an_unknown_token_is_enoent),
		T(test_auth__revoke_by_secret_revokes_the_token_it_belongs_to),
		T(test_auth__admin_tokens_cannot_be_scoped),
		T(test_auth__token_scope_names_each_app_once),
		T(test_auth__authenticate_gives_the_expiry),
		T(test_auth__expired_token_is_refused),
		T(test_auth__revoked_and_expired_says_revoked),
		T(test_auth__token_with_an_unknown_role_is_refused),
		T(test_auth__secret_is_not_stored_or_listed),
		T(test_auth__authenticate_records_last_use),
		T(test_audit__empty_log_verifies),
		T(test_audit__chain_of_records_verifies),
		T(test_audit__changed_field_of_a_middle_entry_is_found),
		T(test_audit__edited_and_rehashed_entry_breaks_the_next_link),
		T(test_audit__removed_entry_is_found_at_its_seq),
		T(test_audit__inserted_entries_are_found),
		T(test_audit__rehash_without_the_key_is_found_at_the_first_rewritten_entry),
		T(test_audit__keying_records_cannot_be_moved_or_removed),
		T(test_audit__entries_of_another_key_are_unchecked_not_called_tampered),
		T(test_audit__one_walk_at_a_time_off_the_loop_and_joined),
		cmocka_unit_test(test_audit__hash_tells_field_boundaries_and_null_apart),
		T(test_audit__listing_filters_and_keeps_the_newest),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
