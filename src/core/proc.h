/* proc.h: facts about processes from /proc. */
#ifndef PAASOPS_PROC_H
#define PAASOPS_PROC_H
#include <stdint.h>

/* Start time of pid in clock ticks since boot (/proc/PID/stat field 22),
 * which tells it from a later process that reuses the pid; 0 when the
 * process does not exist. */
uint64_t proc_start_ticks(int pid);

#endif
