/* supervisor_metrics.c: instance usage for the metrics samplers. Every
 * instance leads its own process group, so a pass over /proc/[pid]/stat
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
 * SCAN_EVERY samples. A cached descriptor of a process that exited reads
 * ESRCH and is dropped, so a reused pid is never confused with it.
 *
 * Finding which processes belong to an instance means reading the stat of
 * every process on the host, so it too is done every SCAN_EVERY samples;
 * in between, the processes found last time and each instance's leader
 * (whose pid the supervisor knows) are read. A process an instance starts
 * is thus counted from the next full scan on, at most SCAN_EVERY samples
 * later; one that exits or leaves its group is dropped at once. */
#define SCAN_EVERY 10

static int statfd_cmp(const void *a, const void *b)
{
	int x = ((const struct sv_statfd *)a)->pid, y = ((const struct sv_statfd *)b)->pid;
	return (x > y) - (x < y);
}

static struct sv_statfd *statfd_find(struct supervisor *sv, int pid)
{
	struct sv_statfd key = {.pid = pid};
	return sv->statfds ? bsearch(&key, sv->statfds, sv->n_statfds, sizeof(key), statfd_cmp) : NULL;
}

static ssize_t read_stat(struct supervisor *sv, int proc_fd, int pid, const char *name, char *buf,
			 size_t size, int *keep_fd)
{
	struct sv_statfd *hit = statfd_find(sv, pid);
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

struct scan {
	struct supervisor *sv;
	int proc_fd;
	bool count_files;
	struct usage *u;
	size_t n;
	struct sv_statfd *keep;
	size_t n_keep, alloc_keep;
};

/* Reads one process and, when it belongs to an instance, adds it to that
 * instance's usage and keeps its descriptor for the next sample. */
static void scan_one(struct scan *sc, int pid, const char *name)
{
	static const int want[] = {5, 14, 15, 16, 17, 20, 24}; /* pgrp utime stime cutime cstime threads rss */
	char buf[1024];
	int fd = -1;
	ssize_t len = read_stat(sc->sv, sc->proc_fd, pid, name, buf, sizeof(buf) - 1, &fd);
	if (len <= 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	buf[len] = '\0';
	uint64_t f[7];
	struct usage key;
	struct usage *hit = NULL;
	if (stat_fields(buf, f, want, 7)) {
		key.pgid = (int)f[0];
		hit = bsearch(&key, sc->u, sc->n, sizeof(*sc->u), usage_cmp);
	}
	if (!hit) {
		close(fd);
		return;
	}
	hit->ticks += f[1] + f[2] + f[3] + f[4];
	hit->threads += (int64_t)f[5];
	hit->rss_pages += f[6];
	struct sv_statfd *old = statfd_find(sc->sv, pid);
	int64_t fds = !sc->count_files && old && old->fds >= 0 ? old->fds : count_fds(sc->proc_fd, name);
	sc->keep = xgrow(sc->keep, sizeof(*sc->keep), sc->n_keep + 1, &sc->alloc_keep);
	sc->keep[sc->n_keep++] = (struct sv_statfd){pid, fd, fds};
	if (fds >= 0 && hit->fds >= 0)
		hit->fds += fds;
	else
		hit->fds = -1;
}

static void scan_proc(struct supervisor *sv, struct usage *u, size_t n)
{
	bool full = sv->metrics_tick++ % SCAN_EVERY == 0;
	DIR *d = full ? opendir("/proc") : NULL;
	int proc_fd = d ? dirfd(d) : open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc_fd < 0) {
		if (d)
			closedir(d);
		return;
	}
	struct scan sc = {.sv = sv, .proc_fd = proc_fd, .count_files = full, .u = u, .n = n};
	char name[16];
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
				scan_one(&sc, atoi(e->d_name), e->d_name);
		closedir(d);
	} else {
		/* The processes kept from the last sample (their pids are sorted,
		 * so scan_one's lookups in sv->statfds stay valid while it takes
		 * their descriptors), then leaders not among them. */
		for (size_t k = 0; k < sv->n_statfds; k++) {
			snprintf(name, sizeof(name), "%d", sv->statfds[k].pid);
			scan_one(&sc, sv->statfds[k].pid, name);
		}
		for (size_t k = 0; k < n; k++)
			if (!statfd_find(sv, u[k].pgid)) {
				snprintf(name, sizeof(name), "%d", u[k].pgid);
				scan_one(&sc, u[k].pgid, name);
			}
		close(proc_fd);
	}
	/* Descriptors of processes that are gone or left their instance. */
	for (size_t k = 0; k < sv->n_statfds; k++)
		if (sv->statfds[k].fd >= 0)
			close(sv->statfds[k].fd);
	free(sv->statfds);
	if (sc.n_keep > 1)
		qsort(sc.keep, sc.n_keep, sizeof(*sc.keep), statfd_cmp);
	sv->statfds = sc.keep;
	sv->n_statfds = sc.n_keep;
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
