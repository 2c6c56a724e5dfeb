/* cli_table.c: what the CLI prints: aligned text tables, human-readable
 * units (ages like "3m20s", sizes like "1.2M"), RFC 3339 timestamps as the
 * API sends them, and --json output indented like jq's. */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/util.h"
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Tables                                                                   */

void cli__table_init(struct cli_table *t, const char *const *headers, size_t n_cols)
{
	assert(n_cols > 0);
	memset(t, 0, sizeof(*t));
	t->n_cols = n_cols;
	for (size_t i = 0; i < n_cols; i++)
		cli__table_add(t, headers[i]);
}

void cli__table_release(struct cli_table *t)
{
	for (size_t i = 0; i < t->n_cells; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

void cli__sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

static void add_owned(struct cli_table *t, char *cell)
{
	cli__sanitize(cell);
	t->cells = xgrow(t->cells, sizeof(*t->cells), t->n_cells + 1, &t->alloc_cells);
	t->cells[t->n_cells++] = cell;
}

void cli__table_add(struct cli_table *t, const char *cell)
{
	add_owned(t, xstrdup(cell ? cell : "-"));
}

void cli__table_addf(struct cli_table *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_owned(t, xvasprintf(fmt, ap));
	va_end(ap);
}

size_t cli__table_rows(const struct cli_table *t)
{
	return t->n_cells / t->n_cols - 1;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

void cli__table_render(const struct cli_table *t, struct strbuf *out)
{
	assert(t->n_cells % t->n_cols == 0);
	size_t *w = xcalloc(t->n_cols, sizeof(*w));
	for (size_t i = 0; i < t->n_cells; i++) {
		size_t cw = width(t->cells[i]);
		if (cw > w[i % t->n_cols])
			w[i % t->n_cols] = cw;
	}
	for (size_t i = 0; i < t->n_cells; i++) {
		size_t col = i % t->n_cols;
		strbuf_adds(out, t->cells[i]);
		if (col + 1 == t->n_cols) {
			/* Empty trailing cells must not leave trailing blanks. */
			while (out->len && out->buf[out->len - 1] == ' ')
				out->buf[--out->len] = '\0';
			strbuf_addc(out, '\n');
			continue;
		}
		for (size_t pad = width(t->cells[i]); pad < w[col] + 2; pad++)
			strbuf_addc(out, ' ');
	}
	free(w);
}

/* ------------------------------------------------------------------------ */
/* Units                                                                    */

void cli__format_age(int64_t ms, char *buf, size_t size)
{
	static const struct {
		char unit;
		int64_t ms;
	} units[] = {{'d', 86400000}, {'h', 3600000}, {'m', 60000}, {'s', 1000}};
	if (ms < 1000) {
		snprintf(buf, size, "0s");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (ms < units[i].ms)
			continue;
		long long major = ms / units[i].ms;
		if (i + 1 == ARRAY_SIZE(units)) {
			snprintf(buf, size, "%lld%c", major, units[i].unit);
			return;
		}
		long long minor = ms % units[i].ms / units[i + 1].ms;
		if (minor)
			snprintf(buf, size, "%lld%c%lld%c", major, units[i].unit, minor,
				 units[i + 1].unit);
		else
			snprintf(buf, size, "%lld%c", major, units[i].unit);
		return;
	}
}

void cli__format_bytes(int64_t bytes, char *buf, size_t size)
{
	static const char units[] = "KMGTPE";
	if (bytes < 1024) {
		snprintf(buf, size, "%lldB", (long long)(bytes < 0 ? 0 : bytes));
		return;
	}
	double v = (double)bytes;
	size_t u = 0;
	v /= 1024;
	/* Move up a unit when rounding would print "1024K". */
	while (v >= 1023.5 && u + 1 < sizeof(units) - 1) {
		v /= 1024;
		u++;
	}
	if (v < 9.95)
		snprintf(buf, size, "%.1f%c", v, units[u]);
	else
		snprintf(buf, size, "%.0f%c", v, units[u]);
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -EINVAL;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

static int expect(const char **p, char c)
{
	if (**p != c)
		return -EINVAL;
	(*p)++;
	return 0;
}

int cli__parse_time(const char *s, int64_t *ms)
{
	if (!s)
		return -EINVAL;
	const char *p = s;
	int Y, M, D, h, m, sec, frac = 0;
	if (digits(&p, 4, &Y) || expect(&p, '-') || digits(&p, 2, &M) || expect(&p, '-') ||
	    digits(&p, 2, &D))
		return -EINVAL;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -EINVAL;
	p++;
	if (digits(&p, 2, &h) || expect(&p, ':') || digits(&p, 2, &m) || expect(&p, ':') ||
	    digits(&p, 2, &sec))
		return -EINVAL;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
		return -EINVAL;
	if (*p == '.') {
		p++;
		int n = 0;
		for (; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 3)
				frac = frac * 10 + (*p - '0');
		if (n == 0)
			return -EINVAL;
		for (; n < 3; n++)
			frac *= 10;
	}
	int64_t offset_s = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;
		if (digits(&p, 2, &oh) || expect(&p, ':') || digits(&p, 2, &om))
			return -EINVAL;
		offset_s = sign * (oh * 3600 + om * 60);
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
			.tm_hour = h, .tm_min = m, .tm_sec = sec};
	time_t t = timegm(&tm);
	*ms = ((int64_t)t - offset_s) * 1000 + frac;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON output                                                              */

static void indent(struct strbuf *out, int depth)
{
	for (int i = 0; i < depth; i++)
		strbuf_adds(out, "  ");
}

/* Scalars and keys are serialised by the JSON adapter, so escaping stays in
 * one place; only the layout is done here. */
static void pretty(struct strbuf *out, const struct json *j, int depth)
{
	bool obj = json_is_object(j);
	if (!obj && !json_is_array(j)) {
		char *s = json_print(j, false);
		strbuf_adds(out, s);
		free(s);
		return;
	}
	if (!json_first(j)) {
		strbuf_adds(out, obj ? "{}" : "[]");
		return;
	}
	strbuf_addc(out, obj ? '{' : '[');
	for (const struct json *m = json_first(j); m; m = json_next(m)) {
		strbuf_addc(out, '\n');
		indent(out, depth + 1);
		if (obj) {
			struct json *key = json_string(json_key(m));
			pretty(out, key, 0);
			json_free(key);
			strbuf_adds(out, ": ");
		}
		pretty(out, m, depth + 1);
		if (json_next(m))
			strbuf_addc(out, ',');
	}
	strbuf_addc(out, '\n');
	indent(out, depth);
	strbuf_addc(out, obj ? '}' : ']');
}

void cli__json_pretty(const struct json *j, struct strbuf *out)
{
	pretty(out, j, 0);
}
