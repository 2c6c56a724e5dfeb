/* supervisor_cgroup.h: memory and CPU limits for instances through cgroups:
 * v2 where the unified hierarchy has the controllers, v1 controllers
 * otherwise. Where neither is writable, limits are recorded as not enforced. */
#ifndef PAASOPS_SUPERVISOR_CGROUP_H
#define PAASOPS_SUPERVISOR_CGROUP_H
#include <stdbool.h>
#include <stdint.h>

enum cgroup_mode { CGROUP_NONE, CGROUP_V1, CGROUP_V2 };

struct cgroup_sys {
	enum cgroup_mode mode;
	char *mem_root; /* v1: .../memory/paasops-TAG; v2: .../paasops-TAG (both roles) */
	char *cpu_root; /* v1: .../cpu/paasops-TAG; v2: same as mem_root */
	char *why;      /* when mode is CGROUP_NONE: why not */
};

/* Finds a writable hierarchy and creates the daemon's parent groups, named
 * after tag (unique per data dir). Never fails: mode NONE says why in why. */
void cgroup_sys_init(struct cgroup_sys *cs, const char *tag);
void cgroup_sys_release(struct cgroup_sys *cs);

/* Creates the groups of one instance with its limits (memory in bytes, cpu
 * in cores; 0 = none). Returns the ':'-joined group directories (caller
 * frees) or NULL when nothing could be created. */
char *cgroup_create(const struct cgroup_sys *cs, const char *name, int64_t memory, double cpu);
/* Moves pid into every group of dirs; 0 or negative errno. */
int cgroup_attach(const char *dirs, int pid);
/* Kills every process still in the groups and removes them. */
void cgroup_destroy(const char *dirs);
/* Number of processes in the groups (first group), or -1. */
int cgroup_count(const char *dirs);

#endif
