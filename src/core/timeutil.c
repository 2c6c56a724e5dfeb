/* timeutil.c: clocks and unit parsing (see timeutil.h). */
#include "core/timeutil.h"
#include "core/util.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t time_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void time_format_iso(int64_t wall_ms, char *buf, size_t size)
{
	time_t secs = (time_t)(wall_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(wall_ms % 1000));
}

/* Splits "123unit" or "1.5unit" into a number and a unit suffix: decimal
 * digits only (no sign, exponent, hex, or a dot without digits on both
 * sides, all of which strtod would take). */
static int split_number(const char *s, double *num, const char **unit)
{
	if (!s)
		return -EINVAL;
	const char *p = s;
	while (isdigit((unsigned char)*p))
		p++;
	if (p == s)
		return -EINVAL;
	if (*p == '.') {
		const char *frac = ++p;
		while (isdigit((unsigned char)*p))
			p++;
		if (p == frac)
			return -EINVAL;
	}
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end != p)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	*num = v;
	*unit = end;
	return 0;
}

struct unit {
	const char *name;
	double factor;
};

static int apply_unit(double num, const char *unit, const struct unit *units, size_t n,
		      int64_t *out)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(unit, units[i].name) == 0) {
			double v = num * units[i].factor;
			if (v > 9.0e15)
				return -ERANGE;
			*out = (int64_t)(v + 0.5);
			return 0;
		}
	}
	return -EINVAL;
}

int duration_parse(const char *s, int64_t *ms)
{
	static const struct unit units[] = {
		{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
	};
	double num;
	const char *unit;
	int r = split_number(s, &num, &unit);
	if (r < 0)
		return r;
	return apply_unit(num, unit, units, ARRAY_SIZE(units), ms);
}

int duration_parse_with_unit(const char *s, int64_t *ms)
{
	size_t n = s ? strlen(s) : 0;
	if (!n || !isalpha((unsigned char)s[n - 1]))
		return -EINVAL;
	return duration_parse(s, ms);
}

void duration_format(int64_t ms, char *buf, size_t size)
{
	if (ms % 86400000 == 0 && ms)
		snprintf(buf, size, "%lldd", (long long)(ms / 86400000));
	else if (ms % 3600000 == 0 && ms)
		snprintf(buf, size, "%lldh", (long long)(ms / 3600000));
	else if (ms % 60000 == 0 && ms)
		snprintf(buf, size, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, size, "%llds", (long long)(ms / 1000));
	else
		snprintf(buf, size, "%lldms", (long long)ms);
}

void duration_min_text(int64_t min_ms, char *buf, size_t size)
{
	char d[32];
	if (min_ms <= 0) {
		snprintf(buf, size, "at least 0");
	} else if (min_ms == 1) {
		snprintf(buf, size, "longer than 0");
	} else {
		duration_format(min_ms, d, sizeof(d));
		snprintf(buf, size, "at least %s", d);
	}
}

int size_parse(const char *s, int64_t *bytes)
{
	static const struct unit units[] = {
		{"", 1},
		{"B", 1},
		{"K", 1024.0},
		{"Ki", 1024.0},
		{"KB", 1024.0},
		{"k", 1024.0},
		{"M", 1024.0 * 1024},
		{"Mi", 1024.0 * 1024},
		{"MB", 1024.0 * 1024},
		{"G", 1024.0 * 1024 * 1024},
		{"Gi", 1024.0 * 1024 * 1024},
		{"GB", 1024.0 * 1024 * 1024},
		{"T", 1024.0 * 1024 * 1024 * 1024},
		{"Ti", 1024.0 * 1024 * 1024 * 1024},
	};
	double num;
	const char *unit;
	int r = split_number(s, &num, &unit);
	if (r < 0)
		return r;
	return apply_unit(num, unit, units, ARRAY_SIZE(units), bytes);
}
