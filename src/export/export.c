/* export.c: an app's release as Kubernetes manifests and as a Dockerfile.
 * Every mapping (and what does not map) is listed in doc/export.md; what a
 * process type uses that Kubernetes has no equivalent for is also written
 * into its Deployment's "paasops.io/not-translated" annotation, so that the
 * manifests themselves say what was left behind. */
#include "export/export.h"
#include "compat/crypto.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "spec/spec.h"
#include "supervisor/supervisor.h"
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_NAME "app.kubernetes.io/name"
#define LABEL_COMPONENT "app.kubernetes.io/component"
#define LABEL_MANAGED "app.kubernetes.io/managed-by"
#define MANAGED_BY "paasops-export"
#define ANN_RELEASE "paasops.io/release"
#define ANN_AUTOSCALE "paasops.io/autoscale"
#define ANN_NOT_TRANSLATED "paasops.io/not-translated"
#define ANN_FILL_IN "paasops.io/fill-in"
#define SERVICE_PORT 80
#define MAX_NAME 63 /* a Service name is a DNS label */

bool export_namespace_ok(const char *ns)
{
	size_t n = ns ? strlen(ns) : 0;
	if (n == 0 || n > 63 || ns[0] == '-' || ns[n - 1] == '-')
		return false;
	for (size_t k = 0; k < n; k++)
		if (!(islower((unsigned char)ns[k]) || isdigit((unsigned char)ns[k]) || ns[k] == '-'))
			return false;
	return true;
}

bool export_image_ok(const char *image)
{
	size_t n = image ? strlen(image) : 0;
	if (n == 0 || n > 512)
		return false;
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)image[k] <= ' ' || image[k] == 0x7f)
			return false;
	return true;
}

/* ------------------------------------------------------------------------ */
/* Names, labels, metadata                                                  */

/* "APP-PROCESS" (or "APP" when proc is NULL) as a DNS-1035 label, which a
 * Service name must be: a name starting with a digit gets a "p-" in front,
 * and one longer than 63 characters is cut and ends with 8 hex digits of
 * the whole name's hash, so that two long names stay apart. Caller frees. */
static char *object_name(const char *app, const char *proc)
{
	char *full = proc ? xasprintf("%s%s-%s", isdigit((unsigned char)app[0]) ? "p-" : "", app, proc)
			  : xasprintf("%s%s", isdigit((unsigned char)app[0]) ? "p-" : "", app);
	size_t n = strlen(full);
	if (n <= MAX_NAME)
		return full;
	char hex[CRYPTO_SHA256_HEX];
	crypto_sha256_hex(full, n, hex);
	size_t keep = MAX_NAME - 9;
	while (keep > 0 && full[keep - 1] == '-')
		keep--;
	char *cut = xasprintf("%.*s-%.8s", (int)keep, full, hex);
	free(full);
	return cut;
}

static struct json *labels(const char *app, const char *proc)
{
	struct json *l = json_object();
	json_set_str(l, LABEL_NAME, app);
	if (proc)
		json_set_str(l, LABEL_COMPONENT, proc);
	json_set_str(l, LABEL_MANAGED, MANAGED_BY);
	return l;
}

static struct json *release_annotations(const struct export_release *r)
{
	struct json *a = json_object();
	char *v = xasprintf("v%d", r->version);
	json_set_str(a, ANN_RELEASE, v);
	free(v);
	return a;
}

/* {name, namespace, labels, annotations}; returns the annotations object. */
static struct json *set_metadata(struct json *obj, const struct export_release *r, const char *name,
				 const char *ns, const char *proc)
{
	struct json *md = json_set(obj, "metadata", json_object());
	json_set_str(md, "name", name);
	if (ns)
		json_set_str(md, "namespace", ns);
	json_set(md, "labels", labels(r->app, proc));
	return json_set(md, "annotations", release_annotations(r));
}

static struct json *new_object(const char *api_version, const char *kind)
{
	struct json *o = json_object();
	json_set_str(o, "apiVersion", api_version);
	json_set_str(o, "kind", kind);
	return o;
}

/* Whole seconds, rounded up: Kubernetes counts probes and deadlines in
 * seconds, and rounding down could make a 1.5 s timeout 1 s. */
static int64_t seconds_up(int64_t ms, int64_t min)
{
	int64_t s = (ms + 999) / 1000;
	return s < min ? min : s;
}

/* A CPU quantity in millicores ("500m"), at least 1m. */
static char *cpu_quantity(double cores)
{
	long long m = llround(cores * 1000);
	return xasprintf("%lldm", m < 1 ? 1 : m);
}

static void note_add(struct strbuf *notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_add(struct strbuf *notes, const char *fmt, ...)
{
	if (notes->len)
		strbuf_adds(notes, "; ");
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	strbuf_adds(notes, s);
	free(s);
}

/* ------------------------------------------------------------------------ */
/* The container's environment                                              */

/* An ordered set of env entries where a later one with the same name
 * replaces the earlier in place: the supervisor's precedence (doc/spec.md:
 * app env, process env, config vars, then what paasops sets itself). */
struct env_list {
	struct json **entries; /* {"name", "value" | "valueFrom"} */
	size_t n, alloc;
};

static void env_put(struct env_list *l, struct json *entry)
{
	const char *name = json_get_str(entry, "name");
	for (size_t k = 0; k < l->n; k++) {
		if (str_eq(json_get_str(l->entries[k], "name"), name)) {
			json_free(l->entries[k]);
			l->entries[k] = entry;
			return;
		}
	}
	l->entries = xgrow(l->entries, sizeof(*l->entries), l->n + 1, &l->alloc);
	l->entries[l->n++] = entry;
}

static void env_value(struct env_list *l, const char *name, const char *value)
{
	struct json *e = json_object();
	json_set_str(e, "name", name);
	json_set_str(e, "value", value);
	env_put(l, e);
}

static struct json *env_json(const struct export_release *r, const struct spec_process *p,
			     const char *secret_name)
{
	struct env_list l = {0};
	const struct spec *s = r->spec;
	for (size_t k = 0; k < s->n_env; k++)
		env_value(&l, s->env[k].key, s->env[k].value);
	for (size_t k = 0; k < p->n_env; k++)
		env_value(&l, p->env[k].key, p->env[k].value);
	/* Config vars in the release's order; the PAASOPS_WEBHOOK_* ones
	 * configure paasops' own deploy notifications, not the app. */
	for (const struct json *e = json_first(r->config); e; e = json_next(e))
		if (!str_starts_with(json_key(e), "PAASOPS_WEBHOOK_") && json_str(e))
			env_value(&l, json_key(e), json_str(e));
	for (const struct json *e = json_first(r->secrets); e; e = json_next(e)) {
		if (!json_str(e) || str_starts_with(json_str(e), "PAASOPS_WEBHOOK_"))
			continue;
		struct json *v = json_object();
		json_set_str(v, "name", json_str(e));
		struct json *ref = json_set(json_set(v, "valueFrom", json_object()), "secretKeyRef",
					    json_object());
		json_set_str(ref, "name", secret_name);
		json_set_str(ref, "key", json_str(e));
		env_put(&l, v);
	}
	char port[16];
	snprintf(port, sizeof(port), "%d", EXPORT_CONTAINER_PORT);
	env_value(&l, "PORT", port);
	/* paasops gives 127.0.0.1 behind its router; in a pod the Service
	 * reaches the container on the pod's address. */
	env_value(&l, "HOST", "0.0.0.0");
	env_value(&l, "PAASOPS_APP", r->app);
	env_value(&l, "PAASOPS_PROCESS", p->name);
	/* An instance id names one running copy; the pod's name does here. */
	struct json *inst = json_object();
	json_set_str(inst, "name", "PAASOPS_INSTANCE");
	json_set_str(json_set(json_set(inst, "valueFrom", json_object()), "fieldRef", json_object()),
		     "fieldPath", "metadata.name");
	env_put(&l, inst);

	struct json *arr = json_array();
	for (size_t k = 0; k < l.n; k++)
		json_append(arr, l.entries[k]);
	free(l.entries);
	return arr;
}

/* ------------------------------------------------------------------------ */
/* Deployment and HorizontalPodAutoscaler                                   */

static struct json *probe(const struct spec_health *h, int success, int failure, int64_t period_s)
{
	struct json *pr = json_object();
	switch (h->kind) {
	case SPEC_HEALTH_HTTP: {
		struct json *g = json_set(pr, "httpGet", json_object());
		json_set_str(g, "path", h->target);
		json_set_str(g, "port", "http");
		break;
	}
	case SPEC_HEALTH_TCP:
		json_set_str(json_set(pr, "tcpSocket", json_object()), "port", "http");
		break;
	case SPEC_HEALTH_CMD: {
		struct json *cmd = json_set(json_set(pr, "exec", json_object()), "command", json_array());
		json_append(cmd, json_string("/bin/sh"));
		json_append(cmd, json_string("-c"));
		json_append(cmd, json_string(h->target));
		break;
	}
	case SPEC_HEALTH_NONE:
		break;
	}
	json_set_int(pr, "periodSeconds", period_s);
	json_set_int(pr, "timeoutSeconds", seconds_up(h->timeout_ms, 1));
	json_set_int(pr, "successThreshold", success);
	json_set_int(pr, "failureThreshold", failure);
	return pr;
}

static bool listens(const struct spec_process *p)
{
	return p->n_routes > 0 || p->health.kind == SPEC_HEALTH_HTTP || p->health.kind == SPEC_HEALTH_TCP;
}

static struct json *container(const struct export_release *r, const struct spec_process *p,
			      const char *image, const char *secret_name)
{
	struct json *c = json_object();
	json_set_str(c, "name", p->name);
	json_set_str(c, "image", image);
	json_set_str(c, "workingDir", EXPORT_WORKDIR);
	struct json *cmd = json_set(c, "command", json_array());
	json_append(cmd, json_string("/bin/sh"));
	json_append(cmd, json_string("-c"));
	char *line = supervisor_command_line(p->command);
	json_append(cmd, json_string(line));
	free(line);
	json_set(c, "env", env_json(r, p, secret_name));
	if (listens(p)) {
		struct json *port = json_append(json_set(c, "ports", json_array()), json_object());
		json_set_str(port, "name", "http");
		json_set_int(port, "containerPort", EXPORT_CONTAINER_PORT);
		json_set_str(port, "protocol", "TCP");
	}
	if (p->resources.memory_bytes > 0 || p->resources.cpu > 0) {
		/* Limits only: Kubernetes then requests the same amounts. */
		struct json *lim = json_set(json_set(c, "resources", json_object()), "limits", json_object());
		if (p->resources.cpu > 0) {
			char *q = cpu_quantity(p->resources.cpu);
			json_set_str(lim, "cpu", q);
			free(q);
		}
		if (p->resources.memory_bytes > 0) {
			char *q = xasprintf("%lld", (long long)p->resources.memory_bytes);
			json_set_str(lim, "memory", q);
			free(q);
		}
	}
	const struct spec_health *h = &p->health;
	if (h->kind != SPEC_HEALTH_NONE) {
		int64_t period = seconds_up(h->interval_ms, 1);
		/* Readiness gates traffic like paasops' ready state; liveness
		 * restarts after `unhealthy` failures like the supervisor does;
		 * the startup probe is the boot deadline, and holds liveness
		 * off until the first pass. */
		json_set(c, "readinessProbe", probe(h, h->healthy, h->unhealthy, period));
		json_set(c, "livenessProbe", probe(h, 1, h->unhealthy, period));
		int64_t boot = (h->boot_deadline_ms + period * 1000 - 1) / (period * 1000);
		json_set(c, "startupProbe", probe(h, 1, (int)(boot < 1 ? 1 : boot), period));
	}
	return c;
}

/* Notes on what this process type uses that the manifests cannot carry. */
static void untranslated(const struct export_release *r, const struct spec_process *p,
			 struct strbuf *notes)
{
	const struct spec_deploy *d = &p->deploy;
	if (str_eq(d->strategy, "canary"))
		note_add(notes, "canary rollout (%d canary instance%s%s): a RollingUpdate is used",
			 d->canary, d->canary == 1 ? "" : "s", d->auto_promote ? "" : ", promoted by hand");
	if (d->auto_rollback)
		note_add(notes, "automatic rollback on a failed or regressing rollout: use kubectl rollout undo");
	if (p->restart != SPEC_RESTART_ALWAYS)
		note_add(notes, "restart: %s (a Deployment always restarts its pods)",
			 p->restart == SPEC_RESTART_NEVER ? "never" : "on-failure");
	if (p->balance == SPEC_BALANCE_HASH)
		note_add(notes, "balance: hash on %s", p->hash_on ? p->hash_on : "?");
	else if (p->balance == SPEC_BALANCE_ROUND_ROBIN)
		note_add(notes, "balance: round-robin");
	for (size_t k = 0; k < p->n_routes; k++)
		if (p->routes[k].max_body != SPEC_DEFAULT_MAX_BODY) {
			note_add(notes, "max_body of routes (set your ingress controller's body limit)");
			break;
		}
	for (size_t k = 0; k < p->n_routes; k++)
		if (p->routes[k].https_redirect) {
			note_add(notes, "https: redirect of routes (enable your ingress controller's "
					"HTTPS redirect, e.g. ssl-redirect, and give the Ingress a TLS secret)");
			break;
		}
	if (p->autoscale.enabled && p->autoscale.min == 0)
		note_add(notes, "autoscale min 0 (scale to zero): minReplicas is 1");
	if (r->spec->release)
		note_add(notes, "release phase '%s' (run it once per release, e.g. as a Job, before rolling out)",
			 r->spec->release);
	if (r->spec->n_alerts)
		note_add(notes, "%zu alert rule(s) of the spec", r->spec->n_alerts);
	note_add(notes, "log capture and drains (read the pods' stdout and stderr)");
}

static bool hpa_metric(const struct spec_autoscale *a)
{
	return a->enabled && (str_eq(a->metric, "cpu") || str_eq(a->metric, "memory"));
}

static struct json *deployment(const struct export_release *r, const struct spec_process *p,
			       const char *image, const char *ns, const char *secret_name)
{
	char *name = object_name(r->app, p->name);
	struct json *d = new_object("apps/v1", "Deployment");
	struct json *ann = set_metadata(d, r, name, ns, p->name);
	const struct spec_autoscale *as = &p->autoscale;
	if (as->enabled && !hpa_metric(as)) {
		char *v = xasprintf("metric %s, target %g, min %d, max %d: not exported; a "
				    "HorizontalPodAutoscaler on it needs a custom metrics adapter, so "
				    "replicas stay fixed",
				    as->metric, as->target, as->min, as->max);
		json_set_str(ann, ANN_AUTOSCALE, v);
		free(v);
	}
	struct strbuf notes;
	strbuf_init(&notes, 256);
	untranslated(r, p, &notes);
	json_set_str(ann, ANN_NOT_TRANSLATED, notes.buf);
	strbuf_release(&notes);

	struct json *spec = json_set(d, "spec", json_object());
	json_set_int(spec, "replicas", p->instances);
	json_set(json_set(spec, "selector", json_object()), "matchLabels", labels(r->app, p->name));
	/* matchLabels needs no managed-by: a selector names what it picks. */
	json_remove(json_get(json_get(spec, "selector"), "matchLabels"), LABEL_MANAGED);
	int64_t min_ready = p->deploy.min_healthy_ms / 1000;
	int64_t deadline = seconds_up(p->deploy.healthy_deadline_ms, 1);
	json_set_int(spec, "minReadySeconds", min_ready);
	/* Kubernetes refuses a deadline that is not above minReadySeconds. */
	json_set_int(spec, "progressDeadlineSeconds", deadline > min_ready ? deadline : min_ready + 1);
	json_set_int(spec, "revisionHistoryLimit", 10);
	struct json *strat = json_set(spec, "strategy", json_object());
	if (str_eq(p->deploy.strategy, "recreate")) {
		json_set_str(strat, "type", "Recreate");
	} else {
		json_set_str(strat, "type", "RollingUpdate");
		struct json *ru = json_set(strat, "rollingUpdate", json_object());
		json_set_int(ru, "maxSurge", p->deploy.max_surge);
		json_set_int(ru, "maxUnavailable", p->deploy.max_unavailable);
		/* Both 0 is refused by Kubernetes (paasops refuses it for rolling). */
		if (p->deploy.max_surge == 0 && p->deploy.max_unavailable == 0) {
			json_remove(ru, "maxSurge");
			json_set_int(ru, "maxSurge", 1);
		}
	}
	struct json *tmpl = json_set(spec, "template", json_object());
	struct json *tmd = json_set(tmpl, "metadata", json_object());
	json_set(tmd, "labels", labels(r->app, p->name));
	json_set(tmd, "annotations", release_annotations(r));
	struct json *ps = json_set(tmpl, "spec", json_object());
	json_set_int(ps, "terminationGracePeriodSeconds", seconds_up(p->stop_timeout_ms, 0));
	json_append(json_set(ps, "containers", json_array()), container(r, p, image, secret_name));
	free(name);
	return d;
}

static struct json *autoscaler(const struct export_release *r, const struct spec_process *p,
			       const char *ns)
{
	const struct spec_autoscale *as = &p->autoscale;
	char *name = object_name(r->app, p->name);
	struct json *h = new_object("autoscaling/v2", "HorizontalPodAutoscaler");
	set_metadata(h, r, name, ns, p->name);
	struct json *spec = json_set(h, "spec", json_object());
	struct json *ref = json_set(spec, "scaleTargetRef", json_object());
	json_set_str(ref, "apiVersion", "apps/v1");
	json_set_str(ref, "kind", "Deployment");
	json_set_str(ref, "name", name);
	json_set_int(spec, "minReplicas", as->min < 1 ? 1 : as->min);
	json_set_int(spec, "maxReplicas", as->max);
	/* paasops' target is an amount per instance (cores, bytes), which is
	 * an AverageValue, not a Utilization of the requests. */
	struct json *m = json_append(json_set(spec, "metrics", json_array()), json_object());
	json_set_str(m, "type", "Resource");
	struct json *res = json_set(m, "resource", json_object());
	bool cpu = str_eq(as->metric, "cpu");
	json_set_str(res, "name", cpu ? "cpu" : "memory");
	struct json *t = json_set(res, "target", json_object());
	json_set_str(t, "type", "AverageValue");
	char *q = cpu ? cpu_quantity(as->target) : xasprintf("%lld", (long long)llround(as->target));
	json_set_str(t, "averageValue", q);
	free(q);
	free(name);
	return h;
}

/* ------------------------------------------------------------------------ */
/* Service, Ingress, Secret                                                 */

static struct json *service(const struct export_release *r, const struct spec_process *p,
			    const char *ns)
{
	char *name = object_name(r->app, p->name);
	struct json *s = new_object("v1", "Service");
	set_metadata(s, r, name, ns, p->name);
	struct json *spec = json_set(s, "spec", json_object());
	struct json *sel = json_set(spec, "selector", labels(r->app, p->name));
	json_remove(sel, LABEL_MANAGED);
	struct json *port = json_append(json_set(spec, "ports", json_array()), json_object());
	json_set_str(port, "name", "http");
	json_set_int(port, "port", SERVICE_PORT);
	json_set_str(port, "targetPort", "http");
	json_set_str(port, "protocol", "TCP");
	free(name);
	return s;
}

/* One rule per distinct host (a route without one gives a rule without
 * "host", which matches any host), paths in the spec's order. Ingress
 * controllers pick the most specific host and the longest prefix, as the
 * router does. */
static struct json *ingress(const struct export_release *r, const char *ns)
{
	struct json *ing = new_object("networking.k8s.io/v1", "Ingress");
	char *name = object_name(r->app, NULL);
	set_metadata(ing, r, name, ns, NULL);
	free(name);
	struct json *rules = json_set(json_set(ing, "spec", json_object()), "rules", json_array());
	for (size_t k = 0; k < r->spec->n_procs; k++) {
		const struct spec_process *p = &r->spec->procs[k];
		char *svc = object_name(r->app, p->name);
		for (size_t i = 0; i < p->n_routes; i++) {
			const struct spec_route *rt = &p->routes[i];
			struct json *rule = NULL;
			for (struct json *e = json_first(rules); e && !rule; e = json_next(e))
				if (str_eq(json_get_str(e, "host"), rt->host))
					rule = e;
			if (!rule) {
				rule = json_append(rules, json_object());
				if (rt->host)
					json_set_str(rule, "host", rt->host);
				json_set(json_set(rule, "http", json_object()), "paths", json_array());
			}
			struct json *path = json_append(json_get(json_get(rule, "http"), "paths"), json_object());
			json_set_str(path, "path", rt->path);
			json_set_str(path, "pathType", "Prefix");
			struct json *be = json_set(json_set(path, "backend", json_object()), "service",
						   json_object());
			json_set_str(be, "name", svc);
			json_set_int(json_set(be, "port", json_object()), "number", SERVICE_PORT);
		}
		free(svc);
	}
	return ing;
}

static struct json *secret(const struct export_release *r, const char *name, const char *ns)
{
	struct json *s = new_object("v1", "Secret");
	struct json *ann = set_metadata(s, r, name, ns, NULL);
	json_set_str(s, "type", "Opaque");
	struct json *data = json_set(s, "stringData", json_object());
	struct strbuf keys;
	strbuf_init(&keys, 64);
	for (const struct json *e = json_first(r->secrets); e; e = json_next(e)) {
		if (!json_str(e) || str_starts_with(json_str(e), "PAASOPS_WEBHOOK_"))
			continue;
		json_set_str(data, json_str(e), "");
		strbuf_addf(&keys, "%s%s", keys.len ? ", " : "", json_str(e));
	}
	char *v = xasprintf("paasops never reveals secret values: set %s before applying", keys.buf);
	json_set_str(ann, ANN_FILL_IN, v);
	free(v);
	strbuf_release(&keys);
	return s;
}

static bool has_secrets(const struct export_release *r)
{
	for (const struct json *e = json_first(r->secrets); e; e = json_next(e))
		if (json_str(e) && !str_starts_with(json_str(e), "PAASOPS_WEBHOOK_"))
			return true;
	return false;
}

static char *default_image(const struct export_release *r)
{
	return xasprintf("%s:v%d", r->app, r->version);
}

struct json *export_kubernetes(const struct export_release *r, const char *image, const char *ns)
{
	char *img = image ? xstrdup(image) : default_image(r);
	char *base = object_name(r->app, NULL);
	char *secret_name = xasprintf("%s-secrets", base);
	free(base);
	struct json *list = new_object("v1", "List");
	json_set(list, "metadata", json_object());
	struct json *items = json_set(list, "items", json_array());
	if (has_secrets(r))
		json_append(items, secret(r, secret_name, ns));
	bool routed = false;
	for (size_t k = 0; k < r->spec->n_procs; k++) {
		const struct spec_process *p = &r->spec->procs[k];
		json_append(items, deployment(r, p, img, ns, secret_name));
		if (hpa_metric(&p->autoscale))
			json_append(items, autoscaler(r, p, ns));
		if (p->n_routes) {
			json_append(items, service(r, p, ns));
			routed = true;
		}
	}
	if (routed)
		json_append(items, ingress(r, ns));
	free(secret_name);
	free(img);
	return list;
}

/* ------------------------------------------------------------------------ */
/* Dockerfile                                                               */

/* A comment line's text: control characters (a newline would end the
 * comment) become '?'. */
static void comment_text(struct strbuf *sb, const char *s)
{
	for (; *s; s++)
		strbuf_addc(sb, (unsigned char)*s < ' ' || *s == 0x7f ? '?' : *s);
}

char *export_dockerfile(const struct export_release *r, const char *image)
{
	char *img = image ? xstrdup(image) : default_image(r);
	struct strbuf sb;
	strbuf_init(&sb, 1024);
	strbuf_addf(&sb, "# Image for %s v%d, written by `paasops export kubernetes %s --dockerfile`.\n",
		    r->app, r->version, r->app);
	strbuf_adds(&sb, "# The build context is the release's directory on the paasops server:\n#\n"
			 "#   docker build -t ");
	comment_text(&sb, img);
	strbuf_adds(&sb, " -f Dockerfile ");
	comment_text(&sb, r->dir ? r->dir : ".");
	strbuf_adds(&sb, "\n#\n# then push the image to a registry your cluster pulls from.\n"
			 "# debian:12-slim has a shell and little else: if the app needs an interpreter\n"
			 "# or libraries (python3, nodejs, ...), add them with apt-get below.\n"
			 "FROM debian:12-slim\n");
	strbuf_addf(&sb, "WORKDIR %s\n", EXPORT_WORKDIR);
	strbuf_addf(&sb, "COPY . %s\n", EXPORT_WORKDIR);
	if (r->spec->build) {
		/* The build phase as deploy runs it: `/bin/sh -c BUILD` in the
		 * release directory with the spec's env, the config vars and
		 * PAASOPS_APP/PAASOPS_RELEASE. Secret vars stay out of the image.
		 * The exec form takes any command text without re-quoting. */
		strbuf_adds(&sb, "# The build phase of the spec. The directory already holds paasops' build\n"
				 "# output; remove this line if that is enough for this image, or install\n"
				 "# the build's tools first (debian:12-slim has no compilers). Secret config\n"
				 "# vars are not passed: keep secrets out of images.\n");
		struct json *run = json_array();
		json_append(run, json_string("env"));
		struct env_list l = {0};
		for (size_t k = 0; k < r->spec->n_env; k++)
			env_value(&l, r->spec->env[k].key, r->spec->env[k].value);
		for (const struct json *e = json_first(r->config); e; e = json_next(e))
			if (!str_starts_with(json_key(e), "PAASOPS_WEBHOOK_") && json_str(e))
				env_value(&l, json_key(e), json_str(e));
		char *rel = xasprintf("v%d", r->version);
		env_value(&l, "PAASOPS_APP", r->app);
		env_value(&l, "PAASOPS_RELEASE", rel);
		free(rel);
		for (size_t k = 0; k < l.n; k++) {
			char *kv = xasprintf("%s=%s", json_get_str(l.entries[k], "name"),
					     json_get_str(l.entries[k], "value"));
			json_append(run, json_string(kv));
			free(kv);
			json_free(l.entries[k]);
		}
		free(l.entries);
		json_append(run, json_string("/bin/sh"));
		json_append(run, json_string("-c"));
		json_append(run, json_string(r->spec->build));
		char *text = json_print(run, false);
		strbuf_addf(&sb, "RUN %s\n", text);
		free(text);
		json_free(run);
	}
	strbuf_adds(&sb, "# No CMD: each Deployment sets the command of its process type.\n");
	free(img);
	return strbuf_detach(&sb, NULL);
}
