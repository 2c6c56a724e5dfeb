/* metrics_registry.c: the registry of metric families and series, and their
 * exposition in the Prometheus text format 0.0.4 and OpenMetrics 1.0.
 *
 * A series keeps its label values interned: one copy of an app's, a
 * process type's or an instance's name serves every series that names it.
 * Exposition escapes them as it copies them (a scan for \\, \" and \n). Series
 * are found by a hash of their family and the interned values' addresses. */
#include "metrics/metrics_internal.h"
#include "core/util.h"
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* String map                                                               */

uint64_t mx_hash(const void *key, size_t len)
{
	/* FNV-1a, then a final mix so that linear probing sees spread-out
	 * low bits even for keys differing in their last byte only. */
	const unsigned char *p = key;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static struct mx_map_slot *map_find(const struct mx_map *m, const void *key, size_t len,
				    uint64_t h)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct mx_map_slot *s = &m->slots[i];
		if (!s->key)
			return NULL;
		if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
			return s;
	}
}

void *mx_map_get(const struct mx_map *m, const void *key, size_t len)
{
	struct mx_map_slot *s = map_find(m, key, len, mx_hash(key, len));
	return s ? s->value : NULL;
}

static void map_insert_slot(struct mx_map *m, struct mx_map_slot in)
{
	size_t mask = m->cap - 1;
	size_t i = in.hash & mask;
	while (m->slots[i].key)
		i = (i + 1) & mask;
	m->slots[i] = in;
}

void mx_map_put(struct mx_map *m, const void *key, size_t len, void *value)
{
	uint64_t h = mx_hash(key, len);
	struct mx_map_slot *s = map_find(m, key, len, h);
	if (s) {
		s->value = value;
		return;
	}
	if ((m->n + 1) * 4 > m->cap * 3) { /* keep the load under 3/4 */
		size_t old_cap = m->cap;
		struct mx_map_slot *old = m->slots;
		m->cap = old_cap ? old_cap * 2 : 16;
		m->slots = xcalloc(m->cap, sizeof(*m->slots));
		for (size_t k = 0; k < old_cap; k++)
			if (old[k].key)
				map_insert_slot(m, old[k]);
		free(old);
	}
	char *copy = xmalloc(len + 1);
	memcpy(copy, key, len);
	copy[len] = '\0';
	map_insert_slot(m, (struct mx_map_slot){copy, len, h, value});
	m->n++;
}

void mx_map_del(struct mx_map *m, const void *key, size_t len)
{
	struct mx_map_slot *s = map_find(m, key, len, mx_hash(key, len));
	if (!s)
		return;
	free(s->key);
	m->n--;
	/* Backward-shift deletion, as mx_ptr_table_del does for pointers. */
	size_t mask = m->cap - 1;
	size_t hole = (size_t)(s - m->slots);
	for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
		if (mx_probe_may_move(hole, i, m->slots[i].hash & mask)) {
			m->slots[hole] = m->slots[i];
			hole = i;
		}
	}
	m->slots[hole] = (struct mx_map_slot){0};
}

void mx_ptr_table_del(void **slots, size_t cap, size_t hole, uint64_t (*hash_of)(const void *))
{
	size_t mask = cap - 1;
	for (size_t i = (hole + 1) & mask; slots[i]; i = (i + 1) & mask) {
		if (mx_probe_may_move(hole, i, hash_of(slots[i]) & mask)) {
			slots[hole] = slots[i];
			hole = i;
		}
	}
	slots[hole] = NULL;
}

void mx_map_release(struct mx_map *m)
{
	for (size_t k = 0; k < m->cap; k++)
		free(m->slots[k].key);
	free(m->slots);
	*m = (struct mx_map){0};
}

/* ------------------------------------------------------------------------ */
/* Interned strings                                                         */

size_t mx_str_cost(size_t len)
{
	return sizeof(struct mx_str) + len + 1 + 2 * sizeof(struct mx_str *);
}

static struct mx_str **strs_slot(const struct mx_strs *p, const char *s, size_t len, uint64_t h)
{
	size_t mask = p->cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct mx_str *e = p->slots[i];
		if (!e || (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0))
			return &p->slots[i];
	}
}

char *mx_strs_find(const struct mx_strs *p, const char *s)
{
	if (!p->cap)
		return NULL;
	size_t len = strlen(s);
	struct mx_str *e = *strs_slot(p, s, len, mx_hash(s, len));
	return e ? e->s : NULL;
}

char *mx_strs_ref(struct mx_strs *p, const char *s)
{
	size_t len = strlen(s);
	uint64_t h = mx_hash(s, len);
	if (p->cap) {
		struct mx_str *e = *strs_slot(p, s, len, h);
		if (e) {
			e->refs++;
			return e->s;
		}
	}
	if ((p->n + 1) * 4 > p->cap * 3) { /* keep the load under 3/4 */
		size_t old_cap = p->cap;
		struct mx_str **old = p->slots;
		p->cap = old_cap ? old_cap * 2 : 64;
		p->slots = xcalloc(p->cap, sizeof(*p->slots));
		for (size_t k = 0; k < old_cap; k++)
			if (old[k])
				*strs_slot(p, old[k]->s, old[k]->len, old[k]->hash) = old[k];
		free(old);
	}
	struct mx_str *e = xmalloc(sizeof(*e) + len + 1);
	e->refs = 1;
	e->len = (uint32_t)len;
	e->hash = h;
	memcpy(e->s, s, len + 1);
	*strs_slot(p, s, len, h) = e;
	p->n++;
	p->bytes += mx_str_cost(len);
	return e->s;
}

static uint64_t str_hash_of(const void *e)
{
	return ((const struct mx_str *)e)->hash;
}

void mx_strs_unref(struct mx_strs *p, char *s)
{
	struct mx_str *e = (struct mx_str *)(void *)(s - offsetof(struct mx_str, s));
	if (--e->refs)
		return;
	size_t hole = (size_t)(strs_slot(p, e->s, e->len, e->hash) - p->slots);
	mx_ptr_table_del((void **)p->slots, p->cap, hole, str_hash_of);
	p->n--;
	p->bytes -= mx_str_cost(e->len);
	free(e);
}

void mx_strs_release(struct mx_strs *p)
{
	assert(p->n == 0);
	free(p->slots);
	*p = (struct mx_strs){0};
}

/* ------------------------------------------------------------------------ */
/* Formatting                                                               */

void mx_format_double(struct strbuf *out, double v)
{
	if (isnan(v)) {
		strbuf_add(out, "NaN", 3);
		return;
	}
	if (isinf(v)) {
		strbuf_adds(out, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == (double)(int64_t)v && fabs(v) < 1e15) {
		/* The common case (counts, bytes): digits without printf. */
		char tmp[24];
		int64_t i = (int64_t)v;
		uint64_t u = i < 0 ? (uint64_t)(-i) : (uint64_t)i;
		int p = (int)sizeof(tmp);
		do {
			tmp[--p] = (char)('0' + u % 10);
			u /= 10;
		} while (u);
		if (i < 0)
			tmp[--p] = '-';
		strbuf_add(out, tmp + p, sizeof(tmp) - (size_t)p);
		return;
	}
	char buf[40];
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	strbuf_adds(out, buf);
}

void mx_escape(struct strbuf *out, const char *s, bool quote)
{
	const char *run = s;
	for (const char *p = s; *p; p++) {
		const char *rep = NULL;
		if (*p == '\\')
			rep = "\\\\";
		else if (*p == '\n')
			rep = "\\n";
		else if (*p == '"' && quote)
			rep = "\\\"";
		if (!rep)
			continue;
		strbuf_add(out, run, (size_t)(p - run));
		strbuf_add(out, rep, 2);
		run = p + 1;
	}
	strbuf_adds(out, run);
}

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */

static bool valid_name(const char *s, bool colon)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || (colon && *s == ':')))
			return false;
	return true;
}

struct metrics_registry *metrics_registry_new(void)
{
	struct metrics_registry *reg = xcalloc(1, sizeof(*reg));
	reg->gen = 1;
	return reg;
}

static void series_free(struct metrics_registry *reg, struct metrics_series *s)
{
	for (size_t k = 0; k < s->fam->n_labels; k++)
		mx_strs_unref(&reg->strs, s->values[k]);
	free(s->counts);
	if (s->ts != &s->ts1)
		free(s->ts);
	free(s);
}

void metrics_registry_free(struct metrics_registry *reg)
{
	if (!reg)
		return;
	for (size_t k = 0; k < reg->n_fams; k++) {
		struct metrics_family *f = reg->fams[k];
		for (size_t j = 0; j < f->n_series; j++)
			series_free(reg, f->series[j]);
		free(f->series);
		for (size_t j = 0; j < f->n_labels; j++)
			free(f->labels[j]);
		free(f->labels);
		free(f->bounds);
		free(f->name);
		free(f->help);
		free(f);
	}
	free(reg->fams);
	free(reg->set);
	mx_strs_release(&reg->strs);
	mx_map_release(&reg->names);
	free(reg);
}

struct metrics_family *metrics_family_add(struct metrics_registry *reg, const char *name,
					  const char *help, enum metrics_type type,
					  const char *const *labels, size_t n_labels,
					  const double *bounds, size_t n_bounds, bool expire)
{
	if (!valid_name(name, true) || mx_map_get(&reg->names, name, strlen(name)))
		return NULL;
	if ((type == METRICS_COUNTER) != str_ends_with(name, "_total"))
		return NULL;
	for (size_t k = 0; k < n_labels; k++) {
		if (!valid_name(labels[k], false) || str_starts_with(labels[k], "__") ||
		    !strcmp(labels[k], "le"))
			return NULL;
		for (size_t j = 0; j < k; j++)
			if (!strcmp(labels[j], labels[k]))
				return NULL;
	}
	if (type == METRICS_HISTOGRAM) {
		if (n_bounds == 0)
			return NULL;
		for (size_t k = 0; k < n_bounds; k++)
			if (!isfinite(bounds[k]) || (k && bounds[k] <= bounds[k - 1]))
				return NULL;
	} else if (n_bounds) {
		return NULL;
	}
	/* Queries, rules and specs judge names by the catalogue: a family of
	 * paasops' own that it does not list could not be asked for. */
	enum metrics_type listed;
	assert(!str_starts_with(name, "paasops_") ||
	       (metrics_family_type(name, &listed) == 0 && listed == type));
	struct metrics_family *f = xcalloc(1, sizeof(*f));
	f->reg = reg;
	f->name = xstrdup(name);
	f->help = xstrdup(help ? help : "");
	f->type = type;
	f->expire = expire;
	f->app_label = -1;
	f->n_labels = n_labels;
	f->labels = xcalloc(n_labels ? n_labels : 1, sizeof(char *));
	for (size_t k = 0; k < n_labels; k++) {
		f->labels[k] = xstrdup(labels[k]);
		if (!strcmp(labels[k], "app"))
			f->app_label = (int)k;
	}
	if (n_bounds) {
		f->bounds = xmalloc(n_bounds * sizeof(double));
		memcpy(f->bounds, bounds, n_bounds * sizeof(double));
		f->n_bounds = n_bounds;
	}
	f->index = reg->n_fams;
	reg->fams = xgrow(reg->fams, sizeof(*reg->fams), reg->n_fams + 1, &reg->alloc_fams);
	reg->fams[reg->n_fams++] = f;
	mx_map_put(&reg->names, name, strlen(name), f);
	return f;
}

/* Series are found by their family and the interned copies of their
 * values, compared as pointers: a value not interned yet means a new
 * series. */
static uint64_t series_hash(const struct metrics_family *f, char *const *vals)
{
	uint64_t h = mx_hash(&f, sizeof(f));
	return f->n_labels ? h ^ mx_hash(vals, f->n_labels * sizeof(char *)) : h;
}

static struct metrics_series **set_slot(const struct metrics_registry *reg,
					const struct metrics_family *f, char *const *vals, uint64_t h)
{
	size_t mask = reg->set_cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct metrics_series *s = reg->set[i];
		if (!s || (s->hash == h && s->fam == f &&
			   memcmp(s->values, vals, f->n_labels * sizeof(char *)) == 0))
			return &reg->set[i];
	}
}

static void set_add(struct metrics_registry *reg, struct metrics_series *s)
{
	if ((reg->n_series + 1) * 4 > reg->set_cap * 3) {
		size_t old_cap = reg->set_cap;
		struct metrics_series **old = reg->set;
		reg->set_cap = old_cap ? old_cap * 2 : 64;
		reg->set = xcalloc(reg->set_cap, sizeof(*reg->set));
		for (size_t k = 0; k < old_cap; k++)
			if (old[k])
				*set_slot(reg, old[k]->fam, old[k]->values, old[k]->hash) = old[k];
		free(old);
	}
	*set_slot(reg, s->fam, s->values, s->hash) = s;
}

static uint64_t series_hash_of(const void *s)
{
	return ((const struct metrics_series *)s)->hash;
}

static void set_del(struct metrics_registry *reg, struct metrics_series *s)
{
	size_t mask = reg->set_cap - 1;
	size_t hole = s->hash & mask;
	while (reg->set[hole] != s)
		hole = (hole + 1) & mask;
	mx_ptr_table_del((void **)reg->set, reg->set_cap, hole, series_hash_of);
}

struct metrics_series *metrics_series_get(struct metrics_family *f, const char *const *values)
{
	struct metrics_registry *reg = f->reg;
	char *vals[64];
	assert(f->n_labels <= 64);
	bool known = true;
	for (size_t k = 0; k < f->n_labels && known; k++)
		known = (vals[k] = mx_strs_find(&reg->strs, values[k])) != NULL;
	if (known && reg->set_cap) {
		struct metrics_series *s = *set_slot(reg, f, vals, series_hash(f, vals));
		if (s)
			return s;
	}
	struct metrics_series *s = xcalloc(1, sizeof(*s) + f->n_labels * sizeof(char *));
	s->fam = f;
	for (size_t k = 0; k < f->n_labels; k++)
		s->values[k] = mx_strs_ref(&reg->strs, values[k]);
	s->hash = series_hash(f, s->values);
	if (f->type == METRICS_HISTOGRAM)
		s->counts = xcalloc(f->n_bounds + 1, sizeof(uint64_t));
	s->gen = reg->gen;
	s->index = f->n_series;
	f->series = xgrow(f->series, sizeof(*f->series), f->n_series + 1, &f->alloc_series);
	f->series[f->n_series++] = s;
	set_add(reg, s);
	reg->n_series++;
	return s;
}

void metrics_set(struct metrics_series *s, double v)
{
	s->value = v;
	s->gen = s->fam->reg->gen;
}

void metrics_add(struct metrics_series *s, double v)
{
	s->value += v;
	s->gen = s->fam->reg->gen;
}

double metrics_value(const struct metrics_series *s)
{
	return s->value;
}

void metrics_observe(struct metrics_series *s, double v)
{
	assert(s->fam->type == METRICS_HISTOGRAM);
	size_t k = 0;
	while (k < s->fam->n_bounds && v > s->fam->bounds[k])
		k++;
	s->counts[k]++;
	s->sum += v;
	s->gen = s->fam->reg->gen;
}

void metrics_histogram_set(struct metrics_series *s, const uint64_t *counts, double sum)
{
	assert(s->fam->type == METRICS_HISTOGRAM);
	memcpy(s->counts, counts, (s->fam->n_bounds + 1) * sizeof(uint64_t));
	s->sum = sum;
	s->gen = s->fam->reg->gen;
}

void metrics_registry_sweep(struct metrics_registry *reg)
{
	for (size_t k = 0; k < reg->n_fams; k++) {
		struct metrics_family *f = reg->fams[k];
		if (!f->expire)
			continue;
		size_t keep = 0;
		for (size_t j = 0; j < f->n_series; j++) {
			struct metrics_series *s = f->series[j];
			if (s->gen == reg->gen) {
				s->index = keep;
				f->series[keep++] = s;
				continue;
			}
			set_del(reg, s);
			series_free(reg, s);
			reg->n_series--;
		}
		f->n_series = keep;
	}
	reg->gen++;
}

size_t metrics_registry_series(const struct metrics_registry *reg)
{
	return reg->n_series;
}

/* ------------------------------------------------------------------------ */
/* Exposition                                                               */

static void sample_line(struct strbuf *out, const char *name, const char *suffix,
			const struct metrics_series *s, const char *extra, double v)
{
	const struct metrics_family *f = s->fam;
	strbuf_adds(out, name);
	if (suffix)
		strbuf_adds(out, suffix);
	if (f->n_labels || extra) {
		strbuf_addc(out, '{');
		for (size_t k = 0; k < f->n_labels; k++) {
			if (k)
				strbuf_addc(out, ',');
			strbuf_adds(out, f->labels[k]);
			strbuf_add(out, "=\"", 2);
			mx_escape(out, s->values[k], true);
			strbuf_addc(out, '"');
		}
		if (extra) {
			if (f->n_labels)
				strbuf_addc(out, ',');
			strbuf_adds(out, extra);
		}
		strbuf_addc(out, '}');
	}
	strbuf_addc(out, ' ');
	mx_format_double(out, v);
	strbuf_addc(out, '\n');
}

static bool family_shown(const struct metrics_family *f, const struct metrics_series *s,
			 metrics_app_filter_cb keep, void *ctx)
{
	if (!keep)
		return true;
	return keep(ctx, f->app_label >= 0 ? s->values[f->app_label] : NULL);
}

void metrics_expose(const struct metrics_registry *reg, enum metrics_format fmt,
		    metrics_app_filter_cb keep, void *ctx, struct strbuf *out)
{
	bool om = fmt == METRICS_OPENMETRICS;
	static const char *const types[] = {"counter", "gauge", "histogram"};
	strbuf_grow(out, reg->n_series * 96 + 4096);
	for (size_t k = 0; k < reg->n_fams; k++) {
		const struct metrics_family *f = reg->fams[k];
		size_t shown = 0;
		for (size_t j = 0; j < f->n_series && !shown; j++)
			shown += family_shown(f, f->series[j], keep, ctx);
		if (!shown)
			continue;
		/* OpenMetrics names a counter family without its _total suffix. */
		size_t nlen = strlen(f->name);
		if (om && f->type == METRICS_COUNTER)
			nlen -= strlen("_total");
		strbuf_adds(out, "# HELP ");
		strbuf_add(out, f->name, nlen);
		strbuf_addc(out, ' ');
		mx_escape(out, f->help, om);
		strbuf_adds(out, "\n# TYPE ");
		strbuf_add(out, f->name, nlen);
		strbuf_addc(out, ' ');
		strbuf_adds(out, types[f->type]);
		strbuf_addc(out, '\n');
		for (size_t j = 0; j < f->n_series; j++) {
			const struct metrics_series *s = f->series[j];
			if (keep && !family_shown(f, s, keep, ctx))
				continue;
			if (f->type != METRICS_HISTOGRAM) {
				sample_line(out, f->name, NULL, s, NULL, s->value);
				continue;
			}
			uint64_t cum = 0;
			for (size_t b = 0; b <= f->n_bounds; b++) {
				cum += s->counts[b];
				char le[48];
				if (b < f->n_bounds) {
					struct strbuf lb;
					strbuf_init(&lb, 32);
					mx_format_double(&lb, f->bounds[b]);
					/* OpenMetrics wants a float for le: "1.0", not "1". */
					bool dot = strpbrk(lb.buf, ".eE") != NULL;
					snprintf(le, sizeof(le), "le=\"%s%s\"", lb.buf, om && !dot ? ".0" : "");
					strbuf_release(&lb);
				} else {
					snprintf(le, sizeof(le), "le=\"+Inf\"");
				}
				sample_line(out, f->name, "_bucket", s, le, (double)cum);
			}
			sample_line(out, f->name, "_sum", s, NULL, s->sum);
			sample_line(out, f->name, "_count", s, NULL, (double)cum);
		}
	}
	if (om)
		strbuf_adds(out, "# EOF\n");
}

const char *metrics_content_type(enum metrics_format fmt)
{
	return fmt == METRICS_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
					  : "text/plain; version=0.0.4; charset=utf-8";
}

/* The q of one media range ("type/sub;a=b;q=0.5"); 1 when absent. */
static double media_q(const char *p, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (p[i] != ';')
			continue;
		size_t j = i + 1;
		while (j < len && p[j] == ' ')
			j++;
		if (j + 1 < len && (p[j] == 'q' || p[j] == 'Q') && p[j + 1] == '=') {
			char num[16] = {0};
			size_t n = len - j - 2 < sizeof(num) - 1 ? len - j - 2 : sizeof(num) - 1;
			memcpy(num, p + j + 2, n);
			return strtod(num, NULL);
		}
	}
	return 1;
}

enum metrics_format metrics_negotiate(const char *accept)
{
	if (!accept)
		return METRICS_TEXT_004;
	double q_om = -1, q_text = -1;
	const char *p = accept;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		size_t tlen = strcspn(p, ";, ");
		if (tlen > len)
			tlen = len;
		double q = media_q(p, len);
		if (tlen == 28 && strncasecmp(p, "application/openmetrics-text", 28) == 0) {
			if (q > q_om)
				q_om = q;
		} else if ((tlen == 10 && strncasecmp(p, "text/plain", 10) == 0) ||
			   (tlen == 6 && strncasecmp(p, "text/*", 6) == 0) ||
			   (tlen == 3 && strncmp(p, "*/*", 3) == 0)) {
			if (q > q_text)
				q_text = q;
		}
		p += len;
	}
	return q_om > 0 && q_om >= q_text ? METRICS_OPENMETRICS : METRICS_TEXT_004;
}
