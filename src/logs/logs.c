/* logs.c: the logs module's front: configuration, ingest on the control
 * loop (rate limits and markers, batching to the writer), the bloom cache,
 * queries on the libuv thread pool, live tails and the drains' fan-out of
 * committed lines. See logs.h for the model and doc/logs.md for the
 * user-facing rules. */
#include "compat/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "logs/logs_internal.h"
#include "metrics/metrics.h"
#include "store/store_logs.h"
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_HANDOFF_BYTES (256u << 10)
#define BATCH_HANDOFF_MS 10
#define QUEUE_MAX (64u << 20) /* same as the writer's bound */
#define MARKER_MS 1000
#define RATE_PAUSE_MS 100 /* reading an instance over its rate pauses this long */
#define SOURCE_IDLE_MS (10 * 60 * 1000)
#define TAIL_BUFFER_MAX 10000
#define READERS_MAX 4
#define QUERY_MAX_LIMIT 10000

/* A source of lines with its own token bucket. */
struct src {
	struct src *next;
	char *key; /* kind byte, app, NUL, instance; key_len bytes */
	size_t key_len;
	char *app, *process, *instance;
	int release, stream;
	double tokens;
	int64_t last_ns;    /* monotonic, last refill */
	int64_t seen_ms;    /* monotonic, last line */
	uint64_t dropped;   /* since the last marker */
	int64_t pause_until; /* monotonic ns: reading paused (logs_busy) */
	int64_t marker_ns;  /* monotonic, last marker */
	uint64_t dropped_rate, dropped_queue; /* lines dropped since the start, by reason */
	uint64_t shown_rate, shown_queue;     /* of those, added to the metric */
	uint64_t lines;
};

struct bloom_entry {
	struct bloom_entry *hnext;          /* hash chain */
	struct bloom_entry *lru_prev, *lru_next;
	int64_t id;
	uint32_t nblocks;
	uint32_t *words;
};

struct logs {
	struct logs_config cfg;
	uv_loop_t *loop;
	char *db_path;
	struct logs_writer *writer;
	bool stopped;

	/* ingest (loop) */
	uint64_t next_seq;
	int64_t last_t_ns;
	struct logs_batch *cur;
	uv_timer_t handoff;
	uv_timer_t markers;
	struct src **srcs;
	size_t n_buckets, n_srcs;
	uint64_t lines_in, bytes_in, dropped_rate, dropped_queue, markers_written, truncated;

	/* committed batches back from the writer */
	pthread_mutex_t back_mu;
	struct logs_batch *back_head, *back_tail;
	uint64_t back_bytes, back_dropped;
	_Atomic uint64_t committed_seq;
	_Atomic int consumers; /* tails + drains: whether to hand batches back */
	uv_async_t back_async;

	/* bloom cache */
	pthread_mutex_t cache_mu;
	struct bloom_entry **cache;
	size_t cache_buckets, cache_n;
	int64_t cache_bytes;
	struct bloom_entry lru; /* sentinel: lru.lru_next is the newest */
	uint64_t cache_hits, cache_misses;

	/* the chunk directory the writer published last */
	pthread_mutex_t dir_mu;
	struct logs_dir *dir;

	/* readers for queries */
	pthread_mutex_t readers_mu;
	struct store_logs *readers[READERS_MAX];
	size_t n_readers;
	int queries_running;
	uint64_t queries;

	/* tails and drains (loop) */
	struct logs_tail *tails;
	struct logs_drain **drains;
	size_t n_drains, alloc_drains;
	struct store_logs *ctl; /* loop-thread connection for drains */
	struct logs_parsed scratch;
	struct logs_match_ctx match;

	/* metrics (loop) */
	struct metrics_family *m_lines, *m_dropped, *m_bytes, *m_stored, *m_disk, *m_drain;
};

struct logs_tail {
	struct logs *l;
	struct logs_filter f;
	logs_tail_line_cb cb;
	void *ctx;
	bool live;     /* backlog sent */
	bool stopped;  /* by the subscriber; freed by the backlog job if it runs */
	bool job;      /* a backlog query is running */
	uint64_t hw;   /* lines up to this seq were in the backlog's snapshot */
	char **buf;    /* live lines that came while the backlog ran */
	size_t *buf_len;
	uint64_t *buf_seq;
	size_t n_buf;
	uint64_t skipped, overflow;
	struct logs_tail *next, *prev;
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- configuration ---- */

void logs_config_defaults(struct logs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->retention_ms = 7LL * 24 * 3600 * 1000;
	cfg->max_bytes = 1LL << 30;
	cfg->app_max_bytes = 256LL << 20;
	cfg->min_free_pct = 5;
	cfg->rate = 10000;
	cfg->burst = 20000;
	cfg->flush_ms = 250;
	cfg->index_memory = 128LL << 20;
	cfg->chunk_bytes = 256LL << 10;
}

int logs_config_parse(struct logs_config *cfg, const char *flag, const char *value, char **err)
{
	int64_t v;
	if (strcmp(flag, "log-retention") == 0) {
		if (duration_parse(value, &v) < 0 || v <= 0) {
			*err = xasprintf("invalid --log-retention '%s' (a duration like 7d or 12h)", value);
			return -EINVAL;
		}
		cfg->retention_ms = v;
	} else if (strcmp(flag, "log-max-size") == 0 || strcmp(flag, "log-app-max-size") == 0 ||
		   strcmp(flag, "log-index-memory") == 0) {
		if (size_parse(value, &v) < 0 || v < (strcmp(flag, "log-app-max-size") == 0 ? 0 : 1 << 20)) {
			*err = xasprintf("invalid --%s '%s' (a size like 512M or 2G, at least 1M)", flag, value);
			return -EINVAL;
		}
		if (flag[4] == 'm')
			cfg->max_bytes = v;
		else if (flag[4] == 'a')
			cfg->app_max_bytes = v;
		else
			cfg->index_memory = v;
	} else if (strcmp(flag, "log-chunk-size") == 0) {
		if (size_parse(value, &v) < 0 || v < 16384 || v > (64LL << 20)) {
			*err = xasprintf("invalid --log-chunk-size '%s' (from 16K to 64M)", value);
			return -EINVAL;
		}
		cfg->chunk_bytes = v;
	} else if (strcmp(flag, "log-min-free") == 0) {
		char *end;
		long p = strtol(value, &end, 10);
		if (end == value || (*end && strcmp(end, "%") != 0) || p < 0 || p > 50) {
			*err = xasprintf("invalid --log-min-free '%s' (a percentage from 0 to 50)", value);
			return -EINVAL;
		}
		cfg->min_free_pct = (int)p;
	} else if (strcmp(flag, "log-rate") == 0 || strcmp(flag, "log-burst") == 0) {
		if (str_to_i64(value, &v) < 0 || v < 1 || v > 100000000) {
			*err = xasprintf("invalid --%s '%s' (lines, from 1)", flag, value);
			return -EINVAL;
		}
		if (flag[4] == 'r')
			cfg->rate = (double)v;
		else
			cfg->burst = (double)v;
	} else if (strcmp(flag, "log-flush") == 0) {
		if (duration_parse(value, &v) < 0 || v < 10 || v > 1000) {
			*err = xasprintf("invalid --log-flush '%s' (from 10ms to 1s)", value);
			return -EINVAL;
		}
		cfg->flush_ms = v;
	} else if (strcmp(flag, "log-drain") == 0) {
		char *derr = NULL;
		struct logs_drain *d = logs_drain_new(NULL, value, NULL, 0, &derr);
		if (!d) {
			*err = xasprintf("invalid --log-drain '%s': %s", value, derr);
			free(derr);
			return -EINVAL;
		}
		logs_drain_free(d);
		if (cfg->n_drains == LOGS_MAX_DRAINS) {
			*err = xasprintf("at most %d --log-drain flags", LOGS_MAX_DRAINS);
			return -EINVAL;
		}
		cfg->drains[cfg->n_drains++] = value;
	} else {
		*err = xasprintf("unknown flag --%s", flag);
		return -EINVAL;
	}
	return 0;
}

/* ---- bloom cache ---- */

static void lru_unlink(struct bloom_entry *e)
{
	e->lru_prev->lru_next = e->lru_next;
	e->lru_next->lru_prev = e->lru_prev;
}

static void lru_push(struct logs *l, struct bloom_entry *e)
{
	e->lru_next = l->lru.lru_next;
	e->lru_prev = &l->lru;
	l->lru.lru_next->lru_prev = e;
	l->lru.lru_next = e;
}

static size_t cache_slot(const struct logs *l, int64_t id)
{
	return (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ULL >> 20) & (l->cache_buckets - 1);
}

static void cache_remove(struct logs *l, struct bloom_entry *e)
{
	struct bloom_entry **pp = &l->cache[cache_slot(l, e->id)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(e);
	l->cache_bytes -= (int64_t)e->nblocks * 32;
	l->cache_n--;
	free(e->words);
	free(e);
}

static struct bloom_entry *cache_find(struct logs *l, int64_t id)
{
	for (struct bloom_entry *e = l->cache[cache_slot(l, id)]; e; e = e->hnext)
		if (e->id == id)
			return e;
	return NULL;
}

/* Called with cache_mu held; copies words. */
static void cache_insert(struct logs *l, int64_t id, const uint32_t *words, uint32_t nblocks)
{
	if (cache_find(l, id))
		return;
	if (l->cache_n >= l->cache_buckets) {
		size_t nb = l->cache_buckets * 2;
		struct bloom_entry **nc = xcalloc(nb, sizeof(*nc));
		size_t old = l->cache_buckets;
		struct bloom_entry **oc = l->cache;
		l->cache = nc;
		l->cache_buckets = nb;
		for (size_t k = 0; k < old; k++) {
			for (struct bloom_entry *e = oc[k], *n; e; e = n) {
				n = e->hnext;
				size_t s = cache_slot(l, e->id);
				e->hnext = nc[s];
				nc[s] = e;
			}
		}
		free(oc);
	}
	struct bloom_entry *e = xcalloc(1, sizeof(*e));
	e->id = id;
	e->nblocks = nblocks;
	e->words = xmalloc((size_t)nblocks * 32);
	memcpy(e->words, words, (size_t)nblocks * 32);
	size_t s = cache_slot(l, id);
	e->hnext = l->cache[s];
	l->cache[s] = e;
	lru_push(l, e);
	l->cache_n++;
	l->cache_bytes += (int64_t)nblocks * 32;
	while (l->cache_bytes > l->cfg.index_memory && l->lru.lru_prev != e)
		cache_remove(l, l->lru.lru_prev);
}

void logs__bloom_put(struct logs *l, int64_t id, const uint32_t *words, uint32_t nblocks)
{
	pthread_mutex_lock(&l->cache_mu);
	cache_insert(l, id, words, nblocks);
	pthread_mutex_unlock(&l->cache_mu);
}

void logs__bloom_forget(struct logs *l, int64_t id)
{
	pthread_mutex_lock(&l->cache_mu);
	struct bloom_entry *e = cache_find(l, id);
	if (e)
		cache_remove(l, e);
	pthread_mutex_unlock(&l->cache_mu);
}

/* ---- chunk directory ---- */

static int dent_cmp_max(const void *a, const void *b)
{
	const struct logs_dent *x = a, *y = b;
	return x->seq_max < y->seq_max ? -1 : x->seq_max > y->seq_max ? 1 : 0;
}

struct min_key {
	uint64_t seq_min;
	uint32_t idx;
};

static int min_cmp(const void *a, const void *b)
{
	const struct min_key *x = a, *y = b;
	return x->seq_min < y->seq_min ? -1 : x->seq_min > y->seq_min ? 1 : 0;
}

struct logs_dir *logs_dir_new(const struct logs_dent *dents, size_t n, char *const *names,
			      size_t n_names, uint64_t gen)
{
	struct logs_dir *d = xcalloc(1, sizeof(*d));
	atomic_init(&d->refs, 1);
	d->gen = gen;
	d->by_max = xmalloc((n ? n : 1) * sizeof(*d->by_max));
	for (size_t k = 0; k < n; k++)
		if (!dents[k].dead)
			d->by_max[d->n++] = dents[k];
	qsort(d->by_max, d->n, sizeof(*d->by_max), dent_cmp_max);
	struct min_key *mk = xmalloc((d->n ? d->n : 1) * sizeof(*mk));
	for (size_t k = 0; k < d->n; k++)
		mk[k] = (struct min_key){d->by_max[k].seq_min, (uint32_t)k};
	qsort(mk, d->n, sizeof(*mk), min_cmp);
	d->by_min = xmalloc((d->n ? d->n : 1) * sizeof(*d->by_min));
	for (size_t k = 0; k < d->n; k++)
		d->by_min[k] = mk[k].idx;
	free(mk);
	d->names = xcalloc(n_names ? n_names : 1, sizeof(*d->names));
	for (size_t k = 0; k < n_names; k++)
		d->names[k] = xstrdup(names[k]);
	d->n_names = n_names;
	return d;
}

void logs_dir_put(struct logs_dir *d)
{
	if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
		return;
	for (size_t k = 0; k < d->n_names; k++)
		free(d->names[k]);
	free(d->names);
	free(d->by_max);
	free(d->by_min);
	free(d);
}

void logs__dir_publish(struct logs *l, struct logs_dir *d)
{
	pthread_mutex_lock(&l->dir_mu);
	struct logs_dir *old = l->dir;
	l->dir = d;
	pthread_mutex_unlock(&l->dir_mu);
	logs_dir_put(old);
}

/* The published directory with a reference of the caller's, or NULL. */
static struct logs_dir *dir_get(struct logs *l)
{
	pthread_mutex_lock(&l->dir_mu);
	struct logs_dir *d = l->dir;
	if (d)
		atomic_fetch_add(&d->refs, 1);
	pthread_mutex_unlock(&l->dir_mu);
	return d;
}

/* ---- readers ---- */

static struct store_logs *reader_get(struct logs *l, char **err)
{
	pthread_mutex_lock(&l->readers_mu);
	struct store_logs *r = l->n_readers ? l->readers[--l->n_readers] : NULL;
	pthread_mutex_unlock(&l->readers_mu);
	if (!r)
		r = store_logs_open(l->db_path, true, err);
	return r;
}

static void reader_put(struct logs *l, struct store_logs *r)
{
	pthread_mutex_lock(&l->readers_mu);
	if (l->n_readers < READERS_MAX) {
		l->readers[l->n_readers++] = r;
		r = NULL;
	}
	pthread_mutex_unlock(&l->readers_mu);
	store_logs_close(r);
}

/* ---- ingest ---- */

static uint64_t str_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t k = 0; k < n; k++) {
		h ^= (uint8_t)s[k];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The bucket a line counts against: an instance's output, an app's own
 * output, an app's router lines, an app's build and release output. */
static struct src *src_get(struct logs *l, const char *app, const char *process,
			   const char *instance, int release, int stream)
{
	char key[512];
	char kind = stream == 2 ? 'r' : stream == 5 ? 'u' : stream >= 3 ? 'b' : instance ? 'i' : 'a';
	int kl = snprintf(key, sizeof(key), "%c%s%c%s", kind, app, 0, kind == 'i' ? instance : "");
	if (kl < 0 || (size_t)kl >= sizeof(key))
		kl = (int)sizeof(key) - 1;
	uint64_t h = str_hash(key, (size_t)kl);
	struct src **slot = &l->srcs[h & (l->n_buckets - 1)];
	for (struct src *s = *slot; s; s = s->next) {
		if (s->key_len == (size_t)kl && memcmp(s->key, key, (size_t)kl) == 0) {
			s->release = release;
			return s;
		}
	}
	struct src *s = xcalloc(1, sizeof(*s));
	s->key = xmalloc((size_t)kl + 1);
	memcpy(s->key, key, (size_t)kl);
	s->key[kl] = '\0';
	s->key_len = (size_t)kl;
	s->app = xstrdup(app);
	s->process = process && kind == 'i' ? xstrdup(process) : NULL;
	s->instance = instance && kind == 'i' ? xstrdup(instance) : NULL;
	s->release = release;
	s->stream = stream;
	s->tokens = l->cfg.burst;
	s->last_ns = mono_ns();
	s->next = *slot;
	*slot = s;
	l->n_srcs++;
	return s;
}

static void src_free(struct src *s)
{
	free(s->key);
	free(s->app);
	free(s->process);
	free(s->instance);
	free(s);
}

static void handoff(struct logs *l)
{
	if (!l->cur || l->cur->n == 0)
		return;
	struct logs_batch *b = l->cur;
	l->cur = NULL;
	if (!logs_writer_push(l->writer, b)) {
		/* Each line is counted against its source, as when ingest refuses it. */
		size_t pos = 0;
		struct logs_rec r;
		while (logs_batch_next(b, &pos, &r, NULL))
			src_get(l, r.app, *r.process ? r.process : NULL, *r.instance ? r.instance : NULL,
				r.release, r.stream)->dropped_queue++;
		l->dropped_queue += b->n;
		logs_batch_free(b);
	}
}

static void on_handoff(uv_timer_t *t)
{
	handoff(t->data);
}

static void append(struct logs *l, const char *app, const char *process, const char *instance,
		   int release, int stream, int level, const char *text, size_t len)
{
	int64_t t = wall_ns();
	if (t <= l->last_t_ns)
		t = l->last_t_ns + 1;
	l->last_t_ns = t;
	struct logs_rec r = {
		.seq = l->next_seq++, .t_ns = t, .release = release, .stream = (uint8_t)stream,
		.level = (uint8_t)level, .app = app, .process = process, .instance = instance,
		.text = text, .len = (uint32_t)len,
	};
	if (!l->cur)
		l->cur = logs_batch_new();
	logs_batch_add(l->cur, &r);
	l->lines_in++;
	l->bytes_in += len;
	if (l->cur->data.len >= BATCH_HANDOFF_BYTES)
		handoff(l);
	else if (!uv_is_active((uv_handle_t *)&l->handoff))
		uv_timer_start(&l->handoff, on_handoff, BATCH_HANDOFF_MS, 0);
}

/* "… 12,345 lines dropped …" */
static void write_marker(struct logs *l, struct src *s)
{
	char num[32], grouped[48];
	int n = snprintf(num, sizeof(num), "%" PRIu64, s->dropped);
	size_t o = 0;
	for (int k = 0; k < n; k++) {
		if (k && (n - k) % 3 == 0)
			grouped[o++] = ',';
		grouped[o++] = num[k];
	}
	grouped[o] = '\0';
	char text[96];
	int tl = snprintf(text, sizeof(text), "\xe2\x80\xa6 %s line%s dropped \xe2\x80\xa6", grouped,
			  s->dropped == 1 ? "" : "s");
	append(l, s->app, s->process, s->instance, s->release, s->stream, LOGS_LEVEL_WARN, text, (size_t)tl);
	l->markers_written++;
	s->dropped = 0;
}

static void refill(struct logs *l, struct src *s, int64_t now)
{
	double add = (double)(now - s->last_ns) * l->cfg.rate / 1e9;
	s->last_ns = now;
	s->tokens += add;
	if (s->tokens > l->cfg.burst)
		s->tokens = l->cfg.burst;
}

void logs_ingest(struct logs *l, const char *app, const char *process, const char *instance,
		 int release, int stream, const char *text, size_t len)
{
	if (!l || l->stopped || !app)
		return;
	if (stream < 0 || stream >= LOGS_NSTREAMS)
		stream = 0;
	struct src *s = src_get(l, app, process, instance, release, stream);
	int64_t now = mono_ns();
	s->seen_ms = now / 1000000;
	if (s->tokens < 1)
		refill(l, s, now);
	size_t pending = (l->cur ? l->cur->data.len : 0) + len + 256;
	bool full = false;
	if (s->tokens < 1 || (full = logs_writer_queue_bytes(l->writer) + pending > QUEUE_MAX)) {
		s->dropped++;
		if (full) {
			s->dropped_queue++;
			l->dropped_queue++;
		} else {
			s->dropped_rate++;
			l->dropped_rate++;
		}
		if (!full && now >= s->pause_until)
			s->pause_until = now + RATE_PAUSE_MS * 1000000LL;
		return;
	}
	s->tokens -= 1;
	s->lines++;
	/* At most one marker a second per source: no token of its own. */
	if (s->dropped && now - s->marker_ns >= MARKER_MS * 1000000LL) {
		s->marker_ns = now;
		write_marker(l, s);
	}
	append(l, app, process, instance, release, stream, 0, text, len);
}

#define LOGS_BUSY_BYTES (16u << 20)

static struct src *src_find(struct logs *l, const char *app, const char *instance)
{
	char key[512];
	int kl = snprintf(key, sizeof(key), "i%s%c%s", app, 0, instance);
	if (kl < 0 || (size_t)kl >= sizeof(key))
		return NULL;
	uint64_t h = str_hash(key, (size_t)kl);
	for (struct src *s = l->srcs[h & (l->n_buckets - 1)]; s; s = s->next)
		if (s->key_len == (size_t)kl && memcmp(s->key, key, (size_t)kl) == 0)
			return s;
	return NULL;
}

bool logs_busy(struct logs *l, const char *app, const char *instance)
{
	if (!l || l->stopped || !l->writer)
		return false;
	if (app && instance) {
		struct src *s = src_find(l, app, instance);
		if (s && mono_ns() < s->pause_until)
			return true;
	}
	if ((l->cur ? l->cur->data.len : 0) >= BATCH_HANDOFF_BYTES)
		handoff(l);
	if (logs_writer_queue_bytes(l->writer) < LOGS_BUSY_BYTES)
		return false;
	return logs_writer_idle_ms(l->writer) < 1000;
}

static void metrics_update(struct logs *l);
static void src_metrics(struct logs *l, struct src *s);

/* Writes pending markers of sources that went quiet, and forgets sources
 * idle for long. */
static void on_markers(uv_timer_t *t)
{
	struct logs *l = t->data;
	int64_t now = mono_ns();
	for (size_t b = 0; b < l->n_buckets; b++) {
		for (struct src **pp = &l->srcs[b]; *pp;) {
			struct src *s = *pp;
			if (s->dropped && now - s->marker_ns >= MARKER_MS * 1000000LL) {
				s->marker_ns = now;
				write_marker(l, s);
			}
			if (!s->dropped && now / 1000000 - s->seen_ms > SOURCE_IDLE_MS && s->tokens >= l->cfg.burst) {
				*pp = s->next;
				src_metrics(l, s);
				src_free(s);
				l->n_srcs--;
				continue;
			}
			pp = &s->next;
		}
	}
	metrics_update(l);
}

/* ---- committed lines: tails and drains ---- */

void logs__committed(struct logs *l, struct logs_batch *head, uint64_t high_seq)
{
	atomic_store(&l->committed_seq, high_seq);
	if (!head)
		return;
	if (atomic_load(&l->consumers) == 0) {
		while (head) {
			struct logs_batch *n = head->next;
			logs_batch_free(head);
			head = n;
		}
		return;
	}
	pthread_mutex_lock(&l->back_mu);
	for (struct logs_batch *b = head, *n; b; b = n) {
		n = b->next;
		b->next = NULL;
		if (l->back_bytes > QUEUE_MAX) {
			/* The loop is far behind: tails and drains lose these. */
			l->back_dropped += b->n;
			logs_batch_free(b);
			continue;
		}
		l->back_bytes += b->data.len;
		if (l->back_tail)
			l->back_tail->next = b;
		else
			l->back_head = b;
		l->back_tail = b;
	}
	pthread_mutex_unlock(&l->back_mu);
	uv_async_send(&l->back_async);
}

static void tail_deliver(struct logs_tail *t, uint64_t seq, const char *json, size_t len)
{
	if (t->skipped) {
		char note[160];
		int n = snprintf(note, sizeof(note),
				 "{\"marker\":true,\"line\":\"\xe2\x80\xa6 %" PRIu64 " lines skipped: the client "
				 "reads too slowly \xe2\x80\xa6\"}", t->skipped);
		if (t->cb(t->ctx, note, (size_t)n) != 0) {
			t->skipped++;
			return;
		}
		t->skipped = 0;
	}
	if (t->cb(t->ctx, json, len) != 0)
		t->skipped++;
	(void)seq;
}

static void tail_buffer(struct logs_tail *t, uint64_t seq, const char *json, size_t len)
{
	if (t->n_buf >= TAIL_BUFFER_MAX) {
		t->overflow++;
		return;
	}
	t->buf = xrealloc(t->buf, (t->n_buf + 1) * sizeof(*t->buf));
	t->buf_len = xrealloc(t->buf_len, (t->n_buf + 1) * sizeof(*t->buf_len));
	t->buf_seq = xrealloc(t->buf_seq, (t->n_buf + 1) * sizeof(*t->buf_seq));
	t->buf[t->n_buf] = xstrndup(json, len);
	t->buf_len[t->n_buf] = len;
	t->buf_seq[t->n_buf] = seq;
	t->n_buf++;
}

static void on_back(uv_async_t *a)
{
	struct logs *l = a->data;
	pthread_mutex_lock(&l->back_mu);
	struct logs_batch *head = l->back_head;
	l->back_head = l->back_tail = NULL;
	l->back_bytes = 0;
	pthread_mutex_unlock(&l->back_mu);
	while (head) {
		struct logs_batch *b = head;
		head = b->next;
		size_t pos = 0;
		struct logs_rec r;
		while (logs_batch_next(b, &pos, &r, NULL)) {
			char *json = NULL;
			size_t jlen = 0;
			for (struct logs_tail *t = l->tails, *tn; t; t = tn) {
				tn = t->next;
				if (t->stopped || (t->live && r.seq <= t->hw) || !logs_filter_match(&t->f, &r, &l->match))
					continue;
				if (!json) {
					struct json *o = logs_rec_json(&r, &l->scratch);
					json = json_print(o, false);
					jlen = strlen(json);
					json_free(o);
				}
				if (t->live)
					tail_deliver(t, r.seq, json, jlen);
				else
					tail_buffer(t, r.seq, json, jlen);
			}
			free(json);
			for (size_t k = 0; k < l->n_drains; k++)
				if (logs_drain_wants(l->drains[k], r.app))
					logs_drain_push(l->drains[k], &r);
		}
		logs_batch_free(b);
	}
}

/* ---- queries ---- */

struct hit {
	uint64_t seq;
	struct json *json;
};

struct qjob {
	uv_work_t work;
	struct logs *l;
	struct logs_query q;
	logs_query_cb cb;
	void *ctx;
	struct logs_tail *tail; /* a tail's backlog */
	/* results */
	struct hit *hits;
	size_t n_hits, alloc_hits;
	size_t n_cands;
	uint64_t hw;
	char *err;
	int64_t chunks_total, chunks_bloom, chunks_read, blocks_read, lines_read;
	bool from_dir; /* chunks listed from the directory in memory */
	int64_t took_us;
};

struct bloom_load {
	struct logs *l;
	int64_t id;
	bool ok;
};

static int bloom_loaded(void *ctx, const struct store_logs_chunk *c)
{
	struct bloom_load *bl = ctx;
	if (c->bloom_len % 32 == 0 && c->bloom_len) {
		pthread_mutex_lock(&bl->l->cache_mu);
		cache_insert(bl->l, bl->id, c->bloom, (uint32_t)(c->bloom_len / 32));
		pthread_mutex_unlock(&bl->l->cache_mu);
		bl->ok = true;
	}
	return 0;
}

/* Whether chunk id may hold a match, by its bloom filter. */
static bool bloom_pass(struct qjob *j, struct store_logs *rd, int64_t id, const uint64_t *attrs,
		       size_t n_attrs)
{
	struct logs *l = j->l;
	const struct logs_filter *f = &j->q.filter;
	if (!n_attrs && !f->q)
		return true;
	for (int attempt = 0; attempt < 2; attempt++) {
		pthread_mutex_lock(&l->cache_mu);
		struct bloom_entry *e = cache_find(l, id);
		if (e) {
			lru_unlink(e);
			lru_push(l, e);
			l->cache_hits++;
			bool pass = true;
			for (size_t k = 0; k < n_attrs && pass; k++)
				pass = logs_bloom_test(e->words, e->nblocks, attrs[k]);
			if (pass && f->q)
				pass = logs_node_may_match(f->q, e->words, e->nblocks);
			pthread_mutex_unlock(&l->cache_mu);
			return pass;
		}
		l->cache_misses++;
		pthread_mutex_unlock(&l->cache_mu);
		struct bloom_load bl = {l, id, false};
		if (store_logs_chunk_get(rd, id, STORE_LOGS_BLOOM, bloom_loaded, &bl) < 0 || !bl.ok)
			return true; /* read it to be sure */
	}
	return true; /* evicted at once (a tiny cache): read it */
}

static int hit_cmp_desc(const void *a, const void *b)
{
	uint64_t x = ((const struct hit *)a)->seq, y = ((const struct hit *)b)->seq;
	return x < y ? 1 : x > y ? -1 : 0;
}

static int hit_cmp_asc(const void *a, const void *b)
{
	return -hit_cmp_desc(a, b);
}

/* Keeps the best `limit` hits (newest or oldest). */
static void hits_trim(struct qjob *j)
{
	size_t limit = (size_t)j->q.limit;
	if (j->n_hits == 0)
		return;
	qsort(j->hits, j->n_hits, sizeof(*j->hits), j->q.ascending ? hit_cmp_asc : hit_cmp_desc);
	for (size_t k = limit; k < j->n_hits; k++)
		json_free(j->hits[k].json);
	if (j->n_hits > limit)
		j->n_hits = limit;
}

/* The per-query state the chunk listing's callback works with. */
struct qrun {
	struct qjob *j;
	struct store_logs *rd;
	uint64_t attrs[3];
	size_t n_attrs;
	struct logs_blocks bl;
	struct logs_view v;
	struct logs_match_ctx m;
	struct logs_parsed p;
	struct strbuf raw; /* parts of a stored body */
};

/* Whether a block may hold a match, by its own filter. */
static bool block_pass(const struct qrun *qr, const struct logs_block *b)
{
	if (!b->nblocks)
		return true;
	const uint32_t *w = qr->bl.words + b->words;
	for (size_t k = 0; k < qr->n_attrs; k++)
		if (!logs_bloom_test(w, b->nblocks, qr->attrs[k]))
			return false;
	return !qr->j->q.filter.q || logs_node_may_match(qr->j->q.filter.q, w, b->nblocks);
}

/* Reads chunk c's block table and filters, then the blocks that pass
 * their filters, each decoded and matched, newest first (or oldest
 * first): only those parts of the stored body are read. `limit` matches
 * in the chunk end it, as its lines come in order. */
static void read_chunk(struct qrun *qr, const struct store_logs_chunk *c)
{
	struct qjob *j = qr->j;
	const struct logs_filter *f = &j->q.filter;
	size_t limit = (size_t)j->q.limit;
	size_t size, need, have = 0;
	if (store_logs_data_open(qr->rd, c->id, &size) < 0)
		return; /* gone (retention) since the listing */
	int r = -EAGAIN;
	need = size < LOGS_BLOCKS_HEAD ? size : LOGS_BLOCKS_HEAD;
	while (r == -EAGAIN) {
		strbuf_reset(&qr->raw);
		strbuf_grow(&qr->raw, need);
		if (store_logs_data_read(qr->rd, qr->raw.buf, need, 0) < 0)
			return;
		have = need;
		r = logs_blocks_head(&qr->bl, qr->raw.buf, have, size, &need);
	}
	if (r < 0 || store_logs_data_read(qr->rd, qr->bl.words, qr->bl.n_words * 4, qr->bl.words_off) < 0)
		return;
	j->chunks_read++;
	size_t here = 0;
	for (size_t bi = 0; bi < qr->bl.n && here < limit; bi++) {
		const struct logs_block *b = &qr->bl.b[j->q.ascending ? bi : qr->bl.n - 1 - bi];
		if (!block_pass(qr, b))
			continue;
		strbuf_reset(&qr->raw);
		strbuf_grow(&qr->raw, b->len);
		if (store_logs_data_read(qr->rd, qr->raw.buf, b->len, b->off) < 0 ||
		    logs_view_decode(&qr->v, qr->raw.buf, b->len) < 0)
			continue;
		j->blocks_read++;
		j->lines_read += (int64_t)qr->v.n;
		for (size_t i = 0; i < qr->v.n && here < limit; i++) {
			size_t idx = j->q.ascending ? i : qr->v.n - 1 - i;
			struct logs_rec rec;
			logs_view_get(&qr->v, idx, c->app, &rec);
			if (!logs_filter_match(f, &rec, &qr->m))
				continue;
			j->hits = xgrow(j->hits, sizeof(*j->hits), j->n_hits + 1, &j->alloc_hits);
			j->hits[j->n_hits++] = (struct hit){rec.seq, logs_rec_json(&rec, &qr->p)};
			here++;
		}
	}
}

/* One chunk of the listing (newest first, or oldest first): skipped by
 * metadata or bloom filter, else its blocks are read. Returns 1 once no
 * later chunk can improve the result. */
static int query_chunk(void *ctx, const struct store_logs_chunk *c)
{
	struct qrun *qr = ctx;
	struct qjob *j = qr->j;
	const struct logs_filter *f = &j->q.filter;
	size_t limit = (size_t)j->q.limit;
	j->chunks_total++;
	if (j->n_hits >= limit) {
		/* Sorted after every chunk: the worst kept hit is the last. */
		uint64_t worst = j->hits[j->n_hits - 1].seq;
		if ((!j->q.ascending && c->seq_max < worst) || (j->q.ascending && c->seq_min > worst))
			return 1;
	}
	if (!logs_filter_chunk(f, c->app, c->seq_min, c->seq_max, c->t_min, c->t_max, c->levels, c->streams))
		return 0;
	j->n_cands++;
	if (!bloom_pass(j, qr->rd, c->id, qr->attrs, qr->n_attrs))
		return 0;
	j->chunks_bloom++;
	read_chunk(qr, c);
	if (j->n_hits >= limit)
		hits_trim(j);
	return 0;
}

/* Lists the chunks from the directory d (the read snapshot's own), like
 * store_logs_chunks_each: of one_app (NULL: all), newest first or oldest
 * first. */
static void query_dir(struct qrun *qr, const struct logs_dir *d, const char *one_app)
{
	uint32_t app = UINT32_MAX;
	if (one_app) {
		for (size_t k = 0; k < d->n_names && app == UINT32_MAX; k++)
			if (strcmp(d->names[k], one_app) == 0)
				app = (uint32_t)k;
		if (app == UINT32_MAX)
			return;
	}
	bool asc = qr->j->q.ascending;
	for (size_t k = 0; k < d->n; k++) {
		const struct logs_dent *e = asc ? &d->by_max[d->by_min[k]] : &d->by_max[d->n - 1 - k];
		if (one_app && e->app != app)
			continue;
		struct store_logs_chunk c = {
			.id = e->id, .app = d->names[e->app], .sealed = e->sealed, .seq_min = e->seq_min,
			.seq_max = e->seq_max, .t_min = e->t_min, .t_max = e->t_max, .n_lines = e->n_lines,
			.raw_bytes = e->raw_bytes, .bytes = e->bytes, .levels = e->levels, .streams = e->streams,
		};
		if (query_chunk(qr, &c))
			break;
	}
}

static void query_work(uv_work_t *w)
{
	struct qjob *j = w->data;
	struct logs *l = j->l;
	int64_t t0 = mono_ns();
	struct store_logs *rd = reader_get(l, &j->err);
	if (!rd)
		return;
	struct logs_filter *f = &j->q.filter;
	if (store_logs_begin(rd) < 0) {
		j->err = xstrdup("cannot read the logs database");
		reader_put(l, rd);
		return;
	}
	int64_t next = 0;
	if (store_logs_meta_get(rd, "next_seq", &next) == 0 && next > 0)
		j->hw = (uint64_t)next - 1;
	struct qrun qr = {.j = j, .rd = rd};
	char rel[16];
	if (f->process)
		qr.attrs[qr.n_attrs++] = logs_hash_attr('p', f->process, strlen(f->process));
	if (f->instance)
		qr.attrs[qr.n_attrs++] = logs_hash_attr('i', f->instance, strlen(f->instance));
	if (f->release) {
		int rl = snprintf(rel, sizeof(rel), "%d", f->release);
		qr.attrs[qr.n_attrs++] = logs_hash_attr('r', rel, (size_t)rl);
	}
	logs_blocks_init(&qr.bl);
	strbuf_init(&qr.raw, LOGS_BLOCKS_HEAD);
	logs_view_init(&qr.v);
	logs_match_ctx_init(&qr.m);
	logs_parsed_init(&qr.p);
	const char *one_app = f->apps && f->n_apps == 1 ? f->apps[0] : NULL;
	int64_t gen = 0;
	store_logs_meta_get(rd, "commit_gen", &gen);
	struct logs_dir *d = dir_get(l);
	if (!f->apps || f->n_apps > 0) {
		j->from_dir = d && d->gen == (uint64_t)gen;
		if (j->from_dir)
			query_dir(&qr, d, one_app);
		else
			store_logs_chunks_each(rd, one_app, -1, !j->q.ascending, query_chunk, &qr);
	}
	logs_dir_put(d);
	hits_trim(j);
	store_logs_data_close(rd);
	logs_blocks_release(&qr.bl);
	strbuf_release(&qr.raw);
	logs_view_release(&qr.v);
	logs_match_ctx_release(&qr.m);
	logs_parsed_release(&qr.p);
	store_logs_rollback(rd);
	reader_put(l, rd);
	j->took_us = (mono_ns() - t0) / 1000;
}

static void qjob_free(struct qjob *j)
{
	for (size_t k = 0; k < j->n_hits; k++)
		json_free(j->hits[k].json);
	free(j->hits);
	logs_filter_release(&j->q.filter);
	free(j->err);
	free(j);
}

static void tail_free(struct logs_tail *t);
static void tail_backlog_done(struct qjob *j);

static void query_done(uv_work_t *w, int status)
{
	struct qjob *j = w->data;
	j->l->queries_running--;
	if (j->tail) {
		tail_backlog_done(j);
		j->q.filter.q = NULL; /* the tail's */
		qjob_free(j);
		return;
	}
	if (j->err || status < 0) {
		j->cb(j->ctx, NULL, j->err ? j->err : "the query was cancelled");
		qjob_free(j);
		return;
	}
	struct json *out = json_object();
	struct json *arr = json_set(out, "lines", json_array());
	for (size_t k = 0; k < j->n_hits; k++) {
		json_append(arr, j->hits[k].json);
		j->hits[k].json = NULL;
	}
	if (j->n_hits == (size_t)j->q.limit) {
		char cur[32];
		snprintf(cur, sizeof(cur), "%" PRIu64, j->hits[j->n_hits - 1].seq);
		json_set_str(out, "cursor", cur);
	} else {
		json_set_str(out, "cursor", NULL);
	}
	json_set_str(out, "order", j->q.ascending ? "asc" : "desc");
	struct json *st = json_set(out, "stats", json_object());
	json_set_str(st, "chunk_list", j->from_dir ? "memory" : "database");
	json_set_int(st, "chunks", j->chunks_total);
	json_set_int(st, "chunks_candidates", (int64_t)j->n_cands);
	json_set_int(st, "chunks_after_bloom", j->chunks_bloom);
	json_set_int(st, "chunks_read", j->chunks_read);
	json_set_int(st, "blocks_read", j->blocks_read);
	json_set_int(st, "lines_read", j->lines_read);
	json_set_num(st, "took_ms", (double)j->took_us / 1000.0);
	j->cb(j->ctx, out, NULL);
	qjob_free(j);
}

static void job_start(struct logs *l, struct qjob *j)
{
	j->l = l;
	j->work.data = j;
	l->queries_running++;
	l->queries++;
	uv_queue_work(l->loop, &j->work, query_work, query_done);
}

void logs_query_start(struct logs *l, struct logs_query *q, logs_query_cb cb, void *ctx)
{
	struct qjob *j = xcalloc(1, sizeof(*j));
	j->q = *q;
	memset(q, 0, sizeof(*q));
	if (j->q.limit < 1)
		j->q.limit = 1;
	if (j->q.limit > QUERY_MAX_LIMIT)
		j->q.limit = QUERY_MAX_LIMIT;
	j->cb = cb;
	j->ctx = ctx;
	job_start(l, j);
}

int logs_cursor_parse(const char *s, uint64_t *seq)
{
	int64_t v;
	if (str_to_i64(s, &v) < 0 || v < 1)
		return -EINVAL;
	*seq = (uint64_t)v;
	return 0;
}

/* ---- tails ---- */

static void tail_unlink(struct logs_tail *t)
{
	struct logs *l = t->l;
	if (t->prev)
		t->prev->next = t->next;
	else if (l->tails == t)
		l->tails = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->next = t->prev = NULL;
	atomic_fetch_sub(&l->consumers, 1);
}

static void tail_free(struct logs_tail *t)
{
	logs_filter_release(&t->f);
	for (size_t k = 0; k < t->n_buf; k++)
		free(t->buf[k]);
	free(t->buf);
	free(t->buf_len);
	free(t->buf_seq);
	free(t);
}

static void tail_backlog_done(struct qjob *j)
{
	struct logs_tail *t = j->tail;
	t->job = false;
	if (t->stopped) {
		tail_free(t);
		return;
	}
	t->hw = j->hw;
	/* The backlog, oldest first. */
	for (size_t k = j->n_hits; k-- > 0;) {
		char *s = json_print(j->hits[k].json, false);
		tail_deliver(t, j->hits[k].seq, s, strlen(s));
		free(s);
	}
	t->live = true;
	for (size_t k = 0; k < t->n_buf; k++) {
		if (t->buf_seq[k] > t->hw)
			tail_deliver(t, t->buf_seq[k], t->buf[k], t->buf_len[k]);
		free(t->buf[k]);
	}
	t->n_buf = 0;
	t->skipped += t->overflow;
	t->overflow = 0;
}

struct logs_tail *logs_tail_start(struct logs *l, struct logs_filter *f, int backlog,
				  logs_tail_line_cb cb, void *ctx)
{
	struct logs_tail *t = xcalloc(1, sizeof(*t));
	t->l = l;
	t->f = *f;
	memset(f, 0, sizeof(*f));
	t->cb = cb;
	t->ctx = ctx;
	t->next = l->tails;
	if (l->tails)
		l->tails->prev = t;
	l->tails = t;
	atomic_fetch_add(&l->consumers, 1);
	if (backlog <= 0) {
		t->hw = atomic_load(&l->committed_seq);
		t->live = true;
		return t;
	}
	struct qjob *j = xcalloc(1, sizeof(*j));
	j->tail = t;
	t->job = true;
	/* The backlog: same filter, its own copy. */
	struct logs_filter *qf = &j->q.filter;
	logs_filter_init(qf);
	if (t->f.apps) {
		qf->apps = xcalloc(t->f.n_apps ? t->f.n_apps : 1, sizeof(*qf->apps));
		for (size_t k = 0; k < t->f.n_apps; k++)
			qf->apps[k] = xstrdup(t->f.apps[k]);
		qf->n_apps = t->f.n_apps;
	}
	qf->process = t->f.process ? xstrdup(t->f.process) : NULL;
	qf->instance = t->f.instance ? xstrdup(t->f.instance) : NULL;
	qf->release = t->f.release;
	qf->streams = t->f.streams;
	qf->min_level = t->f.min_level;
	qf->since_ns = t->f.since_ns;
	qf->until_ns = t->f.until_ns;
	qf->q = t->f.q; /* shared, read-only; the tail outlives the job (see stop) */
	j->q.limit = backlog > QUERY_MAX_LIMIT ? QUERY_MAX_LIMIT : backlog;
	job_start(l, j);
	return t;
}

void logs_tail_stop(struct logs_tail *t)
{
	if (!t)
		return;
	tail_unlink(t);
	t->stopped = true;
	if (!t->job)
		tail_free(t);
	/* else freed when its backlog job ends (tail_backlog_done). */
}

/* ---- drains ---- */

static void drain_attach(struct logs *l, struct logs_drain *d)
{
	l->drains = xgrow(l->drains, sizeof(*l->drains), l->n_drains + 1, &l->alloc_drains);
	l->drains[l->n_drains++] = d;
	atomic_fetch_add(&l->consumers, 1);
}

static void drain_loaded(void *ctx, int64_t id, const char *app, const char *url)
{
	struct logs *l = ctx;
	char *err = NULL;
	struct logs_drain *d = logs_drain_new(l->loop, url, app, id, &err);
	if (!d) {
		char *shown = logs_drain_url_shown(url);
		log_warn("logs: drain %lld of '%s' (%s) is not usable: %s", (long long)id, app, shown, err);
		free(shown);
		free(err);
		return;
	}
	drain_attach(l, d);
}

int logs_drain_add(struct logs *l, const char *app, const char *url, struct json **out, char **err)
{
	struct logs_drain *probe = logs_drain_new(NULL, url, app, 0, err);
	if (!probe)
		return -EINVAL;
	logs_drain_free(probe);
	/* A second drain to the same place would deliver every line twice. */
	for (size_t k = 0; k < l->n_drains; k++) {
		const struct logs_drain *o = l->drains[k];
		const char *oa = logs_drain_app(o);
		if (strcmp(logs_drain_url(o), url) != 0 || (oa && strcmp(oa, app) != 0))
			continue;
		char *shown = logs_drain_url_shown(url);
		if (oa)
			*err = xasprintf("app '%s' already has a drain to %s (drain %lld)", app, shown,
					 (long long)logs_drain_id(o));
		else
			*err = xasprintf("the drain of every app to %s (--log-drain) already sends app "
					 "'%s' its lines",
					 shown, app);
		free(shown);
		return -EEXIST;
	}
	int64_t id;
	if (store_logs_drain_add(l->ctl, app, url, time_wall_ms(), &id) < 0) {
		*err = xstrdup("cannot store the drain");
		return -EIO;
	}
	struct logs_drain *d = logs_drain_new(l->loop, url, app, id, err);
	drain_attach(l, d);
	*out = logs_drain_json(d);
	return 0;
}

int logs_drain_remove(struct logs *l, const char *app, int64_t id)
{
	int r = store_logs_drain_delete(l->ctl, app, id);
	if (r < 0)
		return r;
	for (size_t k = 0; k < l->n_drains; k++) {
		if (logs_drain_id(l->drains[k]) == id) {
			logs_drain_free(l->drains[k]);
			memmove(&l->drains[k], &l->drains[k + 1], (l->n_drains - k - 1) * sizeof(*l->drains));
			l->n_drains--;
			atomic_fetch_sub(&l->consumers, 1);
			break;
		}
	}
	return 0;
}

struct json *logs_drains_json(struct logs *l, const char *app)
{
	struct json *out = json_object();
	struct json *arr = json_set(out, "drains", json_array());
	for (size_t k = 0; k < l->n_drains; k++) {
		struct json *d = logs_drain_json(l->drains[k]);
		const char *da = json_get_str(d, "app");
		if (app && !(da && strcmp(da, app) == 0) && da) {
			json_free(d);
			continue;
		}
		json_append(arr, d);
	}
	return out;
}

/* ---- lifecycle ---- */

struct logs *logs_new(const struct logs_config *cfg, char **err)
{
	struct logs *l = xcalloc(1, sizeof(*l));
	l->cfg = *cfg;
	l->loop = cfg->loop;
	l->db_path = xasprintf("%s/logs.db", cfg->data_dir);
	pthread_mutex_init(&l->back_mu, NULL);
	pthread_mutex_init(&l->cache_mu, NULL);
	pthread_mutex_init(&l->readers_mu, NULL);
	pthread_mutex_init(&l->dir_mu, NULL);
	l->lru.lru_next = l->lru.lru_prev = &l->lru;
	l->cache_buckets = 1024;
	l->cache = xcalloc(l->cache_buckets, sizeof(*l->cache));
	l->n_buckets = 256;
	l->srcs = xcalloc(l->n_buckets, sizeof(*l->srcs));
	logs_parsed_init(&l->scratch);
	logs_match_ctx_init(&l->match);
	struct logs_writer_config wc = {
		.logs = l, .path = l->db_path, .flush_ms = cfg->flush_ms, .retention_ms = cfg->retention_ms,
		.max_bytes = cfg->max_bytes, .app_max_bytes = cfg->app_max_bytes,
		.min_free_pct = cfg->min_free_pct, .zlevel = 1, .chunk_bytes = (uint64_t)cfg->chunk_bytes,
		.chunk_age_ms = 10 * 60 * 1000,
	};
	*err = NULL;
	l->writer = logs_writer_start(&wc, &l->next_seq, &l->last_t_ns, err);
	if (!l->writer) {
		logs_free(l);
		return NULL;
	}
	atomic_store(&l->committed_seq, l->next_seq - 1);
	l->ctl = store_logs_open(l->db_path, false, err);
	if (!l->ctl) {
		logs_writer_stop(l->writer);
		l->writer = NULL;
		logs_free(l);
		return NULL;
	}
	uv_async_init(l->loop, &l->back_async, on_back);
	l->back_async.data = l;
	uv_timer_init(l->loop, &l->handoff);
	l->handoff.data = l;
	uv_timer_init(l->loop, &l->markers);
	l->markers.data = l;
	uv_timer_start(&l->markers, on_markers, MARKER_MS, MARKER_MS);
	uv_unref((uv_handle_t *)&l->markers);
	for (size_t k = 0; k < cfg->n_drains; k++) {
		struct logs_drain *d = logs_drain_new(l->loop, cfg->drains[k], NULL, -(int64_t)(k + 1), err);
		if (d)
			drain_attach(l, d);
		else
			free(*err);
		*err = NULL;
	}
	store_logs_drains_each(l->ctl, drain_loaded, l);
	return l;
}

void logs_stop(struct logs *l)
{
	if (!l || l->stopped)
		return;
	handoff(l);
	l->stopped = true;
	logs_writer_stop(l->writer);
	l->writer = NULL;
	on_back(&l->back_async); /* the last committed lines to drains */
	uv_close((uv_handle_t *)&l->back_async, NULL);
	uv_close((uv_handle_t *)&l->handoff, NULL);
	uv_close((uv_handle_t *)&l->markers, NULL);
	for (size_t k = 0; k < l->n_drains; k++)
		logs_drain_free(l->drains[k]);
	l->n_drains = 0;
	/* Tails belong to their subscribers (API streams), which stop them. */
}

void logs_free(struct logs *l)
{
	if (!l)
		return;
	if (l->writer)
		logs_writer_stop(l->writer);
	logs_batch_free(l->cur);
	for (size_t b = 0; b < l->n_buckets; b++) {
		for (struct src *s = l->srcs[b], *n; s; s = n) {
			n = s->next;
			src_free(s);
		}
	}
	free(l->srcs);
	while (l->lru.lru_next != &l->lru)
		cache_remove(l, l->lru.lru_next);
	free(l->cache);
	for (size_t k = 0; k < l->n_readers; k++)
		store_logs_close(l->readers[k]);
	store_logs_close(l->ctl);
	while (l->back_head) {
		struct logs_batch *n = l->back_head->next;
		logs_batch_free(l->back_head);
		l->back_head = n;
	}
	free(l->drains);
	while (l->tails) {
		struct logs_tail *t = l->tails;
		tail_unlink(t);
		if (!t->job)
			tail_free(t);
	}
	logs_parsed_release(&l->scratch);
	logs_match_ctx_release(&l->match);
	pthread_mutex_destroy(&l->back_mu);
	pthread_mutex_destroy(&l->cache_mu);
	pthread_mutex_destroy(&l->readers_mu);
	logs_dir_put(l->dir);
	pthread_mutex_destroy(&l->dir_mu);
	free(l->db_path);
	free(l);
}

void logs_sync(struct logs *l, bool retention)
{
	if (!l || !l->writer)
		return;
	handoff(l);
	logs_writer_sync(l->writer, retention);
}

void logs_attach_metrics(struct logs *l, struct metrics_registry *reg)
{
	static const char *const drop_labels[] = {"app", "instance", "reason"};
	static const char *const drain_labels[] = {"drain", "result"};
	l->m_lines = metrics_family_add(reg, "paasops_log_lines_total", "Log lines taken in (after rate limits)",
					METRICS_COUNTER, NULL, 0, NULL, 0, false);
	l->m_dropped = metrics_family_add(reg, "paasops_log_lines_dropped_total",
					  "Log lines dropped: over an instance's rate, or the writer queue full",
					  METRICS_COUNTER, drop_labels, 3, NULL, 0, false);
	l->m_bytes = metrics_family_add(reg, "paasops_log_stored_bytes", "Bytes of stored log chunks",
					METRICS_GAUGE, NULL, 0, NULL, 0, false);
	l->m_stored = metrics_family_add(reg, "paasops_log_stored_lines", "Log lines in storage",
					 METRICS_GAUGE, NULL, 0, NULL, 0, false);
	l->m_disk = metrics_family_add(reg, "paasops_log_disk_bytes", "Size of logs.db and its WAL",
				       METRICS_GAUGE, NULL, 0, NULL, 0, false);
	l->m_drain = metrics_family_add(reg, "paasops_log_drain_lines_total",
					"Lines per drain: sent, failed (attempts), dropped (queue full)",
					METRICS_COUNTER, drain_labels, 2, NULL, 0, false);
	metrics_update(l);
}

static void metrics_set_one(struct metrics_family *f, const char *const *labels, double v)
{
	if (f)
		metrics_set(metrics_series_get(f, labels), v);
}

/* Adds what s dropped since the last call to
 * paasops_log_lines_dropped_total. The series are added to, not set: an
 * app's sources other than its instances' (router, build, run output)
 * share instance "", and a source forgotten when idle leaves its count. */
static void src_metrics(struct logs *l, struct src *s)
{
	static const char *const reasons[] = {"rate_limit", "queue_full"};
	uint64_t *n[][2] = {{&s->dropped_rate, &s->shown_rate}, {&s->dropped_queue, &s->shown_queue}};
	if (!l->m_dropped)
		return;
	for (size_t k = 0; k < ARRAY_SIZE(reasons); k++) {
		if (*n[k][0] == *n[k][1])
			continue;
		const char *labels[] = {s->app, s->instance ? s->instance : "", reasons[k]};
		metrics_add(metrics_series_get(l->m_dropped, labels), (double)(*n[k][0] - *n[k][1]));
		*n[k][1] = *n[k][0];
	}
}

static void metrics_update(struct logs *l)
{
	if (!l->m_lines)
		return;
	metrics_set_one(l->m_lines, NULL, (double)l->lines_in);
	for (size_t b = 0; b < l->n_buckets; b++)
		for (struct src *s = l->srcs[b]; s; s = s->next)
			src_metrics(l, s);
	if (l->writer) {
		struct json *w = json_object();
		logs_writer_stats(l->writer, w);
		int64_t v = 0;
		if (json_get_int(json_get(w, "stored_bytes"), &v) == 0)
			metrics_set_one(l->m_bytes, NULL, (double)v);
		if (json_get_int(json_get(w, "stored_lines"), &v) == 0)
			metrics_set_one(l->m_stored, NULL, (double)v);
		if (json_get_int(json_get(w, "disk_bytes"), &v) == 0)
			metrics_set_one(l->m_disk, NULL, (double)v);
		json_free(w);
	}
	for (size_t k = 0; k < l->n_drains; k++) {
		struct json *d = logs_drain_json(l->drains[k]);
		char id[24];
		int64_t v = 0;
		snprintf(id, sizeof(id), "%lld", (long long)logs_drain_id(l->drains[k]));
		static const char *const results[] = {"sent", "failed", "dropped"};
		for (size_t r = 0; r < ARRAY_SIZE(results); r++) {
			const char *labels[] = {id, results[r]};
			if (json_get_int(json_get(d, results[r]), &v) == 0)
				metrics_set_one(l->m_drain, labels, (double)v);
		}
		json_free(d);
	}
}

int logs_min_free_pct(const struct logs *l)
{
	return l->cfg.min_free_pct;
}

struct json *logs_stats_json(struct logs *l)
{
	struct json *o = json_object();
	json_set_int(o, "lines_in", (int64_t)l->lines_in);
	json_set_int(o, "bytes_in", (int64_t)l->bytes_in);
	json_set_int(o, "dropped_rate_limit", (int64_t)l->dropped_rate);
	json_set_int(o, "dropped_queue_full", (int64_t)l->dropped_queue);
	json_set_int(o, "dropped_tail_backlog", (int64_t)l->back_dropped);
	json_set_int(o, "markers", (int64_t)l->markers_written);
	json_set_num(o, "rate_limit", l->cfg.rate);
	json_set_num(o, "rate_burst", l->cfg.burst);
	if (l->writer)
		logs_writer_stats(l->writer, o);
	json_set_int(o, "max_bytes", l->cfg.max_bytes);
	json_set_int(o, "app_max_bytes", l->cfg.app_max_bytes);
	json_set_int(o, "retention_seconds", l->cfg.retention_ms / 1000);
	pthread_mutex_lock(&l->cache_mu);
	json_set_int(o, "index_cache_bytes", l->cache_bytes);
	json_set_int(o, "index_cache_hits", (int64_t)l->cache_hits);
	json_set_int(o, "index_cache_misses", (int64_t)l->cache_misses);
	pthread_mutex_unlock(&l->cache_mu);
	json_set_int(o, "queries", (int64_t)l->queries);
	int tails = 0;
	for (struct logs_tail *t = l->tails; t; t = t->next)
		tails++;
	json_set_int(o, "tails", tails);
	struct json *srcs = json_set(o, "sources_dropping", json_array());
	for (size_t b = 0; b < l->n_buckets; b++) {
		for (struct src *s = l->srcs[b]; s; s = s->next) {
			if (!s->dropped_rate && !s->dropped_queue)
				continue;
			struct json *so = json_append(srcs, json_object());
			json_set_str(so, "app", s->app);
			json_set_str(so, "instance", s->instance);
			json_set_str(so, "stream", s->key[0] == 'r' ? "router" : s->key[0] == 'b' ? "build"
						  : s->key[0] == 'u' ? "run" : "output");
			json_set_int(so, "lines", (int64_t)s->lines);
			json_set_int(so, "dropped", (int64_t)(s->dropped_rate + s->dropped_queue));
		}
	}
	struct json *dr = logs_drains_json(l, NULL);
	json_set(o, "drains", json_dup(json_get(dr, "drains")));
	json_free(dr);
	return o;
}
