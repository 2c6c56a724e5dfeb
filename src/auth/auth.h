/* auth.h: who is calling and what they may do. Tokens ("pso_" + 32 random
 * bytes, base64url) are shown once and stored only as SHA-256; lookups
 * compare hashes in constant time. The permission table (role × action) and
 * app scoping live here and nowhere else. */
#ifndef PAASOPS_AUTH_H
#define PAASOPS_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct json;

enum auth_role { AUTH_VIEWER, AUTH_DEPLOYER, AUTH_ADMIN, AUTH_NROLES };
enum auth_action {
	AUTH_PUBLIC, /* no token needed (/healthz) */
	AUTH_READ,   /* read an app (or, without an app, read what one's scope allows) */
	AUTH_WRITE,  /* change an app */
	AUTH_MANAGE, /* tokens and other installation-wide changes */
	AUTH_NACTIONS
};

struct auth_principal {
	enum auth_role role;
	char *token_id; /* NULL for the local unix-socket user */
	char **apps;    /* scope; n_apps == 0 means every app */
	size_t n_apps;
	int64_t expires_at; /* wall-clock ms; 0: never */
};

/* The local user on the unix socket: admin, unscoped. */
void auth_principal_local(struct auth_principal *p);
void auth_principal_release(struct auth_principal *p);

/* Resolves an "Authorization" header value. 0, or -EACCES with *err set
 * (missing, malformed, unknown, revoked, expired, or an admin token stored
 * with an app scope, which admin tokens cannot have). */
int auth_authenticate(struct store *st, const char *authorization, struct auth_principal *out,
		      char **err);
/* The permission table. app may be NULL for calls not about one app, in
 * which case scoped principals pass and must filter what they show. */
bool auth_allows(const struct auth_principal *p, enum auth_action a, const char *app);

const char *auth_role_name(enum auth_role r);
int auth_role_parse(const char *s, enum auth_role *out);

/* Creates a token. apps: JSON array of distinct app names or NULL, and
 * empty for admin; expires_in_ms 0 for never. On success *out is the JSON
 * answer holding the secret once. */
int auth_token_create(struct store *st, enum auth_role role, const struct json *apps,
		      int64_t expires_in_ms, const char *name, struct json **out, char **err);
struct json *auth_tokens_json(struct store *st);
/* Revokes the token ref names: its id, or its secret ("pso_...", looked up
 * by its hash). On success *id is the token's id (caller frees); -ENOENT
 * when there is no such token. */
int auth_token_revoke(struct store *st, const char *ref, char **id, char **err);
/* Whether s looks like a token's secret ("pso_..."), which must never be
 * written to a log. */
bool auth_is_secret(const char *s);

#endif
