/* proc.h: facts about processes from /proc. */
#ifndef PAASOPS_PROC_H
#define PAASOPS_PROC_H
#include <stddef.h>
#include <stdint.h>

/* The fields of /proc/PID/stat from the state on (past the command name,
 * which may hold spaces and parentheses), read into buf of n bytes; NULL
 * when the process is gone. */
const char *proc_stat_fields(int pid, char *buf, size_t n);

/* Start time of pid in clock ticks since boot (/proc/PID/stat field 22),
 * which tells it from a later process that reuses the pid; 0 when the
 * process does not exist. */
uint64_t proc_start_ticks(int pid);

/* Marks every descriptor from lowfd up close-on-exec, so that no process
 * this one starts gets them: for descriptors opened by libraries that do
 * not ask for it (libcurl's wake-up socket pair) and those inherited. */
void proc_cloexec_from(int lowfd);

/* Sends sig to every process of session sid (its leader may be gone):
 * the jobs a shell started in process groups of their own included.
 * Returns how many were signalled. */
int proc_kill_session(int sid, int sig);

#endif
