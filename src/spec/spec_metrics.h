/* spec_metrics.h: the name and type of every metric family paasops keeps
 * (doc/metrics.md), the query functions, and the one check of what may be
 * asked of a name: the query API, alert rules files and app specs all judge
 * names with it. It lives with the spec, below the metrics module, so that
 * the spec parser (and with it `paasops validate`, which runs without a
 * daemon) can use it; it needs nothing but core.
 *
 * Invariant: every family named paasops_* that is registered is listed
 * here with the same type (metrics_family_add asserts it). */
#ifndef PAASOPS_SPEC_METRICS_H
#define PAASOPS_SPEC_METRICS_H
#include <stdbool.h>
#include <stddef.h>

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

enum metrics_fn {
	METRICS_FN_RAW,  /* stored points as they are (range); newest value (instant) */
	METRICS_FN_RATE, /* per-second increase of a counter over the window, resets handled */
	METRICS_FN_AVG,  /* average of the points in the window */
	METRICS_FN_MIN,
	METRICS_FN_MAX,
	METRICS_FN_SUM,      /* sum of the points in the window */
	METRICS_FN_QUANTILE, /* histogram quantile of the increase of each bucket over the window */
};

/* Parses a function name ("rate", "p95", "quantile_0.999"); 0 or -EINVAL. */
int metrics_fn_parse(const char *s, enum metrics_fn *fn, double *quantile);

/* The type of a family paasops registers; -ENOENT when there is none of
 * that name. */
int metrics_family_type(const char *name, enum metrics_type *type);

/* Whether fn may be asked of name, a stored series name: a family, or a
 * histogram's NAME_bucket, NAME_count or NAME_sum. 0, or -EINVAL with *err
 * (caller frees) saying why not: an unknown name (with a likely one), a
 * histogram without a quantile, a quantile of anything but a histogram. */
int metrics_name_check(const char *name, enum metrics_fn fn, char **err);

#endif
