/* fuzz_json.c: libFuzzer target for the JSON adapter (src/compat/json).
 * Arbitrary bytes are parsed; what parses is printed compactly and pretty,
 * and both texts must parse back to a tree that prints the same compact
 * text (print is a fixed point after one round). A deep copy must print the
 * same too. A refused input must come with "invalid JSON near byte N" and
 * N within the input. */
#include "compat/json.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* Parses text, which must succeed, and returns its compact print. */
static char *reprint(const char *text)
{
	char *err = NULL;
	struct json *j = json_parse(text, strlen(text), &err);
	if (!j) {
		fprintf(stderr, "printed JSON does not parse back (%s):\n%s\n", err, text);
		abort();
	}
	char *out = json_print(j, false);
	json_free(j);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *err = NULL;
	struct json *j = json_parse((const char *)data, size, &err);
	if (!j) {
		static const char prefix[] = "invalid JSON near byte ";
		CHECK(err && strncmp(err, prefix, sizeof(prefix) - 1) == 0);
		CHECK(strtoull(err + sizeof(prefix) - 1, NULL, 10) <= size);
		free(err);
		return 0;
	}
	CHECK(!err);
	char *compact = json_print(j, false);
	char *pretty = json_print(j, true);
	char *again = reprint(compact);
	if (strcmp(again, compact) != 0) {
		fprintf(stderr, "print/parse/print differs:\n%s\n%s\n", compact, again);
		abort();
	}
	char *from_pretty = reprint(pretty);
	CHECK(strcmp(from_pretty, compact) == 0);
	struct json *copy = json_dup(j);
	char *copied = json_print(copy, false);
	CHECK(strcmp(copied, compact) == 0);
	if (json_is_object(j) || json_is_array(j)) {
		size_t n = 0;
		for (struct json *m = json_first(j); m; m = json_next(m))
			n++;
		CHECK(n == json_size(j));
	}
	free(copied);
	json_free(copy);
	free(from_pretty);
	free(again);
	free(pretty);
	free(compact);
	json_free(j);
	return 0;
}
