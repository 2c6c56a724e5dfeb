/* json.c: the cJSON adapter (see json.h). The opaque struct json is cJSON. */
#include "compat/json.h"
#include "core/timeutil.h"
#include "core/util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define C(j) ((cJSON *)(j))
#define J(c) ((struct json *)(c))

static void *oom_check(void *p)
{
	if (!p)
		abort();
	return p;
}

struct json *json_parse(const char *buf, size_t len, char **err)
{
	const char *end = NULL;
	cJSON *c = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (!c) {
		if (err)
			*err = xasprintf("invalid JSON near byte %zu",
					 end ? (size_t)(end - buf) : (size_t)0);
		return NULL;
	}
	/* Trailing non-space garbage is an error. */
	if (end) {
		while ((size_t)(end - buf) < len &&
		       (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t' || *end == '\0'))
			end++;
		if ((size_t)(end - buf) < len) {
			if (err)
				*err = xasprintf("invalid JSON near byte %zu", (size_t)(end - buf));
			cJSON_Delete(c);
			return NULL;
		}
	}
	return J(c);
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *json_duplicate_key(const struct json *j)
{
	const cJSON *c = C(j);
	if (!c || !(cJSON_IsObject(c) || cJSON_IsArray(c)))
		return NULL;
	const char *dup = NULL;
	if (cJSON_IsObject(c)) {
		/* Sorted, so that an object of many keys costs n log n, not n². */
		size_t n = 0;
		for (const cJSON *m = c->child; m; m = m->next)
			n++;
		if (n > 1) {
			const char **keys = xmalloc(n * sizeof(*keys));
			size_t k = 0;
			for (const cJSON *m = c->child; m; m = m->next)
				keys[k++] = m->string;
			qsort(keys, n, sizeof(*keys), key_cmp);
			for (k = 1; k < n && !dup; k++)
				if (strcmp(keys[k - 1], keys[k]) == 0)
					dup = keys[k];
			free(keys);
		}
	}
	for (const cJSON *m = c->child; m && !dup; m = m->next)
		dup = json_duplicate_key(J(m));
	return dup;
}

void json_free(struct json *j)
{
	if (j)
		cJSON_Delete(C(j));
}

char *json_print(const struct json *j, bool pretty)
{
	char *s = pretty ? cJSON_Print(C(j)) : cJSON_PrintUnformatted(C(j));
	oom_check(s);
	/* Hand back a string freed by free(). cJSON uses malloc by default. */
	return s;
}

struct json *json_object(void) { return J(oom_check(cJSON_CreateObject())); }
struct json *json_array(void) { return J(oom_check(cJSON_CreateArray())); }
struct json *json_string(const char *s) { return J(oom_check(cJSON_CreateString(s))); }
struct json *json_int(int64_t v) { return J(oom_check(cJSON_CreateNumber((double)v))); }
struct json *json_number(double v) { return J(oom_check(cJSON_CreateNumber(v))); }
struct json *json_bool(bool v) { return J(oom_check(cJSON_CreateBool(v))); }
struct json *json_null(void) { return J(oom_check(cJSON_CreateNull())); }

struct json *json_set(struct json *obj, const char *key, struct json *child)
{
	cJSON_AddItemToObject(C(obj), key, C(child));
	return child;
}

struct json *json_append(struct json *arr, struct json *child)
{
	cJSON_AddItemToArray(C(arr), C(child));
	return child;
}

void json_set_str(struct json *obj, const char *key, const char *str)
{
	json_set(obj, key, str ? json_string(str) : json_null());
}
void json_set_int(struct json *obj, const char *key, int64_t v) { json_set(obj, key, json_int(v)); }
void json_set_num(struct json *obj, const char *key, double v) { json_set(obj, key, json_number(v)); }
void json_set_bool(struct json *obj, const char *key, bool v) { json_set(obj, key, json_bool(v)); }

bool json_is_object(const struct json *j) { return j && cJSON_IsObject(C(j)); }
bool json_is_array(const struct json *j) { return j && cJSON_IsArray(C(j)); }
bool json_is_string(const struct json *j) { return j && cJSON_IsString(C(j)); }
bool json_is_number(const struct json *j) { return j && cJSON_IsNumber(C(j)); }
bool json_is_bool(const struct json *j) { return j && cJSON_IsBool(C(j)); }
bool json_is_null(const struct json *j) { return j && cJSON_IsNull(C(j)); }

struct json *json_get(const struct json *obj, const char *key)
{
	if (!json_is_object(obj))
		return NULL;
	return J(cJSON_GetObjectItemCaseSensitive(C(obj), key));
}

const char *json_str(const struct json *j)
{
	return json_is_string(j) ? C(j)->valuestring : NULL;
}

int json_get_int(const struct json *j, int64_t *out)
{
	if (!json_is_number(j))
		return -EINVAL;
	double d = C(j)->valuedouble;
	if (d != floor(d) || d > 9.0e15 || d < -9.0e15)
		return -EINVAL;
	*out = (int64_t)d;
	return 0;
}

double json_num(const struct json *j) { return json_is_number(j) ? C(j)->valuedouble : 0; }
bool json_true(const struct json *j) { return j && cJSON_IsTrue(C(j)); }
const char *json_get_str(const struct json *obj, const char *key) { return json_str(json_get(obj, key)); }

size_t json_size(const struct json *j)
{
	return j ? (size_t)cJSON_GetArraySize(C(j)) : 0;
}

struct json *json_at(const struct json *arr, size_t i)
{
	return J(cJSON_GetArrayItem(C(arr), (int)i));
}

struct json *json_first(const struct json *j) { return j ? J(C(j)->child) : NULL; }
struct json *json_next(const struct json *j) { return j ? J(C(j)->next) : NULL; }
const char *json_key(const struct json *m) { return m ? C(m)->string : NULL; }

void json_remove(struct json *obj, const char *key)
{
	cJSON_DeleteItemFromObjectCaseSensitive(C(obj), key);
}

struct json *json_dup(const struct json *j)
{
	return J(oom_check(cJSON_Duplicate(C(j), 1)));
}

void json_set_time(struct json *obj, const char *key, int64_t wall_ms)
{
	if (!wall_ms) {
		json_set(obj, key, json_null());
		return;
	}
	char ts[40];
	time_format_iso(wall_ms, ts, sizeof(ts));
	json_set_str(obj, key, ts);
}
