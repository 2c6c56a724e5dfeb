/* metrics.c: the metrics module: configuration, the sampling timer on the
 * control loop, recording every registry series into the history, and
 * persisting the history.
 *
 * Persistence: the history is written to DATA/metrics.tsdb every
 * save_interval and once more on shutdown. The image is built on the loop
 * (a copy of the compressed chunks, a few MiB for hundreds of series) and
 * written, fsync'd and renamed into place on the libuv thread pool, so the
 * loop never waits for the disk. At start-up the file is read back before
 * the loop runs; a damaged file is renamed to metrics.tsdb.damaged. A crash
 * loses at most the samples since the last write. */
#include "metrics/metrics_internal.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MX_GC_EVERY_MS 10000
#define MX_RETRY_SERIES_MS 60000
#define MX_MAX_FILE (4ULL << 30)
#define MX_ALIGN_MS 25

struct metrics {
	uv_loop_t *loop;
	struct metrics_config cfg;
	char *data_dir, *version, *path, *tmp_path;
	struct supervisor *sv;
	struct router *router;
	struct metrics_registry *reg;
	struct mx_samplers *samplers;
	struct mx_self self;
	struct mx_tsdb *db;
	uv_timer_t timer;
	bool started, stopped;
	uint64_t due_ms; /* loop time (uv_now) the next tick is due at */
	int64_t last_t, last_gc, last_save;
	/* persistence: only save_buf, the paths and save_rc are touched off the loop */
	uv_work_t save_req;
	bool saving, save_again;
	struct strbuf save_buf;
	int save_rc;
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

void metrics_config_defaults(struct metrics_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->interval_ms = 1000;
	cfg->tiers[0] = (struct metrics_tier){1000, 3600LL * 1000};
	cfg->tiers[1] = (struct metrics_tier){10000, 86400LL * 1000};
	cfg->tiers[2] = (struct metrics_tier){300000, 30 * 86400LL * 1000};
	cfg->n_tiers = 3;
	cfg->memory_budget = 256LL << 20;
	cfg->save_interval_ms = 60000;
}

static int parse_retention(struct metrics_config *cfg, const char *value, char **err)
{
	struct metrics_tier tiers[METRICS_MAX_TIERS];
	size_t n = 0;
	char *copy = xstrdup(value), *save = NULL;
	int rc = 0;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (n == METRICS_MAX_TIERS) {
			*err = xasprintf("invalid --metrics-retention '%s': at most %d tiers", value,
					 METRICS_MAX_TIERS);
			rc = -EINVAL;
			break;
		}
		char *colon = strchr(item, ':');
		int64_t res = n ? 0 : cfg->interval_ms, ret;
		if (colon) {
			*colon = '\0';
			if (duration_parse(item, &res) < 0 || res <= 0)
				rc = -EINVAL;
		} else if (n) {
			rc = -EINVAL; /* coarser tiers need a resolution */
		}
		if (!rc && (duration_parse(colon ? colon + 1 : item, &ret) < 0 || ret < res))
			rc = -EINVAL;
		if (!rc && n && res <= tiers[n - 1].res_ms)
			rc = -EINVAL;
		if (rc) {
			*err = xasprintf("invalid --metrics-retention '%s' (like 1h,10s:1d,5m:30d: raw "
					 "samples for 1h, then RESOLUTION:RETENTION per coarser tier, "
					 "resolutions increasing)",
					 value);
			break;
		}
		tiers[n++] = (struct metrics_tier){res, ret};
	}
	free(copy);
	if (!rc && n == 0) {
		*err = xasprintf("invalid --metrics-retention '%s': no tiers", value);
		rc = -EINVAL;
	}
	if (rc)
		return rc;
	memcpy(cfg->tiers, tiers, n * sizeof(*tiers));
	cfg->n_tiers = n;
	cfg->interval_ms = tiers[0].res_ms;
	return 0;
}

int metrics_config_parse(struct metrics_config *cfg, const char *flag, const char *value,
			 char **err)
{
	int64_t v;
	if (!strcmp(flag, "metrics-interval")) {
		if (duration_parse(value, &v) < 0 || v < 100 || v > 3600000) {
			*err = xasprintf("invalid --metrics-interval '%s' (a duration from 100ms to 1h)", value);
			return -EINVAL;
		}
		cfg->interval_ms = v;
		cfg->tiers[0].res_ms = v;
		return 0;
	}
	if (!strcmp(flag, "metrics-retention"))
		return parse_retention(cfg, value, err);
	if (!strcmp(flag, "metrics-memory")) {
		if (size_parse(value, &v) < 0 || v < (1 << 20)) {
			*err = xasprintf("invalid --metrics-memory '%s' (a size of at least 1M, like 256M)", value);
			return -EINVAL;
		}
		cfg->memory_budget = v;
		return 0;
	}
	if (!strcmp(flag, "price-cpu-hour") || !strcmp(flag, "price-memory-gb-hour")) {
		char *end;
		double d = strtod(value, &end);
		if (end == value || *end || !isfinite(d) || d < 0 || d > 1e9) {
			*err = xasprintf("invalid --%s '%s' (an amount like 0.025)", flag, value);
			return -EINVAL;
		}
		*(flag[6] == 'c' ? &cfg->prices.cpu_hour : &cfg->prices.memory_gb_hour) = d;
		cfg->prices.set = true;
		return 0;
	}
	if (!strcmp(flag, "price-currency")) {
		size_t n = strlen(value);
		bool ok = n > 0 && n < sizeof(cfg->prices.currency);
		for (size_t k = 0; ok && k < n; k++)
			ok = value[k] > ' ' && value[k] < 0x7f && value[k] != '"' && value[k] != '\\';
		if (!ok) {
			*err = xasprintf("invalid --price-currency '%s' (up to 7 characters, like EUR)", value);
			return -EINVAL;
		}
		memcpy(cfg->prices.currency, value, n + 1);
		return 0;
	}
	*err = xasprintf("unknown metrics option '%s'", flag);
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Persistence                                                              */

static void load_history(struct metrics *m)
{
	int fd = open(m->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("metrics: cannot read '%s': %s", m->path, strerror(errno));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > MX_MAX_FILE) {
		log_warn("metrics: '%s' is not a readable history file", m->path);
		close(fd);
		return;
	}
	struct strbuf buf;
	strbuf_init(&buf, (size_t)st.st_size + 1);
	char tmp[65536];
	ssize_t n;
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		strbuf_add(&buf, tmp, (size_t)n);
	close(fd);
	char *err = NULL;
	int64_t t0 = time_mono_ms();
	if (mx_tsdb_load(m->db, buf.buf, buf.len, &err) < 0) {
		char *aside = xasprintf("%s.damaged", m->path);
		log_warn("metrics: history '%s' not loaded: %s; moved to '%s'", m->path, err, aside);
		rename(m->path, aside);
		free(aside);
		free(err);
		/* Start clean rather than with half an image. */
		struct mx_tsdb *fresh = mx_tsdb_new(m->cfg.tiers, m->cfg.n_tiers, (size_t)m->cfg.memory_budget);
		mx_tsdb_free(m->db);
		m->db = fresh;
	} else {
		log_info("metrics: loaded %zu series of history (%zu KiB) in %lld ms", m->db->n,
			 m->db->used / 1024, (long long)(time_mono_ms() - t0));
	}
	strbuf_release(&buf);
}

/* Thread pool: write the image next to the file, fsync, rename over it. */
static void save_work(uv_work_t *req)
{
	struct metrics *m = req->data;
	int fd = open(m->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		m->save_rc = -errno;
		return;
	}
	size_t off = 0;
	while (off < m->save_buf.len) {
		ssize_t n = write(fd, m->save_buf.buf + off, m->save_buf.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			m->save_rc = n < 0 ? -errno : -EIO;
			close(fd);
			unlink(m->tmp_path);
			return;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		m->save_rc = -errno;
		unlink(m->tmp_path);
		return;
	}
	if (rename(m->tmp_path, m->path) < 0) {
		m->save_rc = -errno;
		unlink(m->tmp_path);
		return;
	}
	int dfd = open(m->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	m->save_rc = 0;
}

static void save_start(struct metrics *m);

static void save_done(uv_work_t *req, int status)
{
	struct metrics *m = req->data;
	m->saving = false;
	strbuf_release(&m->save_buf);
#ifdef __GLIBC__
	/* The image is as large as the history (megabytes) and, once glibc has
	 * raised its mmap threshold, lives in the heap: give its pages back
	 * rather than keep them resident until the next save. */
	malloc_trim(0);
#endif
	if (status < 0 || m->save_rc < 0) {
		metrics_add(m->self.save_errors, 1);
		log_warn("metrics: cannot write '%s': %s", m->path,
			 strerror(status < 0 ? -status : -m->save_rc));
	} else {
		metrics_add(m->self.saves, 1);
	}
	if (m->save_again) {
		m->save_again = false;
		save_start(m);
	}
}

static void save_start(struct metrics *m)
{
	if (!m->path)
		return;
	if (m->saving) {
		m->save_again = true;
		return;
	}
	strbuf_init(&m->save_buf, 0);
	mx_tsdb_save(m->db, &m->save_buf);
	m->save_rc = 0;
	m->save_req.data = m;
	if (uv_queue_work(m->loop, &m->save_req, save_work, save_done) < 0) {
		strbuf_release(&m->save_buf);
		metrics_add(m->self.save_errors, 1);
		return;
	}
	m->saving = true;
	m->last_save = time_mono_ms();
}

/* ------------------------------------------------------------------------ */
/* Sampling and recording                                                   */

/* Creates the history streams of a registry series: one, or for a
 * histogram one per bucket (label le) plus _sum and _count. */
static bool open_streams(struct metrics *m, struct metrics_series *s, int64_t now)
{
	if (s->ts)
		return true;
	if (s->ts_retry_ms && time_mono_ms() < s->ts_retry_ms)
		return false;
	struct metrics_family *f = s->fam;
	bool hist = f->type == METRICS_HISTOGRAM;
	size_t n = hist ? f->n_bounds + 3 : 1;
	struct mx_tseries **ts = hist ? xcalloc(n, sizeof(*ts)) : &s->ts1;
	const char *names[17], *values[17];
	size_t nl = f->n_labels < 16 ? f->n_labels : 16;
	for (size_t k = 0; k < nl; k++) {
		names[k] = f->labels[k];
		values[k] = s->values[k];
	}
	uint64_t before = m->db->dropped_series;
	bool ok = true;
	if (!hist) {
		ts[0] = mx_tsdb_series(m->db, f->name, names, values, nl, f->type == METRICS_COUNTER);
		ok = ts[0] != NULL;
	} else {
		char *bucket = xasprintf("%s_bucket", f->name), *sum = xasprintf("%s_sum", f->name),
		     *count = xasprintf("%s_count", f->name);
		names[nl] = "le";
		for (size_t b = 0; b <= f->n_bounds && ok; b++) {
			struct strbuf le;
			strbuf_init(&le, 16);
			if (b < f->n_bounds)
				mx_format_double(&le, f->bounds[b]);
			else
				strbuf_adds(&le, "+Inf");
			values[nl] = le.buf;
			ts[b] = mx_tsdb_series(m->db, bucket, names, values, nl + 1, true);
			ok = ts[b] != NULL;
			strbuf_release(&le);
		}
		if (ok)
			ok = (ts[n - 2] = mx_tsdb_series(m->db, sum, names, values, nl, true)) != NULL;
		if (ok)
			ok = (ts[n - 1] = mx_tsdb_series(m->db, count, names, values, nl, true)) != NULL;
		free(bucket);
		free(sum);
		free(count);
	}
	if (!ok) {
		/* Count each registry series once, however often it is retried. */
		if (s->ts_counted)
			m->db->dropped_series = before;
		else
			m->db->dropped_series = before + 1;
		s->ts_counted = true;
		s->ts_retry_ms = time_mono_ms() + MX_RETRY_SERIES_MS;
		if (hist)
			free(ts);
		return false;
	}
	(void)now;
	s->ts = ts;
	s->n_ts = n;
	return true;
}

static void record(struct metrics *m, int64_t now)
{
	struct metrics_registry *reg = m->reg;
	for (size_t k = 0; k < reg->n_fams; k++) {
		struct metrics_family *f = reg->fams[k];
		for (size_t j = 0; j < f->n_series; j++) {
			struct metrics_series *s = f->series[j];
			if (!open_streams(m, s, now))
				continue;
			if (f->type != METRICS_HISTOGRAM) {
				mx_tsdb_append(m->db, s->ts[0], now, s->value);
				continue;
			}
			uint64_t cum = 0;
			for (size_t b = 0; b <= f->n_bounds; b++) {
				cum += s->counts[b];
				mx_tsdb_append(m->db, s->ts[b], now, (double)cum);
			}
			mx_tsdb_append(m->db, s->ts[s->n_ts - 2], now, s->sum);
			mx_tsdb_append(m->db, s->ts[s->n_ts - 1], now, (double)cum);
		}
	}
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* How far from its place on the interval grid a sample's time may be and
 * still be stamped with that place: 25 ms, or 1/40 of a short interval. */
static int64_t align_tolerance(int64_t interval)
{
	return interval / 40 < MX_ALIGN_MS ? interval / 40 : MX_ALIGN_MS;
}

static void sample(struct metrics *m, double lag_s)
{
	uint64_t t0 = uv_hrtime();
	double c0 = thread_cpu_s();
	int64_t now = time_wall_ms(), iv = m->cfg.interval_ms;
	/* Timestamps exactly one interval (or a whole number of them) apart
	 * cost 1 bit each in the history instead of ~16: a sample taken within
	 * the tolerance of its grid point is stamped with it (as Prometheus'
	 * scrape timestamp tolerance does). The ticks are scheduled on that
	 * grid, so they do not drift off it. */
	if (m->last_t && now > m->last_t) {
		int64_t k = (now - m->last_t + iv / 2) / iv;
		int64_t grid = m->last_t + k * iv;
		if (k >= 1 && llabs(now - grid) <= align_tolerance(iv))
			now = grid;
	}
	if (now <= m->last_t)
		now = m->last_t + 1; /* the wall clock stepped back: keep time moving forward */
	m->last_t = now;
	mx_samplers_run(m->samplers, m->sv, m->router, m->data_dir, now, lag_s);
	/* Series that went away no longer point at history streams; the
	 * streams stay until their data expires. */
	record(m, now);
	int64_t mono = time_mono_ms();
	if (mono - m->last_gc >= MX_GC_EVERY_MS) {
		mx_tsdb_gc(m->db, now);
		m->last_gc = mono;
	}
	metrics_set(m->self.hist_series, (double)m->db->n);
	metrics_set(m->self.hist_bytes, (double)m->db->used);
	metrics_set(m->self.hist_budget, (double)m->db->budget);
	metrics_set(m->self.dropped_series, (double)m->db->dropped_series);
	metrics_set(m->self.dropped_samples, (double)m->db->dropped_samples);
	metrics_set(m->self.evicted, (double)m->db->evicted_chunks);
	metrics_set(m->self.sample_seconds, (double)(uv_hrtime() - t0) / 1e9);
	metrics_add(m->self.sample_cpu, thread_cpu_s() - c0);
}

void metrics_sample_now(struct metrics *m)
{
	sample(m, 0);
}

static void on_tick(uv_timer_t *t);

/* Schedules the next tick one interval after the one that was due, not
 * after now, so ticks stay on a fixed grid however long each takes; ticks
 * missed by more than an interval are skipped. */
static void arm(struct metrics *m)
{
	uv_update_time(m->loop);
	uint64_t now = uv_now(m->loop), iv = (uint64_t)m->cfg.interval_ms;
	m->due_ms += iv;
	if (m->due_ms <= now)
		m->due_ms = now + iv - (now - m->due_ms) % iv;
	uv_timer_start(&m->timer, on_tick, m->due_ms - now, 0);
}

static void on_tick(uv_timer_t *t)
{
	struct metrics *m = t->data;
	uv_update_time(m->loop);
	uint64_t now = uv_now(m->loop);
	double lag = now > m->due_ms ? (double)(now - m->due_ms) / 1000.0 : 0;
	sample(m, lag);
	if (time_mono_ms() - m->last_save >= m->cfg.save_interval_ms)
		save_start(m);
	if (!m->stopped)
		arm(m);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */

struct metrics *metrics_new(const struct metrics_config *cfg, char **err)
{
	if (cfg->n_tiers == 0 || cfg->n_tiers > METRICS_MAX_TIERS || cfg->interval_ms < 1 ||
	    cfg->tiers[0].res_ms != cfg->interval_ms) {
		*err = xstrdup("invalid metrics configuration: tier 0's resolution must be the sampling "
			       "interval");
		return NULL;
	}
	for (size_t k = 1; k < cfg->n_tiers; k++)
		if (cfg->tiers[k].res_ms <= cfg->tiers[k - 1].res_ms) {
			*err = xstrdup("invalid metrics configuration: each tier must be coarser than the "
				       "one before (check --metrics-interval and --metrics-retention)");
			return NULL;
		}
	struct metrics *m = xcalloc(1, sizeof(*m));
	m->loop = cfg->loop;
	m->cfg = *cfg;
	m->sv = cfg->sv;
	m->router = cfg->router;
	m->data_dir = cfg->data_dir ? xstrdup(cfg->data_dir) : NULL;
	m->version = xstrdup(cfg->version ? cfg->version : "unknown");
	m->cfg.loop = NULL;
	m->cfg.data_dir = NULL;
	m->cfg.version = NULL;
	if (m->data_dir) {
		m->path = xasprintf("%s/metrics.tsdb", m->data_dir);
		m->tmp_path = xasprintf("%s/metrics.tsdb.tmp", m->data_dir);
	}
	m->reg = metrics_registry_new();
	m->samplers = mx_samplers_new(m->reg, m->version);
	mx_samplers_self(m->samplers, &m->self);
	m->db = mx_tsdb_new(cfg->tiers, cfg->n_tiers, (size_t)cfg->memory_budget);
	if (m->path)
		load_history(m);
	m->last_save = m->last_gc = time_mono_ms();
	if (m->loop) {
		uv_timer_init(m->loop, &m->timer);
		m->timer.data = m;
		m->started = true;
	}
	return m;
}

void metrics_start(struct metrics *m)
{
	if (!m || !m->started || m->stopped)
		return;
	uv_update_time(m->loop);
	m->due_ms = uv_now(m->loop);
	uv_timer_start(&m->timer, on_tick, 0, 0);
}

void metrics_stop(struct metrics *m)
{
	if (!m || m->stopped)
		return;
	m->stopped = true;
	m->sv = NULL;
	m->router = NULL;
	if (m->started && !uv_is_closing((uv_handle_t *)&m->timer))
		uv_close((uv_handle_t *)&m->timer, NULL);
	save_start(m);
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	/* The loop has run: a queued write has finished and the timer is closed. */
	strbuf_release(&m->save_buf);
	mx_tsdb_free(m->db);
	mx_samplers_free(m->samplers);
	metrics_registry_free(m->reg);
	free(m->data_dir);
	free(m->version);
	free(m->path);
	free(m->tmp_path);
	free(m);
}

struct metrics_registry *metrics_registry_of(struct metrics *m)
{
	return m->reg;
}

/* ------------------------------------------------------------------------ */
/* Exposition and queries                                                   */

void metrics_render(struct metrics *m, enum metrics_format fmt, metrics_app_filter_cb keep,
		    void *ctx, struct strbuf *out)
{
	uint64_t t0 = uv_hrtime();
	metrics_add(m->self.scrapes, 1);
	metrics_expose(m->reg, fmt, keep, ctx, out);
	metrics_set(m->self.scrape_seconds, (double)(uv_hrtime() - t0) / 1e9);
}

int metrics_query(struct metrics *m, const struct metrics_query *q, struct metrics_result *out,
		  char **err)
{
	if (q->name && *q->name && metrics_name_check(q->name, q->fn, err) < 0) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	return mx_query(m->db, q, time_wall_ms(), out, err);
}

int metrics_eval(struct metrics *m, const char *expr, int64_t at_ms, struct metrics_result *out,
		 char **err)
{
	struct metrics_query q;
	char *buf = NULL;
	int r = metrics_expr_parse(expr, at_ms, &q, &buf, err);
	if (r < 0)
		return r;
	r = metrics_query(m, &q, out, err);
	free(buf);
	return r;
}

int64_t metrics_history_oldest(struct metrics *m)
{
	return mx_tsdb_oldest(m->db);
}

void metrics_status_get(struct metrics *m, struct metrics_status *st)
{
	memset(st, 0, sizeof(*st));
	st->registry_series = m->reg->n_series;
	st->history_series = m->db->n;
	st->memory_bytes = (int64_t)m->db->used;
	st->memory_budget = (int64_t)m->db->budget;
	st->dropped_series = m->db->dropped_series;
	st->dropped_samples = m->db->dropped_samples;
	st->evicted_chunks = m->db->evicted_chunks;
	st->interval_ms = m->cfg.interval_ms;
	memcpy(st->tiers, m->cfg.tiers, sizeof(st->tiers));
	st->n_tiers = m->cfg.n_tiers;
	st->prices = m->cfg.prices;
}

void metrics_families_each(struct metrics *m, metrics_family_cb cb, void *ctx)
{
	for (size_t k = 0; k < m->reg->n_fams; k++) {
		const struct metrics_family *f = m->reg->fams[k];
		cb(ctx, f->name, f->type, f->help, (const char *const *)f->labels, f->n_labels);
	}
}
