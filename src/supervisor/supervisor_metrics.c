/* supervisor_metrics.c: instance usage for the metrics samplers. Every
 * instance leads its own process group, so one pass over /proc/[pid]/stat
 * attributes each process to an instance by its pgrp; open files are
 * counted from /proc/[pid]/fd only for processes that belong to one. */
#include "supervisor/supervisor_metrics.h"
#include "supervisor/supervisor_internal.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct usage {
	int pgid;
	uint64_t ticks, rss_pages;
	int64_t threads, fds;
};

static int usage_cmp(const void *a, const void *b)
{
	int x = ((const struct usage *)a)->pgid, y = ((const struct usage *)b)->pgid;
	return (x > y) - (x < y);
}

/* Field n (1-based, as in proc(5)) after the command, which may hold
 * spaces and parentheses: the fields start after the last ')'. */
static bool stat_fields(char *buf, uint64_t *out, const int *want, int n_want)
{
	char *p = strrchr(buf, ')');
	if (!p)
		return false;
	p += 2;
	int field = 3, got = 0;
	while (*p && got < n_want) {
		char *end = strchr(p, ' ');
		if (field == want[got]) {
			out[got++] = strtoull(p, NULL, 10);
		}
		if (!end)
			break;
		p = end + 1;
		field++;
	}
	return got == n_want;
}

/* Open files of a process: the size Linux >= 6.2 reports for its fd
 * directory, else (0 there) by reading the directory. */
static int64_t count_fds(int proc_fd, const char *pid)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/fd", pid);
	struct stat st;
	if (fstatat(proc_fd, path, &st, 0) < 0)
		return -1;
	if (st.st_size > 0)
		return (int64_t)st.st_size;
	int fd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int64_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Instances' processes are read every sample, so their /proc/PID/stat
 * stays open between samples (one pread instead of open, read, close),
 * and their open files, which rarely change, are counted every
 * FDS_EVERY samples. A cached descriptor of a process that exited reads
 * ESRCH and is dropped, so a reused pid is never confused with it. */
#define FDS_EVERY 10

static int statfd_cmp(const void *a, const void *b)
{
	int x = ((const struct sv_statfd *)a)->pid, y = ((const struct sv_statfd *)b)->pid;
	return (x > y) - (x < y);
}

static ssize_t read_stat(struct supervisor *sv, int proc_fd, int pid, const char *name, char *buf,
			 size_t size, int *keep_fd)
{
	struct sv_statfd key = {.pid = pid};
	struct sv_statfd *hit = sv->statfds ? bsearch(&key, sv->statfds, sv->n_statfds, sizeof(key), statfd_cmp)
					    : NULL;
	if (hit && hit->fd >= 0) {
		ssize_t len = pread(hit->fd, buf, size, 0);
		int fd = hit->fd;
		hit->fd = -1; /* taken over by the caller's new list */
		if (len > 0) {
			*keep_fd = fd;
			return len;
		}
		close(fd);
	}
	char path[300];
	snprintf(path, sizeof(path), "%s/stat", name);
	int fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t len = pread(fd, buf, size, 0);
	*keep_fd = fd;
	return len;
}

static void scan_proc(struct supervisor *sv, struct usage *u, size_t n)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	bool count_files = sv->metrics_tick++ % FDS_EVERY == 0;
	struct sv_statfd *keep = NULL;
	size_t n_keep = 0, alloc_keep = 0;
	static const int want[] = {5, 14, 15, 16, 17, 20, 24}; /* pgrp utime stime cutime cstime threads rss */
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char buf[1024];
		int fd = -1;
		int pid = atoi(e->d_name);
		ssize_t len = read_stat(sv, dirfd(d), pid, e->d_name, buf, sizeof(buf) - 1, &fd);
		if (len <= 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		buf[len] = '\0';
		uint64_t f[7];
		struct usage key;
		struct usage *hit = NULL;
		if (stat_fields(buf, f, want, 7)) {
			key.pgid = (int)f[0];
			hit = bsearch(&key, u, n, sizeof(*u), usage_cmp);
		}
		if (!hit) {
			close(fd);
			continue;
		}
		keep = xgrow(keep, sizeof(*keep), n_keep + 1, &alloc_keep);
		keep[n_keep++] = (struct sv_statfd){pid, fd, -1};
		hit->ticks += f[1] + f[2] + f[3] + f[4];
		hit->threads += (int64_t)f[5];
		hit->rss_pages += f[6];
		struct sv_statfd sk = {.pid = pid};
		struct sv_statfd *old = sv->statfds ? bsearch(&sk, sv->statfds, sv->n_statfds, sizeof(sk), statfd_cmp)
						    : NULL;
		int64_t fds = !count_files && old && old->fds >= 0 ? old->fds : count_fds(dirfd(d), e->d_name);
		keep[n_keep - 1].fds = fds;
		if (fds >= 0 && hit->fds >= 0)
			hit->fds += fds;
		else
			hit->fds = -1;
	}
	closedir(d);
	/* Descriptors of processes that are gone or left their instance. */
	for (size_t k = 0; k < sv->n_statfds; k++)
		if (sv->statfds[k].fd >= 0)
			close(sv->statfds[k].fd);
	free(sv->statfds);
	if (n_keep > 1)
		qsort(keep, n_keep, sizeof(*keep), statfd_cmp);
	sv->statfds = keep;
	sv->n_statfds = n_keep;
}

void supervisor_metrics_each(struct supervisor *sv, supervisor_metrics_inst_cb inst_cb,
			     supervisor_metrics_proc_cb proc_cb, void *ctx)
{
	struct usage *u = NULL;
	size_t n = 0, alloc = 0;
	for (size_t k = 0; k < sv->n_apps; k++)
		for (size_t j = 0; j < sv->apps[k]->n_procs; j++) {
			struct sv_proc *p = sv->apps[k]->procs[j];
			for (size_t m = 0; m < p->n_insts; m++)
				if (p->insts[m]->run) {
					u = xgrow(u, sizeof(*u), n + 1, &alloc);
					u[n++] = (struct usage){.pgid = p->insts[m]->run->pid};
				}
		}
	if (n && inst_cb) {
		qsort(u, n, sizeof(*u), usage_cmp);
		scan_proc(sv, u, n);
	}
	long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	int64_t now = time_mono_ms();
	for (size_t k = 0; k < sv->n_apps; k++) {
		struct sv_app *a = sv->apps[k];
		for (size_t j = 0; j < a->n_procs; j++) {
			struct sv_proc *p = a->procs[j];
			struct supervisor_metrics_proc pm = {
				.app = a->name, .process = p->name,
				.desired = p->stopped || a->stopped || p->removed ? 0 : p->desired,
			};
			for (size_t m = 0; m < p->n_insts; m++) {
				struct sv_inst *i = p->insts[m];
				pm.ready += i->state == SV_READY;
				pm.running += i->run != NULL;
				if (!inst_cb)
					continue;
				struct supervisor_metrics_inst im = {
					.app = a->name, .process = p->name, .instance = i->id,
					.state = sv_state_name(i->state), .restarts = i->restarts,
					.memory_limit = p->sp->resources.memory_bytes,
					.cpu_limit = p->sp->resources.cpu,
				};
				if (i->run) {
					struct usage key = {.pgid = i->run->pid};
					struct usage *hit = n ? bsearch(&key, u, n, sizeof(*u), usage_cmp) : NULL;
					im.running = true;
					im.pid = i->run->pid;
					im.uptime_seconds = (double)(now - i->started_mono) / 1000.0;
					if (hit) {
						im.cpu_seconds = (double)hit->ticks / (double)hz;
						im.rss_bytes = (int64_t)hit->rss_pages * page;
						im.threads = hit->threads;
						im.open_fds = hit->fds;
					} else {
						im.open_fds = -1;
					}
				}
				inst_cb(ctx, &im);
			}
			if (proc_cb)
				proc_cb(ctx, &pm);
		}
	}
	free(u);
}
