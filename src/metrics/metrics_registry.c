/* metrics_registry.c: the registry of metric families and series, and their
 * exposition in the Prometheus text format 0.0.4 and OpenMetrics 1.0.
 *
 * A scrape must stay cheap at 10,000 series, so each series keeps its label
 * set already escaped and rendered; exposition is then copying plus one
 * number per line. Series are found by a hash of family index and values. */
#include "metrics/metrics_internal.h"
#include "core/util.h"
#include <assert.h>
#include <math.h>
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
	/* Backward-shift: move later members of the probe run into the hole
	 * when their home slot does not lie between the hole and them. */
	size_t mask = m->cap - 1;
	size_t hole = (size_t)(s - m->slots);
	for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
		size_t home = m->slots[i].hash & mask;
		bool between = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
		if (!between) {
			m->slots[hole] = m->slots[i];
			hole = i;
		}
	}
	m->slots[hole] = (struct mx_map_slot){0};
}

void mx_map_release(struct mx_map *m)
{
	for (size_t k = 0; k < m->cap; k++)
		free(m->slots[k].key);
	free(m->slots);
	*m = (struct mx_map){0};
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

static void series_free(struct metrics_series *s)
{
	for (size_t k = 0; k < s->fam->n_labels; k++)
		free(s->values[k]);
	free(s->values);
	free(s->text);
	free(s->key);
	free(s->counts);
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
			series_free(f->series[j]);
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
	mx_map_release(&reg->series);
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

/* The map key of a series: the family index, then each value followed by
 * 0xff, a byte that never occurs in UTF-8. Returns the length; the key is
 * in buf when it fits in size, else in *heap (caller frees). */
static size_t series_key(const struct metrics_family *f, const char *const *values, char *buf,
			 size_t size, char **heap)
{
	size_t need = 4;
	for (size_t k = 0; k < f->n_labels; k++)
		need += strlen(values[k]) + 1;
	char *p = need <= size ? buf : (*heap = xmalloc(need));
	uint32_t idx = (uint32_t)f->index;
	memcpy(p, &idx, 4);
	size_t at = 4;
	for (size_t k = 0; k < f->n_labels; k++) {
		size_t l = strlen(values[k]);
		memcpy(p + at, values[k], l);
		at += l;
		p[at++] = (char)0xff;
	}
	return at;
}

struct metrics_series *metrics_series_get(struct metrics_family *f, const char *const *values)
{
	struct metrics_registry *reg = f->reg;
	char buf[512];
	char *heap = NULL;
	size_t len = series_key(f, values, buf, sizeof(buf), &heap);
	const char *key = heap ? heap : buf;
	struct metrics_series *s = mx_map_get(&reg->series, key, len);
	if (s) {
		free(heap);
		return s;
	}
	s = xcalloc(1, sizeof(*s));
	s->fam = f;
	s->values = xcalloc(f->n_labels ? f->n_labels : 1, sizeof(char *));
	struct strbuf t;
	strbuf_init(&t, 64);
	for (size_t k = 0; k < f->n_labels; k++) {
		s->values[k] = xstrdup(values[k]);
		strbuf_addf(&t, "%s%s=\"", k ? "," : "", f->labels[k]);
		mx_escape(&t, values[k], true);
		strbuf_addc(&t, '"');
	}
	s->text = strbuf_detach(&t, &s->text_len);
	s->key = xmalloc(len);
	memcpy(s->key, key, len);
	s->key_len = len;
	free(heap);
	if (f->type == METRICS_HISTOGRAM)
		s->counts = xcalloc(f->n_bounds + 1, sizeof(uint64_t));
	s->gen = reg->gen;
	s->index = f->n_series;
	f->series = xgrow(f->series, sizeof(*f->series), f->n_series + 1, &f->alloc_series);
	f->series[f->n_series++] = s;
	mx_map_put(&reg->series, s->key, s->key_len, s);
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
			mx_map_del(&reg->series, s->key, s->key_len);
			series_free(s);
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
	strbuf_adds(out, name);
	if (suffix)
		strbuf_adds(out, suffix);
	if (s->text_len || extra) {
		strbuf_addc(out, '{');
		strbuf_add(out, s->text, s->text_len);
		if (extra) {
			if (s->text_len)
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
