/* hist.c: quantiles of bucketed histograms (see hist.h). */
#include "core/hist.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>

double hist_quantile(double q, const double *bounds, const double *cum, size_t n)
{
	if (n < 2 || !isinf(bounds[n - 1]) || isnan(q))
		return NAN;
	if (q < 0)
		return -INFINITY;
	if (q > 1)
		return INFINITY;
	double obs = cum[n - 1];
	if (!(obs > 0))
		return NAN;
	double rank = q * obs;
	size_t b = 0;
	double prev = 0;
	for (; b < n; b++) {
		double c = cum[b] < prev ? prev : cum[b]; /* repair non-monotonic input */
		if (c >= rank)
			break;
		prev = c;
	}
	if (b >= n - 1)
		return bounds[n - 2];
	if (b == 0 && bounds[0] <= 0)
		return bounds[0];
	double start = 0, end = bounds[b], count = cum[b] < prev ? prev : cum[b];
	if (b > 0) {
		start = bounds[b - 1];
		count -= prev;
		rank -= prev;
	}
	if (!(count > 0))
		return start;
	return start + (end - start) * (rank / count);
}

double hist_quantile_counts(double q, const double *bounds, const uint64_t *counts, size_t n_bounds)
{
	size_t n = n_bounds + 1;
	double *b = xmalloc(n * sizeof(*b)), *cum = xmalloc(n * sizeof(*cum));
	double acc = 0;
	for (size_t k = 0; k < n; k++) {
		b[k] = k < n_bounds ? bounds[k] : INFINITY;
		acc += (double)counts[k];
		cum[k] = acc;
	}
	double v = hist_quantile(q, b, cum, n);
	free(b);
	free(cum);
	return v;
}
