/* audit.c: the hash-chained audit log (see audit.h). */
#include "auth/audit.h"
#include "compat/json.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "store/store.h"
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- the hash ----
 *
 * An entry's hash is the lowercase hex digest of these bytes, one item
 * after the other with nothing in between:
 *
 *   "paasops-audit-1\n" (plain SHA-256) or "paasops-audit-2\n" (keyed)
 *   seq, time, actor, role, method, path, app, status, remote, detail, prev
 *
 * where each item is a netstring, "<decimal byte length>:<bytes>,", numbers
 * written in decimal ("17:..." is never "017"), and a NULL app or detail is
 * "~," (no netstring starts with '~', so NULL and "" differ). The lengths
 * make the encoding unambiguous whatever bytes a field holds; prev ties the
 * entry to the one before it. Version 1 bytes are hashed with SHA-256,
 * version 2 bytes with HMAC-SHA256 under the audit key; the version line
 * keeps a keyed digest from ever standing for a plain one. doc/audit.md
 * describes the same bytes for those who recompute them. */

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

static void serialize(struct strbuf *sb, const char *version, const struct store_audit *e)
{
	strbuf_adds(sb, version);
	put_int(sb, e->seq);
	put_int(sb, e->time);
	put_text(sb, e->actor);
	put_text(sb, e->role);
	put_text(sb, e->method);
	put_text(sb, e->path);
	put_text(sb, e->app);
	put_int(sb, e->status);
	put_text(sb, e->remote);
	put_text(sb, e->detail);
	put_text(sb, e->prev);
}

void audit_hash(const struct store_audit *e, char out[CRYPTO_SHA256_HEX])
{
	struct strbuf sb;
	strbuf_init(&sb, 256);
	serialize(&sb, "paasops-audit-1\n", e);
	crypto_sha256_hex(sb.buf, sb.len, out);
	strbuf_release(&sb);
}

void audit_hash_keyed(const struct audit_key *key, const struct store_audit *e,
		      char out[CRYPTO_SHA256_HEX])
{
	struct strbuf sb;
	strbuf_init(&sb, 256);
	serialize(&sb, "paasops-audit-2\n", e);
	crypto_hmac_sha256_hex(key->key, sizeof(key->key), sb.buf, sb.len, out);
	strbuf_release(&sb);
}


/* ---- the key and the keying records ----
 *
 * A row of audit_keys says "entries from from_seq on are chained with the
 * key named key_id", and every row repeats keyed_from, where keyed
 * chaining began. Its mac is the hex HMAC-SHA256, under that key, of
 *
 *   "paasops-audit-keys-1\n", from_seq, keyed_from, key_id  (netstrings)
 *
 * so without the key nobody can move the start of keyed chaining (and
 * rehash the entries after it the plain way) or claim a run of entries
 * for the key. */

void audit_key_of(const struct store *st, struct audit_key *out)
{
	store_key_derive(st, AUDIT_KEY_PURPOSE, out->key);
	static const char label[] = "paasops-audit-key-id";
	char full[CRYPTO_SHA256_HEX];
	crypto_hmac_sha256_hex(out->key, sizeof(out->key), label, sizeof(label) - 1, full);
	memcpy(out->id, full, AUDIT_KEY_ID_HEX - 1);
	out->id[AUDIT_KEY_ID_HEX - 1] = '\0';
}

static void keys_mac(const struct audit_key *key, int64_t from_seq, int64_t keyed_from,
		     const char *key_id, char out[CRYPTO_SHA256_HEX])
{
	struct strbuf sb;
	strbuf_init(&sb, 96);
	strbuf_adds(&sb, "paasops-audit-keys-1\n");
	put_int(&sb, from_seq);
	put_int(&sb, keyed_from);
	put_text(&sb, key_id);
	crypto_hmac_sha256_hex(key->key, sizeof(key->key), sb.buf, sb.len, out);
	strbuf_release(&sb);
}

/* The keying records, copied out of the store. */
struct keyrow {
	int64_t from_seq, keyed_from;
	char *key_id, *mac;
};
struct keyrows {
	struct keyrow *r;
	size_t n, alloc;
};

static void keyrow_collect(void *ctx, const struct store_audit_key *k)
{
	struct keyrows *ks = ctx;
	ks->r = xgrow(ks->r, sizeof(*ks->r), ks->n + 1, &ks->alloc);
	ks->r[ks->n++] = (struct keyrow){
		.from_seq = k->from_seq, .keyed_from = k->keyed_from,
		.key_id = xstrdup(k->key_id ? k->key_id : ""), .mac = xstrdup(k->mac ? k->mac : ""),
	};
}

static void keyrows_release(struct keyrows *ks)
{
	for (size_t i = 0; i < ks->n; i++) {
		free(ks->r[i].key_id);
		free(ks->r[i].mac);
	}
	free(ks->r);
	memset(ks, 0, sizeof(*ks));
}

/* What prepare did, for the start-up log. */
enum prepared { PREP_NOTHING, PREP_STARTED, PREP_NEW_KEY, PREP_RECORDS_GONE };

static int prepare(struct store *st, const struct audit_key *key, enum prepared *what, int64_t *from)
{
	*what = PREP_NOTHING;
	int64_t last = 0;
	char h[CRYPTO_SHA256_HEX];
	int r = store_audit_last(st, &last, h, sizeof(h));
	if (r < 0 && r != -ENOENT)
		return r;
	struct keyrows ks = {0};
	if ((r = store_audit_keys_each(st, keyrow_collect, &ks)) < 0) {
		keyrows_release(&ks);
		return r;
	}
	struct store_audit_key row = {.from_seq = last + 1, .key_id = key->id};
	if (ks.n == 0) {
		/* Only a database that had no keying records when it was opened
		 * (one from before them, or a new one) may start them; a log
		 * whose records were removed later stays without. */
		if (last > 0 && store_opened_version(st) >= STORE_SCHEMA_AUDIT_KEYS) {
			*what = PREP_RECORDS_GONE;
			keyrows_release(&ks);
			return 0;
		}
		row.keyed_from = last + 1;
		*what = PREP_STARTED;
	} else if (strcmp(ks.r[ks.n - 1].key_id, key->id) != 0) {
		row.keyed_from = ks.r[0].keyed_from;
		*what = PREP_NEW_KEY;
	}
	keyrows_release(&ks);
	if (*what == PREP_NOTHING)
		return 0;
	char mac[CRYPTO_SHA256_HEX];
	keys_mac(key, row.from_seq, row.keyed_from, row.key_id, mac);
	row.mac = mac;
	*from = row.from_seq;
	return store_audit_key_add(st, &row);
}

int audit_prepare(struct store *st, char **err)
{
	struct audit_key key;
	audit_key_of(st, &key);
	enum prepared what;
	int64_t from = 0;
	int r = prepare(st, &key, &what, &from);
	explicit_bzero(&key.key, sizeof(key.key));
	if (r < 0) {
		*err = xasprintf("cannot prepare the audit log: %s", store_errmsg(st));
		return r;
	}
	if (what == PREP_STARTED && from > 1)
		log_info("audit: entries from %" PRId64 " on are chained with a key derived from secret.key; "
			 "the %" PRId64 " before keep their plain SHA-256 chain", from, from - 1);
	else if (what == PREP_NEW_KEY)
		log_warn("audit: secret.key is not the key that chained the latest entries; entries from %" PRId64
			 " on are chained with this one, and 'audit verify' cannot check the earlier keyed ones "
			 "unless the old secret.key is put back", from);
	else if (what == PREP_RECORDS_GONE)
		log_error("audit: the table audit_keys, which says which entries are chained with a key, was "
			  "emptied outside paasops: 'audit verify' reports the log as broken");
	return 0;
}

/* ---- recording ---- */

int audit_record(struct store *st, const struct audit_call *call, char **err)
{
	struct audit_key key;
	audit_key_of(st, &key);
	enum prepared what;
	int64_t from;
	int r = prepare(st, &key, &what, &from);
	int64_t last = 0;
	char prev[CRYPTO_SHA256_HEX];
	if (r == 0)
		r = store_audit_last(st, &last, prev, sizeof(prev));
	if (r == -ENOENT) {
		last = 0;
		strlcpy_s(prev, AUDIT_GENESIS, sizeof(prev));
	} else if (r < 0) {
		explicit_bzero(&key.key, sizeof(key.key));
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
	audit_hash_keyed(&key, &e, hash);
	explicit_bzero(&key.key, sizeof(key.key));
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
	const struct audit_anchor *anchor;  /* or NULL */
	const struct audit_anchor *last;    /* the last intact walk's head, or NULL */
	const struct audit_key *key;
	const struct keyrows *ks;
	size_t era;                    /* ks->r[era] covers the current entry */
	char *foreign_id;              /* the first other key met; owned */
	const atomic_bool *cancel;     /* or NULL */
	bool cancelled;
};

static void broken(struct walk *w, int64_t seq, char *reason)
{
	w->v->ok = false;
	w->v->broken = true;
	w->v->broken_at = seq;
	w->v->reason = reason;
}

/* Checks the keying records when the first entry comes (an empty log needs
 * none): all agree on keyed_from, the first starts there, from_seq never
 * goes back, and those under this key carry their MAC. */
static void check_keyrows(struct walk *w, int64_t first_seq)
{
	const struct keyrows *ks = w->ks;
	if (ks->n == 0) {
		broken(w, first_seq,
		       xstrdup("the record of which entries are chained with a key (table audit_keys) is "
			       "gone: it was emptied outside paasops"));
		return;
	}
	for (size_t i = 0; i < ks->n; i++) {
		const struct keyrow *k = &ks->r[i];
		if (k->keyed_from != ks->r[0].keyed_from || (i == 0 && k->from_seq != k->keyed_from) ||
		    (i > 0 && k->from_seq < ks->r[i - 1].from_seq)) {
			broken(w, k->from_seq,
			       xasprintf("the keying record for entries from %" PRId64
					 " on does not fit the others: table audit_keys was changed outside paasops",
					 k->from_seq));
			return;
		}
		if (strcmp(k->key_id, w->key->id) != 0)
			continue;
		char want[CRYPTO_SHA256_HEX];
		keys_mac(w->key, k->from_seq, k->keyed_from, k->key_id, want);
		if (strlen(k->mac) != CRYPTO_SHA256_HEX - 1 || !crypto_equal(want, k->mac, CRYPTO_SHA256_HEX - 1)) {
			broken(w, k->from_seq,
			       xasprintf("the keying record for entries from %" PRId64
					 " on does not match its MAC: table audit_keys was changed outside paasops",
					 k->from_seq));
			return;
		}
	}
}

/* The keying record that covers seq (seqs come in increasing order), or
 * NULL before keyed_from. */
static const struct keyrow *era_of(struct walk *w, int64_t seq)
{
	const struct keyrows *ks = w->ks;
	if (ks->n == 0 || seq < ks->r[0].keyed_from)
		return NULL;
	while (w->era + 1 < ks->n && ks->r[w->era + 1].from_seq <= seq)
		w->era++;
	return &ks->r[w->era];
}

static void unchecked(struct walk *w, const struct store_audit *e, const char *key_id)
{
	struct audit_verdict *v = w->v;
	if (!v->unchecked++) {
		v->unchecked_from = e->seq;
		w->foreign_id = xstrdup(key_id);
	}
	v->unchecked_to = e->seq;
}

static void check_anchor(struct walk *w, const struct audit_anchor *a, const struct store_audit *e,
			 const char *what)
{
	if (a && e->seq == a->seq && strcmp(e->hash, a->hash) != 0)
		broken(w, e->seq, xasprintf("anchor mismatch: the entry no longer carries the hash %s", what));
}

static void check_entry(void *ctx, const struct store_audit *e)
{
	struct walk *w = ctx;
	w->v->entries++;
	if (w->cancel && atomic_load_explicit(w->cancel, memory_order_relaxed)) {
		w->cancelled = true;
		return;
	}
	if (w->v->broken)
		return; /* only counting from here */
	if (w->v->entries == 1) {
		check_keyrows(w, e->seq);
		if (w->v->broken)
			return;
	}
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
	const struct keyrow *era = era_of(w, e->seq);
	char want[CRYPTO_SHA256_HEX];
	if (!era)
		audit_hash(e, want);
	else if (strcmp(era->key_id, w->key->id) == 0)
		audit_hash_keyed(w->key, e, want);
	else
		unchecked(w, e, era->key_id);
	bool checkable = !era || strcmp(era->key_id, w->key->id) == 0;
	if (!e->hash || (checkable && strcmp(e->hash, want) != 0)) {
		broken(w, e->seq, xstrdup(era ? "hash mismatch: the entry's fields do not match its keyed hash "
					       "(HMAC under this daemon's key)"
					     : "hash mismatch: the entry's fields do not match its hash"));
		return;
	}
	if (!e->prev || strcmp(e->prev, w->prev) != 0) {
		broken(w, e->seq,
		       e->seq == 1 ? xstrdup("prev link mismatch: the first entry does not start the chain")
				   : xasprintf("prev link mismatch: the entry does not link to entry %" PRId64 "'s hash",
					       e->seq - 1));
		return;
	}
	check_anchor(w, w->anchor, e, "recorded for it");
	if (!w->v->broken)
		check_anchor(w, w->last, e, "it had when this daemon last verified the log");
	if (w->v->broken)
		return;
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

/* The whole walk, on whichever thread calls it: last is the remembered
 * head of an earlier intact walk (or NULL), cancel a flag that ends it
 * early (or NULL): then -ECANCELED. */
static int walk_log(struct store *st, const struct audit_anchor *anchor, const struct audit_anchor *last,
		    const atomic_bool *cancel, struct audit_verdict *out)
{
	memset(out, 0, sizeof(*out));
	out->ok = true;
	struct audit_key key;
	audit_key_of(st, &key);
	struct keyrows ks = {0};
	struct walk w = {.v = out, .expect = 1, .anchor = anchor, .last = last, .key = &key, .ks = &ks,
			 .cancel = cancel};
	strlcpy_s(w.prev, AUDIT_GENESIS, sizeof(w.prev));
	/* One snapshot for the keying records and the entries. */
	int r = store_begin_read(st);
	if (r == 0) {
		r = store_audit_keys_each(st, keyrow_collect, &ks);
		if (ks.n)
			out->keyed_from = ks.r[0].keyed_from;
		/* From the lowest seq there is: a row numbered 0 or less is an insertion too. */
		if (r == 0)
			r = store_audit_each(st, NULL, INT64_MIN, -1, check_entry, &w);
		store_commit(st);
	}
	explicit_bzero(&key.key, sizeof(key.key));
	keyrows_release(&ks);
	if (r == 0 && w.cancelled)
		r = -ECANCELED;
	if (r < 0) {
		free(w.foreign_id);
		audit_verdict_release(out);
		return r;
	}
	const struct audit_anchor *ends[] = {anchor, last};
	for (size_t i = 0; i < ARRAY_SIZE(ends) && !out->broken; i++) {
		if (!ends[i] || out->entries >= ends[i]->seq)
			continue;
		/* A valid chain that is shorter than it once was: cut at the end. */
		broken(&w, out->entries + 1,
		       i == 0 ? xasprintf("the log ends at entry %" PRId64 ", before the anchor's entry %" PRId64
					  ": entries were cut off the end",
					  out->entries, ends[i]->seq)
			      : xasprintf("the log ends at entry %" PRId64 ", before entry %" PRId64
					  " that this daemon's last verify found: entries were cut off the end",
					  out->entries, ends[i]->seq));
	}
	if (out->unchecked) {
		out->ok = false;
		if (!out->reason) {
			int64_t span = out->unchecked_to - out->unchecked_from + 1;
			out->reason = span == out->unchecked
				? xasprintf("entries %" PRId64 " to %" PRId64 " were chained with another secret key "
					    "(key id %s; this daemon's is %s) and cannot be checked with this one: "
					    "secret.key was replaced after they were written; put that key back to "
					    "check them", out->unchecked_from, out->unchecked_to, w.foreign_id, key.id)
				: xasprintf("%" PRId64 " entries from %" PRId64 " to %" PRId64 " were chained with "
					    "other secret keys (the first with key id %s; this daemon's is %s) and "
					    "cannot be checked with this one: secret.key was replaced after they were "
					    "written; put that key back to check them", out->unchecked,
					    out->unchecked_from, out->unchecked_to, w.foreign_id, key.id);
		}
	}
	free(w.foreign_id);
	if (!out->broken && out->entries)
		strlcpy_s(out->head, w.prev, sizeof(out->head));
	return 0;
}

int audit_verify(struct store *st, struct audit_verdict *out)
{
	return walk_log(st, NULL, NULL, NULL, out);
}

int audit_verify_anchored(struct store *st, const struct audit_anchor *anchor, struct audit_verdict *out)
{
	return walk_log(st, anchor, NULL, NULL, out);
}

void audit_verdict_release(struct audit_verdict *v)
{
	free(v->reason);
	memset(v, 0, sizeof(*v));
}

/* ---- verifying off the control loop ---- */

struct verify_waiter {
	audit_verify_cb cb;
	void *ctx;
	struct verify_waiter *next;
};

/* One walk on the thread pool. The worker touches only the fields above
 * the line; the loop thread the rest, and nothing while the walk runs
 * except waiters. */
struct verify_job {
	uv_work_t work;
	struct audit *a;
	struct store *st; /* the daemon's, for store_open_reader's path and key */
	bool has_anchor, has_last;
	struct audit_anchor anchor, last;
	const atomic_bool *cancel;
	int status;
	struct audit_verdict v;
	/* ---- */
	int64_t started_ms; /* monotonic */
	struct audit_last last_before;
	struct verify_waiter *waiters, **tail;
};

struct audit {
	uv_loop_t *loop;
	struct store *st;
	struct verify_job *job; /* the walk running, or NULL */
	atomic_bool cancel;
	struct audit_last last;
};

struct audit *audit_new(uv_loop_t *loop, struct store *st, char **err)
{
	if (audit_prepare(st, err) < 0)
		return NULL;
	struct audit *a = xcalloc(1, sizeof(*a));
	a->loop = loop;
	a->st = st;
	atomic_init(&a->cancel, false);
	return a;
}

static void verify_work(uv_work_t *w)
{
	struct verify_job *j = w->data;
	char *err = NULL;
	struct store *reader = store_open_reader(j->st, &err);
	if (!reader) {
		log_error("audit: %s", err);
		free(err);
		j->status = -EIO;
		return;
	}
	j->status = walk_log(reader, j->has_anchor ? &j->anchor : NULL, j->has_last ? &j->last : NULL,
			     j->cancel, &j->v);
	store_close(reader);
}

static void verify_done(uv_work_t *w, int status)
{
	struct verify_job *j = w->data;
	struct audit *a = j->a;
	a->job = NULL;
	if (status < 0 && j->status == 0) {
		audit_verdict_release(&j->v);
		j->status = status == UV_ECANCELED ? -ECANCELED : -EIO;
	}
	int64_t took = time_mono_ms() - j->started_ms;
	if (j->status < 0)
		log_info("audit: verify ended after %" PRId64 " ms: %s", took, strerror(-j->status));
	else
		log_info("audit: verify of %" PRId64 " entries took %" PRId64 " ms: %s", j->v.entries, took,
			 j->v.ok ? "intact" : j->v.broken ? "broken" : "entries of another key");
	if (j->status == 0 && !j->v.broken) {
		a->last.entries = j->v.entries;
		strlcpy_s(a->last.head, j->v.head, sizeof(a->last.head));
		a->last.at_ms = time_wall_ms();
	}
	for (struct verify_waiter *wt = j->waiters, *next; wt; wt = next) {
		next = wt->next;
		wt->cb(wt->ctx, j->status, j->status == 0 ? &j->v : NULL, &j->last_before);
		free(wt);
	}
	if (j->status == 0)
		audit_verdict_release(&j->v);
	free(j);
}

static bool same_anchor(const struct verify_job *j, const struct audit_anchor *anchor)
{
	if (!anchor || !j->has_anchor)
		return !anchor && !j->has_anchor;
	return anchor->seq == j->anchor.seq && strcmp(anchor->hash, j->anchor.hash) == 0;
}

bool audit_verify_busy(const struct audit *a, const struct audit_anchor *anchor)
{
	return a->job && !same_anchor(a->job, anchor);
}

int audit_verify_start(struct audit *a, const struct audit_anchor *anchor, audit_verify_cb cb, void *ctx)
{
	if (atomic_load(&a->cancel))
		return -ECANCELED;
	struct verify_job *j = a->job;
	if (j && !same_anchor(j, anchor))
		return -EBUSY;
	struct verify_waiter *wt = xcalloc(1, sizeof(*wt));
	wt->cb = cb;
	wt->ctx = ctx;
	if (j) {
		*j->tail = wt;
		j->tail = &wt->next;
		return 1;
	}
	j = xcalloc(1, sizeof(*j));
	j->a = a;
	j->st = a->st;
	j->cancel = &a->cancel;
	j->work.data = j;
	if (anchor) {
		j->has_anchor = true;
		j->anchor = *anchor;
	}
	j->last_before = a->last;
	if (a->last.entries) {
		j->has_last = true;
		j->last.seq = a->last.entries;
		strlcpy_s(j->last.hash, a->last.head, sizeof(j->last.hash));
	}
	j->waiters = wt;
	j->tail = &wt->next;
	int r = uv_queue_work(a->loop, &j->work, verify_work, verify_done);
	if (r < 0) {
		free(wt);
		free(j);
		return r;
	}
	a->job = j;
	j->started_ms = time_mono_ms();
	log_info("audit: verify started on a worker thread");
	return 0;
}

int audit_verify_join(struct audit *a, audit_verify_cb cb, void *ctx)
{
	return audit_verify_start(a, a->job && a->job->has_anchor ? &a->job->anchor : NULL, cb, ctx);
}

void audit_stop(struct audit *a)
{
	if (a)
		atomic_store(&a->cancel, true);
}

void audit_free(struct audit *a)
{
	if (!a)
		return;
	/* The loop ran every callback: no walk is left. */
	if (a->job)
		abort();
	free(a);
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
