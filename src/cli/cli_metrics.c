/* cli_metrics.c: the metrics commands: `metrics APP` (a summary of an
 * app's history with sparklines), `top` (a live view of apps and instances,
 * or one plain snapshot when stdout is not a terminal), and `export
 * grafana` (a dashboard for the metric names of doc/metrics.md). They read
 * the daemon only through GET /v1/apps, /v1/instances and
 * /v1/metrics/query. */
#include "cli/cli_internal.h"
#include "compat/http.h"
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Queries                                                                  */

/* Appends "?key=value" or "&key=value", both encoded. */
static void qadd(struct strbuf *sb, const char *key, const char *value)
{
	char *k = http_url_encode(key), *v = http_url_encode(value);
	strbuf_addf(sb, "%c%s=%s", strchr(sb->buf, '?') ? '&' : '?', k, v);
	free(k);
	free(v);
}

struct mquery {
	const char *name, *fn;
	const char *app;  /* match[app], or NULL */
	const char *code; /* match[code], or NULL */
	const char *start, *end, *step, *window;
};

/* Runs one query, summed by app. CLI_EXIT_OK with *res filled or the exit
 * code (the error printed). */
static int mquery_run(struct cli *c, const struct mquery *q, struct cli_response *res)
{
	struct strbuf p;
	strbuf_init(&p, 256);
	strbuf_adds(&p, "/v1/metrics/query");
	qadd(&p, "name", q->name);
	qadd(&p, "fn", q->fn);
	qadd(&p, "by", "app");
	if (q->app)
		qadd(&p, "match[app]", q->app);
	if (q->code)
		qadd(&p, "match[code]", q->code);
	if (q->start)
		qadd(&p, "start", q->start);
	if (q->end)
		qadd(&p, "end", q->end);
	if (q->step)
		qadd(&p, "step", q->step);
	if (q->window)
		qadd(&p, "window", q->window);
	int rc = cli__call(c, "GET", p.buf, NULL, res);
	strbuf_release(&p);
	return rc;
}

/* The newest value per app of a by-app answer. */
static bool app_value(const struct json *res, const char *app, double *v)
{
	for (const struct json *s = json_first(json_get(res, "series")); s; s = json_next(s)) {
		if (!str_eq(json_get_str(json_get(s, "labels"), "app"), app))
			continue;
		const struct json *pts = json_get(s, "points");
		size_t n = json_size(pts);
		if (!n)
			return false;
		const struct json *last = json_at(json_at(pts, n - 1), 1);
		if (!json_is_number(last))
			return false;
		*v = json_num(last);
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------------ */
/* Units                                                                    */

enum unit { U_RATE, U_PERCENT, U_SECONDS, U_CORES, U_BYTES, U_COUNT };

static void fmt_value(enum unit u, double v, char *buf, size_t size)
{
	if (isnan(v)) {
		snprintf(buf, size, "-");
		return;
	}
	switch (u) {
	case U_RATE:
		snprintf(buf, size, v < 10 ? "%.2f" : "%.1f", v);
		break;
	case U_PERCENT:
		snprintf(buf, size, "%.1f%%", v * 100);
		break;
	case U_CORES:
		snprintf(buf, size, "%.1f%%", v * 100);
		break;
	case U_SECONDS:
		if (v < 0.001)
			snprintf(buf, size, "%.0fus", v * 1e6);
		else if (v < 1)
			snprintf(buf, size, "%.1fms", v * 1000);
		else
			snprintf(buf, size, "%.2fs", v);
		break;
	case U_BYTES:
		cli__format_bytes((int64_t)v, buf, size);
		break;
	case U_COUNT:
		snprintf(buf, size, "%.0f", v);
		break;
	}
}

/* Eight levels from the lowest to the highest value; a space for a gap.
 * Values that are all >= 0 are scaled from 0 so that a flat line reads as
 * its height, not as noise. */
static void sparkline(const double *v, size_t n, struct strbuf *out)
{
	static const char *const bars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
	double lo = INFINITY, hi = -INFINITY;
	for (size_t k = 0; k < n; k++)
		if (!isnan(v[k])) {
			lo = v[k] < lo ? v[k] : lo;
			hi = v[k] > hi ? v[k] : hi;
		}
	if (lo >= 0)
		lo = 0;
	for (size_t k = 0; k < n; k++) {
		if (isnan(v[k])) {
			strbuf_addc(out, ' ');
			continue;
		}
		int level = hi > lo ? (int)lround((v[k] - lo) / (hi - lo) * 7) : 0;
		strbuf_adds(out, bars[level < 0 ? 0 : level > 7 ? 7 : level]);
	}
}

/* ------------------------------------------------------------------------ */
/* metrics APP                                                              */

#define SPARK_POINTS 60

struct row {
	const char *title, *key;
	const char *name, *fn, *code;
	enum unit unit;
};

static const struct row rows[] = {
	{"requests/s", "requests_per_second", "paasops_http_requests_total", "rate", NULL, U_RATE},
	{"5xx/s", "errors_per_second", "paasops_http_requests_total", "rate", "5xx", U_RATE},
	{"error ratio", "error_ratio", NULL, NULL, NULL, U_PERCENT}, /* 5xx/s over requests/s */
	{"p50 latency", "p50_seconds", "paasops_http_request_duration_seconds", "p50", NULL, U_SECONDS},
	{"p95 latency", "p95_seconds", "paasops_http_request_duration_seconds", "p95", NULL, U_SECONDS},
	{"cpu", "cpu_cores", "paasops_instance_cpu_usage_ratio", "avg", NULL, U_CORES},
	{"memory", "memory_bytes", "paasops_instance_resident_memory_bytes", "avg", NULL, U_BYTES},
	{"ready", "ready_instances", "paasops_replicas_ready", "min", NULL, U_COUNT},
	{"restarts/s", "restarts_per_second", "paasops_instance_restarts_total", "rate", NULL, U_RATE},
};

int cli__cmd_metrics(struct cli *c)
{
	const char *app = c->inv->pos[0];
	const char *since_s = cli__flag(c->inv, "since");
	int64_t since = 3600 * 1000;
	if (since_s && (duration_parse(since_s, &since) < 0 || since < 10000))
		return cli__usage_error(c, "invalid --since '%s' (a duration of at least 10s, like 15m or 1h)",
					since_s);
	/* The app must exist: a clear 404 instead of an empty summary. */
	int rc = cli__app_exists(c, app);
	if (rc)
		return rc;
	struct cli_response res;

	int64_t step = since / SPARK_POINTS;
	step = step < 1000 ? 1000 : (step + 999) / 1000 * 1000;
	int64_t now = time_wall_ms() / 1000 * 1000;
	int64_t start = now - step * (SPARK_POINTS - 1);
	char start_s[32], end_s[32], step_s[32];
	snprintf(start_s, sizeof(start_s), "%lld", (long long)(start / 1000));
	snprintf(end_s, sizeof(end_s), "%lld", (long long)(now / 1000));
	snprintf(step_s, sizeof(step_s), "%lld", (long long)(step / 1000));

	double v[ARRAY_SIZE(rows)][SPARK_POINTS];
	for (size_t r = 0; r < ARRAY_SIZE(rows); r++) {
		for (size_t k = 0; k < SPARK_POINTS; k++)
			v[r][k] = NAN;
		if (!rows[r].name)
			continue;
		struct mquery q = {rows[r].name, rows[r].fn, app, rows[r].code, start_s, end_s, step_s, NULL};
		if ((rc = mquery_run(c, &q, &res)))
			return rc;
		const struct json *s = json_first(json_get(res.json, "series"));
		for (const struct json *p = json_first(json_get(s, "points")); p; p = json_next(p)) {
			double t = json_num(json_at(p, 0));
			const struct json *val = json_at(p, 1);
			long idx = lround((t * 1000 - (double)start) / (double)step);
			if (idx >= 0 && idx < SPARK_POINTS && json_is_number(val))
				v[r][idx] = json_num(val);
		}
		cli__response_release(&res);
	}
	/* The error ratio, where there were requests. */
	for (size_t k = 0; k < SPARK_POINTS; k++)
		if (!isnan(v[0][k]) && v[0][k] > 0)
			v[2][k] = isnan(v[1][k]) ? 0 : v[1][k] / v[0][k];

	if (c->inv->json) {
		struct json *o = json_object();
		json_set_str(o, "app", app);
		json_set_num(o, "start", (double)start / 1000.0);
		json_set_num(o, "step", (double)step / 1000.0);
		struct json *series = json_set(o, "series", json_object());
		for (size_t r = 0; r < ARRAY_SIZE(rows); r++) {
			struct json *arr = json_set(series, rows[r].key, json_array());
			for (size_t k = 0; k < SPARK_POINTS; k++)
				json_append(arr, isnan(v[r][k]) ? json_null() : json_number(v[r][k]));
		}
		cli__print_json(c, o, true);
		json_free(o);
		return CLI_EXIT_OK;
	}
	char span[32], every[32];
	duration_format(since, span, sizeof(span));
	duration_format(step, every, sizeof(every));
	fprintf(c->out, "app %s, last %s (one point every %s)\n\n", app, span, every);
	fprintf(c->out, "%-12s %9s %9s %9s %9s  %s\n", "", "NOW", "MIN", "AVG", "MAX", "HISTORY");
	for (size_t r = 0; r < ARRAY_SIZE(rows); r++) {
		double lo = NAN, hi = NAN, sum = 0, last = NAN;
		size_t n = 0;
		for (size_t k = 0; k < SPARK_POINTS; k++) {
			double x = v[r][k];
			if (isnan(x))
				continue;
			lo = isnan(lo) || x < lo ? x : lo;
			hi = isnan(hi) || x > hi ? x : hi;
			sum += x;
			n++;
			last = x;
		}
		char a[32], b[32], cc[32], d[32];
		fmt_value(rows[r].unit, last, a, sizeof(a));
		fmt_value(rows[r].unit, lo, b, sizeof(b));
		fmt_value(rows[r].unit, n ? sum / (double)n : NAN, cc, sizeof(cc));
		fmt_value(rows[r].unit, hi, d, sizeof(d));
		struct strbuf sl;
		strbuf_init(&sl, 256);
		sparkline(v[r], SPARK_POINTS, &sl);
		fprintf(c->out, "%-12s %9s %9s %9s %9s  %s\n", rows[r].title, a, b, cc, d, sl.buf);
		strbuf_release(&sl);
	}
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* top                                                                      */

/* Set by signals while `top` runs live; the CLI's other mutable global
 * besides follow_interrupted in cli_commands.c. */
static volatile sig_atomic_t top_stop, top_resized;

static void top_on_stop(int sig)
{
	(void)sig;
	top_stop = 1;
}

static void top_on_winch(int sig)
{
	(void)sig;
	top_resized = 1;
}

enum top_sort { SORT_CPU, SORT_MEM, SORT_RPS };

struct top_app {
	const char *name;
	const char *state;
	int64_t ready, want;
	double cpu, rps, err, p95; /* NaN: no data */
	int64_t mem;
};

struct top_inst {
	const struct json *in;
	double cpu, app_rps;
	int64_t mem;
};

struct top_data {
	struct cli_response apps, insts, rps, errs, p95;
	struct top_app *a;
	size_t n_a;
	struct top_inst *i;
	size_t n_i;
};

static void top_data_release(struct top_data *d)
{
	cli__response_release(&d->apps);
	cli__response_release(&d->insts);
	cli__response_release(&d->rps);
	cli__response_release(&d->errs);
	cli__response_release(&d->p95);
	free(d->a);
	free(d->i);
	memset(d, 0, sizeof(*d));
}

static enum top_sort sort_key;

static int cmp_double_desc(double x, double y)
{
	if (isnan(x))
		x = -1;
	if (isnan(y))
		y = -1;
	return (x < y) - (x > y);
}

static int app_cmp(const void *a, const void *b)
{
	const struct top_app *x = a, *y = b;
	int r = sort_key == SORT_CPU ? cmp_double_desc(x->cpu, y->cpu)
		: sort_key == SORT_MEM ? cmp_double_desc((double)x->mem, (double)y->mem)
				       : cmp_double_desc(x->rps, y->rps);
	return r ? r : strcmp(x->name, y->name);
}

static int inst_cmp(const void *a, const void *b)
{
	const struct top_inst *x = a, *y = b;
	int r = sort_key == SORT_CPU ? cmp_double_desc(x->cpu, y->cpu)
		: sort_key == SORT_MEM ? cmp_double_desc((double)x->mem, (double)y->mem)
				       : cmp_double_desc(x->app_rps, y->app_rps);
	return r ? r : strcmp(json_get_str(x->in, "id") ? json_get_str(x->in, "id") : "",
			      json_get_str(y->in, "id") ? json_get_str(y->in, "id") : "");
}

static int top_fetch(struct cli *c, struct top_data *d)
{
	memset(d, 0, sizeof(*d));
	int rc;
	struct mquery q = {"paasops_http_requests_total", "rate", NULL, NULL, "now", "now", "1", "10s"};
	if ((rc = cli__call(c, "GET", "/v1/apps", NULL, &d->apps)) ||
	    (rc = cli__call(c, "GET", "/v1/instances", NULL, &d->insts)) || (rc = mquery_run(c, &q, &d->rps)))
		return rc;
	q.code = "5xx";
	if ((rc = mquery_run(c, &q, &d->errs)))
		return rc;
	q = (struct mquery){"paasops_http_request_duration_seconds", "p95", NULL, NULL, "now", "now", "1", "30s"};
	if ((rc = mquery_run(c, &q, &d->p95)))
		return rc;
	const struct json *apps = json_get(d->apps.json, "apps");
	d->a = xcalloc(json_size(apps) + 1, sizeof(*d->a));
	for (const struct json *a = json_first(apps); a; a = json_next(a)) {
		struct top_app *t = &d->a[d->n_a++];
		t->name = json_get_str(a, "name") ? json_get_str(a, "name") : "?";
		cli__app_counts(a, &t->ready, &t->want);
		t->state = json_true(json_get(a, "stopped")) ? "stopped"
			   : t->want == 0		     ? "idle"
			   : t->ready >= t->want	     ? "running"
							     : "degraded";
		t->rps = t->err = t->p95 = NAN;
		double v;
		if (app_value(d->rps.json, t->name, &t->rps) && t->rps > 0)
			t->err = app_value(d->errs.json, t->name, &v) ? v / t->rps : 0;
		app_value(d->p95.json, t->name, &t->p95);
	}
	const struct json *insts = json_get(d->insts.json, "instances");
	d->i = xcalloc(json_size(insts) + 1, sizeof(*d->i));
	for (const struct json *in = json_first(insts); in; in = json_next(in)) {
		struct top_inst *t = &d->i[d->n_i++];
		t->in = in;
		const struct json *cpu = json_get(in, "cpu_percent");
		t->cpu = json_is_number(cpu) ? json_num(cpu) / 100.0 : NAN;
		t->mem = 0;
		json_get_int(json_get(in, "rss_bytes"), &t->mem);
		t->app_rps = NAN;
		for (size_t k = 0; k < d->n_a; k++)
			if (str_eq(d->a[k].name, json_get_str(in, "app"))) {
				struct top_app *a = &d->a[k];
				a->cpu = (isnan(a->cpu) || a->cpu == 0 ? 0 : a->cpu) + (isnan(t->cpu) ? 0 : t->cpu);
				a->mem += t->mem;
				t->app_rps = a->rps;
			}
	}
	qsort(d->a, d->n_a, sizeof(*d->a), app_cmp);
	qsort(d->i, d->n_i, sizeof(*d->i), inst_cmp);
	return CLI_EXIT_OK;
}

/* Both tables as text. */
static void top_render(const struct top_data *d, struct strbuf *out)
{
	static const char *const ah[] = {"APP", "STATE", "READY", "CPU", "MEM", "REQ/S", "ERR%", "P95"};
	static const char *const ih[] = {"INSTANCE", "STATE", "CPU", "MEM", "RESTARTS", "UPTIME"};
	struct cli_table t;
	char buf[32];
	cli__table_init(&t, ah, ARRAY_SIZE(ah));
	for (size_t k = 0; k < d->n_a; k++) {
		const struct top_app *a = &d->a[k];
		cli__table_add(&t, a->name);
		cli__table_add(&t, a->state);
		cli__table_addf(&t, "%lld/%lld", (long long)a->ready, (long long)a->want);
		fmt_value(U_CORES, a->cpu, buf, sizeof(buf));
		cli__table_add(&t, buf);
		fmt_value(U_BYTES, (double)a->mem, buf, sizeof(buf));
		cli__table_add(&t, buf);
		fmt_value(U_RATE, a->rps, buf, sizeof(buf));
		cli__table_add(&t, buf);
		fmt_value(U_PERCENT, a->err, buf, sizeof(buf));
		cli__table_add(&t, buf);
		fmt_value(U_SECONDS, a->p95, buf, sizeof(buf));
		cli__table_add(&t, buf);
	}
	cli__table_render(&t, out);
	cli__table_release(&t);
	strbuf_addc(out, '\n');
	cli__table_init(&t, ih, ARRAY_SIZE(ih));
	for (size_t k = 0; k < d->n_i; k++) {
		const struct top_inst *i = &d->i[k];
		const struct json *in = i->in;
		bool running = json_is_number(json_get(in, "pid"));
		cli__table_add(&t, json_get_str(in, "id"));
		cli__table_add(&t, json_get_str(in, "state"));
		fmt_value(U_CORES, running ? i->cpu : NAN, buf, sizeof(buf));
		cli__table_add(&t, buf);
		fmt_value(U_BYTES, running ? (double)i->mem : NAN, buf, sizeof(buf));
		cli__table_add(&t, buf);
		int64_t restarts = 0, up;
		json_get_int(json_get(in, "restarts"), &restarts);
		cli__table_addf(&t, "%lld", (long long)restarts);
		if (running && json_get_int(json_get(in, "uptime_ms"), &up) == 0) {
			cli__format_age(up, buf, sizeof(buf));
			cli__table_add(&t, buf);
		} else {
			cli__table_add(&t, NULL);
		}
	}
	cli__table_render(&t, out);
	cli__table_release(&t);
}

/* Writes text to the terminal from the top-left corner, each line cut to
 * the width and the rest of the screen cleared, in one write. */
static void top_paint(const char *text)
{
	struct winsize ws = {0};
	int cols = 80, lines = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
		cols = ws.ws_col;
		lines = ws.ws_row;
	}
	struct strbuf sb;
	strbuf_init(&sb, 8192);
	strbuf_adds(&sb, "\x1b[H");
	const char *p = text;
	for (int row = 0; *p && row < lines; row++) {
		size_t n = strcspn(p, "\n");
		/* Columns are code points: the tables are UTF-8. */
		size_t bytes = 0;
		for (int col = 0; bytes < n && col < cols; col++) {
			bytes++;
			while (bytes < n && ((unsigned char)p[bytes] & 0xc0) == 0x80)
				bytes++;
		}
		if (row)
			strbuf_adds(&sb, "\r\n");
		strbuf_add(&sb, p, bytes);
		strbuf_adds(&sb, "\x1b[K");
		p += n + (p[n] == '\n');
	}
	strbuf_adds(&sb, "\x1b[J");
	size_t off = 0;
	while (off < sb.len) {
		ssize_t w = write(STDOUT_FILENO, sb.buf + off, sb.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	strbuf_release(&sb);
}

static void write_str(const char *s)
{
	size_t n = strlen(s);
	while (n) {
		ssize_t w = write(STDOUT_FILENO, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static int top_live(struct cli *c)
{
	struct termios saved, raw;
	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return cli__fail(c, "cannot read the terminal's settings: %s", strerror(errno));
	struct sigaction sa = {.sa_handler = top_on_stop}, sw = {.sa_handler = top_on_winch}, old[4];
	sigemptyset(&sa.sa_mask);
	sigemptyset(&sw.sa_mask);
	sigaction(SIGINT, &sa, &old[0]);
	sigaction(SIGTERM, &sa, &old[1]);
	sigaction(SIGHUP, &sa, &old[2]);
	sigaction(SIGWINCH, &sw, &old[3]);
	top_stop = top_resized = 0;
	raw = saved;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO); /* ISIG stays: Ctrl-C is SIGINT */
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
	write_str("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
	/* Errors are kept until the screen is back. */
	char *errbuf = NULL;
	size_t errlen = 0;
	FILE *real_err = c->err, *mem = open_memstream(&errbuf, &errlen);
	if (mem)
		c->err = mem;
	c->client.stop = &top_stop;
	int rc = CLI_EXIT_OK;
	static const char *const sort_names[] = {"cpu", "memory", "req/s"};
	while (!top_stop) {
		struct top_data d;
		rc = top_fetch(c, &d);
		if (rc) {
			top_data_release(&d);
			if (top_stop)
				rc = CLI_EXIT_OK;
			break;
		}
		struct strbuf text;
		strbuf_init(&text, 4096);
		char when[40];
		time_format_iso(time_wall_ms(), when, sizeof(when));
		strbuf_addf(&text, "paasops top  %.19s  %zu apps, %zu instances   sort: %s   keys: c cpu, "
				   "m memory, r req/s, q quit\n\n",
			    when, d.n_a, d.n_i, sort_names[sort_key]);
		top_render(&d, &text);
		top_paint(text.buf);
		strbuf_release(&text);
		top_data_release(&d);
		/* Wait a second for a key. */
		int64_t until = time_mono_ms() + 1000;
		bool redraw = false;
		while (!top_stop && !redraw) {
			int64_t left = until - time_mono_ms();
			if (left <= 0)
				break;
			struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
			int pr = poll(&pfd, 1, (int)left);
			if (pr < 0 && errno == EINTR) {
				if (top_resized) {
					top_resized = 0;
					redraw = true;
				}
				continue;
			}
			if (pr <= 0)
				break;
			char keys[32];
			ssize_t n = read(STDIN_FILENO, keys, sizeof(keys));
			if (n == 0) {
				top_stop = 1; /* the terminal went away */
				break;
			}
			for (ssize_t k = 0; k < n; k++) {
				char ch = keys[k];
				if (ch == 'q' || ch == 'Q')
					top_stop = 1;
				else if (ch == 'c' || ch == 'm' || ch == 'r') {
					sort_key = ch == 'c' ? SORT_CPU : ch == 'm' ? SORT_MEM : SORT_RPS;
					redraw = true;
				}
			}
		}
	}
	write_str("\x1b[?25h\x1b[?1049l");
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	sigaction(SIGINT, &old[0], NULL);
	sigaction(SIGTERM, &old[1], NULL);
	sigaction(SIGHUP, &old[2], NULL);
	sigaction(SIGWINCH, &old[3], NULL);
	c->client.stop = NULL;
	if (mem) {
		fclose(mem);
		c->err = real_err;
		if (errlen)
			fwrite(errbuf, 1, errlen, real_err);
		free(errbuf);
	}
	return rc;
}

int cli__cmd_top(struct cli *c)
{
	const char *sort = cli__flag(c->inv, "sort");
	if (sort) {
		if (!strcmp(sort, "cpu"))
			sort_key = SORT_CPU;
		else if (!strcmp(sort, "mem") || !strcmp(sort, "memory"))
			sort_key = SORT_MEM;
		else if (!strcmp(sort, "rps") || !strcmp(sort, "req"))
			sort_key = SORT_RPS;
		else
			return cli__usage_error(c, "invalid --sort '%s' (cpu, mem or rps)", sort);
	}
	bool live = !cli__flag(c->inv, "once") && !c->inv->json && c->out == stdout &&
		    isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
	if (live)
		return top_live(c);
	struct top_data d;
	int rc = top_fetch(c, &d);
	if (rc) {
		top_data_release(&d);
		return rc;
	}
	if (c->inv->json) {
		struct json *o = json_object();
		struct json *apps = json_set(o, "apps", json_array());
		for (size_t k = 0; k < d.n_a; k++) {
			struct json *a = json_append(apps, json_object());
			const struct top_app *t = &d.a[k];
			json_set_str(a, "name", t->name);
			json_set_str(a, "state", t->state);
			json_set_int(a, "ready", t->ready);
			json_set_int(a, "instances", t->want);
			json_set(a, "cpu_cores", isnan(t->cpu) ? json_null() : json_number(t->cpu));
			json_set_int(a, "memory_bytes", t->mem);
			json_set(a, "requests_per_second", isnan(t->rps) ? json_null() : json_number(t->rps));
			json_set(a, "error_ratio", isnan(t->err) ? json_null() : json_number(t->err));
			json_set(a, "p95_seconds", isnan(t->p95) ? json_null() : json_number(t->p95));
		}
		json_set(o, "instances", json_dup(json_get(d.insts.json, "instances")));
		cli__print_json(c, o, true);
		json_free(o);
	} else {
		struct strbuf text;
		strbuf_init(&text, 4096);
		top_render(&d, &text);
		fputs(text.buf, c->out);
		strbuf_release(&text);
	}
	top_data_release(&d);
	return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* export grafana                                                           */

struct gpanel {
	const char *title, *unit;
	const char *expr[3], *legend[3];
};

#define RI "[$__rate_interval]"
#define APPSEL "app=~\"$app\""

static const struct {
	const char *row;
	struct gpanel panels[6];
} dash[] = {
	{"Requests (rate, errors, duration)",
	 {{"Requests per second by status class", "reqps",
	   {"sum by (app, code) (rate(paasops_http_requests_total{" APPSEL "}" RI "))"}, {"{{app}} {{code}}"}},
	  {"5xx ratio", "percentunit",
	   {"sum by (app) (rate(paasops_http_requests_total{" APPSEL ",code=\"5xx\"}" RI ")) / sum by (app) "
	    "(rate(paasops_http_requests_total{" APPSEL "}" RI "))"},
	   {"{{app}}"}},
	  {"Latency", "s",
	   {"histogram_quantile(0.5, sum by (app, le) (rate(paasops_http_request_duration_seconds_bucket{" APPSEL "}" RI ")))",
	    "histogram_quantile(0.95, sum by (app, le) (rate(paasops_http_request_duration_seconds_bucket{" APPSEL "}" RI ")))",
	    "histogram_quantile(0.99, sum by (app, le) (rate(paasops_http_request_duration_seconds_bucket{" APPSEL "}" RI ")))"},
	   {"{{app}} p50", "{{app}} p95", "{{app}} p99"}},
	  {"In flight", "short", {"sum by (app) (paasops_http_requests_in_flight{" APPSEL "})"}, {"{{app}}"}},
	  {"Traffic", "Bps",
	   {"sum by (app) (rate(paasops_http_request_bytes_total{" APPSEL "}" RI "))",
	    "sum by (app) (rate(paasops_http_response_bytes_total{" APPSEL "}" RI "))"},
	   {"{{app}} in", "{{app}} out"}},
	  {"Backend trouble", "short",
	   {"sum by (app) (rate(paasops_http_backend_connect_errors_total{" APPSEL "}" RI "))",
	    "sum by (app) (rate(paasops_http_retries_total{" APPSEL "}" RI "))",
	    "sum by (app) (increase(paasops_http_backend_ejections_total{" APPSEL "}" RI "))"},
	   {"{{app}} connect errors/s", "{{app}} retries/s", "{{app}} ejections"}}}},
	{"Instances",
	 {{"Replicas", "short",
	   {"sum by (app, process) (paasops_replicas_ready{" APPSEL "})",
	    "sum by (app, process) (paasops_replicas_desired{" APPSEL "})"},
	   {"{{app}}.{{process}} ready", "{{app}}.{{process}} desired"}},
	  {"CPU (1 = one core)", "percentunit", {"paasops_instance_cpu_usage_ratio{" APPSEL "}"}, {"{{instance}}"}},
	  {"Memory", "bytes",
	   {"paasops_instance_resident_memory_bytes{" APPSEL "}", "paasops_instance_memory_limit_bytes{" APPSEL "}"},
	   {"{{instance}}", "{{instance}} limit"}},
	  {"Restarts", "short", {"increase(paasops_instance_restarts_total{" APPSEL "}" RI ")"}, {"{{instance}}"}},
	  {"States", "short", {"sum by (app, state) (paasops_instance_state{" APPSEL "})"}, {"{{app}} {{state}}"}},
	  {"Open files and threads", "short",
	   {"paasops_instance_open_fds{" APPSEL "}", "paasops_instance_threads{" APPSEL "}"},
	   {"{{instance}} fds", "{{instance}} threads"}}}},
	{"Host",
	 {{"CPU busy", "percentunit",
	   {"1 - sum(rate(paasops_host_cpu_seconds_total{mode=\"idle\"}" RI ")) / max(paasops_host_cpus)"}, {"busy"}},
	  {"Memory", "bytes",
	   {"paasops_host_memory_total_bytes - paasops_host_memory_available_bytes", "paasops_host_memory_total_bytes"},
	   {"used", "total"}},
	  {"Load", "short", {"paasops_host_load1", "paasops_host_load5", "paasops_host_load15"}, {"1m", "5m", "15m"}},
	  {"Data dir disk used", "percentunit",
	   {"1 - paasops_host_disk_free_bytes / paasops_host_disk_total_bytes"}, {"{{path}}"}},
	  {"Network", "Bps",
	   {"rate(paasops_host_network_receive_bytes_total{device!=\"lo\"}" RI ")",
	    "rate(paasops_host_network_transmit_bytes_total{device!=\"lo\"}" RI ")"},
	   {"{{device}} in", "{{device}} out"}}}},
	{"paasops daemon",
	 {{"Daemon CPU", "percentunit", {"rate(paasops_process_cpu_seconds_total" RI ")"}, {"cpu"}},
	  {"Daemon memory", "bytes",
	   {"paasops_process_resident_memory_bytes", "paasops_metrics_history_memory_bytes"},
	   {"resident", "metrics history"}},
	  {"Loop lag and sampling", "s",
	   {"paasops_loop_lag_seconds", "paasops_metrics_sample_duration_seconds", "paasops_metrics_scrape_duration_seconds"},
	   {"loop lag", "sampling", "scrape render"}},
	  {"Drops", "short",
	   {"increase(paasops_metrics_history_dropped_series_total" RI ")",
	    "increase(paasops_router_access_log_dropped_total" RI ")"},
	   {"history series dropped", "access log lines dropped"}}}},
};

/* The dashboard as JSON (caller frees). */
static struct json *grafana_dashboard(void)
{
	struct json *d = json_object();
	struct json *inputs = json_set(d, "__inputs", json_array());
	struct json *in = json_append(inputs, json_object());
	json_set_str(in, "name", "DS_PROMETHEUS");
	json_set_str(in, "label", "Prometheus");
	json_set_str(in, "type", "datasource");
	json_set_str(in, "pluginId", "prometheus");
	json_set_str(in, "pluginName", "Prometheus");
	json_set_str(d, "title", "paasops");
	json_set_str(d, "uid", "paasops");
	json_set_str(d, "description", "Apps, instances, host and daemon of a paasops node (doc/metrics.md)");
	json_set_int(d, "schemaVersion", 38);
	json_set_int(d, "version", 1);
	json_set_bool(d, "editable", true);
	json_set_str(d, "refresh", "10s");
	struct json *tags = json_set(d, "tags", json_array());
	json_append(tags, json_string("paasops"));
	struct json *time = json_set(d, "time", json_object());
	json_set_str(time, "from", "now-1h");
	json_set_str(time, "to", "now");
	struct json *list = json_set(json_set(d, "templating", json_object()), "list", json_array());
	struct json *ds = json_append(list, json_object());
	json_set_str(ds, "name", "datasource");
	json_set_str(ds, "label", "Data source");
	json_set_str(ds, "type", "datasource");
	json_set_str(ds, "query", "prometheus");
	struct json *cur = json_set(ds, "current", json_object());
	json_set_str(cur, "text", "${DS_PROMETHEUS}");
	json_set_str(cur, "value", "${DS_PROMETHEUS}");
	struct json *app = json_append(list, json_object());
	json_set_str(app, "name", "app");
	json_set_str(app, "label", "App");
	json_set_str(app, "type", "query");
	struct json *ads = json_set(app, "datasource", json_object());
	json_set_str(ads, "type", "prometheus");
	json_set_str(ads, "uid", "${datasource}");
	json_set_str(app, "query", "label_values(paasops_replicas_desired, app)");
	struct json *qo = json_set(app, "definition", json_string("label_values(paasops_replicas_desired, app)"));
	(void)qo;
	json_set_int(app, "refresh", 2);
	json_set_bool(app, "includeAll", true);
	json_set_bool(app, "multi", true);
	json_set_str(app, "allValue", ".*");

	struct json *panels = json_set(d, "panels", json_array());
	int id = 1, y = 0;
	for (size_t r = 0; r < ARRAY_SIZE(dash); r++) {
		struct json *row = json_append(panels, json_object());
		json_set_int(row, "id", id++);
		json_set_str(row, "type", "row");
		json_set_str(row, "title", dash[r].row);
		json_set_bool(row, "collapsed", false);
		json_set(row, "panels", json_array());
		struct json *gp = json_set(row, "gridPos", json_object());
		json_set_int(gp, "h", 1);
		json_set_int(gp, "w", 24);
		json_set_int(gp, "x", 0);
		json_set_int(gp, "y", y++);
		for (size_t k = 0; k < ARRAY_SIZE(dash[r].panels) && dash[r].panels[k].title; k++) {
			const struct gpanel *p = &dash[r].panels[k];
			struct json *o = json_append(panels, json_object());
			json_set_int(o, "id", id++);
			json_set_str(o, "type", "timeseries");
			json_set_str(o, "title", p->title);
			struct json *pds = json_set(o, "datasource", json_object());
			json_set_str(pds, "type", "prometheus");
			json_set_str(pds, "uid", "${datasource}");
			struct json *g = json_set(o, "gridPos", json_object());
			json_set_int(g, "h", 8);
			json_set_int(g, "w", 8);
			json_set_int(g, "x", (int64_t)(k % 3) * 8);
			json_set_int(g, "y", y + (int)(k / 3) * 8);
			struct json *defaults = json_set(json_set(o, "fieldConfig", json_object()), "defaults", json_object());
			json_set_str(defaults, "unit", p->unit);
			json_set(json_get(o, "fieldConfig"), "overrides", json_array());
			struct json *targets = json_set(o, "targets", json_array());
			for (size_t e = 0; e < 3 && p->expr[e]; e++) {
				struct json *t = json_append(targets, json_object());
				char ref[2] = {(char)('A' + e), 0};
				json_set_str(t, "refId", ref);
				json_set_str(t, "expr", p->expr[e]);
				json_set_str(t, "legendFormat", p->legend[e]);
				struct json *tds = json_set(t, "datasource", json_object());
				json_set_str(tds, "type", "prometheus");
				json_set_str(tds, "uid", "${datasource}");
			}
		}
		size_t n = 0;
		while (n < ARRAY_SIZE(dash[r].panels) && dash[r].panels[n].title)
			n++;
		y += (int)((n + 2) / 3) * 8;
	}
	return d;
}

int cli__cmd_export_grafana(struct cli *c)
{
	const char *file = cli__flag(c->inv, "output");
	struct json *d = grafana_dashboard();
	char *json = json_print(d, true);
	json_free(d);
	char *text = xasprintf("%s\n", json);
	free(json);
	int rc = cli__write_output(c, file, text);
	if (rc == CLI_EXIT_OK && file && strcmp(file, "-") != 0)
		fprintf(c->err, "wrote a Grafana dashboard to '%s' (import it with Dashboards > New > Import)\n", file);
	free(text);
	return rc;
}

const struct cli_opt cli__metrics_opts[] = {
	{"since", 0, "DURATION", false, "how far back (default 1h; at least 10s)"},
	{0},
};

const struct cli_opt cli__top_opts[] = {
	{"once", 0, NULL, false, "print one snapshot and exit (also when stdout is not a terminal)"},
	{"sort", 0, "KEY", false, "cpu (default), mem or rps"},
	{0},
};

const struct cli_opt cli__export_grafana_opts[] = {
	{"output", 'o', "FILE", false, "write to FILE instead of stdout"},
	{0},
};
