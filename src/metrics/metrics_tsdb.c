/* metrics_tsdb.c: the built-in history. Each series keeps, per tier, a list
 * of chunks compressed the way Gorilla (Pelkonen et al., VLDB 2015) and
 * Prometheus do: timestamps as delta-of-delta in 1/14/17/20/64-bit classes,
 * values as the XOR with the previous value, storing only its meaningful
 * bits. A regular 1 s series costs about 2 bytes per point.
 *
 * Tier 0 stores every sample; each coarser tier accumulates the samples of
 * one resolution bucket and stores their average (gauges) or their last
 * value (counters, so rates stay exact), stamped with the bucket's start.
 *
 * Memory: every allocation of the store is accounted for in db->used and
 * made only when it keeps used <= budget. A series is admitted only when
 * its reservation (its structures plus a full open chunk per tier) fits in
 * what the budget has not reserved yet; otherwise it is refused and counted
 * (dropped_series). Closed chunks are then the only thing that can crowd
 * the budget, so growing an open chunk evicts closed chunks, the ones that
 * closed first before the others (evicted_chunks): under pressure every
 * series keeps its newest history and loses its oldest. */
#include "metrics/metrics_internal.h"
#include "compat/gzip.h"
#include "core/util.h"
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Bit streams                                                              */

void mx_bits_write(uint8_t *buf, uint32_t *nbits, uint64_t v, int n)
{
	uint32_t pos = *nbits;
	if (n < 64)
		v &= (1ULL << n) - 1;
	while (n > 0) {
		int off = (int)(pos & 7);
		int room = 8 - off;
		int take = n < room ? n : room;
		uint8_t bits = (uint8_t)((v >> (n - take)) & ((1u << take) - 1));
		if (off == 0)
			buf[pos >> 3] = 0;
		buf[pos >> 3] |= (uint8_t)(bits << (room - take));
		pos += (uint32_t)take;
		n -= take;
	}
	*nbits = pos;
}

bool mx_bits_read(const uint8_t *buf, uint32_t nbits, uint32_t *pos, int n, uint64_t *v)
{
	if (n < 1 || n > 64 || nbits - *pos < (uint32_t)n || *pos > nbits)
		return false;
	uint64_t out = 0;
	uint32_t p = *pos;
	while (n > 0) {
		int off = (int)(p & 7);
		int room = 8 - off;
		int take = n < room ? n : room;
		uint8_t byte = buf[p >> 3];
		uint64_t bits = (uint64_t)((byte >> (room - take)) & ((1u << take) - 1));
		out = (out << take) | bits;
		p += (uint32_t)take;
		n -= take;
	}
	*pos = p;
	*v = out;
	return true;
}

/* ------------------------------------------------------------------------ */
/* Gorilla chunks                                                           */

static uint64_t dbits(double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof(u));
	return u;
}

static double bitsd(uint64_t u)
{
	double v;
	memcpy(&v, &u, sizeof(v));
	return v;
}

/* Delta-of-delta classes: a control prefix and the width of the signed
 * value that follows. */
static const struct {
	uint64_t prefix;
	int prefix_bits, value_bits;
} dod_classes[] = {{0x2, 2, 14}, {0x6, 3, 17}, {0xe, 4, 20}};

static void put_dod(struct mx_chunk *c, int64_t dod)
{
	if (dod == 0) {
		mx_bits_write(c->data, &c->nbits, 0, 1);
		return;
	}
	for (size_t k = 0; k < ARRAY_SIZE(dod_classes); k++) {
		int w = dod_classes[k].value_bits;
		int64_t lo = -(1LL << (w - 1)), hi = (1LL << (w - 1)) - 1;
		if (dod >= lo && dod <= hi) {
			mx_bits_write(c->data, &c->nbits, dod_classes[k].prefix, dod_classes[k].prefix_bits);
			mx_bits_write(c->data, &c->nbits, (uint64_t)dod, w);
			return;
		}
	}
	mx_bits_write(c->data, &c->nbits, 0xf, 4);
	mx_bits_write(c->data, &c->nbits, (uint64_t)dod, 64);
}

static void put_value(struct mx_chunk *c, uint64_t bits)
{
	uint64_t x = bits ^ c->v_bits;
	c->v_bits = bits;
	if (x == 0) {
		mx_bits_write(c->data, &c->nbits, 0, 1);
		return;
	}
	int lead = __builtin_clzll(x), trail = __builtin_ctzll(x);
	if (lead > 31)
		lead = 31; /* five bits to store it */
	if (c->lead != 0xff && lead >= c->lead && trail >= c->trail) {
		/* Fits the previous window: '10' + the window's bits. */
		int sig = 64 - c->lead - c->trail;
		mx_bits_write(c->data, &c->nbits, 0x2, 2);
		mx_bits_write(c->data, &c->nbits, x >> c->trail, sig);
		return;
	}
	int sig = 64 - lead - trail;
	mx_bits_write(c->data, &c->nbits, 0x3, 2);
	mx_bits_write(c->data, &c->nbits, (uint64_t)lead, 5);
	mx_bits_write(c->data, &c->nbits, (uint64_t)(sig & 63), 6); /* 64 is stored as 0 */
	mx_bits_write(c->data, &c->nbits, x >> trail, sig);
	c->lead = (uint8_t)lead;
	c->trail = (uint8_t)trail;
}

void mx_chunk_append(struct mx_chunk *c, int64_t t, double v)
{
	uint64_t bits = dbits(v);
	if (c->n == 0) {
		c->t_first = c->t_last = t;
		c->delta = 0;
		c->lead = 0xff;
		c->v_bits = bits;
		mx_bits_write(c->data, &c->nbits, bits, 64);
		c->n = 1;
		return;
	}
	int64_t delta = t - c->t_last;
	put_dod(c, delta - c->delta);
	put_value(c, bits);
	c->delta = delta;
	c->t_last = t;
	c->n++;
}

uint32_t mx_chunk_decode(const struct mx_chunk *c, int64_t *ts, double *vs)
{
	uint32_t pos = 0, k = 0;
	uint64_t v, bits;
	if (c->n == 0 || !mx_bits_read(c->data, c->nbits, &pos, 64, &bits))
		return 0;
	int64_t t = c->t_first, delta = 0;
	int lead = -1, trail = 0;
	ts[0] = t;
	vs[0] = bitsd(bits);
	for (k = 1; k < c->n; k++) {
		/* timestamp */
		int ones = 0;
		while (ones < 4) {
			if (!mx_bits_read(c->data, c->nbits, &pos, 1, &v))
				return k;
			if (!v)
				break;
			ones++;
		}
		int64_t dod = 0;
		if (ones > 0) {
			int w = ones == 4 ? 64 : dod_classes[ones - 1].value_bits;
			if (!mx_bits_read(c->data, c->nbits, &pos, w, &v))
				return k;
			if (w < 64 && (v >> (w - 1)) & 1)
				v |= ~0ULL << w; /* sign-extend */
			dod = (int64_t)v;
		}
		delta += dod;
		t += delta;
		/* value */
		if (!mx_bits_read(c->data, c->nbits, &pos, 1, &v))
			return k;
		if (v) {
			if (!mx_bits_read(c->data, c->nbits, &pos, 1, &v))
				return k;
			if (v) {
				uint64_t l, s;
				if (!mx_bits_read(c->data, c->nbits, &pos, 5, &l) ||
				    !mx_bits_read(c->data, c->nbits, &pos, 6, &s))
					return k;
				int sig = s ? (int)s : 64;
				if ((int)l + sig > 64)
					return k;
				lead = (int)l;
				trail = 64 - lead - sig;
			} else if (lead < 0) {
				return k; /* a window before any was set: damaged */
			}
			int sig = 64 - lead - trail;
			uint64_t x;
			if (!mx_bits_read(c->data, c->nbits, &pos, sig, &x))
				return k;
			bits ^= trail < 64 ? x << trail : 0;
		}
		ts[k] = t;
		vs[k] = bitsd(bits);
	}
	return k;
}

/* ------------------------------------------------------------------------ */
/* The store                                                                */

static bool make_room(struct mx_tsdb *db, size_t need);

struct mx_tsdb *mx_tsdb_new(const struct metrics_tier *tiers, size_t n_tiers, size_t budget)
{
	struct mx_tsdb *db = xcalloc(1, sizeof(*db));
	if (n_tiers > METRICS_MAX_TIERS)
		n_tiers = METRICS_MAX_TIERS;
	memcpy(db->tiers, tiers, n_tiers * sizeof(*tiers));
	db->n_tiers = n_tiers;
	db->budget = budget;
	return db;
}

static size_t chunk_bytes(const struct mx_chunk *c)
{
	return sizeof(*c) + c->cap;
}

static void fifo_push(struct mx_tsdb *db, struct mx_chunk *c)
{
	c->fifo_next = NULL;
	c->fifo_prev = db->fifo_tail;
	if (db->fifo_tail)
		db->fifo_tail->fifo_next = c;
	else
		db->fifo_head = c;
	db->fifo_tail = c;
}

static void fifo_unlink(struct mx_tsdb *db, struct mx_chunk *c)
{
	if (!c->closed)
		return;
	if (c->fifo_prev)
		c->fifo_prev->fifo_next = c->fifo_next;
	else
		db->fifo_head = c->fifo_next;
	if (c->fifo_next)
		c->fifo_next->fifo_prev = c->fifo_prev;
	else
		db->fifo_tail = c->fifo_prev;
	c->fifo_prev = c->fifo_next = NULL;
}

/* Frees a chunk that is no longer linked in its series. */
static void chunk_free(struct mx_tsdb *db, struct mx_tseries *s, struct mx_chunk *c)
{
	fifo_unlink(db, c);
	size_t b = chunk_bytes(c);
	db->used -= b;
	s->bytes -= b;
	free(c->data);
	free(c);
}

/* Unlinks and frees any chunk of its series' tier list. */
static void chunk_drop(struct mx_tsdb *db, struct mx_chunk *c)
{
	struct mx_tier_data *td = &c->owner->tiers[c->tier];
	struct mx_chunk *prev = NULL;
	if (td->oldest != c)
		for (prev = td->oldest; prev && prev->next != c; prev = prev->next)
			;
	if (prev)
		prev->next = c->next;
	else
		td->oldest = c->next;
	if (td->newest == c)
		td->newest = prev;
	td->n_chunks--;
	chunk_free(db, c->owner, c);
}

/* ------------------------------------------------------------------------ */
/* Interned strings, accounted for as long as a series uses them            */

const char *mx_tsdb_str(const struct mx_tsdb *db, const char *s)
{
	return mx_strs_find(&db->strs, s);
}

static char *str_ref(struct mx_tsdb *db, const char *s)
{
	size_t before = db->strs.bytes;
	char *r = mx_strs_ref(&db->strs, s);
	db->used += db->strs.bytes - before;
	db->reserved += db->strs.bytes - before;
	return r;
}

static void str_unref(struct mx_tsdb *db, char *s)
{
	size_t before = db->strs.bytes;
	mx_strs_unref(&db->strs, s);
	db->used -= before - db->strs.bytes;
	db->reserved -= before - db->strs.bytes;
}

/* ------------------------------------------------------------------------ */
/* Series                                                                   */

#define MX_MAX_LABELS 64

/* The slot of the series with these interned pointers (name, then the
 * label names, then the values), or the empty slot where it would go. */
static struct mx_tseries **set_slot(const struct mx_tsdb *db, char *const *ptrs, size_t n_labels,
				    uint64_t h)
{
	size_t mask = db->set_cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct mx_tseries *s = db->set[i];
		if (!s || (s->hash == h && s->n_labels == n_labels && s->name == ptrs[0] &&
			   memcmp(s->lnames, ptrs + 1, 2 * n_labels * sizeof(char *)) == 0))
			return &db->set[i];
	}
}

static uint64_t set_hash(char *const *ptrs, size_t n_labels)
{
	return mx_hash(ptrs, (1 + 2 * n_labels) * sizeof(char *));
}

static void set_add(struct mx_tsdb *db, struct mx_tseries *s)
{
	if ((db->n + 1) * 4 > db->set_cap * 3) {
		size_t old_cap = db->set_cap;
		struct mx_tseries **old = db->set;
		db->set_cap = old_cap ? old_cap * 2 : 64;
		db->set = xcalloc(db->set_cap, sizeof(*db->set));
		for (size_t k = 0; k < old_cap; k++) {
			if (!old[k])
				continue;
			size_t i = old[k]->hash & (db->set_cap - 1);
			while (db->set[i])
				i = (i + 1) & (db->set_cap - 1);
			db->set[i] = old[k];
		}
		free(old);
	}
	size_t i = s->hash & (db->set_cap - 1);
	while (db->set[i])
		i = (i + 1) & (db->set_cap - 1);
	db->set[i] = s;
}

static void set_del(struct mx_tsdb *db, struct mx_tseries *s)
{
	size_t mask = db->set_cap - 1;
	size_t hole = s->hash & mask;
	while (db->set[hole] != s)
		hole = (hole + 1) & mask;
	for (size_t i = (hole + 1) & mask; db->set[i]; i = (i + 1) & mask) {
		size_t home = db->set[i]->hash & mask;
		bool between = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
		if (!between) {
			db->set[hole] = db->set[i];
			hole = i;
		}
	}
	db->set[hole] = NULL;
}

static void series_free(struct mx_tsdb *db, struct mx_tseries *s)
{
	for (size_t t = 0; t < db->n_tiers; t++) {
		struct mx_chunk *c = s->tiers[t].oldest;
		while (c) {
			struct mx_chunk *next = c->next;
			chunk_free(db, s, c);
			c = next;
		}
	}
	db->used -= s->bytes;
	db->reserved -= s->reserve;
	for (size_t k = 0; k < 2 * s->n_labels; k++)
		str_unref(db, s->lnames[k]);
	str_unref(db, s->name);
	free(s->lnames);
	free(s);
}

void mx_tsdb_free(struct mx_tsdb *db)
{
	if (!db)
		return;
	for (size_t k = 0; k < db->n; k++)
		series_free(db, db->all[k]);
	free(db->all);
	free(db->set);
	mx_strs_release(&db->strs);
	free(db);
}

struct mx_tseries *mx_tsdb_series(struct mx_tsdb *db, const char *name,
				  const char *const *lnames, const char *const *lvalues,
				  size_t n_labels, bool counter)
{
	assert(n_labels <= MX_MAX_LABELS);
	/* Look the series up by the interned copies of its strings; a string
	 * not interned yet means a new series, whose strings cost this much. */
	char *ptrs[1 + 2 * MX_MAX_LABELS];
	const char *strs[1 + 2 * MX_MAX_LABELS];
	size_t n_ptrs = 1 + 2 * n_labels, new_strs = 0;
	strs[0] = name;
	for (size_t k = 0; k < n_labels; k++) {
		strs[1 + k] = lnames[k];
		strs[1 + n_labels + k] = lvalues[k];
	}
	bool known = true;
	for (size_t k = 0; k < n_ptrs; k++) {
		ptrs[k] = (char *)mx_tsdb_str(db, strs[k]);
		if (!ptrs[k]) {
			known = false;
			new_strs += mx_str_cost(strlen(strs[k]));
		}
	}
	if (known && db->set_cap) {
		struct mx_tseries *s = *set_slot(db, ptrs, n_labels, set_hash(ptrs, n_labels));
		if (s)
			return s;
	}
	/* The series, its labels, and its place in db->set and db->all. */
	size_t cost = sizeof(struct mx_tseries) + db->n_tiers * sizeof(struct mx_tier_data) +
		      2 * n_labels * sizeof(char *) + 3 * sizeof(struct mx_tseries *);
	size_t reserve = cost + db->n_tiers * (sizeof(struct mx_chunk) + MX_CHUNK_MAX_BYTES);
	if (db->reserved + reserve + new_strs > db->budget || !make_room(db, cost + new_strs)) {
		db->dropped_series++;
		return NULL;
	}
	struct mx_tseries *s = xcalloc(1, sizeof(*s) + db->n_tiers * sizeof(struct mx_tier_data));
	s->name = str_ref(db, name);
	s->n_labels = n_labels;
	s->lnames = xcalloc(n_labels ? 2 * n_labels : 1, sizeof(char *));
	s->lvalues = s->lnames + n_labels;
	for (size_t k = 0; k < n_labels; k++) {
		s->lnames[k] = str_ref(db, lnames[k]);
		s->lvalues[k] = str_ref(db, lvalues[k]);
	}
	ptrs[0] = s->name;
	memcpy(ptrs + 1, s->lnames, 2 * n_labels * sizeof(char *));
	s->hash = set_hash(ptrs, n_labels);
	s->counter = counter;
	s->bytes = cost;
	s->reserve = reserve;
	db->used += cost;
	db->reserved += reserve;
	s->index = db->n;
	set_add(db, s);
	db->all = xgrow(db->all, sizeof(*db->all), db->n + 1, &db->alloc);
	db->all[db->n++] = s;
	return s;
}

/* Makes room for need more bytes by evicting the closed chunks that closed
 * first. False when even that is not enough. */
static bool make_room(struct mx_tsdb *db, size_t need)
{
	while (db->used + need > db->budget) {
		if (!db->fifo_head)
			return false;
		chunk_drop(db, db->fifo_head);
		db->evicted_chunks++;
	}
	return true;
}

static void chunk_close(struct mx_tsdb *db, struct mx_tseries *s, struct mx_chunk *c)
{
	c->closed = true;
	fifo_push(db, c);
	uint32_t used = (c->nbits + 7) / 8;
	if (used == 0)
		used = 1;
	if (used < c->cap) {
		c->data = xrealloc(c->data, used);
		db->used -= c->cap - used;
		s->bytes -= c->cap - used;
		c->cap = used;
	}
}

/* Appends one point to tier t's newest chunk, starting or growing chunks. */
static int tier_put(struct mx_tsdb *db, struct mx_tseries *s, size_t t, int64_t ts, double v)
{
	struct mx_tier_data *td = &s->tiers[t];
	struct mx_chunk *c = td->newest;
	if (c && !c->closed && c->n > 0 && ts <= c->t_last)
		return -EINVAL;
	size_t free_bytes = c ? c->cap - (c->nbits + 7) / 8 : 0;
	if (!c || c->closed || c->n >= MX_CHUNK_POINTS ||
	    (free_bytes < MX_POINT_MAX_BYTES && c->cap >= MX_CHUNK_MAX_BYTES)) {
		if (c && !c->closed)
			chunk_close(db, s, c);
		size_t need = sizeof(struct mx_chunk) + MX_CHUNK_MIN_BYTES;
		if (!make_room(db, need)) {
			db->dropped_samples++;
			return -ENOSPC;
		}
		c = xcalloc(1, sizeof(*c));
		c->owner = s;
		c->tier = (uint8_t)t;
		c->cap = MX_CHUNK_MIN_BYTES;
		c->data = xmalloc(c->cap);
		db->used += need;
		s->bytes += need;
		if (td->newest)
			td->newest->next = c;
		else
			td->oldest = c;
		td->newest = c;
		td->n_chunks++;
	} else if (free_bytes < MX_POINT_MAX_BYTES) {
		uint32_t cap = c->cap * 2 > MX_CHUNK_MAX_BYTES ? MX_CHUNK_MAX_BYTES : c->cap * 2;
		if (!make_room(db, cap - c->cap)) {
			db->dropped_samples++;
			return -ENOSPC;
		}
		c->data = xrealloc(c->data, cap);
		db->used += cap - c->cap;
		s->bytes += cap - c->cap;
		c->cap = cap;
	}
	mx_chunk_append(c, ts, v);
	return 0;
}

int mx_tsdb_append(struct mx_tsdb *db, struct mx_tseries *s, int64_t t, double v)
{
	if (s->t_last && t <= s->t_last)
		return -EINVAL;
	s->t_last = t;
	int r = db->n_tiers ? tier_put(db, s, 0, t, v) : 0;
	for (size_t k = 1; k < db->n_tiers; k++) {
		struct mx_tier_data *td = &s->tiers[k];
		int64_t res = db->tiers[k].res_ms;
		int64_t bucket = t - ((t % res) + res) % res;
		if (td->acc_n && bucket != td->acc_t) {
			double out = s->counter ? td->acc_last : td->acc_sum / td->acc_n;
			tier_put(db, s, k, td->acc_t, out);
			td->acc_n = 0;
			td->acc_sum = 0;
		}
		td->acc_t = bucket;
		td->acc_sum += v;
		td->acc_last = v;
		td->acc_n++;
	}
	return r;
}

void mx_tsdb_gc(struct mx_tsdb *db, int64_t now)
{
	int64_t longest = 0;
	for (size_t t = 0; t < db->n_tiers; t++)
		if (db->tiers[t].retention_ms > longest)
			longest = db->tiers[t].retention_ms;
	for (size_t k = 0; k < db->n;) {
		struct mx_tseries *s = db->all[k];
		bool empty = true;
		for (size_t t = 0; t < db->n_tiers; t++) {
			struct mx_tier_data *td = &s->tiers[t];
			int64_t cutoff = now - db->tiers[t].retention_ms;
			while (td->oldest && td->oldest->t_last < cutoff)
				chunk_drop(db, td->oldest);
			if (td->acc_n && td->acc_t < cutoff)
				td->acc_n = 0;
			if (td->oldest || td->acc_n)
				empty = false;
		}
		if (empty && s->t_last < now - longest) {
			set_del(db, s);
			db->all[k] = db->all[--db->n];
			db->all[k]->index = k;
			series_free(db, s);
			continue;
		}
		k++;
	}
}

static void push_point(struct metrics_point **pts, size_t *n, size_t *alloc, int64_t t, double v)
{
	*pts = xgrow(*pts, sizeof(**pts), *n + 1, alloc);
	(*pts)[(*n)++] = (struct metrics_point){t, v};
}

void mx_tsdb_read(const struct mx_tsdb *db, const struct mx_tseries *s, size_t tier, int64_t from,
		  int64_t to, struct metrics_point **pts, size_t *n, size_t *alloc)
{
	if (tier >= db->n_tiers)
		return;
	const struct mx_tier_data *td = &s->tiers[tier];
	int64_t ts[MX_CHUNK_POINTS];
	double vs[MX_CHUNK_POINTS];
	int64_t last = INT64_MIN;
	for (const struct mx_chunk *c = td->oldest; c; c = c->next) {
		if (c->n == 0 || c->t_last < from || c->t_first > to)
			continue;
		uint32_t got = mx_chunk_decode(c, ts, vs);
		for (uint32_t k = 0; k < got; k++)
			if (ts[k] >= from && ts[k] <= to && ts[k] > last) {
				push_point(pts, n, alloc, ts[k], vs[k]);
				last = ts[k];
			}
	}
	if (tier > 0 && td->acc_n && td->acc_t >= from && td->acc_t <= to && td->acc_t > last)
		push_point(pts, n, alloc, td->acc_t,
			   s->counter ? td->acc_last : td->acc_sum / td->acc_n);
}

/* ------------------------------------------------------------------------ */
/* The history file                                                         */
/*
 * Little-endian throughout:
 *   "PSOTSDB1" u32 n_tiers {i64 res_ms, i64 retention_ms}*n_tiers
 *   u64 n_series, per series:
 *     str name, u32 n_labels {str label, str value}*, u8 counter, i64 t_last,
 *     per tier: i64 acc_t, f64 acc_sum, f64 acc_last, u32 acc_n, u32 n_chunks,
 *       per chunk: i64 t_first, i64 t_last, u32 n, u32 nbits, bytes[(nbits+7)/8]
 *   u32 CRC-32 of everything before it.
 * str is u32 length + bytes. */

static const char magic[8] = {'P', 'S', 'O', 'T', 'S', 'D', 'B', '1'};

static void put_u(struct strbuf *out, uint64_t v, int bytes)
{
	char b[8];
	for (int k = 0; k < bytes; k++)
		b[k] = (char)(v >> (8 * k));
	strbuf_add(out, b, (size_t)bytes);
}

static void put_str(struct strbuf *out, const char *s)
{
	size_t l = strlen(s);
	put_u(out, l, 4);
	strbuf_add(out, s, l);
}

void mx_tsdb_save(const struct mx_tsdb *db, struct strbuf *out)
{
	size_t start = out->len;
	strbuf_grow(out, db->used + 1024);
	strbuf_add(out, magic, sizeof(magic));
	put_u(out, db->n_tiers, 4);
	for (size_t t = 0; t < db->n_tiers; t++) {
		put_u(out, (uint64_t)db->tiers[t].res_ms, 8);
		put_u(out, (uint64_t)db->tiers[t].retention_ms, 8);
	}
	put_u(out, db->n, 8);
	for (size_t k = 0; k < db->n; k++) {
		const struct mx_tseries *s = db->all[k];
		put_str(out, s->name);
		put_u(out, s->n_labels, 4);
		for (size_t l = 0; l < s->n_labels; l++) {
			put_str(out, s->lnames[l]);
			put_str(out, s->lvalues[l]);
		}
		put_u(out, s->counter, 1);
		put_u(out, (uint64_t)s->t_last, 8);
		for (size_t t = 0; t < db->n_tiers; t++) {
			const struct mx_tier_data *td = &s->tiers[t];
			put_u(out, (uint64_t)td->acc_t, 8);
			put_u(out, dbits(td->acc_sum), 8);
			put_u(out, dbits(td->acc_last), 8);
			put_u(out, td->acc_n, 4);
			uint32_t nc = 0;
			for (const struct mx_chunk *c = td->oldest; c; c = c->next)
				nc += c->n > 0;
			put_u(out, nc, 4);
			for (const struct mx_chunk *c = td->oldest; c; c = c->next) {
				if (c->n == 0)
					continue;
				put_u(out, (uint64_t)c->t_first, 8);
				put_u(out, (uint64_t)c->t_last, 8);
				put_u(out, c->n, 4);
				put_u(out, c->nbits, 4);
				strbuf_add(out, c->data, (c->nbits + 7) / 8);
			}
		}
	}
	put_u(out, gzip_crc32(0, out->buf + start, out->len - start), 4);
}

struct reader {
	const uint8_t *p, *end;
	bool ok;
};

static uint64_t get_u(struct reader *r, int bytes)
{
	if (!r->ok || r->end - r->p < bytes) {
		r->ok = false;
		return 0;
	}
	uint64_t v = 0;
	for (int k = 0; k < bytes; k++)
		v |= (uint64_t)r->p[k] << (8 * k);
	r->p += bytes;
	return v;
}

static char *get_str(struct reader *r)
{
	uint64_t l = get_u(r, 4);
	if (!r->ok || (uint64_t)(r->end - r->p) < l || l > 65536) {
		r->ok = false;
		return NULL;
	}
	char *s = xstrndup((const char *)r->p, l);
	r->p += l;
	return s;
}

int mx_tsdb_load(struct mx_tsdb *db, const void *buf, size_t len, char **err)
{
	if (len < sizeof(magic) + 4 || memcmp(buf, magic, sizeof(magic)) != 0) {
		*err = xstrdup("not a paasops history file");
		return -EINVAL;
	}
	uint32_t want = 0;
	const uint8_t *b = buf;
	for (int k = 0; k < 4; k++)
		want |= (uint32_t)b[len - 4 + (size_t)k] << (8 * k);
	if (gzip_crc32(0, buf, len - 4) != want) {
		*err = xstrdup("checksum mismatch (the file is damaged)");
		return -EINVAL;
	}
	struct reader r = {b + sizeof(magic), b + len - 4, true};
	uint64_t nt = get_u(&r, 4);
	if (nt > METRICS_MAX_TIERS)
		r.ok = false;
	int map[METRICS_MAX_TIERS]; /* file tier -> our tier, or -1 */
	for (uint64_t t = 0; t < nt && r.ok; t++) {
		int64_t res = (int64_t)get_u(&r, 8);
		get_u(&r, 8);
		map[t] = -1;
		for (size_t j = 0; j < db->n_tiers; j++)
			if (db->tiers[j].res_ms == res)
				map[t] = (int)j;
	}
	uint64_t ns = get_u(&r, 8);
	for (uint64_t k = 0; k < ns && r.ok; k++) {
		char *name = get_str(&r);
		uint64_t nl = get_u(&r, 4);
		if (nl > 64)
			r.ok = false;
		char *ln[64], *lv[64];
		size_t got = 0;
		for (; got < nl && r.ok; got++) {
			ln[got] = get_str(&r);
			lv[got] = get_str(&r);
		}
		bool counter = get_u(&r, 1) != 0;
		int64_t t_last = (int64_t)get_u(&r, 8);
		struct mx_tseries *s = NULL;
		if (r.ok)
			s = mx_tsdb_series(db, name, (const char *const *)ln, (const char *const *)lv, got,
					   counter);
		if (s && t_last > s->t_last)
			s->t_last = t_last;
		for (uint64_t t = 0; t < nt && r.ok; t++) {
			struct mx_tier_data tmp = {0};
			struct mx_tier_data *td = s && map[t] >= 0 ? &s->tiers[map[t]] : &tmp;
			td->acc_t = (int64_t)get_u(&r, 8);
			td->acc_sum = bitsd(get_u(&r, 8));
			td->acc_last = bitsd(get_u(&r, 8));
			td->acc_n = (uint32_t)get_u(&r, 4);
			uint64_t nc = get_u(&r, 4);
			for (uint64_t c = 0; c < nc && r.ok; c++) {
				int64_t t_first = (int64_t)get_u(&r, 8), t_end = (int64_t)get_u(&r, 8);
				uint32_t n = (uint32_t)get_u(&r, 4), nbits = (uint32_t)get_u(&r, 4);
				size_t bytes = (nbits + 7) / 8;
				if (!r.ok || (size_t)(r.end - r.p) < bytes || bytes > MX_CHUNK_MAX_BYTES ||
				    n == 0 || n > MX_CHUNK_POINTS) {
					r.ok = false;
					break;
				}
				size_t cost = sizeof(struct mx_chunk) + (bytes ? bytes : 1);
				if (td != &tmp && db->used + cost <= db->budget) {
					struct mx_chunk *ch = xcalloc(1, sizeof(*ch));
					ch->owner = s;
					ch->tier = (uint8_t)map[t];
					ch->t_first = t_first;
					ch->t_last = t_end;
					ch->n = n;
					ch->nbits = nbits;
					ch->cap = (uint32_t)(bytes ? bytes : 1);
					ch->closed = true; /* new samples start a new chunk */
					fifo_push(db, ch);
					ch->data = xcalloc(1, ch->cap);
					memcpy(ch->data, r.p, bytes);
					db->used += cost;
					s->bytes += cost;
					if (td->newest)
						td->newest->next = ch;
					else
						td->oldest = ch;
					td->newest = ch;
					td->n_chunks++;
				} else if (td != &tmp) {
					db->evicted_chunks++;
				}
				r.p += bytes;
			}
		}
		free(name);
		for (size_t j = 0; j < got; j++) {
			free(ln[j]);
			free(lv[j]);
		}
	}
	if (!r.ok || r.p != r.end) {
		*err = xstrdup("the file is truncated or malformed");
		return -EINVAL;
	}
	return 0;
}
