/* audit.c: the hash-chained audit log (see audit.h). */
#include "auth/audit.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "store/store.h"
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- the hash ----
 *
 * An entry's hash is the lowercase hex SHA-256 of these bytes, one item
 * after the other with nothing in between:
 *
 *   "paasops-audit-1\n"
 *   seq, time, actor, role, method, path, app, status, remote, detail, prev
 *
 * where each item is a netstring, "<decimal byte length>:<bytes>,", numbers
 * written in decimal ("17:..." is never "017"), and a NULL app or detail is
 * "~," (no netstring starts with '~', so NULL and "" differ). The lengths
 * make the encoding unambiguous whatever bytes a field holds; prev ties the
 * entry to the one before it. */

static void put_text(struct strbuf *sb, const char *s)
{
	if (!s) {
		strbuf_adds(sb, "~,");
		return;
	}
	size_t n = strlen(s);
	strbuf_addf(sb, "%zu:", n);
	strbuf_add(sb, s, n);
	strbuf_addc(sb, ',');
}

static void put_int(struct strbuf *sb, int64_t v)
{
	char num[24];
	snprintf(num, sizeof(num), "%" PRId64, v);
	put_text(sb, num);
}

void audit_hash(const struct store_audit *e, char out[CRYPTO_SHA256_HEX])
{
	struct strbuf sb;
	strbuf_init(&sb, 256);
	strbuf_adds(&sb, "paasops-audit-1\n");
	put_int(&sb, e->seq);
	put_int(&sb, e->time);
	put_text(&sb, e->actor);
	put_text(&sb, e->role);
	put_text(&sb, e->method);
	put_text(&sb, e->path);
	put_text(&sb, e->app);
	put_int(&sb, e->status);
	put_text(&sb, e->remote);
	put_text(&sb, e->detail);
	put_text(&sb, e->prev);
	crypto_sha256_hex(sb.buf, sb.len, out);
	strbuf_release(&sb);
}

/* ---- recording ---- */

int audit_record(struct store *st, const struct audit_call *call, char **err)
{
	int64_t last = 0;
	char prev[CRYPTO_SHA256_HEX];
	int r = store_audit_last(st, &last, prev, sizeof(prev));
	if (r == -ENOENT) {
		last = 0;
		strlcpy_s(prev, AUDIT_GENESIS, sizeof(prev));
	} else if (r < 0) {
		*err = xasprintf("cannot read the audit log: %s", store_errmsg(st));
		return r;
	}
	struct store_audit e = {
		.seq = last + 1,
		.time = time_wall_ms(),
		.actor = call->actor,
		.role = call->role,
		.method = call->method,
		.path = call->path,
		.app = call->app,
		.status = call->status,
		.remote = call->remote,
		.detail = call->detail,
		.prev = prev,
	};
	char hash[CRYPTO_SHA256_HEX];
	audit_hash(&e, hash);
	e.hash = hash;
	r = store_audit_add(st, &e);
	if (r < 0)
		*err = xasprintf("cannot append to the audit log: %s", store_errmsg(st));
	return r;
}

/* ---- verifying ---- */

struct walk {
	struct audit_verdict *v;
	int64_t expect;                /* the seq the next entry must have */
	char prev[CRYPTO_SHA256_HEX]; /* the hash the next entry must link to */
	const struct audit_anchor *anchor; /* or NULL */
};

static void broken(struct walk *w, int64_t seq, char *reason)
{
	w->v->ok = false;
	w->v->broken_at = seq;
	w->v->reason = reason;
}

static void check_entry(void *ctx, const struct store_audit *e)
{
	struct walk *w = ctx;
	w->v->entries++;
	if (!w->v->ok)
		return; /* only counting from here */
	if (e->seq != w->expect) {
		if (e->seq > w->expect)
			broken(w, w->expect,
			       e->seq == w->expect + 1
				       ? xasprintf("entry %" PRId64 " is missing (the next one is %" PRId64 ")",
						   w->expect, e->seq)
				       : xasprintf("entries %" PRId64 " to %" PRId64 " are missing (the next one is %" PRId64 ")",
						   w->expect, e->seq - 1, e->seq));
		else
			broken(w, e->seq, xasprintf("entry number %" PRId64 " is out of sequence (expected %" PRId64 ")",
						    e->seq, w->expect));
		return;
	}
	char want[CRYPTO_SHA256_HEX];
	audit_hash(e, want);
	if (!e->hash || strcmp(e->hash, want) != 0) {
		broken(w, e->seq, xstrdup("hash mismatch: the entry's fields do not match its hash"));
		return;
	}
	if (!e->prev || strcmp(e->prev, w->prev) != 0) {
		broken(w, e->seq,
		       e->seq == 1 ? xstrdup("prev link mismatch: the first entry does not start the chain")
				   : xasprintf("prev link mismatch: the entry does not link to entry %" PRId64 "'s hash",
					       e->seq - 1));
		return;
	}
	if (w->anchor && e->seq == w->anchor->seq && strcmp(e->hash, w->anchor->hash) != 0) {
		broken(w, e->seq,
		       xstrdup("anchor mismatch: the entry no longer carries the hash recorded for it"));
		return;
	}
	strlcpy_s(w->prev, e->hash, sizeof(w->prev));
	w->expect++;
}

int audit_anchor_parse(const char *s, struct audit_anchor *a, char **err)
{
	const char *colon = strchr(s, ':');
	int64_t seq = 0;
	const char *p = s;
	for (; p < (colon ? colon : s) && *p >= '0' && *p <= '9' && seq < INT64_MAX / 10; p++)
		seq = seq * 10 + (*p - '0');
	size_t hlen = colon ? strlen(colon + 1) : 0;
	bool hex = hlen == CRYPTO_SHA256_HEX - 1;
	for (size_t k = 0; hex && k < hlen; k++)
		hex = (colon[1 + k] >= '0' && colon[1 + k] <= '9') || (colon[1 + k] >= 'a' && colon[1 + k] <= 'f');
	if (!colon || p != colon || seq < 1 || !hex) {
		*err = xasprintf("invalid anchor '%s': want SEQ:HASH, an entry number and its 64 lowercase "
				 "hex digits as 'audit verify' printed them",
				 s);
		return -EINVAL;
	}
	a->seq = seq;
	memcpy(a->hash, colon + 1, hlen + 1);
	return 0;
}

int audit_verify(struct store *st, struct audit_verdict *out)
{
	return audit_verify_anchored(st, NULL, out);
}

int audit_verify_anchored(struct store *st, const struct audit_anchor *anchor, struct audit_verdict *out)
{
	memset(out, 0, sizeof(*out));
	out->ok = true;
	struct walk w = {.v = out, .expect = 1, .anchor = anchor};
	strlcpy_s(w.prev, AUDIT_GENESIS, sizeof(w.prev));
	/* From the lowest seq there is: a row numbered 0 or less is an insertion too. */
	int r = store_audit_each(st, NULL, INT64_MIN, -1, check_entry, &w);
	if (r < 0) {
		audit_verdict_release(out);
		return r;
	}
	if (out->ok && anchor && out->entries < anchor->seq) {
		/* A valid chain that is shorter than it once was: cut at the end. */
		out->ok = false;
		out->broken_at = out->entries + 1;
		out->reason = xasprintf("the log ends at entry %" PRId64 ", before the anchor's entry %" PRId64
					": entries were cut off the end",
					out->entries, anchor->seq);
	}
	if (out->ok && out->entries)
		strlcpy_s(out->head, w.prev, sizeof(out->head));
	return 0;
}

void audit_verdict_release(struct audit_verdict *v)
{
	free(v->reason);
	memset(v, 0, sizeof(*v));
}

/* ---- listing ---- */

static void list_entry(void *ctx, const struct store_audit *e)
{
	struct json *o = json_append(ctx, json_object());
	char ts[40];
	time_format_iso(e->time, ts, sizeof(ts));
	json_set_int(o, "seq", e->seq);
	json_set_str(o, "time", ts);
	json_set_str(o, "actor", e->actor);
	json_set_str(o, "role", e->role);
	json_set_str(o, "method", e->method);
	json_set_str(o, "path", e->path);
	json_set_str(o, "app", e->app);
	json_set_int(o, "status", e->status);
	json_set_str(o, "remote", e->remote);
	json_set_str(o, "detail", e->detail);
	json_set_str(o, "hash", e->hash);
}

struct json *audit_entries_json(struct store *st, const char *app, int64_t after, int64_t limit)
{
	struct json *arr = json_array();
	if (store_audit_each(st, app, after, limit, list_entry, arr) < 0) {
		json_free(arr);
		return NULL;
	}
	return arr;
}
