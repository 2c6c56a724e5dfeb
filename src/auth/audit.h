/* audit.h: the tamper-evident audit log. Every call that changes something
 * (or tried to) is appended as one entry: who, what, on which app, with
 * what outcome. Entries are numbered 1, 2, 3, ... and each carries a hash
 * of its own fields and of the previous entry's hash, so editing, removing
 * or inserting an entry anywhere but at the end breaks the chain from that
 * entry on. The hash is an HMAC-SHA256 under a key derived from the data
 * dir's secret key, so whoever can write the database but not read that
 * key cannot rehash the chain after an edit; entries written before keyed
 * chaining existed keep their plain SHA-256 (the table audit_keys says
 * from which entry on, and with which key). Request bodies and secret
 * values are never part of an entry; callers keep detail to names and
 * counts.
 *
 * All functions run on the control loop thread, like the store, except
 * the walk that audit_verify_start runs on the thread pool. */
#ifndef PAASOPS_AUDIT_H
#define PAASOPS_AUDIT_H
#include "compat/crypto.h"
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

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
/* What the audit key is derived for (HKDF info) from the secret key. */
#define AUDIT_KEY_PURPOSE "paasops audit chain v1"
#define AUDIT_KEY_ID_HEX 17 /* 16 hex digits + NUL */

/* The key entries are chained with, derived from st's secret key, and its
 * id: the first 16 hex digits of HMAC-SHA256(key, "paasops-audit-key-id"),
 * which names the key without giving it away. */
struct audit_key {
	unsigned char key[CRYPTO_KEY_BYTES];
	char id[AUDIT_KEY_ID_HEX];
};
void audit_key_of(const struct store *st, struct audit_key *out);

/* Makes sure the entries recorded from now on are chained with st's key:
 * on a database that has no keyed entry yet it records that keyed
 * chaining starts with the next entry, and after the secret key changed
 * that the next entries use the new one. When the records of earlier keys
 * are gone (emptied outside paasops) it adds none: the log stays reported
 * as broken. Run at start-up; audit_record runs it too. 0, or a negative
 * errno with *err set (caller frees). */
int audit_prepare(struct store *st, char **err);

/* Appends call as the next entry, stamped with the wall clock and chained
 * with st's key. 0, or a negative errno with *err set (caller frees). */
int audit_record(struct store *st, const struct audit_call *call, char **err);

/* The plain SHA-256 an entry from before keyed chaining must carry: over
 * its seq, time, fields and prev (see audit.c for the exact bytes); e->hash
 * is not read. */
void audit_hash(const struct store_audit *e, char out[CRYPTO_SHA256_HEX]);
/* The HMAC-SHA256 under key that a keyed entry must carry, over the same
 * fields (another version line). */
void audit_hash_keyed(const struct audit_key *key, const struct store_audit *e,
		      char out[CRYPTO_SHA256_HEX]);

/* What audit_verify found. ok is the only "all is well": a log that is not
 * broken but has entries this key cannot check is not ok either. */
struct audit_verdict {
	bool ok;
	bool broken;       /* an entry or a keying record is not as written */
	int64_t entries;   /* rows in the log */
	int64_t broken_at; /* broken: the first seq that is not as it should be */
	char *reason;      /* not ok: why, one line (the breakage first); owned */
	int64_t keyed_from; /* the first entry chained with a key; 0: no keying record */
	/* Entries chained with a key other than st's (secret.key replaced
	 * since): their links are followed, their hashes cannot be checked. */
	int64_t unchecked, unchecked_from, unchecked_to;
	char head[CRYPTO_SHA256_HEX]; /* not broken: the newest entry's hash ("" when empty) */
};

/* Walks the whole log from entry 1 and checks every link: entries numbered
 * without gaps from 1, each prev equal to the previous entry's hash (the
 * genesis value for entry 1), each hash equal to audit_hash (before
 * keyed_from) or audit_hash_keyed (from it on) of the entry, and the
 * keying records intact. 0 with *out filled (release with
 * audit_verdict_release), or a negative errno when the store cannot be
 * read. Cutting entries off the end is invisible here: compare head with
 * one recorded earlier. Runs on the calling thread, as long as the log is:
 * the daemon uses audit_verify_start. */
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

/* ---- verifying off the control loop ----
 * struct audit runs one walk at a time on the libuv thread pool, over its
 * own read-only connection, so the loop keeps serving meanwhile; and it
 * remembers the newest entry the last walk found intact, which the next
 * walk checks like an anchor. */
struct audit;
/* Runs audit_prepare. st is borrowed and must outlive the audit. NULL +
 * *err on error. */
struct audit *audit_new(uv_loop_t *loop, struct store *st, char **err);
/* The remembered end of the last walk that found the log unbroken. */
struct audit_last {
	int64_t entries;              /* 0: no walk yet */
	char head[CRYPTO_SHA256_HEX];
	int64_t at_ms;                /* wall clock when that walk ended */
};
/* Called on the loop thread when the walk ends: status 0 with v (borrowed
 * for the call), or a negative errno (-ECANCELED after audit_stop) and v
 * NULL. last is what was remembered before this walk (entries 0: none). */
typedef void (*audit_verify_cb)(void *ctx, int status, const struct audit_verdict *v,
				const struct audit_last *last);
/* Starts a walk with anchor (NULL: none; copied) and calls cb when it ends.
 * While one runs, a request with the same anchor joins it (1) and is
 * answered with its result; one with another anchor is refused (-EBUSY,
 * cb never called). 0 when started. */
int audit_verify_start(struct audit *a, const struct audit_anchor *anchor, audit_verify_cb cb, void *ctx);
/* Like audit_verify_start without an anchor, but joins the walk running
 * whatever its anchor (its verdict then includes that anchor's check): for
 * callers that want the log's state, not a particular anchor's. 0 or 1
 * like audit_verify_start, or a negative errno. */
int audit_verify_join(struct audit *a, audit_verify_cb cb, void *ctx);
/* Whether audit_verify_start with anchor would be refused with -EBUSY. */
bool audit_verify_busy(const struct audit *a, const struct audit_anchor *anchor);
/* Makes a running walk end soon; its callbacks still come, with -ECANCELED. */
void audit_stop(struct audit *a);
/* After the loop ran its last callback. NULL does nothing. */
void audit_free(struct audit *a);

/* The entries of app (NULL: all) with seq > after, at most the newest
 * limit, oldest first, as a JSON array of {seq, time, actor, role, method,
 * path, app, status, remote, detail, hash}. NULL when the store fails. */
struct json *audit_entries_json(struct store *st, const char *app, int64_t after, int64_t limit);

#endif
