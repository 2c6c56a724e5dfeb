/* auth.c: tokens, roles and the permission table (see auth.h). */
#include "auth/auth.h"
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec.h"
#include "store/store.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_PREFIX "pso_"
#define TOKEN_BYTES 32

static const char *const role_names[AUTH_NROLES] = {"viewer", "deployer", "admin"};

/* Which role may perform which action; scope is checked separately. */
static const bool permitted[AUTH_NROLES][AUTH_NACTIONS] = {
	[AUTH_VIEWER] = {[AUTH_PUBLIC] = true, [AUTH_READ] = true},
	[AUTH_DEPLOYER] = {[AUTH_PUBLIC] = true, [AUTH_READ] = true, [AUTH_WRITE] = true},
	[AUTH_ADMIN] = {[AUTH_PUBLIC] = true, [AUTH_READ] = true, [AUTH_WRITE] = true,
			[AUTH_MANAGE] = true},
};

const char *auth_role_name(enum auth_role r)
{
	return r < AUTH_NROLES ? role_names[r] : "unknown";
}

int auth_role_parse(const char *s, enum auth_role *out)
{
	for (int r = 0; s && r < AUTH_NROLES; r++) {
		if (strcmp(s, role_names[r]) == 0) {
			*out = (enum auth_role)r;
			return 0;
		}
	}
	return -EINVAL;
}

void auth_principal_local(struct auth_principal *p)
{
	memset(p, 0, sizeof(*p));
	p->role = AUTH_ADMIN;
}

void auth_principal_release(struct auth_principal *p)
{
	for (size_t k = 0; k < p->n_apps; k++)
		free(p->apps[k]);
	free(p->apps);
	free(p->token_id);
	memset(p, 0, sizeof(*p));
}

bool auth_allows(const struct auth_principal *p, enum auth_action a, const char *app)
{
	if (a == AUTH_PUBLIC)
		return true;
	if (!permitted[p->role][a])
		return false;
	if (!app || p->n_apps == 0 || a == AUTH_MANAGE)
		return true;
	for (size_t k = 0; k < p->n_apps; k++)
		if (strcmp(p->apps[k], app) == 0)
			return true;
	return false;
}

struct lookup {
	const char *hash;
	struct auth_principal *out;
	bool found, revoked, expired;
};

bool auth_is_secret(const char *s)
{
	return s && strncmp(s, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) == 0;
}

static void on_token(void *ctx, const struct store_token *t)
{
	struct lookup *l = ctx;
	if (!crypto_equal(t->hash, l->hash, CRYPTO_SHA256_HEX - 1))
		return;
	l->found = true;
	l->revoked = t->revoked;
	l->expired = t->expires_at && t->expires_at <= time_wall_ms();
	enum auth_role role;
	if (auth_role_parse(t->role, &role) < 0) {
		l->found = false;
		return;
	}
	l->out->role = role;
	l->out->token_id = xstrdup(t->id);
	l->out->expires_at = t->expires_at;
	struct json *apps = json_parse(t->apps, strlen(t->apps), NULL);
	for (size_t k = 0; k < json_size(apps); k++) {
		const char *name = json_str(json_at(apps, k));
		if (!name)
			continue;
		l->out->apps = xrealloc(l->out->apps, (l->out->n_apps + 1) * sizeof(char *));
		l->out->apps[l->out->n_apps++] = xstrdup(name);
	}
	json_free(apps);
}

int auth_authenticate(struct store *st, const char *authorization, struct auth_principal *out,
		      char **err)
{
	memset(out, 0, sizeof(*out));
	if (!authorization) {
		*err = xstrdup("a bearer token is required (Authorization: Bearer pso_...)");
		return -EACCES;
	}
	if (strncasecmp(authorization, "Bearer ", 7) != 0) {
		*err = xstrdup("the Authorization header must be 'Bearer <token>'");
		return -EACCES;
	}
	const char *tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	if (!auth_is_secret(tok) || strlen(tok) > 200) {
		*err = xstrdup("malformed token");
		return -EACCES;
	}
	char hash[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(tok, strlen(tok), hash);
	struct lookup l = {.hash = hash, .out = out};
	store_token_by_hash(st, hash, on_token, &l);
	if (!l.found || l.revoked || l.expired) {
		*err = xstrdup(!l.found ? "unknown token" : l.revoked ? "token revoked" : "token expired");
		auth_principal_release(out);
		return -EACCES;
	}
	/* Stored before admin tokens could not be scoped: its scope never
	 * bounded what it could manage, and honouring it as unscoped would
	 * grant more than its creator meant, so it is refused outright. */
	if (out->role == AUTH_ADMIN && out->n_apps) {
		*err = xasprintf("token %s is an admin token scoped to apps, which admin tokens cannot "
				 "be; revoke it and create an unscoped admin token, or a deployer token "
				 "for those apps",
				 out->token_id);
		auth_principal_release(out);
		return -EACCES;
	}
	store_token_touch(st, out->token_id, time_wall_ms());
	return 0;
}

int auth_token_create(struct store *st, enum auth_role role, const struct json *apps,
		      int64_t expires_in_ms, const char *name, struct json **out, char **err)
{
	if (apps && !json_is_array(apps)) {
		*err = xstrdup("'apps' must be an array of app names");
		return -EINVAL;
	}
	for (size_t k = 0; k < json_size(apps); k++) {
		const char *a = json_str(json_at(apps, k));
		if (!a || !spec_valid_name(a)) {
			*err = xasprintf("'apps' entry %zu is not a valid app name", k);
			return -EINVAL;
		}
		for (size_t j = 0; j < k; j++) {
			if (strcmp(a, json_str(json_at(apps, j))) == 0) {
				*err = xasprintf("'apps' names app '%s' twice", a);
				return -EINVAL;
			}
		}
	}
	/* Managing the installation (tokens, backups, the audit log) is not
	 * about one app, so no scope could bound an admin token. */
	if (role == AUTH_ADMIN && json_size(apps)) {
		*err = xstrdup("an admin token cannot be scoped to apps: 'apps' is for deployer and "
			       "viewer tokens");
		return -EINVAL;
	}
	if (name && strlen(name) > 100) {
		*err = xstrdup("'name' is longer than 100 characters");
		return -EINVAL;
	}
	unsigned char secret[TOKEN_BYTES], idb[6];
	if (crypto_random(secret, sizeof(secret)) < 0 || crypto_random(idb, sizeof(idb)) < 0) {
		*err = xstrdup("no randomness available");
		return -EIO;
	}
	char *enc = crypto_base64url(secret, sizeof(secret));
	char *token = xasprintf(TOKEN_PREFIX "%s", enc);
	free(enc);
	char *hexid = crypto_hex(idb, sizeof(idb));
	char *id = xasprintf("tok_%s", hexid);
	free(hexid);
	char hash[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(token, strlen(token), hash);
	char *apps_text = apps ? json_print(apps, false) : xstrdup("[]");
	int64_t now = time_wall_ms();
	struct store_token t = {
		.id = id, .name = name, .hash = hash, .role = auth_role_name(role), .apps = apps_text,
		.created_at = now, .expires_at = expires_in_ms ? now + expires_in_ms : 0,
	};
	int r = store_token_add(st, &t);
	if (r < 0) {
		*err = xasprintf("cannot save token: %s", store_errmsg(st));
	} else {
		struct json *o = json_object();
		json_set_str(o, "id", id);
		json_set_str(o, "token", token);
		json_set_str(o, "name", name);
		json_set_str(o, "role", auth_role_name(role));
		json_set(o, "apps", apps ? json_dup(apps) : json_array());
		if (t.expires_at) {
			char ts[40];
			time_format_iso(t.expires_at, ts, sizeof(ts));
			json_set_str(o, "expires_at", ts);
		} else {
			json_set_str(o, "expires_at", NULL);
		}
		*out = o;
	}
	explicit_bzero(token, strlen(token));
	explicit_bzero(secret, sizeof(secret));
	free(token);
	free(id);
	free(apps_text);
	return r;
}

static void set_ts(struct json *o, const char *key, int64_t ms)
{
	if (!ms) {
		json_set_str(o, key, NULL);
		return;
	}
	char ts[40];
	time_format_iso(ms, ts, sizeof(ts));
	json_set_str(o, key, ts);
}

static void list_token(void *ctx, const struct store_token *t)
{
	struct json *o = json_append(ctx, json_object());
	json_set_str(o, "id", t->id);
	json_set_str(o, "name", t->name);
	json_set_str(o, "role", t->role);
	struct json *apps = json_parse(t->apps, strlen(t->apps), NULL);
	json_set(o, "apps", apps ? apps : json_array());
	set_ts(o, "created_at", t->created_at);
	set_ts(o, "expires_at", t->expires_at);
	set_ts(o, "last_used_at", t->last_used_at);
	json_set_bool(o, "revoked", t->revoked);
	json_set_bool(o, "expired", t->expires_at && t->expires_at <= time_wall_ms());
}

struct json *auth_tokens_json(struct store *st)
{
	struct json *arr = json_array();
	store_tokens_each(st, list_token, arr);
	return arr;
}

struct by_secret {
	const char *hash;
	char *id;
};

static void on_secret(void *ctx, const struct store_token *t)
{
	struct by_secret *b = ctx;
	if (crypto_equal(t->hash, b->hash, CRYPTO_SHA256_HEX - 1) && !b->id)
		b->id = xstrdup(t->id);
}

int auth_token_revoke(struct store *st, const char *ref, char **id, char **err)
{
	*id = NULL;
	if (auth_is_secret(ref)) {
		char hash[CRYPTO_SHA256_HEX];
		crypto_sha256_hex(ref, strlen(ref), hash);
		struct by_secret b = {.hash = hash};
		store_token_by_hash(st, hash, on_secret, &b);
		explicit_bzero(hash, sizeof(hash));
		if (!b.id) {
			*err = xstrdup("no token has that secret");
			return -ENOENT;
		}
		*id = b.id;
	} else {
		*id = xstrdup(ref);
	}
	int r = store_token_revoke(st, *id);
	if (r == -ENOENT && strlen(*id) > 64)
		*err = xstrdup("token not found (a token id is 'tok_' and 12 hex digits)");
	else if (r == -ENOENT)
		*err = xasprintf("token '%s' not found", *id);
	else if (r < 0)
		*err = xasprintf("cannot revoke token: %s", store_errmsg(st));
	if (r < 0) {
		free(*id);
		*id = NULL;
	}
	return r;
}
