/* hist.h: the quantile estimate of a bucketed latency histogram, one
 * definition for every reader (the metrics query language, the router's
 * stats, the autoscaler's p95), so that `paasops stats`, `paasops metrics`
 * and an autoscaled p95 agree on what "p95" means.
 *
 * The estimate is Prometheus' histogram_quantile(): find the bucket that
 * holds rank q * total and interpolate linearly inside it, the lowest
 * bucket starting at 0. */
#ifndef PAASOPS_HIST_H
#define PAASOPS_HIST_H
#include <stddef.h>
#include <stdint.h>

/* bounds: n upper bounds, ascending, the last +Inf; cum: the cumulative
 * count at each bound (a dip, from counters read at slightly different
 * times, is repaired). NAN when there is no observation, n < 2 or the last
 * bound is not +Inf; -Inf/+Inf for q below 0/above 1; the highest finite
 * bound when the rank falls in +Inf. */
double hist_quantile(double q, const double *bounds, const double *cum, size_t n);

/* The same over per-bucket counts: n_bounds finite bounds, counts[0..n_bounds]
 * with the overflow (+Inf) bucket last. NAN when the histogram is empty. */
double hist_quantile_counts(double q, const double *bounds, const uint64_t *counts, size_t n_bounds);

#endif
