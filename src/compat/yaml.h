/* yaml.h: the one adapter to libyaml. It loads one YAML document into a
 * small tree of struct yaml_value, each node carrying the 1-based line and
 * column where it starts, so that callers can report "FILE:LINE:COL".
 *
 * The loader is deliberately narrower than YAML: anchors and aliases are
 * refused (no alias bombs, no shared nodes), as are custom tags, streams of
 * several documents, nesting deeper than YAML_MAX_DEPTH and documents with
 * more than YAML_MAX_NODES nodes. Invalid UTF-8 and control characters are
 * syntax errors. Duplicate mapping keys are kept (in file order) so that the
 * caller can report them with both positions.
 *
 * A tree is owned by its root: yaml_value_free(root) frees every node. */
#ifndef PAASOPS_YAML_H
#define PAASOPS_YAML_H
#include <stdbool.h>
#include <stddef.h>

#define YAML_MAX_DEPTH 64
#define YAML_MAX_NODES 100000

enum yaml_value_kind { YAML_VALUE_SCALAR, YAML_VALUE_SEQUENCE, YAML_VALUE_MAPPING };

struct yaml_value;

/* One mapping entry. key is any node (usually a scalar); both owned by the
 * mapping. */
struct yaml_pair {
	struct yaml_value *key;
	struct yaml_value *value;
};

struct yaml_value {
	enum yaml_value_kind kind;
	int line, col; /* 1-based, where the node starts */
	/* YAML_VALUE_SCALAR: the text as written (after unquoting/folding),
	 * NUL-terminated; len may exceed strlen(str) when the text contains an
	 * escaped NUL. plain is true for an unquoted, untagged scalar (whose
	 * text may mean a number, a bool or null) and false for a quoted, block
	 * or !!str scalar (always a string). */
	char *str;
	size_t len;
	bool plain;
	/* YAML_VALUE_SEQUENCE: items in order. */
	struct yaml_value **items;
	size_t n_items;
	/* YAML_VALUE_MAPPING: entries in file order, duplicates included. */
	struct yaml_pair *pairs;
	size_t n_pairs;
};

/* Loads len bytes of YAML. filename is used only in messages. Returns the
 * root (caller frees with yaml_value_free()); an empty stream gives a plain
 * empty scalar (null) at 1:1. On error returns NULL and sets *err to one line
 * "FILE:LINE:COL: message" (caller frees). */
struct yaml_value *yaml_value_load(const char *buf, size_t len, const char *filename,
				   char **err);
void yaml_value_free(struct yaml_value *v);

/* Whether v is a YAML null: a plain "", "~", "null", "Null" or "NULL". */
bool yaml_value_is_null(const struct yaml_value *v);
/* Value of the first entry of mapping map whose key is the scalar key, or
 * NULL (also when map is not a mapping). Borrowed from map. */
const struct yaml_value *yaml_value_get(const struct yaml_value *map, const char *key);
/* "a mapping", "a list", "a string" (for messages). */
const char *yaml_value_kind_name(enum yaml_value_kind kind);

#endif
