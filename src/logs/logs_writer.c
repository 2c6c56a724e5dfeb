/* logs_writer.c: the writer thread. It takes batches of lines from the
 * loop, recognises each line's level and fields, and appends it to its
 * app's open chunk. Every flush interval it writes what is new in each open
 * chunk as a small ("open") chunk and commits, so a crash loses at most one
 * interval; an open chunk that reaches the seal size (or age) is written
 * whole as a sealed chunk that replaces its small ones in the same
 * transaction. After each commit the batches go back to the loop for tails
 * and drains. Retention runs here too: by age, per-app size, total size
 * and free disk, always deleting whole chunks, then giving the pages back
 * to the file system.
 *
 * Only this thread writes chunks; queries read snapshots through their own
 * connections, so a seal (insert + deletes in one transaction) is atomic
 * for them. */
#include "compat/gzip.h"
#include "core/log.h"
#include "core/util.h"
#include "compat/json.h"
#include "logs/logs_internal.h"
#include "store/store_logs.h"
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#define WRITER_QUEUE_MAX (64u << 20)   /* bytes of batches waiting */
#define WRITER_OPEN_MAX (64u << 20)    /* bytes of open chunks, all apps */
#define WRITER_RETENTION_MS 1000       /* how often retention runs at least */

struct wapp {
	char *name;
	uint32_t idx;           /* in logs_writer.apps */
	struct logs_builder open;
	size_t flushed;         /* open.recs[0, flushed) are in small chunks */
	size_t flushed_committed; /* ... of which committed */
	int64_t *small;         /* ids of those small chunks */
	size_t n_small, alloc_small;
	int64_t opened_mono;    /* when the open chunk got its first line */
	int64_t bytes, chunks, lines; /* on disk */
};

struct pending_bloom {
	int64_t id;
	uint32_t nblocks;
	uint32_t *words; /* owned */
};

struct logs_writer {
	struct logs_writer_config cfg;
	struct logs *logs;
	struct store_logs *db;
	char *data_dir;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond, done_cond;
	struct logs_batch *q_head, *q_tail;
	size_t q_bytes;
	bool stop;
	uint64_t sync_asked, sync_done; /* generations */
	bool retention_asked;

	/* Writer thread only. */
	struct wapp **apps;
	size_t n_apps, alloc_apps;
	struct logs_parsed parsed;
	struct gzip_deflater *z;
	struct logs_batch *done_head, *done_tail; /* written, not yet committed */
	struct pending_bloom *blooms;
	size_t n_blooms, alloc_blooms;
	int64_t *forget;
	size_t n_forget, alloc_forget;
	bool in_txn;
	uint64_t high_seq;
	int64_t high_t;
	int64_t next_flush, next_retention;
	uint64_t open_bytes;
	/* Every chunk in the database as of the transaction, by id (ids only
	 * grow, so appending keeps the order); published as a logs_dir. */
	struct logs_dent *dents;
	size_t n_dents, alloc_dents, n_dead;
	bool dents_dirty;  /* chunks added or removed since the last commit */
	bool dents_stale;  /* a commit failed: read the list again after the next */
	uint64_t gen;      /* commits that added or removed chunks */

	/* Counters, read by any thread. */
	_Atomic uint64_t lines, bytes_in, chunks_written, chunks_sealed, chunks_removed,
		bytes_removed, commits, errors, dropped_disk;
	_Atomic int64_t total_bytes, disk_bytes, total_lines, total_chunks;
	_Atomic uint64_t queue_bytes;
	_Atomic int64_t flush_ms_max;
	_Atomic int64_t took_mono; /* when batches were last taken */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct wapp *wapp_get(struct logs_writer *w, const char *name)
{
	for (size_t k = 0; k < w->n_apps; k++)
		if (strcmp(w->apps[k]->name, name) == 0)
			return w->apps[k];
	struct wapp *a = xcalloc(1, sizeof(*a));
	a->name = xstrdup(name);
	a->idx = (uint32_t)w->n_apps;
	logs_builder_init(&a->open);
	w->apps = xgrow(w->apps, sizeof(*w->apps), w->n_apps + 1, &w->alloc_apps);
	w->apps[w->n_apps++] = a;
	return a;
}

static void wapp_free(struct wapp *a)
{
	logs_builder_release(&a->open);
	free(a->small);
	free(a->name);
	free(a);
}

/* ---- the chunk directory ---- */

static void dent_add(struct logs_writer *w, uint32_t app, const struct store_logs_chunk *c, int64_t id)
{
	w->dents = xgrow(w->dents, sizeof(*w->dents), w->n_dents + 1, &w->alloc_dents);
	w->dents[w->n_dents++] = (struct logs_dent){
		.id = id, .seq_min = c->seq_min, .seq_max = c->seq_max, .t_min = c->t_min, .t_max = c->t_max,
		.raw_bytes = c->raw_bytes, .bytes = c->bytes, .n_lines = c->n_lines, .levels = c->levels,
		.streams = c->streams, .app = app, .sealed = c->sealed,
	};
	w->dents_dirty = true;
}

static void dent_remove(struct logs_writer *w, int64_t id)
{
	size_t lo = 0, hi = w->n_dents;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->dents[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < w->n_dents && w->dents[lo].id == id && !w->dents[lo].dead) {
		w->dents[lo].dead = true;
		w->n_dead++;
		w->dents_dirty = true;
	}
}

static int dent_loaded(void *ctx, const struct store_logs_chunk *c)
{
	struct logs_writer *w = ctx;
	dent_add(w, wapp_get(w, c->app)->idx, c, c->id);
	return 0;
}

static int dent_cmp_id(const void *a, const void *b)
{
	const struct logs_dent *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

/* The list as the database has it: at start-up, and after the commit that
 * follows a failed one. */
static int dents_load(struct logs_writer *w)
{
	w->n_dents = w->n_dead = 0;
	int r = store_logs_chunks_each(w->db, NULL, -1, false, dent_loaded, w);
	if (w->n_dents)
		qsort(w->dents, w->n_dents, sizeof(*w->dents), dent_cmp_id);
	w->dents_stale = r < 0;
	return r;
}

/* Publishes the list as of the commit that made it gen. */
static void dents_publish(struct logs_writer *w)
{
	if (w->n_dead) {
		size_t kept = 0;
		for (size_t k = 0; k < w->n_dents; k++)
			if (!w->dents[k].dead)
				w->dents[kept++] = w->dents[k];
		w->n_dents = kept;
		w->n_dead = 0;
	}
	struct logs_dir *d = NULL;
	if (!w->dents_stale && w->n_dents <= LOGS_DIR_MAX) {
		char **names = xmalloc((w->n_apps ? w->n_apps : 1) * sizeof(*names));
		for (size_t k = 0; k < w->n_apps; k++)
			names[k] = w->apps[k]->name;
		d = logs_dir_new(w->dents, w->n_dents, names, w->n_apps, w->gen);
		free(names);
	}
	logs__dir_publish(w->logs, d);
	w->dents_dirty = false;
}

static void txn_begin(struct logs_writer *w)
{
	if (w->in_txn)
		return;
	if (store_logs_begin(w->db) == 0)
		w->in_txn = true;
}

/* Writes [from, n) of a's open chunk as one chunk. */
static int write_chunk(struct logs_writer *w, struct wapp *a, size_t from, bool sealed, int64_t *id)
{
	struct logs_chunk c;
	/* The next lines start a new segment: a later small chunk begins there. */
	logs_builder_cut(&a->open);
	logs_chunk_encode(&a->open, from, a->open.n, a->name, w->z, &c);
	struct store_logs_chunk sc = {
		.app = a->name, .sealed = sealed, .seq_min = c.seq_min, .seq_max = c.seq_max,
		.t_min = c.t_min, .t_max = c.t_max, .n_lines = c.n_lines, .raw_bytes = c.raw_bytes,
		.levels = c.levels, .streams = c.streams,
		.bloom = c.bloom.words, .bloom_len = (size_t)c.bloom.nblocks * 32,
		.data = c.data.buf, .data_len = c.data.len,
	};
	sc.bytes = sc.bloom_len + sc.data_len + 128;
	txn_begin(w);
	int r = store_logs_chunk_add(w->db, &sc, id);
	if (r == 0) {
		w->blooms = xgrow(w->blooms, sizeof(*w->blooms), w->n_blooms + 1, &w->alloc_blooms);
		w->blooms[w->n_blooms++] = (struct pending_bloom){*id, c.bloom.nblocks, c.bloom.words};
		c.bloom.words = NULL;
		dent_add(w, a->idx, &sc, *id);
		a->bytes += (int64_t)sc.bytes;
		a->chunks++;
		a->lines += c.n_lines;
		atomic_fetch_add(&w->total_bytes, (int64_t)sc.bytes);
		atomic_fetch_add(&w->total_lines, (int64_t)c.n_lines);
		atomic_fetch_add(&w->total_chunks, 1);
		atomic_fetch_add(&w->chunks_written, 1);
	} else {
		atomic_fetch_add(&w->errors, 1);
	}
	logs_chunk_release(&c);
	return r;
}

static void forget_later(struct logs_writer *w, int64_t id)
{
	w->forget = xgrow(w->forget, sizeof(*w->forget), w->n_forget + 1, &w->alloc_forget);
	w->forget[w->n_forget++] = id;
}

/* Deletes a chunk whose metadata is known; keeps the totals. */
static int delete_chunk(struct logs_writer *w, const char *app, int64_t id, int64_t bytes,
			int64_t lines)
{
	txn_begin(w);
	int r = store_logs_chunk_delete(w->db, id);
	if (r < 0) {
		atomic_fetch_add(&w->errors, 1);
		return r;
	}
	dent_remove(w, id);
	struct wapp *a = wapp_get(w, app);
	a->bytes -= bytes;
	a->chunks--;
	a->lines -= lines;
	atomic_fetch_sub(&w->total_bytes, bytes);
	atomic_fetch_sub(&w->total_lines, lines);
	atomic_fetch_sub(&w->total_chunks, 1);
	forget_later(w, id);
	return 0;
}

/* ---- the small chunks of an open chunk ---- */

struct small_list {
	int64_t *ids, *bytes, *lines;
	size_t n, alloc;
};

static int small_collect(void *ctx, const struct store_logs_chunk *c)
{
	struct small_list *s = ctx;
	size_t a = s->alloc;
	s->ids = xgrow(s->ids, sizeof(*s->ids), s->n + 1, &a);
	size_t b = s->alloc;
	s->bytes = xgrow(s->bytes, sizeof(*s->bytes), s->n + 1, &b);
	size_t l = s->alloc;
	s->lines = xgrow(s->lines, sizeof(*s->lines), s->n + 1, &l);
	s->alloc = a;
	s->ids[s->n] = c->id;
	s->bytes[s->n] = (int64_t)c->bytes;
	s->lines[s->n] = c->n_lines;
	s->n++;
	return 0;
}

/* Seals a's open chunk: one sealed chunk replaces the small ones. */
static void seal_app(struct logs_writer *w, struct wapp *a)
{
	if (a->open.n == 0)
		return;
	struct small_list sl = {0};
	if (a->n_small) {
		txn_begin(w);
		store_logs_chunks_each(w->db, a->name, 0, false, small_collect, &sl);
	}
	int64_t id;
	if (write_chunk(w, a, 0, true, &id) == 0) {
		atomic_fetch_add(&w->chunks_sealed, 1);
		for (size_t k = 0; k < sl.n; k++)
			delete_chunk(w, a->name, sl.ids[k], sl.bytes[k], sl.lines[k]);
	}
	free(sl.ids);
	free(sl.bytes);
	free(sl.lines);
	a->n_small = 0;
	w->open_bytes -= a->open.raw_bytes;
	logs_builder_reset(&a->open);
	a->flushed = a->flushed_committed = 0;
}

/* Writes what is new in a's open chunk as a small chunk. */
static void flush_app(struct logs_writer *w, struct wapp *a)
{
	if (a->flushed == a->open.n)
		return;
	int64_t id;
	if (write_chunk(w, a, a->flushed, false, &id) == 0) {
		a->small = xgrow(a->small, sizeof(*a->small), a->n_small + 1, &a->alloc_small);
		a->small[a->n_small++] = id;
		a->flushed = a->open.n;
	}
}

/* ---- ingest ---- */

static void take_batch(struct logs_writer *w, struct logs_batch *b)
{
	size_t pos = 0;
	struct logs_rec r;
	struct logs_bhdr *h;
	while (logs_batch_next(b, &pos, &r, &h)) {
		logs_parse(&w->parsed, r.text, r.len, r.stream);
		if (!h->level)
			h->level = (uint8_t)w->parsed.level;
		r.level = h->level;
		struct wapp *a = wapp_get(w, r.app);
		if (a->open.n == 0)
			a->opened_mono = mono_ms();
		logs_builder_add(&a->open, &r, &w->parsed);
		w->open_bytes += r.len;
		if (r.seq > w->high_seq)
			w->high_seq = r.seq;
		if (r.t_ns > w->high_t)
			w->high_t = r.t_ns;
		atomic_fetch_add(&w->lines, 1);
		atomic_fetch_add(&w->bytes_in, r.len);
		if (a->open.raw_bytes >= w->cfg.chunk_bytes)
			seal_app(w, a);
	}
	b->next = NULL;
	if (w->done_tail)
		w->done_tail->next = b;
	else
		w->done_head = b;
	w->done_tail = b;
}

/* ---- commit ---- */

static void flush_app(struct logs_writer *w, struct wapp *a);
static void commit(struct logs_writer *w);

/* Commits, after writing every line taken so far (so that the batches
 * handed back hold only lines that are on disk, or dropped for a full
 * disk when drop is set). */
static void commit_all(struct logs_writer *w, bool drop)
{
	for (size_t k = 0; k < w->n_apps; k++) {
		struct wapp *a = w->apps[k];
		if (a->flushed == a->open.n)
			continue;
		if (drop) {
			atomic_fetch_add(&w->dropped_disk, a->open.n - a->flushed);
			w->open_bytes -= logs_builder_truncate(&a->open, a->flushed);
		} else {
			flush_app(w, a);
		}
	}
	commit(w);
}

static void commit(struct logs_writer *w)
{
	txn_begin(w);
	if (w->high_seq) {
		store_logs_meta_set(w->db, "next_seq", (int64_t)w->high_seq + 1);
		store_logs_meta_set(w->db, "last_t_ns", w->high_t);
	}
	bool changed = w->dents_dirty || w->dents_stale;
	if (changed)
		store_logs_meta_set(w->db, "commit_gen", (int64_t)++w->gen);
	int r = w->in_txn ? store_logs_commit(w->db) : -EIO;
	w->in_txn = false;
	if (r < 0) {
		if (changed)
			w->gen--;
		/* The list has this transaction's changes: until it is read again
		 * after a commit, queries list chunks from the database. */
		w->dents_stale = true;
		logs__dir_publish(w->logs, NULL);
		/* Nothing of this transaction is on disk: forget what it wrote.
		 * The lines stay in the open chunks and are written next time. */
		atomic_fetch_add(&w->errors, 1);
		store_logs_rollback(w->db);
		for (size_t k = 0; k < w->n_blooms; k++)
			free(w->blooms[k].words);
		w->n_blooms = 0;
		w->n_forget = 0;
		for (size_t k = 0; k < w->n_apps; k++) {
			struct wapp *a = w->apps[k];
			a->flushed = a->flushed_committed <= a->open.n ? a->flushed_committed : 0;
			a->n_small = a->flushed ? 1 : 0;
		}
		return;
	}
	atomic_fetch_add(&w->commits, 1);
	if (w->dents_stale)
		dents_load(w);
	if (changed)
		dents_publish(w);
	atomic_store(&w->disk_bytes, store_logs_disk_bytes(w->db));
	for (size_t k = 0; k < w->n_apps; k++)
		w->apps[k]->flushed_committed = w->apps[k]->flushed;
	for (size_t k = 0; k < w->n_blooms; k++) {
		logs__bloom_put(w->logs, w->blooms[k].id, w->blooms[k].words, w->blooms[k].nblocks);
		free(w->blooms[k].words);
	}
	w->n_blooms = 0;
	for (size_t k = 0; k < w->n_forget; k++)
		logs__bloom_forget(w->logs, w->forget[k]);
	w->n_forget = 0;
	struct logs_batch *head = w->done_head;
	w->done_head = w->done_tail = NULL;
	logs__committed(w->logs, head, w->high_seq);
}

/* ---- retention ---- */

struct ret_ctx {
	struct logs_writer *w;
	int64_t over; /* bytes still to remove; <= 0: done */
	struct small_list victims;
	char **apps;
};

static int victim_add(void *ctx, const struct store_logs_chunk *c)
{
	struct ret_ctx *rc = ctx;
	if (!c->sealed)
		return 0;
	small_collect(&rc->victims, c);
	rc->apps = xrealloc(rc->apps, rc->victims.n * sizeof(*rc->apps));
	rc->apps[rc->victims.n - 1] = xstrdup(c->app);
	rc->over -= (int64_t)c->bytes;
	return rc->over <= 0;
}

static void victims_delete(struct logs_writer *w, struct ret_ctx *rc)
{
	for (size_t k = 0; k < rc->victims.n; k++) {
		if (delete_chunk(w, rc->apps[k], rc->victims.ids[k], rc->victims.bytes[k],
				 rc->victims.lines[k]) == 0) {
			atomic_fetch_add(&w->chunks_removed, 1);
			atomic_fetch_add(&w->bytes_removed, (uint64_t)rc->victims.bytes[k]);
		}
		free(rc->apps[k]);
	}
	free(rc->apps);
	free(rc->victims.ids);
	free(rc->victims.bytes);
	free(rc->victims.lines);
	memset(rc, 0, sizeof(*rc));
}

static int free_pct(const char *dir)
{
	struct statvfs vs;
	if (statvfs(dir, &vs) < 0 || vs.f_blocks == 0)
		return 100;
	return (int)((vs.f_bavail * 100) / vs.f_blocks);
}

static void retention(struct logs_writer *w)
{
	bool removed = false;
	struct ret_ctx rc = {.w = w};
	txn_begin(w);
	if (w->cfg.retention_ms > 0) {
		int64_t cutoff = wall_ns() - w->cfg.retention_ms * 1000000;
		rc.over = INT64_MAX;
		store_logs_chunks_older(w->db, cutoff, victim_add, &rc);
		removed |= rc.victims.n > 0;
		victims_delete(w, &rc);
		/* An open chunk whose newest line is too old goes whole, with its
		 * small chunks. */
		for (size_t k = 0; k < w->n_apps; k++) {
			struct wapp *a = w->apps[k];
			if (!a->open.n || a->open.recs[a->open.n - 1].t_ns >= cutoff)
				continue;
			struct small_list sl = {0};
			store_logs_chunks_each(w->db, a->name, 0, false, small_collect, &sl);
			for (size_t j = 0; j < sl.n; j++)
				if (delete_chunk(w, a->name, sl.ids[j], sl.bytes[j], sl.lines[j]) == 0)
					atomic_fetch_add(&w->chunks_removed, 1);
			removed |= sl.n > 0;
			free(sl.ids);
			free(sl.bytes);
			free(sl.lines);
			w->open_bytes -= a->open.raw_bytes;
			logs_builder_reset(&a->open);
			a->n_small = 0;
			a->flushed = a->flushed_committed = 0;
		}
	}
	if (w->cfg.app_max_bytes > 0) {
		for (size_t k = 0; k < w->n_apps; k++) {
			struct wapp *a = w->apps[k];
			if (a->bytes <= w->cfg.app_max_bytes)
				continue;
			rc = (struct ret_ctx){.w = w, .over = a->bytes - w->cfg.app_max_bytes};
			store_logs_chunks_oldest(w->db, a->name, victim_add, &rc);
			removed |= rc.victims.n > 0;
			victims_delete(w, &rc);
		}
	}
	int64_t total = atomic_load(&w->total_bytes);
	if (w->cfg.max_bytes > 0 && total > w->cfg.max_bytes) {
		rc = (struct ret_ctx){.w = w, .over = total - w->cfg.max_bytes};
		store_logs_chunks_oldest(w->db, NULL, victim_add, &rc);
		removed |= rc.victims.n > 0;
		victims_delete(w, &rc);
	}
	/* Short of disk: give back a tenth of what the logs hold, repeatedly. */
	for (int round = 0; round < 10 && w->cfg.min_free_pct > 0 &&
			    free_pct(w->data_dir) < w->cfg.min_free_pct; round++) {
		total = atomic_load(&w->total_bytes);
		if (total <= 0)
			break;
		rc = (struct ret_ctx){.w = w, .over = total / 10 + 1};
		store_logs_chunks_oldest(w->db, NULL, victim_add, &rc);
		if (!rc.victims.n) {
			victims_delete(w, &rc);
			break;
		}
		victims_delete(w, &rc);
		commit_all(w, false);
		store_logs_vacuum(w->db);
		removed = false;
	}
	commit_all(w, false);
	if (removed)
		store_logs_vacuum(w->db);
	atomic_store(&w->disk_bytes, store_logs_disk_bytes(w->db));
}

/* ---- the thread ---- */

static void writer_cycle(struct logs_writer *w, struct logs_batch *batches, bool flush_now,
			 bool retain)
{
	while (batches) {
		struct logs_batch *next = batches->next;
		take_batch(w, batches);
		batches = next;
	}
	int64_t now = mono_ms();
	if (flush_now || now >= w->next_flush) {
		bool low = w->cfg.min_free_pct > 0 && free_pct(w->data_dir) < w->cfg.min_free_pct / 2 + 1;
		if (low) {
			retention(w);
			low = free_pct(w->data_dir) < w->cfg.min_free_pct / 2 + 1;
		}
		for (size_t k = 0; k < w->n_apps && !low; k++) {
			struct wapp *a = w->apps[k];
			if (a->open.n && (now - a->opened_mono >= w->cfg.chunk_age_ms ||
					  w->open_bytes > WRITER_OPEN_MAX))
				seal_app(w, a);
		}
		int64_t t0 = mono_ms();
		/* A full disk that the logs cannot relieve: keep the daemon's
		 * disk usable and drop the new lines. */
		commit_all(w, low);
		int64_t took = mono_ms() - t0;
		if (took > atomic_load(&w->flush_ms_max))
			atomic_store(&w->flush_ms_max, took);
		w->next_flush = now + w->cfg.flush_ms;
	}
	bool over = w->cfg.max_bytes > 0 && atomic_load(&w->total_bytes) > w->cfg.max_bytes;
	for (size_t k = 0; k < w->n_apps && !over && w->cfg.app_max_bytes > 0; k++)
		over = w->apps[k]->bytes > w->cfg.app_max_bytes;
	if (retain || over || now >= w->next_retention) {
		retention(w);
		w->next_retention = now + WRITER_RETENTION_MS;
	}
}

static void *writer_main(void *arg)
{
	struct logs_writer *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->q_head && !w->stop && w->sync_asked == w->sync_done) {
			int64_t now = mono_ms();
			bool open = false;
			for (size_t k = 0; k < w->n_apps && !open; k++)
				open = w->apps[k]->flushed < w->apps[k]->open.n;
			int64_t deadline = open && w->next_flush < w->next_retention ? w->next_flush
										      : w->next_retention;
			if (now >= deadline)
				break;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t wait = deadline - now;
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&w->cond, &w->mu, &ts);
		}
		struct logs_batch *batches = w->q_head;
		if (batches)
			atomic_store(&w->took_mono, mono_ms());
		w->q_head = w->q_tail = NULL;
		w->q_bytes = 0;
		atomic_store(&w->queue_bytes, 0);
		bool stop = w->stop;
		uint64_t sync = w->sync_asked;
		bool retain = w->retention_asked;
		w->retention_asked = false;
		pthread_mutex_unlock(&w->mu);

		writer_cycle(w, batches, stop || sync != w->sync_done, retain);
		if (stop) {
			for (size_t k = 0; k < w->n_apps; k++)
				seal_app(w, w->apps[k]);
			commit_all(w, false);
		}

		pthread_mutex_lock(&w->mu);
		if (sync != w->sync_done) {
			w->sync_done = sync;
			pthread_cond_broadcast(&w->done_cond);
		}
		if (stop && !w->q_head)
			break;
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* ---- start-up: totals and the open chunks left by the last run ---- */

static void app_totals(void *ctx, const char *app, int64_t bytes, int64_t chunks, int64_t lines)
{
	struct logs_writer *w = ctx;
	struct wapp *a = wapp_get(w, app);
	a->bytes = bytes;
	a->chunks = chunks;
	a->lines = lines;
	atomic_fetch_add(&w->total_bytes, bytes);
	atomic_fetch_add(&w->total_chunks, chunks);
	atomic_fetch_add(&w->total_lines, lines);
}

struct reload_ctx {
	struct logs_writer *w;
	struct small_list ids;
	char **apps;
};

static int reload_collect(void *ctx, const struct store_logs_chunk *c)
{
	struct reload_ctx *rc = ctx;
	small_collect(&rc->ids, c);
	rc->apps = xrealloc(rc->apps, rc->ids.n * sizeof(*rc->apps));
	rc->apps[rc->ids.n - 1] = xstrdup(c->app);
	return 0;
}

struct reload_one {
	struct logs_writer *w;
	struct wapp *a;
};

static int reload_data(void *ctx, const struct store_logs_chunk *c)
{
	struct reload_one *ro = ctx;
	struct logs_blocks bl;
	struct logs_view v;
	logs_blocks_init(&bl);
	logs_view_init(&v);
	size_t start = ro->a->open.n;
	bool ok = logs_blocks_open(&bl, c->data, c->data_len) == 0;
	for (size_t b = 0; ok && b < bl.n; b++) {
		ok = logs_view_decode(&v, bl.b[b].data, bl.b[b].len) == 0;
		for (size_t k = 0; ok && k < v.n; k++) {
			struct logs_rec r;
			logs_view_get(&v, k, c->app, &r);
			logs_parse(&ro->w->parsed, r.text, r.len, r.stream);
			if (ro->a->open.n == 0)
				ro->a->opened_mono = mono_ms();
			logs_builder_add(&ro->a->open, &r, &ro->w->parsed);
			ro->w->open_bytes += r.len;
		}
	}
	if (ok) {
		logs_builder_cut(&ro->a->open);
		ro->a->small = xgrow(ro->a->small, sizeof(*ro->a->small), ro->a->n_small + 1,
				     &ro->a->alloc_small);
		ro->a->small[ro->a->n_small++] = c->id;
		ro->a->flushed = ro->a->flushed_committed = ro->a->open.n;
	} else {
		ro->w->open_bytes -= logs_builder_truncate(&ro->a->open, start);
		log_warn("logs: open chunk %lld of '%s' is damaged; it stays as it is",
			 (long long)c->id, c->app);
	}
	logs_view_release(&v);
	logs_blocks_release(&bl);
	return 0;
}

struct logs_writer *logs_writer_start(const struct logs_writer_config *cfg, uint64_t *next_seq,
				      int64_t *last_t_ns, char **err)
{
	*err = NULL;
	struct store_logs *db = store_logs_open(cfg->path, false, err);
	if (!db)
		return NULL;
	struct logs_writer *w = xcalloc(1, sizeof(*w));
	w->cfg = *cfg;
	w->logs = cfg->logs;
	w->db = db;
	char *slash = strrchr(cfg->path, '/');
	w->data_dir = slash ? xstrndup(cfg->path, (size_t)(slash - cfg->path)) : xstrdup(".");
	logs_parsed_init(&w->parsed);
	w->z = gzip_deflater_new(cfg->zlevel);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cond, NULL);
	pthread_cond_init(&w->done_cond, NULL);

	int64_t v = 0;
	*next_seq = store_logs_meta_get(db, "next_seq", &v) == 0 && v > 0 ? (uint64_t)v : 1;
	*last_t_ns = store_logs_meta_get(db, "last_t_ns", &v) == 0 ? v : 0;
	store_logs_apps_each(db, app_totals, w);
	w->gen = store_logs_meta_get(db, "commit_gen", &v) == 0 && v > 0 ? (uint64_t)v : 0;
	dents_load(w);
	dents_publish(w); /* none if the list could not be read: the next commit tries again */
	/* Open chunks of the last run become this run's open chunks again. */
	struct reload_ctx rc = {.w = w};
	store_logs_chunks_each(db, NULL, 0, false, reload_collect, &rc);
	for (size_t k = 0; k < rc.ids.n; k++) {
		struct reload_one ro = {w, wapp_get(w, rc.apps[k])};
		store_logs_chunk_get(db, rc.ids.ids[k], STORE_LOGS_DATA, reload_data, &ro);
		free(rc.apps[k]);
	}
	free(rc.apps);
	free(rc.ids.ids);
	free(rc.ids.bytes);
	free(rc.ids.lines);
	atomic_store(&w->disk_bytes, store_logs_disk_bytes(db));
	w->next_flush = mono_ms() + cfg->flush_ms;
	w->next_retention = mono_ms() + 1000;
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		*err = xstrdup("cannot start the logs writer thread");
		store_logs_close(db);
		logs_parsed_release(&w->parsed);
		gzip_deflater_free(w->z);
		free(w->dents);
		for (size_t k = 0; k < w->n_apps; k++)
			wapp_free(w->apps[k]);
		free(w->apps);
		free(w->data_dir);
		free(w);
		return NULL;
	}
	return w;
}

bool logs_writer_push(struct logs_writer *w, struct logs_batch *b)
{
	pthread_mutex_lock(&w->mu);
	if (w->stop || w->q_bytes + b->data.len > WRITER_QUEUE_MAX) {
		pthread_mutex_unlock(&w->mu);
		return false;
	}
	b->next = NULL;
	if (w->q_tail)
		w->q_tail->next = b;
	else
		w->q_head = b;
	w->q_tail = b;
	w->q_bytes += b->data.len;
	atomic_store(&w->queue_bytes, w->q_bytes);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	return true;
}

uint64_t logs_writer_queue_bytes(struct logs_writer *w)
{
	return w ? atomic_load(&w->queue_bytes) : 0;
}

int64_t logs_writer_idle_ms(struct logs_writer *w)
{
	return mono_ms() - atomic_load(&w->took_mono);
}

void logs_writer_sync(struct logs_writer *w, bool retention)
{
	pthread_mutex_lock(&w->mu);
	uint64_t gen = ++w->sync_asked;
	w->retention_asked = w->retention_asked || retention;
	pthread_cond_signal(&w->cond);
	while (w->sync_done < gen && !w->stop)
		pthread_cond_wait(&w->done_cond, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

void logs_writer_stop(struct logs_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	store_logs_rollback(w->db);
	store_logs_close(w->db);
	logs_parsed_release(&w->parsed);
	gzip_deflater_free(w->z);
	for (size_t k = 0; k < w->n_apps; k++)
		wapp_free(w->apps[k]);
	free(w->apps);
	for (size_t k = 0; k < w->n_blooms; k++)
		free(w->blooms[k].words);
	free(w->blooms);
	free(w->forget);
	free(w->dents);
	while (w->q_head) {
		struct logs_batch *n = w->q_head->next;
		logs_batch_free(w->q_head);
		w->q_head = n;
	}
	while (w->done_head) {
		struct logs_batch *n = w->done_head->next;
		logs_batch_free(w->done_head);
		w->done_head = n;
	}
	free(w->data_dir);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->done_cond);
	free(w);
}

void logs_writer_stats(struct logs_writer *w, struct json *out)
{
	json_set_int(out, "lines_written", (int64_t)atomic_load(&w->lines));
	json_set_int(out, "bytes_written", (int64_t)atomic_load(&w->bytes_in));
	json_set_int(out, "chunks_written", (int64_t)atomic_load(&w->chunks_written));
	json_set_int(out, "chunks_sealed", (int64_t)atomic_load(&w->chunks_sealed));
	json_set_int(out, "chunks_removed", (int64_t)atomic_load(&w->chunks_removed));
	json_set_int(out, "bytes_removed", (int64_t)atomic_load(&w->bytes_removed));
	json_set_int(out, "commits", (int64_t)atomic_load(&w->commits));
	json_set_int(out, "write_errors", (int64_t)atomic_load(&w->errors));
	json_set_int(out, "dropped_disk_full", (int64_t)atomic_load(&w->dropped_disk));
	json_set_int(out, "stored_bytes", atomic_load(&w->total_bytes));
	json_set_int(out, "stored_lines", atomic_load(&w->total_lines));
	json_set_int(out, "stored_chunks", atomic_load(&w->total_chunks));
	json_set_int(out, "disk_bytes", atomic_load(&w->disk_bytes));
	json_set_int(out, "queue_bytes", (int64_t)atomic_load(&w->queue_bytes));
	json_set_int(out, "commit_ms_max", atomic_load(&w->flush_ms_max));
}
