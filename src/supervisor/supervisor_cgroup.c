/* supervisor_cgroup.c: instance limits through cgroup v2 or v1 (see
 * supervisor_cgroup.h). Group directories are recorded in the store with the
 * pid, so that a restarted daemon can clean up after a crash. */
#include "supervisor/supervisor_cgroup.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CG_ROOT "/sys/fs/cgroup"

static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, value, strlen(value));
	int e = n < 0 ? -errno : 0;
	close(fd);
	return e;
}

static bool file_has_word(const char *path, const char *word)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	char buf[512];
	bool found = false;
	while (!found && fscanf(f, "%511s", buf) == 1)
		found = strcmp(buf, word) == 0;
	fclose(f);
	return found;
}

static bool make_dir(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST;
}

void cgroup_sys_init(struct cgroup_sys *cs, const char *tag)
{
	memset(cs, 0, sizeof(*cs));
	/* v2: the unified hierarchy mounted at the root with both controllers. */
	if (file_has_word(CG_ROOT "/cgroup.controllers", "memory") &&
	    file_has_word(CG_ROOT "/cgroup.controllers", "cpu")) {
		char *dir = xasprintf(CG_ROOT "/paasops-%s", tag);
		write_file(CG_ROOT "/cgroup.subtree_control", "+memory +cpu");
		if (make_dir(dir)) {
			char *ctl = xasprintf("%s/cgroup.subtree_control", dir);
			int r = write_file(ctl, "+memory +cpu");
			free(ctl);
			if (r == 0) {
				cs->mode = CGROUP_V2;
				cs->mem_root = dir;
				cs->cpu_root = xstrdup(dir);
				return;
			}
		}
		free(dir);
	}
	/* v1: separate memory and cpu hierarchies. */
	char *mem = xasprintf(CG_ROOT "/memory/paasops-%s", tag);
	char *cpu = xasprintf(CG_ROOT "/cpu/paasops-%s", tag);
	if (access(CG_ROOT "/memory/cgroup.procs", W_OK) == 0 &&
	    access(CG_ROOT "/cpu/cgroup.procs", W_OK) == 0 && make_dir(mem) && make_dir(cpu)) {
		cs->mode = CGROUP_V1;
		cs->mem_root = mem;
		cs->cpu_root = cpu;
		return;
	}
	free(mem);
	free(cpu);
	cs->mode = CGROUP_NONE;
	cs->why = xstrdup("no writable cgroup v2 or v1 memory/cpu hierarchy");
}

void cgroup_sys_release(struct cgroup_sys *cs)
{
	if (cs->mode != CGROUP_NONE) {
		rmdir(cs->mem_root);
		if (strcmp(cs->mem_root, cs->cpu_root) != 0)
			rmdir(cs->cpu_root);
	}
	free(cs->mem_root);
	free(cs->cpu_root);
	free(cs->why);
	memset(cs, 0, sizeof(*cs));
}

static int set_limit(const char *dir, const char *file, const char *value)
{
	char *path = xasprintf("%s/%s", dir, file);
	int r = write_file(path, value);
	if (r < 0)
		log_warn("cgroup: cannot write '%s': %s", path, strerror(-r));
	free(path);
	return r;
}

char *cgroup_create(const struct cgroup_sys *cs, const char *name, int64_t memory, double cpu)
{
	if (cs->mode == CGROUP_NONE || (memory <= 0 && cpu <= 0))
		return NULL;
	char *mem = xasprintf("%s/%s", cs->mem_root, name);
	char *cpud = xasprintf("%s/%s", cs->cpu_root, name);
	char val[64];
	int r = 0;
	if (!make_dir(mem) || !make_dir(cpud)) {
		r = -errno;
		goto out;
	}
	long quota = (long)(cpu * 100000.0 + 0.5);
	if (cs->mode == CGROUP_V2) {
		if (memory > 0) {
			snprintf(val, sizeof(val), "%lld", (long long)memory);
			r = r ? r : set_limit(mem, "memory.max", val);
			set_limit(mem, "memory.swap.max", "0");
		}
		if (cpu > 0) {
			snprintf(val, sizeof(val), "%ld 100000", quota < 1000 ? 1000 : quota);
			r = r ? r : set_limit(mem, "cpu.max", val);
		}
	} else {
		if (memory > 0) {
			snprintf(val, sizeof(val), "%lld", (long long)memory);
			r = r ? r : set_limit(mem, "memory.limit_in_bytes", val);
		}
		if (cpu > 0) {
			set_limit(cpud, "cpu.cfs_period_us", "100000");
			snprintf(val, sizeof(val), "%ld", quota < 1000 ? 1000 : quota);
			r = r ? r : set_limit(cpud, "cpu.cfs_quota_us", val);
		}
	}
out:
	if (r < 0) {
		rmdir(mem);
		rmdir(cpud);
		free(mem);
		free(cpud);
		return NULL;
	}
	char *dirs = strcmp(mem, cpud) == 0 ? xstrdup(mem) : xasprintf("%s:%s", mem, cpud);
	free(mem);
	free(cpud);
	return dirs;
}

/* Calls fn for each directory in a ':'-joined list. */
static void each_dir(const char *dirs, void (*fn)(const char *dir, void *ctx), void *ctx)
{
	const char *p = dirs;
	while (p && *p) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		char *d = xstrndup(p, n);
		fn(d, ctx);
		free(d);
		p = colon ? colon + 1 : NULL;
	}
}

static void attach_one(const char *dir, void *ctx)
{
	int *pid_and_err = ctx;
	char *path = xasprintf("%s/cgroup.procs", dir);
	char val[32];
	snprintf(val, sizeof(val), "%d", pid_and_err[0]);
	int r = write_file(path, val);
	if (r < 0)
		pid_and_err[1] = r;
	free(path);
}

int cgroup_attach(const char *dirs, int pid)
{
	int ctx[2] = {pid, 0};
	each_dir(dirs, attach_one, ctx);
	return ctx[1];
}

static int kill_members(const char *dir)
{
	char *path = xasprintf("%s/cgroup.procs", dir);
	FILE *f = fopen(path, "re");
	free(path);
	if (!f)
		return -1;
	int pid, n = 0;
	while (fscanf(f, "%d", &pid) == 1) {
		kill(pid, SIGKILL);
		n++;
	}
	fclose(f);
	return n;
}

static void destroy_one(const char *dir, void *ctx)
{
	/* Members die asynchronously after SIGKILL; retry rmdir briefly. */
	for (int i = 0; i < 50; i++) {
		kill_members(dir);
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		usleep(2000);
	}
	log_warn("cgroup: cannot remove '%s': %s", dir, strerror(errno));
}

void cgroup_destroy(const char *dirs)
{
	each_dir(dirs, destroy_one, NULL);
}

int cgroup_count(const char *dirs)
{
	if (!dirs)
		return -1;
	const char *colon = strchr(dirs, ':');
	char *d = colon ? xstrndup(dirs, (size_t)(colon - dirs)) : xstrdup(dirs);
	char *path = xasprintf("%s/cgroup.procs", d);
	free(d);
	FILE *f = fopen(path, "re");
	free(path);
	if (!f)
		return -1;
	int pid, n = 0;
	while (fscanf(f, "%d", &pid) == 1)
		n++;
	fclose(f);
	return n;
}
