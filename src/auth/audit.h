/* audit.h: the tamper-evident audit log. Every call that changes something
 * (or tried to) is appended as one entry: who, what, on which app, with
 * what outcome. Entries are numbered 1, 2, 3, ... and each carries the
 * SHA-256 of its own fields and of the previous entry's hash, so editing,
 * removing or inserting an entry anywhere but at the end breaks the chain
 * from that entry on. Request bodies and secret values are never part of an
 * entry; callers keep detail to names and counts.
 *
 * All functions run on the control loop thread, like the store. */
#ifndef PAASOPS_AUDIT_H
#define PAASOPS_AUDIT_H
#include "compat/crypto.h"
#include <stdbool.h>
#include <stdint.h>

struct store;
struct store_audit;
struct json;

/* One call to record. Strings are borrowed. */
struct audit_call {
	const char *actor;  /* token id, "local" (unix socket) or "-" (not authenticated) */
	const char *role;   /* role name, or "-" */
	const char *method; /* "POST", "DELETE", ... */
	const char *path;   /* decoded, without the query */
	const char *app;    /* NULL: not about one app */
	int status;         /* the status answered */
	const char *remote; /* peer address, or "unix" */
	const char *detail; /* short summary without secrets, or NULL */
};

/* The prev of entry 1. */
#define AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* Appends call as the next entry, stamped with the wall clock. 0, or a
 * negative errno with *err set (caller frees). */
int audit_record(struct store *st, const struct audit_call *call, char **err);

/* The hash an entry must carry: over its seq, time, fields and prev (see
 * audit.c for the exact bytes); e->hash is not read. */
void audit_hash(const struct store_audit *e, char out[CRYPTO_SHA256_HEX]);

/* What audit_verify found. */
struct audit_verdict {
	bool ok;
	int64_t entries;   /* rows in the log */
	int64_t broken_at; /* ok false: the first seq that is not as it should be */
	char *reason;      /* ok false: why, one line; owned */
	char head[CRYPTO_SHA256_HEX]; /* ok: the newest entry's hash ("" when empty) */
};

/* Walks the whole log from entry 1 and checks every link: entries numbered
 * without gaps from 1, each prev equal to the previous entry's hash (the
 * genesis value for entry 1) and each hash equal to audit_hash of the
 * entry. 0 with *out filled (release with audit_verdict_release), or a
 * negative errno when the store cannot be read. Cutting entries off the end
 * is invisible here: compare head with one recorded earlier. */
int audit_verify(struct store *st, struct audit_verdict *out);
/* An entry's hash recorded earlier, somewhere the daemon's host cannot
 * write: "SEQ:HASH" as `audit verify` prints the head. */
struct audit_anchor {
	int64_t seq;
	char hash[CRYPTO_SHA256_HEX];
};
/* 0, or -EINVAL with *err (caller frees) when s is not SEQ:HASH. */
int audit_anchor_parse(const char *s, struct audit_anchor *a, char **err);
/* audit_verify, and also: entry anchor->seq exists and still carries
 * anchor->hash, which catches what the chain alone cannot (the tail cut
 * off, or every entry from an edit onwards rehashed). anchor may be NULL. */
int audit_verify_anchored(struct store *st, const struct audit_anchor *anchor, struct audit_verdict *out);
void audit_verdict_release(struct audit_verdict *v);

/* The entries of app (NULL: all) with seq > after, at most the newest
 * limit, oldest first, as a JSON array of {seq, time, actor, role, method,
 * path, app, status, remote, detail, hash}. NULL when the store fails. */
struct json *audit_entries_json(struct store *st, const char *app, int64_t after, int64_t limit);

#endif
