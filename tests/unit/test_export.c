/* test_export.c: the translation of a release into Kubernetes objects and a
 * Dockerfile (src/export), for the cases the end-to-end test does not
 * deploy: long and digit-led names, memory autoscaling, recreate, no health
 * check, no routes, no secrets, and the namespace and image rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat/json.h"
#include "core/util.h"
#include "export/export.h"
#include "spec/spec.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static struct json *export_yaml(const char *yaml, const char *config, const char *secrets,
				const char *image, const char *ns)
{
	char *err = NULL;
	struct spec *s = spec_parse(yaml, strlen(yaml), "paasops.yaml", &err);
	if (!s)
		fail_msg("spec errors:\n%s", err);
	struct json *cfg = json_parse(config, strlen(config), NULL);
	struct json *sec = json_parse(secrets, strlen(secrets), NULL);
	struct export_release r = {s->app, 4, s, cfg, sec, "/srv/rel"};
	struct json *out = export_kubernetes(&r, image, ns);
	json_free(cfg);
	json_free(sec);
	spec_free(s);
	return out;
}

static const char *kind_at(const struct json *list, size_t k)
{
	return json_get_str(json_at(json_get(list, "items"), k), "kind");
}

static const char *name_at(const struct json *list, size_t k)
{
	return json_get_str(json_get(json_at(json_get(list, "items"), k), "metadata"), "name");
}

static void test_export__names_fit_a_dns_label(void **state)
{
	char yaml[512];
	char app[64], proc[64];
	memset(app, 'a', 63);
	app[63] = '\0';
	memset(proc, 'w', 63);
	proc[63] = '\0';
	snprintf(yaml, sizeof(yaml), "app: %s\nprocesses:\n  %s: {command: ./x}\n  web: {command: ./y}\n",
		 app, proc);
	struct json *l = export_yaml(yaml, "{}", "[]", NULL, NULL);
	assert_int_equal(json_size(json_get(l, "items")), 2);
	const char *long_name = name_at(l, 0);
	assert_int_equal(strlen(long_name), 63);
	assert_true(strncmp(long_name, app, 53) == 0 && long_name[53] != '-');
	/* Cut names end with a hash, so two long names stay apart. */
	const char *other = name_at(l, 1);
	assert_int_equal(strlen(other), 63);
	assert_string_not_equal(long_name, other);
	json_free(l);

	l = export_yaml("app: 9lives\nprocesses:\n  web: {command: ./x, routes: [{path: /}]}\n", "{}", "[]",
			NULL, NULL);
	assert_string_equal(name_at(l, 0), "p-9lives-web");
	assert_string_equal(name_at(l, 1), "p-9lives-web"); /* the Service */
	assert_string_equal(kind_at(l, 2), "Ingress");
	assert_string_equal(name_at(l, 2), "p-9lives");
	json_free(l);
}

static void test_export__memory_autoscale_recreate_and_no_health(void **state)
{
	struct json *l = export_yaml("app: jobs\nprocesses:\n  worker:\n    command: ./work --fast\n"
				     "    deploy: {strategy: recreate, min_healthy: 0s, auto_rollback: false}\n"
				     "    autoscale: {min: 0, max: 3, metric: memory, target: 268435456}\n",
				     "{\"A\":\"1\",\"PAASOPS_WEBHOOK_URL\":\"https://hooks\"}", "[]",
				     "reg/jobs:1", "batch");
	struct json *items = json_get(l, "items");
	assert_int_equal(json_size(items), 2); /* no Secret, Service or Ingress */
	struct json *dep = json_at(items, 0);
	assert_string_equal(json_get_str(json_get(dep, "metadata"), "namespace"), "batch");
	struct json *spec = json_get(dep, "spec");
	assert_string_equal(json_get_str(json_get(spec, "strategy"), "type"), "Recreate");
	assert_null(json_get(json_get(spec, "strategy"), "rollingUpdate"));
	int64_t v;
	assert_int_equal(json_get_int(json_get(spec, "minReadySeconds"), &v), 0);
	assert_int_equal(v, 0);
	struct json *c = json_at(json_get(json_get(json_get(spec, "template"), "spec"), "containers"), 0);
	assert_string_equal(json_get_str(c, "image"), "reg/jobs:1");
	assert_string_equal(json_str(json_at(json_get(c, "command"), 2)), "exec ./work --fast");
	assert_null(json_get(c, "readinessProbe"));
	assert_null(json_get(c, "livenessProbe"));
	assert_null(json_get(c, "ports"));
	/* The webhook vars configure paasops, not the app. */
	bool a = false;
	for (struct json *e = json_first(json_get(c, "env")); e; e = json_next(e)) {
		assert_false(str_starts_with(json_get_str(e, "name"), "PAASOPS_WEBHOOK_"));
		a = a || str_eq(json_get_str(e, "name"), "A");
	}
	assert_true(a);
	const char *notes = json_get_str(json_get(json_get(dep, "metadata"), "annotations"),
					 "paasops.io/not-translated");
	assert_non_null(strstr(notes, "scale to zero"));
	assert_null(strstr(notes, "automatic rollback"));

	struct json *hpa = json_at(items, 1);
	assert_string_equal(json_get_str(hpa, "kind"), "HorizontalPodAutoscaler");
	struct json *hs = json_get(hpa, "spec");
	assert_int_equal(json_get_int(json_get(hs, "minReplicas"), &v), 0);
	assert_int_equal(v, 1); /* Kubernetes has no scale to zero */
	struct json *res = json_get(json_at(json_get(hs, "metrics"), 0), "resource");
	assert_string_equal(json_get_str(res, "name"), "memory");
	assert_string_equal(json_get_str(json_get(res, "target"), "averageValue"), "268435456");
	json_free(l);
}

static void test_export__dockerfile_without_build_has_no_run(void **state)
{
	const char *yaml = "app: plain\nprocesses:\n  web: {command: ./x}\n";
	struct spec *s = spec_parse(yaml, strlen(yaml), "paasops.yaml", NULL);
	struct export_release r = {s->app, 2, s, NULL, NULL, "/srv/a\nb"};
	char *text = export_dockerfile(&r, NULL);
	assert_non_null(strstr(text, "docker build -t plain:v2 -f Dockerfile /srv/a?b\n"));
	assert_non_null(strstr(text, "\nFROM debian:12-slim\nWORKDIR /app\nCOPY . /app\n"));
	assert_null(strstr(text, "RUN"));
	free(text);
	spec_free(s);
}

static void test_export__namespace_and_image_rules(void **state)
{
	assert_true(export_namespace_ok("prod"));
	assert_true(export_namespace_ok("a-1"));
	assert_true(export_namespace_ok("0"));
	assert_false(export_namespace_ok(""));
	assert_false(export_namespace_ok(NULL));
	assert_false(export_namespace_ok("Prod"));
	assert_false(export_namespace_ok("-a"));
	assert_false(export_namespace_ok("a-"));
	assert_false(export_namespace_ok("a.b"));
	char ns[65];
	memset(ns, 'n', 64);
	ns[64] = '\0';
	assert_false(export_namespace_ok(ns));
	ns[63] = '\0';
	assert_true(export_namespace_ok(ns));

	assert_true(export_image_ok("registry.example.com:5000/shop@sha256:abc"));
	assert_false(export_image_ok(""));
	assert_false(export_image_ok(NULL));
	assert_false(export_image_ok("a b"));
	assert_false(export_image_ok("a\nb"));
	assert_false(export_image_ok("a\x7f"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_export__names_fit_a_dns_label),
		cmocka_unit_test(test_export__memory_autoscale_recreate_and_no_health),
		cmocka_unit_test(test_export__dockerfile_without_build_has_no_run),
		cmocka_unit_test(test_export__namespace_and_image_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
