/* log.c: the daemon's own log lines (see log.h). The level is process-wide
 * configuration set once at start-up, before any thread starts. */
#include "core/log.h"
#include "core/timeutil.h"
#include <stdarg.h>
#include <stdio.h>

static enum log_level min_level = LOG_INFO;

void log_set_level(enum log_level lvl)
{
	min_level = lvl;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	if (lvl < min_level)
		return;
	char ts[40];
	time_format_iso(time_wall_ms(), ts, sizeof(ts));
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s %s %s\n", ts, names[lvl], line);
}
