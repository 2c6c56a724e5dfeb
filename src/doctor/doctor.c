/* doctor.c: the checks of the posture report (see doctor.h), one function
 * each, run in the order of the table below.
 *
 * Where it sits: the checks read the state of several feature modules (the
 * store and the audit chain, the supervisor, the log store's floor, alerts)
 * through their headers, and what only the daemon knows (where the API
 * listens). DESIGN.md's dependency direction is core ← compat ← store/spec ←
 * feature modules ← api ← daemon; this module reads feature modules and is
 * read by the API's handler, so it sits between the two, in a directory of
 * its own rather than inside api/, which keeps HTTP out of the checks and
 * lets the unit tests run them without a server. */
#include "doctor/doctor.h"
#include "alerts/alerts.h"
#include "auth/audit.h"
#include "compat/json.h"
#include "core/netaddr.h"
#include "core/strbuf.h"
#include "core/runas.h"
#include "core/util.h"
#include "spec/spec.h"
#include "store/store.h"
#include "supervisor/supervisor.h"
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DOCTOR_NAMES_MAX 5 /* names listed in a summary before "and N more" */

static const char *const status_names[DOCTOR_NSTATUS] = {"ok", "warn", "fail"};

const char *doctor_status_name(enum doctor_status s)
{
	return s < DOCTOR_NSTATUS ? status_names[s] : "unknown";
}

/* ---- the pure rules ---- */

enum doctor_status doctor_disk_status(double free_pct, int min_free_pct)
{
	if (min_free_pct <= 0)
		return free_pct <= 0 ? DOCTOR_FAIL : DOCTOR_OK;
	if (free_pct < min_free_pct)
		return DOCTOR_FAIL;
	if (free_pct < 2.0 * min_free_pct)
		return DOCTOR_WARN;
	return DOCTOR_OK;
}

enum doctor_status doctor_mode_status(unsigned mode, bool private)
{
	if (mode & (S_IWGRP | S_IWOTH))
		return DOCTOR_FAIL;
	if (private && (mode & (S_IRWXG | S_IRWXO)))
		return DOCTOR_WARN;
	return DOCTOR_OK;
}

/* ---- helpers ---- */

static void set(struct doctor_check *c, enum doctor_status s, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void set(struct doctor_check *c, enum doctor_status s, const char *hint, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	free(c->summary);
	c->summary = xvasprintf(fmt, ap);
	va_end(ap);
	free(c->hint);
	c->hint = xstrdup(hint);
	c->status = s;
}

/* A list of names for a summary: the first DOCTOR_NAMES_MAX, then a count
 * of the rest. */
struct names {
	struct strbuf sb;
	int n;
};

static void names_init(struct names *l)
{
	strbuf_init(&l->sb, 64);
	l->n = 0;
}

static void names_add(struct names *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void names_add(struct names *l, const char *fmt, ...)
{
	if (l->n++ >= DOCTOR_NAMES_MAX)
		return;
	if (l->sb.len)
		strbuf_adds(&l->sb, ", ");
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	strbuf_adds(&l->sb, s);
	free(s);
}

/* The names, with " and N more" when some were left out. Borrowed from l. */
static const char *names_text(struct names *l)
{
	if (l->n > DOCTOR_NAMES_MAX)
		strbuf_addf(&l->sb, " and %d more", l->n - DOCTOR_NAMES_MAX);
	return l->sb.len ? l->sb.buf : "";
}

static void names_release(struct names *l)
{
	strbuf_release(&l->sb);
}

/* ---- files in the data dir ---- */

static void check_data_dir(const struct doctor_input *in, struct doctor_check *c)
{
	struct stat st;
	if (lstat(in->data_dir, &st) < 0) {
		set(c, DOCTOR_FAIL, "check that the data dir exists and the daemon's user can read it",
		    "cannot read data dir '%s': %s", in->data_dir, strerror(errno));
		return;
	}
	unsigned dir_mode = st.st_mode & 07777;
	/* With --run-as, app code reaches its releases by name: search, but
	 * not read, is what group and others get. */
	bool run_as = in->sv && supervisor_run_as(in->sv);
	enum doctor_status worst = doctor_mode_status(run_as ? dir_mode & ~0011u : dir_mode, true);
	struct names writable;
	names_init(&writable);
	if (worst == DOCTOR_FAIL)
		names_add(&writable, "'%s' (mode %04o)", in->data_dir, dir_mode);
	DIR *d = opendir(in->data_dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *path = xasprintf("%s/%s", in->data_dir, e->d_name);
		/* Symbolic links have no mode of their own; the socket has its
		 * own check. */
		if (lstat(path, &st) == 0 && !S_ISLNK(st.st_mode) && !S_ISSOCK(st.st_mode) &&
		    doctor_mode_status(st.st_mode & 07777, false) == DOCTOR_FAIL) {
			names_add(&writable, "'%s' (mode %04o)", path, (unsigned)(st.st_mode & 07777));
			worst = DOCTOR_FAIL;
		}
		free(path);
	}
	if (d)
		closedir(d);
	if (worst == DOCTOR_FAIL)
		set(c, DOCTOR_FAIL,
		    "chmod go-w the paths named (the data dir itself 0700): other users could change the "
		    "daemon's state, its keys and what instances run",
		    "group- or world-writable: %s", names_text(&writable));
	else if (worst == DOCTOR_WARN)
		set(c, DOCTOR_WARN, run_as ? "chmod 0711 the data dir" : "chmod 0700 the data dir",
		    "data dir '%s' is mode %04o: other users can reach the state, logs and releases in it",
		    in->data_dir, dir_mode);
	else
		set(c, DOCTOR_OK, run_as ? "keep the data dir mode 0711 (searchable for --run-as)"
					 : "keep the data dir mode 0700",
		    "data dir '%s' is mode %04o and nothing in it is group- or world-writable",
		    in->data_dir, dir_mode);
	names_release(&writable);
}

static void check_secret_key(const struct doctor_input *in, struct doctor_check *c)
{
	char *path = xasprintf("%s/secret.key", in->data_dir);
	struct stat st;
	if (lstat(path, &st) < 0) {
		set(c, DOCTOR_FAIL,
		    "restore secret.key from the backup taken with state.db: without it secret config "
		    "values cannot be decrypted",
		    "secrets key '%s' cannot be read: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		set(c, DOCTOR_FAIL, "restore secret.key from the backup taken with state.db",
		    "secrets key '%s' is not a regular file", path);
	} else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		char *hint = xasprintf("chmod 0600 '%s'; consider the secret config values it protects "
				       "as exposed and rotate them",
				       path);
		set(c, DOCTOR_FAIL, hint,
		    "secrets key '%s' is mode %04o: other users can read the key that decrypts secret "
		    "config values",
		    path, (unsigned)(st.st_mode & 07777));
		free(hint);
	} else if (st.st_uid != geteuid()) {
		set(c, DOCTOR_WARN, "chown the key to the user the daemon runs as",
		    "secrets key '%s' belongs to uid %u, not to the daemon's user (uid %u)", path,
		    (unsigned)st.st_uid, (unsigned)geteuid());
	} else {
		set(c, DOCTOR_OK, "back secret.key up with state.db",
		    "secrets key '%s' is mode %04o, owned by the daemon's user", path,
		    (unsigned)(st.st_mode & 07777));
	}
	free(path);
}

static void check_socket(const struct doctor_input *in, struct doctor_check *c)
{
	struct stat st;
	if (lstat(in->socket_path, &st) < 0) {
		set(c, DOCTOR_FAIL, "restart the daemon to listen on its socket again",
		    "API socket '%s' cannot be read: %s", in->socket_path, strerror(errno));
	} else if (!S_ISSOCK(st.st_mode)) {
		set(c, DOCTOR_FAIL, "remove what is there and restart the daemon",
		    "API socket '%s' is not a socket", in->socket_path);
	} else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		char *hint = xasprintf("chmod 0600 '%s' (a restart makes it 0600 again)", in->socket_path);
		set(c, DOCTOR_WARN, hint,
		    "API socket '%s' is mode %04o: other users can connect (the daemon still answers "
		    "only its own user and root)",
		    in->socket_path, (unsigned)(st.st_mode & 07777));
		free(hint);
	} else {
		set(c, DOCTOR_OK, "whoever can use the socket is admin: keep it 0600",
		    "API socket '%s' is mode %04o", in->socket_path, (unsigned)(st.st_mode & 07777));
	}
}

/* ---- where the API listens ---- */

static void check_api_exposure(const struct doctor_input *in, struct doctor_check *c)
{
	if (!in->tcp_addr)
		set(c, DOCTOR_OK, "serve TCP (--api) only where remote clients need it",
		    "the API listens on its unix socket only");
	else if (netaddr_is_loopback(in->tcp_addr))
		set(c, DOCTOR_OK, "keep --api on loopback unless remote clients need it",
		    "the TCP API listens on %s, loopback only", in->tcp_addr);
	else if (in->tcp_tls)
		set(c, DOCTOR_OK, "keep tokens scoped and short-lived",
		    "the TCP API listens on %s over TLS", in->tcp_addr);
	else
		set(c, DOCTOR_WARN,
		    "use TLS for the TCP API (or a TLS-terminating proxy in front of a loopback "
		    "--api), or restrict --api to a loopback or private address",
		    "the TCP API listens on %s without TLS: tokens and requests cross the network in "
		    "clear",
		    in->tcp_addr);
}

static void check_metrics_exposure(const struct doctor_input *in, struct doctor_check *c)
{
	if (!in->metrics_public)
		set(c, DOCTOR_OK, "give Prometheus a viewer token",
		    "GET /metrics needs a token");
	else if (!in->tcp_addr)
		set(c, DOCTOR_OK, "drop --metrics-public: it has no effect without --api",
		    "--metrics-public is set but there is no TCP API");
	else if (netaddr_is_loopback(in->tcp_addr))
		set(c, DOCTOR_OK, "keep --api on loopback while --metrics-public is set",
		    "GET /metrics is public on %s, loopback only", in->tcp_addr);
	else
		set(c, DOCTOR_WARN,
		    "drop --metrics-public and give Prometheus a viewer token, or restrict --api to a "
		    "loopback or private address",
		    "GET /metrics is public on %s: anyone who reaches it sees app names, instances "
		    "and traffic",
		    in->tcp_addr);
}

/* ---- tokens ---- */

struct token_scan {
	int64_t now;
	int admin_active, admin_forever, expired;
	struct names forever, stale;
};

static void token_seen(void *ctx, const struct store_token *t)
{
	struct token_scan *s = ctx;
	if (t->revoked)
		return;
	bool expired = t->expires_at && t->expires_at <= s->now;
	if (expired) {
		s->expired++;
		names_add(&s->stale, "%s", t->id);
		return;
	}
	if (strcmp(t->role, "admin"))
		return;
	s->admin_active++;
	if (!t->expires_at) {
		s->admin_forever++;
		if (t->name && *t->name)
			names_add(&s->forever, "%s (%s)", t->id, t->name);
		else
			names_add(&s->forever, "%s", t->id);
	}
}

static int scan_tokens(const struct doctor_input *in, struct token_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->now = in->now_ms;
	names_init(&s->forever);
	names_init(&s->stale);
	return store_tokens_each(in->store, token_seen, s);
}

static void release_tokens(struct token_scan *s)
{
	names_release(&s->forever);
	names_release(&s->stale);
}

static void check_admin_tokens(const struct doctor_input *in, struct doctor_check *c)
{
	struct token_scan s;
	if (scan_tokens(in, &s) < 0)
		set(c, DOCTOR_FAIL, "check the state database", "cannot read the tokens");
	else if (s.admin_forever)
		set(c, DOCTOR_WARN,
		    "create admin tokens with --expires and revoke the others ('paasops tokens revoke "
		    "ID')",
		    "%d admin token%s never expire%s: %s", s.admin_forever, s.admin_forever == 1 ? "" : "s",
		    s.admin_forever == 1 ? "s" : "", names_text(&s.forever));
	else
		set(c, DOCTOR_OK, "give admin tokens an expiry (--expires)",
		    "no admin token without expiry (%d active admin token%s)", s.admin_active,
		    s.admin_active == 1 ? "" : "s");
	release_tokens(&s);
}

static void check_expired_tokens(const struct doctor_input *in, struct doctor_check *c)
{
	struct token_scan s;
	if (scan_tokens(in, &s) < 0)
		set(c, DOCTOR_FAIL, "check the state database", "cannot read the tokens");
	else if (s.expired)
		/* Expired tokens no longer authenticate: tidiness, not a risk. */
		set(c, DOCTOR_OK, "revoke them to keep the token list short ('paasops tokens revoke ID')",
		    "%d expired token%s not revoked (they no longer authenticate): %s", s.expired,
		    s.expired == 1 ? "" : "s", names_text(&s.stale));
	else
		set(c, DOCTOR_OK, "revoke tokens nobody uses", "no expired token left unrevoked");
	release_tokens(&s);
}

/* ---- the audit log ---- */

/* audit-chain from a walk's verdict. */
static void judge_audit(const struct audit_verdict *v, struct doctor_check *c)
{
	if (!v->broken && !v->ok)
		set(c, DOCTOR_WARN,
		    "put back the secret.key that chained them (from the backup taken with state.db) to "
		    "check them; entries recorded from now on are checked with the present key",
		    "the audit log's %lld entries link up, but %lld of them (%lld to %lld) were chained with "
		    "another secret key and cannot be checked with this one",
		    (long long)v->entries, (long long)v->unchecked, (long long)v->unchecked_from,
		    (long long)v->unchecked_to);
	else if (!v->ok)
		set(c, DOCTOR_FAIL,
		    "the state database was changed outside paasops: compare it with a backup and with "
		    "audit heads recorded earlier ('paasops audit verify')",
		    "the audit log is broken at entry %lld of %lld: %s", (long long)v->broken_at,
		    (long long)v->entries, v->reason ? v->reason : "not as recorded");
	else if (v->entries)
		set(c, DOCTOR_OK,
		    "record the head hash elsewhere: entries cut off the end are noticed only by "
		    "comparing heads",
		    "the audit log's %lld entries chain correctly (head %.12s)", (long long)v->entries,
		    v->head);
	else
		set(c, DOCTOR_OK, "changes made through the API will be recorded here",
		    "the audit log is empty");
}

static void check_audit(const struct doctor_input *in, struct doctor_check *c)
{
	if (in->audit) {
		judge_audit(in->audit, c);
		return;
	}
	struct audit_verdict v;
	if (audit_verify(in->store, &v) < 0) {
		set(c, DOCTOR_FAIL, "check the state database", "cannot read the audit log");
		return;
	}
	judge_audit(&v, c);
	audit_verdict_release(&v);
}

/* ---- users and limits ---- */

static void check_root(const struct doctor_input *in, struct doctor_check *c)
{
	uid_t uid = geteuid();
	const struct runas *ra = in->sv ? supervisor_run_as(in->sv) : NULL;
	if (ra) {
		set(c, DOCTOR_OK,
		    "keep --run-as on an unprivileged user that owns nothing but its releases",
		    "the daemon runs as uid %u; app code (instances, builds, runs) runs as user '%s' "
		    "(uid %u, gid %u) with no supplementary groups",
		    (unsigned)uid, ra->user, (unsigned)ra->uid, (unsigned)ra->gid);
		return;
	}
	if (uid == 0) {
		set(c, DOCTOR_WARN,
		    "start 'paasops serve --run-as USER' with a dedicated unprivileged user: app code "
		    "then cannot use the daemon's socket, keys or state",
		    "the daemon runs as root without --run-as, so every instance, build and run runs "
		    "as root too");
		return;
	}
	struct passwd pw, *res = NULL;
	char buf[1024];
	const char *name = getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res ? pw.pw_name : "?";
	set(c, DOCTOR_OK,
	    "keep the daemon's user unprivileged; app code has its authority (socket, data dir): "
	    "to confine it, run the daemon as root with '--run-as USER'",
	    "the daemon runs as uid %u (%s); instances, builds and runs run as the same user",
	    (unsigned)uid, name);
}

static void limited_proc(void *ctx, const char *app, int release, const struct spec *spec)
{
	struct names *l = ctx;
	for (size_t k = 0; k < spec->n_procs; k++) {
		const struct spec_resources *r = &spec->procs[k].resources;
		if (r->memory_bytes > 0 || r->cpu > 0)
			names_add(l, "%s/%s", app, spec->procs[k].name);
	}
}

static void check_limits(const struct doctor_input *in, struct doctor_check *c)
{
	const char *why = NULL;
	const char *how = supervisor_limits_how(in->sv, &why);
	if (how) {
		set(c, DOCTOR_OK, "set resources: {memory, cpu} on process types that need bounds",
		    "memory and CPU limits in specs are enforced through %s", how);
		return;
	}
	struct names l;
	names_init(&l);
	supervisor_each_spec(in->sv, limited_proc, &l);
	const char *hint = "run on cgroup v2 with the memory and cpu controllers delegated to the "
			   "daemon's user (or cgroup v1 writable by it)";
	if (l.n)
		set(c, DOCTOR_WARN, hint, "limits in specs are not enforced (%s); set but ignored for %s",
		    why, names_text(&l));
	else
		set(c, DOCTOR_WARN, hint, "limits in specs would not be enforced: %s", why);
	names_release(&l);
}

/* ---- disk ---- */

static void check_disk(const struct doctor_input *in, struct doctor_check *c)
{
	struct statvfs vs;
	int r = statvfs(in->data_dir, &vs) < 0 ? -errno : 0;
	if (r < 0 || vs.f_blocks == 0) {
		set(c, DOCTOR_WARN, "check the filesystem holding the data dir",
		    "cannot read free space of '%s': %s", in->data_dir,
		    r < 0 ? strerror(-r) : "it reports no blocks");
		return;
	}
	/* The log store's own measure: blocks available to the daemon. */
	double pct = (double)vs.f_bavail * 100.0 / (double)vs.f_blocks;
	double gib = (double)vs.f_bavail * (double)vs.f_frsize / (1024.0 * 1024 * 1024);
	enum doctor_status s = doctor_disk_status(pct, in->log_min_free_pct);
	static const char *const hints[DOCTOR_NSTATUS] = {
		"keep free space above twice --log-min-free",
		"free space on the data dir's filesystem (or lower --log-retention): the log store "
		"starts deleting its oldest lines at --log-min-free",
		"free space on the data dir's filesystem now: the log store is deleting its oldest "
		"lines and the state database may fail to write",
	};
	set(c, s, hints[s], "%.1f%% free (%.1f GiB) on the filesystem of '%s'; --log-min-free is %d%%",
	    pct, gib, in->data_dir, in->log_min_free_pct);
}

/* ---- apps ---- */

static void unchecked_proc(void *ctx, const char *app, int release, const struct spec *spec)
{
	struct names *l = ctx;
	for (size_t k = 0; k < spec->n_procs; k++)
		if (spec->procs[k].n_routes && spec->procs[k].health.kind == SPEC_HEALTH_NONE)
			names_add(l, "%s/%s", app, spec->procs[k].name);
}

static void check_health(const struct doctor_input *in, struct doctor_check *c)
{
	struct names l;
	names_init(&l);
	supervisor_each_spec(in->sv, unchecked_proc, &l);
	if (l.n)
		set(c, DOCTOR_WARN,
		    "add a health check (health: {http: /healthz}) so that the router sends traffic only "
		    "to instances that answer, and rollouts wait for them",
		    "%d routed process type%s without a health check: %s", l.n, l.n == 1 ? "" : "s",
		    names_text(&l));
	else
		set(c, DOCTOR_OK, "give every routed process type a health check",
		    "every routed process type has a health check");
	names_release(&l);
}

struct crash_scan {
	struct names apps;
	const char *last_app; /* instances come app by app */
	int instances;
};

static void crashed(void *ctx, const char *app, const char *instance, const char *reason)
{
	struct crash_scan *s = ctx;
	s->instances++;
	if (!s->last_app || strcmp(s->last_app, app))
		names_add(&s->apps, "%s", app);
	s->last_app = app;
}

static void check_crash_loops(const struct doctor_input *in, struct doctor_check *c)
{
	struct crash_scan s = {0};
	names_init(&s.apps);
	supervisor_each_crashed(in->sv, crashed, &s);
	if (s.instances)
		set(c, DOCTOR_FAIL,
		    "read why with 'paasops logs APP' and 'paasops events', fix and deploy, then "
		    "'paasops restart APP'",
		    "%d instance%s in a crash loop in app%s %s", s.instances, s.instances == 1 ? "" : "s",
		    s.apps.n == 1 ? "" : "s", names_text(&s.apps));
	else
		set(c, DOCTOR_OK, "'paasops events' shows restarts as they happen",
		    "no instance is in a crash loop");
	names_release(&s.apps);
}

/* ---- alerts ---- */

static void check_alerts(const struct doctor_input *in, struct doctor_check *c)
{
	if (!in->alerts) {
		set(c, DOCTOR_OK, "start the daemon with alerting to be told when something breaks",
		    "alerting is off");
		return;
	}
	struct json *all = alerts_active_json(in->alerts, NULL, NULL);
	struct names l;
	names_init(&l);
	for (const struct json *a = json_first(json_get(all, "alerts")); a; a = json_next(a)) {
		if (!str_eq(json_get_str(a, "state"), "firing"))
			continue;
		const char *app = json_get_str(json_get(a, "labels"), "app");
		if (app)
			names_add(&l, "%s (%s)", json_get_str(a, "name"), app);
		else
			names_add(&l, "%s", json_get_str(a, "name"));
	}
	if (l.n)
		set(c, DOCTOR_WARN, "'paasops alerts' shows them with their values and since when",
		    "%d alert%s firing: %s", l.n, l.n == 1 ? "" : "s", names_text(&l));
	else
		set(c, DOCTOR_OK, "'paasops alerts test NOTIFIER' proves a notifier delivers",
		    "no alert is firing");
	names_release(&l);
	json_free(all);
}

/* ---- the table ---- */

typedef void (*doctor_check_cb)(const struct doctor_input *in, struct doctor_check *c);

/* Every check, in report order: security first, then health. */
static const struct {
	const char *id;
	doctor_check_cb run;
} checks[] = {
	{"data-dir-permissions", check_data_dir},
	{"secret-key-permissions", check_secret_key},
	{"api-socket-permissions", check_socket},
	{"api-exposure", check_api_exposure},
	{"metrics-exposure", check_metrics_exposure},
	{"admin-tokens-expiry", check_admin_tokens},
	{"expired-tokens", check_expired_tokens},
	{"audit-chain", check_audit},
	{"run-as-root", check_root},
	{"resource-limits", check_limits},
	{"disk-space", check_disk},
	{"health-checks", check_health},
	{"crash-loops", check_crash_loops},
	{"alerts-firing", check_alerts},
};

void doctor_run(const struct doctor_input *in, struct doctor_report *out)
{
	memset(out, 0, sizeof(*out));
	out->checks = xcalloc(ARRAY_SIZE(checks), sizeof(*out->checks));
	for (size_t k = 0; k < ARRAY_SIZE(checks); k++) {
		struct doctor_check *c = &out->checks[out->n++];
		c->id = checks[k].id;
		checks[k].run(in, c);
		out->counts[c->status]++;
	}
}

int doctor_run_one(const struct doctor_input *in, const char *id, struct doctor_check *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t k = 0; k < ARRAY_SIZE(checks); k++)
		if (!strcmp(checks[k].id, id)) {
			out->id = checks[k].id;
			checks[k].run(in, out);
			return 0;
		}
	return -ENOENT;
}

void doctor_check_release(struct doctor_check *c)
{
	free(c->summary);
	free(c->hint);
	c->summary = c->hint = NULL;
}

void doctor_report_release(struct doctor_report *r)
{
	for (size_t k = 0; k < r->n; k++)
		doctor_check_release(&r->checks[k]);
	free(r->checks);
	memset(r, 0, sizeof(*r));
}

struct json *doctor_report_json(const struct doctor_report *r)
{
	struct json *o = json_object();
	struct json *arr = json_set(o, "checks", json_array());
	for (size_t k = 0; k < r->n; k++) {
		const struct doctor_check *c = &r->checks[k];
		struct json *e = json_append(arr, json_object());
		json_set_str(e, "id", c->id);
		json_set_str(e, "status", doctor_status_name(c->status));
		json_set_str(e, "summary", c->summary);
		json_set_str(e, "hint", c->hint);
	}
	struct json *counts = json_set(o, "counts", json_object());
	for (int s = 0; s < DOCTOR_NSTATUS; s++)
		json_set_int(counts, status_names[s], r->counts[s]);
	return o;
}
