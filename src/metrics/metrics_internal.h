/* metrics_internal.h: the metrics module's types, shared by its files and by
 * tests/unit/test_metrics.c. Other modules use metrics.h.
 *
 * Files: metrics_registry.c (string map, registry, exposition),
 * metrics_tsdb.c (bit streams, Gorilla chunks, tiers, memory budget, the
 * history file format), metrics_query.c (query functions, expressions),
 * metrics_sample.c (samplers), metrics.c (the module: timer, persistence on
 * the thread pool). Internal helpers are named mx_x. */
#ifndef PAASOPS_METRICS_INTERNAL_H
#define PAASOPS_METRICS_INTERNAL_H
#include "metrics/metrics.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* String map (metrics_registry.c): open addressing, linear probing,
 * backward-shift deletion. Keys are copied; values are borrowed pointers. */

struct mx_map_slot {
	char *key; /* NULL: empty */
	size_t len;
	uint64_t hash;
	void *value;
};

struct mx_map {
	struct mx_map_slot *slots;
	size_t cap, n; /* cap is 0 or a power of two */
};

uint64_t mx_hash(const void *key, size_t len);
void *mx_map_get(const struct mx_map *m, const void *key, size_t len);
/* Inserts or replaces. */
void mx_map_put(struct mx_map *m, const void *key, size_t len, void *value);
void mx_map_del(struct mx_map *m, const void *key, size_t len);
void mx_map_release(struct mx_map *m);

/* Open addressing with linear probing (cap a power of two): whether the
 * member in slot i, whose home is slot home, may move back into hole,
 * i.e. its home does not lie cyclically in (hole, i]. */
static inline bool mx_probe_may_move(size_t hole, size_t i, size_t home)
{
	return hole <= i ? !(hole < home && home <= i) : !(hole < home || home <= i);
}
/* Empties slot hole of such a table of pointers, moving later members of
 * its probe run back so that lookups need no tombstones; hash_of gives a
 * member's hash. */
void mx_ptr_table_del(void **slots, size_t cap, size_t hole, uint64_t (*hash_of)(const void *));

/* ------------------------------------------------------------------------ */
/* Interned strings (metrics_registry.c): label names and values and series
 * names are stored once, with a count of their users, however many series
 * use them (an instance's id is a label of a dozen series). */

struct mx_str {
	uint32_t refs, len;
	uint64_t hash;
	char s[];
};

struct mx_strs {
	struct mx_str **slots; /* open addressing, linear probing */
	size_t cap, n;
	size_t bytes; /* mx_str_cost() of every string held */
};

/* What one string of len bytes costs, its share of the table included. */
size_t mx_str_cost(size_t len);
/* The interned copy of s, or NULL. Borrowed: valid while it has users. */
char *mx_strs_find(const struct mx_strs *p, const char *s);
/* The interned copy of s, made when new, with one more user. */
char *mx_strs_ref(struct mx_strs *p, const char *s);
/* One user less; s (from mx_strs_ref) is freed with its last user. */
void mx_strs_unref(struct mx_strs *p, char *s);
/* Frees the table; every string must have been unref'd. */
void mx_strs_release(struct mx_strs *p);

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */

struct mx_tseries;

struct metrics_family {
	struct metrics_registry *reg;
	char *name, *help;
	enum metrics_type type;
	char **labels;
	size_t n_labels;
	int app_label; /* index of "app", or -1 */
	double *bounds;
	size_t n_bounds;
	bool expire;
	size_t index; /* in reg->fams */
	struct metrics_series **series;
	size_t n_series, alloc_series;
};

struct metrics_series {
	struct metrics_family *fam;
	uint64_t hash; /* of fam and the interned values: the key in reg->set */
	size_t index;  /* in fam->series */
	uint64_t gen;
	double value;
	uint64_t *counts; /* histograms: n_bounds + 1, non-cumulative */
	double sum;
	/* history streams: 1 (ts is then &ts1), or n_bounds + 3 for histograms
	 * (buckets, sum, count) */
	struct mx_tseries **ts;
	struct mx_tseries *ts1;
	size_t n_ts;
	int64_t ts_retry_ms; /* when a refused stream is asked for again */
	bool ts_counted;     /* a refusal of this series was counted */
	/* sampler scratch: the previous value and when, and what it belonged to */
	double prev;
	int64_t prev_ms;
	int64_t tag;
	char *values[]; /* fam->n_labels, interned in reg->strs */
};

struct metrics_registry {
	struct metrics_family **fams;
	size_t n_fams, alloc_fams;
	struct mx_strs strs;  /* label values of the series */
	struct metrics_series **set; /* by s->hash, open addressing */
	size_t set_cap;
	struct mx_map names;  /* family name -> family */
	uint64_t gen;
	size_t n_series;
};

/* Appends v the way the exposition formats want it ("+Inf", "NaN", an
 * integer when exact, else the shortest of %.15g/%.17g that round-trips). */
void mx_format_double(struct strbuf *out, double v);
/* Appends s with \\, \" and \n escaped (label values; OpenMetrics HELP) or
 * with \\ and \n escaped only (text 0.0.4 HELP). */
void mx_escape(struct strbuf *out, const char *s, bool quote);

/* ------------------------------------------------------------------------ */
/* Bit streams and Gorilla chunks (metrics_tsdb.c)                          */

/* Bits are written most significant first. The writer never reads past
 * nbits; bytes beyond are zeroed as they are reached. */
void mx_bits_write(uint8_t *buf, uint32_t *nbits, uint64_t v, int n);
/* Reads n (1..64) bits at *pos; false when fewer than n remain. */
bool mx_bits_read(const uint8_t *buf, uint32_t nbits, uint32_t *pos, int n, uint64_t *v);

#define MX_CHUNK_MAX_BYTES 512 /* a chunk closes before its data outgrows this */
#define MX_CHUNK_SPANS 4        /* ... or once it spans 1/4 of its tier's retention */
#define MX_POINT_MAX_BYTES 20   /* worst case: 69 bits of time + 77 of value */
#define MX_CHUNK_HEAD 24        /* a closed chunk's head in a tier's buffer */
#define MX_RUN_MAX 65535        /* points one run record can stand for */

/* Stream formats: 1 (files written before runs existed), 2 (run records)
 * and 3 (values as decimal deltas too). */
#define MX_FMT_V1 1
#define MX_FMT_V2 2
#define MX_FMT_V3 3
#define MX_FMT MX_FMT_V3 /* what mx_chunk_append() writes */

/* A run of points: the first value raw, then timestamps as delta-of-delta
 * and values as XOR with the previous one (Gorilla, Pelkonen et al. 2015).
 * Format 2 adds run records: points that repeat the previous interval and
 * either repeat the previous value or continue a decimal arithmetic
 * progression (v = m / 10^p, m growing by a fixed step, as an uptime in ms
 * does) are stored as one record with a count, so an idle series costs a
 * few bytes per chunk instead of 2 bits a point. Format 3 stores a value
 * that is a short decimal, as its previous one is (m / 10^p: CPU seconds in
 * hundredths, a byte count), as the difference of the two m when that is
 * shorter than their XOR.
 *
 * This is the encoder state of the chunk being appended to; its bytes live
 * elsewhere (the tier's buffer) and are passed in. n == 0: no chunk. */
struct mx_chunk {
	int64_t t_first, t_last;
	int64_t delta;   /* t_last - previous t */
	uint64_t v_bits; /* last value's bits */
	int32_t run_d;   /* decimal step of a progression run */
	uint32_t n, nbits;
	uint32_t run_pos; /* bit where the current run starts */
	uint16_t run_n;   /* points in the current run */
	uint8_t lead, trail; /* XOR window of the previous value; lead 0xff: none */
	uint8_t run_kind : 2; /* 0 none, 1 repeat, 2 progression */
	uint8_t run_rec : 1;  /* the run is written as a record (else as points) */
	uint8_t run_p : 3;    /* decimal scale of a progression */
	uint8_t run_lead, run_trail; /* XOR window where the run starts */
};

/* Appends a point to a chunk whose data (at least MX_POINT_MAX_BYTES free
 * after its (nbits + 7) / 8 bytes) is at data; t must be greater than
 * c->t_last unless c is empty. Writes format MX_FMT. */
void mx_chunk_append(struct mx_chunk *c, uint8_t *data, int64_t t, double v);

/* Reads a chunk's points in order, whatever its format. */
struct mx_chunk_it {
	const uint8_t *data;
	uint32_t nbits, n, k, pos;
	int64_t t, delta, run_d;
	uint64_t bits;
	uint32_t run_left;
	int lead, trail;
	uint8_t fmt, run_kind, run_p;
};
void mx_chunk_it_init(struct mx_chunk_it *it, const uint8_t *data, uint32_t nbits, uint32_t n,
		      int64_t t_first, uint8_t fmt);
/* The next point; false at the end (or where the data is damaged). */
bool mx_chunk_it_next(struct mx_chunk_it *it, int64_t *t, double *v);
/* Moves past the points of the current run that are before from without
 * decoding them one by one (the caller still skips any others). */
void mx_chunk_it_skip(struct mx_chunk_it *it, int64_t from);
/* Decodes every point of an open chunk into ts/vs (room for c->n each);
 * returns how many decoded (fewer only when the data is damaged). */
uint32_t mx_chunk_decode(const struct mx_chunk *c, const uint8_t *data, int64_t *ts, double *vs);

/* ------------------------------------------------------------------------ */
/* History store (metrics_tsdb.c)                                           */

/* A series' tier: one buffer holding its closed chunks, oldest first, each
 * as a head (MX_CHUNK_HEAD bytes: i64 t_first, u32 t_last - t_first, u32
 * n, u32 close sequence, u16 nbits, u8 format, u8 0) and its data, so a
 * chunk spans at most UINT32_MAX ms (49 days), then room for
 * the open chunk's head and its data. One allocation, sized to what it
 * holds (the open chunk's data rounded up to 8 bytes); NULL until a point
 * lands in the tier. */
struct mx_tier_data {
	uint8_t *buf;
	uint32_t len; /* bytes of closed chunks */
	uint32_t cap; /* bytes allocated */
	struct mx_chunk open; /* data at buf + len + MX_CHUNK_HEAD */
};

/* The bucket a coarser tier is accumulating. */
struct mx_tier_acc {
	int64_t t; /* bucket start */
	double v;  /* gauges: the sum of the samples; counters: the last one */
	uint32_t n; /* samples; 0: none */
};

/* A series is one allocation: this head, db->n_tiers tier_data, then
 * db->n_tiers - 1 tier_acc (tiers 1.., the coarser ones), then its label
 * names and values (2 * n_labels pointers, where lnames points). */
struct mx_tseries {
	/* name and labels are interned in db->strs: never freed or changed
	 * through these pointers. The values follow the names: mx_tseries_lvalues(). */
	char *name;
	char **lnames;
	uint64_t hash;  /* of the interned pointers: the key in db->set */
	int64_t t_last; /* newest sample, wall ms; 0: none */
	uint32_t n_labels;
	uint32_t bytes;   /* what this series accounts for (its strings excepted) */
	uint32_t reserve; /* its share of db->reserved */
	uint32_t index;   /* in db->all */
	bool counter;     /* coarser tiers keep the last value, not the average */
	struct mx_tier_data tiers[]; /* db->n_tiers of them */
};

/* The label values of s, in the order of s->lnames. */
static inline char **mx_tseries_lvalues(const struct mx_tseries *s)
{
	return s->lnames + s->n_labels;
}

/* Memory: used counts every byte the store holds; reserved counts, per
 * series, its own structures plus the worst case of one open chunk per
 * tier, and the interned strings (strs.bytes of both, as long as a series
 * uses them). A series is admitted only while reserved stays within the budget,
 * so closed chunks can always be evicted (the ones that closed first, by
 * their close sequence) to make room for open ones, and used never exceeds
 * the budget. */
struct mx_tsdb {
	struct metrics_tier tiers[METRICS_MAX_TIERS];
	size_t n_tiers;
	size_t budget, used, reserved;
	uint32_t close_seq; /* the next closed chunk's sequence */
	uint64_t dropped_series, dropped_samples, evicted_chunks;
	struct mx_strs strs; /* names, label names and values of the series */
	/* series by name and labels: open addressing by s->hash */
	struct mx_tseries **set;
	size_t set_cap;
	struct mx_tseries **all;
	size_t n, alloc;
};

struct mx_tsdb *mx_tsdb_new(const struct metrics_tier *tiers, size_t n_tiers, size_t budget);
void mx_tsdb_free(struct mx_tsdb *db);
/* The series for name + labels, created when new. NULL (and one more
 * dropped series counted) when its reservation does not fit the budget. */
struct mx_tseries *mx_tsdb_series(struct mx_tsdb *db, const char *name,
				  const char *const *lnames, const char *const *lvalues,
				  size_t n_labels, bool counter);
/* The interned copy of s, or NULL when no series uses it (then no series
 * has it as its name or a label). Borrowed, valid until the next change. */
const char *mx_tsdb_str(const struct mx_tsdb *db, const char *s);
/* Appends a sample (wall ms). Returns 0; -EINVAL when t is not newer than
 * the previous sample (ignored). May evict the oldest closed chunks of any
 * series to stay within the budget (evicted_chunks); -ENOSPC (a dropped
 * sample, counted) cannot happen to an admitted series. */
int mx_tsdb_append(struct mx_tsdb *db, struct mx_tseries *s, int64_t t, double v);
/* Drops chunks past their tier's retention and series with no data left. */
void mx_tsdb_gc(struct mx_tsdb *db, int64_t now_ms);
/* Appends the points of one tier with from <= t <= to to *pts (growing it),
 * oldest first, including a coarser tier's partly filled bucket. */
void mx_tsdb_read(const struct mx_tsdb *db, const struct mx_tseries *s, size_t tier, int64_t from,
		  int64_t to, struct metrics_point **pts, size_t *n, size_t *alloc);
/* Wall ms of the oldest sample held in any tier of any series; 0: none.
 * A coarser tier's bucket, stamped with its start, counts from there only
 * when no finer tier holds a sample of it any more. */
int64_t mx_tsdb_oldest(const struct mx_tsdb *db);
/* Serialises everything (the history file format, with a CRC-32 trailer). */
void mx_tsdb_save(const struct mx_tsdb *db, struct strbuf *out);
/* Loads a saved image into an empty store, within its budget; series whose
 * tiers differ in resolution keep only the tiers that match. 0 or -EINVAL
 * with *err set for a damaged image. */
int mx_tsdb_load(struct mx_tsdb *db, const void *buf, size_t len, char **err);

/* ------------------------------------------------------------------------ */
/* Queries (metrics_query.c)                                                */

/* Runs q over db as of now_ms (which decides the tier). */
int mx_query(const struct mx_tsdb *db, const struct metrics_query *q, int64_t now_ms,
	     struct metrics_result *out, char **err);

/* ------------------------------------------------------------------------ */
/* Samplers (metrics_sample.c)                                              */

struct mx_samplers;
struct mx_samplers *mx_samplers_new(struct metrics_registry *reg, const char *version);
void mx_samplers_free(struct mx_samplers *s);
/* Fills the registry from the supervisor, the router (either may be NULL),
 * the host and the daemon itself. now_ms is the sample's wall time. */
void mx_samplers_run(struct mx_samplers *s, struct supervisor *sv, struct router *r,
		     const char *data_dir, int64_t now_ms, double loop_lag_s);
/* Families the module itself updates. */
struct mx_self {
	struct metrics_series *sample_seconds, *sample_cpu, *scrapes, *scrape_seconds;
	struct metrics_series *hist_series, *hist_bytes, *hist_budget, *dropped_series,
		*dropped_samples, *evicted, *saves, *save_errors;
};
void mx_samplers_self(struct mx_samplers *s, struct mx_self *out);

#endif
