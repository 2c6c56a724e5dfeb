/* fuzz_spec.c: libFuzzer target for spec_parse() (src/spec) and the YAML
 * adapter under it, on arbitrary bytes. Beyond not crashing, it checks the
 * parser's contract: exactly one of a spec and an error text comes back;
 * every error line is "FILE:LINE:COL: message" with 1-based positions (so no
 * user text can break a message across lines); a parsed spec converts to
 * JSON that parses back, and finds each of its processes by name. */
#include "compat/json.h"
#include "spec/spec.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_NAME "fuzz.yaml"

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* Whether line is FILE_NAME ":LINE:COL: " followed by a non-empty message. */
static int error_line_ok(const char *line, size_t len)
{
	static const char prefix[] = FILE_NAME ":";
	size_t n = sizeof(prefix) - 1;
	if (len <= n || memcmp(line, prefix, n) != 0)
		return 0;
	for (int field = 0; field < 2; field++) {
		size_t digits = 0;
		while (n < len && line[n] >= '0' && line[n] <= '9')
			n++, digits++;
		if (!digits || line[n - digits] == '0' || n >= len || line[n] != ':')
			return 0;
		n++;
	}
	return n + 1 < len && line[n] == ' ';
}

static void check_errors(const char *err)
{
	CHECK(err && *err);
	for (const char *p = err;;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (!error_line_ok(p, len)) {
			fprintf(stderr, "malformed error line: '%.*s'\n", (int)len, p);
			abort();
		}
		if (!nl)
			break;
		p = nl + 1;
	}
}

static void check_spec(const struct spec *s)
{
	CHECK(s->app && spec_valid_name(s->app));
	CHECK(s->n_procs >= 1 && s->n_procs <= SPEC_MAX_PROCESSES);
	for (size_t i = 0; i < s->n_procs; i++) {
		const struct spec_process *p = &s->procs[i];
		CHECK(spec_valid_name(p->name));
		CHECK(spec_process(s, p->name) == p);
		CHECK(p->command && *p->command);
		CHECK(p->instances >= 0 && p->instances <= SPEC_MAX_INSTANCES);
		for (size_t k = 0; k < p->n_routes; k++)
			CHECK(p->routes[k].path && p->routes[k].path[0] == '/');
	}
	struct json *j = spec_to_json(s);
	char *text = json_print(j, false);
	char *err = NULL;
	struct json *back = json_parse(text, strlen(text), &err);
	CHECK(back && !err);
	CHECK(strcmp(json_get_str(back, "app"), s->app) == 0);
	json_free(back);
	free(text);
	json_free(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *err = NULL;
	struct spec *s = spec_parse((const char *)data, size, FILE_NAME, &err);
	if (s) {
		CHECK(!err);
		check_spec(s);
		spec_free(s);
	} else {
		check_errors(err);
		free(err);
	}
	return 0;
}
