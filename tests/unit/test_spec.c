/* test_spec.c: paasops.yaml parsing and validation (src/spec) and the YAML
 * adapter under it (src/compat/yaml). Error tests check whole message lines,
 * "FILE:LINE:COL: message", so that positions are proved, not assumed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "compat/json.h"
#include "compat/yaml.h"
#include "core/util.h"
#include "spec/spec.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_NAME "paasops.yaml"

/* ------------------------------------------------------------- helpers */

static struct spec *parse_ok(const char *yaml)
{
	char *err = NULL;
	struct spec *s = spec_parse(yaml, strlen(yaml), FILE_NAME, &err);
	if (!s)
		fail_msg("unexpected errors:\n%s", err ? err : "(none)");
	assert_null(err);
	return s;
}

/* Parses yaml that must fail; returns the errors (caller frees). */
static char *parse_err_n(const char *yaml, size_t len)
{
	char *err = NULL;
	struct spec *s = spec_parse(yaml, len, FILE_NAME, &err);
	if (s) {
		spec_free(s);
		fail_msg("expected errors, but the spec parsed:\n%s", yaml);
	}
	assert_non_null(err);
	assert_true(strlen(err) > 0);
	return err;
}

static char *parse_err(const char *yaml)
{
	return parse_err_n(yaml, strlen(yaml));
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p;) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && memcmp(p, line, n) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

static size_t count_lines(const char *text)
{
	size_t n = 1;
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	return n;
}

#define assert_line(err, line)                                                               \
	do {                                                                                  \
		if (!has_line((err), (line)))                                                 \
			fail_msg("missing line:\n  %s\nin:\n%s", (line), (err));              \
	} while (0)

/* The one error of yaml must be exactly line. */
static void expect_error(const char *yaml, const char *line)
{
	char *err = parse_err(yaml);
	if (strcmp(err, line) != 0)
		fail_msg("expected exactly:\n  %s\ngot:\n%s", line, err);
	free(err);
}

#define HEAD "app: shop\nprocesses:\n  web:\n    command: ./server\n"

/* --------------------------------------------------------- valid specs */

static const char *const full_spec =
	"app: shop\n"
	"build: make\n"
	"release: ./migrate\n"
	"env: {LOG_LEVEL: info, WORKERS: 4, DEBUG: false}\n"
	"processes:\n"
	"  web:\n"
	"    command: ./server --port $PORT\n"
	"    instances: 2\n"
	"    env: {MODE: web}\n"
	"    health: {http: /healthz, interval: 5s, timeout: 2s, healthy: 2, unhealthy: 4,\n"
	"             boot_deadline: 90s}\n"
	"    resources: {memory: 256M, cpu: 0.5}\n"
	"    stop_timeout: 45s\n"
	"    restart: on-failure\n"
	"    routes: [{host: shop.example.com, path: /}, {host: \"*.shop.example.com\", path: /api}]\n"
	"    deploy: {strategy: canary, max_surge: 2, max_unavailable: 1, canary: 3,\n"
	"             min_healthy: 20s, healthy_deadline: 10m, auto_rollback: false}\n"
	"    autoscale: {min: 2, max: 10, metric: rps, target: 200}\n"
	"  worker:\n"
	"    command: ./worker\n"
	"    health: {cmd: ./check}\n"
	"    restart: never\n"
	"  clock:\n"
	"    command: ./clock\n"
	"    instances: 0\n"
	"    health: {tcp: true}\n"
	"alerts:\n"
	"  - {name: slow, metric: http_p95_seconds, op: \">\", value: 0.5, for: 2m, severity: critical}\n"
	"  - name: down\n"
	"    metric: instances_ready\n"
	"    op: \"<=\"\n"
	"    value: 0\n";

static void test_spec__parses_every_field_of_a_full_spec(void **state)
{
	struct spec *s = parse_ok(full_spec);
	assert_string_equal(s->app, "shop");
	assert_string_equal(s->build, "make");
	assert_string_equal(s->release, "./migrate");
	assert_int_equal(s->n_env, 3);
	assert_string_equal(s->env[0].key, "LOG_LEVEL");
	assert_string_equal(s->env[0].value, "info");
	assert_string_equal(s->env[1].value, "4");
	assert_string_equal(s->env[2].value, "false");

	assert_int_equal(s->n_procs, 3);
	const struct spec_process *web = &s->procs[0];
	assert_string_equal(web->name, "web");
	assert_int_equal(web->line, 6);
	assert_string_equal(web->command, "./server --port $PORT");
	assert_int_equal(web->instances, 2);
	assert_int_equal(web->n_env, 1);
	assert_string_equal(web->env[0].key, "MODE");
	assert_string_equal(web->env[0].value, "web");
	assert_int_equal(web->health.kind, SPEC_HEALTH_HTTP);
	assert_string_equal(web->health.target, "/healthz");
	assert_int_equal(web->health.interval_ms, 5000);
	assert_int_equal(web->health.timeout_ms, 2000);
	assert_int_equal(web->health.healthy, 2);
	assert_int_equal(web->health.unhealthy, 4);
	assert_int_equal(web->health.boot_deadline_ms, 90000);
	assert_int_equal(web->resources.memory_bytes, 256 * 1024 * 1024);
	assert_true(web->resources.cpu == 0.5);
	assert_int_equal(web->stop_timeout_ms, 45000);
	assert_int_equal(web->restart, SPEC_RESTART_ON_FAILURE);
	assert_int_equal(web->n_routes, 2);
	assert_string_equal(web->routes[0].host, "shop.example.com");
	assert_string_equal(web->routes[0].path, "/");
	assert_string_equal(web->routes[1].host, "*.shop.example.com");
	assert_string_equal(web->routes[1].path, "/api");
	assert_string_equal(web->deploy.strategy, "canary");
	assert_int_equal(web->deploy.max_surge, 2);
	assert_int_equal(web->deploy.max_unavailable, 1);
	assert_int_equal(web->deploy.canary, 3);
	assert_int_equal(web->deploy.min_healthy_ms, 20000);
	assert_int_equal(web->deploy.healthy_deadline_ms, 600000);
	assert_false(web->deploy.auto_rollback);
	assert_true(web->autoscale.enabled);
	assert_int_equal(web->autoscale.min, 2);
	assert_int_equal(web->autoscale.max, 10);
	assert_string_equal(web->autoscale.metric, "rps");
	assert_true(web->autoscale.target == 200);

	const struct spec_process *worker = &s->procs[1];
	assert_string_equal(worker->name, "worker");
	assert_int_equal(worker->health.kind, SPEC_HEALTH_CMD);
	assert_string_equal(worker->health.target, "./check");
	assert_int_equal(worker->restart, SPEC_RESTART_NEVER);
	const struct spec_process *clock = &s->procs[2];
	assert_int_equal(clock->instances, 0);
	assert_int_equal(clock->health.kind, SPEC_HEALTH_TCP);
	assert_null(clock->health.target);

	assert_int_equal(s->n_alerts, 2);
	assert_string_equal(s->alerts[0].name, "slow");
	assert_string_equal(s->alerts[0].metric, "http_p95_seconds");
	assert_string_equal(s->alerts[0].op, ">");
	assert_true(s->alerts[0].value == 0.5);
	assert_int_equal(s->alerts[0].for_ms, 120000);
	assert_string_equal(s->alerts[0].severity, "critical");
	assert_string_equal(s->alerts[1].name, "down");
	assert_string_equal(s->alerts[1].op, "<=");
	assert_true(s->alerts[1].value == 0);
	assert_int_equal(s->alerts[1].for_ms, 0);
	assert_string_equal(s->alerts[1].severity, "warning");
	spec_free(s);
}

static void test_spec__fills_documented_defaults(void **state)
{
	struct spec *s = parse_ok("app: shop\nprocesses:\n  web: {command: ./server}\n");
	assert_null(s->build);
	assert_null(s->release);
	assert_int_equal(s->n_env, 0);
	assert_int_equal(s->n_alerts, 0);
	assert_int_equal(s->n_procs, 1);
	const struct spec_process *p = &s->procs[0];
	assert_int_equal(p->instances, 1);
	assert_int_equal(p->n_env, 0);
	assert_int_equal(p->health.kind, SPEC_HEALTH_NONE);
	assert_null(p->health.target);
	assert_int_equal(p->health.interval_ms, 10000);
	assert_int_equal(p->health.timeout_ms, 1000);
	assert_int_equal(p->health.healthy, 1);
	assert_int_equal(p->health.unhealthy, 3);
	assert_int_equal(p->health.boot_deadline_ms, 60000);
	assert_int_equal(p->restart, SPEC_RESTART_ALWAYS);
	assert_int_equal(p->stop_timeout_ms, 30000);
	assert_int_equal(p->resources.memory_bytes, 0);
	assert_true(p->resources.cpu == 0);
	assert_int_equal(p->n_routes, 0);
	assert_string_equal(p->deploy.strategy, "rolling");
	assert_int_equal(p->deploy.max_surge, 1);
	assert_int_equal(p->deploy.max_unavailable, 0);
	assert_int_equal(p->deploy.canary, 1);
	assert_int_equal(p->deploy.min_healthy_ms, 10000);
	assert_int_equal(p->deploy.healthy_deadline_ms, 300000);
	assert_true(p->deploy.auto_rollback);
	assert_false(p->autoscale.enabled);
	assert_null(p->autoscale.metric);
	spec_free(s);

	/* Partial sections keep the defaults of the keys they leave out. */
	s = parse_ok(HEAD "    health: {http: /up}\n"
			  "    routes: [{host: a.example.com}]\n"
			  "    deploy: {strategy: recreate}\n"
			  "    autoscale: {max: 4, metric: cpu, target: 0.7}\n");
	p = &s->procs[0];
	assert_int_equal(p->health.interval_ms, 10000);
	assert_int_equal(p->health.unhealthy, 3);
	assert_string_equal(p->routes[0].path, "/");
	assert_string_equal(p->deploy.strategy, "recreate");
	assert_int_equal(p->deploy.max_surge, 1);
	assert_int_equal(p->autoscale.min, 1);
	assert_int_equal(p->autoscale.max, 4);
	spec_free(s);
}

static void test_spec__to_json_keeps_yaml_keys_with_ms_and_bytes(void **state)
{
	struct spec *s = parse_ok(full_spec);
	struct json *j = spec_to_json(s);
	assert_string_equal(json_get_str(j, "app"), "shop");
	assert_string_equal(json_get_str(j, "build"), "make");
	assert_string_equal(json_get_str(json_get(j, "env"), "WORKERS"), "4");
	struct json *procs = json_get(j, "processes");
	assert_int_equal(json_size(procs), 3);
	assert_string_equal(json_key(json_first(procs)), "web");
	struct json *web = json_get(procs, "web");
	int64_t v;
	assert_string_equal(json_get_str(web, "command"), "./server --port $PORT");
	assert_int_equal(json_get_int(json_get(web, "instances"), &v), 0);
	assert_int_equal(v, 2);
	struct json *h = json_get(web, "health");
	assert_string_equal(json_get_str(h, "http"), "/healthz");
	assert_int_equal(json_get_int(json_get(h, "interval_ms"), &v), 0);
	assert_int_equal(v, 5000);
	assert_int_equal(json_get_int(json_get(h, "boot_deadline_ms"), &v), 0);
	assert_int_equal(v, 90000);
	assert_int_equal(json_get_int(json_get(json_get(web, "resources"), "memory"), &v), 0);
	assert_int_equal(v, 268435456);
	assert_true(json_num(json_get(json_get(web, "resources"), "cpu")) == 0.5);
	assert_int_equal(json_get_int(json_get(web, "stop_timeout_ms"), &v), 0);
	assert_int_equal(v, 45000);
	assert_string_equal(json_get_str(web, "restart"), "on-failure");
	struct json *routes = json_get(web, "routes");
	assert_int_equal(json_size(routes), 2);
	assert_string_equal(json_get_str(json_at(routes, 1), "host"), "*.shop.example.com");
	assert_string_equal(json_get_str(json_at(routes, 1), "path"), "/api");
	struct json *d = json_get(web, "deploy");
	assert_string_equal(json_get_str(d, "strategy"), "canary");
	assert_int_equal(json_get_int(json_get(d, "healthy_deadline_ms"), &v), 0);
	assert_int_equal(v, 600000);
	assert_true(json_is_bool(json_get(d, "auto_rollback")));
	assert_false(json_true(json_get(d, "auto_rollback")));
	assert_string_equal(json_get_str(json_get(web, "autoscale"), "metric"), "rps");
	assert_true(json_is_null(json_get(json_get(procs, "worker"), "autoscale")));
	assert_string_equal(json_get_str(json_get(json_get(procs, "worker"), "health"), "cmd"),
			    "./check");
	assert_true(json_true(json_get(json_get(json_get(procs, "clock"), "health"), "tcp")));
	struct json *alerts = json_get(j, "alerts");
	assert_int_equal(json_size(alerts), 2);
	assert_string_equal(json_get_str(json_at(alerts, 0), "op"), ">");
	assert_int_equal(json_get_int(json_get(json_at(alerts, 0), "for_ms"), &v), 0);
	assert_int_equal(v, 120000);
	assert_string_equal(json_get_str(json_at(alerts, 1), "severity"), "warning");
	json_free(j);
	spec_free(s);

	s = parse_ok("app: a\nprocesses: {w: {command: x}}\n");
	j = spec_to_json(s);
	assert_true(json_is_null(json_get(j, "build")));
	assert_true(json_is_null(json_get(json_get(json_get(j, "processes"), "w"), "health")));
	json_free(j);
	spec_free(s);
}

static void test_spec__looks_up_processes_by_name(void **state)
{
	struct spec *s = parse_ok(full_spec);
	assert_ptr_equal(spec_process(s, "worker"), &s->procs[1]);
	assert_null(spec_process(s, "nope"));
	assert_null(spec_process(s, NULL));
	spec_free(s);
	spec_free(NULL);
}

static void test_spec__keeps_quoted_and_block_strings(void **state)
{
	struct spec *s = parse_ok("app: \"shop\"\n"
				  "env: {EMPTY: \"\", QUOTED: 'a: b', NUM: \"007\", F: 1.50}\n"
				  "processes:\n"
				  "  web:\n"
				  "    command: |\n"
				  "      ./one\n"
				  "      ./two\n");
	assert_string_equal(s->app, "shop");
	assert_string_equal(s->env[0].value, "");
	assert_string_equal(s->env[1].value, "a: b");
	assert_string_equal(s->env[2].value, "007");
	assert_string_equal(s->env[3].value, "1.50");
	assert_string_equal(s->procs[0].command, "./one\n./two\n");
	spec_free(s);
}

/* ------------------------------------------------------ error reporting */

static void test_spec__reports_every_error_with_line_and_col(void **state)
{
	char *err = parse_err("app: Shop\n"
			      "processes:\n"
			      "  web:\n"
			      "    comand: ./server\n"
			      "    instances: -1\n"
			      "    restart: sometimes\n"
			      "  worker:\n"
			      "    command: ./worker\n"
			      "    stop_timeout: soon\n");
	assert_int_equal(count_lines(err), 6);
	assert_line(err, FILE_NAME ":1:6: invalid app name 'Shop': it must be lowercase (use 1-63 "
			 "characters a-z, 0-9 and '-', not starting or ending with '-')");
	assert_line(err, FILE_NAME ":3:3: missing required key 'command' in process 'web'");
	assert_line(err, FILE_NAME ":4:5: unknown key 'comand' in process 'web' (did you mean "
			 "'command'?)");
	assert_line(err, FILE_NAME ":5:16: 'instances' in process 'web' must be an integer from 0 "
			 "to 10000, found '-1'");
	assert_line(err, FILE_NAME ":6:14: 'restart' in process 'web' must be one of 'always', "
			 "'on-failure' or 'never', found 'sometimes'");
	assert_line(err, FILE_NAME ":9:19: 'stop_timeout' in process 'worker' is not a valid "
			 "duration: found 'soon' (use a number with a unit: 500ms, 10s, 5m, 2h, 1d; "
			 "a bare number is seconds)");
	/* In file order. */
	assert_true(strstr(err, ":1:6:") < strstr(err, ":3:3:"));
	assert_true(strstr(err, ":3:3:") < strstr(err, ":4:5:"));
	assert_true(strstr(err, ":6:14:") < strstr(err, ":9:19:"));
	free(err);

	/* Without a file name. */
	char *e = NULL;
	assert_null(spec_parse("app: x\n", 7, NULL, &e));
	assert_true(str_starts_with(e, "paasops.yaml:1:1: "));
	free(e);
	/* err may be NULL. */
	assert_null(spec_parse("nope", 4, FILE_NAME, NULL));
}

static void test_spec__suggests_the_likely_key_for_a_typo(void **state)
{
	expect_error("app: shop\nproceses:\n  web: {command: x}\n",
		     FILE_NAME ":1:1: missing required key 'processes'\n" FILE_NAME
			       ":2:1: unknown key 'proceses' at the top level (did you mean "
			       "'processes'?)");
	expect_error(HEAD "    helth: {http: /}\n",
		     FILE_NAME ":5:5: unknown key 'helth' in process 'web' (did you mean 'health'?)");
	expect_error(HEAD "    health: {http: /, intervl: 5s}\n",
		     FILE_NAME ":5:23: unknown key 'intervl' in 'health' of process 'web' (did you "
			       "mean 'interval'?)");
	expect_error(HEAD "    deploy: {max_surg: 2}\n",
		     FILE_NAME ":5:14: unknown key 'max_surg' in 'deploy' of process 'web' (did you "
			       "mean 'max_surge'?)");
	expect_error(HEAD "    routes: [{hots: a.example.com}]\n",
		     FILE_NAME ":5:15: unknown key 'hots' in route 1 of process 'web' (did you mean "
			       "'host'?)");
	expect_error(HEAD "    restart: on_failure\n",
		     FILE_NAME ":5:14: 'restart' in process 'web' must be one of 'always', "
			       "'on-failure' or 'never', found 'on_failure' (did you mean "
			       "'on-failure'?)");
	/* Nothing close: no hint. */
	expect_error(HEAD "    zzzzzz: 1\n", FILE_NAME ":5:5: unknown key 'zzzzzz' in process 'web'");
}

static void test_spec__refuses_wrong_types(void **state)
{
	expect_error(HEAD "    health: [http]\n",
		     FILE_NAME ":5:13: 'health' of process 'web' must be a mapping with one of "
			       "'http', 'tcp' or 'cmd', found a list");
	expect_error(HEAD "    routes: {host: a.example.com}\n",
		     FILE_NAME ":5:13: 'routes' of process 'web' must be a list of {host, path} "
			       "mappings, found a mapping");
	expect_error(HEAD "    command2: x\n    env: [A, B]\n",
		     FILE_NAME ":5:5: unknown key 'command2' in process 'web' (did you mean "
			       "'command'?)\n" FILE_NAME
			       ":6:10: 'env' of process 'web' must be a mapping of variable names to "
			       "values, found a list");
	expect_error(HEAD "    deploy: {auto_rollback: maybe}\n",
		     FILE_NAME ":5:29: 'auto_rollback' in 'deploy' of process 'web' must be true or "
			       "false, found 'maybe'");
	expect_error("app: [shop]\nprocesses: {w: {command: x}}\n",
		     FILE_NAME ":1:6: 'app' must be a string, found a list");
	expect_error("app: shop\nprocesses:\n  - web\n",
		     FILE_NAME ":3:3: 'processes' must be a mapping of process names to settings, "
			       "found a list");
	expect_error("app: shop\nprocesses:\n  web: ./server\n",
		     FILE_NAME ":3:8: process 'web' must be a mapping, found './server' (write "
			       "'web: {command: ...}')");
	expect_error("app: shop\nprocesses: {web: {command: x}}\nalerts: {name: a}\n",
		     FILE_NAME ":3:9: 'alerts' must be a list of alert rules, found a mapping");
	expect_error(HEAD "    command: {a: b}\n",
		     FILE_NAME ":5:5: duplicate key 'command' in process 'web' (first at 4:5)");
	expect_error("app: shop\nprocesses:\n  web: {command: [a, b]}\n",
		     FILE_NAME ":3:18: 'command' in process 'web' must be a string, found a list");
	/* A key with no value is an error, not a silent default. */
	expect_error(HEAD "    instances:\n",
		     FILE_NAME ":5:5: 'instances' in process 'web' has no value (expected an "
			       "integer from 0 to 10000)");
}

static void test_spec__refuses_bad_instance_counts(void **state)
{
	const char *const bad[] = {"-1", "10001", "1.5", "two", "\"3\"", "99999999999999999999",
				   "0x10", "true", "[1]"};
	const char *const shown[] = {"'-1'", "'10001'", "'1.5'", "'two'",
				     "the quoted string '3'", "'99999999999999999999'",
				     "'0x10'", "'true'", "a list"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *yaml = xasprintf(HEAD "    instances: %s\n", bad[i]);
		char *want = xasprintf(FILE_NAME ":5:16: 'instances' in process 'web' must be an "
					   "integer from 0 to 10000, found %s",
				       shown[i]);
		expect_error(yaml, want);
		free(yaml);
		free(want);
	}
	struct spec *s = parse_ok(HEAD "    instances: 10000\n");
	assert_int_equal(s->procs[0].instances, SPEC_MAX_INSTANCES);
	spec_free(s);
}

static void test_spec__refuses_missing_or_empty_commands(void **state)
{
	expect_error("app: shop\nprocesses:\n  web: {instances: 1}\n",
		     FILE_NAME ":3:3: missing required key 'command' in process 'web'");
	expect_error("app: shop\nprocesses:\n  web: {command: \"   \"}\n",
		     FILE_NAME ":3:18: 'command' in process 'web' is empty");
	expect_error("app: shop\nprocesses:\n  web: {command: }\n",
		     FILE_NAME ":3:9: 'command' in process 'web' has no value (expected a string)");
	expect_error("app: shop\nprocesses:\n  web:\n",
		     FILE_NAME ":3:3: process 'web' has no settings: it needs at least a 'command'");
	expect_error("app: shop\nprocesses:\n  web: {command: \"a\\0b\"}\n",
		     FILE_NAME ":3:18: 'command' in process 'web' contains a NUL character");
}

static void test_spec__refuses_duplicate_keys_anywhere(void **state)
{
	char *err = parse_err("app: shop\n"
			      "app: shop2\n"
			      "env: {A: 1, A: 2}\n"
			      "processes:\n"
			      "  web:\n"
			      "    command: x\n"
			      "    health: {http: /, interval: 1s, interval: 2s}\n"
			      "  web:\n"
			      "    command: y\n"
			      "alerts:\n"
			      "  - {name: a, metric: instances_ready, op: \">\", value: 1, value: 2}\n");
	assert_int_equal(count_lines(err), 5);
	assert_line(err, FILE_NAME ":2:1: duplicate key 'app' at the top level (first at 1:1)");
	assert_line(err, FILE_NAME ":3:13: duplicate env var 'A' in 'env' (first at 3:7)");
	assert_line(err, FILE_NAME ":7:37: duplicate key 'interval' in 'health' of process 'web' "
			 "(first at 7:23)");
	assert_line(err, FILE_NAME ":8:3: duplicate process 'web' (first at 5:3)");
	assert_line(err, FILE_NAME ":11:59: duplicate key 'value' in alert 'a' (first at 11:49)");
	free(err);
}

/* What an earlier version accepted and stored with a release must still
 * load: checks added since apply to new specs only. */
static void test_spec__stored_specs_load_without_the_checks_added_since(void **state)
{
	static const char *const yaml = HEAD
		"    routes: [{path: /x/../}]\n"
		"    deploy: {healthy_deadline: 5s}\n"
		"alerts:\n"
		"  - {name: a, metric: paasops_instance_open_fd, op: \">\", value: 1, match: {app: other}}\n";
	char *err = NULL;
	struct spec *s = spec_parse(yaml, strlen(yaml), FILE_NAME, &err);
	assert_null(s);
	assert_int_equal(count_lines(err), 4);
	free(err);
	err = NULL;
	s = spec_parse_stored(yaml, strlen(yaml), FILE_NAME, &err);
	if (!s)
		fail_msg("stored spec refused: %s", err);
	assert_string_equal(s->procs[0].routes[0].path, "/x/../");
	spec_free(s);
	/* Everything that was always checked still is. */
	static const char *const bad = HEAD "    routes: [{path: x}]\n";
	assert_null(spec_parse_stored(bad, strlen(bad), FILE_NAME, &err));
	free(err);
}

static void test_spec__refuses_names_that_break_dns_label_rules(void **state)
{
	struct {
		const char *name, *why;
	} cases[] = {
		{"Web", "it must be lowercase"},
		{"a/b", "it contains '/'"},
		{"..", "it contains '.'"},
		{"-web", "it must not start or end with '-'"},
		{"web-", "it must not start or end with '-'"},
		{"a_b", "it contains '_'"},
		{"caf\xc3\xa9", "it contains a non-ASCII character"},
		{"a234567890123456789012345678901234567890123456789012345678901234",
		 "it is longer than 63 characters"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *yaml = xasprintf("app: shop\nprocesses:\n  \"%s\": {command: x}\n", cases[i].name);
		char *err = parse_err(yaml);
		/* Names are cut to 40 bytes in messages. */
		char *want = xasprintf(FILE_NAME ":3:3: invalid process name '%.40s%s': %s (use "
						 "1-63 characters a-z, 0-9 and '-', not starting "
						 "or ending with '-')",
				       cases[i].name, strlen(cases[i].name) > 40 ? "..." : "",
				       cases[i].why);
		assert_line(err, want);
		free(err);
		free(want);
		free(yaml);

		yaml = xasprintf("app: \"%s\"\nprocesses: {web: {command: x}}\n", cases[i].name);
		err = parse_err(yaml);
		assert_true(str_starts_with(err, FILE_NAME ":1:6: invalid app name '"));
		free(err);
		free(yaml);
	}
	assert_true(spec_valid_name("web"));
	assert_true(spec_valid_name("a-1"));
	assert_true(spec_valid_name("a23456789012345678901234567890123456789012345678901234567890123"));
	assert_false(spec_valid_name("a234567890123456789012345678901234567890123456789012345678901234"));
	assert_false(spec_valid_name(""));
	assert_false(spec_valid_name(NULL));
	assert_false(spec_valid_name("Web"));
	assert_false(spec_valid_name("../x"));
	assert_false(spec_valid_name("-a"));
}

static void test_spec__refuses_bad_durations_and_sizes(void **state)
{
	expect_error(HEAD "    stop_timeout: 10 s\n",
		     FILE_NAME ":5:19: 'stop_timeout' in process 'web' is not a valid duration: "
			       "found '10 s' (use a number with a unit: 500ms, 10s, 5m, 2h, 1d; a "
			       "bare number is seconds)");
	expect_error(HEAD "    stop_timeout: -5s\n",
		     FILE_NAME ":5:19: 'stop_timeout' in process 'web' is not a valid duration: "
			       "found '-5s' (use a number with a unit: 500ms, 10s, 5m, 2h, 1d; a "
			       "bare number is seconds)");
	expect_error(HEAD "    stop_timeout: 999999999999999d\n",
		     FILE_NAME ":5:19: 'stop_timeout' in process 'web' is too long a duration: "
			       "'999999999999999d'");
	expect_error(HEAD "    health: {tcp: true, interval: 0}\n",
		     FILE_NAME ":5:35: 'interval' in 'health' of process 'web' must be longer than "
			       "0, found '0'");
	expect_error(HEAD "    resources: {memory: lots}\n",
		     FILE_NAME ":5:25: 'memory' in 'resources' of process 'web' is not a valid size: "
			       "found 'lots' (use bytes or a number with a unit: 512K, 256M, 1G)");
	expect_error(HEAD "    resources: {memory: 1M}\n",
		     FILE_NAME ":5:25: 'memory' in 'resources' of process 'web' must be at least 4M, "
			       "found '1M'");
	struct spec *s = parse_ok(HEAD "    stop_timeout: 0\n    resources: {memory: 4M}\n");
	assert_int_equal(s->procs[0].stop_timeout_ms, 0);
	assert_int_equal(s->procs[0].resources.memory_bytes, 4 * 1024 * 1024);
	spec_free(s);
	s = parse_ok(HEAD "    stop_timeout: 1.5\n    resources: {memory: 1G}\n");
	assert_int_equal(s->procs[0].stop_timeout_ms, 1500);
	assert_int_equal(s->procs[0].resources.memory_bytes, 1024LL * 1024 * 1024);
	spec_free(s);
}

static void test_spec__validates_resources_cpu(void **state)
{
	expect_error(HEAD "    resources: {cpu: 0}\n",
		     FILE_NAME ":5:22: 'cpu' in 'resources' of process 'web' must be a number "
			       "greater than 0 and at most 1024, found '0'");
	expect_error(HEAD "    resources: {cpu: 2000}\n",
		     FILE_NAME ":5:22: 'cpu' in 'resources' of process 'web' must be a number "
			       "greater than 0 and at most 1024, found '2000'");
	expect_error(HEAD "    resources: {cpu: .nan}\n",
		     FILE_NAME ":5:22: 'cpu' in 'resources' of process 'web' must be a number "
			       "greater than 0 and at most 1024, found '.nan'");
	expect_error(HEAD "    resources: {cpu: 500m}\n",
		     FILE_NAME ":5:22: 'cpu' in 'resources' of process 'web' must be a number "
			       "greater than 0 and at most 1024, found '500m'");
	struct spec *s = parse_ok(HEAD "    resources: {cpu: 1024}\n");
	assert_true(s->procs[0].resources.cpu == 1024);
	spec_free(s);
}

static void test_spec__validates_health_checks(void **state)
{
	expect_error(HEAD "    health: {http: /h, tcp: true}\n",
		     FILE_NAME ":5:13: 'health' of process 'web' has more than one check: keep "
			       "exactly one of 'http', 'tcp' and 'cmd'");
	expect_error(HEAD "    health: {interval: 5s}\n",
		     FILE_NAME ":5:13: 'health' of process 'web' needs a check: 'http', 'tcp' or "
			       "'cmd'");
	expect_error(HEAD "    health: {http: healthz}\n",
		     FILE_NAME ":5:20: 'http' in 'health' of process 'web' must be a path like "
			       "'/healthz': it must start with '/', found 'healthz'");
	expect_error(HEAD "    health: {tcp: false}\n",
		     FILE_NAME ":5:19: 'tcp' in 'health' of process 'web' can only be true (remove "
			       "'health' to disable checks)");
	expect_error(HEAD "    health: {cmd: \"\"}\n",
		     FILE_NAME ":5:19: 'cmd' in 'health' of process 'web' is empty");
	expect_error(HEAD "    health: {tcp: true, healthy: 0, unhealthy: 1001}\n",
		     FILE_NAME ":5:34: 'healthy' in 'health' of process 'web' must be an integer "
			       "from 1 to 1000, found '0'\n" FILE_NAME
			       ":5:48: 'unhealthy' in 'health' of process 'web' must be an integer "
			       "from 1 to 1000, found '1001'");
}

static void test_spec__validates_routes(void **state)
{
	struct {
		const char *host, *why;
	} bad[] = {
		{"Shop.example.com", "it must be lowercase"},
		{"shop.example.com:8080", "it must not include a port"},
		{"https://shop.example.com", "it must not include a scheme (write only the hostname)"},
		{"shop.example.com/api", "it must not include a path (use 'path')"},
		{"shop..example.com", "it has an empty label (a leading, trailing or double '.')"},
		{"shop.example.com.", "it has an empty label (a leading, trailing or double '.')"},
		{"a.*.example.com", "'*' is only allowed as a leading '*.' wildcard"},
		{"*.", "a wildcard needs a domain after '*.'"},
		{"-a.example.com", "a label must not start or end with '-'"},
		{"a_b.example.com", "it contains '_'"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *yaml = xasprintf(HEAD "    routes: [{host: \"%s\"}]\n", bad[i].host);
		char *want = xasprintf(FILE_NAME ":5:21: invalid host '%s' in route 1 of process "
						 "'web': %s",
				       bad[i].host, bad[i].why);
		expect_error(yaml, want);
		free(yaml);
		free(want);
	}
	expect_error(HEAD "    routes: [{path: api}]\n",
		     FILE_NAME ":5:21: invalid path 'api' in route 1 of process 'web': it must "
			       "start with '/'");
	expect_error(HEAD "    routes: [{path: \"/a b\"}]\n",
		     FILE_NAME ":5:21: invalid path '/a b' in route 1 of process 'web': it must not "
			       "contain spaces or control characters");
	static const char *const dots[] = {"/x/../", "/..", "/./a", "/a/.", "/a//b"};
	for (size_t i = 0; i < ARRAY_SIZE(dots); i++) {
		char *yaml = xasprintf(HEAD "    routes: [{path: \"%s\"}]\n", dots[i]);
		char *want = xasprintf(FILE_NAME ":5:21: invalid path '%s' in route 1 of process 'web': it "
						 "must not contain %s",
				       dots[i], strstr(dots[i], "//") ? "'//' (an empty segment)"
								    : "'.' or '..' segments");
		expect_error(yaml, want);
		free(yaml);
		free(want);
	}
	spec_free(parse_ok(HEAD "    routes: [{path: /a.b/..c/.d/e.}]\n"));
	expect_error(HEAD "    routes: [a.example.com]\n",
		     FILE_NAME ":5:14: route 1 of process 'web' must be a mapping like {host: "
			       "app.example.com, path: /}, found 'a.example.com'");
	/* The same host and path on two processes is ambiguous. */
	expect_error(HEAD "    routes: [{host: a.example.com, path: /x}]\n"
			  "  api:\n"
			  "    command: ./api\n"
			  "    routes: [{host: a.example.com, path: /x}]\n",
		     FILE_NAME ":8:14: route 'a.example.com/x' is already used by process 'web' "
			       "(at 5:14)");
	struct spec *s = parse_ok(HEAD "    routes: [{path: /api}, {host: \"*.example.com\"},\n"
				       "             {host: localhost, path: /}, {host: 10.0.0.1}]\n");
	assert_int_equal(s->procs[0].n_routes, 4);
	assert_null(s->procs[0].routes[0].host);
	assert_string_equal(s->procs[0].routes[0].path, "/api");
	assert_string_equal(s->procs[0].routes[1].host, "*.example.com");
	assert_string_equal(s->procs[0].routes[3].host, "10.0.0.1");
	spec_free(s);
}

static void test_spec__route_https_is_allow_or_redirect(void **state)
{
	struct spec *s = parse_ok(HEAD "    routes: [{host: a.example.com, https: redirect},\n"
				       "             {host: b.example.com, https: allow}, {host: c.example.com}]\n");
	assert_true(s->procs[0].routes[0].https_redirect);
	assert_false(s->procs[0].routes[1].https_redirect);
	assert_false(s->procs[0].routes[2].https_redirect);
	spec_free(s);
	expect_error(HEAD "    routes: [{host: a.example.com, https: redirekt}]\n",
		     FILE_NAME ":5:43: 'https' in route 1 of process 'web' must be one of 'allow' or "
			       "'redirect', found 'redirekt' (did you mean 'redirect'?)");
	expect_error(HEAD "    routes: [{host: a.example.com, htps: redirect}]\n",
		     FILE_NAME ":5:36: unknown key 'htps' in route 1 of process 'web' (did you mean "
			       "'https'?)");
}

static void test_spec__validates_deploy_strategy(void **state)
{
	expect_error(HEAD "    deploy: {strategy: bluegreen}\n",
		     FILE_NAME ":5:24: 'strategy' in 'deploy' of process 'web' must be one of "
			       "'rolling', 'canary' or 'recreate', found 'bluegreen'");
	expect_error(HEAD "    deploy: {max_surge: -1}\n",
		     FILE_NAME ":5:25: 'max_surge' in 'deploy' of process 'web' must be an integer "
			       "from 0 to 10000, found '-1'");
	expect_error(HEAD "    deploy: {max_surge: 0, max_unavailable: 0}\n",
		     FILE_NAME ":5:13: 'deploy' of process 'web': 'max_surge' and "
			       "'max_unavailable' are both 0, so a rolling deploy could never "
			       "progress; set one of them above 0");
	expect_error(HEAD "    deploy: {strategy: canary, canary: 0}\n",
		     FILE_NAME ":5:40: 'canary' in 'deploy' of process 'web' must be at least 1 "
			       "for the canary strategy");
	expect_error(HEAD "    deploy: {healthy_deadline: 0s}\n",
		     FILE_NAME ":5:32: 'healthy_deadline' in 'deploy' of process 'web' must be "
			       "longer than 0, found '0s'");
	/* Zero surge is fine for the strategies that do not surge. */
	struct spec *s = parse_ok(HEAD "    deploy: {strategy: recreate, max_surge: 0}\n");
	assert_int_equal(s->procs[0].deploy.max_surge, 0);
	spec_free(s);
}

static void test_spec__validates_autoscale(void **state)
{
	expect_error(HEAD "    autoscale: {min: 5, max: 3, metric: rps, target: 1}\n",
		     FILE_NAME ":5:22: 'min' (5) in 'autoscale' of process 'web' is greater than "
			       "'max' (3)");
	expect_error(HEAD "    autoscale: {min: -1, max: 3, metric: rps, target: 1}\n",
		     FILE_NAME ":5:22: 'min' in 'autoscale' of process 'web' must be an integer from "
			       "0 to 10000, found '-1'");
	expect_error(HEAD "    autoscale: {max: 3, metric: qps, target: 1}\n",
		     FILE_NAME ":5:33: 'metric' in 'autoscale' of process 'web' must be one of "
			       "'rps', 'cpu', 'memory', 'inflight' or 'p95', found 'qps' (did you "
			       "mean 'rps'?)");
	expect_error(HEAD "    autoscale: {max: 3, metric: rps, target: 0}\n",
		     FILE_NAME ":5:46: 'target' in 'autoscale' of process 'web' must be a number "
			       "greater than 0, found '0'");
	expect_error(HEAD "    autoscale: {min: 1}\n",
		     FILE_NAME ":5:16: missing required key 'max' in 'autoscale' of process 'web'\n" FILE_NAME
			       ":5:16: missing required key 'metric' in 'autoscale' of process "
			       "'web'\n" FILE_NAME
			       ":5:16: missing required key 'target' in 'autoscale' of process 'web'");
	expect_error(HEAD "    autoscale: {max: 3, metric: rps, target: 1, panic_threshold: 1}\n",
		     FILE_NAME ":5:66: 'panic_threshold' in 'autoscale' of process 'web' must be a "
			       "number greater than 1 and at most 100, found '1'");
	expect_error(HEAD "    autoscale: {max: 3, metric: rps, target: 1, panic_threshold: 2x}\n",
		     FILE_NAME ":5:66: 'panic_threshold' in 'autoscale' of process 'web' must be a "
			       "number greater than 1 and at most 100, found '2x'");
	struct spec *s = parse_ok(HEAD "    autoscale: {min: 0, max: 1, metric: p95, target: 0.25}\n");
	assert_int_equal(s->procs[0].autoscale.min, 0);
	assert_string_equal(s->procs[0].autoscale.metric, "p95");
	assert_true(s->procs[0].autoscale.panic_threshold == 2);
	spec_free(s);
	s = parse_ok(HEAD "    autoscale: {max: 4, metric: rps, target: 10, panic_threshold: 3.5}\n");
	assert_true(s->procs[0].autoscale.panic_threshold == 3.5);
	spec_free(s);
}

static void test_spec__validates_alerts(void **state)
{
	char *err = parse_err(HEAD "alerts:\n"
				   "  - {name: slow, metric: p95, op: \"=\", value: x, severity: loud}\n"
				   "  - {name: slow, metric: \"bad metric\", op: \">\", value: 1, for: -1s}\n"
				   "  - {metric: m}\n"
				   "  - just text\n");
	assert_int_equal(count_lines(err), 12);
	assert_line(err, FILE_NAME ":6:26: unknown metric 'p95' in alert 'slow': use an app metric "
			 "such as http_p95_seconds or a paasops_* series (see doc/alerts.md)");
	assert_line(err, FILE_NAME ":8:14: unknown metric 'm' in alert 3: use an app metric such as "
			 "http_p95_seconds or a paasops_* series (see doc/alerts.md)");
	assert_line(err, FILE_NAME ":6:35: 'op' in alert 'slow' must be one of '==', '!=', '>', "
			 "'>=', '<' or '<=', found the quoted string '=' (did you mean '=='?)");
	assert_line(err, FILE_NAME ":6:47: 'value' in alert 'slow' must be a number, found 'x'");
	assert_line(err, FILE_NAME ":6:60: 'severity' in alert 'slow' must be one of 'info', "
			 "'warning' or 'critical', found 'loud'");
	assert_line(err, FILE_NAME ":7:12: duplicate alert name 'slow' (first at 6:12)");
	assert_line(err, FILE_NAME ":7:26: invalid metric name 'bad metric' in alert 'slow': use "
			 "letters, digits, '_' and ':', not starting with a digit");
	assert_line(err, FILE_NAME ":7:64: 'for' in alert 'slow' is not a valid duration: found "
			 "'-1s' (use a number with a unit: 500ms, 10s, 5m, 2h, 1d; a bare number is "
			 "seconds)");
	assert_line(err, FILE_NAME ":8:5: missing required key 'name' in alert 3");
	assert_line(err, FILE_NAME ":8:5: missing required key 'op' in alert 3");
	assert_line(err, FILE_NAME ":8:5: missing required key 'value' in alert 3");
	assert_line(err, FILE_NAME ":9:5: alert 4 must be a mapping with 'name', 'metric', 'op' "
			 "and 'value', found 'just text'");
	free(err);

	/* An unquoted ">" starts a folded block scalar: say how to write it. */
	expect_error(HEAD "alerts:\n"
			  "  - name: slow\n"
			  "    metric: instances_ready\n"
			  "    op: >\n"
			  "    value: 1\n",
		     FILE_NAME ":8:9: 'op' in alert 'slow' is empty: quote the operator, e.g. op: "
			       "\">\"");
}

static void test_spec__parses_alert_functions_matchers_and_annotations(void **state)
{
	struct spec *s = parse_ok(HEAD "alerts:\n"
				       "  - name: fds\n"
				       "    metric: paasops_instance_open_fds\n"
				       "    fn: max\n"
				       "    window: 30s\n"
				       "    match: {process: web}\n"
				       "    op: \">\"\n"
				       "    value: 1000\n"
				       "    keep_firing_for: 2m\n"
				       "    summary: \"{{ $labels.instance }} has {{ $value }} fds\"\n"
				       "    description: see the runbook\n"
				       "  - {name: slow, metric: http_p95_seconds, op: \">\", value: 0.5}\n");
	const struct spec_alert *a = &s->alerts[0];
	assert_string_equal(a->fn, "max");
	assert_int_equal(a->window_ms, 30000);
	assert_int_equal(a->n_match, 1);
	assert_string_equal(a->match[0].key, "process");
	assert_string_equal(a->match[0].value, "web");
	assert_int_equal(a->keep_firing_ms, 120000);
	assert_string_equal(a->summary, "{{ $labels.instance }} has {{ $value }} fds");
	assert_string_equal(a->description, "see the runbook");
	a = &s->alerts[1];
	assert_null(a->fn);
	assert_int_equal(a->window_ms, 0);
	assert_int_equal(a->n_match, 0);
	assert_int_equal(a->keep_firing_ms, -1);
	assert_null(a->summary);
	spec_free(s);

	char *err = parse_err(HEAD "alerts:\n"
				   "  - {name: a, metric: instance_ready, op: \"<\", value: 1}\n"
				   "  - {name: b, metric: http_p95_seconds, fn: max, op: \">\", value: 1}\n"
				   "  - {name: c, metric: paasops_x, fn: rat, match: {1a: b}, op: \">\", value: 1}\n");
	assert_int_equal(count_lines(err), 5);
	assert_line(err, FILE_NAME ":6:23: unknown metric 'instance_ready' in alert 'a' (did you "
			 "mean 'instances_ready'?)");
	assert_line(err, FILE_NAME ":7:41: 'fn' in alert 'b' cannot be used with the app metric "
			 "'http_p95_seconds' (it has its own)");
	assert_line(err, FILE_NAME ":8:38: 'fn' in alert 'c' must be one of 'raw', 'rate', 'avg', "
			 "'min', 'max', 'sum', 'p50', 'p90', 'p95' or 'p99', found 'rat' (did you mean "
			 "'raw'?)");
	assert_line(err, FILE_NAME ":8:51: invalid label name '1a' in 'match' in alert 'c': use "
			 "letters, digits and '_', not starting with a digit or '__'");
	assert_line(err, FILE_NAME ":8:23: 'metric' in alert 'c': unknown metric 'paasops_x' "
			 "(doc/metrics.md lists them)");
	free(err);
}

static void test_spec__alert_series_must_be_able_to_have_a_value(void **state)
{
	char *err = parse_err(
		HEAD "alerts:\n"
		     "  - {name: a, metric: paasops_instance_open_fd, op: \">\", value: 1}\n"
		     "  - {name: b, metric: paasops_http_request_duration_seconds, op: \">\", value: 1}\n"
		     "  - {name: c, metric: paasops_host_load1, fn: p95, op: \">\", value: 1}\n"
		     "  - {name: d, metric: paasops_http_requests_total, fn: p50, op: \">\", value: 1}\n"
		     "  - {name: e, metric: paasops_instance_open_fds, match: {app: other}, op: \">\",\n"
		     "     value: 1}\n");
	assert_int_equal(count_lines(err), 5);
	assert_line(err, FILE_NAME ":6:23: 'metric' in alert 'a': unknown metric "
			 "'paasops_instance_open_fd' (did you mean 'paasops_instance_open_fds'?)");
	assert_line(err, FILE_NAME ":7:23: 'metric' in alert 'b': "
			 "'paasops_http_request_duration_seconds' is a histogram: ask for a quantile of "
			 "it (p50, p90, p95 or p99), or for the series "
			 "paasops_http_request_duration_seconds_count, "
			 "paasops_http_request_duration_seconds_sum or "
			 "paasops_http_request_duration_seconds_bucket");
	assert_line(err, FILE_NAME ":8:47: 'fn' in alert 'c': 'paasops_host_load1' is a gauge: "
			 "quantiles (p50, p90, p95, p99) need a histogram, such as "
			 "paasops_http_request_duration_seconds");
	assert_line(err, FILE_NAME ":9:56: 'fn' in alert 'd': 'paasops_http_requests_total' is a "
			 "counter: quantiles (p50, p90, p95, p99) need a histogram, such as "
			 "paasops_http_request_duration_seconds");
	assert_line(err, FILE_NAME ":10:58: label 'app' in 'match' in alert 'e' is implied (a "
			 "spec's alerts see only its own app's series): leave it out");
	free(err);

	/* A quantile of the histogram, and its streams, are fine. */
	struct spec *s = parse_ok(
		HEAD "alerts:\n"
		     "  - {name: a, metric: paasops_http_request_duration_seconds, fn: p95, op: \">\",\n"
		     "     value: 1}\n"
		     "  - {name: b, metric: paasops_http_request_duration_seconds_count, fn: rate,\n"
		     "     op: \">\", value: 1}\n");
	spec_free(s);
}

static void test_spec__validates_env(void **state)
{
	char *err = parse_err("app: shop\n"
			      "env: {1X: a, OK: [1], NOVAL: , DASH-ED: b}\n"
			      "processes:\n"
			      "  web: {command: x, env: {A: {b: c}}}\n");
	assert_int_equal(count_lines(err), 5);
	assert_line(err, FILE_NAME ":2:7: invalid env var name '1X' in 'env': use letters, digits "
			 "and '_', not starting with a digit");
	assert_line(err, FILE_NAME ":2:18: env var 'OK' in 'env' must be a string, number or bool, "
			 "found a list");
	assert_line(err, FILE_NAME ":2:23: env var 'NOVAL' in 'env' has no value (write \"\" for an "
			 "empty string)");
	assert_line(err, FILE_NAME ":2:32: invalid env var name 'DASH-ED' in 'env': use letters, "
			 "digits and '_', not starting with a digit");
	assert_line(err, FILE_NAME ":4:30: env var 'A' in 'env' of process 'web' must be a string, "
			 "number or bool, found a mapping");
	free(err);
}

static void test_spec__requires_app_and_processes(void **state)
{
	expect_error("processes:\n  web: {command: x}\n",
		     FILE_NAME ":1:1: missing required key 'app' (the app name)");
	expect_error("app: shop\n", FILE_NAME ":1:1: missing required key 'processes'");
	expect_error("app: shop\nprocesses: {}\n",
		     FILE_NAME ":2:1: 'processes' is empty: declare at least one process");
	expect_error("app: shop\nprocesses:\n",
		     FILE_NAME ":2:1: 'processes' is empty: declare at least one process");

	struct strbuf_like {
		char buf[8192];
		size_t len;
	} y = {.len = 0};
	y.len += (size_t)snprintf(y.buf, sizeof(y.buf), "app: shop\nprocesses:\n");
	for (int i = 0; i <= SPEC_MAX_PROCESSES; i++)
		y.len += (size_t)snprintf(y.buf + y.len, sizeof(y.buf) - y.len,
					  "  p%d: {command: x}\n", i);
	expect_error(y.buf, FILE_NAME ":3:3: 'processes' declares 65 processes; the limit is 64");
}

static void test_spec__refuses_documents_that_are_not_a_mapping(void **state)
{
	expect_error("", FILE_NAME ":1:1: the file is empty: expected a mapping with 'app' and "
			 "'processes'");
	expect_error("# just a comment\n\n", FILE_NAME ":1:1: the file is empty: expected a mapping "
						   "with 'app' and 'processes'");
	expect_error("shop\n", FILE_NAME ":1:1: expected a mapping with 'app' and 'processes' at the "
				   "top level, found 'shop'");
	expect_error("- app: shop\n", FILE_NAME ":1:1: expected a mapping with 'app' and "
						"'processes' at the top level, found a list");
	expect_error("[1: 2]: x\n", FILE_NAME ":1:1: invalid key at the top level: keys must be "
					      "strings, found a list\n" FILE_NAME
					      ":1:1: missing required key 'app' (the app name)\n" FILE_NAME
					      ":1:1: missing required key 'processes'");
}

/* ------------------------------------------------- hostile YAML input */

static void test_spec__refuses_anchors_and_aliases(void **state)
{
	/* The billion laughs: nine levels of nine aliases each. */
	char yaml[4096];
	size_t len = (size_t)snprintf(yaml, sizeof(yaml), "a0: &a0 [lol]\n");
	for (int i = 1; i < 10; i++) {
		len += (size_t)snprintf(yaml + len, sizeof(yaml) - len, "a%d: &a%d [", i, i);
		for (int j = 0; j < 9; j++)
			len += (size_t)snprintf(yaml + len, sizeof(yaml) - len, "%s*a%d",
						j ? ", " : "", i - 1);
		len += (size_t)snprintf(yaml + len, sizeof(yaml) - len, "]\n");
	}
	expect_error(yaml, FILE_NAME ":1:5: anchors and aliases are not supported");
	expect_error(HEAD "    env: *x\n", FILE_NAME ":5:10: anchors and aliases are not supported");
	expect_error("base: &b {command: x}\n",
		     FILE_NAME ":1:7: anchors and aliases are not supported");
	expect_error("app: shop\nprocesses:\n  web:\n    <<: *b\n",
		     FILE_NAME ":4:9: anchors and aliases are not supported");
}

static void test_spec__refuses_input_over_the_size_limit(void **state)
{
	size_t len = 10 * 1024 * 1024;
	char *big = xmalloc(len);
	for (size_t i = 0; i < len; i++)
		big[i] = "a: b\n"[i % 5];
	char *err = parse_err_n(big, len);
	assert_string_equal(err, FILE_NAME ":1:1: file is too large (10485760 bytes; the limit is "
				 "1048576)");
	free(err);
	/* One byte over is enough. */
	err = parse_err_n(big, SPEC_MAX_BYTES + 1);
	assert_true(strstr(err, "file is too large") != NULL);
	free(err);
	free(big);
}

/* Deterministic bytes, so that a failure can be replayed. */
static uint32_t next_rand(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static void test_spec__refuses_binary_input_cleanly(void **state)
{
	char *err = parse_err_n("app: shop\0\x01\x02", 12);
	assert_string_equal(err, FILE_NAME ":1:10: file contains a NUL byte (binary data?)");
	free(err);
	expect_error("app: caf\xff\n", FILE_NAME ":1:9: invalid leading UTF-8 octet (byte 0xFF); the "
					  "file must be UTF-8 text");
	expect_error("app: caf\xe9\n", FILE_NAME ":1:9: incomplete UTF-8 octet sequence; the file "
					  "must be UTF-8 text");
	expect_error("app: \x1b[31mred\n", FILE_NAME ":1:6: control characters are not allowed (byte "
					      "0x1B); the file must be UTF-8 text");

	/* Random bytes: always a clean error, never a crash (ASan checks the
	 * rest). */
	uint32_t seed = 42;
	char buf[4096];
	for (int round = 0; round < 200; round++) {
		size_t len = 1 + next_rand(&seed) % sizeof(buf);
		for (size_t i = 0; i < len; i++)
			buf[i] = (char)next_rand(&seed);
		char *e = NULL;
		struct spec *s = spec_parse(buf, len, FILE_NAME, &e);
		assert_null(s);
		assert_non_null(e);
		assert_true(str_starts_with(e, FILE_NAME ":"));
		free(e);
	}
}

static void test_spec__yaml_errors_name_tabs_and_unquoted_operators(void **state)
{
	char *e = parse_err("app: t\nprocesses:\n\tweb:\n    command: x\n");
	assert_non_null(strstr(e, "paasops.yaml:3:1:"));
	assert_non_null(strstr(e, "not tabs"));
	free(e);
	e = parse_err("app: t\nprocesses:\n  web: {command: x}\n"
		      "alerts:\n  - {name: A, metric: instances_ready, op: >, value: 1}\n");
	assert_non_null(strstr(e, "quote a value"));
	free(e);
	/* Other syntax errors carry no such hint. */
	e = parse_err("app: [t\n");
	assert_null(strstr(e, "tabs"));
	assert_null(strstr(e, "quote"));
	free(e);
}

static void test_spec__survives_random_yaml_punctuation(void **state)
{
	static const char alphabet[] = "{}[]:,-&*!|>'\"#%@ \n\n  \tab1.";
	uint32_t seed = 7;
	char buf[512];
	for (int round = 0; round < 2000; round++) {
		size_t len = next_rand(&seed) % sizeof(buf);
		for (size_t i = 0; i < len; i++)
			buf[i] = alphabet[next_rand(&seed) % (sizeof(alphabet) - 1)];
		char *e = NULL;
		struct spec *s = spec_parse(buf, len, FILE_NAME, &e);
		assert_true((s == NULL) != (e == NULL));
		spec_free(s);
		free(e);
	}
}

static void test_spec__reports_syntax_errors_with_position(void **state)
{
	expect_error("app: shop\n  bad: indent\n",
		     FILE_NAME ":2:6: mapping values are not allowed in this context");
	expect_error("app: shop\nprocesses: {web: {command: x}\n",
		     FILE_NAME ":3:1: did not find expected ',' or '}' (while parsing a flow mapping "
			       "at 2:12)");
	expect_error("app: shop\n\tprocesses: x\n",
		     FILE_NAME ":2:1: found a tab character that violates indentation (while "
			       "scanning a plain scalar at 1:6)");
	expect_error("app: !custom shop\n", FILE_NAME ":1:6: tags are not supported ('!custom')");
}

static void test_spec__refuses_multiple_documents(void **state)
{
	expect_error("app: a\nprocesses: {w: {command: x}}\n---\napp: b\n",
		     FILE_NAME ":3:1: multiple documents are not supported");
	/* One explicit document is fine. */
	struct spec *s = parse_ok("---\napp: a\nprocesses: {w: {command: x}}\n...\n");
	assert_string_equal(s->app, "a");
	spec_free(s);
}

static void test_spec__refuses_deep_nesting_and_too_many_nodes(void **state)
{
	char deep[512];
	size_t n = 0;
	n += (size_t)snprintf(deep, sizeof(deep), "app: ");
	for (int i = 0; i < 100; i++)
		deep[n++] = '[';
	for (int i = 0; i < 100; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	/* The root mapping is level 1; the 64th '[' is level 65. */
	expect_error(deep, FILE_NAME ":1:69: nesting is deeper than 64 levels");

	size_t items = YAML_MAX_NODES + 10, cap = items * 2 + 16, len = 0;
	char *wide = xmalloc(cap);
	len += (size_t)snprintf(wide, cap, "x: [");
	for (size_t i = 0; i < items; i++) {
		wide[len++] = '1';
		wide[len++] = ',';
	}
	wide[len++] = ']';
	char *err = parse_err_n(wide, len);
	assert_true(strstr(err, "document has more than 100000 nodes") != NULL);
	assert_int_equal(count_lines(err), 1);
	free(err);
	free(wide);
}

static void test_spec__quotes_user_text_safely_in_messages(void **state)
{
	/* A key with an escape and a very long one: the message stays on one
	 * line and is cut. */
	char *err = parse_err(HEAD "    \"a\\nb\\e\": 1\n"
				   "    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: 1\n");
	assert_int_equal(count_lines(err), 2);
	assert_line(err, FILE_NAME ":5:5: unknown key 'a\\x0ab\\x1b' in process 'web'");
	assert_line(err, FILE_NAME ":6:5: unknown key 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' in "
			 "process 'web'");
	free(err);
}

static void test_spec__caps_the_number_of_errors_reported(void **state)
{
	char *yaml = xmalloc(64 * 1024);
	size_t len = (size_t)snprintf(yaml, 64 * 1024, HEAD);
	for (int i = 0; i < 150; i++)
		len += (size_t)snprintf(yaml + len, 64 * 1024 - len, "    bad%d: 1\n", i);
	char *err = parse_err(yaml);
	assert_int_equal(count_lines(err), 101);
	assert_line(err, FILE_NAME ":105:5: 50 more errors not shown");
	free(err);
	free(yaml);
}

/* ------------------------------------------------------------- files */

static char *write_temp(const char *data, size_t len)
{
	char *path = xstrdup("/tmp/test_spec_XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		assert_true(w > 0);
		off += (size_t)w;
	}
	close(fd);
	return path;
}

static void test_spec__parse_file_reads_names_and_refuses_big_files(void **state)
{
	char *path = write_temp(full_spec, strlen(full_spec));
	char *err = NULL;
	struct spec *s = spec_parse_file(path, &err);
	assert_non_null(s);
	assert_null(err);
	assert_int_equal(s->n_procs, 3);
	spec_free(s);
	unlink(path);
	free(path);

	const char *bad = "app: shop\nprocesses: {web: {comand: x}}\n";
	path = write_temp(bad, strlen(bad));
	assert_null(spec_parse_file(path, &err));
	char *want = xasprintf("%s:2:19: unknown key 'comand' in process 'web' (did you mean "
			       "'command'?)",
			       path);
	assert_line(err, want);
	free(want);
	free(err);
	unlink(path);
	free(path);

	size_t len = SPEC_MAX_BYTES + 100;
	char *big = xmalloc(len);
	memset(big, '#', len);
	path = write_temp(big, len);
	assert_null(spec_parse_file(path, &err));
	assert_true(strstr(err, "file is too large") != NULL);
	assert_true(str_starts_with(err, path));
	free(err);
	unlink(path);
	free(path);
	free(big);

	assert_null(spec_parse_file("/nonexistent/paasops.yaml", &err));
	assert_string_equal(err, "/nonexistent/paasops.yaml: cannot open: No such file or directory");
	free(err);
	assert_null(spec_parse_file("/tmp", &err));
	assert_string_equal(err, "/tmp: not a regular file");
	free(err);
}

/* ------------------------------------------------------- yaml adapter */

static void test_yaml__keeps_key_order_and_marks(void **state)
{
	const char *src = "b: 1\na:\n  - x\n  - {k: 'v'}\nb: 2\n";
	char *err = NULL;
	struct yaml_value *root = yaml_value_load(src, strlen(src), "t.yaml", &err);
	assert_non_null(root);
	assert_null(err);
	assert_int_equal(root->kind, YAML_VALUE_MAPPING);
	assert_int_equal(root->n_pairs, 3);
	assert_string_equal(root->pairs[0].key->str, "b");
	assert_string_equal(root->pairs[1].key->str, "a");
	assert_string_equal(root->pairs[2].key->str, "b");
	assert_int_equal(root->pairs[2].key->line, 5);
	assert_int_equal(root->pairs[2].key->col, 1);
	const struct yaml_value *a = yaml_value_get(root, "a");
	assert_int_equal(a->kind, YAML_VALUE_SEQUENCE);
	assert_int_equal(a->n_items, 2);
	assert_int_equal(a->items[0]->line, 3);
	assert_int_equal(a->items[0]->col, 5);
	const struct yaml_value *v = yaml_value_get(a->items[1], "k");
	assert_string_equal(v->str, "v");
	assert_false(v->plain);
	assert_int_equal(v->line, 4);
	assert_int_equal(v->col, 9);
	assert_string_equal(yaml_value_get(root, "b")->str, "1");
	assert_true(yaml_value_get(root, "b")->plain);
	assert_null(yaml_value_get(root, "zz"));
	assert_null(yaml_value_get(a, "x"));
	yaml_value_free(root);
	yaml_value_free(NULL);

	root = yaml_value_load("", 0, "t.yaml", &err);
	assert_non_null(root);
	assert_true(yaml_value_is_null(root));
	yaml_value_free(root);

	root = yaml_value_load("x: !!str 3\ny: ~\n", 16, "t.yaml", &err);
	assert_non_null(root);
	assert_false(yaml_value_get(root, "x")->plain);
	assert_true(yaml_value_is_null(yaml_value_get(root, "y")));
	yaml_value_free(root);

	assert_null(yaml_value_load("a: [", 4, "t.yaml", &err));
	assert_true(str_starts_with(err, "t.yaml:"));
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec__parses_every_field_of_a_full_spec),
		cmocka_unit_test(test_spec__fills_documented_defaults),
		cmocka_unit_test(test_spec__to_json_keeps_yaml_keys_with_ms_and_bytes),
		cmocka_unit_test(test_spec__looks_up_processes_by_name),
		cmocka_unit_test(test_spec__keeps_quoted_and_block_strings),
		cmocka_unit_test(test_spec__reports_every_error_with_line_and_col),
		cmocka_unit_test(test_spec__suggests_the_likely_key_for_a_typo),
		cmocka_unit_test(test_spec__refuses_wrong_types),
		cmocka_unit_test(test_spec__refuses_bad_instance_counts),
		cmocka_unit_test(test_spec__refuses_missing_or_empty_commands),
		cmocka_unit_test(test_spec__refuses_duplicate_keys_anywhere),
		cmocka_unit_test(test_spec__refuses_names_that_break_dns_label_rules),
		cmocka_unit_test(test_spec__refuses_bad_durations_and_sizes),
		cmocka_unit_test(test_spec__validates_resources_cpu),
		cmocka_unit_test(test_spec__validates_health_checks),
		cmocka_unit_test(test_spec__validates_routes),
		cmocka_unit_test(test_spec__route_https_is_allow_or_redirect),
		cmocka_unit_test(test_spec__validates_deploy_strategy),
		cmocka_unit_test(test_spec__validates_autoscale),
		cmocka_unit_test(test_spec__validates_alerts),
		cmocka_unit_test(test_spec__parses_alert_functions_matchers_and_annotations),
		cmocka_unit_test(test_spec__alert_series_must_be_able_to_have_a_value),
		cmocka_unit_test(test_spec__validates_env),
		cmocka_unit_test(test_spec__requires_app_and_processes),
		cmocka_unit_test(test_spec__refuses_documents_that_are_not_a_mapping),
		cmocka_unit_test(test_spec__refuses_anchors_and_aliases),
		cmocka_unit_test(test_spec__refuses_input_over_the_size_limit),
		cmocka_unit_test(test_spec__refuses_binary_input_cleanly),
		cmocka_unit_test(test_spec__survives_random_yaml_punctuation),
		cmocka_unit_test(test_spec__reports_syntax_errors_with_position),
		cmocka_unit_test(test_spec__refuses_multiple_documents),
		cmocka_unit_test(test_spec__refuses_deep_nesting_and_too_many_nodes),
		cmocka_unit_test(test_spec__quotes_user_text_safely_in_messages),
		cmocka_unit_test(test_spec__caps_the_number_of_errors_reported),
		cmocka_unit_test(test_spec__stored_specs_load_without_the_checks_added_since),
		cmocka_unit_test(test_spec__parse_file_reads_names_and_refuses_big_files),
		cmocka_unit_test(test_yaml__keeps_key_order_and_marks),
		cmocka_unit_test(test_spec__yaml_errors_name_tabs_and_unquoted_operators),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
