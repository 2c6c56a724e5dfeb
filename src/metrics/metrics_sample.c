/* metrics_sample.c: the samplers. Each tick fills the registry from the
 * supervisor and the router (through their accessor headers only), the
 * host (/proc and statvfs of the data dir) and the daemon itself; series
 * that were not filled (a stopped instance, a state left) are then swept.
 *
 * Every family is declared once in the table below; doc/metrics.md lists
 * the same names, types, labels and help. */
#include "metrics/metrics_internal.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "router/router_metrics.h"
#include "supervisor/supervisor_metrics.h"
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

enum fam {
	F_INST_CPU, F_INST_CPU_RATIO, F_INST_RSS, F_INST_MEM_LIMIT, F_INST_FDS, F_INST_THREADS,
	F_INST_RESTARTS, F_INST_UPTIME, F_INST_STATE,
	F_REPL_DESIRED, F_REPL_READY,
	F_HTTP_REQ, F_HTTP_DUR, F_HTTP_INFLIGHT, F_HTTP_BYTES_IN, F_HTTP_BYTES_OUT,
	F_HTTP_CONNECT_ERR, F_HTTP_RETRIES, F_HTTP_EJECT,
	F_RT_WORKERS, F_RT_OPENED, F_RT_REUSED, F_RT_ACCESS_DROPPED, F_RT_CONNS, F_RT_MOVED,
	F_RT_TLS_FAILED,
	F_HOST_CPU, F_HOST_CPUS, F_HOST_MEM_TOTAL, F_HOST_MEM_AVAIL, F_HOST_LOAD1, F_HOST_LOAD5,
	F_HOST_LOAD15, F_HOST_DISK_TOTAL, F_HOST_DISK_FREE, F_HOST_NET_RX, F_HOST_NET_TX,
	F_PROC_CPU, F_PROC_RSS, F_PROC_FDS, F_PROC_START, F_LOOP_LAG, F_BUILD,
	F_SELF_SAMPLE_S, F_SELF_SAMPLE_CPU, F_SELF_SCRAPES, F_SELF_SCRAPE_S, F_SELF_SERIES,
	F_SELF_HSERIES, F_SELF_HBYTES, F_SELF_HBUDGET, F_SELF_DROPPED, F_SELF_DROPPED_SAMPLES,
	F_SELF_EVICTED, F_SELF_SAVES, F_SELF_SAVE_ERRORS,
	F_COUNT
};

#define INST "app", "process", "instance"
#define PROC "app", "process"

static const struct fam_def {
	enum fam id;
	const char *name;
	enum metrics_type type;
	bool expire;
	const char *labels[5];
	const char *help;
} defs[] = {
	{F_INST_CPU, "paasops_instance_cpu_seconds_total", METRICS_COUNTER, true, {INST},
	 "CPU time (user + system) used by the instance's process group, reaped children included."},
	{F_INST_CPU_RATIO, "paasops_instance_cpu_usage_ratio", METRICS_GAUGE, true, {INST},
	 "CPU used over the last sample interval, in cores (1 = one core busy)."},
	{F_INST_RSS, "paasops_instance_resident_memory_bytes", METRICS_GAUGE, true, {INST},
	 "Resident memory of the instance's process group."},
	{F_INST_MEM_LIMIT, "paasops_instance_memory_limit_bytes", METRICS_GAUGE, true, {INST},
	 "Memory limit from the spec (resources.memory); absent when there is none."},
	{F_INST_FDS, "paasops_instance_open_fds", METRICS_GAUGE, true, {INST},
	 "Open file descriptors of the instance's process group."},
	{F_INST_THREADS, "paasops_instance_threads", METRICS_GAUGE, true, {INST},
	 "Threads of the instance's process group."},
	{F_INST_RESTARTS, "paasops_instance_restarts_total", METRICS_COUNTER, true, {INST},
	 "Restarts of the instance slot since the daemon started."},
	{F_INST_UPTIME, "paasops_instance_uptime_seconds", METRICS_GAUGE, true, {INST},
	 "Time since the instance's current process started."},
	{F_INST_STATE, "paasops_instance_state", METRICS_GAUGE, true, {INST, "state"},
	 "1 for the instance's current state (starting, ready, unhealthy, stopping, stopped, exited, "
	 "crashed, backoff)."},
	{F_REPL_DESIRED, "paasops_replicas_desired", METRICS_GAUGE, true, {PROC},
	 "Instances wanted for the process type (0 while stopped)."},
	{F_REPL_READY, "paasops_replicas_ready", METRICS_GAUGE, true, {PROC},
	 "Instances of the process type that are ready."},
	{F_HTTP_REQ, "paasops_http_requests_total", METRICS_COUNTER, true, {PROC, "code"},
	 "Requests the router answered, by status class (1xx to 5xx)."},
	{F_HTTP_DUR, "paasops_http_request_duration_seconds", METRICS_HISTOGRAM, true, {PROC},
	 "Time from a request's head to the end of its response, through the router."},
	{F_HTTP_INFLIGHT, "paasops_http_requests_in_flight", METRICS_GAUGE, true, {PROC},
	 "Requests being proxied now."},
	{F_HTTP_BYTES_IN, "paasops_http_request_bytes_total", METRICS_COUNTER, true, {PROC},
	 "Bytes received from clients."},
	{F_HTTP_BYTES_OUT, "paasops_http_response_bytes_total", METRICS_COUNTER, true, {PROC},
	 "Bytes sent to clients."},
	{F_HTTP_CONNECT_ERR, "paasops_http_backend_connect_errors_total", METRICS_COUNTER, true, {PROC},
	 "Failed connections from the router to instances."},
	{F_HTTP_RETRIES, "paasops_http_retries_total", METRICS_COUNTER, true, {PROC},
	 "Requests the router sent a second time to another instance."},
	{F_HTTP_EJECT, "paasops_http_backend_ejections_total", METRICS_COUNTER, true, {PROC},
	 "Passive health ejections of instances."},
	{F_RT_WORKERS, "paasops_router_workers", METRICS_GAUGE, true, {NULL},
	 "Router worker threads."},
	{F_RT_OPENED, "paasops_router_backend_connections_opened_total", METRICS_COUNTER, true, {NULL},
	 "Connections the router opened to instances."},
	{F_RT_REUSED, "paasops_router_backend_connections_reused_total", METRICS_COUNTER, true, {NULL},
	 "Requests sent on a pooled (kept-alive) instance connection."},
	{F_RT_ACCESS_DROPPED, "paasops_router_access_log_dropped_total", METRICS_COUNTER, true, {NULL},
	 "Access log lines dropped because the queue to the control loop was full."},
	{F_RT_CONNS, "paasops_router_client_connections", METRICS_GAUGE, true, {"worker"},
	 "Client connections open on each router worker."},
	{F_RT_MOVED, "paasops_router_connections_moved_total", METRICS_COUNTER, true, {NULL},
	 "Client connections one worker accepted and handed to a worker with fewer."},
	{F_RT_TLS_FAILED, "paasops_router_tls_handshake_failures_total", METRICS_COUNTER, true, {NULL},
	 "TLS handshakes on the router's HTTPS listener that failed or did not finish in time."},
	{F_HOST_CPU, "paasops_host_cpu_seconds_total", METRICS_COUNTER, true, {"mode"},
	 "CPU time of the host summed over its CPUs, by mode."},
	{F_HOST_CPUS, "paasops_host_cpus", METRICS_GAUGE, true, {NULL}, "Online CPUs of the host."},
	{F_HOST_MEM_TOTAL, "paasops_host_memory_total_bytes", METRICS_GAUGE, true, {NULL},
	 "Memory of the host (MemTotal)."},
	{F_HOST_MEM_AVAIL, "paasops_host_memory_available_bytes", METRICS_GAUGE, true, {NULL},
	 "Memory available for new work without swapping (MemAvailable)."},
	{F_HOST_LOAD1, "paasops_host_load1", METRICS_GAUGE, true, {NULL}, "1-minute load average."},
	{F_HOST_LOAD5, "paasops_host_load5", METRICS_GAUGE, true, {NULL}, "5-minute load average."},
	{F_HOST_LOAD15, "paasops_host_load15", METRICS_GAUGE, true, {NULL}, "15-minute load average."},
	{F_HOST_DISK_TOTAL, "paasops_host_disk_total_bytes", METRICS_GAUGE, true, {"path"},
	 "Size of the file system holding the data dir."},
	{F_HOST_DISK_FREE, "paasops_host_disk_free_bytes", METRICS_GAUGE, true, {"path"},
	 "Space available to the daemon on the file system holding the data dir."},
	{F_HOST_NET_RX, "paasops_host_network_receive_bytes_total", METRICS_COUNTER, true, {"device"},
	 "Bytes received by each network interface."},
	{F_HOST_NET_TX, "paasops_host_network_transmit_bytes_total", METRICS_COUNTER, true, {"device"},
	 "Bytes sent by each network interface."},
	{F_PROC_CPU, "paasops_process_cpu_seconds_total", METRICS_COUNTER, true, {NULL},
	 "CPU time used by the daemon."},
	{F_PROC_RSS, "paasops_process_resident_memory_bytes", METRICS_GAUGE, true, {NULL},
	 "Resident memory of the daemon."},
	{F_PROC_FDS, "paasops_process_open_fds", METRICS_GAUGE, true, {NULL},
	 "Open file descriptors of the daemon."},
	{F_PROC_START, "paasops_process_start_time_seconds", METRICS_GAUGE, true, {NULL},
	 "When the daemon started, in seconds since the epoch."},
	{F_LOOP_LAG, "paasops_loop_lag_seconds", METRICS_GAUGE, true, {NULL},
	 "How late the control loop ran the last sampling tick."},
	{F_BUILD, "paasops_build_info", METRICS_GAUGE, true, {"version"},
	 "Always 1; the version label names the daemon's version."},
	{F_SELF_SAMPLE_S, "paasops_metrics_sample_duration_seconds", METRICS_GAUGE, false, {NULL},
	 "Wall time of the last sampling pass."},
	{F_SELF_SAMPLE_CPU, "paasops_metrics_sample_cpu_seconds_total", METRICS_COUNTER, false, {NULL},
	 "CPU time spent sampling and recording history."},
	{F_SELF_SCRAPES, "paasops_metrics_scrapes_total", METRICS_COUNTER, false, {NULL},
	 "Scrapes of /metrics served."},
	{F_SELF_SCRAPE_S, "paasops_metrics_scrape_duration_seconds", METRICS_GAUGE, false, {NULL},
	 "Time to render the last scrape."},
	{F_SELF_SERIES, "paasops_metrics_series", METRICS_GAUGE, false, {NULL},
	 "Series in the registry (what /metrics shows)."},
	{F_SELF_HSERIES, "paasops_metrics_history_series", METRICS_GAUGE, false, {NULL},
	 "Series kept in the history."},
	{F_SELF_HBYTES, "paasops_metrics_history_memory_bytes", METRICS_GAUGE, false, {NULL},
	 "Memory used by the history."},
	{F_SELF_HBUDGET, "paasops_metrics_history_memory_budget_bytes", METRICS_GAUGE, false, {NULL},
	 "Memory the history may use (--metrics-memory)."},
	{F_SELF_DROPPED, "paasops_metrics_history_dropped_series_total", METRICS_COUNTER, false, {NULL},
	 "Series the history refused because the memory budget was full."},
	{F_SELF_DROPPED_SAMPLES, "paasops_metrics_history_dropped_samples_total", METRICS_COUNTER, false,
	 {NULL}, "Samples the history could not store within the memory budget."},
	{F_SELF_EVICTED, "paasops_metrics_history_evicted_chunks_total", METRICS_COUNTER, false, {NULL},
	 "Old chunks given up early to stay within the memory budget."},
	{F_SELF_SAVES, "paasops_metrics_history_saves_total", METRICS_COUNTER, false, {NULL},
	 "Times the history was written to the data dir."},
	{F_SELF_SAVE_ERRORS, "paasops_metrics_history_save_errors_total", METRICS_COUNTER, false, {NULL},
	 "Failed writes of the history."},
};

_Static_assert(sizeof(defs) / sizeof(defs[0]) == F_COUNT, "one definition per family");

struct mx_samplers {
	struct metrics_registry *reg;
	struct metrics_family *f[F_COUNT];
	char *version;
	int64_t start_wall_ms;
	int64_t now_mono;
	int64_t now_wall; /* the sample's time, on the sampling grid */
};

struct mx_samplers *mx_samplers_new(struct metrics_registry *reg, const char *version)
{
	struct mx_samplers *s = xcalloc(1, sizeof(*s));
	s->reg = reg;
	s->version = xstrdup(version ? version : "unknown");
	s->start_wall_ms = time_wall_ms();
	size_t nb;
	const double *bounds = router_metrics_bounds(&nb);
	for (size_t k = 0; k < F_COUNT; k++) {
		const struct fam_def *d = &defs[k];
		size_t nl = 0;
		while (nl < ARRAY_SIZE(d->labels) && d->labels[nl])
			nl++;
		bool hist = d->type == METRICS_HISTOGRAM;
		s->f[d->id] = metrics_family_add(reg, d->name, d->help, d->type, d->labels, nl,
						 hist ? bounds : NULL, hist ? nb : 0, d->expire);
		if (!s->f[d->id]) {
			fprintf(stderr, "metrics: cannot register '%s'\n", d->name);
			abort(); /* a programming error in the table above */
		}
	}
	return s;
}

void mx_samplers_free(struct mx_samplers *s)
{
	if (!s)
		return;
	free(s->version);
	free(s);
}

void mx_samplers_self(struct mx_samplers *s, struct mx_self *o)
{
	static const char *const none[1] = {NULL};
	o->sample_seconds = metrics_series_get(s->f[F_SELF_SAMPLE_S], none);
	o->sample_cpu = metrics_series_get(s->f[F_SELF_SAMPLE_CPU], none);
	o->scrapes = metrics_series_get(s->f[F_SELF_SCRAPES], none);
	o->scrape_seconds = metrics_series_get(s->f[F_SELF_SCRAPE_S], none);
	o->hist_series = metrics_series_get(s->f[F_SELF_HSERIES], none);
	o->hist_bytes = metrics_series_get(s->f[F_SELF_HBYTES], none);
	o->hist_budget = metrics_series_get(s->f[F_SELF_HBUDGET], none);
	o->dropped_series = metrics_series_get(s->f[F_SELF_DROPPED], none);
	o->dropped_samples = metrics_series_get(s->f[F_SELF_DROPPED_SAMPLES], none);
	o->evicted = metrics_series_get(s->f[F_SELF_EVICTED], none);
	o->saves = metrics_series_get(s->f[F_SELF_SAVES], none);
	o->save_errors = metrics_series_get(s->f[F_SELF_SAVE_ERRORS], none);
	(void)metrics_series_get(s->f[F_SELF_SERIES], none);
}

static void set(struct mx_samplers *s, enum fam f, const char *const *values, double v)
{
	metrics_set(metrics_series_get(s->f[f], values), v);
}

static void set0(struct mx_samplers *s, enum fam f, double v)
{
	static const char *const none[1] = {NULL};
	set(s, f, none, v);
}

/* ---- supervisor ---- */

/* An instance's uptime, in whole milliseconds. Samples are stamped with
 * their place on the sampling grid; an uptime read within the same
 * tolerance of one interval (or a whole number of them) more than the last
 * is taken as exactly that much more, so that a running instance's uptime
 * grows by exactly the interval and its history is a run of a few bytes
 * rather than a few bits a sample. */
#define MX_UPTIME_SNAP_MS 25

static void set_uptime(struct mx_samplers *s, const char *const *values,
		       const struct supervisor_metrics_inst *in)
{
	struct metrics_series *u = metrics_series_get(s->f[F_INST_UPTIME], values);
	int64_t ms = llround(in->uptime_seconds * 1000.0);
	if (u->tag == in->pid && u->prev_ms && s->now_wall > u->prev_ms) {
		int64_t want = (int64_t)u->prev + (s->now_wall - u->prev_ms);
		if (llabs(ms - want) <= MX_UPTIME_SNAP_MS)
			ms = want;
	}
	u->prev = (double)ms;
	u->prev_ms = s->now_wall;
	u->tag = in->pid;
	metrics_set(u, (double)ms / 1000.0);
}

/* An instance's first sample has no previous one to measure CPU from: the
 * average since its start stands in once that spans at least this long.
 * Over a few milliseconds of start-up it would read as whole cores. */
#define MX_RATIO_MIN_UPTIME_S 1.0

static void on_inst(void *ctx, const struct supervisor_metrics_inst *in)
{
	struct mx_samplers *s = ctx;
	const char *v[4] = {in->app, in->process, in->instance, in->state};
	set(s, F_INST_STATE, v, 1);
	set(s, F_INST_RESTARTS, v, in->restarts);
	if (in->memory_limit > 0)
		set(s, F_INST_MEM_LIMIT, v, (double)in->memory_limit);
	if (!in->running)
		return;
	struct metrics_series *cpu = metrics_series_get(s->f[F_INST_CPU], v);
	double ratio = -1;
	if (cpu->tag == in->pid && cpu->prev_ms && s->now_mono > cpu->prev_ms)
		ratio = (in->cpu_seconds - in->cpu_seconds_late - cpu->prev) /
			((double)(s->now_mono - cpu->prev_ms) / 1000.0);
	else if (in->uptime_seconds >= MX_RATIO_MIN_UPTIME_S)
		ratio = in->cpu_seconds / in->uptime_seconds;
	cpu->prev = in->cpu_seconds;
	cpu->prev_ms = s->now_mono;
	cpu->tag = in->pid;
	metrics_set(cpu, in->cpu_seconds);
	/* Left unset, the series is swept: a new run has no ratio yet. */
	if (ratio != -1)
		set(s, F_INST_CPU_RATIO, v, ratio > 0 ? ratio : 0);
	set(s, F_INST_RSS, v, (double)in->rss_bytes);
	if (in->open_fds >= 0)
		set(s, F_INST_FDS, v, (double)in->open_fds);
	set(s, F_INST_THREADS, v, (double)in->threads);
	set_uptime(s, v, in);
}

static void on_proc(void *ctx, const struct supervisor_metrics_proc *p)
{
	struct mx_samplers *s = ctx;
	const char *v[2] = {p->app, p->process};
	set(s, F_REPL_DESIRED, v, p->desired);
	set(s, F_REPL_READY, v, p->ready);
}

/* ---- router ---- */

static void on_route(void *ctx, const struct router_metrics_proc *p)
{
	struct mx_samplers *s = ctx;
	static const char *const codes[6] = {NULL, "1xx", "2xx", "3xx", "4xx", "5xx"};
	const char *v[3] = {p->app, p->process, NULL};
	for (int k = 1; k < 6; k++) {
		v[2] = codes[k];
		set(s, F_HTTP_REQ, v, (double)p->status[k]);
	}
	metrics_histogram_set(metrics_series_get(s->f[F_HTTP_DUR], v), p->hist, p->latency_sum);
	set(s, F_HTTP_INFLIGHT, v, (double)p->inflight);
	set(s, F_HTTP_BYTES_IN, v, (double)p->bytes_in);
	set(s, F_HTTP_BYTES_OUT, v, (double)p->bytes_out);
	set(s, F_HTTP_CONNECT_ERR, v, (double)p->connect_errors);
	set(s, F_HTTP_RETRIES, v, (double)p->retries);
	set(s, F_HTTP_EJECT, v, (double)p->ejections);
}

/* ---- host ---- */

static ssize_t read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	while (got < size - 1) {
		ssize_t n = read(fd, buf + got, size - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

static void sample_host(struct mx_samplers *s, const char *data_dir)
{
	char buf[16384];
	double hz = (double)sysconf(_SC_CLK_TCK);
	if (read_file("/proc/stat", buf, sizeof(buf)) > 0 && !strncmp(buf, "cpu ", 4)) {
		static const char *const modes[] = {"user", "nice", "system", "idle",
						    "iowait", "irq", "softirq", "steal"};
		char *p = buf + 4;
		for (size_t k = 0; k < ARRAY_SIZE(modes); k++) {
			char *end;
			unsigned long long t = strtoull(p, &end, 10);
			if (end == p)
				break;
			p = end;
			const char *v[1] = {modes[k]};
			set(s, F_HOST_CPU, v, (double)t / hz);
		}
	}
	set0(s, F_HOST_CPUS, (double)sysconf(_SC_NPROCESSORS_ONLN));
	if (read_file("/proc/meminfo", buf, sizeof(buf)) > 0) {
		char *p = strstr(buf, "MemTotal:");
		if (p)
			set0(s, F_HOST_MEM_TOTAL, strtod(p + 9, NULL) * 1024);
		if ((p = strstr(buf, "MemAvailable:")))
			set0(s, F_HOST_MEM_AVAIL, strtod(p + 13, NULL) * 1024);
	}
	double load[3];
	if (read_file("/proc/loadavg", buf, sizeof(buf)) > 0 &&
	    sscanf(buf, "%lf %lf %lf", &load[0], &load[1], &load[2]) == 3) {
		set0(s, F_HOST_LOAD1, load[0]);
		set0(s, F_HOST_LOAD5, load[1]);
		set0(s, F_HOST_LOAD15, load[2]);
	}
	struct statvfs vfs;
	if (data_dir && statvfs(data_dir, &vfs) == 0) {
		const char *v[1] = {data_dir};
		set(s, F_HOST_DISK_TOTAL, v, (double)vfs.f_blocks * (double)vfs.f_frsize);
		set(s, F_HOST_DISK_FREE, v, (double)vfs.f_bavail * (double)vfs.f_frsize);
	}
	if (read_file("/proc/net/dev", buf, sizeof(buf)) > 0) {
		char *line = strchr(buf, '\n');
		line = line ? strchr(line + 1, '\n') : NULL; /* two header lines */
		while (line && *++line) {
			char *colon = strchr(line, ':'), *eol = strchr(line, '\n');
			if (!colon || (eol && colon > eol))
				break;
			char *name = line;
			while (*name == ' ')
				name++;
			*colon = '\0';
			unsigned long long f[9];
			char *p = colon + 1;
			int k = 0;
			for (; k < 9; k++) {
				char *end;
				f[k] = strtoull(p, &end, 10);
				if (end == p)
					break;
				p = end;
			}
			if (k == 9) {
				const char *v[1] = {name};
				set(s, F_HOST_NET_RX, v, (double)f[0]);
				set(s, F_HOST_NET_TX, v, (double)f[8]);
			}
			line = eol;
		}
	}
}

/* ---- the daemon itself ---- */

static void sample_self(struct mx_samplers *s, double loop_lag_s)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		set0(s, F_PROC_CPU, (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
					    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	char buf[256];
	unsigned long long size, rss;
	if (read_file("/proc/self/statm", buf, sizeof(buf)) > 0 && sscanf(buf, "%llu %llu", &size, &rss) == 2)
		set0(s, F_PROC_RSS, (double)rss * (double)sysconf(_SC_PAGESIZE));
	/* Linux >= 6.2 reports the number of open files as the size of the
	 * fd directory; reading it, one entry per file (thousands with many
	 * instances), is the fallback. */
	struct stat st;
	if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0) {
		set0(s, F_PROC_FDS, (double)st.st_size);
	} else {
		DIR *d = opendir("/proc/self/fd");
		if (d) {
			int n = 0;
			struct dirent *e;
			while ((e = readdir(d)))
				n += e->d_name[0] != '.';
			closedir(d);
			set0(s, F_PROC_FDS, n - 1); /* not the one reading the directory */
		}
	}
	set0(s, F_PROC_START, (double)s->start_wall_ms / 1000.0);
	set0(s, F_LOOP_LAG, round(loop_lag_s * 1e6) / 1e6); /* microseconds are plenty */
	const char *v[1] = {s->version};
	set(s, F_BUILD, v, 1);
}

void mx_samplers_run(struct mx_samplers *s, struct supervisor *sv, struct router *r,
		     const char *data_dir, int64_t now_ms, double loop_lag_s)
{
	s->now_wall = now_ms;
	s->now_mono = time_mono_ms();
	if (sv)
		supervisor_metrics_each(sv, on_inst, on_proc, s);
	if (r) {
		router_metrics_each(r, on_route, s);
		struct router_metrics_global g;
		router_metrics_global(r, &g);
		set0(s, F_RT_WORKERS, g.workers);
		set0(s, F_RT_OPENED, (double)g.backend_opened);
		set0(s, F_RT_REUSED, (double)g.backend_reused);
		set0(s, F_RT_ACCESS_DROPPED, (double)g.access_log_dropped);
		set0(s, F_RT_MOVED, (double)g.connections_moved);
		for (int k = 0; k < g.workers; k++) {
			char idx[16];
			snprintf(idx, sizeof(idx), "%d", k);
			const char *v[1] = {idx};
			set(s, F_RT_CONNS, v, (double)router_metrics_worker_connections(r, k));
		}
		if (g.https)
			set0(s, F_RT_TLS_FAILED, (double)g.tls_handshake_failures);
	}
	sample_host(s, data_dir);
	sample_self(s, loop_lag_s);
	set0(s, F_SELF_SERIES, (double)metrics_registry_series(s->reg));
	metrics_registry_sweep(s->reg);
}
