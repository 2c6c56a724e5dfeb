/* timeutil.h: clocks, and the duration and size units used by specs and the
 * CLI ("500ms", "10s", "5m", "2h", "30d"; "256M", "1G", "512K"). */
#ifndef PAASOPS_TIMEUTIL_H
#define PAASOPS_TIMEUTIL_H
#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the epoch (wall clock). */
int64_t time_wall_ms(void);
/* Monotonic milliseconds. */
int64_t time_mono_ms(void);
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) into buf. */
void time_format_iso(int64_t wall_ms, char *buf, size_t size);

/* Parses a duration ("500ms", "10s", "5m", "2h", "30d"; a bare number is
 * seconds) into milliseconds. Returns 0, or -EINVAL on bad syntax and
 * -ERANGE when it overflows. */
int duration_parse(const char *s, int64_t *ms);
/* The same, but a unit is required: -EINVAL for a bare number, where
 * "30" meaning thirty seconds would surprise (a token's lifetime). */
int duration_parse_with_unit(const char *s, int64_t *ms);
/* Formats ms as the shortest exact unit ("500ms", "10s", "5m"). */
void duration_format(int64_t ms, char *buf, size_t size);
/* What a duration of at least min_ms must be, for messages: "at least 0",
 * "longer than 0" (1 ms) or "at least 100ms". */
void duration_min_text(int64_t min_ms, char *buf, size_t size);
/* Parses a size ("256M", "1G", "512K", "100" bytes; also "Mi"/"MB" forms
 * as binary units) into bytes. Returns 0, -EINVAL or -ERANGE. */
int size_parse(const char *s, int64_t *bytes);

#endif
