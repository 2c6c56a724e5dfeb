/* supervisor_metrics.h: read-only accessors that the metrics samplers use
 * to pull per-instance resource usage and per-process replica counts. One
 * call reads /proc once for every instance together (not once per
 * instance). Call on the control loop. */
#ifndef PAASOPS_SUPERVISOR_METRICS_H
#define PAASOPS_SUPERVISOR_METRICS_H
#include <stdbool.h>
#include <stdint.h>

struct supervisor;

struct supervisor_metrics_inst {
	const char *app, *process, *instance, *state; /* borrowed for the call */
	bool running; /* has a process; the usage fields below are valid */
	int pid;
	double cpu_seconds;  /* user + system, the whole process group, reaped children included */
	double cpu_seconds_late; /* part of cpu_seconds counted for the first time although
				  * used before the previous call, at an unknown time */
	int64_t rss_bytes;   /* summed over the process group */
	int64_t open_fds;    /* summed over the process group; -1 when unreadable */
	int64_t threads;     /* summed over the process group */
	double uptime_seconds;
	int restarts;
	int64_t memory_limit; /* bytes; 0: none */
	double cpu_limit;     /* cores; 0: none */
};

struct supervisor_metrics_proc {
	const char *app, *process; /* borrowed for the call */
	int desired; /* 0 while stopped */
	int ready;
	int running; /* instances with a process */
};

typedef void (*supervisor_metrics_inst_cb)(void *ctx, const struct supervisor_metrics_inst *in);
typedef void (*supervisor_metrics_proc_cb)(void *ctx, const struct supervisor_metrics_proc *p);

/* Calls proc_cb for every process type and inst_cb for each of its
 * instance slots (either may be NULL). */
void supervisor_metrics_each(struct supervisor *sv, supervisor_metrics_inst_cb inst_cb,
			     supervisor_metrics_proc_cb proc_cb, void *ctx);

#endif
