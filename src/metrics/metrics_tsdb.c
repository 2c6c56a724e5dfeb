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
 * value that follows. After them: '1111' + 64 bits in format 1; in format 2
 * '11110' + 64 bits, and '11111' starts a run record:
 *   '0' + u16 count                    count points repeating the previous
 *                                      interval and value;
 *   '1' + u3 p + u6 w + w bits of the  count points repeating the previous
 *   zigzagged step + u16 count         interval, each value m / 10^p where
 *                                      m = round(previous value * 10^p) + step.
 * The count comes last, so a run record being extended is rewritten in place. */
static const struct {
	uint64_t prefix;
	int prefix_bits, value_bits;
} dod_classes[] = {{0x2, 2, 14}, {0x6, 3, 17}, {0xe, 4, 20}};

static const double pow10s[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7};
#define MX_DEC_MAX 6          /* largest decimal scale tried for progressions */
#define MX_DEC_LIMIT 0x1p50   /* |m| below this: m round-trips through v */
#define MX_RUN_CONST_BITS (5 + 1 + 16)
#define MX_RUN_LIN_BITS (5 + 1 + 3 + 6 + 16) /* plus the step's width */

static void put_dod(struct mx_chunk *c, uint8_t *data, int64_t dod)
{
	if (dod == 0) {
		mx_bits_write(data, &c->nbits, 0, 1);
		return;
	}
	for (size_t k = 0; k < ARRAY_SIZE(dod_classes); k++) {
		int w = dod_classes[k].value_bits;
		int64_t lo = -(1LL << (w - 1)), hi = (1LL << (w - 1)) - 1;
		if (dod >= lo && dod <= hi) {
			mx_bits_write(data, &c->nbits, dod_classes[k].prefix, dod_classes[k].prefix_bits);
			mx_bits_write(data, &c->nbits, (uint64_t)dod, w);
			return;
		}
	}
	mx_bits_write(data, &c->nbits, 0x1e, 5);
	mx_bits_write(data, &c->nbits, (uint64_t)dod, 64);
}

/* m with v == m / 10^p exactly, when |m| < MX_DEC_LIMIT. Encoder and
 * decoder compute it alike, so a progression needs no stored start. */
static bool dec_of(double v, int p, int64_t *m)
{
	double a = v * pow10s[p];
	if (!(fabs(a) < MX_DEC_LIMIT))
		return false; /* NaN and infinities too */
	*m = llround(a);
	return dbits((double)*m / pow10s[p]) == dbits(v);
}

static double dec_val(int64_t m, int p)
{
	return (double)m / pow10s[p];
}

/* The next value of a progression at scale p and step d after prev_bits. */
static bool dec_next(uint64_t prev_bits, int p, int64_t d, uint64_t *out)
{
	int64_t m;
	if (!dec_of(bitsd(prev_bits), p, &m))
		return false;
	m += d;
	if (!(fabs((double)m) < MX_DEC_LIMIT))
		return false;
	*out = dbits(dec_val(m, p));
	return true;
}

/* Whether prev -> v is a decimal step (the smallest scale that holds both). */
static bool dec_step(uint64_t prev_bits, uint64_t bits, uint8_t *p, int64_t *d)
{
	double a = bitsd(prev_bits), b = bitsd(bits);
	if (!isfinite(a) || !isfinite(b))
		return false;
	for (int k = 0; k <= MX_DEC_MAX; k++) {
		int64_t ma, mb;
		if (dec_of(a, k, &ma) && dec_of(b, k, &mb)) {
			if (ma == mb)
				return false;
			*p = (uint8_t)k;
			*d = mb - ma;
			return true;
		}
	}
	return false;
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t u)
{
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static int bit_width(uint64_t u)
{
	return u ? 64 - __builtin_clzll(u) : 1;
}

/* A value after its timestamp (a point not in a run record), in format 3:
 *   '0'                                 the previous value again;
 *   '10' + u3 p + u6 w + w bits         m / 10^p, m = round(previous value *
 *                                       10^p) + the zigzagged difference,
 *                                       when both are such decimals (the
 *                                       smallest p) and this is shorter;
 *   '110' + the previous window's bits  the XOR with the previous value;
 *   '111' + u5 lead + u6 width + bits   the XOR, with a new window.
 * Formats 1 and 2 have no decimal: '10' and '11' are the XOR's two forms.
 * Either form gives back every bit of the value: a decimal is used only
 * when m / 10^p is the value exactly, as the reader computes it. */
static void put_value(struct mx_chunk *c, uint8_t *data, uint64_t bits)
{
	uint64_t prev = c->v_bits, x = bits ^ prev;
	c->v_bits = bits;
	if (x == 0) {
		mx_bits_write(data, &c->nbits, 0, 1);
		return;
	}
	int lead = __builtin_clzll(x), trail = __builtin_ctzll(x);
	if (lead > 31)
		lead = 31; /* five bits to store it */
	bool fits = c->lead != 0xff && lead >= c->lead && trail >= c->trail;
	int xor_bits = fits ? 3 + 64 - c->lead - c->trail : 3 + 5 + 6 + 64 - lead - trail;
	uint8_t p;
	int64_t d;
	if (dec_step(prev, bits, &p, &d)) {
		uint64_t z = zigzag(d);
		int w = bit_width(z);
		if (2 + 3 + 6 + w < xor_bits) {
			mx_bits_write(data, &c->nbits, 0x2, 2);
			mx_bits_write(data, &c->nbits, p, 3);
			mx_bits_write(data, &c->nbits, (uint64_t)(w & 63), 6); /* 64 is stored as 0 */
			mx_bits_write(data, &c->nbits, z, w);
			return;
		}
	}
	if (fits) {
		int sig = 64 - c->lead - c->trail;
		mx_bits_write(data, &c->nbits, 0x6, 3);
		mx_bits_write(data, &c->nbits, x >> c->trail, sig);
		return;
	}
	int sig = 64 - lead - trail;
	mx_bits_write(data, &c->nbits, 0x7, 3);
	mx_bits_write(data, &c->nbits, (uint64_t)lead, 5);
	mx_bits_write(data, &c->nbits, (uint64_t)(sig & 63), 6); /* 64 is stored as 0 */
	mx_bits_write(data, &c->nbits, x >> trail, sig);
	c->lead = (uint8_t)lead;
	c->trail = (uint8_t)trail;
}

/* Clears the bits from pos to the end of the byte that holds bit end - 1,
 * so that they can be written again (mx_bits_write() ORs into a byte it
 * did not start). */
static void bits_clear(uint8_t *data, uint32_t pos, uint32_t end)
{
	if (pos >= end)
		return;
	if (pos & 7) {
		data[pos >> 3] &= (uint8_t)(0xff << (8 - (pos & 7)));
		pos = (pos + 7) & ~7u;
	}
	if (pos < end)
		memset(data + (pos >> 3), 0, ((end + 7) >> 3) - (pos >> 3));
}

static uint32_t run_rec_bits(const struct mx_chunk *c)
{
	if (c->run_kind == 1)
		return MX_RUN_CONST_BITS;
	return MX_RUN_LIN_BITS + (uint32_t)bit_width(zigzag(c->run_d));
}

/* Replaces the run's points (written one by one since run_pos) with a
 * record; the XOR window goes back to what it was where the run started,
 * as a reader of the record will have it. */
static void run_write_record(struct mx_chunk *c, uint8_t *data)
{
	bits_clear(data, c->run_pos, c->nbits);
	c->nbits = c->run_pos;
	c->lead = c->run_lead;
	c->trail = c->run_trail;
	mx_bits_write(data, &c->nbits, 0x1f, 5);
	if (c->run_kind == 1) {
		mx_bits_write(data, &c->nbits, 0, 1);
	} else {
		uint64_t z = zigzag(c->run_d);
		int w = bit_width(z);
		mx_bits_write(data, &c->nbits, 1, 1);
		mx_bits_write(data, &c->nbits, c->run_p, 3);
		mx_bits_write(data, &c->nbits, (uint64_t)w, 6);
		mx_bits_write(data, &c->nbits, z, w);
	}
	mx_bits_write(data, &c->nbits, c->run_n, 16);
	c->run_rec = 1;
}

/* Whether a point with the previous interval and these bits continues the
 * current run. */
static bool run_continues(const struct mx_chunk *c, uint64_t bits)
{
	if (c->run_kind == 0 || c->run_n >= MX_RUN_MAX)
		return false;
	if (c->run_kind == 1)
		return bits == c->v_bits;
	uint64_t want;
	return dec_next(c->v_bits, c->run_p, c->run_d, &want) && want == bits;
}

void mx_chunk_append(struct mx_chunk *c, uint8_t *data, int64_t t, double v)
{
	uint64_t bits = dbits(v);
	if (c->n == 0) {
		c->t_first = c->t_last = t;
		c->delta = 0;
		c->lead = 0xff;
		c->v_bits = bits;
		c->nbits = 0;
		c->run_kind = 0;
		mx_bits_write(data, &c->nbits, bits, 64);
		c->n = 1;
		return;
	}
	int64_t delta = t - c->t_last;
	int64_t dod = delta - c->delta;
	if (dod == 0 && run_continues(c, bits)) {
		c->run_n++;
		if (c->run_rec) {
			uint32_t at = c->nbits - 16;
			bits_clear(data, at, c->nbits);
			mx_bits_write(data, &at, c->run_n, 16);
			c->v_bits = bits;
		} else {
			put_dod(c, data, 0);
			put_value(c, data, bits);
			if (run_rec_bits(c) <= c->nbits - c->run_pos)
				run_write_record(c, data);
		}
		c->t_last = t;
		c->n++;
		return;
	}
	/* A point of its own, which may start a run. */
	uint32_t pos = c->nbits;
	uint8_t lead = c->lead, trail = c->trail;
	uint64_t prev = c->v_bits;
	put_dod(c, data, dod);
	put_value(c, data, bits);
	c->delta = delta;
	c->t_last = t;
	c->n++;
	c->run_kind = 0;
	if (dod != 0)
		return;
	int64_t d;
	uint8_t p;
	if (bits == prev) {
		c->run_kind = 1;
	} else if (dec_step(prev, bits, &p, &d) && d <= INT32_MAX && d >= -INT32_MAX) {
		c->run_kind = 2; /* a run's step is 32 bits; a larger one stays points */
		c->run_p = p & 7;
		c->run_d = (int32_t)d;
	} else {
		return;
	}
	c->run_n = 1;
	c->run_rec = 0;
	c->run_pos = pos;
	c->run_lead = lead;
	c->run_trail = trail;
}

void mx_chunk_it_init(struct mx_chunk_it *it, const uint8_t *data, uint32_t nbits, uint32_t n,
		      int64_t t_first, uint8_t fmt)
{
	memset(it, 0, sizeof(*it));
	it->data = data;
	it->nbits = nbits;
	it->n = n;
	it->t = t_first;
	it->lead = -1;
	it->fmt = fmt;
}

/* Reads a run record's body (after its '11111'). */
static bool it_read_run(struct mx_chunk_it *it)
{
	uint64_t kind, v;
	if (!mx_bits_read(it->data, it->nbits, &it->pos, 1, &kind))
		return false;
	it->run_kind = kind ? 2 : 1;
	if (kind) {
		uint64_t p, w;
		if (!mx_bits_read(it->data, it->nbits, &it->pos, 3, &p) || p > MX_DEC_MAX ||
		    !mx_bits_read(it->data, it->nbits, &it->pos, 6, &w) || w == 0 ||
		    !mx_bits_read(it->data, it->nbits, &it->pos, (int)w, &v))
			return false;
		it->run_p = (uint8_t)p;
		it->run_d = unzigzag(v);
	}
	if (!mx_bits_read(it->data, it->nbits, &it->pos, 16, &v) || v == 0)
		return false;
	it->run_left = (uint32_t)v;
	return true;
}

/* The next point of the current run. */
static bool it_run_point(struct mx_chunk_it *it)
{
	if (it->run_kind == 2 && !dec_next(it->bits, it->run_p, it->run_d, &it->bits))
		return false;
	it->t += it->delta;
	it->run_left--;
	return true;
}

/* Reads a decimal value's body (after its '10', format 3). */
static bool it_read_decimal(struct mx_chunk_it *it)
{
	uint64_t p, w, z;
	int64_t m;
	if (!mx_bits_read(it->data, it->nbits, &it->pos, 3, &p) || p > MX_DEC_MAX ||
	    !mx_bits_read(it->data, it->nbits, &it->pos, 6, &w) ||
	    !mx_bits_read(it->data, it->nbits, &it->pos, w ? (int)w : 64, &z) ||
	    !dec_of(bitsd(it->bits), (int)p, &m))
		return false;
	m += unzigzag(z);
	if (!(fabs((double)m) < MX_DEC_LIMIT))
		return false;
	it->bits = dbits(dec_val(m, (int)p));
	return true;
}

bool mx_chunk_it_next(struct mx_chunk_it *it, int64_t *t, double *v)
{
	uint64_t b;
	if (it->k >= it->n)
		return false;
	if (it->k == 0) {
		if (!mx_bits_read(it->data, it->nbits, &it->pos, 64, &it->bits))
			return false;
		goto out;
	}
	if (it->run_left) {
		if (!it_run_point(it))
			return false;
		goto out;
	}
	/* timestamp */
	int ones = 0;
	while (ones < 4) {
		if (!mx_bits_read(it->data, it->nbits, &it->pos, 1, &b))
			return false;
		if (!b)
			break;
		ones++;
	}
	int64_t dod = 0;
	if (ones == 4 && it->fmt >= MX_FMT_V2) {
		if (!mx_bits_read(it->data, it->nbits, &it->pos, 1, &b))
			return false;
		if (b) {
			if (!it_read_run(it) || !it_run_point(it))
				return false;
			goto out;
		}
	}
	if (ones > 0) {
		int w = ones == 4 ? 64 : dod_classes[ones - 1].value_bits;
		if (!mx_bits_read(it->data, it->nbits, &it->pos, w, &b))
			return false;
		if (w < 64 && (b >> (w - 1)) & 1)
			b |= ~0ULL << w; /* sign-extend */
		dod = (int64_t)b;
	}
	it->delta += dod;
	it->t += it->delta;
	/* value */
	if (!mx_bits_read(it->data, it->nbits, &it->pos, 1, &b))
		return false;
	if (b) {
		if (!mx_bits_read(it->data, it->nbits, &it->pos, 1, &b))
			return false;
		if (it->fmt >= MX_FMT_V3) {
			if (!b) {
				if (!it_read_decimal(it))
					return false;
				goto out;
			}
			if (!mx_bits_read(it->data, it->nbits, &it->pos, 1, &b))
				return false;
		}
		if (b) {
			uint64_t l, s;
			if (!mx_bits_read(it->data, it->nbits, &it->pos, 5, &l) ||
			    !mx_bits_read(it->data, it->nbits, &it->pos, 6, &s))
				return false;
			int sig = s ? (int)s : 64;
			if ((int)l + sig > 64)
				return false;
			it->lead = (int)l;
			it->trail = 64 - it->lead - sig;
		} else if (it->lead < 0) {
			return false; /* a window before any was set: damaged */
		}
		int sig = 64 - it->lead - it->trail;
		uint64_t x;
		if (!mx_bits_read(it->data, it->nbits, &it->pos, sig, &x))
			return false;
		it->bits ^= it->trail < 64 ? x << it->trail : 0;
	}
out:
	it->k++;
	*t = it->t;
	*v = bitsd(it->bits);
	return true;
}

void mx_chunk_it_skip(struct mx_chunk_it *it, int64_t from)
{
	if (!it->run_left || it->delta <= 0 || it->t >= from)
		return;
	int64_t before = (from - 1 - it->t) / it->delta; /* run points with t < from */
	if (before > (int64_t)it->run_left)
		before = it->run_left;
	if (before <= 0 || it->k + (uint64_t)before > it->n)
		return;
	if (it->run_kind == 2) {
		int64_t m;
		if (!dec_of(bitsd(it->bits), it->run_p, &m))
			return; /* damaged: let mx_chunk_it_next() find out */
		it->bits = dbits(dec_val(m + it->run_d * before, it->run_p));
	}
	it->t += it->delta * before;
	it->run_left -= (uint32_t)before;
	it->k += (uint32_t)before;
}

uint32_t mx_chunk_decode(const struct mx_chunk *c, const uint8_t *data, int64_t *ts, double *vs)
{
	struct mx_chunk_it it;
	mx_chunk_it_init(&it, data, c->nbits, c->n, c->t_first, MX_FMT);
	uint32_t k = 0;
	while (k < c->n && mx_chunk_it_next(&it, &ts[k], &vs[k]))
		k++;
	return k;
}

/* ------------------------------------------------------------------------ */
/* The store                                                                */

static bool make_room(struct mx_tsdb *db, size_t need);

/* The most an open chunk's part of a tier's buffer grows to (tier_put()). */
#define MX_OPEN_MAX (MX_CHUNK_HEAD + MX_CHUNK_MAX_BYTES + 8)

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

/* A closed chunk's head, packed in a tier's buffer. */
struct chunk_head {
	int64_t t_first, t_last;
	uint32_t n, seq;
	uint16_t nbits;
	uint8_t fmt;
};

static void head_put(uint8_t *at, const struct chunk_head *h)
{
	uint8_t z = 0;
	uint32_t span = (uint32_t)(h->t_last - h->t_first);
	assert(h->t_last >= h->t_first && h->t_last - h->t_first <= UINT32_MAX);
	memcpy(at, &h->t_first, 8);
	memcpy(at + 8, &span, 4);
	memcpy(at + 12, &h->n, 4);
	memcpy(at + 16, &h->seq, 4);
	memcpy(at + 20, &h->nbits, 2);
	memcpy(at + 22, &h->fmt, 1);
	memcpy(at + 23, &z, 1);
}

static void head_get(const uint8_t *at, struct chunk_head *h)
{
	uint32_t span;
	memcpy(&h->t_first, at, 8);
	memcpy(&span, at + 8, 4);
	memcpy(&h->n, at + 12, 4);
	memcpy(&h->seq, at + 16, 4);
	memcpy(&h->nbits, at + 20, 2);
	memcpy(&h->fmt, at + 22, 1);
	h->t_last = h->t_first + span;
}

/* Bytes a closed chunk takes in its buffer, head included. */
static uint32_t head_size(const struct chunk_head *h)
{
	return MX_CHUNK_HEAD + ((uint32_t)h->nbits + 7) / 8;
}

static uint32_t open_bytes(const struct mx_tier_data *td)
{
	return td->open.n ? MX_CHUNK_HEAD + (td->open.nbits + 7) / 8 : 0;
}

/* Resizes a tier's buffer to cap bytes (0 frees it), accounted. */
static void buf_resize(struct mx_tsdb *db, struct mx_tseries *s, struct mx_tier_data *td,
		       uint32_t cap)
{
	if (cap == td->cap)
		return;
	if (cap == 0) {
		free(td->buf);
		td->buf = NULL;
	} else {
		td->buf = xrealloc(td->buf, cap);
	}
	db->used = db->used - td->cap + cap;
	s->bytes = s->bytes - td->cap + cap;
	td->cap = cap;
}

/* Drops the oldest closed chunks of a tier, bytes of them, and gives their
 * memory back. */
static void tier_drop_front(struct mx_tsdb *db, struct mx_tseries *s, struct mx_tier_data *td,
			    uint32_t bytes)
{
	if (!bytes)
		return;
	uint32_t keep = td->len - bytes + open_bytes(td);
	memmove(td->buf, td->buf + bytes, keep);
	td->len -= bytes;
	buf_resize(db, s, td, keep ? td->cap - bytes : 0);
}

/* Ends a tier's open chunk: its head is written in front of its data,
 * which become the newest closed chunk. */
static void chunk_close(struct mx_tsdb *db, struct mx_tier_data *td)
{
	struct mx_chunk *c = &td->open;
	struct chunk_head h = {c->t_first, c->t_last, c->n, db->close_seq++, (uint16_t)c->nbits,
			       MX_FMT};
	head_put(td->buf + td->len, &h);
	td->len += head_size(&h);
	memset(c, 0, sizeof(*c));
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

static uint64_t tseries_hash_of(const void *s)
{
	return ((const struct mx_tseries *)s)->hash;
}

static void set_del(struct mx_tsdb *db, struct mx_tseries *s)
{
	size_t mask = db->set_cap - 1;
	size_t hole = s->hash & mask;
	while (db->set[hole] != s)
		hole = (hole + 1) & mask;
	mx_ptr_table_del((void **)db->set, db->set_cap, hole, tseries_hash_of);
}

/* The bucket coarser tier t (>= 1) of s is accumulating. */
static struct mx_tier_acc *tier_acc(const struct mx_tsdb *db, const struct mx_tseries *s, size_t t)
{
	assert(t >= 1 && t < db->n_tiers);
	return (struct mx_tier_acc *)(s->tiers + db->n_tiers) + (t - 1);
}

/* Bytes of a series' allocation (struct mx_tseries). */
static size_t series_size(size_t n_tiers, size_t n_labels)
{
	return sizeof(struct mx_tseries) + n_tiers * sizeof(struct mx_tier_data) +
	       (n_tiers ? n_tiers - 1 : 0) * sizeof(struct mx_tier_acc) +
	       2 * n_labels * sizeof(char *);
}

static void series_free(struct mx_tsdb *db, struct mx_tseries *s)
{
	for (size_t t = 0; t < db->n_tiers; t++)
		buf_resize(db, s, &s->tiers[t], 0);
	db->used -= s->bytes;
	db->reserved -= s->reserve;
	for (size_t k = 0; k < 2 * s->n_labels; k++)
		str_unref(db, s->lnames[k]);
	str_unref(db, s->name);
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
	size_t size = series_size(db->n_tiers, n_labels);
	size_t cost = size + 3 * sizeof(struct mx_tseries *);
	size_t reserve = cost + db->n_tiers * MX_OPEN_MAX;
	if (db->reserved + reserve + new_strs > db->budget || !make_room(db, cost + new_strs)) {
		db->dropped_series++;
		return NULL;
	}
	struct mx_tseries *s = xcalloc(1, size);
	s->name = str_ref(db, name);
	s->n_labels = n_labels;
	s->lnames = (char **)((char *)s + size - 2 * n_labels * sizeof(char *));
	for (size_t k = 0; k < n_labels; k++) {
		s->lnames[k] = str_ref(db, lnames[k]);
		mx_tseries_lvalues(s)[k] = str_ref(db, lvalues[k]);
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

/* Evicts the closed chunks that closed first, at least want bytes of them
 * (about: by close sequence in 64 groups, all of a group at once, so that
 * one pass over the store makes room for many appends). False when there
 * is no closed chunk left. */
static bool evict(struct mx_tsdb *db, size_t want)
{
	size_t by_age[64] = {0}, total = 0;
	uint32_t oldest = 0;
	for (size_t k = 0; k < db->n; k++)
		for (size_t t = 0; t < db->n_tiers; t++) {
			struct mx_tier_data *td = &db->all[k]->tiers[t];
			struct chunk_head h;
			if (td->len) {
				head_get(td->buf, &h);
				if (db->close_seq - h.seq > oldest)
					oldest = db->close_seq - h.seq;
			}
		}
	if (oldest == 0)
		return false;
	uint64_t group = (uint64_t)oldest / 64 + 1; /* ages per group */
	for (size_t k = 0; k < db->n; k++)
		for (size_t t = 0; t < db->n_tiers; t++) {
			struct mx_tier_data *td = &db->all[k]->tiers[t];
			for (uint32_t at = 0; at < td->len;) {
				struct chunk_head h;
				head_get(td->buf + at, &h);
				by_age[(db->close_seq - h.seq) / group] += head_size(&h);
				total += head_size(&h);
				at += head_size(&h);
			}
		}
	/* Evict every chunk at least this old. */
	size_t g = 64, sum = 0;
	while (g > 0 && sum < want)
		sum += by_age[--g];
	uint64_t min_age = g * group;
	for (size_t k = 0; k < db->n; k++) {
		struct mx_tseries *s = db->all[k];
		for (size_t t = 0; t < db->n_tiers; t++) {
			struct mx_tier_data *td = &s->tiers[t];
			uint32_t drop = 0;
			while (drop < td->len) {
				struct chunk_head h;
				head_get(td->buf + drop, &h);
				if (db->close_seq - h.seq < min_age)
					break;
				drop += head_size(&h);
				db->evicted_chunks++;
			}
			tier_drop_front(db, s, td, drop);
		}
	}
	return total > 0;
}

/* Makes room for need more bytes by evicting the closed chunks that closed
 * first (and some more, 1/64 of the budget, so as not to come back at
 * once). False when even that is not enough. */
static bool make_room(struct mx_tsdb *db, size_t need)
{
	while (db->used + need > db->budget)
		if (!evict(db, db->used + need - db->budget + db->budget / 64))
			return false;
	return true;
}

/* How long a chunk of tier t may span: 1/MX_CHUNK_SPANS of its retention,
 * so retention, which drops whole chunks, keeps at most that much more. */
static int64_t tier_span(const struct mx_tsdb *db, size_t t)
{
	int64_t span = db->tiers[t].retention_ms / MX_CHUNK_SPANS;
	return span > 0 ? span : 1;
}

/* Appends one point to tier t, closing its open chunk first when full or
 * long enough, and growing its buffer as needed. */
static int tier_put(struct mx_tsdb *db, struct mx_tseries *s, size_t t, int64_t ts, double v)
{
	struct mx_tier_data *td = &s->tiers[t];
	struct mx_chunk *c = &td->open;
	if (c->n > 0 && ts <= c->t_last)
		return -EINVAL;
	if (c->n > 0 && ((c->nbits + 7) / 8 + MX_POINT_MAX_BYTES > MX_CHUNK_MAX_BYTES ||
			 ts - c->t_first >= tier_span(db, t) || ts - c->t_first > UINT32_MAX ||
			 c->n == UINT32_MAX))
		chunk_close(db, td);
	/* With room for the worst case of a point, append in place. */
	uint32_t data = (c->nbits + 7) / 8;
	if (td->len + MX_CHUNK_HEAD + data + MX_POINT_MAX_BYTES <= td->cap) {
		mx_chunk_append(c, td->buf + td->len + MX_CHUNK_HEAD, ts, v);
		return 0;
	}
	/* Else append to a copy and grow the buffer by what the point took,
	 * in steps of 8 bytes: keeping room for the worst case in every
	 * buffer would cost each series some 20 bytes a tier, and most
	 * points (a run record extended) take none. */
	uint8_t tmp[MX_CHUNK_MAX_BYTES + MX_POINT_MAX_BYTES];
	struct mx_chunk next = *c;
	if (data)
		memcpy(tmp, td->buf + td->len + MX_CHUNK_HEAD, data);
	mx_chunk_append(&next, tmp, ts, v);
	uint32_t grown = (next.nbits + 7) / 8;
	uint32_t want = td->len + MX_CHUNK_HEAD + ((grown + 7) & ~7u);
	if (td->len + MX_CHUNK_HEAD + grown > td->cap) {
		if (!make_room(db, want - td->cap)) {
			db->dropped_samples++;
			return -ENOSPC;
		}
		/* Eviction may have shortened this very buffer. */
		want = td->len + MX_CHUNK_HEAD + ((grown + 7) & ~7u);
		if (td->len + MX_CHUNK_HEAD + grown > td->cap)
			buf_resize(db, s, td, want);
	}
	memcpy(td->buf + td->len + MX_CHUNK_HEAD, tmp, grown);
	*c = next;
	return 0;
}

/* The value a coarser tier stores for a bucket of gauge samples: their
 * average, or the shortest decimal (up to 6 places) within the rounding
 * error of summing n samples (n + 2 units in the last place). An average
 * of decimal samples is itself such a decimal up to that error, and stored
 * as one it keeps runs of them (the average uptime of an instance grows by
 * exactly 10 s every 10 s) cheap. */
static double tier_average(double sum, uint32_t n)
{
	double avg = sum / n, tol = fabs(avg) * (n + 2) * 0x1p-52;
	if (!isfinite(avg))
		return avg;
	for (int p = 0; p <= MX_DEC_MAX; p++) {
		double a = avg * pow10s[p];
		if (!(fabs(a) < MX_DEC_LIMIT))
			break;
		double d = dec_val(llround(a), p);
		if (fabs(d - avg) <= tol)
			return d;
	}
	return avg;
}

int mx_tsdb_append(struct mx_tsdb *db, struct mx_tseries *s, int64_t t, double v)
{
	if (s->t_last && t <= s->t_last)
		return -EINVAL;
	s->t_last = t;
	int r = db->n_tiers ? tier_put(db, s, 0, t, v) : 0;
	for (size_t k = 1; k < db->n_tiers; k++) {
		struct mx_tier_acc *acc = tier_acc(db, s, k);
		int64_t res = db->tiers[k].res_ms;
		int64_t bucket = t - ((t % res) + res) % res;
		if (acc->n && bucket != acc->t) {
			double out = s->counter ? acc->v : tier_average(acc->v, acc->n);
			tier_put(db, s, k, acc->t, out);
			acc->n = 0;
			acc->v = 0;
		}
		acc->t = bucket;
		acc->v = s->counter ? v : acc->v + v;
		acc->n++;
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
			uint32_t drop = 0;
			while (drop < td->len) {
				struct chunk_head h;
				head_get(td->buf + drop, &h);
				if (h.t_last >= cutoff)
					break;
				drop += head_size(&h);
			}
			tier_drop_front(db, s, td, drop);
			if (td->open.n && td->open.t_last < cutoff) {
				memset(&td->open, 0, sizeof(td->open));
				buf_resize(db, s, td, td->len);
			}
			struct mx_tier_acc *acc = t ? tier_acc(db, s, t) : NULL;
			if (acc && acc->n && acc->t < cutoff)
				acc->n = 0;
			if (td->len || td->open.n || (acc && acc->n))
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

/* Appends the points of one chunk with from <= t <= to and t > *last. */
static void read_chunk(const uint8_t *data, uint32_t nbits, uint32_t n, int64_t t_first,
		       uint8_t fmt, int64_t from, int64_t to, int64_t *last,
		       struct metrics_point **pts, size_t *np, size_t *alloc)
{
	struct mx_chunk_it it;
	int64_t t;
	double v;
	mx_chunk_it_init(&it, data, nbits, n, t_first, fmt);
	for (;;) {
		mx_chunk_it_skip(&it, from);
		if (!mx_chunk_it_next(&it, &t, &v) || t > to)
			return;
		if (t >= from && t > *last) {
			push_point(pts, np, alloc, t, v);
			*last = t;
		}
	}
}

void mx_tsdb_read(const struct mx_tsdb *db, const struct mx_tseries *s, size_t tier, int64_t from,
		  int64_t to, struct metrics_point **pts, size_t *n, size_t *alloc)
{
	if (tier >= db->n_tiers)
		return;
	const struct mx_tier_data *td = &s->tiers[tier];
	int64_t last = INT64_MIN;
	for (uint32_t at = 0; at < td->len;) {
		struct chunk_head h;
		head_get(td->buf + at, &h);
		if (h.t_last >= from && h.t_first <= to)
			read_chunk(td->buf + at + MX_CHUNK_HEAD, h.nbits, h.n, h.t_first, h.fmt, from, to,
				   &last, pts, n, alloc);
		at += head_size(&h);
	}
	const struct mx_chunk *c = &td->open;
	if (c->n && c->t_last >= from && c->t_first <= to)
		read_chunk(td->buf + td->len + MX_CHUNK_HEAD, c->nbits, c->n, c->t_first, MX_FMT,
			   from, to, &last, pts, n, alloc);
	const struct mx_tier_acc *acc = tier > 0 ? tier_acc(db, s, tier) : NULL;
	if (acc && acc->n && acc->t >= from && acc->t <= to && acc->t > last)
		push_point(pts, n, alloc, acc->t, s->counter ? acc->v : tier_average(acc->v, acc->n));
}

/* The time of the first point of one tier of s; 0: none. */
static int64_t tier_first(const struct mx_tseries *s, size_t tier)
{
	const struct mx_tier_data *td = &s->tiers[tier];
	if (td->len) {
		struct chunk_head h;
		head_get(td->buf, &h);
		return h.t_first;
	}
	return td->open.n ? td->open.t_first : 0;
}

int64_t mx_tsdb_oldest(const struct mx_tsdb *db)
{
	int64_t oldest = 0;
	for (size_t k = 0; k < db->n; k++) {
		const struct mx_tseries *s = db->all[k];
		/* A coarser tier stamps a bucket with its start, before the first
		 * sample in it: its bucket counts only when the finer tiers no
		 * longer hold any sample of it. */
		int64_t first = 0;
		for (size_t t = 0; t < db->n_tiers; t++) {
			int64_t f = tier_first(s, t);
			if (f && (!first || f + db->tiers[t].res_ms <= first))
				first = f;
		}
		if (first && (!oldest || first < oldest))
			oldest = first;
	}
	return oldest;
}

/* ------------------------------------------------------------------------ */
/* The history file                                                         */
/*
 * Little-endian throughout:
 *   "PSOTSDB2" u32 n_tiers {i64 res_ms, i64 retention_ms}*n_tiers
 *   u64 n_series, per series:
 *     str name, u32 n_labels {str label, str value}*, u8 counter, i64 t_last,
 *     per tier: i64 acc_t, f64 acc_sum, f64 acc_last, u32 acc_n, u32 n_chunks,
 *       per chunk: i64 t_first, i64 t_last, u32 n, u32 nbits, u8 format,
 *       bytes[(nbits+7)/8]
 *   u32 CRC-32 of everything before it.
 * str is u32 length + bytes. A chunk is written in the format it was
 * encoded in (MX_FMT now: 3), so files of earlier daemons load as they are.
 * A bucket's f64 acc_sum and acc_last are both the one value kept: a
 * gauge's sum, a counter's last sample (the other one is never read).
 * "PSOTSDB1" files (written before run records existed) are the same
 * without the chunks' format byte; they still load. */

static const char magic[8] = {'P', 'S', 'O', 'T', 'S', 'D', 'B', '2'};
static const char magic_v1[8] = {'P', 'S', 'O', 'T', 'S', 'D', 'B', '1'};

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

static void put_chunk(struct strbuf *out, const struct chunk_head *h, const uint8_t *data)
{
	put_u(out, (uint64_t)h->t_first, 8);
	put_u(out, (uint64_t)h->t_last, 8);
	put_u(out, h->n, 4);
	put_u(out, h->nbits, 4);
	put_u(out, h->fmt, 1);
	strbuf_add(out, data, ((size_t)h->nbits + 7) / 8);
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
			put_str(out, mx_tseries_lvalues(s)[l]);
		}
		put_u(out, s->counter, 1);
		put_u(out, (uint64_t)s->t_last, 8);
		for (size_t t = 0; t < db->n_tiers; t++) {
			const struct mx_tier_data *td = &s->tiers[t];
			/* The bucket's sum and last value: a counter's sum is
			 * never read, a gauge's last value neither. */
			const struct mx_tier_acc *acc = t ? tier_acc(db, s, t) : &(struct mx_tier_acc){0};
			put_u(out, (uint64_t)acc->t, 8);
			put_u(out, dbits(acc->v), 8);
			put_u(out, dbits(acc->v), 8);
			put_u(out, acc->n, 4);
			uint32_t nc = td->open.n > 0;
			for (uint32_t at = 0; at < td->len; nc++) {
				struct chunk_head h;
				head_get(td->buf + at, &h);
				at += head_size(&h);
			}
			put_u(out, nc, 4);
			for (uint32_t at = 0; at < td->len;) {
				struct chunk_head h;
				head_get(td->buf + at, &h);
				put_chunk(out, &h, td->buf + at + MX_CHUNK_HEAD);
				at += head_size(&h);
			}
			if (td->open.n) {
				const struct mx_chunk *c = &td->open;
				struct chunk_head h = {c->t_first, c->t_last, c->n, 0, (uint16_t)c->nbits,
						       MX_FMT};
				put_chunk(out, &h, td->buf + td->len + MX_CHUNK_HEAD);
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
	if (len < sizeof(magic) + 4 ||
	    (memcmp(buf, magic, sizeof(magic)) != 0 && memcmp(buf, magic_v1, sizeof(magic)) != 0)) {
		*err = xstrdup("not a paasops history file");
		return -EINVAL;
	}
	bool v1 = memcmp(buf, magic_v1, sizeof(magic)) == 0;
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
			struct mx_tier_acc acc_tmp, *acc = td != &tmp && map[t] > 0 ?
								  tier_acc(db, s, (size_t)map[t]) : &acc_tmp;
			acc->t = (int64_t)get_u(&r, 8);
			double sum = bitsd(get_u(&r, 8)), last = bitsd(get_u(&r, 8));
			acc->v = s && s->counter ? last : sum;
			acc->n = (uint32_t)get_u(&r, 4);
			uint64_t nc = get_u(&r, 4);
			for (uint64_t c = 0; c < nc && r.ok; c++) {
				int64_t t_first = (int64_t)get_u(&r, 8), t_end = (int64_t)get_u(&r, 8);
				uint32_t n = (uint32_t)get_u(&r, 4), nbits = (uint32_t)get_u(&r, 4);
				uint8_t fmt = v1 ? MX_FMT_V1 : (uint8_t)get_u(&r, 1);
				size_t bytes = (nbits + 7) / 8;
				if (!r.ok || (size_t)(r.end - r.p) < bytes || bytes > MX_CHUNK_MAX_BYTES ||
				    n == 0 || fmt < MX_FMT_V1 || fmt > MX_FMT_V3 || t_end < t_first) {
					r.ok = false;
					break;
				}
				struct mx_tier_data *real = td != &tmp ? td : NULL;
				uint32_t size = MX_CHUNK_HEAD + (uint32_t)bytes;
				/* A chunk too long for a head (from a store with longer
				 * chunks) is given up like an evicted one. */
				if (real && real->open.n == 0 && db->used + size <= db->budget &&
				    t_end - t_first <= UINT32_MAX) {
					struct chunk_head h = {t_first, t_end, n, db->close_seq++,
							       (uint16_t)nbits, fmt};
					buf_resize(db, s, real, real->len + size);
					head_put(real->buf + real->len, &h);
					memcpy(real->buf + real->len + MX_CHUNK_HEAD, r.p, bytes);
					real->len += size;
				} else if (real) {
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
