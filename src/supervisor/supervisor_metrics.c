/* supervisor_metrics.c: instance usage for the metrics samplers. Every
 * instance leads its own process group, so a pass over /proc/[pid]/stat
 * attributes each process to an instance by its pgrp; open files are
 * counted from /proc/[pid]/fd only for processes that belong to one.
 *
 * Reading every process's stat each second is what an idle daemon with
 * 1,000 instances would spend most of its time on (the kernel formats
 * 52 fields, ~4 us a process), so a full pass is made every SCAN_EVERY
 * samples. In between, each process found last time is read the cheap
 * way: its CPU time from its CPU-time clock (clock_gettime, no text) and
 * its resident memory from /proc/PID/statm, kept open. Group membership,
 * threads and open files are those of the last full pass. Exceptions, read
 * in full every sample: an instance's leader that is not among them (a new
 * instance: the supervisor knows its pid), and a leader with reaped
 * children's CPU time or other processes in its group, so that the CPU of
 * children it reaps moves into its count in the same sample. A process an
 * instance starts is thus counted from at most SCAN_EVERY samples later,
 * the CPU it used before the previous sample being reported as late (not
 * this interval's); one that exits is dropped at once. */
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
	uint64_t cpu_ns, child_ticks, rss_pages;
	uint64_t late_ns; /* of processes seen for the first time that ran before */
	int64_t threads, fds;
	int members;
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

static ssize_t read_at(int dir_fd, const char *name, const char *file, char *buf, size_t size)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/%s", name, file);
	int fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t len = pread(fd, buf, size, 0);
	close(fd);
	return len;
}

struct scan {
	struct supervisor *sv;
	int proc_fd;
	bool full;
	long hz;
	struct usage *u;
	size_t n;
	struct sv_statfd *keep;
	size_t n_keep, alloc_keep;
};

static void scan_add(struct scan *sc, struct usage *hit, const struct sv_statfd *e, uint64_t cpu_ns,
		     uint64_t rss_pages)
{
	hit->cpu_ns += cpu_ns;
	hit->child_ticks += e->child_ticks;
	hit->threads += e->threads;
	hit->rss_pages += rss_pages;
	hit->members++;
	if (e->fds >= 0 && hit->fds >= 0)
		hit->fds += e->fds;
	else
		hit->fds = -1;
	sc->keep = xgrow(sc->keep, sizeof(*sc->keep), sc->n_keep + 1, &sc->alloc_keep);
	sc->keep[sc->n_keep++] = *e;
}

static uint64_t clock_ns(clockid_t clock, bool *ok)
{
	struct timespec ts;
	*ok = clock_gettime(clock, &ts) == 0;
	return *ok ? (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec : 0;
}

/* A full read of one process: its stat says whether it belongs to an
 * instance; if so it is added to that instance's usage and kept. */
static void scan_one(struct scan *sc, int pid, const char *name)
{
	static const int want[] = {5, 16, 17, 20, 22, 24}; /* pgrp cutime cstime threads start rss */
	struct sv_statfd *old = statfd_find(sc->sv, pid);
	struct sv_statfd e = {.pid = pid, .fd = -1, .fds = -1};
	if (old && old->fd >= 0) {
		e.fd = old->fd;
		old->fd = -1; /* taken over by the new list, or closed */
	}
	char buf[1024];
	uint64_t f[6];
	struct usage key, *hit = NULL;
	ssize_t len = read_at(sc->proc_fd, name, "stat", buf, sizeof(buf) - 1);
	if (len > 0) {
		buf[len] = '\0';
		if (stat_fields(buf, f, want, 6)) {
			key.pgid = (int)f[0];
			hit = bsearch(&key, sc->u, sc->n, sizeof(*sc->u), usage_cmp);
		}
	}
	bool ok = hit != NULL;
	if (ok && old)
		e.clock = old->clock;
	else if (ok)
		ok = clock_getcpuclockid(pid, &e.clock) == 0;
	uint64_t cpu = ok ? clock_ns(e.clock, &ok) : 0;
	/* A kept statm that no longer reads belonged to a process that is
	 * gone (this pid is another's now). */
	char m[128];
	if (ok && e.fd >= 0 && pread(e.fd, m, sizeof(m), 0) <= 0) {
		close(e.fd);
		e.fd = -1;
	}
	if (ok && e.fd < 0) {
		char path[300];
		snprintf(path, sizeof(path), "%s/statm", name);
		e.fd = openat(sc->proc_fd, path, O_RDONLY | O_CLOEXEC);
	}
	if (!ok || e.fd < 0) {
		if (e.fd >= 0)
			close(e.fd);
		return;
	}
	e.pgid = key.pgid;
	e.child_ticks = f[1] + f[2];
	e.threads = (int64_t)f[3];
	e.fds = !sc->full && old && old->fds >= 0 ? old->fds : count_fds(sc->proc_fd, name);
	/* A process found by a full pass after it started: what it used
	 * before the previous sample is not this interval's. (A new leader is
	 * a new instance, which the sampler knows from its pid.) */
	if (!old && pid != e.pgid && sc->sv->metrics_prev_ticks && f[4] < sc->sv->metrics_prev_ticks)
		hit->late_ns += cpu + e.child_ticks * (1000000000u / (uint64_t)sc->hz);
	scan_add(sc, hit, &e, cpu, f[5]);
}

/* The cheap read of a process kept from the last sample. The clock is
 * read first: if statm, which pins the process, still reads after it, the
 * pid was not reused in between. */
static void scan_kept(struct scan *sc, struct sv_statfd *old)
{
	struct sv_statfd e = *old;
	old->fd = -1; /* taken over by the new list, or closed */
	bool ok;
	uint64_t cpu = clock_ns(e.clock, &ok);
	char buf[128];
	ssize_t len = ok ? pread(e.fd, buf, sizeof(buf) - 1, 0) : -1;
	struct usage key = {.pgid = e.pgid};
	struct usage *hit = len > 0 ? bsearch(&key, sc->u, sc->n, sizeof(*sc->u), usage_cmp) : NULL;
	unsigned long long size, rss;
	if (hit) {
		buf[len] = '\0';
		if (sscanf(buf, "%llu %llu", &size, &rss) != 2)
			hit = NULL;
	}
	if (!hit) {
		close(e.fd);
		return;
	}
	scan_add(sc, hit, &e, cpu, rss);
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
	struct scan sc = {.sv = sv, .proc_fd = proc_fd, .full = full, .u = u, .n = n,
			  .hz = sysconf(_SC_CLK_TCK)};
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
				scan_one(&sc, atoi(e->d_name), e->d_name);
		closedir(d);
	} else {
		/* The processes kept from the last sample, then leaders not among
		 * them (sv->statfds stays sorted while its descriptors are taken). */
		for (size_t k = 0; k < sv->n_statfds; k++) {
			struct sv_statfd *e = &sv->statfds[k];
			if (e->fd < 0)
				continue;
			if (e->full) {
				char name[16];
				snprintf(name, sizeof(name), "%d", e->pid);
				scan_one(&sc, e->pid, name);
			} else {
				scan_kept(&sc, e);
			}
		}
		for (size_t k = 0; k < n; k++)
			if (!statfd_find(sv, u[k].pgid)) {
				char name[16];
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
	/* A leader that reaps children (its cutime grows when one exits, even
	 * one too short-lived to be seen) is read in full every sample. */
	for (size_t k = 0; k < sc.n_keep; k++) {
		struct sv_statfd *e = &sc.keep[k];
		struct usage key = {.pgid = e->pgid};
		struct usage *hit = bsearch(&key, u, n, sizeof(*u), usage_cmp);
		e->full = e->pid == e->pgid && (e->child_ticks > 0 || (hit && hit->members > 1));
	}
	if (sc.n_keep > 1)
		qsort(sc.keep, sc.n_keep, sizeof(*sc.keep), statfd_cmp);
	sv->statfds = sc.keep;
	sv->n_statfds = sc.n_keep;
	struct timespec now;
	if (clock_gettime(CLOCK_BOOTTIME, &now) == 0)
		sv->metrics_prev_ticks = (uint64_t)now.tv_sec * (uint64_t)sc.hz +
					 (uint64_t)now.tv_nsec / (1000000000u / (uint64_t)sc.hz);
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
						im.cpu_seconds = (double)hit->cpu_ns / 1e9 +
								 (double)hit->child_ticks / (double)hz;
						im.cpu_seconds_late = (double)hit->late_ns / 1e9;
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
