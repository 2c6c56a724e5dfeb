/* json.h: the one adapter to the JSON library. The rest of paasops sees only
 * the opaque struct json. A tree is owned by its root: json_free(root) frees
 * every node; nodes returned by getters are borrowed from their parent and
 * valid until the root is freed. Adders take ownership of the child. */
#ifndef PAASOPS_JSON_H
#define PAASOPS_JSON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json;

/* Parses len bytes. On error returns NULL and sets *err ("invalid JSON near
 * byte N"), which the caller frees. */
struct json *json_parse(const char *buf, size_t len, char **err);
void json_free(struct json *j);
/* A key that appears twice in one object anywhere in j (borrowed from j),
 * or NULL. json_parse keeps both members and json_get finds the first. */
const char *json_duplicate_key(const struct json *j);
/* Serialises compactly (pretty when pretty is true); caller frees. */
char *json_print(const struct json *j, bool pretty);

struct json *json_object(void);
struct json *json_array(void);
struct json *json_string(const char *s);
struct json *json_int(int64_t v);
struct json *json_number(double v);
struct json *json_bool(bool v);
struct json *json_null(void);

/* Adds to an object (the key is copied) or appends to an array; returns child. */
struct json *json_set(struct json *obj, const char *key, struct json *child);
struct json *json_append(struct json *arr, struct json *child);
/* Removes and frees a member of obj, if present. */
void json_remove(struct json *obj, const char *key);
/* Deep copy; caller frees. */
struct json *json_dup(const struct json *j);
/* Shorthands for json_set with a new scalar. str may be NULL (sets null). */
void json_set_str(struct json *obj, const char *key, const char *str);
/* Sets key to wall_ms (ms since the epoch) as an RFC 3339 UTC string, or
 * to null when wall_ms is 0 (never). */
void json_set_time(struct json *obj, const char *key, int64_t wall_ms);
void json_set_int(struct json *obj, const char *key, int64_t v);
void json_set_num(struct json *obj, const char *key, double v);
void json_set_bool(struct json *obj, const char *key, bool v);

bool json_is_object(const struct json *j);
bool json_is_array(const struct json *j);
bool json_is_string(const struct json *j);
bool json_is_number(const struct json *j);
bool json_is_bool(const struct json *j);
bool json_is_null(const struct json *j);

/* Member of an object, or NULL. */
struct json *json_get(const struct json *obj, const char *key);
/* String value, or NULL when j is not a string. */
const char *json_str(const struct json *j);
/* Integer value; -EINVAL when j is not a number with an integral value. */
int json_get_int(const struct json *j, int64_t *out);
double json_num(const struct json *j);
bool json_true(const struct json *j);
/* Convenience: string member of obj, or NULL. */
const char *json_get_str(const struct json *obj, const char *key);

size_t json_size(const struct json *arr_or_obj);
struct json *json_at(const struct json *arr, size_t i);
/* Iteration over array elements or object members. */
struct json *json_first(const struct json *j);
struct json *json_next(const struct json *j);
/* Key of an object member. */
const char *json_key(const struct json *member);

#endif
